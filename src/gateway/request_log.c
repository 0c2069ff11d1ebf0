/*
 * request_log.c - the access-log line of a request, written when its response is on the wire
 * (lx_api_done): one JSON object per line into the worker's buffer (obs/log.h), which the flush
 * timer writes every 100 ms or when half full. For a proxied request: what served it, its
 * attempts (more than one: the attempt list), its timings and its usage and cost (unknown
 * counts are null, never 0). A client that left before its answer was complete is a 499, as
 * nginx logs it.
 */
#include "gateway/request_log.h"

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "obs/log.h"
#include "route/health.h"

/* Usage and cost: from the upstream's usage object; unknown counts are null, never 0. A
 * stream cut short (or cancelled) without one is marked partial. */
static void log_usage(const lx_gw_req_t *ar, lx_strbuf_t *sb)
{
    const lx_sse_scan_t *sc = &ar->sse;
    bool known = ar->scanning && sc->prompt_tokens >= 0 && sc->completion_tokens >= 0;
    bool partial = ar->finish_code != 0 || ar->px.cut;
    LX_STRBUF_LIT(sb, ",\"stream\":");
    lx_strbuf_str(sb, ar->stream ? "true" : "false");
    LX_STRBUF_LIT(sb, ",\"prompt_tokens\":");
    if (ar->scanning && sc->prompt_tokens >= 0)
        lx_strbuf_i64(sb, sc->prompt_tokens);
    else
        LX_STRBUF_LIT(sb, "null");
    LX_STRBUF_LIT(sb, ",\"completion_tokens\":");
    if (ar->scanning && sc->completion_tokens >= 0)
        lx_strbuf_i64(sb, sc->completion_tokens);
    else
        LX_STRBUF_LIT(sb, "null");
    LX_STRBUF_LIT(sb, ",\"cost_usd\":");
    if (known)
        lx_strbuf_fixed(sb,
                        ((double)sc->prompt_tokens * ar->route->price_prompt +
                         (double)sc->completion_tokens * ar->route->price_completion) /
                            1e6,
                        9);
    else
        LX_STRBUF_LIT(sb, "null");
    LX_STRBUF_LIT(sb, ",\"usage\":\"");
    lx_strbuf_str(sb, partial ? "partial" : known ? "complete" : "unknown");
    LX_STRBUF_LIT(sb, "\",\"events\":");
    lx_strbuf_u64(sb, ar->scanning ? sc->events : 0);
}

/* Milliseconds with three decimals, rounded to the microsecond, in integers. */
static void log_ms(lx_strbuf_t *sb, uint64_t from_ns, uint64_t to_ns)
{
    if (to_ns == 0) {
        LX_STRBUF_LIT(sb, "-1");
        return;
    }
    uint64_t ns = to_ns - from_ns;
    if (ns >= 1000000000000000ull) { /* 11 days and more: what lx_strbuf_fixed() says */
        lx_strbuf_fixed(sb, (double)ns / 1e6, 3);
        return;
    }
    uint64_t us = (ns + 500) / 1000;
    lx_strbuf_u64(sb, us / 1000);
    uint32_t frac = (uint32_t)(us % 1000);
    char d[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                 (char)('0' + frac % 10)};
    lx_strbuf_mem(sb, d, sizeof(d));
}

static const char *method_name(int m)
{
    return llhttp_method_name((llhttp_method_t)m);
}

/* A client that left before its answer was complete: 499 in the log, as nginx's (the status
 * the server holds is the one of an answer nobody read, or of one cut short), and the attempt
 * was recorded as cancelled, not as the provider's failure (dispatch.c classify). */
static bool client_gone(const lx_http_request_t *req, const lx_gw_req_t *ar)
{
    return req->peer_gone || ar->finish_code == LX_ECANCELED;
}

/* The attempts as a JSON array: provider, upstream URL, model, status, outcome, duration. */
static void log_attempts(const lx_gw_req_t *r, lx_strbuf_t *sb)
{
    const lx_config_t *cfg = r->gen->cfg;
    LX_STRBUF_LIT(sb, "[");
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        const lx_config_model_t *m = &cfg->models[a->model];
        const lx_config_provider_t *pv = &cfg->providers[m->routes[a->route].provider];
        if (i > 0)
            LX_STRBUF_LIT(sb, ",");
        LX_STRBUF_LIT(sb, "{\"provider\":\"");
        lx_strbuf_str(sb, pv->name);
        LX_STRBUF_LIT(sb, "\",\"upstream\":\"");
        lx_strbuf_str(sb, pv->endpoints[a->ep].url);
        LX_STRBUF_LIT(sb, "\",\"model\":\"");
        lx_strbuf_str(sb, m->id);
        LX_STRBUF_LIT(sb, "\",\"status\":");
        lx_strbuf_i64(sb, a->status);
        LX_STRBUF_LIT(sb, ",\"outcome\":\"");
        lx_strbuf_str(sb, lx_health_outcome_name((lx_health_outcome_t)a->outcome));
        LX_STRBUF_LIT(sb, "\",\"ms\":");
        lx_strbuf_u64(sb, a->ms);
        LX_STRBUF_LIT(sb, "}");
    }
    LX_STRBUF_LIT(sb, "]");
}

