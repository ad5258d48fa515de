#include "tls13_record.h"

#include "err.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <string.h>

#define TAG_LEN 16
#define IV_LEN 12

/* Handshake message types (RFC 8446 §4) and alert descriptions (§6) used here. */
#define HS_KEY_UPDATE 24
#define ALERT_WARNING 1
#define ALERT_FATAL 2
#define AD_CLOSE_NOTIFY 0
#define AD_UNEXPECTED_MESSAGE 10
#define AD_BAD_RECORD_MAC 20
#define AD_USER_CANCELED 90
#define AD_RECORD_OVERFLOW 22
#define AD_DECODE_ERROR 50
#define AD_PROTOCOL_VERSION 70
#define AD_INTERNAL_ERROR 80

static const struct suite {
	const char *name;   /* as OpenSSL's SSL_get_cipher_name says it */
	const char *cipher; /* EVP fetch names */
	const char *digest;
	uint16_t iana;
	uint8_t key_len;
	uint8_t hash_len;
} suites[] = {
    [OPD_TLS13_AES_128_GCM_SHA256] = {"TLS_AES_128_GCM_SHA256", "AES-128-GCM", "SHA256", 0x1301, 16,
				      32},
    [OPD_TLS13_AES_256_GCM_SHA384] = {"TLS_AES_256_GCM_SHA384", "AES-256-GCM", "SHA384", 0x1302, 32,
				      48},
    [OPD_TLS13_CHACHA20_POLY1305_SHA256] = {"TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305",
					    "SHA256", 0x1303, 32, 32},
};

#define N_SUITES (sizeof suites / sizeof suites[0])

/*
 * Process-wide, never freed (reachable): the fetched algorithms and one
 * scratch cipher context per AEAD, re-keyed for every record. One context
 * per connection and direction is what this layer exists to avoid. Only the
 * loop thread uses them. The last record's key schedule stays in the scratch
 * context until the next record: no worse than the keys kept in every
 * connection's state.
 */
static EVP_CIPHER_CTX *scratch[N_SUITES];
static EVP_KDF *hkdf;

int opd_tls13_suite_from_iana(uint16_t iana, enum opd_tls13_suite *out)
{
	for (size_t i = 0; i < N_SUITES; i++)
		if (suites[i].iana == iana) {
			*out = (enum opd_tls13_suite)i;
			return 0;
		}
	return OPD_ENOTFOUND;
}

const char *opd_tls13_suite_name(enum opd_tls13_suite s)
{
	return suites[s].name;
}

size_t opd_tls13_secret_len(enum opd_tls13_suite s)
{
	return suites[s].hash_len;
}

/* The suite's scratch context, made on first use with the cipher set and no key. */
static EVP_CIPHER_CTX *scratch_ctx(uint8_t suite)
{
	EVP_CIPHER *c;

	if (scratch[suite] != NULL)
		return scratch[suite];
	c = EVP_CIPHER_fetch(NULL, suites[suite].cipher, NULL);
	scratch[suite] = EVP_CIPHER_CTX_new();
	if (c == NULL || scratch[suite] == NULL ||
	    EVP_CipherInit_ex2(scratch[suite], c, NULL, NULL, 1, NULL) != 1) {
		EVP_CIPHER_CTX_free(scratch[suite]);
		scratch[suite] = NULL;
	}
	EVP_CIPHER_free(c); /* the context keeps its own reference */
	return scratch[suite];
}

/*
 * HKDF-Expand-Label(secret, label, "", out_len) (RFC 8446 §7.1) with the
 * suite's hash. Returns 0 or OPD_ENOMEM.
 */
