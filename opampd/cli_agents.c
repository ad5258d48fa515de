/* "opampd agents list|show" and "opampd rollout status": the fleet as the admin API reports it. */
#include "cli.h"

#include "mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_agents[] =
    "usage: opampd agents list [--health STATE] [--attr KEY=VALUE]... [--connected BOOL]\n"
    "       opampd agents show INSTANCE_UID\n"
    "\n"
    "Run \"opampd agents SUBCOMMAND --help\" for details.\n";

static const char usage_list[] =
    "usage: opampd agents list [options]\n"
    "\n"
    "Agents of every node of the cluster (a node that does not answer is named).\n"
    "CONFIG is the configuration an agent should run; STATUS says how far it got with it:\n"
    "applied, applying, failed, or pending (not reported for that version yet).\n"
    "\n"
    "  --health STATE     healthy, degraded, suspect or down\n"
    "  --attr KEY=VALUE   an identifying or non-identifying attribute (repeat: all match)\n"
    "  --connected BOOL   true or false\n";

static const char usage_show[] =
    "usage: opampd agents show INSTANCE_UID\n"
    "\n"
    "One agent: attributes, health and its component tree, desired and reported\n"
    "configuration. INSTANCE_UID is 32 hex digits or a UUID.\n";

static const char usage_rollout[] =
    "usage: opampd rollout status NAME [--watch] [--interval SECS] [--timeout SECS]\n"
    "\n"
    "How far the active version of configuration NAME has reached the agents it targets:\n"
    "applied, applying, failed (with each agent's message) and pending, per version the\n"
    "agents are being given (more than one while nodes catch up).\n"
    "\n"
    "  --watch           poll until no agent is applying or pending; exit 0 when every\n"
    "                    agent applied it, 1 when some failed or the timeout passed\n"
    "  --interval SECS   between polls (default 2)\n"
    "  --timeout SECS    give up watching after this long (default 300)\n";

/* ---- shared ---- */

/* How an agent stands with the configuration it should run. */
enum standing { ST_NONE, ST_APPLIED, ST_APPLYING, ST_FAILED, ST_PENDING };

static const char *standing_name(enum standing s)
{
	static const char *const names[] = {"-", "applied", "applying", "failed", "pending"};

	return names[s];
}

/*
 * The agent's report counts only when it is about the desired version's hash: a status for an
 * older config says nothing about the new one, which is then pending.
 */
static enum standing standing_of(json_t *ag)
{
	json_t *dc = json_object_get(ag, "desired_config");
	json_t *rcs = json_object_get(ag, "remote_config_status");
	const char *want = opd_cli_jstr(dc, "config_hash"), *st;

	if (!json_is_object(dc))
		return ST_NONE;
	if (want[0] == '\0' || strcmp(opd_cli_jstr(rcs, "config_hash"), want) != 0)
		return ST_PENDING;
	st = opd_cli_jstr(rcs, "status");
	if (strcmp(st, "APPLIED") == 0)
		return ST_APPLIED;
	if (strcmp(st, "APPLYING") == 0)
		return ST_APPLYING;
	if (strcmp(st, "FAILED") == 0)
		return ST_FAILED;
	return ST_PENDING;
}

/* service.name (identifying, then non-identifying), or "". */
static const char *service_name(json_t *ag)
{
	const char *s = json_string_value(
	    json_object_get(json_object_get(ag, "identifying_attributes"), "service.name"));

	if (s == NULL)
		s = json_string_value(json_object_get(
		    json_object_get(ag, "non_identifying_attributes"), "service.name"));
	return s != NULL ? s : "";
}

static void print_partial(json_t *out)
{
	json_t *un = json_object_get(out, "unreachable"), *v;
	size_t i;

	if (!opd_cli_jbool(out, "partial"))
		return;
	printf("partial: node(s)");
	json_array_foreach(un, i, v)
	{
		printf("%s %lld", i ? "," : "", (long long)json_integer_value(v));
	}
	printf(" did not answer; their agents are missing\n");
}

