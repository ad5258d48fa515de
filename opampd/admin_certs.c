/*
 * The admin API's certificate routes (issue 4): issued certificates and
 * their revocation, the fleet CA (status, rotation, activation, retirement,
 * CRL, trust bundle), rotations of agents' certificates with their progress
 * merged over every node, and the followers' relay of agents' CSRs.
 */
#include "certs.h"
#include "err.h"
#include "hex.h"
#include "internal.h"
#include "mem.h"
#include "selector.h"
#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- certificates and the fleet CA (issue #4) ---- */

/*
 * The value of key in a query string, percent-decoded into out (cap bytes):
 * 1 found, 0 absent, -1 malformed or too long. *unknown is set to 1 when a
 * key outside allowed (NULL-terminated) is present.
 */
static int query_get(const char *query, const char *key, const char *const *allowed, char *out,
		     size_t cap, int *unknown)
{
	int found = 0;

	for (const char *p = query != NULL ? query : ""; *p != '\0';) {
		size_t n = strcspn(p, "&"), kn;
		const char *eq = memchr(p, '=', n);
		char k[64];
		size_t i;

		kn = eq != NULL ? (size_t)(eq - p) : n;
		if (n > 0 && opd_admin__url_decode(p, kn, true, k, sizeof(k)) == 0) {
			for (i = 0; allowed[i] != NULL && strcmp(allowed[i], k) != 0; i++)
				;
			if (allowed[i] == NULL)
				*unknown = 1;
			if (strcmp(k, key) == 0) {
				if (eq == NULL ||
				    opd_admin__url_decode(eq + 1, n - kn - 1, true, out, cap) != 0)
					return -1;
				found = 1;
			}
		} else if (n > 0) {
			*unknown = 1;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return found;
}

static int parse_u64_text(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 20)
		return OPD_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return OPD_EINVAL;
	*out = v;
	return 0;
}

static bool certs_available(struct opd_admin *a, struct opd_admin_response *resp)
{
	if (a->certs != NULL)
		return true;
	opd_admin__reply_not_found(resp);
	return false;
}

static json_t *cert_json(const struct opd_cert_info *c, bool full)
{
	json_t *o = json_object();
	char serial_hex[24];

	snprintf(serial_hex, sizeof(serial_hex), "%llX", (unsigned long long)c->serial);
	json_object_set_new(o, "serial", opd_admin__ju64(c->serial));
	json_object_set_new(o, "serial_hex", opd_admin__jstr(serial_hex));
	json_object_set_new(o, "instance_uid", opd_admin__jstr(c->instance_uid));
	json_object_set_new(o, "subject", opd_admin__jstr(c->subject));
	json_object_set_new(o, "fingerprint", opd_admin__jstr(c->fingerprint));
	json_object_set_new(o, "ca_fingerprint", opd_admin__jstr(c->ca_fingerprint));
	json_object_set_new(o, "reason", opd_admin__jstr(c->reason));
	json_object_set_new(o, "rotation_id",
			    c->rotation_id[0] ? opd_admin__jstr(c->rotation_id) : json_null());
	json_object_set_new(o, "not_before_ms", opd_admin__ju64(c->not_before * 1000));
	json_object_set_new(o, "not_after_ms", opd_admin__ju64(c->not_after * 1000));
	json_object_set_new(o, "issued_ms", opd_admin__ju64(c->issued_ms));
	json_object_set_new(o, "actor", opd_admin__jstr(c->actor));
	json_object_set_new(o, "revoked", json_boolean(c->revoked));
	if (c->revoked) {
		json_object_set_new(o, "revoked_ms", opd_admin__ju64(c->revoked_ms));
		json_object_set_new(o, "revoke_reason", opd_admin__jstr(c->revoke_reason));
	}
	if (full)
		json_object_set_new(o, "cert_pem", opd_admin__jstr(c->cert_pem));
	return o;
}

static int cert_list_cb(void *data, const struct opd_cert_info *c)
{
	json_array_append_new(data, cert_json(c, false));
	return 0;
}

/* GET /api/v1/certificates[?agent=UID][&expiring_within=SECONDS][&limit=N] */
static void certs_list(struct opd_admin *a, const struct opd_http_request *req,
		       struct opd_admin_response *resp)
{
	static const char *const keys[] = {"agent", "expiring_within", "limit", NULL};
	struct opd_cert_filter f = {.limit = 1000};
	char agent[64], within[32], limit[32], uid_hex[33];
	uint64_t now = opd_clock_wall(a->clock) / 1000, secs, lim;
	uint8_t uid[OPD_UID_LEN];
	int unknown = 0, has_agent, has_within, has_limit;
	json_t *arr, *root;

	has_agent = query_get(req->query, "agent", keys, agent, sizeof(agent), &unknown);
	has_within =
	    query_get(req->query, "expiring_within", keys, within, sizeof(within), &unknown);
	has_limit = query_get(req->query, "limit", keys, limit, sizeof(limit), &unknown);
	if (unknown || has_agent < 0 || has_within < 0 || has_limit < 0) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "query parameters are agent, expiring_within and limit");
		return;
	}
	if (has_agent) {
		if (opd_uid_parse(agent, uid) != 0) {
			opd_admin__reply_error(
			    resp, 400, "invalid_argument",
			    "agent must be an instance_uid: 32 hex digits or a UUID");
			return;
		}
		opd_hex_encode(uid, OPD_UID_LEN, uid_hex);
		f.instance_uid = uid_hex;
	}
	if (has_within) {
		if (parse_u64_text(within, 100ull * 366 * 86400, &secs) != 0) {
			opd_admin__reply_error(resp, 400, "invalid_argument",
					       "expiring_within must be a number of seconds");
			return;
		}
		/* Still valid, and over by then: the ones to renew, soonest first. */
		f.expiring_before = now + secs;
		f.valid_at = now;
		f.by_expiry = 1;
		f.exclude_revoked = 1;
	}
	if (has_limit) {
		if (parse_u64_text(limit, 100000, &lim) != 0 || lim == 0) {
			opd_admin__reply_error(resp, 400, "invalid_argument",
					       "limit must be 1 to 100000");
			return;
		}
		f.limit = lim;
	}
	arr = json_array();
	if (opd_store_foreach_certificate(&a->configs->store, &f, cert_list_cb, arr) != 0) {
		json_decref(arr);
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       opd_store_errmsg(&a->configs->store));
		return;
	}
	root = json_object();
	json_object_set_new(root, "certificates", arr);
	opd_admin__reply(resp, 200, root);
}

