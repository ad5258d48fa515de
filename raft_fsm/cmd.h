/*
 * Raft command payloads: a Command protobuf (schemas/opampd/v1/command.proto)
 * framed for raft_apply, which takes only lengths that are multiples of 8:
 *
 *   [u32 LE: protobuf length][u32 LE: 0 (reserved)][protobuf][zero padding to 8]
 *
 * Pure: bytes in, bytes out.
 */
#ifndef OPD_CMD_H
#define OPD_CMD_H

#include "buf.h"
#include "opampd/v1/command.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_CMD_MAX (8u << 20) /* bigger than any valid command (configs are at most 2 MiB) */

typedef Opampd__V1__Command opd_cmd;

/* Frame and pad cmd into out (appended). Returns 0, or OPD_ETOOBIG over OPD_CMD_MAX. */
int opd_cmd_encode(const opd_cmd *cmd, struct opd_buf *out);

/*
 * Decode a framed payload. Returns 0 with *out set (free with opd_cmd_free),
 * or OPD_EPROTO (bad framing, a length over n or OPD_CMD_MAX, non-zero
 * padding, or a protobuf that does not parse). *out is set only on success.
 */
int opd_cmd_decode(const uint8_t *p, size_t n, opd_cmd **out) __attribute__((warn_unused_result));

void opd_cmd_free(opd_cmd *cmd);

#endif
