/*
 * test_fleet.c - the fleet choice, one test per rule of fleet.c: the cost formula, affinity
 * while not busy, an overloaded or full affinity replica passed over, a stale scrape counted as
 * saturated (and failing open), an unhealthy replica never chosen for its cache, all full ->
 * -1, random ties, determinism; and the prefix-hit estimate. Then waiting for a full home
 * (and for a moved one), the packed replica preference and its ranks, the bounded extra wait,
 * the moves table, and the learned max_in_flight.
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
    params.slack = 0.5; /* (the slack rule's tests below are written for this one) */
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

/* Every replica capped: a key whose home is full waits for it when the caller can queue
 * (-1, LX_FLEET_WAIT), else goes on clockwise; an uncapped home never makes it wait. */
static void test_wait_for_home(void **state)
{
    (void)state;
    uint64_t rnd = 3, key = key_homed_at(2);
    for (size_t k = 0; k < N; k++)
        reps[k].max_in_flight = 8;
    reps[2].in_flight = 8;
    params.wait_home = true;
    lx_fleet_choice_t why;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), -1);
    assert_int_equal(why.reason, LX_FLEET_WAIT);
    assert_int_equal(why.affinity, 2);
    /* no queue: the next replica clockwise, the one the queue ranks second */
    params.wait_home = false;
    uint8_t order[N];
    assert_int_equal(lx_ring_order(&ring, key, ~(uint64_t)0, order, N), N);
    int p = lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why);
    assert_int_equal(p, order[1]);
    assert_true(why.spilled);
    assert_int_equal(why.reason, LX_FLEET_AFFINITY);
    /* capped, below the cap and above the ring's bound (T = 3: ceil(1.5 * 4 / 4) = 2), within
     * the slack (0.375): kept, the cap bounds it, not the ring */
    params.wait_home = true;
    reps[2].in_flight = 3;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), 2);
    assert_false(why.spilled);
    /* an unavailable home is not waited for */
    reps[2].in_flight = 8;
    reps[2].available = false;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), order[1]);
    /* a home without a cap is never full */
    reps[2].available = true;
    reps[2].max_in_flight = 0;
    reps[2].in_flight = 0;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 2);
}

/* A moved key (params.home) goes to where it moved while that admits it, waits for it when
 * full, and falls back to its ring home when that replica is gone. */
static void test_moved_home(void **state)
{
    (void)state;
    uint64_t rnd = 4, key = key_homed_at(0);
    for (size_t k = 0; k < N; k++)
        reps[k].max_in_flight = 8;
    params.wait_home = true;
    params.home = 3;
    lx_fleet_choice_t why;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), 3);
    assert_int_equal(why.reason, LX_FLEET_AFFINITY);
    reps[3].in_flight = 8;
    assert_int_equal(lx_fleet_pick_ex(reps, N, key, &params, &rnd, &why), -1);
    assert_int_equal(why.reason, LX_FLEET_WAIT);
    assert_int_equal(why.affinity, 3);
    reps[3].available = false;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 0);
    params.home = 17; /* out of range: ignored */
    reps[3].available = true;
    assert_int_equal(lx_fleet_pick(reps, N, key, &params, &rnd), 0);
}

/* The packed preference: the ring's order, a moved home first; ranks; no key, no preference. */
static void test_prefs(void **state)
{
    (void)state;
    uint64_t s = 5;
    for (int k = 0; k < 500; k++) {
        uint64_t key = next_key(&s);
        uint8_t order[N];
        assert_int_equal(lx_ring_order(&ring, key, ~(uint64_t)0, order, N), N);
        uint64_t pr = lx_fleet_prefs(&ring, key, -1);
        for (unsigned i = 0; i < N; i++)
            assert_int_equal(lx_fleet_pref_rank(pr, order[i]), i);
        assert_int_equal(lx_fleet_pref_rank(pr, 9), LX_FLEET_PREFS); /* not a replica */
        uint64_t mv = lx_fleet_prefs(&ring, key, order[2]);
        assert_int_equal(lx_fleet_pref_rank(mv, order[2]), 0);
        assert_int_equal(lx_fleet_pref_rank(mv, order[0]), 1);
        assert_int_equal(lx_fleet_pref_rank(mv, order[1]), 2);
        assert_int_equal(lx_fleet_pref_rank(mv, order[3]), 3);
    }
    assert_true(lx_fleet_prefs(&ring, 0, -1) == LX_FLEET_NO_PREF);
    assert_true(lx_fleet_prefs(NULL, 7, -1) == LX_FLEET_NO_PREF);
    for (unsigned r = 0; r < N; r++)
        assert_int_equal(lx_fleet_pref_rank(LX_FLEET_NO_PREF, r), 0);
}

