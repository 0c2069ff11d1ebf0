/*
 * buf.c - the per-worker chunk pool.
 *
 * A free list of fixed-size chunks, LIFO, and one per class of small chunks (exact-size copies
 * rounded up to a power of two). Chunks are handed out with refcnt 1 and come back on their
 * last unref. The pool is owned by one worker thread and never locked.
 */
#include "core/buf.h"

#include <stdlib.h>

#include "core/core.h"

void lx_buf_pool_init(lx_buf_pool_t *pool, size_t max_free)
{
    pool->free = NULL;
    pool->n_free = 0;
    pool->max_free = max_free;
    pool->n_out = 0;
    pool->n_created = 0;
    for (size_t k = 0; k < LX_BUF_SMALL_CLASSES; k++) {
        pool->small[k] = NULL;
        pool->n_small[k] = 0;
    }
    pool->n_small_out = 0;
}

void lx_buf_pool_dispose(lx_buf_pool_t *pool)
{
    while (pool->free != NULL) {
        lx_buf_t *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->n_free = 0;
    for (size_t k = 0; k < LX_BUF_SMALL_CLASSES; k++) {
        while (pool->small[k] != NULL) {
            lx_buf_t *b = pool->small[k];
            pool->small[k] = b->next;
            free(b);
        }
        pool->n_small[k] = 0;
    }
}

/* The class of a small chunk of <cap> bytes (a power of two from 256). */
static unsigned small_class(size_t cap)
{
    unsigned k = 0;
    while ((256u << k) < cap)
        k++;
    return k;
}

lx_buf_t *lx_buf_pool_get_small(lx_buf_pool_t *pool, size_t cap)
{
    if (cap > LX_BUF_SMALL_MAX)
        return lx_buf_new(cap);
    unsigned k = small_class(cap);
    lx_buf_t *b = pool->small[k];
    if (b != NULL) {
        pool->small[k] = b->next;
        pool->n_small[k]--;
    } else {
        b = malloc(sizeof(*b) + (256u << k));
        if (b == NULL)
            return NULL;
        b->cap = 256u << k;
        b->pool = pool;
    }
    b->refcnt = 1;
    b->len = 0;
    b->next = NULL;
    pool->n_small_out++;
    return b;
}

lx_buf_t *lx_buf_pool_get(lx_buf_pool_t *pool)
{
    lx_buf_t *b = pool->free;
    if (b != NULL) {
        pool->free = b->next;
        pool->n_free--;
    } else {
        b = malloc(sizeof(*b) + LX_BUF_CHUNK_SIZE);
        if (b == NULL)
            return NULL;
        b->cap = LX_BUF_CHUNK_SIZE;
        b->pool = pool;
        pool->n_created++;
    }
    b->refcnt = 1;
    b->len = 0;
    b->next = NULL;
    pool->n_out++;
    return b;
}

lx_buf_t *lx_buf_new(size_t cap)
{
    if (cap > UINT32_MAX)
        return NULL;
    lx_buf_t *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    b->refcnt = 1;
    b->len = 0;
    b->cap = (uint32_t)cap;
    b->pool = NULL;
    b->next = NULL;
    return b;
}

void lx_buf_unref(lx_buf_t *b)
{
    if (b == NULL)
        return;
    LX_ASSERT(b->refcnt > 0);
    if (--b->refcnt > 0)
        return;
    lx_buf_pool_t *pool = b->pool;
    if (pool == NULL) {
        free(b);
        return;
    }
    if (b->cap != LX_BUF_CHUNK_SIZE) { /* a small chunk */
        unsigned k = small_class(b->cap);
        pool->n_small_out--;
        if (pool->n_small[k] >= LX_BUF_SMALL_KEEP_BYTES / b->cap) {
            free(b);
            return;
        }
        b->next = pool->small[k];
        pool->small[k] = b;
        pool->n_small[k]++;
        return;
    }
    pool->n_out--;
    if (pool->n_free >= pool->max_free) {
        free(b);
        return;
    }
    b->next = pool->free;
    pool->free = b;
    pool->n_free++;
}
