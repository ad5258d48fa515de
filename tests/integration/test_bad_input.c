/*
 * End-to-end: hostile and malformed input against the real opampd binary.
 * One well-behaved WebSocket agent stays connected throughout; after every bad
 * input it must still get an answer to its heartbeat (invariant 6: bad input
 * gets a clear error and changes nothing for anyone else).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "daemon.h"

#define REPLY_MS 5000
#define BIG (5 * 1024 * 1024)
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

enum {
	BAD_REQUEST =
	    OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest,
};

struct fx {
	struct opd_daemon d;
	struct opd_ta healthy;
};

static int group_setup(void **state)
{
	static const char *const extra[] = {"--heartbeat-interval", "30", NULL};
	struct fx *f = calloc(1, sizeof(*f));
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	if (f == NULL || opd_daemon_start(&f->d, extra) != 0) {
		free(f);
		return -1;
	}
	opd_ta_init(&f->healthy, f->d.opamp_port, OPD_TA_CAPS);
	if (opd_ta_ws_connect(&f->healthy) != 0)
		goto fail;
	opd_ta_msg_full(&b, &f->healthy, "healthy-agent");
	r = opd_ta_exchange(&f->healthy, &b.msg, REPLY_MS);
	if (r == NULL)
		goto fail;
	S2A_FREE(r);
	*state = f;
	return 0;
fail:
	opd_ta_fini(&f->healthy);
	opd_daemon_stop(&f->d);
	free(f);
	return -1;
}

static int group_teardown(void **state)
{
	struct fx *f = *state;
	int rc;

	opd_ta_fini(&f->healthy);
	rc = opd_daemon_stop(&f->d);
	free(f);
	return rc == 0 ? 0 : -1;
}

/* The bystander still gets a reply to a heartbeat, and the daemon is alive. */
static void healthy_still_served(struct fx *f)
{
	Opamp__Proto__V1__ServerToAgent *r = opd_ta_heartbeat(&f->healthy, REPLY_MS);

	if (r == NULL)
		opd_daemon_dump_log(&f->d);
	assert_non_null(r);
	assert_int_equal(r->instance_uid.len, 16);
	assert_memory_equal(r->instance_uid.data, f->healthy.uid, 16);
	assert_null(r->error_response);
	S2A_FREE(r);
	assert_true(opd_daemon_alive(&f->d));
}

/* 1 when the peer closes fd (EOF or reset) within ms; counts bytes seen meanwhile. */
static int closed_within(int fd, int ms, size_t *seen)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)ms;
	char buf[4096];

	*seen = 0;
	for (;;) {
		long r = opd_client_recv(fd, buf, sizeof(buf), deadline);

		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 1;
		if (r < 0)
			return 0;
		*seen += (size_t)r;
	}
}

/* A valid packed AgentToServer (no WebSocket header) into a malloc'd buffer. */
static size_t packed_a2s(struct opd_ta *a, uint8_t **out)
{
	struct opd_ta_msg b;
	size_t n;

	opd_ta_msg_full(&b, a, "bad-input");
	n = opamp__proto__v1__agent_to_server__get_packed_size(&b.msg);
	*out = malloc(n);
	assert_non_null(*out);
	opamp__proto__v1__agent_to_server__pack(&b.msg, *out);
	return n;
}

/* An instance_uid field that announces 16 bytes but carries 8: not decodable. */
static const uint8_t truncated_pb[] = {0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8};

/* POST /v1/opamp with a content type, optional extra headers and a body; the response. */
static void raw_post(struct fx *f, const char *ctype, const void *body, size_t n,
		     struct opd_client_resp *r)
{
	char head[512];
	uint8_t *req;
	int hn, fd;

	hn = snprintf(head, sizeof(head),
		      "POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
		      "Content-Length: %zu\r\n\r\n",
		      ctype, n);
	req = malloc((size_t)hn + n);
	assert_non_null(req);
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, body, n);
	fd = opd_client_connect(f->d.opamp_port);
	assert_true(fd >= 0);
	assert_int_equal(opd_client_exchange(fd, req, (size_t)hn + n, 10000, r), 0);
	close(fd);
	free(req);
}

static void test_garbage_bytes(void **state)
{
	static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xde\xad"
				      "\xbe\xef garbage \x01\x02\r\n\r\n";
	struct fx *f = *state;
	struct opd_client_resp r;
	size_t seen;
	int fd;

	fd = opd_client_connect(f->d.opamp_port);
	assert_true(fd >= 0);
	assert_int_equal(opd_client_exchange(fd, garbage, sizeof(garbage) - 1, 10000, &r), 0);
	assert_int_equal(r.status, 400);
	assert_true(r.closed || closed_within(fd, 3000, &seen));
	opd_client_resp_free(&r);
	close(fd);
	healthy_still_served(f);
}

