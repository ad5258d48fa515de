#define LOG_COMPONENT "fsm"

#include "fsm.h"

#include "ca.h"
#include "cmd.h"
#include "config_hash.h"
#include "hex.h"
#include "log.h"
#include "validate.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static struct opd_apply_result *slot(struct opd_fsm *f, uint64_t index)
{
	return &f->results[index % OPD_FSM_RESULTS];
}

const struct opd_apply_result *opd_fsm_result(const struct opd_fsm *f, uint64_t index)
{
	const struct opd_apply_result *r = &f->results[index % OPD_FSM_RESULTS];

	return index != 0 && r->index == index ? r : NULL;
}

/* The stored applied index and HLC; a store that cannot be read is local corruption. */
static uint64_t applied(struct opd_fsm *f, struct opd_hlc *hlc)
{
	struct opd_hlc h;
	uint64_t index;

	if (opd_store_get_applied(f->store, &index, &h.wall_ms, &h.logical) != 0)
		fatal("reading the applied index: %s", opd_store_errmsg(f->store));
	if (hlc != NULL)
		*hlc = h;
	return index;
}

uint64_t opd_fsm_applied_index(const struct opd_fsm *f)
{
	return applied((struct opd_fsm *)f, NULL);
}

static void set_message(struct opd_apply_result *res, enum opd_apply_status status, const char *fmt,
			...) __attribute__((format(printf, 3, 4)));

static void set_message(struct opd_apply_result *res, enum opd_apply_status status, const char *fmt,
			...)
{
	va_list ap;

	res->status = status;
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof res->message, fmt, ap);
	va_end(ap);
}

/*
 * A store code from an operation: business outcomes become the result's
 * status, anything else is a local fault. Returns false for a fault.
 */
static bool outcome(struct opd_fsm *f, struct opd_apply_result *res, int rc, const char *what)
{
	switch (rc) {
	case 0:
		res->status = OPD_APPLY_OK;
		return true;
	case OPD_ENOTFOUND:
		set_message(res, OPD_APPLY_NOT_FOUND, "%s: not found", what);
		return true;
	case OPD_ECONFLICT:
		set_message(res, OPD_APPLY_CONFLICT, "%s: conflict", what);
		return true;
	case OPD_EINVAL:
		set_message(res, OPD_APPLY_INVALID, "%s: invalid", what);
		return true;
	default:
		opd_errmsg_printf(f->errmsg, "%s: %s", what, opd_store_errmsg(f->store));
		return false;
	}
}

static void pairs_to_kvs(Opampd__V1__Pair **pairs, size_t n, struct opd_kvs *out)
{
	opd_kvs_init(out);
	for (size_t i = 0; i < n; i++)
		opd_kvs_add(out, pairs[i]->key, pairs[i]->value);
}

static bool apply_put(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__PutVersion *pv = cmd->put_version;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	struct opd_put_result out = {0};
	struct opd_files files;
	struct opd_kvs sel;
	bool ok = true;
	int rc;

	snprintf(res->name, sizeof res->name, "%s", pv->name);
	res->version = pv->version;
	if (!opd_validate_name(pv->name) || pv->version == 0) {
		set_message(res, OPD_APPLY_INVALID, "put: bad name or no version");
		return true;
	}
	if (pv->signature.len != 0 && pv->signature.len != 64) {
		set_message(res, OPD_APPLY_INVALID, "put: signature is %zu bytes",
			    pv->signature.len);
		return true;
	}
	opd_files_init(&files);
	for (size_t i = 0; i < pv->n_files; i++) {
		const Opampd__V1__File *fl = pv->files[i];

		/* The canonical order is strictly by name: the hash depends on it. */
		if (i > 0 && strcmp(pv->files[i - 1]->name, fl->name) >= 0) {
			set_message(res, OPD_APPLY_INVALID, "put: files not sorted by name");
			goto out_files;
		}
		opd_files_add(&files, fl->name, fl->content_type, fl->body.data, fl->body.len);
	}
	opd_config_hash(&files, hash);
	if (pv->config_hash.len != OPD_CONFIG_HASH_LEN ||
	    memcmp(pv->config_hash.data, hash, sizeof hash) != 0) {
		set_message(res, OPD_APPLY_INVALID, "put: config_hash does not match the files");
		goto out_files;
	}
	pairs_to_kvs(pv->selector, pv->n_selector, &sel);
	opd_kvs_sort(&sel);
	struct opd_put_version in = {
	    .name = pv->name,
	    .selector = &sel,
	    .priority = pv->priority,
	    .files = &files,
	    .message = pv->message,
	    .actor = cmd->actor,
	    .ts_ms = cmd->hlc_wall_ms,
	    .version = pv->version,
	    .signature = pv->signature.data,
	    .signature_len = pv->signature.len,
	    .key_id = pv->key_id,
	    .term = cmd->term,
	    .hlc_logical = cmd->hlc_logical,
	    .history_limit = pv->history_limit,
	};
	memcpy(in.hash, hash, sizeof hash);
	rc = opd_store_put_version(f->store, &in, &out);
	ok = outcome(f, res, rc, "put");
	if (rc == 0) {
		res->version = out.version;
		res->created = out.created;
	} else if (rc == OPD_ECONFLICT) {
		set_message(res, OPD_APPLY_CONFLICT, "put: version %llu is not the next one",
			    (unsigned long long)pv->version);
	}
	opd_kvs_fini(&sel);
out_files:
	opd_files_fini(&files);
	return ok;
}

