/*
 * End-to-end: changing a cluster's membership through the admin API. A fourth
 * node starts with no voters of its own, is added as a spare, promoted to
 * voter, catches up on the replicated store, takes over leadership by
 * transfer, hands it back, and is removed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"

#define CALL_MS 10000

/* POST/DELETE on node i; returns the status, prints the body when it is not want. */
static int call(struct opd_cluster *c, int i, const char *method, const char *path,
		const char *body, int want)
{
	struct opd_client_resp r = {0};
	json_t *j = NULL;
	int status = opd_cluster_request(c, i, method, path, body, NULL, CALL_MS, &r, &j);

	if (status != want)
		fprintf(stderr, "%s %s -> %d %s\n", method, path, status,
			r.body ? (const char *)r.body : "");
	json_decref(j);
	opd_client_resp_free(&r);
	return status;
}

/* The role of member id in node i's view, or "" when absent. */
static const char *member_role(struct opd_cluster *c, int i, int id, char *out, size_t cap)
{
	json_t *st = opd_cluster_status(c, i, 3000), *m;
	size_t k;

	out[0] = '\0';
	json_array_foreach(json_object_get(st, "members"), k, m)
	{
		if (json_integer_value(json_object_get(m, "id")) == id)
			snprintf(out, cap, "%s", json_string_value(json_object_get(m, "role")));
	}
	json_decref(st);
	return out;
}

static int leader_id(struct opd_cluster *c, int i)
{
	json_t *st = opd_cluster_status(c, i, 3000);
	int id = (int)json_integer_value(json_object_get(json_object_get(st, "leader"), "id"));

	json_decref(st);
	return id;
}

/* A new leader writes once it has applied what came before it: wait for that. */
static int writable(struct opd_daemon *d)
{
	uint64_t deadline = opd_test_now_ms() + 10000;

	for (;;) {
		struct opd_client_resp r = {0};
		json_t *j = NULL;
		int ok =
		    opd_api_request(d, "GET", "/api/v1/cluster", NULL, d->token, &r, &j) == 200 &&
		    json_is_false(json_object_get(j, "read_only")) &&
		    strcmp(json_string_value(json_object_get(j, "role")), "leader") == 0;

		json_decref(j);
		opd_client_resp_free(&r);
		if (ok)
			return 1;
		if (opd_test_now_ms() > deadline)
			return 0;
		opd_test_pause_ms(50);
	}
}

