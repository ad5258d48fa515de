#define LOG_COMPONENT "agentapi"

#include "endpoint.h"

#include "err.h"
#include "gzip.h"
#include "hex.h"
#include "log.h"
#include "mem.h"
#include "session.h"
#include "varint.h"
#include "wire.h"
#include "ws.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CT_PROTOBUF "application/x-protobuf"
#define WS_CLOSE_POLICY 1008 /* RFC 6455: policy violation */

/* An HTTP poll whose reply waits for the answer to the CSR it carried. */
struct csr_wait {
	struct opd_list link;
	uint64_t token;
	struct opd_conn *conn; /* removed from the list when the connection closes */
	int gzip;
	uint64_t deadline_ms;
	struct opd_buf reply; /* the poll's own reply; the answer is appended (protobuf merge) */
};

static void csr_deliver(void *data, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			const uint8_t *msg, size_t len, uint64_t retry_after_s);

void opd_endpoint_init(struct opd_endpoint *e, struct opd_registry *r,
		       const struct opd_clock *clock)
{
	*e = (struct opd_endpoint){.registry = r, .clock = clock, .retry_after_s = 30};
	opd_list_init(&e->csr_waits);
	r->csr_sink = (struct opd_csr_sink){csr_deliver, e};
}

/* "application/x-protobuf", optionally followed by parameters. */
static int is_protobuf(const char *ct)
{
	size_t n = strlen(CT_PROTOBUF);

	return ct != NULL && strncasecmp(ct, CT_PROTOBUF, n) == 0 &&
	       (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void respond_text(struct opd_conn *c, int status, const char *msg)
{
	opd_conn_respond_close(c, status, "text/plain", NULL, msg, strlen(msg));
}

/* Log a refusal unless one was logged in the last second: agents are untrusted and many. */
static bool auth_log_due(struct opd_endpoint *e)
{
	uint64_t now = opd_clock_now(e->clock);

	if (e->auth_logged_ms != 0 && now - e->auth_logged_ms < 1000)
		return false;
	e->auth_logged_ms = now;
	return true;
}

/*
 * The spec's HTTP authentication, before the upgrade and on every POST: a
 * bearer token from the token file, or 401. True when the request may go on.
 */
static bool token_ok(struct opd_endpoint *e, struct opd_conn *c, const struct opd_http_request *req)
{
	static const char msg[] = "missing or wrong bearer token\n";

	if (e->auth.tokens == NULL || e->auth.tokens->n == 0 ||
	    opd_tls_tokens_check(e->auth.tokens, opd_http_header(req, "Authorization")))
		return true;
	e->stats.auth_failures++;
	if (auth_log_due(e))
		log_info(
		    "refused agent peer=%s reason=\"missing or wrong bearer token\" refused=%llu",
		    opd_conn_peer(c), (unsigned long long)e->stats.auth_failures);
	opd_conn_respond_close(c, 401, "text/plain", "WWW-Authenticate: Bearer\r\n", msg,
			       sizeof msg - 1);
	return false;
}

/*
 * mTLS: a message must carry the instance_uid the agent's certificate names,
 * so that no agent can speak for another. NULL when it may go on, else why not.
 */
static const char *cert_binding_error(struct opd_endpoint *e, struct opd_conn *c, const opd_a2s *m,
				      int fresh)
{
	struct opd_tls *t = opd_conn_tls(c);
	uint8_t uid[OPD_UID_LEN];
	char fp[65];
	const char *why;
	int rc;

	if (e->auth.mtls == OPD_TLS_VERIFY_OFF || t == NULL)
		return NULL;
	if (!opd_tls_peer_verified(t))
		/* Optional mode lets an agent without a certificate in, bound to nothing. */
		return e->auth.mtls == OPD_TLS_VERIFY_REQUIRED ? "no client certificate" : NULL;
	rc = opd_tls_peer_uid(t, uid);
	if (rc == OPD_ECONFLICT)
		return "the client certificate names two instance_uids";
	if (rc != 0)
		return "the client certificate names no instance_uid";
	if (m->instance_uid.len != OPD_UID_LEN || memcmp(m->instance_uid.data, uid, OPD_UID_LEN))
		return "instance_uid is not the one the client certificate names";
	if (fresh && e->auth.cert_check != NULL && opd_tls_peer_fingerprint(t, fp) == 0 &&
	    (why = e->auth.cert_check(e->auth.cert_data, uid, fp)) != NULL) {
		e->stats.cert_refused++;
		return why;
	}
	return NULL;
}

/*
 * The verified client certificate on c is recorded for the agent it speaks
 * for: an offered certificate presented is an applied one, and the admin API
 * shows which certificate is in use.
 */
static void note_presented(struct opd_conn *c, struct opd_agent *a)
{
	struct opd_tls *t = opd_conn_tls(c);
	uint8_t fp[OPD_CERT_FP_LEN];
	char hex[65];

	if (a == NULL || t == NULL || !opd_tls_peer_verified(t) ||
	    opd_tls_peer_fingerprint(t, hex) != 0 || opd_hex_decode(hex, fp, sizeof fp) != 0)
		return;
	opd_session_cert_presented(a, fp);
}

static struct opd_agent *find_sender(struct opd_endpoint *e, const opd_a2s *m)
{
	return m->instance_uid.len == OPD_UID_LEN
		   ? opd_registry_find(e->registry, m->instance_uid.data)
		   : NULL;
}

static void log_mismatch(struct opd_endpoint *e, struct opd_conn *c, const char *why)
{
	char fp[65] = "";

	e->stats.cert_mismatches++;
	if (!auth_log_due(e))
		return;
	if (opd_conn_tls(c) != NULL)
		(void)opd_tls_peer_fingerprint(opd_conn_tls(c), fp);
	log_info("refused agent peer=%s reason=\"%s\" cert_sha256=%s", opd_conn_peer(c), why,
		 fp[0] ? fp : "none");
}

/*
 * The poll's answer: 200, or 503 with Retry-After when it says Unavailable
 * (retry_after_s not 0), as the spec asks of HTTP servers that cannot serve.
 */
static void http_answer(struct opd_conn *c, int gzip, const uint8_t *p, size_t n,
			uint64_t retry_after_s)
{
	struct opd_buf gz;
	char extra[96];
	int status = retry_after_s != 0 ? 503 : 200;
	int zipped;

	opd_buf_init(&gz);
	zipped = gzip && opd_gzip_deflate(p, n, &gz) == 0;
	snprintf(extra, sizeof extra, "%s", zipped ? "Content-Encoding: gzip\r\n" : "");
	if (retry_after_s != 0)
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra),
			 "Retry-After: %llu\r\n", (unsigned long long)retry_after_s);
	if (zipped)
		opd_conn_respond(c, status, CT_PROTOBUF, extra, opd_buf_rptr(&gz),
				 opd_buf_avail(&gz));
	else
		opd_conn_respond(c, status, CT_PROTOBUF, extra[0] ? extra : NULL, p, n);
	opd_buf_fini(&gz);
}

