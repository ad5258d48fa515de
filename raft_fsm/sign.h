/*
 * Signed configuration versions: the cluster's Ed25519 key (OpenSSL) and the
 * exact bytes it signs. The signed version record is the concatenation of
 * these fields, each as an 8-byte big-endian length followed by its bytes:
 *
 *   "opampd.config-version.v1", name, version (decimal), config_hash (32 raw
 *   bytes), n = number of selector pairs (decimal), then n × (key, value) in
 *   sorted order, priority (decimal, may be negative), term (decimal),
 *   hlc_wall_ms (decimal), hlc_logical (decimal)
 *
 * A key id is the first 8 bytes of SHA-256(raw 32-byte public key), in hex.
 */
#ifndef OPD_SIGN_H
#define OPD_SIGN_H

#include "buf.h"
#include "err.h"
#include "kv.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_SIGN_KEY_ID_LEN 16 /* hex characters */
#define OPD_SIGN_PUBLIC_LEN 32
#define OPD_SIGN_SIG_LEN 64

struct evp_pkey_st;

struct opd_signer {
	struct evp_pkey_st *key; /* private key, or NULL */
	uint8_t public_key[OPD_SIGN_PUBLIC_LEN];
	char key_id[OPD_SIGN_KEY_ID_LEN + 1];
	char errmsg[OPD_ERRMSG_SIZE];
};

/* The fields of a signed version record (borrowed). */
struct opd_version_record {
	const char *name;
	uint64_t version;
	const uint8_t *config_hash;     /* 32 bytes */
	const struct opd_kvs *selector; /* sorted */
	int64_t priority;
	uint64_t term;
	uint64_t hlc_wall_ms;
	uint32_t hlc_logical;
};

/*
 * Load the PEM private key at path; when it does not exist and create is set,
 * generate a new Ed25519 key and write it there (mode 0600). Returns 0, or
 * OPD_EIO / OPD_EINVAL (not an Ed25519 key) with s->errmsg set.
 */
int opd_signer_load(struct opd_signer *s, const char *path, int create)
    __attribute__((warn_unused_result));
void opd_signer_fini(struct opd_signer *s);

/* Append the signed bytes of a record to out (exposed for tests and documentation). */
void opd_version_record_bytes(const struct opd_version_record *rec, struct opd_buf *out);

/* Sign a record: 64 bytes into sig. Returns 0 or OPD_EIO. */
int opd_signer_sign(const struct opd_signer *s, const struct opd_version_record *rec,
		    uint8_t sig[OPD_SIGN_SIG_LEN]);

/* Verify sig over rec with a raw public key. 1 valid, 0 not (any malformed input is "not"). */
int opd_sign_verify(const uint8_t public_key[OPD_SIGN_PUBLIC_LEN],
		    const struct opd_version_record *rec, const uint8_t *sig, size_t sig_len);

/* Key id of a raw public key (17 bytes with the NUL). */
void opd_sign_key_id(const uint8_t public_key[OPD_SIGN_PUBLIC_LEN],
		     char out[OPD_SIGN_KEY_ID_LEN + 1]);

#endif
