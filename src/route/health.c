/*
 * health.c - the provider health table: creation and carry-over, the circuit breaker (with a
 * 429's concurrency cap), recording. Re-scoring is health_score.c's; the layout both share is
 * health_internal.h.
 *
 * Owns, per row: one cell per shard (the window's ring of time buckets, cumulative counters
 * and TTFT histogram, in-flight count) written by that shard's worker only; one breaker shared
 * by all shards; and three score snapshots, of which the control thread publishes one per
 * re-scoring into a spare whose readers have all passed a quiescent point (core/qsbr.h).
 *
 * Flow: a worker plans with lx_health_scores() + lx_health_available(), sends with
 * lx_health_admit(), brackets the attempt with lx_health_inflight_add(+1/-1) and ends it with
 * lx_health_record(). Every rescore_interval the control thread calls lx_health_rescore(),
 * which sums the live buckets of every shard, scores each row against its model's other rows
 * and publishes the results; health_format.c renders them for the admin API and /metrics.
 *
 * Bucket rotation is a seqlock with the bucket's stamp (period + 1) as the sequence: the
 * writer sets STAMP_BUSY, clears the counters, then stores the new stamp with release; a
 * reader keeps a bucket only when it saw the same, non-busy stamp before and after reading.
 * Counters are atomics accessed relaxed, so a racing read is stale, never torn or undefined.
 */
#include "route/health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/health_internal.h"
#include "route/hedge.h"

#define MAX_LEVEL 30 /* cooldown doublings are capped well before the shift overflows */

static const char *const outcome_names[] = {
#define XX(e, n) #n,
    LX_HEALTH_OUTCOME_MAP(XX)
#undef XX
};

const char *lx_health_outcome_name(lx_health_outcome_t o)
{
    return (unsigned)o < LX_HEALTH_N_OUTCOMES ? outcome_names[o] : "unknown";
}

const char *lx_health_demotion_name(lx_health_demotion_t d)
{
    switch (d) {
    case LX_HEALTH_NOT_DEMOTED:
        return "none";
    case LX_HEALTH_DEMOTED_SUCCESS:
        return "success";
    case LX_HEALTH_DEMOTED_LATENCY:
        return "latency";
    }
    return "unknown";
}

bool lx_health_outcome_is_failure(lx_health_outcome_t o)
{
    return o == LX_HEALTH_CONNECT || o == LX_HEALTH_TIMEOUT || o == LX_HEALTH_SERVER ||
           o == LX_HEALTH_BAD_RESPONSE;
}

void lx_health_opts_init(lx_health_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->window_ms = 15 * 60 * 1000;
    o->rescore_interval_ms = 5 * 60 * 1000;
    o->breaker_failures = 5;
    o->breaker_cooldown_ms = 10 * 1000;
    o->breaker_max_cooldown_ms = 5 * 60 * 1000;
    o->probe_timeout_ms = 60 * 1000;
    o->exploration = 0.02;
    o->log_epsilon = 0.02;
}

/* Relaxed helpers: a shard's counters have one writer, so a load and a store suffice (no
 * locked read-modify-write on the hot path). */
