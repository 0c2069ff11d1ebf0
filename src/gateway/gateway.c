/*
 * gateway.c - the service lifecycle: bind, start workers, reload, drain, stop.
 *
 *   main thread: lx_gateway_start ─ bind listen fds (SO_REUSEPORT, one per worker per address)
 *                                 └ start worker threads
 *   worker:      on_start: adopt fds, build generation 1 (pools, models list), access log
 *                ─> loop ─> reload message: build the next generation, retire the old one
 *                   (its pools close when its last request ends; the flush timer frees it)
 *                ─> drain message: close listeners, finish in-flight requests; the shutdown
 *                   timer ends what is left (streams get an error event) ─> close all
 */
#include "gateway/gateway.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/status.h"
#include "gateway/gateway_int.h"
#include "llm/models.h"

#define BACKLOG 1024

/* --- the health table ------------------------------------------------------------------------ */

lx_gw_health_t *lx_gw_health_new(const lx_config_t *cfg, unsigned n_shards,
                                 const lx_gw_health_t *previous)
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
    h->table =
        lx_health_new(&opts, keys, n_rows, n_shards, previous != NULL ? previous->table : NULL);
    free(keys);
    h->n_rows = n_rows;
    if (h->table == NULL)
        goto fail;
    return h;
fail:
    free(h->model_base);
    free(h->route_row);
    free(h);
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
    free(h->model_base);
    free(h->route_row);
    free(h);
}

/* --- generations ----------------------------------------------------------------------------- */

/* --- TLS contexts ---------------------------------------------------------------------------- */

static void tls_unref(lx_gw_tls_t *t)
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

