/*
 * list.h - intrusive doubly linked list (circular, with a sentinel head).
 */
#ifndef LX_LIST_H
#define LX_LIST_H

#include <stdbool.h>

#include "core/core.h"

typedef struct lx_list {
    struct lx_list *prev, *next;
} lx_list_t;

static inline void lx_list_init(lx_list_t *h)
{
    h->prev = h->next = h;
}

static inline bool lx_list_is_empty(const lx_list_t *h)
{
    return h->next == h;
}

static inline void lx_list_insert_head(lx_list_t *h, lx_list_t *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

static inline void lx_list_insert_tail(lx_list_t *h, lx_list_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

/* Unlinks <n> and leaves it self-linked, so unlinking twice is harmless. */
static inline void lx_list_remove(lx_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define lx_list_entry(ptr, type, member) lx_container_of(ptr, type, member)

#endif
