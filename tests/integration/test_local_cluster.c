/*
 * End-to-end checks of deploy/: deploy/local-cluster.sh starts a working three-node cluster
 * (leader agreed by all three through the admin API, a configuration published with the CLI
 * reaches every node, SIGTERM stops everything cleanly); deploy/opampd.service passes
 * `systemd-analyze verify` and a sandboxing threshold; the .deb that `make deb` builds holds the
 * binary, unit and configuration, depends on raft 0.22, and its binary serves with the packaged
 * configuration. Each check says so and skips when its tool (systemd-analyze, cpack) is missing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_client.h"
#include "daemon.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_tree(const char *dir)
{
	if (dir[0] != '\0')
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int have(const char *tool)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

/* Print a file (at most 16 KiB from its end) to stderr, for failure diagnostics. */
static void dump(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[16384];
	size_t n;
	long size;

	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)sizeof buf ? size - (long)sizeof buf : 0, SEEK_SET);
	n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	fprintf(stderr, "---- %s ----\n%.*s\n----\n", path, (int)n, buf);
}

/*
 * Start argv (argv[0] a path or a name on PATH) with cwd (NULL: ours), environment additions env
 * ("NAME=value" strings, NULL-terminated, may be NULL), stdout and stderr to log, in its own
 * process group. Returns the pid.
 */
