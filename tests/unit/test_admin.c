/*
 * The admin REST API, driven with hand-built requests against an in-memory
 * store and a registry filled directly: status codes, headers and JSON bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "admin.h"
#include "harness.h"
#include "hex.h"
#include "log.h"
#include "mem.h"
#include "opamp/v1/opamp.pb-c.h"

#define TOKEN "s3cret-token-0123456789"

struct fixture {
	struct opd_fake_clock fc;
	struct opd_configs configs;
	struct opd_registry reg;
	struct opd_admin admin;
	struct opd_test_signer key;
};

struct res {
	int status;
	json_t *j; /* owned; NULL when the body is not JSON */
	char headers[512];
	char content_type[64];
};

static uint8_t uid_counter;

static void counter_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	(void)data;
	memset(uid, 0, OPD_UID_LEN);
	uid[OPD_UID_LEN - 1] = ++uid_counter;
}

static int setup(void **state)
{
	struct fixture *f = opd_xcalloc(1, sizeof *f);
	struct opd_registry_settings s;
	struct opd_registry_ops ops = {0};

	opd_fake_clock_init(&f->fc, 1000);
	if (opd_configs_open(&f->configs, ":memory:", &f->fc.clock) != 0 ||
	    opd_test_signer_init(&f->key, &f->configs) != 0)
		return -1;
	opd_admin_init(&f->admin);
	opd_registry_settings_default(&s);
	ops.desired = opd_configs_desired;
	ops.new_uid = counter_uid;
	ops.data = &f->configs;
	opd_registry_init(&f->reg, &s, &ops);
	f->admin.configs = &f->configs;
	f->admin.registry = &f->reg;
	f->admin.clock = &f->fc.clock;
	snprintf(f->admin.token, sizeof f->admin.token, "%s", TOKEN);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	opd_registry_fini(&f->reg);
	opd_admin_fini(&f->admin);
	opd_configs_close(&f->configs);
	opd_test_signer_fini(&f->key);
	free(f);
	return 0;
}

static struct res call_auth(struct fixture *f, const char *method, const char *path,
			    const char *query, const char *body, const char *auth)
{
	struct opd_http_request req = {0};
	struct opd_admin_response resp;
	struct res r = {0};
	json_error_t err;
	size_t n;

	req.method = method;
	req.path = path;
	req.query = query != NULL ? query : "";
	if (auth != NULL) {
		req.headers[0].name = "authorization";
		req.headers[0].value = auth;
		req.n_headers = 1;
	}
	req.body = (const uint8_t *)body;
	req.body_len = body != NULL ? strlen(body) : 0;

	opd_admin_response_init(&resp);
	/* Without a node, writes are applied at once: every answer is immediate. */
	assert_int_equal(opd_admin_handle(&f->admin, &req, NULL, &resp), 0);
	r.status = resp.status;
	n = opd_buf_avail(&resp.headers);
	assert_true(n < sizeof r.headers);
	if (n > 0)
		memcpy(r.headers, opd_buf_rptr(&resp.headers), n);
	assert_non_null(resp.content_type);
	snprintf(r.content_type, sizeof r.content_type, "%s", resp.content_type);
	r.j =
	    json_loadb((const char *)opd_buf_rptr(&resp.body), opd_buf_avail(&resp.body), 0, &err);
	opd_admin_response_fini(&resp);
	/* Every answer of this API is JSON. */
	assert_non_null(r.j);
	assert_string_equal(r.content_type, "application/json");
	return r;
}

static struct res call(struct fixture *f, const char *method, const char *path, const char *query,
		       const char *body)
{
	return call_auth(f, method, path, query, body, "Bearer " TOKEN);
}

static void res_fini(struct res *r)
{
	json_decref(r->j);
	r->j = NULL;
}

static const char *jget_str(json_t *o, const char *path)
{
	json_t *v = json_object_get(o, path);

	assert_non_null(v);
	assert_true(json_is_string(v));
	return json_string_value(v);
}

static json_int_t jget_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_non_null(v);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static bool jget_bool(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_non_null(v);
	assert_true(json_is_boolean(v));
	return json_is_true(v);
}

static void assert_error(struct res *r, int status, const char *code)
{
	json_t *e;

	assert_int_equal(r->status, status);
	e = json_object_get(r->j, "error");
	assert_non_null(e);
	assert_string_equal(jget_str(e, "code"), code);
	assert_true(strlen(jget_str(e, "message")) > 0);
}

