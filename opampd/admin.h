/*
 * The admin REST API: JSON over HTTP, bearer token on every /api/ call.
 * A request goes in, a response comes out; the daemon's wiring moves the
 * bytes. Errors are {"error": {"code": "...", "message": "..."}}.
 * Documented in schemas/admin-api.yaml.
 *
 * Reads are answered at once. Writes wait for the cluster: on the leader
 * they are answered once the entry is applied; elsewhere they are forwarded
 * to the leader through the wiring's forward hook, or refused with 503
 * read_only when no leader can be reached. Such requests are "deferred":
 * opd_admin_handle returns OPD_EAGAIN and the response comes later through
 * the complete hook, unless the connection closed meanwhile.
 */
#ifndef OPD_ADMIN_H
#define OPD_ADMIN_H

#include "buf.h"
#include "clock.h"
#include "configs.h"
#include "http.h"
#include "list.h"
#include "registry.h"

#include <jansson.h>

struct opd_certs;

struct opd_admin_response {
	int status;
	const char *content_type; /* static string */
	struct opd_buf headers;   /* extra "Name: value\r\n" lines */
	struct opd_buf body;
};

struct opd_admin;

/* Makes a response out of every node's agents (see fanout_agents). */
typedef void (*opd_admin_shape)(struct opd_admin *a, json_t *merged, json_t *arg,
				struct opd_admin_response *resp);

/* Hooks into the daemon's wiring (all optional: NULL in unit tests). */
struct opd_admin_ops {
	/* Deliver a deferred response to conn. resp is borrowed for the call. */
	void (*complete)(void *data, void *conn, struct opd_admin_response *resp);
	/*
	 * This node cannot write: forward req to the leader and answer conn
	 * through complete (return 0), or fill resp with the refusal (non-zero).
	 */
	int (*forward)(void *data, void *conn, const struct opd_http_request *req,
		       struct opd_admin_response *resp);
	/* GET /api/v1/cluster and the membership calls: fill resp, or defer and return OPD_EAGAIN.
	 */
	int (*cluster)(void *data, void *conn, const struct opd_http_request *req, const char *sub,
		       struct opd_admin_response *resp);
	/*
	 * Merge other nodes' agents into a local list: ask every other member for
	 * GET /internal/v1/agents?query, take local (a {"agents": [...]} object,
	 * stolen), and answer conn through complete with the merged object
	 * ({"agents", "count", "partial"[, "unreachable"]}), or with what
	 * shape(admin, merged, shape_arg, resp) makes of it when shape is not
	 * NULL (shape_arg stolen). Return 0, or non-zero when there is nothing to
	 * merge with (local and shape_arg are released then).
	 */
	int (*fanout_agents)(void *data, void *conn, const char *query, json_t *local,
			     opd_admin_shape shape, json_t *shape_arg);
	/*
	 * POST /api/v1/tls/reload: reload this node's server certificates (and
	 * agent tokens) from their files. Returns what is served now (a JSON
	 * object, stolen), or NULL with errmsg (OPD_ERRMSG_SIZE bytes) set and
	 * nothing changed. Called with tls_data, not data (another owner).
	 */
	json_t *(*tls_reload)(void *tls_data, char *errmsg);
	void *tls_data;
	void *data;
};

struct opd_admin {
	struct opd_configs *configs;   /* borrowed */
	struct opd_certs *certs;       /* borrowed; NULL: no certificate routes */
	struct opd_registry *registry; /* borrowed */
	const struct opd_clock *clock; /* borrowed */
	struct opd_admin_ops ops;
	char token[80];        /* the operator's bearer token */
	char peer_token[80];   /* the cluster's internal token ("" = no peers) */
	int ready;             /* /readyz answers 200 only when set */
	struct opd_list calls; /* deferred writes waiting for the cluster */
};

void opd_admin_init(struct opd_admin *a);
/* Forget every deferred call (their completions are dropped). */
void opd_admin_fini(struct opd_admin *a);

void opd_admin_response_init(struct opd_admin_response *r);
void opd_admin_response_fini(struct opd_admin_response *r);

/*
 * Handle one request for conn (an opaque token handed back to complete).
 * Returns 0 with resp filled, or OPD_EAGAIN when the answer comes later
 * through ops.complete (resp untouched).
 */
int opd_admin_handle(struct opd_admin *a, const struct opd_http_request *req, void *conn,
		     struct opd_admin_response *resp);

/* conn closed: its deferred answers, if any, are dropped. */
void opd_admin_conn_closed(struct opd_admin *a, void *conn);

/*
 * Merge agent lists: for each instance_uid keep the entry with the newest
 * last_seen_ms. Takes arrays of agent objects (borrowed) and returns a new
 * array.
 */
json_t *opd_admin_merge_agents(json_t *const *lists, size_t n);

/* The token nodes use among themselves, derived from the shared signing key. */
void opd_admin_peer_token(const struct opd_signer *s, char out[65]);

#endif
