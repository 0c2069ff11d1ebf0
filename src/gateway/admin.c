/*
 * admin.c - the admin routes: GET /admin/health (JSON) and GET /metrics (Prometheus text), both
 * the health table of the worker's current generation (route/health_format.c formats it); the
 * health JSON gains a "fleet" member: the balance, this worker's admission queues, and per row
 * the in-flight count on all workers, max_in_flight and its server's scraped load.
 * api.c routes and admits them (the admin key; /metrics may be public) before calling here.
 *
 * Why here and not in an admin/ layer: both read the worker's current generation, which is
 * gateway state; see README.md.
 */
#include "gateway/admin.h"

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "gateway/gen.h"
#include "route/fleet.h"
#include "route/health.h"
#include "route/load_slot.h"
#include "route/prefix_est.h"

static void respond(lx_http_request_t *req, int rc, const char *ct, size_t ct_len, char *body,
                    size_t len)
{
    if (rc != 0) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    lx_http_server_respond(req, 200, ct, ct_len, body, len);
    free(body);
}

/* A count, or null when the server does not expose it (flag clear). */
static void opt_u64(lx_strbuf_t *sb, bool has, uint64_t v)
{
    if (has)
        lx_strbuf_u64(sb, v);
    else
        LX_STRBUF_LIT(sb, "null");
}

/* The rest of a fleet row: its prefix-hit estimate when there is one, and the closing '}'. */
static void prefix_est(lx_strbuf_t *sb, const lx_gw_gen_t *g, size_t i, uint64_t now)
{
    if (g->health->prefix_est != NULL) {
        LX_STRBUF_LIT(sb, ",");
        lx_prefix_est_json(sb, g->health->prefix_est, i, now);
    }
    LX_STRBUF_LIT(sb, "}");
}

/* One row's fleet signals: {"provider","endpoint","model","in_flight","max_in_flight",
 * "server":{"waiting","running","kv_use","scrape_age_ms","fresh","learned_max_in_flight"} or
 * null without `metrics`,
 * and under balance fleet "prefix_est" (route/prefix_est.h)}.
 * Names come from the configuration, which allows no quote or backslash in them. */
static void fleet_row(lx_strbuf_t *sb, const lx_gw_gen_t *g, size_t i,
                      const lx_config_provider_t *pv, uint64_t now)
{
    const lx_health_t *t = g->health->table;
    const lx_health_row_key_t *k = lx_health_row_key(t, i);
    const lx_config_t *cfg = g->cfg;
    LX_STRBUF_LIT(sb, "{\"provider\":\"");
    lx_strbuf_str(sb, k->provider);
    LX_STRBUF_LIT(sb, "\",\"endpoint\":\"");
    lx_strbuf_str(sb, k->endpoint);
    LX_STRBUF_LIT(sb, "\",\"model\":\"");
    lx_strbuf_str(sb, k->model);
    LX_STRBUF_LIT(sb, "\",\"in_flight\":");
    int64_t f = lx_health_in_flight(t, i);
    lx_strbuf_i64(sb, f > 0 ? f : 0);
    LX_STRBUF_LIT(sb, ",\"max_in_flight\":");
    opt_u64(sb, pv != NULL && pv->max_in_flight > 0, pv != NULL ? pv->max_in_flight : 0);
    LX_STRBUF_LIT(sb, ",\"server\":");
    lx_load_view_t v;
    if (pv == NULL || pv->metrics_path == NULL || !lx_load_slot_read(&g->health->load[i], &v)) {
        LX_STRBUF_LIT(sb, "null");
        prefix_est(sb, g, i, now);
        return;
    }
    uint64_t stale_ms = 3 * cfg->routing_scrape_interval_ms;
    LX_STRBUF_LIT(sb, "{\"waiting\":");
    opt_u64(sb, v.read_ms != 0 && (v.flags & LX_LOAD_HAS_WAITING), v.waiting);
    LX_STRBUF_LIT(sb, ",\"running\":");
    opt_u64(sb, v.read_ms != 0 && (v.flags & LX_LOAD_HAS_RUNNING), v.running);
    LX_STRBUF_LIT(sb, ",\"kv_use\":");
    if (v.read_ms != 0 && (v.flags & LX_LOAD_HAS_KV))
        lx_strbuf_fixed(sb, v.kv_ppm / 1e6, 4);
    else
        LX_STRBUF_LIT(sb, "null");
    LX_STRBUF_LIT(sb, ",\"scrape_age_ms\":");
    opt_u64(sb, v.read_ms != 0, now > v.read_ms ? now - v.read_ms : 0);
    LX_STRBUF_LIT(sb, ",\"fresh\":");
    lx_strbuf_str(sb, v.read_ms != 0 && now <= v.read_ms + stale_ms ? "true" : "false");
    /* the cap learned from these figures (route/fleet.h), in force without a configured one */
    uint32_t learned = lx_fleet_learned_cap(lx_load_slot_cap(&g->health->load[i]));
    LX_STRBUF_LIT(sb, ",\"learned_max_in_flight\":");
    opt_u64(sb, learned > 0, learned);
    LX_STRBUF_LIT(sb, "}");
    prefix_est(sb, g, i, now);
}

