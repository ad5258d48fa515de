#include "http.h"

#include "err.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* hp->state */
enum {
	ST_IDLE,     /* nothing of the next request consumed yet */
	ST_HEADERS,  /* inside the request line or headers */
	ST_BODY,     /* headers done, reading the body */
	ST_COMPLETE, /* a whole request is available */
	ST_ERROR,    /* unusable; hp->status says what to answer */
};

/* hp->header_field_open: what the last data callback was appending. */
enum {
	IN_URL,
	IN_NAME,
	IN_VALUE,
	IN_NONE, /* after the headers */
};

static struct opd_http_parser *parser_of(http_parser *p)
{
	return p->data;
}

static int fail(struct opd_http_parser *hp, int status)
{
	hp->state = ST_ERROR;
	hp->status = status;
	return -1; /* any non-zero value stops http-parser */
}

static void nul_terminate(struct opd_http_parser *hp)
{
	opd_buf_append_byte(&hp->store, 0);
}

/*
 * The store holds strings back to back. Each string is NUL-terminated when the
 * next one starts, because http-parser may hand over any piece in several
 * calls (one per push).
 */
static void close_open_string(struct opd_http_parser *hp)
{
	size_t n;

	switch (hp->header_field_open) {
	case IN_URL:
		nul_terminate(hp);
		break;
	case IN_NAME:
		/* A name without a value callback: give it an empty value. */
		n = hp->n_hdr - 1;
		nul_terminate(hp);
		hp->hdr_off[n][1] = hp->store.len - 1;
		hp->hdr_len[n][1] = 0;
		break;
	case IN_VALUE:
		nul_terminate(hp);
		break;
	default:
		break;
	}
}

static int on_message_begin(http_parser *p)
{
	struct opd_http_parser *hp = parser_of(p);

	hp->header_field_open = IN_URL;
	hp->url_off = hp->store.len;
	hp->url_len = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct opd_http_parser *hp = parser_of(p);

	opd_buf_append(&hp->store, at, len);
	hp->url_len += len;
	return 0;
}

/* RFC 9110 tchar. http-parser, built non-strict, lets spaces into header names. */
static bool is_token(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL)))
			return false;
	}
	return true;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct opd_http_parser *hp = parser_of(p);

	if (!is_token(at, len))
		return fail(hp, 400);

	if (hp->header_field_open != IN_NAME) {
		close_open_string(hp);
		if (hp->n_hdr == OPD_HTTP_MAX_HEADERS)
			return fail(hp, 431);
		hp->hdr_off[hp->n_hdr][0] = hp->store.len;
		hp->hdr_len[hp->n_hdr][0] = 0;
		hp->n_hdr++;
		hp->header_field_open = IN_NAME;
	}
	opd_buf_append(&hp->store, at, len);
	hp->hdr_len[hp->n_hdr - 1][0] += len;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct opd_http_parser *hp = parser_of(p);
	size_t n;

	if (hp->n_hdr == 0)
		return fail(hp, 400);
	n = hp->n_hdr - 1;
	if (hp->header_field_open != IN_VALUE) {
		nul_terminate(hp); /* ends the name */
		hp->hdr_off[n][1] = hp->store.len;
		hp->hdr_len[n][1] = 0;
		hp->header_field_open = IN_VALUE;
	}
	opd_buf_append(&hp->store, at, len);
	hp->hdr_len[n][1] += len;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct opd_http_parser *hp = parser_of(p);

	close_open_string(hp);
	hp->header_field_open = IN_NONE;
	hp->state = ST_BODY;
	/* content_length is ULLONG_MAX when absent; chunked bodies are counted in on_body. */
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > hp->limits.max_body)
		return fail(hp, 413);
	hp->body_off = hp->store.len;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct opd_http_parser *hp = parser_of(p);
	size_t have = hp->store.len - hp->body_off;

	if (len > hp->limits.max_body - have)
		return fail(hp, 413);
	opd_buf_append(&hp->store, at, len);
	return 0;
}

static void trim(struct opd_http_parser *hp, size_t *off, size_t *len)
{
	const char *s = (const char *)hp->store.data;

	while (*len > 0 && (s[*off] == ' ' || s[*off] == '\t')) {
		(*off)++;
		(*len)--;
	}
	while (*len > 0 && (s[*off + *len - 1] == ' ' || s[*off + *len - 1] == '\t' ||
			    s[*off + *len - 1] == '\r' || s[*off + *len - 1] == '\n'))
		(*len)--;
}

