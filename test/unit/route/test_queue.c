/*
 * test_queue.c - the admission queue: order (FIFO, interactive first), the anti-starvation
 * share of batch, refusal when full, the eviction of the newest batch request, expiry in
 * deadline order on a fake clock, removal from anywhere (and of nodes not queued), Retry-After
 * from a known drain rate and without one, and 100,000 random operations checked against a
 * reference model made of plain arrays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "route/queue.h"

#define I LX_QUEUE_INTERACTIVE
#define B LX_QUEUE_BATCH

typedef struct req {
    int id;
    lx_queue_node_t node;
} req_t;

static int id_of(const lx_queue_node_t *n)
{
    return n ? lx_list_entry(n, req_t, node)->id : -1;
}

static void reqs_init(req_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        r[i].id = i;
        lx_queue_node_init(&r[i].node);
    }
}

static bool push(lx_queue_t *q, req_t *r, lx_queue_class_t cls, uint64_t now)
{
    lx_queue_node_t *ev = NULL;
    bool ok = lx_queue_push(q, &r->node, cls, now, &ev);
    assert_null(ev);
    return ok;
}

static int pop_id(lx_queue_t *q, uint64_t now)
{
    return id_of(lx_queue_pop(q, now));
}

static void test_order(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[6];
    reqs_init(r, 6);
    lx_queue_init(&q, 16, 1000, 0);
    assert_null(lx_queue_pop(&q, 0));
    assert_true(push(&q, &r[0], I, 0));
    assert_true(push(&q, &r[1], B, 1));
    assert_true(push(&q, &r[2], I, 2));
    assert_true(push(&q, &r[3], B, 3));
    assert_true(push(&q, &r[4], I, 4));
    assert_true(push(&q, &r[5], (lx_queue_class_t)7, 5)); /* unknown class: interactive */
    assert_int_equal(lx_queue_len(&q), 6);
    assert_int_equal(q.stats.len[I], 4);
    assert_int_equal(q.stats.len[B], 2);
    assert_true(lx_queue_node_queued(&r[0].node));
    int want[] = {0, 2, 4, 5, 1, 3};
    for (int k = 0; k < 6; k++)
        assert_int_equal(pop_id(&q, 10), want[k]);
    assert_null(lx_queue_pop(&q, 10));
    assert_false(lx_queue_node_queued(&r[0].node));
    assert_int_equal(q.stats.served[I], 4);
    assert_int_equal(q.stats.served[B], 2);
    assert_int_equal(q.stats.max_wait_ms, 10);
    assert_int_equal(q.stats.wait_ms_total, 10 + 9 + 8 + 7 + 6 + 5);
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);
}

/* While batch waits, one pop in every <batch_every> serves it; pops made while no batch
 * request waited do not count. */
static void test_anti_starvation(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[40];
    reqs_init(r, 40);
    lx_queue_init(&q, 64, 1000, 4);
    for (int i = 0; i < 10; i++)
        assert_true(push(&q, &r[i], I, 0));
    for (int i = 10; i < 13; i++)
        assert_true(push(&q, &r[i], B, 0));
    int want[] = {0, 1, 2, 10, 3, 4, 5, 11, 6, 7, 8, 12, 9};
    for (int k = 0; k < 13; k++)
        assert_int_equal(pop_id(&q, 1), want[k]);
    /* two interactive pops with no batch waiting, then a batch arrives: three more
     * interactive pops before it */
    for (int i = 13; i < 20; i++)
        assert_true(push(&q, &r[i], I, 2));
    assert_int_equal(pop_id(&q, 3), 13);
    assert_int_equal(pop_id(&q, 3), 14);
    assert_true(push(&q, &r[20], B, 3));
    int want2[] = {15, 16, 17, 20, 18, 19};
    for (int k = 0; k < 6; k++)
        assert_int_equal(pop_id(&q, 4), want2[k]);

    /* a batch class emptied by a cancellation restarts the count */
    lx_queue_init(&q, 64, 1000, 4);
    reqs_init(r, 40);
    for (int i = 0; i < 6; i++)
        assert_true(push(&q, &r[i], I, 0));
    assert_true(push(&q, &r[10], B, 0));
    assert_int_equal(pop_id(&q, 1), 0);
    assert_int_equal(pop_id(&q, 1), 1);
    assert_true(lx_queue_remove(&q, &r[10].node));
    assert_true(push(&q, &r[11], B, 1));
    int want4[] = {2, 3, 4, 11, 5};
    for (int k = 0; k < 5; k++)
        assert_int_equal(pop_id(&q, 2), want4[k]);

    /* the default period is 8: seven interactive, then the batch */
    lx_queue_init(&q, 64, 1000, 0);
    reqs_init(r, 40);
    for (int i = 0; i < 20; i++)
        assert_true(push(&q, &r[i], I, 0));
    assert_true(push(&q, &r[20], B, 0));
    for (int k = 0; k < 7; k++)
        assert_int_equal(pop_id(&q, 1), k);
    assert_int_equal(pop_id(&q, 1), 20);
    assert_int_equal(pop_id(&q, 1), 7);
    /* a period of 1 would put batch first: it counts as 2 (alternate) */
    lx_queue_init(&q, 64, 1000, 1);
    reqs_init(r, 40);
    for (int i = 0; i < 3; i++)
        assert_true(push(&q, &r[i], I, 0));
    for (int i = 3; i < 5; i++)
        assert_true(push(&q, &r[i], B, 0));
    int want3[] = {0, 3, 1, 4, 2};
    for (int k = 0; k < 5; k++)
        assert_int_equal(pop_id(&q, 1), want3[k]);
}

