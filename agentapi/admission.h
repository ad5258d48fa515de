/*
 * Admission of new WebSocket sessions: a token bucket that paces handshakes so
 * that a reconnect storm of a whole fleet cannot hold the loop for seconds
 * (the admin API and the connected agents share it). A handshake over the rate
 * is answered 503 Service Unavailable with Retry-After before the upgrade; the
 * refused clients of one second are told to come back spread over the seconds
 * the rate needs to take them all. Pure: time comes in as an argument.
 */
#ifndef OPD_ADMISSION_H
#define OPD_ADMISSION_H

#include <stdint.h>

#define OPD_ADMISSION_MAX_RETRY_S 60 /* the longest Retry-After we give */

struct opd_admission {
	uint64_t rate;         /* handshakes a second; 0 = no pacing */
	uint64_t burst;        /* what may go at once after a quiet spell */
	uint64_t tokens_milli; /* tokens × 1000, at most burst × 1000 */
	uint64_t last_ms;      /* when tokens were last added */
	uint64_t window_ms;    /* start of the second refused_window counts in */
	uint64_t refused_window;
	uint64_t admitted, refused; /* totals, for metrics */
};

/* rate 0 admits everything; burst 0 means one second's worth (rate). Starts full. */
void opd_admission_init(struct opd_admission *a, uint64_t rate, uint64_t burst, uint64_t now_ms);

/*
 * Take a token for one handshake at now_ms. Returns 0 when it may go ahead, or
 * the Retry-After in seconds (1..OPD_ADMISSION_MAX_RETRY_S) to answer with.
 */
unsigned opd_admission_take(struct opd_admission *a, uint64_t now_ms);

#endif
