/*
 * test_fleet.c - the fleet choice, one test per rule of fleet.c: the cost formula, affinity
 * while not busy, an overloaded or full affinity replica passed over, a stale scrape counted as
 * saturated (and failing open), an unhealthy replica never chosen for its cache, all full ->
 * -1, random ties, determinism; and the prefix-hit estimate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route/fleet.h"

#define N 4

static uint64_t points[N * LX_RING_VNODES];
static lx_ring_t ring;
static lx_fleet_params_t params;
static lx_fleet_rep_t reps[N];

static uint64_t next_key(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* N idle, healthy replicas with fresh metrics, and their ring. */
static int setup(void **state)
{
    (void)state;
    uint64_t ids[N];
    for (size_t k = 0; k < N; k++) {
        char url[32];
        int len = snprintf(url, sizeof(url), "http://gpu%zu:8000", k);
        ids[k] = lx_ring_id(url, (size_t)len);
    }
    if (lx_ring_build(&ring, ids, N, LX_RING_VNODES, points, N * LX_RING_VNODES) != 0)
        return -1;
    lx_fleet_params_default(&params);
    params.ring = &ring;
    for (size_t k = 0; k < N; k++) {
        memset(&reps[k], 0, sizeof(reps[k]));
        reps[k].available = reps[k].metrics = reps[k].fresh = true;
        reps[k].health = 1.0;
    }
    return 0;
}

/* A key whose home (all replicas available) is replica <want>. */
static uint64_t key_homed_at(int want)
{
    uint64_t s = 99;
    for (int k = 0; k < 10000; k++) {
        uint64_t key = next_key(&s);
        if (lx_ring_home(&ring, key, ~(uint64_t)0) == want)
            return key;
    }
    fail_msg("no key for replica %d", want);
    return 0;
}

static void test_cost(void **state)
{
    (void)state;
    lx_fleet_rep_t r = {.available = true,
                        .metrics = true,
                        .fresh = true,
                        .in_flight = 4,
                        .running = 10,
                        .waiting = 5,
                        .kv_ppm = 400000,
                        .max_in_flight = 20,
                        .health = 0.5};
    /* f = max(4, 15) / 20, q = 5 / 5, k = 0.4 / 0.8, h = 0.5 */
    assert_float_equal(lx_fleet_cost(&r, &params), 0.75 + 1.0 + 0.5 + 0.5, 1e-12);
    r.in_flight = 18; /* llmux sees more than the last scrape */
    assert_float_equal(lx_fleet_cost(&r, &params), 0.9 + 1.0 + 0.5 + 0.5, 1e-12);
    /* no metrics: llmux's count against flight_sat (32) */
    lx_fleet_rep_t m = {.available = true, .in_flight = 16, .waiting = 99, .health = 1.0};
    assert_float_equal(lx_fleet_cost(&m, &params), 0.5, 1e-12);
    /* stale: queue and KV count as saturated, the server's counts are not used */
    lx_fleet_rep_t s = {
        .available = true, .metrics = true, .in_flight = 8, .running = 64, .health = 1.0};
    assert_float_equal(lx_fleet_cost(&s, &params), 1.0 + 1.0 + 0.25, 1e-12);
    assert_true(lx_fleet_admits(&s));
    s.max_in_flight = 8;
    assert_false(lx_fleet_admits(&s));
    /* health out of range or not a number: clamped, NaN counts as 0 */
    s.health = -1; /* q 1, k 1, f 8 / 8, h 1 */
    assert_float_equal(lx_fleet_cost(&s, &params), 4.0, 1e-12);
    s.health = NAN;
    assert_float_equal(lx_fleet_cost(&s, &params), 4.0, 1e-12);
    s.health = 7;
    assert_float_equal(lx_fleet_cost(&s, &params), 3.0, 1e-12);
    s.health = 1.0;
    s.max_in_flight = 9;
    s.available = false;
    assert_false(lx_fleet_admits(&s));
}

