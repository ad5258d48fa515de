#include "sign.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RECORD_TAG "opampd.config-version.v1"

/*
 * Move OpenSSL's whole error queue into errmsg after a context string, so a
 * stale entry never shows up in an unrelated later failure.
 */
static void drain_errors(char *errmsg, const char *what)
{
	char text[OPD_ERRMSG_SIZE];
	size_t used = 0;
	unsigned long e;

	text[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[160];

		ERR_error_string_n(e, one, sizeof one);
		if (used < sizeof text) {
			int n = snprintf(text + used, sizeof text - used, "%s%s", used ? "; " : "",
					 one);
			used += n > 0 ? (size_t)n : 0;
		}
	}
	if (errmsg != NULL)
		opd_errmsg_printf(errmsg, "%s: %s", what, text[0] ? text : "unknown OpenSSL error");
}

static void put_field(struct opd_buf *out, const void *p, size_t n)
{
	uint8_t len[8];
	uint64_t v = n;

	for (int i = 7; i >= 0; i--, v >>= 8)
		len[i] = (uint8_t)v;
	opd_buf_append(out, len, sizeof len);
	if (n)
		opd_buf_append(out, p, n);
}

static void put_str(struct opd_buf *out, const char *s)
{
	put_field(out, s, s != NULL ? strlen(s) : 0);
}

static void put_u64(struct opd_buf *out, uint64_t v)
{
	char d[24];
	int n = snprintf(d, sizeof d, "%" PRIu64, v);

	put_field(out, d, (size_t)n);
}

static void put_i64(struct opd_buf *out, int64_t v)
{
	char d[24];
	int n = snprintf(d, sizeof d, "%" PRId64, v);

	put_field(out, d, (size_t)n);
}

static int kv_cmp(const struct opd_kv *a, const struct opd_kv *b)
{
	int r = strcmp(a->key, b->key);

	return r != 0 ? r : strcmp(a->value, b->value);
}

static int kvs_sorted(const struct opd_kvs *s)
{
	for (size_t i = 1; i < s->n; i++)
		if (kv_cmp(&s->v[i - 1], &s->v[i]) > 0)
			return 0;
	return 1;
}

void opd_version_record_bytes(const struct opd_version_record *rec, struct opd_buf *out)
{
	struct opd_kvs sorted, empty = {0};
	const struct opd_kvs *sel = rec->selector != NULL ? rec->selector : &empty;

	/*
	 * The record documents the selector as sorted; an unsorted one is sorted
	 * on a copy here anyway, because leader and verifier must produce the
	 * same bytes whatever order the pairs were handed over in.
	 */
	opd_kvs_init(&sorted);
	if (!kvs_sorted(sel)) {
		opd_kvs_copy(&sorted, sel);
		opd_kvs_sort(&sorted);
		sel = &sorted;
	}
	put_str(out, RECORD_TAG);
	put_str(out, rec->name);
	put_u64(out, rec->version);
	put_field(out, rec->config_hash, 32);
	put_u64(out, sel->n);
	for (size_t i = 0; i < sel->n; i++) {
		put_str(out, sel->v[i].key);
		put_str(out, sel->v[i].value);
	}
	put_i64(out, rec->priority);
	put_u64(out, rec->term);
	put_u64(out, rec->hlc_wall_ms);
	put_u64(out, rec->hlc_logical);
	opd_kvs_fini(&sorted);
}

void opd_sign_key_id(const uint8_t public_key[OPD_SIGN_PUBLIC_LEN],
		     char out[OPD_SIGN_KEY_ID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!EVP_Digest(public_key, OPD_SIGN_PUBLIC_LEN, md, &md_len, EVP_sha256(), NULL)) {
		/* Only fails on allocation failure inside OpenSSL. */
		ERR_clear_error();
		memset(md, 0, sizeof md);
	}
	for (int i = 0; i < OPD_SIGN_KEY_ID_LEN / 2; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0xf];
	}
	out[OPD_SIGN_KEY_ID_LEN] = '\0';
}

/* Generate a key and write it to a path that must not exist yet. */
static int create_key(struct opd_signer *s, const char *path, EVP_PKEY **out)
{
	EVP_PKEY *key;
	FILE *f;
	int fd, ok;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (key == NULL) {
		drain_errors(s->errmsg, "generate Ed25519 key");
		return OPD_EIO;
	}
	/* O_EXCL: never overwrite a key another process wrote in the meantime. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;

		EVP_PKEY_free(key);
		if (err == EEXIST)
			return OPD_EAGAIN; /* lost a race: load the winner's key */
		opd_errmsg_printf(s->errmsg, "create %s: %s", path, strerror(err));
		return OPD_EIO;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		opd_errmsg_printf(s->errmsg, "fdopen %s: %s", path, strerror(errno));
		close(fd);
		goto fail;
	}
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (!ok)
		drain_errors(s->errmsg, "write private key");
	/* A key that is not on disk would sign versions nobody can re-check after a restart. */
	if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
		opd_errmsg_printf(s->errmsg, "write %s: %s", path, strerror(errno));
		ok = 0;
	}
	if (fclose(f) != 0 && ok) {
		opd_errmsg_printf(s->errmsg, "close %s: %s", path, strerror(errno));
		ok = 0;
	}
	if (!ok)
		goto fail;
	*out = key;
	return 0;
