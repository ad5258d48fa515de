#define LOG_COMPONENT "conn"

#include "conn.h"

#include "err.h"
#include "listener.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "ws.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING };

/* Plaintext is decrypted into the input buffer this much at a time (one TLS record). */
#define TLS_PLAIN_CHUNK (16 * 1024)

struct opd_conn {
	uv_tcp_t tcp;
	struct opd_listener *l;
	enum conn_state state;
	struct opd_http_parser *hp; /* until a WebSocket upgrade (then NULL: ~3.7 KiB saved) */
	struct opd_buf in;          /* received bytes not yet consumed by a codec */
	struct opd_ws *ws;
	struct opd_tls *tls;   /* NULL on a plain TCP connection */
	int awaiting_response; /* a request is being handled; parse nothing more */
	int close_after_write;
	int read_stopped;
	uint64_t last_read_ms;     /* last byte received */
	uint64_t request_start_ms; /* first byte of the current request, 0 = none */
	uint64_t last_ping_ms;
	uint64_t closing_since_ms;
	size_t out_bytes; /* queued in uv_write requests */
	void *user;
	char peer[64];
	struct opd_list link;
};

struct write_req {
	uv_write_t req;
	struct opd_conn *c;
	size_t len;
	uint8_t data[];
};

static void conn_process(struct opd_conn *c);

size_t opd_agentapi__conn_link_offset(void)
{
	return offsetof(struct opd_conn, link);
}

const char *opd_conn_peer(const struct opd_conn *c)
{
	return c->peer;
}

void opd_conn_set_user(struct opd_conn *c, void *user)
{
	c->user = user;
}

void *opd_conn_user(const struct opd_conn *c)
{
	return c->user;
}

int opd_conn_is_ws(const struct opd_conn *c)
{
	return c->state == CONN_WS;
}

struct opd_tls *opd_conn_tls(const struct opd_conn *c)
{
	return c->tls;
}

static uint64_t now_ms(const struct opd_conn *c)
{
	return uv_now(c->l->loop);
}

static void on_closed(uv_handle_t *h)
{
	struct opd_conn *c = h->data;

	if (c->hp != NULL) {
		opd_http_parser_fini(c->hp);
		free(c->hp);
	}
	opd_buf_fini(&c->in);
	if (c->ws)
		opd_ws_free(c->ws);
	opd_tls_free(c->tls);
	free(c);
}

void opd_agentapi__conn_close(struct opd_conn *c)
{
	struct opd_listener *l = c->l;

	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	c->state = CONN_CLOSING;
	if (l->handler.on_close)
		l->handler.on_close(l->handler.data, c);
	opd_list_remove(&c->link);
	l->n_conns--;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct opd_conn *c = w->c;

	c->out_bytes -= w->len;
	free(w);
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (status < 0) {
		log_debug("write failed peer=%s err=%s", c->peer, uv_strerror(status));
		opd_agentapi__conn_close(c);
		return;
	}
	if (c->out_bytes == 0 && c->close_after_write)
		opd_agentapi__conn_close(c);
}

/*
 * Bytes for the socket. What the kernel takes at once is never copied; the
 * rest is queued, and a peer that does not read is cut off once max_out_bytes
 * wait in the queue (the bound on what one client can make us hold).
 */