static void expect_error(struct fixture *f, const char *method, const char *path, const char *query,
			 const char *body, int status, const char *code)
{
	struct res r = call(f, method, path, query, body);

	assert_error(&r, status, code);
	res_fini(&r);
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

#define YAML_BODY(text)                                                                            \
	"{\"files\": {\"collector.yaml\": {\"content_type\": \"text/yaml\", \"body\": \"" text     \
	"\"}}}"

/* ---- authentication, health, methods ---- */

static void test_auth(void **state)
{
	struct fixture *f = *state;
	struct res r;

	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, NULL);
	assert_error(&r, 401, "unauthorized");
	assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer\r\n"));
	res_fini(&r);

	/* Same length, one byte different. */
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "Bearer s3cret-token-0123456780");
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	/* A prefix of the token, and the token with more after it. */
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "Bearer s3cret");
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "Bearer " TOKEN "x");
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "Basic " TOKEN);
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	/* Unknown /api/ paths do not reveal themselves without the token. */
	r = call_auth(f, "GET", "/api/v1/nothing", NULL, NULL, NULL);
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	r = call_auth(f, "POST", "/api/v1/configs/x", NULL, YAML_BODY("a: 1"), NULL);
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
	r = call(f, "GET", "/api/v1/configs/x", NULL, NULL);
	assert_error(&r, 404, "not_found"); /* the unauthenticated POST stored nothing */
	res_fini(&r);

	/* The scheme is case-insensitive. */
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "bearer " TOKEN);
	assert_int_equal(r.status, 200);
	res_fini(&r);

	/* An empty configured token never authorizes anything. */
	f->admin.token[0] = '\0';
	r = call_auth(f, "GET", "/api/v1/configs", NULL, NULL, "Bearer ");
	assert_error(&r, 401, "unauthorized");
	res_fini(&r);
}

