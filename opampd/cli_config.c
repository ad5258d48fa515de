/* "opampd config push|list|show|diff|rollback": configurations and their versions. */
#include "cli.h"

#include "mem.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The server refuses request bodies over 4 MiB; refuse earlier, with the file's name. */
#define MAX_FILE (4u << 20)

static const char usage_config[] =
    "usage: opampd config push NAME FILE... [--selector KEY=VALUE]... [--priority N]\n"
    "                          [--message TEXT] [--content-type TYPE]\n"
    "       opampd config list\n"
    "       opampd config show NAME [--version N]\n"
    "       opampd config diff NAME V1 V2\n"
    "       opampd config rollback NAME VERSION\n"
    "\n"
    "Run \"opampd config SUBCOMMAND --help\" for details, \"opampd --help\" for the options\n"
    "every command takes (--url, --token, --data-dir, --json, ...).\n";

static const char usage_push[] =
    "usage: opampd config push NAME FILE... [options]\n"
    "\n"
    "Publish a new version of configuration NAME made of the given files. Each FILE is a\n"
    "path (the file is named after its base name) or AS=PATH to name it AS. The leader\n"
    "validates and signs it; publishing what is already active creates no version.\n"
    "\n"
    "  --selector KEY=VALUE  agents must have this attribute (repeat: all must match).\n"
    "                        Without it the current selector is kept (a new\n"
    "                        configuration goes to every agent)\n"
    "  --all-agents          no selector: every agent (replaces the current one)\n"
    "  --priority N          the highest priority among matching configurations wins\n"
    "                        (default: the current priority, 0 for a new one)\n"
    "  --message TEXT        why, kept with the version\n"
    "  --content-type TYPE   for every file (default by extension: .yaml/.yml text/yaml,\n"
    "                        .json application/json, else text/plain)\n";

static const char usage_list[] = "usage: opampd config list\n"
				 "\n"
				 "List configurations: active and latest version, priority, "
				 "selector, active hash.\n";

static const char usage_show[] =
    "usage: opampd config show NAME [--version N]\n"
    "\n"
    "Without --version: the configuration and its versions (author, time, message).\n"
    "With --version N: that version's signed record, whether its signature verifies on\n"
    "this node, and its files.\n";

static const char usage_diff[] =
    "usage: opampd config diff NAME V1 V2\n"
    "\n"
    "Show what changed from version V1 to version V2, file by file, as a unified diff.\n";

static const char usage_rollback[] =
    "usage: opampd config rollback NAME VERSION\n"
    "\n"
    "Make an earlier VERSION active again (agents get it at once); no version is created.\n";

static char *config_path(const char *name, const char *suffix)
{
	char *e = opd_cli_escape(name), *p;
	size_t n = strlen(e) + strlen(suffix) + 32;

	p = opd_xmalloc(n);
	snprintf(p, n, "/api/v1/configs/%s%s", e, suffix);
	free(e);
	return p;
}

/* ---- push ---- */

static const char *guess_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL)
		return "text/plain";
	if (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0)
		return "text/yaml";
	if (strcmp(dot, ".json") == 0)
		return "application/json";
	return "text/plain";
}

/* Valid UTF-8 without NUL: sent as "body"; anything else as "body_base64". */
static int is_text(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t len = c < 0x80             ? 1
			     : (c & 0xe0) == 0xc0 ? 2
			     : (c & 0xf0) == 0xe0 ? 3
			     : (c & 0xf8) == 0xf0 ? 4
						  : 0;
		if (c == 0 || len == 0 || i + len > n || (len == 2 && c < 0xc2))
			return 0;
		for (size_t k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
		i += len;
	}
	return 1;
}

/* Read path into a malloc'd buffer; NULL with the reason printed. */
static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	unsigned char *p;
	size_t n;

	if (f == NULL || fstat(fileno(f), &st) != 0) {
		fprintf(stderr, "opampd: %s: %s\n", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_FILE) {
		fprintf(stderr, "opampd: %s: %s\n", path,
			S_ISREG(st.st_mode) ? "larger than 4 MiB (the server's limit)"
					    : "not a regular file");
		fclose(f);
		return NULL;
	}
	p = opd_xmalloc((size_t)st.st_size + 1);
	n = fread(p, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		fprintf(stderr, "opampd: %s: read error\n", path);
		fclose(f);
		free(p);
		return NULL;
	}
	fclose(f);
	*len = n;
	return p;
}

