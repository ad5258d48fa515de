#include "tls.h"

#include "err.h"
#include "hex.h"
#include "mem.h"
#include "tls13_record.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * TLS 1.2 suites: ephemeral key exchange and AEAD only (no CBC, no RSA key
 * transport, no SHA-1 MACs). TLS 1.3 suites are all AEAD; OpenSSL's default
 * list is kept.
 */
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:P-256:P-384"
#define VERIFY_DEPTH 4

struct opd_tls_ctx {
	SSL_CTX *ssl;
	int refs; /* one loop thread: no atomics needed */
	enum opd_tls_verify verify;
	char fingerprint[65];
	char subject[256];
	char key_type[16];
	int64_t not_after;
};

/*
 * The TLS 1.3 application traffic secrets of a connection, caught by the
 * keylog callback during its handshake and wiped at the handoff (or when the
 * connection goes without one). [0] is the client's, [1] the server's.
 */
struct secrets {
	uint8_t s[2][OPD_TLS13_SECRET_MAX];
	uint8_t len[2];
};

/* What callers may still ask about a verified client certificate once the SSL is gone. */
struct peer_facts {
	uint8_t fingerprint[32];
	bool has_fingerprint;
	int uid_rc; /* opd_tls_peer_uid's answer */
	uint8_t uid[16];
	char subject[]; /* RFC 2253, at most PEER_SUBJECT_MAX - 1 bytes */
};

#define PEER_SUBJECT_MAX 1024

/*
 * A connection. Until the handshake completes (and for good on TLS 1.2, or
 * when a handoff condition fails) OpenSSL's SSL does everything. Once a TLS
 * 1.3 handshake completes, the record layer moves to rec and the SSL, its
 * BIOs and its cipher contexts are freed: an idle connection then holds this
 * struct and, with a verified client certificate, its peer_facts.
 */
struct opd_tls {
	SSL *ssl;                    /* NULL once handed off */
	struct opd_tls_ctx *ctx;     /* one reference */
	struct secrets *secrets;     /* during a TLS 1.3 handshake only */
	struct peer_facts *peer;     /* after a handoff, with a verified peer certificate */
	struct opd_tls13_record rec; /* after a handoff */
	bool done;                   /* handshake completed */
	bool handed_off;
	bool failed;
	bool peer_closed;
	bool shut;
	char errmsg[160];
};

int opd_tls_verify_parse(const char *s, enum opd_tls_verify *out)
{
	if (strcmp(s, "off") == 0)
		*out = OPD_TLS_VERIFY_OFF;
	else if (strcmp(s, "optional") == 0)
		*out = OPD_TLS_VERIFY_OPTIONAL;
	else if (strcmp(s, "required") == 0)
		*out = OPD_TLS_VERIFY_REQUIRED;
	else
		return OPD_EINVAL;
	return 0;
}

const char *opd_tls_verify_name(enum opd_tls_verify v)
{
	switch (v) {
	case OPD_TLS_VERIFY_OFF:
		return "off";
	case OPD_TLS_VERIFY_OPTIONAL:
		return "optional";
	case OPD_TLS_VERIFY_REQUIRED:
		return "required";
	}
	return "?";
}

/* The most specific reason in OpenSSL's error queue (which is then emptied). */
static const char *ssl_reason(char *buf, size_t cap)
{
	unsigned long e, first = 0;

	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	if (first == 0)
		return "unknown error";
	if (ERR_reason_error_string(first) != NULL)
		return ERR_reason_error_string(first);
	ERR_error_string_n(first, buf, cap);
	return buf;
}

static void x509_fingerprint(const X509 *x, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != 32) {
		out[0] = '\0';
		return;
	}
	opd_hex_encode(md, 32, out);
}

static void x509_subject(const X509 *x, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n;

	out[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(b, out, (int)cap - 1);
		out[n > 0 ? n : 0] = '\0';
	}
	BIO_free(b);
}

/*
 * OpenSSL 3.0's only way to hand out the TLS 1.3 traffic secrets: the key
 * log (NSS format, "LABEL <client random> <secret>", one line per secret).
 * Only the two application traffic secrets of one of our connections are
 * kept, in that connection, until the handoff; nothing is written anywhere.
 */