/* The fields of a request that reached the proxy. */
static void log_proxied(const lx_gw_req_t *ar, bool gone, lx_strbuf_t *sb)
{
    const lx_proxy_t *px = &ar->px;
    LX_STRBUF_LIT(sb, ",\"model\":\"");
    lx_strbuf_str(sb, ar->model->id);
    LX_STRBUF_LIT(sb, "\",\"provider\":\"");
    lx_strbuf_str(sb, ar->provider->name);
    LX_STRBUF_LIT(sb, "\",\"upstream\":\"");
    lx_strbuf_str(sb, ar->endpoint->url);
    LX_STRBUF_LIT(sb, "\",\"upstream_status\":");
    lx_strbuf_i64(sb, px->upstream_status);
    LX_STRBUF_LIT(sb, ",\"attempts\":");
    lx_strbuf_u64(sb, ar->n_attempts);
    if (ar->n_attempts > 1) { /* one attempt: the fields above say it all */
        LX_STRBUF_LIT(sb, ",\"attempt_log\":");
        log_attempts(ar, sb);
    }
    LX_STRBUF_LIT(sb, ",\"reused\":");
    lx_strbuf_str(sb, px->reused ? "true" : "false");
    LX_STRBUF_LIT(sb, ",\"upstream_connect_ms\":");
    log_ms(sb, px->t_start_ns, px->t_connected_ns);
    LX_STRBUF_LIT(sb, ",\"first_byte_ms\":");
    log_ms(sb, px->t_start_ns, px->t_first_byte_ns);
    log_usage(ar, sb);
    if (gone) {
        LX_STRBUF_LIT(sb, ",\"error\":\"client closed the connection\"");
    } else if (ar->finish_code != 0) {
        LX_STRBUF_LIT(sb, ",\"error\":\"");
        lx_strbuf_str(sb, px->error != NULL ? px->error : lx_strerror(ar->finish_code));
        LX_STRBUF_LIT(sb, "\"");
    }
}

void lx_gw_request_log(lx_gw_worker_t *gw, const lx_http_request_t *req, const lx_gw_req_t *ar)
{
    bool gone = ar != NULL && client_gone(req, ar);
    size_t cap;
    char *p = lx_access_log_reserve(gw->alog, &cap);
    if (p != NULL) {
        /* one JSON line; names from the configuration are plain (config validates them) */
        char ts[32];
        lx_log_time(ts, sizeof(ts));
        uint64_t now = uv_now(&gw->worker.loop);
        lx_strbuf_t sb = lx_strbuf_make(p, cap - 1);
        LX_STRBUF_LIT(&sb, "{\"time\":\"");
        lx_strbuf_str(&sb, ts);
        LX_STRBUF_LIT(&sb, "\",\"request_id\":\"");
        lx_strbuf_mem(&sb, req->id, req->id_len);
        LX_STRBUF_LIT(&sb, "\",\"method\":\"");
        lx_strbuf_str(&sb, req->method ? method_name(req->method) : "");
        LX_STRBUF_LIT(&sb, "\",\"path\":\"");
        if (ar != NULL)
            lx_strbuf_mem(&sb, req->path.ptr, req->path.len); /* one of api.c's routes: plain */
        else if (!sb.overflow)
            sb.p += lx_log_json_escape(sb.p, LX_MIN((size_t)(sb.end - sb.p), 512), req->path.ptr,
                                       req->path.len);
        LX_STRBUF_LIT(&sb, "\",\"status\":");
        lx_strbuf_i64(&sb, gone ? 499 : req->status);
        LX_STRBUF_LIT(&sb, ",\"bytes_in\":");
        lx_strbuf_u64(&sb, req->bytes_in);
        LX_STRBUF_LIT(&sb, ",\"bytes_out\":");
        lx_strbuf_u64(&sb, req->bytes_out);
        LX_STRBUF_LIT(&sb, ",\"duration_ms\":");
        lx_strbuf_u64(&sb, req->start_ms ? now - req->start_ms : 0);
        if (ar != NULL && ar->provider != NULL)
            log_proxied(ar, gone, &sb);
        else if (ar != NULL) /* (it left while waiting in an admission queue) */
            LX_STRBUF_LIT(&sb, ",\"error\":\"client closed the connection while queued\"");
        LX_STRBUF_LIT(&sb, "}\n");
        if (!sb.overflow)
            lx_access_log_commit(gw->alog, lx_strbuf_len(&sb, p));
    }
}
