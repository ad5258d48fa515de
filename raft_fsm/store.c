#define LOG_COMPONENT "store"

#include "store.h"

#include "checkpointer.h"
#include "log.h"
#include "mem.h"
#include "sql_migrations.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Statements are prepared once per store and kept (st->stmts, keyed by the
 * address of their SQL literal): compiling them on every call was a quarter
 * of a configuration write's instructions (bench/PROFILE.md §1b). A statement
 * still in use when its SQL is asked for again (a nested query) is prepared
 * afresh, and built SQL (dump_table) never enters the cache.
 */

#define SAVEPOINT_NAME "opd_store"

static int fail(struct opd_store *st, const char *what)
{
	opd_errmsg_printf(st->errmsg, "%s: %s", what, sqlite3_errmsg(st->db));
	return OPD_ESTORE;
}

static int exec(struct opd_store *st, const char *sql, const char *what)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, what);
	return 0;
}

/* A cached statement for sql, marked busy, or NULL when none is free. */
static sqlite3_stmt *stmt_cached(struct opd_store *st, const char *sql)
{
	struct opd_store_stmt *e;

	for (size_t i = 0; i < st->n_stmts; i++) {
		e = &st->stmts[i];
		if (e->sql != sql)
			continue;
		if (e->busy || strcmp(sqlite3_sql(e->stmt), sql) != 0)
			return NULL;
		e->busy = 1;
		return e->stmt;
	}
	if (st->n_stmts == OPD_STORE_STMT_CACHE)
		return NULL;
	e = &st->stmts[st->n_stmts];
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &e->stmt, NULL) !=
	    SQLITE_OK) {
		sqlite3_finalize(e->stmt);
		e->stmt = NULL;
		return NULL; /* prepared again below, which reports the error */
	}
	e->sql = sql;
	e->busy = 1;
	st->n_stmts++;
	return e->stmt;
}

/* Give back a statement from vprepare: reset for reuse if cached, finalized otherwise. */
static void stmt_done(struct opd_store *st, sqlite3_stmt *stmt)
{
	if (stmt == NULL)
		return;
	for (size_t i = 0; i < st->n_stmts; i++) {
		if (st->stmts[i].stmt != stmt)
			continue;
		/* Also ends the statement's read, as finalizing it would. */
		sqlite3_reset(stmt);
		/* Bound strings are SQLITE_STATIC: drop them with the caller's buffers. */
		sqlite3_clear_bindings(stmt);
		st->stmts[i].busy = 0;
		return;
	}
	sqlite3_finalize(stmt);
}

static void stmt_cache_clear(struct opd_store *st)
{
	for (size_t i = 0; i < st->n_stmts; i++)
		sqlite3_finalize(st->stmts[i].stmt);
	st->n_stmts = 0;
}

/*
 * Prepare sql and bind its parameters, described by types: 't' const char *
 * (NULL binds ""), 'i' int64_t, 'u' uint64_t (stored as its int64 bit
 * pattern), 'b' const void * then size_t. Strings and blobs are bound
 * SQLITE_STATIC: they must outlive the statement, which every caller finalizes
 * before returning.
 */
static int vprepare(struct opd_store *st, sqlite3_stmt **out, bool cache, const char *sql,
		    const char *types, va_list ap)
{
	sqlite3_stmt *stmt = cache ? stmt_cached(st, sql) : NULL;
	int rc = SQLITE_OK;

	if (stmt == NULL && sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		stmt_done(st, stmt);
		return fail(st, "prepare");
	}
	for (int i = 1; rc == SQLITE_OK && *types; i++, types++) {
		switch (*types) {
		case 't': {
			const char *s = va_arg(ap, const char *);
			rc = sqlite3_bind_text(stmt, i, s ? s : "", -1, SQLITE_STATIC);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(stmt, i, va_arg(ap, int64_t));
			break;
		case 'u':
			rc = sqlite3_bind_int64(stmt, i, (sqlite3_int64)va_arg(ap, uint64_t));
			break;
		case 'b': {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			/* A NULL pointer would bind SQL NULL; an empty body is an empty blob. */
			if (n == 0)
				rc = sqlite3_bind_zeroblob(stmt, i, 0);
			else
				rc = sqlite3_bind_blob64(stmt, i, p, n, SQLITE_STATIC);
			break;
		}
		default:
			abort(); /* programmer error in a type string */
		}
	}
	if (rc != SQLITE_OK) {
		fail(st, "bind");
		stmt_done(st, stmt);
		return OPD_ESTORE;
	}
	*out = stmt;
	return 0;
}

static int query(struct opd_store *st, sqlite3_stmt **out, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = vprepare(st, out, true, sql, types, ap);
	va_end(ap);
	return rc;
}

/* As query(), for SQL built at run time: prepared for this one use. */
static int query_once(struct opd_store *st, sqlite3_stmt **out, const char *sql, const char *types,
		      ...)
{
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = vprepare(st, out, false, sql, types, ap);
	va_end(ap);
	return rc;
}

/* Run a statement that returns no rows. */
static int run(struct opd_store *st, const char *sql, const char *types, ...)
{
	sqlite3_stmt *stmt;
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = vprepare(st, &stmt, true, sql, types, ap);
	va_end(ap);
	if (rc != 0)
		return rc;
	rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : fail(st, "write");
	stmt_done(st, stmt);
	return rc;
}

/*
 * Step a query: 1 for a row, 0 when done, OPD_ESTORE (errmsg set) on error.
 */
static int step(struct opd_store *st, sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return fail(st, "read");
}

static char *col_strdup(sqlite3_stmt *stmt, int i)
{
	const unsigned char *t = sqlite3_column_text(stmt, i);

	if (t == NULL)
		return opd_xstrdup("");
	return opd_xstrndup((const char *)t, (size_t)sqlite3_column_bytes(stmt, i));
}

static uint64_t col_u64(sqlite3_stmt *stmt, int i)
{
	return (uint64_t)sqlite3_column_int64(stmt, i);
}

/* The first column of a query's first row into out (0 when there is no row): 0 or OPD_ESTORE. */
static int query_u64(struct opd_store *st, uint64_t *out, const char *sql, const char *types, ...)
{
	sqlite3_stmt *stmt;
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = vprepare(st, &stmt, true, sql, types, ap);
	va_end(ap);
	if (rc != 0)
		return rc;
	rc = step(st, stmt);
	*out = rc == 1 ? col_u64(stmt, 0) : 0;
	stmt_done(st, stmt);
	return rc < 0 ? rc : 0;
}

static int col_hash(struct opd_store *st, sqlite3_stmt *stmt, int i,
		    uint8_t out[OPD_CONFIG_HASH_LEN])
{
	const void *p = sqlite3_column_blob(stmt, i);

	if (p == NULL || sqlite3_column_bytes(stmt, i) != OPD_CONFIG_HASH_LEN) {
		opd_errmsg_printf(st->errmsg, "corrupt store: hash is not %d bytes",
				  OPD_CONFIG_HASH_LEN);
		return OPD_ESTORE;
	}
	memcpy(out, p, OPD_CONFIG_HASH_LEN);
	return 0;
}

/*
 * Transactions. A write opens BEGIN IMMEDIATE, or a savepoint when the caller
 * (the Raft FSM, which also records the applied index) already holds a
 * transaction, so the same function works alone and inside apply().
 */
static int tx_begin(struct opd_store *st, bool *nested)
{
	*nested = !sqlite3_get_autocommit(st->db);
	return exec(st, *nested ? "SAVEPOINT " SAVEPOINT_NAME : "BEGIN IMMEDIATE", "begin");
}

static int tx_commit(struct opd_store *st, bool nested)
{
	return exec(st, nested ? "RELEASE " SAVEPOINT_NAME : "COMMIT", "commit");
}

/* Keeps st->errmsg: the failure that made us roll back is the one to report. */
static void tx_rollback(struct opd_store *st, bool nested)
{
	if (nested)
		sqlite3_exec(st->db, "ROLLBACK TO " SAVEPOINT_NAME "; RELEASE " SAVEPOINT_NAME,
			     NULL, NULL, NULL);
	else if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int migrate(struct opd_store *st)
{
	uint64_t have;
	size_t want = 0;
	int rc;

	while (opd_sql_migrations[want] != NULL)
		want++;
	if ((rc = query_u64(st, &have, "PRAGMA user_version", "")) != 0)
		return rc;
	if (have > want) { /* a negative user_version too */
		opd_errmsg_printf(st->errmsg,
				  "database schema version %lld is newer than this binary's (%zu)",
				  (long long)have, want);
		return OPD_ESTORE;
	}
	for (size_t i = (size_t)have; i < want; i++) {
		char pragma[64];

		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %zu", i + 1);
		if ((rc = exec(st, "BEGIN IMMEDIATE", "begin")) != 0)
			return rc;
		if ((rc = exec(st, opd_sql_migrations[i], "sql")) != 0 ||
		    (rc = exec(st, pragma, "user_version")) != 0 ||
		    (rc = exec(st, "COMMIT", "commit")) != 0) {
			opd_errmsg_wrapf(st->errmsg, "migration %zu", i + 1);
			tx_rollback(st, false);
			return rc;
		}
	}
	return 0;
}

/*
 * Process-wide, before sqlite initializes (so the first store opened decides;
 * later it is a harmless SQLITE_MISUSE): no memory statistics. Debian's sqlite
 * counts every allocation under one global mutex, and builds without its
 * lookaside allocator, so every small allocation pays it: 15 % of a put.
 */
static void configure_sqlite(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int opd_store_open(struct opd_store *st, const char *path)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int rc;

	pthread_once(&once, configure_sqlite);
	*st = (struct opd_store){0};
	if (path == NULL) {
		opd_errmsg_printf(st->errmsg, "open: no path");
		return OPD_ESTORE;
	}
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		opd_errmsg_printf(st->errmsg, "open %s: %s", path,
				  st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto fail;
	}
	/* WAL means nothing for a memory database (and "" is a private temporary one). */
	if (strcmp(path, ":memory:") != 0 && path[0] != '\0' &&
	    exec(st, "PRAGMA journal_mode=WAL", "journal_mode") != 0)
		goto fail;
	/*
	 * 16 MiB of page cache (sqlite's default is 2 MiB): a group commit's
	 * batch (50 ms of entries, raft_fsm/node.c) keeps its dirty pages in the
	 * cache until the COMMIT instead of spilling them into the WAL halfway,
	 * to be written again at the COMMIT.
	 *
	 * Statement journals in memory: inside a batch's transaction every
	 * statement that may change several rows or fail a foreign key (a
	 * selector's DELETE, a pruned version's) first copies the pages it
	 * touches that the batch already changed, and past 64 KiB sqlite spills
	 * that copy into a temporary file: 44 KiB written per publish at one
	 * writer, five times the WAL's share (bench/PROFILE.md).
	 */
	if (exec(st, "PRAGMA synchronous=NORMAL", "synchronous") != 0 ||
	    exec(st, "PRAGMA cache_size=-16384", "cache_size") != 0 ||
	    exec(st, "PRAGMA temp_store=MEMORY", "temp_store") != 0 ||
	    exec(st, "PRAGMA foreign_keys=ON", "foreign_keys") != 0)
		goto fail;
	if (migrate(st) != 0)
		goto fail;
	if (sqlite3_busy_timeout(st->db, 1000) != SQLITE_OK) /* the checkpoint thread's locks */
		goto fail;
	if (strcmp(path, ":memory:") != 0 && path[0] != '\0' &&
	    opd_checkpointer_start(st->db, path, &st->ckpt, st->errmsg) != 0)
		log_warn("store %s: %s; checkpoints stay on the writer's thread", path, st->errmsg);
	return 0;
fail:
	opd_errmsg_wrapf(st->errmsg, "store %s", path);
	opd_store_close(st);
	return OPD_ESTORE;
}

void opd_store_close(struct opd_store *st)
{
	opd_store_image_free(st, st->mapped);
	opd_checkpointer_stop(st->ckpt);
	st->ckpt = NULL;
	stmt_cache_clear(st);
	if (st->db != NULL) {
		sqlite3_close_v2(st->db);
		st->db = NULL;
	}
}

const char *opd_store_errmsg(const struct opd_store *st)
{
	return st->errmsg;
}

void opd_config_info_fini(struct opd_config_info *c)
{
	free(c->name);
	opd_kvs_fini(&c->selector);
	*c = (struct opd_config_info){0};
}

void opd_version_info_fini(struct opd_version_info *v)
{
	free(v->name);
	free(v->message);
	free(v->actor);
	free(v->signature);
	free(v->key_id);
	opd_kvs_fini(&v->selector);
	opd_files_fini(&v->files);
	*v = (struct opd_version_info){0};
}

/* Sorted copy without repeated pairs: the form stored (the key is (name, key, value)). */
static void selector_canon(const struct opd_kvs *in, struct opd_kvs *out)
{
	struct opd_kvs tmp;

	opd_kvs_init(out);
	if (in == NULL)
		return;
	opd_kvs_copy(&tmp, in);
	opd_kvs_sort(&tmp);
	for (size_t i = 0; i < tmp.n; i++) {
		const struct opd_kv *kv = &tmp.v[i];
		if (out->n && strcmp(out->v[out->n - 1].key, kv->key) == 0 &&
		    strcmp(out->v[out->n - 1].value, kv->value) == 0)
			continue;
		opd_kvs_add(out, kv->key, kv->value);
	}
	opd_kvs_fini(&tmp);
}

/* A configuration's current selector in canonical order (one cached statement for both readers). */
static const char SELECTOR_SQL[] =
    "SELECT key, value FROM config_selectors WHERE name = ? ORDER BY key, value";

static int load_selector(struct opd_store *st, const char *name, struct opd_kvs *out)
{
	sqlite3_stmt *stmt;
	struct opd_kvs sel;
	int rc;

	rc = query(st, &stmt, SELECTOR_SQL, "t", name);
	if (rc != 0)
		return rc;
	opd_kvs_init(&sel);
	while ((rc = step(st, stmt)) == 1) {
		char *k = col_strdup(stmt, 0), *v = col_strdup(stmt, 1);
		opd_kvs_add(&sel, k, v);
		free(k);
		free(v);
	}
	stmt_done(st, stmt);
	if (rc < 0) {
		opd_kvs_fini(&sel);
		return rc;
	}
	*out = sel;
	return 0;
}

static int audit(struct opd_store *st, uint64_t ts_ms, const char *actor, const char *action,
		 const char *name, uint64_t version, const char *detail)
{
	return run(st,
		   "INSERT INTO audit (ts_ms, actor, action, name, version, detail) "
		   "VALUES (?, ?, ?, ?, ?, ?)",
		   "utttut", ts_ms, actor, action, name, version, detail);
}

/* The config row of name: 1 found (fields filled), 0 absent, <0 error. */
struct config_row {
	int64_t priority;
	uint64_t active, latest;
	bool deleted;
};

static int load_config_row(struct opd_store *st, const char *name, struct config_row *row)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt,
		   "SELECT priority, active_version, latest_version, deleted FROM configs "
		   "WHERE name = ?",
		   "t", name);
	if (rc != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1) {
		row->priority = sqlite3_column_int64(stmt, 0);
		row->active = col_u64(stmt, 1);
		row->latest = col_u64(stmt, 2);
		row->deleted = sqlite3_column_int(stmt, 3) != 0;
	}
	stmt_done(st, stmt);
	return rc;
}

