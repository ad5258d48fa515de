/*
 * agentapi/tls.c through memory only: a client made here with plain OpenSSL
 * and the server side from tls.c exchange bytes by hand, no socket. Covers the
 * handshake (ECDSA and RSA), data both ways, refused protocol versions and
 * cipher suites, client certificates (required, optional, expired, another
 * CA, the instance_uid they name), context reload with reference counts, the
 * memory an idle connection keeps, and the bearer-token file.
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
#include "tls_pair.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture: a test CA, another CA, server and client certificates ---- */

static const char uid_hex[] = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
static const char uid_uuid[] = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
static const char other_uid_hex[] = "11112222333344445555666677778888";

struct env {
	char dir[200];
	char ca[300], other_ca[300];
	char srv_ec[300], srv_ec_key[300], srv_rsa[300], srv_rsa_key[300];
	char cli[300], cli_key[300];         /* CN = uid (hex) */
	char cli_uri[300], cli_uri_key[300]; /* CN = "agent", URI SAN with the uid (UUID form) */
	char cli_uuidcn[300], cli_uuidcn_key[300]; /* CN = uid (UUID form) */
	char cli_nouid[300], cli_nouid_key[300];   /* CN = "collector-7" */
	char cli_two[300], cli_two_key[300];       /* CN = uid, URI SAN = another uid */
	char cli_expired[300], cli_expired_key[300];
	char cli_future[300], cli_future_key[300];
	char cli_other[300], cli_other_key[300]; /* issued by the other CA */
	char srv_other[300], srv_other_key[300]; /* a second server certificate (reload) */
	char tokens[300];
};

static struct env E;

static void path(char *out, const char *name)
{
	snprintf(out, 300, "%s/%s", E.dir, name);
}

static void issue(struct opd_tca *ca, struct opd_tca_leaf leaf, char *cert, char *key,
		  const char *name)
{
	char n[64];

	snprintf(n, sizeof n, "%s.pem", name);
	path(cert, n);
	snprintf(n, sizeof n, "%s.key", name);
	path(key, n);
	assert_int_equal(opd_tca_issue(ca, &leaf, cert, key), 0);
}

static int group_setup(void **state)
{
	struct opd_tca ca, other;
	char uri[80], uri2[80];

	(void)state;
	if (opd_tca_tmpdir(E.dir, sizeof E.dir) != 0)
		return -1;
	if (opd_tca_init(&ca, "opampd test CA", OPD_TCA_EC) != 0 ||
	    opd_tca_init(&other, "some other CA", OPD_TCA_EC) != 0)
		return -1;
	path(E.ca, "ca.pem");
	path(E.other_ca, "other-ca.pem");
	if (opd_tca_write_ca(&ca, E.ca) != 0 || opd_tca_write_ca(&other, E.other_ca) != 0)
		return -1;
	snprintf(uri, sizeof uri, "%s%s", OPD_TLS_AGENT_URI_PREFIX, uid_uuid);
	snprintf(uri2, sizeof uri2, "%s%s", OPD_TLS_AGENT_URI_PREFIX, other_uid_hex);
	issue(&ca, (struct opd_tca_leaf){.cn = "localhost", .server = true}, E.srv_ec, E.srv_ec_key,
	      "srv-ec");
	issue(&ca, (struct opd_tca_leaf){.cn = "localhost", .server = true, .key = OPD_TCA_RSA},
	      E.srv_rsa, E.srv_rsa_key, "srv-rsa");
	issue(&ca, (struct opd_tca_leaf){.cn = "localhost", .server = true}, E.srv_other,
	      E.srv_other_key, "srv-other");
	issue(&ca, (struct opd_tca_leaf){.cn = uid_hex}, E.cli, E.cli_key, "cli");
	issue(&ca, (struct opd_tca_leaf){.cn = "agent", .uri_san = uri}, E.cli_uri, E.cli_uri_key,
	      "cli-uri");
	issue(&ca, (struct opd_tca_leaf){.cn = uid_uuid}, E.cli_uuidcn, E.cli_uuidcn_key,
	      "cli-uuidcn");
	issue(&ca, (struct opd_tca_leaf){.cn = "collector-7"}, E.cli_nouid, E.cli_nouid_key,
	      "cli-nouid");
	issue(&ca, (struct opd_tca_leaf){.cn = uid_hex, .uri_san = uri2}, E.cli_two, E.cli_two_key,
	      "cli-two");
	issue(
	    &ca,
	    (struct opd_tca_leaf){.cn = uid_hex, .not_before_s = -2 * 86400, .not_after_s = -86400},
	    E.cli_expired, E.cli_expired_key, "cli-expired");
	issue(&ca,
	      (struct opd_tca_leaf){.cn = uid_hex, .not_before_s = 86400, .not_after_s = 2 * 86400},
	      E.cli_future, E.cli_future_key, "cli-future");
	issue(&other, (struct opd_tca_leaf){.cn = uid_hex}, E.cli_other, E.cli_other_key,
	      "cli-other");
	opd_tca_fini(&ca);
	opd_tca_fini(&other);
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
	SSL_CTX *cctx;
	SSL *c;
	struct opd_tls_ctx *sctx;
	struct opd_tls *s;
	ssize_t last;        /* the server's last opd_tls_pull_plain result */
	bool client_failed;  /* the client's handshake or read failed */
	uint8_t got[300000]; /* plaintext the server received */
	size_t got_len;
};

