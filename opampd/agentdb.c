#include "agentdb.h"

#include "mem.h"

#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char upsert_sql[] =
    "INSERT OR REPLACE INTO agents (uid, ident, nonident, capabilities, transport,"
    " last_seq, last_seen_wall_ms, health, healthy, effective_hash, rc_status, rc_hash,"
    " rc_error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)";

/* Everything but the attributes; parameters numbered as in upsert_sql. */
static const char update_sql[] =
    "UPDATE agents SET capabilities = ?4, transport = ?5, last_seq = ?6,"
    " last_seen_wall_ms = ?7, health = ?8, healthy = ?9, effective_hash = ?10,"
    " rc_status = ?11, rc_hash = ?12, rc_error = ?13 WHERE uid = ?1";

static const char schema[] = "CREATE TABLE IF NOT EXISTS agents ("
			     " uid BLOB PRIMARY KEY,"
			     " ident TEXT NOT NULL,"
			     " nonident TEXT NOT NULL,"
			     " capabilities INTEGER NOT NULL,"
			     " transport INTEGER NOT NULL,"
			     " last_seq INTEGER NOT NULL,"
			     " last_seen_wall_ms INTEGER NOT NULL,"
			     " health BLOB,"
			     " healthy INTEGER NOT NULL,"
			     " effective_hash BLOB,"
			     " rc_status INTEGER NOT NULL,"
			     " rc_hash BLOB,"
			     " rc_error TEXT"
			     ") WITHOUT ROWID;";

