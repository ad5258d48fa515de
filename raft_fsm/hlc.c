#include "hlc.h"

struct opd_hlc opd_hlc_now(struct opd_hlc *clock, uint64_t now_ms)
{
	if (now_ms > clock->wall_ms) {
		clock->wall_ms = now_ms;
		clock->logical = 0;
	} else if (clock->logical == UINT32_MAX) {
		/* Four billion events in one ms cannot happen; moving the wall on keeps order. */
		clock->wall_ms++;
		clock->logical = 0;
	} else {
		clock->logical++;
	}
	return *clock;
}

void opd_hlc_observe(struct opd_hlc *clock, struct opd_hlc seen)
{
	if (opd_hlc_compare(seen, *clock) > 0)
		*clock = seen;
}

int opd_hlc_compare(struct opd_hlc a, struct opd_hlc b)
{
	if (a.wall_ms != b.wall_ms)
		return a.wall_ms < b.wall_ms ? -1 : 1;
	if (a.logical != b.logical)
		return a.logical < b.logical ? -1 : 1;
	return 0;
}
