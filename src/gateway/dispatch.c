/*
 * dispatch.c - a request's walk through its plan: the plan and the first attempt, each
 * attempt's endpoint, admission and proxy settings, the outcome of an attempt, and failover
 * to the next one. The choices themselves are route/'s (plan.c, router.c, session.c); this
 * file keeps the request's side of them (the attempt list, in-flight counts, the health
 * table's shard of this worker, the proxy's timeouts).
 *
 *   lx_dispatch_start: lx_plan_make (models chain, preferences, candidates, order) ─>
 *     lx_plan_apply_session ─> attempt 1
 *   attempt: endpoint (lx_plan_pick_endpoint) ─> breaker admission ─> upstream head + spliced
 *     body (upstream_head.c) ─> px (pool, timeouts)
 *   failure before any byte reached the client (proxy ops->retry) ─> lx_dispatch_end_attempt
 *     (health table, attempt list) ─> lx_dispatch_next: another replica of the same provider,
 *     else the next plan entry (the next model after a context-length error), within
 *     routing.max_attempts and routing.deadline
 *
 * Everything here runs on the worker's loop; the health table is read through its published
 * snapshot and written through this worker's shard.
 */
#include "gateway/dispatch.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/status.h"
#include "gateway/fleet_queue.h"
#include "gateway/upstream_head.h"
#include "llm/prefix.h"
#include "route/hedge.h"
#include "route/plan.h"
#include "gateway/admission.h"
#include "route/session.h"

#define MIN_ATTEMPT_MS LX_DISPATCH_MIN_ATTEMPT_MS
#define ATTEMPT_FULL   1 /* prepare_attempt: every replica of a plan entry was full */

static uint64_t now_ms(const lx_gw_req_t *r)
{
    return uv_now(&r->gw->worker.loop);
}

static lx_route_ctx_t route_ctx(lx_gw_req_t *r)
{
    return lx_gw_route_ctx(r->gen, &r->gw->rng);
}

void lx_dispatch_served(lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    if (r->session == 0 || cfg->routing_session_ttl_ms == 0 || r->n_attempts == 0)
        return;
    const lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    lx_session_t s = {.serial = r->gen->serial, .model = a->model, .route = a->route, .ep = a->ep};
    lx_session_remember(&r->gw->sessions, r->session, now_ms(r), cfg->routing_session_ttl_ms, &s);
}

static int prepare_attempt(lx_gw_req_t *r);

/* balance fleet: the ring key of the request's prompt prefix (its first 256 bytes), seeded
 * with its first plan entry's model; 0 without a prompt. */
static uint64_t prefix_key(lx_gw_req_t *r, const lx_http_request_t *req)
{
    const lx_config_t *cfg = r->gen->cfg;
    if (cfg->routing_balance != LX_CONFIG_BALANCE_FLEET || r->n_plan == 0)
        return 0;
    const char *model = cfg->models[r->plan[0].model].id;
    lx_prefix_t p;
    if (!lx_prefix_of_body(req->body.ptr, &r->scan, lx_prefix_seed(model, strlen(model)), 1, &p))
        return 0;
    r->prefix_len = p.len; /* (route/prefix_est.h) */
    return p.key;
}

