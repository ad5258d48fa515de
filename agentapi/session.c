#include "session.h"

#include "err.h"
#include "mem.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP(x) OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_##x
#define FLAG_REQUEST_UID                                                                           \
	OPAMP__PROTO__V1__AGENT_TO_SERVER_FLAGS__AgentToServerFlags_RequestInstanceUid
#define FLAG_REPORT_FULL OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState
#define ERR_BAD_REQUEST                                                                            \
	OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest
#define ERR_UNAVAILABLE                                                                            \
	OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_Unavailable

#define VALUE_MAX 4096                /* rendered attribute value or key, error message */
#define RENDER_DEPTH_MAX 16           /* nested arrays / kvlists rendered before eliding */
#define CUSTOM_CAPS_MAX 64            /* custom capabilities kept per agent */
#define CUSTOM_CAP_LEN_MAX 256        /* longer names are not real capabilities: dropped */
#define UID_TRIES 4                   /* fresh uids tried when a new one collides */
#define ADMIT_RETRY_NS 30000000000ull /* the spec's minimum recommended retry interval */

typedef Opamp__Proto__V1__AnyValue anyvalue;
typedef Opamp__Proto__V1__KeyValue keyvalue;
typedef Opamp__Proto__V1__AgentConfigMap config_map;

/* ------------------------------------------------------------------ hashing */

static void sha_field(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	uint8_t len[8];
	uint64_t v = n;

	for (int i = 7; i >= 0; i--, v >>= 8)
		len[i] = (uint8_t)v;
	EVP_DigestUpdate(ctx, len, sizeof len);
	if (n)
		EVP_DigestUpdate(ctx, p, n);
}

static EVP_MD_CTX *sha_begin(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	/* Allocation failure: the same policy as opd_xmalloc. */
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		abort();
	return ctx;
}

static void sha_end(EVP_MD_CTX *ctx, struct opd_hash *out)
{
	unsigned int len = 0;

	EVP_DigestFinal_ex(ctx, out->b, &len);
	out->len = (uint8_t)len;
	EVP_MD_CTX_free(ctx);
}

struct sorted_entry {
	const Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *e;
	size_t i;
};

static int cmp_entry(const void *x, const void *y)
{
	const struct sorted_entry *a = x, *b = y;
	int c = strcmp(a->e->key ? a->e->key : "", b->e->key ? b->e->key : "");

	if (c != 0)
		return c;
	return a->i < b->i ? -1 : a->i > b->i;
}

/*
 * The same canonical hash the configuration side computes (files sorted by
 * name; name, content type, body each 8-byte big-endian length + bytes), so
 * an effective config equal to the pushed one has the pushed hash. A name
 * repeated in the map counts once, last one wins, as protobuf maps do.
 */
static void hash_config_map(const config_map *cm, struct opd_hash *out)
{
	EVP_MD_CTX *ctx = sha_begin();
	size_t n = cm != NULL ? cm->n_config_map : 0;
	struct sorted_entry *v = opd_xmalloc((n ? n : 1) * sizeof *v);

	for (size_t i = 0; i < n; i++)
		v[i] = (struct sorted_entry){cm->config_map[i], i};
	qsort(v, n, sizeof *v, cmp_entry);
	for (size_t i = 0; i < n; i++) {
		const char *key = v[i].e->key ? v[i].e->key : "";
		const Opamp__Proto__V1__AgentConfigFile *f = v[i].e->value;
		const char *ct = f != NULL && f->content_type ? f->content_type : "";

		if (i + 1 < n && strcmp(key, v[i + 1].e->key ? v[i + 1].e->key : "") == 0)
			continue;
		sha_field(ctx, key, strlen(key));
		sha_field(ctx, ct, strlen(ct));
		sha_field(ctx, f != NULL ? f->body.data : NULL, f != NULL ? f->body.len : 0);
	}
	free(v);
	sha_end(ctx, out);
}

/* Hash of what we offer in connection_settings: changes whenever the offer does. */
static void settings_hash(const struct opd_registry *r, struct opd_hash *out)
{
	EVP_MD_CTX *ctx = sha_begin();
	const char *ep = r->settings.endpoint ? r->settings.endpoint : "";
	uint8_t be[8];
	uint64_t v = r->settings.heartbeat_interval_s;

	sha_field(ctx, ep, strlen(ep));
	for (int i = 7; i >= 0; i--, v >>= 8)
		be[i] = (uint8_t)v;
	EVP_DigestUpdate(ctx, be, sizeof be);
	sha_end(ctx, out);
}

/* Hash of a certificate offer: the plain settings and the certificate, so each offer differs. */
static void offer_hash(const struct opd_registry *r, const uint8_t fp[OPD_CERT_FP_LEN],
		       struct opd_hash *out)
{
	EVP_MD_CTX *ctx = sha_begin();
	struct opd_hash plain;

	settings_hash(r, &plain);
	sha_field(ctx, plain.b, plain.len);
	sha_field(ctx, fp, OPD_CERT_FP_LEN);
	sha_end(ctx, out);
}

