/*
 * The agent-initiated CSR flow (spec §3.8) on the daemon's side: implements
 * the registry's csr port. On the leader a CSR goes to certs.c, which checks
 * and signs it and answers once the issuance is in the replicated log; a
 * follower relays it to the leader's POST /internal/v1/csr with the peer
 * token and relays the answer; a read-only node, or one without a CA, answers
 * Unavailable at once. Answers go back through opd_session_csr_answer.
 */
#ifndef OPD_CSR_H
#define OPD_CSR_H

#include "certs.h"
#include "cluster.h"
#include "registry.h"

#define OPD_CSR_SERVER_CAP 0x40         /* ServerCapabilities_AcceptsConnectionSettingsRequest */
#define OPD_CSR_FORWARD_TIMEOUT_MS 4000 /* within the HTTP poll's 5 s */

struct opd_csr {
	struct opd_certs *certs;       /* borrowed */
	struct opd_registry *registry; /* borrowed */
	struct opd_cluster *cluster;   /* borrowed; NULL: never forward */
	uint64_t self_id;
	uint64_t issued, refused, unavailable, forwarded;
};

/* The outcome of a signing: status 0 with the certificate and the CA bundle (borrowed for the
 * call), OPD_EINVAL refused (message says why), else not signed now (message). */
typedef void (*opd_csr_signed_cb)(void *data, int status, const char *cert_pem, const char *ca_pem,
				  const char *message);

/*
 * Have the CSR (PEM, borrowed) for agent uid signed: here on the leader, by
 * the leader through POST /internal/v1/csr on a follower, or not at all on a
 * read-only node or one without a CA. reason: "csr", "server", "renewal" or
 * "rotation" (with rotation_id). cb runs exactly once, possibly before the
 * call returns. Returns 0.
 */
int opd_csr_sign(struct opd_csr *x, const uint8_t uid[OPD_UID_LEN], const uint8_t *csr, size_t len,
		 const char *reason, const char *rotation_id, const char *actor,
		 opd_csr_signed_cb cb, void *data);

/* The registry port (ops.csr); data is a struct opd_csr. */
void opd_csr_request(void *data, const struct opd_agent *a, const uint8_t *csr, size_t len,
		     uint64_t token);

#endif
