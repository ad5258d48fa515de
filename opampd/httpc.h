/*
 * An asynchronous HTTP client on the daemon's libuv loop, for calls between
 * cluster nodes: forwarding an admin write to the leader and fanning GETs out
 * to the other nodes. libcurl's multi interface does the HTTP; its sockets
 * and timer are driven by uv_poll_t handles and one uv_timer_t, so nothing
 * blocks the loop and every callback runs on the loop thread. No redirects,
 * no proxy from the environment, a bounded response size and a hard
 * timeout per request. curl_global_init() is not called here: the daemon
 * calls it once in main (tests in their main), before any thread exists.
 * Lifecycle: init, requests, then close(cb); freed only after cb runs.
 */
#ifndef OPD_HTTPC_H
#define OPD_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct opd_httpc;

/*
 * A request finished. status is the HTTP status (any, including 4xx/5xx), or
 * a negative code:
 *   OPD_EIO       connect or transfer failure, or the timeout expired
 *   OPD_ETOOBIG   the response body was larger than max_response
 *   OPD_ECANCELED opd_httpc_close ran before the request finished
 * content_type and retry_after are the response's header values, or NULL when
 * absent; body is the response body (NULL or empty when len is 0). All three
 * are borrowed for the duration of the call; only status is meaningful when
 * it is negative.
 */
typedef void (*opd_httpc_cb)(void *data, int status, const char *content_type,
			     const char *retry_after, const uint8_t *body, size_t len);

/*
 * Create a client on loop (kept: it must outlive the client). Sets *out only
 * on success. Returns 0 or OPD_ENOMEM (libcurl could not set up).
 */
int opd_httpc_init(struct opd_httpc **out, uv_loop_t *loop) __attribute__((warn_unused_result));

/*
 * Stop the client. Every pending request is aborted; its callback runs with
 * OPD_ECANCELED, from the loop (never inside this call), before cb. Then cb
 * runs once with data, after every handle is closed, and the client's memory
 * is gone. New requests are refused from the moment this is called.
 * Call it exactly once. cb may be NULL.
 */
void opd_httpc_close(struct opd_httpc *c, void (*cb)(void *data), void *data);

/*
 * Start a request. method is "GET", "POST", "PUT", "PATCH", "DELETE", ...;
 * url is "http://host:port/path" (or https, with libcurl's default
 * certificate checks). headers are "Name: value" strings, NULL-terminated, or
 * NULL. body/len is sent as the request body (len 0 sends none for GET,
 * HEAD and DELETE, and an empty body otherwise). Everything is borrowed:
 * copied before this returns. timeout_ms (> 0) bounds the whole exchange,
 * connecting included; max_response bounds the body received.
 *
 * Returns 0, after which cb runs exactly once, later, from the loop; or, and
 * then cb never runs:
 *   OPD_EINVAL    bad argument (NULL or malformed method/url, a header with
 *                 CR or LF, timeout_ms 0)
 *   OPD_ECANCELED the client is closing
 *   OPD_ENOMEM    libcurl could not allocate
 */
int opd_httpc_request(struct opd_httpc *c, const char *method, const char *url,
		      const char *const *headers, const void *body, size_t len, unsigned timeout_ms,
		      size_t max_response, opd_httpc_cb cb, void *data)
    __attribute__((warn_unused_result));

/*
 * Verify https peers against the CA certificates in path (PEM; borrowed,
 * copied) instead of the system bundle, from the next request on. NULL goes
 * back to the system bundle. The file is read by libcurl at each request.
 */
void opd_httpc_set_ca_file(struct opd_httpc *c, const char *path);

/* Number of requests started and not yet completed (their callback not yet run). */
size_t opd_httpc_pending(const struct opd_httpc *c);

#endif
