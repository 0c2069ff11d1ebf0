/*
 * health.c - the provider health table: recording, the circuit breaker, re-scoring.
 *
 * Owns, per row: one cell per shard (the window's ring of time buckets, cumulative counters,
 * in-flight count) written by that shard's worker only; one breaker shared by all shards; and
 * three score snapshots, of which the control thread publishes one per re-scoring.
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
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAMP_BUSY  UINT64_MAX
#define SNAPSHOTS   3  /* published, previous, the one before: see lx_health_scores() */
#define MAX_LEVEL   30 /* cooldown doublings are capped well before the shift overflows */
#define PRIOR_SCORE 0.5

/* Histogram slot i >= 1 covers [lo * r^(i-1), lo * r^i); slot 0 is below lo and the last slot
 * is everything from hi: TTFT 1 ms .. 60 s, throughput 1 .. 10,000 tokens/s. */
#define TTFT_LO_MS 1.0
#define TTFT_HI_MS 60000.0
#define TPS_LO     1.0
#define TPS_HI     10000.0

typedef struct bucket {
    _Atomic uint64_t stamp; /* period + 1 this bucket counts; 0: never used; STAMP_BUSY: reset */
    _Atomic uint32_t n[LX_HEALTH_N_OUTCOMES];
    _Atomic uint32_t ttft[LX_HEALTH_HIST_SLOTS]; /* OK attempts with a known first byte */
    _Atomic uint32_t tps[LX_HEALTH_HIST_SLOTS];  /* OK attempts with tokens and timings */
} bucket_t;

/* One row in one shard. Written by the shard's worker only (in_flight excepted). */
typedef struct cell {
    _Atomic int64_t in_flight;                         /* any thread may add */
    _Atomic uint64_t total[LX_HEALTH_N_OUTCOMES];      /* since start */
    _Atomic uint32_t ttft_total[LX_HEALTH_HIST_SLOTS]; /* since start, OK attempts; wraps (the
                                                          re-scoring takes differences) */
    bucket_t ring[LX_HEALTH_BUCKETS];                  /* period p lives in ring[p % BUCKETS] */
} cell_t;

/* A row's breaker, shared by every shard. Its own cache line: workers read it per request. */
typedef struct breaker {
    alignas(64) _Atomic uint64_t open_until; /* 0: closed; else open before it, half-open from */
    _Atomic uint64_t probe;                  /* 0: probe slot free; else admit time + 1 */
    _Atomic uint64_t retry_until;            /* no attempt before this (429 Retry-After) */
    _Atomic uint64_t cap_until;              /* a 429's concurrency cap applies before this */
    _Atomic uint32_t cap;                    /* in flight at that 429: at most cap - 1 more */
    _Atomic uint32_t fails;                  /* consecutive failures while closed */
    _Atomic uint32_t level;                  /* re-opens since the breaker last opened */
    _Atomic uint64_t ejections;              /* opens and re-opens since start */
} breaker_t;

typedef struct snap {
    uint64_t at_ms;
    bool rescored; /* false: initial values, never computed by this table or its previous */
    lx_health_score_t *rows;
} snap_t;

/* A row's recent figures (control thread only): every re-scoring folds the attempts recorded
 * since the previous one (differences of the cumulative counters) into counts that decay by
 * half every rescore_interval. */
typedef struct recent {
    uint64_t seen[LX_HEALTH_N_OUTCOMES]; /* the shards' totals at the last re-scoring */
    uint32_t seen_ttft[LX_HEALTH_HIST_SLOTS];
    double n[LX_HEALTH_N_OUTCOMES];    /* decayed attempts per outcome */
    double ttft[LX_HEALTH_HIST_SLOTS]; /* decayed TTFT histogram of OK attempts */
} recent_t;

/* Re-scoring scratch, per row (per model for the best_*, model_ttft and mean fields of a group
 * leader). */
typedef struct agg {
    uint64_t n[LX_HEALTH_N_OUTCOMES];
    double ttft[LX_HEALTH_HIST_SLOTS];
    double tps[LX_HEALTH_HIST_SLOTS];
    double ttft_n; /* recent OK attempts with a known first byte (decayed) */
    double best_lo, best_gm, best_tps, score_sum;
    double model_ttft[LX_HEALTH_HIST_SLOTS]; /* recent TTFT of the model's rows not demoted */
    size_t scored;
} agg_t;

