/*
 * HTTP/1.1 request parsing (Debian's http-parser, driven from byte arrays)
 * and response writing. No sockets: conn.c pushes bytes in and writes the
 * produced bytes out. Used by both the OpAMP listener and the admin API.
 *
 * One request at a time: when a request is complete the parser stops and
 * returns the bytes it consumed, so the rest of a pipelined stream (or a
 * WebSocket stream after an Upgrade) stays with the caller.
 */
#ifndef OPD_HTTP_H
#define OPD_HTTP_H

#include "buf.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OPD_HTTP_MAX_HEADERS 64

struct opd_http_limits {
	size_t max_header_bytes; /* request line + all headers; default 16 KiB */
	size_t max_body;         /* default 4 MiB (OpAMP message limit) */
};

struct opd_http_header {
	const char *name;  /* NUL-terminated, points into the request's storage */
	const char *value; /* NUL-terminated, trimmed */
};

struct opd_http_request {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* URL path without the query, percent-encoding kept */
	const char *query;  /* after '?', or "" */
	struct opd_http_header headers[OPD_HTTP_MAX_HEADERS];
	size_t n_headers;
	const uint8_t *body; /* de-chunked; not decompressed */
	size_t body_len;
	int keep_alive; /* the connection may carry another request after the response */
	int upgrade; /* Connection: upgrade + Upgrade: present; the rest of the stream is not HTTP
		      */
};

struct opd_http_parser {
	http_parser p;
	struct opd_http_limits limits;
	struct opd_buf store; /* request line, headers and body bytes */
	size_t header_bytes;
	int state;  /* private */
	int status; /* on error: the HTTP status to answer (400, 413, 431) */
	int header_field_open;
	size_t url_off, url_len;
	size_t hdr_off[OPD_HTTP_MAX_HEADERS][2]; /* name offset, value offset into store */
	size_t hdr_len[OPD_HTTP_MAX_HEADERS][2];
	size_t n_hdr;
	size_t body_off;
	struct opd_http_request req;
};

/* Default limits: 16 KiB of headers, 4 MiB of body. */
void opd_http_limits_default(struct opd_http_limits *l);

void opd_http_parser_init(struct opd_http_parser *hp, const struct opd_http_limits *limits);
void opd_http_parser_fini(struct opd_http_parser *hp);

/*
 * Feed n bytes. Returns the number of bytes consumed (0..n). When a whole
 * request has been read, opd_http_parser_request() returns it and the parser
 * consumes nothing more until opd_http_parser_next(). Errors:
 *   OPD_EPROTO  malformed request (hp->status = 400)
 *   OPD_ETOOBIG headers over max_header_bytes or too many (hp->status = 431),
 *               or a body over max_body, known from Content-Length before any
 *               body byte is buffered (hp->status = 413)
 * After an error the parser is unusable; answer hp->status and close.
 */
ssize_t opd_http_parse(struct opd_http_parser *hp, const uint8_t *p, size_t n);

/* The complete request, or NULL while incomplete. Borrowed until opd_http_parser_next. */
const struct opd_http_request *opd_http_parser_request(const struct opd_http_parser *hp);

/* 1 when some bytes of a request have been consumed but it is not complete. */
int opd_http_parser_in_request(const struct opd_http_parser *hp);

/* Forget the current request and get ready for the next one on the same connection. */
void opd_http_parser_next(struct opd_http_parser *hp);

/* Header value by case-insensitive name, or NULL. */
const char *opd_http_header(const struct opd_http_request *r, const char *name);

/*
 * 1 when a comma-separated header list (e.g. Connection, Accept-Encoding)
 * contains token, case-insensitively, with a q-value other than 0.
 */
int opd_http_header_has_token(const struct opd_http_request *r, const char *name,
			      const char *token);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *opd_http_reason(int status);

/*
 * Append a whole HTTP/1.1 response to out: status line, Content-Length,
 * Connection: keep-alive or close, the extra headers given as
 * "Name: value\r\n" lines in extra (may be NULL), then the body.
 */
void opd_http_write_response(struct opd_buf *out, int status, const char *content_type,
			     const char *extra, const void *body, size_t len, int keep_alive);

#endif
