/*
 * The per-agent OpAMP state machine, driven with packed AgentToServer bytes
 * (through the wire codec, as the daemon does), a fake registry port and
 * explicit times.
 */
#include "err.h"
#include "session.h"
#include "test_ca.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000ull
#define WALL0 1700000000000ull

#define C_STATUS 0x1u
#define C_ACCEPTS_RC 0x2u
#define C_EFFECTIVE 0x4u
#define C_OPAMP_SETTINGS 0x100u
#define C_HEALTH 0x800u
#define C_REPORTS_RC 0x1000u
#define C_HEARTBEAT 0x2000u

enum { S_UNSET = 0, S_APPLIED = 1, S_APPLYING = 2, S_FAILED = 3 };

/* The fake configuration side. */
struct fake {
	int have;
	uint8_t hash[32];
	uint64_t version;
	uint8_t *pb;
	size_t pb_len;
	int desired_calls;
	uint32_t uid_counter;
};

struct fx {
	struct opd_registry r;
	struct fake f;
	struct opd_agent *bound;
	int conn_a, conn_b; /* their addresses stand in for struct opd_conn */
	uint64_t now;
};

static int fake_desired(void *data, const struct opd_agent *a, struct opd_desired *out)
{
	struct fake *f = data;

	(void)a;
	f->desired_calls++;
	if (!f->have)
		return OPD_ENOTFOUND;
	*out = (struct opd_desired){.name = "base",
				    .version = f->version,
				    .hash = f->hash,
				    .hash_len = 32,
				    .config_pb = f->pb,
				    .config_len = f->pb_len};
	return 0;
}

static void fake_new_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	struct fake *f = data;

	memset(uid, 0x77, OPD_UID_LEN);
	f->uid_counter++;
	uid[15] = (uint8_t)f->uid_counter;
}

/* The configuration "version": a one-file AgentConfigMap whose hash the test picks. */
static void set_config(struct fx *x, uint8_t hash_byte, const char *body)
{
	Opamp__Proto__V1__AgentConfigMap cm = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry e =
	    OPAMP__PROTO__V1__AGENT_CONFIG_MAP__CONFIG_MAP_ENTRY__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *ep = &e;
	Opamp__Proto__V1__AgentConfigFile f = OPAMP__PROTO__V1__AGENT_CONFIG_FILE__INIT;

	f.body.data = (uint8_t *)body;
	f.body.len = strlen(body);
	f.content_type = "text/yaml";
	e.key = "collector.yaml";
	e.value = &f;
	cm.n_config_map = 1;
	cm.config_map = &ep;
	free(x->f.pb);
	x->f.pb_len = opamp__proto__v1__agent_config_map__get_packed_size(&cm);
	x->f.pb = malloc(x->f.pb_len);
	opamp__proto__v1__agent_config_map__pack(&cm, x->f.pb);
	memset(x->f.hash, hash_byte, sizeof x->f.hash);
	x->f.version++;
	x->f.have = 1;
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof *x);
	struct opd_registry_settings s;
	struct opd_registry_ops ops = {.desired = fake_desired, .new_uid = fake_new_uid};

	opd_registry_settings_default(&s);
	s.endpoint = "wss://opampd.example:4320/v1/opamp";
	s.custom_capabilities[0] = "io.opampd.signature/v1";
	s.custom_capabilities[1] = "io.opentelemetry.pause";
	ops.data = &x->f;
	opd_registry_init(&x->r, &s, &ops);
	set_config(x, 0xc1, "receivers: {otlp: {}}\n");
	x->now = T0;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	opd_registry_fini(&x->r);
	free(x->f.pb);
	free(x);
	return 0;
}

/* ------------------------------------------------------------ messages */

static const uint8_t UID1[16] = {0x01, 0x90, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1};
static const uint8_t UID2[16] = {0x01, 0x90, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 2};

/* Optional parts of an AgentToServer; the builder owns every sub-message. */
struct msg {
	opd_a2s m;
	Opamp__Proto__V1__AgentDescription desc;
	Opamp__Proto__V1__KeyValue kv[8];
	Opamp__Proto__V1__AnyValue av[8];
	Opamp__Proto__V1__KeyValue *ident[8], *nonident[8];
	Opamp__Proto__V1__RemoteConfigStatus rcs;
	Opamp__Proto__V1__ComponentHealth health;
	Opamp__Proto__V1__EffectiveConfig eff;
	Opamp__Proto__V1__AgentDisconnect disc;
	Opamp__Proto__V1__CustomCapabilities cc;
	Opamp__Proto__V1__ConnectionSettingsStatus css;
	int nkv;
};

static void msg_init(struct msg *b, const uint8_t *uid, size_t uid_len, uint64_t seq, uint64_t caps)
{
	memset(b, 0, sizeof *b);
	opamp__proto__v1__agent_to_server__init(&b->m);
	b->m.instance_uid.data = (uint8_t *)uid;
	b->m.instance_uid.len = uid_len;
	b->m.sequence_num = seq;
	b->m.capabilities = caps;
}

static Opamp__Proto__V1__AnyValue *attr(struct msg *b, int ident, const char *key)
{
	int i = b->nkv++;

	opamp__proto__v1__key_value__init(&b->kv[i]);
	opamp__proto__v1__any_value__init(&b->av[i]);
	b->kv[i].key = (char *)key;
	b->kv[i].value = &b->av[i];
	if (b->m.agent_description == NULL) {
		opamp__proto__v1__agent_description__init(&b->desc);
		b->desc.identifying_attributes = b->ident;
		b->desc.non_identifying_attributes = b->nonident;
		b->m.agent_description = &b->desc;
	}
	if (ident)
		b->ident[b->desc.n_identifying_attributes++] = &b->kv[i];
	else
		b->nonident[b->desc.n_non_identifying_attributes++] = &b->kv[i];
	return &b->av[i];
}

static void attr_str(struct msg *b, int ident, const char *key, const char *v)
{
	Opamp__Proto__V1__AnyValue *av = attr(b, ident, key);

	av->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)v;
}

static void msg_desc(struct msg *b)
{
	attr_str(b, 1, "service.name", "checkout");
	attr_str(b, 0, "os.type", "linux");
}

static void msg_rcs(struct msg *b, const uint8_t *hash, size_t len, int status, const char *err)
{
	opamp__proto__v1__remote_config_status__init(&b->rcs);
	b->rcs.last_remote_config_hash.data = (uint8_t *)hash;
	b->rcs.last_remote_config_hash.len = len;
	b->rcs.status = (Opamp__Proto__V1__RemoteConfigStatuses)status;
	if (err)
		b->rcs.error_message = (char *)err;
	b->m.remote_config_status = &b->rcs;
}

/* Pack, decode as an HTTP body, hand to the session, decode the reply. */
static opd_s2a *send_msg(struct fx *x, struct msg *b, enum opd_transport t, int *conn, int *ret)
{
	uint8_t *p;
	size_t n = opamp__proto__v1__agent_to_server__get_packed_size(&b->m);
	opd_a2s *m = NULL;
	struct opd_buf reply;
	struct opd_session_error err;
	opd_s2a *s;
	int rc;

	p = malloc(n ? n : 1);
	opamp__proto__v1__agent_to_server__pack(&b->m, p);
	assert_int_equal(opd_wire_decode_http(p, n, NULL, &m), 0);
	free(p);
	opd_buf_init(&reply);
	rc = opd_session_receive(&x->r, &x->bound, (struct opd_conn *)conn, t, m, x->now,
				 WALL0 + x->now, &reply, &err);
	if (ret != NULL)
		*ret = rc;
	else
		assert_int_equal(rc, 0);
	opd_wire_free_a2s(m, NULL);
	assert_true(opd_buf_avail(&reply) > 0); /* every message is answered */
	s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&reply),
						      opd_buf_rptr(&reply));
	assert_non_null(s);
	opd_buf_fini(&reply);
	return s;
}

