/* Protobuf base-128 varints (opampd/lib/varint.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "varint.h"

static size_t expected_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static void round_trip(void **state)
{
	static const uint64_t values[] = {
	    0,
	    1,
	    127,
	    128,
	    255,
	    300,
	    16383,
	    16384,
	    0xffffffffu,
	    (uint64_t)1 << 32,
	    ((uint64_t)1 << 56) - 1,
	    (uint64_t)1 << 56,
	    (uint64_t)1 << 63,
	    UINT64_MAX - 1,
	    UINT64_MAX,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint8_t buf[OPD_VARINT_MAX + 1];
		uint64_t out = 0xdead;
		size_t n = opd_varint_encode(values[i], buf);

		assert_int_equal(n, expected_len(values[i]));
		assert_in_range(n, 1, OPD_VARINT_MAX);
		/* Every byte but the last has the continuation bit. */
		for (size_t j = 0; j + 1 < n; j++)
			assert_true(buf[j] & 0x80);
		assert_false(buf[n - 1] & 0x80);
		assert_int_equal(opd_varint_decode(buf, n, &out), (ssize_t)n);
		assert_true(out == values[i]);
		/* Trailing bytes are not consumed. */
		buf[n] = 0x7f;
		assert_int_equal(opd_varint_decode(buf, n + 1, &out), (ssize_t)n);
		assert_true(out == values[i]);
	}
}

static void known_encodings(void **state)
{
	uint8_t buf[OPD_VARINT_MAX];
	uint64_t out = 0;

	(void)state;
	assert_int_equal(opd_varint_encode(300, buf), 2);
	assert_memory_equal(buf, "\xac\x02", 2);
	assert_int_equal(opd_varint_encode(0, buf), 1);
	assert_int_equal(buf[0], 0);
	/* The OpAMP WebSocket header is a single 0x00 byte. */
	assert_int_equal(opd_varint_decode((const uint8_t *)"\x00\x0a", 2, &out), 1);
	assert_true(out == 0);
	assert_int_equal(opd_varint_encode(UINT64_MAX, buf), 10);
	assert_memory_equal(buf, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);
	/* Non-minimal encodings decode (protobuf accepts them). */
	assert_int_equal(opd_varint_decode((const uint8_t *)"\x80\x80\x00", 3, &out), 3);
	assert_true(out == 0);
}

static void ten_byte_limit(void **state)
{
	uint64_t out = 42;

	(void)state;
	/* Tenth byte may only be 0 or 1: anything else overflows 64 bits. */
	assert_int_equal(opd_varint_decode(
			     (const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10, &out),
			 OPD_EPROTO);
	assert_int_equal(opd_varint_decode(
			     (const uint8_t *)"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 10, &out),
			 OPD_EPROTO);
	assert_int_equal(out, 42); /* untouched on failure */
	assert_int_equal(opd_varint_decode(
			     (const uint8_t *)"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10, &out),
			 10);
	assert_true(out == (uint64_t)1 << 63);
	/* An eleventh byte is never read: a continuation bit on the tenth is an error. */
	assert_int_equal(
	    opd_varint_decode((const uint8_t *)"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x81\x00", 11,
			      &out),
	    OPD_EPROTO);
}

static void truncated(void **state)
{
	uint8_t buf[OPD_VARINT_MAX];
	uint64_t out = 7;
	size_t n = opd_varint_encode(UINT64_MAX, buf);

	(void)state;
	assert_int_equal(opd_varint_decode(buf, 0, &out), OPD_EAGAIN);
	for (size_t i = 1; i < n; i++)
		assert_int_equal(opd_varint_decode(buf, i, &out), OPD_EAGAIN);
	assert_int_equal(out, 7);
	assert_int_equal(opd_varint_decode(buf, n, &out), (ssize_t)n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trip),
	    cmocka_unit_test(known_encodings),
	    cmocka_unit_test(ten_byte_limit),
	    cmocka_unit_test(truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
