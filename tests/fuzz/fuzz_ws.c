/*
 * Fuzz target: server-side WebSocket framing (agentapi/ws.c over wslay).
 * The client's bytes are pushed in chunks whose sizes, like the server's
 * own actions between pushes (take the output, queue a message, a ping or
 * a Close, take the next message), come from a small PRNG seeded by the
 * input, so the framing bytes mutate independently of the schedule.
 *
 * Input: byte 0 picks max_msg (255: the OpAMP limit, else 1 + 8 × byte),
 * byte 1 seeds the schedule, the rest is what the client sends.
 *
 * Checked: no message over max_msg is ever handed out; a violation is
 * sticky; what the server writes is a sequence of whole, unmasked frames
 * with valid opcodes and control payloads of at most 125 bytes; the output
 * produced between two takes stays bounded (the pong flood limit).
 */
#include "err.h"
#include "wire.h"
#include "ws.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHUNK 64
#define CTRL_FRAME_MAX (2 + 125)
/* ws.c closes after 64 control frames without a take; a Close and some slack on top. */
#define CTRL_BOUND (80 * CTRL_FRAME_MAX)

struct sched {
	uint32_t s;
};

static uint32_t next(struct sched *x)
{
	/* xorshift32: any fixed, cheap sequence will do. */
	x->s ^= x->s << 13;
	x->s ^= x->s >> 17;
	x->s ^= x->s << 5;
	return x->s;
}

/* Server frames (RFC 6455 §5.2): whole, never masked, known opcodes. */
static void check_frames(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t op, b1, fin;
		uint64_t len;

		if (n - i < 2)
			abort();
		fin = p[i];
		op = p[i] & 0x0f;
		b1 = p[i + 1];
		if ((p[i] & 0x70) != 0 || (b1 & 0x80) != 0)
			abort(); /* no extensions were negotiated; servers do not mask */
		if (!(op <= 2 || (op >= 8 && op <= 10)))
			abort();
		len = b1 & 0x7f;
		i += 2;
		if (len == 126) {
			if (n - i < 2)
				abort();
			len = (uint64_t)p[i] << 8 | p[i + 1];
			i += 2;
		} else if (len == 127) {
			if (n - i < 8)
				abort();
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | p[i + k];
			i += 8;
		}
		if (op >= 8 && (len > 125 || !(fin & 0x80)))
			abort(); /* control frames: short and never fragmented */
		if (len > n - i)
			abort();
		i += (size_t)len;
	}
}

static void take(struct opd_ws *ws, size_t *queued)
{
	struct opd_buf out;
	size_t n;

	opd_buf_init(&out);
	n = opd_ws_take(ws, &out);
	if (n != opd_buf_avail(&out) || n > *queued + CTRL_BOUND)
		abort();
	check_frames(opd_buf_rptr(&out), n);
	*queued = 0;
	opd_buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t payload[300] = {0};
	struct sched sc;
	struct opd_ws *ws;
	size_t max_msg, queued = 0, off;
	int violation = 0;

	if (size < 2)
		return 0;
	max_msg = data[0] == 255 ? OPD_WIRE_MAX_MSG : 1 + (size_t)data[0] * 8;
	sc.s = 0x9e3779b9u ^ (uint32_t)data[1] * 0x01000193u;
	ws = opd_ws_new(max_msg);
	for (off = 2; off < size;) {
		size_t chunk = 1 + next(&sc) % MAX_CHUNK;
		uint32_t act = next(&sc);
		struct opd_buf msg;
		int rc;

		if (chunk > size - off)
			chunk = size - off;
		rc = opd_ws_push(ws, data + off, chunk);
		off += chunk;
		if (violation != 0 && rc != violation)
			abort(); /* sticky */
		if (rc != 0 && rc != OPD_EPROTO && rc != OPD_ETOOBIG)
			abort();
		violation = rc;
		while (opd_ws_next(ws, &msg) == 1) {
			if (opd_buf_avail(&msg) > max_msg)
				abort();
			opd_buf_fini(&msg);
		}
		switch (act % 8) {
		case 0:
		case 1:
			take(ws, &queued);
			break;
		case 2:
			if (opd_ws_queue(ws, payload, act % sizeof payload) == 0)
				queued += 14 + act % sizeof payload;
			break;
		case 3:
			if (opd_ws_queue_ping(ws) == 0)
				queued += 2;
			break;
		case 4:
			if (act % 64 == 4 &&
			    opd_ws_queue_close(ws, OPD_WS_CLOSE_GOING_AWAY, "bye") == 0)
				queued += 8;
			break;
		default:
			break;
		}
		(void)opd_ws_done(ws);
		(void)opd_ws_peer_close_code(ws);
	}
	take(ws, &queued);
	opd_ws_free(ws);
	return 0;
}
