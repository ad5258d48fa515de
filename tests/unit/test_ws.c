/* WebSocket server codec over wslay (agentapi/ws.c), driven with hand-built client frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#define MiB (1024 * 1024)

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Frame header of a client frame with a declared payload length (no payload). */
static void client_header(struct opd_buf *b, int fin, int opcode, uint64_t len, int masked)
{
	opd_buf_append_byte(b, (uint8_t)((fin ? 0x80 : 0) | opcode));
	if (len < 126) {
		opd_buf_append_byte(b, (uint8_t)((masked ? 0x80 : 0) | len));
	} else if (len <= 0xffff) {
		opd_buf_append_byte(b, (uint8_t)((masked ? 0x80 : 0) | 126));
		opd_buf_append_byte(b, (uint8_t)(len >> 8));
		opd_buf_append_byte(b, (uint8_t)len);
	} else {
		opd_buf_append_byte(b, (uint8_t)((masked ? 0x80 : 0) | 127));
		for (int i = 7; i >= 0; i--)
			opd_buf_append_byte(b, (uint8_t)(len >> (8 * i)));
	}
	if (masked)
		opd_buf_append(b, mask_key, 4);
}

/* A whole client frame; payload masked when masked is set (RFC 6455 §5.3). */
static void client_frame(struct opd_buf *b, int fin, int opcode, const void *p, size_t n,
			 int masked)
{
	const uint8_t *src = p;
	uint8_t *w;

	client_header(b, fin, opcode, n, masked);
	w = opd_buf_reserve(b, n + 1);
	for (size_t i = 0; i < n; i++)
		w[i] = masked ? (uint8_t)(src[i] ^ mask_key[i % 4]) : src[i];
	opd_buf_commit(b, n);
}

struct frame {
	int fin, opcode;
	const uint8_t *payload;
	size_t len;
	size_t header_len;
};

/* Parse one server frame at p; servers never mask. Returns the frame's total size. */
static size_t server_frame(const uint8_t *p, size_t n, struct frame *f)
{
	size_t h = 2;

	assert_true(n >= 2);
	f->fin = p[0] >> 7;
	assert_int_equal(p[0] & 0x70, 0); /* no RSV bits */
	f->opcode = p[0] & 0x0f;
	assert_int_equal(p[1] & 0x80, 0); /* unmasked */
	f->len = p[1] & 0x7f;
	if (f->len == 126) {
		assert_true(n >= 4);
		f->len = (size_t)p[2] << 8 | p[3];
		assert_true(f->len >= 126); /* minimal encoding */
		h = 4;
	} else if (f->len == 127) {
		assert_true(n >= 10);
		f->len = 0;
		for (int i = 0; i < 8; i++)
			f->len = f->len << 8 | p[2 + i];
		assert_true(f->len > 0xffff);
		h = 10;
	}
	assert_true(n >= h + f->len);
	f->header_len = h;
	f->payload = p + h;
	return h + f->len;
}

/* Take the output and expect exactly one Close frame with code. */
static void expect_close(struct opd_ws *ws, uint16_t code)
{
	struct opd_buf out;
	struct frame f;

	opd_buf_init(&out);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frame(out.data, out.len, &f), out.len);
	assert_int_equal(f.opcode, 0x8);
	assert_int_equal(f.fin, 1);
	assert_true(f.len >= 2);
	assert_int_equal((f.payload[0] << 8) | f.payload[1], code);
	opd_buf_fini(&out);
}

static void expect_msg(struct opd_ws *ws, const void *want, size_t len)
{
	struct opd_buf msg;

	assert_int_equal(opd_ws_next(ws, &msg), 1);
	assert_int_equal(msg.len - msg.off, len);
	assert_memory_equal(msg.data + msg.off, want, len);
	free(msg.data);
}

