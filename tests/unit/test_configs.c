/* The configuration service: publish, desired-config selection, rollback, delete. */
#include "configs.h"
#include "harness.h"
#include "opamp/v1/opamp.pb-c.h"
#include "registry.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

struct fixture {
	struct opd_fake_clock clock;
	struct opd_configs configs;
	struct opd_test_signer key;
	int changes;
};

/* Without a node every write completes before the call returns: capture its result. */
static void capture(void *data, const struct opd_write_result *res)
{
	*(struct opd_write_result *)data = *res;
}

static void on_changed(void *data)
{
	((struct fixture *)data)->changes++;
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof *f);

	opd_fake_clock_init(&f->clock, 1000);
	assert_int_equal(opd_configs_open(&f->configs, ":memory:", &f->clock.clock), 0);
	assert_int_equal(opd_test_signer_init(&f->key, &f->configs), 0);
	f->configs.changed = on_changed;
	f->configs.changed_data = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	opd_configs_close(&f->configs);
	opd_test_signer_fini(&f->key);
	test_free(f);
	return 0;
}

/* Publish a one-file configuration; selector given as "k=v" strings. */
static int publish(struct fixture *f, const char *name, int64_t priority, const char *body,
		   const char *sel_key, const char *sel_value, struct opd_put_result *res)
{
	struct opd_kvs sel;
	struct opd_files files;
	struct opd_write_result wr = {.status = 12345};
	int rc;

	opd_kvs_init(&sel);
	if (sel_key)
		opd_kvs_add(&sel, sel_key, sel_value);
	opd_files_init(&files);
	opd_files_add(&files, "collector.yaml", "text/yaml", body, strlen(body));
	struct opd_publish p = {name, &sel, priority, &files, "msg", "test"};
	rc = opd_configs_publish(&f->configs, &p, NULL, capture, &wr);
	assert_int_equal(rc, 0);
	assert_int_not_equal(wr.status, 12345); /* answered before returning */
	rc = wr.status;
	res->version = wr.version;
	res->created = wr.created;
	opd_kvs_fini(&sel);
	opd_files_fini(&files);
	return rc;
}

static int rollback(struct fixture *f, const char *name, uint64_t version)
{
	struct opd_write_result wr = {.status = 12345};

	assert_int_equal(
	    opd_configs_rollback(&f->configs, name, version, "test", NULL, capture, &wr), 0);
	return wr.status;
}

static int delete (struct fixture *f, const char *name)
{
	struct opd_write_result wr = {.status = 12345};

	assert_int_equal(opd_configs_delete(&f->configs, name, "test", NULL, capture, &wr), 0);
	return wr.status;
}

static void make_agent(struct opd_agent *a, const char *service, const char *env)
{
	memset(a, 0, sizeof *a);
	opd_kvs_init(&a->ident);
	opd_kvs_init(&a->nonident);
	opd_kvs_add(&a->ident, "service.name", service);
	opd_kvs_add(&a->nonident, "env", env);
}

static void free_agent(struct opd_agent *a)
{
	opd_kvs_fini(&a->ident);
	opd_kvs_fini(&a->nonident);
}

static void test_desired_by_priority_then_name(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;
	struct opd_desired d;
	struct opd_agent prod, dev;

	make_agent(&prod, "gw", "prod");
	make_agent(&dev, "gw", "dev");
	assert_int_equal(opd_configs_desired(&f->configs, &prod, &d), OPD_ENOTFOUND);

	assert_int_equal(publish(f, "base", 0, "a: 1\n", NULL, NULL, &res), 0);
	assert_int_equal(res.version, 1);
	assert_int_equal(opd_configs_desired(&f->configs, &prod, &d), 0);
	assert_string_equal(d.name, "base");

	assert_int_equal(publish(f, "prod", 10, "a: 2\n", "env", "prod", &res), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &prod, &d), 0);
	assert_string_equal(d.name, "prod");
	assert_int_equal(opd_configs_desired(&f->configs, &dev, &d), 0);
	assert_string_equal(d.name, "base");

	/* Same priority as "base": the name breaks the tie ("aaa" < "base"). */
	assert_int_equal(publish(f, "aaa", 0, "a: 3\n", "service.name", "gw", &res), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &dev, &d), 0);
	assert_string_equal(d.name, "aaa");
	assert_int_equal(f->changes, 3);
	free_agent(&prod);
	free_agent(&dev);
}

