/*
 * The configuration store: sqlite3 tables for configurations, their numbered
 * versions and files, and for the fleet CA's certificates, revocations and
 * rotations, with forward-only migrations from schemas/sql/.
 *
 * Every write takes its timestamp and actor from the caller and reads no
 * clock, randomness or local setting, so that the Raft state machine (issue
 * #3) can call the same functions from apply() on every replica and get the
 * same bytes. Business outcomes (unknown name, unknown version) are returned
 * as codes, never logged here. Knows nothing of raft or agents: the FSM keeps
 * its applied index, HLC, request ids, signing keys and members here, and
 * snapshots are the serialized database.
 */
#ifndef OPD_STORE_H
#define OPD_STORE_H

#include "buf.h"
#include "err.h"
#include "kv.h"

#include <stddef.h>
#include <stdint.h>

struct sqlite3;
struct sqlite3_stmt;

#define OPD_CONFIG_HASH_LEN 32

/* Private to store.c: a prepared statement kept for reuse (its SQL is a string literal). */
struct opd_store_stmt {
	const char *sql;
	struct sqlite3_stmt *stmt;
	int busy; /* handed out and not yet given back */
};

#define OPD_STORE_STMT_CACHE 64

struct opd_checkpointer;

struct opd_store {
	struct sqlite3 *db;
	struct opd_checkpointer *ckpt; /* WAL checkpoints on a thread; NULL for memory stores */
	uint8_t *mapped; /* the image opd_store_serialize mapped, until released */
	size_t mapped_len;
	uint64_t file_images; /* images mapped so far */
	char errmsg[OPD_ERRMSG_SIZE];
	/* Private to store.c: statements prepared once per store (bench/PROFILE.md §1b). */
	struct opd_store_stmt stmts[OPD_STORE_STMT_CACHE];
	size_t n_stmts;
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
	/*
	 * Set by the Raft FSM (zero for a local write). version 0: this function
	 * picks latest + 1; otherwise it must be exactly latest + 1 (OPD_ECONFLICT).
	 * The rest is stored with the version for the signed record (sign.h);
	 * ts_ms is its hlc_wall_ms.
	 */
	uint64_t version;
	const uint8_t *signature; /* may be NULL (unsigned) */
	size_t signature_len;
	const char *key_id; /* may be NULL */
	uint64_t term;
	uint32_t hlc_logical;
	/*
	 * Keep at most this many versions of the configuration (0: all): a new
	 * version deletes the oldest beyond it, at most OPD_STORE_PRUNE_BATCH at a
	 * time so that lowering the limit never makes one long transaction.
	 */
	uint32_t history_limit;
};

#define OPD_STORE_PRUNE_BATCH 64

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
	char *message;          /* owned */
	char *actor;            /* owned */
	uint64_t created_ms;    /* the HLC wall time of the command that published it */
	struct opd_files files; /* owned; filled only by opd_store_get_version */
	/* As published (the signed record). Versions written before migration 0002 have
	 * no signature, an empty key_id, priority 0 with has_priority 0, and only the
	 * latest version of each configuration has its selector. */
	uint8_t *signature; /* owned, may be NULL when signature_len is 0 */
	size_t signature_len;
	char *key_id; /* owned, "" when unsigned */
	uint64_t term;
	uint32_t hlc_logical;
	int64_t priority;
	int has_priority;
	struct opd_kvs selector; /* owned, sorted */
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
 * config's selector and priority replaced. When in->version is not 0 and is
 * not that next number, nothing is written and OPD_ECONFLICT is returned
 * (checked first). When files, selector and priority all equal the active
 * version's, nothing is written and out->created = 0. One transaction.
 * Returns 0, OPD_EINVAL (empty name), OPD_ECONFLICT, or OPD_ESTORE.
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

/*
 * The highest version number ever used for name, deleted or not (the next
 * publish is this + 1); 0 when the name was never published, or when the
 * store cannot be read (errmsg set). For the leader's proposal: apply checks.
 */
