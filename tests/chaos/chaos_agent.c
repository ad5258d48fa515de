/*
 * A few simulated OpAMP agents for the chaos harness (tests/chaos/chaos.py): WebSocket agents
 * on one node that announce the config-signature capability, keep reconnecting while the node
 * is killed, stopped or restarted, and print one line for every configuration pushed to them:
 *
 *   RECV <agent> <name> <version> <config_hash> sig=ok|bad|missing hash=ok|bad t=<ms>
 *
 * "sig" is the Ed25519 signature checked over the signed bytes rebuilt exactly as README.md
 * ("Signed configurations") describes them, with the public key given on the command line;
 * "hash" is config_hash recomputed from the files received (README.md, "Configurations").
 * Also CONN <agent> up|down lines. The harness runs it inside the node's network namespace,
 * so it talks to the node on 127.0.0.1 and stays connected across partitions.
 *
 * usage: chaos_agent PORT N_AGENTS PUBKEY_BASE64 MAX_SECONDS
 * Agent i says service.name=svc<i mod 3>; it exits on SIGTERM, or after MAX_SECONDS.
 */
#include "agent_client.h"
#include "daemon.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AGENTS 16
#define RECV_MS 40
#define DRAIN_MAX 64 /* messages read from one agent before the next gets its turn */
#define RECONNECT_MS 500
#define HEARTBEAT_MS 1000
#define SIGNED_MAX 8192
#define MAX_PAIRS 64

static volatile sig_atomic_t stop;

struct agent {
	struct opd_ta ta;
	int idx;
	int up;
	uint64_t next_try_ms;
	uint64_t next_hb_ms;
	char name[16];
	char applied[65]; /* hash of the last config applied ("" none) */
};

/* Signed bytes: every field as an 8-byte big-endian length and then its bytes. */
struct sbuf {
	uint8_t b[SIGNED_MAX];
	size_t n;
	int overflow;
};

static void put_field(struct sbuf *s, const void *p, size_t len)
{
	if (s->overflow || len > sizeof(s->b) - 8 - s->n) {
		s->overflow = 1;
		return;
	}
	for (int i = 7; i >= 0; i--)
		s->b[s->n++] = (uint8_t)((uint64_t)len >> (8 * i));
	memcpy(s->b + s->n, p, len);
	s->n += len;
}

static void put_decimal(struct sbuf *s, long long v)
{
	char text[32];

	snprintf(text, sizeof text, "%lld", v);
	put_field(s, text, strlen(text));
}

static void put_string(struct sbuf *s, const char *p)
{
	put_field(s, p, strlen(p));
}

static int unb64(const char *in, uint8_t *out, size_t cap)
{
	size_t len = strlen(in);
	int n;

	/* EVP_DecodeBlock writes 3 bytes per 4 characters. */
	if (len % 4 != 0 || len / 4 * 3 > cap)
		return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	/* It counts the padding as zero bytes. */
	while (len > 0 && in[len - 1] == '=') {
		n--;
		len--;
	}
	return n;
}

static int hex_to_raw(const char *hex, uint8_t *out, size_t n)
{
	if (hex == NULL || strlen(hex) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (sscanf(hex + 2 * i, "%2hhx", &out[i]) != 1)
			return -1;
	return 0;
}

static int cmp_pair(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;
	int c = strcmp(x[0], y[0]);

	return c != 0 ? c : strcmp(x[1], y[1]);
}

/* Selector pairs sorted by key then value: the count, then each key and value. */
static int put_selector(struct sbuf *s, json_t *sel)
{
	const char *pairs[MAX_PAIRS][2];
	const char *k;
	json_t *v;
	size_t n = 0;

	if (!json_is_object(sel) || json_object_size(sel) > MAX_PAIRS)
		return -1;
	json_object_foreach(sel, k, v)
	{
		if (!json_is_string(v))
			return -1;
		pairs[n][0] = k;
		pairs[n][1] = json_string_value(v);
		n++;
	}
	qsort(pairs, n, sizeof pairs[0], cmp_pair);
	put_decimal(s, (long long)n);
	for (size_t i = 0; i < n; i++) {
		put_string(s, pairs[i][0]);
		put_string(s, pairs[i][1]);
	}
	return 0;
}

static int ed25519_ok(const uint8_t pub[32], const uint8_t sig[64], const uint8_t *m, size_t n)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = pk != NULL && md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
		 EVP_DigestVerify(md, sig, 64, m, n) == 1;

	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return ok;
}