static void keylog(const SSL *ssl, const char *line)
{
	static const char *const labels[2] = {"CLIENT_TRAFFIC_SECRET_0 ",
					      "SERVER_TRAFFIC_SECRET_0 "};
	struct opd_tls *t = SSL_get_app_data(ssl);
	const char *hex;
	size_t n;
	int k;

	if (t == NULL || t->ssl != ssl)
		return;
	for (k = 0; k < 2 && strncmp(line, labels[k], strlen(labels[k])) != 0; k++)
		;
	if (k == 2 || (hex = strrchr(line, ' ')) == NULL)
		return;
	hex++;
	n = strlen(hex);
	if (n == 0 || n % 2 != 0 || n / 2 > OPD_TLS13_SECRET_MAX)
		return;
	if (t->secrets == NULL && (t->secrets = OPENSSL_zalloc(sizeof *t->secrets)) == NULL)
		return; /* no handoff: the SSL stays */
	t->secrets->len[k] = 0;
	if (opd_hex_decode(hex, t->secrets->s[k], n / 2) == 0)
		t->secrets->len[k] = (uint8_t)(n / 2);
}

int opd_tls_ctx_new(const struct opd_tls_config *cfg, struct opd_tls_ctx **out, char *errmsg)
{
	struct opd_tls_ctx *c;
	const char *step = NULL;
	const X509 *cert;
	EVP_PKEY *key;
	char buf[256];
	struct tm tm;

	if (cfg->cert_file == NULL || cfg->key_file == NULL) {
		opd_errmsg_printf(errmsg, "a TLS listener needs both a certificate and a key file");
		return OPD_EINVAL;
	}
	if (cfg->verify != OPD_TLS_VERIFY_OFF && cfg->client_ca_file == NULL) {
		opd_errmsg_printf(errmsg, "client certificates (%s) need a client CA file",
				  opd_tls_verify_name(cfg->verify));
		return OPD_EINVAL;
	}
	c = opd_xcalloc(1, sizeof *c);
	c->refs = 1;
	c->verify = cfg->verify;
	ERR_clear_error();
	c->ssl = SSL_CTX_new(TLS_server_method());
	if (c->ssl == NULL) {
		step = "SSL_CTX_new";
		goto fail;
	}
	SSL_CTX_set_security_level(c->ssl, 2); /* RSA and DH keys of 2048 bits at least */
	if (SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(c->ssl, 0) != 1 ||
	    SSL_CTX_set_cipher_list(c->ssl, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set1_groups_list(c->ssl, TLS_GROUPS) != 1) {
		step = "TLS parameters";
		goto fail;
	}
	SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_ECDH_USE);
	/* Idle connections hold no 16 KiB record buffers: thousands of agents sit idle. */
	SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	/* Tickets are stateless; a server-side cache would grow with the fleet. */
	SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(c->ssl, (const unsigned char *)"opampd", 6);
	/*
	 * No TLS 1.3 session tickets: OpenSSL would send them under the server's
	 * application key after the handshake, and the record layer that takes
	 * over then (handoff()) must start at write sequence 0. TLS 1.3 clients
	 * therefore always make a full handshake.
	 */
	SSL_CTX_set_num_tickets(c->ssl, 0);
	SSL_CTX_set_keylog_callback(c->ssl, keylog);
	if (SSL_CTX_use_certificate_chain_file(c->ssl, cfg->cert_file) != 1) {
		opd_errmsg_printf(errmsg, "%s: %s", cfg->cert_file, ssl_reason(buf, sizeof buf));
		goto fail_msg;
	}
	if (SSL_CTX_use_PrivateKey_file(c->ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
		opd_errmsg_printf(errmsg, "%s: %s", cfg->key_file, ssl_reason(buf, sizeof buf));
		goto fail_msg;
	}
	if (SSL_CTX_check_private_key(c->ssl) != 1) {
		opd_errmsg_printf(errmsg, "%s does not match the certificate in %s", cfg->key_file,
				  cfg->cert_file);
		ERR_clear_error();
		goto fail_msg;
	}
	if (cfg->verify != OPD_TLS_VERIFY_OFF) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca_file);

		if (names == NULL ||
		    SSL_CTX_load_verify_locations(c->ssl, cfg->client_ca_file, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			opd_errmsg_printf(errmsg, "%s: %s", cfg->client_ca_file,
					  ERR_peek_error() ? ssl_reason(buf, sizeof buf)
							   : "no certificate in the file");
			goto fail_msg;
		}
		SSL_CTX_set_client_CA_list(c->ssl, names);
		SSL_CTX_set_verify(c->ssl,
				   SSL_VERIFY_PEER | (cfg->verify == OPD_TLS_VERIFY_REQUIRED
							  ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
							  : 0),
				   NULL);
		SSL_CTX_set_verify_depth(c->ssl, VERIFY_DEPTH);
		/* A resumed session skips the chain check: an expired certificate would pass. */
		SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(c->ssl, 0);
	}
	cert = SSL_CTX_get0_certificate(c->ssl);
	key = SSL_CTX_get0_privatekey(c->ssl);
	x509_fingerprint(cert, c->fingerprint);
	x509_subject(cert, c->subject, sizeof c->subject);
	snprintf(c->key_type, sizeof c->key_type, "%s",
		 key != NULL && EVP_PKEY_get0_type_name(key) != NULL ? EVP_PKEY_get0_type_name(key)
								     : "?");
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
		c->not_after = (int64_t)timegm(&tm);
	*out = c;
	return 0;
fail:
	opd_errmsg_printf(errmsg, "%s: %s", step, ssl_reason(buf, sizeof buf));
fail_msg:
	ERR_clear_error();
	SSL_CTX_free(c->ssl);
	free(c);
	return OPD_EINVAL;
}

