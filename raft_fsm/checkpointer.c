#define LOG_COMPONENT "store"

#include "checkpointer.h"

#include "err.h"
#include "log.h"
#include "mem.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>

struct opd_checkpointer {
	struct sqlite3 *db;  /* the writer's connection (borrowed) */
	struct sqlite3 *own; /* the thread's */
	pthread_t thread;
	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t cond;
	bool requested; /* the WAL grew past OPD_CKPT_PAGES since the last run */
	bool busy;      /* the thread is checkpointing (without the lock) */
	bool paused;
	bool stop;
	int last_rc; /* of the thread's last checkpoint, logged once per change */
	bool held;   /* writer's thread only: no checkpoint at all (opd_checkpointer_hold) */
};

static void *run(void *arg)
{
	struct opd_checkpointer *c = arg;
	int log_pages, done, rc;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->stop && (!c->requested || c->paused))
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stop)
			break;
		c->requested = false;
		c->busy = true;
		pthread_mutex_unlock(&c->lock);
		rc = sqlite3_wal_checkpoint_v2(c->own, "main", SQLITE_CHECKPOINT_PASSIVE,
					       &log_pages, &done);
		pthread_mutex_lock(&c->lock);
		c->busy = false;
		if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != c->last_rc)
			log_warn("background checkpoint: %s", sqlite3_errmsg(c->own));
		c->last_rc = rc;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * sqlite calls this on the writer's thread after each commit, with the WAL's
 * size in pages. Installing it replaces sqlite's automatic checkpoint.
 */
static int on_commit(void *arg, struct sqlite3 *db, const char *name, int pages)
{
	struct opd_checkpointer *c = arg;
	int log_pages, done;

	if (pages < OPD_CKPT_PAGES || c->held)
		return SQLITE_OK;
	if (pages >= OPD_CKPT_MAX_PAGES) {
		/* Copies what the thread has not yet; the next write then rewinds the WAL. */
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &done);
		return SQLITE_OK;
	}
	pthread_mutex_lock(&c->lock);
	if (!c->busy && !c->requested) {
		c->requested = true;
		pthread_cond_signal(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	return SQLITE_OK;
}

int opd_checkpointer_start(struct sqlite3 *db, const char *path, struct opd_checkpointer **out,
			   char *errmsg)
{
	struct opd_checkpointer *c = opd_xcalloc(1, sizeof *c);

	c->db = db;
	if (sqlite3_open_v2(path, &c->own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		opd_errmsg_printf(errmsg, "checkpoint connection: %s",
				  c->own ? sqlite3_errmsg(c->own) : "out of memory");
		sqlite3_close_v2(c->own);
		free(c);
		return -1;
	}
	/* A connection takes the database's WAL mode from its first read. */
	if (sqlite3_exec(c->own, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		opd_errmsg_printf(errmsg, "checkpoint connection: %s", sqlite3_errmsg(c->own));
		sqlite3_close_v2(c->own);
		free(c);
		return -1;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (pthread_create(&c->thread, NULL, run, c) != 0) {
		opd_errmsg_printf(errmsg, "checkpoint thread: cannot start");
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		sqlite3_close_v2(c->own);
		free(c);
		return -1;
	}
	sqlite3_wal_hook(db, on_commit, c);
	*out = c;
	return 0;
}

void opd_checkpointer_pause(struct opd_checkpointer *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->paused = true;
	while (c->busy)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

void opd_checkpointer_resume(struct opd_checkpointer *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->paused = false;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void opd_checkpointer_hold(struct opd_checkpointer *c)
{
	if (c == NULL)
		return;
	opd_checkpointer_pause(c);
	c->held = true;
}

void opd_checkpointer_unhold(struct opd_checkpointer *c)
{
	if (c == NULL)
		return;
	c->held = false;
	opd_checkpointer_resume(c);
}

void opd_checkpointer_stop(struct opd_checkpointer *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	sqlite3_wal_autocheckpoint(c->db, OPD_CKPT_PAGES); /* removes our hook */
	sqlite3_close_v2(c->own);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