static inline void bump32(_Atomic uint32_t *p)
{
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void bump64(_Atomic uint64_t *p)
{
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline uint64_t ld(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void st(_Atomic uint64_t *p, uint64_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

/* ---- creation ---------------------------------------------------------------------------- */

static void fill_edges(double *edges, double lo, double hi)
{
    double r = pow(hi / lo, 1.0 / (LX_HEALTH_HIST_SLOTS - 2));
    edges[0] = 0;
    for (unsigned i = 1; i < LX_HEALTH_HIST_SLOTS; i++)
        edges[i] = lo * pow(r, (double)(i - 1));
}

void lx_health_neutral_score(lx_health_score_t *s)
{
    memset(s, 0, sizeof(*s));
    s->score = PRIOR_SCORE;
    s->success_rate = s->ttft_p50_ms = s->ttft_p90_ms = s->tps_p50 = s->rate_limit_rate = -1;
    s->recent_success = s->success_low = s->success_high = s->ttft_gm_ms = s->ttft_p95_ms =
        s->model_ttft_p95_ms = -1;
}

static bool key_eq(const lx_health_row_key_t *a, const lx_health_row_key_t *b)
{
    return strcmp(a->provider, b->provider) == 0 && strcmp(a->endpoint, b->endpoint) == 0 &&
           strcmp(a->model, b->model) == 0;
}

bool lx_health_read_bucket(bucket_t *b, uint64_t *stamp, uint32_t n[LX_HEALTH_N_OUTCOMES],
                           uint32_t ttft[LX_HEALTH_HIST_SLOTS], uint32_t tps[LX_HEALTH_HIST_SLOTS])
{
    uint64_t s1 = atomic_load_explicit(&b->stamp, memory_order_acquire);
    if (s1 == 0 || s1 == STAMP_BUSY)
        return false;
    for (unsigned i = 0; i < LX_HEALTH_N_OUTCOMES; i++)
        n[i] = atomic_load_explicit(&b->n[i], memory_order_relaxed);
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        ttft[i] = atomic_load_explicit(&b->ttft[i], memory_order_relaxed);
        tps[i] = atomic_load_explicit(&b->tps[i], memory_order_relaxed);
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&b->stamp, memory_order_relaxed) != s1)
        return false;
    *stamp = s1;
    return true;
}

/* Merges row <from> of every shard of <prev> into <to> (a fresh cell of the new table). */
static void carry_cell(const lx_health_t *prev, size_t from, cell_t *to, bool window)
{
    uint32_t n[LX_HEALTH_N_OUTCOMES], ttft[LX_HEALTH_HIST_SLOTS], tps[LX_HEALTH_HIST_SLOTS];
    for (unsigned s = 0; s < prev->n_shards; s++) {
        cell_t *c = &prev->shards[s][from];
        for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++)
            st(&to->total[o], ld(&to->total[o]) + ld(&c->total[o]));
        for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++)
            atomic_fetch_add_explicit(&to->ttft_total[i],
                                      atomic_load_explicit(&c->ttft_total[i], memory_order_relaxed),
                                      memory_order_relaxed);
        if (!window)
            continue;
        for (unsigned k = 0; k < LX_HEALTH_BUCKETS; k++) {
            uint64_t stamp;
            if (!lx_health_read_bucket(&c->ring[k], &stamp, n, ttft, tps))
                continue;
            bucket_t *b = &to->ring[k];
            uint64_t have = ld(&b->stamp);
            if (have > stamp)
                continue; /* keep the newer period */
            if (have < stamp)
                memset(b, 0, sizeof(*b)); /* fresh cell: no reader yet */
            st(&b->stamp, stamp);
            for (unsigned i = 0; i < LX_HEALTH_N_OUTCOMES; i++)
                atomic_fetch_add_explicit(&b->n[i], n[i], memory_order_relaxed);
            for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
                atomic_fetch_add_explicit(&b->ttft[i], ttft[i], memory_order_relaxed);
                atomic_fetch_add_explicit(&b->tps[i], tps[i], memory_order_relaxed);
            }
        }
    }
}

