/*
 * "opampd certs list|show|revoke|rotate|rotations|ca": the fleet's certificates, their rotations
 * and the fleet CA as the admin API reports them (issue #4's API, issue #7's CLI).
 *
 * A certificate is "expiring" when less than a third of its own lifetime is left: past the point
 * (two thirds) where automatic renewal should already have replaced it, so 30 days for the
 * default 90-day certificates. The metrics (opampd_agent_certificates) and the web UI use the
 * same rule.
 */
#include "cli.h"

#include "mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WITHIN_S (100ull * 366 * 86400) /* the API's bound for expiring_within */
#define MAX_LISTED_FAILURES 20              /* agents named after a watched rotation */
#define MAX_DETAILED 20                     /* newest rotations whose progress the list fetches */

static const char usage_certs[] =
    "usage: opampd certs list [--agent UID] [--expiring-within DURATION] [--limit N]\n"
    "       opampd certs show SERIAL [--pem]\n"
    "       opampd certs revoke SERIAL [--reason REASON]\n"
    "       opampd certs rotate (--selector KEY=VALUE... | --all-agents) [--watch]\n"
    "       opampd certs rotations [ID] [--watch]\n"
    "       opampd certs ca [--bundle]\n"
    "\n"
    "Run \"opampd certs SUBCOMMAND --help\" for details.\n";

static const char usage_list[] =
    "usage: opampd certs list [options]\n"
    "\n"
    "Certificates the fleet CA issued to agents, by serial (with --expiring-within: the\n"
    "valid, unrevoked ones expiring within that time, soonest first). STATE is valid,\n"
    "expiring (less than a third of its lifetime left: renewal is due), expired or revoked.\n"
    "\n"
    "  --agent UID                  only this agent's (32 hex digits or a UUID)\n"
    "  --expiring-within DURATION   e.g. 30d, 12h, 90m, 3600 (seconds); units s m h d w\n"
    "  --limit N                    at most N (1 to 100000, default 1000)\n";

static const char usage_show[] =
    "usage: opampd certs show SERIAL [--pem]\n"
    "\n"
    "One certificate: agent, subject, validity, issuing CA, revocation, whether the agent\n"
    "connects with it, and the certificate itself (PEM; never a private key).\n"
    "\n"
    "  --pem   print only the certificate, PEM (for openssl x509 -text)\n";

static const char usage_revoke[] =
    "usage: opampd certs revoke SERIAL [--reason REASON]\n"
    "\n"
    "Revoke a certificate: it is listed in the CRL (GET /api/v1/ca/crl) and refused by an\n"
    "mTLS listener from then on.\n"
    "\n"
    "  --reason REASON   an RFC 5280 reason: unspecified (default), keyCompromise,\n"
    "                    cACompromise, affiliationChanged, superseded,\n"
    "                    cessationOfOperation, privilegeWithdrawn\n";

static const char usage_rotate[] =
    "usage: opampd certs rotate (--selector KEY=VALUE... | --all-agents) [--watch]\n"
    "                           [--interval SECS] [--timeout SECS]\n"
    "\n"
    "Give every agent matching the selector a new certificate from the active CA, and print\n"
    "the rotation's id. Agents that send CSRs are asked for one; the others get a new key\n"
    "and certificate in a connection-settings offer; agents that accept neither are\n"
    "reported as unsupported.\n"
    "\n"
    "  --selector KEY=VALUE  agents with this attribute (repeat: all must match)\n"
    "  --all-agents          every agent (needed when there is no --selector)\n"
    "  --watch               show progress until every matched agent acknowledged (it\n"
    "                        reconnected with its new certificate), failed or is\n"
    "                        unsupported; exit 0 when all acknowledged, 1 otherwise or\n"
    "                        when the timeout passed\n"
    "  --interval SECS       between polls (default 2)\n"
    "  --timeout SECS        give up watching after this long (default 600)\n";

static const char usage_rotations[] =
    "usage: opampd certs rotations [ID] [--watch] [--interval SECS] [--timeout SECS]\n"
    "\n"
    "Without ID: every rotation, newest first, with its progress. With ID: that rotation's\n"
    "progress and its agents (pending, offered, acknowledged, failed, unsupported).\n"
    "\n"
    "  --watch          (with ID) as for \"certs rotate --watch\"\n"
    "  --interval SECS  between polls (default 2)\n"
    "  --timeout SECS   give up watching after this long (default 600)\n";

static const char usage_ca[] =
    "usage: opampd certs ca [--bundle]\n"
    "\n"
    "The fleet CA: the active CA, every CA still trusted or retired, the trust bundle\n"
    "offered to agents, the last serial issued and the agent certificate lifetime.\n"
    "\n"
    "  --bundle   print the trust bundle itself (PEM)\n";

