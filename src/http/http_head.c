/*
 * http_head.c - header views for parsed HTTP messages (see http_head.h).
 */
#include "http/http_head.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"

void lx_http_head_init(lx_http_head_t *h)
{
    h->headers = NULL;
    h->table = NULL;
    h->n_headers = 0;
    h->in_value = false;
    h->too_many = false;
    h->target = (lx_str_t){NULL, 0};
    h->n_held = 0;
    h->spill = NULL;
    h->spill_len = h->spill_cap = 0;
}

/* Header tables are the one allocation of every request's parse (2 KiB): a thread keeps a few
 * freed ones for the next requests instead of going through malloc each time. A thread-specific
 * key's destructor frees them when the thread ends. */
#define TABLE_CACHE 8
static _Thread_local lx_http_header_t *table_cache[TABLE_CACHE];
static _Thread_local unsigned n_table_cache;
static _Thread_local bool table_key_set;
static pthread_key_t table_key;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void cache_drain(void *arg)
{
    (void)arg;
    while (n_table_cache > 0)
        free(table_cache[--n_table_cache]);
}

static void make_key(void)
{
    (void)pthread_key_create(&table_key, cache_drain);
}

static lx_http_header_t *table_get(void)
{
    if (n_table_cache > 0)
        return table_cache[--n_table_cache];
    return malloc(LX_HTTP_MAX_HEADERS * sizeof(lx_http_header_t));
}

static void table_put(lx_http_header_t *t)
{
    if (t == NULL)
        return;
    if (!table_key_set) {
        /* the destructor runs only for a non-NULL value */
        pthread_once(&table_once, make_key);
        table_key_set = pthread_setspecific(table_key, (void *)1) == 0;
    }
    if (table_key_set && n_table_cache < TABLE_CACHE)
        table_cache[n_table_cache++] = t;
    else
        free(t);
}

void lx_http_head_reset(lx_http_head_t *h)
{
    for (unsigned i = 0; i < h->n_held; i++)
        lx_buf_unref(h->held[i]);
    free(h->spill);
    table_put(h->table);
    lx_http_head_init(h);
}

void lx_http_head_adopt(lx_http_head_t *h, lx_buf_t *b)
{
    for (unsigned i = 0; i < h->n_held; i++)
        lx_buf_unref(h->held[i]);
    free(h->spill);
    h->spill = NULL;
    h->spill_len = h->spill_cap = 0;
    LX_ASSERT(h->n_headers == 0 || h->headers != h->table);
    table_put(h->table);
    h->table = NULL;
    if (h->n_headers == 0)
        h->headers = NULL;
    h->held[0] = b;
    h->n_held = 1;
}

int lx_http_head_hold(lx_http_head_t *h, lx_buf_t *b)
{
    if (h->n_held > 0 && h->held[h->n_held - 1] == b)
        return 0;
    if (h->n_held == LX_HTTP_HEAD_MAX_HELD)
        return LX_ETOOBIG;
    h->held[h->n_held++] = lx_buf_ref(b);
    return 0;
}

int lx_http_head_span(lx_http_head_t *h, lx_str_t *sp, const char *at, size_t len, size_t limit)
{
    if (sp->len == 0) {
        sp->ptr = at;
        sp->len = len;
        return 0;
    }
    if (sp->ptr + sp->len == at) {
        sp->len += len;
        return 0;
    }
    /* The view continues in another chunk: join the pieces in the spill area. The spill is
     * sized once to the header limit, so views into it never move. */
    if (h->spill == NULL) {
        h->spill = malloc(limit);
        if (h->spill == NULL)
            return LX_ENOMEM;
        h->spill_cap = limit;
    }
    bool at_end = sp->ptr + sp->len == h->spill + h->spill_len;
    size_t need = (at_end ? 0 : sp->len) + len;
    if (h->spill_len + need > h->spill_cap)
        return LX_ETOOBIG;
    if (!at_end) {
        memcpy(h->spill + h->spill_len, sp->ptr, sp->len);
        sp->ptr = h->spill + h->spill_len;
        h->spill_len += sp->len;
    }
    memcpy(h->spill + h->spill_len, at, len);
    h->spill_len += len;
    sp->len += len;
    return 0;
}

int lx_http_head_name(lx_http_head_t *h, const char *at, size_t len, size_t limit)
{
    if (h->n_headers == 0 || h->in_value) {
        if (h->table == NULL) {
            h->table = table_get();
            if (h->table == NULL)
                return LX_ENOMEM;
            h->headers = h->table;
        }
        if (h->n_headers == LX_HTTP_MAX_HEADERS) {
            h->too_many = true;
            return LX_ETOOBIG;
        }
        lx_http_header_t *hd = &h->headers[h->n_headers++];
        hd->name = hd->value = (lx_str_t){NULL, 0};
        h->in_value = false;
    }
    return lx_http_head_span(h, &h->headers[h->n_headers - 1].name, at, len, limit);
}

int lx_http_head_value(lx_http_head_t *h, const char *at, size_t len, size_t limit)
{
    if (h->n_headers == 0)
        return LX_EPARSE;
    lx_http_header_t *hd = &h->headers[h->n_headers - 1];
    if (hd->value.len == 0 && hd->value.ptr == NULL) {
        hd->value.ptr = at;
        hd->value.len = len;
        return 0;
    }
    return lx_http_head_span(h, &hd->value, at, len, limit);
}

void lx_http_head_name_done(lx_http_head_t *h)
{
    h->in_value = true;
}

const lx_http_header_t *lx_http_head_find(const lx_http_head_t *h, const char *name, size_t len)
{
    for (unsigned i = 0; i < h->n_headers; i++)
        if (lx_str_caseeq(h->headers[i].name, name, len))
            return &h->headers[i];
    return NULL;
}
