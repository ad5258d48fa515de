/*
 * Injectable time. Everything that reasons about time (sessions, health,
 * timeouts) takes a struct opd_clock so tests can drive a fake one.
 */
#ifndef OPD_CLOCK_H
#define OPD_CLOCK_H

#include <stdint.h>

struct opd_clock {
	/* Monotonic milliseconds, for intervals and timeouts. */
	uint64_t (*now_ms)(void *data);
	/* Wall-clock milliseconds since the Unix epoch, for display and records. */
	uint64_t (*wall_ms)(void *data);
	void *data;
};

/* The process clock: CLOCK_MONOTONIC and CLOCK_REALTIME. */
extern const struct opd_clock opd_clock_system;

static inline uint64_t opd_clock_now(const struct opd_clock *c)
{
	return c->now_ms(c->data);
}
static inline uint64_t opd_clock_wall(const struct opd_clock *c)
{
	return c->wall_ms(c->data);
}

#endif
