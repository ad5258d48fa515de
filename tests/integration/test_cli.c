/*
 * End-to-end: every "opampd config|agents|cluster|rollout|certs" subcommand run as a process
 * against a real node (and a three-node cluster for membership), checking the tables, the --json
 * output (parsed with jansson), the exit codes (0 ok, 1 API error, 2 usage, 3 cannot connect), the
 * three ways to find the node and its token, and Idempotency-Key retries. The certs commands run
 * against the single-node default's generated fleet CA, with certificates issued to test agents
 * through the CSR flow.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "admin_client.h"
#include "agent_client.h"
#include "cluster.h"
#include "daemon.h"
#include "test_ca.h"

#define RUN_MS 60000
#define OUT_MAX (1u << 20)
#define REPLY_MS 5000
#define S2A_FREE(m) opamp__proto__v1__server_to_agent__free_unpacked((m), NULL)

enum {
	RCS_APPLIED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED,
	RCS_APPLYING = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLYING,
	RCS_FAILED = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_FAILED,
};

/* How the CLI finds the node: flags, environment, the data directory, or not at all. */
enum how { BY_FLAGS, BY_ENV, BY_DATA_DIR, BY_NOTHING };

struct target {
	char url[80];
	const char *token;
	const char *dir; /* data directory (ready.json, admin.token) */
	enum how how;
	const char *cwd; /* working directory of the CLI (NULL: inherit) */
};

struct run {
	int code;
	char *out, *err;
	json_t *json; /* stdout parsed, when it is JSON */
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	json_decref(r->json);
	*r = (struct run){0};
}

static void target_of(struct target *t, const struct opd_daemon *d, enum how how)
{
	*t = (struct target){.token = d->token, .dir = d->dir, .how = how};
	snprintf(t->url, sizeof t->url, "http://127.0.0.1:%d", d->admin_port);
}

