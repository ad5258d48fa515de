/*
 * The daemon: owns the libuv loop and wires the parts together. The
 * configuration service (store) and the agent side (registry, endpoint) meet
 * only here, through the registry's ops port; the admin API is served on its
 * own listener. Start-up order: data dir → token → configs → agents → listeners;
 * shutdown in reverse.
 */
#ifndef OPD_SERVER_H
#define OPD_SERVER_H

#include "admin.h"
#include "agentdb.h"
#include "certs.h"
#include "cert_offers.h"
#include "cluster.h"
#include "configs.h"
#include "csr.h"
#include "endpoint.h"
#include "listener.h"
#include "registry.h"

#include <uv.h>

struct opd_server_options {
	const char *data_dir;       /* default ./opampd-data */
	const char *opamp_host;     /* default 127.0.0.1 */
	int opamp_port;             /* default 4320 */
	const char *admin_host;     /* default 127.0.0.1 */
	int admin_port;             /* default 4321 */
	uint64_t heartbeat_s;       /* default 30 */
	double http_timeout_factor; /* default 3 */
	size_t max_conns;           /* default 100000 */
	uint64_t handshake_rate;    /* WebSocket handshakes a second, 0 = unpaced; default 2000 */
	unsigned snapshot_entries;  /* raft entries between snapshots; 0 (default) = by size */
	uint32_t config_history;    /* versions kept per configuration, 0 = all; default 100 */
	const char *ready_file;     /* written once listening; NULL = none */
	uint64_t node_id;           /* default 1 */
	const char *raft_listen;    /* raft host:port, default 127.0.0.1:4322 */
	const char *signing_key;    /* default <data-dir>/signing.key (created for a single node) */
	struct opd_cluster_member
	    voters[OPD_NODE_MAX_VOTERS]; /* initial voters; none: this node alone */
	size_t n_voters;
	/* Transport security; NULL = off. Certificates are re-read on SIGHUP and reload. */
	const char *opamp_tls_cert, *opamp_tls_key; /* TLS on the OpAMP listener */
	const char *admin_tls_cert, *admin_tls_key; /* TLS on the admin listener */
	const char *opamp_client_ca;                /* CAs of agent client certificates */
	enum opd_tls_verify opamp_mtls;             /* default off */
	const char *agent_token_file; /* bearer tokens agents must send, one per line */
	const char *peer_ca;          /* CAs for https peer admin URLs (default: system bundle) */
	/* The fleet CA: both files, or neither (DATA_DIR/ca.pem and ca.key, created for a
	 * single node). */
	const char *ca_cert, *ca_key;
	uint64_t cert_lifetime_s; /* agent certificates; 0: 90 days */
	double cert_renew_share;  /* renewed after this share of their lifetime (default 0.6667) */
	int offer_agent_certs;    /* offer certificates to agents without one (default 0) */
};

struct opd_server {
	uv_loop_t loop;
	struct opd_server_options opt;
	struct opd_configs configs;
	struct opd_certs certs;
	struct opd_registry registry;
	struct opd_agentdb agentdb;
	struct opd_endpoint endpoint;
	struct opd_admin admin;
	struct opd_signer signer;
	struct opd_node *node;
	struct opd_cluster cluster;
	struct opd_csr csr; /* the agents' CSR flow */
	struct opd_cert_offers offers; /* certificates the server offers */
	char fleet_trust[4200];        /* mTLS without --opamp-client-ca: the fleet CAs, a file */
	struct opd_listener opamp, admin_listener;
	char endpoint_url[128];
	uv_timer_t tick; /* registry sweep and agent persistence */
	uv_check_t push; /* armed by a change of configurations: one push per loop turn */
	uv_signal_t sigterm, sigint, sighup;
	struct opd_tls_tokens agent_tokens; /* from agent_token_file (none: not required) */
	int started;
	int closing; /* handles still closing at shutdown */
	char errmsg[OPD_ERRMSG_SIZE];
};

void opd_server_options_default(struct opd_server_options *o);

/* Set everything up and start listening. 0, or a negative code with errmsg set. */
int opd_server_start(struct opd_server *s, const struct opd_server_options *o)
    __attribute__((warn_unused_result));

/* Run until SIGTERM/SIGINT, then shut down cleanly. */
int opd_server_run(struct opd_server *s);

#endif