struct lx_health {
    lx_health_opts_t opts;
    uint64_t bucket_ms;
    size_t n_rows;
    unsigned n_shards;
    lx_health_row_key_t *keys;
    char *key_bytes;
    size_t *group; /* the first row with the same model id */
    breaker_t *brk;
    cell_t **shards; /* shards[s][row] */
    agg_t *agg;
    recent_t *rec;      /* control thread only */
    uint64_t rec_at_ms; /* when rec was last folded */
    bool rec_started;
    double ttft_edges[LX_HEALTH_HIST_SLOTS]; /* lower bound of each slot, ms */
    double tps_edges[LX_HEALTH_HIST_SLOTS];
    snap_t snaps[SNAPSHOTS];
    unsigned gen; /* snaps[gen % SNAPSHOTS] is published; control thread only */
    _Atomic(snap_t *) cur;
};

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

static void neutral_score(lx_health_score_t *s)
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

/* Reads bucket <b> consistently into the out arrays; false when it is unused, being reset or
 * was rotated while being read. *stamp receives its stamp. */
static bool read_bucket(bucket_t *b, uint64_t *stamp, uint32_t n[LX_HEALTH_N_OUTCOMES],
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
            if (!read_bucket(&c->ring[k], &stamp, n, ttft, tps))
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
        neutral_score(&first->rows[i]);
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

/* ---- re-scoring -------------------------------------------------------------------------- */

/* The q-quantile of histogram <c> (slot lower bounds <edges>, last slot reported at its lower
 * bound), interpolated geometrically within the slot; -1 when empty. */
static double quantile(const double *c, const double *edges, double q)
{
    double n = 0;
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++)
        n += c[i];
    if (!(n > 0))
        return -1;
    double target = q * n, cum = 0;
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        if (!(c[i] > 0) || cum + c[i] < target) {
            cum += c[i];
            continue;
        }
        double frac = (target - cum) / c[i];
        if (i == LX_HEALTH_HIST_SLOTS - 1)
            return edges[i];
        if (i == 0)
            return edges[1] * frac;
        return edges[i] * pow(edges[i + 1] / edges[i], frac);
    }
    return edges[LX_HEALTH_HIST_SLOTS - 1];
}

/* Sums row <row>'s live buckets of every shard into h->agg[row]. */
static void gather(lx_health_t *h, size_t row, uint64_t now_ms)
{
    agg_t *a = &h->agg[row];
    uint64_t period = now_ms / h->bucket_ms;
    uint32_t n[LX_HEALTH_N_OUTCOMES], ttft[LX_HEALTH_HIST_SLOTS], tps[LX_HEALTH_HIST_SLOTS];
    memset(a, 0, sizeof(*a));
    for (unsigned s = 0; s < h->n_shards; s++) {
        for (unsigned k = 0; k < LX_HEALTH_BUCKETS; k++) {
            uint64_t stamp;
            if (!read_bucket(&h->shards[s][row].ring[k], &stamp, n, ttft, tps))
                continue;
            uint64_t p = stamp - 1;
            /* live: one of the last BUCKETS periods; one ahead tolerates a worker's clock */
            if (p + LX_HEALTH_BUCKETS <= period || p > period + 1)
                continue;
            for (unsigned i = 0; i < LX_HEALTH_N_OUTCOMES; i++)
                a->n[i] += n[i];
            for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
                a->ttft[i] += ttft[i];
                a->tps[i] += tps[i];
            }
        }
    }
}

static uint64_t failures(const uint64_t *n)
{
    return n[LX_HEALTH_CONNECT] + n[LX_HEALTH_TIMEOUT] + n[LX_HEALTH_SERVER] +
           n[LX_HEALTH_BAD_RESPONSE];
}

static double failures_d(const double *n)
{
    return n[LX_HEALTH_CONNECT] + n[LX_HEALTH_TIMEOUT] + n[LX_HEALTH_SERVER] +
           n[LX_HEALTH_BAD_RESPONSE];
}

