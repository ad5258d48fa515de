/* Intrusive doubly linked circular list (header only), libuv's queue shape. */
#ifndef OPD_LIST_H
#define OPD_LIST_H

#include <stddef.h>

struct opd_list {
	struct opd_list *prev, *next;
};

#define opd_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void opd_list_init(struct opd_list *h)
{
	h->prev = h->next = h;
}
static inline int opd_list_empty(const struct opd_list *h)
{
	return h->next == h;
}
static inline void opd_list_insert_tail(struct opd_list *h, struct opd_list *n)
{
	n->next = h;
	n->prev = h->prev;
	h->prev->next = n;
	h->prev = n;
}
static inline void opd_list_remove(struct opd_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define opd_list_foreach(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
/* Safe against removal of pos. */
#define opd_list_foreach_safe(pos, tmp, head)                                                      \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                           \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
