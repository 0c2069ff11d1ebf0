/*
 * period.c - UTC days, weeks (from Monday) and months as pure arithmetic on Unix seconds
 * (period.h). Civil dates use the proleptic Gregorian calendar with years counted from March
 * (so the leap day is the last day of its year) in 400-year cycles of 146,097 days: the idea of
 * Howard Hinnant's days_from_civil / civil_from_days, written here for int64 years.
 */
#include "store/period.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/status.h"

#define DAY_S          INT64_C(86400)
#define DAYS_PER_CYCLE INT64_C(146097) /* 400 Gregorian years */
#define EPOCH_SHIFT    INT64_C(719468) /* days from 0000-03-01 to 1970-01-01 */
/* Seconds kept within this range so that day arithmetic and "next" never overflow. */
#define SECONDS_CAP (INT64_MAX / 4)

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t clamp_s(int64_t s)
{
    return s > SECONDS_CAP ? SECONDS_CAP : s < -SECONDS_CAP ? -SECONDS_CAP : s;
}

int64_t lx_period_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t yr = m <= 2 ? y - 1 : y; /* the year that starts in March */
    int64_t cycle = floor_div(yr, 400);
    int64_t year_of_cycle = yr - cycle * 400;                           /* 0..399 */
    int64_t month_from_march = m > 2 ? (int64_t)m - 3 : (int64_t)m + 9; /* 0..11 */
    int64_t day_of_year = (153 * month_from_march + 2) / 5 + (int64_t)d - 1;
    int64_t day_of_cycle =
        year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    return cycle * DAYS_PER_CYCLE + day_of_cycle - EPOCH_SHIFT;
}

void lx_period_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + EPOCH_SHIFT;
    int64_t cycle = floor_div(z, DAYS_PER_CYCLE);
    int64_t doc = z - cycle * DAYS_PER_CYCLE; /* 0..146096 */
    /* years of the cycle: 365 days each, minus the leap days counted so far */
    int64_t yoc = (doc - doc / 1460 + doc / 36524 - doc / (DAYS_PER_CYCLE - 1)) / 365;
    int64_t doy = doc - (365 * yoc + yoc / 4 - yoc / 100); /* 0..365, from March 1 */
    int64_t mfm = (5 * doy + 2) / 153;                     /* 0..11, from March */
    *d = (unsigned)(doy - (153 * mfm + 2) / 5 + 1);
    *m = (unsigned)(mfm < 10 ? mfm + 3 : mfm - 9);
    *y = yoc + cycle * 400 + (*m <= 2 ? 1 : 0);
}

/* The first day (days since the epoch) of the period <p> containing day <days>. */
static int64_t first_day(lx_period_t p, int64_t days)
{
    switch (p) {
    case LX_PERIOD_DAY:
        return days;
    case LX_PERIOD_WEEK:
        /* 1970-01-01 was a Thursday: (days + 3) mod 7 counts from Monday */
        return days - (days + 3 - floor_div(days + 3, 7) * 7);
    case LX_PERIOD_MONTH: {
        int64_t y;
        unsigned m, d;
        lx_period_civil_from_days(days, &y, &m, &d);
        return days - (int64_t)d + 1;
    }
    default:
        return 0;
    }
}

int64_t lx_period_start(lx_period_t p, int64_t unix_s)
{
    if (p != LX_PERIOD_DAY && p != LX_PERIOD_WEEK && p != LX_PERIOD_MONTH)
        return 0;
    int64_t days = floor_div(clamp_s(unix_s), DAY_S);
    return first_day(p, days) * DAY_S;
}

int64_t lx_period_next(lx_period_t p, int64_t unix_s)
{
    int64_t days = floor_div(clamp_s(unix_s), DAY_S);
    switch (p) {
    case LX_PERIOD_DAY:
        return (days + 1) * DAY_S;
    case LX_PERIOD_WEEK:
        return (first_day(p, days) + 7) * DAY_S;
    case LX_PERIOD_MONTH: {
        int64_t y;
        unsigned m, d;
        lx_period_civil_from_days(days, &y, &m, &d);
        return lx_period_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * DAY_S;
    }
    default:
        return INT64_MAX;
    }
}

