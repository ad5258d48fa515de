/*
 * The nesting guard: real shapes pass, a health tree or AnyValue nested past
 * the limit is refused before protobuf-c would recurse into it.
 */
#include "err.h"
#include "nesting.h"
#include "varint.h"
#include "wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*
 * Build AgentToServer{health = ComponentHealth{map{"c": ComponentHealth{...}}}}
 * nested depth times, from the inside out, by hand: field 6 entry {1: "c",
 * 2: child}. Returns the bytes (malloc'd).
 */
static uint8_t *nested_health(unsigned depth, size_t *len)
{
	size_t cap = 16 + (size_t)depth * 16, n = 0;
	uint8_t *inner = calloc(1, cap), *tmp = calloc(1, cap);

	for (unsigned d = 0; d < depth; d++) {
		/* entry = {0a 01 'c', 12 <len> inner} */
		size_t m = 0;
		uint8_t lenbuf[10];
		size_t ll = opd_varint_encode(n, lenbuf);
		uint8_t entry_hdr[3] = {0x0a, 0x01, 'c'};
		memcpy(tmp + m, entry_hdr, 3), m += 3;
		tmp[m++] = 0x12;
		memcpy(tmp + m, lenbuf, ll), m += ll;
		memcpy(tmp + m, inner, n), m += n;
		/* health = {32 <len> entry} */
		ll = opd_varint_encode(m, lenbuf);
		n = 0;
		inner[n++] = 0x32;
		memcpy(inner + n, lenbuf, ll), n += ll;
		memcpy(inner + n, tmp, m), n += m;
	}
	/* a2s = {0a 10 uid, 2a <len> health} */
	uint8_t *out = calloc(1, n + 32);
	size_t o = 0;
	uint8_t lenbuf[10];
	size_t ll = opd_varint_encode(n, lenbuf);
	out[o++] = 0x0a;
	out[o++] = 0x10;
	memset(out + o, 0x42, 16), o += 16;
	out[o++] = 0x2a;
	memcpy(out + o, lenbuf, ll), o += ll;
	memcpy(out + o, inner, n), o += n;
	free(inner);
	free(tmp);
	*len = o;
	return out;
}

static void test_shallow_health_passes_and_decodes(void **state)
{
	size_t n;
	uint8_t *p = nested_health(5, &n);
	opd_a2s *m = NULL;

	(void)state;
	assert_int_equal(opd_nesting_check_a2s(p, n, OPD_NESTING_MAX), 0);
	assert_int_equal(opd_wire_decode_http(p, n, NULL, &m), 0);
	assert_non_null(m->health);
	assert_int_equal(m->health->n_component_health_map, 1);
	opd_wire_free_a2s(m, NULL);
	free(p);
}

static void test_limit_is_exact(void **state)
{
	size_t n;
	uint8_t *p;

	(void)state;
	/* d levels are 2d + 1 nested messages: health, entry, ..., the innermost (empty) health. */
	p = nested_health(OPD_NESTING_MAX / 2 - 1, &n); /* 63 */
	assert_int_equal(opd_nesting_check_a2s(p, n, OPD_NESTING_MAX), 0);
	free(p);
	p = nested_health(OPD_NESTING_MAX / 2, &n); /* 65 */
	assert_int_equal(opd_nesting_check_a2s(p, n, OPD_NESTING_MAX), OPD_EPROTO);
	free(p);
}

/* A message that would overflow the stack inside protobuf-c is refused instead. */
static void test_deep_health_refused_by_decoder(void **state)
{
	size_t n;
	uint8_t *p = nested_health(5000, &n);
	opd_a2s *m = NULL;

	(void)state;
	assert_true(n < OPD_WIRE_MAX_MSG);
	assert_int_equal(opd_wire_decode_http(p, n, NULL, &m), OPD_EPROTO);
	assert_null(m);
	free(p);
}

static void test_deep_anyvalue_refused(void **state)
{
	/* agent_description{identifying{key "k", value AnyValue{array{values AnyValue{array...}}}}}
	 */
	enum { DEPTH = 1000 };
	uint8_t *buf = calloc(1, DEPTH * 16 + 64), *tmp = calloc(1, DEPTH * 16 + 64);
	size_t n = 0;
	uint8_t lenbuf[10];
	opd_a2s *m = NULL;

	(void)state;
	for (int d = 0; d < DEPTH; d++) {
		/* array_value(5) = ArrayValue{values(1) = AnyValue(buf)} */
		size_t ll = opd_varint_encode(n, lenbuf), t = 0;
		tmp[t++] = 0x0a;
		memcpy(tmp + t, lenbuf, ll), t += ll;
		memcpy(tmp + t, buf, n), t += n;
		ll = opd_varint_encode(t, lenbuf);
		n = 0;
		buf[n++] = 0x2a;
		memcpy(buf + n, lenbuf, ll), n += ll;
		memcpy(buf + n, tmp, t), n += t;
	}
	/* KeyValue{key "k", value(2) = AnyValue(buf)} inside description(3).identifying(1) */
	size_t t = 0, ll;
	tmp[t++] = 0x0a, tmp[t++] = 1, tmp[t++] = 'k';
	ll = opd_varint_encode(n, lenbuf);
	tmp[t++] = 0x12;
	memcpy(tmp + t, lenbuf, ll), t += ll;
	memcpy(tmp + t, buf, n), t += n;
	n = 0;
	ll = opd_varint_encode(t, lenbuf);
	buf[n++] = 0x0a;
	memcpy(buf + n, lenbuf, ll), n += ll;
	memcpy(buf + n, tmp, t), n += t;
	uint8_t *msg = calloc(1, n + 16);
	size_t o = 0;
	ll = opd_varint_encode(n, lenbuf);
	msg[o++] = 0x1a;
	memcpy(msg + o, lenbuf, ll), o += ll;
	memcpy(msg + o, buf, n), o += n;
	assert_int_equal(opd_wire_decode_http(msg, o, NULL, &m), OPD_EPROTO);
	free(buf);
	free(tmp);
	free(msg);
}

static void test_truncated_framing_refused(void **state)
{
	/* health(5) claims 100 bytes, 2 follow. */
	static const uint8_t bad[] = {0x2a, 100, 0x08, 0x01};

	(void)state;
	assert_int_equal(opd_nesting_check_a2s(bad, sizeof bad, OPD_NESTING_MAX), OPD_EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shallow_health_passes_and_decodes),
	    cmocka_unit_test(test_limit_is_exact),
	    cmocka_unit_test(test_deep_health_refused_by_decoder),
	    cmocka_unit_test(test_deep_anyvalue_refused),
	    cmocka_unit_test(test_truncated_framing_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
