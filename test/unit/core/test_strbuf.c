/*
 * test_strbuf.c - the printf-free appenders: exact text, rounding, and overflow that never
 * writes past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/strbuf.h"

static void check(lx_strbuf_t *sb, const char *start, const char *want)
{
    assert_false(sb->overflow);
    assert_int_equal(lx_strbuf_len(sb, start), strlen(want));
    assert_memory_equal(start, want, strlen(want));
}

static void test_numbers(void **state)
{
    (void)state;
    char buf[256];
    lx_strbuf_t sb = lx_strbuf_make(buf, sizeof(buf));
    lx_strbuf_u64(&sb, 0);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_u64(&sb, 18446744073709551615ull);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_i64(&sb, -42);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_i64(&sb, INT64_MIN);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_hex(&sb, 0x2a, 1);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_hex(&sb, 0x2a, 16);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_hex(&sb, UINT64_MAX, 16);
    check(&sb, buf,
          "0 18446744073709551615 -42 -9223372036854775808 2a 000000000000002a ffffffffffffffff");
}

/* Hexadecimal at every bit length and width 0 to 20, as printf writes it (at most 16 digits);
 * a buffer one byte short overflows without writing. */
static void test_hex_lengths(void **state)
{
    (void)state;
    for (int bits = 0; bits <= 64; bits++) {
        uint64_t v = bits == 0 ? 0 : bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
        for (unsigned width = 0; width <= 20; width++) {
            char want[32], got[32];
            int n = snprintf(want, sizeof(want), "%0*llx", width > 16 ? 16 : (int)width,
                             (unsigned long long)v);
            lx_strbuf_t sb = lx_strbuf_make(got, sizeof(got));
            lx_strbuf_hex(&sb, v, width);
            check(&sb, got, want);
            memset(got, 'x', sizeof(got));
            sb = lx_strbuf_make(got, (size_t)n - 1);
            lx_strbuf_hex(&sb, v, width);
            assert_true(sb.overflow);
            assert_ptr_equal(sb.p, got);
            assert_int_equal(got[0], 'x');
        }
    }
}

/* Every digit count, at and around each power of ten, as printf writes it; a buffer one byte
 * short overflows without writing. */
static void test_u64_digit_counts(void **state)
{
    (void)state;
    uint64_t p = 1;
    for (int k = 0; k < 20; k++) {
        uint64_t vals[] = {p - 1, p, p + 1, p * 3 + 7, p > 1 ? p + p / 2 : 5};
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
            char want[32], got[32];
            int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)vals[i]);
            lx_strbuf_t sb = lx_strbuf_make(got, sizeof(got));
            lx_strbuf_u64(&sb, vals[i]);
            check(&sb, got, want);
            memset(got, 'x', sizeof(got));
            lx_strbuf_t small = lx_strbuf_make(got, (size_t)n - 1);
            lx_strbuf_u64(&small, vals[i]);
            assert_true(small.overflow);
            assert_ptr_equal(small.p, got);
            assert_int_equal(got[0], 'x');
        }
        if (k < 19)
            p *= 10;
    }
    char got[32];
    lx_strbuf_t sb = lx_strbuf_make(got, sizeof(got));
    lx_strbuf_u64(&sb, UINT64_MAX - 1);
    check(&sb, got, "18446744073709551614");
}

static void test_fixed_matches_printf(void **state)
{
    (void)state;
    static const double values[] = {0,        0.0005, 0.0015,     1.2344999,   3.14159, 12.5,
                                    999.9995, 1e-9,   123456.789, 0.000000700, -2.5};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        for (unsigned d = 0; d <= 9; d += 3) {
            char want[64], got[64];
            snprintf(want, sizeof(want), "%.*f", (int)d, values[i]);
            lx_strbuf_t sb = lx_strbuf_make(got, sizeof(got));
            lx_strbuf_fixed(&sb, values[i], d);
            *sb.p = '\0';
            /* halfway cases may round differently in binary; compare numerically then */
            double a, b;
            sscanf(want, "%lf", &a);
            sscanf(got, "%lf", &b);
            double unit = d == 0 ? 1 : d == 3 ? 1e-3 : d == 6 ? 1e-6 : 1e-9;
            assert_true(a - b <= unit && b - a <= unit);
            assert_int_equal(strchr(got, '.') != NULL ? strlen(strchr(got, '.') + 1) : 0, d);
        }
    }
}

static void test_overflow_stops(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    lx_strbuf_t sb = lx_strbuf_make(buf, 5);
    LX_STRBUF_LIT(&sb, "abc");
    lx_strbuf_str(&sb, "defgh");
    assert_true(sb.overflow);
    assert_int_equal(lx_strbuf_len(&sb, buf), 3);
    lx_strbuf_u64(&sb, 123456);
    assert_int_equal(lx_strbuf_len(&sb, buf), 3);
    assert_memory_equal(buf, "abcxxxxx", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers),        cmocka_unit_test(test_u64_digit_counts),
        cmocka_unit_test(test_hex_lengths),    cmocka_unit_test(test_fixed_matches_printf),
        cmocka_unit_test(test_overflow_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