static opd_s2a *send_ws(struct fx *x, struct msg *b)
{
	return send_msg(x, b, OPD_TRANSPORT_WS, &x->conn_a, NULL);
}

static opd_s2a *send_http(struct fx *x, struct msg *b)
{
	return send_msg(x, b, OPD_TRANSPORT_HTTP, NULL, NULL);
}

static void s2a_free(opd_s2a *s)
{
	opamp__proto__v1__server_to_agent__free_unpacked(s, NULL);
}

static struct opd_agent *agent(struct fx *x, const uint8_t *uid)
{
	struct opd_agent *a = opd_registry_find(&x->r, uid);

	assert_non_null(a);
	return a;
}

/* An Elastic-style client: full first message with an empty remote_config_status. */
static void elc_first(struct msg *b, uint64_t seq)
{
	msg_init(b, UID1, 16, seq, C_STATUS | C_HEARTBEAT | C_ACCEPTS_RC | C_REPORTS_RC);
	msg_desc(b);
	msg_rcs(b, NULL, 0, S_UNSET, NULL);
}

/* --------------------------------------------------------------- tests */

static void test_first_full_message(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	struct opd_agent *a;

	elc_first(&b, 1);
	s = send_http(x, &b);
	assert_int_equal(s->instance_uid.len, 16);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	assert_int_equal(s->capabilities, x->r.settings.capabilities);
	assert_true(s->capabilities & 0x1); /* AcceptsStatus */
	assert_int_equal(s->flags, 0);
	assert_null(s->error_response);
	assert_null(s->agent_identification);
	/* Empty reported hash: the desired config goes out, with its hash. */
	assert_non_null(s->remote_config);
	assert_int_equal(s->remote_config->config_hash.len, 32);
	assert_memory_equal(s->remote_config->config_hash.data, x->f.hash, 32);
	assert_int_equal(s->remote_config->config->n_config_map, 1);
	assert_string_equal(s->remote_config->config->config_map[0]->key, "collector.yaml");
	assert_string_equal(s->remote_config->config->config_map[0]->value->content_type,
			    "text/yaml");
	/* ELC ignores connection settings and lacks AcceptsOpAMPConnectionSettings. */
	assert_null(s->connection_settings);
	s2a_free(s);

	a = agent(x, UID1);
	assert_int_equal(a->connected, 1);
	assert_int_equal(a->transport, OPD_TRANSPORT_HTTP);
	assert_null(a->conn);
	assert_int_equal(a->messages, 1);
	assert_int_equal(a->last_seen_ms, T0);
	assert_int_equal(a->last_seen_wall_ms, WALL0 + T0);
	assert_int_equal(a->capabilities, C_STATUS | C_HEARTBEAT | C_ACCEPTS_RC | C_REPORTS_RC);
	assert_string_equal(opd_kvs_get(&a->ident, "service.name"), "checkout");
	assert_string_equal(opd_kvs_get(&a->nonident, "os.type"), "linux");
	assert_string_equal(a->desired_name, "base");
	assert_int_equal(a->desired_version, x->f.version);
	assert_int_equal(a->full_state_requested, 0);
	assert_int_equal(a->dirty, 1);
	assert_int_equal(x->r.n_connected, 1);
}

static void test_compressed_unknown_agent(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;

	/* After a server restart: a heartbeat from an agent we never saw. */
	msg_init(&b, UID1, 16, 41, C_STATUS | C_HEARTBEAT | C_ACCEPTS_RC | C_REPORTS_RC);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 1); /* ReportFullState */
	/* Its config hash is unknown: no config until it reports (it probably has it). */
	assert_null(s->remote_config);
	s2a_free(s);
	assert_int_equal(agent(x, UID1)->full_state_requested, 1);

	/* Another compressed message in flight: not asked twice. */
	msg_init(&b, UID1, 16, 42, C_STATUS | C_HEARTBEAT | C_ACCEPTS_RC | C_REPORTS_RC);
	x->now += 10;
	s = send_http(x, &b);
	assert_int_equal(s->flags, 0);
	s2a_free(s);

	/* The full state arrives, reporting the desired hash: nothing to send. */
	elc_first(&b, 43);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 0);
	assert_null(s->remote_config);
	s2a_free(s);
	assert_int_equal(agent(x, UID1)->full_state_requested, 0);
	assert_int_equal(agent(x, UID1)->rc_status, OPD_RC_APPLIED);
}

static void test_seq_gap_and_retry(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;

	/* opamp-go starts at 0: no assumption about the first value. */
	elc_first(&b, 0);
	s2a_free(send_http(x, &b));
	msg_init(&b, UID1, 16, 1, b.m.capabilities);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 0);
	s2a_free(s);

	/* The exact same message again (a retry): answered, no gap. */
	s = send_http(x, &b);
	assert_int_equal(s->flags, 0);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	s2a_free(s);
	assert_int_equal(agent(x, UID1)->messages, 3);

	/* 1 → 3: a gap, and the message is compressed. */
	msg_init(&b, UID1, 16, 3, b.m.capabilities);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 1);
	s2a_free(s);
	/* Another gap while the request is outstanding still asks. */
	msg_init(&b, UID1, 16, 9, b.m.capabilities);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 1);
	s2a_free(s);
	/* A gap whose message is already full needs no flag (ELC after a failed send). */
	elc_first(&b, 12);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 0);
	s2a_free(s);
	/* Backwards (agent restarted at 0) is a gap too. */
	msg_init(&b, UID1, 16, 0, b.m.capabilities);
	s = send_http(x, &b);
	assert_int_equal(s->flags, 1);
	s2a_free(s);
}

static void test_request_instance_uid(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	uint8_t assigned[16];
	struct opd_agent *a;

	msg_init(&b, UID1, 16, 0, C_STATUS);
	msg_desc(&b);
	b.m.flags = 1; /* RequestInstanceUid */
	s = send_ws(x, &b);
	assert_memory_equal(s->instance_uid.data, UID1, 16); /* the old uid, so it recognises it */
	assert_non_null(s->agent_identification);
	assert_int_equal(s->agent_identification->new_instance_uid.len, 16);
	memcpy(assigned, s->agent_identification->new_instance_uid.data, 16);
	assert_int_equal(assigned[15], 1);
	s2a_free(s);
	a = opd_registry_find(&x->r, assigned);
	assert_non_null(a);
	assert_null(opd_registry_find(&x->r, UID1));
	assert_ptr_equal(x->bound, a);

	/* Asked again before switching: the same new uid, no second rekey. */
	msg_init(&b, UID1, 16, 1, C_STATUS);
	b.m.flags = 1;
	s = send_ws(x, &b);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	assert_non_null(s->agent_identification);
	assert_memory_equal(s->agent_identification->new_instance_uid.data, assigned, 16);
	s2a_free(s);
	assert_int_equal(x->f.uid_counter, 1);
	assert_int_equal(x->r.n_agents, 1);

	/* Switched: plain traffic under the new uid, seq continues. */
	msg_init(&b, assigned, 16, 2, C_STATUS);
	s = send_ws(x, &b);
	assert_null(s->agent_identification);
	assert_int_equal(s->flags, 0);
	assert_memory_equal(s->instance_uid.data, assigned, 16);
	s2a_free(s);
	assert_int_equal(a->messages, 3);
}

