/*
 * agentapi/ws.c frees wslay's event context while a connection is idle
 * (between whole messages, nothing to send) and makes a new one for the next
 * byte. These tests take the output after every pushed byte, so the context
 * is released at every point where it may be, and check that the stream still
 * behaves as one: fragments with control frames between them, pongs, close
 * handshakes and limits after a release.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MSG (64 * 1024)

static const uint8_t mask_key[4] = {0x5a, 0x01, 0xc3, 0x7e};

static void client_frame(struct opd_buf *b, int fin, int opcode, const void *p, size_t n)
{
	const uint8_t *src = p;
	uint8_t *w;

	opd_buf_append_byte(b, (uint8_t)((fin ? 0x80 : 0) | opcode));
	if (n < 126) {
		opd_buf_append_byte(b, (uint8_t)(0x80 | n));
	} else {
		assert_true(n <= 0xffff);
		opd_buf_append_byte(b, 0x80 | 126);
		opd_buf_append_byte(b, (uint8_t)(n >> 8));
		opd_buf_append_byte(b, (uint8_t)n);
	}
	opd_buf_append(b, mask_key, 4);
	w = opd_buf_reserve(b, n + 1);
	for (size_t i = 0; i < n; i++)
		w[i] = (uint8_t)(src[i] ^ mask_key[i % 4]);
	opd_buf_commit(b, n);
}

/* Server frames in out: returns how many, the opcodes in ops and payloads concatenated in pl. */
static size_t server_frames(const struct opd_buf *out, int *ops, size_t max, struct opd_buf *pl)
{
	const uint8_t *p = opd_buf_rptr(out);
	size_t n = opd_buf_avail(out), k = 0;

	while (n > 0) {
		size_t h = 2, len;

		assert_true(n >= 2 && k < max);
		assert_int_equal(p[1] & 0x80, 0);
		len = p[1] & 0x7f;
		assert_true(len < 126); /* small frames only in these tests */
		assert_true(n >= h + len);
		ops[k++] = p[0] & 0x0f;
		opd_buf_append(pl, p + h, len);
		p += h + len;
		n -= h + len;
	}
	return k;
}

static void expect_msg(struct opd_ws *ws, const void *want, size_t len)
{
	struct opd_buf msg;

	assert_int_equal(opd_ws_next(ws, &msg), 1);
	assert_int_equal(msg.len - msg.off, len);
	assert_memory_equal(msg.data + msg.off, want, len);
	free(msg.data);
}

/* A fresh codec holds nothing; after a whole exchange it holds nothing again. */
static void idle_between_messages(void **state)
{
	struct opd_ws *ws = opd_ws_new(MAX_MSG);
	struct opd_buf in, out, pl;
	int ops[4];

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	opd_buf_init(&pl);
	assert_int_equal(opd_ws_idle(ws), 1);
	client_frame(&in, 1, 0x2, "hello", 5);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	assert_int_equal(opd_ws_idle(ws), 0);
	expect_msg(ws, "hello", 5);
	assert_int_equal(opd_ws_queue(ws, (const uint8_t *)"reply", 5), 0);
	assert_true(opd_ws_take(ws, &out) > 0);
	assert_int_equal(opd_ws_idle(ws), 1);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal(ops[0], 0x2);
	assert_memory_equal(pl.data, "reply", 5);
	/* A ping of ours while idle, and the next message, work as on a fresh codec. */
	opd_buf_reset(&out);
	opd_buf_reset(&pl);
	assert_int_equal(opd_ws_queue_ping(ws), 0);
	assert_true(opd_ws_take(ws, &out) > 0);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal(ops[0], 0x9);
	assert_int_equal(opd_ws_idle(ws), 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, "hello", 5);
	opd_buf_reset(&out);
	assert_int_equal(opd_ws_take(ws, &out), 0);
	assert_int_equal(opd_ws_idle(ws), 1);
	assert_int_equal(opd_ws_done(ws), 0);
	assert_int_equal(opd_ws_peer_close_code(ws), 0);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_buf_fini(&pl);
	opd_ws_free(ws);
}

