/*
 * dispatch.c - where a request goes: its plan of (model, provider) attempts, the endpoint of
 * each attempt, the upstream request of each attempt, and failover between them.
 *
 *   lx_dispatch_start: models chain (`model`, then `models`) ─> preferences (prefs.c) ─>
 *     candidates (every route of every model, with health from the published scores) ─>
 *     lx_router_plan (filters, order, sort, weighted pick) ─> session stickiness ─> attempt 1
 *   attempt: endpoint (sticky, or power of two choices among available replicas) ─>
 *     breaker admission ─> upstream head + spliced body ─> px (pool, out, timeouts)
 *   failure before any byte reached the client (proxy ops->retry) ─> lx_dispatch_end_attempt
 *     (health table, attempt list) ─> lx_dispatch_next: another replica of the same provider,
 *     else the next plan entry (the next model after a context-length error), within
 *     routing.max_attempts and routing.deadline
 *
 * Everything here runs on the worker's loop; the health table is read through its published
 * snapshot and written through this worker's shard.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "llm/api_error.h"
#include "gateway/gateway_int.h"
#include "route/router.h"

#define MIN_ATTEMPT_MS 50 /* an attempt needs at least this much of the deadline to start */

static uint64_t now_ms(const lx_gw_req_t *r)
{
    return uv_now(&r->gw->worker.loop);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- sessions ------------------------------------------------------------------------------- */

/* A session's slot: open addressing over 8 neighbours; a miss returns the slot to reuse (free,
 * expired, or the least recently used of the eight). */
static lx_gw_session_t *session_slot(lx_gw_worker_t *gw, uint64_t hash, uint64_t now, uint64_t ttl,
                                     bool *found)
{
    lx_gw_session_t *victim = NULL;
    bool victim_live = true;
    *found = false;
    for (unsigned i = 0; i < 8; i++) {
        lx_gw_session_t *s = &gw->sessions[(hash + i) & (LX_GW_SESSIONS - 1)];
        bool live = s->hash != 0 && now - s->last_ms <= ttl;
        if (s->hash == hash) {
            *found = live;
            return s;
        }
        if (victim == NULL || (victim_live && (!live || s->last_ms < victim->last_ms))) {
            victim = s;
            victim_live = live;
        }
    }
    return victim;
}

void lx_dispatch_served(lx_gw_req_t *r)
{
    lx_gw_worker_t *gw = r->gw;
    const lx_config_t *cfg = r->gen->cfg;
    if (r->session == 0 || cfg->routing_session_ttl_ms == 0 || r->n_attempts == 0)
        return;
    if (gw->sessions == NULL) {
        gw->sessions = calloc(LX_GW_SESSIONS, sizeof(*gw->sessions));
        if (gw->sessions == NULL)
            return; /* stickiness is an optimisation: without memory, none */
    }
    bool found;
    uint64_t now = now_ms(r);
    lx_gw_session_t *s = session_slot(gw, r->session, now, cfg->routing_session_ttl_ms, &found);
    const lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    *s = (lx_gw_session_t){r->session, r->gen->serial, now, a->model, a->route, a->ep};
}

/* Moves the session's last (model, route) to the front of the plan and pins its endpoint,
 * while it is in the plan (the request's filters still allow it) and healthy. */
static void apply_session(lx_gw_req_t *r)
{
    lx_gw_worker_t *gw = r->gw;
    const lx_config_t *cfg = r->gen->cfg;
    if (r->session == 0 || gw->sessions == NULL || cfg->routing_session_ttl_ms == 0)
        return;
    bool found;
    uint64_t now = now_ms(r);
    lx_gw_session_t *s = session_slot(gw, r->session, now, cfg->routing_session_ttl_ms, &found);
    if (!found || s->serial != r->gen->serial)
        return;
    size_t row = lx_gw_row(r->gen->health, s->model, s->route, s->ep);
    if (cfg->routing_strategy == LX_CONFIG_ROUTING_HEALTH &&
        !lx_health_available(r->gen->health->table, row, now))
        return; /* unhealthy: the session moves; the next success re-pins it */
    for (unsigned i = 0; i < r->n_plan; i++) {
        if (r->plan[i].model == s->model && r->plan[i].route == s->route) {
            uint16_t m = r->plan[i].model, rt = r->plan[i].route;
            memmove(&r->plan[1], &r->plan[0], i * sizeof(r->plan[0]));
            r->plan[0].model = m;
            r->plan[0].route = rt;
            r->pin_ep = s->ep;
            return;
        }
    }
}

/* ---- the plan ------------------------------------------------------------------------------- */

/* Resolves one model id of the request (raw JSON string bytes): decoded, its :nitro/:floor
 * suffix applied to <prefs> and removed, and looked up. NULL with a message when unknown: the
 * name as decoded, whatever its bytes (a NUL included, hence r->reject_len), which the error
 * envelope escapes once. */
static const lx_config_model_t *resolve_model(lx_gw_req_t *r, const lx_config_t *cfg,
                                              const char *raw, size_t raw_len, lx_prefs_t *prefs,
                                              char *msg, size_t cap, const char *what)
{
    char id[512];
    int n = lx_body_unescape(raw, raw_len, id, sizeof(id) - 1);
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
        r->reject_len = lx_strbuf_len(&sb, msg);
        msg[r->reject_len] = '\0';
        r->reject_code = "model_not_found";
        r->reject_param = "model";
        return NULL;
    }
    return m;
}

