#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
	fprintf(stderr, "<2>crit opampd: out of memory allocating %zu bytes\n", n);
	abort();
}

void *opd_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *opd_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *opd_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

char *opd_xstrdup(const char *s)
{
	return opd_xstrndup(s, strlen(s));
}

char *opd_xstrndup(const char *s, size_t n)
{
	char *p = opd_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void *opd_xmemdup(const void *src, size_t n)
{
	void *p = opd_xmalloc(n);

	if (n)
		memcpy(p, src, n);
	return p;
}
