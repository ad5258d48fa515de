#include "agent.h"

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
