#include "registry.h"

#include "err.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 64      /* a power of two: the index is a mask */
#define PRIOR_INTERVAL_MS 30000 /* the spec's default heartbeat and poll interval */

#define CAP_ACCEPTS_OPAMP_SETTINGS 0x100u
#define CAP_REPORTS_HEARTBEAT 0x2000u

void opd_registry_settings_default(struct opd_registry_settings *s)
{
	*s = (struct opd_registry_settings){
	    .heartbeat_interval_s = 30,
	    .http_timeout_factor = 3,
	    .phi_suspect = 8,
	    .phi_down = 16,
	    .max_agents = 1000000,
	    /* AcceptsStatus | OffersRemoteConfig | AcceptsEffectiveConfig |
	       OffersConnectionSettings */
	    .capabilities = 0x1 | 0x2 | 0x4 | 0x20,
	};
}

void opd_registry_init(struct opd_registry *r, const struct opd_registry_settings *s,
		       const struct opd_registry_ops *ops)
{
	*r = (struct opd_registry){0};
	if (s != NULL)
		r->settings = *s;
	else
		opd_registry_settings_default(&r->settings);
	if (ops != NULL)
		r->ops = *ops;
	r->n_buckets = INITIAL_BUCKETS;
	r->buckets = opd_xcalloc(r->n_buckets, sizeof *r->buckets);
	opd_list_init(&r->agents);
}

static void agent_free(struct opd_agent *a)
{
	opd_kvs_fini(&a->ident);
	opd_kvs_fini(&a->nonident);
	free(a->health_pb);
	free(a->rc_error);
	for (size_t i = 0; i < a->n_custom_caps; i++)
		free(a->custom_caps[i]);
	free(a->custom_caps);
	free(a->desired_name);
	opd_agent_tls_free(a->tls);
	free(a);
}

void opd_registry_fini(struct opd_registry *r)
{
	struct opd_list *pos, *tmp;

	if (r->buckets == NULL && r->agents.next == NULL)
		return; /* zeroed, never initialised */
	if (r->agents.next != NULL) {
		opd_list_foreach_safe(pos, tmp, &r->agents)
		{
			agent_free(opd_container_of(pos, struct opd_agent, link));
		}
	}
	free(r->buckets);
	*r = (struct opd_registry){0};
}

/*
 * FNV-1a over the 16 bytes. Instance uids are chosen by agents, so a hostile
 * agent could aim at one bucket; it would only slow down its own lookups
 * chain, bounded by max_agents, and uids of real fleets are random (UUIDv4/v7).
 */
static size_t uid_hash(const uint8_t uid[OPD_UID_LEN])
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < OPD_UID_LEN; i++) {
		h ^= uid[i];
		h *= 0x100000001b3ull;
	}
	return (size_t)(h ^ (h >> 32));
}

static struct opd_agent **bucket_of(const struct opd_registry *r, const uint8_t uid[OPD_UID_LEN])
{
	return &r->buckets[uid_hash(uid) & (r->n_buckets - 1)];
}

static void bucket_link(struct opd_registry *r, struct opd_agent *a)
{
	struct opd_agent **b = bucket_of(r, a->uid);

	a->hnext = *b;
	*b = a;
}

static void bucket_unlink(struct opd_registry *r, struct opd_agent *a)
{
	for (struct opd_agent **pp = bucket_of(r, a->uid); *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == a) {
			*pp = a->hnext;
			a->hnext = NULL;
			return;
		}
	}
}

static void grow(struct opd_registry *r)
{
	struct opd_list *pos;

	free(r->buckets);
	r->n_buckets *= 2;
	r->buckets = opd_xcalloc(r->n_buckets, sizeof *r->buckets);
	opd_list_foreach(pos, &r->agents)
	{
		bucket_link(r, opd_container_of(pos, struct opd_agent, link));
	}
}

struct opd_agent *opd_registry_find(const struct opd_registry *r, const uint8_t uid[OPD_UID_LEN])
{
	for (struct opd_agent *a = *bucket_of(r, uid); a != NULL; a = a->hnext)
		if (memcmp(a->uid, uid, OPD_UID_LEN) == 0)
			return a;
	return NULL;
}

