#define LOG_COMPONENT "server"

#include "server.h"

#include "aio_reaper.h"
#include "log.h"
#include "mem.h"
#include "segment_fill.h"
#include "ui.h"

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
	    .handshake_rate = 2000,
	    .node_id = 1,
	    .raft_listen = "127.0.0.1:4322",
	    .cert_renew_share = OPD_OFFERS_RENEW_SHARE,
	    .config_history = 100,
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

static void on_push(uv_check_t *h)
{
	struct opd_server *s = h->data;

	uv_check_stop(h);
	opd_endpoint_configs_changed(&s->endpoint);
	opd_configs_touched_clear(&s->configs);
}

/*
 * Raft applies entries in batches, all in one loop turn: a follower catching
 * up applies hundreds, a leader every write committed by one round trip. A
 * push per entry visits every agent per entry (the restarted node of the
 * failover benchmark stalled 200-400 ms doing it); the push runs once, after
 * the turn's I/O, with the newest state, and no later than before.
 */
static void configs_changed(void *data)
{
	struct opd_server *s = data;

	if (s->started) {
		uv_check_start(&s->push, on_push); /* a no-op while armed */
	} else { /* before: no agent is connected yet; after stop: none is served */
		opd_registry_configs_changed(&s->registry);
		opd_configs_touched_clear(&s->configs);
	}
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

/* A label value in the text format: backslash, double quote and newline escaped. */
static void metrics_label(struct opd_buf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			opd_buf_appendf(out, "\\%c", *v);
		else if (*v == '\n')
			opd_buf_appendf(out, "\\n");
		else
			opd_buf_append_byte(out, (uint8_t)*v);
	}
}

/* Per configuration: how the agents of this node that it targets stand with its version. */
enum { MS_APPLIED, MS_APPLYING, MS_FAILED, MS_PENDING, MS_N };
struct metrics_cfg {
	char *name; /* owned */
	uint64_t n[MS_N];
};
struct metrics_cfgs {
	struct metrics_cfg *v;
	size_t n;
};

static int metrics_cfg_cmp(const void *a, const void *b)
{
	return strcmp(((const struct metrics_cfg *)a)->name, ((const struct metrics_cfg *)b)->name);
}

static int metrics_cfg_add(void *data, const struct opd_config_info *c)
{
	struct metrics_cfgs *m = data;

	m->v = opd_xrealloc(m->v, (m->n + 1) * sizeof *m->v);
	m->v[m->n++] = (struct metrics_cfg){.name = opd_xstrdup(c->name)};
	return 0;
}

static struct metrics_cfg *metrics_cfg_find(struct metrics_cfgs *m, const char *name)
{
	struct metrics_cfg key = {.name = (char *)name}, *hit;

	hit = m->n ? bsearch(&key, m->v, m->n, sizeof *m->v, metrics_cfg_cmp) : NULL;
	if (hit != NULL)
		return hit;
	/* Active but not in the listing (applied in between): add it, keep the order. */
	m->v = opd_xrealloc(m->v, (m->n + 1) * sizeof *m->v);
	m->v[m->n++] = (struct metrics_cfg){.name = opd_xstrdup(name)};
	qsort(m->v, m->n, sizeof *m->v, metrics_cfg_cmp);
	return bsearch(&key, m->v, m->n, sizeof *m->v, metrics_cfg_cmp);
}

/* Each agent's newest certificate (the one it should be using), for the certificate metrics. */
struct metrics_cert {
	char uid[OPD_STORE_UID_HEX_LEN + 1];
	uint64_t serial, not_before, not_after;
	int revoked;
};
struct metrics_certs {
	struct metrics_cert *v;
	size_t n, cap;
};

static int metrics_cert_add(void *data, const struct opd_cert_info *c)
{
	struct metrics_certs *m = data;

	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = opd_xrealloc(m->v, m->cap * sizeof *m->v);
	}
	m->v[m->n] = (struct metrics_cert){.serial = c->serial,
					   .not_before = c->not_before,
					   .not_after = c->not_after,
					   .revoked = c->revoked};
	snprintf(m->v[m->n].uid, sizeof m->v[m->n].uid, "%s", c->instance_uid);
	m->n++;
	return 0;
}

/* By agent, then newest (highest serial) first. */
static int metrics_cert_cmp(const void *a, const void *b)
{
	const struct metrics_cert *x = a, *y = b;
	int c = strcmp(x->uid, y->uid);

	if (c != 0)
		return c;
	return x->serial < y->serial ? 1 : x->serial > y->serial ? -1 : 0;
}

struct metrics_ca_ctx {
	struct opd_buf *out;
};

static int metrics_ca_cb(void *data, const struct opd_ca_info *ca)
{
	struct metrics_ca_ctx *m = data;

	/* A retired CA is out of the trust bundle: its expiry no longer matters. */
	if (strcmp(ca->state, "retired") == 0)
		return 0;
	opd_buf_appendf(m->out, "opampd_ca_not_after_seconds{fingerprint=\"");
	metrics_label(m->out, ca->fingerprint);
	opd_buf_appendf(m->out, "\",active=\"%s\"} %llu\n",
			strcmp(ca->state, "active") == 0 ? "true" : "false",
			(unsigned long long)ca->not_after);
	return 0;
}