static void carry_breaker(breaker_t *to, breaker_t *from)
{
    st(&to->open_until, ld(&from->open_until));
    st(&to->retry_until, ld(&from->retry_until));
    st(&to->cap_until, ld(&from->cap_until));
    atomic_store_explicit(&to->cap, atomic_load_explicit(&from->cap, memory_order_relaxed),
                          memory_order_relaxed);
    st(&to->ejections, ld(&from->ejections));
    st(&to->slow_until, ld(&from->slow_until));
    st(&to->late_since, ld(&from->late_since));
    st(&to->timely_at, ld(&from->timely_at));
    atomic_store_explicit(&to->heads, atomic_load_explicit(&from->heads, memory_order_relaxed),
                          memory_order_relaxed);
    /* a probe in flight on the old table frees its slot there: start with it free here */
    atomic_store_explicit(&to->fails, atomic_load_explicit(&from->fails, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&to->level, atomic_load_explicit(&from->level, memory_order_relaxed),
                          memory_order_relaxed);
}

static void fill_opts(lx_health_opts_t *o, const lx_health_opts_t *in)
{
    lx_health_opts_t d;
    lx_health_opts_init(&d);
    if (!in) {
        *o = d;
        return;
    }
    *o = *in;
    if (o->window_ms < LX_HEALTH_BUCKETS)
        o->window_ms = d.window_ms;
    if (o->rescore_interval_ms == 0)
        o->rescore_interval_ms = d.rescore_interval_ms;
    if (o->breaker_failures == 0)
        o->breaker_failures = d.breaker_failures;
    if (o->breaker_cooldown_ms == 0)
        o->breaker_cooldown_ms = d.breaker_cooldown_ms;
    if (o->breaker_max_cooldown_ms == 0)
        o->breaker_max_cooldown_ms = d.breaker_max_cooldown_ms;
    if (o->breaker_max_cooldown_ms < o->breaker_cooldown_ms)
        o->breaker_max_cooldown_ms = o->breaker_cooldown_ms;
    if (o->probe_timeout_ms == 0)
        o->probe_timeout_ms = d.probe_timeout_ms;
    if (!(o->exploration >= 0)) /* negative or NaN */
        o->exploration = 0;
    if (o->exploration > 1)
        o->exploration = 1;
    if (!(o->log_epsilon >= 0))
        o->log_epsilon = d.log_epsilon;
}

/* The table's arrays for <rows> rows (at least 1) and <bytes> of key text: 0, or -1 when one
 * could not be allocated (lx_health_free() frees what was). */
static int alloc_rows(lx_health_t *h, size_t rows, size_t bytes)
{
    h->keys = calloc(rows, sizeof(*h->keys));
    h->key_bytes = malloc(bytes > 0 ? bytes : 1);
    h->group = calloc(rows, sizeof(*h->group));
    h->agg = calloc(rows, sizeof(*h->agg));
    h->rec = calloc(rows, sizeof(*h->rec));
    h->brk = aligned_alloc(alignof(breaker_t), rows * sizeof(breaker_t));
    h->shards = calloc(h->n_shards, sizeof(*h->shards));
    if (!h->keys || !h->key_bytes || !h->group || !h->agg || !h->rec || !h->brk || !h->shards)
        return -1;
    memset(h->brk, 0, rows * sizeof(breaker_t));
    for (unsigned s = 0; s < h->n_shards; s++) {
        size_t sz = (rows * sizeof(cell_t) + 63) / 64 * 64;
        h->shards[s] = aligned_alloc(64, sz); /* shards never share a cache line */
        if (!h->shards[s])
            return -1;
        memset(h->shards[s], 0, sz);
    }
    for (unsigned k = 0; k < SNAPSHOTS; k++) {
        h->snaps[k].rows = calloc(rows, sizeof(lx_health_score_t));
        if (!h->snaps[k].rows)
            return -1;
    }
    return 0;
}

/* Copies the row keys into the table's own text, and groups rows by model (group[i]: the first
 * row of the same model). */
static void copy_keys(lx_health_t *h, const lx_health_row_key_t *keys)
{
    char *p = h->key_bytes;
    for (size_t i = 0; i < h->n_rows; i++) {
        const char *src[3] = {keys[i].provider, keys[i].endpoint, keys[i].model};
        const char *dst[3];
        for (int f = 0; f < 3; f++) {
            size_t len = strlen(src[f]) + 1;
            memcpy(p, src[f], len);
            dst[f] = p;
            p += len;
        }
        h->keys[i] = (lx_health_row_key_t){dst[0], dst[1], dst[2]};
        h->group[i] = i;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(h->keys[j].model, dst[2]) == 0) {
                h->group[i] = j;
                break;
            }
        }
    }
}

