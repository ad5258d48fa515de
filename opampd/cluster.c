#define LOG_COMPONENT "cluster"

#include "cluster.h"

#include "hex.h"
#include "log.h"
#include "mem.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_MS 100
#define FANOUT_TIMEOUT_MS 3000
#define MAX_PEER_RESPONSE (64u << 20)

/* ---- members ---- */

const char *opd_cluster_admin_url(struct opd_cluster *c, uint64_t id, char *buf, size_t cap)
{
	for (size_t i = 0; i < c->n_seeds; i++) {
		if (c->seeds[i].id == id) {
			snprintf(buf, cap, "%s", c->seeds[i].admin_url);
			return buf;
		}
	}
	if (opd_store_member_admin_url(&c->configs->store, id, buf, cap) == 0)
		return buf;
	if (id == c->self_id && c->self_url[0] != '\0') {
		snprintf(buf, cap, "%s", c->self_url);
		return buf;
	}
	return NULL;
}

static void set_json_error(struct opd_admin_response *resp, int status, const char *code,
			   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void set_json_error(struct opd_admin_response *resp, int status, const char *code,
			   const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o = json_object(), *e = json_object();
	char *text;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_set_new(e, "code", json_string(code));
	json_object_set_new(e, "message", json_string(msg));
	json_object_set_new(o, "error", e);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	resp->status = status;
	resp->content_type = "application/json";
	opd_buf_reset(&resp->body);
	opd_buf_append(&resp->body, text, strlen(text));
	free(text);
}

static void set_json(struct opd_admin_response *resp, int status, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	resp->status = status;
	resp->content_type = "application/json";
	opd_buf_reset(&resp->body);
	opd_buf_append(&resp->body, text, strlen(text));
	free(text);
}

static void refuse_read_only(struct opd_cluster *c, struct opd_admin_response *resp,
			     const char *why)
{
	struct opd_node_status st;

	opd_node_status(c->node, &st);
	opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
	set_json_error(resp, 503, "read_only", "node %llu is read-only: %s",
		       (unsigned long long)c->self_id,
		       why            ? why
		       : st.reason[0] ? st.reason
				      : "no leader");
}

/* ---- deferred answers ---- */

/*
 * A request waiting on a peer (forwarded write, fan-out, membership change).
 * conn is cleared when the client goes away; the answer is then dropped.
 */
struct pending {
	struct opd_list link;
	struct opd_cluster *c;
	void *conn;
	/* fan-out */
	opd_admin_shape shape; /* NULL: answer with the merged agents */
	json_t *shape_arg;
	json_t *local;
	json_t *lists;       /* array of remote agent arrays */
	json_t *unreachable; /* array of member ids */
	int outstanding;
	uint64_t member_id;
	/* forwarded write: the leader's answer, held until this node applied it too */
	uv_timer_t *wait;
	uint64_t wait_index;
	uint64_t wait_deadline;
	struct opd_admin_response held;
	int holding;
	int answered; /* the client already got its answer; only the cleanup is left */
	char idempotency[130];
};

static struct pending *pending_new(struct opd_cluster *c, void *conn)
{
	struct pending *p = opd_xcalloc(1, sizeof(*p));

	p->c = c;
	p->conn = conn;
	opd_list_insert_tail(&c->pendings, &p->link);
	return p;
}

static void on_wait_closed(uv_handle_t *h)
{
	free(h);
}

static void pending_free(struct pending *p)
{
	if (p->wait != NULL)
		uv_close((uv_handle_t *)p->wait, on_wait_closed);
	if (p->holding)
		opd_admin_response_fini(&p->held);
	opd_list_remove(&p->link);
	json_decref(p->local);
	json_decref(p->shape_arg);
	json_decref(p->lists);
	json_decref(p->unreachable);
	free(p);
}

static void answer(struct pending *p, struct opd_admin_response *resp)
{
	struct opd_admin *a = p->c->admin;

	if (!p->answered && p->conn != NULL && a->ops.complete != NULL)
		a->ops.complete(a->ops.data, p->conn, resp);
	p->answered = 1;
}

void opd_cluster_conn_closed(struct opd_cluster *c, void *conn)
{
	struct opd_list *pos;

	opd_list_foreach(pos, &c->pendings)
	{
		struct pending *p = opd_container_of(pos, struct pending, link);
		if (p->conn == conn)
			p->conn = NULL;
	}
}

/* ---- forwarding writes to the leader ---- */

#define READ_YOUR_WRITE_MS 3000

/*
 * A write the leader acknowledged is relayed once this node has applied it
 * too, so that whoever asked here reads their write here, and the agents of
 * this node get it in their next poll. Bounded: after 3 s the answer goes
 * out anyway.
 */
static void on_wait(uv_timer_t *t)
{
	struct pending *p = t->data;

	if (opd_fsm_applied_index(&p->c->configs->fsm) < p->wait_index &&
	    uv_now(p->c->loop) < p->wait_deadline)
		return;
	answer(p, &p->held);
	pending_free(p);
}

/*
 * While a forward is in flight: if this node loses contact with the leader
 * (the read-only rule), answer read-only at once instead of waiting for a
 * leader that may be gone; the outcome at the leader is unknown, so the
 * client is told to retry with the same key.
 */
static void on_forward_watch(uv_timer_t *t)
{
	struct pending *p = t->data;
	struct opd_node_status st;
	struct opd_admin_response resp;

	opd_node_status(p->c->node, &st);
	if (!st.read_only || p->answered)
		return;
	uv_timer_stop(t);
	opd_admin_response_init(&resp);
	opd_buf_appendf(&resp.headers, "Retry-After: 1\r\n");
	set_json_error(&resp, 503, "read_only",
		       "node %llu is read-only: %s; the write was forwarded to the leader before "
		       "and may still take effect: retry with the same Idempotency-Key (%s)",
		       (unsigned long long)p->c->self_id, st.reason, p->idempotency);
	answer(p, &resp);
	opd_admin_response_fini(&resp);
}

static uint64_t applied_index_of(const uint8_t *body, size_t len)
{
	json_t *j = json_loadb((const char *)body, len, 0, NULL);
	json_t *v = json_object_get(j, "applied_index");
	uint64_t index =
	    json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;

	json_decref(j);
	return index;
}

static void forwarded(void *data, int status, const char *content_type, const char *retry_after,
		      const uint8_t *body, size_t len)
{
	struct pending *p = data;
	struct opd_admin_response *resp = &p->held;
	uint64_t index;

	if (p->answered) {
		/* The contact with the leader was lost first and the client was told so. */
		pending_free(p);
		return;
	}
	if (p->wait != NULL) {
		uv_timer_stop(p->wait);
		uv_close((uv_handle_t *)p->wait, on_wait_closed);
		p->wait = NULL;
	}
	opd_admin_response_init(resp);
	p->holding = 1;
	if (status < 0) {
		p->c->forward_failures++;
		/* The write may or may not have reached the leader: say so, as for a lost
		 * leadership. */
		opd_buf_appendf(&resp->headers, "Retry-After: 1\r\n");
		set_json_error(
		    resp, 503, "read_only",
		    "node %llu is read-only: the leader did not answer (%s); if the write "
		    "reached it, it may still take effect: retry with the same "
		    "Idempotency-Key (%s)",
		    (unsigned long long)p->c->self_id, opd_strerror(status), p->idempotency);
	} else {
		resp->status = status;
		resp->content_type =
		    content_type != NULL && strncmp(content_type, "application/json", 16) == 0
			? "application/json"
			: "text/plain";
		if (retry_after != NULL)
			opd_buf_appendf(&resp->headers, "Retry-After: %s\r\n", retry_after);
		opd_buf_append(&resp->body, body, len);
		index = status >= 200 && status < 300 ? applied_index_of(body, len) : 0;
		if (index > opd_fsm_applied_index(&p->c->configs->fsm)) {
			p->wait = opd_xmalloc(sizeof *p->wait);
			uv_timer_init(p->c->loop, p->wait);
			p->wait->data = p;
			p->wait_index = index;
			p->wait_deadline = uv_now(p->c->loop) + READ_YOUR_WRITE_MS;
			uv_timer_start(p->wait, on_wait, 5, 5);
			return;
		}
	}
	answer(p, resp);
	pending_free(p);
}

static int forward(void *data, void *conn, const struct opd_http_request *req,
		   struct opd_admin_response *resp)
{
	struct opd_cluster *c = data;
	struct opd_node_status st;
	char url[OPD_CLUSTER_URL_MAX + 1024], base[OPD_CLUSTER_URL_MAX];
	char auth[128], key[160], from[64], ctype[160];
	const char *headers[6];
	const char *ct = opd_http_header(req, "Content-Type");
	const char *idem = opd_http_header(req, "Idempotency-Key");
	struct pending *p;
	uint8_t rnd[16];
	size_t n = 0;
	int rc;

	opd_node_status(c->node, &st);
	/* No recent contact with a leader: say so now rather than wait on a peer that may be gone.
	 */
	if (st.read_only || st.leader_id == 0 || st.leader_id == c->self_id) {
		refuse_read_only(c, resp, NULL);
		return -1;
	}
	if (opd_cluster_admin_url(c, st.leader_id, base, sizeof(base)) == NULL) {
		refuse_read_only(c, resp, "the leader's admin address is unknown");
		return -1;
	}
	p = pending_new(c, conn);
	if (idem != NULL && strlen(idem) <= 128) {
		snprintf(p->idempotency, sizeof(p->idempotency), "%s", idem);
	} else {
		/* Make the forwarded write idempotent even if the client did not. */
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			abort();
		opd_hex_encode(rnd, sizeof(rnd), p->idempotency);
	}
	snprintf(url, sizeof(url), "%s%s%s%s", base, req->path, req->query[0] ? "?" : "",
		 req->query);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->admin->peer_token);
	snprintf(key, sizeof(key), "Idempotency-Key: %s", p->idempotency);
	snprintf(from, sizeof(from), "X-Opampd-Forwarded: %llu", (unsigned long long)c->self_id);
	headers[n++] = auth;
	headers[n++] = key;
	headers[n++] = from;
	if (ct != NULL && strlen(ct) < 100) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", ct);
		headers[n++] = ctype;
	}
	headers[n] = NULL;
	rc = opd_httpc_request(c->httpc, req->method, url, headers, req->body, req->body_len,
			       c->forward_timeout_ms, MAX_PEER_RESPONSE, forwarded, p);
	if (rc != 0) {
		pending_free(p);
		refuse_read_only(c, resp, "cannot reach the leader");
		return -1;
	}
	c->forwarded++;
	p->wait = opd_xmalloc(sizeof *p->wait);
	uv_timer_init(c->loop, p->wait);
	p->wait->data = p;
	uv_timer_start(p->wait, on_forward_watch, 50, 50);
	log_debug("forwarded %s %s to leader %llu", req->method, req->path,
		  (unsigned long long)st.leader_id);
	return 0;
}

