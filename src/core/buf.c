/*
 * buf.c - the per-worker chunk pool.
 *
 * A free list of fixed-size chunks, LIFO. Chunks are handed out with refcnt 1 and come back on
 * their last unref. The pool is owned by one worker thread and never locked.
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
}

void lx_buf_pool_dispose(lx_buf_pool_t *pool)
{
    while (pool->free != NULL) {
        lx_buf_t *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->n_free = 0;
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
    pool->n_out--;
    if (pool->n_free >= pool->max_free) {
        free(b);
        return;
    }
    b->next = pool->free;
    pool->free = b;
    pool->n_free++;
}
