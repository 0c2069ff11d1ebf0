/*
 * codel.c - the standing-queue detector (codel.h; why, in README.md "Standing queue").
 */
#include "route/codel.h"

void lx_codel_init(lx_codel_t *c, uint64_t target_ms, uint64_t interval_ms)
{
    c->target_ms = target_ms;
    c->interval_ms = interval_ms;
    c->above_since_ms = 0;
    c->above = false;
    c->standing = false;
    c->stood = false;
    c->left_ms = 0;
    c->last_ms = 0;
    c->entered = 0;
}

/* Not standing from <now_ms> on. */
static void stop(lx_codel_t *c, uint64_t now_ms)
{
    if (c->standing) {
        c->stood = true;
        c->left_ms = now_ms;
    }
    c->standing = false;
    c->above = false;
}

void lx_codel_left(lx_codel_t *c, uint64_t sojourn_ms, uint64_t now_ms)
{
    c->last_ms = now_ms;
    if (c->target_ms == 0 || sojourn_ms < c->target_ms) {
        stop(c, now_ms);
        return;
    }
    if (!c->above) {
        c->above = true;
        c->above_since_ms = now_ms;
    }
    bool run = now_ms >= c->above_since_ms && now_ms - c->above_since_ms >= c->interval_ms;
    bool again = c->stood && now_ms >= c->left_ms && now_ms - c->left_ms < c->interval_ms;
    if (!c->standing && (run || again)) {
        c->standing = true;
        c->entered++;
    }
}

void lx_codel_empty(lx_codel_t *c)
{
    stop(c, c->last_ms);
}