static bool apply_set_selector(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__SetSelector *ss = cmd->set_selector;
	struct opd_kvs sel;
	int64_t prio = ss->priority;
	bool ok;

	snprintf(res->name, sizeof res->name, "%s", ss->name);
	if (!ss->has_selector && !ss->has_priority) {
		set_message(res, OPD_APPLY_INVALID, "selector: nothing to change");
		return true;
	}
	pairs_to_kvs(ss->selector, ss->n_selector, &sel);
	ok = outcome(f, res,
		     opd_store_set_selector(f->store, ss->name, ss->has_selector ? &sel : NULL,
					    ss->has_priority ? &prio : NULL, cmd->actor,
					    cmd->hlc_wall_ms),
		     "selector");
	opd_kvs_fini(&sel);
	return ok;
}

/* ---- certificates, CAs and rotations (issue #4) ---- */

static bool apply_issue(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__IssueCertificate *ic = cmd->issue_certificate;
	char uid[33];
	int rc;

	res->version = ic->serial;
	if (ic->instance_uid.len != 16) {
		set_message(res, OPD_APPLY_INVALID, "issue: instance_uid is %zu bytes",
			    ic->instance_uid.len);
		return true;
	}
	opd_hex_encode(ic->instance_uid.data, 16, uid);
	snprintf(res->name, sizeof res->name, "%s", uid);
	struct opd_new_cert in = {
	    .serial = ic->serial,
	    .instance_uid = uid,
	    .subject = ic->subject,
	    .not_before = ic->not_before,
	    .not_after = ic->not_after,
	    .fingerprint = ic->fingerprint,
	    .ca_fingerprint = ic->ca_fingerprint,
	    .cert_pem = ic->cert_pem,
	    .reason = ic->reason,
	    .rotation_id = ic->rotation_id,
	};
	rc = opd_store_add_certificate(f->store, &in, cmd->actor, cmd->hlc_wall_ms);
	if (rc == OPD_ECONFLICT) {
		set_message(res, OPD_APPLY_CONFLICT,
			    "issue: serial %llu or fingerprint already used, or CA retired",
			    (unsigned long long)ic->serial);
		return true;
	}
	if (rc == OPD_ENOTFOUND) {
		set_message(res, OPD_APPLY_NOT_FOUND, "issue: unknown CA %.64s",
			    ic->ca_fingerprint);
		return true;
	}
	return outcome(f, res, rc, "issue");
}

static bool apply_revoke(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__RevokeCertificate *rv = cmd->revoke_certificate;
	int rc;

	res->version = rv->serial;
	snprintf(res->name, sizeof res->name, "%llu", (unsigned long long)rv->serial);
	if (opd_ca_reason_code(rv->reason) < 0) {
		set_message(res, OPD_APPLY_INVALID, "revoke: unknown reason");
		return true;
	}
	rc = opd_store_revoke_certificate(f->store, rv->serial, rv->reason, cmd->actor,
					  cmd->hlc_wall_ms);
	if (rc == OPD_ECONFLICT) {
		set_message(res, OPD_APPLY_CONFLICT, "revoke: certificate %llu already revoked",
			    (unsigned long long)rv->serial);
		return true;
	}
	return outcome(f, res, rc, "revoke");
}