/* Read both pipes to EOF (each at most OUT_MAX bytes) before the deadline. */
static int drain(int fo, int fe, char **out, char **err, uint64_t deadline)
{
	size_t n[2] = {0, 0};
	char *buf[2] = {calloc(1, OUT_MAX + 1), calloc(1, OUT_MAX + 1)};
	struct pollfd p[2] = {{fo, POLLIN, 0}, {fe, POLLIN, 0}};
	int open_fds = 2;

	assert_non_null(buf[0]);
	assert_non_null(buf[1]);
	while (open_fds > 0) {
		uint64_t now = opd_test_now_ms();
		if (now >= deadline)
			break;
		if (poll(p, 2, (int)(deadline - now)) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			ssize_t k;
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			k = read(p[i].fd, buf[i] + n[i], OUT_MAX - n[i]);
			if (k <= 0 || n[i] + (size_t)k >= OUT_MAX) {
				if (k > 0)
					n[i] += (size_t)k;
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			n[i] += (size_t)k;
		}
	}
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	*out = buf[0];
	*err = buf[1];
	return open_fds == 0 ? 0 : -1;
}

/* Run "$OPAMPD_BIN args..." with the target's connection settings; fills r. */
static void run_cli(const struct target *t, struct run *r, const char *const *args)
{
	const char *bin = getenv("OPAMPD_BIN");
	const char *argv[96];
	int po[2], pe[2], n = 0, status;
	uint64_t deadline = opd_test_now_ms() + RUN_MS;
	pid_t pid;

	*r = (struct run){.code = -1};
	assert_non_null(bin);
	argv[n++] = bin;
	for (int i = 0; args[i] != NULL; i++)
		argv[n++] = args[i];
	if (t != NULL && t->how == BY_FLAGS) {
		argv[n++] = "--url";
		argv[n++] = t->url;
		argv[n++] = "--token";
		argv[n++] = t->token;
	} else if (t != NULL && t->how == BY_DATA_DIR) {
		argv[n++] = "--data-dir";
		argv[n++] = t->dir;
	}
	argv[n] = NULL;
	assert_int_equal(pipe(po), 0);
	assert_int_equal(pipe(pe), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		close(po[1]);
		close(pe[1]);
		unsetenv("OPAMPD_URL");
		unsetenv("OPAMPD_TOKEN");
		if (t != NULL && t->how == BY_ENV) {
			setenv("OPAMPD_URL", t->url, 1);
			setenv("OPAMPD_TOKEN", t->token, 1);
		}
		if (t != NULL && t->cwd != NULL && chdir(t->cwd) != 0)
			_exit(126);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	if (drain(po[0], pe[0], &r->out, &r->err, deadline) != 0)
		kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r->json = json_loads(r->out, JSON_DECODE_ANY, NULL);
}

#define CLI(t, r, ...) run_cli((t), (r), (const char *const[]){__VA_ARGS__, NULL})

/* Assert the exit code, showing the output when it is not the expected one. */
#define EXPECT(r, want)                                                                            \
	do {                                                                                       \
		if ((r)->code != (want))                                                           \
			fprintf(stderr, "exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\n",           \
				(r)->code, (want), (r)->out, (r)->err);                            \
		assert_int_equal((r)->code, (want));                                               \
	} while (0)

#define CONTAINS(s, sub)                                                                           \
	do {                                                                                       \
		if (strstr((s), (sub)) == NULL)                                                    \
			fprintf(stderr, "missing \"%s\" in:\n%s\n", (sub), (s));                   \
		assert_non_null(strstr((s), (sub)));                                               \
	} while (0)

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

struct fx {
	struct opd_daemon d;
	struct target t;
	char files[300];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || opd_daemon_start(&f->d, NULL) != 0) {
		free(f);
		return -1;
	}
	target_of(&f->t, &f->d, BY_FLAGS);
	snprintf(f->files, sizeof f->files, "%s/cli-files", f->d.dir);
	if (mkdir(f->files, 0700) != 0) {
		opd_daemon_stop(&f->d);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc = opd_daemon_stop(&f->d);

	free(f);
	return rc == 0 ? 0 : -1;
}

static const char yaml_v1[] = "receivers:\n"
			      "  otlp:\n"
			      "    protocols:\n"
			      "      grpc: {}\n"
			      "exporters:\n"
			      "  debug: {}\n"
			      "service:\n"
			      "  pipelines:\n"
			      "    traces:\n"
			      "      receivers: [otlp]\n"
			      "      exporters: [debug]\n";

static const char yaml_v2[] = "receivers:\n"
			      "  otlp:\n"
			      "    protocols:\n"
			      "      http: {}\n"
			      "exporters:\n"
			      "  debug: {}\n"
			      "service:\n"
			      "  pipelines:\n"
			      "    traces:\n"
			      "      receivers: [otlp]\n"
			      "      exporters: [debug]\n";

/* ---- no node needed ---- */

static void test_help_and_usage(void **state)
{
	static const char *const helps[][3] = {
	    {"config", "push", "usage: opampd config push"},
	    {"config", "list", "usage: opampd config list"},
	    {"config", "show", "usage: opampd config show"},
	    {"config", "diff", "usage: opampd config diff"},
	    {"config", "rollback", "usage: opampd config rollback"},
	    {"agents", "list", "usage: opampd agents list"},
	    {"agents", "show", "usage: opampd agents show"},
	    {"cluster", "status", "usage: opampd cluster status"},
	    {"cluster", "add", "usage: opampd cluster add"},
	    {"cluster", "promote", "usage: opampd cluster promote"},
	    {"cluster", "remove", "usage: opampd cluster remove"},
	    {"cluster", "transfer", "usage: opampd cluster transfer"},
	    {"rollout", "status", "usage: opampd rollout status"},
	    {"certs", "list", "usage: opampd certs list"},
	    {"certs", "show", "usage: opampd certs show"},
	    {"certs", "revoke", "usage: opampd certs revoke"},
	    {"certs", "rotate", "usage: opampd certs rotate"},
	    {"certs", "rotations", "usage: opampd certs rotations"},
	    {"certs", "ca", "usage: opampd certs ca"},
	};
	struct run r;

	(void)state;
	CLI(NULL, &r, "--help");
	EXPECT(&r, 0);
	CONTAINS(r.out, "opampd config");
	CONTAINS(r.out, "Exit status: 0 ok, 1 the API refused or failed, 2 usage error, 3 cannot");
	run_free(&r);
	for (size_t i = 0; i < 5; i++) {
		static const char *const groups[] = {"config", "agents", "cluster", "rollout",
						     "certs"};
		CLI(NULL, &r, groups[i], "--help");
		EXPECT(&r, 0);
		CONTAINS(r.out, "usage: opampd ");
		run_free(&r);
		CLI(NULL, &r, groups[i]);
		EXPECT(&r, 2);
		CONTAINS(r.err, "needs a subcommand");
		run_free(&r);
		CLI(NULL, &r, groups[i], "frobnicate");
		EXPECT(&r, 2);
		run_free(&r);
	}
	for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
		CLI(NULL, &r, helps[i][0], helps[i][1], "--help");
		EXPECT(&r, 0);
		CONTAINS(r.out, helps[i][2]);
		assert_string_equal(r.err, "");
		run_free(&r);
	}
	/* Usage errors are caught before any connection is tried. */
	CLI(NULL, &r, "config", "push", "only-a-name");
	EXPECT(&r, 2);
	CONTAINS(r.err, "at least one FILE");
	run_free(&r);
	CLI(NULL, &r, "config", "push", "n", "/nonexistent/file.yaml");
	EXPECT(&r, 2);
	CONTAINS(r.err, "/nonexistent/file.yaml");
	run_free(&r);
	CLI(NULL, &r, "config", "list", "--bogus");
	EXPECT(&r, 2);
	CONTAINS(r.err, "unknown option --bogus");
	run_free(&r);
	CLI(NULL, &r, "config", "show", "x", "--version", "zero");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "config", "diff", "x", "1");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "agents", "list", "--health");
	EXPECT(&r, 2);
	CONTAINS(r.err, "--health needs a value");
	run_free(&r);
	CLI(NULL, &r, "agents", "list", "--connected", "maybe");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "cluster", "add", "0", "127.0.0.1:1", "http://x");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "cluster", "promote", "2", "--role", "king");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "rollout", "status", "x", "--interval", "0");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "rollout", "status", "x", "--timeout", "5");
	EXPECT(&r, 2);
	CONTAINS(r.err, "go with --watch");
	run_free(&r);
	CLI(NULL, &r, "config", "list", "--url", "http://a", "--url", "http://b");
	EXPECT(&r, 2);
	CONTAINS(r.err, "--url given twice");
	run_free(&r);
	CLI(NULL, &r, "certs", "rotate");
	EXPECT(&r, 2);
	CONTAINS(r.err, "--selector KEY=VALUE or --all-agents");
	run_free(&r);
	CLI(NULL, &r, "certs", "rotate", "--all-agents", "--selector", "a=b");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "certs", "rotate", "--selector", "novalue");
	EXPECT(&r, 2);
	CONTAINS(r.err, "KEY=VALUE");
	run_free(&r);
	CLI(NULL, &r, "certs", "show", "0");
	EXPECT(&r, 2);
	CONTAINS(r.err, "SERIAL is a positive decimal number");
	run_free(&r);
	CLI(NULL, &r, "certs", "revoke");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "certs", "list", "--expiring-within", "3x");
	EXPECT(&r, 2);
	CONTAINS(r.err, "--expiring-within wants a duration");
	run_free(&r);
	CLI(NULL, &r, "certs", "list", "--limit", "0");
	EXPECT(&r, 2);
	run_free(&r);
	CLI(NULL, &r, "certs", "rotations", "--watch");
	EXPECT(&r, 2);
	CONTAINS(r.err, "--watch needs a rotation ID");
	run_free(&r);
	CLI(NULL, &r, "certs", "rotations", "x", "--timeout", "5");
	EXPECT(&r, 2);
	CONTAINS(r.err, "go with --watch");
	run_free(&r);
}

/* A loopback port nothing listens on (it was free a moment ago). */
static int closed_port(void)
{
	int port = opd_test_free_port();

	assert_true(port > 0);
	return port;
}

static void test_cannot_connect(void **state)
{
	struct target t = {.token = "0123456789abcdef", .how = BY_FLAGS};
	struct run r;

	(void)state;
	snprintf(t.url, sizeof t.url, "http://127.0.0.1:%d", closed_port());
	CLI(&t, &r, "config", "list");
	EXPECT(&r, 3);
	CONTAINS(r.err, "cannot reach the admin API at http://127.0.0.1:");
	run_free(&r);
	CLI(&t, &r, "cluster", "status", "--json");
	EXPECT(&r, 3);
	run_free(&r);
	t.how = BY_ENV;
	CLI(&t, &r, "agents", "list");
	EXPECT(&r, 3);
	run_free(&r);
	CLI(&t, &r, "certs", "list");
	EXPECT(&r, 3);
	run_free(&r);
	CLI(&t, &r, "certs", "ca", "--json");
	EXPECT(&r, 3);
	run_free(&r);
}

