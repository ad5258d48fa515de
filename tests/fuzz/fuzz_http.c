/*
 * Fuzz target: the HTTP/1.1 request parser (agentapi/http.c) as conn.c
 * drives it, pipelined requests included, then what the endpoints do with a
 * request (header lookups, token lists, the WebSocket accept key, a gzip body
 * inflated and decoded as an AgentToServer) and the response writer.
 *
 * Input: byte 0 is where the stream is split in two pushes, byte 1 picks
 * the limits (small ones reach the 431/413 paths with short inputs), the
 * rest is the byte stream. The same stream is parsed three ways: in one
 * push, in two pushes split at byte 0, and (when short) one byte per push.
 * Incremental parsing must not change the outcome, so the three transcripts
 * of requests and errors must be identical; a difference aborts.
 */
#include "err.h"
#include "gzip.h"
#include "http.h"
#include "wire.h"
#include "ws.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BYTEWISE_MAX 1024 /* inputs up to this long are also parsed one byte per push */

struct run {
	struct opd_http_parser hp;
	struct opd_http_limits lim;
	struct opd_buf in;         /* received, not consumed yet (conn.c's c->in) */
	struct opd_buf transcript; /* what was parsed, for comparing the three runs */
	bool done;                 /* error, or an upgrade: the rest is not HTTP */
};

static void check_request(const struct run *r, const struct opd_http_request *req)
{
	/* The limits hold for everything that is handed out. */
	if (req->body_len > r->lim.max_body || req->n_headers > OPD_HTTP_MAX_HEADERS)
		abort();
	if (req->method == NULL || req->path == NULL || req->query == NULL)
		abort();
}

/* Everything the endpoints and the admin API look at in a request. */
static void use_request(const struct opd_http_request *req)
{
	const char *enc = opd_http_header(req, "Content-Encoding");
	const char *key = opd_http_header(req, "Sec-WebSocket-Key");
	char accept[OPD_WS_ACCEPT_LEN + 1];
	struct opd_buf plain, resp;
	opd_a2s *m = NULL;

	(void)opd_http_header_has_token(req, "Connection", "upgrade");
	(void)opd_http_header_has_token(req, "Upgrade", "websocket");
	(void)opd_http_header_has_token(req, "Accept-Encoding", "gzip");
	if (key != NULL && opd_ws_accept_key(key, accept) == 0 &&
	    strlen(accept) != OPD_WS_ACCEPT_LEN)
		abort();
	opd_buf_init(&plain);
	if (enc != NULL && strcmp(enc, "gzip") == 0) {
		/* A small cap keeps a decompression bomb cheap while still hitting the limit. */
		if (opd_gzip_inflate(req->body, req->body_len, 64 * 1024, &plain) == 0 &&
		    opd_wire_decode_http(opd_buf_rptr(&plain), opd_buf_avail(&plain), NULL, &m) ==
			0)
			opd_wire_free_a2s(m, NULL);
	} else if (opd_wire_decode_http(req->body, req->body_len, NULL, &m) == 0) {
		opd_wire_free_a2s(m, NULL);
	}
	opd_buf_fini(&plain);
	opd_buf_init(&resp);
	opd_http_write_response(&resp, req->body_len % 2 ? 200 : 101, "text/plain", NULL, req->body,
				req->body_len, req->keep_alive);
	opd_buf_fini(&resp);
}

static void record_request(struct run *r, const struct opd_http_request *req)
{
	struct opd_buf *t = &r->transcript;

	opd_buf_appendf(t, "REQ %s %s ? %s ka=%d up=%d\n", req->method, req->path, req->query,
			req->keep_alive, req->upgrade);
	for (size_t i = 0; i < req->n_headers; i++)
		opd_buf_appendf(t, "H %s: %s\n", req->headers[i].name, req->headers[i].value);
	opd_buf_appendf(t, "BODY %zu\n", req->body_len);
	opd_buf_append(t, req->body, req->body_len);
	opd_buf_append(t, "\n", 1);
}