/* The config-signature message against the pushed hash; 1 verified, 0 not. */
static int signature_ok(const uint8_t pub[32], json_t *j, const uint8_t hash[32])
{
	static struct sbuf s;
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *sig_b64 = json_string_value(json_object_get(j, "signature"));
	uint8_t raw_hash[32], sig[96];

	s.n = 0;
	s.overflow = 0;
	if (name == NULL || sig_b64 == NULL ||
	    hex_to_raw(json_string_value(json_object_get(j, "config_hash")), raw_hash, 32) != 0 ||
	    memcmp(raw_hash, hash, 32) != 0 || unb64(sig_b64, sig, sizeof sig) != 64)
		return 0;
	put_string(&s, "opampd.config-version.v1");
	put_string(&s, name);
	put_decimal(&s, json_integer_value(json_object_get(j, "version")));
	put_field(&s, raw_hash, 32);
	if (put_selector(&s, json_object_get(j, "selector")) != 0)
		return 0;
	put_decimal(&s, json_integer_value(json_object_get(j, "priority")));
	put_decimal(&s, json_integer_value(json_object_get(j, "term")));
	put_decimal(&s, json_integer_value(json_object_get(j, "hlc_wall_ms")));
	put_decimal(&s, json_integer_value(json_object_get(j, "hlc_logical")));
	return !s.overflow && ed25519_ok(pub, sig, s.b, s.n);
}

static int cmp_entry(const void *a, const void *b)
{
	const Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry *const *x = a, *const *y = b;

	return strcmp((*x)->key, (*y)->key);
}

static void sha_field(EVP_MD_CTX *md, const void *p, size_t len)
{
	uint8_t l[8];

	for (int i = 0; i < 8; i++)
		l[i] = (uint8_t)((uint64_t)len >> (8 * (7 - i)));
	EVP_DigestUpdate(md, l, 8);
	EVP_DigestUpdate(md, p, len);
}

/* config_hash over the files in name order: name, content type, body. 1 if it matches. */
static int hash_ok(const Opamp__Proto__V1__AgentRemoteConfig *rc)
{
	const Opamp__Proto__V1__AgentConfigMap *m = rc->config;
	Opamp__Proto__V1__AgentConfigMap__ConfigMapEntry **e;
	uint8_t out[32];
	unsigned outl = 0;
	EVP_MD_CTX *md;
	size_t n;

	if (m == NULL || m->n_config_map == 0 || rc->config_hash.len != 32)
		return 0;
	n = m->n_config_map;
	e = malloc(n * sizeof *e);
	md = EVP_MD_CTX_new();
	if (e == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		free(e);
		EVP_MD_CTX_free(md);
		return 0;
	}
	memcpy(e, m->config_map, n * sizeof *e);
	qsort(e, n, sizeof *e, cmp_entry);
	for (size_t i = 0; i < n; i++) {
		const char *ct = e[i]->value != NULL ? e[i]->value->content_type : "";

		sha_field(md, e[i]->key, strlen(e[i]->key));
		sha_field(md, ct != NULL ? ct : "", ct != NULL ? strlen(ct) : 0);
		sha_field(md, e[i]->value != NULL ? e[i]->value->body.data : NULL,
			  e[i]->value != NULL ? e[i]->value->body.len : 0);
	}
	EVP_DigestFinal_ex(md, out, &outl);
	EVP_MD_CTX_free(md);
	free(e);
	return outl == 32 && memcmp(out, rc->config_hash.data, 32) == 0;
}

static void agent_down(struct agent *a);

/* Tell the node the config was applied, so it is not pushed again. */
static void report_applied(struct agent *a, const char *hash_hex)
{
	struct opd_ta_msg b;

	snprintf(a->applied, sizeof a->applied, "%s", hash_hex);
	opd_ta_msg_init(&b, &a->ta);
	opd_ta_msg_remote_config_status(&b, hash_hex, 1 /* APPLIED */, NULL);
	if (opd_ta_send(&a->ta, &b.msg) != 0)
		agent_down(a);
}

/* The first report, and the answer to ReportFullState: everything, with the applied hash. */
static int report_full(struct agent *a)
{
	Opamp__Proto__V1__CustomCapabilities cc = OPAMP__PROTO__V1__CUSTOM_CAPABILITIES__INIT;
	char *caps[] = {"io.opampd.config-signature"};
	struct opd_ta_msg b;

	opd_ta_msg_full(&b, &a->ta, a->name);
	if (a->applied[0] != '\0')
		opd_ta_msg_remote_config_status(&b, a->applied, 1 /* APPLIED */, NULL);
	cc.n_capabilities = 1;
	cc.capabilities = caps;
	b.msg.custom_capabilities = &cc;
	return opd_ta_send(&a->ta, &b.msg);
}

static void on_message(struct agent *a, const uint8_t pub[32], Opamp__Proto__V1__ServerToAgent *r)
{
	const Opamp__Proto__V1__CustomMessage *cm = r->custom_message;
	const char *sig = "missing";
	char hash_hex[65] = "-", name[160] = "-";
	long long version = -1;
	json_t *j = NULL;

	if (r->remote_config == NULL)
		return;
	if (r->remote_config->config_hash.len == 32)
		opd_ta_hex(r->remote_config->config_hash.data, 32, hash_hex);
	if (cm != NULL && cm->type != NULL && strcmp(cm->type, "config-signature") == 0)
		j = json_loadb((const char *)cm->data.data, cm->data.len, 0, NULL);
	if (j != NULL) {
		const char *nm = json_string_value(json_object_get(j, "name"));

		if (nm != NULL && strlen(nm) < sizeof name &&
		    strspn(nm, "abcdefghijklmnopqrstuvwxyz"
			       "0123456789-_.") == strlen(nm))
			snprintf(name, sizeof name, "%s", nm);
		version = json_integer_value(json_object_get(j, "version"));
		sig = r->remote_config->config_hash.len == 32 &&
			      signature_ok(pub, j, r->remote_config->config_hash.data)
			  ? "ok"
			  : "bad";
	}
	printf("RECV %d %s %lld %s sig=%s hash=%s t=%llu\n", a->idx, name, version, hash_hex, sig,
	       hash_ok(r->remote_config) ? "ok" : "bad", (unsigned long long)opd_test_now_ms());
	fflush(stdout);
	json_decref(j);
	report_applied(a, hash_hex);
}

