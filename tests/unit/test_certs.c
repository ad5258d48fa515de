/*
 * certs: the certificate service over the state machine without a node (each
 * write is applied before the call returns, through the same apply() as on
 * every replica): issue → list → revoke → CRL, the server-generated flow,
 * idempotent retries, CA rotation with an overlap, rotations, a duplicate
 * serial refused as a result, and identical store dumps for two stores fed
 * the same commands (and after a snapshot round trip).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "admin.h"
#include "ca.h"
#include "certs.h"
#include "cmd.h"
#include "configs.h"
#include "harness.h"
#include "hex.h"

static const uint8_t UID_A[16] = {0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
static const uint8_t UID_B[16] = {0xb2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};

struct fixture {
	char dir[64];
	struct opd_fake_clock clock;
	struct opd_configs configs;
	struct opd_certs certs;
	int changes;
};

/* A copy of a result, with the borrowed strings copied too. */
struct answer {
	int called;
	struct opd_cert_result res;
	char cert_pem[8192];
	char key_pem[1024];
};

static void capture(void *data, const struct opd_cert_result *res)
{
	struct answer *a = data;

	a->called++;
	a->res = *res;
	snprintf(a->cert_pem, sizeof a->cert_pem, "%s", res->cert_pem ? res->cert_pem : "");
	snprintf(a->key_pem, sizeof a->key_pem, "%s", res->key_pem ? res->key_pem : "");
	a->res.cert_pem = a->res.key_pem = NULL;
}

static void on_changed(void *data, const struct opd_apply_result *res)
{
	(void)res;
	((struct fixture *)data)->changes++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct opd_certs_options o = {.create = 1};

	snprintf(f->dir, sizeof f->dir, "/tmp/opd-certs-XXXXXX");
	if (f == NULL || mkdtemp(f->dir) == NULL)
		return -1;
	opd_fake_clock_init(&f->clock, 1000);
	if (opd_configs_open(&f->configs, ":memory:", &f->clock.clock) != 0)
		return -1;
	o.dir = f->dir;
	o.lifetime_s = 30 * 86400;
	if (opd_certs_init(&f->certs, &f->configs, &f->clock.clock, &o) != 0)
		return -1;
	f->certs.changed = on_changed;
	f->certs.changed_data = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	opd_certs_fini(&f->certs);
	opd_configs_close(&f->configs);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* A CSR for uid (CN = its hex), EC P-256. Caller frees. */
static char *csr_for(const uint8_t uid[16])
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *b = BIO_new(BIO_s_mem());
	char hex[33], *p = NULL, *out;
	long n;

	opd_hex_encode(uid, 16, hex);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						    (const unsigned char *)hex, -1, -1, 0),
			 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, k), 1);
	assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
	n = BIO_get_mem_data(b, &p);
	out = strndup(p, (size_t)n);
	BIO_free(b);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	return out;
}

static void issue(struct fixture *f, const uint8_t uid[16], const uint8_t *request_id,
		  struct answer *a)
{
	char *csr = csr_for(uid);

	memset(a, 0, sizeof *a);
	assert_int_equal(opd_certs_issue_csr(&f->certs, uid, (const uint8_t *)csr, strlen(csr),
					     "csr", NULL, "test", request_id, capture, a),
			 0);
	assert_int_equal(a->called, 1); /* answered before returning */
	free(csr);
}

static int count_cb(void *data, const struct opd_cert_info *c)
{
	(void)c;
	(*(int *)data)++;
	return 0;
}

static int count(struct fixture *f, const struct opd_cert_filter *flt)
{
	int n = 0;

	assert_int_equal(opd_store_foreach_certificate(&f->configs.store, flt, count_cb, &n), 0);
	return n;
}

static void dump(struct opd_store *st, struct opd_buf *out)
{
	opd_buf_init(out);
	assert_int_equal(opd_store_dump(st, out), 0);
	opd_buf_append_byte(out, '\0');
}

