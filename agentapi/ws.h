/*
 * WebSocket (RFC 6455) over in-memory buffers, server side, using Debian's
 * wslay event API: bytes read from the socket are pushed in, complete
 * messages are taken out, queued messages come out as bytes to write.
 * No sockets, no logging.
 */
#ifndef OPD_WS_H
#define OPD_WS_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_WS_ACCEPT_LEN 28

/* Close codes we send. */
#define OPD_WS_CLOSE_NORMAL 1000
#define OPD_WS_CLOSE_GOING_AWAY 1001
#define OPD_WS_CLOSE_PROTOCOL 1002
#define OPD_WS_CLOSE_UNSUPPORTED 1003
#define OPD_WS_CLOSE_TOO_BIG 1009
#define OPD_WS_CLOSE_TRY_AGAIN 1013

struct opd_ws;

/*
 * Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key +
 * GUID)) into out (OPD_WS_ACCEPT_LEN + 1 bytes). Returns 0, or OPD_EINVAL when
 * the key is not 16 bytes of base64 (24 characters).
 */
int opd_ws_accept_key(const char *client_key, char *out);

/* A server-side WebSocket that accepts messages up to max_msg bytes. Aborts on OOM. */
struct opd_ws *opd_ws_new(size_t max_msg);
void opd_ws_free(struct opd_ws *ws);

/*
 * Feed bytes received from the peer. Pings are answered, fragmented messages
 * reassembled. Returns 0, or after a violation (bad framing, unmasked frame,
 * a message over max_msg, a text message) a negative code with a Close frame
 * queued: OPD_EPROTO (1002, or 1003 for text) or OPD_ETOOBIG (1009).
 */
int opd_ws_push(struct opd_ws *ws, const uint8_t *p, size_t n);

/*
 * Take the next complete binary message. Returns 1 and fills *msg (the
 * caller owns msg->data, free()), or 0 when none is ready.
 */
int opd_ws_next(struct opd_ws *ws, struct opd_buf *msg);

/* Queue a binary message (copied). Returns 0, or OPD_EPROTO once closing. */
int opd_ws_queue(struct opd_ws *ws, const uint8_t *p, size_t n);
/* Queue a ping with an empty payload. */
int opd_ws_queue_ping(struct opd_ws *ws);
/* Queue a Close frame with code and a short reason; nothing is queued after it. */
int opd_ws_queue_close(struct opd_ws *ws, uint16_t code, const char *reason);

/* Move all bytes ready to be written to out (appended). Returns the number moved. */
size_t opd_ws_take(struct opd_ws *ws, struct opd_buf *out);

/* 1 once a Close frame was both sent and received, or sent after an error: close the socket after
 * flushing. */
int opd_ws_done(const struct opd_ws *ws);
/* The close code the peer sent (0 if none). */
uint16_t opd_ws_peer_close_code(const struct opd_ws *ws);

/*
 * 1 while the codec holds no per-connection state beyond its small struct:
 * between whole messages, nothing to send, no close under way. wslay's event
 * context (about 8.6 KiB) is freed then, in opd_ws_take(), and made again for
 * the next byte in or message out.
 */
int opd_ws_idle(const struct opd_ws *ws);

#endif
