/*
 * loadgen: the load generator behind `make bench` (issue 6). One libuv loop, two modes.
 *
 * "agents" simulates N OpAMP agents over WebSocket or plain HTTP: each opens its own TCP
 * connection from one of many source addresses in 127.0.0.0/8 (so ephemeral ports are never
 * the limit), sends a full first report (AgentDescription, ComponentHealth, effective config),
 * heartbeats at the interval the server offers, applies every config it receives (RemoteConfig
 * status APPLYING, then APPLIED with the new effective config), reconnects with opamp-go's
 * backoff (honouring Retry-After and RetryInfo), and records when each agent first received
 * each config hash. Agents start at a chosen rate; --flood turns them into closed loops that
 * send the next message as soon as the previous one is answered (server throughput).
 *
 * "writes" keeps C keep-alive HTTP connections busy with 4 KiB writes: new configuration
 * versions through opampd's admin API, or puts through etcd's v3 JSON gateway, and records
 * the latency of each write.
 *
 * Both are bounded by --duration and stop on SIGINT/SIGTERM; progress goes to --status-file
 * (rewritten atomically every --status-ms) and the results are one JSON object on stdout.
 * Agents speak TLS 1.3 with wss:// and https:// URLs: OpenSSL over two memory BIOs on the libuv
 * socket (as agentapi/tls.c does on the server side), so nothing blocks; the server certificate
 * is checked only with --ca (a benchmark against its own test certificate needs no check), and
 * --cert/--key present one client certificate for every agent. Plain ws:// and http:// agents
 * allocate no TLS state and send exactly the bytes they always did. The WebSocket client
 * framing is written here (agentapi/ws.h is server-side).
 */
#include "opamp/v1/opamp.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CAP(x) OPAMP__PROTO__V1__AGENT_CAPABILITIES__AgentCapabilities_##x
#define RCS(x) OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_##x
#define AGENT_CAPS                                                                                 \
	(CAP(ReportsStatus) | CAP(AcceptsRemoteConfig) | CAP(ReportsEffectiveConfig) |             \
	 CAP(ReportsHealth) | CAP(ReportsRemoteConfig) | CAP(ReportsHeartbeat) |                   \
	 CAP(AcceptsOpAMPConnectionSettings))
#define FLAG_REPORT_FULL OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState
#define ERR_UNAVAILABLE                                                                            \
	OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE_TYPE__ServerErrorResponseType_Unavailable

#define MAX_MSG (8u << 20)     /* largest server message or HTTP response accepted */
#define MAX_HEADER 8192        /* the 101 / HTTP response head */
#define MAX_HASHES 64          /* distinct config hashes tracked per run */
#define MAX_URLS 8             /* writes: endpoints tried in turn */
#define WS_HDR_MAX 14          /* 2 + 8 length + 4 mask */
#define FD_RESERVE 64          /* descriptors kept for the loop, stdio and the status file */
#define LAT_CAP (4u << 20)     /* latency samples kept (writes) */
#define DEFAULT_RETRY_MS 30000 /* a 503 that says nothing about when to come back */

typedef Opamp__Proto__V1__AgentToServer a2s_t;
typedef Opamp__Proto__V1__ServerToAgent s2a_t;
typedef Opamp__Proto__V1__AgentConfigMap cfgmap_t;

/* ------------------------------------------------------------------ options */

struct endpoint {
	struct sockaddr_in addr;
	char host[64];
	char hostport[80];
	char path[256];
	bool ws;
	bool tls;
};

static struct {
	const char *mode;
	struct endpoint url[MAX_URLS];
	int n_urls;
	/* agents */
	uint32_t agents;
	double rate;
	uint32_t max_connecting;
	uint32_t src_addrs;
	uint32_t src_base;
	uint32_t heartbeat_s;
	uint32_t apply_ms;
	uint32_t backoff_initial_ms;
	uint32_t backoff_max_ms;
	const char *fleet;
	const char *flood; /* NULL, "heartbeat" or "status" */
	uint32_t uid_seed;
	bool raw;
	const char *ca;   /* TLS: verify the server against these CAs (else no verification) */
	const char *cert; /* TLS: client certificate chain (PEM), the same for every agent */
	const char *key;
	/* writes */
	const char *target; /* "opampd" or "etcd" */
	const char *token;
	uint32_t concurrency;
	uint32_t size;
	uint32_t retry_ms;
	const char *name_prefix;
	uint32_t names; /* writes spread over this many configurations (0: one per writer) */
	/* both */
	double duration_s;
	const char *status_file;
	uint32_t status_ms;
} opt = {
    .agents = 100,
    .rate = 1000,
    .max_connecting = 512,
    .src_addrs = 64,
    .src_base = 1,
    .heartbeat_s = 30,
    .backoff_initial_ms = 500,
    .backoff_max_ms = 30000,
    .fleet = "bench",
    .uid_seed = 1,
    .target = "opampd",
    .token = "",
    .concurrency = 1,
    .size = 4096,
    .retry_ms = 20,
    .name_prefix = "bench-w",
    .duration_s = 60,
    .status_ms = 200,
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die("out of memory");
	return p;
}

/* ----------------------------------------------------------------- time, rng */

static int64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: masks, jitter and uids need to differ, not to be secret. */
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
	return (double)(rng() >> 11) / 9007199254740992.0;
}

/* ----------------------------------------------------------------- url parse */

/* ws://, wss://, http:// or https://IP:PORT/path (IPv4 literals only: a loopback tool). */
static void parse_url(const char *s, struct endpoint *e)
{
	const char *rest, *slash, *colon;
	char host[64];
	unsigned long port;
	char *end;

	if (strncmp(s, "ws://", 5) == 0) {
		e->ws = true;
		rest = s + 5;
	} else if (strncmp(s, "wss://", 6) == 0) {
		e->ws = e->tls = true;
		rest = s + 6;
	} else if (strncmp(s, "http://", 7) == 0) {
		e->ws = false;
		rest = s + 7;
	} else if (strncmp(s, "https://", 8) == 0) {
		e->tls = true;
		rest = s + 8;
	} else {
		die("%s: URL must start with ws://, wss://, http:// or https://", s);
	}
	slash = strchr(rest, '/');
	if (slash == NULL)
		slash = rest + strlen(rest);
	colon = memchr(rest, ':', (size_t)(slash - rest));
	if (colon == NULL || (size_t)(colon - rest) >= sizeof host)
		die("%s: expected IP:PORT", s);
	memcpy(host, rest, (size_t)(colon - rest));
	host[colon - rest] = '\0';
	snprintf(e->host, sizeof e->host, "%s", host);
	port = strtoul(colon + 1, &end, 10);
	if (end != slash || port == 0 || port > 65535)
		die("%s: bad port", s);
	if (uv_ip4_addr(host, (int)port, &e->addr) != 0)
		die("%s: %s is not an IPv4 address", s, host);
	if ((size_t)(slash - rest) >= sizeof e->hostport || strlen(slash) >= sizeof e->path)
		die("%s: too long", s);
	snprintf(e->hostport, sizeof e->hostport, "%.*s", (int)(slash - rest), rest);
	snprintf(e->path, sizeof e->path, "%s", *slash ? slash : "/");
}

/* ------------------------------------------------------------------ output */

struct out {
	char *p;
	size_t n, cap;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
		va_end(ap);
		if (n < 0)
			die("vsnprintf failed");
		if ((size_t)n < o->cap - o->n)
			break;
		o->cap = (o->cap + (size_t)n + 1) * 2;
		o->p = xrealloc(o->p, o->cap);
	}
	o->n += (size_t)n;
}

static void out_init(struct out *o)
{
	o->cap = 4096;
	o->n = 0;
	o->p = xmalloc(o->cap);
	o->p[0] = '\0';
}

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return a < b ? -1 : a > b;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

/* Rank-based percentile of a sorted array (q in (0, 1]). */
static size_t rank(size_t n, double q)
{
	size_t k = (size_t)ceil(q * (double)n);

	return k == 0 ? 0 : k - 1;
}

/* {"p50": .., "p90": .., "p99": .., "max": ..} in ms of sorted µs samples; null when empty. */
static void out_quantiles_u32(struct out *o, const uint32_t *v, size_t n)
{
	if (n == 0) {
		out_printf(o, "null");
		return;
	}
	out_printf(o, "{\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}", n,
		   v[rank(n, 0.5)] / 1e3, v[rank(n, 0.9)] / 1e3, v[rank(n, 0.99)] / 1e3,
		   v[n - 1] / 1e3);
}

static void write_status_file(const char *text)
{
	char tmp[1100];
	FILE *f;

	if (opt.status_file == NULL)
		return;
	snprintf(tmp, sizeof tmp, "%s.tmp", opt.status_file);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fputs(text, f);
	if (fclose(f) == 0)
		rename(tmp, opt.status_file);
}

/* ----------------------------------------------------------- socket writes */

struct wreq {
	uv_write_t req;
	uv_buf_t buf;
	char data[];
};

static void on_written(uv_write_t *req, int status)
{
	(void)status; /* a failed write shows up on the read side as well */
	free(req);
}

/*
 * Write now if the socket takes it (the common case: no allocation), queue the rest.
 * uv_try_write refuses while anything is queued, so the order is kept. Returns 0 or a
 * libuv error.
 */
static int stream_write(uv_stream_t *s, const uint8_t *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	struct wreq *w;
	int rc;

	if (uv_is_closing((uv_handle_t *)s))
		return UV_ECANCELED;
	rc = uv_try_write(s, &b, 1);
	if (rc == (int)n)
		return 0;
	if (rc < 0 && rc != UV_EAGAIN)
		return rc;
	if (rc < 0)
		rc = 0;
	w = xmalloc(sizeof *w + n - (size_t)rc);
	memcpy(w->data, p + rc, n - (size_t)rc);
	w->buf = uv_buf_init(w->data, (unsigned)(n - (size_t)rc));
	rc = uv_write(&w->req, s, &w->buf, 1, on_written);
	if (rc != 0)
		free(w);
	return rc;
}

/* One read buffer for every socket: a read callback consumes it before the next read. */
static char read_buf[64 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = read_buf;
	buf->len = sizeof read_buf;
}

/* ======================================================================== agents */

/* A_TLS: the TCP connection is up and the TLS handshake is running (wss://, https://). */
enum astate { A_NEW, A_CONNECTING, A_UPGRADING, A_OPEN, A_CLOSING, A_WAITING, A_STOPPED, A_TLS };
enum report { REP_NONE, REP_APPLYING, REP_APPLIED };
enum msg_kind { MSG_FULL, MSG_HEARTBEAT, MSG_STATUS, MSG_APPLYING, MSG_APPLIED };

struct agent {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t timer; /* heartbeat while open, apply delay, backoff while waiting */
	http_parser hp;   /* HTTP transport */
	uint8_t *in;      /* WebSocket: unparsed bytes; HTTP: the response body */
	uint32_t in_len, in_cap;
	uint8_t *frag; /* a fragmented WebSocket message being assembled */
	uint32_t frag_len;
	SSL *ssl; /* wss:// and https:// only, for the life of one connection; NULL otherwise */
	uint32_t idx;
	uint32_t hb_ms;
	uint32_t backoff_ms;
	uint32_t retry_ms; /* server-requested delay before the next connection, 0 none */
	int64_t conn_start_us;
	uint64_t seq;
	int16_t cfg_slot;     /* hash slot of the applied config, -1 none */
	int16_t pending_slot; /* received, APPLIED not yet reported */
	uint8_t state;
	uint8_t ready; /* this connection got its first reply */
	uint8_t was_ready;
	uint8_t want_full;
	uint8_t http_busy; /* HTTP: a request is in flight */
	uint8_t http_next; /* HTTP: enum report to send once the reply is in */
	uint8_t http_done; /* HTTP: response complete */
	uint8_t hdr_match; /* HTTP: the header being parsed is Retry-After */
	uint8_t hname_len;
	char hname[12];
	uint32_t http_retry_after_s;
	uint8_t uid[16];
};

