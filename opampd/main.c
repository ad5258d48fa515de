/* opampd: subcommand dispatch, flags and config file, exit status. Nothing else. */
#include "cli.h"
#include "log.h"
#include "server.h"
#include "sign.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: opampd serve [options]     run a node\n"
	    "       opampd keygen FILE         write a new cluster signing key (Ed25519, PEM)\n"
	    "       opampd config|agents|cluster|rollout ...   operate a running node (below)\n"
	    "\n"
	    "serve options (also accepted in a --config file as \"name = value\" lines):\n"
	    "  --config FILE              read options from FILE first (flags override it)\n"
	    "  --data-dir DIR             data directory (default ./opampd-data)\n"
	    "  --opamp-listen HOST:PORT   OpAMP listener (default 127.0.0.1:4320)\n"
	    "  --admin-listen HOST:PORT   admin API listener (default 127.0.0.1:4321)\n"
	    "  --node-id N                this node's raft id (default 1)\n"
	    "  --raft-listen HOST:PORT    raft address (default 127.0.0.1:4322)\n"
	    "  --voter ID=HOST:PORT=URL   an initial voter: raft address and admin URL; repeat\n"
	    "                             for each voter, the same on every node (default: this\n"
	    "                             node alone)\n"
	    "  --signing-key FILE         Ed25519 key signing configurations (default\n"
	    "                             DATA_DIR/signing.key, created for a single node; a\n"
	    "                             cluster's voters share one file)\n"
	    "  --heartbeat-interval SECS  heartbeat interval offered to agents (default 30)\n"
	    "  --http-timeout-factor X    HTTP agents are disconnected after X poll intervals "
	    "(default 3)\n"
	    "  --max-connections N        OpAMP connections (default 100000)\n"
	    "  --max-handshake-rate N     new WebSocket sessions a second; beyond it 503 with\n"
	    "                             Retry-After (default 2000, 0 = unlimited)\n"
	    "  --snapshot-entries N       raft entries between snapshots (default: when the\n"
	    "                             entries since the last hold as many bytes as it did)\n"
	    "  --config-history N         versions kept per configuration (default 100, 0 =\n"
	    "                             all); publishing deletes the oldest beyond N\n"
	    "  --opamp-tls-cert FILE      serve OpAMP over TLS (wss://, https://) with this PEM\n"
	    "                             certificate chain (ECDSA or RSA); SIGHUP or POST\n"
	    "                             /api/v1/tls/reload re-reads every TLS file\n"
	    "  --opamp-tls-key FILE       its private key\n"
	    "  --admin-tls-cert FILE      serve the admin API over TLS with this certificate\n"
	    "  --admin-tls-key FILE       its private key\n"
	    "  --opamp-mtls MODE          agent client certificates: off (default), optional or\n"
	    "                             required; a certificate binds the agent to the\n"
	    "                             instance_uid it names (CN or URI SAN\n"
	    "                             urn:opampd:agent:UID)\n"
	    "  --opamp-client-ca FILE     CA certificates (PEM) that agent certificates chain to\n"
	    "  --agent-token-file FILE    agents must send Authorization: Bearer TOKEN, one of\n"
	    "                             the tokens in FILE (one per line; 401 otherwise)\n"
	    "  --peer-ca FILE             CA certificates (PEM) for https:// peer admin URLs\n"
	    "                             (default: the system bundle)\n"
	    "  --ca-cert FILE             the fleet CA certificate (PEM) that signs agent\n"
	    "                             certificates (default DATA_DIR/ca.pem, created with\n"
	    "                             its key for a single node; a cluster's voters share\n"
	    "                             one CA)\n"
	    "  --ca-key FILE              its private key (PEM, mode 0600)\n"
	    "  --cert-lifetime DURATION   lifetime of issued agent certificates: seconds, or\n"
	    "                             a number with s, m, h or d (default 90d)\n"
	    "  --cert-renew-at SHARE      agents are offered a new certificate once theirs has\n"
	    "                             lived this share of its lifetime (default 0.67)\n"
	    "  --offer-agent-certs on|off offer a server-generated key and certificate to\n"
	    "                             agents that accept connection settings and have none\n"
	    "                             (default off)\n"
	    "  --log-level LEVEL          debug, info, warn or error (default info)\n"
	    "  --ready-file PATH          write the bound ports as JSON once listening\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "90d", "12h", "30m", "3600s" or "3600": seconds, from one minute to ten years. */
static int parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		char suffix;
		uint64_t mult;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	char digits[24];
	size_t n = strlen(s);
	uint64_t mult = 1, v;

	if (n == 0 || n >= sizeof digits)
		return -1;
	memcpy(digits, s, n + 1);
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (digits[n - 1] == units[i].suffix) {
			mult = units[i].mult;
			digits[n - 1] = '\0';
		}
	if (parse_u64(digits, 1, UINT64_MAX / 86400, &v) != 0 || v * mult < 60 ||
	    v * mult > 10ull * 366 * 86400)
		return -1;
	*out = v * mult;
	return 0;
}

