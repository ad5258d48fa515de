/*
 * ca: the fleet CA. Generated and loaded CAs, key files 0600, the CSR checks
 * (key type and size, signature, subject policy) with their messages, issued
 * certificates checked by the openssl command line (`openssl verify
 * -CAfile`), the server-generated flow, and CRLs.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "hex.h"

#define NOW 1700000000ull

static const uint8_t UID[16] = {0x01, 0x92, 0xf0, 0xc3, 0xd2, 0xa4, 0x7c, 0x1e,
				0x8b, 0x5a, 0x9d, 0x3e, 0x4f, 0x50, 0x61, 0x72};
#define UID_HEX "0192f0c3d2a47c1e8b5a9d3e4f506172"
#define UID_UUID "0192f0c3-d2a4-7c1e-8b5a-9d3e4f506172"

struct fixture {
	char dir[64];
	struct opd_ca ca;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/opd-ca-XXXXXX");
	if (f == NULL || mkdtemp(f->dir) == NULL)
		return -1;
	if (opd_ca_generate(&f->ca, "test fleet CA", NOW, OPD_CA_LIFETIME_S) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	opd_ca_fini(&f->ca);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void path_of(const struct fixture *f, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", f->dir, name);
}

static void write_file(const char *path, const char *text, size_t n)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

/* Run the openssl command line; its output (stdout and stderr) into out; the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[1024];
	size_t used = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (used + 1 < cap) {
		size_t n = fread(out + used, 1, cap - used - 1, p);
		if (n == 0)
			break;
		used += n;
	}
	out[used] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static EVP_PKEY *keygen(const char *type, const char *param, size_t bits)
{
	EVP_PKEY *k;

	if (strcmp(type, "RSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
	else if (strcmp(type, "EC") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, type);
	assert_non_null(k);
	return k;
}

/*
 * A PEM CSR with key's public key, signed by signer (NULL: key itself), with
 * an optional CN, O and subjectAltName ("URI:...", "DNS:...").
 */
static char *make_csr(EVP_PKEY *key, EVP_PKEY *signer, const char *cn, const char *org,
		      const char *san)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	EVP_PKEY *s = signer ? signer : key;
	int id = EVP_PKEY_get_base_id(s);
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *out;
	long n;

	assert_non_null(req);
	assert_int_equal(X509_REQ_set_version(req, 0), 1);
	if (cn)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
							    (const unsigned char *)cn, -1, -1, 0),
				 1);
	if (org)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
							    (const unsigned char *)org, -1, -1, 0),
				 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	if (san) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);

		assert_non_null(e);
		sk_X509_EXTENSION_push(exts, e);
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(req, s, id == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
	n = BIO_get_mem_data(b, &p);
	out = strndup(p, (size_t)n);
	BIO_free(b);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return out;
}

