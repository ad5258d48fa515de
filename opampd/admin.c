#include "admin.h"

#include "certs.h"
#include "err.h"
#include "hex.h"
#include "internal.h"
#include "json_parse.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "opamp/v1/opamp.pb-c.h"
#include "selector.h"
#include "store.h"
#include "utf8.h"
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BODY (4u << 20)      /* the HTTP layer enforces the same; kept as a second fence */
#define OPD_ADMIN_MAX_SEGMENTS 6 /* /api/v1/configs/{name}/versions/{n} */
#define MAX_SEGMENT 256          /* longer than any name (128) or uid (36) */
#define MAX_ATTR_FILTERS 32
#define MAX_HEALTH_DEPTH 16

/* ---- responses ---- */

void opd_admin_response_init(struct opd_admin_response *r)
{
	r->status = 500;
	r->content_type = "application/json";
	opd_buf_init(&r->headers);
	opd_buf_init(&r->body);
}

void opd_admin_response_fini(struct opd_admin_response *r)
{
	opd_buf_fini(&r->headers);
	opd_buf_fini(&r->body);
}

static int dump_cb(const char *p, size_t n, void *data)
{
	opd_buf_append(data, p, n);
	return 0;
}

/* Takes ownership of j. A NULL j (a construction that failed) becomes a 500. */
void opd_admin__reply(struct opd_admin_response *resp, int status, json_t *j)
{
	opd_buf_reset(&resp->body);
	resp->content_type = "application/json";
	if (j == NULL) {
		static const char oops[] = "{\"error\":{\"code\":\"internal\",\"message\":\"could "
					   "not build response\"}}\n";
		resp->status = 500;
		opd_buf_append(&resp->body, oops, sizeof(oops) - 1);
		return;
	}
	resp->status = status;
	json_dump_callback(j, dump_cb, &resp->body, JSON_COMPACT | JSON_REAL_PRECISION(10));
	opd_buf_append_byte(&resp->body, '\n');
	json_decref(j);
}

static json_t *error_obj(const char *code, const char *message)
{
	json_t *e = json_object();

	json_object_set_new(e, "code", json_string(code));
	/* Messages may quote user input; jansson refuses invalid UTF-8, so fall back. */
	json_t *m = json_string(message);
	json_object_set_new(e, "message", m != NULL ? m : json_string("invalid request"));
	return e;
}

static void reply_error_obj(struct opd_admin_response *resp, int status, json_t *e)
{
	json_t *root = json_object();

	json_object_set_new(root, "error", e);
	opd_admin__reply(resp, status, root);
}

void opd_admin__reply_error(struct opd_admin_response *resp, int status, const char *code,
			    const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_error_obj(resp, status, error_obj(code, msg));
}

void opd_admin__reply_not_found(struct opd_admin_response *resp)
{
	opd_admin__reply_error(resp, 404, "not_found", "not found");
}

void opd_admin__reply_method(struct opd_admin_response *resp, const char *allow)
{
	opd_buf_appendf(&resp->headers, "Allow: %s\r\n", allow);
	opd_admin__reply_error(resp, 405, "method_not_allowed", "method not allowed; allowed: %s",
			       allow);
}

void opd_admin__reply_store_error(struct opd_admin_response *resp, int rc)
{
	if (rc == OPD_ENOTFOUND)
		opd_admin__reply_not_found(resp);
	else if (rc == OPD_ENOTLEADER)
		opd_admin__reply_error(resp, 503, "unavailable", "%s", opd_strerror(rc));
	else
		opd_admin__reply_error(resp, 500, "internal", "%s", opd_strerror(rc));
}

/* ---- text helpers ---- */

static bool is_text(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = opd_utf8_seq(p + i, n - i);
		if (l == 0)
			return false;
		i += l;
	}
	return true;
}

/* Agents send arbitrary bytes as attribute text: replace what JSON cannot carry with U+FFFD. */
static char *sanitize(const char *s)
{
	size_t n = strlen(s);
	struct opd_buf b;
	size_t len;

	opd_buf_init(&b);
	for (size_t i = 0; i < n;) {
		size_t l = opd_utf8_seq((const uint8_t *)s + i, n - i);
		if (l == 0) {
			opd_buf_append(&b, "\xef\xbf\xbd", 3);
			i++;
		} else {
			opd_buf_append(&b, s + i, l);
			i += l;
		}
	}
	opd_buf_append_byte(&b, 0);
	return (char *)opd_buf_steal(&b, &len);
}

json_t *opd_admin__jstr(const char *s)
{
	json_t *j;
	char *t;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	t = sanitize(s);
	j = json_string(t);
	free(t);
	return j;
}

static void set_kv(json_t *obj, const char *key, json_t *val)
{
	char *k;

	/* Check first: json_object_set_new consumes val even when it refuses the key. */
	if (is_text((const uint8_t *)key, strlen(key))) {
		json_object_set_new(obj, key, val);
		return;
	}
	k = sanitize(key);
	json_object_set_new(obj, k, val);
	free(k);
}

/* JSON integers are signed 64-bit: clamp rather than wrap. */
json_t *opd_admin__ju64(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

static json_t *jhex(const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];

	if (n == 0)
		return json_null();
	if (n > 64)
		n = 64;
	opd_hex_encode(p, n, hex);
	return json_string(hex);
}

json_t *opd_admin__jkvs(const struct opd_kvs *kvs)
{
	json_t *o = json_object();

	for (size_t i = 0; i < kvs->n; i++)
		set_kv(o, kvs->v[i].key, opd_admin__jstr(kvs->v[i].value));
	return o;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_encode(const uint8_t *p, size_t n)
{
	char *out = opd_xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
	json_t *j;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	j = json_string(out);
	free(out);
	return j;
}

static int b64val(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;

	return p != NULL ? (int)(p - b64) : -1;
}

/* Strict RFC 4648 with padding. Returns a new buffer (*len bytes) or NULL. */
static uint8_t *base64_decode(const char *s, size_t n, size_t *len)
{
	uint8_t *out, *o;

	if (n % 4 != 0)
		return NULL;
	o = out = opd_xmalloc(n / 4 * 3 + 1);
	for (size_t i = 0; i < n; i += 4) {
		int a = b64val(s[i]), b = b64val(s[i + 1]), c = b64val(s[i + 2]),
		    d = b64val(s[i + 3]);
		bool last = i + 4 == n;

		if (a < 0 || b < 0)
			goto bad;
		if (c < 0 && !(last && s[i + 2] == '=' && s[i + 3] == '='))
			goto bad;
		if (d < 0 && !(last && s[i + 3] == '='))
			goto bad;
		*o++ = (uint8_t)(a << 2 | b >> 4);
		if (c >= 0)
			*o++ = (uint8_t)((b & 15) << 4 | c >> 2);
		if (d >= 0)
			*o++ = (uint8_t)((c & 3) << 6 | d);
	}
	*len = (size_t)(o - out);
	return out;
bad:
	free(out);
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode n bytes of s into out (cap bytes, NUL-terminated); '+' is a
 * space when plus is set (query strings). Returns 0, or OPD_EINVAL for a bad
 * escape or an encoded NUL, or OPD_ETOOBIG when it does not fit.
 */
int opd_admin__url_decode(const char *s, size_t n, bool plus, char *out, size_t cap)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return OPD_EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				return OPD_EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (j + 1 >= cap)
			return OPD_ETOOBIG;
		out[j++] = c;
	}
	out[j] = '\0';
	return 0;
}

