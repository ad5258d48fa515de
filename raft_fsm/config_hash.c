#include "config_hash.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static void put_field(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	uint8_t len[8];
	uint64_t v = n;

	for (int i = 7; i >= 0; i--, v >>= 8)
		len[i] = (uint8_t)v;
	EVP_DigestUpdate(ctx, len, sizeof len);
	if (n)
		EVP_DigestUpdate(ctx, p, n);
}

void opd_config_hash(const struct opd_files *files, uint8_t out[OPD_CONFIG_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;

	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		abort();
	for (size_t i = 0; i < files->n; i++) {
		const struct opd_file *f = &files->v[i];
		put_field(ctx, f->name, strlen(f->name));
		put_field(ctx, f->content_type, strlen(f->content_type));
		put_field(ctx, f->body, f->len);
	}
	EVP_DigestFinal_ex(ctx, out, &len);
	EVP_MD_CTX_free(ctx);
}