static int expand_label(uint8_t suite, const uint8_t *secret, const char *label, uint8_t *out,
			size_t out_len)
{
	uint8_t info[2 + 1 + 6 + 16 + 1];
	size_t llen = strlen(label), ilen = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[5];
	EVP_KDF_CTX *k;
	int rc;

	/* struct HkdfLabel { uint16 length; opaque label<7..255> = "tls13 " + label;
	 * context<0..255> } */
	info[ilen++] = (uint8_t)(out_len >> 8);
	info[ilen++] = (uint8_t)out_len;
	info[ilen++] = (uint8_t)(6 + llen);
	memcpy(info + ilen, "tls13 ", 6);
	ilen += 6;
	memcpy(info + ilen, label, llen);
	ilen += llen;
	info[ilen++] = 0;
	if (hkdf == NULL && (hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
		return OPD_ENOMEM;
	k = EVP_KDF_CTX_new(hkdf);
	if (k == NULL)
		return OPD_ENOMEM;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)suites[suite].digest, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
						      suites[suite].hash_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, ilen);
	params[4] = OSSL_PARAM_construct_end();
	rc = EVP_KDF_derive(k, out, out_len, params);
	EVP_KDF_CTX_free(k);
	return rc == 1 ? 0 : OPD_ENOMEM;
}

/* key and iv from the direction's current secret (RFC 8446 §7.3). */
static int derive_keys(uint8_t suite, struct opd_tls13_dir *d)
{
	int rc = expand_label(suite, d->secret, "key", d->key, suites[suite].key_len);

	if (rc == 0)
		rc = expand_label(suite, d->secret, "iv", d->iv, IV_LEN);
	d->seq = 0;
	return rc;
}

/* application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length) */
static int update_keys(uint8_t suite, struct opd_tls13_dir *d)
{
	uint8_t next[OPD_TLS13_SECRET_MAX];
	int rc = expand_label(suite, d->secret, "traffic upd", next, suites[suite].hash_len);

	if (rc == 0) {
		memcpy(d->secret, next, suites[suite].hash_len);
		rc = derive_keys(suite, d);
	}
	OPENSSL_cleanse(next, sizeof next);
	return rc;
}

int opd_tls13_record_init(struct opd_tls13_record *r, enum opd_tls13_suite suite,
			  const uint8_t *read_secret, const uint8_t *write_secret)
{
	size_t n = suites[suite].hash_len;

	memset(r, 0, sizeof *r);
	r->suite = (uint8_t)suite;
	r->why = "";
	memcpy(r->rd.secret, read_secret, n);
	memcpy(r->wr.secret, write_secret, n);
	if (derive_keys(r->suite, &r->rd) != 0 || derive_keys(r->suite, &r->wr) != 0 ||
	    scratch_ctx(r->suite) == NULL) {
		opd_tls13_record_fini(r);
		ERR_clear_error();
		return OPD_ENOMEM;
	}
	return 0;
}

void opd_tls13_record_fini(struct opd_tls13_record *r)
{
	opd_buf_fini(&r->in);
	opd_buf_fini(&r->out);
	OPENSSL_cleanse(&r->rd, sizeof r->rd);
	OPENSSL_cleanse(&r->wr, sizeof r->wr);
}

/* The per-record nonce: the static iv XOR the 64-bit sequence, big endian, right aligned. */
static void nonce(const struct opd_tls13_dir *d, uint8_t out[IV_LEN])
{
	memcpy(out, d->iv, IV_LEN);
	for (int i = 0; i < 8; i++)
		out[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/*
 * AEAD over buf (len bytes, in place) with the 5-byte header as additional
 * data. Encrypting writes the tag to tag; decrypting checks it. Returns true
 * when it worked (decrypting: the tag matched).
 */
static bool aead(uint8_t suite, const struct opd_tls13_dir *d, int enc, const uint8_t *hdr,
		 uint8_t *buf, size_t len, uint8_t tag[TAG_LEN])
{
	EVP_CIPHER_CTX *c = scratch_ctx(suite);
	uint8_t iv[IV_LEN], last[32];
	int n = 0;
	bool ok;

	if (c == NULL)
		return false;
	nonce(d, iv);
	ok = EVP_CipherInit_ex2(c, NULL, d->key, iv, enc, NULL) == 1 &&
	     EVP_CipherUpdate(c, NULL, &n, hdr, OPD_TLS13_HEADER) == 1 &&
	     (len == 0 || EVP_CipherUpdate(c, buf, &n, buf, (int)len) == 1) &&
	     (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) == 1) &&
	     EVP_CipherFinal_ex(c, last, &n) == 1 &&
	     (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) == 1);
	ERR_clear_error();
	return ok;
}