static void test_health_ready_and_routing(void **state)
{
	struct fixture *f = *state;
	struct res r;

	r = call_auth(f, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "status"), "ok");
	res_fini(&r);

	r = call_auth(f, "GET", "/readyz", NULL, NULL, NULL);
	assert_error(&r, 503, "unavailable");
	res_fini(&r);
	f->admin.ready = 1;
	r = call_auth(f, "GET", "/readyz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "status"), "ready");
	res_fini(&r);

	r = call(f, "POST", "/api/v1/configs", NULL, "{}");
	assert_error(&r, 405, "method_not_allowed");
	assert_non_null(strstr(r.headers, "Allow: GET\r\n"));
	res_fini(&r);
	r = call(f, "PUT", "/api/v1/configs/x", NULL, "{}");
	assert_error(&r, 405, "method_not_allowed");
	assert_non_null(strstr(r.headers, "Allow: GET, POST, DELETE\r\n"));
	res_fini(&r);
	r = call(f, "GET", "/api/v1/configs/x/rollback", NULL, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_non_null(strstr(r.headers, "Allow: POST\r\n"));
	res_fini(&r);
	r = call(f, "DELETE", "/api/v1/agents", NULL, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_non_null(strstr(r.headers, "Allow: GET\r\n"));
	res_fini(&r);
	r = call_auth(f, "POST", "/healthz", NULL, NULL, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_non_null(strstr(r.headers, "Allow: GET\r\n"));
	res_fini(&r);

	expect_error(f, "GET", "/", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v2/configs", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/x/versions", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/x/versions/1/extra", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/agents/a/b", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/%zz", NULL, NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/configs/a%00b", NULL, NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/configs/.hidden", NULL, NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/configs/x/versions/abc", NULL, NULL, 400,
		     "invalid_argument");
	expect_error(f, "GET", "/api/v1/configs/x/versions/0", NULL, NULL, 400, "invalid_argument");
}

/* ---- configurations ---- */

static void test_publish(void **state)
{
	struct fixture *f = *state;
	const char *body = "{\"selector\": {\"service.name\": \"api\"}, \"priority\": 5, "
			   "\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", "
			   "\"body\": \"receivers:\\n  otlp: {}\\n\"}}, \"message\": \"first\"}";
	char hash[65];
	struct res r;

	r = call(f, "POST", "/api/v1/configs/web", NULL, body);
	assert_int_equal(r.status, 201);
	assert_string_equal(jget_str(r.j, "name"), "web");
	assert_int_equal(jget_int(r.j, "version"), 1);
	assert_true(jget_bool(r.j, "created"));
	assert_true(is_hex64(jget_str(r.j, "config_hash")));
	snprintf(hash, sizeof hash, "%s", jget_str(r.j, "config_hash"));
	assert_string_equal(jget_str(json_object_get(r.j, "selector"), "service.name"), "api");
	assert_int_equal(jget_int(r.j, "priority"), 5);
	res_fini(&r);

	/* Same content, selector and priority: nothing new. */
	r = call(f, "POST", "/api/v1/configs/web", NULL, body);
	assert_int_equal(r.status, 200);
	assert_false(jget_bool(r.j, "created"));
	assert_int_equal(jget_int(r.j, "version"), 1);
	assert_string_equal(jget_str(r.j, "config_hash"), hash);
	res_fini(&r);

	/* A different priority is a new version with the same hash. */
	r = call(f, "POST", "/api/v1/configs/web", NULL,
		 "{\"selector\": {\"service.name\": \"api\"}, \"priority\": 6, "
		 "\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", "
		 "\"body\": \"receivers:\\n  otlp: {}\\n\"}}}");
	assert_int_equal(r.status, 201);
	assert_int_equal(jget_int(r.j, "version"), 2);
	assert_string_equal(jget_str(r.j, "config_hash"), hash);
	res_fini(&r);

	/* Percent-encoded names are decoded before use. */
	r = call(f, "POST", "/api/v1/configs/my%2Dcfg", NULL, YAML_BODY("a: 1"));
	assert_int_equal(r.status, 201);
	assert_string_equal(jget_str(r.j, "name"), "my-cfg");
	assert_int_equal(json_object_size(json_object_get(r.j, "selector")), 0);
	assert_int_equal(jget_int(r.j, "priority"), 0);
	res_fini(&r);
	r = call(f, "GET", "/api/v1/configs/my-cfg", NULL, NULL);
	assert_int_equal(r.status, 200);
	res_fini(&r);
}

static void test_bad_yaml(void **state)
{
	struct fixture *f = *state;
	json_t *e;
	struct res r;

	r = call(
	    f, "POST", "/api/v1/configs/broken", NULL,
	    "{\"files\": {\"ok.yaml\": {\"content_type\": \"text/yaml\", \"body\": \"a: 1\\n\"},"
	    " \"bad.yaml\": {\"content_type\": \"text/yaml\","
	    " \"body\": \"a: 1\\nb: [1, 2\\nc: 3\\n\"}}}");
	assert_error(&r, 400, "invalid_config");
	e = json_object_get(r.j, "error");
	assert_string_equal(jget_str(e, "file"), "bad.yaml");
	assert_true(jget_int(e, "line") >= 2);
	assert_true(jget_int(e, "column") >= 1);
	res_fini(&r);

	expect_error(f, "GET", "/api/v1/configs/broken", NULL, NULL, 404, "not_found");
	r = call(f, "GET", "/api/v1/configs", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.j, "configs")), 0);
	res_fini(&r);
}

static void test_invalid_json(void **state)
{
	struct fixture *f = *state;

	expect_error(f, "POST", "/api/v1/configs/x", NULL, "{", 400, "invalid_json");
	expect_error(f, "POST", "/api/v1/configs/x", NULL, "", 400, "invalid_json");
	expect_error(f, "POST", "/api/v1/configs/x", NULL, "{\"files\": {}, \"files\": {}}", 400,
		     "invalid_json");
	expect_error(f, "POST", "/api/v1/configs/x", NULL, "{\"message\": \"a\\u0000b\"}", 400,
		     "invalid_json");
	expect_error(f, "POST", "/api/v1/configs/x/rollback", NULL, "{\"version\": ", 400,
		     "invalid_json");
}

#define FILE_A "{\"files\": {\"a\": {\"content_type\": \"text/plain\", \"body\": \"x\"}}"

static void test_wrong_types(void **state)
{
	struct fixture *f = *state;
	static const char *const bodies[] = {
	    "[]",
	    "\"files\"",
	    "{}",
	    "{\"files\": []}",
	    "{\"files\": {}}",
	    "{\"files\": {\"a\": \"text\"}}",
	    "{\"files\": {\"a\": {\"content_type\": \"t\", \"body\": 1}}}",
	    "{\"files\": {\"a\": {\"body\": \"x\"}}}",
	    "{\"files\": {\"a\": {\"content_type\": \"t\", \"body\": \"x\", \"body_base64\": "
	    "\"eA==\"}}}",
	    "{\"files\": {\"a\": {\"content_type\": \"text/plain\"}}}",
	    "{\"files\": {\"a\": {\"content_type\": \"t\", \"body_base64\": \"not base64!\"}}}",
	    "{\"files\": {\"a\": {\"content_type\": \"t\", \"body_base64\": \"eA=\"}}}",
	    "{\"files\": {\"a\": {\"content_type\": \"t\", \"body\": \"x\", \"mode\": 1}}}",
	    "{\"files\": {\"a\": {\"body\": \"x\", \"content_type\": 7}}}",
	    FILE_A ", \"priority\": \"1\"}",
	    FILE_A ", \"priority\": 1.5}",
	    FILE_A ", \"priority\": true}",
	    FILE_A ", \"selector\": []}",
	    FILE_A ", \"selector\": {\"k\": 1}}",
	    FILE_A ", \"selector\": {\"k\": {\"x\": \"y\"}}}",
	    FILE_A ", \"message\": 3}",
	    FILE_A ", \"extra\": 3}",
	};
	struct res r;

	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
		expect_error(f, "POST", "/api/v1/configs/x", NULL, bodies[i], 400,
			     "invalid_argument");
	expect_error(f, "POST", "/api/v1/configs/..x", NULL, YAML_BODY("a: 1"), 400,
		     "invalid_argument");
	r = call(f, "GET", "/api/v1/configs", NULL, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "configs")), 0);
	res_fini(&r);

	/* The same body with the right types is accepted. */
	r = call(f, "POST", "/api/v1/configs/x", NULL,
		 FILE_A ", \"priority\": -3, \"selector\": null}");
	assert_int_equal(r.status, 201);
	assert_int_equal(jget_int(r.j, "priority"), -3);
	res_fini(&r);
}

