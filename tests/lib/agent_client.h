/*
 * A C OpAMP test agent over blocking loopback sockets with poll() deadlines:
 * a WebSocket client (upgrade with a random key, accept-key check, masked
 * frames, server frames including close codes) and a plain HTTP POST client
 * (optional gzip both ways). It builds AgentToServer messages with protobuf-c
 * and decodes ServerToAgent. Raw byte senders exist for hostile tests.
 * Optionally over TLS (wss:// and https://, OpenSSL on the socket), with a
 * client certificate, and with an Authorization: Bearer header on the
 * upgrade request and on every POST.
 */
#ifndef OPD_TEST_AGENT_CLIENT_H
#define OPD_TEST_AGENT_CLIENT_H

#include "opamp/v1/opamp.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ReportsStatus|AcceptsRemoteConfig|ReportsEffectiveConfig|ReportsHealth|ReportsRemoteConfig|
 * ReportsHeartbeat|AcceptsOpAMPConnectionSettings. */
#define OPD_TA_CAPS (0x3807u | 0x100u)

/* The largest server message the client accepts. */
#define OPD_TA_MAX_MSG (8 * 1024 * 1024)

struct opd_ta {
	int fd; /* -1 when closed; HTTP agents open one connection per POST */
	int port;
	bool ws;
	uint8_t uid[16];
	char uid_hex[33];
	uint64_t seq; /* sequence_num of the last message built */
	uint64_t capabilities;
	uint8_t *in; /* WebSocket bytes received and not yet parsed */
	size_t in_len, in_cap;
	int close_code;    /* WebSocket close code received, -1 if none */
	bool close_sent;   /* we sent a close frame already */
	bool gzip_request; /* HTTP: gzip the body (Content-Encoding: gzip) */
	bool accept_gzip;  /* HTTP: send Accept-Encoding: gzip */
	int last_status;   /* HTTP: status of the last POST; WebSocket: of the upgrade request */
	char last_content_encoding[64]; /* HTTP: Content-Encoding of the last response ("" none) */
	char last_content_type[64];
	Opamp__Proto__V1__ServerToAgent *pending; /* HTTP: the reply of the last POST */

	/* TLS and credentials: set after opd_ta_init, before connecting; all off by default. */
	bool tls;                  /* speak TLS (TLS 1.2 at least) */
	const char *tls_ca_file;   /* verify the server (chain and IP 127.0.0.1); NULL: no check */
	const char *tls_cert_file; /* client certificate chain (PEM); NULL: none */
	const char *tls_key_file;  /* its key */
	const char *bearer_token;  /* "Authorization: Bearer <token>" on requests; NULL: none */
	void *ssl;                 /* the open connection's SSL * (NULL when closed or plain) */
	void *ssl_ctx;             /* its SSL_CTX * */
	char tls_error[256];       /* why the last TLS handshake or read failed ("" = it did not) */
	char server_fingerprint[65]; /* SHA-256 (hex) of the server certificate last seen */
	char tls_version[16];        /* protocol of the last TLS connection ("TLSv1.3") */
};

/* Storage for one AgentToServer and its sub-messages, filled by the opd_ta_msg_* helpers. */
struct opd_ta_msg {
	Opamp__Proto__V1__AgentToServer msg;
	Opamp__Proto__V1__AgentDescription desc;
	Opamp__Proto__V1__KeyValue kv[4];
	Opamp__Proto__V1__AnyValue av[4];
	Opamp__Proto__V1__KeyValue *kvp[4];
	Opamp__Proto__V1__ComponentHealth health;
	Opamp__Proto__V1__RemoteConfigStatus rcs;
	uint8_t rcs_hash[64];
	Opamp__Proto__V1__EffectiveConfig eff;
	Opamp__Proto__V1__AgentConfigMap eff_map;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry eff_entry;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *eff_entryp;
	Opamp__Proto__V1__AgentConfigFile eff_file;
	Opamp__Proto__V1__AgentDisconnect disc;
};

/* A fresh agent with a random instance_uid; no connection yet. */
void opd_ta_init(struct opd_ta *a, int port, uint64_t capabilities);

/*
 * WebSocket: connect to 127.0.0.1:port, upgrade on /v1/opamp, check 101 and the accept key.
 * Returns 0 or -1 (reason on stderr).
 */
