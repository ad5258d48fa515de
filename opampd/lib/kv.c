#include "kv.h"

#include "mem.h"

#include <stdlib.h>
#include <string.h>

void opd_kvs_init(struct opd_kvs *s)
{
	*s = (struct opd_kvs){0};
}

void opd_kvs_fini(struct opd_kvs *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].key);
		free(s->v[i].value);
	}
	free(s->v);
	*s = (struct opd_kvs){0};
}

/*
 * FNV-1a over key, a NUL, value, then a finalizer (MurmurHash3's fmix64):
 * FNV's top bits alone mix a common prefix poorly ("bench.fleet"="bench" and
 * "bench.writes"="none" landed on the same bit). The top six bits pick it.
 */
uint64_t opd_kvs_pair_bit(const char *key, const char *value)
{
	uint64_t h = 0xcbf29ce484222325u;
	const unsigned char *p;

	for (p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3u;
	h *= 0x100000001b3u; /* the NUL: "ab"="c" and "a"="bc" differ */
	for (p = (const unsigned char *)value; *p; p++)
		h = (h ^ *p) * 0x100000001b3u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	return (uint64_t)1 << (h >> 58);
}

void opd_kvs_add(struct opd_kvs *s, const char *key, const char *value)
{
	s->v = opd_xrealloc(s->v, (s->n + 1) * sizeof *s->v);
	s->v[s->n].key = opd_xstrdup(key);
	s->v[s->n].value = opd_xstrdup(value);
	s->n++;
	s->pair_bits |= opd_kvs_pair_bit(key, value);
}

const char *opd_kvs_get(const struct opd_kvs *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].key, key) == 0)
			return s->v[i].value;
	return NULL;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct opd_kv *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : strcmp(x->value, y->value);
}

void opd_kvs_sort(struct opd_kvs *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, kv_cmp);
}

int opd_kvs_equal(const struct opd_kvs *a, const struct opd_kvs *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (kv_cmp(&a->v[i], &b->v[i]) != 0)
			return 0;
	return 1;
}

void opd_kvs_copy(struct opd_kvs *dst, const struct opd_kvs *src)
{
	opd_kvs_init(dst);
	for (size_t i = 0; i < src->n; i++)
		opd_kvs_add(dst, src->v[i].key, src->v[i].value);
}