int lx_dispatch_start(lx_gw_req_t *r, lx_http_request_t *req, char *msg, size_t cap)
{
    const lx_config_t *cfg = r->gen->cfg;
    uint64_t now = now_ms(r);
    lx_route_ctx_t x = route_ctx(r);
    lx_plan_req_t q = {.body = req->body.ptr,
                       .body_len = req->body.len,
                       .scan = &r->scan,
                       .session = r->session,
                       .now_ms = now};
    lx_gw_key_rules(r, &q);
    int status = lx_plan_make(&x, &q, r->plan, &r->n_plan, &r->reject, msg, cap);
    if (status == 0)
        status = lx_gw_admit(r, req, msg, cap);
    if (status != 0)
        return status;
    r->pin_ep = lx_plan_apply_session(&x, &r->gw->sessions, r->session, r->gen->serial, now,
                                      r->plan, r->n_plan);
    r->prefix_key = prefix_key(r, req);
    r->deadline_ms = now + cfg->routing_deadline_ms;
    r->full_pos = -1;
    lx_hedge_earn(&r->gw->hedge_bucket, cfg->routing_hedge_budget_ppm);
    int rc = prepare_attempt(r);
    if (rc == ATTEMPT_FULL)
        return lx_gw_queue_push(r, msg, cap) == 0 ? LX_DISPATCH_QUEUED : 429;
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

int lx_dispatch_resume(lx_gw_req_t *r, char *msg, size_t cap)
{
    r->plan_pos = (uint16_t)r->full_pos;
    int rc = prepare_attempt(r);
    if (rc == LX_ETOOBIG) {
        snprintf(msg, cap, "request headers too large to forward upstream");
        return 431;
    }
    if (rc != 0) {
        snprintf(msg, cap, "no provider endpoint is available for this request");
        return 503;
    }
    return 0;
}

/* ---- one attempt ---------------------------------------------------------------------------- */

/* The endpoints of (model, route) this request tried: bit j for endpoint j. */
static uint64_t tried(const lx_gw_req_t *r, size_t model, size_t route)
{
    uint64_t mask = 0;
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        if (a->model == model && a->route == route && a->ep < 64)
            mask |= 1ull << a->ep;
    }
    return mask;
}

/* The proxy's settings for the attempt at (model, route, ep): pool, name, timeouts cut to
 * what is left of the deadline. */
static void set_proxy(lx_gw_req_t *r, const lx_config_route_t *rt, size_t ep, uint64_t now)
{
    const lx_config_t *cfg = r->gen->cfg;
    const lx_config_provider_t *pv = r->provider;
    lx_proxy_t *px = &r->px;
    px->pool = &r->gen->pools[r->gen->pool_base[rt->provider] + ep];
    px->upstream_name = pv->name;
    uint64_t left = r->deadline_ms > now ? r->deadline_ms - now : 1;
    uint64_t ct =
        pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
    uint64_t ft =
        pv->first_byte_timeout_ms ? pv->first_byte_timeout_ms : cfg->upstream_first_byte_timeout_ms;
    px->connect_timeout_ms = LX_MIN(ct, left);
    px->first_byte_timeout_ms = LX_MIN(ft, left);
    px->deadline_ms = r->deadline_ms; /* every phase until the head, together */
    px->idle_timeout_ms = pv->idle_timeout_ms ? pv->idle_timeout_ms : cfg->upstream_idle_timeout_ms;
}

/* A hedge may go to (model, route, ep): not the current attempt's endpoint (by URL: two
 * routes or providers may name the same server), its provider allows hedges, and its row is
 * neither demoted nor unavailable (breaker, Retry-After, a 429's cap) nor full (its
 * max_in_flight, configured or learned: a hedge never adds to a saturated replica). r->endpoint is
 * still the current attempt's while the hedge's is chosen. */
static bool hedge_target(const lx_gw_req_t *r, size_t mi, size_t ri, size_t ep, uint64_t now)
{
    const lx_config_t *cfg = r->gen->cfg;
    const lx_gw_health_t *gh = r->gen->health;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[mi].routes[ri].provider];
    if (pv->no_hedge || strcmp(pv->endpoints[ep].url, r->endpoint->url) == 0)
        return false;
    size_t row = lx_gw_row(gh, mi, ri, ep);
    uint32_t cap = lx_gw_row_cap(gh, pv, row); /* (configured or learned) */
    if (cap > 0 && lx_health_in_flight(gh->table, row) >= (int64_t)cap)
        return false;
    return lx_health_scores(gh->table)[row].demoted == LX_HEALTH_NOT_DEMOTED &&
           !lx_health_slow(gh->table, row, now) && lx_health_available(gh->table, row, now);
}

