/*
 * plan.c - a request's plan and the endpoint of each attempt (rules in plan.h; the ordering
 * rules are router.c's).
 */
#include "route/plan.h"

#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "route/fleet.h"
#include "route/prefs.h"
#include "route/router.h"

/* ---- models chain --------------------------------------------------------------------------- */

/* Resolves one model id of the request (raw JSON string bytes): decoded, its :nitro/:floor
 * suffix applied to <prefs> and removed, and looked up. NULL with a message when unknown: the
 * name as decoded, whatever its bytes (a NUL included, hence rej->len), which the error
 * envelope escapes once. */
static const lx_config_model_t *resolve_model(const lx_config_t *cfg, const char *raw,
                                              size_t raw_len, lx_prefs_t *prefs,
                                              lx_plan_reject_t *rej, char *msg, size_t cap,
                                              const char *what)
{
    char id[512];
    int n = lx_json_unescape(raw, raw_len, id, sizeof(id) - 1);
    if (n <= 0) {
        snprintf(msg, cap, "invalid %s", what);
        return NULL;
    }
    size_t len = (size_t)n;
    lx_prefs_model_suffix(id, &len, prefs);
    id[len] = '\0';
    const lx_config_model_t *m = lx_config_find_model(cfg, id, len);
    if (m == NULL || m->n_routes == 0) {
        lx_strbuf_t sb = lx_strbuf_make(msg, cap - 1);
        LX_STRBUF_LIT(&sb, "model '");
        lx_strbuf_mem(&sb, id, len);
        LX_STRBUF_LIT(&sb, "' is not available on this gateway");
        rej->len = lx_strbuf_len(&sb, msg);
        msg[rej->len] = '\0';
        rej->code = "model_not_found";
        rej->param = "model";
        return NULL;
    }
    return m;
}

/* The models chain: `model` first (or the first of `models` when it is absent), then each
 * entry of `models`, each once. Its length, or minus the HTTP status (400, 404). */
static bool allowed(const lx_plan_req_t *q, const lx_config_model_t *m)
{
    return q->allow == NULL || q->allow(q->allow_arg, m->id, strlen(m->id));
}

/* The chain: `model`, then each `models` entry the key may use, each model once. */
static int models_chain(const lx_config_t *cfg, const lx_plan_req_t *q, lx_prefs_t *prefs,
                        const lx_config_model_t **chain, lx_plan_reject_t *rej, char *msg,
                        size_t cap)
{
    const lx_body_scan_t *scan = q->scan;
    int n_chain = 0;
    if (!scan->has_model && scan->n_models == 0) {
        snprintf(msg, cap, "missing required field 'model'");
        return -400;
    }
    if (scan->has_model) {
        chain[0] = resolve_model(cfg, q->body + scan->model.off, scan->model.len, prefs, rej, msg,
                                 cap, "'model'");
        if (chain[0] == NULL)
            return -404;
        if (!allowed(q, chain[0])) {
            snprintf(msg, cap, "this key may not use model '%s' (its `models` allowlist)",
                     chain[0]->id);
            return -403;
        }
        n_chain = 1;
    }
    uint32_t refused = 0;
    for (uint32_t i = 0; i < scan->n_models; i++) {
        char what[32];
        snprintf(what, sizeof(what), "'models[%u]'", i);
        const lx_config_model_t *m =
            resolve_model(cfg, q->body + scan->model_list[i].off, scan->model_list[i].len, prefs,
                          rej, msg, cap, what);
        if (m == NULL)
            return -404;
        bool dup = !allowed(q, m);
        refused += dup;
        for (int k = 0; k < n_chain; k++)
            dup = dup || chain[k] == m;
        if (!dup)
            chain[n_chain++] = m;
    }
    if (n_chain == 0) { /* (refused > 0: every entry was refused) */
        snprintf(msg, cap,
                 "this key may use none of the %u models asked for (its `models` "
                 "allowlist)",
                 refused);
        return -403;
    }
    return n_chain;
}

