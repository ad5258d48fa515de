#define LOG_COMPONENT "httpc"

#include "httpc.h"

#include "buf.h"
#include "err.h"
#include "list.h"
#include "log.h"
#include "mem.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RETRY_AFTER_MAX 64

/* One socket libcurl asked us to watch. */
struct sock {
	uv_poll_t poll;
	struct opd_httpc *c;
	curl_socket_t fd;
	struct opd_list link;
};

struct req {
	struct opd_list link;
	struct opd_httpc *c;
	CURL *easy;
	struct curl_slist *hdrs;
	struct opd_buf resp;
	size_t max;
	bool too_big;
	bool has_retry_after;
	char retry_after[RETRY_AFTER_MAX];
	char errbuf[CURL_ERROR_SIZE];
	opd_httpc_cb cb;
	void *data;
};

struct opd_httpc {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct opd_list reqs;  /* struct req, started and not completed */
	struct opd_list socks; /* struct sock, polled */
	size_t n_reqs;
	size_t handles; /* uv handles not yet through their close callback */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
	char *ca_file; /* trusted CAs for https peers; NULL = libcurl's default bundle */
};

static struct req *req_of(struct opd_list *l)
{
	return opd_container_of(l, struct req, link);
}

static void req_free(struct req *r)
{
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	opd_buf_fini(&r->resp);
	free(r);
}

/* Everything is closed: cancelled requests learn it first, then the owner. */
static void finish_close(struct opd_httpc *c)
{
	struct opd_list *pos, *tmp;

	opd_list_foreach_safe(pos, tmp, &c->reqs)
	{
		struct req *r = req_of(pos);

		opd_list_remove(&r->link);
		c->n_reqs--;
		r->cb(r->data, OPD_ECANCELED, NULL, NULL, NULL, 0);
		req_free(r);
	}
	if (c->close_cb != NULL)
		c->close_cb(c->close_data);
	free(c->ca_file);
	free(c);
}

static void handle_closed(struct opd_httpc *c)
{
	if (--c->handles == 0)
		finish_close(c); /* only reachable once the timer is closed, i.e. closing */
}

static void sock_closed(uv_handle_t *h)
{
	struct sock *s = h->data;
	struct opd_httpc *c = s->c;

	free(s);
	handle_closed(c);
}

static void timer_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void sock_close(struct sock *s)
{
	/* Stop before close: libcurl closes the fd right after telling us, and may reuse the
	 * number. */
	uv_poll_stop(&s->poll);
	opd_list_remove(&s->link);
	uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* The request left libcurl; tell the caller and forget it. */
static void complete(struct opd_httpc *c, struct req *r, int status)
{
	char *content_type = NULL;
	const uint8_t *body = opd_buf_avail(&r->resp) ? opd_buf_rptr(&r->resp) : NULL;

	opd_list_remove(&r->link);
	c->n_reqs--;
	curl_multi_remove_handle(c->multi, r->easy);
	if (status > 0 &&
	    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &content_type) != CURLE_OK)
		content_type = NULL;
	if (status > 0)
		r->cb(r->data, status, content_type, r->has_retry_after ? r->retry_after : NULL,
		      body, opd_buf_avail(&r->resp));
	else
		r->cb(r->data, status, NULL, NULL, NULL, 0);
	req_free(r);
}