static struct opd_tls_ctx *server_ctx(const char *cert, const char *key, enum opd_tls_verify v)
{
	return opd_tp_server_ctx(cert, key, E.ca, v);
}

static SSL_CTX *client_ctx(const char *cert, const char *key)
{
	return opd_tp_client_ctx(E.ca, cert, key);
}

static void pair_start(struct pair *p, SSL_CTX *cctx, struct opd_tls_ctx *sctx)
{
	memset(p, 0, sizeof *p);
	p->cctx = cctx;
	p->sctx = sctx;
	p->c = opd_tp_client(cctx);
	assert_int_equal(opd_tls_new(sctx, &p->s), 0);
}

static void pair_end(struct pair *p)
{
	SSL_free(p->c);
	SSL_CTX_free(p->cctx);
	opd_tls_free(p->s);
	opd_tls_ctx_unref(p->sctx);
}

/* Client ciphertext → server; server plaintext collected; server ciphertext → client. */
static bool move_once(struct pair *p)
{
	uint8_t buf[65536], tmp[16384];
	bool moved = false;
	int n;

	while ((n = BIO_read(SSL_get_wbio(p->c), buf, sizeof buf)) > 0) {
		assert_int_equal(opd_tls_push_cipher(p->s, buf, (size_t)n), 0);
		moved = true;
	}
	while ((p->last = opd_tls_pull_plain(p->s, tmp, sizeof tmp)) > 0) {
		assert_true(p->got_len + (size_t)p->last <= sizeof p->got);
		memcpy(p->got + p->got_len, tmp, (size_t)p->last);
		p->got_len += (size_t)p->last;
	}
	if (opd_tp_server_to_client(p->s, p->c, NULL) > 0)
		moved = true;
	return moved;
}

/* Run the handshake (and anything queued) until neither side has more to say. */
static void pump(struct pair *p)
{
	for (int round = 0; round < 20; round++) {
		if (!SSL_is_init_finished(p->c)) {
			int rc = SSL_do_handshake(p->c);

			if (rc <= 0 && SSL_get_error(p->c, rc) != SSL_ERROR_WANT_READ)
				p->client_failed = true;
		}
		if (!move_once(p))
			break;
	}
	ERR_clear_error();
}

/* Read what the server sent the client (after a pump). */
static size_t client_read(struct pair *p, uint8_t *buf, size_t cap)
{
	return opd_tp_client_read(p->c, buf, cap);
}

static void handshake_ok(struct pair *p)
{
	pump(p);
	if (!opd_tls_handshake_done(p->s) || p->last != OPD_EAGAIN)
		fail_msg("handshake failed: server \"%s\" client_failed=%d", opd_tls_errmsg(p->s),
			 p->client_failed);
	assert_true(SSL_is_init_finished(p->c));
}