static void test_rollback_and_delete_change_desired(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result r1, r2;
	struct opd_desired d;
	struct opd_agent a;
	uint8_t h1[OPD_CONFIG_HASH_LEN];

	make_agent(&a, "gw", "prod");
	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &r1), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	memcpy(h1, d.hash, sizeof h1);
	assert_int_equal(publish(f, "c", 0, "v: 2\n", NULL, NULL, &r2), 0);
	assert_int_equal(r2.version, 2);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	assert_int_equal(d.version, 2);
	assert_memory_not_equal(d.hash, h1, sizeof h1);

	assert_int_equal(rollback(f, "c", 1), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	assert_int_equal(d.version, 1);
	assert_memory_equal(d.hash, h1, sizeof h1);
	assert_int_equal(rollback(f, "c", 9), OPD_ENOTFOUND);

	assert_int_equal(delete (f, "c"), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), OPD_ENOTFOUND);
	assert_int_equal(delete (f, "c"), OPD_ENOTFOUND);
	free_agent(&a);
}

/* The publishing node's limit travels in the command: the store keeps the newest two. */
static void test_history_limit_in_the_command(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result r;
	struct opd_desired d;
	struct opd_agent a;

	f->configs.history_limit = 2;
	make_agent(&a, "gw", "prod");
	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &r), 0);
	assert_int_equal(publish(f, "c", 0, "v: 2\n", NULL, NULL, &r), 0);
	assert_int_equal(rollback(f, "c", 1), 0); /* still kept: two versions */
	assert_int_equal(publish(f, "c", 0, "v: 3\n", NULL, NULL, &r), 0);
	assert_int_equal(r.version, 3);
	assert_int_equal(rollback(f, "c", 1), OPD_ENOTFOUND);
	assert_int_equal(rollback(f, "c", 2), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	assert_int_equal(d.version, 2);
	free_agent(&a);
}

static void test_unchanged_publish_is_not_a_change(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;

	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &res), 0);
	assert_true(res.created);
	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &res), 0);
	assert_false(res.created);
	assert_int_equal(res.version, 1);
	assert_int_equal(f->changes, 1);
}

static void test_invalid_input_stores_nothing(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;
	struct opd_config_info info;

	assert_int_equal(publish(f, "c", 0, "a: [1, 2\n", NULL, NULL, &res), OPD_EINVAL);
	assert_int_equal(publish(f, "../etc", 0, "a: 1\n", NULL, NULL, &res), OPD_EINVAL);
	assert_int_equal(opd_store_get_config(&f->configs.store, "c", &info), OPD_ENOTFOUND);
	assert_int_equal(f->changes, 0);
}