/* Serial numbers of the certificates a DER CRL lists, in order, into out; their count. */
static int crl_serials(const struct opd_buf *der, const struct opd_ca *ca, uint64_t *out, int cap)
{
	const unsigned char *p = opd_buf_rptr(der);
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)opd_buf_avail(der));
	BIO *b = BIO_new_mem_buf(ca->cert_pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	STACK_OF(X509_REVOKED) * list;
	int n;

	assert_non_null(crl);
	assert_non_null(x);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(x)), 1);
	list = X509_CRL_get_REVOKED(crl);
	n = sk_X509_REVOKED_num(list);
	for (int i = 0; i < n && i < cap; i++) {
		uint64_t v = 0;
		assert_int_equal(ASN1_INTEGER_get_uint64(&v, X509_REVOKED_get0_serialNumber(
								 sk_X509_REVOKED_value(list, i))),
				 1);
		out[i] = v;
	}
	X509_free(x);
	BIO_free(b);
	X509_CRL_free(crl);
	return n < 0 ? 0 : n;
}

static void test_issue_list_revoke_crl(void **state)
{
	struct fixture *f = *state;
	struct opd_ca_info active;
	struct opd_cert_info info;
	struct answer a, b, r;
	struct opd_buf der;
	uint64_t serials[8];
	char uid_a[33];
	struct stat st;
	char path[128];

	/* The first start wrote the main CA (key 0600) next to the data. */
	snprintf(path, sizeof path, "%s/ca.key", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	issue(f, UID_A, NULL, &a);
	assert_int_equal(a.res.status, 0);
	assert_int_equal(a.res.serial, 1);
	assert_non_null(strstr(a.cert_pem, "-----BEGIN CERTIFICATE-----"));
	assert_string_equal(a.key_pem, ""); /* a CSR's key stays with the agent */
	assert_int_equal(strlen(a.res.fingerprint), OPD_CA_FP_LEN);
	assert_true(a.res.index > 0);
	/* The main CA was registered (active) before the certificate, in log order. */
	assert_int_equal(opd_store_active_ca(&f->configs.store, &active), 0);
	assert_string_equal(active.fingerprint, f->certs.keys[0].fingerprint);
	opd_ca_info_fini(&active);
	assert_true(opd_ca_signed_by(&f->certs.keys[0], a.cert_pem, strlen(a.cert_pem)));
	/* Validity: stamped by the leader from its clock, with the configured lifetime. */
	assert_int_equal(a.res.not_before, 1700000001ull - OPD_CERTS_BACKDATE_S);
	assert_int_equal(a.res.not_after, 1700000001ull + 30 * 86400);

	issue(f, UID_B, NULL, &b);
	assert_int_equal(b.res.status, 0);
	assert_int_equal(b.res.serial, 2);
	opd_fake_clock_advance(&f->clock, 1000 * 86400);
	issue(f, UID_A, NULL, &r);
	assert_int_equal(r.res.serial, 3);

	/* What is recorded: everything but a key. */
	assert_int_equal(opd_store_get_certificate(&f->configs.store, 1, &info), 0);
	opd_hex_encode(UID_A, 16, uid_a);
	assert_string_equal(info.instance_uid, uid_a);
	assert_string_equal(info.fingerprint, a.res.fingerprint);
	assert_string_equal(info.cert_pem, a.cert_pem);
	assert_string_equal(info.reason, "csr");
	assert_string_equal(info.ca_fingerprint, f->certs.keys[0].fingerprint);
	assert_string_equal(info.subject, "CN="
					  "a1000000000000000000000000000001");
	assert_false(info.revoked);
	opd_cert_info_fini(&info);

	/* Listing by agent and by expiry. */
	assert_int_equal(count(f, NULL), 3);
	assert_int_equal(count(f, &(struct opd_cert_filter){.instance_uid = uid_a}), 2);
	assert_int_equal(
	    count(f, &(struct opd_cert_filter){.expiring_before = a.res.not_after, .by_expiry = 1}),
	    2);
	assert_int_equal(count(f, &(struct opd_cert_filter){.valid_at = a.res.not_after + 1}), 1);

	/* Revoke: a bad reason, an unknown serial, then serial 1 (twice). */
	memset(&r, 0, sizeof r);
	assert_int_equal(opd_certs_revoke(&f->certs, 1, "because", "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_EINVAL);
	assert_non_null(strstr(r.res.message, "keyCompromise"));
	assert_int_equal(opd_certs_revoke(&f->certs, 99, NULL, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ENOTFOUND);
	assert_int_equal(opd_certs_revoke(&f->certs, 1, "keyCompromise", "test", NULL, capture, &r),
			 0);
	assert_int_equal(r.res.status, 0);
	assert_int_equal(r.res.serial, 1);
	assert_int_equal(opd_certs_revoke(&f->certs, 1, NULL, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ECONFLICT);
	assert_int_equal(opd_store_get_certificate(&f->configs.store, 1, &info), 0);
	assert_true(info.revoked);
	assert_string_equal(info.revoke_reason, "keyCompromise");
	opd_cert_info_fini(&info);
	assert_int_equal(count(f, &(struct opd_cert_filter){.exclude_revoked = 1}), 2);

	/* The CRL, signed by the active CA, lists serial 1 only. */
	opd_buf_init(&der);
	assert_int_equal(opd_certs_crl(&f->certs, NULL, 0, &der), 0);
	assert_int_equal(crl_serials(&der, &f->certs.keys[0], serials, 8), 1);
	assert_int_equal(serials[0], 1);
	opd_buf_fini(&der);
	opd_buf_init(&der);
	assert_int_equal(opd_certs_crl(&f->certs, "all", 1, &der), 0);
	assert_non_null(strstr((const char *)opd_buf_rptr(&der), "-----BEGIN X509 CRL-----"));
	assert_int_equal(opd_certs_crl(&f->certs, "all", 0, &der), OPD_EINVAL);
	opd_buf_fini(&der);

	/* Every applied certificate write was announced. */
	assert_true(f->changes >= 5);
}

static void test_bad_csr_changes_nothing(void **state)
{
	struct fixture *f = *state;
	char *csr = csr_for(UID_B);
	struct opd_buf before, after;
	struct answer a = {0};

	issue(f, UID_A, NULL, &a);
	dump(&f->configs.store, &before);
	memset(&a, 0, sizeof a);
	/* UID_B's CSR presented for UID_A: the CN names another agent. */
	assert_int_equal(opd_certs_issue_csr(&f->certs, UID_A, (const uint8_t *)csr, strlen(csr),
					     "csr", NULL, "test", NULL, capture, &a),
			 0);
	assert_int_equal(a.res.status, OPD_EINVAL);
	assert_non_null(strstr(a.res.message, "is not the agent's instance_uid"));
	assert_int_equal(opd_certs_issue_csr(&f->certs, UID_A, (const uint8_t *)"junk", 4, "csr",
					     NULL, "test", NULL, capture, &a),
			 0);
	assert_int_equal(a.res.status, OPD_EINVAL);
	assert_int_equal(opd_certs_issue_csr(&f->certs, UID_A, (const uint8_t *)csr, strlen(csr),
					     "server", NULL, "test", NULL, capture, &a),
			 0);
	assert_int_equal(a.res.status, OPD_EINVAL);
	dump(&f->configs.store, &after);
	assert_string_equal((const char *)opd_buf_rptr(&before),
			    (const char *)opd_buf_rptr(&after));
	opd_buf_fini(&before);
	opd_buf_fini(&after);
	free(csr);
}

static void test_server_generated_and_idempotent(void **state)
{
	struct fixture *f = *state;
	const uint8_t rid[OPD_REQUEST_ID_LEN] = {7, 7, 7};
	struct answer a = {0}, again = {0}, c2;
	struct opd_buf d;

	assert_int_equal(
	    opd_certs_issue_server(&f->certs, UID_B, "server", NULL, "test", NULL, capture, &a), 0);
	assert_int_equal(a.res.status, 0);
	assert_non_null(strstr(a.key_pem, "-----BEGIN PRIVATE KEY-----"));
	{
		BIO *kb = BIO_new_mem_buf(a.key_pem, -1), *cb = BIO_new_mem_buf(a.cert_pem, -1);
		EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
		X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);

		assert_int_equal(X509_check_private_key(x, k), 1);
		X509_free(x);
		EVP_PKEY_free(k);
		BIO_free(kb);
		BIO_free(cb);
	}
	/* The key went to the callback only: nothing stored holds it. */
	dump(&f->configs.store, &d);
	assert_null(strstr((const char *)opd_buf_rptr(&d), "PRIVATE KEY"));
	opd_buf_fini(&d);

	/* A retry with the same request id gets the first certificate, not a second one. */
	issue(f, UID_A, rid, &c2);
	assert_int_equal(c2.res.status, 0);
	assert_false(c2.res.duplicate);
	issue(f, UID_A, rid, &again);
	assert_int_equal(again.res.status, 0);
	assert_true(again.res.duplicate);
	assert_int_equal(again.res.serial, c2.res.serial);
	assert_string_equal(again.cert_pem, c2.cert_pem);
	assert_string_equal(again.res.fingerprint, c2.res.fingerprint);
	assert_int_equal(count(f, NULL), 2);
}

static int ca_count_cb(void *data, const struct opd_ca_info *c)
{
	(void)c;
	(*(int *)data)++;
	return 0;
}

static int pem_count(const struct opd_buf *b)
{
	const char *p = (const char *)opd_buf_rptr(b), *end = p + opd_buf_avail(b);
	int n = 0;

	while ((p = memmem(p, (size_t)(end - p), "-----BEGIN CERTIFICATE-----", 27)) != NULL) {
		n++;
		p += 27;
	}
	return n;
}

static void test_ca_rotation_overlap(void **state)
{
	struct fixture *f = *state;
	char old_fp[OPD_CA_FP_LEN + 1], new_fp[OPD_CA_FP_LEN + 1];
	struct answer a = {0}, rot = {0}, after = {0}, r = {0};
	struct opd_ca_info info;
	struct opd_buf bundle;
	struct stat st;
	int n = 0;

	issue(f, UID_A, NULL, &a);
	snprintf(old_fp, sizeof old_fp, "%s", f->certs.keys[0].fingerprint);
	assert_int_equal(opd_certs_rotate_ca(&f->certs, NULL, NULL, "test", NULL, capture, &rot),
			 0);
	assert_int_equal(rot.res.status, 0);
	snprintf(new_fp, sizeof new_fp, "%s", rot.res.fingerprint);
	assert_string_not_equal(new_fp, old_fp);
	/* The new key is on disk, 0600, and named in the answer (for the other voters). */
	assert_int_equal(stat(rot.res.key_file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_non_null(opd_certs_key(&f->certs, new_fp));

	/* Overlap: the new CA is active, the old one still trusted; the bundle has both. */
	assert_int_equal(opd_store_get_ca(&f->configs.store, old_fp, &info), 0);
	assert_string_equal(info.state, "trusted");
	opd_ca_info_fini(&info);
	assert_int_equal(opd_store_active_ca(&f->configs.store, &info), 0);
	assert_string_equal(info.fingerprint, new_fp);
	opd_ca_info_fini(&info);
	opd_buf_init(&bundle);
	assert_int_equal(opd_certs_bundle(&f->certs, &bundle), 0);
	assert_int_equal(pem_count(&bundle), 2);
	opd_buf_fini(&bundle);

	/* New certificates come from the new CA. */
	issue(f, UID_A, NULL, &after);
	assert_int_equal(after.res.status, 0);
	assert_true(opd_ca_signed_by(opd_certs_key(&f->certs, new_fp), after.cert_pem,
				     strlen(after.cert_pem)));
	assert_false(opd_ca_signed_by(opd_certs_key(&f->certs, old_fp), after.cert_pem,
				      strlen(after.cert_pem)));

	/* The active CA cannot be retired; the old one can, and leaves the bundle. */
	assert_int_equal(opd_certs_retire_ca(&f->certs, new_fp, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ECONFLICT);
	assert_non_null(strstr(r.res.message, "active CA"));
	assert_int_equal(opd_certs_retire_ca(&f->certs, old_fp, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, 0);
	assert_int_equal(opd_certs_retire_ca(&f->certs, old_fp, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ECONFLICT);
	assert_int_equal(opd_certs_activate_ca(&f->certs, old_fp, "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ECONFLICT);
	assert_int_equal(opd_certs_retire_ca(&f->certs, "00", "test", NULL, capture, &r), 0);
	assert_int_equal(r.res.status, OPD_ENOTFOUND);
	opd_buf_init(&bundle);
	assert_int_equal(opd_certs_bundle(&f->certs, &bundle), 0);
	assert_int_equal(pem_count(&bundle), 1);
	assert_non_null(strstr((const char *)opd_buf_rptr(&bundle),
			       opd_certs_key(&f->certs, new_fp)->cert_pem));
	opd_buf_fini(&bundle);
	assert_int_equal(opd_store_foreach_ca(&f->configs.store, ca_count_cb, &n), 0);
	assert_int_equal(n, 2); /* the retired one stays on record */

	/* A restart finds the rotated CA's key in the data directory. */
	{
		struct opd_certs again;
		struct opd_certs_options o = {.dir = f->dir, .create = 1};

		opd_certs_fini(&f->certs);
		assert_int_equal(opd_certs_init(&again, &f->configs, &f->clock.clock, &o), 0);
		assert_int_equal(again.n_keys, 2);
		assert_string_equal(again.keys[0].fingerprint, old_fp);
		assert_non_null(opd_certs_key(&again, new_fp));
		f->certs = again;
	}
}

static void test_rotation_record(void **state)
{
	struct fixture *f = *state;
	const uint8_t rid[OPD_REQUEST_ID_LEN] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
	struct opd_rotation_info info;
	struct answer a = {0}, again = {0};
	struct opd_kvs sel;

	opd_kvs_init(&sel);
	opd_kvs_add(&sel, "service.name", "checkout");
	opd_kvs_add(&sel, "env", "prod");
	assert_int_equal(opd_certs_start_rotation(&f->certs, &sel, "test", rid, capture, &a), 0);
	assert_int_equal(a.res.status, 0);
	assert_string_equal(a.res.name, "deadbeef01020304");
	assert_int_equal(opd_certs_start_rotation(&f->certs, &sel, "test", rid, capture, &again),
			 0);
	assert_true(again.res.duplicate);
	assert_string_equal(again.res.name, "deadbeef01020304");
	assert_int_equal(opd_store_get_rotation(&f->configs.store, a.res.name, &info), 0);
	assert_int_equal(info.selector.n, 2);
	assert_string_equal(info.selector.v[0].key, "env");
	assert_string_equal(info.actor, "test");
	opd_rotation_info_fini(&info);
	opd_kvs_fini(&sel);
	/* A selector with an empty key is refused before proposing. */
	opd_kvs_init(&sel);
	opd_kvs_add(&sel, "", "x");
	assert_int_equal(opd_certs_start_rotation(&f->certs, &sel, "test", NULL, capture, &a), 0);
	assert_int_equal(a.res.status, OPD_EINVAL);
	opd_kvs_fini(&sel);
}

/* ---- commands applied directly, as every replica does ---- */

static void apply_bytes(struct opd_fsm *fsm, const struct opd_buf *payload,
			const struct opd_apply_result **out)
{
	struct raft_buffer buf = {(void *)opd_buf_rptr(payload), opd_buf_avail(payload)};
	uint64_t index = opd_fsm_applied_index(fsm) + 1;
	void *result = NULL;

	assert_int_equal(fsm->raft.apply(&fsm->raft, &buf, &result), 0);
	*out = opd_fsm_result(fsm, index);
	assert_non_null(*out);
}

/* An IssueCertificate for an existing issuance's fields with another serial / fingerprint. */
static void issue_cmd(const struct opd_cert_info *c, uint64_t serial, const char *fingerprint,
		      uint64_t ts, struct opd_buf *out)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__IssueCertificate op = OPAMPD__V1__ISSUE_CERTIFICATE__INIT;
	uint8_t uid[16];

	assert_int_equal(opd_hex_decode(c->instance_uid, uid, 16), 0);
	cmd.hlc_wall_ms = ts;
	cmd.actor = "test";
	cmd.term = 1;
	op.serial = serial;
	op.instance_uid.data = uid;
	op.instance_uid.len = 16;
	op.subject = c->subject;
	op.not_before = c->not_before;
	op.not_after = c->not_after;
	op.fingerprint = (char *)fingerprint;
	op.cert_pem = c->cert_pem;
	op.reason = "renewal";
	op.ca_fingerprint = (char *)c->ca_fingerprint;
	op.rotation_id = "";
	cmd.op_case = OPAMPD__V1__COMMAND__OP_ISSUE_CERTIFICATE;
	cmd.issue_certificate = &op;
	opd_buf_init(out);
	assert_int_equal(opd_cmd_encode(&cmd, out), 0);
}

static void test_duplicate_serial_is_a_result(void **state)
{
	struct fixture *f = *state;
	const struct opd_apply_result *res;
	struct opd_cert_info c;
	struct opd_buf payload, before, after;
	char other_fp[OPD_CA_FP_LEN + 1];
	struct answer a;
	uint64_t applied;

	issue(f, UID_A, NULL, &a);
	assert_int_equal(opd_store_get_certificate(&f->configs.store, a.res.serial, &c), 0);
	dump(&f->configs.store, &before);
	applied = opd_fsm_applied_index(&f->configs.fsm);

	/* Serial 1 again (a confused or malicious leader): refused, recorded as refused. */
	memset(other_fp, 'e', OPD_CA_FP_LEN);
	other_fp[OPD_CA_FP_LEN] = '\0';
	issue_cmd(&c, a.res.serial, other_fp, 1700000500000ull, &payload);
	apply_bytes(&f->configs.fsm, &payload, &res);
	assert_int_equal(res->status, OPD_APPLY_CONFLICT);
	assert_non_null(strstr(res->message, "serial 1"));
	assert_int_equal(opd_fsm_applied_index(&f->configs.fsm), applied + 1);
	opd_buf_fini(&payload);
	/* The same fingerprint under a new serial is refused too. */
	issue_cmd(&c, 50, c.fingerprint, 1700000500001ull, &payload);
	apply_bytes(&f->configs.fsm, &payload, &res);
	assert_int_equal(res->status, OPD_APPLY_CONFLICT);
	opd_buf_fini(&payload);
	/* An unknown issuing CA. */
	{
		char ca_fp[OPD_CA_FP_LEN + 1];

		memcpy(ca_fp, c.ca_fingerprint, sizeof ca_fp);
		memset(c.ca_fingerprint, 'd', OPD_CA_FP_LEN);
		issue_cmd(&c, 51, other_fp, 1700000500002ull, &payload);
		apply_bytes(&f->configs.fsm, &payload, &res);
		assert_int_equal(res->status, OPD_APPLY_NOT_FOUND);
		opd_buf_fini(&payload);
		memcpy(c.ca_fingerprint, ca_fp, sizeof ca_fp);
	}

	/* No certificate was added; only the audit trail and the applied index moved. */
	assert_int_equal(count(f, NULL), 1);
	dump(&f->configs.store, &after);
	assert_null(strstr((const char *)opd_buf_rptr(&after), other_fp));
	assert_non_null(strstr((const char *)opd_buf_rptr(&after), "'refused'"));
	opd_buf_fini(&before);
	opd_buf_fini(&after);

	/* The next issuance still gets a fresh serial. */
	issue(f, UID_B, NULL, &a);
	assert_int_equal(a.res.status, 0);
	assert_int_equal(a.res.serial, 2);
	opd_cert_info_fini(&c);
}

/* Record every command the service proposes by snooping the framed payloads the FSM applies. */
struct tape {
	struct opd_buf cmds[64];
	size_t n;
	int (*apply)(struct raft_fsm *, const struct raft_buffer *, void **);
};

static struct tape *the_tape;

static int taping_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct tape *t = the_tape;

	assert_true(t->n < 64);
	opd_buf_init(&t->cmds[t->n]);
	opd_buf_append(&t->cmds[t->n], buf->base, buf->len);
	t->n++;
	return t->apply(fsm, buf, result);
}

static void test_same_commands_same_dump(void **state)
{
	struct fixture *f = *state;
	struct tape *t = calloc(1, sizeof *t);
	struct answer a, r;
	struct opd_kvs sel;
	struct opd_store s1, s2, s3;
	struct opd_fsm f1, f2;
	struct opd_buf d0, d1, d2, d3;
	uint8_t *image;
	size_t image_len;

	/* A history of every certificate command, produced by the service itself. */
	the_tape = t;
	t->apply = f->configs.fsm.raft.apply;
	f->configs.fsm.raft.apply = taping_apply;
	issue(f, UID_A, NULL, &a);
	issue(f, UID_B, NULL, &a);
	assert_int_equal(opd_certs_revoke(&f->certs, 1, "superseded", "test", NULL, capture, &r),
			 0);
	assert_int_equal(opd_certs_rotate_ca(&f->certs, NULL, NULL, "test", NULL, capture, &r), 0);
	issue(f, UID_A, NULL, &a);
	opd_kvs_init(&sel);
	opd_kvs_add(&sel, "env", "prod");
	assert_int_equal(opd_certs_start_rotation(&f->certs, &sel, "test", NULL, capture, &r), 0);
	opd_kvs_fini(&sel);
	assert_int_equal(
	    opd_certs_retire_ca(&f->certs, f->certs.keys[0].fingerprint, "test", NULL, capture, &r),
	    0);
	assert_int_equal(r.res.status, 0);
	f->configs.fsm.raft.apply = t->apply;
	assert_true(t->n >= 7);

	/* Two fresh stores fed the same bytes end up identical, and equal to the original. */
	assert_int_equal(opd_store_open(&s1, ":memory:"), 0);
	assert_int_equal(opd_store_open(&s2, ":memory:"), 0);
	assert_int_equal(opd_fsm_init(&f1, &s1), 0);
	assert_int_equal(opd_fsm_init(&f2, &s2), 0);
	for (size_t i = 0; i < t->n; i++) {
		const struct opd_apply_result *res;

		apply_bytes(&f1, &t->cmds[i], &res);
		assert_int_equal(res->status, OPD_APPLY_OK);
		apply_bytes(&f2, &t->cmds[i], &res);
		assert_int_equal(res->status, OPD_APPLY_OK);
	}
	dump(&f->configs.store, &d0);
	dump(&s1, &d1);
	dump(&s2, &d2);
	assert_string_equal((const char *)opd_buf_rptr(&d1), (const char *)opd_buf_rptr(&d2));
	assert_string_equal((const char *)opd_buf_rptr(&d0), (const char *)opd_buf_rptr(&d1));
	/* Every certificate table is in the dump. */
	assert_non_null(strstr((const char *)opd_buf_rptr(&d1), "table certificates\n"));
	assert_non_null(strstr((const char *)opd_buf_rptr(&d1), "table revocations\n"));
	assert_non_null(strstr((const char *)opd_buf_rptr(&d1), "table cas\n"));
	assert_non_null(strstr((const char *)opd_buf_rptr(&d1), "table rotations\n"));
	assert_non_null(strstr((const char *)opd_buf_rptr(&d1), "table rotation_selectors\n"));

	/* A snapshot round trip changes nothing. */
	assert_int_equal(opd_store_serialize(&s1, &image, &image_len), 0);
	assert_int_equal(opd_store_open(&s3, ":memory:"), 0);
	assert_int_equal(opd_store_restore(&s3, image, image_len), 0);
	dump(&s3, &d3);
	assert_string_equal((const char *)opd_buf_rptr(&d1), (const char *)opd_buf_rptr(&d3));
	opd_store_image_free(&s1, image);

	opd_buf_fini(&d0);
	opd_buf_fini(&d1);
	opd_buf_fini(&d2);
	opd_buf_fini(&d3);
	opd_fsm_fini(&f1);
	opd_fsm_fini(&f2);
	opd_store_close(&s1);
	opd_store_close(&s2);
	opd_store_close(&s3);
	for (size_t i = 0; i < t->n; i++)
		opd_buf_fini(&t->cmds[i]);
	free(t);
}

/* ---- the admin API over the same service ---- */

struct http_answer {
	int status;
	char content_type[64];
	struct opd_buf body;
};

static void http(struct opd_admin *a, const char *method, const char *path, const char *query,
		 const char *body, struct http_answer *out)
{
	struct opd_http_request req = {0};
	struct opd_admin_response resp;

	req.method = method;
	req.path = path;
	req.query = query != NULL ? query : "";
	req.headers[0].name = "authorization";
	req.headers[0].value = "Bearer t0k3n";
	req.n_headers = 1;
	req.body = (const uint8_t *)body;
	req.body_len = body != NULL ? strlen(body) : 0;
	opd_admin_response_init(&resp);
	/* Without a node, writes are applied at once: every answer is immediate. */
	assert_int_equal(opd_admin_handle(a, &req, NULL, &resp), 0);
	out->status = resp.status;
	snprintf(out->content_type, sizeof out->content_type, "%s", resp.content_type);
	opd_buf_init(&out->body);
	opd_buf_append(&out->body, opd_buf_rptr(&resp.body), opd_buf_avail(&resp.body));
	opd_buf_append_byte(&out->body, '\0');
	opd_admin_response_fini(&resp);
	/* No answer of this API ever carries a private key. */
	assert_null(strstr((const char *)opd_buf_rptr(&out->body), "PRIVATE KEY"));
}

static const char *text(const struct http_answer *h)
{
	return (const char *)opd_buf_rptr(&h->body);
}

static void test_admin_routes(void **state)
{
	struct fixture *f = *state;
	struct opd_admin admin;
	struct http_answer h;
	struct answer a;
	struct opd_buf der;
	uint64_t serials[4];

	opd_admin_init(&admin);
	admin.configs = &f->configs;
	admin.certs = &f->certs;
	admin.clock = &f->clock.clock;
	snprintf(admin.token, sizeof admin.token, "t0k3n");
	issue(f, UID_A, NULL, &a);
	issue(f, UID_B, NULL, &a);

	http(&admin, "GET", "/api/v1/certificates", NULL, NULL, &h);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(text(&h), "\"serial\":2"));
	assert_null(strstr(text(&h), "cert_pem")); /* lists stay small */
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates", "agent=a1000000-0000-0000-0000-000000000001",
	     NULL, &h);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(text(&h), "\"serial\":1"));
	assert_null(strstr(text(&h), "\"serial\":2"));
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates", "expiring_within=60", NULL, &h);
	assert_string_equal(text(&h), "{\"certificates\":[]}\n");
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates", "expiring_within=2678400", NULL, &h);
	assert_non_null(strstr(text(&h), "\"serial\":2"));
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates", "agent=nope", NULL, &h);
	assert_int_equal(h.status, 400);
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates/1", NULL, NULL, &h);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(text(&h), "-----BEGIN CERTIFICATE-----"));
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates/77", NULL, NULL, &h);
	assert_int_equal(h.status, 404);
	opd_buf_fini(&h.body);

	http(&admin, "POST", "/api/v1/certificates/1/revoke", NULL,
	     "{\"reason\": \"keyCompromise\"}", &h);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(text(&h), "\"revoked\":true"));
	opd_buf_fini(&h.body);
	http(&admin, "POST", "/api/v1/certificates/1/revoke", NULL, NULL, &h);
	assert_int_equal(h.status, 409);
	opd_buf_fini(&h.body);
	http(&admin, "POST", "/api/v1/certificates/2/revoke", NULL, "{\"reason\": \"oops\"}", &h);
	assert_int_equal(h.status, 400);
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/certificates/1", NULL, NULL, &h);
	assert_non_null(strstr(text(&h), "\"revoke_reason\":\"keyCompromise\""));
	opd_buf_fini(&h.body);

	/* The CRL as DER with its media type, listing serial 1. */
	http(&admin, "GET", "/api/v1/ca/crl", NULL, NULL, &h);
	assert_int_equal(h.status, 200);
	assert_string_equal(h.content_type, "application/pkix-crl");
	opd_buf_init(&der);
	opd_buf_append(&der, opd_buf_rptr(&h.body), opd_buf_avail(&h.body) - 1);
	assert_int_equal(crl_serials(&der, &f->certs.keys[0], serials, 4), 1);
	assert_int_equal(serials[0], 1);
	opd_buf_fini(&der);
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/ca/crl", "format=pem", NULL, &h);
	assert_non_null(strstr(text(&h), "-----BEGIN X509 CRL-----"));
	opd_buf_fini(&h.body);

	http(&admin, "GET", "/api/v1/ca", NULL, NULL, &h);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(text(&h), f->certs.keys[0].fingerprint));
	assert_non_null(strstr(text(&h), "\"last_serial\":2"));
	opd_buf_fini(&h.body);
	http(&admin, "DELETE", "/api/v1/ca", NULL, NULL, &h);
	assert_int_equal(h.status, 405);
	opd_buf_fini(&h.body);

	http(&admin, "POST", "/api/v1/ca/rotate", NULL, NULL, &h);
	assert_int_equal(h.status, 201);
	assert_non_null(strstr(text(&h), "\"key_file\""));
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/ca/bundle", NULL, NULL, &h);
	assert_int_equal(h.status, 200);
	assert_string_equal(h.content_type, "application/x-pem-file");
	assert_int_equal(pem_count(&h.body), 2);
	opd_buf_fini(&h.body);

	http(&admin, "POST", "/api/v1/rotations", NULL, "{\"selector\": {\"env\": \"prod\"}}", &h);
	assert_int_equal(h.status, 201);
	assert_non_null(strstr(text(&h), "\"rotation_id\""));
	opd_buf_fini(&h.body);
	http(&admin, "GET", "/api/v1/rotations", NULL, NULL, &h);
	assert_non_null(strstr(text(&h), "\"env\":\"prod\""));
	opd_buf_fini(&h.body);
	opd_admin_fini(&admin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_issue_list_revoke_crl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_csr_changes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_generated_and_idempotent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ca_rotation_overlap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_serial_is_a_result, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_commands_same_dump, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_routes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
