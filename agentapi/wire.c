#include "wire.h"

#include "err.h"
#include "nesting.h"
#include "varint.h"

/* Both transports end here: the bytes are one whole AgentToServer. */
static int unpack(const uint8_t *p, size_t n, ProtobufCAllocator *alloc, opd_a2s **out)
{
	opd_a2s *m;

	/* protobuf-c recurses without a limit: bound the nesting before it does. */
	if (opd_nesting_check_a2s(p, n, OPD_NESTING_MAX) != 0)
		return OPD_EPROTO;
	m = opamp__proto__v1__agent_to_server__unpack(alloc, n, p);
	if (m == NULL)
		return OPD_EPROTO;
	*out = m;
	return 0;
}

int opd_wire_decode_ws(const uint8_t *p, size_t n, ProtobufCAllocator *alloc, opd_a2s **out)
{
	uint64_t header;
	ssize_t used;

	/* The size check comes first: nothing of an oversized message is looked at. */
	if (n > OPD_WIRE_MAX_MSG)
		return OPD_ETOOBIG;
	/*
	 * The spec reserves non-zero headers; opamp-go also accepts header-less
	 * legacy messages, but those predate 2023 and we do not guess.
	 */
	used = opd_varint_decode(p, n, &header);
	if (used < 0 || header != 0)
		return OPD_EPROTO;
	return unpack(p + used, n - (size_t)used, alloc, out);
}

int opd_wire_decode_http(const uint8_t *p, size_t n, ProtobufCAllocator *alloc, opd_a2s **out)
{
	static const uint8_t empty[1];

	if (n > OPD_WIRE_MAX_MSG)
		return OPD_ETOOBIG;
	/* An empty body is a valid message with every field unset. */
	return unpack(n ? p : empty, n, alloc, out);
}

void opd_wire_free_a2s(opd_a2s *m, ProtobufCAllocator *alloc)
{
	if (m != NULL)
		opamp__proto__v1__agent_to_server__free_unpacked(m, alloc);
}

int opd_wire_encode_s2a(const opd_s2a *m, int ws, struct opd_buf *out)
{
	size_t size, hdr = ws ? 1 : 0;
	uint8_t *w;

	size = opamp__proto__v1__server_to_agent__get_packed_size(m);
	/* The spec forbids sending over the limit: refuse before reserving. */
	if (size > OPD_WIRE_MAX_MSG - hdr)
		return OPD_ETOOBIG;
	w = opd_buf_reserve(out, size + hdr);
	if (ws)
		w[0] = 0; /* varint 0: the only header value defined */
	opamp__proto__v1__server_to_agent__pack(m, w + hdr);
	opd_buf_commit(out, size + hdr);
	return 0;
}
