/* UTF-8 validation (RFC 3629) for text that operators and agents send. */
#ifndef OPD_UTF8_H
#define OPD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Length of the well-formed UTF-8 sequence at p (n bytes available), or 0:
 * no overlongs, surrogates or code points past U+10FFFF, and NUL counts as
 * invalid.
 */
size_t opd_utf8_seq(const uint8_t *p, size_t n);

#endif
