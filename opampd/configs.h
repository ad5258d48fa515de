/*
 * The configuration service: the single place that writes configurations and
 * answers "which configuration does this agent want".
 *
 * Writes go through Raft: on the leader a request is validated, given its
 * version number (latest + 1, counting versions still in flight), stamped with
 * the hybrid logical clock and the term, signed, framed as a command and
 * proposed; the callback runs once the entry is applied (or the outcome is
 * unknown). Without a node (unit tests) the same command is applied directly
 * through the state machine, so the code path after proposing is the same.
 *
 * Reads come from the local store. The active version of every configuration
 * is kept in memory, ordered by priority (highest first, ties by name), with
 * the packed AgentConfigMap ready to send and its signature checked: a version
 * whose signature does not verify is never offered to agents.
 */
#ifndef OPD_CONFIGS_H
#define OPD_CONFIGS_H

#include "clock.h"
#include "cmd.h"
#include "fsm.h"
#include "hlc.h"
#include "node.h"
#include "registry.h"
#include "sign.h"
#include "store.h"
#include "validate.h"

struct opd_node;
struct opd_active_config; /* private */
struct opd_pending_write; /* private */

#define OPD_REQUEST_ID_LEN 16

/*
 * Agents announcing this custom capability receive, next to each remote
 * config, a CustomMessage (type OPD_SIGNATURE_MESSAGE_TYPE) whose data is a
 * JSON object with every field of the signed version record, the key id and
 * the Ed25519 signature (base64): enough to verify it (see README).
 */
#define OPD_SIGNATURE_CAPABILITY "io.opampd.config-signature"
#define OPD_SIGNATURE_MESSAGE_TYPE "config-signature"

/* Configuration names, each once (owned). */
struct opd_names {
	char **v;
	size_t n;
};

struct opd_configs {
	struct opd_store store;
	struct opd_fsm fsm;
	struct opd_node *node;           /* borrowed; NULL: apply directly (tests) */
	const struct opd_signer *signer; /* borrowed; signs new versions on the leader */
	const struct opd_clock *clock;
	struct opd_hlc hlc;     /* this node's clock for stamping commands */
	uint32_t history_limit; /* versions kept per configuration (0: all); see PutVersion */
	/*
	 * The active set: read with opd_configs_settle first. An applied change
	 * only names the configuration in stale; it is read, verified and packed
	 * when something needs the set (an agent's desired configuration, a
	 * metric), so versions superseded before then are never loaded.
	 */
	struct opd_active_config *active; /* owned array, sorted by priority desc, name asc */
	size_t n_active;
	struct opd_names stale; /* changed since the last settle */
	/*
	 * Changed since the agents' desired configurations were last brought up to
	 * date (opd_configs_affects, opd_configs_touched_clear); touched_all: a
	 * reload, or too many names to be worth checking one by one.
	 */
	struct opd_names touched;
	int touched_all;
	ptrdiff_t *touched_at; /* index in active of each touched name, -1: not served */
	int touched_resolved;  /* touched_at is current (reset by every change) */
	struct opd_pending_write *pending; /* proposals in flight (leader) */
	uint64_t unverified; /* active versions refused now: bad or missing signature */
	/* Called after every applied change of configurations. */
	void (*changed)(void *data);
	void *changed_data;
	char errmsg[OPD_ERRMSG_SIZE];
};

/* What an operator asks to publish (borrowed). Selector and files need not be sorted. */
struct opd_publish {
	const char *name;
	const struct opd_kvs *selector;
	int64_t priority;
	const struct opd_files *files;
	const char *message;
	const char *actor;
};

/* The outcome of a write. */
struct opd_write_result {
	/*
	 * 0 applied; OPD_EINVAL refused before proposing (verr says why);
	 * OPD_ENOTFOUND / OPD_ECONFLICT refused by the state machine;
	 * OPD_ENOTLEADER leadership lost: outcome unknown, retry with the same
	 * request id; OPD_ECANCELED shutting down; OPD_ESTORE local fault.
	 */
	int status;
	uint64_t version;
	int created;    /* publish: 0 when identical to the active version */
	int duplicate;  /* the request id was applied before: this is its result */
	uint64_t index; /* raft index at which the change was applied (0 when nothing was) */
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	char message[256];
	struct opd_validation_error verr;
};