/* ---- shared ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* "30d", "12h", "90m", "45s", "2w" or plain seconds, into seconds (at most max). 0 or -1. */
static int parse_duration(const char *s, uint64_t max, uint64_t *out)
{
	static const struct {
		char unit;
		uint64_t secs;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end != '\0') {
		size_t i;
		for (i = 0; i < sizeof units / sizeof units[0]; i++)
			if (end[0] == units[i].unit && end[1] == '\0')
				break;
		if (i == sizeof units / sizeof units[0])
			return -1;
		mul = units[i].secs;
	}
	if (v > max / mul)
		return -1;
	*out = v * mul;
	return 0;
}

/* "in 89d", "in 5h", "3d ago": how far from now a time is, coarse. */
static const char *fmt_until(uint64_t ms, uint64_t now, char *out, size_t cap)
{
	uint64_t d = ms > now ? (ms - now) / 1000 : (now - ms) / 1000;
	char n[32];

	if (ms == 0) {
		snprintf(out, cap, "-");
		return out;
	}
	if (d < 120)
		snprintf(n, sizeof n, "%llus", (unsigned long long)d);
	else if (d < 7200)
		snprintf(n, sizeof n, "%llum", (unsigned long long)(d / 60));
	else if (d < 172800)
		snprintf(n, sizeof n, "%lluh", (unsigned long long)(d / 3600));
	else
		snprintf(n, sizeof n, "%llud", (unsigned long long)(d / 86400));
	snprintf(out, cap, ms > now ? "in %s" : "%s ago", n);
	return out;
}

/* valid, expiring (less than a third of its lifetime left), expired or revoked. */
static const char *cert_state(json_t *c, uint64_t now)
{
	uint64_t nb = (uint64_t)opd_cli_jint(c, "not_before_ms");
	uint64_t na = (uint64_t)opd_cli_jint(c, "not_after_ms");

	if (opd_cli_jbool(c, "revoked"))
		return "revoked";
	if (na <= now)
		return "expired";
	if (na > nb && (na - now) * 3 < na - nb)
		return "expiring";
	return "valid";
}

/* Parse the positional SERIAL (a positive decimal, as the API wants). */
static int parse_serial(const char *s, const char *usage, uint64_t *out)
{
	if (opd_cli_parse_u64(s, 1, UINT64_MAX, out) != 0)
		return opd_cli_usage_error(usage, "SERIAL is a positive decimal number, not %s", s);
	return OPD_CLI_OK;
}

/* "--interval" and "--timeout" of the watching commands, checked. */
static int watch_opts(const struct opd_cli_args *a, const char *usage, uint64_t *interval_ms,
		      uint64_t *timeout_ms)
{
	const char *s;
	uint64_t v;

	*interval_ms = 2000;
	*timeout_ms = 600000;
	if ((s = opd_cli_opt1(a, "--interval")) != NULL) {
		char *end;
		double d;
		errno = 0;
		d = strtod(s, &end);
		if (errno != 0 || *end != '\0' || !(d >= 0.1 && d <= 3600))
			return opd_cli_usage_error(usage, "--interval is 0.1 to 3600 seconds");
		*interval_ms = (uint64_t)(d * 1000);
	}
	if ((s = opd_cli_opt1(a, "--timeout")) != NULL) {
		if (opd_cli_parse_u64(s, 1, 86400, &v) != 0)
			return opd_cli_usage_error(usage, "--timeout is 1 to 86400 seconds");
		*timeout_ms = v * 1000;
	}
	if (!opd_cli_flag(a, "--watch") &&
	    (opd_cli_opt1(a, "--interval") != NULL || opd_cli_opt1(a, "--timeout") != NULL))
		return opd_cli_usage_error(usage, "--interval and --timeout go with --watch");
	return OPD_CLI_OK;
}

/* ---- certs list ---- */