/* Idle or lightly loaded, a key always goes to its ring replica. */
static void test_affinity_holds(void **state)
{
    (void)state;
    uint64_t s = 1, rnd = 5;
    for (int k = 0; k < 2000; k++) {
        uint64_t key = next_key(&s);
        lx_fleet_choice_t why;
        int p = lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why);
        assert_int_equal(p, lx_ring_home(&ring, key, ~(uint64_t)0));
        assert_int_equal(why.reason, LX_FLEET_AFFINITY);
        assert_false(why.spilled);
    }
    /* a little busier than the others (cost 0.4 + 0.0625 within the 0.5 slack): kept */
    uint64_t key = key_homed_at(2);
    reps[2].waiting = 2;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 2);
}

/* A busy affinity replica is passed over for the least costly one. */
static void test_overloaded_passed_over(void **state)
{
    (void)state;
    uint64_t rnd = 5, key = key_homed_at(1);
    reps[1].waiting = 3; /* cost 0.6 + occupancy > 0.5 slack over the idle ones */
    reps[3].waiting = 1; /* 0.2: not the least */
    lx_fleet_choice_t why;
    for (int k = 0; k < 200; k++) {
        int p = lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why);
        assert_true(p == 0 || p == 2);
        assert_int_equal(why.reason, LX_FLEET_LOAD);
        assert_int_equal(why.affinity, 1);
    }
    /* KV nearly full alone does it too */
    reps[1].waiting = 0;
    reps[1].kv_ppm = 700000;
    assert_true(lx_fleet_pick(reps, N, key, &params, &rnd) != 1);
    reps[1].kv_ppm = 300000; /* 0.375: kept */
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 1);

    /* llmux's own spread: the home at the ring's capacity hands the key to the next replica
     * clockwise, which is then the affinity choice */
    reps[1].kv_ppm = 0;
    reps[1].in_flight = 3; /* T = 3: cap = ceil(1.25 * 4 / 4) = 2 */
    reps[1].max_in_flight = 100;
    int p = lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why);
    assert_true(why.spilled);
    assert_true(why.affinity != 1 && why.affinity >= 0);
    assert_int_equal(p, why.affinity);
    assert_int_equal(why.reason, LX_FLEET_AFFINITY);
}

/* A stale scrape counts as saturated: its replica loses to any fresh one that admits the
 * request, even one with a queue; with only stale ones left the fleet is still served. */
static void test_stale_is_saturated(void **state)
{
    (void)state;
    uint64_t rnd = 9, key = key_homed_at(0);
    reps[0].fresh = false;
    for (size_t k = 1; k < N; k++)
        reps[k].waiting = 4; /* cost 0.8 + 0.125 each, below the stale one's 2.0 */
    lx_fleet_choice_t why;
    for (int k = 0; k < 100; k++) {
        assert_true(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why) != 0);
        assert_false(why.stale_only);
    }
    assert_true(lx_fleet_cost(&reps[0], &params) >= 2.0);
    /* saturated means out while a fresh replica admits the request, even a deeply queued one */
    for (size_t k = 1; k < N; k++)
        reps[k].waiting = 40;
    for (int k = 0; k < 100; k++)
        assert_true(lx_fleet_pick(reps, N, k % 2 ? key : 0, &params, &rnd) != 0);
    /* every scrape stale: fail open, affinity among them */
    for (size_t k = 0; k < N; k++)
        reps[k].fresh = false;
    int p = lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why);
    assert_int_equal(p, 0);
    assert_true(why.stale_only);
    assert_int_equal(why.reason, LX_FLEET_AFFINITY);
    /* a server without metrics is never "stale" */
    for (size_t k = 0; k < N; k++)
        reps[k].metrics = false;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), 0);
    assert_false(why.stale_only);
}

/* An unavailable replica is never chosen, however warm its cache and loaded the others. */
static void test_unhealthy_never(void **state)
{
    (void)state;
    uint64_t s = 3, rnd = 1;
    for (size_t k = 0; k < N; k++)
        reps[k].waiting = 50;
    reps[2].available = false;
    reps[2].waiting = 0;
    for (int k = 0; k < 3000; k++) {
        lx_fleet_choice_t why;
        int p = lx_fleet_pick_ex(reps, N, next_key(&s), &params, &rnd, &why);
        assert_true(p >= 0 && p != 2);
        assert_true(why.affinity != 2);
    }
}