static void cert_get(struct opd_admin *a, const char *text, struct opd_admin_response *resp)
{
	struct opd_cert_info c;
	uint64_t serial;
	int rc;

	if (opd_admin__parse_version(text, &serial) != 0) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "the serial must be a positive decimal integer");
		return;
	}
	rc = opd_store_get_certificate(&a->configs->store, serial, &c);
	if (rc != 0) {
		opd_admin__reply_store_error(resp, rc);
		return;
	}
	opd_admin__reply(resp, 200, cert_json(&c, true));
	opd_cert_info_fini(&c);
}

static void cert_reply_error(struct opd_admin_response *resp, const struct opd_cert_result *r)
{
	switch (r->status) {
	case OPD_EINVAL:
		opd_admin__reply_error(resp, 400, "invalid_argument", "%s", r->message);
		return;
	case OPD_EIO:
		/* This node cannot sign: not a lasting state of the cluster, but of this node. */
		opd_buf_appendf(&resp->headers, "Retry-After: 5\r\n");
		opd_admin__reply_error(resp, 503, "ca_key_unavailable", "%s", r->message);
		return;
	default: {
		struct opd_write_result w = {.status = r->status};

		snprintf(w.message, sizeof(w.message), "%s", r->message);
		opd_admin__reply_write_error(resp, &w);
	}
	}
}

