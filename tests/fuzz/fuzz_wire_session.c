/*
 * Fuzz target: the OpAMP wire decoder (agentapi/wire.c, nesting.c) and the
 * per-agent session state machine (session.c, registry.c) as endpoint.c
 * drives them, with a fake configuration port and a fake clock.
 *
 * Input: a sequence of records [ctl][len: u16 LE][len bytes]. The bytes are
 * one AgentToServer as it arrives over WebSocket (with the varint header)
 * or plain HTTP (without), and ctl says how:
 *   bit 0     transport: 0 WebSocket, 1 HTTP
 *   bit 1     which of two WebSocket connections
 *   bits 2-4  how far the clock moves first (0 … 1 h)
 *   bit 5     the configurations change first (none, small, signed, too big,
 *             in turn), and every agent is pushed to
 *   bit 6     the connection closes after the message (a new one replaces it)
 *   bit 7     the HTTP sweep and every agent's health are computed after it
 *
 * A CSR in a ConnectionSettingsRequest goes to a fake signing port, which
 * answers (issued, refused or unavailable, by the CSR's first byte) at once
 * or before the next message.
 *
 * Checked after each step: every reply, push and CSR answer decodes as a
 * ServerToAgent; the registry's counters match its agents; the agent limit
 * holds; an agent that points at a WebSocket connection points at an open
 * one which speaks for it (otherwise the daemon would later write to a freed
 * connection).
 */
#include "err.h"
#include "session.h"
#include "wire.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AGENTS 6
#define N_CONNS 2
#define GENERATIONS 64 /* distinct addresses per connection slot */
#define SIG_CAP "io.opampd.config-signature"

/* The desired configs, packed once (the big one takes a while): 1 small, 2 signed, 3 too big. */
static struct {
	uint8_t *pb[4];
	size_t pb_len[4];
	uint8_t hash[4][32];
} configs;

struct fake {
	unsigned config;      /* which desired configs are served: 0 none */
	unsigned uid_counter; /* new uids repeat on purpose: rekeys collide */
};

/* A CSR handed to the port, answered at once or before the next message. */
struct csr_pending {
	bool waiting;
	uint64_t token;
	uint8_t uid[OPD_UID_LEN];
	uint8_t kind; /* the CSR's first byte: how it is answered */
};

struct world {
	struct opd_registry r;
	struct fake f;
	struct csr_pending csr;
	uint64_t now, wall;
	struct opd_agent *bound[N_CONNS];
	unsigned gen[N_CONNS];
};

/* Connection identities: addresses nothing dereferences, fresh after each close. */
static char conn_ids[N_CONNS][GENERATIONS];

static struct opd_conn *conn_of(const struct world *w, unsigned k)
{
	return (struct opd_conn *)(void *)&conn_ids[k][w->gen[k] % GENERATIONS];
}

static int fake_desired(void *data, const struct opd_agent *a, struct opd_desired *out)
{
	struct fake *f = data;
	/* Agents that reported attributes get the signed one, as a selector would choose. */
	unsigned c = f->config == 1 && a->ident.n > 0 ? 2 : f->config;

	if (c == 0)
		return OPD_ENOTFOUND;
	*out = (struct opd_desired){.name = c == 1   ? "base"
					    : c == 2 ? "edge"
						     : "big",
				    .version = c,
				    .hash = configs.hash[c],
				    .hash_len = 32,
				    .config_pb = configs.pb[c],
				    .config_len = configs.pb_len[c]};
	if (c != 1) {
		out->signature_capability = SIG_CAP;
		out->signature_type = "config-signature";
		out->signature_msg = (const uint8_t *)"{\"sig\":\"AAAA\"}";
		out->signature_len = 14;
	}
	return 0;
}

static void fake_new_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	struct fake *f = data;

	memset(uid, 0x77, OPD_UID_LEN);
	uid[15] = (uint8_t)(++f->uid_counter % 5);
}

