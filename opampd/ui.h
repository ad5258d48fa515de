/*
 * The web UI's static files, embedded into the binary at build time (the
 * files in opampd/ui/, turned into C arrays by opampd/ui/embed.cmake) and
 * served on the admin port without a token: they hold no data. The page
 * asks the operator for the admin token and sends it as a bearer header on
 * each admin API call, so every read and write goes through the API.
 * Pure: a method and a path go in, a response to send comes out.
 */
#ifndef OPD_UI_H
#define OPD_UI_H

#include <stddef.h>
#include <stdint.h>

/* One embedded file. The table ends with an entry whose path is NULL. */
struct opd_ui_file {
	const char *path;         /* "/ui/app.js"; "/ui/index.html" is also served at "/" */
	const char *content_type; /* with charset for text */
	const uint8_t *data;
	size_t len;
};

/* Generated at build time from opampd/ui/. */
extern const struct opd_ui_file opd_ui_files[];

/* What to send: all fields are static strings or embedded data, never freed. */
struct opd_ui_response {
	int status;
	const char *content_type;
	const char *headers; /* extra "Name: value\r\n" lines */
	const uint8_t *body;
	size_t len;
};

/*
 * Whether path (without the query) belongs to the UI: "/" or anything under
 * "/ui/". When it does, fills *out with the file (200), a 404 for an unknown
 * file, or a 405 for a method other than GET, and returns 1. Returns 0 for
 * every other path, leaving *out untouched, so the caller hands the request
 * to the admin API.
 */
int opd_ui_route(const char *method, const char *path, struct opd_ui_response *out);

#endif