/* The window statistics of one row (score left for the normalisation pass). */
static void measure(const lx_health_t *h, const agg_t *a, lx_health_score_t *r)
{
    neutral_score(r);
    uint64_t ok = a->n[LX_HEALTH_OK], fail = failures(a->n), rl = a->n[LX_HEALTH_RATE_LIMIT];
    for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++) {
        r->count[o] = a->n[o];
        if (o != LX_HEALTH_CANCELED && o != LX_HEALTH_GATEWAY_LIMIT)
            r->requests += a->n[o]; /* (the endpoint never saw these) */
    }
    r->has_data = ok + fail + rl > 0;
    if (ok + fail > 0)
        r->success_rate = (double)ok / (double)(ok + fail);
    if (ok + fail + rl > 0)
        r->rate_limit_rate = (double)rl / (double)(ok + fail + rl);
    r->ttft_p50_ms = quantile(a->ttft, h->ttft_edges, 0.5);
    r->ttft_p90_ms = quantile(a->ttft, h->ttft_edges, 0.9);
    r->tps_p50 = quantile(a->tps, h->tps_edges, 0.5);
}

/* Folds the attempts row <row> recorded since the last re-scoring into its recent counts,
 * after decaying those by <f>. */
static void fold_recent(lx_health_t *h, size_t row, double f)
{
    recent_t *rc = &h->rec[row];
    uint64_t tot[LX_HEALTH_N_OUTCOMES] = {0};
    uint32_t tt[LX_HEALTH_HIST_SLOTS] = {0};
    for (unsigned s = 0; s < h->n_shards; s++) {
        cell_t *c = &h->shards[s][row];
        for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++)
            tot[o] += ld(&c->total[o]);
        for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++)
            tt[i] += atomic_load_explicit(&c->ttft_total[i], memory_order_relaxed);
    }
    for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++) {
        uint64_t d = tot[o] >= rc->seen[o] ? tot[o] - rc->seen[o] : 0;
        rc->n[o] = rc->n[o] * f + (double)d;
        rc->seen[o] = tot[o];
    }
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        rc->ttft[i] = rc->ttft[i] * f + (double)(uint32_t)(tt[i] - rc->seen_ttft[i]);
        rc->seen_ttft[i] = tt[i];
    }
}

/* The Wilson score interval of <ok> successes in <n> (> 0) trials at z = LX_HEALTH_WILSON_Z. */
static void wilson(double ok, double n, double *lo, double *hi)
{
    const double z = LX_HEALTH_WILSON_Z, z2 = z * z;
    double p = ok / n, den = 1 + z2 / n;
    double c = (p + z2 / (2 * n)) / den;
    double w = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den;
    *lo = c - w > 0 ? c - w : 0;
    *hi = c + w < 1 ? c + w : 1;
}

/* The geometric mean of histogram <c> (each slot at its geometric middle; slot 0 at half the
 * first edge, the last at its lower edge), or -1 when empty. */
static double geo_mean(const double *c, const double *edges)
{
    double n = 0, sum = 0;
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        if (!(c[i] > 0))
            continue;
        double mid = i == 0                          ? edges[1] / 2
                     : i == LX_HEALTH_HIST_SLOTS - 1 ? edges[i]
                                                     : sqrt(edges[i] * edges[i + 1]);
        n += c[i];
        sum += c[i] * log(mid);
    }
    return n > 0 ? exp(sum / n) : -1;
}