static void csr_wait_free(struct csr_wait *w)
{
	opd_list_remove(&w->link);
	opd_buf_fini(&w->reply);
	free(w);
}

/*
 * Two packed ServerToAgent messages one after the other are one message
 * (protobuf merges them): the poll's reply and the CSR answer go out as one.
 */
static void csr_deliver(void *data, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			const uint8_t *msg, size_t len, uint64_t retry_after_s)
{
	struct opd_endpoint *e = data;
	struct opd_agent *a;
	struct opd_list *pos;
	struct opd_buf out;

	if (e->csr_stash != NULL && token == e->registry->csr_handed) {
		opd_buf_append(e->csr_stash, msg, len);
		e->csr_stash_retry = retry_after_s;
		return;
	}
	opd_list_foreach(pos, &e->csr_waits)
	{
		struct csr_wait *w = opd_container_of(pos, struct csr_wait, link);
		if (w->token != token)
			continue;
		opd_buf_append(&w->reply, msg, len);
		http_answer(w->conn, w->gzip, opd_buf_rptr(&w->reply), opd_buf_avail(&w->reply),
			    retry_after_s);
		csr_wait_free(w);
		return;
	}
	a = opd_registry_find(e->registry, uid);
	if (a == NULL || a->conn == NULL || a->transport != OPD_TRANSPORT_WS)
		return; /* gone: the agent asks again */
	opd_buf_init(&out);
	opd_buf_append_byte(&out, 0);
	opd_buf_append(&out, msg, len);
	(void)opd_conn_ws_send(a->conn, opd_buf_rptr(&out), opd_buf_avail(&out));
	opd_buf_fini(&out);
}