struct hash_slot {
	uint8_t hash[32];
	uint8_t len;
	cfgmap_t *cfg;       /* unpacked copy: what agents report as effective config */
	int64_t *recv_us;    /* per agent: first arrival (wall µs), 0 = not yet */
	int64_t *applied_us; /* per agent: APPLIED sent */
	uint32_t n_recv, n_applied;
	/* The reports about this config, packed once: AgentToServer fields 7 (APPLYING), and
	 * 6 + 7 (effective config, APPLIED). Each agent's message is its own fields 1, 2 and 4
	 * followed by these bytes, which is what protobuf-c would produce field by field. */
	uint8_t *tail_applying, *tail_applied;
	size_t n_tail_applying, n_tail_applied;
};

static struct {
	uv_loop_t *loop;
	struct agent *agents;
	uint32_t started;
	uint32_t connecting;
	uint32_t ready_now;
	uint64_t ever_ready, reconnects, disconnects, connect_failed, unavailable, http_503;
	uint64_t http_other, ws_closes, protocol_errors, msgs_sent, msgs_recv, configs_received;
	uint64_t tls_failed, tls_handshakes;
	uint64_t bytes_sent, bytes_recv;
	int64_t t0_us, t0_wall, first_start_us, all_ready_us, last_ready_us;
	uint32_t *connect_lat_us; /* first connection of each agent: start → first reply */
	uint32_t n_connect_lat;
	struct hash_slot slots[MAX_HASHES];
	int n_slots;
	uint8_t *sendbuf;
	size_t sendcap;
	bool stopping;
	uv_timer_t ramp, status, stop;
	uv_signal_t sigint, sigterm;
	http_parser_settings hps;
	int64_t last_rate_us;
	uint64_t last_rate_msgs;
	double recv_rate;
} G;

/* ----------------------------------------------------------- the agent's state */

static const char default_yaml[] =
    "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n"
    "      http:\n        endpoint: 0.0.0.0:4318\n  hostmetrics:\n    collection_interval: 30s\n"
    "    scrapers:\n      cpu: {}\n      memory: {}\n      disk: {}\n      filesystem: {}\n"
    "      network: {}\nprocessors:\n  batch:\n    send_batch_size: 8192\n    timeout: 5s\n"
    "  memory_limiter:\n    check_interval: 1s\n    limit_percentage: 80\n"
    "    spike_limit_percentage: 20\n  resourcedetection:\n    detectors: [env, system]\n"
    "exporters:\n  otlp:\n    endpoint: gateway.observability.svc:4317\n"
    "    sending_queue:\n      queue_size: 5000\n    retry_on_failure:\n      enabled: true\n"
    "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n"
    "      processors: [memory_limiter, batch]\n      exporters: [otlp]\n    metrics:\n"
    "      receivers: [otlp, hostmetrics]\n"
    "      processors: [memory_limiter, resourcedetection, batch]\n      exporters: [otlp]\n"
    "  telemetry:\n    metrics:\n      level: normal\n";

static Opamp__Proto__V1__AgentConfigFile default_file = OPAMP__PROTO__V1__AGENT_CONFIG_FILE__INIT;
static Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry default_entry =
    OPAMP__PROTO__V1__AGENT_CONFIG_MAP__CONFIG_MAP_ENTRY__INIT;
static Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *default_entries[1] = {&default_entry};
static cfgmap_t default_cfg = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;

/* A collector's health: the process, two pipelines, their components. Shared by all agents. */
#define N_COMPONENTS 7
static Opamp__Proto__V1__ComponentHealth health_root = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
static Opamp__Proto__V1__ComponentHealth health_parts[N_COMPONENTS];
static Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry health_entries[N_COMPONENTS];
static Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *health_ptrs[N_COMPONENTS];
static Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *pipe_ptrs[2][3];

static void build_shared(void)
{
	static const char *names[N_COMPONENTS] = {
	    "pipeline:traces", "pipeline:metrics",     "receiver:otlp",           "processor:batch",
	    "exporter:otlp",   "receiver:hostmetrics", "processor:memory_limiter"};
	uint64_t start = (uint64_t)wall_us() * 1000u;

	default_file.body.data = (uint8_t *)default_yaml;
	default_file.body.len = sizeof default_yaml - 1;
	default_file.content_type = "text/yaml";
	default_entry.key = "collector.yaml";
	default_entry.value = &default_file;
	default_cfg.n_config_map = 1;
	default_cfg.config_map = default_entries;

	for (int i = 0; i < N_COMPONENTS; i++) {
		health_parts[i] =
		    (Opamp__Proto__V1__ComponentHealth)OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
		health_parts[i].healthy = 1;
		health_parts[i].start_time_unix_nano = start;
		health_parts[i].status = "StatusOK";
		health_parts[i].status_time_unix_nano = start;
		health_entries[i] = (Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry)
		    OPAMP__PROTO__V1__COMPONENT_HEALTH__COMPONENT_HEALTH_MAP_ENTRY__INIT;
		health_entries[i].key = (char *)names[i];
		health_entries[i].value = &health_parts[i];
		health_ptrs[i] = &health_entries[i];
	}
	/* traces: otlp → batch → otlp; metrics: hostmetrics → memory_limiter → otlp */
	pipe_ptrs[0][0] = &health_entries[2];
	pipe_ptrs[0][1] = &health_entries[3];
	pipe_ptrs[0][2] = &health_entries[4];
	pipe_ptrs[1][0] = &health_entries[5];
	pipe_ptrs[1][1] = &health_entries[6];
	pipe_ptrs[1][2] = &health_entries[4];
	health_parts[0].n_component_health_map = 3;
	health_parts[0].component_health_map = pipe_ptrs[0];
	health_parts[1].n_component_health_map = 3;
	health_parts[1].component_health_map = pipe_ptrs[1];
	health_root.healthy = 1;
	health_root.start_time_unix_nano = start;
	health_root.status = "StatusOK";
	health_root.status_time_unix_nano = start;
	health_root.n_component_health_map = 2;
	health_root.component_health_map = health_ptrs;
}

static struct agent *agent_of(uv_handle_t *h)
{
	return h->data;
}