/* Check a CSR for UID: the return code, and the error text must contain want (NULL: ok). */
static void expect_csr(const char *pem, int want_rc, const char *want)
{
	struct opd_ca_csr csr = {0};
	char err[256] = "";
	int rc = opd_ca_check_csr((const uint8_t *)pem, strlen(pem), UID, &csr, err, sizeof err);

	if (rc != want_rc)
		fail_msg("rc %d, want %d (%s)", rc, want_rc, err);
	if (want != NULL && strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	if (rc == 0)
		assert_non_null(csr.pub);
	opd_ca_csr_fini(&csr);
}

static void test_generated_ca(void **state)
{
	struct fixture *f = *state;
	char cert[128], key[128], out[2048];
	struct opd_ca loaded;
	struct stat st;
	int is_ca = 0;

	assert_int_equal(strlen(f->ca.fingerprint), OPD_CA_FP_LEN);
	assert_non_null(strstr(f->ca.subject, "CN=test fleet CA"));
	assert_true(f->ca.not_before <= NOW);
	/* Ten years (and the leap days in them). */
	assert_true(f->ca.not_after - NOW >= 10ull * 365 * 86400);
	assert_int_equal(
	    opd_ca_pem_info(f->ca.cert_pem, strlen(f->ca.cert_pem), NULL, NULL, NULL, NULL, &is_ca),
	    0);
	assert_true(is_ca);

	path_of(f, "ca.pem", cert, sizeof cert);
	path_of(f, "ca.key", key, sizeof key);
	assert_int_equal(opd_ca_save(&f->ca, cert, key), 0);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Never silently replaced. */
	assert_int_equal(opd_ca_save(&f->ca, cert, key), OPD_ECONFLICT);

	/* openssl itself reads it as an ECDSA P-256 CA. */
	assert_int_equal(run(out, sizeof out, "openssl x509 -in '%s' -noout -text", cert), 0);
	assert_non_null(strstr(out, "CA:TRUE"));
	assert_non_null(strstr(out, "prime256v1"));
	assert_non_null(strstr(out, "Certificate Sign, CRL Sign"));
	assert_non_null(strstr(out, "ecdsa-with-SHA256"));

	assert_int_equal(opd_ca_load(&loaded, cert, key), 0);
	assert_string_equal(loaded.fingerprint, f->ca.fingerprint);
	assert_int_equal(loaded.not_after, f->ca.not_after);
	opd_ca_fini(&loaded);
}

static void test_load_or_create(void **state)
{
	struct fixture *f = *state;
	char cert[128], key[128];
	struct opd_ca a, b;
	struct stat st;

	path_of(f, "new.pem", cert, sizeof cert);
	path_of(f, "new.key", key, sizeof key);
	/* Without create, absent files are an error. */
	assert_int_equal(opd_ca_load_or_create(&a, cert, key, 0, "x", NOW), OPD_EIO);
	assert_non_null(strstr(a.errmsg, "new.pem"));
	assert_int_equal(opd_ca_load_or_create(&a, cert, key, 1, "x", NOW), 0);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* The second start loads the same CA. */
	assert_int_equal(opd_ca_load_or_create(&b, cert, key, 1, "x", NOW + 100), 0);
	assert_string_equal(a.fingerprint, b.fingerprint);
	opd_ca_fini(&a);
	opd_ca_fini(&b);
}

static void test_load_refusals(void **state)
{
	struct fixture *f = *state;
	char cert[128], key[128], other_cert[128], other_key[128];
	struct opd_ca other, ca;

	path_of(f, "ca.pem", cert, sizeof cert);
	path_of(f, "ca.key", key, sizeof key);
	assert_int_equal(opd_ca_save(&f->ca, cert, key), 0);

	/* A key others can read. */
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(opd_ca_load(&ca, cert, key), OPD_EINVAL);
	assert_non_null(strstr(ca.errmsg, "chmod 600"));
	assert_int_equal(chmod(key, 0600), 0);

	/* Another CA's key. */
	assert_int_equal(opd_ca_generate(&other, "other", NOW, 86400), 0);
	path_of(f, "other.pem", other_cert, sizeof other_cert);
	path_of(f, "other.key", other_key, sizeof other_key);
	assert_int_equal(opd_ca_save(&other, other_cert, other_key), 0);
	assert_int_equal(opd_ca_load(&ca, cert, other_key), OPD_EINVAL);
	assert_non_null(strstr(ca.errmsg, "does not match"));
	opd_ca_fini(&other);

	/* A leaf certificate is not a CA. */
	{
		EVP_PKEY *k = keygen("EC", "P-256", 0);
		struct opd_ca_leaf leaf = {.serial = 9, .not_before = NOW, .not_after = NOW + 60};
		struct opd_ca_issued is;
		char leafp[128];

		memcpy(leaf.uid, UID, 16);
		assert_int_equal(opd_ca_sign(&f->ca, k, &leaf, &is), 0);
		path_of(f, "leaf.pem", leafp, sizeof leafp);
		write_file(leafp, is.cert_pem, strlen(is.cert_pem));
		assert_int_equal(opd_ca_load(&ca, leafp, key), OPD_EINVAL);
		assert_non_null(strstr(ca.errmsg, "not a CA certificate"));
		opd_ca_issued_fini(&is);
		EVP_PKEY_free(k);
	}
}

static void test_good_csrs(void **state)
{
	struct {
		const char *type, *param;
		size_t bits;
		const char *cn, *san;
	} cases[] = {
	    {"EC", "P-256", 0, NULL, NULL},
	    {"EC", "P-256", 0, UID_HEX, NULL},
	    {"EC", "P-384", 0, UID_UUID, "URI:" OPD_CA_URI_PREFIX UID_HEX},
	    {"ED25519", NULL, 0, NULL, "URI:" OPD_CA_URI_PREFIX UID_UUID},
	    {"RSA", NULL, 2048, UID_HEX, NULL},
	};
	struct opd_ca_csr csr;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		EVP_PKEY *k = keygen(cases[i].type, cases[i].param, cases[i].bits);
		char *pem = make_csr(k, NULL, cases[i].cn, NULL, cases[i].san);

		expect_csr(pem, 0, NULL);
		free(pem);
		EVP_PKEY_free(k);
	}
	/* The key type is reported. */
	{
		EVP_PKEY *k = keygen("EC", "P-384", 0);
		char *pem = make_csr(k, NULL, NULL, NULL, NULL);

		assert_int_equal(
		    opd_ca_check_csr((const uint8_t *)pem, strlen(pem), UID, &csr, err, sizeof err),
		    0);
		assert_string_equal(csr.key_type, "EC P-384");
		opd_ca_csr_fini(&csr);
		free(pem);
		EVP_PKEY_free(k);
	}
}

