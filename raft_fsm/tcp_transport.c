#include "tcp_transport.h"

#include "mem.h"

#include <stddef.h>
#include <stdlib.h>
#include <uv.h>

/* One dial: raft's request and callback, behind the request the TCP transport is given. */
struct dial {
	struct raft_uv_connect req; /* the TCP transport's; its data points here */
	struct raft_uv_connect *raft_req;
	raft_uv_connect_cb raft_cb;
};

/* Every dial ends here exactly once, connected, failed or cancelled. */
static void on_dialled(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
	struct dial *d = req->data;
	struct raft_uv_connect *raft_req = d->raft_req;
	raft_uv_connect_cb raft_cb = d->raft_cb;

	free(d);
	/* Fails only on a socket already closed, which raft's first write reports. */
	if (status == 0 && stream != NULL && stream->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)stream, 1);
	raft_cb(raft_req, stream, status);
}

static int dial(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
		const char *address, raft_uv_connect_cb cb)
{
	struct opd_tcp_transport *w =
	    (struct opd_tcp_transport *)((char *)t - offsetof(struct opd_tcp_transport, raft));
	struct dial *d = opd_xcalloc(1, sizeof *d);
	int rv;

	d->req.data = d;
	d->raft_req = req;
	d->raft_cb = cb;
	rv = w->tcp_connect(t, &d->req, id, address, on_dialled);
	if (rv != 0)
		free(d); /* refused before it started: no callback */
	return rv;
}

int opd_tcp_transport_init(struct opd_tcp_transport *t, uv_loop_t *loop)
{
	int rv;

	t->raft.version = 1; /* else RAFT_INVALID at run time (raft.md §1.2) */
	rv = raft_uv_tcp_init(&t->raft, loop);
	if (rv != 0)
		return rv;
	t->tcp_connect = t->raft.connect;
	t->raft.connect = dial;
	return 0;
}