/* 1 when the version exists (hash filled if non-NULL), 0 absent, <0 error. */
static int load_version_hash(struct opd_store *st, const char *name, uint64_t version,
			     uint8_t hash[OPD_CONFIG_HASH_LEN])
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt, "SELECT hash FROM config_versions WHERE name = ? AND version = ?",
		   "tu", name, version);
	if (rc != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1 && hash != NULL && col_hash(st, stmt, 0, hash) != 0)
		rc = OPD_ESTORE;
	stmt_done(st, stmt);
	return rc;
}

/* 1 when name's current selector is exactly sel (canonical), 0 when not, <0 on error. */
static int selector_is(struct opd_store *st, const char *name, const struct opd_kvs *sel)
{
	sqlite3_stmt *stmt;
	size_t i = 0;
	int rc, same = 1;

	rc = query(st, &stmt, SELECTOR_SQL, "t", name);
	if (rc != 0)
		return rc;
	while (same && (rc = step(st, stmt)) == 1) {
		const char *k = (const char *)sqlite3_column_text(stmt, 0);
		const char *v = (const char *)sqlite3_column_text(stmt, 1);

		same = i < sel->n && k != NULL && v != NULL && strcmp(k, sel->v[i].key) == 0 &&
		       strcmp(v, sel->v[i].value) == 0;
		i++;
	}
	stmt_done(st, stmt);
	if (rc < 0)
		return rc;
	return same && i == sel->n;
}

/* name's selector becomes sel (canonical). */
static int replace_selector(struct opd_store *st, const char *name, const struct opd_kvs *sel)
{
	int rc = run(st, "DELETE FROM config_selectors WHERE name = ?", "t", name);

	for (size_t i = 0; rc == 0 && i < sel->n; i++)
		rc = run(st, "INSERT INTO config_selectors (name, key, value) VALUES (?, ?, ?)",
			 "ttt", name, sel->v[i].key, sel->v[i].value);
	return rc;
}

/* 1 when the active version already has these files, selector and priority. */
static int unchanged(struct opd_store *st, const struct opd_put_version *in,
		     const struct config_row *row, const struct opd_kvs *sel)
{
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	int rc;

	if (row->deleted || row->priority != in->priority)
		return 0;
	rc = load_version_hash(st, in->name, row->active, hash);
	if (rc <= 0)
		return rc;
	if (memcmp(hash, in->hash, sizeof hash) != 0)
		return 0;
	return selector_is(st, in->name, sel);
}

static int write_version(struct opd_store *st, const struct opd_put_version *in,
			 const struct opd_kvs *sel, bool exists, uint64_t version)
{
	int rc;

	if (exists)
		rc = run(st,
			 "UPDATE configs SET priority = ?, active_version = ?, latest_version = ?, "
			 "deleted = 0, updated_ms = ? WHERE name = ?",
			 "iuuut", in->priority, version, version, in->ts_ms, in->name);
	else
		rc = run(st,
			 "INSERT INTO configs (name, priority, active_version, latest_version, "
			 "deleted, created_ms, updated_ms) VALUES (?, ?, ?, ?, 0, ?, ?)",
			 "tiuuuu", in->name, in->priority, version, version, in->ts_ms, in->ts_ms);
	if (rc != 0)
		return rc;
	/* Most versions keep the selector: rewriting its rows would only dirty pages. */
	rc = exists ? selector_is(st, in->name, sel) : 0;
	if (rc == 0)
		rc = replace_selector(st, in->name, sel);
	if (rc < 0)
		return rc;
	rc = run(st,
		 "INSERT INTO config_versions (name, version, hash, message, actor, created_ms, "
		 "signature, key_id, term, hlc_logical, priority) "
		 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		 "tubttubtuui", in->name, version, (const void *)in->hash,
		 (size_t)OPD_CONFIG_HASH_LEN, in->message, in->actor, in->ts_ms,
		 (const void *)in->signature, in->signature ? in->signature_len : (size_t)0,
		 in->key_id, in->term, (uint64_t)in->hlc_logical, in->priority);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < sel->n; i++) {
		rc = run(st,
			 "INSERT INTO config_version_selectors (name, version, key, value) "
			 "VALUES (?, ?, ?, ?)",
			 "tutt", in->name, version, sel->v[i].key, sel->v[i].value);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; in->files != NULL && i < in->files->n; i++) {
		const struct opd_file *f = &in->files->v[i];
		rc = run(st,
			 "INSERT INTO config_files (name, version, file_name, content_type, body) "
			 "VALUES (?, ?, ?, ?, ?)",
			 "tuttb", in->name, version, f->name, f->content_type,
			 (const void *)f->body, f->len);
		if (rc != 0)
			return rc;
	}
	return audit(st, in->ts_ms, in->actor, "put", in->name, version, in->message);
}

