/* store: versions, selectors, rollback, delete, canonical dump and persistence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "buf.h"
#include "config_hash.h"
#include "sql_migrations.h"
#include "store.h"

/* A put request with owned selector and files, built by the tests. */
struct req {
	struct opd_kvs sel;
	struct opd_files files;
	struct opd_put_version in;
};

static void req_init(struct req *r, const char *name, const char *body, int64_t priority,
		     const char *sel_value, uint64_t ts)
{
	opd_kvs_init(&r->sel);
	opd_files_init(&r->files);
	if (sel_value != NULL) {
		opd_kvs_add(&r->sel, "service.name", sel_value);
		opd_kvs_add(&r->sel, "env", "prod");
		opd_kvs_sort(&r->sel);
	}
	opd_files_add(&r->files, "z.yaml", "text/yaml", body, strlen(body));
	opd_files_add(&r->files, "a.txt", "text/plain", "", 0);
	opd_files_sort(&r->files);
	r->in = (struct opd_put_version){
	    .name = name,
	    .selector = &r->sel,
	    .priority = priority,
	    .files = &r->files,
	    .message = "msg",
	    .actor = "alice",
	    .ts_ms = ts,
	};
	opd_config_hash(&r->files, r->in.hash);
}

static void req_fini(struct req *r)
{
	opd_kvs_fini(&r->sel);
	opd_files_fini(&r->files);
}

/* Put and return the resulting version; created is checked against want_created. */
static uint64_t put(struct opd_store *st, const char *name, const char *body, int64_t priority,
		    const char *sel_value, uint64_t ts, int want_created)
{
	struct opd_put_result res = {0};
	struct req r;
	int rc;

	req_init(&r, name, body, priority, sel_value, ts);
	rc = opd_store_put_version(st, &r.in, &res);
	if (rc != 0)
		fail_msg("put %s: %d %s", name, rc, opd_store_errmsg(st));
	assert_int_equal(res.created, want_created);
	req_fini(&r);
	return res.version;
}

static int setup(void **state)
{
	struct opd_store *st = calloc(1, sizeof *st);

	assert_non_null(st);
	if (opd_store_open(st, ":memory:") != 0)
		fail_msg("open: %s", opd_store_errmsg(st));
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	struct opd_store *st = *state;

	opd_store_close(st);
	opd_store_close(st); /* idempotent */
	free(st);
	return 0;
}

/* The first store opened switched sqlite's memory statistics off (store.c, configure_sqlite). */
static void test_no_memory_statistics(void **state)
{
	struct opd_store *st = *state;

	put(st, "c", "v: 1\n", 0, NULL, 1, 1);
	assert_int_equal(sqlite3_memory_used(), 0); /* counted, it is never 0 with a store open */
}

static void test_put_and_read(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;
	struct opd_version_info v;
	struct req r;

	assert_int_equal(put(st, "collector", "a: 1\n", 5, "col", 1000, 1), 1);
	req_init(&r, "collector", "a: 1\n", 5, "col", 0);

	assert_int_equal(opd_store_get_config(st, "collector", &c), 0);
	assert_string_equal(c.name, "collector");
	assert_int_equal(c.priority, 5);
	assert_int_equal(c.active_version, 1);
	assert_int_equal(c.latest_version, 1);
	assert_int_equal(c.created_ms, 1000);
	assert_int_equal(c.updated_ms, 1000);
	assert_memory_equal(c.active_hash, r.in.hash, OPD_CONFIG_HASH_LEN);
	assert_int_equal(c.selector.n, 2);
	assert_string_equal(c.selector.v[0].key, "env");
	assert_string_equal(c.selector.v[0].value, "prod");
	assert_string_equal(c.selector.v[1].key, "service.name");
	assert_string_equal(c.selector.v[1].value, "col");
	opd_config_info_fini(&c);

	assert_int_equal(opd_store_get_version(st, "collector", 1, &v), 0);
	assert_string_equal(v.name, "collector");
	assert_int_equal(v.version, 1);
	assert_string_equal(v.message, "msg");
	assert_string_equal(v.actor, "alice");
	assert_int_equal(v.created_ms, 1000);
	assert_memory_equal(v.hash, r.in.hash, OPD_CONFIG_HASH_LEN);
	assert_int_equal(v.files.n, 2);
	assert_string_equal(v.files.v[0].name, "a.txt");
	assert_int_equal(v.files.v[0].len, 0);
	assert_string_equal(v.files.v[1].name, "z.yaml");
	assert_string_equal(v.files.v[1].content_type, "text/yaml");
	assert_int_equal(v.files.v[1].len, 5);
	assert_memory_equal(v.files.v[1].body, "a: 1\n", 5);
	/* The stored files hash to the stored hash. */
	uint8_t h[OPD_CONFIG_HASH_LEN];
	opd_config_hash(&v.files, h);
	assert_memory_equal(h, v.hash, sizeof h);
	opd_version_info_fini(&v);

	assert_int_equal(opd_store_get_version(st, "collector", 2, &v), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_config(st, "nope", &c), OPD_ENOTFOUND);
	req_fini(&r);
}

static void test_put_rejects_empty_name(void **state)
{
	struct opd_store *st = *state;
	struct opd_put_result res = {.version = 77};
	struct req r;

	req_init(&r, "", "a: 1\n", 0, NULL, 1);
	assert_int_equal(opd_store_put_version(st, &r.in, &res), OPD_EINVAL);
	assert_int_equal(res.version, 77); /* untouched on failure */
	req_fini(&r);
}

