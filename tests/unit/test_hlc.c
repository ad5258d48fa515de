/* hlc: hybrid logical clock stays monotonic when physical time goes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hlc.h"

static struct opd_hlc ts(uint64_t wall, uint32_t logical)
{
	return (struct opd_hlc){.wall_ms = wall, .logical = logical};
}

static void test_compare(void **state)
{
	(void)state;
	assert_int_equal(opd_hlc_compare(ts(1, 0), ts(1, 0)), 0);
	assert_true(opd_hlc_compare(ts(1, 5), ts(2, 0)) < 0);
	assert_true(opd_hlc_compare(ts(2, 0), ts(1, 5)) > 0);
	assert_true(opd_hlc_compare(ts(2, 1), ts(2, 2)) < 0);
	assert_true(opd_hlc_compare(ts(2, 3), ts(2, 2)) > 0);
}

static void test_now_monotonic(void **state)
{
	struct opd_hlc c = {0}, prev, t;
	/* Physical time jumps around: forward, still, back by a lot, forward again. */
	static const uint64_t clock[] = {100, 100, 100, 150, 90, 10, 151, 151, 150, 1000, 999};

	(void)state;
	prev = opd_hlc_now(&c, 50);
	assert_int_equal(prev.wall_ms, 50);
	assert_int_equal(prev.logical, 0);
	for (size_t i = 0; i < sizeof clock / sizeof clock[0]; i++) {
		t = opd_hlc_now(&c, clock[i]);
		assert_true(opd_hlc_compare(t, prev) > 0);
		assert_int_equal(opd_hlc_compare(t, c), 0);
		assert_true(t.wall_ms >= clock[i]);
		prev = t;
	}
	/* 100,100,100: logical counts within a ms; back in time keeps wall and counts on. */
	c = (struct opd_hlc){0};
	assert_int_equal(opd_hlc_now(&c, 100).logical, 0);
	assert_int_equal(opd_hlc_now(&c, 100).logical, 1);
	t = opd_hlc_now(&c, 40);
	assert_int_equal(t.wall_ms, 100);
	assert_int_equal(t.logical, 2);
	t = opd_hlc_now(&c, 101);
	assert_int_equal(t.wall_ms, 101);
	assert_int_equal(t.logical, 0);
	/* The logical counter cannot wrap around to an earlier timestamp. */
	c = ts(7, UINT32_MAX);
	t = opd_hlc_now(&c, 7);
	assert_true(opd_hlc_compare(t, ts(7, UINT32_MAX)) > 0);
}

static void test_observe(void **state)
{
	struct opd_hlc c = ts(100, 3), t;

	(void)state;
	/* An older timestamp changes nothing. */
	opd_hlc_observe(&c, ts(99, 50));
	assert_int_equal(opd_hlc_compare(c, ts(100, 3)), 0);
	opd_hlc_observe(&c, ts(100, 2));
	assert_int_equal(opd_hlc_compare(c, ts(100, 3)), 0);
	/* A newer one (another leader's clock runs ahead): later local stamps come after it. */
	opd_hlc_observe(&c, ts(5000, 7));
	assert_int_equal(opd_hlc_compare(c, ts(5000, 7)), 0);
	t = opd_hlc_now(&c, 200);
	assert_true(opd_hlc_compare(t, ts(5000, 7)) > 0);
	assert_int_equal(t.wall_ms, 5000);
	assert_int_equal(t.logical, 8);
	opd_hlc_observe(&c, ts(5000, 20));
	t = opd_hlc_now(&c, 5000);
	assert_int_equal(t.logical, 21);
	t = opd_hlc_now(&c, 6000);
	assert_int_equal(opd_hlc_compare(t, ts(6000, 0)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compare),
	    cmocka_unit_test(test_now_monotonic),
	    cmocka_unit_test(test_observe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