/*
 * Deletes the oldest versions of name beyond the newest limit (none when limit
 * is 0), at most OPD_STORE_PRUNE_BATCH of them: a lowered limit catches up over
 * the next puts instead of in one long transaction. Version numbers only grow
 * and the new version is the active one, so the active version is never hit.
 */
static int prune_versions(struct opd_store *st, const char *name, uint64_t newest, uint32_t limit)
{
	static const char *const deletes[] = {
	    /* Children first: the foreign keys point at config_versions. */
	    "DELETE FROM config_files WHERE name = ? AND version BETWEEN ? AND ?",
	    "DELETE FROM config_version_selectors WHERE name = ? AND version BETWEEN ? AND ?",
	    "DELETE FROM config_versions WHERE name = ? AND version BETWEEN ? AND ?",
	};
	uint64_t oldest, last;
	int rc;

	if (limit == 0 || newest <= limit)
		return 0;
	rc = query_u64(st, &oldest, "SELECT min(version) FROM config_versions WHERE name = ?", "t",
		       name);
	if (rc != 0)
		return rc;
	if (oldest == 0 || oldest > newest - limit)
		return 0;
	last = newest - limit;
	if (last - oldest >= OPD_STORE_PRUNE_BATCH)
		last = oldest + OPD_STORE_PRUNE_BATCH - 1;
	for (size_t i = 0; i < sizeof deletes / sizeof deletes[0]; i++)
		if ((rc = run(st, deletes[i], "tuu", name, oldest, last)) != 0)
			return rc;
	return 0;
}

int opd_store_put_version(struct opd_store *st, const struct opd_put_version *in,
			  struct opd_put_result *out)
{
	struct config_row row = {0};
	struct opd_kvs sel;
	uint64_t version;
	bool nested = false;
	int rc, exists;

	if (in == NULL || in->name == NULL || in->name[0] == '\0') {
		opd_errmsg_printf(st->errmsg, "put: empty configuration name");
		return OPD_EINVAL;
	}
	selector_canon(in->selector, &sel);
	if ((rc = tx_begin(st, &nested)) != 0)
		goto done;
	if ((exists = load_config_row(st, in->name, &row)) < 0) {
		rc = exists;
		goto fail;
	}
	version = exists ? row.latest + 1 : 1;
	if (in->version != 0 && in->version != version) {
		opd_errmsg_printf(st->errmsg, "put %s: version %llu is not the next one (%llu)",
				  in->name, (unsigned long long)in->version,
				  (unsigned long long)version);
		tx_rollback(st, nested);
		rc = OPD_ECONFLICT;
		goto done;
	}
	if (exists && (rc = unchanged(st, in, &row, &sel)) != 0) {
		if (rc < 0)
			goto fail;
		if ((rc = tx_commit(st, nested)) != 0)
			goto fail;
		out->version = row.active;
		out->created = 0;
		goto done;
	}
	if ((rc = write_version(st, in, &sel, exists, version)) != 0 ||
	    (rc = prune_versions(st, in->name, version, in->history_limit)) != 0 ||
	    (rc = tx_commit(st, nested)) != 0)
		goto fail;
	out->version = version;
	out->created = 1;
	goto done;
fail:
	opd_errmsg_wrapf(st->errmsg, "put %s", in->name);
	tx_rollback(st, nested);
done:
	opd_kvs_fini(&sel);
	return rc;
}

int opd_store_set_active(struct opd_store *st, const char *name, uint64_t version,
			 const char *actor, uint64_t ts_ms)
{
	struct config_row row;
	char detail[48];
	bool nested;
	int rc;

	if (name == NULL)
		return OPD_ENOTFOUND;
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = load_config_row(st, name, &row)) <= 0 || row.deleted)
		goto out;
	if ((rc = load_version_hash(st, name, version, NULL)) <= 0)
		goto out;
	snprintf(detail, sizeof detail, "from %llu", (unsigned long long)row.active);
	if ((rc = run(st, "UPDATE configs SET active_version = ?, updated_ms = ? WHERE name = ?",
		      "uut", version, ts_ms, name)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "rollback", name, version, detail)) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "set active %s", name);
		tx_rollback(st, nested);
		return rc;
	}
	return 0;
out:
	/* rc == 0 (or a deleted row) means not found; nothing was written either way. */
	tx_rollback(st, nested);
	return rc < 0 ? rc : OPD_ENOTFOUND;
}

int opd_store_delete(struct opd_store *st, const char *name, const char *actor, uint64_t ts_ms)
{
	struct config_row row;
	bool nested;
	int rc;

	if (name == NULL)
		return OPD_ENOTFOUND;
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = load_config_row(st, name, &row)) <= 0 || row.deleted) {
		tx_rollback(st, nested);
		return rc < 0 ? rc : OPD_ENOTFOUND;
	}
	if ((rc = run(st, "UPDATE configs SET deleted = 1, updated_ms = ? WHERE name = ?", "ut",
		      ts_ms, name)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "delete", name, row.active, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "delete %s", name);
		tx_rollback(st, nested);
		return rc;
	}
	return 0;
}

#define CONFIG_COLUMNS                                                                             \
	"SELECT c.name, c.priority, c.active_version, c.latest_version, c.created_ms, "            \
	"c.updated_ms, v.hash FROM configs c JOIN config_versions v "                              \
	"ON v.name = c.name AND v.version = c.active_version WHERE c.deleted = 0 "

static int fill_config(struct opd_store *st, sqlite3_stmt *stmt, struct opd_config_info *out)
{
	struct opd_config_info c = {0};
	int rc;

	c.name = col_strdup(stmt, 0);
	c.priority = sqlite3_column_int64(stmt, 1);
	c.active_version = col_u64(stmt, 2);
	c.latest_version = col_u64(stmt, 3);
	c.created_ms = col_u64(stmt, 4);
	c.updated_ms = col_u64(stmt, 5);
	if ((rc = col_hash(st, stmt, 6, c.active_hash)) != 0 ||
	    (rc = load_selector(st, c.name, &c.selector)) != 0) {
		opd_config_info_fini(&c);
		return rc;
	}
	*out = c;
	return 0;
}

int opd_store_foreach_config(struct opd_store *st,
			     int (*cb)(void *data, const struct opd_config_info *c), void *data)
{
	struct opd_config_info c;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, CONFIG_COLUMNS "ORDER BY c.name", "")) != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		if ((rc = fill_config(st, stmt, &c)) != 0)
			break;
		rc = cb(data, &c);
		opd_config_info_fini(&c);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_get_config(struct opd_store *st, const char *name, struct opd_config_info *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if (name == NULL)
		return OPD_ENOTFOUND;
	if ((rc = query(st, &stmt, CONFIG_COLUMNS "AND c.name = ?", "t", name)) != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1)
		rc = fill_config(st, stmt, out);
	else if (rc == 0)
		rc = OPD_ENOTFOUND;
	stmt_done(st, stmt);
	return rc;
}

/* 0 when name is a live configuration, OPD_ENOTFOUND, or OPD_ESTORE. */
static int config_live(struct opd_store *st, const char *name)
{
	struct config_row row;
	int rc;

	if (name == NULL)
		return OPD_ENOTFOUND;
	rc = load_config_row(st, name, &row);
	if (rc < 0)
		return rc;
	return rc == 1 && !row.deleted ? 0 : OPD_ENOTFOUND;
}

static int load_version_selector(struct opd_store *st, const char *name, uint64_t version,
				 struct opd_kvs *out)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt,
		   "SELECT key, value FROM config_version_selectors WHERE name = ? AND version = ? "
		   "ORDER BY key, value",
		   "tu", name, version);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		char *k = col_strdup(stmt, 0), *v = col_strdup(stmt, 1);
		opd_kvs_add(out, k, v);
		free(k);
		free(v);
	}
	stmt_done(st, stmt);
	return rc;
}

static int fill_version(struct opd_store *st, sqlite3_stmt *stmt, struct opd_version_info *out)
{
	struct opd_version_info v = {0};

	v.name = col_strdup(stmt, 0);
	v.version = col_u64(stmt, 1);
	v.message = col_strdup(stmt, 3);
	v.actor = col_strdup(stmt, 4);
	v.created_ms = col_u64(stmt, 5);
	v.signature_len = (size_t)sqlite3_column_bytes(stmt, 6);
	if (v.signature_len > 0)
		v.signature = opd_xmemdup(sqlite3_column_blob(stmt, 6), v.signature_len);
	v.key_id = col_strdup(stmt, 7);
	v.term = col_u64(stmt, 8);
	v.hlc_logical = (uint32_t)sqlite3_column_int64(stmt, 9);
	v.has_priority = sqlite3_column_type(stmt, 10) != SQLITE_NULL;
	v.priority = sqlite3_column_int64(stmt, 10);
	opd_kvs_init(&v.selector);
	if (col_hash(st, stmt, 2, v.hash) != 0 ||
	    load_version_selector(st, v.name, v.version, &v.selector) != 0) {
		opd_version_info_fini(&v);
		return OPD_ESTORE;
	}
	*out = v;
	return 0;
}

#define VERSION_COLUMNS                                                                            \
	"SELECT name, version, hash, message, actor, created_ms, signature, key_id, term, "        \
	"hlc_logical, priority FROM config_versions "

int opd_store_foreach_version(struct opd_store *st, const char *name,
			      int (*cb)(void *data, const struct opd_version_info *v), void *data)
{
	struct opd_version_info v;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = config_live(st, name)) != 0)
		return rc;
	rc = query(st, &stmt, VERSION_COLUMNS "WHERE name = ? ORDER BY version DESC", "t", name);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		if ((rc = fill_version(st, stmt, &v)) != 0)
			break;
		rc = cb(data, &v);
		opd_version_info_fini(&v);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

