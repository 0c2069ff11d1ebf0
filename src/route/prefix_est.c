/*
 * prefix_est.c - the per-endpoint prefix-hit estimate (prefix_est.h): a direct-mapped table of
 * the prefix keys each endpoint was sent, a windowed hit count per endpoint, and their admin
 * JSON and Prometheus text.
 */
#include "route/prefix_est.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define EP_BITS  24
#define EP_MASK  ((UINT64_C(1) << EP_BITS) - 1)
#define CNT_BITS 20
#define CNT_MAX  ((UINT64_C(1) << CNT_BITS) - 1)
#define SEQ_BITS 20 /* a slot word's volume mark (units of LX_PREFIX_EST_UNIT bytes) */
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)

_Static_assert((LX_PREFIX_EST_SLOTS & (LX_PREFIX_EST_SLOTS - 1)) == 0,
               "LX_PREFIX_EST_SLOTS is a power of two");
_Static_assert(EP_BITS + 2 * CNT_BITS == 64, "a window word is full");
_Static_assert(LX_PREFIX_EST_CACHE_MAX / LX_PREFIX_EST_UNIT < SEQ_MASK / 2,
               "the horizon fits a slot word's volume mark");

lx_prefix_est_t *lx_prefix_est_new(size_t n_rows)
{
    lx_prefix_est_t *e = calloc(1, sizeof(*e));
    size_t size = (n_rows + 1) * sizeof(lx_prefix_est_row_t); /* (a multiple of 64) */
    if (e == NULL || n_rows > SIZE_MAX / sizeof(lx_prefix_est_row_t) - 1 ||
        (e->rows = aligned_alloc(64, size)) == NULL) {
        free(e);
        return NULL;
    }
    memset(e->rows, 0, size); /* (all-zero bytes: every atomic 0) */
    e->n_rows = n_rows;
    for (size_t i = 0; i < n_rows; i++)
        lx_prefix_est_set_cache(e, i, LX_PREFIX_EST_CACHE_BYTES);
    return e;
}

void lx_prefix_est_set_cache(lx_prefix_est_t *e, size_t row, uint64_t bytes)
{
    if (e == NULL || row >= e->n_rows)
        return;
    bytes = bytes < LX_PREFIX_EST_UNIT        ? LX_PREFIX_EST_UNIT
            : bytes > LX_PREFIX_EST_CACHE_MAX ? LX_PREFIX_EST_CACHE_MAX
                                              : bytes;
    e->rows[row].horizon = (uint32_t)(bytes / LX_PREFIX_EST_UNIT);
}

void lx_prefix_est_free(lx_prefix_est_t *e)
{
    if (e == NULL)
        return;
    free(e->rows);
    free(e);
}

/* The slot of <key>: its bits mixed by a multiplication (the ring places keys by their whole
 * value, so the keys of one endpoint share high bits; the product's top bits depend on all). */
static size_t slot_of(uint64_t key)
{
    return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 55) & (LX_PREFIX_EST_SLOTS - 1);
}

static uint64_t win_word(uint64_t ep, uint64_t requests, uint64_t hits)
{
    return ep << (2 * CNT_BITS) | requests << CNT_BITS | hits;
}

/* Whether window number <t> is after <ep> (numbers wrap at 2^24: "after" is within half). */
static bool ep_after(uint64_t t, uint64_t ep)
{
    uint64_t d = (t - ep) & EP_MASK;
    return d != 0 && d < (EP_MASK >> 1);
}

/* Counts one request (and a hit) in window <ep>'s word: the window's counts, or a new window
 * replacing the older one of its parity. A word already of a later window (this caller's clock
 * lags by more than a window) or full (CNT_MAX requests) is left as it is. */
