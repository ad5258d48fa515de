/*
 * End-to-end: real opampd processes forming a Raft cluster on loopback. Each
 * scenario starts its own cluster (tests/lib/cluster.h): forwarding and push
 * to agents on every node, leader failover, a minority turning read-only
 * while its agents keep working, healing (identical store digests), a full
 * crash and restart, idempotent retries across a failover, the merged agent
 * view, and five voters. Measured figures are printed for the ctest log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "cluster.h"
#include "daemon.h"

#define LEADER_MS 15000
#define DIGEST_MS 15000
#define REQ_MS 10000
#define REPLY_MS 5000
#define READ_ONLY_MS 5000 /* "within a few seconds" of losing the majority */
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

struct fx {
	struct opd_cluster c;
	struct opd_ta a[OPD_CLUSTER_MAX];
	int n_agents;
};

static int start(void **state, int n)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || opd_cluster_start(&f->c, n, NULL) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int setup3(void **state)
{
	return start(state, 3);
}

static int setup5(void **state)
{
	return start(state, 5);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc;

	for (int i = 0; i < f->n_agents; i++)
		opd_ta_fini(&f->a[i]);
	rc = opd_cluster_stop(&f->c); /* a node that crashed or hangs on SIGTERM fails here */
	free(f);
	return rc;
}

static int wait_leader(struct fx *f)
{
	int l = opd_cluster_wait_leader(&f->c, LEADER_MS);

	if (l < 0)
		opd_cluster_dump_logs(&f->c);
	assert_true(l >= 0);
	return l;
}

static void wait_digests(struct fx *f, char out[65])
{
	if (opd_cluster_wait_digests(&f->c, DIGEST_MS, out) != 0)
		opd_cluster_dump_logs(&f->c);
	assert_int_equal(opd_cluster_wait_digests(&f->c, 1, out), 0);
}

static char *publish_body(const char *yaml)
{
	json_t *req = json_pack("{s:{s:{s:s,s:s}},s:s}", "files", "collector.yaml", "content_type",
				"text/yaml", "body", yaml, "message", "cluster test");
	char *body = json_dumps(req, JSON_COMPACT);

	json_decref(req);
	assert_non_null(body);
	return body;
}

/*
 * POST one version of name to node i (idem may be NULL). Returns the status; on 200/201 the
 * hash and version are stored. err_code receives the error code of an error answer ("" none).
 */
static int publish(struct fx *f, int i, const char *name, const char *yaml, const char *idem,
		   int timeout_ms, char hash[65], int *version, char *err_code, size_t err_cap)
{
	struct opd_client_resp r;
	json_t *res;
	char path[256], *body = publish_body(yaml);
	int st;

	snprintf(path, sizeof(path), "/api/v1/configs/%s", name);
	st = opd_cluster_request(&f->c, i, "POST", path, body, idem, timeout_ms, &r, &res);
	free(body);
	if (err_code != NULL)
		opd_api_json_text(res, "error.code", err_code, err_cap);
	if (st == 200 || st == 201) {
		const char *h = json_string_value(json_object_get(res, "config_hash"));

		assert_non_null(h);
		assert_int_equal(strlen(h), 64);
		memcpy(hash, h, 65);
		assert_true(json_is_integer(json_object_get(res, "version")));
		*version = (int)json_integer_value(json_object_get(res, "version"));
		if (idem != NULL)
			assert_true(json_is_string(json_object_get(res, "request_id")));
	}
	json_decref(res);
	opd_client_resp_free(&r);
	return st;
}

/* Publish on node i and require 201. */
static void publish_ok(struct fx *f, int i, const char *name, const char *yaml, char hash[65],
		       int *version)
{
	char code[64];
	int st = publish(f, i, name, yaml, NULL, REQ_MS, hash, version, code, sizeof(code));

	if (st != 201) {
		fprintf(stderr, "publish %s on node %d: HTTP %d (%s)\n", name, i + 1, st, code);
		opd_cluster_dump_logs(&f->c);
	}
	assert_int_equal(st, 201);
}

