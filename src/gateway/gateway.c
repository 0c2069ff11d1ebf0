/*
 * gateway.c - the service lifecycle: bind, start workers, drain, stop.
 *
 *   main thread: lx_gateway_start ─ bind listen fds (SO_REUSEPORT, one per worker per address)
 *                                 └ start worker threads
 *   worker:      on_start: adopt fds, pools, access log ─> loop ─> on drain: close listeners,
 *                http drain (finish in-flight) ─ shutdown timer cuts the rest ─> close all
 */
#include "gateway/gateway.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "gateway/gateway_int.h"
#include "gateway/models.h"

#define BACKLOG 1024

static void worker_free_state(lx_gw_worker_t *gw)
{
    free(gw->listeners);
    free(gw->listen_fds);
    free(gw->pools);
    free(gw->pool_base);
    free(gw->rr);
    free(gw->models_json);
    if (gw->alog != NULL) {
        lx_access_log_close(gw->alog);
        free(gw->alog);
    }
    lx_config_unref(gw->cfg);
}

static void on_flush(uv_check_t *h)
{
    lx_gw_worker_t *gw = h->data;
    if (gw->alog != NULL && gw->alog->len > 0)
        lx_access_log_flush(gw->alog);
}

static void finish_stop(lx_gw_worker_t *gw)
{
    if (gw->stopping)
        return;
    gw->stopping = true;
    for (size_t i = 0; i < gw->n_pools; i++)
        lx_conn_pool_dispose(&gw->pools[i]);
    if (gw->alog != NULL)
        lx_access_log_flush(gw->alog);
    lx_worker_close_all(&gw->worker);
}

static void on_http_idle(lx_http_server_t *srv)
{
    lx_gw_worker_t *gw = srv->data;
    finish_stop(gw);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    lx_gw_worker_t *gw = t->data;
    lx_log(LX_LOG_WARN, "worker %u: shutdown timeout, cutting %zu connection(s)", gw->worker.id,
           gw->http.n_conns);
    lx_http_server_close_all(&gw->http);
    /* the connections free in their close callbacks; on_idle then stops the worker */
}

static void do_drain(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    (void)arg;
    if (gw->draining)
        return;
    gw->draining = true;
    for (size_t i = 0; i < gw->n_listeners_open; i++)
        lx_listener_close(&gw->listeners[i], NULL);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_timeout, gw->cfg->shutdown_timeout_ms, 0);
    lx_http_server_drain(&gw->http);
}

static void on_accept(lx_listener_t *l)
{
    lx_gw_worker_t *gw = l->data;
    int rc = lx_http_server_accept(&gw->http, (uv_stream_t *)&l->tcp);
    if (rc != 0)
        lx_log(LX_LOG_WARN, "worker %u: accept failed: %s", gw->worker.id, lx_strerror(rc));
}

static int setup_pools(lx_gw_worker_t *gw)
{
    const lx_config_t *cfg = gw->cfg;
    gw->pool_base = calloc(cfg->n_providers + 1, sizeof(size_t));
    gw->rr = calloc(cfg->n_providers + 1, sizeof(uint32_t));
    if (gw->pool_base == NULL || gw->rr == NULL)
        return LX_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        gw->pool_base[i] = n;
        n += cfg->providers[i].n_endpoints;
    }
    gw->pools = calloc(n + 1, sizeof(lx_conn_pool_t));
    if (gw->pools == NULL)
        return LX_ENOMEM;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const lx_config_provider_t *p = &cfg->providers[i];
        for (size_t j = 0; j < p->n_endpoints; j++) {
            lx_conn_pool_t *pool = &gw->pools[gw->pool_base[i] + j];
            lx_conn_pool_init(pool, &gw->worker, p->endpoints[j].host, p->endpoints[j].port,
                              p->max_connections);
            uint64_t idle = p->idle_timeout_ms ? p->idle_timeout_ms : cfg->upstream_idle_timeout_ms;
            /* a pooled connection is kept well under the servers' usual keep-alive time */
            pool->idle_timeout_ms = idle < 30000 ? idle : 30000;
        }
    }
    gw->n_pools = n;
    return 0;
}

static void on_worker_start(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = arg;
    const lx_config_t *cfg = gw->cfg;
    lx_http_server_limits_t limits = {
        .max_header_size = cfg->max_header_size,
        .max_body_size = cfg->max_body_size,
        .header_timeout_ms = cfg->client_header_timeout_ms,
        .body_timeout_ms = cfg->client_body_timeout_ms,
        .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
    };
    lx_http_server_init(&gw->http, w, &limits);
    gw->http.on_request = lx_api_handle;
    gw->http.on_done = lx_api_done;
    gw->http.format_error = lx_api_format_error;
    gw->http.on_idle = on_http_idle;
    gw->http.data = gw;
    uv_timer_init(&w->loop, &gw->shutdown_timer);
    gw->shutdown_timer.data = gw;
    uv_check_init(&w->loop, &gw->flush);
    gw->flush.data = gw;
    uv_check_start(&gw->flush, on_flush);
    uv_unref((uv_handle_t *)&gw->flush);
    int rc = setup_pools(gw);
    for (size_t i = 0; i < gw->n_listeners; i++) {
        int fd = gw->listen_fds[i];
        gw->listen_fds[i] = -1;
        if (rc == 0) {
            rc = lx_listener_start(&gw->listeners[i], w, fd, BACKLOG, on_accept);
            if (rc == 0) {
                gw->listeners[i].data = gw;
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
    lx_config_unref(g->cfg);
    free(g);
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
    if (g->workers == NULL || g->ports == NULL) {
        gateway_free(g);
        return LX_ENOMEM;
    }
    int rc = 0;
    for (unsigned k = 0; k < g->n_workers && rc == 0; k++) {
        lx_gw_worker_t *gw = &g->workers[k];
        gw->gw = g;
        gw->cfg = lx_config_ref(cfg);
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
        gw->models_json = lx_models_format(cfg, &gw->models_json_len);
        if (gw->models_json == NULL)
            rc = LX_ENOMEM;
    }
    if (rc == 0)
        rc = bind_all(g);
    unsigned started = 0;
    for (unsigned k = 0; k < g->n_workers && rc == 0; k++) {
        lx_gw_worker_t *gw = &g->workers[k];
        rc = lx_worker_init(&gw->worker, k);
        if (rc != 0)
            break;
        gw->worker.data = gw;
        gw->worker.on_start = on_worker_start;
        gw->worker.on_stop = on_worker_stop;
        started++;
    }
    if (rc != 0) {
        for (unsigned k = 0; k < started; k++) {
            uv_close((uv_handle_t *)&g->workers[k].worker.wakeup, NULL);
            lx_worker_dispose(&g->workers[k].worker);
        }
        gateway_free(g);
        return rc;
    }
    atomic_store(&g->running, g->n_workers);
    for (unsigned k = 0; k < g->n_workers; k++) {
        rc = lx_worker_start(&g->workers[k].worker);
        if (rc != 0) {
            /* cannot undo running threads cleanly: treat as fatal for the process */
            lx_log(LX_LOG_ERROR, "cannot start worker thread: %s", lx_strerror(rc));
            abort();
        }
    }
    *out = g;
    return 0;
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
    gateway_free(g);
}