static int certs_list(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {
	    {"--agent", 1, 0}, {"--expiring-within", 1, 0}, {"--limit", 1, 0}, {NULL, 0, 0}};
	static const char *const header[] = {"SERIAL",  "AGENT",  "STATE",      "NOT AFTER",
					     "EXPIRES", "REASON", "FINGERPRINT"};
	struct opd_cli_args a;
	struct opd_buf q, raw;
	const char *v;
	json_t *out = NULL, *cert, *certs;
	uint64_t secs, lim, now = wall_ms();
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_list, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 0)
		return opd_cli_usage_error(usage_list, "certs list takes no arguments");
	opd_buf_init(&q);
	opd_buf_appendf(&q, "/api/v1/certificates");
	if ((v = opd_cli_opt1(&a, "--agent")) != NULL) {
		char *e = opd_cli_escape(v);
		opd_buf_appendf(&q, "?agent=%s", e);
		free(e);
	}
	if ((v = opd_cli_opt1(&a, "--expiring-within")) != NULL) {
		if (parse_duration(v, MAX_WITHIN_S, &secs) != 0) {
			opd_buf_fini(&q);
			return opd_cli_usage_error(
			    usage_list,
			    "--expiring-within wants a duration such as 30d, "
			    "12h or 3600, not %s",
			    v);
		}
		opd_buf_appendf(&q, "%cexpiring_within=%llu", opd_buf_avail(&q) > 20 ? '&' : '?',
				(unsigned long long)secs);
	}
	if ((v = opd_cli_opt1(&a, "--limit")) != NULL) {
		if (opd_cli_parse_u64(v, 1, 100000, &lim) != 0) {
			opd_buf_fini(&q);
			return opd_cli_usage_error(usage_list, "--limit is 1 to 100000");
		}
		opd_buf_appendf(&q, "%climit=%llu", opd_buf_avail(&q) > 20 ? '&' : '?',
				(unsigned long long)lim);
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
		size_t n_state[4] = {0};
		static const char *const states[] = {"valid", "expiring", "expired", "revoked"};

		certs = json_object_get(out, "certificates");
		opd_cli_table_init(&t, 7);
		json_array_foreach(certs, i, cert)
		{
			char serial[24], tm[40], until[32], fp[16];
			const char *row[7], *st = cert_state(cert, now);

			for (size_t k = 0; k < 4; k++)
				n_state[k] += strcmp(st, states[k]) == 0;
			snprintf(serial, sizeof serial, "%lld",
				 (long long)opd_cli_jint(cert, "serial"));
			row[0] = serial;
			row[1] = opd_cli_jstr(cert, "instance_uid");
			row[2] = st;
			row[3] = opd_cli_fmt_time((uint64_t)opd_cli_jint(cert, "not_after_ms"), tm,
						  sizeof tm);
			row[4] = fmt_until((uint64_t)opd_cli_jint(cert, "not_after_ms"), now, until,
					   sizeof until);
			row[5] = opd_cli_jstr(cert, "reason");
			row[6] =
			    opd_cli_short_hash(opd_cli_jstr(cert, "fingerprint"), fp, sizeof fp);
			opd_cli_table_row(&t, row);
		}
		if (t.nrows > 0)
			opd_cli_table_print(&t, header);
		printf("%zu certificate%s", json_array_size(certs),
		       json_array_size(certs) == 1 ? "" : "s");
		if (json_array_size(certs) > 0)
			printf(": %zu valid, %zu expiring, %zu expired, %zu revoked", n_state[0],
			       n_state[1], n_state[2], n_state[3]);
		putchar('\n');
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

/* ---- certs show ---- */

/*
 * Whether the agent connects with this certificate, from the agent's "certificate" (absent on
 * a node that does not report it, or when the agent is connected to another node: "-").
 */
static void print_in_use(struct opd_cli *c, json_t *cert)
{
	json_t *ag = NULL, *ac;
	char path[128], *e;
	long status;

	e = opd_cli_escape(opd_cli_jstr(cert, "instance_uid"));
	snprintf(path, sizeof path, "/api/v1/agents/%s", e);
	free(e);
	if (opd_cli_call_quiet(c, "GET", path, NULL, &ag, &status) != OPD_CLI_OK) {
		printf("in use:        - (the agent is not known to this node)\n");
		json_decref(ag);
		return;
	}
	ac = json_object_get(ag, "certificate");
	if (ac == NULL)
		printf("in use:        - (this node does not report agents' certificates)\n");
	else if (!json_is_integer(json_object_get(ac, "serial")))
		printf("in use:        no (the agent has no certificate on record)\n");
	else if (opd_cli_jint(ac, "serial") != opd_cli_jint(cert, "serial"))
		printf("in use:        no (the agent's current certificate is serial %lld)\n",
		       (long long)opd_cli_jint(ac, "serial"));
	else
		printf("in use:        %s\n",
		       opd_cli_jbool(ac, "in_use")
			   ? "yes (the agent connects with it)"
			   : "not yet (the agent has not connected with it)");
	json_decref(ag);
}

static int certs_show(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {{"--pem", 0, 0}, {NULL, 0, 0}};
	struct opd_cli_args a;
	struct opd_buf raw;
	json_t *out = NULL;
	char path[64], tm[40], until[32];
	uint64_t serial, now = wall_ms();
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_show, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 1)
		return opd_cli_usage_error(usage_show, "certs show needs SERIAL");
	if ((rc = parse_serial(a.pos[0], usage_show, &serial)) != OPD_CLI_OK)
		return rc;
	snprintf(path, sizeof path, "/api/v1/certificates/%llu", (unsigned long long)serial);
	opd_buf_init(&raw);
	rc = opd_cli_call(c, "GET", path, NULL, &out, &raw, NULL);
	if (rc != OPD_CLI_OK) {
		opd_buf_fini(&raw);
		return rc;
	}
	if (opd_cli_flag(&a, "--pem")) {
		fputs(opd_cli_jstr(out, "cert_pem"), stdout);
	} else if (c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
	} else {
		printf("serial:        %lld (0x%s)\n", (long long)opd_cli_jint(out, "serial"),
		       opd_cli_jstr(out, "serial_hex"));
		printf("agent:         %s\n", opd_cli_jstr(out, "instance_uid"));
		printf("subject:       %s\n", opd_cli_jstr(out, "subject"));
		printf("state:         %s\n", cert_state(out, now));
		printf(
		    "not before:    %s\n",
		    opd_cli_fmt_time((uint64_t)opd_cli_jint(out, "not_before_ms"), tm, sizeof tm));
		printf("not after:     %s (%s)\n",
		       opd_cli_fmt_time((uint64_t)opd_cli_jint(out, "not_after_ms"), tm, sizeof tm),
		       fmt_until((uint64_t)opd_cli_jint(out, "not_after_ms"), now, until,
				 sizeof until));
		printf("fingerprint:   %s\n", opd_cli_jstr(out, "fingerprint"));
		printf("issuing CA:    %s\n", opd_cli_jstr(out, "ca_fingerprint"));
		printf("issued:        %s by %s, reason %s",
		       opd_cli_fmt_time((uint64_t)opd_cli_jint(out, "issued_ms"), tm, sizeof tm),
		       opd_cli_jstr(out, "actor"), opd_cli_jstr(out, "reason"));
		if (opd_cli_jstr(out, "rotation_id")[0])
			printf(" (rotation %s)", opd_cli_jstr(out, "rotation_id"));
		putchar('\n');
		if (opd_cli_jbool(out, "revoked"))
			printf("revoked:       %s, reason %s\n",
			       opd_cli_fmt_time((uint64_t)opd_cli_jint(out, "revoked_ms"), tm,
						sizeof tm),
			       opd_cli_jstr(out, "revoke_reason"));
		else
			printf("revoked:       no\n");
		print_in_use(c, out);
		printf("\n%s", opd_cli_jstr(out, "cert_pem"));
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return OPD_CLI_OK;
}

/* ---- certs revoke ---- */

static int certs_revoke(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {{"--reason", 1, 0}, {NULL, 0, 0}};
	struct opd_cli_args a;
	json_t *body, *out = NULL;
	char path[80];
	uint64_t serial;
	const char *reason;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_revoke, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 1)
		return opd_cli_usage_error(usage_revoke, "certs revoke needs SERIAL");
	if ((rc = parse_serial(a.pos[0], usage_revoke, &serial)) != OPD_CLI_OK)
		return rc;
	snprintf(path, sizeof path, "/api/v1/certificates/%llu/revoke", (unsigned long long)serial);
	body = json_object();
	if ((reason = opd_cli_opt1(&a, "--reason")) != NULL)
		json_object_set_new(body, "reason", json_string(reason));
	rc = opd_cli_call(c, "POST", path, body, &out, NULL, NULL);
	json_decref(body);
	if (rc == OPD_CLI_OK) {
		if (c->json)
			opd_cli_print_json(out);
		else
			printf("certificate %llu revoked%s\n", (unsigned long long)serial,
			       opd_cli_jbool(out, "duplicate") ? " (already, by this request)"
							       : "");
	}
	json_decref(out);
	return rc;
}

