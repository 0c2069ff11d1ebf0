/*
 * test_prefix_est.c - the per-endpoint prefix-hit estimate (route/prefix_est.h): a key counts
 * as a hit on the endpoint it was sent to before and nowhere else; the window (current and
 * previous, older ones dropped, a lagging clock never wiping a newer window, saturation); the
 * documented underestimate of two keys sharing a slot; exact counts under two threads; the
 * admin JSON (read with jsmn) and the Prometheus text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "route/prefix_est.h"

#define W     LX_PREFIX_EST_WINDOW_MS
#define SMALL 100 /* bytes of a prompt: one unit of volume */

static uint64_t next_key(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | 1; /* (never 0) */
}

static lx_prefix_est_view_t view(const lx_prefix_est_t *e, size_t row, uint64_t now)
{
    lx_prefix_est_view_t v;
    lx_prefix_est_read(e, row, now, &v);
    return v;
}

/* A key is a hit where it was sent before, and only there; key 0 and rows out of range count
 * nothing. */
static void test_hit_where_sent(void **state)
{
    (void)state;
    lx_prefix_est_t *e = lx_prefix_est_new(3);
    assert_non_null(e);
    uint64_t t = 50 * W + 10;
    assert_false(lx_prefix_est_note(e, 0, 42, SMALL, t));
    assert_true(lx_prefix_est_note(e, 0, 42, SMALL, t));
    assert_true(lx_prefix_est_note(e, 0, 42, SMALL, t + 1));
    assert_false(lx_prefix_est_note(e, 1, 42, SMALL, t)); /* another endpoint never got it */
    assert_false(lx_prefix_est_note(e, 0, 43, SMALL, t));
    assert_false(lx_prefix_est_note(e, 0, 0, SMALL, t)); /* no prompt */
    assert_false(lx_prefix_est_note(e, 3, 42, SMALL, t));
    assert_false(lx_prefix_est_note(NULL, 0, 42, SMALL, t));
    lx_prefix_est_view_t v = view(e, 0, t + 2);
    assert_int_equal(v.requests, 4);
    assert_int_equal(v.hits, 2);
    assert_int_equal(v.total_requests, 4);
    assert_int_equal(v.total_hits, 2);
    assert_int_equal(v.span_ms, 12);
    v = view(e, 1, t);
    assert_int_equal(v.requests, 1);
    assert_int_equal(v.hits, 0);
    v = view(e, 2, t);
    assert_int_equal(v.requests + v.total_requests, 0);
    v = view(e, 7, t);
    assert_int_equal(v.requests + v.total_requests, 0);
    lx_prefix_est_free(e);
    lx_prefix_est_free(NULL);
}

/* The figures are the current window's and the previous one's; older windows drop out, the
 * totals stay; the key table itself has no age (a key sent long ago is still a hit). */
static void test_window(void **state)
{
    (void)state;
    lx_prefix_est_t *e = lx_prefix_est_new(1);
    uint64_t t0 = 10 * W;
    lx_prefix_est_note(e, 0, 1, SMALL, t0);     /* window 10: miss */
    lx_prefix_est_note(e, 0, 1, SMALL, t0 + 5); /* hit */
    lx_prefix_est_note(e, 0, 2, SMALL, t0 + W); /* window 11: miss */
    lx_prefix_est_view_t v = view(e, 0, t0 + W + W / 2);
    assert_int_equal(v.requests, 3);
    assert_int_equal(v.hits, 1);
    assert_int_equal(v.span_ms, W + W / 2);
    v = view(e, 0, t0 + 2 * W); /* window 12: 10 is gone, 11 is the previous */
    assert_int_equal(v.requests, 1);
    assert_int_equal(v.hits, 0);
    assert_int_equal(v.span_ms, W);
    v = view(e, 0, t0 + 3 * W + 1); /* window 13: nothing recent */
    assert_int_equal(v.requests, 0);
    assert_int_equal(v.span_ms, 1);
    assert_int_equal(v.total_requests, 3);
    assert_int_equal(v.total_hits, 1);
    /* window 12's word (parity of 10) replaces window 10's */
    assert_true(lx_prefix_est_note(e, 0, 1, SMALL, t0 + 2 * W));
    v = view(e, 0, t0 + 2 * W);
    assert_int_equal(v.requests, 2);
    assert_int_equal(v.hits, 1);
    lx_prefix_est_free(e);
}

