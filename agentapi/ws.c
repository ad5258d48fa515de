#include "ws.h"

#include "err.h"
#include "mem.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/*
 * wslay answers every ping with a pong. A peer that pings faster than we
 * flush could grow the output without bound, so after this many control frames
 * produced without an opd_ws_take() in between we close with 1008 (policy).
 */
#define MAX_PENDING_CTRL 64
/*
 * Data frames one message may take: a 4 MiB message in 1 KiB fragments fits;
 * wslay keeps ~75 bytes per fragment, so 1-byte fragments would otherwise let
 * one message cost ~300 MiB before the size limit is reached.
 */
#define MAX_FRAGMENTS 4096

#define CLOSE_POLICY 1008

/* RFC 6455 §5.5: a control frame payload is at most 125 bytes, 2 of them the code. */
#define MAX_CLOSE_REASON 123

struct ws_msg {
	struct ws_msg *next;
	uint8_t *data;
	size_t len;
};

/*
 * Where the peer's byte stream stands, tracked next to wslay: wslay's event
 * context (about 8.6 KiB with its frame buffer, bench/PROFILE.md) is freed
 * while the connection sits between whole messages with nothing to send, and
 * made again for the next byte, so an idle agent costs only this struct.
 * Only frame lengths are read here; wslay still checks everything.
 */
struct ws_scan {
	uint64_t payload_left; /* of the frame being received */
	uint8_t hdr[10];       /* its first header bytes: flags, length and extended length */
	uint8_t hlen;          /* header bytes seen, 0 between frames */
	uint8_t need;          /* whole header length, known once hlen >= 2 */
	bool in_message;       /* a fragmented data message is unfinished */
};

struct opd_ws {
	wslay_event_context_ptr ctx; /* NULL while idle (see struct ws_scan) */
	struct ws_scan scan;
	struct opd_buf in;  /* pushed bytes wslay has not read yet */
	struct opd_buf out; /* frames wslay wrote, not yet taken */
	struct ws_msg *head, **tail;
	size_t max_msg;
	unsigned pending_ctrl;
	unsigned fragments; /* data frames of the message being received */
	int violation;      /* sticky OPD_E* once the peer broke the protocol */
};

/* Close because of the peer; wslay stops reading and sends the Close on the next send. */
static void violate(struct opd_ws *ws, uint16_t code, int err)
{
	if (ws->violation == 0)
		ws->violation = err;
	/* Fails only when a Close is already queued, which is then the one sent. */
	(void)wslay_event_queue_close(ws->ctx, code, NULL, 0);
	wslay_event_shutdown_read(ws->ctx);
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *user_data)
{
	struct opd_ws *ws = user_data;
	size_t n = opd_buf_avail(&ws->in);

	(void)flags;
	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, opd_buf_rptr(&ws->in), n);
	opd_buf_consume(&ws->in, n);
	return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user_data)
{
	struct opd_ws *ws = user_data;

	(void)ctx;
	(void)flags;
	opd_buf_append(&ws->out, data, len);
	return (ssize_t)len;
}

static void on_frame_start(wslay_event_context_ptr ctx,
			   const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
	struct opd_ws *ws = user_data;

	(void)ctx;
	/* OpAMP is binary only; refuse text before wslay buffers any of it. */
	if (arg->opcode == WSLAY_TEXT_FRAME)
		violate(ws, OPD_WS_CLOSE_UNSUPPORTED, OPD_EPROTO);
	if (arg->opcode == WSLAY_CONTINUATION_FRAME) {
		if (++ws->fragments > MAX_FRAGMENTS)
			violate(ws, OPD_WS_CLOSE_TOO_BIG, OPD_ETOOBIG);
	} else if (arg->opcode < 8) {
		ws->fragments = 1; /* a data frame starts a message */
	}
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		   void *user_data)
{
	struct opd_ws *ws = user_data;
	struct ws_msg *m;

	(void)ctx;
	switch (arg->opcode) {
	case WSLAY_BINARY_FRAME:
		if (ws->violation != 0)
			return;
		/* wslay frees arg->msg after this call; its size is bounded by max_msg. */
		m = opd_xcalloc(1, sizeof(*m));
		m->data = opd_xmalloc(arg->msg_length > 0 ? arg->msg_length : 1);
		if (arg->msg_length > 0)
			memcpy(m->data, arg->msg, arg->msg_length);
		m->len = arg->msg_length;
		*ws->tail = m;
		ws->tail = &m->next;
		break;
	case WSLAY_TEXT_FRAME:
		violate(ws, OPD_WS_CLOSE_UNSUPPORTED, OPD_EPROTO);
		break;
	case WSLAY_PING:
		/* wslay has already queued the pong. */
		if (++ws->pending_ctrl > MAX_PENDING_CTRL)
			violate(ws, CLOSE_POLICY, OPD_EPROTO);
		break;
	default:
		/* Close is answered by wslay; pongs need nothing. */
		break;
	}
}