static void test_ws_bad_varint_header(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	uint8_t *pb, *msg, *p;
	size_t n;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	n = packed_a2s(&a, &pb);
	msg = malloc(n + 1);
	assert_non_null(msg);
	msg[0] = 0x01; /* reserved header value */
	memcpy(msg + 1, pb, n);
	assert_int_equal(opd_ta_ws_send_frame(&a, 2, msg, n + 1), 0);
	assert_int_equal(opd_ta_ws_read_message(&a, REPLY_MS, &p, &n), 0);
	assert_int_equal(a.close_code, 1002);
	free(msg);
	free(pb);
	opd_ta_fini(&a);
	healthy_still_served(f);
}

static void test_ws_truncated_protobuf(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;
	uint8_t msg[sizeof(truncated_pb) + 1];
	struct opd_ta a;
	struct opd_ta_msg b;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	msg[0] = 0x00;
	memcpy(msg + 1, truncated_pb, sizeof(truncated_pb));
	assert_int_equal(opd_ta_ws_send_frame(&a, 2, msg, sizeof(msg)), 0);
	r = opd_ta_recv(&a, REPLY_MS);
	assert_non_null(r);
	assert_non_null(r->error_response);
	assert_int_equal(r->error_response->type, BAD_REQUEST);
	S2A_FREE(r);
	/* The connection stays open and usable. */
	opd_ta_msg_full(&b, &a, "after-bad-request");
	r = opd_ta_exchange(&a, &b.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->error_response);
	assert_memory_equal(r->instance_uid.data, a.uid, 16);
	S2A_FREE(r);
	opd_ta_fini(&a);
	healthy_still_served(f);
}

static void test_http_truncated_protobuf(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_client_resp r;

	raw_post(f, "application/x-protobuf", truncated_pb, sizeof(truncated_pb), &r);
	assert_int_equal(r.status, 400);
	m = opamp__proto__v1__server_to_agent__unpack(NULL, r.body_len, r.body);
	assert_non_null(m);
	assert_non_null(m->error_response);
	assert_int_equal(m->error_response->type, BAD_REQUEST);
	S2A_FREE(m);
	opd_client_resp_free(&r);
	healthy_still_served(f);
}

static void test_ws_message_too_big(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	uint8_t *msg, *p;
	size_t n;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	msg = calloc(1, BIG);
	assert_non_null(msg);
	/* A 0x00 header and zeros: the size alone must get it refused. */
	assert_int_equal(opd_ta_ws_send_frame(&a, 2, msg, BIG), 0);
	assert_int_equal(opd_ta_ws_read_message(&a, 10000, &p, &n), 0);
	assert_int_equal(a.close_code, 1009);
	free(msg);
	opd_ta_fini(&a);
	healthy_still_served(f);
}

static void test_http_body_too_big(void **state)
{
	struct fx *f = *state;
	struct opd_client_resp r;
	uint8_t *body = calloc(1, BIG);

	assert_non_null(body);
	raw_post(f, "application/x-protobuf", body, BIG, &r);
	assert_int_equal(r.status, 413);
	opd_client_resp_free(&r);
	free(body);
	healthy_still_served(f);
}

static void test_http_wrong_content_type(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	struct opd_client_resp r;
	uint8_t *pb;
	size_t n;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	n = packed_a2s(&a, &pb);
	raw_post(f, "text/plain", pb, n, &r);
	assert_int_equal(r.status, 415);
	opd_client_resp_free(&r);
	free(pb);
	healthy_still_served(f);
}

static void test_endless_headers(void **state)
{
	struct fx *f = *state;
	struct opd_client_resp r;
	size_t cap = 64 * 1024, len = 0;
	char *req = malloc(cap);
	int fd;

	assert_non_null(req);
	len += (size_t)snprintf(req, cap, "POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n");
	for (int i = 0; len + 128 < cap; i++)
		len +=
		    (size_t)snprintf(req + len, cap - len,
				     "X-Filler-%05d: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				     "aaaaaaaaaaaaaaaa\r\n",
				     i);
	/* Never the blank line that would end them. */
	fd = opd_client_connect(f->d.opamp_port);
	assert_true(fd >= 0);
	assert_int_equal(opd_client_exchange(fd, req, len, 10000, &r), 0);
	assert_int_equal(r.status, 431);
	opd_client_resp_free(&r);
	close(fd);
	free(req);
	healthy_still_served(f);
}