static void test_remote_config_lifecycle(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	struct opd_agent *a;

	elc_first(&b, 1);
	s = send_http(x, &b);
	assert_non_null(s->remote_config);
	s2a_free(s);
	a = agent(x, UID1);
	assert_memory_equal(a->sent_hash.b, x->f.hash, 32);

	/* Heartbeat before the agent answers: not resent. */
	msg_init(&b, UID1, 16, 2, b.m.capabilities);
	x->now += 30000;
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);

	msg_init(&b, UID1, 16, 3, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLYING, NULL);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	assert_int_equal(a->rc_status, OPD_RC_APPLYING);

	msg_init(&b, UID1, 16, 4, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	assert_int_equal(a->rc_status, OPD_RC_APPLIED);
	assert_int_equal(a->rc_hash.len, 32);
	assert_memory_equal(a->rc_hash.b, x->f.hash, 32);
	assert_null(a->rc_error);

	/* Heartbeats after APPLIED: nothing. */
	msg_init(&b, UID1, 16, 5, b.m.capabilities);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
}

static void test_failed_not_resent(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	struct opd_agent *a;

	elc_first(&b, 1);
	s2a_free(send_http(x, &b));
	msg_init(&b, UID1, 16, 2, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_FAILED, "line 3: mapping values are not allowed");
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	a = agent(x, UID1);
	assert_int_equal(a->rc_status, OPD_RC_FAILED);
	assert_string_equal(a->rc_error, "line 3: mapping values are not allowed");

	/* Even a new connection or a full report does not resend a FAILED hash. */
	for (uint64_t seq = 3; seq < 6; seq++) {
		elc_first(&b, seq);
		msg_rcs(&b, x->f.hash, 32, S_FAILED, "line 3: mapping values are not allowed");
		s = send_msg(x, &b, OPD_TRANSPORT_WS, seq == 4 ? &x->conn_b : &x->conn_a, NULL);
		assert_null(s->remote_config);
		s2a_free(s);
	}
	/* The operator fixes it: a new version goes out once. */
	set_config(x, 0xc2, "receivers: {otlp: {protocols: {grpc: {}}}}\n");
	opd_registry_configs_changed(&x->r);
	msg_init(&b, UID1, 16, 6, b.m.capabilities);
	s = send_http(x, &b);
	assert_non_null(s->remote_config);
	assert_memory_equal(s->remote_config->config_hash.data, x->f.hash, 32);
	s2a_free(s);
	/* A later explicit report of the old hash asks again. */
	msg_init(&b, UID1, 16, 7, b.m.capabilities);
	msg_rcs(&b, (uint8_t[32]){0xc1, 0xc1}, 32, S_APPLIED, NULL);
	s = send_http(x, &b);
	assert_non_null(s->remote_config);
	s2a_free(s);
	assert_null(a->rc_error);
}

/*
 * A follower catching up pushes every version it applies; the agent's reports
 * about the older ones arrive after the newest was pushed. Over WebSocket they
 * are stale (written before the agent read the push): nothing is resent.
 */
static void test_stale_reports_do_not_resend(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_buf out;
	opd_s2a *s;
	struct opd_agent *a;
	uint8_t old_hash[32];
	uint64_t seq = 0;

	opd_buf_init(&out);
	msg_init(&b, UID1, 16, seq++, C_STATUS | C_ACCEPTS_RC | C_REPORTS_RC | C_HEARTBEAT);
	msg_desc(&b);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s2a_free(send_ws(x, &b));
	a = agent(x, UID1);
	memcpy(old_hash, x->f.hash, 32);
	set_config(x, 0xd8, "exporters: {debug: {verbosity: basic}}\n");
	opd_registry_configs_changed(&x->r);
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 1);
	for (int i = 0; i < 5; i++) {
		msg_init(&b, UID1, 16, seq++, b.m.capabilities);
		msg_rcs(&b, old_hash, 32, S_APPLIED, NULL);
		s = send_ws(x, &b);
		assert_null(s->remote_config);
		s2a_free(s);
	}
	/* The report about the pushed config ends the wait; then an old hash asks again. */
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s = send_ws(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	msg_rcs(&b, old_hash, 32, S_APPLIED, NULL);
	s = send_ws(x, &b);
	assert_non_null(s->remote_config);
	s2a_free(s);
	opd_buf_fini(&out);
}

