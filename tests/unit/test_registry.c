/* The agent registry: hashing, rekeying, limits, health, HTTP expiry. */
#include "err.h"
#include "mem.h"
#include "registry.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000ull

static void uid_of(uint32_t n, uint8_t uid[OPD_UID_LEN])
{
	memset(uid, 0xa5, OPD_UID_LEN);
	uid[12] = (uint8_t)(n >> 24);
	uid[13] = (uint8_t)(n >> 16);
	uid[14] = (uint8_t)(n >> 8);
	uid[15] = (uint8_t)n;
}

static void test_get_find_grow(void **state)
{
	struct opd_registry r;
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a, *first;
	int created;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	uid_of(0, uid);
	assert_null(opd_registry_find(&r, uid));
	first = opd_registry_get(&r, uid, &created);
	assert_non_null(first);
	assert_int_equal(created, 1);
	assert_int_equal(first->healthy, 1);
	assert_ptr_equal(opd_registry_get(&r, uid, &created), first);
	assert_int_equal(created, 0);

	/* Far more agents than the initial buckets: the table grows and keeps every agent. */
	for (uint32_t i = 1; i < 5000; i++) {
		uid_of(i, uid);
		a = opd_registry_get(&r, uid, &created);
		assert_int_equal(created, 1);
	}
	assert_int_equal(r.n_agents, 5000);
	assert_true(r.n_buckets >= 5000);
	for (uint32_t i = 0; i < 5000; i++) {
		uid_of(i, uid);
		a = opd_registry_find(&r, uid);
		assert_non_null(a);
		assert_memory_equal(a->uid, uid, OPD_UID_LEN);
	}
	/* Insertion order is kept in the list. */
	assert_ptr_equal(opd_container_of(r.agents.next, struct opd_agent, link), first);
	opd_registry_fini(&r);
}

static void test_max_agents(void **state)
{
	struct opd_registry_settings s;
	struct opd_registry r;
	uint8_t uid[OPD_UID_LEN];
	int created = 7;

	(void)state;
	opd_registry_settings_default(&s);
	s.max_agents = 2;
	opd_registry_init(&r, &s, NULL);
	uid_of(1, uid);
	assert_non_null(opd_registry_get(&r, uid, &created));
	uid_of(2, uid);
	assert_non_null(opd_registry_get(&r, uid, &created));
	uid_of(3, uid);
	assert_null(opd_registry_get(&r, uid, &created));
	assert_int_equal(created, 0);
	/* Known agents are still found at the limit. */
	uid_of(2, uid);
	assert_non_null(opd_registry_get(&r, uid, &created));
	opd_registry_fini(&r);
}

static void test_rekey_remove(void **state)
{
	struct opd_registry r;
	uint8_t u1[OPD_UID_LEN], u2[OPD_UID_LEN], u3[OPD_UID_LEN];
	struct opd_agent *a, *b;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	uid_of(1, u1);
	uid_of(2, u2);
	uid_of(3, u3);
	a = opd_registry_get(&r, u1, NULL);
	b = opd_registry_get(&r, u2, NULL);
	assert_int_equal(opd_registry_rekey(&r, a, u2), OPD_ECONFLICT);
	assert_memory_equal(a->uid, u1, OPD_UID_LEN);
	assert_int_equal(opd_registry_rekey(&r, a, u3), 0);
	assert_null(opd_registry_find(&r, u1));
	assert_ptr_equal(opd_registry_find(&r, u3), a);
	assert_ptr_equal(opd_registry_find(&r, u2), b);

	/* Remove frees everything the agent owns (ASan checks). */
	opd_kvs_add(&b->ident, "service.name", "x");
	opd_kvs_add(&b->nonident, "os.type", "linux");
	b->health_pb = opd_xmalloc(8);
	b->rc_error = opd_xstrdup("boom");
	b->custom_caps = opd_xcalloc(1, sizeof *b->custom_caps);
	b->custom_caps[0] = opd_xstrdup("com.example/v1");
	b->n_custom_caps = 1;
	b->desired_name = opd_xstrdup("base");
	b->connected = 1;
	r.n_connected = 1;
	opd_registry_remove(&r, b);
	assert_null(opd_registry_find(&r, u2));
	assert_int_equal(r.n_agents, 1);
	assert_int_equal(r.n_connected, 0);

	/* fini frees the remaining agents and what they own. */
	a->rc_error = opd_xstrdup("left for fini");
	opd_registry_fini(&r);
}

static struct opd_agent *beating(struct opd_registry *r, uint32_t n, uint64_t caps,
				 enum opd_transport t, uint64_t *now, int beats, uint64_t gap)
{
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a;

	uid_of(n, uid);
	a = opd_registry_get(r, uid, NULL);
	a->capabilities = caps;
	a->transport = t;
	a->connected = 1;
	r->n_connected++;
	for (int i = 0; i < beats; i++) {
		*now += gap;
		opd_phi_heartbeat(&a->phi, *now);
		a->last_seen_ms = *now;
	}
	return a;
}

static void test_expected_interval(void **state)
{
	struct opd_registry r;
	struct opd_agent *offered, *observed;
	uint64_t now = T0;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	r.settings.heartbeat_interval_s = 15;
	offered = beating(&r, 1, 0x2101, OPD_TRANSPORT_WS, &now, 1, 0);
	assert_int_equal(opd_registry_expected_interval_ms(&r, offered), 15000);
	/* Without AcceptsOpAMPConnectionSettings our offer is not taken: observe, prior 30 s. */
	now = T0;
	observed = beating(&r, 2, 0x2001, OPD_TRANSPORT_HTTP, &now, 1, 0);
	assert_int_equal(opd_registry_expected_interval_ms(&r, observed), 30000);
	for (int i = 0; i < 5; i++) {
		now += 5000;
		opd_phi_heartbeat(&observed->phi, now);
	}
	assert_int_equal(opd_registry_expected_interval_ms(&r, observed), 5000);
	opd_registry_fini(&r);
}

