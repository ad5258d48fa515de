/*
 * Certificates over TLS against the real daemon (issue 4):
 *  - the agent-initiated CSR flow over TLS, then a reconnection with mTLS and
 *    the new certificate, which the API shows in use;
 *  - an agent without a certificate (WebSocket, or plain HTTP in a poll reply)
 *    is offered a server-generated key and certificate, `openssl verify`
 *    accepts it against the fleet CA, the agent reconnects with mTLS and the
 *    API shows the certificate in use; no private key reaches the log or the
 *    admin API, key files are 0600;
 *  - a certificate past its renewal point is renewed;
 *  - 100 agents rotated by selector reach 100 % acknowledged with progress
 *    visible while it runs, agents outside the selector untouched; then a CA
 *    rotation with overlap: every agent stays connected, moves to the new
 *    CA, and once the old CA is retired its certificates are refused;
 *  - in mTLS-required mode with the fleet CA as trust: expired, revoked,
 *    wrong-CA and other-agent certificates are refused, and revoking a
 *    certificate closes the connection that presented it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "cluster.h"
#include "daemon.h"
#include "test_ca.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CAP_REPORTS_CS_STATUS 0x8000u /* AgentCapabilities_ReportsConnectionSettingsStatus */
#define N_ROTATED 100
#define N_BYSTANDERS 10
#define N_AGENTS (N_ROTATED + N_BYSTANDERS)
#define ROTATION_TIMEOUT_MS 60000

struct env {
	char dir[256];
	struct opd_tca server_ca, fleet, foreign;
	char server_ca_pem[320], server_cert[320], server_key[320];
	char fleet_cert[320], fleet_key[320];
};

static struct env E;

struct fx {
	struct opd_daemon d;
};

/* An agent over TLS with the files of its current certificate. */
struct ragent {
	struct opd_ta ta;
	char name[32];
	char cert[320], key[320];
	int generation; /* certificates received */
	bool connected;
	bool reported_applying;
};

static int group_setup(void **state)
{
	struct opd_tca_leaf server = {.cn = "opampd test server", .server = true};

	(void)state;
	if (opd_tca_tmpdir(E.dir, sizeof E.dir) != 0 ||
	    opd_tca_init(&E.server_ca, "server CA", OPD_TCA_EC) != 0 ||
	    opd_tca_init(&E.fleet, "fleet CA", OPD_TCA_EC) != 0 ||
	    opd_tca_init(&E.foreign, "foreign CA", OPD_TCA_EC) != 0)
		return -1;
	snprintf(E.server_ca_pem, sizeof E.server_ca_pem, "%s/server-ca.pem", E.dir);
	snprintf(E.server_cert, sizeof E.server_cert, "%s/server.pem", E.dir);
	snprintf(E.server_key, sizeof E.server_key, "%s/server.key", E.dir);
	snprintf(E.fleet_cert, sizeof E.fleet_cert, "%s/fleet.pem", E.dir);
	snprintf(E.fleet_key, sizeof E.fleet_key, "%s/fleet.key", E.dir);
	return opd_tca_write_ca(&E.server_ca, E.server_ca_pem) != 0 ||
		       opd_tca_issue(&E.server_ca, &server, E.server_cert, E.server_key) != 0 ||
		       opd_tca_write_ca(&E.fleet, E.fleet_cert) != 0 ||
		       opd_tca_write_key(&E.fleet, E.fleet_key) != 0
		   ? -1
		   : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	opd_tca_fini(&E.server_ca);
	opd_tca_fini(&E.fleet);
	opd_tca_fini(&E.foreign);
	opd_tca_rmdir(E.dir);
	return 0;
}

/* The daemon over TLS with mTLS in mode, trusting the fleet CA (no --opamp-client-ca). */
static struct fx *start(const char *mode, const char *const *more)
{
	const char *args[24] = {"--opamp-tls-cert", E.server_cert, "--opamp-tls-key", E.server_key,
				"--opamp-mtls",     mode,          "--ca-cert",       E.fleet_cert,
				"--ca-key",         E.fleet_key};
	struct fx *f = calloc(1, sizeof *f);
	size_t n = 10;

	assert_non_null(f);
	for (size_t i = 0; more != NULL && more[i] != NULL && n < 23; i++)
		args[n++] = more[i];
	args[n] = NULL;
	assert_int_equal(opd_daemon_start(&f->d, args), 0);
	return f;
}