static void agent_uid(uint32_t idx, uint8_t uid[16])
{
	/* Deterministic per (seed, index): a restarted loadgen is the same fleet coming back. */
	uint64_t x = ((uint64_t)opt.uid_seed << 32) ^ idx ^ 0x5bd1e9955bd1e995ull;

	for (int i = 0; i < 16; i += 8) {
		x ^= x >> 33;
		x *= 0xff51afd7ed558ccdull;
		x ^= x >> 33;
		x *= 0xc4ceb9fe1a85ec53ull;
		x ^= x >> 33;
		memcpy(uid + i, &x, 8);
		x += 0x9e3779b97f4a7c15ull;
	}
	uid[6] = (uint8_t)((uid[6] & 0x0f) | 0x70); /* UUIDv7-shaped, like opamp-go's */
	uid[8] = (uint8_t)((uid[8] & 0x3f) | 0x80);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ------------------------------------------------------------------ hash slots */

static int slot_find(const uint8_t *hash, size_t len)
{
	for (int i = 0; i < G.n_slots; i++)
		if (G.slots[i].len == len && memcmp(G.slots[i].hash, hash, len) == 0)
			return i;
	return -1;
}

static uint8_t *pack_a2s(const a2s_t *m, size_t *n)
{
	uint8_t *p;

	*n = opamp__proto__v1__agent_to_server__get_packed_size(m);
	p = xmalloc(*n);
	opamp__proto__v1__agent_to_server__pack(m, p);
	return p;
}

static void pack_tails(struct hash_slot *s)
{
	a2s_t m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
	Opamp__Proto__V1__RemoteConfigStatus rcs = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUS__INIT;
	Opamp__Proto__V1__EffectiveConfig eff = OPAMP__PROTO__V1__EFFECTIVE_CONFIG__INIT;

	rcs.last_remote_config_hash.data = s->hash;
	rcs.last_remote_config_hash.len = s->len;
	rcs.status = RCS(APPLYING);
	m.remote_config_status = &rcs;
	s->tail_applying = pack_a2s(&m, &s->n_tail_applying);
	rcs.status = RCS(APPLIED);
	eff.config_map = s->cfg != NULL ? s->cfg : &default_cfg;
	m.effective_config = &eff;
	s->tail_applied = pack_a2s(&m, &s->n_tail_applied);
}

/* The slot of a received config; the first receipt keeps a copy of the config. -1 if full. */
static int slot_get(const Opamp__Proto__V1__AgentRemoteConfig *rc)
{
	struct hash_slot *s;
	size_t len = rc->config_hash.len > 32 ? 32 : rc->config_hash.len;
	int i = slot_find(rc->config_hash.data, len);
	uint8_t *packed;
	size_t n;

	if (i >= 0 || G.n_slots == MAX_HASHES)
		return i;
	s = &G.slots[G.n_slots];
	memcpy(s->hash, rc->config_hash.data, len);
	s->len = (uint8_t)len;
	if (rc->config != NULL) {
		n = opamp__proto__v1__agent_config_map__get_packed_size(rc->config);
		packed = xmalloc(n);
		opamp__proto__v1__agent_config_map__pack(rc->config, packed);
		s->cfg = opamp__proto__v1__agent_config_map__unpack(NULL, n, packed);
		free(packed);
	}
	s->recv_us = xcalloc(opt.agents, sizeof *s->recv_us);
	s->applied_us = xcalloc(opt.agents, sizeof *s->applied_us);
	pack_tails(s);
	return G.n_slots++;
}

/* ----------------------------------------------------------------- messages */

static void ensure_sendbuf(size_t n)
{
	if (n <= G.sendcap)
		return;
	G.sendcap = n * 2;
	G.sendbuf = xrealloc(G.sendbuf, G.sendcap);
}

static void agent_drop(struct agent *a, uint32_t retry_ms);

/*
 * Start a masked binary WebSocket frame of pl payload bytes at start in the send buffer
 * (room for it ensured); the payload begins with the OpAMP header (varint 0). Returns the
 * frame header's length: the payload goes at start + that.
 */
static size_t ws_begin(size_t start, size_t pl)
{
	uint8_t *p;
	size_t hl;
	uint64_t r = rng();

	ensure_sendbuf(start + WS_HDR_MAX + pl);
	p = G.sendbuf + start;
	p[0] = 0x82; /* FIN, binary */
	if (pl < 126) {
		p[1] = (uint8_t)(0x80 | pl);
		hl = 2;
	} else if (pl <= 0xffff) {
		p[1] = 0x80 | 126;
		p[2] = (uint8_t)(pl >> 8);
		p[3] = (uint8_t)pl;
		hl = 4;
	} else {
		p[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)((uint64_t)pl >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(p + hl, &r, 4);
	hl += 4;
	p[hl] = 0;
	return hl;
}

/* Mask the payload of the frame at p (header hl bytes, the key in its last 4). */
static void ws_mask(uint8_t *p, size_t hl, size_t pl)
{
	const uint8_t *mask = p + hl - 4;
	uint8_t *d = p + hl;

	for (size_t i = 0; i < pl; i++)
		d[i] ^= mask[i & 3];
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A WebSocket report about a config from the slot's packed tail (see struct hash_slot). */
static void build_tail(struct agent *a, const uint8_t *tail, size_t tail_len, size_t *len)
{
	uint8_t head[2 + 16 + 1 + 10 + 1 + 10];
	size_t h = 0, hl, pl;

	head[h++] = 0x0a; /* 1: instance_uid */
	head[h++] = 16;
	memcpy(head + h, a->uid, 16);
	h += 16;
	head[h++] = 0x10; /* 2: sequence_num */
	h += put_varint(head + h, ++a->seq);
	head[h++] = 0x20; /* 4: capabilities */
	h += put_varint(head + h, AGENT_CAPS);
	pl = 1 + h + tail_len;
	hl = ws_begin(*len, pl);
	memcpy(G.sendbuf + *len + hl + 1, head, h);
	memcpy(G.sendbuf + *len + hl + 1 + h, tail, tail_len);
	ws_mask(G.sendbuf + *len, hl, pl);
	*len += hl + pl;
	G.msgs_sent++;
}

/*
 * Append one AgentToServer of the given kind, framed for the agent's transport, to the
 * shared send buffer at *len. WebSocket: a masked binary frame holding the 0 varint header
 * and the protobuf. HTTP: a whole POST.
 */
static void build(struct agent *a, enum msg_kind kind, size_t *len)
{
	a2s_t m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
	Opamp__Proto__V1__AgentDescription desc = OPAMP__PROTO__V1__AGENT_DESCRIPTION__INIT;
	Opamp__Proto__V1__KeyValue kv[9];
	Opamp__Proto__V1__AnyValue av[9];
	Opamp__Proto__V1__KeyValue *ident[3], *nonident[6];
	Opamp__Proto__V1__EffectiveConfig eff = OPAMP__PROTO__V1__EFFECTIVE_CONFIG__INIT;
	Opamp__Proto__V1__RemoteConfigStatus rcs = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUS__INIT;
	Opamp__Proto__V1__ComponentHealth health;
	char uidhex[33], host[32];
	const struct hash_slot *cur = a->cfg_slot >= 0 ? &G.slots[a->cfg_slot] : NULL;
	const struct hash_slot *pend = a->pending_slot >= 0 ? &G.slots[a->pending_slot] : NULL;
	size_t n, hl, off, pl, start = *len;
	const struct endpoint *u = &opt.url[0];

	m.instance_uid.data = a->uid;
	m.instance_uid.len = 16;
	m.sequence_num = ++a->seq;
	m.capabilities = AGENT_CAPS;
	if (kind == MSG_FULL) {
		static const char *keys[9] = {
		    "service.name", "service.instance.id",    "service.version",
		    "os.type",      "os.description",         "host.name",
		    "host.arch",    "deployment.environment", "bench.fleet"};
		const char *vals[9];

		hex(a->uid, 16, uidhex);
		snprintf(host, sizeof host, "bench-host-%05" PRIu32, a->idx);
		vals[0] = "io.opentelemetry.collector";
		vals[1] = uidhex;
		vals[2] = "0.98.0";
		vals[3] = "linux";
		vals[4] = "Debian GNU/Linux 12 (bookworm)";
		vals[5] = host;
		vals[6] = "amd64";
		vals[7] = "production";
		vals[8] = opt.fleet;
		for (int i = 0; i < 9; i++) {
			av[i] = (Opamp__Proto__V1__AnyValue)OPAMP__PROTO__V1__ANY_VALUE__INIT;
			av[i].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
			av[i].string_value = (char *)vals[i];
			kv[i] = (Opamp__Proto__V1__KeyValue)OPAMP__PROTO__V1__KEY_VALUE__INIT;
			kv[i].key = (char *)keys[i];
			kv[i].value = &av[i];
			if (i < 3)
				ident[i] = &kv[i];
			else
				nonident[i - 3] = &kv[i];
		}
		desc.n_identifying_attributes = 3;
		desc.identifying_attributes = ident;
		desc.n_non_identifying_attributes = 6;
		desc.non_identifying_attributes = nonident;
		m.agent_description = &desc;
		m.health = &health_root;
		eff.config_map = cur != NULL && cur->cfg != NULL ? cur->cfg : &default_cfg;
		m.effective_config = &eff;
		if (cur != NULL) {
			rcs.last_remote_config_hash.data = (uint8_t *)cur->hash;
			rcs.last_remote_config_hash.len = cur->len;
			rcs.status = RCS(APPLIED);
		}
		m.remote_config_status = &rcs;
	} else if (kind == MSG_STATUS) {
		/* A health report whose status time moved: what a collector sends on a change. */
		health = health_root;
		health.status_time_unix_nano = (uint64_t)wall_us() * 1000u;
		m.health = &health;
	} else if (kind == MSG_APPLYING || kind == MSG_APPLIED) {
		const struct hash_slot *s = pend != NULL ? pend : cur;

		if (s != NULL) {
			rcs.last_remote_config_hash.data = (uint8_t *)s->hash;
			rcs.last_remote_config_hash.len = s->len;
		}
		rcs.status = kind == MSG_APPLYING ? RCS(APPLYING) : RCS(APPLIED);
		m.remote_config_status = &rcs;
		if (kind == MSG_APPLIED && s != NULL) {
			eff.config_map = s->cfg != NULL ? s->cfg : &default_cfg;
			m.effective_config = &eff;
		}
	}

	n = opamp__proto__v1__agent_to_server__get_packed_size(&m);
	if (u->ws) {
		pl = n + 1;
		hl = ws_begin(start, pl);
		opamp__proto__v1__agent_to_server__pack(&m, G.sendbuf + start + hl + 1);
		ws_mask(G.sendbuf + start, hl, pl);
		*len = start + hl + pl;
	} else {
		char head[256];
		int h =
		    snprintf(head, sizeof head,
			     "POST %s HTTP/1.1\r\nHost: %s\r\n"
			     "Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
			     u->path, u->hostport, n);

		off = start + (size_t)h;
		ensure_sendbuf(off + n);
		memcpy(G.sendbuf + start, head, (size_t)h);
		opamp__proto__v1__agent_to_server__pack(&m, G.sendbuf + off);
		*len = off + n;
	}
	G.msgs_sent++;
	if (kind == MSG_FULL)
		a->want_full = 0;
}

static void on_heartbeat(uv_timer_t *t);

/* The heartbeat clock restarts on every message: a heartbeat is due only after silence. */
static void arm_heartbeat(struct agent *a)
{
	if (a->pending_slot >= 0 && opt.apply_ms > 0)
		return; /* the timer is counting the apply delay */
	uv_timer_start(&a->timer, on_heartbeat, a->hb_ms, 0);
}

/* ------------------------------------------------------------------ TLS */

static SSL_CTX *tls_ctx;
static uint8_t tls_out[16 * 1024 + 512]; /* ciphertext on its way to a socket */
static uint8_t tls_plain[64 * 1024];     /* plaintext just decrypted, being parsed */

/* Count a TLS failure; the first few say why on stderr (a wrong --ca shows up here). */
static void tls_fail(struct agent *a, const char *what)
{
	char why[256];
	long vr = SSL_get_verify_result(a->ssl);

	G.tls_failed++;
	if (G.tls_failed > 5)
		return;
	ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
	fprintf(stderr, "loadgen: agent %" PRIu32 ": TLS %s failed: %s%s%s\n", a->idx, what, why,
		vr != X509_V_OK ? ": " : "",
		vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
	ERR_clear_error();
}

/* Move every ciphertext byte OpenSSL has for the peer to the socket. 0 or a libuv error. */
static int tls_flush(struct agent *a)
{
	BIO *w = SSL_get_wbio(a->ssl);
	size_t pending;
	int n, rc;

	while ((pending = BIO_ctrl_pending(w)) > 0) {
		n = BIO_read(w, tls_out,
			     pending > sizeof tls_out ? (int)sizeof tls_out : (int)pending);
		if (n <= 0)
			return UV_EPROTO;
		rc = stream_write((uv_stream_t *)&a->tcp, tls_out, (size_t)n);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Send on the agent's connection: straight to the socket, or encrypted. 0 or a libuv error. */
static int agent_write(struct agent *a, const uint8_t *p, size_t n)
{
	if (a->ssl == NULL)
		return stream_write((uv_stream_t *)&a->tcp, p, n);
	if (uv_is_closing((uv_handle_t *)&a->tcp))
		return UV_ECANCELED;
	ERR_clear_error();
	/* A memory BIO takes everything: the write is whole or failed. */
	if (n > INT_MAX || SSL_write(a->ssl, p, (int)n) != (int)n) {
		tls_fail(a, "write");
		return UV_EPROTO;
	}
	return tls_flush(a);
}

static void flush(struct agent *a, size_t len)
{
	int rc;

	G.bytes_sent += len;
	rc = agent_write(a, G.sendbuf, len);
	if (rc != 0 && rc != UV_ECANCELED)
		agent_drop(a, 0);
}

static void send_one(struct agent *a, enum msg_kind kind)
{
	size_t len = 0;

	if (a->state != A_OPEN)
		return;
	if (!opt.url[0].ws) {
		if (a->http_busy) {
			/* One request at a time: status reports go out when the reply is in. */
			if (kind == MSG_APPLYING || kind == MSG_APPLIED)
				a->http_next = kind == MSG_APPLYING ? REP_APPLYING : REP_APPLIED;
			arm_heartbeat(a);
			return;
		}
		a->http_busy = 1;
	}
	build(a, kind, &len);
	arm_heartbeat(a);
	flush(a, len);
}

static void record_applied(struct agent *a)
{
	struct hash_slot *s = &G.slots[a->pending_slot];

	if (s->applied_us[a->idx] == 0) {
		s->applied_us[a->idx] = wall_us();
		s->n_applied++;
	}
	a->cfg_slot = a->pending_slot;
	a->pending_slot = -1;
}

static void on_heartbeat(uv_timer_t *t)
{
	struct agent *a = agent_of((uv_handle_t *)t);

	if (a->state != A_OPEN || !a->ready)
		return;
	if (a->pending_slot >= 0) {
		/* The apply delay is over. */
		record_applied(a);
		send_one(a, MSG_APPLIED);
		return;
	}
	send_one(a, a->want_full ? MSG_FULL : MSG_HEARTBEAT);
}

/* Config slot i arrived: APPLYING, then APPLIED (at once, or after --apply-ms). */
static void take_slot(struct agent *a, int i, int64_t t_us)
{
	struct hash_slot *s;

	G.configs_received++;
	if (i < 0 || i == a->cfg_slot || i == a->pending_slot)
		return;
	s = &G.slots[i];
	if (s->recv_us[a->idx] == 0) {
		s->recv_us[a->idx] = t_us;
		s->n_recv++;
	}
	a->pending_slot = (int16_t)i;
	if (!opt.url[0].ws) {
		send_one(a, MSG_APPLYING);
		return; /* APPLIED follows in the next POST (http_next) */
	}
	if (opt.apply_ms > 0) {
		send_one(a, MSG_APPLYING);
		uv_timer_start(&a->timer, on_heartbeat, opt.apply_ms, 0);
		return;
	}
	/* Both reports in one write: one syscall, as a collector's status queue would. */
	size_t len = 0;
	build_tail(a, s->tail_applying, s->n_tail_applying, &len);
	record_applied(a);
	build_tail(a, s->tail_applied, s->n_tail_applied, &len);
	arm_heartbeat(a);
	flush(a, len);
}

static void take_config(struct agent *a, const Opamp__Proto__V1__AgentRemoteConfig *rc,
			int64_t t_us)
{
	take_slot(a, slot_get(rc), t_us);
}

static int get_varint(const uint8_t *p, size_t n, size_t *off, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *off < n; shift += 7) {
		uint8_t b = p[(*off)++];

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

/*
 * The config slot of a ServerToAgent that is a plain push of a config already seen
 * (instance_uid, capabilities, remote_config, signature and nothing else), read without
 * unpacking it: a fan-out sends the same few KiB to every agent, and the load generator
 * must take them in faster than the server sends them. -1: anything else (unpack it).
 */
static int scan_push(const uint8_t *p, size_t n)
{
	const uint8_t *rc = NULL, *hash = NULL;
	size_t off = 0, rcn = 0, hn = 0;
	uint64_t key, v;

	while (off < n) {
		if (get_varint(p, n, &off, &key) != 0)
			return -1;
		if ((key & 7) == 0) {
			if (get_varint(p, n, &off, &v) != 0 || (key >> 3 != 7 && key >> 3 != 6) ||
			    (key >> 3 == 6 && v != 0))
				return -1;
		} else if ((key & 7) == 2) {
			if (get_varint(p, n, &off, &v) != 0 || v > n - off)
				return -1;
			if (key >> 3 == 3) {
				rc = p + off;
				rcn = (size_t)v;
			} else if (key >> 3 != 1 && key >> 3 != 11) {
				return -1;
			}
			off += (size_t)v;
		} else {
			return -1;
		}
	}
	for (off = 0; rc != NULL && off < rcn;) {
		if (get_varint(rc, rcn, &off, &key) != 0 || (key & 7) != 2 ||
		    get_varint(rc, rcn, &off, &v) != 0 || v > rcn - off)
			return -1;
		if (key >> 3 == 2) {
			hash = rc + off;
			hn = (size_t)v;
		}
		off += (size_t)v;
	}
	if (hash == NULL || hn == 0 || hn > 32)
		return -1;
	return slot_find(hash, hn);
}

/* First reply on a connection: the agent counts as connected. */
static void mark_ready(struct agent *a)
{
	int64_t now = mono_us();

	a->ready = 1;
	a->backoff_ms = opt.backoff_initial_ms;
	G.ready_now++;
	G.last_ready_us = wall_us();
	if (a->was_ready) {
		G.reconnects++;
	} else {
		a->was_ready = 1;
		G.ever_ready++;
		if (G.n_connect_lat < opt.agents)
			G.connect_lat_us[G.n_connect_lat++] = (uint32_t)(now - a->conn_start_us);
		if (G.ever_ready == opt.agents)
			G.all_ready_us = G.last_ready_us;
	}
}

static void on_s2a(struct agent *a, const uint8_t *p, size_t n, int64_t t_us)
{
	s2a_t *m;
	bool reply_sent = false;
	uint64_t before = G.msgs_sent;
	int fast;

	if (a->ready && opt.url[0].ws && opt.flood == NULL && (fast = scan_push(p, n)) >= 0) {
		G.msgs_recv++;
		take_slot(a, fast, t_us);
		return;
	}
	m = opamp__proto__v1__server_to_agent__unpack(NULL, n, p);
	if (m == NULL) {
		G.protocol_errors++;
		agent_drop(a, 0);
		return;
	}
	G.msgs_recv++;
	if (m->error_response != NULL) {
		if (m->error_response->type == ERR_UNAVAILABLE) {
			uint32_t ms = DEFAULT_RETRY_MS;

			G.unavailable++;
			if (m->error_response->details_case ==
				OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS_RETRY_INFO &&
			    m->error_response->retry_info != NULL)
				ms = (uint32_t)(m->error_response->retry_info
						    ->retry_after_nanoseconds /
						1000000u);
			opamp__proto__v1__server_to_agent__free_unpacked(m, NULL);
			agent_drop(a, ms ? ms : 1);
			return;
		}
		G.protocol_errors++;
	}
	if (!a->ready)
		mark_ready(a);
	if (m->agent_identification != NULL && m->agent_identification->new_instance_uid.len == 16)
		memcpy(a->uid, m->agent_identification->new_instance_uid.data, 16);
	if (m->flags & FLAG_REPORT_FULL)
		a->want_full = 1;
	if (m->connection_settings != NULL && m->connection_settings->opamp != NULL &&
	    m->connection_settings->opamp->heartbeat_interval_seconds > 0) {
		uint64_t s = m->connection_settings->opamp->heartbeat_interval_seconds;

		a->hb_ms = (uint32_t)(s > 86400 ? 86400000 : s * 1000);
		arm_heartbeat(a);
	}
	if (m->remote_config != NULL && m->remote_config->config_hash.len > 0)
		take_config(a, m->remote_config, t_us);
	reply_sent = G.msgs_sent != before;
	opamp__proto__v1__server_to_agent__free_unpacked(m, NULL);
	if (a->state != A_OPEN || reply_sent)
		return;
	if (a->want_full)
		send_one(a, MSG_FULL);
	else if (opt.flood != NULL)
		send_one(a, strcmp(opt.flood, "status") == 0 ? MSG_STATUS : MSG_HEARTBEAT);
}

/* ------------------------------------------------------------- connections */

static void agent_connect(struct agent *a);

static void on_backoff(uv_timer_t *t)
{
	struct agent *a = agent_of((uv_handle_t *)t);

	if (!G.stopping && a->state == A_WAITING)
		agent_connect(a);
}

static void on_tcp_closed(uv_handle_t *h)
{
	struct agent *a = agent_of(h);
	uint32_t delay;

	free(a->in);
	a->in = NULL;
	a->in_len = a->in_cap = 0;
	free(a->frag);
	a->frag = NULL;
	a->frag_len = 0;
	SSL_free(a->ssl);
	a->ssl = NULL;
	if (G.stopping) {
		a->state = A_STOPPED;
		return;
	}
	a->state = A_WAITING;
	if (a->retry_ms > 0) {
		/* The server said when: come back then, spread by up to 10 %. */
		delay = a->retry_ms + (uint32_t)(rng_unit() * a->retry_ms * 0.1);
		a->retry_ms = 0;
	} else {
		/* opamp-go's backoff: 500 ms, ×1.5, ±50 % randomisation. */
		delay = (uint32_t)(a->backoff_ms * (0.5 + rng_unit()));
		a->backoff_ms = (uint32_t)fmin(a->backoff_ms * 1.5, opt.backoff_max_ms);
	}
	uv_timer_start(&a->timer, on_backoff, delay, 0);
}

/* Close this connection and come back later (retry_ms from the server, else backoff). */
static void agent_drop(struct agent *a, uint32_t retry_ms)
{
	if (a->state == A_CLOSING || a->state == A_WAITING || a->state == A_STOPPED ||
	    a->state == A_NEW)
		return;
	if (uv_is_closing((uv_handle_t *)&a->tcp))
		return;
	if (a->state == A_CONNECTING)
		G.connecting--;
	if (a->ready) {
		G.ready_now--;
		G.disconnects++;
		a->ready = 0;
	}
	if (a->pending_slot >= 0)
		a->pending_slot = -1; /* the server resends it on the next connection */
	a->retry_ms = retry_ms;
	a->state = A_CLOSING;
	uv_timer_stop(&a->timer);
	uv_close((uv_handle_t *)&a->tcp, on_tcp_closed);
}

static int header_value(const char *head, size_t n, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	for (const char *p = head; p + nl + 1 < head + n; p++) {
		if ((p == head || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;

			while (*v == ' ' || *v == '\t')
				v++;
			e = v;
			while (e < head + n && *e != '\r' && *e != '\n')
				e++;
			if ((size_t)(e - v) >= cap)
				return -1;
			memcpy(out, v, (size_t)(e - v));
			out[e - v] = '\0';
			return 0;
		}
	}
	return -1;
}

static char ws_key[25], ws_accept[29];

/* Every agent sends the same key: the check is that the server computes the accept right. */
static void ws_keys(void)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t raw[16], sha[20];
	char cat[64];
	unsigned len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	for (int i = 0; i < 16; i++)
		raw[i] = (uint8_t)rng();
	EVP_EncodeBlock((unsigned char *)ws_key, raw, 16);
	snprintf(cat, sizeof cat, "%s%s", ws_key, guid);
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
	    !EVP_DigestUpdate(ctx, cat, strlen(cat)) || !EVP_DigestFinal_ex(ctx, sha, &len))
		die("SHA-1 unavailable");
	EVP_MD_CTX_free(ctx);
	EVP_EncodeBlock((unsigned char *)ws_accept, sha, 20);
}

/* The 101 (or a refusal). Returns bytes consumed, 0 for "need more", -1 when dropped. */
static ssize_t parse_upgrade(struct agent *a, const uint8_t *p, size_t n)
{
	const char *head = (const char *)p;
	const uint8_t *end = NULL;
	char val[64];
	int status;

	for (size_t i = 3; i < n; i++) {
		if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') {
			end = p + i + 1;
			break;
		}
	}
	if (end == NULL) {
		if (n > MAX_HEADER) {
			G.protocol_errors++;
			agent_drop(a, 0);
			return -1;
		}
		return 0;
	}
	if (n < 12 || strncmp(head, "HTTP/1.1 ", 9) != 0) {
		G.protocol_errors++;
		agent_drop(a, 0);
		return -1;
	}
	status = atoi(head + 9);
	if (status == 503) {
		uint32_t ms = DEFAULT_RETRY_MS;

		G.http_503++;
		if (header_value(head, (size_t)(end - p), "Retry-After", val, sizeof val) == 0)
			ms = (uint32_t)strtoul(val, NULL, 10) * 1000u;
		agent_drop(a, ms ? ms : 1);
		return -1;
	}
	if (status != 101 ||
	    header_value(head, (size_t)(end - p), "Sec-WebSocket-Accept", val, sizeof val) != 0 ||
	    strcmp(val, ws_accept) != 0) {
		G.http_other++;
		agent_drop(a, 0);
		return -1;
	}
	a->state = A_OPEN;
	send_one(a, MSG_FULL);
	return end - p;
}

static void send_pong(struct agent *a, const uint8_t *payload, size_t n)
{
	uint8_t f[2 + 4 + 125];
	uint64_t r = rng();

	if (n > 125)
		return;
	f[0] = 0x8a;
	f[1] = (uint8_t)(0x80 | n);
	memcpy(f + 2, &r, 4);
	for (size_t i = 0; i < n; i++)
		f[6 + i] = payload[i] ^ f[2 + (i & 3)];
	G.bytes_sent += 6 + n;
	if (agent_write(a, f, 6 + n) != 0)
		agent_drop(a, 0);
}

static void ws_message(struct agent *a, const uint8_t *p, size_t n, int64_t t_us)
{
	/* The OpAMP header: a varint that must be 0 (one byte). */
	if (n < 1 || p[0] != 0) {
		G.protocol_errors++;
		agent_drop(a, 0);
		return;
	}
	on_s2a(a, p + 1, n - 1, t_us);
}

/* WebSocket frames. Returns bytes consumed, or -1 when the agent was dropped. */
static ssize_t parse_frames(struct agent *a, const uint8_t *p, size_t n, int64_t t_us)
{
	size_t off = 0;

	while (a->state == A_OPEN && n - off >= 2) {
		const uint8_t *f = p + off;
		int fin = f[0] & 0x80, op = f[0] & 0x0f;
		uint64_t len = f[1] & 0x7f;
		size_t hl = 2;

		if (f[1] & 0x80) { /* servers never mask */
			G.protocol_errors++;
			agent_drop(a, 0);
			return -1;
		}
		if (len == 126) {
			if (n - off < 4)
				break;
			len = (uint64_t)f[2] << 8 | f[3];
			hl = 4;
		} else if (len == 127) {
			if (n - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | f[2 + i];
			hl = 10;
		}
		if (len > MAX_MSG || (uint64_t)a->frag_len + len > MAX_MSG) {
			G.protocol_errors++;
			agent_drop(a, 0);
			return -1;
		}
		if (n - off - hl < len)
			break;
		const uint8_t *pl = f + hl;
		off += hl + (size_t)len;
		switch (op) {
		case 0x0: /* continuation */
		case 0x2: /* binary */
			if (op == 0x2 && a->frag != NULL) {
				G.protocol_errors++;
				agent_drop(a, 0);
				return -1;
			}
			if (fin && a->frag == NULL) {
				ws_message(a, pl, (size_t)len, t_us);
				break;
			}
			a->frag = xrealloc(a->frag, a->frag_len + (size_t)len);
			memcpy(a->frag + a->frag_len, pl, (size_t)len);
			a->frag_len += (uint32_t)len;
			if (fin) {
				uint8_t *msg = a->frag;
				uint32_t ml = a->frag_len;

				a->frag = NULL;
				a->frag_len = 0;
				ws_message(a, msg, ml, t_us);
				free(msg);
			}
			break;
		case 0x8: /* close */
			G.ws_closes++;
			agent_drop(a, 0);
			return -1;
		case 0x9:
			send_pong(a, pl, (size_t)len);
			break;
		case 0xa:
			break;
		default:
			G.protocol_errors++;
			agent_drop(a, 0);
			return -1;
		}
	}
	return a->state == A_OPEN ? (ssize_t)off : -1;
}

/* ----------------------------------------------------------- HTTP transport */

static int on_hfield(http_parser *hp, const char *p, size_t n)
{
	struct agent *a = hp->data;

	if (a->hdr_match == 2) { /* a value was being read: a new field starts */
		a->hname_len = 0;
		a->hdr_match = 0;
	}
	if (a->hname_len + n < sizeof a->hname) {
		memcpy(a->hname + a->hname_len, p, n);
		a->hname_len = (uint8_t)(a->hname_len + n);
	} else {
		a->hname_len = sizeof a->hname; /* too long to be Retry-After */
	}
	return 0;
}

static int on_hvalue(http_parser *hp, const char *p, size_t n)
{
	struct agent *a = hp->data;

	if (a->hdr_match != 2) {
		a->hdr_match = 2;
		if (a->hname_len == 11 && strncasecmp(a->hname, "Retry-After", 11) == 0)
			a->http_retry_after_s = 0;
		else
			a->hname_len = 0xff; /* not interesting */
	}
	if (a->hname_len == 11)
		for (size_t i = 0; i < n; i++)
			if (p[i] >= '0' && p[i] <= '9' && a->http_retry_after_s < 100000)
				a->http_retry_after_s =
				    a->http_retry_after_s * 10 + (uint32_t)(p[i] - '0');
	return 0;
}

static int on_hheaders_done(http_parser *hp)
{
	struct agent *a = hp->data;

	a->hname_len = 0;
	a->hdr_match = 0;
	return 0;
}

static int on_hbody(http_parser *hp, const char *p, size_t n)
{
	struct agent *a = hp->data;

	if ((uint64_t)a->in_len + n > MAX_MSG)
		return 1;
	if (a->in_len + n > a->in_cap) {
		a->in_cap = (uint32_t)((a->in_len + n) * 2);
		a->in = xrealloc(a->in, a->in_cap);
	}
	memcpy(a->in + a->in_len, p, n);
	a->in_len += (uint32_t)n;
	return 0;
}

static int on_hcomplete(http_parser *hp)
{
	struct agent *a = hp->data;

	a->http_done = 1;
	http_parser_pause(hp, 1); /* handle one response at a time */
	return 0;
}

static void http_response(struct agent *a, int64_t t_us)
{
	unsigned status = a->hp.status_code;
	int keep = http_should_keep_alive(&a->hp);

	a->http_busy = 0;
	if (status == 503) {
		G.http_503++;
		/* The body may say when, as RetryInfo; else Retry-After; else 30 s. */
		s2a_t *m = opamp__proto__v1__server_to_agent__unpack(NULL, a->in_len, a->in);
		uint32_t ms =
		    a->http_retry_after_s ? a->http_retry_after_s * 1000u : DEFAULT_RETRY_MS;

		if (m != NULL && m->error_response != NULL &&
		    m->error_response->details_case ==
			OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS_RETRY_INFO &&
		    m->error_response->retry_info != NULL) {
			G.unavailable++;
			ms = (uint32_t)(m->error_response->retry_info->retry_after_nanoseconds /
					1000000u);
		}
		if (m != NULL)
			opamp__proto__v1__server_to_agent__free_unpacked(m, NULL);
		agent_drop(a, ms ? ms : 1);
		return;
	}
	if (status != 200) {
		G.http_other++;
		agent_drop(a, 0);
		return;
	}
	on_s2a(a, a->in, a->in_len, t_us);
	a->in_len = 0;
	a->http_retry_after_s = 0;
	if (a->state != A_OPEN)
		return;
	if (!keep) {
		agent_drop(a, 1);
		return;
	}
	if (a->http_next == REP_APPLYING) {
		a->http_next = REP_NONE;
		send_one(a, MSG_APPLYING);
	} else if (a->http_next == REP_APPLIED || (a->pending_slot >= 0 && !a->http_busy)) {
		a->http_next = REP_NONE;
		if (a->pending_slot >= 0)
			record_applied(a);
		send_one(a, MSG_APPLIED);
	}
}

static void parse_http(struct agent *a, const uint8_t *p, size_t n, int64_t t_us)
{
	size_t off = 0;

	while (a->state == A_OPEN && off < n) {
		size_t used = http_parser_execute(&a->hp, &G.hps, (const char *)p + off, n - off);
		enum http_errno e = HTTP_PARSER_ERRNO(&a->hp);

		off += used;
		if (a->http_done) {
			a->http_done = 0;
			http_parser_pause(&a->hp, 0);
			http_response(a, t_us);
			continue;
		}
		if (e != HPE_OK) {
			G.protocol_errors++;
			agent_drop(a, 0);
			return;
		}
		if (used == 0)
			break;
	}
}

/* ----------------------------------------------------------------- reading */

/* Bytes from the server (plaintext: as read, or as decrypted), nread > 0 of them at data. */
static void agent_bytes(struct agent *a, const uint8_t *data, size_t nread, int64_t t_us)
{
	const uint8_t *p;
	size_t n;
	ssize_t used = 0;

	if (a->state == A_OPEN && !opt.url[0].ws) {
		parse_http(a, data, nread, t_us);
		return;
	}
	/* WebSocket: parse straight from the shared buffer unless a partial frame waits. */
	if (a->in_len > 0) {
		if ((uint64_t)a->in_len + (uint64_t)nread > MAX_MSG + WS_HDR_MAX + MAX_HEADER) {
			G.protocol_errors++;
			agent_drop(a, 0);
			return;
		}
		if (a->in_len + nread > a->in_cap) {
			a->in_cap = (uint32_t)((a->in_len + nread) * 2);
			a->in = xrealloc(a->in, a->in_cap);
		}
		memcpy(a->in + a->in_len, data, nread);
		a->in_len += (uint32_t)nread;
		p = a->in;
		n = a->in_len;
	} else {
		p = data;
		n = nread;
	}
	if (a->state == A_UPGRADING) {
		used = parse_upgrade(a, p, n);
		if (used <= 0) {
			if (used == 0 && p != a->in)
				goto keep_rest;
			return;
		}
		p += used;
		n -= (size_t)used;
	}
	used = parse_frames(a, p, n, t_us);
	if (used < 0)
		return;
	p += used;
	n -= (size_t)used;
keep_rest:
	if (n == 0) {
		a->in_len = 0;
		if (a->in_cap > 64 * 1024) { /* do not keep a big message's buffer around */
			free(a->in);
			a->in = NULL;
			a->in_cap = 0;
		}
		return;
	}
	if (p >= a->in && a->in != NULL && p < a->in + a->in_cap) {
		memmove(a->in, p, n);
	} else {
		if (n > a->in_cap) {
			a->in_cap = (uint32_t)(n < 4096 ? 4096 : n * 2);
			free(a->in);
			a->in = xmalloc(a->in_cap);
		}
		memcpy(a->in, p, n);
	}
	a->in_len = (uint32_t)n;
}

/* The connection (and TLS, if any) is up: upgrade to WebSocket, or send the first POST. */
static void transport_open(struct agent *a)
{
	char head[512];
	int n;

	if (!opt.url[0].ws) {
		a->state = A_OPEN;
		http_parser_init(&a->hp, HTTP_RESPONSE);
		a->hp.data = a;
		a->http_busy = 0;
		a->http_next = REP_NONE;
		send_one(a, MSG_FULL);
		return;
	}
	a->state = A_UPGRADING;
	n = snprintf(head, sizeof head,
		     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
		     "User-Agent: opampd-loadgen\r\n\r\n",
		     opt.url[0].path, opt.url[0].hostport, ws_key);
	G.bytes_sent += (uint64_t)n;
	if (agent_write(a, (const uint8_t *)head, (size_t)n) != 0)
		agent_drop(a, 0);
}

/* Run the handshake as far as the bytes in allow; once done, open the transport. */
static void tls_step(struct agent *a)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(a->ssl);
	if (r != 1 && SSL_get_error(a->ssl, r) != SSL_ERROR_WANT_READ) {
		tls_fail(a, "handshake");
		(void)tls_flush(a); /* the alert, if the socket takes it */
		agent_drop(a, 0);
		return;
	}
	if (tls_flush(a) != 0) {
		agent_drop(a, 0);
		return;
	}
	if (r == 1) {
		G.tls_handshakes++;
		transport_open(a);
	}
}

/* A fresh memory BIO: reading it empty means "retry later", not end of file. */
static BIO *mem_bio(void)
{
	BIO *b = BIO_new(BIO_s_mem());

	if (b == NULL)
		die("out of memory");
	BIO_set_mem_eof_return(b, -1);
	return b;
}

/* TCP is up on a wss:// or https:// URL: the TLS state is made now, freed with the socket. */
static void tls_start(struct agent *a)
{
	a->ssl = SSL_new(tls_ctx);
	if (a->ssl == NULL)
		die("SSL_new failed");
	SSL_set_bio(a->ssl, mem_bio(), mem_bio()); /* the SSL owns both */
	SSL_set_connect_state(a->ssl);
	a->state = A_TLS;
	tls_step(a); /* the ClientHello */
}

/*
 * Ciphertext in: finish the handshake, then decrypt everything there is and hand it to
 * agent_bytes. SSL_read only consumes what was pushed, so the loop ends.
 */
static void tls_read(struct agent *a, const uint8_t *p, size_t n, int64_t t_us)
{
	int got;

	if (n > INT_MAX || BIO_write(SSL_get_rbio(a->ssl), p, (int)n) != (int)n)
		die("out of memory");
	if (a->state == A_TLS) {
		tls_step(a);
		if (a->state != A_OPEN && a->state != A_UPGRADING)
			return;
	}
	for (;;) {
		ERR_clear_error();
		got = SSL_read(a->ssl, tls_plain, (int)sizeof tls_plain);
		if (got <= 0) {
			int e = SSL_get_error(a->ssl, got);

			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e != SSL_ERROR_ZERO_RETURN) /* not a close_notify */
				tls_fail(a, "read");
			agent_drop(a, 0);
			return;
		}
		agent_bytes(a, tls_plain, (size_t)got, t_us);
		if (a->state != A_OPEN && a->state != A_UPGRADING)
			return;
	}
	if (tls_flush(a) != 0) /* anything reading produced (a key update's answer) */
		agent_drop(a, 0);
}

static void on_agent_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct agent *a = agent_of((uv_handle_t *)s);
	int64_t t_us = wall_us(); /* when the bytes were picked up, before any processing */

	if (nread < 0) {
		agent_drop(a, 0);
		return;
	}
	if (nread == 0)
		return;
	G.bytes_recv += (uint64_t)nread;
	if (a->ssl != NULL)
		tls_read(a, (const uint8_t *)buf->base, (size_t)nread, t_us);
	else
		agent_bytes(a, (const uint8_t *)buf->base, (size_t)nread, t_us);
}

static void on_agent_connected(uv_connect_t *req, int status)
{
	struct agent *a = req->data;

	if (a->state != A_CONNECTING || G.stopping || uv_is_closing((uv_handle_t *)&a->tcp))
		return; /* closed meanwhile (stopping) */
	G.connecting--;
	if (status < 0) {
		G.connect_failed++;
		a->state = A_OPEN; /* so that drop closes it */
		agent_drop(a, 0);
		return;
	}
	uv_tcp_nodelay(&a->tcp, 1);
	if (uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_agent_read) != 0) {
		a->state = A_OPEN;
		agent_drop(a, 0);
		return;
	}
	if (opt.url[0].tls)
		tls_start(a);
	else
		transport_open(a);
}

/* 127.<base>.x.y for agent idx: spreads connections over src_addrs source addresses. */
static void source_addr(uint32_t idx, struct sockaddr_in *sa)
{
	uint32_t k = idx % opt.src_addrs;

	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr =
	    htonl((127u << 24) | ((opt.src_base & 0xff) << 16) | ((k / 250) << 8) | (k % 250 + 1));
}

static void agent_connect(struct agent *a)
{
	struct sockaddr_in src;
	uv_os_fd_t fd;
	int one = 1, rc;

	if (uv_tcp_init_ex(G.loop, &a->tcp, AF_INET) != 0)
		die("uv_tcp_init_ex failed");
	a->tcp.data = a;
	a->state = A_CONNECTING;
	a->ready = 0;
	a->seq = 0;
	a->want_full = 0;
	a->pending_slot = -1;
	a->in_len = 0;
	a->conn_start_us = mono_us();
	G.connecting++;
	/* Let the kernel pick the port at connect time: the 4-tuple, not the port, must be
	 * unique, so one source address is not limited to one connection per port. */
	if (uv_fileno((uv_handle_t *)&a->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	source_addr(a->idx, &src);
	rc = uv_tcp_bind(&a->tcp, (const struct sockaddr *)&src, 0);
	if (rc == 0) {
		a->creq.data = a;
		rc = uv_tcp_connect(&a->creq, &a->tcp, (const struct sockaddr *)&opt.url[0].addr,
				    on_agent_connected);
	}
	if (rc != 0) {
		G.connect_failed++;
		G.connecting--;
		a->state = A_OPEN;
		agent_drop(a, 0);
	}
}

/* ----------------------------------------------------------- ramp, status, stop */

static void on_ramp(uv_timer_t *t)
{
	double elapsed = (double)(mono_us() - G.t0_us) / 1e6;
	uint64_t want = (uint64_t)(elapsed * opt.rate) + 1;

	(void)t;
	if (want > opt.agents)
		want = opt.agents;
	while (G.started < want && G.connecting < opt.max_connecting) {
		struct agent *a = &G.agents[G.started++];

		if (G.first_start_us == 0)
			G.first_start_us = wall_us();
		agent_connect(a);
	}
	if (G.started == opt.agents)
		uv_timer_stop(&G.ramp);
}

static void agents_status(struct out *o)
{
	int64_t now = mono_us();

	if (G.last_rate_us != 0 && now > G.last_rate_us)
		G.recv_rate =
		    (double)(G.msgs_recv - G.last_rate_msgs) * 1e6 / (double)(now - G.last_rate_us);
	G.last_rate_us = now;
	G.last_rate_msgs = G.msgs_recv;
	out_printf(
	    o,
	    "{\"now_us\": %" PRId64 ", \"agents\": %" PRIu32 ", \"started\": %" PRIu32
	    ", \"connecting\": %" PRIu32 ", \"ready\": %" PRIu32 ", \"ever_ready\": %" PRIu64
	    ", \"reconnects\": %" PRIu64 ", \"disconnects\": %" PRIu64
	    ", \"connect_failed\": %" PRIu64 ", \"unavailable\": %" PRIu64
	    ", \"http_503\": %" PRIu64 ", \"http_other\": %" PRIu64 ", \"ws_closes\": %" PRIu64
	    ", \"protocol_errors\": %" PRIu64 ", \"msgs_sent\": %" PRIu64
	    ", \"msgs_recv\": %" PRIu64 ", \"recv_per_s\": %.1f, \"last_ready_us\": %" PRId64,
	    wall_us(), opt.agents, G.started, G.connecting, G.ready_now, G.ever_ready, G.reconnects,
	    G.disconnects, G.connect_failed, G.unavailable, G.http_503, G.http_other, G.ws_closes,
	    G.protocol_errors, G.msgs_sent, G.msgs_recv, G.recv_rate, G.last_ready_us);
	if (opt.url[0].tls)
		out_printf(o, ", \"tls_handshakes\": %" PRIu64 ", \"tls_failed\": %" PRIu64,
			   G.tls_handshakes, G.tls_failed);
	out_printf(o, ", \"hashes\": [");
	for (int i = 0; i < G.n_slots; i++) {
		char h[65];

		hex(G.slots[i].hash, G.slots[i].len, h);
		out_printf(
		    o, "%s{\"hash\": \"%s\", \"received\": %" PRIu32 ", \"applied\": %" PRIu32 "}",
		    i ? ", " : "", h, G.slots[i].n_recv, G.slots[i].n_applied);
	}
	out_printf(o, "]}");
}

static void on_status(uv_timer_t *t)
{
	struct out o;

	(void)t;
	out_init(&o);
	agents_status(&o);
	out_printf(&o, "\n");
	write_status_file(o.p);
	free(o.p);
}

/* Sorted non-zero times of one slot, as a JSON array of wall µs. */
static void out_times(struct out *o, const int64_t *v, uint32_t n_agents)
{
	int64_t *s = xmalloc(n_agents * sizeof *s);
	size_t k = 0;

	for (uint32_t i = 0; i < n_agents; i++)
		if (v[i] != 0)
			s[k++] = v[i];
	qsort(s, k, sizeof *s, cmp_i64);
	out_printf(o, "[");
	for (size_t i = 0; i < k; i++)
		out_printf(o, "%s%" PRId64, i ? "," : "", s[i]);
	out_printf(o, "]");
	free(s);
}

/* Rank-based times over the whole population: when q of all agents had it (null if never). */
static void out_slot_quantiles(struct out *o, const int64_t *v, uint32_t n_agents)
{
	static const double qs[] = {0.5, 0.9, 0.99, 1.0};
	static const char *names[] = {"p50", "p90", "p99", "p100"};
	int64_t *s = xmalloc(n_agents * sizeof *s);
	size_t k = 0;

	for (uint32_t i = 0; i < n_agents; i++)
		if (v[i] != 0)
			s[k++] = v[i];
	qsort(s, k, sizeof *s, cmp_i64);
	out_printf(o, "{\"first_us\": ");
	if (k)
		out_printf(o, "%" PRId64, s[0]);
	else
		out_printf(o, "null");
	for (int i = 0; i < 4; i++) {
		size_t r = rank(n_agents, qs[i]);

		if (r < k)
			out_printf(o, ", \"%s_us\": %" PRId64, names[i], s[r]);
		else
			out_printf(o, ", \"%s_us\": null", names[i]);
	}
	out_printf(o, "}");
	free(s);
}

static void agents_results(void)
{
	struct out o;
	int64_t end = wall_us();

	out_init(&o);
	qsort(G.connect_lat_us, G.n_connect_lat, sizeof *G.connect_lat_us, cmp_u32);
	out_printf(&o, "{\"mode\": \"agents\", \"transport\": \"%s\", \"flood\": %s%s%s, ",
		   opt.url[0].ws ? "websocket" : "http", opt.flood ? "\"" : "",
		   opt.flood ? opt.flood : "null", opt.flood ? "\"" : "");
	if (opt.url[0].tls)
		out_printf(&o, "\"tls\": \"TLSv1.3\", \"tls_verify\": %s, ",
			   opt.ca != NULL ? "true" : "false");
	out_printf(&o,
		   "\"rate\": %.1f, \"src_addrs\": %" PRIu32 ", \"start_us\": %" PRId64
		   ", \"end_us\": %" PRId64 ", \"first_start_us\": %" PRId64
		   ", \"all_ready_us\": %" PRId64 ", \"ramp_ms\": ",
		   opt.rate, opt.src_addrs, G.t0_wall, end, G.first_start_us, G.all_ready_us);
	if (G.all_ready_us)
		out_printf(&o, "%.1f", (double)(G.all_ready_us - G.first_start_us) / 1e3);
	else
		out_printf(&o, "null");
	out_printf(&o, ", \"connect_ms\": ");
	out_quantiles_u32(&o, G.connect_lat_us, G.n_connect_lat);
	out_printf(&o, ", \"status\": ");
	agents_status(&o);
	out_printf(&o, ", \"configs\": [");
	for (int i = 0; i < G.n_slots; i++) {
		struct hash_slot *s = &G.slots[i];
		char h[65];

		hex(s->hash, s->len, h);
		out_printf(&o,
			   "%s{\"hash\": \"%s\", \"received\": %" PRIu32 ", \"applied\": %" PRIu32
			   ", \"received_at\": ",
			   i ? ", " : "", h, s->n_recv, s->n_applied);
		out_slot_quantiles(&o, s->recv_us, opt.agents);
		out_printf(&o, ", \"applied_at\": ");
		out_slot_quantiles(&o, s->applied_us, opt.agents);
		if (opt.raw) {
			out_printf(&o, ", \"recv_us\": ");
			out_times(&o, s->recv_us, opt.agents);
			out_printf(&o, ", \"applied_us\": ");
			out_times(&o, s->applied_us, opt.agents);
		}
		out_printf(&o, "}");
	}
	out_printf(&o, "]}\n");
	fwrite(o.p, 1, o.n, stdout);
	fflush(stdout);
	free(o.p);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, h->type == UV_TCP && h->data != NULL && opt.mode[0] == 'a'
				? on_tcp_closed
				: NULL);
}

static void writes_results(void);

static void stop(void)
{
	if (G.stopping)
		return;
	G.stopping = true;
	if (opt.mode[0] == 'a') {
		on_status(NULL);
		agents_results();
	} else {
		writes_results();
	}
	uv_walk(G.loop, close_walk, NULL);
}

static void on_stop_timer(uv_timer_t *t)
{
	(void)t;
	stop();
}

static void on_signal(uv_signal_t *s, int sig)
{
	(void)s;
	(void)sig;
	stop();
}

static void check_fd_limit(uint32_t conns)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)conns + FD_RESERVE > rl.rlim_cur)
		die("%" PRIu32 " connections need %" PRIu32 " open files; the limit is %llu: run "
		    "several loadgen processes (at most %llu agents each)",
		    conns, conns + FD_RESERVE, (unsigned long long)rl.rlim_cur,
		    (unsigned long long)(rl.rlim_cur - FD_RESERVE));
}

/* The client context every wss:// / https:// agent's connection is made from. */
static void tls_init(void)
{
	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (tls_ctx == NULL || SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) != 1)
		die("cannot make a TLS 1.3 client context");
	/* An idle connection keeps no record buffers; no session cache: every connection is a
	 * full handshake, as a fleet of separate agents (opamp-go keeps no session cache). */
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	if (opt.ca != NULL) {
		if (SSL_CTX_load_verify_locations(tls_ctx, opt.ca, NULL) != 1)
			die("--ca %s: cannot load the CA certificates", opt.ca);
		/* The certificate must name the address dialled (an IP address SAN). */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(tls_ctx), opt.url[0].host) !=
		    1)
			die("%s: not an IP address", opt.url[0].host);
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL); /* a benchmark, not an agent */
	}
	if (opt.cert != NULL) {
		const char *key = opt.key != NULL ? opt.key : opt.cert;

		if (SSL_CTX_use_certificate_chain_file(tls_ctx, opt.cert) != 1)
			die("--cert %s: cannot load the certificate chain", opt.cert);
		if (SSL_CTX_use_PrivateKey_file(tls_ctx, key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(tls_ctx) != 1)
			die("--key %s: cannot load the key, or it does not match --cert", key);
	}
}