static bool route_supports_all(const lx_config_route_t *rt)
{
    return rt->n_parameters == 0;
}

/* Health of a provider for one model: the best available endpoint's published row. */
static void cand_health(const lx_gw_req_t *r, const lx_health_score_t *scores, size_t model,
                        size_t route, const lx_config_provider_t *pv, uint64_t now,
                        lx_router_cand_t *c)
{
    const lx_gw_health_t *gh = r->gen->health;
    c->score = -1;
    c->available = false;
    c->has_data = false;
    c->tps_p50 = -1;
    c->ttft_p50_ms = -1;
    for (size_t j = 0; j < pv->n_endpoints; j++) {
        size_t row = lx_gw_row(gh, model, route, j);
        bool avail = lx_health_available(gh->table, row, now);
        const lx_health_score_t *s = &scores[row];
        /* an available endpoint beats an ejected one; then the higher score */
        if ((avail && !c->available) || (avail == c->available && s->score > c->score)) {
            c->score = s->score;
            c->has_data = s->has_data;
            c->tps_p50 = s->tps_p50;
            c->ttft_p50_ms = s->ttft_p50_ms;
        }
        c->available = c->available || avail;
    }
    if (c->score < 0)
        c->score = 0;
}

static int prepare_attempt(lx_gw_req_t *r);

