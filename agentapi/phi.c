#include "phi.h"

#include <math.h>
#include <string.h>

/* A regular agent still jitters; below this the model would be overconfident. */
#define MIN_SD_MS 100.0

void opd_phi_init(struct opd_phi *d)
{
	memset(d, 0, sizeof *d);
}

void opd_phi_heartbeat(struct opd_phi *d, uint64_t now_ms)
{
	if (d->last_ms != 0 && now_ms >= d->last_ms) {
		uint64_t gap = now_ms - d->last_ms;

		d->gaps[d->head] = gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap;
		d->head = (uint8_t)((d->head + 1) % OPD_PHI_WINDOW);
		if (d->n < OPD_PHI_WINDOW)
			d->n++;
	}
	if (now_ms >= d->last_ms)
		d->last_ms = now_ms;
}

/* The ring's order does not matter for mean and variance: sum its first n slots. */
static double mean_of(const struct opd_phi *d)
{
	double sum = 0;

	for (unsigned i = 0; i < d->n; i++)
		sum += d->gaps[i];
	return sum / d->n;
}

uint64_t opd_phi_mean_ms(const struct opd_phi *d, uint64_t expected_ms)
{
	if (d->n < 3)
		return expected_ms;
	return (uint64_t)(mean_of(d) + 0.5);
}

double opd_phi_value(const struct opd_phi *d, uint64_t now_ms, uint64_t expected_ms)
{
	double mean, sd = 0, t, y, k;

	if (d->last_ms == 0)
		return 0;
	t = now_ms > d->last_ms ? (double)(now_ms - d->last_ms) : 0;
	if (d->n < 3) {
		mean = (double)expected_ms;
	} else {
		double var = 0;

		mean = mean_of(d);
		for (unsigned i = 0; i < d->n; i++)
			var += (d->gaps[i] - mean) * (d->gaps[i] - mean);
		sd = sqrt(var / d->n);
	}
	if (sd < mean / 4)
		sd = mean / 4;
	if (sd < MIN_SD_MS)
		sd = MIN_SD_MS;

	/*
	 * Logistic approximation of the normal CDF (as Akka's detector):
	 * P(gap > t) ~ e / (1 + e) with e = exp(-y (1.5976 + 0.070566 y^2)).
	 * Past the mean we stay in log space, so phi keeps growing instead of
	 * saturating at infinity once e underflows.
	 */
	y = (t - mean) / sd;
	k = y * (1.5976 + 0.070566 * y * y);
	if (t > mean)
		return (k + log1p(exp(-k))) / log(10.0);
	return -log10(1.0 - 1.0 / (1.0 + exp(-k)));
}