/* ---- one node ---- */

static void test_where_is_the_node(void **state)
{
	struct fx *f = *state;
	struct target t;
	char empty[320];
	struct run r;

	/* Flags. */
	CLI(&f->t, &r, "cluster", "status", "--json");
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "role")), "leader");
	run_free(&r);
	/* Environment. */
	target_of(&t, &f->d, BY_ENV);
	CLI(&t, &r, "cluster", "status", "--json");
	EXPECT(&r, 0);
	assert_true(json_is_object(r.json));
	run_free(&r);
	/* The data directory: ready.json has the admin port, admin.token the token. */
	target_of(&t, &f->d, BY_DATA_DIR);
	CLI(&t, &r, "cluster", "status");
	EXPECT(&r, 0);
	CONTAINS(r.out, "node 1: leader");
	CONTAINS(r.out, "writes:   accepted");
	run_free(&r);
	/* The default data directory ./opampd-data, from the working directory. */
	target_of(&t, &f->d, BY_NOTHING);
	t.cwd = f->files;
	{
		char link[400];
		snprintf(link, sizeof link, "%s/opampd-data", f->files);
		assert_int_equal(symlink(f->d.dir, link), 0);
		CLI(&t, &r, "config", "list", "--json");
		EXPECT(&r, 0);
		assert_true(json_is_array(json_object_get(r.json, "configs")));
		run_free(&r);
		assert_int_equal(unlink(link), 0);
	}
	/* No token anywhere: the API says 401 and the CLI says where a token comes from. */
	snprintf(empty, sizeof empty, "%s/empty", f->files);
	assert_int_equal(mkdir(empty, 0700), 0);
	target_of(&t, &f->d, BY_NOTHING);
	t.cwd = empty;
	CLI(&t, &r, "config", "list", "--url", f->t.url);
	EXPECT(&r, 1);
	CONTAINS(r.err, "unauthorized");
	CONTAINS(r.err, "no token was sent");
	run_free(&r);
	CLI(&t, &r, "config", "list", "--url", f->t.url, "--token", "wrong-token-wrong-token");
	EXPECT(&r, 1);
	CONTAINS(r.err, "the token from --token was refused");
	run_free(&r);
	/* --json on an API error: the error body on stdout, parseable. */
	CLI(&t, &r, "config", "list", "--url", f->t.url, "--json");
	EXPECT(&r, 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
	    "unauthorized");
	run_free(&r);
}