/* The server refused the handshake; its reason contains want. */
static void handshake_refused(struct pair *p, const char *want)
{
	pump(p);
	/* TLS 1.3: the client is done before the server has checked its certificate. */
	if (SSL_is_init_finished(p->c) && p->last == OPD_EAGAIN) {
		uint8_t b[16];
		SSL_write(p->c, "x", 1);
		pump(p);
		client_read(p, b, sizeof b);
	}
	assert_int_equal(p->last, OPD_EPROTO);
	assert_false(opd_tls_handshake_done(p->s) && opd_tls_peer_verified(p->s));
	if (strstr(opd_tls_errmsg(p->s), want) == NULL)
		fail_msg("server error \"%s\" does not say \"%s\"", opd_tls_errmsg(p->s), want);
	/* Sticky. */
	assert_int_equal(opd_tls_push_plain(p->s, (const uint8_t *)"x", 1), OPD_EPROTO);
}

static void exchange_data(struct pair *p, size_t n)
{
	uint8_t *big = malloc(n), *back = malloc(n);

	assert_non_null(big);
	assert_non_null(back);
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	/* client → server */
	p->got_len = 0;
	assert_int_equal(SSL_write(p->c, big, (int)n), (int)n);
	pump(p);
	assert_int_equal(p->got_len, n);
	assert_memory_equal(p->got, big, n);
	assert_int_equal(p->last, OPD_EAGAIN);
	/* server → client */
	assert_int_equal(opd_tls_push_plain(p->s, big, n), 0);
	pump(p);
	assert_int_equal(client_read(p, back, n), n);
	assert_memory_equal(back, big, n);
	free(big);
	free(back);
}

/* ---- tests ---- */

static void handshake_ecdsa_tls13(void **state)
{
	struct pair p;
	char fp[65];

	(void)state;
	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	assert_false(opd_tls_handshake_done(p.s));
	assert_string_equal(opd_tls_version(p.s), "");
	/* Nothing to write before the handshake. */
	assert_int_equal(opd_tls_push_plain(p.s, (const uint8_t *)"early", 5), OPD_EAGAIN);
	handshake_ok(&p);
	assert_string_equal(opd_tls_version(p.s), "TLSv1.3");
	assert_string_equal(SSL_get_version(p.c), "TLSv1.3");
	assert_string_equal(opd_tls_ctx_key_type(p.sctx), "EC");
	assert_int_equal(opd_tca_fingerprint(E.srv_ec, fp), 0);
	assert_string_equal(opd_tls_ctx_fingerprint(p.sctx), fp);
	assert_non_null(strstr(opd_tls_ctx_subject(p.sctx), "CN=localhost"));
	assert_true(opd_tls_ctx_not_after(p.sctx) > 0);
	/* No client certificate asked for: nothing about the peer. */
	assert_false(opd_tls_peer_verified(p.s));
	assert_int_equal(opd_tls_peer_fingerprint(p.s, fp), OPD_ENOTFOUND);
	exchange_data(&p, 5);
	exchange_data(&p, 200000); /* many records both ways */
	pair_end(&p);
}

static void handshake_rsa_tls12_aead(void **state)
{
	struct pair p;
	SSL_CTX *c = client_ctx(NULL, NULL);
	const char *cipher;

	(void)state;
	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	pair_start(&p, c, server_ctx(E.srv_rsa, E.srv_rsa_key, OPD_TLS_VERIFY_OFF));
	handshake_ok(&p);
	assert_string_equal(opd_tls_version(p.s), "TLSv1.2");
	assert_string_equal(opd_tls_ctx_key_type(p.sctx), "RSA");
	cipher = opd_tls_cipher(p.s);
	if (strncmp(cipher, "ECDHE-RSA-", 10) != 0 ||
	    (strstr(cipher, "GCM") == NULL && strstr(cipher, "CHACHA20") == NULL))
		fail_msg("TLS 1.2 cipher %s is not ECDHE with an AEAD", cipher);
	exchange_data(&p, 70000);
	pair_end(&p);
}

static void tls12_cbc_refused(void **state)
{
	struct pair p;
	SSL_CTX *c = client_ctx(NULL, NULL);

	(void)state;
	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_set_cipher_list(c, "ECDHE-ECDSA-AES128-SHA:AES128-SHA"), 1);
	pair_start(&p, c, server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	handshake_refused(&p, "no shared cipher");
	pair_end(&p);
}

