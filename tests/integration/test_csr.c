/*
 * The agent-initiated CSR flow against the real daemon: a test agent makes a
 * key and a CSR naming its instance_uid, sends it in a
 * ConnectionSettingsRequest (WebSocket, then plain HTTP, whose poll waits for
 * the answer), receives the certificate, and `openssl verify` accepts it
 * against the fleet CA bundle the admin API serves; the API lists it under
 * the agent. A CSR with a 1024-bit RSA key is refused with BadRequest and a
 * clear message, and nothing is issued.
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
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_ACCEPTS_CSR 0x40u  /* ServerCapabilities_AcceptsConnectionSettingsRequest */
#define TA_REQUESTS_CSR 0x200u /* AgentCapabilities_RequestsOpAMPConnectionSettings */

struct fx {
	struct opd_daemon d;
	char dir[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (f == NULL || opd_tca_tmpdir(f->dir, sizeof f->dir) != 0)
		return -1;
	if (opd_daemon_start(&f->d, NULL) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	opd_daemon_stop(&f->d);
	opd_tca_rmdir(f->dir);
	free(f);
	return 0;
}

static int send_csr(struct opd_ta *a, const char *csr)
{
	struct opd_ta_msg b;
	Opamp__Proto__V1__ConnectionSettingsRequest r =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest o =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest c = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;

	opd_ta_msg_full(&b, a, "csr-agent");
	c.csr.data = (uint8_t *)csr;
	c.csr.len = strlen(csr);
	o.certificate_request = &c;
	r.opamp = &o;
	b.msg.connection_settings_request = &r;
	return opd_ta_send(a, &b.msg);
}

/* The next message with a certificate or an error within 8 s (WebSocket), or NULL. */
static Opamp__Proto__V1__ServerToAgent *wait_answer(struct opd_ta *a)
{
	uint64_t end = opd_test_now_ms() + 8000;

	while (opd_test_now_ms() < end) {
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_recv(a, 1000);

		if (s == NULL)
			continue;
		if (s->error_response != NULL ||
		    (s->connection_settings != NULL && s->connection_settings->opamp != NULL &&
		     s->connection_settings->opamp->certificate != NULL))
			return s;
		opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	}
	return NULL;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static size_t certificates_of(struct fx *f, const char *uid_hex)
{
	struct opd_client_resp r;
	char path[128];
	json_t *j = NULL;
	size_t n;

	snprintf(path, sizeof path, "/api/v1/certificates?agent=%s", uid_hex);
	assert_int_equal(opd_api_request(&f->d, "GET", path, NULL, f->d.token, &r, &j), 200);
	n = json_array_size(json_object_get(j, "certificates"));
	json_decref(j);
	opd_client_resp_free(&r);
	return n;
}

/* The certificate verifies against the served bundle with the openssl CLI, for client auth. */
static void verify_with_cli(struct fx *f, const Opamp__Proto__V1__TLSCertificate *tc,
			    const char *tag)
{
	struct opd_client_resp r;
	char bundle[512], cert[512], cmd[2048];

	int status = 0;

	/* A follower may not have applied the CA's registration yet: at most 3 s. */
	for (int i = 0; i < 30; i++) {
		status =
		    opd_api_request(&f->d, "GET", "/api/v1/ca/bundle", NULL, f->d.token, &r, NULL);
		if (status == 200)
			break;
		opd_client_resp_free(&r);
		opd_test_pause_ms(100);
	}
	assert_int_equal(status, 200);
	snprintf(bundle, sizeof bundle, "%s/bundle.pem", f->dir);
	snprintf(cert, sizeof cert, "%s/%s.pem", f->dir, tag);
	write_file(bundle, r.body, strlen((const char *)r.body));
	opd_client_resp_free(&r);
	write_file(cert, tc->cert.data, tc->cert.len);
	assert_non_null(strstr((const char *)tc->cert.data, "BEGIN CERTIFICATE"));
	assert_true(tc->ca_cert.len > 0);
	assert_int_equal(tc->private_key.len, 0);
	snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s -purpose sslclient %s >/dev/null",
		 bundle, cert);
	assert_int_equal(system(cmd), 0);
}

static void test_csr_websocket(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	Opamp__Proto__V1__ServerToAgent *s;
	char *csr;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	s = opd_ta_heartbeat(&a, 5000);
	assert_non_null(s);
	assert_true(s->capabilities & CAP_ACCEPTS_CSR);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);

	csr = opd_tca_csr(a.uid_hex, 0, NULL);
	assert_non_null(csr);
	assert_int_equal(send_csr(&a, csr), 0);
	s = wait_answer(&a);
	assert_non_null(s);
	assert_null(s->error_response);
	assert_non_null(s->connection_settings->opamp->destination_endpoint);
	assert_true(s->connection_settings->opamp->heartbeat_interval_seconds > 0);
	assert_true(s->connection_settings->hash.len > 0);
	verify_with_cli(f, s->connection_settings->opamp->certificate, "ws");
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	assert_int_equal(certificates_of(f, a.uid_hex), 1);
	free(csr);
	opd_ta_fini(&a);
}

static void test_csr_http_poll_waits(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	Opamp__Proto__V1__ServerToAgent *s;
	char *csr;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	csr = opd_tca_csr(a.uid_hex, 0, NULL);
	assert_non_null(csr);
	/* One POST: its reply carries the certificate (the poll waited for the signature). */
	assert_int_equal(send_csr(&a, csr), 0);
	s = opd_ta_recv(&a, 1000);
	assert_non_null(s);
	assert_null(s->error_response);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp);
	assert_non_null(s->connection_settings->opamp->certificate);
	verify_with_cli(f, s->connection_settings->opamp->certificate, "http");
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	assert_int_equal(certificates_of(f, a.uid_hex), 1);
	free(csr);
	opd_ta_fini(&a);
}

