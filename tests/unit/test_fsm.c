/*
 * fsm: the replicated state machine, applied directly and through raft's
 * in-memory fixture (1, 3 and 5 nodes, a partitioned leader, InstallSnapshot).
 * Every replica must end with the same logical dump.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "buf.h"
#include "cmd.h"
#include "config_hash.h"
#include "fsm.h"
#include "store.h"

/* ---- the command script ---------------------------------------------- */

enum { SCRIPT_LEN = 17 };

struct expect {
	enum opd_apply_status status;
	uint64_t version;
	int created;
};

/* What each command of the script must produce, in order, on a fresh store. */
static const struct expect want[SCRIPT_LEN] = {
    {OPD_APPLY_OK, 0, 0},        /* 0 add key k1 (active) */
    {OPD_APPLY_OK, 1, 1},        /* 1 put alpha v1 (signed) */
    {OPD_APPLY_OK, 1, 1},        /* 2 put beta v1 */
    {OPD_APPLY_OK, 2, 1},        /* 3 put alpha v2 */
    {OPD_APPLY_CONFLICT, 2, 0},  /* 4 put alpha v2 again: not latest + 1 */
    {OPD_APPLY_DUPLICATE, 1, 0}, /* 5 request id of 1 again */
    {OPD_APPLY_OK, 1, 0},        /* 6 set active alpha 1 */
    {OPD_APPLY_OK, 0, 0},        /* 7 set selector beta: priority 5 */
    {OPD_APPLY_NOT_FOUND, 0, 0}, /* 8 delete gamma */
    {OPD_APPLY_INVALID, 3, 0},   /* 9 put alpha v3 with a wrong hash */
    {OPD_APPLY_OK, 0, 0},        /* 10 set member 1 */
    {OPD_APPLY_OK, 1, 0},        /* 11 put alpha v3 = the active v1: nothing written */
    {OPD_APPLY_OK, 0, 0},        /* 12 retire k1 */
    {OPD_APPLY_NOT_FOUND, 0, 0}, /* 13 remove member 9 */
    {OPD_APPLY_INVALID, 0, 0},   /* 14 bytes that do not decode */
    {OPD_APPLY_OK, 0, 0},        /* 15 delete beta */
    {OPD_APPLY_INVALID, 0, 0},   /* 16 no operation */
};

/* Commands that changed something (changed() must run for these only). */
static int changes(size_t k)
{
	return want[k].status == OPD_APPLY_OK && !(k == 11);
}

static void encode_put(Opampd__V1__Command *cmd, const char *name, uint64_t version,
		       const char *body, int bad_hash, struct opd_buf *out)
{
	Opampd__V1__PutVersion pv = OPAMPD__V1__PUT_VERSION__INIT;
	Opampd__V1__File f1 = OPAMPD__V1__FILE__INIT, f2 = OPAMPD__V1__FILE__INIT;
	Opampd__V1__File *files[2] = {&f1, &f2};
	Opampd__V1__Pair pair = OPAMPD__V1__PAIR__INIT;
	Opampd__V1__Pair *pairs[1] = {&pair};
	struct opd_files of;
	uint8_t hash[OPD_CONFIG_HASH_LEN], sig[64];

	f1.name = "a.yaml";
	f1.content_type = "text/yaml";
	f1.body = (ProtobufCBinaryData){.len = strlen(body), .data = (uint8_t *)body};
	f2.name = "b.txt";
	f2.content_type = "text/plain";
	pair.key = "service.name";
	pair.value = (char *)name;
	opd_files_init(&of);
	opd_files_add(&of, f1.name, f1.content_type, body, strlen(body));
	opd_files_add(&of, f2.name, f2.content_type, "", 0);
	opd_config_hash(&of, hash);
	opd_files_fini(&of);
	hash[0] ^= (uint8_t)(bad_hash != 0);
	memset(sig, (int)version, sizeof sig);
	pv.name = (char *)name;
	pv.selector = pairs;
	pv.n_selector = 1;
	pv.priority = 1;
	pv.files = files;
	pv.n_files = 2;
	pv.config_hash = (ProtobufCBinaryData){.len = sizeof hash, .data = hash};
	pv.message = "publish";
	pv.version = version;
	pv.signature = (ProtobufCBinaryData){.len = sizeof sig, .data = sig};
	pv.key_id = "k1";
	cmd->op_case = OPAMPD__V1__COMMAND__OP_PUT_VERSION;
	cmd->put_version = &pv;
	assert_int_equal(opd_cmd_encode(cmd, out), 0);
}