static void tls11_refused(void **state)
{
	struct pair p;
	SSL_CTX *c = client_ctx(NULL, NULL);

	(void)state;
	/* Let this client offer TLS 1.1 at all (OpenSSL 3 forbids it at the default level). */
	SSL_CTX_set_security_level(c, 0);
	assert_int_equal(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"), 1);
	SSL_CTX_set_min_proto_version(c, TLS1_1_VERSION);
	SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
	pair_start(&p, c, server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	handshake_refused(&p, "unsupported protocol");
	assert_true(p.client_failed);
	pair_end(&p);
}

static void client_cert_required(void **state)
{
	struct pair p;
	char subject[256], fp[65], want[65];
	uint8_t uid[16], expect[16];

	(void)state;
	/* No certificate: refused. */
	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_REQUIRED));
	handshake_refused(&p, "peer did not return a certificate");
	pair_end(&p);

	/* The right certificate: accepted, and bound to the uid in its CN. */
	pair_start(&p, client_ctx(E.cli, E.cli_key),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_REQUIRED));
	handshake_ok(&p);
	assert_true(opd_tls_peer_verified(p.s));
	assert_int_equal(opd_tls_peer_subject(p.s, subject, sizeof subject), 0);
	assert_non_null(strstr(subject, uid_hex));
	assert_int_equal(opd_tls_peer_fingerprint(p.s, fp), 0);
	assert_int_equal(opd_tca_fingerprint(E.cli, want), 0);
	assert_string_equal(fp, want);
	assert_int_equal(opd_tls_peer_uid(p.s, uid), 0);
	assert_int_equal(opd_hex_decode(uid_hex, expect, 16), 0);
	assert_memory_equal(uid, expect, 16);
	exchange_data(&p, 1000);
	pair_end(&p);
}

static void client_cert_optional(void **state)
{
	struct pair p;
	uint8_t uid[16];

	(void)state;
	/* No certificate: accepted, bound to nothing. */
	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OPTIONAL));
	handshake_ok(&p);
	assert_false(opd_tls_peer_verified(p.s));
	assert_int_equal(opd_tls_peer_uid(p.s, uid), OPD_ENOTFOUND);
	exchange_data(&p, 10);
	pair_end(&p);

	/* A good certificate: verified. */
	pair_start(&p, client_ctx(E.cli, E.cli_key),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OPTIONAL));
	handshake_ok(&p);
	assert_true(opd_tls_peer_verified(p.s));
	assert_int_equal(opd_tls_peer_uid(p.s, uid), 0);
	pair_end(&p);

	/* Presented but bad: refused even though certificates are optional. */
	pair_start(&p, client_ctx(E.cli_expired, E.cli_expired_key),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OPTIONAL));
	handshake_refused(&p, "certificate has expired");
	pair_end(&p);
}

static void bad_client_certs_refused(void **state)
{
	static const struct {
		size_t cert, key; /* offsets into E */
		const char *why;
	} cases[] = {
	    {offsetof(struct env, cli_expired), offsetof(struct env, cli_expired_key),
	     "certificate has expired"},
	    {offsetof(struct env, cli_future), offsetof(struct env, cli_future_key),
	     "certificate is not yet valid"},
	    {offsetof(struct env, cli_other), offsetof(struct env, cli_other_key),
	     "unable to get local issuer certificate"},
	};
	struct pair p;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *cert = (const char *)&E + cases[i].cert;
		const char *key = (const char *)&E + cases[i].key;

		pair_start(&p, client_ctx(cert, key),
			   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_REQUIRED));
		handshake_refused(&p, cases[i].why);
		pair_end(&p);
	}
}

