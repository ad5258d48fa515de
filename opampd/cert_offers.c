#define LOG_COMPONENT "offers"

#include "cert_offers.h"

#include "hex.h"
#include "log.h"
#include "mem.h"
#include "selector.h"
#include "session.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_ACCEPTS_OPAMP_SETTINGS 0x100u

/* One signing in flight: the key this node made, kept until the offer is built. */
struct offer_job {
	struct opd_cert_offers *o;
	uint8_t uid[OPD_UID_LEN];
	char *key_pem; /* cleansed when freed */
	char rotation_id[OPD_STORE_ROTATION_ID_MAX + 1];
};

void opd_cert_offers_init(struct opd_cert_offers *o)
{
	*o = (struct opd_cert_offers){.renew_share = OPD_OFFERS_RENEW_SHARE, .dirty = 1};
}

static void rotations_clear(struct opd_cert_offers *o)
{
	for (size_t i = 0; i < o->n_rotations; i++)
		opd_kvs_fini(&o->rotations[i].selector);
	o->n_rotations = 0;
}

void opd_cert_offers_fini(struct opd_cert_offers *o)
{
	rotations_clear(o);
}

void opd_cert_offers_changed(struct opd_cert_offers *o)
{
	o->dirty = 1;
}

/* ---- what the replicated state says ---- */

static int keep_rotation(void *data, const struct opd_rotation_info *r)
{
	struct opd_cert_offers *o = data;
	struct opd_cert_offers_rotation *k;

	if (o->n_rotations == OPD_OFFERS_MAX_ROTATIONS)
		return 1; /* newest first: older ones are history */
	k = &o->rotations[o->n_rotations++];
	snprintf(k->id, sizeof k->id, "%s", r->id);
	opd_kvs_copy(&k->selector, &r->selector);
	k->started_ms = r->started_ms;
	return 0;
}

static int note_issued(void *data, const struct opd_cert_info *c)
{
	struct opd_cert_offers *o = data;
	uint8_t uid[OPD_UID_LEN];
	struct opd_agent *a;
	struct opd_agent_tls *t;

	if (opd_hex_decode(c->instance_uid, uid, sizeof uid) != 0 ||
	    (a = opd_registry_find(o->registry, uid)) == NULL)
		return 0;
	t = opd_agent_tls(a);
	if (c->serial < t->issued_serial)
		return 0;
	t->issued_serial = c->serial;
	if (opd_hex_decode(c->fingerprint, t->issued_fp, sizeof t->issued_fp) != 0)
		memset(t->issued_fp, 0, sizeof t->issued_fp);
	t->issued_ms = c->issued_ms;
	t->issued_not_after_ms = c->not_after * 1000;
	t->issued_revoked = c->revoked;
	return 0;
}

/* Agents connected here that present a revoked certificate lose their connection. */
static int drop_revoked(void *data, const struct opd_revocation *r)
{
	struct opd_cert_offers *o = data;
	struct opd_cert_info c;
	uint8_t fp[OPD_CERT_FP_LEN];
	struct opd_list *pos;

	if (opd_store_get_certificate(&o->certs->configs->store, r->serial, &c) != 0)
		return 0;
	if (opd_hex_decode(c.fingerprint, fp, sizeof fp) == 0) {
		opd_list_foreach(pos, &o->registry->agents)
		{
			struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
			if (a->connected && a->tls != NULL && a->tls->has_presented &&
			    memcmp(a->tls->presented, fp, sizeof fp) == 0) {
				log_info("closing agent connection uid=%s serial=%llu "
					 "reason=\"certificate revoked\"",
					 c.instance_uid, (unsigned long long)c.serial);
				opd_endpoint_drop(o->endpoint, a, "client certificate revoked");
				o->revoked_drops++;
			}
		}
	}
	opd_cert_info_fini(&c);
	return 0;
}

static void refresh(struct opd_cert_offers *o)
{
	struct opd_store *st = &o->certs->configs->store;
	uint64_t now_s = opd_clock_wall(o->clock) / 1000;
	struct opd_list *pos;

	opd_list_foreach(pos, &o->registry->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
		if (a->tls != NULL)
			a->tls->issued_serial = 0;
	}
	if (opd_store_foreach_certificate(st, NULL, note_issued, o) != 0 ||
	    opd_store_foreach_revocation(st, now_s, drop_revoked, o) != 0)
		log_warn("cannot read the issued certificates: %s", st->errmsg);
	rotations_clear(o);
	if (opd_store_foreach_rotation(st, keep_rotation, o) < 0)
		log_warn("cannot read the rotations: %s", st->errmsg);
	o->dirty = 0;
}

