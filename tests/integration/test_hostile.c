/*
 * End-to-end: hostile agents against the real opampd binary (issue 5, "Hostile agents").
 *
 * Each case runs one hostile behaviour while a monitor thread measures what it does to
 * everyone else: a well-behaved WebSocket agent (the bystander) heartbeats every few tens of
 * milliseconds and must get every answer, and an admin API call (GET /api/v1/agents/{uid}) is
 * timed. Per case the test prints the bystander's round trip and the admin latency (p50, p99,
 * max) and, where memory is what the hostile client goes after, the daemon's resident memory.
 * The bounded answer each hostile client gets is asserted here and documented in README.md,
 * section "Hostile clients".
 *
 * Runtime: about 60 s, under ASan too; the descriptor-limit and storm cases scale down under
 * ASan (OPD_HOSTILE_FD_LIMIT and OPD_HOSTILE_STORM override the sizes).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_client.h"
#include "agent_client.h"
#include "buf.h"
#include "daemon.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)
#define REPLY_MS 5000
#define MAX_MSG (4u << 20)      /* OPD_WIRE_MAX_MSG */
#define MAX_HEADER (16u * 1024) /* opd_http_limits_default */
#define HEADER_TIMEOUT_MS 10000 /* opd_listener_limits_default */
#define MAX_OUT (16u << 20)     /* opd_listener_limits_default: queued output per connection */
#define ADMIN_P99_MAX_MS 2000   /* generous: the machine is shared and this may run under ASan */
/*
 * What rd_close_code returns for a Close frame without a status code: wslay's frame parser
 * answers the violations it finds itself (a length with its top bit set, a control frame
 * that is fragmented or over 125 bytes) that way; the message layer answers 1002.
 */
#define NO_CODE 1005
#define CAP_NO_REMOTE_CONFIG (OPD_TA_CAPS & ~0x2u)

/* ------------------------------------------------------------------ small helpers */

static uint64_t now_ms(void)
{
	return opd_test_now_ms();
}

static int remaining(uint64_t deadline)
{
	uint64_t t = now_ms();

	return t >= deadline ? 0 : (int)(deadline - t);
}

/* A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:"), or 0. */
static long proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, field, strlen(field)) == 0) {
			kb = strtol(line + strlen(field), NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

/* Reset the peak resident size (VmHWM) to the current one (Linux >= 4.0). */
static void reset_peak(pid_t pid)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
	f = fopen(path, "w");
	if (f != NULL) {
		fputs("5", f);
		fclose(f);
	}
}

/* CPU time (user + system) the process has used, in milliseconds. */
static uint64_t proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (ut + st) * 1000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
}

