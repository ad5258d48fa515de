/*
 * Certificates offered by the server (spec §3.7): the node an agent is
 * connected to decides when the agent needs a new client certificate, makes
 * the key pair itself, has the leader sign it through the same path as an
 * agent's CSR (csr.h: here on the leader, forwarded by a follower, refused on
 * a read-only node), and offers certificate, key and trust bundle in
 * connection_settings. The private key never leaves this node except to the
 * agent, and is cleansed from memory once the agent has applied the offer.
 *
 * An agent connected here that accepts OpAMP connection settings gets a
 * certificate when:
 *  - a rotation whose selector matches it started after its newest
 *    certificate was issued (reason "rotation");
 *  - its newest certificate has lived renew_share of its lifetime (reason
 *    "renewal", default two thirds);
 *  - with enroll set, it has none and did not send a CSR within
 *    OPD_OFFERS_ENROLL_GRACE_MS of connecting (reason "server").
 * Agents without the capability are left alone and reported as unsupported
 * by the rotation progress (admin API). The agent acknowledges an offer by
 * reconnecting with the new certificate (or reporting APPLIED); see session.h.
 * Revoking a certificate closes the connections that presented it.
 */
#ifndef OPD_CERT_OFFERS_H
#define OPD_CERT_OFFERS_H

#include "certs.h"
#include "csr.h"
#include "endpoint.h"
#include "registry.h"

#define OPD_OFFERS_RENEW_SHARE 0.6667      /* of a certificate's lifetime, then renewed */
#define OPD_OFFERS_MAX_IN_FLIGHT 32        /* signings this node waits for at once */
#define OPD_OFFERS_RETRY_MS 10000          /* after a signing that failed */
#define OPD_OFFERS_ENROLL_GRACE_MS 5000    /* a CSR agent sends its CSR within this */
#define OPD_OFFERS_APPLY_TIMEOUT_MS 600000 /* an offer not applied within this has failed */
#define OPD_OFFERS_MAX_ROTATIONS 64        /* newest rotations considered */

struct opd_cert_offers_rotation {
	char id[OPD_STORE_ROTATION_ID_MAX + 1];
	struct opd_kvs selector;
	uint64_t started_ms;
};

struct opd_cert_offers {
	struct opd_csr *csr;           /* borrowed: signing through the leader */
	struct opd_certs *certs;       /* borrowed: the replicated certificates */
	struct opd_registry *registry; /* borrowed */
	struct opd_endpoint *endpoint; /* borrowed: delivery to WebSocket agents */
	const struct opd_clock *clock;
	double renew_share; /* 0 < share < 1 */
	int enroll;         /* offer a certificate to agents that have none */
	int dirty;          /* certificates, CAs or rotations changed since the last scan */
	unsigned in_flight;
	struct opd_cert_offers_rotation rotations[OPD_OFFERS_MAX_ROTATIONS];
	size_t n_rotations;
	uint64_t offered, sign_failures, revoked_drops; /* counters for /metrics */
};

void opd_cert_offers_init(struct opd_cert_offers *o);
void opd_cert_offers_fini(struct opd_cert_offers *o);

/* The replicated certificates changed (certs.h changed callback). */
void opd_cert_offers_changed(struct opd_cert_offers *o);

/* Once a second: refresh what changed, then make the offers that are due. */
void opd_cert_offers_tick(struct opd_cert_offers *o);

/*
 * auth.cert_check of the endpoint (data: struct opd_cert_offers): a
 * certificate this cluster issued and then revoked is refused.
 */
const char *opd_cert_offers_check(void *data, const uint8_t uid[16], const char *fp_hex);

#endif