uint64_t opd_store_latest_version(struct opd_store *st, const char *name);

/* One version with its files. 0, OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_get_version(struct opd_store *st, const char *name, uint64_t version,
			  struct opd_version_info *out);

/*
 * Change the selector and/or the priority of a live configuration without a
 * new version (NULL leaves that part as it is; both NULL is OPD_EINVAL).
 * Versions keep the selector they were published with. 0, OPD_ENOTFOUND,
 * OPD_EINVAL, OPD_ESTORE.
 */
int opd_store_set_selector(struct opd_store *st, const char *name, const struct opd_kvs *selector,
			   const int64_t *priority, const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));

/* Signing keys (sign.h). */
#define OPD_STORE_KEY_ID_MAX 64
#define OPD_STORE_PUBLIC_KEY_LEN 32

struct opd_signing_key {
	char key_id[OPD_STORE_KEY_ID_MAX + 1];
	uint8_t public_key[OPD_STORE_PUBLIC_KEY_LEN];
	int active;
	uint64_t added_ms;
	uint64_t retired_ms; /* 0 while not retired */
};

/*
 * Add a public key; with activate it becomes the only active key. 0,
 * OPD_EINVAL (key_id empty or over OPD_STORE_KEY_ID_MAX, key not 32 bytes),
 * OPD_ECONFLICT (key_id already known, even retired), OPD_ESTORE.
 */
int opd_store_add_signing_key(struct opd_store *st, const char *key_id, const uint8_t *public_key,
			      size_t len, int activate, const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));
/* Retire a key (no longer active; kept to verify old versions). 0, OPD_ENOTFOUND,
 * OPD_ECONFLICT (already retired), OPD_ESTORE. */
int opd_store_retire_signing_key(struct opd_store *st, const char *key_id, const char *actor,
				 uint64_t ts_ms) __attribute__((warn_unused_result));
/* One key by id, or the active one. 0 (*out filled), OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_get_signing_key(struct opd_store *st, const char *key_id,
			      struct opd_signing_key *out);
int opd_store_active_signing_key(struct opd_store *st, struct opd_signing_key *out);
/* Every key ordered by key_id; cb as for foreach_config (k valid during the call). */
int opd_store_foreach_signing_key(struct opd_store *st,
				  int (*cb)(void *data, const struct opd_signing_key *k),
				  void *data);

/* Idempotency records: the first outcome of a command carrying request_id. */
#define OPD_STORE_REQUEST_ID_MAX 64

/* How long a request id is remembered (idempotent retries), by the commands' clock. */
#define OPD_STORE_REQUEST_TTL_MS (24ull * 3600 * 1000)

struct opd_request_record {
	uint64_t ts_ms;   /* the command's HLC wall time: the row expires a TTL after it */
	int op;           /* the command's op case */
	char name[129];   /* the configuration (or key id) it named, truncated */
	uint64_t version; /* the version it produced, or 0 */
	int status;       /* enum opd_apply_status (fsm.h) */
};

/* 0 with *out filled, OPD_ENOTFOUND, OPD_EINVAL (id empty or too long), OPD_ESTORE. */
int opd_store_get_request(struct opd_store *st, const uint8_t *id, size_t len,
			  struct opd_request_record *out);
/*
 * Record the outcome of id (once: a second record is OPD_ECONFLICT), and
 * forget the records more than OPD_STORE_REQUEST_TTL_MS older than rec->ts_ms.
 * 0, OPD_EINVAL, OPD_ESTORE.
 */
int opd_store_put_request(struct opd_store *st, const uint8_t *id, size_t len,
			  const struct opd_request_record *rec) __attribute__((warn_unused_result));

/* Cluster members' addresses. */
struct opd_member {
	uint64_t id;
	const char *raft_address; /* borrowed, valid during the callback */
	const char *admin_url;
};

