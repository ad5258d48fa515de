/*
 * End-to-end: a node refuses to serve a configuration whose stored row no
 * longer matches its signature. The node is stopped, its configs.db edited
 * behind its back with the sqlite3 C API (a file body, or the signature
 * itself), and restarted: the version reads "verified": false, the cluster
 * status counts it, and an agent is not offered it. Before the edit the same
 * checks show the opposite, so the test cannot pass on a node that never
 * serves anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>

#include "admin_client.h"
#include "agent_client.h"
#include "daemon.h"

#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

static const char *const extra[] = {"--heartbeat-interval", "1", NULL};

/* The bits of GET /api/v1/configs/tamper/versions/1 and GET /api/v1/cluster this test reads. */
static void check_state(struct opd_daemon *dm, const char *hash, const char *want_verified,
			long long want_unverified)
{
	struct opd_client_resp r;
	char got_hash[80], verified[16];
	int st, has_key, has_sig, has_count;
	long long unverified;
	json_t *j;

	/* Values are copied out and the JSON freed before any assertion jumps out. */
	st = opd_api_request(dm, "GET", "/api/v1/configs/tamper/versions/1", NULL, dm->token, &r,
			     &j);
	opd_client_resp_free(&r);
	opd_api_json_text(j, "config_hash", got_hash, sizeof(got_hash));
	opd_api_json_text(j, "verified", verified, sizeof(verified));
	has_key = json_is_string(json_object_get(j, "key_id"));
	has_sig = json_is_string(json_object_get(j, "signature"));
	json_decref(j);
	assert_int_equal(st, 200);
	assert_string_equal(got_hash, hash);
	assert_string_equal(verified, want_verified);
	assert_true(has_key && has_sig);

	st = opd_api_request(dm, "GET", "/api/v1/cluster", NULL, dm->token, &r, &j);
	opd_client_resp_free(&r);
	has_count = json_is_integer(json_object_get(j, "unverified_versions"));
	unverified = (long long)json_integer_value(json_object_get(j, "unverified_versions"));
	json_decref(j);
	assert_int_equal(st, 200);
	assert_true(has_count);
	if (unverified != want_unverified)
		fprintf(stderr, "unverified_versions %lld, want %lld\n", unverified,
			want_unverified);
	assert_int_equal(unverified, want_unverified);
}

/*
 * A new WebSocket agent's first report and one heartbeat: returns 1 when either reply offered
 * a remote_config with hash, 0 when none offered any config. Fails on anything else.
 */
