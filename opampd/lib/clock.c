#include "clock.h"

#include <time.h>

static uint64_t read_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t system_now(void *data)
{
	(void)data;
	return read_ms(CLOCK_MONOTONIC);
}

static uint64_t system_wall(void *data)
{
	(void)data;
	return read_ms(CLOCK_REALTIME);
}

const struct opd_clock opd_clock_system = {system_now, system_wall, NULL};