/* Add or replace member id (not 0). 0, OPD_EINVAL, OPD_ESTORE. */
int opd_store_set_member(struct opd_store *st, uint64_t id, const char *raft_address,
			 const char *admin_url, const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));
/* 0, OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_remove_member(struct opd_store *st, uint64_t id, const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));
/* The admin URL of member id into buf (NUL-terminated). 0, OPD_ENOTFOUND, OPD_ETOOBIG (does
 * not fit cap; buf unusable), OPD_ESTORE. */
int opd_store_member_admin_url(struct opd_store *st, uint64_t id, char *buf, size_t cap);
/* Every member ordered by id; cb as for foreach_config. */
int opd_store_foreach_member(struct opd_store *st,
			     int (*cb)(void *data, const struct opd_member *m), void *data);

/* The audit trail. Pointers are borrowed, valid during the callback. */
struct opd_audit_entry {
	uint64_t seq;
	uint64_t ts_ms;
	const char *actor;
	const char *action; /* put, rollback, delete, selector, key-add, key-retire, member-set,
			       member-remove, cert-issue, cert-revoke, ca-add, ca-activate,
			       ca-retire, rotation-start, refused */
	const char *name;
	uint64_t version; /* 0 when none */
	const char *detail;
};

/* Append a row (for outcomes the FSM records itself, such as refused commands). */
int opd_store_audit(struct opd_store *st, uint64_t ts_ms, const char *actor, const char *action,
		    const char *name, uint64_t version, const char *detail)
    __attribute__((warn_unused_result));
/* At most limit rows (0: all), newest first; cb as for foreach_config. */
int opd_store_foreach_audit(struct opd_store *st, size_t limit,
			    int (*cb)(void *data, const struct opd_audit_entry *e), void *data);

/*
 * The fleet CA and agent certificates (migration 0003). Only public material
 * is stored: CA and agent certificates, never a private key. Times named
 * not_before/not_after are seconds since the epoch (as in X.509); *_ms are
 * the HLC wall times of the commands. Fingerprints are SHA-256 of the DER
 * certificate in 64 lowercase hex digits; instance_uids are 32 lowercase hex.
 */
#define OPD_STORE_FP_LEN 64
#define OPD_STORE_UID_HEX_LEN 32
#define OPD_STORE_ROTATION_ID_MAX 64
#define OPD_STORE_CERT_REASON_MAX 24

struct opd_ca_info {
	char fingerprint[OPD_STORE_FP_LEN + 1];
	char state[8];  /* "active" (issues), "trusted" (in the bundle), "retired" */
	char *subject;  /* owned */
	char *cert_pem; /* owned */
	uint64_t not_before, not_after;
	uint64_t added_ms, activated_ms, retired_ms; /* 0 when not (yet) */
};

void opd_ca_info_fini(struct opd_ca_info *c);

/* A CA certificate to add (borrowed fields). */
struct opd_new_ca {
	const char *fingerprint;
	const char *subject;
	const char *cert_pem;
	uint64_t not_before, not_after;
};

/*
 * Add a CA certificate; with activate it becomes the active CA and the one
 * active before stays trusted (the overlap of a CA rotation). 0, OPD_EINVAL
 * (malformed fingerprint, empty PEM), OPD_ECONFLICT (fingerprint known), OPD_ESTORE.
 */
int opd_store_add_ca(struct opd_store *st, const struct opd_new_ca *ca, int activate,
		     const char *actor, uint64_t ts_ms) __attribute__((warn_unused_result));
/* Make a trusted CA the active one (the previous one stays trusted). Already active: 0.
 * 0, OPD_ENOTFOUND, OPD_ECONFLICT (retired), OPD_ESTORE. */
int opd_store_activate_ca(struct opd_store *st, const char *fingerprint, const char *actor,
			  uint64_t ts_ms) __attribute__((warn_unused_result));
/* Retire a trusted CA (it leaves the trust bundle). 0, OPD_ENOTFOUND, OPD_ECONFLICT (the
 * active CA, or already retired), OPD_ESTORE. */
