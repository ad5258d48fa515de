#include "cmd.h"

#include "err.h"

#include <string.h>

#define HEADER 8u

static void put_u32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t padded(size_t n)
{
	return (n + 7u) & ~(size_t)7u;
}

int opd_cmd_encode(const opd_cmd *cmd, struct opd_buf *out)
{
	size_t len = opampd__v1__command__get_packed_size(cmd);
	size_t total;
	uint8_t *p;

	if (len > OPD_CMD_MAX)
		return OPD_ETOOBIG;
	total = HEADER + padded(len);
	p = opd_buf_reserve(out, total);
	put_u32le(p, (uint32_t)len);
	put_u32le(p + 4, 0);
	if (opampd__v1__command__pack(cmd, p + HEADER) != len)
		return OPD_EINVAL; /* not reached: the size came from the same message */
	memset(p + HEADER + len, 0, total - HEADER - len);
	opd_buf_commit(out, total);
	return 0;
}

int opd_cmd_decode(const uint8_t *p, size_t n, opd_cmd **out)
{
	Opampd__V1__Command *cmd;
	size_t len;

	/*
	 * The framing is exact: raft hands back the bytes that were proposed, so
	 * anything longer or shorter than header + padded length is corruption
	 * (or a proposal by something that is not opampd).
	 */
	if (n < HEADER || get_u32le(p + 4) != 0)
		return OPD_EPROTO;
	len = get_u32le(p);
	if (len > OPD_CMD_MAX || len > n - HEADER || HEADER + padded(len) != n)
		return OPD_EPROTO;
	for (size_t i = HEADER + len; i < n; i++)
		if (p[i] != 0)
			return OPD_EPROTO;
	cmd = opampd__v1__command__unpack(NULL, len, p + HEADER);
	if (cmd == NULL)
		return OPD_EPROTO;
	*out = cmd;
	return 0;
}

void opd_cmd_free(opd_cmd *cmd)
{
	if (cmd != NULL)
		opampd__v1__command__free_unpacked(cmd, NULL);
}