static void stop(struct fx *f)
{
	/* No private key is ever logged. */
	FILE *fp = fopen(f->d.log_path, "r");
	char line[4096];

	assert_non_null(fp);
	while (fgets(line, sizeof line, fp) != NULL)
		assert_null(strstr(line, "PRIVATE KEY"));
	fclose(fp);
	assert_int_equal(opd_daemon_stop(&f->d), 0);
	free(f);
}

static void ragent_init(struct ragent *r, const struct fx *f, const char *name, int i)
{
	memset(r, 0, sizeof *r);
	opd_ta_init(&r->ta, f->d.opamp_port, OPD_TA_CAPS | (i % 2 ? CAP_REPORTS_CS_STATUS : 0));
	r->ta.tls = true;
	r->ta.tls_ca_file = E.server_ca_pem;
	snprintf(r->name, sizeof r->name, "%s", name);
}

static void ragent_use(struct ragent *r, const char *cert, const char *key)
{
	snprintf(r->cert, sizeof r->cert, "%s", cert);
	snprintf(r->key, sizeof r->key, "%s", key);
	r->ta.tls_cert_file = r->cert[0] ? r->cert : NULL;
	r->ta.tls_key_file = r->key[0] ? r->key : NULL;
}

/* Connect and send the full report; 0 when the reply came back. */
static int ragent_connect(struct ragent *r)
{
	Opamp__Proto__V1__ServerToAgent *s;
	struct opd_ta_msg b;

	if (r->ta.fd >= 0)
		opd_ta_fini(&r->ta);
	r->ta.close_code = -1;
	if (opd_ta_ws_connect(&r->ta) != 0)
		return -1;
	opd_ta_msg_full(&b, &r->ta, r->name);
	s = opd_ta_exchange(&r->ta, &b.msg, 5000);
	if (s == NULL)
		return -1;
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	r->connected = true;
	return 0;
}