static void cert_call_done(void *data, const struct opd_cert_result *r)
{
	struct admin_call *c = data;
	struct opd_admin_response local, *resp = c->sync_resp;
	int status = 200;
	json_t *o;

	if (resp == NULL) {
		opd_admin_response_init(&local);
		resp = &local;
	}
	if (r->status != 0) {
		cert_reply_error(resp, r);
	} else {
		o = json_object();
		switch (c->kind) {
		case CALL_CERT_REVOKE:
			json_object_set_new(o, "serial", opd_admin__ju64(r->serial));
			json_object_set_new(o, "revoked", json_true());
			break;
		case CALL_CA_ROTATE:
			json_object_set_new(o, "fingerprint", opd_admin__jstr(r->fingerprint));
			json_object_set_new(o, "state", opd_admin__jstr("active"));
			json_object_set_new(o, "not_after_ms",
					    opd_admin__ju64(r->not_after * 1000));
			/* Where the leader keeps the new key: the other voters need a copy. */
			json_object_set_new(o, "key_file",
					    r->key_file[0] ? opd_admin__jstr(r->key_file)
							   : json_null());
			status = r->duplicate ? 200 : 201;
			break;
		case CALL_CA_ACTIVATE:
		case CALL_CA_RETIRE:
			json_object_set_new(o, "fingerprint", opd_admin__jstr(r->fingerprint));
			json_object_set_new(
			    o, "state",
			    opd_admin__jstr(c->kind == CALL_CA_ACTIVATE ? "active" : "retired"));
			break;
		case CALL_CSR: {
			/* A follower relays this to its agent: the certificate and the bundle. */
			struct opd_buf b;

			opd_buf_init(&b);
			if (opd_certs_bundle(c->a->certs, &b) == 0)
				json_object_set_new(o, "ca_cert",
						    json_stringn((const char *)opd_buf_rptr(&b),
								 opd_buf_avail(&b)));
			opd_buf_fini(&b);
			json_object_set_new(o, "cert",
					    opd_admin__jstr(r->cert_pem ? r->cert_pem : ""));
			json_object_set_new(o, "serial", opd_admin__ju64(r->serial));
			break;
		}
		default: /* CALL_ROTATION */
			json_object_set_new(o, "rotation_id", opd_admin__jstr(r->name));
			json_object_set_new(o, "selector", opd_admin__jkvs(&c->selector));
			status = r->duplicate ? 200 : 201;
			break;
		}
		json_object_set_new(o, "request_id", opd_admin__jstr(c->request_id));
		if (r->index > 0)
			json_object_set_new(o, "applied_index", opd_admin__ju64(r->index));
		if (r->duplicate)
			json_object_set_new(o, "duplicate", json_true());
		opd_admin__reply(resp, status, o);
	}
	c->answered = 1;
	if (resp == &local) {
		if (c->conn != NULL && c->a->ops.complete != NULL)
			c->a->ops.complete(c->a->ops.data, c->conn, resp);
		opd_admin_response_fini(&local);
		opd_admin__call_free(c);
	}
}

/* An optional JSON object body: NULL with resp untouched when empty, or on error (resp set). */
/*
 * The JSON object body of a write that may have none (NULL), holding only the
 * keys allowed (NULL-terminated); *bad set when it was refused (resp filled).
 */
static json_t *optional_body(const struct opd_http_request *req, struct opd_admin_response *resp,
			     const char *const *allowed, bool *bad)
{
	json_t *root;
	const char *k;

	*bad = false;
	if (req->body_len == 0)
		return NULL;
	root = opd_admin__parse_body(req, resp);
	if (root != NULL && (k = opd_admin__unknown_key(root, allowed)) != NULL) {
		opd_admin__reply_error(resp, 400, "invalid_argument", "unknown field \"%s\"", k);
		json_decref(root);
		root = NULL;
	}
	*bad = root == NULL;
	return root;
}

static const char *opt_string(json_t *root, const char *key, bool *bad)
{
	json_t *v = json_object_get(root, key);

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
		*bad = true;
	return json_string_value(v);
}

/* POST /api/v1/certificates/{serial}/revoke {"reason": "keyCompromise"} */
static int cert_revoke(struct opd_admin *a, const char *text, const struct opd_http_request *req,
		       void *conn, struct opd_admin_response *resp)
{
	static const char *const keys[] = {"reason", NULL};
	uint8_t id[OPD_REQUEST_ID_LEN];
	const char *reason = NULL;
	struct admin_call *c;
	uint64_t serial;
	json_t *root;
	bool bad;
	int rc;

	if (opd_admin__parse_version(text, &serial) != 0) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "the serial must be a positive decimal integer");
		return 0;
	}
	if (opd_admin__request_id(req, id, resp) != 0)
		return 0;
	root = optional_body(req, resp, keys, &bad);
	if (bad)
		return 0;
	reason = root != NULL ? opt_string(root, "reason", &bad) : NULL;
	if (bad) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "\"reason\" must be a string");
		json_decref(root);
		return 0;
	}
	c = opd_admin__call_new(a, conn, CALL_CERT_REVOKE, text, resp);
	opd_hex_encode(id, sizeof(id), c->request_id);
	rc = opd_admin__call_started(
	    c, opd_certs_revoke(a->certs, serial, reason, OPD_ADMIN_ACTOR, id, cert_call_done, c),
	    resp);
	json_decref(root);
	return rc;
}