static void test_identical_reput(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;

	assert_int_equal(put(st, "c", "a: 1\n", 0, "x", 10, 1), 1);
	assert_int_equal(put(st, "c", "a: 1\n", 0, "x", 20, 0), 1);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.latest_version, 1);
	assert_int_equal(c.updated_ms, 10); /* nothing written */
	opd_config_info_fini(&c);

	/* Body, priority, selector each make a new version. */
	assert_int_equal(put(st, "c", "a: 2\n", 0, "x", 30, 1), 2);
	assert_int_equal(put(st, "c", "a: 2\n", 1, "x", 40, 1), 3);
	assert_int_equal(put(st, "c", "a: 2\n", 1, "y", 50, 1), 4);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.selector.n, 2); /* the new selector replaced the old */
	assert_string_equal(c.selector.v[1].value, "y");
	opd_config_info_fini(&c);
	assert_int_equal(put(st, "c", "a: 3\n", 1, "y", 55, 1), 5); /* the selector kept */
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.selector.n, 2);
	assert_string_equal(c.selector.v[1].value, "y");
	opd_config_info_fini(&c);
	assert_int_equal(put(st, "c", "a: 3\n", 1, NULL, 60, 1), 6);
	assert_int_equal(put(st, "c", "a: 3\n", 1, NULL, 70, 0), 6);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.selector.n, 0);
	assert_int_equal(c.priority, 1);
	assert_int_equal(c.updated_ms, 60);
	opd_config_info_fini(&c);
}

static int collect_version(void *data, const struct opd_version_info *v)
{
	struct opd_buf *b = data;

	assert_int_equal(v->files.n, 0); /* foreach does not load files */
	opd_buf_appendf(b, "%llu@%llu,", (unsigned long long)v->version,
			(unsigned long long)v->created_ms);
	return 0;
}

static int collect_config(void *data, const struct opd_config_info *c)
{
	struct opd_buf *b = data;

	opd_buf_appendf(b, "%s:%llu,", c->name, (unsigned long long)c->active_version);
	return 0;
}

static int stop_after_first(void *data, const struct opd_config_info *c)
{
	int *calls = data;

	(void)c;
	(*calls)++;
	return 42;
}

static void assert_buf(struct opd_buf *b, const char *want)
{
	opd_buf_append_byte(b, '\0');
	assert_string_equal((const char *)opd_buf_rptr(b), want);
	opd_buf_reset(b);
}

static void test_foreach(void **state)
{
	struct opd_store *st = *state;
	struct opd_buf b;
	int calls = 0;

	opd_buf_init(&b);
	put(st, "b", "x: 1\n", 0, NULL, 1, 1);
	put(st, "a", "x: 1\n", 0, NULL, 2, 1);
	put(st, "b", "x: 2\n", 0, NULL, 3, 1);
	put(st, "c", "x: 1\n", 0, NULL, 4, 1);
	assert_int_equal(opd_store_delete(st, "c", "bob", 5), 0);

	assert_int_equal(opd_store_foreach_config(st, collect_config, &b), 0);
	assert_buf(&b, "a:1,b:2,");
	assert_int_equal(opd_store_foreach_config(st, stop_after_first, &calls), 42);
	assert_int_equal(calls, 1);

	assert_int_equal(opd_store_foreach_version(st, "b", collect_version, &b), 0);
	assert_buf(&b, "2@3,1@1,");
	assert_int_equal(opd_store_foreach_version(st, "c", collect_version, &b), OPD_ENOTFOUND);
	assert_int_equal(opd_store_foreach_version(st, "zz", collect_version, &b), OPD_ENOTFOUND);
	assert_int_equal(opd_buf_avail(&b), 0);
	opd_buf_fini(&b);
}

static void test_rollback(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;
	struct req r1;

	put(st, "c", "v: 1\n", 0, NULL, 1, 1);
	put(st, "c", "v: 2\n", 0, NULL, 2, 1);
	put(st, "c", "v: 3\n", 0, NULL, 3, 1);
	assert_int_equal(opd_store_set_active(st, "c", 1, "bob", 4), 0);
	req_init(&r1, "c", "v: 1\n", 0, NULL, 0);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.active_version, 1);
	assert_int_equal(c.latest_version, 3);
	assert_int_equal(c.updated_ms, 4);
	assert_memory_equal(c.active_hash, r1.in.hash, OPD_CONFIG_HASH_LEN);
	opd_config_info_fini(&c);

	assert_int_equal(opd_store_set_active(st, "c", 9, "bob", 5), OPD_ENOTFOUND);
	assert_int_equal(opd_store_set_active(st, "c", 0, "bob", 5), OPD_ENOTFOUND);
	assert_int_equal(opd_store_set_active(st, "nope", 1, "bob", 5), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.active_version, 1);
	assert_int_equal(c.updated_ms, 4);
	opd_config_info_fini(&c);

	/* Re-putting the active (rolled back) content is a no-op; new content gets 4. */
	assert_int_equal(put(st, "c", "v: 1\n", 0, NULL, 6, 0), 1);
	assert_int_equal(put(st, "c", "v: 3\n", 0, NULL, 7, 1), 4);
	req_fini(&r1);
}

static void test_delete_and_recreate(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;
	struct opd_version_info v;

	put(st, "c", "v: 1\n", 3, "s", 1, 1);
	put(st, "c", "v: 2\n", 3, "s", 2, 1);
	assert_int_equal(opd_store_delete(st, "c", "bob", 3), 0);
	assert_int_equal(opd_store_get_config(st, "c", &c), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_version(st, "c", 2, &v), OPD_ENOTFOUND);
	assert_int_equal(opd_store_delete(st, "c", "bob", 4), OPD_ENOTFOUND);
	assert_int_equal(opd_store_delete(st, "never", "bob", 4), OPD_ENOTFOUND);
	assert_int_equal(opd_store_set_active(st, "c", 1, "bob", 4), OPD_ENOTFOUND);

	assert_int_equal(opd_store_latest_version(st, "c"), 2); /* deleted, numbering kept */
	assert_int_equal(opd_store_latest_version(st, "never"), 0);
	/* Same content as before the delete still makes a new version: 3, not 1. */
	assert_int_equal(put(st, "c", "v: 2\n", 3, "s", 5, 1), 3);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.active_version, 3);
	assert_int_equal(c.latest_version, 3);
	assert_int_equal(c.created_ms, 1);
	assert_int_equal(c.updated_ms, 5);
	opd_config_info_fini(&c);
	/* Old versions are still there after the revival. */
	assert_int_equal(opd_store_get_version(st, "c", 1, &v), 0);
	assert_int_equal(v.created_ms, 1);
	opd_version_info_fini(&v);
}