static int hash_eq(const struct opd_hash *a, const struct opd_hash *b)
{
	return a->len != 0 && a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

static void hash_set(struct opd_hash *h, const uint8_t *p, size_t n)
{
	/* Longer hashes are kept truncated (agent.h): we never send one that long. */
	if (n > OPD_HASH_MAX)
		n = OPD_HASH_MAX;
	if (n)
		memcpy(h->b, p, n);
	h->len = (uint8_t)n;
}

/* ---------------------------------------------------------------- rendering */

struct render {
	struct opd_buf b;
	int full;
};

static void put(struct render *rd, const void *p, size_t n)
{
	size_t room = VALUE_MAX - opd_buf_avail(&rd->b);

	if (rd->full)
		return;
	if (n > room) {
		n = room;
		rd->full = 1;
	}
	opd_buf_append(&rd->b, p, n);
}

static void puts_(struct render *rd, const char *s)
{
	put(rd, s, strlen(s));
}

static void put_quoted(struct render *rd, const char *s)
{
	put(rd, "\"", 1);
	for (; *s != '\0' && !rd->full; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(rd, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			puts_(rd, esc);
		} else {
			put(rd, s, 1);
		}
	}
	put(rd, "\"", 1);
}

static void put_hex(struct render *rd, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n && !rd->full; i++) {
		char h[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
		put(rd, h, 2);
	}
}

/* Shortest of %.15g..%.17g that reads back as the same double. */
static void put_double(struct render *rd, double d)
{
	char s[40];

	for (int prec = 15; prec <= 17; prec++) {
		snprintf(s, sizeof s, "%.*g", prec, d);
		if (strtod(s, NULL) == d)
			break;
	}
	puts_(rd, s);
}

static void render_value(struct render *rd, const anyvalue *v, int depth)
{
	char num[32];
	int nested = depth > 0;

	if (v == NULL) {
		puts_(rd, nested ? "null" : "");
		return;
	}
	if (depth > RENDER_DEPTH_MAX) {
		puts_(rd, "\"...\"");
		return;
	}
	switch (v->value_case) {
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE:
		if (nested)
			put_quoted(rd, v->string_value ? v->string_value : "");
		else
			puts_(rd, v->string_value ? v->string_value : "");
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		puts_(rd, v->bool_value ? "true" : "false");
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_INT_VALUE:
		snprintf(num, sizeof num, "%lld", (long long)v->int_value);
		puts_(rd, num);
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		put_double(rd, v->double_value);
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_BYTES_VALUE:
		if (nested)
			put(rd, "\"", 1);
		put_hex(rd, v->bytes_value.data, v->bytes_value.len);
		if (nested)
			put(rd, "\"", 1);
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
		put(rd, "[", 1);
		for (size_t i = 0; v->array_value && i < v->array_value->n_values && !rd->full;
		     i++) {
			if (i)
				put(rd, ",", 1);
			render_value(rd, v->array_value->values[i], depth + 1);
		}
		put(rd, "]", 1);
		break;
	case OPAMP__PROTO__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
		put(rd, "{", 1);
		for (size_t i = 0; v->kvlist_value && i < v->kvlist_value->n_values && !rd->full;
		     i++) {
			const keyvalue *kv = v->kvlist_value->values[i];

			if (i)
				put(rd, ",", 1);
			put_quoted(rd, kv->key ? kv->key : "");
			put(rd, ":", 1);
			render_value(rd, kv->value, depth + 1);
		}
		put(rd, "}", 1);
		break;
	default:
		/* No member set: AnyValue's null. */
		puts_(rd, nested ? "null" : "");
		break;
	}
}

/* Cut back to a UTF-8 character boundary after truncation, then terminate. */
static char *render_finish(struct render *rd)
{
	size_t n = opd_buf_avail(&rd->b);
	const uint8_t *p = opd_buf_rptr(&rd->b);
	char *s;

	if (rd->full) {
		size_t k = n;

		while (k > 0 && (p[k - 1] & 0xc0) == 0x80)
			k--;
		/* k-1 is a lead byte (or ASCII); drop it if its sequence is incomplete. */
		if (k > 0 && p[k - 1] >= 0xc0) {
			size_t need = p[k - 1] >= 0xf0 ? 4 : p[k - 1] >= 0xe0 ? 3 : 2;

			if (n - (k - 1) < need)
				n = k - 1;
		}
	}
	/* Nothing rendered: the buffer owns no memory and p is NULL. */
	s = opd_xstrndup(n > 0 ? (const char *)p : "", n);
	opd_buf_fini(&rd->b);
	return s;
}

static char *bounded_dup(const char *s)
{
	struct render rd = {0};

	opd_buf_init(&rd.b);
	puts_(&rd, s ? s : "");
	return render_finish(&rd);
}

static void take_attrs(struct opd_kvs *dst, keyvalue **kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct render rd = {0};
		char *key, *val;

		opd_buf_init(&rd.b);
		render_value(&rd, kv[i]->value, 0);
		val = render_finish(&rd);
		key = bounded_dup(kv[i]->key);
		opd_kvs_add(dst, key, val);
		free(key);
		free(val);
	}
	opd_kvs_sort(dst);
}

/* ------------------------------------------------------- reported state */