static int set_nonblock(int fd)
{
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A masked client frame with any FIN, RSV bits, opcode and payload, appended to out. */
static void put_frame(struct opd_buf *out, int fin, int rsv, int op, const void *p, size_t n)
{
	static const uint8_t mask[4] = {0x3a, 0x5c, 0x91, 0x07};
	uint8_t h[14];
	size_t hl = 2;
	uint8_t *dst;

	h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (op & 0x0f));
	if (n < 126) {
		h[1] = (uint8_t)(0x80 | n);
	} else if (n <= 0xffff) {
		h[1] = 0x80 | 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(h + hl, mask, 4);
	hl += 4;
	opd_buf_append(out, h, hl);
	dst = opd_buf_reserve(out, n + 1);
	for (size_t i = 0; i < n; i++)
		dst[i] = ((const uint8_t *)p)[i] ^ mask[i & 3];
	opd_buf_commit(out, n);
}

/*
 * Send n bytes before the deadline, stopping early (successfully) as soon as the server sends
 * something or closes: a hostile stream is refused long before it ends. 0, or -1 on timeout.
 */
static int send_hostile(int fd, const void *p, size_t n, uint64_t deadline)
{
	const uint8_t *q = p;

	while (n > 0) {
		struct pollfd pf = {.fd = fd, .events = POLLOUT | POLLIN};
		ssize_t w;

		if (poll(&pf, 1, remaining(deadline)) <= 0)
			return -1;
		if (pf.revents & (POLLIN | POLLERR | POLLHUP))
			return 0;
		w = send(fd, q, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return 0; /* reset: the server is gone, which is its answer */
		if (w > 0) {
			q += w;
			n -= (size_t)w;
		}
	}
	return 0;
}

static int send_buf(int fd, const struct opd_buf *b, uint64_t deadline)
{
	return send_hostile(fd, opd_buf_rptr(b), opd_buf_avail(b), deadline);
}

/* Frames read from the server. */
struct rd {
	int fd;
	uint8_t *b;
	size_t len, cap, used; /* used: the previous frame, dropped at the next call */
};

/*
 * The next server frame: 1 with *op, *pl (valid until the next call) and *n, 0 on EOF or reset,
 * -1 on timeout.
 */
static int rd_frame(struct rd *r, uint64_t deadline, int *fin, int *op, const uint8_t **pl,
		    size_t *n)
{
	if (r->used > 0) {
		memmove(r->b, r->b + r->used, r->len - r->used);
		r->len -= r->used;
		r->used = 0;
	}
	for (;;) {
		size_t h = 2;
		uint64_t len;
		long got;

		if (r->len >= 2) {
			len = r->b[1] & 0x7f;
			if (len == 126 && r->len >= 4) {
				len = (uint64_t)r->b[2] << 8 | r->b[3];
				h = 4;
			} else if (len == 127 && r->len >= 10) {
				len = 0;
				for (int i = 0; i < 8; i++)
					len = len << 8 | r->b[2 + i];
				h = 10;
			} else if (len >= 126) {
				len = UINT64_MAX;
			}
			if (len != UINT64_MAX && r->len >= h + len) {
				*fin = r->b[0] >> 7;
				*op = r->b[0] & 0x0f;
				*pl = r->b + h;
				*n = (size_t)len;
				r->used = h + (size_t)len;
				return 1;
			}
		}
		if (r->cap - r->len < 65536) {
			r->cap = r->cap * 2 + 65536;
			r->b = realloc(r->b, r->cap);
			assert_non_null(r->b);
		}
		got = opd_client_recv(r->fd, r->b + r->len, r->cap - r->len, deadline);
		if (got == 0 || (got < 0 && errno == ECONNRESET))
			return 0;
		if (got < 0)
			return -1;
		r->len += (size_t)got;
	}
}

/* Read frames until a Close: its code (1005 without one), 0 on EOF without Close, -1 timeout. */
static int rd_close_code(struct rd *r, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	const uint8_t *pl;
	int fin, op, rc;
	size_t n;

	while ((rc = rd_frame(r, deadline, &fin, &op, &pl, &n)) == 1)
		if (op == 8)
			return n >= 2 ? pl[0] << 8 | pl[1] : 1005;
	return rc;
}

/* 1 when the peer closes fd (EOF or reset) within ms. */
static int closed_within(int fd, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	char buf[65536];

	for (;;) {
		long r = opd_client_recv(fd, buf, sizeof buf, deadline);

		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 1;
		if (r < 0)
			return 0;
	}
}

/* A packed full first report with the WebSocket header byte (0x00) and extra unknown bytes. */
static void a2s_ws_bytes(struct opd_ta *a, const char *name, size_t pad, struct opd_buf *out)
{
	struct opd_ta_msg b;
	size_t n;

	opd_ta_msg_full(&b, a, name);
	n = opamp__proto__v1__agent_to_server__get_packed_size(&b.msg);
	opd_buf_append_byte(out, 0);
	opamp__proto__v1__agent_to_server__pack(&b.msg, opd_buf_reserve(out, n));
	opd_buf_commit(out, n);
	if (pad > 0) {
		/* Field 1000, length-delimited: an unknown field protobuf-c skips. */
		uint8_t tag[2] = {0xc2, 0x3e}, len[10];
		size_t ln = 0, v = pad;

		do {
			len[ln++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			v >>= 7;
		} while (v > 0);
		opd_buf_append(out, tag, 2);
		opd_buf_append(out, len, ln);
		memset(opd_buf_reserve(out, pad), 'p', pad);
		opd_buf_commit(out, pad);
	}
}

/* ------------------------------------------------------------------ fixture and monitor */

#define MON_MAX 8192

struct stats {
	size_t n;
	unsigned fail;
	unsigned p50, p99, max;
};

struct fx {
	struct opd_daemon d;
	struct opd_ta by; /* the bystander */
	char by_path[96]; /* GET /api/v1/agents/{bystander} */
	/* monitor */
	pthread_t th;
	atomic_int stop;
	atomic_int rounds; /* completed heartbeat + admin rounds */
	unsigned hb[MON_MAX], adm[MON_MAX];
	size_t n_hb, n_adm;
	unsigned hb_fail, adm_fail;
	unsigned period_ms;
};

static void *mon_main(void *arg)
{
	struct fx *f = arg;

	while (!atomic_load(&f->stop)) {
		Opamp__Proto__V1__ServerToAgent *r;
		struct opd_client_resp resp;
		uint64_t t0 = now_ms();
		int st;

		r = opd_ta_heartbeat(&f->by, REPLY_MS);
		if (r != NULL && r->instance_uid.len == 16 &&
		    memcmp(r->instance_uid.data, f->by.uid, 16) == 0 && f->n_hb < MON_MAX)
			f->hb[f->n_hb++] = (unsigned)(now_ms() - t0);
		else
			f->hb_fail++;
		if (r != NULL)
			S2A_FREE(r);
		t0 = now_ms();
		st = opd_api_request(&f->d, "GET", f->by_path, NULL, f->d.token, &resp, NULL);
		if (st == 200 && f->n_adm < MON_MAX)
			f->adm[f->n_adm++] = (unsigned)(now_ms() - t0);
		else if (st != 200)
			f->adm_fail++;
		opd_client_resp_free(&resp);
		atomic_fetch_add(&f->rounds, 1);
		for (unsigned w = 0; w < f->period_ms && !atomic_load(&f->stop); w += 5)
			opd_test_pause_ms(5);
	}
	return NULL;
}

static void mon_start(struct fx *f, unsigned period_ms)
{
	f->n_hb = f->n_adm = 0;
	f->hb_fail = f->adm_fail = 0;
	f->period_ms = period_ms;
	atomic_store(&f->stop, 0);
	atomic_store(&f->rounds, 0);
	assert_int_equal(pthread_create(&f->th, NULL, mon_main, f), 0);
}

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

static struct stats summarize(unsigned *v, size_t n, unsigned fail)
{
	struct stats s = {.n = n, .fail = fail};

	if (n == 0)
		return s;
	qsort(v, n, sizeof *v, cmp_unsigned);
	s.p50 = v[n / 2];
	s.p99 = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	s.max = v[n - 1];
	return s;
}

/*
 * Stop the monitor, print its figures for the case and assert that the bystander got every
 * answer and the admin API stayed responsive.
 */
static void mon_stop(struct fx *f, const char *what)
{
	struct stats hb, adm;
	uint64_t deadline = now_ms() + 2 * REPLY_MS + 1000;

	/* A case quicker than one round still gets one measured during or right after it. */
	while (atomic_load(&f->rounds) < 1 && now_ms() < deadline)
		opd_test_pause_ms(1);
	atomic_store(&f->stop, 1);
	pthread_join(f->th, NULL);
	hb = summarize(f->hb, f->n_hb, f->hb_fail);
	adm = summarize(f->adm, f->n_adm, f->adm_fail);
	printf("hostile %-18s bystander heartbeat n=%zu failed=%u rtt_ms p50=%u p99=%u max=%u | "
	       "admin GET n=%zu failed=%u ms p50=%u p99=%u max=%u\n",
	       what, hb.n, hb.fail, hb.p50, hb.p99, hb.max, adm.n, adm.fail, adm.p50, adm.p99,
	       adm.max);
	fflush(stdout);
	if (hb.fail != 0 || adm.fail != 0)
		opd_daemon_dump_log(&f->d);
	assert_int_equal(hb.fail, 0);
	assert_int_equal(adm.fail, 0);
	assert_true(hb.n >= 1 && adm.n >= 1);
	assert_true(adm.p99 <= ADMIN_P99_MAX_MS);
	assert_true(opd_daemon_alive(&f->d));
}

static int connect_bystander(struct fx *f)
{
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg b;

	opd_ta_init(&f->by, f->d.opamp_port, CAP_NO_REMOTE_CONFIG);
	if (opd_ta_ws_connect(&f->by) != 0)
		return -1;
	opd_ta_msg_full(&b, &f->by, "bystander");
	r = opd_ta_exchange(&f->by, &b.msg, REPLY_MS);
	if (r == NULL)
		return -1;
	S2A_FREE(r);
	snprintf(f->by_path, sizeof f->by_path, "/api/v1/agents/%s", f->by.uid_hex);
	return 0;
}

static int fx_start(struct fx *f)
{
	/* OPD_HOSTILE_HANDSHAKE_RATE=0 turns the pacing off, to compare. */
	const char *rate = getenv("OPD_HOSTILE_HANDSHAKE_RATE");
	const char *const extra[] = {"--heartbeat-interval", "30",
				     rate != NULL ? "--max-handshake-rate" : NULL, rate, NULL};

	if (opd_daemon_start_single(&f->d, extra) != 0)
		return -1;
	if (connect_bystander(f) != 0) {
		opd_ta_fini(&f->by);
		opd_daemon_dump_log(&f->d);
		opd_daemon_stop(&f->d);
		return -1;
	}
	return 0;
}

static int fx_stop(struct fx *f)
{
	opd_ta_fini(&f->by);
	return opd_daemon_stop(&f->d) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (f == NULL || fx_start(f) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	struct fx *f = *state;
	int rc = fx_stop(f);

	free(f);
	return rc;
}

/* ------------------------------------------------------------------ slow headers and bodies */

#define N_SLOW 48

/*
 * Slowloris: N_SLOW connections trickle a WebSocket upgrade's headers one byte at a time, and
 * N_SLOW more send complete POST headers and then trickle the body. The clock of a request
 * starts at its first byte and is not extended by progress: every one of them gets 408 and
 * is closed HEADER_TIMEOUT_MS after it started, whatever it still sends.
 */
static void test_slow_headers_and_bodies(void **state)
{
	static const char upgrade[] = "GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				      "Sec-WebSocket-Version: 13\r\nUser-Agent: slowloris\r\n\r\n";
	static const char post[] =
	    "POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Content-Type: application/x-protobuf\r\nContent-Length: 4096\r\n\r\n";
	struct fx *f = *state;
	struct slow {
		int fd;
		size_t sent;
		int status;
		uint64_t closed_ms;
		char resp[64];
		size_t rlen;
	} c[2 * N_SLOW];
	uint64_t t0, deadline, min_ms = UINT64_MAX, max_ms = 0;
	int open = 2 * N_SLOW, n408 = 0;

	mon_start(f, 50);
	t0 = now_ms();
	for (int i = 0; i < 2 * N_SLOW; i++) {
		c[i] = (struct slow){.fd = opd_client_connect(f->d.opamp_port)};
		assert_true(c[i].fd >= 0);
		assert_int_equal(set_nonblock(c[i].fd), 0);
		if (i >= N_SLOW) { /* the headers at once, then the body byte by byte */
			assert_int_equal(send(c[i].fd, post, sizeof post - 1, MSG_NOSIGNAL),
					 (ssize_t)(sizeof post - 1));
		}
	}
	deadline = t0 + HEADER_TIMEOUT_MS + 5000;
	while (open > 0 && now_ms() < deadline) {
		for (int i = 0; i < 2 * N_SLOW; i++) {
			long r;

			if (c[i].closed_ms != 0)
				continue;
			r = recv(c[i].fd, c[i].resp + c[i].rlen, sizeof c[i].resp - 1 - c[i].rlen,
				 0);
			if (r < 0 && errno == EAGAIN) {
				/* One more byte, never the end of the headers or of the body. */
				char ch = i < N_SLOW ? upgrade[c[i].sent] : 'x';

				if ((i >= N_SLOW || c[i].sent < sizeof upgrade - 3) &&
				    send(c[i].fd, &ch, 1, MSG_NOSIGNAL) == 1)
					c[i].sent++;
				continue;
			}
			if (r > 0) {
				c[i].rlen += (size_t)r;
				c[i].resp[c[i].rlen] = '\0';
				if (c[i].rlen < sizeof c[i].resp - 1)
					continue;
			}
			{
				c[i].closed_ms = now_ms() - t0;
				sscanf(c[i].resp, "HTTP/1.1 %d", &c[i].status);
				open--;
			}
		}
		opd_test_pause_ms(250);
	}
	for (int i = 0; i < 2 * N_SLOW; i++) {
		if (c[i].closed_ms != 0) {
			min_ms = c[i].closed_ms < min_ms ? c[i].closed_ms : min_ms;
			max_ms = c[i].closed_ms > max_ms ? c[i].closed_ms : max_ms;
		}
		n408 += c[i].status == 408;
		close(c[i].fd);
	}
	printf("hostile slowloris: %d slow-header and %d slow-body connections: %d answered 408; "
	       "closed after %.1f-%.1f s (header timeout %d s)\n",
	       N_SLOW, N_SLOW, n408, (double)min_ms / 1000, (double)max_ms / 1000,
	       HEADER_TIMEOUT_MS / 1000);
	mon_stop(f, "slowloris");
	assert_int_equal(open, 0);
	assert_int_equal(n408, 2 * N_SLOW);
	assert_true(min_ms >= HEADER_TIMEOUT_MS - 1000);
	assert_true(max_ms <= HEADER_TIMEOUT_MS + 2500);
}

/* ------------------------------------------------------------------ fragments and control frames
 */

/*
 * A whole first report cut into 40 fragments with a Ping and an unsolicited Pong between every
 * two of them: each Ping is answered, in order, and the reassembled message gets its reply.
 * Then the framing violations around fragments each get a Close: 1002 for those the message
 * layer sees, a Close without a status code for those wslay's frame parser rejects.
 */
static void test_fragments_and_interleaved_control(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	struct opd_buf msg, out;
	struct rd r = {0};
	const uint8_t *pl;
	size_t n, pings = 0, pongs = 0, nfrag;
	int fin, op, rc, got_reply = 0;
	uint64_t deadline;

	mon_start(f, 2);
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	opd_buf_init(&msg);
	opd_buf_init(&out);
	a2s_ws_bytes(&a, "fragmented", 0, &msg);
	nfrag = 40;
	for (size_t i = 0, per = opd_buf_avail(&msg) / nfrag; i < nfrag; i++) {
		char ping[16];
		int len = snprintf(ping, sizeof ping, "p%zu", i);
		size_t take = i + 1 == nfrag ? opd_buf_avail(&msg) - i * per : per;

		put_frame(&out, i + 1 == nfrag, 0, i == 0 ? 2 : 0, opd_buf_rptr(&msg) + i * per,
			  take);
		if (i + 1 < nfrag) {
			put_frame(&out, 1, 0, 9, ping, (size_t)len);
			put_frame(&out, 1, 0, 10, "unsolicited", 11);
			pings++;
		}
	}
	assert_int_equal(send_buf(a.fd, &out, now_ms() + 5000), 0);
	r.fd = a.fd;
	deadline = now_ms() + REPLY_MS;
	while (!got_reply && (rc = rd_frame(&r, deadline, &fin, &op, &pl, &n)) == 1) {
		if (op == 8)
			fail_msg("closed with %d", n >= 2 ? pl[0] << 8 | pl[1] : 1005);
		if (op == 10) {
			char want[16];
			int len = snprintf(want, sizeof want, "p%zu", pongs);

			assert_int_equal(n, (size_t)len);
			assert_memory_equal(pl, want, n); /* in order */
			pongs++;
		} else if (op == 2) {
			Opamp__Proto__V1__ServerToAgent *s;

			assert_true(n >= 1 && pl[0] == 0);
			s = opamp__proto__v1__server_to_agent__unpack(NULL, n - 1, pl + 1);
			assert_non_null(s);
			assert_memory_equal(s->instance_uid.data, a.uid, 16);
			assert_null(s->error_response);
			S2A_FREE(s);
			got_reply = 1;
		}
	}
	free(r.b);
	r.b = NULL;
	printf("hostile fragments: a %zu-byte message in %zu fragments with %zu pings and %zu "
	       "pongs between them: %zu pongs back in order, reply %s\n",
	       opd_buf_avail(&msg), nfrag, pings, pings, pongs, got_reply ? "received" : "MISSING");
	assert_true(got_reply);
	assert_int_equal(pongs, pings);
	opd_ta_fini(&a);

	/* Violations: each gets Close 1002 on its own connection. */
	static const struct {
		const char *what;
		int fin1, op1, fin2, op2, want;
	} bad[] = {
	    {"a new message inside a fragmented one", 0, 2, 1, 2, 1002},
	    {"a continuation without a start", 1, 0, 1, 0, 1002},
	    {"a fragmented ping", 0, 9, 1, 0, NO_CODE},
	    {"a reserved opcode", 1, 3, 1, 3, 1002},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
		assert_int_equal(opd_ta_ws_connect(&a), 0);
		opd_buf_reset(&out);
		put_frame(&out, bad[i].fin1, 0, bad[i].op1, "\0ab", 3);
		put_frame(&out, bad[i].fin2, 0, bad[i].op2, "cd", 2);
		assert_int_equal(send_buf(a.fd, &out, now_ms() + 2000), 0);
		r = (struct rd){.fd = a.fd};
		rc = rd_close_code(&r, REPLY_MS);
		printf("hostile fragments: %s: close %d\n", bad[i].what, rc);
		assert_int_equal(rc, bad[i].want);
		assert_true(closed_within(a.fd, 3000));
		free(r.b);
		r.b = NULL;
		opd_ta_fini(&a);
	}
	free(r.b);
	opd_buf_fini(&msg);
	opd_buf_fini(&out);
	mon_stop(f, "fragments");
}

/* ------------------------------------------------------------------ ping floods */

/*
 * Ping floods, measured by the daemon's peak resident memory:
 * - a client that floods pings and reads the pongs: closed with 1008 (policy) once more
 *   than 64 pings arrive between two flushes, i.e. within one read;
 * - a client that floods pings and never reads: its pongs are bounded by the per-connection
 *   output limit (16 MiB queued), then it is disconnected.
 */
static void test_ping_flood(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	struct opd_buf out;
	struct rd r = {0};
	uint8_t payload[125];
	long rss0, peak;
	uint64_t t0, sent = 0;
	int rc, one = 1, small = 4096;

	memset(payload, 'P', sizeof payload);
	mon_start(f, 20);
	opd_buf_init(&out);
	for (int i = 0; i < 512; i++)
		put_frame(&out, 1, 0, 9, payload, sizeof payload);

	/* 1. A reader: 512 pings in one burst. */
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(send_buf(a.fd, &out, now_ms() + 5000), 0);
	r.fd = a.fd;
	rc = rd_close_code(&r, REPLY_MS);
	printf("hostile ping flood: 512 pings in one burst from a reader: close %d\n", rc);
	assert_int_equal(rc, 1008);
	assert_true(closed_within(a.fd, 3000));
	opd_ta_fini(&a);

	/*
	 * 2. A client that never reads and pings for up to 6 s, 16 pings a millisecond (so that
	 * the daemon usually reads fewer than 64 at a time and answers them all).
	 */
	rss0 = proc_kb(f->d.pid, "VmRSS:");
	reset_peak(f->d.pid);
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	setsockopt(a.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	setsockopt(a.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	opd_buf_reset(&out);
	for (int i = 0; i < 16; i++)
		put_frame(&out, 1, 0, 9, payload, sizeof payload);
	assert_int_equal(set_nonblock(a.fd), 0);
	t0 = now_ms();
	rc = -1;
	while (now_ms() - t0 < 6000) {
		ssize_t w = send(a.fd, opd_buf_rptr(&out), opd_buf_avail(&out), MSG_NOSIGNAL);
		struct pollfd p = {.fd = a.fd, .events = POLLOUT};

		if (w < 0 && errno != EAGAIN) {
			rc = errno; /* reset: the server cut us off */
			break;
		}
		if (w > 0)
			sent += (uint64_t)w;
		if (w > 0 && (size_t)w == opd_buf_avail(&out))
			opd_test_pause_ms(1);
		/* The flood stalls when the server stops reading us: 1 s of that is enough. */
		if (w < 0 && poll(&p, 1, 1000) == 0) {
			rc = 0;
			break;
		}
	}
	peak = proc_kb(f->d.pid, "VmHWM:");
	printf("hostile ping flood: a non-reader sent %.1f MiB of pings (%llu) in %.1f s: %s; "
	       "daemon RSS %ld KiB before, peak %+ld KiB\n",
	       (double)sent / (1 << 20), (unsigned long long)(sent / 131),
	       (double)(now_ms() - t0) / 1000,
	       rc > 0    ? "reset by the server"
	       : rc == 0 ? "server stopped reading"
			 : "still open, within the output limit",
	       rss0, peak - rss0);
	/* Whatever it sends, the daemon holds at most the output limit for it (plus slack). */
	if (!UNDER_ASAN)
		assert_true(peak - rss0 < (long)(MAX_OUT / 1024) + 16 * 1024);
	opd_ta_fini(&a);
	free(r.b);
	opd_buf_fini(&out);
	mon_stop(f, "ping flood");
}

/* ------------------------------------------------------------------ just over every limit */

/* Open a WebSocket, send raw bytes, return the close code the server answers (see rd_close_code).
 */
static int ws_raw_close(struct fx *f, const void *p, size_t n)
{
	struct opd_ta a;
	struct rd r = {0};
	int rc;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(send_hostile(a.fd, p, n, now_ms() + 10000), 0);
	r.fd = a.fd;
	rc = rd_close_code(&r, REPLY_MS);
	free(r.b);
	opd_ta_fini(&a);
	return rc;
}

/* POST /v1/opamp with n header bytes in total (one filler header) and a body; the status. */
static int post_sized_headers(struct fx *f, size_t header_total, int n_headers)
{
	struct opd_ta a;
	struct opd_buf req, pb;
	struct opd_client_resp r;
	char line[64];
	size_t fill;
	int fd, st;

	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	opd_buf_init(&req);
	opd_buf_init(&pb);
	a2s_ws_bytes(&a, "limits-http", 0, &pb);
	opd_buf_consume(&pb, 1); /* plain HTTP: no header byte */
	opd_buf_appendf(&req,
			"POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			"Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n",
			opd_buf_avail(&pb));
	for (int i = 0; i < n_headers - 4; i++) {
		int len = snprintf(line, sizeof line, "X-H%03d: v\r\n", i);
		opd_buf_append(&req, line, (size_t)len);
	}
	/* "X-Fill: " + value + "\r\n", then the final "\r\n". */
	fill = header_total - opd_buf_avail(&req) - 10 - 2;
	opd_buf_append(&req, "X-Fill: ", 8);
	memset(opd_buf_reserve(&req, fill), 'f', fill);
	opd_buf_commit(&req, fill);
	opd_buf_append(&req, "\r\n\r\n", 4);
	assert_int_equal(opd_buf_avail(&req), header_total);
	opd_buf_append(&req, opd_buf_rptr(&pb), opd_buf_avail(&pb));
	fd = opd_client_connect(f->d.opamp_port);
	assert_true(fd >= 0);
	assert_int_equal(
	    opd_client_exchange(fd, opd_buf_rptr(&req), opd_buf_avail(&req), 10000, &r), 0);
	st = r.status;
	opd_client_resp_free(&r);
	close(fd);
	opd_buf_fini(&req);
	opd_buf_fini(&pb);
	opd_ta_fini(&a);
	return st;
}

static void test_frames_just_over_limits(void **state)
{
	struct fx *f = *state;
	struct opd_buf out;
	struct opd_ta a;
	struct opd_client_resp resp;
	uint8_t *zeros = calloc(1, MAX_MSG + 1);
	uint8_t *p;
	size_t n;
	int rc, fd;

	assert_non_null(zeros);
	mon_start(f, 2);
	opd_buf_init(&out);

	/* A message of exactly the limit is read (and answered BadRequest: zeros do not decode). */
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(opd_ta_ws_send_frame(&a, 2, zeros, MAX_MSG), 0);
	assert_int_equal(opd_ta_ws_read_message(&a, 10000, &p, &n), 1);
	{
		Opamp__Proto__V1__ServerToAgent *s =
		    opamp__proto__v1__server_to_agent__unpack(NULL, n - 1, p + 1);
		assert_non_null(s);
		assert_non_null(s->error_response);
		S2A_FREE(s);
	}
	free(p);
	opd_ta_fini(&a);
	printf("hostile limits: a message of exactly %u bytes: read, answered BadRequest\n",
	       MAX_MSG);

	/* One byte more: 1009, in one frame or in fragments. */
	put_frame(&out, 1, 0, 2, zeros, MAX_MSG + 1);
	rc = ws_raw_close(f, opd_buf_rptr(&out), opd_buf_avail(&out));
	printf("hostile limits: one frame of %u bytes: close %d\n", MAX_MSG + 1, rc);
	assert_int_equal(rc, 1009);
	opd_buf_reset(&out);
	put_frame(&out, 0, 0, 2, zeros, MAX_MSG / 2);
	put_frame(&out, 0, 0, 0, zeros, MAX_MSG / 2);
	put_frame(&out, 1, 0, 0, zeros, 1);
	rc = ws_raw_close(f, opd_buf_rptr(&out), opd_buf_avail(&out));
	printf("hostile limits: fragments adding up to %u bytes: close %d\n", MAX_MSG + 1, rc);
	assert_int_equal(rc, 1009);

	/* Frame headers: the length field's forms and what control frames may carry. */
	{
		/* 64-bit length with the most significant bit set (RFC 6455 §5.2: must be 0). */
		static const uint8_t msb[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
		/* 2^40 bytes announced: refused at the first payload bytes, nothing buffered. */
		static const uint8_t huge[] = {0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4,
					       0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
		/* A 126-byte ping (control frames carry at most 125). */
		uint8_t big_ping[126];

		rc = ws_raw_close(f, msb, sizeof msb);
		printf("hostile limits: 64-bit length with its top bit set: close %d\n", rc);
		assert_int_equal(rc, NO_CODE);
		rc = ws_raw_close(f, huge, sizeof huge);
		printf("hostile limits: a frame header announcing 2^40 bytes: close %d\n", rc);
		assert_int_equal(rc, 1009);
		memset(big_ping, 'x', sizeof big_ping);
		opd_buf_reset(&out);
		put_frame(&out, 1, 0, 9, big_ping, sizeof big_ping);
		rc = ws_raw_close(f, opd_buf_rptr(&out), opd_buf_avail(&out));
		printf("hostile limits: a 126-byte ping: close %d\n", rc);
		assert_int_equal(rc, NO_CODE);
		opd_buf_reset(&out);
		put_frame(&out, 1, 4, 2, "\0", 1); /* RSV1 without an extension */
		rc = ws_raw_close(f, opd_buf_rptr(&out), opd_buf_avail(&out));
		printf("hostile limits: RSV1 set: close %d\n", rc);
		assert_int_equal(rc, 1002);
		/* Unmasked client frame. */
		rc = ws_raw_close(f, "\x82\x01\x00", 3);
		printf("hostile limits: an unmasked frame: close %d\n", rc);
		assert_int_equal(rc, 1002);
	}

	/* HTTP headers: exactly the limit is served, one byte more is refused (431). */
	rc = post_sized_headers(f, MAX_HEADER, 8);
	printf("hostile limits: %u bytes of request headers: %d\n", MAX_HEADER, rc);
	assert_int_equal(rc, 200);
	rc = post_sized_headers(f, MAX_HEADER + 1, 8);
	printf("hostile limits: %u bytes of request headers: %d\n", MAX_HEADER + 1, rc);
	assert_int_equal(rc, 431);
	rc = post_sized_headers(f, 4096, 64);
	printf("hostile limits: 64 header lines: %d\n", rc);
	assert_int_equal(rc, 200);
	rc = post_sized_headers(f, 4096, 65);
	printf("hostile limits: 65 header lines: %d\n", rc);
	assert_int_equal(rc, 431);

	/* A body one byte over the limit: 413 from the Content-Length alone, body never sent. */
	{
		char head[256];
		int hn =
		    snprintf(head, sizeof head,
			     "POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			     "Content-Type: application/x-protobuf\r\nContent-Length: %u\r\n\r\n",
			     MAX_MSG + 1);

		fd = opd_client_connect(f->d.opamp_port);
		assert_true(fd >= 0);
		assert_int_equal(opd_client_exchange(fd, head, (size_t)hn, 5000, &resp), 0);
		printf("hostile limits: Content-Length %u: %d before any body byte\n", MAX_MSG + 1,
		       resp.status);
		assert_int_equal(resp.status, 413);
		opd_client_resp_free(&resp);
		close(fd);
	}
	free(zeros);
	opd_buf_fini(&out);
	mon_stop(f, "limits");
}

/*
 * The count of fragments: a message cut into 1-byte continuation frames. Each fragment costs
 * the WebSocket codec a few small allocations, so the number of fragments in one message must
 * be bounded, not just its size; the daemon's memory for one such message is printed per
 * fragment.
 */
static void test_continuation_count(void **state)
{
	struct fx *f = *state;
	const size_t frags = UNDER_ASAN ? 50000 : 200000;
	struct opd_ta a;
	struct opd_buf msg, out;
	struct rd r = {0};
	const uint8_t *pl;
	size_t n;
	long rss0, peak;
	int fin, op, rc, close_code = -1, replied = 0;
	uint64_t t0;

	mon_start(f, 2);
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	opd_buf_init(&msg);
	opd_buf_init(&out);
	a2s_ws_bytes(&a, "many-fragments", frags, &msg);
	for (size_t i = 0; i < frags; i++)
		put_frame(&out, 0, 0, i == 0 ? 2 : 0, opd_buf_rptr(&msg) + i, 1);
	put_frame(&out, 1, 0, 0, opd_buf_rptr(&msg) + frags, opd_buf_avail(&msg) - frags);
	rss0 = proc_kb(f->d.pid, "VmRSS:");
	reset_peak(f->d.pid);
	t0 = now_ms();
	(void)send_buf(a.fd, &out, now_ms() + 20000);
	r.fd = a.fd;
	while ((rc = rd_frame(&r, now_ms() + 10000, &fin, &op, &pl, &n)) == 1) {
		if (op == 8) {
			close_code = n >= 2 ? pl[0] << 8 | pl[1] : 1005;
			break;
		}
		if (op == 2) {
			replied = 1;
			break;
		}
	}
	peak = proc_kb(f->d.pid, "VmHWM:");
	printf("hostile fragments: one message in %zu one-byte fragments (%.1f MiB on the wire) "
	       "in %.1f s: %s %d; daemon peak RSS %+ld KiB (%.0f bytes per fragment)\n",
	       frags, (double)opd_buf_avail(&out) / (1 << 20), (double)(now_ms() - t0) / 1000,
	       replied ? "answered" : "close", replied ? 0 : close_code, peak - rss0,
	       (double)(peak - rss0) * 1024 / (double)frags);
	free(r.b);
	opd_ta_fini(&a);
	opd_buf_fini(&msg);
	opd_buf_fini(&out);
	mon_stop(f, "fragment count");
	/*
	 * Bounded: refused once the fragments of one message pass ws.c's limit (4096), before
	 * the ~75 bytes wslay keeps per fragment add up (~300 MiB for a 4 MiB message).
	 */
	assert_false(replied);
	assert_int_equal(close_code, 1009);
}

/* ------------------------------------------------------------------ agents that never read */

/* A WebSocket whose receive buffer is small from the start and that never reads. */
static int ws_open_small_rcvbuf(int port, int rcvbuf)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	static const char req[] = "GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				  "Sec-WebSocket-Version: 13\r\n\r\n";
	char buf[512];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint64_t deadline = now_ms() + 5000;

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    opd_client_send_all(fd, req, sizeof req - 1, deadline) != 0)
		goto fail;
	/* Exactly the 101 response: the server says nothing more until spoken to. */
	while (got < 4 || memcmp(buf + got - 4, "\r\n\r\n", 4) != 0) {
		if (got == sizeof buf - 1 || opd_client_recv(fd, buf + got, 1, deadline) != 1)
			goto fail;
		got++;
	}
	buf[got] = '\0';
	if (strncmp(buf, "HTTP/1.1 101", 12) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* A YAML body of about n bytes (one long scalar per line). */
static char *big_yaml(size_t n, int version)
{
	char *y = malloc(n + 64);
	size_t off = 0;

	assert_non_null(y);
	off += (size_t)sprintf(y, "version: %d\n", version);
	for (int i = 0; off + 100 < n; i++) {
		off += (size_t)sprintf(y + off, "k%06d: ", i);
		memset(y + off, 'a' + (i % 26), 80);
		off += 80;
		y[off++] = '\n';
	}
	y[off] = '\0';
	return y;
}

static int publish_for(struct fx *f, const char *cfg, const char *service, const char *yaml)
{
	struct opd_client_resp r;
	json_t *req =
	    json_pack("{s:{s:s},s:{s:{s:s,s:s}}}", "selector", "service.name", service, "files",
		      "collector.yaml", "content_type", "text/yaml", "body", yaml);
	char *body = json_dumps(req, JSON_COMPACT), path[160];
	int st;

	snprintf(path, sizeof path, "/api/v1/configs/%s", cfg);
	st = opd_api_request(&f->d, "POST", path, body, f->d.token, &r, NULL);
	if (st != 200 && st != 201)
		fprintf(stderr, "publish: %d %s\n", st, r.body ? (char *)r.body : "");
	opd_client_resp_free(&r);
	json_decref(req);
	free(body);
	return st;
}

static int agent_connected(struct fx *f, const char *uid_hex)
{
	json_t *j = opd_api_get_agent(&f->d, uid_hex);
	int c = j != NULL && json_is_true(json_object_get(j, "connected"));

	json_decref(j);
	return c;
}

/*
 * An agent that never reads while ~1.9 MiB configurations are published to it: what the
 * kernel does not take queues in the daemon up to the per-connection output limit (16 MiB),
 * then the daemon disconnects it. The daemon's peak memory growth stays near that limit.
 */
static void test_agent_never_reads(void **state)
{
	struct fx *f = *state;
	struct opd_ta a;
	struct opd_buf hello, out;
	char service[48];
	long rss0, peak;
	int fd, published = 0, connected = 1;
	uint64_t t0;

	mon_start(f, 50);
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	snprintf(service, sizeof service, "never-reads-%.8s", a.uid_hex);
	fd = ws_open_small_rcvbuf(f->d.opamp_port, 4096);
	assert_true(fd >= 0);
	opd_buf_init(&hello);
	opd_buf_init(&out);
	a2s_ws_bytes(&a, service, 0, &hello);
	put_frame(&out, 1, 0, 2, opd_buf_rptr(&hello), opd_buf_avail(&hello));
	assert_int_equal(send_buf(fd, &out, now_ms() + 2000), 0);
	/* Registered (its reply stays unread). */
	for (int i = 0; i < 50 && !agent_connected(f, a.uid_hex); i++)
		opd_test_pause_ms(50);
	assert_true(agent_connected(f, a.uid_hex));

	rss0 = proc_kb(f->d.pid, "VmRSS:");
	reset_peak(f->d.pid);
	t0 = now_ms();
	for (int v = 1; v <= 20 && connected; v++) {
		char *y = big_yaml((19u << 20) / 10, v);
		int st = publish_for(f, "never-reads", service, y);

		free(y);
		assert_true(st == 200 || st == 201);
		published++;
		for (int i = 0; i < 10 && (connected = agent_connected(f, a.uid_hex)); i++)
			opd_test_pause_ms(20);
	}
	peak = proc_kb(f->d.pid, "VmHWM:");
	printf("hostile never-reads: %d configurations of 1.9 MiB published in %.1f s: agent %s; "
	       "daemon RSS %ld KiB before, peak %+ld KiB (output limit %u MiB)\n",
	       published, (double)(now_ms() - t0) / 1000,
	       connected ? "STILL CONNECTED" : "disconnected", rss0, peak - rss0, MAX_OUT >> 20);
	assert_false(connected);
	assert_true(closed_within(fd, 10000));
	close(fd);
	if (!UNDER_ASAN)
		assert_true(peak - rss0 < (long)(MAX_OUT / 1024) + 64 * 1024);
	opd_buf_fini(&hello);
	opd_buf_fini(&out);
	opd_ta_fini(&a);
	mon_stop(f, "never reads");
}

/* ------------------------------------------------------------------ one instance_uid, two
 * connections */

/*
 * Two connections claim one instance_uid. The rule session.c implements: neither is refused;
 * the agent belongs to the connection that spoke for it last (pushes go there), and the
 * other's close does not mark the agent disconnected.
 */
static void test_duplicate_instance_uid(void **state)
{
	struct fx *f = *state;
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta a, b;
	struct opd_ta_msg m;
	char service[48], *y;
	uint8_t *p;
	size_t n;

	mon_start(f, 50);
	opd_ta_init(&a, f->d.opamp_port, OPD_TA_CAPS);
	opd_ta_init(&b, f->d.opamp_port, OPD_TA_CAPS);
	memcpy(b.uid, a.uid, sizeof a.uid);
	memcpy(b.uid_hex, a.uid_hex, sizeof a.uid_hex);
	snprintf(service, sizeof service, "dup-%.8s", a.uid_hex);
	assert_int_equal(opd_ta_ws_connect(&a), 0);
	assert_int_equal(opd_ta_ws_connect(&b), 0);
	opd_ta_msg_full(&m, &a, service);
	r = opd_ta_exchange(&a, &m.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->error_response);
	S2A_FREE(r);
	/* The second claim is answered like the first: no error, same uid. */
	b.seq = 10;
	opd_ta_msg_full(&m, &b, service);
	r = opd_ta_exchange(&b, &m.msg, REPLY_MS);
	assert_non_null(r);
	assert_null(r->error_response);
	assert_memory_equal(r->instance_uid.data, a.uid, 16);
	S2A_FREE(r);

	/* A configuration published now goes to b, the last to speak, and not to a. */
	y = big_yaml(256, 1);
	assert_true(publish_for(f, "dup-uid", service, y) / 100 == 2);
	free(y);
	r = opd_ta_recv(&b, REPLY_MS);
	assert_non_null(r);
	assert_non_null(r->remote_config);
	S2A_FREE(r);
	assert_int_equal(opd_ta_ws_read_message(&a, 1000, &p, &n), -1); /* nothing for a */

	/* a speaks again: it owns the agent now; b going away changes nothing. */
	r = opd_ta_heartbeat(&a, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);
	opd_ta_fini(&b);
	opd_test_pause_ms(300);
	assert_true(agent_connected(f, a.uid_hex));
	opd_ta_fini(&a);
	for (int i = 0; i < 50 && agent_connected(f, a.uid_hex); i++)
		opd_test_pause_ms(50);
	assert_false(agent_connected(f, a.uid_hex));
	printf("hostile duplicate uid: both claims answered; pushes went to the last speaker; "
	       "closing the other kept the agent connected; closing the owner disconnected it\n");
	mon_stop(f, "duplicate uid");
}

/* ------------------------------------------------------------------ reconnect storm */

enum st_state { ST_CONNECTING, ST_HTTP, ST_WS, ST_DONE };
enum st_result { SR_NONE, SR_OK, SR_503, SR_CLOSE, SR_OTHER, SR_EOF, SR_CONNECT };

struct st_agent {
	struct opd_ta ta; /* its uid and message builder (no socket of its own) */
	int fd;
	enum st_state state;
	enum st_result result;
	int code; /* HTTP status or close code */
	int retry_after;
	uint64_t t0, t1;
	uint8_t buf[8192];
	size_t len;
};

static int storm_open(struct st_agent *s, int port, int src)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in me = {.sin_family = AF_INET};

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->fd < 0)
		return -1;
	/* One source address per few hundred agents: ephemeral ports are never the limit. */
	me.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(10 + src));
	(void)bind(s->fd, (struct sockaddr *)&me, sizeof me);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->state = ST_CONNECTING;
	s->result = SR_NONE;
	s->len = 0;
	s->t0 = now_ms();
	if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
		return -1;
	return 0;
}

static void storm_finish(struct st_agent *s, enum st_result r, int code)
{
	s->result = r;
	s->code = code;
	s->state = ST_DONE;
	s->t1 = now_ms();
}

/* One step of an agent's handshake and first report when its socket is ready. */
static void storm_step(struct st_agent *s, short revents)
{
	static const char req[] = "GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				  "Sec-WebSocket-Version: 13\r\n\r\n";
	long r;

	if (s->state == ST_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;

		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return;
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0 || send(s->fd, req, sizeof req - 1, MSG_NOSIGNAL) != sizeof req - 1) {
			storm_finish(s, SR_CONNECT, err);
			return;
		}
		s->state = ST_HTTP;
		return;
	}
	if (!(revents & (POLLIN | POLLERR | POLLHUP)))
		return;
	r = recv(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len, 0);
	if (r < 0 && errno == EAGAIN)
		return;
	if (r <= 0) {
		storm_finish(s, SR_EOF, 0);
		return;
	}
	s->len += (size_t)r;
	s->buf[s->len] = '\0';
	if (s->state == ST_HTTP) {
		char *end = strstr((char *)s->buf, "\r\n\r\n"), *ra;
		int status = 0;
		struct opd_buf hello, out;

		if (end == NULL)
			return;
		sscanf((char *)s->buf, "HTTP/1.1 %d", &status);
		if (status != 101) {
			ra = strcasestr((char *)s->buf, "\r\nRetry-After:");
			s->retry_after = ra != NULL ? atoi(ra + 14) : -1;
			storm_finish(s, status == 503 ? SR_503 : SR_OTHER, status);
			return;
		}
		s->len -= (size_t)(end + 4 - (char *)s->buf);
		memmove(s->buf, end + 4, s->len);
		opd_buf_init(&hello);
		opd_buf_init(&out);
		a2s_ws_bytes(&s->ta, "storm", 0, &hello);
		put_frame(&out, 1, 0, 2, opd_buf_rptr(&hello), opd_buf_avail(&hello));
		/* A few hundred bytes: the socket buffer takes them at once. */
		if (send(s->fd, opd_buf_rptr(&out), opd_buf_avail(&out), MSG_NOSIGNAL) !=
		    (ssize_t)opd_buf_avail(&out))
			storm_finish(s, SR_EOF, 0);
		else
			s->state = ST_WS;
		opd_buf_fini(&hello);
		opd_buf_fini(&out);
		if (s->state != ST_WS || s->len == 0)
			return;
	}
	/* ST_WS: the first frame decides. */
	if (s->len >= 2) {
		size_t h = 2, n = s->buf[1] & 0x7f;
		int op = s->buf[0] & 0x0f;

		if (n == 126) {
			if (s->len < 4)
				return;
			n = (size_t)s->buf[2] << 8 | s->buf[3];
			h = 4;
		}
		if (s->len < h + n && s->len < sizeof s->buf - 1)
			return;
		if (op == 2)
			storm_finish(s, SR_OK, 0);
		else if (op == 8)
			storm_finish(s, SR_CLOSE, n >= 2 ? s->buf[h] << 8 | s->buf[h + 1] : 1005);
		else
			storm_finish(s, SR_OTHER, op);
	}
}

/* Run every agent's handshake to an answer, at most ms. Returns how many got none. */
static int storm_run(struct st_agent *ag, size_t n, struct pollfd *pf, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	size_t left = 0;

	for (size_t i = 0; i < n; i++)
		left += ag[i].state != ST_DONE;
	while (left > 0 && now_ms() < deadline) {
		size_t k = 0;
		int rc;

		for (size_t i = 0; i < n; i++) {
			if (ag[i].state == ST_DONE)
				continue;
			pf[k].fd = ag[i].fd;
			pf[k].events = ag[i].state == ST_CONNECTING ? POLLOUT : POLLIN;
			pf[k].revents = 0;
			k++;
		}
		rc = poll(pf, k, remaining(deadline) < 100 ? remaining(deadline) : 100);
		if (rc <= 0)
			continue;
		k = 0;
		for (size_t i = 0; i < n; i++) {
			if (ag[i].state == ST_DONE)
				continue;
			if (pf[k].revents != 0) {
				storm_step(&ag[i], pf[k].revents);
				if (ag[i].state == ST_DONE)
					left--;
			}
			k++;
		}
	}
	return (int)left;
}

/*
 * Agents refused with 503 reconnect once their Retry-After has passed (and again if refused
 * again), until all are connected and answered or the deadline. Returns when the last one
 * was answered, or 0 at the deadline.
 */
static uint64_t storm_retry(struct st_agent *ag, size_t n, struct pollfd *pf, int port,
			    uint64_t deadline, int *retries)
{
	for (;;) {
		size_t waiting = 0;
		uint64_t now = now_ms(), last = 0;

		for (size_t i = 0; i < n; i++) {
			if (ag[i].result == SR_OK) {
				last = ag[i].t1 > last ? ag[i].t1 : last;
				continue;
			}
			waiting++;
			if (ag[i].result != SR_503 || ag[i].retry_after <= 0)
				return 0; /* not an answer to retry on */
			if (now >= ag[i].t1 + (uint64_t)ag[i].retry_after * 1000) {
				close(ag[i].fd);
				(*retries)++;
				if (storm_open(&ag[i], port, (int)(i / 250)) != 0)
					return 0;
			}
		}
		if (waiting == 0)
			return last;
		if (now >= deadline)
			return 0;
		(void)storm_run(ag, n, pf, 5000);
		opd_test_pause_ms(20);
	}
}

static size_t env_size(const char *name, size_t dflt)
{
	const char *v = getenv(name);

	return v != NULL && atol(v) > 0 ? (size_t)atol(v) : dflt;
}

/*
 * Every agent reconnects at once: N agents connect and report (in waves), then all their
 * connections drop together and all N reconnect in the same instant, each sending its first
 * report. Every one must get a bounded answer: connected and answered, or refused with
 * 503 + Retry-After before the upgrade, or a WebSocket close with a code.
 */
static void test_reconnect_storm(void **state)
{
	struct fx *f = *state;
	const size_t n = env_size("OPD_HOSTILE_STORM", UNDER_ASAN ? 1000 : 3000);
	struct st_agent *ag = calloc(n, sizeof *ag);
	struct pollfd *pf = calloc(n, sizeof *pf);
	unsigned *lat = calloc(n, sizeof *lat);
	int counts[SR_CONNECT + 1] = {0}, left, min_ra = INT32_MAX, max_ra = 0, retries = 0;
	uint64_t t0, back;
	struct stats ls;
	size_t nl = 0;

	assert_non_null(ag);
	assert_non_null(pf);
	assert_non_null(lat);
	for (size_t i = 0; i < n; i++)
		opd_ta_init(&ag[i].ta, f->d.opamp_port, OPD_TA_CAPS & ~0x2u);
	/* The fleet connects in waves of 400 every 250 ms, under the default pace (2000/s). */
	for (size_t w = 0; w < n; w += 400) {
		size_t m = n - w < 400 ? n - w : 400;

		for (size_t i = w; i < w + m; i++)
			assert_int_equal(storm_open(&ag[i], f->d.opamp_port, (int)(i / 250)), 0);
		assert_int_equal(storm_run(ag + w, m, pf, 20000), 0);
		opd_test_pause_ms(250);
	}
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ag[i].result, SR_OK);

	mon_start(f, 10);
	opd_test_pause_ms(200);
	/* Everyone drops and reconnects at once. */
	for (size_t i = 0; i < n; i++)
		close(ag[i].fd);
	t0 = now_ms();
	for (size_t i = 0; i < n; i++)
		if (storm_open(&ag[i], f->d.opamp_port, (int)(i / 250)) != 0)
			storm_finish(&ag[i], SR_CONNECT, errno);
	left = storm_run(ag, n, pf, 30000);
	for (size_t i = 0; i < n; i++) {
		counts[ag[i].result]++;
		if (ag[i].result != SR_NONE)
			lat[nl++] = (unsigned)(ag[i].t1 - ag[i].t0);
	}
	ls = summarize(lat, nl, 0);
	for (size_t i = 0; i < n; i++)
		if (ag[i].result == SR_503) {
			min_ra = ag[i].retry_after < min_ra ? ag[i].retry_after : min_ra;
			max_ra = ag[i].retry_after > max_ra ? ag[i].retry_after : max_ra;
		}
	printf("hostile storm: %zu agents reconnecting at once, all answered in %.2f s: %d "
	       "connected and answered, %d refused 503 with Retry-After %d-%d s, %d closed with "
	       "a code, %d other, %d EOF without answer, %d connect failures, %d unanswered; "
	       "answer time p50=%u p99=%u max=%u ms\n",
	       n, (double)(now_ms() - t0) / 1000, counts[SR_OK], counts[SR_503],
	       counts[SR_503] ? min_ra : 0, max_ra, counts[SR_CLOSE], counts[SR_OTHER],
	       counts[SR_EOF], counts[SR_CONNECT], left, ls.p50, ls.p99, ls.max);
	/* The refused come back when told to, as real agents do: all are back soon. */
	back = storm_retry(ag, n, pf, f->d.opamp_port, t0 + 25000, &retries);
	printf("hostile storm: every agent back %.2f s after the storm (%d retries honouring "
	       "Retry-After)\n",
	       back ? (double)(back - t0) / 1000 : -1.0, retries);
	opd_test_pause_ms(200);
	mon_stop(f, "reconnect storm");
	for (size_t i = 0; i < n; i++) {
		if (ag[i].fd >= 0)
			close(ag[i].fd);
		opd_ta_fini(&ag[i].ta);
	}
	assert_int_equal(left, 0);
	assert_int_equal(counts[SR_EOF] + counts[SR_OTHER] + counts[SR_CONNECT], 0);
	assert_int_equal(counts[SR_OK] + counts[SR_503] + counts[SR_CLOSE], (int)n);
	assert_true(back != 0);
	free(ag);
	free(pf);
	free(lat);
}

/* ------------------------------------------------------------------ silent connections to the fd
 * limit */

/*
 * An attacker child process: opens up to `target` connections from its own source address,
 * never sends a byte, and reports what became of them. Several children go beyond the test
 * process's own descriptor limit.
 */
struct fd_report {
	int held;      /* open and silent on both sides */
	int refused;   /* answered 503 with Retry-After, then closed */
	int bare;      /* closed without a byte */
	int timed_out; /* closed without a byte after the header timeout */
	int failed;    /* connect() failed */
};

__attribute__((noreturn)) static void fd_child(int port, int src, int target, int cmd, int rep)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in me = {.sin_family = AF_INET};
	int *fds = calloc((size_t)target, sizeof *fds);
	uint64_t *opened = calloc((size_t)target, sizeof *opened);
	struct pollfd *pf = calloc((size_t)target, sizeof *pf);
	struct fd_report r = {0};
	int n = 0, go;

	if (fds == NULL || opened == NULL || pf == NULL || read(cmd, &go, sizeof go) != sizeof go)
		_exit(1);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	me.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
	while (n < target) {
		int batch = target - n < 256 ? target - n : 256, first = n;
		uint64_t deadline = now_ms() + 5000;

		for (int i = 0; i < batch; i++) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

			if (fd < 0)
				_exit(2);
			(void)bind(fd, (struct sockaddr *)&me, sizeof me);
			if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
			    errno != EINPROGRESS) {
				close(fd);
				r.failed++;
				continue;
			}
			opened[n] = now_ms();
			fds[n++] = fd;
		}
		/* Wait for the batch to be connected before the next one. */
		for (int done = 0; done < n - first && now_ms() < deadline;) {
			int k = 0;

			for (int i = first; i < n; i++)
				pf[k++] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
			(void)poll(pf, (nfds_t)k, 100);
			done = 0;
			for (int i = 0; i < k; i++)
				done += (pf[i].revents & POLLOUT) != 0;
		}
	}
	/* Let the daemon answer those it refuses, then sort them out. */
	for (int round = 0; round < 10; round++) {
		int changed = 0, k = 0;

		opd_test_pause_ms(200);
		for (int i = 0; i < n; i++)
			pf[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		(void)poll(pf, (nfds_t)n, 0);
		for (int i = 0; i < n; i++) {
			char buf[256];
			long got;

			if (fds[i] < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = recv(fds[i], buf, sizeof buf - 1, MSG_DONTWAIT);
			if (got > 0) {
				buf[got] = '\0';
				if (strncmp(buf, "HTTP/1.1 503", 12) == 0 &&
				    strcasestr(buf, "Retry-After:") != NULL)
					r.refused++;
				else
					r.bare++;
			} else if (now_ms() - opened[i] >= HEADER_TIMEOUT_MS - 500) {
				r.timed_out++;
			} else {
				r.bare++;
			}
			close(fds[i]);
			fds[i] = -1;
			changed = 1;
		}
		for (int i = 0; i < n; i++)
			k += fds[i] >= 0;
		r.held = k;
		if (!changed && round >= 2)
			break;
	}
	if (write(rep, &r, sizeof r) != sizeof r)
		_exit(3);
	/* Hold until told to go. */
	(void)read(cmd, &go, sizeof go);
	_exit(0);
}

static void test_silent_connections_to_fd_limit(void **state)
{
	struct fx *f = *state;
	struct fx g = {0};
	struct rlimit old, rl;
	size_t limit;
	int target, n_children, per_child;
	pid_t kids[8];
	int cmd[8], rep[8];
	struct fd_report total = {0};
	long rss_before, rss_held;
	uint64_t cpu0, t_cpu0, t_open;
	double cpu_share;
	struct opd_client_resp resp;
	json_t *j = NULL;
	const char *refused_line;
	struct opd_ta late;
	Opamp__Proto__V1__ServerToAgent *r;
	struct opd_ta_msg m;

	(void)f;
	/* A daemon of its own, with the limit the case runs at. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	limit = env_size("OPD_HOSTILE_FD_LIMIT", UNDER_ASAN ? 4096 : (size_t)old.rlim_cur);
	if (limit > old.rlim_cur)
		limit = old.rlim_cur;
	rl = old;
	rl.rlim_cur = limit;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(fx_start(&g), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

	/* Go 300 past the daemon's limit; at most ~9,800 connections per child. */
	target = (int)limit + 300;
	n_children = (target + 9799) / 9800;
	assert_true(n_children <= 8);
	per_child = (target + n_children - 1) / n_children;
	for (int i = 0; i < n_children; i++) {
		int c[2], p[2];

		assert_int_equal(pipe(c), 0);
		assert_int_equal(pipe(p), 0);
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			close(c[1]);
			close(p[0]);
			fd_child(g.d.opamp_port, 20 + i, per_child, c[0], p[1]);
		}
		close(c[0]);
		close(p[1]);
		cmd[i] = c[1];
		rep[i] = p[0];
	}
	rss_before = proc_kb(g.d.pid, "VmRSS:");
	mon_start(&g, 50);
	t_open = now_ms();
	for (int i = 0; i < n_children; i++) {
		struct fd_report cr;
		int go = 1;

		assert_int_equal(write(cmd[i], &go, sizeof go), (ssize_t)sizeof go);
		assert_int_equal(read(rep[i], &cr, sizeof cr), (ssize_t)sizeof cr);
		total.held += cr.held;
		total.refused += cr.refused;
		total.bare += cr.bare;
		total.timed_out += cr.timed_out;
		total.failed += cr.failed;
	}
	t_open = now_ms() - t_open;
	/* Holding at the limit: the daemon must idle, not spin on EMFILE. */
	cpu0 = proc_cpu_ms(g.d.pid);
	t_cpu0 = now_ms();
	opd_test_pause_ms(1000);
	cpu_share = (double)(proc_cpu_ms(g.d.pid) - cpu0) / (double)(now_ms() - t_cpu0);
	rss_held = proc_kb(g.d.pid, "VmRSS:");
	assert_int_equal(opd_api_request(&g.d, "GET", "/metrics", NULL, g.d.token, &resp, &j), 200);
	refused_line = strstr((const char *)resp.body, "\nopampd_connections_refused_total ");
	if (refused_line != NULL)
		refused_line += strlen("\nopampd_connections_refused_total ");
	printf("hostile fd limit: daemon open-files limit %zu; %d silent connections tried in "
	       "%.1f s from %d processes: %d held, %d refused with 503 + Retry-After, %d closed "
	       "without a byte, %d timed out, %d connect failures; daemon CPU while held %.0f%%; "
	       "RSS %ld -> %ld KiB (%.1f KiB per held connection); connections refused (metrics) "
	       "%ld\n",
	       limit, n_children * per_child, (double)t_open / 1000, n_children, total.held,
	       total.refused, total.bare, total.timed_out, total.failed, cpu_share * 100,
	       rss_before, rss_held,
	       total.held ? (double)(rss_held - rss_before) / total.held : 0.0,
	       refused_line ? strtol(refused_line, NULL, 10) : -1L);
	opd_client_resp_free(&resp);
	json_decref(j);
	mon_stop(&g, "fd limit");

	/* The attackers go; the daemon serves a newcomer. */
	for (int i = 0; i < n_children; i++) {
		int go = 0, st;

		assert_int_equal(write(cmd[i], &go, sizeof go), (ssize_t)sizeof go);
		waitpid(kids[i], &st, 0);
		close(cmd[i]);
		close(rep[i]);
	}
	opd_ta_init(&late, g.d.opamp_port, OPD_TA_CAPS);
	for (int i = 0; i < 40 && opd_ta_ws_connect(&late) != 0; i++)
		opd_test_pause_ms(100);
	opd_ta_msg_full(&m, &late, "after-fd-attack");
	r = opd_ta_exchange(&late, &m.msg, REPLY_MS);
	assert_non_null(r);
	S2A_FREE(r);
	opd_ta_fini(&late);
	assert_true(opd_daemon_alive(&g.d));
	assert_int_equal(fx_stop(&g), 0);

	/* The excess was refused with an answer, the rest held, nothing spun. */
	assert_int_equal(total.failed, 0);
	assert_int_equal(total.bare, 0);
	assert_int_equal(total.timed_out, 0);
	assert_true(total.refused >= 300);
	assert_true(total.held >= (int)limit - 256 - 200);
	assert_true(total.held + total.refused == n_children * per_child);
	assert_true(cpu_share < 0.5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fragments_and_interleaved_control),
	    cmocka_unit_test(test_frames_just_over_limits),
	    cmocka_unit_test(test_continuation_count),
	    cmocka_unit_test(test_ping_flood),
	    cmocka_unit_test(test_duplicate_instance_uid),
	    cmocka_unit_test(test_agent_never_reads),
	    cmocka_unit_test(test_slow_headers_and_bodies),
	    cmocka_unit_test(test_reconnect_storm),
	    cmocka_unit_test(test_silent_connections_to_fd_limit),
	};

	/* OPD_HOSTILE_ONLY=test_ping* runs the matching cases only. */
	if (getenv("OPD_HOSTILE_ONLY") != NULL)
		cmocka_set_test_filter(getenv("OPD_HOSTILE_ONLY"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
