#include "ui.h"

#include <string.h>

/*
 * The page loads only its own files and talks only to its own origin; every
 * value from an agent or an operator is inserted as text, and this policy
 * keeps it so even if one slipped through as markup (no inline script runs).
 */
#define UI_HEADERS                                                                                 \
	"Cache-Control: no-cache\r\n"                                                              \
	"X-Content-Type-Options: nosniff\r\n"                                                      \
	"X-Frame-Options: DENY\r\n"                                                                \
	"Referrer-Policy: no-referrer\r\n"                                                         \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "       \
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "          \
	"frame-ancestors 'none'\r\n"

static const char not_found[] = "not found\n";
static const char not_allowed[] = "method not allowed\n";

int opd_ui_route(const char *method, const char *path, struct opd_ui_response *out)
{
	const char *want = path;

	if (strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0 || strcmp(path, "/ui/") == 0)
		want = "/ui/index.html";
	else if (strncmp(path, "/ui/", 4) != 0)
		return 0;
	if (strcmp(method, "GET") != 0) {
		*out = (struct opd_ui_response){
		    405, "text/plain; charset=utf-8", "Allow: GET\r\n" UI_HEADERS,
		    (const uint8_t *)not_allowed, sizeof not_allowed - 1};
		return 1;
	}
	for (const struct opd_ui_file *f = opd_ui_files; f->path != NULL; f++) {
		if (strcmp(f->path, want) == 0) {
			*out = (struct opd_ui_response){200, f->content_type, UI_HEADERS, f->data,
							f->len};
			return 1;
		}
	}
	*out = (struct opd_ui_response){404, "text/plain; charset=utf-8", UI_HEADERS,
					(const uint8_t *)not_found, sizeof not_found - 1};
	return 1;
}