/* GET path on node i; the JSON answer (caller decrefs) when the status is want, else fails. */
static json_t *get_json(struct fx *f, int i, const char *path, int want)
{
	struct opd_client_resp r;
	json_t *j;
	int st = opd_cluster_request(&f->c, i, "GET", path, NULL, NULL, REQ_MS, &r, &j);

	if (st != want)
		fprintf(stderr, "GET %s on node %d: HTTP %d: %s\n", path, i + 1, st,
			r.body != NULL ? (char *)r.body : "");
	opd_client_resp_free(&r);
	assert_int_equal(st, want);
	assert_non_null(j);
	return j;
}

/* Connect a WebSocket agent to node i and send its first full report. */
static struct opd_ta *connect_agent(struct fx *f, int i, const char *name)
{
	struct opd_ta *a = &f->a[f->n_agents];
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	opd_ta_init(a, f->c.nodes[i].d.opamp_port, OPD_TA_CAPS);
	f->n_agents++;
	assert_int_equal(opd_ta_ws_connect(a), 0);
	opd_ta_msg_full(&b, a, name);
	r = opd_ta_exchange(a, &b.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->error_response);
	S2A_FREE(r);
	return a;
}

/*
 * Read (never send) until a remote_config with want_hash arrives, at most REPLY_MS. Earlier
 * pushes of other hashes are skipped (a write whose outcome was unknown may commit first).
 */
static void expect_pushed(struct opd_ta *a, const char *want_hash)
{
	uint64_t deadline = opd_test_now_ms() + REPLY_MS;
	char hex[65] = "";

	while (opd_test_now_ms() < deadline && strcmp(hex, want_hash) != 0) {
		Opamp__Proto__V1__ServerToAgent *r =
		    opd_ta_recv(a, (int)(deadline - opd_test_now_ms()) + 1);

		if (r == NULL)
			break;
		if (r->remote_config != NULL && r->remote_config->config_hash.len == 32) {
			opd_ta_hex(r->remote_config->config_hash.data, 32, hex);
			if (strcmp(hex, want_hash) != 0)
				printf("agent %.8s: pushed %.12s… first, waiting for %.12s…\n",
				       a->uid_hex, hex, want_hash);
		}
		S2A_FREE(r);
	}
	if (strcmp(hex, want_hash) != 0)
		fprintf(stderr, "agent %s: last pushed hash \"%s\", want %s\n", a->uid_hex, hex,
			want_hash);
	assert_string_equal(hex, want_hash);
}

/* Run a write until it is accepted with 201, trying the running nodes in turn. */
static uint64_t write_until_accepted(struct fx *f, const char *name, const char *yaml,
				     const char *idem, char hash[65], int *version)
{
	uint64_t t0 = opd_test_now_ms(), deadline = t0 + LEADER_MS;
	int attempt = 0, st = -1;

	while (opd_test_now_ms() < deadline) {
		int i = attempt++ % f->c.n;

		if (f->c.nodes[i].state != OPD_CN_RUNNING)
			continue;
		st = publish(f, i, name, yaml, idem, 3000, hash, version, NULL, 0);
		if (st == 201 || st == 200)
			return opd_test_now_ms() - t0;
		opd_test_pause_ms(50);
	}
	fprintf(stderr, "write %s: not accepted within %d ms (last status %d)\n", name, LEADER_MS,
		st);
	opd_cluster_dump_logs(&f->c);
	fail();
	return 0;
}