/* Append the framed k-th command of the script to out. */
static void script(size_t k, struct opd_buf *out)
{
	Opampd__V1__Command cmd = OPAMPD__V1__COMMAND__INIT;
	uint8_t rid[16], pk[32];

	memset(rid, 0, sizeof rid);
	rid[0] = (uint8_t)(k == 5 ? 1 : k); /* 5 repeats the request id of 1 */
	rid[15] = 0xee;
	memset(pk, 0x42, sizeof pk);
	cmd.request_id = (ProtobufCBinaryData){.len = sizeof rid, .data = rid};
	cmd.hlc_wall_ms = 1000 + k;
	cmd.hlc_logical = (uint32_t)k % 3;
	cmd.actor = "alice";
	cmd.term = 1;
	switch (k) {
	case 0: {
		Opampd__V1__AddSigningKey m = OPAMPD__V1__ADD_SIGNING_KEY__INIT;
		m.key_id = "k1";
		m.public_key = (ProtobufCBinaryData){.len = sizeof pk, .data = pk};
		m.activate = 1;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_ADD_SIGNING_KEY;
		cmd.add_signing_key = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 1:
	case 5:
		encode_put(&cmd, "alpha", 1, "x: 1\n", 0, out);
		return;
	case 2:
		encode_put(&cmd, "beta", 1, "y: 1\n", 0, out);
		return;
	case 3:
	case 4:
		encode_put(&cmd, "alpha", 2, "x: 2\n", 0, out);
		return;
	case 6: {
		Opampd__V1__SetActive m = OPAMPD__V1__SET_ACTIVE__INIT;
		m.name = "alpha";
		m.version = 1;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_SET_ACTIVE;
		cmd.set_active = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 7: {
		Opampd__V1__SetSelector m = OPAMPD__V1__SET_SELECTOR__INIT;
		m.name = "beta";
		m.priority = 5;
		m.has_priority = 1;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_SET_SELECTOR;
		cmd.set_selector = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 8:
	case 15: {
		Opampd__V1__DeleteConfig m = OPAMPD__V1__DELETE_CONFIG__INIT;
		m.name = k == 8 ? "gamma" : "beta";
		cmd.op_case = OPAMPD__V1__COMMAND__OP_DELETE_CONFIG;
		cmd.delete_config = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 9:
		encode_put(&cmd, "alpha", 3, "x: 3\n", 1, out);
		return;
	case 10: {
		Opampd__V1__SetMember m = OPAMPD__V1__SET_MEMBER__INIT;
		m.id = 1;
		m.raft_address = "10.0.0.1:9000";
		m.admin_url = "https://10.0.0.1:8443";
		cmd.op_case = OPAMPD__V1__COMMAND__OP_SET_MEMBER;
		cmd.set_member = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 11:
		encode_put(&cmd, "alpha", 3, "x: 1\n", 0, out);
		return;
	case 12: {
		Opampd__V1__RetireSigningKey m = OPAMPD__V1__RETIRE_SIGNING_KEY__INIT;
		m.key_id = "k1";
		cmd.op_case = OPAMPD__V1__COMMAND__OP_RETIRE_SIGNING_KEY;
		cmd.retire_signing_key = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 13: {
		Opampd__V1__RemoveMember m = OPAMPD__V1__REMOVE_MEMBER__INIT;
		m.id = 9;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_REMOVE_MEMBER;
		cmd.remove_member = &m;
		assert_int_equal(opd_cmd_encode(&cmd, out), 0);
		return;
	}
	case 14: {
		uint8_t junk[24];
		memset(junk, 0xff, sizeof junk); /* a length over the buffer */
		opd_buf_append(out, junk, sizeof junk);
		return;
	}
	default:
		assert_int_equal(opd_cmd_encode(&cmd, out), 0); /* no op set */
		return;
	}
}

/* A command the tests propose besides the script: put name v<version> with unique ids. */
static void extra_put(const char *name, uint64_t version, unsigned id, struct opd_buf *out)
{
	Opampd__V1__Command cmd = OPAMPD__V1__COMMAND__INIT;
	uint8_t rid[16];
	char body[32];

	memset(rid, 0, sizeof rid);
	rid[0] = 0xaa;
	rid[1] = (uint8_t)id;
	rid[2] = (uint8_t)(id >> 8);
	cmd.request_id = (ProtobufCBinaryData){.len = sizeof rid, .data = rid};
	cmd.hlc_wall_ms = 5000 + id;
	cmd.actor = "bob";
	cmd.term = 2;
	snprintf(body, sizeof body, "n: %u\n", id);
	encode_put(&cmd, name, version, body, 0, out);
}

/* ---- a replica: store + fsm ------------------------------------------- */

struct node {
	struct opd_store store;
	struct opd_fsm fsm;
	struct raft_fixture *f; /* NULL: apply is called directly */
	unsigned i;
	uint64_t next; /* direct mode: the index of the next apply */
	int changed;
	int restored;
};

static uint64_t fixture_next(void *data)
{
	struct node *n = data;

	return raft_last_applied(raft_fixture_get(n->f, n->i)) + 1;
}

static uint64_t direct_next(void *data)
{
	struct node *n = data;

	return n->next++;
}

static void on_changed(void *data, const struct opd_apply_result *res)
{
	struct node *n = data;

	/* NULL: a snapshot replaced the store (counted apart from applied commands). */
	if (res == NULL) {
		n->restored++;
		return;
	}
	assert_int_equal(res->status, OPD_APPLY_OK);
	n->changed++;
}

/* A state machine over n's open store, with n's hooks. */
static void fsm_attach(struct node *n)
{
	assert_int_equal(opd_fsm_init(&n->fsm, &n->store), 0);
	n->fsm.next_index = n->f ? fixture_next : direct_next;
	n->fsm.index_data = n;
	n->fsm.changed = on_changed;
	n->fsm.changed_data = n;
}

/* A replica over a store at path (":memory:" for most tests). */
static void node_init_at(struct node *n, struct raft_fixture *f, unsigned i, const char *path)
{
	memset(n, 0, sizeof *n);
	if (opd_store_open(&n->store, path) != 0)
		fail_msg("open: %s", opd_store_errmsg(&n->store));
	n->f = f;
	n->i = i;
	n->next = 1;
	fsm_attach(n);
}

static void node_init(struct node *n, struct raft_fixture *f, unsigned i)
{
	node_init_at(n, f, i, ":memory:");
}

static void node_fini(struct node *n)
{
	opd_fsm_fini(&n->fsm);
	opd_store_close(&n->store);
}

static char *dump(struct node *n)
{
	struct opd_buf b;
	size_t len;

	opd_buf_init(&b);
	if (opd_store_dump(&n->store, &b) != 0)
		fail_msg("dump: %s", opd_store_errmsg(&n->store));
	opd_buf_append_byte(&b, '\0');
	return (char *)opd_buf_steal(&b, &len);
}

static void assert_same_dump(struct node *a, struct node *b)
{
	char *da = dump(a), *db = dump(b);

	assert_string_equal(da, db);
	free(da);
	free(db);
}

/* Call the FSM's apply as raft would, for the command bytes in p. */
static const struct opd_apply_result *apply_direct(struct node *n, const void *p, size_t len)
{
	struct raft_buffer buf = {.base = (void *)p, .len = len};
	void *result = NULL;

	assert_int_equal(n->fsm.raft.apply(&n->fsm.raft, &buf, &result), 0);
	return result;
}

static void check_result(const struct opd_apply_result *r, size_t k)
{
	assert_non_null(r);
	if (r->status != want[k].status)
		fail_msg("command %zu: status %d, want %d (%s)", k, r->status, want[k].status,
			 r->message);
	assert_int_equal(r->version, want[k].version);
	assert_int_equal(r->created, want[k].created);
}

static void apply_script_direct(struct node *n)
{
	for (size_t k = 0; k < SCRIPT_LEN; k++) {
		struct opd_buf b;
		uint64_t index = n->next;

		opd_buf_init(&b);
		script(k, &b);
		const struct opd_apply_result *r =
		    apply_direct(n, opd_buf_rptr(&b), opd_buf_avail(&b));
		check_result(r, k);
		assert_int_equal(r->index, index);
		assert_ptr_equal(r, opd_fsm_result(&n->fsm, index));
		assert_int_equal(opd_fsm_applied_index(&n->fsm), index);
		opd_buf_fini(&b);
	}
}

/* ---- fixture helpers --------------------------------------------------- */

static void quiet_emit(struct raft_tracer *t, int type, const void *info)
{
	(void)t;
	(void)type;
	(void)info;
}

static struct raft_tracer quiet = {.impl = NULL, .version = 2, .emit = quiet_emit};

struct cluster {
	struct raft_fixture f;
	struct node nodes[5];
	unsigned n;
};

static void cluster_start(struct cluster *c, unsigned n, unsigned threshold, unsigned trailing)
{
	struct raft_configuration conf;

	c->n = n;
	assert_int_equal(raft_fixture_initialize(&c->f), 0);
	for (unsigned i = 0; i < n; i++) {
		node_init(&c->nodes[i], &c->f, i);
		assert_int_equal(raft_fixture_grow(&c->f, &c->nodes[i].fsm.raft), 0);
		struct raft *r = raft_fixture_get(&c->f, i);
		r->tracer = &quiet;
		raft_set_pre_vote(r, true);
		raft_set_snapshot_threshold(r, threshold);
		raft_set_snapshot_trailing(r, trailing);
	}
	assert_int_equal(raft_fixture_configuration(&c->f, n, &conf), 0);
	assert_int_equal(raft_fixture_bootstrap(&c->f, &conf), 0);
	raft_configuration_close(&conf);
	assert_int_equal(raft_fixture_start(&c->f), 0);
	assert_true(raft_fixture_step_until_has_leader(&c->f, 10000));
}

static void cluster_stop(struct cluster *c)
{
	raft_fixture_close(&c->f);
	for (unsigned i = 0; i < c->n; i++)
		node_fini(&c->nodes[i]);
}

/* One proposal in flight: its status and a copy of the result. */
struct proposal {
	struct raft_apply req;
	int done;
	int status;
	struct opd_apply_result res;
};

static void proposal_cb(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = req->data;

	p->done = 1;
	p->status = status;
	if (status == 0 && result != NULL)
		p->res = *(const struct opd_apply_result *)result;
}

/* Propose framed bytes on server i (copied into raft_malloc memory). 0 or the raft error. */
static int propose(struct cluster *c, unsigned i, struct opd_buf *b, struct proposal *p)
{
	struct raft_buffer buf;
	int rc;

	assert_int_equal(opd_buf_avail(b) % 8, 0); /* the fixture does not check (raft.md §6 #1) */
	buf.len = opd_buf_avail(b);
	buf.base = raft_malloc(buf.len);
	assert_non_null(buf.base);
	memcpy(buf.base, opd_buf_rptr(b), buf.len);
	memset(p, 0, sizeof *p);
	p->req.data = p;
	rc = raft_apply(raft_fixture_get(&c->f, i), &p->req, &buf, 1, proposal_cb);
	if (rc != 0)
		raft_free(buf.base);
	return rc;
}

static bool all_done(struct raft_fixture *f, void *arg)
{
	struct proposal *p = arg;

	(void)f;
	for (; p->req.data != NULL; p++)
		if (!p->done)
			return false;
	return true;
}

/* Apply script[from..to) through the leader; props has room for to - from + 1 (terminator). */
/* A server in the leader state other than skip, or c->n. */
static unsigned leader_except(struct cluster *c, unsigned skip)
{
	for (unsigned i = 0; i < c->n; i++)
		if (i != skip && raft_state(raft_fixture_get(&c->f, i)) == RAFT_LEADER)
			return i;
	return c->n;
}

static void propose_script(struct cluster *c, size_t from, size_t to, struct proposal *props,
			   unsigned skip)
{
	unsigned l = leader_except(c, skip);

	assert_true(l < c->n);
	for (size_t k = from; k < to; k++) {
		struct opd_buf b;

		opd_buf_init(&b);
		script(k, &b);
		assert_int_equal(propose(c, l, &b, &props[k - from]), 0);
		opd_buf_fini(&b);
	}
	memset(&props[to - from], 0, sizeof props[0]);
	assert_true(raft_fixture_step_until(&c->f, all_done, props, 10000));
	for (size_t k = from; k < to; k++) {
		assert_int_equal(props[k - from].status, 0);
		check_result(&props[k - from].res, k);
	}
}

struct converge_arg {
	struct cluster *c;
	unsigned skip; /* a server not to wait for, or c->n */
};

/* Every (considered) server has applied everything the leader committed. */
static bool converged(struct raft_fixture *f, void *arg)
{
	struct converge_arg *a = arg;
	unsigned l = leader_except(a->c, a->skip);
	raft_index commit;

	(void)f;
	if (l >= a->c->n)
		return false;
	commit = raft_commit_index(raft_fixture_get(f, l));
	for (unsigned i = 0; i < a->c->n; i++)
		if (i != a->skip && raft_last_applied(raft_fixture_get(f, i)) < commit)
			return false;
	return true;
}

static void step_until_converged(struct cluster *c, unsigned skip)
{
	struct converge_arg a = {c, skip};

	assert_true(raft_fixture_step_until(&c->f, converged, &a, 20000));
}

/* ---- tests -------------------------------------------------------------- */

/* (a) The script on fresh stores gives the same results and dump; replays change nothing. */
static void test_deterministic_direct(void **state)
{
	struct node a, b;
	char *before, *after;

	(void)state;
	node_init(&a, NULL, 0);
	node_init(&b, NULL, 0);
	a.next = b.next = 3;
	apply_script_direct(&a);
	apply_script_direct(&b);
	assert_same_dump(&a, &b);
	for (size_t k = 0; k < SCRIPT_LEN; k++)
		a.changed -= changes(k);
	assert_int_equal(a.changed, 0);

	/* Replaying indexes 3..19 (a restart before the store was snapshotted) is a no-op. */
	before = dump(&a);
	a.next = 3;
	a.changed = 0;
	for (size_t k = 0; k < SCRIPT_LEN; k++) {
		struct opd_buf buf;

		opd_buf_init(&buf);
		script(k, &buf);
		const struct opd_apply_result *r =
		    apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf));
		check_result(r, k); /* the kept result of the first application */
		opd_buf_fini(&buf);
	}
	assert_int_equal(a.changed, 0);
	after = dump(&a);
	assert_string_equal(before, after);
	assert_non_null(strstr(after, "row 'applied_index' 19\n"));
	/* The HLC of the last command (1016, 16 % 3) is stored. */
	assert_non_null(strstr(after, "row 'hlc_wall_ms' 1016\n"));
	assert_non_null(strstr(after, "row 'hlc_logical' 1\n"));
	assert_int_equal(a.fsm.hlc.wall_ms, 1016);
	/* Refusals are in the audit trail, successes too. */
	assert_non_null(
	    strstr(after, "'alice' 'refused' 'alpha' 2 'put: version 2 is not the next one'"));
	assert_non_null(strstr(after, "'alice' 'key-retire' 'k1'"));
	/* The signed fields are stored with the version. */
	assert_non_null(strstr(after, "'k1' 1 "));
	free(before);
	free(after);

	/* An index past the stored one applies again (and duplicates are caught by request id). */
	struct opd_buf buf;
	opd_buf_init(&buf);
	script(1, &buf);
	a.next = 20;
	const struct opd_apply_result *r =
	    apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf));
	assert_int_equal(r->status, OPD_APPLY_DUPLICATE);
	assert_int_equal(r->version, 1);
	assert_int_equal(opd_fsm_applied_index(&a.fsm), 20);
	opd_buf_fini(&buf);

	/* A name no leader accepts is refused, and the index still advances. */
	opd_buf_init(&buf);
	extra_put("../etc", 1, 7, &buf);
	a.next = 21;
	r = apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf));
	assert_int_equal(r->status, OPD_APPLY_INVALID);
	assert_int_equal(opd_fsm_applied_index(&a.fsm), 21);
	opd_buf_fini(&buf);

	/* A new fsm over the same store starts from what is stored. */
	struct opd_fsm again;
	assert_int_equal(opd_fsm_init(&again, &a.store), 0);
	assert_int_equal(opd_fsm_applied_index(&again), 21);
	/* The duplicate's older HLC (1001) did not move the stored one back; 5007 did. */
	assert_int_equal(again.hlc.wall_ms, 5007);
	assert_int_equal(again.hlc.logical, 0);
	opd_fsm_fini(&again);

	node_fini(&a);
	node_fini(&b);
}

