/* The OpAMP wire codec: WebSocket header, size limits, protobuf errors, allocation failures. */
#include "err.h"
#include "wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const uint8_t UID[16] = {0x01, 0x8f, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

/* A ProtobufCAllocator that counts live blocks and fails the fail_at-th allocation. */
struct fail_alloc {
	ProtobufCAllocator a;
	long calls;
	long fail_at; /* -1: never */
	long live;
};

static void *fa_alloc(void *data, size_t n)
{
	struct fail_alloc *fa = data;
	void *p;

	if (fa->calls++ == fa->fail_at)
		return NULL;
	p = malloc(n);
	if (p != NULL)
		fa->live++;
	return p;
}

static void fa_free(void *data, void *p)
{
	struct fail_alloc *fa = data;

	if (p != NULL) {
		fa->live--;
		free(p);
	}
}

static void fa_init(struct fail_alloc *fa, long fail_at)
{
	*fa = (struct fail_alloc){{fa_alloc, fa_free, NULL}, 0, fail_at, 0};
	fa->a.allocator_data = fa;
}

/* Pack a rich AgentToServer (every kind of sub-message) with the WebSocket header. */
static uint8_t *rich_message(size_t *len)
{
	opd_a2s m = OPAMP__PROTO__V1__AGENT_TO_SERVER__INIT;
	Opamp__Proto__V1__AgentDescription d = OPAMP__PROTO__V1__AGENT_DESCRIPTION__INIT;
	Opamp__Proto__V1__KeyValue kv[3], *ident[2], *nonident[1], *inner[1];
	Opamp__Proto__V1__AnyValue av[5], *arr[2];
	Opamp__Proto__V1__ArrayValue array = OPAMP__PROTO__V1__ARRAY_VALUE__INIT;
	Opamp__Proto__V1__KeyValueList kvl = OPAMP__PROTO__V1__KEY_VALUE_LIST__INIT;
	Opamp__Proto__V1__ComponentHealth h = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
	Opamp__Proto__V1__ComponentHealth child = OPAMP__PROTO__V1__COMPONENT_HEALTH__INIT;
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry he =
	    OPAMP__PROTO__V1__COMPONENT_HEALTH__COMPONENT_HEALTH_MAP_ENTRY__INIT;
	Opamp__Proto__V1__ComponentHealth__ComponentHealthMapEntry *hes[1] = {&he};
	Opamp__Proto__V1__EffectiveConfig ec = OPAMP__PROTO__V1__EFFECTIVE_CONFIG__INIT;
	Opamp__Proto__V1__AgentConfigMap cm = OPAMP__PROTO__V1__AGENT_CONFIG_MAP__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry ce =
	    OPAMP__PROTO__V1__AGENT_CONFIG_MAP__CONFIG_MAP_ENTRY__INIT;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *ces[1] = {&ce};
	Opamp__Proto__V1__AgentConfigFile cf = OPAMP__PROTO__V1__AGENT_CONFIG_FILE__INIT;
	Opamp__Proto__V1__RemoteConfigStatus rcs = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUS__INIT;
	Opamp__Proto__V1__CustomCapabilities cc = OPAMP__PROTO__V1__CUSTOM_CAPABILITIES__INIT;
	char *caps[2] = {"io.opentelemetry.pause", "com.example/v2"};
	uint8_t *p;

	for (int i = 0; i < 3; i++)
		opamp__proto__v1__key_value__init(&kv[i]);
	for (int i = 0; i < 5; i++)
		opamp__proto__v1__any_value__init(&av[i]);
	av[0].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av[0].string_value = "checkout";
	kv[0].key = "service.name";
	kv[0].value = &av[0];
	av[1].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_INT_VALUE;
	av[1].int_value = 42;
	av[2].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av[2].string_value = "x";
	arr[0] = &av[1];
	arr[1] = &av[2];
	array.n_values = 2;
	array.values = arr;
	av[3].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
	av[3].array_value = &array;
	kv[1].key = "list";
	kv[1].value = &av[3];
	inner[0] = &kv[0];
	kvl.n_values = 1;
	kvl.values = inner;
	av[4].value_case = OPAMP__PROTO__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
	av[4].kvlist_value = &kvl;
	kv[2].key = "nested";
	kv[2].value = &av[4];
	ident[0] = &kv[0];
	ident[1] = &kv[1];
	nonident[0] = &kv[2];
	d.n_identifying_attributes = 2;
	d.identifying_attributes = ident;
	d.n_non_identifying_attributes = 1;
	d.non_identifying_attributes = nonident;

	child.healthy = 0;
	child.last_error = "exporter down";
	he.key = "pipeline:logs";
	he.value = &child;
	h.healthy = 1;
	h.status = "StatusOK";
	h.n_component_health_map = 1;
	h.component_health_map = hes;

	cf.body.data = (uint8_t *)"receivers: {}\n";
	cf.body.len = 14;
	cf.content_type = "text/yaml";
	ce.key = "";
	ce.value = &cf;
	cm.n_config_map = 1;
	cm.config_map = ces;
	ec.config_map = &cm;

	rcs.last_remote_config_hash.data = (uint8_t *)UID;
	rcs.last_remote_config_hash.len = 16;
	rcs.status = OPAMP__PROTO__V1__REMOTE_CONFIG_STATUSES__RemoteConfigStatuses_FAILED;
	rcs.error_message = "bad yaml";
	cc.n_capabilities = 2;
	cc.capabilities = caps;

	m.instance_uid.data = (uint8_t *)UID;
	m.instance_uid.len = 16;
	m.sequence_num = 7;
	m.capabilities = 0x3807;
	m.agent_description = &d;
	m.health = &h;
	m.effective_config = &ec;
	m.remote_config_status = &rcs;
	m.custom_capabilities = &cc;

	*len = 1 + opamp__proto__v1__agent_to_server__get_packed_size(&m);
	p = malloc(*len);
	p[0] = 0;
	opamp__proto__v1__agent_to_server__pack(&m, p + 1);
	return p;
}

