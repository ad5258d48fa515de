#define LOG_COMPONENT "configs"
/* Configurations changed between two settles before the next change settles at once. */
#define OPD_CONFIGS_STALE_MAX 256
/* More touched names than this: every agent's desired configuration is recomputed. */
#define OPD_CONFIGS_TOUCHED_MAX 32

#include "configs.h"

#include "cmd.h"
#include "config_hash.h"
#include "hex.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "opamp/v1/opamp.pb-c.h"
#include "selector.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* The active version of one configuration, verified, ready to match and send. */
struct opd_active_config {
	char *name;
	struct opd_kvs selector; /* as published with this version (signed) */
	int64_t priority;
	uint64_t version;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	uint8_t *config_pb; /* packed AgentConfigMap */
	size_t config_len;
	char *signature_msg; /* JSON for agents with the signature capability */
	int verified;        /* 0: refused (kept to be counted and reported, never served) */
};

/* A proposal in flight (the leader's view of versions not applied yet). */
enum write_kind { WRITE_PUBLISH, WRITE_ROLLBACK, WRITE_DELETE, WRITE_MEMBER, WRITE_KEY };

struct opd_pending_write {
	struct opd_pending_write *next;
	struct opd_configs *c;
	enum write_kind kind;
	char name[OPD_MAX_CONFIG_NAME + 1];
	uint64_t version;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	uint8_t request_id[OPD_REQUEST_ID_LEN];
	int has_request_id;
	opd_configs_cb cb;
	void *data;
	/* A version this process signed: its signature and the SHA-256 of the bytes it signed. */
	int signed_here;
	uint8_t sig[OPD_SIGN_SIG_LEN];
	uint8_t signed_digest[32];
};

/* ---- the active set ---- */

static void active_fini(struct opd_active_config *ac)
{
	free(ac->name);
	opd_kvs_fini(&ac->selector);
	free(ac->config_pb);
	free(ac->signature_msg);
}

/* Add name unless present; returns the count. */
static size_t names_add(struct opd_names *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return s->n;
	s->v = opd_xrealloc(s->v, (s->n + 1) * sizeof *s->v);
	s->v[s->n++] = opd_xstrdup(name);
	return s->n;
}

static void names_clear(struct opd_names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct opd_names){0};
}

static void active_clear(struct opd_configs *c)
{
	for (size_t i = 0; i < c->n_active; i++)
		active_fini(&c->active[i]);
	free(c->active);
	c->active = NULL;
	c->n_active = 0;
	names_clear(&c->stale);
}

/* Pack files as an AgentConfigMap, the form agents receive. */
static uint8_t *pack_config_map(const struct opd_files *files, size_t *len)
{
	Opamp__Proto__V1__AgentConfigMap map = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *entries, **ptrs;
	Opamp__Proto__V1__AgentConfigFile *bodies;
	uint8_t *out;

	entries = opd_xcalloc(files->n, sizeof *entries);
	ptrs = opd_xcalloc(files->n, sizeof *ptrs);
	bodies = opd_xcalloc(files->n, sizeof *bodies);
	for (size_t i = 0; i < files->n; i++) {
		opamp__proto__v1__agent_config_map__config_map_entry__init(&entries[i]);
		opamp__proto__v1__agent_config_file__init(&bodies[i]);
		bodies[i].body.data = files->v[i].body;
		bodies[i].body.len = files->v[i].len;
		bodies[i].content_type = files->v[i].content_type;
		entries[i].key = files->v[i].name;
		entries[i].value = &bodies[i];
		ptrs[i] = &entries[i];
	}
	map.n_config_map = files->n;
	map.config_map = ptrs;
	*len = opamp__proto__v1__agent_config_map__get_packed_size(&map);
	out = opd_xmalloc(*len);
	opamp__proto__v1__agent_config_map__pack(&map, out);
	free(entries);
	free(ptrs);
	free(bodies);
	return out;
}