/* The same sequence of calls, applied to any store. */
static void history(struct opd_store *st)
{
	put(st, "alpha", "k: v\n", 1, "a", 100, 1);
	put(st, "beta", "k: 'q\\n'\n", 2, NULL, 101, 1);
	put(st, "alpha", "k: w\n", 1, "a", 102, 1);
	assert_int_equal(opd_store_set_active(st, "alpha", 1, "bob", 103), 0);
	assert_int_equal(opd_store_delete(st, "beta", "bob", 104), 0);
	put(st, "beta", "k: x\n", 2, "b", 105, 1);
}

static void dump(struct opd_store *st, struct opd_buf *b)
{
	opd_buf_init(b);
	if (opd_store_dump(st, b) != 0)
		fail_msg("dump: %s", opd_store_errmsg(st));
	opd_buf_append_byte(b, '\0');
}

static void test_dump_identical(void **state)
{
	struct opd_store *a = *state, b;
	struct opd_buf da, db;

	assert_int_equal(opd_store_open(&b, ":memory:"), 0);
	history(a);
	history(&b);
	dump(a, &da);
	dump(&b, &db);
	assert_string_equal((const char *)opd_buf_rptr(&da), (const char *)opd_buf_rptr(&db));
	/* Every table is there, with hex blobs and escaped text. */
	const char *text = (const char *)opd_buf_rptr(&da);
	assert_non_null(strstr(text, "user_version 5\n"));
	assert_non_null(strstr(text, "table config_version_selectors\n"));
	assert_non_null(strstr(text, "table members\n"));
	assert_non_null(strstr(text, "table requests\n"));
	assert_non_null(strstr(text, "table signing_keys\n"));
	assert_non_null(strstr(text, "table audit\n"));
	assert_non_null(strstr(text, "table config_files\n"));
	assert_non_null(strstr(text, "table config_selectors\n"));
	assert_non_null(strstr(text, "table config_versions\n"));
	assert_non_null(strstr(text, "table configs\n"));
	assert_non_null(strstr(text, "table meta\n"));
	assert_non_null(strstr(text, " 'alpha' 1 'z.yaml' 'text/yaml' x'6b3a20760a'\n"));
	assert_non_null(strstr(text, " 'alpha' 1 'a.txt' 'text/plain' x''\n"));
	assert_non_null(strstr(text, "'rollback' 'alpha' 1 'from 2'"));
	opd_buf_fini(&db);

	put(&b, "gamma", "k: v\n", 0, NULL, 106, 1);
	dump(&b, &db);
	assert_string_not_equal((const char *)opd_buf_rptr(&da), (const char *)opd_buf_rptr(&db));
	opd_buf_fini(&da);
	opd_buf_fini(&db);
	opd_store_close(&b);
}

static void test_dump_order_of_calls_matters(void **state)
{
	struct opd_store *a = *state, b;
	struct opd_buf da, db;

	/* Same final configs, different history: the audit trail differs. */
	assert_int_equal(opd_store_open(&b, ":memory:"), 0);
	put(a, "x", "k: 1\n", 0, NULL, 1, 1);
	put(a, "y", "k: 1\n", 0, NULL, 1, 1);
	put(&b, "y", "k: 1\n", 0, NULL, 1, 1);
	put(&b, "x", "k: 1\n", 0, NULL, 1, 1);
	dump(a, &da);
	dump(&b, &db);
	assert_string_not_equal((const char *)opd_buf_rptr(&da), (const char *)opd_buf_rptr(&db));
	opd_buf_fini(&da);
	opd_buf_fini(&db);
	opd_store_close(&b);
}

static int64_t user_version(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	int64_t v;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return v;
}

static void test_reopen_file(void **state)
{
	char dir[] = "/tmp/opd_store_XXXXXX", path[64], side[80];
	struct opd_store st;
	struct opd_config_info c;
	struct opd_buf before, after;
	int64_t want = 0;

	(void)state;
	while (opd_sql_migrations[want] != NULL)
		want++;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);

	assert_int_equal(opd_store_open(&st, path), 0);
	history(&st);
	dump(&st, &before);
	opd_store_close(&st);
	assert_int_equal(user_version(path), want);

	/*
	 * The first migration creates tables without IF NOT EXISTS, so running it
	 * again would fail the open; a row in meta shows the file was not rebuilt.
	 */
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "INSERT INTO meta VALUES ('marker', 1)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(opd_store_open(&st, path), 0);
	assert_int_equal(user_version(path), want);
	assert_int_equal(opd_store_get_config(&st, "alpha", &c), 0);
	assert_int_equal(c.active_version, 1);
	assert_int_equal(c.latest_version, 2);
	opd_config_info_fini(&c);
	dump(&st, &after);
	const char *a = (const char *)opd_buf_rptr(&after);
	assert_non_null(strstr(a, "row 'marker' 1\n"));
	assert_string_not_equal(a, (const char *)opd_buf_rptr(&before));
	/* Next version continues after a reopen. */
	assert_int_equal(put(&st, "alpha", "k: z\n", 1, "a", 200, 1), 3);
	opd_store_close(&st);
	opd_buf_fini(&before);
	opd_buf_fini(&after);

	/* A database from a newer binary is refused, and the error says why. */
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(opd_store_open(&st, path), OPD_ESTORE);
	assert_null(st.db);
	assert_non_null(strstr(opd_store_errmsg(&st), "newer"));
	opd_store_close(&st);

	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
	assert_int_equal(rmdir(dir), 0);
}

static void test_open_failure(void **state)
{
	struct opd_store st;

	(void)state;
	assert_int_equal(opd_store_open(&st, "/nonexistent-dir-opd/x/store.db"), OPD_ESTORE);
	assert_null(st.db);
	assert_non_null(strstr(opd_store_errmsg(&st), "/nonexistent-dir-opd/x/store.db"));
	opd_store_close(&st);
}

