#define LOG_COMPONENT "certs"

#include "certs.h"

#include "cmd.h"
#include "hex.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "validate.h"

#include <dirent.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROTATION_CA_PREFIX "ca-"
#define FP_PREFIX_LEN 16 /* fingerprint hex digits in a rotation CA's file name */

/* A proposal in flight (the leader's view of serials not applied yet). */
enum cert_kind {
	CERT_ISSUE,
	CERT_REVOKE,
	CERT_CA_ADD,
	CERT_CA_ENSURE,
	CERT_CA_ACTIVATE,
	CERT_CA_RETIRE,
	CERT_ROTATION,
};

struct opd_cert_pending {
	struct opd_cert_pending *next;
	struct opd_certs *c;
	enum cert_kind kind;
	uint64_t serial;
	char fingerprint[OPD_CA_FP_LEN + 1];
	char name[OPD_STORE_ROTATION_ID_MAX + 1];
	uint64_t not_before, not_after;
	char *cert_pem;
	char *key_pem; /* server-generated flow: the agent's key until the callback; cleansed */
	char key_file[4200];
	uint8_t request_id[OPD_REQUEST_ID_LEN];
	int has_request_id;
	opd_certs_cb cb;
	void *data;
};

static struct opd_store *store_of(struct opd_certs *c)
{
	return &c->configs->store;
}

static uint64_t now_s(const struct opd_certs *c)
{
	return opd_clock_wall(c->clock) / 1000;
}

/* ---- CA keys on this node ---- */

static struct opd_ca *find_key(struct opd_certs *c, const char *fp)
{
	for (size_t i = 0; i < c->n_keys; i++)
		if (strcmp(c->keys[i].fingerprint, fp) == 0)
			return &c->keys[i];
	return NULL;
}

/* Keep ca (transferred) unless its key is already here. */
static void keep_key(struct opd_certs *c, struct opd_ca *ca)
{
	if (find_key(c, ca->fingerprint) != NULL || c->n_keys == OPD_CERTS_MAX_KEYS) {
		opd_ca_fini(ca);
		return;
	}
	c->keys[c->n_keys++] = *ca;
	*ca = (struct opd_ca){0};
}

static void rotation_paths(const struct opd_certs *c, const char *fp, char *cert, char *key,
			   size_t cap)
{
	snprintf(cert, cap, "%s/" ROTATION_CA_PREFIX "%.*s.pem", c->dir, FP_PREFIX_LEN, fp);
	snprintf(key, cap, "%s/" ROTATION_CA_PREFIX "%.*s.key", c->dir, FP_PREFIX_LEN, fp);
}

/* The rotation CAs in the data directory: ca-<16 hex>.pem with its .key. */
static void scan_dir(struct opd_certs *c, int verbose)
{
	DIR *d = opendir(c->dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL && c->n_keys < OPD_CERTS_MAX_KEYS) {
		const size_t plen = strlen(ROTATION_CA_PREFIX);
		char cert[4200], key[4200], hex[FP_PREFIX_LEN + 1];
		uint8_t raw[FP_PREFIX_LEN / 2];
		struct opd_ca ca;

		if (strlen(e->d_name) != plen + FP_PREFIX_LEN + 4 ||
		    strncmp(e->d_name, ROTATION_CA_PREFIX, plen) != 0 ||
		    strcmp(e->d_name + plen + FP_PREFIX_LEN, ".pem") != 0)
			continue;
		memcpy(hex, e->d_name + plen, FP_PREFIX_LEN);
		hex[FP_PREFIX_LEN] = '\0';
		if (opd_hex_decode(hex, raw, sizeof raw) != 0)
			continue;
		snprintf(cert, sizeof cert, "%s/" ROTATION_CA_PREFIX "%s.pem", c->dir, hex);
		snprintf(key, sizeof key, "%s/" ROTATION_CA_PREFIX "%s.key", c->dir, hex);
		if (opd_ca_load(&ca, cert, key) != 0) {
			if (verbose)
				log_warn("skipping CA files %s: %s", cert, ca.errmsg);
			continue;
		}
		keep_key(c, &ca);
	}
	closedir(d);
}

struct opd_ca *opd_certs_key(struct opd_certs *c, const char *fingerprint)
{
	struct opd_ca *ca;

	if (fingerprint == NULL)
		return NULL;
	if ((ca = find_key(c, fingerprint)) != NULL)
		return ca;
	/* An operator may have copied a rotated CA's files here since the start. */
	scan_dir(c, 0);
	return find_key(c, fingerprint);
}

