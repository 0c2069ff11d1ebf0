/*
 * test_period.c - UTC periods: every boundary (day, Monday weeks, month ends, leap years with
 * 2100 not one and 2000 one), civil date conversions checked against a day-by-day walk over
 * centuries, far years in both directions, names, and the ISO-8601 reader and writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "store/period.h"

#define DAY 86400

static int64_t at(int64_t y, unsigned m, unsigned d, int64_t hh, int64_t mm, int64_t ss)
{
    return lx_period_days_from_civil(y, m, d) * DAY + hh * 3600 + mm * 60 + ss;
}

static void test_known_days(void **state)
{
    (void)state;
    assert_int_equal(lx_period_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(lx_period_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(lx_period_days_from_civil(2000, 3, 1), 11017);
    assert_true(at(2024, 2, 29, 0, 0, 0) == INT64_C(1709164800));
    assert_true(at(2038, 1, 19, 3, 14, 8) == INT64_C(2147483648));
    assert_true(at(2100, 3, 1, 0, 0, 0) - at(2100, 2, 28, 0, 0, 0) == DAY); /* not leap */
    assert_true(at(2000, 3, 1, 0, 0, 0) - at(2000, 2, 28, 0, 0, 0) == 2 * DAY);
    assert_true(lx_period_days_from_civil(0, 1, 1) == -719528);
}

/* Walks day by day from 1600 to 2400 checking both conversions against a simple calendar. */
static void test_walk(void **state)
{
    (void)state;
    static const unsigned len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = lx_period_days_from_civil(1600, 1, 1);
    for (int64_t y = 1600; y < 2400; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for (unsigned m = 1; m <= 12; m++) {
            unsigned n = len[m - 1] + (m == 2 && leap);
            for (unsigned d = 1; d <= n; d++, days++) {
                int64_t yy;
                unsigned mm, dd;
                lx_period_civil_from_days(days, &yy, &mm, &dd);
                if (yy != y || mm != m || dd != d || lx_period_days_from_civil(y, m, d) != days)
                    fail_msg("%lld-%u-%u", (long long)y, m, d);
            }
        }
    }
}

static void test_far_years(void **state)
{
    (void)state;
    int64_t years[] = {-1000000, -4713, -1, 0, 1, 9999, 10000, 1000000, INT64_C(10000000000)};
    for (size_t i = 0; i < sizeof(years) / sizeof(years[0]); i++) {
        int64_t y;
        unsigned m, d;
        int64_t days = lx_period_days_from_civil(years[i], 2, 29);
        lx_period_civil_from_days(days, &y, &m, &d);
        /* Feb 29 of a common year is Mar 1 */
        int leap = (years[i] % 4 == 0 && years[i] % 100 != 0) || years[i] % 400 == 0;
        assert_true(y == years[i]);
        assert_int_equal(m, leap ? 2 : 3);
        assert_int_equal(d, leap ? 29 : 1);
    }
    /* extreme inputs stay defined and ordered */
    assert_true(lx_period_start(LX_PERIOD_MONTH, INT64_MAX) <= INT64_MAX);
    assert_true(lx_period_next(LX_PERIOD_MONTH, INT64_MAX) >
                lx_period_start(LX_PERIOD_MONTH, INT64_MAX));
    assert_true(lx_period_start(LX_PERIOD_WEEK, INT64_MIN) <
                lx_period_next(LX_PERIOD_WEEK, INT64_MIN));
    int64_t t = at(-500, 7, 15, 12, 0, 0);
    assert_true(lx_period_start(LX_PERIOD_MONTH, t) == at(-500, 7, 1, 0, 0, 0));
    assert_true(lx_period_next(LX_PERIOD_MONTH, t) == at(-500, 8, 1, 0, 0, 0));
}

static void check(lx_period_t p, int64_t t, int64_t start, int64_t next)
{
    if (lx_period_start(p, t) != start || lx_period_next(p, t) != next)
        fail_msg("period %d at %lld: start %lld next %lld, want %lld %lld", p, (long long)t,
                 (long long)lx_period_start(p, t), (long long)lx_period_next(p, t),
                 (long long)start, (long long)next);
}

