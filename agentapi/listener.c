#define LOG_COMPONENT "listener"

#include "listener.h"

#include "err.h"
#include "log.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

void opd_listener_limits_default(struct opd_listener_limits *lim)
{
	*lim = (struct opd_listener_limits){
	    .max_conns = 100000,
	    .header_timeout_ms = 10000,
	    .idle_timeout_ms = 120000,
	    .ws_ping_ms = 30000,
	    .ws_timeout_ms = 120000,
	    .max_out_bytes = 16u << 20,
	    .fd_reserve = 256,
	};
	opd_http_limits_default(&lim->http);
}

/* The open-files limit (it may change under us: prlimit), or 0 when there is none. */
static size_t fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	return (size_t)rl.rlim_cur;
}

static void on_connection(uv_stream_t *s, int status)
{
	struct opd_listener *l = s->data;

	if (status < 0) {
		/*
		 * EMFILE and friends, which fd_reserve should make rare: libuv has
		 * already accepted and closed what was pending (its spare descriptor),
		 * so nothing spins; keep listening and log at most once a second.
		 */
		if (opd_agentapi__refusal_log_due(l))
			log_warn("accept failed listener=%s err=%s", l->name, uv_strerror(status));
		return;
	}
	opd_agentapi__conn_accept(l);
}

int opd_agentapi__refusal_log_due(struct opd_listener *l)
{
	uint64_t now = uv_now(l->loop);

	if (l->refused_logged_ms != 0 && now - l->refused_logged_ms < 1000)
		return 0;
	l->refused_logged_ms = now;
	return 1;
}

static void on_sweep(uv_timer_t *t)
{
	struct opd_listener *l = t->data;
	struct opd_list *pos, *tmp;
	uint64_t now = uv_now(l->loop);

	l->fd_limit = fd_limit();
	opd_list_foreach_safe(pos, tmp, &l->conns)
	{
		struct opd_conn *c =
		    (struct opd_conn *)((char *)pos - opd_agentapi__conn_link_offset());
		opd_agentapi__conn_tick(c, now);
	}
}

int opd_listener_start(struct opd_listener *l, uv_loop_t *loop, const char *name, const char *host,
		       int port, const struct opd_listener_limits *limits,
		       const struct opd_listener_handler *handler)
{
	struct sockaddr_storage addr;
	int rc;

	*l = (struct opd_listener){0};
	l->loop = loop;
	l->name = name;
	l->limits = *limits;
	l->handler = *handler;
	opd_list_init(&l->conns);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
		snprintf(l->errmsg, sizeof l->errmsg, "%s: bad listen address %s", name, host);
		return OPD_EINVAL;
	}
	uv_tcp_init(loop, &l->tcp);
	l->tcp.data = l;
	rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
	if (rc != 0) {
		snprintf(l->errmsg, sizeof l->errmsg, "%s: listen on %s:%d: %s", name, host, port,
			 uv_strerror(rc));
		uv_close((uv_handle_t *)&l->tcp, NULL);
		return OPD_EIO;
	}
	l->rbuf = opd_xmalloc(OPD_LISTENER_READ_SIZE);
	opd_admission_init(&l->admission, l->limits.handshake_rate, l->limits.handshake_burst,
			   uv_now(loop));
	l->fd_limit = fd_limit();
	if (l->fd_limit != 0 && l->limits.max_conns + l->limits.fd_reserve > l->fd_limit)
		log_info("listener=%s max_connections=%zu open_files_limit=%zu: connections are "
			 "refused once %zu descriptors remain",
			 name, l->limits.max_conns, l->fd_limit, l->limits.fd_reserve);
	uv_timer_init(loop, &l->sweep);
	l->sweep.data = l;
	uv_timer_start(&l->sweep, on_sweep, 1000, 1000);
	return 0;
}

int opd_listener_port(const struct opd_listener *l)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void opd_listener_set_tls(struct opd_listener *l, struct opd_tls_ctx *ctx)
{
	if (ctx != NULL)
		opd_tls_ctx_ref(ctx);
	opd_tls_ctx_unref(l->tls);
	l->tls = ctx;
}

static void maybe_done(struct opd_listener *l)
{
	if (l->closing != 3)
		return;
	/* Every connection is gone, and with it every use of the read buffer. */
	opd_tls_ctx_unref(l->tls);
	l->tls = NULL;
	free(l->rbuf);
	l->rbuf = NULL;
	if (l->close_cb)
		l->close_cb(l);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct opd_listener *l = h->data;

	l->closing++;
	maybe_done(l);
}

void opd_listener_close(struct opd_listener *l, void (*cb)(struct opd_listener *l))
{
	struct opd_list *pos, *tmp;

	l->close_cb = cb;
	l->closing = 1;
	opd_list_foreach_safe(pos, tmp, &l->conns)
	{
		struct opd_conn *c =
		    (struct opd_conn *)((char *)pos - opd_agentapi__conn_link_offset());
		opd_agentapi__conn_close(c);
	}
	uv_timer_stop(&l->sweep);
	uv_close((uv_handle_t *)&l->sweep, on_handle_closed);
	uv_close((uv_handle_t *)&l->tcp, on_handle_closed);
}