/*
 * Two messages (one fragmented with a ping and a pong between its fragments,
 * one of 300 bytes with a 16-bit length) pushed one byte at a time with a take
 * after every byte: the codec is idle exactly at the end of each whole message.
 */
static void byte_by_byte_with_takes(void **state)
{
	struct opd_ws *ws = opd_ws_new(MAX_MSG);
	struct opd_buf in, out, pl, msg;
	uint8_t big[300];
	size_t ends[2], idle_at[8], n_idle = 0;
	int ops[8];

	(void)state;
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	opd_buf_init(&in);
	opd_buf_init(&out);
	opd_buf_init(&pl);
	client_frame(&in, 0, 0x2, "abc", 3);
	client_frame(&in, 1, 0x9, "p1", 2);
	client_frame(&in, 1, 0xa, "", 0);
	client_frame(&in, 0, 0x0, "de", 2);
	client_frame(&in, 1, 0x0, "f", 1);
	ends[0] = in.len;
	client_frame(&in, 1, 0x2, big, sizeof big);
	ends[1] = in.len;
	for (size_t i = 0; i < in.len; i++) {
		assert_int_equal(opd_ws_push(ws, in.data + i, 1), 0);
		opd_ws_take(ws, &out);
		if (opd_ws_idle(ws)) {
			assert_true(n_idle < 8);
			idle_at[n_idle++] = i + 1;
		}
	}
	assert_int_equal(n_idle, 2);
	assert_int_equal(idle_at[0], ends[0]);
	assert_int_equal(idle_at[1], ends[1]);
	expect_msg(ws, "abcdef", 6);
	expect_msg(ws, big, sizeof big);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	/* The ping was answered, once, with its payload. */
	assert_int_equal(server_frames(&out, ops, 8, &pl), 1);
	assert_int_equal(ops[0], 0xa);
	assert_int_equal(pl.len, 2);
	assert_memory_equal(pl.data, "p1", 2);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_buf_fini(&pl);
	opd_ws_free(ws);
}

/* The peer's Close after a release is echoed, and the codec stays closed. */
static void peer_close_after_release(void **state)
{
	struct opd_ws *ws = opd_ws_new(MAX_MSG);
	struct opd_buf in, out, pl;
	int ops[4];

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	opd_buf_init(&pl);
	client_frame(&in, 1, 0x2, "x", 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, "x", 1);
	opd_ws_take(ws, &out);
	assert_int_equal(opd_ws_idle(ws), 1);
	opd_buf_reset(&in);
	client_frame(&in, 1, 0x8, "\x03\xe9", 2);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	assert_int_equal(opd_ws_peer_close_code(ws), 1001);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal(ops[0], 0x8);
	assert_int_equal((pl.data[0] << 8) | pl.data[1], 1001);
	assert_int_equal(opd_ws_done(ws), 1);
	assert_int_equal(opd_ws_idle(ws), 0); /* closed: never released again */
	assert_int_equal(opd_ws_queue(ws, (const uint8_t *)"y", 1), OPD_EPROTO);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_buf_fini(&pl);
	opd_ws_free(ws);
}

/* Our Close while idle, then the peer's answer: the handshake completes. */
static void server_close_while_idle(void **state)
{
	struct opd_ws *ws = opd_ws_new(MAX_MSG);
	struct opd_buf in, out, pl;
	int ops[4];

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	opd_buf_init(&pl);
	assert_int_equal(opd_ws_queue_close(ws, OPD_WS_CLOSE_GOING_AWAY, "bye"), 0);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal(ops[0], 0x8);
	assert_int_equal((pl.data[0] << 8) | pl.data[1], OPD_WS_CLOSE_GOING_AWAY);
	assert_int_equal(opd_ws_idle(ws), 0);
	assert_int_equal(opd_ws_done(ws), 0); /* waiting for the peer's Close */
	client_frame(&in, 1, 0x8, "\x03\xe9", 2);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	opd_buf_reset(&out);
	opd_ws_take(ws, &out);
	assert_int_equal(opd_ws_done(ws), 1);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_buf_fini(&pl);
	opd_ws_free(ws);
}