static void test_full_rejects(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[8];
    reqs_init(r, 8);
    lx_queue_init(&q, 3, 1000, 0);
    for (int i = 0; i < 3; i++)
        assert_true(push(&q, &r[i], i == 1 ? B : I, 0));
    assert_false(push(&q, &r[3], B, 0)); /* batch never evicts */
    assert_false(lx_queue_node_queued(&r[3].node));
    assert_int_equal(q.stats.rejected[B], 1);
    assert_int_equal(lx_queue_len(&q), 3);
    /* a node already queued is refused and not counted */
    assert_false(push(&q, &r[0], I, 0));
    assert_int_equal(q.stats.rejected[I], 0);
    assert_int_equal(q.stats.enqueued[I], 2);
    /* room again after a pop */
    assert_int_equal(pop_id(&q, 1), 0);
    assert_true(push(&q, &r[3], B, 1));
    assert_false(push(&q, &r[4], B, 1));
    assert_int_equal(q.stats.rejected[B], 2);

    /* only interactive queued: an interactive push is refused too */
    lx_queue_init(&q, 2, 1000, 0);
    reqs_init(r, 8);
    assert_true(push(&q, &r[0], I, 0));
    assert_true(push(&q, &r[1], I, 0));
    assert_false(push(&q, &r[2], I, 0));
    assert_int_equal(q.stats.rejected[I], 1);

    /* capacity 0: the queue is off */
    lx_queue_init(&q, 0, 1000, 0);
    assert_false(push(&q, &r[5], I, 0));
    assert_false(push(&q, &r[6], B, 0));
    assert_int_equal(lx_queue_len(&q), 0);
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);
}

/* An interactive push on a full queue evicts the newest batch request. */
static void test_eviction(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[8];
    reqs_init(r, 8);
    lx_queue_init(&q, 3, 1000, 0);
    assert_true(push(&q, &r[0], B, 0));
    assert_true(push(&q, &r[1], B, 1));
    assert_true(push(&q, &r[2], I, 2));
    lx_queue_node_t *ev = NULL;
    assert_true(lx_queue_push(&q, &r[3].node, I, 3, &ev));
    assert_int_equal(id_of(ev), 1);
    assert_false(lx_queue_node_queued(&r[1].node));
    assert_false(lx_queue_remove(&q, &r[1].node)); /* gone already */
    assert_int_equal(q.stats.evicted[B], 1);
    assert_int_equal(q.stats.len[B], 1);
    assert_int_equal(q.stats.len[I], 2);
    /* without a place for the evicted node, no eviction */
    assert_false(lx_queue_push(&q, &r[4].node, I, 4, NULL));
    assert_int_equal(q.stats.rejected[I], 1);
    assert_true(lx_queue_push(&q, &r[4].node, I, 4, &ev));
    assert_int_equal(id_of(ev), 0);
    assert_false(lx_queue_push(&q, &r[5].node, I, 5, &ev)); /* no batch left */
    assert_null(ev);
    assert_int_equal(q.stats.rejected[I], 2);
    int want[] = {2, 3, 4};
    for (int k = 0; k < 3; k++)
        assert_int_equal(pop_id(&q, 6), want[k]);
    assert_null(lx_queue_pop(&q, 6));
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);

    /* over a capacity a reload cut: refuse, evict nothing */
    lx_queue_init(&q, 3, 1000, 0);
    reqs_init(r, 8);
    assert_true(push(&q, &r[0], B, 0));
    assert_true(push(&q, &r[1], B, 0));
    assert_true(push(&q, &r[2], I, 0));
    lx_queue_set_limits(&q, 2, 1000);
    assert_false(lx_queue_push(&q, &r[3].node, I, 1, &ev));
    assert_null(ev);
    assert_int_equal(lx_queue_len(&q), 3);
    assert_int_equal(q.stats.evicted[B], 0);
}