static json_t *ca_json(struct opd_admin *a, const struct opd_ca_info *ca)
{
	json_t *o = json_object();

	json_object_set_new(o, "fingerprint", opd_admin__jstr(ca->fingerprint));
	json_object_set_new(o, "subject", opd_admin__jstr(ca->subject));
	json_object_set_new(o, "state", opd_admin__jstr(ca->state));
	json_object_set_new(o, "not_before_ms", opd_admin__ju64(ca->not_before * 1000));
	json_object_set_new(o, "not_after_ms", opd_admin__ju64(ca->not_after * 1000));
	json_object_set_new(o, "added_ms", opd_admin__ju64(ca->added_ms));
	json_object_set_new(o, "activated_ms",
			    ca->activated_ms ? opd_admin__ju64(ca->activated_ms) : json_null());
	json_object_set_new(o, "retired_ms",
			    ca->retired_ms ? opd_admin__ju64(ca->retired_ms) : json_null());
	/* Whether this node could sign with it (or its CRL). */
	json_object_set_new(o, "key_here",
			    json_boolean(opd_certs_key(a->certs, ca->fingerprint) != NULL));
	return o;
}

struct ca_list {
	struct opd_admin *a;
	json_t *cas, *active, *bundle;
};

static int ca_list_cb(void *data, const struct opd_ca_info *ca)
{
	struct ca_list *l = data;

	json_array_append_new(l->cas, ca_json(l->a, ca));
	if (strcmp(ca->state, "active") == 0) {
		json_decref(l->active);
		l->active = ca_json(l->a, ca);
	}
	if (strcmp(ca->state, "retired") != 0)
		json_array_append_new(l->bundle, opd_admin__jstr(ca->fingerprint));
	return 0;
}

/* GET /api/v1/ca: the active CA, every other one, the trust bundle's fingerprints. */
static void ca_status(struct opd_admin *a, struct opd_admin_response *resp)
{
	struct ca_list l = {a, json_array(), json_null(), json_array()};
	uint64_t last = 0;
	json_t *o;

	if (opd_store_foreach_ca(&a->configs->store, ca_list_cb, &l) != 0 ||
	    opd_store_last_serial(&a->configs->store, &last) != 0) {
		json_decref(l.cas);
		json_decref(l.active);
		json_decref(l.bundle);
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       opd_store_errmsg(&a->configs->store));
		return;
	}
	o = json_object();
	json_object_set_new(o, "active", l.active);
	json_object_set_new(o, "cas", l.cas);
	json_object_set_new(o, "trust_bundle", l.bundle);
	json_object_set_new(o, "last_serial", opd_admin__ju64(last));
	json_object_set_new(o, "certificate_lifetime_s", opd_admin__ju64(a->certs->lifetime_s));
	opd_admin__reply(resp, 200, o);
}

/* POST /api/v1/ca/rotate [{"cert_file": PATH, "key_file": PATH}] (files on the leader). */
static int ca_rotate(struct opd_admin *a, const struct opd_http_request *req, void *conn,
		     struct opd_admin_response *resp)
{
	static const char *const keys[] = {"cert_file", "key_file", NULL};
	uint8_t id[OPD_REQUEST_ID_LEN];
	const char *cert = NULL, *key = NULL;
	struct admin_call *c;
	json_t *root;
	bool bad;
	int rc;

	if (opd_admin__request_id(req, id, resp) != 0)
		return 0;
	root = optional_body(req, resp, keys, &bad);
	if (bad)
		return 0;
	if (root != NULL) {
		cert = opt_string(root, "cert_file", &bad);
		key = opt_string(root, "key_file", &bad);
	}
	if (bad) {
		opd_admin__reply_error(resp, 400, "invalid_argument",
				       "cert_file and key_file are paths");
		json_decref(root);
		return 0;
	}
	c = opd_admin__call_new(a, conn, CALL_CA_ROTATE, "", resp);
	opd_hex_encode(id, sizeof(id), c->request_id);
	rc = opd_admin__call_started(
	    c, opd_certs_rotate_ca(a->certs, cert, key, OPD_ADMIN_ACTOR, id, cert_call_done, c),
	    resp);
	json_decref(root);
	return rc;
}