static void run_agents(void)
{
	check_fd_limit(opt.agents);
	if (opt.url[0].tls)
		tls_init();
	build_shared();
	ws_keys();
	G.hps.on_header_field = on_hfield;
	G.hps.on_header_value = on_hvalue;
	G.hps.on_headers_complete = on_hheaders_done;
	G.hps.on_body = on_hbody;
	G.hps.on_message_complete = on_hcomplete;
	G.agents = xcalloc(opt.agents, sizeof *G.agents);
	G.connect_lat_us = xcalloc(opt.agents, sizeof *G.connect_lat_us);
	for (uint32_t i = 0; i < opt.agents; i++) {
		struct agent *a = &G.agents[i];

		a->idx = i;
		a->hb_ms = opt.heartbeat_s * 1000u;
		a->backoff_ms = opt.backoff_initial_ms;
		a->cfg_slot = -1;
		a->pending_slot = -1;
		agent_uid(i, a->uid);
		uv_timer_init(G.loop, &a->timer);
		a->timer.data = a;
	}
	G.t0_us = mono_us();
	G.t0_wall = wall_us();
	uv_timer_init(G.loop, &G.ramp);
	uv_timer_start(&G.ramp, on_ramp, 0, 5);
	uv_timer_init(G.loop, &G.status);
	uv_timer_start(&G.status, on_status, opt.status_ms, opt.status_ms);
}