static void window_add(_Atomic uint64_t *w, uint64_t ep, bool hit)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed), next;
    do {
        uint64_t t = old >> (2 * CNT_BITS);
        uint64_t req = (old >> CNT_BITS) & CNT_MAX, hits = old & CNT_MAX;
        if (old != 0 && t == ep) {
            if (req == CNT_MAX)
                return; /* (saturated: its ratio stands) */
            next = win_word(ep, req + 1, hits + hit);
        } else if (old != 0 && ep_after(t, ep)) {
            return;
        } else {
            next = win_word(ep, 1, hit);
        }
    } while (!atomic_compare_exchange_weak_explicit(w, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

bool lx_prefix_est_note(lx_prefix_est_t *e, size_t row, uint64_t key, uint32_t prompt_bytes,
                        uint64_t now_ms)
{
    if (e == NULL || key == 0 || row >= e->n_rows)
        return false;
    lx_prefix_est_row_t *r = &e->rows[row];
    /* the prompt text sent to the row before this one (units of LX_PREFIX_EST_UNIT bytes), and
     * the slot word: the key's top 43 bits (with a mark, so no word is 0) over the low SEQ_BITS
     * of the volume at this prompt's end */
    uint64_t units = prompt_bytes / LX_PREFIX_EST_UNIT + 1;
    uint64_t at = atomic_fetch_add_explicit(&r->volume, units, memory_order_relaxed);
    uint64_t word = ((key >> (SEQ_BITS + 1)) | UINT64_C(1) << (63 - SEQ_BITS)) << SEQ_BITS |
                    ((at + units) & SEQ_MASK);
    uint64_t old = atomic_exchange_explicit(&r->slots[slot_of(key)], word, memory_order_relaxed);
    /* within the horizon either way: a mark past this prompt's start is the same prefix noted
     * by another worker between this one's two steps (sent there a moment ago, not a miss) */
    uint64_t d = (at - old) & SEQ_MASK;
    bool hit =
        old >> SEQ_BITS == word >> SEQ_BITS && (d <= r->horizon || SEQ_MASK + 1 - d <= r->horizon);
    uint64_t ep = (now_ms / LX_PREFIX_EST_WINDOW_MS) & EP_MASK;
    window_add(&r->win[ep & 1], ep, hit);
    atomic_fetch_add_explicit(&r->requests, 1, memory_order_relaxed);
    if (hit)
        atomic_fetch_add_explicit(&r->hits, 1, memory_order_relaxed);
    return hit;
}

void lx_prefix_est_read(const lx_prefix_est_t *e, size_t row, uint64_t now_ms,
                        lx_prefix_est_view_t *v)
{
    memset(v, 0, sizeof(*v));
    if (e == NULL || row >= e->n_rows)
        return;
    lx_prefix_est_row_t *r = &e->rows[row];
    uint64_t n = now_ms / LX_PREFIX_EST_WINDOW_MS, ep = n & EP_MASK;
    uint64_t start = n * LX_PREFIX_EST_WINDOW_MS;
    for (uint64_t back = 0; back < 2; back++) {
        uint64_t want = (ep - back) & EP_MASK;
        uint64_t w = atomic_load_explicit(&r->win[want & 1], memory_order_relaxed);
        if (w == 0 || w >> (2 * CNT_BITS) != want)
            continue;
        v->requests += (w >> CNT_BITS) & CNT_MAX;
        v->hits += w & CNT_MAX;
        if (back == 1 && n > 0)
            start = (n - 1) * LX_PREFIX_EST_WINDOW_MS;
    }
    v->span_ms = now_ms - start;
    v->total_requests = atomic_load_explicit(&r->requests, memory_order_relaxed);
    v->total_hits = atomic_load_explicit(&r->hits, memory_order_relaxed);
    if (v->total_hits > v->total_requests) /* (read between the two adds) */
        v->total_hits = v->total_requests;
}

void lx_prefix_est_json(lx_strbuf_t *sb, const lx_prefix_est_t *e, size_t row, uint64_t now_ms)
{
    lx_prefix_est_view_t v;
    lx_prefix_est_read(e, row, now_ms, &v);
    LX_STRBUF_LIT(sb, "\"prefix_est\":{\"hit_rate\":");
    if (v.requests > 0)
        lx_strbuf_fixed(sb, (double)v.hits / (double)v.requests, 4);
    else
        LX_STRBUF_LIT(sb, "null");
    LX_STRBUF_LIT(sb, ",\"hits\":");
    lx_strbuf_u64(sb, v.hits);
    LX_STRBUF_LIT(sb, ",\"requests\":");
    lx_strbuf_u64(sb, v.requests);
    LX_STRBUF_LIT(sb, ",\"span_ms\":");
    lx_strbuf_u64(sb, v.span_ms);
    LX_STRBUF_LIT(sb, ",\"total_hits\":");
    lx_strbuf_u64(sb, v.total_hits);
    LX_STRBUF_LIT(sb, ",\"total_requests\":");
    lx_strbuf_u64(sb, v.total_requests);
    LX_STRBUF_LIT(sb, "}");
}

/* ---- Prometheus text ---- */

static const struct {
    const char *name, *type, *help;
} prom[] = {
    {"llmux_fleet_prefix_hit_estimate", "gauge",
     "Share of the requests sent to the endpoint in the last 10 to 20 s whose prompt prefix "
     "llmux had sent there with at most the server's cache (prefix_cache_tokens) of other "
     "prompts since (an estimate: the server's evictions are not seen)."},
    {"llmux_fleet_prefix_requests_total", "counter",
     "Requests with a prompt prefix sent to the endpoint (balance fleet)."},
    {"llmux_fleet_prefix_hits_estimated_total", "counter",
     "Of them, those whose prompt prefix llmux had sent there with at most the server's cache "
     "of other prompts since."},
};

int lx_prefix_est_format_metrics(const lx_prefix_est_t *e, const lx_health_t *h, uint64_t now_ms,
                                 char **out, size_t *len)
{
    size_t n = e != NULL ? e->n_rows : 0, cap = 64;
    if (n > lx_health_rows(h))
        n = lx_health_rows(h);
    for (size_t m = 0; m < 3; m++)
        cap += 32 + 2 * strlen(prom[m].name) + strlen(prom[m].help);
    for (size_t i = 0; i < n; i++) {
        const lx_health_row_key_t *k = lx_health_row_key(h, i);
        cap += 3 * (96 + 2 * (strlen(k->provider) + strlen(k->endpoint) + strlen(k->model)));
    }
    char *buf = malloc(cap);
    if (buf == NULL)
        return LX_ENOMEM;
    lx_strbuf_t sb = lx_strbuf_make(buf, cap);
    for (size_t m = 0; m < 3; m++) {
        LX_STRBUF_LIT(&sb, "# HELP ");
        lx_strbuf_str(&sb, prom[m].name);
        LX_STRBUF_LIT(&sb, " ");
        lx_strbuf_str(&sb, prom[m].help);
        LX_STRBUF_LIT(&sb, "\n# TYPE ");
        lx_strbuf_str(&sb, prom[m].name);
        LX_STRBUF_LIT(&sb, " ");
        lx_strbuf_str(&sb, prom[m].type);
        LX_STRBUF_LIT(&sb, "\n");
        for (size_t i = 0; i < n; i++) {
            lx_prefix_est_view_t v;
            lx_prefix_est_read(e, i, now_ms, &v);
            lx_strbuf_str(&sb, prom[m].name);
            lx_health_prom_labels(&sb, lx_health_row_key(h, i));
            LX_STRBUF_LIT(&sb, "} ");
            if (m == 0 && v.requests == 0)
                LX_STRBUF_LIT(&sb, "NaN");
            else if (m == 0)
                lx_strbuf_fixed(&sb, (double)v.hits / (double)v.requests, 6);
            else
                lx_strbuf_u64(&sb, m == 1 ? v.total_requests : v.total_hits);
            LX_STRBUF_LIT(&sb, "\n");
        }
    }
    LX_STRBUF_LIT(&sb, "\0");
    if (sb.overflow) { /* (the size bound is wrong: refuse rather than cut) */
        free(buf);
        return LX_ENOMEM;
    }
    *len = lx_strbuf_len(&sb, buf) - 1;
    *out = buf;
    return 0;
}