int lx_dispatch_start(lx_gw_req_t *r, lx_http_request_t *req, char *msg, size_t cap)
{
    const lx_config_t *cfg = r->gen->cfg;
    const lx_body_scan_t *scan = &r->scan;
    const char *body = req->body.ptr;
    lx_prefs_t prefs;

    if (lx_prefs_parse(body, req->body.len, scan, &prefs, msg, cap) != 0)
        return 400;
    /* The models chain: `model` first (or the first of `models` when it is absent), then each
     * entry of `models`, each once. */
    const lx_config_model_t *chain[LX_BODY_MAX_MODELS + 1];
    size_t n_chain = 0;
    if (!scan->has_model && scan->n_models == 0) {
        snprintf(msg, cap, "missing required field 'model'");
        return 400;
    }
    if (scan->has_model) {
        chain[0] = resolve_model(r, cfg, body + scan->model.off, scan->model.len, &prefs, msg, cap,
                                 "'model'");
        if (chain[0] == NULL)
            return 404;
        n_chain = 1;
    }
    for (uint32_t i = 0; i < scan->n_models; i++) {
        char what[32];
        snprintf(what, sizeof(what), "'models[%u]'", i);
        const lx_config_model_t *m = resolve_model(r, cfg, body + scan->model_list[i].off,
                                                   scan->model_list[i].len, &prefs, msg, cap, what);
        if (m == NULL)
            return 404;
        bool dup = false;
        for (size_t k = 0; k < n_chain; k++)
            dup = dup || chain[k] == m;
        if (!dup)
            chain[n_chain++] = m;
    }
    if (prefs.require_parameters &&
        lx_prefs_request_params(body, req->body.len, &prefs, msg, cap) != 0)
        return 400;

    /* Candidates: every route of every model of the chain. */
    lx_router_cand_t cands[LX_GW_MAX_PLAN];
    struct {
        uint16_t model, route;
    } ids[LX_GW_MAX_PLAN];
    size_t n = 0;
    const lx_health_score_t *scores = lx_health_scores(r->gen->health->table);
    uint64_t now = now_ms(r);
    for (size_t k = 0; k < n_chain; k++) {
        const lx_config_model_t *m = chain[k];
        size_t mi = (size_t)(m - cfg->models);
        for (size_t ri = 0; ri < m->n_routes && n < LX_GW_MAX_PLAN; ri++) {
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
            cand_health(r, scores, mi, ri, pv, now, c);
            c->data_collection_deny = pv->data_collection_deny;
            c->zdr = pv->zdr;
            c->params = route_supports_all(rt) ? NULL : (const char *const *)rt->parameters;
            c->n_params = rt->n_parameters;
            c->user = (uint32_t)n;
            ids[n].model = (uint16_t)mi;
            ids[n].route = (uint16_t)ri;
            n++;
        }
    }
    lx_router_opts_t opts = {
        .strategy = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN ? LX_ROUTER_ROUND_ROBIN
                                                                           : LX_ROUTER_HEALTH,
        .exploration = cfg->health_exploration,
        .rr = r->gen->rr_plan++,
    };
    /* A session without history is placed the same way by every worker: the random draw is
     * seeded by the session, so equal scores give equal picks. */
    uint64_t rng = r->session != 0 ? mix(r->session) : (r->gw->rng = mix(r->gw->rng + 1));
    uint16_t plan[LX_GW_MAX_PLAN];
    int np = lx_router_plan(&opts, &prefs, cands, n, &rng, plan, LX_GW_MAX_PLAN, msg, cap);
    if (np == LX_ETOOBIG) {
        snprintf(msg, cap, "too many providers for this request");
        return 500;
    }
    if (np <= 0)
        return 404;
    r->n_plan = (uint16_t)np;
    for (int i = 0; i < np; i++) {
        r->plan[i].model = ids[plan[i]].model;
        r->plan[i].route = ids[plan[i]].route;
    }
    r->pin_ep = -1;
    apply_session(r);
    r->deadline_ms = now + cfg->routing_deadline_ms;
    int rc = prepare_attempt(r);
    if (rc == LX_ETOOBIG) {
        snprintf(msg, cap, "request headers too large to forward upstream");
        return 431;
    }
    if (rc != 0) {
        snprintf(msg, cap, "no provider endpoint is available for this request");
        return r->n_attempts > 0 ? 502 : 503;
    }
    return 0;
}

/* ---- one attempt ---------------------------------------------------------------------------- */

static bool tried(const lx_gw_req_t *r, size_t model, size_t route, size_t ep)
{
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        if (a->model == model && a->route == route && a->ep == ep)
            return true;
    }
    return false;
}

/* Picks the endpoint of plan entry <pos>: the pinned one (session), else the power of two
 * choices among available replicas not yet tried by this request. -1 when every replica was
 * tried. */
