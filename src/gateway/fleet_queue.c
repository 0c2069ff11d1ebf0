/*
 * fleet_queue.c - the admission queues of a worker: under routing.balance fleet with
 * routing.queue_size > 0, a request whose first attempt finds every replica of its model full
 * (max_in_flight, route/plan.h LX_PLAN_FULL) waits in its generation's queue of that model
 * (route/queue.h: interactive before batch, bounded at ceil(queue_size / workers), each until
 * routing.queue_timeout) instead of piling onto a replica.
 *
 *   dispatch.c lx_dispatch_start ─ every replica full ─> lx_gw_queue_push ─ full: 429
 *                                                         (Retry-After: the drain rate)
 *   api.c on_proxy_finish (an attempt ended: a slot may be free) ─> lx_gw_queue_slot_freed
 *     ─> the queue timer at 0 ms ─> lx_gw_queue_kick: expired ones 429, then pop while a
 *        replica of the model admits one ─> api.c lx_api_resume (the proxy starts)
 *   the queue timer, while anything waits: at min(next deadline, now + 10 ms) (slots freed on
 *     other workers are not signalled: this is how they are noticed)
 *   the client leaves (api.c on_queued_abort) ─> lx_gw_queue_leave: off the queue at once
 *
 * A queued request holds its generation (and the generation its queues), so the queues of a
 * generation retired by a reload keep being served: the kick walks the current and the
 * retired generations. Everything runs on the worker's loop: no lock, no atomic.
 */
#include "gateway/fleet_queue.h"

#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gateway/api.h"

#define QUEUE_RECHECK_MS 10 /* while anything waits, slots are looked for at least this often */

static lx_queue_t *queue_of(lx_gw_req_t *r)
{
    return &r->gen->queues[r->plan[r->full_pos].model];
}

static const char *model_of(const lx_gw_req_t *r)
{
    return r->gen->cfg->models[r->plan[r->full_pos].model].id;
}

static lx_queue_class_t class_of(const lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    if (r->ident.who == LX_WHO_CONFIG && r->ident.index < cfg->n_keys &&
        cfg->keys[r->ident.index].priority == LX_CONFIG_PRIORITY_BATCH)
        return LX_QUEUE_BATCH;
    if (r->ident.who == LX_WHO_STORED && r->ident.priority == LX_KEY_PRIORITY_BATCH)
        return LX_QUEUE_BATCH; /* (the stored key's, copied at lx_gw_bind_key) */
    return LX_QUEUE_INTERACTIVE;
}

/* The generations of <w> that may hold waiting requests: the current one, then the retired. */
static lx_gw_gen_t *gen_first(lx_gw_worker_t *w)
{
    return w->gen != NULL ? w->gen : w->retired;
}

static lx_gw_gen_t *gen_next(lx_gw_worker_t *w, lx_gw_gen_t *g)
{
    return g == w->gen ? w->retired : g->next_retired;
}

static void on_queue_timer(uv_timer_t *t)
{
    lx_gw_queue_kick(t->data);
}

/* The timer: at the earliest deadline, within QUEUE_RECHECK_MS; stopped when nothing waits. */
static void arm(lx_gw_worker_t *w)
{
    if (w->n_waiting == 0) {
        uv_timer_stop(&w->queue_timer);
        return;
    }
    uint64_t now = uv_now(&w->worker.loop), next = UINT64_MAX;
    for (lx_gw_gen_t *g = gen_first(w); g != NULL; g = gen_next(w, g)) {
        for (size_t m = 0; g->queues != NULL && m < g->cfg->n_models; m++)
            next = LX_MIN(next, lx_queue_next_deadline(&g->queues[m]));
    }
    uint64_t due = next > now ? next - now : 0;
    uv_timer_start(&w->queue_timer, on_queue_timer, LX_MIN(due, (uint64_t)QUEUE_RECHECK_MS), 0);
}

