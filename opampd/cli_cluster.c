/* "opampd cluster status|add|promote|remove|transfer": the raft cluster and its membership. */
#include "cli.h"

#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_cluster[] =
    "usage: opampd cluster status\n"
    "       opampd cluster add ID RAFT_HOST:PORT ADMIN_URL\n"
    "       opampd cluster promote ID [--role voter|standby|spare]\n"
    "       opampd cluster remove ID\n"
    "       opampd cluster transfer [ID]\n"
    "\n"
    "Run \"opampd cluster SUBCOMMAND --help\" for details.\n";

static const char usage_status[] =
    "usage: opampd cluster status\n"
    "\n"
    "This node's view: role, term, leader, indexes, whether it accepts writes (and why\n"
    "not), and every member with its role and when this node last heard from it.\n";

static const char usage_add[] =
    "usage: opampd cluster add ID RAFT_HOST:PORT ADMIN_URL\n"
    "\n"
    "Add node ID as a spare (it receives nothing until promoted). Start it first with the\n"
    "cluster's --voter lines and --signing-key, its own --node-id ID and --raft-listen.\n";

static const char usage_promote[] =
    "usage: opampd cluster promote ID [--role voter|standby|spare]\n"
    "\n"
    "Change member ID's role (default voter): a voter votes and counts for the majority,\n"
    "a standby replicates without voting, a spare does neither.\n";

static const char usage_remove[] = "usage: opampd cluster remove ID\n"
				   "\n"
				   "Remove member ID from the cluster.\n";

static const char usage_transfer[] =
    "usage: opampd cluster transfer [ID]\n"
    "\n"
    "Hand leadership to voter ID, or to the most up-to-date voter when ID is left out.\n";

static void print_status(json_t *st)
{
	static const char *const header[] = {"ID", "ROLE", "RAFT ADDRESS", "ADMIN URL",
					     "LAST CONTACT"};
	json_t *leader = json_object_get(st, "leader"), *m;
	struct opd_cli_table t;
	int64_t leader_id = opd_cli_jint(leader, "id");
	size_t i;

	printf("node %lld: %s, term %lld\n", (long long)opd_cli_jint(st, "node_id"),
	       opd_cli_jstr(st, "role"), (long long)opd_cli_jint(st, "term"));
	if (json_is_object(leader))
		printf("leader:   node %lld (%s%s%s)\n", (long long)leader_id,
		       opd_cli_jstr(leader, "raft_address"),
		       opd_cli_jstr(leader, "admin_url")[0] ? ", " : "",
		       opd_cli_jstr(leader, "admin_url"));
	else
		printf("leader:   none known\n");
	if (opd_cli_jbool(st, "read_only"))
		printf("writes:   READ-ONLY: %s\n", opd_cli_jstr(st, "read_only_reason"));
	else
		printf("writes:   accepted\n");
	printf("indexes:  commit %lld, applied %lld, last %lld\n",
	       (long long)opd_cli_jint(st, "commit_index"),
	       (long long)opd_cli_jint(st, "applied_index"),
	       (long long)opd_cli_jint(st, "last_index"));
	if (opd_cli_jint(st, "unverified_versions") > 0)
		printf("WARNING:  %lld active version(s) fail signature verification here and are "
		       "not served\n",
		       (long long)opd_cli_jint(st, "unverified_versions"));
	printf("\n");
	opd_cli_table_init(&t, 5);
	json_array_foreach(json_object_get(st, "members"), i, m)
	{
		char id[32], contact[48];
		const char *row[5];
		json_t *lc = json_object_get(m, "last_contact_ms");

		snprintf(id, sizeof id, "%lld%s", (long long)opd_cli_jint(m, "id"),
			 opd_cli_jint(m, "id") == leader_id ? " *" : "");
		if (opd_cli_jint(m, "id") == opd_cli_jint(st, "node_id"))
			snprintf(contact, sizeof contact, "(this node)");
		else if (json_is_integer(lc))
			snprintf(contact, sizeof contact, "%lld ms ago",
				 (long long)json_integer_value(lc));
		else
			snprintf(contact, sizeof contact, "unknown");
		row[0] = id;
		row[1] = opd_cli_jstr(m, "role");
		row[2] = opd_cli_jstr(m, "raft_address");
		row[3] = opd_cli_jstr(m, "admin_url");
		row[4] = contact;
		opd_cli_table_row(&t, row);
	}
	opd_cli_table_print(&t, header);
	printf("(* leader)\n");
}

/* Call, then print the cluster status the API answers with (every call here returns it). */
static int change(struct opd_cli *c, const char *method, const char *path, json_t *body,
		  const char *done)
{
	json_t *out = NULL;
	int rc = opd_cli_call(c, method, path, body, &out, NULL, NULL);

	json_decref(body);
	if (rc != OPD_CLI_OK)
		return rc;
	if (c->json) {
		opd_cli_print_json(out);
	} else {
		printf("%s\n\n", done);
		print_status(out);
	}
	json_decref(out);
	return OPD_CLI_OK;
}

static int parse_id(const char *s, uint64_t *id)
{
	return opd_cli_parse_u64(s, 1, INT64_MAX, id);
}

