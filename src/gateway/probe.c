/*
 * probe.c - active health probes: `GET <probe path>` to a provider endpoint that saw no traffic
 * for `health.probe_interval`, so the health table learns about idle replicas (a recovery, or
 * a failure) before a request pays for it.
 *
 *   control thread: lx_probe_check ─ per endpoint with a probe path: has any row of it
 *                   recorded an outcome since the last check? no, for probe_interval ─> post
 *   worker:         probe_run ─ lx_upstream (pool connection ─> GET ─> response head and
 *                   body, bounded)
 *                   ─> the outcome is recorded in every row of the endpoint (one per model it
 *                   serves), like an attempt's; a half-open row is admitted first, so the
 *                   probe is its trial
 *
 * A probe is bounded by the provider's connect timeout plus five seconds; the worker's stop
 * ends the ones still running.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "gateway/gen.h"
#include "gateway/probe.h"
#include "gateway/service.h"
#include "gateway/worker.h"
#include "http/http_client.h"
#include "proxy/upstream.h"

#define PROBE_ANSWER_MS 5000 /* after connecting: the whole answer */
#define PROBE_MAX_ROWS  64

typedef struct probe {
    lx_upstream_t up; /* first: the client's ops get the probe back from it */
    lx_list_t link;   /* in the worker's probes */
    lx_gw_worker_t *gw;
    lx_gw_gen_t *gen; /* a reference */
    size_t rows[PROBE_MAX_ROWS];
    size_t n_rows;
} probe_t;

typedef struct probe_msg {
    lx_gw_health_t *health; /* the table the control thread judged (a reference) */
    size_t provider, ep;
} probe_msg_t;

static lx_health_outcome_t outcome_of(int status)
{
    if (status >= 200 && status < 400)
        return LX_HEALTH_OK;
    if (status == 429)
        return LX_HEALTH_RATE_LIMIT;
    if (status >= 500 || status == 408)
        return LX_HEALTH_SERVER;
    /* 401, 404, ...: the server is up and answering, but the probe path is wrong (or the
     * key): not the endpoint's failure, and not a success either */
    return LX_HEALTH_CLIENT;
}

/* The probe's verdict on the exchange: the answer's status, or where it failed. */
static lx_health_outcome_t outcome_of_exchange(const lx_upstream_t *up, int code)
{
    if (code == 0)
        return outcome_of(up->hc.status);
    if (code == LX_ECANCELED)
        return LX_HEALTH_CANCELED;
    if (up->timed_out)
        return LX_HEALTH_TIMEOUT;
    if (up->step == LX_UPSTREAM_CONNECT)
        return code == LX_ETIMEDOUT || code == UV_ETIMEDOUT ? LX_HEALTH_TIMEOUT : LX_HEALTH_CONNECT;
    if (up->step == LX_UPSTREAM_SEND)
        return LX_HEALTH_CONNECT;
    return LX_HEALTH_BAD_RESPONSE;
}

static void on_probe_done(lx_upstream_t *up, int code)
{
    probe_t *p = (probe_t *)up;
    lx_health_outcome_t outcome = outcome_of_exchange(up, code);
    lx_list_remove(&p->link);
    lx_health_sample_t s = {
        .outcome = outcome,
        .ttfb_us = up->t_first_byte_ns > up->t_start_ns
                       ? (up->t_first_byte_ns - up->t_start_ns) / 1000
                       : 0,
        .total_us = (up->t_end_ns - up->t_start_ns) / 1000,
        .output_tokens = -1,
        .retry_after_ms = outcome == LX_HEALTH_RATE_LIMIT && up->hc.retry_after > 0
                              ? (uint64_t)up->hc.retry_after * 1000
                              : 0,
    };
    /* a probe that proved nothing about the endpoint (llmux stopping) is not recorded */
    if (outcome != LX_HEALTH_CANCELED) {
        uint64_t now = uv_now(&p->gw->worker.loop);
        for (size_t i = 0; i < p->n_rows; i++)
            lx_health_record(p->gen->health->table, p->gw->worker.id, p->rows[i], &s, now);
    }
}

static void on_probe_free(lx_upstream_t *up)
{
    probe_t *p = (probe_t *)up;
    lx_gw_gen_unref(p->gw, p->gen);
    free(p);
}

/* The answer's body is not needed: its status says enough (the client reads and drops it). */
static const lx_upstream_ops_t probe_ops = {.on_done = on_probe_done, .on_free = on_probe_free};