/* ---- rotations ---- */

static const char *const prog_keys[] = {"acknowledged", "failed", "unsupported", "offered",
					"pending"};

/* The progress bar: # acknowledged, ! failed, ? unsupported, ~ offered, . pending. */
static void progress_bar(json_t *p, char *out, size_t cap)
{
	const size_t w = 30;
	static const char marks[] = "#!?~.";
	size_t total = (size_t)opd_cli_jint(p, "matched"), k = 0, filled = 0;

	if (cap < w + 3)
		return;
	out[k++] = '[';
	for (size_t i = 0; i < 5; i++) {
		size_t n = (size_t)opd_cli_jint(p, prog_keys[i]);
		size_t cells = total ? n * w / total : 0;
		for (size_t j = 0; j < cells && filled < w; j++, filled++)
			out[k++] = marks[i];
	}
	/* Rounding down leaves cells over: they are still pending. */
	for (; filled < w; filled++)
		out[k++] = total ? '.' : '#';
	out[k++] = ']';
	out[k] = '\0';
}

/*
 * 1 when every matched agent is acknowledged, failed or unsupported (and, where the node says,
 * every node answered).
 */
static int rotation_done(json_t *p)
{
	if (json_is_boolean(json_object_get(p, "complete")))
		return opd_cli_jbool(p, "complete");
	return opd_cli_jint(p, "pending") == 0 && opd_cli_jint(p, "offered") == 0;
}

