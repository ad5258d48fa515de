/*
 * Writes the seed corpora of the fuzz targets into DIR/<target>/seed-*:
 * real AgentToServer messages built with protobuf-c the way agents send
 * them, HTTP requests (plain, chunked, gzip, pipelined, WebSocket upgrade),
 * masked client WebSocket frames, admin API requests and framed Raft
 * commands (opd_cmd_encode). Run by hand when the formats change:
 *   build/tests/fuzz/fuzz_seeds tests/fuzz/corpus
 * The files are committed; the fuzzers' own finds are merged next to them.
 */
#include "cmd.h"
#include "config_hash.h"
#include "gzip.h"
#include "opamp/v1/opamp.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out_dir;

static void write_seed(const char *target, const char *name, const void *p, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", out_dir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof path, "%s/%s/seed-%s", out_dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void write_str(const char *target, const char *name, const char *s)
{
	write_seed(target, name, s, strlen(s));
}

static void write_buf(const char *target, const char *name, const struct opd_buf *b)
{
	write_seed(target, name, opd_buf_rptr(b), opd_buf_avail(b));
}

/* ------------------------------------------------------------ AgentToServer */

#define CAP_STATUS 0x1u
#define CAP_ACCEPTS_RC 0x2u
#define CAP_EFFECTIVE 0x4u
#define CAP_OPAMP_SETTINGS 0x100u
#define CAP_HEALTH 0x800u
#define CAP_REPORTS_RC 0x1000u
#define CAP_HEARTBEAT 0x2000u
#define CAPS_ALL                                                                                   \
	(CAP_STATUS | CAP_ACCEPTS_RC | CAP_EFFECTIVE | CAP_OPAMP_SETTINGS | CAP_HEALTH |           \
	 CAP_REPORTS_RC | CAP_HEARTBEAT)

enum kind { FULL, HEARTBEAT, REQUEST_UID, DISCONNECT, BAD_UID, REPORT_APPLIED, CSR_NOW, CSR_LATER };

/* The packed message (no WebSocket header) into out. */
static void a2s(enum kind k, uint8_t uid_byte, uint64_t seq, struct opd_buf *out)
{
	Opamp__Proto__V1__AgentToServer m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
	Opamp__Proto__V1__AgentDescription d = OPAMP__PROTO__V1__AGENT_DESCRIPTION__INIT;
	Opamp__Proto__V1__KeyValue kv[5], kvn[2], *kvp[5], *kvnp[2];
	Opamp__Proto__V1__AnyValue v[5], av[3], *avp[3];
	Opamp__Proto__V1__ArrayValue arr = OPAMP__PROTO__V1__ARRAY_VALUE__INIT;
	Opamp__Proto__V1__KeyValueList kvl = OPAMP__PROTO__V1__KEY_VALUE_LIST__INIT;
	Opamp__Proto__V1__ComponentHealth h = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT,
					  sub = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry he =
	    OPAMP__PROTO__V1__COMPONENT_HEALTH__COMPONENT_HEALTH_MAP_ENTRY__INIT;
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *hep = &he;
	Opamp__Proto__V1__EffectiveConfig ec = OPAMP__PROTO__V1__EFFECTIVE_CONFIG__INIT;
	Opamp__Proto__V1__AgentConfigMap cm = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry ce =
	    OPAMP__PROTO__V1__AGENT_CONFIG_MAP__CONFIG_MAP_ENTRY__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *cep = &ce;
	Opamp__Proto__V1__AgentConfigFile cf = OPAMP__PROTO__V1__AGENT_CONFIG_FILE__INIT;
	Opamp__Proto__V1__RemoteConfigStatus rcs = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUS__INIT;
	Opamp__Proto__V1__CustomCapabilities cc = OPAMP__PROTO__V1__CUSTOM_CAPABILITIES__INIT;
	Opamp__Proto__V1__ConnectionSettingsStatus css =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_STATUS__INIT;
	Opamp__Proto__V1__AgentDisconnect dis = OPAMP__PROTO__V1__AGENT_DISCONNECT__INIT;
	Opamp__Proto__V1__ConnectionSettingsRequest csreq =
	    OPAMP__PROTO__V1__CONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__OpAMPConnectionSettingsRequest ocsr =
	    OPAMP__PROTO__V1__OP_AMPCONNECTION_SETTINGS_REQUEST__INIT;
	Opamp__Proto__V1__CertificateRequest creq = OPAMP__PROTO__V1__CERTIFICATE_REQUEST__INIT;
	/* The fuzz target's signing port answers by the first byte: issued at once, unavailable
	 * later. */
	static uint8_t csr_now[] = "\x06-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n";
	static uint8_t csr_later[] = "\x02-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n";
	static char *caps[] = {"io.opampd.config-signature", "io.opentelemetry.pause"};
	static const char *keys[5] = {"service.name", "service.instance.id", "host.arch",
				      "process.pid", "labels"};
	uint8_t uid[16], rc_hash[32];
	size_t n;

	memset(uid, uid_byte, sizeof uid);
	memset(rc_hash, 0xc1, sizeof rc_hash);
	m.instance_uid.data = uid;
	m.instance_uid.len = k == BAD_UID ? 15 : 16;
	m.sequence_num = seq;
	m.capabilities = CAPS_ALL;
	for (int i = 0; i < 5; i++) {
		kv[i] = (Opamp__Proto__V1__KeyValue)OPAMP__PROTO__V1__KEY_VALUE__INIT;
		v[i] = (Opamp__Proto__V1__AnyValue)OPAMP__PROTO__V1__ANY_VALUE__INIT;
		kv[i].key = (char *)keys[i];
		kv[i].value = &v[i];
		kvp[i] = &kv[i];
	}
	v[0].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	v[0].string_value = "otelcol-contrib";
	v[1].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BYTES_VALUE;
	v[1].bytes_value.data = uid;
	v[1].bytes_value.len = sizeof uid;
	v[2].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
	v[2].double_value = 0.1;
	v[3].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_INT_VALUE;
	v[3].int_value = -4242;
	for (int i = 0; i < 3; i++) {
		av[i] = (Opamp__Proto__V1__AnyValue)OPAMP__PROTO__V1__ANY_VALUE__INIT;
		avp[i] = &av[i];
	}
	av[0].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_BOOL_VALUE;
	av[0].bool_value = 1;
	av[1].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av[1].string_value = "quote\" and \\ and \x01";
	kvn[0] = (Opamp__Proto__V1__KeyValue)OPAMP__PROTO__V1__KEY_VALUE__INIT;
	kvn[0].key = "nested";
	kvn[0].value = &av[0];
	kvnp[0] = &kvn[0];
	kvl.values = kvnp;
	kvl.n_values = 1;
	av[2].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
	av[2].kvlist_value = &kvl;
	arr.values = avp;
	arr.n_values = 3;
	v[4].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
	v[4].array_value = &arr;
	d.identifying_attributes = kvp;
	d.n_identifying_attributes = 2;
	d.non_identifying_attributes = kvp + 2;
	d.n_non_identifying_attributes = 3;

	switch (k) {
	case FULL:
	case BAD_UID:
		m.agent_description = &d;
		h.healthy = 1;
		h.status = "StatusOK";
		h.start_time_unix_nano = 1700000000000000000ull;
		sub.healthy = 0;
		sub.last_error = "exporter otlp: connection refused";
		he.key = "pipeline:traces";
		he.value = &sub;
		h.component_health_map = &hep;
		h.n_component_health_map = 1;
		m.health = &h;
		cf.body.data = (uint8_t *)"receivers: {otlp: {}}\n";
		cf.body.len = strlen((const char *)cf.body.data);
		cf.content_type = "text/yaml";
		ce.key = "collector.yaml";
		ce.value = &cf;
		cm.config_map = &cep;
		cm.n_config_map = 1;
		ec.config_map = &cm;
		m.effective_config = &ec;
		rcs.status = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_UNSET;
		m.remote_config_status = &rcs;
		cc.capabilities = caps;
		cc.n_capabilities = 2;
		m.custom_capabilities = &cc;
		m.connection_settings_status = &css;
		break;
	case REPORT_APPLIED:
		rcs.status = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_APPLIED;
		rcs.last_remote_config_hash.data = rc_hash;
		rcs.last_remote_config_hash.len = sizeof rc_hash;
		rcs.error_message = "";
		m.remote_config_status = &rcs;
		break;
	case REQUEST_UID:
		m.flags =
		    OPAMP__PROTO__V1__AGENT_TO_SERVER_FLAGS__AgentToServerFlags_RequestInstanceUid;
		m.agent_description = &d;
		break;
	case DISCONNECT:
		m.agent_disconnect = &dis;
		break;
	case CSR_NOW:
	case CSR_LATER:
		creq.csr.data = k == CSR_NOW ? csr_now : csr_later;
		creq.csr.len = sizeof csr_now - 1;
		ocsr.certificate_request = &creq;
		csreq.opamp = &ocsr;
		m.connection_settings_request = &csreq;
		break;
	case HEARTBEAT:
		break;
	}
	n = opamp__proto__v1__agent_to_server__get_packed_size(&m);
	opamp__proto__v1__agent_to_server__pack(&m, opd_buf_reserve(out, n));
	opd_buf_commit(out, n);
}

/* ------------------------------------------------------------------ HTTP */

static void http_seed(const char *name, uint8_t split, uint8_t limits, const void *p, size_t n)
{
	struct opd_buf b;

	opd_buf_init(&b);
	opd_buf_append_byte(&b, split);
	opd_buf_append_byte(&b, limits);
	opd_buf_append(&b, p, n);
	write_buf("http", name, &b);
	opd_buf_fini(&b);
}

static void http_seed_str(const char *name, uint8_t split, uint8_t limits, const char *s)
{
	http_seed(name, split, limits, s, strlen(s));
}

static void http_seeds(void)
{
	struct opd_buf msg, gz, req;

	opd_buf_init(&msg);
	opd_buf_init(&gz);
	opd_buf_init(&req);
	a2s(FULL, 0x11, 1, &msg);

	opd_buf_appendf(&req,
			"POST /v1/opamp HTTP/1.1\r\nHost: localhost:4320\r\n"
			"Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n"
			"Accept-Encoding: gzip, deflate;q=0.5, br;q=0\r\n\r\n",
			opd_buf_avail(&msg));
	opd_buf_append(&req, opd_buf_rptr(&msg), opd_buf_avail(&msg));
	http_seed("post-protobuf", 40, 0x80, opd_buf_rptr(&req), opd_buf_avail(&req));

	if (opd_gzip_deflate(opd_buf_rptr(&msg), opd_buf_avail(&msg), &gz) != 0)
		exit(1);
	opd_buf_reset(&req);
	opd_buf_appendf(&req,
			"POST /v1/opamp HTTP/1.1\r\nHost: localhost\r\n"
			"Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n"
			"Content-Length: %zu\r\n\r\n",
			opd_buf_avail(&gz));
	opd_buf_append(&req, opd_buf_rptr(&gz), opd_buf_avail(&gz));
	http_seed("post-gzip", 100, 0x80, opd_buf_rptr(&req), opd_buf_avail(&req));

	opd_buf_reset(&req);
	opd_buf_appendf(&req,
			"POST /v1/opamp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
			"Content-Type: application/x-protobuf\r\n\r\n%zx;ext=1\r\n",
			opd_buf_avail(&msg) / 2);
	opd_buf_append(&req, opd_buf_rptr(&msg), opd_buf_avail(&msg) / 2);
	opd_buf_appendf(&req, "\r\n%zx\r\n", opd_buf_avail(&msg) - opd_buf_avail(&msg) / 2);
	opd_buf_append(&req, opd_buf_rptr(&msg) + opd_buf_avail(&msg) / 2,
		       opd_buf_avail(&msg) - opd_buf_avail(&msg) / 2);
	opd_buf_appendf(&req, "\r\n0\r\nX-Trailer: 1\r\n\r\n");
	http_seed("post-chunked", 77, 0x80, opd_buf_rptr(&req), opd_buf_avail(&req));

	http_seed_str("upgrade", 30, 0x80,
		      "GET /v1/opamp HTTP/1.1\r\nHost: localhost:4320\r\n"
		      "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
		      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		      "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer abc\r\n\r\n"
		      "\x82\x81\x01\x02\x03\x04\x01");
	http_seed_str("pipelined", 20, 0x80,
		      "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
		      "GET /api/v1/agents?health=down&attr.service.name=x HTTP/1.1\r\n"
		      "Authorization: Bearer t\r\nConnection: close\r\n\r\n"
		      "POST /api/v1/configs/web HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
	http_seed_str("http10", 5, 0x80,
		      "GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Multi: a,\r\n b\r\n\r\n");
	http_seed_str("small-limits", 10, 0x05,
		      "POST /v1/opamp HTTP/1.1\r\nHost: a-rather-long-host-name.example\r\n"
		      "Content-Length: 100\r\n\r\n0123456789");
	http_seed_str("bad-header", 3, 0x80, "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
	http_seed_str("no-value", 3, 0x80, "GET / HTTP/1.1\r\nX-Empty:\r\nX-Sp:   \t\r\n\r\n");
	opd_buf_fini(&msg);
	opd_buf_fini(&gz);
	opd_buf_fini(&req);
}

/* ------------------------------------------------------------- WebSocket */

/* A client frame: masked, with the given FIN bit and opcode. */
static void frame(struct opd_buf *b, int fin, uint8_t op, const void *p, size_t n)
{
	static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	const uint8_t *s = p;

	opd_buf_append_byte(b, (uint8_t)((fin ? 0x80 : 0) | op));
	if (n < 126) {
		opd_buf_append_byte(b, (uint8_t)(0x80 | n));
	} else if (n < 65536) {
		opd_buf_append_byte(b, 0x80 | 126);
		opd_buf_append_byte(b, (uint8_t)(n >> 8));
		opd_buf_append_byte(b, (uint8_t)n);
	} else {
		opd_buf_append_byte(b, 0x80 | 127);
		for (int i = 7; i >= 0; i--)
			opd_buf_append_byte(b, (uint8_t)((uint64_t)n >> (8 * i)));
	}
	opd_buf_append(b, mask, 4);
	for (size_t i = 0; i < n; i++)
		opd_buf_append_byte(b, s[i] ^ mask[i % 4]);
}

static void ws_seeds(void)
{
	struct opd_buf msg, b;
	static const uint8_t close_payload[] = {0x03, 0xe8, 'b', 'y', 'e'};

	opd_buf_init(&msg);
	opd_buf_init(&b);
	opd_buf_append_byte(&msg, 0); /* the OpAMP header */
	a2s(FULL, 0x22, 0, &msg);

	opd_buf_append_byte(&b, 255);
	opd_buf_append_byte(&b, 1);
	frame(&b, 1, 0x2, opd_buf_rptr(&msg), opd_buf_avail(&msg));
	frame(&b, 1, 0x9, "ping", 4);
	frame(&b, 1, 0x2, "\0", 1);
	frame(&b, 1, 0x8, close_payload, sizeof close_payload);
	write_buf("ws", "message-ping-close", &b);

	opd_buf_reset(&b);
	opd_buf_append_byte(&b, 40);
	opd_buf_append_byte(&b, 7);
	frame(&b, 0, 0x2, opd_buf_rptr(&msg), 10);
	frame(&b, 1, 0xa, "", 0);
	frame(&b, 0, 0x0, opd_buf_rptr(&msg) + 10, 20);
	frame(&b, 1, 0x9, "", 0);
	frame(&b, 1, 0x0, opd_buf_rptr(&msg) + 30, opd_buf_avail(&msg) - 30);
	write_buf("ws", "fragmented", &b);

	opd_buf_reset(&b);
	opd_buf_append_byte(&b, 2); /* max_msg 17: the 200-byte frame is too big */
	opd_buf_append_byte(&b, 3);
	frame(&b, 1, 0x2, "0123456789", 10);
	frame(&b, 1, 0x2, opd_buf_rptr(&msg), 200);
	write_buf("ws", "too-big", &b);

	opd_buf_reset(&b);
	opd_buf_append_byte(&b, 100);
	opd_buf_append_byte(&b, 9);
	frame(&b, 1, 0x1, "text is refused", 15);
	write_buf("ws", "text", &b);

	opd_buf_reset(&b);
	opd_buf_append_byte(&b, 255);
	opd_buf_append_byte(&b, 200);
	for (int i = 0; i < 80; i++)
		frame(&b, 1, 0x9, "flood", 5);
	write_buf("ws", "ping-flood", &b);

	opd_buf_reset(&b);
	opd_buf_append_byte(&b, 255);
	opd_buf_append_byte(&b, 11);
	opd_buf_append(&b, "\x82\x05hello", 7); /* unmasked: a protocol error */
	write_buf("ws", "unmasked", &b);

	opd_buf_fini(&msg);
	opd_buf_fini(&b);
}

/* ---------------------------------------------------------- wire + session */

static void record(struct opd_buf *b, uint8_t ctl, int ws, enum kind k, uint8_t uid, uint64_t seq)
{
	struct opd_buf m;

	opd_buf_init(&m);
	if (ws)
		opd_buf_append_byte(&m, 0);
	a2s(k, uid, seq, &m);
	opd_buf_append_byte(b, ctl);
	opd_buf_append_byte(b, (uint8_t)opd_buf_avail(&m));
	opd_buf_append_byte(b, (uint8_t)(opd_buf_avail(&m) >> 8));
	opd_buf_append(b, opd_buf_rptr(&m), opd_buf_avail(&m));
	opd_buf_fini(&m);
}

#define WS_A 0x00
#define WS_B 0x02
#define HTTP 0x01
#define ADV(i) ((uint8_t)((i) << 2))
#define CHANGE 0x20
#define CLOSE 0x40
#define SWEEP 0x80

static void session_seeds(void)
{
	struct opd_buf b;

	opd_buf_init(&b);
	record(&b, WS_A, 1, FULL, 0x31, 0);
	record(&b, WS_A | ADV(4), 1, HEARTBEAT, 0x31, 1);
	record(&b, WS_A | ADV(2), 1, REPORT_APPLIED, 0x31, 2);
	record(&b, WS_A | CHANGE | ADV(3), 1, HEARTBEAT, 0x31, 3);
	record(&b, WS_A | ADV(4), 1, HEARTBEAT, 0x31, 7); /* a gap */
	record(&b, WS_A | CLOSE, 1, DISCONNECT, 0x31, 8);
	write_buf("wire_session", "ws-lifecycle", &b);

	opd_buf_reset(&b);
	record(&b, HTTP, 0, FULL, 0x41, 1);
	record(&b, HTTP | ADV(4) | SWEEP, 0, HEARTBEAT, 0x41, 2);
	record(&b, HTTP | ADV(6) | SWEEP, 0, HEARTBEAT, 0x41, 2); /* a retry, late */
	record(&b, HTTP | ADV(7) | SWEEP, 0, HEARTBEAT, 0x41, 3);
	write_buf("wire_session", "http-poll", &b);

	opd_buf_reset(&b);
	record(&b, WS_A, 1, REQUEST_UID, 0x51, 0);
	record(&b, WS_A, 1, REQUEST_UID, 0x51, 1); /* asks again before switching */
	record(&b, WS_B, 1, FULL, 0x52, 0);
	record(&b, WS_B, 1, FULL, 0x31, 0); /* another agent on the same connection */
	record(&b, WS_A | CLOSE, 1, HEARTBEAT, 0x52, 5);
	record(&b, HTTP, 0, FULL, 0x31, 1); /* moves to HTTP */
	record(&b, WS_B | CLOSE | SWEEP, 1, BAD_UID, 0x31, 2);
	write_buf("wire_session", "uids-and-conns", &b);

	opd_buf_reset(&b);
	for (uint8_t i = 0; i < 8; i++)
		record(&b, (uint8_t)(i & 1 ? HTTP : WS_A), !(i & 1), FULL, (uint8_t)(0x60 + i), 0);
	write_buf("wire_session", "agent-limit", &b);

	opd_buf_reset(&b);
	record(&b, WS_A, 1, FULL, 0x71, 0);
	record(&b, WS_A, 1, CSR_NOW, 0x71, 1);
	record(&b, WS_A, 1, CSR_LATER, 0x71, 2);
	record(&b, HTTP, 0, CSR_LATER, 0x72, 0);
	record(&b, WS_A | CLOSE, 1, HEARTBEAT, 0x71, 3);
	write_buf("wire_session", "csr", &b);

	opd_buf_reset(&b);
	opd_buf_append(&b, "\x00\x03\x00\x01\x0a\x00", 6); /* a non-zero header */
	opd_buf_append(&b, "\x01\x02\x00\x0a\xff", 5);     /* a truncated field */
	write_buf("wire_session", "undecodable", &b);
	opd_buf_fini(&b);
}

/* ----------------------------------------------------------------- admin */

static void admin_seeds(void)
{
	write_str("admin", "publish-get",
		  "POST /api/v1/configs/web key-0001\n"
		  "{\"selector\": {\"service.name\": \"checkout\"}, \"priority\": 5, "
		  "\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", "
		  "\"body\": \"receivers:\\n  otlp: {}\\n\"}}, \"message\": \"first\"}\n%%\n"
		  "POST /api/v1/configs/web key-0001\n"
		  "{\"selector\": {\"service.name\": \"checkout\"}, \"priority\": 5, "
		  "\"files\": {\"c.yaml\": {\"content_type\": \"text/yaml\", "
		  "\"body\": \"receivers:\\n  otlp: {}\\n\"}}, \"message\": \"first\"}\n%%\n"
		  "GET /api/v1/configs/web\n%%\n"
		  "GET /api/v1/configs/web/versions/1\n%%\n"
		  "GET /api/v1/configs\n%%\n"
		  "GET /api/v1/agents?attr.service.name=checkout&connected=true\n%%\n"
		  "GET /api/v1/agents/10101010101010101010101010101010");
	write_str("admin", "rollback-delete",
		  "POST /api/v1/configs/a\n{\"files\": {\"a\": {\"content_type\": \"text/plain\", "
		  "\"body_base64\": \"eA==\"}}}\n%%\n"
		  "POST /api/v1/configs/a\n{\"files\": {\"a\": {\"content_type\": \"text/plain\", "
		  "\"body\": \"y\"}}, \"priority\": -3, \"selector\": null}\n%%\n"
		  "POST /api/v1/configs/a/rollback\n{\"version\": 1}\n%%\n"
		  "GET /api/v1/audit?limit=5\n%%\n"
		  "DELETE /api/v1/configs/a\n%%\n"
		  "GET /api/v1/configs/a");
	write_str("admin", "errors",
		  "-GET /api/v1/configs\n%%\n"
		  "GET /api/v1/configs/%zz\n%%\n"
		  "POST /api/v1/configs/x\n{\"files\": {\"b.yaml\": {\"content_type\": "
		  "\"text/yaml\", \"body\": \"a: [1\\n\"}}}\n%%\n"
		  "POST /api/v1/configs/x\n{\"message\": \"a\\u0000b\"}\n%%\n"
		  "GET /api/v1/agents?health=sick\n%%\n"
		  "PUT /api/v1/signing-keys\n%%\n"
		  "GET /api/v1/signing-keys\n%%\n"
		  "POST /api/v1/tls/reload\n%%\n"
		  "GET /api/v1/cluster\n%%\n"
		  "GET /healthz\n%%\n"
		  "GET /readyz\n%%\n"
		  "~GET /internal/v1/agents\n%%\n"
		  "GET /internal/v1/agents");
}

/* ---------------------------------------------------------------- commands */

static void encode(struct opd_buf *b, Opampd__V1__Command *c, uint8_t req_byte)
{
	static uint8_t rid[16];

	memset(rid, req_byte, sizeof rid);
	c->request_id.data = rid;
	c->request_id.len = req_byte ? sizeof rid : 0;
	c->hlc_wall_ms = 1700000000000ull + req_byte;
	c->actor = "operator";
	c->term = 2;
	if (opd_cmd_encode(c, b) != 0)
		exit(1);
}

static void cmd_seeds(void)
{
	Opampd__V1__Command c;
	Opampd__V1__PutVersion pv = OPAMPD__V1__PUT_VERSION__INIT;
	Opampd__V1__File f[2] = {OPAMPD__V1__FILE__INIT, OPAMPD__V1__FILE__INIT}, *fp[2];
	Opampd__V1__Pair pr = OPAMPD__V1__PAIR__INIT, *prp = &pr;
	Opampd__V1__SetSelector ss = OPAMPD__V1__SET_SELECTOR__INIT;
	Opampd__V1__SetActive sa = OPAMPD__V1__SET_ACTIVE__INIT;
	Opampd__V1__DeleteConfig dc = OPAMPD__V1__DELETE_CONFIG__INIT;
	Opampd__V1__AddSigningKey ak = OPAMPD__V1__ADD_SIGNING_KEY__INIT;
	Opampd__V1__RetireSigningKey rk = OPAMPD__V1__RETIRE_SIGNING_KEY__INIT;
	Opampd__V1__SetMember sm = OPAMPD__V1__SET_MEMBER__INIT;
	Opampd__V1__RemoveMember rm = OPAMPD__V1__REMOVE_MEMBER__INIT;
	static uint8_t pub[32], sig[64];
	uint8_t hash[OPD_CONFIG_HASH_LEN];
	struct opd_files files;
	struct opd_buf b;

	opd_buf_init(&b);
	memset(pub, 0x42, sizeof pub);
	memset(sig, 0x24, sizeof sig);
	f[0].name = "a.yaml";
	f[0].content_type = "text/yaml";
	f[0].body.data = (uint8_t *)"a: 1\n";
	f[0].body.len = 5;
	f[1].name = "b.txt";
	f[1].content_type = "text/plain";
	f[1].body.data = (uint8_t *)"bee";
	f[1].body.len = 3;
	fp[0] = &f[0];
	fp[1] = &f[1];
	opd_files_init(&files);
	for (int i = 0; i < 2; i++)
		opd_files_add(&files, f[i].name, f[i].content_type, f[i].body.data, f[i].body.len);
	opd_files_sort(&files);
	opd_config_hash(&files, hash);
	opd_files_fini(&files);
	pr.key = "service.name";
	pr.value = "checkout";

	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	ak.key_id = "4242424242424242";
	ak.public_key.data = pub;
	ak.public_key.len = sizeof pub;
	ak.activate = 1;
	c.op_case = OPAMPD__V1__COMMAND__OP_ADD_SIGNING_KEY;
	c.add_signing_key = &ak;
	encode(&b, &c, 1);

	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	pv.name = "web";
	pv.selector = &prp;
	pv.n_selector = 1;
	pv.priority = 5;
	pv.files = fp;
	pv.n_files = 2;
	pv.config_hash.data = hash;
	pv.config_hash.len = sizeof hash;
	pv.message = "first";
	pv.version = 1;
	pv.signature.data = sig;
	pv.signature.len = sizeof sig;
	pv.key_id = "4242424242424242";
	c.op_case = OPAMPD__V1__COMMAND__OP_PUT_VERSION;
	c.put_version = &pv;
	encode(&b, &c, 2);
	encode(&b, &c, 2); /* the same request again: a duplicate */
	pv.version = 2;
	pv.priority = 6;
	encode(&b, &c, 3);
	write_buf("cmd_apply", "keys-and-versions", &b);

	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	ss.name = "web";
	ss.selector = &prp;
	ss.n_selector = 1;
	ss.has_selector = 1;
	ss.priority = -1;
	ss.has_priority = 1;
	c.op_case = OPAMPD__V1__COMMAND__OP_SET_SELECTOR;
	c.set_selector = &ss;
	encode(&b, &c, 4);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	sa.name = "web";
	sa.version = 1;
	c.op_case = OPAMPD__V1__COMMAND__OP_SET_ACTIVE;
	c.set_active = &sa;
	encode(&b, &c, 5);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	rk.key_id = "4242424242424242";
	c.op_case = OPAMPD__V1__COMMAND__OP_RETIRE_SIGNING_KEY;
	c.retire_signing_key = &rk;
	encode(&b, &c, 6);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	dc.name = "web";
	c.op_case = OPAMPD__V1__COMMAND__OP_DELETE_CONFIG;
	c.delete_config = &dc;
	encode(&b, &c, 7);
	write_buf("cmd_apply", "all-config-ops", &b);

	opd_buf_reset(&b);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	sm.id = 1;
	sm.raft_address = "127.0.0.1:9001";
	sm.admin_url = "http://127.0.0.1:8081";
	c.op_case = OPAMPD__V1__COMMAND__OP_SET_MEMBER;
	c.set_member = &sm;
	encode(&b, &c, 8);
	sm.id = 2;
	encode(&b, &c, 0);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	rm.id = 1;
	c.op_case = OPAMPD__V1__COMMAND__OP_REMOVE_MEMBER;
	c.remove_member = &rm;
	encode(&b, &c, 9);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT; /* no operation */
	encode(&b, &c, 10);
	write_buf("cmd_apply", "members", &b);

	/* The fleet CA and agent certificates. */
	opd_buf_reset(&b);
	{
		static const char ca_fp[] =
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
		static const char ca2_fp[] =
		    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
		static const char cert_fp[] =
		    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
		static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END "
					  "CERTIFICATE-----\n";
		static uint8_t uid[16];
		Opampd__V1__AddCA ca = OPAMPD__V1__ADD_CA__INIT;
		Opampd__V1__IssueCertificate ic = OPAMPD__V1__ISSUE_CERTIFICATE__INIT;
		Opampd__V1__RevokeCertificate rv = OPAMPD__V1__REVOKE_CERTIFICATE__INIT;
		Opampd__V1__ActivateCA act = OPAMPD__V1__ACTIVATE_CA__INIT;
		Opampd__V1__RetireCA ret = OPAMPD__V1__RETIRE_CA__INIT;
		Opampd__V1__StartRotation rot = OPAMPD__V1__START_ROTATION__INIT;

		memset(uid, 0x5a, sizeof uid);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		ca.fingerprint = (char *)ca_fp;
		ca.subject = "CN=opampd fleet CA";
		ca.cert_pem = (char *)pem;
		ca.not_before = 1700000000;
		ca.not_after = 2000000000;
		ca.activate = 1;
		c.op_case = OPAMPD__V1__COMMAND__OP_ADD_CA;
		c.add_ca = &ca;
		encode(&b, &c, 20);
		ca.fingerprint = (char *)ca2_fp;
		ca.activate = 0;
		encode(&b, &c, 21);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		ic.serial = 1;
		ic.instance_uid.data = uid;
		ic.instance_uid.len = sizeof uid;
		ic.subject = "CN=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
		ic.not_before = 1700000000;
		ic.not_after = 1800000000;
		ic.fingerprint = (char *)cert_fp;
		ic.cert_pem = (char *)pem;
		ic.reason = "csr";
		ic.ca_fingerprint = (char *)ca_fp;
		c.op_case = OPAMPD__V1__COMMAND__OP_ISSUE_CERTIFICATE;
		c.issue_certificate = &ic;
		encode(&b, &c, 22);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		rot.rotation_id = "rot-1";
		rot.selector = &prp;
		rot.n_selector = 1;
		c.op_case = OPAMPD__V1__COMMAND__OP_START_ROTATION;
		c.start_rotation = &rot;
		encode(&b, &c, 23);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		act.fingerprint = (char *)ca2_fp;
		c.op_case = OPAMPD__V1__COMMAND__OP_ACTIVATE_CA;
		c.activate_ca = &act;
		encode(&b, &c, 24);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		rv.serial = 1;
		rv.reason = "keyCompromise";
		c.op_case = OPAMPD__V1__COMMAND__OP_REVOKE_CERTIFICATE;
		c.revoke_certificate = &rv;
		encode(&b, &c, 25);
		c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
		ret.fingerprint = (char *)ca_fp;
		c.op_case = OPAMPD__V1__COMMAND__OP_RETIRE_CA;
		c.retire_ca = &ret;
		encode(&b, &c, 26);
		write_buf("cmd_apply", "certificates", &b);
	}

	/* config_hash of one byte: the fuzz target sorts the files and fills the hash in. */
	opd_buf_reset(&b);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	fp[0] = &f[1];
	fp[1] = &f[0];
	pv.config_hash.len = 1;
	pv.version = 1;
	pv.signature.len = 0;
	pv.key_id = "";
	c.op_case = OPAMPD__V1__COMMAND__OP_PUT_VERSION;
	c.put_version = &pv;
	encode(&b, &c, 11);
	pv.version = 2;
	pv.n_files = 1;
	encode(&b, &c, 12);
	pv.name = "other";
	pv.version = 1;
	encode(&b, &c, 13);
	c = (Opampd__V1__Command)OPAMPD__V1__COMMAND__INIT;
	sa.name = "web";
	sa.version = 1;
	c.op_case = OPAMPD__V1__COMMAND__OP_SET_ACTIVE;
	c.set_active = &sa;
	encode(&b, &c, 14);
	write_buf("cmd_apply", "put-hash-filled-in", &b);

	opd_buf_reset(&b);
	opd_buf_append(&b, "\x10\x00\x00\x00\x00\x00\x00\x00\x0a\x02", 10); /* truncated */
	write_buf("cmd_apply", "truncated", &b);
	opd_buf_fini(&b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
		perror(out_dir);
		return 1;
	}
	http_seeds();
	ws_seeds();
	session_seeds();
	admin_seeds();
	cmd_seeds();
	return 0;
}