static int agent_offered(struct opd_daemon *d, const char *hash)
{
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;
	struct opd_ta a;
	char hex[65];
	int offered = 0;

	opd_ta_init(&a, d->opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	opd_ta_msg_full(&b, &a, "tamper-agent");
	for (int round = 0; round < 2; round++) {
		r = round == 0 ? opd_ta_exchange(&a, &b.msg, REPLY_MS)
			       : opd_ta_heartbeat(&a, REPLY_MS);
		assert_non_null(r);
		assert_null(r->error_response);
		if (r->remote_config != NULL) {
			assert_int_equal(r->remote_config->config_hash.len, 32);
			opd_ta_hex(r->remote_config->config_hash.data, 32, hex);
			assert_string_equal(hex, hash);
			offered = 1;
		}
		S2A_FREE(r);
	}
	opd_ta_fini(&a);
	return offered;
}

/* Run one UPDATE on <dir>/configs.db; it must change exactly one row. */
static void edit_store(const struct opd_daemon *d, const char *sql)
{
	char path[320];
	sqlite3 *db = NULL;
	char *err = NULL;
	int rc;

	snprintf(path, sizeof(path), "%s/configs.db", d->dir);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fprintf(stderr, "sqlite: %s: %s\n", sql, err != NULL ? err : "?");
	sqlite3_free(err);
	assert_int_equal(rc, SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Poll the audit trail until the node's signing key is registered (at most 5 s). */
static void wait_key_registered(struct opd_daemon *dm)
{
	uint64_t deadline = opd_test_now_ms() + 5000;

	for (;;) {
		struct opd_client_resp r;
		json_t *j, *e;
		int found = 0;

		assert_int_equal(
		    opd_api_request(dm, "GET", "/api/v1/audit", NULL, dm->token, &r, &j), 200);
		opd_client_resp_free(&r);
		e = json_object_get(j, "entries");
		for (size_t i = 0; i < json_array_size(e); i++) {
			const char *act =
			    json_string_value(json_object_get(json_array_get(e, i), "action"));

			found |= act != NULL && strcmp(act, "key-add") == 0;
		}
		json_decref(j);
		if (found)
			return;
		assert_true(opd_test_now_ms() < deadline);
		opd_test_pause_ms(50);
	}
}

static struct opd_daemon d; /* stopped by teardown when an assertion jumps out */

static int teardown(void **state)
{
	(void)state;
	opd_daemon_stop(&d); /* no-op after the scenario's own checked stop */
	return 0;
}

static void tamper_scenario(const char *sql)
{
	char hash[65], h2[65];
	int version;

	assert_int_equal(opd_daemon_start_single(&d, extra), 0);
	wait_key_registered(&d); /* see test_publish_at_startup */
	assert_int_equal(opd_api_publish(&d, "tamper", "receivers: {otlp: {}}\n", hash, &version),
			 201);
	assert_int_equal(version, 1);
	/* Control: untouched, the version verifies and is offered. */
	check_state(&d, hash, "true", 0);
	assert_int_equal(agent_offered(&d, hash), 1);

	assert_int_equal(opd_daemon_signal_wait(&d, SIGTERM), 0);
	edit_store(&d, sql);
	{
		/* Same raft address as before: raft recorded it. */
		const char *again[] = {"--heartbeat-interval", "1", "--raft-listen", d.raft_listen,
				       NULL};

		assert_int_equal(opd_daemon_spawn(&d, again), 0);
	}

	check_state(&d, hash, "false", 1);
	if (agent_offered(&d, hash) != 0)
		opd_daemon_dump_log(&d);
	assert_int_equal(agent_offered(&d, hash), 0);

	/* Other writes still work and do not change the count: it is one version, not events. */
	assert_int_equal(opd_api_publish(&d, "other", "receivers: {zipkin: {}}\n", h2, &version),
			 201);
	check_state(&d, hash, "false", 1);
	assert_int_equal(opd_daemon_stop(&d), 0);
}

/*
 * A write the node accepts with 201 as soon as it is ready must be served and counted as
 * verified, even if it raced the registration of the node's own signing key.
 */
static void test_publish_at_startup(void **state)
{
	struct opd_client_resp r;
	char hash[65], t[64];
	uint64_t deadline;
	int version;
	json_t *j;

	(void)state;
	assert_int_equal(opd_daemon_start_single(&d, extra), 0);
	assert_int_equal(opd_api_publish(&d, "tamper", "receivers: {otlp: {}}\n", hash, &version),
			 201);
	deadline = opd_test_now_ms() + 5000;
	for (;;) {
		assert_int_equal(opd_api_request(&d, "GET", "/api/v1/configs/tamper/versions/1",
						 NULL, d.token, &r, &j),
				 200);
		opd_client_resp_free(&r);
		opd_api_json_text(j, "verified", t, sizeof(t));
		json_decref(j);
		if (strcmp(t, "true") == 0 || opd_test_now_ms() > deadline)
			break;
		opd_test_pause_ms(50);
	}
	assert_string_equal(t, "true");
	assert_int_equal(agent_offered(&d, hash), 1);
	check_state(&d, hash, "true", 0);
	assert_int_equal(opd_daemon_stop(&d), 0);
}

static void test_tampered_body(void **state)
{
	(void)state;
	tamper_scenario("UPDATE config_files SET body = CAST('receivers: {evil: {}}\n' AS BLOB) "
			"WHERE name = 'tamper' AND version = 1");
}

static void test_tampered_signature(void **state)
{
	(void)state;
	/* Flip the first byte of the 64-byte Ed25519 signature. */
	tamper_scenario("UPDATE config_versions SET signature = "
			"CASE WHEN substr(signature, 1, 1) = X'00' THEN X'01' ELSE X'00' END "
			"|| substr(signature, 2) "
			"WHERE name = 'tamper' AND version = 1 AND length(signature) = 64");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_publish_at_startup, teardown),
	    cmocka_unit_test_teardown(test_tampered_body, teardown),
	    cmocka_unit_test_teardown(test_tampered_signature, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
