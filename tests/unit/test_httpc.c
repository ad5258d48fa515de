/*
 * httpc: the peer HTTP client against a real in-process server (the
 * project's own listener) on the same libuv loop, over 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "err.h"
#include "httpc.h"
#include "list.h"
#include "listener.h"

#define BIG_LEN 4096
#define RAW_LEN 5000

struct fixture {
	uv_loop_t loop;
	uv_timer_t deadline;
	bool expired;
	struct opd_listener l;
	bool listener_closed;
	struct opd_httpc *c;
	bool client_closed;
	int close_seq; /* seq value when the close callback ran */
	int seq;       /* increments at every callback, to check ordering */
	int hits;      /* requests the server saw */
	int hanging;   /* of which left unanswered */
	char base[64]; /* "http://127.0.0.1:port" */
	/* A bare TCP server answering without Content-Length (read-until-close bodies). */
	uv_tcp_t raw;
	bool raw_open;
	int raw_port;
};

struct result {
	struct fixture *fx;
	int done;
	int seq;
	int status;
	char ctype[64];
	char retry[64];
	bool has_ctype, has_retry;
	struct opd_buf body;
	uint64_t at_ns;
	int req_from_cb; /* opd_httpc_request's return when called from the callback */
	bool call_back_in;
};

/* ---- the server side ---------------------------------------------------- */

static void on_request(void *data, struct opd_conn *conn, const struct opd_http_request *req)
{
	struct fixture *fx = data;
	struct opd_buf b;
	const char *h;

	fx->hits++;
	opd_buf_init(&b);
	if (strcmp(req->path, "/echo") == 0) {
		h = opd_http_header(req, "X-Test");
		opd_buf_appendf(&b, "%s %s x-test=%s body=", req->method, req->query,
				h != NULL ? h : "-");
		opd_buf_append(&b, req->body, req->body_len);
		opd_conn_respond(conn, strcmp(req->method, "POST") == 0 ? 201 : 200,
				 "text/plain; charset=utf-8", NULL, opd_buf_rptr(&b),
				 opd_buf_avail(&b));
	} else if (strcmp(req->path, "/busy") == 0) {
		opd_buf_appendf(&b, "{\"error\":\"read-only\"}");
		opd_conn_respond(conn, 503, "application/json", "Retry-After: 7\r\n",
				 opd_buf_rptr(&b), opd_buf_avail(&b));
	} else if (strcmp(req->path, "/big") == 0) {
		memset(opd_buf_reserve(&b, BIG_LEN), 'x', BIG_LEN);
		opd_buf_commit(&b, BIG_LEN);
		opd_conn_respond(conn, 200, "application/octet-stream", NULL, opd_buf_rptr(&b),
				 opd_buf_avail(&b));
	} else if (strcmp(req->path, "/hang") == 0) {
		fx->hanging++; /* never answered: the listener closes it at teardown */
	} else {
		opd_conn_respond(conn, 404, "text/plain", NULL, "no", 2);
	}
	opd_buf_fini(&b);
}

static void raw_closed(uv_handle_t *h)
{
	free(h);
}

static void raw_written(uv_write_t *w, int status)
{
	(void)status;
	uv_close((uv_handle_t *)w->handle, raw_closed);
	free(w->data);
	free(w);
}

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char scratch[4096];

	(void)h;
	(void)hint;
	*buf = uv_buf_init(scratch, sizeof scratch);
}

/* Answer the first read with a body delimited by the connection close. */
static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				   "Connection: close\r\n\r\n";
	uv_write_t *w;
	char *out;
	uv_buf_t b;

	(void)buf;
	if (n == 0)
		return;
	uv_read_stop(s);
	if (n < 0) {
		uv_close((uv_handle_t *)s, raw_closed);
		return;
	}
	out = malloc(sizeof head - 1 + RAW_LEN);
	memcpy(out, head, sizeof head - 1);
	memset(out + sizeof head - 1, 'r', RAW_LEN);
	b = uv_buf_init(out, (unsigned)(sizeof head - 1 + RAW_LEN));
	w = malloc(sizeof *w);
	w->data = out;
	assert_int_equal(uv_write(w, s, &b, 1, raw_written), 0);
}

static void raw_connection(uv_stream_t *server, int status)
{
	uv_tcp_t *t;

	assert_int_equal(status, 0);
	t = malloc(sizeof *t);
	uv_tcp_init(server->loop, t);
	assert_int_equal(uv_accept(server, (uv_stream_t *)t), 0);
	uv_read_start((uv_stream_t *)t, raw_alloc, raw_read);
}