static int pick_endpoint(lx_gw_req_t *r, size_t model, size_t route, uint64_t now)
{
    const lx_config_t *cfg = r->gen->cfg;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[model].routes[route].provider];
    const lx_gw_health_t *gh = r->gen->health;
    bool rr = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN;
    size_t n = LX_MIN(pv->n_endpoints, (size_t)64);
    uint32_t in_flight[64];
    bool avail[64];
    size_t left = 0;
    for (size_t j = 0; j < n; j++) {
        size_t row = lx_gw_row(gh, model, route, j);
        bool untried = !tried(r, model, route, j);
        in_flight[j] = untried ? r->gen->in_flight[row] : UINT32_MAX;
        avail[j] = untried && (rr || lx_health_available(gh->table, row, now));
        left += untried;
    }
    if (left == 0)
        return -1;
    if (r->pin_ep >= 0 && r->plan_pos == 0 && r->n_attempts == 0 && (size_t)r->pin_ep < n &&
        avail[r->pin_ep])
        return r->pin_ep;
    if (rr) {
        /* plain rotation over the replicas, as a round-robin balancer does */
        size_t start = r->gen->rr[cfg->models[model].routes[route].provider]++;
        for (size_t k = 0; k < n; k++) {
            size_t j = (start + k) % n;
            if (avail[j])
                return (int)j;
        }
        return -1;
    }
    if (r->session != 0) {
        /* a session's first placement: the same replica on every worker (highest random
         * weight), while it is available */
        int best = -1;
        uint64_t best_w = 0;
        for (size_t j = 0; j < n; j++) {
            uint64_t w = mix(r->session ^ (j + 1) * 0x9e3779b97f4a7c15ull);
            if (avail[j] && (best < 0 || w > best_w)) {
                best = (int)j;
                best_w = w;
            }
        }
        if (best >= 0)
            return best;
    }
    size_t j = lx_router_pick_endpoint(in_flight, avail, n, &r->gw->rng);
    return in_flight[j] == UINT32_MAX ? -1 : (int)j;
}

/* Prepares the next attempt from the plan position onwards: endpoint, admission, upstream
 * request, headers, timeouts. Returns 0, LX_ENOUPSTREAM when nothing is left to try, or
 * LX_ETOOBIG when the upstream request cannot be built (headers too large, no memory). */
static int prepare_attempt(lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    lx_gw_health_t *gh = r->gen->health;
    lx_proxy_t *px = &r->px;
    uint64_t now = now_ms(r);
    bool rr = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN;

    while (r->plan_pos < r->n_plan && r->n_attempts < LX_GW_MAX_ATTEMPTS) {
        size_t mi = r->plan[r->plan_pos].model, ri = r->plan[r->plan_pos].route;
        int ep = pick_endpoint(r, mi, ri, now);
        if (ep < 0) {
            r->plan_pos++;
            continue;
        }
        size_t row = lx_gw_row(gh, mi, ri, (size_t)ep);
        if (!rr && !lx_health_admit(gh->table, row, now)) {
            /* ejected or a half-open probe already out: as a last resort only when this
             * request has nothing else (the breaker stays in charge otherwise) */
            bool last = r->plan_pos + 1 == r->n_plan && r->n_attempts == 0;
            if (!last) {
                r->plan_pos++;
                continue;
            }
        }
        const lx_config_model_t *m = &cfg->models[mi];
        const lx_config_route_t *rt = &m->routes[ri];
        const lx_config_provider_t *pv = &cfg->providers[rt->provider];
        r->model = m;
        r->route = rt;
        r->provider = pv;
        r->endpoint = &pv->endpoints[ep];
        r->row = row;
        lx_gw_attempt_t *a = &r->attempts[r->n_attempts++];
        *a = (lx_gw_attempt_t){(uint16_t)mi, (uint16_t)ri, (uint16_t)ep, LX_HEALTH_OK, 0, 0, -1, 0};
        if (!lx_gw_build_request(r) || !lx_gw_build_resp_headers(r)) {
            r->n_attempts--;
            return LX_ETOOBIG;
        }
        r->attempt_start_ns = lx_worker_clock_ns();
        r->in_flight = true;
        r->gen->in_flight[row]++;
        lx_health_inflight_add(gh->table, r->gw->worker.id, row, +1);
        px->pool = &r->gen->pools[r->gen->pool_base[rt->provider] + (size_t)ep];
        px->upstream_name = pv->name;
        uint64_t left = r->deadline_ms > now ? r->deadline_ms - now : 1;
        uint64_t ct =
            pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
        uint64_t ft = pv->first_byte_timeout_ms ? pv->first_byte_timeout_ms
                                                : cfg->upstream_first_byte_timeout_ms;
        px->connect_timeout_ms = LX_MIN(ct, left);
        px->first_byte_timeout_ms = LX_MIN(ft, left);
        px->deadline_ms = r->deadline_ms; /* every phase until the head, together */
        px->idle_timeout_ms =
            pv->idle_timeout_ms ? pv->idle_timeout_ms : cfg->upstream_idle_timeout_ms;
        return 0;
    }
    return LX_ENOUPSTREAM;
}