/* ---- agents list ---- */

static int agents_list(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {
	    {"--health", 1, 0}, {"--attr", 1, 1}, {"--connected", 1, 0}, {NULL, 0, 0}};
	static const char *const header[] = {"INSTANCE_UID", "SERVICE", "HEALTH",   "TRANSPORT",
					     "CONFIG",       "STATUS",  "LAST SEEN"};
	struct opd_cli_args a;
	struct opd_buf q, raw;
	const char *const *attrs, *v;
	size_t n_attrs, i;
	json_t *out = NULL, *ag;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_list, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 0)
		return opd_cli_usage_error(usage_list, "agents list takes no arguments");
	opd_buf_init(&q);
	opd_buf_appendf(&q, "/api/v1/agents");
	if ((v = opd_cli_opt1(&a, "--health")) != NULL) {
		char *e = opd_cli_escape(v);
		opd_buf_appendf(&q, "%chealth=%s", opd_buf_avail(&q) > 14 ? '&' : '?', e);
		free(e);
	}
	if ((v = opd_cli_opt1(&a, "--connected")) != NULL) {
		if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
			opd_buf_fini(&q);
			return opd_cli_usage_error(usage_list, "--connected is true or false");
		}
		opd_buf_appendf(&q, "%cconnected=%s", opd_buf_avail(&q) > 14 ? '&' : '?', v);
	}
	attrs = opd_cli_opt(&a, "--attr", &n_attrs);
	for (i = 0; i < n_attrs; i++) {
		const char *eq = strchr(attrs[i], '=');
		char *key, *ek, *ev;
		if (eq == NULL || eq == attrs[i]) {
			opd_buf_fini(&q);
			return opd_cli_usage_error(usage_list, "--attr wants KEY=VALUE, not %s",
						   attrs[i]);
		}
		key = opd_xstrndup(attrs[i], (size_t)(eq - attrs[i]));
		ek = opd_cli_escape(key);
		ev = opd_cli_escape(eq + 1);
		opd_buf_appendf(&q, "%cattr.%s=%s", opd_buf_avail(&q) > 14 ? '&' : '?', ek, ev);
		free(key);
		free(ek);
		free(ev);
	}
	opd_buf_append_byte(&q, 0);
	opd_buf_init(&raw);
	rc = opd_cli_call(c, "GET", (const char *)opd_buf_rptr(&q), NULL, &out, &raw, NULL);
	opd_buf_fini(&q);
	if (rc == OPD_CLI_OK && c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
	} else if (rc == OPD_CLI_OK) {
		struct opd_cli_table t;
		json_t *agents = json_object_get(out, "agents");

		opd_cli_table_init(&t, 7);
		json_array_foreach(agents, i, ag)
		{
			json_t *dc = json_object_get(ag, "desired_config");
			char cfg[320], tr[64], seen[40];
			const char *row[7];

			if (json_is_object(dc))
				snprintf(cfg, sizeof cfg, "%s@%lld", opd_cli_jstr(dc, "name"),
					 (long long)opd_cli_jint(dc, "version"));
			else
				snprintf(cfg, sizeof cfg, "-");
			snprintf(tr, sizeof tr, "%s%s", opd_cli_jstr(ag, "transport"),
				 opd_cli_jbool(ag, "connected") ? "" : " (gone)");
			row[0] = opd_cli_jstr(ag, "instance_uid");
			row[1] = service_name(ag);
			row[2] = opd_cli_jstr(json_object_get(ag, "health"), "state");
			row[3] = tr;
			row[4] = cfg;
			row[5] = standing_name(standing_of(ag));
			row[6] = opd_cli_fmt_age((uint64_t)opd_cli_jint(ag, "last_seen_ms"), seen,
						 sizeof seen);
			opd_cli_table_row(&t, row);
		}
		if (t.nrows > 0)
			opd_cli_table_print(&t, header);
		printf("%zu agent%s\n", json_array_size(agents),
		       json_array_size(agents) == 1 ? "" : "s");
		print_partial(out);
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

/* ---- agents show ---- */

static void print_health(json_t *h, const char *name, int depth)
{
	const char *k;
	json_t *sub;

	if (!json_is_object(h) || depth > 16)
		return;
	printf("  %*s%s: %s", 2 * depth, "", name,
	       opd_cli_jbool(h, "healthy") ? "healthy" : "UNHEALTHY");
	if (opd_cli_jstr(h, "status")[0])
		printf(" (%s)", opd_cli_jstr(h, "status"));
	if (opd_cli_jstr(h, "last_error")[0])
		printf(" error: %s", opd_cli_jstr(h, "last_error"));
	putchar('\n');
	json_object_foreach(json_object_get(h, "components"), k, sub)
	{
		print_health(sub, k, depth + 1);
	}
}

static void print_attrs(const char *title, json_t *obj)
{
	const char *k;
	json_t *v;

	printf("%s:\n", title);
	if (json_object_size(obj) == 0)
		printf("  (none)\n");
	json_object_foreach(obj, k, v)
	{
		printf("  %s = %s\n", k, json_string_value(v) ? json_string_value(v) : "");
	}
}

static void show_agent(json_t *ag)
{
	json_t *h = json_object_get(ag, "health"), *dc = json_object_get(ag, "desired_config");
	json_t *rcs = json_object_get(ag, "remote_config_status"), *caps;
	char seen[40], tm[40];
	size_t i;

	printf("instance_uid:    %s\n", opd_cli_jstr(ag, "instance_uid"));
	printf("connected:       %s over %s\n", opd_cli_jbool(ag, "connected") ? "yes" : "no",
	       opd_cli_jstr(ag, "transport"));
	printf("last seen:       %s (%s)\n",
	       opd_cli_fmt_time((uint64_t)opd_cli_jint(ag, "last_seen_ms"), tm, sizeof tm),
	       opd_cli_fmt_age((uint64_t)opd_cli_jint(ag, "last_seen_ms"), seen, sizeof seen));
	printf("health:          %s (phi %.1f)\n", opd_cli_jstr(h, "state"),
	       json_number_value(json_object_get(h, "phi")));
	if (json_is_object(dc))
		printf("desired config:  %s version %lld, hash %s\n", opd_cli_jstr(dc, "name"),
		       (long long)opd_cli_jint(dc, "version"), opd_cli_jstr(dc, "config_hash"));
	else
		printf("desired config:  none (no configuration selects this agent)\n");
	printf("reported config: %s, hash %s\n", opd_cli_jstr(rcs, "status"),
	       opd_cli_jstr(rcs, "config_hash")[0] ? opd_cli_jstr(rcs, "config_hash") : "-");
	if (opd_cli_jstr(rcs, "error_message")[0])
		printf("config error:    %s\n", opd_cli_jstr(rcs, "error_message"));
	printf("effective hash:  %s\n", json_is_string(json_object_get(ag, "effective_config_hash"))
					    ? opd_cli_jstr(ag, "effective_config_hash")
					    : "-");
	printf("rollout:         %s\n", standing_name(standing_of(ag)));
	printf("capabilities:    0x%llx", (unsigned long long)opd_cli_jint(ag, "capabilities"));
	caps = json_object_get(ag, "custom_capabilities");
	for (i = 0; i < json_array_size(caps); i++)
		printf("%s%s", i ? ", " : " (custom: ", json_string_value(json_array_get(caps, i)));
	printf("%s\n", json_array_size(caps) ? ")" : "");
	print_attrs("identifying attributes", json_object_get(ag, "identifying_attributes"));
	print_attrs("non-identifying attributes",
		    json_object_get(ag, "non_identifying_attributes"));
	printf("component health:\n");
	if (json_is_object(json_object_get(h, "component_health")))
		print_health(json_object_get(h, "component_health"), "agent", 0);
	else
		printf("  (not reported)\n");
}

/* instance_uids compare without dashes and case: a UUID and its 32 hex digits are the same. */
static void uid_norm(const char *s, char out[40])
{
	size_t n = 0;

	for (; *s && n < 39; s++)
		if (*s != '-')
			out[n++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
	out[n] = '\0';
}

static int agents_show(struct opd_cli *c, int argc, char **argv)
{
	struct opd_cli_args a;
	json_t *out = NULL, *list = NULL, *ag, *found = NULL;
	char *e, path[256], want[40], have[40];
	long status;
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, NULL, usage_show, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 1)
		return opd_cli_usage_error(usage_show, "agents show needs INSTANCE_UID");
	if (strlen(a.pos[0]) > 64)
		return opd_cli_usage_error(usage_show, "INSTANCE_UID is 32 hex digits or a UUID");
	e = opd_cli_escape(a.pos[0]);
	snprintf(path, sizeof path, "/api/v1/agents/%s", e);
	free(e);
	rc = opd_cli_call_quiet(c, "GET", path, NULL, &out, &status);
	if (rc == OPD_CLI_API && status == 404) {
		json_decref(out);
		out = NULL;
		/*
		 * A node knows only the agents connected to it; the list is merged from every
		 * node, so look there before saying the agent does not exist.
		 */
		rc = opd_cli_call(c, "GET", "/api/v1/agents", NULL, &list, NULL, NULL);
		if (rc != OPD_CLI_OK)
			return rc;
		uid_norm(a.pos[0], want);
		json_array_foreach(json_object_get(list, "agents"), i, ag)
		{
			uid_norm(opd_cli_jstr(ag, "instance_uid"), have);
			if (strcmp(have, want) == 0)
				found = ag;
		}
		if (found == NULL) {
			json_decref(list);
			fprintf(stderr,
				"opampd: not_found: no agent %s on any node that answered\n",
				a.pos[0]);
			return OPD_CLI_API;
		}
		out = json_incref(found);
		json_decref(list);
	} else if (rc == OPD_CLI_API) {
		opd_cli_print_error(c, status, out, NULL, "GET", path);
		json_decref(out);
		return rc;
	} else if (rc != OPD_CLI_OK) {
		return rc;
	}
	if (c->json)
		opd_cli_print_json(out);
	else
		show_agent(out);
	json_decref(out);
	return OPD_CLI_OK;
}

int opd_cli_agents(struct opd_cli *c, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : NULL;

	if (sub == NULL)
		return opd_cli_usage_error(usage_agents, "agents needs a subcommand");
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage_agents, stdout);
		return OPD_CLI_OK;
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return agents_list(c, argc - 2, argv + 2);
	if (strcmp(sub, "show") == 0)
		return agents_show(c, argc - 2, argv + 2);
	return opd_cli_usage_error(usage_agents, "unknown agents subcommand %s", sub);
}

