#include "test_ca.h"

#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static EVP_PKEY *new_key(enum opd_tca_key k)
{
	return k == OPD_TCA_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
				: EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (e == NULL)
		return -1;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok == 1 ? 0 : -1;
}

/* An unsigned certificate for key, named cn, issued by issuer (NULL: self-issued). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, long nb, long na)
{
	X509 *x = X509_new();
	uint64_t serial;

	if (x == NULL || RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
		abort();
	serial >>= 1; /* positive */
	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), nb);
	X509_gmtime_adj(X509_getm_notAfter(x), na);
	X509_set_pubkey(x, key);
	if (cn != NULL)
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
					   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
					       : X509_get_subject_name(x));
	return x;
}

static int sign(X509 *x, EVP_PKEY *key)
{
	return X509_sign(x, key, EVP_sha256()) > 0 ? 0 : -1;
}

int opd_tca_init(struct opd_tca *ca, const char *cn, enum opd_tca_key k)
{
	EVP_PKEY *key = new_key(k);
	X509 *x;

	*ca = (struct opd_tca){0};
	if (key == NULL)
		return -1;
	x = make_cert(key, cn, NULL, -3600, 30L * 86400);
	if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") != 0 || sign(x, key) != 0) {
		X509_free(x);
		EVP_PKEY_free(key);
		return -1;
	}
	ca->key = key;
	ca->cert = x;
	return 0;
}

void opd_tca_fini(struct opd_tca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	*ca = (struct opd_tca){0};
}

static int write_cert(X509 *x, const char *path)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = PEM_write_X509(f, x);
	return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

int opd_tca_write_ca(const struct opd_tca *ca, const char *path)
{
	return write_cert(ca->cert, path);
}

static int write_key(void *key, const char *path)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	chmod(path, 0600);
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

int opd_tca_write_key(const struct opd_tca *ca, const char *path)
{
	return write_key(ca->key, path);
}

int opd_tca_issue(const struct opd_tca *ca, const struct opd_tca_leaf *leaf, const char *cert_path,
		  const char *key_path)
{
	EVP_PKEY *key = new_key(leaf->key);
	long nb = leaf->not_before_s, na = leaf->not_after_s;
	char san[512];
	X509 *x;
	int rc = -1;

	if (key == NULL)
		return -1;
	if (nb == 0 && na == 0) {
		nb = -60;
		na = 86400;
	}
	x = make_cert(key, leaf->cn, ca->cert, nb, na);
	if (leaf->server)
		snprintf(san, sizeof(san), "IP:127.0.0.1,DNS:localhost%s%s",
			 leaf->uri_san ? ",URI:" : "", leaf->uri_san ? leaf->uri_san : "");
	else if (leaf->uri_san != NULL)
		snprintf(san, sizeof(san), "URI:%s", leaf->uri_san);
	else
		san[0] = '\0';
	if (add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
	    add_ext(x, ca->cert, NID_ext_key_usage, leaf->server ? "serverAuth" : "clientAuth") !=
		0 ||
	    add_ext(x, ca->cert, NID_authority_key_identifier, "keyid") != 0 ||
	    (san[0] != '\0' && add_ext(x, ca->cert, NID_subject_alt_name, san) != 0) ||
	    sign(x, ca->key) != 0)
		goto out;
	if (write_cert(x, cert_path) != 0)
		goto out;
	rc = write_key(key, key_path);
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int opd_tca_fingerprint(const char *cert_path, char out[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	FILE *f = fopen(cert_path, "r");
	X509 *x;

	if (f == NULL)
		return -1;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL || X509_digest(x, EVP_sha256(), md, &len) != 1 || len != 32) {
		X509_free(x);
		return -1;
	}
	X509_free(x);
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[64] = '\0';
	return 0;
}

int opd_tca_tmpdir(char *out, unsigned cap)
{
	const char *t = getenv("TMPDIR");

	snprintf(out, cap, "%s/opd-tls-XXXXXX", t != NULL ? t : "/tmp");
	return mkdtemp(out) != NULL ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void opd_tca_rmdir(const char *dir)
{
	if (dir != NULL && dir[0] != '\0')
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *opd_tca_csr(const char *cn, int rsa_bits, const char *key_path)
{
	EVP_PKEY *key = rsa_bits ? EVP_RSA_gen((unsigned)rsa_bits) : EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *out = NULL;
	long n;

	if (key == NULL || req == NULL || name == NULL || b == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(b, req) != 1 ||
	    (key_path != NULL && write_key(key, key_path) != 0))
		goto out;
	n = BIO_get_mem_data(b, &p);
	out = calloc(1, (size_t)n + 1);
	if (out != NULL)
		memcpy(out, p, (size_t)n);
out:
	BIO_free(b);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return out;
}
