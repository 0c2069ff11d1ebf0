/*
 * router.h - the ordered attempt plan of one request, and the choice of a replica endpoint
 * inside a provider.
 *
 * Pure functions: the gateway describes every (model, provider) candidate with the numbers the
 * router needs (prices, health, flags from the config), and gets back the candidates to try, in
 * order. No I/O, no allocation, deterministic given the random state passed in. The rules are
 * written at the top of router.c.
 */
#ifndef LX_ROUTER_H
#define LX_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/prefs.h"

/* Most candidates lx_router_plan() takes (it works in fixed arrays of this size). */
#define LX_ROUTER_MAX_CANDS 256

enum lx_router_strategy {
    LX_ROUTER_HEALTH,      /* filters, preferences, health and price decide (the default) */
    LX_ROUTER_ROUND_ROBIN, /* filters, then plain rotation per model: the baseline to compare */
};

typedef struct lx_router_opts {
    enum lx_router_strategy strategy;
    /* Least share of the first-pick weight of its model group for each candidate without
     * health data (has_data false) or demoted (score 0), so a new, recovered or demoted
     * endpoint gets a little traffic and its state is seen: 0.02 = 2% (health.exploration).
     * Clamped so the rows raised never take more than half of the group. */
    double exploration;
    /* LX_ROUTER_ROUND_ROBIN: the rotation counter (the caller increments it per request). */
    uint64_t rr;
} lx_router_opts_t;

/* One (model, provider) pair the request may be sent to. */
typedef struct lx_router_cand {
    uint16_t model_rank; /* 0: the requested model; 1, 2, ...: the `models` entries in order */
    const char *model;   /* its public id (for messages), <model_len> bytes */
    size_t model_len;
    const char *provider; /* provider name (order/only/ignore match it), <provider_len> bytes */
    size_t provider_len;
    double price_prompt;     /* USD per million prompt tokens, >= 0 */
    double price_completion; /* USD per million completion tokens, >= 0 */
    /* Health, from the snapshot of the provider's best endpoint for this model: */
    double score;   /* in [0, 1]; rows without data carry the table's neutral prior; 0: demoted */
    bool has_data;  /* the row has outcomes in the window */
    double tps_p50; /* output tokens per second, p50; unknown when <= 0 or !has_data */
    double ttft_p50_ms; /* time to first token, p50; unknown when < 0 or !has_data */
    /* False when every endpoint of the provider is ejected by the circuit breaker or blocked
     * by a Retry-After: such candidates are tried last, never dropped. */
    bool available;
    bool data_collection_deny; /* config: the provider neither stores nor trains on prompts */
    bool zdr;                  /* config: zero data retention */
    /* Request parameters the route supports (NUL-terminated names); NULL: all of them. */
    const char *const *params;
    size_t n_params;
    uint32_t user; /* the gateway's own index, untouched */
} lx_router_cand_t;

/*
 * Orders the <n> candidates <cands> for a request with preferences <prefs> (lx_prefs_init()
 * defaults when the request has none) under <opts>, and writes up to <plan_cap> indexes into
 * <cands> to <plan>, in attempt order. <rng_state> is the random state (any value; updated).
 *
 * Returns the number of entries written (>= 1 unless <plan_cap> is 0; a longer plan is cut at
 * <plan_cap>), or:
 *   LX_ENOROUTE when the filters leave no candidate: <why> (NUL-terminated, truncated to
 *     <why_cap>) names the filter that removed the last ones, e.g.
 *     "no provider of model m matches provider.only [a, b]" - the gateway answers 404, as
 *     OpenRouter does for every filter ("No endpoints found matching your data policy"); also
 *     when <n> is 0 ("no provider serves model ...");
 *   LX_ETOOBIG when <n> exceeds LX_ROUTER_MAX_CANDS (a configuration problem: 500).
 * A malformed preference never gets here: lx_prefs_parse() refuses it (400).
 */
int lx_router_plan(const lx_router_opts_t *opts, const lx_prefs_t *prefs,
                   const lx_router_cand_t *cands, size_t n, uint64_t *rng_state, uint16_t *plan,
                   size_t plan_cap, char *why, size_t why_cap);

/*
 * Picks one of the <n> (>= 1) replica endpoints of a provider by the power of two choices: two
 * distinct random endpoints among the available ones, and of those the one with fewer requests
 * in flight (<in_flight>[i]; the first drawn on a tie). With one available endpoint, that one;
 * with none (all ejected), the one with the fewest in flight (lowest index on a tie), as a last
 * resort - the breaker's half-open probe then decides. Returns its index (0 when <n> is 0).
 */
size_t lx_router_pick_endpoint(const uint32_t *in_flight, const bool *available, size_t n,
                               uint64_t *rng);

/* Most replicas lx_router_pick_replica() looks at (the plan's per-provider limit). */
#define LX_ROUTER_MAX_REPLICAS 64

/*
 * lx_router_pick_endpoint() with the health table's demotions (lx_health_score_t.demoted):
 * each available replica with <demoted>[i] set is picked with probability <exploration> (the
 * demoted together at most half), so it keeps just enough traffic for its recovery to be
 * seen; otherwise the power of two choices among the available replicas not demoted. With no
 * demoted replica, or none kept, it is lx_router_pick_endpoint(). At most
 * LX_ROUTER_MAX_REPLICAS replicas are considered.
 */
size_t lx_router_pick_replica(const uint32_t *in_flight, const bool *available, const bool *demoted,
                              size_t n, double exploration, uint64_t *rng);

#endif
