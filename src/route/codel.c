/*
 * codel.c - the overload detector (codel.h; why, in README.md "Standing queue").
 */
#include "route/codel.h"

void lx_codel_init(lx_codel_t *c, uint64_t target_ms, uint64_t interval_ms)
{
    *c = (lx_codel_t){.target_ms = target_ms, .interval_ms = interval_ms};
}

/* Whether the caller refused an arrival less than an interval before <now_ms>. */
static bool shedding(const lx_codel_t *c, uint64_t now_ms)
{
    return c->shed_seen && (now_ms < c->shed_ms || now_ms - c->shed_ms < c->interval_ms);
}

/* The run ends; the state too, from <now_ms> on, unless the caller is refusing arrivals. */
static void stop(lx_codel_t *c, uint64_t now_ms)
{
    c->above = false;
    if (c->standing && shedding(c, now_ms))
        return;
    if (c->standing) {
        c->stood = true;
        c->left_ms = now_ms;
    }
    c->standing = false;
}

/* Whether the run makes the queue stand at <now_ms>: it is a whole interval old, and over the
 * window that just completed (an interval or more; the first begins with the run) arrivals
 * were at least 9/8 of services. A window that completes without that starts the next one here:
 * a run that drained as fast as it was fed for a minute does not dilute a surge after it. */
static bool overloaded(lx_codel_t *c, uint64_t now_ms)
{
    if (now_ms < c->win_ms || now_ms - c->win_ms < c->interval_ms)
        return false;
    uint64_t in = c->arrived - c->win_arrived, out = c->served - c->win_served;
    if (in * LX_CODEL_RATE_DEN >= out * LX_CODEL_RATE_NUM)
        return true; /* (the counts are requests: no product overflows) */
    c->win_ms = now_ms;
    c->win_arrived = c->arrived;
    c->win_served = c->served;
    return false;
}

void lx_codel_left(lx_codel_t *c, uint64_t sojourn_ms, bool served, uint64_t now_ms)
{
    c->last_ms = c->gone_ms = now_ms;
    if (c->target_ms == 0)
        return;
    if (served)
        c->served++;
    if (sojourn_ms < c->target_ms) {
        stop(c, now_ms);
        return;
    }
    if (!c->above) {
        c->above = true;
        c->above_since_ms = c->win_ms = now_ms;
        c->win_arrived = c->arrived;
        c->win_served = c->served;
    }
    bool again = c->stood && now_ms >= c->left_ms && now_ms - c->left_ms < c->interval_ms;
    if (!c->standing && (again || overloaded(c, now_ms))) {
        c->standing = true;
        c->shed_seen = false;
        c->entered++;
    }
}

void lx_codel_shed(lx_codel_t *c, uint64_t now_ms)
{
    c->arrived++;
    c->shed_ms = now_ms;
    c->shed_seen = true;
    if (now_ms > c->last_ms)
        c->last_ms = now_ms;
}

void lx_codel_empty(lx_codel_t *c)
{
    stop(c, c->last_ms);
}

void lx_codel_idle(lx_codel_t *c, uint64_t now_ms)
{
    if (!c->standing || now_ms < c->gone_ms || now_ms - c->gone_ms < c->interval_ms)
        return;
    c->shed_seen = false;
    stop(c, now_ms);
}