fail:
	/* Leave no half-written key behind: the next start would refuse it. */
	unlink(path);
	EVP_PKEY_free(key);
	return OPD_EIO;
}

static int read_key(struct opd_signer *s, const char *path, FILE *f, EVP_PKEY **out)
{
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);

	if (key == NULL) {
		drain_errors(s->errmsg, "read private key");
		opd_errmsg_wrapf(s->errmsg, "%s", path);
		return OPD_EINVAL;
	}
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
		opd_errmsg_printf(s->errmsg, "%s: not an Ed25519 key (type %s)", path,
				  OBJ_nid2sn(EVP_PKEY_get_base_id(key)));
		EVP_PKEY_free(key);
		return OPD_EINVAL;
	}
	*out = key;
	return 0;
}

int opd_signer_load(struct opd_signer *s, const char *path, int create)
{
	EVP_PKEY *key = NULL;
	size_t len = OPD_SIGN_PUBLIC_LEN;
	int rc;

	*s = (struct opd_signer){0};
	ERR_clear_error();
	for (int attempt = 0; attempt < 2 && key == NULL; attempt++) {
		FILE *f = fopen(path, "re");

		if (f != NULL) {
			rc = read_key(s, path, f, &key);
			fclose(f);
			if (rc != 0)
				return rc;
		} else if (errno == ENOENT && create) {
			rc = create_key(s, path, &key);
			if (rc == OPD_EAGAIN)
				continue;
			if (rc != 0)
				return rc;
		} else {
			opd_errmsg_printf(s->errmsg, "open %s: %s", path, strerror(errno));
			return OPD_EIO;
		}
	}
	if (key == NULL) {
		opd_errmsg_printf(s->errmsg, "%s: created and removed concurrently", path);
		return OPD_EIO;
	}
	if (!EVP_PKEY_get_raw_public_key(key, s->public_key, &len) || len != OPD_SIGN_PUBLIC_LEN) {
		drain_errors(s->errmsg, "public key");
		EVP_PKEY_free(key);
		return OPD_EIO;
	}
	s->key = key;
	opd_sign_key_id(s->public_key, s->key_id);
	return 0;
}

void opd_signer_fini(struct opd_signer *s)
{
	EVP_PKEY_free(s->key);
	s->key = NULL;
}

int opd_signer_sign(const struct opd_signer *s, const struct opd_version_record *rec,
		    uint8_t sig[OPD_SIGN_SIG_LEN])
{
	struct opd_buf tbs;
	EVP_MD_CTX *ctx;
	size_t sig_len = OPD_SIGN_SIG_LEN;
	int ok;

	if (s->key == NULL)
		return OPD_EIO;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		ERR_clear_error();
		return OPD_EIO;
	}
	opd_buf_init(&tbs);
	opd_version_record_bytes(rec, &tbs);
	/* Ed25519 is one-shot over the whole message: no digest, no Update calls. */
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
	     EVP_DigestSign(ctx, sig, &sig_len, opd_buf_rptr(&tbs), opd_buf_avail(&tbs)) == 1 &&
	     sig_len == OPD_SIGN_SIG_LEN;
	/* The signer is const (shared by readers): nowhere to keep the text, so drop it. */
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	opd_buf_fini(&tbs);
	return ok ? 0 : OPD_EIO;
}

int opd_sign_verify(const uint8_t public_key[OPD_SIGN_PUBLIC_LEN],
		    const struct opd_version_record *rec, const uint8_t *sig, size_t sig_len)
{
	struct opd_buf tbs;
	EVP_PKEY *key;
	EVP_MD_CTX *ctx;
	int ok = 0;

	if (public_key == NULL || sig == NULL || sig_len != OPD_SIGN_SIG_LEN)
		return 0;
	key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key, OPD_SIGN_PUBLIC_LEN);
	ctx = EVP_MD_CTX_new();
	if (key != NULL && ctx != NULL) {
		opd_buf_init(&tbs);
		opd_version_record_bytes(rec, &tbs);
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestVerify(ctx, sig, sig_len, opd_buf_rptr(&tbs), opd_buf_avail(&tbs)) ==
			 1;
		opd_buf_fini(&tbs);
	}
	/* A bad signature leaves an entry in the queue; it is an answer, not an error. */
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok;
}
