/*
 * test_health.c - the provider health table without a loop: the breaker's transitions
 * (exactly N failures, doubling and cap, one half-open probe, lost probes), retry-after
 * blocks, re-scoring (counts, rates, percentiles, throughput, normalisation within a model,
 * neutral prior, window expiry), carry-over across tables, the change log, the JSON and
 * metrics renderings, the score snapshots' grace period (core/qsbr.h), and two writer threads
 * recording and holding scores while a third re-scores.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "route/health.h"
#include "route/health_internal.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))
#define NONE                   ((size_t)-1)

static const lx_health_row_key_t KEYS[] = {
    {"local", "http://127.0.0.1:8000", "m"}, {"remote", "https://api.example.com/v1", "m"},
    {"other", "http://10.0.0.1:8000", "n"},  {"spare", "http://127.0.0.1:8001", "m"},
    {"lone", "http://127.0.0.1:9000", "z"},
};

static lx_health_opts_t opts_small(void)
{
    lx_health_opts_t o;
    lx_health_opts_init(&o);
    o.breaker_failures = 5;
    o.breaker_cooldown_ms = 10000;
    o.breaker_max_cooldown_ms = 45000;
    o.probe_timeout_ms = 30000;
    return o;
}

static lx_health_t *table(const lx_health_opts_t *o, size_t n, unsigned shards)
{
    lx_health_t *h = lx_health_new(o, KEYS, n, shards, NULL);
    assert_non_null(h);
    return h;
}

static void rec(lx_health_t *h, size_t row, lx_health_outcome_t o, uint64_t now)
{
    lx_health_sample_t s = {o, 0, 0, -1, 0};
    lx_health_record(h, 0, row, &s, now);
}

static void rec_ok(lx_health_t *h, size_t row, uint64_t ttfb_ms, int64_t tokens, double tps,
                   uint64_t now)
{
    lx_health_sample_t s = {LX_HEALTH_OK, ttfb_ms * 1000, 0, tokens, 0};
    if (tokens > 0)
        s.total_us = s.ttfb_us + (uint64_t)((double)tokens / tps * 1e6);
    lx_health_record(h, 0, row, &s, now);
}

static lx_health_breaker_state_t state(lx_health_t *h, size_t row, uint64_t now)
{
    lx_health_breaker_t b;
    lx_health_breaker_get(h, row, now, &b);
    return b.state;
}

static void test_defaults_and_keys(void **st)
{
    (void)st;
    lx_health_t *h = lx_health_new(NULL, KEYS, 3, 2, NULL);
    assert_non_null(h);
    const lx_health_opts_t *o = lx_health_opts(h);
    assert_int_equal(o->window_ms, 15 * 60 * 1000);
    assert_int_equal(o->rescore_interval_ms, 5 * 60 * 1000);
    assert_int_equal(o->breaker_failures, 5);
    assert_int_equal(o->breaker_cooldown_ms, 10000);
    assert_int_equal(o->breaker_max_cooldown_ms, 300000);
    assert_near(o->exploration, 0.02, 1e-12);
    assert_int_equal(lx_health_rows(h), 3);
    const lx_health_row_key_t *k = lx_health_row_key(h, 1);
    assert_string_equal(k->provider, "remote");
    assert_string_equal(k->endpoint, "https://api.example.com/v1");
    assert_string_equal(k->model, "m");
    assert_true(k->provider != KEYS[1].provider); /* copied */
    assert_null(lx_health_row_key(h, 3));
    assert_int_equal(lx_health_find(h, "other", "http://10.0.0.1:8000", "n"), 2);
    assert_true(lx_health_find(h, "other", "http://10.0.0.1:8000", "m") == NONE);
    const lx_health_score_t *s = lx_health_scores(h);
    assert_near(s[0].score, 0.5, 1e-12);
    assert_false(s[0].has_data);
    assert_true(s[0].success_rate < 0);
    assert_false(lx_health_last_rescore(h, NULL));
    assert_string_equal(lx_health_outcome_name(LX_HEALTH_BAD_RESPONSE), "bad_response");
    assert_string_equal(lx_health_outcome_name(LX_HEALTH_N_OUTCOMES), "unknown");
    assert_null(lx_health_new(NULL, KEYS, 3, 0, NULL));
    /* out-of-range shard, row and outcome are ignored */
    lx_health_sample_t bad = {LX_HEALTH_N_OUTCOMES, 0, 0, -1, 0};
    lx_health_record(h, 0, 0, &bad, 0);
    bad.outcome = LX_HEALTH_OK;
    lx_health_record(h, 2, 0, &bad, 0);
    lx_health_record(h, 0, 3, &bad, 0);
    uint64_t t[LX_HEALTH_N_OUTCOMES];
    lx_health_totals(h, 0, t);
    for (unsigned i = 0; i < LX_HEALTH_N_OUTCOMES; i++)
        assert_int_equal(t[i], 0);
    lx_health_free(h);
    lx_health_free(NULL);
}

static void test_breaker_exactly_n(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *h = table(&o, 2, 1);
    lx_health_breaker_t b;
    for (int i = 0; i < 4; i++)
        rec(h, 0, LX_HEALTH_CONNECT, 100);
    lx_health_breaker_get(h, 0, 100, &b);
    assert_int_equal(b.state, LX_HEALTH_CLOSED);
    assert_int_equal(b.consecutive_failures, 4);
    rec(h, 0, LX_HEALTH_OK, 100); /* a success in between resets */
    lx_health_breaker_get(h, 0, 100, &b);
    assert_int_equal(b.consecutive_failures, 0);
    rec(h, 0, LX_HEALTH_TIMEOUT, 200);
    rec(h, 0, LX_HEALTH_SERVER, 200);
    rec(h, 0, LX_HEALTH_BAD_RESPONSE, 200);
    rec(h, 0, LX_HEALTH_CONNECT, 200);
    assert_true(lx_health_available(h, 0, 200));
    assert_true(lx_health_admit(h, 0, 200));
    assert_int_equal(state(h, 0, 200), LX_HEALTH_CLOSED); /* N-1 */
    rec(h, 0, LX_HEALTH_SERVER, 300);                     /* N */
    lx_health_breaker_get(h, 0, 300, &b);
    assert_int_equal(b.state, LX_HEALTH_OPEN);
    assert_int_equal(b.ejections, 1);
    assert_int_equal(b.open_for_ms, 10000);
    assert_false(lx_health_available(h, 0, 300));
    assert_false(lx_health_admit(h, 0, 300));
    assert_false(lx_health_available(h, 0, 10299));
    /* stragglers while open move nothing */
    rec(h, 0, LX_HEALTH_OK, 5000);
    rec(h, 0, LX_HEALTH_CONNECT, 5000);
    lx_health_breaker_get(h, 0, 5000, &b);
    assert_int_equal(b.state, LX_HEALTH_OPEN);
    assert_int_equal(b.open_for_ms, 5300);
    assert_int_equal(b.ejections, 1);
    /* the other row is untouched */
    assert_true(lx_health_available(h, 1, 300));
    /* rate limits, client errors and cancels never open it */
    for (int i = 0; i < 20; i++) {
        rec(h, 1, LX_HEALTH_RATE_LIMIT, 400);
        rec(h, 1, LX_HEALTH_CLIENT, 400);
        rec(h, 1, LX_HEALTH_CANCELED, 400);
    }
    lx_health_breaker_get(h, 1, 400, &b);
    assert_int_equal(b.state, LX_HEALTH_CLOSED);
    assert_int_equal(b.consecutive_failures, 0);
    lx_health_free(h);
}