/* Returns 1 when the description differs from what we had. */
static int take_description(struct opd_agent *a, const Opamp__Proto__V1__AgentDescription *d)
{
	struct opd_kvs ident, nonident;
	int changed;

	opd_kvs_init(&ident);
	opd_kvs_init(&nonident);
	take_attrs(&ident, d->identifying_attributes, d->n_identifying_attributes);
	take_attrs(&nonident, d->non_identifying_attributes, d->n_non_identifying_attributes);
	changed = !a->has_description || !opd_kvs_equal(&ident, &a->ident) ||
		  !opd_kvs_equal(&nonident, &a->nonident);
	opd_kvs_fini(&a->ident);
	opd_kvs_fini(&a->nonident);
	a->ident = ident;
	a->nonident = nonident;
	a->has_description = 1;
	return changed;
}

static void take_health(struct opd_agent *a, const Opamp__Proto__V1__ComponentHealth *h)
{
	size_t n = opamp__proto__v1__component_health__get_packed_size(h);
	uint8_t *p = opd_xmalloc(n ? n : 1);

	opamp__proto__v1__component_health__pack(h, p);
	free(a->health_pb);
	a->health_pb = p;
	a->health_len = n;
	a->healthy = h->healthy ? 1 : 0;
}

static void take_rc_status(struct opd_agent *a, const Opamp__Proto__V1__RemoteConfigStatus *s)
{
	switch (s->status) {
	case OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED:
		a->rc_status = OPD_RC_APPLIED;
		break;
	case OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLYING:
		a->rc_status = OPD_RC_APPLYING;
		break;
	case OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_FAILED:
		a->rc_status = OPD_RC_FAILED;
		break;
	default:
		a->rc_status = OPD_RC_UNSET; /* also unknown future values */
		break;
	}
	hash_set(&a->rc_hash, s->last_remote_config_hash.data, s->last_remote_config_hash.len);
	free(a->rc_error);
	a->rc_error = NULL;
	if (s->error_message != NULL && s->error_message[0] != '\0')
		a->rc_error = bounded_dup(s->error_message);
}

/* Returns 1 when the announced list differs from the one we kept. */
static int take_custom_caps(struct opd_agent *a, const Opamp__Proto__V1__CustomCapabilities *cc)
{
	char **v = opd_xcalloc(CUSTOM_CAPS_MAX, sizeof *v);
	size_t n = 0;
	int changed;

	for (size_t i = 0; i < cc->n_capabilities && n < CUSTOM_CAPS_MAX; i++) {
		const char *c = cc->capabilities[i] ? cc->capabilities[i] : "";

		if (strnlen(c, CUSTOM_CAP_LEN_MAX + 1) > CUSTOM_CAP_LEN_MAX)
			continue;
		v[n++] = opd_xstrdup(c);
	}
	changed = n != a->n_custom_caps;
	for (size_t i = 0; !changed && i < n; i++)
		changed = strcmp(v[i], a->custom_caps[i]) != 0;
	for (size_t i = 0; i < a->n_custom_caps; i++)
		free(a->custom_caps[i]);
	free(a->custom_caps);
	a->custom_caps = v;
	a->n_custom_caps = n;
	return changed;
}

static void recompute_desired(struct opd_registry *r, struct opd_agent *a)
{
	struct opd_desired d = {0};

	free(a->desired_name);
	a->desired_name = NULL;
	a->desired_version = 0;
	a->desired_priority = 0;
	a->desired_hash.len = 0;
	a->desired_gen = r->config_gen;
	a->dirty = 1;
	if (r->ops.desired == NULL || r->ops.desired(r->ops.data, a, &d) != 0 || d.hash_len == 0)
		return;
	a->desired_name = opd_xstrdup(d.name ? d.name : "");
	a->desired_version = d.version;
	a->desired_priority = d.priority;
	hash_set(&a->desired_hash, d.hash, d.hash_len);
}

static int wants_config(const struct opd_agent *a)
{
	return (a->capabilities & CAP(AcceptsRemoteConfig)) && a->desired_name != NULL &&
	       !hash_eq(&a->rc_hash, &a->desired_hash) && !hash_eq(&a->sent_hash, &a->desired_hash);
}

/*
 * The desired AgentConfigMap, unpacked for embedding. protobuf-c cannot embed
 * pre-packed bytes, so we unpack once per send: sends happen once per
 * configuration change per agent, and a cache would have to follow every
 * config_gen. NULL when it is gone or changed without a config_gen bump
 * (the bump follows and triggers the push).
 */
static config_map *desired_config(struct opd_registry *r, const struct opd_agent *a,
				  struct opd_desired *d)
{
	static const uint8_t empty[1];
	struct opd_hash h = {0};

	*d = (struct opd_desired){0};
	if (r->ops.desired == NULL || r->ops.desired(r->ops.data, a, d) != 0)
		return NULL;
	hash_set(&h, d->hash, d->hash_len);
	if (!hash_eq(&h, &a->desired_hash))
		return NULL;
	return opamp__proto__v1__agent_config_map__unpack(NULL, d->config_len,
							  d->config_pb ? d->config_pb : empty);
}

static int has_custom_cap(const struct opd_agent *a, const char *cap)
{
	for (size_t i = 0; i < a->n_custom_caps; i++)
		if (strcmp(a->custom_caps[i], cap) == 0)
			return 1;
	return 0;
}