static void write_file(const char *path, const void *p, size_t n, int mode)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	chmod(path, (mode_t)mode);
	assert_int_equal(fwrite(p, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static const Opamp__Proto__V1__TLSCertificate *
offered_cert(const Opamp__Proto__V1__ServerToAgent *s)
{
	if (s == NULL || s->connection_settings == NULL || s->connection_settings->opamp == NULL ||
	    s->connection_settings->opamp->certificate == NULL ||
	    s->connection_settings->opamp->certificate->cert.len == 0)
		return NULL;
	return s->connection_settings->opamp->certificate;
}

/* Report APPLYING for the offer (agents with the capability), as opamp-go does. */
static void report_applying(struct ragent *r, const Opamp__Proto__V1__ServerToAgent *s)
{
	Opamp__Proto__V1__ConnectionSettingsStatus st =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUS__INIT;
	struct opd_ta_msg b;

	if (!(r->ta.capabilities & CAP_REPORTS_CS_STATUS))
		return;
	opd_ta_msg_init(&b, &r->ta);
	st.last_connection_settings_hash = s->connection_settings->hash;
	st.status =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUSES__ConnectionSettingsStatuses_APPLYING;
	b.msg.connection_settings_status = &st;
	if (opd_ta_send(&r->ta, &b.msg) == 0)
		r->reported_applying = true;
}

/*
 * Take the certificate the server offers in s: keep its files, report
 * APPLYING, reconnect with it (the proof the server waits for). 1 when s held
 * an offer, 0 when not; fails the test when the new certificate is refused.
 */
static int take_offer(struct ragent *r, const Opamp__Proto__V1__ServerToAgent *s)
{
	const Opamp__Proto__V1__TLSCertificate *tc = offered_cert(s);
	char cert[320], key[320];

	if (tc == NULL)
		return 0;
	assert_true(tc->private_key.len > 0); /* server-generated: the key comes along */
	assert_true(tc->ca_cert.len > 0);
	assert_int_equal(s->connection_settings->hash.len, 32);
	assert_true(s->connection_settings->opamp->heartbeat_interval_seconds > 0);
	r->generation++;
	snprintf(cert, sizeof cert, "%s/%s-%d.pem", E.dir, r->ta.uid_hex, r->generation);
	snprintf(key, sizeof key, "%s/%s-%d.key", E.dir, r->ta.uid_hex, r->generation);
	write_file(cert, tc->cert.data, tc->cert.len, 0644);
	write_file(key, tc->private_key.data, tc->private_key.len, 0600);
	report_applying(r, s);
	ragent_use(r, cert, key);
	r->connected = false;
	assert_int_equal(ragent_connect(r), 0);
	return 1;
}

/* Read whatever r has been sent within timeout_ms and act on an offer. 1 if one was taken. */
static int ragent_poll(struct ragent *r, int timeout_ms)
{
	Opamp__Proto__V1__ServerToAgent *s = opd_ta_recv(&r->ta, timeout_ms);
	int took;

	if (s == NULL)
		return 0;
	took = take_offer(r, s);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	return took;
}

/* A heartbeat, its reply dropped (it only keeps the connection busy while waiting). */
static void heartbeat(struct opd_ta *a)
{
	Opamp__Proto__V1__ServerToAgent *s = opd_ta_heartbeat(a, 1000);

	if (s != NULL)
		opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
}

static json_t *api_get(const struct fx *f, const char *path)
{
	struct opd_client_resp r;
	json_t *j = NULL;

	assert_int_equal(opd_api_request(&f->d, "GET", path, NULL, f->d.token, &r, &j), 200);
	opd_client_resp_free(&r);
	assert_non_null(j);
	return j;
}

static json_t *api_post(const struct fx *f, const char *path, const char *body, int want)
{
	struct opd_client_resp r;
	json_t *j = NULL;

	assert_int_equal(opd_api_request(&f->d, "POST", path, body, f->d.token, &r, &j), want);
	opd_client_resp_free(&r);
	return j;
}

/* A counter or gauge from /metrics (no token needed), or -1 when absent. */
static long long metric(const struct fx *f, const char *name)
{
	struct opd_client_resp r;
	char want[160];
	const char *p;
	long long v = -1;

	assert_int_equal(opd_api_request(&f->d, "GET", "/metrics", NULL, NULL, &r, NULL), 200);
	snprintf(want, sizeof want, "\n%s ", name);
	p = strstr((const char *)r.body, want);
	if (p != NULL)
		v = strtoll(p + strlen(want), NULL, 10);
	opd_client_resp_free(&r);
	return v;
}

static json_t *agent_cert(const struct fx *f, const char *uid_hex)
{
	char path[128];
	json_t *a, *c;

	snprintf(path, sizeof path, "/api/v1/agents/%s", uid_hex);
	a = api_get(f, path);
	c = json_incref(json_object_get(a, "certificate"));
	json_decref(a);
	return c;
}

/*
 * The agent presents its offered certificate: in use (as of the next tick of
 * the offers, at most 3 s) and the offer applied.
 */
static void expect_in_use(const struct fx *f, const char *uid_hex)
{
	json_t *c = agent_cert(f, uid_hex);

	for (uint64_t end = opd_test_now_ms() + 3000;
	     !json_is_true(json_object_get(c, "in_use")) && opd_test_now_ms() < end;) {
		opd_test_pause_ms(100);
		json_decref(c);
		c = agent_cert(f, uid_hex);
	}
	assert_true(json_is_true(json_object_get(c, "in_use")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(c, "offer"), "state")), "applied");
	json_decref(c);
}

/* openssl verify accepts the PEM file as a client certificate of the CAs in bundle_path. */
static int openssl_verify(const char *bundle_path, const char *cert_path)
{
	char cmd[1024];

	snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s -purpose sslclient %s >/dev/null 2>&1",
		 bundle_path, cert_path);
	return system(cmd);
}

static void save_bundle(const struct fx *f, const char *path)
{
	struct opd_client_resp r;

	assert_int_equal(
	    opd_api_request(&f->d, "GET", "/api/v1/ca/bundle", NULL, f->d.token, &r, NULL), 200);
	write_file(path, r.body, strlen((const char *)r.body), 0644);
	opd_client_resp_free(&r);
}

/* ---- the server-generated flow ---- */

