/*
 * Error codes shared by every opampd module. Functions return 0 on success or
 * a negative OPD_E* code; size-returning functions return bytes consumed or a
 * negative code, OPD_EAGAIN meaning "incomplete, push more". Long-lived
 * objects carry a char errmsg[OPD_ERRMSG_SIZE] written with opd_errmsg_printf.
 */
#ifndef OPD_ERR_H
#define OPD_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define OPD_ERRMSG_SIZE 256

#define OPD_ERRORS(X)                                                                              \
	X(OPD_ENOMEM, -1, "out of memory")                                                         \
	X(OPD_EINVAL, -2, "invalid argument")                                                      \
	X(OPD_EAGAIN, -3, "need more input")                                                       \
	X(OPD_EPROTO, -4, "protocol violation")                                                    \
	X(OPD_ETOOBIG, -5, "message too large")                                                    \
	X(OPD_EIO, -6, "I/O error")                                                                \
	X(OPD_ESTORE, -7, "storage error")                                                         \
	X(OPD_ENOTLEADER, -8, "not the raft leader")                                               \
	X(OPD_ECANCELED, -9, "operation canceled")                                                 \
	X(OPD_ENOTFOUND, -10, "not found")                                                         \
	X(OPD_ECONFLICT, -11, "conflict")

enum opd_err {
#define X(name, val, msg) name = val,
	OPD_ERRORS(X)
#undef X
};

/* Human-readable text for an OPD_E* code (or "unknown error"). */
const char *opd_strerror(int rc);

/* Format into an errmsg buffer of OPD_ERRMSG_SIZE bytes; truncates silently. */
void opd_errmsg_printf(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current contents of errmsg with a formatted context: "ctx: old". */
void opd_errmsg_wrapf(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
