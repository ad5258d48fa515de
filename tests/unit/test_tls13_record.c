/*
 * The TLS 1.3 handoff (agentapi/tls.c) and its record layer
 * (agentapi/tls13_record.c), against a real OpenSSL client over memory BIOs,
 * in-process. The client is the oracle: whatever the record layer sends must
 * decrypt there, and whatever OpenSSL sends must decrypt here. Covers data
 * both ways (1 MiB, one byte at a time, in the client's Finished flight),
 * KeyUpdate both kinds, close_notify, tampered, oversized, change-cipher-spec
 * and handshake records after the handoff, the three suites, TLS 1.2 (no
 * handoff), the client-certificate answers kept across the handoff, and the
 * memory an idle connection keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "hex.h"
#include "ossl_count.h"
#include "test_ca.h"
#include "tls.h"
#include "tls13_record.h"
#include "tls_pair.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture: a CA, a server certificate, a client certificate naming a uid ---- */

static const char uid_hex[] = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";

static struct {
	char dir[200];
	char ca[300], srv[300], srv_key[300], cli[300], cli_key[300];
} E;

static int group_setup(void **state)
{
	struct opd_tca ca;
	char uri[80];

	(void)state;
	if (opd_tca_tmpdir(E.dir, sizeof E.dir) != 0 || opd_tca_init(&ca, "record CA", OPD_TCA_EC))
		return -1;
	snprintf(E.ca, sizeof E.ca, "%s/ca.pem", E.dir);
	snprintf(E.srv, sizeof E.srv, "%s/srv.pem", E.dir);
	snprintf(E.srv_key, sizeof E.srv_key, "%s/srv.key", E.dir);
	snprintf(E.cli, sizeof E.cli, "%s/cli.pem", E.dir);
	snprintf(E.cli_key, sizeof E.cli_key, "%s/cli.key", E.dir);
	snprintf(uri, sizeof uri, "%s%s", OPD_TLS_AGENT_URI_PREFIX, uid_hex);
	if (opd_tca_write_ca(&ca, E.ca) != 0 ||
	    opd_tca_issue(&ca, &(struct opd_tca_leaf){.cn = "localhost", .server = true}, E.srv,
			  E.srv_key) != 0 ||
	    opd_tca_issue(&ca, &(struct opd_tca_leaf){.cn = "agent-1", .uri_san = uri}, E.cli,
			  E.cli_key) != 0)
		return -1;
	opd_tca_fini(&ca);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	opd_tca_rmdir(E.dir);
	return 0;
}

/* ---- a client (plain OpenSSL) and a server (tls.c) joined by hand ---- */

struct pair {
	SSL *c;
	struct opd_tls_ctx *sctx;
	struct opd_tls *s;
	ssize_t last; /* the server's last opd_tls_pull_plain result */
	size_t got_len;
	uint8_t *got; /* plaintext the server received (GOT_CAP bytes) */
	/* The client's traffic secrets (its key log), to forge records a client could send. */
	uint8_t secret[2][OPD_TLS13_SECRET_MAX]; /* [0] client, [1] server */
};

#define GOT_CAP (1200 * 1024)

static int client_idx = -1;

/* The test client's own key log: what a client could compute itself. */
static void client_keylog(const SSL *ssl, const char *line)
{
	struct pair *p = SSL_get_ex_data(ssl, client_idx);
	const char *hex = strrchr(line, ' ');
	int k = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0   ? 0
		: strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 ? 1
								     : -1;

	if (p == NULL || k < 0 || hex == NULL || strlen(hex + 1) > 2 * OPD_TLS13_SECRET_MAX)
		return;
	assert_int_equal(opd_hex_decode(hex + 1, p->secret[k], strlen(hex + 1) / 2), 0);
}

static SSL_CTX *client_ctx(const char *suite, int max_version, bool cert)
{
	SSL_CTX *c = opd_tp_client_ctx(E.ca, cert ? E.cli : NULL, E.cli_key);

	if (suite != NULL)
		assert_int_equal(SSL_CTX_set_ciphersuites(c, suite), 1);
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(c, max_version);
	SSL_CTX_set_keylog_callback(c, client_keylog);
	return c;
}

