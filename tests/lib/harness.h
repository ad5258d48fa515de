/* Shared helpers for the cmocka tests: temp dirs, spawning opampd, fake clock. */
#ifndef OPD_TEST_HARNESS_H
#define OPD_TEST_HARNESS_H

#include "clock.h"

#include <stdint.h>

/* A clock the test moves by hand. */
struct opd_fake_clock {
	uint64_t now_ms;
	uint64_t wall_ms;
	struct opd_clock clock;
};

void opd_fake_clock_init(struct opd_fake_clock *fc, uint64_t start_ms);
void opd_fake_clock_advance(struct opd_fake_clock *fc, uint64_t ms);

#endif
