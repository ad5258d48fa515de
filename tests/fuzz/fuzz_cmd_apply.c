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
 * A PutVersion must carry the SHA-256 of its files, which mutation cannot
 * produce: one whose config_hash is a single byte (never valid) gets its
 * files sorted and the right hash from the harness, and is re-encoded, so
 * the writes behind the hash check are reached too.
 *
 * Checked: apply returns 0 with a result for every entry; the same entries
 * applied to a second store give the same logical dump (determinism); a
 * snapshot of the first store restored over the second gives the same dump
 * again; a command that decodes (without unknown fields) encodes and
 * decodes again.
 */
#include "cmd.h"
#include "config_hash.h"
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
	/* OPD_FUZZ_VERBOSE=1 shows what a corpus input does. */
	if (getenv("OPD_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "entry %llu: op %d status %d name \"%s\" version %llu: %s\n",
			(unsigned long long)res->index, res->op, (int)res->status, res->name,
			(unsigned long long)res->version, res->message);
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
	/*
	 * protobuf-c keeps unknown fields and writes them back verbatim, even one
	 * numbered 0 behind a two-byte tag, which it then refuses in the one-byte
	 * form it writes. opampd never re-encodes a decoded command, so only
	 * commands without unknown fields must survive the trip.
	 */
	if (cmd->base.n_unknown_fields > 0) {
		opd_cmd_free(cmd);
		return;
	}
	opd_buf_init(&b);
	if (opd_cmd_encode(cmd, &b) != 0 || opd_buf_avail(&b) % 8 != 0 ||
	    opd_cmd_decode(opd_buf_rptr(&b), opd_buf_avail(&b), &again) != 0)
		abort();
	opd_cmd_free(again);
	opd_cmd_free(cmd);
	opd_buf_fini(&b);
}

static int cmp_file(const void *x, const void *y)
{
	return strcmp((*(Opampd__V1__File *const *)x)->name, (*(Opampd__V1__File *const *)y)->name);
}

/* The entry as applied: the input's bytes, or a re-encoding with the hash filled in. */
static void prepare(const uint8_t *p, size_t n, struct opd_buf *out)
{
	Opampd__V1__PutVersion *pv;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	struct opd_files files;
	opd_cmd *cmd = NULL;

	if (opd_cmd_decode(p, n, &cmd) != 0 ||
	    cmd->op_case != OPAMPD__V1__COMMAND__OP_PUT_VERSION ||
	    cmd->put_version->config_hash.len != 1) {
		opd_cmd_free(cmd);
		opd_buf_append(out, p, n);
		return;
	}
	pv = cmd->put_version;
	if (pv->n_files > 1)
		qsort(pv->files, pv->n_files, sizeof *pv->files, cmp_file);
	opd_files_init(&files);
	for (size_t i = 0; i < pv->n_files; i++)
		opd_files_add(&files, pv->files[i]->name, pv->files[i]->content_type,
			      pv->files[i]->body.data, pv->files[i]->body.len);
	opd_config_hash(&files, hash);
	opd_files_fini(&files);
	/* The unpacked bytes belong to protobuf-c's allocation: point away, restore before free. */
	{
		ProtobufCBinaryData orig = pv->config_hash;

		pv->config_hash.data = hash;
		pv->config_hash.len = sizeof hash;
		if (opd_cmd_encode(cmd, out) != 0)
			abort();
		pv->config_hash = orig;
	}
	opd_cmd_free(cmd);
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
	struct opd_buf entry[MAX_ENTRIES];
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
				      7) /
					 8 * 8;
		if (len > left)
			len = left;
		off += len;
		cut[++n] = off;
	}

	for (size_t i = 0; i < n; i++) {
		opd_buf_init(&entry[i]);
		prepare(data + cut[i], cut[i + 1] - cut[i], &entry[i]);
	}
	replica_open(&one);
	replica_open(&two);
	for (size_t i = 0; i < n; i++) {
		roundtrip(opd_buf_rptr(&entry[i]), opd_buf_avail(&entry[i]));
		apply(&one, opd_buf_rptr(&entry[i]), opd_buf_avail(&entry[i]));
	}
	for (size_t i = 0; i < n; i++)
		apply(&two, opd_buf_rptr(&entry[i]), opd_buf_avail(&entry[i]));

	opd_buf_init(&d1);
	opd_buf_init(&d2);
	opd_buf_init(&d3);
	dump(&one, &d1);
	dump(&two, &d2);
	if (!same(&d1, &d2)) {
		fprintf(stderr, "two replicas diverged:\n%.*s\n---\n%.*s\n",
			(int)opd_buf_avail(&d1), (const char *)opd_buf_rptr(&d1),
			(int)opd_buf_avail(&d2), (const char *)opd_buf_rptr(&d2));
		abort();
	}
	/* The snapshot round trip reuses the second store: opening one costs more than all else. */
	if (opd_store_serialize(&one.st, &snap, &snap_len) != 0 ||
	    opd_store_restore(&two.st, snap, snap_len) != 0)
		abort();
	dump(&two, &d3);
	if (!same(&d1, &d3))
		abort();
	opd_store_image_free(&one.st, snap);
	replica_close(&two);
	replica_close(&one);
	opd_buf_fini(&d1);
	opd_buf_fini(&d2);
	opd_buf_fini(&d3);
	for (size_t i = 0; i < n; i++)
		opd_buf_fini(&entry[i]);
	return 0;
}