static void test_config_commands(void **state)
{
	struct fx *f = *state;
	char p1[400], p2[400], pbad[400], pbin[400], hash1[80], hash2[80];
	const char *expected_diff;
	struct run r;
	json_t *v;

	snprintf(p1, sizeof p1, "%s/v1.yaml", f->files);
	snprintf(p2, sizeof p2, "%s/v2.yaml", f->files);
	snprintf(pbad, sizeof pbad, "%s/collector.yaml", f->files);
	snprintf(pbin, sizeof pbin, "%s/blob.bin", f->files);
	write_file(p1, yaml_v1);
	write_file(p2, yaml_v2);
	write_file(pbad, "receivers: [1, 2\n");
	{
		FILE *fb = fopen(pbin, "wb");
		static const unsigned char bin[] = {0, 1, 2, 0xff, 0xfe, 'x'};
		assert_non_null(fb);
		fwrite(bin, 1, sizeof bin, fb);
		fclose(fb);
	}

	CLI(&f->t, &r, "config", "list");
	EXPECT(&r, 0);
	CONTAINS(r.out, "no configurations");
	run_free(&r);

	/* push: a file named by AS=PATH, a selector, a priority, a message. */
	{
		char arg[420];
		snprintf(arg, sizeof arg, "collector.yaml=%s", p1);
		CLI(&f->t, &r, "config", "push", "web", arg, "--selector", "service.name=web",
		    "--priority", "7", "--message", "first cut", "--json");
	}
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 1);
	assert_true(json_is_true(json_object_get(r.json, "created")));
	snprintf(hash1, sizeof hash1, "%s",
		 json_string_value(json_object_get(r.json, "config_hash")));
	assert_int_equal(strlen(hash1), 64);
	run_free(&r);

	/* Version 2 without --selector or --priority keeps both; a fixed Idempotency-Key. */
	{
		char arg[420];
		snprintf(arg, sizeof arg, "collector.yaml=%s", p2);
		CLI(&f->t, &r, "config", "push", "web", arg, "--message", "http instead of grpc",
		    "--idempotency-key", "cli-test-key-1");
		EXPECT(&r, 0);
		CONTAINS(r.out, "web: published version 2 (hash ");
		run_free(&r);
		/* The same command again with the same key: no third version. */
		CLI(&f->t, &r, "config", "push", "web", arg, "--idempotency-key", "cli-test-key-1",
		    "--json");
		EXPECT(&r, 0);
		assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 2);
		assert_true(json_is_true(json_object_get(r.json, "duplicate")));
		snprintf(hash2, sizeof hash2, "%s",
			 json_string_value(json_object_get(r.json, "config_hash")));
		run_free(&r);
		/* Without a key, pushing what is active creates nothing either. */
		CLI(&f->t, &r, "config", "push", "web", arg);
		EXPECT(&r, 0);
		CONTAINS(r.out, "web: unchanged, version 2 is already active");
		run_free(&r);
	}

	/* A YAML mistake: exit 1, the file and line named, nothing stored. */
	CLI(&f->t, &r, "config", "push", "web", pbad);
	EXPECT(&r, 1);
	CONTAINS(r.err, "invalid_config");
	CONTAINS(r.err, "collector.yaml");
	CONTAINS(r.err, "line 2");
	run_free(&r);
	/* A binary file goes as base64 and comes back the same. */
	CLI(&f->t, &r, "config", "push", "blobs", pbin, "--all-agents", "--content-type",
	    "application/octet-stream", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 1);
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "blobs", "--version", "1", "--json");
	EXPECT(&r, 0);
	assert_string_equal(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(r.json, "files"), "blob.bin"), "body_base64")),
	    "AAEC//54");
	run_free(&r);

	/* list */
	CLI(&f->t, &r, "config", "list");
	EXPECT(&r, 0);
	CONTAINS(r.out, "NAME");
	CONTAINS(r.out, "SELECTOR");
	CONTAINS(r.out, "service.name=web");
	CONTAINS(r.out, "blobs");
	run_free(&r);
	CLI(&f->t, &r, "config", "list", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "configs")), 2);
	run_free(&r);

	/* show: the versions table, the active one marked; --json. */
	CLI(&f->t, &r, "config", "show", "web");
	EXPECT(&r, 0);
	CONTAINS(r.out, "selector: service.name=web");
	CONTAINS(r.out, "priority: 7");
	CONTAINS(r.out, "2 *");
	CONTAINS(r.out, "http instead of grpc");
	CONTAINS(r.out, "first cut");
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "web", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "active_version")), 2);
	assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 7);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "selector"), "service.name")),
	    "web");
	assert_int_equal(json_array_size(json_object_get(r.json, "versions")), 2);
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "web", "--version", "1");
	EXPECT(&r, 0);
	CONTAINS(r.out, "version:     1\n");
	CONTAINS(r.out, "signature:   verified");
	CONTAINS(r.out, "==> collector.yaml (text/yaml) <==");
	CONTAINS(r.out, "      grpc: {}\n");
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "web", "--version", "1", "--json");
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "config_hash")), hash1);
	assert_true(json_is_true(json_object_get(r.json, "verified")));
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "nope");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not_found");
	run_free(&r);
	CLI(&f->t, &r, "config", "show", "web", "--version", "9");
	EXPECT(&r, 1);
	run_free(&r);

	/* diff: exactly what diff -u prints, with a header per file. */
	CLI(&f->t, &r, "config", "diff", "web", "1", "2");
	EXPECT(&r, 0);
	expected_diff = "--- a/collector.yaml (version 1)\n"
			"+++ b/collector.yaml (version 2)\n"
			"@@ -1,7 +1,7 @@\n"
			" receivers:\n"
			"   otlp:\n"
			"     protocols:\n"
			"-      grpc: {}\n"
			"+      http: {}\n"
			" exporters:\n"
			"   debug: {}\n"
			" service:\n";
	assert_string_equal(r.out, expected_diff);
	run_free(&r);
	CLI(&f->t, &r, "config", "diff", "web", "2", "2");
	EXPECT(&r, 0);
	CONTAINS(r.out, "are identical");
	run_free(&r);
	CLI(&f->t, &r, "config", "diff", "web", "1", "2", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "changed_lines")), 2);
	v = json_array_get(json_object_get(r.json, "files"), 0);
	assert_string_equal(json_string_value(json_object_get(v, "status")), "modified");
	assert_string_equal(json_string_value(json_object_get(v, "diff")), expected_diff);
	assert_string_equal(json_string_value(json_object_get(r.json, "to_hash")), hash2);
	run_free(&r);
	CLI(&f->t, &r, "config", "diff", "web", "1", "5");
	EXPECT(&r, 1);
	run_free(&r);

	/* rollback */
	CLI(&f->t, &r, "config", "rollback", "web", "1");
	EXPECT(&r, 0);
	CONTAINS(r.out, "web: version 1 is active");
	run_free(&r);
	CLI(&f->t, &r, "config", "rollback", "web", "2", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "active_version")), 2);
	assert_string_equal(json_string_value(json_object_get(r.json, "config_hash")), hash2);
	run_free(&r);
	CLI(&f->t, &r, "config", "rollback", "web", "42");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not_found");
	run_free(&r);
	CLI(&f->t, &r, "config", "rollback", "ghost", "1");
	EXPECT(&r, 1);
	run_free(&r);
	/* Still two versions: nothing above created one. */
	CLI(&f->t, &r, "config", "show", "web", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "latest_version")), 2);
	run_free(&r);
}

/* A WebSocket agent with service.name name that sent its first full report. */
static void agent_up(struct fx *f, struct opd_ta *a, const char *name)
{
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_ta_msg b;

	opd_ta_init(a, f->d.opamp_port, OPD_TA_CAPS);
	assert_int_equal(opd_ta_ws_connect(a), 0);
	opd_ta_msg_full(&b, a, name);
	m = opd_ta_exchange(a, &b.msg, REPLY_MS);
	assert_non_null(m);
	S2A_FREE(m);
}

static void agent_report(struct opd_ta *a, const char *hash, int status, const char *error)
{
	Opamp__Proto__V1__ServerToAgent *m;
	struct opd_ta_msg b;

	opd_ta_msg_init(&b, a);
	opd_ta_msg_remote_config_status(&b, hash, status, error);
	m = opd_ta_exchange(a, &b.msg, REPLY_MS);
	assert_non_null(m);
	S2A_FREE(m);
}

/* rollout status --json until the active version's counts are as wanted (bounded). */
static void wait_rollout(struct fx *f, int applied, int applying, int failed, int pending)
{
	uint64_t deadline = opd_test_now_ms() + 10000;
	struct run r = {0};

	for (;;) {
		json_t *v;
		CLI(&f->t, &r, "rollout", "status", "web", "--json");
		EXPECT(&r, 0);
		v = json_array_get(json_object_get(r.json, "versions"), 0);
		if (json_integer_value(json_object_get(v, "applied")) == applied &&
		    json_integer_value(json_object_get(v, "applying")) == applying &&
		    json_integer_value(json_object_get(v, "failed")) == failed &&
		    json_integer_value(json_object_get(v, "pending")) == pending)
			break;
		if (opd_test_now_ms() > deadline) {
			fprintf(stderr, "rollout never reached %d/%d/%d/%d:\n%s\n", applied,
				applying, failed, pending, r.out);
			fail();
		}
		run_free(&r);
		opd_test_pause_ms(100);
	}
	run_free(&r);
}

