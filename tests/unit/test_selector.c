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

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_match)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
