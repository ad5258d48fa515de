#include "tls.h"

#include "err.h"
#include "hex.h"
#include "mem.h"

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

struct opd_tls {
	SSL *ssl;
	struct opd_tls_ctx *ctx; /* one reference */
	bool done;               /* handshake completed */
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

int opd_tls_new(struct opd_tls_ctx *ctx, struct opd_tls **out)
{
	struct opd_tls *t = opd_xcalloc(1, sizeof *t);
	BIO *rbio = mem_bio(), *wbio = mem_bio();

	t->ssl = SSL_new(ctx->ssl);
	if (t->ssl == NULL || rbio == NULL || wbio == NULL) {
		BIO_free(rbio);
		BIO_free(wbio);
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return OPD_ENOMEM;
	}
	SSL_set_bio(t->ssl, rbio, wbio); /* the SSL owns both from here */
	SSL_set_accept_state(t->ssl);
	t->ctx = opd_tls_ctx_ref(ctx);
	*out = t;
	return 0;
}

void opd_tls_free(struct opd_tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	opd_tls_ctx_unref(t->ctx);
	free(t);
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

ssize_t opd_tls_pull_plain(struct opd_tls *t, uint8_t *p, size_t cap)
{
	int n;

	if (t->failed)
		return OPD_EPROTO;
	if (t->peer_closed)
		return 0;
	ERR_clear_error();
	n = SSL_read(t->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
	if (!t->done && SSL_is_init_finished(t->ssl))
		t->done = true;
	if (n > 0)
		return n;
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

int opd_tls_push_plain(struct opd_tls *t, const uint8_t *p, size_t n)
{
	if (t->failed)
		return OPD_EPROTO;
	if (!t->done)
		return OPD_EAGAIN;
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
	BIO *b = SSL_get_wbio(t->ssl);
	size_t pending, total = 0;

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
	/* Queues close_notify; the peer's answer is not awaited (we close the socket next). */
	SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool opd_tls_handshake_done(const struct opd_tls *t)
{
	return t->done;
}

const char *opd_tls_errmsg(const struct opd_tls *t)
{
	return t->errmsg;
}

const char *opd_tls_version(const struct opd_tls *t)
{
	return t->done ? SSL_get_version(t->ssl) : "";
}

const char *opd_tls_cipher(const struct opd_tls *t)
{
	const char *c = t->done ? SSL_get_cipher_name(t->ssl) : NULL;

	return c != NULL ? c : "";
}

static X509 *verified_peer(const struct opd_tls *t)
{
	X509 *x;

	if (!t->done || t->failed)
		return NULL;
	x = SSL_get0_peer_certificate(t->ssl);
	if (x == NULL || SSL_get_verify_result(t->ssl) != X509_V_OK)
		return NULL;
	return x;
}

bool opd_tls_peer_verified(const struct opd_tls *t)
{
	return verified_peer(t) != NULL;
}

int opd_tls_peer_subject(const struct opd_tls *t, char *out, size_t cap)
{
	X509 *x = verified_peer(t);

	if (x == NULL)
		return OPD_ENOTFOUND;
	x509_subject(x, out, cap);
	return 0;
}

int opd_tls_peer_fingerprint(const struct opd_tls *t, char out[65])
{
	X509 *x = verified_peer(t);

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

int opd_tls_peer_uid(const struct opd_tls *t, uint8_t uid[16])
{
	static const char prefix[] = OPD_TLS_AGENT_URI_PREFIX;
	const size_t plen = sizeof prefix - 1;
	X509 *x = verified_peer(t);
	GENERAL_NAMES *sans;
	X509_NAME *subject;
	uint8_t have[16], u[16];
	bool found = false;
	int rc = 0, i = -1;

	if (x == NULL)
		return OPD_ENOTFOUND;
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