static void test_put_inside_outer_transaction(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;

	/* The FSM wraps one applied entry in its own transaction; puts nest as savepoints. */
	assert_int_equal(sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	put(st, "n", "k: 1\n", 0, NULL, 1, 1);
	assert_int_equal(opd_store_set_active(st, "n", 7, "bob", 2), OPD_ENOTFOUND);
	assert_int_equal(sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(opd_store_get_config(st, "n", &c), OPD_ENOTFOUND);
}

/* Copy of a dump as a C string (the caller frees). */
static char *dump_str(struct opd_store *st)
{
	struct opd_buf b;
	size_t n;

	dump(st, &b);
	return (char *)opd_buf_steal(&b, &n);
}

static int collect_signed(void *data, const struct opd_version_info *v)
{
	struct opd_buf *b = data;

	opd_buf_appendf(b, "%llu:%s:%zu:%llu:%u:%lld:%d:%zu,", (unsigned long long)v->version,
			v->key_id, v->signature_len, (unsigned long long)v->term, v->hlc_logical,
			(long long)v->priority, v->has_priority, v->selector.n);
	return 0;
}

static void test_put_explicit_version(void **state)
{
	struct opd_store *st = *state;
	struct opd_put_result res = {0};
	struct opd_version_info v;
	struct opd_buf b;
	uint8_t sig[64];
	struct req r;
	char *before, *after;

	memset(sig, 0x33, sizeof sig);
	opd_buf_init(&b);
	put(st, "c", "v: 1\n", 2, "s", 10, 1);

	/* Not latest + 1: refused, nothing written. */
	before = dump_str(st);
	req_init(&r, "c", "v: 2\n", 2, "s", 20);
	for (uint64_t bad = 1; bad <= 5; bad += 2) {
		r.in.version = bad;
		res.version = 99;
		assert_int_equal(opd_store_put_version(st, &r.in, &res), OPD_ECONFLICT);
		assert_int_equal(res.version, 99);
	}
	after = dump_str(st);
	assert_string_equal(before, after);
	free(before);
	free(after);

	/* latest + 1 with the signed record's fields: stored and returned. */
	r.in.version = 2;
	r.in.signature = sig;
	r.in.signature_len = sizeof sig;
	r.in.key_id = "0123456789abcdef";
	r.in.term = 7;
	r.in.hlc_logical = 4;
	assert_int_equal(opd_store_put_version(st, &r.in, &res), 0);
	assert_int_equal(res.version, 2);
	assert_int_equal(res.created, 1);
	assert_int_equal(opd_store_get_version(st, "c", 2, &v), 0);
	assert_int_equal(v.signature_len, 64);
	assert_memory_equal(v.signature, sig, 64);
	assert_string_equal(v.key_id, "0123456789abcdef");
	assert_int_equal(v.term, 7);
	assert_int_equal(v.hlc_logical, 4);
	assert_int_equal(v.created_ms, 20);
	assert_int_equal(v.priority, 2);
	assert_true(v.has_priority);
	assert_int_equal(v.selector.n, 2);
	assert_string_equal(v.selector.v[0].key, "env");
	assert_string_equal(v.selector.v[1].value, "s");
	opd_version_info_fini(&v);

	/* Identical to the active version, with the right number: nothing written. */
	r.in.version = 3;
	assert_int_equal(opd_store_put_version(st, &r.in, &res), 0);
	assert_int_equal(res.version, 2);
	assert_int_equal(res.created, 0);
	/* Identical content but a stale number is still a conflict (checked first). */
	r.in.version = 2;
	assert_int_equal(opd_store_put_version(st, &r.in, &res), OPD_ECONFLICT);
	req_fini(&r);

	/* A new name must start at 1. */
	req_init(&r, "fresh", "v: 1\n", 0, NULL, 30);
	r.in.version = 2;
	assert_int_equal(opd_store_put_version(st, &r.in, &res), OPD_ECONFLICT);
	r.in.version = 1;
	assert_int_equal(opd_store_put_version(st, &r.in, &res), 0);
	assert_int_equal(res.version, 1);
	req_fini(&r);

	assert_int_equal(opd_store_foreach_version(st, "c", collect_signed, &b), 0);
	assert_buf(&b, "2:0123456789abcdef:64:7:4:2:1:2,1::0:0:0:2:1:2,");
	opd_buf_fini(&b);
}

/* Put body as the next version of name with a history limit; returns the version. */
static uint64_t put_kept(struct opd_store *st, const char *name, const char *body, uint32_t limit)
{
	struct opd_put_result res = {0};
	struct req r;

	req_init(&r, name, body, 0, "s", 1);
	r.in.history_limit = limit;
	if (opd_store_put_version(st, &r.in, &res) != 0)
		fail_msg("put %s: %s", name, opd_store_errmsg(st));
	req_fini(&r);
	return res.version;
}

/* Rows of name's versions below version in table (the three a version spans). */
static int64_t rows_below(struct opd_store *st, const char *table, const char *name,
			  uint64_t version)
{
	char sql[128];
	sqlite3_stmt *stmt;
	int64_t n;

	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE name = ?1 AND version < ?2",
		 table);
	assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL), SQLITE_OK);
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)version);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	n = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return n;
}

/* foreach_version goes newest first: the last version seen is the oldest. */
static int note_version(void *data, const struct opd_version_info *v)
{
	*(uint64_t *)data = v->version;
	return 0;
}

static uint64_t oldest_version(struct opd_store *st, const char *name)
{
	uint64_t v = 0;

	assert_int_equal(opd_store_foreach_version(st, name, note_version, &v), 0);
	return v;
}

