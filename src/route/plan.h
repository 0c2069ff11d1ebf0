/*
 * plan.h - the plan of one request (which (model, route) pairs to try, in order) and the
 * endpoint of each attempt, over a configuration, its health table and one worker's counters.
 *
 * Pure: no I/O, no loop, no allocation; times and random states are passed in. The gateway
 * describes the worker and the generation with an lx_route_ctx_t, the request with an
 * lx_plan_req_t, and keeps the plan and the attempts in its request struct.
 *
 *   lx_plan_make: models chain (`model`, then each `models` entry; :nitro / :floor applied)
 *     ─> preferences (prefs.h) ─> candidates (every route of every model, with its best
 *     endpoint's published health) ─> lx_router_plan (router.h) ─> plan entries
 *   lx_plan_apply_session: the session's last (model, route) first, its endpoint pinned
 *   lx_plan_pick_endpoint: per attempt, the pinned endpoint, else a session's placement, else
 *     the power of two choices among untried replicas the breaker admits
 */
#ifndef LX_PLAN_H
#define LX_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "llm/body.h"
#include "route/health.h"
#include "route/load_slot.h"
#include "route/ring.h"
#include "route/session.h"

#define LX_PLAN_MAX 64 /* entries of a plan (candidates beyond are not considered) */

/* What the plan reads and the counters it moves: one worker's view of one configuration. */
typedef struct lx_route_ctx {
    const lx_config_t *cfg;
    lx_health_t *table; /* the configuration's health table (read: published scores, breaker) */
    /* the row of endpoint j of route r of model m: route_row[model_base[m] + r] + j */
    const size_t *model_base;
    const size_t *route_row;
    const uint32_t *in_flight; /* per row: this worker's attempts in flight */
    uint32_t *rr;              /* per provider: its next replica (routing.strategy round_robin) */
    uint64_t *rr_plan;         /* round_robin: the rotation of plans */
    uint64_t *rng;             /* this worker's random state */
    /* routing.balance least_request and fleet (NULL / 0 when not used): */
    const lx_load_slot_t *load;  /* per row: its server's scraped load (provider `metrics`) */
    const lx_ring_t *rings;      /* per route (model_base[m] + r): the ring of its provider's
                                    endpoints; n_replicas 0 when there is none */
    uint64_t prefix_key;         /* the request's prompt-prefix ring key (llm/prefix.h); 0: none */
    bool may_queue;              /* the request may wait in the admission queue (its first
                                    attempt, not queued yet): LX_PLAN_FULL may be returned */
    struct lx_fleet_move *moves; /* LX_FLEET_MOVES prompt keys' homes (route/fleet.h
                                    lx_fleet_place, lx_fleet_move), this worker's; written
                                    by a first attempt (may_queue); NULL: the ring's homes */
} lx_route_ctx_t;

/* lx_plan_pick_endpoint(): every replica is full (balance fleet, routing.queue_size > 0,
 * x->may_queue): the caller queues the request. */
#define LX_PLAN_FULL (-2)

static inline size_t lx_route_row(const lx_route_ctx_t *x, size_t model, size_t route, size_t ep)
{
    return x->route_row[x->model_base[model] + route] + ep;
}

/* One entry of a plan: configuration indexes. */
typedef struct lx_plan_entry {
    uint16_t model, route;
} lx_plan_entry_t;

/* The request, as the plan reads it. */
typedef struct lx_plan_req {
    const char *body;
    size_t body_len;
    const lx_body_scan_t *scan; /* lx_body_scan() of body */
    uint64_t session;           /* lx_session_hash() of its session id; 0 without one */
    uint64_t now_ms;
    /* The caller's key, when it has rules (NULL / 0: none): */
    const char *default_provider; /* routing preferences (a JSON object's text) merged under
                                   * the request's own `provider` (lx_prefs_merge_under) */
    size_t default_provider_len;
    /* Whether the key may use the model with public id <id> (<len> bytes): a `model` it may
     * not use is a 403; `models` entries it may not use are left out of the chain. */
    bool (*allow)(const void *arg, const char *id, size_t len);
    const void *allow_arg;
} lx_plan_req_t;

/* Why a request was refused by model resolution: its error's OpenAI code and param (static
 * strings, NULL for null) and its message's length (it may hold a NUL: the model name as the
 * client wrote it); all zero when the message is a C string. */
typedef struct lx_plan_reject {
    const char *code;
    const char *param;
    size_t len;
} lx_plan_reject_t;

/*
 * The plan of request <q>: up to LX_PLAN_MAX entries into <plan>, their count into *<n_plan>.
 * Returns 0, or the HTTP status of a request that cannot be routed with its message in <msg>
 * (NUL-terminated; <rej> says more for a model that is not found): 400 (bad preferences, no
 * model), 403 (the key may not use `model`, or any entry of `models`), 404 (unknown model, or
 * the filters leave nothing), 500 (too many candidates).
 * Without a session, moves the worker's random state; round_robin moves its rotation.
 */
int lx_plan_make(const lx_route_ctx_t *x, const lx_plan_req_t *q, lx_plan_entry_t *plan,
                 uint16_t *n_plan, lx_plan_reject_t *rej, char *msg, size_t cap);

/*
 * Session stickiness: when session <hash> has a live entry in <t> for the generation <serial>,
 * its (model, route) is in the plan and (routing.strategy health) its endpoint is available,
 * moves that entry to the front and returns its endpoint; else -1 and the plan is unchanged.
 */
int lx_plan_apply_session(const lx_route_ctx_t *x, const lx_sessions_t *t, uint64_t hash,
                          uint64_t serial, uint64_t now_ms, lx_plan_entry_t *plan, uint16_t n_plan);

/*
 * The endpoint for plan entry <e>: <pin> (>= 0, a session's) when available and untried, else
 * by routing.balance among the untried replicas the breaker admits (all untried ones under
 * strategy round_robin):
 *   - round_robin (or strategy round_robin with no balance): the next one in rotation;
 *   - least_request: the fewest attempts in flight, all workers (lx_health_in_flight), ties
 *     from a random start;
 *   - fleet: lx_fleet_pick over their signals (global in flight, the scraped load of x->load,
 *     stale after 3 routing.scrape_interval, the provider's max_in_flight or, without one
 *     and with `metrics`, the learned one (lx_fleet_cap_of), the published health score)
 *     with the route's ring and x->prefix_key; when every one is full, or (routing.queue_size
 *     > 0 and x->may_queue) the key's home is full (it waits for it: LX_FLEET_WAIT),
 *     LX_PLAN_FULL if routing.queue_size > 0 and x->may_queue, else the least in flight (fail
 *     open: no queue, a failover attempt, or a request that waited already);
 *   - absent: for a session the replica it is placed on (lx_session_place), else the power of
 *     two choices over this worker's in-flight counts (lx_router_pick_endpoint).
 * <tried> has bit j set for each endpoint j this request tried. -1 when every replica was
 * tried (or none is available).
 */
int lx_plan_pick_endpoint(const lx_route_ctx_t *x, lx_plan_entry_t e, uint64_t tried, int pin,
                          uint64_t session, uint64_t now_ms);

/* After a context-length error at entry <pos>: every later entry of the same model goes, so the
 * next attempt is the next *model*. */
void lx_plan_drop_model(lx_plan_entry_t *plan, uint16_t *n_plan, uint16_t pos);

#endif