static void test_add_promote_transfer_remove(void **state)
{
	static const char *const hb[] = {"--heartbeat-interval", "1", NULL};
	struct opd_cluster c;
	struct opd_daemon d4;
	char raft4[32], admin4[32], url4[64], body[256], role[32], d1[65], dig4[65];
	const char *extra[16];
	int l, n = 0, raft_port = opd_test_free_port(), admin_port = opd_test_free_port();
	uint64_t deadline;
	json_t *st;

	(void)state;
	assert_int_equal(opd_cluster_start(&c, 3, hb), 0);
	l = opd_cluster_wait_leader(&c, 15000);
	assert_true(l >= 0);
	/* Something replicated for the new node to catch up on. */
	assert_int_equal(call(&c, l, "POST", "/api/v1/configs/base",
			      "{\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", "
			      "\"body\": \"a: 1\\n\"}}}",
			      201),
			 201);

	/* Node 4: the same key and voter lines, but it is not one of them: it waits to be added. */
	snprintf(raft4, sizeof raft4, "127.0.0.1:%d", raft_port);
	snprintf(admin4, sizeof admin4, "127.0.0.1:%d", admin_port);
	snprintf(url4, sizeof url4, "http://127.0.0.1:%d", admin_port);
	extra[n++] = "--node-id";
	extra[n++] = "4";
	extra[n++] = "--raft-listen";
	extra[n++] = raft4;
	extra[n++] = "--admin-listen";
	extra[n++] = admin4;
	extra[n++] = "--signing-key";
	extra[n++] = c.key_path;
	for (int i = 0; i < 3; i++) {
		extra[n++] = "--voter";
		extra[n++] = c.voters[i];
	}
	extra[n] = NULL;
	assert_int_equal(opd_daemon_start_single(&d4, extra), 0);

	/* Added through a follower: forwarded to the leader like any write. */
	snprintf(body, sizeof body, "{\"id\": 4, \"raft_address\": \"%s\", \"admin_url\": \"%s\"}",
		 raft4, url4);
	assert_int_equal(
	    call(&c, opd_cluster_follower(&c, l, 0), "POST", "/api/v1/cluster/members", body, 200),
	    200);
	assert_string_equal(member_role(&c, l, 4, role, sizeof role), "spare");
	assert_int_equal(
	    call(&c, l, "POST", "/api/v1/cluster/members/4/promote", "{\"role\": \"voter\"}", 200),
	    200);
	assert_string_equal(member_role(&c, l, 4, role, sizeof role), "voter");

	/* It catches up: same store digest as the others, the admin URL replicated too. */
	assert_int_equal(opd_cluster_wait_digests(&c, 10000, d1), 0);
	deadline = opd_test_now_ms() + 10000;
	for (;;) {
		struct opd_client_resp r = {0};
		json_t *j = NULL;

		dig4[0] = '\0';
		if (opd_api_request(&d4, "GET", "/api/v1/cluster/digest", NULL, d4.token, &r, &j) ==
		    200)
			snprintf(dig4, sizeof dig4, "%s",
				 json_string_value(json_object_get(j, "store_digest")));
		json_decref(j);
		opd_client_resp_free(&r);
		if (strcmp(dig4, d1) == 0 || opd_test_now_ms() > deadline)
			break;
		opd_test_pause_ms(100);
	}
	assert_string_equal(dig4, d1);
	{
		/* The digest is its own call, with the index it was taken at; the status no
		 * longer dumps the store. */
		struct opd_client_resp r = {0};
		json_t *j = NULL;

		assert_int_equal(opd_api_request(&d4, "GET", "/api/v1/cluster/digest", NULL,
						 d4.token, &r, &j),
				 200);
		assert_int_equal(json_integer_value(json_object_get(j, "node_id")), 4);
		assert_true(json_integer_value(json_object_get(j, "applied_index")) > 0);
		json_decref(j);
		opd_client_resp_free(&r);
		j = NULL;
		assert_int_equal(
		    opd_api_request(&d4, "GET", "/api/v1/cluster", NULL, d4.token, &r, &j), 200);
		assert_null(json_object_get(j, "store_digest"));
		json_decref(j);
		opd_client_resp_free(&r);
		j = NULL;
		assert_int_equal(opd_api_request(&d4, "POST", "/api/v1/cluster/digest", "{}",
						 d4.token, &r, &j),
				 405);
		json_decref(j);
		opd_client_resp_free(&r);
	}

	/* Leadership to node 4 and back. */
	assert_int_equal(call(&c, l, "POST", "/api/v1/cluster/transfer", "{\"id\": 4}", 200), 200);
	deadline = opd_test_now_ms() + 10000;
	while (leader_id(&c, l) != 4 && opd_test_now_ms() < deadline)
		opd_test_pause_ms(100);
	assert_int_equal(leader_id(&c, l), 4);
	assert_true(writable(&d4));
	{
		struct opd_client_resp r = {0};
		json_t *j = NULL;
		char back[32];

		snprintf(back, sizeof back, "{\"id\": %d}", c.nodes[l].id);
		assert_int_equal(opd_api_request(&d4, "POST", "/api/v1/cluster/transfer", back,
						 d4.token, &r, &j),
				 200);
		json_decref(j);
		opd_client_resp_free(&r);
	}
	deadline = opd_test_now_ms() + 10000;
	while (leader_id(&c, l) != c.nodes[l].id && opd_test_now_ms() < deadline)
		opd_test_pause_ms(100);
	assert_int_equal(leader_id(&c, l), c.nodes[l].id);
	assert_true(writable(&c.nodes[l].d));

	/* Removed: three members again. */
	assert_int_equal(call(&c, l, "DELETE", "/api/v1/cluster/members/4", NULL, 200), 200);
	st = opd_cluster_status(&c, l, 3000);
	assert_int_equal(json_array_size(json_object_get(st, "members")), 3);
	json_decref(st);
	/* Membership calls are writes: unknown ids are refused, not ignored. */
	assert_int_equal(call(&c, l, "DELETE", "/api/v1/cluster/members/9", NULL, 409), 409);

	opd_daemon_signal_wait(&d4, SIGKILL);
	opd_daemon_stop(&d4);
	assert_int_equal(opd_cluster_stop(&c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add_promote_transfer_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
