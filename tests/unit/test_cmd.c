/* cmd: framing of raft command payloads (8-byte aligned, strict framing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "cmd.h"
#include "err.h"

/* A PutVersion command whose encoded size depends on body_len. */
static void encode_put(size_t body_len, struct opd_buf *out)
{
	Opampd__V1__Command cmd = OPAMPD__V1__COMMAND__INIT;
	Opampd__V1__PutVersion pv = OPAMPD__V1__PUT_VERSION__INIT;
	Opampd__V1__File file = OPAMPD__V1__FILE__INIT;
	Opampd__V1__File *files[1] = {&file};
	uint8_t rid[16], *body = malloc(body_len + 1);

	assert_non_null(body);
	memset(body, 'b', body_len);
	memset(rid, 0xab, sizeof rid);
	file.name = "a.yaml";
	file.content_type = "text/yaml";
	file.body = (ProtobufCBinaryData){.len = body_len, .data = body};
	pv.name = "collector";
	pv.files = files;
	pv.n_files = 1;
	pv.version = 3;
	pv.priority = -7;
	cmd.request_id = (ProtobufCBinaryData){.len = sizeof rid, .data = rid};
	cmd.hlc_wall_ms = 1700000000123ull;
	cmd.hlc_logical = 9;
	cmd.actor = "alice";
	cmd.term = 4;
	cmd.op_case = OPAMPD__V1__COMMAND__OP_PUT_VERSION;
	cmd.put_version = &pv;
	assert_int_equal(opd_cmd_encode(&cmd, out), 0);
	free(body);
}

static void test_round_trip_and_padding(void **state)
{
	(void)state;
	for (size_t body_len = 0; body_len < 24; body_len++) {
		struct opd_buf b;
		opd_cmd *cmd = NULL;

		opd_buf_init(&b);
		encode_put(body_len, &b);
		const uint8_t *p = opd_buf_rptr(&b);
		size_t n = opd_buf_avail(&b);
		uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			       (uint32_t)p[3] << 24;

		assert_int_equal(n % 8, 0);
		assert_true(n >= 8 + len && n < 8 + len + 8);
		assert_memory_equal(p + 4, "\0\0\0\0", 4);
		for (size_t i = 8 + len; i < n; i++)
			assert_int_equal(p[i], 0);

		assert_int_equal(opd_cmd_decode(p, n, &cmd), 0);
		assert_int_equal(cmd->op_case, OPAMPD__V1__COMMAND__OP_PUT_VERSION);
		assert_int_equal(cmd->hlc_wall_ms, 1700000000123ull);
		assert_int_equal(cmd->hlc_logical, 9);
		assert_int_equal(cmd->term, 4);
		assert_string_equal(cmd->actor, "alice");
		assert_int_equal(cmd->request_id.len, 16);
		assert_string_equal(cmd->put_version->name, "collector");
		assert_int_equal(cmd->put_version->version, 3);
		assert_int_equal(cmd->put_version->priority, -7);
		assert_int_equal(cmd->put_version->n_files, 1);
		assert_int_equal(cmd->put_version->files[0]->body.len, body_len);
		opd_cmd_free(cmd);
		opd_buf_fini(&b);
	}
}

static void test_appends(void **state)
{
	struct opd_buf b;
	opd_cmd *cmd;

	(void)state;
	opd_buf_init(&b);
	opd_buf_append(&b, "prefix!!", 8);
	encode_put(5, &b);
	assert_int_equal(opd_cmd_decode(opd_buf_rptr(&b) + 8, opd_buf_avail(&b) - 8, &cmd), 0);
	opd_cmd_free(cmd);
	opd_cmd_free(NULL);
	opd_buf_fini(&b);
}

