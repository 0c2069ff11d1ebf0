/*
 * codel.h - a standing-queue detector for an admission queue, after CoDel (Nichols and
 * Jacobson, "Controlling Queue Delay", ACM Queue 2012): a queue is "standing" once the time
 * requests spent in it (their sojourn, measured when they leave it) has stayed at or above a
 * <target> for a whole <interval>; a burst that drains within the interval never makes it
 * standing. It stops standing when a request leaves after less than the target, or when the
 * queue empties (nothing stands in an empty queue). As CoDel resumes dropping at once when it
 * left its dropping state shortly before, a wait at or above the target within one interval
 * after the queue stopped standing makes it stand again at once: the overload that made it
 * stand has not gone away, and waiting a whole interval again would let the queue grow by
 * an interval's excess each time.
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

typedef struct lx_codel {
    uint64_t target_ms;      /* 0: off (never standing) */
    uint64_t interval_ms;    /* how long sojourns stay >= target before the queue is standing */
    uint64_t above_since_ms; /* when the current run of sojourns >= target began */
    bool above;              /* a run of sojourns >= target is on */
    bool standing;           /* the run lasted a whole interval */
    bool stood;              /* it stood before: left_ms is when it stopped */
    uint64_t left_ms;        /* when it last stopped standing */
    uint64_t last_ms;        /* the time of the last wait reported */
    uint64_t entered;        /* times the queue became standing (a counter for the stats) */
} lx_codel_t;

/* Not standing, with <target_ms> (0: off) and <interval_ms>. */
void lx_codel_init(lx_codel_t *c, uint64_t target_ms, uint64_t interval_ms);

/* A request left the queue at <now_ms> after <sojourn_ms> in it (served, or expired). Below the
 * target: not standing, the run ends. At or above it: the run starts (when none is on) or goes
 * on, and once it began <interval_ms> or more ago, or the queue stopped standing less than
 * <interval_ms> ago, the queue is standing. */
void lx_codel_left(lx_codel_t *c, uint64_t sojourn_ms, uint64_t now_ms);

/* The queue became empty: not standing (since the last wait reported), no run. */
void lx_codel_empty(lx_codel_t *c);

/* True while the queue is standing (never when off). */
static inline bool lx_codel_standing(const lx_codel_t *c)
{
    return c->standing;
}

#endif