/*
 * Group commit: with batch_max 8 the 17 commands share three transactions.
 * Reads see the open one; a crash (the connection closed without a flush)
 * loses only the open batch, which a replay applies again; a snapshot
 * flushes first.
 */
static void test_group_commit(void **state)
{
	char dir[] = "/tmp/opd-fsm-XXXXXX", path[64];
	struct node a, b;
	struct raft_buffer *bufs = NULL;
	unsigned n_bufs = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);
	node_init(&b, NULL, 0);
	b.next = 3;
	apply_script_direct(&b); /* indexes 3..19, one commit each */

	node_init_at(&a, NULL, 0, path);
	a.fsm.batch_max = 8;
	a.next = 3;
	apply_script_direct(&a);
	assert_int_equal(a.fsm.batch_len, 1); /* 3..10 and 11..18 committed, 19 open */
	assert_same_dump(&a, &b);

	/* Another connection sees only what was committed. */
	struct opd_store other;
	uint64_t index, wall;
	uint32_t logical;
	assert_int_equal(opd_store_open(&other, path), 0);
	assert_int_equal(opd_store_get_applied(&other, &index, &wall, &logical), 0);
	assert_int_equal(index, 18);
	opd_store_close(&other);

	/* Crash: the open transaction is rolled back; the replay skips 3..18 and applies 19. */
	opd_store_close(&a.store);
	assert_int_equal(opd_store_open(&a.store, path), 0);
	fsm_attach(&a);
	a.fsm.batch_max = 8;
	assert_int_equal(opd_fsm_applied_index(&a.fsm), 18);
	a.next = 3;
	a.changed = 0;
	for (size_t k = 0; k < SCRIPT_LEN; k++) {
		struct opd_buf buf;

		opd_buf_init(&buf);
		script(k, &buf);
		apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf));
		opd_buf_fini(&buf);
	}
	assert_int_equal(a.changed, changes(SCRIPT_LEN - 1)); /* only index 19 applied again */
	assert_int_equal(a.fsm.batch_len, 1);
	assert_same_dump(&a, &b);

	/* A snapshot covers the open batch: it commits it first. */
	assert_int_equal(a.fsm.raft.snapshot(&a.fsm.raft, &bufs, &n_bufs), 0);
	assert_int_equal(a.fsm.batch_len, 0);
	assert_int_equal(opd_store_open(&other, path), 0);
	assert_int_equal(opd_store_get_applied(&other, &index, &wall, &logical), 0);
	assert_int_equal(index, 19);
	opd_store_close(&other);
	assert_int_equal(a.fsm.raft.snapshot_finalize(&a.fsm.raft, &bufs, &n_bufs), 0);

	node_fini(&a);
	node_fini(&b);
	unlink(path);
	snprintf(path, sizeof path, "%s/store.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/store.db-shm", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* Snapshots by size: the entries since the last one hold about its bytes, within bounds. */
static void test_snapshot_policy(void **state)
{
	struct opd_fsm f = {0};
	unsigned threshold, trailing;

	(void)state;
	opd_fsm_snapshot_policy(&f, &threshold, &trailing); /* nothing yet: 4 KiB, the floor */
	assert_int_equal(threshold, OPD_FSM_SNAPSHOT_MIN_BYTES / 4096);
	assert_int_equal(trailing, 8192);
	f.applied_entries = 1000;
	f.applied_bytes = 1000 * 4500;
	f.snapshot_bytes = 200u << 20; /* as many bytes of entries as the store has */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, (200u << 20) / 4500);
	f.snapshot_bytes = 900u << 20; /* a large store: the ceiling */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, OPD_FSM_SNAPSHOT_MAX_BYTES / 4500);
	assert_int_equal(trailing, (32u << 20) / 4500);
	f.snapshot_bytes = 100u << 20; /* a smaller one: as many bytes as it has */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, (100u << 20) / 4500);
	f.snapshot_bytes = 2u << 20; /* a small store: the floor */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, OPD_FSM_SNAPSHOT_MIN_BYTES / 4500);
	f.applied_bytes = 1000ull << 20; /* 1 MiB entries: the floors */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, OPD_FSM_SNAPSHOT_MIN_ENTRIES);
	assert_int_equal(trailing, 1024);
	f.applied_bytes = 1000 * 100; /* 100-byte entries: the ceilings */
	opd_fsm_snapshot_policy(&f, &threshold, &trailing);
	assert_int_equal(threshold, OPD_FSM_SNAPSHOT_MAX_ENTRIES);
	assert_int_equal(trailing, 8192);
}