static void server_generated_then_mtls(void **state)
{
	static const char *const more[] = {"--offer-agent-certs", "on", NULL};
	struct fx *f = start("optional", more);
	struct ragent r;
	char bundle[320], path[320];
	json_t *list;
	uint64_t end;
	int got = 0;
	struct stat st;

	(void)state;
	ragent_init(&r, f, "enrolled", 1);
	assert_int_equal(ragent_connect(&r), 0); /* no certificate yet: allowed (optional) */
	/* The offer comes after the enrolment grace (5 s) on the next tick. */
	for (end = opd_test_now_ms() + 15000; !got && opd_test_now_ms() < end;) {
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_recv(&r.ta, 500);
		const Opamp__Proto__V1__TLSCertificate *tc = offered_cert(s);

		if (tc != NULL) {
			snprintf(path, sizeof path, "%s/enrolled.pem", E.dir);
			write_file(path, tc->cert.data, tc->cert.len, 0644);
			snprintf(bundle, sizeof bundle, "%s/bundle1.pem", E.dir);
			save_bundle(f, bundle);
			assert_int_equal(openssl_verify(bundle, path), 0);
			got = take_offer(&r, s);
		}
		if (s != NULL)
			opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
		else
			heartbeat(&r.ta);
	}
	assert_true(got);
	/* Reconnected with mTLS. */
	expect_in_use(f, r.ta.uid_hex);
	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", r.ta.uid_hex);
	list = api_get(f, path);
	assert_int_equal(json_array_size(json_object_get(list, "certificates")), 1);
	assert_string_equal(
	    json_string_value(json_object_get(
		json_array_get(json_object_get(list, "certificates"), 0), "reason")),
	    "server");
	/* No private key in what the API returns. */
	{
		char *text = json_dumps(list, 0);
		assert_null(strstr(text, "PRIVATE KEY"));
		free(text);
	}
	json_decref(list);
	/* Key files on the server's disk are 0600. */
	snprintf(path, sizeof path, "%s/agent-ca.pem", f->d.dir);
	assert_int_equal(stat(path, &st), 0); /* the trust file made from the fleet CA */
	assert_int_equal(stat(E.fleet_key, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	opd_ta_fini(&r.ta);
	stop(f);
}

/* A short lifetime and an early renewal point: the agent is offered a renewal. */
static void renewal_before_expiry(void **state)
{
	/* Renewed 6 s after issuance (the shortest lifetime allowed is a minute). */
	static const char *const more[] = {
	    "--offer-agent-certs", "on", "--cert-lifetime", "60s", "--cert-renew-at", "0.1", NULL};
	struct fx *f = start("optional", more);
	struct ragent r;
	char path[160];
	json_t *list, *certs;
	uint64_t end;

	(void)state;
	ragent_init(&r, f, "renewing", 0);
	assert_int_equal(ragent_connect(&r), 0);
	for (end = opd_test_now_ms() + 30000; r.generation < 2 && opd_test_now_ms() < end;)
		if (!ragent_poll(&r, 500))
			heartbeat(&r.ta);
	assert_int_equal(r.generation, 2);
	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", r.ta.uid_hex);
	list = api_get(f, path);
	certs = json_object_get(list, "certificates");
	assert_int_equal(json_array_size(certs), 2);
	{
		const char *r0 =
		    json_string_value(json_object_get(json_array_get(certs, 0), "reason"));
		const char *r1 =
		    json_string_value(json_object_get(json_array_get(certs, 1), "reason"));
		assert_true((strcmp(r0, "server") == 0 && strcmp(r1, "renewal") == 0) ||
			    (strcmp(r1, "server") == 0 && strcmp(r0, "renewal") == 0));
	}
	json_decref(list);
	opd_ta_fini(&r.ta);
	stop(f);
}

/* ---- rotation of many agents, and of the CA ---- */

/* Issue agent i's first certificate with the fleet CA directly (as provisioning would). */
static void provision(struct ragent *r)
{
	struct opd_tca_leaf leaf = {.cn = r->ta.uid_hex};
	char cert[320], key[320];

	snprintf(cert, sizeof cert, "%s/%s-0.pem", E.dir, r->ta.uid_hex);
	snprintf(key, sizeof key, "%s/%s-0.key", E.dir, r->ta.uid_hex);
	assert_int_equal(opd_tca_issue(&E.fleet, &leaf, cert, key), 0);
	ragent_use(r, cert, key);
}

static json_t *progress_of(const struct fx *f, const char *id)
{
	char path[160];
	json_t *j, *p;

	snprintf(path, sizeof path, "/api/v1/rotations/%s", id);
	j = api_get(f, path);
	p = json_incref(json_object_get(j, "progress"));
	json_decref(j);
	return p;
}

static long count(json_t *p, const char *k)
{
	return (long)json_integer_value(json_object_get(p, k));
}

/*
 * Start a rotation of service.name=rotated and serve every agent until all
 * are acknowledged; print the progress as it goes. Returns how many progress
 * snapshots showed a rotation under way (0 < acknowledged < matched).
 */
static int rotate_all(struct fx *f, struct ragent *ag, int expect_generation)
{
	json_t *j =
	    api_post(f, "/api/v1/rotations", "{\"selector\":{\"service.name\":\"rotated\"}}", 201);
	char id[128];
	uint64_t t0 = opd_test_now_ms(), next_poll = t0, end = t0 + ROTATION_TIMEOUT_MS;
	int under_way = 0, done = 0;

	assert_non_null(j);
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "rotation_id")));
	json_decref(j);
	while (!done && opd_test_now_ms() < end) {
		for (int i = 0; i < N_AGENTS; i++)
			(void)ragent_poll(&ag[i], 1);
		if (opd_test_now_ms() >= next_poll) {
			json_t *p = progress_of(f, id);

			printf("rotation %s at %5llu ms: matched %ld pending %ld offered %ld "
			       "acknowledged %ld failed %ld unsupported %ld\n",
			       id, (unsigned long long)(opd_test_now_ms() - t0),
			       count(p, "matched"), count(p, "pending"), count(p, "offered"),
			       count(p, "acknowledged"), count(p, "failed"),
			       count(p, "unsupported"));
			assert_int_equal(count(p, "matched"), N_ROTATED);
			assert_int_equal(count(p, "failed"), 0);
			if (count(p, "acknowledged") > 0 && count(p, "acknowledged") < N_ROTATED)
				under_way++;
			done = count(p, "acknowledged") == N_ROTATED;
			json_decref(p);
			next_poll = opd_test_now_ms() + 250;
		}
	}
	assert_true(done);
	for (int i = 0; i < N_AGENTS; i++)
		assert_int_equal(ag[i].generation, i < N_ROTATED ? expect_generation : 0);
	printf("rotation %s: %d agents acknowledged in %llu ms\n", id, N_ROTATED,
	       (unsigned long long)(opd_test_now_ms() - t0));
	return under_way;
}