/*
 * Certificate expiry: the fleet CAs in the trust bundle, each agent's newest certificate by
 * state, the earliest expiry among the valid ones, and the listeners' own TLS certificates.
 * "expiring_soon" is a certificate with less than a third of its own lifetime left: past the
 * point (two thirds) where automatic renewal should have replaced it; 30 days for the default
 * 90-day certificates. Agents that left the fleet keep their last certificate here (it ends
 * as expired).
 */
static void metrics_certs(struct opd_server *s, struct opd_buf *out)
{
	enum { CS_VALID, CS_SOON, CS_EXPIRED, CS_REVOKED, CS_N };
	static const char *const cs_names[CS_N] = {"valid", "expiring_soon", "expired", "revoked"};
	struct metrics_ca_ctx ca = {out};
	struct metrics_certs m = {0};
	uint64_t now = opd_clock_wall(&opd_clock_system) / 1000, n[CS_N] = {0}, earliest = 0;
	const struct opd_tls_ctx *tls[2] = {s->opamp.tls, s->admin_listener.tls};
	static const char *const tls_names[2] = {"opamp", "admin"};

	opd_buf_appendf(out, "# HELP opampd_ca_not_after_seconds When each fleet CA in the trust "
			     "bundle expires (Unix seconds); active=\"true\" for the one that "
			     "signs.\n# TYPE opampd_ca_not_after_seconds gauge\n");
	if (opd_store_foreach_ca(&s->configs.store, metrics_ca_cb, &ca) != 0)
		log_warn("metrics: cannot list the fleet CAs: %s",
			 opd_store_errmsg(&s->configs.store));
	if (opd_store_foreach_certificate(&s->configs.store, NULL, metrics_cert_add, &m) != 0)
		log_warn("metrics: cannot list certificates: %s",
			 opd_store_errmsg(&s->configs.store));
	if (m.n > 1)
		qsort(m.v, m.n, sizeof *m.v, metrics_cert_cmp);
	for (size_t i = 0; i < m.n; i++) {
		const struct metrics_cert *c = &m.v[i];

		if (i > 0 && strcmp(c->uid, m.v[i - 1].uid) == 0)
			continue; /* an older certificate of the same agent */
		if (c->revoked) {
			n[CS_REVOKED]++;
		} else if (c->not_after <= now) {
			n[CS_EXPIRED]++;
		} else {
			if ((c->not_after - now) * 3 < c->not_after - c->not_before)
				n[CS_SOON]++;
			else
				n[CS_VALID]++;
			if (earliest == 0 || c->not_after < earliest)
				earliest = c->not_after;
		}
	}
	free(m.v);
	opd_buf_appendf(out,
			"# HELP opampd_agent_certificates Agents by the state of their newest "
			"certificate (expiring_soon: less than a third of its lifetime left).\n"
			"# TYPE opampd_agent_certificates gauge\n");
	for (int k = 0; k < CS_N; k++)
		opd_buf_appendf(out, "opampd_agent_certificates{state=\"%s\"} %llu\n", cs_names[k],
				(unsigned long long)n[k]);
	/* No sample without a valid certificate: 0 would read as "expired in 1970". */
	if (earliest != 0)
		opd_buf_appendf(
		    out,
		    "# HELP opampd_agent_certificate_earliest_expiry_seconds The earliest "
		    "expiry (Unix seconds) of an agent's valid newest certificate.\n"
		    "# TYPE opampd_agent_certificate_earliest_expiry_seconds gauge\n"
		    "opampd_agent_certificate_earliest_expiry_seconds %llu\n",
		    (unsigned long long)earliest);
	if (tls[0] != NULL || tls[1] != NULL)
		opd_buf_appendf(out, "# HELP opampd_tls_certificate_not_after_seconds When this "
				     "node's TLS server certificate expires (Unix seconds), by "
				     "listener.\n# TYPE opampd_tls_certificate_not_after_seconds "
				     "gauge\n");
	for (int i = 0; i < 2; i++)
		if (tls[i] != NULL)
			opd_buf_appendf(out,
					"opampd_tls_certificate_not_after_seconds{listener=\"%s\"} "
					"%lld\n",
					tls_names[i], (long long)opd_tls_ctx_not_after(tls[i]));
}

/*
 * GET /metrics: Prometheus text format, no token (bind the admin port privately). Agent counts
 * are this node's agents only: sum them over the nodes. Every label value that can occur is
 * written (as 0 when nothing has it), so a series does not vanish when its count drops to 0.
 */
