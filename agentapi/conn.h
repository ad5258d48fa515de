/*
 * One client connection: the only place, with listener.c, that owns a
 * uv_tcp_t. Bytes read from the socket go through TLS when the listener has
 * a context, then through the HTTP codec (and, after an Upgrade, the
 * WebSocket codec); complete requests and messages go to the listener's
 * handler; bytes produced by the codecs go back the same way. Serves both
 * the OpAMP port and the admin port.
 *
 * Requests on one connection are answered in order: while a request waits
 * for its response (opd_conn_respond may be called later, from another
 * callback), no further request is parsed.
 */
#ifndef OPD_CONN_H
#define OPD_CONN_H

#include "buf.h"
#include "http.h"

#include <stddef.h>
#include <stdint.h>

struct opd_conn;
struct opd_listener;
struct opd_tls;

/* The peer address as "ip:port", for log lines. */
const char *opd_conn_peer(const struct opd_conn *c);

/*
 * Answer the current request. extra holds "Name: value\r\n" lines or is
 * NULL. After an error status (>= 400 other than 401/404/405/409/415) or when
 * the request asked for it, the connection is closed once written.
 */
void opd_conn_respond(struct opd_conn *c, int status, const char *content_type, const char *extra,
		      const void *body, size_t len);

/* Answer and close the connection after the response is written. */
void opd_conn_respond_close(struct opd_conn *c, int status, const char *content_type,
			    const char *extra, const void *body, size_t len);

/*
 * Turn the connection into a WebSocket: validates the handshake headers of
 * the current request, answers 101 (or 400/426 and closes, or 503 with
 * Retry-After and closes when the listener's handshake rate is spent), and
 * from then on every complete binary message goes to the handler's
 * on_ws_message. Returns 0 when upgraded.
 */
int opd_conn_upgrade_ws(struct opd_conn *c, const struct opd_http_request *req);

/* Send one binary WebSocket message (copied). Returns 0, or OPD_EIO when the connection is closing.
 */
int opd_conn_ws_send(struct opd_conn *c, const uint8_t *p, size_t n);

/* Close a WebSocket with a Close frame (code, reason), then the socket. */
void opd_conn_ws_close(struct opd_conn *c, uint16_t code, const char *reason);

/* The handler's per-connection pointer (e.g. the agent bound to a WebSocket). */
void opd_conn_set_user(struct opd_conn *c, void *user);
void *opd_conn_user(const struct opd_conn *c);

/* 1 when the connection is a WebSocket. */
int opd_conn_is_ws(const struct opd_conn *c);

/*
 * The connection's TLS state (borrowed: valid while the connection is), for
 * the peer's certificate; NULL on a plain TCP connection.
 */
struct opd_tls *opd_conn_tls(const struct opd_conn *c);

/* Folder-internal: used by listener.c only. */
struct opd_listener;
void opd_agentapi__conn_accept(struct opd_listener *l);
void opd_agentapi__conn_tick(struct opd_conn *c, uint64_t now_ms);
void opd_agentapi__conn_close(struct opd_conn *c);
void opd_agentapi__conn_resume(struct opd_conn *c);
/* 1 when a refusal may be logged now (at most once a second per listener). */
int opd_agentapi__refusal_log_due(struct opd_listener *l);
/* offsetof(struct opd_conn, link), for walking the listener's list. */
size_t opd_agentapi__conn_link_offset(void);
#endif
