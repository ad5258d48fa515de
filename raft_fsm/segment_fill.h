/*
 * raft's log segments written with zeros before use.
 *
 * raft 0.22's libuv backend prepares each log segment ahead of need, on its
 * threadpool, with posix_fallocate. On ext4 (and XFS) that reserves blocks
 * as unwritten extents, and each write raft makes durable in one (O_DIRECT
 * with RWF_DSYNC) must convert the extent it lands in: a journal commit per
 * write, which in ext4's ordered mode also waits for the data other files
 * allocated meanwhile, here the sqlite store's WAL and checkpoints. One
 * writer's latency was made of it (bench/PROFILE.md).
 *
 * segment_fill.c defines posix_fallocate in this process. Once
 * opd_segment_fill_start has run, after libc's posix_fallocate it writes
 * zeros over the part of the range that lay past the end of the file, where
 * the file reads as zeros anyway, so no content changes: in pieces, each
 * written back before the next, so that the disk's queue holds at most one
 * piece ahead of a raft write; then one fdatasync commits the extents as
 * written. Later writes into the segment overwrite blocks in place and need
 * no journal commit. The cost is the segment's size written once more, off
 * the event loop, before raft needs it.
 *
 * The file must not be written by anyone else meanwhile: raft prepares a
 * segment in one thread before it opens it for writes.
 *
 * Nothing else in the process calls posix_fallocate (sqlite would only with
 * SQLITE_FCNTL_CHUNK_SIZE, which the store does not set), and a file opened
 * for appending is never filled: a positioned write there would append.
 */
#ifndef OPD_SEGMENT_FILL_H
#define OPD_SEGMENT_FILL_H

#include <stdint.h>

/*
 * Written back before the next is written: 16 MiB of buffered zeros synced
 * at once held raft's writes up behind them (sixty-four writers' p99 51-52
 * -> 67-71 ms), in pieces they do not; a pause between pieces changed
 * nothing measurable (bench/PROFILE.md).
 */
#define OPD_SEGMENT_FILL_PIECE (256u << 10)

/* From now on posix_fallocate fills what it allocates. Idempotent. */
void opd_segment_fill_start(void);

/* How many posix_fallocate calls filled their range since the process started. */
uint64_t opd_segment_fill_count(void);

#endif
