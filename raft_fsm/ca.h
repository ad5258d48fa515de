/*
 * The fleet CA, with OpenSSL and no I/O but its own key files: generate a CA
 * (ECDSA P-256, 10 years) or load one from PEM files, check an agent's
 * certificate signing request against the subject policy, sign agent client
 * certificates, make a key and certificate for agents that do not send CSRs,
 * and sign CRLs. Everything the replicated state needs from a certificate
 * (serial, validity, SHA-256 fingerprint, PEM) is computed here on the leader
 * before a command is proposed; apply() never signs.
 *
 * The subject policy: a CSR may name the agent only, as a subject CN that is
 * its instance_uid (32 hex digits or UUID form) and/or a URI SAN
 * "urn:opampd:agent:<uid>"; any other subject attribute or SAN is refused.
 * Issued certificates always carry the URI SAN, clientAuth, SKI and AKI.
 * Private keys are never written anywhere but the CA's own key file (0600);
 * the server-generated flow hands the agent's key to the caller only.
 */
#ifndef OPD_CA_H
#define OPD_CA_H

#include "buf.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define OPD_CA_FP_LEN 64           /* SHA-256 fingerprint in hex */
#define OPD_CA_MAX_CSR (16u << 10) /* bytes of a CSR we agree to parse */
#define OPD_CA_MAX_PEM (64u << 10) /* bytes of a certificate file we agree to read */
#define OPD_CA_LIFETIME_S (10ull * 365 * 86400 + 3 * 86400) /* 10 years, leap days included */
#define OPD_CA_URI_PREFIX "urn:opampd:agent:"
#define OPD_CA_SUBJECT_MAX 256

struct evp_pkey_st;
struct x509_st;

struct opd_ca {
	struct evp_pkey_st *key; /* owned: the CA's private key */
	struct x509_st *cert;    /* owned */
	char *cert_pem;          /* owned: the certificate as PEM, NUL-terminated */
	char fingerprint[OPD_CA_FP_LEN + 1];
	char subject[OPD_CA_SUBJECT_MAX]; /* RFC 2253 */
	uint64_t not_before, not_after;   /* seconds since the epoch */
	char errmsg[OPD_ERRMSG_SIZE];
};

/* A checked CSR: the agent's public key and what its subject said. */
struct opd_ca_csr {
	struct evp_pkey_st *pub;          /* owned */
	char key_type[24];                /* "EC P-256", "RSA 3072", "Ed25519", ... */
	char subject[OPD_CA_SUBJECT_MAX]; /* as the CSR gave it (RFC 2253), "" when empty */
};

/* What to put in an agent certificate (borrowed). */
struct opd_ca_leaf {
	uint64_t serial;                /* 1 .. INT64_MAX */
	uint8_t uid[16];                /* the agent's instance_uid */
	uint64_t not_before, not_after; /* seconds since the epoch */
};

/* An issued certificate. */
struct opd_ca_issued {
	char *cert_pem; /* owned */
	char fingerprint[OPD_CA_FP_LEN + 1];
	char subject[OPD_CA_SUBJECT_MAX];
	char *key_pem; /* owned, server-generated flow only: the agent's private key (cleansed on
			  fini); never log or store it */
};

/* One revoked certificate for a CRL. */
struct opd_ca_revoked {
	uint64_t serial;
	uint64_t revoked_s; /* seconds since the epoch */
	const char *reason; /* RFC 5280 reason name (opd_ca_reason_code) */
};

/*
 * Generate a new CA in memory: an ECDSA P-256 key and a self-signed
 * certificate named cn, valid from now_s - 60 for lifetime_s seconds, with a
 * random 16-byte serial. 0 or OPD_EIO (errmsg set).
 */
int opd_ca_generate(struct opd_ca *ca, const char *cn, uint64_t now_s, uint64_t lifetime_s)
    __attribute__((warn_unused_result));

/*
 * Load a CA from PEM files: a CA certificate (basicConstraints CA:TRUE) and its
 * private key, which must match. 0, OPD_EIO (cannot read a file) or OPD_EINVAL
 * (not a CA certificate, key mismatch, unreadable PEM), errmsg set.
 */
