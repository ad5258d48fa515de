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

/* Where the last certificate offered to an agent stands (spec §3.7). */
enum opd_offer_state {
	OPD_OFFER_NONE = 0,
	OPD_OFFER_OFFERED,  /* sent (or waiting for the agent's next poll) */
	OPD_OFFER_APPLYING, /* the agent said it is switching to it */
	OPD_OFFER_APPLIED,  /* the agent reconnected with it, or said so */
	OPD_OFFER_FAILED,   /* the agent said it could not use it, or never did */
};

#define OPD_CERT_FP_LEN 32      /* SHA-256 of a certificate's DER */
#define OPD_OFFER_ROTATION_MAX 64
#define OPD_OFFER_MAX_SENDS 3 /* an offer is resent on reconnection this many times at most */

/*
 * An agent's client certificate and the certificate offered to it. Allocated
 * the first time either exists, so that an agent without one pays a pointer.
 */
struct opd_agent_tls {
	uint8_t presented[OPD_CERT_FP_LEN]; /* on its current (or last) connection */
	int has_presented;
	enum opd_offer_state offer;
	struct opd_hash offer_hash;         /* connection_settings.hash of the offer */
	uint8_t offer_fp[OPD_CERT_FP_LEN];  /* the offered certificate */
	uint64_t offer_serial;
	char rotation_id[OPD_OFFER_ROTATION_MAX + 1]; /* "" unless offered for a rotation */
	uint64_t offered_ms;                          /* wall clock */
	int sends;                                    /* times the offer went out */
	char *message; /* why it failed, owned; NULL when none */
	/* The packed ServerToAgent carrying the offer (for a server-generated certificate,
	 * with its private key), kept until the agent applies it; cleansed when dropped. */
	uint8_t *pending;
	size_t pending_len;
	int pending_due; /* to be sent with the next message to the agent */
	/* The newest certificate the cluster issued for the agent (kept by the daemon). */
	uint64_t issued_serial; /* 0: none */
	uint8_t issued_fp[OPD_CERT_FP_LEN];
	uint64_t issued_ms, issued_not_after_ms; /* wall clock */
	int issued_revoked;
	int signing;          /* the daemon is having a new certificate signed for it */
	uint64_t retry_at_ms; /* monotonic: no new signing before this */
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
	int64_t desired_priority;
	struct opd_hash desired_hash;
	struct opd_hash sent_hash; /* remote config sent and not yet answered with a report */
	uint64_t sent_at_ms;       /* when sent_hash went out (monotonic) */
	int awaiting_receipt;      /* sent_hash not reported on yet (for the receipt latency) */
	int full_state_requested;  /* ReportFullState sent, full report not seen yet */
	int settings_offered;      /* heartbeat connection settings offered (once per agent) */
	struct opd_agent_tls *tls; /* certificate state; NULL: none presented or offered */

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
const char *opd_offer_state_name(enum opd_offer_state s);   /* "none", "offered", ... */

/* a->tls, allocated when absent. */
struct opd_agent_tls *opd_agent_tls(struct opd_agent *a);
/* Drop the pending offer (its private key is cleansed first). */
void opd_agent_tls_drop_pending(struct opd_agent_tls *t);
void opd_agent_tls_free(struct opd_agent_tls *t);

#endif