/* a. Agents on all three nodes; a write on a follower is forwarded and pushed to all. */
static void test_forward_and_push(void **state)
{
	struct fx *f = *state;
	struct opd_ta *a[3];
	char hash[65];
	int version, l = wait_leader(f), fol = opd_cluster_follower(&f->c, l, 0);
	uint64_t t0;

	for (int i = 0; i < 3; i++)
		a[i] = connect_agent(f, i, "cluster-agent");
	t0 = opd_test_now_ms();
	publish_ok(f, fol, "base", "receivers: {otlp: {}}\n", hash, &version);
	printf("forward: publish on follower node %d (leader %d) answered 201 in %llu ms\n",
	       fol + 1, l + 1, (unsigned long long)(opd_test_now_ms() - t0));
	assert_int_equal(version, 1);
	for (int i = 0; i < 3; i++)
		expect_pushed(a[i], hash);
	printf("forward: all three agents got %.12s… %llu ms after the publish\n", hash,
	       (unsigned long long)(opd_test_now_ms() - t0));
}

/* b. kill -9 the leader: a new one is elected and a surviving node accepts writes. */
static void test_leader_failover(void **state)
{
	struct fx *f = *state;
	char hash[65], dg[65];
	int version, l = wait_leader(f), nl;
	uint64_t ms;
	json_t *j;

	publish_ok(f, opd_cluster_follower(&f->c, l, 0), "base", "a: 1\n", hash, &version);
	assert_int_equal(opd_cluster_kill(&f->c, l), 0);
	/* Measured from right after the kill (the process is reaped by then). */
	ms = write_until_accepted(f, "base", "a: 2\n", "failover-write-1", hash, &version);
	printf("failover: %llu ms from kill to first accepted write\n", (unsigned long long)ms);
	assert_int_equal(version, 2);
	nl = wait_leader(f);
	assert_true(nl != l);

	/* The old leader comes back as a follower and catches up. */
	assert_int_equal(opd_cluster_restart(&f->c, l), 0);
	assert_int_equal(opd_cluster_wait_leader(&f->c, LEADER_MS) >= 0, 1);
	wait_digests(f, dg);
	j = get_json(f, l, "/api/v1/configs/base", 200);
	assert_int_equal(json_integer_value(json_object_get(j, "active_version")), 2);
	assert_string_equal(json_string_value(json_object_get(j, "config_hash")), hash);
	json_decref(j);
}