static void raw_start(struct fixture *fx)
{
	struct sockaddr_in a;
	struct sockaddr_storage bound;
	int len = sizeof bound;

	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_tcp_init(&fx->loop, &fx->raw), 0);
	fx->raw_open = true;
	assert_int_equal(uv_tcp_bind(&fx->raw, (const struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&fx->raw, 8, raw_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&fx->raw, (struct sockaddr *)&bound, &len), 0);
	fx->raw_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* ---- loop helpers ------------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
	struct fixture *fx = t->data;

	fx->expired = true;
}

/* Run the loop until *counter >= want or ms pass. Returns 1 when reached. */
static int run_until(struct fixture *fx, const int *counter, int want, uint64_t ms)
{
	fx->expired = false;
	uv_timer_start(&fx->deadline, on_deadline, ms, 0);
	while (*counter < want && !fx->expired)
		uv_run(&fx->loop, UV_RUN_ONCE);
	uv_timer_stop(&fx->deadline);
	return *counter >= want;
}

static void on_listener_closed(struct opd_listener *l)
{
	opd_container_of(l, struct fixture, l)->listener_closed = true;
}

static void on_client_closed(void *data)
{
	struct fixture *fx = data;

	fx->client_closed = true;
	fx->close_seq = ++fx->seq;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	struct opd_listener_limits lim;
	struct opd_listener_handler h = {.on_request = on_request, .data = fx};

	if (fx == NULL || uv_loop_init(&fx->loop) != 0)
		return -1;
	uv_timer_init(&fx->loop, &fx->deadline);
	fx->deadline.data = fx;
	opd_listener_limits_default(&lim);
	if (opd_listener_start(&fx->l, &fx->loop, "test", "127.0.0.1", 0, &lim, &h) != 0)
		return -1;
	snprintf(fx->base, sizeof fx->base, "http://127.0.0.1:%d", opd_listener_port(&fx->l));
	if (opd_httpc_init(&fx->c, &fx->loop) != 0)
		return -1;
	*state = fx;
	return 0;
}

static void deadline_closed(uv_handle_t *h)
{
	(void)h;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int rc;

	if (fx->c != NULL) {
		opd_httpc_close(fx->c, on_client_closed, fx);
		fx->c = NULL;
	}
	opd_listener_close(&fx->l, on_listener_closed);
	if (fx->raw_open)
		uv_close((uv_handle_t *)&fx->raw, NULL);
	uv_close((uv_handle_t *)&fx->deadline, deadline_closed);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_true(fx->listener_closed);
	/* Every handle the client opened is closed: nothing keeps the loop busy. */
	rc = uv_loop_close(&fx->loop);
	free(fx);
	assert_int_equal(rc, 0);
	return 0;
}

/* ---- client callbacks --------------------------------------------------- */

static void result_init(struct result *r, struct fixture *fx)
{
	*r = (struct result){.fx = fx, .req_from_cb = 1};
	opd_buf_init(&r->body);
}

static void on_done(void *data, int status, const char *content_type, const char *retry_after,
		    const uint8_t *body, size_t len)
{
	struct result *r = data;

	r->done++;
	r->seq = ++r->fx->seq;
	r->status = status;
	r->at_ns = uv_hrtime();
	if (content_type != NULL) {
		r->has_ctype = true;
		snprintf(r->ctype, sizeof r->ctype, "%s", content_type);
	}
	if (retry_after != NULL) {
		r->has_retry = true;
		snprintf(r->retry, sizeof r->retry, "%s", retry_after);
	}
	if (len > 0)
		opd_buf_append(&r->body, body, len);
	if (r->call_back_in)
		r->req_from_cb = opd_httpc_request(r->fx->c, "GET", r->fx->base, NULL, NULL, 0,
						   1000, 100, on_done, r);
}

static bool body_is(const struct result *r, const char *s)
{
	return opd_buf_avail(&r->body) == strlen(s) &&
	       memcmp(opd_buf_rptr(&r->body), s, strlen(s)) == 0;
}

static void url(const struct fixture *fx, const char *path, char *out, size_t n)
{
	snprintf(out, n, "%s%s", fx->base, path);
}

/* ---- tests -------------------------------------------------------------- */

static void test_get(void **state)
{
	struct fixture *fx = *state;
	const char *const hdrs[] = {"X-Test: hello", NULL};
	struct result r;
	char u[128];

	result_init(&r, fx);
	url(fx, "/echo?a=1", u, sizeof u);
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, hdrs, NULL, 0, 2000, 1024, on_done, &r),
			 0);
	assert_int_equal(r.done, 0); /* never called back from inside the call */
	assert_int_equal(opd_httpc_pending(fx->c), 1);
	assert_true(run_until(fx, &r.done, 1, 5000));
	assert_int_equal(r.status, 200);
	assert_true(r.has_ctype);
	assert_string_equal(r.ctype, "text/plain; charset=utf-8");
	assert_false(r.has_retry);
	assert_true(body_is(&r, "GET a=1 x-test=hello body="));
	assert_int_equal(opd_httpc_pending(fx->c), 0);
	opd_buf_fini(&r.body);
}

