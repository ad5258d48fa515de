#include "daemon.h"

#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

uint64_t opd_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void opd_test_pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_dir(const char *dir)
{
	if (dir[0] != '\0')
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Read a whole small file into buf (NUL-terminated); -1 when absent or too big. */
static int read_small(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, cap - 1, f);
	if (!feof(f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	return (int)n;
}

static int parse_ready(struct opd_daemon *d, const char *path)
{
	char text[1024];
	json_t *j, *op, *ad;
	int rc = -1;

	if (read_small(path, text, sizeof(text)) < 0)
		return -1;
	j = json_loads(text, 0, NULL);
	if (j == NULL)
		return -1; /* written atomically, so this means "not yet" only if it is broken */
	op = json_object_get(j, "opamp_port");
	ad = json_object_get(j, "admin_port");
	if (json_is_integer(op) && json_is_integer(ad) && json_integer_value(op) > 0 &&
	    json_integer_value(op) < 65536 && json_integer_value(ad) > 0 &&
	    json_integer_value(ad) < 65536) {
		d->opamp_port = (int)json_integer_value(op);
		d->admin_port = (int)json_integer_value(ad);
		rc = 0;
	}
	json_decref(j);
	return rc;
}

static int read_token(struct opd_daemon *d)
{
	char path[300];
	int n;

	snprintf(path, sizeof(path), "%s/admin.token", d->dir);
	n = read_small(path, d->token, sizeof(d->token));
	if (n <= 0)
		return -1;
	while (n > 0 && (d->token[n - 1] == '\n' || d->token[n - 1] == '\r'))
		d->token[--n] = '\0';
	return n > 0 ? 0 : -1;
}

int opd_daemon_alive(struct opd_daemon *d)
{
	int status;

	if (d->cluster != NULL) {
		for (int i = 0; i < d->cluster->n; i++)
			if (d->cluster->nodes[i].state == OPD_CN_RUNNING &&
			    !opd_daemon_alive(&d->cluster->nodes[i].d))
				return 0;
		return 1;
	}

	if (d->pid <= 0)
		return 0;
	return waitpid(d->pid, &status, WNOHANG) == 0;
}

#define CLUSTER_LEADER_TIMEOUT_MS 15000

/* Cluster mode: three nodes, a leader elected, d describes node 2. */
static int cluster_start(struct opd_daemon *d, const char *const *extra)
{
	struct opd_cluster *c = calloc(1, sizeof(*c));

	*d = (struct opd_daemon){0};
	if (c == NULL)
		return -1;
	if (opd_cluster_start(c, 3, extra) != 0) {
		free(c);
		return -1;
	}
	if (opd_cluster_wait_leader(c, CLUSTER_LEADER_TIMEOUT_MS) < 0) {
		opd_cluster_dump_logs(c);
		opd_cluster_stop(c);
		free(c);
		return -1;
	}
	*d = c->nodes[1].d;
	d->cluster = c;
	return 0;
}

int opd_daemon_start(struct opd_daemon *d, const char *const *extra)
{
	const char *mode = getenv("OPD_TEST_CLUSTER");

	if (mode != NULL && strcmp(mode, "3") == 0)
		return cluster_start(d, extra);
	return opd_daemon_start_single(d, extra);
}

/*
 * Pick n distinct free loopback ports: every socket stays bound until all are picked, so the
 * kernel cannot hand out the same port twice. Another process may still take one before the
 * node binds it; the node then fails to start and the test says so.
 */
/*
 * Ports are drawn below the kernel's ephemeral range (32768 and up by default):
 * a port the kernel picked itself (a client's source port, a listener on port
 * 0) can then never be the one a daemon is about to bind, or come back to after
 * a restart. Each candidate is bound to check it is free; all are held until
 * every one is picked, so none is handed out twice.
 */
#define PORT_LOW 20000
#define PORT_HIGH 32767
#define PORT_TRIES 500

static unsigned port_seed(void)
{
	unsigned seed = (unsigned)getpid() ^ (unsigned)opd_test_now_ms();
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed))
			seed ^= (unsigned)time(NULL);
		close(fd);
	}
	return seed;
}

