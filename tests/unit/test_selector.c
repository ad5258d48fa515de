/* Selector matching against identifying and non-identifying attributes. */
#include "selector.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void agent(struct opd_agent *a)
{
	memset(a, 0, sizeof *a);
	opd_kvs_add(&a->ident, "service.name", "checkout");
	opd_kvs_add(&a->ident, "env", "prod");
	opd_kvs_add(&a->nonident, "os.type", "linux");
	opd_kvs_add(&a->nonident, "env", "staging"); /* same key, other list, other value */
}

static void agent_fini(struct opd_agent *a)
{
	opd_kvs_fini(&a->ident);
	opd_kvs_fini(&a->nonident);
}

static int match(struct opd_agent *a, const char *k1, const char *v1, const char *k2,
		 const char *v2)
{
	struct opd_kvs s;
	int m;

	opd_kvs_init(&s);
	if (k1)
		opd_kvs_add(&s, k1, v1);
	if (k2)
		opd_kvs_add(&s, k2, v2);
	m = opd_selector_match(&s, a);
	opd_kvs_fini(&s);
	return m;
}

static void test_match(void **state)
{
	struct opd_agent a;

	(void)state;
	agent(&a);
	assert_int_equal(match(&a, NULL, NULL, NULL, NULL), 1);
	assert_int_equal(match(&a, "service.name", "checkout", NULL, NULL), 1);
	assert_int_equal(match(&a, "os.type", "linux", NULL, NULL), 1);
	assert_int_equal(match(&a, "service.name", "checkout", "os.type", "linux"), 1);
	assert_int_equal(match(&a, "env", "prod", NULL, NULL), 1);
	assert_int_equal(match(&a, "env", "staging", NULL, NULL), 1);
	assert_int_equal(match(&a, "service.name", "cart", NULL, NULL), 0);
	assert_int_equal(match(&a, "service.name", "checkout", "os.type", "windows"), 0);
	assert_int_equal(match(&a, "region", "eu", NULL, NULL), 0);
	assert_int_equal(match(&a, "service.name", "", NULL, NULL), 0);
	agent_fini(&a);

	/* An agent without attributes matches only the empty selector. */
	memset(&a, 0, sizeof a);
	assert_int_equal(match(&a, NULL, NULL, NULL, NULL), 1);
	assert_int_equal(match(&a, "env", "prod", NULL, NULL), 0);
}

/* The definition, without the pair bits: every selector pair among either list. */
static int reference_match(const struct opd_kvs *sel, const struct opd_agent *a)
{
	for (size_t i = 0; i < sel->n; i++) {
		int found = 0;
		for (size_t j = 0; j < a->ident.n && !found; j++)
			found = !strcmp(a->ident.v[j].key, sel->v[i].key) &&
				!strcmp(a->ident.v[j].value, sel->v[i].value);
		for (size_t j = 0; j < a->nonident.n && !found; j++)
			found = !strcmp(a->nonident.v[j].key, sel->v[i].key) &&
				!strcmp(a->nonident.v[j].value, sel->v[i].value);
		if (!found)
			return 0;
	}
	return 1;
}

static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void random_pairs(struct opd_kvs *s, uint32_t *x, unsigned max)
{
	static const char *keys[] = {"env", "region", "service.name", "os.type", "a", "ab"};
	static const char *values[] = {"prod", "eu", "b", "", "checkout", "linux", "ab"};
	unsigned n = next_rand(x) % (max + 1);

	for (unsigned i = 0; i < n; i++)
		opd_kvs_add(s, keys[next_rand(x) % 6], values[next_rand(x) % 7]);
}

/*
 * The pair bits only ever refuse: across random agents and selectors over a
 * small alphabet (so that most pairs collide or match), the answer is the
 * definition's, and both outcomes occur.
 */
static void test_pair_bits_agree_with_the_definition(void **state)
{
	uint32_t x = 0x9e3779b9u;
	unsigned matched = 0, refused = 0;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		struct opd_agent a;
		struct opd_kvs sel;
		int want;

		memset(&a, 0, sizeof a);
		opd_kvs_init(&sel);
		random_pairs(&a.ident, &x, 4);
		random_pairs(&a.nonident, &x, 4);
		random_pairs(&sel, &x, 3);
		want = reference_match(&sel, &a);
		assert_int_equal(opd_selector_match(&sel, &a), want);
		matched += want;
		refused += !want;
		opd_kvs_fini(&sel);
		agent_fini(&a);
	}
	assert_true(matched > 1000 && refused > 1000);
}

/* The bits follow the pairs: the OR of each pair's bit, copied, and cleared by fini. */
static void test_pair_bits(void **state)
{
	struct opd_kvs s, c;

	(void)state;
	opd_kvs_init(&s);
	assert_int_equal(s.pair_bits, 0);
	opd_kvs_add(&s, "env", "prod");
	opd_kvs_add(&s, "region", "eu");
	assert_int_equal(s.pair_bits,
			 opd_kvs_pair_bit("env", "prod") | opd_kvs_pair_bit("region", "eu"));
	opd_kvs_sort(&s);
	opd_kvs_copy(&c, &s);
	assert_int_equal(c.pair_bits, s.pair_bits);
	opd_kvs_fini(&s);
	assert_int_equal(s.pair_bits, 0);
	opd_kvs_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_match),
					   cmocka_unit_test(test_pair_bits_agree_with_the_definition),
					   cmocka_unit_test(test_pair_bits)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