/* Frame header length from its first two bytes (RFC 6455 §5.2). */
static uint8_t header_len(const uint8_t *h)
{
	uint8_t len7 = h[1] & 0x7f, n = 2;

	if (len7 == 126)
		n += 2;
	else if (len7 == 127)
		n += 8;
	return (uint8_t)(n + ((h[1] & 0x80) ? 4 : 0));
}

static uint64_t payload_len(const uint8_t *h)
{
	uint8_t len7 = h[1] & 0x7f;
	uint64_t len = 0;

	if (len7 < 126)
		return len7;
	for (int i = 0; i < (len7 == 126 ? 2 : 8); i++)
		len = len << 8 | h[2 + i];
	return len;
}

/* Follow the frame boundaries in the bytes wslay is about to read. */
static void scan(struct ws_scan *sc, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (sc->payload_left > 0) {
			size_t k = sc->payload_left < n ? (size_t)sc->payload_left : n;

			p += k;
			n -= k;
			sc->payload_left -= k;
			continue;
		}
		if (sc->hlen < sizeof sc->hdr)
			sc->hdr[sc->hlen] = *p;
		sc->hlen++;
		p++;
		n--;
		if (sc->hlen == 2)
			sc->need = header_len(sc->hdr);
		if (sc->hlen < 2 || sc->hlen < sc->need)
			continue;
		sc->payload_left = payload_len(sc->hdr);
		/* Control frames (opcode 8 and up) may come between fragments: no change. */
		if ((sc->hdr[0] & 0x0f) < 8)
			sc->in_message = (sc->hdr[0] & 0x80) == 0;
		sc->hlen = 0;
	}
}

static void ensure_ctx(struct opd_ws *ws)
{
	static const struct wslay_event_callbacks cbs = {
	    .recv_callback = recv_cb,
	    .send_callback = send_cb,
	    .on_frame_recv_start_callback = on_frame_start,
	    .on_msg_recv_callback = on_msg,
	};

	if (ws->ctx != NULL)
		return;
	if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0)
		abort(); /* only fails on OOM */
	/* Checked against each frame's declared length before wslay buffers its payload. */
	wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_msg);
}

/*
 * Free wslay's context when a fresh one would behave the same: between whole
 * frames, outside a fragmented message, nothing queued or half sent, no Close
 * either way and no violation.
 */
static void release_if_idle(struct opd_ws *ws)
{
	const struct ws_scan *sc = &ws->scan;

	if (ws->ctx == NULL || ws->violation != 0 || sc->hlen != 0 || sc->payload_left != 0 ||
	    sc->in_message || opd_buf_avail(&ws->in) != 0)
		return;
	if (!wslay_event_get_read_enabled(ws->ctx) || !wslay_event_get_write_enabled(ws->ctx) ||
	    wslay_event_get_close_received(ws->ctx) || wslay_event_get_close_sent(ws->ctx) ||
	    wslay_event_want_write(ws->ctx) || wslay_event_get_queued_msg_count(ws->ctx) != 0)
		return;
	wslay_event_context_free(ws->ctx);
	ws->ctx = NULL;
}

int opd_ws_idle(const struct opd_ws *ws)
{
	return ws->ctx == NULL;
}

int opd_ws_accept_key(const char *client_key, char *out)
{
	uint8_t raw[20], md[EVP_MAX_MD_SIZE];
	char buf[24 + sizeof(WS_GUID)];
	unsigned int mdlen = 0;

	/* 16 bytes in base64 are 22 characters and "==". */
	if (client_key == NULL || strlen(client_key) != 24 || client_key[22] != '=' ||
	    client_key[23] != '=')
		return OPD_EINVAL;
	/* EVP_DecodeBlock ignores padding in its count: 24 characters decode to 18 bytes. */
	if (EVP_DecodeBlock(raw, (const unsigned char *)client_key, 24) != 18)
		return OPD_EINVAL;
	memcpy(buf, client_key, 24);
	memcpy(buf + 24, WS_GUID, sizeof(WS_GUID) - 1);
	if (EVP_Digest(buf, 24 + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20)
		return OPD_EINVAL;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != OPD_WS_ACCEPT_LEN)
		return OPD_EINVAL;
	return 0;
}

struct opd_ws *opd_ws_new(size_t max_msg)
{
	struct opd_ws *ws = opd_xcalloc(1, sizeof(*ws));

	ws->tail = &ws->head;
	ws->max_msg = max_msg;
	/* wslay's context is made with the first byte in or out (ensure_ctx). */
	return ws;
}