/* ---- deciding ---- */

/* Why agent a needs a new certificate now (NULL: it does not); *rotation for a rotation. */
static const char *needs(const struct opd_cert_offers *o, const struct opd_agent *a,
			 uint64_t now_ms, uint64_t wall_ms, const char **rotation)
{
	const struct opd_agent_tls *t = a->tls;
	uint64_t issued = t != NULL ? t->issued_serial : 0;

	*rotation = NULL;
	for (size_t i = 0; i < o->n_rotations; i++) {
		const struct opd_cert_offers_rotation *r = &o->rotations[i];
		if ((issued == 0 || t->issued_ms < r->started_ms) &&
		    opd_selector_match(&r->selector, a)) {
			*rotation = r->id;
			return "rotation";
		}
	}
	if (issued != 0 && !t->issued_revoked && t->issued_not_after_ms > t->issued_ms &&
	    wall_ms >= t->issued_ms + (uint64_t)((double)(t->issued_not_after_ms - t->issued_ms) *
						 o->renew_share))
		return "renewal";
	(void)now_ms;
	if (issued == 0 && o->enroll && wall_ms >= a->connected_at_ms + OPD_OFFERS_ENROLL_GRACE_MS)
		return "server";
	return NULL;
}

/* ---- making the key and the CSR ---- */

static char *bio_text(BIO *b)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *out = opd_xmalloc((size_t)n + 1);

	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	return out;
}

/* A P-256 key and a CSR naming the agent (CN = its uid in hex). 0, or -1. */
static int make_key_and_csr(const uint8_t uid[OPD_UID_LEN], char **key_pem, char **csr_pem)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *kb = BIO_new(BIO_s_secmem()), *cb = BIO_new(BIO_s_mem());
	char hex[2 * OPD_UID_LEN + 1];
	int ok;

	opd_hex_encode(uid, OPD_UID_LEN, hex);
	ok = key != NULL && req != NULL && name != NULL && kb != NULL && cb != NULL &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hex, -1,
					-1, 0) == 1 &&
	     X509_REQ_set_version(req, 0) == 1 && X509_REQ_set_subject_name(req, name) == 1 &&
	     X509_REQ_set_pubkey(req, key) == 1 && X509_REQ_sign(req, key, EVP_sha256()) > 0 &&
	     PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) == 1 &&
	     PEM_write_bio_X509_REQ(cb, req) == 1;
	if (ok) {
		*key_pem = bio_text(kb);
		*csr_pem = bio_text(cb);
	}
	BIO_free(kb);
	BIO_free(cb);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return ok ? 0 : -1;
}

/* ---- signing and offering ---- */

static void job_free(struct offer_job *j)
{
	if (j->key_pem != NULL) {
		OPENSSL_cleanse(j->key_pem, strlen(j->key_pem));
		free(j->key_pem);
	}
	free(j);
}

static void signed_cb(void *data, int status, const char *cert_pem, const char *ca_pem,
		      const char *message)
{
	struct offer_job *j = data;
	struct opd_cert_offers *o = j->o;
	struct opd_agent *a = opd_registry_find(o->registry, j->uid);
	char hex[2 * OPD_UID_LEN + 1];

	o->in_flight--;
	opd_hex_encode(j->uid, OPD_UID_LEN, hex);
	if (a == NULL) {
		job_free(j);
		return;
	}
	a->tls->signing = 0;
	if (status == 0) {
		struct opd_cert_offer offer = {.cert_pem = cert_pem,
					       .key_pem = j->key_pem,
					       .ca_pem = ca_pem,
					       .rotation_id = j->rotation_id};
		if (opd_session_offer_cert(o->registry, a, &offer, opd_clock_wall(o->clock)) == 0) {
			o->offered++;
			(void)opd_endpoint_offer(o->endpoint, a);
			log_info("offered agent certificate uid=%s%s%s", hex,
				 j->rotation_id[0] ? " rotation=" : "", j->rotation_id);
		}
	} else {
		o->sign_failures++;
		a->tls->retry_at_ms = opd_clock_now(o->clock) + OPD_OFFERS_RETRY_MS;
		if (status == OPD_EINVAL) {
			/* Refused: the offer fails, and is reported with its reason. */
			a->tls->offer = OPD_OFFER_FAILED;
			snprintf(a->tls->rotation_id, sizeof a->tls->rotation_id, "%s",
				 j->rotation_id);
			free(a->tls->message);
			a->tls->message = opd_xstrdup(message != NULL ? message : "refused");
		}
		log_info("agent certificate not signed uid=%s reason=\"%s\"", hex,
			 message != NULL ? message : "");
	}
	job_free(j);
}