static void test_agents_and_rollout(void **state)
{
	struct fx *f = *state;
	struct opd_ta a[4];
	char path[400], hash[80], arg[420];
	struct run r;
	json_t *v;

	snprintf(path, sizeof path, "%s/web.yaml", f->files);
	write_file(path, yaml_v1);
	snprintf(arg, sizeof arg, "collector.yaml=%s", path);
	CLI(&f->t, &r, "config", "push", "web", arg, "--selector", "service.name=web", "--json");
	EXPECT(&r, 0);
	snprintf(hash, sizeof hash, "%s",
		 json_string_value(json_object_get(r.json, "config_hash")));
	run_free(&r);

	agent_up(f, &a[0], "web");
	agent_up(f, &a[1], "web");
	agent_up(f, &a[2], "web");
	agent_up(f, &a[3], "db");

	/* Nothing reported yet: three pending, the other agent not targeted. */
	wait_rollout(f, 0, 0, 0, 3);
	agent_report(&a[0], hash, RCS_APPLIED, NULL);
	agent_report(&a[1], hash, RCS_FAILED, "exporter debug: port 4317 in use");
	agent_report(&a[2], hash, RCS_APPLYING, NULL);
	wait_rollout(f, 1, 1, 1, 0);

	CLI(&f->t, &r, "rollout", "status", "web");
	EXPECT(&r, 0);
	CONTAINS(r.out, "web: active version 1");
	CONTAINS(r.out, "3 agents targeted");
	CONTAINS(r.out, "[##########!!!!!!!!!!..........]  33%  applied 1/3  applying 1  "
			"failed 1  pending 0");
	CONTAINS(r.out, a[1].uid_hex);
	CONTAINS(r.out, "(web): exporter debug: port 4317 in use");
	run_free(&r);
	CLI(&f->t, &r, "rollout", "status", "web", "--json");
	EXPECT(&r, 0);
	assert_false(json_is_true(json_object_get(r.json, "complete")));
	v = json_array_get(json_object_get(r.json, "versions"), 0);
	assert_int_equal(json_integer_value(json_object_get(v, "targeted")), 3);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(v, "failed_agents"), 0), "message")),
			    "exporter debug: port 4317 in use");
	run_free(&r);

	/* --watch: still applying, so the timeout ends it with exit 1. */
	CLI(&f->t, &r, "rollout", "status", "web", "--watch", "--interval", "0.2", "--timeout",
	    "1");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not complete after 1 s");
	run_free(&r);
	/* Everyone reported, one failed: the watch ends at once, exit 1. */
	agent_report(&a[2], hash, RCS_APPLIED, NULL);
	wait_rollout(f, 2, 0, 1, 0);
	CLI(&f->t, &r, "rollout", "status", "web", "--watch", "--interval", "0.2");
	EXPECT(&r, 1);
	CONTAINS(r.out, "finished with failures");
	run_free(&r);
	/* The failed agent recovers: complete, exit 0. */
	agent_report(&a[1], hash, RCS_APPLIED, NULL);
	CLI(&f->t, &r, "rollout", "status", "web", "--watch", "--interval", "0.2", "--timeout",
	    "20");
	EXPECT(&r, 0);
	CONTAINS(r.out, "applied 3/3");
	CONTAINS(r.out, "100%");
	CONTAINS(r.out, "rollout of web complete");
	run_free(&r);
	CLI(&f->t, &r, "rollout", "status", "nope");
	EXPECT(&r, 1);
	run_free(&r);

	/* agents list: every agent, filters, --json. */
	CLI(&f->t, &r, "agents", "list");
	EXPECT(&r, 0);
	CONTAINS(r.out, "INSTANCE_UID");
	for (int i = 0; i < 4; i++)
		CONTAINS(r.out, a[i].uid_hex);
	CONTAINS(r.out, "web@1");
	CONTAINS(r.out, "applied");
	CONTAINS(r.out, "4 agents\n");
	run_free(&r);
	CLI(&f->t, &r, "agents", "list", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "agents")), 4);
	assert_false(json_is_true(json_object_get(r.json, "partial")));
	run_free(&r);
	CLI(&f->t, &r, "agents", "list", "--attr", "service.name=db", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "agents")), 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(json_object_get(r.json, "agents"), 0),
					      "instance_uid")),
	    a[3].uid_hex);
	run_free(&r);
	CLI(&f->t, &r, "agents", "list", "--attr", "service.name=web", "--attr", "os.type=linux",
	    "--health", "healthy", "--connected", "true", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "agents")), 3);
	run_free(&r);
	CLI(&f->t, &r, "agents", "list", "--health", "down");
	EXPECT(&r, 0);
	CONTAINS(r.out, "0 agents");
	run_free(&r);
	CLI(&f->t, &r, "agents", "list", "--health", "sleepy");
	EXPECT(&r, 1);
	CONTAINS(r.err, "invalid_argument");
	run_free(&r);

	/* agents show: by hex and by UUID form. */
	CLI(&f->t, &r, "agents", "show", a[1].uid_hex);
	EXPECT(&r, 0);
	CONTAINS(r.out, "desired config:  web version 1");
	CONTAINS(r.out, "reported config: APPLIED");
	CONTAINS(r.out, "service.name = web");
	CONTAINS(r.out, "agent: healthy");
	run_free(&r);
	{
		char uuid[40];
		const char *h = a[3].uid_hex;
		snprintf(uuid, sizeof uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
			 h + 20);
		CLI(&f->t, &r, "agents", "show", uuid, "--json");
	}
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "instance_uid")),
			    a[3].uid_hex);
	assert_true(json_is_null(json_object_get(r.json, "desired_config")));
	run_free(&r);
	CLI(&f->t, &r, "agents", "show", "0123456789abcdef0123456789abcdef");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not_found");
	run_free(&r);
	CLI(&f->t, &r, "agents", "show", "not-a-uid");
	EXPECT(&r, 1);
	CONTAINS(r.err, "invalid_argument");
	run_free(&r);

	for (int i = 0; i < 4; i++)
		opd_ta_fini(&a[i]);
}

/* ---- certificates ---- */

#define TA_REQUESTS_CSR 0x200u /* AgentCapabilities_RequestsOpAMPConnectionSettings */

