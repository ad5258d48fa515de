#include "ca.h"

#include "hex.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The last second X.509 can say (GeneralizedTime 99991231235959Z). */
#define MAX_TIME_S 253402300799ull

/* OpenSSL's whole error queue after a context string, so no stale entry shows up later. */
static void drain(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void drain(char *errmsg, const char *fmt, ...)
{
	char what[128], text[OPD_ERRMSG_SIZE];
	size_t used = 0;
	unsigned long e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	text[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[160];

		ERR_error_string_n(e, one, sizeof one);
		if (used < sizeof text) {
			int k = snprintf(text + used, sizeof text - used, "%s%s", used ? "; " : "",
					 one);
			used += k > 0 ? (size_t)k : 0;
		}
	}
	if (errmsg != NULL)
		opd_errmsg_printf(errmsg, "%s%s%s", what, text[0] ? ": " : "", text);
}

/* ---- small helpers ---- */

static const EVP_MD *digest_for(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_base_id(key);

	/* EdDSA signs the message itself: no separate digest. */
	if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448)
		return NULL;
	if (id == EVP_PKEY_EC && EVP_PKEY_get_bits(key) > 256)
		return EVP_sha384();
	return EVP_sha256();
}

static void fingerprint_of(X509 *x, char out[OPD_CA_FP_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!X509_digest(x, EVP_sha256(), md, &len) || len != 32) {
		ERR_clear_error();
		memset(md, 0, sizeof md);
	}
	opd_hex_encode(md, 32, out);
}

/* RFC 2253 text of a name into out (cap bytes, truncated). */
static void name_text(const X509_NAME *name, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n;

	out[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_get_mem_data(b, &p);
		if (n > 0)
			snprintf(out, cap, "%.*s", (int)(n < (long)cap ? n : (long)cap - 1), p);
	}
	BIO_free(b);
	ERR_clear_error();
}

static char *cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *out = NULL;
	long n;

	if (b != NULL && PEM_write_bio_X509(b, x) == 1 && (n = BIO_get_mem_data(b, &p)) > 0)
		out = opd_xstrndup(p, (size_t)n);
	BIO_free(b);
	return out;
}

/* Seconds since the epoch of an ASN1_TIME; 0 when it cannot be read. */
static uint64_t time_of(const ASN1_TIME *t)
{
	struct tm tm;
	time_t s;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	s = timegm(&tm);
	return s < 0 ? 0 : (uint64_t)s;
}

