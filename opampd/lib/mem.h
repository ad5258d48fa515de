/*
 * Allocation wrappers that abort on out-of-memory (as redis and h2o do): a
 * replica that cannot allocate must not diverge, and no caller has a useful
 * recovery. Sizes driven by a peer must be bounded before calling these.
 */
#ifndef OPD_MEM_H
#define OPD_MEM_H

#include <stddef.h>

void *opd_xmalloc(size_t n);
void *opd_xcalloc(size_t nmemb, size_t size);
void *opd_xrealloc(void *p, size_t n);
char *opd_xstrdup(const char *s);
/* Copy n bytes of s into a new NUL-terminated string. */
char *opd_xstrndup(const char *s, size_t n);
void *opd_xmemdup(const void *p, size_t n);

#endif
