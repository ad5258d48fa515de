#include "agent_client.h"

#include "admin_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define IO_TIMEOUT_MS 10000
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HOSTILE_FRAME (1024 * 1024)

static void random_bytes(void *p, size_t n)
{
	uint8_t *q = p;

	while (n > 0) {
		ssize_t r = getrandom(q, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		q += r;
		n -= (size_t)r;
	}
}

void opd_ta_hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void opd_ta_init(struct opd_ta *a, int port, uint64_t capabilities)
{
	*a =
	    (struct opd_ta){.fd = -1, .port = port, .capabilities = capabilities, .close_code = -1};
	random_bytes(a->uid, sizeof(a->uid));
	a->uid[6] = (uint8_t)((a->uid[6] & 0x0f) | 0x40); /* UUID version 4 */
	a->uid[8] = (uint8_t)((a->uid[8] & 0x3f) | 0x80);
	opd_ta_hex(a->uid, sizeof(a->uid), a->uid_hex);
}

/* ---- transport: plain TCP, or TLS over the same socket ---- */

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = opd_test_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static void io_close(struct opd_ta *a)
{
	if (a->ssl != NULL)
		SSL_free(a->ssl);
	if (a->ssl_ctx != NULL)
		SSL_CTX_free(a->ssl_ctx);
	a->ssl = a->ssl_ctx = NULL;
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
}

static void tls_fail(struct opd_ta *a, const char *what)
{
	unsigned long e = ERR_get_error();
	long vr = a->ssl != NULL ? SSL_get_verify_result(a->ssl) : X509_V_OK;

	snprintf(a->tls_error, sizeof(a->tls_error), "%s: %s%s%s", what,
		 e != 0 && ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
							      : "connection closed",
		 vr != X509_V_OK ? ": " : "",
		 vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
	ERR_clear_error();
}

/* Wait until the SSL call that returned rc may be retried. 0, or -1 (error recorded). */
static int tls_wait(struct opd_ta *a, int rc, uint64_t deadline, const char *what)
{
	int e = SSL_get_error(a->ssl, rc);
	struct pollfd pfd = {.fd = a->fd};

	if (e == SSL_ERROR_WANT_READ)
		pfd.events = POLLIN;
	else if (e == SSL_ERROR_WANT_WRITE)
		pfd.events = POLLOUT;
	else {
		tls_fail(a, what);
		errno = ECONNRESET;
		return -1;
	}
	for (;;) {
		int pr = poll(&pfd, 1, remaining_ms(deadline));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			snprintf(a->tls_error, sizeof(a->tls_error), "%s: timeout", what);
			errno = ETIMEDOUT;
			return -1;
		}
		return 0;
	}
}

static int tls_handshake(struct opd_ta *a, uint64_t deadline)
{
	SSL_CTX *ctx;
	const X509 *peer;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc;

	/* SSL writes with write(2): a server closing first must not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		abort();
	a->ssl_ctx = ctx;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (a->tls_ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, a->tls_ca_file, NULL) != 1) {
			tls_fail(a, a->tls_ca_file);
			return -1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (a->tls_cert_file != NULL &&
	    (SSL_CTX_use_certificate_chain_file(ctx, a->tls_cert_file) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, a->tls_key_file, SSL_FILETYPE_PEM) != 1)) {
		tls_fail(a, a->tls_cert_file);
		return -1;
	}
	a->ssl = SSL_new(ctx);
	if (a->ssl == NULL || SSL_set_fd(a->ssl, a->fd) != 1)
		abort();
	if (a->tls_ca_file != NULL)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(a->ssl), "127.0.0.1");
	fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) | O_NONBLOCK);
	ERR_clear_error();
	while ((rc = SSL_connect(a->ssl)) != 1)
		if (tls_wait(a, rc, deadline, "handshake") != 0)
			return -1;
	snprintf(a->tls_version, sizeof(a->tls_version), "%s", SSL_get_version(a->ssl));
	peer = SSL_get0_peer_certificate(a->ssl);
	if (peer != NULL && X509_digest(peer, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32)
		opd_ta_hex(md, 32, a->server_fingerprint);
	return 0;
}

/* Connect (and handshake) before the deadline. 0, or -1 with the socket closed. */
static int io_connect(struct opd_ta *a, uint64_t deadline)
{
	a->tls_error[0] = '\0';
	a->fd = opd_client_connect(a->port);
	if (a->fd < 0) {
		fprintf(stderr, "agent: connect: %s\n", strerror(errno));
		return -1;
	}
	if (a->tls && tls_handshake(a, deadline) != 0) {
		fprintf(stderr, "agent: TLS %s\n", a->tls_error);
		io_close(a);
		return -1;
	}
	return 0;
}

static int io_send_all(struct opd_ta *a, const void *p, size_t n, uint64_t deadline)
{
	const uint8_t *q = p;

	if (a->ssl == NULL)
		return opd_client_send_all(a->fd, p, n, deadline);
	ERR_clear_error();
	while (n > 0) {
		int w = SSL_write(a->ssl, q, n > INT_MAX ? INT_MAX : (int)n);

		if (w > 0) {
			q += w;
			n -= (size_t)w;
		} else if (tls_wait(a, w, deadline, "write") != 0) {
			return -1;
		}
	}
	return 0;
}

/* As opd_client_recv: bytes, 0 on EOF (or the peer's close_notify), -1 on error or timeout. */
static long io_recv(struct opd_ta *a, void *p, size_t cap, uint64_t deadline)
{
	if (a->ssl == NULL)
		return opd_client_recv(a->fd, p, cap, deadline);
	ERR_clear_error();
	for (;;) {
		int r = SSL_read(a->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
		int e;

		if (r > 0)
			return r;
		e = SSL_get_error(a->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
			return 0;
		if (tls_wait(a, r, deadline, "read") != 0)
			return -1;
	}
}

/*
 * TLS: send the request and read one response: the head, then Content-Length
 * bytes of body (or up to EOF without one, none for 101/204/304); anything
 * read beyond goes to r->extra. Same contract as opd_client_exchange.
 */
static int tls_exchange(struct opd_ta *a, const void *req, size_t n, int timeout_ms,
			struct opd_client_resp *r)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	uint8_t *buf = NULL, *end = NULL;
	size_t len = 0, cap = 0, hlen, want = SIZE_MAX;
	char v[64];
	long got;

	*r = (struct opd_client_resp){0};
	if (io_send_all(a, req, n, deadline) != 0)
		return -1;
	for (;;) {
		if (end == NULL && len >= 4) {
			uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);

			if (e != NULL) {
				int major, minor;

				end = e + 4;
				hlen = (size_t)(e - buf) + 2;
				r->head = malloc(hlen + 1);
				if (r->head == NULL)
					abort();
				memcpy(r->head, buf, hlen);
				r->head[hlen] = '\0';
				if (sscanf(r->head, "HTTP/%d.%d %d", &major, &minor, &r->status) !=
				    3) {
					free(buf);
					return -1;
				}
				if (r->status == 101 || r->status == 204 || r->status == 304)
					want = 0;
				else if (opd_client_header(r, "Content-Length", v, sizeof(v)) !=
					 NULL)
					want = strtoull(v, NULL, 10);
			}
		}
		if (end != NULL && want != SIZE_MAX && len - (size_t)(end - buf) >= want)
			break;
		if (len + 1 >= cap) {
			if (cap >= OPD_CLIENT_MAX_HEAD + OPD_CLIENT_MAX_BODY) {
				free(buf);
				return -1;
			}
			cap = cap ? cap * 2 : 16384;
			{
				size_t off = end != NULL ? (size_t)(end - buf) : 0;

				buf = realloc(buf, cap);
				if (buf == NULL)
					abort();
				if (end != NULL)
					end = buf + off;
			}
		}
		got = io_recv(a, buf + len, cap - len - 1, deadline);
		if (got <= 0) {
			r->closed = 1;
			if (got == 0 && end != NULL && want == SIZE_MAX)
				break; /* the body ends with the connection */
			free(buf);
			return -1;
		}
		len += (size_t)got;
	}
	if (want == SIZE_MAX)
		want = len - (size_t)(end - buf);
	r->body = malloc(want + 1);
	if (r->body == NULL)
		abort();
	memcpy(r->body, end, want);
	r->body[want] = '\0';
	r->body_len = want;
	if ((size_t)(end - buf) + want < len) {
		r->extra_len = len - (size_t)(end - buf) - want;
		r->extra = malloc(r->extra_len + 1);
		if (r->extra == NULL)
			abort();
		memcpy(r->extra, end + want, r->extra_len);
	}
	free(buf);
	return 0;
}

static int io_exchange(struct opd_ta *a, const void *req, size_t n, int timeout_ms,
		       struct opd_client_resp *r)
{
	if (a->ssl == NULL)
		return opd_client_exchange(a->fd, req, n, timeout_ms, r);
	return tls_exchange(a, req, n, timeout_ms, r);
}

/* "Authorization: Bearer <token>\r\n" or "" into out. */
static const char *auth_header(const struct opd_ta *a, char *out, size_t cap)
{
	out[0] = '\0';
	if (a->bearer_token != NULL)
		snprintf(out, cap, "Authorization: Bearer %s\r\n", a->bearer_token);
	return out;
}

void opd_ta_fini(struct opd_ta *a)
{
	io_close(a);
	free(a->in);
	a->in = NULL;
	a->in_len = a->in_cap = 0;
	if (a->pending != NULL)
		opamp__proto__v1__server_to_agent__free_unpacked(a->pending, NULL);
	a->pending = NULL;
}

/* ---- WebSocket ---- */

int opd_ta_ws_connect(struct opd_ta *a)
{
	uint8_t keyraw[16], digest[SHA_DIGEST_LENGTH];
	char key[32], accept[64], cat[128], got[128], req[1280], auth[700];
	struct opd_client_resp r;
	int n, rc = -1;

	a->ws = true;
	random_bytes(keyraw, sizeof(keyraw));
	EVP_EncodeBlock((unsigned char *)key, keyraw, sizeof(keyraw));
	snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)cat, strlen(cat), digest);
	EVP_EncodeBlock((unsigned char *)accept, digest, sizeof(digest));

	a->last_status = 0;
	if (io_connect(a, opd_test_now_ms() + IO_TIMEOUT_MS) != 0)
		return -1;
	n = snprintf(req, sizeof(req),
		     "GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\nUser-Agent: opd-e2e\r\n%s\r\n",
		     a->port, key, auth_header(a, auth, sizeof(auth)));
	if (io_exchange(a, req, (size_t)n, IO_TIMEOUT_MS, &r) != 0) {
		fprintf(stderr, "ws: no upgrade response (status %d)%s%s\n", r.status,
			a->tls_error[0] ? ": " : "", a->tls_error);
		goto out;
	}
	a->last_status = r.status;
	if (r.status != 101) {
		fprintf(stderr, "ws: upgrade answered %d: %s\n", r.status, r.head);
		goto out;
	}
	if (opd_client_header(&r, "Sec-WebSocket-Accept", got, sizeof(got)) == NULL ||
	    strcmp(got, accept) != 0) {
		fprintf(stderr, "ws: bad Sec-WebSocket-Accept (want %s): %s\n", accept, r.head);
		goto out;
	}
	if (opd_client_header(&r, "Upgrade", got, sizeof(got)) == NULL ||
	    strcasecmp(got, "websocket") != 0) {
		fprintf(stderr, "ws: no Upgrade: websocket header: %s\n", r.head);
		goto out;
	}
	if (r.extra_len > 0) {
		a->in = malloc(r.extra_len);
		if (a->in == NULL)
			abort();
		memcpy(a->in, r.extra, r.extra_len);
		a->in_len = a->in_cap = r.extra_len;
	}
	rc = 0;
out:
	opd_client_resp_free(&r);
	if (rc != 0)
		io_close(a);
	return rc;
}

