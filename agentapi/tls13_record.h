/*
 * The TLS 1.3 record protocol (RFC 8446 §5) after the handshake, without
 * sockets and without an SSL object: traffic secrets in, ciphertext <->
 * plaintext. tls.c lets OpenSSL run the whole handshake, then hands the
 * connection to this layer and frees the SSL (7.6 KiB and two 1 KiB cipher
 * contexts per connection under OpenSSL 3.0). OpenSSL still does every
 * cryptographic primitive (EVP AEAD, HKDF); this file only frames records,
 * builds nonces, and handles KeyUpdate (§4.6.3), alerts and close_notify.
 *
 * Memory: the state is a few hundred bytes per connection, embedded by the
 * caller. No EVP_CIPHER_CTX is kept per connection: one scratch context per
 * AEAD, shared by every connection of the process, is re-keyed for each
 * record. That makes this file single-threaded: every connection runs on the
 * libuv loop thread. The input and output buffers own no memory while idle.
 */
#ifndef OPD_TLS13_RECORD_H
#define OPD_TLS13_RECORD_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The three TLS 1.3 cipher suites OpenSSL offers by default (RFC 8446 §B.4). */
enum opd_tls13_suite {
	OPD_TLS13_AES_128_GCM_SHA256,
	OPD_TLS13_AES_256_GCM_SHA384,
	OPD_TLS13_CHACHA20_POLY1305_SHA256,
};

#define OPD_TLS13_SECRET_MAX 48            /* SHA-384 */
#define OPD_TLS13_PLAIN_MAX 16384          /* 2^14: content of one record */
#define OPD_TLS13_CIPHER_MAX (16384 + 256) /* 2^14 + 256: a record's body, §5.2 */
#define OPD_TLS13_HEADER 5

/* Content types and the alerts this layer sends (RFC 8446 §5.1, §6). */
enum {
	OPD_TLS13_CT_CCS = 20,
	OPD_TLS13_CT_ALERT = 21,
	OPD_TLS13_CT_HANDSHAKE = 22,
	OPD_TLS13_CT_APPDATA = 23,
};

/* One direction's keys. */
struct opd_tls13_dir {
	uint64_t seq;
	uint8_t key[32];
	uint8_t iv[12];
	uint8_t secret[OPD_TLS13_SECRET_MAX]; /* application traffic secret N, for KeyUpdate */
};

struct opd_tls13_record {
	struct opd_tls13_dir rd, wr;
	struct opd_buf in;  /* ciphertext received; the record at its front decrypted in place */
	struct opd_buf out; /* records for the peer */
	uint32_t plain_off; /* undelivered content of the record at in's front: offset, */
	uint32_t plain_len; /* length */
	uint32_t rec_len;   /* and that record's size, dropped from in once delivered */
	uint8_t suite;      /* enum opd_tls13_suite */
	bool failed;
	bool peer_closed;   /* close_notify received */
	bool closed;        /* close_notify sent */
	uint8_t peer_alert; /* the fatal alert the peer sent, 0 if none */
	const char *why;    /* static; "" until a failure */
};

/*
 * The suite of an IANA cipher-suite number (0x1301, 0x1302, 0x1303).
 * Returns 0, or OPD_ENOTFOUND for any other suite.
 */
int opd_tls13_suite_from_iana(uint16_t iana, enum opd_tls13_suite *out);

/* "TLS_AES_128_GCM_SHA256", ... as OpenSSL names them (static). */
const char *opd_tls13_suite_name(enum opd_tls13_suite s);

/* The length of the suite's hash, which is that of its traffic secrets: 32 or 48. */
size_t opd_tls13_secret_len(enum opd_tls13_suite s);

/*
 * Start with the application traffic secrets *_0 (secret_len bytes each,
 * borrowed and copied): read_secret is the peer's, write_secret ours. Both
 * sequence numbers start at 0. Returns 0, or OPD_ENOMEM when OpenSSL could
 * not derive the keys (r is then finished already).
 */
int opd_tls13_record_init(struct opd_tls13_record *r, enum opd_tls13_suite suite,
			  const uint8_t *read_secret, const uint8_t *write_secret)
    __attribute__((warn_unused_result));

/* Wipe the keys and free the buffers. Safe on a zeroed record. */
void opd_tls13_record_fini(struct opd_tls13_record *r);

/* Ciphertext from the peer (borrowed, copied). */
void opd_tls13_record_push_cipher(struct opd_tls13_record *r, const uint8_t *p, size_t n);

/*
 * Decrypt into p (at most cap > 0 bytes). Returns the number of bytes (> 0);
 * OPD_EAGAIN when a whole record is still missing; 0 once the peer sent
 * close_notify; OPD_EPROTO when a record was bad (r->why says why, and the
 * alert for the peer, if one is due, waits in opd_tls13_record_pull_cipher).
 * KeyUpdate messages are handled here (an update_requested one queues our
 * own KeyUpdate). Failure and end of stream are sticky.
 */
ssize_t opd_tls13_record_pull_plain(struct opd_tls13_record *r, uint8_t *p, size_t cap);

/*
 * Encrypt n bytes (borrowed) as records of content type `type`, at most
 * 2^14 bytes each (n == 0: one empty record). Returns 0 or OPD_EPROTO (after
 * a failure, after close_notify was sent, or when the sequence would wrap).
 * opd_tls13_record_push_plain is this with application data.
 */
int opd_tls13_record_seal(struct opd_tls13_record *r, uint8_t type, const uint8_t *p, size_t n);
int opd_tls13_record_push_plain(struct opd_tls13_record *r, const uint8_t *p, size_t n);

/* Move every record waiting for the peer to the end of out; release the buffer. Returns bytes. */
size_t opd_tls13_record_pull_cipher(struct opd_tls13_record *r, struct opd_buf *out);

/* Queue an encrypted close_notify (once; not after a failure). */
void opd_tls13_record_close(struct opd_tls13_record *r);

#endif