/* The first snapshot: neutral scores, or the previous table's rows for the same (provider,
 * endpoint, model) with their breaker and counters (the window too when its bucket size is
 * the same). */
static void carry_over(lx_health_t *h, const lx_health_t *previous)
{
    snap_t *first = &h->snaps[0];
    const snap_t *psnap = NULL;
    if (previous) {
        psnap = atomic_load_explicit(&previous->cur, memory_order_acquire);
        first->at_ms = psnap->at_ms;
        first->rescored = psnap->rescored;
        h->rec_at_ms = previous->rec_at_ms;
        h->rec_started = previous->rec_started;
    }
    bool window = previous && previous->bucket_ms == h->bucket_ms;
    for (size_t i = 0; i < h->n_rows; i++) {
        lx_health_neutral_score(&first->rows[i]);
        if (!previous)
            continue;
        size_t j =
            lx_health_find(previous, h->keys[i].provider, h->keys[i].endpoint, h->keys[i].model);
        if (j == (size_t)-1)
            continue;
        first->rows[i] = psnap->rows[j];
        h->rec[i] = previous->rec[j]; /* its seen totals are those carried below, or fewer */
        carry_breaker(&h->brk[i], &previous->brk[j]);
        carry_cell(previous, j, &h->shards[0][i], window);
    }
    atomic_store_explicit(&h->cur, first, memory_order_release);
}

lx_health_t *lx_health_new(const lx_health_opts_t *opts, const lx_health_row_key_t *keys,
                           size_t n_rows, unsigned n_shards, const lx_health_t *previous)
{
    if (n_shards == 0 || (n_rows > 0 && !keys))
        return NULL;
    lx_health_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    fill_opts(&h->opts, opts);
    h->bucket_ms = h->opts.window_ms / LX_HEALTH_BUCKETS;
    h->n_rows = n_rows;
    h->n_shards = n_shards;
    fill_edges(h->ttft_edges, TTFT_LO_MS, TTFT_HI_MS);
    fill_edges(h->tps_edges, TPS_LO, TPS_HI);

    size_t bytes = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (!keys[i].provider || !keys[i].endpoint || !keys[i].model)
            goto fail;
        bytes += strlen(keys[i].provider) + strlen(keys[i].endpoint) + strlen(keys[i].model) + 3;
    }
    /* no zero-size allocations */
    if (alloc_rows(h, n_rows > 0 ? n_rows : 1, bytes) != 0)
        goto fail;
    copy_keys(h, keys);
    carry_over(h, previous);
    return h;

fail:
    lx_health_free(h);
    return NULL;
}

void lx_health_free(lx_health_t *h)
{
    if (!h)
        return;
    if (h->shards) {
        for (unsigned s = 0; s < h->n_shards; s++)
            free(h->shards[s]);
    }
    for (unsigned k = 0; k < SNAPSHOTS; k++)
        free(h->snaps[k].rows);
    free(h->shards);
    free(h->brk);
    free(h->agg);
    free(h->rec);
    free(h->group);
    free(h->key_bytes);
    free(h->keys);
    free(h);
}

const lx_health_opts_t *lx_health_opts(const lx_health_t *h)
{
    return &h->opts;
}

size_t lx_health_rows(const lx_health_t *h)
{
    return h->n_rows;
}

const lx_health_row_key_t *lx_health_row_key(const lx_health_t *h, size_t row)
{
    return row < h->n_rows ? &h->keys[row] : NULL;
}

size_t lx_health_find(const lx_health_t *h, const char *provider, const char *endpoint,
                      const char *model)
{
    lx_health_row_key_t k = {provider, endpoint, model};
    if (!provider || !endpoint || !model)
        return (size_t)-1;
    for (size_t i = 0; i < h->n_rows; i++) {
        if (key_eq(&h->keys[i], &k))
            return i;
    }
    return (size_t)-1;
}