/* Send n bytes; with stop_on_input, stop (successfully) once the server sends or closes. */
static int send_bytes(struct opd_ta *a, const uint8_t *p, size_t n, bool stop_on_input)
{
	uint64_t deadline = opd_test_now_ms() + IO_TIMEOUT_MS;
	int fd = a->fd;

	if (!stop_on_input || a->ssl != NULL)
		return io_send_all(a, p, n, deadline);
	while (n > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLOUT};
		uint64_t now = opd_test_now_ms();
		ssize_t w;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0)
			return -1;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
			return 0;
		w = send(fd, p, n > 65536 ? 65536 : n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return 0; /* reset or closed by the server: read what it said */
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int opd_ta_ws_send_frame(struct opd_ta *a, int opcode, const void *p, size_t n)
{
	uint8_t *f, mask[4];
	size_t h = 2;
	int rc;

	if (a->fd < 0)
		return -1;
	f = malloc(n + 14);
	if (f == NULL)
		abort();
	f[0] = (uint8_t)(0x80 | (opcode & 0x0f));
	if (n < 126) {
		f[1] = (uint8_t)(0x80 | n);
	} else if (n <= 0xffff) {
		f[1] = 0x80 | 126;
		f[2] = (uint8_t)(n >> 8);
		f[3] = (uint8_t)n;
		h = 4;
	} else {
		f[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			f[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		h = 10;
	}
	random_bytes(mask, sizeof(mask));
	memcpy(f + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < n; i++)
		f[h + i] = ((const uint8_t *)p)[i] ^ mask[i & 3];
	rc = send_bytes(a, f, h + n, n > HOSTILE_FRAME);
	free(f);
	return rc;
}

int opd_ta_ws_send_close(struct opd_ta *a, int code)
{
	uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};

	a->close_sent = true;
	return opd_ta_ws_send_frame(a, 8, p, sizeof(p));
}

int opd_ta_send_raw(struct opd_ta *a, const void *p, size_t n)
{
	if (a->fd < 0)
		return -1;
	return io_send_all(a, p, n, opd_test_now_ms() + IO_TIMEOUT_MS);
}

/* Ensure at least need bytes are buffered. 1 ok, 0 EOF, -1 timeout/error. */
static int ws_need(struct opd_ta *a, size_t need, uint64_t deadline)
{
	while (a->in_len < need) {
		long r;

		if (a->in_cap - a->in_len < 65536) {
			size_t ncap =
			    a->in_cap * 2 < a->in_len + 65536 ? a->in_len + 65536 : a->in_cap * 2;

			a->in = realloc(a->in, ncap);
			if (a->in == NULL)
				abort();
			a->in_cap = ncap;
		}
		r = io_recv(a, a->in + a->in_len, a->in_cap - a->in_len, deadline);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 0;
		if (r < 0)
			return -1;
		a->in_len += (size_t)r;
	}
	return 1;
}

int opd_ta_ws_read_message(struct opd_ta *a, int timeout_ms, uint8_t **out, size_t *outn)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	uint8_t *msg = NULL;
	size_t msg_len = 0;
	int rc;

	if (a->fd < 0)
		return 0;
	for (;;) {
		uint64_t len;
		size_t h = 2;
		int op, fin;

		rc = ws_need(a, 2, deadline);
		if (rc <= 0)
			goto done_rc;
		fin = a->in[0] & 0x80;
		op = a->in[0] & 0x0f;
		if (a->in[1] & 0x80) {
			fprintf(stderr, "ws: server frame is masked\n");
			rc = -1;
			goto done_rc;
		}
		len = a->in[1] & 0x7f;
		if (len == 126) {
			if ((rc = ws_need(a, 4, deadline)) <= 0)
				goto done_rc;
			len = (uint64_t)a->in[2] << 8 | a->in[3];
			h = 4;
		} else if (len == 127) {
			if ((rc = ws_need(a, 10, deadline)) <= 0)
				goto done_rc;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | a->in[2 + i];
			h = 10;
		}
		if (len > OPD_TA_MAX_MSG || msg_len + len > OPD_TA_MAX_MSG) {
			fprintf(stderr, "ws: server frame too large (%llu)\n",
				(unsigned long long)len);
			rc = -1;
			goto done_rc;
		}
		if ((rc = ws_need(a, h + (size_t)len, deadline)) <= 0)
			goto done_rc;
		{
			uint8_t *pl = a->in + h;
			size_t n = (size_t)len;

			if (op == 8) {
				a->close_code = n >= 2 ? (pl[0] << 8 | pl[1]) : 1005;
				/* Answer the close as RFC 6455 asks; the server may be gone. */
				if (!a->close_sent)
					opd_ta_ws_send_close(
					    a, a->close_code == 1005 ? 1000 : a->close_code);
				rc = 0;
			} else if (op == 9) {
				uint8_t ping[125];

				memcpy(ping, pl, n < sizeof(ping) ? n : sizeof(ping));
				opd_ta_ws_send_frame(a, 10, ping, n < sizeof(ping) ? n : 0);
			} else if (op == 1 || op == 2 || op == 0) {
				msg = realloc(msg, msg_len + n + 1);
				if (msg == NULL)
					abort();
				memcpy(msg + msg_len, pl, n);
				msg_len += n;
			}
			memmove(a->in, a->in + h + n, a->in_len - h - n);
			a->in_len -= h + n;
			if (op == 8)
				goto done_rc;
			if ((op == 1 || op == 2 || op == 0) && fin) {
				*out = msg != NULL ? msg : malloc(1);
				*outn = msg_len;
				return 1;
			}
		}
	}
done_rc:
	free(msg);
	return rc;
}

/* ---- messages ---- */

void opd_ta_msg_init(struct opd_ta_msg *b, struct opd_ta *a)
{
	*b = (struct opd_ta_msg){0};
	opamp__proto__v1__agent_to_server__init(&b->msg);
	b->msg.instance_uid.data = a->uid;
	b->msg.instance_uid.len = sizeof(a->uid);
	b->msg.sequence_num = ++a->seq;
	b->msg.capabilities = a->capabilities;
}

static void set_kv(struct opd_ta_msg *b, int i, const char *k, const char *v)
{
	opamp__proto__v1__key_value__init(&b->kv[i]);
	opamp__proto__v1__any_value__init(&b->av[i]);
	b->av[i].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	b->av[i].string_value = (char *)v;
	b->kv[i].key = (char *)k;
	b->kv[i].value = &b->av[i];
	b->kvp[i] = &b->kv[i];
}

void opd_ta_msg_description(struct opd_ta_msg *b, const char *name)
{
	opamp__proto__v1__agent_description__init(&b->desc);
	set_kv(b, 0, "service.name", name);
	set_kv(b, 1, "os.type", "linux");
	set_kv(b, 2, "host.name", "e2e");
	b->desc.identifying_attributes = &b->kvp[0];
	b->desc.n_identifying_attributes = 1;
	b->desc.non_identifying_attributes = &b->kvp[1];
	b->desc.n_non_identifying_attributes = 2;
	b->msg.agent_description = &b->desc;
}

void opd_ta_msg_health(struct opd_ta_msg *b, bool healthy, const char *last_error)
{
	opamp__proto__v1__component_health__init(&b->health);
	b->health.healthy = healthy;
	b->health.status = healthy ? "StatusOK" : "StatusRecoverableError";
	if (last_error != NULL)
		b->health.last_error = (char *)last_error;
	b->health.start_time_unix_nano = 1700000000000000000ull;
	b->health.status_time_unix_nano = 1700000001000000000ull;
	b->msg.health = &b->health;
}

void opd_ta_msg_remote_config_status(struct opd_ta_msg *b, const char *hash_hex, int status,
				     const char *error_message)
{
	size_t n = hash_hex != NULL ? strlen(hash_hex) / 2 : 0;

	opamp__proto__v1__remote_config_status__init(&b->rcs);
	if (n > sizeof(b->rcs_hash))
		n = sizeof(b->rcs_hash);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(hash_hex + 2 * i, "%2x", &v) != 1)
			abort();
		b->rcs_hash[i] = (uint8_t)v;
	}
	b->rcs.last_remote_config_hash.data = n > 0 ? b->rcs_hash : NULL;
	b->rcs.last_remote_config_hash.len = n;
	b->rcs.status = (Opamp__Proto__V1__RemoteConfigStatuses)status;
	if (error_message != NULL)
		b->rcs.error_message = (char *)error_message;
	b->msg.remote_config_status = &b->rcs;
}

