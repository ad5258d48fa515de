#include "admin_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_TIMEOUT_MS 10000

/* A growable receive buffer, bounded by the caller. */
struct rbuf {
	uint8_t *p;
	size_t len, cap;
};

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = opd_test_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

int opd_client_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int opd_client_send_all(int fd, const void *p, size_t n, uint64_t deadline)
{
	const uint8_t *q = p;
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	ssize_t w;

	while (n > 0) {
		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		w = send(fd, q, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -1;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

long opd_client_recv(int fd, void *p, size_t cap, uint64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t r;

	for (;;) {
		int pr = poll(&pfd, 1, remaining_ms(deadline));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = recv(fd, p, cap, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		return (long)r;
	}
}

/* Read more bytes into b (at most limit in total). >0 read, 0 EOF, -1 error/timeout/limit. */
static long rbuf_fill(int fd, struct rbuf *b, size_t limit, uint64_t deadline)
{
	long r;

	if (b->len >= limit) {
		errno = EMSGSIZE;
		return -1;
	}
	if (b->cap - b->len < 65536) {
		size_t ncap = b->cap * 2 < b->len + 65537 ? b->len + 65537 : b->cap * 2;

		b->p = realloc(b->p, ncap);
		if (b->p == NULL)
			abort();
		b->cap = ncap;
	}
	r = opd_client_recv(fd, b->p + b->len, b->cap - b->len - 1, deadline);
	if (r > 0)
		b->len += (size_t)r;
	b->p[b->len] = '\0';
	return r;
}

static uint8_t *find_crlfcrlf(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++)
		if (memcmp(p + i, "\r\n\r\n", 4) == 0)
			return (uint8_t *)p + i;
	return NULL;
}

const char *opd_client_header(const struct opd_client_resp *r, const char *name, char *out,
			      size_t cap)
{
	size_t nl = strlen(name);
	const char *line;

	if (r->head == NULL)
		return NULL;
	line = strstr(r->head, "\r\n");
	while (line != NULL) {
		line += 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1, *e = strstr(v, "\r\n");
			size_t len;

			if (e == NULL)
				e = v + strlen(v);
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			len = (size_t)(e - v);
			if (len >= cap)
				len = cap - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return out;
		}
		line = strstr(line, "\r\n");
	}
	return NULL;
}

static void set_extra(struct opd_client_resp *r, const uint8_t *p, size_t n)
{
	r->extra = malloc(n + 1);
	if (r->extra == NULL)
		abort();
	memcpy(r->extra, p, n);
	r->extra[n] = '\0';
	r->extra_len = n;
}

static void set_body(struct opd_client_resp *r, const uint8_t *p, size_t n)
{
	r->body = malloc(n + 1);
	if (r->body == NULL)
		abort();
	memcpy(r->body, p, n);
	r->body[n] = '\0';
	r->body_len = n;
}

/* Parse the head in b (already received up to its end); 0 or -1. */
static int parse_head(struct opd_client_resp *r, const uint8_t *p, size_t hlen)
{
	int major, minor, status;

	r->head = malloc(hlen + 1);
	if (r->head == NULL)
		abort();
	memcpy(r->head, p, hlen);
	r->head[hlen] = '\0';
	if (sscanf(r->head, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
		return -1;
	r->status = status;
	return 0;
}

/* Decode a chunked body starting at b->p[off]; reads more as needed. */
static int read_chunked(int fd, struct rbuf *b, size_t off, uint64_t deadline,
			struct opd_client_resp *r)
{
	struct rbuf out = {0};
	size_t pos = off;

	for (;;) {
		uint8_t *eol;
		unsigned long size;
		char *end;

		while ((eol = memmem(b->p + pos, b->len - pos, "\r\n", 2)) == NULL)
			if (rbuf_fill(fd, b, OPD_CLIENT_MAX_BODY, deadline) <= 0)
				goto fail;
		size = strtoul((char *)b->p + pos, &end, 16);
		if (end == (char *)b->p + pos || size > OPD_CLIENT_MAX_BODY)
			goto fail;
		pos = (size_t)(eol - b->p) + 2;
		while (b->len - pos < size + 2)
			if (rbuf_fill(fd, b, OPD_CLIENT_MAX_BODY + 4096, deadline) <= 0)
				goto fail;
		if (size == 0) {
			pos += 2; /* no trailers expected */
			break;
		}
		if (out.len + size > OPD_CLIENT_MAX_BODY)
			goto fail;
		out.p = realloc(out.p, out.len + size + 1);
		if (out.p == NULL)
			abort();
		memcpy(out.p + out.len, b->p + pos, size);
		out.len += size;
		pos += size + 2;
	}
	set_body(r, out.p != NULL ? out.p : (const uint8_t *)"", out.len);
	free(out.p);
	if (pos < b->len)
		set_extra(r, b->p + pos, b->len - pos);
	return 0;
fail:
	free(out.p);
	return -1;
}

/* Read one response whose first bytes may already be in b. */
static int read_response_buf(int fd, struct rbuf *b, uint64_t deadline, struct opd_client_resp *r)
{
	uint8_t *end;
	size_t hlen, clen = 0;
	char v[64];
	long got;

	while ((end = find_crlfcrlf(b->p, b->len)) == NULL) {
		got = rbuf_fill(fd, b, OPD_CLIENT_MAX_HEAD, deadline);
		if (got <= 0) {
			r->closed = got == 0 || errno == ECONNRESET;
			return -1;
		}
	}
	hlen = (size_t)(end - b->p) + 4;
	if (parse_head(r, b->p, hlen) != 0)
		return -1;
	if (r->status == 101 || r->status == 204 || r->status == 304 ||
	    (r->status >= 100 && r->status < 200)) {
		set_body(r, (const uint8_t *)"", 0);
		if (b->len > hlen)
			set_extra(r, b->p + hlen, b->len - hlen);
		return 0;
	}
	if (opd_client_header(r, "Transfer-Encoding", v, sizeof(v)) != NULL &&
	    strcasestr(v, "chunked") != NULL)
		return read_chunked(fd, b, hlen, deadline, r);
	if (opd_client_header(r, "Content-Length", v, sizeof(v)) != NULL) {
		char *e;

		clen = strtoul(v, &e, 10);
		if (e == v || clen > OPD_CLIENT_MAX_BODY)
			return -1;
		while (b->len - hlen < clen) {
			got = rbuf_fill(fd, b, hlen + clen, deadline);
			if (got <= 0) {
				r->closed = 1;
				return -1;
			}
		}
		set_body(r, b->p + hlen, clen);
		if (b->len > hlen + clen)
			set_extra(r, b->p + hlen + clen, b->len - hlen - clen);
		return 0;
	}
	/* No length: the body runs to EOF. */
	for (;;) {
		got = rbuf_fill(fd, b, hlen + OPD_CLIENT_MAX_BODY, deadline);
		if (got == 0 || (got < 0 && errno == ECONNRESET))
			break;
		if (got < 0)
			return -1;
	}
	r->closed = 1;
	set_body(r, b->p + hlen, b->len - hlen);
	return 0;
}

int opd_client_read_response(int fd, uint64_t deadline, struct opd_client_resp *r)
{
	struct rbuf b = {0};
	int rc;

	*r = (struct opd_client_resp){0};
	rc = read_response_buf(fd, &b, deadline, r);
	free(b.p);
	return rc;
}

int opd_client_exchange(int fd, const void *req, size_t n, int timeout_ms,
			struct opd_client_resp *r)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	const uint8_t *q = req;
	struct rbuf b = {0};
	int rc;

	*r = (struct opd_client_resp){0};
	/* Send while watching for an early answer: a server that refuses a large body answers
	 * (and may close) before reading all of it. */
	while (n > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLOUT};
		ssize_t w;

		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0)
			break;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
			break;
		w = send(fd, q, n > 65536 ? 65536 : n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break; /* EPIPE / ECONNRESET: read what the server said */
		}
		q += w;
		n -= (size_t)w;
	}
	rc = read_response_buf(fd, &b, deadline, r);
	free(b.p);
	return rc;
}

void opd_client_resp_free(struct opd_client_resp *r)
{
	free(r->head);
	free(r->body);
	free(r->extra);
	*r = (struct opd_client_resp){0};
}

int opd_api_request(const struct opd_daemon *d, const char *method, const char *path,
		    const char *body, const char *token, struct opd_client_resp *r, json_t **json)
{
	char head[2048];
	size_t blen = body != NULL ? strlen(body) : 0;
	char *req;
	int fd, n, rc;

	*r = (struct opd_client_resp){0};
	if (json != NULL)
		*json = NULL;
	n = snprintf(head, sizeof(head),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
		     "%s%s%s"
		     "%s"
		     "Content-Length: %zu\r\n\r\n",
		     method, path, d->admin_port, token != NULL ? "Authorization: Bearer " : "",
		     token != NULL ? token : "", token != NULL ? "\r\n" : "",
		     body != NULL ? "Content-Type: application/json\r\n" : "", blen);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	req = malloc((size_t)n + blen);
	if (req == NULL)
		abort();
	memcpy(req, head, (size_t)n);
	if (blen > 0)
		memcpy(req + n, body, blen);
	fd = opd_client_connect(d->admin_port);
	if (fd < 0) {
		free(req);
		return -1;
	}
	rc = opd_client_exchange(fd, req, (size_t)n + blen, HTTP_TIMEOUT_MS, r);
	close(fd);
	free(req);
	if (rc != 0)
		return -1;
	if (json != NULL && r->body_len > 0)
		*json = json_loadb((const char *)r->body, r->body_len, 0, NULL);
	return r->status;
}

json_t *opd_api_get_agent(const struct opd_daemon *d, const char *uid_hex)
{
	struct opd_client_resp r;
	char path[128];
	json_t *j = NULL;
	int st;

	snprintf(path, sizeof(path), "/api/v1/agents/%s", uid_hex);
	st = opd_api_request(d, "GET", path, NULL, d->token, &r, &j);
	opd_client_resp_free(&r);
	if (st != 200) {
		json_decref(j);
		return NULL;
	}
	return j;
}

const char *opd_api_json_text(json_t *j, const char *path, char *out, size_t cap)
{
	char key[128];
	const char *p = path;

	while (j != NULL && *p != '\0') {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);

		if (n >= sizeof(key))
			n = sizeof(key) - 1;
		memcpy(key, p, n);
		key[n] = '\0';
		j = json_is_object(j) ? json_object_get(j, key) : NULL;
		p += n + (dot != NULL ? 1 : 0);
	}
	if (j == NULL)
		snprintf(out, cap, "<missing>");
	else if (json_is_string(j))
		snprintf(out, cap, "%s", json_string_value(j));
	else if (json_is_true(j))
		snprintf(out, cap, "true");
	else if (json_is_false(j))
		snprintf(out, cap, "false");
	else if (json_is_integer(j))
		snprintf(out, cap, "%lld", (long long)json_integer_value(j));
	else if (json_is_real(j))
		snprintf(out, cap, "%g", json_real_value(j));
	else if (json_is_null(j))
		snprintf(out, cap, "null");
	else
		snprintf(out, cap, "<%s>", json_is_array(j) ? "array" : "object");
	return out;
}