/* The server certificate from another CA: the client refuses (the server sees the alert). */
static void client_refuses_unknown_server(void **state)
{
	struct pair p;
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	(void)state;
	assert_int_equal(SSL_CTX_load_verify_locations(c, E.other_ca, NULL), 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	pair_start(&p, c, server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	pump(&p);
	assert_true(p.client_failed);
	assert_int_equal(p.last, OPD_EPROTO);
	assert_non_null(strstr(opd_tls_errmsg(p.s), "unknown ca"));
	pair_end(&p);
}

static void uid_forms(void **state)
{
	static const struct {
		size_t cert, key;
		int rc;
	} cases[] = {
	    {offsetof(struct env, cli_uri), offsetof(struct env, cli_uri_key), 0},
	    {offsetof(struct env, cli_uuidcn), offsetof(struct env, cli_uuidcn_key), 0},
	    {offsetof(struct env, cli_nouid), offsetof(struct env, cli_nouid_key), OPD_ENOTFOUND},
	    {offsetof(struct env, cli_two), offsetof(struct env, cli_two_key), OPD_ECONFLICT},
	};
	uint8_t expect[16];

	(void)state;
	assert_int_equal(opd_hex_decode(uid_hex, expect, 16), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pair p;
		uint8_t uid[16] = {0};

		pair_start(
		    &p,
		    client_ctx((const char *)&E + cases[i].cert, (const char *)&E + cases[i].key),
		    server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_REQUIRED));
		handshake_ok(&p);
		assert_int_equal(opd_tls_peer_uid(p.s, uid), cases[i].rc);
		if (cases[i].rc == 0)
			assert_memory_equal(uid, expect, 16);
		pair_end(&p);
	}
}

/*
 * A reload swaps the context: connections made before keep theirs (and work),
 * new ones present the new certificate; the old context goes with its last
 * connection.
 */
static void reload_keeps_old_connections(void **state)
{
	struct opd_tls_ctx *old = server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF);
	struct opd_tls_ctx *fresh = server_ctx(E.srv_other, E.srv_other_key, OPD_TLS_VERIFY_OFF);
	struct pair before, after;
	char want[65];
	unsigned char md[32];
	unsigned int len = 0;

	(void)state;
	pair_start(&before, client_ctx(NULL, NULL), opd_tls_ctx_ref(old));
	handshake_ok(&before);
	/* The listener drops the old context and takes the new one. */
	opd_tls_ctx_unref(old);
	pair_start(&after, client_ctx(NULL, NULL), opd_tls_ctx_ref(fresh));
	handshake_ok(&after);
	exchange_data(&before, 3000);
	exchange_data(&after, 3000);
	assert_int_equal(X509_digest(SSL_get0_peer_certificate(after.c), EVP_sha256(), md, &len),
			 1);
	opd_hex_encode(md, 32, want);
	assert_string_equal(want, opd_tls_ctx_fingerprint(fresh));
	assert_string_not_equal(opd_tls_ctx_fingerprint(fresh), opd_tls_ctx_fingerprint(old));
	pair_end(&before); /* the last reference to the old context */
	pair_end(&after);
	opd_tls_ctx_unref(fresh);
}

static void close_notify_both_ways(void **state)
{
	struct pair p;
	uint8_t b[8];

	(void)state;
	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	handshake_ok(&p);
	opd_tls_shutdown(p.s);
	opd_tls_shutdown(p.s); /* idempotent */
	pump(&p);
	assert_int_equal(SSL_read(p.c, b, sizeof b), 0);
	assert_int_equal(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
	SSL_shutdown(p.c);
	pump(&p);
	assert_int_equal(p.last, 0);
	assert_int_equal(opd_tls_pull_plain(p.s, b, sizeof b), 0);
	pair_end(&p);
}

/* Move every pending byte from one memory-BIO SSL to the other. */
static bool raw_move(SSL *from, SSL *to)
{
	uint8_t buf[65536];
	bool moved = false;
	int n;

	while ((n = BIO_read(SSL_get_wbio(from), buf, sizeof buf)) > 0) {
		assert_int_equal(BIO_write(SSL_get_rbio(to), buf, n), n);
		moved = true;
	}
	return moved;
}

/*
 * The same idle connection made with OpenSSL's defaults (no release of the
 * record buffers, memory BIOs keeping their high-water mark): what tls.c
 * saves. Returns the bytes freed with the idle server SSL.
 */
static long long default_idle_bytes(size_t n)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = client_ctx(NULL, NULL);
	SSL *s, *c;
	uint8_t *data = malloc(n), *back = malloc(n);
	long long before;
	size_t got = 0;
	int r;

	assert_non_null(data);
	assert_non_null(back);
	memset(data, 'x', n);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(sctx, E.srv_ec), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, E.srv_ec_key, SSL_FILETYPE_PEM), 1);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	SSL_set_bio(s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	BIO_set_mem_eof_return(SSL_get_rbio(s), -1);
	BIO_set_mem_eof_return(SSL_get_rbio(c), -1);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 20 && !(SSL_is_init_finished(s) && SSL_is_init_finished(c)); i++) {
		SSL_do_handshake(c);
		raw_move(c, s);
		SSL_do_handshake(s);
		raw_move(s, c);
	}
	assert_true(SSL_is_init_finished(s));
	assert_int_equal(SSL_write(c, data, (int)n), (int)n);
	raw_move(c, s);
	while (got < n && (r = SSL_read(s, back + got, (int)(n - got))) > 0)
		got += (size_t)r;
	assert_int_equal(got, n);
	assert_int_equal(SSL_write(s, data, (int)n), (int)n);
	raw_move(s, c);
	for (got = 0; got < n && (r = SSL_read(c, back + got, (int)(n - got))) > 0;)
		got += (size_t)r;
	assert_int_equal(got, n);
	ERR_clear_error();
	before = opd_ossl_live_bytes();
	SSL_free(s);
	before -= opd_ossl_live_bytes();
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(data);
	free(back);
	return before;
}

