/*
 * config_hash: SHA-256 over the canonical encoding of an AgentConfigMap.
 * The files are taken in name order; for each file its name, content type and
 * body are written as an 8-byte big-endian length followed by the bytes.
 * Agents compare hashes byte for byte, so this encoding never changes.
 */
#ifndef OPD_CONFIG_HASH_H
#define OPD_CONFIG_HASH_H

#include "store.h"

/* files must be sorted by name (opd_files_sort). */
void opd_config_hash(const struct opd_files *files, uint8_t out[OPD_CONFIG_HASH_LEN]);

#endif