static void pair_start(struct pair *p, SSL_CTX *cctx, enum opd_tls_verify v)
{
	memset(p, 0, sizeof *p);
	p->got = malloc(GOT_CAP);
	assert_non_null(p->got);
	p->sctx = opd_tp_server_ctx(E.srv, E.srv_key, E.ca, v);
	p->c = opd_tp_client(cctx);
	SSL_CTX_free(cctx); /* the SSL holds its own reference */
	SSL_set_ex_data(p->c, client_idx, p);
	assert_int_equal(opd_tls_new(p->sctx, &p->s), 0);
}

static void pair_end(struct pair *p)
{
	SSL_free(p->c);
	opd_tls_free(p->s);
	opd_tls_ctx_unref(p->sctx);
	free(p->got);
	ERR_clear_error();
}

/* Bytes to the server (pushed max at a time), its plaintext collected (cap bytes per pull). */
static void to_server(struct pair *p, const uint8_t *b, size_t n, size_t max, size_t cap)
{
	uint8_t tmp[20000];

	assert_true(cap <= sizeof tmp);
	do {
		size_t k = n < max ? n : max;

		assert_int_equal(opd_tls_push_cipher(p->s, b, k), 0);
		b += k;
		n -= k;
		while ((p->last = opd_tls_pull_plain(p->s, tmp, cap)) > 0) {
			assert_true(p->got_len + (size_t)p->last <= GOT_CAP);
			memcpy(p->got + p->got_len, tmp, (size_t)p->last);
			p->got_len += (size_t)p->last;
		}
	} while (n > 0);
}

/* Everything the client wrote → server (in pieces of max bytes). Returns bytes moved. */
static size_t client_to_server(struct pair *p, size_t max, size_t cap)
{
	BUF_MEM *bm = NULL;
	size_t n;

	BIO_get_mem_ptr(SSL_get_wbio(p->c), &bm);
	n = bm->length;
	if (n > 0)
		to_server(p, (const uint8_t *)bm->data, n, max, cap);
	(void)BIO_reset(SSL_get_wbio(p->c));
	return n;
}

/* Everything the server has for the client → client's read BIO. Returns bytes. */
static size_t server_to_client(struct pair *p, struct opd_buf *copy)
{
	return opd_tp_server_to_client(p->s, p->c, copy);
}

static void pump(struct pair *p)
{
	for (int round = 0; round < 20; round++) {
		size_t moved;

		if (!SSL_is_init_finished(p->c))
			SSL_do_handshake(p->c);
		moved = client_to_server(p, SIZE_MAX, 16384);
		moved += server_to_client(p, NULL);
		if (moved == 0)
			break;
	}
	ERR_clear_error();
}

static void handshake(struct pair *p)
{
	pump(p);
	if (!opd_tls_handshake_done(p->s) || p->last != OPD_EAGAIN || !SSL_is_init_finished(p->c))
		fail_msg("handshake failed: server \"%s\"", opd_tls_errmsg(p->s));
}

/* Read up to cap bytes the client received. */
static size_t client_read(struct pair *p, uint8_t *buf, size_t cap)
{
	return opd_tp_client_read(p->c, buf, cap);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *b = malloc(n ? n : 1);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 9));
	return b;
}

/* n bytes client → server (moved max bytes at a time, pulled cap at a time) and back. */
static void exchange(struct pair *p, size_t n, size_t max, size_t cap)
{
	uint8_t *data = pattern(n, (unsigned)n), *back = malloc(n);
	size_t sent = 0;

	assert_non_null(back);
	p->got_len = 0;
	while (sent < n) { /* SSL_write takes an int; records of 16 KiB either way */
		int k = (int)(n - sent > 65536 ? 65536 : n - sent);

		assert_int_equal(SSL_write(p->c, data + sent, k), k);
		sent += (size_t)k;
		client_to_server(p, max, cap);
	}
	assert_int_equal(p->last, OPD_EAGAIN);
	assert_int_equal(p->got_len, n);
	assert_memory_equal(p->got, data, n);
	assert_int_equal(opd_tls_push_plain(p->s, data, n), 0);
	server_to_client(p, NULL);
	assert_int_equal(client_read(p, back, n), n);
	assert_memory_equal(back, data, n);
	free(data);
	free(back);
}

