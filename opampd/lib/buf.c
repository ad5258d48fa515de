#include "buf.h"

#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void opd_buf_init(struct opd_buf *b)
{
	*b = (struct opd_buf){0};
}

void opd_buf_fini(struct opd_buf *b)
{
	free(b->data);
	*b = (struct opd_buf){0};
}

uint8_t *opd_buf_reserve(struct opd_buf *b, size_t n)
{
	/* Even for n == 0 the result must be a real pointer: callers write or memcpy to it. */
	if (b->cap - b->len >= n && b->data != NULL)
		return b->data + b->len;
	/* Reclaim consumed space before growing. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= n)
			return b->data + b->len;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	b->data = opd_xrealloc(b->data, cap);
	b->cap = cap;
	return b->data + b->len;
}

void opd_buf_commit(struct opd_buf *b, size_t n)
{
	b->len += n;
}

void opd_buf_append(struct opd_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	memcpy(opd_buf_reserve(b, n), p, n);
	b->len += n;
}

void opd_buf_append_byte(struct opd_buf *b, uint8_t c)
{
	opd_buf_append(b, &c, 1);
}

void opd_buf_appendf(struct opd_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	char *w = (char *)opd_buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(w, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void opd_buf_consume(struct opd_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void opd_buf_reset(struct opd_buf *b)
{
	b->off = b->len = 0;
}

uint8_t *opd_buf_steal(struct opd_buf *b, size_t *len)
{
	uint8_t *p;

	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	p = b->data;
	*len = b->len;
	*b = (struct opd_buf){0};
	return p;
}

void opd_buf_shrink(struct opd_buf *b)
{
	if (opd_buf_avail(b) == 0)
		opd_buf_fini(b);
}
