#include "segment_fill.h"

#include "libc_next.h"

#include <errno.h>
#include <fcntl.h> /* sync_file_range: _GNU_SOURCE, set for the whole build */
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 4096 /* O_DIRECT's alignment, and the file system's block */

typedef int (*fallocate_fn)(int, off_t, off_t);

static bool started;
static uint64_t filled;

/* Read only: the kernel maps the zero page under it. Aligned for O_DIRECT. */
static _Alignas(BLOCK) unsigned char zeros[OPD_SEGMENT_FILL_PIECE];

/* libc's posix_fallocate, the one this file's definition hides. */
static fallocate_fn libc_posix_fallocate(void)
{
	static void *cache;

	return (fallocate_fn)opd_libc_next(&cache, "posix_fallocate");
}

/* Write [from, to) of fd with zeros, a piece at a time: true when all of it is on disk. */
static bool fill(int fd, off_t from, off_t to)
{
	for (off_t off = from; off < to;) {
		size_t want = (size_t)(to - off) < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
		ssize_t n = pwrite(fd, zeros, want, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false; /* e.g. EINVAL: O_DIRECT and a range not in whole blocks */
		/* A no-op for O_DIRECT, which wrote through already. */
		sync_file_range(fd, off, n,
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				    SYNC_FILE_RANGE_WAIT_AFTER);
		off += n;
	}
	return fdatasync(fd) == 0;
}

int posix_fallocate(int fd, off_t offset, off_t len)
{
	fallocate_fn libc = libc_posix_fallocate();
	int saved_errno = errno;
	struct stat st;
	off_t from;
	int flags, rc;

	if (libc == NULL)
		return ENOSYS;
	if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE) || offset < 0 || len <= 0 ||
	    fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return libc(fd, offset, len);
	rc = libc(fd, offset, len);
	flags = fcntl(fd, F_GETFL);
	if (rc != 0 || flags < 0 || (flags & O_APPEND) || (flags & O_ACCMODE) == O_RDONLY)
		goto out;
	/* Only what lay past the old end (it reads as zeros); the old end's block is written. */
	from = offset > st.st_size ? offset : st.st_size;
	from = (from + BLOCK - 1) / BLOCK * BLOCK;
	if (from < offset + len && fill(fd, from, offset + len)) {
		posix_fadvise(fd, from, offset + len - from, POSIX_FADV_DONTNEED);
		__atomic_add_fetch(&filled, 1, __ATOMIC_RELAXED);
	}
out:
	errno = saved_errno; /* posix_fallocate reports through its result only */
	return rc;
}

void opd_segment_fill_start(void)
{
	__atomic_store_n(&started, true, __ATOMIC_RELEASE);
}

uint64_t opd_segment_fill_count(void)
{
	return __atomic_load_n(&filled, __ATOMIC_RELAXED);
}