static int set_time(ASN1_TIME *t, uint64_t s)
{
	return ASN1_TIME_set(t, (time_t)s) != NULL;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (ext == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/* Fill the CA's derived fields from its certificate. */
static int ca_describe(struct opd_ca *ca)
{
	ca->cert_pem = cert_pem(ca->cert);
	if (ca->cert_pem == NULL) {
		drain(ca->errmsg, "encode the CA certificate");
		return OPD_EIO;
	}
	fingerprint_of(ca->cert, ca->fingerprint);
	name_text(X509_get_subject_name(ca->cert), ca->subject, sizeof ca->subject);
	ca->not_before = time_of(X509_get0_notBefore(ca->cert));
	ca->not_after = time_of(X509_get0_notAfter(ca->cert));
	return 0;
}

/* ---- the CA ---- */

void opd_ca_fini(struct opd_ca *ca)
{
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	free(ca->cert_pem);
	ca->key = NULL;
	ca->cert = NULL;
	ca->cert_pem = NULL;
}

int opd_ca_generate(struct opd_ca *ca, const char *cn, uint64_t now_s, uint64_t lifetime_s)
{
	X509V3_CTX ctx;
	X509_NAME *name = NULL;
	BIGNUM *bn = NULL;
	X509 *x = NULL;
	/* Backdated a little: a verifier whose clock is behind still accepts it. */
	uint64_t nb = now_s > 300 ? now_s - 300 : 0, na = now_s + lifetime_s;
	bool ok;

	*ca = (struct opd_ca){0};
	ERR_clear_error();
	if (na > MAX_TIME_S || lifetime_s == 0) {
		opd_errmsg_printf(ca->errmsg, "CA lifetime out of range");
		return OPD_EINVAL;
	}
	ca->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	x = X509_new();
	name = X509_NAME_new();
	bn = BN_new();
	/* A random serial: two CAs with the same name must not share one. */
	ok = ca->key != NULL && x != NULL && name != NULL && bn != NULL &&
	     X509_set_version(x, X509_VERSION_3) == 1 && BN_rand(bn, 127, BN_RAND_TOP_ONE, 0) &&
	     BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0) == 1 &&
	     X509_set_subject_name(x, name) == 1 && X509_set_issuer_name(x, name) == 1 &&
	     set_time(X509_getm_notBefore(x), nb) && set_time(X509_getm_notAfter(x), na) &&
	     X509_set_pubkey(x, ca->key) == 1;
	if (ok) {
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
		     add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") &&
		     add_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
		     add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") &&
		     X509_sign(x, ca->key, digest_for(ca->key)) > 0;
	}
	X509_NAME_free(name);
	BN_free(bn);
	if (!ok) {
		drain(ca->errmsg, "generate the fleet CA");
		X509_free(x);
		opd_ca_fini(ca);
		return OPD_EIO;
	}
	ca->cert = x;
	if (ca_describe(ca) != 0) {
		opd_ca_fini(ca);
		return OPD_EIO;
	}
	return 0;
}

int opd_ca_load(struct opd_ca *ca, const char *cert_path, const char *key_path)
{
	struct stat st;
	FILE *f;

	*ca = (struct opd_ca){0};
	ERR_clear_error();
	if ((f = fopen(cert_path, "re")) == NULL) {
		opd_errmsg_printf(ca->errmsg, "CA certificate %s: %s", cert_path, strerror(errno));
		return OPD_EIO;
	}
	ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (ca->cert == NULL) {
		drain(ca->errmsg, "CA certificate %s: not a PEM certificate", cert_path);
		goto invalid;
	}
	if (X509_check_ca(ca->cert) < 1) {
		opd_errmsg_printf(
		    ca->errmsg, "%s is not a CA certificate (basicConstraints CA:TRUE is missing)",
		    cert_path);
		goto invalid;
	}
	if ((f = fopen(key_path, "re")) == NULL) {
		opd_errmsg_printf(ca->errmsg, "CA key %s: %s", key_path, strerror(errno));
		opd_ca_fini(ca);
		return OPD_EIO;
	}
	/* A key others can read is a key others may have copied: refuse it, as sshd does. */
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0) {
		fclose(f);
		opd_errmsg_printf(ca->errmsg,
				  "CA key %s is readable by group or others (mode %03o): chmod 600 "
				  "it",
				  key_path, (unsigned)(st.st_mode & 0777));
		goto invalid;
	}
	ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (ca->key == NULL) {
		drain(ca->errmsg, "CA key %s: not an unencrypted PEM private key", key_path);
		goto invalid;
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ERR_clear_error();
		opd_errmsg_printf(ca->errmsg, "CA key %s does not match the certificate %s",
				  key_path, cert_path);
		goto invalid;
	}
	if (ca_describe(ca) != 0) {
		opd_ca_fini(ca);
		return OPD_EIO;
	}
	return 0;
invalid:
	opd_ca_fini(ca);
	return OPD_EINVAL;
}

/* Write len bytes to a new file (O_EXCL) with mode; fsync'd. 0, OPD_ECONFLICT, OPD_EIO. */
static int write_new(char *errmsg, const char *path, const void *p, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	const char *q = p;

	if (fd < 0) {
		opd_errmsg_printf(errmsg, "create %s: %s", path, strerror(errno));
		return errno == EEXIST ? OPD_ECONFLICT : OPD_EIO;
	}
	while (len > 0) {
		ssize_t w = write(fd, q, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		q += w;
		len -= (size_t)w;
	}
	/* A CA that is not on disk would sign certificates nobody can re-check after a restart. */
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	opd_errmsg_printf(errmsg, "write %s: %s", path, strerror(errno ? errno : EIO));
	if (fd >= 0)
		close(fd);
	unlink(path);
	return OPD_EIO;
}

int opd_ca_save(struct opd_ca *ca, const char *cert_path, const char *key_path)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n;
	int rc;

	ERR_clear_error();
	if (b == NULL || PEM_write_bio_PrivateKey(b, ca->key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(b, &p)) <= 0) {
		drain(ca->errmsg, "encode the CA key");
		BIO_free(b);
		return OPD_EIO;
	}
	rc = write_new(ca->errmsg, key_path, p, (size_t)n, 0600);
	/* The memory BIO held the private key: wipe it before it goes back to the allocator. */
	OPENSSL_cleanse(p, (size_t)n);
	BIO_free(b);
	if (rc != 0)
		return rc;
	rc = write_new(ca->errmsg, cert_path, ca->cert_pem, strlen(ca->cert_pem), 0644);
	if (rc != 0)
		unlink(key_path);
	return rc;
}

