/*
 * End-to-end transport security against the real opampd binary, with a test
 * CA and certificates generated here (tests/lib/test_ca.c): WebSocket and
 * HTTP agents over TLS, bearer tokens refused before the upgrade, mTLS in
 * required and optional modes (no certificate, expired, another CA, another
 * agent's certificate, the right one), certificate reload by SIGHUP and by
 * the admin API seen from the client by its fingerprint, the admin API over
 * TLS (and the peer client's --peer-ca path), and a benchmark-style print of
 * the memory an idle TLS agent costs the daemon.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "daemon.h"
#include "err.h"
#include "httpc.h"
#include "test_ca.h"
#include "tls.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)
#define IDLE_AGENTS 500

static const char token1[] = "agent-token-0123456789abcdef";
static const char token2[] = "second.token_with~chars+/=";

struct env {
	char dir[200];
	char ca[300];
	char srv[300], srv_key[300];     /* what the daemon serves (replaced to reload) */
	char srv_a[300], srv_a_key[300]; /* ECDSA */
	char srv_b[300], srv_b_key[300]; /* RSA */
	char admin[300], admin_key[300]; /* the admin listener's certificate */
	char fp_a[65], fp_b[65];
	uint8_t uid1[16], uid2[16];
	char cli1[300], cli1_key[300];       /* CN = uid1 (hex) */
	char cli2[300], cli2_key[300];       /* URI SAN urn:opampd:agent:<uid2 as UUID> */
	char expired[300], expired_key[300]; /* uid1, expired */
	char foreign[300], foreign_key[300]; /* uid1, from another CA */
	char tokens[300];
};

static struct env E;

static void path(char *out, const char *name)
{
	snprintf(out, 300, "%s/%s", E.dir, name);
}

static int issue(struct opd_tca *ca, struct opd_tca_leaf leaf, char *cert, char *key,
		 const char *name)
{
	char n[64];

	snprintf(n, sizeof n, "%s.pem", name);
	path(cert, n);
	snprintf(n, sizeof n, "%s.key", name);
	path(key, n);
	return opd_tca_issue(ca, &leaf, cert, key);
}