static void test_spec_example(void **state)
{
	uint8_t b[25] = {0x00, 0x0a, 0x10};
	opd_a2s *m = NULL;

	(void)state;
	memcpy(b + 3, UID, 16);
	memcpy(b + 19, (uint8_t[]){0x10, 0x01, 0x20, 0x81, 0x40}, 5);
	assert_int_equal(opd_wire_decode_ws(b, 24, NULL, &m), 0);
	assert_non_null(m);
	assert_int_equal(m->instance_uid.len, 16);
	assert_memory_equal(m->instance_uid.data, UID, 16);
	assert_int_equal(m->sequence_num, 1);
	assert_int_equal(m->capabilities, 0x2001);
	assert_null(m->agent_description);
	opd_wire_free_a2s(m, NULL);

	/* The same bytes without the header are a plain HTTP body. */
	assert_int_equal(opd_wire_decode_http(b + 1, 23, NULL, &m), 0);
	assert_int_equal(m->capabilities, 0x2001);
	opd_wire_free_a2s(m, NULL);
}

static void test_rich_roundtrip(void **state)
{
	size_t n;
	uint8_t *p = rich_message(&n);
	opd_a2s *m = NULL;

	(void)state;
	assert_int_equal(opd_wire_decode_ws(p, n, NULL, &m), 0);
	assert_int_equal(m->sequence_num, 7);
	assert_int_equal(m->agent_description->n_identifying_attributes, 2);
	assert_string_equal(m->agent_description->identifying_attributes[0]->value->string_value,
			    "checkout");
	assert_string_equal(m->health->component_health_map[0]->value->last_error, "exporter down");
	assert_int_equal(m->effective_config->config_map->config_map[0]->value->body.len, 14);
	assert_string_equal(m->remote_config_status->error_message, "bad yaml");
	assert_int_equal(m->custom_capabilities->n_capabilities, 2);
	opd_wire_free_a2s(m, NULL);
	free(p);
}

