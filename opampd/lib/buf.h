/*
 * struct opd_buf: a growable byte buffer with a read offset, used for every
 * in-memory stream (socket input, codec output). Bytes are appended at the
 * end and consumed from the front; consumed space is reclaimed lazily.
 */
#ifndef OPD_BUF_H
#define OPD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct opd_buf {
	uint8_t *data; /* owned */
	size_t off;    /* first unread byte */
	size_t len;    /* end of valid bytes (len >= off) */
	size_t cap;
};

void opd_buf_init(struct opd_buf *b);
void opd_buf_fini(struct opd_buf *b);

/* Make room for n more bytes; aborts on OOM. Returns the write position. */
uint8_t *opd_buf_reserve(struct opd_buf *b, size_t n);
/* Mark n reserved bytes as written. */
void opd_buf_commit(struct opd_buf *b, size_t n);
void opd_buf_append(struct opd_buf *b, const void *p, size_t n);
void opd_buf_appendf(struct opd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void opd_buf_append_byte(struct opd_buf *b, uint8_t c);

/* Unread bytes. */
static inline const uint8_t *opd_buf_rptr(const struct opd_buf *b)
{
	/* An empty buffer may own no memory, and NULL + 0 is undefined in C (UBSan says so). */
	return b->data != NULL ? b->data + b->off : NULL;
}
static inline size_t opd_buf_avail(const struct opd_buf *b)
{
	return b->len - b->off;
}

/* Drop n unread bytes from the front (n <= avail). */
void opd_buf_consume(struct opd_buf *b, size_t n);
/* Drop everything; keeps the allocation. */
void opd_buf_reset(struct opd_buf *b);
/* Hand the allocation to the caller (compacting first); b becomes empty. */
uint8_t *opd_buf_steal(struct opd_buf *b, size_t *len);
/* Release memory of an empty buffer (idle connections keep nothing). */
void opd_buf_shrink(struct opd_buf *b);

#endif