/* A record layer with the client's keys: records a (misbehaving) client could send. */
static void forger(struct pair *p, struct opd_tls13_record *r)
{
	enum opd_tls13_suite suite;

	assert_int_equal(opd_tls13_suite_from_iana(
			     SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p->c)), &suite),
			 0);
	assert_int_equal(opd_tls13_record_init(r, suite, p->secret[1], p->secret[0]), 0);
}

/* What the server sent (or sends now) reaches the client, which sees the fatal alert `reason`. */
static void client_sees_alert(struct pair *p, int reason)
{
	uint8_t b[16];

	server_to_client(p, NULL);
	ERR_clear_error();
	assert_true(SSL_read(p->c, b, sizeof b) <= 0);
	assert_int_equal(ERR_GET_REASON(ERR_peek_error()), reason);
	ERR_clear_error();
}

/* The server failed for good: the reason says want, nothing more comes through. */
static void server_failed(struct pair *p, const char *want)
{
	uint8_t b[8];

	assert_int_equal(p->last, OPD_EPROTO);
	if (strstr(opd_tls_errmsg(p->s), want) == NULL)
		fail_msg("server error \"%s\" does not say \"%s\"", opd_tls_errmsg(p->s), want);
	assert_int_equal(opd_tls_pull_plain(p->s, b, sizeof b), OPD_EPROTO);
	assert_int_equal(opd_tls_push_plain(p->s, b, sizeof b), OPD_EPROTO);
	assert_false(opd_tls_peer_verified(p->s));
}

/* Split a stream of records into their count (all whole). */
static int count_records(const struct opd_buf *b)
{
	const uint8_t *q = opd_buf_rptr(b);
	size_t n = opd_buf_avail(b), off = 0;
	int records = 0;

	while (off + 5 <= n) {
		assert_int_equal(q[off], 23); /* every protected record looks like data */
		off += 5 + ((size_t)q[off + 3] << 8 | q[off + 4]);
		records++;
	}
	assert_int_equal(off, n);
	return records;
}

/* ---- tests ---- */

static void handoff_and_data(void **state)
{
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	assert_false(opd_tls_handed_off(p.s));
	handshake(&p);
	assert_true(opd_tls_handed_off(p.s));
	assert_string_equal(opd_tls_version(p.s), "TLSv1.3");
	assert_string_equal(opd_tls_cipher(p.s), SSL_get_cipher_name(p.c));
	exchange(&p, 5, SIZE_MAX, 16384);
	exchange(&p, 1024 * 1024, SIZE_MAX, 16384); /* 64 records each way */
	exchange(&p, 3000, 1, 7);                   /* one byte in at a time, 7 out */
	exchange(&p, 40000, 16389, 16384);          /* one whole 16 KiB record per push */
	pair_end(&p);
}

/* An empty application-data record is skipped; the data after it arrives. */
static void empty_record_and_forged_data(void **state)
{
	struct opd_tls13_record f;
	struct opd_buf out;
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	forger(&p, &f);
	assert_int_equal(opd_tls13_record_seal(&f, OPD_TLS13_CT_APPDATA, NULL, 0), 0);
	assert_int_equal(opd_tls13_record_push_plain(&f, (const uint8_t *)"after", 5), 0);
	opd_buf_init(&out);
	opd_tls13_record_pull_cipher(&f, &out);
	assert_int_equal(count_records(&out), 2);
	to_server(&p, opd_buf_rptr(&out), opd_buf_avail(&out), SIZE_MAX, 16384);
	assert_int_equal(p.last, OPD_EAGAIN);
	assert_int_equal(p.got_len, 5);
	assert_memory_equal(p.got, "after", 5);
	opd_buf_fini(&out);
	opd_tls13_record_fini(&f);
	pair_end(&p);
}