static void test_breaker_doubling_and_cap(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *h = table(&o, 1, 1);
    lx_health_breaker_t b;
    uint64_t now = 1000;
    for (int i = 0; i < 5; i++)
        rec(h, 0, LX_HEALTH_CONNECT, now);
    static const uint64_t want[] = {20000, 40000, 45000, 45000};
    uint64_t until = now + 10000;
    for (size_t k = 0; k < 4; k++) {
        assert_false(lx_health_available(h, 0, until - 1));
        now = until; /* cooldown over: half-open */
        assert_int_equal(state(h, 0, now), LX_HEALTH_HALF_OPEN);
        assert_true(lx_health_admit(h, 0, now));
        rec(h, 0, LX_HEALTH_TIMEOUT, now + 5); /* the probe fails: re-open, doubled */
        lx_health_breaker_get(h, 0, now + 5, &b);
        assert_int_equal(b.state, LX_HEALTH_OPEN);
        assert_int_equal(b.open_for_ms, want[k]);
        assert_int_equal(b.ejections, k + 2);
        until = now + 5 + want[k];
    }
    /* a successful probe closes it and resets the doubling */
    now = until;
    assert_true(lx_health_admit(h, 0, now));
    rec(h, 0, LX_HEALTH_OK, now);
    assert_int_equal(state(h, 0, now), LX_HEALTH_CLOSED);
    assert_true(lx_health_available(h, 0, now));
    for (int i = 0; i < 5; i++)
        rec(h, 0, LX_HEALTH_SERVER, now);
    lx_health_breaker_get(h, 0, now, &b);
    assert_int_equal(b.state, LX_HEALTH_OPEN);
    assert_int_equal(b.open_for_ms, 10000);
    lx_health_free(h);
}

static void test_half_open_one_probe(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *h = table(&o, 1, 2);
    lx_health_breaker_t b;
    for (int i = 0; i < 5; i++)
        rec(h, 0, LX_HEALTH_CONNECT, 0);
    uint64_t t = 10000;
    assert_true(lx_health_available(h, 0, t));
    assert_true(lx_health_admit(h, 0, t));
    /* exactly one: every further caller is refused while the probe runs */
    for (int i = 0; i < 10; i++) {
        assert_false(lx_health_admit(h, 0, t + (uint64_t)i));
        assert_false(lx_health_available(h, 0, t + (uint64_t)i));
    }
    lx_health_breaker_get(h, 0, t, &b);
    assert_true(b.probe_in_flight);
    /* a canceled probe frees the slot (recorded on another shard) */
    lx_health_sample_t c = {LX_HEALTH_CANCELED, 0, 0, -1, 0};
    lx_health_record(h, 1, 0, &c, t + 20);
    assert_int_equal(state(h, 0, t + 20), LX_HEALTH_HALF_OPEN);
    assert_true(lx_health_available(h, 0, t + 20));
    assert_true(lx_health_admit(h, 0, t + 20));
    assert_false(lx_health_admit(h, 0, t + 21));
    /* a probe whose outcome never comes expires after probe_timeout_ms */
    assert_false(lx_health_admit(h, 0, t + 20 + 29999));
    assert_true(lx_health_admit(h, 0, t + 20 + 30000));
    assert_false(lx_health_admit(h, 0, t + 20 + 30001));
    /* its success closes the breaker: everyone may go */
    rec(h, 0, LX_HEALTH_OK, t + 40000);
    assert_int_equal(state(h, 0, t + 40000), LX_HEALTH_CLOSED);
    for (int i = 0; i < 3; i++)
        assert_true(lx_health_admit(h, 0, t + 40000));
    lx_health_free(h);
}

static void test_retry_after(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *h = table(&o, 2, 1);
    lx_health_sample_t s = {LX_HEALTH_RATE_LIMIT, 0, 0, -1, 2000};
    lx_health_record(h, 0, 0, &s, 1000);
    lx_health_breaker_t b;
    lx_health_breaker_get(h, 0, 1500, &b);
    assert_int_equal(b.retry_after_ms, 1500);
    assert_int_equal(b.state, LX_HEALTH_CLOSED);
    assert_false(lx_health_available(h, 0, 1000));
    assert_false(lx_health_admit(h, 0, 2999));
    assert_true(lx_health_available(h, 1, 2000)); /* another row is free */
    /* a shorter block never shortens a longer one */
    s.retry_after_ms = 100;
    lx_health_record(h, 0, 0, &s, 1200);
    assert_false(lx_health_available(h, 0, 2999));
    assert_true(lx_health_available(h, 0, 3000));
    assert_true(lx_health_admit(h, 0, 3000));
    lx_health_breaker_get(h, 0, 3000, &b);
    assert_int_equal(b.retry_after_ms, 0);
    /* a 429 with no Retry-After blocks nothing */
    s.retry_after_ms = 0;
    lx_health_record(h, 0, 1, &s, 4000);
    assert_true(lx_health_available(h, 1, 4000));
    lx_health_free(h);
}

/* Latency outliers between re-scorings: three late heads in a row mark a row slow for the
 * re-scoring interval (1 s at least) when a peer of its model had a timely head meanwhile; a
 * timely head breaks the run, three timely heads lift the mark, the mark ends by itself and
 * at a re-scoring whose data takes over; every row late at once, or a model of one row, marks
 * nothing. (KEYS: rows 0, 1 and 3 serve model m, 4 alone serves z.) */
static void test_late_heads(void **st)
{
    (void)st;
    lx_health_opts_t o;
    lx_health_opts_init(&o);
    o.rescore_interval_ms = 5000;
    lx_health_t *h = lx_health_new(&o, KEYS, 5, 2, NULL);
    assert_non_null(h);
    lx_health_head(h, 1, false, 90); /* (a peer answers in time) */
    lx_health_head(h, 0, true, 100);
    lx_health_head(h, 0, true, 110);
    lx_health_head(h, 0, false, 120); /* (breaks the run) */
    lx_health_head(h, 0, true, 130);
    lx_health_head(h, 0, true, 140);
    assert_false(lx_health_slow(h, 0, 150));
    lx_health_head(h, 0, true, 150);
    assert_true(lx_health_slow(h, 0, 150));
    assert_false(lx_health_slow(h, 1, 150)); /* (other rows untouched) */
    lx_health_breaker_t b;
    lx_health_breaker_get(h, 0, 1150, &b);
    assert_int_equal(b.slow_for_ms, 4000);
    assert_true(lx_health_slow(h, 0, 5149));
    assert_false(lx_health_slow(h, 0, 5150)); /* ends by itself */
    /* a new run after it ran out: three late heads again, not one */
    lx_health_head(h, 1, false, 6000);
    lx_health_head(h, 0, true, 6000);
    assert_false(lx_health_slow(h, 0, 6001));
    lx_health_head(h, 0, true, 6000);
    lx_health_head(h, 0, true, 6000);
    assert_true(lx_health_slow(h, 0, 6001));
    /* timely heads lift it after three in a row */
    lx_health_head(h, 0, false, 6010);
    lx_health_head(h, 0, false, 6020);
    assert_true(lx_health_slow(h, 0, 6030));
    lx_health_head(h, 0, false, 6030);
    assert_false(lx_health_slow(h, 0, 6031));
    /* a re-scoring whose data demotes it for latency ends the mark */
    for (int i = 0; i < 3; i++)
        lx_health_head(h, 0, true, 7000);
    lx_health_head(h, 1, false, 7000);
    lx_health_head(h, 0, true, 7000);
    assert_true(lx_health_slow(h, 0, 7001));
    lx_health_score_t sc = {
        .demoted = LX_HEALTH_NOT_DEMOTED, .ttft_p95_ms = 900, .model_ttft_p95_ms = 100};
    lx_health_mark_rescored(h, 0, &sc, 7100); /* (still slow by its data: kept) */
    assert_true(lx_health_slow(h, 0, 7101));
    sc.demoted = LX_HEALTH_DEMOTED_LATENCY;
    lx_health_mark_rescored(h, 0, &sc, 7100);
    assert_false(lx_health_slow(h, 0, 7101));
    lx_health_head(h, 99, true, 7200); /* (no such row: ignored) */
    assert_false(lx_health_slow(h, 99, 7200));
    lx_health_free(h);

    /* every row of m late at once (a stall of llmux's own loop), and z's only row: nothing */
    h = lx_health_new(&o, KEYS, 5, 1, NULL);
    assert_non_null(h);
    for (int i = 0; i < 5; i++) {
        lx_health_head(h, 0, true, 100);
        lx_health_head(h, 1, true, 100);
        lx_health_head(h, 3, true, 100);
        lx_health_head(h, 4, true, 100);
    }
    for (size_t row = 0; row < 5; row++)
        assert_false(lx_health_slow(h, row, 101));
    lx_health_free(h);

    /* a short re-scoring interval: the mark holds 1 s */
    o.rescore_interval_ms = 200;
    h = lx_health_new(&o, KEYS, 5, 1, NULL);
    assert_non_null(h);
    lx_health_head(h, 3, false, 0);
    for (int i = 0; i < 3; i++)
        lx_health_head(h, 1, true, 0);
    assert_true(lx_health_slow(h, 1, 999));
    assert_false(lx_health_slow(h, 1, 1000));
    lx_health_free(h);
}