/* c. A node cut off from the majority refuses writes but keeps serving its agent. */
static void minority_read_only(struct fx *f, int lone)
{
	struct opd_client_resp r;
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_ta *a;
	char hash[65], h2[65], code[64], path[128], t[128], dg[65];
	int version, v2, st = -1, others[2], k = 0, maybe_committed = 0;
	uint64_t t0, deadline, ro_ms = 0;
	json_t *j;

	publish_ok(f, lone, "base", "receivers: {otlp: {}}\n", hash, &version);
	wait_digests(f, NULL);
	a = connect_agent(f, lone, "lone-agent");
	/* The first reply may or may not carry the config; the agent reports it applied. */
	snprintf(path, sizeof(path), "/api/v1/agents/%s", a->uid_hex);
	j = opd_api_wait_agent(&f->c.nodes[lone].d, a->uid_hex, "desired_config.config_hash", hash,
			       5000);
	assert_non_null(j);
	json_decref(j);

	for (int i = 0; i < 3; i++)
		if (i != lone)
			others[k++] = i;
	t0 = opd_test_now_ms();
	assert_int_equal(opd_cluster_pause(&f->c, others[0]), 0);
	assert_int_equal(opd_cluster_pause(&f->c, others[1]), 0);
	/*
	 * Keep writing until the answer is read_only (at most 15 s, so the rest of the scenario
	 * still runs), then hold the node to the spec: read_only within READ_ONLY_MS.
	 */
	deadline = t0 + 15000;
	code[0] = '\0';
	while (opd_test_now_ms() < deadline) {
		char *body = publish_body("receivers: {jaeger: {}}\n");
		char retry[32];

		st = opd_cluster_request(&f->c, lone, "POST", "/api/v1/configs/base", body, NULL,
					 (int)(deadline - opd_test_now_ms()) + 1, &r, &j);
		free(body);
		opd_api_json_text(j, "error.code", code, sizeof(code));
		if (st == 503 && strcmp(code, "read_only") == 0) {
			ro_ms = opd_test_now_ms() - t0;
			assert_non_null(opd_client_header(&r, "Retry-After", retry, sizeof(retry)));
			opd_api_json_text(j, "error.message", t, sizeof(t));
			printf("read-only: node %d answered 503 read_only %llu ms after the "
			       "SIGSTOP of the two others (\"%s\")\n",
			       lone + 1, (unsigned long long)ro_ms, t);
		} else {
			/* outcome_unknown or no answer: that write may still commit later. */
			maybe_committed = 1;
			printf("read-only: %llu ms after SIGSTOP: answer %d (%s)\n",
			       (unsigned long long)(opd_test_now_ms() - t0), st,
			       st < 0 ? "none" : code);
		}
		json_decref(j);
		opd_client_resp_free(&r);
		/* A write must never be accepted without a majority. */
		assert_true(st != 201 && st != 200);
		if (ro_ms > 0)
			break;
		opd_test_pause_ms(100);
	}
	if (ro_ms == 0)
		fprintf(stderr, "read-only: last answer %d (%s) after %llu ms\n", st, code,
			(unsigned long long)(opd_test_now_ms() - t0));
	assert_int_equal(st, 503);
	assert_string_equal(code, "read_only");

	/* The agent is still served: a heartbeat gets a reply, no config change. */
	m = opd_ta_heartbeat(a, REPLY_MS);
	assert_non_null(m);
	assert_null(m->error_response);
	assert_null(m->remote_config);
	S2A_FREE(m);
	j = get_json(f, lone, path, 200);
	assert_string_equal(opd_api_json_text(j, "connected", t, sizeof(t)), "true");
	assert_string_equal(opd_api_json_text(j, "desired_config.config_hash", t, sizeof(t)), hash);
	json_decref(j);
	j = get_json(f, lone, "/api/v1/configs/base", 200);
	assert_string_equal(json_string_value(json_object_get(j, "config_hash")), hash);
	json_decref(j);

	/* Heal: the cluster converges and accepts writes again. */
	t0 = opd_test_now_ms();
	assert_int_equal(opd_cluster_resume(&f->c, others[0]), 0);
	assert_int_equal(opd_cluster_resume(&f->c, others[1]), 0);
	wait_digests(f, dg);
	printf("heal: digests equal %llu ms after SIGCONT (%.12s…)\n",
	       (unsigned long long)(opd_test_now_ms() - t0), dg);
	write_until_accepted(f, "base", "receivers: {zipkin: {}}\n", "after-heal", h2, &v2);
	/* A write refused as read_only leaves no version behind. */
	printf("heal: next version %d (%s)\n", v2,
	       maybe_committed ? "an earlier answer was not read_only" : "only read_only answers");
	assert_true(v2 == 2 || (maybe_committed && v2 == 3));
	expect_pushed(a, h2);
	wait_digests(f, NULL);
	if (ro_ms > READ_ONLY_MS)
		fprintf(stderr, "read-only: %llu ms is over the %d ms bound\n",
			(unsigned long long)ro_ms, READ_ONLY_MS);
	assert_true(ro_ms <= READ_ONLY_MS);
}

static void test_minority_follower_read_only(void **state)
{
	struct fx *f = *state;
	int l = wait_leader(f);

	minority_read_only(f, opd_cluster_follower(&f->c, l, 0));
}

static void test_minority_leader_read_only(void **state)
{
	struct fx *f = *state;
	int l = wait_leader(f);

	minority_read_only(f, l);
	/* The leader's log says when and why it stopped being writable. */
	assert_true(opd_daemon_log_contains(&f->c.nodes[l].d,
					    "this node is no longer the writable leader term="));
	assert_true(
	    opd_daemon_log_contains(&f->c.nodes[l].d, ": leader without quorum: heard from"));
}