/* Bytes freed with p's server connection. */
static long long server_held(struct pair *p)
{
	long long before = opd_ossl_live_bytes();

	opd_tls_free(p->s);
	p->s = NULL;
	return before - opd_ossl_live_bytes();
}

/*
 * SSL_MODE_RELEASE_BUFFERS and the memory-BIO swap: an idle connection keeps
 * neither OpenSSL's record buffers (16 KiB and more each way) nor the memory
 * BIOs' high-water mark. Traffic leaves nothing behind: an idle connection
 * after 100 KB both ways holds what it held right after the handshake.
 */
static void release_buffers_idle(void **state)
{
	struct pair p;
	long long after_handshake, after_traffic, defaults;

	(void)state;
	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	handshake_ok(&p);
	after_handshake = server_held(&p);
	pair_end(&p);

	pair_start(&p, client_ctx(NULL, NULL),
		   server_ctx(E.srv_ec, E.srv_ec_key, OPD_TLS_VERIFY_OFF));
	handshake_ok(&p);
	exchange_data(&p, 100000); /* full records, 64 KiB through each BIO */
	assert_int_equal(p.last, OPD_EAGAIN);
	after_traffic = server_held(&p);
	pair_end(&p);

	defaults = default_idle_bytes(100000);
	printf("idle TLS 1.3 server connection, OpenSSL heap: %lld bytes after the handshake, "
	       "%lld after 100 KB each way; %lld with OpenSSL's defaults\n",
	       after_handshake, after_traffic, defaults);
	assert_true(after_traffic > 0);
	assert_true(after_traffic <= after_handshake + 256);
	assert_true(after_traffic < 16 * 1024);
	assert_true(defaults > after_traffic + 32 * 1024);
}