static void test_health(void **state)
{
	struct opd_registry r;
	struct opd_agent *a, *quiet;
	uint64_t now = T0;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	a = beating(&r, 1, 0x2101, OPD_TRANSPORT_WS, &now, 6, 30000);
	assert_int_equal(opd_registry_health(&r, a, now + 1000), OPD_HEALTH_HEALTHY);
	assert_int_equal(opd_registry_health(&r, a, now + 31000), OPD_HEALTH_HEALTHY);
	a->healthy = 0;
	assert_int_equal(opd_registry_health(&r, a, now + 31000), OPD_HEALTH_DEGRADED);
	a->healthy = 1;
	/* phi crosses 8 a little after 69 s and 16 well after. */
	assert_int_equal(opd_registry_health(&r, a, now + 80000), OPD_HEALTH_SUSPECT);
	assert_int_equal(opd_registry_health(&r, a, now + 200000), OPD_HEALTH_DOWN);
	a->connected = 0;
	assert_int_equal(opd_registry_health(&r, a, now + 1000), OPD_HEALTH_DOWN);

	/* A WebSocket agent without ReportsHeartbeat may stay silent on an open connection. */
	now = T0;
	quiet = beating(&r, 2, 0x0003, OPD_TRANSPORT_WS, &now, 1, 1000);
	assert_int_equal(opd_registry_health(&r, quiet, now + 3600000), OPD_HEALTH_HEALTHY);
	quiet->transport = OPD_TRANSPORT_HTTP;
	assert_int_equal(opd_registry_health(&r, quiet, now + 3600000), OPD_HEALTH_DOWN);
	opd_registry_fini(&r);
}

static void test_sweep(void **state)
{
	struct opd_registry r;
	struct opd_agent *http, *ws;
	uint64_t now = T0, t_http, t_ws;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	http = beating(&r, 1, 0x2001, OPD_TRANSPORT_HTTP, &now, 1, 0);
	t_http = now;
	ws = beating(&r, 2, 0x2001, OPD_TRANSPORT_WS, &now, 1, 0);
	t_ws = now;
	http->dirty = ws->dirty = 0;
	assert_int_equal(r.n_connected, 2);
	/* 3 x 30 s prior: not yet at 90 s, gone after. */
	assert_int_equal(opd_registry_sweep(&r, t_http + 90000), 0);
	assert_int_equal(http->connected, 1);
	assert_int_equal(opd_registry_sweep(&r, t_http + 90001), 1);
	assert_int_equal(http->connected, 0);
	assert_int_equal(http->dirty, 1);
	assert_int_equal(r.n_connected, 1);
	/* WebSocket agents are ended by their connection, never by the sweep. */
	assert_int_equal(opd_registry_sweep(&r, t_ws + 10000000), 0);
	assert_int_equal(ws->connected, 1);
	assert_int_equal(ws->dirty, 0);
	opd_registry_fini(&r);
}

static void test_configs_changed(void **state)
{
	struct opd_registry r;
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a;

	(void)state;
	opd_registry_init(&r, NULL, NULL);
	uid_of(1, uid);
	a = opd_registry_get(&r, uid, NULL);
	/* A new agent's cached desired config is stale from the start. */
	assert_true(a->desired_gen != r.config_gen);
	a->desired_gen = r.config_gen;
	opd_registry_configs_changed(&r);
	assert_true(a->desired_gen != r.config_gen);
	opd_registry_fini(&r);
	opd_registry_fini(&r); /* twice is harmless */
}

/* ops.affects says agent 2 alone is concerned. */
static int only_second(void *data, const struct opd_agent *a)
{
	(void)data;
	return a->uid[0] == 2;
}

static void count_moved(void *data, struct opd_agent *a)
{
	(void)a;
	++*(int *)data;
}

/*
 * With ops.affects, a change makes stale (and hands to moved) only the agents
 * with a current desired configuration that it concerns; the others stay
 * current, and an agent stale before stays stale without being handed over.
 */
static void test_configs_changed_affected_only(void **state)
{
	struct opd_registry_ops ops = {.affects = only_second};
	struct opd_registry r;
	struct opd_agent *a[3];
	int moved = 0;

	(void)state;
	opd_registry_init(&r, NULL, &ops);
	for (int i = 0; i < 3; i++) {
		uint8_t uid[OPD_UID_LEN] = {(uint8_t)(i + 1)};

		a[i] = opd_registry_get(&r, uid, NULL);
	}
	a[0]->desired_gen = a[1]->desired_gen = r.config_gen; /* a[2] never computed */
	opd_registry_configs_changed_each(&r, count_moved, &moved);
	assert_int_equal(moved, 1);
	assert_true(a[0]->desired_gen == r.config_gen);
	assert_true(a[1]->desired_gen != r.config_gen);
	assert_true(a[2]->desired_gen != r.config_gen);
	opd_registry_fini(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_find_grow),   cmocka_unit_test(test_max_agents),
	    cmocka_unit_test(test_rekey_remove),    cmocka_unit_test(test_expected_interval),
	    cmocka_unit_test(test_health),          cmocka_unit_test(test_sweep),
	    cmocka_unit_test(test_configs_changed),
	    cmocka_unit_test(test_configs_changed_affected_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