/* The recent figures of row <row> into <r> and h->agg[row].ttft_n. */
static void measure_recent(lx_health_t *h, size_t row, lx_health_score_t *r)
{
    const recent_t *rc = &h->rec[row];
    double ok = rc->n[LX_HEALTH_OK], judged = ok + failures_d(rc->n);
    r->recent_n = judged;
    if (judged > 0) {
        r->recent_success = ok / judged;
        wilson(ok, judged, &r->success_low, &r->success_high);
    }
    double tn = 0;
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++)
        tn += rc->ttft[i];
    h->agg[row].ttft_n = tn;
    r->ttft_gm_ms = geo_mean(rc->ttft, h->ttft_edges);
    r->ttft_p95_ms = quantile(rc->ttft, h->ttft_edges, 0.95);
}

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double score_of(const lx_health_t *h, size_t row, const agg_t *g, const lx_health_score_t *r)
{
    const recent_t *rc = &h->rec[row];
    double ok = rc->n[LX_HEALTH_OK], fail = failures_d(rc->n);
    double s = (ok + 1.8) / (ok + fail + 2.0);
    double l = 0.5, t = 0.5;
    if (r->ttft_gm_ms > 0 && g->best_gm > 0)
        l = g->best_gm / r->ttft_gm_ms;
    if (r->tps_p50 > 0 && g->best_tps > 0)
        t = r->tps_p50 / g->best_tps;
    double rl = r->rate_limit_rate > 0 ? r->rate_limit_rate : 0;
    return clamp01(s * s * (0.15 + 0.85 * clamp01(l)) * (0.6 + 0.4 * clamp01(t)) * (1 - 0.5 * rl));
}

static void log_change(const lx_health_t *h, size_t row, const lx_health_score_t *old,
                       const lx_health_score_t *r, void (*log)(void *, const char *), void *arg)
{
    char line[1024], succ[16], ttft[32], rl[16];
    const lx_health_row_key_t *k = &h->keys[row];
    if (r->success_rate >= 0)
        snprintf(succ, sizeof(succ), "%.0f%%", r->success_rate * 100);
    else
        snprintf(succ, sizeof(succ), "n/a");
    if (r->ttft_p50_ms >= 0)
        snprintf(ttft, sizeof(ttft), "%.0f ms", r->ttft_p50_ms);
    else
        snprintf(ttft, sizeof(ttft), "n/a");
    if (r->rate_limit_rate >= 0)
        snprintf(rl, sizeof(rl), "%.0f%%", r->rate_limit_rate * 100);
    else
        snprintf(rl, sizeof(rl), "n/a");
    snprintf(line, sizeof(line),
             "health: %s %s %s: score %.2f -> %.2f (success %s, ttft p50 %s, 429 %s)%s%s%s",
             k->model, k->provider, k->endpoint, old->score, r->score, succ, ttft, rl,
             r->has_data ? "" : " no data", r->demoted ? " demoted: " : "",
             r->demoted ? lx_health_demotion_name(r->demoted) : "");
    log(arg, line);
}

/* Pass 1 of a re-scoring: row <i>'s window and recent figures, and its model's best success
 * lower bound and throughput (the group leader, first of its model, resets them). */
static void rescore_measure(lx_health_t *h, size_t i, uint64_t now_ms, double f,
                            lx_health_score_t *r)
{
    agg_t *g = &h->agg[h->group[i]];
    gather(h, i, now_ms);
    fold_recent(h, i, f);
    measure(h, &h->agg[i], r);
    measure_recent(h, i, r);
    if (g == &h->agg[i]) {
        g->best_lo = g->best_gm = g->best_tps = -1;
        g->score_sum = 0;
        g->scored = 0;
        memset(g->model_ttft, 0, sizeof(g->model_ttft));
    }
    if (!r->has_data)
        return;
    if (r->success_low > g->best_lo)
        g->best_lo = r->success_low;
    if (r->tps_p50 > g->best_tps)
        g->best_tps = r->tps_p50;
}

/* Pass 2: the success rule (see health.h), then the model's best TTFT among the rows it kept. */
static void demote_success(lx_health_t *h, size_t i, const lx_health_score_t *old,
                           lx_health_score_t *r)
{
    agg_t *g = &h->agg[h->group[i]];
    if (!r->has_data || r->recent_success < 0)
        return;
    double bar = g->best_lo - LX_HEALTH_SUCCESS_MARGIN;
    if (r->success_high < bar ||
        (old->demoted == LX_HEALTH_DEMOTED_SUCCESS && r->recent_success < bar))
        r->demoted = LX_HEALTH_DEMOTED_SUCCESS;
    else if (r->ttft_gm_ms > 0 && h->agg[i].ttft_n >= LX_HEALTH_SLOW_MIN_N &&
             (g->best_gm < 0 || r->ttft_gm_ms < g->best_gm))
        g->best_gm = r->ttft_gm_ms;
}

