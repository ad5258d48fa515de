/*
 * A nesting-depth guard for AgentToServer bytes. protobuf-c unpacks
 * recursive messages (ComponentHealth, AnyValue, ComponentDetails) by
 * recursion without a depth limit, so a 4 MiB message of nested empty
 * sub-messages would exhaust the stack. This walks the encoding along the
 * recursive fields only, without allocating, before anything is unpacked.
 */
#ifndef OPD_NESTING_H
#define OPD_NESTING_H

#include <stddef.h>
#include <stdint.h>

/* Deep enough for any real agent: the Collector's health tree is 3-4 levels. */
#define OPD_NESTING_MAX 64

/*
 * Check an AgentToServer encoding. Returns 0, or OPD_EPROTO when a recursive
 * field nests deeper than max_depth or the framing along it is malformed.
 */
int opd_nesting_check_a2s(const uint8_t *p, size_t n, unsigned max_depth);

#endif