/*
 * Agents that announced the signature capability get the proof of origin
 * in the same message as the config it is about.
 */
static void attach_signature(opd_s2a *s, const struct opd_agent *a, const struct opd_desired *d,
			     Opamp__Proto__V1__CustomMessage *cm)
{
	if (d->signature_msg == NULL || d->signature_capability == NULL ||
	    !has_custom_cap(a, d->signature_capability))
		return;
	cm->capability = (char *)d->signature_capability;
	cm->type = (char *)d->signature_type;
	cm->data.data = (uint8_t *)d->signature_msg;
	cm->data.len = d->signature_len;
	s->custom_message = cm;
}

static void mark_disconnected(struct opd_registry *r, struct opd_agent *a)
{
	if (a->connected && r->n_connected > 0)
		r->n_connected--;
	a->connected = 0;
	a->conn = NULL;
	a->dirty = 1;
}

/*
 * "Full": everything the capabilities promise is present, so nothing can be
 * missing from what we know (the opamp-go example and Elastic's mock judge
 * the same way).
 */
static int is_full(const opd_a2s *m)
{
	uint64_t caps = m->capabilities;

	if (m->agent_description == NULL)
		return 0;
	if ((caps & CAP(ReportsRemoteConfig)) && m->remote_config_status == NULL)
		return 0;
	if ((caps & CAP(ReportsHealth)) && m->health == NULL)
		return 0;
	if ((caps & CAP(ReportsEffectiveConfig)) && m->effective_config == NULL)
		return 0;
	return 1;
}

/* ------------------------------------------------------------- replies */

static int encode_with_config(opd_s2a *s, struct opd_agent *a, config_map *cfg,
			      Opamp__Proto__V1__AgentRemoteConfig *rc, struct opd_buf *out)
{
	int ret;

	if (cfg != NULL) {
		rc->config = cfg;
		rc->config_hash.data = a->desired_hash.b;
		rc->config_hash.len = a->desired_hash.len;
		s->remote_config = rc;
	}
	ret = opd_wire_encode_s2a(s, 0, out);
	if (ret == OPD_ETOOBIG && s->remote_config != NULL) {
		/* The config alone breaks the limit: answer without it rather than not at all. */
		s->remote_config = NULL;
		s->custom_message = NULL;
		ret = opd_wire_encode_s2a(s, 0, out);
	}
	if (ret == 0 && s->remote_config != NULL) {
		a->sent_hash = a->desired_hash;
		a->sent_at_ms = a->last_seen_ms;
		a->awaiting_receipt = 1;
	}
	if (cfg != NULL)
		opamp__proto__v1__agent_config_map__free_unpacked(cfg, NULL);
	s->remote_config = NULL;
	return ret;
}

void opd_session_error_reply(const uint8_t *uid, int type, const char *message,
			     uint64_t retry_after_ns, struct opd_buf *reply)
{
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	Opamp__Proto__V1__ServerErrorResponse e = OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__INIT;
	Opamp__Proto__V1__RetryInfo ri = OPAMP__PROTO__V1__RETRY_INFO__INIT;
	char *msg = bounded_dup(message);

	if (uid != NULL) {
		s.instance_uid.data = (uint8_t *)uid;
		s.instance_uid.len = OPD_UID_LEN;
	}
	e.type = (Opamp__Proto__V1__ServerErrorResponseType)type;
	e.error_message = msg;
	if (retry_after_ns > 0) {
		ri.retry_after_nanoseconds = retry_after_ns;
		e.details_case = OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS_RETRY_INFO;
		e.retry_info = &ri;
	}
	s.error_response = &e;
	/* A few KiB at most: cannot exceed the limit. */
	(void)opd_wire_encode_s2a(&s, 0, reply);
	free(msg);
}

/* ------------------------------------------------------------- CSR flow */

/*
 * After the reply is encoded, so that an answer given at once (a refusal)
 * reaches the transport with r->csr_handed already set.
 */
static void hand_csr(struct opd_registry *r, const struct opd_agent *a, const opd_a2s *m)
{
	const Opamp__Proto__V1__ConnectionSettingsRequest *req = m->connection_settings_request;
	uint64_t token;

	if (req == NULL || req->opamp == NULL || req->opamp->certificate_request == NULL ||
	    req->opamp->certificate_request->csr.len == 0 || r->csr.request == NULL)
		return;
	token = ++r->csr_next_token;
	r->csr_handed = token;
	r->csr.request(r->csr.data, a, req->opamp->certificate_request->csr.data,
		       req->opamp->certificate_request->csr.len, token);
}

/* SHA-256 of a PEM certificate's DER. 0, or OPD_EINVAL when it is not one. */
static int cert_fingerprint(const char *pem, uint8_t fp[OPD_CERT_FP_LEN])
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned int n = 0;
	int ok = x != NULL && X509_digest(x, EVP_sha256(), fp, &n) == 1 && n == OPD_CERT_FP_LEN;

	X509_free(x);
	BIO_free(bio);
	return ok ? 0 : OPD_EINVAL;
}

