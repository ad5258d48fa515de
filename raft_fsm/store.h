/*
 * The configuration store: sqlite3 tables for configurations, their numbered
 * versions and files, with forward-only migrations from schemas/sql/.
 *
 * Every write takes its timestamp and actor from the caller and reads no
 * clock, randomness or local setting, so that the Raft state machine (issue
 * #3) can call the same functions from apply() on every replica and get the
 * same bytes. Business outcomes (unknown name, unknown version) are returned
 * as codes, never logged here. Knows nothing of raft or agents.
 */
#ifndef OPD_STORE_H
#define OPD_STORE_H

#include "buf.h"
#include "err.h"
#include "kv.h"

#include <stddef.h>
#include <stdint.h>

struct sqlite3;

#define OPD_CONFIG_HASH_LEN 32

struct opd_store {
	struct sqlite3 *db;
	char errmsg[OPD_ERRMSG_SIZE];
};

/* One file of a configuration version (an AgentConfigMap entry). */
struct opd_file {
	char *name;         /* owned; map key, may be "" */
	char *content_type; /* owned */
	uint8_t *body;      /* owned */
	size_t len;
};

struct opd_files {
	struct opd_file *v; /* owned array */
	size_t n;
};

void opd_files_init(struct opd_files *f);
void opd_files_fini(struct opd_files *f);
/* Append copies. */
void opd_files_add(struct opd_files *f, const char *name, const char *content_type,
		   const void *body, size_t len);
/* Sort by name: the canonical order. */
void opd_files_sort(struct opd_files *f);

/* A request to publish a new version of a configuration (borrowed fields). */
struct opd_put_version {
	const char *name;
	const struct opd_kvs *selector; /* sorted (opd_kvs_sort) */
	int64_t priority;
	const struct opd_files *files;     /* sorted (opd_files_sort) */
	uint8_t hash[OPD_CONFIG_HASH_LEN]; /* opd_config_hash(files) */
	const char *message;               /* may be "" */
	const char *actor;                 /* who asked, for the audit trail */
	uint64_t ts_ms;                    /* stamped by the writer, never read from a clock here */
};

struct opd_put_result {
	uint64_t version; /* the new version, or the existing one when !created */
	int created; /* 0: files, selector and priority equal the active version's; nothing written
		      */
};

/* Summary of one configuration (not deleted). */
struct opd_config_info {
	char *name;              /* owned */
	struct opd_kvs selector; /* owned, sorted */
	int64_t priority;
	uint64_t active_version;
	uint64_t latest_version;
	uint8_t active_hash[OPD_CONFIG_HASH_LEN];
	uint64_t created_ms, updated_ms;
};

/* One stored version. */
struct opd_version_info {
	char *name; /* owned */
	uint64_t version;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	char *message; /* owned */
	char *actor;   /* owned */
	uint64_t created_ms;
	struct opd_files files; /* owned; filled only by opd_store_get_version */
};

void opd_config_info_fini(struct opd_config_info *c);
void opd_version_info_fini(struct opd_version_info *v);

/*
 * Open (creating if needed) the database at path (":memory:" for tests) and
 * run pending migrations. Returns 0 or OPD_ESTORE with st->errmsg set; on
 * failure st holds nothing to release but opd_store_close is still safe.
 */
int opd_store_open(struct opd_store *st, const char *path) __attribute__((warn_unused_result));
void opd_store_close(struct opd_store *st);
const char *opd_store_errmsg(const struct opd_store *st);

/*
 * Publish a version: the next number after the highest ever used for this
 * name (numbers are never reused, even after delete), made active, with the
 * config's selector and priority replaced. When files, selector and priority
 * all equal the active version's, nothing is written and out->created = 0.
 * One transaction. Returns 0, OPD_EINVAL (empty name), or OPD_ESTORE.
 */
int opd_store_put_version(struct opd_store *st, const struct opd_put_version *in,
			  struct opd_put_result *out) __attribute__((warn_unused_result));

/* Make an existing version active (rollback). 0, OPD_ENOTFOUND (name or version), OPD_ESTORE. */
int opd_store_set_active(struct opd_store *st, const char *name, uint64_t version,
			 const char *actor, uint64_t ts_ms) __attribute__((warn_unused_result));

/* Delete a configuration: it stops matching agents; its versions stay for the audit. */
int opd_store_delete(struct opd_store *st, const char *name, const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));

/* Call cb for every configuration, ordered by name. cb returning non-zero stops (returned). */
int opd_store_foreach_config(struct opd_store *st,
			     int (*cb)(void *data, const struct opd_config_info *c), void *data);

/* One configuration by name. 0, OPD_ENOTFOUND, OPD_ESTORE. *out owned by the caller. */
int opd_store_get_config(struct opd_store *st, const char *name, struct opd_config_info *out);

/* Versions of a configuration, newest first, without files. cb as above. */
int opd_store_foreach_version(struct opd_store *st, const char *name,
			      int (*cb)(void *data, const struct opd_version_info *v), void *data);

/* One version with its files. 0, OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_get_version(struct opd_store *st, const char *name, uint64_t version,
			  struct opd_version_info *out);

/*
 * Logical dump of every table in a canonical text form (ordered rows, hex
 * blobs), for comparing replicas and snapshot round trips.
 */
int opd_store_dump(struct opd_store *st, struct opd_buf *out);

#endif