static void test_post(void **state)
{
	struct fixture *fx = *state;
	const char *const hdrs[] = {"Content-Type: application/json", NULL};
	static const char json[] = "{\"name\":\"cfg\"}";
	struct result r, empty;
	char u[128];

	result_init(&r, fx);
	result_init(&empty, fx);
	url(fx, "/echo", u, sizeof u);
	assert_int_equal(
	    opd_httpc_request(fx->c, "POST", u, hdrs, json, strlen(json), 2000, 1024, on_done, &r),
	    0);
	assert_int_equal(
	    opd_httpc_request(fx->c, "PUT", u, NULL, NULL, 0, 2000, 1024, on_done, &empty), 0);
	assert_true(run_until(fx, &fx->seq, 2, 5000));
	assert_int_equal(r.status, 201);
	assert_true(body_is(&r, "POST  x-test=- body={\"name\":\"cfg\"}"));
	assert_int_equal(empty.status, 200);
	assert_true(body_is(&empty, "PUT  x-test=- body="));
	opd_buf_fini(&r.body);
	opd_buf_fini(&empty.body);
}

static void test_503_retry_after(void **state)
{
	struct fixture *fx = *state;
	struct result r;
	char u[128];

	result_init(&r, fx);
	url(fx, "/busy", u, sizeof u);
	assert_int_equal(opd_httpc_request(fx->c, "POST", u, NULL, "x", 1, 2000, 1024, on_done, &r),
			 0);
	assert_true(run_until(fx, &r.done, 1, 5000));
	assert_int_equal(r.status, 503);
	assert_true(r.has_retry);
	assert_string_equal(r.retry, "7");
	assert_string_equal(r.ctype, "application/json");
	assert_true(body_is(&r, "{\"error\":\"read-only\"}"));
	opd_buf_fini(&r.body);
}

static void test_refused(void **state)
{
	struct fixture *fx = *state;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	struct result r;
	char u[128];
	int fd;

	/* A port that was just free: bound, read back, closed, so nothing listens there. */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	snprintf(u, sizeof u, "http://127.0.0.1:%d/x", ntohs(a.sin_port));

	result_init(&r, fx);
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 3000, 1024, on_done, &r),
			 0);
	assert_true(run_until(fx, &r.done, 1, 5000));
	assert_int_equal(r.status, OPD_EIO);
	assert_false(r.has_ctype);
	opd_buf_fini(&r.body);
}

static void test_timeout(void **state)
{
	struct fixture *fx = *state;
	struct result r;
	uint64_t start, ms;
	char u[128];

	result_init(&r, fx);
	url(fx, "/hang", u, sizeof u);
	start = uv_hrtime();
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 300, 1024, on_done, &r),
			 0);
	assert_true(run_until(fx, &r.done, 1, 5000));
	ms = (r.at_ns - start) / 1000000;
	assert_int_equal(r.status, OPD_EIO);
	assert_int_equal(fx->hanging, 1); /* it did reach the server */
	assert_true(ms >= 280);
	assert_true(ms < 2000);
	opd_buf_fini(&r.body);
}

static void test_too_big(void **state)
{
	struct fixture *fx = *state;
	struct result over, exact;
	char u[128];

	result_init(&over, fx);
	result_init(&exact, fx);
	url(fx, "/big", u, sizeof u);
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 2000, BIG_LEN - 1, on_done, &over),
	    0);
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 2000, BIG_LEN, on_done, &exact), 0);
	assert_true(run_until(fx, &fx->seq, 2, 5000));
	assert_int_equal(over.status, OPD_ETOOBIG);
	assert_int_equal(opd_buf_avail(&over.body), 0);
	assert_int_equal(exact.status, 200);
	assert_int_equal(opd_buf_avail(&exact.body), BIG_LEN);
	opd_buf_fini(&over.body);
	opd_buf_fini(&exact.body);
}

/* No Content-Length: the bound is enforced while the body streams in. */
static void test_too_big_streamed(void **state)
{
	struct fixture *fx = *state;
	struct result over, fits;
	char u[128];

	raw_start(fx);
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", fx->raw_port);
	result_init(&over, fx);
	result_init(&fits, fx);
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 2000, 1000, on_done, &over), 0);
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 2000, RAW_LEN, on_done, &fits), 0);
	assert_true(run_until(fx, &fx->seq, 2, 5000));
	assert_int_equal(over.status, OPD_ETOOBIG);
	assert_int_equal(fits.status, 200);
	assert_int_equal(opd_buf_avail(&fits.body), RAW_LEN);
	assert_true(opd_buf_avail(&over.body) <= 1000);
	opd_buf_fini(&over.body);
	opd_buf_fini(&fits.body);
}