/* POST /api/v1/ca/{fingerprint}/activate and .../retire */
static int ca_step(struct opd_admin *a, const char *fp, bool activate,
		   const struct opd_http_request *req, void *conn, struct opd_admin_response *resp)
{
	uint8_t id[OPD_REQUEST_ID_LEN];
	struct admin_call *c;

	if (opd_admin__request_id(req, id, resp) != 0)
		return 0;
	c = opd_admin__call_new(a, conn, activate ? CALL_CA_ACTIVATE : CALL_CA_RETIRE, fp, resp);
	opd_hex_encode(id, sizeof(id), c->request_id);
	return opd_admin__call_started(
	    c,
	    activate ? opd_certs_activate_ca(a->certs, fp, OPD_ADMIN_ACTOR, id, cert_call_done, c)
		     : opd_certs_retire_ca(a->certs, fp, OPD_ADMIN_ACTOR, id, cert_call_done, c),
	    resp);
}

/* GET /api/v1/ca/crl[?format=der|pem][&ca=FINGERPRINT|all] */
static void ca_crl(struct opd_admin *a, const struct opd_http_request *req,
		   struct opd_admin_response *resp)
{
	static const char *const keys[] = {"format", "ca", NULL};
	char format[8] = "der", ca[OPD_CA_FP_LEN + 1];
	int unknown = 0, has_format, has_ca, rc;
	bool pem;

	has_format = query_get(req->query, "format", keys, format, sizeof(format), &unknown);
	has_ca = query_get(req->query, "ca", keys, ca, sizeof(ca), &unknown);
	if (unknown || has_format < 0 || has_ca < 0 ||
	    (strcmp(format, "der") != 0 && strcmp(format, "pem") != 0)) {
		opd_admin__reply_error(
		    resp, 400, "invalid_argument",
		    "query parameters are format (der or pem) and ca (a fingerprint, or "
		    "all with format=pem)");
		return;
	}
	pem = strcmp(format, "pem") == 0;
	opd_buf_reset(&resp->body);
	rc = opd_certs_crl(a->certs, has_ca ? ca : NULL, pem, &resp->body);
	if (rc != 0) {
		opd_buf_reset(&resp->body);
		if (rc == OPD_ENOTFOUND)
			opd_admin__reply_error(resp, 404, "not_found", "%s", a->certs->errmsg);
		else if (rc == OPD_EINVAL)
			opd_admin__reply_error(resp, 400, "invalid_argument", "%s",
					       a->certs->errmsg);
		else if (rc == OPD_EIO)
			opd_admin__reply_error(resp, 503, "ca_key_unavailable", "%s",
					       a->certs->errmsg);
		else
			opd_admin__reply_error(resp, 500, "internal", "%s", a->certs->errmsg);
		return;
	}
	resp->status = 200;
	resp->content_type = pem ? "application/x-pem-file" : "application/pkix-crl";
}

/* GET /api/v1/ca/bundle: every CA agents and servers should trust now, PEM. */
static void ca_bundle(struct opd_admin *a, struct opd_admin_response *resp)
{
	int rc;

	opd_buf_reset(&resp->body);
	rc = opd_certs_bundle(a->certs, &resp->body);
	if (rc != 0) {
		opd_buf_reset(&resp->body);
		if (rc == OPD_ENOTFOUND)
			opd_admin__reply_error(resp, 404, "not_found",
					       "no fleet CA is registered yet");
		else
			opd_admin__reply_store_error(resp, rc);
		return;
	}
	resp->status = 200;
	resp->content_type = "application/x-pem-file";
}

static json_t *rotation_json(const struct opd_rotation_info *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "rotation_id", opd_admin__jstr(r->id));
	json_object_set_new(o, "selector", opd_admin__jkvs(&r->selector));
	json_object_set_new(o, "started_ms", opd_admin__ju64(r->started_ms));
	json_object_set_new(o, "actor", opd_admin__jstr(r->actor));
	return o;
}

/* Certificates issued for one rotation, by agent: {uid: fingerprint} (the newest wins). */
static int rotation_cert_cb(void *data, const struct opd_cert_info *c)
{
	json_t *o = json_object_get(data, "certs");

	if (strcmp(c->rotation_id, json_string_value(json_object_get(data, "id"))) == 0)
		json_object_set_new(o, c->instance_uid, json_string(c->fingerprint));
	return 0;
}

static bool str_eq(json_t *a, const char *b)
{
	return json_is_string(a) && b != NULL && strcmp(json_string_value(a), b) == 0;
}

/*
 * Where one agent (its JSON, from any node) stands in rotation id, whose
 * issued certificates are certs: pending (nothing issued yet), offered,
 * acknowledged (it presents the new certificate, or said it applied it),
 * failed, or unsupported (it does not accept connection settings).
 */