/* ---- merging every node's agents ---- */

static void fanout_finish(struct pending *p)
{
	struct opd_admin_response resp;
	size_t n = json_array_size(p->lists) + 1;
	json_t **lists = opd_xcalloc(n, sizeof(*lists));
	json_t *root = json_object(), *merged;

	lists[0] = json_object_get(p->local, "agents");
	for (size_t i = 1; i < n; i++)
		lists[i] = json_array_get(p->lists, i - 1);
	merged = opd_admin_merge_agents(lists, n);
	free(lists);
	json_object_set_new(root, "agents", merged);
	json_object_set_new(root, "count", json_integer((json_int_t)json_array_size(merged)));
	json_object_set_new(root, "partial", json_boolean(json_array_size(p->unreachable) > 0));
	if (json_array_size(p->unreachable) > 0)
		json_object_set(root, "unreachable", p->unreachable);
	opd_admin_response_init(&resp);
	if (p->shape != NULL) {
		p->shape(p->c->admin, root, p->shape_arg, &resp);
		json_decref(root);
	} else {
		set_json(&resp, 200, root);
	}
	answer(p, &resp);
	opd_admin_response_fini(&resp);
	pending_free(p);
}

struct fanout_req {
	struct pending *p;
	uint64_t id;
};

static void fanout_done(void *data, int status, const char *content_type, const char *retry_after,
			const uint8_t *body, size_t len)
{
	struct fanout_req *r = data;
	struct pending *p = r->p;
	json_t *j = NULL, *agents;

	(void)content_type;
	(void)retry_after;
	if (status == 200)
		j = json_loadb((const char *)body, len, 0, NULL);
	agents = json_object_get(j, "agents");
	if (json_is_array(agents))
		json_array_append(p->lists, agents);
	else
		json_array_append_new(p->unreachable, json_integer((json_int_t)r->id));
	json_decref(j);
	free(r);
	if (--p->outstanding == 0)
		fanout_finish(p);
}