void opd_ta_msg_effective_config(struct opd_ta_msg *b, const char *yaml)
{
	opamp__proto__v1__effective_config__init(&b->eff);
	opamp__proto__v1__agent_config_map__init(&b->eff_map);
	opamp__proto__v1__agent_config_map__config_map_entry__init(&b->eff_entry);
	opamp__proto__v1__agent_config_file__init(&b->eff_file);
	b->eff_file.body.data = (uint8_t *)yaml;
	b->eff_file.body.len = strlen(yaml);
	b->eff_file.content_type = "text/yaml";
	b->eff_entry.key = "collector.yaml";
	b->eff_entry.value = &b->eff_file;
	b->eff_entryp = &b->eff_entry;
	b->eff_map.config_map = &b->eff_entryp;
	b->eff_map.n_config_map = 1;
	b->eff.config_map = &b->eff_map;
	b->msg.effective_config = &b->eff;
}

void opd_ta_msg_disconnect(struct opd_ta_msg *b)
{
	opamp__proto__v1__agent_disconnect__init(&b->disc);
	b->msg.agent_disconnect = &b->disc;
}

void opd_ta_msg_full(struct opd_ta_msg *b, struct opd_ta *a, const char *name)
{
	opd_ta_msg_init(b, a);
	opd_ta_msg_description(b, name);
	opd_ta_msg_health(b, true, NULL);
	opd_ta_msg_effective_config(b, "receivers:\n  otlp: {}\n");
	opd_ta_msg_remote_config_status(b, NULL, 0, NULL);
}