/* ---- outcomes and failover ------------------------------------------------------------------ */

/* A 400 that says the prompt is too long for the model: the next model may take it. */
static bool context_length_error(const char *body, size_t len)
{
    static const char *const marks[] = {"context_length_exceeded", "maximum context length",
                                        "context length", "context window", "too many tokens"};
    if (body == NULL)
        return false;
    for (size_t i = 0; i < LX_ARRAY_SIZE(marks); i++) {
        size_t k = strlen(marks[i]);
        for (size_t p = 0; p + k <= len; p++)
            if (strncasecmp(body + p, marks[i], k) == 0)
                return true;
    }
    return false;
}

static lx_health_outcome_t classify(const lx_gw_req_t *r, int code)
{
    const lx_proxy_t *px = &r->px;
    if (code == 0 && px->upstream_status > 0 && px->upstream_status < 400)
        return LX_HEALTH_OK;
    if (px->limited)
        return LX_HEALTH_GATEWAY_LIMIT; /* max_connections: llmux's limit, not the endpoint's */
    if (code == LX_ECANCELED || code == LX_ESHUTDOWN || px->req->peer_gone)
        return LX_HEALTH_CANCELED;
    if (code == 0) {
        int st = px->upstream_status;
        if (st == 429)
            return LX_HEALTH_RATE_LIMIT;
        if (st >= 500 || st == 408)
            return LX_HEALTH_SERVER;
        return LX_HEALTH_CLIENT;
    }
    if (code == LX_ETIMEDOUT || code == UV_ETIMEDOUT)
        return px->state == LX_PROXY_RELAYING ? LX_HEALTH_BAD_RESPONSE : LX_HEALTH_TIMEOUT;
    if (px->state == LX_PROXY_CONNECTING || px->t_connected_ns == 0)
        return LX_HEALTH_CONNECT;
    return LX_HEALTH_BAD_RESPONSE;
}

void lx_dispatch_end_attempt(lx_gw_req_t *r, int code)
{
    if (r->n_attempts == 0 || !r->in_flight)
        return;
    lx_proxy_t *px = &r->px;
    lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    lx_gw_health_t *gh = r->gen->health;
    uint64_t now = now_ms(r);
    r->in_flight = false;
    r->gen->in_flight[r->row]--;
    lx_health_inflight_add(gh->table, r->gw->worker.id, r->row, -1);
    a->outcome = (uint8_t)classify(r, code);
    a->status = (int16_t)px->upstream_status;
    a->code = code;
    a->retry_after = px->upstream_status == 429 ? px->hc.retry_after : -1;
    uint64_t end_ns =
        px->t_end_ns != 0 ? px->t_end_ns : lx_worker_clock_ns(); /* (set when finished) */
    lx_health_sample_t s = {
        .outcome = (lx_health_outcome_t)a->outcome,
        /* this attempt's time to first byte, not the request's */
        .ttfb_us = px->t_first_byte_ns > r->attempt_start_ns
                       ? (px->t_first_byte_ns - r->attempt_start_ns) / 1000
                       : 0,
        .total_us = (end_ns - r->attempt_start_ns) / 1000,
        /* the speed after the first byte is the generation's only for a streamed answer: a
         * plain one arrives all at once when it is done */
        .output_tokens = r->scanning && !r->sse.json_mode && a->outcome == LX_HEALTH_OK
                             ? r->sse.completion_tokens
                             : -1,
        .retry_after_ms = a->retry_after > 0 ? (uint64_t)a->retry_after * 1000 : 0,
    };
    a->ms = s.total_us / 1000;
    lx_health_record(gh->table, r->gw->worker.id, r->row, &s, now);
}