static const char *rotation_state(json_t *ag, const char *id, json_t *certs, const char **message)
{
	json_t *cert = json_object_get(ag, "certificate"), *offer = json_object_get(cert, "offer");
	const char *fp = json_string_value(
	    json_object_get(certs, json_string_value(json_object_get(ag, "instance_uid"))));
	json_t *state = json_object_get(offer, "state");

	*message = json_string_value(json_object_get(offer, "message"));
	if (!json_is_true(json_object_get(cert, "accepts_offers"))) {
		*message = "the agent does not accept connection settings";
		return "unsupported";
	}
	if (fp == NULL)
		return str_eq(json_object_get(offer, "rotation_id"), id) && str_eq(state, "failed")
			   ? "failed"
			   : "pending";
	if (str_eq(json_object_get(cert, "presented_fingerprint"), fp) ||
	    (str_eq(json_object_get(offer, "fingerprint"), fp) && str_eq(state, "applied")))
		return "acknowledged";
	if (str_eq(json_object_get(offer, "fingerprint"), fp) && str_eq(state, "failed"))
		return "failed";
	return "offered";
}

/* Append s percent-encoded (everything but RFC 3986's unreserved characters). */
static void url_encode(struct opd_buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
			opd_buf_append_byte(out, ch);
		else
			opd_buf_appendf(out, "%%%02X", ch);
	}
}

/* The rotation's progress over every agent it matches (merged from every node). */
static void rotation_shape(struct opd_admin *a, json_t *merged, json_t *arg,
			   struct opd_admin_response *resp)
{
	static const char *const states[] = {"pending", "offered", "acknowledged", "failed",
					     "unsupported"};
	json_t *out = json_deep_copy(json_object_get(arg, "rotation"));
	json_t *progress = json_object(), *list = json_array(), *ag;
	const char *id = json_string_value(json_object_get(arg, "id"));
	size_t i, counts[5] = {0};

	(void)a;
	json_array_foreach(json_object_get(merged, "agents"), i, ag)
	{
		const char *msg, *st = rotation_state(ag, id, json_object_get(arg, "certs"), &msg);
		json_t *item = json_object();
		size_t k;

		for (k = 0; k < 5 && strcmp(states[k], st) != 0; k++)
			;
		counts[k]++;
		json_object_set(item, "instance_uid", json_object_get(ag, "instance_uid"));
		json_object_set_new(item, "state", json_string(st));
		json_object_set_new(item, "connected",
				    json_boolean(json_is_true(json_object_get(ag, "connected"))));
		json_object_set_new(item, "message",
				    msg != NULL ? opd_admin__jstr(msg) : json_null());
		json_array_append_new(list, item);
	}
	json_object_set_new(progress, "matched", json_integer((json_int_t)json_array_size(list)));
	for (size_t k = 0; k < 5; k++)
		json_object_set_new(progress, states[k], json_integer((json_int_t)counts[k]));
	json_object_set_new(progress, "complete",
			    json_boolean(counts[0] == 0 && counts[1] == 0 &&
					 !json_is_true(json_object_get(merged, "partial"))));
	json_object_set_new(out, "progress", progress);
	json_object_set_new(out, "agents", list);
	json_object_set(out, "partial", json_object_get(merged, "partial"));
	opd_admin__reply(resp, 200, out);
}

/* GET /api/v1/rotations/{id}: the rotation and where every agent it matches stands. */
static int rotation_get(struct opd_admin *a, const char *id, void *conn,
			struct opd_admin_response *resp)
{
	struct opd_rotation_info r;
	struct opd_buf query;
	json_t *arg, *local, *arr;
	struct opd_list *pos;
	uint64_t now = opd_clock_now(a->clock);
	int rc = opd_store_get_rotation(&a->configs->store, id, &r);