int opd_test_free_ports(int *ports, int n)
{
	static unsigned seed;
	int fds[OPD_TEST_MAX_PORTS];
	int rc = 0, i, tries = 0;

	if (n > OPD_TEST_MAX_PORTS)
		return -1;
	if (seed == 0)
		seed = port_seed() | 1;
	for (i = 0; i < n && rc == 0;) {
		struct sockaddr_in sa = {.sin_family = AF_INET};
		int port = PORT_LOW + (int)(rand_r(&seed) % (PORT_HIGH - PORT_LOW + 1));

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)port);
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0) {
			fprintf(stderr, "free port: %s\n", strerror(errno));
			rc = -1;
			break;
		}
		if (bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			ports[i++] = port;
			continue;
		}
		close(fds[i]);
		if (++tries == PORT_TRIES) {
			fprintf(stderr, "free port: none free in %d..%d after %d tries\n", PORT_LOW,
				PORT_HIGH, PORT_TRIES);
			rc = -1;
		}
	}
	while (i-- > 0)
		close(fds[i]);
	return rc;
}

int opd_test_free_port(void)
{
	int port;

	return opd_test_free_ports(&port, 1) == 0 ? port : -1;
}

/*
 * Every single-node daemon gets its own raft port (tests run in parallel),
 * kept in d so a restart comes back on the address raft recorded.
 */
static const char *const *with_raft(struct opd_daemon *d, const char *const *extra,
				    const char *args[64])
{
	size_t n = 0;

	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		if (strcmp(extra[i], "--raft-listen") == 0)
			return extra;
	if (d->raft_listen[0] == '\0')
		snprintf(d->raft_listen, sizeof(d->raft_listen), "127.0.0.1:%d",
			 opd_test_free_port());
	args[n++] = "--raft-listen";
	args[n++] = d->raft_listen;
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	return args;
}