int opd_ca_load_or_create(struct opd_ca *ca, const char *cert_path, const char *key_path,
			  int create, const char *cn, uint64_t now_s)
{
	bool have_cert = access(cert_path, F_OK) == 0, have_key = access(key_path, F_OK) == 0;
	int rc;

	if (have_cert || have_key || !create)
		return opd_ca_load(ca, cert_path, key_path);
	rc = opd_ca_generate(ca, cn, now_s, OPD_CA_LIFETIME_S);
	if (rc != 0)
		return rc;
	rc = opd_ca_save(ca, cert_path, key_path);
	if (rc == OPD_ECONFLICT) {
		/* Another process created it meanwhile: use that one, never two CAs. */
		opd_ca_fini(ca);
		return opd_ca_load(ca, cert_path, key_path);
	}
	if (rc != 0) {
		char keep[OPD_ERRMSG_SIZE];

		snprintf(keep, sizeof keep, "%s", ca->errmsg);
		opd_ca_fini(ca);
		snprintf(ca->errmsg, sizeof ca->errmsg, "%s", keep);
	}
	return rc;
}

/* ---- CSRs ---- */

void opd_ca_csr_fini(struct opd_ca_csr *csr)
{
	EVP_PKEY_free(csr->pub);
	csr->pub = NULL;
}

/* Printable ASCII only, at most 64 characters: CSR text quoted back in an error. */
static void quote(const unsigned char *s, size_t n, char *out, size_t cap)
{
	size_t j = 0;

	for (size_t i = 0; i < n && i < 64 && j + 1 < cap; i++)
		out[j++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? (char)s[i] : '?';
	out[j] = '\0';
}

static int check_key(EVP_PKEY *pub, struct opd_ca_csr *out, char *err, size_t cap)
{
	int id = EVP_PKEY_get_base_id(pub), bits = EVP_PKEY_get_bits(pub);
	char group[64] = "";
	size_t glen = 0;

	switch (id) {
	case EVP_PKEY_RSA:
		if (bits < 2048) {
			snprintf(err, cap,
				 "the CSR's key is RSA with %d bits: too weak, RSA keys need at "
				 "least 2048 bits",
				 bits);
			return OPD_EINVAL;
		}
		/* Bounded so that checking a CSR costs the node little. */
		if (bits > 8192) {
			snprintf(err, cap, "the CSR's key is RSA with %d bits: at most 8192", bits);
			return OPD_EINVAL;
		}
		snprintf(out->key_type, sizeof out->key_type, "RSA %d", bits);
		return 0;
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof group, &glen))
			group[0] = '\0';
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
			snprintf(out->key_type, sizeof out->key_type, "EC P-256");
			return 0;
		}
		if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
			snprintf(out->key_type, sizeof out->key_type, "EC P-384");
			return 0;
		}
		snprintf(err, cap,
			 "the CSR's key is EC on curve %s: only P-256 and P-384 are accepted",
			 group[0] ? group : "(unknown or explicit parameters)");
		return OPD_EINVAL;
	case EVP_PKEY_ED25519:
		snprintf(out->key_type, sizeof out->key_type, "Ed25519");
		return 0;
	default:
		snprintf(err, cap,
			 "the CSR's key type %s is not accepted: use RSA (2048 bits or more), EC "
			 "P-256 or P-384, or Ed25519",
			 OBJ_nid2sn(id) ? OBJ_nid2sn(id) : "unknown");
		return OPD_EINVAL;
	}
}