/* ======================================================================== writes */

struct writer {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t timer;
	http_parser hp;
	uint32_t id;
	int url;
	int state; /* 0 idle/closed, 1 connecting, 2 open */
	bool busy, done;
	uint64_t n;
	int64_t sent_us;
};

static struct {
	struct writer *w;
	uint32_t *lat_us;
	size_t n_lat;
	uint64_t ok, failed, conn_errors;
	uint64_t by_status[600];
	int64_t start_mono, start_wall;
	int64_t *ok_at_ms10; /* raw: completion times of successes, 0.1 ms after start */
	size_t n_ok_at, cap_ok_at;
	int64_t last_ok_wall, longest_gap_us, longest_gap_from;
	char *body_tmpl;
	size_t body_len;
	http_parser_settings hps;
} W;

static void writer_connect(struct writer *w);
static void writer_send(struct writer *w);

static void on_writer_timer(uv_timer_t *t)
{
	struct writer *w = t->data;

	if (G.stopping)
		return;
	if (w->state == 0)
		writer_connect(w);
	else if (w->state == 2 && !w->busy)
		writer_send(w);
}

static void on_writer_closed(uv_handle_t *h)
{
	struct writer *w = h->data;

	w->state = 0;
	w->busy = false;
	if (!G.stopping)
		uv_timer_start(&w->timer, on_writer_timer, opt.retry_ms, 0);
}