void opd_endpoint_tick(struct opd_endpoint *e)
{
	struct opd_list *pos, *tmp;
	uint64_t now = opd_clock_now(e->clock);

	opd_list_foreach_safe(pos, tmp, &e->csr_waits)
	{
		struct csr_wait *w = opd_container_of(pos, struct csr_wait, link);
		if (now < w->deadline_ms)
			continue;
		opd_session_error_reply(
		    NULL,
		    OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_Unavailable,
		    "the certificate was not signed in time; send the CSR again",
		    e->retry_after_s * 1000000000ull, &w->reply);
		http_answer(w->conn, w->gzip, opd_buf_rptr(&w->reply), opd_buf_avail(&w->reply),
			    e->retry_after_s);
		csr_wait_free(w);
	}
}

static void handle_http(struct opd_endpoint *e, struct opd_conn *c,
			const struct opd_http_request *req)
{
	uint64_t refused_before = e->stats.cert_refused;
	const char *why;
	const char *encoding = opd_http_header(req, "Content-Encoding");
	const uint8_t *body = req->body;
	size_t len = req->body_len;
	struct opd_buf plain, reply, stash;
	struct opd_session_error err = {{0}};
	struct opd_agent *bound = NULL;
	opd_a2s *m = NULL;
	int rc, gzip;

	if (!is_protobuf(opd_http_header(req, "Content-Type"))) {
		respond_text(c, 415, "Content-Type must be application/x-protobuf\n");
		return;
	}
	opd_buf_init(&plain);
	opd_buf_init(&reply);
	opd_buf_init(&stash);
	if (encoding != NULL && strcasecmp(encoding, "identity") != 0) {
		if (strcasecmp(encoding, "gzip") != 0) {
			respond_text(c, 415, "Content-Encoding must be gzip or identity\n");
			goto out;
		}
		rc = opd_gzip_inflate(body, len, OPD_WIRE_MAX_MSG, &plain);
		if (rc == OPD_ETOOBIG) {
			respond_text(c, 413, "message over 4 MiB after decompression\n");
			goto out;
		}
		if (rc != 0) {
			respond_text(c, 400, "corrupt gzip body\n");
			goto out;
		}
		body = opd_buf_rptr(&plain);
		len = opd_buf_avail(&plain);
	}
	rc = opd_wire_decode_http(body, len, NULL, &m);
	if (rc == OPD_ETOOBIG) {
		respond_text(c, 413, "message over 4 MiB\n");
		goto out;
	}
	if (rc != 0) {
		/* Spec: a BadRequest ServerToAgent; 400 so that clients that only look at the
		 * status stop too. */
		e->stats.bad_requests++;
		log_info("bad request peer=%s transport=http reason=\"undecodable AgentToServer\"",
			 opd_conn_peer(c));
		opd_session_error_reply(
		    NULL,
		    OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest,
		    "AgentToServer does not decode", 0, &reply);
		opd_conn_respond_close(c, 400, CT_PROTOBUF, NULL, opd_buf_rptr(&reply),
				       opd_buf_avail(&reply));
		goto out;
	}
	if ((why = cert_binding_error(e, c, m, 1)) != NULL) {
		log_mismatch(e, c, why);
		respond_text(c, 403,
			     e->stats.cert_refused != refused_before
				 ? "the client certificate is revoked\n"
				 : "the client certificate is bound to another instance_uid\n");
		goto out;
	}
	note_presented(c, find_sender(e, m));
	e->stats.messages_http++;
	e->csr_stash = &stash;
	e->csr_stash_retry = 0;
	rc = opd_session_receive(e->registry, &bound, NULL, OPD_TRANSPORT_HTTP, m,
				 opd_clock_now(e->clock), opd_clock_wall(e->clock), &reply, &err);
	e->csr_stash = NULL;
	note_presented(c, bound);
	if (rc == OPD_EAGAIN) {
		char extra[64];
		snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
			 (unsigned long long)e->retry_after_s);
		opd_conn_respond(c, 503, CT_PROTOBUF, extra, opd_buf_rptr(&reply),
				 opd_buf_avail(&reply));
		goto out;
	}
	if (rc != 0) {
		e->stats.bad_requests++;
		log_info("bad request peer=%s transport=http reason=\"%s\"", opd_conn_peer(c),
			 err.message);
	}
	gzip = opd_http_header_has_token(req, "Accept-Encoding", "gzip");
	if (rc == 0 && e->registry->csr_handed != 0 && opd_buf_avail(&stash) == 0) {
		struct csr_wait *w = opd_xcalloc(1, sizeof *w);

		w->token = e->registry->csr_handed;
		w->conn = c;
		w->gzip = gzip;
		w->deadline_ms = opd_clock_now(e->clock) + OPD_ENDPOINT_CSR_WAIT_MS;
		opd_buf_init(&w->reply);
		opd_buf_append(&w->reply, opd_buf_rptr(&reply), opd_buf_avail(&reply));
		opd_list_insert_tail(&e->csr_waits, &w->link);
		goto out;
	}
	opd_buf_append(&reply, opd_buf_rptr(&stash), opd_buf_avail(&stash));
	http_answer(c, gzip, opd_buf_rptr(&reply), opd_buf_avail(&reply), e->csr_stash_retry);