static lx_gw_tls_t *tls_ref(lx_gw_tls_t *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

/* Builds the TLS contexts of <cfg> (control thread: start, reload). The files were checked by
 * the configuration load; they are read again here, so a file changed since fails now, with
 * its path. insecure_skip_verify is warned about at every load. NULL and *rc on failure. */
static lx_gw_tls_t *tls_new(const lx_config_t *cfg, int *rc)
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
        tls_unref(t);
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
            tls_unref(t);
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
            tls_unref(t);
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

static void gen_free(lx_gw_worker_t *w, lx_gw_gen_t *g);

static lx_gw_gen_t *gen_new(lx_gw_worker_t *w, lx_config_t *cfg, lx_gw_health_t *health,
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
    atomic_fetch_add_explicit(&w->gw->generations, 1, memory_order_relaxed); /* gen_free's */
    g->health = lx_gw_health_ref(health);
    g->tls = tls_ref(tls);
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
    if (g->pool_base == NULL || g->rr == NULL || g->pools == NULL || g->models_json == NULL) {
        gen_free(w, g); /* (no pool initialised yet: nothing to dispose) */
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

static void gen_dispose(lx_gw_gen_t *g)
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

static void gen_free(lx_gw_worker_t *w, lx_gw_gen_t *g)
{
    atomic_fetch_sub_explicit(&w->gw->generations, 1, memory_order_relaxed);
    free(g->pool_base);
    free(g->rr);
    free(g->pools);
    free(g->models_json);
    free(g->in_flight);
    lx_gw_health_unref(g->health);
    tls_unref(g->tls);
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
    gen_dispose(g);
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
static void sweep_retired(lx_gw_worker_t *w)
{
    lx_gw_gen_t **link = &w->retired;
    while (*link != NULL) {
        lx_gw_gen_t *g = *link;
        if (gen_reachable(w, g)) {
            link = &g->next_retired;
            continue;
        }
        *link = g->next_retired;
        gen_free(w, g);
    }
}

/* --- worker ---------------------------------------------------------------------------------- */

/* Access-log lines are written in batches: every 100 ms, or as soon as the buffer is half
 * full (lx_access_log_reserve), so logging costs no syscall per request at any rate. */
#define ACCESS_LOG_FLUSH_MS 100

static void on_flush(uv_timer_t *h)
{
    lx_gw_worker_t *gw = h->data;
    if (gw->alog != NULL && gw->alog->len > 0)
        lx_access_log_flush(gw->alog);
    gw->ticks++;
    if (gw->retired != NULL)
        sweep_retired(gw);
}

static void finish_stop(lx_gw_worker_t *gw)
{
    if (gw->stopping)
        return;
    gw->stopping = true;
    lx_probe_cancel_all(gw);
    if (gw->gen != NULL) {
        gen_dispose(gw->gen);
        lx_gw_gen_t *g = gw->gen;
        gw->gen = NULL;
        g->next_retired = gw->retired;
        gw->retired = g;
        g->refs--;
    }
    for (lx_gw_gen_t *g = gw->retired; g != NULL; g = g->next_retired)
        gen_dispose(g);
    lx_http_server_dispose(&gw->http);
    if (gw->alog != NULL)
        lx_access_log_flush(gw->alog);
    lx_worker_close_all(&gw->worker);
}

static void on_http_idle(lx_http_server_t *srv)
{
    lx_gw_worker_t *gw = srv->data;
    finish_stop(gw);
}

/* A second after the shutdown timeout, whatever could not be written is cut. */
static void on_shutdown_final(uv_timer_t *t)
{
    lx_gw_worker_t *gw = t->data;
    lx_http_server_close_all(&gw->http);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    lx_gw_worker_t *gw = t->data;
    lx_log(LX_LOG_WARN, "worker %u: shutdown timeout, ending %zu request(s)", gw->worker.id,
           gw->http.n_active);
    /* streams end with an error event, waiting requests with an error answer ... */
    lx_api_cancel_all(gw, LX_ESHUTDOWN);
    /* ... and the connections are closed once those are written */
    lx_http_server_drain(&gw->http);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_final, 1000, 0);
}

static void do_drain(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    (void)arg;
    if (gw->draining || gw->stopping)
        return;
    gw->draining = true;
    for (size_t i = 0; i < gw->n_listeners_open; i++)
        lx_listener_close(&gw->listeners[i], NULL);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_timeout, gw->gen->cfg->shutdown_timeout_ms, 0);
    lx_http_server_drain(&gw->http);
}

static void apply_limits(lx_gw_worker_t *gw, const lx_config_t *cfg)
{
    lx_http_server_limits_t limits = {
        .max_header_size = cfg->max_header_size,
        .max_body_size = cfg->max_body_size,
        .max_body_memory = cfg->max_body_memory,
        .header_timeout_ms = cfg->client_header_timeout_ms,
        .body_timeout_ms = cfg->client_body_timeout_ms,
        .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
    };
    gw->http.limits = limits;
}

/* A reload for one worker: the configuration and its health table (a reference each). */
typedef struct reload_msg {
    lx_config_t *cfg;
    lx_gw_health_t *health;
    lx_gw_tls_t *tls;
    uint64_t serial;
} reload_msg_t;

static void do_reload(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    reload_msg_t *msg = arg;
    bool live = !gw->stopping && gw->gen != NULL;
    lx_gw_gen_t *g = live ? gen_new(gw, msg->cfg, msg->health, msg->tls, msg->serial) : NULL;
    lx_config_unref(msg->cfg);
    lx_gw_health_unref(msg->health);
    tls_unref(msg->tls);
    free(msg);
    if (!live)
        return;
    if (g == NULL) {
        lx_log(LX_LOG_ERROR,
               "worker %u: reload failed: out of memory; keeping the old "
               "configuration",
               w->id);
        return;
    }
    lx_gw_gen_t *old = gw->gen;
    gw->gen = g;
    apply_limits(gw, g->cfg);
    /* new certificates for new connections; open ones keep the context they started with */
    for (size_t i = 0; i < gw->n_listeners_open && i < g->tls->n_servers; i++) {
        /* only a TLS listener takes new certificates: a listener never changes protocol */
        if (gw->listeners[i].tls != NULL && g->tls->servers[i] != NULL)
            lx_listener_set_tls(&gw->listeners[i], g->tls->servers[i]);
    }
    old->next_retired = gw->retired;
    gw->retired = old;
    lx_gw_gen_unref(gw, old);
}

static void on_accept(lx_listener_t *l)
{
    lx_gw_worker_t *gw = l->data;
    int rc = lx_http_server_accept(&gw->http, (uv_stream_t *)&l->tcp);
    if (rc != 0)
        lx_log(LX_LOG_WARN, "worker %u: accept failed: %s", gw->worker.id, lx_strerror(rc));
}

static void on_worker_start(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = arg;
    lx_http_server_limits_t none = {0};
    lx_http_server_init(&gw->http, w, &none);
    apply_limits(gw, gw->gen->cfg);
    gw->http.on_head = lx_api_head;
    gw->http.on_request = lx_api_handle;
    gw->http.on_done = lx_api_done;
    gw->http.format_error = lx_api_format_error;
    gw->http.on_idle = on_http_idle;
    gw->http.data = gw;
    lx_worker_set_busy_poll(w, gw->gen->cfg->busy_poll_us * 1000);
    lx_list_init(&gw->active);
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = uv_hrtime();
    gw->gen_seed = seed;
    gw->rng = seed ^ 0x6a09e667f3bcc909ull;
    lx_list_init(&gw->probes);
    uv_timer_init(&w->loop, &gw->shutdown_timer);
    gw->shutdown_timer.data = gw;
    uv_timer_init(&w->loop, &gw->flush);
    gw->flush.data = gw;
    uv_timer_start(&gw->flush, on_flush, ACCESS_LOG_FLUSH_MS, ACCESS_LOG_FLUSH_MS);
    uv_unref((uv_handle_t *)&gw->flush);
    int rc = 0;
    for (size_t i = 0; i < gw->n_listeners; i++) {
        int fd = gw->listen_fds[i];
        gw->listen_fds[i] = -1;
        if (rc == 0) {
            rc = lx_listener_start(&gw->listeners[i], w, fd, BACKLOG, on_accept);
            if (rc == 0) {
                gw->listeners[i].data = gw;
                lx_listener_set_tls(&gw->listeners[i], gw->gen->tls->servers[i]);
                gw->n_listeners_open++;
            }
        } else {
            close(fd);
        }
    }
    if (rc != 0) {
        lx_log(LX_LOG_ERROR, "worker %u: start failed: %s", w->id, lx_strerror(rc));
        gw->draining = true;
        finish_stop(gw);
    }
}

static void on_worker_stop(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = arg;
    (void)w;
    lx_gateway_t *g = gw->gw;
    if (atomic_fetch_sub(&g->running, 1) == 1 && g->on_stopped != NULL)
        g->on_stopped(g->on_stopped_arg);
}

/* --- gateway --------------------------------------------------------------------------------- */

static int bind_all(lx_gateway_t *g)
{
    const lx_config_t *cfg = g->cfg;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        uint16_t port = cfg->listen[i].port;
        for (unsigned k = 0; k < g->n_workers; k++) {
            int fd;
            int rc = lx_listener_bind(cfg->listen[i].host, &port, BACKLOG, &fd);
            if (rc != 0) {
                lx_log(LX_LOG_ERROR, "cannot listen on %s:%u: %s", cfg->listen[i].host,
                       cfg->listen[i].port, lx_strerror(rc));
                return rc;
            }
            g->workers[k].listen_fds[i] = fd;
        }
        g->ports[i] = port;
    }
    return 0;
}

static void worker_free_state(lx_gw_worker_t *gw)
{
    /* (the loop has ended: no lookup or close callback can reach a generation any more) */
    if (gw->gen != NULL) {
        gen_dispose(gw->gen);
        gen_free(gw, gw->gen);
    }
    while (gw->retired != NULL) {
        lx_gw_gen_t *g = gw->retired;
        gw->retired = g->next_retired;
        gen_free(gw, g);
    }
    free(gw->listeners);
    free(gw->listen_fds);
    free(gw->sessions);
    while (gw->n_req_cache > 0)
        free(gw->req_cache[--gw->n_req_cache]);
    if (gw->alog != NULL) {
        lx_access_log_close(gw->alog);
        free(gw->alog);
    }
}

static void gateway_free(lx_gateway_t *g)
{
    for (unsigned k = 0; k < g->n_workers; k++) {
        lx_gw_worker_t *gw = &g->workers[k];
        for (size_t i = 0; gw->listen_fds != NULL && i < gw->n_listeners; i++)
            if (gw->listen_fds[i] >= 0)
                close(gw->listen_fds[i]);
        worker_free_state(gw);
    }
    free(g->workers);
    free(g->ports);
    lx_gw_health_unref(g->health);
    tls_unref(g->tls);
    lx_config_unref(g->ctl_cfg);
    free(g->probe_state);
    lx_config_unref(g->cfg);
    free(g);
}

/* --- the control thread ---------------------------------------------------------------------- */

static void log_health(void *arg, const char *line)
{
    (void)arg;
    lx_log(LX_LOG_INFO, "%s", line);
}

static void on_ctl_rescore(uv_timer_t *t)
{
    lx_gateway_t *g = t->data;
    lx_health_rescore(g->health->table, uv_now(&g->ctl_loop), log_health, NULL);
}

static void on_ctl_probe(uv_timer_t *t)
{
    lx_gateway_t *g = t->data;
    lx_probe_check(g, uv_now(&g->ctl_loop));
}

/* The control thread's timers and probe state for configuration <cfg> (taking a reference). */
static void ctl_arm(lx_gateway_t *g, lx_config_t *cfg)
{
    lx_config_unref(g->ctl_cfg);
    g->ctl_cfg = lx_config_ref(cfg);
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_providers; i++)
        n += cfg->providers[i].n_endpoints;
    free(g->probe_state);
    g->probe_state = calloc(n + 1, sizeof(*g->probe_state));
    g->n_probe_state = g->probe_state != NULL ? n : 0;
    uint64_t every = cfg->health_rescore_interval_ms;
    uv_timer_start(&g->ctl_rescore, on_ctl_rescore, every, every);
    uint64_t probe = cfg->health_probe_interval_ms;
    if (probe > 0) {
        uint64_t tick = probe / 4 > 100 ? probe / 4 : 100;
        uv_timer_start(&g->ctl_probe, on_ctl_probe, tick, tick);
    } else {
        uv_timer_stop(&g->ctl_probe);
    }
}