/* The bounded extra wait: home at once, second after one step, any after two, everything by
 * 3/4 of the queue's timeout. */
static void test_may_take(void **state)
{
    (void)state;
    assert_true(lx_fleet_may_take(0, 0, 250, 5000));
    assert_false(lx_fleet_may_take(1, 249, 250, 5000));
    assert_true(lx_fleet_may_take(1, 250, 250, 5000));
    assert_false(lx_fleet_may_take(2, 499, 250, 5000));
    assert_true(lx_fleet_may_take(2, 500, 250, 5000));
    assert_false(lx_fleet_may_take(LX_FLEET_PREFS, 499, 250, 5000));
    assert_true(lx_fleet_may_take(LX_FLEET_PREFS, 500, 250, 5000));
    assert_true(lx_fleet_may_take(3, 0, 0, 5000)); /* no wait configured: anywhere at once */
    /* a short timeout pulls both in: 400 ms steps, 700 ms timeout: any from 525 */
    assert_true(lx_fleet_may_take(1, 400, 400, 700));
    assert_false(lx_fleet_may_take(1, 399, 400, 700));
    assert_false(lx_fleet_may_take(2, 524, 400, 700));
    assert_true(lx_fleet_may_take(2, 525, 400, 700));
    /* 200 ms timeout: everything from 150 */
    assert_false(lx_fleet_may_take(1, 149, 400, 200));
    assert_true(lx_fleet_may_take(1, 150, 400, 200));
    assert_true(lx_fleet_may_take(3, 150, 400, 200));
    assert_true(lx_fleet_may_take(1, 6, UINT64_MAX, 8)); /* (no overflow) */
    assert_false(lx_fleet_may_take(1, 5, UINT64_MAX, 8));
}

/* The moves table: found until its time, per ring; a set holds LX_FLEET_WAYS keys, a fifth
 * takes the slot whose time ends first. */
static void test_moves(void **state)
{
    (void)state;
    lx_fleet_move_t t[LX_FLEET_MOVES];
    memset(t, 0, sizeof(t));
    const uint64_t sets = LX_FLEET_MOVES / LX_FLEET_WAYS;
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 0, 0), -1);
    lx_fleet_move(t, LX_FLEET_MOVES, 1234, 5, 2, 1000);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 5, 999), 2);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 5, 1000), -1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 4, 10), -1);
    lx_fleet_move(t, LX_FLEET_MOVES, 1234, 5, 3, 2000); /* its own slot, updated */
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 5, 1500), 3);
    /* three more keys of the same set fit beside it; a fifth evicts the earliest to end */
    for (uint64_t i = 1; i < LX_FLEET_WAYS; i++)
        lx_fleet_move(t, LX_FLEET_MOVES, 1234 + i * sets, 5, (int)i, 3000 + i);
    for (uint64_t i = 0; i < LX_FLEET_WAYS; i++)
        assert_true(lx_fleet_moved(t, LX_FLEET_MOVES, 1234 + i * sets, 5, 10) >= 0);
    lx_fleet_move(t, LX_FLEET_MOVES, 1234 + 9 * sets, 5, 1, 5000);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234, 5, 10), -1); /* ended first */
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234 + sets, 5, 10), 1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 1234 + 9 * sets, 5, 10), 1);
    lx_fleet_move(t, LX_FLEET_MOVES, 0, 5, 1, 1000); /* no key: nothing */
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 0, 5, 10), -1);
    assert_int_equal(lx_fleet_moved(NULL, LX_FLEET_MOVES, 1234, 5, 10), -1);
}

/* A first placement: its ring home while that holds fewer than the bound of live keys, else
 * the next in ring order; 32 keys over 4 replicas end within 9 of each. */
