/*
 * The io_destroy hand-off: syscall() in this process is aio_reaper.c's. Before
 * the thread starts it destroys contexts where it is called; after, live
 * contexts go to the thread and everything else still reaches the kernel.
 * The tests run in order: the first one needs the thread not started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "aio_reaper.h"

static aio_context_t new_context(void)
{
	aio_context_t ctx = 0;

	assert_int_equal(syscall(SYS_io_setup, 8, &ctx), 0);
	assert_true(ctx != 0);
	return ctx;
}

/* 0 while ctx is a live context, -1 with EINVAL once it is destroyed. */
static long probe(aio_context_t ctx)
{
	struct timespec zero = {0, 0};

	return syscall(SYS_io_getevents, ctx, 0L, 0L, NULL, &zero);
}

static void test_before_start_destroys_in_place(void **state)
{
	aio_context_t ctx = new_context();

	(void)state;
	assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
	assert_int_equal(probe(ctx), -1); /* gone already: nobody else could have done it */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(opd_aio_reaper_deferred(), 0);
}

static void test_other_calls_reach_the_kernel(void **state)
{
	char path[] = "/tmp/opd-aio-XXXXXX", buf[8] = {0};
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "abcdefgh", 8), 8);
	assert_int_equal(syscall(SYS_getpid), getpid());
	assert_int_equal(syscall(SYS_pread64, fd, buf, 3L, 4L), 3); /* four arguments */
	assert_memory_equal(buf, "efg", 3);
	assert_int_equal(syscall(SYS_pread64, -1, buf, 3L, 0L), -1);
	assert_int_equal(errno, EBADF);
	close(fd);
}

static void test_started_hands_live_contexts_to_the_thread(void **state)
{
	aio_context_t a, b;
	uint64_t before;

	(void)state;
	assert_int_equal(opd_aio_reaper_start(), 0);
	assert_int_equal(opd_aio_reaper_start(), 0); /* once per process */
	before = opd_aio_reaper_deferred();
	a = new_context();
	b = new_context();
	assert_int_equal(syscall(SYS_io_destroy, a), 0);
	assert_int_equal(syscall(SYS_io_destroy, b), 0);
	assert_int_equal(opd_aio_reaper_deferred(), before + 2);
	opd_aio_reaper_drain();
	assert_int_equal(probe(a), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(probe(b), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_started_dead_context_keeps_its_error(void **state)
{
	aio_context_t ctx = new_context();
	uint64_t before;

	(void)state;
	assert_int_equal(opd_aio_reaper_start(), 0);
	assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
	opd_aio_reaper_drain();
	before = opd_aio_reaper_deferred();
	assert_int_equal(syscall(SYS_io_destroy, ctx), -1); /* twice */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(syscall(SYS_io_destroy, (aio_context_t)0), -1); /* never one */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(opd_aio_reaper_deferred(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_before_start_destroys_in_place),
	    cmocka_unit_test(test_other_calls_reach_the_kernel),
	    cmocka_unit_test(test_started_hands_live_contexts_to_the_thread),
	    cmocka_unit_test(test_started_dead_context_keeps_its_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
