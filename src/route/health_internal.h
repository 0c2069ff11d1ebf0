/*
 * health_internal.h - the health table's private layout, shared by health.c (creation, the
 * breaker, recording) and health_score.c (re-scoring and the published snapshot). Not for
 * other modules: they use health.h.
 */
#ifndef LX_HEALTH_INTERNAL_H
#define LX_HEALTH_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>

#include "route/health.h"

#define STAMP_BUSY  UINT64_MAX
#define SNAPSHOTS   3 /* the published one and two spares: see lx_health_rescore() */
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
    /* Latency outlier marks (lx_health_head), on a line of their own: the line above is read
     * by every pick and kept read-mostly; these are written on a late head, a timely one after
     * late ones, and a timely one at most every LX_HEALTH_TIMELY_NOTE_MS. */
    alignas(64) _Atomic uint64_t slow_until; /* a latency outlier before this */
    _Atomic uint64_t late_since;             /* the current run of late heads began; 0: none */
    _Atomic uint64_t timely_at;              /* a timely head (noted to LX_HEALTH_TIMELY_NOTE_MS) */
    _Atomic int32_t heads; /* > 0: late heads in a row; < 0: timely ones (to -LATE_HEADS) */
} breaker_t;

typedef struct snap {
    uint64_t at_ms;
    bool rescored;  /* false: initial values, never computed by this table or its previous */
    uint64_t grace; /* control thread only: when it was replaced, its grace target (opts.qsbr's
                       lx_qsbr_retire(), or a count without one); 0: never published */
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
    double ttft_n;  /* recent OK attempts with a known first byte (decayed) */
    double lat;     /* the latency rule's TTFT figure, or -1 (health_score.c) */
    bool lat_fresh; /* lat is the last interval's own, whose histogram is fresh[] */
    double fresh[LX_HEALTH_HIST_SLOTS];
    double best_lo, best_gm, best_lat, best_tps, score_sum;
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
    uint64_t replaced;     /* snapshots replaced so far (the grace count without opts.qsbr) */
    _Atomic(snap_t *) cur; /* the published one of snaps */
};

static inline uint64_t lx_health_ld(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

/* Reads bucket <b> consistently into the out arrays; false when it is unused, being reset or
 * was rotated while being read. *stamp receives its stamp. */
bool lx_health_read_bucket(bucket_t *b, uint64_t *stamp, uint32_t n[LX_HEALTH_N_OUTCOMES],
                           uint32_t ttft[LX_HEALTH_HIST_SLOTS], uint32_t tps[LX_HEALTH_HIST_SLOTS]);

/* A row's values before any data: score PRIOR_SCORE, unknown figures -1. */
void lx_health_neutral_score(lx_health_score_t *s);

/* health.c: at a re-scoring, ends row <row>'s latency outlier mark when its new scores <r> take
 * over (demoted for latency) or show its recent heads timely. */
void lx_health_mark_rescored(lx_health_t *h, size_t row, const lx_health_score_t *r,
                             uint64_t now_ms);

#endif