/* The packed AgentConfigMap is what an agent receives: it must decode back to the files. */
static void test_packed_config_decodes(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;
	struct opd_desired d;
	struct opd_agent a;
	Opamp__Proto__V1__AgentConfigMap *m;

	make_agent(&a, "gw", "prod");
	assert_int_equal(publish(f, "c", 0, "receivers: {}\n", NULL, NULL, &res), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	m = opamp__proto__v1__agent_config_map__unpack(NULL, d.config_len, d.config_pb);
	assert_non_null(m);
	assert_int_equal(m->n_config_map, 1);
	assert_string_equal(m->config_map[0]->key, "collector.yaml");
	assert_string_equal(m->config_map[0]->value->content_type, "text/yaml");
	assert_int_equal(m->config_map[0]->value->body.len, strlen("receivers: {}\n"));
	opamp__proto__v1__agent_config_map__free_unpacked(m, NULL);
	free_agent(&a);
}

/*
 * An applied change is loaded when first needed: three versions of "c" and one
 * of "d" leave two stale names, and the desired configuration is the newest.
 */
static void test_changes_load_when_needed(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;
	struct opd_desired d;
	struct opd_agent a;

	make_agent(&a, "gw", "prod");
	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &res), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	assert_int_equal(d.version, 1);
	assert_int_equal(f->configs.stale.n, 0);
	assert_int_equal(publish(f, "c", 0, "v: 2\n", NULL, NULL, &res), 0);
	assert_int_equal(publish(f, "d", -1, "v: 1\n", NULL, NULL, &res), 0);
	assert_int_equal(publish(f, "c", 0, "v: 3\n", NULL, NULL, &res), 0);
	assert_int_equal(f->configs.stale.n, 2);
	assert_int_equal(f->configs.n_active, 1); /* not loaded yet */
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	assert_string_equal(d.name, "c");
	assert_int_equal(d.version, 3);
	assert_int_equal(f->configs.stale.n, 0);
	assert_int_equal(f->configs.n_active, 2);
	free_agent(&a);
}