/* d. A follower that missed writes while down catches up: identical digests everywhere. */
static void test_heal_digests(void **state)
{
	struct fx *f = *state;
	char hash[65], d1[65], dg[65], name[32];
	int version, l = wait_leader(f), fol = opd_cluster_follower(&f->c, l, 0);

	publish_ok(f, l, "heal", "a: 0\n", hash, &version);
	wait_digests(f, d1);
	assert_int_equal(opd_cluster_kill(&f->c, fol), 0);
	for (int k = 1; k <= 5; k++) {
		char yaml[32];

		snprintf(yaml, sizeof(yaml), "a: %d\n", k);
		snprintf(name, sizeof(name), "heal-%d", k % 2);
		char key[32];

		snprintf(key, sizeof(key), "heal-write-%d", k);
		write_until_accepted(f, name, yaml, key, hash, &version);
	}
	wait_digests(f, dg);
	assert_string_not_equal(dg, d1);
	assert_int_equal(opd_cluster_restart(&f->c, fol), 0);
	wait_digests(f, dg);
	printf("heal: node %d back, %d digests equal: %.16s…\n", fol + 1, f->c.n, dg);
	for (int i = 0; i < 3; i++) {
		json_t *j = get_json(f, i, "/api/v1/configs/heal-1", 200);

		assert_int_equal(json_integer_value(json_object_get(j, "latest_version")), 3);
		json_decref(j);
	}
}

