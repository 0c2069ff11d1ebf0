/*
 * test_ring.c - consistent hashing with bounded loads: the spread of keys over replicas, the
 * keys that move when a replica joins or leaves, the load cap under a skewed stream,
 * unavailable replicas, the capacity formula and determinism. Figures are printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "route/ring.h"

#define KEYS 100000
#define ALL  (~(uint64_t)0)

static uint64_t points_a[LX_RING_MAX_REPLICAS * LX_RING_VNODES];
static uint64_t points_b[LX_RING_MAX_REPLICAS * LX_RING_VNODES];

static uint64_t next_key(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Ids of replicas named like endpoints: http://10.0.0.<k>:8000. */
static void make_ids(uint64_t *ids, size_t n, size_t first)
{
    for (size_t k = 0; k < n; k++) {
        char url[64];
        int len = snprintf(url, sizeof(url), "http://10.0.0.%zu:8000", first + k);
        ids[k] = lx_ring_id(url, (size_t)len);
    }
}

static void test_build(void **state)
{
    (void)state;
    lx_ring_t r;
    uint64_t ids[LX_RING_MAX_REPLICAS + 1];
    make_ids(ids, LX_RING_MAX_REPLICAS + 1, 1);
    assert_int_equal(lx_ring_build(&r, ids, 0, 10, points_a, 1000), LX_EINVAL);
    assert_int_equal(lx_ring_build(&r, ids, 65, 10, points_a, 1000), LX_EINVAL);
    assert_int_equal(lx_ring_build(&r, ids, 4, 0, points_a, 1000), LX_EINVAL);
    assert_int_equal(lx_ring_build(&r, ids, 4, LX_RING_MAX_VNODES + 1, points_a, 100000),
                     LX_EINVAL);
    assert_int_equal(lx_ring_build(&r, ids, 4, 10, points_a, 39), LX_EINVAL);
    assert_int_equal(lx_ring_build(&r, ids, 4, 10, points_a, 40), 0);
    assert_int_equal(r.n_points, 40);
    for (uint32_t k = 1; k < r.n_points; k++)
        assert_true(r.points[k - 1] <= r.points[k]);
    assert_int_equal(lx_ring_build(&r, ids, 64, LX_RING_VNODES, points_a, sizeof(points_a) / 8), 0);
    /* all 64 reachable */
    uint64_t seen = 0, s = 1;
    for (int k = 0; k < 20000; k++)
        seen |= (uint64_t)1 << lx_ring_home(&r, next_key(&s), ALL);
    assert_true(seen == ALL);
    assert_int_equal(lx_ring_home(&r, 5, 0), -1);
    assert_int_equal(lx_ring_pick(&r, 5, (uint32_t[64]){0}, 0, 250, NULL), -1);
}

/* 100,000 keys over n replicas of LX_RING_VNODES points: every share within 20% of the mean
 * up to 16 replicas, 30% at 64 (the spread grows with the number of replicas that can be the
 * extreme one; measured figures are printed). */
static void test_distribution(void **state)
{
    (void)state;
    static const size_t ns[] = {3, 4, 8, 16, 64};
    for (size_t c = 0; c < sizeof(ns) / sizeof(ns[0]); c++) {
        size_t n = ns[c];
        uint64_t ids[LX_RING_MAX_REPLICAS];
        make_ids(ids, n, 1);
        lx_ring_t r;
        assert_int_equal(lx_ring_build(&r, ids, n, LX_RING_VNODES, points_a, sizeof(points_a) / 8),
                         0);
        uint32_t count[LX_RING_MAX_REPLICAS] = {0};
        uint64_t s = 42;
        for (int k = 0; k < KEYS; k++)
            count[lx_ring_home(&r, next_key(&s), ALL)]++;
        double mean = (double)KEYS / (double)n, lo = 1e9, hi = 0;
        for (size_t i = 0; i < n; i++) {
            lo = count[i] < lo ? count[i] : lo;
            hi = count[i] > hi ? count[i] : hi;
        }
        printf("ring n=%zu vnodes=%d: shares %.3f .. %.3f of the mean\n", n, LX_RING_VNODES,
               lo / mean, hi / mean);
        double tol = n <= 16 ? 0.2 : 0.3;
        assert_true(lo >= (1 - tol) * mean && hi <= (1 + tol) * mean);
    }
}

