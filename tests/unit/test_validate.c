/* validate: configuration names, file lists, selectors and YAML syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

static void test_names(void **state)
{
	char longest[OPD_MAX_CONFIG_NAME + 2];

	(void)state;
	assert_int_equal(opd_validate_name("collector"), 1);
	assert_int_equal(opd_validate_name("A-z_0.9"), 1);
	assert_int_equal(opd_validate_name("x."), 1);
	assert_int_equal(opd_validate_name(""), 0);
	assert_int_equal(opd_validate_name(NULL), 0);
	assert_int_equal(opd_validate_name(".hidden"), 0);
	assert_int_equal(opd_validate_name("a/b"), 0);
	assert_int_equal(opd_validate_name("a b"), 0);
	assert_int_equal(opd_validate_name("caf\xc3\xa9"), 0);
	assert_int_equal(opd_validate_name("a\n"), 0);

	memset(longest, 'n', OPD_MAX_CONFIG_NAME);
	longest[OPD_MAX_CONFIG_NAME] = '\0';
	assert_int_equal(opd_validate_name(longest), 1);
	longest[OPD_MAX_CONFIG_NAME] = 'n';
	longest[OPD_MAX_CONFIG_NAME + 1] = '\0';
	assert_int_equal(opd_validate_name(longest), 0);
}

static void add(struct opd_files *f, const char *name, const char *ct, const char *body)
{
	opd_files_add(f, name, ct, body, strlen(body));
}

static void test_good_files(void **state)
{
	struct opd_validation_error err;
	struct opd_files f;

	(void)state;
	opd_files_init(&f);
	add(&f, "collector.yaml", "text/yaml",
	    "receivers:\n  otlp:\n    protocols:\n      grpc: {}\nexporters: [debug]\n");
	add(&f, "", "application/octet-stream", "not: yaml: at all: {"); /* not YAML: not parsed */
	add(&f, "extra.yml", "text/plain", "- a\n- b\n");
	add(&f, "empty.yaml", "text/yaml", "");
	assert_int_equal(opd_validate_files(&f, &err), 0);
	opd_files_fini(&f);
}

static void test_bad_yaml_position(void **state)
{
	struct opd_validation_error err;
	struct opd_files f;

	(void)state;
	opd_files_init(&f);
	add(&f, "a.txt", "text/plain", "fine");
	/* The second ':' on line 3 is at 0-based column 6. */
	add(&f, "collector.yaml", "text/plain", "key: value\nother:\n  a: b: c\n");
	assert_int_equal(opd_validate_files(&f, &err), OPD_EINVAL);
	assert_string_equal(err.file, "collector.yaml");
	assert_int_equal(err.line, 3);
	assert_int_equal(err.column, 7);
	assert_string_equal(err.message, "file \"collector.yaml\" line 3 column 7: "
					 "mapping values are not allowed in this context");
	opd_files_fini(&f);

	/* Detected by content type alone, whatever the name. */
	opd_files_init(&f);
	add(&f, "conf", "application/x-yaml", "a: [1, 2\n");
	assert_int_equal(opd_validate_files(&f, &err), OPD_EINVAL);
	assert_string_equal(err.file, "conf");
	assert_true(err.line >= 1);
	assert_non_null(strstr(err.message, "file \"conf\" line "));
	opd_files_fini(&f);

	/* Invalid UTF-8 is a reader error without a line. */
	opd_files_init(&f);
	add(&f, "x.yaml", "text/yaml", "a: \xff\xfe\n");
	assert_int_equal(opd_validate_files(&f, &err), OPD_EINVAL);
	assert_string_equal(err.file, "x.yaml");
	assert_non_null(strstr(err.message, "file \"x.yaml\""));
	opd_files_fini(&f);
}