/* conn.c's process_http: parse what is buffered, one request at a time. */
static void process(struct run *r)
{
	while (!r->done && opd_buf_avail(&r->in) > 0) {
		ssize_t used = opd_http_parse(&r->hp, opd_buf_rptr(&r->in), opd_buf_avail(&r->in));
		const struct opd_http_request *req;

		if (used < 0) {
			opd_buf_appendf(&r->transcript, "ERR %zd %d\n", used, r->hp.status);
			if (r->hp.status != 400 && r->hp.status != 413 && r->hp.status != 431)
				abort();
			r->done = true;
			return;
		}
		if ((size_t)used > opd_buf_avail(&r->in))
			abort();
		opd_buf_consume(&r->in, (size_t)used);
		req = opd_http_parser_request(&r->hp);
		if (req == NULL) {
			/* Incomplete: everything must have been taken, or the caller waits forever.
			 */
			if (opd_buf_avail(&r->in) != 0)
				abort();
			return;
		}
		check_request(r, req);
		record_request(r, req);
		use_request(req);
		if (req->upgrade) {
			r->done = true; /* the rest belongs to the WebSocket */
			return;
		}
		opd_http_parser_next(&r->hp);
	}
}

static void run_init(struct run *r, const struct opd_http_limits *lim)
{
	r->lim = *lim;
	r->done = false;
	opd_http_parser_init(&r->hp, lim);
	opd_buf_init(&r->in);
	opd_buf_init(&r->transcript);
}

static void run_push(struct run *r, const uint8_t *p, size_t n)
{
	if (r->done)
		return;
	opd_buf_append(&r->in, p, n);
	process(r);
}

/* The end of the stream: a request still open is recorded as such. */
static void run_end(struct run *r)
{
	if (!r->done)
		opd_buf_appendf(&r->transcript, "END in_request=%d\n",
				opd_http_parser_in_request(&r->hp));
}

static void run_fini(struct run *r)
{
	opd_http_parser_fini(&r->hp);
	opd_buf_fini(&r->in);
	opd_buf_fini(&r->transcript);
}

static void same(const struct run *a, const struct run *b, const char *what)
{
	size_t n = opd_buf_avail(&a->transcript);

	if (n == opd_buf_avail(&b->transcript) &&
	    memcmp(opd_buf_rptr(&a->transcript), opd_buf_rptr(&b->transcript), n) == 0)
		return;
	fprintf(stderr, "incremental parse (%s) differs:\n--- whole\n%.*s--- %s\n%.*s", what,
		(int)n, (const char *)opd_buf_rptr(&a->transcript), what,
		(int)opd_buf_avail(&b->transcript), (const char *)opd_buf_rptr(&b->transcript));
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct opd_http_limits lim;
	struct run whole, split, bytes;
	size_t cut;

	if (size < 2)
		return 0;
	opd_http_limits_default(&lim);
	if (!(data[1] & 0x80)) {
		lim.max_header_bytes = 24 + (size_t)(data[1] & 0x3f) * 16;
		lim.max_body = data[1] & 0x40 ? 0 : 64;
	}
	cut = data[0];
	data += 2;
	size -= 2;
	if (cut > size)
		cut = size;

	run_init(&whole, &lim);
	run_push(&whole, data, size);
	run_end(&whole);

	run_init(&split, &lim);
	run_push(&split, data, cut);
	run_push(&split, data + cut, size - cut);
	run_end(&split);
	same(&whole, &split, "split");

	if (size <= BYTEWISE_MAX) {
		run_init(&bytes, &lim);
		for (size_t i = 0; i < size; i++)
			run_push(&bytes, data + i, 1);
		run_end(&bytes);
		same(&whole, &bytes, "bytewise");
		run_fini(&bytes);
	}
	run_fini(&whole);
	run_fini(&split);
	return 0;
}
