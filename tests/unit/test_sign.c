/* sign: the Ed25519 cluster key and the documented bytes of a signed version record. */
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

#include "hex.h"
#include "sign.h"

struct fixture {
	char dir[64];
	char path[128];
	struct opd_signer s;
	struct opd_kvs sel;
	uint8_t hash[32];
	struct opd_version_record rec;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/opd-sign-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof f->path, "%s/signing.pem", f->dir);
	for (int i = 0; i < 32; i++)
		f->hash[i] = (uint8_t)i;
	opd_kvs_init(&f->sel);
	opd_kvs_add(&f->sel, "env", "prod");
	opd_kvs_add(&f->sel, "os", "linux");
	f->rec = (struct opd_version_record){
	    .name = "cfg",
	    .version = 7,
	    .config_hash = f->hash,
	    .selector = &f->sel,
	    .priority = -5,
	    .term = 3,
	    .hlc_wall_ms = 1700000000000ULL,
	    .hlc_logical = 2,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char other[160];

	opd_signer_fini(&f->s);
	opd_kvs_fini(&f->sel);
	unlink(f->path);
	snprintf(other, sizeof other, "%s/other.pem", f->dir);
	unlink(other);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void record_hex(const struct opd_version_record *rec, char **out)
{
	struct opd_buf b;

	opd_buf_init(&b);
	opd_version_record_bytes(rec, &b);
	*out = malloc(2 * opd_buf_avail(&b) + 1);
	opd_hex_encode(opd_buf_rptr(&b), opd_buf_avail(&b), *out);
	opd_buf_fini(&b);
}

/*
 * Written by hand from the format in sign.h, not produced by the code: each
 * field is an 8-byte big-endian length followed by its bytes.
 */
/* clang-format off */
#define L(n) "00000000000000" n
static const char expected_hex[] =
    L("18") "6f70616d70642e636f6e6669672d76657273696f6e2e7631" /* "opampd.config-version.v1" */
    L("03") "636667"                                           /* name "cfg" */
    L("01") "37"                                               /* version "7" */
    L("20") "000102030405060708090a0b0c0d0e0f"                 /* config_hash, 32 raw bytes */
	    "101112131415161718191a1b1c1d1e1f"                 /* (bytes 16..31) */
    L("01") "32"                                               /* n = "2" selector pairs */
    L("03") "656e76" L("04") "70726f64"                        /* "env" = "prod" */
    L("02") "6f73" L("05") "6c696e7578"                        /* "os" = "linux" */
    L("02") "2d35"                                             /* priority "-5" */
    L("01") "33"                                               /* term "3" */
    L("0d") "31373030303030303030303030"                       /* hlc_wall_ms "1700000000000" */
    L("01") "32";                                              /* hlc_logical "2" */
#undef L
/* clang-format on */

static void test_record_bytes_match_spec(void **state)
{
	struct fixture *f = *state;
	char *hex;

	record_hex(&f->rec, &hex);
	assert_string_equal(hex, expected_hex);
	free(hex);
}

static void test_unsorted_selector_same_bytes(void **state)
{
	struct fixture *f = *state;
	struct opd_kvs rev;
	struct opd_version_record r = f->rec;
	char *hex;

	opd_kvs_init(&rev);
	opd_kvs_add(&rev, "os", "linux");
	opd_kvs_add(&rev, "env", "prod");
	r.selector = &rev;
	record_hex(&r, &hex);
	assert_string_equal(hex, expected_hex);
	free(hex);
	opd_kvs_fini(&rev);
}

static void test_sign_verify_round_trip(void **state)
{
	struct fixture *f = *state;
	uint8_t sig[OPD_SIGN_SIG_LEN];
	struct stat st;

	assert_int_equal(opd_signer_load(&f->s, f->path, 1), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(strlen(f->s.key_id), OPD_SIGN_KEY_ID_LEN);
	assert_int_equal(opd_signer_sign(&f->s, &f->rec, sig), 0);
	assert_int_equal(opd_sign_verify(f->s.public_key, &f->rec, sig, sizeof sig), 1);
}

/* Every field is covered: changing any one changes the bytes and voids the signature. */
static void test_every_field_is_signed(void **state)
{
	struct fixture *f = *state;
	uint8_t sig[OPD_SIGN_SIG_LEN], hash2[32];
	struct opd_kvs k1, k2, k3;
	char *base_hex;

	assert_int_equal(opd_signer_load(&f->s, f->path, 1), 0);
	assert_int_equal(opd_signer_sign(&f->s, &f->rec, sig), 0);
	record_hex(&f->rec, &base_hex);

	memcpy(hash2, f->hash, sizeof hash2);
	hash2[31] ^= 1;
	opd_kvs_init(&k1);
	opd_kvs_add(&k1, "env", "prod");
	opd_kvs_add(&k1, "os", "linuy"); /* value changed */
	opd_kvs_init(&k2);
	opd_kvs_add(&k2, "env", "prod");
	opd_kvs_add(&k2, "ox", "linux"); /* key changed */
	opd_kvs_init(&k3);
	opd_kvs_add(&k3, "env", "prod"); /* pair dropped */

	for (int i = 0; i < 11; i++) {
		struct opd_version_record r = f->rec;
		char *hex;

		switch (i) {
		case 0:
			r.name = "cfh";
			break;
		case 1:
			r.version = 8;
			break;
		case 2:
			r.config_hash = hash2;
			break;
		case 3:
			r.selector = &k1;
			break;
		case 4:
			r.selector = &k2;
			break;
		case 5:
			r.selector = &k3;
			break;
		case 6:
			r.priority = 5;
			break;
		case 7:
			r.term = 4;
			break;
		case 8:
			r.hlc_wall_ms++;
			break;
		case 9:
			r.hlc_logical = 3;
			break;
		case 10:
			r.selector = NULL;
			break;
		}
		record_hex(&r, &hex);
		assert_string_not_equal(hex, base_hex);
		free(hex);
		if (opd_sign_verify(f->s.public_key, &r, sig, sizeof sig) != 0)
			fail_msg("mutation %d still verifies", i);
	}
	free(base_hex);
	opd_kvs_fini(&k1);
	opd_kvs_fini(&k2);
	opd_kvs_fini(&k3);
}

static void test_wrong_key_and_bad_signature(void **state)
{
	struct fixture *f = *state;
	struct opd_signer other;
	char other_path[160];
	uint8_t sig[OPD_SIGN_SIG_LEN], bad[OPD_SIGN_SIG_LEN];

	snprintf(other_path, sizeof other_path, "%s/other.pem", f->dir);
	assert_int_equal(opd_signer_load(&f->s, f->path, 1), 0);
	assert_int_equal(opd_signer_load(&other, other_path, 1), 0);
	assert_string_not_equal(f->s.key_id, other.key_id);
	assert_int_equal(opd_signer_sign(&f->s, &f->rec, sig), 0);

	assert_int_equal(opd_sign_verify(other.public_key, &f->rec, sig, sizeof sig), 0);
	assert_int_equal(opd_sign_verify(f->s.public_key, &f->rec, sig, sizeof sig - 1), 0);
	assert_int_equal(opd_sign_verify(f->s.public_key, &f->rec, sig, 0), 0);
	assert_int_equal(opd_sign_verify(f->s.public_key, &f->rec, NULL, sizeof sig), 0);
	for (size_t i = 0; i < sizeof sig; i += 7) {
		memcpy(bad, sig, sizeof bad);
		bad[i] ^= 0x10;
		if (opd_sign_verify(f->s.public_key, &f->rec, bad, sizeof bad) != 0)
			fail_msg("bit flip in byte %zu still verifies", i);
	}
	/* The untouched signature still verifies after all that. */
	assert_int_equal(opd_sign_verify(f->s.public_key, &f->rec, sig, sizeof sig), 1);
	opd_signer_fini(&other);
}

static void test_reload_same_key(void **state)
{
	struct fixture *f = *state;
	struct opd_signer again;
	uint8_t sig1[OPD_SIGN_SIG_LEN], sig2[OPD_SIGN_SIG_LEN];
	char id[OPD_SIGN_KEY_ID_LEN + 1];

	assert_int_equal(opd_signer_load(&f->s, f->path, 1), 0);
	assert_int_equal(opd_signer_load(&again, f->path, 0), 0);
	assert_string_equal(again.key_id, f->s.key_id);
	assert_memory_equal(again.public_key, f->s.public_key, OPD_SIGN_PUBLIC_LEN);
	opd_sign_key_id(again.public_key, id);
	assert_string_equal(id, f->s.key_id);
	/* Ed25519 is deterministic: the reloaded key signs identically. */
	assert_int_equal(opd_signer_sign(&f->s, &f->rec, sig1), 0);
	assert_int_equal(opd_signer_sign(&again, &f->rec, sig2), 0);
	assert_memory_equal(sig1, sig2, sizeof sig1);
	opd_signer_fini(&again);
}

static void test_key_id_is_sha256_prefix(void **state)
{
	uint8_t zero[OPD_SIGN_PUBLIC_LEN] = {0};
	char id[OPD_SIGN_KEY_ID_LEN + 1];

	(void)state;
	/* echo -n of 32 zero bytes | sha256sum = 66687aadf862bd776c8fc18b8e9f8e20... */
	opd_sign_key_id(zero, id);
	assert_string_equal(id, "66687aadf862bd77");
}

static void test_missing_without_create(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(opd_signer_load(&f->s, f->path, 0), OPD_EIO);
	assert_true(strstr(f->s.errmsg, f->path) != NULL);
	assert_int_not_equal(access(f->path, F_OK), 0);
}

static void test_not_ed25519(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	FILE *fp;

	assert_non_null(ec);
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_PrivateKey(fp, ec, NULL, NULL, 0, NULL, NULL), 1);
	fclose(fp);
	EVP_PKEY_free(ec);
	assert_int_equal(opd_signer_load(&f->s, f->path, 1), OPD_EINVAL);
	assert_null(f->s.key);
	assert_true(strstr(f->s.errmsg, "Ed25519") != NULL);
}

static void test_garbage_pem(void **state)
{
	struct fixture *f = *state;
	FILE *fp = fopen(f->path, "w");

	assert_non_null(fp);
	fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", fp);
	fclose(fp);
	assert_int_equal(opd_signer_load(&f->s, f->path, 1), OPD_EINVAL);
	assert_null(f->s.key);
	assert_true(f->s.errmsg[0] != '\0');
}

static void test_sign_without_key(void **state)
{
	struct fixture *f = *state;
	uint8_t sig[OPD_SIGN_SIG_LEN];

	assert_int_equal(opd_signer_sign(&f->s, &f->rec, sig), OPD_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_record_bytes_match_spec, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsorted_selector_same_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sign_verify_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_field_is_signed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_key_and_bad_signature, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_same_key, setup, teardown),
	    cmocka_unit_test(test_key_id_is_sha256_prefix),
	    cmocka_unit_test_setup_teardown(test_missing_without_create, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_ed25519, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_pem, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sign_without_key, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