bool lx_dispatch_next(lx_gw_req_t *r, int code)
{
    const lx_config_t *cfg = r->gen->cfg;
    lx_proxy_t *px = &r->px;
    lx_dispatch_end_attempt(r, code);
    const lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    switch (a->outcome) {
    case LX_HEALTH_CONNECT:
    case LX_HEALTH_TIMEOUT:
    case LX_HEALTH_RATE_LIMIT:
    case LX_HEALTH_SERVER:
        break; /* another replica of this provider, else the next entry */
    case LX_HEALTH_BAD_RESPONSE:
        if (px->upstream_status != 0)
            return false; /* an answer began: not a premature close */
        break;
    case LX_HEALTH_CLIENT:
        if (px->upstream_status != 400 || !context_length_error(px->err_body, px->err_len))
            return false; /* the client's error: another provider would say the same */
        /* too long for this model: the next *model* */
        {
            /* every later entry of this model goes, wherever a sort placed it */
            uint16_t m = r->plan[r->plan_pos].model;
            uint16_t k = r->plan_pos;
            for (uint16_t i = r->plan_pos; i < r->n_plan; i++)
                if (r->plan[i].model != m)
                    r->plan[k++] = r->plan[i];
            r->n_plan = k;
        }
        break;
    default:
        return false;
    }
    if (r->n_attempts >= cfg->routing_max_attempts)
        return false;
    uint64_t now = now_ms(r);
    if (now + MIN_ATTEMPT_MS > r->deadline_ms)
        return false;
    return prepare_attempt(r) == 0;
}

/* ---- the final error ------------------------------------------------------------------------ */

/* A string member of a provider's error body (raw JSON contents) decoded into out[cap], or
 * NULL: absent, too long, not decodable, or holding a NUL. */
static const char *upstream_string(const char *raw, size_t len, char *out, size_t cap)
{
    if (raw == NULL)
        return NULL;
    int n = lx_body_unescape(raw, len, out, cap - 1);
    if (n < 0 || memchr(out, '\0', (size_t)n) != NULL)
        return NULL;
    out[n] = '\0';
    return out;
}

static const char *attempt_error_type(const lx_gw_attempt_t *a)
{
    return lx_health_outcome_name((lx_health_outcome_t)a->outcome);
}

