/* The CLI's shared machinery: dispatch, options, where the node is, the HTTP call, tables. */
#include "cli.h"

#include "mem.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:4321"
#define DEFAULT_DATA_DIR "./opampd-data"
#define DEFAULT_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 5000

static const char usage_top[] =
    "usage: opampd config   push|list|show|diff|rollback ...   configurations\n"
    "       opampd agents   list|show ...                      agents and their health\n"
    "       opampd cluster  status|add|promote|remove|transfer  the raft cluster\n"
    "       opampd rollout  status NAME [--watch]               a configuration's rollout\n"
    "       opampd certs    list|show|revoke|rotate|rotations|ca\n"
    "                                                          agent certificates, fleet CA\n"
    "\n"
    "Every command takes these options (after the subcommand):\n"
    "  --url URL            admin API (default: $OPAMPD_URL, else the admin port in\n"
    "                       DATA_DIR/ready.json, else " DEFAULT_URL ")\n"
    "  --token TOKEN        admin bearer token (default: $OPAMPD_TOKEN, else\n"
    "                       DATA_DIR/admin.token)\n"
    "  --data-dir DIR       the local node's data directory (default " DEFAULT_DATA_DIR ")\n"
    "  --json               print the API's JSON instead of tables\n"
    "  --idempotency-key K  the key sent with a write (default: random, printed when the\n"
    "                       outcome is unknown, so the same command can be retried safely)\n"
    "  --http-timeout SECS  per request (default 30)\n"
    "  --cacert FILE        CA certificates for an https:// admin API (default: the\n"
    "                       system's; also $OPAMPD_CACERT)\n"
    "  -h, --help           help for the command\n"
    "\n"
    "Exit status: 0 ok, 1 the API refused or failed, 2 usage error, 3 cannot connect.\n";

const char *opd_cli_usage(void)
{
	return usage_top;
}

int opd_cli_is_command(const char *name)
{
	return strcmp(name, "config") == 0 || strcmp(name, "agents") == 0 ||
	       strcmp(name, "cluster") == 0 || strcmp(name, "rollout") == 0 ||
	       strcmp(name, "certs") == 0;
}

/* ---- options ---- */

int opd_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int opd_cli_parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || s[0] == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

int opd_cli_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;

	fputs("opampd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (usage != NULL)
		fputs(usage, stderr);
	return OPD_CLI_USAGE;
}

static void resolve(struct opd_cli *c);

static const struct opd_cli_optspec globals[] = {
    {"--url", 1, 0},
    {"--token", 1, 0},
    {"--data-dir", 1, 0},
    {"--json", 0, 0},
    {"--idempotency-key", 1, 0},
    {"--http-timeout", 1, 0},
    {"--cacert", 1, 0},
    {NULL, 0, 0},
};

static int set_global(struct opd_cli *c, const char *name, const char *v, const char *usage)
{
	const char **slot = NULL;

	if (strcmp(name, "--json") == 0) {
		c->json = 1;
		return 0;
	}
	if (strcmp(name, "--url") == 0)
		slot = &c->url_flag;
	else if (strcmp(name, "--token") == 0)
		slot = &c->token_flag;
	else if (strcmp(name, "--data-dir") == 0)
		slot = &c->data_dir;
	else if (strcmp(name, "--idempotency-key") == 0)
		slot = &c->idem_flag;
	else if (strcmp(name, "--cacert") == 0)
		slot = &c->cacert;
	else
		slot = &c->timeout_flag;
	if (*slot != NULL)
		return opd_cli_usage_error(usage, "%s given twice", name);
	*slot = v;
	return 0;
}