/* The subject may hold one CN, which is the agent's uid. */
static int check_subject(X509_REQ *req, const uint8_t uid[16], struct opd_ca_csr *out, char *err,
			 size_t cap)
{
	const X509_NAME *name = X509_REQ_get_subject_name(req);
	int n = name != NULL ? X509_NAME_entry_count(name) : 0, cns = 0;
	char uid_hex[33];

	opd_hex_encode(uid, 16, uid_hex);
	if (name != NULL)
		name_text(name, out->subject, sizeof out->subject);
	for (int i = 0; i < n; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
		int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
		unsigned char *text = NULL;
		uint8_t got[16];
		char shown[80];
		int len;

		if (nid != NID_commonName) {
			const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;

			snprintf(err, cap,
				 "the CSR's subject may hold only a CN equal to the agent's "
				 "instance_uid (%s); it also has %s",
				 uid_hex, sn ? sn : "an unknown attribute");
			return OPD_EINVAL;
		}
		if (++cns > 1) {
			snprintf(err, cap, "the CSR's subject has more than one CN");
			return OPD_EINVAL;
		}
		len = ASN1_STRING_to_UTF8(&text, X509_NAME_ENTRY_get_data(e));
		if (len < 0) {
			ERR_clear_error();
			snprintf(err, cap, "the CSR's CN is not a valid string");
			return OPD_EINVAL;
		}
		quote(text, (size_t)len, shown, sizeof shown);
		bool ok = (size_t)len == strlen((char *)text) &&
			  opd_uid_parse((const char *)text, got) == 0 && memcmp(got, uid, 16) == 0;
		OPENSSL_free(text);
		if (!ok) {
			snprintf(err, cap,
				 "the CSR's CN \"%s\" is not the agent's instance_uid: use %s (or "
				 "its UUID form), or leave the subject empty",
				 shown, uid_hex);
			return OPD_EINVAL;
		}
	}
	return 0;
}

/* Requested SANs: only URI urn:opampd:agent:<uid>. Other requested extensions are never copied. */
static int check_sans(X509_REQ *req, const uint8_t uid[16], char *err, size_t cap)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	const size_t plen = strlen(OPD_CA_URI_PREFIX);
	char uid_hex[33];
	int rc = 0;

	opd_hex_encode(uid, 16, uid_hex);
	for (int i = 0; rc == 0 && i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
		GENERAL_NAMES *names;

		if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name)
			continue;
		names = X509V3_EXT_d2i(ext);
		if (names == NULL) {
			snprintf(err, cap, "the CSR's subjectAltName does not parse");
			rc = OPD_EINVAL;
			break;
		}
		for (int j = 0; rc == 0 && j < sk_GENERAL_NAME_num(names); j++) {
			const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, j);
			const unsigned char *s;
			char shown[80];
			uint8_t got[16];
			char text[64];
			int len;

			if (gn->type != GEN_URI) {
				snprintf(err, cap,
					 "the CSR asks for a subjectAltName that is not allowed: "
					 "only URI:%s%s",
					 OPD_CA_URI_PREFIX, uid_hex);
				rc = OPD_EINVAL;
				break;
			}
			s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
			len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
			quote(s, (size_t)len, shown, sizeof shown);
			if ((size_t)len <= plen || (size_t)len - plen >= sizeof text ||
			    memcmp(s, OPD_CA_URI_PREFIX, plen) != 0) {
				snprintf(err, cap,
					 "the CSR asks for URI \"%s\": only %s%s is allowed", shown,
					 OPD_CA_URI_PREFIX, uid_hex);
				rc = OPD_EINVAL;
				break;
			}
			memcpy(text, s + plen, (size_t)len - plen);
			text[(size_t)len - plen] = '\0';
			if (strlen(text) != (size_t)len - plen || opd_uid_parse(text, got) != 0 ||
			    memcmp(got, uid, 16) != 0) {
				snprintf(err, cap,
					 "the CSR asks for URI \"%s\", which names another agent: "
					 "only %s%s is allowed",
					 shown, OPD_CA_URI_PREFIX, uid_hex);
				rc = OPD_EINVAL;
			}
		}
		GENERAL_NAMES_free(names);
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