/* A WebSocket agent named name gets a certificate through the CSR flow (at most 8 s). */
static void agent_with_cert(struct fx *f, struct opd_ta *a, const char *name)
{
	Opamp__Proto__V1__ConnectionSettingsRequest req =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest o =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest cr = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;
	uint64_t end = opd_test_now_ms() + 8000;
	struct opd_ta_msg b;
	char *csr;
	int got = 0;

	opd_ta_init(a, f->d.opamp_port, OPD_TA_CAPS | TA_REQUESTS_CSR);
	assert_int_equal(opd_ta_ws_connect(a), 0);
	csr = opd_tca_csr(a->uid_hex, 0, NULL);
	assert_non_null(csr);
	opd_ta_msg_full(&b, a, name);
	cr.csr.data = (uint8_t *)csr;
	cr.csr.len = strlen(csr);
	o.certificate_request = &cr;
	req.opamp = &o;
	b.msg.connection_settings_request = &req;
	assert_int_equal(opd_ta_send(a, &b.msg), 0);
	while (!got && opd_test_now_ms() < end) {
		Opamp__Proto__V1__ServerToAgent *s = opd_ta_recv(a, 1000);
		if (s == NULL)
			continue;
		assert_null(s->error_response);
		got = s->connection_settings != NULL && s->connection_settings->opamp != NULL &&
		      s->connection_settings->opamp->certificate != NULL;
		S2A_FREE(s);
	}
	assert_true(got);
	free(csr);
}

/* The serial of the certificates of uid in "certs list --json" (the only one). */
static long long serial_of(struct fx *f, const char *uid)
{
	struct run r;
	json_t *list;
	long long serial;

	CLI(&f->t, &r, "certs", "list", "--agent", uid, "--json");
	EXPECT(&r, 0);
	list = json_object_get(r.json, "certificates");
	assert_int_equal(json_array_size(list), 1);
	serial = (long long)json_integer_value(json_object_get(json_array_get(list, 0), "serial"));
	run_free(&r);
	assert_true(serial > 0);
	return serial;
}

static void test_certs_commands(void **state)
{
	struct fx *f = *state;
	struct opd_client_resp resp;
	struct opd_ta a[2];
	char s1[24], s2[24], rot[64], fp[80];
	long long serial1, serial2;
	json_t *api = NULL, *v;
	struct run r;
	int has_progress;

	/*
	 * The single-node default generated its fleet CA and registers it once it leads (at most
	 * 10 s): certs ca shows it as the API does.
	 */
	fp[0] = '\0';
	for (uint64_t end = opd_test_now_ms() + 10000; fp[0] == '\0' && opd_test_now_ms() < end;) {
		const char *s;
		api = NULL;
		assert_int_equal(
		    opd_api_request(&f->d, "GET", "/api/v1/ca", NULL, f->d.token, &resp, &api),
		    200);
		opd_client_resp_free(&resp);
		s = json_string_value(
		    json_object_get(json_object_get(api, "active"), "fingerprint"));
		if (s != NULL)
			snprintf(fp, sizeof fp, "%s", s);
		json_decref(api);
		if (fp[0] == '\0')
			opd_test_pause_ms(100);
	}
	assert_int_equal(strlen(fp), 64);
	CLI(&f->t, &r, "certs", "ca");
	EXPECT(&r, 0);
	CONTAINS(r.out, "active CA:     CN=opampd fleet CA");
	CONTAINS(r.out, fp);
	CONTAINS(r.out, "signs here:    yes");
	CONTAINS(r.out, "trust bundle:  1 CA");
	CONTAINS(r.out, "lifetime:      90 days");
	CONTAINS(r.out, "FINGERPRINT");
	run_free(&r);
	CLI(&f->t, &r, "certs", "ca", "--json");
	EXPECT(&r, 0);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "active"), "fingerprint")),
	    fp);
	assert_int_equal(json_array_size(json_object_get(r.json, "trust_bundle")), 1);
	assert_true(json_is_true(json_object_get(json_object_get(r.json, "active"), "key_here")));
	run_free(&r);
	CLI(&f->t, &r, "certs", "ca", "--bundle");
	EXPECT(&r, 0);
	assert_true(strncmp(r.out, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
	run_free(&r);
	CLI(&f->t, &r, "certs", "list");
	EXPECT(&r, 0);
	assert_string_equal(r.out, "0 certificates\n");
	run_free(&r);

	/* Two agents get certificates through the CSR flow. */
	agent_with_cert(f, &a[0], "web");
	agent_with_cert(f, &a[1], "db");
	serial1 = serial_of(f, a[0].uid_hex);
	serial2 = serial_of(f, a[1].uid_hex);
	assert_int_not_equal(serial1, serial2);
	snprintf(s1, sizeof s1, "%lld", serial1);
	snprintf(s2, sizeof s2, "%lld", serial2);

	CLI(&f->t, &r, "certs", "list");
	EXPECT(&r, 0);
	CONTAINS(r.out, "SERIAL");
	CONTAINS(r.out, "EXPIRES");
	CONTAINS(r.out, a[0].uid_hex);
	CONTAINS(r.out, a[1].uid_hex);
	CONTAINS(r.out, "in 89d");
	CONTAINS(r.out, "2 certificates: 2 valid, 0 expiring, 0 expired, 0 revoked\n");
	run_free(&r);
	CLI(&f->t, &r, "certs", "list", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 2);
	run_free(&r);
	CLI(&f->t, &r, "certs", "list", "--limit", "1", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 1);
	run_free(&r);
	/* 90-day certificates: none expires within a day, both within 91 days. */
	CLI(&f->t, &r, "certs", "list", "--expiring-within", "1d", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 0);
	run_free(&r);
	CLI(&f->t, &r, "certs", "list", "--expiring-within", "13w", "--agent", a[1].uid_hex);
	EXPECT(&r, 0);
	CONTAINS(r.out, a[1].uid_hex);
	CONTAINS(r.out, "1 certificate: 1 valid");
	run_free(&r);
	CLI(&f->t, &r, "certs", "list", "--agent", "not-a-uid");
	EXPECT(&r, 1);
	CONTAINS(r.err, "invalid_argument");
	run_free(&r);

	/* show: the fields, whether the agent uses it, the PEM; --json; --pem. */
	CLI(&f->t, &r, "certs", "show", s1);
	EXPECT(&r, 0);
	CONTAINS(r.out, a[0].uid_hex);
	CONTAINS(r.out, "state:         valid\n");
	CONTAINS(r.out, fp); /* the issuing CA */
	CONTAINS(r.out, "reason csr");
	CONTAINS(r.out, "revoked:       no\n");
	CONTAINS(r.out, "in use:        ");
	CONTAINS(r.out, "-----BEGIN CERTIFICATE-----");
	assert_null(strstr(r.out, "PRIVATE KEY"));
	run_free(&r);
	CLI(&f->t, &r, "certs", "show", s2, "--json");
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "instance_uid")),
			    a[1].uid_hex);
	assert_string_equal(json_string_value(json_object_get(r.json, "ca_fingerprint")), fp);
	assert_non_null(strstr(json_string_value(json_object_get(r.json, "cert_pem")), "BEGIN"));
	run_free(&r);
	CLI(&f->t, &r, "certs", "show", s2, "--pem");
	EXPECT(&r, 0);
	assert_true(strncmp(r.out, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
	run_free(&r);
	CLI(&f->t, &r, "certs", "show", "999999");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not_found");
	run_free(&r);

	/* revoke: once, then a conflict; an unknown reason is refused. */
	CLI(&f->t, &r, "certs", "revoke", s2, "--reason", "bogus");
	EXPECT(&r, 1);
	CONTAINS(r.err, "invalid_argument");
	run_free(&r);
	CLI(&f->t, &r, "certs", "revoke", s1, "--reason", "keyCompromise");
	EXPECT(&r, 0);
	CONTAINS(r.out, "revoked");
	run_free(&r);
	CLI(&f->t, &r, "certs", "revoke", s1);
	EXPECT(&r, 1);
	run_free(&r);
	CLI(&f->t, &r, "certs", "revoke", "999999", "--json");
	EXPECT(&r, 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
	    "not_found");
	run_free(&r);
	CLI(&f->t, &r, "certs", "show", s1, "--json");
	EXPECT(&r, 0);
	assert_true(json_is_true(json_object_get(r.json, "revoked")));
	assert_string_equal(json_string_value(json_object_get(r.json, "revoke_reason")),
			    "keyCompromise");
	run_free(&r);
	CLI(&f->t, &r, "certs", "list");
	EXPECT(&r, 0);
	CONTAINS(r.out, "1 valid, 0 expiring, 0 expired, 1 revoked");
	run_free(&r);

	/* rotate: the id printed is the one the API lists. */
	CLI(&f->t, &r, "certs", "rotate", "--selector", "service.name=web", "--json");
	EXPECT(&r, 0);
	snprintf(rot, sizeof rot, "%s", json_string_value(json_object_get(r.json, "rotation_id")));
	assert_true(strlen(rot) > 0);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "selector"), "service.name")),
	    "web");
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotate", "--all-agents");
	EXPECT(&r, 0);
	CONTAINS(r.out, "started for every agent");
	CONTAINS(r.out, "opampd certs rotations ");
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations");
	EXPECT(&r, 0);
	CONTAINS(r.out, rot);
	CONTAINS(r.out, "service.name=web");
	CONTAINS(r.out, "2 rotations\n");
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "rotations")), 2);
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations", rot, "--json");
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "rotation_id")), rot);
	has_progress = json_is_object(json_object_get(r.json, "progress"));
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations", rot);
	EXPECT(&r, 0);
	CONTAINS(r.out, "selector:  service.name=web\n");
	CONTAINS(r.out, has_progress ? "acknowledged" : "progress not reported");
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations", "nosuchrotation");
	EXPECT(&r, 1);
	CONTAINS(r.err, "not_found");
	run_free(&r);

	/*
	 * --watch. A selector nobody matches is complete at once (exit 0) where the node reports
	 * progress; where it does not, watching cannot end well and says so (exit 1).
	 */
	CLI(&f->t, &r, "certs", "rotate", "--selector", "service.name=nobody", "--watch",
	    "--interval", "0.2", "--timeout", "10");
	if (has_progress) {
		EXPECT(&r, 0);
		CONTAINS(r.out, "acknowledged 0/0");
		CONTAINS(r.out, "no agent matches its selector");
	} else {
		EXPECT(&r, 1);
		CONTAINS(r.err, "does not report rotation progress");
	}
	run_free(&r);
	/* The web agent cannot reconnect with a new certificate here: never all acknowledged. */
	CLI(&f->t, &r, "certs", "rotations", rot, "--watch", "--interval", "0.2", "--timeout", "1");
	EXPECT(&r, 1);
	if (has_progress)
		CONTAINS(r.out, "acknowledged ");
	run_free(&r);
	CLI(&f->t, &r, "certs", "rotations", rot, "--watch", "--json", "--interval", "0.2",
	    "--timeout", "1");
	EXPECT(&r, 1);
	/* One JSON document per change: the first line parses. */
	{
		char *nl = strchr(r.out, '\n');
		assert_non_null(nl);
		*nl = '\0';
		v = json_loads(r.out, 0, NULL);
		assert_non_null(v);
		assert_string_equal(json_string_value(json_object_get(v, "rotation_id")), rot);
		json_decref(v);
	}
	run_free(&r);

	opd_ta_fini(&a[0]);
	opd_ta_fini(&a[1]);
}