int opd_cli_parse(struct opd_cli *c, int argc, char **argv, const struct opd_cli_optspec *specs,
		  const char *usage, struct opd_cli_args *out)
{
	int only_pos = 0;

	*out = (struct opd_cli_args){.specs = specs};
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq, *v = NULL;
		char name[64];
		size_t k, nlen;
		int global = -1, has_value;

		if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
			if (out->n_pos == OPD_CLI_MAX_POS)
				return opd_cli_usage_error(usage, "too many arguments");
			out->pos[out->n_pos++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage, stdout);
			return -1;
		}
		/* "--name=value" as well as "--name value". */
		eq = strchr(a, '=');
		nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
		if (nlen >= sizeof name)
			return opd_cli_usage_error(usage, "unknown option %.64s", a);
		memcpy(name, a, nlen);
		name[nlen] = '\0';
		for (k = 0; specs != NULL && specs[k].name != NULL; k++)
			if (strcmp(specs[k].name, name) == 0)
				break;
		if (specs == NULL || specs[k].name == NULL) {
			for (size_t g = 0; globals[g].name != NULL; g++)
				if (strcmp(globals[g].name, name) == 0)
					global = (int)g;
			if (global < 0)
				return opd_cli_usage_error(usage, "unknown option %s", name);
			has_value = globals[global].has_value;
		} else {
			has_value = specs[k].has_value;
		}
		if (has_value) {
			if (eq != NULL)
				v = eq + 1;
			else if (i + 1 < argc)
				v = argv[++i];
			else
				return opd_cli_usage_error(usage, "%s needs a value", name);
		} else if (eq != NULL) {
			return opd_cli_usage_error(usage, "%s takes no value", name);
		}
		if (global >= 0) {
			int rc = set_global(c, name, v, usage);
			if (rc != 0)
				return rc;
			continue;
		}
		if (k >= OPD_CLI_MAX_OPTS)
			return opd_cli_usage_error(usage, "internal: too many options");
		if (out->n_vals[k] > 0 && !specs[k].repeat)
			return opd_cli_usage_error(usage, "%s given twice", name);
		if (out->n_vals[k] == OPD_CLI_MAX_REPEAT)
			return opd_cli_usage_error(usage, "%s given more than %d times", name,
						   OPD_CLI_MAX_REPEAT);
		out->vals[k][out->n_vals[k]++] = v;
	}
	if (c->timeout_flag != NULL) {
		uint64_t s;
		if (opd_cli_parse_u64(c->timeout_flag, 1, 3600, &s) != 0)
			return opd_cli_usage_error(usage,
						   "--http-timeout must be 1 to 3600 seconds");
		c->timeout_ms = (long)s * 1000;
	}
	resolve(c);
	return OPD_CLI_OK;
}

const char *const *opd_cli_opt(const struct opd_cli_args *a, const char *name, size_t *n)
{
	for (size_t k = 0; a->specs != NULL && a->specs[k].name != NULL; k++) {
		if (strcmp(a->specs[k].name, name) == 0) {
			*n = a->n_vals[k];
			return a->n_vals[k] > 0 ? a->vals[k] : NULL;
		}
	}
	*n = 0;
	return NULL;
}

const char *opd_cli_opt1(const struct opd_cli_args *a, const char *name)
{
	size_t n;
	const char *const *v = opd_cli_opt(a, name, &n);

	return v != NULL ? v[0] : NULL;
}

int opd_cli_flag(const struct opd_cli_args *a, const char *name)
{
	size_t n;

	opd_cli_opt(a, name, &n);
	return n > 0;
}

/* ---- where the node is ---- */

/* Read a small file, trimmed of trailing white space. 0, or -1 when unreadable or empty. */
static int read_small(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(out, 1, cap - 1, f);
	fclose(f);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' ||
			 out[n - 1] == '\t'))
		n--;
	out[n] = '\0';
	return n > 0 ? 0 : -1;
}

/*
 * The ready file a node wrote (--ready-file DATA_DIR/ready.json) names its admin port. It is
 * only believed while the process it names is alive: a stale file from a stopped node would
 * send the CLI to a port that now belongs to something else.
 */
