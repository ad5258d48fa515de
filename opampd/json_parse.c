#include "json_parse.h"

#include "buf.h"
#include "mem.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const uint8_t *start, *p, *end;
	int depth;
	struct opd_buf scratch; /* the string or number being decoded */
	struct opd_json_error *err;
	bool failed;
};

/* Record the first error, at the current position. Returns NULL for the caller to pass up. */
__attribute__((format(printf, 2, 3))) static json_t *fail(struct parser *ps, const char *fmt, ...)
{
	va_list ap;

	if (ps->failed)
		return NULL;
	ps->failed = true;
	ps->err->line = 1;
	ps->err->column = 1;
	for (const uint8_t *q = ps->start; q < ps->p && q < ps->end; q++) {
		if (*q == '\n') {
			ps->err->line++;
			ps->err->column = 1;
		} else {
			ps->err->column++;
		}
	}
	va_start(ap, fmt);
	vsnprintf(ps->err->text, sizeof ps->err->text, fmt, ap);
	va_end(ap);
	return NULL;
}

static void skip_space(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/*
 * Consumes c and the white space after it when c comes next. Every caller
 * skips white space after a value anyway, so skipping it here moves no error.
 */
static bool eat(struct parser *ps, char c)
{
	if (ps->p >= ps->end || *ps->p != c)
		return false;
	ps->p++;
	skip_space(ps);
	return true;
}

static json_t *parse_value(struct parser *ps);

static int hex4(const uint8_t *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	return v;
}

static void put_utf8(struct opd_buf *b, uint32_t cp)
{
	uint8_t u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xC0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xE0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		u[2] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xF0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
		u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		u[3] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 4;
	}
	opd_buf_append(b, u, n);
}

/*
 * The string whose opening quote ps->p is at, decoded into ps->scratch.
 * Returns false on error (recorded).
 */
static bool decode_string(struct parser *ps)
{
	struct opd_buf *b = &ps->scratch;

	opd_buf_reset(b);
	ps->p++;
	for (;;) {
		const uint8_t *run = ps->p;

		/* The plain run: copied whole, the reason this file exists. */
		while (ps->p < ps->end && *ps->p >= 0x20 && *ps->p < 0x80 && *ps->p != '"' &&
		       *ps->p != '\\')
			ps->p++;
		opd_buf_append(b, run, (size_t)(ps->p - run));
		if (ps->p >= ps->end)
			return fail(ps, "premature end of input in a string"), false;
		uint8_t c = *ps->p;
		if (c == '"') {
			ps->p++;
			return true;
		}
		if (c < 0x20)
			return fail(ps, "control character 0x%x in a string", c), false;
		if (c >= 0x80) {
			size_t n = opd_utf8_seq(ps->p, (size_t)(ps->end - ps->p));

			if (n == 0)
				return fail(ps, "invalid UTF-8 in a string"), false;
			opd_buf_append(b, ps->p, n);
			ps->p += n;
			continue;
		}
		/* A backslash. */
		if (ps->end - ps->p < 2)
			return fail(ps, "premature end of input in a string"), false;
		c = ps->p[1];
		static const char plain[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
		const char *at = c != 0 ? strchr(plain, c) : NULL;
		if (at != NULL) {
			opd_buf_append_byte(b, (uint8_t)decoded[at - plain]);
			ps->p += 2;
			continue;
		}
		if (c != 'u')
			return fail(ps, "invalid escape"), false;
		int cp = ps->end - ps->p >= 6 ? hex4(ps->p + 2) : -1;
		if (cp < 0)
			return fail(ps, "invalid \\u escape"), false;
		if (cp == 0)
			return fail(ps, "\\u0000 is not allowed"), false;
		if (cp >= 0xDC00 && cp <= 0xDFFF)
			return fail(ps, "invalid Unicode '\\u%04X'", (unsigned)cp), false;
		ps->p += 6;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			int lo = ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u'
				     ? hex4(ps->p + 2)
				     : -1;
			if (lo < 0xDC00 || lo > 0xDFFF)
				return fail(ps, "invalid Unicode '\\u%04X'", (unsigned)cp), false;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			ps->p += 6;
		}
		put_utf8(b, (uint32_t)cp);
	}
}

/* What decode_string left (an empty buffer may have no storage at all). */
static const char *decoded(const struct parser *ps)
{
	return opd_buf_avail(&ps->scratch) > 0 ? (const char *)opd_buf_rptr(&ps->scratch) : "";
}

static json_t *parse_string(struct parser *ps)
{
	if (!decode_string(ps))
		return NULL;
	/* Checked above: valid UTF-8 without NUL. */
	return json_stringn_nocheck(decoded(ps), opd_buf_avail(&ps->scratch));
}

