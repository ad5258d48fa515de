/* Shared helpers for the cmocka tests: temp dirs, spawning opampd, fake clock. */
#ifndef OPD_TEST_HARNESS_H
#define OPD_TEST_HARNESS_H

#include "clock.h"

#include <stdint.h>

/* A clock the test moves by hand. */
struct opd_fake_clock {
	uint64_t now_ms;
	uint64_t wall_ms;
	struct opd_clock clock;
};

void opd_fake_clock_init(struct opd_fake_clock *fc, uint64_t start_ms);
void opd_fake_clock_advance(struct opd_fake_clock *fc, uint64_t ms);

struct opd_registry;

/* Default settings, no configuration for anyone, every new agent's uid 0x77... (tests/lib). */
void opd_test_registry_init(struct opd_registry *r);

#include "configs.h"
#include "sign.h"

/*
 * Give a configuration service (opened without a node) a fresh signing key
 * in a temporary directory and register it in the store, as a new leader
 * does. Returns 0 or -1. opd_test_signer_fini removes the key file.
 */
struct opd_test_signer {
	struct opd_signer signer;
	char dir[64];
	char path[96];
};

int opd_test_signer_init(struct opd_test_signer *t, struct opd_configs *c);
void opd_test_signer_fini(struct opd_test_signer *t);

#endif