static void make_config(unsigned c, size_t body_len)
{
	Opamp__Proto__V1__AgentConfigMap cm = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry e =
	    OPAMP__PROTO__V1__AGENT_CONFIG_MAP__CONFIG_MAP_ENTRY__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *ep = &e;
	Opamp__Proto__V1__AgentConfigFile file = OPAMP__PROTO__V1__AGENT_CONFIG_FILE__INIT;
	uint8_t *body = calloc(1, body_len + 1);

	if (body == NULL)
		abort();
	memset(body, 'x', body_len);
	file.body.data = body;
	file.body.len = body_len;
	file.content_type = "text/yaml";
	e.key = "collector.yaml";
	e.value = &file;
	cm.n_config_map = 1;
	cm.config_map = &ep;
	configs.pb_len[c] = opamp__proto__v1__agent_config_map__get_packed_size(&cm);
	configs.pb[c] = malloc(configs.pb_len[c]);
	if (configs.pb[c] == NULL)
		abort();
	opamp__proto__v1__agent_config_map__pack(&cm, configs.pb[c]);
	memset(configs.hash[c], 0xc0 + (int)c, 32);
	free(body);
}

static void csr_answer(struct world *w)
{
	struct opd_csr_answer ans = {0};

	switch (w->csr.kind % 3) {
	case 0:
		ans.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
		ans.ca_pem = w->csr.kind & 8 ? NULL : ans.cert_pem;
		break;
	case 1:
		ans.status = OPD_EINVAL;
		ans.message = w->csr.kind & 8 ? NULL : "not a CSR";
		break;
	default:
		ans.status = OPD_ENOTLEADER;
		break;
	}
	w->csr.waiting = false;
	opd_session_csr_answer(&w->r, w->csr.token, w->csr.uid, &ans);
}

static void csr_request(void *data, const struct opd_agent *a, const uint8_t *csr, size_t len,
			uint64_t token)
{
	struct world *w = data;

	if (len == 0 || w->csr.waiting)
		abort(); /* empty CSRs are not handed on; one answer before the next message */
	w->csr = (struct csr_pending){.waiting = true, .token = token, .kind = csr[0]};
	memcpy(w->csr.uid, a->uid, OPD_UID_LEN);
	if (csr[0] & 4)
		csr_answer(w);
}

static void csr_deliver(void *data, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			const uint8_t *msg, size_t len, uint64_t retry_after_s)
{
	opd_s2a *s = opamp__proto__v1__server_to_agent__unpack(NULL, len, msg);

	(void)data;
	(void)token;
	if (s == NULL || s->instance_uid.len != OPD_UID_LEN ||
	    memcmp(s->instance_uid.data, uid, OPD_UID_LEN) != 0)
		abort();
	/* A Retry-After goes with an Unavailable answer, and only with one. */
	if ((retry_after_s != 0) !=
	    (s->error_response != NULL && s->error_response->retry_info != NULL))
		abort();
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
}

static void check_s2a(const struct opd_buf *b, size_t from)
{
	opd_s2a *s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(b) - from,
							       opd_buf_rptr(b) + from);

	if (s == NULL)
		abort();
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
}

static void check_world(const struct world *w)
{
	const struct opd_list *pos;
	size_t agents = 0, connected = 0;

	opd_list_foreach(pos, &w->r.agents)
	{
		const struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
		bool ok = a->conn == NULL;

		agents++;
		connected += a->connected != 0;
		if (opd_registry_find(&w->r, a->uid) != a)
			abort();
		for (unsigned k = 0; k < N_CONNS && !ok; k++)
			ok = a->conn == conn_of(w, k) && w->bound[k] == a;
		if (!ok) {
			fprintf(stderr,
				"agent %02x..%02x points at a connection that does not "
				"speak for it\n",
				a->uid[0], a->uid[15]);
			abort();
		}
	}
	if (agents != w->r.n_agents || agents > MAX_AGENTS || connected != w->r.n_connected) {
		fprintf(stderr, "registry counters: agents %zu/%zu connected %zu/%zu\n", agents,
			w->r.n_agents, connected, w->r.n_connected);
		abort();
	}
}

