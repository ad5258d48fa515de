/* The web UI's routes and embedded files (opampd/ui.c, opampd/ui/embed.cmake). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ui.h"

static const struct opd_ui_file *find(const char *path)
{
	for (const struct opd_ui_file *f = opd_ui_files; f->path != NULL; f++)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

static void embedded_files(void **state)
{
	const char *const want[] = {"/ui/index.html", "/ui/app.js", "/ui/style.css",
				    "/ui/favicon.svg"};

	(void)state;
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const struct opd_ui_file *f = find(want[i]);

		assert_non_null(f);
		assert_true(f->len > 0);
		/* The generator NUL-terminates each array; the length leaves it out. */
		assert_int_equal(f->data[f->len], 0);
		assert_null(memchr(f->data, 0, f->len));
	}
	assert_string_equal(find("/ui/app.js")->content_type, "text/javascript; charset=utf-8");
	assert_string_equal(find("/ui/style.css")->content_type, "text/css; charset=utf-8");
	assert_string_equal(find("/ui/favicon.svg")->content_type, "image/svg+xml");
	assert_memory_equal(find("/ui/index.html")->data, "<!doctype html>", 15);
}

static void index_at_root(void **state)
{
	const char *const paths[] = {"/", "/ui", "/ui/", "/ui/index.html"};
	const struct opd_ui_file *index = find("/ui/index.html");

	(void)state;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		struct opd_ui_response r;

		assert_int_equal(opd_ui_route("GET", paths[i], &r), 1);
		assert_int_equal(r.status, 200);
		assert_ptr_equal(r.body, index->data);
		assert_int_equal(r.len, index->len);
		assert_string_equal(r.content_type, "text/html; charset=utf-8");
		assert_non_null(strstr(r.headers, "Content-Security-Policy: default-src 'none';"));
		assert_non_null(strstr(r.headers, "X-Content-Type-Options: nosniff\r\n"));
	}
}

static void unknown_and_wrong_method(void **state)
{
	const char *const missing[] = {"/ui/nope.js", "/ui/../admin.token", "/ui/app.js/",
				       "/ui/APP.JS", "/ui//app.js"};
	struct opd_ui_response r;

	(void)state;
	for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		assert_int_equal(opd_ui_route("GET", missing[i], &r), 1);
		assert_int_equal(r.status, 404);
	}
	assert_int_equal(opd_ui_route("POST", "/", &r), 1);
	assert_int_equal(r.status, 405);
	assert_non_null(strstr(r.headers, "Allow: GET\r\n"));
	assert_int_equal(opd_ui_route("DELETE", "/ui/app.js", &r), 1);
	assert_int_equal(r.status, 405);
}

static void other_paths_untouched(void **state)
{
	const char *const others[] = {
	    "/api/v1/agents", "/metrics", "/healthz", "/uix", "/ui.js", "/internal/v1/agents", ""};
	struct opd_ui_response r = {.status = -1};

	(void)state;
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		assert_int_equal(opd_ui_route("GET", others[i], &r), 0);
		assert_int_equal(r.status, -1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(embedded_files),
	    cmocka_unit_test(index_at_root),
	    cmocka_unit_test(unknown_and_wrong_method),
	    cmocka_unit_test(other_paths_untouched),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