static void metrics(struct opd_server *s, struct opd_buf *out)
{
	static const char *const ms_names[MS_N] = {"applied", "applying", "failed", "pending"};
	static const char *const roles[] = {"leader", "follower", "candidate", "unavailable",
					    "closed"};
	static const char *const member_roles[] = {"voter", "standby", "spare"};
	struct opd_node_status st;
	const struct opd_endpoint_stats *e = &s->endpoint.stats;
	const struct opd_registry *r = &s->registry;
	uint64_t by_state[4][3] = {{0}}, untargeted = 0, now = opd_clock_now(&opd_clock_system);
	struct metrics_cfgs cfgs = {0};
	struct opd_list *pos;

	opd_node_status(s->node, &st);
#define GAUGE(name, help, value)                                                                   \
	opd_buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,   \
			(unsigned long long)(value))
#define COUNTER(name, help, value)                                                                 \
	opd_buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, \
			(unsigned long long)(value))
#define FAMILY(name, type, help)                                                                   \
	opd_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type)
	GAUGE("opampd_agents", "Agents known to this node.", s->registry.n_agents);
	GAUGE("opampd_agents_connected", "Agents connected to this node.", s->registry.n_connected);

	/* One pass over the agents: health and transport, and each configuration's rollout. */
	if (opd_store_foreach_config(&s->configs.store, metrics_cfg_add, &cfgs) == 0 && cfgs.n > 1)
		qsort(cfgs.v, cfgs.n, sizeof *cfgs.v, metrics_cfg_cmp);
	opd_list_foreach(pos, &r->agents)
	{
		const struct opd_agent *ag = opd_container_of(pos, struct opd_agent, link);
		enum opd_health_state h = opd_registry_health(r, ag, now);
		unsigned t = ag->transport == OPD_TRANSPORT_WS     ? 0
			     : ag->transport == OPD_TRANSPORT_HTTP ? 1
								   : 2;
		struct opd_desired d;
		struct metrics_cfg *mc;
		int same;

		if ((unsigned)h < 4)
			by_state[h][t]++;
		if (r->ops.desired == NULL || r->ops.desired(r->ops.data, ag, &d) != 0 ||
		    d.name == NULL) {
			untargeted++;
			continue;
		}
		mc = metrics_cfg_find(&cfgs, d.name);
		/* A report about another hash says nothing about this version: pending. */
		same = d.hash != NULL && ag->rc_hash.len == d.hash_len &&
		       memcmp(ag->rc_hash.b, d.hash, d.hash_len) == 0;
		if (same && ag->rc_status == OPD_RC_APPLIED)
			mc->n[MS_APPLIED]++;
		else if (same && ag->rc_status == OPD_RC_APPLYING)
			mc->n[MS_APPLYING]++;
		else if (same && ag->rc_status == OPD_RC_FAILED)
			mc->n[MS_FAILED]++;
		else
			mc->n[MS_PENDING]++;
	}
	FAMILY("opampd_agents_by_state", "gauge",
	       "Agents known to this node by health state and transport (none: no transport "
	       "recorded).");
	for (int h = 0; h < 4; h++)
		for (int t = 0; t < 3; t++)
			opd_buf_appendf(out,
					"opampd_agents_by_state{health=\"%s\",transport=\"%s\"} "
					"%llu\n",
					opd_health_state_name((enum opd_health_state)h),
					t == 0   ? "websocket"
					: t == 1 ? "http"
						 : "none",
					(unsigned long long)by_state[h][t]);
	FAMILY("opampd_config_agents", "gauge",
	       "Agents of this node that a configuration targets, by how they stand with its "
	       "active version (pending: not reported for that version yet).");
	for (size_t i = 0; i < cfgs.n; i++) {
		for (int k = 0; k < MS_N; k++) {
			opd_buf_appendf(out, "opampd_config_agents{config=\"");
			metrics_label(out, cfgs.v[i].name);
			opd_buf_appendf(out, "\",status=\"%s\"} %llu\n", ms_names[k],
					(unsigned long long)cfgs.v[i].n[k]);
		}
		free(cfgs.v[i].name);
	}
	free(cfgs.v);
	GAUGE("opampd_agents_without_config", "Agents of this node no configuration targets.",
	      untargeted);

	GAUGE("opampd_connections", "Open OpAMP connections.", s->opamp.n_conns);
	COUNTER("opampd_connections_refused_total", "Connections refused over the limit.",
		s->opamp.refused);
	FAMILY("opampd_admission_rejections_total", "counter",
	       "Agents turned away by admission control, by the limit they hit.");
	opd_buf_appendf(out, "opampd_admission_rejections_total{reason=\"max_connections\"} %llu\n",
			(unsigned long long)(s->opamp.refused - s->opamp.refused_fds));
	opd_buf_appendf(out, "opampd_admission_rejections_total{reason=\"open_files\"} %llu\n",
			(unsigned long long)s->opamp.refused_fds);
	opd_buf_appendf(out, "opampd_admission_rejections_total{reason=\"handshake_rate\"} %llu\n",
			(unsigned long long)s->opamp.admission.refused);
	COUNTER("opampd_messages_websocket_total", "AgentToServer messages over WebSocket.",
		e->messages_ws);
	COUNTER("opampd_messages_http_total", "AgentToServer messages over plain HTTP.",
		e->messages_http);
	COUNTER("opampd_bad_requests_total", "Undecodable messages answered with BadRequest.",
		e->bad_requests);
	COUNTER("opampd_protocol_errors_total", "Connections closed for framing errors.",
		e->protocol_errors);
	COUNTER("opampd_agent_auth_failures_total",
		"Agent requests refused with 401: missing or wrong bearer token.",
		e->auth_failures);
	COUNTER("opampd_agent_cert_mismatches_total",
		"Agent messages refused: instance_uid not the one the client certificate names.",
		e->cert_mismatches);
	COUNTER("opampd_agent_cert_revoked_refusals_total",
		"Agent connections refused for presenting a revoked certificate.", e->cert_refused);
	COUNTER("opampd_agent_cert_revoked_drops_total",
		"Open agent connections closed because their certificate was revoked.",
		s->offers.revoked_drops);
	COUNTER("opampd_cert_offers_total",
		"Certificates this node offered to its agents (rotation, renewal, enrolment).",
		s->offers.offered);
	COUNTER("opampd_cert_offer_sign_failures_total",
		"Certificates for offers that the leader did not sign (retried later).",
		s->offers.sign_failures);
	GAUGE("opampd_cert_offers_in_flight", "Signings this node waits for.", s->offers.in_flight);
	FAMILY("opampd_agent_csrs_total", "counter", "Agents' CSRs (spec 3.8) by outcome.");
	opd_buf_appendf(out, "opampd_agent_csrs_total{result=\"issued\"} %llu\n",
			(unsigned long long)s->csr.issued);
	opd_buf_appendf(out, "opampd_agent_csrs_total{result=\"refused\"} %llu\n",
			(unsigned long long)s->csr.refused);
	opd_buf_appendf(out, "opampd_agent_csrs_total{result=\"unavailable\"} %llu\n",
			(unsigned long long)s->csr.unavailable);
	COUNTER("opampd_tls_failures_total", "OpAMP connections whose TLS handshake failed.",
		s->opamp.tls_failures);
	COUNTER("opampd_config_pushes_total", "Remote configs pushed without a request.",
		e->pushes);
	GAUGE("opampd_configs_active", "Configurations served (verified active versions).",
	      opd_configs_served(&s->configs));
	GAUGE("opampd_unverified_versions",
	      "Active versions whose signature fails verification on this node (never served).",
	      opd_configs_unverified(&s->configs));
	COUNTER("opampd_forwarded_writes_total", "Writes forwarded to the leader.",
		s->cluster.forwarded);
	COUNTER("opampd_forward_failures_total", "Forwards the leader did not answer.",
		s->cluster.forward_failures);
	COUNTER("opampd_raft_aio_contexts_deferred_total",
		"Kernel AIO contexts raft closed that were destroyed off the event loop (aio_reaper.c); "
		"raft's I/O probe at start-up makes at least one.",
		opd_aio_reaper_deferred());
	COUNTER("opampd_raft_segments_filled_total",
		"Raft log segments written with zeros before use (segment_fill.c), so that raft's "
		"writes need no journal commit; raft prepares one at start-up.",
		opd_segment_fill_count());
	GAUGE("opampd_raft_term", "Current raft term.", st.term);
	GAUGE("opampd_raft_commit_index", "Raft commit index.", st.commit_index);
	GAUGE("opampd_raft_applied_index", "Raft applied index.", st.applied_index);
	GAUGE("opampd_raft_last_index", "Index of the last raft log entry.", st.last_index);
	GAUGE("opampd_raft_leader", "1 when this node is the leader.",
	      strcmp(st.role, "leader") == 0);
	GAUGE("opampd_raft_has_leader", "1 when this node knows a leader.", st.leader_id != 0);
	GAUGE("opampd_raft_leader_id", "The leader's node id (0: none known).", st.leader_id);
	FAMILY("opampd_raft_role", "gauge", "1 for this node's raft role.");
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		opd_buf_appendf(out, "opampd_raft_role{role=\"%s\"} %d\n", roles[i],
				strcmp(st.role, roles[i]) == 0);
	FAMILY("opampd_raft_members", "gauge", "Cluster members in this node's view, by role.");
	for (size_t i = 0; i < sizeof member_roles / sizeof member_roles[0]; i++) {
		unsigned n = 0;
		for (size_t m = 0; m < st.n_members; m++)
			n += st.members[m].role != NULL &&
			     strcmp(st.members[m].role, member_roles[i]) == 0;
		opd_buf_appendf(out, "opampd_raft_members{role=\"%s\"} %u\n", member_roles[i], n);
	}
	GAUGE("opampd_read_only", "1 when this node refuses writes.", st.read_only);
	{
		/* Push to receipt: a config sent → the agent's first status report about it. */
		const struct opd_latency_histogram *h = &s->registry.receipt_latency;
		uint64_t cumulative = 0;

		FAMILY("opampd_config_receipt_seconds", "histogram",
		       "From sending a remote config to the agent's first status report about it.");
		for (size_t i = 0; i < OPD_LATENCY_BUCKETS; i++) {
			cumulative += h->buckets[i];
			opd_buf_appendf(out,
					"opampd_config_receipt_seconds_bucket{le=\"%g\"} %llu\n",
					(double)opd_latency_bounds_ms[i] / 1000.0,
					(unsigned long long)cumulative);
		}
		opd_buf_appendf(out, "opampd_config_receipt_seconds_bucket{le=\"+Inf\"} %llu\n",
				(unsigned long long)h->count);
		opd_buf_appendf(out, "opampd_config_receipt_seconds_sum %.3f\n",
				(double)h->sum_ms / 1000.0);
		opd_buf_appendf(out, "opampd_config_receipt_seconds_count %llu\n",
				(unsigned long long)h->count);
	}
	metrics_certs(s, out);