/* A replica leaving moves only its own keys (about 1/n), and the survivors' points are
 * unchanged: marking it unavailable gives the same answers as the ring rebuilt without it. A
 * replica joining takes keys only for itself, about 1/(n + 1). */
static void test_movement(void **state)
{
    (void)state;
    const size_t n = 8, gone = 3;
    uint64_t ids[9], fewer[7];
    make_ids(ids, 9, 1);
    for (size_t k = 0, o = 0; k < n; k++)
        if (k != gone)
            fewer[o++] = ids[k];
    lx_ring_t full, less, more;
    assert_int_equal(lx_ring_build(&full, ids, n, LX_RING_VNODES, points_a, sizeof(points_a) / 8),
                     0);
    assert_int_equal(
        lx_ring_build(&less, fewer, n - 1, LX_RING_VNODES, points_b, 8 * LX_RING_VNODES), 0);
    uint64_t s = 7;
    size_t moved = 0, was_gone = 0;
    for (int k = 0; k < KEYS; k++) {
        uint64_t key = next_key(&s);
        int a = lx_ring_home(&full, key, ALL), b = lx_ring_home(&less, key, ALL);
        uint64_t ida = ids[a], idb = fewer[b];
        if ((size_t)a == gone)
            was_gone++;
        if (ida != idb) {
            moved++;
            assert_int_equal(a, gone); /* only the leaver's keys move */
        }
        assert_true(ids[lx_ring_home(&full, key, ALL & ~((uint64_t)1 << gone))] == idb);
    }
    assert_int_equal(moved, was_gone);
    printf("ring leave (8 -> 7): %.2f%% of keys moved (1/n = 12.50%%)\n", 100.0 * moved / KEYS);
    assert_true(moved <= KEYS * 1.3 / 8 && moved >= KEYS * 0.7 / 8);

    static uint64_t points_c[9 * LX_RING_VNODES];
    assert_int_equal(lx_ring_build(&more, ids, n + 1, LX_RING_VNODES, points_c, 9 * LX_RING_VNODES),
                     0);
    s = 7;
    moved = 0;
    for (int k = 0; k < KEYS; k++) {
        uint64_t key = next_key(&s);
        int a = lx_ring_home(&full, key, ALL), b = lx_ring_home(&more, key, ALL);
        if (a != b) {
            moved++;
            assert_int_equal(b, (int)n); /* only to the joiner */
        }
    }
    printf("ring join (8 -> 9): %.2f%% of keys moved (1/(n+1) = 11.11%%)\n", 100.0 * moved / KEYS);
    assert_true(moved <= KEYS * 1.3 / 9 && moved >= KEYS * 0.7 / 9);
}

