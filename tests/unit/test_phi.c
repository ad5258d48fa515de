/* The phi-accrual failure detector over heartbeat arrival times. */
#include "phi.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define T0 1000000ull /* monotonic start: 0 means "no arrival" */

static void beats(struct opd_phi *d, uint64_t *t, int n, uint64_t gap)
{
	for (int i = 0; i < n; i++) {
		*t += gap;
		opd_phi_heartbeat(d, *t);
	}
}

static void test_no_arrival(void **state)
{
	struct opd_phi d;

	(void)state;
	opd_phi_init(&d);
	assert_true(opd_phi_value(&d, T0 + 3600000, 30000) == 0.0);
	assert_int_equal(opd_phi_mean_ms(&d, 30000), 30000);
}

static void test_regular_30s(void **state)
{
	struct opd_phi d;
	uint64_t t = T0, cross = 0;
	double prev = -1;

	(void)state;
	opd_phi_init(&d);
	opd_phi_heartbeat(&d, t);
	beats(&d, &t, 10, 30000);
	assert_int_equal(opd_phi_mean_ms(&d, 1000), 30000);

	assert_true(opd_phi_value(&d, t + 1000, 30000) < 0.5);
	assert_true(opd_phi_value(&d, t + 31000, 30000) < 1.0);
	assert_true(opd_phi_value(&d, t + 60000, 30000) < 8.0);
	/* Non-decreasing with silence, crosses 8 somewhere past a minute, keeps growing. */
	for (uint64_t s = 0; s <= 600000; s += 500) {
		double phi = opd_phi_value(&d, t + s, 30000);

		assert_false(isnan(phi));
		assert_true(phi >= prev);
		if (cross == 0 && phi >= 8.0)
			cross = s;
		prev = phi;
	}
	assert_true(cross > 60000 && cross < 90000);
	assert_true(isfinite(prev));
	assert_true(prev > 100.0);
	assert_true(opd_phi_value(&d, t + 86400000ull, 30000) > prev);
}

static void test_prior_until_three_gaps(void **state)
{
	struct opd_phi d;
	uint64_t t = T0;

	(void)state;
	opd_phi_init(&d);
	opd_phi_heartbeat(&d, t);
	beats(&d, &t, 2, 1000); /* two fast gaps: not enough to trust */
	assert_int_equal(opd_phi_mean_ms(&d, 30000), 30000);
	assert_true(opd_phi_value(&d, t + 20000, 30000) < 1.0);
	assert_true(opd_phi_value(&d, t + 20000, 5000) > 8.0);
	beats(&d, &t, 1, 1000);
	assert_int_equal(opd_phi_mean_ms(&d, 30000), 1000);
	/* Now the observed 1 s mean rules (sd floored at 250 ms). */
	assert_true(opd_phi_value(&d, t + 20000, 30000) > 8.0);
}

static void test_ring_window(void **state)
{
	struct opd_phi d;
	uint64_t t = T0;

	(void)state;
	opd_phi_init(&d);
	opd_phi_heartbeat(&d, t);
	beats(&d, &t, 40, 1000);
	assert_int_equal(d.n, OPD_PHI_WINDOW);
	assert_int_equal(opd_phi_mean_ms(&d, 0), 1000);
	beats(&d, &t, OPD_PHI_WINDOW / 2, 9000);
	assert_int_equal(opd_phi_mean_ms(&d, 0), 5000);
	beats(&d, &t, OPD_PHI_WINDOW / 2, 9000);
	/* The fast gaps have all left the window. */
	assert_int_equal(opd_phi_mean_ms(&d, 0), 9000);
	assert_int_equal(d.n, OPD_PHI_WINDOW);
}

static void test_sd_floor(void **state)
{
	struct opd_phi d;
	uint64_t t = T0;

	(void)state;
	opd_phi_init(&d);
	opd_phi_heartbeat(&d, t);
	beats(&d, &t, 16, 200);
	/* Perfectly regular 200 ms: sd would be 0; the 100 ms floor keeps phi moderate. */
	assert_true(opd_phi_value(&d, t + 300, 200) < 2.0);
	assert_true(opd_phi_value(&d, t + 300, 200) > 0.5);
	/* Clock going backwards is not an arrival and not a negative gap. */
	opd_phi_heartbeat(&d, t - 50);
	assert_int_equal(opd_phi_mean_ms(&d, 0), 200);
	assert_true(opd_phi_value(&d, t - 100, 200) < 0.5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_arrival),
	    cmocka_unit_test(test_regular_30s),
	    cmocka_unit_test(test_prior_until_three_gaps),
	    cmocka_unit_test(test_ring_window),
	    cmocka_unit_test(test_sd_floor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
