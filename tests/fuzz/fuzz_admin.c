/*
 * Fuzz target: the admin REST API's handlers (opampd/admin.c) with their
 * JSON parsing, validation (raft_fsm/validate.c) and writes, which without a
 * node go straight through the state machine into an in-memory store
 * (configs.c, fsm.c, store.c). A registry with three agents gives the agent
 * endpoints something to list and filter.
 *
 * Input: requests separated by a line "%%". A request is a first line
 * "METHOD TARGET [IDEMPOTENCY-KEY]" and the body after it. The first line
 * may begin with '-' (no Authorization header) or '~' (the cluster's peer
 * token instead of the operator's); TARGET is the path with an optional
 * "?query".
 *
 * Checked: every request is answered at once (there is no node to wait
 * for), with a status from 100 to 599 and a JSON body.
 */
#include "admin.h"
#include "err.h"
#include "log.h"
#include "session.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "fuzz-operator-token-0123456789"
#define PEER_TOKEN "fuzz-peer-token-0123456789"
#define MAX_REQUESTS 16
#define MAX_LINE 1024

struct clock_state {
	uint64_t now, wall;
};

static uint64_t clock_now(void *data)
{
	return ((struct clock_state *)data)->now;
}

static uint64_t clock_wall(void *data)
{
	return ((struct clock_state *)data)->wall;
}

/* One key for the whole run, from a fixed seed: generating one per input would dominate. */
static struct opd_signer signer;

static void signer_init(void)
{
	static const uint8_t seed[32] = "opampd fuzz signing key seed!!!";
	size_t len = sizeof signer.public_key;

	signer.key = (struct evp_pkey_st *)EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
									seed, sizeof seed);
	if (signer.key == NULL ||
	    EVP_PKEY_get_raw_public_key((EVP_PKEY *)signer.key, signer.public_key, &len) != 1)
		abort();
	opd_sign_key_id(signer.public_key, signer.key_id);
}

static void configs_changed(void *data)
{
	opd_registry_configs_changed(data);
}

static void new_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	(void)data;
	memset(uid, 0x5a, OPD_UID_LEN);
}

/* Three agents with attributes, one unhealthy, one over HTTP. */
static void add_agents(struct opd_registry *r, uint64_t now, uint64_t wall)
{
	for (int i = 0; i < 3; i++) {
		opd_a2s m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
		Opamp__Proto__V1__AgentDescription d = OPAMP__PROTO__V1__AGENT_DESCRIPTION__INIT;
		Opamp__Proto__V1__KeyValue kv[2] = {OPAMP__PROTO__V1__KEY_VALUE__INIT,
						    OPAMP__PROTO__V1__KEY_VALUE__INIT};
		Opamp__Proto__V1__KeyValue *kvp[2] = {&kv[0], &kv[1]};
		Opamp__Proto__V1__AnyValue v[2] = {OPAMP__PROTO__V1__ANY_VALUE__INIT,
						   OPAMP__PROTO__V1__ANY_VALUE__INIT};
		Opamp__Proto__V1__ComponentHealth h = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
		uint8_t uid[OPD_UID_LEN];
		struct opd_agent *bound = NULL;
		struct opd_buf reply;

		memset(uid, 0x10 + i, sizeof uid);
		m.instance_uid.data = uid;
		m.instance_uid.len = sizeof uid;
		m.capabilities = 0x1 | 0x2 | 0x800 | 0x1000 | 0x2000;
		v[0].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
		v[0].string_value = i == 0 ? "checkout" : "cart";
		v[1].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
		v[1].string_value = i == 2 ? "staging" : "prod";
		kv[0].key = "service.name";
		kv[0].value = &v[0];
		kv[1].key = "deployment.environment";
		kv[1].value = &v[1];
		d.identifying_attributes = kvp;
		d.n_identifying_attributes = 1;
		d.non_identifying_attributes = kvp + 1;
		d.n_non_identifying_attributes = 1;
		m.agent_description = &d;
		h.healthy = i != 1;
		m.health = &h;
		opd_buf_init(&reply);
		(void)opd_session_receive(r, &bound, NULL,
					  i == 2 ? OPD_TRANSPORT_HTTP : OPD_TRANSPORT_WS, &m, now,
					  wall, &reply, NULL);
		opd_buf_fini(&reply);
	}
}