int opd_agentdb_open(struct opd_agentdb *adb, const char *path)
{
	char *err = NULL;
	int rc;

	*adb = (struct opd_agentdb){0};
	rc = sqlite3_open_v2(path, &adb->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(adb->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
				  NULL, NULL, &err);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(adb->db, schema, NULL, NULL, &err);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(adb->db, upsert_sql, -1, SQLITE_PREPARE_PERSISTENT,
					&adb->upsert, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(adb->db, update_sql, -1, SQLITE_PREPARE_PERSISTENT,
					&adb->update, NULL);
	/* Keys the description hashes: peers choose the attributes, not the hash's seed. */
	if (rc == SQLITE_OK && getrandom(&adb->seed, sizeof adb->seed, 0) != sizeof adb->seed)
		adb->seed = (uint64_t)(uintptr_t)adb ^ 0x9e3779b97f4a7c15u;
	if (rc != SQLITE_OK) {
		opd_errmsg_printf(adb->errmsg, "open %s: %s", path, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		opd_agentdb_close(adb);
		return OPD_ESTORE;
	}
	return 0;
}

void opd_agentdb_close(struct opd_agentdb *adb)
{
	sqlite3_finalize(adb->upsert);
	sqlite3_finalize(adb->update);
	adb->upsert = adb->update = NULL;
	sqlite3_close(adb->db);
	adb->db = NULL;
	free(adb->seen);
	adb->seen = NULL;
	adb->seen_cap = adb->seen_n = 0;
	free(adb->batch);
	adb->batch = NULL;
	adb->batch_cap = 0;
}

/* ---- which description each row holds ---- */

static uint64_t mix(uint64_t h)
{
	/* splitmix64's finaliser */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9u;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebu;
	return h ^ (h >> 31);
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	/* FNV-1a from a seeded start; the length keeps field boundaries apart. */
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3u;
	return mix(h ^ n);
}

static uint64_t uid_key(const struct opd_agentdb *adb, const uint8_t *uid)
{
	uint64_t k = hash_bytes(adb->seed, uid, OPD_UID_LEN);

	return k != 0 ? k : 1;
}

static uint64_t hash_kvs(uint64_t h, const struct opd_kvs *s)
{
	h = hash_bytes(h, &s->n, sizeof s->n);
	for (size_t i = 0; i < s->n; i++) {
		h = hash_bytes(h, s->v[i].key, strlen(s->v[i].key));
		h = hash_bytes(h, s->v[i].value, strlen(s->v[i].value));
	}
	return h;
}

static uint64_t desc_hash(const struct opd_agentdb *adb, const struct opd_agent *a)
{
	uint64_t h = hash_bytes(adb->seed ^ 0x6465736372697074u, a->uid, OPD_UID_LEN);

	return hash_kvs(hash_kvs(h, &a->ident), &a->nonident);
}

static struct opd_agentdb_seen *seen_slot(const struct opd_agentdb *adb, uint64_t key)
{
	size_t mask = adb->seen_cap - 1, i = (size_t)key & mask;

	while (adb->seen[i].key != 0 && adb->seen[i].key != key)
		i = (i + 1) & mask;
	return &adb->seen[i];
}

static void seen_clear(struct opd_agentdb *adb)
{
	if (adb->seen != NULL)
		memset(adb->seen, 0, adb->seen_cap * sizeof *adb->seen);
	adb->seen_n = 0;
}

static void seen_put(struct opd_agentdb *adb, const uint8_t *uid, uint64_t desc)
{
	uint64_t key = uid_key(adb, uid);
	struct opd_agentdb_seen *e;

	/* At most half full. */
	if (2 * (adb->seen_n + 1) > adb->seen_cap) {
		struct opd_agentdb_seen *old = adb->seen;
		size_t old_cap = adb->seen_cap;

		adb->seen_cap = old_cap ? 2 * old_cap : 1024;
		adb->seen = opd_xcalloc(adb->seen_cap, sizeof *adb->seen);
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].key != 0)
				*seen_slot(adb, old[i].key) = old[i];
		free(old);
	}
	e = seen_slot(adb, key);
	if (e->key == 0)
		adb->seen_n++;
	e->key = key;
	e->desc = desc;
}

/* 1 when the agent's row holds the description it has now. */
static int seen_same(const struct opd_agentdb *adb, const struct opd_agent *a, uint64_t desc)
{
	const struct opd_agentdb_seen *e;

	if (adb->seen_n == 0)
		return 0;
	e = seen_slot(adb, uid_key(adb, a->uid));
	return e->key != 0 && e->desc == desc;
}

static char *kvs_to_json(const struct opd_kvs *s)
{
	json_t *o = json_object();
	char *text;

	for (size_t i = 0; i < s->n; i++)
		json_object_set_new(o, s->v[i].key, json_string(s->v[i].value));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return text;
}

static void kvs_from_json(struct opd_kvs *s, const char *text)
{
	json_t *o = json_loads(text, 0, NULL);
	const char *k;
	json_t *v;

	opd_kvs_init(s);
	if (o == NULL)
		return;
	json_object_foreach(o, k, v)
	{
		if (json_is_string(v))
			opd_kvs_add(s, k, json_string_value(v));
	}
	json_decref(o);
}

static void bind_hash(sqlite3_stmt *st, int col, const struct opd_hash *h)
{
	if (h->len)
		sqlite3_bind_blob(st, col, h->b, h->len, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, col);
}

static void column_hash(sqlite3_stmt *st, int col, struct opd_hash *h)
{
	int n = sqlite3_column_bytes(st, col);
	const void *p = sqlite3_column_blob(st, col);

	h->len = 0;
	if (p != NULL && n > 0 && n <= OPD_HASH_MAX) {
		memcpy(h->b, p, (size_t)n);
		h->len = (uint8_t)n;
	}
}

int opd_agentdb_load(struct opd_agentdb *adb, struct opd_registry *r)
{
	static const char sql[] =
	    "SELECT uid, ident, nonident, capabilities, transport, last_seq, last_seen_wall_ms,"
	    " health, healthy, effective_hash, rc_status, rc_hash, rc_error FROM agents";
	sqlite3_stmt *st = NULL;
	int n = 0, rc;

	if (sqlite3_prepare_v2(adb->db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct opd_agent *a;
		const void *uid = sqlite3_column_blob(st, 0);
		int created = 0;

		if (uid == NULL || sqlite3_column_bytes(st, 0) != OPD_UID_LEN)
			continue;
		a = opd_registry_get(r, uid, &created);
		if (a == NULL)
			break;
		kvs_from_json(&a->ident, (const char *)sqlite3_column_text(st, 1));
		kvs_from_json(&a->nonident, (const char *)sqlite3_column_text(st, 2));
		a->has_description = a->ident.n + a->nonident.n > 0;
		a->capabilities = (uint64_t)sqlite3_column_int64(st, 3);
		a->transport = (enum opd_transport)sqlite3_column_int(st, 4);
		a->last_seq = (uint64_t)sqlite3_column_int64(st, 5);
		/* Sequence state does not survive us: the next message asks for full state. */
		a->have_seq = 0;
		a->last_seen_wall_ms = (uint64_t)sqlite3_column_int64(st, 6);
		if (sqlite3_column_bytes(st, 7) > 0) {
			a->health_len = (size_t)sqlite3_column_bytes(st, 7);
			a->health_pb = opd_xmemdup(sqlite3_column_blob(st, 7), a->health_len);
		}
		a->healthy = sqlite3_column_int(st, 8);
		column_hash(st, 9, &a->effective_hash);
		a->has_effective = a->effective_hash.len > 0;
		a->rc_status = (enum opd_rc_status)sqlite3_column_int(st, 10);
		column_hash(st, 11, &a->rc_hash);
		if (sqlite3_column_type(st, 12) == SQLITE_TEXT)
			a->rc_error = opd_xstrdup((const char *)sqlite3_column_text(st, 12));
		a->connected = 0;
		a->dirty = 0;
		seen_put(adb, a->uid, desc_hash(adb, a));
		n++;
	}
	sqlite3_finalize(st);
	return n;
fail:
	opd_errmsg_printf(adb->errmsg, "load agents: %s", sqlite3_errmsg(adb->db));
	sqlite3_finalize(st);
	return OPD_ESTORE;
}

/* Bind the columns both statements share (all but the attributes, 2 and 3). */
static void bind_state(sqlite3_stmt *st, const struct opd_agent *a)
{
	sqlite3_bind_blob(st, 1, a->uid, OPD_UID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)a->capabilities);
	sqlite3_bind_int(st, 5, (int)a->transport);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)a->last_seq);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)a->last_seen_wall_ms);
	if (a->health_pb)
		sqlite3_bind_blob(st, 8, a->health_pb, (int)a->health_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_int(st, 9, a->healthy);
	bind_hash(st, 10, &a->effective_hash);
	sqlite3_bind_int(st, 11, (int)a->rc_status);
	bind_hash(st, 12, &a->rc_hash);
	if (a->rc_error)
		sqlite3_bind_text(st, 13, a->rc_error, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 13);
}