json_t *opd_api_wait_agent(const struct opd_daemon *d, const char *uid_hex, const char *path,
			   const char *want, int timeout_ms)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	char last[256] = "<agent not found>";

	for (;;) {
		json_t *a = opd_api_get_agent(d, uid_hex);

		if (a != NULL) {
			opd_api_json_text(a, path, last, sizeof(last));
			if (strcmp(last, want) == 0)
				return a;
			json_decref(a);
		}
		if (opd_test_now_ms() > deadline)
			break;
		opd_test_pause_ms(100);
	}
	fprintf(stderr, "agent %s: %s is \"%s\" after %d ms, wanted \"%s\"\n", uid_hex, path, last,
		timeout_ms, want);
	return NULL;
}

int opd_api_publish(const struct opd_daemon *d, const char *name, const char *yaml, char hash[65],
		    int *version)
{
	struct opd_client_resp r;
	json_t *req, *res = NULL;
	char path[256], *body;
	int st;

	req = json_pack("{s:{s:{s:s,s:s}},s:s}", "files", "collector.yaml", "content_type",
			"text/yaml", "body", yaml, "message", "e2e test");
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	snprintf(path, sizeof(path), "/api/v1/configs/%s", name);
	st = opd_api_request(d, "POST", path, body, d->token, &r, &res);
	free(body);
	if (st == 200 || st == 201) {
		json_t *h = json_object_get(res, "config_hash");
		json_t *v = json_object_get(res, "version");

		if (!json_is_string(h) || strlen(json_string_value(h)) != 64 ||
		    !json_is_integer(v)) {
			fprintf(stderr, "publish %s: bad answer: %s\n", name, (char *)r.body);
			st = -1;
		} else {
			memcpy(hash, json_string_value(h), 65);
			*version = (int)json_integer_value(v);
		}
	} else {
		fprintf(stderr, "publish %s: HTTP %d: %s\n", name, st,
			r.body != NULL ? (char *)r.body : "");
	}
	json_decref(res);
	opd_client_resp_free(&r);
	return st;
}