static void test_concurrency_cap(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *h = table(&o, 2, 2);
    /* four attempts running (over two shards) when the endpoint refuses a fifth with
     * Retry-After: 1: it stays available below four in flight, for a second */
    for (int i = 0; i < 4; i++)
        lx_health_inflight_add(h, (unsigned)(i % 2), 0, 1);
    lx_health_sample_t s = {LX_HEALTH_RATE_LIMIT, 0, 0, -1, 1000};
    lx_health_record(h, 0, 0, &s, 1000);
    lx_health_breaker_t b;
    lx_health_breaker_get(h, 0, 1200, &b);
    assert_int_equal(b.cap, 4);
    assert_int_equal(b.cap_for_ms, 800);
    assert_int_equal(b.retry_after_ms, 0);
    assert_false(lx_health_available(h, 0, 1200));
    assert_false(lx_health_admit(h, 0, 1200));
    lx_health_inflight_add(h, 1, 0, -1); /* one ends: room for one */
    assert_true(lx_health_available(h, 0, 1200));
    assert_true(lx_health_admit(h, 0, 1200));
    lx_health_inflight_add(h, 0, 0, 1);
    assert_false(lx_health_available(h, 0, 1500));
    assert_true(lx_health_available(h, 0, 2000)); /* the cap lapsed */
    /* a later 429 at fewer in flight lowers it; one at more does not raise it */
    lx_health_inflight_add(h, 0, 0, -2); /* 2 in flight */
    lx_health_record(h, 0, 0, &s, 2000);
    lx_health_inflight_add(h, 0, 0, 1); /* 3 */
    lx_health_record(h, 0, 0, &s, 2100);
    lx_health_breaker_get(h, 0, 2100, &b);
    assert_int_equal(b.cap, 2);
    assert_false(lx_health_available(h, 0, 2100));
    /* with nothing else in flight, or a long Retry-After, it is a block */
    lx_health_record(h, 0, 1, &s, 3000);
    lx_health_breaker_get(h, 1, 3000, &b);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.retry_after_ms, 1000);
    assert_false(lx_health_available(h, 1, 3500));
    lx_health_inflight_add(h, 0, 1, 3);
    s.retry_after_ms = 30000;
    lx_health_record(h, 0, 1, &s, 5000);
    lx_health_breaker_get(h, 1, 5000, &b);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.retry_after_ms, 30000);
    lx_health_free(h);
}

static void test_rescore_stats(void **st)
{
    (void)st;
    lx_health_t *h = table(NULL, 1, 1);
    uint64_t now = 1000;
    for (int i = 0; i < 50; i++)
        rec_ok(h, 0, 100, 100, 50.0, now);
    for (int i = 0; i < 30; i++)
        rec_ok(h, 0, 1000, 100, 50.0, now);
    for (int i = 0; i < 20; i++)
        rec(h, 0, i % 2 ? LX_HEALTH_SERVER : LX_HEALTH_TIMEOUT, now);
    for (int i = 0; i < 10; i++)
        rec(h, 0, LX_HEALTH_RATE_LIMIT, now);
    for (int i = 0; i < 5; i++)
        rec(h, 0, LX_HEALTH_CLIENT, now);
    for (int i = 0; i < 3; i++)
        rec(h, 0, LX_HEALTH_CANCELED, now);
    lx_health_rescore(h, 2000, NULL, NULL);
    uint64_t at;
    assert_true(lx_health_last_rescore(h, &at));
    assert_int_equal(at, 2000);
    const lx_health_score_t *r = &lx_health_scores(h)[0];
    assert_true(r->has_data);
    assert_int_equal(r->requests, 80 + 20 + 10 + 5);
    assert_int_equal(r->count[LX_HEALTH_OK], 80);
    assert_int_equal(r->count[LX_HEALTH_SERVER], 10);
    assert_int_equal(r->count[LX_HEALTH_TIMEOUT], 10);
    assert_int_equal(r->count[LX_HEALTH_CANCELED], 3);
    assert_near(r->success_rate, 0.8, 1e-12);
    assert_near(r->rate_limit_rate, 10.0 / 110.0, 1e-12);
    /* percentiles land within one log-scale slot (ratio < 1.45) of the true value */
    assert_true(r->ttft_p50_ms > 100 / 1.45 && r->ttft_p50_ms < 100 * 1.45);
    assert_true(r->ttft_p90_ms > 1000 / 1.45 && r->ttft_p90_ms < 1000 * 1.45);
    assert_true(r->tps_p50 > 50 / 1.36 && r->tps_p50 < 50 * 1.36);
    /* 20% failures: about 0.64 of a perfect row (S^2, 429s at 9%) */
    assert_true(r->score > 0.55 && r->score < 0.7);
    uint64_t t[LX_HEALTH_N_OUTCOMES];
    lx_health_totals(h, 0, t);
    assert_int_equal(t[LX_HEALTH_OK], 80);
    assert_int_equal(t[LX_HEALTH_CANCELED], 3);
    lx_health_free(h);
}

static void test_percentile_precision(void **st)
{
    (void)st;
    /* one value at a time: the median of identical samples stays within its slot */
    static const uint64_t ttfts[] = {2, 7, 33, 250, 1200, 9000, 45000};
    for (size_t k = 0; k < sizeof(ttfts) / sizeof(ttfts[0]); k++) {
        lx_health_t *h = table(NULL, 1, 1);
        for (int i = 0; i < 10; i++)
            rec_ok(h, 0, ttfts[k], 0, 0, 0);
        lx_health_rescore(h, 0, NULL, NULL);
        double p50 = lx_health_scores(h)[0].ttft_p50_ms;
        assert_true(p50 > (double)ttfts[k] / 1.45 && p50 < (double)ttfts[k] * 1.45);
        assert_true(lx_health_scores(h)[0].tps_p50 < 0); /* no tokens: unknown */
        lx_health_free(h);
    }
    /* a spread: p90 above p50 */
    lx_health_t *h = table(NULL, 1, 1);
    for (uint64_t v = 1; v <= 100; v++)
        rec_ok(h, 0, v * 10, 0, 0, 0);
    lx_health_rescore(h, 0, NULL, NULL);
    const lx_health_score_t *r = &lx_health_scores(h)[0];
    assert_true(r->ttft_p50_ms > 500 / 1.45 && r->ttft_p50_ms < 500 * 1.45);
    assert_true(r->ttft_p90_ms > 900 / 1.45 && r->ttft_p90_ms < 900 * 1.45);
    assert_true(r->ttft_p90_ms > r->ttft_p50_ms);
    lx_health_free(h);
}

static double expected_score(double ok, double fail, double l, double t, double rl)
{
    return pow((ok + 1.8) / (ok + fail + 2), 2) * (0.15 + 0.85 * l) * (0.6 + 0.4 * t) *
           (1 - 0.5 * rl);
}

