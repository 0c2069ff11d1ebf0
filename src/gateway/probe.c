/*
 * probe.c - active health probes: `GET <probe path>` to a provider endpoint that saw no traffic
 * for `health.probe_interval`, so the health table learns about idle replicas (a recovery, or
 * a failure) before a request pays for it.
 *
 *   control thread: lx_probe_check ─ per endpoint with a probe path: has any row of it
 *                   recorded an outcome since the last check? no, for probe_interval ─> post
 *   worker:         probe_run ─ pool connection ─> GET ─> response head and body (bounded)
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

#define PROBE_ANSWER_MS 5000 /* after connecting: the whole answer */
#define PROBE_MAX_ROWS  64

typedef struct probe {
    lx_list_t link; /* in the worker's probes */
    lx_gw_worker_t *gw;
    lx_gw_gen_t *gen; /* a reference */
    size_t provider, ep;
    size_t rows[PROBE_MAX_ROWS];
    size_t n_rows;
    lx_conn_pool_wait_t wait;
    lx_upconn_t *conn;
    lx_http_client_t hc;
    uv_timer_t timer;
    uint64_t start_ns, first_byte_ns;
    bool waiting; /* in the pool's waiters */
    bool done;
} probe_t;

typedef struct probe_msg {
    lx_gw_health_t *health; /* the table the control thread judged (a reference) */
    size_t provider, ep;
} probe_msg_t;

static void on_timer_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    lx_gw_gen_unref(p->gw, p->gen);
    free(p);
}

static void finish(probe_t *p, lx_health_outcome_t outcome)
{
    if (p->done)
        return;
    p->done = true;
    lx_list_remove(&p->link);
    uv_timer_stop(&p->timer);
    if (p->waiting)
        lx_conn_pool_cancel(&p->wait);
    if (p->conn != NULL) {
        lx_upconn_t *c = p->conn;
        p->conn = NULL;
        if (p->hc.complete && p->hc.keep_alive)
            lx_conn_pool_put(c);
        else
            lx_conn_pool_close(c);
    }
    uint64_t now_ns = uv_hrtime();
    lx_health_sample_t s = {
        .outcome = outcome,
        .ttfb_us = p->first_byte_ns > p->start_ns ? (p->first_byte_ns - p->start_ns) / 1000 : 0,
        .total_us = (now_ns - p->start_ns) / 1000,
        .output_tokens = -1,
        .retry_after_ms = outcome == LX_HEALTH_RATE_LIMIT && p->hc.retry_after > 0
                              ? (uint64_t)p->hc.retry_after * 1000
                              : 0,
    };
    /* a probe that proved nothing about the endpoint (llmux stopping) is not recorded */
    if (outcome != LX_HEALTH_CANCELED) {
        uint64_t now = uv_now(&p->gw->worker.loop);
        for (size_t i = 0; i < p->n_rows; i++)
            lx_health_record(p->gen->health->table, p->gw->worker.id, p->rows[i], &s, now);
    }
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static int on_head(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static int on_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    (void)hc;
    (void)b;
    (void)at;
    (void)len;
    return 0; /* the answer's body is not needed: its status says enough */
}

static int on_complete(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static const lx_http_client_cbs_t probe_cbs = {on_head, on_body, on_complete};

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

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_upconn_t *conn = s->data;
    probe_t *p = conn->data;
    if (nread < 0) {
        bool ok = lx_http_client_eof(&p->hc) == 0 && p->hc.complete;
        finish(p, ok ? outcome_of(p->hc.status) : LX_HEALTH_BAD_RESPONSE);
        return;
    }
    if (p->first_byte_ns == 0)
        p->first_byte_ns = uv_hrtime();
    if (lx_http_client_parse(&p->hc, b, data, (size_t)nread) != 0) {
        finish(p, LX_HEALTH_BAD_RESPONSE);
        return;
    }
    if (p->hc.complete)
        finish(p, outcome_of(p->hc.status));
}

static void on_sent(lx_stream_t *s, int status, void *arg)
{
    probe_t *p = arg;
    if (status == 0 || status == UV_ECANCELED || p->done || p->conn == NULL ||
        &p->conn->stream != s)
        return;
    finish(p, LX_HEALTH_CONNECT);
}

static void on_conn(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    probe_t *p = lx_container_of(w, probe_t, wait);
    p->waiting = false;
    if (status != 0) {
        finish(p, status == LX_ETIMEDOUT || status == UV_ETIMEDOUT ? LX_HEALTH_TIMEOUT
                                                                   : LX_HEALTH_CONNECT);
        return;
    }
    p->conn = conn;
    conn->data = p;
    const lx_config_t *cfg = p->gen->cfg;
    const lx_config_provider_t *pv = &cfg->providers[p->provider];
    const lx_config_endpoint_t *ep = &pv->endpoints[p->ep];
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
    lx_buf_t *head = lx_buf_pool_get(&p->gw->worker.bufs);
    if (head == NULL || hb.overflow || xb.overflow ||
        lx_http_client_format_head(head, "GET", pv->probe_path, strlen(pv->probe_path), host, extra,
                                   lx_strbuf_len(&xb, extra), -1) != 0) {
        lx_buf_unref(head);
        finish(p, LX_HEALTH_CANCELED);
        return;
    }
    lx_http_client_init(&p->hc, &probe_cbs, 64 * 1024, p);
    lx_slice_t sl = {head, 0, head->len}; /* the pool's reference, handed to the write */
    int rc = lx_stream_write(&conn->stream, &sl, 1, on_sent, p);
    if (rc == 0)
        rc = lx_stream_read_start(&conn->stream, on_read);
    if (rc != 0)
        finish(p, LX_HEALTH_CONNECT);
}

static void on_timeout(uv_timer_t *t)
{
    probe_t *p = t->data;
    finish(p, LX_HEALTH_TIMEOUT);
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
    p->gen = lx_gw_gen_ref(gen);
    p->provider = provider;
    p->ep = ep;
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
    uint64_t connect =
        pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
    uv_timer_init(&gw->worker.loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timeout, connect + PROBE_ANSWER_MS, 0);
    lx_list_insert_tail(&gw->probes, &p->link);
    p->start_ns = uv_hrtime();
    p->waiting = true;
    lx_conn_pool_get(&gen->pools[gen->pool_base[provider] + ep], &p->wait, on_conn);
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
        finish(p, LX_HEALTH_CANCELED);
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
