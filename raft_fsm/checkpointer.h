/*
 * WAL checkpoints off the event loop. sqlite's automatic checkpoint runs
 * inside the COMMIT that takes the WAL past 1000 pages: it copies them into
 * the database file and fsyncs it on the committing thread, the loop, which
 * stalled a write every few hundred (bench/PROFILE.md). Here a thread with a
 * connection of its own runs PASSIVE checkpoints, which never block the
 * writer, each time the WAL has grown by OPD_CKPT_PAGES. A PASSIVE checkpoint
 * copies only what was committed when it began, and sqlite rewinds the WAL
 * only at a write that finds everything copied, which a steady stream of
 * writes rarely does: past OPD_CKPT_MAX_PAGES the writer checkpoints itself
 * (the few pages since the thread's last run), so the WAL stays bounded.
 */
#ifndef OPD_CHECKPOINTER_H
#define OPD_CHECKPOINTER_H

struct sqlite3;
struct opd_checkpointer;

/*
 * 4 MiB of 4 KiB pages (sqlite's own default is 1000). The first checkpoint
 * after the WAL rewinds copies all of it at once, and the later ones only
 * what each commit added. At 16 MiB that first copy and its fsync took 28-56
 * ms and held up the raft log's writes on the same disk: the slowest writes
 * of a 3-node cluster on one machine waited for it (bench/PROFILE.md). Fewer,
 * larger checkpoints would copy a page written again and again only once, but
 * most pages a write touches are new (its version's rows): 4 MiB costs ~15 %
 * more bytes written than 16 MiB did.
 */
#define OPD_CKPT_PAGES 1024
#define OPD_CKPT_MAX_PAGES 8192 /* 32 MiB of 4 KiB pages */

/*
 * Take over the checkpoints of db (a WAL database at path; db borrowed, it
 * must outlive the checkpointer) with a thread and a second connection.
 * Sets *out only on success. Returns 0, or -1 with errmsg (OPD_ERRMSG_SIZE)
 * saying why; db then keeps sqlite's automatic checkpoints.
 */
int opd_checkpointer_start(struct sqlite3 *db, const char *path, struct opd_checkpointer **out,
			   char *errmsg);

/*
 * Wait for a checkpoint in progress and keep the thread from starting another
 * until resume: around operations that replace the database file's contents.
 */
void opd_checkpointer_pause(struct opd_checkpointer *c);
void opd_checkpointer_resume(struct opd_checkpointer *c);

/*
 * Pause, and keep the writer from checkpointing too, until unhold: the
 * database file does not change meanwhile (the WAL grows instead), so a
 * mapping of it stays one consistent image. On the writer's thread.
 */
void opd_checkpointer_hold(struct opd_checkpointer *c);
void opd_checkpointer_unhold(struct opd_checkpointer *c);

/* Stop the thread and close its connection; db gets automatic checkpoints back. NULL is a no-op. */
void opd_checkpointer_stop(struct opd_checkpointer *c);

#endif