/*
 * The client's first data (an HTTP upgrade, say) in the same flight as its
 * Finished: left in the read BIO at the handoff, read by the record layer
 * from sequence 0.
 */
static void data_in_finished_flight(void **state)
{
	static const char req[] = "GET /v1/opamp HTTP/1.1\r\nHost: x\r\n\r\n";
	struct pair p;
	int rc = 0;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	for (int i = 0; i < 10 && (rc = SSL_do_handshake(p.c)) != 1; i++) {
		assert_int_equal(SSL_get_error(p.c, rc), SSL_ERROR_WANT_READ);
		/* The client's flights, but not its last one (Finished) until it is done. */
		if (BIO_ctrl_pending(SSL_get_wbio(p.c)) > 0)
			client_to_server(&p, SIZE_MAX, 16384);
		server_to_client(&p, NULL);
	}
	assert_int_equal(rc, 1);
	assert_false(opd_tls_handshake_done(p.s));
	assert_int_equal(SSL_write(p.c, req, (int)strlen(req)), (int)strlen(req));
	client_to_server(&p, SIZE_MAX, 16384); /* Finished + the request, one push */
	assert_true(opd_tls_handshake_done(p.s));
	assert_true(opd_tls_handed_off(p.s));
	assert_int_equal(p.got_len, strlen(req));
	assert_memory_equal(p.got, req, strlen(req));
	assert_int_equal(p.last, OPD_EAGAIN);
	exchange(&p, 100, SIZE_MAX, 16384);
	pair_end(&p);
}

/*
 * KeyUpdate from the client. Requested: the server's next flight starts
 * with its own KeyUpdate (one record more) and then uses its next key.
 */
static void key_update(void **state)
{
	static const int kinds[] = {SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_NOT_REQUESTED,
				    SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_REQUESTED};
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_true(opd_tls_handed_off(p.s));
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		struct opd_buf flight;
		uint8_t back[16];

		assert_int_equal(SSL_key_update(p.c, kinds[i]), 1);
		assert_int_equal(SSL_write(p.c, "after", 5), 5); /* KeyUpdate, then the data */
		p.got_len = 0;
		client_to_server(&p, SIZE_MAX, 16384);
		assert_int_equal(p.last, OPD_EAGAIN);
		assert_int_equal(p.got_len, 5);
		assert_memory_equal(p.got, "after", 5);
		assert_int_equal(opd_tls_push_plain(p.s, (const uint8_t *)"reply", 5), 0);
		opd_buf_init(&flight);
		server_to_client(&p, &flight);
		assert_int_equal(count_records(&flight),
				 kinds[i] == SSL_KEY_UPDATE_REQUESTED ? 2 : 1);
		opd_buf_fini(&flight);
		assert_int_equal(client_read(&p, back, sizeof back), 5);
		assert_memory_equal(back, "reply", 5);
		exchange(&p, 20000, SIZE_MAX, 16384);
	}
	pair_end(&p);
}

