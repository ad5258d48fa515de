/*
 * Run a real opampd Raft cluster (1 to 5 processes on loopback) for end-to-end
 * tests. Raft and admin addresses must be known to every node before any
 * starts (each node gets the full --voter list), so the ports are picked by
 * binding 127.0.0.1:0 and closing; the OpAMP port stays 0. All nodes share one
 * signing key from `opampd keygen`. Nodes can be SIGKILLed, SIGSTOPped,
 * resumed and restarted on their data directory; the helpers poll
 * /api/v1/cluster with deadlines (never a fixed sleep) until the nodes agree
 * on a leader or on the store digest.
 */
#ifndef OPD_TEST_CLUSTER_H
#define OPD_TEST_CLUSTER_H

#include "admin_client.h"
#include "daemon.h"

#include <jansson.h>

#define OPD_CLUSTER_MAX 5

enum opd_cluster_state {
	OPD_CN_RUNNING = 0,
	OPD_CN_KILLED, /* SIGKILLed (or stopped) and reaped; the data directory stays */
	OPD_CN_PAUSED, /* SIGSTOPped */
};

struct opd_cluster_node {
	struct opd_daemon d; /* pid, data dir, log, ports, token */
	int id;              /* raft id: index + 1 */
	int raft_port;
	enum opd_cluster_state state;
	char arg_id[16], arg_raft[64], arg_admin[64];
};

struct opd_cluster {
	int n;
	char key_dir[256]; /* holds the shared signing key */
	char key_path[320];
	char voters[OPD_CLUSTER_MAX][160];
	const char *extra[24]; /* the caller's extra arguments (NULL-terminated, not copied) */
	int port_clash;        /* the last start failed on a port taken meanwhile */
	struct opd_cluster_node nodes[OPD_CLUSTER_MAX];
};

/*
 * Start n (1..5) nodes with --heartbeat-interval 1 and the caller's extra arguments (NULL
 * terminated, may be NULL; the strings must outlive the cluster), each ready within 10 s.
 * Does not wait for a leader. Returns 0, or -1 (reason on stderr, everything stopped).
 */
int opd_cluster_start(struct opd_cluster *c, int n, const char *const *extra);

/*
 * Stop every node: paused ones are resumed, running ones get SIGTERM (all at once) and must exit
 * 0 within 10 s; killed ones are skipped. Removes the data directories and the key. Returns 0
 * when every running node exited cleanly, -1 otherwise. Safe to call twice.
 */
int opd_cluster_stop(struct opd_cluster *c);

/* GET /api/v1/cluster on node i with a timeout: the object, or NULL (caller decrefs). */
json_t *opd_cluster_status(struct opd_cluster *c, int i, int timeout_ms);

/*
 * Poll every running node until all name the same leader and that node says it is the leader,
 * at most timeout_ms. Returns the leader's index, or -1 after printing what each node said.
 */
int opd_cluster_wait_leader(struct opd_cluster *c, int timeout_ms);

/* The index of the k-th (0-based) running node that is not leader, or -1. */
int opd_cluster_follower(const struct opd_cluster *c, int leader, int k);

/* SIGKILL node i and reap it (its directory stays). 0 or -1. */
int opd_cluster_kill(struct opd_cluster *c, int i);

/* Start a killed node again on its directory with the same ports. 0 or -1. */
int opd_cluster_restart(struct opd_cluster *c, int i);

/* SIGSTOP / SIGCONT node i. 0 or -1. */
int opd_cluster_pause(struct opd_cluster *c, int i);
int opd_cluster_resume(struct opd_cluster *c, int i);

/* Node i's store_digest (GET /api/v1/cluster/digest: 64 hex + NUL) into out. 0 or -1. */
int opd_cluster_digest(struct opd_cluster *c, int i, char out[65]);

/*
 * Poll until every running node reports the same store_digest, at most timeout_ms. Stores the
 * digest in out when not NULL. Returns 0, or -1 after printing each node's digest.
 */
int opd_cluster_wait_digests(struct opd_cluster *c, int timeout_ms, char out[65]);

/*
 * One admin request to node i with its token, an optional Idempotency-Key header (NULL: none)
 * and a timeout. Like opd_api_request: the status, or -1 (connect error or no answer in time).
 */
int opd_cluster_request(struct opd_cluster *c, int i, const char *method, const char *path,
			const char *body, const char *idem_key, int timeout_ms,
			struct opd_client_resp *r, json_t **json);

/* Dump every node's log tail to stderr. */
void opd_cluster_dump_logs(const struct opd_cluster *c);

#endif