static void check_response(const struct opd_admin_response *resp)
{
	json_error_t err;
	json_t *j;

	if (resp->status < 100 || resp->status > 599 || resp->content_type == NULL)
		abort();
	j = json_loadb((const char *)opd_buf_rptr(&resp->body), opd_buf_avail(&resp->body), 0,
		       &err);
	if (j == NULL) {
		fprintf(stderr, "status %d, body is not JSON: %.*s\n", resp->status,
			(int)opd_buf_avail(&resp->body), (const char *)opd_buf_rptr(&resp->body));
		abort();
	}
	json_decref(j);
}

/* One request from one chunk of the input. */
static void handle(struct opd_admin *a, const char *p, size_t n)
{
	char line[MAX_LINE + 1], auth[128], *method, *target, *key, *q;
	const char *nl = memchr(p, '\n', n);
	size_t llen = nl != NULL ? (size_t)(nl - p) : n;
	struct opd_http_request req = {0};
	struct opd_admin_response resp;
	const char *tok = TOKEN;

	if (llen > MAX_LINE)
		return;
	memcpy(line, p, llen);
	line[llen] = '\0';
	method = line;
	if (*method == '-' || *method == '~') {
		tok = *method == '-' ? NULL : PEER_TOKEN;
		method++;
	}
	target = strchr(method, ' ');
	if (target != NULL)
		*target++ = '\0';
	else
		target = method + strlen(method);
	key = strchr(target, ' ');
	if (key != NULL)
		*key++ = '\0';
	q = strchr(target, '?');
	if (q != NULL)
		*q++ = '\0';
	req.method = method;
	req.path = target;
	req.query = q != NULL ? q : "";
	if (tok != NULL) {
		snprintf(auth, sizeof auth, "Bearer %s", tok);
		req.headers[req.n_headers].name = "Authorization";
		req.headers[req.n_headers++].value = auth;
	}
	if (key != NULL) {
		req.headers[req.n_headers].name = "Idempotency-Key";
		req.headers[req.n_headers++].value = key;
	}
	req.headers[req.n_headers].name = "Content-Type";
	req.headers[req.n_headers++].value = "application/json";
	req.body = nl != NULL ? (const uint8_t *)nl + 1 : (const uint8_t *)"";
	req.body_len = nl != NULL ? n - llen - 1 : 0;
	req.keep_alive = 1;

	opd_admin_response_init(&resp);
	if (opd_admin_handle(a, &req, NULL, &resp) != 0)
		abort(); /* without a node nothing is deferred */
	check_response(&resp);
	/* OPD_FUZZ_VERBOSE=1 shows what a corpus input does. */
	if (getenv("OPD_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%d %s %s?%s %.*s\n", resp.status, req.method, req.path, req.query,
			(int)opd_buf_avail(&resp.body), (const char *)opd_buf_rptr(&resp.body));
	opd_admin_response_fini(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct clock_state cs = {.now = 5000000, .wall = 1700000000000ull};
	struct opd_clock clock = {clock_now, clock_wall, &cs};
	struct opd_configs configs;
	struct opd_registry reg;
	struct opd_registry_settings s;
	struct opd_registry_ops ops = {0};
	struct opd_admin admin;
	const char *p = (const char *)data, *end = p + size;

	if (signer.key == NULL) {
		opd_log_init(OPD_LOG_ERROR);
		signer_init();
	}
	if (opd_configs_open(&configs, ":memory:", &clock) != 0)
		abort();
	configs.signer = &signer;
	opd_registry_settings_default(&s);
	ops.desired = opd_configs_desired;
	ops.new_uid = new_uid;
	ops.data = &configs;
	opd_registry_init(&reg, &s, &ops);
	configs.changed = configs_changed;
	configs.changed_data = &reg;
	opd_configs_ensure_key(&configs);
	add_agents(&reg, cs.now, cs.wall);

	opd_admin_init(&admin);
	admin.configs = &configs;
	admin.registry = &reg;
	admin.clock = &clock;
	admin.ready = 1;
	snprintf(admin.token, sizeof admin.token, "%s", TOKEN);
	snprintf(admin.peer_token, sizeof admin.peer_token, "%s", PEER_TOKEN);

	for (int i = 0; i < MAX_REQUESTS && p < end; i++) {
		const char *sep = memmem(p, (size_t)(end - p), "\n%%\n", 4);
		size_t n = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);

		handle(&admin, p, n);
		p += n + (sep != NULL ? 4 : 0);
		cs.now += 1000;
		cs.wall += 1000;
	}

	opd_admin_fini(&admin);
	opd_registry_fini(&reg);
	opd_configs_close(&configs);
	return 0;
}