static void test_days(void **state)
{
    (void)state;
    int64_t d = at(2026, 12, 7, 0, 0, 0);
    check(LX_PERIOD_DAY, d, d, d + DAY);
    check(LX_PERIOD_DAY, d - 1, d - DAY, d);
    check(LX_PERIOD_DAY, d + DAY - 1, d, d + DAY);
    check(LX_PERIOD_DAY, -1, -DAY, 0);
    check(LX_PERIOD_DAY, 0, 0, DAY);
    check(LX_PERIOD_TOTAL, d, 0, INT64_MAX);
}

static void test_weeks(void **state)
{
    (void)state;
    /* 2026-12-07 is a Monday; 2026-12-06 a Sunday */
    int64_t mon = at(2026, 12, 7, 0, 0, 0);
    check(LX_PERIOD_WEEK, mon, mon, mon + 7 * DAY);
    check(LX_PERIOD_WEEK, at(2026, 12, 6, 23, 59, 59), mon - 7 * DAY, mon);
    check(LX_PERIOD_WEEK, at(2026, 12, 13, 23, 59, 59), mon, mon + 7 * DAY);
    check(LX_PERIOD_WEEK, at(2026, 12, 10, 12, 0, 0), mon, mon + 7 * DAY);
    /* 1970-01-01 was a Thursday: its week started Monday 1969-12-29 */
    check(LX_PERIOD_WEEK, 0, -3 * DAY, 4 * DAY);
    check(LX_PERIOD_WEEK, 4 * DAY - 1, -3 * DAY, 4 * DAY);
    check(LX_PERIOD_WEEK, 4 * DAY, 4 * DAY, 11 * DAY);
    /* a week across a year end: Monday 2024-12-30 to Monday 2025-01-06 */
    check(LX_PERIOD_WEEK, at(2025, 1, 1, 0, 0, 0), at(2024, 12, 30, 0, 0, 0),
          at(2025, 1, 6, 0, 0, 0));
    /* every start is a Monday: 7 days after another Monday, across four centuries */
    for (int64_t t = at(1900, 1, 1, 0, 0, 0); t < at(2400, 1, 1, 0, 0, 0); t += 7 * DAY + 3607) {
        int64_t s = lx_period_start(LX_PERIOD_WEEK, t);
        assert_true((s - mon) % (7 * DAY) == 0);
        assert_true(s <= t && t < s + 7 * DAY);
    }
}

