/*
 * worker.c - one worker thread: its start (listeners, HTTP server wired to api.c, timers), the
 * flush timer (access log, retired generations), reload (the next generation), drain and stop.
 *
 *   on_start: adopt fds, HTTP server hooks (api.c), flush timer, listeners
 *   ─> loop ─> reload message: build the next generation, retire the old one (its pools close
 *      when its last request ends; the flush timer frees it)
 *   ─> drain message: close listeners, finish in-flight requests; the shutdown timer ends what
 *      is left (streams get an error event) ─> close all
 */
#include "gateway/worker.h"

#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/status.h"
#include "gateway/api.h"
#include "gateway/fleet_queue.h"
#include "gateway/probe.h"
#include "gateway/scrape.h"
#include "gateway/service.h"

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
        lx_gw_gen_sweep(gw);
}

static void finish_stop(lx_gw_worker_t *gw)
{
    if (gw->stopping)
        return;
    gw->stopping = true;
    lx_probe_cancel_all(gw);
    lx_scrape_cancel_all(gw);
    if (gw->gen != NULL) {
        lx_gw_gen_dispose(gw->gen);
        lx_gw_gen_t *g = gw->gen;
        gw->gen = NULL;
        g->next_retired = gw->retired;
        gw->retired = g;
        g->refs--;
    }
    for (lx_gw_gen_t *g = gw->retired; g != NULL; g = g->next_retired)
        lx_gw_gen_dispose(g);
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
    lx_gw_queue_stop(gw);
    /* ... and the connections are closed once those are written */
    lx_http_server_drain(&gw->http);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_final, 1000, 0);
}

void lx_gw_worker_drain(lx_worker_t *w, void *arg)
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

void lx_gw_worker_reload(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    lx_gw_reload_msg_t *msg = arg;
    bool live = !gw->stopping && gw->gen != NULL;
    lx_gw_gen_t *g = live ? lx_gw_gen_new(gw, msg->cfg, msg->health, msg->tls, msg->serial) : NULL;
    lx_config_unref(msg->cfg);
    lx_gw_health_unref(msg->health);
    lx_gw_tls_unref(msg->tls);
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

void lx_gw_worker_on_start(lx_worker_t *w, void *arg)
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
    gw->gen_tick = lx_store_seq_floor(gw->gw->store);
    gw->rec_pool.lane = w->id;
    gw->rng = seed ^ 0x6a09e667f3bcc909ull;
    lx_list_init(&gw->probes);
    lx_list_init(&gw->scrapes);
    uv_timer_init(&w->loop, &gw->shutdown_timer);
    gw->shutdown_timer.data = gw;
    uv_timer_init(&w->loop, &gw->queue_timer);
    gw->queue_timer.data = gw;
    uv_timer_init(&w->loop, &gw->flush);
    gw->flush.data = gw;
    uv_timer_start(&gw->flush, on_flush, ACCESS_LOG_FLUSH_MS, ACCESS_LOG_FLUSH_MS);
    uv_unref((uv_handle_t *)&gw->flush);
    int rc = 0;
    for (size_t i = 0; i < gw->n_listeners; i++) {
        int fd = gw->listen_fds[i];
        gw->listen_fds[i] = -1;
        if (rc == 0) {
            rc = lx_listener_start(&gw->listeners[i], w, fd, LX_GW_BACKLOG, on_accept);
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

void lx_gw_worker_on_stop(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = arg;
    (void)w;
    lx_gateway_t *g = gw->gw;
    if (atomic_fetch_sub(&g->running, 1) == 1 && g->on_stopped != NULL)
        g->on_stopped(g->on_stopped_arg);
}

void lx_gw_worker_keys(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    lx_keyset_t *ks = arg;
    if (gw->keys != NULL && gw->keys->version >= ks->version) {
        lx_keyset_unref(ks);
        return;
    }
    lx_keyset_unref(gw->keys);
    gw->keys = ks;
}

void lx_gw_worker_free_state(lx_gw_worker_t *gw)
{
    lx_keyset_unref(gw->keys);
    gw->keys = NULL;
    /* (the loop has ended: no lookup or close callback can reach a generation any more) */
    if (gw->gen != NULL) {
        lx_gw_gen_dispose(gw->gen);
        lx_gw_gen_free(gw, gw->gen);
    }
    while (gw->retired != NULL) {
        lx_gw_gen_t *g = gw->retired;
        gw->retired = g->next_retired;
        lx_gw_gen_free(gw, g);
    }
    free(gw->listeners);
    free(gw->listen_fds);
    lx_sessions_free(&gw->sessions);
    lx_record_pool_dispose(&gw->rec_pool);
    while (gw->n_req_cache > 0)
        free(gw->req_cache[--gw->n_req_cache]);
    if (gw->alog != NULL) {
        lx_access_log_close(gw->alog);
        free(gw->alog);
    }
    explicit_bzero(&gw->auth_cache, sizeof(gw->auth_cache)); /* (keys: see auth.h) */
}

int lx_gw_worker_init(lx_gw_worker_t *gw, struct lx_gateway *g, unsigned k, bool *loop_inited)
{
    const lx_config_t *cfg = g->cfg;
    *loop_inited = false;
    gw->gw = g;
    gw->n_listeners = cfg->n_listen;
    gw->listeners = calloc(cfg->n_listen + 1, sizeof(lx_listener_t));
    gw->listen_fds = malloc((cfg->n_listen + 1) * sizeof(int));
    gw->alog = malloc(sizeof(*gw->alog));
    if (gw->listeners == NULL || gw->listen_fds == NULL || gw->alog == NULL)
        return LX_ENOMEM;
    for (size_t i = 0; i < cfg->n_listen; i++)
        gw->listen_fds[i] = -1;
    int rc = lx_access_log_open(gw->alog, cfg->access_log);
    if (rc != 0) {
        lx_log(LX_LOG_ERROR, "cannot open access log %s: %s", cfg->access_log, lx_strerror(rc));
        free(gw->alog);
        gw->alog = NULL;
        return rc;
    }
    rc = lx_worker_init(&gw->worker, k);
    if (rc != 0)
        return rc;
    *loop_inited = true;
    gw->worker.data = gw;
    gw->worker.qsbr = g->qsbr; /* a quiescent point per loop turn (net/worker.c) */
    gw->worker.on_start = lx_gw_worker_on_start;
    gw->worker.on_stop = lx_gw_worker_on_stop;
    /* pools are per loop: the generation is built here, for the worker's loop */
    gw->gen = lx_gw_gen_new(gw, g->cfg, g->health, g->tls, g->next_serial);
    return gw->gen == NULL ? LX_ENOMEM : 0;
}
