#define LOG_COMPONENT "configs"

#include "configs.h"

#include "config_hash.h"
#include "log.h"
#include "mem.h"
#include "opamp/v1/opamp.pb-c.h"
#include "selector.h"

#include <stdlib.h>
#include <string.h>

/* The active version of one configuration, ready to match and send. */
struct opd_active_config {
	char *name;
	struct opd_kvs selector;
	int64_t priority;
	uint64_t version;
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	uint8_t *config_pb; /* packed AgentConfigMap */
	size_t config_len;
};

static void active_fini(struct opd_active_config *ac)
{
	free(ac->name);
	opd_kvs_fini(&ac->selector);
	free(ac->config_pb);
}

static void active_clear(struct opd_configs *c)
{
	for (size_t i = 0; i < c->n_active; i++)
		active_fini(&c->active[i]);
	free(c->active);
	c->active = NULL;
	c->n_active = 0;
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
	opd_kvs_copy(&ac->selector, &info->selector);
	ac->priority = info->priority;
	ac->version = v.version;
	memcpy(ac->hash, v.hash, sizeof ac->hash);
	ac->config_pb = pack_config_map(&v.files, &ac->config_len);
	opd_version_info_fini(&v);
	return 0;
}

/* Rebuild the in-memory active set from the store. Configurations are few and change rarely. */
static int reload(struct opd_configs *c)
{
	struct load_ctx lc = {c, 0};
	int rc;

	active_clear(c);
	rc = opd_store_foreach_config(&c->store, load_one, &lc);
	if (rc == 0)
		rc = lc.rc;
	if (rc != 0) {
		opd_errmsg_printf(c->errmsg, "load configurations: %s",
				  opd_store_errmsg(&c->store));
		return rc;
	}
	if (c->n_active > 1)
		qsort(c->active, c->n_active, sizeof *c->active, active_cmp);
	return 0;
}

static void notify(struct opd_configs *c)
{
	if (reload(c) != 0)
		log_error("%s", c->errmsg);
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
	if (reload(c) != 0) {
		opd_configs_close(c);
		return OPD_ESTORE;
	}
	return 0;
}

void opd_configs_close(struct opd_configs *c)
{
	active_clear(c);
	opd_store_close(&c->store);
}

int opd_configs_publish(struct opd_configs *c, const struct opd_publish *p,
			struct opd_put_result *out, uint8_t hash[OPD_CONFIG_HASH_LEN],
			struct opd_validation_error *verr)
{
	struct opd_kvs selector;
	struct opd_files files;
	struct opd_put_version in;
	int rc;

	*verr = (struct opd_validation_error){0};
	if (!opd_validate_name(p->name)) {
		opd_errmsg_printf(verr->message,
				  "invalid configuration name: use 1 to %d of [A-Za-z0-9._-], "
				  "not starting with '.'",
				  OPD_MAX_CONFIG_NAME);
		return OPD_EINVAL;
	}
	if (opd_validate_selector(p->selector, verr) != 0 ||
	    opd_validate_files(p->files, verr) != 0)
		return OPD_EINVAL;

	/* Canonical order for hashing and storage; the caller's arrays stay untouched. */
	opd_kvs_copy(&selector, p->selector);
	opd_kvs_sort(&selector);
	opd_files_init(&files);
	for (size_t i = 0; i < p->files->n; i++) {
		const struct opd_file *f = &p->files->v[i];
		opd_files_add(&files, f->name, f->content_type, f->body, f->len);
	}
	opd_files_sort(&files);

	in = (struct opd_put_version){
	    .name = p->name,
	    .selector = &selector,
	    .priority = p->priority,
	    .files = &files,
	    .message = p->message ? p->message : "",
	    .actor = p->actor ? p->actor : "",
	    .ts_ms = opd_clock_wall(c->clock),
	};
	opd_config_hash(&files, in.hash);
	rc = opd_store_put_version(&c->store, &in, out);
	if (rc == 0) {
		memcpy(hash, in.hash, OPD_CONFIG_HASH_LEN);
		if (out->created)
			notify(c);
	} else {
		opd_errmsg_printf(c->errmsg, "%s", opd_store_errmsg(&c->store));
	}
	opd_kvs_fini(&selector);
	opd_files_fini(&files);
	return rc;
}

int opd_configs_rollback(struct opd_configs *c, const char *name, uint64_t version,
			 const char *actor)
{
	int rc = opd_store_set_active(&c->store, name, version, actor, opd_clock_wall(c->clock));

	if (rc == 0)
		notify(c);
	else if (rc != OPD_ENOTFOUND)
		opd_errmsg_printf(c->errmsg, "%s", opd_store_errmsg(&c->store));
	return rc;
}

int opd_configs_delete(struct opd_configs *c, const char *name, const char *actor)
{
	int rc = opd_store_delete(&c->store, name, actor, opd_clock_wall(c->clock));

	if (rc == 0)
		notify(c);
	else if (rc != OPD_ENOTFOUND)
		opd_errmsg_printf(c->errmsg, "%s", opd_store_errmsg(&c->store));
	return rc;
}

int opd_configs_desired(void *configs, const struct opd_agent *a, struct opd_desired *out)
{
	const struct opd_configs *c = configs;

	/* Sorted by priority then name: the first match is the desired configuration. */
	for (size_t i = 0; i < c->n_active; i++) {
		const struct opd_active_config *ac = &c->active[i];
		if (!opd_selector_match(&ac->selector, a))
			continue;
		*out = (struct opd_desired){
		    .name = ac->name,
		    .version = ac->version,
		    .hash = ac->hash,
		    .hash_len = sizeof ac->hash,
		    .config_pb = ac->config_pb,
		    .config_len = ac->config_len,
		};
		return 0;
	}
	return OPD_ENOTFOUND;
}