/* One record of content type `type` holding n <= 2^14 bytes. */
static int seal_one(struct opd_tls13_record *r, uint8_t type, const uint8_t *p, size_t n)
{
	size_t body = n + 1 + TAG_LEN;
	uint8_t *w;

	if (r->wr.seq == UINT64_MAX)
		return OPD_EPROTO;
	w = opd_buf_reserve(&r->out, OPD_TLS13_HEADER + body);
	w[0] = OPD_TLS13_CT_APPDATA; /* the outer type of every protected record */
	w[1] = 0x03;
	w[2] = 0x03;
	w[3] = (uint8_t)(body >> 8);
	w[4] = (uint8_t)body;
	if (n > 0)
		memcpy(w + OPD_TLS13_HEADER, p, n);
	w[OPD_TLS13_HEADER + n] = type; /* TLSInnerPlaintext, no padding */
	if (!aead(r->suite, &r->wr, 1, w, w + OPD_TLS13_HEADER, n + 1,
		  w + OPD_TLS13_HEADER + n + 1)) {
		OPENSSL_cleanse(w, OPD_TLS13_HEADER + body);
		return OPD_EPROTO;
	}
	r->wr.seq++;
	opd_buf_commit(&r->out, OPD_TLS13_HEADER + body);
	return 0;
}

int opd_tls13_record_seal(struct opd_tls13_record *r, uint8_t type, const uint8_t *p, size_t n)
{
	if (r->failed || r->closed)
		return OPD_EPROTO;
	/* Room for every record at once: one allocation for a large message, not one per record. */
	opd_buf_reserve(&r->out,
			n + (n / OPD_TLS13_PLAIN_MAX + 1) * (OPD_TLS13_HEADER + 1 + TAG_LEN));
	do {
		size_t chunk = n > OPD_TLS13_PLAIN_MAX ? OPD_TLS13_PLAIN_MAX : n;

		if (seal_one(r, type, p, chunk) != 0) {
			r->failed = true;
			r->why = r->wr.seq == UINT64_MAX ? "record sequence number would wrap"
							 : "record encryption failed";
			return OPD_EPROTO;
		}
		p += chunk;
		n -= chunk;
	} while (n > 0);
	return 0;
}

int opd_tls13_record_push_plain(struct opd_tls13_record *r, const uint8_t *p, size_t n)
{
	return opd_tls13_record_seal(r, OPD_TLS13_CT_APPDATA, p, n);
}

size_t opd_tls13_record_pull_cipher(struct opd_tls13_record *r, struct opd_buf *out)
{
	size_t n = opd_buf_avail(&r->out);

	if (n > 0 && opd_buf_avail(out) == 0) {
		/* The usual case (an empty buffer to fill): hand ours over instead of copying. */
		opd_buf_fini(out);
		*out = r->out;
		opd_buf_init(&r->out);
		return n;
	}
	if (n > 0)
		opd_buf_append(out, opd_buf_rptr(&r->out), n);
	opd_buf_fini(&r->out);
	return n;
}

static void send_alert(struct opd_tls13_record *r, uint8_t level, uint8_t desc)
{
	uint8_t a[2] = {level, desc};

	(void)opd_tls13_record_seal(r, OPD_TLS13_CT_ALERT, a, sizeof a);
}

void opd_tls13_record_close(struct opd_tls13_record *r)
{
	if (r->failed || r->closed)
		return;
	send_alert(r, ALERT_WARNING, AD_CLOSE_NOTIFY);
	r->closed = true;
}

/*
 * Fail for good: tell the peer (alert != 0) under the current write key,
 * unless we said goodbye already, and drop whatever input is left.
 */
