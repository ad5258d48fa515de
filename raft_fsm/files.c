#include "store.h"

#include "mem.h"

#include <stdlib.h>
#include <string.h>

void opd_files_init(struct opd_files *f)
{
	*f = (struct opd_files){0};
}

void opd_files_fini(struct opd_files *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].name);
		free(f->v[i].content_type);
		free(f->v[i].body);
	}
	free(f->v);
	*f = (struct opd_files){0};
}

void opd_files_add(struct opd_files *f, const char *name, const char *content_type,
		   const void *body, size_t len)
{
	struct opd_file *e;

	f->v = opd_xrealloc(f->v, (f->n + 1) * sizeof *f->v);
	e = &f->v[f->n++];
	e->name = opd_xstrdup(name);
	e->content_type = opd_xstrdup(content_type);
	/* One extra byte so an empty body still has a pointer and text bodies end in NUL. */
	e->body = opd_xmalloc(len + 1);
	if (len)
		memcpy(e->body, body, len);
	e->body[len] = '\0';
	e->len = len;
}

/*
 * Ties (duplicate names, which validation rejects) are broken by content type
 * and body so that the order never depends on qsort's instability.
 */
static int file_cmp(const void *a, const void *b)
{
	const struct opd_file *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c;

	if ((c = strcmp(x->name, y->name)) != 0)
		return c;
	if ((c = strcmp(x->content_type, y->content_type)) != 0)
		return c;
	if (n && (c = memcmp(x->body, y->body, n)) != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

void opd_files_sort(struct opd_files *f)
{
	if (f->n > 1)
		qsort(f->v, f->n, sizeof *f->v, file_cmp);
}