/* A key counts as cached while at most LX_PREFIX_EST_CACHE_BYTES of other prompt text went to
 * its endpoint since it was last sent there, not after: a key sent once long ago (a spill) is
 * not a hit. Other endpoints' traffic does not age it; one huge prompt ages it at once. */
static void test_horizon(void **state)
{
    (void)state;
    const uint32_t big = 64 * LX_PREFIX_EST_UNIT - 1; /* 64 units */
    const int fit = LX_PREFIX_EST_CACHE_BYTES / LX_PREFIX_EST_UNIT / 64;
    lx_prefix_est_t *e = lx_prefix_est_new(2);
    uint64_t s = 99, t = W, k = next_key(&s);
    assert_false(lx_prefix_est_note(e, 0, k, big, t));
    uint64_t others[16];
    for (int i = 0; i < 16; i++) {
        others[i] = next_key(&s);
        lx_prefix_est_note(e, 0, others[i], big, t);
        assert_true(lx_prefix_est_note(e, 0, k, big, t)); /* (so none took k's slot) */
    }
    for (int i = 0; i < fit; i++)
        lx_prefix_est_note(e, 0, others[i % 16], big, t);
    for (int i = 0; i < 1000; i++)
        lx_prefix_est_note(e, 1, others[i % 16], big, t); /* another endpoint */
    assert_true(lx_prefix_est_note(e, 0, k, big, t));     /* exactly the cache's worth since */
    for (int i = 0; i < fit + 1; i++)
        lx_prefix_est_note(e, 0, others[i % 16], big, t);
    assert_false(lx_prefix_est_note(e, 0, k, big, t)); /* one prompt more: gone */
    assert_true(lx_prefix_est_note(e, 0, k, big, t));  /* (and sent again now) */
    lx_prefix_est_note(e, 0, others[0], LX_PREFIX_EST_CACHE_BYTES, t);
    assert_false(lx_prefix_est_note(e, 0, k, SMALL, t)); /* one huge prompt pushed it out */
    /* a row's own cache size (providers' prefix_cache_tokens): 64 units here */
    lx_prefix_est_set_cache(e, 1, 64 * LX_PREFIX_EST_UNIT);
    lx_prefix_est_note(e, 1, k, SMALL, t);
    lx_prefix_est_note(e, 1, others[0], big, t);
    assert_true(lx_prefix_est_note(e, 1, k, SMALL, t));
    lx_prefix_est_note(e, 1, others[0], big, t);
    lx_prefix_est_note(e, 1, others[1], SMALL, t);
    assert_false(lx_prefix_est_note(e, 1, k, SMALL, t));
    lx_prefix_est_set_cache(e, 1, 0); /* (clamped to one unit: the same prompt again only) */
    assert_true(lx_prefix_est_note(e, 1, k, SMALL, t));
    lx_prefix_est_set_cache(e, 9, 0); /* (out of range: nothing) */
    lx_prefix_est_free(e);
}

/* A worker whose clock lags by two windows does not wipe the newer window of its parity. */
static void test_lagging_clock(void **state)
{
    (void)state;
    lx_prefix_est_t *e = lx_prefix_est_new(1);
    uint64_t t = 20 * W;
    lx_prefix_est_note(e, 0, 5, SMALL, t);
    lx_prefix_est_note(e, 0, 5, SMALL, t);
    lx_prefix_est_note(e, 0, 5, SMALL, t - 2 * W); /* window 18: same parity as 20 */
    lx_prefix_est_view_t v = view(e, 0, t);
    assert_int_equal(v.requests, 2);
    assert_int_equal(v.hits, 1);
    assert_int_equal(v.total_requests, 3); /* (the totals count it) */
    assert_int_equal(v.total_hits, 2);
    lx_prefix_est_free(e);
}