/* Every agent answers a heartbeat on its current connection. */
static void all_connected(struct ragent *ag)
{
	for (int i = 0; i < N_AGENTS; i++) {
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_heartbeat(&ag[i].ta, 3000);

		assert_non_null(s);
		opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	}
}

static void rotation_of_100_and_ca_rotation(void **state)
{
	struct fx *f = start("required", NULL);
	struct ragent *ag = calloc(N_AGENTS, sizeof *ag);
	json_t *ca, *j;
	char old_fp[65], bundle[320];

	(void)state;
	assert_non_null(ag);
	for (int i = 0; i < N_AGENTS; i++) {
		ragent_init(&ag[i], f, i < N_ROTATED ? "rotated" : "bystander", i);
		provision(&ag[i]);
		assert_int_equal(ragent_connect(&ag[i]), 0);
	}
	assert_true(rotate_all(f, ag, 1) > 0); /* progress seen between 0 and 100 % */
	all_connected(ag);

	/* CA rotation: a new CA, the old one trusted until retired. */
	ca = api_get(f, "/api/v1/ca");
	snprintf(old_fp, sizeof old_fp, "%s",
		 json_string_value(json_object_get(json_object_get(ca, "active"), "fingerprint")));
	json_decref(ca);
	j = api_post(f, "/api/v1/ca/rotate", "{}", 201);
	{
		/* The new CA's key, written by the daemon, is 0600; the answer holds no key. */
		const char *kf = json_string_value(json_object_get(j, "key_file"));
		struct stat st;
		char *text = json_dumps(j, 0);

		assert_non_null(kf);
		assert_int_equal(stat(kf, &st), 0);
		assert_int_equal(st.st_mode & 077, 0);
		assert_null(strstr(text, "PRIVATE KEY"));
		free(text);
	}
	json_decref(j);
	all_connected(ag); /* the overlap: nobody was dropped by the trust reload */
	snprintf(bundle, sizeof bundle, "%s/bundle-overlap.pem", E.dir);
	save_bundle(f, bundle);
	assert_int_equal(openssl_verify(bundle, ag[0].cert), 0); /* old-CA certificates still ok */
	assert_true(rotate_all(f, ag, 2) > 0);
	all_connected(ag);
	assert_int_equal(metric(f, "opampd_cert_offers_total"), 2 * N_ROTATED);
	assert_int_equal(metric(f, "opampd_cert_offer_sign_failures_total"), 0);
	/* The active CA changed; retire the old one: the bundle holds the new CA only. */
	ca = api_get(f, "/api/v1/ca");
	assert_string_not_equal(
	    json_string_value(json_object_get(json_object_get(ca, "active"), "fingerprint")),
	    old_fp);
	json_decref(ca);
	{
		char path[160];

		snprintf(path, sizeof path, "/api/v1/ca/%s/retire", old_fp);
		json_decref(api_post(f, path, "{}", 200));
	}
	snprintf(bundle, sizeof bundle, "%s/bundle-new.pem", E.dir);
	save_bundle(f, bundle);
	assert_int_equal(openssl_verify(bundle, ag[0].cert), 0);
	assert_int_not_equal(openssl_verify(bundle, ag[N_ROTATED].cert), 0);
	/* Agents on new certificates reconnect; old-CA certificates are refused now. */
	opd_test_pause_ms(300);
	for (int i = 0; i < N_ROTATED; i++) {
		ag[i].connected = false;
		assert_int_equal(ragent_connect(&ag[i]), 0);
	}
	{
		struct ragent *b = &ag[N_ROTATED]; /* a bystander still on its old-CA certificate */
		assert_int_not_equal(ragent_connect(b), 0);
	}
	for (int i = 0; i < N_AGENTS; i++)
		opd_ta_fini(&ag[i].ta);
	free(ag);
	stop(f);
}

