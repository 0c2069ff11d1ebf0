/*
 * hedge.c - the hedging threshold and the budget's token bucket (hedge.h).
 */
#include "route/hedge.h"

#include <math.h>

uint64_t lx_hedge_threshold_ms(double model_p95_ms, bool primary_demoted_latency)
{
    if (primary_demoted_latency)
        return 0;
    if (!(model_p95_ms >= 0) || isinf(model_p95_ms))
        return LX_HEDGE_NEVER;
    double t = model_p95_ms * LX_HEDGE_FACTOR;
    if (t < LX_HEDGE_FLOOR_MS)
        return LX_HEDGE_FLOOR_MS;
    if (t > 3600e3)
        return 3600000; /* (an hour: no attempt waits that long for a head) */
    return (uint64_t)(t + 0.5);
}

bool lx_hedge_take(lx_hedge_bucket_t *b)
{
    if (b->credit < LX_HEDGE_TOKEN)
        return false;
    b->credit -= LX_HEDGE_TOKEN;
    return true;
}

void lx_hedge_refund(lx_hedge_bucket_t *b)
{
    b->credit += LX_HEDGE_TOKEN; /* (taken just before: below the cap again) */
}