int opd_store_retire_ca(struct opd_store *st, const char *fingerprint, const char *actor,
			uint64_t ts_ms) __attribute__((warn_unused_result));
/* One CA by fingerprint, or the active one. 0 (*out owned by the caller), OPD_ENOTFOUND,
 * OPD_ESTORE. */
int opd_store_get_ca(struct opd_store *st, const char *fingerprint, struct opd_ca_info *out);
int opd_store_active_ca(struct opd_store *st, struct opd_ca_info *out);
/* Every CA, oldest first (c valid during the call); cb as for foreach_config. */
int opd_store_foreach_ca(struct opd_store *st, int (*cb)(void *data, const struct opd_ca_info *c),
			 void *data);

/* An issued certificate to record (borrowed fields). */
struct opd_new_cert {
	uint64_t serial; /* 1 .. INT64_MAX */
	const char *instance_uid;
	const char *subject;
	uint64_t not_before, not_after;
	const char *fingerprint;
	const char *ca_fingerprint;
	const char *cert_pem;
	const char *reason;      /* csr, server, renewal, rotation */
	const char *rotation_id; /* may be NULL or "" */
};

struct opd_cert_info {
	uint64_t serial;
	char instance_uid[OPD_STORE_UID_HEX_LEN + 1];
	char fingerprint[OPD_STORE_FP_LEN + 1];
	char ca_fingerprint[OPD_STORE_FP_LEN + 1];
	char reason[OPD_STORE_CERT_REASON_MAX + 1];
	char rotation_id[OPD_STORE_ROTATION_ID_MAX + 1];
	char *subject;  /* owned */
	char *cert_pem; /* owned */
	char *actor;    /* owned */
	uint64_t not_before, not_after, issued_ms;
	int revoked;
	uint64_t revoked_ms;
	char revoke_reason[OPD_STORE_CERT_REASON_MAX + 1];
};

void opd_cert_info_fini(struct opd_cert_info *c);

/*
 * Record an issued certificate and advance the serial counter. 0, OPD_EINVAL
 * (a malformed field), OPD_ECONFLICT (serial or fingerprint already used, or
 * the issuing CA is retired), OPD_ENOTFOUND (unknown issuing CA), OPD_ESTORE.
 */
int opd_store_add_certificate(struct opd_store *st, const struct opd_new_cert *c, const char *actor,
			      uint64_t ts_ms) __attribute__((warn_unused_result));
/* Revoke a certificate. 0, OPD_ENOTFOUND, OPD_ECONFLICT (already revoked), OPD_EINVAL (empty
 * or too long reason), OPD_ESTORE. */
int opd_store_revoke_certificate(struct opd_store *st, uint64_t serial, const char *reason,
				 const char *actor, uint64_t ts_ms)
    __attribute__((warn_unused_result));
/* The highest serial ever recorded (0: none): the next one is this + 1. 0 or OPD_ESTORE. */
int opd_store_last_serial(struct opd_store *st, uint64_t *out);
/* One certificate. 0 (*out owned by the caller), OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_get_certificate(struct opd_store *st, uint64_t serial, struct opd_cert_info *out);

/* Which certificates to list. */
struct opd_cert_filter {
	const char *instance_uid; /* 32 lowercase hex, or NULL: every agent */
	uint64_t expiring_before; /* not_after <= this (seconds), or 0: any */
	uint64_t valid_at;        /* not_after >= this (seconds), or 0: expired ones too */
	int by_expiry;            /* order by not_after, then serial; else by serial */
	int exclude_revoked;
	size_t limit; /* 0: all */
};

/* Certificates matching f (NULL: all); c valid during the call; cb as for foreach_config. */
int opd_store_foreach_certificate(struct opd_store *st, const struct opd_cert_filter *f,
				  int (*cb)(void *data, const struct opd_cert_info *c), void *data);

