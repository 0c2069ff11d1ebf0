/*
 * dispatch_hedge.c - a request's hedge: the second attempt of a race (route/hedge.h decides
 * when and whether the budget allows it; the proxy runs it, proxy.c's "hedging" section).
 *
 *   the attempt's head is late (px->hedge_due, set by prepare_attempt) ─> lx_dispatch_hedge:
 *     budget token, a replica prepare_attempt picks as for failover (not one tried, not demoted,
 *     not unavailable, not a `hedge: false` provider), its request into r->hedge; its attempt
 *     entry goes just before the current one, its leg into r->other
 *   the hedge answers first ─> lx_dispatch_hedge_won(LX_PROXY_HEDGE_LOST): the current attempt
 *     recorded `hedged` (health: neither failure nor latency), the legs and entries swapped
 *   the current attempt fails over ─> lx_dispatch_hedge_won(code): recorded as any failure, and
 *     the hedge takes over when the failure is one to fail over from and the deadline has not
 *     passed; else (false) the proxy cancels the hedge and lx_dispatch_next decides as without
 *     one (a context-length 400: the next model)
 *   the hedge ends otherwise ─> lx_dispatch_hedge_ended: `hedged` when it lost, `canceled`
 *     when the request ended or went on without it, its failure (connect, 5xx, 429 with its
 *     Retry-After, ...) when it failed
 *
 * The current attempt is always the list's last entry: what served is last, as without hedging.
 */
#include <string.h>

#include "core/status.h"
#include "gateway/dispatch.h"
#include "gateway/upstream_head.h"
#include "route/hedge.h"

/* Whether the answer of the current leg's route is rewritten (its upstream model's name is not
 * the public id): as upstream_head.c's splice_body() decides for the request it builds. */
static bool leg_rewrites(const lx_gw_req_t *r)
{
    const char *up = r->route->upstream_model;
    return up != NULL && strcmp(up, r->model->id) != 0;
}

/* The current attempt's leg and the hedge's trade places. */
static void swap_legs(lx_gw_req_t *r)
{
    lx_gw_leg_t cur = {r->model, r->provider,  r->endpoint,        r->route,
                       r->row,   r->in_flight, r->attempt_start_ns};
    r->model = r->other.model;
    r->provider = r->other.provider;
    r->endpoint = r->other.endpoint;
    r->route = r->other.route;
    r->row = r->other.row;
    r->in_flight = r->other.in_flight;
    r->attempt_start_ns = r->other.attempt_start_ns;
    r->other = cur;
}

static void swap_entries(lx_gw_req_t *r, unsigned i, unsigned j)
{
    lx_gw_attempt_t t = r->attempts[i];
    r->attempts[i] = r->attempts[j];
    r->attempts[j] = t;
}

/* The proxy's settings of the current attempt, kept while a hedge's are made. */
typedef struct saved_px {
    lx_conn_pool_t *pool;
    const char *upstream_name;
    uint64_t connect_ms, first_byte_ms, idle_ms, deadline_ms;
    unsigned n_out;
    lx_slice_t out[LX_PROXY_MAX_OUT];
} saved_px_t;

static void save_px(const lx_proxy_t *px, saved_px_t *s)
{
    *s = (saved_px_t){px->pool,
                      px->upstream_name,
                      px->connect_timeout_ms,
                      px->first_byte_timeout_ms,
                      px->idle_timeout_ms,
                      px->deadline_ms,
                      px->n_out,
                      {{0}}};
    memcpy(s->out, px->out, px->n_out * sizeof(px->out[0]));
}

static void restore_px(lx_proxy_t *px, const saved_px_t *s)
{
    px->pool = s->pool;
    px->upstream_name = s->upstream_name;
    px->connect_timeout_ms = s->connect_ms;
    px->first_byte_timeout_ms = s->first_byte_ms;
    px->idle_timeout_ms = s->idle_ms;
    px->deadline_ms = s->deadline_ms;
    memcpy(px->out, s->out, s->n_out * sizeof(px->out[0]));
    px->n_out = s->n_out;
}

