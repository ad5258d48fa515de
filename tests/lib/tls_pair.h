/*
 * A TLS client (plain OpenSSL over memory BIOs) joined by hand to tls.c's
 * server side, for the unit tests of tls.c and tls13_record.c: the contexts,
 * the client's SSL, and the moves every exchange is made of. How the bytes
 * are pumped (whole, in pieces, tampered with) stays with each test.
 */
#ifndef OPD_TLS_PAIR_H
#define OPD_TLS_PAIR_H

#include "buf.h"
#include "tls.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* A client context that trusts ca; with cert and key it presents them. */
SSL_CTX *opd_tp_client_ctx(const char *ca, const char *cert, const char *key);

/* The server context (fails the test if tls.c refuses the files). */
struct opd_tls_ctx *opd_tp_server_ctx(const char *cert, const char *key, const char *ca,
				      enum opd_tls_verify v);

/* A client in connect state over memory BIOs that say "retry" when empty. */
SSL *opd_tp_client(SSL_CTX *cctx);

/* Everything the server has for the client into the client's read BIO (and copy). Returns bytes. */
size_t opd_tp_server_to_client(struct opd_tls *s, SSL *c, struct opd_buf *copy);

/* Read up to cap bytes the client received. */
size_t opd_tp_client_read(SSL *c, uint8_t *buf, size_t cap);

#endif