void opd_ws_free(struct opd_ws *ws)
{
	struct ws_msg *m, *next;

	if (ws == NULL)
		return;
	for (m = ws->head; m != NULL; m = next) {
		next = m->next;
		free(m->data);
		free(m);
	}
	if (ws->ctx != NULL)
		wslay_event_context_free(ws->ctx);
	opd_buf_fini(&ws->in);
	opd_buf_fini(&ws->out);
	free(ws);
}

int opd_ws_push(struct opd_ws *ws, const uint8_t *p, size_t n)
{
	int rc;

	if (ws->violation != 0)
		return ws->violation;
	if (n == 0 && ws->ctx == NULL)
		return 0;
	ensure_ctx(ws);
	/* After a Close (ours after an error, or the peer's) input is dropped. */
	if (!wslay_event_get_read_enabled(ws->ctx))
		return 0;
	scan(&ws->scan, p, n);
	opd_buf_append(&ws->in, p, n);
	rc = wslay_event_recv(ws->ctx);
	/* Usually drained: an idle connection keeps no input buffer (bench/PROFILE.md). */
	if (!wslay_event_get_read_enabled(ws->ctx))
		opd_buf_fini(&ws->in);
	else
		opd_buf_shrink(&ws->in);
	/* Pongs and Close replies go out without waiting for opd_ws_take(). */
	(void)wslay_event_send(ws->ctx);
	/*
	 * wslay found the violation itself (bad framing, unmasked frame, too
	 * big, bad close code): it stopped reading without a Close from the
	 * peer. The code it sent tells which.
	 */
	if (ws->violation == 0 && (rc != 0 || (!wslay_event_get_read_enabled(ws->ctx) &&
					       !wslay_event_get_close_received(ws->ctx)))) {
		uint16_t code = wslay_event_get_status_code_sent(ws->ctx);

		ws->violation = code == OPD_WS_CLOSE_TOO_BIG ? OPD_ETOOBIG : OPD_EPROTO;
	}
	return ws->violation;
}

int opd_ws_next(struct opd_ws *ws, struct opd_buf *msg)
{
	struct ws_msg *m = ws->head;

	if (m == NULL)
		return 0;
	ws->head = m->next;
	if (ws->head == NULL)
		ws->tail = &ws->head;
	msg->data = m->data;
	msg->off = 0;
	msg->len = m->len;
	msg->cap = m->len > 0 ? m->len : 1;
	free(m);
	return 1;
}

static int queue(struct opd_ws *ws, uint8_t opcode, const uint8_t *p, size_t n)
{
	struct wslay_event_msg msg = {.opcode = opcode, .msg = p, .msg_length = n};

	if (ws->violation != 0)
		return OPD_EPROTO;
	ensure_ctx(ws);
	return wslay_event_queue_msg(ws->ctx, &msg) == 0 ? 0 : OPD_EPROTO;
}

int opd_ws_queue(struct opd_ws *ws, const uint8_t *p, size_t n)
{
	return queue(ws, WSLAY_BINARY_FRAME, p, n);
}

int opd_ws_queue_ping(struct opd_ws *ws)
{
	return queue(ws, WSLAY_PING, NULL, 0);
}

int opd_ws_queue_close(struct opd_ws *ws, uint16_t code, const char *reason)
{
	size_t len = reason != NULL ? strlen(reason) : 0;

	if (len > MAX_CLOSE_REASON)
		len = MAX_CLOSE_REASON;
	ensure_ctx(ws);
	if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, len) != 0)
		return OPD_EPROTO;
	return 0;
}

size_t opd_ws_take(struct opd_ws *ws, struct opd_buf *out)
{
	size_t n;

	if (ws->ctx != NULL)
		(void)wslay_event_send(ws->ctx);
	n = opd_buf_avail(&ws->out);
	opd_buf_append(out, opd_buf_rptr(&ws->out), n);
	/* An idle connection keeps no output buffer either, */
	opd_buf_fini(&ws->out);
	ws->pending_ctrl = 0;
	/* nor wslay's context (see struct ws_scan). */
	release_if_idle(ws);
	return n;
}

int opd_ws_done(const struct opd_ws *ws)
{
	if (ws->ctx == NULL)
		return 0; /* never released once a Close was sent */
	return wslay_event_get_close_sent(ws->ctx) && !wslay_event_want_read(ws->ctx) &&
	       !wslay_event_want_write(ws->ctx) && opd_buf_avail(&ws->out) == 0;
}

uint16_t opd_ws_peer_close_code(const struct opd_ws *ws)
{
	uint16_t code;

	if (ws->ctx == NULL || !wslay_event_get_close_received(ws->ctx))
		return 0;
	code = wslay_event_get_status_code_received(ws->ctx);
	/* wslay reports a Close without a code as 1005, which never appears on the wire. */
	return code == 1005 ? 0 : code;
}