static void test_bad_csrs(void **state)
{
	EVP_PKEY *ec = keygen("EC", "P-256", 0), *other = keygen("EC", "P-256", 0);
	EVP_PKEY *weak = keygen("RSA", NULL, 1024), *p521 = keygen("EC", "P-521", 0);
	char *pem, big[OPD_CA_MAX_CSR + 2];

	(void)state;
	/* A weak key: refused, and the message says why. */
	pem = make_csr(weak, NULL, NULL, NULL, NULL);
	expect_csr(pem, OPD_EINVAL, "RSA with 1024 bits: too weak, RSA keys need at least 2048");
	free(pem);
	pem = make_csr(p521, NULL, NULL, NULL, NULL);
	expect_csr(pem, OPD_EINVAL, "only P-256 and P-384");
	free(pem);

	/* Signed with another key than the one it carries. */
	pem = make_csr(ec, other, NULL, NULL, NULL);
	expect_csr(pem, OPD_EINVAL, "signature does not verify");
	free(pem);

	/* Subject policy. */
	pem = make_csr(ec, NULL, "my-collector", NULL, NULL);
	expect_csr(pem, OPD_EINVAL, "CN \"my-collector\" is not the agent's instance_uid");
	free(pem);
	pem = make_csr(ec, NULL, "ffffffffffffffffffffffffffffffff", NULL, NULL);
	expect_csr(pem, OPD_EINVAL, "is not the agent's instance_uid: use " UID_HEX);
	free(pem);
	pem = make_csr(ec, NULL, UID_HEX, "Example Org", NULL);
	expect_csr(pem, OPD_EINVAL, "may hold only a CN");
	free(pem);
	pem = make_csr(ec, NULL, NULL, NULL, "DNS:collector.example.com");
	expect_csr(pem, OPD_EINVAL, "subjectAltName that is not allowed");
	free(pem);
	pem = make_csr(ec, NULL, NULL, NULL,
		       "URI:" OPD_CA_URI_PREFIX "ffffffffffffffffffffffffffffffff");
	expect_csr(pem, OPD_EINVAL, "names another agent");
	free(pem);
	pem = make_csr(ec, NULL, NULL, NULL, "URI:https://example.com/");
	expect_csr(pem, OPD_EINVAL, "only " OPD_CA_URI_PREFIX UID_HEX " is allowed");
	free(pem);

	/* Not a CSR at all, empty, too big. */
	expect_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
		   OPD_EINVAL, "does not parse");
	expect_csr("hello", OPD_EINVAL, "does not parse");
	{
		struct opd_ca_csr csr;
		char err[128];

		assert_int_equal(
		    opd_ca_check_csr((const uint8_t *)"", 0, UID, &csr, err, sizeof err),
		    OPD_EINVAL);
		memset(big, 'A', sizeof big);
		assert_int_equal(
		    opd_ca_check_csr((const uint8_t *)big, sizeof big, UID, &csr, err, sizeof err),
		    OPD_ETOOBIG);
	}
	EVP_PKEY_free(ec);
	EVP_PKEY_free(other);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(p521);
}