/* ---- rollout status ---- */

struct group {
	int64_t version;
	char hash[80];
	size_t n[5]; /* by enum standing */
	size_t disconnected;
	json_t *failed; /* [{instance_uid, service, message}] */
};

#define MAX_GROUPS 16

/*
 * One poll: the configuration's active version and every agent, summarised per desired version
 * into a JSON document (the --json output; the table is printed from it too).
 */
static int rollout_poll(struct opd_cli *c, const char *name, json_t **doc)
{
	struct group g[MAX_GROUPS];
	size_t ng = 0, i, targeted = 0;
	json_t *cfg = NULL, *agents = NULL, *ag, *root, *versions;
	char *e, path[512];
	int rc, complete = 1;

	e = opd_cli_escape(name);
	snprintf(path, sizeof path, "/api/v1/configs/%s", e);
	free(e);
	if ((rc = opd_cli_call(c, "GET", path, NULL, &cfg, NULL, NULL)) != OPD_CLI_OK)
		return rc;
	if ((rc = opd_cli_call(c, "GET", "/api/v1/agents", NULL, &agents, NULL, NULL)) !=
	    OPD_CLI_OK) {
		json_decref(cfg);
		return rc;
	}
	json_array_foreach(json_object_get(agents, "agents"), i, ag)
	{
		json_t *dc = json_object_get(ag, "desired_config");
		enum standing s;
		size_t k;

		if (!json_is_object(dc) || strcmp(opd_cli_jstr(dc, "name"), name) != 0)
			continue;
		targeted++;
		for (k = 0; k < ng; k++)
			if (g[k].version == opd_cli_jint(dc, "version") &&
			    strcmp(g[k].hash, opd_cli_jstr(dc, "config_hash")) == 0)
				break;
		if (k == ng) {
			if (ng == MAX_GROUPS)
				continue; /* nodes cannot disagree on more versions than this */
			g[ng] = (struct group){.version = opd_cli_jint(dc, "version"),
					       .failed = json_array()};
			snprintf(g[ng].hash, sizeof g[ng].hash, "%s",
				 opd_cli_jstr(dc, "config_hash"));
			ng++;
		}
		s = standing_of(ag);
		g[k].n[s]++;
		if (!opd_cli_jbool(ag, "connected") && (s == ST_PENDING || s == ST_APPLYING))
			g[k].disconnected++;
		if (s == ST_FAILED) {
			json_t *f = json_object();
			json_object_set_new(f, "instance_uid",
					    json_string(opd_cli_jstr(ag, "instance_uid")));
			json_object_set_new(f, "service", json_string(service_name(ag)));
			json_object_set_new(
			    f, "message",
			    json_string(opd_cli_jstr(json_object_get(ag, "remote_config_status"),
						     "error_message")));
			json_array_append_new(g[k].failed, f);
		}
	}
	/* The active version first, then the others newest first. */
	for (size_t x = 1; x < ng; x++)
		for (size_t y = x; y > 0 && g[y].version > g[y - 1].version; y--) {
			struct group t = g[y];
			g[y] = g[y - 1];
			g[y - 1] = t;
		}
	root = json_object();
	versions = json_array();
	json_object_set_new(root, "name", json_string(name));
	json_object_set_new(root, "active_version",
			    json_integer(opd_cli_jint(cfg, "active_version")));
	json_object_set_new(root, "config_hash", json_string(opd_cli_jstr(cfg, "config_hash")));
	json_object_set_new(root, "targeted", json_integer((json_int_t)targeted));
	for (i = 0; i < ng; i++) {
		json_t *v = json_object();
		size_t total = g[i].n[ST_APPLIED] + g[i].n[ST_APPLYING] + g[i].n[ST_FAILED] +
			       g[i].n[ST_PENDING];

		json_object_set_new(v, "version", json_integer(g[i].version));
		json_object_set_new(v, "config_hash", json_string(g[i].hash));
		json_object_set_new(
		    v, "active", json_boolean(g[i].version == opd_cli_jint(cfg, "active_version")));
		json_object_set_new(v, "targeted", json_integer((json_int_t)total));
		json_object_set_new(v, "applied", json_integer((json_int_t)g[i].n[ST_APPLIED]));
		json_object_set_new(v, "applying", json_integer((json_int_t)g[i].n[ST_APPLYING]));
		json_object_set_new(v, "failed", json_integer((json_int_t)g[i].n[ST_FAILED]));
		json_object_set_new(v, "pending", json_integer((json_int_t)g[i].n[ST_PENDING]));
		json_object_set_new(v, "disconnected", json_integer((json_int_t)g[i].disconnected));
		json_object_set_new(v, "failed_agents", g[i].failed);
		json_array_append_new(versions, v);
		if (g[i].n[ST_APPLYING] > 0 || g[i].n[ST_PENDING] > 0 ||
		    g[i].version != opd_cli_jint(cfg, "active_version"))
			complete = 0;
	}
	json_object_set_new(root, "versions", versions);
	json_object_set_new(root, "complete", json_boolean(complete));
	json_object_set_new(root, "partial", json_boolean(opd_cli_jbool(agents, "partial")));
	if (json_object_get(agents, "unreachable") != NULL)
		json_object_set(root, "unreachable", json_object_get(agents, "unreachable"));
	json_decref(cfg);
	json_decref(agents);
	*doc = root;
	return OPD_CLI_OK;
}