static int active_cmp(const void *a, const void *b)
{
	const struct opd_active_config *x = a, *y = b;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void record_of(const struct opd_version_info *v, int64_t priority,
		      struct opd_version_record *rec)
{
	*rec = (struct opd_version_record){
	    .name = v->name,
	    .version = v->version,
	    .config_hash = v->hash,
	    .selector = &v->selector,
	    .priority = priority,
	    .term = v->term,
	    .hlc_wall_ms = v->created_ms,
	    .hlc_logical = v->hlc_logical,
	};
}

static int64_t published_priority(const struct opd_version_info *v,
				  const struct opd_config_info *info)
{
	return v->has_priority ? v->priority : info->priority;
}

/* SHA-256 of a record's signed bytes. Returns 0, or -1 when OpenSSL fails. */
static int record_digest(const struct opd_version_record *rec, uint8_t out[32])
{
	struct opd_buf b;
	unsigned int len = 0;
	int ok;

	opd_buf_init(&b);
	opd_version_record_bytes(rec, &b);
	ok = EVP_Digest(opd_buf_rptr(&b), opd_buf_avail(&b), out, &len, EVP_sha256(), NULL) == 1 &&
	     len == 32;
	opd_buf_fini(&b);
	return ok ? 0 : -1;
}

/*
 * 1 when this process signed exactly this record with its own key a moment
 * ago (a publish still in flight on the leader): the stored signature is the
 * one it made, over the same bytes, under a key id whose stored public key is
 * its own. Ed25519 signatures are deterministic, so verifying would say yes;
 * checking costs a SHA-256 instead of a verification (bench/PROFILE.md §1b).
 */
static int signed_here(struct opd_configs *c, const struct opd_version_info *v,
		       const struct opd_version_record *rec,
		       const uint8_t public_key[OPD_SIGN_PUBLIC_LEN])
{
	const struct opd_pending_write *w;
	uint8_t d[32];

	if (c->signer == NULL || v->signature_len != OPD_SIGN_SIG_LEN ||
	    strcmp(v->key_id, c->signer->key_id) != 0 ||
	    memcmp(public_key, c->signer->public_key, OPD_SIGN_PUBLIC_LEN) != 0)
		return 0;
	for (w = c->pending; w != NULL; w = w->next)
		if (w->signed_here && w->kind == WRITE_PUBLISH && w->version == v->version &&
		    strcmp(w->name, v->name) == 0 &&
		    memcmp(w->sig, v->signature, OPD_SIGN_SIG_LEN) == 0)
			break;
	return w != NULL && record_digest(rec, d) == 0 &&
	       memcmp(d, w->signed_digest, sizeof d) == 0;
}

int opd_configs_verify(struct opd_configs *c, const struct opd_version_info *v,
		       const struct opd_config_info *info)
{
	struct opd_signing_key key;
	struct opd_version_record rec;

	if (v->signature_len == 0 || v->key_id == NULL || v->key_id[0] == '\0')
		return 0;
	/* The signature covers the hash; the hash must still cover the files as stored. */
	if (v->files.n > 0) {
		uint8_t h[OPD_CONFIG_HASH_LEN];
		opd_config_hash(&v->files, h);
		if (memcmp(h, v->hash, sizeof h) != 0)
			return 0;
	}
	if (opd_store_get_signing_key(&c->store, v->key_id, &key) != 0)
		return 0;
	record_of(v, published_priority(v, info), &rec);
	if (signed_here(c, v, &rec, key.public_key))
		return 1;
	return opd_sign_verify(key.public_key, &rec, v->signature, v->signature_len);
}

static char *signature_json(const struct opd_version_info *v, int64_t priority)
{
	json_t *o = json_object(), *sel = json_object();
	char hash[2 * OPD_CONFIG_HASH_LEN + 1];
	unsigned char b64[4 * ((OPD_SIGN_SIG_LEN + 2) / 3) + 1];
	char *text;

	opd_hex_encode(v->hash, OPD_CONFIG_HASH_LEN, hash);
	EVP_EncodeBlock(b64, v->signature, (int)v->signature_len);
	for (size_t i = 0; i < v->selector.n; i++)
		json_object_set_new(sel, v->selector.v[i].key, json_string(v->selector.v[i].value));
	json_object_set_new(o, "name", json_string(v->name));
	json_object_set_new(o, "version", json_integer((json_int_t)v->version));
	json_object_set_new(o, "config_hash", json_string(hash));
	json_object_set_new(o, "selector", sel);
	json_object_set_new(o, "priority", json_integer(priority));
	json_object_set_new(o, "term", json_integer((json_int_t)v->term));
	json_object_set_new(o, "hlc_wall_ms", json_integer((json_int_t)v->created_ms));
	json_object_set_new(o, "hlc_logical", json_integer(v->hlc_logical));
	json_object_set_new(o, "key_id", json_string(v->key_id));
	json_object_set_new(o, "algorithm", json_string("Ed25519"));
	json_object_set_new(o, "signature", json_string((const char *)b64));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return text;
}

struct load_ctx {
	struct opd_configs *c;
	int rc;
};

static int load_one(void *data, const struct opd_config_info *info)
{
	struct load_ctx *lc = data;
	struct opd_configs *c = lc->c;
	struct opd_version_info v = {0};
	struct opd_active_config *ac;

	lc->rc = opd_store_get_version(&c->store, info->name, info->active_version, &v);
	if (lc->rc != 0)
		return 1;
	c->active = opd_xrealloc(c->active, (c->n_active + 1) * sizeof *c->active);
	ac = &c->active[c->n_active++];
	*ac = (struct opd_active_config){0};
	ac->name = opd_xstrdup(info->name);
	ac->priority = published_priority(&v, info);
	ac->version = v.version;
	/* Never offer a version whose origin we cannot prove (a tampered row, an unknown key). */
	ac->verified = opd_configs_verify(c, &v, info);
	if (!ac->verified) {
		log_error("refusing to serve config=%s version=%llu: its signature does not verify "
			  "(key_id=\"%s\")",
			  info->name, (unsigned long long)v.version, v.key_id ? v.key_id : "");
	} else {
		opd_kvs_copy(&ac->selector, &v.selector);
		memcpy(ac->hash, v.hash, sizeof ac->hash);
		ac->config_pb = pack_config_map(&v.files, &ac->config_len);
		ac->signature_msg = signature_json(&v, ac->priority);
	}
	opd_version_info_fini(&v);
	return 0;
}

/* Sort for matching, and count what is refused (the unverified_versions gauge). */
static void active_settle(struct opd_configs *c)
{
	if (c->n_active > 1)
		qsort(c->active, c->n_active, sizeof *c->active, active_cmp);
	c->unverified = 0;
	for (size_t i = 0; i < c->n_active; i++)
		c->unverified += !c->active[i].verified;
}

void opd_configs_reload(struct opd_configs *c)
{
	struct load_ctx lc = {c, 0};
	int rc;

	active_clear(c);
	rc = opd_store_foreach_config(&c->store, load_one, &lc);
	if (rc == 0)
		rc = lc.rc;
	if (rc != 0)
		log_error("load configurations: %s", opd_store_errmsg(&c->store));
	active_settle(c);
}

/*
 * One configuration changed: re-read and re-verify it alone. Reloading (and
 * re-verifying the signature of) every configuration on every write made
 * writes cost O(configurations) each (bench/PROFILE.md). The caller settles.
 */
static void reload_one(struct opd_configs *c, const char *name)
{
	struct opd_config_info info = {0};
	struct load_ctx lc = {c, 0};

	for (size_t i = 0; i < c->n_active; i++) {
		if (strcmp(c->active[i].name, name) == 0) {
			active_fini(&c->active[i]);
			memmove(&c->active[i], &c->active[i + 1],
				(c->n_active - i - 1) * sizeof *c->active);
			c->n_active--;
			break;
		}
	}
	if (opd_store_get_config(&c->store, name, &info) == 0)
		load_one(&lc, &info);
	if (lc.rc != 0)
		log_error("load configuration %s: %s", name, opd_store_errmsg(&c->store));
	opd_config_info_fini(&info);
}

void opd_configs_settle(struct opd_configs *c)
{
	if (c->stale.n == 0)
		return;
	for (size_t i = 0; i < c->stale.n; i++)
		reload_one(c, c->stale.v[i]);
	names_clear(&c->stale);
	active_settle(c);
}

size_t opd_configs_served(struct opd_configs *c)
{
	opd_configs_settle(c);
	return c->n_active;
}

uint64_t opd_configs_unverified(struct opd_configs *c)
{
	opd_configs_settle(c);
	return c->unverified;
}

/*
 * Note that name changed. Reading, verifying (~120 us of Ed25519 on a
 * follower) and packing it wait for the next settle: on a node with agents
 * that is at once (the push asks for their desired configuration), on one
 * without, a configuration written many times in between is loaded once.
 */
static void mark_stale(struct opd_configs *c, const char *name)
{
	if (names_add(&c->stale, name) >= OPD_CONFIGS_STALE_MAX)
		opd_configs_settle(c); /* keeps the duplicate check short */
}

/* name (NULL: anything) changed: the agents' desired configurations may have. */
static void mark_touched(struct opd_configs *c, const char *name)
{
	c->touched_resolved = 0;
	if (c->touched_all)
		return;
	if (name == NULL || names_add(&c->touched, name) > OPD_CONFIGS_TOUCHED_MAX) {
		names_clear(&c->touched);
		c->touched_all = 1;
	}
}

/* The state machine applied a change (on every node), or restored a snapshot (res NULL): serve it.
 */
static void on_applied(void *data, const struct opd_apply_result *res)
{
	struct opd_configs *c = data;

	if (res != NULL && res->name[0] != '\0' &&
	    (res->op == OPAMPD__V1__COMMAND__OP_PUT_VERSION ||
	     res->op == OPAMPD__V1__COMMAND__OP_SET_ACTIVE ||
	     res->op == OPAMPD__V1__COMMAND__OP_DELETE_CONFIG ||
	     res->op == OPAMPD__V1__COMMAND__OP_SET_SELECTOR)) {
		mark_stale(c, res->name);
		mark_touched(c, res->name);
	} else {
		opd_configs_reload(c); /* keys, members, a snapshot: anything may verify differently */
		mark_touched(c, NULL);
	}
	if (c->changed != NULL)
		c->changed(c->changed_data);
}

int opd_configs_open(struct opd_configs *c, const char *path, const struct opd_clock *clock)
{
	*c = (struct opd_configs){0};
	c->clock = clock;
	if (opd_store_open(&c->store, path) != 0) {
		opd_errmsg_printf(c->errmsg, "%s", opd_store_errmsg(&c->store));
		opd_store_close(&c->store);
		return OPD_ESTORE;
	}
	if (opd_fsm_init(&c->fsm, &c->store) != 0) {
		opd_errmsg_printf(c->errmsg, "%s", c->fsm.errmsg);
		opd_store_close(&c->store);
		return OPD_ESTORE;
	}
	c->fsm.changed = on_applied;
	c->fsm.changed_data = c;
	c->hlc = c->fsm.hlc;
	opd_configs_reload(c);
	return 0;
}

void opd_configs_close(struct opd_configs *c)
{
	struct opd_pending_write *w = c->pending, *next;

	/* The node is closed first; anything left never reached raft's callbacks. */
	for (; w != NULL; w = next) {
		next = w->next;
		free(w);
	}
	c->pending = NULL;
	active_clear(c);
	opd_configs_touched_clear(c);
	free(c->touched_at);
	c->touched_at = NULL;
	opd_fsm_fini(&c->fsm);
	opd_store_close(&c->store);
}

/* ---- writes ---- */

void opd_configs_ensure_key(struct opd_configs *c);

static void result_init(struct opd_write_result *r, int status)
{
	*r = (struct opd_write_result){.status = status};
}

static int writable(struct opd_configs *c)
{
	return c->node == NULL || opd_node_writable(c->node);
}

static void pending_unlink(struct opd_configs *c, struct opd_pending_write *w)
{
	for (struct opd_pending_write **pp = &c->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

static uint64_t pending_max_version(const struct opd_configs *c, const char *name)
{
	uint64_t max = 0;

	for (const struct opd_pending_write *w = c->pending; w != NULL; w = w->next)
		if (w->kind == WRITE_PUBLISH && strcmp(w->name, name) == 0 && w->version > max)
			max = w->version;
	return max;
}

static int has_pending(const struct opd_configs *c, const char *name)
{
	for (const struct opd_pending_write *w = c->pending; w != NULL; w = w->next)
		if (strcmp(w->name, name) == 0)
			return 1;
	return 0;
}

/* Fill res from the state machine's result for this write. */
static void finish(struct opd_pending_write *w, int status, const struct opd_apply_result *ar)
{
	struct opd_configs *c = w->c;
	struct opd_write_result res;
	struct opd_config_info info = {0};
	struct opd_version_info v = {0};

	result_init(&res, status);
	if (status == 0 && ar != NULL) {
		snprintf(res.message, sizeof res.message, "%s", ar->message);
		res.status = opd_apply_status_code(ar->status);
		/* A retry gets the first attempt's answer. */
		res.duplicate = ar->status == OPD_APPLY_DUPLICATE;
		res.version = ar->version;
		res.index = ar->index;
		res.created = ar->created || (res.duplicate && ar->version > 0);
	}
	if (res.status == 0) {
		if (w->kind == WRITE_PUBLISH) {
			if (res.duplicate &&
			    opd_store_get_version(&c->store, w->name, res.version, &v) == 0)
				memcpy(res.hash, v.hash, OPD_CONFIG_HASH_LEN);
			else
				memcpy(res.hash, w->hash, OPD_CONFIG_HASH_LEN);
		} else if (w->kind == WRITE_ROLLBACK &&
			   opd_store_get_config(&c->store, w->name, &info) == 0) {
			res.version = info.active_version;
			memcpy(res.hash, info.active_hash, OPD_CONFIG_HASH_LEN);
		}
	}
	opd_version_info_fini(&v);
	opd_config_info_fini(&info);
	pending_unlink(c, w);
	if (w->cb != NULL)
		w->cb(w->data, &res);
	free(w);
}

static void proposed(void *data, int status, const struct opd_apply_result *res)
{
	struct opd_pending_write *w = data;
	struct opd_request_record rec;
	struct opd_apply_result from_store = {0};

	/*
	 * Applied, but so long ago that the state machine's result ring moved
	 * on (a burst of other writes): the requests table has the outcome.
	 */
	if (status == 0 && res == NULL && w->has_request_id &&
	    opd_store_get_request(&w->c->store, w->request_id, OPD_REQUEST_ID_LEN, &rec) == 0) {
		from_store.status = (enum opd_apply_status)rec.status;
		from_store.version = rec.version;
		from_store.created = rec.status == OPD_APPLY_OK && rec.version > 0;
		res = &from_store;
	}
	finish(w, status, res);
}

int opd_configs_submit(struct opd_configs *c, opd_cmd *cmd, opd_node_propose_cb cb, void *data)
{
	struct opd_buf payload;
	int rc;

	opd_buf_init(&payload);
	rc = opd_cmd_encode(cmd, &payload);
	if (rc == 0 && c->node != NULL) {
		rc = opd_node_propose(c->node, opd_buf_rptr(&payload), opd_buf_avail(&payload), cb,
				      data);
	} else if (rc == 0) {
		struct raft_buffer buf = {(void *)opd_buf_rptr(&payload), opd_buf_avail(&payload)};
		void *result = NULL;
		uint64_t index = opd_fsm_applied_index(&c->fsm) + 1;

		if (c->fsm.raft.apply(&c->fsm.raft, &buf, &result) != 0)
			fatal("direct apply failed: %s", c->fsm.errmsg);
		cb(data, 0, opd_fsm_result(&c->fsm, index));
	}
	opd_buf_fini(&payload);
	return rc;
}

/* Submit with w in the pending list until its callback (or a refusal) takes it out. */
static int submit(struct opd_configs *c, opd_cmd *cmd, struct opd_pending_write *w)
{
	int rc;

	w->next = c->pending;
	c->pending = w;
	rc = opd_configs_submit(c, cmd, proposed, w);
	if (rc != 0) {
		pending_unlink(c, w);
		free(w);
	}
	return rc;
}

static void stamp(struct opd_configs *c, opd_cmd *cmd, const uint8_t *request_id, const char *actor,
		  struct opd_pending_write *w)
{
	struct opd_hlc now;

	/* Monotonic across leaders: what was applied (by anyone) comes before what we stamp. */
	opd_hlc_observe(&c->hlc, c->fsm.hlc);
	now = opd_hlc_now(&c->hlc, opd_clock_wall(c->clock));
	cmd->request_id.data = (uint8_t *)request_id;
	cmd->request_id.len = request_id ? OPD_REQUEST_ID_LEN : 0;
	if (w != NULL && request_id != NULL) {
		memcpy(w->request_id, request_id, OPD_REQUEST_ID_LEN);
		w->has_request_id = 1;
	}
	cmd->hlc_wall_ms = now.wall_ms;
	cmd->hlc_logical = now.logical;
	cmd->actor = (char *)(actor ? actor : "");
	cmd->term = c->node ? opd_node_term(c->node) : 1;
}

static struct opd_pending_write *pending_new(struct opd_configs *c, enum write_kind kind,
					     const char *name, opd_configs_cb cb, void *data)
{
	struct opd_pending_write *w = opd_xcalloc(1, sizeof *w);

	w->c = c;
	w->kind = kind;
	snprintf(w->name, sizeof w->name, "%s", name ? name : "");
	w->cb = cb;
	w->data = data;
	return w;
}

/* A request id applied before: answer with its first result, propose nothing. */
static int answer_duplicate(struct opd_configs *c, enum write_kind kind, const char *name,
			    const uint8_t *request_id, opd_configs_cb cb, void *data)
{
	struct opd_request_record rec;
	struct opd_apply_result ar = {0};
	struct opd_pending_write *w;

	if (request_id == NULL ||
	    opd_store_get_request(&c->store, request_id, OPD_REQUEST_ID_LEN, &rec) != 0)
		return 0;
	w = pending_new(c, kind, name, cb, data);
	ar.status = OPD_APPLY_DUPLICATE;
	ar.version = rec.version;
	if (rec.status != OPD_APPLY_OK && rec.status != OPD_APPLY_DUPLICATE)
		ar.status = (enum opd_apply_status)rec.status;
	finish(w, 0, &ar);
	return 1;
}

static Opampd__V1__Pair **pairs_of(const struct opd_kvs *kvs, Opampd__V1__Pair *store)
{
	Opampd__V1__Pair **ptrs = opd_xcalloc(kvs->n ? kvs->n : 1, sizeof *ptrs);

	for (size_t i = 0; i < kvs->n; i++) {
		opampd__v1__pair__init(&store[i]);
		store[i].key = kvs->v[i].key;
		store[i].value = kvs->v[i].value;
		ptrs[i] = &store[i];
	}
	return ptrs;
}

int opd_configs_publish(struct opd_configs *c, const struct opd_publish *p,
			const uint8_t request_id[OPD_REQUEST_ID_LEN], opd_configs_cb cb, void *data)
{
	struct opd_write_result res;
	struct opd_config_info info = {0};
	struct opd_kvs selector;
	struct opd_files files;
	struct opd_pending_write *w;
	int rc, have;

	result_init(&res, OPD_EINVAL);
	if (!opd_validate_name(p->name)) {
		opd_errmsg_printf(res.verr.message,
				  "invalid configuration name: use 1 to %d of [A-Za-z0-9._-], "
				  "not starting with '.'",
				  OPD_MAX_CONFIG_NAME);
		cb(data, &res);
		return 0;
	}
	if (opd_validate_selector(p->selector, &res.verr) != 0 ||
	    opd_validate_files(p->files, &res.verr) != 0) {
		cb(data, &res);
		return 0;
	}
	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, WRITE_PUBLISH, p->name, request_id, cb, data))
		return 0;
	/*
	 * The key that signs this version must be in the replicated state before
	 * the version is applied, or no node could verify it: log order does it.
	 */
	opd_configs_ensure_key(c);

	/* Canonical order for hashing, signing and storage; the caller's arrays stay untouched. */
	opd_kvs_copy(&selector, p->selector);
	opd_kvs_sort(&selector);
	opd_files_init(&files);
	for (size_t i = 0; i < p->files->n; i++) {
		const struct opd_file *f = &p->files->v[i];
		opd_files_add(&files, f->name, f->content_type, f->body, f->len);
	}
	opd_files_sort(&files);

	w = pending_new(c, WRITE_PUBLISH, p->name, cb, data);
	opd_config_hash(&files, w->hash);
	have = opd_store_get_config(&c->store, p->name, &info) == 0;
	if (have && !has_pending(c, p->name) &&
	    memcmp(info.active_hash, w->hash, OPD_CONFIG_HASH_LEN) == 0 &&
	    info.priority == p->priority && opd_kvs_equal(&info.selector, &selector)) {
		/* Nothing would change: answer with the active version, write nothing. */
		struct opd_apply_result ar = {.status = OPD_APPLY_OK,
					      .version = info.active_version};
		opd_config_info_fini(&info);
		opd_kvs_fini(&selector);
		opd_files_fini(&files);
		finish(w, 0, &ar);
		return 0;
	}
	{
		uint64_t latest = have ? info.latest_version : 0,
			 inflight = pending_max_version(c, p->name);
		w->version = (inflight > latest ? inflight : latest) + 1;
	}
	opd_config_info_fini(&info);
	if (!have) {
		/* A deleted name keeps its numbering: the store knows its latest version. */
		uint64_t latest = opd_store_latest_version(&c->store, p->name);
		uint64_t inflight = pending_max_version(c, p->name);
		w->version = (inflight > latest ? inflight : latest) + 1;
	}

	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__PutVersion put = OPAMPD__V1__PUT_VERSION__INIT;
	Opampd__V1__Pair *pair_store = opd_xcalloc(selector.n ? selector.n : 1, sizeof *pair_store);
	Opampd__V1__File *file_store = opd_xcalloc(files.n ? files.n : 1, sizeof *file_store);
	Opampd__V1__File **file_ptrs = opd_xcalloc(files.n ? files.n : 1, sizeof *file_ptrs);
	uint8_t sig[OPD_SIGN_SIG_LEN];

	stamp(c, &cmd, request_id, p->actor, w);
	put.name = (char *)p->name;
	put.n_selector = selector.n;
	put.selector = pairs_of(&selector, pair_store);
	put.priority = p->priority;
	for (size_t i = 0; i < files.n; i++) {
		opampd__v1__file__init(&file_store[i]);
		file_store[i].name = files.v[i].name;
		file_store[i].content_type = files.v[i].content_type;
		file_store[i].body.data = files.v[i].body;
		file_store[i].body.len = files.v[i].len;
		file_ptrs[i] = &file_store[i];
	}
	put.n_files = files.n;
	put.files = file_ptrs;
	put.config_hash.data = w->hash;
	put.config_hash.len = OPD_CONFIG_HASH_LEN;
	put.message = (char *)(p->message ? p->message : "");
	put.version = w->version;
	put.history_limit = c->history_limit;
	if (c->signer != NULL) {
		struct opd_version_record rec = {
		    .name = p->name,
		    .version = w->version,
		    .config_hash = w->hash,
		    .selector = &selector,
		    .priority = p->priority,
		    .term = cmd.term,
		    .hlc_wall_ms = cmd.hlc_wall_ms,
		    .hlc_logical = cmd.hlc_logical,
		};
		if (opd_signer_sign(c->signer, &rec, sig) != 0)
			fatal("signing failed: %s", c->signer->errmsg);
		/* Remembered so that applying it here need not verify it again (signed_here). */
		if (record_digest(&rec, w->signed_digest) == 0) {
			memcpy(w->sig, sig, sizeof sig);
			w->signed_here = 1;
		}
		put.signature.data = sig;
		put.signature.len = sizeof sig;
		put.key_id = (char *)c->signer->key_id;
	}
	cmd.op_case = OPAMPD__V1__COMMAND__OP_PUT_VERSION;
	cmd.put_version = &put;
	rc = submit(c, &cmd, w);
	free(put.selector);
	free(pair_store);
	free(file_store);
	free(file_ptrs);
	opd_kvs_fini(&selector);
	opd_files_fini(&files);
	return rc == OPD_EAGAIN ? OPD_ENOTLEADER : rc;
}

int opd_configs_rollback(struct opd_configs *c, const char *name, uint64_t version,
			 const char *actor, const uint8_t request_id[OPD_REQUEST_ID_LEN],
			 opd_configs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__SetActive op = OPAMPD__V1__SET_ACTIVE__INIT;
	struct opd_pending_write *w;
	int rc;

	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, WRITE_ROLLBACK, name, request_id, cb, data))
		return 0;
	w = pending_new(c, WRITE_ROLLBACK, name, cb, data);
	stamp(c, &cmd, request_id, actor, w);
	op.name = (char *)name;
	op.version = version;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_SET_ACTIVE;
	cmd.set_active = &op;
	rc = submit(c, &cmd, w);
	return rc == OPD_EAGAIN ? OPD_ENOTLEADER : rc;
}