/* ---- refusals in mTLS-required mode ---- */

static void refused_certificates(void **state)
{
	struct fx *f = start("required", NULL);
	struct ragent good, other, r;
	struct opd_tca_leaf expired = {.not_before_s = -7200, .not_after_s = -3600};
	struct opd_tca_leaf foreign = {0};
	char cert[320], key[320], path[160];
	json_t *list;
	uint64_t serial = 0;

	(void)state;
	ragent_init(&good, f, "good", 0);
	ragent_init(&other, f, "other", 0);
	/* The good agent gets a certificate the cluster issued (a rotation), to revoke later. */
	provision(&good);
	assert_int_equal(ragent_connect(&good), 0);
	provision(&other);
	assert_int_equal(ragent_connect(&other), 0);
	json_decref(
	    api_post(f, "/api/v1/rotations", "{\"selector\":{\"service.name\":\"good\"}}", 201));
	for (uint64_t end = opd_test_now_ms() + 15000;
	     good.generation < 1 && opd_test_now_ms() < end;)
		(void)ragent_poll(&good, 200);
	assert_int_equal(good.generation, 1);

	/* Expired (signed by the fleet CA): refused at the handshake. */
	ragent_init(&r, f, "expired", 0);
	expired.cn = r.ta.uid_hex;
	snprintf(cert, sizeof cert, "%s/expired.pem", E.dir);
	snprintf(key, sizeof key, "%s/expired.key", E.dir);
	assert_int_equal(opd_tca_issue(&E.fleet, &expired, cert, key), 0);
	ragent_use(&r, cert, key);
	assert_int_not_equal(ragent_connect(&r), 0);
	opd_ta_fini(&r.ta);
	/* Wrong CA: refused at the handshake. */
	ragent_init(&r, f, "foreign", 0);
	foreign.cn = r.ta.uid_hex;
	snprintf(cert, sizeof cert, "%s/foreign.pem", E.dir);
	snprintf(key, sizeof key, "%s/foreign.key", E.dir);
	assert_int_equal(opd_tca_issue(&E.foreign, &foreign, cert, key), 0);
	ragent_use(&r, cert, key);
	assert_int_not_equal(ragent_connect(&r), 0);
	opd_ta_fini(&r.ta);
	/* Another agent's certificate: the message is refused (close 1008). */
	ragent_init(&r, f, "thief", 0);
	ragent_use(&r, good.cert, good.key);
	assert_int_not_equal(ragent_connect(&r), 0);
	assert_int_equal(r.ta.close_code, 1008);
	opd_ta_fini(&r.ta);
	/* No certificate at all. */
	ragent_init(&r, f, "anonymous", 0);
	assert_int_not_equal(ragent_connect(&r), 0);
	opd_ta_fini(&r.ta);

	/* Revoke the good agent's issued certificate: its connection closes, it cannot return. */
	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", good.ta.uid_hex);
	list = api_get(f, path);
	serial = (uint64_t)json_integer_value(
	    json_object_get(json_array_get(json_object_get(list, "certificates"), 0), "serial"));
	json_decref(list);
	assert_true(serial > 0);
	snprintf(path, sizeof path, "/api/v1/certificates/%llu/revoke", (unsigned long long)serial);
	json_decref(api_post(f, path, "{\"reason\":\"keyCompromise\"}", 200));
	{
		Opamp__Proto__V1__ServerToAgent *s = NULL;
		for (uint64_t end = opd_test_now_ms() + 5000;
		     good.ta.close_code == -1 && opd_test_now_ms() < end;) {
			s = opd_ta_heartbeat(&good.ta, 500);
			if (s != NULL)
				opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
			else if (good.ta.close_code == -1)
				opd_test_pause_ms(100);
		}
		assert_int_equal(good.ta.close_code, 1008);
	}
	assert_int_not_equal(ragent_connect(&good), 0);
	assert_int_equal(metric(f, "opampd_agent_cert_revoked_drops_total"), 1);
	assert_true(metric(f, "opampd_agent_cert_revoked_refusals_total") >= 1);
	/* The other agent was not touched. */
	{
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_heartbeat(&other.ta, 3000);
		assert_non_null(s);
		opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	}
	opd_ta_fini(&good.ta);
	opd_ta_fini(&other.ta);
	stop(f);
}

