/*
 * Key/value string pairs: agent attributes and configuration selectors.
 * A selector matches an agent when every one of its pairs is present, with an
 * equal value, among the agent's identifying or non-identifying attributes.
 */
#ifndef OPD_KV_H
#define OPD_KV_H

#include <stddef.h>
#include <stdint.h>

struct opd_kv {
	char *key;   /* owned */
	char *value; /* owned */
};

struct opd_kvs {
	struct opd_kv *v; /* owned array */
	size_t n;
	/*
	 * One bit per pair (opd_kvs_pair_bit), set by opd_kvs_add, the only
	 * writer of pairs: a selector pair whose bit an agent's lists lack is
	 * not among them, and most selectors are refused without a strcmp.
	 */
	uint64_t pair_bits;
};

void opd_kvs_init(struct opd_kvs *s);
void opd_kvs_fini(struct opd_kvs *s);
/* Append copies of key and value. */
void opd_kvs_add(struct opd_kvs *s, const char *key, const char *value);
/* The bit of pair_bits that key=value sets. */
uint64_t opd_kvs_pair_bit(const char *key, const char *value);
/* Value for key, or NULL. First match wins. */
const char *opd_kvs_get(const struct opd_kvs *s, const char *key);
/* Sort by key, then value (byte order): the canonical order for hashing and storage. */
void opd_kvs_sort(struct opd_kvs *s);
/* 1 when both hold the same pairs in the same order. */
int opd_kvs_equal(const struct opd_kvs *a, const struct opd_kvs *b);
/* Deep copy of src into dst (dst is overwritten, not freed). */
void opd_kvs_copy(struct opd_kvs *dst, const struct opd_kvs *src);

#endif