static void expect_invalid(struct opd_files *f, const char *file, const char *needle)
{
	struct opd_validation_error err;

	assert_int_equal(opd_validate_files(f, &err), OPD_EINVAL);
	assert_string_equal(err.file, file);
	if (strstr(err.message, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.message, needle);
	opd_files_fini(f);
	opd_files_init(f);
}

static void test_bad_files(void **state)
{
	char name[OPD_MAX_FILE_NAME + 2];
	struct opd_files f;

	(void)state;
	opd_files_init(&f);
	expect_invalid(&f, "", "at least one file");

	add(&f, "a.yaml", "text/yaml", "a: 1\n");
	add(&f, "b", "text/plain", "x");
	add(&f, "a.yaml", "text/yaml", "a: 2\n");
	expect_invalid(&f, "a.yaml", "twice");

	add(&f, "", "text/plain", "x");
	add(&f, "", "text/plain", "y");
	expect_invalid(&f, "", "twice");

	add(&f, "dir/a.yaml", "text/yaml", "a: 1\n");
	expect_invalid(&f, "dir/a.yaml", "must not contain");
	add(&f, "dir\\a", "text/plain", "a");
	expect_invalid(&f, "dir\\a", "must not contain");
	add(&f, "tab\there", "text/plain", "a");
	expect_invalid(&f, "tab\there", "must not contain");

	memset(name, 'f', OPD_MAX_FILE_NAME);
	name[OPD_MAX_FILE_NAME] = '\0';
	add(&f, name, "text/plain", "ok");
	struct opd_validation_error err;
	assert_int_equal(opd_validate_files(&f, &err), 0);
	opd_files_fini(&f);
	opd_files_init(&f);
	name[OPD_MAX_FILE_NAME] = 'f';
	name[OPD_MAX_FILE_NAME + 1] = '\0';
	add(&f, name, "text/plain", "ok");
	expect_invalid(&f, "", "longer than");

	add(&f, "a", "", "x");
	expect_invalid(&f, "a", "empty content type");
	add(&f, "a", "text/plain\n", "x");
	expect_invalid(&f, "a", "non-printable");
	char ct[200];
	memset(ct, 'c', sizeof ct - 1);
	ct[sizeof ct - 1] = '\0';
	add(&f, "a", ct, "x");
	expect_invalid(&f, "a", "content type longer");
	opd_files_fini(&f);
}

static void test_limits(void **state)
{
	struct opd_validation_error err;
	struct opd_files f;
	char name[16];
	uint8_t *big;

	(void)state;
	opd_files_init(&f);
	for (int i = 0; i < OPD_MAX_FILES; i++) {
		snprintf(name, sizeof name, "f%02d", i);
		add(&f, name, "text/plain", "x");
	}
	assert_int_equal(opd_validate_files(&f, &err), 0);
	add(&f, "one-too-many", "text/plain", "x");
	expect_invalid(&f, "", "more than the limit of 64");

	/* Exactly the limit in two files passes; one byte more does not. */
	big = calloc(1, OPD_MAX_CONFIG_BYTES + 1);
	assert_non_null(big);
	opd_files_add(&f, "a", "application/octet-stream", big, OPD_MAX_CONFIG_BYTES - 10);
	opd_files_add(&f, "b", "application/octet-stream", big, 10);
	assert_int_equal(opd_validate_files(&f, &err), 0);
	opd_files_fini(&f);
	opd_files_init(&f);
	opd_files_add(&f, "a", "application/octet-stream", big, OPD_MAX_CONFIG_BYTES - 10);
	opd_files_add(&f, "b", "application/octet-stream", big, 11);
	expect_invalid(&f, "", "larger than the limit");
	opd_files_add(&f, "a", "application/octet-stream", big, OPD_MAX_CONFIG_BYTES + 1);
	expect_invalid(&f, "", "larger than the limit");
	free(big);
	opd_files_fini(&f);
}

static void test_selector(void **state)
{
	struct opd_validation_error err;
	struct opd_kvs s;
	char key[300], value[1100];

	(void)state;
	assert_int_equal(opd_validate_selector(NULL, &err), 0);
	opd_kvs_init(&s);
	assert_int_equal(opd_validate_selector(&s, &err), 0);
	opd_kvs_add(&s, "service.name", "collector");
	opd_kvs_add(&s, "env", "");
	assert_int_equal(opd_validate_selector(&s, &err), 0);
	opd_kvs_add(&s, "", "x");
	assert_int_equal(opd_validate_selector(&s, &err), OPD_EINVAL);
	assert_non_null(strstr(err.message, "empty"));
	opd_kvs_fini(&s);

	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	opd_kvs_add(&s, key, "v");
	assert_int_equal(opd_validate_selector(&s, &err), OPD_EINVAL);
	opd_kvs_fini(&s);
	key[256] = '\0';
	opd_kvs_add(&s, key, "v");
	assert_int_equal(opd_validate_selector(&s, &err), 0);
	opd_kvs_fini(&s);

	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = '\0';
	opd_kvs_add(&s, "k", value);
	assert_int_equal(opd_validate_selector(&s, &err), OPD_EINVAL);
	opd_kvs_fini(&s);
	value[1024] = '\0';
	opd_kvs_add(&s, "k", value);
	assert_int_equal(opd_validate_selector(&s, &err), 0);
	opd_kvs_fini(&s);

	for (int i = 0; i <= OPD_MAX_SELECTOR_PAIRS; i++) {
		snprintf(key, sizeof key, "k%d", i);
		opd_kvs_add(&s, key, "v");
		assert_int_equal(opd_validate_selector(&s, &err),
				 i < OPD_MAX_SELECTOR_PAIRS ? 0 : OPD_EINVAL);
	}
	opd_kvs_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_good_files),
	    cmocka_unit_test(test_bad_yaml_position),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_selector),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