/* All unavailable or full: -1, the caller queues; one with room left takes it. */
static void test_all_full(void **state)
{
    (void)state;
    uint64_t rnd = 1, key = key_homed_at(3);
    for (size_t k = 0; k < N; k++) {
        reps[k].max_in_flight = 8;
        reps[k].in_flight = 8;
    }
    reps[1].available = false;
    reps[1].in_flight = 0;
    lx_fleet_choice_t why;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), -1);
    assert_int_equal(why.reason, LX_FLEET_NONE);
    assert_int_equal(lx_fleet_pick(reps, N, 0, &params, &rnd), -1);
    assert_int_equal(lx_fleet_pick(reps, 0, key, &params, &rnd), -1);
    reps[0].in_flight = 7;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 0);
    reps[0].max_in_flight = 0; /* unknown: never full */
    reps[0].in_flight = 1000;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 0);
}

/* No key (or no ring, or a ring of other replicas): the least costly, ties at random, about
 * evenly; the same random state gives the same sequence. */
static void test_least_cost_and_ties(void **state)
{
    (void)state;
    uint64_t rnd = 77, key = key_homed_at(1);
    unsigned count[N] = {0};
    for (int k = 0; k < 4000; k++)
        count[lx_fleet_pick(reps, N, 0, &params, &rnd)]++;
    for (size_t k = 0; k < N; k++)
        assert_true(count[k] > 800 && count[k] < 1200);
    reps[2].in_flight = 1; /* the only non-idle one */
    reps[0].waiting = 1;
    memset(count, 0, sizeof(count));
    for (int k = 0; k < 400; k++)
        count[lx_fleet_pick(reps, N, 0, &params, &rnd)]++;
    assert_int_equal(count[1] + count[3], 400);
    /* a ring over another number of replicas is not used */
    lx_fleet_choice_t why;
    lx_fleet_pick_ex(reps, N - 1, key, &params, &rnd, &why);
    assert_int_equal(why.affinity, -1);
    assert_int_equal(why.reason, LX_FLEET_LOAD);

    uint64_t r1 = 123, r2 = 123, s = 8;
    for (int k = 0; k < 500; k++) {
        uint64_t kk = k % 3 == 0 ? 0 : next_key(&s);
        assert_int_equal(lx_fleet_pick(reps, N, kk, &params, &r1),
                         lx_fleet_pick(reps, N, kk, &params, &r2));
    }
    assert_true(r1 == r2 && r1 != 123);
}

/* The estimate: the leading blocks a replica's table holds, stopping at the first miss. */
static void test_prefix_hit_estimate(void **state)
{
    (void)state;
    uint64_t table[1024] = {0};
    uint64_t chain[8] = {11, 22, 33, 44, 55, 66, 77, 88};
    uint64_t other[8] = {11, 22, 33, 99, 55, 66, 77, 88};
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 1024, chain, 8), 0);
    lx_fleet_prefix_note(table, 1024, chain, 8);
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 1024, chain, 8), 8);
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 1024, other, 8), 3);
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 1024, chain, 5), 5);
    /* a colliding block overwrites its slot: the older prefix now stops there */
    uint64_t clash = 22 + 1024;
    lx_fleet_prefix_note(table, 1024, &clash, 1);
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 1024, chain, 8), 1);
    assert_int_equal(lx_fleet_prefix_hit_estimate(table, 0, chain, 8), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_cost, setup),
        cmocka_unit_test_setup(test_affinity_holds, setup),
        cmocka_unit_test_setup(test_overloaded_passed_over, setup),
        cmocka_unit_test_setup(test_stale_is_saturated, setup),
        cmocka_unit_test_setup(test_unhealthy_never, setup),
        cmocka_unit_test_setup(test_all_full, setup),
        cmocka_unit_test_setup(test_least_cost_and_ties, setup),
        cmocka_unit_test_setup(test_prefix_hit_estimate, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
