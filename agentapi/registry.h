/*
 * The agent registry: instance_uid → struct opd_agent, with the limits and
 * settings every session follows, and the port through which the daemon
 * supplies desired configurations. Pure: time comes in as arguments.
 */
#ifndef OPD_REGISTRY_H
#define OPD_REGISTRY_H

#include "agent.h"

#include <stddef.h>
#include <stdint.h>

/* What the configuration side tells the agent side about one agent's desired config. */
struct opd_desired {
	const char *name; /* borrowed until the next config_gen change */
	uint64_t version;
	int64_t priority; /* higher wins, then the name in byte order (opd_registry_ops.affects) */
	const uint8_t *hash;
	size_t hash_len;
	const uint8_t *config_pb; /* packed AgentConfigMap */
	size_t config_len;
	/*
	 * Proof of origin for agents that announced signature_capability: sent
	 * as a CustomMessage next to the remote config. NULL when none.
	 */
	const char *signature_capability;
	const char *signature_type;
	const uint8_t *signature_msg;
	size_t signature_len;
};

/* The answer to an agent's CSR (spec §3.8), given to opd_session_csr_answer. */
struct opd_csr_answer {
	int status;           /* 0 issued; OPD_EINVAL refused (BadRequest); else Unavailable */
	const char *cert_pem; /* status 0: the certificate and the CA bundle (borrowed) */
	const char *ca_pem;
	const char *message; /* refusal or unavailability: why (borrowed) */
};

/* The port implemented by the daemon's wiring (server.c). */
struct opd_registry_ops {
	/* Desired configuration for the agent: 0 with *out filled, or OPD_ENOTFOUND. */
	int (*desired)(void *data, const struct opd_agent *a, struct opd_desired *out);
	/* Fill a fresh random instance_uid (for RequestInstanceUid). */
	void (*new_uid)(void *data, uint8_t uid[OPD_UID_LEN]);
	void *data;
	/*
	 * After configurations changed: 0 when agent a, whose desired configuration
	 * was current, certainly still wants it. NULL: every agent recomputes.
	 */
	int (*affects)(void *data, const struct opd_agent *a);
};

/*
 * The port for agents' CSRs (spec §3.8), set after opd_registry_init (kept
 * apart from ops: another owner). request: check and sign the CSR (borrowed
 * for the call), then call opd_session_csr_answer(registry, token, uid,
 * answer) once, now or later. NULL: CSRs are ignored.
 */
struct opd_csr_port {
	void (*request)(void *data, const struct opd_agent *a, const uint8_t *csr, size_t len,
			uint64_t token);
	void *data;
};

/*
 * Where encoded CSR answers go (the endpoint): a packed ServerToAgent for
 * the agent uid, for the request token; retry_after_s is not 0 when it says
 * Unavailable (an HTTP poll then gets 503 with Retry-After). Set by the
 * transport; may be NULL.
 */
struct opd_csr_sink {
	void (*deliver)(void *data, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			const uint8_t *msg, size_t len, uint64_t retry_after_s);
	void *data;
};

struct opd_registry_settings {
	uint64_t heartbeat_interval_s; /* offered to agents; never 0 (default 30) */
	double http_timeout_factor;    /* HTTP agent disconnected after this × its poll interval
					  (default 3) */
	double phi_suspect;            /* default 8 */
	double phi_down;               /* default 16 */
	size_t max_agents;             /* default 1,000,000 */
	uint64_t capabilities;         /* ServerCapabilities we offer */
	const char *endpoint; /* our OpAMP URL, offered as destination_endpoint (borrowed) */
	const char
	    *custom_capabilities[4]; /* NULL-terminated; echoed to agents that announce them */
};

/* Cumulative histogram of push-to-receipt latency: config sent → first status report about it. */
#define OPD_LATENCY_BUCKETS 13
extern const uint64_t opd_latency_bounds_ms[OPD_LATENCY_BUCKETS]; /* upper bounds; +Inf after */

struct opd_latency_histogram {
	uint64_t buckets[OPD_LATENCY_BUCKETS + 1]; /* non-cumulative counts; last is +Inf */
	uint64_t count;
	uint64_t sum_ms;
};

void opd_latency_record(struct opd_latency_histogram *h, uint64_t ms);

struct opd_registry {
	struct opd_registry_settings settings;
	struct opd_registry_ops ops;
	struct opd_agent **buckets;
	size_t n_buckets;
	size_t n_agents;
	size_t n_connected;
	struct opd_list agents; /* all agents, in insertion order */
	uint64_t config_gen;    /* bumped by the daemon when any configuration changes */
	struct opd_latency_histogram receipt_latency;
	struct opd_csr_port csr;
	struct opd_csr_sink csr_sink;
	uint64_t csr_next_token; /* last token handed to csr.request */
	uint64_t csr_handed;     /* the token of the CSR the last receive handed off (0: none) */
};

void opd_registry_settings_default(struct opd_registry_settings *s);

void opd_registry_init(struct opd_registry *r, const struct opd_registry_settings *s,
		       const struct opd_registry_ops *ops);
void opd_registry_fini(struct opd_registry *r);

struct opd_agent *opd_registry_find(const struct opd_registry *r, const uint8_t uid[OPD_UID_LEN]);

/* Find or create. Returns NULL when max_agents is reached. *created set to 1 if new. */
struct opd_agent *opd_registry_get(struct opd_registry *r, const uint8_t uid[OPD_UID_LEN],
				   int *created);

/* Change an agent's key (server-assigned instance_uid). Fails (OPD_ECONFLICT) if taken. */
int opd_registry_rekey(struct opd_registry *r, struct opd_agent *a, const uint8_t uid[OPD_UID_LEN]);

void opd_registry_remove(struct opd_registry *r, struct opd_agent *a);

/*
 * Configurations changed: the desired configuration of every agent that
 * ops.affects names (or every agent) is recomputed lazily; the others keep
 * theirs. O(agents), each asking affects once.
 */
void opd_registry_configs_changed(struct opd_registry *r);
/* The same, calling moved(data, a) for each agent that had a current desired
 * configuration and may want another one now (its cache is stale by then). */
void opd_registry_configs_changed_each(struct opd_registry *r,
				       void (*moved)(void *data, struct opd_agent *a), void *data);

/* Health state of an agent at now_ms (monotonic). */
enum opd_health_state opd_registry_health(const struct opd_registry *r, const struct opd_agent *a,
					  uint64_t now_ms);

/* The heartbeat / poll interval the agent is expected to keep, in ms. */
uint64_t opd_registry_expected_interval_ms(const struct opd_registry *r, const struct opd_agent *a);

/*
 * Mark HTTP agents that stopped polling as disconnected (after
 * http_timeout_factor × their poll interval). Returns how many changed.
 */
size_t opd_registry_sweep(struct opd_registry *r, uint64_t now_ms);

#endif
