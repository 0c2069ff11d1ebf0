/*
 * clock.h - wall-clock time for accounting (budget periods, rate limits, record timestamps),
 * with one override point so tests can move time (a budget reset at midnight, a minute of a
 * rate limit) without waiting. The request path's timers keep using the loop's clock; only
 * accounting reads this one.
 */
#ifndef LX_CLOCK_H
#define LX_CLOCK_H

#include <stdint.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME), or what the override says. */
int64_t lx_clock_now_us(void);

/* Tests: replaces the clock with <fn>(<arg>) (NULL restores the real one). Set it before the
 * threads that read it start, or accept that a thread sees the change a little late. */
void lx_clock_override(int64_t (*fn)(void *arg), void *arg);

#endif
