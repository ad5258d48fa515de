/*
 * The raft node (raft_fsm/node.c) on real raft_uv I/O: TCP on 127.0.0.1 and
 * data directories under /tmp, every node of a test in this one process and
 * one libuv loop, every wait bounded by a deadline. The FSM is a counter
 * (count and sum of the 8-byte values applied) so these tests do not depend
 * on the sqlite state machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "fsm.h"
#include "node.h"

#define ET 500 /* election timeout, ms */
#define HB 50  /* heartbeat, ms: W = 150 ms */
#define W (3 * HB)
#define MAXN 4

/* ---- the counting FSM ---------------------------------------------------- */

struct tfsm {
	struct opd_fsm f; /* first: raft.data points here */
	uint64_t count, sum, last_index;
	int index_errors; /* apply saw an index that did not grow */
	int restores;
};

struct snap {
	uint64_t count, sum, index;
};

static int t_apply(struct raft_fsm *rf, const struct raft_buffer *b, void **result)
{
	struct tfsm *t = rf->data;
	uint64_t idx = t->f.next_index != NULL ? t->f.next_index(t->f.index_data) : 0;
	uint64_t v = 0;
	struct opd_apply_result *r;

	if (idx <= t->last_index)
		t->index_errors++;
	t->last_index = idx;
	if (b->len >= 8)
		memcpy(&v, b->base, 8);
	t->count++;
	t->sum += v;
	/* The ring opd_fsm_result (fsm.c) reads for the node's apply callbacks. */
	r = &t->f.results[idx % OPD_FSM_RESULTS];
	memset(r, 0, sizeof *r);
	r->index = idx;
	r->status = OPD_APPLY_OK;
	r->version = v;
	r->created = (int)t->count;
	*result = r;
	return 0;
}

static int t_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct tfsm *t = rf->data;
	struct snap *s;

	*bufs = raft_malloc(sizeof **bufs);
	s = raft_malloc(sizeof *s);
	if (*bufs == NULL || s == NULL) {
		raft_free(*bufs);
		raft_free(s);
		return RAFT_NOMEM;
	}
	*s = (struct snap){t->count, t->sum, t->last_index};
	(*bufs)[0].base = s;
	(*bufs)[0].len = sizeof *s;
	*n_bufs = 1;
	return 0;
}

static int t_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
	struct tfsm *t = rf->data;
	struct snap s;

	if (buf->len != sizeof s)
		return RAFT_MALFORMED;
	memcpy(&s, buf->base, sizeof s);
	raft_free(buf->base);
	t->count = s.count;
	t->sum = s.sum;
	t->last_index = s.index;
	t->restores++;
	return 0;
}

static void tfsm_init(struct tfsm *t)
{
	memset(t, 0, sizeof *t);
	t->f.raft.version = 2;
	t->f.raft.data = &t->f;
	t->f.raft.apply = t_apply;
	t->f.raft.snapshot = t_snapshot;
	t->f.raft.restore = t_restore;
}

/* ---- loop, nodes, waits -------------------------------------------------- */

static uv_loop_t loop;
static uv_timer_t waiter;
static char base_dir[64];
static int ports[MAXN + 1];

struct tnode {
	uint64_t id;
	struct opd_node *n;
	struct tfsm fsm;
	char dir[128];
	char addr[32];
	bool closed;
};
static struct tnode nodes[MAXN + 1]; /* by id, 1..MAXN */

typedef bool (*pred_fn)(void *arg);
struct wait {
	pred_fn pred;
	void *arg;
	uint64_t deadline;
	bool ok;
};

static void wait_tick(uv_timer_t *t)
{
	struct wait *w = t->data;

	if (w->pred(w->arg)) {
		w->ok = true;
		uv_stop(&loop);
	} else if (uv_now(&loop) >= w->deadline) {
		uv_stop(&loop);
	}
}

