/* config_hash: the canonical AgentConfigMap hash agents compare byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config_hash.h"
#include "hex.h"

static void hash_hex(const struct opd_files *f, char out[2 * OPD_CONFIG_HASH_LEN + 1])
{
	uint8_t h[OPD_CONFIG_HASH_LEN];

	opd_config_hash(f, h);
	opd_hex_encode(h, sizeof h, out);
}

/*
 * Expected value computed once in a shell, independently of our code, from
 * the encoding written out by hand (8-byte big-endian length, then bytes;
 * name, content type, body; files in name order):
 *
 *   printf '\0\0\0\0\0\0\0\006a.yaml\0\0\0\0\0\0\0\011text/yaml'\
 *   '\0\0\0\0\0\0\0\005x: 1\n\0\0\0\0\0\0\0\005b.txt'\
 *   '\0\0\0\0\0\0\0\012text/plain\0\0\0\0\0\0\0\002hi' | sha256sum
 */
#define VECTOR_HEX "505e15ece3c6df951f9b3309264e9c562bf1419966389327f656ac50192b4057"

static void add_vector_files(struct opd_files *f, int reversed)
{
	if (reversed) {
		opd_files_add(f, "b.txt", "text/plain", "hi", 2);
		opd_files_add(f, "a.yaml", "text/yaml", "x: 1\n", 5);
	} else {
		opd_files_add(f, "a.yaml", "text/yaml", "x: 1\n", 5);
		opd_files_add(f, "b.txt", "text/plain", "hi", 2);
	}
}

static void test_known_vector(void **state)
{
	struct opd_files f;
	char hex[2 * OPD_CONFIG_HASH_LEN + 1];

	(void)state;
	opd_files_init(&f);
	add_vector_files(&f, 0);
	hash_hex(&f, hex);
	assert_string_equal(hex, VECTOR_HEX);
	opd_files_fini(&f);
}

static void test_order_independent_after_sort(void **state)
{
	struct opd_files f;
	char hex[2 * OPD_CONFIG_HASH_LEN + 1], unsorted[2 * OPD_CONFIG_HASH_LEN + 1];

	(void)state;
	opd_files_init(&f);
	add_vector_files(&f, 1);
	hash_hex(&f, unsorted);
	/* Unsorted input hashes differently: the caller must sort. */
	assert_string_not_equal(unsorted, VECTOR_HEX);
	opd_files_sort(&f);
	assert_string_equal(f.v[0].name, "a.yaml");
	assert_string_equal(f.v[1].name, "b.txt");
	hash_hex(&f, hex);
	assert_string_equal(hex, VECTOR_HEX);
	opd_files_fini(&f);
}

/* Variant i changes exactly one field of one file of the vector. */
static void build_variant(struct opd_files *f, int i)
{
	opd_files_init(f);
	opd_files_add(f, i == 0 ? "a.yml" : "a.yaml", i == 1 ? "application/yaml" : "text/yaml",
		      i == 2 ? "x: 2\n" : "x: 1\n", 5);
	opd_files_add(f, "b.txt", "text/plain", i == 3 ? "hi!" : "hi", i == 3 ? 3 : 2);
	opd_files_sort(f);
}

static void test_any_change_changes_hash(void **state)
{
	char seen[5][2 * OPD_CONFIG_HASH_LEN + 1];
	struct opd_files f;

	(void)state;
	for (int i = 0; i < 4; i++) {
		build_variant(&f, i);
		hash_hex(&f, seen[i]);
		assert_string_not_equal(seen[i], VECTOR_HEX);
		opd_files_fini(&f);
	}
	/* Moving bytes between fields changes the hash too (lengths are part of it). */
	opd_files_init(&f);
	opd_files_add(&f, "a.yamltext/yaml", "", "x: 1\n", 5);
	opd_files_add(&f, "b.txt", "text/plain", "hi", 2);
	hash_hex(&f, seen[4]);
	opd_files_fini(&f);
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
	assert_string_not_equal(seen[4], VECTOR_HEX);
}

/*
 * An empty name and body are still length-prefixed. Computed with
 *   printf '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\011text/yaml\0\0\0\0\0\0\0\0' | sha256sum
 * and no files at all is SHA-256 of nothing (printf '' | sha256sum).
 */
static void test_empty_body_and_name(void **state)
{
	struct opd_files f;
	char hex[2 * OPD_CONFIG_HASH_LEN + 1];

	(void)state;
	opd_files_init(&f);
	hash_hex(&f, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	opd_files_add(&f, "", "text/yaml", "", 0);
	assert_int_equal(f.v[0].len, 0);
	hash_hex(&f, hex);
	assert_string_equal(hex,
			    "6bbb415647988dbc89b7e9533e3508928efb7522cb626021444417531431801e");
	opd_files_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_vector),
	    cmocka_unit_test(test_order_independent_after_sort),
	    cmocka_unit_test(test_any_change_changes_hash),
	    cmocka_unit_test(test_empty_body_and_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