out:
	opd_wire_free_a2s(m, NULL);
	opd_buf_fini(&plain);
	opd_buf_fini(&reply);
	opd_buf_fini(&stash);
}

static void on_request(void *data, struct opd_conn *c, const struct opd_http_request *req)
{
	struct opd_endpoint *e = data;

	if (strcmp(req->path, OPD_OPAMP_PATH) != 0) {
		respond_text(c, 404, "OpAMP is served on " OPD_OPAMP_PATH "\n");
		return;
	}
	if (!token_ok(e, c, req))
		return;
	if (req->upgrade || opd_http_header(req, "Sec-WebSocket-Key") != NULL) {
		opd_conn_upgrade_ws(c, req);
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		opd_conn_respond_close(c, 405, "text/plain", "Allow: GET, POST\r\n",
				       "use POST (plain HTTP) or a WebSocket upgrade\n", 45);
		return;
	}
	handle_http(e, c, req);
}

static void on_ws_message(void *data, struct opd_conn *c, const uint8_t *p, size_t n)
{
	struct opd_endpoint *e = data;
	struct opd_agent *bound = opd_conn_user(c);
	struct opd_session_error err = {{0}};
	struct opd_buf reply;
	opd_a2s *m = NULL;
	const char *why;
	uint64_t header;
	int rc;

	/* A bad header is a framing error: the stream cannot be trusted any more. */
	if (opd_varint_decode(p, n, &header) < 0 || header != 0) {
		e->stats.protocol_errors++;
		log_info("closing websocket peer=%s reason=\"bad OpAMP message header\"",
			 opd_conn_peer(c));
		opd_conn_ws_close(c, OPD_WS_CLOSE_PROTOCOL, "bad OpAMP message header");
		return;
	}
	opd_buf_init(&reply);
	opd_buf_append_byte(&reply, 0); /* the WebSocket message header */
	rc = opd_wire_decode_ws(p, n, NULL, &m);
	if (rc == OPD_ETOOBIG) {
		opd_conn_ws_close(c, OPD_WS_CLOSE_TOO_BIG, "message over 4 MiB");
		goto out;
	}
	if (rc != 0) {
		e->stats.bad_requests++;
		log_info(
		    "bad request peer=%s transport=websocket reason=\"undecodable AgentToServer\"",
		    opd_conn_peer(c));
		opd_session_error_reply(
		    bound ? bound->uid : NULL,
		    OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_BadRequest,
		    "AgentToServer does not decode", 0, &reply);
		opd_conn_ws_send(c, opd_buf_rptr(&reply), opd_buf_avail(&reply));
		goto out;
	}
	if ((why = cert_binding_error(e, c, m, bound == NULL)) != NULL) {
		log_mismatch(e, c, why);
		opd_conn_ws_close(c, WS_CLOSE_POLICY,
				  strstr(why, "revoked") != NULL
				      ? "client certificate revoked"
				      : "client certificate bound to another agent");
		goto out;
	}
	/* Before the session: presenting an offered certificate means it need not go again. */
	if (bound == NULL)
		note_presented(c, find_sender(e, m));
	e->stats.messages_ws++;
	rc = opd_session_receive(e->registry, &bound, c, OPD_TRANSPORT_WS, m,
				 opd_clock_now(e->clock), opd_clock_wall(e->clock), &reply, &err);
	if (opd_conn_user(c) == NULL)
		note_presented(c, bound);
	opd_conn_set_user(c, bound);
	if (rc == OPD_EINVAL) {
		e->stats.bad_requests++;
		log_info("bad request peer=%s transport=websocket reason=\"%s\"", opd_conn_peer(c),
			 err.message);
	}
	opd_conn_ws_send(c, opd_buf_rptr(&reply), opd_buf_avail(&reply));
out:
	opd_wire_free_a2s(m, NULL);
	opd_buf_fini(&reply);
}

