/* Counting allocator for OpenSSL (see ossl_count.h). */
#include "ossl_count.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long live_bytes;

#define HDR 16 /* keeps the alignment of malloc */

static void *count_malloc(size_t n, const char *file, int line)
{
	uint8_t *p = malloc(n + HDR);

	(void)file;
	(void)line;
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof n);
	live_bytes += (long long)n;
	return p + HDR;
}

static void count_free(void *q, const char *file, int line)
{
	uint8_t *p = q;
	size_t n;

	(void)file;
	(void)line;
	if (p == NULL)
		return;
	memcpy(&n, p - HDR, sizeof n);
	live_bytes -= (long long)n;
	free(p - HDR);
}

static void *count_realloc(void *q, size_t n, const char *file, int line)
{
	uint8_t *p = q, *np;
	size_t old;

	if (p == NULL)
		return count_malloc(n, file, line);
	if (n == 0) {
		count_free(q, file, line);
		return NULL;
	}
	memcpy(&old, p - HDR, sizeof old);
	np = realloc(p - HDR, n + HDR);
	if (np == NULL)
		return NULL;
	memcpy(np, &n, sizeof n);
	live_bytes += (long long)n - (long long)old;
	return np + HDR;
}

int opd_ossl_count_install(void)
{
	if (CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) != 1) {
		fprintf(stderr, "CRYPTO_set_mem_functions failed: OpenSSL allocated already\n");
		return -1;
	}
	return 0;
}

long long opd_ossl_live_bytes(void)
{
	return live_bytes;
}