/* ---- authentication ---- */

static bool token_equal(const char *h, const char *token, size_t cap)
{
	size_t want = strnlen(token, cap);

	if (want == 0 || want == cap)
		return false;
	/* The length is not secret (it is fixed per install); the bytes are. */
	return strlen(h) == want && CRYPTO_memcmp(h, token, want) == 0;
}

/* The bearer token of the request, or NULL. */
static const char *bearer(const struct opd_http_request *req)
{
	const char *h = opd_http_header(req, "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h;
}

/* Another node of the cluster (forwarded writes, fan-out reads). */
static bool is_peer(const struct opd_admin *a, const struct opd_http_request *req)
{
	const char *h = bearer(req);

	return h != NULL && token_equal(h, a->peer_token, sizeof(a->peer_token));
}

static bool authorized(const struct opd_admin *a, const struct opd_http_request *req)
{
	const char *h = bearer(req);

	if (h == NULL)
		return false;
	return token_equal(h, a->token, sizeof(a->token)) || is_peer(a, req);
}

/* ---- configurations ---- */

static json_t *config_json(const struct opd_config_info *c)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", opd_admin__jstr(c->name));
	json_object_set_new(o, "selector", opd_admin__jkvs(&c->selector));
	json_object_set_new(o, "priority", json_integer(c->priority));
	json_object_set_new(o, "active_version", opd_admin__ju64(c->active_version));
	json_object_set_new(o, "latest_version", opd_admin__ju64(c->latest_version));
	json_object_set_new(o, "config_hash", jhex(c->active_hash, OPD_CONFIG_HASH_LEN));
	json_object_set_new(o, "updated_ms", opd_admin__ju64(c->updated_ms));
	return o;
}

static int list_config_cb(void *data, const struct opd_config_info *c)
{
	json_array_append_new(data, config_json(c));
	return 0;
}

static void configs_list(struct opd_admin *a, struct opd_admin_response *resp)
{
	json_t *arr = json_array(), *root;
	int rc = opd_store_foreach_config(&a->configs->store, list_config_cb, arr);

	if (rc != 0) {
		json_decref(arr);
		opd_admin__reply_store_error(resp, rc);
		return;
	}
	root = json_object();
	json_object_set_new(root, "configs", arr);
	opd_admin__reply(resp, 200, root);
}

struct versions_ctx {
	json_t *arr;
	uint64_t active;
};

static json_t *version_json(const struct opd_version_info *v, uint64_t active)
{
	json_t *o = json_object();

	json_object_set_new(o, "version", opd_admin__ju64(v->version));
	json_object_set_new(o, "config_hash", jhex(v->hash, OPD_CONFIG_HASH_LEN));
	json_object_set_new(o, "message", opd_admin__jstr(v->message != NULL ? v->message : ""));
	json_object_set_new(o, "actor", opd_admin__jstr(v->actor != NULL ? v->actor : ""));
	json_object_set_new(o, "created_ms", opd_admin__ju64(v->created_ms));
	json_object_set_new(o, "active", json_boolean(v->version == active));
	return o;
}

static int version_cb(void *data, const struct opd_version_info *v)
{
	struct versions_ctx *ctx = data;

	json_array_append_new(ctx->arr, version_json(v, ctx->active));
	return 0;
}

static void config_get(struct opd_admin *a, const char *name, struct opd_admin_response *resp)
{
	struct opd_config_info info = {0};
	struct versions_ctx ctx;
	json_t *o;
	int rc = opd_store_get_config(&a->configs->store, name, &info);

	if (rc != 0) {
		opd_config_info_fini(&info);
		opd_admin__reply_store_error(resp, rc);
		return;
	}
	ctx.arr = json_array();
	ctx.active = info.active_version;
	rc = opd_store_foreach_version(&a->configs->store, name, version_cb, &ctx);
	if (rc != 0) {
		json_decref(ctx.arr);
		opd_config_info_fini(&info);
		opd_admin__reply_store_error(resp, rc);
		return;
	}
	o = config_json(&info);
	json_object_set_new(o, "versions", ctx.arr);
	opd_config_info_fini(&info);
	opd_admin__reply(resp, 200, o);
}

static void version_get(struct opd_admin *a, const char *name, uint64_t version,
			struct opd_admin_response *resp)
{
	struct opd_config_info info = {0};
	struct opd_version_info v = {0};
	json_t *o, *files;
	int rc;

	/* A deleted configuration is gone from the API even though its versions stay for audit. */
	rc = opd_store_get_config(&a->configs->store, name, &info);
	if (rc == 0)
		rc = opd_store_get_version(&a->configs->store, name, version, &v);
	if (rc != 0) {
		opd_config_info_fini(&info);
		opd_version_info_fini(&v);
		opd_admin__reply_store_error(resp, rc);
		return;
	}
	o = version_json(&v, info.active_version);
	json_object_set_new(o, "name", opd_admin__jstr(name));
	/* Provenance: the signed record's fields, the signature, and whether it checks out here. */
	json_object_set_new(o, "selector", opd_admin__jkvs(&v.selector));
	json_object_set_new(o, "priority",
			    json_integer(v.has_priority ? v.priority : info.priority));
	json_object_set_new(o, "term", opd_admin__ju64(v.term));
	json_object_set_new(o, "hlc_logical", opd_admin__ju64(v.hlc_logical));
	json_object_set_new(o, "key_id", opd_admin__jstr(v.key_id != NULL ? v.key_id : ""));
	json_object_set_new(o, "signature",
			    v.signature_len ? base64_encode(v.signature, v.signature_len)
					    : json_null());
	json_object_set_new(o, "verified", json_boolean(opd_configs_verify(a->configs, &v, &info)));
	files = json_object();
	for (size_t i = 0; i < v.files.n; i++) {
		const struct opd_file *f = &v.files.v[i];
		json_t *fo = json_object(), *body = NULL;

		json_object_set_new(
		    fo, "content_type",
		    opd_admin__jstr(f->content_type != NULL ? f->content_type : ""));
		if (is_text(f->body, f->len))
			body = json_stringn((const char *)f->body, f->len);
		if (body != NULL)
			json_object_set_new(fo, "body", body);
		else
			json_object_set_new(fo, "body_base64", base64_encode(f->body, f->len));
		set_kv(files, f->name != NULL ? f->name : "", fo);
	}
	json_object_set_new(o, "files", files);
	opd_config_info_fini(&info);
	opd_version_info_fini(&v);
	opd_admin__reply(resp, 200, o);
}

/* Parse the request body as a JSON object; on failure the error response is written. */
json_t *opd_admin__parse_body(const struct opd_http_request *req, struct opd_admin_response *resp)
{
	struct opd_json_error err;
	json_t *root;

	if (req->body_len > MAX_BODY) {
		opd_admin__reply_error(resp, 413, "too_large", "request body over %u bytes",
				       MAX_BODY);
		return NULL;
	}
	if (req->body_len == 0) {
		opd_admin__reply_error(resp, 400, "invalid_json", "empty request body");
		return NULL;
	}
	/* Any JSON value parses, so a non-object is invalid_argument, not invalid_json. */
	root = opd_json_parse(req->body, req->body_len, &err);
	if (root == NULL) {
		opd_admin__reply_error(resp, 400, "invalid_json", "line %d column %d: %s", err.line,
				       err.column, err.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "the request body must be a JSON object");
		return NULL;
	}
	return root;
}