static void on_close(void *data, struct opd_conn *c)
{
	struct opd_endpoint *e = data;
	struct opd_agent *a = opd_conn_user(c);
	struct opd_list *pos, *tmp;

	opd_list_foreach_safe(pos, tmp, &e->csr_waits)
	{
		struct csr_wait *w = opd_container_of(pos, struct csr_wait, link);
		if (w->conn == c)
			csr_wait_free(w);
	}
	if (a != NULL)
		opd_session_closed(e->registry, a, c, opd_clock_wall(e->clock));
}

struct opd_listener_handler opd_endpoint_handler(struct opd_endpoint *e)
{
	return (struct opd_listener_handler){on_request, on_ws_message, on_close, e};
}

int opd_endpoint_offer(struct opd_endpoint *e, struct opd_agent *a)
{
	struct opd_buf out;
	int sent = 0;

	if (!a->connected || a->conn == NULL || a->transport != OPD_TRANSPORT_WS)
		return 0;
	opd_buf_init(&out);
	opd_buf_append_byte(&out, 0);
	if (opd_session_take_offer(a, &out) == 1 &&
	    opd_conn_ws_send(a->conn, opd_buf_rptr(&out), opd_buf_avail(&out)) == 0) {
		e->stats.offers_sent++;
		sent = 1;
	}
	OPENSSL_cleanse((void *)opd_buf_rptr(&out), opd_buf_avail(&out)); /* a private key */
	opd_buf_fini(&out);
	return sent;
}

void opd_endpoint_drop(struct opd_endpoint *e, struct opd_agent *a, const char *why)
{
	(void)e;
	if (a->conn != NULL && a->transport == OPD_TRANSPORT_WS)
		opd_conn_ws_close(a->conn, WS_CLOSE_POLICY, why);
}

struct push_ctx {
	struct opd_endpoint *e;
	struct opd_buf out;
	uint64_t now; /* one push: one time for every agent */
};

static void push_moved(void *data, struct opd_agent *a)
{
	struct push_ctx *p = data;

	if (a->conn == NULL || a->transport != OPD_TRANSPORT_WS)
		return;
	opd_buf_reset(&p->out);
	opd_buf_append_byte(&p->out, 0);
	if (opd_session_push(p->e->registry, a, p->now, &p->out) == 1 &&
	    opd_conn_ws_send(a->conn, opd_buf_rptr(&p->out), opd_buf_avail(&p->out)) == 0)
		p->e->stats.pushes++;
}

void opd_endpoint_configs_changed(struct opd_endpoint *e)
{
	struct push_ctx p = {.e = e, .now = opd_clock_now(e->clock)};

	opd_buf_init(&p.out);
	opd_registry_configs_changed_each(e->registry, push_moved, &p);
	opd_buf_fini(&p.out);
}