static void test_concurrent(void **state)
{
	struct fixture *fx = *state;
	struct result r[20];
	char u[128], want[64];

	for (int i = 0; i < 20; i++) {
		result_init(&r[i], fx);
		snprintf(u, sizeof u, "%s/echo?i=%d", fx->base, i);
		assert_int_equal(
		    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 5000, 1024, on_done, &r[i]),
		    0);
	}
	assert_int_equal(opd_httpc_pending(fx->c), 20);
	assert_true(run_until(fx, &fx->seq, 20, 10000));
	for (int i = 0; i < 20; i++) {
		snprintf(want, sizeof want, "GET i=%d x-test=- body=", i);
		assert_int_equal(r[i].done, 1);
		assert_int_equal(r[i].status, 200);
		assert_true(body_is(&r[i], want));
		opd_buf_fini(&r[i].body);
	}
	assert_int_equal(fx->hits, 20);
	assert_int_equal(opd_httpc_pending(fx->c), 0);
}

static void test_close_cancels_pending(void **state)
{
	struct fixture *fx = *state;
	struct result r[3];
	char u[128];

	url(fx, "/hang", u, sizeof u);
	for (int i = 0; i < 3; i++) {
		result_init(&r[i], fx);
		r[i].call_back_in = true;
		assert_int_equal(
		    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 10000, 1024, on_done, &r[i]),
		    0);
	}
	assert_true(run_until(fx, &fx->hanging, 3, 5000));
	opd_httpc_close(fx->c, on_client_closed, fx);
	/* Callbacks come from the loop, never from inside the close call. */
	assert_int_equal(fx->seq, 0);
	assert_true(run_until(fx, &fx->seq, 4, 5000));
	assert_true(fx->client_closed);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].done, 1);
		assert_int_equal(r[i].status, OPD_ECANCELED);
		assert_true(r[i].seq < fx->close_seq);
		/* A request made from a cancellation callback is refused, not queued. */
		assert_int_equal(r[i].req_from_cb, OPD_ECANCELED);
		opd_buf_fini(&r[i].body);
	}
	fx->c = NULL;
}

/* A completion callback that closes the client: the rest are cancelled cleanly. */
static void close_from_cb(void *data, int status, const char *content_type, const char *retry_after,
			  const uint8_t *body, size_t len)
{
	struct result *r = data;

	on_done(data, status, content_type, retry_after, body, len);
	opd_httpc_close(r->fx->c, on_client_closed, r->fx);
	r->fx->c = NULL;
}

static void test_close_from_callback(void **state)
{
	struct fixture *fx = *state;
	struct result first, hung;
	char u[128], h[128];

	result_init(&first, fx);
	result_init(&hung, fx);
	url(fx, "/echo", u, sizeof u);
	url(fx, "/hang", h, sizeof h);
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", h, NULL, NULL, 0, 10000, 1024, on_done, &hung), 0);
	assert_true(run_until(fx, &fx->hanging, 1, 5000));
	assert_int_equal(
	    opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 10000, 1024, close_from_cb, &first),
	    0);
	assert_true(run_until(fx, &fx->seq, 3, 5000));
	assert_int_equal(first.status, 200);
	assert_int_equal(hung.status, OPD_ECANCELED);
	assert_true(first.seq < hung.seq && hung.seq < fx->close_seq);
	opd_buf_fini(&first.body);
	opd_buf_fini(&hung.body);
}

static void test_bad_arguments(void **state)
{
	struct fixture *fx = *state;
	const char *const crlf[] = {"X-A: b\r\nX-Injected: 1", NULL};
	const char *const nocolon[] = {"X-A", NULL};
	struct result r;
	char u[128];

	result_init(&r, fx);
	url(fx, "/echo", u, sizeof u);
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, NULL, NULL, 0, 0, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, crlf, NULL, 0, 100, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "GET", u, nocolon, NULL, 0, 100, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "G ET", u, NULL, NULL, 0, 100, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "GET", "file:///etc/passwd", NULL, NULL, 0, 100,
					   10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "GET", "http://127.0.0.1/a\r\nb", NULL, NULL, 0,
					   100, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_request(fx->c, "POST", u, NULL, NULL, 5, 100, 10, on_done, &r),
			 OPD_EINVAL);
	assert_int_equal(opd_httpc_pending(fx->c), 0);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.done, 0); /* a refused request never calls back */
	opd_buf_fini(&r.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_post, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_503_retry_after, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_big_streamed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_cancels_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
	};
	int rc;

	/* Once per process, before any thread, as the daemon does in main. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
