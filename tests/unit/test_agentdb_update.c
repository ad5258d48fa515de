/*
 * opampd/agentdb.c writes an agent's attribute JSON only when its description
 * changed since the row was written; otherwise a flush updates the other
 * columns alone. A marker written into the stored attributes behind the
 * store's back shows which of the two a flush did.
 */
#include "agentdb.h"
#include "harness.h"

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

static struct opd_agent *agent(struct opd_registry *r, unsigned i)
{
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a;
	char name[32];
	int created;

	memset(uid, 0, sizeof uid);
	memcpy(uid, &i, sizeof i);
	a = opd_registry_get(r, uid, &created);
	assert_non_null(a);
	if (created) {
		snprintf(name, sizeof name, "svc-%u", i);
		opd_kvs_add(&a->ident, "service.name", name);
		opd_kvs_add(&a->nonident, "os.type", "linux");
		a->has_description = 1;
	}
	a->dirty = 1;
	return a;
}

static void sql(struct opd_agentdb *db, const char *q, const struct opd_agent *a)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(db->db, q, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_blob(st, 1, a->uid, OPD_UID_LEN, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* The stored ident column and last_seq of a's row ("" and 0 when there is no row). */
static void row(struct opd_agentdb *db, const struct opd_agent *a, char *ident, size_t cap,
		int64_t *last_seq)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(db->db,
					    "SELECT ident, last_seq FROM agents WHERE uid = ?", -1,
					    &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, a->uid, OPD_UID_LEN, SQLITE_STATIC);
	ident[0] = '\0';
	*last_seq = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(ident, cap, "%s", (const char *)sqlite3_column_text(st, 0));
		*last_seq = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
}

static const char mark_sql[] = "UPDATE agents SET ident = '{\"marker\":\"1\"}' WHERE uid = ?";

static void test_only_changed_columns(void **state)
{
	struct opd_agentdb db;
	struct opd_registry r;
	struct opd_agent *a;
	char ident[256];
	int64_t seq;

	(void)state;
	opd_test_registry_init(&r);
	assert_int_equal(opd_agentdb_open(&db, ":memory:"), 0);
	a = agent(&r, 1);
	a->last_seq = 5;
	assert_int_equal(opd_agentdb_flush(&db, &r, 0), 1);
	row(&db, a, ident, sizeof ident, &seq);
	assert_string_equal(ident, "{\"service.name\":\"svc-1\"}");
	assert_int_equal(seq, 5);

	/* A heartbeat: the state columns are written, the attributes are not. */
	sql(&db, mark_sql, a);
	a->last_seq = 6;
	a->dirty = 1;
	assert_int_equal(opd_agentdb_flush(&db, &r, 0), 1);
	row(&db, a, ident, sizeof ident, &seq);
	assert_string_equal(ident, "{\"marker\":\"1\"}");
	assert_int_equal(seq, 6);

	/* A new description: the whole row is written. */
	opd_kvs_add(&a->ident, "service.version", "2");
	a->last_seq = 7;
	a->dirty = 1;
	assert_int_equal(opd_agentdb_flush(&db, &r, 0), 1);
	row(&db, a, ident, sizeof ident, &seq);
	assert_string_equal(ident, "{\"service.name\":\"svc-1\",\"service.version\":\"2\"}");
	assert_int_equal(seq, 7);

	/* The row vanished: written in full again, not lost in an UPDATE of nothing. */
	sql(&db, "DELETE FROM agents WHERE uid = ?", a);
	a->last_seq = 8;
	a->dirty = 1;
	assert_int_equal(opd_agentdb_flush(&db, &r, 0), 1);
	row(&db, a, ident, sizeof ident, &seq);
	assert_string_equal(ident, "{\"service.name\":\"svc-1\",\"service.version\":\"2\"}");
	assert_int_equal(seq, 8);
	opd_agentdb_close(&db);
	opd_registry_fini(&r);
}

/* Agents loaded at start-up are known to match their rows; the table grows past its first size. */
static void test_loaded_and_many(void **state)
{
	char dir[] = "/tmp/opd-agentdb-upd-XXXXXX", path[256];
	struct opd_agentdb db;
	struct opd_registry r1, r2;
	struct opd_agent *a;
	char ident[256], want[64];
	int64_t seq;
	const unsigned n = 3000;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/agents.db", dir);
	opd_test_registry_init(&r1);
	assert_int_equal(opd_agentdb_open(&db, path), 0);
	for (unsigned i = 0; i < n; i++)
		agent(&r1, i)->last_seq = i;
	assert_int_equal(opd_agentdb_flush(&db, &r1, 0), (int)n);
	opd_agentdb_close(&db);
	opd_registry_fini(&r1);

	opd_test_registry_init(&r2);
	assert_int_equal(opd_agentdb_open(&db, path), 0);
	assert_int_equal(opd_agentdb_load(&db, &r2), (int)n);
	/* Every agent marked, then every agent dirty, every third with a new description. */
	for (unsigned i = 0; i < n; i++) {
		a = agent(&r2, i);
		sql(&db, mark_sql, a);
		a->last_seq = i + 1;
		if (i % 3 == 0)
			opd_kvs_add(&a->nonident, "host.name", "h");
	}
	assert_int_equal(opd_agentdb_flush(&db, &r2, 0), (int)n);
	for (unsigned i = 0; i < n; i++) {
		a = agent(&r2, i);
		row(&db, a, ident, sizeof ident, &seq);
		assert_int_equal(seq, i + 1);
		snprintf(want, sizeof want, "{\"service.name\":\"svc-%u\"}", i);
		assert_string_equal(ident, i % 3 == 0 ? want : "{\"marker\":\"1\"}");
	}
	opd_agentdb_close(&db);
	opd_registry_fini(&r2);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

/* Agent i without marking it dirty. */
static struct opd_agent *peek(struct opd_registry *r, unsigned i)
{
	uint8_t uid[OPD_UID_LEN] = {0};
	struct opd_agent *a;

	memcpy(uid, &i, sizeof i);
	a = opd_registry_find(r, uid);
	assert_non_null(a);
	return a;
}

/*
 * A capped flush writes at most max agents, taking turns: even when the first
 * agents are dirty again at every flush, the others are written within
 * ceil(n / max) flushes.
 */
static void test_capped_flush_takes_turns(void **state)
{
	char dir[] = "/tmp/opd-agentdb-cap-XXXXXX", path[256];
	struct opd_agentdb db;
	struct opd_registry r;
	const unsigned n = 10, max = 4;
	unsigned clean_after[10] = {0};

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/agents.db", dir);
	opd_test_registry_init(&r);
	assert_int_equal(opd_agentdb_open(&db, path), 0);
	for (unsigned i = 0; i < n; i++)
		agent(&r, i)->dirty = 1;
	/* 10 dirty: 4, then 4 of the 8 left, then the last 2 with the two busy ones. */
	for (unsigned round = 1; round <= 3; round++) {
		assert_int_equal(opd_agentdb_flush(&db, &r, max), (int)max);
		for (unsigned i = 0; i < n; i++)
			if (!peek(&r, i)->dirty && clean_after[i] == 0)
				clean_after[i] = round;
		/* The two first agents report all the time. */
		peek(&r, 0)->dirty = 1;
		peek(&r, 1)->dirty = 1;
	}
	for (unsigned i = 2; i < n; i++)
		assert_true(clean_after[i] >= 1 && clean_after[i] <= 3);
	assert_int_equal(opd_agentdb_flush(&db, &r, 0), 2); /* the rest at once (shutdown) */
	for (unsigned i = 0; i < n; i++)
		assert_false(peek(&r, i)->dirty);
	opd_agentdb_close(&db);
	opd_registry_fini(&r);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_only_changed_columns),
	    cmocka_unit_test(test_capped_flush_takes_turns),
	    cmocka_unit_test(test_loaded_and_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
