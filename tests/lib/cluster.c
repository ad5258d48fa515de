#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYGEN_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define STATUS_TIMEOUT_MS 2000
#define POLL_MS 50

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_dir(char *dir)
{
	if (dir[0] != '\0')
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

/* Wait for pid with a deadline; SIGKILL it when the deadline passes. Exit status as daemon.h. */
static int reap(pid_t pid, int timeout_ms)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	int status = 0;
	pid_t w;

	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0)
			return -1;
		if (opd_test_now_ms() > deadline) {
			fprintf(stderr, "cluster: pid %d still running after %d ms; SIGKILL\n",
				(int)pid, timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return 128 + SIGKILL;
		}
		opd_test_pause_ms(10);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* `$OPAMPD_BIN keygen PATH`, bounded; it must exit 0 and leave the file. */
static int keygen(const char *path)
{
	const char *bin = getenv("OPAMPD_BIN");
	struct stat st;
	pid_t pid;
	int rc, fd;

	if (bin == NULL || bin[0] == '\0') {
		fprintf(stderr, "cluster: OPAMPD_BIN is not set\n");
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execl(bin, bin, "keygen", path, (char *)NULL);
		_exit(127);
	}
	rc = reap(pid, KEYGEN_TIMEOUT_MS);
	if (rc != 0 || stat(path, &st) != 0 || st.st_size == 0) {
		fprintf(stderr, "cluster: %s keygen %s: status %d\n", bin, path, rc);
		return -1;
	}
	return 0;
}

/* Start node i on its directory: cluster flags first, then the caller's extra arguments. */
static int spawn_node(struct opd_cluster *c, int i)
{
	struct opd_cluster_node *nd = &c->nodes[i];
	const char *argv[64];
	size_t argc = 0;

	argv[argc++] = "--node-id";
	argv[argc++] = nd->arg_id;
	argv[argc++] = "--raft-listen";
	argv[argc++] = nd->arg_raft;
	argv[argc++] = "--admin-listen";
	argv[argc++] = nd->arg_admin;
	for (int v = 0; v < c->n; v++) {
		argv[argc++] = "--voter";
		argv[argc++] = c->voters[v];
	}
	argv[argc++] = "--signing-key";
	argv[argc++] = c->key_path;
	argv[argc++] = "--heartbeat-interval";
	argv[argc++] = "1";
	for (size_t k = 0; c->extra[k] != NULL && argc < 40; k++)
		argv[argc++] = c->extra[k];
	argv[argc] = NULL;
	if (opd_daemon_spawn(&nd->d, argv) != 0) {
		fprintf(stderr, "cluster: node %d did not start\n", nd->id);
		c->port_clash = opd_daemon_port_clash(&nd->d);
		if (nd->d.pid > 0) {
			kill(nd->d.pid, SIGKILL);
			reap(nd->d.pid, STOP_TIMEOUT_MS);
		}
		nd->d.pid = 0;
		nd->state = OPD_CN_KILLED;
		return -1;
	}
	nd->state = OPD_CN_RUNNING;
	if (nd->d.admin_port != atoi(strrchr(nd->arg_admin, ':') + 1)) {
		fprintf(stderr, "cluster: node %d admin port %d, wanted %s\n", nd->id,
			nd->d.admin_port, nd->arg_admin);
		return -1;
	}
	return 0;
}

static int start_once(struct opd_cluster *c, int n, const char *const *extra)
{
	const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	int ports[2 * OPD_CLUSTER_MAX];
	size_t k = 0;

	*c = (struct opd_cluster){0};
	if (n < 1 || n > OPD_CLUSTER_MAX)
		return -1;
	for (; extra != NULL && extra[k] != NULL && k + 1 < sizeof(c->extra) / sizeof(c->extra[0]);
	     k++)
		c->extra[k] = extra[k];
	c->extra[k] = NULL;
	c->n = n;
	for (int i = 0; i < n; i++)
		c->nodes[i].state = OPD_CN_KILLED; /* nothing to stop until it runs */
	snprintf(c->key_dir, sizeof(c->key_dir), "%s/opd-key-XXXXXX", tmp);
	if (mkdtemp(c->key_dir) == NULL) {
		c->key_dir[0] = '\0';
		return -1;
	}
	snprintf(c->key_path, sizeof(c->key_path), "%s/signing.key", c->key_dir);
	if (keygen(c->key_path) != 0 || opd_test_free_ports(ports, 2 * n) != 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		struct opd_cluster_node *nd = &c->nodes[i];

		nd->id = i + 1;
		nd->raft_port = ports[2 * i];
		snprintf(nd->arg_id, sizeof(nd->arg_id), "%d", nd->id);
		snprintf(nd->arg_raft, sizeof(nd->arg_raft), "127.0.0.1:%d", ports[2 * i]);
		snprintf(nd->arg_admin, sizeof(nd->arg_admin), "127.0.0.1:%d", ports[2 * i + 1]);
		snprintf(c->voters[i], sizeof(c->voters[i]), "%d=127.0.0.1:%d=http://127.0.0.1:%d",
			 nd->id, ports[2 * i], ports[2 * i + 1]);
		snprintf(nd->d.dir, sizeof(nd->d.dir), "%s/opd-node%d-XXXXXX", tmp, nd->id);
		if (mkdtemp(nd->d.dir) == NULL) {
			nd->d.dir[0] = '\0';
			goto fail;
		}
	}
	for (int i = 0; i < n; i++)
		if (spawn_node(c, i) != 0)
			goto fail;
	return 0;
fail:
	opd_cluster_stop(c);
	return -1;
}

int opd_cluster_start(struct opd_cluster *c, int n, const char *const *extra)
{
	/* A port picked free can be taken by another test before a node binds it: the voter
	 * lines name every port, so the whole cluster starts again on fresh ones. */
	for (int attempt = 0; attempt < OPD_TEST_PORT_TRIES; attempt++) {
		if (start_once(c, n, extra) == 0)
			return 0;
		if (!c->port_clash)
			return -1;
		fprintf(stderr, "cluster: a port was taken meanwhile: starting again\n");
	}
	return -1;
}

int opd_cluster_stop(struct opd_cluster *c)
{
	int rc = 0, st;

	for (int i = 0; i < c->n; i++) {
		struct opd_cluster_node *nd = &c->nodes[i];

		if (nd->state == OPD_CN_PAUSED)
			opd_cluster_resume(c, i);
		if (nd->state == OPD_CN_RUNNING && nd->d.pid > 0)
			kill(nd->d.pid, SIGTERM);
	}
	for (int i = 0; i < c->n; i++) {
		struct opd_cluster_node *nd = &c->nodes[i];

		if (nd->state == OPD_CN_RUNNING && nd->d.pid > 0) {
			st = reap(nd->d.pid, STOP_TIMEOUT_MS);
			if (st != 0) {
				fprintf(stderr, "cluster: node %d stop status %d\n", nd->id, st);
				opd_daemon_dump_log(&nd->d);
				rc = -1;
			}
		}
		nd->d.pid = 0;
		nd->state = OPD_CN_KILLED;
		remove_dir(nd->d.dir);
	}
	remove_dir(c->key_dir);
	c->n = 0;
	return rc;
}

int opd_cluster_request(struct opd_cluster *c, int i, const char *method, const char *path,
			const char *body, const char *idem_key, int timeout_ms,
			struct opd_client_resp *r, json_t **json)
{
	const struct opd_daemon *d = &c->nodes[i].d;
	size_t blen = body != NULL ? strlen(body) : 0;
	char head[2048];
	char *req;
	int fd, n, rc;

	*r = (struct opd_client_resp){0};
	if (json != NULL)
		*json = NULL;
	n = snprintf(head, sizeof(head),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
		     "Authorization: Bearer %s\r\n%s%s%s%s"
		     "Content-Length: %zu\r\n\r\n",
		     method, path, d->admin_port, d->token,
		     body != NULL ? "Content-Type: application/json\r\n" : "",
		     idem_key != NULL ? "Idempotency-Key: " : "", idem_key != NULL ? idem_key : "",
		     idem_key != NULL ? "\r\n" : "", blen);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	req = malloc((size_t)n + blen);
	if (req == NULL)
		abort();
	memcpy(req, head, (size_t)n);
	if (blen > 0)
		memcpy(req + n, body, blen);
	fd = opd_client_connect(d->admin_port);
	if (fd < 0) {
		free(req);
		return -1;
	}
	rc = opd_client_exchange(fd, req, (size_t)n + blen, timeout_ms, r);
	close(fd);
	free(req);
	if (rc != 0)
		return -1;
	if (json != NULL && r->body_len > 0)
		*json = json_loadb((const char *)r->body, r->body_len, 0, NULL);
	return r->status;
}

static json_t *get_object(struct opd_cluster *c, int i, const char *path, int timeout_ms)
{
	struct opd_client_resp r;
	json_t *j = NULL;
	int st;

	st = opd_cluster_request(c, i, "GET", path, NULL, NULL, timeout_ms, &r, &j);
	opd_client_resp_free(&r);
	if (st != 200 || !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

json_t *opd_cluster_status(struct opd_cluster *c, int i, int timeout_ms)
{
	return get_object(c, i, "/api/v1/cluster", timeout_ms);
}

static long long leader_id_of(json_t *st)
{
	json_t *l = json_object_get(st, "leader");

	if (!json_is_object(l) || !json_is_integer(json_object_get(l, "id")))
		return -1;
	return json_integer_value(json_object_get(l, "id"));
}

/* One pass: the agreed leader's index, or -1. When verbose, print what each node says. */
static int leader_once(struct opd_cluster *c, int verbose)
{
	long long agreed = -1;
	int ok = 1, idx = -1;

	for (int i = 0; i < c->n; i++) {
		json_t *st;
		long long lid;
		const char *role;

		if (c->nodes[i].state != OPD_CN_RUNNING)
			continue;
		st = opd_cluster_status(c, i, STATUS_TIMEOUT_MS);
		lid = st != NULL ? leader_id_of(st) : -1;
		role = st != NULL ? json_string_value(json_object_get(st, "role")) : NULL;
		if (verbose)
			fprintf(stderr, "cluster: node %d: role %s leader %lld term %lld\n",
				c->nodes[i].id, role != NULL ? role : "?", lid,
				st != NULL
				    ? (long long)json_integer_value(json_object_get(st, "term"))
				    : -1LL);
		if (lid < 0 || (agreed >= 0 && lid != agreed))
			ok = 0;
		agreed = lid;
		if (lid == c->nodes[i].id) {
			if (role == NULL || strcmp(role, "leader") != 0)
				ok = 0;
			idx = i;
		}
		json_decref(st);
	}
	return ok && idx >= 0 ? idx : -1;
}

int opd_cluster_wait_leader(struct opd_cluster *c, int timeout_ms)
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	int idx;

	for (;;) {
		idx = leader_once(c, 0);
		if (idx >= 0)
			return idx;
		if (opd_test_now_ms() > deadline)
			break;
		opd_test_pause_ms(POLL_MS);
	}
	fprintf(stderr, "cluster: no agreed leader within %d ms\n", timeout_ms);
	leader_once(c, 1);
	return -1;
}

int opd_cluster_follower(const struct opd_cluster *c, int leader, int k)
{
	for (int i = 0; i < c->n; i++)
		if (i != leader && c->nodes[i].state == OPD_CN_RUNNING && k-- == 0)
			return i;
	return -1;
}

int opd_cluster_kill(struct opd_cluster *c, int i)
{
	struct opd_cluster_node *nd = &c->nodes[i];

	if (nd->state == OPD_CN_KILLED || nd->d.pid <= 0)
		return -1;
	kill(nd->d.pid, SIGKILL);
	if (nd->state == OPD_CN_PAUSED)
		kill(nd->d.pid, SIGCONT);
	reap(nd->d.pid, STOP_TIMEOUT_MS);
	nd->d.pid = 0;
	nd->state = OPD_CN_KILLED;
	return 0;
}

int opd_cluster_restart(struct opd_cluster *c, int i)
{
	if (c->nodes[i].state != OPD_CN_KILLED)
		return -1;
	return spawn_node(c, i);
}

int opd_cluster_pause(struct opd_cluster *c, int i)
{
	struct opd_cluster_node *nd = &c->nodes[i];

	if (nd->state != OPD_CN_RUNNING || kill(nd->d.pid, SIGSTOP) != 0)
		return -1;
	nd->state = OPD_CN_PAUSED;
	return 0;
}

int opd_cluster_resume(struct opd_cluster *c, int i)
{
	struct opd_cluster_node *nd = &c->nodes[i];

	if (nd->state != OPD_CN_PAUSED || kill(nd->d.pid, SIGCONT) != 0)
		return -1;
	nd->state = OPD_CN_RUNNING;
	return 0;
}

int opd_cluster_digest(struct opd_cluster *c, int i, char out[65])
{
	json_t *st = get_object(c, i, "/api/v1/cluster/digest", STATUS_TIMEOUT_MS);
	const char *dg = st != NULL ? json_string_value(json_object_get(st, "store_digest")) : NULL;
	int rc = -1;

	if (dg != NULL && strlen(dg) == 64) {
		memcpy(out, dg, 65);
		rc = 0;
	}
	json_decref(st);
	return rc;
}

int opd_cluster_wait_digests(struct opd_cluster *c, int timeout_ms, char out[65])
{
	uint64_t deadline = opd_test_now_ms() + (uint64_t)timeout_ms;
	char first[65], dg[65];

	for (;;) {
		int ok = 1, seen = 0;

		for (int i = 0; i < c->n && ok; i++) {
			if (c->nodes[i].state != OPD_CN_RUNNING)
				continue;
			if (opd_cluster_digest(c, i, seen ? dg : first) != 0)
				ok = 0;
			else if (seen++ && strcmp(dg, first) != 0)
				ok = 0;
		}
		if (ok && seen > 0) {
			if (out != NULL)
				memcpy(out, first, 65);
			return 0;
		}
		if (opd_test_now_ms() > deadline)
			break;
		opd_test_pause_ms(POLL_MS);
	}
	fprintf(stderr, "cluster: digests still differ after %d ms:\n", timeout_ms);
	for (int i = 0; i < c->n; i++) {
		json_t *st, *dj;

		if (c->nodes[i].state != OPD_CN_RUNNING)
			continue;
		dj = get_object(c, i, "/api/v1/cluster/digest", STATUS_TIMEOUT_MS);
		st = opd_cluster_status(c, i, STATUS_TIMEOUT_MS);
		fprintf(stderr, "  node %d: digest %s applied %lld commit %lld last %lld\n",
			c->nodes[i].id,
			dj != NULL && json_is_string(json_object_get(dj, "store_digest"))
			    ? json_string_value(json_object_get(dj, "store_digest"))
			    : "?",
			(long long)json_integer_value(json_object_get(st, "applied_index")),
			(long long)json_integer_value(json_object_get(st, "commit_index")),
			(long long)json_integer_value(json_object_get(st, "last_index")));
		json_decref(dj);
		json_decref(st);
	}
	return -1;
}

void opd_cluster_dump_logs(const struct opd_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		fprintf(stderr, "==== node %d ====\n", c->nodes[i].id);
		opd_daemon_dump_log(&c->nodes[i].d);
	}
}