/* One line of progress, or "-" when the node does not report it. */
static void progress_line(json_t *r, struct opd_buf *out)
{
	json_t *p = json_object_get(r, "progress");
	size_t matched = (size_t)opd_cli_jint(p, "matched");
	size_t ack = (size_t)opd_cli_jint(p, "acknowledged");
	char b[40] = "";

	if (!json_is_object(p)) {
		opd_buf_appendf(out, "progress not reported by this node");
		return;
	}
	progress_bar(p, b, sizeof b);
	opd_buf_appendf(out,
			"%s %3zu%%  acknowledged %zu/%zu  offered %lld  pending %lld  failed %lld  "
			"unsupported %lld",
			b, matched ? ack * 100 / matched : 100, ack, matched,
			(long long)opd_cli_jint(p, "offered"),
			(long long)opd_cli_jint(p, "pending"), (long long)opd_cli_jint(p, "failed"),
			(long long)opd_cli_jint(p, "unsupported"));
}

/* The agents that did not take the new certificate, with their messages. */
static void print_stragglers(json_t *r)
{
	json_t *ag;
	size_t i, shown = 0, total = 0;

	json_array_foreach(json_object_get(r, "agents"), i, ag)
	{
		const char *st = opd_cli_jstr(ag, "state");

		if (strcmp(st, "failed") != 0 && strcmp(st, "unsupported") != 0)
			continue;
		total++;
		if (shown++ >= MAX_LISTED_FAILURES)
			continue;
		printf("  %-11s %s%s%s\n", st, opd_cli_jstr(ag, "instance_uid"),
		       opd_cli_jstr(ag, "message")[0] ? ": " : "",
		       opd_cli_jstr(ag, "message")[0]
			   ? opd_cli_jstr(ag, "message")
			   : (strcmp(st, "unsupported") == 0 ? ": cannot take connection settings"
							     : ""));
	}
	if (total > MAX_LISTED_FAILURES)
		printf("  and %zu more (--json lists them all)\n", total - MAX_LISTED_FAILURES);
}

static void rotation_show(json_t *r)
{
	char sel[512], tm[40];
	struct opd_buf line;
	json_t *ag;
	size_t i;

	opd_buf_init(&line);
	progress_line(r, &line);
	opd_buf_append_byte(&line, 0);
	printf("rotation:  %s\n", opd_cli_jstr(r, "rotation_id"));
	printf("selector:  %s\n", opd_cli_fmt_kvs(json_object_get(r, "selector"), sel, sizeof sel));
	printf("started:   %s by %s\n",
	       opd_cli_fmt_time((uint64_t)opd_cli_jint(r, "started_ms"), tm, sizeof tm),
	       opd_cli_jstr(r, "actor"));
	printf("progress:  %s\n", (const char *)opd_buf_rptr(&line));
	opd_buf_fini(&line);
	if (json_array_size(json_object_get(r, "agents")) > 0) {
		struct opd_cli_table t;
		static const char *const header[] = {"INSTANCE_UID", "STATE", "SERIAL", "MESSAGE"};

		opd_cli_table_init(&t, 4);
		json_array_foreach(json_object_get(r, "agents"), i, ag)
		{
			char serial[24] = "";
			const char *row[4];

			if (json_is_integer(json_object_get(ag, "serial")))
				snprintf(serial, sizeof serial, "%lld",
					 (long long)opd_cli_jint(ag, "serial"));
			row[0] = opd_cli_jstr(ag, "instance_uid");
			row[1] = opd_cli_jstr(ag, "state");
			row[2] = serial;
			row[3] = opd_cli_jstr(ag, "message");
			opd_cli_table_row(&t, row);
		}
		putchar('\n');
		opd_cli_table_print(&t, header);
	}
}

/*
 * Poll GET /api/v1/rotations/{id} until every matched agent is acknowledged, failed or
 * unsupported, printing the progress line each time it changes. 0 when all acknowledged, 1
 * when some failed or are unsupported, the timeout passed, or the node does not report
 * progress (nothing would ever say it is done).
 */