#undef GAUGE
#undef COUNTER
#undef FAMILY
}

static void on_admin_request(void *data, struct opd_conn *c, const struct opd_http_request *req)
{
	struct opd_server *s = data;
	struct opd_admin_response resp;
	struct opd_ui_response ui;

	/* The web UI's static files (no token: they hold no data; the page calls the API). */
	if (opd_ui_route(req->method, req->path, &ui)) {
		opd_conn_respond(c, ui.status, ui.content_type, ui.headers, ui.body, ui.len);
		return;
	}
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

/* max: agents written at most (0: every dirty one, at shutdown). */
static void flush_agents(struct opd_server *s, size_t max)
{
	int n = opd_agentdb_flush(&s->agentdb, &s->registry, max);

	if (n < 0)
		log_error("%s", s->agentdb.errmsg);
	else if (n > 0)
		log_debug("persisted agents count=%d", n);
}

static void on_tick(uv_timer_t *t)
{
	struct opd_server *s = t->data;

	opd_registry_sweep(&s->registry, opd_clock_now(&opd_clock_system));
	flush_agents(s, OPD_AGENTDB_FLUSH_MAX);
	/* A new leader registers the fleet CA, and says so when it cannot sign. */
	opd_certs_tick(&s->certs);
	opd_cert_offers_tick(&s->offers);
	opd_endpoint_tick(&s->endpoint);
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
	uv_close((uv_handle_t *)&s->push, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sighup, NULL);
	s->closing = 2;
	opd_cluster_close(&s->cluster, on_part_closed, s);
	opd_node_close(s->node, on_part_closed, s);
}

/* ---- TLS: the listeners' certificates and the agents' tokens, read from files ---- */

/* What the files say now; a member is NULL (or has_tokens false) when not configured. */
struct tls_set {
	struct opd_tls_ctx *opamp, *admin;
	struct opd_tls_tokens tokens;
	bool has_tokens;
};

static void tls_set_fini(struct tls_set *t)
{
	opd_tls_ctx_unref(t->opamp);
	opd_tls_ctx_unref(t->admin);
	opd_tls_tokens_fini(&t->tokens);
	*t = (struct tls_set){0};
}

/* Options that do not go together, refused before anything is read. */
static int tls_check_options(const struct opd_server_options *o, char *errmsg)
{
	if ((o->opamp_tls_cert == NULL) != (o->opamp_tls_key == NULL))
		opd_errmsg_printf(errmsg, "--opamp-tls-cert and --opamp-tls-key go together");
	else if ((o->admin_tls_cert == NULL) != (o->admin_tls_key == NULL))
		opd_errmsg_printf(errmsg, "--admin-tls-cert and --admin-tls-key go together");
	else if (o->opamp_mtls != OPD_TLS_VERIFY_OFF && o->opamp_tls_cert == NULL)
		opd_errmsg_printf(errmsg,
				  "--opamp-mtls %s needs TLS on the OpAMP listener "
				  "(--opamp-tls-cert, --opamp-tls-key)",
				  opd_tls_verify_name(o->opamp_mtls));
	else if (o->opamp_mtls == OPD_TLS_VERIFY_OFF && o->opamp_client_ca != NULL)
		opd_errmsg_printf(errmsg,
				  "--opamp-client-ca needs --opamp-mtls optional or required");
	else
		return 0;
	return OPD_EINVAL;
}

/*
 * mTLS without --opamp-client-ca trusts the fleet CA: every CA not retired in
 * the replicated state (both during a CA rotation's overlap), or this node's
 * own CA before the first is registered, kept in DATA_DIR/agent-ca.pem.
 * Returns 1 when the file changed, 0 when not, or a negative code.
 */
static int write_fleet_trust(struct opd_server *s)
{
	struct opd_buf b;
	char tmp[sizeof s->fleet_trust + 8], old[16384];
	FILE *f;
	size_t n = 0;
	int rc;

	opd_buf_init(&b);
	rc = opd_certs_bundle(&s->certs, &b);
	if (rc == OPD_ENOTFOUND && s->certs.n_keys > 0) {
		opd_buf_append(&b, s->certs.keys[0].cert_pem, strlen(s->certs.keys[0].cert_pem));
		rc = 0;
	}
	if (rc != 0) {
		opd_buf_fini(&b);
		return rc;
	}
	if ((f = fopen(s->fleet_trust, "r")) != NULL) {
		n = fread(old, 1, sizeof old, f);
		fclose(f);
	}
	if (n == opd_buf_avail(&b) && memcmp(old, opd_buf_rptr(&b), n) == 0) {
		opd_buf_fini(&b);
		return 0;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", s->fleet_trust);
	f = fopen(tmp, "w");
	rc = f != NULL && fwrite(opd_buf_rptr(&b), 1, opd_buf_avail(&b), f) == opd_buf_avail(&b);
	if (f != NULL && fclose(f) != 0)
		rc = 0;
	opd_buf_fini(&b);
	if (!rc || rename(tmp, s->fleet_trust) != 0) {
		log_error("cannot write %s: %s", s->fleet_trust, strerror(errno));
		return OPD_EIO;
	}
	return 1;
}

static json_t *reload_tls(void *data, char *errmsg);

/* Certificates, CAs or rotations changed in the replicated state. */
static void certs_changed(void *data, const struct opd_apply_result *res)
{
	struct opd_server *s = data;
	char err[OPD_ERRMSG_SIZE];

	(void)res;
	opd_cert_offers_changed(&s->offers);
	if (s->fleet_trust[0] != '\0' && write_fleet_trust(s) == 1) {
		log_info("agent client CAs changed: reloading the OpAMP listener's trust");
		json_decref(reload_tls(s, err));
	}
}

/* Read every configured file. 0, or OPD_EINVAL with errmsg naming the file (nothing kept). */
static int tls_set_load(const struct opd_server_options *o, struct tls_set *t, char *errmsg)
{
	int rc;

	*t = (struct tls_set){0};
	if (o->opamp_tls_cert != NULL) {
		struct opd_tls_config cfg = {o->opamp_tls_cert, o->opamp_tls_key,
					     o->opamp_client_ca, o->opamp_mtls};
		if ((rc = opd_tls_ctx_new(&cfg, &t->opamp, errmsg)) != 0) {
			opd_errmsg_wrapf(errmsg, "OpAMP listener TLS");
			goto fail;
		}
	}
	if (o->admin_tls_cert != NULL) {
		struct opd_tls_config cfg = {o->admin_tls_cert, o->admin_tls_key, NULL,
					     OPD_TLS_VERIFY_OFF};
		if ((rc = opd_tls_ctx_new(&cfg, &t->admin, errmsg)) != 0) {
			opd_errmsg_wrapf(errmsg, "admin listener TLS");
			goto fail;
		}
	}
	if (o->agent_token_file != NULL) {
		if ((rc = opd_tls_tokens_load(&t->tokens, o->agent_token_file, errmsg)) != 0)
			goto fail;
		t->has_tokens = true;
	}
	return 0;
fail:
	tls_set_fini(t);
	return rc;
}

static void tls_log(const char *what, const char *listener, const struct opd_tls_ctx *ctx)
{
	log_info("%s TLS certificate listener=%s sha256=%s key=%s subject=\"%s\" not_after=%lld",
		 what, listener, opd_tls_ctx_fingerprint(ctx), opd_tls_ctx_key_type(ctx),
		 opd_tls_ctx_subject(ctx), (long long)opd_tls_ctx_not_after(ctx));
}

/* Serve t from the next connection on (open ones keep theirs). Empties t. */
static void tls_set_apply(struct opd_server *s, struct tls_set *t)
{
	if (t->opamp != NULL)
		opd_listener_set_tls(&s->opamp, t->opamp);
	if (t->admin != NULL)
		opd_listener_set_tls(&s->admin_listener, t->admin);
	if (t->has_tokens) {
		/* The endpoint points at s->agent_tokens: swap the contents, not the pointer. */
		opd_tls_tokens_fini(&s->agent_tokens);
		s->agent_tokens = t->tokens;
		t->tokens = (struct opd_tls_tokens){0};
	}
	tls_set_fini(t); /* the listeners hold their own references */
}

static json_t *tls_ctx_json(const struct opd_tls_ctx *ctx)
{
	return json_pack("{s:s, s:s, s:s, s:I}", "sha256", opd_tls_ctx_fingerprint(ctx), "key_type",
			 opd_tls_ctx_key_type(ctx), "subject", opd_tls_ctx_subject(ctx),
			 "not_after", (json_int_t)opd_tls_ctx_not_after(ctx));
}

/* SIGHUP and POST /api/v1/tls/reload: all files read and valid, or nothing changes. */
static json_t *reload_tls(void *data, char *errmsg)
{
	struct opd_server *s = data;
	struct tls_set t;
	json_t *j;

	if (tls_set_load(&s->opt, &t, errmsg) != 0) {
		log_error("TLS reload failed, the current certificates stay: %s", errmsg);
		return NULL;
	}
	j = json_object();
	json_object_set_new(j, "opamp", t.opamp != NULL ? tls_ctx_json(t.opamp) : json_null());
	json_object_set_new(j, "admin", t.admin != NULL ? tls_ctx_json(t.admin) : json_null());
	json_object_set_new(j, "agent_tokens",
			    t.has_tokens ? json_integer((json_int_t)t.tokens.n) : json_null());
	if (t.opamp != NULL)
		tls_log("reloaded", "opamp", t.opamp);
	if (t.admin != NULL)
		tls_log("reloaded", "admin", t.admin);
	if (t.has_tokens)
		log_info("reloaded agent tokens count=%zu", t.tokens.n);
	tls_set_apply(s, &t);
	return j;
}

static void on_sighup(uv_signal_t *h, int signum)
{
	char err[OPD_ERRMSG_SIZE];

	(void)signum;
	log_info("received SIGHUP: reloading TLS certificates and agent tokens");
	json_decref(reload_tls(h->data, err));
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
	nc->snapshot_threshold = o->snapshot_entries;
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
	rc = tls_check_options(o, s->errmsg);
	if (rc != 0)
		return rc;
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
	s->configs.history_limit = o->config_history;

	/* The fleet CA: from files shared by the voters, or made here for a single node. */
	struct opd_certs_options co = {.ca_cert = o->ca_cert,
				       .ca_key = o->ca_key,
				       .dir = o->data_dir,
				       .create = o->n_voters <= 1,
				       .lifetime_s = o->cert_lifetime_s};
	rc = opd_certs_init(&s->certs, &s->configs, &opd_clock_system, &co);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->certs.errmsg);
		return rc;
	}
	if (s->certs.n_keys > 0)
		log_info("fleet CA main=%s not_after=%llu keys_here=%zu",
			 s->certs.keys[0].fingerprint,
			 (unsigned long long)s->certs.keys[0].not_after, s->certs.n_keys);
	else
		log_warn("no fleet CA on this node: it cannot issue certificates (give every voter "
			 "the same --ca-cert and --ca-key)");

	rc = node_config(s, &nc, raft_dir, sizeof raft_dir);
	if (rc != 0)
		return rc;
	rc = opd_node_start(&s->loop, &nc, &s->configs.fsm, &s->node, s->errmsg);
	if (rc != 0)
		return rc;
	s->configs.node = s->node;

	snprintf(s->endpoint_url, sizeof s->endpoint_url, "%s://%s:%d%s",
		 o->opamp_tls_cert != NULL ? "wss" : "ws", o->opamp_host, o->opamp_port,
		 OPD_OPAMP_PATH);
	opd_registry_settings_default(&rs);
	rs.heartbeat_interval_s = o->heartbeat_s;
	rs.http_timeout_factor = o->http_timeout_factor;
	rs.endpoint = s->endpoint_url;
	rs.custom_capabilities[0] = OPD_SIGNATURE_CAPABILITY;
	ops = (struct opd_registry_ops){.desired = opd_configs_desired,
					.new_uid = new_uid,
					.data = &s->configs,
					.affects = opd_configs_affects};
	s->csr = (struct opd_csr){.certs = &s->certs,
				  .registry = &s->registry,
				  .cluster = &s->cluster,
				  .self_id = o->node_id};
	/* Agents may send CSRs only to a node with a CA. */
	if (s->certs.n_keys > 0)
		rs.capabilities |= OPD_CSR_SERVER_CAP;
	opd_registry_init(&s->registry, &rs, &ops);
	s->registry.csr = (struct opd_csr_port){opd_csr_request, &s->csr};

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
	/*
	 * Only now: opd_node_start above may restore a snapshot, which reports a
	 * change, and what the callbacks push through (the registry, the endpoint,
	 * the certificate offers) did not exist yet. The agents get the restored
	 * state anyway: their desired configurations are computed on demand.
	 */
	s->configs.changed = configs_changed;
	s->configs.changed_data = s;
	s->certs.changed = certs_changed;
	s->certs.changed_data = s;
	opd_cert_offers_init(&s->offers);
	s->offers.csr = &s->csr;
	s->offers.certs = &s->certs;
	s->offers.registry = &s->registry;
	s->offers.endpoint = &s->endpoint;
	s->offers.clock = &opd_clock_system;
	s->offers.renew_share = o->cert_renew_share;
	s->offers.enroll = o->offer_agent_certs;
	s->endpoint.auth.cert_check = opd_cert_offers_check;
	s->endpoint.auth.cert_data = &s->offers;
	s->admin.configs = &s->configs;
	s->admin.certs = &s->certs;
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
	lim.handshake_rate = o->handshake_rate; /* a reconnect storm waits its turn (503) */
	/* WebSocket liveness follows the offered heartbeat: ping when idle, drop when long silent.
	 */
	lim.ws_ping_ms = o->heartbeat_s * 1000;
	lim.ws_timeout_ms = o->heartbeat_s * 1000 * 4 + 30000;
	struct opd_listener_handler h = opd_endpoint_handler(&s->endpoint);
	struct tls_set tls;
	if (o->opamp_mtls != OPD_TLS_VERIFY_OFF && o->opamp_client_ca == NULL) {
		snprintf(s->fleet_trust, sizeof s->fleet_trust, "%s/agent-ca.pem", o->data_dir);
		if (write_fleet_trust(s) < 0) {
			opd_errmsg_printf(s->errmsg,
					  "--opamp-mtls %s needs --opamp-client-ca, or a fleet CA "
					  "(--ca-cert) to trust",
					  opd_tls_verify_name(o->opamp_mtls));
			return OPD_EINVAL;
		}
		s->opt.opamp_client_ca = s->fleet_trust;
	}
	rc = tls_set_load(&s->opt, &tls, s->errmsg);
	if (rc != 0)
		return rc;
	s->endpoint.auth.tokens = &s->agent_tokens;
	s->endpoint.auth.mtls = o->opamp_mtls;
	s->admin.ops.tls_reload = reload_tls;
	s->admin.ops.tls_data = s;
	rc = opd_listener_start(&s->opamp, &s->loop, "opamp", o->opamp_host, o->opamp_port, &lim,
				&h);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->opamp.errmsg);
		tls_set_fini(&tls);
		return rc;
	}
	if (o->opamp_port == 0)
		snprintf(s->endpoint_url, sizeof s->endpoint_url, "%s://%s:%d%s",
			 o->opamp_tls_cert != NULL ? "wss" : "ws", o->opamp_host,
			 opd_listener_port(&s->opamp), OPD_OPAMP_PATH);
	opd_listener_limits_default(&lim);
	lim.max_conns = 1024;
	/* Below the OpAMP listener's reserve: the admin API outlasts agents taking every fd. */
	lim.fd_reserve = 64;
	admin_handler =
	    (struct opd_listener_handler){on_admin_request, on_admin_ws, on_admin_close, s};
	rc = opd_listener_start(&s->admin_listener, &s->loop, "admin", o->admin_host, o->admin_port,
				&lim, &admin_handler);
	if (rc != 0) {
		opd_errmsg_printf(s->errmsg, "%s", s->admin_listener.errmsg);
		tls_set_fini(&tls);
		return rc;
	}
	if (tls.opamp != NULL)
		tls_log("serving", "opamp", tls.opamp);
	if (tls.admin != NULL)
		tls_log("serving", "admin", tls.admin);
	if (o->opamp_mtls != OPD_TLS_VERIFY_OFF)
		log_info("agent client certificates mode=%s ca=%s",
			 opd_tls_verify_name(o->opamp_mtls), s->opt.opamp_client_ca);
	if (tls.has_tokens)
		log_info("agents need a bearer token count=%zu file=%s", tls.tokens.n,
			 o->agent_token_file);
	tls_set_apply(s, &tls);
	if (o->peer_ca != NULL && s->cluster.httpc != NULL)
		opd_httpc_set_ca_file(s->cluster.httpc, o->peer_ca);

	snprintf(s->cluster.self_url, sizeof s->cluster.self_url, "%s://%s:%d",
		 o->admin_tls_cert != NULL ? "https" : "http", o->admin_host,
		 opd_listener_port(&s->admin_listener));
	uv_timer_init(&s->loop, &s->tick);
	s->tick.data = s;
	uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
	uv_check_init(&s->loop, &s->push);
	s->push.data = s;
	uv_signal_init(&s->loop, &s->sigterm);
	uv_signal_init(&s->loop, &s->sigint);
	s->sigterm.data = s->sigint.data = s;
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_init(&s->loop, &s->sighup);
	s->sighup.data = s;
	uv_signal_start(&s->sighup, on_sighup, SIGHUP);
	s->started = 1;
	s->admin.ready = 1;

	if (o->ready_file != NULL && (rc = write_ready_file(s)) != 0)
		return rc;
	log_info("serving node=%llu opamp=%s://%s:%d%s admin=%s://%s:%d raft=%s data_dir=%s "
		 "key_id=%s",
		 (unsigned long long)o->node_id, o->opamp_tls_cert != NULL ? "wss" : "ws",
		 o->opamp_host, opd_listener_port(&s->opamp), OPD_OPAMP_PATH,
		 o->admin_tls_cert != NULL ? "https" : "http", o->admin_host,
		 opd_listener_port(&s->admin_listener), o->raft_listen, o->data_dir,
		 s->signer.key_id);
	return 0;
}

int opd_server_run(struct opd_server *s)
{
	uv_run(&s->loop, UV_RUN_DEFAULT);
	/* Everything is closed: persist the last reports, release the rest. */
	flush_agents(s, 0);
	opd_agentdb_close(&s->agentdb);
	opd_admin_fini(&s->admin);
	opd_registry_fini(&s->registry);
	opd_cert_offers_fini(&s->offers);
	opd_certs_fini(&s->certs);
	opd_configs_close(&s->configs);
	opd_signer_fini(&s->signer);
	opd_tls_tokens_fini(&s->agent_tokens);
	if (uv_loop_close(&s->loop) != 0)
		log_warn("loop closed with handles still open");
	return 0;
}