/* ---- gzip ---- */

size_t opd_ta_gzip(const uint8_t *src, size_t n, uint8_t **out)
{
	z_stream z = {0};
	uLong cap;
	uint8_t *buf;

	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return 0;
	cap = deflateBound(&z, (uLong)n) + 64;
	buf = malloc(cap);
	if (buf == NULL)
		abort();
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)n;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&z);
		free(buf);
		return 0;
	}
	*out = buf;
	n = z.total_out;
	deflateEnd(&z);
	return n;
}

size_t opd_ta_gunzip(const uint8_t *src, size_t n, size_t max, uint8_t **out)
{
	z_stream z = {0};
	uint8_t *buf;
	int rc;

	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return (size_t)-1;
	buf = malloc(max + 1);
	if (buf == NULL)
		abort();
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)n;
	z.next_out = buf;
	z.avail_out = (uInt)max + 1;
	rc = inflate(&z, Z_FINISH);
	if (rc != Z_STREAM_END || z.total_out > max) {
		inflateEnd(&z);
		free(buf);
		return (size_t)-1;
	}
	*out = buf;
	n = z.total_out;
	inflateEnd(&z);
	return n;
}

/* ---- send / receive ---- */

static int http_post(struct opd_ta *a, const uint8_t *pb, size_t n)
{
	uint8_t *body = (uint8_t *)pb, *gz = NULL, *plain = NULL, *req;
	size_t blen = n, plen;
	char head[1280], ce[64], auth[700];
	struct opd_client_resp r;
	int hn, rc = -1;

	if (a->pending != NULL)
		opamp__proto__v1__server_to_agent__free_unpacked(a->pending, NULL);
	a->pending = NULL;
	a->last_status = 0;
	a->last_content_encoding[0] = '\0';
	a->last_content_type[0] = '\0';
	if (a->gzip_request) {
		blen = opd_ta_gzip(pb, n, &gz);
		if (blen == 0)
			return -1;
		body = gz;
	}
	hn = snprintf(head, sizeof(head),
		      "POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		      "Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n"
		      "OpAMP-Instance-UID: %.8s-%.4s-%.4s-%.4s-%.12s\r\n%s%s%s\r\n",
		      a->port, blen, a->uid_hex, a->uid_hex + 8, a->uid_hex + 12, a->uid_hex + 16,
		      a->uid_hex + 20, a->gzip_request ? "Content-Encoding: gzip\r\n" : "",
		      a->accept_gzip ? "Accept-Encoding: gzip\r\n" : "",
		      auth_header(a, auth, sizeof(auth)));
	req = malloc((size_t)hn + blen);
	if (req == NULL)
		abort();
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, body, blen);
	free(gz);
	if (io_connect(a, opd_test_now_ms() + IO_TIMEOUT_MS) != 0) {
		free(req);
		return -1;
	}
	if (io_exchange(a, req, (size_t)hn + blen, IO_TIMEOUT_MS, &r) != 0) {
		fprintf(stderr, "http agent: no response (status %d)%s%s\n", r.status,
			a->tls_error[0] ? ": " : "", a->tls_error);
		goto out;
	}
	a->last_status = r.status;
	if (opd_client_header(&r, "Content-Encoding", ce, sizeof(ce)) != NULL)
		snprintf(a->last_content_encoding, sizeof(a->last_content_encoding), "%s", ce);
	if (opd_client_header(&r, "Content-Type", ce, sizeof(ce)) != NULL)
		snprintf(a->last_content_type, sizeof(a->last_content_type), "%s", ce);
	if (r.status != 200) {
		fprintf(stderr, "http agent: HTTP %d\n", r.status);
		goto out;
	}
	if (strcasecmp(a->last_content_encoding, "gzip") == 0) {
		plen = opd_ta_gunzip(r.body, r.body_len, OPD_TA_MAX_MSG, &plain);
		if (plen == (size_t)-1) {
			fprintf(stderr, "http agent: response does not gunzip\n");
			goto out;
		}
		a->pending = opamp__proto__v1__server_to_agent__unpack(NULL, plen, plain);
		free(plain);
	} else {
		a->pending = opamp__proto__v1__server_to_agent__unpack(NULL, r.body_len, r.body);
	}
	if (a->pending == NULL) {
		fprintf(stderr, "http agent: response is not a ServerToAgent\n");
		goto out;
	}
	rc = 0;