int opd_ta_ws_connect(struct opd_ta *a);

/* Close the socket (no close handshake) and free buffers. */
void opd_ta_fini(struct opd_ta *a);

/* Start a message: uid, sequence_num = ++a->seq, capabilities. */
void opd_ta_msg_init(struct opd_ta_msg *b, struct opd_ta *a);
/* Identifying service.name=name, non-identifying os.type=linux and host.name=e2e. */
void opd_ta_msg_description(struct opd_ta_msg *b, const char *name);
/* ComponentHealth healthy/unhealthy with last_error (may be NULL) and status text. */
void opd_ta_msg_health(struct opd_ta_msg *b, bool healthy, const char *last_error);
/* RemoteConfigStatus with the hash as 64 hex digits (NULL or "" = empty hash). */
void opd_ta_msg_remote_config_status(struct opd_ta_msg *b, const char *hash_hex, int status,
				     const char *error_message);
/* An effective config of one file "collector.yaml". */
void opd_ta_msg_effective_config(struct opd_ta_msg *b, const char *yaml);
/* The AgentDisconnect marker. */
void opd_ta_msg_disconnect(struct opd_ta_msg *b);
/* A full first report: description, health (healthy), effective config, empty remote status. */
void opd_ta_msg_full(struct opd_ta_msg *b, struct opd_ta *a, const char *name);

/*
 * Send one message. WebSocket: one binary message "0x00 varint header + protobuf". HTTP: one
 * POST on a fresh connection whose reply is kept for opd_ta_recv. Returns 0 or -1 (for
 * HTTP also when the status is not 200; a->last_status tells which).
 */
int opd_ta_send(struct opd_ta *a, const Opamp__Proto__V1__AgentToServer *m);

/*
 * Receive the next ServerToAgent within timeout_ms (WebSocket: the next binary message, pings
 * answered; HTTP: the kept reply). Returns the message (free with
 * opamp__proto__v1__server_to_agent__free_unpacked(m, NULL)) or NULL on timeout, close
 * (a->close_code set) or a message that does not decode.
 */
Opamp__Proto__V1__ServerToAgent *opd_ta_recv(struct opd_ta *a, int timeout_ms);

/* Send then receive. */
Opamp__Proto__V1__ServerToAgent *
opd_ta_exchange(struct opd_ta *a, const Opamp__Proto__V1__AgentToServer *m, int timeout_ms);

/* A heartbeat (uid, seq, capabilities) exchanged; the reply or NULL. */
Opamp__Proto__V1__ServerToAgent *opd_ta_heartbeat(struct opd_ta *a, int timeout_ms);

/*
 * WebSocket: send one frame with any opcode and payload (masked, FIN set). 0 or -1. A frame
 * over 1 MiB (hostile tests) stops being sent as soon as the server answers or closes, and
 * then counts as sent.
 */
int opd_ta_ws_send_frame(struct opd_ta *a, int opcode, const void *p, size_t n);

/* WebSocket: send a close frame with code (and no reason). */
int opd_ta_ws_send_close(struct opd_ta *a, int code);

/*
 * WebSocket: wait for the next binary message (answering pings). On success stores a malloc'd
 * payload in *out / *n and returns 1; returns 0 on a close frame (a->close_code set) or EOF
 * (a->close_code stays -1 on a bare EOF), -1 on timeout or a protocol error.
 */
int opd_ta_ws_read_message(struct opd_ta *a, int timeout_ms, uint8_t **out, size_t *n);

/* Raw bytes on the agent's socket. 0 or -1. */
int opd_ta_send_raw(struct opd_ta *a, const void *p, size_t n);

/* Hex of a config hash (n bytes) into out (2n+1). */
void opd_ta_hex(const uint8_t *p, size_t n, char *out);

/* gzip (RFC 1952) src into a malloc'd buffer; returns its length, or 0 on failure. */
size_t opd_ta_gzip(const uint8_t *src, size_t n, uint8_t **out);
/* gunzip at most max bytes; returns the length or (size_t)-1 on failure / over max. */
size_t opd_ta_gunzip(const uint8_t *src, size_t n, size_t max, uint8_t **out);

#endif