static void test_months(void **state)
{
    (void)state;
    check(LX_PERIOD_MONTH, at(2024, 2, 29, 23, 59, 59), at(2024, 2, 1, 0, 0, 0),
          at(2024, 3, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, at(2024, 3, 1, 0, 0, 0), at(2024, 3, 1, 0, 0, 0),
          at(2024, 4, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, at(2100, 2, 28, 23, 59, 59), at(2100, 2, 1, 0, 0, 0),
          at(2100, 3, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, at(2026, 12, 31, 23, 59, 59), at(2026, 12, 1, 0, 0, 0),
          at(2027, 1, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, at(2027, 1, 1, 0, 0, 0), at(2027, 1, 1, 0, 0, 0),
          at(2027, 2, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, at(2026, 4, 30, 12, 0, 0), at(2026, 4, 1, 0, 0, 0),
          at(2026, 5, 1, 0, 0, 0));
    check(LX_PERIOD_MONTH, -1, at(1969, 12, 1, 0, 0, 0), 0);
    assert_true(at(2100, 3, 1, 0, 0, 0) - at(2100, 2, 1, 0, 0, 0) == 28 * DAY);
    assert_true(at(2000, 3, 1, 0, 0, 0) - at(2000, 2, 1, 0, 0, 0) == 29 * DAY);
}

static void test_names(void **state)
{
    (void)state;
    assert_null(lx_period_name(LX_PERIOD_TOTAL));
    assert_string_equal(lx_period_name(LX_PERIOD_DAY), "daily");
    assert_string_equal(lx_period_name(LX_PERIOD_WEEK), "weekly");
    assert_string_equal(lx_period_name(LX_PERIOD_MONTH), "monthly");
    assert_int_equal(lx_period_parse("daily", 5), LX_PERIOD_DAY);
    assert_int_equal(lx_period_parse("weekly", 6), LX_PERIOD_WEEK);
    assert_int_equal(lx_period_parse("monthly", 7), LX_PERIOD_MONTH);
    assert_int_equal(lx_period_parse("daily", 4), -1);
    assert_int_equal(lx_period_parse("dailyx", 6), -1);
    assert_int_equal(lx_period_parse("Daily", 5), -1);
    assert_int_equal(lx_period_parse("", 0), -1);
    assert_int_equal(lx_period_parse("null", 4), -1);
}

static void iso_ok(const char *s, int64_t want)
{
    int64_t v = -7;
    int rc = lx_period_parse_iso(s, strlen(s), &v);
    if (rc != 0 || v != want)
        fail_msg("\"%s\": rc %d value %lld want %lld", s, rc, (long long)v, (long long)want);
}

static void iso_bad(const char *s)
{
    int64_t v;
    if (lx_period_parse_iso(s, strlen(s), &v) != LX_EINVAL)
        fail_msg("\"%s\" accepted", s);
}

static void test_iso(void **state)
{
    (void)state;
    char out[21];
    lx_period_format_iso(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    lx_period_format_iso(at(2024, 2, 29, 23, 59, 59), out);
    assert_string_equal(out, "2024-02-29T23:59:59Z");
    lx_period_format_iso(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59Z");
    lx_period_format_iso(INT64_MAX, out);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    lx_period_format_iso(INT64_MIN, out);
    assert_string_equal(out, "0000-01-01T00:00:00Z");
    iso_ok("2024-02-29T23:59:59Z", at(2024, 2, 29, 23, 59, 59));
    iso_ok("2024-02-29T23:59:59.123Z", at(2024, 2, 29, 23, 59, 59));
    iso_ok("2024-02-29T23:59:59+00:00", at(2024, 2, 29, 23, 59, 59));
    iso_ok("2024-02-29T23:59:59.999999999+00:00", at(2024, 2, 29, 23, 59, 59));
    iso_ok("2026-12-07", at(2026, 12, 7, 0, 0, 0));
    iso_ok("1970-01-01T00:00:00Z", 0);
    iso_ok("0000-03-01", lx_period_days_from_civil(0, 3, 1) * DAY);
    const char *bad[] = {"2023-02-29",
                         "2100-02-29",
                         "2024-13-01",
                         "2024-00-10",
                         "2024-04-31",
                         "2024-01-00",
                         "2024-1-01",
                         "2024-01-01T",
                         "2024-01-01T24:00:00Z",
                         "2024-01-01T10:60:00Z",
                         "2024-01-01T10:00:60Z",
                         "2024-01-01T10:00:00",
                         "2024-01-01T10:00:00+01:00",
                         "2024-01-01T10:00:00-00:00",
                         "2024-01-01T10:00:00.Z",
                         "2024-01-01T10:00:00ZZ",
                         "2024-01-01 10:00:00Z",
                         "2024-01-01T10:00Z",
                         "20240101",
                         "",
                         "2024-01-01x",
                         "+2024-01-01",
                         "2024-01-01T10:00:00z",
                         "2024-01-01T10:00:00.5+00:0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        iso_bad(bad[i]);
    /* round trip over a range of times */
    for (int64_t t = at(1999, 12, 31, 0, 0, 0); t < at(2101, 3, 1, 0, 0, 0); t += 86399 * 3) {
        int64_t back;
        lx_period_format_iso(t, out);
        assert_int_equal(lx_period_parse_iso(out, 20, &back), 0);
        assert_true(back == t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_days), cmocka_unit_test(test_walk),
        cmocka_unit_test(test_far_years),  cmocka_unit_test(test_days),
        cmocka_unit_test(test_weeks),      cmocka_unit_test(test_months),
        cmocka_unit_test(test_names),      cmocka_unit_test(test_iso),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
