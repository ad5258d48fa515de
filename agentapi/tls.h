/*
 * Transport security for the listeners, without sockets: OpenSSL 3 over two
 * memory BIOs. conn.c pushes the ciphertext it reads in and pulls plaintext
 * out, pushes the plaintext the codecs produce and pulls the ciphertext to
 * write; this file never sees a file descriptor (STYLE.md §7). A context
 * (struct opd_tls_ctx) holds the server certificate and the client-CA policy
 * and is reference counted, so that a reload builds a new context for new
 * connections while existing connections keep theirs. Also here: what a
 * client certificate says about the agent presenting it (the instance_uid it
 * is bound to) and the bearer tokens that authenticate agents over HTTP.
 */
#ifndef OPD_TLS_H
#define OPD_TLS_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* URI SAN prefix naming an agent's instance_uid in its certificate. */
#define OPD_TLS_AGENT_URI_PREFIX "urn:opampd:agent:"

/* Client certificates: not asked for, checked when presented, or required. */
enum opd_tls_verify { OPD_TLS_VERIFY_OFF, OPD_TLS_VERIFY_OPTIONAL, OPD_TLS_VERIFY_REQUIRED };

struct opd_tls_config {
	const char *cert_file;      /* PEM: the server certificate, then its chain */
	const char *key_file;       /* PEM: its private key (ECDSA or RSA) */
	const char *client_ca_file; /* PEM bundle trusted for client certificates; NULL = none */
	enum opd_tls_verify verify; /* anything but OFF needs client_ca_file */
};

struct opd_tls_ctx;
struct opd_tls;

/*
 * Parse "off", "optional" or "required". Returns 0 or OPD_EINVAL.
 */
int opd_tls_verify_parse(const char *s, enum opd_tls_verify *out);
const char *opd_tls_verify_name(enum opd_tls_verify v);

/*
 * Build a server context from cfg (borrowed; the files are read now): TLS 1.2
 * at least and 1.3 when the client has it, forward-secret AEAD cipher suites
 * only in 1.2, no renegotiation, no compression, and buffers released while a
 * connection is idle. No TLS 1.3 session tickets (see opd_tls_handed_off); with
 * a verify mode other than OFF no session is resumed at all, so that every
 * connection's certificate chain is checked again. Sets *out
 * (one reference, the caller's) only on success. Returns 0, or OPD_EINVAL
 * (bad configuration, unreadable or mismatched files) with errmsg
 * (OPD_ERRMSG_SIZE bytes) saying which file and why.
 */
int opd_tls_ctx_new(const struct opd_tls_config *cfg, struct opd_tls_ctx **out, char *errmsg)
    __attribute__((warn_unused_result));

/* Take one more reference. Returns ctx. */
struct opd_tls_ctx *opd_tls_ctx_ref(struct opd_tls_ctx *ctx);

/* Drop one reference; the last frees the context. NULL is a no-op. */
void opd_tls_ctx_unref(struct opd_tls_ctx *ctx);

/* The server certificate's SHA-256 fingerprint, 64 lowercase hex digits (borrowed). */
const char *opd_tls_ctx_fingerprint(const struct opd_tls_ctx *ctx);

/* The server certificate's subject (RFC 2253) and key type ("EC", "RSA", ...) (borrowed). */
const char *opd_tls_ctx_subject(const struct opd_tls_ctx *ctx);
const char *opd_tls_ctx_key_type(const struct opd_tls_ctx *ctx);

/* The server certificate's notAfter as Unix seconds. */
int64_t opd_tls_ctx_not_after(const struct opd_tls_ctx *ctx);

enum opd_tls_verify opd_tls_ctx_verify(const struct opd_tls_ctx *ctx);

/*
 * A server-side connection on ctx (borrowed; the connection takes its own
 * reference, so ctx may be replaced and unreferenced while it lives). Sets
 * *out only on success. Returns 0 or OPD_ENOMEM.
 */
int opd_tls_new(struct opd_tls_ctx *ctx, struct opd_tls **out) __attribute__((warn_unused_result));

/* Free the connection and drop its context reference. NULL is a no-op. */
void opd_tls_free(struct opd_tls *t);

/* Ciphertext received from the peer (borrowed, copied). Returns 0 or OPD_ENOMEM. */
int opd_tls_push_cipher(struct opd_tls *t, const uint8_t *p, size_t n)
    __attribute__((warn_unused_result));