static int load_files(struct opd_store *st, const char *name, uint64_t version,
		      struct opd_files *out)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt,
		   "SELECT file_name, content_type, body FROM config_files "
		   "WHERE name = ? AND version = ? ORDER BY file_name",
		   "tu", name, version);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		char *fn = col_strdup(stmt, 0), *ct = col_strdup(stmt, 1);
		const void *body = sqlite3_column_blob(stmt, 2);
		size_t len = (size_t)sqlite3_column_bytes(stmt, 2);

		opd_files_add(out, fn, ct, body, body ? len : 0);
		free(fn);
		free(ct);
	}
	stmt_done(st, stmt);
	return rc;
}

uint64_t opd_store_latest_version(struct opd_store *st, const char *name)
{
	struct config_row row = {0};

	if (name == NULL || load_config_row(st, name, &row) != 1)
		return 0;
	return row.latest;
}

int opd_store_get_version(struct opd_store *st, const char *name, uint64_t version,
			  struct opd_version_info *out)
{
	struct opd_version_info v;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = config_live(st, name)) != 0)
		return rc;
	rc =
	    query(st, &stmt, VERSION_COLUMNS "WHERE name = ? AND version = ?", "tu", name, version);
	if (rc != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1)
		rc = fill_version(st, stmt, &v);
	else if (rc == 0)
		rc = OPD_ENOTFOUND;
	stmt_done(st, stmt);
	if (rc != 0)
		return rc;
	if ((rc = load_files(st, name, version, &v.files)) != 0) {
		opd_version_info_fini(&v);
		return rc;
	}
	*out = v;
	return 0;
}

int opd_store_set_selector(struct opd_store *st, const char *name, const struct opd_kvs *selector,
			   const int64_t *priority, const char *actor, uint64_t ts_ms)
{
	struct config_row row;
	struct opd_kvs sel;
	struct opd_buf detail;
	bool nested;
	int rc;

	if (selector == NULL && priority == NULL) {
		opd_errmsg_printf(st->errmsg, "set selector: nothing to change");
		return OPD_EINVAL;
	}
	if (name == NULL)
		return OPD_ENOTFOUND;
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = load_config_row(st, name, &row)) <= 0 || row.deleted) {
		tx_rollback(st, nested);
		return rc < 0 ? rc : OPD_ENOTFOUND;
	}
	selector_canon(selector, &sel);
	opd_buf_init(&detail);
	rc = 0;
	if (priority != NULL) {
		opd_buf_appendf(&detail, "priority %lld", (long long)*priority);
		rc = run(st, "UPDATE configs SET priority = ? WHERE name = ?", "it", *priority,
			 name);
	}
	if (rc == 0 && selector != NULL) {
		opd_buf_appendf(&detail, "%sselector", priority ? "; " : "");
		for (size_t i = 0; i < sel.n; i++)
			opd_buf_appendf(&detail, " %s=%s", sel.v[i].key, sel.v[i].value);
		rc = replace_selector(st, name, &sel);
	}
	opd_buf_append_byte(&detail, '\0');
	if (rc == 0)
		rc = run(st, "UPDATE configs SET updated_ms = ? WHERE name = ?", "ut", ts_ms, name);
	if (rc == 0)
		rc = audit(st, ts_ms, actor, "selector", name, row.active,
			   (const char *)opd_buf_rptr(&detail));
	if (rc == 0)
		rc = tx_commit(st, nested);
	if (rc != 0) {
		opd_errmsg_wrapf(st->errmsg, "set selector %s", name);
		tx_rollback(st, nested);
	}
	opd_buf_fini(&detail);
	opd_kvs_fini(&sel);
	return rc;
}

static int key_id_ok(const char *key_id)
{
	return key_id != NULL && key_id[0] != '\0' && strlen(key_id) <= OPD_STORE_KEY_ID_MAX;
}

static void fill_signing_key(sqlite3_stmt *stmt, struct opd_signing_key *k)
{
	const unsigned char *id = sqlite3_column_text(stmt, 0);
	const void *pk = sqlite3_column_blob(stmt, 1);

	*k = (struct opd_signing_key){0};
	/* The CHECK constraints and key_id_ok() bound both columns. */
	snprintf(k->key_id, sizeof k->key_id, "%s", id ? (const char *)id : "");
	if (pk != NULL && sqlite3_column_bytes(stmt, 1) == OPD_STORE_PUBLIC_KEY_LEN)
		memcpy(k->public_key, pk, OPD_STORE_PUBLIC_KEY_LEN);
	k->active = sqlite3_column_int(stmt, 2) != 0;
	k->added_ms = col_u64(stmt, 3);
	k->retired_ms = col_u64(stmt, 4); /* NULL reads as 0 */
}

#define KEY_COLUMNS "SELECT key_id, public_key, active, added_ms, retired_ms FROM signing_keys "

/*
 * One row of a single-text-parameter (or parameterless) query, filled by fill:
 * 0, OPD_ENOTFOUND, or OPD_ESTORE.
 */
static int get_one(struct opd_store *st, const char *sql, const char *arg,
		   void (*fill)(sqlite3_stmt *stmt, void *out), void *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, sql, arg ? "t" : "", arg)) != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1) {
		fill(stmt, out);
		rc = 0;
	} else if (rc == 0) {
		rc = OPD_ENOTFOUND;
	}
	stmt_done(st, stmt);
	return rc;
}

static void fill_key_row(sqlite3_stmt *stmt, void *out)
{
	fill_signing_key(stmt, out);
}

static int get_key(struct opd_store *st, const char *sql, const char *key_id,
		   struct opd_signing_key *out)
{
	return get_one(st, sql, key_id, fill_key_row, out);
}

int opd_store_get_signing_key(struct opd_store *st, const char *key_id, struct opd_signing_key *out)
{
	if (!key_id_ok(key_id))
		return OPD_ENOTFOUND;
	return get_key(st, KEY_COLUMNS "WHERE key_id = ?", key_id, out);
}

int opd_store_active_signing_key(struct opd_store *st, struct opd_signing_key *out)
{
	return get_key(st, KEY_COLUMNS "WHERE active = 1 ORDER BY key_id LIMIT 1", NULL, out);
}

int opd_store_foreach_signing_key(struct opd_store *st,
				  int (*cb)(void *data, const struct opd_signing_key *k),
				  void *data)
{
	struct opd_signing_key k;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, KEY_COLUMNS "ORDER BY key_id", "")) != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		fill_signing_key(stmt, &k);
		if ((rc = cb(data, &k)) != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_add_signing_key(struct opd_store *st, const char *key_id, const uint8_t *public_key,
			      size_t len, int activate, const char *actor, uint64_t ts_ms)
{
	struct opd_signing_key old;
	bool nested;
	int rc;

	if (!key_id_ok(key_id) || public_key == NULL || len != OPD_STORE_PUBLIC_KEY_LEN) {
		opd_errmsg_printf(st->errmsg, "add key: bad key id or key length %zu", len);
		return OPD_EINVAL;
	}
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	rc = opd_store_get_signing_key(st, key_id, &old);
	if (rc == 0) {
		opd_errmsg_printf(st->errmsg, "add key: %s already known", key_id);
		tx_rollback(st, nested);
		return OPD_ECONFLICT;
	}
	if (rc != OPD_ENOTFOUND)
		goto fail;
	if (activate && (rc = run(st, "UPDATE signing_keys SET active = 0", "")) != 0)
		goto fail;
	if ((rc = run(st,
		      "INSERT INTO signing_keys (key_id, public_key, active, added_ms, retired_ms) "
		      "VALUES (?, ?, ?, ?, NULL)",
		      "tbiu", key_id, (const void *)public_key, len, (int64_t)(activate != 0),
		      ts_ms)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "key-add", key_id, 0, activate ? "active" : "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0)
		goto fail;
	return 0;
fail:
	opd_errmsg_wrapf(st->errmsg, "add key %s", key_id);
	tx_rollback(st, nested);
	return rc;
}

int opd_store_retire_signing_key(struct opd_store *st, const char *key_id, const char *actor,
				 uint64_t ts_ms)
{
	struct opd_signing_key old;
	bool nested;
	int rc;

	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = opd_store_get_signing_key(st, key_id, &old)) != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	if (old.retired_ms != 0) {
		tx_rollback(st, nested);
		return OPD_ECONFLICT;
	}
	/* retired_ms 0 means "not retired": a command stamped at 0 still retires the key. */
	if ((rc = run(st,
		      "UPDATE signing_keys SET active = 0, retired_ms = max(?, 1) WHERE key_id = ?",
		      "ut", ts_ms, key_id)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "key-retire", key_id, 0, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "retire key %s", key_id);
		tx_rollback(st, nested);
	}
	return rc;
}

static int request_id_ok(const uint8_t *id, size_t len)
{
	return id != NULL && len > 0 && len <= OPD_STORE_REQUEST_ID_MAX;
}

int opd_store_get_request(struct opd_store *st, const uint8_t *id, size_t len,
			  struct opd_request_record *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if (!request_id_ok(id, len))
		return OPD_EINVAL;
	rc = query(st, &stmt, "SELECT op, name, version, status FROM requests WHERE request_id = ?",
		   "b", (const void *)id, len);
	if (rc != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1) {
		const unsigned char *name = sqlite3_column_text(stmt, 1);

		*out = (struct opd_request_record){0};
		out->op = sqlite3_column_int(stmt, 0);
		snprintf(out->name, sizeof out->name, "%s", name ? (const char *)name : "");
		out->version = col_u64(stmt, 2);
		out->status = sqlite3_column_int(stmt, 3);
		rc = 0;
	} else if (rc == 0) {
		rc = OPD_ENOTFOUND;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_put_request(struct opd_store *st, const uint8_t *id, size_t len,
			  const struct opd_request_record *rec)
{
	struct opd_request_record old;
	int rc;

	if (!request_id_ok(id, len))
		return OPD_EINVAL;
	rc = opd_store_get_request(st, id, len, &old);
	if (rc == 0)
		return OPD_ECONFLICT;
	if (rc != OPD_ENOTFOUND)
		return rc;
	rc = run(st,
		 "INSERT INTO requests (request_id, op, name, version, status, ts_ms) "
		 "VALUES (?, ?, ?, ?, ?, ?)",
		 "bituiu", (const void *)id, len, (int64_t)rec->op, rec->name, rec->version,
		 (int64_t)rec->status, rec->ts_ms);
	if (rc != 0 || rec->ts_ms <= OPD_STORE_REQUEST_TTL_MS)
		return rc;
	/* The table stays a day of writes long: the index makes this one range delete. */
	return run(st, "DELETE FROM requests WHERE ts_ms < ?", "u",
		   rec->ts_ms - OPD_STORE_REQUEST_TTL_MS);
}

int opd_store_set_member(struct opd_store *st, uint64_t id, const char *raft_address,
			 const char *admin_url, const char *actor, uint64_t ts_ms)
{
	char name[24], detail[OPD_ERRMSG_SIZE];
	bool nested;
	int rc;

	if (id == 0 || id > INT64_MAX) {
		opd_errmsg_printf(st->errmsg, "set member: bad id");
		return OPD_EINVAL;
	}
	snprintf(name, sizeof name, "%llu", (unsigned long long)id);
	snprintf(detail, sizeof detail, "raft %s admin %s", raft_address ? raft_address : "",
		 admin_url ? admin_url : "");
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = run(st,
		      "INSERT INTO members (id, raft_address, admin_url) VALUES (?, ?, ?) "
		      "ON CONFLICT (id) DO UPDATE SET raft_address = excluded.raft_address, "
		      "admin_url = excluded.admin_url",
		      "utt", id, raft_address, admin_url)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "member-set", name, 0, detail)) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "set member %s", name);
		tx_rollback(st, nested);
	}
	return rc;
}