bool lx_dispatch_respond_error(lx_gw_req_t *r, int code, int status, const char *message)
{
    (void)code;
    if (r->n_attempts == 0)
        return false;
    const lx_config_t *cfg = r->gen->cfg;
    bool all_429 = true, all_server = true;
    int64_t min_retry = -1;
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        all_429 = all_429 && a->outcome == LX_HEALTH_RATE_LIMIT;
        all_server =
            all_server && (a->outcome == LX_HEALTH_SERVER || a->outcome == LX_HEALTH_TIMEOUT);
        if (a->outcome == LX_HEALTH_RATE_LIMIT && a->retry_after >= 0 &&
            (min_retry < 0 || a->retry_after < min_retry))
            min_retry = a->retry_after;
    }
    const lx_gw_attempt_t *last = &r->attempts[r->n_attempts - 1];
    const char *etype = NULL;
    if (last->outcome == LX_HEALTH_CLIENT) {
        /* the client's own error: its status and the provider's reason, as they were */
    } else if (last->outcome == LX_HEALTH_GATEWAY_LIMIT) {
        status = 503; /* llmux's own connection limit: no provider is to blame */
        etype = "gateway_limit";
    } else if (all_429) {
        status = 429;
        etype = "rate_limit_exceeded";
    } else if (all_server) {
        status = 503;
        etype = "provider_overloaded";
    } else {
        status = 502;
        etype = "provider_unavailable";
    }
    char meta[2048];
    lx_strbuf_t mb = lx_strbuf_make(meta, sizeof(meta));
    LX_STRBUF_LIT(&mb, "\"attempts\":[");
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        const lx_config_model_t *m = &cfg->models[a->model];
        const lx_config_provider_t *pv = &cfg->providers[m->routes[a->route].provider];
        if (i > 0)
            LX_STRBUF_LIT(&mb, ",");
        /* names and ids are plain (the config validates them); no URL, key or header */
        LX_STRBUF_LIT(&mb, "{\"provider\":\"");
        lx_strbuf_str(&mb, pv->name);
        LX_STRBUF_LIT(&mb, "\",\"model\":\"");
        lx_strbuf_str(&mb, m->id);
        LX_STRBUF_LIT(&mb, "\",\"status\":");
        if (a->status > 0)
            lx_strbuf_i64(&mb, a->status);
        else
            LX_STRBUF_LIT(&mb, "null");
        LX_STRBUF_LIT(&mb, ",\"error_type\":\"");
        lx_strbuf_str(&mb, attempt_error_type(a));
        LX_STRBUF_LIT(&mb, "\"}");
    }
    LX_STRBUF_LIT(&mb, "]");
    size_t meta_len = mb.overflow ? 0 : lx_strbuf_len(&mb, meta);

    char msg[1200];
    if (r->n_attempts > 1)
        snprintf(msg, sizeof(msg), "%u attempts failed; the last: %s", r->n_attempts, message);
    else
        snprintf(msg, sizeof(msg), "%s", message);
    lx_api_error_t e = {
        .status = status, .message = msg, .message_len = strlen(msg), .error_type = etype};
    /* The provider's own answer, relayed with its status: its OpenAI code and param go with it
     * (not when llmux changed the status: a provider's "invalid_api_key" is about llmux's key,
     * not the client's). */
    char ucode[129], uparam[129], pmeta[512];
    lx_strbuf_t pb = lx_strbuf_make(pmeta, sizeof(pmeta));
    lx_api_upstream_error_t up;
    if (status == last->status && lx_api_error_parse_upstream(r->px.err_body, r->px.err_len, &up)) {
        e.code = upstream_string(up.code, up.code_len, ucode, sizeof(ucode));
        e.param = upstream_string(up.param, up.param_len, uparam, sizeof(uparam));
        /* OpenRouter's provider error metadata: provider_code only below 500 */
        const lx_config_provider_t *pv =
            &cfg->providers[cfg->models[last->model].routes[last->route].provider];
        LX_STRBUF_LIT(&pb, "\"provider_name\":\"");
        lx_strbuf_str(&pb, pv->name); /* plain (the config checks names) */
        LX_STRBUF_LIT(&pb, "\",");
        if (e.code != NULL && status < 500) {
            char esc[6 * 128];
            LX_STRBUF_LIT(&pb, "\"provider_code\":\"");
            lx_strbuf_mem(&pb, esc,
                          lx_api_error_escape(esc, sizeof(esc), ucode, strlen(ucode), NULL));
            LX_STRBUF_LIT(&pb, "\",");
        }
    }
    if (r->openrouter) {
        if (!pb.overflow && meta_len > 0)
            lx_strbuf_mem(&pb, meta, meta_len);
        e.meta = pmeta;
        e.meta_len = pb.overflow || meta_len == 0 ? 0 : lx_strbuf_len(&pb, pmeta);
    } else {
        e.meta = meta;
        e.meta_len = meta_len;
    }
    char body[4096];
    int n = lx_api_error_format_full(body, sizeof(body),
                                     r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e);
    if (n < 0)
        return false;
    char head[160];
    int hn = snprintf(head, sizeof(head), "Content-Type: application/json\r\n");
    if (status == 429 && min_retry >= 0)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Retry-After: %lld\r\n",
                       (long long)min_retry);
    else if (status == 503)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Retry-After: 1\r\n");
    r->px.client_status = status;
    lx_http_server_respond(r->px.req, status, head, (size_t)hn, body, (size_t)n);
    return true;
}

