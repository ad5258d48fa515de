/*
 * posix_fallocate in this process is segment_fill.c's. Before start it is
 * libc's alone; after, what it allocated past the end of a file is written
 * with zeros (no unwritten extents left, where the file system has them),
 * and nothing a file held before changes. The tests run in order: the first
 * one needs the fill not started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "segment_fill.h"

#define SIZE (1 << 20) /* four pieces */

/* Whether this file system leaves fallocated blocks unwritten; learnt by the first test. */
static bool has_unwritten;

static int new_file(int flags)
{
	char path[] = "/var/tmp/opd-fill-XXXXXX";
	int fd = mkostemp(path, flags);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/* Extents of fd the file system marks unwritten (FIEMAP), 0 if it cannot say. */
static unsigned unwritten_extents(int fd)
{
	struct {
		struct fiemap map;
		struct fiemap_extent extents[32];
	} f;
	unsigned n = 0;

	memset(&f, 0, sizeof f);
	f.map.fm_length = FIEMAP_MAX_OFFSET;
	f.map.fm_flags = FIEMAP_FLAG_SYNC;
	f.map.fm_extent_count = 32;
	if (ioctl(fd, FS_IOC_FIEMAP, &f.map) != 0)
		return 0;
	for (unsigned i = 0; i < f.map.fm_mapped_extents; i++)
		n += (f.extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0;
	return n;
}

static off_t size_of(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

/* Bytes [from, to) of fd are all c. */
static void assert_bytes(int fd, off_t from, off_t to, char c)
{
	static char buf[SIZE];

	assert_true(to - from <= (off_t)sizeof buf);
	assert_int_equal(pread(fd, buf, (size_t)(to - from), from), to - from);
	for (off_t i = 0; i < to - from; i++)
		if (buf[i] != c)
			fail_msg("byte %lld is %d, not %d", (long long)(from + i), buf[i], c);
}

static void test_before_start_only_allocates(void **state)
{
	int fd = new_file(0);

	(void)state;
	assert_int_equal(posix_fallocate(fd, 0, SIZE), 0);
	assert_int_equal(size_of(fd), SIZE);
	assert_int_equal(opd_segment_fill_count(), 0);
	has_unwritten = unwritten_extents(fd) > 0; /* ext4 and XFS: yes */
	close(fd);
}

static void test_fills_a_new_file(void **state)
{
	int fd = new_file(0);

	(void)state;
	opd_segment_fill_start();
	errno = 1234;
	assert_int_equal(posix_fallocate(fd, 0, SIZE), 0);
	assert_int_equal(errno, 1234); /* the result says it all */
	assert_int_equal(opd_segment_fill_count(), 1);
	assert_int_equal(size_of(fd), SIZE);
	assert_bytes(fd, 0, SIZE, 0);
	if (has_unwritten)
		assert_int_equal(unwritten_extents(fd), 0);
	close(fd);
}

static void test_keeps_what_the_file_held(void **state)
{
	char xs[8192];
	int fd = new_file(0);

	(void)state;
	memset(xs, 'x', sizeof xs);
	assert_int_equal(write(fd, xs, 5000), 5000); /* ends inside the second block */
	assert_int_equal(posix_fallocate(fd, 4096, 64 << 10), 0);
	assert_int_equal(opd_segment_fill_count(), 2);
	assert_int_equal(size_of(fd), 4096 + (64 << 10));
	assert_bytes(fd, 0, 5000, 'x');
	assert_bytes(fd, 5000, 4096 + (64 << 10), 0);
	if (has_unwritten)
		assert_int_equal(unwritten_extents(fd), 0);

	/* Inside the file: nothing past its end, nothing to fill, nothing overwritten. */
	assert_int_equal(pwrite(fd, xs, sizeof xs, 8192), (ssize_t)sizeof xs);
	assert_int_equal(posix_fallocate(fd, 0, 16384), 0);
	assert_int_equal(opd_segment_fill_count(), 2);
	assert_bytes(fd, 8192, 16384, 'x');
	close(fd);
}

static void test_leaves_append_and_read_only_files_alone(void **state)
{
	char path[] = "/var/tmp/opd-fill-XXXXXX";
	int fd = mkostemp(path, O_APPEND), ro;

	(void)state;
	assert_true(fd >= 0);
	/* A positioned write on an O_APPEND file would append: the file would grow. */
	assert_int_equal(posix_fallocate(fd, 0, 64 << 10), 0);
	assert_int_equal(size_of(fd), 64 << 10);
	assert_int_equal(opd_segment_fill_count(), 2);

	ro = open(path, O_RDONLY);
	assert_true(ro >= 0);
	assert_int_equal(posix_fallocate(ro, 0, 128 << 10), EBADF); /* libc's answer, unchanged */
	assert_int_equal(size_of(ro), 64 << 10);
	assert_int_equal(opd_segment_fill_count(), 2);
	close(ro);
	close(fd);
	unlink(path);
}

/* raft sets O_DIRECT on a segment before writing to it; a fill then writes through. */
static void test_fills_through_o_direct(void **state)
{
	char path[] = "/var/tmp/opd-fill-XXXXXX";
	int fd = mkstemp(path), direct;

	(void)state;
	assert_true(fd >= 0);
	direct = open(path, O_WRONLY | O_DIRECT);
	unlink(path);
	if (direct < 0) {
		close(fd);
		skip(); /* no direct I/O on this file system */
	}
	assert_int_equal(posix_fallocate(direct, 0, SIZE), 0);
	assert_int_equal(opd_segment_fill_count(), 3);
	assert_bytes(fd, 0, SIZE, 0);
	if (has_unwritten)
		assert_int_equal(unwritten_extents(fd), 0);
	close(direct);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_before_start_only_allocates),
	    cmocka_unit_test(test_fills_a_new_file),
	    cmocka_unit_test(test_keeps_what_the_file_held),
	    cmocka_unit_test(test_leaves_append_and_read_only_files_alone),
	    cmocka_unit_test(test_fills_through_o_direct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