static json_t *file_json(const unsigned char *p, size_t n, const char *content_type)
{
	json_t *o = json_object();

	json_object_set_new(o, "content_type", json_string(content_type));
	if (is_text(p, n)) {
		json_object_set_new(o, "body", json_stringn((const char *)p, n));
	} else {
		char *b64 = opd_xmalloc(4 * ((n + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)b64, p, (int)n);
		json_object_set_new(o, "body_base64", json_string(b64));
		free(b64);
	}
	return o;
}

static int push(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {
	    {"--selector", 1, 1},     {"--priority", 1, 0},   {"--message", 1, 0},
	    {"--content-type", 1, 0}, {"--all-agents", 0, 0}, {NULL, 0, 0},
	};
	struct opd_cli_args a;
	json_t *body, *files, *sel, *out = NULL;
	const char *const *sels, *ct = NULL, *v, *prio;
	char *path, hash[16];
	size_t n_sel;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_push, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos < 2)
		return opd_cli_usage_error(usage_push, "config push needs NAME and at least one "
						       "FILE");
	body = json_object();
	files = json_object();
	sel = json_object();
	json_object_set_new(body, "files", files);
	sels = opd_cli_opt(&a, "--selector", &n_sel);
	for (size_t i = 0; i < n_sel; i++) {
		const char *eq = strchr(sels[i], '=');
		char *key;
		if (eq == NULL || eq == sels[i]) {
			json_decref(body);
			json_decref(sel);
			return opd_cli_usage_error(usage_push, "--selector wants KEY=VALUE, not %s",
						   sels[i]);
		}
		key = opd_xstrndup(sels[i], (size_t)(eq - sels[i]));
		json_object_set_new(sel, key, json_string(eq + 1));
		free(key);
	}
	if (n_sel > 0 && opd_cli_flag(&a, "--all-agents")) {
		json_decref(body);
		json_decref(sel);
		return opd_cli_usage_error(usage_push, "--selector and --all-agents exclude each "
						       "other");
	}
	if ((prio = opd_cli_opt1(&a, "--priority")) != NULL) {
		int64_t pr;
		if (opd_cli_parse_i64(prio, &pr) != 0) {
			json_decref(body);
			json_decref(sel);
			return opd_cli_usage_error(usage_push, "--priority wants an integer");
		}
		json_object_set_new(body, "priority", json_integer(pr));
	}
	if ((v = opd_cli_opt1(&a, "--message")) != NULL)
		json_object_set_new(body, "message", json_string(v));
	ct = opd_cli_opt1(&a, "--content-type");
	for (size_t i = 1; i < a.n_pos; i++) {
		const char *arg = a.pos[i], *eq = strchr(arg, '='), *slash = strchr(arg, '/');
		const char *file = arg, *name;
		char *as = NULL;
		unsigned char *p;
		size_t len;

		/* AS=PATH, unless the '=' is inside the path's directories. */
		if (eq != NULL && eq != arg && (slash == NULL || eq < slash)) {
			as = opd_xstrndup(arg, (size_t)(eq - arg));
			file = eq + 1;
		}
		name = as != NULL ? as : (strrchr(file, '/') ? strrchr(file, '/') + 1 : file);
		if (name[0] == '\0' || json_object_get(files, name) != NULL) {
			fprintf(stderr, "opampd: %s: %s\n", arg,
				name[0] ? "two files with the same name" : "no file name");
			free(as);
			json_decref(body);
			json_decref(sel);
			return OPD_CLI_USAGE;
		}
		if ((p = read_file(file, &len)) == NULL) {
			free(as);
			json_decref(body);
			json_decref(sel);
			return OPD_CLI_USAGE;
		}
		json_object_set_new(files, name,
				    file_json(p, len, ct != NULL ? ct : guess_type(name)));
		free(p);
		free(as);
	}
	/*
	 * The API takes the whole definition with each version. Forgetting --selector must not
	 * widen a configuration to every agent, so what is not given is kept from the current one.
	 */
	if ((n_sel == 0 && !opd_cli_flag(&a, "--all-agents")) || prio == NULL) {
		json_t *cur = NULL;
		long status;

		path = config_path(a.pos[0], "");
		rc = opd_cli_call_quiet(c, "GET", path, NULL, &cur, &status);
		free(path);
		if (rc == OPD_CLI_OK) {
			if (n_sel == 0 && !opd_cli_flag(&a, "--all-agents") &&
			    json_is_object(json_object_get(cur, "selector")))
				json_object_set(body, "selector", json_object_get(cur, "selector"));
			if (prio == NULL && json_is_integer(json_object_get(cur, "priority")))
				json_object_set(body, "priority", json_object_get(cur, "priority"));
		} else if (rc != OPD_CLI_API || status != 404) {
			if (rc == OPD_CLI_API)
				opd_cli_print_error(c, status, cur, NULL, "GET", "/api/v1/configs");
			json_decref(cur);
			json_decref(sel);
			json_decref(body);
			return rc;
		}
		json_decref(cur);
	}
	if (json_object_get(body, "selector") == NULL)
		json_object_set_new(body, "selector", sel);
	else
		json_decref(sel);
	path = config_path(a.pos[0], "");
	rc = opd_cli_call(c, "POST", path, body, &out, NULL, NULL);
	free(path);
	json_decref(body);
	if (rc != OPD_CLI_OK)
		return rc;
	if (c->json) {
		opd_cli_print_json(out);
	} else if (opd_cli_jbool(out, "created")) {
		printf("%s: published version %lld (hash %s)%s\n", a.pos[0],
		       (long long)opd_cli_jint(out, "version"),
		       opd_cli_short_hash(opd_cli_jstr(out, "config_hash"), hash, sizeof hash),
		       opd_cli_jbool(out, "duplicate") ? " (an earlier try of this command)" : "");
	} else {
		printf("%s: unchanged, version %lld is already active (hash %s)\n", a.pos[0],
		       (long long)opd_cli_jint(out, "version"),
		       opd_cli_short_hash(opd_cli_jstr(out, "config_hash"), hash, sizeof hash));
	}
	json_decref(out);
	return OPD_CLI_OK;
}

