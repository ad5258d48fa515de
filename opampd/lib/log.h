/*
 * One-line structured logging to stderr with a <N> syslog-priority prefix so
 * journald keeps the level. Each .c file defines LOG_COMPONENT before
 * including this header. Lines look like:
 *   <4>warn agentapi: closing connection peer=127.0.0.1:4711 reason="too big"
 */
#ifndef OPD_LOG_H
#define OPD_LOG_H

#ifndef LOG_COMPONENT
#define LOG_COMPONENT "opampd"
#endif

enum opd_log_level { OPD_LOG_DEBUG, OPD_LOG_INFO, OPD_LOG_WARN, OPD_LOG_ERROR };

/* Set the minimum level printed. Default: OPD_LOG_INFO. */
void opd_log_init(enum opd_log_level level);

/* Parse "debug", "info", "warn" or "error"; returns 0 or OPD_EINVAL. */
int opd_log_parse_level(const char *s, enum opd_log_level *out);

int opd_log_enabled(enum opd_log_level level);

void opd_log_write(enum opd_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log at error level and exit(1). For failed start-up and corrupted local state. */
void opd_log_fatal(const char *component, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (opd_log_enabled(OPD_LOG_DEBUG))                                                \
			opd_log_write(OPD_LOG_DEBUG, LOG_COMPONENT, __VA_ARGS__);                  \
	} while (0)
#define log_info(...) opd_log_write(OPD_LOG_INFO, LOG_COMPONENT, __VA_ARGS__)
#define log_warn(...) opd_log_write(OPD_LOG_WARN, LOG_COMPONENT, __VA_ARGS__)
#define log_error(...) opd_log_write(OPD_LOG_ERROR, LOG_COMPONENT, __VA_ARGS__)
#define fatal(...) opd_log_fatal(LOG_COMPONENT, __VA_ARGS__)

#endif