static void writer_fail(struct writer *w)
{
	if (w->busy) {
		W.failed++;
		W.conn_errors++;
	}
	w->busy = false;
	if (!uv_is_closing((uv_handle_t *)&w->tcp)) {
		w->url = (w->url + 1) % opt.n_urls; /* try the next endpoint */
		uv_close((uv_handle_t *)&w->tcp, on_writer_closed);
	}
}

/*
 * The body of write n: opampd gets a configuration whose YAML file is exactly opt.size bytes
 * (unique content, so every write makes a version); etcd gets a put of opt.size bytes.
 */
static size_t make_body(struct writer *w, char *out, size_t cap)
{
	char stamp[64];
	int sl = snprintf(stamp, sizeof stamp, "%08" PRIu32 "-%012" PRIu64, w->id, w->n);

	/* The template holds a run of 'X' where the stamp goes, same length. */
	memcpy(out, W.body_tmpl, W.body_len);
	char *x = memmem(out, W.body_len, "XXXXXXXXXXXXXXXXXXXXX", (size_t)sl);
	if (x != NULL)
		memcpy(x, stamp, (size_t)sl);
	(void)cap;
	return W.body_len;
}

static void base64(const uint8_t *p, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

static void build_body_template(void)
{
	struct out o;
	char *value;

	out_init(&o);
	if (strcmp(opt.target, "opampd") == 0) {
		/* YAML exactly opt.size bytes: a header line with the stamp, then padding lines. */
		struct out y;

		out_init(&y);
		out_printf(&y,
			   "# write XXXXXXXXXXXXXXXXXXXXX\nreceivers:\n  otlp:\n    protocols:\n"
			   "      grpc: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n"
			   "    traces:\n      receivers: [otlp]\n      exporters: [debug]\n");
		while (y.n + 40 < opt.size)
			out_printf(&y, "# padding padding padding padding pad\n");
		while (y.n + 1 < opt.size)
			out_printf(&y, "#");
		out_printf(&y, "\n");
		out_printf(&o,
			   "{\"selector\": {\"bench.writes\": \"none\"}, \"message\": \"bench\", "
			   "\"files\": {\"collector.yaml\": {\"content_type\": \"text/yaml\", "
			   "\"body\": \"");
		for (size_t i = 0; i < y.n; i++) {
			if (y.p[i] == '\n')
				out_printf(&o, "\\n");
			else
				out_printf(&o, "%c", y.p[i]);
		}
		out_printf(&o, "\"}}}");
		free(y.p);
	} else {
		/* etcd: the JSON gateway wants key and value in base64; the value is fixed, the
		 * key (one per write) is put in front of it by writer_send. */
		uint8_t *raw = xmalloc(opt.size);

		memset(raw, 'v', opt.size);
		value = xmalloc(opt.size * 2 + 8);
		base64(raw, opt.size, value);
		out_printf(&o, "\", \"value\": \"%s\"}", value);
		free(raw);
		free(value);
	}
	W.body_tmpl = o.p;
	W.body_len = o.n;
}

static void writer_send(struct writer *w)
{
	const struct endpoint *u = &opt.url[w->url];
	size_t cap = W.body_len + 1024 + 128;
	char *req = xmalloc(cap);
	char path[600];
	int h;
	size_t bl;

	w->n++;
	if (strcmp(opt.target, "opampd") == 0) {
		char *body = req + 1024;

		/* path ≤ 255, prefix ≤ 64 (checked when parsed): fits */
		if (snprintf(path, sizeof path, "%s%s%s%" PRIu32, u->path,
			     u->path[strlen(u->path) - 1] == '/' ? "" : "/", opt.name_prefix,
			     opt.names ? w->id % opt.names : w->id) >= (int)sizeof path)
			die("path too long");
		bl = make_body(w, body, W.body_len);
		h = snprintf(req, 1024,
			     "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			     path, u->hostport, opt.token, bl);
		memmove(req + h, body, bl);
	} else {
		char key[64], kb[96];
		int kl;

		snprintf(key, sizeof key, "bench/w%04" PRIu32 "/%012" PRIu64, w->id, w->n);
		base64((const uint8_t *)key, strlen(key), kb);
		kl = snprintf(req + 1024, 128, "{\"key\": \"%s", kb);
		memcpy(req + 1024 + kl, W.body_tmpl, W.body_len);
		bl = (size_t)kl + W.body_len;
		h = snprintf(req, 1024,
			     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\n\r\n",
			     u->path, u->hostport, bl);
		memmove(req + h, req + 1024, bl);
	}
	w->busy = true;
	w->sent_us = mono_us();
	if (stream_write((uv_stream_t *)&w->tcp, (const uint8_t *)req, (size_t)h + bl) != 0)
		writer_fail(w);
	free(req);
}

static int on_w_complete(http_parser *hp)
{
	struct writer *w = hp->data;

	w->done = true;
	http_parser_pause(hp, 1);
	return 0;
}

static void writer_response(struct writer *w)
{
	int64_t now = mono_us(), lat = now - w->sent_us, wall = wall_us();
	unsigned st = w->hp.status_code;

	w->busy = false;
	if (st < 600)
		W.by_status[st]++;
	if (st >= 200 && st < 300) {
		W.ok++;
		if (W.n_lat < LAT_CAP)
			W.lat_us[W.n_lat++] = (uint32_t)(lat > UINT32_MAX ? UINT32_MAX : lat);
		if (W.last_ok_wall != 0 && wall - W.last_ok_wall > W.longest_gap_us) {
			W.longest_gap_us = wall - W.last_ok_wall;
			W.longest_gap_from = W.last_ok_wall;
		}
		W.last_ok_wall = wall;
		if (opt.raw) {
			if (W.n_ok_at == W.cap_ok_at) {
				W.cap_ok_at = W.cap_ok_at ? W.cap_ok_at * 2 : 4096;
				W.ok_at_ms10 =
				    xrealloc(W.ok_at_ms10, W.cap_ok_at * sizeof(int64_t));
			}
			W.ok_at_ms10[W.n_ok_at++] = (now - W.start_mono) / 100;
		}
		if (!http_should_keep_alive(&w->hp)) {
			writer_fail(w);
			return;
		}
		writer_send(w);
		return;
	}
	/* 503 read-only or outcome unknown, 5xx while forwarding: try again shortly. */
	W.failed++;
	if (!http_should_keep_alive(&w->hp)) {
		writer_fail(w);
		return;
	}
	uv_timer_start(&w->timer, on_writer_timer, opt.retry_ms, 0);
}

static void on_writer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct writer *w = s->data;
	size_t off = 0;

	if (nread < 0) {
		writer_fail(w);
		return;
	}
	while (off < (size_t)nread && !uv_is_closing((uv_handle_t *)&w->tcp)) {
		size_t used =
		    http_parser_execute(&w->hp, &W.hps, buf->base + off, (size_t)nread - off);

		off += used;
		if (w->done) {
			w->done = false;
			http_parser_pause(&w->hp, 0);
			writer_response(w);
			continue;
		}
		if (HTTP_PARSER_ERRNO(&w->hp) != HPE_OK || used == 0) {
			writer_fail(w);
			return;
		}
	}
}

static void on_writer_connected(uv_connect_t *req, int status)
{
	struct writer *w = req->data;

	if (G.stopping)
		return;
	if (status < 0) {
		W.conn_errors++;
		w->state = 2;
		writer_fail(w);
		return;
	}
	w->state = 2;
	uv_tcp_nodelay(&w->tcp, 1);
	http_parser_init(&w->hp, HTTP_RESPONSE);
	w->hp.data = w;
	if (uv_read_start((uv_stream_t *)&w->tcp, on_alloc, on_writer_read) != 0) {
		writer_fail(w);
		return;
	}
	writer_send(w);
}

static void writer_connect(struct writer *w)
{
	uv_tcp_init(G.loop, &w->tcp);
	w->tcp.data = w;
	w->state = 1;
	w->creq.data = w;
	if (uv_tcp_connect(&w->creq, &w->tcp, (const struct sockaddr *)&opt.url[w->url].addr,
			   on_writer_connected) != 0) {
		w->state = 2;
		writer_fail(w);
	}
}

static void writes_status(struct out *o)
{
	out_printf(o,
		   "{\"now_us\": %" PRId64 ", \"ok\": %" PRIu64 ", \"failed\": %" PRIu64
		   ", \"conn_errors\": %" PRIu64 ", \"last_ok_us\": %" PRId64 "}",
		   wall_us(), W.ok, W.failed, W.conn_errors, W.last_ok_wall);
}

static void on_writes_status(uv_timer_t *t)
{
	struct out o;

	(void)t;
	out_init(&o);
	writes_status(&o);
	out_printf(&o, "\n");
	write_status_file(o.p);
	free(o.p);
}

static void writes_results(void)
{
	struct out o;
	double secs = (double)(mono_us() - W.start_mono) / 1e6;

	out_init(&o);
	qsort(W.lat_us, W.n_lat, sizeof *W.lat_us, cmp_u32);
	out_printf(&o,
		   "{\"mode\": \"writes\", \"target\": \"%s\", \"concurrency\": %" PRIu32
		   ", \"size\": %" PRIu32 ", \"seconds\": %.3f, \"start_us\": %" PRId64
		   ", \"ok\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"conn_errors\": %" PRIu64
		   ", \"writes_per_s\": %.1f, \"latency_ms\": ",
		   opt.target, opt.concurrency, opt.size, secs, W.start_wall, W.ok, W.failed,
		   W.conn_errors, secs > 0 ? (double)W.ok / secs : 0.0);
	out_quantiles_u32(&o, W.lat_us, W.n_lat);
	out_printf(&o, ", \"status\": {");
	for (int i = 0, first = 1; i < 600; i++) {
		if (W.by_status[i] == 0)
			continue;
		out_printf(&o, "%s\"%d\": %" PRIu64, first ? "" : ", ", i, W.by_status[i]);
		first = 0;
	}
	out_printf(&o, "}, \"longest_gap_ms\": %.1f, \"longest_gap_from_us\": %" PRId64,
		   (double)W.longest_gap_us / 1e3, W.longest_gap_from);
	if (opt.raw) {
		out_printf(&o, ", \"ok_at_ms\": [");
		for (size_t i = 0; i < W.n_ok_at; i++)
			out_printf(&o, "%s%.1f", i ? "," : "", (double)W.ok_at_ms10[i] / 10.0);
		out_printf(&o, "]");
	}
	out_printf(&o, "}\n");
	fwrite(o.p, 1, o.n, stdout);
	fflush(stdout);
	free(o.p);
}

static void run_writes(void)
{
	check_fd_limit(opt.concurrency);
	build_body_template();
	W.hps.on_message_complete = on_w_complete;
	W.lat_us = xmalloc(LAT_CAP * sizeof *W.lat_us);
	W.w = xcalloc(opt.concurrency, sizeof *W.w);
	W.start_mono = mono_us();
	W.start_wall = wall_us();
	for (uint32_t i = 0; i < opt.concurrency; i++) {
		struct writer *w = &W.w[i];

		w->id = i;
		w->url = (int)(i % (uint32_t)opt.n_urls);
		uv_timer_init(G.loop, &w->timer);
		w->timer.data = w;
		writer_connect(w);
	}
	uv_timer_init(G.loop, &G.status);
	uv_timer_start(&G.status, on_writes_status, opt.status_ms, opt.status_ms);
}

/* ======================================================================== main */

static void usage(void)
{
	fputs(
	    "usage: loadgen agents --url ws[s]://IP:PORT/v1/opamp|http[s]://IP:PORT/v1/opamp\n"
	    "                      [options]\n"
	    "       loadgen writes --url http://IP:PORT/api/v1/configs[,URL...] [options]\n"
	    "\n"
	    "agents options:\n"
	    "  --agents N            simulated agents (default 100; one process holds at most\n"
	    "                        the open-files limit minus 64)\n"
	    "  --rate R              new connections per second while ramping (default 1000)\n"
	    "  --max-connecting M    connection attempts in flight (default 512)\n"
	    "  --src-addrs K         source addresses 127.B.x.y used in turn (default 64)\n"
	    "  --src-base B          second octet of the source addresses (default 1)\n"
	    "  --heartbeat S         heartbeat interval until the server offers one (default 30)\n"
	    "  --apply-ms MS         time to apply a config between APPLYING and APPLIED (0)\n"
	    "  --backoff-max-ms MS   reconnect backoff cap (default 30000)\n"
	    "  --fleet NAME          value of the bench.fleet attribute (default bench)\n"
	    "  --uid-seed N          agents' instance_uids derive from it (default 1)\n"
	    "  --flood heartbeat|status  send the next message as soon as one is answered\n"
	    "  --raw                 include every agent's receipt times in the results\n"
	    "  --ca FILE             wss://, https://: verify the server certificate against\n"
	    "                        these CAs and the URL's IP (default: no verification)\n"
	    "  --cert FILE           wss://, https://: present this client certificate chain\n"
	    "  --key FILE            its private key (default: in --cert)\n"
	    "writes options:\n"
	    "  --target opampd|etcd  admin API config versions or etcd v3 gateway puts\n"
	    "  --token T             admin bearer token (opampd)\n"
	    "  --concurrency C       connections, one write in flight each (default 1)\n"
	    "  --size BYTES          payload (default 4096)\n"
	    "  --retry-ms MS         pause after a failed write (default 20)\n"
	    "  --name-prefix P       configuration names P0, P1, ... (default bench-w)\n"
	    "  --names K             spread the writes over K names (default: one per writer)\n"
	    "  --raw                 include each success's completion time\n"
	    "both:\n"
	    "  --duration S          stop after S seconds (default 60)\n"
	    "  --status-file PATH    progress as JSON, rewritten every --status-ms (200)\n",
	    stderr);
	exit(2);
}

static uint32_t num(const char *name, const char *v, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || x < min || x > max)
		die("--%s: expected an integer in [%llu, %llu]", name, (unsigned long long)min,
		    (unsigned long long)max);
	return (uint32_t)x;
}