int opd_cli_cluster(struct opd_cli *c, int argc, char **argv)
{
	static const struct opd_cli_optspec promote_specs[] = {{"--role", 1, 0}, {NULL, 0, 0}};
	const char *sub = argc >= 2 ? argv[1] : NULL, *usage;
	struct opd_cli_args a;
	char path[96], done[160];
	uint64_t id = 0;
	int rc;

	if (sub == NULL)
		return opd_cli_usage_error(usage_cluster, "cluster needs a subcommand");
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage_cluster, stdout);
		return OPD_CLI_OK;
	}
	argc -= 2;
	argv += 2;
	if (strcmp(sub, "status") == 0) {
		struct opd_buf raw;
		json_t *out = NULL;

		if ((rc = opd_cli_parse(c, argc, argv, NULL, usage_status, &a)) != 0)
			return rc < 0 ? 0 : rc;
		if (a.n_pos != 0)
			return opd_cli_usage_error(usage_status,
						   "cluster status takes no arguments");
		opd_buf_init(&raw);
		rc = opd_cli_call(c, "GET", "/api/v1/cluster", NULL, &out, &raw, NULL);
		if (rc == OPD_CLI_OK && c->json) {
			fwrite(opd_buf_rptr(&raw), 1, opd_buf_avail(&raw), stdout);
			putchar('\n');
		} else if (rc == OPD_CLI_OK) {
			print_status(out);
		}
		opd_buf_fini(&raw);
		json_decref(out);
		return rc;
	}
	if (strcmp(sub, "add") == 0) {
		json_t *body;

		usage = usage_add;
		if ((rc = opd_cli_parse(c, argc, argv, NULL, usage, &a)) != 0)
			return rc < 0 ? 0 : rc;
		if (a.n_pos != 3 || parse_id(a.pos[0], &id) != 0)
			return opd_cli_usage_error(usage, "cluster add needs ID (a number > 0), "
							  "RAFT_HOST:PORT and ADMIN_URL");
		if (strchr(a.pos[1], ':') == NULL)
			return opd_cli_usage_error(usage, "RAFT address %s has no port", a.pos[1]);
		if (strncmp(a.pos[2], "http://", 7) != 0 && strncmp(a.pos[2], "https://", 8) != 0)
			return opd_cli_usage_error(usage,
						   "ADMIN_URL starts with http:// or https://");
		body = json_object();
		json_object_set_new(body, "id", json_integer((json_int_t)id));
		json_object_set_new(body, "raft_address", json_string(a.pos[1]));
		json_object_set_new(body, "admin_url", json_string(a.pos[2]));
		snprintf(done, sizeof done,
			 "added node %llu as a spare; promote it with: opampd "
			 "cluster promote %llu",
			 (unsigned long long)id, (unsigned long long)id);
		return change(c, "POST", "/api/v1/cluster/members", body, done);
	}
	if (strcmp(sub, "promote") == 0) {
		const char *role;
		json_t *body;

		usage = usage_promote;
		if ((rc = opd_cli_parse(c, argc, argv, promote_specs, usage, &a)) != 0)
			return rc < 0 ? 0 : rc;
		if (a.n_pos != 1 || parse_id(a.pos[0], &id) != 0)
			return opd_cli_usage_error(usage, "cluster promote needs ID");
		role = opd_cli_opt1(&a, "--role");
		if (role == NULL)
			role = "voter";
		if (strcmp(role, "voter") != 0 && strcmp(role, "standby") != 0 &&
		    strcmp(role, "spare") != 0)
			return opd_cli_usage_error(usage, "--role is voter, standby or spare");
		body = json_object();
		json_object_set_new(body, "role", json_string(role));
		snprintf(path, sizeof path, "/api/v1/cluster/members/%llu/promote",
			 (unsigned long long)id);
		snprintf(done, sizeof done, "node %llu is now a %s", (unsigned long long)id, role);
		return change(c, "POST", path, body, done);
	}
	if (strcmp(sub, "remove") == 0) {
		usage = usage_remove;
		if ((rc = opd_cli_parse(c, argc, argv, NULL, usage, &a)) != 0)
			return rc < 0 ? 0 : rc;
		if (a.n_pos != 1 || parse_id(a.pos[0], &id) != 0)
			return opd_cli_usage_error(usage, "cluster remove needs ID");
		snprintf(path, sizeof path, "/api/v1/cluster/members/%llu", (unsigned long long)id);
		snprintf(done, sizeof done, "removed node %llu", (unsigned long long)id);
		return change(c, "DELETE", path, NULL, done);
	}
	if (strcmp(sub, "transfer") == 0) {
		json_t *body = json_object();

		usage = usage_transfer;
		if ((rc = opd_cli_parse(c, argc, argv, NULL, usage, &a)) != 0) {
			json_decref(body);
			return rc < 0 ? 0 : rc;
		}
		if (a.n_pos > 1 || (a.n_pos == 1 && parse_id(a.pos[0], &id) != 0)) {
			json_decref(body);
			return opd_cli_usage_error(usage, "cluster transfer takes at most one ID");
		}
		if (id != 0)
			json_object_set_new(body, "id", json_integer((json_int_t)id));
		if (id != 0)
			snprintf(done, sizeof done, "leadership handed to node %llu",
				 (unsigned long long)id);
		else
			snprintf(done, sizeof done, "leadership handed over");
		return change(c, "POST", "/api/v1/cluster/transfer", body, done);
	}
	return opd_cli_usage_error(usage_cluster, "unknown cluster subcommand %s", sub);
}
