#include "err.h"

#include <stdio.h>
#include <string.h>

const char *opd_strerror(int rc)
{
	switch (rc) {
#define X(name, val, msg)                                                                          \
	case name:                                                                                 \
		return msg;
		OPD_ERRORS(X)
#undef X
	case 0:
		return "success";
	}
	return "unknown error";
}

void opd_errmsg_printf(char *errmsg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, OPD_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
}

void opd_errmsg_wrapf(char *errmsg, const char *fmt, ...)
{
	char prefix[OPD_ERRMSG_SIZE];
	char old[OPD_ERRMSG_SIZE];
	va_list ap;

	memcpy(old, errmsg, OPD_ERRMSG_SIZE);
	old[OPD_ERRMSG_SIZE - 1] = '\0';
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	/* Truncation is intended: an errmsg is a bounded human-readable line. */
	size_t n = strlen(prefix);
	if (n > OPD_ERRMSG_SIZE - 3)
		n = OPD_ERRMSG_SIZE - 3;
	memcpy(errmsg, prefix, n);
	memcpy(errmsg + n, ": ", 2);
	size_t room = OPD_ERRMSG_SIZE - n - 3, m = strlen(old);
	if (m > room)
		m = room;
	memcpy(errmsg + n + 2, old, m);
	errmsg[n + 2 + m] = '\0';
}
