/*
 * End-to-end: GET /metrics on a live node with agents over both transports and a rollout in
 * progress, on one node and on a three-node cluster, and certificate expiry (fleet CA, agents'
 * certificates by state, the OpAMP listener's TLS certificate). The values are checked against
 * what the test did, and the whole page against Prometheus' own parser and linter (`promtool check
 * metrics`, from Debian's prometheus package; the check is skipped, saying so, without it).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <time.h>

#include "admin_client.h"
#include "agent_client.h"
#include "cluster.h"
#include "daemon.h"
#include "test_ca.h"

#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

enum {
	RCS_APPLIED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED,
	RCS_FAILED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_FAILED,
};

/* GET /metrics (no token needed): the body, malloc'd. */
static char *scrape(const struct opd_daemon *d)
{
	struct opd_client_resp r = {0};
	char *body;

	assert_int_equal(opd_api_request(d, "GET", "/metrics", NULL, NULL, &r, NULL), 200);
	body = strdup((const char *)r.body);
	assert_non_null(body);
	opd_client_resp_free(&r);
	return body;
}

/* The value of the sample line "series value" (series with its labels), or -1 when absent. */
static long long sample(const char *page, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = page; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	}
	return -1;
}

#define EXPECT_SAMPLE(page, series, want)                                                          \
	do {                                                                                       \
		long long got_ = sample((page), (series));                                         \
		if (got_ != (want))                                                                \
			fprintf(stderr, "%s = %lld, want %lld\n%s", (series), got_,                \
				(long long)(want), (page));                                        \
		assert_int_equal(got_, (want));                                                    \
	} while (0)

static int have_promtool(void)
{
	return system("command -v promtool >/dev/null 2>&1") == 0;
}

/*
 * Feed the page to "promtool check metrics" on stdin; returns its exit status and prints what
 * it said. Bounded: promtool is killed after 30 s.
 */