/* ---- a cluster: agents on a follower, signed by the leader, progress from any node ---- */

static json_t *node_get(struct opd_cluster *c, int i, const char *path)
{
	struct opd_client_resp r;
	json_t *j = NULL;

	assert_int_equal(opd_cluster_request(c, i, "GET", path, NULL, NULL, 5000, &r, &j), 200);
	opd_client_resp_free(&r);
	return j;
}

static void cluster_rotation_on_follower(void **state)
{
	const char *extra[] = {"--opamp-tls-cert",
			       E.server_cert,
			       "--opamp-tls-key",
			       E.server_key,
			       "--opamp-mtls",
			       "optional",
			       "--ca-cert",
			       E.fleet_cert,
			       "--ca-key",
			       E.fleet_key,
			       NULL};
	struct opd_cluster c;
	struct fx view = {0};
	struct ragent ag[6];
	int leader, follower, other;
	char path[160], id[128];
	json_t *j, *p = NULL;
	uint64_t end;
	bool done = false;

	(void)state;
	assert_int_equal(opd_cluster_start(&c, 3, extra), 0);
	leader = opd_cluster_wait_leader(&c, 15000);
	assert_true(leader >= 0);
	follower = opd_cluster_follower(&c, leader, 0);
	other = opd_cluster_follower(&c, leader, 1);
	view.d = c.nodes[follower].d;
	/* Five agents that take offers, one that cannot (no AcceptsOpAMPConnectionSettings). */
	for (int i = 0; i < 6; i++) {
		ragent_init(&ag[i], &view, "clustered", i);
		if (i == 5)
			ag[i].ta.capabilities &= ~0x100u;
		provision(&ag[i]);
		assert_int_equal(ragent_connect(&ag[i]), 0);
	}
	/* Started on the follower (forwarded to the leader). */
	{
		struct opd_client_resp r;
		assert_int_equal(
		    opd_cluster_request(&c, follower, "POST", "/api/v1/rotations",
					"{\"selector\":{\"service.name\":\"clustered\"}}", NULL,
					5000, &r, &j),
		    201);
		opd_client_resp_free(&r);
	}
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "rotation_id")));
	json_decref(j);
	snprintf(path, sizeof path, "/api/v1/rotations/%s", id);
	for (end = opd_test_now_ms() + 30000; !done && opd_test_now_ms() < end;) {
		for (int i = 0; i < 6; i++)
			(void)ragent_poll(&ag[i], 20);
		/* Progress asked of the third node, which holds none of the agents. */
		j = node_get(&c, other, path);
		json_decref(p);
		p = json_incref(json_object_get(j, "progress"));
		json_decref(j);
		done = json_is_true(json_object_get(p, "complete"));
	}
	assert_true(done);
	assert_int_equal(count(p, "matched"), 6);
	assert_int_equal(count(p, "acknowledged"), 5);
	assert_int_equal(count(p, "unsupported"), 1);
	json_decref(p);
	/* Issued once, by the leader: every node lists the same certificate for agent 0. */
	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", ag[0].ta.uid_hex);
	{
		json_t *a = node_get(&c, leader, path), *b = node_get(&c, other, path);
		json_t *ca = json_object_get(a, "certificates"),
		       *cb = json_object_get(b, "certificates");

		assert_int_equal(json_array_size(ca), 1);
		assert_int_equal(json_array_size(cb), 1);
		assert_string_equal(
		    json_string_value(json_object_get(json_array_get(ca, 0), "fingerprint")),
		    json_string_value(json_object_get(json_array_get(cb, 0), "fingerprint")));
		assert_string_equal(
		    json_string_value(json_object_get(json_array_get(ca, 0), "reason")),
		    "rotation");
		json_decref(a);
		json_decref(b);
	}
	for (int i = 0; i < 6; i++)
		opd_ta_fini(&ag[i].ta);
	assert_int_equal(opd_cluster_stop(&c), 0);
}

/* ---- the agent-initiated CSR flow over TLS, then mTLS with the new certificate ---- */