/* Two keys of one endpoint that share a slot replace each other: sent in turn, every one is a
 * miss (the documented underestimate). 48 keys sent in turn to one endpoint (within the
 * horizon): each is remembered when none of the 47 others took its slot, (511/512)^47 = 91%
 * (44 keys). */
static void test_slot_sharing(void **state)
{
    (void)state;
    lx_prefix_est_t *e = lx_prefix_est_new(1);
    uint64_t s = 7, a = next_key(&s), b = 0, t = W;
    for (int i = 0; i < 100000 && b == 0; i++) {
        uint64_t c = next_key(&s);
        lx_prefix_est_note(e, 0, a, SMALL, t);
        lx_prefix_est_note(e, 0, c, SMALL, t);
        if (!lx_prefix_est_note(e, 0, a, SMALL, t))
            b = c; /* c took a's slot */
    }
    assert_true(b != 0);
    for (int i = 0; i < 10; i++) {
        assert_false(lx_prefix_est_note(e, 0, b, SMALL, t));
        assert_false(lx_prefix_est_note(e, 0, a, SMALL, t));
    }
    lx_prefix_est_free(e);

    e = lx_prefix_est_new(1);
    uint64_t keys[48];
    for (int i = 0; i < 48; i++)
        lx_prefix_est_note(e, 0, keys[i] = next_key(&s), SMALL, t);
    int hits = 0;
    for (int i = 0; i < 48; i++)
        hits += lx_prefix_est_note(e, 0, keys[i], SMALL, t);
    printf("48 keys on one endpoint, sent twice: %d remembered\n", hits);
    assert_true(hits >= 36 && hits <= 48);
    lx_prefix_est_free(e);
}

/* A window holds at most 2^20 - 1 requests: past that it stops counting (its ratio stands). */
static void test_saturation(void **state)
{
    (void)state;
    lx_prefix_est_t *e = lx_prefix_est_new(1);
    const uint64_t max = (1u << 20) - 1;
    for (uint64_t i = 0; i < max + 5; i++)
        lx_prefix_est_note(e, 0, 9, SMALL, 3 * W);
    lx_prefix_est_view_t v = view(e, 0, 3 * W);
    assert_int_equal(v.requests, max);
    assert_int_equal(v.hits, max - 1);
    assert_int_equal(v.total_requests, max + 5);
    lx_prefix_est_free(e);
}

#define THREAD_NOTES 100000

static lx_prefix_est_t *shared;

static void *noter(void *arg)
{
    uint64_t s = (uintptr_t)arg, hits = 0;
    for (int i = 0; i < THREAD_NOTES; i++)
        hits += lx_prefix_est_note(shared, 0, 1 + next_key(&s) % 16, SMALL, 7 * W);
    return (void *)(uintptr_t)hits;
}

/* Two threads on one row: no request lost, the window's hits equal the totals' (the window
 * word keeps its two counts together), the hits are what the callers were told, and a key
 * noted by both at once is a hit for both. */
static void test_threads(void **state)
{
    (void)state;
    shared = lx_prefix_est_new(1);
    pthread_t th[2];
    for (uintptr_t i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, noter, (void *)(i + 1)), 0);
    uint64_t told = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(th[i], &r);
        told += (uintptr_t)r;
    }
    lx_prefix_est_view_t v = view(shared, 0, 7 * W);
    assert_int_equal(v.requests, 2 * THREAD_NOTES);
    assert_int_equal(v.total_requests, 2 * THREAD_NOTES);
    assert_int_equal(v.hits, told);
    assert_int_equal(v.total_hits, told);
    /* 16 keys: misses are first sights (8-12). A note of a key racing the other thread's, whose
     * mark lands past its own start, is a hit: counted as misses, 8-410 over 30 runs, up to
     * 1,000 and more on a loaded machine */
    assert_true(told >= 2 * THREAD_NOTES - 100);
    lx_prefix_est_free(shared);
}