/* Run the loop until pred holds (checked every 5 ms) or timeout_ms pass. */
static bool run_until(pred_fn pred, void *arg, unsigned timeout_ms)
{
	struct wait w = {pred, arg, 0, false};

	uv_update_time(&loop);
	if (pred(arg))
		return true;
	w.deadline = uv_now(&loop) + timeout_ms;
	waiter.data = &w;
	uv_timer_start(&waiter, wait_tick, 5, 5);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_timer_stop(&waiter);
	return w.ok;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

static void run_for(unsigned ms)
{
	run_until(never, NULL, ms);
}

static void node_setup(uint64_t id, const char *sub)
{
	struct tnode *t = &nodes[id];

	t->id = id;
	snprintf(t->dir, sizeof t->dir, "%s/%s/n%llu", base_dir, sub, (unsigned long long)id);
	snprintf(t->addr, sizeof t->addr, "127.0.0.1:%d", ports[id]);
	t->n = NULL;
	t->closed = true;
}

/* Start node id with the first n_voters nodes as initial voters (0: joins later). */
static void node_start(uint64_t id, size_t n_voters, unsigned threshold, unsigned trailing)
{
	struct tnode *t = &nodes[id];
	struct opd_node_config cfg;
	char errmsg[OPD_ERRMSG_SIZE] = "";
	size_t i;
	int rc;

	opd_node_config_default(&cfg);
	cfg.id = id;
	cfg.address = t->addr;
	cfg.dir = t->dir;
	cfg.election_timeout_ms = ET;
	cfg.heartbeat_ms = HB;
	if (threshold != 0) {
		cfg.snapshot_threshold = threshold;
		cfg.snapshot_trailing = trailing;
	}
	for (i = 0; i < n_voters; i++) {
		cfg.voters[i].id = nodes[i + 1].id;
		/* addr (32 bytes, NUL-terminated) fits: a copy gcc -O2 can see is bounded. */
		memcpy(cfg.voters[i].address, nodes[i + 1].addr, sizeof nodes[i + 1].addr);
		cfg.voters[i].role = RAFT_VOTER;
	}
	cfg.n_voters = n_voters;
	tfsm_init(&t->fsm);
	rc = opd_node_start(&loop, &cfg, &t->fsm.f, &t->n, errmsg);
	if (rc != 0)
		fprintf(stderr, "start %llu: %s\n", (unsigned long long)id, errmsg);
	assert_int_equal(rc, 0);
	t->closed = false;
}

static void on_closed(void *data)
{
	((struct tnode *)data)->closed = true;
}

static bool is_closed(void *arg)
{
	return ((struct tnode *)arg)->closed;
}

static void node_stop(uint64_t id)
{
	struct tnode *t = &nodes[id];

	opd_node_close(t->n, on_closed, t);
	assert_true(run_until(is_closed, t, 5000));
	t->n = NULL;
	/* The FSM no longer points at the freed node. */
	assert_null(t->fsm.f.next_index);
}

static const char *role_of(uint64_t id)
{
	static struct opd_node_status st;

	opd_node_status(nodes[id].n, &st);
	return st.role;
}

static bool is_writable(void *arg)
{
	return opd_node_writable(arg);
}

/* The one writable leader among running nodes, or 0. */
static uint64_t writable_leader(void)
{
	uint64_t id, found = 0;

	for (id = 1; id <= MAXN; id++) {
		if (nodes[id].closed || !opd_node_writable(nodes[id].n))
			continue;
		if (found != 0)
			return 0;
		found = id;
	}
	return found;
}

/* A writable leader and every other running node a follower connected to it. */
static bool settled(void *arg)
{
	struct opd_node_status st;
	uint64_t id, l = writable_leader();

	(void)arg;
	if (l == 0)
		return false;
	for (id = 1; id <= MAXN; id++) {
		if (nodes[id].closed || id == l)
			continue;
		opd_node_status(nodes[id].n, &st);
		if (st.read_only || st.leader_id != l || strcmp(st.role, "follower") != 0)
			return false;
	}
	return true;
}

struct applied_arg {
	uint64_t count;
};

static bool all_applied(void *arg)
{
	const struct applied_arg *a = arg;
	uint64_t id;

	for (id = 1; id <= MAXN; id++)
		if (!nodes[id].closed && nodes[id].fsm.count < a->count)
			return false;
	return true;
}

/* ---- proposals ------------------------------------------------------------ */

struct prop {
	int calls;
	int status;
	bool has_res;
	struct opd_apply_result res;
};

static void on_propose(void *data, int status, const struct opd_apply_result *res)
{
	struct prop *p = data;

	p->calls++;
	p->status = status;
	p->has_res = res != NULL;
	if (res != NULL)
		p->res = *res;
}

static bool prop_done(void *arg)
{
	return ((struct prop *)arg)->calls > 0;
}

static int propose_value(uint64_t id, uint64_t v, struct prop *p)
{
	uint8_t buf[16] = {0};

	memset(p, 0, sizeof *p);
	memcpy(buf, &v, 8);
	return opd_node_propose(nodes[id].n, buf, sizeof buf, on_propose, p);
}

/* An apply callback that closes its node: raft must not be closed from inside itself (§6 #7). */
static void close_from_callback(void *data, int status, const struct opd_apply_result *res)
{
	struct tnode *t = data;

	(void)res;
	assert_int_equal(status, 0);
	opd_node_close(t->n, on_closed, t);
}

/*
 * Propose v on id and wait for a successful callback carrying the FSM's result.
 * Writable first: with a snapshot every few entries raft changes segments
 * often, and the leader is read-only while the next one is being prepared
 * ("leader's log not ready"), for longer on a loaded machine.
 */
static void propose_ok(uint64_t id, uint64_t v)
{
	struct prop p;

	assert_true(run_until(is_writable, nodes[id].n, 5000));
	assert_int_equal(propose_value(id, v, &p), 0);
	assert_true(run_until(prop_done, &p, 5000));
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.status, 0);
	assert_true(p.has_res);
	assert_int_equal(p.res.version, v);
	assert_true(p.res.index > 0);
}