static void ca_name(uint64_t now, char *out, size_t cap)
{
	time_t t = (time_t)now;
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, cap, "opampd fleet CA %04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void on_applied(void *data, const struct opd_apply_result *res)
{
	struct opd_certs *c = data;

	if (c->changed != NULL)
		c->changed(c->changed_data, res);
}

int opd_certs_init(struct opd_certs *c, struct opd_configs *configs, const struct opd_clock *clock,
		   const struct opd_certs_options *o)
{
	char cert[4200], key[4200], cn[64];
	struct opd_ca ca;
	int rc;

	*c = (struct opd_certs){0};
	c->configs = configs;
	c->clock = clock;
	c->lifetime_s = o->lifetime_s ? o->lifetime_s : OPD_CERTS_LIFETIME_S;
	snprintf(c->dir, sizeof c->dir, "%s", o->dir ? o->dir : ".");
	if ((o->ca_cert == NULL) != (o->ca_key == NULL)) {
		opd_errmsg_printf(c->errmsg, "--ca-cert and --ca-key go together");
		return OPD_EINVAL;
	}
	if (o->ca_cert != NULL) {
		rc = opd_ca_load(&ca, o->ca_cert, o->ca_key);
	} else {
		snprintf(cert, sizeof cert, "%s/ca.pem", c->dir);
		snprintf(key, sizeof key, "%s/ca.key", c->dir);
		ca_name(now_s(c), cn, sizeof cn);
		rc = opd_ca_load_or_create(&ca, cert, key, o->create, cn, now_s(c));
		/* A cluster without CA files runs without a CA key here; certificates then
		 * need every voter to be given the same --ca-cert and --ca-key. */
		if (rc == OPD_EIO && !o->create && access(cert, F_OK) != 0 &&
		    access(key, F_OK) != 0)
			rc = 1;
	}
	if (rc < 0) {
		opd_errmsg_printf(c->errmsg, "fleet CA: %s", ca.errmsg);
		return rc;
	}
	if (rc == 0)
		keep_key(c, &ca);
	scan_dir(c, 1);
	configs->fsm.certs_changed = on_applied;
	configs->fsm.certs_changed_data = c;
	return 0;
}

static void pending_free(struct opd_cert_pending *w)
{
	free(w->cert_pem);
	if (w->key_pem != NULL) {
		OPENSSL_cleanse(w->key_pem, strlen(w->key_pem));
		free(w->key_pem);
	}
	free(w);
}

void opd_certs_fini(struct opd_certs *c)
{
	struct opd_cert_pending *w = c->pending, *next;

	/* The node is closed first; anything left never reached raft's callbacks. */
	for (; w != NULL; w = next) {
		next = w->next;
		pending_free(w);
	}
	c->pending = NULL;
	for (size_t i = 0; i < c->n_keys; i++)
		opd_ca_fini(&c->keys[i]);
	c->n_keys = 0;
	if (c->configs != NULL && c->configs->fsm.certs_changed_data == c) {
		c->configs->fsm.certs_changed = NULL;
		c->configs->fsm.certs_changed_data = NULL;
	}
}

/* ---- proposals (the pattern of configs.c) ---- */

static int writable(struct opd_certs *c)
{
	return c->configs->node == NULL || opd_node_writable(c->configs->node);
}

static void pending_unlink(struct opd_certs *c, struct opd_cert_pending *w)
{
	for (struct opd_cert_pending **pp = &c->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

static struct opd_cert_pending *pending_new(struct opd_certs *c, enum cert_kind kind,
					    opd_certs_cb cb, void *data)
{
	struct opd_cert_pending *w = opd_xcalloc(1, sizeof *w);

	w->c = c;
	w->kind = kind;
	w->cb = cb;
	w->data = data;
	return w;
}

/* Fill the result from the state machine's outcome, answer, release. */
static void finish(struct opd_cert_pending *w, int status, const struct opd_apply_result *ar)
{
	struct opd_certs *c = w->c;
	struct opd_cert_result res = {.status = status};
	struct opd_cert_info info = {0};

	if (status == 0 && ar != NULL) {
		snprintf(res.message, sizeof res.message, "%s", ar->message);
		res.status = opd_apply_status_code(ar->status);
		/* A retry gets the first attempt's answer. */
		res.duplicate = ar->status == OPD_APPLY_DUPLICATE;
		res.index = ar->index;
	}
	res.serial = w->serial;
	res.not_before = w->not_before;
	res.not_after = w->not_after;
	snprintf(res.fingerprint, sizeof res.fingerprint, "%s", w->fingerprint);
	snprintf(res.name, sizeof res.name, "%s", w->name);
	snprintf(res.key_file, sizeof res.key_file, "%s", w->key_file);
	if (res.duplicate && ar != NULL) {
		/* A retry answers with what the first attempt did, found through its record. */
		if (w->kind == CERT_ISSUE || w->kind == CERT_REVOKE)
			res.serial = ar->version;
		else if (w->kind == CERT_ROTATION)
			snprintf(res.name, sizeof res.name, "%.64s", ar->name);
		else
			snprintf(res.fingerprint, sizeof res.fingerprint, "%.64s", ar->name);
	}
	if (res.status == 0 && w->kind == CERT_ISSUE) {
		if (res.duplicate) {
			if (opd_store_get_certificate(store_of(c), res.serial, &info) == 0) {
				res.cert_pem = info.cert_pem;
				snprintf(res.fingerprint, sizeof res.fingerprint, "%s",
					 info.fingerprint);
				res.not_before = info.not_before;
				res.not_after = info.not_after;
			}
		} else {
			res.cert_pem = w->cert_pem;
			res.key_pem = w->key_pem;
		}
	}
	pending_unlink(c, w);
	if (w->cb != NULL)
		w->cb(w->data, &res);
	opd_cert_info_fini(&info);
	pending_free(w);
}

/* Answer at once without proposing (a refusal found on the leader). */
static void refuse(int status, const char *msg, opd_certs_cb cb, void *data)
{
	struct opd_cert_result res = {.status = status};

	snprintf(res.message, sizeof res.message, "%s", msg);
	if (cb != NULL)
		cb(data, &res);
}

static void proposed(void *data, int status, const struct opd_apply_result *res)
{
	struct opd_cert_pending *w = data;
	struct opd_request_record rec;
	struct opd_apply_result from_store = {0};

	/* Applied long ago by the ring's measure: the requests table has the outcome. */
	if (status == 0 && res == NULL && w->has_request_id &&
	    opd_store_get_request(store_of(w->c), w->request_id, OPD_REQUEST_ID_LEN, &rec) == 0) {
		from_store.status = (enum opd_apply_status)rec.status;
		from_store.version = rec.version;
		snprintf(from_store.name, sizeof from_store.name, "%s", rec.name);
		res = &from_store;
	}
	finish(w, status, res);
}

/* Submit with w in the pending list until its callback (or a refusal) takes it out. */
static int submit(struct opd_certs *c, opd_cmd *cmd, struct opd_cert_pending *w)
{
	int rc;

	w->next = c->pending;
	c->pending = w;
	rc = opd_configs_submit(c->configs, cmd, proposed, w);
	if (rc != 0) {
		pending_unlink(c, w);
		pending_free(w);
	}
	return rc == OPD_EAGAIN ? OPD_ENOTLEADER : rc;
}

/* Time and term from the node's one clock, shared with the configuration writes. */
static void stamp(struct opd_certs *c, opd_cmd *cmd, const uint8_t *request_id, const char *actor,
		  struct opd_cert_pending *w)
{
	struct opd_configs *cf = c->configs;
	struct opd_hlc now;

	opd_hlc_observe(&cf->hlc, cf->fsm.hlc);
	now = opd_hlc_now(&cf->hlc, opd_clock_wall(c->clock));
	cmd->request_id.data = (uint8_t *)request_id;
	cmd->request_id.len = request_id ? OPD_REQUEST_ID_LEN : 0;
	if (w != NULL && request_id != NULL) {
		memcpy(w->request_id, request_id, OPD_REQUEST_ID_LEN);
		w->has_request_id = 1;
	}
	cmd->hlc_wall_ms = now.wall_ms;
	cmd->hlc_logical = now.logical;
	cmd->actor = (char *)(actor ? actor : "");
	cmd->term = cf->node ? opd_node_term(cf->node) : 1;
}

/* A request id applied before: answer with its first result, propose nothing. */
static int answer_duplicate(struct opd_certs *c, enum cert_kind kind, const uint8_t *request_id,
			    opd_certs_cb cb, void *data)
{
	struct opd_request_record rec;
	struct opd_apply_result ar = {0};

	if (request_id == NULL ||
	    opd_store_get_request(store_of(c), request_id, OPD_REQUEST_ID_LEN, &rec) != 0)
		return 0;
	ar.status = OPD_APPLY_DUPLICATE;
	ar.version = rec.version;
	snprintf(ar.name, sizeof ar.name, "%s", rec.name);
	if (rec.status != OPD_APPLY_OK && rec.status != OPD_APPLY_DUPLICATE)
		ar.status = (enum opd_apply_status)rec.status;
	finish(pending_new(c, kind, cb, data), 0, &ar);
	return 1;
}

static int has_pending(const struct opd_certs *c, enum cert_kind kind)
{
	for (const struct opd_cert_pending *w = c->pending; w != NULL; w = w->next)
		if (w->kind == kind)
			return 1;
	return 0;
}

/* ---- the CA in the replicated state ---- */

static void ca_registered(void *data, const struct opd_cert_result *res)
{
	(void)data;
	if (res->status != 0)
		log_warn("registering the fleet CA failed: %s",
			 res->message[0] ? res->message : opd_strerror(res->status));
}

static int propose_add_ca(struct opd_certs *c, const struct opd_ca *ca, const char *actor,
			  const uint8_t *request_id, struct opd_cert_pending *w)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__AddCA op = OPAMPD__V1__ADD_CA__INIT;

	stamp(c, &cmd, request_id, actor, w);
	op.fingerprint = (char *)ca->fingerprint;
	op.subject = (char *)ca->subject;
	op.cert_pem = ca->cert_pem;
	op.not_before = ca->not_before;
	op.not_after = ca->not_after;
	op.activate = 1;
	snprintf(w->fingerprint, sizeof w->fingerprint, "%s", ca->fingerprint);
	w->not_before = ca->not_before;
	w->not_after = ca->not_after;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_ADD_CA;
	cmd.add_ca = &op;
	return submit(c, &cmd, w);
}

/* The main CA becomes the active one when the replicated state has none (first leader). */
static void ensure_ca(struct opd_certs *c)
{
	struct opd_ca_info active;

	if (c->n_keys == 0 || !writable(c) || has_pending(c, CERT_CA_ENSURE) ||
	    has_pending(c, CERT_CA_ADD))
		return;
	if (opd_store_active_ca(store_of(c), &active) == 0) {
		opd_ca_info_fini(&active);
		return;
	}
	log_info("registering the fleet CA fingerprint=%s not_after=%llu", c->keys[0].fingerprint,
		 (unsigned long long)c->keys[0].not_after);
	if (propose_add_ca(c, &c->keys[0], "opampd", NULL,
			   pending_new(c, CERT_CA_ENSURE, ca_registered, c)) != 0)
		log_warn("could not propose the fleet CA (not writable)");
}

void opd_certs_tick(struct opd_certs *c)
{
	struct opd_ca_info active;

	if (!writable(c))
		return;
	ensure_ca(c);
	if (opd_store_active_ca(store_of(c), &active) != 0)
		return;
	if (opd_certs_key(c, active.fingerprint) == NULL) {
		if (!c->warned_no_key)
			log_warn("this leader cannot issue certificates: it does not hold the key "
				 "of the active CA fingerprint=%s (give every voter the same "
				 "--ca-cert and --ca-key, or copy %s" ROTATION_CA_PREFIX
				 "%.16s.pem and .key from the node that made it)",
				 active.fingerprint, "DATA_DIR/", active.fingerprint);
		c->warned_no_key = 1;
	} else {
		c->warned_no_key = 0;
	}
	opd_ca_info_fini(&active);
}

/*
 * The CA to sign with: the active one in the replicated state, or, before
 * any is registered, the main CA (registered first: log order puts its
 * AddCA before the certificate). NULL with msg when this node cannot sign.
 */
static struct opd_ca *signing_ca(struct opd_certs *c, char *msg, size_t cap)
{
	struct opd_ca_info active;
	struct opd_ca *ca;
	int rc = opd_store_active_ca(store_of(c), &active);

	if (rc == OPD_ENOTFOUND) {
		if (c->n_keys == 0) {
			snprintf(msg, cap,
				 "no fleet CA: this cluster was started without --ca-cert and "
				 "--ca-key");
			return NULL;
		}
		ensure_ca(c);
		return &c->keys[0];
	}
	if (rc != 0) {
		snprintf(msg, cap, "%s", opd_store_errmsg(store_of(c)));
		return NULL;
	}
	ca = opd_certs_key(c, active.fingerprint);
	if (ca == NULL)
		snprintf(msg, cap,
			 "this node does not hold the key of the active CA %.16s...: give every "
			 "voter the CA's files",
			 active.fingerprint);
	opd_ca_info_fini(&active);
	return ca;
}

/* ---- issuing ---- */

static uint64_t next_serial(struct opd_certs *c)
{
	uint64_t last = 0, inflight = 0;

	if (opd_store_last_serial(store_of(c), &last) != 0)
		last = 0; /* apply refuses a used serial: a conflict, never a duplicate */
	for (const struct opd_cert_pending *w = c->pending; w != NULL; w = w->next)
		if (w->kind == CERT_ISSUE && w->serial > inflight)
			inflight = w->serial;
	return (inflight > last ? inflight : last) + 1;
}

static int reason_ok(const char *reason, const char *first)
{
	return reason != NULL && (strcmp(reason, first) == 0 || strcmp(reason, "renewal") == 0 ||
				  strcmp(reason, "rotation") == 0);
}

/* Sign (pub from a CSR, or NULL: a new key for the agent) and propose IssueCertificate. */
static int issue(struct opd_certs *c, const uint8_t uid[16], struct evp_pkey_st *pub,
		 const char *reason, const char *rotation_id, const char *actor,
		 const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__IssueCertificate op = OPAMPD__V1__ISSUE_CERTIFICATE__INIT;
	struct opd_ca_issued issued = {0};
	struct opd_cert_pending *w;
	struct opd_ca_leaf leaf;
	struct opd_ca *ca;
	char msg[256];
	uint64_t now;
	int rc;

	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, CERT_ISSUE, request_id, cb, data))
		return 0;
	if ((ca = signing_ca(c, msg, sizeof msg)) == NULL) {
		refuse(OPD_EIO, msg, cb, data);
		return 0;
	}
	now = now_s(c);
	leaf = (struct opd_ca_leaf){.serial = next_serial(c),
				    .not_before = now - OPD_CERTS_BACKDATE_S,
				    .not_after = now + c->lifetime_s};
	memcpy(leaf.uid, uid, 16);
	/* Nothing outlives its issuer: a certificate ends with its CA at the latest. */
	if (leaf.not_after > ca->not_after)
		leaf.not_after = ca->not_after;
	if (leaf.not_after <= now) {
		snprintf(msg, sizeof msg, "the active CA %.16s... has expired: rotate the CA",
			 ca->fingerprint);
		refuse(OPD_EIO, msg, cb, data);
		return 0;
	}
	rc = pub != NULL ? opd_ca_sign(ca, pub, &leaf, &issued)
			 : opd_ca_generate_leaf(ca, &leaf, &issued);
	if (rc != 0) {
		refuse(OPD_EIO, ca->errmsg, cb, data);
		return 0;
	}
	w = pending_new(c, CERT_ISSUE, cb, data);
	w->serial = leaf.serial;
	w->not_before = leaf.not_before;
	w->not_after = leaf.not_after;
	snprintf(w->fingerprint, sizeof w->fingerprint, "%s", issued.fingerprint);
	/* Transferred: the pending write owns (and later cleanses) them. */
	w->cert_pem = issued.cert_pem;
	w->key_pem = issued.key_pem;
	stamp(c, &cmd, request_id, actor, w);
	op.serial = leaf.serial;
	op.instance_uid.data = (uint8_t *)uid;
	op.instance_uid.len = 16;
	op.subject = issued.subject;
	op.not_before = leaf.not_before;
	op.not_after = leaf.not_after;
	op.fingerprint = issued.fingerprint;
	op.cert_pem = issued.cert_pem;
	op.reason = (char *)reason;
	op.ca_fingerprint = ca->fingerprint;
	op.rotation_id = (char *)(rotation_id ? rotation_id : "");
	cmd.op_case = OPAMPD__V1__COMMAND__OP_ISSUE_CERTIFICATE;
	cmd.issue_certificate = &op;
	return submit(c, &cmd, w);
}

