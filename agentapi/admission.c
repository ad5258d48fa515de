#include "admission.h"

void opd_admission_init(struct opd_admission *a, uint64_t rate, uint64_t burst, uint64_t now_ms)
{
	*a = (struct opd_admission){.rate = rate, .burst = burst != 0 ? burst : rate};
	a->tokens_milli = a->burst * 1000;
	a->last_ms = now_ms;
	a->window_ms = now_ms;
}

static void refill(struct opd_admission *a, uint64_t now_ms)
{
	uint64_t cap = a->burst * 1000, elapsed, add;

	if (now_ms <= a->last_ms)
		return;
	/* rate tokens a second = rate milli-tokens a millisecond; a long pause just fills it. */
	elapsed = now_ms - a->last_ms;
	add = elapsed > cap / a->rate ? cap : elapsed * a->rate;
	a->tokens_milli = cap - a->tokens_milli < add ? cap : a->tokens_milli + add;
	a->last_ms = now_ms;
}

unsigned opd_admission_take(struct opd_admission *a, uint64_t now_ms)
{
	uint64_t wait;

	if (a->rate == 0) {
		a->admitted++;
		return 0;
	}
	refill(a, now_ms);
	if (a->tokens_milli >= 1000) {
		a->tokens_milli -= 1000;
		a->admitted++;
		return 0;
	}
	a->refused++;
	if (now_ms < a->window_ms || now_ms - a->window_ms >= 1000) {
		a->window_ms = now_ms;
		a->refused_window = 0;
	}
	/*
	 * The n-th client refused in this second comes back after 1 + n / rate
	 * seconds: a storm returns at the rate we take it, not all at once again.
	 */
	wait = 1 + a->refused_window++ / a->rate;
	return wait > OPD_ADMISSION_MAX_RETRY_S ? OPD_ADMISSION_MAX_RETRY_S : (unsigned)wait;
}
