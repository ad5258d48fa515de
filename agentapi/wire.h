/*
 * The OpAMP wire codec: AgentToServer in, ServerToAgent out. Over WebSocket
 * a message is a varint header (must be 0) followed by the protobuf; over
 * plain HTTP the body is the bare protobuf. No I/O, no logging.
 */
#ifndef OPD_WIRE_H
#define OPD_WIRE_H

#include "buf.h"
#include "opamp/v1/opamp.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_WIRE_MAX_MSG (4u << 20)

typedef Opamp__Proto__V1__AgentToServer opd_a2s;
typedef Opamp__Proto__V1__ServerToAgent opd_s2a;

/*
 * Decode a WebSocket message. alloc may be NULL (malloc). Returns 0 with *out
 * set (free with opd_wire_free_a2s), OPD_ETOOBIG (over OPD_WIRE_MAX_MSG),
 * OPD_EPROTO (missing or non-zero header, or a protobuf that does not parse).
 * *out is set only on success.
 */
int opd_wire_decode_ws(const uint8_t *p, size_t n, ProtobufCAllocator *alloc, opd_a2s **out)
    __attribute__((warn_unused_result));

/* Decode a plain HTTP body (no header). Same returns. */
int opd_wire_decode_http(const uint8_t *p, size_t n, ProtobufCAllocator *alloc, opd_a2s **out)
    __attribute__((warn_unused_result));

void opd_wire_free_a2s(opd_a2s *m, ProtobufCAllocator *alloc);

/*
 * Append the encoding of m to out, preceded by the 0 header when ws is
 * non-zero. Returns 0, or OPD_ETOOBIG when the result would exceed
 * OPD_WIRE_MAX_MSG (nothing is appended then).
 */
int opd_wire_encode_s2a(const opd_s2a *m, int ws, struct opd_buf *out);

#endif