/* A configuration's secrets (provider keys, provider header values) go to the log's set before
 * any worker uses it: from then on a provider that echoes one (its key in an echoed request
 * head) is redacted in every log line and error answer. The set ignores values it has. */
static int add_secrets(const lx_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const lx_config_provider_t *pv = &cfg->providers[i];
        int rc;
        if (pv->api_key != NULL && (rc = lx_log_secret_add(pv->api_key, strlen(pv->api_key))) != 0)
            return rc;
        for (size_t j = 0; j < pv->n_headers; j++)
            if ((rc = lx_log_secret_add(pv->headers[j].value, strlen(pv->headers[j].value))) != 0)
                return rc;
    }
    return 0;
}

/* Publishes a new configuration: its health table is made here, carrying over the rows of
 * endpoints that still exist, then each worker builds its generation from both. */
static void ctl_publish(lx_gateway_t *g, lx_config_t *cfg)
{
    if (add_secrets(cfg) != 0) {
        lx_log(LX_LOG_ERROR, "reload failed: out of memory; keeping the old configuration");
        lx_config_unref(cfg);
        return;
    }
    int trc;
    lx_gw_tls_t *tls = tls_new(cfg, &trc);
    if (tls == NULL) {
        lx_log(LX_LOG_ERROR, "reload failed: TLS: %s; keeping the old configuration",
               lx_strerror(trc));
        lx_config_unref(cfg);
        return;
    }
    lx_gw_health_t *h = lx_gw_health_new(cfg, g->n_workers + 1, g->health);
    if (h == NULL) {
        lx_log(LX_LOG_ERROR, "reload failed: out of memory; keeping the old configuration");
        tls_unref(tls);
        lx_config_unref(cfg);
        return;
    }
    lx_gw_health_unref(g->health);
    g->health = h;
    uint64_t serial = ++g->next_serial;
    for (unsigned k = 0; k < g->n_workers; k++) {
        reload_msg_t *msg = malloc(sizeof(*msg));
        if (msg == NULL)
            continue; /* that worker keeps the old configuration */
        *msg = (reload_msg_t){lx_config_ref(cfg), lx_gw_health_ref(h), tls_ref(tls), serial};
        if (lx_worker_post(&g->workers[k].worker, do_reload, msg) != 0) {
            lx_config_unref(msg->cfg);
            lx_gw_health_unref(msg->health);
            tls_unref(msg->tls);
            free(msg);
        }
    }
    tls_unref(tls);
    ctl_arm(g, cfg);
    lx_config_unref(cfg);
}

