/*
 * gen.c - configuration generations and what they are built from: the health table's row
 * mapping (lx_gw_health), the TLS contexts (lx_gw_tls), and one worker's generation (pools,
 * models list, in-flight counts) with its retirement after a reload.
 *
 *   control thread: lx_gw_health_new (rows of the previous table carried over), lx_gw_tls_new
 *   worker:         lx_gw_gen_new ─> current ─> (reload) retired ─> last request ends:
 *                   lx_gw_gen_unref disposes its pools ─> flush timer: lx_gw_gen_sweep frees it
 *                   once nothing reaches it
 */
#include "gateway/gen.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gateway/service.h"
#include "gateway/worker.h"
#include "llm/models.h"
#include "obs/log.h"

/* --- the health table ------------------------------------------------------------------------ */

/* balance fleet: the ring of each route's provider endpoints (two or more), built once per
 * configuration and shared read-only by every worker. False when out of memory. */
static bool build_rings(lx_gw_health_t *h, const lx_config_t *cfg, size_t n_routes)
{
    size_t points = 0;
    for (size_t m = 0; m < cfg->n_models; m++)
        for (size_t r = 0; r < cfg->models[m].n_routes; r++) {
            size_t n = cfg->providers[cfg->models[m].routes[r].provider].n_endpoints;
            points +=
                n >= 2 && n <= LX_RING_MAX_REPLICAS ? lx_ring_points_for(n, LX_RING_VNODES) : 0;
        }
    h->rings = calloc(n_routes + 1, sizeof(*h->rings));
    h->ring_points = calloc(points + 1, sizeof(uint64_t));
    if (h->rings == NULL || h->ring_points == NULL)
        return false;
    size_t k = 0, at = 0;
    for (size_t m = 0; m < cfg->n_models; m++) {
        for (size_t r = 0; r < cfg->models[m].n_routes; r++, k++) {
            const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[r].provider];
            size_t n = pv->n_endpoints;
            if (n < 2 || n > LX_RING_MAX_REPLICAS)
                continue;
            uint64_t ids[LX_RING_MAX_REPLICAS];
            for (size_t j = 0; j < n; j++)
                ids[j] = lx_ring_id(pv->endpoints[j].url, strlen(pv->endpoints[j].url));
            size_t need = lx_ring_points_for(n, LX_RING_VNODES);
            if (lx_ring_build(&h->rings[k], ids, n, LX_RING_VNODES, h->ring_points + at, need) == 0)
                at += need;
        }
    }
    return true;
}

/* The fleet's shared state of a new table: load slots, scrape flags, rings. */
static bool fleet_state(lx_gw_health_t *h, const lx_config_t *cfg, size_t n_routes)
{
    size_t n_ep = 0;
    for (size_t i = 0; i < cfg->n_providers; i++)
        n_ep += cfg->providers[i].n_endpoints;
    h->load = calloc(h->n_rows + 1, sizeof(*h->load));
    h->scraping = calloc(n_ep + 1, sizeof(*h->scraping));
    h->n_endpoints = n_ep;
    if (h->load == NULL || h->scraping == NULL)
        return false;
    if (cfg->routing_balance == LX_CONFIG_BALANCE_FLEET &&
        (h->prefix_est = lx_prefix_est_new(h->n_rows)) == NULL)
        return false;
    for (size_t m = 0; h->prefix_est != NULL && m < cfg->n_models; m++)
        for (size_t r = 0; r < cfg->models[m].n_routes; r++) {
            const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[r].provider];
            uint64_t tokens = pv->prefix_cache_tokens ? pv->prefix_cache_tokens : 262144;
            for (size_t j = 0; j < pv->n_endpoints; j++) /* (about 4 bytes a token) */
                lx_prefix_est_set_cache(h->prefix_est, lx_gw_row(h, m, r, j), 4 * tokens);
        }
    return cfg->routing_balance != LX_CONFIG_BALANCE_FLEET || build_rings(h, cfg, n_routes);
}

static void health_free(lx_gw_health_t *h)
{
    free(h->model_base);
    free(h->route_row);
    free(h->load);
    free(h->scraping);
    free(h->rings);
    free(h->ring_points);
    lx_prefix_est_free(h->prefix_est);
    free(h);
}