/* Issue from a CSR of each key type; `openssl verify -CAfile` accepts every certificate. */
static void test_issued_pass_openssl_verify(void **state)
{
	struct fixture *f = *state;
	struct {
		const char *type, *param;
		size_t bits;
	} keys[] = {
	    {"EC", "P-256", 0}, {"EC", "P-384", 0}, {"RSA", NULL, 2048}, {"ED25519", NULL, 0}};
	char ca_path[128], leaf_path[128], out[4096];
	uint64_t now = (uint64_t)time(NULL);

	path_of(f, "ca.pem", ca_path, sizeof ca_path);
	/* A CA valid now, since openssl verify checks dates against the real clock. */
	opd_ca_fini(&f->ca);
	assert_int_equal(opd_ca_generate(&f->ca, "verify CA", now, OPD_CA_LIFETIME_S), 0);
	write_file(ca_path, f->ca.cert_pem, strlen(f->ca.cert_pem));
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		EVP_PKEY *k = keygen(keys[i].type, keys[i].param, keys[i].bits);
		char *csr_pem = make_csr(k, NULL, UID_HEX, NULL, NULL);
		struct opd_ca_leaf leaf = {
		    .serial = 100 + i, .not_before = now - 60, .not_after = now + 86400};
		struct opd_ca_csr csr;
		struct opd_ca_issued is;
		char err[256], fp[OPD_CA_FP_LEN + 1], serial[32];

		memcpy(leaf.uid, UID, 16);
		assert_int_equal(opd_ca_check_csr((const uint8_t *)csr_pem, strlen(csr_pem), UID,
						  &csr, err, sizeof err),
				 0);
		assert_int_equal(opd_ca_sign(&f->ca, csr.pub, &leaf, &is), 0);
		assert_true(opd_ca_signed_by(&f->ca, is.cert_pem, strlen(is.cert_pem)));
		assert_null(is.key_pem);
		assert_int_equal(
		    opd_ca_pem_info(is.cert_pem, strlen(is.cert_pem), fp, NULL, NULL, NULL, NULL),
		    0);
		assert_string_equal(fp, is.fingerprint);
		assert_string_equal(is.subject, "CN=" UID_HEX);

		snprintf(leaf_path, sizeof leaf_path, "%s/leaf%zu.pem", f->dir, i);
		write_file(leaf_path, is.cert_pem, strlen(is.cert_pem));
		if (run(out, sizeof out, "openssl verify -CAfile '%s' -purpose sslclient '%s'",
			ca_path, leaf_path) != 0)
			fail_msg("openssl verify refused the %s certificate: %s", keys[i].type,
				 out);
		assert_non_null(strstr(out, ": OK"));

		/* What it says: serial, clientAuth, the agent's URI SAN, SKI, AKI, the fingerprint.
		 */
		assert_int_equal(run(out, sizeof out,
				     "openssl x509 -in '%s' -noout -text -serial -fingerprint "
				     "-sha256",
				     leaf_path),
				 0);
		snprintf(serial, sizeof serial, "serial=%02zX", 100 + i);
		assert_non_null(strstr(out, serial));
		assert_non_null(strstr(out, "TLS Web Client Authentication"));
		assert_non_null(strstr(out, "URI:" OPD_CA_URI_PREFIX UID_HEX));
		assert_non_null(strstr(out, "X509v3 Subject Key Identifier"));
		assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
		assert_non_null(strstr(out, "CA:FALSE"));
		{
			/* openssl prints the fingerprint as colon-separated upper-case hex. */
			char want[3 * OPD_CA_FP_LEN / 2];
			size_t j = 0;

			for (size_t d = 0; d < OPD_CA_FP_LEN; d += 2) {
				want[j++] = (char)toupper((unsigned char)is.fingerprint[d]);
				want[j++] = (char)toupper((unsigned char)is.fingerprint[d + 1]);
				want[j++] = d + 2 < OPD_CA_FP_LEN ? ':' : '\0';
			}
			assert_non_null(strstr(out, want));
		}
		opd_ca_issued_fini(&is);
		opd_ca_csr_fini(&csr);
		free(csr_pem);
		EVP_PKEY_free(k);
	}
	/* A negative control: another CA's certificate does not verify against this one. */
	{
		struct opd_ca other;
		EVP_PKEY *k = keygen("EC", "P-256", 0);
		struct opd_ca_leaf leaf = {
		    .serial = 1, .not_before = now - 60, .not_after = now + 86400};
		struct opd_ca_issued is;

		memcpy(leaf.uid, UID, 16);
		assert_int_equal(opd_ca_generate(&other, "verify CA", now, 86400), 0);
		assert_int_equal(opd_ca_sign(&other, k, &leaf, &is), 0);
		assert_false(opd_ca_signed_by(&f->ca, is.cert_pem, strlen(is.cert_pem)));
		write_file(leaf_path, is.cert_pem, strlen(is.cert_pem));
		assert_int_not_equal(
		    run(out, sizeof out, "openssl verify -CAfile '%s' '%s'", ca_path, leaf_path),
		    0);
		opd_ca_issued_fini(&is);
		opd_ca_fini(&other);
		EVP_PKEY_free(k);
	}
}