/* The first key of obj not in allowed (NULL-terminated), or NULL. */
const char *opd_admin__unknown_key(json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val)
	{
		size_t i;
		for (i = 0; allowed[i] != NULL; i++)
			if (strcmp(key, allowed[i]) == 0)
				break;
		if (allowed[i] == NULL)
			return key;
	}
	return NULL;
}

/*
 * Turn the publish body into selector, files and the rest. Returns NULL on
 * success or a message for a 400 invalid_argument (written into msg).
 */
static const char *parse_publish(json_t *root, struct opd_kvs *selector, struct opd_files *files,
				 int64_t *priority, const char **message, char *msg, size_t cap)
{
	static const char *const top[] = {"selector", "priority", "files", "message", NULL};
	static const char *const file_keys[] = {"content_type", "body", "body_base64", NULL};
	json_t *sel = json_object_get(root, "selector");
	json_t *pri = json_object_get(root, "priority");
	json_t *fs = json_object_get(root, "files");
	json_t *m = json_object_get(root, "message");
	const char *key;
	json_t *val;

	if ((key = opd_admin__unknown_key(root, top)) != NULL) {
		snprintf(msg, cap, "unknown field \"%s\"", key);
		return msg;
	}
	if (sel != NULL && !json_is_null(sel)) {
		if (!json_is_object(sel))
			return "\"selector\" must be an object of strings";
		if (json_object_size(sel) > OPD_MAX_SELECTOR_PAIRS) {
			snprintf(msg, cap, "\"selector\" has more than %d pairs",
				 OPD_MAX_SELECTOR_PAIRS);
			return msg;
		}
		json_object_foreach(sel, key, val)
		{
			if (!json_is_string(val)) {
				snprintf(msg, cap, "selector \"%s\" must be a string", key);
				return msg;
			}
			opd_kvs_add(selector, key, json_string_value(val));
		}
	}
	if (pri != NULL && !json_is_null(pri)) {
		if (!json_is_integer(pri))
			return "\"priority\" must be an integer";
		*priority = json_integer_value(pri);
	}
	if (m != NULL && !json_is_null(m)) {
		if (!json_is_string(m))
			return "\"message\" must be a string";
		*message = json_string_value(m);
	}
	if (fs == NULL || !json_is_object(fs))
		return "\"files\" must be an object of files";
	if (json_object_size(fs) == 0)
		return "\"files\" must name at least one file";
	if (json_object_size(fs) > OPD_MAX_FILES) {
		snprintf(msg, cap, "more than %d files", OPD_MAX_FILES);
		return msg;
	}
	json_object_foreach(fs, key, val)
	{
		json_t *ct, *body, *b64body;
		const char *content_type;

		if (!json_is_object(val)) {
			snprintf(msg, cap, "file \"%s\" must be an object", key);
			return msg;
		}
		const char *bad = opd_admin__unknown_key(val, file_keys);
		if (bad != NULL) {
			snprintf(msg, cap, "file \"%s\": unknown field \"%s\"", key, bad);
			return msg;
		}
		ct = json_object_get(val, "content_type");
		body = json_object_get(val, "body");
		b64body = json_object_get(val, "body_base64");
		if (ct == NULL || !json_is_string(ct)) {
			snprintf(msg, cap, "file \"%s\": \"content_type\" must be a string", key);
			return msg;
		}
		content_type = json_string_value(ct);
		if ((body == NULL) == (b64body == NULL)) {
			snprintf(msg, cap,
				 "file \"%s\" needs exactly one of \"body\", \"body_base64\"", key);
			return msg;
		}
		if (body != NULL) {
			if (!json_is_string(body)) {
				snprintf(msg, cap, "file \"%s\": \"body\" must be a string", key);
				return msg;
			}
			opd_files_add(files, key, content_type, json_string_value(body),
				      json_string_length(body));
		} else {
			size_t len;
			uint8_t *bytes;

			if (!json_is_string(b64body)) {
				snprintf(msg, cap, "file \"%s\": \"body_base64\" must be a string",
					 key);
				return msg;
			}
			bytes = base64_decode(json_string_value(b64body),
					      json_string_length(b64body), &len);
			if (bytes == NULL) {
				snprintf(msg, cap, "file \"%s\": \"body_base64\" is not base64",
					 key);
				return msg;
			}
			opd_files_add(files, key, content_type, bytes, len);
			free(bytes);
		}
	}
	return NULL;
}

struct admin_call *opd_admin__call_new(struct opd_admin *a, void *conn, enum call_kind kind,
				       const char *name, struct opd_admin_response *resp)
{
	struct admin_call *c = opd_xcalloc(1, sizeof(*c));

	c->a = a;
	c->conn = conn;
	c->sync_resp = resp;
	c->kind = kind;
	snprintf(c->name, sizeof(c->name), "%s", name);
	opd_kvs_init(&c->selector);
	opd_list_insert_tail(&a->calls, &c->link);
	return c;
}

void opd_admin__call_free(struct admin_call *c)
{
	opd_list_remove(&c->link);
	opd_kvs_fini(&c->selector);
	free(c);
}

/*
 * The request id that makes a write idempotent: SHA-256 of the client's
 * Idempotency-Key (first 16 bytes), or random bytes when it sent none.
 */
int opd_admin__request_id(const struct opd_http_request *req, uint8_t id[OPD_REQUEST_ID_LEN],
			  struct opd_admin_response *resp)
{
	const char *key = opd_http_header(req, "Idempotency-Key");
	uint8_t digest[32];
	unsigned int len = 0;

	if (key == NULL) {
		if (RAND_bytes(id, OPD_REQUEST_ID_LEN) != 1)
			abort();
		return 0;
	}
	if (key[0] == '\0' || strlen(key) > 128) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "Idempotency-Key must be 1 to 128 characters");
		return -1;
	}
	if (!EVP_Digest(key, strlen(key), digest, &len, EVP_sha256(), NULL))
		abort();
	memcpy(id, digest, OPD_REQUEST_ID_LEN);
	return 0;
}

void opd_admin__reply_write_error(struct opd_admin_response *resp, const struct opd_write_result *r)
{
	switch (r->status) {
	case OPD_EINVAL: {
		json_t *e =
		    error_obj("invalid_config", r->verr.message[0] ? r->verr.message : r->message);
		if (r->verr.file[0] != '\0')
			set_kv(e, "file", opd_admin__jstr(r->verr.file));
		if (r->verr.line > 0) {
			json_object_set_new(e, "line", opd_admin__ju64(r->verr.line));
			json_object_set_new(e, "column", opd_admin__ju64(r->verr.column));
		}
		reply_error_obj(resp, 400, e);
		return;
	}
	case OPD_ENOTFOUND:
		opd_admin__reply_error(resp, 404, "not_found", "%s",
				       r->message[0] ? r->message : "not found");
		return;
	case OPD_ECONFLICT:
		opd_admin__reply_error(resp, 409, "conflict", "%s", r->message);
		return;
	case OPD_ENOTLEADER:
		opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
		opd_admin__reply_error(
		    resp, 503, "outcome_unknown",
		    "leadership was lost before the change was applied: it may or may not "
		    "take effect; retry with the same Idempotency-Key");
		return;
	case OPD_ECANCELED:
		opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
		opd_admin__reply_error(resp, 503, "unavailable", "the node is shutting down");
		return;
	default:
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       r->message[0] ? r->message : opd_strerror(r->status));
	}
}

