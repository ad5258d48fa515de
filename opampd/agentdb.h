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

struct opd_agentdb {
	struct sqlite3 *db;
	char errmsg[OPD_ERRMSG_SIZE];
};

/* Open or create the database at path. 0 or OPD_ESTORE (errmsg set; close is still safe). */
int opd_agentdb_open(struct opd_agentdb *adb, const char *path) __attribute__((warn_unused_result));
void opd_agentdb_close(struct opd_agentdb *adb);

/* Load every stored agent into r, disconnected. Returns the number loaded or OPD_ESTORE. */
int opd_agentdb_load(struct opd_agentdb *adb, struct opd_registry *r);

/* Write all dirty agents in one transaction and clear their dirty flag. Returns the count or
 * OPD_ESTORE. */
int opd_agentdb_flush(struct opd_agentdb *adb, struct opd_registry *r);

#endif