static void publish_ok(struct fixture *f, const char *name, const char *body, int version,
		       char hash[65])
{
	struct res r = call(f, "POST", name, NULL, body);

	assert_int_equal(r.status, 201);
	assert_int_equal(jget_int(r.j, "version"), version);
	if (hash != NULL)
		snprintf(hash, 65, "%s", jget_str(r.j, "config_hash"));
	res_fini(&r);
}

static void test_list_get_versions(void **state)
{
	struct fixture *f = *state;
	char h1[65], h2[65], hb[65];
	json_t *arr, *c, *v, *file;
	struct res r;

	f->fc.wall_ms =
	    1800000005000ull; /* ahead of the key registration: the HLC follows the wall clock */
	publish_ok(
	    f, "/api/v1/configs/zeta",
	    "{\"selector\": {\"env\": \"prod\"}, \"priority\": 2, \"message\": \"one\","
	    " \"files\": {\"z.yaml\": {\"content_type\": \"text/yaml\", \"body\": \"v: 1\"}}}",
	    1, h1);
	f->fc.wall_ms = 1800000006000ull;
	publish_ok(f, "/api/v1/configs/zeta",
		   "{\"selector\": {\"env\": \"prod\"}, \"priority\": 2, \"message\": \"two\","
		   " \"files\": {\"z.yaml\": {\"content_type\": \"text/yaml\", \"body\": \"v: 2\"},"
		   " \"bin\": {\"content_type\": \"application/octet-stream\","
		   " \"body_base64\": \"AP8Bgg==\"}}}",
		   2, h2);
	assert_string_not_equal(h1, h2);
	publish_ok(f, "/api/v1/configs/alpha", YAML_BODY("x: y"), 1, hb);

	r = call(f, "GET", "/api/v1/configs", NULL, NULL);
	assert_int_equal(r.status, 200);
	arr = json_object_get(r.j, "configs");
	assert_int_equal(json_array_size(arr), 2);
	assert_string_equal(jget_str(json_array_get(arr, 0), "name"), "alpha");
	c = json_array_get(arr, 1);
	assert_string_equal(jget_str(c, "name"), "zeta");
	assert_int_equal(jget_int(c, "priority"), 2);
	assert_int_equal(jget_int(c, "active_version"), 2);
	assert_int_equal(jget_int(c, "latest_version"), 2);
	assert_string_equal(jget_str(c, "config_hash"), h2);
	assert_int_equal(jget_int(c, "updated_ms"), 1800000006000ull);
	assert_string_equal(jget_str(json_object_get(c, "selector"), "env"), "prod");
	res_fini(&r);

	r = call(f, "GET", "/api/v1/configs/zeta", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "name"), "zeta");
	assert_int_equal(jget_int(r.j, "active_version"), 2);
	arr = json_object_get(r.j, "versions");
	assert_int_equal(json_array_size(arr), 2);
	v = json_array_get(arr, 0);
	assert_int_equal(jget_int(v, "version"), 2);
	assert_true(jget_bool(v, "active"));
	assert_string_equal(jget_str(v, "message"), "two");
	assert_string_equal(jget_str(v, "actor"), "admin");
	assert_string_equal(jget_str(v, "config_hash"), h2);
	assert_int_equal(jget_int(v, "created_ms"), 1800000006000ull);
	v = json_array_get(arr, 1);
	assert_int_equal(jget_int(v, "version"), 1);
	assert_false(jget_bool(v, "active"));
	assert_string_equal(jget_str(v, "message"), "one");
	res_fini(&r);

	r = call(f, "GET", "/api/v1/configs/zeta/versions/2", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "name"), "zeta");
	assert_int_equal(jget_int(r.j, "version"), 2);
	assert_true(jget_bool(r.j, "active"));
	assert_string_equal(jget_str(r.j, "config_hash"), h2);
	file = json_object_get(json_object_get(r.j, "files"), "z.yaml");
	assert_non_null(file);
	assert_string_equal(jget_str(file, "content_type"), "text/yaml");
	assert_string_equal(jget_str(file, "body"), "v: 2");
	assert_null(json_object_get(file, "body_base64"));
	/* Not UTF-8: comes back as base64, byte for byte. */
	file = json_object_get(json_object_get(r.j, "files"), "bin");
	assert_non_null(file);
	assert_string_equal(jget_str(file, "body_base64"), "AP8Bgg==");
	assert_null(json_object_get(file, "body"));
	res_fini(&r);

	r = call(f, "GET", "/api/v1/configs/zeta/versions/1", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_false(jget_bool(r.j, "active"));
	assert_string_equal(jget_str(r.j, "message"), "one");
	assert_int_equal(json_object_size(json_object_get(r.j, "files")), 1);
	res_fini(&r);

	expect_error(f, "GET", "/api/v1/configs/zeta/versions/3", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/nope/versions/1", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/nope", NULL, NULL, 404, "not_found");
}