static void test_place(void **state)
{
    (void)state;
    static lx_fleet_move_t t[LX_FLEET_MOVES];
    memset(t, 0, sizeof(t));
    uint64_t key = key_homed_at(1);
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 0), 1);
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, key, 0, 0xd, 0),
                     lx_ring_home(&ring, key, 0xd)); /* its home unavailable */
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, 0, 0, 0xf, 0), -1);
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, NULL, key, 0, 0xf, 0), -1);
    /* replica 1 holds 3 live keys, the others none: cap = ceil(1.125 * 4 / 4) = 2 */
    uint64_t s = 41;
    for (int placed = 0; placed < 3;) {
        uint64_t k = next_key(&s);
        if (k != key) {
            lx_fleet_move(t, LX_FLEET_MOVES, k, 0, 1, 1000);
            placed++;
        }
    }
    uint8_t order[N];
    lx_ring_order(&ring, key, 0xf, order, N);
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 10), order[1]);
    /* the same keys on another ring, or expired, do not count */
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, key, 7, 0xf, 10), 1);
    assert_int_equal(lx_fleet_place(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 1000), 1);
    /* 32 keys placed in turn: no replica above ceil(1.125 * 32 / 4) = 9 (the ring alone: more) */
    memset(t, 0, sizeof(t));
    unsigned count[N] = {0}, ring_count[N] = {0};
    for (int i = 0; i < 32; i++) {
        uint64_t k = next_key(&s);
        int r = lx_fleet_place(t, LX_FLEET_MOVES, &ring, k, 0, 0xf, 0);
        assert_true(r >= 0 && r < N);
        lx_fleet_move(t, LX_FLEET_MOVES, k, 0, r, 1000);
        count[r]++;
        ring_count[lx_ring_home(&ring, k, 0xf)]++;
    }
    unsigned most = 0, ring_most = 0;
    for (int r = 0; r < N; r++) {
        fprintf(stderr, "replica %d: %u keys placed, %u by the ring alone\n", r, count[r],
                ring_count[r]);
        most = count[r] > most ? count[r] : most;
        ring_most = ring_count[r] > ring_most ? ring_count[r] : ring_most;
    }
    assert_true(most <= 9);
    assert_true(ring_most > 9); /* (this seed's keys: the bound does something) */
}

/* A key's home for a request: its move while that replica is live, else placed among the live
 * ones; refreshed either way (so a key in use never lapses), never on a dead replica. */
static void test_home(void **state)
{
    (void)state;
    static lx_fleet_move_t t[LX_FLEET_MOVES];
    memset(t, 0, sizeof(t));
    uint64_t key = key_homed_at(1);
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 0), 1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, key, 0, LX_FLEET_MOVE_TTL_MS - 1), 1);
    /* refreshed at each use: still there a TTL after the last one */
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 20000), 1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, key, 0, 20000 + LX_FLEET_MOVE_TTL_MS - 1),
                     1);
    /* moved elsewhere: kept while live */
    lx_fleet_move(t, LX_FLEET_MOVES, key, 0, 3, 30000);
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 0, 0xf, 25000), 3);
    /* its replica dead: placed again among the live ones, and recorded there */
    int h = lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 0, 0x7, 26000);
    assert_int_equal(h, lx_ring_home(&ring, key, 0x7));
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, key, 0, 26001), h);
    h = lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 0, 0xd, 27000); /* (1 dead too) */
    assert_true(h == 0 || h == 2 || h == 3);
    assert_int_equal(h, lx_ring_home(&ring, key, 0xd));
    /* nothing live, no key, no ring: -1, nothing recorded */
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, &ring, key, 5, 0, 0), -1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, key, 5, 1), -1);
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, &ring, 0, 0, 0xf, 0), -1);
    assert_int_equal(lx_fleet_home(t, LX_FLEET_MOVES, NULL, 77, 0, 0xf, 0), -1);
    assert_int_equal(lx_fleet_moved(t, LX_FLEET_MOVES, 77, 0, 1), -1);
}

/* The preference over the live replicas: a dead one takes no rank. */
static void test_prefs_in(void **state)
{
    (void)state;
    uint64_t s = 9;
    for (int k = 0; k < 200; k++) {
        uint64_t key = next_key(&s);
        uint8_t order[N];
        lx_ring_order(&ring, key, ~(uint64_t)0, order, N);
        uint64_t live = 0xfu & ~(1u << order[1]); /* the second dead */
        uint64_t pr = lx_fleet_prefs_in(&ring, key, -1, live);
        assert_int_equal(lx_fleet_pref_rank(pr, order[0]), 0);
        assert_int_equal(lx_fleet_pref_rank(pr, order[2]), 1);
        assert_int_equal(lx_fleet_pref_rank(pr, order[3]), 2);
        assert_int_equal(lx_fleet_pref_rank(pr, order[1]), LX_FLEET_PREFS);
        pr = lx_fleet_prefs_in(&ring, key, order[3], live); /* a home placed: first */
        assert_int_equal(lx_fleet_pref_rank(pr, order[3]), 0);
        assert_int_equal(lx_fleet_pref_rank(pr, order[0]), 1);
        assert_int_equal(lx_fleet_pref_rank(pr, order[2]), 2);
        assert_true(lx_fleet_prefs_in(&ring, key, -1, ~(uint64_t)0) ==
                    lx_fleet_prefs(&ring, key, -1));
    }
    assert_true(lx_fleet_prefs_in(&ring, 5, -1, 0) == LX_FLEET_NO_PREF); /* none live */
}

/* The bound on home first: older by two steps goes first (also near the timeout: the 3/4
 * clause it had collapsed prefix hits); never a request as old as the home's own or younger. */
