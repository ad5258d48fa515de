/* HTTP/1.1 request parser and response writer (agentapi/http.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct opd_http_request *parse_one(struct opd_http_parser *hp, const char *s)
{
	ssize_t n = opd_http_parse(hp, (const uint8_t *)s, strlen(s));

	assert_int_equal(n, (ssize_t)strlen(s));
	assert_non_null(opd_http_parser_request(hp));
	return opd_http_parser_request(hp);
}

static void simple_get(void **state)
{
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	assert_int_equal(opd_http_parser_in_request(&hp), 0);
	r = parse_one(&hp,
		      "GET /v1/opamp?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
	assert_string_equal(r->method, "GET");
	assert_string_equal(r->path, "/v1/opamp");
	assert_string_equal(r->query, "a=1&b=2");
	assert_int_equal(r->n_headers, 2);
	assert_string_equal(r->headers[0].name, "Host");
	assert_string_equal(r->headers[0].value, "example.com");
	assert_string_equal(r->headers[1].name, "Accept");
	assert_string_equal(r->headers[1].value, "*/*");
	assert_int_equal(r->body_len, 0);
	assert_int_equal(r->keep_alive, 1);
	assert_int_equal(r->upgrade, 0);
	assert_int_equal(opd_http_parser_in_request(&hp), 0);
	opd_http_parser_fini(&hp);
}

static void get_without_query(void **state)
{
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	r = parse_one(&hp, "GET /healthz HTTP/1.1\r\n\r\n");
	assert_string_equal(r->path, "/healthz");
	assert_string_equal(r->query, "");
	assert_int_equal(r->n_headers, 0);
	opd_http_parser_fini(&hp);
}

static void post_with_body(void **state)
{
	static const char req[] =
	    "POST /v1/opamp HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
	    "Content-Length: 5\r\n\r\nhe\0lo";
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)req, sizeof(req) - 1),
			 (ssize_t)(sizeof(req) - 1));
	r = opd_http_parser_request(&hp);
	assert_non_null(r);
	assert_string_equal(r->method, "POST");
	assert_int_equal(r->body_len, 5);
	assert_memory_equal(r->body, "he\0lo", 5);
	assert_string_equal(opd_http_header(r, "content-type"), "application/x-protobuf");
	opd_http_parser_fini(&hp);
}

static void pipelined(void **state)
{
	static const char a[] = "POST /one HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
	static const char b[] = "GET /two?x HTTP/1.1\r\nX: y\r\n\r\n";
	char both[sizeof(a) + sizeof(b)];
	struct opd_http_parser hp;
	const struct opd_http_request *r;
	ssize_t n;

	(void)state;
	snprintf(both, sizeof(both), "%s%s", a, b);
	opd_http_parser_init(&hp, NULL);
	n = opd_http_parse(&hp, (const uint8_t *)both, strlen(both));
	assert_int_equal(n, (ssize_t)strlen(a));
	r = opd_http_parser_request(&hp);
	assert_non_null(r);
	assert_string_equal(r->path, "/one");
	assert_memory_equal(r->body, "abc", 3);
	/* Nothing more is consumed until next(). */
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)both + n, strlen(both) - (size_t)n),
			 0);
	assert_string_equal(opd_http_parser_request(&hp)->path, "/one");
	opd_http_parser_next(&hp);
	assert_null(opd_http_parser_request(&hp));
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)both + n, strlen(both) - (size_t)n),
			 (ssize_t)strlen(b));
	r = opd_http_parser_request(&hp);
	assert_non_null(r);
	assert_string_equal(r->method, "GET");
	assert_string_equal(r->path, "/two");
	assert_string_equal(r->query, "x");
	assert_string_equal(opd_http_header(r, "x"), "y");
	assert_int_equal(r->body_len, 0);
	opd_http_parser_fini(&hp);
}