int opd_certs_issue_csr(struct opd_certs *c, const uint8_t uid[16], const uint8_t *csr,
			size_t csr_len, const char *reason, const char *rotation_id,
			const char *actor, const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	struct opd_ca_csr checked;
	char msg[256];
	int rc;

	/* "server": a key this server made for the agent, signed through its own CSR. */
	if ((!reason_ok(reason, "csr") && (reason == NULL || strcmp(reason, "server") != 0)) ||
	    (rotation_id != NULL && strlen(rotation_id) > OPD_STORE_ROTATION_ID_MAX)) {
		refuse(OPD_EINVAL, "reason must be csr, server, renewal or rotation", cb, data);
		return 0;
	}
	/* Checked before anything else: a bad CSR gets the same clear answer on any node. */
	if (opd_ca_check_csr(csr, csr_len, uid, &checked, msg, sizeof msg) != 0) {
		refuse(OPD_EINVAL, msg, cb, data);
		return 0;
	}
	rc = issue(c, uid, checked.pub, reason, rotation_id, actor, request_id, cb, data);
	opd_ca_csr_fini(&checked);
	return rc;
}

int opd_certs_issue_server(struct opd_certs *c, const uint8_t uid[16], const char *reason,
			   const char *rotation_id, const char *actor, const uint8_t *request_id,
			   opd_certs_cb cb, void *data)
{
	if (!reason_ok(reason, "server") ||
	    (rotation_id != NULL && strlen(rotation_id) > OPD_STORE_ROTATION_ID_MAX)) {
		refuse(OPD_EINVAL, "reason must be server, renewal or rotation", cb, data);
		return 0;
	}
	return issue(c, uid, NULL, reason, rotation_id, actor, request_id, cb, data);
}