static void test_normalisation_and_prior(void **st)
{
    (void)st;
    /* rows 0,1,3 serve model m; row 2 model n; row 4 model z */
    lx_health_t *h = table(NULL, 5, 1);
    for (int i = 0; i < 100; i++) {
        rec_ok(h, 0, 100, 200, 100.0, 0); /* fast */
        rec_ok(h, 1, 300, 200, 25.0, 0);  /* 3x slower first byte, 4x slower tokens */
        rec_ok(h, 2, 300, 200, 25.0, 0);  /* as slow, but alone for its model */
    }
    lx_health_rescore(h, 1000, NULL, NULL);
    const lx_health_score_t *s = lx_health_scores(h);
    assert_true(s[0].has_data && s[1].has_data && s[2].has_data);
    assert_false(s[3].has_data);
    assert_false(s[4].has_data);
    assert_true(s[0].score > s[1].score);
    /* each row is judged against its own model only: the lone slow row is its model's best */
    assert_near(s[2].score, s[0].score, 1e-9);
    assert_near(s[0].score, expected_score(100, 0, 1, 1, 0), 1e-9);
    /* (three times slower: a lower score, not a demotion) */
    assert_int_equal(s[1].demoted, LX_HEALTH_NOT_DEMOTED);
    double l = s[0].ttft_gm_ms / s[1].ttft_gm_ms;
    double t = s[1].tps_p50 / s[0].tps_p50;
    assert_near(l, 1.0 / 3, 0.1);
    assert_near(t, 0.25, 0.1);
    assert_near(s[1].score, expected_score(100, 0, l, t, 0), 1e-9);
    /* no data: the mean of its model's rows, or 0.5 when the model has none */
    assert_near(s[3].score, (s[0].score + s[1].score) / 2, 1e-9);
    assert_true(s[3].score > 0.5);
    assert_near(s[4].score, 0.5, 1e-12);
    assert_true(s[3].success_rate < 0 && s[3].ttft_p50_ms < 0 && s[3].tps_p50 < 0);

    /* a fast row failing 10% (one quick retry each time) still beats one three times
     * slower on every request; failing 60%, it is demoted (score 0) */
    for (int i = 0; i < 12; i++)
        rec(h, 0, LX_HEALTH_SERVER, 1000);
    lx_health_rescore(h, 2000, NULL, NULL);
    s = lx_health_scores(h);
    assert_true(s[0].score > s[1].score);
    for (int i = 0; i < 138; i++)
        rec(h, 0, LX_HEALTH_SERVER, 1000);
    lx_health_rescore(h, 3000, NULL, NULL);
    s = lx_health_scores(h);
    assert_true(s[0].score < s[1].score);
    assert_int_equal(s[0].demoted, LX_HEALTH_DEMOTED_SUCCESS);
    lx_health_free(h);
}

static void test_window_expiry(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    o.window_ms = 15000; /* buckets of 1 s */
    lx_health_t *h = table(&o, 1, 1);
    for (int i = 0; i < 10; i++)
        rec(h, 0, LX_HEALTH_SERVER, 500);
    rec(h, 0, LX_HEALTH_OK, 3500);
    lx_health_rescore(h, 14999, NULL, NULL);
    assert_int_equal(lx_health_scores(h)[0].requests, 11);
    lx_health_rescore(h, 15000, NULL, NULL); /* the first bucket left the window */
    const lx_health_score_t *r = &lx_health_scores(h)[0];
    assert_int_equal(r->requests, 1);
    assert_near(r->success_rate, 1.0, 1e-12);
    lx_health_rescore(h, 18000, NULL, NULL); /* everything left: neutral again */
    r = &lx_health_scores(h)[0];
    assert_int_equal(r->requests, 0);
    assert_false(r->has_data);
    assert_near(r->score, 0.5, 1e-12);
    /* a ring slot reused by a later period starts from zero */
    rec(h, 0, LX_HEALTH_CONNECT, 20200); /* slot 5, period 20 */
    rec(h, 0, LX_HEALTH_OK, 35300);      /* slot 5, period 35 */
    lx_health_rescore(h, 35400, NULL, NULL);
    r = &lx_health_scores(h)[0];
    assert_int_equal(r->requests, 1);
    assert_int_equal(r->count[LX_HEALTH_OK], 1);
    /* cumulative counters never expire */
    uint64_t t[LX_HEALTH_N_OUTCOMES];
    lx_health_totals(h, 0, t);
    assert_int_equal(t[LX_HEALTH_SERVER], 10);
    assert_int_equal(t[LX_HEALTH_CONNECT], 1);
    assert_int_equal(t[LX_HEALTH_OK], 2);
    lx_health_free(h);
}

static void test_carry_over(void **st)
{
    (void)st;
    lx_health_opts_t o = opts_small();
    lx_health_t *a = lx_health_new(&o, KEYS, 3, 2, NULL);
    assert_non_null(a);
    lx_health_sample_t s = {LX_HEALTH_OK, 200000, 1200000, 100, 0};
    for (int i = 0; i < 30; i++) {
        lx_health_record(a, 0, 0, &s, 1000);
        lx_health_record(a, 1, 0, &s, 61000); /* another shard, another bucket */
    }
    for (int i = 0; i < 5; i++)
        rec(a, 1, LX_HEALTH_CONNECT, 2000); /* ejects row 1 until 12000 */
    lx_health_inflight_add(a, 0, 0, 1);
    lx_health_rescore(a, 70000, NULL, NULL);
    lx_health_score_t a0 = lx_health_scores(a)[0];
    assert_int_equal(a0.requests, 60);

    /* the new table: rows reordered, one new, one dropped, another shard count */
    lx_health_row_key_t keys[] = {KEYS[3], KEYS[1], KEYS[0]};
    lx_health_t *b = lx_health_new(&o, keys, 3, 3, a);
    assert_non_null(b);
    const lx_health_score_t *bs = lx_health_scores(b);
    assert_near(bs[2].score, a0.score, 1e-12); /* latest score carried before any rescore */
    assert_true(bs[2].has_data);
    assert_false(bs[0].has_data); /* new row: neutral */
    assert_near(bs[0].score, 0.5, 1e-12);
    uint64_t at;
    assert_true(lx_health_last_rescore(b, &at));
    assert_int_equal(at, 70000);
    assert_int_equal(state(b, 1, 5000), LX_HEALTH_OPEN); /* breaker carried */
    assert_false(lx_health_available(b, 1, 11999));
    assert_true(lx_health_available(b, 1, 12000));
    lx_health_breaker_t br;
    lx_health_breaker_get(b, 1, 5000, &br);
    assert_int_equal(br.ejections, 1);
    assert_int_equal(lx_health_in_flight(b, 2), 0); /* not carried */
    uint64_t t[LX_HEALTH_N_OUTCOMES];
    lx_health_totals(b, 2, t);
    assert_int_equal(t[LX_HEALTH_OK], 60);
    lx_health_totals(b, 1, t);
    assert_int_equal(t[LX_HEALTH_CONNECT], 5);
    /* window data carried: the same figures come out of the new table */
    lx_health_rescore(b, 70000, NULL, NULL);
    bs = lx_health_scores(b);
    assert_int_equal(bs[2].requests, 60);
    assert_near(bs[2].ttft_p50_ms, a0.ttft_p50_ms, 1e-9);
    assert_near(bs[2].tps_p50, a0.tps_p50, 1e-9);
    assert_int_equal(bs[1].count[LX_HEALTH_CONNECT], 5);
    assert_false(bs[0].has_data);
    lx_health_free(a);
    /* a different window keeps breaker and counters but not window data */
    o.window_ms = 60000;
    lx_health_t *c = lx_health_new(&o, keys, 3, 1, b);
    assert_non_null(c);
    lx_health_rescore(c, 70000, NULL, NULL);
    assert_int_equal(lx_health_scores(c)[2].requests, 0);
    lx_health_totals(c, 2, t);
    assert_int_equal(t[LX_HEALTH_OK], 60);
    lx_health_free(b);
    lx_health_free(c);
}

/* ---- demotion: the success and latency rules on recent figures ---- */

/* Records <n> attempts on <row> spread over [t0, t0 + span_ms): attempt i fails (500, after
 * <fail_ttfb_ms>) when (i * permille) % 1000 + permille > 999 - i.e. permille out of each
 * thousand, evenly - and otherwise succeeds with a first byte after <ttfb_ms>. */
static void traffic(lx_health_t *h, size_t row, int n, unsigned permille, uint64_t ttfb_ms,
                    uint64_t fail_ttfb_ms, uint64_t t0, uint64_t span_ms)
{
    for (int i = 0; i < n; i++) {
        uint64_t t = t0 + span_ms * (uint64_t)i / (uint64_t)n;
        bool fail = ((unsigned)i * permille) % 1000 + permille > 999;
        lx_health_sample_t s = {fail ? LX_HEALTH_SERVER : LX_HEALTH_OK,
                                (fail ? fail_ttfb_ms : ttfb_ms) * 1000, 0, -1, 0};
        lx_health_record(h, 0, row, &s, t);
    }
}

/* A 5 s re-scoring and the default 15 min window, as in the simulation. */
static lx_health_t *table_5s(void)
{
    lx_health_opts_t o;
    lx_health_opts_init(&o);
    o.rescore_interval_ms = 5000;
    return table(&o, 4, 1); /* rows 0, 1, 3 serve model m */
}

