/*
 * The operator's command line: "opampd config|agents|cluster|rollout|certs ..." talks to a
 * node's admin API over HTTP (libcurl, blocking: a CLI has nothing else to do while it waits)
 * and prints tables, or the JSON itself with --json. The admin URL and token come from
 * --url/--token, then OPAMPD_URL/OPAMPD_TOKEN, then the local data directory (--data-dir,
 * default ./opampd-data: its admin.token, and ready.json for the admin port), then
 * http://127.0.0.1:4321. Every write carries an Idempotency-Key, so running a command again
 * with the key it printed is safe.
 *
 * Exit codes: 0 ok, 1 the API refused or failed (its message printed), 2 usage, 3 cannot
 * connect. cli.c holds the shared machinery declared below (options, the HTTP call, tables,
 * formatting); cli_config.c, cli_diff.c, cli_agents.c, cli_cluster.c and cli_certs.c the
 * subcommands.
 */
#ifndef OPD_CLI_H
#define OPD_CLI_H

#include "buf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define OPD_CLI_OK 0
#define OPD_CLI_API 1     /* the API answered with an error, or a watched rollout failed */
#define OPD_CLI_USAGE 2   /* bad arguments */
#define OPD_CLI_CONNECT 3 /* no answer: connection refused, DNS, timeout */

/* 1 when name is a CLI command group ("config", "agents", "cluster", "rollout", "certs"). */
int opd_cli_is_command(const char *name);

/* The CLI part of "opampd --help". */
const char *opd_cli_usage(void);

/*
 * Run a CLI command: argv[0] is the group ("config"), the rest its words and options (argv is
 * borrowed). Prints to stdout and stderr. Returns the exit code (OPD_CLI_*).
 */
int opd_cli_main(int argc, char **argv);

/* ---- shared by the cli_*.c files only ---- */

#define OPD_CLI_MAX_POS 64           /* positional words after the subcommand */
#define OPD_CLI_MAX_REPEAT 32        /* values of one repeatable option */
#define OPD_CLI_MAX_OPTS 8           /* options of one subcommand (besides the global ones) */
#define OPD_CLI_MAX_BODY (64u << 20) /* largest answer the CLI reads */

/* An option a subcommand accepts: "--selector" with a value, "--watch" without. */
struct opd_cli_optspec {
	const char *name;
	int has_value;
	int repeat; /* may be given more than once */
};

/* Parsed command line of one subcommand (strings borrowed from argv). */
struct opd_cli_args {
	const char *pos[OPD_CLI_MAX_POS];
	size_t n_pos;
	const struct opd_cli_optspec *specs; /* NULL-name terminated */
	const char *vals[OPD_CLI_MAX_OPTS][OPD_CLI_MAX_REPEAT];
	size_t n_vals[OPD_CLI_MAX_OPTS]; /* a flag without value counts 1 with vals NULL */
};

/* The connection and output settings shared by every subcommand. */
struct opd_cli {
	const char *url_flag, *token_flag, *data_dir, *idem_flag, *timeout_flag;
	const char *cacert; /* --cacert or $OPAMPD_CACERT, NULL: the system's CAs */
	int json;
	char url[1024];  /* resolved admin URL, no trailing slash */
	char token[256]; /* resolved token ("" none) */
	char token_source[64];
	char idem_key[64]; /* this invocation's Idempotency-Key */
	long timeout_ms;   /* per request */
	void *curl;        /* CURL *, created on first use */
};

/* Values of option name (NULL when absent); *n gets the count. */
const char *const *opd_cli_opt(const struct opd_cli_args *a, const char *name, size_t *n);
/* The single value of name, or NULL. */
const char *opd_cli_opt1(const struct opd_cli_args *a, const char *name);
/* 1 when the flag was given. */
int opd_cli_flag(const struct opd_cli_args *a, const char *name);

/* Parse an unsigned decimal in [min, max]. 0 or -1. */
int opd_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parse a signed decimal. 0 or -1. */
int opd_cli_parse_i64(const char *s, int64_t *out);

