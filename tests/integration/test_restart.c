/*
 * End-to-end: what survives a restart of the node. Configurations and their
 * active versions come back from the store; known agents come back from the
 * agent database, disconnected, with their last report; an agent that
 * reconnects with a compressed message is asked for its full state and is not
 * sent the config it already runs.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "daemon.h"

#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

enum {
	REPORT_FULL_STATE =
	    OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState,
	RCS_APPLIED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED,
};

static void test_configs_and_agents_survive_restart(void **state)
{
	static const char *const extra[] = {"--heartbeat-interval", "1", NULL};
	struct opd_daemon d;
	struct opd_ta a;
	struct opd_ta_msg b;
	Opamp__Proto__V1__ServerToAgent *r;
	char hash[65], text[128];
	int version;
	json_t *agent, *json;
	struct opd_client_resp resp;

	(void)state;
	assert_int_equal(opd_daemon_start(&d, extra), 0);
	assert_int_equal(opd_api_publish(&d, "base", "receivers: {otlp: {}}\n", hash, &version),
			 201);
	assert_int_equal(
	    opd_api_publish(&d, "base", "receivers: {otlp: {}, jaeger: {}}\n", hash, &version),
	    201);
	assert_int_equal(version, 2);

	/* An agent receives version 2, applies it, and goes away without a goodbye. */
	opd_ta_init(&a, d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	opd_ta_msg_full(&b, &a, "survivor");
	r = opd_ta_exchange(&a, &b.msg, REPLY_MS);
	assert_non_null(r);
	assert_non_null(r->remote_config);
	S2A_FREE(r);
	opd_ta_msg_init(&b, &a);
	opd_ta_msg_remote_config_status(&b, hash, RCS_APPLIED, NULL);
	r = opd_ta_exchange(&a, &b.msg, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);
	agent = opd_api_wait_agent(&d, a.uid_hex, "remote_config_status.status", "APPLIED", 5000);
	assert_non_null(agent);
	json_decref(agent);
	/* The registry is persisted once a second: give it a beat before the restart. */
	opd_test_pause_ms(1500);
	opd_ta_fini(&a);

	assert_int_equal(opd_daemon_restart(&d, extra), 0);

	/* The configuration and its active version are back. */
	assert_int_equal(
	    opd_api_request(&d, "GET", "/api/v1/configs/base", NULL, d.token, &resp, &json), 200);
	assert_int_equal(json_integer_value(json_object_get(json, "active_version")), 2);
	assert_string_equal(json_string_value(json_object_get(json, "config_hash")), hash);
	json_decref(json);
	opd_client_resp_free(&resp);

	/* The agent is listed, disconnected, with its last report and when it was last seen. */
	agent = opd_api_get_agent(&d, a.uid_hex);
	assert_non_null(agent);
	assert_string_equal(opd_api_json_text(agent, "connected", text, sizeof text), "false");
	assert_string_equal(opd_api_json_text(agent, "health.state", text, sizeof text), "down");
	assert_string_equal(
	    opd_api_json_text(agent, "remote_config_status.status", text, sizeof text), "APPLIED");
	assert_string_equal(
	    opd_api_json_text(agent, "remote_config_status.config_hash", text, sizeof text), hash);
	/* (Attribute keys contain dots: no dotted path here.) */
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(agent, "identifying_attributes"), "service.name")),
			    "survivor");
	assert_true(json_integer_value(json_object_get(agent, "last_seen_ms")) > 0);
	json_decref(agent);

	/* It reconnects (to the new port) with a compressed heartbeat: the node asks for
	 * everything. */
	a.port = d.opamp_port;
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	r = opd_ta_heartbeat(&a, REPLY_MS);
	assert_non_null(r);
	assert_true(r->flags & REPORT_FULL_STATE);
	assert_null(r->remote_config);
	S2A_FREE(r);
	/* Its full report says it runs version 2 already: nothing is resent. */
	opd_ta_msg_full(&b, &a, "survivor");
	opd_ta_msg_remote_config_status(&b, hash, RCS_APPLIED, NULL);
	r = opd_ta_exchange(&a, &b.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->remote_config);
	assert_false(r->flags & REPORT_FULL_STATE);
	S2A_FREE(r);
	agent = opd_api_wait_agent(&d, a.uid_hex, "connected", "true", 5000);
	assert_non_null(agent);
	json_decref(agent);

	opd_ta_fini(&a);
	assert_int_equal(opd_daemon_stop(&d), 0);
}

