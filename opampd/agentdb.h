/*
 * Node-local persistence of the agent registry (soft state, AP): dirty agents
 * are written to <data-dir>/agents.db in one transaction per batch, and loaded
 * back at start-up as disconnected, so a restart still lists known agents
 * with their last report. Never replicated.
 */
#ifndef OPD_AGENTDB_H
#define OPD_AGENTDB_H

#include "err.h"
#include "registry.h"

struct sqlite3;
struct sqlite3_stmt;

/* Private to agentdb.c: the description last persisted for one agent, as a keyed hash. */
struct opd_agentdb_seen {
	uint64_t key;  /* hash of the uid; 0 = empty slot */
	uint64_t desc; /* hash of the uid and both attribute sets as written */
};

struct opd_agentdb {
	struct sqlite3 *db;
	char errmsg[OPD_ERRMSG_SIZE];
	/* Private to agentdb.c. Statements prepared once. */
	struct sqlite3_stmt *upsert, *update;
	/*
	 * Which rows hold which description (open addressing, a power of two
	 * slots): a flush rewrites the attribute JSON only for agents whose
	 * description changed since, and otherwise updates the other columns
	 * (bench/PROFILE.md §3).
	 */
	struct opd_agentdb_seen *seen;
	size_t seen_cap, seen_n;
	uint64_t seed;
	/* The dirty agents of the flush under way, kept for the next one. */
	struct opd_agent **batch;
	size_t batch_cap;
	size_t next_turn; /* where the next capped flush starts among the dirty agents */
};

/* Open or create the database at path. 0 or OPD_ESTORE (errmsg set; close is still safe). */
int opd_agentdb_open(struct opd_agentdb *adb, const char *path) __attribute__((warn_unused_result));
void opd_agentdb_close(struct opd_agentdb *adb);

/* Load every stored agent into r, disconnected. Returns the number loaded or OPD_ESTORE. */
int opd_agentdb_load(struct opd_agentdb *adb, struct opd_registry *r);

/* Dirty agents one periodic flush writes at most: after a reconnect storm of the whole fleet
 * the writes are spread over several ticks instead of holding the loop for one long
 * transaction (the admin API and the agents wait behind it). */
#define OPD_AGENTDB_FLUSH_MAX 2048

/*
 * Write dirty agents in one transaction and clear their dirty flag: all of
 * them (max 0), or at most max, taken in turn from where the last capped
 * flush stopped so that none waits forever. Returns the count or OPD_ESTORE.
 * An agent whose attributes are as last written gets only its other columns
 * updated.
 */
int opd_agentdb_flush(struct opd_agentdb *adb, struct opd_registry *r, size_t max);

#endif