/* Print "opampd: <message>" and the usage text to stderr; returns OPD_CLI_USAGE. */
int opd_cli_usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * One admin API call. path starts with "/" (segments already escaped); body (borrowed, may be
 * NULL) is sent as JSON; writes (anything but GET) carry the Idempotency-Key. On a 2xx answer
 * returns OPD_CLI_OK with *out the parsed body (caller decrefs; an empty or non-JSON body gives
 * a JSON null) and, when raw is not NULL, the body bytes appended to it. Otherwise prints the
 * error (the API's code and message, or why there was no answer; with --json also the error
 * body on stdout) and returns OPD_CLI_API or OPD_CLI_CONNECT. If status is not NULL it receives
 * the HTTP status (0 when there was no answer).
 */
int opd_cli_call(struct opd_cli *c, const char *method, const char *path, json_t *body,
		 json_t **out, struct opd_buf *raw, long *status);

/*
 * Like opd_cli_call but prints nothing on an HTTP error (connection errors are printed): then
 * *out gets the error body (NULL when it is not JSON), for opd_cli_print_error.
 */
int opd_cli_call_quiet(struct opd_cli *c, const char *method, const char *path, json_t *body,
		       json_t **out, long *status);

/* Print an API error answer (err and raw may be NULL) as opd_cli_call does. */
void opd_cli_print_error(struct opd_cli *c, long status, json_t *err, const struct opd_buf *raw,
			 const char *method, const char *path);

/* Percent-encode one path segment or query value into a malloc'd string. */
char *opd_cli_escape(const char *s);

/* Print a JSON value on stdout (indented, one document). */
void opd_cli_print_json(json_t *j);

/* A text table: add rows of ncols cells, print with aligned columns. */
struct opd_cli_table {
	size_t ncols, nrows;
	char **cells; /* owned, nrows * ncols */
};
void opd_cli_table_init(struct opd_cli_table *t, size_t ncols);
/* Append a row of t->ncols cells (copied; NULL prints as "-"). */
void opd_cli_table_row(struct opd_cli_table *t, const char *const *cells);
/* Print the header and rows to stdout, then free the table. */
void opd_cli_table_print(struct opd_cli_table *t, const char *const *header);

/* Formatting helpers writing into out (cap bytes); each returns out. */
const char *opd_cli_fmt_time(uint64_t unix_ms, char *out, size_t cap);  /* UTC, "-" for 0 */
const char *opd_cli_fmt_age(uint64_t unix_ms, char *out, size_t cap);   /* "12s ago" */
const char *opd_cli_fmt_kvs(json_t *obj, char *out, size_t cap);        /* k=v,k=v or "*" */
const char *opd_cli_short_hash(const char *hex, char *out, size_t cap); /* first 12 digits */

/* JSON accessors that tolerate missing keys: "" / 0 / false. */
const char *opd_cli_jstr(json_t *o, const char *key);
int64_t opd_cli_jint(json_t *o, const char *key);
int opd_cli_jbool(json_t *o, const char *key);

/*
 * Line diff of two texts in unified format (---/+++ headers named a_name and b_name, @@ hunks
 * with ctx lines of context) appended to out. Returns the number of changed lines (0: equal).
 * Texts over OPD_CLI_DIFF_MAX_LINES lines, or whose edit script would need more memory than a
 * fixed bound, are shown as one hunk replacing every line.
 */
#define OPD_CLI_DIFF_MAX_LINES 200000
size_t opd_cli_diff(const char *a, size_t a_len, const char *b, size_t b_len, const char *a_name,
		    const char *b_name, int ctx, struct opd_buf *out);

/* The subcommand groups. argv[0] is the group word; c is set up with the global options. */
int opd_cli_config(struct opd_cli *c, int argc, char **argv);
int opd_cli_agents(struct opd_cli *c, int argc, char **argv);
int opd_cli_cluster(struct opd_cli *c, int argc, char **argv);
int opd_cli_rollout(struct opd_cli *c, int argc, char **argv);
int opd_cli_certs(struct opd_cli *c, int argc, char **argv);

/*
 * Parse argv (after the subcommand words) against specs plus the global options (stored into
 * c). Returns OPD_CLI_OK, or OPD_CLI_USAGE after printing the problem and usage. "--help"
 * prints usage to stdout and returns -1 (the caller exits 0).
 */
int opd_cli_parse(struct opd_cli *c, int argc, char **argv, const struct opd_cli_optspec *specs,
		  const char *usage, struct opd_cli_args *out);

#endif
