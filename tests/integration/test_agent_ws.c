/*
 * End-to-end: a C OpAMP agent over WebSocket against the real opampd binary,
 * every expectation checked on the wire and through the admin API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "admin_client.h"
#include "agent_client.h"
#include "daemon.h"

#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

enum {
	ACCEPTS_STATUS = OPAMP__PROTO__V1__SERVER_CAPABILITIES__ServerCapabilities_AcceptsStatus,
	REPORT_FULL_STATE =
	    OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState,
	RCS_APPLIED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED,
	RCS_APPLYING = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLYING,
	RCS_FAILED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_FAILED,
};

struct fx {
	struct opd_daemon d;
	struct opd_ta a;
};

static int setup(void **state)
{
	static const char *const extra[] = {"--heartbeat-interval", "1", NULL};
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || opd_daemon_start(&f->d, extra) != 0) {
		free(f);
		return -1;
	}
	opd_ta_init(&f->a, f->d.opamp_port, OPD_TA_CAPS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc;

	opd_ta_fini(&f->a);
	rc = opd_daemon_stop(&f->d); /* a crashed daemon fails the test here */
	free(f);
	return rc == 0 ? 0 : -1;
}

static void assert_uid(const struct opd_ta *a, const Opamp__Proto__V1__ServerToAgent *m)
{
	assert_int_equal(m->instance_uid.len, 16);
	assert_memory_equal(m->instance_uid.data, a->uid, 16);
}

/* Connect and send the full first report; returns the first reply. */
static Opamp__Proto__V1__ServerToAgent *connect_and_report(struct fx *f)
{
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	assert_int_equal(opd_ta_ws_connect(&f->a), 0);
	opd_ta_msg_full(&b, &f->a, "ws-agent");
	r = opd_ta_exchange(&f->a, &b.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->error_response);
	assert_uid(&f->a, r);
	return r;
}

static void connect_ok(struct fx *f)
{
	S2A_FREE(connect_and_report(f));
}

/* Exchange a message and check the reply is a plain acknowledgement (no config, no flags). */
static void exchange_quiet(struct fx *f, struct opd_ta_msg *b)
{
	Opamp__Proto__V1__ServerToAgent *r = opd_ta_exchange(&f->a, &b->msg, REPLY_MS);

	assert_non_null(r);
	assert_uid(&f->a, r);
	assert_null(r->error_response);
	assert_null(r->remote_config);
	assert_int_equal(r->flags & REPORT_FULL_STATE, 0);
	S2A_FREE(r);
}

static void heartbeat_quiet(struct fx *f)
{
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, &f->a);
	exchange_quiet(f, &b);
}

static void expect_agent(struct fx *f, const char *path, const char *want, int timeout_ms)
{
	json_t *a = opd_api_wait_agent(&f->d, f->a.uid_hex, path, want, timeout_ms);

	if (a == NULL)
		opd_daemon_dump_log(&f->d);
	assert_non_null(a);
	json_decref(a);
}

static void test_first_report(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r = connect_and_report(f);
	json_t *a, *attrs;
	char t[128];

	assert_true(r->capabilities & ACCEPTS_STATUS);
	assert_int_equal(r->flags & REPORT_FULL_STATE, 0);
	assert_non_null(r->connection_settings);
	assert_non_null(r->connection_settings->opamp);
	assert_int_equal(r->connection_settings->opamp->heartbeat_interval_seconds, 1);
	S2A_FREE(r);

	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "connected", "true", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "instance_uid", t, sizeof(t)), f->a.uid_hex);
	assert_string_equal(opd_api_json_text(a, "transport", t, sizeof(t)), "websocket");
	assert_int_equal(json_integer_value(json_object_get(a, "capabilities")), OPD_TA_CAPS);
	assert_int_equal(json_integer_value(json_object_get(a, "sequence_num")), f->a.seq);
	attrs = json_object_get(a, "identifying_attributes");
	assert_string_equal(json_string_value(json_object_get(attrs, "service.name")), "ws-agent");
	attrs = json_object_get(a, "non_identifying_attributes");
	assert_string_equal(json_string_value(json_object_get(attrs, "os.type")), "linux");
	assert_string_equal(opd_api_json_text(a, "health.state", t, sizeof(t)), "healthy");
	json_decref(a);
}

