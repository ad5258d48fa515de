/*
 * The node: the only file that calls raft (libraft 0.22.1, the cowsql fork),
 * but for tcp_transport.c, which wraps raft's TCP transport. Every rule below
 * comes from /work/shared/reference/raft.md; the section numbers refer to it.
 *
 * - Construction follows §1.3. transport.version = 1 must be set or
 *   raft_uv_tcp_init fails at run time (tcp_transport.c sets it);
 *   raft_uv_init does not create the directory, so it is created here;
 *   raft_seed gets a getrandom() value because raft_uv_init reseeds rand()
 *   from the clock and co-located nodes would draw identical election
 *   timers (§6 #11); auto-recovery is off so that acknowledged entries never
 *   vanish silently (§6 #10); pre-vote is on (§6 #17).
 * - SIGPIPE must be ignored before start (§6 #5): a peer closing its socket
 *   would otherwise kill the process. The daemon does it in main(); start
 *   refuses to run with the default disposition rather than change it.
 * - Payloads go to raft_apply as one buffer (§6 #2) whose length is a
 *   multiple of 8, checked here first (§6 #1: RAFT_INVALID leaves the node
 *   unable to submit again).
 * - Apply callbacks are deferred (§1.7, §6 #8): the result is looked up by
 *   the entry's index with opd_fsm_result, never through raft's pointer.
 * - Write availability is rule S of §4.1: the io's recv callback is wrapped
 *   to time AppendEntries/InstallSnapshot from the current leader (on a
 *   follower) and AppendEntriesResult per peer (on a leader), W = 3
 *   heartbeats.
 * - raft_close is never called from inside raft (step_cb aborts, §6 #7): it
 *   is deferred through a 0 ms timer, and raft_state() is not reset by close,
 *   so the node keeps its own closing flag (§6 #12).
 */
#define LOG_COMPONENT "node"

#include "node.h"

#include "aio_reaper.h"
#include "cmd.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "segment_fill.h"
#include "tcp_transport.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define W_HEARTBEATS 3
/* The largest payload a valid leader proposes: a framed command (cmd.h). */
#define MAX_PAYLOAD ((size_t)OPD_CMD_MAX + 8)
/*
 * At most this many applied entries per sqlite transaction: bounds what a
 * crash makes raft replay and how long a transaction holds dirty pages.
 */
#define OPD_NODE_APPLY_BATCH 256
/*
 * How long applied entries may wait for their COMMIT. Nothing waits on it:
 * the raft log already holds them and readers share the writer's
 * connection. Each COMMIT writes every page the batch touched (index leaves
 * of every configuration written, the applied index, the audit log), so
 * one every 50 ms writes far fewer pages than one per loop turn.
 */
#define OPD_NODE_COMMIT_MS 50
/*
 * Entries sent to a follower and not yet acknowledged. The entries are the
 * leader's own (raft sends them without copying), so this bounds no memory
 * that the admitted writes do not already hold.
 */
#define OPD_NODE_MAX_INFLIGHT 256
/*
 * raft's log segments: 16 MiB instead of its 8. Each segment change blocked
 * the loop thread 30-80 ms here, most of it in io_destroy(2) of the old
 * segment's AIO context (now on aio_reaper.c's thread), and every node
 * changes at the same log position: the tail of write latency
 * (bench/PROFILE.md). Not more than 16: raft 0.22 keeps its free log
 * capacity in KiB in an unsigned short, and two prepared segments plus the
 * open one must stay below 64 MiB, or the count wraps and every write fails
 * with RAFT_NOSPACE (raft.md §6 #9).
 */
#define OPD_NODE_SEGMENT_BYTES (16u << 20)
/*
 * Prepared log space, in KiB, a majority of voters must report for raft to
 * accept an entry: raft's own default, set here so that raft's check and
 * evaluate()'s agree.
 * A segment is ready once segment_fill.c has written it, tens of
 * milliseconds after start-up (or never, on a full disk): until then a leader
 * reports itself read-only instead of failing writes with RAFT_NOSPACE.
 */
#define OPD_NODE_LOG_CAPACITY_KIB 4096

/*
 * Election messages are sent again OPD_NODE_RESEND_MS and 3 × that later,
 * into at most this many slots at once (resend_fire).
 */
#define OPD_NODE_RESEND_MS 30
#define OPD_NODE_RESEND_SLOTS 8

/* The last AppendEntriesResult (leader) seen from one peer. */
struct contact {
	raft_id id; /* 0: free slot */
	uint64_t at;
};

struct opd_node {
	uv_loop_t *loop;
	struct opd_fsm *fsm;
	struct raft raft;
	struct raft_io io;
	struct opd_tcp_transport transport;
	uv_timer_t defer;    /* runs raft_close outside raft's callbacks */
	uv_prepare_t flush;  /* arms commit when entries wait for a COMMIT */
	uv_timer_t commit;   /* commits them OPD_NODE_COMMIT_MS later (group commit) */
	uv_timer_t resend;   /* sends election messages again (resend_fire) */
	unsigned handles;    /* of defer, flush, commit and resend, not closed yet */
	bool auto_snapshots; /* threshold and trailing follow opd_fsm_snapshot_policy */
	unsigned threshold, trailing; /* as last set */
	char address[sizeof(((struct opd_node_member *)0)->address)];
	char *dir;
	uint64_t window_ms; /* W of the read-only rule */
	unsigned tick_ms;   /* raft's ticks (shim_start) */