int lx_gw_queue_push(lx_gw_req_t *r, char *msg, size_t cap)
{
    lx_gw_worker_t *w = r->gw;
    lx_queue_t *q = queue_of(r);
    uint64_t now = uv_now(&w->worker.loop);
    lx_queue_node_t *evicted = NULL;
    if (!lx_queue_push(q, &r->qnode, class_of(r), now, &evicted)) {
        lx_gw_refusal_t *f = r->refusal;
        if (f != NULL) {
            snprintf(f->headers, sizeof(f->headers), "Retry-After: %u\r\n",
                     lx_queue_retry_after(q, now));
            f->error_type = "rate_limit_exceeded";
            f->code = "rate_limit_exceeded";
        }
        snprintf(msg, cap, "every replica of model '%s' is busy and its queue is full",
                 model_of(r));
        return 429;
    }
    r->queued = true;
    w->n_waiting++;
    if (evicted != NULL) {
        w->n_waiting--;
        lx_api_refuse_queued(lx_container_of(evicted, lx_gw_req_t, qnode), 429,
                             lx_queue_retry_after(q, now),
                             "every replica of this model is busy: a request of a higher priority "
                             "took this one's place in the queue");
    }
    arm(w);
    return 0;
}

void lx_gw_queue_leave(lx_gw_req_t *r)
{
    if (r->full_pos < 0 || !lx_queue_remove(queue_of(r), &r->qnode))
        return;
    r->gw->n_waiting--;
    arm(r->gw);
}

void lx_gw_queue_slot_freed(lx_gw_worker_t *w)
{
    if (w->n_waiting > 0)
        uv_timer_start(&w->queue_timer, on_queue_timer, 0, 0); /* (not from inside a proxy) */
}

/* Whether a replica of model <m> of <g> admits one more request: available, and below its
 * max_in_flight on all workers. */
static bool slot_free(const lx_gw_gen_t *g, size_t m, uint64_t now)
{
    const lx_config_t *cfg = g->cfg;
    const lx_gw_health_t *h = g->health;
    for (size_t r = 0; h != NULL && r < cfg->models[m].n_routes; r++) {
        const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[r].provider];
        for (size_t j = 0; j < pv->n_endpoints; j++) {
            size_t row = lx_gw_row(h, m, r, j);
            if (!lx_health_available(h->table, row, now))
                continue;
            if (pv->max_in_flight == 0 ||
                lx_health_in_flight(h->table, row) < (int64_t)pv->max_in_flight)
                return true;
        }
    }
    return false;
}

static void on_expired(void *arg, lx_queue_node_t *n)
{
    lx_queue_t *q = arg;
    lx_gw_req_t *r = lx_container_of(n, lx_gw_req_t, qnode);
    r->gw->n_waiting--;
    char msg[400];
    snprintf(msg, sizeof(msg),
             "every replica of model '%s' stayed busy for the queue's whole timeout (%llu ms)",
             model_of(r), (unsigned long long)q->timeout_ms);
    lx_api_refuse_queued(r, 429, lx_queue_retry_after(q, uv_now(&r->gw->worker.loop)), msg);
}

static void kick_gen(lx_gw_worker_t *w, lx_gw_gen_t *g, uint64_t now)
{
    for (size_t m = 0; g->queues != NULL && m < g->cfg->n_models; m++) {
        lx_queue_t *q = &g->queues[m];
        if (lx_queue_len(q) == 0)
            continue;
        lx_queue_expire(q, now, on_expired, q);
        while (lx_queue_len(q) > 0 && slot_free(g, m, now)) {
            lx_queue_node_t *n = lx_queue_pop(q, now);
            w->n_waiting--;
            lx_api_resume(lx_container_of(n, lx_gw_req_t, qnode)); /* (its attempt counts now) */
        }
    }
}

void lx_gw_queue_kick(lx_gw_worker_t *w)
{
    uint64_t now = uv_now(&w->worker.loop);
    /* (a request resumed or refused may drop the last reference of a retired generation: it
     * is disposed, not freed, before the next sweep, so the walk stays valid) */
    for (lx_gw_gen_t *g = gen_first(w); g != NULL && w->n_waiting > 0; g = gen_next(w, g))
        kick_gen(w, g, now);
    arm(w);
}

static void on_stopped(void *arg, lx_queue_node_t *n)
{
    (void)arg;
    lx_gw_req_t *r = lx_container_of(n, lx_gw_req_t, qnode);
    r->gw->n_waiting--;
    lx_api_refuse_queued(r, 503, 0, "llmux is shutting down");
}

void lx_gw_queue_stop(lx_gw_worker_t *w)
{
    for (lx_gw_gen_t *g = gen_first(w); g != NULL; g = gen_next(w, g))
        for (size_t m = 0; g->queues != NULL && m < g->cfg->n_models; m++)
            lx_queue_expire(&g->queues[m], UINT64_MAX, on_stopped, NULL);
    arm(w);
}

size_t lx_gw_queue_waiting(lx_gw_worker_t *w)
{
    return w->n_waiting;
}