static void test_sequence_gap(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	connect_ok(f);
	heartbeat_quiet(f); /* in sequence: no ReportFullState */

	f->a.seq += 5; /* skip five messages */
	r = opd_ta_heartbeat(&f->a, REPLY_MS);
	assert_non_null(r);
	assert_uid(&f->a, r);
	assert_true(r->flags & REPORT_FULL_STATE);
	S2A_FREE(r);

	/* The full state that answers it settles the session again. */
	opd_ta_msg_full(&b, &f->a, "ws-agent");
	exchange_quiet(f, &b);
	heartbeat_quiet(f);
}

static void test_heartbeats_keep_agent_healthy(void **state)
{
	struct fx *f = *state;
	json_t *a;
	char t[64];

	connect_ok(f);
	for (int i = 0; i < 4; i++) {
		opd_test_pause_ms(1000); /* the offered interval */
		heartbeat_quiet(f);
	}
	a = opd_api_get_agent(&f->d, f->a.uid_hex);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "connected", t, sizeof(t)), "true");
	assert_string_equal(opd_api_json_text(a, "health.state", t, sizeof(t)), "healthy");
	assert_int_equal(json_integer_value(json_object_get(a, "sequence_num")), f->a.seq);
	json_decref(a);
}

/* Wait for a pushed remote_config (nothing sent) and check it carries hash and body. */
static void expect_push(struct fx *f, const char *hash, const char *yaml)
{
	Opamp__Proto__V1__ServerToAgent *r = opd_ta_recv(&f->a, REPLY_MS);
	Opamp__Proto__V1__AgentConfigMap *map;
	char hex[129];
	int found = 0;

	assert_non_null(r);
	assert_uid(&f->a, r);
	assert_non_null(r->remote_config);
	assert_int_equal(r->remote_config->config_hash.len, 32);
	opd_ta_hex(r->remote_config->config_hash.data, r->remote_config->config_hash.len, hex);
	assert_string_equal(hex, hash);
	map = r->remote_config->config;
	assert_non_null(map);
	for (size_t i = 0; i < map->n_config_map; i++) {
		Opamp__Proto__V1__AgentConfigFile *file = map->config_map[i]->value;

		if (strcmp(map->config_map[i]->key, "collector.yaml") == 0 && file != NULL) {
			assert_int_equal(file->body.len, strlen(yaml));
			assert_memory_equal(file->body.data, yaml, strlen(yaml));
			assert_string_equal(file->content_type, "text/yaml");
			found = 1;
		}
	}
	assert_true(found);
	S2A_FREE(r);
}

static void send_status(struct fx *f, const char *hash, int status, const char *msg)
{
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, &f->a);
	opd_ta_msg_remote_config_status(&b, hash, status, msg);
	exchange_quiet(f, &b); /* the hash matches: nothing is resent */
}

static void test_config_push_and_status(void **state)
{
	static const char yaml1[] = "receivers:\n  otlp:\n    protocols:\n      grpc: {}\n";
	static const char yaml2[] = "receivers:\n  otlp:\n    protocols:\n      http: {}\n";
	struct fx *f = *state;
	char h1[65], h2[65], t[256];
	int v1 = 0, v2 = 0;
	json_t *a;

	connect_ok(f);
	expect_agent(f, "connected", "true", 3000);

	assert_int_equal(opd_api_publish(&f->d, "e2e", yaml1, h1, &v1), 201);
	expect_push(f, h1, yaml1);
	expect_agent(f, "desired_config.config_hash", h1, 3000);

	send_status(f, h1, RCS_APPLYING, NULL);
	expect_agent(f, "remote_config_status.status", "APPLYING", 3000);
	send_status(f, h1, RCS_APPLIED, NULL);
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "remote_config_status.status", "APPLIED", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "remote_config_status.config_hash", t, sizeof(t)),
			    h1);
	json_decref(a);

	/* A second version is pushed too. */
	assert_int_equal(opd_api_publish(&f->d, "e2e", yaml2, h2, &v2), 201);
	assert_int_equal(v2, v1 + 1);
	assert_string_not_equal(h1, h2);
	expect_push(f, h2, yaml2);

	send_status(f, h2, RCS_FAILED, "exporter otlp: connection refused");
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "remote_config_status.status", "FAILED", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "remote_config_status.config_hash", t, sizeof(t)),
			    h2);
	assert_string_equal(
	    opd_api_json_text(a, "remote_config_status.error_message", t, sizeof(t)),
	    "exporter otlp: connection refused");
	json_decref(a);

	/* FAILED with the current hash: resending would not help, so the server does not. */
	for (int i = 0; i < 3; i++) {
		opd_test_pause_ms(1000);
		heartbeat_quiet(f);
	}
}

