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
	assert_int_equal(put(st, "c", "a: 2\n", 1, NULL, 60, 1), 5);
	assert_int_equal(put(st, "c", "a: 2\n", 1, NULL, 70, 0), 5);
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
	assert_non_null(strstr(text, "user_version 1\n"));
	assert_non_null(strstr(text, "table audit\n"));
	assert_non_null(strstr(text, "table config_files\n"));
	assert_non_null(strstr(text, "table config_selectors\n"));
	assert_non_null(strstr(text, "table config_versions\n"));
	assert_non_null(strstr(text, "table configs\n"));
	assert_non_null(strstr(text, "table meta\n"));
	assert_non_null(strstr(text, "row 'alpha' 1 'z.yaml' 'text/yaml' x'6b3a20760a'\n"));
	assert_non_null(strstr(text, "row 'alpha' 1 'a.txt' 'text/plain' x''\n"));
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