/* The request's preferences, with the key's defaults under them. */
static int plan_prefs(const lx_plan_req_t *q, lx_prefs_t *prefs, char *msg, size_t cap)
{
    if (lx_prefs_parse(q->body, q->body_len, q->scan, prefs, msg, cap) != 0)
        return 400;
    if (q->default_provider == NULL)
        return 0;
    lx_prefs_t def;
    lx_body_scan_t ds;
    memset(&ds, 0, sizeof(ds));
    ds.has_provider = true;
    ds.provider = (lx_body_span_t){0, (uint32_t)q->default_provider_len};
    char err[160];
    if (lx_prefs_parse(q->default_provider, q->default_provider_len, &ds, &def, err, sizeof(err)) !=
        0) {
        snprintf(msg, cap, "this key's provider preferences are invalid: %s", err);
        return 500; /* (checked when the key was stored: only a bug gets here) */
    }
    lx_prefs_merge_under(prefs, &def);
    return 0;
}

/* ---- candidates ----------------------------------------------------------------------------- */

/* Health of a provider for one model: the best available endpoint's published row. */
static void cand_health(const lx_route_ctx_t *x, const lx_health_score_t *scores, size_t model,
                        size_t route, size_t n_endpoints, uint64_t now, lx_router_cand_t *c)
{
    c->score = -1;
    c->available = false;
    c->has_data = false;
    c->tps_p50 = -1;
    c->ttft_p50_ms = -1;
    for (size_t j = 0; j < n_endpoints; j++) {
        size_t row = lx_route_row(x, model, route, j);
        bool avail = lx_health_available(x->table, row, now);
        const lx_health_score_t *s = &scores[row];
        /* a latency outlier marked since the last re-scoring: as a demoted row (score 0) */
        double score = lx_health_slow(x->table, row, now) ? 0 : s->score;
        /* an available endpoint beats an ejected one; then the higher score */
        if ((avail && !c->available) || (avail == c->available && score > c->score)) {
            c->score = score;
            c->has_data = s->has_data;
            c->tps_p50 = s->tps_p50;
            c->ttft_p50_ms = s->ttft_p50_ms;
        }
        c->available = c->available || avail;
    }
    if (c->score < 0)
        c->score = 0;
}

/* Every route of every model of the chain, up to LX_PLAN_MAX: the router's description into
 * <cands>, the configuration indexes into <ids>. Their count. */
static size_t candidates(const lx_route_ctx_t *x, const lx_config_model_t *const *chain,
                         size_t n_chain, uint64_t now, lx_router_cand_t *cands,
                         lx_plan_entry_t *ids)
{
    const lx_config_t *cfg = x->cfg;
    const lx_health_score_t *scores = lx_health_scores(x->table);
    size_t n = 0;
    for (size_t k = 0; k < n_chain; k++) {
        const lx_config_model_t *m = chain[k];
        size_t mi = (size_t)(m - cfg->models);
        for (size_t ri = 0; ri < m->n_routes && n < LX_PLAN_MAX; ri++) {
            const lx_config_route_t *rt = &m->routes[ri];
            const lx_config_provider_t *pv = &cfg->providers[rt->provider];
            lx_router_cand_t *c = &cands[n];
            memset(c, 0, sizeof(*c));
            c->model_rank = (uint16_t)k;
            c->model = m->id;
            c->model_len = strlen(m->id);
            c->provider = pv->name;
            c->provider_len = strlen(pv->name);
            c->price_prompt = rt->price_prompt;
            c->price_completion = rt->price_completion;
            cand_health(x, scores, mi, ri, pv->n_endpoints, now, c);
            c->data_collection_deny = pv->data_collection_deny;
            c->zdr = pv->zdr;
            /* a route without a parameter list supports every parameter */
            c->params = rt->n_parameters == 0 ? NULL : (const char *const *)rt->parameters;
            c->n_params = rt->n_parameters;
            c->user = (uint32_t)n;
            ids[n].model = (uint16_t)mi;
            ids[n].route = (uint16_t)ri;
            n++;
        }
    }
    return n;
}