/* Option values must outlive parsing (config file lines do not): copies, freed at exit. */
static char *kept[256];
static size_t n_kept;

static char *keep(const char *s)
{
	char *p = strdup(s);

	if (p == NULL || n_kept == sizeof kept / sizeof kept[0])
		abort();
	kept[n_kept++] = p;
	return p;
}

static void release_kept(void)
{
	while (n_kept > 0)
		free(kept[--n_kept]);
}

/* "host:port" → host and port. The last ':' splits, so "[::1]:4320" works too. */
static int parse_listen(const char *s, const char **host, int *port)
{
	const char *colon = strrchr(s, ':');
	uint64_t p;
	size_t n;
	char *h;

	if (colon == NULL || parse_u64(colon + 1, 0, 65535, &p) != 0)
		return -1;
	n = (size_t)(colon - s);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	h = keep(s);
	h[n] = '\0';
	*host = h;
	*port = (int)p;
	return 0;
}

/* ID=RAFT_HOST:PORT=ADMIN_URL */
static int parse_voter(const char *s, struct opd_server_options *o)
{
	struct opd_cluster_member *m;
	const char *eq1 = strchr(s, '='), *eq2 = eq1 ? strchr(eq1 + 1, '=') : NULL;
	char id[32];
	uint64_t v;

	if (o->n_voters >= OPD_NODE_MAX_VOTERS || eq1 == NULL || eq2 == NULL ||
	    (size_t)(eq1 - s) >= sizeof id)
		return -1;
	memcpy(id, s, (size_t)(eq1 - s));
	id[eq1 - s] = '\0';
	if (parse_u64(id, 1, UINT64_MAX, &v) != 0)
		return -1;
	for (size_t i = 0; i < o->n_voters; i++)
		if (o->voters[i].id == v)
			return -1;
	m = &o->voters[o->n_voters];
	if ((size_t)(eq2 - eq1 - 1) >= sizeof m->raft_address ||
	    strlen(eq2 + 1) >= sizeof m->admin_url || strncmp(eq2 + 1, "http", 4) != 0)
		return -1;
	m->id = v;
	memcpy(m->raft_address, eq1 + 1, (size_t)(eq2 - eq1 - 1));
	m->raft_address[eq2 - eq1 - 1] = '\0';
	snprintf(m->admin_url, sizeof m->admin_url, "%s", eq2 + 1);
	/* No trailing slash: paths are appended to it. */
	size_t n = strlen(m->admin_url);
	while (n > 0 && m->admin_url[n - 1] == '/')
		m->admin_url[--n] = '\0';
	o->n_voters++;
	return 0;
}

/* One option by name (without "--"). Returns 0, 1 (unknown name), -1 (bad value). */
static int set_option(struct opd_server_options *o, enum opd_log_level *level, const char *name,
		      const char *v)
{
	uint64_t n;

	if (strcmp(name, "data-dir") == 0)
		o->data_dir = keep(v);
	else if (strcmp(name, "opamp-listen") == 0)
		return parse_listen(v, &o->opamp_host, &o->opamp_port);
	else if (strcmp(name, "admin-listen") == 0)
		return parse_listen(v, &o->admin_host, &o->admin_port);
	else if (strcmp(name, "node-id") == 0)
		return parse_u64(v, 1, UINT64_MAX, &o->node_id);
	else if (strcmp(name, "raft-listen") == 0) {
		const char *h;
		int p;
		if (parse_listen(v, &h, &p) != 0 || p == 0)
			return -1;
		o->raft_listen = keep(v);
	} else if (strcmp(name, "voter") == 0)
		return parse_voter(v, o);
	else if (strcmp(name, "signing-key") == 0)
		o->signing_key = keep(v);
	else if (strcmp(name, "heartbeat-interval") == 0)
		return parse_u64(v, 1, 86400, &o->heartbeat_s);
	else if (strcmp(name, "http-timeout-factor") == 0) {
		char *end;
		o->http_timeout_factor = strtod(v, &end);
		return *end || !(o->http_timeout_factor >= 1.0 && o->http_timeout_factor <= 100)
			   ? -1
			   : 0;
	} else if (strcmp(name, "max-connections") == 0) {
		if (parse_u64(v, 1, 10000000, &n) != 0)
			return -1;
		o->max_conns = n;
	} else if (strcmp(name, "max-handshake-rate") == 0) {
		return parse_u64(v, 0, 10000000, &o->handshake_rate);
	} else if (strcmp(name, "snapshot-entries") == 0) {
		if (parse_u64(v, 1, 1U << 30, &n) != 0)
			return -1;
		o->snapshot_entries = (unsigned)n;
	} else if (strcmp(name, "config-history") == 0) {
		if (parse_u64(v, 0, UINT32_MAX, &n) != 0)
			return -1;
		o->config_history = (uint32_t)n;
	} else if (strcmp(name, "opamp-tls-cert") == 0)
		o->opamp_tls_cert = keep(v);
	else if (strcmp(name, "opamp-tls-key") == 0)
		o->opamp_tls_key = keep(v);
	else if (strcmp(name, "admin-tls-cert") == 0)
		o->admin_tls_cert = keep(v);
	else if (strcmp(name, "admin-tls-key") == 0)
		o->admin_tls_key = keep(v);
	else if (strcmp(name, "opamp-client-ca") == 0)
		o->opamp_client_ca = keep(v);
	else if (strcmp(name, "opamp-mtls") == 0)
		return opd_tls_verify_parse(v, &o->opamp_mtls) == 0 ? 0 : -1;
	else if (strcmp(name, "agent-token-file") == 0)
		o->agent_token_file = keep(v);
	else if (strcmp(name, "peer-ca") == 0)
		o->peer_ca = keep(v);
	else if (strcmp(name, "ca-cert") == 0)
		o->ca_cert = keep(v);
	else if (strcmp(name, "ca-key") == 0)
		o->ca_key = keep(v);
	else if (strcmp(name, "cert-lifetime") == 0)
		return parse_duration(v, &o->cert_lifetime_s);
	else if (strcmp(name, "cert-renew-at") == 0) {
		char *end;
		o->cert_renew_share = strtod(v, &end);
		return *end || !(o->cert_renew_share >= 0.1 && o->cert_renew_share <= 0.95) ? -1
											    : 0;
	} else if (strcmp(name, "offer-agent-certs") == 0) {
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
			return -1;
		o->offer_agent_certs = strcmp(v, "on") == 0;
	} else if (strcmp(name, "log-level") == 0)
		return opd_log_parse_level(v, level) == 0 ? 0 : -1;
	else if (strcmp(name, "ready-file") == 0)
		o->ready_file = keep(v);
	else
		return 1;
	return 0;
}