/* An admin API over TLS: the CLI checks the certificate against --cacert (or $OPAMPD_CACERT). */
static void test_https_admin(void **state)
{
	struct opd_tca ca, other;
	struct opd_tca_leaf leaf = {.cn = "opampd admin", .server = true, .key = OPD_TCA_EC};
	char dir[256], ca_pem[320], other_pem[320], cert[320], key[320];
	const char *extra[] = {"--admin-tls-cert", cert, "--admin-tls-key", key, NULL};
	struct opd_daemon d;
	struct target t;
	struct run r;

	(void)state;
	assert_int_equal(opd_tca_tmpdir(dir, sizeof dir), 0);
	snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
	snprintf(other_pem, sizeof other_pem, "%s/other.pem", dir);
	snprintf(cert, sizeof cert, "%s/admin.pem", dir);
	snprintf(key, sizeof key, "%s/admin.key", dir);
	assert_int_equal(opd_tca_init(&ca, "cli test CA", OPD_TCA_EC), 0);
	assert_int_equal(opd_tca_init(&other, "some other CA", OPD_TCA_EC), 0);
	assert_int_equal(opd_tca_write_ca(&ca, ca_pem), 0);
	assert_int_equal(opd_tca_write_ca(&other, other_pem), 0);
	assert_int_equal(opd_tca_issue(&ca, &leaf, cert, key), 0);
	assert_int_equal(opd_daemon_start(&d, extra), 0);
	target_of(&t, &d, BY_FLAGS);
	snprintf(t.url, sizeof t.url, "https://127.0.0.1:%d", d.admin_port);

	CLI(&t, &r, "cluster", "status", "--cacert", ca_pem, "--json");
	EXPECT(&r, 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "role")), "leader");
	run_free(&r);
	/* A certificate from a CA it was not told about: no answer is trusted, exit 3. */
	CLI(&t, &r, "cluster", "status", "--cacert", other_pem);
	EXPECT(&r, 3);
	CONTAINS(r.err, "cannot reach the admin API at https://127.0.0.1:");
	run_free(&r);

	assert_int_equal(opd_daemon_stop(&d), 0);
	opd_tca_fini(&ca);
	opd_tca_fini(&other);
	opd_tca_rmdir(dir);
}

