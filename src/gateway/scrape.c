/*
 * scrape.c - the model servers' load signals: every routing.scrape_interval, `GET <metrics>`
 * (the provider's `metrics` path) on each of its endpoints, read with lx_load_metrics_parse
 * once per health row of the endpoint (the row's upstream model name is the filter), and
 * published into the row's lx_load_slot_t, which workers read without a lock
 * (route/load_slot.h) when routing.balance is fleet and /admin/health shows.
 *
 *   control thread: lx_scrape_check (its timer) ─ per endpoint with a metrics path whose
 *                   previous scrape is over (h->scraping[k] was false): post to a worker, in
 *                   turn
 *   worker:         scrape_run ─ lx_upstream (the generation's pool of the endpoint ─> GET
 *                   ─> body, at most SCRAPE_MAX_BODY bytes kept) ─> parse and publish per
 *                   row ─> h->scraping[k] = false (release)
 *
 * Why the exchange runs on a worker (as probes do): the upstream client reads and writes
 * through a connection pool, and pools live on a worker's loop (its chunk pool, TLS sessions);
 * the control loop has none. The control thread owns the timing, the workers only run the
 * exchange when a message asks, never on a request's path.
 *
 * Bounds: one scrape in flight per endpoint (the flag), each within max(1 s, 3 intervals)
 * including the connect (a slow or dead endpoint holds its own flag only: the others are
 * scraped on time, and its slot ages into "stale"); the body kept is at most SCRAPE_MAX_BODY
 * (the rest is read and dropped; the parser ignores the cut last line).
 *
 * Each publish also folds the page into the row's learned max_in_flight (route/fleet.h
 * lx_fleet_learn_cap; kept in the slot, one writer as the rest of it), which the fleet choice
 * and the admission queue use for a provider with `metrics` and no `max_in_flight`.
 */
#include "gateway/scrape.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "gateway/gen.h"
#include "gateway/probe.h"
#include "gateway/worker.h"
#include "proxy/upstream.h"
#include "route/fleet.h"
#include "route/load_metrics.h"
#include "route/load_slot.h"

#define SCRAPE_MAX_BODY (1u << 20) /* bytes of a metrics page kept */
#define SCRAPE_MIN_MS   1000       /* a scrape's deadline: at least this, or 3 intervals */

typedef struct scrape {
    lx_upstream_t up; /* first: the client's ops get the scrape back from it */
    lx_list_t link;   /* in the worker's scrapes */
    lx_gw_worker_t *gw;
    lx_gw_gen_t *gen; /* a reference */
    size_t provider, ep, k;
    char *body;
    size_t len, cap;
} scrape_t;

typedef struct scrape_msg {
    lx_gw_health_t *health; /* the table of the configuration the control thread scrapes */
    size_t provider, ep, k; /* k: the endpoint's index into health->scraping */
} scrape_msg_t;

static void scrape_over(lx_gw_health_t *h, size_t k)
{
    atomic_store_explicit(&h->scraping[k], false, memory_order_release);
}

static int on_scrape_body(lx_upstream_t *up, lx_buf_t *b, const char *at, size_t len)
{
    (void)b;
    scrape_t *s = (scrape_t *)up;
    size_t room = SCRAPE_MAX_BODY - s->len;
    len = LX_MIN(len, room);
    if (len == 0)
        return 0; /* over the bound: the rest is dropped */
    if (s->len + len > s->cap) {
        size_t cap = LX_MAX(s->cap * 2, (size_t)16384);
        while (cap < s->len + len)
            cap *= 2;
        char *p = realloc(s->body, LX_MIN(cap, (size_t)SCRAPE_MAX_BODY));
        if (p == NULL)
            return LX_ENOMEM;
        s->body = p;
        s->cap = LX_MIN(cap, (size_t)SCRAPE_MAX_BODY);
    }
    memcpy(s->body + s->len, at, len);
    s->len += len;
    return 0;
}

/* A page read: each row of the endpoint gets its model's signals. */
static void publish(scrape_t *s, uint64_t now)
{
    const lx_config_t *cfg = s->gen->cfg;
    lx_gw_health_t *h = s->gen->health;
    for (size_t m = 0; m < cfg->n_models; m++) {
        const lx_config_model_t *model = &cfg->models[m];
        for (size_t r = 0; r < model->n_routes; r++) {
            const lx_config_route_t *rt = &model->routes[r];
            if (rt->provider != s->provider)
                continue;
            const char *name = rt->upstream_model != NULL ? rt->upstream_model : model->id;
            lx_load_sample_t sample;
            if (lx_load_metrics_parse(s->body, s->len, name, strlen(name), &sample) != LX_LOAD_OK)
                return; /* not a metrics page: the slots age into stale */
            lx_load_slot_t *slot = &h->load[lx_gw_row(h, m, r, s->ep)];
            lx_load_slot_publish(slot, &sample, now);
            bool both =
                (sample.flags & LX_LOAD_HAS_WAITING) && (sample.flags & LX_LOAD_HAS_RUNNING);
            lx_load_slot_set_cap(slot, lx_fleet_learn_cap(lx_load_slot_cap(slot), both,
                                                          sample.waiting, sample.running));
        }
    }
}