static void call_done(void *data, const struct opd_write_result *r)
{
	struct admin_call *c = data;
	struct opd_admin_response local, *resp = c->sync_resp;
	json_t *o;

	if (resp == NULL) {
		opd_admin_response_init(&local);
		resp = &local;
	}
	if (r->status != 0) {
		opd_admin__reply_write_error(resp, r);
	} else {
		o = json_object();
		json_object_set_new(o, "name", opd_admin__jstr(c->name));
		switch (c->kind) {
		case CALL_PUBLISH:
			json_object_set_new(o, "version", opd_admin__ju64(r->version));
			json_object_set_new(o, "config_hash", jhex(r->hash, OPD_CONFIG_HASH_LEN));
			json_object_set_new(o, "created", json_boolean(r->created));
			json_object_set_new(o, "selector", opd_admin__jkvs(&c->selector));
			json_object_set_new(o, "priority", json_integer(c->priority));
			break;
		case CALL_ROLLBACK:
			json_object_set_new(o, "active_version", opd_admin__ju64(r->version));
			json_object_set_new(o, "config_hash", jhex(r->hash, OPD_CONFIG_HASH_LEN));
			break;
		case CALL_DELETE:
			json_object_set_new(o, "deleted", json_true());
			break;
		default: /* certificate calls complete through cert_call_done */
			break;
		}
		json_object_set_new(o, "request_id", opd_admin__jstr(c->request_id));
		/* A follower relaying this answer waits until it has applied this index itself:
		 * tell it the entry is committed now, not with the next heartbeat. */
		if (r->index > 0)
			json_object_set_new(o, "applied_index", opd_admin__ju64(r->index));
		if (r->index > 0 && c->forwarded && c->a->configs->node != NULL)
			opd_node_nudge(c->a->configs->node);
		if (r->duplicate)
			json_object_set_new(o, "duplicate", json_true());
		opd_admin__reply(resp, c->kind == CALL_PUBLISH && r->created ? 201 : 200, o);
	}
	c->answered = 1;
	if (resp == &local) {
		if (c->conn != NULL && c->a->ops.complete != NULL)
			c->a->ops.complete(c->a->ops.data, c->conn, resp);
		opd_admin_response_fini(&local);
		opd_admin__call_free(c);
	}
}

/* Another node passed this request on (cluster.c sets the header on what it forwards). */
static int forwarded_by_peer(const struct opd_http_request *req)
{
	return opd_http_header(req, "X-Opampd-Forwarded") != NULL;
}

/*
 * Start a write: 0 with resp filled (answered at once), OPD_EAGAIN deferred.
 * rc is what the configuration service returned when asked.
 */
int opd_admin__call_started(struct admin_call *c, int rc, struct opd_admin_response *resp)
{
	if (rc != 0) {
		/* Not writable after all (lost leadership in between): nothing was proposed. */
		opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
		opd_admin__reply_error(resp, 503, "read_only",
				       "this node cannot accept writes now");
		opd_admin__call_free(c);
		return 0;
	}
	if (c->answered) {
		opd_admin__call_free(c);
		return 0;
	}
	c->sync_resp = NULL;
	return OPD_EAGAIN;
}

static int config_publish(struct opd_admin *a, const char *name, const struct opd_http_request *req,
			  void *conn, struct opd_admin_response *resp)
{
	struct opd_files files;
	uint8_t id[OPD_REQUEST_ID_LEN];
	int64_t priority = 0;
	const char *message = "", *bad;
	char msg[512];
	struct opd_publish p = {.name = name, .actor = OPD_ADMIN_ACTOR};
	struct admin_call *c;
	json_t *root;
	int rc;

	if (opd_admin__request_id(req, id, resp) != 0 ||
	    (root = opd_admin__parse_body(req, resp)) == NULL)
		return 0;
	c = opd_admin__call_new(a, conn, CALL_PUBLISH, name, resp);
	c->forwarded = forwarded_by_peer(req);
	opd_hex_encode(id, sizeof(id), c->request_id);
	opd_files_init(&files);
	bad = parse_publish(root, &c->selector, &files, &priority, &message, msg, sizeof(msg));
	if (bad != NULL) {
		opd_admin__reply_error(resp, 400, "invalid_argument", "%s", bad);
		opd_admin__call_free(c);
		rc = 0;
		goto out;
	}
	opd_kvs_sort(&c->selector);
	c->priority = priority;
	p.selector = &c->selector;
	p.priority = priority;
	p.files = &files;
	p.message = message;
	rc =
	    opd_admin__call_started(c, opd_configs_publish(a->configs, &p, id, call_done, c), resp);
out:
	opd_files_fini(&files);
	json_decref(root);
	return rc;
}

static int config_rollback(struct opd_admin *a, const char *name,
			   const struct opd_http_request *req, void *conn,
			   struct opd_admin_response *resp)
{
	static const char *const keys[] = {"version", NULL};
	uint8_t id[OPD_REQUEST_ID_LEN];
	struct admin_call *c;
	json_t *root, *v;
	const char *bad;
	int rc = 0;

	if (opd_admin__request_id(req, id, resp) != 0 ||
	    (root = opd_admin__parse_body(req, resp)) == NULL)
		return 0;
	if ((bad = opd_admin__unknown_key(root, keys)) != NULL) {
		opd_admin__reply_error(resp, 400, "invalid_argument", "unknown field \"%s\"", bad);
		goto out;
	}
	v = json_object_get(root, "version");
	if (v == NULL || !json_is_integer(v) || json_integer_value(v) < 1) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "\"version\" must be a positive integer");
		goto out;
	}
	c = opd_admin__call_new(a, conn, CALL_ROLLBACK, name, resp);
	c->forwarded = forwarded_by_peer(req);
	opd_hex_encode(id, sizeof(id), c->request_id);
	rc = opd_admin__call_started(c,
				     opd_configs_rollback(a->configs, name,
							  (uint64_t)json_integer_value(v),
							  OPD_ADMIN_ACTOR, id, call_done, c),
				     resp);
out:
	json_decref(root);
	return rc;
}

static int config_delete(struct opd_admin *a, const char *name, const struct opd_http_request *req,
			 void *conn, struct opd_admin_response *resp)
{
	uint8_t id[OPD_REQUEST_ID_LEN];
	struct admin_call *c;

	if (opd_admin__request_id(req, id, resp) != 0)
		return 0;
	c = opd_admin__call_new(a, conn, CALL_DELETE, name, resp);
	c->forwarded = forwarded_by_peer(req);
	opd_hex_encode(id, sizeof(id), c->request_id);
	return opd_admin__call_started(
	    c, opd_configs_delete(a->configs, name, OPD_ADMIN_ACTOR, id, call_done, c), resp);
}

/*
 * Writes happen on a writable leader. Elsewhere the request goes to the
 * leader (0 + deferred), or is refused with 503 read_only (resp filled).
 * Returns 1 when this node should perform the write itself.
 */
int opd_admin__write_here(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			  struct opd_admin_response *resp, int *rc)
{
	*rc = 0;
	if (a->configs->node == NULL || opd_node_writable(a->configs->node))
		return 1;
	/* A forwarded request is never forwarded again: no loops between confused nodes. */
	if (!forwarded_by_peer(req) && a->ops.forward != NULL &&
	    a->ops.forward(a->ops.data, conn, req, resp) == 0) {
		*rc = OPD_EAGAIN;
		return 0;
	}
	if (resp->status == 500 && opd_buf_avail(&resp->body) == 0) {
		struct opd_node_status st;

		opd_node_status(a->configs->node, &st);
		opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
		opd_admin__reply_error(resp, 503, "read_only", "node %llu is read-only: %s",
				       (unsigned long long)st.id,
				       st.reason[0] ? st.reason : "not the leader");
	}
	return 0;
}