/* cap = ceil((1 + eps) (T + 1) / n_active), counted over the active replicas only. */
static void test_cap(void **state)
{
    (void)state;
    uint64_t ids[4];
    make_ids(ids, 4, 1);
    lx_ring_t r;
    assert_int_equal(lx_ring_build(&r, ids, 4, 16, points_a, 64), 0);
    uint32_t loads[4] = {3, 0, 0, 0};
    assert_int_equal(lx_ring_cap(&r, loads, ALL, 0), 1);    /* ceil(4 / 4) */
    assert_int_equal(lx_ring_cap(&r, loads, ALL, 250), 2);  /* ceil(1.25 * 4 / 4) */
    assert_int_equal(lx_ring_cap(&r, loads, 0x3, 0), 2);    /* ceil(4 / 2) */
    assert_int_equal(lx_ring_cap(&r, loads, 0x3, 1000), 4); /* ceil(2 * 4 / 2) */
    assert_int_equal(lx_ring_cap(&r, loads, 0x2, 0), 1);    /* replica 0's load is not counted */
    assert_int_equal(lx_ring_cap(&r, loads, 0, 250), 0);
    uint32_t big[4] = {4000000000u, 4000000000u, 4000000000u, 4000000000u};
    assert_int_equal(lx_ring_cap(&r, big, ALL, 250), 5000000001ull); /* ceil(1.25 * (16e9+1) / 4) */

    /* the home at the cap passes the key on, and says so */
    uint64_t key = 99;
    int home = lx_ring_home(&r, key, ALL);
    uint32_t l2[4] = {0};
    bool spilled = true;
    assert_int_equal(lx_ring_pick(&r, key, l2, ALL, 0, &spilled), home);
    assert_false(spilled);
    l2[home] = 2; /* T = 2: cap = ceil(3 / 4) = 1 */
    int next = lx_ring_pick(&r, key, l2, ALL, 0, &spilled);
    assert_true(next != home && next >= 0);
    assert_true(spilled);
    l2[home] = 1; /* cap = ceil(1.25 * 2 / 4) = 1: still full */
    assert_true(lx_ring_pick(&r, key, l2, ALL, 250, NULL) != home);
    assert_true(lx_ring_pick(&r, key, l2, ALL, 1000, NULL) != home);    /* ceil(2 * 2 / 4) = 1 */
    assert_int_equal(lx_ring_pick(&r, key, l2, ALL, 3000, NULL), home); /* ceil(4 * 2 / 4) = 2 */
}

/* A stream of arrivals and departures with one very hot key (half the requests): no pick
 * ever takes a replica past the cap, ceil((1 + eps) x the mean after it). */
static void test_bounded_stream(void **state)
{
    (void)state;
    const size_t n = 5;
    const uint32_t eps = 250;
    uint64_t ids[5];
    make_ids(ids, n, 1);
    lx_ring_t r;
    assert_int_equal(lx_ring_build(&r, ids, n, LX_RING_VNODES, points_a, sizeof(points_a) / 8), 0);
    uint32_t loads[5] = {0};
    enum { LIVE = 200 };
    int live[LIVE]; /* the replica of each request in flight, -1: none */
    for (int k = 0; k < LIVE; k++)
        live[k] = -1;
    uint64_t s = 3, hot = 0xfeedull;
    size_t spills = 0, picks = 0, worst_over = 0;
    for (int step = 0; step < 50000; step++) {
        size_t slot = next_key(&s) % LIVE;
        if (live[slot] >= 0) { /* it finishes */
            loads[live[slot]]--;
            live[slot] = -1;
            continue;
        }
        uint64_t key = next_key(&s) % 2 == 0 ? hot : next_key(&s);
        uint64_t cap = lx_ring_cap(&r, loads, ALL, eps);
        bool spilled;
        int p = lx_ring_pick(&r, key, loads, ALL, eps, &spilled);
        assert_true(p >= 0);
        assert_true((uint64_t)loads[p] + 1 <= cap);
        loads[p]++;
        live[slot] = p;
        picks++;
        spills += spilled;
        uint32_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += loads[i];
        assert_true(loads[p] <= (1250ull * total + 1000 * n - 1) / (1000 * n));
        worst_over = loads[p] > worst_over ? loads[p] : worst_over;
    }
    printf("ring stream: %zu picks, %.1f%% spilled past a full home, most loaded at a pick %zu "
           "(mean about %d)\n",
           picks, 100.0 * spills / picks, worst_over, LIVE / 2 / 5);
    assert_true(spills > 0);
}

