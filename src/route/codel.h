/*
 * codel.h - an overload detector for an admission queue, after CoDel (Nichols and Jacobson,
 * "Controlling Queue Delay", ACM Queue 2012). The queue is "standing" (the fleet behind it is
 * overloaded, not hit by a burst) once, for a whole <interval>, every request that left it had
 * waited at least <target> (its sojourn, measured when it leaves) AND, over the last interval of
 * that run, more requests arrived at it than it served, by at least LX_CODEL_RATE_NUM /
 * LX_CODEL_RATE_DEN (an arrival is a push, admitted or refused, or a shed; a service is a pop). The
 * second condition is what CoDel does not need and a fleet queue does: a fleet run near its
 * capacity has long waits that a burst started and that drain (arrivals and services even), which
 * waiting absorbs; one run past its capacity is fed faster than it drains, and only refusing brings
 * the wait back.
 *
 * A standing queue stays standing while the caller refuses arrivals (lx_codel_shed): the
 * caller's refusals are what keep its waits under the target, so a short wait or an empty
 * queue ends the state only once a whole interval passed without a refusal (CoDel leaves its
 * dropping state on a short sojourn because its drops do not depend on it; here the refusals
 * would stop at the first short wait, the queue would fill again, and admitted requests would
 * wait an interval's excess each time). An empty queue that nothing left for an interval stops
 * standing when the caller asks (lx_codel_idle, before it judges an arrival), refusals or not.
 * As CoDel resumes dropping at once when it left its
 * dropping state shortly before, a wait at or above the target within one interval after the
 * queue stopped standing makes it stand again at once.
 *
 * What the caller does with the state is its own (the gateway: while standing, an arrival that
 * would have to wait is refused at once with 429 instead of queueing behind the standing queue,
 * so admitted requests wait about <target> while the excess is refused; README.md, "Standing
 * queue").
 *
 * Pure: no clock (times are milliseconds of a monotonic clock passed in), no allocation, no
 * lock; one detector per queue, on the queue's thread.
 */
#ifndef LX_CODEL_H
#define LX_CODEL_H

#include <stdbool.h>
#include <stdint.h>

#define LX_CODEL_TARGET_MS   100 /* default target: the wait an admitted request may have */
#define LX_CODEL_INTERVAL_MS 500 /* default interval: a burst shorter than this is absorbed */
#define LX_CODEL_RATE_NUM    9   /* arrivals >= 9/8 of services over the run: fed faster than */
#define LX_CODEL_RATE_DEN    8   /* it drains (a queue near capacity sees about 1/1) */

typedef struct lx_codel {
    uint64_t target_ms;      /* 0: off (never standing) */
    uint64_t interval_ms;    /* how long sojourns stay >= target before the queue is standing */
    uint64_t above_since_ms; /* when the current run of sojourns >= target began */
    bool above;              /* a run of sojourns >= target is on */
    bool standing;           /* the run lasted a whole interval */
    bool stood;              /* it stood before: left_ms is when it stopped */
    uint64_t left_ms;        /* when it last stopped standing */
    uint64_t last_ms;        /* the time of the last wait or refusal reported */
    uint64_t entered;        /* times the queue became standing (a counter for the stats) */
    uint64_t shed_ms;        /* when the caller last refused an arrival (lx_codel_shed) */
    uint64_t gone_ms;        /* when a request last left (lx_codel_left) */
    bool shed_seen;          /* it did since the state began */
    uint64_t arrived;        /* arrivals (lx_codel_arrived, lx_codel_shed), since init */
    uint64_t served;         /* services (lx_codel_left with served), since init */
    uint64_t win_ms;         /* the start of the run's current window (of an interval) */
    uint64_t win_arrived;    /* the two counts when it began */
    uint64_t win_served;
} lx_codel_t;

/* Not standing, with <target_ms> (0: off) and <interval_ms>. */
void lx_codel_init(lx_codel_t *c, uint64_t target_ms, uint64_t interval_ms);

/* A request left the queue at <now_ms> after <sojourn_ms> in it: <served> (a pop), or not
 * (expired). Below the target: the run ends, and the state ends too unless the caller refused
 * an arrival less than <interval_ms> ago. At or above it: the run starts (when none is on) or
 * goes on, and once it began <interval_ms> or more ago with arrivals at least 9/8 of the
 * services over its last window of an interval, or the queue stopped standing less than
 * <interval_ms> ago, the queue is standing. */
void lx_codel_left(lx_codel_t *c, uint64_t sojourn_ms, bool served, uint64_t now_ms);

/* A request arrived at the queue (a push, admitted or refused because the queue is full). */
static inline void lx_codel_arrived(lx_codel_t *c)
{
    c->arrived++;
}

/* The caller refused an arriving request at <now_ms> because the queue stands (also an
 * arrival): the state holds for <interval_ms> more. */
void lx_codel_shed(lx_codel_t *c, uint64_t now_ms);

/* The queue became empty: the run ends, and the state too unless the caller refused an arrival
 * less than <interval_ms> before the last time reported (a wait or a refusal). */
void lx_codel_empty(lx_codel_t *c);

/* The queue is empty at <now_ms> and an arrival is about to be judged: when no request left it
 * for <interval_ms> or more, the state ends, refusals or not. No wait measures an overload any
 * more (every arrival may have been refused: a home whose slot interval alone is over the
 * target), and refusals alone would hold the state for ever. */
void lx_codel_idle(lx_codel_t *c, uint64_t now_ms);

/* True while the queue is standing (never when off). */
static inline bool lx_codel_standing(const lx_codel_t *c)
{
    return c->standing;
}

#endif