/* ---- log level ---- */

/*
 * GET /api/v1/log-level, PUT {"level": "debug|info|warn|error"}: this node's
 * log level, changed at run time (not replicated: each node has its own).
 */
static void log_level(const struct opd_http_request *req, struct opd_admin_response *resp)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	enum opd_log_level level;
	json_t *root, *o;

	if (opd_admin__method_is(req, "PUT")) {
		if ((root = opd_admin__parse_body(req, resp)) == NULL)
			return;
		o = json_object_get(root, "level");
		if (!json_is_string(o) || opd_log_parse_level(json_string_value(o), &level) != 0 ||
		    json_object_size(root) != 1) {
			json_decref(root);
			opd_admin__reply_error(
			    resp, 400, "invalid_argument",
			    "expected {\"level\": \"debug\"|\"info\"|\"warn\"|\"error\"}");
			return;
		}
		json_decref(root);
		opd_log_init(level);
	} else if (!opd_admin__method_is(req, "GET")) {
		opd_admin__reply_method(resp, "GET, PUT");
		return;
	}
	for (level = OPD_LOG_DEBUG; level <= OPD_LOG_ERROR; level++)
		if (opd_log_enabled(level))
			break;
	o = json_object();
	json_object_set_new(o, "level",
			    opd_admin__jstr(names[level <= OPD_LOG_ERROR ? level : OPD_LOG_ERROR]));
	opd_admin__reply(resp, 200, o);
}

/* ---- audit ---- */

static int audit_cb(void *data, const struct opd_audit_entry *e)
{
	json_t *o = json_object();

	json_object_set_new(o, "seq", opd_admin__ju64(e->seq));
	json_object_set_new(o, "ts_ms", opd_admin__ju64(e->ts_ms));
	json_object_set_new(o, "actor", opd_admin__jstr(e->actor ? e->actor : ""));
	json_object_set_new(o, "action", opd_admin__jstr(e->action ? e->action : ""));
	json_object_set_new(o, "name", opd_admin__jstr(e->name ? e->name : ""));
	json_object_set_new(o, "version", e->version ? opd_admin__ju64(e->version) : json_null());
	json_object_set_new(o, "detail", opd_admin__jstr(e->detail ? e->detail : ""));
	json_array_append_new(data, o);
	return 0;
}

/* GET /api/v1/audit?limit=N: who changed what and when, newest first, from the applied commands. */
static void audit_list(struct opd_admin *a, const struct opd_http_request *req,
		       struct opd_admin_response *resp)
{
	uint64_t limit = 100;
	const char *q = req->query != NULL ? req->query : "";
	json_t *arr, *root;

	if (q[0] != '\0') {
		if (strncmp(q, "limit=", 6) != 0 || opd_admin__parse_version(q + 6, &limit) != 0 ||
		    limit > 10000) {
			opd_admin__reply_error(
			    resp, 400, "invalid_argument",
			    "the only parameter is limit=N with 1 <= N <= 10000");
			return;
		}
	}
	arr = json_array();
	if (opd_store_foreach_audit(&a->configs->store, (size_t)limit, audit_cb, arr) != 0) {
		json_decref(arr);
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       opd_store_errmsg(&a->configs->store));
		return;
	}
	root = json_object();
	json_object_set_new(root, "entries", arr);
	opd_admin__reply(resp, 200, root);
}

/* ---- signing keys ---- */

static int key_cb(void *data, const struct opd_signing_key *k)
{
	json_t *o = json_object();

	json_object_set_new(o, "key_id", opd_admin__jstr(k->key_id));
	json_object_set_new(o, "public_key",
			    base64_encode(k->public_key, OPD_STORE_PUBLIC_KEY_LEN));
	json_object_set_new(o, "active", json_boolean(k->active));
	json_object_set_new(o, "added_ms", opd_admin__ju64(k->added_ms));
	json_object_set_new(o, "retired_ms",
			    k->retired_ms ? opd_admin__ju64(k->retired_ms) : json_null());
	json_array_append_new(data, o);
	return 0;
}

/* GET /api/v1/signing-keys: the public keys agents and tools verify versions with. */
static void keys_list(struct opd_admin *a, struct opd_admin_response *resp)
{
	json_t *arr = json_array(), *root;

	if (opd_store_foreach_signing_key(&a->configs->store, key_cb, arr) != 0) {
		json_decref(arr);
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       opd_store_errmsg(&a->configs->store));
		return;
	}
	root = json_object();
	json_object_set_new(root, "algorithm", opd_admin__jstr("Ed25519"));
	json_object_set_new(root, "keys", arr);
	opd_admin__reply(resp, 200, root);
}

/* ---- agents ---- */

static json_t *health_json(const Opamp__Proto__V1__ComponentHealth *h, int depth)
{
	json_t *o = json_object(), *comps = json_object();

	json_object_set_new(o, "healthy", json_boolean(h->healthy));
	json_object_set_new(o, "status", opd_admin__jstr(h->status != NULL ? h->status : ""));
	json_object_set_new(o, "last_error",
			    opd_admin__jstr(h->last_error != NULL ? h->last_error : ""));
	json_object_set_new(o, "start_time_unix_nano", opd_admin__ju64(h->start_time_unix_nano));
	json_object_set_new(o, "status_time_unix_nano", opd_admin__ju64(h->status_time_unix_nano));
	/* Agents choose the nesting; deeper levels are cut off rather than recursed into. */
	if (depth < MAX_HEALTH_DEPTH) {
		for (size_t i = 0; i < h->n_component_health_map; i++) {
			const Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *e =
			    h->component_health_map[i];
			if (e == NULL || e->value == NULL)
				continue;
			set_kv(comps, e->key != NULL ? e->key : "",
			       health_json(e->value, depth + 1));
		}
	}
	json_object_set_new(o, "components", comps);
	return o;
}

/*
 * An agent's certificates: the one the cluster issued last (and whether the
 * agent presents it now), the one it presented on its connection, and the
 * offer made to it. Rotation progress is computed from this (on any node).
 */
static json_t *agent_cert_json(const struct opd_agent *ag)
{
	const struct opd_agent_tls *t = ag->tls;
	json_t *o = json_object(), *offer;

	json_object_set_new(o, "accepts_offers", json_boolean(ag->capabilities & 0x100));
	json_object_set_new(o, "presented_fingerprint",
			    t != NULL && t->has_presented ? jhex(t->presented, OPD_CERT_FP_LEN)
							  : json_null());
	if (t != NULL && t->issued_serial != 0) {
		json_object_set_new(o, "serial", opd_admin__ju64(t->issued_serial));
		json_object_set_new(o, "fingerprint", jhex(t->issued_fp, OPD_CERT_FP_LEN));
		json_object_set_new(o, "not_after_ms", opd_admin__ju64(t->issued_not_after_ms));
		json_object_set_new(o, "revoked", json_boolean(t->issued_revoked));
		json_object_set_new(
		    o, "in_use",
		    json_boolean(ag->connected && t->has_presented &&
				 memcmp(t->presented, t->issued_fp, OPD_CERT_FP_LEN) == 0));
	}
	if (t == NULL || t->offer == OPD_OFFER_NONE) {
		json_object_set_new(o, "offer", json_null());
		return o;
	}
	offer = json_object();
	json_object_set_new(offer, "state", json_string(opd_offer_state_name(t->offer)));
	json_object_set_new(offer, "fingerprint", jhex(t->offer_fp, OPD_CERT_FP_LEN));
	json_object_set_new(offer, "rotation_id",
			    t->rotation_id[0] ? opd_admin__jstr(t->rotation_id) : json_null());
	json_object_set_new(offer, "offered_ms", opd_admin__ju64(t->offered_ms));
	json_object_set_new(offer, "sends", json_integer(t->sends));
	json_object_set_new(offer, "message",
			    t->message != NULL ? opd_admin__jstr(t->message) : json_null());
	json_object_set_new(o, "offer", offer);
	return o;
}