static void test_history_limit(void **state)
{
	struct opd_store *st = *state;
	static const char *const tables[] = {"config_versions", "config_files",
					     "config_version_selectors"};
	struct opd_version_info v;
	struct opd_buf b;
	char body[32];

	/* Limit 0 keeps every version. */
	for (int i = 1; i <= 5; i++) {
		snprintf(body, sizeof body, "v: %d\n", i);
		assert_int_equal(put_kept(st, "c", body, 0), (uint64_t)i);
	}
	put_kept(st, "other", "o: 1\n", 0);
	assert_int_equal(oldest_version(st, "c"), 1);

	/* Limit 3: version 6 leaves 4, 5 and 6; every row of 1 to 3 goes. */
	assert_int_equal(put_kept(st, "c", "v: 6\n", 3), 6);
	opd_buf_init(&b);
	assert_int_equal(opd_store_foreach_version(st, "c", collect_version, &b), 0);
	assert_buf(&b, "6@1,5@1,4@1,");
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		assert_int_equal(rows_below(st, tables[i], "c", 4), 0);
	assert_int_equal(rows_below(st, "config_files", "c", 7), 3 * 2);
	assert_int_equal(opd_store_get_version(st, "c", 3, &v), OPD_ENOTFOUND);
	assert_int_equal(opd_store_set_active(st, "c", 2, "bob", 2), OPD_ENOTFOUND);
	/* Another configuration's history is its own. */
	assert_int_equal(oldest_version(st, "other"), 1);

	/* Rolled back to the oldest kept version: the next put is active, 4 goes. */
	assert_int_equal(opd_store_set_active(st, "c", 4, "bob", 2), 0);
	assert_int_equal(put_kept(st, "c", "v: 7\n", 3), 7);
	assert_int_equal(oldest_version(st, "c"), 5);
	assert_int_equal(opd_store_get_version(st, "c", 7, &v), 0);
	assert_int_equal(v.files.n, 2);
	opd_version_info_fini(&v);
	/* Re-putting the active content writes nothing, so deletes nothing. */
	assert_int_equal(put_kept(st, "c", "v: 7\n", 1), 7);
	assert_int_equal(oldest_version(st, "c"), 5);

	/* A limit lowered far below the history catches up a batch per put. */
	for (int i = 1; i <= 150; i++) {
		snprintf(body, sizeof body, "big: %d\n", i);
		put_kept(st, "big", body, 0);
	}
	assert_int_equal(put_kept(st, "big", "big: 151\n", 10), 151);
	assert_int_equal(oldest_version(st, "big"), 1 + OPD_STORE_PRUNE_BATCH);
	assert_int_equal(put_kept(st, "big", "big: 152\n", 10), 152);
	assert_int_equal(oldest_version(st, "big"), 1 + 2 * OPD_STORE_PRUNE_BATCH);
	assert_int_equal(put_kept(st, "big", "big: 153\n", 10), 153);
	assert_int_equal(oldest_version(st, "big"), 144); /* 153 - 10 + 1: caught up */
	assert_int_equal(rows_below(st, "config_versions", "big", 200), 10);
	assert_int_equal(oldest_version(st, "other"), 1);
	opd_buf_fini(&b);
}

static void test_set_selector(void **state)
{
	struct opd_store *st = *state;
	struct opd_config_info c;
	struct opd_version_info v;
	struct opd_kvs sel;
	int64_t prio = -3;

	put(st, "c", "v: 1\n", 2, "s", 10, 1);
	opd_kvs_init(&sel);
	opd_kvs_add(&sel, "zone", "b");
	opd_kvs_add(&sel, "zone", "a");
	opd_kvs_add(&sel, "zone", "a");
	assert_int_equal(opd_store_set_selector(st, "c", NULL, NULL, "bob", 11), OPD_EINVAL);
	assert_int_equal(opd_store_set_selector(st, "nope", &sel, NULL, "bob", 11), OPD_ENOTFOUND);
	assert_int_equal(opd_store_set_selector(st, "c", &sel, NULL, "bob", 12), 0);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.selector.n, 2); /* sorted, repeats dropped */
	assert_string_equal(c.selector.v[0].value, "a");
	assert_string_equal(c.selector.v[1].value, "b");
	assert_int_equal(c.priority, 2);
	assert_int_equal(c.active_version, 1);
	assert_int_equal(c.updated_ms, 12);
	opd_config_info_fini(&c);

	assert_int_equal(opd_store_set_selector(st, "c", NULL, &prio, "bob", 13), 0);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	assert_int_equal(c.selector.n, 2);
	assert_int_equal(c.priority, -3);
	assert_int_equal(c.latest_version, 1); /* no new version */
	opd_config_info_fini(&c);

	/* The version keeps what it was published with. */
	assert_int_equal(opd_store_get_version(st, "c", 1, &v), 0);
	assert_int_equal(v.priority, 2);
	assert_int_equal(v.selector.n, 2);
	assert_string_equal(v.selector.v[1].key, "service.name");
	opd_version_info_fini(&v);

	/* Putting the old content again is now a change (selector and priority differ). */
	assert_int_equal(put(st, "c", "v: 1\n", 2, "s", 14, 1), 2);
	assert_int_equal(opd_store_delete(st, "c", "bob", 15), 0);
	assert_int_equal(opd_store_set_selector(st, "c", &sel, &prio, "bob", 16), OPD_ENOTFOUND);
	opd_kvs_fini(&sel);
}

static int collect_key(void *data, const struct opd_signing_key *k)
{
	opd_buf_appendf(data, "%s:%d:%llu:%llu,", k->key_id, k->active,
			(unsigned long long)k->added_ms, (unsigned long long)k->retired_ms);
	return 0;
}