static int copy_file(const char *from, const char *to)
{
	char tmp[320], buf[8192];
	FILE *in = fopen(from, "rb"), *out;
	size_t n;
	int rc = 0;

	snprintf(tmp, sizeof tmp, "%s.tmp", to);
	out = fopen(tmp, "wb");
	if (in == NULL || out == NULL) {
		if (in)
			fclose(in);
		if (out)
			fclose(out);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			rc = -1;
	fclose(in);
	if (fclose(out) != 0)
		rc = -1;
	/* Atomic: the daemon never reads half a file. */
	return rc == 0 ? rename(tmp, to) : -1;
}

/* Serve certificate A or B from the next reload on. */
static void serve_cert(const char *cert, const char *key)
{
	assert_int_equal(copy_file(key, E.srv_key), 0);
	assert_int_equal(copy_file(cert, E.srv), 0);
}

static int group_setup(void **state)
{
	struct opd_tca ca, other;
	char cn1[33], uri2[80], u2[37], hex2[33];
	FILE *f;

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (opd_tca_tmpdir(E.dir, sizeof E.dir) != 0)
		return -1;
	if (opd_tca_init(&ca, "opampd e2e CA", OPD_TCA_EC) != 0 ||
	    opd_tca_init(&other, "an unrelated CA", OPD_TCA_EC) != 0)
		return -1;
	path(E.ca, "ca.pem");
	path(E.srv, "srv.pem");
	path(E.srv_key, "srv.key");
	path(E.tokens, "tokens");
	if (RAND_bytes(E.uid1, 16) != 1 || RAND_bytes(E.uid2, 16) != 1)
		return -1;
	opd_ta_hex(E.uid1, 16, cn1);
	opd_ta_hex(E.uid2, 16, hex2);
	snprintf(u2, sizeof u2, "%.8s-%.4s-%.4s-%.4s-%.12s", hex2, hex2 + 8, hex2 + 12, hex2 + 16,
		 hex2 + 20);
	snprintf(uri2, sizeof uri2, "%s%s", OPD_TLS_AGENT_URI_PREFIX, u2);
	if (opd_tca_write_ca(&ca, E.ca) != 0 ||
	    issue(&ca, (struct opd_tca_leaf){.cn = "opampd", .server = true}, E.srv_a, E.srv_a_key,
		  "srv-a") != 0 ||
	    issue(&ca, (struct opd_tca_leaf){.cn = "opampd", .server = true, .key = OPD_TCA_RSA},
		  E.srv_b, E.srv_b_key, "srv-b") != 0 ||
	    issue(&ca, (struct opd_tca_leaf){.cn = "opampd-admin", .server = true}, E.admin,
		  E.admin_key, "admin") != 0 ||
	    issue(&ca, (struct opd_tca_leaf){.cn = cn1}, E.cli1, E.cli1_key, "cli1") != 0 ||
	    issue(&ca, (struct opd_tca_leaf){.cn = "collector", .uri_san = uri2}, E.cli2,
		  E.cli2_key, "cli2") != 0 ||
	    issue(
		&ca,
		(struct opd_tca_leaf){.cn = cn1, .not_before_s = -3 * 86400, .not_after_s = -86400},
		E.expired, E.expired_key, "expired") != 0 ||
	    issue(&other, (struct opd_tca_leaf){.cn = cn1}, E.foreign, E.foreign_key, "foreign") !=
		0)
		return -1;
	opd_tca_fini(&ca);
	opd_tca_fini(&other);
	if (opd_tca_fingerprint(E.srv_a, E.fp_a) != 0 || opd_tca_fingerprint(E.srv_b, E.fp_b) != 0)
		return -1;
	f = fopen(E.tokens, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "# agents of the e2e fleet\n%s\n\n%s\n", token1, token2);
	fclose(f);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	opd_tca_rmdir(E.dir);
	curl_global_cleanup();
	return 0;
}

/* ---- fixture: one daemon per test, TLS on both listeners ---- */

struct fx {
	struct opd_daemon d;
};

static struct fx *start(const char *const *more)
{
	const char *args[40] = {"--opamp-tls-cert",     E.srv,   "--opamp-tls-key", E.srv_key,
				"--admin-tls-cert",     E.admin, "--admin-tls-key", E.admin_key,
				"--heartbeat-interval", "5"};
	size_t n = 10;
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	serve_cert(E.srv_a, E.srv_a_key);
	for (size_t i = 0; more != NULL && more[i] != NULL && n < 39; i++)
		args[n++] = more[i];
	args[n] = NULL;
	if (opd_daemon_start_single(&f->d, args) != 0)
		fail_msg("the daemon did not start");
	return f;
}

static void stop(struct fx *f)
{
	assert_int_equal(opd_daemon_stop(&f->d), 0);
	free(f);
}

static void agent_init(struct opd_ta *a, const struct fx *f, const uint8_t *uid)
{
	opd_ta_init(a, f->d.opamp_port, OPD_TA_CAPS);
	a->tls = true;
	a->tls_ca_file = E.ca;
	if (uid != NULL) {
		memcpy(a->uid, uid, 16);
		opd_ta_hex(a->uid, 16, a->uid_hex);
	}
}

static void agent_cert(struct opd_ta *a, const char *cert, const char *key)
{
	a->tls_cert_file = cert;
	a->tls_key_file = key;
}

/* The first full report and its reply, which must be for this agent. */
static int report(struct opd_ta *a)
{
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;
	int ok;

	opd_ta_msg_full(&b, a, "tls-agent");
	r = opd_ta_exchange(a, &b.msg, REPLY_MS);
	if (r == NULL)
		return -1;
	ok = r->error_response == NULL && r->instance_uid.len == 16 &&
	     memcmp(r->instance_uid.data, a->uid, 16) == 0;
	S2A_FREE(r);
	return ok ? 0 : -1;
}

/* ---- the admin API over https (libcurl, verifying against the test CA) ---- */

struct body {
	char *p;
	size_t n;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *data)
{
	struct body *b = data;
	size_t n = sz * nm;

	if (b->n + n > (1u << 20))
		return 0;
	b->p = realloc(b->p, b->n + n + 1);
	assert_non_null(b->p);
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* method path over https with the admin token; the status (-1 on failure), the body as JSON. */
static long api(const struct fx *f, const char *method, const char *p, json_t **json, char **text)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct body b = {0};
	char url[256], auth[200], err[CURL_ERROR_SIZE] = "";
	long status = -1;

	assert_non_null(c);
	snprintf(url, sizeof url, "https://127.0.0.1:%d%s", f->d.admin_port, p);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", f->d.token);
	h = curl_slist_append(h, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, E.ca);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		fprintf(stderr, "https %s %s: %s\n", method, url, err);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (json != NULL)
		*json = b.p != NULL ? json_loads(b.p, 0, NULL) : NULL;
	if (text != NULL)
		*text = b.p;
	else
		free(b.p);
	return status;
}

/* An agent the daemon knows and reports connected (or as last seen), fetched over https. */
static void expect_agent(const struct fx *f, const char *uid_hex, const char *transport)
{
	char p[128];
	json_t *j = NULL;
	uint64_t deadline = opd_test_now_ms() + 5000;

	snprintf(p, sizeof p, "/api/v1/agents/%s", uid_hex);
	for (;;) {
		long st = api(f, "GET", p, &j, NULL);
		const char *t = json_string_value(json_object_get(j, "transport"));

		if (st == 200 && t != NULL && strcmp(t, transport) == 0)
			break;
		json_decref(j);
		j = NULL;
		if (opd_test_now_ms() > deadline)
			fail_msg("agent %s not known over %s (status %ld)", uid_hex, transport, st);
		opd_test_pause_ms(50);
	}
	json_decref(j);
}

/* The value of one counter in /metrics. */
static long long metric(const struct fx *f, const char *name)
{
	char *text = NULL, *p, want[128];
	long long v = -1;

	assert_int_equal(api(f, "GET", "/metrics", NULL, &text), 200);
	snprintf(want, sizeof want, "\n%s ", name);
	p = text != NULL ? strstr(text, want) : NULL;
	if (p != NULL)
		v = strtoll(p + strlen(want), NULL, 10);
	free(text);
	return v;
}

/* The daemon's log says it (bounded wait: the line may come a moment after the client's error). */
static void expect_log(const struct fx *f, const char *needle)
{
	uint64_t deadline = opd_test_now_ms() + 3000;
	static char buf[1 << 20];

	for (;;) {
		FILE *lf = fopen(f->d.log_path, "r");
		size_t n = lf != NULL ? fread(buf, 1, sizeof buf - 1, lf) : 0;

		if (lf != NULL)
			fclose(lf);
		buf[n] = '\0';
		if (strstr(buf, needle) != NULL)
			return;
		if (opd_test_now_ms() > deadline) {
			opd_daemon_dump_log(&f->d);
			fail_msg("the daemon log does not say \"%s\"", needle);
		}
		opd_test_pause_ms(20);
	}
}

/* ---- tests ---- */

static void agents_over_tls_with_tokens(void **state)
{
	static const char *const more[] = {"--agent-token-file", E.tokens, NULL};
	struct fx *f = start(more);
	struct opd_ta ws, http, bad;
	Opamp__Proto__V1__ServerToAgent *r;

	(void)state;
	/* WebSocket over TLS 1.3 with a token: the server certificate is the one configured. */
	agent_init(&ws, f, NULL);
	ws.bearer_token = token1;
	assert_int_equal(opd_ta_ws_connect(&ws), 0);
	assert_string_equal(ws.server_fingerprint, E.fp_a);
	assert_string_equal(ws.tls_version, "TLSv1.3");
	assert_int_equal(report(&ws), 0);
	r = opd_ta_heartbeat(&ws, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);

	/* Plain HTTP POSTs over TLS, with the other token (and gzip both ways). */
	agent_init(&http, f, NULL);
	http.bearer_token = token2;
	http.gzip_request = http.accept_gzip = true;
	assert_int_equal(report(&http), 0);
	assert_int_equal(http.last_status, 200);
	assert_string_equal(http.last_content_encoding, "gzip");
	expect_agent(f, ws.uid_hex, "websocket");
	expect_agent(f, http.uid_hex, "http");

	/* A wrong token, or none, is refused with 401 before the upgrade and on a POST. */
	agent_init(&bad, f, NULL);
	bad.bearer_token = "agent-token-0123456789abcdeX";
	assert_int_equal(opd_ta_ws_connect(&bad), -1);
	assert_int_equal(bad.last_status, 401);
	bad.bearer_token = NULL;
	assert_int_equal(opd_ta_ws_connect(&bad), -1);
	assert_int_equal(bad.last_status, 401);
	bad.bearer_token = token1 + 1;
	bad.ws = false;
	assert_int_equal(report(&bad), -1);
	assert_int_equal(bad.last_status, 401);
	opd_ta_fini(&bad);
	assert_true(metric(f, "opampd_agent_auth_failures_total") >= 3);

	/* A client speaking plain TCP to the TLS port gets no upgrade. */
	opd_ta_init(&bad, f->d.opamp_port, OPD_TA_CAPS);
	bad.bearer_token = token1;
	assert_int_equal(opd_ta_ws_connect(&bad), -1);
	opd_ta_fini(&bad);

	/* The WebSocket agent lived through all that. */
	r = opd_ta_heartbeat(&ws, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);
	opd_ta_fini(&ws);
	opd_ta_fini(&http);
	stop(f);
}

static char *new_connection_fingerprint(const struct fx *f)
{
	static char fp[65];
	struct opd_ta a;

	agent_init(&a, f, NULL);
	fp[0] = '\0';
	if (opd_ta_ws_connect(&a) == 0)
		snprintf(fp, sizeof fp, "%s", a.server_fingerprint);
	opd_ta_fini(&a);
	return fp;
}

static void reload_by_sighup_and_api(void **state)
{
	struct fx *f = start(NULL);
	struct opd_ta old;
	Opamp__Proto__V1__ServerToAgent *r;
	uint64_t deadline;
	json_t *j = NULL;
	const char *fp;

	(void)state;
	agent_init(&old, f, NULL);
	assert_int_equal(opd_ta_ws_connect(&old), 0);
	assert_string_equal(old.server_fingerprint, E.fp_a);
	assert_int_equal(report(&old), 0);

	/* SIGHUP: new connections get certificate B (RSA); the open one keeps working. */
	serve_cert(E.srv_b, E.srv_b_key);
	assert_int_equal(kill(f->d.pid, SIGHUP), 0);
	deadline = opd_test_now_ms() + 5000;
	while (strcmp(fp = new_connection_fingerprint(f), E.fp_b) != 0) {
		if (opd_test_now_ms() > deadline) {
			opd_daemon_dump_log(&f->d);
			fail_msg("still serving %s after SIGHUP, want %s", fp, E.fp_b);
		}
		opd_test_pause_ms(50);
	}
	expect_log(f, "reloaded TLS certificate listener=opamp");
	r = opd_ta_heartbeat(&old, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);

	/* The admin call: synchronous, answers with what is served now. */
	serve_cert(E.srv_a, E.srv_a_key);
	assert_int_equal(api(f, "POST", "/api/v1/tls/reload", &j, NULL), 200);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "opamp"), "sha256")), E.fp_a);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "opamp"), "key_type")), "EC");
	assert_non_null(json_object_get(j, "admin"));
	json_decref(j);
	assert_string_equal(new_connection_fingerprint(f), E.fp_a);
	assert_int_equal(api(f, "GET", "/api/v1/tls/reload", NULL, NULL), 405);

	/* Broken files: refused, nothing changes. */
	{
		FILE *bad = fopen(E.srv, "w");

		assert_non_null(bad);
		fputs("-----BEGIN CERTIFICATE-----\nnot base64\n", bad);
		fclose(bad);
	}
	assert_int_equal(api(f, "POST", "/api/v1/tls/reload", &j, NULL), 500);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
			    "tls_reload_failed");
	json_decref(j);
	assert_string_equal(new_connection_fingerprint(f), E.fp_a);
	assert_int_equal(kill(f->d.pid, SIGHUP), 0);
	expect_log(f, "TLS reload failed");
	assert_string_equal(new_connection_fingerprint(f), E.fp_a);

	r = opd_ta_heartbeat(&old, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);
	opd_ta_fini(&old);
	stop(f);
}