	/* Rule S observations, fed by the recv shim and step_cb. */
	int (*orig_start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
	int (*orig_send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
			 raft_io_send_cb);
	struct again {
		unsigned left; /* copies still to send; 0: free slot */
		uint64_t due;
		struct raft_message m;
		char address[sizeof(((struct opd_node_member *)0)->address)]; /* m's */
	} again[OPD_NODE_RESEND_SLOTS];
	raft_io_recv_cb orig_recv;
	uint64_t leader_msg_at; /* follower: last AE/IS of the current term from the leader */
	raft_id leader_msg_from;
	uint64_t leader_since;       /* when this node last became leader (W of grace) */
	uint64_t leader_start_index; /* last index when it did: applied past it before writing */
	bool was_leader;
	struct contact contacts[OPD_NODE_MAX_MEMBERS];

	unsigned election_ms; /* the minimum election timeout (allow_disruption) */
	unsigned pending; /* proposals and changes whose raft callback has not fired */
	struct raft_barrier nudge; /* opd_node_nudge's, while nudging */
	bool nudging;
	bool broken;      /* raft_apply returned RAFT_INVALID: never submit again (§6 #1) */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
	char errmsg[OPD_ERRMSG_SIZE];
};

struct proposal {
	struct raft_apply req; /* req.data = this */
	struct opd_node *node;
	opd_node_propose_cb cb;
	void *data;
};

enum change_kind { CHANGE_ADD, CHANGE_ASSIGN, CHANGE_REMOVE, CHANGE_TRANSFER };

struct change {
	union {
		struct raft_change change;
		struct raft_transfer transfer;
	} req; /* data = this */
	struct opd_node *node;
	enum change_kind kind;
	uint64_t target;
	int role;
	opd_node_change_cb cb;
	void *data;
};

static uint64_t now_ms(const struct opd_node *n)
{
	return uv_now(n->loop);
}

static const char *state_name(int state)
{
	const char *s = raft_state_name(state); /* NULL for RAFT_UNAVAILABLE (§6 #13) */

	return s != NULL ? s : "unavailable";
}

static const char *role_name(int role)
{
	switch (role) {
	case RAFT_VOTER:
		return "voter";
	case RAFT_STANDBY:
		return "standby";
	case RAFT_SPARE:
		return "spare";
	default:
		return "unknown";
	}
}

/* raft error → OPD_E*. The raft text is logged or passed on by the caller. */
static int map_raft(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case RAFT_NOMEM:
		return OPD_ENOMEM;
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
		return OPD_ENOTLEADER;
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
		return OPD_ECANCELED;
	case RAFT_BADID:
	case RAFT_NOTFOUND:
		return OPD_ENOTFOUND;
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
	case RAFT_CANTCHANGE:
		return OPD_ECONFLICT;
	case RAFT_BADROLE:
	case RAFT_INVALID:
		return OPD_EINVAL;
	case RAFT_NOSPACE:
	case RAFT_BUSY:
		return OPD_EAGAIN;
	default:
		return OPD_EIO;
	}
}

/* ---- rule S observations ------------------------------------------------ */

static void note_state(struct opd_node *n)
{
	bool leader = raft_state(&n->raft) == RAFT_LEADER;

	if (leader && !n->was_leader) {
		/* Just won a majority vote: that counts as contact with a majority.
		 * Results from an earlier term of leadership no longer mean anything. */
		n->leader_since = now_ms(n);
		/*
		 * Entries of earlier terms may be in the log but not yet applied (the
		 * leader learns they are committed only with its own first entry). A
		 * write stamped before they are applied would be numbered from a stale
		 * store (a version race that refuses it). The no-op a new leader
		 * appends, when such entries exist, is in the log by now.
		 */
		n->leader_start_index = raft_last_index(&n->raft);
		memset(n->contacts, 0, sizeof n->contacts);
		log_info("node %llu became leader (term %llu)", (unsigned long long)n->raft.id,
			 (unsigned long long)raft_current_term(&n->raft));
	} else if (!leader && n->was_leader) {
		log_info("node %llu is no longer leader: now %s (term %llu)",
			 (unsigned long long)n->raft.id, state_name(raft_state(&n->raft)),
			 (unsigned long long)raft_current_term(&n->raft));
	}
	n->was_leader = leader;
}

/* step_cb runs inside raft's event processing: read state only (§1.8). */
static void step_cb(struct raft *r)
{
	note_state(r->data);
}

static void note_result(struct opd_node *n, raft_id from, uint64_t now)
{
	struct contact *slot = NULL;
	size_t i;

	for (i = 0; i < OPD_NODE_MAX_MEMBERS; i++) {
		struct contact *c = &n->contacts[i];

		if (c->id == from) {
			slot = c;
			break;
		}
		/* A free slot, else the oldest: the table outlives no configuration. */
		if (slot == NULL || (slot->id != 0 && (c->id == 0 || c->at < slot->at)))
			slot = c;
	}
	slot->id = from;
	slot->at = now;
}

static uint64_t result_at(const struct opd_node *n, raft_id id)
{
	size_t i;

	for (i = 0; i < OPD_NODE_MAX_MEMBERS; i++)
		if (n->contacts[i].id == id)
			return n->contacts[i].at;
	return 0;
}

/*
 * Leader stickiness as the Raft thesis puts it (§4.2.3): a server ignores a
 * (pre-)vote request "within the minimum election timeout of hearing from a
 * current leader". raft 0.22 ignores it for as long as the follower still
 * names a leader, which it forgets only when its own election timer fires: a
 * candidate that timed out first was refused by the other survivor, and when
 * only it could win (its log the longer) the election waited a second
 * randomized timeout. A follower that has not heard from its leader for the
 * minimum election timeout lets the request through (raft's "disrupt leader"
 * flag, meant for leadership transfers); terms and logs are checked as ever.
 */
static void allow_disruption(struct opd_node *n, struct raft_message *m)
{
	if (raft_state(&n->raft) == RAFT_FOLLOWER && !m->request_vote.disrupt_leader &&
	    now_ms(n) - n->leader_msg_at >= n->election_ms)
		m->request_vote.disrupt_leader = true;
}