static void push_all(struct world *w)
{
	struct opd_list *pos;
	struct opd_buf out;

	opd_buf_init(&out);
	opd_list_foreach(pos, &w->r.agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);

		opd_buf_reset(&out);
		if (opd_session_push(&w->r, a, w->now, &out) == 1)
			check_s2a(&out, 0);
		else if (opd_buf_avail(&out) != 0)
			abort(); /* nothing appended unless it says so */
	}
	opd_buf_fini(&out);
}

static void sweep(struct world *w)
{
	struct opd_list *pos;

	(void)opd_registry_sweep(&w->r, w->now);
	opd_list_foreach(pos, &w->r.agents)
	{
		const struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);

		(void)opd_registry_health(&w->r, a, w->now);
		(void)opd_registry_expected_interval_ms(&w->r, a);
	}
}

/* One message as endpoint.c handles it. */
static void deliver(struct world *w, uint8_t ctl, const uint8_t *p, size_t n)
{
	static const uint64_t steps[8] = {0, 1, 1000, 15000, 30000, 90000, 600000, 3600000};
	bool http = ctl & 1;
	unsigned k = (ctl >> 1) & 1;
	struct opd_agent *http_bound = NULL;
	struct opd_session_error err;
	struct opd_buf reply;
	opd_a2s *m = NULL;
	int rc;

	if (w->csr.waiting)
		csr_answer(w);
	w->now += steps[(ctl >> 2) & 7];
	w->wall += steps[(ctl >> 2) & 7];
	if (ctl & 0x20) {
		w->f.config = (w->f.config + 1) % 4;
		opd_registry_configs_changed(&w->r);
		push_all(w);
	}
	opd_buf_init(&reply);
	rc = http ? opd_wire_decode_http(p, n, NULL, &m) : opd_wire_decode_ws(p, n, NULL, &m);
	if (rc != 0) {
		if (rc != OPD_EPROTO && rc != OPD_ETOOBIG)
			abort();
		opd_session_error_reply(!http && w->bound[k] ? w->bound[k]->uid : NULL, 1,
					"AgentToServer does not decode", 0, &reply);
	} else {
		rc = opd_session_receive(
		    &w->r, http ? &http_bound : &w->bound[k], http ? NULL : conn_of(w, k),
		    http ? OPD_TRANSPORT_HTTP : OPD_TRANSPORT_WS, m, w->now, w->wall, &reply, &err);
		if (rc != 0 && rc != OPD_EINVAL && rc != OPD_EAGAIN)
			abort();
		opd_wire_free_a2s(m, NULL);
	}
	check_s2a(&reply, 0);
	opd_buf_fini(&reply);
	if ((ctl & 0x40) && !http) {
		if (w->bound[k] != NULL)
			opd_session_closed(&w->r, w->bound[k], conn_of(w, k), w->wall);
		w->bound[k] = NULL;
		w->gen[k]++;
	}
	if (ctl & 0x80)
		sweep(w);
	check_world(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct world w = {0};
	struct opd_registry_settings s;
	struct opd_registry_ops ops = {.desired = fake_desired, .new_uid = fake_new_uid, .data = &w.f};

	opd_registry_settings_default(&s);
	s.max_agents = MAX_AGENTS;
	s.endpoint = "wss://opampd.example:4320/v1/opamp";
	s.custom_capabilities[0] = SIG_CAP;
	s.custom_capabilities[1] = "io.opentelemetry.pause";
	if (configs.pb[1] == NULL) {
		make_config(1, 24);
		make_config(2, 300);
		/* Over the message limit: the reply must go out without it. */
		make_config(3, OPD_WIRE_MAX_MSG);
	}
	opd_registry_init(&w.r, &s, &ops);
	w.r.csr = (struct opd_csr_port){csr_request, &w};
	w.r.csr_sink = (struct opd_csr_sink){csr_deliver, &w};
	w.f.config = 1;
	w.now = 1000000;
	w.wall = 1700000000000ull;

	for (size_t off = 0; off + 3 <= size;) {
		uint8_t ctl = data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;

		off += 3;
		if (len > size - off)
			len = size - off;
		deliver(&w, ctl, data + off, len);
		off += len;
	}

	opd_registry_fini(&w.r);
	return 0;
}