static void test_health_transitions(void **state)
{
	struct fx *f = *state;
	struct opd_ta_msg b;
	json_t *a;
	char t[128];

	connect_ok(f);
	expect_agent(f, "health.state", "healthy", 3000);

	opd_ta_msg_init(&b, &f->a);
	opd_ta_msg_health(&b, false, "exporter otlp: queue full");
	exchange_quiet(f, &b);
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "health.state", "degraded", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "health.component_health.healthy", t, sizeof(t)),
			    "false");
	assert_string_equal(
	    opd_api_json_text(a, "health.component_health.last_error", t, sizeof(t)),
	    "exporter otlp: queue full");
	json_decref(a);

	opd_ta_msg_init(&b, &f->a);
	opd_ta_msg_health(&b, true, NULL);
	exchange_quiet(f, &b);
	expect_agent(f, "health.state", "healthy", 3000);
	expect_agent(f, "health.component_health.healthy", "true", 3000);
}

static void test_disconnect(void **state)
{
	struct fx *f = *state;
	uint64_t deadline;
	struct opd_ta_msg b;
	uint8_t *p;
	size_t n;
	int rc;

	connect_ok(f);
	expect_agent(f, "connected", "true", 3000);

	opd_ta_msg_init(&b, &f->a);
	opd_ta_msg_disconnect(&b);
	assert_int_equal(opd_ta_send(&f->a, &b.msg), 0);
	assert_int_equal(opd_ta_ws_send_close(&f->a, 1000), 0);
	/* Whatever the server still says, it must end with its close frame. */
	deadline = opd_test_now_ms() + 5000;
	while ((rc = opd_ta_ws_read_message(&f->a, 1000, &p, &n)) == 1) {
		free(p);
		assert_true(opd_test_now_ms() < deadline);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(f->a.close_code, 1000);
	expect_agent(f, "connected", "false", 3000);
}

static void test_silent_agent_becomes_suspect(void **state)
{
	struct fx *f = *state;
	uint64_t t0;
	json_t *a;

	connect_ok(f);
	for (int i = 0; i < 3; i++) {
		opd_test_pause_ms(1000);
		heartbeat_quiet(f);
	}
	expect_agent(f, "health.state", "healthy", 1000);
	/* Stop heartbeating but keep the socket open. */
	t0 = opd_test_now_ms();
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "health.state", "suspect", 10000);
	if (a == NULL)
		opd_daemon_dump_log(&f->d);
	assert_non_null(a);
	assert_true(opd_test_now_ms() - t0 <= 10500);
	json_decref(a);
}

/* ---- provenance: verify a pushed config from the README's description alone ---- */

static void put_field(uint8_t *buf, size_t *n, const void *p, size_t len)
{
	for (int i = 7; i >= 0; i--)
		buf[(*n)++] = (uint8_t)((uint64_t)len >> (8 * i));
	memcpy(buf + *n, p, len);
	*n += len;
}

static void put_decimal(uint8_t *buf, size_t *n, long long v)
{
	char text[32];

	snprintf(text, sizeof text, "%lld", v);
	put_field(buf, n, text, strlen(text));
}

static int unb64(const char *in, uint8_t *out, size_t cap)
{
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)strlen(in));
	size_t len = strlen(in);

	if (n < 0 || (size_t)n > cap)
		return -1;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	while (len > 0 && in[len - 1] == '=') {
		n--;
		len--;
	}
	return n;
}