static void start_signing(struct opd_cert_offers *o, struct opd_agent *a, const char *reason,
			  const char *rotation)
{
	struct offer_job *j = opd_xcalloc(1, sizeof *j);
	char *csr = NULL;

	j->o = o;
	memcpy(j->uid, a->uid, OPD_UID_LEN);
	snprintf(j->rotation_id, sizeof j->rotation_id, "%s", rotation != NULL ? rotation : "");
	if (make_key_and_csr(a->uid, &j->key_pem, &csr) != 0) {
		log_error("cannot make a key pair for an agent");
		job_free(j);
		return;
	}
	opd_agent_tls(a)->signing = 1;
	o->in_flight++;
	(void)opd_csr_sign(o->csr, a->uid, (const uint8_t *)csr, strlen(csr), reason, rotation,
			   "server", signed_cb, j);
	free(csr);
}

/* An offer the agent neither applied nor refused in time has failed. */
static void expire_offer(struct opd_agent_tls *t, uint64_t wall_ms)
{
	if ((t->offer != OPD_OFFER_OFFERED && t->offer != OPD_OFFER_APPLYING) ||
	    wall_ms < t->offered_ms + OPD_OFFERS_APPLY_TIMEOUT_MS)
		return;
	t->offer = OPD_OFFER_FAILED;
	free(t->message);
	t->message = opd_xstrdup("the agent did not apply the offered certificate in time");
	opd_agent_tls_drop_pending(t);
}

void opd_cert_offers_tick(struct opd_cert_offers *o)
{
	uint64_t now = opd_clock_now(o->clock), wall = opd_clock_wall(o->clock);
	struct opd_list *pos;

	/* Signing needs a CA key here (csr.h), even to forward. */
	if (o->certs == NULL || o->certs->n_keys == 0)
		return;
	if (o->dirty)
		refresh(o);
	opd_list_foreach(pos, &o->registry->agents)
	{
		struct opd_agent *a = opd_container_of(pos, struct opd_agent, link);
		const char *reason, *rotation;

		if (o->in_flight >= OPD_OFFERS_MAX_IN_FLIGHT)
			break;
		if (!a->connected || !(a->capabilities & CAP_ACCEPTS_OPAMP_SETTINGS))
			continue;
		if (a->tls != NULL) {
			expire_offer(a->tls, wall);
			if (a->tls->signing || now < a->tls->retry_at_ms ||
			    a->tls->offer == OPD_OFFER_OFFERED ||
			    a->tls->offer == OPD_OFFER_APPLYING)
				continue;
		}
		reason = needs(o, a, now, wall, &rotation);
		if (reason != NULL)
			start_signing(o, a, reason, rotation);
	}
}

/* ---- the endpoint's check ---- */

struct revoked_match {
	const char *fp;
	int revoked;
};

static int match_revoked(void *data, const struct opd_cert_info *c)
{
	struct revoked_match *m = data;

	if (c->revoked && strcmp(c->fingerprint, m->fp) == 0)
		m->revoked = 1;
	return m->revoked;
}

const char *opd_cert_offers_check(void *data, const uint8_t uid[16], const char *fp_hex)
{
	struct opd_cert_offers *o = data;
	char hex[2 * OPD_UID_LEN + 1];
	struct opd_cert_filter f = {.instance_uid = hex};
	struct revoked_match m = {fp_hex, 0};

	opd_hex_encode(uid, OPD_UID_LEN, hex);
	if (opd_store_foreach_certificate(&o->certs->configs->store, &f, match_revoked, &m) < 0)
		return NULL; /* the TLS chain was verified; a store error does not lock agents out
			      */
	return m.revoked ? "the client certificate is revoked" : NULL;
}
