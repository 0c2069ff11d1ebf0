/*
 * test_hedge.c - hedging's pure decisions: the threshold (factor, floor, unknown p95, a
 * latency-demoted primary raced at once) and the budget's token bucket (earning, cap, take,
 * 0 disables, the long-run fraction).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route/hedge.h"

static void test_threshold(void **state)
{
    (void)state;
    /* factor x p95, rounded */
    assert_int_equal(lx_hedge_threshold_ms(100, false), 150);
    assert_int_equal(lx_hedge_threshold_ms(20, false), 30);
    assert_int_equal(lx_hedge_threshold_ms(1000.3, false), 1500);
    /* the floor */
    assert_int_equal(lx_hedge_threshold_ms(2, false), LX_HEDGE_FLOOR_MS);
    assert_int_equal(lx_hedge_threshold_ms(0, false), LX_HEDGE_FLOOR_MS);
    assert_int_equal(lx_hedge_threshold_ms(6.6, false), LX_HEDGE_FLOOR_MS);
    assert_int_equal(lx_hedge_threshold_ms(6.7, false), 10);
    assert_int_equal(lx_hedge_threshold_ms(8, false), 12);
    /* unknown p95: no hedge */
    assert_true(lx_hedge_threshold_ms(-1, false) == LX_HEDGE_NEVER);
    assert_true(lx_hedge_threshold_ms(NAN, false) == LX_HEDGE_NEVER);
    assert_true(lx_hedge_threshold_ms(INFINITY, false) == LX_HEDGE_NEVER);
    /* huge: capped, never wrapping */
    assert_int_equal(lx_hedge_threshold_ms(1e12, false), 3600000);
    /* a primary demoted for latency is raced at once, known p95 or not */
    assert_int_equal(lx_hedge_threshold_ms(100, true), 0);
    assert_int_equal(lx_hedge_threshold_ms(-1, true), 0);
}

static void test_bucket_cap_and_take(void **state)
{
    (void)state;
    lx_hedge_bucket_t b = {0};
    assert_false(lx_hedge_take(&b));
    /* 5%: twenty requests earn one hedge */
    for (int i = 0; i < 19; i++)
        lx_hedge_earn(&b, 50000);
    assert_false(lx_hedge_take(&b));
    lx_hedge_earn(&b, 50000);
    assert_true(lx_hedge_take(&b));
    assert_false(lx_hedge_take(&b));
    /* the cap: 200 requests' worth (10 hedges at 5%), however long it was quiet */
    assert_int_equal(lx_hedge_cap(50000), 10 * LX_HEDGE_TOKEN);
    for (int i = 0; i < 100000; i++)
        lx_hedge_earn(&b, 50000);
    int n = 0;
    while (lx_hedge_take(&b) && n < 1000)
        n++;
    assert_int_equal(n, 10);
    /* a tiny budget still holds one whole hedge */
    assert_int_equal(lx_hedge_cap(1), LX_HEDGE_TOKEN);
    /* 100%: a hedge per request, 200 at most in the bucket, no overflow */
    assert_int_equal(lx_hedge_cap(1000000), 200u * LX_HEDGE_TOKEN);
    lx_hedge_bucket_t f = {0};
    for (int i = 0; i < 1000; i++)
        lx_hedge_earn(&f, 1000000);
    assert_int_equal(f.credit, 200u * LX_HEDGE_TOKEN);
}

static void test_budget_zero(void **state)
{
    (void)state;
    lx_hedge_bucket_t b = {0};
    for (int i = 0; i < 10000; i++)
        lx_hedge_earn(&b, 0);
    assert_false(lx_hedge_take(&b));
}

/* Every request late: the hedges taken over a long run are the budget's fraction. */
static void test_long_run_fraction(void **state)
{
    (void)state;
    static const uint32_t budgets[] = {10000, 50000, 123456, 500000};
    for (size_t k = 0; k < sizeof(budgets) / sizeof(budgets[0]); k++) {
        lx_hedge_bucket_t b = {0};
        unsigned taken = 0;
        for (int i = 0; i < 100000; i++) {
            lx_hedge_earn(&b, budgets[k]);
            taken += lx_hedge_take(&b);
        }
        double want = budgets[k] / 1e6 * 100000;
        assert_true(fabs(taken - want) <= 1.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_bucket_cap_and_take),
        cmocka_unit_test(test_budget_zero),
        cmocka_unit_test(test_long_run_fraction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
