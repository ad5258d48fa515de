#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum opd_log_level min_level = OPD_LOG_INFO;

static const struct {
	const char *name;
	int syslog_prio;
} levels[] = {
    [OPD_LOG_DEBUG] = {"debug", 7},
    [OPD_LOG_INFO] = {"info", 6},
    [OPD_LOG_WARN] = {"warn", 4},
    [OPD_LOG_ERROR] = {"error", 3},
};

void opd_log_init(enum opd_log_level level)
{
	min_level = level;
}

int opd_log_parse_level(const char *s, enum opd_log_level *out)
{
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		if (strcmp(s, levels[i].name) == 0) {
			*out = (enum opd_log_level)i;
			return 0;
		}
	}
	return OPD_EINVAL;
}

int opd_log_enabled(enum opd_log_level level)
{
	return level >= min_level;
}

static void log_vwrite(enum opd_log_level level, const char *component, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = snprintf(line, sizeof line, "<%d>%s %s: ", levels[level].syslog_prio,
		     levels[level].name, component);
	if (n > 0 && (size_t)n < sizeof line)
		vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	/* One fputs per line so concurrent processes sharing stderr do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void opd_log_write(enum opd_log_level level, const char *component, const char *fmt, ...)
{
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	log_vwrite(level, component, fmt, ap);
	va_end(ap);
}

void opd_log_fatal(const char *component, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(OPD_LOG_ERROR, component, fmt, ap);
	va_end(ap);
	exit(1);
}