/* Read one message; true when the server closed the WebSocket with code instead. */
static bool closed_with(struct opd_ta *a, int code)
{
	Opamp__Proto__V1__ServerToAgent *r = opd_ta_recv(a, REPLY_MS);

	if (r != NULL)
		S2A_FREE(r);
	return r == NULL && a->close_code == code;
}

/* agent (uid1) presents cert/key; it must not get in. */
static void refused_at_handshake(const struct fx *f, const char *cert, const char *key)
{
	struct opd_ta a;

	agent_init(&a, f, E.uid1);
	if (cert != NULL)
		agent_cert(&a, cert, key);
	assert_int_equal(opd_ta_ws_connect(&a), -1);
	assert_true(a.tls_error[0] != '\0');
	a.ws = false;
	assert_int_equal(report(&a), -1); /* over HTTP neither */
	assert_int_not_equal(a.last_status, 200);
	opd_ta_fini(&a);
}

static void mtls_required(void **state)
{
	static const char *const more[] = {"--opamp-mtls", "required", "--opamp-client-ca", E.ca,
					   NULL};
	struct fx *f = start(more);
	struct opd_ta a1, a2, thief;

	(void)state;
	refused_at_handshake(f, NULL, NULL);
	expect_log(f, "peer did not return a certificate");
	refused_at_handshake(f, E.expired, E.expired_key);
	expect_log(f, "certificate has expired");
	refused_at_handshake(f, E.foreign, E.foreign_key);
	expect_log(f, "unable to get local issuer certificate");
	assert_true(metric(f, "opampd_tls_failures_total") >= 6);

	/* The right certificates: uid in the CN (hex), uid in a URI SAN (UUID form). */
	agent_init(&a1, f, E.uid1);
	agent_cert(&a1, E.cli1, E.cli1_key);
	assert_int_equal(opd_ta_ws_connect(&a1), 0);
	assert_int_equal(report(&a1), 0);
	agent_init(&a2, f, E.uid2);
	agent_cert(&a2, E.cli2, E.cli2_key);
	assert_int_equal(report(&a2), 0);
	expect_agent(f, a1.uid_hex, "websocket");
	expect_agent(f, a2.uid_hex, "http");

	/* Agent 2's certificate used by another agent (uid1): refused, on both transports. */
	agent_init(&thief, f, E.uid1);
	agent_cert(&thief, E.cli2, E.cli2_key);
	assert_int_equal(opd_ta_ws_connect(&thief), 0); /* a valid certificate... */
	{
		struct opd_ta_msg b;

		opd_ta_msg_full(&b, &thief, "thief");
		assert_int_equal(opd_ta_send(&thief, &b.msg), 0);
	}
	assert_true(closed_with(&thief, 1008)); /* ...that does not name this uid */
	opd_ta_fini(&thief);
	agent_init(&thief, f, E.uid1);
	agent_cert(&thief, E.cli2, E.cli2_key);
	assert_int_equal(report(&thief), -1);
	assert_int_equal(thief.last_status, 403);
	opd_ta_fini(&thief);
	expect_log(f, "instance_uid is not the one the client certificate names");
	assert_true(metric(f, "opampd_agent_cert_mismatches_total") >= 2);

	/* Agent 1 is unaffected by the attempts made in its name. */
	{
		Opamp__Proto__V1__ServerToAgent *r = opd_ta_heartbeat(&a1, REPLY_MS);

		assert_non_null(r);
		S2A_FREE(r);
	}
	opd_ta_fini(&a1);
	opd_ta_fini(&a2);
	stop(f);
}