int opd_ca_load(struct opd_ca *ca, const char *cert_path, const char *key_path)
    __attribute__((warn_unused_result));

/*
 * Write the CA to cert_path (0644) and key_path (0600). Both must not exist
 * (O_EXCL): a CA is never silently replaced. 0, OPD_ECONFLICT (a file
 * exists), OPD_EIO; on failure neither file is left behind.
 */
int opd_ca_save(struct opd_ca *ca, const char *cert_path, const char *key_path)
    __attribute__((warn_unused_result));

/*
 * Load the CA from the files, or, when both are absent and create is set,
 * generate one (cn, now_s) and save it there. 0, or an OPD_E* with errmsg.
 */
int opd_ca_load_or_create(struct opd_ca *ca, const char *cert_path, const char *key_path,
			  int create, const char *cn, uint64_t now_s)
    __attribute__((warn_unused_result));

/* Release everything; safe on a zeroed or half-built CA. */
void opd_ca_fini(struct opd_ca *ca);

/*
 * Parse and check a CSR (PEM, or DER) for the agent uid: its signature, its
 * key (RSA of at least 2048 bits, EC P-256 or P-384, Ed25519) and the subject
 * policy above. Returns 0 with out filled (release with opd_ca_csr_fini), or
 * OPD_EINVAL / OPD_ETOOBIG (over OPD_CA_MAX_CSR) with a sentence for the
 * agent or operator in err (cap bytes). p is borrowed.
 */
int opd_ca_check_csr(const uint8_t *p, size_t n, const uint8_t uid[16], struct opd_ca_csr *out,
		     char *err, size_t cap) __attribute__((warn_unused_result));
void opd_ca_csr_fini(struct opd_ca_csr *csr);

/*
 * Sign a client certificate for leaf with pub (borrowed; from a checked
 * CSR). Subject CN = the uid in 32 hex digits; SAN URI urn:opampd:agent:<uid>;
 * clientAuth; digitalSignature; CA:FALSE; SKI and AKI. 0 with out filled
 * (release with opd_ca_issued_fini), OPD_EINVAL (serial or validity out of
 * range: errmsg), OPD_EIO.
 */
int opd_ca_sign(struct opd_ca *ca, struct evp_pkey_st *pub, const struct opd_ca_leaf *leaf,
		struct opd_ca_issued *out) __attribute__((warn_unused_result));

/*
 * The server-generated flow: a fresh ECDSA P-256 key for the agent and a
 * certificate for it, as opd_ca_sign. out->key_pem holds the agent's private
 * key (PKCS#8 PEM) for the caller to hand to the agent only.
 */
int opd_ca_generate_leaf(struct opd_ca *ca, const struct opd_ca_leaf *leaf,
			 struct opd_ca_issued *out) __attribute__((warn_unused_result));

void opd_ca_issued_fini(struct opd_ca_issued *out);

/*
 * A CRL signed by the CA listing revoked (borrowed, n entries), with
 * thisUpdate this_s, nextUpdate next_s and the CRL number crl_number,
 * appended to out as PEM (pem set) or DER. 0 or OPD_EIO / OPD_EINVAL.
 */
int opd_ca_crl(struct opd_ca *ca, const struct opd_ca_revoked *revoked, size_t n, uint64_t this_s,
	       uint64_t next_s, uint64_t crl_number, int pem, struct opd_buf *out)
    __attribute__((warn_unused_result));

/* The RFC 5280 CRLReason code of a reason name, or -1 when it is not one. */
int opd_ca_reason_code(const char *name);

/*
 * Facts about a PEM certificate (borrowed, n bytes): SHA-256 fingerprint,
 * subject and validity, and whether it is a CA (basicConstraints). Any out
 * pointer may be NULL. 0 or OPD_EINVAL.
 */
int opd_ca_pem_info(const char *pem, size_t n, char fp[OPD_CA_FP_LEN + 1],
		    char subject[OPD_CA_SUBJECT_MAX], uint64_t *not_before, uint64_t *not_after,
		    int *is_ca);

/*
 * Verify that a PEM certificate was signed by the CA (signature only). 1 yes,
 * 0 no.
 */
int opd_ca_signed_by(const struct opd_ca *ca, const char *pem, size_t n);

#endif