typedef struct expired {
    int ids[16];
    int n;
    lx_queue_t *q;
    req_t *rm, *add; /* removed, pushed from inside the first callback */
} expired_t;

static void on_expire(void *arg, lx_queue_node_t *n)
{
    expired_t *e = arg;
    assert_false(lx_queue_node_queued(n));
    e->ids[e->n++] = id_of(n);
}

static void expect_expired(lx_queue_t *q, uint64_t now, const int *ids, int n)
{
    expired_t e = {.n = 0};
    assert_int_equal(lx_queue_expire(q, now, on_expire, &e), n);
    assert_int_equal(e.n, n);
    for (int k = 0; k < n; k++)
        assert_int_equal(e.ids[k], ids[k]);
}

static void test_expire(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[8];
    reqs_init(r, 8);
    lx_queue_init(&q, 8, 100, 0);
    assert_true(push(&q, &r[0], I, 0));  /* deadline 100 */
    assert_true(push(&q, &r[1], B, 10)); /* 110 */
    assert_true(push(&q, &r[2], I, 20)); /* 120 */
    assert_true(push(&q, &r[3], B, 20)); /* 120, after r[2] */
    lx_queue_set_limits(&q, 8, 30);
    assert_true(push(&q, &r[4], B, 25)); /* 55: first although last in */
    assert_true(push(&q, &r[5], I, 90)); /* 120, after r[3] */
    assert_int_equal(lx_queue_next_deadline(&q), 55);
    expect_expired(&q, 54, NULL, 0);
    expect_expired(&q, 55, (int[]){4}, 1);
    assert_int_equal(lx_queue_next_deadline(&q), 100);
    expect_expired(&q, 115, (int[]){0, 1}, 2);
    assert_int_equal(lx_queue_next_deadline(&q), 120);
    expect_expired(&q, 1000, (int[]){2, 3, 5}, 3);
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);
    assert_int_equal(q.stats.expired[I], 3);
    assert_int_equal(q.stats.expired[B], 3);
    assert_int_equal(lx_queue_len(&q), 0);
    assert_int_equal(lx_queue_expire(&q, 2000, on_expire, &(expired_t){0}), 0);
    assert_int_equal(q.stats.max_wait_ms, 0); /* none served */
    /* a pop before the timer serves a node past its deadline (a slot is free) */
    assert_true(push(&q, &r[6], I, 2000));
    assert_int_equal(pop_id(&q, 2100), 6);
    assert_int_equal(q.stats.max_wait_ms, 100);
}

/* The callback may remove and push: the call takes out at most as many nodes as were queued
 * when it began, even when each comes back due at once (timeout 0), so it ends. */
static void on_expire_busy(void *arg, lx_queue_node_t *n)
{
    expired_t *e = arg;
    e->ids[e->n++] = id_of(n);
    if (e->rm) {
        assert_true(lx_queue_remove(e->q, &e->rm->node));
        assert_true(push(e->q, e->add, I, 50)); /* due already */
        e->rm = NULL;
    }
}

static void on_expire_again(void *arg, lx_queue_node_t *n)
{
    expired_t *e = arg;
    e->ids[e->n++] = id_of(n);
    assert_true(lx_queue_push(e->q, n, LX_QUEUE_BATCH, 60, NULL)); /* due at once */
}

