/*
 * The OpAMP endpoint, /v1/opamp: routes a connection's requests to the plain
 * HTTP transport (POST application/x-protobuf) or upgrades it to a WebSocket,
 * decodes each message, runs the agent's session and sends the answer. Also
 * pushes new configurations to WebSocket agents. The glue between conn.c
 * (bytes) and session.c (protocol); owns no socket itself.
 */
#ifndef OPD_ENDPOINT_H
#define OPD_ENDPOINT_H

#include "clock.h"
#include "list.h"
#include "listener.h"
#include "registry.h"
#include "tls.h"

#include <stdint.h>

#define OPD_OPAMP_PATH "/v1/opamp"
#define OPD_ENDPOINT_CSR_WAIT_MS 5000 /* an HTTP poll with a CSR waits this long for its answer */

struct opd_endpoint_stats {
	uint64_t messages_ws, messages_http;
	uint64_t bad_requests;    /* undecodable messages answered with BadRequest / 400 */
	uint64_t protocol_errors; /* connections closed for framing errors */
	uint64_t pushes;          /* remote configs pushed without a request */
	uint64_t auth_failures;   /* requests refused with 401: missing or wrong bearer token */
	uint64_t cert_mismatches; /* messages refused: instance_uid not the certificate's */
	uint64_t cert_refused;    /* connections refused by auth.cert_check (revoked) */
	uint64_t offers_sent;     /* certificate offers pushed to WebSocket agents */
};

/* How agents prove who they are (see README, "TLS and agent authentication"). */
struct opd_endpoint_auth {
	const struct opd_tls_tokens *tokens; /* borrowed; NULL or empty = no token needed */
	/*
	 * Not OFF: an agent's verified client certificate binds it to the
	 * instance_uid it names, and a message for another uid is refused.
	 * REQUIRED also refuses a connection without one.
	 */
	enum opd_tls_verify mtls;
	/*
	 * Checked once per connection (each HTTP request, a WebSocket's first
	 * message) for a verified client certificate: NULL when it may be used,
	 * else why not (a revoked certificate). fp_hex: its SHA-256. May be NULL.
	 */
	const char *(*cert_check)(void *data, const uint8_t uid[OPD_UID_LEN], const char *fp_hex);
	void *cert_data;
};

struct opd_endpoint {
	struct opd_registry *registry; /* borrowed */
	const struct opd_clock *clock; /* borrowed */
	uint64_t retry_after_s;        /* suggested to agents refused for load */
	struct opd_endpoint_auth auth; /* default: nothing checked */
	uint64_t auth_logged_ms;       /* refusals are logged at most once a second */
	struct opd_endpoint_stats stats;
	struct opd_list csr_waits; /* HTTP polls whose reply waits for a CSR answer */
	struct opd_buf *csr_stash; /* during an HTTP receive: an answer given at once */
	uint64_t csr_stash_retry;  /* ...and its Retry-After when it said Unavailable */
};

void opd_endpoint_init(struct opd_endpoint *e, struct opd_registry *r,
		       const struct opd_clock *clock);

/* HTTP polls that waited OPD_ENDPOINT_CSR_WAIT_MS for a CSR answer get Unavailable. */
void opd_endpoint_tick(struct opd_endpoint *e);

/* The listener handler serving this endpoint. */
struct opd_listener_handler opd_endpoint_handler(struct opd_endpoint *e);

/*
 * Configurations changed (opd_registry_configs_changed_each): send each
 * WebSocket agent whose desired config may have moved its new config now.
 * The others were sent theirs when it last moved, or get it when they next
 * speak (HTTP, or not computed yet).
 */
void opd_endpoint_configs_changed(struct opd_endpoint *e);

/* Send agent a its due certificate offer now if it is on a WebSocket: 1 sent, 0 not (an HTTP
 * agent gets it with its next poll). */
int opd_endpoint_offer(struct opd_endpoint *e, struct opd_agent *a);

/* Close agent a's WebSocket with a policy violation saying why (its certificate was revoked). */
void opd_endpoint_drop(struct opd_endpoint *e, struct opd_agent *a, const char *why);

#endif