static void test_push_new_version(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_buf out;
	opd_s2a *s;
	struct opd_agent *a;

	opd_buf_init(&out);
	msg_init(&b, UID1, 16, 0, C_STATUS | C_ACCEPTS_RC | C_REPORTS_RC | C_HEARTBEAT);
	msg_desc(&b);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s = send_ws(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	a = agent(x, UID1);
	assert_ptr_equal(a->conn, (struct opd_conn *)&x->conn_a);
	assert_ptr_equal(x->bound, a);

	/* Nothing changed: nothing to push. */
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 0);
	assert_int_equal(opd_buf_avail(&out), 0);

	set_config(x, 0xd7, "exporters: {debug: {}}\n");
	opd_registry_configs_changed(&x->r);
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 1);
	s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&out),
						      opd_buf_rptr(&out));
	assert_non_null(s);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	assert_non_null(s->remote_config);
	assert_memory_equal(s->remote_config->config_hash.data, x->f.hash, 32);
	assert_int_equal(s->remote_config->config->config_map[0]->value->body.len,
			 strlen("exporters: {debug: {}}\n"));
	s2a_free(s);
	assert_int_equal(a->desired_version, x->f.version);

	/* Once. Also not again in the reply to the next heartbeat. */
	assert_int_equal(x->r.receipt_latency.count, 0);
	opd_buf_reset(&out);
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 0);
	opd_registry_configs_changed(&x->r); /* an unrelated config changed */
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 0);
	assert_int_equal(opd_buf_avail(&out), 0);
	msg_init(&b, UID1, 16, 1, b.m.capabilities);
	s = send_ws(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	/* A heartbeat is no receipt; the agent reporting the pushed hash 120 ms later is. */
	assert_int_equal(x->r.receipt_latency.count, 0);
	x->now += 120;
	msg_init(&b, UID1, 16, 2, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLYING, NULL);
	s2a_free(send_ws(x, &b));
	assert_int_equal(x->r.receipt_latency.count, 1);
	assert_int_equal(x->r.receipt_latency.sum_ms, 120);
	assert_int_equal(x->r.receipt_latency.buckets[5], 1); /* (100, 250] ms */
	/* APPLIED afterwards is not a second receipt. */
	msg_init(&b, UID1, 16, 3, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s2a_free(send_ws(x, &b));
	assert_int_equal(x->r.receipt_latency.count, 1);
	/* Back to the agent's last report for the rest of this test. */
	msg_init(&b, UID1, 16, 4, b.m.capabilities);
	msg_rcs(&b, (const uint8_t *)"\x01", 1, S_APPLIED, NULL);
	s2a_free(send_ws(x, &b));

	/* A reconnect on a new stream may have lost it: the next reply carries it. */
	msg_init(&b, UID1, 16, 5, b.m.capabilities);
	s = send_msg(x, &b, OPD_TRANSPORT_WS, &x->conn_b, NULL);
	assert_non_null(s->remote_config);
	s2a_free(s);
	assert_ptr_equal(a->conn, (struct opd_conn *)&x->conn_b);

	/* The old stream closing does not disconnect the agent; the new one does. */
	opd_session_closed(&x->r, a, (struct opd_conn *)&x->conn_a, WALL0);
	assert_int_equal(a->connected, 1);
	opd_session_closed(&x->r, a, (struct opd_conn *)&x->conn_b, WALL0);
	assert_int_equal(a->connected, 0);
	assert_null(a->conn);
	set_config(x, 0xd8, "exporters: {}\n");
	opd_registry_configs_changed(&x->r);
	assert_int_equal(opd_session_push(&x->r, a, x->now, &out), 0); /* not connected */
	opd_buf_fini(&out);
}

static void test_push_http_agent(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_buf out;
	opd_s2a *s;

	opd_buf_init(&out);
	elc_first(&b, 1);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s2a_free(send_http(x, &b));
	set_config(x, 0xe1, "x: 1\n");
	opd_registry_configs_changed(&x->r);
	/* HTTP agents get theirs in the reply to the next poll. */
	assert_int_equal(opd_session_push(&x->r, agent(x, UID1), x->now, &out), 0);
	msg_init(&b, UID1, 16, 2, b.m.capabilities);
	s = send_http(x, &b);
	assert_non_null(s->remote_config);
	assert_memory_equal(s->remote_config->config_hash.data, x->f.hash, 32);
	s2a_free(s);
	opd_buf_fini(&out);
}

/*
 * A poll reply carrying a config is lost and the client moves on to the next
 * sequence number (Elastic's client does): once the agent had two poll
 * intervals to report on it, the config goes out again; not before.
 */
static void test_http_lost_reply_resent(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	uint64_t seq = 1;

	elc_first(&b, seq++);
	s = send_http(x, &b);
	assert_non_null(s->remote_config); /* this reply is "lost" */
	s2a_free(s);
	/*
	 * Polls every second that never mention the config. With fewer than
	 * three gaps seen, the 30 s prior is the poll interval: no resend yet.
	 */
	for (int i = 0; i < 2; i++) {
		x->now += 1000;
		msg_init(&b, UID1, 16, seq++, b.m.capabilities);
		s = send_http(x, &b);
		assert_null(s->remote_config);
		s2a_free(s);
	}
	/* Third gap: the observed interval is 1 s and 3 s passed without a report. */
	x->now += 1000;
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	s = send_http(x, &b);
	assert_non_null(s->remote_config);
	assert_memory_equal(s->remote_config->config_hash.data, x->f.hash, 32);
	s2a_free(s);
	/* Right after a resend, the next poll does not repeat it. */
	x->now += 1000;
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	/* Once the agent reports it, never again. */
	x->now += 1000;
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	msg_rcs(&b, x->f.hash, 32, S_APPLIED, NULL);
	s2a_free(send_http(x, &b));
	x->now += 5 * 60000;
	msg_init(&b, UID1, 16, seq++, b.m.capabilities);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
}

static void test_no_accepts_remote_config(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_buf out;
	opd_s2a *s;

	opd_buf_init(&out);
	/* The Collector's opampextension: reports only. */
	msg_init(&b, UID1, 16, 0, C_STATUS | C_EFFECTIVE | C_HEALTH | C_HEARTBEAT);
	msg_desc(&b);
	opamp__proto__v1__component_health__init(&b.health);
	b.health.healthy = 1;
	b.m.health = &b.health;
	opamp__proto__v1__effective_config__init(&b.eff);
	b.m.effective_config = &b.eff;
	s = send_ws(x, &b);
	assert_int_equal(s->flags, 0);
	assert_null(s->remote_config);
	s2a_free(s);
	set_config(x, 0xf1, "y: 2\n");
	opd_registry_configs_changed(&x->r);
	assert_int_equal(opd_session_push(&x->r, agent(x, UID1), x->now, &out), 0);
	msg_init(&b, UID1, 16, 1, b.m.capabilities);
	s = send_ws(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	opd_buf_fini(&out);
}

static void test_connection_settings(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	uint8_t hash[32];
	uint64_t caps = C_STATUS | C_OPAMP_SETTINGS | C_HEARTBEAT;

	msg_init(&b, UID1, 16, 0, caps);
	msg_desc(&b);
	s = send_ws(x, &b);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp);
	assert_int_equal(s->connection_settings->opamp->heartbeat_interval_seconds, 30);
	assert_string_equal(s->connection_settings->opamp->destination_endpoint,
			    "wss://opampd.example:4320/v1/opamp");
	assert_int_equal(s->connection_settings->hash.len, 32);
	memcpy(hash, s->connection_settings->hash.data, 32);
	s2a_free(s);

	msg_init(&b, UID1, 16, 1, caps);
	s = send_ws(x, &b);
	assert_null(s->connection_settings);
	s2a_free(s);

	/* The agent reports our hash: still nothing. */
	msg_init(&b, UID1, 16, 2, caps | 0x8000);
	opamp__proto__v1__connection_settings_status__init(&b.css);
	b.css.last_connection_settings_hash.data = hash;
	b.css.last_connection_settings_hash.len = 32;
	b.css.status = 1;
	b.m.connection_settings_status = &b.css;
	s = send_ws(x, &b);
	assert_null(s->connection_settings);
	s2a_free(s);

	/* It reports another hash: offered again, with the same hash as before. */
	msg_init(&b, UID1, 16, 3, caps | 0x8000);
	opamp__proto__v1__connection_settings_status__init(&b.css);
	b.css.last_connection_settings_hash.data = (uint8_t *)UID2;
	b.css.last_connection_settings_hash.len = 16;
	b.m.connection_settings_status = &b.css;
	s = send_ws(x, &b);
	assert_non_null(s->connection_settings);
	assert_memory_equal(s->connection_settings->hash.data, hash, 32);
	s2a_free(s);

	/* Without ReportsHeartbeat the agent would not follow the interval: no offer. */
	msg_init(&b, UID2, 16, 0, C_STATUS | C_OPAMP_SETTINGS);
	msg_desc(&b);
	s = send_ws(x, &b);
	assert_null(s->connection_settings);
	s2a_free(s);
}

static void test_bad_uid(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	int rc;

	msg_init(&b, (const uint8_t *)"01ARZ3NDEKTSV4RRFFQ69G5FAV", 26, 0, C_STATUS); /* old ULID */
	s = send_msg(x, &b, OPD_TRANSPORT_HTTP, NULL, &rc);
	assert_int_equal(rc, OPD_EINVAL);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 1); /* BadRequest */
	assert_true(strlen(s->error_response->error_message) > 0);
	assert_int_equal(s->instance_uid.len, 0);
	assert_int_equal(s->capabilities, 0);
	assert_int_equal(s->flags, 0);
	assert_null(s->remote_config);
	s2a_free(s);
	assert_int_equal(x->r.n_agents, 0);

	msg_init(&b, UID1, 0, 0, C_STATUS);
	s = send_msg(x, &b, OPD_TRANSPORT_HTTP, NULL, &rc);
	assert_int_equal(rc, OPD_EINVAL);
	assert_non_null(s->error_response);
	s2a_free(s);
}

static void test_agent_limit(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	int rc;

	x->r.settings.max_agents = 1;
	elc_first(&b, 1);
	s2a_free(send_http(x, &b));
	msg_init(&b, UID2, 16, 1, C_STATUS);
	s = send_msg(x, &b, OPD_TRANSPORT_HTTP, NULL, &rc);
	assert_int_equal(rc, OPD_EAGAIN);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 2); /* Unavailable */
	assert_int_equal(s->error_response->details_case,
			 OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS_RETRY_INFO);
	assert_true(s->error_response->retry_info->retry_after_nanoseconds >= 30000000000ull);
	assert_memory_equal(s->instance_uid.data, UID2, 16);
	s2a_free(s);
	assert_int_equal(x->r.n_agents, 1);
}

