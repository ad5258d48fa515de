/*
 * Phi-accrual failure detector (Hayashibara et al.) over an agent's message
 * arrival times. phi = -log10(P(a gap at least this long)), with the
 * inter-arrival times modelled as a normal distribution estimated over a
 * sliding window. Pure: the caller passes the times.
 */
#ifndef OPD_PHI_H
#define OPD_PHI_H

#include <stdint.h>

#define OPD_PHI_WINDOW 16

struct opd_phi {
	uint64_t last_ms;              /* last arrival; 0 = none yet */
	uint32_t gaps[OPD_PHI_WINDOW]; /* ring of inter-arrival times in ms */
	uint8_t n, head;
};

void opd_phi_init(struct opd_phi *d);

/* Record an arrival at now_ms (monotonic). */
void opd_phi_heartbeat(struct opd_phi *d, uint64_t now_ms);

/*
 * phi at now_ms. expected_ms is the interval to assume until enough gaps are
 * seen (the offered heartbeat interval); it also floors the standard
 * deviation (a quarter of the mean) so a perfectly regular agent is not
 * suspected after one late message. 0 when there is no arrival yet.
 */
double opd_phi_value(const struct opd_phi *d, uint64_t now_ms, uint64_t expected_ms);

/* Mean observed inter-arrival time in ms, or expected_ms with fewer than 3 samples. */
uint64_t opd_phi_mean_ms(const struct opd_phi *d, uint64_t expected_ms);

#endif