static void shim_recv(struct raft_io *io, struct raft_message *m)
{
	struct raft *r = io->data; /* raft_init sets io->data = r */
	struct opd_node *n = r->data;
	int type = m->type;
	raft_id from = m->server_id;
	raft_term term = 0;
	raft_id leader;
	const char *leader_addr;
	uint64_t now;

	/* Copy what is needed first: raft may free or reuse *m. */
	switch (type) {
	case RAFT_APPEND_ENTRIES:
		term = m->append_entries.term;
		break;
	case RAFT_INSTALL_SNAPSHOT:
		term = m->install_snapshot.term;
		break;
	case RAFT_APPEND_ENTRIES_RESULT:
		term = m->append_entries_result.term;
		break;
	case RAFT_REQUEST_VOTE:
		allow_disruption(n, m);
		break;
	default:
		break;
	}
	n->orig_recv(io, m);
	if (n->closing)
		return;
	now = now_ms(n);
	note_state(n);
	if ((type == RAFT_APPEND_ENTRIES || type == RAFT_INSTALL_SNAPSHOT) &&
	    raft_state(r) == RAFT_FOLLOWER && term == raft_current_term(r)) {
		raft_leader(r, &leader, &leader_addr);
		if (leader == from) {
			n->leader_msg_at = now;
			n->leader_msg_from = from;
		}
	}
	if (type == RAFT_APPEND_ENTRIES_RESULT && raft_state(r) == RAFT_LEADER &&
	    term == raft_current_term(r) && from != 0)
		note_result(n, from, now);
}

/*
 * raft ticks every msecs (its heartbeat timeout) and, at a tick, sends a
 * heartbeat to a follower last sent to at least a heartbeat timeout ago; the
 * one sent at the previous tick was a hair short of that, so heartbeats went
 * out every second tick, 200 ms apart for 100 ms (measured on the followers).
 * At every tick a leader also demotes to probing each follower that has not
 * answered since the previous tick (raft's checkContactQuorum,
 * LIBRAFT_TRACE: "server 1 is unreachable -> abort pipeline"): an idle
 * leader probed its followers, and a write after a pause waited up to a
 * heartbeat to be sent. A follower learns that an entry is committed only
 * from the leader's next message, so a write it forwarded (and answers once
 * applied) took ~200 ms.
 *
 * So raft ticks OPD_NODE_TICKS_PER_HEARTBEAT times per configured heartbeat,
 * its heartbeat timeout a fifth of a tick (tick_of, heartbeat_of): a
 * heartbeat goes out at every tick unless an entry just did, followers stay
 * pipelined, and a commit reaches them within a tick. The read-only rule's window stays three
 * configured heartbeats.
 */
#define OPD_NODE_TICKS_PER_HEARTBEAT 4

static int shim_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
		      raft_io_recv_cb recv)
{
	struct raft *r = io->data;
	struct opd_node *n = r->data;

	(void)msecs; /* raft's heartbeat timeout: shorter than the tick on purpose */
	n->orig_recv = recv;
	return n->orig_start(io, n->tick_ms, tick, shim_recv);
}

static unsigned tick_of(unsigned heartbeat_ms)
{
	unsigned t = heartbeat_ms / OPD_NODE_TICKS_PER_HEARTBEAT;

	return t > 1 ? t : 2;
}

/* raft's heartbeat timeout for a tick: short enough that every tick sends one. */
static unsigned heartbeat_of(unsigned tick_ms)
{
	return tick_ms / 5 > 0 ? tick_ms / 5 : 1;
}

/*
 * raft writes on the connections it dials and never reads them, so it learns
 * that a peer restarted only when a write fails, and the first write after
 * the restart vanishes into the socket the peer closed. Followers write to
 * each other only in elections: after any restart, the next election could
 * lose a vote request or its answer, and wait a whole randomized timeout for
 * the next round (failovers of 2.0-2.5 s against 1.0-1.6 s; bench/PROFILE.md).
 * So vote requests and their answers are sent twice more, 30 and 90 ms later:
 * the second copy fails on the dead socket, raft reconnects at once, and the
 * third arrives. raft takes a repeated vote message as the same one (votes
 * are counted per server; a pre-vote changes nothing).
 */
static void again_sent(struct raft_io_send *req, int status)
{
	(void)status;
	free(req);
}

static void resend_fire(uv_timer_t *t)
{
	struct opd_node *n = t->data;
	uint64_t now = now_ms(n);
	bool more = false;

	for (size_t i = 0; i < OPD_NODE_RESEND_SLOTS; i++) {
		struct again *a = &n->again[i];
		struct raft_io_send *req;

		if (a->left == 0)
			continue;
		if (n->closing) {
			a->left = 0;
			continue;
		}
		if (a->due <= now) {
			req = opd_xcalloc(1, sizeof *req);
			if (n->orig_send(&n->io, req, &a->m, again_sent) != 0)
				free(req);
			a->left--;
			a->due = now + 2 * OPD_NODE_RESEND_MS;
		}
		more = more || a->left > 0;
	}
	if (!more)
		uv_timer_stop(t);
}

static int shim_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
		     raft_io_send_cb cb)
{
	struct raft *r = io->data;
	struct opd_node *n = r->data;
	int rv = n->orig_send(io, req, m, cb);

	if (rv != 0 || n->closing ||
	    (m->type != RAFT_REQUEST_VOTE && m->type != RAFT_REQUEST_VOTE_RESULT) ||
	    m->server_address == NULL || strlen(m->server_address) >= sizeof n->again[0].address)
		return rv;
	for (size_t i = 0; i < OPD_NODE_RESEND_SLOTS; i++) {
		struct again *a = &n->again[i];

		if (a->left != 0)
			continue;
		a->m = *m;
		snprintf(a->address, sizeof a->address, "%s", m->server_address);
		a->m.server_address = a->address;
		a->left = 2;
		a->due = now_ms(n) + OPD_NODE_RESEND_MS;
		if (!uv_is_active((uv_handle_t *)&n->resend))
			uv_timer_start(&n->resend, resend_fire, OPD_NODE_RESEND_MS, OPD_NODE_RESEND_MS);
		break; /* all slots taken: this one is sent once, as raft would */
	}
	return rv;
}

/* The FSM learns the index it applies (fsm.h): last_applied moves after apply returns. */
static uint64_t next_index(void *data)
{
	struct opd_node *n = data;

	return raft_last_applied(&n->raft) + 1;
}

/* ---- writability -------------------------------------------------------- */

struct quorum {
	unsigned voters, heard;
};

static struct quorum leader_quorum(struct opd_node *n, uint64_t now)
{
	const struct raft_configuration *c = &n->raft.configuration;
	struct quorum q = {0, 0};
	unsigned i;