static const char *const names[LX_PERIOD_COUNT] = {NULL, "daily", "weekly", "monthly"};

const char *lx_period_name(lx_period_t p)
{
    return (unsigned)p < LX_PERIOD_COUNT ? names[p] : NULL;
}

int lx_period_parse(const char *s, size_t len)
{
    for (int p = LX_PERIOD_DAY; p < LX_PERIOD_COUNT; p++)
        if (s != NULL && strlen(names[p]) == len && memcmp(s, names[p], len) == 0)
            return p;
    return -1;
}

/* Writes <v> as <width> digits (v >= 0). */
static void put_digits(char *out, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

#define ISO_MIN INT64_C(-62167219200) /* 0000-01-01T00:00:00Z */
#define ISO_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

void lx_period_format_iso(int64_t unix_s, char out[21])
{
    int64_t t = unix_s < ISO_MIN ? ISO_MIN : unix_s > ISO_MAX ? ISO_MAX : unix_s;
    int64_t days = floor_div(t, DAY_S), sec = t - days * DAY_S, y;
    unsigned m, d;
    lx_period_civil_from_days(days, &y, &m, &d);
    memcpy(out, "0000-00-00T00:00:00Z", 21);
    put_digits(out, y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, sec / 3600, 2);
    put_digits(out + 14, sec / 60 % 60, 2);
    put_digits(out + 17, sec % 60, 2);
}

/* <width> digits at s[at...] into *v; false when one is not a digit. */
static bool get_digits(const char *s, size_t at, int width, int64_t *v)
{
    *v = 0;
    for (int i = 0; i < width; i++) {
        char c = s[at + (size_t)i];
        if (c < '0' || c > '9')
            return false;
        *v = *v * 10 + (c - '0');
    }
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, int64_t m)
{
    static const unsigned len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* "YYYY-MM-DD" at the start of <s> (10 bytes available) into days since the epoch. */
static bool parse_date(const char *s, int64_t *days)
{
    int64_t y, m, d;
    if (!get_digits(s, 0, 4, &y) || s[4] != '-' || !get_digits(s, 5, 2, &m) || s[7] != '-' ||
        !get_digits(s, 8, 2, &d))
        return false;
    if (m < 1 || m > 12 || d < 1 || d > month_days(y, m))
        return false;
    *days = lx_period_days_from_civil(y, (unsigned)m, (unsigned)d);
    return true;
}

/* The zone after the seconds at s[i...]: optional fraction, then "Z" or "+00:00", to the end. */
static bool parse_zone(const char *s, size_t len, size_t i)
{
    if (i < len && s[i] == '.') {
        size_t digits = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == digits)
            return false;
    }
    if (len - i == 1)
        return s[i] == 'Z';
    return len - i == 6 && memcmp(s + i, "+00:00", 6) == 0;
}

int lx_period_parse_iso(const char *s, size_t len, int64_t *out)
{
    int64_t days, hh, mm, ss;
    if (s == NULL || len < 10 || !parse_date(s, &days))
        return LX_EINVAL;
    if (len == 10) {
        *out = days * DAY_S;
        return 0;
    }
    if (len < 20 || s[10] != 'T' || !get_digits(s, 11, 2, &hh) || s[13] != ':' ||
        !get_digits(s, 14, 2, &mm) || s[16] != ':' || !get_digits(s, 17, 2, &ss))
        return LX_EINVAL;
    if (hh > 23 || mm > 59 || ss > 59 || !parse_zone(s, len, 19))
        return LX_EINVAL;
    *out = days * DAY_S + hh * 3600 + mm * 60 + ss;
    return 0;
}