static void ctl_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_ctl_wakeup(uv_async_t *a)
{
    lx_gateway_t *g = a->data;
    uv_mutex_lock(&g->ctl_lock);
    lx_config_t *cfg = g->ctl_reload;
    g->ctl_reload = NULL;
    bool stop = g->ctl_stop;
    uv_mutex_unlock(&g->ctl_lock);
    if (stop) {
        lx_config_unref(cfg);
        uv_close((uv_handle_t *)&g->ctl_wakeup, ctl_closed);
        uv_close((uv_handle_t *)&g->ctl_rescore, ctl_closed);
        uv_close((uv_handle_t *)&g->ctl_probe, ctl_closed);
        return;
    }
    if (cfg != NULL)
        ctl_publish(g, cfg);
}

static void ctl_main(void *arg)
{
    lx_gateway_t *g = arg;
    uv_run(&g->ctl_loop, UV_RUN_DEFAULT);
}

static int ctl_start(lx_gateway_t *g)
{
    int rc = uv_loop_init(&g->ctl_loop);
    if (rc != 0)
        return rc;
    uv_mutex_init(&g->ctl_lock);
    uv_async_init(&g->ctl_loop, &g->ctl_wakeup, on_ctl_wakeup);
    g->ctl_wakeup.data = g;
    uv_timer_init(&g->ctl_loop, &g->ctl_rescore);
    g->ctl_rescore.data = g;
    uv_timer_init(&g->ctl_loop, &g->ctl_probe);
    g->ctl_probe.data = g;
    ctl_arm(g, g->cfg);
    rc = uv_thread_create(&g->ctl_thread, ctl_main, g);
    if (rc != 0) {
        uv_close((uv_handle_t *)&g->ctl_wakeup, NULL);
        uv_close((uv_handle_t *)&g->ctl_rescore, NULL);
        uv_close((uv_handle_t *)&g->ctl_probe, NULL);
        uv_run(&g->ctl_loop, UV_RUN_DEFAULT);
        uv_loop_close(&g->ctl_loop);
        uv_mutex_destroy(&g->ctl_lock);
    }
    return rc;
}