static int promtool_check(const char *page)
{
	int in[2], out[2], status;
	char said[8192];
	size_t n = 0, len = strlen(page), off = 0;
	uint64_t deadline = opd_test_now_ms() + 30000;
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		close(in[1]);
		close(out[0]);
		execlp("promtool", "promtool", "check", "metrics", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	signal(SIGPIPE, SIG_IGN);
	while (off < len) {
		ssize_t w = write(in[1], page + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(in[1]);
	for (;;) {
		struct pollfd p = {out[0], POLLIN, 0};
		uint64_t now = opd_test_now_ms();
		ssize_t k;
		if (now >= deadline) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		k = read(out[0], said + n, sizeof said - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == sizeof said - 1)
			break;
	}
	said[n] = '\0';
	close(out[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (n > 0)
		fprintf(stderr, "promtool check metrics said:\n%s", said);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void check_with_promtool(const char *page)
{
	if (!have_promtool()) {
		fprintf(stderr,
			"SKIPPED: promtool is not installed, so /metrics was not checked with "
			"it (Debian's prometheus package has it; deploy/setup-deps.sh installs "
			"it unless OPD_NO_PROMETHEUS=1)\n");
		return;
	}
	assert_int_equal(promtool_check(page), 0);
}

static void report(struct opd_ta *a, const char *hash, int status, const char *error)
{
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, a);
	opd_ta_msg_remote_config_status(&b, hash, status, error);
	m = opd_ta_exchange(a, &b.msg, REPLY_MS);
	assert_non_null(m);
	S2A_FREE(m);
}

static void hello(struct opd_ta *a, const char *name)
{
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_ta_msg b;

	opd_ta_msg_full(&b, a, name);
	m = opd_ta_exchange(a, &b.msg, REPLY_MS);
	assert_non_null(m);
	S2A_FREE(m);
}

/* Poll the page until series has the wanted value (agents report asynchronously). */
static char *scrape_until(const struct opd_daemon *d, const char *series, long long want)
{
	uint64_t deadline = opd_test_now_ms() + 10000;

	for (;;) {
		char *page = scrape(d);
		if (sample(page, series) == want || opd_test_now_ms() > deadline)
			return page;
		free(page);
		opd_test_pause_ms(100);
	}
}

static struct opd_daemon d;

static int daemon_teardown(void **state)
{
	(void)state;
	opd_daemon_stop(&d);
	return 0;
}

static void test_single_node(void **state)
{
	static const char *const extra[] = {"--max-connections", "2", NULL};
	static const char yaml[] = "receivers:\n  otlp: {}\n";
	struct opd_ta ws, http, extra_ws, refused;
	char hash[65], *page;
	int version;

	(void)state;
	assert_int_equal(opd_daemon_start(&d, extra), 0);
	page = scrape(&d);
	EXPECT_SAMPLE(page, "opampd_agents", 0);
	EXPECT_SAMPLE(page, "opampd_raft_leader", 1);
	EXPECT_SAMPLE(page, "opampd_raft_role{role=\"leader\"}", 1);
	EXPECT_SAMPLE(page, "opampd_raft_role{role=\"follower\"}", 0);
	EXPECT_SAMPLE(page, "opampd_raft_has_leader", 1);
	EXPECT_SAMPLE(page, "opampd_raft_members{role=\"voter\"}", 1);
	EXPECT_SAMPLE(page, "opampd_read_only", 0);
	EXPECT_SAMPLE(page, "opampd_admission_rejections_total{reason=\"max_connections\"}", 0);
	/*
	 * raft's start-up probe of the data directory closes an AIO context: with the
	 * libraft this runs on, its io_destroy reached aio_reaper.c's thread.
	 */
	assert_true(sample(page, "opampd_raft_aio_contexts_deferred_total") >= 1);
	/* And the log segment raft prepared at start was written with zeros (segment_fill.c). */
	assert_true(sample(page, "opampd_raft_segments_filled_total") >= 1);
	check_with_promtool(page);
	free(page);

	/* A configuration for every agent, a WebSocket agent and an HTTP agent. */
	assert_int_equal(opd_api_publish(&d, "fleet", yaml, hash, &version), 201);
	opd_ta_init(&ws, d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&ws), 0);
	hello(&ws, "checkout");
	opd_ta_init(&http, d.opamp_port, OPD_TA_CAPS);
	hello(&http, "cart");
	report(&ws, hash, RCS_APPLIED, NULL);
	report(&http, hash, RCS_FAILED, "bad exporter");

	page = scrape_until(&d, "opampd_config_agents{config=\"fleet\",status=\"failed\"}", 1);
	EXPECT_SAMPLE(page, "opampd_agents", 2);
	EXPECT_SAMPLE(page, "opampd_agents_by_state{health=\"healthy\",transport=\"websocket\"}",
		      1);
	EXPECT_SAMPLE(page, "opampd_agents_by_state{health=\"healthy\",transport=\"http\"}", 1);
	EXPECT_SAMPLE(page, "opampd_agents_by_state{health=\"down\",transport=\"websocket\"}", 0);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"applied\"}", 1);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"failed\"}", 1);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"applying\"}", 0);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"pending\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agents_without_config", 0);
	EXPECT_SAMPLE(page, "opampd_configs_active", 1);
	EXPECT_SAMPLE(page, "opampd_unverified_versions", 0);
	check_with_promtool(page);
	free(page);

	/* A new version: both agents are pending until they report it. */
	assert_int_equal(
	    opd_api_publish(&d, "fleet", "receivers:\n  otlp: {}\n  zipkin: {}\n", hash, &version),
	    201);
	page = scrape_until(&d, "opampd_config_agents{config=\"fleet\",status=\"pending\"}", 2);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"pending\"}", 2);
	EXPECT_SAMPLE(page, "opampd_config_agents{config=\"fleet\",status=\"applied\"}", 0);
	free(page);

	/* Admission: the limit is 2 connections; a third is turned away and counted. */
	opd_ta_init(&extra_ws, d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&extra_ws), 0);
	opd_ta_init(&refused, d.opamp_port, OPD_TA_CAPS);
	(void)opd_ta_ws_connect(&refused); /* accepted by the kernel, closed by opampd */
	opd_ta_fini(&refused);
	opd_ta_fini(&extra_ws);
	page = scrape_until(&d, "opampd_admission_rejections_total{reason=\"max_connections\"}", 1);
	EXPECT_SAMPLE(page, "opampd_admission_rejections_total{reason=\"max_connections\"}", 1);
	EXPECT_SAMPLE(page, "opampd_connections_refused_total", 1);
	check_with_promtool(page);
	free(page);

	opd_ta_fini(&ws);
	opd_ta_fini(&http);
	assert_int_equal(opd_daemon_stop(&d), 0);
}

/* ---- certificate expiry ---- */

/* Capabilities of the CSR test agents: no AcceptsOpAMPConnectionSettings (no server offers). */
#define CSR_AGENT_CAPS ((OPD_TA_CAPS & ~0x100u) | 0x200u)