static void test_rollback_delete(void **state)
{
	struct fixture *f = *state;
	char h1[65], h2[65];
	struct res r;

	publish_ok(f, "/api/v1/configs/c", YAML_BODY("v: 1"), 1, h1);
	publish_ok(f, "/api/v1/configs/c", YAML_BODY("v: 2"), 2, h2);

	r = call(f, "POST", "/api/v1/configs/c/rollback", NULL, "{\"version\": 1}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "name"), "c");
	assert_int_equal(jget_int(r.j, "active_version"), 1);
	assert_string_equal(jget_str(r.j, "config_hash"), h1);
	res_fini(&r);
	r = call(f, "GET", "/api/v1/configs/c", NULL, NULL);
	assert_int_equal(jget_int(r.j, "active_version"), 1);
	assert_int_equal(jget_int(r.j, "latest_version"), 2);
	assert_string_equal(jget_str(r.j, "config_hash"), h1);
	res_fini(&r);

	expect_error(f, "POST", "/api/v1/configs/c/rollback", NULL, "{\"version\": 99}", 404,
		     "not_found");
	expect_error(f, "POST", "/api/v1/configs/nope/rollback", NULL, "{\"version\": 1}", 404,
		     "not_found");
	expect_error(f, "POST", "/api/v1/configs/c/rollback", NULL, "{\"version\": \"1\"}", 400,
		     "invalid_argument");
	expect_error(f, "POST", "/api/v1/configs/c/rollback", NULL, "{\"version\": 0}", 400,
		     "invalid_argument");
	expect_error(f, "POST", "/api/v1/configs/c/rollback", NULL, "{}", 400, "invalid_argument");
	expect_error(f, "POST", "/api/v1/configs/c/rollback", NULL,
		     "{\"version\": 1, \"force\": true}", 400, "invalid_argument");

	r = call(f, "DELETE", "/api/v1/configs/c", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "name"), "c");
	assert_true(jget_bool(r.j, "deleted"));
	res_fini(&r);
	expect_error(f, "GET", "/api/v1/configs/c", NULL, NULL, 404, "not_found");
	expect_error(f, "GET", "/api/v1/configs/c/versions/1", NULL, NULL, 404, "not_found");
	expect_error(f, "DELETE", "/api/v1/configs/c", NULL, NULL, 404, "not_found");
	r = call(f, "GET", "/api/v1/configs", NULL, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "configs")), 0);
	res_fini(&r);
}

/* ---- agents ---- */

static struct opd_agent *add_agent(struct fixture *f, uint8_t last_byte)
{
	uint8_t uid[OPD_UID_LEN] = {0xa1, 0xb2, 0xc3, 0xd4};
	int created = 0;
	struct opd_agent *a;

	uid[OPD_UID_LEN - 1] = last_byte;
	a = opd_registry_get(&f->reg, uid, &created);
	assert_non_null(a);
	assert_int_equal(created, 1);
	return a;
}