	for (i = 0; i < c->n; i++) {
		const struct raft_server *s = &c->servers[i];
		uint64_t t;

		if (s->role != RAFT_VOTER)
			continue;
		q.voters++;
		if (s->id == n->raft.id) {
			q.heard++;
			continue;
		}
		t = result_at(n, s->id);
		if (n->leader_since > t)
			t = n->leader_since;
		if (t != 0 && now - t <= n->window_ms)
			q.heard++;
	}
	return q;
}

/*
 * Evaluate rule S. Returns 1 when this node is a leader that may write, fills
 * *read_only (neither a writable leader nor a follower in contact with its
 * leader) and a reason in plain words when reason is not NULL.
 */
static int evaluate(struct opd_node *n, int *read_only, char *reason, size_t cap)
{
	uint64_t now = now_ms(n);
	raft_id leader;
	const char *addr;
	struct quorum q;

	if (reason != NULL)
		reason[0] = '\0';
	*read_only = 1;
	if (n->closing) {
		if (reason != NULL)
			snprintf(reason, cap, "node is shutting down");
		return 0;
	}
	if (n->broken) {
		if (reason != NULL)
			snprintf(reason, cap,
				 "raft refused an entry (RAFT_INVALID): restart the node");
		return 0;
	}
	note_state(n);
	switch (raft_state(&n->raft)) {
	case RAFT_LEADER:
		if (raft_transferee(&n->raft) != 0) {
			if (reason != NULL)
				snprintf(reason, cap, "leadership transfer in progress (to %llu)",
					 (unsigned long long)raft_transferee(&n->raft));
			return 0;
		}
		if (raft_last_applied(&n->raft) < n->leader_start_index) {
			if (reason != NULL)
				snprintf(reason, cap,
					 "new leader catching up: applied %llu of %llu entries",
					 (unsigned long long)raft_last_applied(&n->raft),
					 (unsigned long long)n->leader_start_index);
			return 0;
		}
		if (n->io.capacity < OPD_NODE_LOG_CAPACITY_KIB) {
			if (reason != NULL)
				snprintf(reason, cap,
					 "leader's log not ready: %u of %u KiB of segments prepared "
					 "(starting up, or the disk is full)",
					 (unsigned)n->io.capacity, OPD_NODE_LOG_CAPACITY_KIB);
			return 0;
		}
		q = leader_quorum(n, now);
		if (q.heard * 2 > q.voters) {
			*read_only = 0;
			return 1;
		}
		if (reason != NULL)
			snprintf(reason, cap,
				 "leader without quorum: heard from %u of %u voters within %llu ms",
				 q.heard, q.voters, (unsigned long long)n->window_ms);
		return 0;
	case RAFT_FOLLOWER:
		raft_leader(&n->raft, &leader, &addr);
		if (leader == 0) {
			if (reason != NULL)
				snprintf(reason, cap, "follower: no leader known");
			return 0;
		}
		if (n->leader_msg_from != leader || n->leader_msg_at == 0) {
			if (reason != NULL)
				snprintf(reason, cap, "follower: no contact with leader %llu yet",
					 (unsigned long long)leader);
			return 0;
		}
		if (now - n->leader_msg_at > n->window_ms) {
			if (reason != NULL)
				snprintf(reason, cap,
					 "follower: no contact with leader %llu for %llu ms",
					 (unsigned long long)leader,
					 (unsigned long long)(now - n->leader_msg_at));
			return 0;
		}
		*read_only = 0;
		return 0;
	case RAFT_CANDIDATE:
		if (reason != NULL)
			snprintf(reason, cap, "candidate: no leader elected");
		return 0;
	default:
		if (reason != NULL)
			snprintf(reason, cap, "%s", state_name(raft_state(&n->raft)));
		return 0;
	}
}