/*
 * Decrypt into p (at most cap bytes), running the handshake first. Returns the
 * number of bytes (> 0); OPD_EAGAIN when more ciphertext is needed; 0 when the
 * peer closed the TLS session (close_notify); OPD_EPROTO when the handshake or
 * a record failed (opd_tls_errmsg says why; the alert to send is waiting in
 * opd_tls_pull_cipher). Errors are sticky.
 */
ssize_t opd_tls_pull_plain(struct opd_tls *t, uint8_t *p, size_t cap);

/*
 * Encrypt n bytes (borrowed) for the peer; the records are then taken with
 * opd_tls_pull_cipher. Returns 0; OPD_EAGAIN before the handshake is done
 * (nothing was queued); OPD_EPROTO after a failure.
 */
int opd_tls_push_plain(struct opd_tls *t, const uint8_t *p, size_t n);

/*
 * Move every ciphertext byte waiting for the peer (handshake messages,
 * records, alerts) to the end of out. Returns the number of bytes appended.
 * Once the output is empty its buffer is released.
 */
size_t opd_tls_pull_cipher(struct opd_tls *t, struct opd_buf *out);

/* Queue a close_notify alert (then pull it with opd_tls_pull_cipher). Idempotent. */
void opd_tls_shutdown(struct opd_tls *t);

/* True once the handshake completed. */
bool opd_tls_handshake_done(const struct opd_tls *t);

/*
 * True when the connection's records are handled by tls13_record.c and its
 * SSL is freed: TLS 1.3 with one of its three default suites, from the end of
 * the handshake on (the ~12 KiB of OpenSSL state become ~0.5 KiB). TLS 1.2
 * connections keep their SSL. Nothing else changes for the caller.
 */
bool opd_tls_handed_off(const struct opd_tls *t);

/* Why the connection failed ("" when it did not), e.g. "certificate verify failed: certificate
 * has expired". Borrowed. */
const char *opd_tls_errmsg(const struct opd_tls *t);

/* The negotiated protocol ("TLSv1.3") and cipher suite, or "" before the handshake. */
const char *opd_tls_version(const struct opd_tls *t);
const char *opd_tls_cipher(const struct opd_tls *t);

/* True when the peer presented a certificate that verified against the client CAs. */
bool opd_tls_peer_verified(const struct opd_tls *t);

/*
 * The verified peer certificate's subject (RFC 2253) into out (cap bytes, NUL
 * terminated, truncated if needed). Returns 0, or OPD_ENOTFOUND without one.
 */
int opd_tls_peer_subject(const struct opd_tls *t, char *out, size_t cap);

/* The verified peer certificate's SHA-256 fingerprint in hex. 0 or OPD_ENOTFOUND. */
int opd_tls_peer_fingerprint(const struct opd_tls *t, char out[65]);

/*
 * The instance_uid the verified peer certificate is bound to: a URI SAN
 * "urn:opampd:agent:<uid>", or else a subject CN that is the uid, the uid in
 * 32 hex digits or in UUID form. Returns 0 with uid set; OPD_ENOTFOUND when
 * there is no verified certificate or it names no uid; OPD_ECONFLICT when it
 * names two different uids.
 */
int opd_tls_peer_uid(const struct opd_tls *t, uint8_t uid[16]);

/*
 * Bearer tokens that authenticate agents, kept as SHA-256 digests and
 * compared in constant time.
 */
struct opd_tls_tokens {
	uint8_t (*digest)[32]; /* owned */
	size_t n;
};

#define OPD_TLS_TOKENS_MAX 100000
#define OPD_TLS_TOKEN_MAX_LEN 512

/*
 * Read path: one token per line; surrounding blanks, empty lines and lines
 * starting with '#' are ignored. The file must name at least one token.
 * Fills *t (overwritten, not freed: a reload loads into a fresh struct and
 * swaps) only on success. Returns 0, or OPD_EINVAL with errmsg
 * (OPD_ERRMSG_SIZE bytes) naming the file and line.
 */
int opd_tls_tokens_load(struct opd_tls_tokens *t, const char *path, char *errmsg)
    __attribute__((warn_unused_result));

void opd_tls_tokens_fini(struct opd_tls_tokens *t);

/*
 * Check an Authorization header value (borrowed, may be NULL): "Bearer <token>"
 * (scheme case-insensitive) naming one of the tokens. True when it does.
 */
bool opd_tls_tokens_check(const struct opd_tls_tokens *t, const char *authorization);

#endif
