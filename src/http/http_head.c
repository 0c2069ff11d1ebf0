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

/* Drops trailing OWS from a value view. */
static void trim(lx_str_t *v)
{
    while (v->len > 0 && (v->ptr[v->len - 1] == ' ' || v->ptr[v->len - 1] == '\t'))
        v->len--;
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
        if (h->n_headers > 0)
            trim(&h->headers[h->n_headers - 1].value);
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

#define T(c) [(unsigned char)(c)] = 1
const unsigned char lx_http_tchars[256] = {
    T('!'), T('#'), T('$'), T('%'), T('&'), T('\''), T('*'), T('+'), T('-'), T('.'), T('^'),
    T('_'), T('`'), T('|'), T('~'), T('0'), T('1'),  T('2'), T('3'), T('4'), T('5'), T('6'),
    T('7'), T('8'), T('9'), T('a'), T('b'), T('c'),  T('d'), T('e'), T('f'), T('g'), T('h'),
    T('i'), T('j'), T('k'), T('l'), T('m'), T('n'),  T('o'), T('p'), T('q'), T('r'), T('s'),
    T('t'), T('u'), T('v'), T('w'), T('x'), T('y'),  T('z'), T('A'), T('B'), T('C'), T('D'),
    T('E'), T('F'), T('G'), T('H'), T('I'), T('J'),  T('K'), T('L'), T('M'), T('N'), T('O'),
    T('P'), T('Q'), T('R'), T('S'), T('T'), T('U'),  T('V'), T('W'), T('X'), T('Y'), T('Z'),
};
#undef T

bool lx_http_token(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!lx_http_tchar((unsigned char)p[i]))
            return false;
    return true;
}

void lx_http_head_value_done(lx_http_head_t *h)
{
    if (h->n_headers > 0)
        trim(&h->headers[h->n_headers - 1].value);
}

/* True when the eight bytes at p hold a space (a zero byte of w ^ 0x20..20 shows in the
 * classic has-zero test, exact as to whether there is one). */
static inline bool space8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= 0x2020202020202020ull;
    return ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull) != 0;
}

static inline bool space4(const char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    w ^= 0x20202020u;
    return ((w - 0x01010101u) & ~w & 0x80808080u) != 0;
}

/* True when [p, p+n) holds a space: whole words, the last one overlapping the one before. */
static bool has_space(const char *p, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (space8(p + i))
                return true;
        return space8(p + n - 8);
    }
    if (n >= 4)
        return space4(p) || space4(p + n - 4);
    for (size_t i = 0; i < n; i++)
        if (p[i] == ' ')
            return true;
    return false;
}

int lx_http_head_name_done(lx_http_head_t *h)
{
    /* no name piece since the last one completed: the name is empty (": value") */
    bool fresh = h->n_headers > 0 && !h->in_value;
    h->in_value = true;
    if (!fresh)
        return LX_EPARSE;
    /* llhttp checks every byte of a name against its own table, which is tchar plus the space
     * (in its default, non-strict build): the space is what is left to refuse. Scanning for it
     * costs a few instructions per eight bytes; a tchar table walk cost 3 per byte on every
     * header (test_http_server's test_header_name_bytes pins the whole byte range). */
    lx_str_t name = h->headers[h->n_headers - 1].name;
    return name.len == 0 || has_space(name.ptr, name.len) ? LX_EPARSE : 0;
}

const lx_http_header_t *lx_http_head_find(const lx_http_head_t *h, const char *name, size_t len)
{
    for (unsigned i = 0; i < h->n_headers; i++)
        if (lx_str_caseeq(h->headers[i].name, name, len))
            return &h->headers[i];
    return NULL;
}