/* A ComponentHealth nested depth levels deep under "c", packed into a->health_pb. */
static void set_health(struct opd_agent *a, int depth)
{
	Opamp__Proto__V1__ComponentHealth *h = opd_xcalloc((size_t)depth + 1, sizeof *h);
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *e =
	    opd_xcalloc((size_t)depth, sizeof *e);
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry **pe =
	    opd_xcalloc((size_t)depth, sizeof *pe);

	for (int i = 0; i <= depth; i++) {
		opamp__proto__v1__component_health__init(&h[i]);
		h[i].healthy = i != 1;
		h[i].status = i == 0 ? "StatusOK" : "nested";
		h[i].last_error = i == 1 ? "exporter failing" : "";
		h[i].start_time_unix_nano = 1000 + (uint64_t)i;
		h[i].status_time_unix_nano = UINT64_MAX; /* clamped, not wrapped */
		if (i < depth) {
			opamp__proto__v1__component_health__component_health_map_entry__init(&e[i]);
			e[i].key = "c";
			e[i].value = &h[i + 1];
			pe[i] = &e[i];
			h[i].n_component_health_map = 1;
			h[i].component_health_map = &pe[i];
		}
	}
	a->health_len = opamp__proto__v1__component_health__get_packed_size(&h[0]);
	a->health_pb = opd_xmalloc(a->health_len);
	opamp__proto__v1__component_health__pack(&h[0], a->health_pb);
	free(h);
	free(e);
	free(pe);
}

static void populate_agents(struct fixture *f)
{
	struct opd_agent *a, *b, *c;

	/* A: WebSocket, healthy, matched by the "api" configuration. */
	a = add_agent(f, 1);
	a->transport = OPD_TRANSPORT_WS;
	a->connected = 1;
	a->capabilities = 0x1007;
	a->last_seq = 42;
	a->last_seen_wall_ms = 1700000123456ull;
	opd_kvs_add(&a->ident, "service.name", "api");
	opd_kvs_add(&a->nonident, "host.name", "h 1");
	opd_kvs_add(&a->nonident, "bad\xff", "v\xc3");
	set_health(a, 2);
	a->rc_status = OPD_RC_APPLIED;
	a->rc_hash.len = 4;
	memcpy(a->rc_hash.b, "\x01\x02\xab\xff", 4);
	a->has_effective = 1;
	a->effective_hash.len = 2;
	memcpy(a->effective_hash.b, "\xde\xad", 2);
	a->custom_caps = opd_xcalloc(1, sizeof(char *));
	a->custom_caps[0] = opd_xstrdup("io.opampd.signature");
	a->n_custom_caps = 1;

	/* B: plain HTTP, reported unhealthy. */
	b = add_agent(f, 2);
	b->transport = OPD_TRANSPORT_HTTP;
	b->connected = 1;
	b->healthy = 0;
	opd_kvs_add(&b->ident, "service.name", "worker");
	b->rc_status = OPD_RC_FAILED;
	b->rc_error = opd_xstrdup("bad config");
	opd_phi_heartbeat(&b->phi, opd_clock_now(&f->fc.clock));

	/* C: gone. */
	c = add_agent(f, 3);
	c->transport = OPD_TRANSPORT_NONE;
	c->connected = 0;
	opd_kvs_add(&c->ident, "service.name", "api");
	opd_kvs_add(&c->nonident, "host.name", "h2");
}

static json_t *find_agent(json_t *agents, const char *uid)
{
	for (size_t i = 0; i < json_array_size(agents); i++)
		if (strcmp(jget_str(json_array_get(agents, i), "instance_uid"), uid) == 0)
			return json_array_get(agents, i);
	return NULL;
}

#define UID_A "a1b2c3d4000000000000000000000001"
#define UID_B "a1b2c3d4000000000000000000000002"
#define UID_C "a1b2c3d4000000000000000000000003"

