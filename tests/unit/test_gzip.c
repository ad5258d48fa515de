/* gzip bodies (agentapi/gzip.c): round trips, limits, corrupt input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "gzip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MiB (1024 * 1024)

static void round_trip(void **state)
{
	static const size_t sizes[] = {0, 1, 100, 65536, 65537, 300000};
	uint8_t *data = malloc(300000);

	(void)state;
	assert_non_null(data);
	for (size_t i = 0; i < 300000; i++)
		data[i] = (uint8_t)((i * 2654435761u) >> 13); /* poorly compressible */
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct opd_buf z, out;

		opd_buf_init(&z);
		opd_buf_init(&out);
		assert_int_equal(opd_gzip_deflate(data, sizes[k], &z), 0);
		assert_true(z.len >= 18); /* gzip header + trailer */
		assert_int_equal(z.data[0], 0x1f);
		assert_int_equal(z.data[1], 0x8b);
		assert_int_equal(opd_gzip_inflate(z.data, z.len, sizes[k], &out), 0);
		assert_int_equal(out.len, sizes[k]);
		if (sizes[k] > 0)
			assert_memory_equal(out.data, data, sizes[k]);
		/* One byte less room than needed: too big, and out is left as it was. */
		if (sizes[k] > 0) {
			opd_buf_reset(&out);
			opd_buf_append(&out, "keep", 4);
			opd_buf_consume(&out, 1);
			assert_int_equal(opd_gzip_inflate(z.data, z.len, sizes[k] - 1, &out),
					 OPD_ETOOBIG);
			assert_int_equal(opd_buf_avail(&out), 3);
			assert_memory_equal(opd_buf_rptr(&out), "eep", 3);
		}
		opd_buf_fini(&z);
		opd_buf_fini(&out);
	}
	free(data);
}

static void appends(void **state)
{
	struct opd_buf z, out;

	(void)state;
	opd_buf_init(&z);
	opd_buf_init(&out);
	opd_buf_append(&out, "head:", 5);
	assert_int_equal(opd_gzip_deflate((const uint8_t *)"payload", 7, &z), 0);
	assert_int_equal(opd_gzip_inflate(z.data, z.len, 7, &out), 0);
	assert_int_equal(out.len, 12);
	assert_memory_equal(out.data, "head:payload", 12);
	opd_buf_fini(&z);
	opd_buf_fini(&out);
}

/* 10 MiB of zeros compress to ~10 KiB; inflating must stop near the 4 MiB limit. */
static void bomb(void **state)
{
	uint8_t *zeros = calloc(1, 10 * MiB);
	struct opd_buf z, out;

	(void)state;
	assert_non_null(zeros);
	opd_buf_init(&z);
	opd_buf_init(&out);
	assert_int_equal(opd_gzip_deflate(zeros, 10 * MiB, &z), 0);
	assert_true(z.len < 64 * 1024);
	assert_int_equal(opd_gzip_inflate(z.data, z.len, 4 * MiB, &out), OPD_ETOOBIG);
	assert_int_equal(opd_buf_avail(&out), 0);
	/* Never grew much past the limit while finding out. */
	assert_true(out.cap <= 8 * MiB);
	opd_buf_fini(&out);
	opd_buf_init(&out);
	assert_int_equal(opd_gzip_inflate(z.data, z.len, 10 * MiB, &out), 0);
	assert_int_equal(out.len, 10 * MiB);
	assert_memory_equal(out.data, zeros, 10 * MiB);
	opd_buf_fini(&z);
	opd_buf_fini(&out);
	free(zeros);
}

static void corrupt(void **state)
{
	static const char text[] = "the quick brown fox jumps over the lazy dog";
	uint8_t zlib_fmt[128];
	uLongf zlen = sizeof(zlib_fmt);
	struct opd_buf z, out, twice;

	(void)state;
	opd_buf_init(&z);
	opd_buf_init(&out);
	opd_buf_init(&twice);
	assert_int_equal(opd_gzip_deflate((const uint8_t *)text, sizeof(text), &z), 0);

	/* Empty, not gzip, and zlib's own format are refused. */
	assert_int_equal(opd_gzip_inflate(z.data, 0, 1000, &out), OPD_EPROTO);
	assert_int_equal(opd_gzip_inflate((const uint8_t *)text, sizeof(text), 1000, &out),
			 OPD_EPROTO);
	assert_int_equal(compress(zlib_fmt, &zlen, (const Bytef *)text, sizeof(text)), Z_OK);
	assert_int_equal(opd_gzip_inflate(zlib_fmt, zlen, 1000, &out), OPD_EPROTO);

	/* Every truncation is refused. */
	for (size_t n = 1; n < z.len; n++)
		assert_int_equal(opd_gzip_inflate(z.data, n, 1000, &out), OPD_EPROTO);

	/* A flipped bit in the body or the CRC is refused. */
	z.data[z.len - 6] ^= 0x01;
	assert_int_equal(opd_gzip_inflate(z.data, z.len, 1000, &out), OPD_EPROTO);
	z.data[z.len - 6] ^= 0x01;

	/* Trailing bytes, including a second member, are refused. */
	opd_buf_append(&twice, z.data, z.len);
	opd_buf_append(&twice, z.data, z.len);
	assert_int_equal(opd_gzip_inflate(twice.data, twice.len, 1000, &out), OPD_EPROTO);
	opd_buf_append(&z, "x", 1);
	assert_int_equal(opd_gzip_inflate(z.data, z.len, 1000, &out), OPD_EPROTO);
	assert_int_equal(out.len, 0);

	/* And the intact stream still works. */
	assert_int_equal(opd_gzip_inflate(z.data, z.len - 1, 1000, &out), 0);
	assert_int_equal(out.len, sizeof(text));
	opd_buf_fini(&z);
	opd_buf_fini(&out);
	opd_buf_fini(&twice);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trip),
	    cmocka_unit_test(appends),
	    cmocka_unit_test(bomb),
	    cmocka_unit_test(corrupt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