lx_buf_t *lx_probe_request(lx_gw_worker_t *gw, const lx_config_provider_t *pv,
                           const lx_config_endpoint_t *ep, const char *path)
{
    char host[300], extra[2048];
    lx_strbuf_t hb = lx_strbuf_make(host, sizeof(host) - 1);
    bool v6 = strchr(ep->host, ':') != NULL;
    lx_strbuf_str(&hb, v6 ? "[" : "");
    lx_strbuf_str(&hb, ep->host);
    lx_strbuf_str(&hb, v6 ? "]:" : ":");
    lx_strbuf_u64(&hb, ep->port);
    *hb.p = '\0';
    lx_strbuf_t xb = lx_strbuf_make(extra, sizeof(extra));
    if (pv->api_key != NULL) {
        LX_STRBUF_LIT(&xb, "Authorization: Bearer ");
        lx_strbuf_str(&xb, pv->api_key);
        LX_STRBUF_LIT(&xb, "\r\n");
    }
    for (size_t i = 0; i < pv->n_headers; i++) {
        lx_strbuf_str(&xb, pv->headers[i].name);
        LX_STRBUF_LIT(&xb, ": ");
        lx_strbuf_str(&xb, pv->headers[i].value);
        LX_STRBUF_LIT(&xb, "\r\n");
    }
    LX_STRBUF_LIT(&xb, "User-Agent: llmux-probe\r\n");
    if (path == NULL)
        path = pv->probe_path;
    lx_buf_t *head = lx_buf_pool_get(&gw->worker.bufs);
    if (head == NULL || hb.overflow || xb.overflow ||
        lx_http_client_format_head(head, "GET", path, strlen(path), host, extra,
                                   lx_strbuf_len(&xb, extra), -1) != 0) {
        lx_buf_unref(head);
        return NULL;
    }
    return head;
}

/* Starts one probe on this worker's generation (which must use <health>). */
static void probe_run(lx_gw_worker_t *gw, size_t provider, size_t ep)
{
    lx_gw_gen_t *gen = gw->gen;
    const lx_config_t *cfg = gen->cfg;
    probe_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    p->gw = gw;
    uint64_t now = uv_now(&gw->worker.loop);
    for (size_t m = 0; m < cfg->n_models; m++) {
        for (size_t r = 0; r < cfg->models[m].n_routes && p->n_rows < PROBE_MAX_ROWS; r++) {
            if (cfg->models[m].routes[r].provider != provider)
                continue;
            size_t row = lx_gw_row(gen->health, m, r, ep);
            /* a half-open row: the probe is its trial */
            if (lx_health_available(gen->health->table, row, now))
                (void)lx_health_admit(gen->health->table, row, now);
            p->rows[p->n_rows++] = row;
        }
    }
    const lx_config_provider_t *pv = &cfg->providers[provider];
    lx_buf_t *head = lx_probe_request(gw, pv, &pv->endpoints[ep], NULL);
    if (head == NULL) {
        free(p); /* proved nothing about the endpoint: not recorded */
        return;
    }
    p->gen = lx_gw_gen_ref(gen);
    lx_upstream_t *up = &p->up;
    up->pool = &gen->pools[gen->pool_base[provider] + ep];
    up->ops = &probe_ops;
    up->out[0] = (lx_slice_t){head, 0, head->len}; /* the pool's reference, handed over */
    up->n_out = 1;
    /* the whole probe, from the get: the provider's connect timeout plus the answer's time */
    uint64_t connect =
        pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
    up->deadline_ms = now + connect + PROBE_ANSWER_MS;
    lx_list_insert_tail(&gw->probes, &p->link);
    lx_upstream_start(up);
}

static void do_probe(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    probe_msg_t *msg = arg;
    /* a reload in between: the control thread judges the next table */
    if (!gw->draining && !gw->stopping && gw->gen != NULL && gw->gen->health == msg->health)
        probe_run(gw, msg->provider, msg->ep);
    lx_gw_health_unref(msg->health);
    free(msg);
}

void lx_probe_cancel_all(lx_gw_worker_t *gw)
{
    while (!lx_list_is_empty(&gw->probes)) {
        probe_t *p = lx_container_of(gw->probes.next, probe_t, link);
        lx_upstream_cancel(&p->up); /* (its on_done unlinks it) */
    }
}

void lx_probe_check(lx_gateway_t *g, uint64_t now_ms)
{
    const lx_config_t *cfg = g->ctl_cfg;
    lx_gw_health_t *h = g->health;
    uint64_t every = cfg->health_probe_interval_ms;
    size_t k = 0;
    for (size_t pi = 0; pi < cfg->n_providers; pi++) {
        const lx_config_provider_t *pv = &cfg->providers[pi];
        for (size_t j = 0; j < pv->n_endpoints; j++, k++) {
            if (pv->probe_path == NULL || k >= g->n_probe_state)
                continue;
            /* any outcome recorded in a row of this endpoint since the last look? */
            uint64_t total = 0, counts[LX_HEALTH_N_OUTCOMES];
            for (size_t m = 0; m < cfg->n_models; m++) {
                for (size_t r = 0; r < cfg->models[m].n_routes; r++) {
                    if (cfg->models[m].routes[r].provider != pi)
                        continue;
                    lx_health_totals(h->table, lx_gw_row(h, m, r, j), counts);
                    for (size_t o = 0; o < LX_HEALTH_N_OUTCOMES; o++)
                        total += counts[o];
                }
            }
            lx_gw_probe_state_t *st = &g->probe_state[k];
            if (total != st->total || st->since_ms == 0) {
                st->total = total;
                st->since_ms = now_ms;
                continue;
            }
            if (now_ms - st->since_ms < every)
                continue;
            st->since_ms = now_ms; /* the probe's own outcome moves the total */
            probe_msg_t *msg = malloc(sizeof(*msg));
            if (msg == NULL)
                return;
            *msg = (probe_msg_t){lx_gw_health_ref(h), pi, j};
            lx_gw_worker_t *w = &g->workers[g->next_probe_worker++ % g->n_workers];
            if (lx_worker_post(&w->worker, do_probe, msg) != 0) {
                lx_gw_health_unref(msg->health);
                free(msg);
            }
        }
    }
}
