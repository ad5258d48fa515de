/*
 * The CLI's unified line diff (opampd config diff): exact output for the shapes that matter
 * (edits at either end, a missing final newline, hunks kept apart or joined by their context),
 * and, over random texts, that the hunks turn the old text into the new one and change no more
 * lines than `diff --minimal` does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

static char *diff_text(const char *a, const char *b, int ctx, size_t *changed)
{
	struct opd_buf out;
	char *s;

	opd_buf_init(&out);
	*changed = opd_cli_diff(a, strlen(a), b, strlen(b), "a", "b", ctx, &out);
	opd_buf_append_byte(&out, 0);
	s = strdup((const char *)opd_buf_rptr(&out));
	opd_buf_fini(&out);
	assert_non_null(s);
	return s;
}

static void expect(const char *a, const char *b, int ctx, const char *want, size_t want_changed)
{
	size_t changed;
	char *got = diff_text(a, b, ctx, &changed);

	if (strcmp(got, want) != 0)
		fprintf(stderr, "got:\n%s\nwant:\n%s\n", got, want);
	assert_string_equal(got, want);
	assert_int_equal(changed, want_changed);
	free(got);
}

static void test_equal(void **state)
{
	(void)state;
	expect("x\ny\n", "x\ny\n", 3, "", 0);
	expect("", "", 3, "", 0);
}

static void test_ends(void **state)
{
	(void)state;
	expect("b\nc\n", "a\nb\nc\n", 3, "--- a\n+++ b\n@@ -1,2 +1,3 @@\n+a\n b\n c\n", 1);
	expect("a\nb\nc\n", "a\nb\n", 3, "--- a\n+++ b\n@@ -1,3 +1,2 @@\n a\n b\n-c\n", 1);
	expect("", "x\n", 3, "--- a\n+++ b\n@@ -0,0 +1 @@\n+x\n", 1);
	expect("x\ny\n", "", 3, "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n", 2);
}

static void test_no_newline(void **state)
{
	(void)state;
	expect("a\nb", "a\nb\n", 3,
	       "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n", 2);
}

static void test_hunks(void **state)
{
	static const char a[] = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
	static const char b[] = "1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\nELEVEN\n12\n";

	(void)state;
	/* Seven equal lines between the changes: more than 2 x 3, two hunks. */
	expect(a, b, 3,
	       "--- a\n+++ b\n"
	       "@@ -1,5 +1,5 @@\n 1\n-2\n+TWO\n 3\n 4\n 5\n"
	       "@@ -8,5 +8,5 @@\n 8\n 9\n 10\n-11\n+ELEVEN\n 12\n",
	       4);
	/* With 4 lines of context they touch: one hunk. */
	expect(a, b, 4,
	       "--- a\n+++ b\n"
	       "@@ -1,12 +1,12 @@\n 1\n-2\n+TWO\n 3\n 4\n 5\n 6\n 7\n 8\n 9\n 10\n-11\n+ELEVEN\n"
	       " 12\n",
	       4);
	/* No context at all. */
	expect(a, b, 0, "--- a\n+++ b\n@@ -2 +2 @@\n-2\n+TWO\n@@ -11 +11 @@\n-11\n+ELEVEN\n", 4);
}

/* ---- random texts ---- */

struct line {
	const char *p;
	size_t n; /* with its '\n' if any */
};

static size_t split(const char *s, struct line *v, size_t cap)
{
	size_t k = 0;

	while (*s && k < cap) {
		const char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) + 1 : strlen(s);
		v[k++] = (struct line){s, n};
		s += n;
	}
	return k;
}