static void bar(size_t done, size_t failed, size_t total, char *out, size_t cap)
{
	const size_t w = 30;
	size_t d = total ? done * w / total : w, f = total ? failed * w / total : 0, k = 0;

	if (cap < w + 3)
		return;
	if (d + f > w)
		f = w - d;
	out[k++] = '[';
	for (size_t i = 0; i < w; i++)
		out[k++] = i < d ? '#' : i < d + f ? '!' : '.';
	out[k++] = ']';
	out[k] = '\0';
}

static void rollout_print(json_t *doc, struct opd_buf *out)
{
	json_t *v, *f;
	size_t i, j;
	char hash[16];

	opd_buf_appendf(out, "%s: active version %lld (hash %s), %lld agent%s targeted\n",
			opd_cli_jstr(doc, "name"), (long long)opd_cli_jint(doc, "active_version"),
			opd_cli_short_hash(opd_cli_jstr(doc, "config_hash"), hash, sizeof hash),
			(long long)opd_cli_jint(doc, "targeted"),
			opd_cli_jint(doc, "targeted") == 1 ? "" : "s");
	json_array_foreach(json_object_get(doc, "versions"), i, v)
	{
		size_t total = (size_t)opd_cli_jint(v, "targeted");
		size_t applied = (size_t)opd_cli_jint(v, "applied");
		size_t failed = (size_t)opd_cli_jint(v, "failed");
		char b[40] = "";

		bar(applied, failed, total, b, sizeof b);
		opd_buf_appendf(out,
				"  v%-4lld %s %3zu%%  applied %zu/%zu  applying %lld  failed %zu  "
				"pending %lld",
				(long long)opd_cli_jint(v, "version"), b,
				total ? applied * 100 / total : 100, applied, total,
				(long long)opd_cli_jint(v, "applying"), failed,
				(long long)opd_cli_jint(v, "pending"));
		if (opd_cli_jint(v, "disconnected") > 0)
			opd_buf_appendf(out, " (%lld disconnected)",
					(long long)opd_cli_jint(v, "disconnected"));
		if (!opd_cli_jbool(v, "active"))
			opd_buf_appendf(out, "  (not the active version: a node is catching up)");
		opd_buf_appendf(out, "\n");
		json_array_foreach(json_object_get(v, "failed_agents"), j, f)
		{
			opd_buf_appendf(
			    out, "    failed %s%s%s%s: %s\n", opd_cli_jstr(f, "instance_uid"),
			    opd_cli_jstr(f, "service")[0] ? " (" : "", opd_cli_jstr(f, "service"),
			    opd_cli_jstr(f, "service")[0] ? ")" : "",
			    opd_cli_jstr(f, "message")[0] ? opd_cli_jstr(f, "message")
							  : "(no message)");
		}
	}
	if (json_array_size(json_object_get(doc, "versions")) == 0)
		opd_buf_appendf(out, "  no agent is given this configuration\n");
	if (opd_cli_jbool(doc, "partial"))
		opd_buf_appendf(out, "  partial: some nodes did not answer; their agents are "
				     "missing\n");
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t failed_total(json_t *doc)
{
	json_t *v;
	size_t i, n = 0;

	json_array_foreach(json_object_get(doc, "versions"), i, v)
	{
		n += (size_t)opd_cli_jint(v, "failed");
	}
	return n;
}

static int rollout_status(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {
	    {"--watch", 0, 0}, {"--interval", 1, 0}, {"--timeout", 1, 0}, {NULL, 0, 0}};
	struct opd_cli_args a;
	uint64_t interval_ms = 2000, timeout_ms = 300000, start, v;
	struct opd_buf last;
	const char *s;
	int rc, watch;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_rollout, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 1)
		return opd_cli_usage_error(usage_rollout, "rollout status needs NAME");
	watch = opd_cli_flag(&a, "--watch");
	if ((s = opd_cli_opt1(&a, "--interval")) != NULL) {
		char *end;
		double d;
		errno = 0;
		d = strtod(s, &end);
		if (errno != 0 || *end != '\0' || !(d >= 0.1 && d <= 3600))
			return opd_cli_usage_error(usage_rollout,
						   "--interval is 0.1 to 3600 seconds");
		interval_ms = (uint64_t)(d * 1000);
	}
	if ((s = opd_cli_opt1(&a, "--timeout")) != NULL) {
		if (opd_cli_parse_u64(s, 1, 86400, &v) != 0)
			return opd_cli_usage_error(usage_rollout,
						   "--timeout is 1 to 86400 seconds");
		timeout_ms = v * 1000;
	}
	if (!watch && (opd_cli_opt1(&a, "--interval") || opd_cli_opt1(&a, "--timeout")))
		return opd_cli_usage_error(usage_rollout,
					   "--interval and --timeout go with --watch");
	start = now_ms();
	opd_buf_init(&last);
	for (;;) {
		json_t *doc = NULL;
		struct opd_buf text;
		int complete;
		size_t failed;

		rc = rollout_poll(c, a.pos[0], &doc);
		if (rc != OPD_CLI_OK)
			break;
		complete = opd_cli_jbool(doc, "complete");
		failed = failed_total(doc);
		opd_buf_init(&text);
		if (c->json) {
			char *j = json_dumps(doc, JSON_COMPACT);
			opd_buf_appendf(&text, "%s\n", j);
			free(j);
		} else {
			rollout_print(doc, &text);
		}
		/* Watching prints only what changed, so the output reads as a log of progress. */
		if (!watch || opd_buf_avail(&text) != opd_buf_avail(&last) ||
		    memcmp(opd_buf_rptr(&text), opd_buf_rptr(&last), opd_buf_avail(&text)) != 0) {
			fwrite(opd_buf_rptr(&text), 1, opd_buf_avail(&text), stdout);
			fflush(stdout);
			opd_buf_reset(&last);
			opd_buf_append(&last, opd_buf_rptr(&text), opd_buf_avail(&text));
		}
		opd_buf_fini(&text);
		json_decref(doc);
		if (!watch)
			break;
		if (complete) {
			if (!c->json)
				printf("rollout of %s %s\n", a.pos[0],
				       failed ? "finished with failures" : "complete");
			rc = failed ? OPD_CLI_API : OPD_CLI_OK;
			break;
		}
		if (now_ms() - start + interval_ms > timeout_ms) {
			fprintf(stderr, "opampd: rollout of %s not complete after %llu s\n",
				a.pos[0], (unsigned long long)(timeout_ms / 1000));
			rc = OPD_CLI_API;
			break;
		}
		{
			struct timespec ts = {(time_t)(interval_ms / 1000),
					      (long)(interval_ms % 1000) * 1000000L};
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
		}
	}
	opd_buf_fini(&last);
	return rc;
}

int opd_cli_rollout(struct opd_cli *c, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : NULL;

	if (sub == NULL)
		return opd_cli_usage_error(usage_rollout, "rollout needs a subcommand");
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage_rollout, stdout);
		return OPD_CLI_OK;
	}
	if (strcmp(sub, "status") == 0)
		return rollout_status(c, argc - 2, argv + 2);
	return opd_cli_usage_error(usage_rollout, "unknown rollout subcommand %s", sub);
}