static void test_header(void **state)
{
	uint8_t one[] = {0x01, 0x10, 0x01};
	uint8_t long_zero[] = {0x80, 0x00, 0x10, 0x01}; /* 0 in two bytes: still header 0 */
	uint8_t unterminated[] = {0x80};
	uint8_t overlong[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
	opd_a2s *m = (opd_a2s *)&m; /* must stay untouched on failure */
	opd_a2s *const sentinel = m;

	(void)state;
	assert_int_equal(opd_wire_decode_ws(one, sizeof one, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws(unterminated, sizeof unterminated, NULL, &m),
			 OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws(overlong, sizeof overlong, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws(one, 0, NULL, &m), OPD_EPROTO); /* no header at all */
	assert_ptr_equal(m, sentinel);
	assert_int_equal(opd_wire_decode_ws(long_zero, sizeof long_zero, NULL, &m), 0);
	assert_int_equal(m->sequence_num, 1);
	opd_wire_free_a2s(m, NULL);

	/* Header alone: an empty AgentToServer, all fields unset. */
	assert_int_equal(opd_wire_decode_ws(one, 0 + 1, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws((const uint8_t[]){0}, 1, NULL, &m), 0);
	assert_int_equal(m->instance_uid.len, 0);
	opd_wire_free_a2s(m, NULL);
	assert_int_equal(opd_wire_decode_http(NULL, 0, NULL, &m), 0);
	assert_int_equal(m->sequence_num, 0);
	opd_wire_free_a2s(m, NULL);
}

static void test_malformed(void **state)
{
	/* Field 1 (bytes) claims 255 bytes that are not there. */
	uint8_t truncated[] = {0x00, 0x0a, 0xff, 0x01, 0x02};
	/* Wire type 7 does not exist. */
	uint8_t badtype[] = {0x00, 0x0f, 0x01};
	/* agent_description (3) holding garbage. */
	uint8_t badsub[] = {0x00, 0x1a, 0x02, 0x0a, 0x05};
	opd_a2s *m = NULL;

	(void)state;
	assert_int_equal(opd_wire_decode_ws(truncated, sizeof truncated, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws(badtype, sizeof badtype, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_ws(badsub, sizeof badsub, NULL, &m), OPD_EPROTO);
	assert_int_equal(opd_wire_decode_http(truncated + 1, sizeof truncated - 1, NULL, &m),
			 OPD_EPROTO);
	assert_null(m);
}

static void test_oversize(void **state)
{
	size_t n = OPD_WIRE_MAX_MSG + 1;
	uint8_t *p = calloc(1, n);
	opd_a2s *m = NULL;

	(void)state;
	/* Zero bytes would parse as a header and fields: the limit must come first. */
	assert_int_equal(opd_wire_decode_ws(p, n, NULL, &m), OPD_ETOOBIG);
	assert_int_equal(opd_wire_decode_http(p, n, NULL, &m), OPD_ETOOBIG);
	assert_null(m);
	free(p);
}

static void test_encode(void **state)
{
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	struct opd_buf out;
	const uint8_t want[] = {0x00, 0x0a, 0x10};
	opd_s2a *back;

	(void)state;
	opd_buf_init(&out);
	s.instance_uid.data = (uint8_t *)UID;
	s.instance_uid.len = 16;
	s.flags = 1;
	s.capabilities = 7;
	assert_int_equal(opd_wire_encode_s2a(&s, 1, &out), 0);
	/* The spec's example: 00 | 0a 10 <uid> | 30 01 | 38 07 */
	assert_int_equal(opd_buf_avail(&out), 23);
	assert_memory_equal(opd_buf_rptr(&out), want, 3);
	assert_memory_equal(opd_buf_rptr(&out) + 3, UID, 16);
	assert_memory_equal(opd_buf_rptr(&out) + 19, ((uint8_t[]){0x30, 0x01, 0x38, 0x07}), 4);

	opd_buf_reset(&out);
	assert_int_equal(opd_wire_encode_s2a(&s, 0, &out), 0);
	assert_int_equal(opd_buf_avail(&out), 22);
	back = opamp__proto__v1__server_to_agent__unpack(NULL, opd_buf_avail(&out),
							 opd_buf_rptr(&out));
	assert_non_null(back);
	assert_int_equal(back->capabilities, 7);
	opamp__proto__v1__server_to_agent__free_unpacked(back, NULL);
	opd_buf_fini(&out);
}

static void test_encode_too_big(void **state)
{
	opd_s2a s = OPAMP__PROTO__V1__SERVER_TO_AGENT__INIT;
	Opamp__Proto__V1__CustomMessage cm = OPAMP__PROTO__V1__CUSTOM_MESSAGE__INIT;
	struct opd_buf out;

	(void)state;
	opd_buf_init(&out);
	opd_buf_append(&out, "x", 1);
	cm.data.len = OPD_WIRE_MAX_MSG;
	cm.data.data = calloc(1, cm.data.len);
	s.custom_message = &cm;
	assert_int_equal(opd_wire_encode_s2a(&s, 0, &out), OPD_ETOOBIG);
	assert_int_equal(opd_wire_encode_s2a(&s, 1, &out), OPD_ETOOBIG);
	assert_int_equal(opd_buf_avail(&out), 1); /* nothing appended */

	/* Exactly at the limit, header included, still fits; one byte more does not. */
	size_t overhead = opamp__proto__v1__server_to_agent__get_packed_size(&s) - cm.data.len;
	cm.data.len = OPD_WIRE_MAX_MSG - 1 - overhead;
	assert_int_equal(opamp__proto__v1__server_to_agent__get_packed_size(&s) + 1,
			 OPD_WIRE_MAX_MSG);
	opd_buf_reset(&out);
	assert_int_equal(opd_wire_encode_s2a(&s, 1, &out), 0);
	assert_int_equal(opd_buf_avail(&out), OPD_WIRE_MAX_MSG);
	assert_int_equal(opd_buf_rptr(&out)[0], 0);
	opd_buf_reset(&out);
	assert_int_equal(opd_wire_encode_s2a(&s, 0, &out), 0);
	cm.data.len++;
	opd_buf_reset(&out);
	assert_int_equal(opd_wire_encode_s2a(&s, 1, &out), OPD_ETOOBIG);
	assert_int_equal(opd_buf_avail(&out), 0);
	free(cm.data.data);
	opd_buf_fini(&out);
}

/* Every allocation of a rich decode fails once in turn: a clean error, nothing leaked. */
static void test_failing_allocator(void **state)
{
	size_t n;
	uint8_t *p = rich_message(&n);
	struct fail_alloc fa;
	opd_a2s *m = NULL;
	long total;

	(void)state;
	fa_init(&fa, -1);
	assert_int_equal(opd_wire_decode_ws(p, n, &fa.a, &m), 0);
	total = fa.calls;
	assert_true(total > 10); /* the message really is rich */
	opd_wire_free_a2s(m, &fa.a);
	assert_int_equal(fa.live, 0);

	for (long i = 0; i < total; i++) {
		opd_a2s *out = NULL;

		fa_init(&fa, i);
		assert_int_equal(opd_wire_decode_ws(p, n, &fa.a, &out), OPD_EPROTO);
		assert_null(out);
		assert_int_equal(fa.live, 0);
	}
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_example),   cmocka_unit_test(test_rich_roundtrip),
	    cmocka_unit_test(test_header),         cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_oversize),       cmocka_unit_test(test_encode),
	    cmocka_unit_test(test_encode_too_big), cmocka_unit_test(test_failing_allocator),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