static void close_notify(void **state)
{
	struct pair p;
	uint8_t b[8];

	(void)state;
	/* The client closes: end of stream, for good. */
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_int_equal(SSL_write(p.c, "last", 4), 4);
	SSL_shutdown(p.c);
	client_to_server(&p, SIZE_MAX, 16384);
	assert_int_equal(p.got_len, 4);
	assert_int_equal(p.last, 0);
	assert_int_equal(opd_tls_pull_plain(p.s, b, sizeof b), 0);
	pair_end(&p);

	/* The server closes: the client sees close_notify; nothing more is sent. */
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	opd_tls_shutdown(p.s);
	opd_tls_shutdown(p.s); /* idempotent */
	assert_true(server_to_client(&p, NULL) > 0);
	assert_int_equal(SSL_read(p.c, b, sizeof b), 0);
	assert_int_equal(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
	assert_int_equal(opd_tls_push_plain(p.s, (const uint8_t *)"x", 1), OPD_EPROTO);
	assert_int_equal(server_to_client(&p, NULL), 0);
	pair_end(&p);
}

/* One flipped ciphertext bit: no plaintext, bad_record_mac to the client, failed for good. */
static void tampered_record(void **state)
{
	struct pair p;
	BUF_MEM *bm = NULL;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_int_equal(SSL_write(p.c, "secret data", 11), 11);
	BIO_get_mem_ptr(SSL_get_wbio(p.c), &bm);
	assert_true(bm->length > 10);
	bm->data[8] ^= 0x04;
	client_to_server(&p, SIZE_MAX, 16384);
	assert_int_equal(p.got_len, 0);
	server_failed(&p, "bad record mac");
	client_sees_alert(&p, SSL_R_SSLV3_ALERT_BAD_RECORD_MAC);
	pair_end(&p);
}

/* Records the peer controls the size of: at most 2^14 + 256 bytes of ciphertext. */
static void oversized_record(void **state)
{
	static const uint8_t max[] = {23, 3, 3, 0x41, 0x00};  /* 16640: waits for the rest */
	static const uint8_t over[] = {23, 3, 3, 0x41, 0x01}; /* 16641 */
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	to_server(&p, max, sizeof max, SIZE_MAX, 16384);
	assert_int_equal(p.last, OPD_EAGAIN);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	to_server(&p, over, sizeof over, SIZE_MAX, 16384);
	server_failed(&p, "record too long");
	client_sees_alert(&p, SSL_R_TLSV1_ALERT_RECORD_OVERFLOW);
	pair_end(&p);
}

/* Forged client records (the client's own keys) → server; returns what the server answered. */
static size_t forge_and_push(struct pair *p, uint8_t type, const uint8_t *m, size_t n,
			     const char *then)
{
	struct opd_tls13_record f;
	struct opd_buf out;

	forger(p, &f);
	assert_int_equal(opd_tls13_record_seal(&f, type, m, n), 0);
	if (then != NULL)
		assert_int_equal(
		    opd_tls13_record_push_plain(&f, (const uint8_t *)then, strlen(then)), 0);
	opd_buf_init(&out);
	opd_tls13_record_pull_cipher(&f, &out);
	to_server(p, opd_buf_rptr(&out), opd_buf_avail(&out), SIZE_MAX, 16384);
	opd_buf_fini(&out);
	opd_tls13_record_fini(&f);
	return server_to_client(p, NULL);
}

/*
 * Alerts from the client: user_canceled is not an error (skipped, as OpenSSL
 * does); a fatal one ends the connection, answered by nothing.
 */
static void peer_alerts(void **state)
{
	static const uint8_t canceled[] = {1, 90}, fatal[] = {2, 40};
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_int_equal(forge_and_push(&p, OPD_TLS13_CT_ALERT, canceled, 2, "still here"), 0);
	assert_int_equal(p.last, OPD_EAGAIN);
	assert_int_equal(p.got_len, 10);
	assert_memory_equal(p.got, "still here", 10);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_int_equal(forge_and_push(&p, OPD_TLS13_CT_ALERT, fatal, 2, "x"), 0);
	assert_int_equal(p.got_len, 0);
	server_failed(&p, "peer sent alert: handshake failure");
	pair_end(&p);
}

/* Change cipher spec is for the handshake only; so is an unprotected record of any type. */
static void ccs_after_handoff(void **state)
{
	static const uint8_t ccs[] = {20, 3, 3, 0, 1, 1};
	static const uint8_t plain_alert[] = {21, 3, 3, 0, 2, 2, 40};
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	to_server(&p, ccs, sizeof ccs, SIZE_MAX, 16384);
	server_failed(&p, "change cipher spec");
	client_sees_alert(&p, SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	to_server(&p, plain_alert, sizeof plain_alert, SIZE_MAX, 16384);
	server_failed(&p, "unprotected record");
	pair_end(&p);
}

/* Handshake messages after the handshake: only a well-formed KeyUpdate. */
static void handshake_message_after_handoff(void **state)
{
	static const struct {
		uint8_t msg[8];
		size_t len;
		const char *why;
		int alert;
	} cases[] = {
	    /* NewSessionTicket (4), which only a server may send */
	    {{4, 0, 0, 1, 0},
	     5,
	     "unexpected handshake message",
	     SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE},
	    /* CertificateRequest (13): no post-handshake authentication */
	    {{13, 0, 0, 1, 0},
	     5,
	     "unexpected handshake message",
	     SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE},
	    {{24, 0, 0, 1, 2}, 5, "bad KeyUpdate request", SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER},
	    {{24, 0, 0, 2, 0, 0}, 6, "bad KeyUpdate message", SSL_R_TLSV1_ALERT_DECODE_ERROR},
	    /* a KeyUpdate must end its record (RFC 8446 §5.1) */
	    {{24, 0, 0, 1, 0, 24, 0, 0},
	     8,
	     "bad KeyUpdate message",
	     SSL_R_TLSV1_ALERT_DECODE_ERROR},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pair p;

		pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
		handshake(&p);
		/* Answered with an alert (now in the client's read BIO). */
		assert_true(forge_and_push(&p, OPD_TLS13_CT_HANDSHAKE, cases[i].msg, cases[i].len,
					   "x") > 0);
		assert_int_equal(p.got_len, 0);
		server_failed(&p, cases[i].why);
		client_sees_alert(&p, cases[i].alert);
		pair_end(&p);
	}
}

static void every_suite(void **state)
{
	static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
					     "TLS_CHACHA20_POLY1305_SHA256"};

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct pair p;

		pair_start(&p, client_ctx(suites[i], 0, false), OPD_TLS_VERIFY_OFF);
		handshake(&p);
		assert_true(opd_tls_handed_off(p.s));
		assert_string_equal(opd_tls_cipher(p.s), suites[i]);
		assert_string_equal(SSL_get_cipher_name(p.c), suites[i]);
		exchange(&p, 70000, SIZE_MAX, 16384);
		assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED), 1);
		exchange(&p, 20000, 1000, 16384);
		pair_end(&p);
	}
}

