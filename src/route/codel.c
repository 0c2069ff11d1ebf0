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
    c->entered = 0;
}

void lx_codel_left(lx_codel_t *c, uint64_t sojourn_ms, uint64_t now_ms)
{
    if (c->target_ms == 0 || sojourn_ms < c->target_ms) {
        c->above = false;
        c->standing = false;
        return;
    }
    if (!c->above) {
        c->above = true;
        c->above_since_ms = now_ms;
    }
    if (!c->standing && now_ms >= c->above_since_ms &&
        now_ms - c->above_since_ms >= c->interval_ms) {
        c->standing = true;
        c->entered++;
    }
}

void lx_codel_empty(lx_codel_t *c)
{
    c->above = false;
    c->standing = false;
}