/* The health JSON with a "fleet" member before its last '}': the balance, this worker's
 * admission queues and each row's load signals. NULL when out of memory. */
static char *with_fleet(lx_gw_worker_t *gw, const char *health, size_t hlen, size_t *len)
{
    static const char *const balances[] = {"default", "round_robin", "least_request", "fleet"};
    const lx_gw_gen_t *g = gw->gen;
    size_t n = g->health->n_rows, cap = hlen + 256;
    for (size_t i = 0; i < n; i++) {
        const lx_health_row_key_t *k = lx_health_row_key(g->health->table, i);
        cap += 640 + strlen(k->provider) + strlen(k->endpoint) + strlen(k->model);
    }
    char *buf = malloc(cap);
    const lx_config_provider_t **pv = calloc(n + 1, sizeof(*pv)); /* per row */
    if (buf == NULL || pv == NULL || hlen == 0) {
        free(buf);
        free(pv);
        return NULL;
    }
    const lx_config_t *cfg = g->cfg;
    for (size_t m = 0; m < cfg->n_models; m++)
        for (size_t r = 0; r < cfg->models[m].n_routes; r++) {
            const lx_config_provider_t *p = &cfg->providers[cfg->models[m].routes[r].provider];
            for (size_t j = 0; j < p->n_endpoints; j++)
                pv[lx_gw_row(g->health, m, r, j)] = p;
        }
    lx_strbuf_t sb = lx_strbuf_make(buf, cap);
    lx_strbuf_mem(&sb, health, hlen - 1); /* (without its last '}') */
    LX_STRBUF_LIT(&sb, ",\"fleet\":{\"balance\":\"");
    lx_strbuf_str(&sb, balances[g->cfg->routing_balance & 3]);
    LX_STRBUF_LIT(&sb, "\",\"scrape_interval_ms\":");
    lx_strbuf_u64(&sb, g->cfg->routing_scrape_interval_ms);
    LX_STRBUF_LIT(&sb, ",\"queued_on_this_worker\":");
    lx_strbuf_u64(&sb, gw->n_waiting);
    LX_STRBUF_LIT(&sb, ",\"rows\":[");
    uint64_t now = uv_now(&gw->worker.loop);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            LX_STRBUF_LIT(&sb, ",");
        fleet_row(&sb, g, i, pv[i], now);
    }
    free(pv);
    LX_STRBUF_LIT(&sb, "]}}");
    if (sb.overflow)
        return free(buf), NULL;
    *len = lx_strbuf_len(&sb, buf);
    return buf;
}

void lx_admin_serve_health(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    static const char json[] = "Content-Type: application/json\r\n";
    char *body = NULL;
    size_t len = 0;
    int rc = lx_health_format_json(gw->gen->health->table, uv_now(&gw->worker.loop), &body, &len);
    if (rc == 0) {
        size_t flen = 0;
        char *full = with_fleet(gw, body, len, &flen);
        free(body);
        body = full;
        len = flen;
        rc = full != NULL ? 0 : -1;
    }
    respond(req, rc, json, sizeof(json) - 1, body, len);
}

void lx_admin_serve_metrics(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    static const char prom[] = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
    char *body = NULL;
    size_t len = 0;
    const lx_gw_health_t *gh = gw->gen->health;
    uint64_t now = uv_now(&gw->worker.loop);
    int rc = lx_health_format_metrics(gh->table, now, &body, &len);
    if (rc == 0 && gh->prefix_est != NULL) { /* balance fleet: the prefix-hit estimate after */
        char *more = NULL, *both = NULL;
        size_t mlen = 0;
        rc = lx_prefix_est_format_metrics(gh->prefix_est, gh->table, now, &more, &mlen);
        if (rc == 0 && (both = realloc(body, len + mlen + 1)) == NULL)
            rc = -1;
        if (both != NULL) {
            memcpy(both + len, more, mlen + 1);
            body = both;
            len += mlen;
        }
        free(more);
        if (rc != 0) {
            free(body);
            body = NULL;
        }
    }
    respond(req, rc, prom, sizeof(prom) - 1, body, len);
}