int opd_session_offer_cert(struct opd_registry *r, struct opd_agent *a,
			   const struct opd_cert_offer *o, uint64_t wall_ms)
{
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	Opamp__Proto__V1__ConnectionSettingsOffers cso =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_OFFERS__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettings os =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS__INIT;
	Opamp__Proto__V1__TLSCertificate tc = OPAMP__PROTO__V1__TLSCERTIFICATE__INIT;
	struct opd_agent_tls *t;
	uint8_t fp[OPD_CERT_FP_LEN];
	struct opd_buf out;

	if (o->cert_pem == NULL || cert_fingerprint(o->cert_pem, fp) != 0)
		return OPD_EINVAL;
	t = opd_agent_tls(a);
	opd_agent_tls_drop_pending(t);
	offer_hash(r, fp, &t->offer_hash);
	memcpy(t->offer_fp, fp, sizeof fp);
	t->offer = OPD_OFFER_OFFERED;
	t->offer_serial = o->serial;
	snprintf(t->rotation_id, sizeof t->rotation_id, "%s",
		 o->rotation_id != NULL ? o->rotation_id : "");
	t->offered_ms = wall_ms;
	t->sends = 0;
	free(t->message);
	t->message = NULL;

	s.instance_uid.data = a->uid;
	s.instance_uid.len = OPD_UID_LEN;
	s.capabilities = r->settings.capabilities;
	os.destination_endpoint = (char *)(r->settings.endpoint ? r->settings.endpoint : "");
	/* Always set: 0 would switch an opamp-go agent's heartbeats off. */
	os.heartbeat_interval_seconds = r->settings.heartbeat_interval_s;
	tc.cert.data = (uint8_t *)o->cert_pem;
	tc.cert.len = strlen(o->cert_pem);
	if (o->key_pem != NULL) {
		tc.private_key.data = (uint8_t *)o->key_pem;
		tc.private_key.len = strlen(o->key_pem);
	}
	if (o->ca_pem != NULL) {
		tc.ca_cert.data = (uint8_t *)o->ca_pem;
		tc.ca_cert.len = strlen(o->ca_pem);
	}
	os.certificate = &tc;
	cso.hash.data = t->offer_hash.b;
	cso.hash.len = t->offer_hash.len;
	cso.opamp = &os;
	s.connection_settings = &cso;
	opd_buf_init(&out);
	(void)opd_wire_encode_s2a(&s, 0, &out);
	t->pending_len = opd_buf_avail(&out);
	t->pending = opd_xmalloc(t->pending_len);
	memcpy(t->pending, opd_buf_rptr(&out), t->pending_len);
	OPENSSL_cleanse((void *)opd_buf_rptr(&out), t->pending_len); /* may hold a private key */
	opd_buf_fini(&out);
	t->pending_due = 1;
	a->settings_offered = 1; /* the offer carries the plain settings too */
	return 0;
}

/* Append the due offer of a to out (a packed ServerToAgent merges with one before it). */
static int append_offer(struct opd_agent *a, struct opd_buf *out)
{
	struct opd_agent_tls *t = a->tls;

	if (t == NULL || !t->pending_due || t->pending == NULL)
		return 0;
	opd_buf_append(out, t->pending, t->pending_len);
	t->pending_due = 0;
	t->sends++;
	return 1;
}

int opd_session_take_offer(struct opd_agent *a, struct opd_buf *out)
{
	return append_offer(a, out);
}

void opd_session_cert_presented(struct opd_agent *a, const uint8_t fp[OPD_CERT_FP_LEN])
{
	struct opd_agent_tls *t = opd_agent_tls(a);

	memcpy(t->presented, fp, OPD_CERT_FP_LEN);
	t->has_presented = 1;
	/* Reconnecting with the offered certificate is the proof that it works (spec §3.7). */
	if (t->offer != OPD_OFFER_NONE && memcmp(t->offer_fp, fp, OPD_CERT_FP_LEN) == 0) {
		t->offer = OPD_OFFER_APPLIED;
		opd_agent_tls_drop_pending(t);
	}
}

/* The agent's ConnectionSettingsStatus about our certificate offer. */
static void take_offer_status(struct opd_agent_tls *t,
			      const Opamp__Proto__V1__ConnectionSettingsStatus *st)
{
	switch ((int)st->status) {
	case OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUSES__ConnectionSettingsStatuses_APPLYING:
		if (t->offer == OPD_OFFER_OFFERED)
			t->offer = OPD_OFFER_APPLYING;
		break;
	case OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUSES__ConnectionSettingsStatuses_APPLIED:
		t->offer = OPD_OFFER_APPLIED;
		opd_agent_tls_drop_pending(t);
		break;
	case OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUSES__ConnectionSettingsStatuses_FAILED:
		t->offer = OPD_OFFER_FAILED;
		free(t->message);
		t->message = opd_xstrdup(st->error_message != NULL && st->error_message[0]
					     ? st->error_message
					     : "the agent could not use the offered certificate");
		if (strlen(t->message) > VALUE_MAX)
			t->message[VALUE_MAX] = '\0';
		opd_agent_tls_drop_pending(t);
		break;
	default:
		break;
	}
}