int opd_configs_delete(struct opd_configs *c, const char *name, const char *actor,
		       const uint8_t request_id[OPD_REQUEST_ID_LEN], opd_configs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__DeleteConfig op = OPAMPD__V1__DELETE_CONFIG__INIT;
	struct opd_pending_write *w;
	int rc;

	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, WRITE_DELETE, name, request_id, cb, data))
		return 0;
	w = pending_new(c, WRITE_DELETE, name, cb, data);
	stamp(c, &cmd, request_id, actor, w);
	op.name = (char *)name;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_DELETE_CONFIG;
	cmd.delete_config = &op;
	rc = submit(c, &cmd, w);
	return rc == OPD_EAGAIN ? OPD_ENOTLEADER : rc;
}

int opd_configs_set_member(struct opd_configs *c, uint64_t id, const char *raft_address,
			   const char *admin_url, opd_configs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__SetMember op = OPAMPD__V1__SET_MEMBER__INIT;
	int rc;

	if (!writable(c))
		return OPD_ENOTLEADER;
	stamp(c, &cmd, NULL, "admin", NULL);
	op.id = id;
	op.raft_address = (char *)(raft_address ? raft_address : "");
	op.admin_url = (char *)(admin_url ? admin_url : "");
	cmd.op_case = OPAMPD__V1__COMMAND__OP_SET_MEMBER;
	cmd.set_member = &op;
	rc = submit(c, &cmd, pending_new(c, WRITE_MEMBER, "", cb, data));
	return rc == OPD_EAGAIN ? OPD_ENOTLEADER : rc;
}

