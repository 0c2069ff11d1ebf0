/*
 * fleet_queue.c - the admission queues of a worker: under routing.balance fleet with
 * routing.queue_size > 0, a request whose first attempt finds every replica of its model full
 * (max_in_flight, route/plan.h LX_PLAN_FULL) waits in its generation's queue of that model
 * (route/queue.h: interactive before batch, bounded at ceil(queue_size / workers), each until
 * routing.queue_timeout) instead of piling onto a replica.
 *
 *   dispatch.c lx_dispatch_start ─ every replica full ─> lx_gw_queue_push ─ full: 429
 *                                                         (Retry-After: the drain rate)
 *     (the queue standing, route/codel.h: 429 at once unless the wait predicted at the
 *      request's home, or behind the whole queue, is under routing.queue_target: admitted())
 *   api.c on_proxy_finish (an attempt ended: a slot may be free) ─> lx_gw_queue_slot_freed
 *     ─> the queue timer at 0 ms ─> lx_gw_queue_kick: expired ones 429, then per replica with
 *        room: its own requests (their key's home) unless an older one is overdue for it,
 *        then the oldest that may take it (route/fleet.c step 5), of a route in its plan;
 *        while the queue stands and no replica is idle, its own requests only (held_home)
 *        ─> that plan entry first, pinned to it, api.c lx_api_resume (the proxy starts)
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
#include "route/fleet.h"

#define QUEUE_RECHECK_MS 10 /* while anything waits, slots are looked for at least this often */

static bool slot_free(const lx_gw_gen_t *g, size_t m, uint64_t now);

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

/* The replicas of plan entry <e> of <g> that are live at <now> (bit j: endpoint j; <n> of
 * them, at most 64): available in the health table (breaker, Retry-After). */
static uint64_t live_of(const lx_gw_gen_t *g, lx_plan_entry_t e, size_t n, uint64_t now)
{
    uint64_t live = 0;
    for (size_t j = 0; j < n && j < 64; j++)
        if (lx_health_available(g->health->table, lx_gw_row(g->health, e.model, e.route, j), now))
            live |= (uint64_t)1 << j;
    return live;
}

/* <r>'s replica preference (route/fleet.h lx_fleet_prefs_in) on the ring of the route it waits
 * for, over its live replicas, after its key is placed or refreshed there (lx_fleet_home): a
 * request queued behind others had no pick, which is what places keys otherwise, so under
 * standing load a key would lapse to its ring home (a dead replica included) after
 * LX_FLEET_MOVE_TTL_MS. A few loads and one table set's scan: no syscall, no allocation. */
static uint64_t prefs_of(lx_gw_req_t *r, uint64_t now)
{
    const lx_gw_health_t *h = r->gen->health;
    lx_plan_entry_t e = r->plan[r->full_pos];
    if (h == NULL || h->rings == NULL)
        return LX_FLEET_NO_PREF;
    size_t ri = h->model_base[e.model] + e.route;
    const lx_ring_t *ring = &h->rings[ri];
    if (ring->n_replicas == 0)
        return LX_FLEET_NO_PREF;
    uint64_t live = live_of(r->gen, e, ring->n_replicas, now);
    int home =
        lx_fleet_home(r->gen->moves, LX_FLEET_MOVES, ring, r->prefix_key, (uint32_t)ri, live, now);
    return lx_fleet_prefs_in(ring, r->prefix_key, home, live);
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

/* <r>'s 429 for a push refused on <q>: Retry-After from the drain rate. */
static int refuse_push(lx_gw_req_t *r, lx_queue_t *q, uint64_t now)
{
    lx_gw_refusal_t *f = r->refusal;
    if (f != NULL) {
        snprintf(f->headers, sizeof(f->headers), "Retry-After: %u\r\n",
                 lx_queue_retry_after(q, now));
        f->error_type = "rate_limit_exceeded";
        f->code = "rate_limit_exceeded";
    }
    return 429;
}

static size_t backlog(const lx_queue_t *q, uint64_t tag, size_t route);

/* How often replica <home> of plan entry <e>'s route frees a slot, in µs: the model's slot time
 * / its max_in_flight (all workers share it); 0 when a figure is missing. */
static uint64_t slot_interval_us(const lx_gw_gen_t *g, const lx_queue_t *q, lx_plan_entry_t e,
                                 size_t home)
{
    const lx_config_t *cfg = g->cfg;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[e.model].routes[e.route].provider];
    if (home >= pv->n_endpoints || q->service_us <= 0)
        return 0;
    uint32_t cap = lx_gw_row_cap(g->health, pv, lx_gw_row(g->health, e.model, e.route, home));
    return cap > 0 ? (uint64_t)q->service_us / cap : 0;
}

