/*
 * Declarations shared by the files of opampd/ and nothing else (STYLE.md:
 * folder-internal names carry a double underscore). Today: the admin API,
 * whose certificate routes live in admin_certs.c and use admin.c's
 * responses, JSON helpers and deferred writes.
 */
#ifndef OPD_OPAMPD_INTERNAL_H
#define OPD_OPAMPD_INTERNAL_H

#include "admin.h"
#include "configs.h"
#include "kv.h"
#include "list.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define OPD_ADMIN_ACTOR "admin"
#define OPD_ADMIN_MAX_SEGMENTS 6  /* /api/v1/configs/{name}/versions/{n} */
#define OPD_ADMIN_MAX_SEGMENT 256 /* longer than any name (128) or uid (36) */

struct opd_agent;

/*
 * A write waiting for the cluster. While opd_admin_handle still runs,
 * sync_resp points at its response so an immediate completion (tests
 * without a node, refusals) answers in place; later ones go through
 * ops.complete, unless the connection closed (conn = NULL).
 */
enum call_kind {
	CALL_PUBLISH,
	CALL_ROLLBACK,
	CALL_DELETE,
	CALL_CERT_REVOKE,
	CALL_CA_ROTATE,
	CALL_CA_ACTIVATE,
	CALL_CA_RETIRE,
	CALL_ROTATION,
	CALL_CSR,
};

struct admin_call {
	struct opd_list link;
	struct opd_admin *a;
	void *conn;
	struct opd_admin_response *sync_resp;
	int answered;
	enum call_kind kind;
	char name[OPD_MAX_CONFIG_NAME + 1];
	struct opd_kvs selector;
	int64_t priority;
	char request_id[2 * OPD_REQUEST_ID_LEN + 1];
	int forwarded; /* by a follower, which answers once it has applied the write */
};

/* Responses: a JSON body (stolen), an error object {"error": {code, message}}. */
void opd_admin__reply(struct opd_admin_response *resp, int status, json_t *j);
void opd_admin__reply_error(struct opd_admin_response *resp, int status, const char *code,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void opd_admin__reply_not_found(struct opd_admin_response *resp);
void opd_admin__reply_method(struct opd_admin_response *resp, const char *allow);
void opd_admin__reply_store_error(struct opd_admin_response *resp, int rc);

/* JSON values: text made valid UTF-8 (NULL: null), integers clamped to int64, pairs. */
json_t *opd_admin__jstr(const char *s);
json_t *opd_admin__ju64(uint64_t v);
json_t *opd_admin__jkvs(const struct opd_kvs *kvs);

/* Percent-decode n bytes of s into out (cap bytes; plus: '+' is a space). 0, OPD_EINVAL,
 * OPD_ETOOBIG. */
int opd_admin__url_decode(const char *s, size_t n, bool plus, char *out, size_t cap);

/* The request's JSON object body, or NULL with resp filled (400/413/415). */
json_t *opd_admin__parse_body(const struct opd_http_request *req, struct opd_admin_response *resp);

/* The idempotency request id of req (see admin.c); 0, or -1 with resp filled. */
int opd_admin__request_id(const struct opd_http_request *req, uint8_t id[OPD_REQUEST_ID_LEN],
			  struct opd_admin_response *resp);

/* Deferred writes. */
struct admin_call *opd_admin__call_new(struct opd_admin *a, void *conn, enum call_kind kind,
				       const char *name, struct opd_admin_response *resp);
void opd_admin__call_free(struct admin_call *c);
/* After starting a write that returned rc: 0 answered or deferred, else OPD_EAGAIN. */
int opd_admin__call_started(struct admin_call *c, int rc, struct opd_admin_response *resp);
/* 1 when this node performs the write; 0 with *rc set when forwarded or refused. */
int opd_admin__write_here(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			  struct opd_admin_response *resp, int *rc);

bool opd_admin__method_is(const struct opd_http_request *req, const char *m);

/* The first key of obj that is not in allowed (NULL-terminated), or NULL. */
const char *opd_admin__unknown_key(json_t *obj, const char *const *allowed);
/* A positive decimal (a version number, a limit). 0 or OPD_EINVAL. */
int opd_admin__parse_version(const char *s, uint64_t *out);
/* The status and error object for a refused or failed write. */
void opd_admin__reply_write_error(struct opd_admin_response *resp,
				  const struct opd_write_result *r);

/* One agent as the API shows it (GET /api/v1/agents). */
json_t *opd_admin__agent_json(struct opd_admin *a, const struct opd_agent *ag, uint64_t now);

/* admin_certs.c: /api/v1/certificates, /ca, /rotations; POST /internal/v1/csr. */
int opd_admin__route_certs(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			   char seg[OPD_ADMIN_MAX_SEGMENTS][OPD_ADMIN_MAX_SEGMENT], int n,
			   struct opd_admin_response *resp);
int opd_admin__internal_csr(struct opd_admin *a, const struct opd_http_request *req, void *conn,
			    struct opd_admin_response *resp);

#endif