static void key_added(void *data, const struct opd_write_result *res)
{
	struct opd_configs *c = data;

	if (res->status != 0)
		log_warn("registering signing key key_id=%s failed: %s", c->signer->key_id,
			 res->message[0] ? res->message : opd_strerror(res->status));
	else
		log_info("signing key registered key_id=%s", c->signer->key_id);
}

void opd_configs_ensure_key(struct opd_configs *c)
{
	struct opd_signing_key active;
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__AddSigningKey op = OPAMPD__V1__ADD_SIGNING_KEY__INIT;

	if (c->signer == NULL || !writable(c))
		return;
	if (opd_store_active_signing_key(&c->store, &active) == 0 &&
	    strcmp(active.key_id, c->signer->key_id) == 0)
		return;
	for (const struct opd_pending_write *w = c->pending; w != NULL; w = w->next)
		if (w->kind == WRITE_KEY)
			return;
	stamp(c, &cmd, NULL, "opampd", NULL);
	op.key_id = (char *)c->signer->key_id;
	op.public_key.data = (uint8_t *)c->signer->public_key;
	op.public_key.len = OPD_SIGN_PUBLIC_LEN;
	op.activate = 1;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_ADD_SIGNING_KEY;
	cmd.add_signing_key = &op;
	if (submit(c, &cmd, pending_new(c, WRITE_KEY, "", key_added, c)) != 0)
		log_warn("could not propose the signing key (not writable)");
}