/* ---- revocation, CA steps, rotations ---- */

int opd_certs_revoke(struct opd_certs *c, uint64_t serial, const char *reason, const char *actor,
		     const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__RevokeCertificate op = OPAMPD__V1__REVOKE_CERTIFICATE__INIT;
	struct opd_cert_pending *w;
	struct opd_cert_info info;
	char msg[256];
	int rc;

	if (reason == NULL)
		reason = "unspecified";
	if (opd_ca_reason_code(reason) < 0) {
		refuse(OPD_EINVAL,
		       "reason must be one of unspecified, keyCompromise, cACompromise, "
		       "affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn",
		       cb, data);
		return 0;
	}
	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, CERT_REVOKE, request_id, cb, data))
		return 0;
	rc = opd_store_get_certificate(store_of(c), serial, &info);
	if (rc != 0) {
		snprintf(msg, sizeof msg, "certificate %llu %s", (unsigned long long)serial,
			 rc == OPD_ENOTFOUND ? "not found" : "cannot be read");
		refuse(rc == OPD_ENOTFOUND ? OPD_ENOTFOUND : OPD_ESTORE, msg, cb, data);
		return 0;
	}
	rc = info.revoked;
	opd_cert_info_fini(&info);
	if (rc) {
		snprintf(msg, sizeof msg, "certificate %llu is already revoked",
			 (unsigned long long)serial);
		refuse(OPD_ECONFLICT, msg, cb, data);
		return 0;
	}
	w = pending_new(c, CERT_REVOKE, cb, data);
	w->serial = serial;
	stamp(c, &cmd, request_id, actor, w);
	op.serial = serial;
	op.reason = (char *)reason;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_REVOKE_CERTIFICATE;
	cmd.revoke_certificate = &op;
	return submit(c, &cmd, w);
}