/* ---- the plan ------------------------------------------------------------------------------- */

int lx_plan_make(const lx_route_ctx_t *x, const lx_plan_req_t *q, lx_plan_entry_t *plan,
                 uint16_t *n_plan, lx_plan_reject_t *rej, char *msg, size_t cap)
{
    const lx_config_t *cfg = x->cfg;
    lx_prefs_t prefs;
    *rej = (lx_plan_reject_t){0};
    int st = plan_prefs(q, &prefs, msg, cap);
    if (st != 0)
        return st;
    const lx_config_model_t *chain[LX_BODY_MAX_MODELS + 1];
    int n_chain = models_chain(cfg, q, &prefs, chain, rej, msg, cap);
    if (n_chain < 0)
        return -n_chain;
    if (prefs.require_parameters &&
        lx_prefs_request_params(q->body, q->body_len, &prefs, msg, cap) != 0)
        return 400;

    lx_router_cand_t cands[LX_PLAN_MAX];
    lx_plan_entry_t ids[LX_PLAN_MAX];
    size_t n = candidates(x, chain, (size_t)n_chain, q->now_ms, cands, ids);
    lx_router_opts_t opts = {
        .strategy = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN ? LX_ROUTER_ROUND_ROBIN
                                                                           : LX_ROUTER_HEALTH,
        .exploration = cfg->health_exploration,
        .rr = (*x->rr_plan)++,
    };
    /* A session without history is placed the same way by every worker: the random draw is
     * seeded by the session, so equal scores give equal picks. */
    uint64_t rng =
        q->session != 0 ? lx_session_mix(q->session) : (*x->rng = lx_session_mix(*x->rng + 1));
    uint16_t order[LX_PLAN_MAX];
    int np = lx_router_plan(&opts, &prefs, cands, n, &rng, order, LX_PLAN_MAX, msg, cap);
    if (np == LX_ETOOBIG) {
        snprintf(msg, cap, "too many providers for this request");
        return 500;
    }
    if (np <= 0)
        return 404;
    *n_plan = (uint16_t)np;
    for (int i = 0; i < np; i++)
        plan[i] = ids[order[i]];
    return 0;
}

int lx_plan_apply_session(const lx_route_ctx_t *x, const lx_sessions_t *t, uint64_t hash,
                          uint64_t serial, uint64_t now_ms, lx_plan_entry_t *plan, uint16_t n_plan)
{
    const lx_config_t *cfg = x->cfg;
    if (hash == 0 || cfg->routing_session_ttl_ms == 0)
        return -1;
    const lx_session_t *s = lx_session_find(t, hash, now_ms, cfg->routing_session_ttl_ms);
    if (s == NULL || s->serial != serial)
        return -1;
    size_t row = lx_route_row(x, s->model, s->route, s->ep);
    if (cfg->routing_strategy == LX_CONFIG_ROUTING_HEALTH &&
        !lx_health_available(x->table, row, now_ms))
        return -1; /* unhealthy: the session moves; the next success re-pins it */
    for (unsigned i = 0; i < n_plan; i++) {
        if (plan[i].model == s->model && plan[i].route == s->route) {
            lx_plan_entry_t e = plan[i];
            memmove(&plan[1], &plan[0], i * sizeof(plan[0]));
            plan[0] = e;
            return s->ep;
        }
    }
    return -1;
}

void lx_plan_drop_model(lx_plan_entry_t *plan, uint16_t *n_plan, uint16_t pos)
{
    uint16_t m = plan[pos].model;
    uint16_t k = pos;
    for (uint16_t i = pos; i < *n_plan; i++)
        if (plan[i].model != m)
            plan[k++] = plan[i];
    *n_plan = k;
}