static void parse_args(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "agents") != 0 && strcmp(argv[1], "writes") != 0))
		usage();
	opt.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *n = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strncmp(n, "--", 2) != 0)
			usage();
		n += 2;
		if (strcmp(n, "raw") == 0) {
			opt.raw = true;
			continue;
		}
		if (v == NULL)
			die("--%s needs a value", n);
		i++;
		if (strcmp(n, "url") == 0) {
			char *copy = strdup(v), *save = NULL;

			for (char *t = strtok_r(copy, ",", &save); t;
			     t = strtok_r(NULL, ",", &save)) {
				if (opt.n_urls == MAX_URLS)
					die("at most %d URLs", MAX_URLS);
				parse_url(t, &opt.url[opt.n_urls++]);
			}
			free(copy);
		} else if (strcmp(n, "agents") == 0)
			opt.agents = num(n, v, 1, 1000000);
		else if (strcmp(n, "rate") == 0) {
			opt.rate = strtod(v, NULL);
			if (!(opt.rate > 0))
				die("--rate must be positive");
		} else if (strcmp(n, "max-connecting") == 0)
			opt.max_connecting = num(n, v, 1, 100000);
		else if (strcmp(n, "src-addrs") == 0)
			opt.src_addrs = num(n, v, 1, 250 * 256);
		else if (strcmp(n, "src-base") == 0)
			opt.src_base = num(n, v, 1, 255);
		else if (strcmp(n, "heartbeat") == 0)
			opt.heartbeat_s = num(n, v, 1, 86400);
		else if (strcmp(n, "apply-ms") == 0)
			opt.apply_ms = num(n, v, 0, 600000);
		else if (strcmp(n, "backoff-max-ms") == 0)
			opt.backoff_max_ms = num(n, v, 1, 3600000);
		else if (strcmp(n, "fleet") == 0)
			opt.fleet = v;
		else if (strcmp(n, "ca") == 0)
			opt.ca = v;
		else if (strcmp(n, "cert") == 0)
			opt.cert = v;
		else if (strcmp(n, "key") == 0)
			opt.key = v;
		else if (strcmp(n, "uid-seed") == 0)
			opt.uid_seed = num(n, v, 0, UINT32_MAX);
		else if (strcmp(n, "flood") == 0) {
			if (strcmp(v, "heartbeat") != 0 && strcmp(v, "status") != 0)
				die("--flood heartbeat or status");
			opt.flood = v;
		} else if (strcmp(n, "target") == 0) {
			if (strcmp(v, "opampd") != 0 && strcmp(v, "etcd") != 0)
				die("--target opampd or etcd");
			opt.target = v;
		} else if (strcmp(n, "token") == 0) {
			if (strlen(v) > 256)
				die("--token: at most 256 characters");
			opt.token = v;
		} else if (strcmp(n, "concurrency") == 0)
			opt.concurrency = num(n, v, 1, 10000);
		else if (strcmp(n, "size") == 0)
			opt.size = num(n, v, 256, 1 << 20);
		else if (strcmp(n, "retry-ms") == 0)
			opt.retry_ms = num(n, v, 0, 60000);
		else if (strcmp(n, "name-prefix") == 0) {
			if (strlen(v) > 64)
				die("--name-prefix: at most 64 characters");
			opt.name_prefix = v;
		} else if (strcmp(n, "names") == 0)
			opt.names = num(n, v, 0, 1000000);
		else if (strcmp(n, "duration") == 0) {
			opt.duration_s = strtod(v, NULL);
			if (!(opt.duration_s > 0 && opt.duration_s <= 86400))
				die("--duration in (0, 86400]");
		} else if (strcmp(n, "status-file") == 0) {
			if (strlen(v) > 1000)
				die("--status-file too long");
			opt.status_file = v;
		} else if (strcmp(n, "status-ms") == 0)
			opt.status_ms = num(n, v, 10, 60000);
		else
			die("unknown option --%s", n);
	}
	if (opt.n_urls == 0)
		die("--url is required");
	if (opt.mode[0] == 'a' && opt.n_urls != 1)
		die("agents: one --url");
	if (opt.mode[0] == 'w')
		for (int i = 0; i < opt.n_urls; i++)
			if (opt.url[i].ws || opt.url[i].tls)
				die("writes: http:// URLs");
	if ((opt.ca != NULL || opt.cert != NULL || opt.key != NULL) && !opt.url[0].tls)
		die("--ca, --cert and --key need a wss:// or https:// URL");
	if (opt.key != NULL && opt.cert == NULL)
		die("--key needs --cert");
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	rng_state ^= (uint64_t)wall_us() * 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
	G.loop = uv_default_loop();
	if (opt.mode[0] == 'a')
		run_agents();
	else
		run_writes();
	uv_timer_init(G.loop, &G.stop);
	uv_timer_start(&G.stop, on_stop_timer, (uint64_t)(opt.duration_s * 1000), 0);
	uv_signal_init(G.loop, &G.sigint);
	uv_signal_start(&G.sigint, on_signal, SIGINT);
	uv_signal_init(G.loop, &G.sigterm);
	uv_signal_start(&G.sigterm, on_signal, SIGTERM);
	uv_run(G.loop, UV_RUN_DEFAULT);
	/* Everything is closed; release what the handles pointed into. */
	for (int i = 0; i < G.n_slots; i++) {
		if (G.slots[i].cfg != NULL)
			opamp__proto__v1__agent_config_map__free_unpacked(G.slots[i].cfg, NULL);
		free(G.slots[i].recv_us);
		free(G.slots[i].applied_us);
		free(G.slots[i].tail_applying);
		free(G.slots[i].tail_applied);
	}
	if (G.agents != NULL)
		for (uint32_t i = 0; i < opt.agents; i++) {
			free(G.agents[i].in);
			free(G.agents[i].frag);
		}
	free(G.agents);
	free(G.connect_lat_us);
	free(G.sendbuf);
	free(W.w);
	free(W.lat_us);
	free(W.ok_at_ms10);
	free(W.body_tmpl);
	SSL_CTX_free(tls_ctx);
	uv_loop_close(G.loop);
	return 0;
}