lx_proxy_hedge_t *lx_dispatch_hedge(lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    lx_proxy_t *px = &r->px;
    uint64_t now = uv_now(&r->gw->worker.loop);
    /* the head is late (not for a row raced at once: its threshold has not passed yet) */
    if (!r->head_late && r->head_ms != 0 &&
        lx_worker_clock_ns() - r->attempt_start_ns >= (uint64_t)r->head_ms * 1000000) {
        r->head_late = true;
        lx_health_head(r->gen->health->table, r->row, true, now);
    }
    if (r->hedged || r->n_attempts >= cfg->routing_max_attempts ||
        r->n_attempts >= LX_GW_MAX_ATTEMPTS || now + LX_DISPATCH_MIN_ATTEMPT_MS > r->deadline_ms ||
        !lx_hedge_take(&r->gw->hedge_bucket))
        return NULL;
    lx_gw_leg_t cur = {r->model, r->provider,  r->endpoint,        r->route,
                       r->row,   r->in_flight, r->attempt_start_ns};
    saved_px_t s;
    save_px(px, &s);
    px->n_out = 0;
    r->hedged = true; /* (prepare_attempt sets no hedge_due for it) */
    int rc = lx_dispatch_prepare_hedge(r);
    if (rc != 0) {
        r->hedged = false;
        lx_hedge_refund(&r->gw->hedge_bucket);
        r->model = cur.model, r->provider = cur.provider, r->endpoint = cur.endpoint;
        r->route = cur.route, r->row = cur.row, r->in_flight = cur.in_flight;
        r->attempt_start_ns = cur.attempt_start_ns;
        for (unsigned i = 0; i < px->n_out; i++) /* (a request built before a failure) */
            lx_buf_unref(px->out[i].buf);
        restore_px(px, &s);
        r->rewrite = leg_rewrites(r);
        lx_gw_build_resp_headers(r); /* (a failed build may have replaced them) */
        return NULL;
    }
    /* the hedge's leg and request aside, the current attempt's back in place */
    r->hedge.pool = px->pool;
    memcpy(r->hedge.out, px->out, px->n_out * sizeof(px->out[0]));
    r->hedge.n_out = px->n_out;
    r->other = cur;
    swap_legs(r);
    restore_px(px, &s);
    r->rewrite = leg_rewrites(r); /* (the hedge's build set the hedge's) */
    swap_entries(r, r->n_attempts - 1, r->n_attempts - 2);
    r->other_idx = (uint16_t)(r->n_attempts - 2);
    px->hedge_due = 0;
    lx_gw_build_resp_headers(r); /* X-Llmux-Attempts counts the hedge (kept on failure) */
    return &r->hedge;
}

bool lx_dispatch_hedge_won(lx_gw_req_t *r, int code)
{
    unsigned last = r->n_attempts - 1;
    if (code == LX_PROXY_HEDGE_LOST) {
        r->in_flight = false;
        lx_dispatch_record_leg(r, &r->attempts[last], r->row, r->attempt_start_ns, LX_HEALTH_HEDGED,
                               -1);
    } else {
        lx_dispatch_end_attempt(r, code);
        /* not the way on: a failure failover would not retry (a context-length 400 goes to
         * the next model through lx_dispatch_next, the hedge asked the same one), or the hedge
         * cannot answer within routing.deadline, the client's bound: the deadline passed, or
         * it has no connection yet (its connect starts over) and less is left than a new
         * attempt needs. The request then ends as it would without a hedge, and the hedge is
         * cancelled, not charged a failure. */
        uint64_t now = uv_now(&r->gw->worker.loop);
        bool late = r->hedge.conn != NULL ? now >= r->deadline_ms
                                          : now + LX_DISPATCH_MIN_ATTEMPT_MS > r->deadline_ms;
        if (!lx_dispatch_may_fail_over(r) || late)
            return false; /* the proxy cancels the hedge and asks lx_dispatch_next */
    }
    swap_legs(r);
    r->rewrite = leg_rewrites(r);
    swap_entries(r, r->other_idx, last); /* (other_idx: the loser's entry now) */
    lx_dispatch_set_proxy(r);
    r->px.hedge_due = 0;
    lx_gw_build_resp_headers(r); /* what serves now */
    return true;
}

/* The hedge's outcome from how it ended. */
static lx_health_outcome_t hedge_outcome(const lx_proxy_hedge_t *h, int code)
{
    if (code == LX_PROXY_HEDGE_LOST)
        return LX_HEALTH_HEDGED;
    if (code == LX_ECANCELED || code == LX_ESHUTDOWN)
        return LX_HEALTH_CANCELED;
    if (code == 0) {
        if (h->status == 429)
            return LX_HEALTH_RATE_LIMIT;
        return h->status >= 500 || h->status == 408 ? LX_HEALTH_SERVER : LX_HEALTH_CLIENT;
    }
    if (code == LX_ETIMEDOUT || code == UV_ETIMEDOUT)
        return LX_HEALTH_TIMEOUT;
    return h->t_connected_ns == 0 ? LX_HEALTH_CONNECT : LX_HEALTH_BAD_RESPONSE;
}

void lx_dispatch_hedge_ended(lx_gw_req_t *r, lx_proxy_hedge_t *h, int code)
{
    if (!r->other.in_flight)
        return;
    lx_gw_attempt_t *a = &r->attempts[r->other_idx];
    r->other.in_flight = false;
    a->status = (int16_t)h->status;
    a->code = code;
    /* a 429's Retry-After counts as a non-hedged attempt's does (health, final answer) */
    lx_health_outcome_t o = hedge_outcome(h, code);
    lx_dispatch_record_leg(r, a, r->other.row, r->other.attempt_start_ns, o,
                           o == LX_HEALTH_RATE_LIMIT ? h->retry_after : -1);
}
