/*
 * A TCP listener serving HTTP/1.1 and WebSocket connections to a handler.
 * Owns its connections, enforces the connection limit and the per-connection
 * timeouts (slow or silent clients) and the bound on queued output (clients
 * that never read). Lifecycle: init/start, then close(cb); freed by the owner
 * only after cb runs. A listener may carry a TLS context: its connections
 * then run every byte through tls.c, and replacing the context (a
 * certificate reload) affects new connections only.
 */
#ifndef OPD_LISTENER_H
#define OPD_LISTENER_H

#include "admission.h"
#include "conn.h"
#include "http.h"
#include "list.h"
#include "tls.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The most a connection reads from its socket at once. */
#define OPD_LISTENER_READ_SIZE (64 * 1024)

struct opd_listener_handler {
	/* A complete request arrived: answer with opd_conn_respond or opd_conn_upgrade_ws. */
	void (*on_request)(void *data, struct opd_conn *c, const struct opd_http_request *req);
	/* A complete binary WebSocket message (borrowed for the call). */
	void (*on_ws_message)(void *data, struct opd_conn *c, const uint8_t *p, size_t n);
	/* The connection is going away (any kind); opd_conn_user is still readable. May be NULL. */
	void (*on_close)(void *data, struct opd_conn *c);
	void *data;
};

struct opd_listener_limits {
	size_t max_conns; /* beyond it new connections are answered 503 and closed at once */
	/*
	 * Descriptors kept free under the process's open-files limit: a connection
	 * that would leave fewer is answered 503 and closed (default 256), so that
	 * another listener, raft and sqlite still get descriptors when agents take
	 * all they can. Give a listener that must outlast the other a smaller one.
	 */
	size_t fd_reserve;
	uint64_t header_timeout_ms; /* a request's headers must arrive within this (default 10 s) */
	uint64_t idle_timeout_ms;   /* keep-alive idle HTTP connection (default 120 s) */
	uint64_t ws_ping_ms;        /* ping an idle WebSocket this often (default 30 s) */
	uint64_t ws_timeout_ms;     /* close a WebSocket silent for this long (default 120 s) */
	size_t max_out_bytes; /* queued output above this closes the connection (default 16 MiB) */
	/*
	 * WebSocket handshakes a second (admission.h): beyond it an upgrade is
	 * answered 503 with Retry-After. 0 = no pacing (the default); burst 0 =
	 * one second's worth.
	 */
	uint64_t handshake_rate;
	uint64_t handshake_burst;
	struct opd_http_limits http;
};

struct opd_listener {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	struct opd_listener_limits limits;
	struct opd_listener_handler handler;
	const char *name; /* "opamp" or "admin", for logs */
	struct opd_list conns;
	size_t n_conns;
	uint64_t refused;           /* connections answered 503: max_conns or fd_reserve */
	uint64_t refused_fds;       /* of which for fd_reserve */
	uint64_t refused_logged_ms; /* refusals are logged at most once a second */
	size_t fd_limit;            /* RLIMIT_NOFILE, read at start and once a second; 0 = none */
	struct opd_tls_ctx *tls;    /* one reference; NULL = plain TCP */
	uint8_t *rbuf;          /* the read buffer every connection shares (see conn.c on_alloc) */
	uint64_t tls_failures;  /* TLS handshakes or records that failed */
	uint64_t tls_logged_ms; /* failures are logged at most once a second (scanners) */
	uv_timer_t sweep;       /* timeouts, checked once a second */
	struct opd_admission admission; /* paces WebSocket handshakes (limits.handshake_rate) */
	int closing;
	void (*close_cb)(struct opd_listener *l);
	char errmsg[256];
};

void opd_listener_limits_default(struct opd_listener_limits *lim);

/*
 * Bind and listen on host:port (port 0 picks a free one). Returns 0, or
 * OPD_EIO with l->errmsg set (and nothing left to close).
 */
int opd_listener_start(struct opd_listener *l, uv_loop_t *loop, const char *name, const char *host,
		       int port, const struct opd_listener_limits *limits,
		       const struct opd_listener_handler *handler)
    __attribute__((warn_unused_result));

/*
 * Serve TLS on ctx (borrowed: the listener takes its own reference) from the
 * next accepted connection on; NULL goes back to plain TCP. Connections
 * already open keep the context they started with. Call after
 * opd_listener_start.
 */
void opd_listener_set_tls(struct opd_listener *l, struct opd_tls_ctx *ctx);

/* The bound port. */
int opd_listener_port(const struct opd_listener *l);

/* Close every connection and the socket; cb runs once everything is released. */
void opd_listener_close(struct opd_listener *l, void (*cb)(struct opd_listener *l));

#endif