/* The learned max_in_flight (route/fleet.h lx_fleet_learn_cap, kept in the load slot) of each
 * row whose (provider, endpoint URL, model) <previous> had, carried over: a reload would
 * otherwise forget it, and until a scrape caught the server queueing again the fleet would
 * count the replica as never full and send it past its batch limit. The scraped figures
 * themselves are not carried (a new table's slots are stale until their first scrape). A
 * scrape of the previous table that ends after this copy is lost: one step of the estimate.
 * Linear search per row: on the control thread, once per reload. */
static void carry_caps(lx_gw_health_t *h, const lx_gw_health_t *previous)
{
    if (previous == NULL || previous->load == NULL || previous->table == NULL)
        return;
    for (size_t row = 0; row < h->n_rows; row++) {
        const lx_health_row_key_t *k = lx_health_row_key(h->table, row);
        size_t old = lx_health_find(previous->table, k->provider, k->endpoint, k->model);
        if (old < previous->n_rows)
            lx_load_slot_set_cap(&h->load[row], lx_load_slot_cap(&previous->load[old]));
    }
}

lx_gw_health_t *lx_gw_health_new(const lx_config_t *cfg, unsigned n_shards,
                                 const lx_gw_health_t *previous, lx_qsbr_t *qsbr)
{
    lx_gw_health_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    atomic_init(&h->refs, 1);
    size_t n_routes = 0, n_rows = 0;
    for (size_t m = 0; m < cfg->n_models; m++)
        n_routes += cfg->models[m].n_routes;
    h->model_base = calloc(cfg->n_models + 1, sizeof(size_t));
    h->route_row = calloc(n_routes + 1, sizeof(size_t));
    if (h->model_base == NULL || h->route_row == NULL)
        goto fail;
    size_t k = 0;
    for (size_t m = 0; m < cfg->n_models; m++) {
        h->model_base[m] = k;
        for (size_t r = 0; r < cfg->models[m].n_routes; r++, k++) {
            h->route_row[k] = n_rows;
            n_rows += cfg->providers[cfg->models[m].routes[r].provider].n_endpoints;
        }
    }
    lx_health_row_key_t *keys = calloc(n_rows + 1, sizeof(*keys));
    if (keys == NULL)
        goto fail;
    for (size_t m = 0; m < cfg->n_models; m++) {
        for (size_t r = 0; r < cfg->models[m].n_routes; r++) {
            const lx_config_provider_t *pv = &cfg->providers[cfg->models[m].routes[r].provider];
            for (size_t j = 0; j < pv->n_endpoints; j++)
                keys[lx_gw_row(h, m, r, j)] =
                    (lx_health_row_key_t){pv->name, pv->endpoints[j].url, cfg->models[m].id};
        }
    }
    lx_health_opts_t opts;
    lx_health_opts_init(&opts);
    opts.window_ms = cfg->health_window_ms;
    opts.rescore_interval_ms = cfg->health_rescore_interval_ms;
    opts.breaker_failures = cfg->health_breaker_failures;
    opts.breaker_cooldown_ms = cfg->health_breaker_cooldown_ms;
    opts.breaker_max_cooldown_ms = cfg->health_breaker_max_cooldown_ms;
    opts.exploration = cfg->health_exploration;
    opts.qsbr = qsbr;
    h->table =
        lx_health_new(&opts, keys, n_rows, n_shards, previous != NULL ? previous->table : NULL);
    free(keys);
    h->n_rows = n_rows;
    if (h->table == NULL)
        goto fail;
    if (!fleet_state(h, cfg, n_routes)) {
        lx_health_free(h->table);
        goto fail;
    }
    carry_caps(h, previous);
    return h;
fail:
    health_free(h);
    return NULL;
}