static void on_scrape_done(lx_upstream_t *up, int code)
{
    scrape_t *s = (scrape_t *)up;
    lx_list_remove(&s->link);
    if (code == 0 && up->hc.status == 200)
        publish(s, uv_now(&s->gw->worker.loop));
    scrape_over(s->gen->health, s->k);
}

static void on_scrape_free(lx_upstream_t *up)
{
    scrape_t *s = (scrape_t *)up;
    lx_gw_gen_unref(s->gw, s->gen);
    free(s->body);
    free(s);
}

static const lx_upstream_ops_t scrape_ops = {
    .on_body = on_scrape_body, .on_done = on_scrape_done, .on_free = on_scrape_free};

/* Starts one scrape on this worker's generation (which uses msg->health). False when it could
 * not start (the caller clears the flag). */
static bool scrape_run(lx_gw_worker_t *gw, const scrape_msg_t *msg)
{
    lx_gw_gen_t *gen = gw->gen;
    const lx_config_t *cfg = gen->cfg;
    const lx_config_provider_t *pv = &cfg->providers[msg->provider];
    scrape_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return false;
    lx_buf_t *head = lx_probe_request(gw, pv, &pv->endpoints[msg->ep], pv->metrics_path);
    if (head == NULL) {
        free(s);
        return false;
    }
    *s = (scrape_t){
        .gw = gw, .gen = lx_gw_gen_ref(gen), .provider = msg->provider, .ep = msg->ep, .k = msg->k};
    lx_upstream_t *up = &s->up;
    up->pool = &gen->pools[gen->pool_base[msg->provider] + msg->ep];
    up->ops = &scrape_ops;
    up->out[0] = (lx_slice_t){head, 0, head->len}; /* the pool's reference, handed over */
    up->n_out = 1;
    uint64_t connect =
        pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
    uint64_t within = LX_MAX((uint64_t)SCRAPE_MIN_MS, 3 * cfg->routing_scrape_interval_ms);
    up->connect_timeout_ms = LX_MIN(connect, within);
    up->deadline_ms = uv_now(&gw->worker.loop) + within;
    lx_list_insert_tail(&gw->scrapes, &s->link);
    lx_upstream_start(up);
    return true;
}

static void do_scrape(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    scrape_msg_t *msg = arg;
    /* a reload in between: the control thread scrapes for the next table */
    bool run = !gw->draining && !gw->stopping && gw->gen != NULL && gw->gen->health == msg->health;
    if (!run || !scrape_run(gw, msg))
        scrape_over(msg->health, msg->k);
    lx_gw_health_unref(msg->health);
    free(msg);
}

void lx_scrape_cancel_all(lx_gw_worker_t *gw)
{
    while (!lx_list_is_empty(&gw->scrapes)) {
        scrape_t *s = lx_container_of(gw->scrapes.next, scrape_t, link);
        lx_upstream_cancel(&s->up); /* (its on_done unlinks it) */
    }
}

bool lx_scrape_wanted(const lx_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].metrics_path != NULL)
            return true;
    return false;
}

void lx_scrape_check(lx_gateway_t *g)
{
    const lx_config_t *cfg = g->ctl_cfg;
    lx_gw_health_t *h = g->health;
    size_t k = 0;
    for (size_t pi = 0; pi < cfg->n_providers; pi++) {
        const lx_config_provider_t *pv = &cfg->providers[pi];
        for (size_t j = 0; j < pv->n_endpoints; j++, k++) {
            if (pv->metrics_path == NULL || k >= h->n_endpoints)
                continue;
            /* the previous scrape of this endpoint is still out: it alone waits */
            if (atomic_exchange_explicit(&h->scraping[k], true, memory_order_acq_rel))
                continue;
            scrape_msg_t *msg = malloc(sizeof(*msg));
            if (msg == NULL) {
                scrape_over(h, k);
                return;
            }
            *msg = (scrape_msg_t){lx_gw_health_ref(h), pi, j, k};
            lx_gw_worker_t *w = &g->workers[g->next_scrape_worker++ % g->n_workers];
            if (lx_worker_post(&w->worker, do_scrape, msg) != 0) {
                scrape_over(h, k);
                lx_gw_health_unref(msg->health);
                free(msg);
            }
        }
    }
}