static int fanout_agents(void *data, void *conn, const char *query, json_t *local,
			 opd_admin_shape shape, json_t *shape_arg)
{
	struct opd_cluster *c = data;
	struct opd_node_status st;
	struct pending *p;
	char auth[128], base[OPD_CLUSTER_URL_MAX], url[OPD_CLUSTER_URL_MAX + 1024];
	const char *headers[2] = {auth, NULL};

	opd_node_status(c->node, &st);
	if (st.n_members <= 1 || strlen(query) > 1000) {
		json_decref(local);
		json_decref(shape_arg);
		return -1;
	}
	p = pending_new(c, conn);
	p->local = local;
	p->shape = shape;
	p->shape_arg = shape_arg;
	p->lists = json_array();
	p->unreachable = json_array();
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->admin->peer_token);
	p->outstanding = 1; /* held by us until every request is out */
	for (size_t i = 0; i < st.n_members; i++) {
		uint64_t id = st.members[i].id;
		struct fanout_req *r;

		if (id == c->self_id)
			continue;
		if (opd_cluster_admin_url(c, id, base, sizeof(base)) == NULL) {
			json_array_append_new(p->unreachable, json_integer((json_int_t)id));
			continue;
		}
		snprintf(url, sizeof(url), "%s/internal/v1/agents%s%s", base, query[0] ? "?" : "",
			 query);
		r = opd_xcalloc(1, sizeof(*r));
		r->p = p;
		r->id = id;
		p->outstanding++;
		if (opd_httpc_request(c->httpc, "GET", url, headers, NULL, 0, FANOUT_TIMEOUT_MS,
				      MAX_PEER_RESPONSE, fanout_done, r) != 0) {
			p->outstanding--;
			free(r);
			json_array_append_new(p->unreachable, json_integer((json_int_t)id));
		}
	}
	if (--p->outstanding == 0)
		fanout_finish(p);
	return 0;
}

