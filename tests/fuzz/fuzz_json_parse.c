/*
 * Fuzz target: opampd/json_parse.c against jansson's own decoder. The admin
 * API decodes request bodies with opd_json_parse; it must accept exactly
 * what json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts and build
 * an equal value (json_equal: same types, same integers and reals, same
 * strings byte for byte, same keys). One difference is ours on purpose: a
 * NUL byte is never valid JSON, and jansson takes one after a top-level
 * literal for the end of the text ("false\0" decodes); opd_json_parse
 * refuses every text with a NUL byte.
 *
 * Input: the text to decode, as it is.
 */
#include "json_parse.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct opd_json_error err;
	json_error_t jerr;
	json_t *want = json_loadb((const char *)data, size,
				  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	json_t *got = opd_json_parse(data, size, &err);

	if (memchr(data, 0, size) != NULL) {
		if (got != NULL)
			abort();
		json_decref(want);
		return 0;
	}
	if ((want == NULL) != (got == NULL)) {
		fprintf(stderr, "jansson %s, opd_json_parse %s\n",
			want ? "accepts" : jerr.text, got ? "accepts" : err.text);
		abort();
	}
	if (want != NULL && !json_equal(want, got)) {
		fprintf(stderr, "the values differ\n");
		abort();
	}
	if (got == NULL && (err.line < 1 || err.column < 1 || err.text[0] == '\0'))
		abort(); /* every error says where and what */
	json_decref(want);
	json_decref(got);
	return 0;
}