/* Apply the unified diff d to a; the result is written to out. 0, or -1 when it does not fit. */
static int patch(const char *a, const char *d, char *out, size_t cap)
{
	struct line al[256];
	size_t na = split(a, al, 256), ai = 0, o = 0;
	const char *p = d;
	char last = 0;

	out[0] = '\0';
#define PUT(ptr, len)                                                                              \
	do {                                                                                       \
		if (o + (len) >= cap)                                                              \
			return -1;                                                                 \
		memcpy(out + o, (ptr), (len));                                                     \
		o += (len);                                                                        \
	} while (0)
	/* Skip the two header lines. */
	for (int i = 0; i < 2 && *p; i++)
		p = strchr(p, '\n') + 1;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = (size_t)(nl - p);
		long a0, ac = 1;

		if (p[0] == '@') {
			if (sscanf(p, "@@ -%ld,%ld", &a0, &ac) < 1)
				return -1;
			if (ac == 0)
				a0++; /* "-k,0" names the line before */
			/* Copy the unchanged lines before the hunk. */
			while (ai + 1 < (size_t)a0 && ai < na) {
				PUT(al[ai].p, al[ai].n);
				ai++;
			}
		} else if (p[0] == ' ' || p[0] == '-') {
			if (ai >= na || al[ai].n < n - 1 || memcmp(al[ai].p, p + 1, n - 1) != 0)
				return -1;
			if (p[0] == ' ')
				PUT(al[ai].p, al[ai].n);
			ai++;
		} else if (p[0] == '+') {
			PUT(p + 1, n - 1);
			PUT("\n", 1);
		} else if (p[0] == '\\') {
			/* The line before has no newline: take back the one a '+' line got. */
			if (last == '+' && o > 0)
				o--;
		}
		last = p[0];
		p = nl + 1;
	}
	while (ai < na) {
		PUT(al[ai].p, al[ai].n);
		ai++;
	}
	out[o] = '\0';
	return 0;
#undef PUT
}

static void random_text(unsigned *seed, char *out, size_t cap)
{
	static const char *const words[] = {"a", "b", "c", "d", "receivers:", "  otlp: {}"};
	size_t n = (size_t)(rand_r(seed) % 14), o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && o + 16 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s\n",
				      words[rand_r(seed) % (sizeof words / sizeof words[0])]);
	if (o > 0 && rand_r(seed) % 5 == 0)
		out[--o] = '\0'; /* no final newline */
}

/* Lines that `diff --minimal` changes, counted from its normal output; -1 without diff. */
static long minimal_changes(const char *a, const char *b)
{
	char fa[] = "/tmp/opd-diff-a-XXXXXX", fb[] = "/tmp/opd-diff-b-XXXXXX", cmd[128], line[512];
	int da = mkstemp(fa), db = mkstemp(fb);
	long n = 0;
	FILE *p;

	assert_true(da >= 0 && db >= 0);
	assert_int_equal(write(da, a, strlen(a)), (ssize_t)strlen(a));
	assert_int_equal(write(db, b, strlen(b)), (ssize_t)strlen(b));
	close(da);
	close(db);
	snprintf(cmd, sizeof cmd, "diff --minimal %s %s 2>/dev/null", fa, fb);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof line, p) != NULL)
		n += line[0] == '<' || line[0] == '>';
	if (pclose(p) == -1 || system("command -v diff >/dev/null 2>&1") != 0)
		n = -1;
	unlink(fa);
	unlink(fb);
	return n;
}

static void test_random(void **state)
{
	unsigned seed = 20240501;
	int have_diff = system("command -v diff >/dev/null 2>&1") == 0, compared = 0;

	(void)state;
	for (int i = 0; i < 400; i++) {
		char a[512], b[512], back[2048];
		size_t changed;
		char *d;

		random_text(&seed, a, sizeof a);
		random_text(&seed, b, sizeof b);
		d = diff_text(a, b, rand_r(&seed) % 4, &changed);
		if (strcmp(a, b) == 0) {
			assert_string_equal(d, "");
		} else {
			if (patch(a, d, back, sizeof back) != 0 || strcmp(back, b) != 0) {
				fprintf(stderr, "a:\n%s\nb:\n%s\ndiff:\n%s\npatched:\n%s\n", a, b,
					d, back);
				fail();
			}
			/* Minimal: no more changed lines than diff --minimal finds. */
			if (have_diff && i % 4 == 0) {
				long want = minimal_changes(a, b);
				if (want >= 0) {
					assert_int_equal((long)changed, want);
					compared++;
				}
			}
		}
		free(d);
	}
	if (!have_diff)
		fprintf(stderr, "diff not installed: the minimality check was skipped\n");
	else
		assert_true(compared > 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_equal),      cmocka_unit_test(test_ends),
	    cmocka_unit_test(test_no_newline), cmocka_unit_test(test_hunks),
	    cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
