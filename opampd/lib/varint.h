/* Protobuf base-128 varints, as used by the OpAMP WebSocket message header. */
#ifndef OPD_VARINT_H
#define OPD_VARINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OPD_VARINT_MAX 10

/*
 * Decode a varint from p[0..n). Returns the bytes used, OPD_EAGAIN if the
 * input ends inside the varint, or OPD_EPROTO if it is longer than 10 bytes
 * or overflows 64 bits. *out is set only on success.
 */
ssize_t opd_varint_decode(const uint8_t *p, size_t n, uint64_t *out);

/* Encode v into out (at least OPD_VARINT_MAX bytes); returns bytes written. */
size_t opd_varint_encode(uint64_t v, uint8_t *out);

#endif