static ssize_t fail(struct opd_tls13_record *r, uint8_t alert, const char *why)
{
	if (alert != 0)
		send_alert(r, ALERT_FATAL, alert);
	r->failed = true;
	r->why = why;
	if (r->in.data != NULL) /* may hold plaintext that failed authentication */
		OPENSSL_cleanse(r->in.data, r->in.cap);
	opd_buf_fini(&r->in);
	r->plain_len = r->plain_off = r->rec_len = 0;
	return OPD_EPROTO;
}

/*
 * A handshake message after the handshake: only a KeyUpdate (RFC 8446 §4.6.3),
 * whole, alone and at the end of its record (a key change must align with a
 * record boundary, §5.1). The peer's next records use its next secret; when it
 * asks, ours answers before any further data and then changes our keys.
 */
static ssize_t handshake_msg(struct opd_tls13_record *r, const uint8_t *m, size_t n)
{
	static const uint8_t not_requested = 0;

	if (n < 4 || m[0] != HS_KEY_UPDATE)
		return fail(r, AD_UNEXPECTED_MESSAGE,
			    "unexpected handshake message after the "
			    "handshake");
	if (n != 5 || m[1] != 0 || m[2] != 0 || m[3] != 1)
		return fail(r, AD_DECODE_ERROR, "bad KeyUpdate message");
	if (m[4] > 1)
		return fail(r, 47 /* illegal_parameter */, "bad KeyUpdate request");
	if (update_keys(r->suite, &r->rd) != 0)
		return fail(r, AD_INTERNAL_ERROR, "KeyUpdate: key derivation failed");
	if (m[4] == 1 && !r->closed) {
		static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, not_requested};

		if (opd_tls13_record_seal(r, OPD_TLS13_CT_HANDSHAKE, ku, sizeof ku) != 0)
			return OPD_EPROTO;
		if (update_keys(r->suite, &r->wr) != 0)
			return fail(r, 0, "KeyUpdate: key derivation failed");
	}
	return 0;
}

/* Drop the record at the front of in once its content is used up. */
static void drop_record(struct opd_tls13_record *r)
{
	opd_buf_consume(&r->in, r->rec_len);
	r->rec_len = r->plain_off = r->plain_len = 0;
}

/*
 * Decrypt the whole record at the front of in, in place. Returns 0 with the
 * inner content type in *type and the content at plain_off / plain_len;
 * OPD_EAGAIN when the record is not all there; OPD_EPROTO.
 */
static ssize_t open_record(struct opd_tls13_record *r, uint8_t *type)
{
	uint8_t *h = (uint8_t *)opd_buf_rptr(&r->in);
	size_t avail = opd_buf_avail(&r->in), len, i;

	if (avail < OPD_TLS13_HEADER)
		return OPD_EAGAIN;
	len = (size_t)h[3] << 8 | h[4];
	if (h[0] == OPD_TLS13_CT_CCS)
		return fail(r, AD_UNEXPECTED_MESSAGE, "change cipher spec after the handshake");
	if (h[0] != OPD_TLS13_CT_APPDATA)
		return fail(r, AD_UNEXPECTED_MESSAGE, "unprotected record after the handshake");
	if (h[1] != 0x03 || h[2] != 0x03)
		return fail(r, AD_PROTOCOL_VERSION, "wrong record version");
	if (len > OPD_TLS13_CIPHER_MAX)
		return fail(r, AD_RECORD_OVERFLOW, "record too long");
	if (len < TAG_LEN + 1)
		return fail(r, AD_DECODE_ERROR, "record too short");
	if (avail < OPD_TLS13_HEADER + len)
		return OPD_EAGAIN;
	if (r->rd.seq == UINT64_MAX)
		return fail(r, AD_INTERNAL_ERROR, "record sequence number would wrap");
	len -= TAG_LEN;
	if (!aead(r->suite, &r->rd, 0, h, h + OPD_TLS13_HEADER, len, h + OPD_TLS13_HEADER + len))
		return fail(r, AD_BAD_RECORD_MAC, "decryption failed or bad record mac");
	r->rd.seq++;
	/* TLSInnerPlaintext: content || type || zeros */
	for (i = len; i > 0 && h[OPD_TLS13_HEADER + i - 1] == 0; i--)
		;
	if (i == 0)
		return fail(r, AD_UNEXPECTED_MESSAGE, "record without a content type");
	*type = h[OPD_TLS13_HEADER + i - 1];
	if (i - 1 > OPD_TLS13_PLAIN_MAX)
		return fail(r, AD_RECORD_OVERFLOW, "record content too long");
	r->rec_len = (uint32_t)(OPD_TLS13_HEADER + len + TAG_LEN);
	r->plain_off = OPD_TLS13_HEADER;
	r->plain_len = (uint32_t)(i - 1);
	return 0;
}

