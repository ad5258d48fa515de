/*
 * The libc definition of a function this process defines too (aio_reaper.c's
 * syscall(), segment_fill.c's posix_fallocate), looked up once and cached.
 */
#ifndef OPD_LIBC_NEXT_H
#define OPD_LIBC_NEXT_H

#include <dlfcn.h> /* RTLD_NEXT: _GNU_SOURCE, set for the whole build */
#include <stddef.h>

/* The next definition of name after this one's (libc's), or NULL; *cache holds it once found. */
static inline void *opd_libc_next(void **cache, const char *name)
{
	void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);

	if (f == NULL) {
		f = dlsym(RTLD_NEXT, name);
		__atomic_store_n(cache, f, __ATOMIC_RELEASE);
	}
	return f;
}

#endif