/* Limits and violations are enforced by the context made after a release. */
static void limits_after_release(void **state)
{
	struct opd_ws *ws = opd_ws_new(200);
	struct opd_buf in, out, pl, msg;
	uint8_t big[201] = {0};
	int ops[4];

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	opd_buf_init(&pl);
	client_frame(&in, 1, 0x2, big, 200); /* exactly the limit */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, big, 200);
	opd_ws_take(ws, &out);
	assert_int_equal(opd_ws_idle(ws), 1);
	opd_buf_reset(&in);
	client_frame(&in, 0, 0x2, big, 150);
	client_frame(&in, 1, 0x0, big, 51); /* 201 in all */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_ETOOBIG);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal(ops[0], 0x8);
	assert_int_equal((pl.data[0] << 8) | pl.data[1], OPD_WS_CLOSE_TOO_BIG);
	assert_int_equal(opd_ws_done(ws), 1);
	opd_ws_free(ws);

	/* Text after a release is refused with 1003. */
	ws = opd_ws_new(200);
	opd_buf_reset(&in);
	opd_buf_reset(&out);
	opd_buf_reset(&pl);
	client_frame(&in, 1, 0x2, "ok", 2);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, "ok", 2);
	opd_ws_take(ws, &out);
	assert_int_equal(opd_ws_idle(ws), 1);
	opd_buf_reset(&in);
	client_frame(&in, 1, 0x1, "text", 4);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frames(&out, ops, 4, &pl), 1);
	assert_int_equal((pl.data[0] << 8) | pl.data[1], OPD_WS_CLOSE_UNSUPPORTED);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_buf_fini(&pl);
	opd_ws_free(ws);
}

/* A small deterministic generator (xorshift64*), so that a failure replays. */
static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/*
 * A random client stream: whole and fragmented messages with control frames
 * between them and between fragments; one in five streams has one broken or
 * oversized frame somewhere, one in ten ends with a Close.
 */
static size_t bounds[64], n_bounds; /* where frames end in the stream */

static void random_stream(struct opd_buf *in)
{
	uint8_t payload[300] = {0};
	int open = 0, pings = 0;
	uint32_t frames = 1 + rnd(12), bad = rnd(5) == 0 ? rnd(frames) : UINT32_MAX, msg = 0;

	n_bounds = 0;
	for (uint32_t f = 0; f < frames; f++, bounds[n_bounds++] = in->len) {
		uint32_t kind = rnd(100), len = rnd(rnd(4) == 0 ? 120 : 30);

		for (uint32_t i = 0; i < len; i++)
			payload[i] = (uint8_t)rnd(256);
		if (f == bad) {
			switch (rnd(4)) {
			case 0:
				client_frame(in, 1, 0x1, payload, len); /* text */
				break;
			case 1:
				client_frame(in, 1, 0x2, payload, len);
				in->data[in->len - len - 6] |= 0x40; /* an RSV bit */
				break;
			case 2:
				opd_buf_append_byte(in, 0x82); /* unmasked */
				opd_buf_append_byte(in, (uint8_t)(len % 126));
				opd_buf_append(in, payload, len % 126);
				break;
			default:
				client_frame(in, 1, open ? 0x0 : 0x2, payload, 257 - msg);
				break; /* one byte over the limit */
			}
			continue;
		}
		if (kind < 60 && msg + len <= 256) { /* a message or a fragment */
			int fin = rnd(3) != 0;

			client_frame(in, fin, open ? 0x0 : 0x2, payload, len);
			open = !fin;
			msg = fin ? 0 : msg + len;
		} else if (kind < 80 && pings < 40) {
			client_frame(in, 1, 0x9, payload, len % 126);
			pings++;
		} else {
			client_frame(in, 1, 0xa, payload, len % 126);
		}
	}
	if (rnd(10) == 0)
		client_frame(in, 1, 0x8, "\x03\xe8", 2);
}

