#include "validate.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define MAX_CONTENT_TYPE 127
#define MAX_SELECTOR_KEY 256
#define MAX_SELECTOR_VALUE 1024

/* Reset *err and describe one problem; file may be NULL when it is not about one file. */
static int invalid(struct opd_validation_error *err, const char *file, unsigned long line,
		   unsigned long column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int invalid(struct opd_validation_error *err, const char *file, unsigned long line,
		   unsigned long column, const char *fmt, ...)
{
	va_list ap;

	*err = (struct opd_validation_error){0};
	if (file != NULL)
		snprintf(err->file, sizeof err->file, "%s", file);
	err->line = line;
	err->column = column;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return OPD_EINVAL;
}

int opd_validate_name(const char *name)
{
	size_t n;

	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return 0;
	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok || n + 1 > OPD_MAX_CONFIG_NAME)
			return 0;
	}
	return 1;
}

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_yaml(const struct opd_file *f)
{
	return strcmp(f->content_type, "text/yaml") == 0 ||
	       strcmp(f->content_type, "application/yaml") == 0 ||
	       strcmp(f->content_type, "application/x-yaml") == 0 || ends_with(f->name, ".yaml") ||
	       ends_with(f->name, ".yml");
}

static int check_name(const struct opd_file *f, struct opd_validation_error *err)
{
	size_t n = strlen(f->name);

	/* Checked before the name is copied into err->file, which holds at most 255 bytes. */
	if (n > OPD_MAX_FILE_NAME)
		return invalid(err, NULL, 0, 0, "file name of %zu bytes is longer than %d", n,
			       OPD_MAX_FILE_NAME);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)f->name[i];
		if (c == '/' || c == '\\' || is_control(c))
			return invalid(
			    err, f->name, 0, 0,
			    "file name must not contain '/', '\\' or control characters");
	}
	return 0;
}

static int check_content_type(const struct opd_file *f, struct opd_validation_error *err)
{
	size_t n = strlen(f->content_type);

	if (n == 0)
		return invalid(err, f->name, 0, 0, "file \"%s\": empty content type", f->name);
	if (n > MAX_CONTENT_TYPE)
		return invalid(err, f->name, 0, 0, "file \"%s\": content type longer than %d bytes",
			       f->name, MAX_CONTENT_TYPE);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)f->content_type[i];
		if (c < 0x20 || c > 0x7e)
			return invalid(err, f->name, 0, 0,
				       "file \"%s\": content type has a non-printable byte",
				       f->name);
	}
	return 0;
}

/* Parse every event of the stream; libyaml does not build a document, so memory stays small. */
static int check_yaml(const struct opd_file *f, struct opd_validation_error *err)
{
	yaml_parser_t parser;
	yaml_event_t event;
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return invalid(err, f->name, 0, 0, "file \"%s\": cannot initialise the YAML parser",
			       f->name);
	yaml_parser_set_input_string(&parser, f->body, f->len);
	for (;;) {
		if (!yaml_parser_parse(&parser, &event)) {
			const char *problem = parser.problem ? parser.problem : "invalid YAML";

			if (parser.error == YAML_READER_ERROR)
				/* Encoding errors carry a byte offset, not a position. */
				rc = invalid(err, f->name, 0, 0, "file \"%s\" byte %zu: %s",
					     f->name, parser.problem_offset, problem);
			else
				rc = invalid(err, f->name, parser.problem_mark.line + 1,
					     parser.problem_mark.column + 1,
					     "file \"%s\" line %zu column %zu: %s", f->name,
					     parser.problem_mark.line + 1,
					     parser.problem_mark.column + 1, problem);
			break;
		}
		bool end = event.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&event);
		if (end)
			break;
	}
	yaml_parser_delete(&parser);
	return rc;
}

int opd_validate_files(const struct opd_files *files, struct opd_validation_error *err)
{
	size_t total = 0;
	int rc;

	if (files == NULL || files->n == 0)
		return invalid(err, NULL, 0, 0, "a configuration needs at least one file");
	if (files->n > OPD_MAX_FILES)
		return invalid(err, NULL, 0, 0, "%zu files, more than the limit of %d", files->n,
			       OPD_MAX_FILES);
	for (size_t i = 0; i < files->n; i++) {
		const struct opd_file *f = &files->v[i];

		if ((rc = check_name(f, err)) != 0 || (rc = check_content_type(f, err)) != 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(files->v[j].name, f->name) == 0)
				return invalid(err, f->name, 0, 0, "file \"%s\" appears twice",
					       f->name);
		if (f->len > OPD_MAX_CONFIG_BYTES - total)
			return invalid(err, NULL, 0, 0,
				       "the files are larger than the limit of %u bytes",
				       OPD_MAX_CONFIG_BYTES);
		total += f->len;
	}
	/* Syntax last: every cheap check has passed and the total size is bounded. */
	for (size_t i = 0; i < files->n; i++)
		if (is_yaml(&files->v[i]) && (rc = check_yaml(&files->v[i], err)) != 0)
			return rc;
	return 0;
}

int opd_validate_selector(const struct opd_kvs *selector, struct opd_validation_error *err)
{
	if (selector == NULL)
		return 0;
	if (selector->n > OPD_MAX_SELECTOR_PAIRS)
		return invalid(err, NULL, 0, 0, "selector has %zu pairs, more than the limit of %d",
			       selector->n, OPD_MAX_SELECTOR_PAIRS);
	for (size_t i = 0; i < selector->n; i++) {
		const struct opd_kv *kv = &selector->v[i];
		size_t k = strlen(kv->key), v = strlen(kv->value);

		if (k == 0)
			return invalid(err, NULL, 0, 0, "selector key %zu is empty", i + 1);
		if (k > MAX_SELECTOR_KEY)
			return invalid(err, NULL, 0, 0, "selector key %zu is longer than %d bytes",
				       i + 1, MAX_SELECTOR_KEY);
		if (v > MAX_SELECTOR_VALUE)
			return invalid(err, NULL, 0, 0,
				       "selector value of \"%.64s\" is longer than %d bytes",
				       kv->key, MAX_SELECTOR_VALUE);
	}
	return 0;
}