static void mtls_optional(void **state)
{
	static const char *const more[] = {"--opamp-mtls", "optional", "--opamp-client-ca", E.ca,
					   NULL};
	struct fx *f = start(more);
	struct opd_ta a, thief;

	(void)state;
	/* Without a certificate: in, bound to nothing. */
	agent_init(&a, f, NULL);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(report(&a), 0);
	opd_ta_fini(&a);
	/* With its own: in. */
	agent_init(&a, f, E.uid1);
	agent_cert(&a, E.cli1, E.cli1_key);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(report(&a), 0);
	/* With a bad one: refused, even though certificates are optional. */
	refused_at_handshake(f, E.expired, E.expired_key);
	refused_at_handshake(f, E.foreign, E.foreign_key);
	/* With another agent's: refused. */
	agent_init(&thief, f, E.uid2);
	agent_cert(&thief, E.cli1, E.cli1_key);
	assert_int_equal(opd_ta_ws_connect(&thief), 0);
	{
		struct opd_ta_msg b;

		opd_ta_msg_full(&b, &thief, "thief");
		assert_int_equal(opd_ta_send(&thief, &b.msg), 0);
	}
	assert_true(closed_with(&thief, 1008));
	opd_ta_fini(&thief);
	opd_ta_fini(&a);
	stop(f);
}

