#define LOG_COMPONENT "csr"

#include "csr.h"

#include "err.h"
#include "hex.h"
#include "log.h"
#include "mem.h"
#include "session.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEER_ANSWER (256 * 1024) /* a certificate and a CA bundle */

/* One signing on its way: whom to tell once the leader has signed. */
struct csr_job {
	struct opd_csr *x;
	opd_csr_signed_cb cb;
	void *data;
};

static void finish(struct csr_job *j, int status, const char *cert, const char *ca,
		   const char *message)
{
	j->cb(j->data, status, cert, ca, message);
	free(j);
}

static void issued(void *data, const struct opd_cert_result *r)
{
	struct csr_job *j = data;
	struct opd_buf bundle;

	opd_buf_init(&bundle);
	if (r->status == 0 && opd_certs_bundle(j->x->certs, &bundle) == 0) {
		opd_buf_append_byte(&bundle, 0);
		finish(j, 0, r->cert_pem, (const char *)opd_buf_rptr(&bundle), NULL);
	} else if (r->status == 0) {
		finish(j, OPD_EIO, NULL, NULL, "no CA bundle yet");
	} else {
		finish(j, r->status == OPD_EINVAL ? OPD_EINVAL : OPD_EIO, NULL, NULL,
		       r->message[0] ? r->message : opd_strerror(r->status));
	}
	opd_buf_fini(&bundle);
}

/* The leader's answer to POST /internal/v1/csr. */
static void relayed(void *data, int status, const char *content_type, const char *retry_after,
		    const uint8_t *body, size_t len)
{
	struct csr_job *j = data;
	json_t *o = status >= 0 ? json_loadb((const char *)body, len, 0, NULL) : NULL;
	const char *cert = json_string_value(json_object_get(o, "cert"));
	const char *ca = json_string_value(json_object_get(o, "ca_cert"));
	const char *msg =
	    json_string_value(json_object_get(json_object_get(o, "error"), "message"));

	(void)content_type;
	(void)retry_after;
	if (status == 200 && cert != NULL && cert[0] != '\0')
		finish(j, 0, cert, ca, NULL);
	else if (status == 400)
		finish(j, OPD_EINVAL, NULL, NULL, msg ? msg : "the leader refused the CSR");
	else
		finish(j, OPD_EIO, NULL, NULL, msg ? msg : "the leader did not sign the CSR");
	json_decref(o);
}

/* Relay to the leader; 0, or non-zero with nothing sent. */
static int forward(struct opd_csr *x, struct csr_job *j, uint64_t leader, const uint8_t uid[16],
		   const uint8_t *csr, size_t len, const char *reason, const char *rotation_id)
{
	struct opd_cluster *c = x->cluster;
	char base[OPD_CLUSTER_URL_MAX], url[OPD_CLUSTER_URL_MAX + 32], auth[128], hex[33];
	char from[64];
	const char *headers[4] = {auth, "Content-Type: application/json", from, NULL};
	json_t *o;
	char *body;
	int rc;

	if (c == NULL || c->httpc == NULL ||
	    opd_cluster_admin_url(c, leader, base, sizeof base) == NULL)
		return OPD_ENOTFOUND;
	opd_hex_encode(uid, OPD_UID_LEN, hex);
	o = json_pack("{s:s, s:s%, s:s, s:s}", "instance_uid", hex, "csr", (const char *)csr, len,
		      "reason", reason, "rotation_id", rotation_id != NULL ? rotation_id : "");
	body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (body == NULL)
		return OPD_EINVAL; /* not text: certs.c would refuse it too */
	snprintf(url, sizeof url, "%s/internal/v1/csr", base);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->admin->peer_token);
	snprintf(from, sizeof from, "X-Opampd-Forwarded: %llu", (unsigned long long)x->self_id);
	rc = opd_httpc_request(c->httpc, "POST", url, headers, body, strlen(body),
			       OPD_CSR_FORWARD_TIMEOUT_MS, MAX_PEER_ANSWER, relayed, j);
	free(body);
	if (rc == 0)
		x->forwarded++;
	return rc;
}

int opd_csr_sign(struct opd_csr *x, const uint8_t uid[OPD_UID_LEN], const uint8_t *csr, size_t len,
		 const char *reason, const char *rotation_id, const char *actor,
		 opd_csr_signed_cb cb, void *data)
{
	struct opd_node *node = x->certs->configs->node;
	struct opd_node_status st;
	struct csr_job *j;
	int rc;

	if (x->certs->n_keys == 0) {
		cb(data, OPD_EIO, NULL, NULL, "this server has no CA");
		return 0;
	}
	j = opd_xcalloc(1, sizeof *j);
	*j = (struct csr_job){x, cb, data};
	if (node != NULL) {
		opd_node_status(node, &st);
		if (st.read_only) {
			finish(j, OPD_EIO, NULL, NULL,
			       "no quorum: this node is read-only and nothing can be signed now");
			return 0;
		}
		if (!opd_node_writable(node)) {
			rc = st.leader_id == 0 || st.leader_id == x->self_id
				 ? OPD_ENOTLEADER
				 : forward(x, j, st.leader_id, uid, csr, len, reason, rotation_id);
			if (rc == OPD_EINVAL)
				finish(j, OPD_EINVAL, NULL, NULL, "the CSR is not PEM text");
			else if (rc != 0)
				finish(j, OPD_EIO, NULL, NULL, "the leader cannot be reached");
			return 0;
		}
	}
	rc = opd_certs_issue_csr(x->certs, uid, csr, len, reason, rotation_id, actor, NULL, issued,
				 j);
	if (rc != 0)
		finish(j, OPD_EIO, NULL, NULL, "this node cannot sign now");
	return 0;
}

/* ---- the agent-initiated flow ---- */

struct agent_job {
	struct opd_csr *x;
	uint64_t token;
	uint8_t uid[OPD_UID_LEN];
};

static void answer(void *data, int status, const char *cert, const char *ca, const char *message)
{
	struct agent_job *j = data;
	struct opd_csr *x = j->x;
	struct opd_csr_answer ans = {status, cert, ca, message};
	char hex[2 * OPD_UID_LEN + 1];

	opd_hex_encode(j->uid, OPD_UID_LEN, hex);
	if (status == 0)
		x->issued++;
	else if (status == OPD_EINVAL)
		x->refused++;
	else
		x->unavailable++;
	if (status == 0)
		log_info("issued agent certificate uid=%s", hex);
	else
		log_info("agent CSR not signed uid=%s %s reason=\"%s\"", hex,
			 status == OPD_EINVAL ? "refused" : "unavailable", message ? message : "");
	opd_session_csr_answer(x->registry, j->token, j->uid, &ans);
	free(j);
}

void opd_csr_request(void *data, const struct opd_agent *a, const uint8_t *csr, size_t len,
		     uint64_t token)
{
	struct opd_csr *x = data;
	struct agent_job *j = opd_xcalloc(1, sizeof *j);

	*j = (struct agent_job){.x = x, .token = token};
	memcpy(j->uid, a->uid, OPD_UID_LEN);
	(void)opd_csr_sign(x, a->uid, csr, len, "csr", NULL, "agent", answer, j);
}
