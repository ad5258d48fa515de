#include "agent.h"

#include "mem.h"

#include <openssl/crypto.h>
#include <stdlib.h>

const char *opd_transport_name(enum opd_transport t)
{
	switch (t) {
	case OPD_TRANSPORT_WS:
		return "websocket";
	case OPD_TRANSPORT_HTTP:
		return "http";
	case OPD_TRANSPORT_NONE:
		break;
	}
	return "none";
}

const char *opd_health_state_name(enum opd_health_state s)
{
	switch (s) {
	case OPD_HEALTH_HEALTHY:
		return "healthy";
	case OPD_HEALTH_DEGRADED:
		return "degraded";
	case OPD_HEALTH_SUSPECT:
		return "suspect";
	case OPD_HEALTH_DOWN:
		break;
	}
	return "down";
}

const char *opd_rc_status_name(enum opd_rc_status s)
{
	switch (s) {
	case OPD_RC_APPLIED:
		return "APPLIED";
	case OPD_RC_APPLYING:
		return "APPLYING";
	case OPD_RC_FAILED:
		return "FAILED";
	case OPD_RC_UNSET:
		break;
	}
	return "UNSET";
}

const char *opd_offer_state_name(enum opd_offer_state s)
{
	switch (s) {
	case OPD_OFFER_OFFERED:
		return "offered";
	case OPD_OFFER_APPLYING:
		return "applying";
	case OPD_OFFER_APPLIED:
		return "applied";
	case OPD_OFFER_FAILED:
		return "failed";
	case OPD_OFFER_NONE:
		break;
	}
	return "none";
}

struct opd_agent_tls *opd_agent_tls(struct opd_agent *a)
{
	if (a->tls == NULL)
		a->tls = opd_xcalloc(1, sizeof *a->tls);
	return a->tls;
}

void opd_agent_tls_drop_pending(struct opd_agent_tls *t)
{
	if (t->pending != NULL) {
		OPENSSL_cleanse(t->pending, t->pending_len);
		free(t->pending);
	}
	t->pending = NULL;
	t->pending_len = 0;
	t->pending_due = 0;
}

void opd_agent_tls_free(struct opd_agent_tls *t)
{
	if (t == NULL)
		return;
	opd_agent_tls_drop_pending(t);
	free(t->message);
	free(t);
}
