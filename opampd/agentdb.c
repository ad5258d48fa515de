#include "agentdb.h"

#include "mem.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

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
	sqlite3_close(adb->db);
	adb->db = NULL;
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
		n++;
	}
	sqlite3_finalize(st);
	return n;
fail:
	opd_errmsg_printf(adb->errmsg, "load agents: %s", sqlite3_errmsg(adb->db));
	sqlite3_finalize(st);
	return OPD_ESTORE;
}

int opd_agentdb_flush(struct opd_agentdb *adb, struct opd_registry *r)
{
	static const char sql[] =
	    "INSERT OR REPLACE INTO agents (uid, ident, nonident, capabilities, transport,"
	    " last_seq, last_seen_wall_ms, health, healthy, effective_hash, rc_status, rc_hash,"
	    " rc_error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)";
	sqlite3_stmt *st = NULL;
	struct opd_list *pos;
	int n = 0;

	if (sqlite3_exec(adb->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(adb->db, sql, -1, &st, NULL) != SQLITE_OK)
		goto rollback;
	opd_list_foreach(pos, &r->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
		char *ident, *nonident;
		int rc;

		if (!a->dirty)
			continue;
		ident = kvs_to_json(&a->ident);
		nonident = kvs_to_json(&a->nonident);
		sqlite3_bind_blob(st, 1, a->uid, OPD_UID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ident ? ident : "{}", -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, nonident ? nonident : "{}", -1, SQLITE_TRANSIENT);
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
		rc = sqlite3_step(st);
		free(ident);
		free(nonident);
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (rc != SQLITE_DONE)
			goto rollback;
		n++;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(adb->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	/* Only now, with the batch durable, are the agents clean. */
	opd_list_foreach(pos, &r->agents)
	{
		opd_container_of(pos, struct opd_agent, link)->dirty = 0;
	}
	return n;
rollback:
	opd_errmsg_printf(adb->errmsg, "persist agents: %s", sqlite3_errmsg(adb->db));
	sqlite3_finalize(st);
	sqlite3_exec(adb->db, "ROLLBACK", NULL, NULL, NULL);
	return OPD_ESTORE;
fail:
	opd_errmsg_printf(adb->errmsg, "persist agents: %s", sqlite3_errmsg(adb->db));
	return OPD_ESTORE;
}
