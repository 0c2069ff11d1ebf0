/*
 * gateway.c - the service: start (bind, workers, control thread), reload, drain, stop.
 *
 *   main thread: lx_gateway_start ─ bind listen fds (SO_REUSEPORT, one per worker per address)
 *                                 ├ generation 1 per worker (gen.c), control thread (control.c)
 *                                 └ start worker threads (worker.c)
 *   lx_gateway_reload ─> the control thread publishes ─> workers build their next generation
 *   lx_gateway_drain  ─> every worker drains ─> lx_gateway_wait joins them and frees all
 */
#include "gateway/gateway.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "gateway/control.h"
#include "gateway/gen.h"
#include "gateway/service.h"
#include "gateway/worker.h"

static int bind_all(lx_gateway_t *g)
{
    const lx_config_t *cfg = g->cfg;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        uint16_t port = cfg->listen[i].port;
        for (unsigned k = 0; k < g->n_workers; k++) {
            int fd;
            int rc = lx_listener_bind(cfg->listen[i].host, &port, LX_GW_BACKLOG, &fd);
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

/* Store thread: a new snapshot of the stored keys for every worker. */
static void on_keys(lx_keyset_t *ks, void *arg)
{
    lx_gateway_t *g = arg;
    for (unsigned k = 0; k < g->n_workers; k++) {
        lx_keyset_t *r = lx_keyset_ref(ks);
        if (lx_worker_post(&g->workers[k].worker, lx_gw_worker_keys, r) != 0)
            lx_keyset_unref(r); /* (a worker that stopped takes nothing any more) */
    }
    lx_keyset_unref(ks);
}

static int store_open(lx_gateway_t *g)
{
    const lx_config_t *cfg = g->cfg;
    lx_store_opts_t o = {
        .path = cfg->store_path,
        .commit_interval_ms = cfg->store_commit_interval_ms,
        .retention_s = cfg->store_retention_s,
        .exclusive = true,
        .on_keys = on_keys,
        .arg = g,
    };
    char err[512];
    int rc = lx_store_open(&o, &g->store, err, sizeof(err));
    if (rc != 0)
        lx_log(LX_LOG_ERROR, "store: %s", err);
    return rc;
}

/* Starts the store thread, and gives every worker the first snapshot before it runs. */
static int store_start(lx_gateway_t *g)
{
    int rc = lx_store_start(g->store);
    if (rc != 0) {
        lx_log(LX_LOG_ERROR, "store: cannot start its thread: %s", lx_strerror(rc));
        return rc;
    }
    for (unsigned k = 0; k < g->n_workers; k++)
        if (g->workers[k].keys == NULL)
            g->workers[k].keys = lx_store_keys(g->store);
    return 0;
}

static void gateway_free(lx_gateway_t *g)
{
    /* (every worker has ended: no record or job comes any more; what is queued is written) */
    lx_store_close(g->store);
    for (unsigned k = 0; k < g->n_workers; k++) {
        lx_gw_worker_t *gw = &g->workers[k];
        for (size_t i = 0; gw->listen_fds != NULL && i < gw->n_listeners; i++)
            if (gw->listen_fds[i] >= 0)
                close(gw->listen_fds[i]);
        lx_gw_worker_free_state(gw);
    }
    free(g->workers);
    free(g->ports);
    lx_gw_health_unref(g->health);
    lx_gw_tls_unref(g->tls);
    lx_config_unref(g->ctl_cfg);
    free(g->probe_state);
    lx_config_unref(g->cfg);
    lx_qsbr_free(g->qsbr); /* (after the tables: the control thread has stopped) */
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
    /* every worker reads the health table's scores: one reader each */
    g->qsbr = lx_qsbr_new(g->n_workers);
    /* one shard per worker, and one for the control thread */
    g->health = g->qsbr != NULL ? lx_gw_health_new(cfg, g->n_workers + 1, NULL, g->qsbr) : NULL;
    g->next_serial = 1;
    if (g->workers == NULL || g->ports == NULL || g->health == NULL) {
        gateway_free(g);
        return LX_ENOMEM;
    }
    int rc = lx_gw_add_secrets(cfg);
    if (rc != 0) {
        gateway_free(g);
        return rc;
    }
    g->tls = lx_gw_tls_new(cfg, &rc);
    if (g->tls == NULL) {
        gateway_free(g);
        return rc;
    }
    rc = store_open(g);
    if (rc != 0) {
        gateway_free(g);
        return rc;
    }
    unsigned inited = 0;
    for (unsigned k = 0; k < g->n_workers && rc == 0; k++) {
        bool loop = false;
        rc = lx_gw_worker_init(&g->workers[k], g, k, &loop);
        inited += loop;
    }
    if (rc == 0)
        rc = bind_all(g);
    if (rc == 0)
        rc = store_start(g);
    if (rc == 0)
        rc = lx_gw_ctl_start(g);
    if (rc != 0) {
        lx_store_stop(g->store);
        for (unsigned k = 0; k < inited; k++) {
            lx_gw_worker_t *gw = &g->workers[k];
            if (gw->gen != NULL)
                lx_gw_gen_dispose(gw->gen);
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
    if (strcmp(old->store_path, cfg->store_path) != 0 ||
        old->store_commit_interval_ms != cfg->store_commit_interval_ms ||
        old->store_retention_s != cfg->store_retention_s) {
        lx_log(LX_LOG_WARN, "reload: changes to store take effect at the next restart");
        rc = LX_ECONFIG;
    }
    lx_log_set_level(cfg->log_level);
    /* the control thread makes the health table and posts to the workers */
    lx_gw_ctl_reload(g, cfg);
    return rc;
}

void lx_gateway_drain(lx_gateway_t *g)
{
    for (unsigned k = 0; k < g->n_workers; k++)
        lx_worker_post(&g->workers[k].worker, lx_gw_worker_drain, NULL);
}

void lx_gateway_wait(lx_gateway_t *g)
{
    for (unsigned k = 0; k < g->n_workers; k++)
        lx_worker_join(&g->workers[k].worker);
    /* the store thread still posts (a key snapshot, a job coming back) until it stops: the
     * workers' queues refuse it now (closed when each stopped), but must exist until then */
    lx_store_stop(g->store);
    /* ... and so does the control thread (probes, metrics scrapes every scrape_interval) */
    lx_gw_ctl_stop(g);
    for (unsigned k = 0; k < g->n_workers; k++)
        lx_worker_dispose(&g->workers[k].worker);
    gateway_free(g);
}