static void test_signing_keys(void **state)
{
	struct opd_store *st = *state;
	struct opd_signing_key k;
	uint8_t pk1[32], pk2[32];
	char long_id[OPD_STORE_KEY_ID_MAX + 2];
	struct opd_buf b;

	opd_buf_init(&b);
	memset(pk1, 1, sizeof pk1);
	memset(pk2, 2, sizeof pk2);
	memset(long_id, 'k', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	assert_int_equal(opd_store_active_signing_key(st, &k), OPD_ENOTFOUND);
	assert_int_equal(opd_store_add_signing_key(st, "k1", pk1, 31, 1, "a", 1), OPD_EINVAL);
	assert_int_equal(opd_store_add_signing_key(st, "", pk1, 32, 1, "a", 1), OPD_EINVAL);
	assert_int_equal(opd_store_add_signing_key(st, long_id, pk1, 32, 1, "a", 1), OPD_EINVAL);
	assert_int_equal(opd_store_add_signing_key(st, "k1", pk1, 32, 1, "a", 1), 0);
	assert_int_equal(opd_store_add_signing_key(st, "k1", pk2, 32, 0, "a", 2), OPD_ECONFLICT);
	assert_int_equal(opd_store_active_signing_key(st, &k), 0);
	assert_string_equal(k.key_id, "k1");
	assert_memory_equal(k.public_key, pk1, 32);

	/* A new key added inactive leaves k1 active; activated, it takes over. */
	assert_int_equal(opd_store_add_signing_key(st, "k2", pk2, 32, 0, "a", 3), 0);
	assert_int_equal(opd_store_active_signing_key(st, &k), 0);
	assert_string_equal(k.key_id, "k1");
	assert_int_equal(opd_store_add_signing_key(st, "k3", pk2, 32, 1, "a", 4), 0);
	assert_int_equal(opd_store_active_signing_key(st, &k), 0);
	assert_string_equal(k.key_id, "k3");

	assert_int_equal(opd_store_retire_signing_key(st, "k3", "a", 5), 0);
	assert_int_equal(opd_store_retire_signing_key(st, "k3", "a", 6), OPD_ECONFLICT);
	assert_int_equal(opd_store_retire_signing_key(st, "zz", "a", 6), OPD_ENOTFOUND);
	assert_int_equal(opd_store_active_signing_key(st, &k), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_signing_key(st, "k3", &k), 0);
	assert_int_equal(k.retired_ms, 5);
	assert_false(k.active);
	assert_int_equal(opd_store_get_signing_key(st, "k9", &k), OPD_ENOTFOUND);
	/* Retired ids stay taken. */
	assert_int_equal(opd_store_add_signing_key(st, "k3", pk1, 32, 1, "a", 7), OPD_ECONFLICT);
	assert_int_equal(opd_store_foreach_signing_key(st, collect_key, &b), 0);
	assert_buf(&b, "k1:0:1:0,k2:0:3:0,k3:0:4:5,");
	opd_buf_fini(&b);
}

static void test_requests(void **state)
{
	struct opd_store *st = *state;
	struct opd_request_record rec = {.ts_ms = 1000, .op = 10, .version = 3, .status = 2}, got;
	uint8_t id[16], other[16], big[OPD_STORE_REQUEST_ID_MAX + 1];

	memset(id, 1, sizeof id);
	memset(other, 2, sizeof other);
	memset(big, 3, sizeof big);
	snprintf(rec.name, sizeof rec.name, "cfg");
	assert_int_equal(opd_store_get_request(st, id, sizeof id, &got), OPD_ENOTFOUND);
	assert_int_equal(opd_store_put_request(st, id, sizeof id, &rec), 0);
	assert_int_equal(opd_store_put_request(st, id, sizeof id, &rec), OPD_ECONFLICT);
	assert_int_equal(opd_store_put_request(st, big, sizeof big, &rec), OPD_EINVAL);
	assert_int_equal(opd_store_put_request(st, id, 0, &rec), OPD_EINVAL);
	assert_int_equal(opd_store_get_request(st, id, sizeof id, &got), 0);
	assert_int_equal(got.op, 10);
	assert_int_equal(got.version, 3);
	assert_int_equal(got.status, 2);
	assert_string_equal(got.name, "cfg");
	assert_int_equal(opd_store_get_request(st, other, sizeof other, &got), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_request(st, id, 15, &got), OPD_ENOTFOUND);

	/* A day of writes later the first record is forgotten, by the commands' clock. */
	rec.ts_ms = 1000 + OPD_STORE_REQUEST_TTL_MS;
	assert_int_equal(opd_store_put_request(st, other, sizeof other, &rec), 0);
	assert_int_equal(opd_store_get_request(st, id, sizeof id, &got), 0); /* exactly a day */
	rec.ts_ms = 5000 + OPD_STORE_REQUEST_TTL_MS;
	memset(other, 4, sizeof other);
	assert_int_equal(opd_store_put_request(st, other, sizeof other, &rec), 0);
	assert_int_equal(opd_store_get_request(st, id, sizeof id, &got), OPD_ENOTFOUND);
	assert_int_equal(opd_store_get_request(st, other, sizeof other, &got), 0);
}

static int collect_member(void *data, const struct opd_member *m)
{
	opd_buf_appendf(data, "%llu=%s|%s,", (unsigned long long)m->id, m->raft_address,
			m->admin_url);
	return 0;
}

static void test_members(void **state)
{
	struct opd_store *st = *state;
	struct opd_buf b;
	char url[32], tiny[8];

	opd_buf_init(&b);
	assert_int_equal(opd_store_set_member(st, 0, "h:1", "http://h", "a", 1), OPD_EINVAL);
	assert_int_equal(opd_store_set_member(st, 2, "h2:1", "https://h2:8443", "a", 1), 0);
	assert_int_equal(opd_store_set_member(st, 1, "h1:1", "https://h1:8443", "a", 2), 0);
	assert_int_equal(opd_store_set_member(st, 2, "h2:9", "https://h2new", "a", 3), 0);
	assert_int_equal(opd_store_foreach_member(st, collect_member, &b), 0);
	assert_buf(&b, "1=h1:1|https://h1:8443,2=h2:9|https://h2new,");
	assert_int_equal(opd_store_member_admin_url(st, 2, url, sizeof url), 0);
	assert_string_equal(url, "https://h2new");
	assert_int_equal(opd_store_member_admin_url(st, 2, tiny, sizeof tiny), OPD_ETOOBIG);
	assert_int_equal(opd_store_member_admin_url(st, 7, url, sizeof url), OPD_ENOTFOUND);
	assert_int_equal(opd_store_remove_member(st, 1, "a", 4), 0);
	assert_int_equal(opd_store_remove_member(st, 1, "a", 5), OPD_ENOTFOUND);
	assert_int_equal(opd_store_foreach_member(st, collect_member, &b), 0);
	assert_buf(&b, "2=h2:9|https://h2new,");
	opd_buf_fini(&b);
}

static int collect_audit(void *data, const struct opd_audit_entry *e)
{
	opd_buf_appendf(data, "%llu:%s:%s:%s:%llu;", (unsigned long long)e->ts_ms, e->actor,
			e->action, e->name, (unsigned long long)e->version);
	return 0;
}

static void test_audit_listing(void **state)
{
	struct opd_store *st = *state;
	struct opd_buf b;

	opd_buf_init(&b);
	put(st, "c", "v: 1\n", 0, NULL, 10, 1);
	put(st, "c", "v: 2\n", 0, NULL, 11, 1);
	assert_int_equal(opd_store_set_active(st, "c", 1, "bob", 12), 0);
	assert_int_equal(opd_store_set_member(st, 4, "h:1", "u", "carol", 13), 0);
	assert_int_equal(opd_store_audit(st, 14, "dave", "refused", "c", 9, "why"), 0);
	assert_int_equal(opd_store_foreach_audit(st, 3, collect_audit, &b), 0);
	assert_buf(&b, "14:dave:refused:c:9;13:carol:member-set:4:0;12:bob:rollback:c:1;");
	assert_int_equal(opd_store_foreach_audit(st, 0, collect_audit, &b), 0);
	assert_buf(&b, "14:dave:refused:c:9;13:carol:member-set:4:0;12:bob:rollback:c:1;"
		       "11:alice:put:c:2;10:alice:put:c:1;");
	opd_buf_fini(&b);
}

static void test_applied_in_transaction(void **state)
{
	struct opd_store *st = *state;
	uint64_t index, wall;
	uint32_t logical;

	assert_int_equal(opd_store_get_applied(st, &index, &wall, &logical), 0);
	assert_int_equal(index, 0);
	assert_int_equal(wall, 0);
	assert_int_equal(logical, 0);

	assert_int_equal(opd_store_begin(st), 0);
	assert_int_equal(opd_store_begin(st), OPD_ESTORE); /* no nesting of the outer one */
	put(st, "c", "v: 1\n", 0, NULL, 10, 1);
	assert_int_equal(opd_store_set_applied(st, 5, 10, 2), 0);
	opd_store_rollback(st);
	assert_int_equal(opd_store_get_applied(st, &index, &wall, &logical), 0);
	assert_int_equal(index, 0);
	struct opd_config_info c;
	assert_int_equal(opd_store_get_config(st, "c", &c), OPD_ENOTFOUND);
	opd_store_rollback(st); /* harmless without a transaction */

	assert_int_equal(opd_store_begin(st), 0);
	put(st, "c", "v: 1\n", 0, NULL, 10, 1);
	assert_int_equal(opd_store_set_applied(st, 6, 10, 3), 0);
	assert_int_equal(opd_store_commit(st), 0);
	assert_int_equal(opd_store_get_applied(st, &index, &wall, &logical), 0);
	assert_int_equal(index, 6);
	assert_int_equal(wall, 10);
	assert_int_equal(logical, 3);
	assert_int_equal(opd_store_get_config(st, "c", &c), 0);
	opd_config_info_fini(&c);
}

static void full_history(struct opd_store *st)
{
	uint8_t pk[32], rid[16];
	struct opd_request_record rec = {.op = 10, .version = 1};

	history(st);
	memset(pk, 9, sizeof pk);
	memset(rid, 7, sizeof rid);
	assert_int_equal(opd_store_add_signing_key(st, "kk", pk, 32, 1, "a", 200), 0);
	assert_int_equal(opd_store_set_member(st, 1, "h1:9000", "https://h1", "a", 201), 0);
	assert_int_equal(opd_store_put_request(st, rid, sizeof rid, &rec), 0);
	assert_int_equal(opd_store_set_applied(st, 42, 201, 1), 0);
}

static void test_serialize_restore_memory(void **state)
{
	struct opd_store *st = *state, fresh;
	uint8_t *img;
	size_t len;
	uint64_t index, wall;
	uint32_t logical;
	char *a, *b;

	full_history(st);
	assert_int_equal(opd_store_serialize(st, &img, &len), 0);
	assert_true(len >= 512);

	assert_int_equal(opd_store_open(&fresh, ":memory:"), 0);
	put(&fresh, "junk", "x: 1\n", 0, NULL, 1, 1); /* replaced, not merged */
	assert_int_equal(opd_store_restore(&fresh, img, len), 0);
	a = dump_str(st);
	b = dump_str(&fresh);
	assert_string_equal(a, b);
	assert_null(strstr(b, "junk"));
	free(b);
	assert_int_equal(opd_store_get_applied(&fresh, &index, &wall, &logical), 0);
	assert_int_equal(index, 42);
	/* The restored store is writable as usual. */
	assert_int_equal(put(&fresh, "alpha", "k: q\n", 1, "a", 300, 1), 3);

	/* Garbage, truncation and a flipped page are refused; the store is unchanged. */
	b = dump_str(&fresh);
	assert_int_equal(opd_store_restore(&fresh, img, 100), OPD_EINVAL);
	assert_int_equal(opd_store_restore(&fresh, img, len - 512), OPD_EINVAL);
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	memset(bad, 0x41, len);
	assert_int_equal(opd_store_restore(&fresh, bad, len), OPD_EINVAL);
	memcpy(bad, img, len);
	/* The end of every page but the first, where b-tree cells live (empty tables have
	 * none there, so flipping only the last page may change nothing sqlite reads). */
	for (size_t off = 2 * 4096 - 512; off < len; off += 4096)
		memset(bad + off, 0xee, 512);
	assert_int_not_equal(opd_store_restore(&fresh, bad, len), 0);
	char *c = dump_str(&fresh);
	assert_string_equal(b, c);
	free(c);
	free(b);
	free(a);
	free(bad);
	opd_store_image_free(st, img);
	opd_store_close(&fresh);
}

static void test_serialize_restore_file(void **state)
{
	char dir[] = "/tmp/opd_store_XXXXXX", path[64], side[80];
	struct opd_store *src = *state, st;
	uint8_t *img;
	size_t len;
	char *a, *b;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);
	full_history(src);
	assert_int_equal(opd_store_serialize(src, &img, &len), 0);
	a = dump_str(src);

	/* Into a file store, and back out of it: the file image is WAL-mode. */
	assert_int_equal(opd_store_open(&st, path), 0);
	assert_int_equal(opd_store_restore(&st, img, len), 0);
	b = dump_str(&st);
	assert_string_equal(a, b);
	free(b);
	opd_store_image_free(src, img);
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_prepare_v2(st.db, "PRAGMA journal_mode", -1, &stmt, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
	sqlite3_finalize(stmt);
	assert_int_equal(opd_store_serialize(&st, &img, &len), 0);
	uint8_t *copy = malloc(len); /* an image does not outlive its store */
	assert_non_null(copy);
	memcpy(copy, img, len);
	opd_store_image_free(&st, img);
	opd_store_close(&st);

	/* Survives a reopen of the file. */
	assert_int_equal(opd_store_open(&st, path), 0);
	b = dump_str(&st);
	assert_string_equal(a, b);
	free(b);
	opd_store_close(&st);

	/* The WAL-mode image restores into a memory store too. */
	assert_int_equal(opd_store_open(&st, ":memory:"), 0);
	assert_int_equal(opd_store_restore(&st, copy, len), 0);
	b = dump_str(&st);
	assert_string_equal(a, b);
	free(b);
	opd_store_close(&st);
	free(copy);
	free(a);

	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
	assert_int_equal(rmdir(dir), 0);
}

/* A database written by the 0001-only binary is migrated: the latest version learns its selector.
 */
/*
 * A database file in dir as the binary with only the first `migrations`
 * migrations wrote it, with `rows` (SQL) in it; its path goes to path.
 */
static void old_store(char *dir, char *path, size_t cap, int migrations, const char *rows)
{
	char version[40];
	sqlite3 *db;

	assert_non_null(mkdtemp(dir));
	snprintf(path, cap, "%s/v%d.db", dir, migrations);
	assert_int_equal(
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	    SQLITE_OK);
	for (int i = 0; i < migrations; i++)
		assert_int_equal(sqlite3_exec(db, opd_sql_migrations[i], NULL, NULL, NULL),
				 SQLITE_OK);
	snprintf(version, sizeof version, "PRAGMA user_version = %d", migrations);
	assert_int_equal(sqlite3_exec(db, version, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, rows, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_migrate_from_v1(void **state)
{
	char dir[] = "/tmp/opd_store_XXXXXX", path[64];
	struct opd_store st;
	struct opd_version_info v;

	(void)state;
	old_store(dir, path, sizeof path, 1,
		  "INSERT INTO configs VALUES ('c', 4, 1, 2, 0, 1, 2);"
		  "INSERT INTO config_selectors VALUES ('c', 'env', 'prod');"
		  "INSERT INTO config_versions VALUES ('c', 1, zeroblob(32), 'm', 'a', 1);"
		  "INSERT INTO config_versions VALUES ('c', 2, zeroblob(32), 'm', 'a', 2);");

	assert_int_equal(opd_store_open(&st, path), 0);
	assert_int_equal(opd_store_get_version(&st, "c", 2, &v), 0);
	assert_true(v.has_priority);
	assert_int_equal(v.priority, 4);
	assert_int_equal(v.selector.n, 1);
	assert_string_equal(v.selector.v[0].value, "prod");
	assert_int_equal(v.signature_len, 0);
	assert_string_equal(v.key_id, "");
	opd_version_info_fini(&v);
	assert_int_equal(opd_store_get_version(&st, "c", 1, &v), 0);
	assert_false(v.has_priority);
	assert_int_equal(v.selector.n, 0);
	opd_version_info_fini(&v);
	opd_store_close(&st);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/*
 * A version-4 database (files in the WITHOUT ROWID table) is migrated: every
 * file keeps its bytes, in name order, and the next version is written beside them.
 */
static void test_migrate_files_to_rowid(void **state)
{
	char dir[] = "/tmp/opd_store_XXXXXX", path[64];
	struct opd_store st;
	struct opd_version_info v;

	(void)state;
	old_store(dir, path, sizeof path, 4,
		  "INSERT INTO configs VALUES ('c', 0, 1, 1, 0, 1, 1);"
		  "INSERT INTO config_versions (name, version, hash, message, actor, created_ms)"
		  " VALUES ('c', 1, zeroblob(32), 'm', 'a', 1);"
		  "INSERT INTO config_files VALUES ('c', 1, 'z.yaml', 'text/yaml', zeroblob(5000));"
		  "INSERT INTO config_files VALUES ('c', 1, 'a.yaml', 'text/yaml', x'6869');");

	assert_int_equal(opd_store_open(&st, path), 0);
	assert_int_equal(opd_store_get_version(&st, "c", 1, &v), 0);
	assert_int_equal(v.files.n, 2);
	assert_string_equal(v.files.v[0].name, "a.yaml");
	assert_int_equal(v.files.v[0].len, 2);
	assert_memory_equal(v.files.v[0].body, "hi", 2);
	assert_string_equal(v.files.v[1].name, "z.yaml");
	assert_int_equal(v.files.v[1].len, 5000);
	opd_version_info_fini(&v);
	assert_int_equal(put(&st, "c", "x: 1", 0, NULL, 2, 1), 2);
	assert_int_equal(opd_store_get_version(&st, "c", 2, &v), 0);
	assert_int_equal(v.files.n, 2);
	assert_string_equal(v.files.v[1].name, "z.yaml");
	assert_memory_equal(v.files.v[1].body, "x: 1", 4);
	opd_version_info_fini(&v);
	opd_store_close(&st);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_no_memory_statistics),
	    T(test_put_and_read),
	    T(test_put_rejects_empty_name),
	    T(test_identical_reput),
	    T(test_foreach),
	    T(test_rollback),
	    T(test_delete_and_recreate),
	    T(test_dump_identical),
	    T(test_dump_order_of_calls_matters),
	    cmocka_unit_test(test_reopen_file),
	    cmocka_unit_test(test_open_failure),
	    T(test_put_inside_outer_transaction),
	    T(test_put_explicit_version),
	    T(test_history_limit),
	    T(test_set_selector),
	    T(test_signing_keys),
	    T(test_requests),
	    T(test_members),
	    T(test_audit_listing),
	    T(test_applied_in_transaction),
	    T(test_serialize_restore_memory),
	    T(test_serialize_restore_file),
	    cmocka_unit_test(test_migrate_from_v1),
	    cmocka_unit_test(test_migrate_files_to_rowid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