static void test_success_rule(void **st)
{
    (void)st;
    /* 50 req/s over three rows: about 83 attempts per row per 5 s window */
    lx_health_t *h = table_5s();
    uint64_t t = 0;
    for (int k = 0; k < 6; k++, t += 5000) { /* 30 s healthy: the past the window remembers */
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1)
            traffic(h, r, 83, 0, 20, 0, t, 5000);
        lx_health_rescore(h, t + 5000, NULL, NULL);
    }
    const lx_health_score_t *s = lx_health_scores(h);
    assert_int_equal(s[0].demoted + s[1].demoted + s[3].demoted, 0);
    /* then row 1 fails 30%, row 3 2.4%: one re-scoring later row 1 is demoted, row 3 is not */
    traffic(h, 0, 83, 0, 20, 0, t, 5000);
    traffic(h, 1, 83, 300, 20, 1, t, 5000);
    traffic(h, 3, 83, 25, 20, 1, t, 5000);
    t += 5000;
    lx_health_rescore(h, t, NULL, NULL);
    s = lx_health_scores(h);
    assert_int_equal(s[1].demoted, LX_HEALTH_DEMOTED_SUCCESS);
    assert_true(s[1].score == 0);
    assert_true(s[1].has_data);
    assert_int_equal(s[3].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_int_equal(s[0].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_true(s[3].score > 0.5 && s[0].score > 0.5);
    assert_true(s[1].success_high < s[0].success_low);
    /* the window's own rate still shows the healthy past: the rule is the recent figure's */
    assert_true(s[1].success_rate > 0.9);
    assert_true(s[1].recent_success < 0.9);

    /* at the exploration share (2%: ~5 attempts per 5 s) and still failing 30%, it stays
     * demoted; the 2% one stays kept */
    for (int k = 0; k < 12; k++) {
        traffic(h, 0, 83, 0, 20, 0, t, 5000);
        traffic(h, 1, 5, 300, 20, 1, t, 5000);
        traffic(h, 3, 83, 25, 20, 1, t, 5000);
        t += 5000;
        lx_health_rescore(h, t, NULL, NULL);
        s = lx_health_scores(h);
        assert_int_equal(s[1].demoted, LX_HEALTH_DEMOTED_SUCCESS);
        assert_int_equal(s[3].demoted, LX_HEALTH_NOT_DEMOTED);
    }
    /* recovered: back within a few re-scorings at the exploration share */
    int back = -1;
    for (int k = 0; k < 12 && back < 0; k++) {
        traffic(h, 0, 83, 0, 20, 0, t, 5000);
        traffic(h, 1, 5, 0, 20, 0, t, 5000);
        traffic(h, 3, 83, 25, 20, 1, t, 5000);
        t += 5000;
        lx_health_rescore(h, t, NULL, NULL);
        if (lx_health_scores(h)[1].demoted == LX_HEALTH_NOT_DEMOTED)
            back = k;
    }
    assert_true(back >= 0 && back <= 4);
    assert_true(lx_health_scores(h)[1].score > 0.3);
    lx_health_free(h);

    /* from a cold start, one 5 s window of the fault is enough too */
    h = table_5s();
    traffic(h, 0, 83, 0, 20, 0, 0, 5000);
    traffic(h, 1, 83, 300, 20, 1, 0, 5000);
    traffic(h, 3, 83, 25, 20, 1, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    s = lx_health_scores(h);
    assert_int_equal(s[1].demoted, LX_HEALTH_DEMOTED_SUCCESS);
    assert_int_equal(s[3].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_int_equal(s[0].demoted, LX_HEALTH_NOT_DEMOTED);
    /* thin evidence demotes nothing: 3 failures of 10 against 10 of 10 */
    lx_health_free(h);
    h = table_5s();
    traffic(h, 0, 10, 0, 20, 0, 0, 5000);
    traffic(h, 1, 10, 300, 20, 1, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_NOT_DEMOTED);
    lx_health_free(h);
}

static void test_fast_failures_not_faster(void **st)
{
    (void)st;
    lx_health_t *h = table_5s();
    /* both answer their successes after 200 ms; row 1 also fails 5% after 2 ms */
    traffic(h, 0, 100, 0, 200, 0, 0, 5000);
    traffic(h, 1, 105, 50, 200, 2, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    const lx_health_score_t *s = lx_health_scores(h);
    assert_int_equal(s[1].count[LX_HEALTH_OK], 100);
    assert_near(s[1].ttft_gm_ms, s[0].ttft_gm_ms, 1e-9);
    assert_near(s[1].ttft_p50_ms, s[0].ttft_p50_ms, 1e-9);
    assert_near(s[1].ttft_p95_ms, s[0].ttft_p95_ms, 1e-9);
    assert_true(s[1].ttft_gm_ms > 200 / 1.45 && s[1].ttft_gm_ms < 200 * 1.45);
    /* (5 failures of 105 are not clearly worse than none of 100: kept, but below row 0) */
    assert_int_equal(s[1].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_true(s[1].score < s[0].score);
    assert_near(s[0].score, expected_score(100, 0, 1, 0.5, 0), 1e-9);
    assert_near(s[1].score, expected_score(100, 5, 1, 0.5, 0), 1e-9);
    lx_health_free(h);
}

static void test_slow_rule(void **st)
{
    (void)st;
    lx_health_t *h = table_5s();
    /* half streamed (first byte at 2 ms), half whole answers (180 ms); row 1 800 ms slower */
    for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
        uint64_t extra = r == 1 ? 800 : 0;
        traffic(h, r, 40, 0, 2 + extra, 0, 0, 5000);
        traffic(h, r, 40, 0, 180 + extra, 0, 0, 5000);
    }
    lx_health_rescore(h, 5000, NULL, NULL);
    const lx_health_score_t *s = lx_health_scores(h);
    assert_int_equal(s[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    assert_true(s[1].score == 0);
    assert_int_equal(s[0].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_int_equal(s[3].demoted, LX_HEALTH_NOT_DEMOTED);
    /* the hedging figure: the p95 of the kept rows, the slow one left out */
    assert_true(s[0].model_ttft_p95_ms > 180 / 1.45 && s[0].model_ttft_p95_ms < 180 * 1.45);
    assert_near(s[1].model_ttft_p95_ms, s[0].model_ttft_p95_ms, 1e-9);
    assert_true(s[1].ttft_p95_ms > 980 / 1.45 && s[1].ttft_p95_ms < 980 * 1.45);
    /* at the exploration share it stays demoted while slow... */
    uint64_t t = 5000;
    for (int k = 0; k < 6; k++, t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
            uint64_t extra = r == 1 ? 800 : 0;
            int n = r == 1 ? 2 : 40;
            traffic(h, r, n, 0, 2 + extra, 0, t, 5000);
            traffic(h, r, n, 0, 180 + extra, 0, t, 5000);
        }
        lx_health_rescore(h, t + 5000, NULL, NULL);
        assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    }
    /* ...and comes back once its first bytes are as early as the others' */
    int back = -1;
    for (int k = 0; k < 12 && back < 0; k++, t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
            int n = r == 1 ? 2 : 40;
            traffic(h, r, n, 0, 2, 0, t, 5000);
            traffic(h, r, n, 0, 180, 0, t, 5000);
        }
        lx_health_rescore(h, t + 5000, NULL, NULL);
        if (lx_health_scores(h)[1].demoted == LX_HEALTH_NOT_DEMOTED)
            back = k;
    }
    assert_true(back >= 0 && back <= 4);
    lx_health_free(h);

    /* a warm row whose traffic thins as it slows (17 attempts in the interval, as a power of
     * two choices leaves it): demoted at the first re-scoring, its fast past notwithstanding */
    h = table_5s();
    t = 0;
    for (int k = 0; k < 7; k++, t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
            uint64_t extra = r == 1 && k == 6 ? 800 : 0;
            int n = r == 1 && k == 6 ? 9 : 40;
            traffic(h, r, n, 0, 2 + extra, 0, t, 5000);
            traffic(h, r, n - (r == 1 && k == 6), 0, 180 + extra, 0, t, 5000);
        }
        lx_health_rescore(h, t + 5000, NULL, NULL);
        assert_int_equal(lx_health_scores(h)[1].demoted,
                         k == 6 ? LX_HEALTH_DEMOTED_LATENCY : LX_HEALTH_NOT_DEMOTED);
    }
    /* then at the exploration share, still slow: its fast past does not readmit it */
    for (int k = 0; k < 6; k++, t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
            uint64_t extra = r == 1 ? 800 : 0;
            int n = r == 1 ? 2 : 40;
            traffic(h, r, n, 0, 2 + extra, 0, t, 5000);
            traffic(h, r, n, 0, 180 + extra, 0, t, 5000);
        }
        lx_health_rescore(h, t + 5000, NULL, NULL);
        assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    }
    lx_health_free(h);

    /* hysteresis: demoted at 6x the best, kept out at 3x, back at 1.7x (130 ms above) */
    h = table_5s();
    traffic(h, 0, 80, 0, 300, 0, 0, 5000);
    traffic(h, 1, 80, 0, 2000, 0, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    t = 5000;
    for (int k = 0; k < 6; k++, t += 5000) {
        traffic(h, 0, 80, 0, 300, 0, t, 5000);
        traffic(h, 1, 80, 0, 900, 0, t, 5000);
        lx_health_rescore(h, t + 5000, NULL, NULL);
    }
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    for (int k = 0; k < 6; k++, t += 5000) {
        traffic(h, 0, 80, 0, 300, 0, t, 5000);
        traffic(h, 1, 80, 0, 500, 0, t, 5000);
        lx_health_rescore(h, t + 5000, NULL, NULL);
    }
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_NOT_DEMOTED);
    lx_health_free(h);

    /* twice as slow is not demoted: only a lower score */
    h = table_5s();
    traffic(h, 0, 80, 0, 100, 0, 0, 5000);
    traffic(h, 1, 80, 0, 200, 0, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    s = lx_health_scores(h);
    assert_int_equal(s[1].demoted, LX_HEALTH_NOT_DEMOTED);
    assert_true(s[1].score > 0.3 && s[1].score < s[0].score);
    lx_health_free(h);
}

/* A row whose attempts lose hedges (outcome HEDGED): not a failure (breaker, success rate), no
 * latency figure; a row demoted for latency whose exploration attempts all lose stays demoted,
 * and the losses show in the window's count. */
static void test_hedged_outcome(void **st)
{
    (void)st;
    lx_health_t *h = table_5s();
    for (int i = 0; i < 20; i++)
        rec(h, 1, LX_HEALTH_HEDGED, 100);
    assert_int_equal(state(h, 1, 200), LX_HEALTH_CLOSED);
    /* row 1 800 ms slower: demoted */
    for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1)
        traffic(h, r, 40, 0, 20 + (r == 1 ? 800 : 0), 0, 0, 5000);
    lx_health_rescore(h, 5000, NULL, NULL);
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
    assert_true(lx_health_scores(h)[1].success_rate > 0.99);
    assert_int_equal(lx_health_scores(h)[1].count[LX_HEALTH_HEDGED], 20);
    /* its exploration attempts all lose their races: it stays demoted */
    uint64_t t = 5000;
    for (int k = 0; k < 12; k++, t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1) {
            if (r == 1) {
                for (int i = 0; i < 2; i++)
                    rec(h, 1, LX_HEALTH_HEDGED, t + (uint64_t)i);
            } else {
                traffic(h, r, 40, 0, 20, 0, t, 5000);
            }
        }
        lx_health_rescore(h, t + 5000, NULL, NULL);
        assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_LATENCY);
        assert_true(lx_health_scores(h)[1].success_rate > 0.99);
    }
    lx_health_free(h);
}

static void test_outage_recovery(void **st)
{
    (void)st;
    /* row 1 refuses connections for 30 s (the breaker takes it out; a few probes fail), then
     * answers again: it is back in rotation within a few re-scorings */
    lx_health_t *h = table_5s();
    uint64_t t = 0;
    for (; t < 10000; t += 5000) {
        for (size_t r = 0; r < 4; r += r == 1 ? 2 : 1)
            traffic(h, r, 83, 0, 20, 0, t, 5000);
        lx_health_rescore(h, t + 5000, NULL, NULL);
    }
    for (int i = 0; i < 8; i++)
        rec(h, 1, LX_HEALTH_CONNECT, t + (uint64_t)i);
    for (; t < 40000; t += 5000) {
        traffic(h, 0, 125, 0, 20, 0, t, 5000);
        traffic(h, 3, 125, 0, 20, 0, t, 5000);
        rec(h, 1, LX_HEALTH_CONNECT, t + 2500); /* a failed half-open probe */
        lx_health_rescore(h, t + 5000, NULL, NULL);
    }
    assert_int_equal(lx_health_scores(h)[1].demoted, LX_HEALTH_DEMOTED_SUCCESS);
    int back = -1;
    for (int k = 0; k < 12 && back < 0; k++, t += 5000) {
        traffic(h, 0, 125, 0, 20, 0, t, 5000);
        traffic(h, 3, 125, 0, 20, 0, t, 5000);
        traffic(h, 1, 5, 0, 20, 0, t, 5000);
        lx_health_rescore(h, t + 5000, NULL, NULL);
        if (lx_health_scores(h)[1].demoted == LX_HEALTH_NOT_DEMOTED)
            back = k;
    }
    assert_true(back >= 0 && back <= 3);
    lx_health_free(h);
}

static void test_carry_recent(void **st)
{
    (void)st;
    /* the recent figures (decayed by half per 5 s) go on in the next table: no restart */
    lx_health_t *a = table_5s();
    traffic(a, 1, 40, 0, 20, 0, 0, 5000);
    lx_health_rescore(a, 5000, NULL, NULL);
    traffic(a, 1, 40, 500, 20, 1, 5000, 5000);
    lx_health_rescore(a, 10000, NULL, NULL);
    lx_health_score_t a1 = lx_health_scores(a)[1];
    assert_near(a1.recent_n, 40 * 0.5 + 40, 1e-9);
    lx_health_t *b = lx_health_new(lx_health_opts(a), KEYS, 4, 2, a);
    assert_non_null(b);
    lx_health_rescore(b, 10000, NULL, NULL);
    const lx_health_score_t *b1 = &lx_health_scores(b)[1];
    assert_near(b1->recent_n, a1.recent_n, 1e-9);
    assert_near(b1->recent_success, a1.recent_success, 1e-9);
    assert_near(b1->ttft_gm_ms, a1.ttft_gm_ms, 1e-9);
    /* and decay there as they would have */
    lx_health_rescore(b, 15000, NULL, NULL);
    assert_near(lx_health_scores(b)[1].recent_n, a1.recent_n / 2, 1e-9);
    lx_health_free(a);
    lx_health_free(b);
}

typedef struct logbuf {
    int n;
    char lines[8][512];
} logbuf_t;

static void capture(void *arg, const char *line)
{
    logbuf_t *lb = arg;
    if (lb->n < 8)
        snprintf(lb->lines[lb->n], sizeof(lb->lines[0]), "%s", line);
    lb->n++;
}

static void test_log_lines(void **st)
{
    (void)st;
    lx_health_t *h = table(NULL, 2, 1);
    logbuf_t lb = {0};
    lx_health_rescore(h, 0, capture, &lb);
    assert_int_equal(lb.n, 0); /* nothing changed */
    for (int i = 0; i < 10; i++)
        rec(h, 0, LX_HEALTH_SERVER, 100);
    lx_health_rescore(h, 1000, capture, &lb);
    assert_int_equal(lb.n, 1);
    assert_string_equal(lb.lines[0], "health: m local http://127.0.0.1:8000: score 0.50 -> 0.01 "
                                     "(success 0%, ttft p50 n/a, 429 0%)");
    /* row 1 has no data: its prior stays at 0.5 (never below neutral), so it is not logged */
    assert_near(lx_health_scores(h)[1].score, 0.5, 1e-12);
    memset(&lb, 0, sizeof(lb));
    lx_health_rescore(h, 2000, capture, &lb);
    assert_int_equal(lb.n, 0); /* unchanged since */
    lx_health_free(h);
}

static void test_json(void **st)
{
    (void)st;
    lx_health_t *h = table(NULL, 1, 1);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(lx_health_format_json(h, 0, &out, &len), 0);
    assert_int_equal(len, strlen(out));
    assert_non_null(strstr(out, "\"last_rescore_ms_ago\":null"));
    assert_non_null(strstr(out, "\"success_rate\":null,\"score\":0.5000,\"has_data\":false"));
    free(out);

    rec(h, 0, LX_HEALTH_OK, 100);
    lx_health_inflight_add(h, 0, 0, 1);
    lx_health_rescore(h, 1000, NULL, NULL);
    assert_int_equal(lx_health_format_json(h, 1500, &out, &len), 0);
    assert_string_equal(
        out,
        "{\"rescore_interval_ms\":300000,\"window_ms\":900000,\"last_rescore_ms_ago\":500,"
        "\"rows\":[{\"provider\":\"local\",\"endpoint\":\"http://127.0.0.1:8000\","
        "\"model\":\"m\",\"requests\":1,\"successes\":1,\"errors\":{\"connect\":0,"
        "\"timeout\":0,\"rate_limit\":0,\"server\":0,\"bad_response\":0,\"client\":0},"
        "\"hedged\":0,\"in_flight\":1,\"ttft_ms\":{\"p50\":null,\"p90\":null},\"tps_p50\":null,"
        "\"success_rate\":1.0000,\"score\":0.4007,\"has_data\":true,\"demoted\":null,"
        "\"recent\":{\"attempts\":1.0,\"success_rate\":1.0000,\"success_low\":0.2065,"
        "\"success_high\":1.0000,\"ttft_gm_ms\":null,\"ttft_p95_ms\":null},"
        "\"model_ttft_p95_ms\":null,\"breaker\":{\"state\":\"closed\",\"consecutive_"
        "failures\":0,\"ejections\":0,\"open_for_ms\":0},"
        "\"retry_after_ms\":0,\"concurrency_cap\":0,\"slow_for_ms\":0}]}");
    assert_int_equal(len, strlen(out));
    free(out);

    /* breaker and retry-after live; strings escaped */
    lx_health_row_key_t k[] = {{"p\"q\\r\n", "http://h/\x01", "m"}};
    lx_health_t *e = lx_health_new(NULL, k, 1, 1, NULL);
    assert_non_null(e);
    for (int i = 0; i < 5; i++)
        rec(e, 0, LX_HEALTH_CONNECT, 0);
    lx_health_sample_t s = {LX_HEALTH_RATE_LIMIT, 0, 0, -1, 30000};
    lx_health_record(e, 0, 0, &s, 0);
    assert_int_equal(lx_health_format_json(e, 4000, &out, &len), 0);
    assert_non_null(strstr(out, "\"provider\":\"p\\\"q\\\\r\\u000a\",\"endpoint\":"
                                "\"http://h/\\u0001\""));
    assert_non_null(strstr(out, "\"breaker\":{\"state\":\"open\",\"consecutive_failures\":0,"
                                "\"ejections\":1,\"open_for_ms\":6000},\"retry_after_ms\":26000,"
                                "\"concurrency_cap\":0,\"slow_for_ms\":0}"));
    free(out);
    assert_int_equal(lx_health_format_json(e, 10000, &out, &len), 0);
    assert_non_null(strstr(out, "\"state\":\"half_open\""));
    free(out);
    lx_health_free(e);
    lx_health_free(h);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_metrics(void **st)
{
    (void)st;
    lx_health_t *h = table(NULL, 1, 2);
    lx_health_sample_t s = {LX_HEALTH_OK, 250000, 1250000, 100, 0};
    lx_health_record(h, 0, 0, &s, 0);
    lx_health_record(h, 1, 0, &s, 0);
    rec(h, 0, LX_HEALTH_SERVER, 0);
    rec(h, 0, LX_HEALTH_CANCELED, 0);
    lx_health_inflight_add(h, 1, 0, 1);
    lx_health_inflight_add(h, 1, 0, 1);
    lx_health_inflight_add(h, 0, 0, -1);
    char *out;
    size_t len;
    assert_int_equal(lx_health_format_metrics(h, 0, &out, &len), 0);
    assert_int_equal(len, strlen(out));
    /* before any re-scoring: neutral score, unknown window values */
    assert_non_null(strstr(out, "# HELP llmux_health_score "));
    assert_non_null(strstr(out, "\n# TYPE llmux_health_score gauge\n"
                                "llmux_health_score{provider=\"local\",endpoint=\"http://"
                                "127.0.0.1:8000\",model=\"m\"} 0.500000\n"));
    assert_non_null(strstr(out, "llmux_health_ttft_p50_seconds{provider=\"local\",endpoint=\"http:"
                                "//127.0.0.1:8000\",model=\"m\"} NaN\n"));
    assert_non_null(strstr(out, "# TYPE llmux_upstream_attempts_total counter\n"));
    assert_non_null(strstr(out, "llmux_upstream_attempts_total{provider=\"local\",endpoint=\"http:"
                                "//127.0.0.1:8000\",model=\"m\",outcome=\"ok\"} 2\n"));
    assert_non_null(strstr(out, ",outcome=\"server\"} 1\n"));
    assert_non_null(strstr(out, ",outcome=\"canceled\"} 1\n"));
    assert_non_null(strstr(out, ",outcome=\"rate_limit\"} 0\n"));
    assert_non_null(strstr(out, "llmux_health_in_flight{provider=\"local\",endpoint=\"http://"
                                "127.0.0.1:8000\",model=\"m\"} 1.000000\n"));
    assert_non_null(strstr(out, "llmux_health_breaker_open{provider=\"local\",endpoint=\"http://"
                                "127.0.0.1:8000\",model=\"m\"} 0.000000\n"));
    assert_non_null(strstr(out, "llmux_health_demoted{provider=\"local\",endpoint=\"http://"
                                "127.0.0.1:8000\",model=\"m\"} 0.000000\n"));
    assert_int_equal(count(out, "# HELP "), 10);
    assert_int_equal(count(out, "# TYPE "), 10);
    assert_int_equal(count(out, "llmux_upstream_attempts_total{"), LX_HEALTH_N_OUTCOMES);
    assert_int_equal(count(out, "\n"), 10 * 2 + 9 + LX_HEALTH_N_OUTCOMES);
    free(out);

    lx_health_rescore(h, 1000, NULL, NULL);
    assert_int_equal(lx_health_format_metrics(h, 1000, &out, &len), 0);
    assert_non_null(strstr(out, "llmux_health_success_rate{provider=\"local\",endpoint=\"http://"
                                "127.0.0.1:8000\",model=\"m\"} 0.666667\n"));
    const lx_health_score_t *r = &lx_health_scores(h)[0];
    char want[256];
    snprintf(want, sizeof(want), "model=\"m\"} %.6f\n", r->ttft_p50_ms / 1000);
    assert_true(r->ttft_p50_ms > 250 / 1.45 && r->ttft_p50_ms < 250 * 1.45);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof(want),
             "llmux_health_ttft_p95_seconds{provider=\"local\",endpoint=\"http:"
             "//127.0.0.1:8000\",model=\"m\"} %.6f\n",
             r->ttft_p95_ms / 1000);
    assert_true(r->ttft_p95_ms > 250 / 1.45 && r->ttft_p95_ms < 250 * 1.45);
    assert_non_null(strstr(out, want));
    free(out);
    lx_health_free(h);

    lx_health_row_key_t k[] = {{"a\"b", "c\\d", "e\nf"}};
    h = lx_health_new(NULL, k, 1, 1, NULL);
    assert_non_null(h);
    for (int i = 0; i < 5; i++)
        rec(h, 0, LX_HEALTH_TIMEOUT, 0);
    assert_int_equal(lx_health_format_metrics(h, 0, &out, &len), 0);
    assert_non_null(strstr(out, "llmux_health_breaker_open{provider=\"a\\\"b\",endpoint=\"c\\\\d\","
                                "model=\"e\\nf\"} 1.000000\n"));
    free(out);
    lx_health_free(h);
}

/* ---- the grace period ------------------------------------------------------------------- */

/* Re-scores <h> at <now> after recording failures on row 0, so that the scores differ from
 * every earlier snapshot's. */
static bool rescore_changed(lx_health_t *h, uint64_t now)
{
    rec(h, 0, LX_HEALTH_SERVER, now);
    rec_ok(h, 1, 100 + now / 1000, 0, 0, now);
    return lx_health_rescore(h, now, NULL, NULL);
}

/* A replaced snapshot is rewritten only after every reader of the table's QSBR domain passed a
 * quiescent point: a reader holding the published scores sees them unchanged through any number
 * of re-scorings (deferred once both spares are held) until its quiescent point; an offline
 * reader holds nothing back. */
static void test_grace_period(void **st)
{
    (void)st;
    lx_qsbr_t *q = lx_qsbr_new(2);
    assert_non_null(q);
    lx_health_opts_t o = opts_small();
    o.qsbr = q;
    lx_health_t *h = table(&o, 2, 1);
    /* no quiescent point from either reader yet: the two spares were never published, so two
     * re-scorings go ahead, and the third waits */
    assert_true(rescore_changed(h, 1000));
    assert_true(rescore_changed(h, 2000));
    assert_false(rescore_changed(h, 3000));
    lx_qsbr_offline(q, 1); /* reader 1 stops: only reader 0 counts from now */
    assert_false(rescore_changed(h, 3500));
    lx_qsbr_quiescent(q, 0);
    assert_true(rescore_changed(h, 4000));

    /* reader 0 takes the published scores and holds them */
    const lx_health_score_t *held = lx_health_scores(h);
    lx_health_score_t copy[2];
    memcpy(copy, held, sizeof(copy));
    uint64_t at;
    assert_true(lx_health_last_rescore(h, &at));
    assert_int_equal(at, 4000);
    /* one re-scoring may use the spare replaced before reader 0's quiescent point; then both
     * spares are held (the one it read, and the one it might have read before its next
     * quiescent point): deferred, however often it is tried */
    assert_true(rescore_changed(h, 5000));
    assert_true(lx_health_scores(h) != held);
    for (uint64_t t = 6000; t < 16000; t += 1000) {
        assert_false(rescore_changed(h, t));
        assert_memory_equal(held, copy, sizeof(copy));
    }
    assert_true(lx_health_last_rescore(h, &at));
    assert_int_equal(at, 5000); /* the published one stays */
    lx_qsbr_quiescent(q, 0);    /* done with it */
    assert_true(rescore_changed(h, 16000));
    assert_true(rescore_changed(h, 17000));
    /* the deferred re-scorings lost nothing: every failure recorded on row 0 is counted */
    assert_int_equal(lx_health_scores(h)[0].count[LX_HEALTH_SERVER], 18);
    assert_int_equal(lx_health_scores(h)[1].count[LX_HEALTH_OK], 18);
    lx_health_free(h);
    lx_qsbr_free(q);
}

/* ---- threads ----------------------------------------------------------------------------- */

#define SAMPLES 100000
#define ROWS    4
#define HOLD    32 /* samples a writer records while it holds the scores it read */

typedef struct writer {
    lx_health_t *h;
    lx_qsbr_t *q;
    unsigned shard;
    uint64_t sent[LX_HEALTH_N_OUTCOMES];
    uint64_t scores_read;
    uint64_t rewritten; /* scores that changed while it held them: must stay 0 */
} writer_t;

/* Each writer is also a reader of the published scores, as a worker is: it holds them for HOLD
 * samples (its "turn"), checks they did not change meanwhile, then marks a quiescent point.
 * The snapshot's contents reach it through lx_health_scores()'s acquire alone, and the
 * re-scorer's reuse is ordered after its reads by the QSBR domain alone: ThreadSanitizer
 * checks both. */
static _Atomic int writers_done;

static void *write_samples(void *arg)
{
    writer_t *w = arg;
    const lx_health_score_t *held = NULL;
    lx_health_score_t copy;
    for (uint32_t i = 0; i < SAMPLES; i++) {
        size_t row = i % ROWS;
        uint64_t now = i / 10; /* 0 .. 10 s: the buckets rotate under the reader */
        uint32_t j = i / ROWS + w->shard;
        lx_health_outcome_t o = j % 16 < 13 ? LX_HEALTH_OK : (lx_health_outcome_t)(j % 8);
        lx_health_sample_t s = {o, 1000 + i % 5000, 900000, 50, 0};
        lx_health_inflight_add(w->h, w->shard, row, 1);
        (void)lx_health_available(w->h, row, now);
        (void)lx_health_admit(w->h, row, now);
        lx_health_record(w->h, w->shard, row, &s, now);
        if (i % (2 * HOLD) == 0) { /* planning reads the published scores, lock-free */
            held = lx_health_scores(w->h);
            copy = held[0];
            w->rewritten += !(held[0].score >= 0 && held[0].score <= 1);
            w->scores_read++;
        } else if (i % (2 * HOLD) == HOLD) {
            if (memcmp(&held[0], &copy, sizeof(copy)) != 0)
                w->rewritten++;                /* (asserted on the main thread) */
            lx_qsbr_quiescent(w->q, w->shard); /* done with it: the end of a turn */
        }
        lx_health_inflight_add(w->h, w->shard, row, -1);
        w->sent[s.outcome]++;
    }
    lx_qsbr_offline(w->q, w->shard);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

typedef struct reader {
    lx_health_t *h;
    int rescores;
    int deferred;
} reader_t;

static void *rescore_loop(void *arg)
{
    reader_t *r = arg;
    while (atomic_load(&writers_done) < 2) {
        if (!lx_health_rescore(r->h, 10000, NULL, NULL)) {
            r->deferred++;
            nanosleep(&(struct timespec){0, 50000}, NULL);
            continue;
        }
        char *out;
        size_t len;
        if (lx_health_format_json(r->h, 10000, &out, &len) == 0)
            free(out);
        if (lx_health_format_metrics(r->h, 10000, &out, &len) == 0)
            free(out);
        r->rescores++;
    }
    return NULL;
}

static void test_threads(void **st)
{
    (void)st;
    lx_qsbr_t *q = lx_qsbr_new(2);
    assert_non_null(q);
    lx_health_opts_t o = opts_small();
    o.window_ms = 15000;
    o.qsbr = q;
    lx_health_t *h = lx_health_new(&o, KEYS, ROWS, 2, NULL);
    assert_non_null(h);
    writer_t w[2] = {{.h = h, .q = q, .shard = 0}, {.h = h, .q = q, .shard = 1}};
    reader_t rd = {h, 0, 0};
    pthread_t tw[2], tr;
    atomic_store(&writers_done, 0);
    assert_int_equal(pthread_create(&tr, NULL, rescore_loop, &rd), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&tw[i], NULL, write_samples, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(tw[i], NULL);
    pthread_join(tr, NULL);
    assert_true(rd.rescores > 0);
    assert_true(w[0].scores_read > 0 && w[1].scores_read > 0);
    assert_int_equal(w[0].rewritten + w[1].rewritten, 0);

    assert_true(lx_health_rescore(h, 10000, NULL, NULL)); /* (both readers offline) */
    const lx_health_score_t *s = lx_health_scores(h);
    uint64_t window[LX_HEALTH_N_OUTCOMES] = {0}, total[LX_HEALTH_N_OUTCOMES] = {0};
    for (size_t row = 0; row < ROWS; row++) {
        uint64_t t[LX_HEALTH_N_OUTCOMES];
        lx_health_totals(h, row, t);
        for (unsigned k = 0; k < LX_HEALTH_N_OUTCOMES; k++) {
            window[k] += s[row].count[k];
            total[k] += t[k];
        }
        assert_int_equal(lx_health_in_flight(h, row), 0);
    }
    uint64_t all = 0;
    for (unsigned k = 0; k < LX_HEALTH_N_OUTCOMES; k++) {
        assert_int_equal(window[k], w[0].sent[k] + w[1].sent[k]);
        assert_int_equal(total[k], w[0].sent[k] + w[1].sent[k]);
        all += window[k];
    }
    assert_int_equal(all, 2 * SAMPLES);
    lx_health_free(h);
    lx_qsbr_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys),
        cmocka_unit_test(test_breaker_exactly_n),
        cmocka_unit_test(test_breaker_doubling_and_cap),
        cmocka_unit_test(test_half_open_one_probe),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_late_heads),
        cmocka_unit_test(test_rescore_stats),
        cmocka_unit_test(test_percentile_precision),
        cmocka_unit_test(test_normalisation_and_prior),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_carry_over),
        cmocka_unit_test(test_success_rule),
        cmocka_unit_test(test_fast_failures_not_faster),
        cmocka_unit_test(test_slow_rule),
        cmocka_unit_test(test_outage_recovery),
        cmocka_unit_test(test_carry_recent),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_hedged_outcome),
        cmocka_unit_test(test_grace_period),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