static size_t digits(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *q = p;

	while (q < end && *q >= '0' && *q <= '9')
		q++;
	return (size_t)(q - p);
}

/* RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static json_t *parse_number(struct parser *ps)
{
	const uint8_t *s = ps->p, *q = s;
	bool integer = true;
	size_t n;

	if (*q == '-')
		q++;
	n = digits(q, ps->end);
	if (n == 0 || (q[0] == '0' && n > 1))
		return fail(ps, "invalid number");
	q += n;
	if (q < ps->end && *q == '.') {
		integer = false;
		if ((n = digits(++q, ps->end)) == 0)
			return fail(ps, "invalid number");
		q += n;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		integer = false;
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if ((n = digits(q, ps->end)) == 0)
			return fail(ps, "invalid number");
		q += n;
	}
	/* strtoll and strtod want a terminated string. */
	opd_buf_reset(&ps->scratch);
	opd_buf_append(&ps->scratch, s, (size_t)(q - s));
	opd_buf_append_byte(&ps->scratch, '\0');
	const char *text = (const char *)opd_buf_rptr(&ps->scratch);
	errno = 0;
	if (integer) {
		long long v = strtoll(text, NULL, 10);

		if (errno == ERANGE)
			return fail(ps, "too big %sinteger", *s == '-' ? "negative " : "");
		ps->p = q;
		return json_integer(v);
	}
	double d = strtod(text, NULL);
	if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
		return fail(ps, "real number overflow");
	ps->p = q;
	return json_real(d);
}

static json_t *parse_literal(struct parser *ps, const char *word, json_t *value)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "invalid token");
	ps->p += n;
	return value;
}

static json_t *parse_object(struct parser *ps)
{
	json_t *obj = json_object();

	eat(ps, '{');
	if (eat(ps, '}'))
		return obj;
	for (;;) {
		json_t *v;

		if (ps->p >= ps->end || *ps->p != '"')
			break;
		if (!decode_string(ps))
			goto fail;
		const char *key = decoded(ps);
		size_t key_len = opd_buf_avail(&ps->scratch);
		if (json_object_getn(obj, key, key_len) != NULL) {
			fail(ps, "duplicate object key");
			goto fail;
		}
		char *k = opd_xstrndup(key, key_len); /* the value reuses the scratch buffer */
		skip_space(ps);
		if (!eat(ps, ':')) {
			free(k);
			fail(ps, "':' expected");
			goto fail;
		}
		v = parse_value(ps);
		if (v == NULL || json_object_setn_new_nocheck(obj, k, key_len, v) != 0) {
			free(k);
			goto fail;
		}
		free(k);
		skip_space(ps);
		if (eat(ps, ','))
			continue;
		if (eat(ps, '}'))
			return obj;
		fail(ps, "',' or '}' expected");
		goto fail;
	}
	fail(ps, "string or '}' expected");
fail:
	json_decref(obj);
	return NULL;
}

static json_t *parse_array(struct parser *ps)
{
	json_t *arr = json_array();

	eat(ps, '[');
	if (eat(ps, ']'))
		return arr;
	for (;;) {
		json_t *v = parse_value(ps);

		if (v == NULL || json_array_append_new(arr, v) != 0)
			break;
		skip_space(ps);
		if (eat(ps, ','))
			continue;
		if (eat(ps, ']'))
			return arr;
		fail(ps, "',' or ']' expected");
		break;
	}
	json_decref(arr);
	return NULL;
}

static json_t *parse_value(struct parser *ps)
{
	json_t *v;

	if (ps->p >= ps->end)
		return fail(ps, "premature end of input");
	switch (*ps->p) {
	case '{':
	case '[':
		if (++ps->depth > OPD_JSON_MAX_DEPTH)
			return fail(ps, "maximum parsing depth reached");
		v = *ps->p == '{' ? parse_object(ps) : parse_array(ps);
		ps->depth--;
		return v;
	case '"':
		return parse_string(ps);
	case 't':
		return parse_literal(ps, "true", json_true());
	case 'f':
		return parse_literal(ps, "false", json_false());
	case 'n':
		return parse_literal(ps, "null", json_null());
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps);
		return fail(ps, "invalid token");
	}
}

json_t *opd_json_parse(const void *text, size_t len, struct opd_json_error *err)
{
	struct parser ps = {
	    .start = text, .p = text, .end = (const uint8_t *)text + len, .err = err};
	json_t *v;

	opd_buf_init(&ps.scratch);
	skip_space(&ps);
	v = parse_value(&ps);
	if (v != NULL) {
		skip_space(&ps);
		if (ps.p != ps.end) {
			fail(&ps, "end of input expected");
			json_decref(v);
			v = NULL;
		}
	}
	opd_buf_fini(&ps.scratch);
	return v;
}