json_t *opd_admin__agent_json(struct opd_admin *a, const struct opd_agent *ag, uint64_t now)
{
	const struct opd_registry *r = a->registry;
	json_t *o = json_object(), *health = json_object(), *rcs = json_object(), *caps;
	struct opd_desired d;
	char uid[2 * OPD_UID_LEN + 1];
	double phi;

	opd_hex_encode(ag->uid, OPD_UID_LEN, uid);
	json_object_set_new(o, "instance_uid", json_string(uid));
	json_object_set_new(o, "identifying_attributes", opd_admin__jkvs(&ag->ident));
	json_object_set_new(o, "non_identifying_attributes", opd_admin__jkvs(&ag->nonident));
	json_object_set_new(o, "connected", json_boolean(ag->connected));
	json_object_set_new(o, "transport", json_string(opd_transport_name(ag->transport)));
	json_object_set_new(o, "capabilities", opd_admin__ju64(ag->capabilities));
	json_object_set_new(o, "sequence_num", opd_admin__ju64(ag->last_seq));
	json_object_set_new(o, "last_seen_ms", opd_admin__ju64(ag->last_seen_wall_ms));

	json_object_set_new(health, "state",
			    json_string(opd_health_state_name(opd_registry_health(r, ag, now))));
	phi = opd_phi_value(&ag->phi, now, opd_registry_expected_interval_ms(r, ag));
	if (isnan(phi) || phi < 0)
		phi = 0;
	else if (!isfinite(phi))
		phi = DBL_MAX; /* JSON has no infinity */
	json_object_set_new(health, "phi", json_real(phi));
	json_t *ch = json_null();
	if (ag->health_pb != NULL) {
		Opamp__Proto__V1__ComponentHealth *h =
		    opamp__proto__v1__component_health__unpack(NULL, ag->health_len, ag->health_pb);
		if (h != NULL) {
			ch = health_json(h, 0);
			opamp__proto__v1__component_health__free_unpacked(h, NULL);
		}
	}
	json_object_set_new(health, "component_health", ch);
	json_object_set_new(o, "health", health);

	if (r->ops.desired != NULL && r->ops.desired(r->ops.data, ag, &d) == 0 && d.name != NULL) {
		json_t *dc = json_object();
		json_object_set_new(dc, "name", opd_admin__jstr(d.name));
		json_object_set_new(dc, "version", opd_admin__ju64(d.version));
		json_object_set_new(dc, "config_hash",
				    jhex(d.hash, d.hash != NULL ? d.hash_len : 0));
		json_object_set_new(o, "desired_config", dc);
	} else {
		json_object_set_new(o, "desired_config", json_null());
	}

	json_object_set_new(rcs, "status", json_string(opd_rc_status_name(ag->rc_status)));
	json_object_set_new(rcs, "config_hash", jhex(ag->rc_hash.b, ag->rc_hash.len));
	json_object_set_new(rcs, "error_message",
			    opd_admin__jstr(ag->rc_error != NULL ? ag->rc_error : ""));
	json_object_set_new(o, "remote_config_status", rcs);
	json_object_set_new(o, "effective_config_hash",
			    ag->has_effective ? jhex(ag->effective_hash.b, ag->effective_hash.len)
					      : json_null());
	caps = json_array();
	for (size_t i = 0; i < ag->n_custom_caps; i++)
		json_array_append_new(caps, opd_admin__jstr(ag->custom_caps[i]));
	json_object_set_new(o, "custom_capabilities", caps);
	json_object_set_new(o, "certificate", agent_cert_json(ag));
	return o;
}

struct agent_filter {
	int health;    /* -1: any */
	int connected; /* -1: any */
	size_t n_attrs;
	char *keys[MAX_ATTR_FILTERS], *values[MAX_ATTR_FILTERS]; /* owned */
};

static void filter_fini(struct agent_filter *f)
{
	for (size_t i = 0; i < f->n_attrs; i++) {
		free(f->keys[i]);
		free(f->values[i]);
	}
}

/* Parse the query into f. Returns NULL or a message for a 400 (in msg). */
static const char *parse_filter(const char *query, struct agent_filter *f, char *msg, size_t cap)
{
	static const char *const states[] = {"healthy", "degraded", "suspect", "down"};
	static const enum opd_health_state state_vals[] = {OPD_HEALTH_HEALTHY, OPD_HEALTH_DEGRADED,
							   OPD_HEALTH_SUSPECT, OPD_HEALTH_DOWN};
	const char *p = query;

	while (*p != '\0') {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		size_t kn = eq != NULL ? (size_t)(eq - p) : n;
		size_t vn = eq != NULL ? n - kn - 1 : 0;
		/* Decoded text is never longer than the encoded text, which the HTTP layer bounds.
		 */
		char *k = opd_xmalloc(kn + 1), *v = opd_xmalloc(vn + 1);
		const char *err = NULL;

		if (n == 0)
			goto next;
		if (opd_admin__url_decode(p, kn, true, k, kn + 1) != 0 ||
		    opd_admin__url_decode(eq != NULL ? eq + 1 : "", vn, true, v, vn + 1) != 0) {
			err = "malformed percent-encoding in the query";
		} else if (strcmp(k, "health") == 0) {
			size_t i;
			for (i = 0; i < 4; i++)
				if (strcmp(v, states[i]) == 0)
					break;
			if (f->health != -1 || i == 4)
				err = "health must be given once, as healthy, degraded, suspect or "
				      "down";
			else
				f->health = (int)state_vals[i];
		} else if (strcmp(k, "connected") == 0) {
			if (f->connected != -1 ||
			    (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
				err = "connected must be given once, as true or false";
			else
				f->connected = strcmp(v, "true") == 0;
		} else if (strncmp(k, "attr.", 5) == 0 && k[5] != '\0') {
			if (f->n_attrs == MAX_ATTR_FILTERS) {
				snprintf(msg, cap, "more than %d attr filters", MAX_ATTR_FILTERS);
				err = msg;
			} else {
				f->keys[f->n_attrs] = opd_xstrdup(k + 5);
				f->values[f->n_attrs++] = opd_xstrdup(v);
			}
		} else {
			/* A typo must not silently widen the result to every agent. */
			snprintf(msg, cap, "unknown query parameter \"%.64s\"", k);
			err = msg;
		}
	next:
		free(k);
		free(v);
		if (err != NULL)
			return err;
		p += n;
		if (*p == '&')
			p++;
	}
	return NULL;
}

static bool has_pair(const struct opd_kvs *kvs, const char *key, const char *value)
{
	for (size_t i = 0; i < kvs->n; i++)
		if (strcmp(kvs->v[i].key, key) == 0 && strcmp(kvs->v[i].value, value) == 0)
			return true;
	return false;
}

static bool filter_match(const struct opd_admin *a, const struct agent_filter *f,
			 const struct opd_agent *ag, uint64_t now)
{
	if (f->connected != -1 && (ag->connected != 0) != (f->connected != 0))
		return false;
	if (f->health != -1 && (int)opd_registry_health(a->registry, ag, now) != f->health)
		return false;
	for (size_t i = 0; i < f->n_attrs; i++)
		if (!has_pair(&ag->ident, f->keys[i], f->values[i]) &&
		    !has_pair(&ag->nonident, f->keys[i], f->values[i]))
			return false;
	return true;
}

static int agents_list(struct opd_admin *a, const struct opd_http_request *req, void *conn,
		       struct opd_admin_response *resp)
{
	struct agent_filter f = {.health = -1, .connected = -1};
	uint64_t now = opd_clock_now(a->clock);
	const char *bad;
	char msg[256];
	struct opd_list *pos;
	json_t *arr, *root;

	bad = parse_filter(req->query != NULL ? req->query : "", &f, msg, sizeof(msg));
	if (bad != NULL) {
		filter_fini(&f);
		opd_admin__reply_error(resp, 400, "invalid_argument", "%s", bad);
		return 0;
	}
	arr = json_array();
	opd_list_foreach(pos, &a->registry->agents)
	{
		const struct opd_agent *ag = opd_container_of(pos, struct opd_agent, link);
		if (filter_match(a, &f, ag, now))
			json_array_append_new(arr, opd_admin__agent_json(a, ag, now));
	}
	filter_fini(&f);
	root = json_object();
	json_object_set_new(root, "agents", arr);
	/* On the public API, merge the other nodes' agents (conn == NULL: a peer asking). */
	if (conn != NULL && a->ops.fanout_agents != NULL &&
	    a->ops.fanout_agents(a->ops.data, conn, req->query != NULL ? req->query : "",
				 json_incref(root), NULL, NULL) == 0) {
		json_decref(root);
		return OPD_EAGAIN;
	}
	json_object_set_new(root, "count", json_integer((json_int_t)json_array_size(arr)));
	json_object_set_new(root, "partial", json_false());
	opd_admin__reply(resp, 200, root);
	return 0;
}

static void agent_get(struct opd_admin *a, const char *uid_text, struct opd_admin_response *resp)
{
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *ag;

	if (opd_uid_parse(uid_text, uid) != 0) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "instance_uid must be 32 hex digits or a UUID");
		return;
	}
	ag = opd_registry_find(a->registry, uid);
	if (ag == NULL) {
		opd_admin__reply_not_found(resp);
		return;
	}
	opd_admin__reply(resp, 200, opd_admin__agent_json(a, ag, opd_clock_now(a->clock)));
}

