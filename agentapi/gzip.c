#include "gzip.h"

#include "err.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

/* Output is produced in steps of this size, so a bomb is caught within one step of max_out. */
#define STEP (64 * 1024)

/* zlib counts in uInt; feed huge inputs in pieces. */
static uInt clamp_uint(size_t n)
{
	return n > (size_t)UINT_MAX ? UINT_MAX : (uInt)n;
}

int opd_gzip_inflate(const uint8_t *p, size_t n, size_t max_out, struct opd_buf *out)
{
	z_stream zs;
	size_t in_left = n, produced = 0, before = opd_buf_avail(out);
	int zrc, rc = OPD_EPROTO;

	memset(&zs, 0, sizeof(zs));
	/* 16 + MAX_WBITS: gzip wrapper only (no zlib or raw deflate). */
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return OPD_EIO;
	zs.next_in = (Bytef *)p;
	zs.avail_in = clamp_uint(in_left);
	in_left -= zs.avail_in;
	for (;;) {
		/*
		 * Offer at most max_out - produced + 1 bytes of room: if zlib
		 * fills the extra byte the output is over the limit, and we stop
		 * without ever holding more than max_out + 1 bytes.
		 */
		size_t left = max_out - produced;
		size_t room = left < STEP ? left + 1 : STEP;
		size_t got;

		zs.next_out = opd_buf_reserve(out, room);
		zs.avail_out = (uInt)room;
		zrc = inflate(&zs, Z_NO_FLUSH);
		got = room - zs.avail_out;
		opd_buf_commit(out, got);
		produced += got;
		if (produced > max_out) {
			rc = OPD_ETOOBIG;
			break;
		}
		if (zs.avail_in == 0 && in_left > 0) {
			zs.avail_in = clamp_uint(in_left);
			in_left -= zs.avail_in;
		}
		if (zrc == Z_STREAM_END) {
			/* One gzip member, nothing after it. */
			rc = zs.avail_in == 0 && in_left == 0 ? 0 : OPD_EPROTO;
			break;
		}
		if (zrc == Z_BUF_ERROR && got == 0 && zs.avail_in == 0) {
			rc = OPD_EPROTO; /* truncated */
			break;
		}
		if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
			rc = OPD_EPROTO;
			break;
		}
	}
	inflateEnd(&zs);
	if (rc != 0)
		out->len = out->off + before; /* leave out as it was (reserve may have compacted) */
	return rc;
}

int opd_gzip_deflate(const uint8_t *p, size_t n, struct opd_buf *out)
{
	z_stream zs;
	size_t in_left = n, before = opd_buf_avail(out);
	int zrc;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return OPD_EIO;
	zs.next_in = (Bytef *)p;
	zs.avail_in = clamp_uint(in_left);
	in_left -= zs.avail_in;
	do {
		size_t room = deflateBound(&zs, zs.avail_in) + 64;

		zs.next_out = opd_buf_reserve(out, room);
		zs.avail_out = clamp_uint(room);
		zrc = deflate(&zs, in_left > 0 ? Z_NO_FLUSH : Z_FINISH);
		opd_buf_commit(out, clamp_uint(room) - zs.avail_out);
		if (zs.avail_in == 0 && in_left > 0) {
			zs.avail_in = clamp_uint(in_left);
			in_left -= zs.avail_in;
		}
	} while (zrc == Z_OK || zrc == Z_BUF_ERROR);
	deflateEnd(&zs);
	if (zrc != Z_STREAM_END) {
		out->len = out->off + before;
		return OPD_EIO;
	}
	return 0;
}