void lx_dispatch_reject(lx_gw_req_t *r, int status, const char *msg)
{
    static const char ct[] = "Content-Type: application/json\r\n";
    lx_http_request_t *req = r->px.req;
    lx_api_error_t e = {
        .status = status,
        .message = msg,
        .message_len = r->reject_len > 0 ? r->reject_len : strlen(msg),
        .code = r->reject_code,
        .param = r->reject_param,
    };
    char body[2048];
    int n = lx_api_error_format_full(body, sizeof(body),
                                     r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e);
    if (n < 0) {
        lx_http_server_respond_error(req, status, NULL, msg);
        return;
    }
    lx_http_server_respond(req, status, ct, sizeof(ct) - 1, body, (size_t)n);
}

size_t lx_dispatch_format_cut(lx_gw_req_t *r, int status, const char *message, char *buf,
                              size_t cap)
{
    const lx_proxy_t *px = &r->px;
    const lx_sse_scan_t *sc = &r->sse;
    bool sse = (r->scanning && !sc->json_mode) || px->stream_head != NULL;
    if (!sse || cap < 2)
        return 0;
    /* cut inside an event: end it first, so the error is an event of its own */
    size_t o = 0;
    if (r->scanning && sc->in_block) {
        memcpy(buf, "\n\n", 2);
        o = 2;
    }
    /* the stream's own id and created, as its chunks carried them (else llmux's generation
     * id and now): a client that groups chunks by id sees the error in the same answer */
    bool known = r->scanning && sc->id_len > 0;
    lx_api_event_t ev = {
        .id = known ? sc->id : r->gen_id,
        .id_len = known ? sc->id_len : strlen(r->gen_id),
        .created = r->scanning && sc->created >= 0 ? sc->created : (int64_t)time(NULL),
        .model = r->model->id,
        .provider = r->provider->name,
    };
    lx_api_error_t e = {.status = status, .message = message, .message_len = strlen(message)};
    int n = lx_api_error_format_event(buf + o, cap - o,
                                      r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e, &ev);
    return n > 0 ? o + (size_t)n : 0;
}

void lx_dispatch_format_attempts(const lx_gw_req_t *r, lx_strbuf_t *sb)
{
    const lx_config_t *cfg = r->gen->cfg;
    LX_STRBUF_LIT(sb, "[");
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        const lx_config_model_t *m = &cfg->models[a->model];
        const lx_config_provider_t *pv = &cfg->providers[m->routes[a->route].provider];
        if (i > 0)
            LX_STRBUF_LIT(sb, ",");
        LX_STRBUF_LIT(sb, "{\"provider\":\"");
        lx_strbuf_str(sb, pv->name);
        LX_STRBUF_LIT(sb, "\",\"upstream\":\"");
        lx_strbuf_str(sb, pv->endpoints[a->ep].url);
        LX_STRBUF_LIT(sb, "\",\"model\":\"");
        lx_strbuf_str(sb, m->id);
        LX_STRBUF_LIT(sb, "\",\"status\":");
        lx_strbuf_i64(sb, a->status);
        LX_STRBUF_LIT(sb, ",\"outcome\":\"");
        lx_strbuf_str(sb, attempt_error_type(a));
        LX_STRBUF_LIT(sb, "\",\"ms\":");
        lx_strbuf_u64(sb, a->ms);
        LX_STRBUF_LIT(sb, "}");
    }
    LX_STRBUF_LIT(sb, "]");
}