/* (a) Through a 1-node raft: same results, and the same dump as direct calls at the same indexes.
 */
static void test_deterministic_raft_vs_direct(void **state)
{
	struct cluster *c = calloc(1, sizeof *c);
	struct proposal *props = calloc(SCRIPT_LEN + 1, sizeof *props);
	struct node d;

	(void)state;
	assert_non_null(c);
	assert_non_null(props);
	cluster_start(c, 1, 1024, 8192);
	propose_script(c, 0, SCRIPT_LEN, props, c->n);
	int changed = 0;
	for (size_t k = 0; k < SCRIPT_LEN; k++)
		changed += changes(k);
	assert_int_equal(c->nodes[0].changed, changed);

	/* The commands got consecutive indexes; apply them directly from the same first one. */
	node_init(&d, NULL, 0);
	d.next = props[0].req.index;
	for (size_t k = 1; k < SCRIPT_LEN; k++)
		assert_int_equal(props[k].req.index, props[0].req.index + k);
	apply_script_direct(&d);
	assert_same_dump(&c->nodes[0], &d);
	node_fini(&d);
	cluster_stop(c);
	free(props);
	free(c);
}

/* (b) snapshot → restore into a fresh store gives the same dump; bad images are refused. */
static void test_snapshot_restore_direct(void **state)
{
	struct node a, b;
	struct raft_buffer *bufs = NULL, img;
	unsigned n = 0;

	(void)state;
	node_init(&a, NULL, 0);
	node_init(&b, NULL, 0);
	apply_script_direct(&a);
	assert_int_equal(a.fsm.raft.snapshot(&a.fsm.raft, &bufs, &n), 0);
	assert_int_equal(n, 1);
	assert_ptr_equal(bufs[0].base, a.fsm.snapshot);
	/* A second snapshot while one is in flight is refused (raft retries later). */
	struct raft_buffer *bufs2 = NULL;
	unsigned n2 = 0;
	assert_int_not_equal(a.fsm.raft.snapshot(&a.fsm.raft, &bufs2, &n2), 0);

	/* Garbage: refused, b untouched, the buffer still the caller's. */
	char *empty = dump(&b);
	img.len = 4096;
	img.base = raft_malloc(img.len);
	memset(img.base, 0x5a, img.len);
	assert_int_not_equal(b.fsm.raft.restore(&b.fsm.raft, &img), 0);
	raft_free(img.base);
	char *still = dump(&b);
	assert_string_equal(empty, still);
	free(empty);
	free(still);

	/* restore owns (raft_frees) the buffer on success. */
	img.len = bufs[0].len;
	img.base = raft_malloc(img.len);
	memcpy(img.base, bufs[0].base, img.len);
	assert_int_equal(a.fsm.raft.snapshot_finalize(&a.fsm.raft, &bufs, &n), 0);
	assert_null(a.fsm.snapshot);
	assert_int_equal(b.restored, 0); /* the garbage restore above changed nothing */
	assert_int_equal(b.fsm.raft.restore(&b.fsm.raft, &img), 0);
	/* Whoever serves the store hears that all of it changed. */
	assert_int_equal(b.restored, 1);
	assert_same_dump(&a, &b);
	assert_int_equal(opd_fsm_applied_index(&b.fsm), opd_fsm_applied_index(&a.fsm));
	assert_int_equal(opd_hlc_compare(b.fsm.hlc, a.fsm.hlc), 0);

	/* Both continue identically. */
	struct opd_buf buf;
	opd_buf_init(&buf);
	extra_put("alpha", 3, 1, &buf);
	a.next = b.next = 100;
	assert_int_equal(apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf))->status,
			 OPD_APPLY_OK);
	assert_int_equal(apply_direct(&b, opd_buf_rptr(&buf), opd_buf_avail(&buf))->status,
			 OPD_APPLY_OK);
	assert_same_dump(&a, &b);
	opd_buf_fini(&buf);
	node_fini(&a);
	node_fini(&b);
}