int opd_node_writable(struct opd_node *n)
{
	int read_only;

	return evaluate(n, &read_only, NULL, 0);
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The most specific text for a failed raft call: raft's, then the io's, then the code's. */
static const char *error_text(struct opd_node *n, int rv)
{
	const char *s = raft_errmsg(&n->raft);

	if (s == NULL || s[0] == '\0')
		s = n->io.errmsg;
	if (s == NULL || s[0] == '\0')
		s = n->transport.raft.errmsg;
	if (s == NULL || s[0] == '\0')
		s = raft_strerror(rv);
	return s;
}

void opd_node_config_default(struct opd_node_config *c)
{
	*c = (struct opd_node_config){
	    /* raft draws each timer from [ET, 2 ET], and a survivor still hearing
	     * from its dead leader refuses to vote: after a leader dies, the
	     * election ends when the later of two timers fires, up to 2 ET.
	     * 800 ms keeps that (plus the first write) under 2 s; 8 heartbeats. */
	    .election_timeout_ms = 800,
	    .heartbeat_ms = 100,
	    /* Chosen at run time (opd_fsm_snapshot_policy): a snapshot is the
	     * whole database, so a fixed entry count made its cost per write grow
	     * with the store (bench/PROFILE.md). */
	    .snapshot_threshold = 0,
	    /* With a fixed threshold: followers that lag by less than this are
	     * sent entries, not an InstallSnapshot, which 0.22.1 crashes on while
	     * the follower writes its own snapshot (§6 #3). cowsql uses 8192. */
	    .snapshot_trailing = 8192,
	};
}

/* mkdir -p with 0700 for the parts created. */
static int mkdir_p(const char *path, char *errmsg)
{
	char *p = opd_xstrdup(path);
	char *s;
	int rc = 0;

	for (s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			opd_errmsg_printf(errmsg, "create %s: %s", p, strerror(errno));
			rc = OPD_EIO;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

static int check_config(const struct opd_node_config *cfg, char *errmsg)
{
	size_t i, j;
	bool self = false;

	if (cfg->id == 0) {
		opd_errmsg_printf(errmsg, "node id must not be 0");
		return OPD_EINVAL;
	}
	if (cfg->address == NULL || cfg->address[0] == '\0' ||
	    strlen(cfg->address) >= sizeof(((struct opd_node_member *)0)->address)) {
		opd_errmsg_printf(errmsg, "raft address missing or too long");
		return OPD_EINVAL;
	}
	if (cfg->dir == NULL || cfg->dir[0] == '\0') {
		opd_errmsg_printf(errmsg, "raft directory missing");
		return OPD_EINVAL;
	}
	if (cfg->n_voters > OPD_NODE_MAX_VOTERS) {
		opd_errmsg_printf(errmsg, "at most %d initial voters", OPD_NODE_MAX_VOTERS);
		return OPD_EINVAL;
	}
	if (cfg->heartbeat_ms == 0 ||
	    cfg->election_timeout_ms <= W_HEARTBEATS * cfg->heartbeat_ms) {
		/* raft only asserts heartbeat < election (compiled out); the
		 * read-only window W = 3 heartbeats must stay below the election timeout. */
		opd_errmsg_printf(errmsg,
				  "election timeout %u ms must exceed %d heartbeats of %u ms",
				  cfg->election_timeout_ms, W_HEARTBEATS, cfg->heartbeat_ms);
		return OPD_EINVAL;
	}
	for (i = 0; i < cfg->n_voters; i++) {
		const struct opd_node_member *v = &cfg->voters[i];

		/* raft_configuration_add accepts id 0 (§1.1): check here. */
		if (v->id == 0 || v->address[0] == '\0' ||
		    memchr(v->address, '\0', sizeof v->address) == NULL) {
			opd_errmsg_printf(errmsg, "voter %zu: id 0 or bad address", i);
			return OPD_EINVAL;
		}
		for (j = 0; j < i; j++)
			if (cfg->voters[j].id == v->id) {
				opd_errmsg_printf(errmsg, "voter id %llu listed twice",
						  (unsigned long long)v->id);
				return OPD_EINVAL;
			}
		if (v->id == cfg->id) {
			self = true;
			if (strcmp(v->address, cfg->address) != 0) {
				opd_errmsg_printf(errmsg, "voter %llu has address %s, node has %s",
						  (unsigned long long)v->id, v->address,
						  cfg->address);
				return OPD_EINVAL;
			}
		}
	}
	if (cfg->n_voters > 0 && !self) {
		opd_errmsg_printf(errmsg, "the initial voters must include node %llu",
				  (unsigned long long)cfg->id);
		return OPD_EINVAL;
	}
	return 0;
}

static void defer_closed(uv_handle_t *h)
{
	struct opd_node *n = h->data;
	void (*cb)(void *) = n->close_cb;
	void *data = n->close_data;

	if (--n->handles > 0)
		return;
	free(n->dir);
	free(n);
	if (cb != NULL)
		cb(data);
}

static void raft_closed(struct raft *r)
{
	struct opd_node *n = r->data;

	/* raft_close fired every pending request before closing the io (raft.c). */
	if (n->pending != 0)
		log_error("node %llu closed with %u requests unanswered", (unsigned long long)r->id,
			  n->pending);
	raft_uv_close(&n->io);
	raft_uv_tcp_close(&n->transport.raft);
	if (n->fsm->index_data == n) {
		n->fsm->next_index = NULL;
		n->fsm->index_data = NULL;
	}
	opd_fsm_flush(n->fsm);
	n->fsm->batch_max = 0; /* no loop turn flushes for this node any more */
	uv_close((uv_handle_t *)&n->flush, defer_closed);
	uv_close((uv_handle_t *)&n->commit, defer_closed);
	uv_close((uv_handle_t *)&n->defer, defer_closed);
	uv_close((uv_handle_t *)&n->resend, defer_closed);
}

/* Everything raft applied in the last OPD_NODE_COMMIT_MS goes to sqlite in one COMMIT. */
static void commit_fire(uv_timer_t *t)
{
	struct opd_node *n = t->data;

	opd_fsm_flush(n->fsm);
}

/* Before the loop waits for I/O: a batch that is open is committed soon. */
static void flush_fire(uv_prepare_t *p)
{
	struct opd_node *n = p->data;
	unsigned threshold, trailing;

	if (n->fsm->batch_len > 0 && !uv_is_active((uv_handle_t *)&n->commit))
		uv_timer_start(&n->commit, commit_fire, OPD_NODE_COMMIT_MS, 0);
	if (!n->auto_snapshots)
		return;
	/* Plain setters in raft; read when it next considers a snapshot. */
	opd_fsm_snapshot_policy(n->fsm, &threshold, &trailing);
	if (threshold != n->threshold)
		raft_set_snapshot_threshold(&n->raft, n->threshold = threshold);
	if (trailing != n->trailing)
		raft_set_snapshot_trailing(&n->raft, n->trailing = trailing);
}

static void defer_fire(uv_timer_t *t)
{
	struct opd_node *n = t->data;

	raft_close(&n->raft, raft_closed);
}

/* Begin the asynchronous teardown of a node whose raft_init succeeded. */
static void begin_close(struct opd_node *n, void (*cb)(void *data), void *data)
{
	n->closing = true;
	n->close_cb = cb;
	n->close_data = data;
	uv_timer_start(&n->defer, defer_fire, 0, 0);
}

void opd_node_close(struct opd_node *n, void (*cb)(void *data), void *data)
{
	if (n->closing) {
		log_error("node %llu closed twice", (unsigned long long)n->raft.id);
		return;
	}
	log_info("node %llu closing", (unsigned long long)n->raft.id);
	begin_close(n, cb, data);
}

static int bootstrap(struct opd_node *n, const struct opd_node_config *cfg)
{
	struct raft_configuration conf;
	size_t i;
	int rv = 0;

	raft_configuration_init(&conf);
	for (i = 0; i < cfg->n_voters && rv == 0; i++)
		rv = raft_configuration_add(&conf, cfg->voters[i].id, cfg->voters[i].address,
					    RAFT_VOTER);
	if (rv == 0)
		rv = raft_bootstrap(&n->raft, &conf);
	raft_configuration_close(&conf);
	if (rv == RAFT_CANTBOOTSTRAP) {
		/* Not pristine: the stored term and log win. */
		log_info("node %llu: %s already holds raft state, not bootstrapping",
			 (unsigned long long)cfg->id, cfg->dir);
		return 0;
	}
	if (rv == 0)
		log_info("node %llu bootstrapped with %zu voters", (unsigned long long)cfg->id,
			 cfg->n_voters);
	return rv;
}

int opd_node_start(uv_loop_t *loop, const struct opd_node_config *cfg, struct opd_fsm *fsm,
		   struct opd_node **out, char *errmsg)
{
	struct sigaction sa;
	struct opd_node *n;
	unsigned seed;
	int rv;

	/* A peer closing its socket raises SIGPIPE inside raft's writes (§6 #5). */
	if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler == SIG_DFL) {
		opd_errmsg_printf(errmsg, "SIGPIPE must be ignored before starting raft");
		return OPD_EINVAL;
	}
	rv = check_config(cfg, errmsg);
	if (rv != 0)
		return rv;
	rv = mkdir_p(cfg->dir, errmsg);
	if (rv != 0)
		return rv;

	n = opd_xcalloc(1, sizeof *n);
	n->loop = loop;
	n->fsm = fsm;
	n->dir = opd_xstrdup(cfg->dir);
	snprintf(n->address, sizeof n->address, "%s", cfg->address);
	n->window_ms = (uint64_t)W_HEARTBEATS * cfg->heartbeat_ms;

	rv = opd_tcp_transport_init(&n->transport, loop);
	if (rv != 0) {
		opd_errmsg_printf(errmsg, "raft transport: %s", n->transport.raft.errmsg);
		goto fail_free;
	}
	rv = raft_uv_tcp_set_bind_address(&n->transport.raft, n->address);
	if (rv != 0) {
		opd_errmsg_printf(errmsg, "raft bind address %s: %s", n->address,
				  raft_strerror(rv));
		raft_uv_tcp_close(&n->transport.raft);
		goto fail_free;
	}
	if (opd_aio_reaper_start() != 0) /* still correct, with the loop stalls back */
		log_warn("no thread for io_destroy: every log segment change stalls the loop");
	opd_segment_fill_start();
	rv = raft_uv_init(&n->io, loop, n->dir, &n->transport.raft);
	if (rv != 0) {
		opd_errmsg_printf(errmsg, "raft io: %s", n->io.errmsg);
		raft_uv_tcp_close(&n->transport.raft);
		goto fail_free;
	}
	raft_uv_set_auto_recovery(&n->io, false); /* §6 #10 */
	raft_uv_set_segment_size(&n->io, OPD_NODE_SEGMENT_BYTES);
	rv = raft_init(&n->raft, &n->io, &fsm->raft, cfg->id, n->address);
	if (rv != 0) {
		opd_errmsg_printf(errmsg, "raft init: %s", error_text(n, rv));
		raft_uv_close(&n->io);
		raft_uv_tcp_close(&n->transport.raft);
		goto fail_free;
	}
	/* From here on raft and the timer handle exist: teardown is asynchronous. */
	n->raft.data = n;
	if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed)
		raft_seed(&n->raft, seed); /* §6 #11 */
	n->raft.legacy.step_cb = step_cb;
	raft_set_pre_vote(&n->raft, true);
	/*
	 * raft's default of 32 unacknowledged entries per follower held half of
	 * 64 concurrent writes back until the first half was acknowledged.
	 */
	raft_set_max_inflight_entries(&n->raft, OPD_NODE_MAX_INFLIGHT);
	raft_set_capacity_threshold(&n->raft, OPD_NODE_LOG_CAPACITY_KIB);
	raft_set_election_timeout(&n->raft, cfg->election_timeout_ms);
	n->election_ms = cfg->election_timeout_ms;
	n->tick_ms = tick_of(cfg->heartbeat_ms);
	raft_set_heartbeat_timeout(&n->raft, heartbeat_of(n->tick_ms));
	n->auto_snapshots = cfg->snapshot_threshold == 0;
	if (n->auto_snapshots) {
		opd_fsm_snapshot_policy(fsm, &n->threshold, &n->trailing);
	} else {
		n->threshold = cfg->snapshot_threshold;
		n->trailing = cfg->snapshot_trailing;
	}
	raft_set_snapshot_threshold(&n->raft, n->threshold);
	raft_set_snapshot_trailing(&n->raft, n->trailing);
	n->orig_start = n->io.start;
	n->io.start = shim_start;
	n->orig_send = n->io.send;
	n->io.send = shim_send;
	fsm->next_index = next_index;
	fsm->index_data = n;
	uv_timer_init(loop, &n->defer);
	n->defer.data = n;
	uv_prepare_init(loop, &n->flush);
	n->flush.data = n;
	uv_prepare_start(&n->flush, flush_fire);
	uv_unref((uv_handle_t *)&n->flush); /* never the reason the loop keeps running */
	uv_timer_init(loop, &n->commit);
	uv_timer_init(loop, &n->resend);
	n->resend.data = n;
	n->commit.data = n;
	n->handles = 4;
	fsm->batch_max = OPD_NODE_APPLY_BATCH;

	if (cfg->n_voters > 0) {
		rv = bootstrap(n, cfg);
		if (rv != 0) {
			opd_errmsg_printf(errmsg, "raft bootstrap: %s", error_text(n, rv));
			goto fail_close;
		}
	}
	rv = raft_start(&n->raft);
	if (rv != 0) {
		/* raft says only "I/O error" when the listener cannot bind. */
		opd_errmsg_printf(errmsg, "raft start on %s: %s", n->address, error_text(n, rv));
		goto fail_close;
	}
	note_state(n); /* a single voter elects itself inside raft_start */
	log_info("node %llu started on %s (dir %s, state %s, term %llu, last index %llu)",
		 (unsigned long long)cfg->id, n->address, n->dir, state_name(raft_state(&n->raft)),
		 (unsigned long long)raft_current_term(&n->raft),
		 (unsigned long long)raft_last_index(&n->raft));
	*out = n;
	return 0;

fail_close:
	log_error("node %llu: %s", (unsigned long long)cfg->id, errmsg);
	begin_close(n, NULL, NULL); /* memory is released once the loop runs */
	return rv == RAFT_NOMEM ? OPD_ENOMEM : OPD_EIO;
fail_free:
	log_error("node %llu: %s", (unsigned long long)cfg->id, errmsg);
	free(n->dir);
	free(n);
	return rv == RAFT_NOMEM ? OPD_ENOMEM : rv == RAFT_INVALID ? OPD_EINVAL : OPD_EIO;
}

/* ---- proposals ---------------------------------------------------------- */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = req->data;
	struct opd_node *n = p->node;
	const struct opd_apply_result *res = NULL;
	int rc;

	(void)result; /* may already show later state (§6 #8): look up by index */
	n->pending--;
	if (status == 0) {
		rc = 0;
		res = opd_fsm_result(n->fsm, req->index);
		if (res == NULL)
			log_warn("node %llu: result of entry %llu is no longer kept",
				 (unsigned long long)n->raft.id, (unsigned long long)req->index);
	} else if (n->closing || status == RAFT_SHUTDOWN) {
		rc = OPD_ECANCELED; /* raft_close fails pending entries with LEADERSHIPLOST */
	} else {
		/* Failure is not "not committed" (§1.7): the outcome is unknown. */
		rc = OPD_ENOTLEADER;
		log_warn("node %llu: entry %llu: %s (outcome unknown)",
			 (unsigned long long)n->raft.id, (unsigned long long)req->index,
			 raft_strerror(status));
	}
	p->cb(p->data, rc, res);
	free(p);
}