/* ---- GET /api/v1/cluster and membership ---- */

static json_t *status_json(struct opd_cluster *c)
{
	struct opd_node_status st;
	char url[OPD_CLUSTER_URL_MAX];
	json_t *o = json_object(), *members = json_array(), *leader = json_null();

	opd_node_status(c->node, &st);
	json_object_set_new(o, "node_id", json_integer((json_int_t)st.id));
	json_object_set_new(o, "role", json_string(st.role));
	json_object_set_new(o, "term", json_integer((json_int_t)st.term));
	if (st.leader_id != 0) {
		json_decref(leader);
		leader = json_object();
		json_object_set_new(leader, "id", json_integer((json_int_t)st.leader_id));
		json_object_set_new(leader, "raft_address", json_string(st.leader_address));
		if (opd_cluster_admin_url(c, st.leader_id, url, sizeof(url)))
			json_object_set_new(leader, "admin_url", json_string(url));
	}
	json_object_set_new(o, "leader", leader);
	json_object_set_new(o, "commit_index", json_integer((json_int_t)st.commit_index));
	json_object_set_new(o, "applied_index", json_integer((json_int_t)st.applied_index));
	json_object_set_new(o, "last_index", json_integer((json_int_t)st.last_index));
	json_object_set_new(o, "read_only", json_boolean(st.read_only));
	json_object_set_new(o, "read_only_reason",
			    st.read_only ? json_string(st.reason) : json_null());
	for (size_t i = 0; i < st.n_members; i++) {
		json_t *m = json_object();
		json_object_set_new(m, "id", json_integer((json_int_t)st.members[i].id));
		json_object_set_new(m, "raft_address", json_string(st.members[i].address));
		json_object_set_new(m, "role", json_string(st.members[i].role));
		if (opd_cluster_admin_url(c, st.members[i].id, url, sizeof(url)))
			json_object_set_new(m, "admin_url", json_string(url));
		json_object_set_new(m, "last_contact_ms",
				    st.members[i].last_contact_ms < 0
					? json_null()
					: json_integer((json_int_t)st.members[i].last_contact_ms));
		json_array_append_new(members, m);
	}
	json_object_set_new(o, "members", members);
	json_object_set_new(o, "unverified_versions",
			    json_integer((json_int_t)opd_configs_unverified(c->configs)));
	return o;
}

/*
 * GET /api/v1/cluster/digest: replicas with the same history have the same
 * digest (tests and the chaos checker compare them). It dumps the whole store
 * on the loop, O(store): tens of milliseconds per thousand versions, which is
 * why it is its own call, like etcd's HashKV, and not part of the status that
 * the UI and monitoring poll.
 */