static void check_completions(struct opd_httpc *c)
{
	CURLMsg *msg;
	int left;

	/* The callback may close the client, which ends the multi handle: stop reading then. */
	while (!c->closing && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		CURL *easy = msg->easy_handle;
		CURLcode res = msg->data.result;
		char *priv = NULL;
		struct req *r;
		long code = 0;
		int status;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		r = (struct req *)priv;
		if (res == CURLE_OK &&
		    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
		    code >= 100 && code <= 999) {
			status = (int)code;
		} else if (r->too_big || res == CURLE_FILESIZE_EXCEEDED) {
			status = OPD_ETOOBIG;
		} else {
			char *url = NULL;

			curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
			log_debug("request failed url=%s error=\"%s\"", url != NULL ? url : "?",
				  r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
			status = OPD_EIO;
		}
		complete(c, r, status);
	}
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct sock *s = h->data;
	struct opd_httpc *c = s->c;
	int flags = 0, running;

	if (c->closing)
		return;
	if (status < 0) {
		flags = CURL_CSELECT_ERR;
	} else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	check_completions(c);
}

static void timer_cb(uv_timer_t *t)
{
	struct opd_httpc *c = t->data;
	int running;

	if (c->closing)
		return;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_completions(c);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl says which events it wants on fd. */
static int sock_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct opd_httpc *c = userp;
	struct sock *s = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL)
			sock_close(s);
		return 0;
	}
	if (c->closing)
		return 0;
	if (s == NULL) {
		s = opd_xcalloc(1, sizeof *s);
		if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
			free(s);
			return -1; /* libcurl fails the transfer */
		}
		s->poll.data = s;
		s->c = c;
		s->fd = fd;
		c->handles++;
		opd_list_insert_tail(&c->socks, &s->link);
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, poll_cb);
	return 0;
}

/*
 * CURLMOPT_TIMERFUNCTION: libcurl wants to be called back after timeout_ms.
 * Never drive libcurl from in here (it forbids the recursion): a timeout of
 * 0 is simply the next loop iteration.
 */
static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct opd_httpc *c = userp;

	(void)multi;
	if (c->closing)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, timer_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

static size_t write_fn(char *p, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	size_t total = size * n;

	/* Checked before buffering: a peer must not make us allocate past the limit. */
	if (total > r->max - opd_buf_avail(&r->resp)) {
		r->too_big = true;
		return 0; /* CURLE_WRITE_ERROR ends the transfer */
	}
	opd_buf_append(&r->resp, p, total);
	return total;
}

static size_t header_fn(char *p, size_t size, size_t n, void *userp)
{
	static const char name[] = "retry-after:";
	struct req *r = userp;
	size_t total = size * n, len;
	const char *v, *end = p + total;

	/* A new status line (e.g. after 100 Continue) starts a new header set. */
	if (total >= 5 && memcmp(p, "HTTP/", 5) == 0)
		r->has_retry_after = false;
	if (total < sizeof name - 1 || strncasecmp(p, name, sizeof name - 1) != 0)
		return total;
	v = p + sizeof name - 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	len = (size_t)(end - v);
	if (len >= RETRY_AFTER_MAX)
		len = RETRY_AFTER_MAX - 1; /* a sane value is a few digits or an HTTP date */
	memcpy(r->retry_after, v, len);
	r->retry_after[len] = '\0';
	r->has_retry_after = true;
	return total;
}

static bool valid_method(const char *m)
{
	size_t n = strlen(m);

	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	return true;
}

static bool no_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static bool valid_url(const char *u)
{
	if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
		return false;
	return no_ctl(u) && strchr(u, ' ') == NULL;
}

int opd_httpc_init(struct opd_httpc **out, uv_loop_t *loop)
{
	struct opd_httpc *c = opd_xcalloc(1, sizeof *c);

	c->loop = loop;
	opd_list_init(&c->reqs);
	opd_list_init(&c->socks);
	c->multi = curl_multi_init();
	if (c->multi == NULL) {
		free(c);
		return OPD_ENOMEM;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_fn);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	*out = c;
	return 0;
}

void opd_httpc_close(struct opd_httpc *c, void (*cb)(void *data), void *data)
{
	struct opd_list *pos, *tmp;

	c->closing = true;
	c->close_cb = cb;
	c->close_data = data;
	/* Detach every transfer now; their callbacks run from finish_close, before cb. */
	opd_list_foreach(pos, &c->reqs) curl_multi_remove_handle(c->multi, req_of(pos)->easy);
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	/* Sockets libcurl closed without a CURL_POLL_REMOVE are still ours to close. */
	opd_list_foreach_safe(pos, tmp, &c->socks)
	    sock_close(opd_container_of(pos, struct sock, link));
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, timer_closed);
}