static int rotation_watch(struct opd_cli *c, const char *id, uint64_t interval_ms,
			  uint64_t timeout_ms)
{
	uint64_t start = mono_ms();
	struct opd_buf last;
	char path[256], *e;
	int rc;

	e = opd_cli_escape(id);
	snprintf(path, sizeof path, "/api/v1/rotations/%.200s", e);
	free(e);
	opd_buf_init(&last);
	for (;;) {
		json_t *r = NULL, *p;
		struct opd_buf text;
		int done;

		if ((rc = opd_cli_call(c, "GET", path, NULL, &r, NULL, NULL)) != OPD_CLI_OK)
			break;
		p = json_object_get(r, "progress");
		opd_buf_init(&text);
		if (c->json) {
			char *j = json_dumps(r, JSON_COMPACT);
			opd_buf_appendf(&text, "%s\n", j);
			free(j);
		} else {
			progress_line(r, &text);
			opd_buf_appendf(&text, "\n");
		}
		/* Only what changed, so the output reads as a log of the progress. */
		if (opd_buf_avail(&text) != opd_buf_avail(&last) ||
		    memcmp(opd_buf_rptr(&text), opd_buf_rptr(&last), opd_buf_avail(&text)) != 0) {
			fwrite(opd_buf_rptr(&text), 1, opd_buf_avail(&text), stdout);
			fflush(stdout);
			opd_buf_reset(&last);
			opd_buf_append(&last, opd_buf_rptr(&text), opd_buf_avail(&text));
		}
		opd_buf_fini(&text);
		if (!json_is_object(p)) {
			fprintf(stderr,
				"opampd: this node does not report rotation progress: cannot "
				"watch rotation %s\n",
				id);
			json_decref(r);
			rc = OPD_CLI_API;
			break;
		}
		done = rotation_done(p);
		if (done) {
			size_t bad =
			    (size_t)(opd_cli_jint(p, "failed") + opd_cli_jint(p, "unsupported"));
			if (!c->json) {
				if (opd_cli_jint(p, "matched") == 0)
					printf("rotation %s: no agent matches its selector\n", id);
				else if (bad == 0)
					printf("rotation %s complete: every agent acknowledged its "
					       "new "
					       "certificate\n",
					       id);
				else
					printf(
					    "rotation %s finished: %lld failed, %lld unsupported "
					    "(they keep their certificates)\n",
					    id, (long long)opd_cli_jint(p, "failed"),
					    (long long)opd_cli_jint(p, "unsupported"));
				print_stragglers(r);
			}
			json_decref(r);
			rc = bad ? OPD_CLI_API : OPD_CLI_OK;
			break;
		}
		json_decref(r);
		if (mono_ms() - start + interval_ms > timeout_ms) {
			fprintf(stderr, "opampd: rotation %s not complete after %llu s\n", id,
				(unsigned long long)(timeout_ms / 1000));
			rc = OPD_CLI_API;
			break;
		}
		pause_ms(interval_ms);
	}
	opd_buf_fini(&last);
	return rc;
}

static int certs_rotate(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {{"--selector", 1, 1}, {"--all-agents", 0, 0},
						       {"--watch", 0, 0},    {"--interval", 1, 0},
						       {"--timeout", 1, 0},  {NULL, 0, 0}};
	struct opd_cli_args a;
	const char *const *sels;
	size_t n_sel;
	uint64_t interval_ms, timeout_ms;
	json_t *body, *sel, *out = NULL;
	char id[128], kvs[512];
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_rotate, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 0)
		return opd_cli_usage_error(usage_rotate, "certs rotate takes no arguments");
	if ((rc = watch_opts(&a, usage_rotate, &interval_ms, &timeout_ms)) != OPD_CLI_OK)
		return rc;
	sels = opd_cli_opt(&a, "--selector", &n_sel);
	/* Every agent's certificate at once is a big step: it must be asked for by name. */
	if (n_sel == 0 && !opd_cli_flag(&a, "--all-agents"))
		return opd_cli_usage_error(
		    usage_rotate, "say which agents: --selector KEY=VALUE or --all-agents");
	if (n_sel > 0 && opd_cli_flag(&a, "--all-agents"))
		return opd_cli_usage_error(usage_rotate,
					   "--selector and --all-agents exclude each other");
	sel = json_object();
	for (size_t i = 0; i < n_sel; i++) {
		const char *eq = strchr(sels[i], '=');
		char *key;
		if (eq == NULL || eq == sels[i]) {
			json_decref(sel);
			return opd_cli_usage_error(usage_rotate,
						   "--selector wants KEY=VALUE, not %s", sels[i]);
		}
		key = opd_xstrndup(sels[i], (size_t)(eq - sels[i]));
		json_object_set_new(sel, key, json_string(eq + 1));
		free(key);
	}
	body = json_object();
	json_object_set_new(body, "selector", sel);
	rc = opd_cli_call(c, "POST", "/api/v1/rotations", body, &out, NULL, NULL);
	json_decref(body);
	if (rc != OPD_CLI_OK) {
		json_decref(out);
		return rc;
	}
	snprintf(id, sizeof id, "%s", opd_cli_jstr(out, "rotation_id"));
	if (c->json) {
		char *j =
		    json_dumps(out, opd_cli_flag(&a, "--watch") ? JSON_COMPACT : JSON_INDENT(2));
		if (j != NULL)
			puts(j);
		free(j);
	} else {
		printf("rotation %s started for %s%s\n", id,
		       n_sel ? "agents matching " : "every agent",
		       n_sel ? opd_cli_fmt_kvs(json_object_get(out, "selector"), kvs, sizeof kvs)
			     : "");
		if (!opd_cli_flag(&a, "--watch"))
			printf("follow it with: opampd certs rotations %s --watch\n", id);
	}
	json_decref(out);
	if (!opd_cli_flag(&a, "--watch"))
		return OPD_CLI_OK;
	if (id[0] == '\0') {
		fprintf(stderr, "opampd: the API did not name the rotation: cannot watch it\n");
		return OPD_CLI_API;
	}
	return rotation_watch(c, id, interval_ms, timeout_ms);
}