int opd_certs_rotate_ca(struct opd_certs *c, const char *cert_file, const char *key_file,
			const char *actor, const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	char cert[4200], key[4200], cn[64], msg[256], fp[OPD_CA_FP_LEN + 1];
	struct opd_cert_pending *w;
	struct opd_ca_info known;
	struct opd_ca ca, *held;
	int rc;

	if ((cert_file == NULL) != (key_file == NULL)) {
		refuse(OPD_EINVAL, "give both cert_file and key_file, or neither", cb, data);
		return 0;
	}
	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, CERT_CA_ADD, request_id, cb, data))
		return 0;
	if (c->n_keys == OPD_CERTS_MAX_KEYS) {
		refuse(OPD_ECONFLICT,
		       "this node holds the keys of too many CAs: retire one and remove its files",
		       cb, data);
		return 0;
	}
	if (cert_file != NULL) {
		rc = opd_ca_load(&ca, cert_file, key_file);
	} else {
		ca_name(now_s(c), cn, sizeof cn);
		rc = opd_ca_generate(&ca, cn, now_s(c), OPD_CA_LIFETIME_S);
	}
	if (rc != 0) {
		refuse(cert_file ? OPD_EINVAL : OPD_EIO, ca.errmsg, cb, data);
		return 0;
	}
	if (opd_store_get_ca(store_of(c), ca.fingerprint, &known) == 0) {
		snprintf(msg, sizeof msg, "CA %s is already known (%s)", ca.fingerprint,
			 known.state);
		opd_ca_info_fini(&known);
		opd_ca_fini(&ca);
		refuse(OPD_ECONFLICT, msg, cb, data);
		return 0;
	}
	/* On disk before it is in the log: a restart must still find the key. */
	rotation_paths(c, ca.fingerprint, cert, key, sizeof cert);
	rc = opd_ca_save(&ca, cert, key);
	if (rc != 0 && rc != OPD_ECONFLICT) {
		refuse(OPD_EIO, ca.errmsg, cb, data);
		opd_ca_fini(&ca);
		return 0;
	}
	snprintf(fp, sizeof fp, "%s", ca.fingerprint);
	keep_key(c, &ca);
	if ((held = find_key(c, fp)) == NULL) {
		refuse(OPD_EIO, "the new CA could not be kept", cb, data);
		return 0;
	}
	log_info("CA rotation: new CA fingerprint=%s key_file=%s", held->fingerprint, key);
	w = pending_new(c, CERT_CA_ADD, cb, data);
	snprintf(w->key_file, sizeof w->key_file, "%s", key);
	return propose_add_ca(c, held, actor, request_id, w);
}