void opd_httpc_set_ca_file(struct opd_httpc *c, const char *path)
{
	free(c->ca_file);
	c->ca_file = path != NULL ? opd_xstrdup(path) : NULL;
}

size_t opd_httpc_pending(const struct opd_httpc *c)
{
	return c->n_reqs;
}

static bool is_method(const char *m, const char *want)
{
	return strcmp(m, want) == 0;
}

int opd_httpc_request(struct opd_httpc *c, const char *method, const char *url,
		      const char *const *headers, const void *body, size_t len, unsigned timeout_ms,
		      size_t max_response, opd_httpc_cb cb, void *data)
{
	struct req *r;
	int e = CURLE_OK;
	bool send_body;

	if (c == NULL || method == NULL || url == NULL || cb == NULL || timeout_ms == 0 ||
	    (body == NULL && len > 0) || !valid_method(method) || !valid_url(url))
		return OPD_EINVAL;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		if (!no_ctl(headers[i]) || strchr(headers[i], ':') == NULL)
			return OPD_EINVAL;
	if (c->closing)
		return OPD_ECANCELED;

	r = opd_xcalloc(1, sizeof *r);
	r->c = c;
	r->cb = cb;
	r->data = data;
	r->max = max_response;
	opd_buf_init(&r->resp);
	opd_list_init(&r->link);
	r->easy = curl_easy_init();
	if (r->easy == NULL)
		goto nomem;
	/* An empty Expect: stops libcurl waiting for a 100 Continue our peers never send. */
	r->hdrs = curl_slist_append(NULL, "Expect:");
	if (r->hdrs == NULL)
		goto nomem;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		struct curl_slist *l = curl_slist_append(r->hdrs, headers[i]);

		if (l == NULL)
			goto nomem;
		r->hdrs = l;
	}

	/* Any failing setopt leaves a non-zero code here; they only fail on OOM. */
	e |= curl_easy_setopt(r->easy, CURLOPT_URL, url);
	e |= curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	e |= curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (void *)r);
	e |= curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	e |= curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	e |= curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	/* Peers are addressed directly: an http_proxy in the daemon's environment must not apply.
	 */
	e |= curl_easy_setopt(r->easy, CURLOPT_NOPROXY, "*");
	e |= curl_easy_setopt(r->easy, CURLOPT_PROXY, "");
	e |= curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	e |= curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	e |= curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	e |= curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_fn);
	e |= curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	e |= curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, header_fn);
	e |= curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	/* https peers are verified (libcurl's default); a private CA replaces the system bundle. */
	if (c->ca_file != NULL)
		e |= curl_easy_setopt(r->easy, CURLOPT_CAINFO, c->ca_file);
	/* Refuse early when Content-Length already announces too much. */
	if (max_response < (size_t)INT64_MAX)
		e |= curl_easy_setopt(r->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_response);

	send_body = len > 0 || !(is_method(method, "GET") || is_method(method, "HEAD") ||
				 is_method(method, "DELETE"));
	if (send_body) {
		/* The size first: COPYPOSTFIELDS copies exactly that many bytes. */
		e |= curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		e |= curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, len ? body : "");
		if (!is_method(method, "POST"))
			e |= curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
	} else if (is_method(method, "HEAD")) {
		e |= curl_easy_setopt(r->easy, CURLOPT_NOBODY, 1L);
	} else {
		e |= curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
		if (!is_method(method, "GET"))
			e |= curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
	}
	if (e != CURLE_OK)
		goto nomem;
	/* Adding only arms our timer (timeout 0): no callback of ours can run before we return. */
	if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
		goto nomem;
	opd_list_insert_tail(&c->reqs, &r->link);
	c->n_reqs++;
	return 0;
nomem:
	req_free(r);
	return OPD_ENOMEM;
}