static void check_split_request(const struct opd_http_request *r)
{
	assert_string_equal(r->method, "POST");
	assert_string_equal(r->path, "/v1/opamp");
	assert_string_equal(r->query, "q=1");
	assert_int_equal(r->n_headers, 4);
	assert_string_equal(opd_http_header(r, "Host"), "h");
	assert_string_equal(opd_http_header(r, "X-Long-Header-Name"), "some value");
	assert_string_equal(opd_http_header(r, "X-Empty"), "");
	assert_int_equal(r->body_len, 11);
	assert_memory_equal(r->body, "hello world", 11);
}

/* Every way of cutting a request in two (and byte by byte) gives the same request. */
static void split_every_byte(void **state)
{
	static const char *reqs[] = {
	    "POST /v1/opamp?q=1 HTTP/1.1\r\nHost: h\r\nX-Long-Header-Name:   some value  \r\n"
	    "X-Empty:\r\nContent-Length: 11\r\n\r\nhello world",
	    "POST /v1/opamp?q=1 HTTP/1.1\r\nHost: h\r\nX-Long-Header-Name: some value\r\n"
	    "X-Empty: \r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
	};

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		const uint8_t *p = (const uint8_t *)reqs[k];
		size_t len = strlen(reqs[k]);

		for (size_t cut = 1; cut < len; cut++) {
			struct opd_http_parser hp;

			opd_http_parser_init(&hp, NULL);
			assert_int_equal(opd_http_parse(&hp, p, cut), (ssize_t)cut);
			assert_null(opd_http_parser_request(&hp));
			assert_int_equal(opd_http_parser_in_request(&hp), 1);
			assert_int_equal(opd_http_parse(&hp, p + cut, len - cut),
					 (ssize_t)(len - cut));
			assert_non_null(opd_http_parser_request(&hp));
			check_split_request(opd_http_parser_request(&hp));
			opd_http_parser_fini(&hp);
		}

		struct opd_http_parser hp;

		opd_http_parser_init(&hp, NULL);
		for (size_t i = 0; i < len; i++) {
			assert_null(opd_http_parser_request(&hp));
			assert_int_equal(opd_http_parse(&hp, p + i, 1), 1);
		}
		assert_non_null(opd_http_parser_request(&hp));
		check_split_request(opd_http_parser_request(&hp));
		opd_http_parser_fini(&hp);
	}
}