/* ---- the endpoint of an attempt ------------------------------------------------------------- */

/* round_robin: plain rotation over the untried replicas, as a round-robin balancer does. */
static int rotate(const lx_route_ctx_t *x, size_t provider, const bool *avail, size_t n)
{
    size_t start = x->rr[provider]++;
    for (size_t k = 0; k < n; k++) {
        size_t j = (start + k) % n;
        if (avail[j])
            return (int)j;
    }
    return -1;
}

/* least_request: the fewest attempts in flight on all workers, ties from a random start. */
static int least_request(const lx_route_ctx_t *x, lx_plan_entry_t e, const bool *avail, size_t n)
{
    size_t start = n > 1 ? (size_t)(lx_session_mix(++*x->rng) % n) : 0;
    int best = -1;
    int64_t least = INT64_MAX;
    for (size_t k = 0; k < n; k++) {
        size_t j = (start + k) % n;
        if (!avail[j])
            continue;
        int64_t f = lx_health_in_flight(x->table, lx_route_row(x, e.model, e.route, j));
        if (f < least) {
            least = f;
            best = (int)j;
        }
    }
    return best;
}

/* One replica's signals for lx_fleet_pick. */
static void fleet_rep(const lx_route_ctx_t *x, const lx_config_provider_t *pv, size_t row,
                      bool avail, uint64_t now_ms, lx_fleet_rep_t *rep)
{
    const lx_health_score_t *scores = lx_health_scores(x->table);
    int64_t f = lx_health_in_flight(x->table, row);
    *rep =
        (lx_fleet_rep_t){.available = avail,
                         .in_flight = f > 0 ? (uint32_t)LX_MIN(f, (int64_t)UINT32_MAX) : 0,
                         .max_in_flight = pv->max_in_flight,
                         .health = lx_health_slow(x->table, row, now_ms) ? 0 : scores[row].score};
    if (pv->metrics_path == NULL || x->load == NULL)
        return;
    rep->max_in_flight = lx_fleet_cap_of(pv->max_in_flight, true, lx_load_slot_cap(&x->load[row]));
    lx_load_view_t v;
    (void)lx_load_slot_read(&x->load[row], &v);
    uint64_t stale_ms = 3 * x->cfg->routing_scrape_interval_ms;
    rep->metrics = true;
    /* (another loop's clock may be a little ahead of this one's) */
    rep->fresh = v.read_ms != 0 && now_ms <= v.read_ms + stale_ms;
    rep->waiting = v.waiting;
    rep->running = v.running;
    rep->kv_ppm = v.kv_ppm;
}

/* The home of x->prefix_key on <ring> (route <ri>): its entry in this worker's table, else a
 * new placement (lx_fleet_place); a first attempt refreshes it. -1: the ring's own home. */
static int home_of(const lx_route_ctx_t *x, const lx_ring_t *ring, size_t ri,
                   const lx_fleet_rep_t *reps, size_t n, uint64_t now_ms)
{
    if (x->moves == NULL || x->prefix_key == 0 || ring == NULL)
        return -1;
    int h = lx_fleet_moved(x->moves, LX_FLEET_MOVES, x->prefix_key, (uint32_t)ri, now_ms);
    if (!x->may_queue)
        return h;
    if (h < 0 || (size_t)h >= n || !reps[h].available) {
        uint64_t avail = 0;
        for (size_t i = 0; i < n; i++)
            avail |= reps[i].available ? (uint64_t)1 << i : 0;
        h = lx_fleet_place(x->moves, LX_FLEET_MOVES, ring, x->prefix_key, (uint32_t)ri, avail,
                           now_ms);
    }
    if (h >= 0)
        lx_fleet_move(x->moves, LX_FLEET_MOVES, x->prefix_key, (uint32_t)ri, h,
                      now_ms + LX_FLEET_MOVE_TTL_MS);
    return h;
}