static void expect_agents(struct fixture *f, const char *query, const char *const *uids, size_t n)
{
	struct res r = call(f, "GET", "/api/v1/agents", query, NULL);
	json_t *arr;

	assert_int_equal(r.status, 200);
	arr = json_object_get(r.j, "agents");
	assert_int_equal(json_array_size(arr), n);
	assert_int_equal(jget_int(r.j, "count"), n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(jget_str(json_array_get(arr, i), "instance_uid"), uids[i]);
	res_fini(&r);
}

static void test_agents_list(void **state)
{
	struct fixture *f = *state;
	static const char *const all[] = {UID_A, UID_B, UID_C};
	static const char *const only_a[] = {UID_A};
	static const char *const only_b[] = {UID_B};
	static const char *const only_c[] = {UID_C};
	static const char *const a_c[] = {UID_A, UID_C};
	static const char *const a_b[] = {UID_A, UID_B};
	json_t *ag, *health, *ch, *rcs, *dc;
	struct res r;

	publish_ok(
	    f, "/api/v1/configs/api-cfg",
	    "{\"selector\": {\"service.name\": \"api\"}, "
	    "\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", \"body\": \"a: 1\"}}}",
	    1, NULL);
	populate_agents(f);

	expect_agents(f, NULL, all, 3);
	expect_agents(f, "", all, 3);
	expect_agents(f, "health=healthy", only_a, 1);
	expect_agents(f, "health=degraded", only_b, 1);
	expect_agents(f, "health=down", only_c, 1);
	expect_agents(f, "health=suspect", NULL, 0);
	expect_agents(f, "connected=true", a_b, 2);
	expect_agents(f, "connected=false", only_c, 1);
	expect_agents(f, "attr.service.name=api", a_c, 2);
	expect_agents(f, "attr.service%2Ename=api&connected=true", only_a, 1);
	/* Non-identifying attributes match too; '+' and %20 are spaces. */
	expect_agents(f, "attr.host.name=h+1", only_a, 1);
	expect_agents(f, "attr.host.name=h%201", only_a, 1);
	expect_agents(f, "attr.host.name=h2&attr.service.name=api", only_c, 1);
	expect_agents(f, "attr.host.name=h2&attr.service.name=worker", NULL, 0);
	expect_agents(f, "&&attr.service.name=worker&", only_b, 1);

	expect_error(f, "GET", "/api/v1/agents", "health=sick", NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "health=down&health=healthy", NULL, 400,
		     "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "connected=yes", NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "heath=down", NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "attr.=x", NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "attr.k=%G1", NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents", "attr.k=%4", NULL, 400, "invalid_argument");

	r = call(f, "GET", "/api/v1/agents", NULL, NULL);
	ag = find_agent(json_object_get(r.j, "agents"), UID_A);
	assert_non_null(ag);
	assert_true(jget_bool(ag, "connected"));
	assert_string_equal(jget_str(ag, "transport"), "websocket");
	assert_int_equal(jget_int(ag, "capabilities"), 0x1007);
	assert_int_equal(jget_int(ag, "sequence_num"), 42);
	assert_int_equal(jget_int(ag, "last_seen_ms"), 1700000123456ll);
	assert_string_equal(jget_str(json_object_get(ag, "identifying_attributes"), "service.name"),
			    "api");
	assert_string_equal(
	    jget_str(json_object_get(ag, "non_identifying_attributes"), "host.name"), "h 1");
	/* Invalid UTF-8 from an agent is replaced, not dropped. */
	assert_string_equal(
	    jget_str(json_object_get(ag, "non_identifying_attributes"), "bad\xef\xbf\xbd"),
	    "v\xef\xbf\xbd");
	health = json_object_get(ag, "health");
	assert_string_equal(jget_str(health, "state"), "healthy");
	assert_true(json_is_number(json_object_get(health, "phi")));
	ch = json_object_get(health, "component_health");
	assert_true(json_is_object(ch));
	assert_true(jget_bool(ch, "healthy"));
	assert_string_equal(jget_str(ch, "status"), "StatusOK");
	assert_int_equal(jget_int(ch, "start_time_unix_nano"), 1000);
	assert_int_equal(jget_int(ch, "status_time_unix_nano"), INT64_MAX);
	ch = json_object_get(json_object_get(ch, "components"), "c");
	assert_non_null(ch);
	assert_false(jget_bool(ch, "healthy"));
	assert_string_equal(jget_str(ch, "last_error"), "exporter failing");
	ch = json_object_get(json_object_get(ch, "components"), "c");
	assert_non_null(ch);
	assert_int_equal(json_object_size(json_object_get(ch, "components")), 0);
	dc = json_object_get(ag, "desired_config");
	assert_true(json_is_object(dc));
	assert_string_equal(jget_str(dc, "name"), "api-cfg");
	assert_int_equal(jget_int(dc, "version"), 1);
	assert_true(is_hex64(jget_str(dc, "config_hash")));
	rcs = json_object_get(ag, "remote_config_status");
	assert_string_equal(jget_str(rcs, "status"), "APPLIED");
	assert_string_equal(jget_str(rcs, "config_hash"), "0102abff");
	assert_string_equal(jget_str(rcs, "error_message"), "");
	assert_string_equal(jget_str(ag, "effective_config_hash"), "dead");
	assert_int_equal(json_array_size(json_object_get(ag, "custom_capabilities")), 1);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(ag, "custom_capabilities"), 0)),
	    "io.opampd.signature");

	ag = find_agent(json_object_get(r.j, "agents"), UID_B);
	assert_non_null(ag);
	assert_string_equal(jget_str(ag, "transport"), "http");
	assert_string_equal(jget_str(json_object_get(ag, "health"), "state"), "degraded");
	assert_true(
	    json_is_null(json_object_get(json_object_get(ag, "health"), "component_health")));
	assert_true(json_is_null(json_object_get(ag, "desired_config")));
	assert_true(json_is_null(json_object_get(ag, "effective_config_hash")));
	rcs = json_object_get(ag, "remote_config_status");
	assert_string_equal(jget_str(rcs, "status"), "FAILED");
	assert_true(json_is_null(json_object_get(rcs, "config_hash")));
	assert_string_equal(jget_str(rcs, "error_message"), "bad config");

	ag = find_agent(json_object_get(r.j, "agents"), UID_C);
	assert_string_equal(jget_str(ag, "transport"), "none");
	assert_false(jget_bool(ag, "connected"));
	res_fini(&r);

	/* An HTTP agent that stopped polling becomes suspect, then down, by phi. */
	opd_fake_clock_advance(&f->fc, 30u * 60 * 1000);
	r = call(f, "GET", "/api/v1/agents/" UID_B, NULL, NULL);
	assert_int_equal(r.status, 200);
	health = json_object_get(r.j, "health");
	assert_string_not_equal(jget_str(health, "state"), "degraded");
	assert_true(json_real_value(json_object_get(health, "phi")) >= 8.0);
	res_fini(&r);
}

