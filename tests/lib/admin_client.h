/*
 * A minimal blocking HTTP/1.1 client for end-to-end tests over a loopback
 * socket: raw request bytes in, status, headers and body out, every wait
 * bounded by poll() deadlines. Also the admin API helpers (bearer token, JSON
 * bodies parsed with jansson, polling an agent until a field has a value).
 * The agent client reuses the socket and response helpers.
 */
#ifndef OPD_TEST_ADMIN_CLIENT_H
#define OPD_TEST_ADMIN_CLIENT_H

#include "daemon.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define OPD_CLIENT_MAX_HEAD (64 * 1024)
#define OPD_CLIENT_MAX_BODY (16 * 1024 * 1024)

struct opd_client_resp {
	int status;    /* 0 when no status line was received */
	char *head;    /* status line and headers, NUL-terminated (owned) */
	uint8_t *body; /* body, NUL-terminated for convenience (owned) */
	size_t body_len;
	int closed;     /* the server closed the connection (EOF or reset seen) */
	uint8_t *extra; /* bytes received after the response (owned) */
	size_t extra_len;
};

/* Connect to 127.0.0.1:port (blocking connect, CLOEXEC). Returns the fd or -1. */
int opd_client_connect(int port);

/* Send all n bytes before the deadline (monotonic ms). 0, or -1 with errno. */
int opd_client_send_all(int fd, const void *p, size_t n, uint64_t deadline);

/*
 * Receive at most cap bytes into p, waiting until the deadline. Returns the byte count, 0 on
 * EOF, -1 on error or timeout (errno ETIMEDOUT).
 */
long opd_client_recv(int fd, void *p, size_t cap, uint64_t deadline);

/*
 * Send the n request bytes and read one response. Sending stops early when the server answers
 * or closes first (a 413 or 431 arrives while the body is still being sent). Returns 0 when a
 * response (status line and headers, and the body by Content-Length, chunked, or up to EOF) was
 * read before timeout_ms, otherwise -1; r is filled as far as it got and must be freed either way.
 */
int opd_client_exchange(int fd, const void *req, size_t n, int timeout_ms,
			struct opd_client_resp *r);

/* Read one response from fd (no request sent). Same return values as opd_client_exchange. */
int opd_client_read_response(int fd, uint64_t deadline, struct opd_client_resp *r);

/*
 * Copy the value of the first header called name (case-insensitive), trimmed, into out.
 * Returns out, or NULL when the header is absent.
 */
const char *opd_client_header(const struct opd_client_resp *r, const char *name, char *out,
			      size_t cap);

void opd_client_resp_free(struct opd_client_resp *r);

/*
 * One admin API request on a fresh connection: method, path, an optional JSON body and an
 * optional bearer token (NULL: no Authorization header). When json is not NULL it receives the
 * parsed body (NULL when it is not JSON; caller decrefs). Returns the status, or -1.
 */
int opd_api_request(const struct opd_daemon *d, const char *method, const char *path,
		    const char *body, const char *token, struct opd_client_resp *r, json_t **json);

/* GET /api/v1/agents/{uid_hex} with the daemon's token: the agent object, or NULL (not 200). */
json_t *opd_api_get_agent(const struct opd_daemon *d, const char *uid_hex);

/*
 * Render the value at a dotted path ("health.state", "remote_config_status.config_hash") as
 * text: strings as is, true/false, integers, reals (%g), "null", "<missing>", or "<object>".
 */
const char *opd_api_json_text(json_t *j, const char *path, char *out, size_t cap);

/*
 * Poll the agent every 100 ms until the value at path renders as want; at most timeout_ms.
 * Returns the agent object (caller decrefs), or NULL after printing the last value seen.
 */
json_t *opd_api_wait_agent(const struct opd_daemon *d, const char *uid_hex, const char *path,
			   const char *want, int timeout_ms);

/*
 * Publish one YAML file "collector.yaml" with body yaml as configuration name (no selector:
 * matches every agent). On 200/201 stores config_hash (64 hex + NUL) and the version. Returns
 * the HTTP status, or -1.
 */
int opd_api_publish(const struct opd_daemon *d, const char *name, const char *yaml, char hash[65],
		    int *version);

#endif