static int ca_step(struct opd_certs *c, enum cert_kind kind, const char *fingerprint,
		   const char *actor, const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__ActivateCA act = OPAMPD__V1__ACTIVATE_CA__INIT;
	Opampd__V1__RetireCA ret = OPAMPD__V1__RETIRE_CA__INIT;
	struct opd_cert_pending *w;
	struct opd_ca_info info;
	char msg[256] = "";
	int status = 0;

	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, kind, request_id, cb, data))
		return 0;
	if (opd_store_get_ca(store_of(c), fingerprint, &info) != 0) {
		snprintf(msg, sizeof msg, "no CA with fingerprint %.64s", fingerprint);
		refuse(OPD_ENOTFOUND, msg, cb, data);
		return 0;
	}
	if (strcmp(info.state, "retired") == 0) {
		status = OPD_ECONFLICT;
		snprintf(msg, sizeof msg, "CA %.16s... is retired", fingerprint);
	} else if (kind == CERT_CA_RETIRE && strcmp(info.state, "active") == 0) {
		status = OPD_ECONFLICT;
		snprintf(msg, sizeof msg,
			 "CA %.16s... is the active CA: activate another one before retiring it",
			 fingerprint);
	} else if (kind == CERT_CA_ACTIVATE && opd_certs_key(c, fingerprint) == NULL) {
		status = OPD_EIO;
		snprintf(
		    msg, sizeof msg,
		    "this node does not hold the key of CA %.16s...: it could not sign with it",
		    fingerprint);
	}
	opd_ca_info_fini(&info);
	if (status != 0) {
		refuse(status, msg, cb, data);
		return 0;
	}
	w = pending_new(c, kind, cb, data);
	snprintf(w->fingerprint, sizeof w->fingerprint, "%s", fingerprint);
	stamp(c, &cmd, request_id, actor, w);
	if (kind == CERT_CA_ACTIVATE) {
		act.fingerprint = (char *)fingerprint;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_ACTIVATE_CA;
		cmd.activate_ca = &act;
	} else {
		ret.fingerprint = (char *)fingerprint;
		cmd.op_case = OPAMPD__V1__COMMAND__OP_RETIRE_CA;
		cmd.retire_ca = &ret;
	}
	return submit(c, &cmd, w);
}