static void agent_connect(struct agent *a, uint64_t now)
{
	int port = a->ta.port;

	a->next_try_ms = now + RECONNECT_MS;
	opd_ta_fini(&a->ta);
	/* Keep the instance_uid across reconnects: the same agent comes back. */
	a->ta.port = port;
	a->ta.close_code = -1;
	a->ta.close_sent = false;
	if (opd_ta_ws_connect(&a->ta) != 0)
		return;
	if (report_full(a) != 0) {
		opd_ta_fini(&a->ta);
		return;
	}
	a->up = 1;
	a->next_hb_ms = now + HEARTBEAT_MS;
	printf("CONN %d up t=%llu\n", a->idx, (unsigned long long)now);
	fflush(stdout);
}

static void agent_down(struct agent *a)
{
	uint64_t now = opd_test_now_ms();

	a->up = 0;
	a->next_try_ms = now + RECONNECT_MS;
	opd_ta_fini(&a->ta);
	printf("CONN %d down t=%llu\n", a->idx, (unsigned long long)now);
	fflush(stdout);
}

static int agent_read(struct agent *a, const uint8_t pub[32], int timeout_ms);

/* Reconnect when down, heartbeat when due, then read what the node sent (a burst at once). */
static void agent_step(struct agent *a, const uint8_t pub[32])
{
	uint64_t now = opd_test_now_ms();
	struct opd_ta_msg b;

	if (!a->up) {
		if (now >= a->next_try_ms)
			agent_connect(a, now);
		return;
	}
	if (now >= a->next_hb_ms) {
		a->next_hb_ms = now + HEARTBEAT_MS;
		opd_ta_msg_init(&b, &a->ta);
		if (opd_ta_send(&a->ta, &b.msg) != 0) {
			agent_down(a);
			return;
		}
	}
	for (int k = 0; k < DRAIN_MAX && a->up; k++)
		if (agent_read(a, pub, k == 0 ? RECV_MS : 0) != 1)
			return;
}

/* One server message: 1 handled, 0 nothing within timeout_ms, -1 the connection is gone. */
static int agent_read(struct agent *a, const uint8_t pub[32], int timeout_ms)
{
	Opamp__Proto__V1__ServerToAgent *r;
	uint8_t *p;
	size_t n;
	int rc;

	rc = opd_ta_ws_read_message(&a->ta, timeout_ms, &p, &n);
	if (rc < 0)
		return 0; /* nothing yet; a partial frame stays buffered */
	if (rc == 0) {
		agent_down(a); /* close frame or EOF */
		return -1;
	}
	r = n >= 1 && p[0] == 0x00 ? opamp__proto__v1__server_to_agent__unpack(NULL, n - 1, p + 1)
				   : NULL;
	free(p);
	if (r == NULL) {
		printf("BADMSG %d\n", a->idx);
		agent_down(a);
		return -1;
	}
	on_message(a, pub, r);
	/* As an agent must: the node lost track of us (a restart, a gap) and asks for it all. */
	if (a->up &&
	    (r->flags &
	     OPAMP__PROTO__V1__SERVER_TO_AGENT_FLAGS__ServerToAgentFlags_ReportFullState) &&
	    report_full(a) != 0)
		agent_down(a);
	opamp__proto__v1__server_to_agent__free_unpacked(r, NULL);
	return a->up ? 1 : -1;
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	static struct agent agents[MAX_AGENTS];
	uint8_t pub[48];
	uint64_t deadline;
	int port, n;

	if (argc != 5 || (port = atoi(argv[1])) <= 0 || (n = atoi(argv[2])) <= 0 ||
	    n > MAX_AGENTS || unb64(argv[3], pub, sizeof pub) != 32 || atoi(argv[4]) <= 0) {
		fprintf(stderr,
			"usage: chaos_agent PORT N_AGENTS(1-%d) PUBKEY_BASE64 MAX_SECONDS\n",
			MAX_AGENTS);
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	deadline = opd_test_now_ms() + (uint64_t)atoi(argv[4]) * 1000;
	for (int i = 0; i < n; i++) {
		opd_ta_init(&agents[i].ta, port, OPD_TA_CAPS);
		agents[i].idx = i;
		snprintf(agents[i].name, sizeof agents[i].name, "svc%d", i % 3);
	}
	while (!stop && opd_test_now_ms() < deadline)
		for (int i = 0; i < n && !stop; i++)
			agent_step(&agents[i], pub);
	for (int i = 0; i < n; i++)
		opd_ta_fini(&agents[i].ta);
	printf("EXIT\n");
	return 0;
}