int opd_ca_check_csr(const uint8_t *p, size_t n, const uint8_t uid[16], struct opd_ca_csr *out,
		     char *err, size_t cap)
{
	struct opd_ca_csr csr = {0};
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	int rc;

	ERR_clear_error();
	if (n > OPD_CA_MAX_CSR) {
		snprintf(err, cap, "the CSR is %zu bytes: at most %u", n, OPD_CA_MAX_CSR);
		return OPD_ETOOBIG;
	}
	if (p == NULL || n == 0) {
		snprintf(err, cap, "the CSR is empty");
		return OPD_EINVAL;
	}
	if (n >= 10 && memcmp(p, "-----BEGIN", 10) == 0) {
		BIO *b = BIO_new_mem_buf(p, (int)n);

		req = b != NULL ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
	} else {
		const unsigned char *q = p;

		req = d2i_X509_REQ(NULL, &q, (long)n);
	}
	if (req == NULL) {
		ERR_clear_error();
		snprintf(err, cap,
			 "the CSR does not parse: expected a PEM (or DER) PKCS#10 "
			 "certificate request");
		return OPD_EINVAL;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (pub == NULL) {
		ERR_clear_error();
		snprintf(err, cap, "the CSR's public key does not parse");
		rc = OPD_EINVAL;
		goto out;
	}
	/* The key first: a weak key is refused before spending a verification on it. */
	if ((rc = check_key(pub, &csr, err, cap)) != 0)
		goto out;
	if (X509_REQ_verify(req, pub) != 1) {
		ERR_clear_error();
		snprintf(err, cap,
			 "the CSR's signature does not verify: it was not made with the private "
			 "key of the public key it carries, or the request was altered");
		rc = OPD_EINVAL;
		goto out;
	}
	if ((rc = check_subject(req, uid, &csr, err, cap)) != 0 ||
	    (rc = check_sans(req, uid, err, cap)) != 0)
		goto out;
	if (EVP_PKEY_up_ref(pub) != 1) {
		snprintf(err, cap, "out of memory");
		rc = OPD_EIO;
		goto out;
	}
	csr.pub = pub;
	*out = csr;
out:
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

/* ---- issuing ---- */

void opd_ca_issued_fini(struct opd_ca_issued *out)
{
	free(out->cert_pem);
	out->cert_pem = NULL;
	if (out->key_pem != NULL) {
		OPENSSL_cleanse(out->key_pem, strlen(out->key_pem));
		free(out->key_pem);
		out->key_pem = NULL;
	}
}

int opd_ca_sign(struct opd_ca *ca, EVP_PKEY *pub, const struct opd_ca_leaf *leaf,
		struct opd_ca_issued *out)
{
	char uid_hex[33], san[sizeof "URI:" OPD_CA_URI_PREFIX + 32], usage[64];
	X509V3_CTX ctx;
	X509_NAME *name = NULL;
	X509 *x;
	bool ok;

	ERR_clear_error();
	if (leaf->serial == 0 || leaf->serial > (uint64_t)INT64_MAX ||
	    leaf->not_before >= leaf->not_after || leaf->not_after > MAX_TIME_S) {
		opd_errmsg_printf(ca->errmsg, "certificate serial or validity out of range");
		return OPD_EINVAL;
	}
	if (ca->key == NULL || ca->cert == NULL || pub == NULL) {
		opd_errmsg_printf(ca->errmsg, "no CA key to sign with");
		return OPD_EINVAL;
	}
	opd_hex_encode(leaf->uid, 16, uid_hex);
	snprintf(san, sizeof san, "URI:%s%s", OPD_CA_URI_PREFIX, uid_hex);
	/* keyEncipherment only means something for RSA key transport. */
	snprintf(usage, sizeof usage, "critical,digitalSignature%s",
		 EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA ? ",keyEncipherment" : "");
	x = X509_new();
	name = X509_NAME_new();
	ok = x != NULL && name != NULL && X509_set_version(x, X509_VERSION_3) == 1 &&
	     ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), leaf->serial) == 1 &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)uid_hex,
					-1, -1, 0) == 1 &&
	     X509_set_subject_name(x, name) == 1 &&
	     X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) == 1 &&
	     set_time(X509_getm_notBefore(x), leaf->not_before) &&
	     set_time(X509_getm_notAfter(x), leaf->not_after) && X509_set_pubkey(x, pub) == 1;
	X509_NAME_free(name);
	if (ok) {
		X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
		ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
		     add_ext(x, &ctx, NID_key_usage, usage) &&
		     add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") &&
		     add_ext(x, &ctx, NID_subject_alt_name, san) &&
		     add_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
		     add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") &&
		     X509_sign(x, ca->key, digest_for(ca->key)) > 0;
	}
	if (!ok) {
		drain(ca->errmsg, "sign the certificate");
		X509_free(x);
		return OPD_EIO;
	}
	*out = (struct opd_ca_issued){0};
	out->cert_pem = cert_pem(x);
	if (out->cert_pem == NULL) {
		drain(ca->errmsg, "encode the certificate");
		X509_free(x);
		return OPD_EIO;
	}
	fingerprint_of(x, out->fingerprint);
	name_text(X509_get_subject_name(x), out->subject, sizeof out->subject);
	X509_free(x);
	return 0;
}

