/*
 * A JSON decoder for request bodies that builds jansson values.
 *
 * jansson's own decoder reads one character at a time through a stream and
 * copies every string twice: 40 us of the leader's ~400 us of CPU per 4 KiB
 * publish (bench/PROFILE.md). This one copies a string's plain runs whole.
 * It accepts exactly the texts json_loadb accepts with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, and builds equal values: the
 * fuzz target fuzz/json_parse holds the two side by side.
 */
#ifndef OPD_JSON_PARSE_H
#define OPD_JSON_PARSE_H

#include <jansson.h>
#include <stddef.h>

#define OPD_JSON_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct opd_json_error {
	int line;   /* 1-based */
	int column; /* 1-based, in bytes */
	char text[96];
};

/* The value text[0..len) holds, or NULL with *err filled. The caller owns the value. */
json_t *opd_json_parse(const void *text, size_t len, struct opd_json_error *err);

#endif