static void test_health_degraded(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_agent *a;
	Opamp__Proto__V1__ComponentHealth *h;

	msg_init(&b, UID1, 16, 0, C_STATUS | C_HEALTH | C_HEARTBEAT);
	msg_desc(&b);
	opamp__proto__v1__component_health__init(&b.health);
	b.health.healthy = 1;
	b.health.status = "StatusOK";
	b.m.health = &b.health;
	s2a_free(send_ws(x, &b));
	a = agent(x, UID1);
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 1000), OPD_HEALTH_HEALTHY);

	msg_init(&b, UID1, 16, 1, C_STATUS | C_HEALTH | C_HEARTBEAT);
	opamp__proto__v1__component_health__init(&b.health);
	b.health.healthy = 0;
	b.health.last_error = "exporter otlp: connection refused";
	b.m.health = &b.health;
	x->now += 30000;
	s2a_free(send_ws(x, &b));
	assert_int_equal(a->healthy, 0);
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 1000), OPD_HEALTH_DEGRADED);
	h = opamp__proto__v1__component_health__unpack(NULL, a->health_len, a->health_pb);
	assert_non_null(h);
	assert_string_equal(h->last_error, "exporter otlp: connection refused");
	opamp__proto__v1__component_health__free_unpacked(h, NULL);

	/* Compressed heartbeat: the last health report stands. */
	msg_init(&b, UID1, 16, 2, C_STATUS | C_HEALTH | C_HEARTBEAT);
	x->now += 30000;
	s2a_free(send_ws(x, &b));
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 1000), OPD_HEALTH_DEGRADED);
}

static void test_phi_suspect(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_agent *a;

	for (uint64_t seq = 0; seq < 6; seq++) {
		msg_init(&b, UID1, 16, seq, C_STATUS | C_HEARTBEAT | C_OPAMP_SETTINGS);
		if (seq == 0)
			msg_desc(&b);
		s2a_free(send_ws(x, &b));
		x->now += 30000;
	}
	x->now -= 30000;
	a = agent(x, UID1);
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 31000), OPD_HEALTH_HEALTHY);
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 80000), OPD_HEALTH_SUSPECT);
	assert_int_equal(opd_registry_health(&x->r, a, x->now + 300000), OPD_HEALTH_DOWN);
}

static void test_sweep_http(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_agent *a, *w;

	elc_first(&b, 1);
	s2a_free(send_http(x, &b));
	msg_init(&b, UID2, 16, 0, C_STATUS);
	msg_desc(&b);
	s2a_free(send_ws(x, &b));
	a = agent(x, UID1);
	w = agent(x, UID2);
	assert_int_equal(x->r.n_connected, 2);
	a->dirty = 0;
	assert_int_equal(opd_registry_sweep(&x->r, x->now + 60000), 0);
	assert_int_equal(opd_registry_sweep(&x->r, x->now + 91000), 1);
	assert_int_equal(a->connected, 0);
	assert_int_equal(a->dirty, 1);
	assert_int_equal(w->connected, 1);
	assert_int_equal(x->r.n_connected, 1);

	/* It comes back: connected again. */
	msg_init(&b, UID1, 16, 2, b.m.capabilities);
	x->now += 100000;
	s2a_free(send_http(x, &b));
	assert_int_equal(a->connected, 1);
	assert_int_equal(x->r.n_connected, 2);
}

static void test_disconnect(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	struct opd_agent *a;

	msg_init(&b, UID1, 16, 0, C_STATUS | C_ACCEPTS_RC);
	msg_desc(&b);
	s2a_free(send_ws(x, &b));
	a = agent(x, UID1);
	assert_ptr_equal(x->bound, a);
	msg_init(&b, UID1, 16, 1, C_STATUS | C_ACCEPTS_RC);
	opamp__proto__v1__agent_disconnect__init(&b.disc);
	b.m.agent_disconnect = &b.disc;
	s = send_ws(x, &b);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	s2a_free(s);
	assert_int_equal(a->connected, 0);
	assert_int_equal(a->disconnected_by_agent, 1);
	assert_null(a->conn);
	assert_null(x->bound);
	assert_int_equal(x->r.n_connected, 0);
}

static void test_description_and_rendering(void **state)
{
	struct fx *x = *state;
	struct msg b;
	struct opd_agent *a;
	Opamp__Proto__V1__AnyValue *v, items[3], *itemp[3];
	Opamp__Proto__V1__ArrayValue arr = OPAMP__PROTO__V1__ARRAY_VALUE__INIT;
	char *big = malloc(10000);
	int calls;

	memset(big, 'a', 9999);
	big[9999] = '\0';
	big[4095] = (char)0xc3; /* a two-byte UTF-8 character cut by the 4 KiB bound */
	big[4096] = (char)0xa9;
	msg_init(&b, UID1, 16, 0, C_STATUS);
	attr_str(&b, 1, "service.name", "checkout");
	v = attr(&b, 0, "b");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BOOL_VALUE;
	v->bool_value = 1;
	v = attr(&b, 0, "i");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_INT_VALUE;
	v->int_value = -42;
	v = attr(&b, 0, "d");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
	v->double_value = 0.1;
	v = attr(&b, 0, "x");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BYTES_VALUE;
	v->bytes_value.data = (uint8_t *)"\x01\xab";
	v->bytes_value.len = 2;
	for (int i = 0; i < 3; i++) {
		opamp__proto__v1__any_value__init(&items[i]);
		itemp[i] = &items[i];
	}
	items[0].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	items[0].string_value = "q\"x";
	items[1].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_INT_VALUE;
	items[1].int_value = 7;
	arr.n_values = 3;
	arr.values = itemp;
	v = attr(&b, 0, "a");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
	v->array_value = &arr;
	attr_str(&b, 0, "big", big);
	s2a_free(send_http(x, &b));

	a = agent(x, UID1);
	assert_string_equal(opd_kvs_get(&a->nonident, "b"), "true");
	assert_string_equal(opd_kvs_get(&a->nonident, "i"), "-42");
	assert_string_equal(opd_kvs_get(&a->nonident, "d"), "0.1");
	assert_string_equal(opd_kvs_get(&a->nonident, "x"), "01ab");
	assert_string_equal(opd_kvs_get(&a->nonident, "a"), "[\"q\\\"x\",7,null]");
	assert_int_equal(strlen(opd_kvs_get(&a->nonident, "big")), 4095);
	free(big);

	/* Same description again: no recomputation; a changed one: recomputed. */
	calls = x->f.desired_calls;
	msg_init(&b, UID1, 16, 1, C_STATUS);
	attr_str(&b, 1, "service.name", "checkout");
	v = attr(&b, 0, "b");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BOOL_VALUE;
	v->bool_value = 1;
	s2a_free(send_http(x, &b));
	assert_int_equal(x->f.desired_calls, calls + 1); /* the attributes changed (fewer) */
	calls = x->f.desired_calls;
	msg_init(&b, UID1, 16, 2, C_STATUS);
	attr_str(&b, 1, "service.name", "checkout");
	v = attr(&b, 0, "b");
	v->value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BOOL_VALUE;
	v->bool_value = 1;
	s2a_free(send_http(x, &b));
	assert_int_equal(x->f.desired_calls, calls);
	assert_null(opd_kvs_get(&a->nonident, "i"));
}

/* Independent implementation of the canonical hash, for one file. */
static void canonical_one(const char *name, const char *ct, const char *body, uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	const char *parts[3] = {name, ct, body};
	unsigned int len;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (int i = 0; i < 3; i++) {
		uint8_t be[8] = {0};
		size_t n = strlen(parts[i]);

		be[7] = (uint8_t)n;
		be[6] = (uint8_t)(n >> 8);
		EVP_DigestUpdate(ctx, be, 8);
		EVP_DigestUpdate(ctx, parts[i], n);
	}
	EVP_DigestFinal_ex(ctx, out, &len);
	EVP_MD_CTX_free(ctx);
}