int opd_node_propose(struct opd_node *n, const uint8_t *payload, size_t len, opd_node_propose_cb cb,
		     void *data)
{
	struct raft_buffer buf;
	struct proposal *p;
	int rv;

	if (n->closing)
		return OPD_ECANCELED;
	/* Checked before raft sees it: RAFT_INVALID breaks the node (§6 #1). */
	if (len == 0 || len % 8 != 0)
		return OPD_EINVAL;
	if (len > MAX_PAYLOAD)
		return OPD_ETOOBIG;
	if (n->broken)
		return OPD_EIO;
	if (!opd_node_writable(n))
		return OPD_ENOTLEADER;

	buf.base = raft_malloc(len);
	if (buf.base == NULL)
		return OPD_ENOMEM;
	memcpy(buf.base, payload, len);
	buf.len = len;
	p = opd_xcalloc(1, sizeof *p);
	p->req.data = p;
	p->node = n;
	p->cb = cb;
	p->data = data;
	rv = raft_apply(&n->raft, &p->req, &buf, 1, apply_cb); /* n = 1 (§6 #2) */
	if (rv == RAFT_INVALID) {
		/* raft has freed buf and left the node unable to append (§6 #1). */
		n->broken = true;
		log_error("node %llu: raft_apply: %s; the node must be restarted",
			  (unsigned long long)n->raft.id, error_text(n, rv));
		free(p);
		return OPD_EIO;
	}
	if (rv != 0) {
		/* NOTLEADER, NOSPACE, NOMEM: the payload is still ours. */
		log_debug("node %llu: raft_apply: %s", (unsigned long long)n->raft.id,
			  raft_strerror(rv));
		raft_free(buf.base);
		free(p);
		return map_raft(rv);
	}
	n->pending++;
	return 0;
}