static void test_csr_weak_key_refused(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	Opamp__Proto__V1__ServerToAgent *s;
	char *csr;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	csr = opd_tca_csr(a.uid_hex, 1024, NULL);
	assert_non_null(csr);
	assert_int_equal(send_csr(&a, csr), 0);
	s = wait_answer(&a);
	assert_non_null(s);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 1); /* BadRequest */
	assert_non_null(strstr(s->error_response->error_message, "1024"));
	print_message("refusal: %s\n", s->error_response->error_message);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	assert_int_equal(certificates_of(f, a.uid_hex), 0);
	free(csr);

	/* Another agent's uid in the CN: refused too. */
	csr = opd_tca_csr("0123456789abcdef0123456789abcdef", 0, NULL);
	assert_non_null(csr);
	assert_int_equal(send_csr(&a, csr), 0);
	s = wait_answer(&a);
	assert_non_null(s);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 1);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	assert_int_equal(certificates_of(f, a.uid_hex), 0);
	free(csr);
	opd_ta_fini(&a);
}

/*
 * A 3-node cluster whose voters share a fleet CA made with the openssl CLI;
 * *d describes node 2 (usually a follower), *view lists certificates through it.
 */
static void start_cluster_with_ca(struct fx *f, struct opd_daemon *d, struct fx *view)
{
	char cmd[2048], ca[512], key[512];
	const char *extra[] = {"--ca-cert", ca, "--ca-key", key, NULL};

	snprintf(ca, sizeof ca, "%s/fleet-ca.pem", f->dir);
	snprintf(key, sizeof key, "%s/fleet-ca.key", f->dir);
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
		 "-out %s -subj /CN=fleet-test -days 30 -addext basicConstraints=critical,CA:TRUE "
		 "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null && chmod 600 %s",
		 key, ca, key);
	assert_int_equal(system(cmd), 0);
	setenv("OPD_TEST_CLUSTER", "3", 1);
	assert_int_equal(opd_daemon_start(d, extra), 0);
	unsetenv("OPD_TEST_CLUSTER");
	view->d = *d;
	snprintf(view->dir, sizeof view->dir, "%s", f->dir);
}

/*
 * A three-node cluster sharing one fleet CA: node 2 (usually a follower)
 * relays the CSR to the leader's /internal/v1/csr and the agent gets the
 * leader's certificate; every node lists it.
 */
