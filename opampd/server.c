#define LOG_COMPONENT "server"

#include "server.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS 1000

void opd_server_options_default(struct opd_server_options *o)
{
	*o = (struct opd_server_options){
	    .data_dir = "./opampd-data",
	    .opamp_host = "127.0.0.1",
	    .opamp_port = 4320,
	    .admin_host = "127.0.0.1",
	    .admin_port = 4321,
	    .heartbeat_s = 30,
	    .http_timeout_factor = 3.0,
	    .max_conns = 100000,
	    .node_id = 1,
	    .raft_listen = "127.0.0.1:4322",
	};
}

/* UUIDv7, as the spec recommends: 48-bit Unix ms, version 7, variant 10, random rest. */
static void new_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	struct opd_server *s = data;
	uint64_t ms = opd_clock_wall(&opd_clock_system);

	(void)s;
	if (RAND_bytes(uid, OPD_UID_LEN) != 1)
		fatal("RAND_bytes failed");
	for (int i = 0; i < 6; i++)
		uid[i] = (uint8_t)(ms >> (40 - 8 * i));
	uid[6] = (uint8_t)(0x70 | (uid[6] & 0x0f));
	uid[8] = (uint8_t)(0x80 | (uid[8] & 0x3f));
}

static void configs_changed(void *data)
{
	struct opd_server *s = data;

	opd_registry_configs_changed(&s->registry);
	opd_endpoint_push_all(&s->endpoint);
}

/* Read <data-dir>/admin.token, creating it (mode 0600) with 32 random bytes in hex at first start.
 */
static int load_token(struct opd_server *s)
{
	char path[4096], buf[sizeof s->admin.token];
	uint8_t raw[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/admin.token", s->opt.data_dir);
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
			n--;
		if (n < 16) {
			opd_errmsg_printf(s->errmsg, "%s: token shorter than 16 characters", path);
			return OPD_EINVAL;
		}
		buf[n] = '\0';
		snprintf(s->admin.token, sizeof s->admin.token, "%s", buf);
		return 0;
	}
	if (errno != ENOENT) {
		opd_errmsg_printf(s->errmsg, "%s: %s", path, strerror(errno));
		return OPD_EIO;
	}
	if (RAND_bytes(raw, sizeof raw) != 1)
		fatal("RAND_bytes failed");
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(buf + 2 * i, 3, "%02x", raw[i]);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, buf, 64) != 64 || fsync(fd) != 0) {
		opd_errmsg_printf(s->errmsg, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return OPD_EIO;
	}
	close(fd);
	snprintf(s->admin.token, sizeof s->admin.token, "%s", buf);
	log_info("created admin token file=%s", path);
	return 0;
}

static int write_ready_file(struct opd_server *s)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp", s->opt.ready_file);
	f = fopen(tmp, "w");
	if (f == NULL) {
		opd_errmsg_printf(s->errmsg, "%s: %s", tmp, strerror(errno));
		return OPD_EIO;
	}
	fprintf(f, "{\"opamp_port\": %d, \"admin_port\": %d, \"pid\": %d}\n",
		opd_listener_port(&s->opamp), opd_listener_port(&s->admin_listener), (int)getpid());
	if (fclose(f) != 0 || rename(tmp, s->opt.ready_file) != 0) {
		opd_errmsg_printf(s->errmsg, "%s: %s", s->opt.ready_file, strerror(errno));
		return OPD_EIO;
	}
	return 0;
}

static void respond_admin(struct opd_conn *c, struct opd_admin_response *resp)
{
	opd_buf_append_byte(&resp->headers, 0);
	opd_conn_respond(c, resp->status, resp->content_type,
			 (const char *)opd_buf_rptr(&resp->headers), opd_buf_rptr(&resp->body),
			 opd_buf_avail(&resp->body));
}

/* A deferred admin answer (applied write, forwarded request, merged agents). */
static void admin_complete(void *data, void *conn, struct opd_admin_response *resp)
{
	(void)data;
	respond_admin(conn, resp);
}

/* GET /metrics: Prometheus text format, no token (bind the admin port privately). */
static void metrics(struct opd_server *s, struct opd_buf *out)
{
	struct opd_node_status st;
	const struct opd_endpoint_stats *e = &s->endpoint.stats;

	opd_node_status(s->node, &st);
#define GAUGE(name, help, value)                                                                   \
	opd_buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,   \
			(unsigned long long)(value))
