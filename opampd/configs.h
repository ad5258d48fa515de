/*
 * The configuration service: the single place that writes configurations and
 * answers "which configuration does this agent want". Today it writes the
 * node-local store directly; with Raft (issue #3) the same calls become
 * proposals applied by the state machine, and the callers do not change.
 *
 * It keeps the active version of every configuration in memory, ordered by
 * priority (highest first, ties by name), with the packed AgentConfigMap
 * ready to send, so matching an agent costs no I/O.
 */
#ifndef OPD_CONFIGS_H
#define OPD_CONFIGS_H

#include "clock.h"
#include "registry.h"
#include "store.h"
#include "validate.h"

struct opd_active_config; /* private */

struct opd_configs {
	struct opd_store store;
	const struct opd_clock *clock;
	struct opd_active_config *active; /* owned array, sorted by priority desc, name asc */
	size_t n_active;
	/* Called after every successful change (publish, rollback, delete). */
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

/* Open the store at path (":memory:" for tests) and load the active configurations. */
int opd_configs_open(struct opd_configs *c, const char *path, const struct opd_clock *clock)
    __attribute__((warn_unused_result));
void opd_configs_close(struct opd_configs *c);

/*
 * Validate and publish. Returns 0 with *out filled; OPD_EINVAL with *verr
 * filled when the input is refused (nothing is stored); OPD_ESTORE.
 */
int opd_configs_publish(struct opd_configs *c, const struct opd_publish *p,
			struct opd_put_result *out, uint8_t hash[OPD_CONFIG_HASH_LEN],
			struct opd_validation_error *verr);

/* Rollback to an existing version. 0, OPD_ENOTFOUND, OPD_ESTORE. */
int opd_configs_rollback(struct opd_configs *c, const char *name, uint64_t version,
			 const char *actor);

/* Delete a configuration. 0, OPD_ENOTFOUND, OPD_ESTORE. */
int opd_configs_delete(struct opd_configs *c, const char *name, const char *actor);

/* The registry port: desired configuration of agent a. 0 or OPD_ENOTFOUND. */
int opd_configs_desired(void *configs, const struct opd_agent *a, struct opd_desired *out);

#endif