struct opd_tls_ctx *opd_tls_ctx_ref(struct opd_tls_ctx *ctx)
{
	ctx->refs++;
	return ctx;
}

void opd_tls_ctx_unref(struct opd_tls_ctx *ctx)
{
	if (ctx == NULL || --ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

const char *opd_tls_ctx_fingerprint(const struct opd_tls_ctx *ctx)
{
	return ctx->fingerprint;
}

const char *opd_tls_ctx_subject(const struct opd_tls_ctx *ctx)
{
	return ctx->subject;
}

const char *opd_tls_ctx_key_type(const struct opd_tls_ctx *ctx)
{
	return ctx->key_type;
}

int64_t opd_tls_ctx_not_after(const struct opd_tls_ctx *ctx)
{
	return ctx->not_after;
}

enum opd_tls_verify opd_tls_ctx_verify(const struct opd_tls_ctx *ctx)
{
	return ctx->verify;
}

/* A fresh memory BIO; reading it empty means "retry later", not EOF. */
static BIO *mem_bio(void)
{
	BIO *b = BIO_new(BIO_s_mem());

	if (b != NULL)
		BIO_set_mem_eof_return(b, -1);
	return b;
}

/*
 * Allocated by OpenSSL's allocator (and wiped when freed): the struct holds
 * traffic keys once the record layer is ours.
 */
int opd_tls_new(struct opd_tls_ctx *ctx, struct opd_tls **out)
{
	struct opd_tls *t = OPENSSL_zalloc(sizeof *t);
	BIO *rbio = mem_bio(), *wbio = mem_bio();

	if (t != NULL)
		t->ssl = SSL_new(ctx->ssl);
	if (t == NULL || t->ssl == NULL || rbio == NULL || wbio == NULL) {
		BIO_free(rbio);
		BIO_free(wbio);
		if (t != NULL)
			SSL_free(t->ssl);
		OPENSSL_free(t);
		ERR_clear_error();
		return OPD_ENOMEM;
	}
	SSL_set_bio(t->ssl, rbio, wbio); /* the SSL owns both from here */
	SSL_set_app_data(t->ssl, t);     /* for keylog() */
	SSL_set_accept_state(t->ssl);
	t->rec.why = "";
	t->ctx = opd_tls_ctx_ref(ctx);
	*out = t;
	return 0;
}

static void drop_secrets(struct opd_tls *t)
{
	OPENSSL_clear_free(t->secrets, sizeof *t->secrets);
	t->secrets = NULL;
}

void opd_tls_free(struct opd_tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	drop_secrets(t);
	OPENSSL_free(t->peer);
	opd_tls13_record_fini(&t->rec);
	opd_tls_ctx_unref(t->ctx);
	OPENSSL_clear_free(t, sizeof *t);
}

/*
 * A drained memory BIO keeps its largest buffer (up to a 64 KiB read); a
 * fresh one holds nothing. Swapping costs a few small allocations per
 * message, and an idle connection keeps no buffer at all.
 */
static void release_bio(struct opd_tls *t, bool read_side)
{
	BIO *b = read_side ? SSL_get_rbio(t->ssl) : SSL_get_wbio(t->ssl), *fresh;
	BUF_MEM *bm = NULL;

	if (b == NULL || BIO_ctrl_pending(b) != 0)
		return;
	BIO_get_mem_ptr(b, &bm);
	if (bm == NULL || bm->max == 0)
		return;
	fresh = mem_bio();
	if (fresh == NULL)
		return; /* keep the old one: still correct, only bigger */
	if (read_side)
		SSL_set0_rbio(t->ssl, fresh);
	else
		SSL_set0_wbio(t->ssl, fresh);
}

int opd_tls_push_cipher(struct opd_tls *t, const uint8_t *p, size_t n)
{
	if (t->handed_off) {
		opd_tls13_record_push_cipher(&t->rec, p, n);
		return 0;
	}
	while (n > 0) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;
		int w = BIO_write(SSL_get_rbio(t->ssl), p, chunk);

		if (w <= 0) {
			ERR_clear_error();
			return OPD_ENOMEM;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void fail(struct opd_tls *t)
{
	char buf[128];
	const char *why = ssl_reason(buf, sizeof buf);
	long vr = SSL_get_verify_result(t->ssl);

	t->failed = true;
	/* A refused client certificate: say what was wrong with it. */
	if (vr != X509_V_OK)
		snprintf(t->errmsg, sizeof t->errmsg, "%s: %s", why,
			 X509_verify_cert_error_string(vr));
	else
		snprintf(t->errmsg, sizeof t->errmsg, "%s", why);
}

/* The record layer failed after the handoff (its alert, if any, is queued). */
static void record_failed(struct opd_tls *t)
{
	t->failed = true;
	if (t->rec.peer_alert != 0)
		snprintf(t->errmsg, sizeof t->errmsg, "peer sent alert: %s",
			 SSL_alert_desc_string_long(t->rec.peer_alert));
	else
		snprintf(t->errmsg, sizeof t->errmsg, "%s",
			 t->rec.why[0] != '\0' ? t->rec.why : "protocol is shutdown");
}

/* The verified peer certificate of a connection that still has its SSL, or NULL. */
static X509 *verified_peer(const struct opd_tls *t)
{
	X509 *x;

	if (!t->done || t->failed || t->ssl == NULL)
		return NULL;
	x = SSL_get0_peer_certificate(t->ssl);
	if (x == NULL || SSL_get_verify_result(t->ssl) != X509_V_OK)
		return NULL;
	return x;
}

static int cert_uid(X509 *x, uint8_t uid[16]);

/*
 * Before the SSL goes: keep what opd_tls_peer_* answer about a verified
 * client certificate. Returns 0 or OPD_ENOMEM.
 */
static int keep_peer_facts(struct opd_tls *t)
{
	X509 *x = verified_peer(t);
	struct peer_facts *f;
	char subject[PEER_SUBJECT_MAX];
	unsigned int len = 0;
	size_t slen;

	if (x == NULL)
		return 0;
	x509_subject(x, subject, sizeof subject);
	slen = strlen(subject);
	f = OPENSSL_zalloc(sizeof *f + slen + 1);
	if (f == NULL)
		return OPD_ENOMEM;
	f->has_fingerprint = X509_digest(x, EVP_sha256(), f->fingerprint, &len) == 1 && len == 32;
	f->uid_rc = cert_uid(x, f->uid);
	memcpy(f->subject, subject, slen + 1);
	t->peer = f;
	return 0;
}

/* Move what the client sent after its Finished (still in the read BIO) to the record layer. */
static void move_input(struct opd_tls *t)
{
	BIO *b = SSL_get_rbio(t->ssl);
	uint8_t buf[4096];
	int n;

	while ((n = BIO_read(b, buf, sizeof buf)) > 0)
		opd_tls13_record_push_cipher(&t->rec, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof buf);
}

/*
 * The handshake just completed: on TLS 1.3 with one of the three suites,
 * take the record layer over from OpenSSL and free the SSL. Only when that
 * is exact: OpenSSL holds no record it read ahead, has written nothing we
 * have not handed out (no tickets, so our write sequence starts at 0), and
 * both traffic secrets came through the key log. Otherwise the SSL stays:
 * always correct, only bigger.
 */
static void handoff(struct opd_tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	struct secrets *s = t->secrets;
	enum opd_tls13_suite suite;
	size_t len;

	if (SSL_version(t->ssl) != TLS1_3_VERSION || c == NULL ||
	    opd_tls13_suite_from_iana(SSL_CIPHER_get_protocol_id(c), &suite) != 0)
		goto keep;
	len = opd_tls13_secret_len(suite);
	if (s == NULL || s->len[0] != len || s->len[1] != len)
		goto keep;
	if (SSL_has_pending(t->ssl) || SSL_get_read_ahead(t->ssl) ||
	    BIO_ctrl_pending(SSL_get_wbio(t->ssl)) != 0 || SSL_get_num_tickets(t->ssl) != 0)
		goto keep;
	if (keep_peer_facts(t) != 0)
		goto keep;
	/* Server side: we read with the client's secret and write with ours. */
	if (opd_tls13_record_init(&t->rec, suite, s->s[0], s->s[1]) != 0) {
		OPENSSL_free(t->peer);
		t->peer = NULL;
		t->rec.why = "";
		goto keep;
	}
	move_input(t);
	SSL_free(t->ssl);
	t->ssl = NULL;
	t->handed_off = true;
keep:
	drop_secrets(t);
	ERR_clear_error();
}

static ssize_t record_pull(struct opd_tls *t, uint8_t *p, size_t cap)
{
	ssize_t n = opd_tls13_record_pull_plain(&t->rec, p, cap);

	if (n == OPD_EPROTO)
		record_failed(t);
	else if (n == 0)
		t->peer_closed = true;
	return n;
}

/* What SSL_do_handshake or SSL_read returning n <= 0 means for opd_tls_pull_plain. */
static ssize_t ssl_status(struct opd_tls *t, int n)
{
	switch (SSL_get_error(t->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		release_bio(t, true);
		return OPD_EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		t->peer_closed = true;
		return 0;
	default:
		fail(t);
		return OPD_EPROTO;
	}
}

ssize_t opd_tls_pull_plain(struct opd_tls *t, uint8_t *p, size_t cap)
{
	int n;

	if (t->failed)
		return OPD_EPROTO;
	if (t->handed_off)
		return record_pull(t, p, cap);
	if (t->peer_closed)
		return 0;
	ERR_clear_error();
	if (!t->done) {
		/*
		 * The handshake on its own: SSL_read would go on to decrypt the
		 * records that follow the client's Finished, which are the record
		 * layer's after a handoff.
		 */
		n = SSL_do_handshake(t->ssl);
		if (n != 1)
			return ssl_status(t, n);
		t->done = true;
		handoff(t);
		if (t->handed_off)
			return record_pull(t, p, cap);
	}
	n = SSL_read(t->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
	if (n > 0)
		return n;
	return ssl_status(t, n);
}

int opd_tls_push_plain(struct opd_tls *t, const uint8_t *p, size_t n)
{
	if (t->failed)
		return OPD_EPROTO;
	if (!t->done)
		return OPD_EAGAIN;
	if (t->handed_off) {
		if (n > 0 && opd_tls13_record_push_plain(&t->rec, p, n) != 0) {
			record_failed(t);
			return OPD_EPROTO;
		}
		return 0;
	}
	ERR_clear_error();
	while (n > 0) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;
		int w = SSL_write(t->ssl, p, chunk);

		if (w <= 0) {
			fail(t);
			return OPD_EPROTO;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

size_t opd_tls_pull_cipher(struct opd_tls *t, struct opd_buf *out)
{
	BIO *b;
	size_t pending, total = 0;

	if (t->handed_off)
		return opd_tls13_record_pull_cipher(&t->rec, out);
	b = SSL_get_wbio(t->ssl);
	while ((pending = BIO_ctrl_pending(b)) > 0) {
		int chunk = pending > INT_MAX ? INT_MAX : (int)pending;
		int n = BIO_read(b, opd_buf_reserve(out, (size_t)chunk), chunk);

		if (n <= 0)
			break;
		opd_buf_commit(out, (size_t)n);
		total += (size_t)n;
	}
	release_bio(t, false);
	return total;
}

void opd_tls_shutdown(struct opd_tls *t)
{
	if (t->shut || t->failed || !t->done)
		return;
	t->shut = true;
	if (t->handed_off) {
		opd_tls13_record_close(&t->rec);
		return;
	}
	/* Queues close_notify; the peer's answer is not awaited (we close the socket next). */
	SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool opd_tls_handshake_done(const struct opd_tls *t)
{
	return t->done;
}

bool opd_tls_handed_off(const struct opd_tls *t)
{
	return t->handed_off;
}

const char *opd_tls_errmsg(const struct opd_tls *t)
{
	return t->errmsg;
}

const char *opd_tls_version(const struct opd_tls *t)
{
	if (t->handed_off)
		return "TLSv1.3";
	return t->done ? SSL_get_version(t->ssl) : "";
}

const char *opd_tls_cipher(const struct opd_tls *t)
{
	const char *c;

	if (t->handed_off)
		return opd_tls13_suite_name((enum opd_tls13_suite)t->rec.suite);
	c = t->done ? SSL_get_cipher_name(t->ssl) : NULL;
	return c != NULL ? c : "";
}

/* The facts kept at the handoff, when the connection has not failed since. */
static const struct peer_facts *kept_peer(const struct opd_tls *t)
{
	return t->handed_off && !t->failed ? t->peer : NULL;
}

bool opd_tls_peer_verified(const struct opd_tls *t)
{
	return kept_peer(t) != NULL || verified_peer(t) != NULL;
}

int opd_tls_peer_subject(const struct opd_tls *t, char *out, size_t cap)
{
	const struct peer_facts *f = kept_peer(t);
	X509 *x = verified_peer(t);

	if (f != NULL) {
		snprintf(out, cap, "%s", f->subject);
		return 0;
	}
	if (x == NULL)
		return OPD_ENOTFOUND;
	x509_subject(x, out, cap);
	return 0;
}

int opd_tls_peer_fingerprint(const struct opd_tls *t, char out[65])
{
	const struct peer_facts *f = kept_peer(t);
	X509 *x = verified_peer(t);

	if (f != NULL) {
		if (!f->has_fingerprint)
			return OPD_ENOTFOUND;
		opd_hex_encode(f->fingerprint, 32, out);
		return 0;
	}
	if (x == NULL)
		return OPD_ENOTFOUND;
	x509_fingerprint(x, out);
	return out[0] != '\0' ? 0 : OPD_ENOTFOUND;
}

/*
 * One candidate name (not NUL-terminated, may hold anything a CA put there)
 * that may be a uid. Returns 1 and sets uid when it parses, 0 when not.
 */
static int name_uid(const unsigned char *p, int len, uint8_t uid[16])
{
	char s[40];

	if (len != 32 && len != 36)
		return 0;
	memcpy(s, p, (size_t)len);
	s[len] = '\0';
	if (strlen(s) != (size_t)len) /* an embedded NUL */
		return 0;
	return opd_uid_parse(s, uid) == 0;
}

/* Record one more uid the certificate names. 0, or OPD_ECONFLICT when it names another. */
static int add_uid(uint8_t have[16], bool *found, const uint8_t uid[16])
{
	if (*found && memcmp(have, uid, 16) != 0)
		return OPD_ECONFLICT;
	memcpy(have, uid, 16);
	*found = true;
	return 0;
}

/* The uid certificate x names (see opd_tls_peer_uid). */
static int cert_uid(X509 *x, uint8_t uid[16])
{
	static const char prefix[] = OPD_TLS_AGENT_URI_PREFIX;
	const size_t plen = sizeof prefix - 1;
	GENERAL_NAMES *sans;
	X509_NAME *subject;
	uint8_t have[16], u[16];
	bool found = false;
	int rc = 0, i = -1;

	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; sans != NULL && k < sk_GENERAL_NAME_num(sans) && rc == 0; k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
		const unsigned char *p;
		int len;

		if (g->type != GEN_URI)
			continue;
		p = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		/* URN scheme and namespace compare case-insensitively (RFC 8141). */
		if (len > (int)plen && strncasecmp((const char *)p, prefix, plen) == 0 &&
		    name_uid(p + plen, len - (int)plen, u))
			rc = add_uid(have, &found, u);
	}
	GENERAL_NAMES_free(sans);
	subject = X509_get_subject_name(x);
	while (rc == 0 && (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0) {
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8, d);

		if (len > 0 && name_uid(utf8, len, u))
			rc = add_uid(have, &found, u);
		OPENSSL_free(utf8);
	}
	if (rc != 0)
		return rc;
	if (!found)
		return OPD_ENOTFOUND;
	memcpy(uid, have, 16);
	return 0;
}

int opd_tls_peer_uid(const struct opd_tls *t, uint8_t uid[16])
{
	const struct peer_facts *f = kept_peer(t);
	X509 *x;

	if (f != NULL) {
		if (f->uid_rc == 0)
			memcpy(uid, f->uid, 16);
		return f->uid_rc;
	}
	x = verified_peer(t);
	return x != NULL ? cert_uid(x, uid) : OPD_ENOTFOUND;
}

/* ---- bearer tokens ---- */

static void token_digest(const char *tok, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(tok, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		abort(); /* SHA-256 cannot fail short of memory exhaustion */
}

/* RFC 6750 b64token, a little wider: any visible ASCII character. */
static bool token_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

int opd_tls_tokens_load(struct opd_tls_tokens *t, const char *path, char *errmsg)
{
	struct opd_tls_tokens nt = {0};
	char line[OPD_TLS_TOKEN_MAX_LEN + 8];
	size_t cap = 0;
	int lineno = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		opd_errmsg_printf(errmsg, "%s: %s", path, strerror(errno));
		return OPD_EINVAL;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = line, *end;
		size_t len;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			opd_errmsg_printf(errmsg, "%s:%d: token longer than %d characters", path,
					  lineno, OPD_TLS_TOKEN_MAX_LEN);
			goto fail;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p &&
		       (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			end--;
		len = (size_t)(end - p);
		if (len == 0 || *p == '#')
			continue;
		if (len > OPD_TLS_TOKEN_MAX_LEN || !token_chars_ok(p, len)) {
			opd_errmsg_printf(errmsg,
					  "%s:%d: a token is 1 to %d visible ASCII characters "
					  "without blanks",
					  path, lineno, OPD_TLS_TOKEN_MAX_LEN);
			goto fail;
		}
		if (nt.n == OPD_TLS_TOKENS_MAX) {
			opd_errmsg_printf(errmsg, "%s: more than %d tokens", path,
					  OPD_TLS_TOKENS_MAX);
			goto fail;
		}
		if (nt.n == cap) {
			cap = cap ? cap * 2 : 16;
			nt.digest = opd_xrealloc(nt.digest, cap * sizeof nt.digest[0]);
		}
		token_digest(p, len, nt.digest[nt.n++]);
		OPENSSL_cleanse(line, sizeof line);
	}
	if (ferror(f)) {
		opd_errmsg_printf(errmsg, "%s: read error", path);
		goto fail;
	}
	if (nt.n == 0) {
		opd_errmsg_printf(errmsg, "%s: no token in the file", path);
		goto fail;
	}
	fclose(f);
	*t = nt;
	return 0;
fail:
	OPENSSL_cleanse(line, sizeof line);
	fclose(f);
	opd_tls_tokens_fini(&nt);
	return OPD_EINVAL;
}

void opd_tls_tokens_fini(struct opd_tls_tokens *t)
{
	free(t->digest);
	*t = (struct opd_tls_tokens){0};
}

bool opd_tls_tokens_check(const struct opd_tls_tokens *t, const char *authorization)
{
	const char *p = authorization;
	uint8_t d[32];
	size_t len;
	int match = 0;

	if (p == NULL || strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
		return false;
	p += 6;
	while (*p == ' ' || *p == '\t')
		p++;
	len = strlen(p);
	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len == 0 || len > OPD_TLS_TOKEN_MAX_LEN)
		return false;
	token_digest(p, len, d);
	/* Every entry is compared, so the time taken says nothing about which one matched. */
	for (size_t i = 0; i < t->n; i++)
		match |= CRYPTO_memcmp(d, t->digest[i], sizeof d) == 0;
	return match != 0;
}
