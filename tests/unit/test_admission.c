/* The token bucket that paces WebSocket handshakes (agentapi/admission.c). */
#include "admission.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define T0 5000000ull

static void test_unpaced(void **state)
{
	struct opd_admission a;

	(void)state;
	opd_admission_init(&a, 0, 0, T0);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(opd_admission_take(&a, T0), 0);
	assert_int_equal(a.admitted, 100000);
	assert_int_equal(a.refused, 0);
}

/* A full bucket lets a burst through at once, then refuses with spread Retry-After values. */
static void test_burst_then_refused_spread(void **state)
{
	struct opd_admission a;
	unsigned r;

	(void)state;
	opd_admission_init(&a, 100, 0, T0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(opd_admission_take(&a, T0), 0);
	/* The next 100 refused in this second come back after 1 s, the 100 after those after 2 s.
	 */
	for (int i = 0; i < 100; i++)
		assert_int_equal(opd_admission_take(&a, T0), 1);
	for (int i = 0; i < 100; i++)
		assert_int_equal(opd_admission_take(&a, T0), 2);
	assert_int_equal(a.refused, 200);
	/* Capped. */
	for (int i = 0; i < 10000; i++)
		r = opd_admission_take(&a, T0);
	assert_int_equal(r, OPD_ADMISSION_MAX_RETRY_S);
}

/* Tokens come back at the rate, never beyond the burst. */
static void test_refill(void **state)
{
	struct opd_admission a;
	int ok = 0;

	(void)state;
	opd_admission_init(&a, 1000, 10, T0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(opd_admission_take(&a, T0), 0);
	assert_true(opd_admission_take(&a, T0) > 0);
	/* 1000 a second = one a millisecond. */
	assert_int_equal(opd_admission_take(&a, T0 + 1), 0);
	assert_true(opd_admission_take(&a, T0 + 1) > 0);
	/* A long pause fills the bucket to the burst only. */
	for (int i = 0; i < 50; i++)
		ok += opd_admission_take(&a, T0 + 3600000) == 0;
	assert_int_equal(ok, 10);
	/* A clock that goes back adds nothing and breaks nothing. */
	assert_true(opd_admission_take(&a, T0) > 0);
}

/* Steady demand above the rate: admitted at the rate, over a simulated minute. */
static void test_steady_rate(void **state)
{
	struct opd_admission a;

	(void)state;
	opd_admission_init(&a, 200, 0, T0);
	for (uint64_t ms = 1; ms <= 60000; ms++)
		for (int k = 0; k < 5; k++) /* 5000 a second asked */
			(void)opd_admission_take(&a, T0 + ms);
	/* The initial burst (200) plus 200 a second for 60 s (less what fell on a full bucket). */
	assert_in_range(a.admitted, 200 + 200 * 60 - 1, 200 + 200 * 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unpaced),
	    cmocka_unit_test(test_burst_then_refused_spread),
	    cmocka_unit_test(test_refill),
	    cmocka_unit_test(test_steady_rate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
