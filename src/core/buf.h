/*
 * buf.h - refcounted chunks and slices: the unit of every read and write on the data path.
 *
 * Reads land in fixed-size chunks taken from a per-worker pool (no malloc per read). Holding a
 * slice means holding one reference on its chunk. Bytes already written into a chunk never
 * change while anyone holds a reference (shared chunks are immutable); new bytes may still be
 * appended past `len`. Chunks never leave the worker that allocated them, so the refcount is a
 * plain integer.
 */
#ifndef LX_BUF_H
#define LX_BUF_H

#include <stddef.h>
#include <stdint.h>

#define LX_BUF_CHUNK_SIZE 16384u

struct lx_buf_pool;

typedef struct lx_buf {
    uint32_t refcnt;
    uint32_t len; /* bytes written into data[]; only grows while refcnt > 1 */
    uint32_t cap;
    uint32_t _pad;
    struct lx_buf_pool *pool; /* NULL for a chunk allocated at an arbitrary size */
    struct lx_buf *next;      /* free-list link, valid only while in the pool */
    char data[];
} lx_buf_t;

typedef struct lx_slice {
    lx_buf_t *buf;
    uint32_t off;
    uint32_t len;
} lx_slice_t;

/* Small chunks (lx_buf_pool_get_small()): classes of 256 << k bytes, k < LX_BUF_SMALL_CLASSES. */
#define LX_BUF_SMALL_CLASSES 4
#define LX_BUF_SMALL_MAX     (256u << (LX_BUF_SMALL_CLASSES - 1))
/* Spare small chunks kept per class: this many bytes' worth (64 KiB per class at most). */
#define LX_BUF_SMALL_KEEP_BYTES 65536u

typedef struct lx_buf_pool {
    lx_buf_t *free; /* LIFO: the most recently used chunk is the warmest in cache */
    size_t n_free;
    size_t max_free;  /* chunks kept for reuse; above this, freed to the allocator */
    size_t n_out;     /* chunks handed out and not yet back */
    size_t n_created; /* total allocations, for tests and metrics */
    /* spare small chunks by class, LIFO, and how many each list holds */
    lx_buf_t *small[LX_BUF_SMALL_CLASSES];
    uint32_t n_small[LX_BUF_SMALL_CLASSES];
    size_t n_small_out; /* small chunks handed out and not yet back */
} lx_buf_pool_t;

/* Prepares an empty pool keeping at most <max_free> spare chunks. */
void lx_buf_pool_init(lx_buf_pool_t *pool, size_t max_free);

/* Frees the spare chunks. Chunks still out are not touched (they free on their last unref). */
void lx_buf_pool_dispose(lx_buf_pool_t *pool);

/* A chunk of LX_BUF_CHUNK_SIZE bytes with refcnt 1 and len 0; NULL when out of memory. */
lx_buf_t *lx_buf_pool_get(lx_buf_pool_t *pool);

/* A chunk of exactly <cap> bytes outside any pool (large bodies); NULL when out of memory. */
lx_buf_t *lx_buf_new(size_t cap);

/* A chunk of at least <cap> bytes for an exact-size copy (a request head kept while its
 * answer is awaited): up to LX_BUF_SMALL_MAX from the pool's class of the next power of two
 * from 256 (recycled on the last unref, so copies made per request cost no malloc), larger ones
 * from lx_buf_new(). refcnt 1, len 0; NULL when out of memory. */
lx_buf_t *lx_buf_pool_get_small(lx_buf_pool_t *pool, size_t cap);

static inline lx_buf_t *lx_buf_ref(lx_buf_t *b)
{
    b->refcnt++;
    return b;
}

/* Drops one reference; at zero the chunk returns to its pool (or is freed). NULL is a no-op. */
void lx_buf_unref(lx_buf_t *b);

static inline char *lx_buf_tail(lx_buf_t *b)
{
    return b->data + b->len;
}

static inline size_t lx_buf_avail(const lx_buf_t *b)
{
    return b->cap - b->len;
}

/* Takes a reference on <b> and describes data[off, off+len). */
static inline lx_slice_t lx_slice_make(lx_buf_t *b, size_t off, size_t len)
{
    lx_slice_t s = {lx_buf_ref(b), (uint32_t)off, (uint32_t)len};
    return s;
}

static inline const char *lx_slice_ptr(const lx_slice_t *s)
{
    return s->buf->data + s->off;
}

#endif
