/*
 * Fuzz target: the Raft command decoder (raft_fsm/cmd.c) and the state
 * machine's apply (fsm.c, store.c, validate.c) on an in-memory store.
 *
 * Input: a stream of framed commands as opd_cmd_encode writes them and raft
 * hands them back, [u32 LE len][u32 reserved][protobuf][padding to 8]; each
 * entry is cut where its length field says (the rest of the input when that
 * is past the end), so broken framing is applied too. A real leader never
 * proposes most of these, but every replica applies whatever is in its log:
 * apply must refuse them as results, never fail or exit (fatal() would stop
 * every replica on the same entry).
 *
 * Checked: apply returns 0 with a result for every entry; the same entries
 * applied to a second store give the same logical dump (determinism); a
 * snapshot of the first store restored over the second gives the same dump
 * again; a command that decodes encodes and decodes again.
 */
#include "cmd.h"
#include "err.h"
#include "fsm.h"
#include "log.h"
#include "store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 64

struct replica {
	struct opd_store st;
	struct opd_fsm fsm;
};

static void replica_open(struct replica *r)
{
	if (opd_store_open(&r->st, ":memory:") != 0 || opd_fsm_init(&r->fsm, &r->st) != 0) {
		fprintf(stderr, "store: %s\n", opd_store_errmsg(&r->st));
		abort();
	}
}

static void replica_close(struct replica *r)
{
	opd_fsm_fini(&r->fsm);
	opd_store_close(&r->st);
}

static void apply(struct replica *r, const uint8_t *p, size_t n)
{
	struct raft_buffer buf = {.base = (void *)p, .len = n};
	const struct opd_apply_result *res = NULL;
	void *result = NULL;

	if (r->fsm.raft.apply(&r->fsm.raft, &buf, &result) != 0 || result == NULL)
		abort();
	res = result;
	if (res->status > OPD_APPLY_INVALID || res->name[sizeof res->name - 1] != '\0' ||
	    res->message[sizeof res->message - 1] != '\0')
		abort();
}

static void dump(struct replica *r, struct opd_buf *out)
{
	if (opd_store_dump(&r->st, out) != 0)
		abort();
}

static void roundtrip(const uint8_t *p, size_t n)
{
	opd_cmd *cmd = NULL, *again = NULL;
	struct opd_buf b;

	if (opd_cmd_decode(p, n, &cmd) != 0)
		return;
	opd_buf_init(&b);
	if (opd_cmd_encode(cmd, &b) != 0 || opd_buf_avail(&b) % 8 != 0 ||
	    opd_cmd_decode(opd_buf_rptr(&b), opd_buf_avail(&b), &again) != 0)
		abort();
	opd_cmd_free(again);
	opd_cmd_free(cmd);
	opd_buf_fini(&b);
}

static bool same(struct opd_buf *a, struct opd_buf *b)
{
	return opd_buf_avail(a) == opd_buf_avail(b) &&
	       memcmp(opd_buf_rptr(a), opd_buf_rptr(b), opd_buf_avail(a)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct replica one, two;
	struct opd_buf d1, d2, d3;
	size_t cut[MAX_ENTRIES + 1], n = 0;
	uint8_t *snap = NULL;
	size_t snap_len = 0;

	if (!quiet) {
		opd_log_init(OPD_LOG_ERROR); /* refusals are logged at debug */
		quiet = true;
	}
	/* Where each entry ends, from its own length field. */
	cut[0] = 0;
	for (size_t off = 0; off < size && n < MAX_ENTRIES;) {
		size_t left = size - off, len;

		len = left < 8 ? left
			       : 8 + (((size_t)data[off] | (size_t)data[off + 1] << 8 |
				       (size_t)data[off + 2] << 16 | (size_t)data[off + 3] << 24) +
				      7) / 8 * 8;
		if (len > left)
			len = left;
		off += len;
		cut[++n] = off;
	}

	replica_open(&one);
	replica_open(&two);
	for (size_t i = 0; i < n; i++) {
		roundtrip(data + cut[i], cut[i + 1] - cut[i]);
		apply(&one, data + cut[i], cut[i + 1] - cut[i]);
	}
	for (size_t i = 0; i < n; i++)
		apply(&two, data + cut[i], cut[i + 1] - cut[i]);

	opd_buf_init(&d1);
	opd_buf_init(&d2);
	opd_buf_init(&d3);
	dump(&one, &d1);
	dump(&two, &d2);
	if (!same(&d1, &d2)) {
		fprintf(stderr, "two replicas diverged:\n%.*s\n---\n%.*s\n", (int)opd_buf_avail(&d1),
			(const char *)opd_buf_rptr(&d1), (int)opd_buf_avail(&d2),
			(const char *)opd_buf_rptr(&d2));
		abort();
	}
	/* The snapshot round trip reuses the second store: opening one costs more than all else. */
	if (opd_store_serialize(&one.st, &snap, &snap_len) != 0 ||
	    opd_store_restore(&two.st, snap, snap_len) != 0)
		abort();
	dump(&two, &d3);
	if (!same(&d1, &d3))
		abort();
	free(snap);
	replica_close(&two);
	replica_close(&one);
	opd_buf_fini(&d1);
	opd_buf_fini(&d2);
	opd_buf_fini(&d3);
	return 0;
}