static int url_from_ready(const char *dir, char *out, size_t cap)
{
	char path[4096], text[1024];
	json_t *j;
	json_int_t port, pid;

	if (snprintf(path, sizeof path, "%s/ready.json", dir) >= (int)sizeof path ||
	    read_small(path, text, sizeof text) != 0)
		return -1;
	j = json_loads(text, 0, NULL);
	port = json_integer_value(json_object_get(j, "admin_port"));
	pid = json_integer_value(json_object_get(j, "pid"));
	json_decref(j);
	if (port <= 0 || port > 65535 || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
		return -1;
	snprintf(out, cap, "http://127.0.0.1:%d", (int)port);
	return 0;
}

static void resolve(struct opd_cli *c)
{
	const char *dir = c->data_dir != NULL ? c->data_dir : DEFAULT_DATA_DIR;
	const char *env;
	char path[4096];
	size_t n;

	if (c->url_flag != NULL)
		snprintf(c->url, sizeof c->url, "%s", c->url_flag);
	else if ((env = getenv("OPAMPD_URL")) != NULL && env[0] != '\0')
		snprintf(c->url, sizeof c->url, "%s", env);
	else if (url_from_ready(dir, c->url, sizeof c->url) != 0)
		snprintf(c->url, sizeof c->url, "%s", DEFAULT_URL);
	n = strlen(c->url);
	while (n > 0 && c->url[n - 1] == '/')
		c->url[--n] = '\0';

	c->token[0] = '\0';
	if (c->token_flag != NULL) {
		snprintf(c->token, sizeof c->token, "%s", c->token_flag);
		snprintf(c->token_source, sizeof c->token_source, "--token");
	} else if ((env = getenv("OPAMPD_TOKEN")) != NULL && env[0] != '\0') {
		snprintf(c->token, sizeof c->token, "%s", env);
		snprintf(c->token_source, sizeof c->token_source, "OPAMPD_TOKEN");
	} else if (snprintf(path, sizeof path, "%s/admin.token", dir) < (int)sizeof path &&
		   read_small(path, c->token, sizeof c->token) == 0) {
		snprintf(c->token_source, sizeof c->token_source, "%.40s/admin.token",
			 strlen(dir) > 40 ? "DATA_DIR" : dir);
	} else {
		c->token[0] = '\0';
	}

	if (c->cacert == NULL && (env = getenv("OPAMPD_CACERT")) != NULL && env[0] != '\0')
		c->cacert = env;
	if (c->idem_flag != NULL) {
		snprintf(c->idem_key, sizeof c->idem_key, "%s", c->idem_flag);
	} else {
		uint8_t raw[16];
		/* getrandom blocks only before the kernel's pool is initialised, at boot. */
		if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
			/* Unique enough for one operator's retries: never reused in practice. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			snprintf(c->idem_key, sizeof c->idem_key, "cli-%lx-%lx-%lx", (long)getpid(),
				 (long)ts.tv_sec, (long)ts.tv_nsec);
			return;
		}
		memcpy(c->idem_key, "cli-", 4);
		for (size_t i = 0; i < sizeof raw; i++)
			snprintf(c->idem_key + 4 + 2 * i, 3, "%02x", raw[i]);
	}
}

/* ---- HTTP ---- */

struct sink {
	struct opd_buf *buf;
	int too_big;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *data)
{
	struct sink *s = data;
	size_t n = size * nmemb;

	/* The answer's size is the server's choice: stop reading past a fixed bound. */
	if (opd_buf_avail(s->buf) + n > OPD_CLI_MAX_BODY) {
		s->too_big = 1;
		return 0;
	}
	opd_buf_append(s->buf, p, n);
	return n;
}

char *opd_cli_escape(const char *s)
{
	static const char safe[] = "-._~";
	size_t n = strlen(s);
	char *out = opd_xmalloc(3 * n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || strchr(safe, ch) != NULL) {
			*o++ = (char)ch;
		} else {
			snprintf(o, 4, "%%%02X", ch);
			o += 3;
		}
	}
	*o = '\0';
	return out;
}

/* Print the API's error answer in one line (and its position for a configuration error). */
static void print_api_error(struct opd_cli *c, long status, json_t *j, const struct opd_buf *raw,
			    const char *method, const char *path)
{
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *file = json_string_value(json_object_get(e, "file"));
	json_int_t line = json_integer_value(json_object_get(e, "line"));
	json_int_t col = json_integer_value(json_object_get(e, "column"));

	if (code == NULL) {
		/* Not our API's error shape (a proxy, another server): show the start of it. */
		int n =
		    raw == NULL ? 0 : (int)(opd_buf_avail(raw) > 200 ? 200 : opd_buf_avail(raw));
		fprintf(stderr, "opampd: %s %s: HTTP %ld %.*s\n", method, path, status, n,
			raw != NULL ? (const char *)opd_buf_rptr(raw) : "");
		return;
	}
	fprintf(stderr, "opampd: %s", code);
	/* The server's message may already say where; do not say it twice. */
	if (file != NULL && (msg == NULL || strstr(msg, file) == NULL)) {
		fprintf(stderr, ": %s", file);
		if (line > 0)
			fprintf(stderr, ":%lld:%lld", (long long)line, (long long)col);
	}
	fprintf(stderr, ": %s (HTTP %ld)\n", msg != NULL ? msg : "", status);
	if (status == 401) {
		if (c->token[0] == '\0')
			fprintf(stderr,
				"opampd: no token was sent: pass --token, set OPAMPD_TOKEN, "
				"or point --data-dir at the node's data directory\n");
		else
			fprintf(stderr, "opampd: the token from %s was refused\n", c->token_source);
	}
	if (strcmp(code, "outcome_unknown") == 0 ||
	    (strcmp(code, "read_only") == 0 && strcmp(method, "GET") != 0))
		fprintf(stderr,
			"opampd: run the same command again with --idempotency-key %s: it will not "
			"apply the change twice\n",
			c->idem_key);
}

void opd_cli_print_error(struct opd_cli *c, long status, json_t *err, const struct opd_buf *raw,
			 const char *method, const char *path)
{
	if (c->json && err != NULL)
		opd_cli_print_json(err);
	print_api_error(c, status, err, raw, method, path);
}

static int call(struct opd_cli *c, const char *method, const char *path, json_t *body, json_t **out,
		struct opd_buf *raw_out, long *status_out, int quiet)
{
	CURL *curl;
	struct curl_slist *hdrs = NULL;
	struct opd_buf resp;
	struct sink sink;
	char url[2048], hdr[512], errbuf[CURL_ERROR_SIZE] = "";
	char *text = NULL;
	long status = 0;
	CURLcode res;
	json_t *j;
	int rc;

	if (status_out != NULL)
		*status_out = 0;
	if (c->curl == NULL) {
		c->curl = curl_easy_init();
		if (c->curl == NULL) {
			fprintf(stderr, "opampd: cannot initialise libcurl\n");
			return OPD_CLI_CONNECT;
		}
	}
	curl = c->curl;
	curl_easy_reset(curl);
	if (snprintf(url, sizeof url, "%s%s", c->url, path) >= (int)sizeof url) {
		fprintf(stderr, "opampd: URL too long\n");
		return OPD_CLI_USAGE;
	}
	opd_buf_init(&resp);
	sink = (struct sink){&resp, 0};
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
			 c->timeout_ms > 0 ? c->timeout_ms : (long)DEFAULT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "opampd-cli");
	if (c->cacert != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, c->cacert);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (c->token[0] != '\0') {
		snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, hdr);
	}
	if (strcmp(method, "GET") != 0) {
		snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", c->idem_key);
		hdrs = curl_slist_append(hdrs, hdr);
		text = body != NULL ? json_dumps(body, JSON_COMPACT) : opd_xstrdup("{}");
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		/* libcurl would otherwise wait a second for "100 Continue" on large bodies. */
		hdrs = curl_slist_append(hdrs, "Expect:");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	res = curl_easy_perform(curl);
	curl_slist_free_all(hdrs);
	free(text);
	if (res != CURLE_OK) {
		if (sink.too_big)
			fprintf(stderr, "opampd: %s %s: the answer is larger than %u MiB\n", method,
				path, OPD_CLI_MAX_BODY >> 20);
		else
			fprintf(stderr,
				"opampd: cannot reach the admin API at %s: %s (is opampd running? "
				"set --url or OPAMPD_URL)\n",
				c->url, errbuf[0] ? errbuf : curl_easy_strerror(res));
		opd_buf_fini(&resp);
		return OPD_CLI_CONNECT;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status_out != NULL)
		*status_out = status;
	j = json_loadb((const char *)opd_buf_rptr(&resp), opd_buf_avail(&resp), 0, NULL);
	if (status >= 200 && status < 300) {
		if (out != NULL)
			*out = j != NULL ? j : json_null();
		else
			json_decref(j);
		if (raw_out != NULL)
			opd_buf_append(raw_out, opd_buf_rptr(&resp), opd_buf_avail(&resp));
		rc = OPD_CLI_OK;
	} else if (quiet) {
		if (out != NULL)
			*out = j;
		else
			json_decref(j);
		rc = OPD_CLI_API;
	} else {
		opd_cli_print_error(c, status, j, &resp, method, path);
		json_decref(j);
		rc = OPD_CLI_API;
	}
	opd_buf_fini(&resp);
	return rc;
}

int opd_cli_call(struct opd_cli *c, const char *method, const char *path, json_t *body,
		 json_t **out, struct opd_buf *raw, long *status)
{
	return call(c, method, path, body, out, raw, status, 0);
}

int opd_cli_call_quiet(struct opd_cli *c, const char *method, const char *path, json_t *body,
		       json_t **out, long *status)
{
	return call(c, method, path, body, out, NULL, status, 1);
}

void opd_cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (s != NULL) {
		puts(s);
		free(s);
	}
}