static void tls12_keeps_ssl(void **state)
{
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, TLS1_2_VERSION, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	assert_false(opd_tls_handed_off(p.s));
	assert_string_equal(opd_tls_version(p.s), "TLSv1.2");
	exchange(&p, 70000, SIZE_MAX, 16384);
	exchange(&p, 100, 1, 3);
	pair_end(&p);
}

/* The answers about the client's certificate, with the SSL (TLS 1.2) and after the handoff. */
struct facts {
	bool verified;
	int fp_rc, uid_rc, subject_rc;
	char fp[65], subject[256];
	uint8_t uid[16];
};

static void get_facts(struct opd_tls *s, struct facts *f)
{
	memset(f, 0, sizeof *f);
	f->verified = opd_tls_peer_verified(s);
	f->fp_rc = opd_tls_peer_fingerprint(s, f->fp);
	f->uid_rc = opd_tls_peer_uid(s, f->uid);
	f->subject_rc = opd_tls_peer_subject(s, f->subject, sizeof f->subject);
}

static void mtls_facts_kept(void **state)
{
	static const enum opd_tls_verify modes[] = {OPD_TLS_VERIFY_REQUIRED,
						    OPD_TLS_VERIFY_OPTIONAL};
	struct facts with_ssl, handed;
	uint8_t want_uid[16];
	char want_fp[65], small[8];
	struct pair p;

	(void)state;
	assert_int_equal(opd_tca_fingerprint(E.cli, want_fp), 0);
	assert_int_equal(opd_hex_decode(uid_hex, want_uid, 16), 0);
	for (size_t i = 0; i < 2; i++) {
		pair_start(&p, client_ctx(NULL, TLS1_2_VERSION, true), modes[i]);
		handshake(&p);
		assert_false(opd_tls_handed_off(p.s));
		get_facts(p.s, &with_ssl);
		pair_end(&p);

		pair_start(&p, client_ctx(NULL, 0, true), modes[i]);
		handshake(&p);
		assert_true(opd_tls_handed_off(p.s));
		get_facts(p.s, &handed);
		assert_int_equal(opd_tls_peer_subject(p.s, small, sizeof small), 0);
		assert_int_equal(strlen(small), sizeof small - 1); /* truncated as before */
		exchange(&p, 1000, SIZE_MAX, 16384);
		pair_end(&p);

		assert_memory_equal(&handed, &with_ssl, sizeof handed);
		assert_true(handed.verified);
		assert_int_equal(handed.fp_rc, 0);
		assert_string_equal(handed.fp, want_fp);
		assert_int_equal(handed.uid_rc, 0);
		assert_memory_equal(handed.uid, want_uid, 16);
		assert_non_null(strstr(handed.subject, "CN=agent-1"));
	}

	/* Optional and no certificate: nothing, either way. */
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OPTIONAL);
	handshake(&p);
	assert_true(opd_tls_handed_off(p.s));
	get_facts(p.s, &handed);
	assert_false(handed.verified);
	assert_int_equal(handed.fp_rc, OPD_ENOTFOUND);
	assert_int_equal(handed.uid_rc, OPD_ENOTFOUND);
	assert_int_equal(handed.subject_rc, OPD_ENOTFOUND);
	pair_end(&p);
}