static int certs_rotations(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {
	    {"--watch", 0, 0}, {"--interval", 1, 0}, {"--timeout", 1, 0}, {NULL, 0, 0}};
	static const char *const header[] = {"ROTATION", "SELECTOR", "STARTED", "PROGRESS"};
	struct opd_cli_args a;
	struct opd_buf raw;
	uint64_t interval_ms, timeout_ms;
	json_t *out = NULL, *r;
	char path[256], *e;
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_rotations, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos > 1)
		return opd_cli_usage_error(usage_rotations, "certs rotations takes at most one ID");
	if ((rc = watch_opts(&a, usage_rotations, &interval_ms, &timeout_ms)) != OPD_CLI_OK)
		return rc;
	if (a.n_pos == 0 && opd_cli_flag(&a, "--watch"))
		return opd_cli_usage_error(usage_rotations, "--watch needs a rotation ID");
	if (a.n_pos == 1 && strlen(a.pos[0]) > 64)
		return opd_cli_usage_error(usage_rotations,
					   "a rotation ID is at most 64 characters");
	if (a.n_pos == 1 && opd_cli_flag(&a, "--watch"))
		return rotation_watch(c, a.pos[0], interval_ms, timeout_ms);
	if (a.n_pos == 1) {
		e = opd_cli_escape(a.pos[0]);
		snprintf(path, sizeof path, "/api/v1/rotations/%s", e);
		free(e);
	} else {
		snprintf(path, sizeof path, "/api/v1/rotations");
	}
	opd_buf_init(&raw);
	rc = opd_cli_call(c, "GET", path, NULL, &out, &raw, NULL);
	if (rc == OPD_CLI_OK && c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
	} else if (rc == OPD_CLI_OK && a.n_pos == 1) {
		rotation_show(out);
	} else if (rc == OPD_CLI_OK) {
		struct opd_cli_table t;
		json_t *list = json_object_get(out, "rotations");

		opd_cli_table_init(&t, 4);
		json_array_foreach(list, i, r)
		{
			char sel[512], tm[40], prog[64];
			json_t *p = json_object_get(r, "progress"), *one = NULL;
			const char *row[4];

			/* Without progress in the list: the newest rotations' own. */
			if (!json_is_object(p) && i < MAX_DETAILED) {
				long status;
				e = opd_cli_escape(opd_cli_jstr(r, "rotation_id"));
				snprintf(path, sizeof path, "/api/v1/rotations/%.200s", e);
				free(e);
				if (opd_cli_call_quiet(c, "GET", path, NULL, &one, &status) ==
				    OPD_CLI_OK)
					p = json_object_get(one, "progress");
			}

			if (json_is_object(p))
				snprintf(prog, sizeof prog, "%lld/%lld acknowledged%s",
					 (long long)opd_cli_jint(p, "acknowledged"),
					 (long long)opd_cli_jint(p, "matched"),
					 rotation_done(p) ? "" : ", in progress");
			else
				snprintf(prog, sizeof prog, "-");
			row[0] = opd_cli_jstr(r, "rotation_id");
			row[1] = opd_cli_fmt_kvs(json_object_get(r, "selector"), sel, sizeof sel);
			row[2] = opd_cli_fmt_time((uint64_t)opd_cli_jint(r, "started_ms"), tm,
						  sizeof tm);
			row[3] = prog;
			opd_cli_table_row(&t, row);
			json_decref(one);
		}
		if (t.nrows > 0)
			opd_cli_table_print(&t, header);
		printf("%zu rotation%s\n", json_array_size(list),
		       json_array_size(list) == 1 ? "" : "s");
	}
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