static void test_server_generated(void **state)
{
	struct fixture *f = *state;
	struct opd_ca_leaf leaf = {.serial = 5, .not_before = NOW, .not_after = NOW + 3600};
	struct opd_ca_issued is;
	EVP_PKEY *key;
	X509 *x;
	BIO *b;

	memcpy(leaf.uid, UID, 16);
	assert_int_equal(opd_ca_generate_leaf(&f->ca, &leaf, &is), 0);
	assert_non_null(is.key_pem);
	assert_non_null(strstr(is.key_pem, "-----BEGIN PRIVATE KEY-----"));
	b = BIO_new_mem_buf(is.key_pem, -1);
	key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	b = BIO_new_mem_buf(is.cert_pem, -1);
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(key);
	assert_non_null(x);
	/* The key the agent gets is the one its certificate certifies. */
	assert_int_equal(X509_check_private_key(x, key), 1);
	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
	assert_true(opd_ca_signed_by(&f->ca, is.cert_pem, strlen(is.cert_pem)));
	X509_free(x);
	EVP_PKEY_free(key);
	opd_ca_issued_fini(&is);
	assert_null(is.key_pem);
}

static void test_sign_refuses_bad_fields(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *k = keygen("EC", "P-256", 0);
	struct opd_ca_leaf leaf = {.serial = 0, .not_before = NOW, .not_after = NOW + 60};
	struct opd_ca_issued is;

	assert_int_equal(opd_ca_sign(&f->ca, k, &leaf, &is), OPD_EINVAL);
	leaf.serial = (uint64_t)INT64_MAX + 1;
	assert_int_equal(opd_ca_sign(&f->ca, k, &leaf, &is), OPD_EINVAL);
	leaf.serial = 1;
	leaf.not_after = NOW;
	assert_int_equal(opd_ca_sign(&f->ca, k, &leaf, &is), OPD_EINVAL);
	EVP_PKEY_free(k);
}