/* "name = value" lines; '#' starts a comment. Errors name the file and line. */
static int read_config(const char *path, struct opd_server_options *o, enum opd_log_level *level)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0;

	if (f == NULL) {
		fprintf(stderr, "opampd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = line, *eq, *name, *value, *end;
		int rc;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			fprintf(stderr, "opampd: %s:%d: line too long\n", path, lineno);
			fclose(f);
			return -1;
		}
		if ((end = strchr(p, '#')) != NULL)
			*end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p &&
		       (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*p == '\0')
			continue;
		if ((eq = strchr(p, '=')) == NULL) {
			fprintf(stderr, "opampd: %s:%d: expected \"name = value\"\n", path, lineno);
			fclose(f);
			return -1;
		}
		name = p;
		value = eq + 1;
		for (end = eq; end > name && (end[-1] == ' ' || end[-1] == '\t');)
			end--;
		*end = '\0';
		while (*value == ' ' || *value == '\t')
			value++;
		rc = set_option(o, level, name, value);
		if (rc != 0) {
			fprintf(stderr, "opampd: %s:%d: %s \"%s\"\n", path, lineno,
				rc > 0 ? "unknown option" : "bad value for", name);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static int serve(int argc, char **argv)
{
	static struct opd_server server; /* the only static instance */
	struct opd_server_options o;
	enum opd_log_level level = OPD_LOG_INFO;

	opd_server_options_default(&o);
	/* The config file first, so that flags override it wherever they stand. */
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], "--config") == 0 && read_config(argv[i + 1], &o, &level) != 0)
			return 2;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "opampd: unexpected argument %s\n", a);
			return 2;
		}
		if (v == NULL) {
			fprintf(stderr, "opampd: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (strcmp(a, "--config") == 0)
			continue;
		rc = set_option(&o, &level, a + 2, v);
		if (rc > 0) {
			fprintf(stderr, "opampd: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		if (rc < 0) {
			fprintf(stderr, "opampd: bad value for %s: %s\n", a, v);
			return 2;
		}
	}
	opd_log_init(level);
	/* A peer closing a raft or client socket must not kill the process (raft.md §6 #5). */
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (opd_server_start(&server, &o) != 0) {
		fprintf(stderr, "opampd: %s\n", server.errmsg);
		return 1;
	}
	int rc = opd_server_run(&server);
	curl_global_cleanup();
	release_kept();
	return rc;
}

static int keygen(int argc, char **argv)
{
	struct opd_signer s;

	if (argc != 1) {
		usage(stderr);
		return 2;
	}
	if (opd_signer_load(&s, argv[0], 1) != 0) {
		fprintf(stderr, "opampd: %s\n", s.errmsg);
		return 1;
	}
	printf("%s key_id=%s\n", argv[0], s.key_id);
	opd_signer_fini(&s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		fprintf(argc < 2 ? stderr : stdout, "\n%s", opd_cli_usage());
		return argc < 2 ? 2 : 0;
	}
	if (opd_cli_is_command(argv[1]))
		return opd_cli_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") == 0)
		return serve(argc - 2, argv + 2);
	if (strcmp(argv[1], "keygen") == 0)
		return keygen(argc - 2, argv + 2);
	fprintf(stderr, "opampd: unknown command %s\n", argv[1]);
	usage(stderr);
	return 2;
}
