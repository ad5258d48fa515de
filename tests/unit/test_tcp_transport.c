/*
 * raft's TCP transport as tcp_transport.c hands it to raft: a connection it
 * dials has Nagle's algorithm off, and a dial that fails still reaches raft's
 * callback exactly once (the wrapper's request is freed: ASan would say).
 * Real sockets on 127.0.0.1, one loop, every wait bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "tcp_transport.h"

#define DEADLINE_MS 5000

struct fx {
	uv_loop_t loop;
	struct opd_tcp_transport t;
	char address[32];
	int dialled, accepted, closed, closing;
	int status;
	int nodelay; /* TCP_NODELAY on the dialled socket, -1 unknown */
	uv_stream_t *streams[2];
};

static struct fx *fx_of(struct raft_uv_transport *t)
{
	return (struct fx *)((char *)t - offsetof(struct fx, t.raft));
}

/* A port nothing listens on: bind one, note it, close it. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/*
 * A loopback listener that never accepts, its queue filled: a SYN to it is
 * dropped, so a connection to it stays in progress. Returns the port.
 */
static int full_listener(int fds[3])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;

	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fds[0] >= 0);
	assert_int_equal(bind(fds[0], (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fds[0], 0), 0);
	assert_int_equal(getsockname(fds[0], (struct sockaddr *)&a, &n), 0);
	for (int i = 1; i < 3; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		assert_true(fds[i] >= 0);
		connect(fds[i], (struct sockaddr *)&a, sizeof a); /* in progress or done */
	}
	usleep(50 * 1000); /* let the handshakes that fit complete */
	return ntohs(a.sin_port);
}

static void close_handle(uv_stream_t *s)
{
	if (s != NULL)
		uv_close((uv_handle_t *)s, (uv_close_cb)free);
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
		      struct uv_stream_s *stream)
{
	struct fx *f = fx_of(t);

	(void)id;
	(void)address;
	f->accepted++;
	f->streams[1] = stream;
}

static void on_dialled(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
	struct fx *f = req->data;

	f->dialled++;
	f->status = status;
	if (status == 0) {
		uv_os_fd_t fd;
		int on = -1;
		socklen_t n = sizeof on;

		assert_int_equal(uv_fileno((uv_handle_t *)stream, &fd), 0);
		assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &n), 0);
		f->nodelay = on;
		f->streams[0] = stream;
	}
}

static void on_closed(struct raft_uv_transport *t)
{
	fx_of(t)->closed++;
}

static void run_until(struct fx *f, const int *counter, int want)
{
	uint64_t end = uv_now(&f->loop) + DEADLINE_MS;

	while (*counter < want && uv_now(&f->loop) < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
		uv_update_time(&f->loop);
	}
}

static struct fx *start(void)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	f->nodelay = -1;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	snprintf(f->address, sizeof f->address, "127.0.0.1:%d", free_port());
	assert_int_equal(opd_tcp_transport_init(&f->t, &f->loop), 0);
	assert_int_equal(f->t.raft.init(&f->t.raft, 1, f->address), 0);
	return f;
}

static void begin_close(struct fx *f)
{
	f->t.raft.close(&f->t.raft, on_closed);
	f->closing = 1;
}

static void stop(struct fx *f)
{
	close_handle(f->streams[0]);
	close_handle(f->streams[1]);
	if (!f->closing)
		begin_close(f);
	run_until(f, &f->closed, 1);
	assert_int_equal(f->closed, 1);
	raft_uv_tcp_close(&f->t.raft);
	uv_run(&f->loop, UV_RUN_DEFAULT); /* the handles' close callbacks */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_true(f->dialled <= 1); /* each test dials once: a second callback shows here */
	free(f);
}

static void test_dialled_connection_has_nodelay(void **state)
{
	struct fx *f = start();
	struct raft_uv_connect req = {.data = f};

	(void)state;
	assert_int_equal(f->t.raft.listen(&f->t.raft, on_accept), 0);
	assert_int_equal(f->t.raft.connect(&f->t.raft, &req, 1, f->address, on_dialled), 0);
	run_until(f, &f->accepted, 1);
	run_until(f, &f->dialled, 1);
	assert_int_equal(f->dialled, 1);
	assert_int_equal(f->status, 0);
	assert_int_equal(f->accepted, 1);
	assert_int_equal(f->nodelay, 1);
	stop(f);
}

static void test_failed_dial_calls_back_once(void **state)
{
	struct fx *f = start();
	struct raft_uv_connect req = {.data = f};
	char nobody[32];

	(void)state;
	snprintf(nobody, sizeof nobody, "127.0.0.1:%d", free_port());
	assert_int_equal(f->t.raft.connect(&f->t.raft, &req, 2, nobody, on_dialled), 0);
	run_until(f, &f->dialled, 1);
	assert_int_equal(f->dialled, 1);
	assert_int_not_equal(f->status, 0);
	stop(f);
}

static void test_dial_cancelled_by_close_calls_back_once(void **state)
{
	struct fx *f = start();
	struct raft_uv_connect req = {.data = f};
	char stuck[32];
	int fds[3];

	(void)state;
	snprintf(stuck, sizeof stuck, "127.0.0.1:%d", full_listener(fds));
	assert_int_equal(f->t.raft.connect(&f->t.raft, &req, 2, stuck, on_dialled), 0);
	for (int i = 0; i < 20; i++) { /* 20 ms of the loop: the dial stays in progress */
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_int_equal(f->dialled, 0);
	begin_close(f);
	run_until(f, &f->dialled, 1);
	assert_int_equal(f->dialled, 1);
	assert_int_equal(f->status, RAFT_CANCELED);
	stop(f);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dialled_connection_has_nodelay),
	    cmocka_unit_test(test_failed_dial_calls_back_once),
	    cmocka_unit_test(test_dial_cancelled_by_close_calls_back_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
