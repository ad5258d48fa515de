#include "tls_pair.h"

#include "err.h"

#include <openssl/err.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

SSL_CTX *opd_tp_client_ctx(const char *ca, const char *cert, const char *key)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	assert_non_null(c);
	assert_int_equal(SSL_CTX_load_verify_locations(c, ca, NULL), 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if (cert != NULL) {
		assert_int_equal(SSL_CTX_use_certificate_chain_file(c, cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM), 1);
	}
	return c;
}

struct opd_tls_ctx *opd_tp_server_ctx(const char *cert, const char *key, const char *ca,
				      enum opd_tls_verify v)
{
	struct opd_tls_config cfg = {cert, key, v != OPD_TLS_VERIFY_OFF ? ca : NULL, v};
	struct opd_tls_ctx *ctx = NULL;
	char err[OPD_ERRMSG_SIZE];

	if (opd_tls_ctx_new(&cfg, &ctx, err) != 0)
		fail_msg("opd_tls_ctx_new: %s", err);
	return ctx;
}

SSL *opd_tp_client(SSL_CTX *cctx)
{
	BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
	SSL *c = SSL_new(cctx);

	assert_non_null(c);
	BIO_set_mem_eof_return(r, -1);
	BIO_set_mem_eof_return(w, -1);
	SSL_set_bio(c, r, w);
	SSL_set_connect_state(c);
	return c;
}

size_t opd_tp_server_to_client(struct opd_tls *s, SSL *c, struct opd_buf *copy)
{
	struct opd_buf out;
	size_t n;

	opd_buf_init(&out);
	n = opd_tls_pull_cipher(s, &out);
	if (n > 0) {
		assert_int_equal(BIO_write(SSL_get_rbio(c), opd_buf_rptr(&out), (int)n), (int)n);
		if (copy != NULL)
			opd_buf_append(copy, opd_buf_rptr(&out), n);
	}
	opd_buf_fini(&out);
	return n;
}

size_t opd_tp_client_read(SSL *c, uint8_t *buf, size_t cap)
{
	size_t have = 0;
	int n;

	while (have < cap && (n = SSL_read(c, buf + have, (int)(cap - have))) > 0)
		have += (size_t)n;
	ERR_clear_error();
	return have;
}
