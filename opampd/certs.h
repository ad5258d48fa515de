/*
 * The certificate service: the fleet CA's keys on this node and the one
 * writer of certificates, revocations, CAs and rotations in the replicated
 * state, built like the configuration service (configs.h) and sharing its
 * store, state machine, node and hybrid logical clock.
 *
 * Only the leader signs. On the leader a request is checked (a CSR against
 * the subject policy, ca.h), given the next serial (the replicated counter,
 * counting issuances still in flight), stamped, signed with the active CA,
 * and proposed as IssueCertificate carrying the certificate itself, so that
 * apply() on every node records the same bytes without signing anything. The
 * callback runs once the entry is applied, with the certificate. Without a
 * node (unit tests) commands are applied directly through the state machine.
 *
 * CA keys live in files only (0600): the main CA (--ca-cert/--ca-key, or
 * DATA_DIR/ca.pem and ca.key, generated at the first start of a single node)
 * and the CAs made by a rotation (DATA_DIR/ca-<fingerprint prefix>.pem/.key),
 * which a cluster's other voters need a copy of before they can sign. The
 * replicated state holds CA certificates only. No private key is ever logged,
 * stored or returned, except the server-generated flow's new agent key, which
 * goes to its callback (for the agent) and nowhere else.
 */
#ifndef OPD_CERTS_H
#define OPD_CERTS_H

#include "ca.h"
#include "clock.h"
#include "configs.h"
#include "kv.h"

#define OPD_CERTS_LIFETIME_S (90ull * 86400) /* default agent certificate lifetime */
#define OPD_CERTS_CRL_VALIDITY_S 86400       /* nextUpdate of served CRLs */
#define OPD_CERTS_BACKDATE_S 60              /* not_before = now - this */
#define OPD_CERTS_MAX_KEYS 16                /* CA keys one node keeps */

struct opd_cert_pending; /* private */

struct opd_certs_options {
	const char *ca_cert; /* the main CA's files; NULL: DATA_DIR/ca.pem and ca.key */
	const char *ca_key;
	const char *dir;     /* the data directory (generated CAs go here) */
	int create;          /* generate the main CA when its files are absent (single node) */
	uint64_t lifetime_s; /* agent certificates; 0: OPD_CERTS_LIFETIME_S */
};

struct opd_certs {
	struct opd_configs *configs; /* borrowed: store, state machine, node, HLC */
	const struct opd_clock *clock;
	struct opd_ca keys[OPD_CERTS_MAX_KEYS]; /* CAs whose private key this node holds */
	size_t n_keys;                          /* keys[0] is the main CA */
	char dir[4096];
	uint64_t lifetime_s;
	struct opd_cert_pending *pending; /* proposals in flight (leader) */
	int warned_no_key;                /* logged once per active CA without a key here */
	/* Called after every applied certificate, CA or rotation change, with res NULL after a
	 * snapshot replaced the store (may be NULL). */
	void (*changed)(void *data, const struct opd_apply_result *res);
	void *changed_data;
	char errmsg[OPD_ERRMSG_SIZE];
};

/* What a write produced. */
struct opd_cert_result {
	/*
	 * 0 done; OPD_EINVAL refused before proposing (message says why: a bad
	 * CSR, an unknown reason); OPD_ENOTFOUND / OPD_ECONFLICT refused (unknown
	 * or used serial, CA state); OPD_EIO this node cannot sign (no key of the
	 * active CA); OPD_ENOTLEADER leadership lost: outcome unknown, retry with
	 * the same request id; OPD_ECANCELED shutting down.
	 */
	int status;
	int duplicate;  /* the request id was applied before: this is its result */
	uint64_t index; /* raft index where it was applied (0: nothing was) */
	uint64_t serial;
	char fingerprint[OPD_CA_FP_LEN + 1];      /* the certificate's, or the CA's for CA writes */
	char name[OPD_STORE_ROTATION_ID_MAX + 1]; /* rotation id (StartRotation) */
	uint64_t not_before, not_after;
	const char *cert_pem; /* issuance: the certificate, valid during the callback */
	const char *key_pem;  /* server-generated flow only: the agent's new private key, valid
				 during the callback; hand it to the agent and nowhere else */
	char key_file[4200];  /* CA rotation: where this node wrote the new CA key */
	char message[256];
};