static void test_overdue(void **state)
{
    (void)state;
    assert_false(lx_fleet_overdue(1000, 800, 300)); /* 200 ms older: the home's own */
    assert_false(lx_fleet_overdue(1399, 800, 300));
    assert_true(lx_fleet_overdue(1400, 800, 300)); /* two steps older */
    assert_false(lx_fleet_overdue(800, 800, 300));
    assert_false(lx_fleet_overdue(700, 800, 300));
    assert_false(lx_fleet_overdue(3750, 3500, 300)); /* late, but within two steps: its own */
    assert_true(lx_fleet_overdue(1, 0, 0));          /* no affinity wait: oldest first */
    assert_false(lx_fleet_overdue(0, 0, 0));
    assert_false(lx_fleet_overdue(7, 5, UINT64_MAX)); /* (no overflow) */
}

/* A server whose batch holds <limit>: llmux sends its cap, the server runs up to limit and
 * queues the rest; one scrape per step. The cap learned settles at limit, give or take one. */
static uint32_t drive(uint32_t state, uint32_t limit, int steps, uint32_t *lo, uint32_t *hi)
{
    *lo = UINT32_MAX;
    *hi = 0;
    for (int i = 0; i < steps; i++) {
        uint32_t sent = lx_fleet_learned_cap(state);
        uint32_t running = sent < limit ? sent : limit, waiting = sent - running;
        state = lx_fleet_learn_cap(state, true, waiting, running);
        uint32_t cap = lx_fleet_learned_cap(state);
        if (i >= steps / 2) {
            *lo = cap < *lo ? cap : *lo;
            *hi = cap > *hi ? cap : *hi;
        }
    }
    return state;
}

static void test_learn_cap(void **state)
{
    (void)state;
    /* nothing learned without both signals, or with no queue and nothing known */
    assert_int_equal(lx_fleet_learn_cap(0, false, 5, 8), 0);
    assert_int_equal(lx_fleet_learn_cap(0, true, 0, 8), 0);
    assert_int_equal(lx_fleet_learned_cap(0), 0);
    /* the first queueing scrape sets it to all the server holds */
    uint32_t st = lx_fleet_learn_cap(0, true, 3, 8);
    assert_int_equal(lx_fleet_learned_cap(st), 11);
    /* one transient (waiting 1 while running 3) moves it by a quarter only */
    uint32_t t = lx_fleet_learn_cap(st, true, 1, 3);
    assert_int_equal(lx_fleet_learned_cap(t), 9);
    /* below the cap without a queue: nothing learned */
    assert_int_equal(lx_fleet_learn_cap(st, true, 0, 5), st);
    /* from a wrong start, up or down, it settles at the server's limit, give or take one */
    uint32_t lo, hi;
    drive(lx_fleet_learn_cap(0, true, 1, 3), 8, 400, &lo, &hi);
    assert_true(lo >= 8 && hi <= 9);
    drive(lx_fleet_learn_cap(0, true, 1, 30), 8, 400, &lo, &hi);
    assert_true(lo >= 8 && hi <= 9);
    drive(lx_fleet_learn_cap(0, true, 1, 1), 64, 2000, &lo, &hi);
    assert_true(lo >= 64 && hi <= 65);
    /* a first scrape caught between steps (running 1, waiting 3) under a batch of 64: the cap
     * is 64 within 160 scrapes (8 s at 50 ms), not a quarter request per scrape (240) */
    drive(lx_fleet_learn_cap(0, true, 3, 1), 64, 160, &lo, &hi);
    assert_true(lo >= 64 && hi <= 65);
    /* the state never overflows */
    uint32_t big = lx_fleet_learn_cap(0, true, 1, UINT32_MAX);
    assert_int_equal(lx_fleet_learned_cap(big), 65535);
    assert_int_equal(lx_fleet_learned_cap(lx_fleet_learn_cap(big, true, 0, UINT32_MAX)), 65535);
    /* the configured cap wins; no metrics, no learned cap */
    assert_int_equal(lx_fleet_cap_of(5, true, st), 5);
    assert_int_equal(lx_fleet_cap_of(0, true, st), 11);
    assert_int_equal(lx_fleet_cap_of(0, false, st), 0);
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
        cmocka_unit_test_setup(test_wait_for_home, setup),
        cmocka_unit_test_setup(test_moved_home, setup),
        cmocka_unit_test_setup(test_prefs, setup),
        cmocka_unit_test_setup(test_may_take, setup),
        cmocka_unit_test_setup(test_moves, setup),
        cmocka_unit_test_setup(test_place, setup),
        cmocka_unit_test_setup(test_home, setup),
        cmocka_unit_test_setup(test_prefs_in, setup),
        cmocka_unit_test_setup(test_overdue, setup),
        cmocka_unit_test_setup(test_learn_cap, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