/* ---- the breaker ------------------------------------------------------------------------- */

static uint64_t cooldown(const lx_health_t *h, uint32_t level)
{
    uint64_t base = h->opts.breaker_cooldown_ms, max = h->opts.breaker_max_cooldown_ms;
    if (level > MAX_LEVEL || base > (max >> level))
        return max;
    return base << level;
}

static bool probe_free(const lx_health_t *h, uint64_t probe, uint64_t now_ms)
{
    return probe == 0 || now_ms >= probe - 1 + h->opts.probe_timeout_ms;
}

/* Frees a taken probe slot when the breaker is half-open. */
static void release_probe(breaker_t *b, uint64_t now_ms)
{
    uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_acquire);
    if (ou != 0 && now_ms >= ou && ld(&b->probe) != 0)
        st(&b->probe, 0);
}

static void on_success(breaker_t *b, uint64_t now_ms)
{
    if (atomic_load_explicit(&b->fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
    uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_acquire);
    if (ou == 0 || now_ms < ou)
        return; /* closed, or a straggler sent before the ejection */
    if (atomic_compare_exchange_strong_explicit(&b->open_until, &ou, 0, memory_order_acq_rel,
                                                memory_order_relaxed))
        st(&b->probe, 0);
}

static void on_failure(const lx_health_t *h, breaker_t *b, uint64_t now_ms)
{
    uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_acquire);
    if (ou == 0) {
        uint32_t f = atomic_fetch_add_explicit(&b->fails, 1, memory_order_relaxed) + 1;
        if (f < h->opts.breaker_failures)
            return;
        uint64_t until = now_ms + cooldown(h, 0);
        if (atomic_compare_exchange_strong_explicit(&b->open_until, &ou, until,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            atomic_store_explicit(&b->level, 0, memory_order_relaxed);
            atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
            atomic_fetch_add_explicit(&b->ejections, 1, memory_order_relaxed);
        }
        return;
    }
    if (now_ms < ou)
        return; /* open: a straggler sent before the ejection */
    /* half-open: the probe failed; re-open for twice as long */
    uint32_t level = atomic_load_explicit(&b->level, memory_order_relaxed);
    if (level < MAX_LEVEL + 1)
        level++;
    uint64_t until = now_ms + cooldown(h, level);
    if (atomic_compare_exchange_strong_explicit(&b->open_until, &ou, until, memory_order_acq_rel,
                                                memory_order_relaxed)) {
        atomic_store_explicit(&b->level, level, memory_order_relaxed);
        atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->ejections, 1, memory_order_relaxed);
        st(&b->probe, 0);
    }
}