/* ---- routing ---- */

static void reply_status(struct opd_admin_response *resp, int status, const char *text)
{
	json_t *o = json_object();

	json_object_set_new(o, "status", json_string(text));
	opd_admin__reply(resp, status, o);
}

bool opd_admin__method_is(const struct opd_http_request *req, const char *m)
{
	return req->method != NULL && strcmp(req->method, m) == 0;
}

/*
 * Split the path into percent-decoded segments. Returns the count, 0 for an
 * empty segment or too many (a route that cannot exist), or -1 for bad
 * encoding.
 */
static int split_path(const char *path, char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT])
{
	int n = 0;

	if (path == NULL || path[0] != '/')
		return 0;
	for (const char *p = path + 1;;) {
		size_t len = strcspn(p, "/");
		int rc;

		if (len == 0 || n == OPD_ADMIN_MAX_SEGMENTS)
			return 0;
		rc = opd_admin__url_decode(p, len, false, seg[n], OPD_ADMIN_MAX_SEGMENT);
		if (rc == OPD_ETOOBIG)
			return 0;
		if (rc != 0)
			return -1;
		n++;
		p += len;
		if (*p == '\0')
			return n;
		p++;
	}
}

static bool valid_name(const char *name, struct opd_admin_response *resp)
{
	if (opd_validate_name(name))
		return true;
	opd_admin__reply_error(
	    resp, 400, "invalid_argument",
	    "configuration names are 1 to %d of A-Z a-z 0-9 . _ - and do not start "
	    "with '.'",
	    OPD_MAX_CONFIG_NAME);
	return false;
}

int opd_admin__parse_version(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 20)
		return OPD_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > INT64_MAX)
		return OPD_EINVAL;
	*out = v;
	return 0;
}

static int route_configs(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			 char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT], int n,
			 struct opd_admin_response *resp)
{
	uint64_t version;
	int rc;

	if (n == 3) {
		if (opd_admin__method_is(req, "GET"))
			configs_list(a, resp);
		else
			opd_admin__reply_method(resp, "GET");
		return 0;
	}
	if (n == 4) {
		bool get = opd_admin__method_is(req, "GET"),
		     post = opd_admin__method_is(req, "POST"),
		     del = opd_admin__method_is(req, "DELETE");
		if (!get && !post && !del) {
			opd_admin__reply_method(resp, "GET, POST, DELETE");
			return 0;
		}
		if (!valid_name(seg[3], resp))
			return 0;
		if (get) {
			config_get(a, seg[3], resp);
			return 0;
		}
		if (!opd_admin__write_here(a, req, conn, resp, &rc))
			return rc;
		return post ? config_publish(a, seg[3], req, conn, resp)
			    : config_delete(a, seg[3], req, conn, resp);
	}
	if (n == 5 && strcmp(seg[4], "rollback") == 0) {
		if (!opd_admin__method_is(req, "POST")) {
			opd_admin__reply_method(resp, "POST");
			return 0;
		}
		if (!valid_name(seg[3], resp))
			return 0;
		if (!opd_admin__write_here(a, req, conn, resp, &rc))
			return rc;
		return config_rollback(a, seg[3], req, conn, resp);
	}
	if (n == 6 && strcmp(seg[4], "versions") == 0) {
		if (!opd_admin__method_is(req, "GET")) {
			opd_admin__reply_method(resp, "GET");
			return 0;
		}
		if (!valid_name(seg[3], resp))
			return 0;
		if (opd_admin__parse_version(seg[5], &version) != 0) {
			opd_admin__reply_error(resp, 400, "invalid_argument",
					       "the version must be a positive integer");
			return 0;
		}
		version_get(a, seg[3], version, resp);
		return 0;
	}
	opd_admin__reply_not_found(resp);
	return 0;
}

/* Node-local, like the certificate files it reads: no leader involved. */
static void tls_reload(struct opd_admin *a, struct opd_admin_response *resp)
{
	char err[OPD_ERRMSG_SIZE];
	json_t *j;

	if (a->ops.tls_reload == NULL) {
		opd_admin__reply_not_found(resp);
		return;
	}
	j = a->ops.tls_reload(a->ops.tls_data, err);
	if (j == NULL)
		opd_admin__reply_error(resp, 500, "tls_reload_failed", "%s", err);
	else
		opd_admin__reply(resp, 200, j);
}