/* A revoked certificate, for the CRL (borrowed strings, valid during the callback). */
struct opd_revocation {
	uint64_t serial;
	const char *ca_fingerprint;
	const char *reason;
	uint64_t revoked_ms;
	uint64_t not_after;
};

/* Revocations of certificates with not_after >= valid_at (0: all), by serial; cb as above. */
int opd_store_foreach_revocation(struct opd_store *st, uint64_t valid_at,
				 int (*cb)(void *data, const struct opd_revocation *r), void *data);

/* A certificate rotation. */
struct opd_rotation_info {
	char id[OPD_STORE_ROTATION_ID_MAX + 1];
	struct opd_kvs selector; /* owned, sorted */
	uint64_t started_ms;
	char *actor; /* owned */
};

void opd_rotation_info_fini(struct opd_rotation_info *r);

/* Record a rotation. 0, OPD_EINVAL (id empty or too long), OPD_ECONFLICT (id used), OPD_ESTORE. */
int opd_store_add_rotation(struct opd_store *st, const char *id, const struct opd_kvs *selector,
			   const char *actor, uint64_t ts_ms) __attribute__((warn_unused_result));
/* One rotation. 0 (*out owned by the caller), OPD_ENOTFOUND, OPD_ESTORE. */
int opd_store_get_rotation(struct opd_store *st, const char *id, struct opd_rotation_info *out);
/* Every rotation, newest first (r valid during the call); cb as for foreach_config. */
int opd_store_foreach_rotation(struct opd_store *st,
			       int (*cb)(void *data, const struct opd_rotation_info *r),
			       void *data);

/*
 * The state machine's own position: the last applied raft index and the HLC
 * of the last applied command (meta rows; 0 when never written). set writes
 * inside whatever transaction is open, so it commits with the entry.
 */
int opd_store_get_applied(struct opd_store *st, uint64_t *index, uint64_t *hlc_wall_ms,
			  uint32_t *hlc_logical);
int opd_store_set_applied(struct opd_store *st, uint64_t index, uint64_t hlc_wall_ms,
			  uint32_t hlc_logical) __attribute__((warn_unused_result));

/*
 * The outer transaction of one applied entry: the store's writers nest inside
 * it as savepoints. begin fails (OPD_ESTORE) when a transaction is open;
 * rollback is safe when none is.
 */
int opd_store_begin(struct opd_store *st) __attribute__((warn_unused_result));
int opd_store_commit(struct opd_store *st) __attribute__((warn_unused_result));
void opd_store_rollback(struct opd_store *st);

/*
 * The whole database as bytes, released with opd_store_image_free on the same
 * store (opd_store_close releases one still out). A file store maps its
 * database file read-only once a checkpoint has copied the whole WAL into it,
 * and holds checkpoints until the image is released: a snapshot of a large
 * store costs the loop a checkpoint, not a read of every page. Otherwise
 * (memory stores, a WAL not all copied, an image already out) it is
 * sqlite3_serialize's copy. 0 or OPD_ESTORE. Not while a transaction is open.
 */
int opd_store_serialize(struct opd_store *st, uint8_t **out, size_t *len)
    __attribute__((warn_unused_result));
void opd_store_image_free(struct opd_store *st, uint8_t *image);

/*
 * Replace the whole database with serialized bytes (borrowed; copied). They
 * are loaded into a temporary memory database, checked (integrity, a schema
 * version this binary knows, which is then migrated forward) and copied over
 * with the backup API, so a file store stays a file store. On failure the
 * store is unchanged: OPD_EINVAL (not a usable database) or OPD_ESTORE.
 */
int opd_store_restore(struct opd_store *st, const uint8_t *p, size_t len)
    __attribute__((warn_unused_result));

/*
 * Logical dump of every table in a canonical text form (ordered rows, hex
 * blobs), for comparing replicas and snapshot round trips.
 */
int opd_store_dump(struct opd_store *st, struct opd_buf *out);

#endif
