/* gzip bodies of the plain HTTP transport (zlib), bounded by the message limit. */
#ifndef OPD_GZIP_H
#define OPD_GZIP_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Inflate a gzip stream into out, never producing more than max_out bytes.
 * Returns 0, OPD_ETOOBIG (output would exceed max_out: a decompression bomb
 * stops there) or OPD_EPROTO (not gzip, corrupt, truncated, trailing bytes).
 */
int opd_gzip_inflate(const uint8_t *p, size_t n, size_t max_out, struct opd_buf *out);

/* Deflate p into out as a gzip stream. Returns 0 or OPD_EIO. */
int opd_gzip_deflate(const uint8_t *p, size_t n, struct opd_buf *out);

#endif