/* fleet: prefix affinity under load (route/fleet.h). */
static int fleet(const lx_route_ctx_t *x, lx_plan_entry_t e, const bool *avail, size_t n,
                 uint64_t now_ms)
{
    const lx_config_t *cfg = x->cfg;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[e.model].routes[e.route].provider];
    lx_fleet_rep_t reps[LX_FLEET_MAX];
    bool any = false;
    for (size_t j = 0; j < n; j++) {
        fleet_rep(x, pv, lx_route_row(x, e.model, e.route, j), avail[j], now_ms, &reps[j]);
        any = any || avail[j];
    }
    if (!any)
        return -1;
    lx_fleet_params_t p;
    lx_fleet_params_default(&p);
    p.slack = cfg->routing_affinity_slack;
    p.eps_milli = cfg->routing_affinity_eps_milli;
    p.wait_home = cfg->routing_queue_size > 0 && x->may_queue;
    if (x->rings != NULL) {
        size_t ri = x->model_base[e.model] + e.route;
        const lx_ring_t *ring = &x->rings[ri];
        p.ring = ring->n_replicas == n ? ring : NULL;
        p.home = home_of(x, p.ring, ri, reps, n, now_ms);
    }
    int j = lx_fleet_pick(reps, n, x->prefix_key, &p, x->rng);
    if (j >= 0)
        return j;
    /* every available replica is full */
    return cfg->routing_queue_size > 0 && x->may_queue ? LX_PLAN_FULL
                                                       : least_request(x, e, avail, n);
}

int lx_plan_pick_endpoint(const lx_route_ctx_t *x, lx_plan_entry_t e, uint64_t tried, int pin,
                          uint64_t session, uint64_t now_ms)
{
    const lx_config_t *cfg = x->cfg;
    size_t provider = cfg->models[e.model].routes[e.route].provider;
    const lx_config_provider_t *pv = &cfg->providers[provider];
    bool rr = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN;
    size_t n = LX_MIN(pv->n_endpoints, (size_t)64);
    uint32_t in_flight[64];
    bool avail[64];
    size_t left = 0;
    for (size_t j = 0; j < n; j++) {
        size_t row = lx_route_row(x, e.model, e.route, j);
        bool untried = !(tried >> j & 1);
        in_flight[j] = untried ? x->in_flight[row] : UINT32_MAX;
        avail[j] = untried && (rr || lx_health_available(x->table, row, now_ms));
        left += untried;
    }
    if (left == 0)
        return -1;
    if (pin >= 0 && (size_t)pin < n && avail[pin])
        return pin;
    switch (cfg->routing_balance) {
    case LX_CONFIG_BALANCE_ROUND_ROBIN:
        return rotate(x, provider, avail, n);
    case LX_CONFIG_BALANCE_LEAST_REQUEST:
        return least_request(x, e, avail, n);
    case LX_CONFIG_BALANCE_FLEET:
        return fleet(x, e, avail, n, now_ms);
    case LX_CONFIG_BALANCE_DEFAULT:
        break;
    }
    if (rr)
        return rotate(x, provider, avail, n);
    if (session != 0) {
        /* a session's first placement: the same replica on every worker, while available */
        int best = lx_session_place(session, avail, n);
        if (best >= 0)
            return best;
    }
    /* the power of two choices, a demoted replica (failing or slow against its peers: health.h)
     * kept to the exploration share */
    const lx_health_score_t *scores = lx_health_scores(x->table);
    bool demoted[64];
    for (size_t j = 0; j < n; j++) {
        size_t row = lx_route_row(x, e.model, e.route, j);
        demoted[j] =
            (scores != NULL && scores[row].demoted) || lx_health_slow(x->table, row, now_ms);
    }
    size_t j =
        lx_router_pick_replica(in_flight, avail, demoted, n, cfg->health_exploration, x->rng);
    return in_flight[j] == UINT32_MAX ? -1 : (int)j;
}