/* When the attempt on <row> that starts at <now> is hedged (loop time, px->hedge_due), 0 for
 * never: hedging on, no hedge yet, a provider that allows them, a threshold known. */
static uint64_t hedge_due(const lx_gw_req_t *r, size_t row, uint64_t now)
{
    if (r->gen->cfg->routing_hedge_budget_ppm == 0 || r->hedged || r->provider->no_hedge)
        return 0;
    const lx_health_t *table = r->gen->health->table;
    const lx_health_score_t *sc = &lx_health_scores(table)[row];
    bool slow = sc->demoted == LX_HEALTH_DEMOTED_LATENCY || lx_health_slow(table, row, now);
    uint64_t t = lx_hedge_threshold_ms(sc->model_ttft_p95_ms, slow);
    return t == LX_HEDGE_NEVER ? 0 : now + t;
}

/* The threshold the attempt on <row>'s head is judged late by (r->head_ms): the hedge's, for a
 * row not known to be slow; 0 when unknown. */
static uint32_t head_ms(const lx_gw_req_t *r, size_t row)
{
    const lx_health_score_t *sc = &lx_health_scores(r->gen->health->table)[row];
    uint64_t t = lx_hedge_threshold_ms(sc->model_ttft_p95_ms, false);
    return t == LX_HEDGE_NEVER || t > UINT32_MAX ? 0 : (uint32_t)t;
}

/* Prepares the next attempt from the plan position onwards: endpoint, admission, upstream
 * request, headers, timeouts. Returns 0, LX_ENOUPSTREAM when nothing is left to try, or
 * LX_ETOOBIG when the upstream request cannot be built (headers too large, no memory). For a
 * hedge (r->hedging), replicas hedge_target() refuses are passed over. */
static int prepare_attempt(lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    lx_gw_health_t *gh = r->gen->health;
    uint64_t now = now_ms(r);
    bool rr = cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN;
    lx_route_ctx_t x = route_ctx(r);
    x.prefix_key = r->prefix_key;
    x.may_queue = r->n_attempts == 0 && !r->queued && r->gen->queues != NULL;
    uint64_t skip = 0; /* a hedge: replicas of this entry hedge_target() refused */

    while (r->plan_pos < r->n_plan && r->n_attempts < LX_GW_MAX_ATTEMPTS) {
        lx_plan_entry_t e = r->plan[r->plan_pos];
        size_t mi = e.model, ri = e.route;
        if (r->hedging && mi != r->attempts[r->n_attempts - 1].model) {
            r->plan_pos++; /* a hedge asks the same model: a later `models` entry is failover's */
            continue;
        }
        /* the session's endpoint, for the first attempt of the first entry only */
        int pin = r->plan_pos == 0 && r->n_attempts == 0 ? r->pin_ep : -1;
        /* requests already waiting for this model go first: a new one does not take the
         * slot the queue timer is about to give them */
        bool waiting = x.may_queue && lx_queue_len(&r->gen->queues[mi]) > 0;
        int ep = waiting
                     ? LX_PLAN_FULL
                     : lx_plan_pick_endpoint(&x, e, tried(r, mi, ri) | skip, pin, r->session, now);
        if (ep == LX_PLAN_FULL && r->full_pos < 0)
            r->full_pos = (int16_t)r->plan_pos; /* (the other entries may have room) */
        if (ep < 0) {
            r->plan_pos++;
            skip = 0;
            continue;
        }
        if (r->hedging && ep < 64 && !hedge_target(r, mi, ri, (size_t)ep, now)) {
            skip |= 1ull << ep; /* (at most 64 passes per entry) */
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
        lx_prefix_est_note(gh->prefix_est, row, r->prefix_key, r->prefix_len, now); /* or NULL */
        r->attempt_start_ns = lx_worker_clock_ns();
        r->in_flight = true;
        r->gen->in_flight[row]++;
        lx_health_inflight_add(gh->table, r->gw->worker.id, row, +1);
        set_proxy(r, rt, (size_t)ep, now);
        if (!r->hedging) {
            r->head_ms = head_ms(r, row);
            r->head_late = false;
        }
        r->px.hedge_due = hedge_due(r, row, now);
        return 0;
    }
    return x.may_queue && r->full_pos >= 0 ? ATTEMPT_FULL : LX_ENOUPSTREAM;
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
    /* the slot time an admission prediction needs: of answers, not of fast failures */
    if (r->gen->queues != NULL && s.outcome == LX_HEALTH_OK)
        lx_queue_note_service(&r->gen->queues[a->model], s.total_us);
    if (s.outcome == LX_HEALTH_OK && s.ttfb_us > 0 && r->head_ms != 0 && !r->head_late)
        lx_health_head(gh->table, r->row, s.ttfb_us > (uint64_t)r->head_ms * 1000, now);
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
        /* too long for this model: the next *model* (every later entry of this model goes,
         * wherever a sort placed it) */
        lx_plan_drop_model(r->plan, &r->n_plan, r->plan_pos);
        break;
    default:
        return false;
    }
    /* a hedge cancelled because failover goes on without it (to the next model) does not
     * count: the request gets the attempts it would have had without hedging */
    unsigned used = r->n_attempts;
    if (r->hedged && r->attempts[r->other_idx].outcome == LX_HEALTH_CANCELED)
        used--;
    if (used >= cfg->routing_max_attempts)
        return false;
    uint64_t now = now_ms(r);
    if (now + MIN_ATTEMPT_MS > r->deadline_ms)
        return false;
    return prepare_attempt(r) == 0;
}