/* Turn the offsets into pointers: the store no longer moves until next(). */
static void fix_up(struct opd_http_parser *hp)
{
	struct opd_http_request *r = &hp->req;
	char *base = (char *)hp->store.data;
	char *url, *q;

	r->method = http_method_str((enum http_method)hp->p.method);
	url = base + hp->url_off;
	url[hp->url_len] = 0;
	q = memchr(url, '?', hp->url_len);
	if (q != NULL) {
		*q = 0;
		r->query = q + 1;
	} else {
		r->query = url + hp->url_len; /* the empty string */
	}
	r->path = url;
	r->n_headers = hp->n_hdr;
	for (size_t i = 0; i < hp->n_hdr; i++) {
		size_t voff = hp->hdr_off[i][1], vlen = hp->hdr_len[i][1];

		trim(hp, &voff, &vlen);
		base[voff + vlen] = 0;
		r->headers[i].name = base + hp->hdr_off[i][0];
		r->headers[i].value = base + voff;
	}
	r->body = (const uint8_t *)base + hp->body_off;
	r->body_len = hp->store.len - hp->body_off;
	r->keep_alive = http_should_keep_alive(&hp->p) != 0;
	r->upgrade = hp->p.upgrade != 0;
}

static int on_message_complete(http_parser *p)
{
	struct opd_http_parser *hp = parser_of(p);

	if (hp->header_field_open != IN_NONE) {
		/* Cannot happen for requests, but never read past unterminated strings. */
		return fail(hp, 400);
	}
	fix_up(hp);
	hp->state = ST_COMPLETE;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void opd_http_limits_default(struct opd_http_limits *l)
{
	l->max_header_bytes = 16 * 1024;
	l->max_body = 4 * 1024 * 1024;
}

static void reset(struct opd_http_parser *hp)
{
	http_parser_init(&hp->p, HTTP_REQUEST);
	hp->p.data = hp;
	opd_buf_reset(&hp->store);
	hp->header_bytes = 0;
	hp->state = ST_IDLE;
	hp->status = 0;
	hp->header_field_open = IN_NONE;
	hp->url_off = hp->url_len = 0;
	hp->n_hdr = 0;
	hp->body_off = 0;
	memset(&hp->req, 0, sizeof(hp->req));
}

void opd_http_parser_init(struct opd_http_parser *hp, const struct opd_http_limits *limits)
{
	memset(hp, 0, sizeof(*hp));
	if (limits != NULL)
		hp->limits = *limits;
	else
		opd_http_limits_default(&hp->limits);
	opd_buf_init(&hp->store);
	reset(hp);
}

void opd_http_parser_fini(struct opd_http_parser *hp)
{
	opd_buf_fini(&hp->store);
	memset(&hp->req, 0, sizeof(hp->req));
	hp->state = ST_ERROR;
}

static ssize_t error_code(const struct opd_http_parser *hp)
{
	return hp->status == 400 ? OPD_EPROTO : OPD_ETOOBIG;
}

/* Map an http-parser failure that our callbacks did not cause. */
static ssize_t parser_failed(struct opd_http_parser *hp, enum http_errno e)
{
	if (hp->state == ST_ERROR)
		return error_code(hp);
	hp->state = ST_ERROR;
	/* http-parser's own 80 KiB header cap, if our limit is set above it. */
	hp->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
	return error_code(hp);
}

ssize_t opd_http_parse(struct opd_http_parser *hp, const uint8_t *p, size_t n)
{
	size_t used = 0;

	if (hp->state == ST_ERROR)
		return error_code(hp);
	while (used < n && hp->state != ST_COMPLETE) {
		size_t chunk = n - used, got;
		bool in_headers = hp->state == ST_IDLE || hp->state == ST_HEADERS;
		enum http_errno e;

		/*
		 * While in the headers, never hand http-parser more than the
		 * header budget: if the headers are not complete after exactly
		 * max_header_bytes, they are too long, and we know it without
		 * buffering a byte more.
		 */
		if (in_headers) {
			size_t budget = hp->limits.max_header_bytes - hp->header_bytes;

			if (budget == 0) {
				fail(hp, 431);
				return OPD_ETOOBIG;
			}
			if (chunk > budget)
				chunk = budget;
			hp->state = ST_HEADERS;
		}
		got = http_parser_execute(&hp->p, &settings, (const char *)p + used, chunk);
		e = HTTP_PARSER_ERRNO(&hp->p);
		if (e != HPE_OK && e != HPE_PAUSED)
			return parser_failed(hp, e);
		if (hp->state == ST_ERROR)
			return error_code(hp);
		if (in_headers && hp->state == ST_HEADERS)
			hp->header_bytes += got;
		used += got;
		/*
		 * An Upgrade (or CONNECT) makes http-parser return early; the
		 * pause in on_message_complete covers every other stop.
		 */
		if (hp->state != ST_COMPLETE && got < chunk)
			return parser_failed(hp, HPE_UNKNOWN);
	}
	if (hp->state == ST_HEADERS && hp->header_bytes >= hp->limits.max_header_bytes) {
		fail(hp, 431);
		return OPD_ETOOBIG;
	}
	return (ssize_t)used;
}

const struct opd_http_request *opd_http_parser_request(const struct opd_http_parser *hp)
{
	return hp->state == ST_COMPLETE ? &hp->req : NULL;
}

int opd_http_parser_in_request(const struct opd_http_parser *hp)
{
	return hp->state == ST_HEADERS || hp->state == ST_BODY;
}

void opd_http_parser_next(struct opd_http_parser *hp)
{
	/* A keep-alive connection should not hold on to a big body between requests. */
	if (hp->store.cap > 64 * 1024)
		opd_buf_fini(&hp->store);
	reset(hp);
}

const char *opd_http_header(const struct opd_http_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* q-value of one list element's parameters ("; q=0.5"); 1000 means q=1. */
static int element_q(const char *s, const char *end)
{
	while (s < end) {
		const char *semi = memchr(s, ';', (size_t)(end - s));
		const char *pend;

		if (semi == NULL)
			return 1000;
		s = semi + 1;
		while (s < end && is_ows(*s))
			s++;
		pend = memchr(s, ';', (size_t)(end - s));
		if (pend == NULL)
			pend = end;
		if (pend - s >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
			const char *v = s + 2;
			int q = 0, digits = 0;

			/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
			if (v < pend && (*v == '0' || *v == '1'))
				q = (*v++ - '0') * 1000;
			else
				return 0;
			if (v < pend && *v == '.') {
				int scale = 100;

				for (v++; v < pend && *v >= '0' && *v <= '9' && digits < 3;
				     v++, digits++) {
					q += (*v - '0') * scale;
					scale /= 10;
				}
			}
			while (v < pend && is_ows(*v))
				v++;
			if (v != pend || q > 1000)
				return 0; /* malformed: treat as not acceptable */
			return q;
		}
		s = pend;
	}
	return 1000;
}

static bool list_has_token(const char *list, const char *token)
{
	size_t tlen = strlen(token);
	const char *s = list;

	while (*s != 0) {
		const char *end = strchr(s, ',');
		const char *t, *tend;

		if (end == NULL)
			end = s + strlen(s);
		t = s;
		while (t < end && is_ows(*t))
			t++;
		tend = t;
		while (tend < end && *tend != ';' && !is_ows(*tend))
			tend++;
		if ((size_t)(tend - t) == tlen && strncasecmp(t, token, tlen) == 0 &&
		    element_q(tend, end) > 0)
			return true;
		s = *end == ',' ? end + 1 : end;
	}
	return false;
}

int opd_http_header_has_token(const struct opd_http_request *r, const char *name, const char *token)
{
	/* A list header may be split over several lines; they are one list. */
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers[i].name, name) == 0 &&
		    list_has_token(r->headers[i].value, token))
			return 1;
	return 0;
}

static const struct {
	int status;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *opd_http_reason(int status)
{
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

void opd_http_write_response(struct opd_buf *out, int status, const char *content_type,
			     const char *extra, const void *body, size_t len, int keep_alive)
{
	/* RFC 9110: 1xx and 204 carry neither a body nor Content-Length. */
	bool bodyless = (status >= 100 && status < 200) || status == 204;

	opd_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, opd_http_reason(status));
	if (content_type != NULL && !bodyless)
		opd_buf_appendf(out, "Content-Type: %s\r\n", content_type);
	if (!bodyless)
		opd_buf_appendf(out, "Content-Length: %zu\r\n", len);
	/* A 101 carries "Connection: Upgrade" in extra; a second Connection line would confuse
	 * clients. */
	if (status != 101)
		opd_buf_appendf(out, "Connection: %s\r\n", keep_alive ? "keep-alive" : "close");
	if (extra != NULL)
		opd_buf_append(out, extra, strlen(extra));
	opd_buf_append(out, "\r\n", 2);
	if (!bodyless)
		opd_buf_append(out, body, len);
}