static void test_csr_cluster_follower(void **state)
{
	struct fx *f = *state;
	struct opd_daemon d = {0};
	struct fx view = {0};
	struct opd_ta a;
	Opamp__Proto__V1__ServerToAgent *s;
	char *csr;

	start_cluster_with_ca(f, &d, &view);

	opd_ta_init(&a, d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	csr = opd_tca_csr(a.uid_hex, 0, NULL);
	assert_non_null(csr);
	assert_int_equal(send_csr(&a, csr), 0);
	s = wait_answer(&a);
	assert_non_null(s);
	if (s->error_response != NULL)
		print_message("error: %s\n", s->error_response->error_message);
	assert_null(s->error_response);
	verify_with_cli(&view, s->connection_settings->opamp->certificate, "cluster");
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	/* Applied on the leader before the answer; node 2 has it within moments. */
	for (int i = 0; i < 30 && certificates_of(&view, a.uid_hex) == 0; i++)
		opd_test_pause_ms(100);
	assert_int_equal(certificates_of(&view, a.uid_hex), 1);
	free(csr);
	opd_ta_fini(&a);
	opd_daemon_stop(&d);
}

/*
 * A node cut off from the others (both paused) is read-only: an agent's CSR
 * gets Unavailable with RetryInfo at once, and once the cluster is whole again
 * no node lists a certificate for the agent.
 */
static void test_csr_no_quorum_unavailable(void **state)
{
	struct fx *f = *state;
	struct opd_daemon d = {0};
	struct fx view = {0};
	struct opd_ta a;
	Opamp__Proto__V1__ServerToAgent *s;
	char *csr;
	uint64_t t0;
	int read_only = 0;

	start_cluster_with_ca(f, &d, &view);

	opd_ta_init(&a, d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	/* Cut node 2 (index 1) off: the two others stop. */
	assert_int_equal(opd_cluster_pause(d.cluster, 0), 0);
	assert_int_equal(opd_cluster_pause(d.cluster, 2), 0);
	t0 = opd_test_now_ms();
	for (uint64_t end = t0 + 10000; !read_only && opd_test_now_ms() < end;) {
		json_t *st = opd_cluster_status(d.cluster, 1, 2000);

		read_only = json_is_true(json_object_get(st, "read_only"));
		json_decref(st);
		if (!read_only)
			opd_test_pause_ms(100);
	}
	assert_true(read_only);
	printf("node 2 read-only %llu ms after the others stopped\n",
	       (unsigned long long)(opd_test_now_ms() - t0));
	csr = opd_tca_csr(a.uid_hex, 0, NULL);
	assert_non_null(csr);
	assert_int_equal(send_csr(&a, csr), 0);
	s = wait_answer(&a);
	assert_non_null(s);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 2); /* Unavailable */
	assert_non_null(s->error_response->retry_info);
	assert_true(s->error_response->retry_info->retry_after_nanoseconds > 0);
	printf("CSR on a read-only node: %s\n", s->error_response->error_message);
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
	/* Over plain HTTP the same answer comes as 503 (with Retry-After). */
	{
		struct opd_ta h;

		opd_ta_init(&h, d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
		h.ws = false;
		assert_int_equal(send_csr(&h, csr), -1);
		assert_int_equal(h.last_status, 503);
		opd_ta_fini(&h);
	}
	assert_int_equal(opd_cluster_resume(d.cluster, 0), 0);
	assert_int_equal(opd_cluster_resume(d.cluster, 2), 0);
	assert_int_equal(opd_cluster_wait_leader(d.cluster, 15000) >= 0, 1);
	assert_int_equal(opd_cluster_wait_digests(d.cluster, 10000, NULL), 0);
	assert_int_equal(certificates_of(&view, a.uid_hex), 0);
	free(csr);
	opd_ta_fini(&a);
	opd_daemon_stop(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_csr_websocket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_csr_http_poll_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_csr_weak_key_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_csr_cluster_follower, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_csr_no_quorum_unavailable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
