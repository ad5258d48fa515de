#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int opd_test_signer_init(struct opd_test_signer *t, struct opd_configs *c)
{
	snprintf(t->dir, sizeof t->dir, "/tmp/opd-key-XXXXXX");
	if (mkdtemp(t->dir) == NULL)
		return -1;
	snprintf(t->path, sizeof t->path, "%s/signing.key", t->dir);
	if (opd_signer_load(&t->signer, t->path, 1) != 0)
		return -1;
	c->signer = &t->signer;
	opd_configs_ensure_key(c);
	return 0;
}

void opd_test_signer_fini(struct opd_test_signer *t)
{
	opd_signer_fini(&t->signer);
	unlink(t->path);
	rmdir(t->dir);
}