static void csr_flow_then_mtls(void **state)
{
	struct fx *f = start("optional", NULL);
	struct ragent r;
	Opamp__Proto__V1__ConnectionSettingsRequest req =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest oreq =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest creq = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;
	const Opamp__Proto__V1__TLSCertificate *tc = NULL;
	Opamp__Proto__V1__ServerToAgent *s = NULL;
	struct opd_ta_msg b;
	char cert[320], key[320], bundle[320];
	char *csr;

	(void)state;
	ragent_init(&r, f, "csr-over-tls", 0);
	assert_int_equal(ragent_connect(&r), 0);
	snprintf(key, sizeof key, "%s/%s-own.key", E.dir, r.ta.uid_hex);
	csr = opd_tca_csr(r.ta.uid_hex, 0, key);
	assert_non_null(csr);
	opd_ta_msg_init(&b, &r.ta);
	creq.csr.data = (uint8_t *)csr;
	creq.csr.len = strlen(csr);
	oreq.certificate_request = &creq;
	req.opamp = &oreq;
	b.msg.connection_settings_request = &req;
	assert_int_equal(opd_ta_send(&r.ta, &b.msg), 0);
	for (uint64_t end = opd_test_now_ms() + 8000; tc == NULL && opd_test_now_ms() < end;) {
		if (s != NULL)
			opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
		s = opd_ta_recv(&r.ta, 500);
		tc = offered_cert(s);
	}
	assert_non_null(tc);
	assert_int_equal(tc->private_key.len, 0); /* the agent keeps its own key */
	snprintf(cert, sizeof cert, "%s/%s-csr.pem", E.dir, r.ta.uid_hex);
	write_file(cert, tc->cert.data, tc->cert.len, 0644);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	snprintf(bundle, sizeof bundle, "%s/bundle-csr.pem", E.dir);
	save_bundle(f, bundle);
	assert_int_equal(openssl_verify(bundle, cert), 0);
	/* Reconnect with mTLS, the new certificate and the agent's own key. */
	ragent_use(&r, cert, key);
	assert_int_equal(ragent_connect(&r), 0);
	expect_in_use(f, r.ta.uid_hex);
	free(csr);
	opd_ta_fini(&r.ta);
	stop(f);
}

/* A plain-HTTP agent gets its offer in the reply to a poll, and uses it on the next one. */
static void http_agent_offer_on_poll(void **state)
{
	static const char *const more[] = {"--offer-agent-certs", "on", NULL};
	struct fx *f = start("optional", more);
	struct ragent r;
	struct opd_ta_msg b;
	const Opamp__Proto__V1__TLSCertificate *tc = NULL;
	Opamp__Proto__V1__ServerToAgent *s = NULL;
	char cert[320], key[320];

	(void)state;
	ragent_init(&r, f, "http-enrolled", 0);
	r.ta.ws = false;
	opd_ta_msg_full(&b, &r.ta, r.name);
	assert_int_equal(opd_ta_send(&r.ta, &b.msg), 0);
	s = opd_ta_recv(&r.ta, 2000);
	assert_non_null(s);
	for (uint64_t end = opd_test_now_ms() + 15000; tc == NULL && opd_test_now_ms() < end;) {
		opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
		opd_test_pause_ms(500); /* the poll interval */
		opd_ta_msg_init(&b, &r.ta);
		assert_int_equal(opd_ta_send(&r.ta, &b.msg), 0);
		s = opd_ta_recv(&r.ta, 2000);
		assert_non_null(s);
		tc = offered_cert(s);
	}
	assert_non_null(tc);
	assert_true(tc->private_key.len > 0);
	snprintf(cert, sizeof cert, "%s/%s-http.pem", E.dir, r.ta.uid_hex);
	snprintf(key, sizeof key, "%s/%s-http.key", E.dir, r.ta.uid_hex);
	write_file(cert, tc->cert.data, tc->cert.len, 0644);
	write_file(key, tc->private_key.data, tc->private_key.len, 0600);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	/* The next poll presents the new certificate: applied, in use. */
	ragent_use(&r, cert, key);
	opd_ta_msg_init(&b, &r.ta);
	assert_int_equal(opd_ta_send(&r.ta, &b.msg), 0);
	s = opd_ta_recv(&r.ta, 2000);
	assert_non_null(s);
	assert_null(offered_cert(s)); /* not offered again */
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	expect_in_use(f, r.ta.uid_hex);
	opd_ta_fini(&r.ta);
	stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(csr_flow_then_mtls),
	    cmocka_unit_test(server_generated_then_mtls),
	    cmocka_unit_test(http_agent_offer_on_poll),
	    cmocka_unit_test(renewal_before_expiry),
	    cmocka_unit_test(refused_certificates),
	    cmocka_unit_test(rotation_of_100_and_ca_rotation),
	    cmocka_unit_test(cluster_rotation_on_follower),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