static void drain(struct opd_ws *ws, struct opd_buf *msgs)
{
	struct opd_buf m;

	while (opd_ws_next(ws, &m) == 1) {
		uint32_t n = (uint32_t)m.len;

		opd_buf_append(msgs, &n, sizeof n);
		opd_buf_append(msgs, m.data, m.len);
		free(m.data);
	}
}

/*
 * Differential: the same random streams, cut at random places, fed to a codec
 * whose output is taken after every push (released whenever possible) and to
 * one whose output is taken only when it sends a message of its own. Both must
 * return the same codes, deliver the same messages and write the same bytes.
 */
static void released_equals_kept(void **state)
{
	unsigned released_mid = 0, violations = 0;

	(void)state;
	rng_state = 0x9e3779b97f4a7c15ull;
	for (int iter = 0; iter < 3000; iter++) {
		struct opd_ws *a = opd_ws_new(256), *b = opd_ws_new(256);
		struct opd_buf in, out_a, out_b, msgs_a, msgs_b;
		size_t off = 0;

		opd_buf_init(&in);
		opd_buf_init(&out_a);
		opd_buf_init(&out_b);
		opd_buf_init(&msgs_a);
		opd_buf_init(&msgs_b);
		random_stream(&in);
		while (off < in.len) {
			size_t n = 1 + rnd(rnd(2) ? 8 : 64), next = in.len;

			/* Half the cuts fall on the end of a frame. */
			for (size_t i = 0; i < n_bounds; i++)
				if (bounds[i] > off && bounds[i] < next)
					next = bounds[i];
			if (rnd(2))
				n = next - off;

			if (n > in.len - off)
				n = in.len - off;
			int rc = opd_ws_push(a, in.data + off, n);

			assert_int_equal(rc, opd_ws_push(b, in.data + off, n));
			if (rc != 0 && off + n >= in.len)
				violations++; /* counted once, at the end of the stream */
			off += n;
			drain(a, &msgs_a);
			drain(b, &msgs_b);
			opd_ws_take(a, &out_a);
			released_mid += opd_ws_idle(a) && off < in.len;
			/* Now and then both send a message of their own and flush (b may release
			 * here too, but far less often than a). */
			if (rnd(5) == 0) {
				assert_int_equal(opd_ws_queue(a, (const uint8_t *)"srv", 3),
						 opd_ws_queue(b, (const uint8_t *)"srv", 3));
				opd_ws_take(a, &out_a);
				opd_ws_take(b, &out_b);
			}
		}
		opd_ws_take(b, &out_b);
		assert_int_equal(msgs_a.len, msgs_b.len);
		assert_memory_equal(msgs_a.data, msgs_b.data, msgs_a.len);
		assert_int_equal(out_a.len, out_b.len);
		assert_memory_equal(out_a.data, out_b.data, out_a.len);
		assert_int_equal(opd_ws_peer_close_code(a), opd_ws_peer_close_code(b));
		assert_int_equal(opd_ws_done(a), opd_ws_done(b));
		opd_buf_fini(&in);
		opd_buf_fini(&out_a);
		opd_buf_fini(&out_b);
		opd_buf_fini(&msgs_a);
		opd_buf_fini(&msgs_b);
		opd_ws_free(a);
		opd_ws_free(b);
	}
	/* The streams did exercise both: releases in mid-stream, and violations. */
	print_message("released mid-stream %u times, %u violations\n", released_mid, violations);
	assert_true(released_mid > 3000);
	assert_true(violations > 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(idle_between_messages),    cmocka_unit_test(byte_by_byte_with_takes),
	    cmocka_unit_test(peer_close_after_release), cmocka_unit_test(server_close_while_idle),
	    cmocka_unit_test(limits_after_release),     cmocka_unit_test(released_equals_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
