/*
 * health_score.c - the health table's re-scoring: the window's figures, the recent ones, the
 * demotion rules, the scores, and the snapshot they are published in (rules in health.h, on
 * lx_health_rescore()). Runs on one thread (the control thread); workers only read the
 * published snapshot.
 *
 * Flow of lx_health_rescore(): per row, gather (the live buckets of every shard) + fold_recent
 * (the cumulative counters' differences since the last re-scoring, decayed) ─> measure ─>
 * demote_success ─> demote_latency ─> score_of (rows kept) ─> neutral prior (rows without
 * data), model TTFT p95, log ─> publish (release store of the snapshot pointer; the replaced
 * snapshot's grace period begins). The scores are written into a spare snapshot whose grace
 * period has ended (spare()): a reader may still hold the others.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "route/health_internal.h"

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
            if (!lx_health_read_bucket(&h->shards[s][row].ring[k], &stamp, n, ttft, tps))
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
    lx_health_neutral_score(r);
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

/* Folds the attempts row <row> recorded since the last re-scoring into its recent counts,
 * after decaying those by <f>; the interval's own TTFT geometric mean goes to agg.lat when it
 * has LX_HEALTH_SLOW_FRESH_N samples. */
static void fold_recent(lx_health_t *h, size_t row, double f)
{
    recent_t *rc = &h->rec[row];
    uint64_t tot[LX_HEALTH_N_OUTCOMES] = {0};
    uint32_t tt[LX_HEALTH_HIST_SLOTS] = {0};
    for (unsigned s = 0; s < h->n_shards; s++) {
        cell_t *c = &h->shards[s][row];
        for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++)
            tot[o] += lx_health_ld(&c->total[o]);
        for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++)
            tt[i] += atomic_load_explicit(&c->ttft_total[i], memory_order_relaxed);
    }
    for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++) {
        uint64_t d = tot[o] >= rc->seen[o] ? tot[o] - rc->seen[o] : 0;
        rc->n[o] = rc->n[o] * f + (double)d;
        rc->seen[o] = tot[o];
    }
    double *fresh = h->agg[row].fresh, fresh_n = 0;
    for (unsigned i = 0; i < LX_HEALTH_HIST_SLOTS; i++) {
        fresh[i] = (double)(uint32_t)(tt[i] - rc->seen_ttft[i]);
        fresh_n += fresh[i];
        rc->ttft[i] = rc->ttft[i] * f + fresh[i];
        rc->seen_ttft[i] = tt[i];
    }
    h->agg[row].lat_fresh = fresh_n >= LX_HEALTH_SLOW_FRESH_N;
    h->agg[row].lat = h->agg[row].lat_fresh ? geo_mean(fresh, h->ttft_edges) : -1;
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
    if (h->agg[row].lat < 0 && tn >= LX_HEALTH_SLOW_MIN_N)
        h->agg[row].lat = r->ttft_gm_ms; /* too few in the interval: the decayed figure */
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
        g->best_lo = g->best_gm = g->best_lat = g->best_tps = -1;
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

/* The model's best TTFT figures with those of row <a> (kept by the success rule). */
static void keep_best_ttft(agg_t *g, const agg_t *a, const lx_health_score_t *r)
{
    if (r->ttft_gm_ms > 0 && a->ttft_n >= LX_HEALTH_SLOW_MIN_N &&
        (g->best_gm < 0 || r->ttft_gm_ms < g->best_gm))
        g->best_gm = r->ttft_gm_ms;
    if (a->lat > 0 && (g->best_lat < 0 || a->lat < g->best_lat))
        g->best_lat = a->lat;
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
    else
        keep_best_ttft(g, &h->agg[i], r);
}

/* Pass 3: the latency rule (see health.h); the rows kept add their TTFT to the model's. */
static void demote_latency(lx_health_t *h, size_t i, const lx_health_score_t *old,
                           lx_health_score_t *r)
{
    agg_t *g = &h->agg[h->group[i]];
    if (!r->has_data || r->demoted)
        return;
    double lat = h->agg[i].lat, best = g->best_lat;
    bool was = old->demoted == LX_HEALTH_DEMOTED_LATENCY;
    if (was && !(lat > 0)) { /* no figure: no sign of a recovery either */
        r->demoted = LX_HEALTH_DEMOTED_LATENCY;
        return;
    }
    if (lat > 0 && best > 0 && lat - best > LX_HEALTH_SLOW_MIN_MS &&
        lat > (was ? LX_HEALTH_SLOW_READMIT_FACTOR : LX_HEALTH_SLOW_FACTOR) * best) {
        r->demoted = LX_HEALTH_DEMOTED_LATENCY;
        /* its TTFT memory restarts from the interval that showed the slow-down: the fast past
         * must not readmit it while the few exploration samples are all slow */
        if (!was && h->agg[i].lat_fresh)
            memcpy(h->rec[i].ttft, h->agg[i].fresh, sizeof(h->rec[i].ttft));
        return;
    }
    for (unsigned k = 0; k < LX_HEALTH_HIST_SLOTS; k++)
        g->model_ttft[k] += h->rec[i].ttft[k];
}

/* The snapshot to write the next scores into: not the published one <cur>, and out of its grace
 * period (opts.qsbr: every reader passed a quiescent point since it was replaced); of two, the
 * one replaced first. NULL when neither is. */
static snap_t *spare(lx_health_t *h, const snap_t *cur)
{
    snap_t *best = NULL;
    for (unsigned k = 0; k < SNAPSHOTS; k++) {
        snap_t *s = &h->snaps[k];
        if (s == cur || (best != NULL && best->grace <= s->grace))
            continue;
        if (h->opts.qsbr == NULL || lx_qsbr_passed(h->opts.qsbr, s->grace))
            best = s;
    }
    return best;
}

/* Publishes <next> in place of <old>, whose grace period begins. */
static void publish(lx_health_t *h, snap_t *old, snap_t *next)
{
    atomic_store_explicit(&h->cur, next, memory_order_release);
    h->replaced++;
    old->grace = h->opts.qsbr != NULL ? lx_qsbr_retire(h->opts.qsbr) : h->replaced;
}

bool lx_health_rescore(lx_health_t *h, uint64_t now_ms, void (*log)(void *arg, const char *line),
                       void *arg)
{
    snap_t *old = atomic_load_explicit(&h->cur, memory_order_relaxed); /* we published it */
    snap_t *next = spare(h, old);
    if (next == NULL)
        return false; /* a reader still holds both spares: try again at the next interval */
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
        lx_health_mark_rescored(h, i, r, now_ms);
        const lx_health_score_t *o = &old->rows[i];
        if (log && (fabs(r->score - o->score) > h->opts.log_epsilon || r->has_data != o->has_data ||
                    r->demoted != o->demoted))
            log_change(h, i, o, r, log, arg);
    }
    next->at_ms = now_ms;
    next->rescored = true;
    publish(h, old, next);
    return true;
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
