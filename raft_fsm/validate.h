/*
 * Validation of a configuration before it is written: names, sizes, and the
 * YAML syntax of YAML bodies (libyaml). Pure; the error names the file, line
 * and column so the operator can fix it.
 */
#ifndef OPD_VALIDATE_H
#define OPD_VALIDATE_H

#include "store.h"

#define OPD_MAX_CONFIG_NAME 128
#define OPD_MAX_FILES 64
#define OPD_MAX_FILE_NAME 255
#define OPD_MAX_CONFIG_BYTES (2u << 20) /* all bodies together; leaves room in a 4 MiB message */
#define OPD_MAX_SELECTOR_PAIRS 32

struct opd_validation_error {
	char file[OPD_MAX_FILE_NAME + 1]; /* "" when not about one file */
	unsigned long line, column;       /* 1-based; 0 when not positional */
	char message[OPD_ERRMSG_SIZE];
};

/* A configuration name: 1..128 of [A-Za-z0-9._-], not starting with '.'. 1 valid, 0 not. */
int opd_validate_name(const char *name);

/*
 * Check the files of a version: count, names, total size, content types, and
 * the YAML syntax of every body whose content type is text/yaml,
 * application/yaml, application/x-yaml or whose name ends in .yaml/.yml.
 * Returns 0 or OPD_EINVAL with *err filled.
 */
int opd_validate_files(const struct opd_files *files, struct opd_validation_error *err);

/* Check selector pairs: count, non-empty keys. 0 or OPD_EINVAL with *err filled. */
int opd_validate_selector(const struct opd_kvs *selector, struct opd_validation_error *err);

#endif