int opd_ca_generate_leaf(struct opd_ca *ca, const struct opd_ca_leaf *leaf,
			 struct opd_ca_issued *out)
{
	EVP_PKEY *key;
	BIO *b;
	char *p = NULL;
	long n;
	int rc;

	ERR_clear_error();
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (key == NULL) {
		drain(ca->errmsg, "generate the agent's key");
		return OPD_EIO;
	}
	rc = opd_ca_sign(ca, key, leaf, out);
	if (rc != 0) {
		EVP_PKEY_free(key);
		return rc;
	}
	b = BIO_new(BIO_s_mem());
	if (b == NULL || PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(b, &p)) <= 0) {
		drain(ca->errmsg, "encode the agent's key");
		opd_ca_issued_fini(out);
		rc = OPD_EIO;
	} else {
		out->key_pem = opd_xstrndup(p, (size_t)n);
		OPENSSL_cleanse(p, (size_t)n);
	}
	BIO_free(b);
	EVP_PKEY_free(key);
	return rc;
}

/* ---- CRLs ---- */

static const struct {
	const char *name;
	int code;
} reasons[] = {
    {"unspecified", CRL_REASON_UNSPECIFIED},
    {"keyCompromise", CRL_REASON_KEY_COMPROMISE},
    {"cACompromise", CRL_REASON_CA_COMPROMISE},
    {"affiliationChanged", CRL_REASON_AFFILIATION_CHANGED},
    {"superseded", CRL_REASON_SUPERSEDED},
    {"cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION},
    {"privilegeWithdrawn", CRL_REASON_PRIVILEGE_WITHDRAWN},
};

int opd_ca_reason_code(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (strcmp(reasons[i].name, name) == 0)
			return reasons[i].code;
	return -1;
}

static int add_revoked(X509_CRL *crl, const struct opd_ca_revoked *r)
{
	X509_REVOKED *rev = X509_REVOKED_new();
	ASN1_INTEGER *serial = ASN1_INTEGER_new();
	ASN1_TIME *when = ASN1_TIME_new();
	ASN1_ENUMERATED *reason = NULL;
	int code = opd_ca_reason_code(r->reason);
	bool ok;

	ok = rev != NULL && serial != NULL && when != NULL &&
	     ASN1_INTEGER_set_uint64(serial, r->serial) == 1 &&
	     X509_REVOKED_set_serialNumber(rev, serial) == 1 && set_time(when, r->revoked_s) &&
	     X509_REVOKED_set_revocationDate(rev, when) == 1;
	/* RFC 5280 5.3.1: the reason code "unspecified" SHOULD be absent. */
	if (ok && code > 0) {
		reason = ASN1_ENUMERATED_new();
		ok = reason != NULL && ASN1_ENUMERATED_set(reason, code) == 1 &&
		     X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) == 1;
	}
	if (ok)
		ok = X509_CRL_add0_revoked(crl, rev) == 1;
	if (!ok)
		X509_REVOKED_free(rev);
	ASN1_INTEGER_free(serial);
	ASN1_TIME_free(when);
	ASN1_ENUMERATED_free(reason);
	return ok;
}