/* ---- tables and formatting ---- */

void opd_cli_table_init(struct opd_cli_table *t, size_t ncols)
{
	*t = (struct opd_cli_table){.ncols = ncols};
}

void opd_cli_table_row(struct opd_cli_table *t, const char *const *cells)
{
	t->cells = opd_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *t->cells);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = cells[i] != NULL && cells[i][0] != '\0' ? cells[i] : "-";
		char *copy = opd_xstrdup(s);
		/* One row per line: a newline or tab from an agent must not break the layout. */
		for (char *p = copy; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
		t->cells[t->nrows * t->ncols + i] = copy;
	}
	t->nrows++;
}

/* Display width of UTF-8 text: one column per code point (close enough for a table). */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void opd_cli_table_print(struct opd_cli_table *t, const char *const *header)
{
	size_t *w = opd_xcalloc(t->ncols, sizeof *w);

	for (size_t i = 0; i < t->ncols; i++)
		w[i] = width(header[i]);
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t n = width(t->cells[r * t->ncols + i]);
			if (n > w[i])
				w[i] = n;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = r == 0 ? header[i] : t->cells[(r - 1) * t->ncols + i];
			fputs(s, stdout);
			if (i + 1 < t->ncols)
				printf("%*s", (int)(w[i] - width(s) + 2), "");
		}
		putchar('\n');
	}
	for (size_t k = 0; k < t->nrows * t->ncols; k++)
		free(t->cells[k]);
	free(t->cells);
	free(w);
	*t = (struct opd_cli_table){0};
}