static void test_expire_reentrant(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[4];
    reqs_init(r, 4);
    lx_queue_init(&q, 8, 0, 0);
    assert_true(push(&q, &r[0], I, 10));
    assert_true(push(&q, &r[1], I, 10));
    assert_true(push(&q, &r[2], B, 10));
    expired_t e = {.q = &q, .rm = &r[1], .add = &r[3]};
    assert_int_equal(lx_queue_expire(&q, 50, on_expire_busy, &e), 3);
    assert_int_equal(e.n, 3);
    assert_int_equal(e.ids[0], 0);
    assert_int_equal(e.ids[1], 2);
    assert_int_equal(e.ids[2], 3);
    assert_int_equal(q.stats.cancelled[I], 1);
    assert_int_equal(q.stats.expired[I], 2);
    assert_int_equal(q.stats.expired[B], 1);
    assert_int_equal(lx_queue_len(&q), 0);

    /* every node comes back due: two calls, two nodes each, in the same order */
    reqs_init(r, 4);
    assert_true(push(&q, &r[0], I, 60));
    assert_true(push(&q, &r[1], I, 60));
    for (int round = 0; round < 2; round++) {
        expired_t f = {.q = &q};
        assert_int_equal(lx_queue_expire(&q, 60, on_expire_again, &f), 2);
        assert_int_equal(f.ids[0], 0);
        assert_int_equal(f.ids[1], 1);
        assert_int_equal(lx_queue_len(&q), 2);
    }
    assert_int_equal(lx_queue_expire(&q, 60, NULL, NULL), 2); /* no callback */
    assert_int_equal(lx_queue_len(&q), 0);
    /* UINT64_MAX empties the queue, saturated deadlines included */
    lx_queue_set_limits(&q, 8, UINT64_MAX);
    assert_true(push(&q, &r[0], I, 70));
    assert_true(push(&q, &r[1], B, 70));
    assert_int_equal(lx_queue_expire(&q, UINT64_MAX, NULL, NULL), 2);
    assert_int_equal(lx_queue_len(&q), 0);
}

static void test_remove(void **state)
{
    (void)state;
    lx_queue_t q, other;
    req_t r[8];
    reqs_init(r, 8);
    lx_queue_init(&q, 8, 100, 0);
    lx_queue_init(&other, 8, 100, 0);
    assert_false(lx_queue_remove(&q, &r[0].node)); /* empty queue, node never queued */
    req_t zeroed;
    memset(&zeroed, 0, sizeof zeroed); /* a zeroed node counts as not queued */
    assert_false(lx_queue_remove(&q, &zeroed.node));
    for (int i = 0; i < 5; i++)
        assert_true(push(&q, &r[i], I, (uint64_t)i));
    assert_true(push(&other, &r[5], I, 0));
    assert_false(lx_queue_remove(&q, &r[5].node)); /* another queue's node */
    assert_int_equal(lx_queue_len(&other), 1);
    assert_true(lx_queue_remove(&q, &r[0].node)); /* head */
    assert_int_equal(lx_queue_next_deadline(&q), 101);
    assert_true(lx_queue_remove(&q, &r[2].node));  /* middle */
    assert_true(lx_queue_remove(&q, &r[4].node));  /* tail */
    assert_false(lx_queue_remove(&q, &r[4].node)); /* twice */
    assert_false(lx_queue_node_queued(&r[4].node));
    assert_int_equal(lx_queue_len(&q), 2);
    assert_int_equal(q.stats.cancelled[I], 3);
    int ids[] = {1, 3};
    expect_expired(&q, 1000, ids, 2);
    assert_false(lx_queue_remove(&q, &r[1].node)); /* expired already */
    assert_true(push(&q, &r[6], B, 2000));
    assert_int_equal(pop_id(&q, 2001), 6);
    assert_false(lx_queue_remove(&q, &r[6].node)); /* popped already */
    assert_true(push(&q, &r[7], B, 2002));
    assert_true(lx_queue_remove(&q, &r[7].node)); /* the only node */
    assert_null(lx_queue_pop(&q, 2003));
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);
    assert_int_equal(q.stats.cancelled[B], 1);
    /* a removed node can be queued again */
    assert_true(push(&q, &r[0], I, 3000));
    assert_int_equal(pop_id(&q, 3000), 0);
    assert_false(lx_queue_remove(NULL, &r[0].node));
}

