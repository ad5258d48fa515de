#include "selector.h"

#include <string.h>

/*
 * A key may appear more than once (in both lists, or repeated by the agent):
 * any occurrence with the wanted value satisfies the pair.
 */
static int has_pair(const struct opd_kvs *s, const struct opd_kv *want)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].key, want->key) == 0 && strcmp(s->v[i].value, want->value) == 0)
			return 1;
	return 0;
}

int opd_selector_match(const struct opd_kvs *selector, const struct opd_agent *a)
{
	/* Every agent is checked against every configuration on each change: most
	 * selectors name a pair the agent does not have, and its bit says so. */
	if ((selector->pair_bits & ~(a->ident.pair_bits | a->nonident.pair_bits)) != 0)
		return 0;
	for (size_t i = 0; i < selector->n; i++)
		if (!has_pair(&a->ident, &selector->v[i]) &&
		    !has_pair(&a->nonident, &selector->v[i]))
			return 0;
	return 1;
}
