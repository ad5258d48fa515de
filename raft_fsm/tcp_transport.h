/*
 * raft's TCP transport with Nagle's algorithm off.
 *
 * raft 0.22's transport leaves TCP_NODELAY unset, and it sends only on the
 * connections it dials (one each way between two nodes), so no ACK ever rides
 * on data: with one write at a time, a node's second message in a row waits
 * for the peer's delayed ACK of the first, up to 40 ms. This wraps raft_uv_tcp
 * and sets TCP_NODELAY on every connection raft dials; the ones it accepts
 * only carry the peer's messages in.
 */
#ifndef OPD_TCP_TRANSPORT_H
#define OPD_TCP_TRANSPORT_H

#include <raft/uv.h>

struct opd_tcp_transport {
	struct raft_uv_transport raft; /* what raft_uv_init is given; raft owns its data field */
	int (*tcp_connect)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
			   const char *address, raft_uv_connect_cb cb);
};

/* raft_uv_tcp_init, then the wrapping. Returns raft's code, with t->raft.errmsg. */
int opd_tcp_transport_init(struct opd_tcp_transport *t, uv_loop_t *loop);

#endif
