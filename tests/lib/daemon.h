/*
 * Run the real opampd binary for an end-to-end test: a fresh temporary data
 * directory, port 0 for both listeners, the ready file polled with a deadline,
 * the ports and the admin token read back, and a bounded SIGTERM/SIGKILL stop.
 * The binary comes from $OPAMPD_BIN (set by tests/CMakeLists.txt).
 *
 * Cluster mode: with OPD_TEST_CLUSTER=3 in the environment, opd_daemon_start starts a
 * three-node Raft cluster (tests/lib/cluster.h), waits for a leader, and describes node 2
 * (usually a follower, so writes exercise forwarding); opd_daemon_stop stops all three.
 * Restarting or signalling a single node is refused in that mode.
 */
#ifndef OPD_TEST_DAEMON_H
#define OPD_TEST_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

struct opd_cluster;

struct opd_daemon {
	pid_t pid;          /* 0 when not running */
	char dir[256];      /* the data directory (mkdtemp), removed by stop */
	char log_path[320]; /* the daemon's stderr */
	int opamp_port;
	int admin_port;
	char token[128];      /* contents of <dir>/admin.token */
	char raft_listen[32]; /* single node: the raft address chosen at start, reused on restart */
	struct opd_cluster *cluster; /* cluster mode: the whole cluster (owned), else NULL */
};

#define OPD_TEST_MAX_PORTS 16

/*
 * n distinct free loopback ports (every socket stays bound until all are picked, so the kernel
 * cannot hand out one twice). Another process may still take one before it is used; the daemon
 * then fails to start and the test says so. 0 or -1.
 */
int opd_test_free_ports(int *ports, int n);
int opd_test_free_port(void);

/* Monotonic milliseconds, for deadlines. */
uint64_t opd_test_now_ms(void);

/* Sleep ms milliseconds (a poll interval inside a bounded loop, never a wait for a condition). */
void opd_test_pause_ms(unsigned ms);

/*
 * Start "$OPAMPD_BIN serve --data-dir D --opamp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
 * --raft-listen 127.0.0.1:<free port> --ready-file D/ready.json <extra...>" where extra is a
 * NULL-terminated argument list (may be NULL). Waits at most 10 s for the ready file and the
 * admin token. Returns 0, or -1 with the reason printed to stderr (the daemon is then stopped
 * and its directory removed).
 */
int opd_daemon_start(struct opd_daemon *d, const char *const *extra);

/* Start attempts when a port picked free was taken by another process before the bind. */
#define OPD_TEST_PORT_TRIES 3

/* 1 when the daemon's log says a listen address was already in use. */
int opd_daemon_port_clash(const struct opd_daemon *d);

/* opd_daemon_start without cluster mode (the cluster library starts its nodes with it);
 * started again on fresh ports when one was taken meanwhile. */
int opd_daemon_start_single(struct opd_daemon *d, const char *const *extra);

/*
 * Start opampd on the existing d->dir (d->pid 0) and wait at most 10 s for it to be ready.
 * Extra arguments come after the defaults, so they override them (the last value wins).
 * Returns 0 or -1 (the log tail printed; the directory stays).
 */
int opd_daemon_spawn(struct opd_daemon *d, const char *const *extra);

/*
 * Stop the daemon with SIGTERM, wait at most 10 s (then SIGKILL), remove the data directory.
 * Returns the exit status (0 = clean exit), 128+signal when it was killed by a signal, or -1
 * when it was not running. Safe to call twice.
 */
int opd_daemon_stop(struct opd_daemon *d);

/*
 * Send sig (SIGTERM, SIGKILL, ...) and wait at most 10 s for the exit (then SIGKILL); the data
 * directory stays. Returns the exit status as opd_daemon_stop does.
 */
int opd_daemon_signal_wait(struct opd_daemon *d, int sig);

/*
 * Stop the daemon with SIGTERM (it must exit 0) and start it again on the same data directory
 * with extra arguments. Returns 0 once it is ready again, -1 otherwise.
 */
int opd_daemon_restart(struct opd_daemon *d, const char *const *extra);

/* 1 when the daemon's log (its first MiB) holds needle. */
int opd_daemon_log_contains(const struct opd_daemon *d, const char *needle);

/* Copy the tail (at most 8 KiB) of the daemon's log to stderr, for failure diagnostics. */
void opd_daemon_dump_log(const struct opd_daemon *d);

/* 1 while the daemon process is still alive (reaps it when it has exited). */
int opd_daemon_alive(struct opd_daemon *d);

#endif
