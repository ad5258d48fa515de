/* A registry with no configurations and a fixed uid for new agents (harness.h). */
#include "harness.h"
#include "registry.h"

#include <string.h>

static int no_desired(void *data, const struct opd_agent *a, struct opd_desired *out)
{
	(void)data;
	(void)a;
	(void)out;
	return OPD_ENOTFOUND;
}

static void fixed_uid(void *data, uint8_t uid[OPD_UID_LEN])
{
	(void)data;
	memset(uid, 0x77, OPD_UID_LEN);
}

void opd_test_registry_init(struct opd_registry *r)
{
	struct opd_registry_settings s;
	struct opd_registry_ops ops = {.desired = no_desired, .new_uid = fixed_uid};

	opd_registry_settings_default(&s);
	opd_registry_init(r, &s, &ops);
}
