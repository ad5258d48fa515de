/*
 * The cluster side of the daemon: who the members are and where their admin
 * APIs listen, forwarding writes to the leader, merging every node's agents,
 * GET /api/v1/cluster and the membership calls, and the duties of a new
 * leader (registering the signing key). Implements struct opd_admin_ops.
 */
#ifndef OPD_CLUSTER_H
#define OPD_CLUSTER_H

#include "admin.h"
#include "configs.h"
#include "httpc.h"
#include "node.h"

#include <uv.h>

#define OPD_CLUSTER_URL_MAX 256

struct opd_cluster_member {
	uint64_t id;
	char raft_address[128];
	char admin_url[OPD_CLUSTER_URL_MAX]; /* "http://host:port", no trailing slash */
};

struct opd_cluster {
	uv_loop_t *loop;
	struct opd_node *node;       /* borrowed */
	struct opd_configs *configs; /* borrowed */
	struct opd_admin *admin;     /* borrowed */
	struct opd_httpc *httpc;     /* owned */
	uint64_t self_id;
	char self_url[OPD_CLUSTER_URL_MAX]; /* this node's admin API, set once it listens */
	struct opd_cluster_member seeds[OPD_NODE_MAX_VOTERS]; /* from the flags */
	size_t n_seeds;
	uv_timer_t watch; /* notices leadership changes */
	int was_leader;
	unsigned forward_timeout_ms;
	uint64_t forwarded, forward_failures;
	struct opd_list pendings; /* requests waiting on a peer or on raft */
};

/* Set up on loop (node, configs and admin borrowed); installs itself as admin->ops. */
int opd_cluster_init(struct opd_cluster *c, uv_loop_t *loop, struct opd_node *node,
		     struct opd_configs *configs, struct opd_admin *admin, uint64_t self_id,
		     const struct opd_cluster_member *seeds, size_t n_seeds)
    __attribute__((warn_unused_result));

/* Stop the timer and the HTTP client; cb runs when everything is released. */
void opd_cluster_close(struct opd_cluster *c, void (*cb)(void *data), void *data);

/* conn closed: answers still on their way to it are dropped. */
void opd_cluster_conn_closed(struct opd_cluster *c, void *conn);

/* The admin URL of member id (seeds, then the replicated member table), or NULL. */
const char *opd_cluster_admin_url(struct opd_cluster *c, uint64_t id, char *buf, size_t cap);

#endif