const char *opd_cli_fmt_time(uint64_t unix_ms, char *out, size_t cap)
{
	time_t s = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (unix_ms == 0 || gmtime_r(&s, &tm) == NULL) {
		snprintf(out, cap, "-");
		return out;
	}
	strftime(out, cap, "%Y-%m-%d %H:%M:%SZ", &tm);
	return out;
}

const char *opd_cli_fmt_age(uint64_t unix_ms, char *out, size_t cap)
{
	struct timespec ts;
	uint64_t now, d;

	if (unix_ms == 0) {
		snprintf(out, cap, "never");
		return out;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	d = now > unix_ms ? (now - unix_ms) / 1000 : 0;
	if (d < 120)
		snprintf(out, cap, "%llus ago", (unsigned long long)d);
	else if (d < 7200)
		snprintf(out, cap, "%llum ago", (unsigned long long)(d / 60));
	else if (d < 172800)
		snprintf(out, cap, "%lluh ago", (unsigned long long)(d / 3600));
	else
		snprintf(out, cap, "%llud ago", (unsigned long long)(d / 86400));
	return out;
}

const char *opd_cli_fmt_kvs(json_t *obj, char *out, size_t cap)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	out[0] = '\0';
	if (json_object_size(obj) == 0) {
		snprintf(out, cap, "*");
		return out;
	}
	/* Sorted keys: the same selector always prints the same way. */
	const char **keys = opd_xcalloc(json_object_size(obj), sizeof *keys);
	size_t nk = 0;
	json_object_foreach(obj, k, v)
	{
		keys[nk++] = k;
	}
	for (size_t i = 1; i < nk; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (size_t i = 0; i < nk && n < cap; i++) {
		const char *val = json_string_value(json_object_get(obj, keys[i]));
		int w = snprintf(out + n, cap - n, "%s%s=%s", i ? "," : "", keys[i],
				 val != NULL ? val : "");
		if (w < 0)
			break;
		n += (size_t)w;
	}
	free(keys);
	return out;
}

const char *opd_cli_short_hash(const char *hex, char *out, size_t cap)
{
	snprintf(out, cap, "%.12s", hex != NULL && hex[0] ? hex : "-");
	return out;
}

const char *opd_cli_jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

int64_t opd_cli_jint(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

int opd_cli_jbool(json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key));
}

/* ---- entry ---- */

int opd_cli_main(int argc, char **argv)
{
	struct opd_cli c = {0};
	int rc;

	if (argc < 1 || !opd_cli_is_command(argv[0]))
		return opd_cli_usage_error(usage_top, "unknown command");

	/* A closed pipe (opampd agents list | head) must end us quietly, not with SIGPIPE noise. */
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "opampd: cannot initialise libcurl\n");
		return OPD_CLI_CONNECT;
	}
	if (strcmp(argv[0], "config") == 0)
		rc = opd_cli_config(&c, argc, argv);
	else if (strcmp(argv[0], "agents") == 0)
		rc = opd_cli_agents(&c, argc, argv);
	else if (strcmp(argv[0], "cluster") == 0)
		rc = opd_cli_cluster(&c, argc, argv);
	else if (strcmp(argv[0], "certs") == 0)
		rc = opd_cli_certs(&c, argc, argv);
	else
		rc = opd_cli_rollout(&c, argc, argv);
	if (c.curl != NULL)
		curl_easy_cleanup(c.curl);
	curl_global_cleanup();
	fflush(stdout);
	return rc;
}
