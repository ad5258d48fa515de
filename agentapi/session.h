/*
 * The per-agent OpAMP state machine. One AgentToServer in, one ServerToAgent
 * out (the spec requires an answer to every message), plus pushes when
 * configurations change. Pure: no sockets, no clock, no logging; the caller
 * passes the time and writes the produced bytes.
 */
#ifndef OPD_SESSION_H
#define OPD_SESSION_H

#include "registry.h"
#include "wire.h"

/* Why a message was refused (for the caller's log line). */
struct opd_session_error {
	char message[256];
};

/*
 * Handle one decoded AgentToServer that arrived over transport t, on the
 * connection conn (NULL for HTTP). *bound is the agent this connection spoke
 * for until now (NULL at first) and is updated. The answer, a packed
 * ServerToAgent without the WebSocket header, is appended to reply.
 *
 * The session: finds or creates the agent (a RequestInstanceUid gets a new
 * uid in agent_identification); checks sequence numbers (a gap, or an
 * unknown agent whose message is compressed, gets ReportFullState); keeps
 * every reported sub-message (status compression); records the heartbeat;
 * includes remote_config when the agent accepts remote config and its
 * reported hash differs from the desired one (not again while a sent config
 * is unanswered); offers connection settings (destination_endpoint =
 * settings.endpoint, heartbeat_interval_seconds always set, a hash over both)
 * once to agents with AcceptsOpAMPConnectionSettings and ReportsHeartbeat.
 *
 * Returns 0, or OPD_EINVAL for a message that is not acceptable (e.g. an
 * instance_uid that is not 16 bytes): reply then holds a ServerToAgent with
 * error_response BadRequest, and err says why. Returns OPD_EAGAIN when the
 * agent cannot be admitted (max_agents): reply holds error_response
 * Unavailable with RetryInfo.
 */
int opd_session_receive(struct opd_registry *r, struct opd_agent **bound, struct opd_conn *conn,
			enum opd_transport t, const opd_a2s *m, uint64_t now_ms, uint64_t wall_ms,
			struct opd_buf *reply, struct opd_session_error *err);

/*
 * After a configuration change: if agent a (connected over WebSocket) should
 * receive a new remote config, append a ServerToAgent to out and return 1;
 * otherwise 0. HTTP agents get theirs in the reply to their next poll.
 */
int opd_session_push(struct opd_registry *r, struct opd_agent *a, uint64_t now_ms,
		     struct opd_buf *out);

/* The connection of agent a closed (WebSocket) without or with AgentDisconnect. */
void opd_session_closed(struct opd_registry *r, struct opd_agent *a, struct opd_conn *conn,
			uint64_t wall_ms);

/*
 * The port's answer to the CSR handed off with token (csr.request): encodes a
 * ServerToAgent for uid (connection_settings with the certificate, or
 * error_response BadRequest, or Unavailable with RetryInfo) and gives it to
 * r->csr_sink. A message that carries a CSR is answered as usual without a
 * word about it; r->csr_handed tells the transport which token it got.
 */
void opd_session_csr_answer(struct opd_registry *r, uint64_t token, const uint8_t uid[OPD_UID_LEN],
			    const struct opd_csr_answer *ans);

/* A certificate to offer an agent (borrowed strings). */
struct opd_cert_offer {
	const char *cert_pem;
	const char *key_pem; /* server-generated: the agent's new private key; CSR flow: NULL */
	const char *ca_pem;  /* the trust bundle */
	uint64_t serial;
	const char *rotation_id; /* NULL or "" unless for a rotation */
};

/*
 * Offer agent a a certificate (spec §3.7): connection_settings with our
 * endpoint, heartbeat interval and the certificate, under a hash over all of
 * it. The packed message is kept in a->tls until the agent applies it (it
 * reconnects presenting the certificate, or reports APPLIED), due with the
 * next message to the agent and resent on a new connection up to
 * OPD_OFFER_MAX_SENDS times. 0, or OPD_EINVAL when cert_pem is not a
 * certificate.
 */
int opd_session_offer_cert(struct opd_registry *r, struct opd_agent *a,
			   const struct opd_cert_offer *o, uint64_t wall_ms);

/* Append a's due offer (a packed ServerToAgent) to out: 1, or 0 when none is due. */
int opd_session_take_offer(struct opd_agent *a, struct opd_buf *out);

/* Agent a presents the client certificate with SHA-256 fp: an offer of it is applied. */
void opd_session_cert_presented(struct opd_agent *a, const uint8_t fp[OPD_CERT_FP_LEN]);

/* Append a ServerToAgent carrying only error_response (no instance_uid when uid is NULL). */
void opd_session_error_reply(const uint8_t *uid, int type, const char *message,
			     uint64_t retry_after_ns, struct opd_buf *reply);

#endif