typedef void (*opd_certs_cb)(void *data, const struct opd_cert_result *res);

/*
 * Load (or create) the main CA and the rotation CAs found in o->dir, over
 * configs (borrowed, open). 0, or an OPD_E* code with errmsg set.
 */
int opd_certs_init(struct opd_certs *c, struct opd_configs *configs, const struct opd_clock *clock,
		   const struct opd_certs_options *o) __attribute__((warn_unused_result));
void opd_certs_fini(struct opd_certs *c);

/*
 * The writes. Each returns 0 when cb will run (possibly before the call
 * returns) or OPD_ENOTLEADER when this node cannot write now (cb never
 * runs). request_id (OPD_REQUEST_ID_LEN bytes, may be NULL) makes a retry
 * idempotent: a retry gets the first result (for an issuance, the same
 * certificate; never a private key again).
 */

/* Issue a certificate for the agent uid from its CSR (PEM or DER; borrowed). reason: "csr",
 * "renewal" or "rotation"; rotation_id may be NULL. */
int opd_certs_issue_csr(struct opd_certs *c, const uint8_t uid[16], const uint8_t *csr,
			size_t csr_len, const char *reason, const char *rotation_id,
			const char *actor, const uint8_t *request_id, opd_certs_cb cb, void *data);
/* The server-generated flow: a new key and certificate for uid; res->key_pem has the key. */
int opd_certs_issue_server(struct opd_certs *c, const uint8_t uid[16], const char *reason,
			   const char *rotation_id, const char *actor, const uint8_t *request_id,
			   opd_certs_cb cb, void *data);
/* Revoke a certificate; reason is an RFC 5280 name (NULL: "unspecified"). */
int opd_certs_revoke(struct opd_certs *c, uint64_t serial, const char *reason, const char *actor,
		     const uint8_t *request_id, opd_certs_cb cb, void *data);
/*
 * Begin a CA rotation: a new CA (generated, or loaded from cert_file and
 * key_file on this node when both are given) is written next to the data
 * (res->key_file), added and made active; the previous CA stays trusted until
 * retired.
 */
int opd_certs_rotate_ca(struct opd_certs *c, const char *cert_file, const char *key_file,
			const char *actor, const uint8_t *request_id, opd_certs_cb cb, void *data);
/* Make a trusted CA active (this node must hold its key), or retire a trusted one. */
int opd_certs_activate_ca(struct opd_certs *c, const char *fingerprint, const char *actor,
			  const uint8_t *request_id, opd_certs_cb cb, void *data);
int opd_certs_retire_ca(struct opd_certs *c, const char *fingerprint, const char *actor,
			const uint8_t *request_id, opd_certs_cb cb, void *data);
/* Record a rotation of the agents matching selector (borrowed; empty: all). res->name: its id. */
int opd_certs_start_rotation(struct opd_certs *c, const struct opd_kvs *selector, const char *actor,
			     const uint8_t *request_id, opd_certs_cb cb, void *data);

/*
 * On a writable leader: register the main CA as the active one when the
 * replicated state has none yet, and warn (once) when this node does not
 * hold the active CA's key. Called periodically by the daemon.
 */
void opd_certs_tick(struct opd_certs *c);

/* The CA key this node holds for a fingerprint, or NULL (rescans the data directory). */
struct opd_ca *opd_certs_key(struct opd_certs *c, const char *fingerprint);

/*
 * A CRL of the CA fingerprint (NULL: the active CA) listing its revoked,
 * unexpired certificates, signed now, appended to out as PEM or DER. With
 * fingerprint "all" (PEM only): one CRL per non-retired CA whose key is here.
 * 0, OPD_ENOTFOUND (no such CA), OPD_EIO (its key is not on this node;
 * errmsg), OPD_ESTORE.
 */
int opd_certs_crl(struct opd_certs *c, const char *fingerprint, int pem, struct opd_buf *out);

/* The trust bundle: every non-retired CA certificate (PEM), active first. 0, OPD_ENOTFOUND
 * (none registered yet), OPD_ESTORE. */
int opd_certs_bundle(struct opd_certs *c, struct opd_buf *out);

#endif