/* Whether a live replica of route <route> of model <m> with a max_in_flight is idle (nothing in
 * flight): room to spare, not the moment's slot that a busy replica frees. A replica merely
 * half idle is common under an even overload (measured at 120% on bench/fleet: sending
 * requests there at once, cold, took the admitted TTFT p99 from 339-428 to 601-618 ms). */
static bool spare_room(const lx_gw_gen_t *g, size_t m, size_t route, uint64_t now)
{
    const lx_config_t *cfg = g->cfg;
    const lx_gw_health_t *h = g->health;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[route].provider];
    for (size_t j = 0; h != NULL && j < pv->n_endpoints; j++) {
        size_t row = lx_gw_row(h, m, route, j);
        uint32_t cap = lx_gw_row_cap(h, pv, row);
        if (cap > 0 && lx_health_available(h->table, row, now) &&
            lx_health_in_flight(h->table, row) <= 0)
            return true;
    }
    return false;
}

/* Whether the replicas of route <route> of model <m> are held to their own requests: the
 * model's queue stands (route/codel.h: the fleet is overloaded), requests wait for their home
 * (routing.affinity_wait > 0), and no live replica with a max_in_flight is idle. A busy replica
 * that takes another's request gives it a cold prefill (up to twice a warm request's slot
 * time) for a slot that its own next request would take a moment later; an idle one (one
 * prefix hotter than its replica, the others quiet) has room to spare, so requests still go
 * there. */
static bool held_home(const lx_gw_gen_t *g, size_t m, size_t route, uint64_t now)
{
    const lx_config_t *cfg = g->cfg;
    if (!lx_queue_standing(&g->queues[m]) || cfg->routing_affinity_wait_ms == 0 ||
        g->health == NULL)
        return false;
    return !spare_room(g, m, route, now);
}

/* Whether <r>, about to queue on <q> (model <m>) with the replica preference *<tag>, may. While
 * the queue stands (route/codel.h: the fleet is overloaded) and requests wait for their home
 * (routing.affinity_wait > 0), a request whose home replica is known waits there when the wait
 * predicted at that home is under the target: a slot interval for each request of this worker
 * ahead of it there times the workers (the home's slots are shared by every worker's queue),
 * plus one for its own. Past the target, it is refused now while no replica has room to spare
 * (spare_room: it would go cold elsewhere for a slot that replica's own requests take a moment
 * later); when one is idle (one prefix hotter than its home, the others quiet), it goes to
 * any replica at once (*tag: no preference). Without a home, while the queue stands, it is
 * admitted by the whole queue's drain (lx_queue_admits), or when a replica has room (it waits for
 * its full home while another is free). */
static bool admitted(lx_gw_req_t *r, const lx_queue_t *q, size_t m, uint64_t *tag, uint64_t now)
{
    if (!lx_queue_standing(q))
        return true;
    lx_gw_gen_t *g = r->gen;
    lx_plan_entry_t e = r->plan[r->full_pos];
    uint64_t slot = *tag != LX_FLEET_NO_PREF && g->cfg->routing_affinity_wait_ms > 0
                        ? slot_interval_us(g, q, e, (size_t)(*tag & 0xff))
                        : 0;
    if (slot == 0)
        return lx_queue_admits(q, now) || slot_free(g, m, now);
    size_t workers = g->cfg->workers > 0 ? g->cfg->workers : 1;
    if (lx_queue_admits_behind(q, backlog(q, *tag, e.route) * workers, slot))
        return true;
    if (!spare_room(g, m, e.route, now))
        return false;
    *tag = LX_FLEET_NO_PREF; /* the route has room to spare: the first free slot takes it */
    return true;
}

