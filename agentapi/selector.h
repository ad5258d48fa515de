/* Matching configuration selectors against agent attributes. Pure. */
#ifndef OPD_SELECTOR_H
#define OPD_SELECTOR_H

#include "agent.h"

/*
 * 1 when every pair of the selector is present, with an equal value, among
 * the agent's identifying or non-identifying attributes (an empty selector
 * matches every agent); 0 otherwise.
 */
int opd_selector_match(const struct opd_kvs *selector, const struct opd_agent *a);

#endif
