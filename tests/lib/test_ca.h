/*
 * A certificate authority made at test time with the OpenSSL API: a
 * self-signed CA (ECDSA P-256 or RSA 2048) that issues server certificates
 * (IP 127.0.0.1 and DNS localhost) and client certificates (an agent's
 * instance_uid as CN or URI SAN), valid, expired or not yet valid, written as
 * PEM files (keys 0600). No file in the tree holds a key.
 */
#ifndef OPD_TEST_CA_H
#define OPD_TEST_CA_H

#include <stdbool.h>

enum opd_tca_key { OPD_TCA_EC, OPD_TCA_RSA };

struct opd_tca {
	void *key;  /* EVP_PKEY * */
	void *cert; /* X509 * */
};

struct opd_tca_leaf {
	const char *cn;      /* subject CN (NULL: none) */
	const char *uri_san; /* a URI SAN (NULL: none) */
	bool server;         /* serverAuth with IP:127.0.0.1, DNS:localhost; else clientAuth */
	enum opd_tca_key key;
	long not_before_s; /* offsets from now, in seconds (0 and 0: -60 s to +1 day) */
	long not_after_s;
};

/* A new self-signed CA named cn. 0 or -1. */
int opd_tca_init(struct opd_tca *ca, const char *cn, enum opd_tca_key key);
void opd_tca_fini(struct opd_tca *ca);

/* Write the CA certificate (PEM) to path. 0 or -1. */
int opd_tca_write_ca(const struct opd_tca *ca, const char *path);

/* Write the CA's private key (PEM, 0600) to path, for a daemon that signs with it. 0 or -1. */
int opd_tca_write_key(const struct opd_tca *ca, const char *path);

/* Issue a certificate and key and write them to cert_path and key_path (0600). 0 or -1. */
int opd_tca_issue(const struct opd_tca *ca, const struct opd_tca_leaf *leaf, const char *cert_path,
		  const char *key_path);

/*
 * A CSR (PEM, malloc'd) for CN = cn with a new EC P-256 key, or RSA of
 * rsa_bits when not 0; the key is written to key_path (0600) unless NULL.
 * NULL on failure.
 */
char *opd_tca_csr(const char *cn, int rsa_bits, const char *key_path);

/* The SHA-256 fingerprint (hex) of the first certificate in a PEM file. 0 or -1. */
int opd_tca_fingerprint(const char *cert_path, char out[65]);

/* A fresh directory under $TMPDIR (or /tmp) into out (cap bytes), and its recursive removal. */
int opd_tca_tmpdir(char *out, unsigned cap);
void opd_tca_rmdir(const char *dir);

#endif