static void chunked_body(void **state)
{
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	r = parse_one(&hp, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n");
	assert_int_equal(r->body_len, 23);
	assert_memory_equal(r->body, "Wikipedia in\r\n\r\nchunks.", 23);
	opd_http_parser_fini(&hp);
}

static void upgrade_leaves_trailing_bytes(void **state)
{
	static const char head[] = "GET /v1/opamp HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
				   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
	static const uint8_t frame[] = {0x82, 0x81, 1, 2, 3, 4, 0x55};
	uint8_t all[sizeof(head) - 1 + sizeof(frame)];
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	memcpy(all, head, sizeof(head) - 1);
	memcpy(all + sizeof(head) - 1, frame, sizeof(frame));
	opd_http_parser_init(&hp, NULL);
	assert_int_equal(opd_http_parse(&hp, all, sizeof(all)), (ssize_t)(sizeof(head) - 1));
	r = opd_http_parser_request(&hp);
	assert_non_null(r);
	assert_int_equal(r->upgrade, 1);
	assert_int_equal(opd_http_header_has_token(r, "Connection", "upgrade"), 1);
	assert_string_equal(opd_http_header(r, "upgrade"), "websocket");
	assert_string_equal(opd_http_header(r, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
	/* The frame bytes are still the caller's; the parser takes no more. */
	assert_int_equal(opd_http_parse(&hp, all + sizeof(head) - 1, sizeof(frame)), 0);
	opd_http_parser_fini(&hp);
}

/* Builds "GET / HTTP/1.1\r\nX: <pad>\r\n\r\n" with exactly total bytes. */
static char *request_of_size(size_t total)
{
	static const char pre[] = "GET / HTTP/1.1\r\nX: ", post[] = "\r\n\r\n";
	size_t pad = total - (sizeof(pre) - 1) - (sizeof(post) - 1);
	char *s = malloc(total + 1);

	assert_non_null(s);
	memcpy(s, pre, sizeof(pre) - 1);
	memset(s + sizeof(pre) - 1, 'a', pad);
	memcpy(s + sizeof(pre) - 1 + pad, post, sizeof(post));
	return s;
}

static void header_bytes_limit(void **state)
{
	struct opd_http_limits lim = {.max_header_bytes = 100, .max_body = 1000};
	struct opd_http_parser hp;
	char *s;

	(void)state;
	/* Exactly at the limit: accepted. */
	s = request_of_size(100);
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, 100), 100);
	assert_non_null(opd_http_parser_request(&hp));
	assert_int_equal(strlen(opd_http_header(opd_http_parser_request(&hp), "x")), 100 - 23);
	opd_http_parser_fini(&hp);
	free(s);

	/* One byte over, in one push or byte by byte: 431. */
	s = request_of_size(101);
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, 101), OPD_ETOOBIG);
	assert_int_equal(hp.status, 431);
	assert_null(opd_http_parser_request(&hp));
	/* Unusable afterwards. */
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, 1), OPD_ETOOBIG);
	opd_http_parser_fini(&hp);

	opd_http_parser_init(&hp, &lim);
	for (size_t i = 0; i < 99; i++)
		assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s + i, 1), 1);
	/* 100 bytes and the headers are not over: they need more than the limit. */
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s + 99, 1), OPD_ETOOBIG);
	assert_int_equal(hp.status, 431);
	opd_http_parser_fini(&hp);
	free(s);

	/* An endless header line stops at the limit, not at http-parser's 80 KiB. */
	s = malloc(4096);
	assert_non_null(s);
	memcpy(s, "GET / HTTP/1.1\r\nX: ", 19);
	memset(s + 19, 'b', 4096 - 19);
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, 4096), OPD_ETOOBIG);
	assert_int_equal(hp.status, 431);
	assert_true(hp.store.len <= 100);
	opd_http_parser_fini(&hp);
	free(s);
}

static void too_many_headers(void **state)
{
	struct opd_http_parser hp;
	struct opd_buf b;

	(void)state;
	for (int count = OPD_HTTP_MAX_HEADERS; count <= OPD_HTTP_MAX_HEADERS + 1; count++) {
		opd_buf_init(&b);
		opd_buf_appendf(&b, "GET / HTTP/1.1\r\n");
		for (int i = 0; i < count; i++)
			opd_buf_appendf(&b, "H%d: v%d\r\n", i, i);
		opd_buf_appendf(&b, "\r\n");
		opd_http_parser_init(&hp, NULL);
		if (count == OPD_HTTP_MAX_HEADERS) {
			assert_int_equal(opd_http_parse(&hp, b.data, b.len), (ssize_t)b.len);
			assert_int_equal(opd_http_parser_request(&hp)->n_headers, count);
			assert_string_equal(opd_http_header(opd_http_parser_request(&hp), "h63"),
					    "v63");
		} else {
			assert_int_equal(opd_http_parse(&hp, b.data, b.len), OPD_ETOOBIG);
			assert_int_equal(hp.status, 431);
		}
		opd_http_parser_fini(&hp);
		opd_buf_fini(&b);
	}
}