void opd_session_csr_answer(struct opd_registry *r, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			    const struct opd_csr_answer *ans)
{
	struct opd_agent *a = opd_registry_find(r, uid);
	struct opd_cert_offer o = {.cert_pem = ans->cert_pem, .ca_pem = ans->ca_pem};
	struct opd_buf out;
	int unavailable = 0;

	opd_buf_init(&out);
	if (ans->status == OPD_EINVAL) {
		opd_session_error_reply(uid, ERR_BAD_REQUEST,
					ans->message ? ans->message : "the CSR was refused", 0,
					&out);
	} else if (ans->status != 0 || ans->cert_pem == NULL || a == NULL ||
		   opd_session_offer_cert(r, a, &o, 0) != 0) {
		opd_session_error_reply(uid, ERR_UNAVAILABLE,
					ans->message ? ans->message : "no node can sign now",
					ADMIT_RETRY_NS, &out);
		unavailable = 1;
	} else {
		/* The agent keeps its own key: the offer holds no secret. */
		(void)append_offer(a, &out);
	}
	if (r->csr_sink.deliver != NULL)
		r->csr_sink.deliver(r->csr_sink.data, token, uid, opd_buf_rptr(&out),
				    opd_buf_avail(&out),
				    unavailable ? ADMIT_RETRY_NS / 1000000000ull : 0);
	opd_buf_fini(&out);
}

/* ------------------------------------------------------------- receive */

/*
 * RequestInstanceUid: returns 1 with new_uid filled when the agent is given
 * a new uid. A repeated request from the old uid (the agent has not switched
 * yet) finds no agent under that uid; if this WebSocket connection is bound
 * to an agent with another uid, it is that agent asking again (a connection
 * carries one agent), and it gets the uid it was already given instead of a
 * second rekey.
 */
static struct opd_agent *reuse_bound(struct opd_agent **bound, struct opd_conn *conn,
				     enum opd_transport t, const opd_a2s *m)
{
	struct opd_agent *b = *bound;

	if (!(m->flags & FLAG_REQUEST_UID) || t != OPD_TRANSPORT_WS || conn == NULL || b == NULL ||
	    b->conn != conn || memcmp(b->uid, m->instance_uid.data, OPD_UID_LEN) == 0)
		return NULL;
	return b;
}

static int assign_uid(struct opd_registry *r, struct opd_agent *a, uint8_t new_uid[OPD_UID_LEN])
{
	if (r->ops.new_uid == NULL)
		return 0;
	for (int i = 0; i < UID_TRIES; i++) {
		r->ops.new_uid(r->ops.data, new_uid);
		if (memcmp(new_uid, a->uid, OPD_UID_LEN) != 0 &&
		    opd_registry_rekey(r, a, new_uid) == 0)
			return 1;
	}
	return 0;
}

/*
 * A new connection without the offered certificate: the offer may have been
 * lost with the old one, so it goes again, a few times at most.
 */
static void resend_offer(struct opd_agent *a)
{
	struct opd_agent_tls *t = a->tls;

	if (t == NULL || t->pending == NULL ||
	    (t->offer != OPD_OFFER_OFFERED && t->offer != OPD_OFFER_APPLYING))
		return;
	if (t->sends < OPD_OFFER_MAX_SENDS) {
		t->pending_due = 1;
		return;
	}
	t->offer = OPD_OFFER_FAILED;
	free(t->message);
	t->message = opd_xstrdup("the agent reconnected without the offered certificate "
				 "after every offer");
	opd_agent_tls_drop_pending(t);
}

static void bind_conn(struct opd_registry *r, struct opd_agent **bound, struct opd_agent *a,
		      struct opd_conn *conn, enum opd_transport t)
{
	if (t != OPD_TRANSPORT_WS) {
		a->conn = NULL;
		return;
	}
	/* A config in flight on another stream may be lost with it: offer it again. */
	if (a->conn != conn) {
		a->sent_hash.len = 0;
		resend_offer(a);
	}
	/* The connection now speaks for a; the agent it carried before is gone from it. */
	if (*bound != NULL && *bound != a && (*bound)->conn == conn)
		mark_disconnected(r, *bound);
	a->conn = conn;
}

int opd_session_receive(struct opd_registry *r, struct opd_agent **bound, struct opd_conn *conn,
			enum opd_transport t, const opd_a2s *m, uint64_t now_ms, uint64_t wall_ms,
			struct opd_buf *reply, struct opd_session_error *err)
{
	struct opd_session_error dummy;
	const uint8_t *uid = m->instance_uid.data;
	struct opd_agent *a;
	uint8_t new_uid[OPD_UID_LEN];
	int created = 0, assigned = 0, full, gap, retry, fresh, want_full = 0, desc_changed = 0;
	int caps_changed = 0, leaving = m->agent_disconnect != NULL;

	if (err == NULL)
		err = &dummy;
	err->message[0] = '\0';
	r->csr_handed = 0;
	if (m->instance_uid.len != OPD_UID_LEN) {
		snprintf(err->message, sizeof err->message, "instance_uid is %zu bytes, not %d",
			 m->instance_uid.len, OPD_UID_LEN);
		opd_session_error_reply(NULL, ERR_BAD_REQUEST, err->message, 0, reply);
		return OPD_EINVAL;
	}