static void ctx_errors(void **state)
{
	struct opd_tls_ctx *ctx = NULL;
	char err[OPD_ERRMSG_SIZE], missing[320];
	struct opd_tls_config cfg = {E.srv_ec, E.srv_ec_key, NULL, OPD_TLS_VERIFY_REQUIRED};
	enum opd_tls_verify v;

	(void)state;
	assert_int_equal(opd_tls_ctx_new(&cfg, &ctx, err), OPD_EINVAL);
	assert_non_null(strstr(err, "client CA"));
	snprintf(missing, sizeof missing, "%s/nope.pem", E.dir);
	cfg = (struct opd_tls_config){missing, E.srv_ec_key, NULL, OPD_TLS_VERIFY_OFF};
	assert_int_equal(opd_tls_ctx_new(&cfg, &ctx, err), OPD_EINVAL);
	assert_non_null(strstr(err, "nope.pem"));
	cfg = (struct opd_tls_config){E.srv_ec, E.srv_rsa_key, NULL, OPD_TLS_VERIFY_OFF};
	assert_int_equal(opd_tls_ctx_new(&cfg, &ctx, err), OPD_EINVAL);
	assert_non_null(strstr(err, "does not match"));
	cfg = (struct opd_tls_config){E.srv_ec, E.srv_ec_key, missing, OPD_TLS_VERIFY_OPTIONAL};
	assert_int_equal(opd_tls_ctx_new(&cfg, &ctx, err), OPD_EINVAL);
	assert_non_null(strstr(err, "nope.pem"));
	assert_null(ctx);
	assert_int_equal(opd_tls_verify_parse("required", &v), 0);
	assert_int_equal(v, OPD_TLS_VERIFY_REQUIRED);
	assert_int_equal(opd_tls_verify_parse("Required", &v), OPD_EINVAL);
	assert_string_equal(opd_tls_verify_name(OPD_TLS_VERIFY_OPTIONAL), "optional");
}

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void tokens(void **state)
{
	struct opd_tls_tokens t = {0}, keep;
	char p[320], err[OPD_ERRMSG_SIZE], line[700];

	(void)state;
	snprintf(p, sizeof p, "%s/tokens", E.dir);
	write_file(p, "# agent tokens\n\n  tok-one-123  \r\ntok/two+=\n\t# indented comment\n");
	assert_int_equal(opd_tls_tokens_load(&t, p, err), 0);
	assert_int_equal(t.n, 2);
	assert_true(opd_tls_tokens_check(&t, "Bearer tok-one-123"));
	assert_true(opd_tls_tokens_check(&t, "bearer   tok/two+=  "));
	assert_false(opd_tls_tokens_check(&t, "Bearer tok-one-12"));
	assert_false(opd_tls_tokens_check(&t, "Bearer tok-one-1234"));
	assert_false(opd_tls_tokens_check(&t, "Basic tok-one-123"));
	assert_false(opd_tls_tokens_check(&t, "Bearertok-one-123"));
	assert_false(opd_tls_tokens_check(&t, "Bearer "));
	assert_false(opd_tls_tokens_check(&t, "# agent tokens"));
	assert_false(opd_tls_tokens_check(&t, NULL));

	/* Bad files leave the loaded tokens alone. */
	keep = t;
	write_file(p, "# nothing\n\n");
	assert_int_equal(opd_tls_tokens_load(&t, p, err), OPD_EINVAL);
	assert_non_null(strstr(err, "no token"));
	write_file(p, "ok\nhas space\n");
	assert_int_equal(opd_tls_tokens_load(&t, p, err), OPD_EINVAL);
	assert_non_null(strstr(err, ":2:"));
	memset(line, 'a', sizeof line - 2);
	line[sizeof line - 2] = '\n';
	line[sizeof line - 1] = '\0';
	write_file(p, line);
	assert_int_equal(opd_tls_tokens_load(&t, p, err), OPD_EINVAL);
	assert_non_null(strstr(err, "longer than"));
	snprintf(line, sizeof line, "%s/none", E.dir);
	assert_int_equal(opd_tls_tokens_load(&t, line, err), OPD_EINVAL);
	assert_memory_equal(&t, &keep, sizeof t);
	assert_true(opd_tls_tokens_check(&t, "Bearer tok-one-123"));
	opd_tls_tokens_fini(&t);
	assert_int_equal(t.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(handshake_ecdsa_tls13),
	    cmocka_unit_test(handshake_rsa_tls12_aead),
	    cmocka_unit_test(tls12_cbc_refused),
	    cmocka_unit_test(tls11_refused),
	    cmocka_unit_test(client_cert_required),
	    cmocka_unit_test(client_cert_optional),
	    cmocka_unit_test(bad_client_certs_refused),
	    cmocka_unit_test(client_refuses_unknown_server),
	    cmocka_unit_test(uid_forms),
	    cmocka_unit_test(reload_keeps_old_connections),
	    cmocka_unit_test(close_notify_both_ways),
	    cmocka_unit_test(release_buffers_idle),
	    cmocka_unit_test(ctx_errors),
	    cmocka_unit_test(tokens),
	};

	/* Before OpenSSL allocates anything, so that every byte it holds is counted. */
	if (opd_ossl_count_install() != 0)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