static void bad_options_refused(void **state)
{
	static const char *const cases[][5] = {
	    {"--opamp-tls-cert", "/nonexistent/cert.pem", "--opamp-tls-key", "/nonexistent/k",
	     NULL},
	    {"--opamp-mtls", "required", NULL},
	    {"--opamp-client-ca", "ca.pem", NULL},
	    {"--opamp-tls-cert", "x.pem", NULL},
	    {"--agent-token-file", "/nonexistent/tokens", NULL},
	};
	struct opd_daemon d;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		fprintf(stderr, "expecting a refusal:\n");
		assert_int_equal(opd_daemon_start_single(&d, cases[i]), -1);
	}
	{
		static const char *const bad_mode[] = {"--opamp-mtls", "maybe", NULL};
		assert_int_equal(opd_daemon_start_single(&d, bad_mode), -1);
	}
}

/*
 * A client that starts a handshake and stalls is on the request-header clock
 * (10 s by default), as a silent plain client is: closed, not kept forever.
 */
static void stalled_handshake_times_out(void **state)
{
	static const uint8_t partial[] = {0x16, 0x03, 0x01, 0x00}; /* a record header, cut */
	struct fx *f = start(NULL);
	uint64_t t0 = opd_test_now_ms(), waited;
	int fd = opd_client_connect(f->d.opamp_port);
	uint8_t b[64];
	long r;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(opd_client_send_all(fd, partial, sizeof partial, t0 + 1000), 0);
	r = opd_client_recv(fd, b, sizeof b, t0 + 20000);
	waited = opd_test_now_ms() - t0;
	close(fd);
	printf("stalled TLS handshake closed after %llu ms\n", (unsigned long long)waited);
	assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
	assert_true(waited >= 9000 && waited < 15000);
	stop(f);
}

