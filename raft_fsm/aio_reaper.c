#include "aio_reaper.h"

#include "libc_next.h"

#include <errno.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef long (*syscall_fn)(long, ...);

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a context was queued */
	pthread_cond_t idle; /* the queue emptied and nothing is being destroyed */
	aio_context_t queue[OPD_AIO_REAPER_QUEUE];
	unsigned head, n;
	bool busy;    /* the thread is inside io_destroy */
	bool running; /* set once, when the thread started */
	uint64_t deferred;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER};

/* libc's syscall(), the one this file's definition hides. */
static syscall_fn libc_syscall(void)
{
	static void *cache;

	return (syscall_fn)opd_libc_next(&cache, "syscall");
}

static void *reaper(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&R.lock);
	for (;;) {
		while (R.n == 0) {
			R.busy = false;
			pthread_cond_broadcast(&R.idle);
			pthread_cond_wait(&R.work, &R.lock);
		}
		aio_context_t ctx = R.queue[R.head];

		R.head = (R.head + 1) % OPD_AIO_REAPER_QUEUE;
		R.n--;
		R.busy = true;
		pthread_mutex_unlock(&R.lock);
		libc_syscall()(SYS_io_destroy, ctx);
		pthread_mutex_lock(&R.lock);
	}
	return NULL;
}

/*
 * Queue ctx for the thread. False (the caller destroys it) before the thread
 * runs, when the queue is full, or when ctx is not a live context: reading
 * zero events with a zero timeout fails exactly when io_destroy would, so
 * such a call keeps its EINVAL.
 */
static bool defer(aio_context_t ctx)
{
	struct timespec zero = {0, 0};
	bool queued = false;

	if (!__atomic_load_n(&R.running, __ATOMIC_ACQUIRE) ||
	    libc_syscall()(SYS_io_getevents, ctx, 0L, 0L, NULL, &zero) != 0)
		return false;
	pthread_mutex_lock(&R.lock);
	if (R.n < OPD_AIO_REAPER_QUEUE) {
		R.queue[(R.head + R.n) % OPD_AIO_REAPER_QUEUE] = ctx;
		R.n++;
		R.deferred++;
		queued = true;
		pthread_cond_signal(&R.work);
	}
	pthread_mutex_unlock(&R.lock);
	return queued;
}

/*
 * Every call a shared library makes to syscall() lands here. The six
 * arguments are read as glibc's own syscall() reads them, five from registers
 * and the sixth from the caller's stack whether or not it was passed: the
 * kernel takes at most six and ignores those a call does not use. Reading that
 * stack slot is what AddressSanitizer reports for a call with fewer, hence the
 * attribute.
 */
__attribute__((no_sanitize("address"))) long syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_io_destroy && defer((aio_context_t)a[0]))
		return 0;
	syscall_fn f = libc_syscall();
	if (f == NULL) { /* not reached with glibc: it always has syscall() */
		errno = ENOSYS;
		return -1;
	}
	return f(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static void start_once(void)
{
	pthread_attr_t attr;
	pthread_t t;

	if (libc_syscall() == NULL || pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, reaper, NULL) == 0)
		__atomic_store_n(&R.running, true, __ATOMIC_RELEASE);
	pthread_attr_destroy(&attr);
}

int opd_aio_reaper_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, start_once);
	return __atomic_load_n(&R.running, __ATOMIC_ACQUIRE) ? 0 : -1;
}

void opd_aio_reaper_drain(void)
{
	pthread_mutex_lock(&R.lock);
	while (R.n > 0 || R.busy)
		pthread_cond_wait(&R.idle, &R.lock);
	pthread_mutex_unlock(&R.lock);
}

uint64_t opd_aio_reaper_deferred(void)
{
	pthread_mutex_lock(&R.lock);
	uint64_t n = R.deferred;
	pthread_mutex_unlock(&R.lock);
	return n;
}
