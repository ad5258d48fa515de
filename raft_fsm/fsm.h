/*
 * The replicated state machine: struct raft_fsm (version 2) over the sqlite
 * store. apply() decodes a command and performs it in one sqlite transaction
 * together with the applied index, so replaying an entry after a restart
 * changes nothing. It is deterministic: everything it writes comes from the
 * command bytes and the prior store. Business rejections (a version that is
 * not latest + 1, an unknown name) are results, never errors; a local fault
 * (sqlite I/O) is fatal, because a replica that skips an entry diverges.
 *
 * Group commit: with batch_max above 1, consecutive entries share one sqlite
 * transaction, committed when batch_max entries are in it or when the owner
 * calls opd_fsm_flush (node.c does 50 ms after a batch opens). That is
 * safe because the raft log, not sqlite, is what makes an entry durable: a
 * crash loses at most the uncommitted batch, whose entries raft still holds
 * and replays (snapshots flush first, so the log is never truncated past
 * what sqlite committed). Reads on the store's connection see the batch.
 *
 * Snapshots are the serialized sqlite database; restore replaces it.
 */
#ifndef OPD_FSM_H
#define OPD_FSM_H

#include "hlc.h"
#include "store.h"

#include <raft.h>
#include <stdint.h>

#define OPD_FSM_RESULTS 256 /* results kept for the leader's deferred apply callbacks */

enum opd_apply_status {
	OPD_APPLY_OK = 0,
	OPD_APPLY_DUPLICATE, /* request_id seen before: nothing changed, result of the first */
	OPD_APPLY_CONFLICT,  /* e.g. version is not latest + 1 */
	OPD_APPLY_NOT_FOUND, /* unknown configuration, version or key */
	OPD_APPLY_INVALID, /* a command no valid leader proposes (refused, logged by the caller) */
};

struct opd_apply_result {
	uint64_t index; /* raft index of the entry; 0 = slot empty */
	enum opd_apply_status status;
	int op;           /* Opampd__V1__Command__OpCase of the command */
	uint64_t version; /* PutVersion: the version written (or of the duplicate); SetActive:
			     version; IssueCertificate, RevokeCertificate: the serial */
	int created;      /* PutVersion: 0 when identical to the active version (nothing written) */
	char name[129];
	char message[160];
};

struct opd_fsm {
	struct raft_fsm raft;    /* version 2; raft.data = this */
	struct opd_store *store; /* borrowed */
	/* The index of the entry apply() is called for: raft_last_applied(r) + 1. */
	uint64_t (*next_index)(void *data);
	void *index_data;
	/*
	 * Called after each applied command that changed configurations or keys, and
	 * with res NULL after a snapshot replaced the whole store. May be NULL.
	 */
	void (*changed)(void *data, const struct opd_apply_result *res);
	void *changed_data;
	/*
	 * Called instead of changed after each applied certificate, CA or
	 * rotation command that changed state (those leave configurations
	 * alone), and with res NULL after a snapshot replaced the store. May be
	 * NULL.
	 */
	void (*certs_changed)(void *data, const struct opd_apply_result *res);
	void *certs_changed_data;
	struct opd_hlc hlc; /* the latest timestamp applied */
	unsigned batch_max; /* entries per sqlite transaction; 0 or 1 = commit each entry */
	unsigned batch_len; /* entries in the open transaction */
	/* For the snapshot policy: what this process applied, and the last snapshot's size. */
	uint64_t applied_bytes, applied_entries;
	size_t snapshot_bytes; /* 0: none taken or restored yet */
	struct opd_apply_result results[OPD_FSM_RESULTS];
	uint8_t *snapshot; /* serialized database handed to raft, freed in snapshot_finalize */
	char errmsg[OPD_ERRMSG_SIZE];
};

/* Set up f over an open store (borrowed). Reads the applied index and HLC from the store. */
int opd_fsm_init(struct opd_fsm *f, struct opd_store *store) __attribute__((warn_unused_result));
void opd_fsm_fini(struct opd_fsm *f);

/*
 * Commit the entries applied since the last commit, if any. A failure is
 * fatal, as in apply: a replica must not skip entries.
 */
void opd_fsm_flush(struct opd_fsm *f);

/*
 * When to snapshot (raft 0.22 counts entries, but a snapshot is the whole
 * database): once the entries since the last one hold about as many bytes
 * as that snapshot did (at least OPD_FSM_SNAPSHOT_MIN_BYTES, at most
 * OPD_FSM_SNAPSHOT_MAX_BYTES),
 * so that snapshots cost a bounded share of each byte written however large
 * the store grows; and keep about 32 MiB of log after it for lagging
 * followers. Both in entries of the mean size applied so far, within
 * raft-safe bounds.
 *
 * The ceiling is what raft keeps in memory between snapshots (it holds the
 * log since the last one), like etcd's 100,000 entries; below it, a store
 * of a few hundred MiB was written out again every 64 MiB of entries, and
 * writes waited behind each snapshot's fsync (bench/PROFILE.md).
 */
#define OPD_FSM_SNAPSHOT_MAX_BYTES (256u << 20)
/*
 * The floor, for small stores (a bounded history keeps them small): four of
 * raft's 16 MiB segments. Every snapshot also closes the open segment early,
 * and each segment closed stalls the loop (OPD_NODE_SEGMENT_BYTES); at 8 MiB
 * a small store's snapshots doubled those stalls. The price: a restart
 * replays up to this many bytes of entries.
 */
#define OPD_FSM_SNAPSHOT_MIN_BYTES (64u << 20)
#define OPD_FSM_SNAPSHOT_MIN_ENTRIES 1024
#define OPD_FSM_SNAPSHOT_MAX_ENTRIES 65536
void opd_fsm_snapshot_policy(const struct opd_fsm *f, unsigned *threshold, unsigned *trailing);

/* The result of the entry at index, or NULL when it is no longer (or not yet) kept. */
const struct opd_apply_result *opd_fsm_result(const struct opd_fsm *f, uint64_t index);

/*
 * The OPD_E* code a writer reports for a state machine outcome: 0 for OK and
 * DUPLICATE (a retry's answer is the first attempt's), OPD_ECONFLICT,
 * OPD_ENOTFOUND, OPD_EINVAL.
 */
int opd_apply_status_code(enum opd_apply_status status);

/* The last applied raft index, as stored. */
uint64_t opd_fsm_applied_index(const struct opd_fsm *f);

#endif