/* ---- for dispatch_hedge.c ------------------------------------------------------------------- */

int lx_dispatch_prepare_hedge(lx_gw_req_t *r)
{
    uint16_t pos = r->plan_pos; /* (the current attempt's entry: failover goes on from it) */
    r->hedging = true;
    int rc = prepare_attempt(r);
    r->hedging = false;
    r->plan_pos = pos;
    return rc;
}

void lx_dispatch_set_proxy(lx_gw_req_t *r)
{
    const lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    set_proxy(r, r->route, a->ep, now_ms(r));
}

bool lx_dispatch_may_fail_over(const lx_gw_req_t *r)
{
    const lx_gw_attempt_t *a = &r->attempts[r->n_attempts - 1];
    switch (a->outcome) {
    case LX_HEALTH_CONNECT:
    case LX_HEALTH_TIMEOUT:
    case LX_HEALTH_RATE_LIMIT:
    case LX_HEALTH_SERVER:
        return true;
    case LX_HEALTH_BAD_RESPONSE:
        return r->px.upstream_status == 0; /* a premature close, not an answer begun */
    default:
        return false; /* (a context-length 400 included: the hedge asked the same model) */
    }
}

void lx_dispatch_record_leg(lx_gw_req_t *r, lx_gw_attempt_t *a, size_t row, uint64_t start_ns,
                            lx_health_outcome_t o, int64_t retry_after)
{
    lx_gw_health_t *gh = r->gen->health;
    r->gen->in_flight[row]--;
    lx_health_inflight_add(gh->table, r->gw->worker.id, row, -1);
    uint64_t end_ns = lx_worker_clock_ns();
    lx_health_sample_t s = {.outcome = o,
                            .total_us = end_ns > start_ns ? (end_ns - start_ns) / 1000 : 0,
                            .output_tokens = -1,
                            .retry_after_ms = retry_after > 0 ? (uint64_t)retry_after * 1000 : 0};
    a->outcome = (uint8_t)o;
    a->retry_after = retry_after;
    a->ms = s.total_us / 1000;
    lx_health_record(gh->table, r->gw->worker.id, row, &s, now_ms(r));
    if (r->gw->n_waiting > 0)
        lx_gw_queue_slot_freed(r->gw);
}