static void test_retry_after_rate(void **state)
{
    (void)state;
    lx_queue_t q;
    static req_t r[800];
    reqs_init(r, 800);
    lx_queue_init(&q, 1000, 30000, 0);
    for (int i = 0; i < 40; i++)
        assert_true(push(&q, &r[i], I, 0));
    assert_int_equal(lx_queue_retry_after(&q, 0), 30); /* no pop yet: the timeout */
    for (uint64_t t = 100; t <= 1000; t += 100)
        assert_int_not_equal(pop_id(&q, t), -1);
    /* one pop every 100 ms: 10 per second; 30 queued, a new one is 31st: 3.1 s -> 4 */
    assert_true(lx_queue_drain_rate(&q) == 10.0);
    assert_int_equal(lx_queue_len(&q), 30);
    assert_int_equal(lx_queue_retry_after(&q, 1000), 4);
    assert_int_not_equal(pop_id(&q, 1100), -1);
    assert_int_equal(lx_queue_retry_after(&q, 1100), 3); /* 30 x 0.1 s exactly */
    assert_int_equal(lx_queue_retry_after(&q, 1150), 3); /* a gap under the mean: no change */
    /* a stall: no pop for 2 s counts as a 2 s gap at once */
    assert_int_equal(lx_queue_retry_after(&q, 2600), 45); /* 30 x 1.5 s */
    assert_int_equal(lx_queue_retry_after(&q, 5100), 60);
    /* the EWMA's weight is 1/8: one 200 ms gap after 100 ms ones makes 112.5 ms */
    for (int i = 0; i < 21; i++)
        assert_int_not_equal(pop_id(&q, 1100), -1); /* same-ms pops: gaps of 0 */
    assert_int_equal(lx_queue_len(&q), 8);
    assert_true(q.gap_us < 100000);
    lx_queue_init(&q, 1000, 30000, 0);
    reqs_init(r, 800);
    for (int i = 0; i < 20; i++)
        assert_true(push(&q, &r[i], I, 0));
    for (uint64_t t = 100; t <= 1000; t += 100)
        pop_id(&q, t);
    pop_id(&q, 1200);
    assert_int_equal(q.gap_us, 112500);
    assert_int_equal(lx_queue_len(&q), 9);
    assert_int_equal(lx_queue_retry_after(&q, 1200), 2); /* 10 x 0.1125 = 1.125 */
    /* long queue: clamped to 60 s */
    for (int i = 20; i < 800; i++)
        assert_true(push(&q, &r[i], B, 1200));
    assert_int_equal(lx_queue_retry_after(&q, 1200), 60);
    /* a fast drain (pops in the same millisecond): clamped to 1 s */
    while (lx_queue_len(&q) > 100)
        pop_id(&q, 1200);
    assert_true(q.gap_us < 1000);
    assert_int_equal(lx_queue_retry_after(&q, 1200), 1);
}

/* Time with nothing queued is not drain time; a known rate survives idle periods. */
static void test_drain_idle(void **state)
{
    (void)state;
    lx_queue_t q;
    req_t r[4];
    reqs_init(r, 4);
    lx_queue_init(&q, 10, 1000, 0);
    assert_true(lx_queue_drain_rate(&q) < 0);
    assert_true(push(&q, &r[0], I, 0));
    assert_int_equal(pop_id(&q, 10), 0);
    assert_true(lx_queue_drain_rate(&q) == 100.0);
    assert_true(push(&q, &r[0], I, 5000));
    assert_int_equal(pop_id(&q, 5010), 0);
    assert_true(push(&q, &r[1], I, 6000));
    assert_true(lx_queue_remove(&q, &r[1].node));
    assert_true(push(&q, &r[2], B, 9000));
    assert_int_equal(pop_id(&q, 9010), 2);
    assert_true(lx_queue_drain_rate(&q) == 100.0);
    /* an empty queue has no stall: the mean gap only */
    assert_int_equal(lx_queue_retry_after(&q, 100000), 1);
}

static void test_retry_after_no_rate(void **state)
{
    (void)state;
    lx_queue_t q;
    const struct {
        uint64_t timeout_ms;
        unsigned want;
    } cases[] = {{30000, 30}, {2500, 3},    {1000, 1},       {1001, 2},
                 {0, 1},      {600000, 60}, {UINT64_MAX, 60}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lx_queue_init(&q, 10, cases[k].timeout_ms, 0);
        assert_int_equal(lx_queue_retry_after(&q, 5), cases[k].want);
    }
    /* a reload's timeout is the fallback from then on */
    lx_queue_set_limits(&q, 10, 7000);
    assert_int_equal(lx_queue_retry_after(&q, 5), 7);
    /* a saturated deadline never fires */
    lx_queue_init(&q, 10, UINT64_MAX, 0);
    req_t r;
    reqs_init(&r, 1);
    assert_true(push(&q, &r, I, 5));
    assert_int_equal(lx_queue_next_deadline(&q), UINT64_MAX);
    assert_int_equal(lx_queue_expire(&q, UINT64_MAX - 1, NULL, NULL), 0);
}

/* ---- the model check: the same operations on the queue and on plain arrays ---- */

#define MC_NODES 96
#define MC_OPS   100000

typedef struct ref_item {
    int id, cls;
    uint64_t enq, deadline, seq;
} ref_item_t;