static json_t *digest_json(struct opd_cluster *c)
{
	struct opd_node_status st;
	struct opd_buf dump;
	uint8_t d[32];
	unsigned int dl = 0;
	char hex[65] = "";
	json_t *o = json_object();

	opd_node_status(c->node, &st);
	opd_buf_init(&dump);
	if (opd_store_dump(&c->configs->store, &dump) == 0 &&
	    EVP_Digest(opd_buf_rptr(&dump), opd_buf_avail(&dump), d, &dl, EVP_sha256(), NULL))
		opd_hex_encode(d, sizeof d, hex);
	opd_buf_fini(&dump);
	json_object_set_new(o, "node_id", json_integer((json_int_t)st.id));
	json_object_set_new(o, "applied_index", json_integer((json_int_t)st.applied_index));
	json_object_set_new(o, "store_digest", json_string(hex));
	return o;
}

static void change_done(void *data, int status, const char *message)
{
	struct pending *p = data;
	struct opd_admin_response resp;

	opd_admin_response_init(&resp);
	if (status == 0)
		set_json(&resp, 200, status_json(p->c));
	else
		set_json_error(&resp, status == OPD_ENOTLEADER ? 503 : 409,
			       status == OPD_ENOTLEADER ? "outcome_unknown" : "conflict", "%s",
			       message ? message : opd_strerror(status));
	answer(p, &resp);
	opd_admin_response_fini(&resp);
	pending_free(p);
}

static void member_recorded(void *data, const struct opd_write_result *res)
{
	struct pending *p = data;

	/* raft knows the new node's raft address; the state machine now knows its admin URL. */
	if (res->status != 0) {
		change_done(p, res->status, res->message);
		return;
	}
	change_done(p, 0, NULL);
}