static int step_reset(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

/* Update the row of an agent whose attributes are as written: 1 done, 0 no row, -1 error. */
static int write_state(struct opd_agentdb *adb, const struct opd_agent *a)
{
	bind_state(adb->update, a);
	if (step_reset(adb->update) != SQLITE_DONE)
		return -1;
	return sqlite3_changes(adb->db) > 0;
}

/* Write the whole row, attributes rendered to JSON. 0 or -1. */
static int write_row(struct opd_agentdb *adb, const struct opd_agent *a)
{
	char *ident = kvs_to_json(&a->ident), *nonident = kvs_to_json(&a->nonident);
	int rc;

	bind_state(adb->upsert, a);
	sqlite3_bind_text(adb->upsert, 2, ident ? ident : "{}", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(adb->upsert, 3, nonident ? nonident : "{}", -1, SQLITE_TRANSIENT);
	rc = step_reset(adb->upsert);
	free(ident);
	free(nonident);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Collect the dirty agents into adb->batch (one walk of the registry). Returns how many. */
static size_t collect_dirty(struct opd_agentdb *adb, struct opd_registry *r)
{
	struct opd_list *pos;
	size_t n = 0;

	opd_list_foreach(pos, &r->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);

		if (!a->dirty)
			continue;
		if (n == adb->batch_cap) {
			adb->batch_cap = adb->batch_cap ? 2 * adb->batch_cap : 256;
			adb->batch = opd_xrealloc(adb->batch, adb->batch_cap * sizeof *adb->batch);
		}
		adb->batch[n++] = a;
	}
	return n;
}

static void reverse(struct opd_agent **v, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		struct opd_agent *t = v[i];
		v[i] = v[n - 1 - i];
		v[n - 1 - i] = t;
	}
}

/* v[k..n) then v[0..k), in place. */
static void rotate(struct opd_agent **v, size_t n, size_t k)
{
	reverse(v, k);
	reverse(v + k, n - k);
	reverse(v, n);
}

int opd_agentdb_flush(struct opd_agentdb *adb, struct opd_registry *r, size_t max)
{
	size_t n = collect_dirty(adb, r);

	/* Nothing changed: no transaction either. */
	if (n == 0)
		return 0;
	if (max != 0 && n > max) {
		/* This turn's share: max agents from where the last one stopped, wrapping. */
		size_t from = adb->next_turn % n;

		rotate(adb->batch, n, from);
		adb->next_turn = from + max;
		n = max;
	}
	/* Forget agents long gone (removed, re-keyed): they are re-learnt with one full write. */
	if (adb->seen_n > 2 * r->n_agents + 1024)
		seen_clear(adb);
	if (sqlite3_exec(adb->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const struct opd_agent *a = adb->batch[i];
		uint64_t desc = desc_hash(adb, a);
		int rc = 0;

		if (seen_same(adb, a, desc))
			rc = write_state(adb, a);
		if (rc == 0) {
			rc = write_row(adb, a);
			if (rc == 0)
				seen_put(adb, a->uid, desc);
		}
		if (rc < 0)
			goto rollback;
	}
	if (sqlite3_exec(adb->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	/* Only now, with the batch durable, are the agents clean. */
	for (size_t i = 0; i < n; i++)
		adb->batch[i]->dirty = 0;
	return n > (size_t)INT_MAX ? INT_MAX : (int)n;
rollback:
	opd_errmsg_printf(adb->errmsg, "persist agents: %s", sqlite3_errmsg(adb->db));
	sqlite3_exec(adb->db, "ROLLBACK", NULL, NULL, NULL);
	/* Rows written in this batch are gone again: trust none of the recorded hashes. */
	seen_clear(adb);
	return OPD_ESTORE;
fail:
	opd_errmsg_printf(adb->errmsg, "persist agents: %s", sqlite3_errmsg(adb->db));
	return OPD_ESTORE;
}