static bool apply_add_ca(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__AddCA *a = cmd->add_ca;
	struct opd_new_ca in = {a->fingerprint, a->subject, a->cert_pem, a->not_before,
				a->not_after};

	snprintf(res->name, sizeof res->name, "%s", a->fingerprint);
	return outcome(f, res,
		       opd_store_add_ca(f->store, &in, a->activate, cmd->actor, cmd->hlc_wall_ms),
		       "add CA");
}

static bool apply_rotation(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const Opampd__V1__StartRotation *sr = cmd->start_rotation;
	struct opd_kvs sel;
	bool ok;

	snprintf(res->name, sizeof res->name, "%s", sr->rotation_id);
	pairs_to_kvs(sr->selector, sr->n_selector, &sel);
	ok = outcome(
	    f, res,
	    opd_store_add_rotation(f->store, sr->rotation_id, &sel, cmd->actor, cmd->hlc_wall_ms),
	    "rotation");
	opd_kvs_fini(&sel);
	return ok;
}

static bool is_cert_op(int op)
{
	switch (op) {
	case OPAMPD__V1__COMMAND__OP_ISSUE_CERTIFICATE:
	case OPAMPD__V1__COMMAND__OP_REVOKE_CERTIFICATE:
	case OPAMPD__V1__COMMAND__OP_ADD_CA:
	case OPAMPD__V1__COMMAND__OP_ACTIVATE_CA:
	case OPAMPD__V1__COMMAND__OP_RETIRE_CA:
	case OPAMPD__V1__COMMAND__OP_START_ROTATION:
		return true;
	default:
		return false;
	}
}

static bool perform(struct opd_fsm *f, const opd_cmd *cmd, struct opd_apply_result *res)
{
	const char *actor = cmd->actor;
	uint64_t ts = cmd->hlc_wall_ms;

	switch (cmd->op_case) {
	case OPAMPD__V1__COMMAND__OP_PUT_VERSION:
		return apply_put(f, cmd, res);
	case OPAMPD__V1__COMMAND__OP_SET_SELECTOR:
		return apply_set_selector(f, cmd, res);
	case OPAMPD__V1__COMMAND__OP_SET_ACTIVE:
		snprintf(res->name, sizeof res->name, "%s", cmd->set_active->name);
		res->version = cmd->set_active->version;
		return outcome(f, res,
			       opd_store_set_active(f->store, cmd->set_active->name,
						    cmd->set_active->version, actor, ts),
			       "set active");
	case OPAMPD__V1__COMMAND__OP_DELETE_CONFIG:
		snprintf(res->name, sizeof res->name, "%s", cmd->delete_config->name);
		return outcome(f, res,
			       opd_store_delete(f->store, cmd->delete_config->name, actor, ts),
			       "delete");
	case OPAMPD__V1__COMMAND__OP_ADD_SIGNING_KEY: {
		const Opampd__V1__AddSigningKey *k = cmd->add_signing_key;

		snprintf(res->name, sizeof res->name, "%s", k->key_id);
		return outcome(f, res,
			       opd_store_add_signing_key(f->store, k->key_id, k->public_key.data,
							 k->public_key.len, k->activate, actor, ts),
			       "add key");
	}
	case OPAMPD__V1__COMMAND__OP_RETIRE_SIGNING_KEY:
		snprintf(res->name, sizeof res->name, "%s", cmd->retire_signing_key->key_id);
		return outcome(f, res,
			       opd_store_retire_signing_key(
				   f->store, cmd->retire_signing_key->key_id, actor, ts),
			       "retire key");
	case OPAMPD__V1__COMMAND__OP_SET_MEMBER: {
		const Opampd__V1__SetMember *m = cmd->set_member;

		snprintf(res->name, sizeof res->name, "%llu", (unsigned long long)m->id);
		return outcome(
		    f, res,
		    opd_store_set_member(f->store, m->id, m->raft_address, m->admin_url, actor, ts),
		    "set member");
	}
	case OPAMPD__V1__COMMAND__OP_REMOVE_MEMBER:
		snprintf(res->name, sizeof res->name, "%llu",
			 (unsigned long long)cmd->remove_member->id);
		return outcome(f, res,
			       opd_store_remove_member(f->store, cmd->remove_member->id, actor, ts),
			       "remove member");
	case OPAMPD__V1__COMMAND__OP_ISSUE_CERTIFICATE:
		return apply_issue(f, cmd, res);
	case OPAMPD__V1__COMMAND__OP_REVOKE_CERTIFICATE:
		return apply_revoke(f, cmd, res);
	case OPAMPD__V1__COMMAND__OP_ADD_CA:
		return apply_add_ca(f, cmd, res);
	case OPAMPD__V1__COMMAND__OP_ACTIVATE_CA:
		snprintf(res->name, sizeof res->name, "%s", cmd->activate_ca->fingerprint);
		return outcome(
		    f, res,
		    opd_store_activate_ca(f->store, cmd->activate_ca->fingerprint, actor, ts),
		    "activate CA");
	case OPAMPD__V1__COMMAND__OP_RETIRE_CA:
		snprintf(res->name, sizeof res->name, "%s", cmd->retire_ca->fingerprint);
		return outcome(
		    f, res, opd_store_retire_ca(f->store, cmd->retire_ca->fingerprint, actor, ts),
		    "retire CA");
	case OPAMPD__V1__COMMAND__OP_START_ROTATION:
		return apply_rotation(f, cmd, res);
	default:
		set_message(res, OPD_APPLY_INVALID, "no operation");
		return true;
	}
}