static void block_until(breaker_t *b, uint64_t until)
{
    uint64_t cur = ld(&b->retry_until);
    while (cur < until &&
           !atomic_compare_exchange_weak_explicit(&b->retry_until, &cur, until,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* A 429 for row <row>: a concurrency cap when other attempts were still in flight and the
 * Retry-After is short (the endpoint refused one more than it runs: keep it at as many as it
 * ran, for the Retry-After or LX_HEALTH_CAP_MIN_MS), lowered by a later 429 at fewer; else
 * the Retry-After blocks the row. Racing workers may each store their own cap: either is
 * one the endpoint stated. */
static void on_rate_limit(const lx_health_t *h, breaker_t *b, size_t row, uint64_t retry_ms,
                          uint64_t now_ms)
{
    int64_t busy = lx_health_in_flight(h, row);
    if (busy >= 1 && retry_ms <= LX_HEALTH_CAP_MAX_RETRY_MS) {
        uint32_t cap = busy > UINT32_MAX ? UINT32_MAX : (uint32_t)busy;
        bool active = ld(&b->cap_until) > now_ms;
        if (!active || cap < atomic_load_explicit(&b->cap, memory_order_relaxed))
            atomic_store_explicit(&b->cap, cap, memory_order_relaxed);
        st(&b->cap_until,
           now_ms + (retry_ms > LX_HEALTH_CAP_MIN_MS ? retry_ms : LX_HEALTH_CAP_MIN_MS));
        return;
    }
    if (retry_ms > 0)
        block_until(b, now_ms + retry_ms);
}

/* Whether row <row> runs as many attempts as its concurrency cap allows at <now_ms>. */
static bool at_cap(const lx_health_t *h, breaker_t *b, size_t row, uint64_t now_ms)
{
    if (ld(&b->cap_until) <= now_ms)
        return false;
    return lx_health_in_flight(h, row) >=
           (int64_t)atomic_load_explicit(&b->cap, memory_order_relaxed);
}

/* Where row <row> stands for a new attempt at <now_ms>: BLOCKED (open, or under a 429's
 * Retry-After), CLOSED (traffic flows), or HALF_OPEN with the probe slot's value in *probe. */
enum gate { GATE_BLOCKED, GATE_CLOSED, GATE_HALF_OPEN };

static enum gate gate(const lx_health_t *h, size_t row, uint64_t now_ms, uint64_t *probe)
{
    if (row >= h->n_rows)
        return GATE_BLOCKED;
    breaker_t *b = &h->brk[row];
    if (now_ms < ld(&b->retry_until) || at_cap(h, b, row, now_ms))
        return GATE_BLOCKED;
    uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_acquire);
    if (ou == 0)
        return GATE_CLOSED;
    if (now_ms < ou)
        return GATE_BLOCKED;
    *probe = ld(&b->probe);
    return probe_free(h, *probe, now_ms) ? GATE_HALF_OPEN : GATE_BLOCKED;
}

bool lx_health_available(const lx_health_t *h, size_t row, uint64_t now_ms)
{
    uint64_t p;
    return gate(h, row, now_ms, &p) != GATE_BLOCKED;
}

bool lx_health_admit(lx_health_t *h, size_t row, uint64_t now_ms)
{
    uint64_t p = 0;
    switch (gate(h, row, now_ms, &p)) {
    case GATE_CLOSED:
        return true;
    case GATE_HALF_OPEN:
        /* exactly one caller takes the probe slot */
        return atomic_compare_exchange_strong_explicit(&h->brk[row].probe, &p, now_ms + 1,
                                                       memory_order_relaxed, memory_order_relaxed);
    default:
        return false;
    }
}

#define LX_HEALTH_TIMELY_NOTE_MS 100

/* Whether a row of <row>'s model other than <row>, not marked itself, had a timely head since
 * <since>: lateness is judged against peers, so a stall of llmux's own loop (every row late
 * at once) or a model of one row marks nothing. */
static bool peer_timely_since(const lx_health_t *h, size_t row, uint64_t since, uint64_t now_ms)
{
    for (size_t j = 0; j < h->n_rows; j++) {
        if (j == row || h->group[j] != h->group[row])
            continue;
        breaker_t *p = &h->brk[j];
        uint64_t at = ld(&p->timely_at); /* (the time + 1; 0: none) */
        if (ld(&p->slow_until) <= now_ms && at != 0 && at + LX_HEALTH_TIMELY_NOTE_MS > since)
            return true;
    }
    return false;
}

static void timely_head(breaker_t *b, uint64_t now_ms)
{
    uint64_t at = ld(&b->timely_at);
    if (at == 0 || at + LX_HEALTH_TIMELY_NOTE_MS <= now_ms)
        st(&b->timely_at, now_ms + 1); /* (+1: 0 is none) */
    int32_t n = atomic_load_explicit(&b->heads, memory_order_relaxed);
    while (n > -LX_HEALTH_LATE_HEADS) { /* (saturated: no store, the common case) */
        int32_t want = n > 0 ? -1 : n - 1;
        if (atomic_compare_exchange_weak_explicit(&b->heads, &n, want, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            n = want;
            if (ld(&b->late_since) != 0)
                st(&b->late_since, 0);
            break;
        }
    }
    if (n <= -LX_HEALTH_LATE_HEADS && ld(&b->slow_until) > now_ms)
        st(&b->slow_until, 0);
}

void lx_health_head(lx_health_t *h, size_t row, bool late, uint64_t now_ms)
{
    if (row >= h->n_rows)
        return;
    breaker_t *b = &h->brk[row];
    if (!late) {
        timely_head(b, now_ms);
        return;
    }
    uint64_t su = ld(&b->slow_until);
    if (su != 0 && su <= now_ms) { /* a mark that ran out: a new run starts */
        st(&b->slow_until, 0);
        atomic_store_explicit(&b->heads, 0, memory_order_relaxed);
    }
    int32_t n = atomic_load_explicit(&b->heads, memory_order_relaxed), want;
    do
        want = n > 0 ? (n < INT32_MAX ? n + 1 : n) : 1;
    while (!atomic_compare_exchange_weak_explicit(&b->heads, &n, want, memory_order_relaxed,
                                                  memory_order_relaxed));
    if (want == 1)
        st(&b->late_since, now_ms);
    if (want < LX_HEALTH_LATE_HEADS || ld(&b->slow_until) > now_ms)
        return;
    uint64_t since = ld(&b->late_since);
    if (!peer_timely_since(h, row, since != 0 ? since : now_ms, now_ms))
        return;
    uint64_t hold = h->opts.rescore_interval_ms > 1000 ? h->opts.rescore_interval_ms : 1000;
    st(&b->slow_until, now_ms + hold);
}

/* At a re-scoring: a mark ends when the data takes over (the row demoted for latency) or shows
 * the row's recent heads timely against the model's. */
void lx_health_mark_rescored(lx_health_t *h, size_t row, const lx_health_score_t *r,
                             uint64_t now_ms)
{
    breaker_t *b = &h->brk[row];
    if (ld(&b->slow_until) <= now_ms)
        return;
    if (r->demoted == LX_HEALTH_DEMOTED_LATENCY ||
        (r->ttft_p95_ms >= 0 && r->model_ttft_p95_ms > 0 &&
         r->ttft_p95_ms <= LX_HEDGE_FACTOR * r->model_ttft_p95_ms)) {
        st(&b->slow_until, 0);
        atomic_store_explicit(&b->heads, 0, memory_order_relaxed);
        st(&b->late_since, 0);
    }
}

bool lx_health_slow(const lx_health_t *h, size_t row, uint64_t now_ms)
{
    return row < h->n_rows && ld(&h->brk[row].slow_until) > now_ms;
}

void lx_health_breaker_get(const lx_health_t *h, size_t row, uint64_t now_ms,
                           lx_health_breaker_t *out)
{
    memset(out, 0, sizeof(*out));
    if (row >= h->n_rows)
        return;
    breaker_t *b = &h->brk[row];
    uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_acquire);
    if (ou == 0) {
        out->state = LX_HEALTH_CLOSED;
    } else if (now_ms < ou) {
        out->state = LX_HEALTH_OPEN;
        out->open_for_ms = ou - now_ms;
    } else {
        out->state = LX_HEALTH_HALF_OPEN;
        out->probe_in_flight = !probe_free(h, ld(&b->probe), now_ms);
    }
    out->consecutive_failures = atomic_load_explicit(&b->fails, memory_order_relaxed);
    uint64_t su = ld(&b->slow_until);
    out->slow_for_ms = su > now_ms ? su - now_ms : 0;
    out->ejections = ld(&b->ejections);
    uint64_t cu = ld(&b->cap_until);
    if (cu > now_ms) {
        out->cap = atomic_load_explicit(&b->cap, memory_order_relaxed);
        out->cap_for_ms = cu - now_ms;
    }
    uint64_t ra = ld(&b->retry_until);
    out->retry_after_ms = ra > now_ms ? ra - now_ms : 0;
}

/* ---- recording --------------------------------------------------------------------------- */

static unsigned hist_slot(const double *edges, double v)
{
    unsigned lo = 0, hi = LX_HEALTH_HIST_SLOTS - 1; /* largest i with edges[i] <= v */
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (edges[mid] <= v)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* The bucket of the period of <now_ms>, cleared first when it still holds an older period. */
static bucket_t *bucket_for(const lx_health_t *h, cell_t *c, uint64_t now_ms)
{
    uint64_t period = now_ms / h->bucket_ms;
    bucket_t *b = &c->ring[period % LX_HEALTH_BUCKETS];
    uint64_t stamp = period + 1, have = ld(&b->stamp);
    if (have >= stamp)
        return b; /* current (or, for a clock that stepped back, newer: count it there) */
    st(&b->stamp, STAMP_BUSY);
    atomic_thread_fence(memory_order_release);
    for (unsigned i = 0; i < LX_HEALTH_N_OUTCOMES; i++)
        atomic_store_explicit(&b->n[i], 0, memory_order_relaxed);
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        atomic_store_explicit(&b->ttft[i], 0, memory_order_relaxed);
        atomic_store_explicit(&b->tps[i], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&b->stamp, stamp, memory_order_release);
    return b;
}

void lx_health_record(lx_health_t *h, unsigned shard, size_t row, const lx_health_sample_t *s,
                      uint64_t now_ms)
{
    if (!h || shard >= h->n_shards || row >= h->n_rows || !s ||
        (unsigned)s->outcome >= LX_HEALTH_N_OUTCOMES)
        return;
    lx_health_outcome_t o = s->outcome;
    cell_t *c = &h->shards[shard][row];
    bucket_t *b = bucket_for(h, c, now_ms);
    bump32(&b->n[o]);
    bump64(&c->total[o]);
    breaker_t *brk = &h->brk[row];
    if (o == LX_HEALTH_OK) {
        if (s->ttfb_us > 0) {
            unsigned k = hist_slot(h->ttft_edges, (double)s->ttfb_us / 1000.0);
            bump32(&b->ttft[k]);
            bump32(&c->ttft_total[k]);
        }
        if (s->output_tokens > 0 && s->ttfb_us > 0 && s->total_us > s->ttfb_us) {
            double tps = (double)s->output_tokens * 1e6 / (double)(s->total_us - s->ttfb_us);
            bump32(&b->tps[hist_slot(h->tps_edges, tps)]);
        }
        on_success(brk, now_ms);
    } else if (lx_health_outcome_is_failure(o)) {
        on_failure(h, brk, now_ms);
    } else {
        if (o == LX_HEALTH_RATE_LIMIT)
            on_rate_limit(h, brk, row, s->retry_after_ms, now_ms);
        release_probe(brk, now_ms);
    }
}

void lx_health_inflight_add(lx_health_t *h, unsigned shard, size_t row, int delta)
{
    if (!h || shard >= h->n_shards || row >= h->n_rows)
        return;
    atomic_fetch_add_explicit(&h->shards[shard][row].in_flight, delta, memory_order_relaxed);
}

int64_t lx_health_in_flight(const lx_health_t *h, size_t row)
{
    int64_t sum = 0;
    if (row >= h->n_rows)
        return 0;
    for (unsigned s = 0; s < h->n_shards; s++)
        sum += atomic_load_explicit(&h->shards[s][row].in_flight, memory_order_relaxed);
    return sum;
}

void lx_health_totals(const lx_health_t *h, size_t row, uint64_t out[LX_HEALTH_N_OUTCOMES])
{
    memset(out, 0, sizeof(uint64_t) * LX_HEALTH_N_OUTCOMES);
    if (row >= h->n_rows)
        return;
    for (unsigned s = 0; s < h->n_shards; s++) {
        for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++)
            out[o] += ld(&h->shards[s][row].total[o]);
    }
}