int opd_ca_crl(struct opd_ca *ca, const struct opd_ca_revoked *revoked, size_t n, uint64_t this_s,
	       uint64_t next_s, uint64_t crl_number, int pem, struct opd_buf *out)
{
	X509_CRL *crl;
	ASN1_TIME *t1 = NULL, *t2 = NULL;
	ASN1_INTEGER *num = NULL;
	X509_EXTENSION *aki = NULL;
	X509V3_CTX ctx;
	BIO *b = NULL;
	char *p = NULL;
	long len;
	bool ok;

	ERR_clear_error();
	if (next_s <= this_s || next_s > MAX_TIME_S) {
		opd_errmsg_printf(ca->errmsg, "CRL validity out of range");
		return OPD_EINVAL;
	}
	crl = X509_CRL_new();
	t1 = ASN1_TIME_new();
	t2 = ASN1_TIME_new();
	num = ASN1_INTEGER_new();
	ok = crl != NULL && t1 != NULL && t2 != NULL && num != NULL &&
	     X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
	     X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) == 1 &&
	     set_time(t1, this_s) && set_time(t2, next_s) &&
	     X509_CRL_set1_lastUpdate(crl, t1) == 1 && X509_CRL_set1_nextUpdate(crl, t2) == 1;
	for (size_t i = 0; ok && i < n; i++)
		ok = add_revoked(crl, &revoked[i]);
	if (ok) {
		X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
		aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
		ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1 &&
		     ASN1_INTEGER_set_uint64(num, crl_number) == 1 &&
		     X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1 &&
		     X509_CRL_sort(crl) == 1 &&
		     X509_CRL_sign(crl, ca->key, digest_for(ca->key)) > 0;
	}
	if (ok) {
		b = BIO_new(BIO_s_mem());
		ok = b != NULL &&
		     (pem ? PEM_write_bio_X509_CRL(b, crl) : i2d_X509_CRL_bio(b, crl)) == 1 &&
		     (len = BIO_get_mem_data(b, &p)) > 0;
		if (ok)
			opd_buf_append(out, p, (size_t)len);
	}
	if (!ok)
		drain(ca->errmsg, "sign the CRL");
	BIO_free(b);
	X509_EXTENSION_free(aki);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t1);
	ASN1_TIME_free(t2);
	X509_CRL_free(crl);
	return ok ? 0 : OPD_EIO;
}

/* ---- certificates as text ---- */

static X509 *parse_pem(const char *pem, size_t n)
{
	BIO *b;
	X509 *x;

	if (pem == NULL || n == 0 || n > OPD_CA_MAX_PEM)
		return NULL;
	b = BIO_new_mem_buf(pem, (int)n);
	x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	ERR_clear_error();
	return x;
}

int opd_ca_pem_info(const char *pem, size_t n, char fp[OPD_CA_FP_LEN + 1],
		    char subject[OPD_CA_SUBJECT_MAX], uint64_t *not_before, uint64_t *not_after,
		    int *is_ca)
{
	X509 *x = parse_pem(pem, n);

	if (x == NULL)
		return OPD_EINVAL;
	if (fp != NULL)
		fingerprint_of(x, fp);
	if (subject != NULL)
		name_text(X509_get_subject_name(x), subject, OPD_CA_SUBJECT_MAX);
	if (not_before != NULL)
		*not_before = time_of(X509_get0_notBefore(x));
	if (not_after != NULL)
		*not_after = time_of(X509_get0_notAfter(x));
	if (is_ca != NULL)
		*is_ca = X509_check_ca(x) >= 1;
	X509_free(x);
	ERR_clear_error();
	return 0;
}

int opd_ca_signed_by(const struct opd_ca *ca, const char *pem, size_t n)
{
	X509 *x = parse_pem(pem, n);
	int ok;

	if (x == NULL || ca->key == NULL)
		return 0;
	ok = X509_verify(x, ca->key) == 1;
	X509_free(x);
	ERR_clear_error();
	return ok;
}