typedef struct ref {
    ref_item_t it[MC_NODES]; /* what is queued, unordered */
    int n;
    size_t capacity;
    uint64_t timeout, seq, mark;
    unsigned every, streak;
    int64_t gap_us; /* < 0: unknown */
    lx_queue_stats_t st;
} ref_t;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int ref_find(const ref_t *m, int id)
{
    for (int k = 0; k < m->n; k++)
        if (m->it[k].id == id)
            return k;
    return -1;
}

static int ref_count(const ref_t *m, int cls)
{
    int c = 0;
    for (int k = 0; k < m->n; k++)
        c += m->it[k].cls == cls;
    return c;
}

/* The index of the item of <cls> with the smallest (key, seq): key 0 arrival, 1 deadline. */
static int ref_first(const ref_t *m, int cls, int by_deadline)
{
    int best = -1;
    for (int k = 0; k < m->n; k++) {
        const ref_item_t *a = &m->it[k];
        if (cls >= 0 && a->cls != cls)
            continue;
        if (best < 0) {
            best = k;
            continue;
        }
        const ref_item_t *b = &m->it[best];
        uint64_t ka = by_deadline ? a->deadline : 0, kb = by_deadline ? b->deadline : 0;
        if (ka < kb || (ka == kb && a->seq < b->seq))
            best = k;
    }
    return best;
}

static ref_item_t ref_take(ref_t *m, int k)
{
    ref_item_t a = m->it[k];
    m->it[k] = m->it[--m->n];
    m->st.len[a.cls]--;
    if (ref_count(m, B) == 0)
        m->streak = 0; /* the anti-starvation count restarts when no batch waits */
    return a;
}

static bool ref_push(ref_t *m, int id, int cls, uint64_t now, bool may_evict, int *evicted)
{
    *evicted = -1;
    if (ref_find(m, id) >= 0)
        return false;
    if (cls != B)
        cls = I;
    bool was_empty = m->n == 0;
    if ((size_t)m->n >= m->capacity) {
        if (cls != I || !may_evict || (size_t)m->n != m->capacity || ref_count(m, B) == 0) {
            m->st.rejected[cls]++;
            return false;
        }
        int newest = -1; /* the batch item with the largest seq */
        for (int k = 0; k < m->n; k++)
            if (m->it[k].cls == B && (newest < 0 || m->it[k].seq > m->it[newest].seq))
                newest = k;
        *evicted = ref_take(m, newest).id;
        m->st.evicted[B]++;
    }
    if (was_empty)
        m->mark = now;
    m->it[m->n++] = (ref_item_t){id, cls, now, now + m->timeout, m->seq++};
    m->st.len[cls]++;
    m->st.enqueued[cls]++;
    return true;
}

static int ref_pop(ref_t *m, uint64_t now)
{
    int ni = ref_count(m, I), nb = ref_count(m, B), cls;
    if (ni + nb == 0)
        return -1;
    if (nb == 0) {
        cls = I;
    } else if (ni == 0 || m->streak == m->every - 1) {
        m->streak = 0;
        cls = B;
    } else {
        m->streak++;
        cls = I;
    }
    ref_item_t a = ref_take(m, ref_first(m, cls, 0));
    m->st.served[cls]++;
    uint64_t wait = now - a.enq;
    m->st.wait_ms_total += wait;
    if (wait > m->st.max_wait_ms)
        m->st.max_wait_ms = wait;
    int64_t sample = (int64_t)(now - m->mark) * 1000;
    m->gap_us = m->gap_us < 0 ? sample : m->gap_us + (sample - m->gap_us) / 8;
    m->mark = now;
    return a.id;
}

static unsigned ref_retry_after(const ref_t *m, uint64_t now)
{
    double s;
    if (m->gap_us < 0) {
        s = ceil((double)m->timeout / 1000.0);
    } else {
        double gap = (double)m->gap_us;
        if (m->n > 0 && (double)(now - m->mark) * 1000.0 > gap)
            gap = (double)(now - m->mark) * 1000.0;
        s = ceil((double)(m->n + 1) * gap / 1e6);
    }
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}