/* OpenSSL-allocated bytes freed with the server side of p (an idle connection). */
static long long server_held(struct pair *p)
{
	long long before = opd_ossl_live_bytes();

	opd_tls_free(p->s);
	p->s = NULL;
	return before - opd_ossl_live_bytes();
}

/*
 * What the handoff is for: an idle TLS 1.3 connection keeps a few hundred
 * bytes (the struct with its keys; plus the client certificate's facts),
 * where one that keeps its SSL (TLS 1.2) holds ~10 KiB.
 */
static void idle_memory(void **state)
{
	long long tls13, tls13_mtls, tls12;
	struct pair p;

	(void)state;
	pair_start(&p, client_ctx(NULL, 0, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	exchange(&p, 100000, SIZE_MAX, 16384);
	tls13 = server_held(&p);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, 0, true), OPD_TLS_VERIFY_REQUIRED);
	handshake(&p);
	exchange(&p, 100000, SIZE_MAX, 16384);
	tls13_mtls = server_held(&p);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, TLS1_2_VERSION, false), OPD_TLS_VERIFY_OFF);
	handshake(&p);
	exchange(&p, 100000, SIZE_MAX, 16384);
	tls12 = server_held(&p);
	pair_end(&p);

	printf("idle server connection, OpenSSL heap: TLS 1.3 handed off %lld bytes "
	       "(%lld with a client certificate), TLS 1.2 with its SSL %lld bytes\n",
	       tls13, tls13_mtls, tls12);
	assert_true(tls13 > 0 && tls13 <= 1024);
	assert_true(tls13_mtls > tls13 && tls13_mtls <= 1024 + 256);
	assert_true(tls12 > 4 * 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(handoff_and_data),
	    cmocka_unit_test(empty_record_and_forged_data),
	    cmocka_unit_test(data_in_finished_flight),
	    cmocka_unit_test(key_update),
	    cmocka_unit_test(close_notify),
	    cmocka_unit_test(tampered_record),
	    cmocka_unit_test(oversized_record),
	    cmocka_unit_test(ccs_after_handoff),
	    cmocka_unit_test(peer_alerts),
	    cmocka_unit_test(handshake_message_after_handoff),
	    cmocka_unit_test(every_suite),
	    cmocka_unit_test(tls12_keeps_ssl),
	    cmocka_unit_test(mtls_facts_kept),
	    cmocka_unit_test(idle_memory),
	};

	/* Before OpenSSL allocates anything, so that every byte it holds is counted. */
	if (opd_ossl_count_install() != 0)
		return 1;
	client_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
