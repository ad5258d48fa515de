/*
 * The admin REST API: JSON over HTTP, bearer token on every /api/ call.
 * A request goes in, a response comes out; the daemon's wiring moves the
 * bytes. Errors are {"error": {"code": "...", "message": "..."}}.
 * Documented in schemas/admin-api.yaml.
 */
#ifndef OPD_ADMIN_H
#define OPD_ADMIN_H

#include "buf.h"
#include "clock.h"
#include "configs.h"
#include "http.h"
#include "registry.h"

struct opd_admin {
	struct opd_configs *configs;   /* borrowed */
	struct opd_registry *registry; /* borrowed */
	const struct opd_clock *clock; /* borrowed */
	char token[80];                /* the bearer token */
	int ready;                     /* /readyz answers 200 only when set */
};

struct opd_admin_response {
	int status;
	const char *content_type; /* static string */
	struct opd_buf headers;   /* extra "Name: value\r\n" lines */
	struct opd_buf body;
};

void opd_admin_response_init(struct opd_admin_response *r);
void opd_admin_response_fini(struct opd_admin_response *r);

/* Handle one request. Never fails: every problem becomes an error response. */
void opd_admin_handle(struct opd_admin *a, const struct opd_http_request *req,
		      struct opd_admin_response *resp);

#endif