#define COUNTER(name, help, value)                                                                 \
	opd_buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, \
			(unsigned long long)(value))
	GAUGE("opampd_agents", "Agents known to this node.", s->registry.n_agents);
	GAUGE("opampd_agents_connected", "Agents connected to this node.", s->registry.n_connected);
	GAUGE("opampd_connections", "Open OpAMP connections.", s->opamp.n_conns);
	COUNTER("opampd_connections_refused_total", "Connections refused over the limit.",
		s->opamp.refused);
	COUNTER("opampd_messages_websocket_total", "AgentToServer messages over WebSocket.",
		e->messages_ws);
	COUNTER("opampd_messages_http_total", "AgentToServer messages over plain HTTP.",
		e->messages_http);
	COUNTER("opampd_bad_requests_total", "Undecodable messages answered with BadRequest.",
		e->bad_requests);
	COUNTER("opampd_protocol_errors_total", "Connections closed for framing errors.",
		e->protocol_errors);
	COUNTER("opampd_config_pushes_total", "Remote configs pushed without a request.",
		e->pushes);
	GAUGE("opampd_configs_active", "Configurations served (verified active versions).",
	      s->configs.n_active);
	GAUGE("opampd_unverified_versions", "Active versions refused: bad or missing signature.",
	      s->configs.unverified);
	COUNTER("opampd_forwarded_writes_total", "Writes forwarded to the leader.",
		s->cluster.forwarded);
	COUNTER("opampd_forward_failures_total", "Forwards the leader did not answer.",
		s->cluster.forward_failures);
	GAUGE("opampd_raft_term", "Current raft term.", st.term);
	GAUGE("opampd_raft_commit_index", "Raft commit index.", st.commit_index);
	GAUGE("opampd_raft_applied_index", "Raft applied index.", st.applied_index);
	GAUGE("opampd_raft_leader", "1 when this node is the leader.",
	      strcmp(st.role, "leader") == 0);
	GAUGE("opampd_read_only", "1 when this node refuses writes.", st.read_only);
#undef GAUGE
#undef COUNTER
}

static void on_admin_request(void *data, struct opd_conn *c, const struct opd_http_request *req)
{
	struct opd_server *s = data;
	struct opd_admin_response resp;

	if (strcmp(req->path, "/metrics") == 0 && strcmp(req->method, "GET") == 0) {
		struct opd_buf out;
		opd_buf_init(&out);
		metrics(s, &out);
		opd_conn_respond(c, 200, "text/plain; version=0.0.4", NULL, opd_buf_rptr(&out),
				 opd_buf_avail(&out));
		opd_buf_fini(&out);
		return;
	}
	opd_admin_response_init(&resp);
	if (opd_admin_handle(&s->admin, req, c, &resp) == 0)
		respond_admin(c, &resp);
	opd_admin_response_fini(&resp);
}

static void on_admin_close(void *data, struct opd_conn *c)
{
	struct opd_server *s = data;

	opd_admin_conn_closed(&s->admin, c);
	if (s->node != NULL)
		opd_cluster_conn_closed(&s->cluster, c);
}

static void on_admin_ws(void *data, struct opd_conn *c, const uint8_t *p, size_t n)
{
	(void)data;
	(void)p;
	(void)n;
	opd_conn_ws_close(c, 1003, "no WebSocket on the admin port");
}

static void flush_agents(struct opd_server *s)
{
	int n = opd_agentdb_flush(&s->agentdb, &s->registry);

	if (n < 0)
		log_error("%s", s->agentdb.errmsg);
	else if (n > 0)
		log_debug("persisted agents count=%d", n);
}

static void on_tick(uv_timer_t *t)
{
	struct opd_server *s = t->data;

	opd_registry_sweep(&s->registry, opd_clock_now(&opd_clock_system));
	flush_agents(s);
}

static void on_listener_closed(struct opd_listener *l)
{
	(void)l;
}

static void on_part_closed(void *data)
{
	struct opd_server *s = data;

	s->closing--;
}

