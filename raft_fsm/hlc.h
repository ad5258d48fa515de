/*
 * Hybrid logical clock (Kulkarni et al.): a physical part in ms and a logical
 * counter. Timestamps are monotonic on one node even when its clock steps
 * back, and across leader changes because every node observes the timestamps
 * of the commands it applies. Pure: physical time is an argument.
 */
#ifndef OPD_HLC_H
#define OPD_HLC_H

#include <stdint.h>

struct opd_hlc {
	uint64_t wall_ms;
	uint32_t logical;
};

/* A timestamp for a new event at physical time now_ms; strictly after every earlier one. */
struct opd_hlc opd_hlc_now(struct opd_hlc *clock, uint64_t now_ms);

/* Take in a timestamp seen in an applied command, so later local ones come after it. */
void opd_hlc_observe(struct opd_hlc *clock, struct opd_hlc seen);

/* <0, 0, >0 as a is before, equal to, after b. */
int opd_hlc_compare(struct opd_hlc a, struct opd_hlc b);

#endif
