/*
 * End-to-end: a C OpAMP agent over plain HTTP POST against the real opampd
 * binary: polling, config delivery in the next poll, gzip both ways, and the
 * poll timeout that marks a silent agent disconnected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

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
};

struct fx {
	struct opd_daemon d;
	struct opd_ta a;
};

static int setup(void **state)
{
	static const char *const extra[] = {"--heartbeat-interval", "1", "--http-timeout-factor",
					    "2", NULL};
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
	rc = opd_daemon_stop(&f->d);
	free(f);
	return rc == 0 ? 0 : -1;
}

static void assert_uid(const struct opd_ta *a, const Opamp__Proto__V1__ServerToAgent *m)
{
	assert_int_equal(m->instance_uid.len, 16);
	assert_memory_equal(m->instance_uid.data, a->uid, 16);
}

static Opamp__Proto__V1__ServerToAgent *post(struct fx *f, struct opd_ta_msg *b)
{
	Opamp__Proto__V1__ServerToAgent *r = opd_ta_exchange(&f->a, &b->msg, REPLY_MS);

	assert_int_equal(f->a.last_status, 200);
	assert_non_null(r);
	assert_uid(&f->a, r);
	assert_null(r->error_response);
	assert_string_equal(f->a.last_content_type, "application/x-protobuf");
	return r;
}

static Opamp__Proto__V1__ServerToAgent *poll_once(struct fx *f)
{
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, &f->a);
	return post(f, &b);
}

static void first_report(struct fx *f)
{
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	opd_ta_msg_full(&b, &f->a, "http-agent");
	r = post(f, &b);
	assert_true(r->capabilities & ACCEPTS_STATUS);
	assert_int_equal(r->flags & REPORT_FULL_STATE, 0);
	S2A_FREE(r);
}

static void expect_agent(struct fx *f, const char *path, const char *want, int timeout_ms)
{
	json_t *a = opd_api_wait_agent(&f->d, f->a.uid_hex, path, want, timeout_ms);

	if (a == NULL)
		opd_daemon_dump_log(&f->d);
	assert_non_null(a);
	json_decref(a);
}

static void test_first_post(void **state)
{
	struct fx *f = *state;
	json_t *a;
	char t[64];

	first_report(f);
	assert_string_equal(f->a.last_content_encoding, ""); /* no Accept-Encoding, no gzip */
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "connected", "true", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "transport", t, sizeof(t)), "http");
	assert_int_equal(json_integer_value(json_object_get(a, "capabilities")), OPD_TA_CAPS);
	json_decref(a);
}

static void test_config_in_next_poll(void **state)
{
	static const char yaml[] = "exporters:\n  debug: {}\n";
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;
	char hash[65], hex[129], t[128];
	struct opd_ta_msg b;
	int version;
	json_t *a;

	first_report(f);
	r = poll_once(f);
	assert_null(r->remote_config);
	S2A_FREE(r);

	assert_int_equal(opd_api_publish(&f->d, "http-e2e", yaml, hash, &version), 201);
	r = poll_once(f);
	assert_non_null(r->remote_config);
	opd_ta_hex(r->remote_config->config_hash.data, r->remote_config->config_hash.len, hex);
	assert_string_equal(hex, hash);
	assert_non_null(r->remote_config->config);
	assert_int_equal(r->remote_config->config->n_config_map, 1);
	assert_string_equal(r->remote_config->config->config_map[0]->key, "collector.yaml");
	assert_int_equal(r->remote_config->config->config_map[0]->value->body.len, strlen(yaml));
	assert_memory_equal(r->remote_config->config->config_map[0]->value->body.data, yaml,
			    strlen(yaml));
	S2A_FREE(r);
	expect_agent(f, "desired_config.config_hash", hash, 3000);

	opd_ta_msg_init(&b, &f->a);
	opd_ta_msg_remote_config_status(&b, hash, RCS_APPLIED, NULL);
	r = post(f, &b);
	assert_null(r->remote_config); /* the agent has it: nothing resent */
	S2A_FREE(r);
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "remote_config_status.status", "APPLIED", 3000);
	assert_non_null(a);
	assert_string_equal(opd_api_json_text(a, "remote_config_status.config_hash", t, sizeof(t)),
			    hash);
	json_decref(a);

	r = poll_once(f);
	assert_null(r->remote_config);
	S2A_FREE(r);
}