/* A connected agent (over TLS when tls) gets a certificate through the CSR flow (at most 8 s). */
static void agent_with_cert(const struct opd_daemon *dd, struct opd_ta *a, bool tls)
{
	Opamp__Proto__V1__ConnectionSettingsRequest req =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest o =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest cr = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;
	uint64_t end = opd_test_now_ms() + 8000;
	struct opd_ta_msg b;
	char *csr;
	int got = 0;

	opd_ta_init(a, dd->opamp_port, CSR_AGENT_CAPS);
	a->tls = tls;
	assert_int_equal(opd_ta_ws_connect(a), 0);
	csr = opd_tca_csr(a->uid_hex, 0, NULL);
	assert_non_null(csr);
	opd_ta_msg_full(&b, a, "certified");
	cr.csr.data = (uint8_t *)csr;
	cr.csr.len = strlen(csr);
	o.certificate_request = &cr;
	req.opamp = &o;
	b.msg.connection_settings_request = &req;
	assert_int_equal(opd_ta_send(a, &b.msg), 0);
	while (!got && opd_test_now_ms() < end) {
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_recv(a, 1000);
		if (s == NULL)
			continue;
		assert_null(s->error_response);
		got = s->connection_settings != NULL && s->connection_settings->opamp != NULL &&
		      s->connection_settings->opamp->certificate != NULL;
		S2A_FREE(s);
	}
	assert_true(got);
	free(csr);
}

/* The not_after_ms of the only certificate of uid, from the admin API, in seconds. */
static long long cert_not_after(const struct opd_daemon *dd, const char *uid, long long *serial)
{
	struct opd_client_resp r;
	char path[128];
	json_t *j = NULL, *c;
	long long na;

	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", uid);
	assert_int_equal(opd_api_request(dd, "GET", path, NULL, dd->token, &r, &j), 200);
	opd_client_resp_free(&r);
	assert_int_equal(json_array_size(json_object_get(j, "certificates")), 1);
	c = json_array_get(json_object_get(j, "certificates"), 0);
	na = (long long)json_integer_value(json_object_get(c, "not_after_ms")) / 1000;
	*serial = (long long)json_integer_value(json_object_get(c, "serial"));
	json_decref(j);
	return na;
}

/* Only the active CA, as the admin API reports it. */
static void expect_ca_series(const struct opd_daemon *dd, const char *page)
{
	struct opd_client_resp r;
	json_t *j = NULL, *act;
	char series[200];

	assert_int_equal(opd_api_request(dd, "GET", "/api/v1/ca", NULL, dd->token, &r, &j), 200);
	opd_client_resp_free(&r);
	act = json_object_get(j, "active");
	assert_true(json_is_object(act));
	snprintf(series, sizeof series,
		 "opampd_ca_not_after_seconds{fingerprint=\"%s\",active=\"true\"}",
		 json_string_value(json_object_get(act, "fingerprint")));
	EXPECT_SAMPLE(page, series,
		      (long long)json_integer_value(json_object_get(act, "not_after_ms")) / 1000);
	json_decref(j);
}

static struct opd_daemon d2;
static char tls_dir[256];

static int certs_teardown(void **state)
{
	(void)state;
	opd_daemon_stop(&d);
	opd_daemon_stop(&d2);
	if (tls_dir[0])
		opd_tca_rmdir(tls_dir);
	return 0;
}