static bool installed_snapshot(struct raft_fixture *f, void *arg)
{
	unsigned *i = arg;

	return raft_fixture_n_recv(f, *i, RAFT_INSTALL_SNAPSHOT) > 0;
}

/* (b) A follower that lags past the trailing entries catches up by InstallSnapshot. */
static void test_snapshot_install(void **state)
{
	struct cluster *c = calloc(1, sizeof *c);
	struct proposal *props = calloc(SCRIPT_LEN + 1, sizeof *props);
	struct proposal more[41];
	unsigned l, lag;

	(void)state;
	assert_non_null(c);
	assert_non_null(props);
	/*
	 * A low threshold so that snapshots happen, with trailing >= threshold:
	 * a follower only slightly behind is then sent entries, never a snapshot
	 * while it may be writing its own (that crashes 0.22.1, raft.md §6 #3).
	 * Only the follower cut off below lags by more than `trailing`.
	 */
	cluster_start(c, 3, 8, 8);
	l = raft_fixture_leader_index(&c->f);
	lag = (l + 1) % 3;
	propose_script(c, 0, 4, props, c->n);
	step_until_converged(c, 3);

	for (unsigned j = 0; j < 3; j++) {
		if (j != lag) {
			raft_fixture_disconnect(&c->f, lag, j);
			raft_fixture_disconnect(&c->f, j, lag);
		}
	}
	/* Enough entries to snapshot and truncate past what lag has. */
	for (unsigned k = 0; k < 40; k++) {
		struct opd_buf b;

		opd_buf_init(&b);
		extra_put("many", k + 1, k, &b);
		assert_int_equal(propose(c, l, &b, &more[k]), 0);
		opd_buf_fini(&b);
	}
	memset(&more[40], 0, sizeof more[40]);
	assert_true(raft_fixture_step_until(&c->f, all_done, more, 20000));
	for (unsigned k = 0; k < 40; k++) {
		assert_int_equal(more[k].status, 0);
		assert_int_equal(more[k].res.status, OPD_APPLY_OK);
	}
	assert_int_equal(raft_fixture_n_recv(&c->f, lag, RAFT_INSTALL_SNAPSHOT), 0);

	for (unsigned j = 0; j < 3; j++) {
		raft_fixture_reconnect(&c->f, lag, j);
		raft_fixture_reconnect(&c->f, j, lag);
	}
	assert_true(raft_fixture_step_until(&c->f, installed_snapshot, &lag, 20000));
	step_until_converged(c, 3);
	for (unsigned i = 1; i < 3; i++)
		assert_same_dump(&c->nodes[0], &c->nodes[i]);
	char *d = dump(&c->nodes[lag]);
	assert_non_null(strstr(d, "row 'many' 40 "));
	free(d);
	cluster_stop(c);
	free(props);
	free(c);
}