/* Pass 3: the latency rule (see health.h); the rows kept add their TTFT to the model's. */
static void demote_latency(lx_health_t *h, size_t i, const lx_health_score_t *old,
                           lx_health_score_t *r)
{
    agg_t *g = &h->agg[h->group[i]];
    if (!r->has_data || r->demoted)
        return;
    double gm = r->ttft_gm_ms, best = g->best_gm;
    if (gm > 0 && best > 0 && gm - best > LX_HEALTH_SLOW_MIN_MS) {
        bool slow = gm > LX_HEALTH_SLOW_FACTOR * best && h->agg[i].ttft_n >= LX_HEALTH_SLOW_MIN_N;
        bool still =
            old->demoted == LX_HEALTH_DEMOTED_LATENCY && gm > LX_HEALTH_SLOW_READMIT_FACTOR * best;
        if (slow || still) {
            r->demoted = LX_HEALTH_DEMOTED_LATENCY;
            return;
        }
    }
    for (unsigned k = 0; k < LX_HEALTH_HIST_SLOTS; k++)
        g->model_ttft[k] += h->rec[i].ttft[k];
}

void lx_health_rescore(lx_health_t *h, uint64_t now_ms, void (*log)(void *arg, const char *line),
                       void *arg)
{
    snap_t *old = atomic_load_explicit(&h->cur, memory_order_relaxed); /* we published it */
    snap_t *next = &h->snaps[(h->gen + 1) % SNAPSHOTS];
    double f = 1;
    if (h->rec_started && now_ms > h->rec_at_ms)
        f = exp2(-(double)(now_ms - h->rec_at_ms) / (double)h->opts.rescore_interval_ms);
    for (size_t i = 0; i < h->n_rows; i++)
        rescore_measure(h, i, now_ms, f, &next->rows[i]);
    h->rec_at_ms = now_ms;
    h->rec_started = true;
    for (size_t i = 0; i < h->n_rows; i++)
        demote_success(h, i, &old->rows[i], &next->rows[i]);
    for (size_t i = 0; i < h->n_rows; i++)
        demote_latency(h, i, &old->rows[i], &next->rows[i]);
    for (size_t i = 0; i < h->n_rows; i++) {
        lx_health_score_t *r = &next->rows[i];
        agg_t *g = &h->agg[h->group[i]];
        if (!r->has_data || r->demoted)
            continue; /* demoted: score 0, the router's exploration share */
        r->score = score_of(h, i, g, r);
        g->score_sum += r->score;
        g->scored++;
    }
    for (size_t i = 0; i < h->n_rows; i++) {
        lx_health_score_t *r = &next->rows[i];
        const agg_t *g = &h->agg[h->group[i]];
        if (r->demoted)
            r->score = 0;
        else if (!r->has_data) /* never below neutral: a failing sibling says nothing of it */
            r->score =
                g->scored > 0 ? fmax(PRIOR_SCORE, g->score_sum / (double)g->scored) : PRIOR_SCORE;
        r->model_ttft_p95_ms = quantile(g->model_ttft, h->ttft_edges, 0.95);
        const lx_health_score_t *o = &old->rows[i];
        if (log && (fabs(r->score - o->score) > h->opts.log_epsilon || r->has_data != o->has_data ||
                    r->demoted != o->demoted))
            log_change(h, i, o, r, log, arg);
    }
    next->at_ms = now_ms;
    next->rescored = true;
    h->gen++;
    atomic_store_explicit(&h->cur, next, memory_order_release);
}

const lx_health_score_t *lx_health_scores(const lx_health_t *h)
{
    return atomic_load_explicit(&h->cur, memory_order_acquire)->rows;
}

bool lx_health_last_rescore(const lx_health_t *h, uint64_t *at_ms)
{
    const snap_t *s = atomic_load_explicit(&h->cur, memory_order_acquire);
    if (at_ms)
        *at_ms = s->at_ms;
    return s->rescored;
}