int opd_certs_activate_ca(struct opd_certs *c, const char *fingerprint, const char *actor,
			  const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	return ca_step(c, CERT_CA_ACTIVATE, fingerprint, actor, request_id, cb, data);
}

int opd_certs_retire_ca(struct opd_certs *c, const char *fingerprint, const char *actor,
			const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	return ca_step(c, CERT_CA_RETIRE, fingerprint, actor, request_id, cb, data);
}

int opd_certs_start_rotation(struct opd_certs *c, const struct opd_kvs *selector, const char *actor,
			     const uint8_t *request_id, opd_certs_cb cb, void *data)
{
	opd_cmd cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__StartRotation op = OPAMPD__V1__START_ROTATION__INIT;
	struct opd_validation_error verr = {0};
	struct opd_cert_pending *w;
	Opampd__V1__Pair *pairs, **ptrs;
	struct opd_kvs sel;
	uint8_t rnd[8];
	int rc;

	if (opd_validate_selector(selector, &verr) != 0) {
		refuse(OPD_EINVAL, verr.message, cb, data);
		return 0;
	}
	if (!writable(c))
		return OPD_ENOTLEADER;
	if (answer_duplicate(c, CERT_ROTATION, request_id, cb, data))
		return 0;
	w = pending_new(c, CERT_ROTATION, cb, data);
	/* From the request id, so a retried start names the same rotation. */
	if (request_id != NULL)
		memcpy(rnd, request_id, sizeof rnd);
	else if (RAND_bytes(rnd, sizeof rnd) != 1)
		abort();
	opd_hex_encode(rnd, sizeof rnd, w->name);
	opd_kvs_copy(&sel, selector);
	opd_kvs_sort(&sel);
	pairs = opd_xcalloc(sel.n ? sel.n : 1, sizeof *pairs);
	ptrs = opd_xcalloc(sel.n ? sel.n : 1, sizeof *ptrs);
	for (size_t i = 0; i < sel.n; i++) {
		opampd__v1__pair__init(&pairs[i]);
		pairs[i].key = sel.v[i].key;
		pairs[i].value = sel.v[i].value;
		ptrs[i] = &pairs[i];
	}
	stamp(c, &cmd, request_id, actor, w);
	op.rotation_id = w->name;
	op.n_selector = sel.n;
	op.selector = ptrs;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_START_ROTATION;
	cmd.start_rotation = &op;
	rc = submit(c, &cmd, w);
	free(pairs);
	free(ptrs);
	opd_kvs_fini(&sel);
	return rc;
}

/* ---- CRL and trust bundle ---- */

struct crl_ctx {
	const char *ca;
	struct opd_ca_revoked *v;
	size_t n;
};