static int route_api(struct opd_admin *a, const struct opd_http_request *req, void *conn,
		     char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT], int n,
		     struct opd_admin_response *resp)
{
	if (n < 3 || strcmp(seg[1], "v1") != 0) {
		opd_admin__reply_not_found(resp);
		return 0;
	}
	if (strcmp(seg[2], "configs") == 0)
		return route_configs(a, req, conn, seg, n, resp);
	if ((strcmp(seg[2], "certificates") == 0 || strcmp(seg[2], "ca") == 0 ||
	     strcmp(seg[2], "rotations") == 0) &&
	    n <= 5)
		return opd_admin__route_certs(a, req, conn, seg, n, resp);
	if (strcmp(seg[2], "agents") == 0 && n <= 4) {
		if (!opd_admin__method_is(req, "GET")) {
			opd_admin__reply_method(resp, "GET");
			return 0;
		}
		if (n == 4) {
			agent_get(a, seg[3], resp);
			return 0;
		}
		return agents_list(a, req, conn, resp);
	}
	if (strcmp(seg[2], "signing-keys") == 0 && n == 3) {
		if (opd_admin__method_is(req, "GET"))
			keys_list(a, resp);
		else
			opd_admin__reply_method(resp, "GET");
		return 0;
	}
	if (strcmp(seg[2], "tls") == 0 && n == 4 && strcmp(seg[3], "reload") == 0) {
		if (opd_admin__method_is(req, "POST"))
			tls_reload(a, resp);
		else
			opd_admin__reply_method(resp, "POST");
		return 0;
	}
	if (strcmp(seg[2], "log-level") == 0 && n == 3) {
		log_level(req, resp);
		return 0;
	}
	if (strcmp(seg[2], "audit") == 0 && n == 3) {
		if (opd_admin__method_is(req, "GET"))
			audit_list(a, req, resp);
		else
			opd_admin__reply_method(resp, "GET");
		return 0;
	}
	if (strcmp(seg[2], "cluster") == 0 && n <= 6) {
		if (a->ops.cluster == NULL) {
			opd_admin__reply_not_found(resp);
			return 0;
		}
		if (!opd_admin__method_is(req, "GET")) {
			/* Membership changes are writes: the leader performs them. */
			int rc;
			if (!opd_admin__write_here(a, req, conn, resp, &rc))
				return rc;
		}
		return a->ops.cluster(a->ops.data, conn, req,
				      n > 3 ? req->path + strlen("/api/v1/cluster") : "", resp);
	}
	opd_admin__reply_not_found(resp);
	return 0;
}

/* /internal/v1/...: calls between the nodes of a cluster, with the peer token only. */
static int route_internal(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			  char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT], int n,
			  struct opd_admin_response *resp)
{
	if (!is_peer(a, req)) {
		opd_buf_appendf(&resp->headers, "WWW-Authenticate: Bearer\r\n");
		opd_admin__reply_error(resp, 401, "unauthorized",
				       "internal calls need the cluster token");
		return 0;
	}
	if (n == 3 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "agents") == 0) {
		if (opd_admin__method_is(req, "GET"))
			return agents_list(a, req, NULL, resp);
		opd_admin__reply_method(resp, "GET");
		return 0;
	}
	if (n == 3 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "csr") == 0) {
		if (opd_admin__method_is(req, "POST"))
			return opd_admin__internal_csr(a, req, conn, resp);
		opd_admin__reply_method(resp, "POST");
		return 0;
	}
	opd_admin__reply_not_found(resp);
	return 0;
}

void opd_admin_init(struct opd_admin *a)
{
	*a = (struct opd_admin){0};
	opd_list_init(&a->calls);
}

void opd_admin_fini(struct opd_admin *a)
{
	struct opd_list *pos, *tmp;

	if (a->calls.next == NULL)
		return;
	opd_list_foreach_safe(pos, tmp, &a->calls)
	{
		opd_admin__call_free(opd_container_of(pos, struct admin_call, link));
	}
}

void opd_admin_conn_closed(struct opd_admin *a, void *conn)
{
	struct opd_list *pos;

	opd_list_foreach(pos, &a->calls)
	{
		struct admin_call *c = opd_container_of(pos, struct admin_call, link);
		if (c->conn == conn)
			c->conn = NULL;
	}
}

int opd_admin_handle(struct opd_admin *a, const struct opd_http_request *req, void *conn,
		     struct opd_admin_response *resp)
{
	char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT];
	int n;

	if (a->calls.next == NULL)
		opd_list_init(&a->calls);
	opd_buf_reset(&resp->headers);
	n = split_path(req->path, seg);
	if (n == 1 && strcmp(seg[0], "healthz") == 0) {
		if (opd_admin__method_is(req, "GET"))
			reply_status(resp, 200, "ok");
		else
			opd_admin__reply_method(resp, "GET");
		return 0;
	}
	if (n == 1 && strcmp(seg[0], "readyz") == 0) {
		if (!opd_admin__method_is(req, "GET"))
			opd_admin__reply_method(resp, "GET");
		else if (a->ready)
			reply_status(resp, 200, "ready");
		else
			opd_admin__reply_error(resp, 503, "unavailable", "not ready");
		return 0;
	}
	if (req->path != NULL && strncmp(req->path, "/internal/", 10) == 0 && n > 0)
		return route_internal(a, req, conn, seg, n, resp);
	/* Everything under /api/ needs the token, even paths that do not exist. */
	if (req->path != NULL && strncmp(req->path, "/api/", 5) == 0) {
		if (!authorized(a, req)) {
			opd_buf_appendf(&resp->headers, "WWW-Authenticate: Bearer\r\n");
			opd_admin__reply_error(resp, 401, "unauthorized",
					       "missing or wrong bearer token");
			return 0;
		}
		if (n < 0) {
			opd_admin__reply_error(resp, 400, "invalid_argument",
					       "malformed percent-encoding");
			return 0;
		}
		if (n > 0 && strcmp(seg[0], "api") == 0)
			return route_api(a, req, conn, seg, n, resp);
	}
	opd_admin__reply_not_found(resp);
	return 0;
}

static const char *last_seen_key = "last_seen_ms";

json_t *opd_admin_merge_agents(json_t *const *lists, size_t n)
{
	json_t *by_uid = json_object(), *out = json_array(), *v;
	const char *uid;

	for (size_t i = 0; i < n; i++) {
		size_t j;
		json_t *ag;

		if (!json_is_array(lists[i]))
			continue;
		json_array_foreach(lists[i], j, ag)
		{
			const char *id = json_string_value(json_object_get(ag, "instance_uid"));
			json_t *have;

			if (id == NULL)
				continue;
			have = json_object_get(by_uid, id);
			/* Newest report wins: the node the agent talks to now knows best. */
			if (have == NULL ||
			    json_integer_value(json_object_get(ag, last_seen_key)) >
				json_integer_value(json_object_get(have, last_seen_key)))
				json_object_set(by_uid, id, ag);
		}
	}
	json_object_foreach(by_uid, uid, v)
	{
		json_array_append(out, v);
	}
	json_decref(by_uid);
	return out;
}

void opd_admin_peer_token(const struct opd_signer *s, char out[65])
{
	uint8_t raw[64], digest[32];
	size_t len = sizeof(raw);
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static const char label[] = "opampd peer token v1";

	out[0] = '\0';
	if (s->key == NULL || md == NULL ||
	    EVP_PKEY_get_raw_private_key((EVP_PKEY *)s->key, raw, &len) != 1) {
		EVP_MD_CTX_free(md);
		return;
	}
	/* Every voter holds the same key file: the same token, without a second secret. */
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, label, sizeof(label));
	EVP_DigestUpdate(md, raw, len);
	EVP_DigestFinal_ex(md, digest, &dlen);
	EVP_MD_CTX_free(md);
	OPENSSL_cleanse(raw, sizeof(raw));
	opd_hex_encode(digest, sizeof(digest), out);
}
