/* Hex and UUID text forms of byte strings (config hashes, instance_uids). */
#ifndef OPD_HEX_H
#define OPD_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Write 2n lowercase hex digits and a NUL into out (2n+1 bytes). */
void opd_hex_encode(const uint8_t *p, size_t n, char *out);

/*
 * Decode exactly 2*n hex digits from s (case-insensitive) into out[n].
 * Returns 0 or OPD_EINVAL (wrong length or a non-hex digit).
 */
int opd_hex_decode(const char *s, uint8_t *out, size_t n);

/*
 * Parse a 16-byte id written as 32 hex digits, or as a canonical UUID with
 * dashes (8-4-4-4-12). Returns 0 or OPD_EINVAL.
 */
int opd_uid_parse(const char *s, uint8_t out[16]);

#endif