static void content_length_over_limit(void **state)
{
	struct opd_http_limits lim = {.max_header_bytes = 1024, .max_body = 10};
	static const char ok[] = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
	static const char big[] = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nZZZZZZZZZZZ";
	static const char huge[] = "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nZZ";
	struct opd_http_parser hp;

	(void)state;
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)ok, sizeof(ok) - 1),
			 (ssize_t)(sizeof(ok) - 1));
	assert_int_equal(opd_http_parser_request(&hp)->body_len, 10);
	opd_http_parser_fini(&hp);

	/* The answer comes as soon as the headers are in, before the body is sent. */
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)big, sizeof(big) - 1 - 11),
			 OPD_ETOOBIG);
	assert_int_equal(hp.status, 413);
	opd_http_parser_fini(&hp);

	for (int k = 0; k < 2; k++) {
		const char *s = k == 0 ? big : huge;

		opd_http_parser_init(&hp, &lim);
		assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, strlen(s)), OPD_ETOOBIG);
		assert_int_equal(hp.status, 413);
		/* Decided from the header: not one body byte was stored. */
		assert_null(memchr(hp.store.data, 'Z', hp.store.len));
		opd_http_parser_fini(&hp);
	}
}

static void chunked_over_limit(void **state)
{
	struct opd_http_limits lim = {.max_header_bytes = 1024, .max_body = 8};
	static const char s[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				"5\r\nAAAAA\r\n4\r\nBBBB\r\n0\r\n\r\n";
	static const char fits[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "5\r\nAAAAA\r\n3\r\nBBB\r\n0\r\n\r\n";
	struct opd_http_parser hp;

	(void)state;
	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)s, sizeof(s) - 1), OPD_ETOOBIG);
	assert_int_equal(hp.status, 413);
	opd_http_parser_fini(&hp);

	opd_http_parser_init(&hp, &lim);
	assert_int_equal(opd_http_parse(&hp, (const uint8_t *)fits, sizeof(fits) - 1),
			 (ssize_t)(sizeof(fits) - 1));
	assert_int_equal(opd_http_parser_request(&hp)->body_len, 8);
	opd_http_parser_fini(&hp);
}

static void garbage(void **state)
{
	static const char *bad[] = {
	    "\x01\x02\x03 nonsense\r\n\r\n",
	    "GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
	    "POST / HTTP/1.1\r\nContent-Length : 1\r\n\r\na",
	    "GET / HTTP/9.9.9\r\n\r\n",
	    "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct opd_http_parser hp;

		opd_http_parser_init(&hp, NULL);
		assert_int_equal(opd_http_parse(&hp, (const uint8_t *)bad[i], strlen(bad[i])),
				 OPD_EPROTO);
		assert_int_equal(hp.status, 400);
		assert_null(opd_http_parser_request(&hp));
		opd_http_parser_fini(&hp);
	}
}

static void keep_alive(void **state)
{
	static const struct {
		const char *req;
		int keep_alive;
	} cases[] = {
	    {"GET / HTTP/1.1\r\n\r\n", 1},
	    {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 0},
	    {"GET / HTTP/1.0\r\n\r\n", 0},
	    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct opd_http_parser hp;

		opd_http_parser_init(&hp, NULL);
		assert_int_equal(parse_one(&hp, cases[i].req)->keep_alive, cases[i].keep_alive);
		opd_http_parser_fini(&hp);
	}
}

static void header_lookup(void **state)
{
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	r = parse_one(&hp, "GET / HTTP/1.1\r\nContent-TYPE: \t text/plain \t\r\nX-A: 1\r\n\r\n");
	assert_string_equal(opd_http_header(r, "content-type"), "text/plain");
	assert_string_equal(opd_http_header(r, "CONTENT-TYPE"), "text/plain");
	assert_string_equal(opd_http_header(r, "x-a"), "1");
	assert_null(opd_http_header(r, "x-b"));
	assert_null(opd_http_header(r, "content-typ"));
	opd_http_parser_fini(&hp);
}