static void mc_compare(const lx_queue_t *q, const ref_t *m, uint64_t now)
{
    const lx_queue_stats_t *a = &q->stats, *b = &m->st;
    for (int c = 0; c < LX_QUEUE_N_CLASSES; c++) {
        assert_int_equal(a->len[c], b->len[c]);
        assert_int_equal(a->len[c], ref_count(m, c));
        assert_int_equal(a->enqueued[c], b->enqueued[c]);
        assert_int_equal(a->rejected[c], b->rejected[c]);
        assert_int_equal(a->served[c], b->served[c]);
        assert_int_equal(a->expired[c], b->expired[c]);
        assert_int_equal(a->evicted[c], b->evicted[c]);
        assert_int_equal(a->cancelled[c], b->cancelled[c]);
        assert_int_equal(a->enqueued[c], a->served[c] + a->expired[c] + a->evicted[c] +
                                             a->cancelled[c] + a->len[c]);
    }
    assert_int_equal(a->max_wait_ms, b->max_wait_ms);
    assert_int_equal(a->wait_ms_total, b->wait_ms_total);
    int k = ref_first(m, -1, 1);
    assert_int_equal(lx_queue_next_deadline(q), k < 0 ? UINT64_MAX : m->it[k].deadline);
    assert_int_equal(lx_queue_retry_after(q, now), ref_retry_after(m, now));
    if (m->gap_us < 0)
        assert_true(lx_queue_drain_rate(q) < 0);
    else
        assert_true(fabs(lx_queue_drain_rate(q) - 1e6 / (double)(m->gap_us ? m->gap_us : 1)) <
                    1e-9 * lx_queue_drain_rate(q));
}

typedef struct mc_expired {
    int ids[MC_NODES];
    int n;
} mc_expired_t;

static void mc_on_expire(void *arg, lx_queue_node_t *n)
{
    mc_expired_t *e = arg;
    assert_true(e->n < MC_NODES);
    e->ids[e->n++] = id_of(n);
}

static void mc_expire(lx_queue_t *q, ref_t *m, uint64_t now)
{
    mc_expired_t e = {.n = 0};
    size_t got = lx_queue_expire(q, now, mc_on_expire, &e);
    assert_int_equal(got, e.n);
    int want = 0;
    for (int k; (k = ref_first(m, -1, 1)) >= 0 && m->it[k].deadline <= now;) {
        ref_item_t a = ref_take(m, k);
        m->st.expired[a.cls]++;
        assert_true(want < e.n);
        assert_int_equal(e.ids[want++], a.id);
    }
    assert_int_equal(want, e.n);
}

static void mc_step(lx_queue_t *q, ref_t *m, req_t *r, uint64_t *rng, uint64_t now)
{
    uint64_t x = rng_next(rng);
    unsigned op = (unsigned)(x % 100);
    int id = (int)((x >> 8) % MC_NODES);
    if (op < 40) { /* push; a tenth of them with no room for an evicted node */
        int cls = (int)((x >> 20) % 5) == 0 ? 2 : (int)((x >> 24) & 1);
        bool may_evict = (x >> 28) % 10 != 0;
        lx_queue_node_t *ev = NULL;
        int want_ev;
        bool want = ref_push(m, id, cls, now, may_evict, &want_ev);
        assert_int_equal(
            lx_queue_push(q, &r[id].node, (lx_queue_class_t)cls, now, may_evict ? &ev : NULL),
            want);
        assert_int_equal(id_of(ev), want_ev);
    } else if (op < 65) {
        assert_int_equal(pop_id(q, now), ref_pop(m, now));
    } else if (op < 80) {
        int k = ref_find(m, id);
        if (k >= 0)
            m->st.cancelled[ref_take(m, k).cls]++;
        assert_int_equal(lx_queue_remove(q, &r[id].node), k >= 0);
    } else if (op < 99) {
        mc_expire(q, m, now);
    } else { /* a reload: new limits for the pushes to come */
        m->capacity = (size_t)((x >> 32) % 49);
        m->timeout = (x >> 40) % 400;
        lx_queue_set_limits(q, m->capacity, m->timeout);
    }
    for (int i = 0; i < MC_NODES; i++)
        assert_int_equal(lx_queue_node_queued(&r[i].node), ref_find(m, i) >= 0);
}

static void model_check(uint64_t seed, unsigned every)
{
    static req_t r[MC_NODES];
    static lx_queue_t q;
    static ref_t m;
    reqs_init(r, MC_NODES);
    memset(&m, 0, sizeof m);
    m.capacity = 24;
    m.timeout = 150;
    m.every = every;
    m.gap_us = -1;
    lx_queue_init(&q, m.capacity, m.timeout, every);
    uint64_t rng = seed, now = 1000;
    for (int op = 0; op < MC_OPS; op++) {
        now += rng_next(&rng) % 16;
        mc_step(&q, &m, r, &rng, now);
        mc_compare(&q, &m, now);
    }
    /* the run went through every kind of exit */
    for (int c = 0; c < LX_QUEUE_N_CLASSES; c++) {
        assert_true(q.stats.served[c] > 1000);
        assert_true(q.stats.expired[c] > 100);
        assert_true(q.stats.cancelled[c] > 100);
        assert_true(q.stats.rejected[c] > 100);
    }
    assert_true(q.stats.evicted[B] > 100);
}

