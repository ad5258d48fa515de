/*
 * io_destroy off the event loop.
 *
 * raft 0.22's libuv backend gives each open log segment a kernel AIO context
 * and destroys it on the loop thread when the segment is full. io_destroy
 * returns only after two RCU grace periods: 32 ms on an idle machine here,
 * 30-80 ms under load, and the nodes of a cluster reach a segment change at
 * the same log position, so every loop stalled at once (bench/PROFILE.md).
 *
 * glibc has no io_destroy wrapper: libraft issues it through syscall(), which
 * aio_reaper.c defines in this process. Once opd_aio_reaper_start has run,
 * io_destroy of a live context returns 0 at once and a thread of ours destroys
 * it; every other system call goes to libc's syscall() unchanged.
 *
 * That is safe for raft's use of contexts: it destroys one only when no request
 * is in flight on it (a segment is finished after its last write completed; the
 * threadpool's one-off contexts after io_getevents), and it ignores the result.
 */
#ifndef OPD_AIO_REAPER_H
#define OPD_AIO_REAPER_H

#include <stdint.h>

/*
 * Contexts waiting for the thread, at most; a burst beyond it is destroyed
 * on the caller's thread as before (raft has two or three per node).
 */
#define OPD_AIO_REAPER_QUEUE 64

/* Start the thread, once per process (later calls do nothing): 0, or -1 if it cannot start. */
int opd_aio_reaper_start(void);

/* Wait until every context handed over so far is destroyed. */
void opd_aio_reaper_drain(void);

/* How many contexts the thread has been handed since the process started. */
uint64_t opd_aio_reaper_deferred(void);

#endif
