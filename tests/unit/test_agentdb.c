/* Agent registry persistence: dirty agents are written in a batch and come back disconnected. */
#include "agentdb.h"
#include "harness.h"
#include "opamp/v1/opamp.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_flush_and_load_round_trip(void **state)
{
	char dir[] = "/tmp/opd-agentdb-XXXXXX", path[256];
	struct opd_agentdb db;
	struct opd_registry r1, r2;
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a;
	int created;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/agents.db", dir);
	memset(uid, 0xab, sizeof uid);

	opd_test_registry_init(&r1);
	a = opd_registry_get(&r1, uid, &created);
	assert_non_null(a);
	opd_kvs_add(&a->ident, "service.name", "gw");
	opd_kvs_add(&a->nonident, "os.type", "linux");
	a->has_description = 1;
	a->connected = 1;
	a->transport = OPD_TRANSPORT_WS;
	a->capabilities = 0x3807;
	a->last_seen_wall_ms = 1234567;
	a->rc_status = OPD_RC_FAILED;
	a->rc_hash.len = 2;
	a->rc_hash.b[0] = 1;
	a->rc_hash.b[1] = 2;
	a->rc_error = strdup("bad exporter");
	a->dirty = 1;

	assert_int_equal(opd_agentdb_open(&db, path), 0);
	assert_int_equal(opd_agentdb_flush(&db, &r1, 0), 1);
	assert_int_equal(a->dirty, 0);
	/* Nothing dirty: nothing written. */
	assert_int_equal(opd_agentdb_flush(&db, &r1, 0), 0);
	opd_agentdb_close(&db);

	opd_test_registry_init(&r2);
	assert_int_equal(opd_agentdb_open(&db, path), 0);
	assert_int_equal(opd_agentdb_load(&db, &r2), 1);
	a = opd_registry_find(&r2, uid);
	assert_non_null(a);
	assert_false(a->connected);
	assert_string_equal(opd_kvs_get(&a->ident, "service.name"), "gw");
	assert_string_equal(opd_kvs_get(&a->nonident, "os.type"), "linux");
	assert_int_equal(a->capabilities, 0x3807);
	assert_int_equal(a->last_seen_wall_ms, 1234567);
	assert_int_equal(a->rc_status, OPD_RC_FAILED);
	assert_int_equal(a->rc_hash.len, 2);
	assert_string_equal(a->rc_error, "bad exporter");
	/* The sequence is not trusted after a restart: the next message asks for full state. */
	assert_false(a->have_seq);
	opd_agentdb_close(&db);

	opd_registry_fini(&r1);
	opd_registry_fini(&r2);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/agents.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

static void test_open_fails_cleanly(void **state)
{
	struct opd_agentdb db;

	(void)state;
	assert_int_equal(opd_agentdb_open(&db, "/nonexistent-dir/x/agents.db"), OPD_ESTORE);
	assert_non_null(strstr(db.errmsg, "/nonexistent-dir/x/agents.db"));
	opd_agentdb_close(&db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flush_and_load_round_trip),
	    cmocka_unit_test(test_open_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
