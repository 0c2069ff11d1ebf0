/*
 * load_slot.h - the published load signals of one health row (a model on one endpoint): the
 * model server's waiting and running requests and KV-cache use from its last scrape
 * (load_metrics.h), and when that scrape was read.
 *
 * One writer at a time (the scrape of the endpoint: the gateway lets one be in flight per
 * endpoint and hands the slot over with a release/acquire flag), any number of readers on
 * other threads, no lock: a sequence count makes a reader that overlaps a write retry, so it
 * never sees waiting from one scrape and KV use from another. Every field is an atomic (the
 * sanitizers see no race); a publish is four relaxed stores and two release ones, a read four
 * loads when nothing overlaps.
 */
#ifndef LX_LOAD_SLOT_H
#define LX_LOAD_SLOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "route/load_metrics.h"

typedef struct lx_load_slot {
    _Atomic uint32_t seq;     /* odd while a write is under way */
    _Atomic uint64_t counts;  /* waiting | running << 32 */
    _Atomic uint64_t kv;      /* kv_ppm | flags << 32 (LX_LOAD_HAS_*) */
    _Atomic uint64_t read_ms; /* loop time (uv_now) of the scrape; 0: never scraped */
    _Atomic uint32_t cap;     /* the learned max_in_flight's state (route/fleet.h
                                 lx_fleet_learn_cap: sixteenths; 0: none), the writer's */
} lx_load_slot_t;

/* What a reader gets. */
typedef struct lx_load_view {
    uint32_t waiting, running, kv_ppm;
    uint8_t flags;    /* LX_LOAD_HAS_*: which of the three the server exposes */
    uint64_t read_ms; /* 0: never scraped */
} lx_load_view_t;

/* Publishes <s>, read at <now_ms>, into <slot> (the slot's one writer). */
static inline void lx_load_slot_publish(lx_load_slot_t *slot, const lx_load_sample_t *s,
                                        uint64_t now_ms)
{
    uint32_t seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&slot->counts, (uint64_t)s->waiting | (uint64_t)s->running << 32,
                          memory_order_relaxed);
    atomic_store_explicit(&slot->kv, (uint64_t)s->kv_ppm | (uint64_t)s->flags << 32,
                          memory_order_relaxed);
    atomic_store_explicit(&slot->read_ms, now_ms == 0 ? 1 : now_ms, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, seq + 2, memory_order_release);
}

/* The learned max_in_flight's state: read and written by the slot's one writer (the next
 * scrape of the endpoint follows the previous one's release), read by anyone. */
static inline uint32_t lx_load_slot_cap(const lx_load_slot_t *slot)
{
    return atomic_load_explicit(&((lx_load_slot_t *)slot)->cap, memory_order_relaxed);
}

static inline void lx_load_slot_set_cap(lx_load_slot_t *slot, uint32_t state)
{
    atomic_store_explicit(&slot->cap, state, memory_order_relaxed);
}

/* Reads <slot> into *<v>. False (and *v zero: never scraped) when a writer kept overlapping
 * (four tries): the caller treats the row as unscraped for this one decision. */
static inline bool lx_load_slot_read(const lx_load_slot_t *slot, lx_load_view_t *v)
{
    lx_load_slot_t *s = (lx_load_slot_t *)slot; /* (atomic loads of a const object) */
    for (int tries = 0; tries < 4; tries++) {
        uint32_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        uint64_t counts = atomic_load_explicit(&s->counts, memory_order_relaxed);
        uint64_t kv = atomic_load_explicit(&s->kv, memory_order_relaxed);
        uint64_t at = atomic_load_explicit(&s->read_ms, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        uint32_t b = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (a == b && (a & 1) == 0) {
            *v = (lx_load_view_t){(uint32_t)counts, (uint32_t)(counts >> 32), (uint32_t)kv,
                                  (uint8_t)(kv >> 32), at};
            return true;
        }
    }
    *v = (lx_load_view_t){0};
    return false;
}

#endif