static void test_slow_clients_closed(void **state)
{
	static const char partial[] = "GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	struct fx *f = *state;
	struct opd_client_resp r;
	uint64_t t0;
	size_t seen;
	int silent, slow;

	silent = opd_client_connect(f->d.opamp_port);
	slow = opd_client_connect(f->d.opamp_port);
	assert_true(silent >= 0 && slow >= 0);
	t0 = opd_test_now_ms();
	assert_int_equal(opd_client_send_all(slow, partial, sizeof(partial) - 1, t0 + 2000), 0);

	/* Sent nothing: closed silently after the 10 s header timeout. */
	assert_true(closed_within(silent, 13000, &seen));
	assert_int_equal(seen, 0);
	assert_true(opd_test_now_ms() - t0 >= 9000);
	assert_true(opd_test_now_ms() - t0 <= 12500);

	/* Sent part of a request: 408, by the same deadline. */
	assert_int_equal(opd_client_read_response(slow, t0 + 13000, &r), 0);
	assert_int_equal(r.status, 408);
	opd_client_resp_free(&r);
	close(silent);
	close(slow);
	healthy_still_served(f);
}

static json_t *error_of(json_t *body, const char *code)
{
	json_t *e = json_object_get(body, "error");

	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	assert_true(json_is_string(json_object_get(e, "message")));
	return e;
}

static void test_admin_invalid_json(void **state)
{
	struct fx *f = *state;
	struct opd_client_resp r;
	json_t *j;
	char ct[128];

	assert_int_equal(opd_api_request(&f->d, "POST", "/api/v1/configs/broken", "{\"files\": {",
					 f->d.token, &r, &j),
			 400);
	assert_non_null(opd_client_header(&r, "Content-Type", ct, sizeof(ct)));
	assert_non_null(strstr(ct, "application/json"));
	error_of(j, "invalid_json");
	json_decref(j);
	opd_client_resp_free(&r);
	healthy_still_served(f);
}

static void test_admin_bad_yaml(void **state)
{
	static const char body[] = "{\"files\": {\"collector.yaml\": {\"content_type\": "
				   "\"text/yaml\", \"body\": \"key: value\\n\\tbad: tab\\n\"}}}";
	struct fx *f = *state;
	struct opd_client_resp r;
	json_t *j, *e;

	assert_int_equal(
	    opd_api_request(&f->d, "POST", "/api/v1/configs/badyaml", body, f->d.token, &r, &j),
	    400);
	e = error_of(j, "invalid_config");
	assert_string_equal(json_string_value(json_object_get(e, "file")), "collector.yaml");
	assert_int_equal(json_integer_value(json_object_get(e, "line")), 2);
	assert_int_equal(json_integer_value(json_object_get(e, "column")), 1);
	json_decref(j);
	opd_client_resp_free(&r);

	/* Nothing was stored. */
	assert_int_equal(
	    opd_api_request(&f->d, "GET", "/api/v1/configs/badyaml", NULL, f->d.token, &r, &j),
	    404);
	error_of(j, "not_found");
	json_decref(j);
	opd_client_resp_free(&r);
	healthy_still_served(f);
}

static void check_unauthorized(struct fx *f, const char *token)
{
	struct opd_client_resp r;
	char www[128];
	json_t *j;

	assert_int_equal(opd_api_request(&f->d, "GET", "/api/v1/agents", NULL, token, &r, &j), 401);
	assert_non_null(opd_client_header(&r, "WWW-Authenticate", www, sizeof(www)));
	assert_int_equal(strncmp(www, "Bearer", 6), 0);
	error_of(j, "unauthorized");
	json_decref(j);
	opd_client_resp_free(&r);
}

static void test_admin_tokens(void **state)
{
	struct fx *f = *state;
	struct opd_client_resp r;
	char wrong[sizeof(f->d.token)];
	json_t *j;

	check_unauthorized(f, NULL);
	/* Same length, last character changed; then a different length. */
	snprintf(wrong, sizeof(wrong), "%s", f->d.token);
	wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'x' ? 'y' : 'x';
	check_unauthorized(f, wrong);
	check_unauthorized(f, "x");
	/* And the right one works, showing the bystander agent. */
	assert_int_equal(opd_api_request(&f->d, "GET", "/api/v1/agents", NULL, f->d.token, &r, &j),
			 200);
	assert_true(json_integer_value(json_object_get(j, "count")) >= 1);
	json_decref(j);
	opd_client_resp_free(&r);
	healthy_still_served(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_garbage_bytes),
	    cmocka_unit_test(test_ws_bad_varint_header),
	    cmocka_unit_test(test_ws_truncated_protobuf),
	    cmocka_unit_test(test_http_truncated_protobuf),
	    cmocka_unit_test(test_ws_message_too_big),
	    cmocka_unit_test(test_http_body_too_big),
	    cmocka_unit_test(test_http_wrong_content_type),
	    cmocka_unit_test(test_endless_headers),
	    cmocka_unit_test(test_slow_clients_closed),
	    cmocka_unit_test(test_admin_invalid_json),
	    cmocka_unit_test(test_admin_bad_yaml),
	    cmocka_unit_test(test_admin_tokens),
	};

	return cmocka_run_group_tests_name("integration/bad_input", tests, group_setup,
					   group_teardown);
}
