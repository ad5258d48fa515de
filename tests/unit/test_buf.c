/* struct opd_buf (opampd/lib/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "buf.h"

#include <stdlib.h>
#include <string.h>

static void append_consume(void **state)
{
	struct opd_buf b;

	(void)state;
	opd_buf_init(&b);
	assert_null(b.data);
	assert_int_equal(opd_buf_avail(&b), 0);
	opd_buf_append(&b, "hello", 5);
	opd_buf_append_byte(&b, ' ');
	opd_buf_appendf(&b, "%s-%d", "world", 42);
	assert_int_equal(opd_buf_avail(&b), 14);
	assert_memory_equal(opd_buf_rptr(&b), "hello world-42", 14);
	opd_buf_consume(&b, 6);
	assert_int_equal(b.off, 6);
	assert_int_equal(opd_buf_avail(&b), 8);
	assert_memory_equal(opd_buf_rptr(&b), "world-42", 8);
	/* Consuming everything rewinds to the start. */
	opd_buf_consume(&b, 8);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 0);
	assert_non_null(b.data); /* allocation kept */
	opd_buf_append(&b, "", 0);
	assert_int_equal(opd_buf_avail(&b), 0);
	opd_buf_fini(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

static void reserve_commit_grow(void **state)
{
	struct opd_buf b;
	uint8_t *w;

	(void)state;
	opd_buf_init(&b);
	w = opd_buf_reserve(&b, 10);
	assert_true(b.cap >= 10);
	memcpy(w, "0123456789", 10);
	assert_int_equal(opd_buf_avail(&b), 0); /* not committed yet */
	opd_buf_commit(&b, 4);
	assert_memory_equal(opd_buf_rptr(&b), "0123", 4);
	/* Growing far keeps the content. */
	w = opd_buf_reserve(&b, 100000);
	assert_true(b.cap - b.len >= 100000);
	memset(w, 'x', 100000);
	opd_buf_commit(&b, 100000);
	assert_int_equal(opd_buf_avail(&b), 100004);
	assert_memory_equal(opd_buf_rptr(&b), "0123x", 5);
	assert_int_equal(b.data[100003], 'x');
	opd_buf_fini(&b);
}

/* Reserve reclaims consumed space before growing. */
static void compacts(void **state)
{
	struct opd_buf b;
	size_t cap;
	uint8_t *w;

	(void)state;
	opd_buf_init(&b);
	opd_buf_reserve(&b, 1);
	cap = b.cap;
	memset(opd_buf_reserve(&b, cap), 'a', cap);
	opd_buf_commit(&b, cap);
	b.data[cap - 1] = 'z';
	opd_buf_consume(&b, cap - 1);
	assert_int_equal(b.off, cap - 1);
	w = opd_buf_reserve(&b, cap - 1);
	assert_int_equal(b.cap, cap); /* no growth: compacted */
	assert_int_equal(b.off, 0);
	assert_int_equal(opd_buf_avail(&b), 1);
	assert_int_equal(b.data[0], 'z');
	assert_ptr_equal(w, b.data + 1);
	opd_buf_fini(&b);
}

static void steal(void **state)
{
	struct opd_buf b;
	uint8_t *p;
	size_t len = 99;

	(void)state;
	opd_buf_init(&b);
	opd_buf_append(&b, "xxabc", 5);
	opd_buf_consume(&b, 2);
	p = opd_buf_steal(&b, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(p, "abc", 3); /* compacted to the front */
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	free(p);
	/* Stealing an empty buffer gives NULL and 0. */
	p = opd_buf_steal(&b, &len);
	assert_null(p);
	assert_int_equal(len, 0);
}

static void reset_and_shrink(void **state)
{
	struct opd_buf b;

	(void)state;
	opd_buf_init(&b);
	opd_buf_append(&b, "abc", 3);
	/* Shrink keeps a buffer with unread bytes. */
	opd_buf_shrink(&b);
	assert_non_null(b.data);
	assert_int_equal(opd_buf_avail(&b), 3);
	opd_buf_reset(&b);
	assert_int_equal(opd_buf_avail(&b), 0);
	assert_non_null(b.data);
	opd_buf_shrink(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
	/* Usable again afterwards. */
	opd_buf_append(&b, "de", 2);
	assert_memory_equal(opd_buf_rptr(&b), "de", 2);
	opd_buf_fini(&b);
}

static void appendf_long(void **state)
{
	struct opd_buf b;
	char big[1000];

	(void)state;
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	opd_buf_init(&b);
	opd_buf_appendf(&b, "<%s>", big);
	assert_int_equal(opd_buf_avail(&b), 1001);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[1000], '>');
	opd_buf_appendf(&b, "%s", "");
	assert_int_equal(opd_buf_avail(&b), 1001);
	opd_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(append_consume),   cmocka_unit_test(reserve_commit_grow),
	    cmocka_unit_test(compacts),         cmocka_unit_test(steal),
	    cmocka_unit_test(reset_and_shrink), cmocka_unit_test(appendf_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
