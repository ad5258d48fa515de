/*
 * struct opd_agent: what this node knows about one agent, keyed by its
 * 16-byte instance_uid. Soft, node-local state (AP): it survives
 * disconnections, is persisted in batches by the daemon, and never goes
 * through Raft. Written by session.c, read by the admin API.
 */
#ifndef OPD_AGENT_H
#define OPD_AGENT_H

#include "kv.h"
#include "list.h"
#include "phi.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_UID_LEN 16
#define OPD_HASH_MAX                                                                               \
	32 /* longest config hash we keep; longer reported hashes are truncated-compared as        \
	      different */

struct opd_conn;

enum opd_transport { OPD_TRANSPORT_NONE = 0, OPD_TRANSPORT_WS, OPD_TRANSPORT_HTTP };

enum opd_health_state {
	OPD_HEALTH_HEALTHY,
	OPD_HEALTH_DEGRADED,
	OPD_HEALTH_SUSPECT,
	OPD_HEALTH_DOWN
};

/* Remote config status values, as on the wire (RemoteConfigStatuses). */
enum opd_rc_status { OPD_RC_UNSET = 0, OPD_RC_APPLIED = 1, OPD_RC_APPLYING = 2, OPD_RC_FAILED = 3 };

struct opd_hash {
	uint8_t b[OPD_HASH_MAX];
	uint8_t len; /* 0 = none */
};

struct opd_agent {
	uint8_t uid[OPD_UID_LEN];

	/* Connection. conn is the WebSocket carrying this agent, NULL otherwise. */
	enum opd_transport transport;
	int connected;
	struct opd_conn *conn;
	uint64_t connected_at_ms; /* wall clock */
	uint64_t last_seen_ms;    /* monotonic, for timeouts */
	uint64_t last_seen_wall_ms;
	uint64_t messages;

	/* Protocol state. */
	uint64_t capabilities;
	uint64_t last_seq;
	int have_seq;
	int disconnected_by_agent; /* sent AgentDisconnect */

	/* Reported state (status compression: each kept until the agent resends it). */
	struct opd_kvs ident;    /* identifying attributes, AnyValue rendered as text */
	struct opd_kvs nonident; /* non-identifying attributes */
	int has_description;
	uint8_t *health_pb; /* packed ComponentHealth as last reported, owned; NULL = never */
	size_t health_len;
	int healthy; /* top-level ComponentHealth.healthy (1 when never reported) */
	struct opd_hash effective_hash; /* config hash of the reported effective config */
	int has_effective;
	enum opd_rc_status rc_status;
	struct opd_hash rc_hash;
	char *rc_error;     /* owned, NULL when none */
	char **custom_caps; /* owned strings */
	size_t n_custom_caps;

	/* Desired configuration, cached for config_gen. */
	uint64_t desired_gen;
	char *desired_name; /* owned, NULL when no configuration matches */
	uint64_t desired_version;
	struct opd_hash desired_hash;
	struct opd_hash sent_hash; /* remote config sent and not yet answered with a report */
	uint64_t sent_at_ms;       /* when sent_hash went out (monotonic) */
	int awaiting_receipt;      /* sent_hash not reported on yet (for the receipt latency) */
	int full_state_requested;  /* ReportFullState sent, full report not seen yet */
	int settings_offered;      /* heartbeat connection settings offered (once per agent) */

	/* Health. */
	struct opd_phi phi;

	/* Registry bookkeeping. */
	int dirty; /* changed since last persisted */
	struct opd_agent *hnext;
	struct opd_list link;
};

const char *opd_transport_name(enum opd_transport t);       /* "websocket", "http", "none" */
const char *opd_health_state_name(enum opd_health_state s); /* "healthy", ... */
const char *opd_rc_status_name(enum opd_rc_status s);       /* "UNSET", "APPLIED", ... */

#endif