/* e. kill -9 all three, restart all: every version and active pointer is back. */
static void test_full_crash_restart(void **state)
{
	static const char *const names[] = {"alpha", "beta", "gamma"};
	struct fx *f = *state;
	struct opd_client_resp r;
	json_t *before[3], *list_before, *j;
	char hash[65], dg[65], dg2[65];
	int version, l = wait_leader(f), fol = opd_cluster_follower(&f->c, l, 0);

	publish_ok(f, fol, "alpha", "a: 1\n", hash, &version);
	publish_ok(f, l, "alpha", "a: 2\n", hash, &version);
	publish_ok(f, fol, "alpha", "a: 3\n", hash, &version);
	publish_ok(f, l, "beta", "b: 1\n", hash, &version);
	publish_ok(f, fol, "gamma", "c: 1\n", hash, &version);
	publish_ok(f, fol, "gamma", "c: 2\n", hash, &version);
	/* alpha's active pointer moves back to 1 through a rollback on a follower. */
	assert_int_equal(opd_cluster_request(&f->c, fol, "POST", "/api/v1/configs/alpha/rollback",
					     "{\"version\": 1}", NULL, REQ_MS, &r, NULL),
			 200);
	opd_client_resp_free(&r);
	wait_digests(f, dg);
	for (int k = 0; k < 3; k++) {
		char path[64];

		snprintf(path, sizeof(path), "/api/v1/configs/%s", names[k]);
		before[k] = get_json(f, fol, path, 200);
	}
	assert_int_equal(json_integer_value(json_object_get(before[0], "active_version")), 1);
	assert_int_equal(json_integer_value(json_object_get(before[0], "latest_version")), 3);
	list_before = get_json(f, l, "/api/v1/configs", 200);

	for (int i = 0; i < 3; i++)
		assert_int_equal(opd_cluster_kill(&f->c, i), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(opd_cluster_restart(&f->c, i), 0);
	wait_leader(f);
	wait_digests(f, dg2);
	assert_string_equal(dg2, dg);
	printf("crash: all three killed and restarted, digest unchanged %.16s…\n", dg2);
	for (int i = 0; i < 3; i++) {
		for (int k = 0; k < 3; k++) {
			char path[64];

			snprintf(path, sizeof(path), "/api/v1/configs/%s", names[k]);
			j = get_json(f, i, path, 200);
			if (!json_equal(j, before[k])) {
				char *a = json_dumps(before[k], JSON_COMPACT);
				char *b = json_dumps(j, JSON_COMPACT);

				fprintf(stderr, "node %d %s\n before %s\n after  %s\n", i + 1,
					names[k], a, b);
				free(a);
				free(b);
			}
			assert_true(json_equal(j, before[k]));
			json_decref(j);
		}
		j = get_json(f, i, "/api/v1/configs", 200);
		assert_true(json_equal(j, list_before));
		json_decref(j);
	}
	for (int k = 0; k < 3; k++)
		json_decref(before[k]);
	json_decref(list_before);
}

/* f. Idempotent writer across a leader kill: no lost ack, no duplicate, no divergent hash. */
#define LOOP_WRITES 30

struct ack {
	int version;
	char hash[65];
};

static void test_writer_across_failover(void **state)
{
	struct fx *f = *state;
	struct ack acks[LOOP_WRITES + 1] = {{0}};
	int n201 = 0, n200 = 0, n503 = 0, n_unknown = 0, n_conn = 0, n_other = 0, attempt = 0;
	int l = wait_leader(f), killed = -1;
	uint64_t deadline = opd_test_now_ms() + 90000;
	json_t *j, *versions;

	for (int k = 1; k <= LOOP_WRITES; k++) {
		char key[32], yaml[32], code[64], hash[65];
		int version, st;

		snprintf(key, sizeof(key), "loop-write-%d", k);
		snprintf(yaml, sizeof(yaml), "n: %d\n", k);
		if (k == 8) {
			killed = l;
			assert_int_equal(opd_cluster_kill(&f->c, killed), 0);
			printf("writer: killed leader node %d before write %d\n", killed + 1, k);
		}
		if (k == 20) {
			assert_int_equal(opd_cluster_restart(&f->c, killed), 0);
			printf("writer: restarted node %d before write %d\n", killed + 1, k);
		}
		for (;;) {
			int i = attempt++ % f->c.n;

			assert_true(opd_test_now_ms() < deadline);
			st = publish(f, i, "loop", yaml, key, 5000, hash, &version, code,
				     sizeof(code));
			if (st == 201 || st == 200) {
				st == 201 ? n201++ : n200++;
				acks[k].version = version;
				memcpy(acks[k].hash, hash, 65);
				break;
			}
			if (st < 0)
				n_conn++;
			else if (st == 503 && strcmp(code, "outcome_unknown") == 0)
				n_unknown++;
			else if (st == 503)
				n503++;
			else
				n_other++;
			if (st > 0 && st != 503)
				fprintf(stderr, "writer: write %d on node %d: HTTP %d (%s)\n", k,
					i + 1, st, code);
			opd_test_pause_ms(20);
		}
	}
	printf("writer: %d writes acknowledged (%d x 201, %d x 200 replayed); retries: %d x 503 "
	       "read_only/unavailable, %d x outcome_unknown, %d connect/timeouts, %d other\n",
	       LOOP_WRITES, n201, n200, n503, n_unknown, n_conn, n_other);
	assert_int_equal(n_other, 0);
	assert_int_equal(opd_cluster_wait_leader(&f->c, LEADER_MS) >= 0, 1);
	wait_digests(f, NULL);

	/* One version per key, numbered 1..N in order, with the acknowledged hash everywhere. */
	for (int k = 1; k <= LOOP_WRITES; k++)
		assert_int_equal(acks[k].version, k);
	for (int i = 0; i < 3; i++) {
		j = get_json(f, i, "/api/v1/configs/loop", 200);
		assert_int_equal(json_integer_value(json_object_get(j, "latest_version")),
				 LOOP_WRITES);
		versions = json_object_get(j, "versions");
		assert_int_equal(json_array_size(versions), LOOP_WRITES);
		for (size_t x = 0; x < json_array_size(versions); x++) {
			json_t *v = json_array_get(versions, x);
			int n = (int)json_integer_value(json_object_get(v, "version"));

			assert_true(n >= 1 && n <= LOOP_WRITES);
			assert_string_equal(json_string_value(json_object_get(v, "config_hash")),
					    acks[n].hash);
		}
		json_decref(j);
		for (int k = 1; k <= LOOP_WRITES; k += 7) {
			char path[64], t[128], want[32];

			snprintf(path, sizeof(path), "/api/v1/configs/loop/versions/%d", k);
			j = get_json(f, i, path, 200);
			assert_string_equal(opd_api_json_text(j, "config_hash", t, sizeof(t)),
					    acks[k].hash);
			snprintf(want, sizeof(want), "n: %d\n", k);
			assert_string_equal(
			    opd_api_json_text(
				json_object_get(json_object_get(j, "files"), "collector.yaml"),
				"body", t, sizeof(t)),
			    want);
			json_decref(j);
		}
	}
	printf("writer: %d versions, identical hashes on all three nodes\n", LOOP_WRITES);
}

/* g. The agents view merges every node; a silent node makes it partial, within bounds. */
static void test_agents_fan_out(void **state)
{
	struct fx *f = *state;
	struct opd_ta *a[3];
	uint64_t t0, ms;
	json_t *j, *list, *unr;
	int found;

	wait_leader(f);
	for (int i = 0; i < 3; i++)
		a[i] = connect_agent(f, i, "fan-out");
	j = get_json(f, 0, "/api/v1/agents", 200);
	assert_true(json_is_false(json_object_get(j, "partial")));
	list = json_object_get(j, "agents");
	for (int i = 0; i < 3; i++) {
		found = 0;
		for (size_t x = 0; x < json_array_size(list); x++)
			found += strcmp(json_string_value(json_object_get(json_array_get(list, x),
									  "instance_uid")),
					a[i]->uid_hex) == 0;
		assert_int_equal(found, 1);
	}
	assert_int_equal(json_array_size(list), 3);
	json_decref(j);

	assert_int_equal(opd_cluster_pause(&f->c, 2), 0);
	t0 = opd_test_now_ms();
	j = get_json(f, 0, "/api/v1/agents", 200);
	ms = opd_test_now_ms() - t0;
	printf("fan-out: node 3 stopped, GET /api/v1/agents on node 1 answered in %llu ms\n",
	       (unsigned long long)ms);
	assert_true(ms < 5000);
	assert_true(json_is_true(json_object_get(j, "partial")));
	unr = json_object_get(j, "unreachable");
	assert_int_equal(json_array_size(unr), 1);
	assert_int_equal(json_integer_value(json_array_get(unr, 0)), 3);
	list = json_object_get(j, "agents");
	for (int i = 0; i < 2; i++) {
		found = 0;
		for (size_t x = 0; x < json_array_size(list); x++)
			found += strcmp(json_string_value(json_object_get(json_array_get(list, x),
									  "instance_uid")),
					a[i]->uid_hex) == 0;
		assert_int_equal(found, 1);
	}
	json_decref(j);
	assert_int_equal(opd_cluster_resume(&f->c, 2), 0);
}

/* h. Five voters: a leader, and a write replicated to all five stores. */
static void test_five_nodes(void **state)
{
	struct fx *f = *state;
	char hash[65], dg[65], t[128];
	int version, l = wait_leader(f), fol = opd_cluster_follower(&f->c, l, 3);
	uint64_t t0 = opd_test_now_ms();

	publish_ok(f, fol, "five", "x: 5\n", hash, &version);
	wait_digests(f, dg);
	printf("five: leader node %d, write on node %d replicated to 5 digests in %llu ms\n", l + 1,
	       fol + 1, (unsigned long long)(opd_test_now_ms() - t0));
	for (int i = 0; i < 5; i++) {
		json_t *j = get_json(f, i, "/api/v1/configs/five/versions/1", 200);

		assert_string_equal(opd_api_json_text(j, "config_hash", t, sizeof(t)), hash);
		assert_string_equal(opd_api_json_text(j, "verified", t, sizeof(t)), "true");
		json_decref(j);
		j = opd_cluster_status(&f->c, i, REQ_MS);
		assert_non_null(j);
		assert_int_equal(json_array_size(json_object_get(j, "members")), 5);
		json_decref(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_forward_and_push, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_leader_failover, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_minority_follower_read_only, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_minority_leader_read_only, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_heal_digests, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_full_crash_restart, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_writer_across_failover, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_agents_fan_out, setup3, teardown),
	    cmocka_unit_test_setup_teardown(test_five_nodes, setup5, teardown),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