static void test_signed_config_verifies(void **state)
{
	static const char yaml[] = "processors:\n  batch: {}\n";
	struct fx *f = *state;
	Opamp__Proto__V1__CustomCapabilities cc = OPAMP__PROTO__V1__CUSTOM_CAPABILITIES__INIT;
	char *caps[] = {"io.opampd.config-signature"};
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;
	struct opd_client_resp resp;
	json_t *sig, *keys, *k, *sel;
	char hash[65];
	int version;
	uint8_t signed_bytes[4096], raw_hash[32], signature[80], pub[40];
	size_t n = 0, i;

	/* The agent announces the signature capability in its first report. */
	assert_int_equal(opd_ta_ws_connect(&f->a), 0);
	opd_ta_msg_full(&b, &f->a, "verifier");
	cc.n_capabilities = 1;
	cc.capabilities = caps;
	b.msg.custom_capabilities = &cc;
	r = opd_ta_exchange(&f->a, &b.msg, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);

	assert_int_equal(opd_api_publish(&f->d, "signed", yaml, hash, &version), 201);
	r = opd_ta_recv(&f->a, REPLY_MS);
	assert_non_null(r);
	assert_non_null(r->remote_config);
	assert_non_null(r->custom_message);
	assert_string_equal(r->custom_message->capability, "io.opampd.config-signature");
	assert_string_equal(r->custom_message->type, "config-signature");
	sig = json_loadb((const char *)r->custom_message->data.data, r->custom_message->data.len, 0,
			 NULL);
	assert_non_null(sig);
	assert_string_equal(json_string_value(json_object_get(sig, "config_hash")), hash);
	assert_string_equal(json_string_value(json_object_get(sig, "algorithm")), "Ed25519");

	/* The signed bytes, exactly as README.md describes them. */
	put_field(signed_bytes, &n, "opampd.config-version.v1", 24);
	put_field(signed_bytes, &n, json_string_value(json_object_get(sig, "name")),
		  strlen(json_string_value(json_object_get(sig, "name"))));
	put_decimal(signed_bytes, &n, json_integer_value(json_object_get(sig, "version")));
	for (i = 0; i < 32; i++)
		sscanf(hash + 2 * i, "%2hhx", &raw_hash[i]);
	assert_memory_equal(raw_hash, r->remote_config->config_hash.data, 32);
	put_field(signed_bytes, &n, raw_hash, 32);
	sel = json_object_get(sig, "selector");
	/* Published without a selector: zero pairs follow the count. */
	assert_int_equal(json_object_size(sel), 0);
	put_decimal(signed_bytes, &n, 0);
	put_decimal(signed_bytes, &n, json_integer_value(json_object_get(sig, "priority")));
	put_decimal(signed_bytes, &n, json_integer_value(json_object_get(sig, "term")));
	put_decimal(signed_bytes, &n, json_integer_value(json_object_get(sig, "hlc_wall_ms")));
	put_decimal(signed_bytes, &n, json_integer_value(json_object_get(sig, "hlc_logical")));

	/* The public key the cluster publishes, by key id. */
	assert_int_equal(
	    opd_api_request(&f->d, "GET", "/api/v1/signing-keys", NULL, f->d.token, &resp, &keys),
	    200);
	k = NULL;
	json_array_foreach(json_object_get(keys, "keys"), i, k)
	{
		if (strcmp(json_string_value(json_object_get(k, "key_id")),
			   json_string_value(json_object_get(sig, "key_id"))) == 0)
			break;
		k = NULL;
	}
	assert_non_null(k);
	assert_int_equal(
	    unb64(json_string_value(json_object_get(k, "public_key")), pub, sizeof pub), 32);
	assert_int_equal(unb64(json_string_value(json_object_get(sig, "signature")), signature,
			       sizeof signature),
			 64);

	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(pk);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk), 1);
	assert_int_equal(EVP_DigestVerify(md, signature, 64, signed_bytes, n), 1);
	/* And a flipped byte does not verify. */
	signed_bytes[n - 1] ^= 1;
	EVP_MD_CTX_free(md);
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk), 1);
	assert_int_not_equal(EVP_DigestVerify(md, signature, 64, signed_bytes, n), 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	json_decref(keys);
	opd_client_resp_free(&resp);
	json_decref(sig);
	S2A_FREE(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_report, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sequence_gap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeats_keep_agent_healthy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_push_and_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health_transitions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_silent_agent_becomes_suspect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_signed_config_verifies, setup, teardown),
	};

	return cmocka_run_group_tests_name("integration/agent_ws", tests, NULL, NULL);
}