static void test_effective_config_hash(void **state)
{
	struct fx *x = *state;
	struct msg b;
	Opamp__Proto__V1__AgentConfigMap cm = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry e[2], *ep[2];
	Opamp__Proto__V1__AgentConfigFile f[2];
	uint8_t want[32];
	struct opd_hash first;
	struct opd_agent *a;

	for (int i = 0; i < 2; i++) {
		opamp__proto__v1__agent_config_map__config_map_entry__init(&e[i]);
		opamp__proto__v1__agent_config_file__init(&f[i]);
		e[i].value = &f[i];
		ep[i] = &e[i];
	}
	e[0].key = "collector.yaml";
	f[0].body.data = (uint8_t *)"receivers: {}\n";
	f[0].body.len = 14;
	f[0].content_type = "text/yaml";
	cm.n_config_map = 1;
	cm.config_map = ep;
	msg_init(&b, UID1, 16, 0, C_STATUS | C_EFFECTIVE);
	msg_desc(&b);
	opamp__proto__v1__effective_config__init(&b.eff);
	b.eff.config_map = &cm;
	b.m.effective_config = &b.eff;
	s2a_free(send_http(x, &b));
	a = agent(x, UID1);
	canonical_one("collector.yaml", "text/yaml", "receivers: {}\n", want);
	assert_int_equal(a->has_effective, 1);
	assert_int_equal(a->effective_hash.len, 32);
	assert_memory_equal(a->effective_hash.b, want, 32);

	/* Two files: the order in the message does not matter. */
	e[1].key = "a.yaml";
	f[1].body.data = (uint8_t *)"x";
	f[1].body.len = 1;
	f[1].content_type = "";
	cm.n_config_map = 2;
	msg_init(&b, UID1, 16, 1, C_STATUS | C_EFFECTIVE);
	opamp__proto__v1__effective_config__init(&b.eff);
	b.eff.config_map = &cm;
	b.m.effective_config = &b.eff;
	s2a_free(send_http(x, &b));
	first = a->effective_hash;
	assert_memory_not_equal(first.b, want, 32);
	ep[0] = &e[1];
	ep[1] = &e[0];
	msg_init(&b, UID1, 16, 2, C_STATUS | C_EFFECTIVE);
	opamp__proto__v1__effective_config__init(&b.eff);
	b.eff.config_map = &cm;
	b.m.effective_config = &b.eff;
	s2a_free(send_http(x, &b));
	assert_memory_equal(a->effective_hash.b, first.b, 32);
}

static void test_custom_capabilities(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;
	char *caps[3] = {"com.example.other/v1", "io.opentelemetry.pause",
			 "io.opampd.signature/v1"};

	msg_init(&b, UID1, 16, 0, C_STATUS);
	msg_desc(&b);
	opamp__proto__v1__custom_capabilities__init(&b.cc);
	b.cc.n_capabilities = 3;
	b.cc.capabilities = caps;
	b.m.custom_capabilities = &b.cc;
	s = send_ws(x, &b);
	assert_non_null(s->custom_capabilities);
	assert_int_equal(s->custom_capabilities->n_capabilities, 2);
	assert_string_equal(s->custom_capabilities->capabilities[0], "io.opampd.signature/v1");
	assert_string_equal(s->custom_capabilities->capabilities[1], "io.opentelemetry.pause");
	s2a_free(s);
	assert_int_equal(agent(x, UID1)->n_custom_caps, 3);

	/* The same list again (full state): not echoed again. */
	msg_init(&b, UID1, 16, 1, C_STATUS);
	opamp__proto__v1__custom_capabilities__init(&b.cc);
	b.cc.n_capabilities = 3;
	b.cc.capabilities = caps;
	b.m.custom_capabilities = &b.cc;
	s = send_ws(x, &b);
	assert_null(s->custom_capabilities);
	s2a_free(s);

	/* A changed list: echoed, here with nothing in common. */
	msg_init(&b, UID1, 16, 2, C_STATUS);
	opamp__proto__v1__custom_capabilities__init(&b.cc);
	b.cc.capabilities = caps;
	b.cc.n_capabilities = 1;
	b.m.custom_capabilities = &b.cc;
	s = send_ws(x, &b);
	assert_non_null(s->custom_capabilities);
	assert_int_equal(s->custom_capabilities->n_capabilities, 0);
	s2a_free(s);
	assert_int_equal(agent(x, UID1)->n_custom_caps, 1);
}

static void test_error_reply(void **state)
{
	struct opd_buf out;
	opd_s2a *s;

	(void)state;
	opd_buf_init(&out);
	opd_session_error_reply(UID1, 2, "overloaded", 45000000000ull, &out);
	s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&out),
						      opd_buf_rptr(&out));
	assert_non_null(s);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	assert_int_equal(s->error_response->type, 2);
	assert_string_equal(s->error_response->error_message, "overloaded");
	assert_int_equal(s->error_response->retry_info->retry_after_nanoseconds, 45000000000ull);
	s2a_free(s);
	opd_buf_reset(&out);
	opd_session_error_reply(NULL, 1, "cannot decode", 0, &out);
	s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&out),
						      opd_buf_rptr(&out));
	assert_int_equal(s->instance_uid.len, 0);
	assert_int_equal(s->error_response->details_case,
			 OPAMP__PROTO__V1__SERVER_ERROR_RESPONSE__DETAILS__NOT_SET);
	s2a_free(s);
	opd_buf_fini(&out);
}

static void test_no_desired_config(void **state)
{
	struct fx *x = *state;
	struct msg b;
	opd_s2a *s;

	x->f.have = 0;
	elc_first(&b, 1);
	s = send_http(x, &b);
	assert_null(s->remote_config);
	s2a_free(s);
	assert_null(agent(x, UID1)->desired_name);
}

/* ------------------------------------------------------------ CSR flow */

/* The fake CSR port: answers at once (mode 1/2/3) or keeps the token for later (mode 0). */
struct fake_csr {
	int mode; /* 0 later, 1 issue, 2 refuse, 3 unavailable */
	int calls;
	uint64_t token;
	uint8_t uid[OPD_UID_LEN];
	char csr[64];
	struct opd_registry *r;
	/* What the sink got. */
	int delivered;
	uint64_t got_token;
	uint64_t retry; /* the Retry-After the sink was given (0: none) */
	uint8_t *msg;
	size_t len;
};

/* A real agent certificate (PEM, static): offers carry its SHA-256. */
static const char *leaf_pem(void)
{
	static char pem[8192];
	struct opd_tca ca;
	struct opd_tca_leaf leaf = {.cn = "0102030405060708090a0b0c0d0e0f10"};
	char dir[256], cert[300], key[300];
	FILE *fp;
	size_t n;

	if (pem[0] != '\0')
		return pem;
	assert_int_equal(opd_tca_tmpdir(dir, sizeof dir), 0);
	snprintf(cert, sizeof cert, "%s/leaf.pem", dir);
	snprintf(key, sizeof key, "%s/leaf.key", dir);
	assert_int_equal(opd_tca_init(&ca, "test CA", OPD_TCA_EC), 0);
	assert_int_equal(opd_tca_issue(&ca, &leaf, cert, key), 0);
	fp = fopen(cert, "r");
	assert_non_null(fp);
	n = fread(pem, 1, sizeof pem - 1, fp);
	pem[n] = '\0';
	fclose(fp);
	opd_tca_fini(&ca);
	opd_tca_rmdir(dir);
	return pem;
}

