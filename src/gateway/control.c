/*
 * control.c - the control thread: health re-scoring every health.rescore_interval, the probe
 * timer (probe.c), and publishing a configuration: its secrets, TLS contexts and health table
 * (rows carried over from the current one) are made here, then each worker gets a reload
 * message and builds its generation from them.
 *
 *   lx_gateway_reload (any thread) ─> ctl_reload + wakeup ─> on_ctl_wakeup ─> ctl_publish
 *   ─> lx_gw_worker_reload posted to every worker ─> ctl_arm (timers, probe state)
 */
#include "gateway/control.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gateway/probe.h"
#include "gateway/scrape.h"
#include "obs/log.h"

/* --- the control thread ---------------------------------------------------------------------- */

static void log_health(void *arg, const char *line)
{
    (void)arg;
    lx_log(LX_LOG_INFO, "%s", line);
}

static void on_ctl_rescore(uv_timer_t *t)
{
    lx_gateway_t *g = t->data;
    /* deferred when a worker still may hold both spare snapshots: it has not ended a loop turn
     * since the re-scoring before the last (a turn ends at least every 100 ms) */
    if (!lx_health_rescore(g->health->table, uv_now(&g->ctl_loop), log_health, NULL))
        lx_log(LX_LOG_WARN, "health: re-scoring deferred to the next interval: a worker has not "
                            "ended a loop turn since the re-scoring before the last");
}

static void on_ctl_probe(uv_timer_t *t)
{
    lx_gateway_t *g = t->data;
    lx_probe_check(g, uv_now(&g->ctl_loop));
}

static void on_ctl_scrape(uv_timer_t *t)
{
    lx_scrape_check(t->data);
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
    uint64_t scrape = cfg->routing_scrape_interval_ms;
    if (lx_scrape_wanted(cfg))
        uv_timer_start(&g->ctl_scrape, on_ctl_scrape, scrape, scrape);
    else
        uv_timer_stop(&g->ctl_scrape);
}

/* A configuration's secrets (provider keys, provider header values) go to the log's set before
 * any worker uses it: from then on a provider that echoes one (its key in an echoed request
 * head) is redacted in every log line and error answer. The set ignores values it has. */
int lx_gw_add_secrets(const lx_config_t *cfg)
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
    if (lx_gw_add_secrets(cfg) != 0) {
        lx_log(LX_LOG_ERROR, "reload failed: out of memory; keeping the old configuration");
        lx_config_unref(cfg);
        return;
    }
    int trc;
    lx_gw_tls_t *tls = lx_gw_tls_new(cfg, &trc);
    if (tls == NULL) {
        lx_log(LX_LOG_ERROR, "reload failed: TLS: %s; keeping the old configuration",
               lx_strerror(trc));
        lx_config_unref(cfg);
        return;
    }
    lx_gw_health_t *h = lx_gw_health_new(cfg, g->n_workers + 1, g->health, g->qsbr);
    if (h == NULL) {
        lx_log(LX_LOG_ERROR, "reload failed: out of memory; keeping the old configuration");
        lx_gw_tls_unref(tls);
        lx_config_unref(cfg);
        return;
    }
    lx_gw_health_unref(g->health);
    g->health = h;
    uint64_t serial = ++g->next_serial;
    for (unsigned k = 0; k < g->n_workers; k++) {
        lx_gw_reload_msg_t *msg = malloc(sizeof(*msg));
        if (msg == NULL)
            continue; /* that worker keeps the old configuration */
        *msg = (lx_gw_reload_msg_t){lx_config_ref(cfg), lx_gw_health_ref(h), lx_gw_tls_ref(tls),
                                    serial};
        if (lx_worker_post(&g->workers[k].worker, lx_gw_worker_reload, msg) != 0) {
            lx_config_unref(msg->cfg);
            lx_gw_health_unref(msg->health);
            lx_gw_tls_unref(msg->tls);
            free(msg);
        }
    }
    lx_gw_tls_unref(tls);
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
        uv_close((uv_handle_t *)&g->ctl_scrape, ctl_closed);
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

int lx_gw_ctl_start(lx_gateway_t *g)
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
    uv_timer_init(&g->ctl_loop, &g->ctl_scrape);
    g->ctl_scrape.data = g;
    ctl_arm(g, g->cfg);
    rc = uv_thread_create(&g->ctl_thread, ctl_main, g);
    if (rc != 0) {
        uv_close((uv_handle_t *)&g->ctl_wakeup, NULL);
        uv_close((uv_handle_t *)&g->ctl_rescore, NULL);
        uv_close((uv_handle_t *)&g->ctl_probe, NULL);
        uv_close((uv_handle_t *)&g->ctl_scrape, NULL);
        uv_run(&g->ctl_loop, UV_RUN_DEFAULT);
        uv_loop_close(&g->ctl_loop);
        uv_mutex_destroy(&g->ctl_lock);
    }
    return rc;
}

void lx_gw_ctl_stop(lx_gateway_t *g)
{
    uv_mutex_lock(&g->ctl_lock);
    g->ctl_stop = true;
    uv_mutex_unlock(&g->ctl_lock);
    uv_async_send(&g->ctl_wakeup);
    uv_thread_join(&g->ctl_thread);
    uv_loop_close(&g->ctl_loop);
    uv_mutex_destroy(&g->ctl_lock);
}

void lx_gw_ctl_reload(lx_gateway_t *g, lx_config_t *cfg)
{
    uv_mutex_lock(&g->ctl_lock);
    lx_config_t *pending = g->ctl_reload;
    g->ctl_reload = lx_config_ref(cfg);
    uv_mutex_unlock(&g->ctl_lock);
    lx_config_unref(pending); /* superseded before it was applied */
    uv_async_send(&g->ctl_wakeup);
}