static bool changes_state(const struct opd_apply_result *res)
{
	if (res->status != OPD_APPLY_OK)
		return false;
	return res->op != OPAMPD__V1__COMMAND__OP_PUT_VERSION || res->created;
}

static const char *status_name(enum opd_apply_status s)
{
	switch (s) {
	case OPD_APPLY_OK:
		return "ok";
	case OPD_APPLY_DUPLICATE:
		return "duplicate";
	case OPD_APPLY_CONFLICT:
		return "conflict";
	case OPD_APPLY_NOT_FOUND:
		return "not found";
	case OPD_APPLY_INVALID:
		return "invalid";
	}
	return "?";
}

void opd_fsm_flush(struct opd_fsm *f)
{
	if (f->batch_len == 0)
		return;
	if (opd_store_commit(f->store) != 0) {
		opd_store_rollback(f->store);
		fatal("committing %u applied entries: %s", f->batch_len,
		      opd_store_errmsg(f->store));
	}
	f->batch_len = 0;
}

static uint64_t clamp_u64(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void opd_fsm_snapshot_policy(const struct opd_fsm *f, unsigned *threshold, unsigned *trailing)
{
	const uint64_t mib = 1024 * 1024;
	uint64_t mean = f->applied_entries ? f->applied_bytes / f->applied_entries : 0;
	uint64_t budget =
	    clamp_u64(f->snapshot_bytes, OPD_FSM_SNAPSHOT_MIN_BYTES, OPD_FSM_SNAPSHOT_MAX_BYTES);

	if (mean == 0)
		mean = 4096; /* nothing applied yet: a small configuration */
	*threshold = (unsigned)clamp_u64(budget / mean, OPD_FSM_SNAPSHOT_MIN_ENTRIES,
					 OPD_FSM_SNAPSHOT_MAX_ENTRIES);
	/* Never below 1024 (raft.md §6 #3: followers should rarely need a snapshot). */
	*trailing = (unsigned)clamp_u64(32 * mib / mean, 1024, 8192);
}

/* A local fault inside apply: a replica that skips or half-applies an entry diverges. */
static void __attribute__((noreturn)) die(struct opd_fsm *f, uint64_t index, const char *what)
{
	opd_store_rollback(f->store);
	fatal("applying entry %llu: %s: %s", (unsigned long long)index, what,
	      f->errmsg[0] ? f->errmsg : opd_store_errmsg(f->store));
}

/*
 * Everything inside one transaction with the applied index: a crash before
 * COMMIT replays the entry, a crash after it skips the entry on replay. The
 * transaction may hold the entries before this one too (group commit).
 */
static void apply_entry(struct opd_fsm *f, uint64_t index, struct opd_hlc stored, const uint8_t *p,
			size_t n, struct opd_apply_result *res)
{
	struct opd_request_record rec;
	opd_cmd *cmd = NULL;
	struct opd_hlc seen;
	bool dedupe = false;

	f->errmsg[0] = '\0';
	if (f->batch_len == 0 && opd_store_begin(f->store) != 0)
		die(f, index, "begin");
	if (opd_cmd_decode(p, n, &cmd) != 0) {
		set_message(res, OPD_APPLY_INVALID, "command does not decode (%zu bytes)", n);
		goto record;
	}
	res->op = (int)cmd->op_case;
	if (cmd->request_id.len > OPD_STORE_REQUEST_ID_MAX) {
		set_message(res, OPD_APPLY_INVALID, "request id is %zu bytes", cmd->request_id.len);
		goto audit;
	}
	if (cmd->request_id.len > 0) {
		int rc = opd_store_get_request(f->store, cmd->request_id.data, cmd->request_id.len,
					       &rec);
		if (rc == 0) {
			res->status = OPD_APPLY_DUPLICATE;
			res->op = rec.op;
			res->version = rec.version;
			snprintf(res->name, sizeof res->name, "%s", rec.name);
			snprintf(res->message, sizeof res->message, "first applied with status %s",
				 status_name((enum opd_apply_status)rec.status));
			goto hlc;
		}
		if (rc != OPD_ENOTFOUND)
			die(f, index, "request lookup");
		dedupe = true;
	}
	if (!perform(f, cmd, res))
		die(f, index, "operation");
audit:
	/* Successful operations are audited by the store; refusals are recorded here. */
	if (res->status != OPD_APPLY_OK &&
	    opd_store_audit(f->store, cmd->hlc_wall_ms, cmd->actor, "refused", res->name,
			    res->version, res->message) != 0)
		die(f, index, "audit");
	/*
	 * Only what was applied is remembered: a refusal wrote nothing, and a
	 * retry with the same request id (after a version race at a leader
	 * change, say) must get a fresh chance instead of the same refusal.
	 */
	if (dedupe && res->status == OPD_APPLY_OK) {
		rec = (struct opd_request_record){.ts_ms = cmd->hlc_wall_ms,
						  .op = res->op,
						  .version = res->version,
						  .status = (int)res->status};
		snprintf(rec.name, sizeof rec.name, "%s", res->name);
		if (opd_store_put_request(f->store, cmd->request_id.data, cmd->request_id.len,
					  &rec) != 0)
			die(f, index, "request record");
	}
hlc:
	/*
	 * The stored HLC is computed from the stored one, not from f->hlc, which
	 * the leader may also advance when it stamps new commands: every replica
	 * must store the same value.
	 */
	seen = (struct opd_hlc){.wall_ms = cmd->hlc_wall_ms, .logical = cmd->hlc_logical};
	opd_hlc_observe(&stored, seen);
	opd_hlc_observe(&f->hlc, seen);
record:
	if (opd_store_set_applied(f->store, index, stored.wall_ms, stored.logical) != 0)
		die(f, index, "applied index");
	if (++f->batch_len >= f->batch_max)
		opd_fsm_flush(f);
	opd_cmd_free(cmd);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct opd_fsm *f = fsm->data;
	struct opd_hlc stored;
	uint64_t last = applied(f, &stored);
	uint64_t index = f->next_index ? f->next_index(f->index_data) : last + 1;
	struct opd_apply_result *res;

	if (index <= last) {
		/* Already in the store (a replay after restart): changing nothing is the point. */
		*result = (void *)opd_fsm_result(f, index);
		return 0;
	}
	f->applied_bytes += buf->len;
	f->applied_entries++;
	res = slot(f, index);
	*res = (struct opd_apply_result){.index = index, .status = OPD_APPLY_OK};
	apply_entry(f, index, stored, buf->base, buf->len, res);
	if (res->status != OPD_APPLY_OK)
		log_debug("entry %llu: %s: %s", (unsigned long long)index, status_name(res->status),
			  res->message);
	if (changes_state(res)) {
		if (!is_cert_op(res->op) && f->changed != NULL)
			f->changed(f->changed_data, res);
		else if (is_cert_op(res->op) && f->certs_changed != NULL)
			f->certs_changed(f->certs_changed_data, res);
	}
	*result = res;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct opd_fsm *f = fsm->data;
	struct raft_buffer *b;
	uint64_t t0 = uv_hrtime(), t1;
	size_t len;

	if (f->snapshot != NULL)
		return RAFT_BUSY; /* raft never overlaps snapshots; be safe if it did */
	opd_fsm_flush(f);         /* the snapshot covers every applied entry */
	t1 = uv_hrtime();
	if (opd_store_serialize(f->store, &f->snapshot, &len) != 0) {
		log_error("snapshot: %s", opd_store_errmsg(f->store));
		return RAFT_IOERR; /* skipped; raft tries again later */
	}
	b = raft_malloc(sizeof *b);
	if (b == NULL) {
		opd_store_image_free(f->store, f->snapshot);
		f->snapshot = NULL;
		return RAFT_NOMEM;
	}
	/*
	 * The threadpool writes this buffer while the loop applies more entries:
	 * it is a private copy of the database, so later writes do not touch it.
	 */
	b->base = f->snapshot;
	b->len = len;
	f->snapshot_bytes = len;
	log_info("snapshot: %zu KiB; commit %.1f ms, image %.1f ms", len >> 10,
		 (double)(t1 - t0) / 1e6, (double)(uv_hrtime() - t1) / 1e6);
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

/* With snapshot_finalize set raft frees nothing: both the array and the bytes are ours. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct opd_fsm *f = fsm->data;

	opd_store_image_free(f->store, f->snapshot);
	f->snapshot = NULL;
	raft_free(*bufs);
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int load_position(struct opd_fsm *f)
{
	uint64_t index, wall;
	uint32_t logical;
	int rc;

	if ((rc = opd_store_get_applied(f->store, &index, &wall, &logical)) != 0) {
		opd_errmsg_printf(f->errmsg, "%s", opd_store_errmsg(f->store));
		return rc;
	}
	f->hlc = (struct opd_hlc){.wall_ms = wall, .logical = logical};
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct opd_fsm *f = fsm->data;
	int rc;

	opd_fsm_flush(f); /* restore needs no transaction open; the store is kept if it fails */
	rc = opd_store_restore(f->store, buf->base, buf->len);
	if (rc != 0) {
		/* The store is unchanged; raft keeps the buffer. */
		log_error("restore: %s", opd_store_errmsg(f->store));
		return rc == OPD_EINVAL ? RAFT_MALFORMED : RAFT_IOERR;
	}
	f->snapshot_bytes = buf->len;
	raft_free(buf->base);
	/* Results of entries the snapshot replaced describe a history this store no longer has. */
	memset(f->results, 0, sizeof f->results);
	if (load_position(f) != 0)
		fatal("restore: reading the applied index: %s", f->errmsg);
	/* Everything may have changed: whoever serves the store reloads it (NULL: all of it). */
	if (f->changed != NULL)
		f->changed(f->changed_data, NULL);
	if (f->certs_changed != NULL)
		f->certs_changed(f->certs_changed_data, NULL);
	return 0;
}

int opd_fsm_init(struct opd_fsm *f, struct opd_store *store)
{
	int rc;

	memset(f, 0, sizeof *f);
	f->store = store;
	f->raft = (struct raft_fsm){
	    .version = 2,
	    .data = f,
	    .apply = fsm_apply,
	    .snapshot = fsm_snapshot,
	    .restore = fsm_restore,
	    .snapshot_finalize = fsm_snapshot_finalize,
	};
	if ((rc = load_position(f)) != 0)
		return rc;
	return 0;
}

void opd_fsm_fini(struct opd_fsm *f)
{
	opd_fsm_flush(f);
	opd_store_image_free(f->store, f->snapshot);
	f->snapshot = NULL;
}

int opd_apply_status_code(enum opd_apply_status status)
{
	switch (status) {
	case OPD_APPLY_OK:
	case OPD_APPLY_DUPLICATE:
		return 0;
	case OPD_APPLY_CONFLICT:
		return OPD_ECONFLICT;
	case OPD_APPLY_NOT_FOUND:
		return OPD_ENOTFOUND;
	case OPD_APPLY_INVALID:
		break;
	}
	return OPD_EINVAL;
}