static void csr_answer(struct fake_csr *f, int mode)
{
	struct opd_csr_answer ok = {0, leaf_pem(), "CA PEM", NULL};
	struct opd_csr_answer bad = {OPD_EINVAL, NULL, NULL,
				     "the CSR's key is RSA with 1024 bits: too weak"};
	struct opd_csr_answer un = {OPD_EIO, NULL, NULL, "no quorum"};

	opd_session_csr_answer(f->r, f->token, f->uid, mode == 1 ? &ok : mode == 2 ? &bad : &un);
}

static void fake_csr_request(void *data, const struct opd_agent *a, const uint8_t *csr, size_t len,
			     uint64_t token)
{
	struct fake_csr *f = data;

	f->calls++;
	f->token = token;
	memcpy(f->uid, a->uid, OPD_UID_LEN);
	snprintf(f->csr, sizeof f->csr, "%.*s", (int)len, (const char *)csr);
	if (f->mode != 0)
		csr_answer(f, f->mode);
}

static void fake_sink(void *data, uint64_t token, const uint8_t uid[OPD_UID_LEN],
		      const uint8_t *msg, size_t len, uint64_t retry_after_s)
{
	struct fake_csr *f = data;

	(void)uid;
	f->delivered++;
	f->got_token = token;
	f->retry = retry_after_s;
	free(f->msg);
	f->msg = malloc(len ? len : 1);
	memcpy(f->msg, msg, len);
	f->len = len;
}

static opd_s2a *send_csr(struct fx *x, struct fake_csr *f, const char *pem)
{
	struct msg b;
	Opamp__Proto__V1__ConnectionSettingsRequest csr_req =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest oreq =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest creq = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;

	x->r.csr = (struct opd_csr_port){fake_csr_request, f};
	x->r.csr_sink = (struct opd_csr_sink){fake_sink, f};
	f->r = &x->r;
	msg_init(&b, UID1, 16, 0, C_STATUS | C_HEARTBEAT | C_OPAMP_SETTINGS | 0x200 /* ReqCSR */);
	msg_desc(&b);
	creq.csr.data = (uint8_t *)pem;
	creq.csr.len = strlen(pem);
	oreq.certificate_request = &creq;
	csr_req.opamp = &oreq;
	b.m.connection_settings_request = &csr_req;
	return send_ws(x, &b);
}

static opd_s2a *delivered(struct fake_csr *f)
{
	opd_s2a *s;

	assert_int_equal(f->delivered, 1);
	assert_int_equal(f->got_token, f->token);
	s = opamp__proto__v1__server_to_agent__unpack(NULL, f->len, f->msg);
	assert_non_null(s);
	assert_int_equal(s->instance_uid.len, 16);
	assert_memory_equal(s->instance_uid.data, UID1, 16);
	return s;
}

static void test_csr_async_issue(void **state)
{
	struct fx *x = *state;
	struct fake_csr f = {.mode = 0};
	opd_s2a *s = send_csr(x, &f, "PEM CSR");
	opd_s2a *plain;

	/* The reply says nothing about the CSR; the answer comes later. */
	assert_int_equal(f.calls, 1);
	assert_string_equal(f.csr, "PEM CSR");
	assert_memory_equal(f.uid, UID1, 16);
	assert_int_equal(x->r.csr_handed, f.token);
	assert_true(f.token != 0);
	assert_null(s->error_response);
	assert_true(s->connection_settings == NULL ||
		    s->connection_settings->opamp->certificate == NULL);
	plain = s;
	assert_int_equal(f.delivered, 0);

	csr_answer(&f, 1);
	s = delivered(&f);
	assert_null(s->error_response);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp);
	assert_int_equal(s->connection_settings->hash.len, 32);
	assert_int_equal(s->connection_settings->opamp->heartbeat_interval_seconds, 30);
	assert_string_equal(s->connection_settings->opamp->destination_endpoint,
			    "wss://opampd.example:4320/v1/opamp");
	assert_non_null(s->connection_settings->opamp->certificate);
	assert_int_equal(s->connection_settings->opamp->certificate->cert.len, strlen(leaf_pem()));
	assert_memory_equal(s->connection_settings->opamp->certificate->ca_cert.data, "CA PEM", 6);
	assert_int_equal(s->connection_settings->opamp->certificate->private_key.len, 0);
	s2a_free(s);
	s2a_free(plain);
	free(f.msg);
}

static void test_csr_sync_refused(void **state)
{
	struct fx *x = *state;
	struct fake_csr f = {.mode = 2};
	opd_s2a *s = send_csr(x, &f, "weak");

	assert_null(s->error_response);
	s2a_free(s);
	s = delivered(&f);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 1); /* BadRequest */
	assert_non_null(strstr(s->error_response->error_message, "1024 bits"));
	assert_null(s->connection_settings);
	assert_null(s->error_response->retry_info);
	assert_int_equal(f.retry, 0); /* a refusal is final: no Retry-After */
	s2a_free(s);
	free(f.msg);
}

static void test_csr_sync_issue_and_unavailable(void **state)
{
	struct fx *x = *state;
	struct fake_csr f = {.mode = 1};
	opd_s2a *s = send_csr(x, &f, "good");

	s2a_free(s);
	s = delivered(&f);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp->certificate);
	s2a_free(s);

	f.mode = 3;
	f.delivered = 0;
	s = send_csr(x, &f, "again");
	s2a_free(s);
	s = delivered(&f);
	assert_non_null(s->error_response);
	assert_int_equal(s->error_response->type, 2); /* Unavailable */
	assert_non_null(s->error_response->retry_info);
	assert_true(s->error_response->retry_info->retry_after_nanoseconds > 0);
	assert_int_equal(f.retry * 1000000000ull,
			 s->error_response->retry_info->retry_after_nanoseconds);
	assert_null(s->connection_settings);
	s2a_free(s);
	free(f.msg);
}

static void test_csr_without_port(void **state)
{
	struct fx *x = *state;
	struct fake_csr f = {.mode = 1};
	opd_s2a *s;

	s = send_csr(x, &f, "PEM");
	s2a_free(s);
	f.delivered = 0;
	x->r.csr.request = NULL; /* no CA: CSRs are ignored, the message answered as usual */
	{
		struct msg b;
		msg_init(&b, UID1, 16, 1, C_STATUS);
		s = send_ws(x, &b);
	}
	assert_int_equal(x->r.csr_handed, 0);
	assert_int_equal(f.delivered, 0);
	s2a_free(s);
	free(f.msg);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* ------------------------------------------------------- certificate offers */

static void leaf_fp(uint8_t fp[OPD_CERT_FP_LEN])
{
	BIO *b = BIO_new_mem_buf(leaf_pem(), -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	unsigned int n = 0;

	assert_non_null(x);
	assert_int_equal(X509_digest(x, EVP_sha256(), fp, &n), 1);
	X509_free(x);
	BIO_free(b);
}

static const struct opd_cert_offer server_offer = {
    .key_pem = "-----BEGIN PRIVATE KEY-----\nnot a real one\n-----END PRIVATE KEY-----\n",
    .ca_pem = "CA PEM",
    .serial = 7,
    .rotation_id = "r1"};

/* A connected agent that accepts connection settings, with a certificate offered to it. */
static struct opd_agent *offered_agent(struct fx *x, struct opd_hash *plain_hash)
{
	struct opd_cert_offer o = server_offer;
	struct msg b;
	opd_s2a *s;
	struct opd_agent *a;

	o.cert_pem = leaf_pem();
	msg_init(&b, UID1, 16, 0, C_STATUS | C_HEARTBEAT | C_OPAMP_SETTINGS);
	msg_desc(&b);
	s = send_ws(x, &b);
	assert_non_null(s->connection_settings); /* the plain offer (heartbeat interval) */
	plain_hash->len = (uint8_t)s->connection_settings->hash.len;
	memcpy(plain_hash->b, s->connection_settings->hash.data, plain_hash->len);
	s2a_free(s);
	a = agent(x, UID1);
	assert_int_equal(opd_session_offer_cert(&x->r, a, &o, WALL0), 0);
	assert_int_equal(a->tls->offer, OPD_OFFER_OFFERED);
	assert_true(a->tls->pending_due);
	return a;
}

/* The offer as the agent would get it from a push. */
static opd_s2a *take(struct opd_agent *a)
{
	struct opd_buf out;
	opd_s2a *s = NULL;

	opd_buf_init(&out);
	if (opd_session_take_offer(a, &out) == 1)
		s = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&out),
							      opd_buf_rptr(&out));
	opd_buf_fini(&out);
	return s;
}