/* ---- certs ca ---- */

static int certs_ca(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec specs[] = {{"--bundle", 0, 0}, {NULL, 0, 0}};
	static const char *const header[] = {"FINGERPRINT", "STATE", "NOT AFTER", "KEY HERE",
					     "SUBJECT"};
	struct opd_cli_args a;
	struct opd_buf raw;
	json_t *out = NULL, *act, *ca;
	char tm[40], until[32];
	uint64_t now = wall_ms();
	size_t i;
	int rc;

	if ((rc = opd_cli_parse(c, argc, argv, specs, usage_ca, &a)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.n_pos != 0)
		return opd_cli_usage_error(usage_ca, "certs ca takes no arguments");
	opd_buf_init(&raw);
	if (opd_cli_flag(&a, "--bundle")) {
		rc = opd_cli_call(c, "GET", "/api/v1/ca/bundle", NULL, &out, &raw, NULL);
		if (rc == OPD_CLI_OK)
			fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		goto done;
	}
	rc = opd_cli_call(c, "GET", "/api/v1/ca", NULL, &out, &raw, NULL);
	if (rc != OPD_CLI_OK)
		goto done;
	if (c->json) {
		fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
		putchar('\n');
		goto done;
	}
	act = json_object_get(out, "active");
	if (json_is_object(act)) {
		printf("active CA:     %s\n", opd_cli_jstr(act, "subject"));
		printf("fingerprint:   %s\n", opd_cli_jstr(act, "fingerprint"));
		printf("valid until:   %s (%s)\n",
		       opd_cli_fmt_time((uint64_t)opd_cli_jint(act, "not_after_ms"), tm, sizeof tm),
		       fmt_until((uint64_t)opd_cli_jint(act, "not_after_ms"), now, until,
				 sizeof until));
		printf("signs here:    %s\n",
		       opd_cli_jbool(act, "key_here")
			   ? "yes (this node holds its key)"
			   : "no (this node does not hold its key: it cannot sign as leader)");
	} else {
		printf("active CA:     none registered yet\n");
	}
	printf("trust bundle:  %zu CA%s (opampd certs ca --bundle)\n",
	       json_array_size(json_object_get(out, "trust_bundle")),
	       json_array_size(json_object_get(out, "trust_bundle")) == 1 ? "" : "s");
	printf("last serial:   %lld\n", (long long)opd_cli_jint(out, "last_serial"));
	printf("lifetime:      %lld days per agent certificate\n",
	       (long long)(opd_cli_jint(out, "certificate_lifetime_s") / 86400));
	if (json_array_size(json_object_get(out, "cas")) > 0) {
		struct opd_cli_table t;

		opd_cli_table_init(&t, 5);
		json_array_foreach(json_object_get(out, "cas"), i, ca)
		{
			char fp[16];
			const char *row[5];

			row[0] = opd_cli_short_hash(opd_cli_jstr(ca, "fingerprint"), fp, sizeof fp);
			row[1] = opd_cli_jstr(ca, "state");
			row[2] = opd_cli_fmt_time((uint64_t)opd_cli_jint(ca, "not_after_ms"), tm,
						  sizeof tm);
			row[3] = opd_cli_jbool(ca, "key_here") ? "yes" : "no";
			row[4] = opd_cli_jstr(ca, "subject");
			opd_cli_table_row(&t, row);
		}
		putchar('\n');
		opd_cli_table_print(&t, header);
	}
done:
	opd_buf_fini(&raw);
	json_decref(out);
	return rc;
}

int opd_cli_certs(struct opd_cli *c, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : NULL;

	if (sub == NULL)
		return opd_cli_usage_error(usage_certs, "certs needs a subcommand");
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage_certs, stdout);
		return OPD_CLI_OK;
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return certs_list(c, argc - 2, argv + 2);
	if (strcmp(sub, "show") == 0)
		return certs_show(c, argc - 2, argv + 2);
	if (strcmp(sub, "revoke") == 0)
		return certs_revoke(c, argc - 2, argv + 2);
	if (strcmp(sub, "rotate") == 0)
		return certs_rotate(c, argc - 2, argv + 2);
	if (strcmp(sub, "rotations") == 0)
		return certs_rotations(c, argc - 2, argv + 2);
	if (strcmp(sub, "ca") == 0)
		return certs_ca(c, argc - 2, argv + 2);
	return opd_cli_usage_error(usage_certs, "unknown certs subcommand %s", sub);
}
