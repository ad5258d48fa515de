#include "nesting.h"

#include "err.h"
#include "varint.h"

/* The messages on a path to a recursive field; everything else is skipped. */
enum node {
	N_SKIP,
	N_A2S,
	N_DESCRIPTION,
	N_KEY_VALUE,
	N_ANY_VALUE,
	N_ARRAY_VALUE,
	N_KV_LIST,
	N_HEALTH,
	N_HEALTH_ENTRY,
	N_AVAILABLE,
	N_AVAILABLE_ENTRY,
	N_DETAILS,
	N_DETAILS_ENTRY,
};

/* Field numbers from schemas/opamp/v1/{opamp,anyvalue}.proto. */
static enum node child(enum node parent, uint64_t field)
{
	switch (parent) {
	case N_A2S:
		return field == 3    ? N_DESCRIPTION
		       : field == 5  ? N_HEALTH
		       : field == 14 ? N_AVAILABLE
				     : N_SKIP;
	case N_DESCRIPTION:
		return field == 1 || field == 2 ? N_KEY_VALUE : N_SKIP;
	case N_KEY_VALUE:
		return field == 2 ? N_ANY_VALUE : N_SKIP;
	case N_ANY_VALUE:
		return field == 5 ? N_ARRAY_VALUE : field == 6 ? N_KV_LIST : N_SKIP;
	case N_ARRAY_VALUE:
		return field == 1 ? N_ANY_VALUE : N_SKIP;
	case N_KV_LIST:
		return field == 1 ? N_KEY_VALUE : N_SKIP;
	case N_HEALTH:
		return field == 6 ? N_HEALTH_ENTRY : field == 7 ? N_KEY_VALUE : N_SKIP;
	case N_HEALTH_ENTRY:
		return field == 2 ? N_HEALTH : N_SKIP;
	case N_AVAILABLE:
		return field == 1 ? N_AVAILABLE_ENTRY : N_SKIP;
	case N_AVAILABLE_ENTRY:
		return field == 2 ? N_DETAILS : N_SKIP;
	case N_DETAILS:
		return field == 1 ? N_KEY_VALUE : field == 2 ? N_DETAILS_ENTRY : N_SKIP;
	case N_DETAILS_ENTRY:
		return field == 2 ? N_DETAILS : N_SKIP;
	case N_SKIP:
		break;
	}
	return N_SKIP;
}

/* Each byte is looked at once: a sub-message is walked by its parent's call only. */
static int walk(const uint8_t *p, size_t n, enum node node, unsigned depth)
{
	size_t i = 0;

	if (depth == 0)
		return OPD_EPROTO;
	while (i < n) {
		uint64_t key, len;
		ssize_t used = opd_varint_decode(p + i, n - i, &key);

		if (used < 0)
			return OPD_EPROTO;
		i += (size_t)used;
		switch (key & 7) {
		case 0: /* varint */
			used = opd_varint_decode(p + i, n - i, &len);
			if (used < 0)
				return OPD_EPROTO;
			i += (size_t)used;
			break;
		case 1: /* fixed64 */
			if (n - i < 8)
				return OPD_EPROTO;
			i += 8;
			break;
		case 5: /* fixed32 */
			if (n - i < 4)
				return OPD_EPROTO;
			i += 4;
			break;
		case 2: /* length-delimited */
			used = opd_varint_decode(p + i, n - i, &len);
			if (used < 0 || len > n - i - (size_t)used)
				return OPD_EPROTO;
			i += (size_t)used;
			enum node sub = child(node, key >> 3);
			if (sub != N_SKIP && walk(p + i, (size_t)len, sub, depth - 1) != 0)
				return OPD_EPROTO;
			i += (size_t)len;
			break;
		default: /* groups (3, 4) are not in proto3; 6 and 7 do not exist */
			return OPD_EPROTO;
		}
	}
	return 0;
}

int opd_nesting_check_a2s(const uint8_t *p, size_t n, unsigned max_depth)
{
	return walk(p, n, N_A2S, max_depth + 1);
}