/* The admin JSON member and the Prometheus text. */
static void test_format(void **state)
{
    (void)state;
    static const lx_health_row_key_t keys[] = {{"gpu", "http://a:1", "m"},
                                               {"gpu", "http://b\"x", "m"}};
    lx_health_t *h = lx_health_new(NULL, keys, 2, 1, NULL);
    assert_non_null(h);
    lx_prefix_est_t *e = lx_prefix_est_new(2);
    uint64_t t = 4 * W;
    lx_prefix_est_note(e, 0, 11, SMALL, t);
    lx_prefix_est_note(e, 0, 11, SMALL, t);
    lx_prefix_est_note(e, 0, 11, SMALL, t);
    lx_prefix_est_note(e, 0, 12, SMALL, t);

    char buf[512];
    lx_strbuf_t sb = lx_strbuf_make(buf, sizeof(buf));
    LX_STRBUF_LIT(&sb, "{");
    lx_prefix_est_json(&sb, e, 0, t + 250);
    LX_STRBUF_LIT(&sb, ",");
    lx_prefix_est_json(&sb, e, 1, t);
    LX_STRBUF_LIT(&sb, "}");
    assert_false(sb.overflow);
    size_t n = lx_strbuf_len(&sb, buf);
    buf[n] = '\0';
    jsmn_parser p;
    jsmntok_t toks[64];
    jsmn_init(&p);
    assert_true(jsmn_parse(&p, buf, n, toks, 64) > 0); /* (one document, strict) */
    assert_non_null(strstr(buf, "{\"prefix_est\":{\"hit_rate\":0.5000,\"hits\":2,\"requests\":4,"
                                "\"span_ms\":250,\"total_hits\":2,\"total_requests\":4}"));
    assert_non_null(strstr(buf, ",\"prefix_est\":{\"hit_rate\":null,\"hits\":0,\"requests\":0,"));

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(lx_prefix_est_format_metrics(e, h, t, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "# TYPE llmux_fleet_prefix_hit_estimate gauge\n"));
    assert_non_null(strstr(text, "llmux_fleet_prefix_hit_estimate{provider=\"gpu\",endpoint="
                                 "\"http://a:1\",model=\"m\"} 0.500000\n"));
    assert_non_null(strstr(text, "llmux_fleet_prefix_hit_estimate{provider=\"gpu\",endpoint="
                                 "\"http://b\\\"x\",model=\"m\"} NaN\n"));
    assert_non_null(strstr(text, "# TYPE llmux_fleet_prefix_requests_total counter\n"));
    assert_non_null(strstr(text, "llmux_fleet_prefix_requests_total{provider=\"gpu\",endpoint="
                                 "\"http://a:1\",model=\"m\"} 4\n"));
    assert_non_null(strstr(text, "llmux_fleet_prefix_hits_estimated_total{provider=\"gpu\","
                                 "endpoint=\"http://a:1\",model=\"m\"} 2\n"));
    free(text);
    /* no table: the headers only */
    assert_int_equal(lx_prefix_est_format_metrics(NULL, h, t, &text, &len), 0);
    assert_null(strstr(text, "{provider"));
    free(text);
    lx_prefix_est_free(e);
    lx_health_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_where_sent), cmocka_unit_test(test_window),
        cmocka_unit_test(test_lagging_clock),  cmocka_unit_test(test_horizon),
        cmocka_unit_test(test_slot_sharing),   cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_threads),        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