static void raw_write(struct opd_conn *c, const uint8_t *p, size_t n)
{
	struct write_req *w;
	uv_buf_t b;
	int rc;

	if (n == 0 || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (c->out_bytes == 0) {
		/* Nothing queued, so nothing to overtake: try the socket directly. */
		b = uv_buf_init((char *)p, (unsigned)n);
		rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (rc > 0) {
			p += rc;
			n -= (size_t)rc;
		} else if (rc != UV_EAGAIN) {
			log_debug("write failed peer=%s err=%s", c->peer, uv_strerror(rc));
			opd_agentapi__conn_close(c);
			return;
		}
		if (n == 0)
			return;
	}
	if (c->out_bytes + n > c->l->limits.max_out_bytes) {
		log_warn("closing connection peer=%s reason=\"peer does not read\" queued=%zu",
			 c->peer, c->out_bytes);
		opd_agentapi__conn_close(c);
		return;
	}
	w = opd_xmalloc(sizeof *w + n);
	w->c = c;
	w->len = n;
	memcpy(w->data, p, n);
	b = uv_buf_init((char *)w->data, (unsigned)n);
	c->out_bytes += n;
	rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (rc != 0) {
		c->out_bytes -= n;
		free(w);
		opd_agentapi__conn_close(c);
	}
}

/* Write the records, handshake messages and alerts the TLS layer has for the peer. */
static void tls_flush(struct opd_conn *c)
{
	struct opd_buf out;

	opd_buf_init(&out);
	if (opd_tls_pull_cipher(c->tls, &out) > 0)
		raw_write(c, opd_buf_rptr(&out), opd_buf_avail(&out));
	opd_buf_fini(&out);
}

/* Bytes from the codecs: straight to the socket, or through TLS first. */
static void conn_write(struct opd_conn *c, const uint8_t *p, size_t n)
{
	if (c->tls == NULL) {
		raw_write(c, p, n);
		return;
	}
	if (n == 0 || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (opd_tls_push_plain(c->tls, p, n) != 0) {
		/* Only possible before the handshake or after a failure: nothing to say. */
		log_debug("closing connection peer=%s reason=\"TLS write: %s\"", c->peer,
			  opd_tls_errmsg(c->tls));
		opd_agentapi__conn_close(c);
		return;
	}
	tls_flush(c);
}

/* The connection is about to close on our side: tell a TLS peer it was not truncated. */
static void tls_goodbye(struct opd_conn *c)
{
	if (c->tls == NULL || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	opd_tls_shutdown(c->tls);
	tls_flush(c);
}

/* Write whatever the WebSocket codec produced; close once its close handshake is over. */
static void ws_flush(struct opd_conn *c)
{
	struct opd_buf out;

	opd_buf_init(&out);
	opd_ws_take(c->ws, &out);
	conn_write(c, opd_buf_rptr(&out), opd_buf_avail(&out));
	opd_buf_fini(&out);
	if (opd_ws_done(c->ws)) {
		tls_goodbye(c);
		if (c->out_bytes == 0)
			opd_agentapi__conn_close(c);
		else
			c->close_after_write = 1;
	}
}

static void respond(struct opd_conn *c, int status, const char *content_type, const char *extra,
		    const void *body, size_t len, int close)
{
	const struct opd_http_request *req;
	int keep_alive;
	struct opd_buf out;

	if (c->hp == NULL)
		return; /* a WebSocket now: there is no HTTP request to answer */
	req = opd_http_parser_request(c->hp);
	keep_alive = !close && req != NULL && req->keep_alive;

	opd_buf_init(&out);
	opd_http_write_response(&out, status, content_type, extra, body, len, keep_alive);
	conn_write(c, opd_buf_rptr(&out), opd_buf_avail(&out));
	opd_buf_fini(&out);
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	c->awaiting_response = 0;
	c->request_start_ms = 0;
	opd_http_parser_next(c->hp);
	if (!keep_alive) {
		/* Read nothing more; close once the response is on the wire. */
		c->close_after_write = 1;
		c->state = CONN_CLOSING;
		c->closing_since_ms = now_ms(c);
		tls_goodbye(c);
		if (c->out_bytes == 0)
			opd_agentapi__conn_close(c);
		return;
	}
	if (c->read_stopped) {
		c->read_stopped = 0;
		opd_agentapi__conn_resume(c);
	}
	conn_process(c);
}

void opd_conn_respond(struct opd_conn *c, int status, const char *content_type, const char *extra,
		      const void *body, size_t len)
{
	respond(c, status, content_type, extra, body, len, 0);
}

void opd_conn_respond_close(struct opd_conn *c, int status, const char *content_type,
			    const char *extra, const void *body, size_t len)
{
	respond(c, status, content_type, extra, body, len, 1);
}

static void respond_error(struct opd_conn *c, int status, const char *why)
{
	char body[160];
	int n = snprintf(body, sizeof body, "%d %s: %s\n", status, opd_http_reason(status), why);

	respond(c, status, "text/plain", NULL, body, (size_t)n, 1);
}

/*
 * The handshake pacing (admission.h): 1 when this upgrade may go ahead, else
 * it was answered 503 with the Retry-After the bucket gave, and is closing.
 */
static int admitted(struct opd_conn *c)
{
	static const char body[] = "too many new sessions right now: retry after Retry-After\n";
	struct opd_listener *l = c->l;
	unsigned retry = opd_admission_take(&l->admission, now_ms(c));
	char extra[48];

	if (retry == 0)
		return 1;
	if (opd_agentapi__refusal_log_due(l))
		log_warn("pacing handshakes listener=%s rate=%llu/s retry_after=%u refused=%llu",
			 l->name, (unsigned long long)l->admission.rate, retry,
			 (unsigned long long)l->admission.refused);
	snprintf(extra, sizeof extra, "Retry-After: %u\r\n", retry);
	respond(c, 503, "text/plain", extra, body, sizeof body - 1, 1);
	return 0;
}

int opd_conn_upgrade_ws(struct opd_conn *c, const struct opd_http_request *req)
{
	const char *key = opd_http_header(req, "Sec-WebSocket-Key");
	const char *version = opd_http_header(req, "Sec-WebSocket-Version");
	char accept[OPD_WS_ACCEPT_LEN + 1];
	char extra[192];
	struct opd_buf rest;

	if (strcmp(req->method, "GET") != 0 ||
	    !opd_http_header_has_token(req, "Upgrade", "websocket") ||
	    !opd_http_header_has_token(req, "Connection", "upgrade")) {
		respond_error(c, 400, "not a WebSocket handshake");
		return OPD_EPROTO;
	}
	if (version == NULL || strcmp(version, "13") != 0) {
		respond(c, 426, "text/plain", "Sec-WebSocket-Version: 13\r\n", "version 13 only\n",
			16, 1);
		return OPD_EPROTO;
	}
	if (key == NULL || opd_ws_accept_key(key, accept) != 0) {
		respond_error(c, 400, "bad Sec-WebSocket-Key");
		return OPD_EPROTO;
	}
	if (!admitted(c))
		return OPD_EAGAIN;
	snprintf(extra, sizeof extra,
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: %s\r\n\r\n",
		 accept);
	conn_write(c, (const uint8_t *)extra, strlen(extra));
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return OPD_EIO;
	c->ws = opd_ws_new(c->l->limits.http.max_body);
	c->state = CONN_WS;
	c->awaiting_response = 0;
	c->request_start_ms = 0;
	c->last_ping_ms = now_ms(c);
	/* The HTTP parser is done for good; its buffers go now, not at close. */
	opd_http_parser_next(c->hp);
	opd_http_parser_fini(c->hp);
	free(c->hp);
	c->hp = NULL;
	/* Bytes after the handshake are already WebSocket frames. */
	rest = c->in;
	opd_buf_init(&c->in);
	if (opd_buf_avail(&rest) > 0) {
		opd_buf_append(&c->in, opd_buf_rptr(&rest), opd_buf_avail(&rest));
	}
	opd_buf_fini(&rest);
	return 0;
}

int opd_conn_ws_send(struct opd_conn *c, const uint8_t *p, size_t n)
{
	if (c->state != CONN_WS || uv_is_closing((uv_handle_t *)&c->tcp))
		return OPD_EIO;
	if (opd_ws_queue(c->ws, p, n) != 0)
		return OPD_EIO;
	ws_flush(c);
	return 0;
}

void opd_conn_ws_close(struct opd_conn *c, uint16_t code, const char *reason)
{
	if (c->state != CONN_WS || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	opd_ws_queue_close(c->ws, code, reason);
	ws_flush(c);
	/* Do not wait for the peer's Close forever: the sweep closes us after the write. */
	c->close_after_write = 1;
	c->state = CONN_CLOSING;
	c->closing_since_ms = now_ms(c);
	tls_goodbye(c);
	if (c->out_bytes == 0)
		opd_agentapi__conn_close(c);
}

static void process_ws(struct opd_conn *c)
{
	struct opd_buf msg;
	int rc;

	rc = opd_ws_push(c->ws, opd_buf_rptr(&c->in), opd_buf_avail(&c->in));
	opd_buf_reset(&c->in);
	opd_buf_shrink(&c->in);
	opd_buf_init(&msg);
	while (c->state == CONN_WS && opd_ws_next(c->ws, &msg) == 1) {
		c->l->handler.on_ws_message(c->l->handler.data, c, opd_buf_rptr(&msg),
					    opd_buf_avail(&msg));
		opd_buf_fini(&msg);
	}
	if (rc != 0)
		log_info("websocket closed peer=%s reason=\"%s\"", c->peer, opd_strerror(rc));
	if (c->state == CONN_WS)
		ws_flush(c);
}

static void process_http(struct opd_conn *c)
{
	while (c->state == CONN_HTTP && !c->awaiting_response && opd_buf_avail(&c->in) > 0) {
		ssize_t used = opd_http_parse(c->hp, opd_buf_rptr(&c->in), opd_buf_avail(&c->in));
		const struct opd_http_request *req;

		if (used < 0) {
			log_info("bad request peer=%s status=%d reason=\"%s\"", c->peer,
				 c->hp->status, opd_strerror((int)used));
			respond_error(c, c->hp->status ? c->hp->status : 400,
				      used == OPD_ETOOBIG ? "request too large"
							  : "malformed request");
			return;
		}
		opd_buf_consume(&c->in, (size_t)used);
		if (c->request_start_ms == 0 && used > 0)
			c->request_start_ms = now_ms(c);
		req = opd_http_parser_request(c->hp);
		if (req == NULL)
			break;
		c->awaiting_response = 1;
		c->l->handler.on_request(c->l->handler.data, c, req);
		/* The handler may have responded (and we may have moved on) or upgraded. */
	}
	if (c->state == CONN_HTTP && c->awaiting_response && !c->read_stopped &&
	    opd_buf_avail(&c->in) > c->l->limits.http.max_header_bytes) {
		/* A pipelining client far ahead of us: stop reading until we catch up. */
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->read_stopped = 1;
	}
	opd_buf_shrink(&c->in);
}

static void conn_process(struct opd_conn *c)
{
	if (c->state == CONN_HTTP)
		process_http(c);
	if (c->state == CONN_WS && opd_buf_avail(&c->in) > 0)
		process_ws(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct opd_conn *c = h->data;

	(void)suggested;
	/*
	 * Every connection of the listener reads into one buffer (libuv calls
	 * on_read right after each on_alloc), and on_read keeps only the bytes that
	 * came: an idle connection owns no input memory, and ten thousand readable
	 * in one loop turn do not each hold 64 KiB (bench/PROFILE.md).
	 */
	(void)c;
	buf->base = (char *)c->l->rbuf;
	buf->len = OPD_LISTENER_READ_SIZE;
}

/*
 * Decrypt what arrived into c->in and send what the TLS layer answered
 * (handshake messages, tickets, alerts). Returns 1 to go on, 0 when the peer
 * closed its TLS session (process what came before, then close), -1 when the
 * connection failed and is closing.
 */
static int tls_input(struct opd_conn *c, const uint8_t *p, size_t n)
{
	ssize_t r;

	if (opd_tls_push_cipher(c->tls, p, n) != 0) {
		opd_agentapi__conn_close(c);
		return -1;
	}
	do {
		r = opd_tls_pull_plain(c->tls, opd_buf_reserve(&c->in, TLS_PLAIN_CHUNK),
				       TLS_PLAIN_CHUNK);
		if (r > 0)
			opd_buf_commit(&c->in, (size_t)r);
	} while (r > 0);
	if (opd_buf_avail(&c->in) == 0)
		opd_buf_shrink(&c->in);
	tls_flush(c);
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return -1;
	if (r == OPD_EAGAIN)
		return 1;
	if (r == 0)
		return 0;
	/* The alert is queued: close once it is written, as after a final response. */
	c->l->tls_failures++;
	if (c->l->tls_logged_ms == 0 || now_ms(c) - c->l->tls_logged_ms >= 1000) {
		c->l->tls_logged_ms = now_ms(c);
		log_info("closing connection peer=%s reason=\"TLS %s: %s\" tls_failures=%llu",
			 c->peer, opd_tls_handshake_done(c->tls) ? "record" : "handshake",
			 opd_tls_errmsg(c->tls), (unsigned long long)c->l->tls_failures);
	} else {
		log_debug("closing connection peer=%s reason=\"TLS %s: %s\"", c->peer,
			  opd_tls_handshake_done(c->tls) ? "record" : "handshake",
			  opd_tls_errmsg(c->tls));
	}
	opd_buf_reset(&c->in);
	opd_buf_shrink(&c->in);
	c->state = CONN_CLOSING;
	c->closing_since_ms = now_ms(c);
	c->close_after_write = 1;
	if (c->out_bytes == 0)
		opd_agentapi__conn_close(c);
	return -1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct opd_conn *c = s->data;

	(void)buf;
	if (n < 0) {
		if (n != UV_EOF)
			log_debug("read failed peer=%s err=%s", c->peer, uv_strerror((int)n));
		opd_agentapi__conn_close(c);
		return;
	}
	if (n == 0)
		return;
	c->last_read_ms = now_ms(c);
	if (c->tls != NULL) {
		int st;

		if (c->state == CONN_CLOSING)
			return;
		st = tls_input(c, (const uint8_t *)buf->base, (size_t)n);
		if (st < 0)
			return;
		conn_process(c);
		if (st == 0)
			opd_agentapi__conn_close(c);
		return;
	}
	if (c->state == CONN_CLOSING)
		return;
	opd_buf_append(&c->in, buf->base, (size_t)n);
	conn_process(c);
}

void opd_agentapi__conn_resume(struct opd_conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		opd_agentapi__conn_close(c);
}

static void peer_name(struct opd_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, ip, sizeof ip);
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, ip, sizeof ip);
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

static const char FD_LIMIT[] = "open-files limit";

/* Why a new connection must be refused, or NULL. */
static const char *over_limit(const struct opd_listener *l, const struct opd_conn *c)
{
	uv_os_fd_t fd;

	if (l->n_conns > l->limits.max_conns)
		return "max connections";
	/*
	 * The kernel hands out the lowest free descriptor, so this one's number
	 * says at least that many are open: past the reserve, refuse it.
	 */
	if (l->fd_limit != 0 && uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 &&
	    (size_t)fd + l->limits.fd_reserve >= l->fd_limit)
		return FD_LIMIT;
	return NULL;
}

/*
 * Refuse cleanly and keep serving the others: 503 with Retry-After (before
 * any upgrade, so WebSocket agents back off as HTTP ones do), then close.
 */
static void refuse(struct opd_conn *c, const char *why)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n"
				   "Content-Length: 0\r\nConnection: close\r\n\r\n";
	struct opd_listener *l = c->l;

	l->refused++;
	if (opd_agentapi__refusal_log_due(l))
		log_warn("refusing connections listener=%s reason=\"%s\" open=%zu refused=%llu",
			 l->name, why, l->n_conns - 1, (unsigned long long)l->refused);
	if (l->tls != NULL) {
		/* No TLS session to answer in, and a handshake is what we cannot afford. */
		opd_agentapi__conn_close(c);
		return;
	}
	c->state = CONN_CLOSING;
	c->closing_since_ms = uv_now(l->loop);
	c->close_after_write = 1;
	conn_write(c, (const uint8_t *)busy, sizeof busy - 1);
	if (!uv_is_closing((uv_handle_t *)&c->tcp) && c->out_bytes == 0)
		opd_agentapi__conn_close(c);
}

void opd_agentapi__conn_accept(struct opd_listener *l)
{
	struct opd_conn *c = opd_xcalloc(1, sizeof *c);
	const char *why;

	c->l = l;
	uv_tcp_init(l->loop, &c->tcp);
	c->tcp.data = c;
	opd_list_init(&c->link);
	c->hp = opd_xmalloc(sizeof *c->hp);
	opd_http_parser_init(c->hp, &l->limits.http);
	opd_buf_init(&c->in);
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	opd_list_insert_tail(&l->conns, &c->link);
	l->n_conns++;
	peer_name(c);
	if ((why = over_limit(l, c)) != NULL) {
		l->refused_fds += why == FD_LIMIT;
		refuse(c, why);
		return;
	}
	if (l->tls != NULL && opd_tls_new(l->tls, &c->tls) != 0) {
		log_warn("closing connection peer=%s reason=\"no memory for TLS\"", c->peer);
		opd_agentapi__conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->last_read_ms = now_ms(c);
	c->request_start_ms = c->last_read_ms; /* a silent new client is on the header clock */
	opd_agentapi__conn_resume(c);
}

void opd_agentapi__conn_tick(struct opd_conn *c, uint64_t now)
{
	const struct opd_listener_limits *lim = &c->l->limits;

	switch (c->state) {
	case CONN_HTTP:
		if (c->awaiting_response)
			return;
		if (c->request_start_ms && now - c->request_start_ms >= lim->header_timeout_ms) {
			if (opd_http_parser_in_request(c->hp)) {
				log_info("closing connection peer=%s reason=\"request timeout\"",
					 c->peer);
				respond_error(c, 408, "request headers not received in time");
			} else {
				log_debug("closing silent connection peer=%s", c->peer);
				opd_agentapi__conn_close(c);
			}
		} else if (now - c->last_read_ms >= lim->idle_timeout_ms) {
			opd_agentapi__conn_close(c);
		}
		return;
	case CONN_WS:
		if (now - c->last_read_ms >= lim->ws_timeout_ms) {
			log_info("closing websocket peer=%s reason=\"silent for %llu ms\"", c->peer,
				 (unsigned long long)(now - c->last_read_ms));
			opd_conn_ws_close(c, OPD_WS_CLOSE_GOING_AWAY, "idle timeout");
		} else if (now - c->last_read_ms >= lim->ws_ping_ms &&
			   now - c->last_ping_ms >= lim->ws_ping_ms) {
			c->last_ping_ms = now;
			opd_ws_queue_ping(c->ws);
			ws_flush(c);
		}
		return;
	case CONN_CLOSING:
		/* A Close frame or final response that the peer never lets us finish. */
		if (now - c->closing_since_ms >= lim->header_timeout_ms)
			opd_agentapi__conn_close(c);
		return;
	}
}
