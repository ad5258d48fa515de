#include "harness.h"

static uint64_t fake_now(void *data)
{
	return ((struct opd_fake_clock *)data)->now_ms;
}

static uint64_t fake_wall(void *data)
{
	return ((struct opd_fake_clock *)data)->wall_ms;
}

void opd_fake_clock_init(struct opd_fake_clock *fc, uint64_t start_ms)
{
	fc->now_ms = start_ms;
	fc->wall_ms = 1700000000000ull + start_ms;
	fc->clock = (struct opd_clock){fake_now, fake_wall, fc};
}

void opd_fake_clock_advance(struct opd_fake_clock *fc, uint64_t ms)
{
	fc->now_ms += ms;
	fc->wall_ms += ms;
}