	if (rc != 0) {
		opd_admin__reply_store_error(resp, rc);
		return 0;
	}
	arg = json_pack("{s:o, s:s, s:o}", "rotation", rotation_json(&r), "id", r.id, "certs",
			json_object());
	if (opd_store_foreach_certificate(&a->configs->store, NULL, rotation_cert_cb, arg) < 0) {
		json_decref(arg);
		opd_rotation_info_fini(&r);
		opd_admin__reply_error(resp, 500, "internal", "%s",
				       opd_store_errmsg(&a->configs->store));
		return 0;
	}
	arr = json_array();
	opd_list_foreach(pos, &a->registry->agents)
	{
		const struct opd_agent *ag = opd_container_of(pos, struct opd_agent, link);
		if (opd_selector_match(&r.selector, ag))
			json_array_append_new(arr, opd_admin__agent_json(a, ag, now));
	}
	local = json_pack("{s:o}", "agents", arr);
	/* The other nodes' agents, by the same selector (attr.KEY=VALUE filters). */
	opd_buf_init(&query);
	for (size_t i = 0; i < r.selector.n; i++) {
		opd_buf_appendf(&query, "%sattr.", i ? "&" : "");
		url_encode(&query, r.selector.v[i].key);
		opd_buf_append_byte(&query, '=');
		url_encode(&query, r.selector.v[i].value);
	}
	opd_buf_append_byte(&query, 0);
	opd_rotation_info_fini(&r);
	if (conn != NULL && a->ops.fanout_agents != NULL &&
	    a->ops.fanout_agents(a->ops.data, conn, (const char *)opd_buf_rptr(&query),
				 json_incref(local), rotation_shape, json_incref(arg)) == 0) {
		rc = OPD_EAGAIN;
	} else {
		json_object_set_new(local, "partial", json_false());
		rotation_shape(a, local, arg, resp);
		rc = 0;
	}
	opd_buf_fini(&query);
	json_decref(local);
	json_decref(arg);
	return rc;
}

static int rotation_list_cb(void *data, const struct opd_rotation_info *r)
{
	json_array_append_new(data, rotation_json(r));
	return 0;
}

/* POST /api/v1/rotations {"selector": {...}}: re-issue the matching agents' certificates. */
static int rotation_start(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			  struct opd_admin_response *resp)
{
	static const char *const keys[] = {"selector", NULL};
	uint8_t id[OPD_REQUEST_ID_LEN];
	struct admin_call *c;
	const char *k;
	json_t *root, *sel, *val;
	bool bad;
	int rc;

	if (opd_admin__request_id(req, id, resp) != 0)
		return 0;
	root = optional_body(req, resp, keys, &bad);
	if (bad)
		return 0;
	c = opd_admin__call_new(a, conn, CALL_ROTATION, "", resp);
	opd_hex_encode(id, sizeof(id), c->request_id);
	sel = root != NULL ? json_object_get(root, "selector") : NULL;
	if (sel != NULL && !json_is_null(sel)) {
		if (!json_is_object(sel) || json_object_size(sel) > OPD_MAX_SELECTOR_PAIRS) {
			opd_admin__reply_error(
			    resp, 400, "invalid_argument",
			    "\"selector\" must be an object of at most %d strings",
			    OPD_MAX_SELECTOR_PAIRS);
			goto refused;
		}
		json_object_foreach(sel, k, val)
		{
			if (!json_is_string(val)) {
				opd_admin__reply_error(resp, 400, "invalid_argument",
						       "selector \"%s\" must be a string", k);
				goto refused;
			}
			opd_kvs_add(&c->selector, k, json_string_value(val));
		}
	}
	opd_kvs_sort(&c->selector);
	rc = opd_admin__call_started(c,
				     opd_certs_start_rotation(a->certs, &c->selector,
							      OPD_ADMIN_ACTOR, id, cert_call_done,
							      c),
				     resp);
	json_decref(root);
	return rc;
refused:
	opd_admin__call_free(c);
	json_decref(root);
	return 0;
}

int opd_admin__route_certs(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			   char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT], int n,
			   struct opd_admin_response *resp)
{
	bool get = opd_admin__method_is(req, "GET"), post = opd_admin__method_is(req, "POST");
	const char *what = seg[2];
	int rc;