/* ---- peers: opampd's own HTTP client against an https admin URL ---- */

struct peer_call {
	int status;
	bool done;
};

static void peer_done(void *data, int status, const char *ct, const char *ra, const uint8_t *b,
		      size_t n)
{
	struct peer_call *c = data;

	(void)ct;
	(void)ra;
	(void)b;
	(void)n;
	c->status = status;
	c->done = true;
}

static int peer_get(const struct fx *f, const char *ca)
{
	uv_loop_t loop;
	struct opd_httpc *h;
	struct peer_call call = {0};
	char url[128];

	snprintf(url, sizeof url, "https://127.0.0.1:%d/healthz", f->d.admin_port);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(opd_httpc_init(&h, &loop), 0);
	opd_httpc_set_ca_file(h, ca);
	assert_int_equal(
	    opd_httpc_request(h, "GET", url, NULL, NULL, 0, 5000, 4096, peer_done, &call), 0);
	while (!call.done)
		uv_run(&loop, UV_RUN_ONCE); /* the request's own 5 s timeout bounds this */
	opd_httpc_close(h, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	return call.status;
}

static void peers_verify_https_admin(void **state)
{
	struct fx *f = start(NULL);

	(void)state;
	/* libcurl verifies by default: the system bundle does not know the test CA. */
	assert_int_equal(peer_get(f, NULL), OPD_EIO);
	/* --peer-ca hands it the cluster's CA. */
	assert_int_equal(peer_get(f, E.ca), 200);
	stop(f);
}

/* ---- benchmark-style print: what an idle TLS agent costs the daemon ---- */

static long rss_kib(pid_t pid)
{
	char p[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
	f = fopen(p, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Open n idle WebSocket agents (each reports once) and return the daemon's RSS growth in KiB. */
static long idle_agents_kib(struct fx *f, struct opd_ta *agents, int n, bool tls)
{
	long before, after;

	/* Warm up the allocator and the first-connection paths with a few agents first. */
	for (int i = 0; i < 5; i++) {
		struct opd_ta a;

		agent_init(&a, f, NULL);
		a.tls = tls;
		assert_int_equal(opd_ta_ws_connect(&a), 0);
		assert_int_equal(report(&a), 0);
		opd_ta_fini(&a);
	}
	opd_test_pause_ms(300);
	before = rss_kib(f->d.pid);
	for (int i = 0; i < n; i++) {
		agent_init(&agents[i], f, NULL);
		agents[i].tls = tls;
		if (opd_ta_ws_connect(&agents[i]) != 0 || report(&agents[i]) != 0)
			fail_msg("agent %d of %d did not connect", i, n);
	}
	opd_test_pause_ms(
	    300); /* let the daemon settle (nothing to wait for: a pause, not a sync) */
	after = rss_kib(f->d.pid);
	return after - before;
}

static void idle_tls_agent_memory(void **state)
{
	static struct opd_ta agents[IDLE_AGENTS];
	struct fx *f = start(NULL);
	long tls_kib, plain_kib;
	struct opd_daemon plain;
	struct fx pf;

	(void)state;
	tls_kib = idle_agents_kib(f, agents, IDLE_AGENTS, true);
	for (int i = 0; i < IDLE_AGENTS; i++)
		opd_ta_fini(&agents[i]);
	stop(f);

	/* The same on a plain daemon, for the TLS share of it. */
	assert_int_equal(opd_daemon_start_single(&plain, NULL), 0);
	pf.d = plain;
	plain_kib = idle_agents_kib(&pf, agents, IDLE_AGENTS, false);
	for (int i = 0; i < IDLE_AGENTS; i++)
		opd_ta_fini(&agents[i]);
	assert_int_equal(opd_daemon_stop(&pf.d), 0);

	printf("idle agents: %d over TLS 1.3: daemon RSS +%ld KiB = %.1f KiB per agent; "
	       "over plain TCP: +%ld KiB = %.1f KiB per agent; TLS share %.1f KiB per agent\n",
	       IDLE_AGENTS, tls_kib, (double)tls_kib / IDLE_AGENTS, plain_kib,
	       (double)plain_kib / IDLE_AGENTS, (double)(tls_kib - plain_kib) / IDLE_AGENTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(agents_over_tls_with_tokens),
	    cmocka_unit_test(reload_by_sighup_and_api),
	    cmocka_unit_test(mtls_required),
	    cmocka_unit_test(mtls_optional),
	    cmocka_unit_test(bad_options_refused),
	    cmocka_unit_test(stalled_handshake_times_out),
	    cmocka_unit_test(peers_verify_https_admin),
	    cmocka_unit_test(idle_tls_agent_memory),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