static void test_agent_get(void **state)
{
	struct fixture *f = *state;
	static const char *const forms[] = {
	    "/api/v1/agents/" UID_A,
	    "/api/v1/agents/A1B2C3D4000000000000000000000001",
	    "/api/v1/agents/a1b2c3d4-0000-0000-0000-000000000001",
	    "/api/v1/agents/A1B2C3D4-0000-0000-0000-000000000001",
	};
	struct res r;

	populate_agents(f);
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		r = call(f, "GET", forms[i], NULL, NULL);
		assert_int_equal(r.status, 200);
		assert_string_equal(jget_str(r.j, "instance_uid"), UID_A);
		assert_string_equal(jget_str(json_object_get(r.j, "health"), "state"), "healthy");
		res_fini(&r);
	}
	expect_error(f, "GET", "/api/v1/agents/a1b2c3d4000000000000000000000009", NULL, NULL, 404,
		     "not_found");
	expect_error(f, "GET", "/api/v1/agents/a1b2c3d4-0000-0000-0000-000000000009", NULL, NULL,
		     404, "not_found");
	expect_error(f, "GET", "/api/v1/agents/xyz", NULL, NULL, 400, "invalid_argument");
	expect_error(f, "GET", "/api/v1/agents/a1b2c3d40000000000000000000000011", NULL, NULL, 400,
		     "invalid_argument");
}

static json_int_t health_depth(json_t *h)
{
	json_int_t d = 0;

	for (;;) {
		json_t *next = json_object_get(json_object_get(h, "components"), "c");
		if (next == NULL)
			return d;
		h = next;
		d++;
	}
}

static void test_health_depth_bounded(void **state)
{
	struct fixture *f = *state;
	struct opd_agent *a = add_agent(f, 7);
	struct res r;

	set_health(a, 40);
	r = call(f, "GET", "/api/v1/agents/a1b2c3d4000000000000000000000007", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(
	    health_depth(json_object_get(json_object_get(r.j, "health"), "component_health")), 16);
	res_fini(&r);
}

static void test_too_large(void **state)
{
	struct fixture *f = *state;
	size_t n = (4u << 20) + 1;
	char *big = opd_xmalloc(n + 1);
	struct res r;

	memset(big, ' ', n);
	big[n] = '\0';
	r = call(f, "POST", "/api/v1/configs/x", NULL, big);
	assert_error(&r, 413, "too_large");
	res_fini(&r);
	free(big);
}

/* The log level changes at run time, per node; nonsense is refused and changes nothing. */
static void test_log_level(void **state)
{
	struct fixture *f = *state;
	struct res r;

	r = call(f, "GET", "/api/v1/log-level", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "level"), "info");
	res_fini(&r);
	r = call(f, "PUT", "/api/v1/log-level", NULL, "{\"level\": \"debug\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jget_str(r.j, "level"), "debug");
	assert_true(opd_log_enabled(OPD_LOG_DEBUG));
	res_fini(&r);
	r = call(f, "PUT", "/api/v1/log-level", NULL, "{\"level\": \"loud\"}");
	assert_int_equal(r.status, 400);
	res_fini(&r);
	r = call(f, "GET", "/api/v1/log-level", NULL, NULL);
	assert_string_equal(jget_str(r.j, "level"), "debug");
	res_fini(&r);
	r = call_auth(f, "PUT", "/api/v1/log-level", NULL, "{\"level\": \"error\"}", NULL);
	assert_int_equal(r.status, 401);
	res_fini(&r);
	opd_log_init(OPD_LOG_INFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_level, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health_ready_and_routing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_yaml, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_get_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rollback_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agents_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health_depth_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
