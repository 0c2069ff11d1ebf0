/*
 * fleet.h - the choice of a replica among the self-hosted replicas of one model: prefix
 * affinity (the bounded-load ring, route/ring.h) held in check by load (llmux's in-flight
 * counts and the model servers' scraped queue, running count and KV-cache use), under the
 * health table and breaker. The scoring function and its justification are at the top of
 * fleet.c.
 *
 * Pure: the caller (the gateway) gives one lx_fleet_rep_t per replica, in the ring's replica
 * order, and a random state; no allocation, no lock, time linear in the replicas plus one ring
 * lookup. Same inputs and random state, same answer.
 */
#ifndef LX_FLEET_H
#define LX_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/ring.h"

#define LX_FLEET_MAX LX_RING_MAX_REPLICAS

/* One replica's signals. */
typedef struct lx_fleet_rep {
    bool available;         /* the health table and the breaker admit it: false is never chosen */
    bool metrics;           /* its server's signals (waiting, running, kv_ppm) are scraped */
    bool fresh;             /* ... and the last scrape is recent; a stale one counts as saturated */
    uint32_t in_flight;     /* llmux's requests on it, all workers */
    uint32_t waiting;       /* the server's queue (vllm:num_requests_waiting, ...) */
    uint32_t running;       /* the server's running requests */
    uint32_t kv_ppm;        /* KV-cache use, parts per million (0.8 = 800,000) */
    uint32_t max_in_flight; /* full at this many in flight; 0: unknown (never full) */
    double health;          /* the health table's score, 0..1 */
} lx_fleet_rep_t;

typedef struct lx_fleet_params {
    const lx_ring_t *ring; /* over the same replicas in the same order; NULL: no affinity */
    uint32_t eps_milli;    /* the ring's bounded-load eps, thousandths (500) */
    uint32_t queue_sat;    /* a queue this long counts as saturated (5) */
    uint32_t kv_sat_ppm;   /* a KV use this high counts as saturated (800,000) */
    uint32_t flight_sat;   /* in flight that counts as saturated when max_in_flight is 0 (32) */
    double w_queue, w_kv, w_flight, w_health; /* the cost's weights (1, 1, 1, 1) */
    double slack; /* the affinity replica is kept while its cost <= best + slack (0.5) */
} lx_fleet_params_t;

/* Why a replica was chosen. */
enum lx_fleet_reason {
    LX_FLEET_NONE,     /* no replica available and below max_in_flight: -1 */
    LX_FLEET_AFFINITY, /* the ring's replica for the prefix key */
    LX_FLEET_LOAD,     /* the least costly (no key, or the affinity replica was too busy) */
};

typedef struct lx_fleet_choice {
    int index;       /* as returned */
    int affinity;    /* the ring's replica for the key, -1 when none */
    bool spilled;    /* the ring passed the key's home on (it was at capacity) */
    bool stale_only; /* only replicas with stale scrapes were left (fail open) */
    enum lx_fleet_reason reason;
    double cost; /* the chosen replica's cost */
} lx_fleet_choice_t;

/* The defaults above. */
void lx_fleet_params_default(lx_fleet_params_t *p);

/* The cost of replica <r> under <p> (fleet.c: lower is better; 1.0 per saturated signal). */
double lx_fleet_cost(const lx_fleet_rep_t *r, const lx_fleet_params_t *p);

/* Whether <r> may take one more request: available and below its max_in_flight. */
bool lx_fleet_admits(const lx_fleet_rep_t *r);

/*
 * The replica for a request whose prompt has the ring key <prefix_key> (llm/prefix.h; 0: no
 * prompt, no affinity) among the <n> (<= LX_FLEET_MAX) replicas <reps>: an index into <reps>,
 * or -1 when none admits a request (all unavailable or full: the caller queues). <rnd> is the
 * random state for ties (any value; updated).
 */
int lx_fleet_pick(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                  const lx_fleet_params_t *p, uint64_t *rnd);

/* lx_fleet_pick() telling why, in *<why> (not NULL). */
int lx_fleet_pick_ex(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                     const lx_fleet_params_t *p, uint64_t *rnd, lx_fleet_choice_t *why);

/*
 * A prefix-hit estimate without a tokenizer or the servers' KV events: each replica keeps a
 * direct-mapped table of the block hashes (llm/prefix.h chain) of the prompts routed to it,
 * <n_slots> words the caller owns (zeroed: empty). A block seen there was probably prefilled
 * there (an overwritten slot or an eviction on the server makes it an estimate).
 *
 * lx_fleet_prefix_note() records the <n> blocks of <chain> after a dispatch;
 * lx_fleet_prefix_hit_estimate() returns how many leading blocks of <chain> the table holds
 * (it stops at the first missing one, as a server's prefix cache does): hits / n is the
 * request's estimated prefix-cache hit, the sums per endpoint the /admin/health figure.
 */
void lx_fleet_prefix_note(uint64_t *slots, size_t n_slots, const uint64_t *chain, size_t n);
size_t lx_fleet_prefix_hit_estimate(const uint64_t *slots, size_t n_slots, const uint64_t *chain,
                                    size_t n);

#endif