/* Every corruption of the framing is refused and *out is left alone. */
static void test_corrupt_framing(void **state)
{
	opd_cmd *sentinel = (opd_cmd *)&sentinel, *cmd = sentinel;
	struct opd_buf b;
	uint8_t *p;
	size_t n;

	(void)state;
	opd_buf_init(&b);
	for (size_t body_len = 0;; body_len++) { /* a size that leaves padding */
		encode_put(body_len, &b);
		if (opd_buf_rptr(&b)[0] % 8 != 0)
			break;
		opd_buf_reset(&b);
	}
	n = opd_buf_avail(&b);
	p = malloc(n + 16);
	assert_non_null(p);

	memcpy(p, opd_buf_rptr(&b), n);
	uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	assert_true(8 + len < n); /* there is padding to corrupt */

	p[4] = 1; /* reserved word */
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[4] = 0;
	p[7] = 0x80;
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[7] = 0;
	p[n - 1] = 1; /* padding */
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[n - 1] = 0;
	p[0] = (uint8_t)(len + 8); /* length past the end */
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[0] = (uint8_t)(len - 8); /* too short for the buffer: would leave 8+ bytes of slack */
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[0] = (uint8_t)len;
	p[3] = 0xff; /* over OPD_CMD_MAX */
	assert_int_equal(opd_cmd_decode(p, n, &cmd), OPD_EPROTO);
	p[3] = 0;
	memset(p + n, 0, 8); /* trailing extra zero block */
	assert_int_equal(opd_cmd_decode(p, n + 8, &cmd), OPD_EPROTO);
	/* A protobuf that does not parse: field 1 (bytes) claiming 100 bytes. */
	memset(p, 0, 16);
	p[0] = 2;
	p[8] = 0x0a;
	p[9] = 100;
	assert_int_equal(opd_cmd_decode(p, 16, &cmd), OPD_EPROTO);
	assert_ptr_equal(cmd, sentinel);
	/* Still intact after the restores above. */
	memcpy(p, opd_buf_rptr(&b), n);
	assert_int_equal(opd_cmd_decode(p, n, &cmd), 0);
	opd_cmd_free(cmd);
	free(p);
	opd_buf_fini(&b);
}

/* Truncated at every length, or one byte flipped anywhere: never a crash; truncations always fail.
 */
static void test_truncations_and_flips(void **state)
{
	struct opd_buf b;
	opd_cmd *cmd;
	uint8_t *p;
	size_t n;

	(void)state;
	opd_buf_init(&b);
	encode_put(300, &b);
	n = opd_buf_avail(&b);
	for (size_t k = 0; k < n; k++) {
		/* A fresh heap copy of exactly k bytes, so ASan sees any overread. */
		p = malloc(k ? k : 1);
		assert_non_null(p);
		memcpy(p, opd_buf_rptr(&b), k);
		assert_int_equal(opd_cmd_decode(p, k, &cmd), OPD_EPROTO);
		free(p);
	}
	p = malloc(n);
	assert_non_null(p);
	size_t len = (size_t)opd_buf_rptr(&b)[0] | (size_t)opd_buf_rptr(&b)[1] << 8;
	assert_true(8 + len < n);
	for (size_t k = 0; k < n; k++) {
		memcpy(p, opd_buf_rptr(&b), n);
		p[k] ^= 0x5a;
		int rc = opd_cmd_decode(p, n, &cmd);
		/* Header and padding flips are always caught; body flips may parse. */
		if (k < 8 || k >= 8 + len)
			assert_int_equal(rc, OPD_EPROTO);
		else if (rc == 0)
			opd_cmd_free(cmd);
	}
	free(p);
	opd_buf_fini(&b);
}

static void test_empty_command(void **state)
{
	Opampd__V1__Command c = OPAMPD__V1__COMMAND__INIT;
	struct opd_buf b;
	opd_cmd *cmd;

	(void)state;
	opd_buf_init(&b);
	assert_int_equal(opd_cmd_encode(&c, &b), 0);
	assert_int_equal(opd_buf_avail(&b), 8);
	assert_int_equal(opd_cmd_decode(opd_buf_rptr(&b), 8, &cmd), 0);
	assert_int_equal(cmd->op_case, OPAMPD__V1__COMMAND__OP__NOT_SET);
	opd_cmd_free(cmd);
	assert_int_equal(opd_cmd_decode(NULL, 0, &cmd), OPD_EPROTO);
	opd_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_and_padding),
	    cmocka_unit_test(test_appends),
	    cmocka_unit_test(test_corrupt_framing),
	    cmocka_unit_test(test_truncations_and_flips),
	    cmocka_unit_test(test_empty_command),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