int lx_gw_queue_push(lx_gw_req_t *r, char *msg, size_t cap)
{
    lx_gw_worker_t *w = r->gw;
    lx_queue_t *q = queue_of(r);
    uint64_t now = uv_now(&w->worker.loop);
    lx_queue_node_t *evicted = NULL;
    size_t m = r->plan[r->full_pos].model;
    /* a standing queue (route/codel.h): the fleet is overloaded, not hit by a burst; a request
     * that would wait past the target is refused now (admitted(): at its home, or behind the
     * whole queue); its key is placed first (prefs_of), as a queued request's is */
    uint64_t tag = prefs_of(r, now);
    lx_queue_idle_check(q, now);
    if (!admitted(r, q, m, &tag, now)) {
        lx_queue_shed(q, class_of(r), now);
        snprintf(msg, cap,
                 "every replica of model '%s' is busy and its queue has stood over %llu ms",
                 model_of(r), (unsigned long long)q->codel.target_ms);
        return refuse_push(r, q, now);
    }
    r->qnode.tag = tag;
    if (!lx_queue_push(q, &r->qnode, class_of(r), now, &evicted)) {
        snprintf(msg, cap, "every replica of model '%s' is busy and its queue is full",
                 model_of(r));
        return refuse_push(r, q, now);
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
    if (slot_free(r->gen, m, now))
        lx_gw_queue_slot_freed(w); /* (it queued behind others, or for its full home) */
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

uint32_t lx_gw_row_cap(const lx_gw_health_t *h, const lx_config_provider_t *pv, size_t row)
{
    bool scraped = pv->metrics_path != NULL && h->load != NULL;
    return lx_fleet_cap_of(pv->max_in_flight, scraped,
                           scraped ? lx_load_slot_cap(&h->load[row]) : 0);
}

/* Whether endpoint <row> of <pv> admits one more request: available, and below its
 * max_in_flight on all workers. */
static bool row_free(const lx_gw_health_t *h, const lx_config_provider_t *pv, size_t row,
                     uint64_t now)
{
    if (!lx_health_available(h->table, row, now))
        return false;
    uint32_t cap = lx_gw_row_cap(h, pv, row);
    return cap == 0 || lx_health_in_flight(h->table, row) < (int64_t)cap;
}

/* Whether a replica of model <m> of <g> admits one more request. */
static bool slot_free(const lx_gw_gen_t *g, size_t m, uint64_t now)
{
    const lx_config_t *cfg = g->cfg;
    const lx_gw_health_t *h = g->health;
    for (size_t r = 0; h != NULL && r < cfg->models[m].n_routes; r++) {
        const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[r].provider];
        for (size_t j = 0; j < pv->n_endpoints; j++)
            if (row_free(h, pv, lx_gw_row(h, m, r, j), now))
                return true;
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

/* Which queued requests a free slot on endpoint <ep> of route <route> may take. */
typedef enum fit_mode {
    FIT_HOME,    /* the requests whose home it is */
    FIT_OVERDUE, /* the others that may take it and are overdue (lx_fleet_overdue) against
                    home_waited_ms */
    FIT_ANY,     /* every request that may take it (lx_fleet_may_take) */
} fit_mode_t;

typedef struct fit {
    size_t route;
    unsigned ep;
    uint32_t ring; /* the route's index among all (model_base[m] + route) */
    const lx_fleet_move_t *moves;
    bool home_first; /* the kick's first pass: each replica's own requests (bounded) */
    fit_mode_t mode;
    uint64_t home_waited_ms; /* FIT_OVERDUE: the wait of the replica's oldest own request */
    uint64_t now, step_ms, timeout_ms;
    bool held; /* held_home: no request goes to another replica than its live home */
} fit_t;

/* The position of <r>'s plan entry on route <route> of the model it waits for, or -1 (its
 * plan has none: provider.only, ignore, ...). */
static int entry_of(const lx_gw_req_t *r, size_t route)
{
    lx_plan_entry_t e = r->plan[r->full_pos];
    if (e.route == route)
        return r->full_pos;
    for (size_t i = 0; i < r->n_plan; i++)
        if (r->plan[i].model == e.model && r->plan[i].route == route)
            return (int)i;
    return -1;
}

/* The rank of <f>'s replica in <n>'s preference: 0 its home (by its tag, or its key moved
 * there while it waited), LX_FLEET_PREFS on another route than the one it waits for. */
static unsigned rank_at(const fit_t *f, const lx_queue_node_t *n)
{
    const lx_gw_req_t *r = lx_container_of(n, lx_gw_req_t, qnode);
    if (r->plan[r->full_pos].route != f->route)
        return LX_FLEET_PREFS;
    unsigned rank = lx_fleet_pref_rank(n->tag, f->ep);
    if (rank > 0 && f->moves != NULL &&
        lx_fleet_moved(f->moves, LX_FLEET_MOVES, r->prefix_key, f->ring, f->now) == (int)f->ep)
        rank = 0; /* its key moved here while it waited: this is its home now */
    return rank;
}

/* Whether <n>'s home (by its tag) is a replica of <f>'s route that is available. */
static bool home_live(const fit_t *f, const lx_queue_node_t *n)
{
    const lx_gw_req_t *r = lx_container_of(n, lx_gw_req_t, qnode);
    lx_plan_entry_t e = r->plan[r->full_pos];
    const lx_config_t *cfg = r->gen->cfg;
    size_t home = (size_t)(n->tag & 0xff);
    if (n->tag == LX_FLEET_NO_PREF || e.route != f->route ||
        home >= cfg->providers[cfg->models[e.model].routes[e.route].provider].n_endpoints)
        return false;
    const lx_gw_health_t *h = r->gen->health;
    return lx_health_available(h->table, lx_gw_row(h, e.model, e.route, home), f->now);
}

static uint64_t waited_of(const fit_t *f, const lx_queue_node_t *n)
{
    return f->now > n->enqueued_ms ? f->now - n->enqueued_ms : 0;
}

static bool fits(void *arg, const lx_queue_node_t *n)
{
    const fit_t *f = arg;
    if (entry_of(lx_container_of(n, lx_gw_req_t, qnode), f->route) < 0)
        return false; /* (it would be sent to a route of its plan, which may be full) */
    unsigned rank = rank_at(f, n);
    if (f->mode == FIT_HOME)
        return rank == 0;
    uint64_t waited = waited_of(f, n);
    if (rank > 0 && f->held && home_live(f, n) && waited < f->timeout_ms / 4 * 3)
        return false; /* overloaded: served at its home (admitted for it), unless it waited 3/4
                         of the timeout there (its home stalls) */
    if (!lx_fleet_may_take(rank, waited, f->step_ms, f->timeout_ms))
        return false;
    return f->mode == FIT_ANY ||
           (rank > 0 && lx_fleet_overdue(waited, f->home_waited_ms, f->step_ms));
}

/* Requests of <q> waiting for route <route> whose home (rank 0) is <tag>'s, replica (tag & 0xff)
 * of that route's ring. */
static size_t backlog(const lx_queue_t *q, uint64_t tag, size_t route)
{
    size_t n = 0;
    for (int c = 0; c < LX_QUEUE_N_CLASSES; c++)
        for (const lx_list_t *l = q->fifo[c].next; l != &q->fifo[c]; l = l->next) {
            const lx_queue_node_t *o = lx_list_entry(l, lx_queue_node_t, link);
            const lx_gw_req_t *w = lx_container_of(o, lx_gw_req_t, qnode);
            n += o->tag != LX_FLEET_NO_PREF && (o->tag & 0xff) == (tag & 0xff) &&
                 w->plan[w->full_pos].route == route;
        }
    return n;
}

/* Whether the home of <tag> (a replica of plan entry <e>'s route) still has a full batch of
 * requests waiting for it (as many as its max_in_flight, at least 1) after one of them went
 * elsewhere: overloaded for longer than one slot time, not a moment's queue, so the key moves
 * (a move costs the key's prompt and its conversations' histories once on the new replica). */
static bool overloaded(const lx_gw_gen_t *g, lx_plan_entry_t e, uint64_t tag)
{
    const lx_config_t *cfg = g->cfg;
    const lx_config_provider_t *pv = &cfg->providers[cfg->models[e.model].routes[e.route].provider];
    size_t home = (size_t)(tag & 0xff);
    if (tag == LX_FLEET_NO_PREF || home >= pv->n_endpoints)
        return false;
    uint32_t cap = lx_gw_row_cap(g->health, pv, lx_gw_row(g->health, e.model, e.route, home));
    return backlog(&g->queues[e.model], tag, e.route) >= (cap > 0 ? cap : 1);
}

/* Makes <r>'s plan entry on route <route> the one its resumption starts from (dispatch.c
 * starts from r->full_pos and pins only entry 0): a later entry moves up to r->full_pos (those
 * between follow it, in order), an earlier one becomes r->full_pos. */
static void to_route(lx_gw_req_t *r, size_t route)
{
    int p = entry_of(r, route);
    if (p < 0 || p == r->full_pos)
        return;
    if (p < r->full_pos) {
        r->full_pos = (int16_t)p;
        return;
    }
    lx_plan_entry_t e = r->plan[p];
    memmove(&r->plan[r->full_pos + 1], &r->plan[r->full_pos],
            (size_t)(p - r->full_pos) * sizeof(e));
    r->plan[r->full_pos] = e;
}

/* Starts <r> on the replica <f> found for it: its plan entry on that route first, pinned to
 * that replica when it is entry 0 (dispatch.c applies the pin to the first attempt of entry
 * 0; another entry's fleet choice takes a replica with room, as this one has). Away from its
 * home, its key follows it (route/fleet.h lx_fleet_move) when its home is overloaded. */
static void start_on(lx_gw_worker_t *w, lx_gw_req_t *r, const fit_t *f)
{
    w->n_waiting--;
    lx_gw_gen_t *g = r->gen;
    lx_plan_entry_t e = r->plan[r->full_pos];
    if (e.route == f->route && r->prefix_key != 0 && g->moves != NULL &&
        rank_at(f, &r->qnode) > 0 && overloaded(g, e, r->qnode.tag)) {
        size_t ri = g->health->model_base[e.model] + e.route;
        lx_fleet_move(g->moves, LX_FLEET_MOVES, r->prefix_key, (uint32_t)ri, (int)f->ep,
                      f->now + LX_FLEET_MOVE_TTL_MS);
    }
    to_route(r, f->route);
    r->pin_ep = r->full_pos == 0 ? (int)f->ep : -1;
    lx_api_resume(r); /* (its attempt counts now) */
}

/* The next request for <f>'s replica, taken off <q>, or NULL. The first pass: the oldest
 * whose home it is, unless an older one that may take it is overdue (then none: the slot is
 * left to the second pass, which serves the oldest that may take it, after every other free
 * home had its own). The second pass: the oldest that may take it. */
static lx_queue_node_t *next_for(lx_queue_t *q, fit_t *f)
{
    f->mode = f->home_first ? FIT_HOME : FIT_ANY;
    if (!f->home_first)
        return lx_queue_pop_fit(q, f->now, fits, f);
    lx_queue_node_t *h = lx_queue_peek_fit(q, fits, f);
    if (h == NULL)
        return NULL;
    f->mode = FIT_OVERDUE;
    f->home_waited_ms = waited_of(f, h);
    bool older = lx_queue_peek_fit(q, fits, f) != NULL;
    f->mode = FIT_HOME;
    return older ? NULL : lx_queue_pop_fit(q, f->now, fits, f);
}

/* One pass over the free replicas of model <m>: each takes the requests next_for() gives it,
 * as long as it has room. Returns how many started. */
static size_t serve_pass(lx_gw_worker_t *w, lx_gw_gen_t *g, size_t m, fit_t *f)
{
    const lx_config_t *cfg = g->cfg;
    const lx_gw_health_t *h = g->health;
    lx_queue_t *q = &g->queues[m];
    size_t started = 0;
    for (size_t rt = 0; h != NULL && rt < cfg->models[m].n_routes; rt++) {
        const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[rt].provider];
        f->held = held_home(g, m, rt, f->now);
        for (size_t j = 0; j < pv->n_endpoints && lx_queue_len(q) > 0; j++) {
            f->route = rt;
            f->ep = (unsigned)j;
            f->ring = (uint32_t)(h->model_base[m] + rt);
            while (lx_queue_len(q) > 0 && row_free(h, pv, lx_gw_row(h, m, rt, j), f->now)) {
                lx_queue_node_t *n = next_for(q, f);
                if (n == NULL)
                    break;
                start_on(w, lx_container_of(n, lx_gw_req_t, qnode), f);
                started++;
            }
        }
    }
    return started;
}

/* Expired requests get their 429; then free slots take waiting requests: first each replica
 * the requests whose home it is (oldest first, interactive before batch) while no older
 * request that may take it is overdue (route/fleet.h lx_fleet_overdue), then the oldest that
 * may take it (lx_fleet_may_take: the second replica after routing.affinity_wait, any after
 * twice that), only on a route of its plan. A slot no request may take yet stays free for a
 * request of its own that arrives, or until a wait runs out (the timer looks again within
 * QUEUE_RECHECK_MS). */
static void kick_gen(lx_gw_worker_t *w, lx_gw_gen_t *g, uint64_t now)
{
    for (size_t m = 0; g->queues != NULL && m < g->cfg->n_models; m++) {
        lx_queue_t *q = &g->queues[m];
        if (lx_queue_len(q) == 0)
            continue;
        lx_queue_expire(q, now, on_expired, q);
        fit_t f = {.home_first = true,
                   .moves = g->moves,
                   .now = now,
                   .step_ms = g->cfg->routing_affinity_wait_ms,
                   .timeout_ms = q->timeout_ms};
        while (lx_queue_len(q) > 0 && serve_pass(w, g, m, &f) > 0) {
        }
        f.home_first = false;
        while (lx_queue_len(q) > 0 && serve_pass(w, g, m, &f) > 0) {
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