struct new_leader_arg {
	struct cluster *c;
	unsigned old;
};

static bool other_leader(struct raft_fixture *f, void *arg)
{
	struct new_leader_arg *a = arg;

	(void)f;
	return leader_except(a->c, a->old) < a->c->n;
}

/* (c, d) 1, 3 and 5 nodes: identical dumps; a partitioned leader commits nothing; healing
 * converges. */
static void test_cluster_sizes(void **state)
{
	static const unsigned sizes[] = {1, 3, 5};

	(void)state;
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		struct cluster *c = calloc(1, sizeof *c);
		struct proposal *props = calloc(SCRIPT_LEN + 1, sizeof *props);
		struct proposal lost[2];
		unsigned n = sizes[s], old;
		char *isolated;

		assert_non_null(c);
		assert_non_null(props);
		cluster_start(c, n, 1024, 8192);
		propose_script(c, 0, 8, props, c->n);
		step_until_converged(c, n);
		for (unsigned i = 1; i < n; i++)
			assert_same_dump(&c->nodes[0], &c->nodes[i]);
		if (n == 1) {
			propose_script(c, 8, SCRIPT_LEN, props, c->n);
			cluster_stop(c);
			free(props);
			free(c);
			continue;
		}

		/* Cut the leader off in both directions and propose on it. */
		old = raft_fixture_leader_index(&c->f);
		for (unsigned j = 0; j < n; j++) {
			if (j != old) {
				raft_fixture_disconnect(&c->f, old, j);
				raft_fixture_disconnect(&c->f, j, old);
			}
		}
		isolated = dump(&c->nodes[old]);
		struct opd_buf b;
		opd_buf_init(&b);
		extra_put("partitioned", 1, 1, &b);
		assert_int_equal(propose(c, old, &b, &lost[0]), 0);
		opd_buf_fini(&b);
		memset(&lost[1], 0, sizeof lost[1]);

		/* The majority elects a new leader and commits the rest of the script. */
		struct new_leader_arg nl = {c, old};
		assert_true(raft_fixture_step_until(&c->f, other_leader, &nl, 10000));
		propose_script(c, 8, SCRIPT_LEN, props, old);
		step_until_converged(c, old);
		/* The old leader gave up (outcome unknown), and applied nothing meanwhile. */
		assert_true(raft_fixture_step_until(&c->f, all_done, lost, 10000));
		assert_int_equal(lost[0].status, RAFT_LEADERSHIPLOST);
		char *now = dump(&c->nodes[old]);
		assert_string_equal(isolated, now);
		free(now);
		free(isolated);

		/* Heal: everyone converges on the majority's history. */
		for (unsigned j = 0; j < n; j++) {
			if (j != old) {
				raft_fixture_reconnect(&c->f, old, j);
				raft_fixture_reconnect(&c->f, j, old);
			}
		}
		step_until_converged(c, n);
		raft_fixture_step_until_elapsed(&c->f, 500);
		step_until_converged(c, n);
		for (unsigned i = 1; i < n; i++)
			assert_same_dump(&c->nodes[0], &c->nodes[i]);
		char *d = dump(&c->nodes[old]);
		assert_null(strstr(d, "partitioned"));
		assert_non_null(strstr(d, "'member-set'"));
		free(d);
		cluster_stop(c);
		free(props);
		free(c);
	}
}