static void test_gzip_request_body(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;
	json_t *a, *attrs;

	f->a.gzip_request = true;
	opd_ta_msg_full(&b, &f->a, "gzip-agent");
	r = post(f, &b);
	S2A_FREE(r);
	/* The body was really decoded: the description inside it reached the registry. */
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "connected", "true", 3000);
	assert_non_null(a);
	attrs = json_object_get(a, "identifying_attributes");
	assert_string_equal(json_string_value(json_object_get(attrs, "service.name")),
			    "gzip-agent");
	json_decref(a);
}

static void test_gzip_response(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;

	first_report(f);
	f->a.accept_gzip = true;
	r = poll_once(f); /* post() gunzips when Content-Encoding says gzip */
	assert_string_equal(f->a.last_content_encoding, "gzip");
	S2A_FREE(r);
	f->a.accept_gzip = false;
	r = poll_once(f);
	assert_string_equal(f->a.last_content_encoding, "");
	S2A_FREE(r);
}

static void test_silent_poller_disconnected(void **state)
{
	struct fx *f = *state;
	uint64_t t0;
	json_t *a;

	first_report(f);
	for (int i = 0; i < 3; i++) {
		opd_test_pause_ms(1000); /* the poll interval */
		S2A_FREE(poll_once(f));
	}
	t0 = opd_test_now_ms();
	a = opd_api_get_agent(&f->d, f->a.uid_hex);
	assert_non_null(a);
	assert_true(json_is_true(json_object_get(a, "connected")));
	json_decref(a);
	/* factor 2 x interval 1 s, plus the server's sweep period. */
	a = opd_api_wait_agent(&f->d, f->a.uid_hex, "connected", "false", 6000);
	if (a == NULL)
		opd_daemon_dump_log(&f->d);
	assert_non_null(a);
	assert_true(opd_test_now_ms() - t0 >= 1500); /* not before the timeout */
	json_decref(a);
}

/*
 * Three pipelined POSTs in one write on one keep-alive connection: three
 * answers, in order, with sequence numbers 1..3 each acknowledged.
 */
static void test_pipelined_keep_alive(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__AgentToServer m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
	uint8_t body[64], req[3 * 256];
	size_t blen, rlen = 0;
	uint64_t deadline = opd_test_now_ms() + REPLY_MS;
	int fd = opd_client_connect(f->d.opamp_port);

	assert_true(fd >= 0);
	m.instance_uid.data = f->a.uid;
	m.instance_uid.len = 16;
	m.capabilities = 0x2001;
	for (uint64_t seq = 1; seq <= 3; seq++) {
		m.sequence_num = seq;
		blen = opamp__proto__v1__agent_to_server__pack(&m, body);
		rlen += (size_t)snprintf((char *)req + rlen, sizeof req - rlen,
					 "POST /v1/opamp HTTP/1.1\r\nHost: t\r\nContent-Type: "
					 "application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
					 blen);
		memcpy(req + rlen, body, blen);
		rlen += blen;
	}
	assert_int_equal(opd_client_send_all(fd, req, rlen, deadline), 0);
	/* The answers may arrive in any chunking: collect bytes, then split them. */
	static uint8_t in[64 * 1024];
	size_t have = 0, off = 0;
	for (int i = 0; i < 3; i++) {
		Opamp__Proto__V1__ServerToAgent *s;
		const char *end, *cl;
		size_t len;

		while ((end = memmem(in + off, have - off, "\r\n\r\n", 4)) == NULL ||
		       (cl = strcasestr((const char *)in + off, "Content-Length:")) == NULL ||
		       have <
			   (size_t)((const uint8_t *)end + 4 - in) + strtoul(cl + 15, NULL, 10)) {
			long n = opd_client_recv(fd, in + have, sizeof in - have - 1, deadline);
			assert_true(n > 0);
			have += (size_t)n;
			in[have] = 0;
		}
		assert_memory_equal(in + off, "HTTP/1.1 200", 12);
		len = strtoul(cl + 15, NULL, 10);
		off = (size_t)((const uint8_t *)end + 4 - in);
		s = opamp__proto__v1__server_to_agent__unpack(NULL, len, in + off);
		off += len;
		assert_non_null(s);
		assert_memory_equal(s->instance_uid.data, f->a.uid, 16);
		/* A gap would have asked for full state: the three arrived in order. */
		if (i > 0)
			assert_false(s->flags & REPORT_FULL_STATE);
		S2A_FREE(s);
	}
	assert_int_equal(off, have);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_post, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_in_next_poll, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gzip_request_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gzip_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_silent_poller_disconnected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_keep_alive, setup, teardown),
	};

	return cmocka_run_group_tests_name("integration/agent_http", tests, NULL, NULL);
}