out:
	io_close(a);
	free(req);
	opd_client_resp_free(&r);
	return rc;
}

int opd_ta_send(struct opd_ta *a, const Opamp__Proto__V1__AgentToServer *m)
{
	size_t n = opamp__proto__v1__agent_to_server__get_packed_size(m);
	uint8_t *p = malloc(n + 1);
	int rc;

	if (p == NULL)
		abort();
	p[0] = 0x00; /* the WebSocket varint header */
	opamp__proto__v1__agent_to_server__pack(m, p + 1);
	if (a->ws)
		rc = opd_ta_ws_send_frame(a, 2, p, n + 1);
	else
		rc = http_post(a, p + 1, n);
	free(p);
	return rc;
}

Opamp__Proto__V1__ServerToAgent *opd_ta_recv(struct opd_ta *a, int timeout_ms)
{
	Opamp__Proto__V1__ServerToAgent *m;
	uint8_t *p;
	size_t n;

	if (!a->ws) {
		m = a->pending;
		a->pending = NULL;
		return m;
	}
	if (opd_ta_ws_read_message(a, timeout_ms, &p, &n) != 1)
		return NULL;
	if (n < 1 || p[0] != 0x00) {
		fprintf(stderr, "ws: server message without the 0x00 header\n");
		free(p);
		return NULL;
	}
	m = opamp__proto__v1__server_to_agent__unpack(NULL, n - 1, p + 1);
	if (m == NULL)
		fprintf(stderr, "ws: server message is not a ServerToAgent\n");
	free(p);
	return m;
}

Opamp__Proto__V1__ServerToAgent *
opd_ta_exchange(struct opd_ta *a, const Opamp__Proto__V1__AgentToServer *m, int timeout_ms)
{
	if (opd_ta_send(a, m) != 0)
		return NULL;
	return opd_ta_recv(a, timeout_ms);
}

Opamp__Proto__V1__ServerToAgent *opd_ta_heartbeat(struct opd_ta *a, int timeout_ms)
{
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, a);
	return opd_ta_exchange(a, &b.msg, timeout_ms);
}
