/*
 * test_money.c - integer money: the exact decimal reader (exponents, precision, bounds,
 * grammar), the shortest writer and round trips between them, costs in 128 bits with
 * rounding up and saturation, and the configuration's float edge.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "store/money.h"

static int parse(const char *s, int64_t *v)
{
    *v = -12345;
    return lx_money_parse(s, strlen(s), v);
}

static void expect(const char *s, int64_t want)
{
    int64_t v;
    int rc = parse(s, &v);
    if (rc != 0 || v != want)
        fail_msg("\"%s\": rc %d value %lld, want %lld", s, rc, (long long)v, (long long)want);
}

static void refuse(const char *s)
{
    int64_t v;
    if (parse(s, &v) != LX_EINVAL)
        fail_msg("\"%s\" was accepted as %lld", s, (long long)v);
}

static void test_parse_plain(void **state)
{
    (void)state;
    expect("0", 0);
    expect("12", 12000000);
    expect("0.5", 500000);
    expect("1.25", 1250000);
    expect("0.000001", 1);
    expect("0.0000010000", 1);
    expect("100", 100000000);
    expect("1000000000", LX_MONEY_MAX);
    expect("999999999.999999", LX_MONEY_MAX - 1);
    expect("-0", 0);
    expect("-0.000", 0);
    expect("0.000", 0);
}

static void test_parse_exponents(void **state)
{
    (void)state;
    expect("1e-3", 1000);
    expect("2.5E2", 250000000);
    expect("1e0", 1000000);
    expect("1E+2", 100000000);
    expect("1e-6", 1);
    expect("10e-7", 1);
    expect("1000000e-12", 1);
    expect("1e9", LX_MONEY_MAX);
    expect("0.001e12", LX_MONEY_MAX);
    expect("0e999999999999999999999", 0);
    expect("0.0e-99999", 0);
    expect("123456789012345e-6", 123456789012345);
}

static void test_parse_refused(void **state)
{
    (void)state;
    refuse("0.0000001"); /* a seventh decimal */
    refuse("1.0000001");
    refuse("1e-7");
    refuse("15e-7");
    refuse("1000000000.000001"); /* one µ$ above the maximum */
    refuse("1e10");
    refuse("1.1e9");
    refuse("1e999999999999999999999");
    refuse("10000000000000000000000000");
    refuse("-1");
    refuse("-0.000001");
    refuse("");
    refuse("-");
    refuse("01");
    refuse("1.");
    refuse(".5");
    refuse("1e");
    refuse("1e+");
    refuse("+1");
    refuse(" 1");
    refuse("1 ");
    refuse("1x");
    refuse("0x10");
    refuse("NaN");
    refuse("Infinity");
    refuse("1..2");
    int64_t v = 7;
    assert_int_equal(lx_money_parse(NULL, 0, &v), LX_EINVAL);
    assert_int_equal(lx_money_parse("12", 1, &v), 0); /* the length counts */
    assert_int_equal(v, 1000000);
}

static void fmt(int64_t v, const char *want)
{
    char buf[LX_MONEY_FMT_MAX];
    size_t n = lx_money_format(v, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_format(void **state)
{
    (void)state;
    fmt(0, "0");
    fmt(1, "0.000001");
    fmt(1500000, "1.5");
    fmt(-2250000, "-2.25");
    fmt(1000000, "1");
    fmt(10, "0.00001");
    fmt(123456789, "123.456789");
    fmt(LX_MONEY_MAX, "1000000000");
    fmt(INT64_MAX, "9223372036854.775807");
    fmt(INT64_MIN, "-9223372036854.775808");
}

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252u;
    int64_t samples[] = {0, 1, 9, 10, 999999, 1000000, 1000001, LX_MONEY_MAX - 1, LX_MONEY_MAX};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]) + 2000; i++) {
        int64_t v;
        if (i < sizeof(samples) / sizeof(samples[0])) {
            v = samples[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v = (int64_t)(x % (uint64_t)(LX_MONEY_MAX + 1));
            if (i % 3 == 0)
                v %= 10000000; /* small amounts too */
        }
        char buf[LX_MONEY_FMT_MAX];
        size_t n = lx_money_format(v, buf);
        int64_t back = -1;
        assert_int_equal(lx_money_parse(buf, n, &back), 0);
        assert_true(back == v);
    }
}

static void test_cost(void **state)
{
    (void)state;
    /* $3 / $15 per million tokens */
    assert_int_equal(lx_money_cost(1000, 3000000, 500, 15000000), 3000 + 7500);
    assert_int_equal(lx_money_cost(1, 1, 0, 0), 1); /* rounds up: anything used costs */
    assert_int_equal(lx_money_cost(1, 999999, 1, 1), 1);
    assert_int_equal(lx_money_cost(1, 1000000, 1, 1), 2);
    assert_int_equal(lx_money_cost(0, 5, 0, 5), 0);
    assert_int_equal(lx_money_cost(1000, 0, 1000, 0), 0);
    assert_int_equal(lx_money_cost(-5, 1000000, -1, 1000000), 0);
    assert_int_equal(lx_money_cost(3, 333333, 0, 0), 1);
    assert_int_equal(lx_money_cost(3, 333334, 0, 0), 2);
    /* 64-bit products would overflow: the 128-bit sum saturates */
    assert_true(lx_money_cost(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX) == LX_MONEY_MAX);
    assert_true(lx_money_cost(INT64_C(1) << 40, INT64_C(1) << 40, 0, 0) == LX_MONEY_MAX);
    assert_true(lx_money_cost(INT64_C(4000000000), INT64_C(4000000000), 0, 0) ==
                INT64_C(16000000000000));
    assert_true(lx_money_cost(1000000, LX_MONEY_MAX, 0, 0) == LX_MONEY_MAX);
    assert_true(lx_money_cost(1000000, LX_MONEY_MAX - 1, 0, 0) == LX_MONEY_MAX - 1);
}

static void test_from_usd(void **state)
{
    (void)state;
    assert_int_equal(lx_money_from_usd(0.0), 0);
    assert_int_equal(lx_money_from_usd(3.0), 3000000);
    assert_int_equal(lx_money_from_usd(0.1), 100000);
    assert_int_equal(lx_money_from_usd(0.15), 150000);
    assert_int_equal(lx_money_from_usd(0.0000004), 0);
    assert_int_equal(lx_money_from_usd(0.0000006), 1);
    assert_true(lx_money_from_usd(1e9) == LX_MONEY_MAX);
    assert_int_equal(lx_money_from_usd(1.1e9), -1);
    assert_int_equal(lx_money_from_usd(-0.5), -1);
    assert_int_equal(lx_money_from_usd((double)NAN), -1);
    assert_int_equal(lx_money_from_usd((double)INFINITY), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain),   cmocka_unit_test(test_parse_exponents),
        cmocka_unit_test(test_parse_refused), cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_cost),
        cmocka_unit_test(test_from_usd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