static opd_s2a *send_cs_status(struct fx *x, uint64_t seq, const struct opd_hash *h, int status,
			       int *conn)
{
	struct msg b;

	msg_init(&b, UID1, 16, seq, C_STATUS | C_HEARTBEAT | C_OPAMP_SETTINGS);
	opamp__proto__v1__connection_settings_status__init(&b.css);
	b.css.last_connection_settings_hash.data = (uint8_t *)h->b;
	b.css.last_connection_settings_hash.len = h->len;
	b.css.status = status;
	b.css.error_message = status == 3 ? "cannot write the key file" : "";
	b.m.connection_settings_status = &b.css;
	return send_msg(x, &b, OPD_TRANSPORT_WS, conn, NULL);
}

static void test_offer_carries_cert_key_and_own_hash(void **state)
{
	struct fx *x = *state;
	struct opd_hash plain;
	struct opd_agent *a = offered_agent(x, &plain);
	opd_s2a *s = take(a);
	const Opamp__Proto__V1__TLSCertificate *tc;

	assert_non_null(s);
	assert_non_null(s->connection_settings);
	assert_int_equal(s->connection_settings->hash.len, 32);
	/* Not the plain offer's hash: an opamp-go agent would skip the offer as seen. */
	assert_true(memcmp(s->connection_settings->hash.data, plain.b, 32) != 0);
	assert_int_equal(s->connection_settings->opamp->heartbeat_interval_seconds, 30);
	tc = s->connection_settings->opamp->certificate;
	assert_non_null(tc);
	assert_int_equal(tc->cert.len, strlen(leaf_pem()));
	assert_int_equal(tc->private_key.len, strlen(server_offer.key_pem));
	assert_int_equal(tc->ca_cert.len, 6);
	s2a_free(s);
	assert_int_equal(a->tls->sends, 1);
	assert_null(take(a)); /* sent once, not again by itself */
}

static void test_offer_status_and_resend(void **state)
{
	struct fx *x = *state;
	struct opd_hash plain, wrong = {.len = 32};
	struct opd_agent *a = offered_agent(x, &plain);
	opd_s2a *s = take(a);
	struct opd_hash offer = a->tls->offer_hash;

	s2a_free(s);
	/* APPLYING for our offer: noted, nothing resent. */
	s = send_cs_status(x, 1, &offer, 2, &x->conn_a);
	assert_int_equal(a->tls->offer, OPD_OFFER_APPLYING);
	assert_true(s->connection_settings == NULL ||
		    s->connection_settings->opamp->certificate == NULL);
	s2a_free(s);
	/* A status about another offer: ours goes again (the spec's MUST). */
	s = send_cs_status(x, 2, &wrong, 1, &x->conn_a);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp->certificate);
	assert_memory_equal(s->connection_settings->hash.data, offer.b, 32);
	s2a_free(s);
	assert_int_equal(a->tls->sends, 2);
	/* A new connection without the new certificate: the offer goes once more... */
	s = send_cs_status(x, 3, &wrong, 0, &x->conn_b);
	assert_non_null(s->connection_settings);
	assert_non_null(s->connection_settings->opamp->certificate);
	s2a_free(s);
	assert_int_equal(a->tls->sends, OPD_OFFER_MAX_SENDS);
	/* ...and after OPD_OFFER_MAX_SENDS it has failed, with a reason. */
	s = send_cs_status(x, 4, &plain, 0, &x->conn_a);
	assert_int_equal(a->tls->offer, OPD_OFFER_FAILED);
	assert_non_null(a->tls->message);
	assert_null(a->tls->pending);
	assert_true(s->connection_settings == NULL ||
		    s->connection_settings->opamp->certificate == NULL);
	s2a_free(s);
}

static void test_offer_applied_by_presenting(void **state)
{
	struct fx *x = *state;
	struct opd_hash plain;
	struct opd_agent *a = offered_agent(x, &plain);
	uint8_t fp[OPD_CERT_FP_LEN], other[OPD_CERT_FP_LEN] = {1};

	s2a_free(take(a));
	opd_session_cert_presented(a, other); /* the old certificate: still waiting */
	assert_int_equal(a->tls->offer, OPD_OFFER_OFFERED);
	assert_non_null(a->tls->pending);
	leaf_fp(fp);
	opd_session_cert_presented(a, fp);
	assert_int_equal(a->tls->offer, OPD_OFFER_APPLIED);
	assert_null(a->tls->pending); /* the private key is gone from memory */
	assert_memory_equal(a->tls->presented, fp, sizeof fp);
}

static void test_offer_failed_by_agent(void **state)
{
	struct fx *x = *state;
	struct opd_hash plain;
	struct opd_agent *a = offered_agent(x, &plain);
	struct opd_hash offer;
	opd_s2a *s;

	s2a_free(take(a));
	offer = a->tls->offer_hash;
	s = send_cs_status(x, 1, &offer, 3, &x->conn_a);
	s2a_free(s);
	assert_int_equal(a->tls->offer, OPD_OFFER_FAILED);
	assert_string_equal(a->tls->message, "cannot write the key file");
	assert_null(a->tls->pending);
	/* Not a certificate: refused, nothing changes. */
	{
		struct opd_cert_offer bad = server_offer;
		bad.cert_pem = "not a certificate";
		assert_int_equal(opd_session_offer_cert(&x->r, a, &bad, WALL0), OPD_EINVAL);
		assert_int_equal(a->tls->offer, OPD_OFFER_FAILED);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_first_full_message),
	    T(test_compressed_unknown_agent),
	    T(test_seq_gap_and_retry),
	    T(test_request_instance_uid),
	    T(test_remote_config_lifecycle),
	    T(test_failed_not_resent),
	    T(test_push_new_version),
	    T(test_stale_reports_do_not_resend),
	    T(test_push_http_agent),
	    T(test_http_lost_reply_resent),
	    T(test_no_accepts_remote_config),
	    T(test_connection_settings),
	    T(test_bad_uid),
	    T(test_agent_limit),
	    T(test_health_degraded),
	    T(test_phi_suspect),
	    T(test_sweep_http),
	    T(test_disconnect),
	    T(test_description_and_rendering),
	    T(test_effective_config_hash),
	    T(test_custom_capabilities),
	    T(test_error_reply),
	    T(test_no_desired_config),
	    T(test_csr_async_issue),
	    T(test_csr_sync_refused),
	    T(test_csr_sync_issue_and_unavailable),
	    T(test_csr_without_port),
	    T(test_offer_carries_cert_key_and_own_hash),
	    T(test_offer_status_and_resend),
	    T(test_offer_applied_by_presenting),
	    T(test_offer_failed_by_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
