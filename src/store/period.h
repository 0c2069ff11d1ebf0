/*
 * period.h - the periods usage is counted over and limits reset on, in UTC: a day starts at
 * midnight, a week on Monday at midnight, a month on its first day at midnight (OpenRouter's
 * rules). Pure functions of a Unix time; no time zone, no libc time functions.
 */
#ifndef LX_PERIOD_H
#define LX_PERIOD_H

#include <stddef.h>
#include <stdint.h>

typedef enum lx_period {
    LX_PERIOD_TOTAL = 0, /* never resets (limit_reset null) */
    LX_PERIOD_DAY = 1,
    LX_PERIOD_WEEK = 2,
    LX_PERIOD_MONTH = 3,
} lx_period_t;

#define LX_PERIOD_COUNT 4

/* The start (Unix seconds) of the period of kind <p> that contains <unix_s>; 0 for TOTAL. */
int64_t lx_period_start(lx_period_t p, int64_t unix_s);

/* The start of the next period after the one containing <unix_s>; INT64_MAX for TOTAL. */
int64_t lx_period_next(lx_period_t p, int64_t unix_s);

/* "daily", "weekly", "monthly" for DAY, WEEK, MONTH; NULL for TOTAL (JSON null). */
const char *lx_period_name(lx_period_t p);

/* The period named by <len> bytes at <s> ("daily", "weekly", "monthly"); -1 when none. */
int lx_period_parse(const char *s, size_t len);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (also used for "YYYY-MM-DD"
 * dates of the activity API and ISO-8601 timestamps). */
int64_t lx_period_days_from_civil(int64_t y, unsigned m, unsigned d);
void lx_period_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* Formats <unix_s> as "YYYY-MM-DDTHH:MM:SSZ" plus a NUL (21 bytes) into <out>; times outside
 * years 0000..9999 are clamped to the nearest end of that range. */
void lx_period_format_iso(int64_t unix_s, char out[21]);

/* Parses an ISO-8601 UTC timestamp: "YYYY-MM-DDTHH:MM:SSZ", fractional seconds allowed
 * (".123Z", dropped), "+00:00" accepted as Z; any other offset, or no zone, is LX_EINVAL
 * (OpenRouter takes UTC only). Also "YYYY-MM-DD" alone (midnight). 0 with *out, or LX_EINVAL. */
int lx_period_parse_iso(const char *s, size_t len, int64_t *out);

#endif