struct opd_agent *opd_registry_get(struct opd_registry *r, const uint8_t uid[OPD_UID_LEN],
				   int *created)
{
	struct opd_agent *a = opd_registry_find(r, uid);

	if (created != NULL)
		*created = 0;
	if (a != NULL)
		return a;
	if (r->n_agents >= r->settings.max_agents)
		return NULL;
	a = opd_xcalloc(1, sizeof *a);
	memcpy(a->uid, uid, OPD_UID_LEN);
	opd_kvs_init(&a->ident);
	opd_kvs_init(&a->nonident);
	opd_phi_init(&a->phi);
	a->healthy = 1;
	/* Stale on purpose, so the first message computes the desired configuration. */
	a->desired_gen = r->config_gen - 1;
	a->dirty = 1;
	opd_list_insert_tail(&r->agents, &a->link);
	r->n_agents++;
	if (r->n_agents > r->n_buckets)
		grow(r);
	else
		bucket_link(r, a);
	if (created != NULL)
		*created = 1;
	return a;
}

int opd_registry_rekey(struct opd_registry *r, struct opd_agent *a, const uint8_t uid[OPD_UID_LEN])
{
	struct opd_agent *other = opd_registry_find(r, uid);

	if (other == a)
		return 0;
	if (other != NULL)
		return OPD_ECONFLICT;
	bucket_unlink(r, a);
	memcpy(a->uid, uid, OPD_UID_LEN);
	bucket_link(r, a);
	a->dirty = 1;
	return 0;
}

void opd_registry_remove(struct opd_registry *r, struct opd_agent *a)
{
	bucket_unlink(r, a);
	opd_list_remove(&a->link);
	r->n_agents--;
	if (a->connected && r->n_connected > 0)
		r->n_connected--;
	agent_free(a);
}

void opd_registry_configs_changed_each(struct opd_registry *r,
				       void (*moved)(void *data, struct opd_agent *a), void *data)
{
	struct opd_list *pos;
	uint64_t was = r->config_gen++;

	if (r->ops.affects == NULL && moved == NULL)
		return;
	opd_list_foreach(pos, &r->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);

		if (a->desired_gen != was)
			continue; /* stale already: recomputed when next needed */
		if (r->ops.affects != NULL && !r->ops.affects(r->ops.data, a))
			a->desired_gen = r->config_gen;
		else if (moved != NULL)
			moved(data, a);
	}
}

void opd_registry_configs_changed(struct opd_registry *r)
{
	opd_registry_configs_changed_each(r, NULL, NULL);
}

uint64_t opd_registry_expected_interval_ms(const struct opd_registry *r, const struct opd_agent *a)
{
	/* Only then did we offer our interval, and only then does the agent follow it. */
	if ((a->capabilities & CAP_ACCEPTS_OPAMP_SETTINGS) &&
	    (a->capabilities & CAP_REPORTS_HEARTBEAT) && r->settings.heartbeat_interval_s > 0)
		return r->settings.heartbeat_interval_s * 1000;
	return opd_phi_mean_ms(&a->phi, PRIOR_INTERVAL_MS);
}

enum opd_health_state opd_registry_health(const struct opd_registry *r, const struct opd_agent *a,
					  uint64_t now_ms)
{
	if (!a->connected)
		return OPD_HEALTH_DOWN;
	/*
	 * A WebSocket agent without ReportsHeartbeat talks only when something
	 * changes: silence is normal and the open connection is its liveness.
	 * Plain HTTP agents always poll, so their silence means something.
	 */
	if (a->transport == OPD_TRANSPORT_HTTP || (a->capabilities & CAP_REPORTS_HEARTBEAT)) {
		double phi =
		    opd_phi_value(&a->phi, now_ms, opd_registry_expected_interval_ms(r, a));

		if (phi >= r->settings.phi_down)
			return OPD_HEALTH_DOWN;
		if (phi >= r->settings.phi_suspect)
			return OPD_HEALTH_SUSPECT;
	}
	if (!a->healthy)
		return OPD_HEALTH_DEGRADED;
	return OPD_HEALTH_HEALTHY;
}

size_t opd_registry_sweep(struct opd_registry *r, uint64_t now_ms)
{
	struct opd_list *pos;
	size_t changed = 0;

	opd_list_foreach(pos, &r->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
		double limit;

		if (!a->connected || a->transport != OPD_TRANSPORT_HTTP)
			continue;
		limit = r->settings.http_timeout_factor *
			(double)opd_registry_expected_interval_ms(r, a);
		if (now_ms > a->last_seen_ms && (double)(now_ms - a->last_seen_ms) > limit) {
			a->connected = 0;
			a->dirty = 1;
			if (r->n_connected > 0)
				r->n_connected--;
			changed++;
		}
	}
	return changed;
}

const uint64_t opd_latency_bounds_ms[OPD_LATENCY_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};

void opd_latency_record(struct opd_latency_histogram *h, uint64_t ms)
{
	size_t i = 0;

	while (i < OPD_LATENCY_BUCKETS && ms > opd_latency_bounds_ms[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum_ms += ms;
}