	a = opd_registry_find(r, uid);
	if (a == NULL && (a = reuse_bound(bound, conn, t, m)) != NULL) {
		memcpy(new_uid, a->uid, OPD_UID_LEN);
		assigned = 1;
	}
	if (a == NULL) {
		a = opd_registry_get(r, uid, &created);
		if (a == NULL) {
			snprintf(err->message, sizeof err->message, "agent limit (%zu) reached",
				 r->settings.max_agents);
			opd_session_error_reply(uid, ERR_UNAVAILABLE, err->message, ADMIT_RETRY_NS,
						reply);
			return OPD_EAGAIN;
		}
	}
	if (!assigned && (m->flags & FLAG_REQUEST_UID))
		assigned = assign_uid(r, a, new_uid);

	/*
	 * Sequence numbers: no start value is assumed (opamp-go starts at 0,
	 * Elastic at 1). A gap, or an agent we know nothing about, asks for full
	 * state unless this message already is full; an exact repeat is a retry.
	 */
	full = is_full(m);
	fresh = created || !a->have_seq;
	retry = !fresh && m->sequence_num == a->last_seq;
	gap = !fresh && !retry && m->sequence_num != a->last_seq + 1;
	if (!full && !leaving && (gap || (fresh && !a->full_state_requested)))
		want_full = 1;
	if (full)
		a->full_state_requested = 0;
	if (want_full)
		a->full_state_requested = 1;
	a->last_seq = m->sequence_num;
	a->have_seq = 1;
	/* The answer to the first copy may be what got lost: let a config go out again. */
	if (retry)
		a->sent_hash.len = 0;

	bind_conn(r, bound, a, conn, t);
	a->transport = t;
	if (!a->connected) {
		a->connected = 1;
		r->n_connected++;
		a->connected_at_ms = wall_ms;
	}
	a->disconnected_by_agent = 0;
	a->last_seen_ms = now_ms;
	a->last_seen_wall_ms = wall_ms;
	a->messages++;
	opd_phi_heartbeat(&a->phi, now_ms);
	a->dirty = 1;
	a->capabilities = m->capabilities;

	/* Status compression: each sub-message is kept until the agent sends it again. */
	if (m->agent_description != NULL)
		desc_changed = take_description(a, m->agent_description);
	if (m->health != NULL)
		take_health(a, m->health);
	if (m->effective_config != NULL) {
		hash_config_map(m->effective_config->config_map, &a->effective_hash);
		a->has_effective = 1;
	}
	if (m->custom_capabilities != NULL)
		caps_changed = take_custom_caps(a, m->custom_capabilities);
	if (m->connection_settings_status != NULL) {
		struct opd_hash ours, theirs = {0};
		const ProtobufCBinaryData *h =
		    &m->connection_settings_status->last_connection_settings_hash;

		hash_set(&theirs, h->data, h->len);
		if (a->tls != NULL && a->tls->offer_hash.len != 0) {
			if (hash_eq(&a->tls->offer_hash, &theirs))
				take_offer_status(a->tls, m->connection_settings_status);
			else if (a->tls->pending != NULL)
				a->tls->pending_due = 1; /* spec: MUST include it again */
		} else {
			settings_hash(r, &ours);
			if (!hash_eq(&ours, &theirs))
				a->settings_offered = 0;
		}
	}
	if (created || desc_changed || a->desired_gen != r->config_gen)
		recompute_desired(r, a);
	if (m->remote_config_status != NULL) {
		take_rc_status(a, m->remote_config_status);
		/* The first report about a config we sent: how long delivery took. */
		if (a->awaiting_receipt && a->sent_hash.len != 0 &&
		    hash_eq(&a->rc_hash, &a->sent_hash)) {
			opd_latency_record(&r->receipt_latency, now_ms - a->sent_at_ms);
			a->awaiting_receipt = 0;
		}
		/*
		 * An explicit report of another hash asks for the desired config
		 * again; not over WebSocket while a pushed config awaits its first
		 * report: the stream is ordered, so that report was written before
		 * the agent read the push (after a catch-up, a backlog of them would
		 * resend the newest config once per stale report).
		 */
		if (!hash_eq(&a->rc_hash, &a->desired_hash) &&
		    !(t == OPD_TRANSPORT_WS && a->awaiting_receipt))
			a->sent_hash.len = 0;
	}
	/*
	 * A poll reply can be lost without the same message being retried
	 * (Elastic's client bumps sequence_num on every attempt): over HTTP, an
	 * agent that reports config status and has not reported on the config
	 * within two poll intervals gets it again.
	 */
	if (t == OPD_TRANSPORT_HTTP && a->sent_hash.len != 0 &&
	    (a->capabilities & CAP(ReportsRemoteConfig)) &&
	    now_ms - a->sent_at_ms >= 2 * opd_registry_expected_interval_ms(r, a))
		a->sent_hash.len = 0;
	if (leaving) {
		mark_disconnected(r, a);
		a->disconnected_by_agent = 1;
		if (*bound == a)
			*bound = NULL;
	} else {
		*bound = a;
	}