struct change {
	int calls;
	int status;
	char message[OPD_ERRMSG_SIZE];
};

static void on_change(void *data, int status, const char *message)
{
	struct change *c = data;

	c->calls++;
	c->status = status;
	snprintf(c->message, sizeof c->message, "%s", message);
}

static bool change_done(void *arg)
{
	return ((struct change *)arg)->calls > 0;
}

static void wait_change_ok(struct change *c)
{
	assert_true(run_until(change_done, c, 10000));
	printf("  change: status %d, \"%s\"\n", c->status, c->message);
	assert_int_equal(c->calls, 1);
	assert_int_equal(c->status, 0);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_config_refused(void **state)
{
	struct opd_node_config cfg;
	struct opd_node *n = NULL;
	struct tfsm f;
	char errmsg[OPD_ERRMSG_SIZE];
	int fd, port, rc;
	struct sockaddr_in a = {.sin_family = AF_INET};
	char addr[32], dir[128];

	(void)state;
	tfsm_init(&f);
	snprintf(dir, sizeof dir, "%s/refused", base_dir);
	opd_node_config_default(&cfg);
	cfg.id = 0;
	cfg.address = "127.0.0.1:1";
	cfg.dir = dir;
	assert_int_equal(opd_node_start(&loop, &cfg, &f.f, &n, errmsg), OPD_EINVAL);
	cfg.id = 1;
	cfg.voters[0].id = 2;
	snprintf(cfg.voters[0].address, sizeof cfg.voters[0].address, "127.0.0.1:2");
	cfg.n_voters = 1;
	assert_int_equal(opd_node_start(&loop, &cfg, &f.f, &n, errmsg), OPD_EINVAL);
	assert_non_null(strstr(errmsg, "must include"));
	cfg.n_voters = 0;
	cfg.heartbeat_ms = 400; /* W = 1200 ms >= election timeout */
	assert_int_equal(opd_node_start(&loop, &cfg, &f.f, &n, errmsg), OPD_EINVAL);
	cfg.heartbeat_ms = 100;

	/* SIGPIPE at its default would kill the process when a peer goes away. */
	signal(SIGPIPE, SIG_DFL);
	rc = opd_node_start(&loop, &cfg, &f.f, &n, errmsg);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(rc, OPD_EINVAL);
	assert_non_null(strstr(errmsg, "SIGPIPE"));

	/* The raft port is taken: raft_start fails, nothing is leaked. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 1), 0);
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	cfg.address = addr;
	cfg.voters[0].id = 1;
	snprintf(cfg.voters[0].address, sizeof cfg.voters[0].address, "%s", addr);
	cfg.n_voters = 1;
	errmsg[0] = '\0';
	rc = opd_node_start(&loop, &cfg, &f.f, &n, errmsg);
	printf("  port in use: rc %d, \"%s\"\n", rc, errmsg);
	assert_int_equal(rc, OPD_EIO);
	assert_null(n);
	assert_true(errmsg[0] != '\0');
	run_for(100); /* the half-started node is released on the loop */
	assert_null(f.f.next_index);
	close(fd);
}

static void test_single_node(void **state)
{
	struct opd_node_status st;
	struct prop p;
	uint8_t odd[5] = {1, 2, 3, 4, 5};
	uint64_t v;

	(void)state;
	node_setup(1, "single");
	/* A tiny snapshot threshold so that the restart restores a snapshot. */
	node_start(1, 1, 4, 2);
	/*
	 * The only voter elects itself inside raft_start, and may write once raft
	 * has a log segment ready (segment_fill.c writes it first): read-only till
	 * then, and saying why, rather than failing the write with RAFT_NOSPACE.
	 */
	assert_string_equal(role_of(1), "leader");
	opd_node_status(nodes[1].n, &st);
	if (st.read_only)
		assert_non_null(strstr(st.reason, "leader's log not ready"));
	assert_true(run_until(is_writable, nodes[1].n, 5000));

	propose_ok(1, 7);
	assert_int_equal(nodes[1].fsm.count, 1);
	assert_int_equal(nodes[1].fsm.sum, 7);

	/* Not a multiple of 8: refused before raft sees it, the node keeps working. */
	assert_int_equal(opd_node_propose(nodes[1].n, odd, sizeof odd, on_propose, &p), OPD_EINVAL);
	assert_int_equal(opd_node_propose(nodes[1].n, odd, 0, on_propose, &p), OPD_EINVAL);
	for (v = 1; v <= 9; v++)
		propose_ok(1, v * 10);
	assert_int_equal(nodes[1].fsm.count, 10);
	assert_int_equal(nodes[1].fsm.sum, 7 + 450);
	assert_int_equal(nodes[1].fsm.index_errors, 0);

	assert_true(run_until(is_writable, nodes[1].n, 5000)); /* see propose_ok */
	opd_node_status(nodes[1].n, &st);
	assert_int_equal(st.id, 1);
	assert_int_equal(st.leader_id, 1);
	assert_int_equal(st.read_only, 0);
	assert_string_equal(st.reason, "");
	assert_int_equal(st.n_members, 1);
	assert_int_equal(st.members[0].last_contact_ms, 0);
	assert_string_equal(st.members[0].role, "voter");
	assert_true(st.applied_index >= 11); /* bootstrap configuration + 10 commands */
	assert_int_equal(st.applied_index, st.commit_index);
	node_stop(1);

	/* Restart: bootstrap is skipped, the snapshot is restored and the rest replayed. */
	node_start(1, 1, 4, 2);
	assert_string_equal(role_of(1), "leader");
	{
		struct applied_arg a = {10};

		bool ok = run_until(all_applied, &a, 5000);

		opd_node_status(nodes[1].n, &st);
		printf("  restart: count %llu restores %d last %llu; commit %llu applied %llu last "
		       "%llu\n",
		       (unsigned long long)nodes[1].fsm.count, nodes[1].fsm.restores,
		       (unsigned long long)nodes[1].fsm.last_index,
		       (unsigned long long)st.commit_index, (unsigned long long)st.applied_index,
		       (unsigned long long)st.last_index);
		assert_true(ok);
	}
	printf("  restart: %d snapshot restore(s), count %llu sum %llu\n", nodes[1].fsm.restores,
	       (unsigned long long)nodes[1].fsm.count, (unsigned long long)nodes[1].fsm.sum);
	assert_int_equal(nodes[1].fsm.restores, 1);
	assert_int_equal(nodes[1].fsm.count, 10);
	assert_int_equal(nodes[1].fsm.sum, 457);
	assert_int_equal(nodes[1].fsm.index_errors, 0);
	assert_true(run_until(is_writable, nodes[1].n, 5000));
	propose_ok(1, 1000);

	/* A proposal still pending when the node closes is canceled. */
	assert_int_equal(propose_value(1, 5, &p), 0);
	opd_node_close(nodes[1].n, on_closed, &nodes[1]);
	assert_int_equal(
	    opd_node_propose(nodes[1].n, (const uint8_t *)"abcdefgh", 8, on_propose, &p),
	    OPD_ECANCELED);
	/* While closing, the status says so (raft_state() would still say leader, §6 #12). */
	assert_string_equal(role_of(1), "closed");
	assert_true(run_until(is_closed, &nodes[1], 5000));
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.status, OPD_ECANCELED);
	nodes[1].n = NULL;

	/* Closing from inside an apply callback is safe. */
	node_start(1, 1, 4, 2);
	assert_true(run_until(is_writable, nodes[1].n, 5000));
	{
		uint8_t buf[16] = {1};

		assert_int_equal(opd_node_propose(nodes[1].n, buf, sizeof buf, close_from_callback,
						  &nodes[1]),
				 0);
		assert_true(run_until(is_closed, &nodes[1], 5000));
		nodes[1].n = NULL;
	}
}