static json_t *body_json(const struct opd_http_request *req, struct opd_admin_response *resp)
{
	json_t *j =
	    json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);

	if (!json_is_object(j)) {
		json_decref(j);
		set_json_error(resp, 400, "invalid_json", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

static int get_id(json_t *j, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(j, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static void add_step(void *data, int status, const char *message)
{
	struct pending *p = data;

	if (status != 0) {
		change_done(p, status, message);
		return;
	}
	/* Raft accepted the spare; record where its admin API is. */
	if (opd_configs_set_member(p->c->configs, p->member_id,
				   json_string_value(json_object_get(p->local, "raft_address")),
				   json_string_value(json_object_get(p->local, "admin_url")),
				   member_recorded, p) != 0)
		change_done(p, OPD_ENOTLEADER, "leadership lost while adding the member");
}

static int cluster_call(void *data, void *conn, const struct opd_http_request *req, const char *sub,
			struct opd_admin_response *resp)
{
	struct opd_cluster *c = data;
	struct pending *p;
	json_t *j = NULL;
	uint64_t id = 0;
	char tail[32];
	int rc;

	if (sub[0] == '\0' || strcmp(sub, "/digest") == 0) { /* the two reads */
		if (strcmp(req->method, "GET") != 0) {
			opd_buf_appendf(&resp->headers, "Allow: GET\r\n");
			set_json_error(resp, 405, "method_not_allowed", "use GET");
			return 0;
		}
		set_json(resp, 200, sub[0] == '\0' ? status_json(c) : digest_json(c));
		return 0;
	}
	p = pending_new(c, conn);
	if (strcmp(sub, "/members") == 0 && strcmp(req->method, "POST") == 0) {
		const char *raft_address, *admin_url;
		if ((j = body_json(req, resp)) == NULL)
			goto refused;
		raft_address = json_string_value(json_object_get(j, "raft_address"));
		admin_url = json_string_value(json_object_get(j, "admin_url"));
		if (get_id(j, "id", &id) != 0 || id == 0 || raft_address == NULL ||
		    admin_url == NULL || strlen(raft_address) >= 128 ||
		    strlen(admin_url) >= OPD_CLUSTER_URL_MAX ||
		    strncmp(admin_url, "http", 4) != 0) {
			set_json_error(resp, 400, "invalid_argument",
				       "need {\"id\": n > 0, \"raft_address\": \"host:port\", "
				       "\"admin_url\": \"http://host:port\"}");
			goto refused;
		}
		p->local = j; /* kept for the SetMember command */
		p->member_id = id;
		j = NULL;
		rc = opd_node_add(c->node, id, raft_address, add_step, p);
	} else if (sscanf(sub, "/members/%llu%31s", (unsigned long long *)&id, tail) == 2 &&
		   strcmp(tail, "/promote") == 0 && strcmp(req->method, "POST") == 0) {
		const char *role = "voter";
		if (req->body_len > 0) {
			if ((j = body_json(req, resp)) == NULL)
				goto refused;
			if (json_object_get(j, "role"))
				role = json_string_value(json_object_get(j, "role"));
		}
		if (role == NULL ||
		    (strcmp(role, "voter") && strcmp(role, "standby") && strcmp(role, "spare"))) {
			set_json_error(resp, 400, "invalid_argument",
				       "role must be voter, standby or spare");
			goto refused;
		}
		rc = opd_node_assign(c->node, id,
				     strcmp(role, "voter") == 0     ? RAFT_VOTER
				     : strcmp(role, "standby") == 0 ? RAFT_STANDBY
								    : RAFT_SPARE,
				     change_done, p);
	} else if (sscanf(sub, "/members/%llu%31s", (unsigned long long *)&id, tail) == 1 &&
		   strcmp(req->method, "DELETE") == 0) {
		rc = opd_node_remove(c->node, id, change_done, p);
	} else if (strcmp(sub, "/transfer") == 0 && strcmp(req->method, "POST") == 0) {
		if (req->body_len > 0) {
			if ((j = body_json(req, resp)) == NULL)
				goto refused;
			if (json_object_get(j, "id") && get_id(j, "id", &id) != 0) {
				set_json_error(resp, 400, "invalid_argument",
					       "id must be a node id");
				goto refused;
			}
		}
		rc = opd_node_transfer(c->node, id, change_done, p);
	} else {
		set_json_error(resp, 404, "not_found", "no such cluster call");
		goto refused;
	}
	json_decref(j);
	if (rc != 0) {
		set_json_error(resp, rc == OPD_ENOTLEADER ? 503 : 409,
			       rc == OPD_ENOTLEADER ? "read_only" : "conflict", "%s",
			       opd_strerror(rc));
		pending_free(p);
		return 0;
	}
	return OPD_EAGAIN;
refused:
	json_decref(j);
	pending_free(p);
	return 0;
}

/* ---- leadership duties ---- */

static void on_watch(uv_timer_t *t)
{
	struct opd_cluster *c = t->data;
	int writable = opd_node_writable(c->node);

	if (writable && !c->was_leader) {
		log_info("this node is now the writable leader term=%llu",
			 (unsigned long long)opd_node_term(c->node));
		opd_configs_ensure_key(c->configs);
	} else if (!writable && c->was_leader) {
		struct opd_node_status st;

		opd_node_status(c->node, &st);
		log_warn("this node is no longer the writable leader term=%llu: %s",
			 (unsigned long long)st.term, st.reason);
	}
	c->was_leader = writable;
}

int opd_cluster_init(struct opd_cluster *c, uv_loop_t *loop, struct opd_node *node,
		     struct opd_configs *configs, struct opd_admin *admin, uint64_t self_id,
		     const struct opd_cluster_member *seeds, size_t n_seeds)
{
	int rc;

	*c = (struct opd_cluster){0};
	c->loop = loop;
	c->node = node;
	c->configs = configs;
	c->admin = admin;
	c->self_id = self_id;
	c->forward_timeout_ms = 5000;
	opd_list_init(&c->pendings);
	for (size_t i = 0; i < n_seeds && i < OPD_NODE_MAX_VOTERS; i++)
		c->seeds[c->n_seeds++] = seeds[i];
	rc = opd_httpc_init(&c->httpc, loop);
	if (rc != 0)
		return rc;
	uv_timer_init(loop, &c->watch);
	c->watch.data = c;
	uv_timer_start(&c->watch, on_watch, WATCH_MS, WATCH_MS);
	admin->ops.forward = forward;
	admin->ops.fanout_agents = fanout_agents;
	admin->ops.cluster = cluster_call;
	admin->ops.data = c; /* complete ignores it */
	return 0;
}

struct close_ctx {
	void (*cb)(void *data);
	void *data;
	int left;
};

static void close_step(void *data)
{
	struct close_ctx *x = data;

	if (--x->left == 0) {
		x->cb(x->data);
		free(x);
	}
}

static void on_watch_closed(uv_handle_t *h)
{
	close_step(h->data);
}

void opd_cluster_close(struct opd_cluster *c, void (*cb)(void *data), void *data)
{
	struct close_ctx *x = opd_xcalloc(1, sizeof(*x));

	x->cb = cb;
	x->data = data;
	x->left = 2;
	uv_timer_stop(&c->watch);
	c->watch.data = x;
	uv_close((uv_handle_t *)&c->watch, on_watch_closed);
	opd_httpc_close(c->httpc, close_step, x);
}