/* ---- list, show ---- */

static int list(struct opd_cli *c, int argc, char **argv)
{
	static const char *const header[] = {"NAME",     "ACTIVE", "LATEST", "PRIORITY",
					     "SELECTOR", "HASH",   "UPDATED"};
	struct opd_cli_args a;
	struct opd_cli_table t;
	struct opd_buf raw;
	json_t *out = NULL, *cfg;
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, NULL, usage_list, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 0)
		return opd_cli_usage_error(usage_list, "config list takes no arguments");
	opd_buf_init(&raw);
	rc = opd_cli_call(c, "GET", "/api/v1/configs", NULL, &out, &raw, NULL);
	if (rc == OPD_CLI_OK && c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
	} else if (rc == OPD_CLI_OK) {
		opd_cli_table_init(&t, 7);
		json_array_foreach(json_object_get(out, "configs"), i, cfg)
		{
			char act[24], lat[24], pri[24], sel[512], hash[16], upd[40];
			const char *row[7];
			snprintf(act, sizeof act, "%lld",
				 (long long)opd_cli_jint(cfg, "active_version"));
			snprintf(lat, sizeof lat, "%lld",
				 (long long)opd_cli_jint(cfg, "latest_version"));
			snprintf(pri, sizeof pri, "%lld", (long long)opd_cli_jint(cfg, "priority"));
			row[0] = opd_cli_jstr(cfg, "name");
			row[1] = act;
			row[2] = lat;
			row[3] = pri;
			row[4] = opd_cli_fmt_kvs(json_object_get(cfg, "selector"), sel, sizeof sel);
			row[5] =
			    opd_cli_short_hash(opd_cli_jstr(cfg, "config_hash"), hash, sizeof hash);
			row[6] = opd_cli_fmt_time((uint64_t)opd_cli_jint(cfg, "updated_ms"), upd,
						  sizeof upd);
			opd_cli_table_row(&t, row);
		}
		if (t.nrows == 0)
			printf(
			    "no configurations (publish one with: opampd config push NAME FILE)\n");
		else
			opd_cli_table_print(&t, header);
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

static void show_version(json_t *v)
{
	char tm[40];
	const char *k;
	json_t *f;

	printf("name:        %s\n", opd_cli_jstr(v, "name"));
	printf("version:     %lld%s\n", (long long)opd_cli_jint(v, "version"),
	       opd_cli_jbool(v, "active") ? " (active)" : "");
	printf("config hash: %s\n", opd_cli_jstr(v, "config_hash"));
	printf("created:     %s by %s\n",
	       opd_cli_fmt_time((uint64_t)opd_cli_jint(v, "created_ms"), tm, sizeof tm),
	       opd_cli_jstr(v, "actor")[0] ? opd_cli_jstr(v, "actor") : "-");
	printf("message:     %s\n", opd_cli_jstr(v, "message"));
	{
		char sel[512];
		printf("selector:    %s\n",
		       opd_cli_fmt_kvs(json_object_get(v, "selector"), sel, sizeof sel));
	}
	printf("priority:    %lld\n", (long long)opd_cli_jint(v, "priority"));
	printf("signature:   %s (key %s, term %lld)\n",
	       opd_cli_jbool(v, "verified") ? "verified" : "DOES NOT VERIFY",
	       opd_cli_jstr(v, "key_id")[0] ? opd_cli_jstr(v, "key_id") : "-",
	       (long long)opd_cli_jint(v, "term"));
	json_object_foreach(json_object_get(v, "files"), k, f)
	{
		const char *body = json_string_value(json_object_get(f, "body"));
		size_t len = json_string_length(json_object_get(f, "body"));

		printf("\n==> %s (%s) <==\n", k, opd_cli_jstr(f, "content_type"));
		if (body == NULL) {
			printf("(binary, %zu bytes of base64)\n",
			       json_string_length(json_object_get(f, "body_base64")));
			continue;
		}
		fwrite(body, 1, len, stdout);
		if (len > 0 && body[len - 1] != '\n')
			putchar('\n');
	}
}

static int show(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {{"--version", 1, 0}, {NULL, 0, 0}};
	static const char *const header[] = {"VERSION", "HASH", "CREATED", "BY", "MESSAGE"};
	struct opd_cli_args a;
	struct opd_buf raw;
	const char *ver;
	json_t *out = NULL, *v;
	uint64_t n;
	char *path, suffix[48];
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_show, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 1)
		return opd_cli_usage_error(usage_show, "config show needs NAME");
	ver = opd_cli_opt1(&a, "--version");
	if (ver != NULL && opd_cli_parse_u64(ver, 1, INT64_MAX, &n) != 0)
		return opd_cli_usage_error(usage_show, "--version wants a positive integer");
	if (ver != NULL)
		snprintf(suffix, sizeof suffix, "/versions/%llu", (unsigned long long)n);
	else
		suffix[0] = '\0';
	path = config_path(a.pos[0], suffix);
	opd_buf_init(&raw);
	rc = opd_cli_call(c, "GET", path, NULL, &out, &raw, NULL);
	free(path);
	if (rc == OPD_CLI_OK && c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
	} else if (rc == OPD_CLI_OK && ver != NULL) {
		show_version(out);
	} else if (rc == OPD_CLI_OK) {
		struct opd_cli_table t;
		char sel[512], hash[16], upd[40];

		printf("name:     %s\n", opd_cli_jstr(out, "name"));
		printf("active:   version %lld (hash %s)\n",
		       (long long)opd_cli_jint(out, "active_version"),
		       opd_cli_jstr(out, "config_hash"));
		printf("latest:   version %lld\n", (long long)opd_cli_jint(out, "latest_version"));
		printf("selector: %s\n",
		       opd_cli_fmt_kvs(json_object_get(out, "selector"), sel, sizeof sel));
		printf("priority: %lld\n", (long long)opd_cli_jint(out, "priority"));
		printf(
		    "updated:  %s\n\n",
		    opd_cli_fmt_time((uint64_t)opd_cli_jint(out, "updated_ms"), upd, sizeof upd));
		opd_cli_table_init(&t, 5);
		json_array_foreach(json_object_get(out, "versions"), i, v)
		{
			char num[32], tm[40];
			const char *row[5];
			snprintf(num, sizeof num, "%lld%s", (long long)opd_cli_jint(v, "version"),
				 opd_cli_jbool(v, "active") ? " *" : "");
			row[0] = num;
			row[1] =
			    opd_cli_short_hash(opd_cli_jstr(v, "config_hash"), hash, sizeof hash);
			row[2] = opd_cli_fmt_time((uint64_t)opd_cli_jint(v, "created_ms"), tm,
						  sizeof tm);
			row[3] = opd_cli_jstr(v, "actor");
			row[4] = opd_cli_jstr(v, "message");
			opd_cli_table_row(&t, row);
		}
		opd_cli_table_print(&t, header);
		printf("(* active)\n");
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

/* ---- diff ---- */

/* GET one version; OPD_CLI_* with *out set on success. */
static int get_version(struct opd_cli *c, const char *name, uint64_t v, json_t **out)
{
	char suffix[48], *path;
	int rc;

	snprintf(suffix, sizeof suffix, "/versions/%llu", (unsigned long long)v);
	path = config_path(name, suffix);
	rc = opd_cli_call(c, "GET", path, NULL, out, NULL, NULL);
	free(path);
	return rc;
}

/* A file's bytes: the text body, or the decoded base64 body (malloc'd). */
static unsigned char *file_bytes(json_t *f, size_t *len)
{
	json_t *body = json_object_get(f, "body"), *b64 = json_object_get(f, "body_base64");
	unsigned char *p;

	if (json_is_string(body)) {
		*len = json_string_length(body);
		return opd_xmemdup(json_string_value(body), *len + 1);
	}
	if (json_is_string(b64)) {
		size_t n = json_string_length(b64);
		int w;
		/* The answer is bounded (OPD_CLI_MAX_BODY), so is this. */
		p = opd_xmalloc(n / 4 * 3 + 4);
		w = EVP_DecodeBlock(p, (const unsigned char *)json_string_value(b64), (int)n);
		if (w < 0)
			w = 0;
		/* EVP_DecodeBlock counts the padding as data bytes. */
		while (n > 0 && json_string_value(b64)[n - 1] == '=' && w > 0) {
			n--;
			w--;
		}
		*len = (size_t)w;
		return p;
	}
	*len = 0;
	return (unsigned char *)opd_xstrdup("");
}

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int diff(struct opd_cli *c, int argc, char **argv)
{
	struct opd_cli_args a;
	json_t *va = NULL, *vb = NULL, *fa, *fb, *result, *arr;
	uint64_t v1, v2;
	const char **names, *k;
	json_t *tmp;
	size_t nn = 0, total = 0;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, NULL, usage_diff, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 3)
		return opd_cli_usage_error(usage_diff, "config diff needs NAME V1 V2");
	if (opd_cli_parse_u64(a.pos[1], 1, INT64_MAX, &v1) != 0 ||
	    opd_cli_parse_u64(a.pos[2], 1, INT64_MAX, &v2) != 0)
		return opd_cli_usage_error(usage_diff, "versions are positive integers");
	if ((rc = get_version(c, a.pos[0], v1, &va)) != OPD_CLI_OK)
		return rc;
	if ((rc = get_version(c, a.pos[0], v2, &vb)) != OPD_CLI_OK) {
		json_decref(va);
		return rc;
	}
	fa = json_object_get(va, "files");
	fb = json_object_get(vb, "files");
	names = opd_xcalloc(json_object_size(fa) + json_object_size(fb) + 1, sizeof *names);
	json_object_foreach(fa, k, tmp)
	{
		names[nn++] = k;
	}
	json_object_foreach(fb, k, tmp)
	{
		if (json_object_get(fa, k) == NULL)
			names[nn++] = k;
	}
	qsort(names, nn, sizeof *names, name_cmp);
	result = json_object();
	arr = json_array();
	json_object_set_new(result, "name", json_string(a.pos[0]));
	json_object_set_new(result, "from", json_integer((json_int_t)v1));
	json_object_set_new(result, "to", json_integer((json_int_t)v2));
	json_object_set_new(result, "from_hash", json_string(opd_cli_jstr(va, "config_hash")));
	json_object_set_new(result, "to_hash", json_string(opd_cli_jstr(vb, "config_hash")));
	for (size_t i = 0; i < nn; i++) {
		json_t *x = json_object_get(fa, names[i]), *y = json_object_get(fb, names[i]);
		unsigned char *px = NULL, *py = NULL;
		size_t lx = 0, ly = 0, changed;
		char an[512], bn[512];
		const char *status;
		struct opd_buf out;
		json_t *fo = json_object();

		if (x != NULL)
			px = file_bytes(x, &lx);
		if (y != NULL)
			py = file_bytes(y, &ly);
		snprintf(an, sizeof an, "%s%s (version %llu)", x ? "a/" : "/dev/null",
			 x ? names[i] : "", (unsigned long long)v1);
		snprintf(bn, sizeof bn, "%s%s (version %llu)", y ? "b/" : "/dev/null",
			 y ? names[i] : "", (unsigned long long)v2);
		opd_buf_init(&out);
		if (x != NULL && y != NULL &&
		    strcmp(opd_cli_jstr(x, "content_type"), opd_cli_jstr(y, "content_type")) != 0)
			opd_buf_appendf(&out, "content type: %s -> %s\n",
					opd_cli_jstr(x, "content_type"),
					opd_cli_jstr(y, "content_type"));
		changed = opd_cli_diff(px != NULL ? (const char *)px : "", lx,
				       py != NULL ? (const char *)py : "", ly, an, bn, 3, &out);
		status = x == NULL                                ? "added"
			 : y == NULL                              ? "removed"
			 : changed > 0 || opd_buf_avail(&out) > 0 ? "modified"
								  : "unchanged";
		total += changed;
		json_object_set_new(fo, "file", json_string(names[i]));
		json_object_set_new(fo, "status", json_string(status));
		json_object_set_new(fo, "changed_lines", json_integer((json_int_t)changed));
		json_object_set_new(
		    fo, "diff",
		    json_stringn((const char *)opd_buf_rptr(&out), opd_buf_avail(&out)));
		json_array_append_new(arr, fo);
		if (!c->json && opd_buf_avail(&out) > 0)
			fwrite(opd_buf_rptr(&out), 1, opd_buf_avail(&out), stdout);
		opd_buf_fini(&out);
		free(px);
		free(py);
	}
	json_object_set_new(result, "files", arr);
	json_object_set_new(result, "changed_lines", json_integer((json_int_t)total));
	if (c->json)
		opd_cli_print_json(result);
	else if (total == 0 &&
		 strcmp(opd_cli_jstr(va, "config_hash"), opd_cli_jstr(vb, "config_hash")) == 0)
		printf("versions %llu and %llu of %s are identical\n", (unsigned long long)v1,
		       (unsigned long long)v2, a.pos[0]);
	json_decref(result);
	free(names);
	json_decref(va);
	json_decref(vb);
	return OPD_CLI_OK;
}

/* ---- rollback ---- */

static int rollback(struct opd_cli *c, int argc, char **argv)
{
	struct opd_cli_args a;
	json_t *body, *out = NULL;
	uint64_t v;
	char *path, hash[16];
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, NULL, usage_rollback, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 2)
		return opd_cli_usage_error(usage_rollback, "config rollback needs NAME VERSION");
	if (opd_cli_parse_u64(a.pos[1], 1, INT64_MAX, &v) != 0)
		return opd_cli_usage_error(usage_rollback, "VERSION is a positive integer");
	body = json_object();
	json_object_set_new(body, "version", json_integer((json_int_t)v));
	path = config_path(a.pos[0], "/rollback");
	rc = opd_cli_call(c, "POST", path, body, &out, NULL, NULL);
	free(path);
	json_decref(body);
	if (rc != OPD_CLI_OK)
		return rc;
	if (c->json)
		opd_cli_print_json(out);
	else
		printf("%s: version %lld is active (hash %s)\n", a.pos[0],
		       (long long)opd_cli_jint(out, "active_version"),
		       opd_cli_short_hash(opd_cli_jstr(out, "config_hash"), hash, sizeof hash));
	json_decref(out);
	return OPD_CLI_OK;
}

int opd_cli_config(struct opd_cli *c, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : NULL;

	if (sub == NULL)
		return opd_cli_usage_error(usage_config, "config needs a subcommand");
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage_config, stdout);
		return OPD_CLI_OK;
	}
	argc -= 2;
	argv += 2;
	if (strcmp(sub, "push") == 0)
		return push(c, argc, argv);
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return list(c, argc, argv);
	if (strcmp(sub, "show") == 0)
		return show(c, argc, argv);
	if (strcmp(sub, "diff") == 0)
		return diff(c, argc, argv);
	if (strcmp(sub, "rollback") == 0)
		return rollback(c, argc, argv);
	return opd_cli_usage_error(usage_config, "unknown config subcommand %s", sub);
}