static void accept_key(void **state)
{
	char out[OPD_WS_ACCEPT_LEN + 1];

	(void)state;
	/* RFC 6455 §1.3. */
	assert_int_equal(opd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_int_equal(opd_ws_accept_key("", out), OPD_EINVAL);
	assert_int_equal(opd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out), OPD_EINVAL);
	/* 18 bytes, not 16. */
	assert_int_equal(opd_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAAAA", out), OPD_EINVAL);
	/* Not base64. */
	assert_int_equal(opd_ws_accept_key("dGhlIHNhbXBsZSBub25j*Q==", out), OPD_EINVAL);
	assert_int_equal(opd_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", out), OPD_EINVAL);
}

static void binary_one_frame(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, out, msg;

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	client_frame(&in, 1, 0x2, "\x00\x01hello", 7, 1);
	client_frame(&in, 1, 0x2, "", 0, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, "\x00\x01hello", 7);
	assert_int_equal(opd_ws_next(ws, &msg), 1); /* the empty message */
	assert_int_equal(msg.len, 0);
	free(msg.data);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	assert_int_equal(opd_ws_take(ws, &out), 0); /* nothing to say */
	assert_int_equal(opd_ws_done(ws), 0);
	assert_int_equal(opd_ws_peer_close_code(ws), 0);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

static void fragmented_frames(struct opd_buf *in)
{
	client_frame(in, 0, 0x2, "abc", 3, 1);
	client_frame(in, 0, 0x0, "defgh", 5, 1);
	client_frame(in, 1, 0x0, "ij", 2, 1);
}

/* Three fragments; split in two at every position, and byte by byte. */
static void fragmented_every_split(void **state)
{
	struct opd_buf in, msg;

	(void)state;
	opd_buf_init(&in);
	fragmented_frames(&in);
	for (size_t cut = 0; cut <= in.len; cut++) {
		struct opd_ws *ws = opd_ws_new(4 * MiB);

		assert_int_equal(opd_ws_push(ws, in.data, cut), 0);
		if (cut < in.len)
			assert_int_equal(opd_ws_next(ws, &msg), 0);
		assert_int_equal(opd_ws_push(ws, in.data + cut, in.len - cut), 0);
		expect_msg(ws, "abcdefghij", 10);
		assert_int_equal(opd_ws_next(ws, &msg), 0);
		opd_ws_free(ws);
	}

	struct opd_ws *ws = opd_ws_new(4 * MiB);

	for (size_t i = 0; i < in.len; i++) {
		assert_int_equal(opd_ws_next(ws, &msg), 0);
		assert_int_equal(opd_ws_push(ws, in.data + i, 1), 0);
	}
	expect_msg(ws, "abcdefghij", 10);
	opd_ws_free(ws);
	opd_buf_fini(&in);
}

static void ping_inside_fragmented(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, out;
	struct frame f;

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	client_frame(&in, 0, 0x2, "abc", 3, 1);
	client_frame(&in, 1, 0x9, "hi", 2, 1);
	client_frame(&in, 1, 0x0, "def", 3, 1);
	for (size_t i = 0; i < in.len; i++)
		assert_int_equal(opd_ws_push(ws, in.data + i, 1), 0);
	expect_msg(ws, "abcdef", 6);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frame(out.data, out.len, &f), out.len);
	assert_int_equal(f.opcode, 0xa);
	assert_int_equal(f.len, 2);
	assert_memory_equal(f.payload, "hi", 2);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

static void text_refused(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, msg;

	(void)state;
	opd_buf_init(&in);
	client_frame(&in, 1, 0x1, "hello", 5, 1);
	client_frame(&in, 1, 0x2, "after", 5, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
	assert_int_equal(opd_ws_next(ws, &msg), 0); /* nothing after the violation */
	expect_close(ws, OPD_WS_CLOSE_UNSUPPORTED);
	assert_int_equal(opd_ws_done(ws), 1);
	assert_int_equal(opd_ws_queue(ws, (const uint8_t *)"x", 1), OPD_EPROTO);
	/* Sticky. */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
	opd_buf_fini(&in);
	opd_ws_free(ws);
}

/* Payload bytes are generated (masked) chunk by chunk so the test stays small in memory. */
static int push_payload(struct opd_ws *ws, size_t len)
{
	uint8_t chunk[64 * 1024];
	size_t done = 0;
	int rc = 0;

	while (done < len && rc == 0) {
		size_t n = len - done < sizeof(chunk) ? len - done : sizeof(chunk);

		/* Plaintext 0x00: the masked bytes are the key itself, phase kept by done % 4. */
		for (size_t i = 0; i < n; i++)
			chunk[i] = mask_key[(done + i) % 4];
		rc = opd_ws_push(ws, chunk, n);
		done += n;
	}
	return rc;
}

static void oversized_single_frame(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in;

	(void)state;
	opd_buf_init(&in);
	client_header(&in, 1, 0x2, 5 * MiB, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0); /* header only: undecided */
	assert_int_equal(push_payload(ws, 5 * MiB), OPD_ETOOBIG);
	expect_close(ws, OPD_WS_CLOSE_TOO_BIG);
	assert_int_equal(opd_ws_done(ws), 1);
	opd_buf_fini(&in);
	opd_ws_free(ws);

	/* Exactly the limit is fine. */
	ws = opd_ws_new(4 * MiB);
	opd_buf_init(&in);
	client_header(&in, 1, 0x2, 4 * MiB, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	assert_int_equal(push_payload(ws, 4 * MiB), 0);
	struct opd_buf msg;
	assert_int_equal(opd_ws_next(ws, &msg), 1);
	assert_int_equal(msg.len, 4 * MiB);
	assert_int_equal(msg.data[0], 0);
	assert_int_equal(msg.data[4 * MiB - 1], 0);
	free(msg.data);
	opd_buf_fini(&in);
	opd_ws_free(ws);
}

static void oversized_fragments(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, msg;
	int rc = 0;

	(void)state;
	/* Five 1 MiB fragments: the fifth frame's header already breaks the limit. */
	for (int i = 0; i < 5; i++) {
		opd_buf_init(&in);
		client_header(&in, i == 4, i == 0 ? 0x2 : 0x0, MiB, 1);
		rc = opd_ws_push(ws, in.data, in.len);
		opd_buf_fini(&in);
		if (rc == 0)
			rc = push_payload(ws, MiB);
		if (i < 4)
			assert_int_equal(rc, 0);
	}
	assert_int_equal(rc, OPD_ETOOBIG);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	expect_close(ws, OPD_WS_CLOSE_TOO_BIG);
	opd_ws_free(ws);
}

/* A frame declaring 2^62 bytes is refused from its header, before any payload is buffered. */
static void huge_declared_length(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in;

	(void)state;
	opd_buf_init(&in);
	client_header(&in, 1, 0x2, (uint64_t)1 << 62, 1);
	opd_buf_append(&in, "\x01\x02", 2);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_ETOOBIG);
	expect_close(ws, OPD_WS_CLOSE_TOO_BIG);
	opd_buf_fini(&in);
	opd_ws_free(ws);

	/* The top bit set is a framing error. */
	ws = opd_ws_new(4 * MiB);
	opd_buf_init(&in);
	client_header(&in, 1, 0x2, (uint64_t)1 << 63, 1);
	opd_buf_append(&in, "\x01\x02", 2);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
	opd_buf_fini(&in);
	opd_ws_free(ws);
}

static void unmasked_refused(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, msg;

	(void)state;
	opd_buf_init(&in);
	client_frame(&in, 1, 0x2, "abc", 3, 0);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	expect_close(ws, OPD_WS_CLOSE_PROTOCOL);
	assert_int_equal(opd_ws_done(ws), 1);
	opd_buf_fini(&in);
	opd_ws_free(ws);
}

static void bad_framing_refused(void **state)
{
	static const struct {
		int fin, opcode;
		size_t len;
	} bad[] = {
	    {1, 0x0, 3},   /* continuation without a start */
	    {1, 0x3, 3},   /* reserved opcode */
	    {0, 0x9, 3},   /* fragmented control frame */
	    {1, 0x9, 126}, /* control frame over 125 bytes */
	};
	uint8_t payload[200] = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct opd_ws *ws = opd_ws_new(4 * MiB);
		struct opd_buf in;

		opd_buf_init(&in);
		client_frame(&in, bad[i].fin, bad[i].opcode, payload, bad[i].len, 1);
		assert_int_equal(opd_ws_push(ws, in.data, in.len), OPD_EPROTO);
		assert_int_equal(opd_ws_done(ws), 0); /* the Close is not taken yet */
		struct opd_buf out;
		opd_buf_init(&out);
		assert_true(opd_ws_take(ws, &out) > 0);
		assert_int_equal(out.data[0], 0x88);
		assert_int_equal(opd_ws_done(ws), 1);
		opd_buf_fini(&out);
		opd_buf_fini(&in);
		opd_ws_free(ws);
	}
}

static void peer_close_echoed(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, out;
	struct frame f;

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	client_frame(&in, 1, 0x8,
		     "\x03\xe8"
		     "bye",
		     5, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	assert_int_equal(opd_ws_peer_close_code(ws), 1000);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frame(out.data, out.len, &f), out.len);
	assert_int_equal(f.opcode, 0x8);
	assert_int_equal((f.payload[0] << 8) | f.payload[1], 1000);
	assert_int_equal(opd_ws_done(ws), 1);
	assert_int_equal(opd_ws_queue(ws, (const uint8_t *)"x", 1), OPD_EPROTO);
	/* Bytes after the Close are ignored. */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	opd_buf_reset(&out);
	assert_int_equal(opd_ws_take(ws, &out), 0);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

static void server_close_handshake(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, out, msg;
	struct frame f;

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	assert_int_equal(opd_ws_queue_close(ws, OPD_WS_CLOSE_GOING_AWAY, "shutting down"), 0);
	assert_int_equal(opd_ws_queue_close(ws, OPD_WS_CLOSE_NORMAL, NULL), OPD_EPROTO);
	assert_int_equal(opd_ws_queue(ws, (const uint8_t *)"x", 1), OPD_EPROTO);
	opd_ws_take(ws, &out);
	assert_int_equal(server_frame(out.data, out.len, &f), out.len);
	assert_int_equal(f.opcode, 0x8);
	assert_int_equal(f.len, 2 + strlen("shutting down"));
	assert_int_equal((f.payload[0] << 8) | f.payload[1], 1001);
	assert_memory_equal(f.payload + 2, "shutting down", 13);
	/* Waiting for the peer's Close; its data still arrives meanwhile. */
	assert_int_equal(opd_ws_done(ws), 0);
	client_frame(&in, 1, 0x2, "late", 4, 1);
	client_frame(&in, 1, 0x8, "\x03\xe9", 2, 1);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	expect_msg(ws, "late", 4);
	assert_int_equal(opd_ws_next(ws, &msg), 0);
	opd_buf_reset(&out);
	assert_int_equal(opd_ws_take(ws, &out), 0); /* no second Close */
	assert_int_equal(opd_ws_done(ws), 1);
	assert_int_equal(opd_ws_peer_close_code(ws), 1001);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

static void close_reason_truncated(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf out;
	char reason[300];
	struct frame f;

	(void)state;
	memset(reason, 'r', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = 0;
	opd_buf_init(&out);
	assert_int_equal(opd_ws_queue_close(ws, OPD_WS_CLOSE_TRY_AGAIN, reason), 0);
	opd_ws_take(ws, &out);
	server_frame(out.data, out.len, &f);
	assert_int_equal(f.len, 125);
	assert_int_equal((f.payload[0] << 8) | f.payload[1], 1013);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

static void queue_and_take(void **state)
{
	static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf out;
	uint8_t *payload = malloc(70000);
	size_t pos = 0;

	(void)state;
	assert_non_null(payload);
	for (size_t i = 0; i < 70000; i++)
		payload[i] = (uint8_t)(i * 7);
	opd_buf_init(&out);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		assert_int_equal(opd_ws_queue(ws, payload, sizes[i]), 0);
	assert_int_equal(opd_ws_queue_ping(ws), 0);
	assert_true(opd_ws_take(ws, &out) == out.len);
	/* wslay sends control frames ahead of queued data. */
	assert_memory_equal(out.data, "\x89\x00", 2);
	pos = 2;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct frame f;

		pos += server_frame(out.data + pos, out.len - pos, &f);
		assert_int_equal(f.fin, 1);
		assert_int_equal(f.opcode, 0x2);
		assert_int_equal(f.len, sizes[i]);
		assert_int_equal(f.header_len, sizes[i] < 126 ? 2 : sizes[i] <= 0xffff ? 4 : 10);
		assert_memory_equal(f.payload, payload, sizes[i]);
	}
	assert_int_equal(pos, out.len);
	/* Exact bytes of the small ones: FIN + binary, unmasked length. */
	assert_memory_equal(out.data + 2, "\x82\x00\x82\x01\x00", 5);
	assert_memory_equal(out.data + 2 + 5 + 2 + 125, "\x82\x7e\x00\x7e", 4);
	opd_buf_fini(&out);
	free(payload);
	opd_ws_free(ws);
}

static void ping_flood(void **state)
{
	struct opd_ws *ws = opd_ws_new(4 * MiB);
	struct opd_buf in, out;
	struct frame f;
	size_t pos = 0;

	(void)state;
	opd_buf_init(&in);
	opd_buf_init(&out);
	for (int i = 0; i < 64; i++)
		client_frame(&in, 1, 0x9, "p", 1, 1);
	/* 64 pongs pending is allowed; taking them resets the count. */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	assert_int_equal(opd_ws_take(ws, &out), 64 * 3);
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	opd_buf_reset(&out);
	opd_ws_take(ws, &out);
	/* The 65th without a take is a policy violation. */
	assert_int_equal(opd_ws_push(ws, in.data, in.len), 0);
	client_frame(&in, 1, 0x9, "p", 1, 1);
	assert_int_equal(opd_ws_push(ws, in.data + in.len - 7, 7), OPD_EPROTO);
	opd_buf_reset(&out);
	opd_ws_take(ws, &out);
	/* wslay calls us before queueing the pong, so the 65th ping gets the Close instead. */
	for (int i = 0; i < 64; i++) {
		pos += server_frame(out.data + pos, out.len - pos, &f);
		assert_int_equal(f.opcode, 0xa);
	}
	pos += server_frame(out.data + pos, out.len - pos, &f);
	assert_int_equal(pos, out.len);
	assert_int_equal(f.opcode, 0x8);
	assert_int_equal((f.payload[0] << 8) | f.payload[1], 1008);
	opd_buf_fini(&in);
	opd_buf_fini(&out);
	opd_ws_free(ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accept_key),
	    cmocka_unit_test(binary_one_frame),
	    cmocka_unit_test(fragmented_every_split),
	    cmocka_unit_test(ping_inside_fragmented),
	    cmocka_unit_test(text_refused),
	    cmocka_unit_test(oversized_single_frame),
	    cmocka_unit_test(oversized_fragments),
	    cmocka_unit_test(huge_declared_length),
	    cmocka_unit_test(unmasked_refused),
	    cmocka_unit_test(bad_framing_refused),
	    cmocka_unit_test(peer_close_echoed),
	    cmocka_unit_test(server_close_handshake),
	    cmocka_unit_test(close_reason_truncated),
	    cmocka_unit_test(queue_and_take),
	    cmocka_unit_test(ping_flood),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