static void test_crl(void **state)
{
	struct fixture *f = *state;
	struct opd_ca_revoked rev[] = {
	    {.serial = 7, .revoked_s = NOW + 10, .reason = "keyCompromise"},
	    {.serial = 5, .revoked_s = NOW + 20, .reason = "unspecified"},
	};
	struct opd_buf der, pem;
	const unsigned char *p;
	X509_CRL *crl;
	char path[128], out[4096];

	opd_buf_init(&der);
	opd_buf_init(&pem);
	assert_int_equal(opd_ca_reason_code("superseded"), 4);
	assert_int_equal(opd_ca_reason_code("certificateHold"), -1);
	assert_int_equal(opd_ca_crl(&f->ca, rev, 2, NOW + 30, NOW + 30 + 86400, 42, 0, &der), 0);
	assert_int_equal(opd_ca_crl(&f->ca, rev, 2, NOW + 30, NOW + 30 + 86400, 42, 1, &pem), 0);
	assert_int_equal(opd_ca_crl(&f->ca, rev, 2, NOW, NOW, 1, 0, &der), OPD_EINVAL);

	p = opd_buf_rptr(&der);
	crl = d2i_X509_CRL(NULL, &p, (long)opd_buf_avail(&der));
	assert_non_null(crl);
	{
		/* Signed by the CA, and it lists exactly the revoked serials, sorted. */
		BIO *b = BIO_new_mem_buf(f->ca.cert_pem, -1);
		X509 *cax = PEM_read_bio_X509(b, NULL, NULL, NULL);
		STACK_OF(X509_REVOKED) *list = X509_CRL_get_REVOKED(crl);

		BIO_free(b);
		assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(cax)), 1);
		assert_int_equal(sk_X509_REVOKED_num(list), 2);
		assert_int_equal(ASN1_INTEGER_get(X509_REVOKED_get0_serialNumber(
				     sk_X509_REVOKED_value(list, 0))),
				 5);
		assert_int_equal(ASN1_INTEGER_get(X509_REVOKED_get0_serialNumber(
				     sk_X509_REVOKED_value(list, 1))),
				 7);
		X509_free(cax);
	}
	X509_CRL_free(crl);

	path_of(f, "crl.pem", path, sizeof path);
	write_file(path, (const char *)opd_buf_rptr(&pem), opd_buf_avail(&pem));
	assert_int_equal(run(out, sizeof out, "openssl crl -in '%s' -noout -text", path), 0);
	assert_non_null(strstr(out, "Serial Number: 05"));
	assert_non_null(strstr(out, "Serial Number: 07"));
	assert_non_null(strstr(out, "Key Compromise"));
	assert_non_null(strstr(out, "X509v3 CRL Number"));
	assert_non_null(strstr(out, "42"));
	opd_buf_fini(&der);
	opd_buf_fini(&pem);
}

/* A revoked certificate fails `openssl verify -crl_check`; another one from the same CA passes. */
static void test_crl_with_openssl_verify(void **state)
{
	struct fixture *f = *state;
	uint64_t now = (uint64_t)time(NULL);
	char ca_path[128], crl_path[128], a_path[128], b_path[128], out[4096];
	struct opd_ca_revoked rev = {.serial = 21, .revoked_s = now - 5, .reason = "superseded"};
	struct opd_buf crl;

	opd_ca_fini(&f->ca);
	assert_int_equal(opd_ca_generate(&f->ca, "crl CA", now, OPD_CA_LIFETIME_S), 0);
	path_of(f, "ca.pem", ca_path, sizeof ca_path);
	path_of(f, "crl.pem", crl_path, sizeof crl_path);
	path_of(f, "a.pem", a_path, sizeof a_path);
	path_of(f, "b.pem", b_path, sizeof b_path);
	write_file(ca_path, f->ca.cert_pem, strlen(f->ca.cert_pem));
	for (int i = 0; i < 2; i++) {
		struct opd_ca_leaf leaf = {
		    .serial = 21 + (uint64_t)i, .not_before = now - 60, .not_after = now + 3600};
		struct opd_ca_issued is;

		memcpy(leaf.uid, UID, 16);
		assert_int_equal(opd_ca_generate_leaf(&f->ca, &leaf, &is), 0);
		write_file(i == 0 ? a_path : b_path, is.cert_pem, strlen(is.cert_pem));
		opd_ca_issued_fini(&is);
	}
	opd_buf_init(&crl);
	assert_int_equal(opd_ca_crl(&f->ca, &rev, 1, now - 1, now + 86400, 1, 1, &crl), 0);
	write_file(crl_path, (const char *)opd_buf_rptr(&crl), opd_buf_avail(&crl));
	opd_buf_fini(&crl);
	assert_int_not_equal(run(out, sizeof out,
				 "openssl verify -crl_check -CRLfile '%s' -CAfile '%s' '%s'",
				 crl_path, ca_path, a_path),
			     0);
	assert_non_null(strstr(out, "certificate revoked"));
	if (run(out, sizeof out, "openssl verify -crl_check -CRLfile '%s' -CAfile '%s' '%s'",
		crl_path, ca_path, b_path) != 0)
		fail_msg("openssl verify with the CRL: %s", out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_generated_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_or_create, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_refusals, setup, teardown),
	    cmocka_unit_test(test_good_csrs),
	    cmocka_unit_test(test_bad_csrs),
	    cmocka_unit_test_setup_teardown(test_issued_pass_openssl_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_generated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sign_refuses_bad_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crl_with_openssl_verify, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