	if (!certs_available(a, resp))
		return 0;
	if (strcmp(what, "certificates") == 0) {
		if (n <= 4 && !get) {
			opd_admin__reply_method(resp, "GET");
			return 0;
		}
		if (n == 3) {
			certs_list(a, req, resp);
			return 0;
		}
		if (n == 4) {
			cert_get(a, seg[3], resp);
			return 0;
		}
		if (n == 5 && strcmp(seg[4], "revoke") == 0) {
			if (!post) {
				opd_admin__reply_method(resp, "POST");
				return 0;
			}
			if (!opd_admin__write_here(a, req, conn, resp, &rc))
				return rc;
			return cert_revoke(a, seg[3], req, conn, resp);
		}
	} else if (strcmp(what, "ca") == 0) {
		if (n == 3 ||
		    (n == 4 && (strcmp(seg[3], "crl") == 0 || strcmp(seg[3], "bundle") == 0))) {
			if (!get) {
				opd_admin__reply_method(resp, "GET");
				return 0;
			}
			if (n == 3)
				ca_status(a, resp);
			else if (strcmp(seg[3], "crl") == 0)
				ca_crl(a, req, resp);
			else
				ca_bundle(a, resp);
			return 0;
		}
		if ((n == 4 && strcmp(seg[3], "rotate") == 0) ||
		    (n == 5 &&
		     (strcmp(seg[4], "activate") == 0 || strcmp(seg[4], "retire") == 0))) {
			if (!post) {
				opd_admin__reply_method(resp, "POST");
				return 0;
			}
			if (!opd_admin__write_here(a, req, conn, resp, &rc))
				return rc;
			if (n == 4)
				return ca_rotate(a, req, conn, resp);
			/* Fingerprints are stored in lower case; accept what openssl prints. */
			for (char *p = seg[3]; *p != '\0'; p++)
				*p = (char)tolower((unsigned char)*p);
			return ca_step(a, seg[3], strcmp(seg[4], "activate") == 0, req, conn, resp);
		}
	} else if (n == 3) { /* rotations */
		if (get) {
			json_t *arr = json_array(), *root;

			if (opd_store_foreach_rotation(&a->configs->store, rotation_list_cb, arr) !=
			    0) {
				json_decref(arr);
				opd_admin__reply_error(resp, 500, "internal", "%s",
						       opd_store_errmsg(&a->configs->store));
				return 0;
			}
			root = json_object();
			json_object_set_new(root, "rotations", arr);
			opd_admin__reply(resp, 200, root);
			return 0;
		}
		if (!post) {
			opd_admin__reply_method(resp, "GET, POST");
			return 0;
		}
		if (!opd_admin__write_here(a, req, conn, resp, &rc))
			return rc;
		return rotation_start(a, req, conn, resp);
	} else if (n == 4) {
		if (!get) {
			opd_admin__reply_method(resp, "GET");
			return 0;
		}
		return rotation_get(a, seg[3], conn, resp);
	}
	opd_admin__reply_not_found(resp);
	return 0;
}

/*
 * POST /internal/v1/csr {instance_uid, csr}: a follower relays an agent's
 * CSR; the leader issues as for its own agents and answers {cert, ca_cert}.
 */
int opd_admin__internal_csr(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			    struct opd_admin_response *resp)
{
	uint8_t id[OPD_REQUEST_ID_LEN], uid[16];
	struct admin_call *c;
	const char *hex, *csr, *reason, *rotation;
	json_t *root;
	int rc;

	if (a->certs == NULL) {
		opd_admin__reply_error(resp, 503, "ca_key_unavailable", "this node has no CA");
		return 0;
	}
	if (opd_admin__request_id(req, id, resp) != 0 ||
	    (root = opd_admin__parse_body(req, resp)) == NULL)
		return 0;
	hex = json_string_value(json_object_get(root, "instance_uid"));
	csr = json_string_value(json_object_get(root, "csr"));
	reason = json_string_value(json_object_get(root, "reason"));
	rotation = json_string_value(json_object_get(root, "rotation_id"));
	if (reason == NULL)
		reason = "csr"; /* a node of the previous release */
	if (hex == NULL || strlen(hex) != 32 || opd_hex_decode(hex, uid, sizeof uid) != 0 ||
	    csr == NULL ||
	    (strcmp(reason, "csr") != 0 && strcmp(reason, "server") != 0 &&
	     strcmp(reason, "renewal") != 0 && strcmp(reason, "rotation") != 0) ||
	    (rotation != NULL && strlen(rotation) > OPD_STORE_ROTATION_ID_MAX)) {
		opd_admin__reply_error(
		    resp, 400, "invalid_argument",
		    "need \"instance_uid\" (32 hex digits) and \"csr\" (PEM); \"reason\" "
		    "is csr, server, renewal or rotation");
		json_decref(root);
		return 0;
	}
	c = opd_admin__call_new(a, conn, CALL_CSR, hex, resp);
	opd_hex_encode(id, sizeof(id), c->request_id);
	rc = opd_admin__call_started(
	    c,
	    opd_certs_issue_csr(a->certs, uid, (const uint8_t *)csr, strlen(csr), reason,
				rotation != NULL && rotation[0] ? rotation : NULL,
				strcmp(reason, "csr") == 0 ? "agent" : "server", id, cert_call_done,
				c),
	    resp);
	json_decref(root);
	return rc;
}