static void ctl_stop(lx_gateway_t *g)
{
    uv_mutex_lock(&g->ctl_lock);
    g->ctl_stop = true;
    uv_mutex_unlock(&g->ctl_lock);
    uv_async_send(&g->ctl_wakeup);
    uv_thread_join(&g->ctl_thread);
    uv_loop_close(&g->ctl_loop);
    uv_mutex_destroy(&g->ctl_lock);
}

int lx_gateway_start(lx_config_t *cfg, lx_gateway_t **out)
{
    *out = NULL;
    lx_gateway_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return LX_ENOMEM;
    g->cfg = lx_config_ref(cfg);
    g->n_workers = cfg->workers > 0 ? cfg->workers : 1;
    g->workers = calloc(g->n_workers, sizeof(lx_gw_worker_t));
    g->ports = calloc(cfg->n_listen + 1, sizeof(uint16_t));
    /* one shard per worker, and one for the control thread */
    g->health = lx_gw_health_new(cfg, g->n_workers + 1, NULL);
    g->next_serial = 1;
    if (g->workers == NULL || g->ports == NULL || g->health == NULL) {
        gateway_free(g);
        return LX_ENOMEM;
    }
    int rc = add_secrets(cfg);
    if (rc != 0) {
        gateway_free(g);
        return rc;
    }
    g->tls = tls_new(cfg, &rc);
    if (g->tls == NULL) {
        gateway_free(g);
        return rc;
    }
    unsigned inited = 0;
    for (unsigned k = 0; k < g->n_workers && rc == 0; k++) {
        lx_gw_worker_t *gw = &g->workers[k];
        gw->gw = g;
        gw->n_listeners = cfg->n_listen;
        gw->listeners = calloc(cfg->n_listen + 1, sizeof(lx_listener_t));
        gw->listen_fds = malloc((cfg->n_listen + 1) * sizeof(int));
        gw->alog = malloc(sizeof(*gw->alog));
        if (gw->listeners == NULL || gw->listen_fds == NULL || gw->alog == NULL) {
            rc = LX_ENOMEM;
            break;
        }
        for (size_t i = 0; i < cfg->n_listen; i++)
            gw->listen_fds[i] = -1;
        rc = lx_access_log_open(gw->alog, cfg->access_log);
        if (rc != 0) {
            lx_log(LX_LOG_ERROR, "cannot open access log %s: %s", cfg->access_log, lx_strerror(rc));
            free(gw->alog);
            gw->alog = NULL;
            break;
        }
        rc = lx_worker_init(&gw->worker, k);
        if (rc != 0)
            break;
        inited++;
        gw->worker.data = gw;
        gw->worker.on_start = on_worker_start;
        gw->worker.on_stop = on_worker_stop;
        /* pools are per loop: the generation is built here, for the worker's loop */
        gw->gen = gen_new(gw, cfg, g->health, g->tls, g->next_serial);
        if (gw->gen == NULL)
            rc = LX_ENOMEM;
    }
    if (rc == 0)
        rc = bind_all(g);
    if (rc == 0)
        rc = ctl_start(g);
    if (rc != 0) {
        for (unsigned k = 0; k < inited; k++) {
            lx_gw_worker_t *gw = &g->workers[k];
            if (gw->gen != NULL)
                gen_dispose(gw->gen);
            lx_worker_close_all(&gw->worker); /* every handle, or the loop cannot close */
            lx_worker_dispose(&gw->worker);
        }
        gateway_free(g);
        return rc;
    }
    atomic_store(&g->running, g->n_workers);
    for (unsigned k = 0; k < g->n_workers; k++) {
        rc = lx_worker_start(&g->workers[k].worker);
        if (rc != 0) {
            /* threads already running cannot be unwound here: fatal for the process */
            lx_log(LX_LOG_ERROR, "cannot start worker thread: %s", lx_strerror(rc));
            abort();
        }
    }
    *out = g;
    return 0;
}