/*
 * Past raft's snapshot threshold (1024 entries here) a restart restores the store
 * from a snapshot, which reports a change before the agent side exists: the
 * node must come back (it crashed at start; found by the chaos campaigns),
 * after a clean stop and after SIGKILL, with every version and an agent that
 * connects getting the newest one. The SIGKILL comes right after writes
 * sqlite has not committed.
 */
#define SNAPSHOT_WRITES 1100
#define UNCOMMITTED_WRITES 5

/* raft names its snapshot files snapshot-<term>-<index>-<timestamp>. */
static bool has_snapshot(const struct opd_daemon *d)
{
	char path[600];
	struct dirent *e;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof path, "%s/raft", d->dir);
	dir = opendir(path);
	if (dir == NULL)
		return false;
	while (!found && (e = readdir(dir)) != NULL)
		found = strncmp(e->d_name, "snapshot-", 9) == 0;
	closedir(dir);
	return found;
}

static void test_restart_after_snapshot(void **state)
{
	struct opd_daemon d;
	struct opd_ta a;
	struct opd_ta_msg b;
	Opamp__Proto__V1__ServerToAgent *r;
	char hash[65], yaml[96], path[64];
	int version = 0;
	json_t *cfg;
	struct opd_client_resp resp;

	static const char *const extra[] = {"--snapshot-entries", "1024", "--config-history", "50",
					    NULL};

	(void)state;
	assert_int_equal(opd_daemon_start(&d, extra), 0);
	for (int i = 1; i <= SNAPSHOT_WRITES; i++) {
		snprintf(yaml, sizeof yaml, "receivers: {otlp: {}}\n# revision %d\n", i);
		assert_int_equal(opd_api_publish(&d, "many", yaml, hash, &version), 201);
	}
	assert_int_equal(version, SNAPSHOT_WRITES);
	assert_true(has_snapshot(&d)); /* else this test would not test a restore */
	for (int round = 0; round < 2; round++) {
		if (round == 0) {
			assert_int_equal(opd_daemon_restart(&d, extra), 0);
		} else {
			/*
			 * Killed right after writes that sqlite has not committed yet
			 * (a batch commits 50 ms after it opens): raft's log has them,
			 * and the restart applies them again.
			 */
			for (int i = 1; i <= UNCOMMITTED_WRITES; i++) {
				snprintf(yaml, sizeof yaml, "receivers: {otlp: {}}\n# last %d\n",
					 i);
				assert_int_equal(opd_api_publish(&d, "many", yaml, hash, &version),
						 201);
			}
			assert_int_equal(opd_daemon_signal_wait(&d, SIGKILL), 128 + SIGKILL);
			assert_int_equal(opd_daemon_spawn(&d, extra), 0);
		}
		snprintf(path, sizeof path, "/api/v1/configs/many");
		assert_int_equal(opd_api_request(&d, "GET", path, NULL, d.token, &resp, &cfg), 200);
		opd_client_resp_free(&resp);
		assert_int_equal(json_integer_value(json_object_get(cfg, "active_version")),
				 SNAPSHOT_WRITES + (round == 0 ? 0 : UNCOMMITTED_WRITES));
		/* The history kept is the newest 50, snapshot and replayed log alike. */
		json_t *versions = json_object_get(cfg, "versions");
		assert_int_equal(json_array_size(versions), 50);
		assert_int_equal(
		    json_integer_value(json_object_get(json_array_get(versions, 49), "version")),
		    version - 49);
		json_decref(cfg);
		opd_ta_init(&a, d.opamp_port, OPD_TA_CAPS);
		assert_int_equal(opd_ta_ws_connect(&a), 0);
		opd_ta_msg_full(&b, &a, "after-snapshot");
		r = opd_ta_exchange(&a, &b.msg, REPLY_MS);
		assert_non_null(r);
		assert_non_null(r->remote_config);
		S2A_FREE(r);
		opd_ta_fini(&a);
	}
	assert_int_equal(opd_daemon_stop(&d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_configs_and_agents_survive_restart),
	    cmocka_unit_test(test_restart_after_snapshot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