/*
 * raft tells followers the commit index only with the leader's next message,
 * and a follower answers a write it forwarded once it has applied it: up to a
 * tick (25 ms) of waiting for nothing. A barrier is an entry of its own, sent
 * at once, which carries the commit index; one at a time, so writes forwarded
 * in a burst share it.
 */
static void nudge_cb(struct raft_barrier *req, int status)
{
	struct opd_node *n = req->data;

	(void)status; /* nothing waits on it: a lost leadership or a close is fine */
	n->pending--;
	n->nudging = false;
}

void opd_node_nudge(struct opd_node *n)
{
	if (n->nudging || n->closing || n->broken || raft_state(&n->raft) != RAFT_LEADER)
		return;
	n->nudge.data = n;
	if (raft_barrier(&n->raft, &n->nudge, nudge_cb) != 0)
		return; /* not leader any more, or no space: the next heartbeat tells them */
	n->nudging = true;
	n->pending++;
}

/* ---- membership and leadership ------------------------------------------ */

static void change_finish(struct change *c, int status, const char *message)
{
	c->cb(c->data, status, message);
	free(c);
}

static void change_cb(struct raft_change *req, int status)
{
	struct change *c = req->data;
	struct opd_node *n = c->node;
	static const char *const verbs[] = {"add", "assign", "remove", "transfer"};
	char msg[OPD_ERRMSG_SIZE];
	int rc;

	n->pending--;
	if (status == 0) {
		if (c->kind == CHANGE_ASSIGN)
			snprintf(msg, sizeof msg, "%s %llu as %s: done", verbs[c->kind],
				 (unsigned long long)c->target, role_name(c->role));
		else
			snprintf(msg, sizeof msg, "%s %llu: done", verbs[c->kind],
				 (unsigned long long)c->target);
		change_finish(c, 0, msg);
		return;
	}
	rc = n->closing ? OPD_ECANCELED : map_raft(status);
	if (status == RAFT_NOCONNECTION)
		snprintf(msg, sizeof msg, "%s %llu: %s (catch-up aborted: too slow or unreachable)",
			 verbs[c->kind], (unsigned long long)c->target, raft_strerror(status));
	else
		snprintf(msg, sizeof msg, "%s %llu: %s%s", verbs[c->kind],
			 (unsigned long long)c->target, raft_strerror(status),
			 status == RAFT_LEADERSHIPLOST ? " (outcome unknown)" : "");
	log_warn("node %llu: %s", (unsigned long long)n->raft.id, msg);
	change_finish(c, rc, msg);
}

static void transfer_cb(struct raft_transfer *req)
{
	struct change *c = req->data;
	struct opd_node *n = c->node;
	char msg[OPD_ERRMSG_SIZE];
	raft_id leader = 0;
	const char *addr = NULL;

	n->pending--;
	if (n->closing) {
		change_finish(c, OPD_ECANCELED, "transfer: node is shutting down");
		return;
	}
	/* The callback does not say whether it worked (§1.7): look. */
	raft_leader(&n->raft, &leader, &addr);
	if (leader != 0 && leader != n->raft.id && (c->target == 0 || leader == c->target)) {
		snprintf(msg, sizeof msg, "leadership transferred to %llu",
			 (unsigned long long)leader);
		change_finish(c, 0, msg);
		return;
	}
	snprintf(msg, sizeof msg, "transfer to %llu did not complete: leader is %llu",
		 (unsigned long long)c->target, (unsigned long long)leader);
	log_warn("node %llu: %s", (unsigned long long)n->raft.id, msg);
	change_finish(c, OPD_EAGAIN, msg);
}

