/*
 * The node: the only caller of raft. Owns struct raft, the libuv io and TCP
 * transport, bootstraps the initial voters, proposes commands, changes
 * membership, and tracks whether this node may write (the read-only rule of
 * raft.md §4.1: a leader that heard from a majority of voters within W, or a
 * follower that heard from its leader within W; W = 3 heartbeats).
 */
#ifndef OPD_NODE_H
#define OPD_NODE_H

#include "err.h"
#include "fsm.h"

#include <raft.h>
#include <raft/uv.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OPD_NODE_MAX_VOTERS 9
#define OPD_NODE_MAX_MEMBERS 16

struct opd_node_member {
	uint64_t id;
	char address[128]; /* raft host:port */
	int role;          /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
};

struct opd_node_config {
	uint64_t id;
	const char *address; /* raft host:port this node listens on */
	const char *dir;     /* raft log and snapshots (created if missing) */
	struct opd_node_member voters[OPD_NODE_MAX_VOTERS]; /* initial voters, self included */
	size_t n_voters;
	unsigned election_timeout_ms; /* default 800 */
	unsigned heartbeat_ms;        /* default 100 */
	/* Entries between snapshots and kept after one; 0 (the default) = chosen
	 * from the sizes of the store and of the entries (opd_fsm_snapshot_policy). */
	unsigned snapshot_threshold;
	unsigned snapshot_trailing; /* ignored when the threshold is 0 */
};

struct opd_node;

/* Why a node refuses writes, or "" when writable. */
struct opd_node_status {
	uint64_t id;
	const char *role; /* "leader", "follower", "candidate" */
	uint64_t term;
	uint64_t leader_id; /* 0 when unknown */
	char leader_address[128];
	uint64_t commit_index, applied_index, last_index;
	int read_only;
	char reason[160];
	size_t n_members;
	struct {
		uint64_t id;
		char address[128];
		const char *role;        /* "voter", "standby", "spare" */
		int64_t last_contact_ms; /* ms since this node last heard from it; -1 unknown; 0 for
					    self */
	} members[OPD_NODE_MAX_MEMBERS];
};

/* Completion of a proposal. status 0: applied, res is the FSM's result. Otherwise an OPD_E* code:
 * OPD_ENOTLEADER (lost leadership: outcome unknown), OPD_ECANCELED (shutting down). */
typedef void (*opd_node_propose_cb)(void *data, int status, const struct opd_apply_result *res);
typedef void (*opd_node_change_cb)(void *data, int status, const char *message);

void opd_node_config_default(struct opd_node_config *c);

/*
 * Create the node on loop with fsm (borrowed), bootstrap the initial voters
 * when the directory is pristine, and start raft. Returns 0 with *out set,
 * or an OPD_E* code with errmsg (OPD_ERRMSG_SIZE bytes) filled.
 */
int opd_node_start(uv_loop_t *loop, const struct opd_node_config *cfg, struct opd_fsm *fsm,
		   struct opd_node **out, char *errmsg) __attribute__((warn_unused_result));

/* Stop raft; cb runs once everything is released (the node is freed then). */
void opd_node_close(struct opd_node *n, void (*cb)(void *data), void *data);

/*
 * Propose a framed command (opd_cmd_encode; copied). cb runs once, later,
 * with the result. Returns 0, or synchronously OPD_ENOTLEADER (not leader or
 * read-only: nothing was proposed, cb never runs) or OPD_EAGAIN (no space).
 */
int opd_node_propose(struct opd_node *n, const uint8_t *payload, size_t len, opd_node_propose_cb cb,
		     void *data);

/*
 * Leader: send the commit index to the followers now rather than with the next
 * heartbeat (a follower that forwarded a write answers it once applied).
 * Appends a barrier unless one is in flight; does nothing elsewhere.
 */
void opd_node_nudge(struct opd_node *n);

/* Membership and leadership (leader only). cb runs once with 0 or an OPD_E* code and a message. */
int opd_node_add(struct opd_node *n, uint64_t id, const char *address, opd_node_change_cb cb,
		 void *data);
int opd_node_assign(struct opd_node *n, uint64_t id, int role, opd_node_change_cb cb, void *data);
int opd_node_remove(struct opd_node *n, uint64_t id, opd_node_change_cb cb, void *data);
int opd_node_transfer(struct opd_node *n, uint64_t id, opd_node_change_cb cb, void *data);

/* 1 when this node accepts writes now (leader with a recent majority). */
int opd_node_writable(struct opd_node *n);

/* The current status (loop thread). */
void opd_node_status(struct opd_node *n, struct opd_node_status *st);

/* The raft term (for signed records). */
uint64_t opd_node_term(struct opd_node *n);

#endif