/* Where each touched name is in the (settled) active set. */
static void touched_resolve(struct opd_configs *c)
{
	opd_configs_settle(c);
	if (c->touched_resolved)
		return;
	c->touched_at = opd_xrealloc(c->touched_at, (c->touched.n + 1) * sizeof *c->touched_at);
	for (size_t t = 0; t < c->touched.n; t++) {
		c->touched_at[t] = -1;
		for (size_t i = 0; i < c->n_active; i++)
			if (strcmp(c->active[i].name, c->touched.v[t]) == 0) {
				c->touched_at[t] = (ptrdiff_t)i;
				break;
			}
	}
	c->touched_resolved = 1;
}

int opd_configs_affects(void *configs, const struct opd_agent *a)
{
	struct opd_configs *c = configs;

	if (c->touched_all)
		return 1;
	touched_resolve(c);
	for (size_t t = 0; t < c->touched.n; t++) {
		const struct opd_active_config *x;

		if (a->desired_name != NULL && strcmp(a->desired_name, c->touched.v[t]) == 0)
			return 1; /* a new version, selector or priority, or gone */
		if (c->touched_at[t] < 0)
			continue; /* gone, and not what a wanted */
		x = &c->active[c->touched_at[t]];
		if (!x->verified || !opd_selector_match(&x->selector, a))
			continue;
		/* It matches a now: does it rank above what a wants (active_cmp's order)? */
		if (a->desired_name == NULL || x->priority > a->desired_priority ||
		    (x->priority == a->desired_priority && strcmp(x->name, a->desired_name) < 0))
			return 1;
	}
	return 0;
}

void opd_configs_touched_clear(struct opd_configs *c)
{
	names_clear(&c->touched);
	c->touched_all = 0;
	c->touched_resolved = 0;
}

int opd_configs_desired(void *configs, const struct opd_agent *a, struct opd_desired *out)
{
	struct opd_configs *c = configs;

	opd_configs_settle(c);
	/* Sorted by priority then name: the first match is the desired configuration. */
	for (size_t i = 0; i < c->n_active; i++) {
		const struct opd_active_config *ac = &c->active[i];
		if (!ac->verified || !opd_selector_match(&ac->selector, a))
			continue;
		*out = (struct opd_desired){
		    .name = ac->name,
		    .version = ac->version,
		    .priority = ac->priority,
		    .hash = ac->hash,
		    .hash_len = sizeof ac->hash,
		    .config_pb = ac->config_pb,
		    .config_len = ac->config_len,
		    .signature_capability = OPD_SIGNATURE_CAPABILITY,
		    .signature_type = OPD_SIGNATURE_MESSAGE_TYPE,
		    .signature_msg = (const uint8_t *)ac->signature_msg,
		    .signature_len = ac->signature_msg ? strlen(ac->signature_msg) : 0,
		};
		return 0;
	}
	return OPD_ENOTFOUND;
}