/*
 * Refuse what raft would refuse after allocating: raft_add and raft_remove
 * encode the new configuration first and leak it when the submit then fails
 * with NOTLEADER or CANTCHANGE (legacy.c clientChangeConfiguration; seen with
 * LeakSanitizer). The same fields are what raft checks (membership.c).
 */
static int can_change(struct opd_node *n)
{
	struct raft *r = &n->raft;

	if (n->closing)
		return OPD_ECANCELED;
	if (raft_state(r) != RAFT_LEADER || raft_transferee(r) != 0)
		return OPD_ENOTLEADER;
	if (r->configuration_uncommitted_index != 0 || r->leader_state.promotee_id != 0 ||
	    r->legacy.change != NULL)
		return OPD_ECONFLICT;
	return 0;
}

static struct change *change_new(struct opd_node *n, enum change_kind kind, uint64_t target,
				 opd_node_change_cb cb, void *data)
{
	struct change *c = opd_xcalloc(1, sizeof *c);

	c->node = n;
	c->kind = kind;
	c->target = target;
	c->cb = cb;
	c->data = data;
	return c;
}

/* The synchronous end of a change: 0 (callback pending) or a refusal, logged with raft's text. */
static int change_submitted(struct opd_node *n, struct change *c, int rv, const char *what)
{
	if (rv == 0) {
		n->pending++;
		return 0;
	}
	/* raft_errmsg is not set for these refusals (and may be stale): the code says it all. */
	log_warn("node %llu: %s %llu: %s", (unsigned long long)n->raft.id, what,
		 (unsigned long long)c->target, raft_strerror(rv));
	free(c);
	return map_raft(rv);
}

int opd_node_add(struct opd_node *n, uint64_t id, const char *address, opd_node_change_cb cb,
		 void *data)
{
	struct change *c;
	int rc;

	if (id == 0 || address == NULL || address[0] == '\0' ||
	    strlen(address) >= sizeof(((struct opd_node_member *)0)->address))
		return OPD_EINVAL;
	rc = can_change(n);
	if (rc != 0)
		return rc;
	c = change_new(n, CHANGE_ADD, id, cb, data);
	c->req.change.data = c;
	return change_submitted(n, c, raft_add(&n->raft, &c->req.change, id, address, change_cb),
				"add");
}

int opd_node_assign(struct opd_node *n, uint64_t id, int role, opd_node_change_cb cb, void *data)
{
	struct change *c;
	int rc;

	if (id == 0 || (role != RAFT_VOTER && role != RAFT_STANDBY && role != RAFT_SPARE))
		return OPD_EINVAL;
	rc = can_change(n);
	if (rc != 0)
		return rc;
	c = change_new(n, CHANGE_ASSIGN, id, cb, data);
	c->role = role;
	c->req.change.data = c;
	return change_submitted(n, c, raft_assign(&n->raft, &c->req.change, id, role, change_cb),
				"assign");
}

int opd_node_remove(struct opd_node *n, uint64_t id, opd_node_change_cb cb, void *data)
{
	struct change *c;
	int rc;

	if (id == 0)
		return OPD_EINVAL;
	rc = can_change(n);
	if (rc != 0)
		return rc;
	c = change_new(n, CHANGE_REMOVE, id, cb, data);
	c->req.change.data = c;
	return change_submitted(n, c, raft_remove(&n->raft, &c->req.change, id, change_cb),
				"remove");
}

int opd_node_transfer(struct opd_node *n, uint64_t id, opd_node_change_cb cb, void *data)
{
	struct change *c;

	if (n->closing)
		return OPD_ECANCELED;
	c = change_new(n, CHANGE_TRANSFER, id, cb, data);
	c->req.transfer.data = c;
	return change_submitted(n, c, raft_transfer(&n->raft, &c->req.transfer, id, transfer_cb),
				"transfer");
}

/* ---- status ------------------------------------------------------------- */

void opd_node_status(struct opd_node *n, struct opd_node_status *st)
{
	const struct raft_configuration *c = &n->raft.configuration;
	uint64_t now = now_ms(n);
	raft_id leader = 0;
	const char *addr = NULL;
	int state = raft_state(&n->raft);
	unsigned i;

	memset(st, 0, sizeof *st);
	st->id = n->raft.id;
	st->role = n->closing ? "closed" : state_name(state);
	st->term = raft_current_term(&n->raft);
	if (!n->closing && (state == RAFT_LEADER || state == RAFT_FOLLOWER)) {
		raft_leader(&n->raft, &leader, &addr);
		st->leader_id = leader;
		if (addr != NULL)
			snprintf(st->leader_address, sizeof st->leader_address, "%s", addr);
	}
	st->commit_index = raft_commit_index(&n->raft);
	st->applied_index = raft_last_applied(&n->raft);
	st->last_index = raft_last_index(&n->raft);
	evaluate(n, &st->read_only, st->reason, sizeof st->reason);

	for (i = 0; i < c->n && st->n_members < OPD_NODE_MAX_MEMBERS; i++) {
		const struct raft_server *s = &c->servers[i];
		size_t k = st->n_members++;
		int64_t age = -1;

		st->members[k].id = s->id;
		snprintf(st->members[k].address, sizeof st->members[k].address, "%s", s->address);
		st->members[k].role = role_name(s->role);
		if (s->id == n->raft.id) {
			age = 0;
		} else if (n->closing) {
			age = -1;
		} else if (state == RAFT_LEADER) {
			uint64_t t = result_at(n, s->id);

			if (t != 0)
				age = (int64_t)(now - t);
		} else if (state == RAFT_FOLLOWER && s->id == leader &&
			   n->leader_msg_from == leader && n->leader_msg_at != 0) {
			age = (int64_t)(now - n->leader_msg_at);
		}
		st->members[k].last_contact_ms = age;
	}
}

uint64_t opd_node_term(struct opd_node *n)
{
	return raft_current_term(&n->raft);
}