size_t lx_gateway_generations(const lx_gateway_t *gw)
{
    return atomic_load_explicit(&gw->generations, memory_order_relaxed);
}

uint16_t lx_gateway_port(const lx_gateway_t *gw, size_t i)
{
    return i < gw->cfg->n_listen ? gw->ports[i] : 0;
}

void lx_gateway_on_stopped(lx_gateway_t *gw, void (*cb)(void *arg), void *arg)
{
    gw->on_stopped = cb;
    gw->on_stopped_arg = arg;
}

static bool listen_changed(const lx_config_t *a, const lx_config_t *b)
{
    if (a->n_listen != b->n_listen)
        return true;
    for (size_t i = 0; i < a->n_listen; i++)
        if (a->listen[i].port != b->listen[i].port ||
            strcmp(a->listen[i].host, b->listen[i].host) != 0 ||
            (a->listen[i].tls == NULL) != (b->listen[i].tls == NULL))
            return true; /* (plain to TLS or back on a bound socket needs a restart too) */
    return false;
}

int lx_gateway_reload(lx_gateway_t *g, lx_config_t *cfg)
{
    int rc = 0;
    const lx_config_t *old = g->cfg;
    if (listen_changed(old, cfg) || old->workers != cfg->workers ||
        old->busy_poll_us != cfg->busy_poll_us ||
        (old->access_log == NULL) != (cfg->access_log == NULL) ||
        (old->access_log != NULL && strcmp(old->access_log, cfg->access_log) != 0)) {
        lx_log(LX_LOG_WARN, "reload: changes to listen, workers, busy_poll_us and log.access_log "
                            "take effect at the next restart");
        rc = LX_ECONFIG;
    }
    lx_log_set_level(cfg->log_level);
    /* the control thread makes the health table and posts to the workers */
    uv_mutex_lock(&g->ctl_lock);
    lx_config_t *pending = g->ctl_reload;
    g->ctl_reload = lx_config_ref(cfg);
    uv_mutex_unlock(&g->ctl_lock);
    lx_config_unref(pending); /* superseded before it was applied */
    uv_async_send(&g->ctl_wakeup);
    return rc;
}

void lx_gateway_drain(lx_gateway_t *g)
{
    for (unsigned k = 0; k < g->n_workers; k++)
        lx_worker_post(&g->workers[k].worker, do_drain, NULL);
}

void lx_gateway_wait(lx_gateway_t *g)
{
    for (unsigned k = 0; k < g->n_workers; k++) {
        lx_worker_join(&g->workers[k].worker);
        lx_worker_dispose(&g->workers[k].worker);
    }
    ctl_stop(g);
    gateway_free(g);
}