/* ---- a cluster: membership ---- */

static void cluster_target(struct opd_cluster *c, int i, struct target *t)
{
	target_of(t, &c->nodes[i].d, BY_FLAGS);
}

static int leader_of(struct opd_cluster *c, int i)
{
	json_t *st = opd_cluster_status(c, i, 3000);
	int id = (int)json_integer_value(json_object_get(json_object_get(st, "leader"), "id"));

	json_decref(st);
	return id;
}

/* Stopped by the teardown too, when an assertion ends the test early. */
static struct opd_cluster c;
static struct opd_daemon d4;

static int cluster_teardown(void **state)
{
	(void)state;
	opd_daemon_stop(&d4);
	opd_cluster_stop(&c);
	return 0;
}

static void test_cluster_commands(void **state)
{
	static const char *const hb[] = {"--heartbeat-interval", "1", NULL};
	struct target t, tf;
	struct run r;
	char raft4[32], admin4[32], url4[64];
	const char *extra[16];
	int l, fol, n = 0, ports[2], raft_port, admin_port;
	uint64_t deadline;

	(void)state;
	assert_int_equal(opd_test_free_ports(ports, 2), 0);
	raft_port = ports[0];
	admin_port = ports[1];
	assert_int_equal(opd_cluster_start(&c, 3, hb), 0);
	l = opd_cluster_wait_leader(&c, 15000);
	assert_true(l >= 0);
	fol = opd_cluster_follower(&c, l, 0);
	cluster_target(&c, l, &t);
	cluster_target(&c, fol, &tf);

	CLI(&tf, &r, "cluster", "status");
	EXPECT(&r, 0);
	CONTAINS(r.out, "follower");
	CONTAINS(r.out, "LAST CONTACT");
	run_free(&r);
	CLI(&tf, &r, "cluster", "status", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "members")), 3);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(r.json, "leader"), "id")), l + 1);
	run_free(&r);

	/* Node 4 starts knowing the voters but not among them; the CLI adds it. */
	snprintf(raft4, sizeof raft4, "127.0.0.1:%d", raft_port);
	snprintf(admin4, sizeof admin4, "127.0.0.1:%d", admin_port);
	snprintf(url4, sizeof url4, "http://127.0.0.1:%d", admin_port);
	extra[n++] = "--node-id";
	extra[n++] = "4";
	extra[n++] = "--raft-listen";
	extra[n++] = raft4;
	extra[n++] = "--admin-listen";
	extra[n++] = admin4;
	extra[n++] = "--signing-key";
	extra[n++] = c.key_path;
	for (int i = 0; i < 3; i++) {
		extra[n++] = "--voter";
		extra[n++] = c.voters[i];
	}
	extra[n] = NULL;
	assert_int_equal(opd_daemon_start_single(&d4, extra), 0);

	/* Through a follower: the write is forwarded to the leader. */
	CLI(&tf, &r, "cluster", "add", "4", raft4, url4);
	EXPECT(&r, 0);
	CONTAINS(r.out, "added node 4 as a spare");
	run_free(&r);
	CLI(&t, &r, "cluster", "add", "4", raft4, url4);
	EXPECT(&r, 1); /* already a member */
	run_free(&r);
	CLI(&t, &r, "cluster", "promote", "4", "--json");
	EXPECT(&r, 0);
	{
		json_t *m;
		size_t i;
		int seen = 0;
		json_array_foreach(json_object_get(r.json, "members"), i, m)
		{
			if (json_integer_value(json_object_get(m, "id")) == 4) {
				assert_string_equal(json_string_value(json_object_get(m, "role")),
						    "voter");
				seen = 1;
			}
		}
		assert_true(seen);
	}
	run_free(&r);
	/* Hand leadership to node 4 and wait until the cluster agrees. */
	CLI(&t, &r, "cluster", "transfer", "4");
	EXPECT(&r, 0);
	run_free(&r);
	deadline = opd_test_now_ms() + 15000;
	while (leader_of(&c, l) != 4 && opd_test_now_ms() < deadline)
		opd_test_pause_ms(100);
	assert_int_equal(leader_of(&c, l), 4);
	/* Without an ID: anyone else. Sent to a node that is not the leader: forwarded. */
	CLI(&t, &r, "cluster", "transfer");
	EXPECT(&r, 0);
	run_free(&r);
	deadline = opd_test_now_ms() + 15000;
	while ((leader_of(&c, l) == 4 || leader_of(&c, l) == 0) && opd_test_now_ms() < deadline)
		opd_test_pause_ms(100);
	assert_int_not_equal(leader_of(&c, l), 4);
	assert_int_not_equal(leader_of(&c, l), 0);
	/* The new leader may still be settling: retry the removal a few times. */
	deadline = opd_test_now_ms() + 15000;
	for (;;) {
		CLI(&t, &r, "cluster", "remove", "4");
		if (r.code == 0 || opd_test_now_ms() > deadline)
			break;
		run_free(&r);
		opd_test_pause_ms(200);
	}
	EXPECT(&r, 0);
	CONTAINS(r.out, "removed node 4");
	run_free(&r);
	CLI(&t, &r, "cluster", "status", "--json");
	EXPECT(&r, 0);
	assert_int_equal(json_array_size(json_object_get(r.json, "members")), 3);
	run_free(&r);
	CLI(&t, &r, "cluster", "promote", "9");
	EXPECT(&r, 1);
	run_free(&r);

	assert_int_equal(opd_daemon_stop(&d4), 0);
	assert_int_equal(opd_cluster_stop(&c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_help_and_usage),
	    cmocka_unit_test(test_cannot_connect),
	    cmocka_unit_test_setup_teardown(test_where_is_the_node, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_commands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agents_and_rollout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_certs_commands, setup, teardown),
	    cmocka_unit_test(test_https_admin),
	    cmocka_unit_test_teardown(test_cluster_commands, cluster_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