/*
 * A protected alert: close_notify ends the stream; user_canceled, the other
 * alert that is not an error (RFC 8446 §6.1, and a close_notify is to follow),
 * is skipped as OpenSSL does; anything else ends the connection.
 */
static ssize_t alert_msg(struct opd_tls13_record *r, const uint8_t *a, size_t n)
{
	if (n != 2)
		return fail(r, AD_DECODE_ERROR, "bad alert record");
	if (a[1] == AD_USER_CANCELED) {
		drop_record(r);
		return 0;
	}
	if (a[1] == AD_CLOSE_NOTIFY) {
		r->peer_closed = true;
		drop_record(r);
		opd_buf_fini(&r->in); /* whatever follows close_notify is ignored */
		return 0;
	}
	r->peer_alert = a[1];
	return fail(r, 0, "the peer sent an alert");
}

void opd_tls13_record_push_cipher(struct opd_tls13_record *r, const uint8_t *p, size_t n)
{
	if (r->failed || r->peer_closed || n == 0)
		return;
	opd_buf_append(&r->in, p, n);
}

/* Nothing whole to read: keep only the partial record, in a buffer no larger than needed. */
static ssize_t idle(struct opd_tls13_record *r)
{
	size_t avail = opd_buf_avail(&r->in);
	struct opd_buf small;

	if (avail == 0) {
		opd_buf_fini(&r->in);
	} else if (r->in.cap > 2 * (OPD_TLS13_HEADER + OPD_TLS13_CIPHER_MAX)) {
		opd_buf_init(&small);
		opd_buf_append(&small, opd_buf_rptr(&r->in), avail);
		opd_buf_fini(&r->in);
		r->in = small;
	}
	return OPD_EAGAIN;
}

ssize_t opd_tls13_record_pull_plain(struct opd_tls13_record *r, uint8_t *p, size_t cap)
{
	/* Each pass takes one whole record; a peer cannot make this loop without feeding it. */
	for (;;) {
		uint8_t type = 0;
		const uint8_t *c;
		ssize_t rc;

		if (r->failed)
			return OPD_EPROTO;
		if (r->peer_closed)
			return 0;
		if (r->plain_len > 0) {
			size_t n = cap < r->plain_len ? cap : r->plain_len;

			memcpy(p, opd_buf_rptr(&r->in) + r->plain_off, n);
			r->plain_off += (uint32_t)n;
			r->plain_len -= (uint32_t)n;
			if (r->plain_len == 0)
				drop_record(r);
			return (ssize_t)n;
		}
		rc = open_record(r, &type);
		if (rc == OPD_EAGAIN)
			return idle(r);
		if (rc != 0)
			return rc;
		c = opd_buf_rptr(&r->in) + r->plain_off;
		switch (type) {
		case OPD_TLS13_CT_APPDATA:
			if (r->plain_len == 0) /* empty application data is allowed */
				drop_record(r);
			continue;
		case OPD_TLS13_CT_ALERT:
			rc = alert_msg(r, c, r->plain_len);
			break;
		case OPD_TLS13_CT_HANDSHAKE:
			rc = handshake_msg(r, c, r->plain_len);
			if (rc == 0)
				drop_record(r);
			break;
		default:
			rc = fail(r, AD_UNEXPECTED_MESSAGE, "unexpected record type");
			break;
		}
		if (rc != 0)
			return rc;
	}
}