int opd_daemon_log_contains(const struct opd_daemon *d, const char *needle)
{
	static char buf[1 << 20];
	size_t n;
	FILE *f;

	if (d->log_path[0] == '\0' || (f = fopen(d->log_path, "rb")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

int opd_daemon_port_clash(const struct opd_daemon *d)
{
	return opd_daemon_log_contains(d, "address already in use");
}

static int start_single_once(struct opd_daemon *d, const char *const *extra, int *clash)
{
	const char *args[64];

	*d = (struct opd_daemon){0};
	extra = with_raft(d, extra, args);
	snprintf(d->dir, sizeof(d->dir), "%s/opd-e2e-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(d->dir) == NULL) {
		fprintf(stderr, "daemon: mkdtemp: %s\n", strerror(errno));
		d->dir[0] = '\0';
		return -1;
	}
	if (opd_daemon_spawn(d, extra) != 0) {
		*clash = opd_daemon_port_clash(d);
		opd_daemon_stop(d);
		return -1;
	}
	return 0;
}

int opd_daemon_start_single(struct opd_daemon *d, const char *const *extra)
{
	int clash = 0;

	/* A port picked free can be taken by another test before the daemon binds it. */
	for (int attempt = 0; attempt < OPD_TEST_PORT_TRIES; attempt++) {
		clash = 0;
		if (start_single_once(d, extra, &clash) == 0)
			return 0;
		if (!clash)
			return -1;
		fprintf(stderr, "daemon: a port was taken meanwhile: starting again\n");
	}
	return -1;
}

int opd_daemon_spawn(struct opd_daemon *d, const char *const *extra)
{
	const char *bin = getenv("OPAMPD_BIN");
	char ready[300];
	const char *argv[64];
	size_t argc = 0;
	uint64_t deadline;
	int status, fd;

	if (bin == NULL || bin[0] == '\0') {
		fprintf(stderr, "daemon: OPAMPD_BIN is not set\n");
		return -1;
	}
	snprintf(d->log_path, sizeof(d->log_path), "%s/opampd.log", d->dir);
	snprintf(ready, sizeof(ready), "%s/ready.json", d->dir);
	unlink(ready); /* a restart must not read the previous run's ports */
	argv[argc++] = bin;
	argv[argc++] = "serve";
	argv[argc++] = "--data-dir";
	argv[argc++] = d->dir;
	argv[argc++] = "--opamp-listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--admin-listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--ready-file";
	argv[argc++] = ready;
	argv[argc++] = "--log-level";
	argv[argc++] = "debug";
	for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 63; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;

	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0) {
		fprintf(stderr, "daemon: fork: %s\n", strerror(errno));
		d->pid = 0;
		return -1;
	}
	if (d->pid == 0) {
		fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}

	deadline = opd_test_now_ms() + START_TIMEOUT_MS;
	for (;;) {
		if (parse_ready(d, ready) == 0 && read_token(d) == 0)
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			fprintf(stderr, "daemon: exited during startup (status 0x%x)\n", status);
			d->pid = 0;
			break;
		}
		if (opd_test_now_ms() > deadline) {
			fprintf(stderr, "daemon: no ready file and token within %d ms\n",
				START_TIMEOUT_MS);
			break;
		}
		opd_test_pause_ms(20);
	}
	opd_daemon_dump_log(d);
	return -1;
}

int opd_daemon_signal_wait(struct opd_daemon *d, int sig)
{
	uint64_t deadline;
	int status = 0, rc = -1;
	pid_t w;

	if (d->cluster != NULL) {
		fprintf(stderr, "daemon: cannot signal one node in cluster mode\n");
		return -1;
	}
	if (d->pid > 0) {
		kill(d->pid, sig);
		deadline = opd_test_now_ms() + STOP_TIMEOUT_MS;
		for (;;) {
			w = waitpid(d->pid, &status, WNOHANG);
			if (w == d->pid || (w < 0 && errno == ECHILD))
				break;
			if (opd_test_now_ms() > deadline) {
				fprintf(stderr, "daemon: no exit %d ms after SIGTERM; SIGKILL\n",
					STOP_TIMEOUT_MS);
				kill(d->pid, SIGKILL);
				waitpid(d->pid, &status, 0);
				break;
			}
			opd_test_pause_ms(10);
		}
		if (w < 0)
			rc = -1;
		else if (WIFEXITED(status))
			rc = WEXITSTATUS(status);
		else if (WIFSIGNALED(status))
			rc = 128 + WTERMSIG(status);
		if (rc != 0 && !(sig == SIGKILL && rc == 128 + SIGKILL)) {
			fprintf(stderr, "daemon: stop status %d\n", rc);
			opd_daemon_dump_log(d);
		}
		d->pid = 0;
	}
	return rc;
}

int opd_daemon_stop(struct opd_daemon *d)
{
	int rc;

	if (d->cluster != NULL) {
		rc = opd_cluster_stop(d->cluster);
		free(d->cluster);
		*d = (struct opd_daemon){0};
		return rc;
	}
	rc = opd_daemon_signal_wait(d, SIGTERM);

	if (d->dir[0] != '\0')
		remove_dir(d->dir);
	d->dir[0] = '\0';
	return rc;
}

int opd_daemon_restart(struct opd_daemon *d, const char *const *extra)
{
	const char *args[64];
	int rc = opd_daemon_signal_wait(d, SIGTERM);

	if (rc != 0)
		return -1;
	return opd_daemon_spawn(d, with_raft(d, extra, args));
}

void opd_daemon_dump_log(const struct opd_daemon *d)
{
	char buf[8192];
	FILE *f;
	long size;
	size_t n;

	if (d->cluster != NULL) {
		opd_cluster_dump_logs(d->cluster);
		return;
	}
	if (d->log_path[0] == '\0' || (f = fopen(d->log_path, "rb")) == NULL)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	if (size > (long)sizeof(buf))
		fseek(f, size - (long)sizeof(buf), SEEK_SET);
	else
		fseek(f, 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	fprintf(stderr, "---- opampd log (%s, last %zu bytes) ----\n", d->log_path, n);
	fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of log ----\n");
}