	/* The reply: always, with instance_uid as sent and our capabilities. */
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	Opamp__Proto__V1__AgentIdentification ident = OPAMP__PROTO__V1__AGENT_IDENTIFICATION__INIT;
	Opamp__Proto__V1__AgentRemoteConfig rc = OPAMP__PROTO__V1__AGENT_REMOTE_CONFIG__INIT;
	Opamp__Proto__V1__ConnectionSettingsOffers cso =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_OFFERS__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettings os =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS__INIT;
	Opamp__Proto__V1__CustomCapabilities cc = OPAMP__PROTO__V1__CUSTOM_CAPABILITIES__INIT;
	Opamp__Proto__V1__CustomMessage sig_msg = OPAMP__PROTO__V1__CUSTOM_MESSAGE__INIT;
	struct opd_desired desired;
	struct opd_hash offer_hash;
	char *common[4];
	config_map *cfg = NULL;

	s.instance_uid.data = (uint8_t *)uid;
	s.instance_uid.len = OPD_UID_LEN;
	s.capabilities = r->settings.capabilities;
	if (want_full)
		s.flags |= FLAG_REPORT_FULL;
	if (assigned) {
		ident.new_instance_uid.data = new_uid;
		ident.new_instance_uid.len = OPD_UID_LEN;
		s.agent_identification = &ident;
	}
	/*
	 * While we ask for full state we do not know the agent's config hash
	 * (after our restart it most likely runs the desired config already):
	 * the config waits for the next message instead of being re-applied.
	 */
	if (!leaving && !want_full && wants_config(a)) {
		cfg = desired_config(r, a, &desired);
		if (cfg != NULL)
			attach_signature(&s, a, &desired, &sig_msg);
	}
	if (!leaving && (a->capabilities & CAP(AcceptsOpAMPConnectionSettings)) &&
	    (a->capabilities & CAP(ReportsHeartbeat)) && !a->settings_offered) {
		settings_hash(r, &offer_hash);
		os.destination_endpoint =
		    (char *)(r->settings.endpoint ? r->settings.endpoint : "");
		/* Always set: 0 would switch an opamp-go agent's heartbeats off. */
		os.heartbeat_interval_seconds = r->settings.heartbeat_interval_s;
		cso.hash.data = offer_hash.b;
		cso.hash.len = offer_hash.len;
		cso.opamp = &os;
		s.connection_settings = &cso;
		a->settings_offered = 1;
	}
	if (!leaving && caps_changed && r->settings.custom_capabilities[0] != NULL) {
		for (size_t i = 0; i < 4 && r->settings.custom_capabilities[i] != NULL; i++) {
			for (size_t j = 0; j < a->n_custom_caps; j++) {
				if (strcmp(a->custom_caps[j], r->settings.custom_capabilities[i]) ==
				    0) {
					common[cc.n_capabilities++] =
					    (char *)r->settings.custom_capabilities[i];
					break;
				}
			}
		}
		cc.capabilities = common;
		s.custom_capabilities = &cc;
	}
	(void)encode_with_config(&s, a, cfg, &rc, reply);
	if (!leaving)
		(void)append_offer(a, reply);
	if (!leaving)
		hand_csr(r, a, m);
	return 0;
}

int opd_session_push(struct opd_registry *r, struct opd_agent *a, uint64_t now_ms,
		     struct opd_buf *out)
{
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	Opamp__Proto__V1__AgentRemoteConfig rc = OPAMP__PROTO__V1__AGENT_REMOTE_CONFIG__INIT;
	Opamp__Proto__V1__CustomMessage sig_msg = OPAMP__PROTO__V1__CUSTOM_MESSAGE__INIT;
	struct opd_desired desired;
	config_map *cfg;
	int ret;

	if (!a->connected || a->transport != OPD_TRANSPORT_WS || a->conn == NULL ||
	    !(a->capabilities & CAP(AcceptsRemoteConfig)))
		return 0;
	if (a->desired_gen != r->config_gen)
		recompute_desired(r, a);
	if (!wants_config(a))
		return 0;
	cfg = desired_config(r, a, &desired);
	if (cfg == NULL)
		return 0;
	attach_signature(&s, a, &desired, &sig_msg);
	s.instance_uid.data = a->uid;
	s.instance_uid.len = OPD_UID_LEN;
	s.capabilities = r->settings.capabilities;
	rc.config = cfg;
	rc.config_hash.data = a->desired_hash.b;
	rc.config_hash.len = a->desired_hash.len;
	s.remote_config = &rc;
	ret = opd_wire_encode_s2a(&s, 0, out);
	opamp__proto__v1__agent_config_map__free_unpacked(cfg, NULL);
	if (ret != 0)
		return 0; /* over the message limit: nothing appended */
	a->sent_hash = a->desired_hash;
	a->sent_at_ms = now_ms;
	a->awaiting_receipt = 1;
	return 1;
}

void opd_session_closed(struct opd_registry *r, struct opd_agent *a, struct opd_conn *conn,
			uint64_t wall_ms)
{
	(void)wall_ms; /* the agent's last_seen_wall_ms already says when it last spoke */
	if (a != NULL && conn != NULL && a->conn == conn)
		mark_disconnected(r, a);
}