static int crl_collect(void *data, const struct opd_revocation *r)
{
	struct crl_ctx *x = data;

	if (strcmp(r->ca_fingerprint, x->ca) != 0)
		return 0;
	x->v = opd_xrealloc(x->v, (x->n + 1) * sizeof *x->v);
	x->v[x->n++] = (struct opd_ca_revoked){.serial = r->serial,
					       .revoked_s = r->revoked_ms / 1000,
					       .reason = opd_xstrdup(r->reason)};
	return 0;
}

static int crl_one(struct opd_certs *c, struct opd_ca *ca, int pem, struct opd_buf *out)
{
	struct crl_ctx x = {.ca = ca->fingerprint};
	uint64_t now = now_s(c);
	int rc;

	/* Expired certificates fail on their dates already: the CRL lists the rest. */
	rc = opd_store_foreach_revocation(store_of(c), now, crl_collect, &x);
	if (rc == 0) {
		rc = opd_ca_crl(ca, x.v, x.n, now, now + OPD_CERTS_CRL_VALIDITY_S,
				opd_clock_wall(c->clock), pem, out);
		if (rc != 0)
			opd_errmsg_printf(c->errmsg, "%s", ca->errmsg);
	} else {
		opd_errmsg_printf(c->errmsg, "%s", opd_store_errmsg(store_of(c)));
	}
	for (size_t i = 0; i < x.n; i++)
		free((char *)x.v[i].reason);
	free(x.v);
	return rc;
}

struct all_ctx {
	struct opd_certs *c;
	struct opd_buf *out;
	int made, rc;
};

static int crl_each(void *data, const struct opd_ca_info *info)
{
	struct all_ctx *a = data;
	struct opd_ca *ca;

	if (strcmp(info->state, "retired") == 0 ||
	    (ca = opd_certs_key(a->c, info->fingerprint)) == NULL)
		return 0;
	if ((a->rc = crl_one(a->c, ca, 1, a->out)) != 0)
		return 1;
	a->made++;
	return 0;
}

int opd_certs_crl(struct opd_certs *c, const char *fingerprint, int pem, struct opd_buf *out)
{
	struct opd_ca_info info;
	struct opd_ca *ca;
	int rc;

	if (fingerprint != NULL && strcmp(fingerprint, "all") == 0) {
		struct all_ctx a = {c, out, 0, 0};

		if (!pem) {
			opd_errmsg_printf(c->errmsg, "several CRLs need the PEM format");
			return OPD_EINVAL;
		}
		rc = opd_store_foreach_ca(store_of(c), crl_each, &a);
		if (rc < 0)
			return rc;
		if (a.rc != 0)
			return a.rc;
		if (a.made == 0) {
			opd_errmsg_printf(
			    c->errmsg, "this node holds the key of no trusted CA: no CRL to sign");
			return OPD_EIO;
		}
		return 0;
	}
	rc = fingerprint != NULL ? opd_store_get_ca(store_of(c), fingerprint, &info)
				 : opd_store_active_ca(store_of(c), &info);
	if (rc != 0) {
		opd_errmsg_printf(c->errmsg, "%s",
				  rc == OPD_ENOTFOUND ? "no such CA"
						      : opd_store_errmsg(store_of(c)));
		return rc;
	}
	ca = opd_certs_key(c, info.fingerprint);
	if (ca == NULL)
		opd_errmsg_printf(c->errmsg,
				  "this node does not hold the key of CA %.16s...: ask a node that "
				  "does (the leader)",
				  info.fingerprint);
	opd_ca_info_fini(&info);
	return ca != NULL ? crl_one(c, ca, pem, out) : OPD_EIO;
}

struct bundle_ctx {
	struct opd_buf *out;
	const char *state;
	int n;
};

static int bundle_each(void *data, const struct opd_ca_info *info)
{
	struct bundle_ctx *b = data;
	size_t len = strlen(info->cert_pem);

	if (strcmp(info->state, b->state) != 0)
		return 0;
	opd_buf_append(b->out, info->cert_pem, len);
	if (len > 0 && info->cert_pem[len - 1] != '\n')
		opd_buf_append_byte(b->out, '\n');
	b->n++;
	return 0;
}

int opd_certs_bundle(struct opd_certs *c, struct opd_buf *out)
{
	struct bundle_ctx b = {out, "active", 0};
	int rc;

	/* The active CA first, then those still trusted in an overlap. */
	if ((rc = opd_store_foreach_ca(store_of(c), bundle_each, &b)) != 0)
		return rc < 0 ? rc : OPD_ESTORE;
	b.state = "trusted";
	if ((rc = opd_store_foreach_ca(store_of(c), bundle_each, &b)) != 0)
		return rc < 0 ? rc : OPD_ESTORE;
	return b.n > 0 ? 0 : OPD_ENOTFOUND;
}