lx_gw_health_t *lx_gw_health_ref(lx_gw_health_t *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void lx_gw_health_unref(lx_gw_health_t *h)
{
    if (h == NULL || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    lx_health_free(h->table);
    health_free(h);
}

/* --- TLS contexts ---------------------------------------------------------------------------- */

void lx_gw_tls_unref(lx_gw_tls_t *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (size_t i = 0; i < t->n_servers; i++)
        lx_tls_server_unref(t->servers[i]);
    for (size_t i = 0; i < t->n_clients; i++)
        lx_tls_client_unref(t->clients[i]);
    free(t->servers);
    free(t->clients);
    free(t);
}

lx_gw_tls_t *lx_gw_tls_ref(lx_gw_tls_t *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

lx_gw_tls_t *lx_gw_tls_new(const lx_config_t *cfg, int *rc)
{
    char err[512];
    lx_gw_tls_t *t = calloc(1, sizeof(*t));
    *rc = LX_ENOMEM;
    if (t == NULL)
        return NULL;
    atomic_init(&t->refs, 1);
    t->servers = calloc(cfg->n_listen + 1, sizeof(*t->servers));
    t->clients = calloc(cfg->n_providers + 1, sizeof(*t->clients));
    if (t->servers == NULL || t->clients == NULL) {
        lx_gw_tls_unref(t);
        return NULL;
    }
    t->n_servers = cfg->n_listen;
    t->n_clients = cfg->n_providers;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const lx_config_listen_tls_t *lt = cfg->listen[i].tls;
        if (lt == NULL)
            continue;
        lx_tls_cert_pair_t pairs[lt->n_certs];
        for (size_t j = 0; j < lt->n_certs; j++)
            pairs[j] = (lx_tls_cert_pair_t){.cert = lt->certs[j].cert, .key = lt->certs[j].key};
        lx_tls_server_opts_t o = {
            .certs = pairs, .n_certs = lt->n_certs, .min_version = lt->min_version};
        *rc = lx_tls_server_new(&o, err, sizeof(err), &t->servers[i]);
        if (*rc != 0) {
            lx_log(LX_LOG_ERROR, "listen %s:%u: %s", cfg->listen[i].host, cfg->listen[i].port, err);
            lx_gw_tls_unref(t);
            return NULL;
        }
    }
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const lx_config_provider_t *p = &cfg->providers[i];
        bool https = false;
        for (size_t j = 0; j < p->n_endpoints; j++)
            https = https || p->endpoints[j].tls;
        if (!https)
            continue;
        lx_tls_client_opts_t o = {.ca_file = p->tls.ca_file,
                                  .insecure_skip_verify = p->tls.insecure_skip_verify,
                                  .client = {.cert = p->tls.client.cert, .key = p->tls.client.key}};
        *rc = lx_tls_client_new(&o, err, sizeof(err), &t->clients[i]);
        if (*rc != 0) {
            lx_log(LX_LOG_ERROR, "provider %s: %s", p->name, err);
            lx_gw_tls_unref(t);
            return NULL;
        }
        if (p->tls.insecure_skip_verify)
            lx_log(LX_LOG_WARN,
                   "provider %s: tls.insecure_skip_verify is on: its certificates are not "
                   "checked, anyone on the path can read and change its traffic",
                   p->name);
    }
    *rc = 0;
    return t;
}

/* The admission queues of a generation: one per model, ceil(queue_size / workers) each. */
static bool gen_queues(lx_gw_gen_t *g, const lx_config_t *cfg, unsigned n_workers)
{
    if (cfg->routing_queue_size == 0 || cfg->routing_balance != LX_CONFIG_BALANCE_FLEET)
        return true;
    g->queues = calloc(cfg->n_models + 1, sizeof(*g->queues));
    if (g->queues == NULL)
        return false;
    unsigned w = n_workers > 0 ? n_workers : 1;
    size_t cap = (cfg->routing_queue_size + w - 1) / w;
    for (size_t m = 0; m < cfg->n_models; m++) {
        lx_queue_init(&g->queues[m], cap, cfg->routing_queue_timeout_ms, 0);
        lx_queue_set_codel(&g->queues[m], cfg->routing_queue_target_ms,
                           cfg->routing_queue_interval_ms);
    }
    g->moves = calloc(LX_FLEET_MOVES, sizeof(*g->moves));
    return g->moves != NULL;
}

lx_gw_gen_t *lx_gw_gen_new(lx_gw_worker_t *w, lx_config_t *cfg, lx_gw_health_t *health,
                           lx_gw_tls_t *tls, uint64_t serial)
{
    lx_gw_gen_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->refs = 1;
    g->serial = serial;
    g->in_flight = calloc(health->n_rows + 1, sizeof(uint32_t));
    if (g->in_flight == NULL) {
        free(g);
        return NULL;
    }
    atomic_fetch_add_explicit(&w->gw->generations, 1, memory_order_relaxed); /* lx_gw_gen_free's */
    g->health = lx_gw_health_ref(health);
    g->tls = lx_gw_tls_ref(tls);
    g->cfg = lx_config_ref(cfg);
    g->pool_base = calloc(cfg->n_providers + 1, sizeof(size_t));
    g->rr = calloc(cfg->n_providers + 1, sizeof(uint32_t));
    size_t n = 0;
    for (size_t i = 0; g->pool_base != NULL && i < cfg->n_providers; i++) {
        g->pool_base[i] = n;
        n += cfg->providers[i].n_endpoints;
    }
    g->pools = calloc(n + 1, sizeof(lx_conn_pool_t));
    g->models_json = lx_models_format(cfg, &g->models_json_len);
    if (g->pool_base == NULL || g->rr == NULL || g->pools == NULL || g->models_json == NULL ||
        !gen_queues(g, cfg, w->gw->n_workers)) {
        lx_gw_gen_free(w, g); /* (no pool initialised yet: nothing to dispose) */
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const lx_config_provider_t *p = &cfg->providers[i];
        for (size_t j = 0; j < p->n_endpoints; j++) {
            lx_conn_pool_t *pool = &g->pools[g->pool_base[i] + j];
            lx_conn_pool_init(pool, &w->worker, p->endpoints[j].host, p->endpoints[j].port,
                              p->max_connections);
            pool->max_idle = p->max_idle_connections;
            uint64_t idle = p->idle_timeout_ms ? p->idle_timeout_ms : cfg->upstream_idle_timeout_ms;
            /* a pooled connection is kept well under the servers' usual keep-alive time */
            pool->idle_timeout_ms = idle < 30000 ? idle : 30000;
            if (p->endpoints[j].tls && tls->clients[i] != NULL) {
                lx_conn_pool_set_tls(pool, tls->clients[i], p->tls.server_name);
                /* bounds a handshake nobody waits for any more (the request's own connect
                 * timeout runs meanwhile) */
                pool->handshake_timeout_ms = p->connect_timeout_ms
                                                 ? p->connect_timeout_ms
                                                 : cfg->upstream_connect_timeout_ms;
            }
        }
    }
    g->n_pools = n;
    return g;
}

void lx_gw_gen_dispose(lx_gw_gen_t *g)
{
    if (g->disposed)
        return;
    g->disposed = true;
    for (size_t i = 0; i < g->n_pools; i++)
        lx_conn_pool_dispose(&g->pools[i]);
    /* no request uses the generation any more: its health table may go (if not current) */
    lx_gw_health_unref(g->health);
    g->health = NULL;
}

void lx_gw_gen_free(lx_gw_worker_t *w, lx_gw_gen_t *g)
{
    atomic_fetch_sub_explicit(&w->gw->generations, 1, memory_order_relaxed);
    free(g->pool_base);
    free(g->rr);
    free(g->pools);
    free(g->models_json);
    free(g->in_flight);
    free(g->queues);
    free(g->moves);
    lx_gw_health_unref(g->health);
    lx_gw_tls_unref(g->tls);
    lx_config_unref(g->cfg);
    free(g);
}

lx_gw_gen_t *lx_gw_gen_ref(lx_gw_gen_t *g)
{
    g->refs++;
    return g;
}

void lx_gw_gen_unref(lx_gw_worker_t *w, lx_gw_gen_t *g)
{
    if (--g->refs > 0)
        return;
    /* (only a retired generation gets here while the worker runs: the worker holds the
     * current one) its idle upstream connections close now; the sweep frees the rest */
    lx_gw_gen_dispose(g);
    g->disposed_tick = w->ticks;
}

/* Whether a disposed generation's memory may still be reached: a DNS lookup of one of its
 * pools is still out (uv_cancel cannot stop one that is running, and its callback writes to
 * the pool), or its pools were disposed less than two sweep ticks ago (a connection the
 * dispose closed keeps its TLS handshake timer, which may still fire into the pool, until its
 * close callback runs in the next loop turn; two ticks of the flush timer span at least one
 * whole turn). */
static bool gen_reachable(const lx_gw_worker_t *w, const lx_gw_gen_t *g)
{
    if (g->refs > 0 || w->ticks - g->disposed_tick < 2)
        return true;
    for (size_t i = 0; i < g->n_pools; i++)
        if (g->pools[i].resolving)
            return true;
    return false;
}

/* Frees the retired generations nothing reaches any more (from the flush timer). */
void lx_gw_gen_sweep(lx_gw_worker_t *w)
{
    lx_gw_gen_t **link = &w->retired;
    while (*link != NULL) {
        lx_gw_gen_t *g = *link;
        if (gen_reachable(w, g)) {
            link = &g->next_retired;
            continue;
        }
        *link = g->next_retired;
        lx_gw_gen_free(w, g);
    }
}