/* Unavailable replicas are never picked, whatever their load or position. */
static void test_unavailable(void **state)
{
    (void)state;
    uint64_t ids[6];
    make_ids(ids, 6, 1);
    lx_ring_t r;
    assert_int_equal(lx_ring_build(&r, ids, 6, LX_RING_VNODES, points_a, sizeof(points_a) / 8), 0);
    uint32_t loads[6] = {0, 0, 0, 0, 0, 0};
    uint64_t s = 11;
    for (int k = 0; k < 10000; k++) {
        uint64_t key = next_key(&s);
        uint64_t avail = next_key(&s) & 0x3f;
        int p = lx_ring_pick(&r, key, loads, avail, 250, NULL);
        if (avail == 0) {
            assert_int_equal(p, -1);
            continue;
        }
        assert_true(p >= 0 && (avail >> p & 1u));
        assert_int_equal(p, lx_ring_home(&r, key, avail));
    }
    /* only one available, loaded far above the others: still the one */
    uint32_t heavy[6] = {0, 0, 50, 0, 0, 0};
    assert_int_equal(lx_ring_pick(&r, 1, heavy, 0x4, 0, NULL), 2);
}

/* Same ids and inputs, same answers: whatever order the replicas are listed in, a key maps to
 * the same id; repeated picks agree. */
static void test_determinism(void **state)
{
    (void)state;
    uint64_t ids[7], rev[7];
    make_ids(ids, 7, 20);
    for (size_t k = 0; k < 7; k++)
        rev[k] = ids[6 - k];
    lx_ring_t a, b;
    assert_int_equal(lx_ring_build(&a, ids, 7, LX_RING_VNODES, points_a, sizeof(points_a) / 8), 0);
    assert_int_equal(lx_ring_build(&b, rev, 7, LX_RING_VNODES, points_b, sizeof(points_b) / 8), 0);
    uint32_t la[7] = {1, 2, 3, 0, 5, 1, 2}, lb[7];
    for (size_t k = 0; k < 7; k++)
        lb[k] = la[6 - k];
    uint64_t s = 5;
    for (int k = 0; k < 20000; k++) {
        uint64_t key = next_key(&s);
        int pa = lx_ring_pick(&a, key, la, ALL, 100, NULL);
        assert_int_equal(pa, lx_ring_pick(&a, key, la, ALL, 100, NULL));
        assert_true(ids[pa] == rev[lx_ring_pick(&b, key, lb, ALL, 100, NULL)]);
    }
    assert_true(lx_ring_id("http://a", 8) == lx_ring_id("http://a", 8));
    assert_true(lx_ring_id("http://a", 8) != lx_ring_id("http://b", 8));
}

/* The order: distinct available replicas, the home first, each the next the walk meets: it
 * is where lx_ring_pick sends the key when every replica before it is at capacity. */
static void test_order(void **state)
{
    (void)state;
    uint64_t ids[6];
    make_ids(ids, 6, 3);
    lx_ring_t r;
    assert_int_equal(lx_ring_build(&r, ids, 6, LX_RING_VNODES, points_a, sizeof(points_a) / 8), 0);
    uint64_t s = 17;
    for (int k = 0; k < 5000; k++) {
        uint64_t key = next_key(&s);
        uint64_t avail = next_key(&s) & 0x3f;
        uint8_t order[6];
        size_t n = lx_ring_order(&r, key, avail, order, 6);
        assert_int_equal(n, (size_t)__builtin_popcountll(avail));
        if (n == 0)
            continue;
        assert_int_equal(order[0], lx_ring_home(&r, key, avail));
        uint64_t seen = 0;
        uint32_t loads[6] = {0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < n; i++) {
            assert_true(avail >> order[i] & 1u);
            assert_false(seen >> order[i] & 1u);
            seen |= 1ull << order[i];
            /* the ones before it full (eps 0: cap = ceil((T + 1) / n)), it and the rest empty */
            if (i + 1 < n) {
                memset(loads, 0, sizeof(loads));
                for (size_t j = 0; j <= i; j++)
                    loads[order[j]] = 1000;
                assert_int_equal(lx_ring_pick(&r, key, loads, avail, 0, NULL), order[i + 1]);
            }
        }
        assert_int_equal(lx_ring_order(&r, key, avail, order, 2), n < 2 ? n : 2);
    }
    uint8_t none[1];
    assert_int_equal(lx_ring_order(&r, 1, 0x3f, none, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),          cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_movement),       cmocka_unit_test(test_cap),
        cmocka_unit_test(test_bounded_stream), cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_determinism),    cmocka_unit_test(test_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