static pid_t spawn(const char *const *argv, const char *cwd, const char *const *env,
		   const char *log)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		setpgid(0, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		for (int i = 0; env != NULL && env[i] != NULL; i++)
			putenv((char *)env[i]);
		if (cwd != NULL && chdir(cwd) != 0)
			_exit(126);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Wait at most timeout_ms for pid; then SIGKILL its group. The exit status, 128+sig if killed. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0)
			return -1;
		if (opd_test_now_ms() > deadline) {
			fprintf(stderr, "process %d still running after %d ms: killed\n", (int)pid,
				timeout_ms);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		opd_test_pause_ms(20);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Run to completion (bounded); the exit status. */
static int run(const char *const *argv, const char *cwd, const char *log, int timeout_ms)
{
	return wait_exit(spawn(argv, cwd, NULL, log), timeout_ms);
}

static int read_text(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(out, 1, cap - 1, f);
	fclose(f);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = '\0';
	return (int)n;
}

/* ---- deploy/local-cluster.sh ---- */

/* The script's process group, for the teardown when an assertion ends the test early. */
static pid_t script_pid;

static int stop_script(void **state)
{
	(void)state;
	if (script_pid > 0) {
		kill(script_pid, SIGTERM);
		if (wait_exit(script_pid, 20000) != 0)
			kill(-script_pid, SIGKILL); /* the nodes are in its process group */
		script_pid = 0;
	}
	return 0;
}

static int port_free(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/* A two-digit prefix PP whose nine ports PPN0..PPN2 (N = 1..3) are all free now. */
static int pick_prefix(void)
{
	unsigned seed = (unsigned)getpid() ^ (unsigned)opd_test_now_ms();

	for (int tries = 0; tries < 40; tries++) {
		int pp = 20 + (int)(rand_r(&seed) % 40), ok = 1;
		for (int n = 1; n <= 3 && ok; n++)
			for (int k = 0; k < 3 && ok; k++)
				ok = port_free(pp * 100 + n * 10 + k);
		if (ok)
			return pp;
	}
	return -1;
}

struct node_view {
	struct opd_daemon d; /* admin_port and token only */
	int leader;
	char role[32];
};

/* Node n's view of the cluster (its token read on the way); 0 or -1 when it does not answer. */
static int view(const char *dir, int pp, int n, struct node_view *v)
{
	char path[512];
	json_t *j = NULL;
	struct opd_client_resp r = {0};
	int status;

	*v = (struct node_view){0};
	v->d.admin_port = pp * 100 + n * 10 + 1;
	snprintf(path, sizeof path, "%s/cluster-data/n%d/admin.token", dir, n);
	if (read_text(path, v->d.token, sizeof v->d.token) <= 0)
		return -1;
	status = opd_api_request(&v->d, "GET", "/api/v1/cluster", NULL, v->d.token, &r, &j);
	opd_client_resp_free(&r);
	if (status != 200 || j == NULL) {
		json_decref(j);
		return -1;
	}
	v->leader = (int)json_integer_value(json_object_get(json_object_get(j, "leader"), "id"));
	snprintf(v->role, sizeof v->role, "%s", json_string_value(json_object_get(j, "role")));
	json_decref(j);
	return 0;
}

static void test_local_cluster_script(void **state)
{
	const char *bin = getenv("OPAMPD_BIN"), *src = getenv("OPD_SOURCE_DIR");
	char dir[] = "/tmp/opd-local-cluster-XXXXXX", script[512], log[512], cli_log[512];
	char envpp[64], yaml[512], n2[512], path[512];
	struct node_view v[3];
	uint64_t deadline, t0;
	int pp, leader = 0, status;
	pid_t pid;

	(void)state;
	assert_non_null(bin);
	assert_non_null(src);
	assert_non_null(mkdtemp(dir));
	pp = pick_prefix();
	assert_true(pp > 0);
	snprintf(script, sizeof script, "%s/deploy/local-cluster.sh", src);
	snprintf(log, sizeof log, "%s/local-cluster.log", dir);
	snprintf(cli_log, sizeof cli_log, "%s/cli.log", dir);
	snprintf(envpp, sizeof envpp, "OPAMPD_PORT_PREFIX=%d", pp);
	{
		const char *argv[] = {"sh", script, bin, NULL};
		const char *env[] = {envpp, NULL};
		pid = spawn(argv, dir, env, log);
		script_pid = pid;
	}

	/* All three agree on a leader, which says it leads. */
	t0 = opd_test_now_ms();
	deadline = t0 + 30000;
	for (;;) {
		int ok = 1;
		for (int n = 1; n <= 3 && ok; n++)
			ok = view(dir, pp, n, &v[n - 1]) == 0 && v[n - 1].leader != 0 &&
			     v[n - 1].leader == v[0].leader;
		if (ok && strcmp(v[v[0].leader - 1].role, "leader") == 0) {
			leader = v[0].leader;
			break;
		}
		if (opd_test_now_ms() > deadline || waitpid(pid, &status, WNOHANG) == pid) {
			dump(log);
			fail_msg("no leader agreed by all three nodes");
		}
		opd_test_pause_ms(100);
	}
	fprintf(stderr, "local-cluster.sh: leader %d agreed by all three nodes after %llu ms\n",
		leader, (unsigned long long)(opd_test_now_ms() - t0));

	/* Publish through node 2 with the CLI, finding it by its data directory alone. */
	snprintf(yaml, sizeof yaml, "%s/collector.yaml", dir);
	{
		FILE *f = fopen(yaml, "w");
		assert_non_null(f);
		fputs("receivers:\n  otlp:\n    protocols:\n      grpc: {}\n", f);
		fclose(f);
	}
	snprintf(n2, sizeof n2, "%s/cluster-data/n2", dir);
	{
		const char *argv[] = {bin,
				      "config",
				      "push",
				      "demo",
				      yaml,
				      "--message",
				      "from the local cluster test",
				      "--data-dir",
				      n2,
				      NULL};
		int rc = run(argv, NULL, cli_log, 60000);
		if (rc != 0)
			dump(cli_log);
		assert_int_equal(rc, 0);
	}
	/* Every node has it (followers apply it shortly after the leader answers). */
	deadline = opd_test_now_ms() + 15000;
	for (int n = 1; n <= 3; n++) {
		for (;;) {
			struct opd_client_resp r = {0};
			json_t *j = NULL;
			int s = opd_api_request(&v[n - 1].d, "GET", "/api/v1/configs/demo", NULL,
						v[n - 1].d.token, &r, &j);
			int got = s == 200 &&
				  json_integer_value(json_object_get(j, "active_version")) == 1;
			opd_client_resp_free(&r);
			json_decref(j);
			if (got)
				break;
			if (opd_test_now_ms() > deadline) {
				dump(log);
				fail_msg("node %d never listed configuration demo", n);
			}
			opd_test_pause_ms(100);
		}
	}

	/* SIGTERM to the script: it stops the three nodes and says whether they exited cleanly. */
	kill(pid, SIGTERM);
	status = wait_exit(pid, 30000);
	script_pid = 0;
	if (status != 0)
		dump(log);
	assert_int_equal(status, 0);
	{
		char text[65536];
		assert_true(read_text(log, text, sizeof text) > 0);
		assert_non_null(strstr(text, "local-cluster: all nodes stopped cleanly"));
	}
	/* And none is left running. */
	for (int n = 1; n <= 3; n++) {
		char ready[1024];
		json_t *j;
		pid_t np;
		snprintf(path, sizeof path, "%s/cluster-data/n%d/ready.json", dir, n);
		assert_true(read_text(path, ready, sizeof ready) > 0);
		j = json_loads(ready, 0, NULL);
		np = (pid_t)json_integer_value(json_object_get(j, "pid"));
		json_decref(j);
		assert_true(np > 0);
		assert_int_equal(kill(np, 0), -1);
		assert_int_equal(errno, ESRCH);
	}
	remove_tree(dir);
}

/* ---- deploy/opampd.service ---- */

/*
 * Copy the unit at src to dst with its ExecStart binary (/usr/bin/opampd) replaced by bin:
 * systemd-analyze verify insists that the binary exists.
 */
static void unit_for(const char *src, const char *dst, const char *bin)
{
	char text[16384], *p;
	FILE *f;
	int n = read_text(src, text, sizeof text);

	assert_true(n > 0);
	p = strstr(text, "ExecStart=/usr/bin/opampd ");
	assert_non_null(p);
	f = fopen(dst, "w");
	assert_non_null(f);
	fprintf(f, "%.*sExecStart=%s %s\n", (int)(p - text), text, bin,
		p + strlen("ExecStart=/usr/bin/opampd "));
	assert_int_equal(fclose(f), 0);
}

/* systemd-analyze verify (no output at all: warnings count) and the sandbox exposure. */
static void verify_unit(const char *unit, const char *dir)
{
	char log[512], text[8192];
	const char *verify[] = {"systemd-analyze", "verify", unit, NULL};
	const char *security[] = {"systemd-analyze", "security", "--offline=yes",
				  "--threshold=25",  unit,       NULL};
	int rc;

	snprintf(log, sizeof log, "%s/verify.log", dir);
	unlink(log);
	rc = run(verify, NULL, log, 60000);
	if (read_text(log, text, sizeof text) < 0)
		text[0] = '\0';
	if (rc != 0 || text[0] != '\0')
		fprintf(stderr, "systemd-analyze verify %s: exit %d\n%s\n", unit, rc, text);
	assert_int_equal(rc, 0);
	assert_string_equal(text, "");
	unlink(log);
	/* Exposure on systemd's 0 (locked down) to 10 scale, times ten: at most 2.5. */
	rc = run(security, NULL, log, 60000);
	if (rc != 0 && read_text(log, text, sizeof text) > 0)
		fprintf(stderr, "%s\n", text);
	assert_int_equal(rc, 0);
}

static void test_systemd_unit(void **state)
{
	const char *bin = getenv("OPAMPD_BIN"), *src = getenv("OPD_SOURCE_DIR");
	char dir[] = "/tmp/opd-unit-XXXXXX", unit_src[512], unit[512];

	(void)state;
	if (!have("systemd-analyze")) {
		fprintf(stderr,
			"SKIPPED: systemd-analyze is not installed (Debian's systemd package; "
			"deploy/setup-deps.sh installs it): deploy/opampd.service not "
			"verified\n");
		skip();
	}
	assert_non_null(mkdtemp(dir));
	snprintf(unit_src, sizeof unit_src, "%s/deploy/opampd.service", src);
	snprintf(unit, sizeof unit, "%s/opampd.service", dir);
	unit_for(unit_src, unit, bin);
	verify_unit(unit, dir);
	remove_tree(dir);
}

/* ---- the .deb ---- */

static void test_deb_package(void **state)
{
	const char *bin = getenv("OPAMPD_BIN");
	char dir[] = "/tmp/opd-deb-XXXXXX", build[512], config[600], log[512], deb[700];
	char root[600], cmd[2048], text[65536], unit[700], conf[700], pkg_bin[700], path[600];
	struct opd_daemon d;
	FILE *p;
	int rc;

	(void)state;
	{
		char tmp[512];
		/* OPAMPD_BIN is BUILD/opampd/opampd. */
		snprintf(tmp, sizeof tmp, "%s", bin);
		snprintf(build, sizeof build, "%s", dirname(dirname(tmp)));
	}
	snprintf(config, sizeof config, "%s/CPackConfig.cmake", build);
	if (!have("cpack") || !have("dpkg-deb") || access(config, R_OK) != 0) {
		fprintf(stderr, "SKIPPED: cpack, dpkg-deb or %s missing: the .deb not checked\n",
			config);
		skip();
	}
	assert_non_null(mkdtemp(dir));
	snprintf(log, sizeof log, "%s/cpack.log", dir);
	{
		const char *argv[] = {"cpack", "-G", "DEB", "--config", config, "-B", dir, NULL};
		rc = run(argv, NULL, log, 180000);
		if (rc != 0)
			dump(log);
		assert_int_equal(rc, 0);
	}
	snprintf(cmd, sizeof cmd, "ls %s/opampd_*.deb", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(deb, sizeof deb, p));
	pclose(p);
	deb[strcspn(deb, "\n")] = '\0';

	/* Dependencies: raft from bookworm-backports, not bookworm's older API. */
	snprintf(cmd, sizeof cmd, "dpkg-deb -f '%s' Depends Package", deb);
	p = popen(cmd, "r");
	assert_non_null(p);
	text[fread(text, 1, sizeof text - 1, p)] = '\0';
	pclose(p);
	assert_non_null(strstr(text, "libraft0 (>= 0.22)"));
	assert_non_null(strstr(text, "adduser"));
	assert_non_null(strstr(text, "Package: opampd"));
	/* What it installs, and the maintainer scripts. */
	snprintf(cmd, sizeof cmd, "dpkg-deb -c '%s'; dpkg-deb -I '%s'", deb, deb);
	p = popen(cmd, "r");
	assert_non_null(p);
	text[fread(text, 1, sizeof text - 1, p)] = '\0';
	pclose(p);
	assert_non_null(strstr(text, "./usr/bin/opampd"));
	assert_non_null(strstr(text, "./usr/lib/systemd/system/opampd.service"));
	assert_non_null(strstr(text, "./etc/opampd/opampd.conf"));
	assert_non_null(strstr(text, "./usr/share/doc/opampd/opampd.conf.example"));
	assert_non_null(strstr(text, "postinst"));
	assert_non_null(strstr(text, "conffiles"));

	snprintf(root, sizeof root, "%s/root", dir);
	{
		const char *argv[] = {"dpkg-deb", "-x", deb, root, NULL};
		assert_int_equal(run(argv, NULL, log, 60000), 0);
	}
	snprintf(unit, sizeof unit, "%s/usr/lib/systemd/system/opampd.service", root);
	snprintf(conf, sizeof conf, "%s/etc/opampd/opampd.conf", root);
	snprintf(pkg_bin, sizeof pkg_bin, "%s/usr/bin/opampd", root);
	/* The packaged unit starts the packaged binary with the packaged configuration. */
	assert_true(read_text(unit, text, sizeof text) > 0);
	assert_non_null(strstr(text, "ExecStart=/usr/bin/opampd serve --config "
				     "/etc/opampd/opampd.conf"));
	if (have("systemd-analyze")) {
		snprintf(path, sizeof path, "%s/opampd.service", dir);
		unit_for(unit, path, pkg_bin);
		verify_unit(path, dir);
	} else {
		fprintf(stderr,
			"SKIPPED: systemd-analyze missing: the packaged unit not verified\n");
	}
	/* Run what the unit runs (the test's own directories and ports override the file's). */
	{
		const char *extra[] = {"--config", conf, NULL};
		char *saved = strdup(bin);
		struct opd_client_resp r = {0};
		assert_non_null(saved);
		setenv("OPAMPD_BIN", pkg_bin, 1);
		rc = opd_daemon_start_single(&d, extra);
		setenv("OPAMPD_BIN", saved, 1);
		free(saved);
		assert_int_equal(rc, 0);
		assert_int_equal(opd_api_request(&d, "GET", "/readyz", NULL, NULL, &r, NULL), 200);
		opd_client_resp_free(&r);
		assert_int_equal(
		    opd_api_request(&d, "GET", "/api/v1/configs", NULL, d.token, &r, NULL), 200);
		opd_client_resp_free(&r);
		assert_int_equal(opd_daemon_stop(&d), 0);
	}
	remove_tree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_local_cluster_script, stop_script),
	    cmocka_unit_test(test_systemd_unit),
	    cmocka_unit_test(test_deb_package),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
