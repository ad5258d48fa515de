/* opampd: subcommand dispatch and exit status. Nothing else. */
#include "log.h"
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: opampd serve [options]\n"
		"  --data-dir DIR             data directory (default ./opampd-data)\n"
		"  --opamp-listen HOST:PORT   OpAMP listener (default 127.0.0.1:4320)\n"
		"  --admin-listen HOST:PORT   admin API listener (default 127.0.0.1:4321)\n"
		"  --heartbeat-interval SECS  heartbeat interval offered to agents (default 30)\n"
		"  --http-timeout-factor X    HTTP agents are disconnected after X poll intervals "
		"(default 3)\n"
		"  --max-connections N        OpAMP connections (default 100000)\n"
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

/* "host:port" → host (static storage) and port. The last ':' splits, so "[::1]:4320" works too. */
static int parse_listen(const char *s, const char **host, int *port)
{
	static char hosts[2][256];
	static int which;
	const char *colon = strrchr(s, ':');
	uint64_t p;
	size_t n;
	char *h;

	if (colon == NULL || parse_u64(colon + 1, 0, 65535, &p) != 0)
		return -1;
	n = (size_t)(colon - s);
	h = hosts[which++ % 2];
	if (n >= sizeof hosts[0])
		return -1;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	memcpy(h, s, n);
	h[n] = '\0';
	*host = h;
	*port = (int)p;
	return 0;
}

static int serve(int argc, char **argv)
{
	static struct opd_server server; /* the only static instance */
	struct opd_server_options o;
	enum opd_log_level level = OPD_LOG_INFO;

	opd_server_options_default(&o);
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;
		int bad = 0;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (v == NULL) {
			fprintf(stderr, "opampd: %s needs a value\n", a);
			return 2;
		}
		if (strcmp(a, "--data-dir") == 0)
			o.data_dir = v;
		else if (strcmp(a, "--opamp-listen") == 0)
			bad = parse_listen(v, &o.opamp_host, &o.opamp_port);
		else if (strcmp(a, "--admin-listen") == 0)
			bad = parse_listen(v, &o.admin_host, &o.admin_port);
		else if (strcmp(a, "--heartbeat-interval") == 0)
			bad = parse_u64(v, 1, 86400, &o.heartbeat_s);
		else if (strcmp(a, "--http-timeout-factor") == 0) {
			char *end;
			o.http_timeout_factor = strtod(v, &end);
			bad =
			    *end || !(o.http_timeout_factor >= 1.0 && o.http_timeout_factor <= 100);
		} else if (strcmp(a, "--max-connections") == 0) {
			bad = parse_u64(v, 1, 10000000, &n);
			o.max_conns = n;
		} else if (strcmp(a, "--log-level") == 0)
			bad = opd_log_parse_level(v, &level);
		else if (strcmp(a, "--ready-file") == 0)
			o.ready_file = v;
		else {
			fprintf(stderr, "opampd: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "opampd: bad value for %s: %s\n", a, v);
			return 2;
		}
		i++;
	}
	opd_log_init(level);
	signal(SIGPIPE, SIG_IGN);
	if (opd_server_start(&server, &o) != 0) {
		fprintf(stderr, "opampd: %s\n", server.errmsg);
		return 1;
	}
	return opd_server_run(&server);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return serve(argc - 2, argv + 2);
	fprintf(stderr, "opampd: unknown command %s\n", argv[1]);
	usage(stderr);
	return 2;
}