static void stop(struct opd_server *s)
{
	if (!s->started)
		return;
	s->started = 0;
	log_info("shutting down");
	opd_listener_close(&s->opamp, on_listener_closed);
	opd_listener_close(&s->admin_listener, on_listener_closed);
	uv_timer_stop(&s->tick);
	uv_close((uv_handle_t *)&s->tick, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sigint, NULL);
	s->closing = 2;
	opd_cluster_close(&s->cluster, on_part_closed, s);
	opd_node_close(s->node, on_part_closed, s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct opd_server *s = h->data;

	log_info("received signal %d", signum);
	stop(s);
}

/* Parse "host:port" into the node's raft voter list entry for this node alone. */
static int node_config(struct opd_server *s, struct opd_node_config *nc, char *raft_dir, size_t cap)
{
	const struct opd_server_options *o = &s->opt;

	opd_node_config_default(nc);
	snprintf(raft_dir, cap, "%s/raft", o->data_dir);
	nc->id = o->node_id;
	nc->address = o->raft_listen;
	nc->dir = raft_dir;
	if (o->n_voters == 0) {
		nc->voters[0].id = o->node_id;
		snprintf(nc->voters[0].address, sizeof nc->voters[0].address, "%s", o->raft_listen);
		nc->voters[0].role = RAFT_VOTER;
		nc->n_voters = 1;
		return 0;
	}
	int self = 0;
	for (size_t i = 0; i < o->n_voters; i++) {
		nc->voters[i].id = o->voters[i].id;
		snprintf(nc->voters[i].address, sizeof nc->voters[i].address, "%s",
			 o->voters[i].raft_address);
		nc->voters[i].role = RAFT_VOTER;
		if (o->voters[i].id == o->node_id) {
			self = 1;
			if (strcmp(o->voters[i].raft_address, o->raft_listen) != 0) {
				opd_errmsg_printf(
				    s->errmsg,
				    "--voter %llu says raft address %s but --raft-listen is %s",
				    (unsigned long long)o->node_id, o->voters[i].raft_address,
				    o->raft_listen);
				return OPD_EINVAL;
			}
		}
	}
	nc->n_voters = o->n_voters;
	if (!self) {
		/* A node joining later (added through the admin API) starts with no voters of its
		 * own. */
		nc->n_voters = 0;
	}
	return 0;
}

int opd_server_start(struct opd_server *s, const struct opd_server_options *o)
{
	struct opd_registry_settings rs;
	struct opd_registry_ops ops;
	struct opd_listener_limits lim;
	struct opd_listener_handler admin_handler;
	struct opd_node_config nc;
	char path[4096], raft_dir[4096], key_path[4096];
	int rc;

	memset(s, 0, sizeof *s);
	s->opt = *o;
	if (o->heartbeat_s == 0) {
		opd_errmsg_printf(s->errmsg, "the heartbeat interval must be at least 1 second");
		return OPD_EINVAL;
	}
	if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
		opd_errmsg_printf(s->errmsg, "%s: %s", o->data_dir, strerror(errno));
		return OPD_EIO;
	}
	opd_admin_init(&s->admin);
	rc = load_token(s);
	if (rc != 0)
		return rc;

	/* One key signs every version; a cluster's voters all load the same file. */
	if (o->signing_key != NULL)
		snprintf(key_path, sizeof key_path, "%s", o->signing_key);
	else
		snprintf(key_path, sizeof key_path, "%s/signing.key", o->data_dir);
	rc = opd_signer_load(&s->signer, key_path, o->n_voters <= 1);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s%s", s->signer.errmsg,
				  o->n_voters > 1
				      ? " (a cluster needs the same --signing-key file on "
					"every voter: create one with opampd keygen FILE)"
				      : "");
		return rc;
	}
	opd_admin_peer_token(&s->signer, s->admin.peer_token);
	uv_loop_init(&s->loop);

	snprintf(path, sizeof path, "%s/configs.db", o->data_dir);
	rc = opd_configs_open(&s->configs, path, &opd_clock_system);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->configs.errmsg);
		return rc;
	}
	s->configs.signer = &s->signer;
	s->configs.changed = configs_changed;
	s->configs.changed_data = s;

	rc = node_config(s, &nc, raft_dir, sizeof raft_dir);
	if (rc != 0)
		return rc;
	rc = opd_node_start(&s->loop, &nc, &s->configs.fsm, &s->node, s->errmsg);
	if (rc != 0)
		return rc;
	s->configs.node = s->node;

	snprintf(s->endpoint_url, sizeof s->endpoint_url, "ws://%s:%d%s", o->opamp_host,
		 o->opamp_port, OPD_OPAMP_PATH);
	opd_registry_settings_default(&rs);
	rs.heartbeat_interval_s = o->heartbeat_s;
	rs.http_timeout_factor = o->http_timeout_factor;
	rs.endpoint = s->endpoint_url;
	rs.custom_capabilities[0] = OPD_SIGNATURE_CAPABILITY;
	ops = (struct opd_registry_ops){opd_configs_desired, new_uid, &s->configs};
	opd_registry_init(&s->registry, &rs, &ops);

	snprintf(path, sizeof path, "%s/agents.db", o->data_dir);
	rc = opd_agentdb_open(&s->agentdb, path);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->agentdb.errmsg);
		return rc;
	}
	rc = opd_agentdb_load(&s->agentdb, &s->registry);
	if (rc < 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->agentdb.errmsg);
		return rc;
	}
	log_info("loaded agents count=%d", rc);

	opd_endpoint_init(&s->endpoint, &s->registry, &opd_clock_system);
	s->admin.configs = &s->configs;
	s->admin.registry = &s->registry;
	s->admin.clock = &opd_clock_system;
	s->admin.ops.complete = admin_complete;
	rc = opd_cluster_init(&s->cluster, &s->loop, s->node, &s->configs, &s->admin, o->node_id,
			      o->voters, o->n_voters);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "cluster client: %s", opd_strerror(rc));
		return rc;
	}

	opd_listener_limits_default(&lim);
	lim.max_conns = o->max_conns;
	/* WebSocket liveness follows the offered heartbeat: ping when idle, drop when long silent.
	 */
	lim.ws_ping_ms = o->heartbeat_s * 1000;
	lim.ws_timeout_ms = o->heartbeat_s * 1000 * 4 + 30000;
	struct opd_listener_handler h = opd_endpoint_handler(&s->endpoint);
	rc = opd_listener_start(&s->opamp, &s->loop, "opamp", o->opamp_host, o->opamp_port, &lim,
				&h);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->opamp.errmsg);
		return rc;
	}
	if (o->opamp_port == 0)
		snprintf(s->endpoint_url, sizeof s->endpoint_url, "ws://%s:%d%s", o->opamp_host,
			 opd_listener_port(&s->opamp), OPD_OPAMP_PATH);
	opd_listener_limits_default(&lim);
	lim.max_conns = 1024;
	admin_handler =
	    (struct opd_listener_handler){on_admin_request, on_admin_ws, on_admin_close, s};
	rc = opd_listener_start(&s->admin_listener, &s->loop, "admin", o->admin_host, o->admin_port,
				&lim, &admin_handler);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->admin_listener.errmsg);
		return rc;
	}

	uv_timer_init(&s->loop, &s->tick);
	s->tick.data = s;
	uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
	uv_signal_init(&s->loop, &s->sigterm);
	uv_signal_init(&s->loop, &s->sigint);
	s->sigterm.data = s->sigint.data = s;
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	s->started = 1;
	s->admin.ready = 1;

	if (o->ready_file != NULL && (rc = write_ready_file(s)) != 0)
		return rc;
	log_info("serving node=%llu opamp=%s:%d%s admin=http://%s:%d raft=%s data_dir=%s key_id=%s",
		 (unsigned long long)o->node_id, o->opamp_host, opd_listener_port(&s->opamp),
		 OPD_OPAMP_PATH, o->admin_host, opd_listener_port(&s->admin_listener),
		 o->raft_listen, o->data_dir, s->signer.key_id);
	return 0;
}

int opd_server_run(struct opd_server *s)
{
	uv_run(&s->loop, UV_RUN_DEFAULT);
	/* Everything is closed: persist the last reports, release the rest. */
	flush_agents(s);
	opd_agentdb_close(&s->agentdb);
	opd_admin_fini(&s->admin);
	opd_registry_fini(&s->registry);
	opd_configs_close(&s->configs);
	opd_signer_fini(&s->signer);
	if (uv_loop_close(&s->loop) != 0)
		log_warn("loop closed with handles still open");
	return 0;
}