static void check_members(uint64_t id, uint64_t leader, size_t n)
{
	struct opd_node_status st;
	size_t k;

	opd_node_status(nodes[id].n, &st);
	assert_int_equal(st.n_members, n);
	assert_int_equal(st.leader_id, leader);
	assert_string_equal(st.leader_address, nodes[leader].addr);
	assert_int_equal(st.read_only, 0);
	assert_string_equal(st.reason, "");
	for (k = 0; k < st.n_members; k++) {
		uint64_t m = st.members[k].id;
		int64_t age = st.members[k].last_contact_ms;

		assert_string_equal(st.members[k].address, nodes[m].addr);
		assert_string_equal(st.members[k].role, "voter");
		if (m == id)
			assert_int_equal(age, 0);
		else if (id == leader || m == leader)
			assert_true(age >= 0 && age <= W);
		else
			assert_int_equal(age, -1); /* a follower knows only its leader */
	}
}

static void test_three_nodes(void **state)
{
	struct opd_node_status st;
	struct change c;
	struct prop p;
	uint8_t odd[12] = {0};
	uint64_t id, l, f1, f2, t0, total = 0, sum = 0;

	(void)state;
	for (id = 1; id <= 4; id++)
		node_setup(id, "three");
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	for (id = 1; id <= 3; id++)
		node_start(id, 3, 0, 0);
	assert_true(run_until(settled, NULL, 8000));
	l = writable_leader();
	printf("  leader %llu elected after %llu ms\n", (unsigned long long)l,
	       (unsigned long long)(uv_now(&loop) - t0));
	f1 = l % 3 + 1;
	f2 = f1 % 3 + 1;

	for (id = 1; id <= 3; id++) {
		propose_ok(l, id);
		total++;
		sum += id;
	}
	{
		struct applied_arg a = {total};

		assert_true(run_until(all_applied, &a, 5000));
	}
	for (id = 1; id <= 3; id++) {
		assert_int_equal(nodes[id].fsm.count, total);
		assert_int_equal(nodes[id].fsm.sum, sum);
		assert_int_equal(nodes[id].fsm.index_errors, 0);
	}

	/* A follower refuses at once; its callback never runs. */
	assert_int_equal(propose_value(f1, 99, &p), OPD_ENOTLEADER);
	/* An odd length is refused on the leader, which keeps working. */
	assert_int_equal(opd_node_propose(nodes[l].n, odd, sizeof odd, on_propose, &p), OPD_EINVAL);
	run_for(3 * HB);
	assert_int_equal(p.calls, 0);
	propose_ok(l, 100);
	total++;
	sum += 100;

	/* Status: members, contacts, leader. */
	run_for(2 * HB);
	check_members(l, l, 3);
	check_members(f1, l, 3);
	check_members(f2, l, 3);
	opd_node_status(nodes[f1].n, &st);
	assert_string_equal(st.role, "follower");
	assert_true(st.term >= 1);
	assert_int_equal(st.term, opd_node_term(nodes[l].n));

	/* Membership: a fourth node joins as spare, becomes a voter, is removed. */
	node_start(4, 0, 0, 0);
	memset(&c, 0, sizeof c);
	assert_int_equal(opd_node_add(nodes[f1].n, 4, nodes[4].addr, on_change, &c),
			 OPD_ENOTLEADER);
	assert_int_equal(opd_node_add(nodes[l].n, f1, "127.0.0.1:1", on_change, &c), OPD_ECONFLICT);
	assert_int_equal(opd_node_remove(nodes[l].n, 99, on_change, &c), OPD_ENOTFOUND);
	assert_int_equal(opd_node_add(nodes[l].n, 4, nodes[4].addr, on_change, &c), 0);
	/* One change at a time. */
	assert_int_equal(opd_node_remove(nodes[l].n, f2, on_change, &c), OPD_ECONFLICT);
	wait_change_ok(&c);
	opd_node_status(nodes[l].n, &st);
	assert_int_equal(st.n_members, 4);
	assert_string_equal(st.members[3].role, "spare");
	memset(&c, 0, sizeof c);
	assert_int_equal(opd_node_assign(nodes[l].n, 4, RAFT_VOTER, on_change, &c), 0);
	wait_change_ok(&c);
	{
		struct applied_arg a = {total};

		assert_true(run_until(all_applied, &a, 5000)); /* node 4 caught up */
	}
	assert_int_equal(nodes[4].fsm.count, total);
	opd_node_status(nodes[l].n, &st);
	assert_string_equal(st.members[3].role, "voter");
	memset(&c, 0, sizeof c);
	assert_int_equal(opd_node_remove(nodes[l].n, 4, on_change, &c), 0);
	wait_change_ok(&c);
	node_stop(4);
	opd_node_status(nodes[l].n, &st);
	assert_int_equal(st.n_members, 3);

	/* Leadership transfer to a chosen follower. */
	memset(&c, 0, sizeof c);
	assert_int_equal(opd_node_transfer(nodes[f2].n, f1, on_change, &c), OPD_ENOTLEADER);
	assert_int_equal(opd_node_transfer(nodes[l].n, f2, on_change, &c), 0);
	wait_change_ok(&c);
	assert_true(run_until(settled, NULL, 5000));
	assert_int_equal(writable_leader(), f2);
	l = f2;
	f1 = l % 3 + 1;
	f2 = f1 % 3 + 1;
	propose_ok(l, 1000);
	total++;
	sum += 1000;

	/* Fail-over: close the leader; one of the two others takes over. */
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	node_stop(l);
	assert_true(run_until(settled, NULL, 8000));
	printf("  fail-over: new leader %llu writable %llu ms after the leader closed\n",
	       (unsigned long long)writable_leader(), (unsigned long long)(uv_now(&loop) - t0));
	l = writable_leader();
	assert_true(l == f1 || l == f2);
	propose_ok(l, 10000);
	total++;
	sum += 10000;
	{
		struct applied_arg a = {total};

		assert_true(run_until(all_applied, &a, 5000));
	}

	/* Close the last follower: the leader alone is read-only within about W. */
	id = l == f1 ? f2 : f1;
	run_for(2 * HB);
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	node_stop(id);
	while (opd_node_writable(nodes[l].n) && uv_now(&loop) - t0 < 2000)
		run_for(5);
	opd_node_status(nodes[l].n, &st);
	printf("  quorum lost: read-only after %llu ms (W = %d ms): role %s, \"%s\"\n",
	       (unsigned long long)(uv_now(&loop) - t0), W, st.role, st.reason);
	assert_true(uv_now(&loop) - t0 <= W + HB + 30);
	assert_int_equal(st.read_only, 1);
	/* It is still raft leader (step-down comes after the election timeout). */
	assert_string_equal(st.role, "leader");
	assert_string_equal(st.reason,
			    "leader without quorum: heard from 1 of 3 voters within 150 ms");
	assert_int_equal(propose_value(l, 1, &p), OPD_ENOTLEADER);
	/* After the step-down the reason names the new state. */
	run_for(2 * ET);
	opd_node_status(nodes[l].n, &st);
	printf("  later: role %s, \"%s\"\n", st.role, st.reason);
	assert_int_equal(st.read_only, 1);
	assert_string_not_equal(st.role, "leader");
	assert_true(strncmp(st.reason, st.role, strlen(st.role)) == 0);
	node_stop(l);

	/* Restart all three on their directories: no bootstrap, the log is replayed. */
	for (id = 1; id <= 3; id++)
		node_start(id, 3, 0, 0);
	assert_true(run_until(settled, NULL, 8000));
	{
		struct applied_arg a = {total};

		assert_true(run_until(all_applied, &a, 5000));
	}
	for (id = 1; id <= 3; id++) {
		assert_int_equal(nodes[id].fsm.count, total);
		assert_int_equal(nodes[id].fsm.sum, sum);
		assert_int_equal(nodes[id].fsm.index_errors, 0);
	}
	printf("  restart: %llu entries replayed on each node, sum %llu\n",
	       (unsigned long long)total, (unsigned long long)sum);
	propose_ok(writable_leader(), 5);
	for (id = 1; id <= 3; id++)
		node_stop(id);
}