/* A refused command's request id is not remembered: the same id can succeed afterwards. */
static void test_refusal_not_deduplicated(void **state)
{
	struct node a;
	struct opd_buf buf;

	(void)state;
	node_init(&a, NULL, 0);
	apply_script_direct(&a);
	a.next = 200;
	opd_buf_init(&buf);
	/* "alpha" is at version 2 after the script: version 2 again is a conflict... */
	extra_put("alpha", 2, 77, &buf);
	assert_int_equal(apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf))->status,
			 OPD_APPLY_CONFLICT);
	/* ...and the same request id with the right version is applied, not a duplicate. */
	opd_buf_reset(&buf);
	extra_put("alpha", 3, 77, &buf);
	assert_int_equal(apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf))->status,
			 OPD_APPLY_OK);
	/* Once applied, it is. */
	opd_buf_reset(&buf);
	extra_put("alpha", 4, 77, &buf);
	assert_int_equal(apply_direct(&a, opd_buf_rptr(&buf), opd_buf_avail(&buf))->status,
			 OPD_APPLY_DUPLICATE);
	opd_buf_fini(&buf);
	node_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_deterministic_direct),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_snapshot_policy),
	    cmocka_unit_test(test_deterministic_raft_vs_direct),
	    cmocka_unit_test(test_snapshot_restore_direct),
	    cmocka_unit_test(test_refusal_not_deduplicated),
	    cmocka_unit_test(test_snapshot_install),
	    cmocka_unit_test(test_cluster_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