static void has_token(void **state)
{
	struct opd_http_parser hp;
	const struct opd_http_request *r;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	r = parse_one(&hp, "GET / HTTP/1.1\r\n"
			   "Accept-Encoding: gzip;q=0, deflate; q=0.5 ,BR;q=1.0, zstd;q=0.000\r\n"
			   "Accept-Encoding: identity;q=0.001\r\n"
			   "Connection: keep-alive, Upgrade\r\n"
			   "X-List: gzipped, x-gzip\r\n\r\n");
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "gzip"), 0);
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "deflate"), 1);
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "br"), 1);
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "zstd"), 0);
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "identity"), 1);
	assert_int_equal(opd_http_header_has_token(r, "accept-encoding", "compress"), 0);
	assert_int_equal(opd_http_header_has_token(r, "connection", "upgrade"), 1);
	assert_int_equal(opd_http_header_has_token(r, "connection", "keep-alive"), 1);
	assert_int_equal(opd_http_header_has_token(r, "connection", "close"), 0);
	/* Whole tokens only. */
	assert_int_equal(opd_http_header_has_token(r, "x-list", "gzip"), 0);
	assert_int_equal(opd_http_header_has_token(r, "x-list", "x-gzip"), 1);
	assert_int_equal(opd_http_header_has_token(r, "missing", "gzip"), 0);
	opd_http_parser_fini(&hp);
}

static void keep_alive_reuse(void **state)
{
	struct opd_http_parser hp;

	(void)state;
	opd_http_parser_init(&hp, NULL);
	for (int i = 0; i < 3; i++) {
		const struct opd_http_request *r;

		r = parse_one(&hp, "POST /v1/opamp HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
		assert_memory_equal(r->body, "ok", 2);
		opd_http_parser_next(&hp);
		assert_int_equal(opd_http_parser_in_request(&hp), 0);
	}
	opd_http_parser_fini(&hp);
}

static void assert_buf_str(struct opd_buf *b, const char *want)
{
	assert_int_equal(opd_buf_avail(b), strlen(want));
	assert_memory_equal(opd_buf_rptr(b), want, strlen(want));
	opd_buf_reset(b);
}

static void response_writer(void **state)
{
	struct opd_buf b;

	(void)state;
	opd_buf_init(&b);
	opd_http_write_response(&b, 200, "application/x-protobuf", NULL, "abc", 3, 1);
	assert_buf_str(&b, "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
			   "Content-Length: 3\r\nConnection: keep-alive\r\n\r\nabc");
	opd_http_write_response(&b, 503, NULL, "Retry-After: 5\r\n", NULL, 0, 0);
	assert_buf_str(&b, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
			   "Connection: close\r\nRetry-After: 5\r\n\r\n");
	opd_http_write_response(&b, 204, "text/plain", NULL, NULL, 0, 1);
	assert_buf_str(&b, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
	opd_http_write_response(&b, 101, NULL,
				"Upgrade: websocket\r\nConnection: Upgrade\r\n"
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
				NULL, 0, 1);
	assert_buf_str(&b,
		       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		       "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
		       "\r\n\r\n");
	opd_http_write_response(&b, 413, "text/plain", NULL, "too big\n", 8, 0);
	assert_buf_str(&b, "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
			   "Content-Length: 8\r\nConnection: close\r\n\r\ntoo big\n");
	assert_string_equal(opd_http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(opd_http_reason(404), "Not Found");
	opd_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(simple_get),
	    cmocka_unit_test(get_without_query),
	    cmocka_unit_test(post_with_body),
	    cmocka_unit_test(pipelined),
	    cmocka_unit_test(split_every_byte),
	    cmocka_unit_test(chunked_body),
	    cmocka_unit_test(upgrade_leaves_trailing_bytes),
	    cmocka_unit_test(header_bytes_limit),
	    cmocka_unit_test(too_many_headers),
	    cmocka_unit_test(content_length_over_limit),
	    cmocka_unit_test(chunked_over_limit),
	    cmocka_unit_test(garbage),
	    cmocka_unit_test(keep_alive),
	    cmocka_unit_test(header_lookup),
	    cmocka_unit_test(has_token),
	    cmocka_unit_test(keep_alive_reuse),
	    cmocka_unit_test(response_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