static void test_certificates(void **state)
{
	struct opd_tca ca;
	struct opd_tca_leaf leaf = {.cn = "opampd",
				    .server = true,
				    .key = OPD_TCA_EC,
				    .not_before_s = -60,
				    .not_after_s = 10 * 86400};
	char cert[320], key[320], path[80];
	const char *extra2[] = {
	    "--cert-lifetime", "60", "--opamp-tls-cert", cert, "--opamp-tls-key", key, NULL};
	struct opd_client_resp r;
	struct opd_ta a[2], t;
	long long na0, na1, serial0, serial1, now, v;
	char *page;

	(void)state;
	/* The single-node default's generated CA, no agent certificate yet, no TLS. */
	assert_int_equal(opd_daemon_start(&d, NULL), 0);
	page = scrape_until(&d, "opampd_agent_certificates{state=\"valid\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"valid\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"expiring_soon\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"expired\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"revoked\"}", 0);
	assert_null(strstr(page, "opampd_agent_certificate_earliest_expiry_seconds"));
	assert_null(strstr(page, "opampd_tls_certificate_not_after_seconds"));
	check_with_promtool(page);
	free(page);

	/* Two agents with 90-day certificates: both valid; the earliest expiry is the first's. */
	agent_with_cert(&d, &a[0], false);
	agent_with_cert(&d, &a[1], false);
	na0 = cert_not_after(&d, a[0].uid_hex, &serial0);
	na1 = cert_not_after(&d, a[1].uid_hex, &serial1);
	page = scrape(&d);
	expect_ca_series(&d, page);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"valid\"}", 2);
	EXPECT_SAMPLE(page, "opampd_agent_certificate_earliest_expiry_seconds",
		      na0 < na1 ? na0 : na1);
	check_with_promtool(page);
	free(page);

	/* Revoke the second's: one valid, one revoked, the earliest valid one is the first's. */
	snprintf(path, sizeof path, "/api/v1/certificates/%lld/revoke", serial1);
	assert_int_equal(
	    opd_api_request(&d, "POST", path, "{\"reason\":\"superseded\"}", d.token, &r, NULL),
	    200);
	opd_client_resp_free(&r);
	page = scrape(&d);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"valid\"}", 1);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"revoked\"}", 1);
	EXPECT_SAMPLE(page, "opampd_agent_certificate_earliest_expiry_seconds", na0);
	check_with_promtool(page);
	free(page);
	opd_ta_fini(&a[0]);
	opd_ta_fini(&a[1]);
	assert_int_equal(opd_daemon_stop(&d), 0);

	/*
	 * TLS on the OpAMP listener (its certificate's expiry, by listener) and 60-second agent
	 * certificates. They are backdated a minute, so they count as expiring soon (a third of
	 * their lifetime left) only 20 s on, and as expired a minute on: longer than this test
	 * should take, so both stay 0 here.
	 */
	assert_int_equal(opd_tca_tmpdir(tls_dir, sizeof tls_dir), 0);
	snprintf(cert, sizeof cert, "%s/opamp.pem", tls_dir);
	snprintf(key, sizeof key, "%s/opamp.key", tls_dir);
	assert_int_equal(opd_tca_init(&ca, "metrics test CA", OPD_TCA_EC), 0);
	assert_int_equal(opd_tca_issue(&ca, &leaf, cert, key), 0);
	opd_tca_fini(&ca);
	assert_int_equal(opd_daemon_start(&d2, extra2), 0);
	agent_with_cert(&d2, &t, true);
	na0 = cert_not_after(&d2, t.uid_hex, &serial0);
	opd_ta_fini(&t);
	page = scrape(&d2);
	now = (long long)time(NULL);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"valid\"}", 1);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"expiring_soon\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificates{state=\"expired\"}", 0);
	EXPECT_SAMPLE(page, "opampd_agent_certificate_earliest_expiry_seconds", na0);
	assert_true(na0 > now + 45 && na0 <= now + 61);
	v = sample(page, "opampd_tls_certificate_not_after_seconds{listener=\"opamp\"}");
	assert_true(v >= now + 10 * 86400 - 120 && v <= now + 10 * 86400 + 5);
	assert_null(strstr(page, "listener=\"admin\""));
	assert_non_null(strstr(page, "# TYPE opampd_tls_certificate_not_after_seconds gauge"));
	check_with_promtool(page);
	free(page);
	assert_int_equal(opd_daemon_stop(&d2), 0);
}

/* Stopped by the teardown too, when an assertion ends the test early. */
static struct opd_cluster c;

static int cluster_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < c.n; i++)
		if (c.nodes[i].state == OPD_CN_PAUSED)
			opd_cluster_resume(&c, i);
	opd_cluster_stop(&c);
	return 0;
}

static void test_cluster(void **state)
{
	static const char *const hb[] = {"--heartbeat-interval", "1", NULL};
	int l, fol;
	char *page;

	(void)state;
	assert_int_equal(opd_cluster_start(&c, 3, hb), 0);
	l = opd_cluster_wait_leader(&c, 15000);
	assert_true(l >= 0);
	fol = opd_cluster_follower(&c, l, 0);

	page = scrape(&c.nodes[l].d);
	EXPECT_SAMPLE(page, "opampd_raft_role{role=\"leader\"}", 1);
	EXPECT_SAMPLE(page, "opampd_raft_leader_id", l + 1);
	EXPECT_SAMPLE(page, "opampd_raft_members{role=\"voter\"}", 3);
	check_with_promtool(page);
	free(page);
	page = scrape_until(&c.nodes[fol].d, "opampd_raft_has_leader", 1);
	EXPECT_SAMPLE(page, "opampd_raft_role{role=\"follower\"}", 1);
	EXPECT_SAMPLE(page, "opampd_raft_leader", 0);
	EXPECT_SAMPLE(page, "opampd_raft_has_leader", 1);
	EXPECT_SAMPLE(page, "opampd_raft_leader_id", l + 1);
	EXPECT_SAMPLE(page, "opampd_read_only", 0);
	check_with_promtool(page);
	free(page);

	/* The follower cut off from everyone (the other two paused) says it is read-only. */
	for (int i = 0; i < 3; i++)
		if (i != fol)
			assert_int_equal(opd_cluster_pause(&c, i), 0);
	page = scrape_until(&c.nodes[fol].d, "opampd_read_only", 1);
	EXPECT_SAMPLE(page, "opampd_read_only", 1);
	check_with_promtool(page);
	free(page);
	for (int i = 0; i < 3; i++)
		if (i != fol)
			assert_int_equal(opd_cluster_resume(&c, i), 0);
	assert_int_equal(opd_cluster_stop(&c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_single_node, daemon_teardown),
	    cmocka_unit_test_teardown(test_certificates, certs_teardown),
	    cmocka_unit_test_teardown(test_cluster, cluster_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