int opd_store_remove_member(struct opd_store *st, uint64_t id, const char *actor, uint64_t ts_ms)
{
	char name[24];
	bool nested;
	int rc;

	snprintf(name, sizeof name, "%llu", (unsigned long long)id);
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = run(st, "DELETE FROM members WHERE id = ?", "u", id)) != 0)
		goto fail;
	if (sqlite3_changes(st->db) == 0) {
		tx_rollback(st, nested);
		return OPD_ENOTFOUND;
	}
	if ((rc = audit(st, ts_ms, actor, "member-remove", name, 0, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0)
		goto fail;
	return 0;
fail:
	opd_errmsg_wrapf(st->errmsg, "remove member %s", name);
	tx_rollback(st, nested);
	return rc;
}

int opd_store_member_admin_url(struct opd_store *st, uint64_t id, char *buf, size_t cap)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, "SELECT admin_url FROM members WHERE id = ?", "u", id)) != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1) {
		const unsigned char *t = sqlite3_column_text(stmt, 0);
		size_t n = (size_t)sqlite3_column_bytes(stmt, 0);

		if (n >= cap) {
			rc = OPD_ETOOBIG;
		} else {
			memcpy(buf, t ? (const char *)t : "", t ? n : 0);
			buf[t ? n : 0] = '\0';
			rc = 0;
		}
	} else if (rc == 0) {
		rc = OPD_ENOTFOUND;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_foreach_member(struct opd_store *st,
			     int (*cb)(void *data, const struct opd_member *m), void *data)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt, "SELECT id, raft_address, admin_url FROM members ORDER BY id", "");
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		const unsigned char *ra = sqlite3_column_text(stmt, 1);
		const unsigned char *au = sqlite3_column_text(stmt, 2);
		struct opd_member m = {
		    .id = col_u64(stmt, 0),
		    .raft_address = ra ? (const char *)ra : "",
		    .admin_url = au ? (const char *)au : "",
		};
		if ((rc = cb(data, &m)) != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_audit(struct opd_store *st, uint64_t ts_ms, const char *actor, const char *action,
		    const char *name, uint64_t version, const char *detail)
{
	return audit(st, ts_ms, actor, action, name, version, detail);
}

int opd_store_foreach_audit(struct opd_store *st, size_t limit,
			    int (*cb)(void *data, const struct opd_audit_entry *e), void *data)
{
	sqlite3_stmt *stmt;
	int rc;

	/* LIMIT -1 is "no limit" in sqlite. */
	rc = query(st, &stmt,
		   "SELECT seq, ts_ms, actor, action, name, version, detail FROM audit "
		   "ORDER BY seq DESC LIMIT ?",
		   "i", limit == 0 || limit > INT64_MAX ? (int64_t)-1 : (int64_t)limit);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		const unsigned char *t[4];
		static const int cols[4] = {2, 3, 4, 6};

		for (int i = 0; i < 4; i++)
			t[i] = sqlite3_column_text(stmt, cols[i]);
		struct opd_audit_entry e = {
		    .seq = col_u64(stmt, 0),
		    .ts_ms = col_u64(stmt, 1),
		    .actor = t[0] ? (const char *)t[0] : "",
		    .action = t[1] ? (const char *)t[1] : "",
		    .name = t[2] ? (const char *)t[2] : "",
		    .version = col_u64(stmt, 5),
		    .detail = t[3] ? (const char *)t[3] : "",
		};
		if ((rc = cb(data, &e)) != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

static int meta_get(struct opd_store *st, const char *key, uint64_t *out)
{
	return query_u64(st, out, "SELECT value FROM meta WHERE key = ?", "t", key);
}

static int meta_set(struct opd_store *st, const char *key, uint64_t value)
{
	return run(st, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", "tu", key, value);
}

int opd_store_get_applied(struct opd_store *st, uint64_t *index, uint64_t *hlc_wall_ms,
			  uint32_t *hlc_logical)
{
	uint64_t i, w, l;
	int rc;

	if ((rc = meta_get(st, "applied_index", &i)) != 0 ||
	    (rc = meta_get(st, "hlc_wall_ms", &w)) != 0 ||
	    (rc = meta_get(st, "hlc_logical", &l)) != 0)
		return rc;
	*index = i;
	*hlc_wall_ms = w;
	*hlc_logical = (uint32_t)l;
	return 0;
}

int opd_store_set_applied(struct opd_store *st, uint64_t index, uint64_t hlc_wall_ms,
			  uint32_t hlc_logical)
{
	int rc;

	if ((rc = meta_set(st, "applied_index", index)) != 0 ||
	    (rc = meta_set(st, "hlc_wall_ms", hlc_wall_ms)) != 0 ||
	    (rc = meta_set(st, "hlc_logical", hlc_logical)) != 0)
		return rc;
	return 0;
}

int opd_store_begin(struct opd_store *st)
{
	if (!sqlite3_get_autocommit(st->db)) {
		opd_errmsg_printf(st->errmsg, "begin: a transaction is already open");
		return OPD_ESTORE;
	}
	return exec(st, "BEGIN IMMEDIATE", "begin");
}

int opd_store_commit(struct opd_store *st)
{
	return exec(st, "COMMIT", "commit");
}

void opd_store_rollback(struct opd_store *st)
{
	tx_rollback(st, false);
}

/* The integer a one-row statement answers (a pragma), or -1. */
/*
 * Map the database file once a checkpoint has copied the whole WAL into it,
 * and hold checkpoints (the only writes to that file in WAL mode) until
 * opd_store_image_free: the mapping stays the image as of now. sqlite3_serialize
 * gives the same bytes, but fetched and copied a page at a time on the loop
 * (170 ms for a 276 MB store; reading the file into a buffer: 127 ms).
 * Returns NULL when the file cannot serve: the caller then serializes.
 */
static uint8_t *map_image(struct opd_store *st, size_t *len)
{
	const char *path = sqlite3_db_filename(st->db, "main");
	uint64_t pages, page_size;
	int log_pages = -1, copied = -1, fd = -1;
	struct stat sb;
	void *p = MAP_FAILED;
	size_t n = 0;

	if (st->ckpt == NULL || st->mapped != NULL || path == NULL || path[0] == '\0')
		return NULL;
	opd_checkpointer_hold(st->ckpt);
	if (sqlite3_wal_checkpoint_v2(st->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log_pages,
				      &copied) != SQLITE_OK ||
	    log_pages < 0 || copied != log_pages)
		goto fail;
	if (query_u64(st, &pages, "PRAGMA page_count", "") != 0 ||
	    query_u64(st, &page_size, "PRAGMA page_size", "") != 0 || pages == 0 ||
	    page_size == 0 || pages > SIZE_MAX / page_size)
		goto fail;
	n = (size_t)pages * (size_t)page_size;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0 ||
	    (uint64_t)sb.st_size < (uint64_t)n)
		goto fail;
	p = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	fd = -1;
	if (p == MAP_FAILED)
		goto fail;
	st->mapped = p;
	st->mapped_len = n;
	st->file_images++;
	*len = n;
	return p;
fail:
	if (fd >= 0)
		close(fd);
	opd_checkpointer_unhold(st->ckpt);
	return NULL;
}

int opd_store_serialize(struct opd_store *st, uint8_t **out, size_t *len)
{
	sqlite3_int64 n = 0;
	unsigned char *p;

	if (!sqlite3_get_autocommit(st->db)) {
		opd_errmsg_printf(st->errmsg, "serialize: a transaction is open");
		return OPD_ESTORE;
	}
	if ((*out = map_image(st, len)) != NULL)
		return 0;
	p = sqlite3_serialize(st->db, "main", &n, 0);
	if (p == NULL || n <= 0) {
		sqlite3_free(p);
		return fail(st, "serialize");
	}
	*out = p;
	*len = (size_t)n;
	return 0;
}

void opd_store_image_free(struct opd_store *st, uint8_t *image)
{
	if (image != NULL && image == st->mapped) {
		munmap(st->mapped, st->mapped_len);
		st->mapped = NULL;
		opd_checkpointer_unhold(st->ckpt);
		return;
	}
	sqlite3_free(image);
}

/* A loaded image must pass these before it replaces the store. */
static int check_image(struct opd_store *st, sqlite3 *db)
{
	sqlite3_stmt *stmt = NULL;
	size_t known = 0;
	int64_t have;
	int rc;

	while (opd_sql_migrations[known] != NULL)
		known++;
	if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(stmt, 0), "ok") != 0) {
		opd_errmsg_printf(st->errmsg, "restore: image fails the integrity check: %s",
				  sqlite3_errmsg(db));
		sqlite3_finalize(stmt);
		return OPD_EINVAL;
	}
	sqlite3_finalize(stmt);
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW) {
		opd_errmsg_printf(st->errmsg, "restore: %s", sqlite3_errmsg(db));
		sqlite3_finalize(stmt);
		return OPD_EINVAL;
	}
	have = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	rc = have >= 1 && (uint64_t)have <= known ? 0 : OPD_EINVAL;
	if (rc != 0)
		opd_errmsg_printf(st->errmsg,
				  "restore: schema version %lld (this binary knows 1..%zu)",
				  (long long)have, known);
	return rc;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The image is as long as its header says (page size × page count): a
 * truncated image whose lost bytes were free space in its last page would
 * otherwise pass the integrity check.
 */
static int image_size_ok(struct opd_store *st, const uint8_t *p, size_t len)
{
	uint32_t page = (uint32_t)p[16] << 8 | p[17], pages = be32(p + 28);

	if (page == 1)
		page = 65536;
	if (page < 512 || (page & (page - 1)) != 0 || len % page != 0) {
		opd_errmsg_printf(st->errmsg, "restore: %zu bytes is not a whole number of pages",
				  len);
		return 0;
	}
	/* The header's page count is valid only when written by sqlite 3.7.0 or later. */
	if (pages != 0 && be32(p + 24) == be32(p + 92) && (uint64_t)pages * page != len) {
		opd_errmsg_printf(st->errmsg,
				  "restore: image is %zu bytes but its header says %u pages of %u",
				  len, pages, page);
		return 0;
	}
	return 1;
}

int opd_store_restore(struct opd_store *st, const uint8_t *p, size_t len)
{
	sqlite3 *tmp = NULL;
	sqlite3_backup *bk;
	unsigned char *copy;
	int rc;

	/* sqlite's smallest page is 512 bytes; a database image is a whole number of pages. */
	if (p == NULL || len < 512 || len % 512 != 0 || (uint64_t)len > (uint64_t)INT64_MAX) {
		opd_errmsg_printf(st->errmsg, "restore: %zu bytes is not a database image", len);
		return OPD_EINVAL;
	}
	if (!image_size_ok(st, p, len))
		return OPD_EINVAL;
	if (!sqlite3_get_autocommit(st->db)) {
		opd_errmsg_printf(st->errmsg, "restore: a transaction is open");
		return OPD_ESTORE;
	}
	/* raft installs no snapshot while it writes one of ours (it parks the install). */
	if (st->mapped != NULL) {
		opd_errmsg_printf(st->errmsg, "restore: a snapshot of this store is being written");
		return OPD_ESTORE;
	}
	if (sqlite3_open_v2(":memory:", &tmp, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		opd_errmsg_printf(st->errmsg, "restore: open: %s",
				  tmp ? sqlite3_errmsg(tmp) : "out of memory");
		rc = OPD_ESTORE;
		goto out;
	}
	copy = sqlite3_malloc64(len);
	if (copy == NULL)
		abort(); /* OOM: as opd_xmalloc */
	memcpy(copy, p, len);
	/*
	 * A file store is in WAL mode and so is its image (header bytes 18 and
	 * 19 are 2); a memory database cannot open a WAL image. Mark it as a
	 * rollback-journal one: the backup below puts WAL back on a WAL store.
	 */
	if (copy[18] == 2 && copy[19] == 2)
		copy[18] = copy[19] = 1;
	if (sqlite3_deserialize(tmp, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
				SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
	    SQLITE_OK) {
		opd_errmsg_printf(st->errmsg, "restore: deserialize: %s", sqlite3_errmsg(tmp));
		rc = OPD_EINVAL;
		goto out;
	}
	if ((rc = check_image(st, tmp)) != 0)
		goto out;
	bk = sqlite3_backup_init(st->db, "main", tmp, "main");
	if (bk == NULL) {
		rc = fail(st, "restore: backup");
		goto out;
	}
	opd_checkpointer_pause(st->ckpt); /* the backup rewrites the whole file */
	rc = sqlite3_backup_step(bk, -1);
	sqlite3_backup_finish(bk);
	opd_checkpointer_resume(st->ckpt);
	if (rc != SQLITE_DONE) {
		opd_errmsg_printf(st->errmsg, "restore: backup: %s", sqlite3_errstr(rc));
		rc = OPD_ESTORE;
		goto out;
	}
	/* An image from an older binary is brought up to this one's schema. */
	rc = migrate(st);
out:
	sqlite3_close(tmp);
	return rc;
}

/*
 * Dump. Tables are found in sqlite_master (so tables added by later
 * migrations are included without touching this code) and their rows are
 * ordered by every column in turn, which is primary-key order for our tables
 * (the key columns come first) and a total order for any table.
 */
static void dump_value(struct opd_buf *out, sqlite3_stmt *stmt, int i)
{
	switch (sqlite3_column_type(stmt, i)) {
	case SQLITE_NULL:
		opd_buf_appendf(out, "NULL");
		break;
	case SQLITE_INTEGER:
		opd_buf_appendf(out, "%lld", (long long)sqlite3_column_int64(stmt, i));
		break;
	case SQLITE_FLOAT:
		opd_buf_appendf(out, "%.17g", sqlite3_column_double(stmt, i));
		break;
	case SQLITE_TEXT: {
		const unsigned char *t = sqlite3_column_text(stmt, i);
		size_t n = (size_t)sqlite3_column_bytes(stmt, i);

		opd_buf_append_byte(out, '\'');
		for (size_t k = 0; k < n; k++) {
			unsigned char c = t[k];
			if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'')
				opd_buf_appendf(out, "\\x%02x", c);
			else
				opd_buf_append_byte(out, c);
		}
		opd_buf_append_byte(out, '\'');
		break;
	}
	default: { /* SQLITE_BLOB */
		const unsigned char *p = sqlite3_column_blob(stmt, i);
		size_t n = (size_t)sqlite3_column_bytes(stmt, i);

		opd_buf_appendf(out, "x'");
		for (size_t k = 0; k < n; k++)
			opd_buf_appendf(out, "%02x", p[k]);
		opd_buf_append_byte(out, '\'');
		break;
	}
	}
}

static int dump_table(struct opd_store *st, const char *table, struct opd_buf *out)
{
	struct opd_buf sql;
	sqlite3_stmt *stmt;
	char *base;
	int rc, ncol;

	base = sqlite3_mprintf("SELECT * FROM \"%w\"", table);
	if (base == NULL)
		abort(); /* OOM: as opd_xmalloc */
	rc = query_once(st, &stmt, base, "");
	if (rc != 0) {
		sqlite3_free(base);
		return rc;
	}
	ncol = sqlite3_column_count(stmt);
	opd_buf_appendf(out, "table %s\ncolumns", table);
	for (int i = 0; i < ncol; i++)
		opd_buf_appendf(out, " %s", sqlite3_column_name(stmt, i));
	opd_buf_append_byte(out, '\n');
	stmt_done(st, stmt);

	opd_buf_init(&sql);
	opd_buf_appendf(&sql, "%s ORDER BY", base);
	for (int i = 0; i < ncol; i++)
		opd_buf_appendf(&sql, "%s %d", i ? "," : "", i + 1);
	opd_buf_append_byte(&sql, '\0');
	sqlite3_free(base);
	rc = query_once(st, &stmt, (const char *)opd_buf_rptr(&sql), "");
	opd_buf_fini(&sql);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		opd_buf_appendf(out, "row");
		for (int i = 0; i < ncol; i++) {
			opd_buf_append_byte(out, ' ');
			dump_value(out, stmt, i);
		}
		opd_buf_append_byte(out, '\n');
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_dump(struct opd_store *st, struct opd_buf *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, "PRAGMA user_version", "")) != 0)
		return rc;
	if ((rc = step(st, stmt)) == 1)
		opd_buf_appendf(out, "user_version %lld\n",
				(long long)sqlite3_column_int64(stmt, 0));
	stmt_done(st, stmt);
	if (rc < 0)
		return rc;
	rc = query(st, &stmt,
		   "SELECT name FROM sqlite_master WHERE type = 'table' "
		   "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
		   "");
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		char *table = col_strdup(stmt, 0);
		rc = dump_table(st, table, out);
		free(table);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

/*
 * The fleet CA and agent certificates. Writes follow the pattern above: a
 * transaction (a savepoint inside apply), the audit row, one outcome code.
 */
static bool lower_hex(const char *s, size_t len)
{
	if (s == NULL || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static void copy_col(sqlite3_stmt *stmt, int i, char *out, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(stmt, i);

	snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
}

void opd_ca_info_fini(struct opd_ca_info *c)
{
	free(c->subject);
	free(c->cert_pem);
	c->subject = NULL;
	c->cert_pem = NULL;
}

#define CA_COLUMNS                                                                                 \
	"SELECT fingerprint, state, subject, cert_pem, not_before, not_after, added_ms, "          \
	"activated_ms, retired_ms FROM cas "

static void fill_ca(sqlite3_stmt *stmt, struct opd_ca_info *c)
{
	*c = (struct opd_ca_info){0};
	copy_col(stmt, 0, c->fingerprint, sizeof c->fingerprint);
	copy_col(stmt, 1, c->state, sizeof c->state);
	c->subject = col_strdup(stmt, 2);
	c->cert_pem = col_strdup(stmt, 3);
	c->not_before = col_u64(stmt, 4);
	c->not_after = col_u64(stmt, 5);
	c->added_ms = col_u64(stmt, 6);
	c->activated_ms = col_u64(stmt, 7);
	c->retired_ms = col_u64(stmt, 8);
}

static void fill_ca_row(sqlite3_stmt *stmt, void *out)
{
	fill_ca(stmt, out);
}

static int get_ca(struct opd_store *st, const char *sql, const char *fp, struct opd_ca_info *out)
{
	return get_one(st, sql, fp, fill_ca_row, out);
}

int opd_store_get_ca(struct opd_store *st, const char *fingerprint, struct opd_ca_info *out)
{
	if (!lower_hex(fingerprint, OPD_STORE_FP_LEN))
		return OPD_ENOTFOUND;
	return get_ca(st, CA_COLUMNS "WHERE fingerprint = ?", fingerprint, out);
}

int opd_store_active_ca(struct opd_store *st, struct opd_ca_info *out)
{
	return get_ca(st, CA_COLUMNS "WHERE state = 'active' ORDER BY fingerprint LIMIT 1", NULL,
		      out);
}

int opd_store_foreach_ca(struct opd_store *st, int (*cb)(void *data, const struct opd_ca_info *c),
			 void *data)
{
	struct opd_ca_info c;
	sqlite3_stmt *stmt;
	int rc;

	if ((rc = query(st, &stmt, CA_COLUMNS "ORDER BY added_ms, fingerprint", "")) != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		fill_ca(stmt, &c);
		rc = cb(data, &c);
		opd_ca_info_fini(&c);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

/* The previous active CA stays in the trust bundle: that is the overlap. */
static int demote_active(struct opd_store *st)
{
	return run(st, "UPDATE cas SET state = 'trusted' WHERE state = 'active'", "");
}

int opd_store_add_ca(struct opd_store *st, const struct opd_new_ca *ca, int activate,
		     const char *actor, uint64_t ts_ms)
{
	struct opd_ca_info old;
	bool nested;
	int rc;

	if (!lower_hex(ca->fingerprint, OPD_STORE_FP_LEN) || ca->cert_pem == NULL ||
	    ca->cert_pem[0] == '\0' || ca->not_before > INT64_MAX || ca->not_after > INT64_MAX) {
		opd_errmsg_printf(st->errmsg, "add CA: malformed fingerprint or certificate");
		return OPD_EINVAL;
	}
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	rc = opd_store_get_ca(st, ca->fingerprint, &old);
	if (rc == 0) {
		opd_ca_info_fini(&old);
		tx_rollback(st, nested);
		return OPD_ECONFLICT;
	}
	if (rc != OPD_ENOTFOUND)
		goto fail;
	if ((activate && (rc = demote_active(st)) != 0) ||
	    (rc = run(st,
		      "INSERT INTO cas (fingerprint, state, subject, cert_pem, not_before, "
		      "not_after, added_ms, activated_ms, retired_ms) "
		      "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
		      "ttttuuu", ca->fingerprint, activate ? "active" : "trusted", ca->subject,
		      ca->cert_pem, ca->not_before, ca->not_after, ts_ms)) != 0)
		goto fail;
	/* activated_ms stays NULL ("never") for a CA added as trusted only. */
	if (activate && (rc = run(st, "UPDATE cas SET activated_ms = ? WHERE fingerprint = ?", "ut",
				  ts_ms, ca->fingerprint)) != 0)
		goto fail;
	if ((rc = audit(st, ts_ms, actor, "ca-add", ca->fingerprint, 0,
			activate ? "active" : "trusted")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0)
		goto fail;
	return 0;
fail:
	opd_errmsg_wrapf(st->errmsg, "add CA %s", ca->fingerprint);
	tx_rollback(st, nested);
	return rc;
}

int opd_store_activate_ca(struct opd_store *st, const char *fingerprint, const char *actor,
			  uint64_t ts_ms)
{
	struct opd_ca_info c;
	bool nested;
	int rc;

	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = opd_store_get_ca(st, fingerprint, &c)) != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	rc = strcmp(c.state, "retired") == 0 ? OPD_ECONFLICT : 0;
	if (rc == 0 && strcmp(c.state, "active") == 0) {
		opd_ca_info_fini(&c);
		tx_rollback(st, nested);
		return 0;
	}
	opd_ca_info_fini(&c);
	if (rc != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	if ((rc = demote_active(st)) != 0 ||
	    (rc = run(st, "UPDATE cas SET state = 'active', activated_ms = ? WHERE fingerprint = ?",
		      "ut", ts_ms, fingerprint)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "ca-activate", fingerprint, 0, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "activate CA %s", fingerprint);
		tx_rollback(st, nested);
	}
	return rc;
}

int opd_store_retire_ca(struct opd_store *st, const char *fingerprint, const char *actor,
			uint64_t ts_ms)
{
	struct opd_ca_info c;
	bool nested;
	int rc;

	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = opd_store_get_ca(st, fingerprint, &c)) != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	/* The active CA signs new certificates: activate another one first. */
	rc = strcmp(c.state, "trusted") == 0 ? 0 : OPD_ECONFLICT;
	opd_ca_info_fini(&c);
	if (rc != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	if ((rc = run(st,
		      "UPDATE cas SET state = 'retired', retired_ms = max(?, 1) "
		      "WHERE fingerprint = ?",
		      "ut", ts_ms, fingerprint)) != 0 ||
	    (rc = audit(st, ts_ms, actor, "ca-retire", fingerprint, 0, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "retire CA %s", fingerprint);
		tx_rollback(st, nested);
	}
	return rc;
}

void opd_cert_info_fini(struct opd_cert_info *c)
{
	free(c->subject);
	free(c->cert_pem);
	free(c->actor);
	c->subject = c->cert_pem = c->actor = NULL;
}

#define CERT_COLUMNS                                                                               \
	"SELECT c.serial, c.instance_uid, c.fingerprint, c.ca_fingerprint, c.reason, "             \
	"c.rotation_id, c.subject, c.cert_pem, c.actor, c.not_before, c.not_after, c.issued_ms, "  \
	"r.serial IS NOT NULL, r.revoked_ms, r.reason "                                            \
	"FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial "

static void fill_cert(sqlite3_stmt *stmt, struct opd_cert_info *c)
{
	*c = (struct opd_cert_info){0};
	c->serial = col_u64(stmt, 0);
	copy_col(stmt, 1, c->instance_uid, sizeof c->instance_uid);
	copy_col(stmt, 2, c->fingerprint, sizeof c->fingerprint);
	copy_col(stmt, 3, c->ca_fingerprint, sizeof c->ca_fingerprint);
	copy_col(stmt, 4, c->reason, sizeof c->reason);
	copy_col(stmt, 5, c->rotation_id, sizeof c->rotation_id);
	c->subject = col_strdup(stmt, 6);
	c->cert_pem = col_strdup(stmt, 7);
	c->actor = col_strdup(stmt, 8);
	c->not_before = col_u64(stmt, 9);
	c->not_after = col_u64(stmt, 10);
	c->issued_ms = col_u64(stmt, 11);
	c->revoked = sqlite3_column_int(stmt, 12) != 0;
	c->revoked_ms = col_u64(stmt, 13);
	copy_col(stmt, 14, c->revoke_reason, sizeof c->revoke_reason);
}

int opd_store_get_certificate(struct opd_store *st, uint64_t serial, struct opd_cert_info *out)
{
	sqlite3_stmt *stmt;
	int rc;

	if (serial == 0 || serial > INT64_MAX)
		return OPD_ENOTFOUND;
	if ((rc = query(st, &stmt, CERT_COLUMNS "WHERE c.serial = ?", "u", serial)) != 0)
		return rc;
	rc = step(st, stmt);
	if (rc == 1) {
		fill_cert(stmt, out);
		rc = 0;
	} else if (rc == 0) {
		rc = OPD_ENOTFOUND;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_last_serial(struct opd_store *st, uint64_t *out)
{
	return meta_get(st, "cert_serial", out);
}

static bool cert_reason_ok(const char *r)
{
	return r != NULL && (strcmp(r, "csr") == 0 || strcmp(r, "server") == 0 ||
			     strcmp(r, "renewal") == 0 || strcmp(r, "rotation") == 0);
}

int opd_store_add_certificate(struct opd_store *st, const struct opd_new_cert *c, const char *actor,
			      uint64_t ts_ms)
{
	const char *rotation = c->rotation_id != NULL ? c->rotation_id : "";
	struct opd_ca_info ca;
	sqlite3_stmt *stmt;
	uint64_t last;
	bool nested;
	int rc;

	if (c->serial == 0 || c->serial > INT64_MAX || !lower_hex(c->instance_uid, 32) ||
	    !lower_hex(c->fingerprint, OPD_STORE_FP_LEN) ||
	    !lower_hex(c->ca_fingerprint, OPD_STORE_FP_LEN) || c->cert_pem == NULL ||
	    c->cert_pem[0] == '\0' || !cert_reason_ok(c->reason) ||
	    strlen(rotation) > OPD_STORE_ROTATION_ID_MAX || c->not_before >= c->not_after ||
	    c->not_after > INT64_MAX) {
		opd_errmsg_printf(st->errmsg, "add certificate: a malformed field");
		return OPD_EINVAL;
	}
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = opd_store_get_ca(st, c->ca_fingerprint, &ca)) != 0)
		goto out;
	rc = strcmp(ca.state, "retired") == 0 ? OPD_ECONFLICT : 0;
	opd_ca_info_fini(&ca);
	if (rc != 0)
		goto out;
	/* Serial and fingerprint are unique: a second issuance with either is a conflict. */
	if ((rc = query(st, &stmt,
			"SELECT 1 FROM certificates WHERE serial = ? OR fingerprint = ? LIMIT 1",
			"ut", c->serial, c->fingerprint)) != 0)
		goto out;
	rc = step(st, stmt);
	stmt_done(st, stmt);
	if (rc != 0) {
		rc = rc == 1 ? OPD_ECONFLICT : rc;
		goto out;
	}
	if ((rc = meta_get(st, "cert_serial", &last)) != 0 ||
	    (rc = run(st,
		      "INSERT INTO certificates (serial, instance_uid, subject, not_before, "
		      "not_after, fingerprint, ca_fingerprint, cert_pem, reason, rotation_id, "
		      "issued_ms, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		      "uttuutttttut", c->serial, c->instance_uid, c->subject, c->not_before,
		      c->not_after, c->fingerprint, c->ca_fingerprint, c->cert_pem, c->reason,
		      rotation, ts_ms, actor)) != 0 ||
	    (c->serial > last && (rc = meta_set(st, "cert_serial", c->serial)) != 0) ||
	    (rc = audit(st, ts_ms, actor, "cert-issue", c->instance_uid, c->serial, c->reason)) !=
		0 ||
	    (rc = tx_commit(st, nested)) != 0) {
		opd_errmsg_wrapf(st->errmsg, "add certificate %llu", (unsigned long long)c->serial);
		tx_rollback(st, nested);
		return rc;
	}
	return 0;
out:
	tx_rollback(st, nested);
	return rc;
}

int opd_store_revoke_certificate(struct opd_store *st, uint64_t serial, const char *reason,
				 const char *actor, uint64_t ts_ms)
{
	struct opd_cert_info c;
	bool nested;
	int rc;

	if (reason == NULL || reason[0] == '\0' || strlen(reason) > OPD_STORE_CERT_REASON_MAX)
		return OPD_EINVAL;
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = opd_store_get_certificate(st, serial, &c)) != 0) {
		tx_rollback(st, nested);
		return rc;
	}
	rc = c.revoked ? OPD_ECONFLICT : 0;
	if (rc == 0 &&
	    ((rc = run(st,
		       "INSERT INTO revocations (serial, reason, revoked_ms, actor) "
		       "VALUES (?, ?, ?, ?)",
		       "utut", serial, reason, ts_ms, actor)) != 0 ||
	     (rc = audit(st, ts_ms, actor, "cert-revoke", c.instance_uid, serial, reason)) != 0 ||
	     (rc = tx_commit(st, nested)) != 0))
		opd_errmsg_wrapf(st->errmsg, "revoke certificate %llu", (unsigned long long)serial);
	if (rc != 0)
		tx_rollback(st, nested);
	opd_cert_info_fini(&c);
	return rc;
}

int opd_store_foreach_certificate(struct opd_store *st, const struct opd_cert_filter *f,
				  int (*cb)(void *data, const struct opd_cert_info *c), void *data)
{
	static const struct opd_cert_filter all = {0};
	struct opd_cert_info c;
	sqlite3_stmt *stmt;
	struct opd_buf sql;
	int rc;

	if (f == NULL)
		f = &all;
	/* Every condition is always bound, with a value that makes it true when unused. */
	opd_buf_init(&sql);
	opd_buf_appendf(&sql, "%s", CERT_COLUMNS);
	opd_buf_appendf(&sql,
			"WHERE (? = '' OR c.instance_uid = ?) AND (? = 0 OR c.not_after <= ?) "
			"AND c.not_after >= ? AND (? = 0 OR r.serial IS NULL) ");
	opd_buf_appendf(&sql, "ORDER BY %s LIMIT ?",
			f->by_expiry ? "c.not_after, c.serial" : "c.serial");
	opd_buf_append_byte(&sql, '\0');
	rc = query(st, &stmt, (const char *)opd_buf_rptr(&sql), "ttuuuii",
		   f->instance_uid ? f->instance_uid : "", f->instance_uid ? f->instance_uid : "",
		   f->expiring_before, f->expiring_before, f->valid_at,
		   (int64_t)(f->exclude_revoked != 0),
		   f->limit == 0 || f->limit > INT64_MAX ? (int64_t)-1 : (int64_t)f->limit);
	opd_buf_fini(&sql);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		fill_cert(stmt, &c);
		rc = cb(data, &c);
		opd_cert_info_fini(&c);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

int opd_store_foreach_revocation(struct opd_store *st, uint64_t valid_at,
				 int (*cb)(void *data, const struct opd_revocation *r), void *data)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = query(st, &stmt,
		   "SELECT r.serial, c.ca_fingerprint, r.reason, r.revoked_ms, c.not_after "
		   "FROM revocations r JOIN certificates c ON c.serial = r.serial "
		   "WHERE c.not_after >= ? ORDER BY r.serial",
		   "u", valid_at);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		const unsigned char *ca = sqlite3_column_text(stmt, 1),
				    *reason = sqlite3_column_text(stmt, 2);
		struct opd_revocation r = {
		    .serial = col_u64(stmt, 0),
		    .ca_fingerprint = ca ? (const char *)ca : "",
		    .reason = reason ? (const char *)reason : "",
		    .revoked_ms = col_u64(stmt, 3),
		    .not_after = col_u64(stmt, 4),
		};
		if ((rc = cb(data, &r)) != 0)
			break;
	}
	stmt_done(st, stmt);
	return rc;
}

void opd_rotation_info_fini(struct opd_rotation_info *r)
{
	opd_kvs_fini(&r->selector);
	free(r->actor);
	r->actor = NULL;
}

static int rotation_id_ok(const char *id)
{
	return id != NULL && id[0] != '\0' && strlen(id) <= OPD_STORE_ROTATION_ID_MAX;
}

int opd_store_add_rotation(struct opd_store *st, const char *id, const struct opd_kvs *selector,
			   const char *actor, uint64_t ts_ms)
{
	struct opd_kvs sel;
	sqlite3_stmt *stmt;
	bool nested;
	int rc;

	if (!rotation_id_ok(id))
		return OPD_EINVAL;
	if ((rc = tx_begin(st, &nested)) != 0)
		return rc;
	if ((rc = query(st, &stmt, "SELECT 1 FROM rotations WHERE id = ?", "t", id)) != 0)
		goto fail;
	rc = step(st, stmt);
	stmt_done(st, stmt);
	if (rc != 0) {
		tx_rollback(st, nested);
		return rc == 1 ? OPD_ECONFLICT : rc;
	}
	if ((rc = run(st, "INSERT INTO rotations (id, started_ms, actor) VALUES (?, ?, ?)", "tut",
		      id, ts_ms, actor)) != 0)
		goto fail;
	/* Canonical (sorted, duplicates dropped) so that every replica stores the same rows. */
	selector_canon(selector, &sel);
	for (size_t i = 0; rc == 0 && i < sel.n; i++)
		rc = run(st, "INSERT INTO rotation_selectors (id, key, value) VALUES (?, ?, ?)",
			 "ttt", id, sel.v[i].key, sel.v[i].value);
	opd_kvs_fini(&sel);
	if (rc != 0 || (rc = audit(st, ts_ms, actor, "rotation-start", id, 0, "")) != 0 ||
	    (rc = tx_commit(st, nested)) != 0)
		goto fail;
	return 0;
fail:
	opd_errmsg_wrapf(st->errmsg, "add rotation %s", id);
	tx_rollback(st, nested);
	return rc;
}

static int load_rotation_selector(struct opd_store *st, const char *id, struct opd_kvs *out)
{
	sqlite3_stmt *stmt;
	int rc;

	opd_kvs_init(out);
	rc = query(st, &stmt,
		   "SELECT key, value FROM rotation_selectors WHERE id = ? ORDER BY key, value",
		   "t", id);
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1)
		opd_kvs_add(out, (const char *)sqlite3_column_text(stmt, 0),
			    (const char *)sqlite3_column_text(stmt, 1));
	stmt_done(st, stmt);
	return rc;
}

static int rotations(struct opd_store *st, const char *id,
		     int (*cb)(void *data, const struct opd_rotation_info *r), void *data)
{
	struct opd_rotation_info r;
	sqlite3_stmt *stmt;
	int rc, found = 0;

	rc = query(st, &stmt,
		   "SELECT id, started_ms, actor FROM rotations WHERE ? = '' OR id = ? "
		   "ORDER BY started_ms DESC, id",
		   "tt", id ? id : "", id ? id : "");
	if (rc != 0)
		return rc;
	while ((rc = step(st, stmt)) == 1) {
		r = (struct opd_rotation_info){0};
		copy_col(stmt, 0, r.id, sizeof r.id);
		r.started_ms = col_u64(stmt, 1);
		r.actor = col_strdup(stmt, 2);
		found = 1;
		if ((rc = load_rotation_selector(st, r.id, &r.selector)) == 0)
			rc = cb(data, &r);
		opd_rotation_info_fini(&r);
		if (rc != 0)
			break;
	}
	stmt_done(st, stmt);
	if (rc == 0 && id != NULL && !found)
		rc = OPD_ENOTFOUND;
	return rc;
}

static int rotation_copy(void *data, const struct opd_rotation_info *r)
{
	struct opd_rotation_info *out = data;

	*out = *r;
	opd_kvs_copy(&out->selector, &r->selector);
	out->actor = opd_xstrdup(r->actor ? r->actor : "");
	return 1;
}

int opd_store_get_rotation(struct opd_store *st, const char *id, struct opd_rotation_info *out)
{
	struct opd_rotation_info r = {0};
	int rc;

	if (!rotation_id_ok(id))
		return OPD_ENOTFOUND;
	rc = rotations(st, id, rotation_copy, &r);
	if (rc == 1) {
		*out = r;
		return 0;
	}
	return rc;
}

int opd_store_foreach_rotation(struct opd_store *st,
			       int (*cb)(void *data, const struct opd_rotation_info *r), void *data)
{
	return rotations(st, NULL, cb, data);
}