static void test_model_check(void **state)
{
    (void)state;
    model_check(1, 8);
    model_check(0x5eed, 3);
}

/* pop_fit: the oldest fitting node of the class a pop would serve, then of the other class;
 * nothing fits, nothing changes; the batch share counts the class served. */
static bool tag_is(void *arg, const lx_queue_node_t *n)
{
    return n->tag == *(const uint64_t *)arg;
}

static void test_pop_fit(void **state)
{
    (void)state;
    lx_queue_t q;
    lx_queue_init(&q, 16, 1000, 4);
    req_t r[9];
    reqs_init(r, 9);
    /* 0-3 and 8 interactive, 4-7 batch */
    const uint64_t tags[9] = {1, 2, 1, 2, 3, 1, 3, 2, 1};
    for (int i = 0; i < 9; i++) {
        r[i].node.tag = tags[i];
        assert_true(push(&q, &r[i], i < 4 || i == 8 ? I : B, (uint64_t)i));
    }
    uint64_t want = 2;
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 10, tag_is, &want)), 1); /* oldest tag 2 */
    want = 3; /* none interactive: the oldest batch one */
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 11, tag_is, &want)), 4);
    want = 9; /* no fit: NULL, the queue as it was */
    assert_null(lx_queue_pop_fit(&q, 12, tag_is, &want));
    assert_int_equal(lx_queue_len(&q), 7);
    assert_int_equal(q.stats.served[I] + q.stats.served[B], 2);
    /* batch served restarts the share: three interactive pops pass batch again, then the
     * next pop is batch's, a fitting pop as well (8, interactive and fitting, waits) */
    want = 1;
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 13, tag_is, &want)), 0);
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 14, tag_is, &want)), 2);
    assert_int_equal(pop_id(&q, 15), 3);
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 16, tag_is, &want)), 5);
    assert_int_equal(pop_id(&q, 17), 8);
    assert_int_equal(pop_id(&q, 18), 6);
    assert_int_equal(pop_id(&q, 19), 7);
    assert_int_equal(lx_queue_len(&q), 0);
    assert_null(lx_queue_pop_fit(&q, 20, tag_is, &want));
    assert_int_equal(q.stats.served[I], 5);
    assert_int_equal(q.stats.served[B], 4);
}

/* peek_fit: the node pop_fit would take, left where it is, nothing counted. */
static void test_peek_fit(void **state)
{
    (void)state;
    lx_queue_t q;
    lx_queue_init(&q, 16, 1000, 2);
    req_t r[4];
    reqs_init(r, 4);
    const uint64_t tags[4] = {1, 2, 2, 1}; /* 0, 1 interactive, 2, 3 batch */
    for (int i = 0; i < 4; i++) {
        r[i].node.tag = tags[i];
        assert_true(push(&q, &r[i], i < 2 ? I : B, (uint64_t)i));
    }
    uint64_t want = 2;
    for (int k = 0; k < 2; k++)
        assert_int_equal(id_of(lx_queue_peek_fit(&q, tag_is, &want)), 1);
    assert_int_equal(lx_queue_len(&q), 4);
    assert_int_equal(q.stats.served[I] + q.stats.served[B], 0);
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 5, tag_is, &want)), 1);
    /* batch_every 2: after one interactive pop the next is batch's, for peek as for pop */
    want = 1;
    assert_int_equal(id_of(lx_queue_peek_fit(&q, tag_is, &want)), 3);
    assert_int_equal(id_of(lx_queue_pop_fit(&q, 6, tag_is, &want)), 3);
    want = 9;
    assert_null(lx_queue_peek_fit(&q, tag_is, &want));
    assert_int_equal(lx_queue_len(&q), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),        cmocka_unit_test(test_anti_starvation),
        cmocka_unit_test(test_full_rejects), cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_expire),       cmocka_unit_test(test_expire_reentrant),
        cmocka_unit_test(test_remove),       cmocka_unit_test(test_retry_after_rate),
        cmocka_unit_test(test_drain_idle),   cmocka_unit_test(test_retry_after_no_rate),
        cmocka_unit_test(test_model_check),  cmocka_unit_test(test_pop_fit),
        cmocka_unit_test(test_peek_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