typedef void (*opd_configs_cb)(void *data, const struct opd_write_result *res);

/* Open the store at path (":memory:" for tests) and the state machine over it. */
int opd_configs_open(struct opd_configs *c, const char *path, const struct opd_clock *clock)
    __attribute__((warn_unused_result));
void opd_configs_close(struct opd_configs *c);

/*
 * The writes. Each returns 0 when cb will run (possibly before the call
 * returns), or OPD_ENOTLEADER when this node cannot write now (cb never runs).
 * request_id (16 bytes) makes a retry idempotent.
 */
int opd_configs_publish(struct opd_configs *c, const struct opd_publish *p,
			const uint8_t request_id[OPD_REQUEST_ID_LEN], opd_configs_cb cb,
			void *data);
int opd_configs_rollback(struct opd_configs *c, const char *name, uint64_t version,
			 const char *actor, const uint8_t request_id[OPD_REQUEST_ID_LEN],
			 opd_configs_cb cb, void *data);
int opd_configs_delete(struct opd_configs *c, const char *name, const char *actor,
		       const uint8_t request_id[OPD_REQUEST_ID_LEN], opd_configs_cb cb, void *data);

/*
 * Frame a stamped command and submit it: proposed through raft, or, without a
 * node (tests), applied at once by the state machine — the same apply as on
 * every replica — with cb run before returning. Returns 0 when cb will run,
 * or an OPD_E* code (OPD_ENOTLEADER, OPD_EAGAIN, OPD_ETOOBIG) when it never will.
 * Shared by every writer of the replicated state (configurations, certificates).
 */
int opd_configs_submit(struct opd_configs *c, opd_cmd *cmd, opd_node_propose_cb cb, void *data);

/* Record a member's addresses in the replicated state (SetMember). */
int opd_configs_set_member(struct opd_configs *c, uint64_t id, const char *raft_address,
			   const char *admin_url, opd_configs_cb cb, void *data);

/*
 * Make sure the signer's public key is registered (and active) in the
 * replicated state; proposes AddSigningKey on the leader when it is not.
 * Called when this node becomes leader.
 */
void opd_configs_ensure_key(struct opd_configs *c);

/* Rebuild the in-memory active set after the store changed (apply, restore). */
void opd_configs_reload(struct opd_configs *c);

/*
 * Verify a stored version's signature against the replicated public key.
 * 1 verified, 0 not (missing signature, unknown key, or a bad signature).
 */
int opd_configs_verify(struct opd_configs *c, const struct opd_version_info *v,
		       const struct opd_config_info *info);

/* Load every stale configuration: n_active and unverified are current afterwards. */
void opd_configs_settle(struct opd_configs *c);

/* Configurations served, and active versions refused (bad signature), settled first. */
size_t opd_configs_served(struct opd_configs *c);
uint64_t opd_configs_unverified(struct opd_configs *c);

/*
 * The registry port: desired configuration of agent a (settles first). 0 or
 * OPD_ENOTFOUND. The pointers in *out stay valid until the next applied change.
 */
int opd_configs_desired(void *configs, const struct opd_agent *a, struct opd_desired *out);

/*
 * The registry port: 1 when agent a, whose desired configuration was current
 * before the changes applied since the last opd_configs_touched_clear, may
 * want another one now; 0 when it certainly does not. A change of
 * configuration X matters to the agents that want X and to those X matches
 * and would rank above what they want: the others keep their configuration
 * without a scan of every configuration.
 */
int opd_configs_affects(void *configs, const struct opd_agent *a);

/* The agents are up to date with every applied change: forget the touched names. */
void opd_configs_touched_clear(struct opd_configs *c);

#endif