static int group_setup(void **state)
{
	int i;

	(void)state;
	signal(SIGPIPE, SIG_IGN); /* as the daemon does: raft.md §6 #5 */
	snprintf(base_dir, sizeof base_dir, "/tmp/opd-node-XXXXXX");
	if (mkdtemp(base_dir) == NULL)
		return -1;
	if (opd_test_free_ports(ports + 1, MAXN) != 0)
		return -1;
	for (i = 1; i <= MAXN; i++)
		nodes[i].closed = true;
	uv_loop_init(&loop);
	uv_timer_init(&loop, &waiter);
	return 0;
}

static bool all_closed(void *arg)
{
	int i;

	(void)arg;
	for (i = 1; i <= MAXN; i++)
		if (!nodes[i].closed)
			return false;
	return true;
}

static int group_teardown(void **state)
{
	char cmd[128];
	int i;

	(void)state;
	/* Nodes a failed test left running. */
	for (i = 1; i <= MAXN; i++)
		if (!nodes[i].closed)
			opd_node_close(nodes[i].n, on_closed, &nodes[i]);
	if (!run_until(all_closed, NULL, 5000))
		return -1;
	uv_close((uv_handle_t *)&waiter, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		return -1; /* a handle was left open */
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_refused),
	    cmocka_unit_test(test_single_node),
	    cmocka_unit_test(test_three_nodes),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