/* A row changed behind the state machine's back is detected and never offered. */
static void test_tampered_version_not_served(void **state)
{
	struct fixture *f = *state;
	struct opd_put_result res;
	struct opd_desired d;
	struct opd_agent a;

	make_agent(&a, "gw", "prod");
	assert_int_equal(publish(f, "c", 0, "v: 1\n", NULL, NULL, &res), 0);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), 0);
	opd_configs_settle(&f->configs);
	assert_int_equal(f->configs.unverified, 0);
	assert_int_equal(sqlite3_exec(f->configs.store.db,
				      "UPDATE config_files SET body = CAST('v: 666' AS BLOB)", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	opd_configs_reload(&f->configs);
	assert_int_equal(opd_configs_desired(&f->configs, &a, &d), OPD_ENOTFOUND);
	assert_true(f->configs.unverified > 0);
	free_agent(&a);
}

/* The same request id twice: one version, the second answer is the first's. */
static void test_request_id_is_idempotent(void **state)
{
	struct fixture *f = *state;
	struct opd_kvs sel;
	struct opd_files files;
	struct opd_write_result w1 = {0}, w2 = {0};
	const uint8_t id[OPD_REQUEST_ID_LEN] = {1, 2, 3};
	struct opd_config_info info;

	opd_kvs_init(&sel);
	opd_files_init(&files);
	opd_files_add(&files, "a.yaml", "text/yaml", "a: 1\n", 5);
	struct opd_publish p = {"c", &sel, 0, &files, "", "test"};
	assert_int_equal(opd_configs_publish(&f->configs, &p, id, capture, &w1), 0);
	opd_files_fini(&files);
	opd_files_init(&files);
	opd_files_add(&files, "a.yaml", "text/yaml", "a: 2\n", 5);
	assert_int_equal(opd_configs_publish(&f->configs, &p, id, capture, &w2), 0);
	assert_int_equal(w1.status, 0);
	assert_int_equal(w2.status, 0);
	assert_true(w2.duplicate);
	assert_int_equal(w2.version, w1.version);
	assert_memory_equal(w2.hash, w1.hash, OPD_CONFIG_HASH_LEN);
	assert_int_equal(opd_store_get_config(&f->configs.store, "c", &info), 0);
	assert_int_equal(info.latest_version, 1);
	opd_config_info_fini(&info);
	opd_kvs_fini(&sel);
	opd_files_fini(&files);
}

/* What the session does for an agent whose cache is stale (recompute_desired). */
static void refresh_desired(struct opd_registry *r, struct opd_configs *c, struct opd_agent *a)
{
	struct opd_desired d = {0};

	if (a->desired_gen == r->config_gen)
		return;
	free(a->desired_name);
	a->desired_name = NULL;
	a->desired_gen = r->config_gen;
	if (opd_configs_desired(c, a, &d) != 0)
		return;
	a->desired_name = strdup(d.name);
	a->desired_version = d.version;
	a->desired_priority = d.priority;
}

static unsigned next_rand(unsigned *x)
{
	*x = *x * 1103515245u + 12345u;
	return (*x >> 16) & 0x7fff;
}

/*
 * Random batches of publishes (new versions, other selectors and priorities)
 * and deletes over a few names; after each batch the registry recomputes only
 * the agents the changes affect. Every agent's cached desired configuration
 * must be what a full scan says, and most agents must have been spared.
 */
static void test_affected_agents_alone_recompute(void **state)
{
	struct fixture *f = *state;
	static const char *names[] = {"a", "b", "c", "d", "e"};
	static const char *keys[] = {NULL, "env", "env", "service.name", "service.name"};
	static const char *values[] = {NULL, "prod", "dev", "x", "y"};
	static const char *services[] = {"x", "y", "z"}, *envs[] = {"prod", "dev", "qa"};
	struct opd_registry r;
	struct opd_registry_settings rs;
	struct opd_registry_ops ops = {.desired = opd_configs_desired,
				       .data = &f->configs,
				       .affects = opd_configs_affects};
	struct opd_agent *ag[10];
	unsigned x = 7, spared = 0, recomputed = 0;

	opd_registry_settings_default(&rs);
	opd_registry_init(&r, &rs, &ops);
	for (int i = 0; i < 10; i++) {
		uint8_t uid[OPD_UID_LEN] = {(uint8_t)(i + 1)};

		ag[i] = opd_registry_get(&r, uid, NULL);
		assert_non_null(ag[i]);
		if (i < 9) { /* the tenth has no attributes */
			opd_kvs_add(&ag[i]->ident, "service.name", services[i % 3]);
			opd_kvs_add(&ag[i]->nonident, "env", envs[i / 3]);
		}
		refresh_desired(&r, &f->configs, ag[i]);
	}
	for (int round = 0; round < 300; round++) {
		unsigned batch = 1 + next_rand(&x) % 3;
		uint64_t before = r.config_gen;

		for (unsigned b = 0; b < batch; b++) {
			const char *name = names[next_rand(&x) % 5];
			unsigned sel = next_rand(&x) % 5;
			char body[32];
			struct opd_put_result res;

			if (next_rand(&x) % 6 == 0) {
				(void)delete (f, name);
				continue;
			}
			snprintf(body, sizeof body, "# %u\n", next_rand(&x) % 4);
			(void)publish(f, name, (int64_t)(next_rand(&x) % 3), body, keys[sel],
				      values[sel], &res);
		}
		opd_registry_configs_changed(&r);
		opd_configs_touched_clear(&f->configs);
		for (int i = 0; i < 10; i++) {
			struct opd_desired want = {0};
			int found;

			if (ag[i]->desired_gen == r.config_gen && r.config_gen != before)
				spared++;
			else
				recomputed++;
			refresh_desired(&r, &f->configs, ag[i]);
			found = opd_configs_desired(&f->configs, ag[i], &want) == 0;
			if (!found) {
				assert_null(ag[i]->desired_name);
				continue;
			}
			assert_non_null(ag[i]->desired_name);
			assert_string_equal(ag[i]->desired_name, want.name);
			assert_int_equal(ag[i]->desired_version, want.version);
		}
	}
	/* This seed spares 1623 of 3000; checking every agent against every change spares
	 * 1069, recomputing everyone none. */
	assert_true(spared > 1400 && recomputed > 300);
	for (int i = 0; i < 10; i++) {
		free(ag[i]->desired_name);
		ag[i]->desired_name = NULL;
	}
	opd_registry_fini(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_desired_by_priority_then_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rollback_and_delete_change_desired, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_history_limit_in_the_command, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unchanged_publish_is_not_a_change, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_input_stores_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_packed_config_decodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tampered_version_not_served, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_changes_load_when_needed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_id_is_idempotent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_affected_agents_alone_recompute, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
