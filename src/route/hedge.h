/*
 * hedge.h - request hedging's two decisions, pure: when an attempt whose first byte is late
 * gets a second one (the threshold), and whether the worker may afford it (the budget).
 *
 * After "The Tail at Scale" (Dean and Barroso, CACM 2013): defer the second request until the
 * first has been outstanding longer than the expected p95, so that a few percent more load
 * cuts the tail. The gateway (gateway/dispatch_hedge.c) owns the mechanics; this file knows
 * no request, no loop and no clock.
 */
#ifndef LX_ROUTE_HEDGE_H
#define LX_ROUTE_HEDGE_H

#include <stdbool.h>
#include <stdint.h>

/* The threshold: LX_HEDGE_FACTOR x the model's recent TTFT p95 of successful attempts, at
 * least LX_HEDGE_FLOOR_MS. 1.5 x p95 (rather than p95 itself, the paper's deferral) so that a
 * healthy fleet spends about 1-2% of its requests on hedges, not the whole 5% budget, and the
 * budget is left for a replica that slows down; the floor keeps a fast model (a p95 of a few
 * ms, loopback) from hedging on scheduling noise. */
#define LX_HEDGE_FACTOR   1.5
#define LX_HEDGE_FLOOR_MS 10
/* The budget's bucket holds at most the hedges LX_HEDGE_BURST_REQUESTS requests earn (10 at
 * 5%), and at least one: a slow-down that starts after a quiet spell may spend that many at
 * once, no more. */
#define LX_HEDGE_BURST_REQUESTS 200
#define LX_HEDGE_TOKEN          1000000u /* one hedge, in millionths */

/* No hedge (the threshold is unknown). */
#define LX_HEDGE_NEVER UINT64_MAX

/* When an attempt whose first byte has not come should be hedged, in ms after its start:
 * - the primary row is demoted for latency (it only gets the exploration share): 0, race it
 *   at once - waiting for a first byte that row is known to be slow to give costs the whole
 *   wait, and the race still shows the row's recovery (it wins when it is fast again);
 * - else max(LX_HEDGE_FLOOR_MS, LX_HEDGE_FACTOR x <model_p95_ms>);
 * - LX_HEDGE_NEVER when <model_p95_ms> is unknown (negative, NaN) and the row not demoted. */
uint64_t lx_hedge_threshold_ms(double model_p95_ms, bool primary_demoted_latency);

/* A worker's budget: a token bucket in millionths of a hedge. */
typedef struct lx_hedge_bucket {
    uint32_t credit; /* millionths of a hedge */
} lx_hedge_bucket_t;

/* The bucket's cap for a budget of <budget_ppm> millionths per request. */
static inline uint32_t lx_hedge_cap(uint32_t budget_ppm)
{
    uint64_t cap = (uint64_t)budget_ppm * LX_HEDGE_BURST_REQUESTS;
    if (cap < LX_HEDGE_TOKEN)
        cap = LX_HEDGE_TOKEN;
    return cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
}

/* One request arrived: the bucket earns <budget_ppm>, up to its cap. */
static inline void lx_hedge_earn(lx_hedge_bucket_t *b, uint32_t budget_ppm)
{
    uint32_t cap = lx_hedge_cap(budget_ppm);
    uint32_t c = b->credit + budget_ppm;
    b->credit = c < cap ? c : cap;
}

/* Whether one hedge may start now; takes its token when it may. 0 budget: never. */
bool lx_hedge_take(lx_hedge_bucket_t *b);

/* Gives back a token taken for a hedge that found no replica to go to. */
void lx_hedge_refund(lx_hedge_bucket_t *b);

#endif
