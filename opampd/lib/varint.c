#include "varint.h"

#include "err.h"

ssize_t opd_varint_decode(const uint8_t *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < OPD_VARINT_MAX; i++) {
		if (i >= n)
			return OPD_EAGAIN;
		uint64_t b = p[i] & 0x7f;
		/* The tenth byte may carry only the top bit of a uint64. */
		if (i == 9 && b > 1)
			return OPD_EPROTO;
		v |= b << (7 * i);
		if ((p[i] & 0x80) == 0) {
			*out = v;
			return (ssize_t)(i + 1);
		}
	}
	return OPD_EPROTO;
}

size_t opd_varint_encode(uint64_t v, uint8_t *out)
{
	size_t i = 0;

	while (v >= 0x80) {
		out[i++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[i++] = (uint8_t)v;
	return i;
}
