/*
 * api.c - the OpenAI-compatible API: one request from route to proxy, and its access log line.
 *
 *   route (path, method) ─> auth (Bearer key, constant time) ─> body scan (jsmn, once)
 *   ─> model → route → provider endpoint ─> upstream request: a new head + the original body
 *   bytes spliced (model value replaced, llmux's own fields removed), never re-serialized
 *   ─> lx_proxy_start ─> ... ─> lx_api_done: access log, free
 *
 * Routes are served under /v1 and /api/v1 alike; /healthz and /readyz need no key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "gateway/api_error.h"
#include "gateway/auth.h"
#include "gateway/body.h"
#include "gateway/gateway_int.h"
#include "gateway/sse_scan.h"

enum api_route {
    R_NONE,
    R_HEALTHZ,
    R_READYZ,
    R_MODELS,
    R_CHAT,
    R_COMPLETIONS,
    R_EMBEDDINGS,
};

/* One API request handed to the proxy. Freed when both the proxy (on_free) and the server
 * (on_done) are through with it. */
typedef struct api_req {
    lx_proxy_t px; /* first: req->data points here */
    lx_gw_worker_t *gw;
    lx_gw_gen_t *gen; /* the configuration this request started with (a reference) */
    lx_list_t link;   /* in gw->active while the proxy runs */
    const lx_config_model_t *model;
    const lx_config_provider_t *provider;
    const lx_config_endpoint_t *endpoint;
    const lx_config_route_t *route;
    char gen_id[32];
    int finish_code;
    unsigned refs;
    bool stream;        /* the client asked for a stream */
    bool openrouter;    /* served under /api/v1: OpenRouter's shapes */
    bool drop_usage;    /* llmux added include_usage: the usage chunk is not the client's */
    bool rewrite;       /* the upstream model name differs from the public id */
    bool scanning;      /* scan is initialised */
    lx_sse_scan_t scan; /* observes (and rewrites) the response body */
    char *resp_headers; /* the client's response head lines (malloc'd, exact size) */
} api_req_t;

#define RESP_HEADERS_MAX 1024

static const struct {
    const char *suffix;
    enum api_route route;
    int method;
    const char *upstream_path;
} routes[] = {
    {"/chat/completions", R_CHAT, HTTP_POST, "/chat/completions"},
    {"/completions", R_COMPLETIONS, HTTP_POST, "/completions"},
    {"/embeddings", R_EMBEDDINGS, HTTP_POST, "/embeddings"},
    {"/models", R_MODELS, HTTP_GET, NULL},
};

size_t lx_api_format_error(char *buf, size_t cap, int status, const char *message)
{
    int n = lx_api_error_format(buf, cap, status, NULL, message, strlen(message));
    return n < 0 ? 0 : (size_t)n;
}

static int find_route(lx_str_t path, size_t *index)
{
    if (lx_str_eq(path, "/healthz", 8))
        return R_HEALTHZ;
    if (lx_str_eq(path, "/readyz", 7))
        return R_READYZ;
    lx_str_t rest;
    if (path.len >= 7 && memcmp(path.ptr, "/api/v1", 7) == 0)
        rest = (lx_str_t){path.ptr + 7, path.len - 7};
    else if (path.len >= 3 && memcmp(path.ptr, "/v1", 3) == 0)
        rest = (lx_str_t){path.ptr + 3, path.len - 3};
    else
        return R_NONE;
    for (size_t i = 0; i < LX_ARRAY_SIZE(routes); i++) {
        if (lx_str_eq(rest, routes[i].suffix, strlen(routes[i].suffix))) {
            *index = i;
            return routes[i].route;
        }
    }
    return R_NONE;
}

static void respond_json(lx_http_request_t *req, int status, const char *body, size_t len)
{
    static const char ct[] = "Content-Type: application/json\r\n";
    lx_http_server_respond(req, status, ct, sizeof(ct) - 1, body, len);
}

/* Headers not forwarded upstream: hop-by-hop ones, the ones llmux sets itself, the client's
 * credentials and cookies, and compression (llmux reads the response). */
static bool forwardable(lx_str_t name)
{
    static const char *const skip[] = {
        "host",
        "authorization",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "cookie",
        "x-request-id",
        "content-type",
        "accept-encoding",
        "x-session-id",
        "content-encoding",
    };
    for (size_t i = 0; i < LX_ARRAY_SIZE(skip); i++)
        if (lx_str_caseeq(name, skip[i], strlen(skip[i])))
            return false;
    if (name.len >= 8 && lx_str_caseeq((lx_str_t){name.ptr, 8}, "x-llmux-", 8))
        return false;
    return true;
}

/* Appends "<name>: <value>\r\n" to b if it fits. */
static bool append_header(lx_buf_t *b, const char *name, size_t nlen, const char *value,
                          size_t vlen)
{
    if (lx_buf_avail(b) < nlen + vlen + 4)
        return false;
    char *p = lx_buf_tail(b);
    memcpy(p, name, nlen);
    memcpy(p + nlen, ": ", 2);
    memcpy(p + nlen + 2, value, vlen);
    memcpy(p + nlen + 2 + vlen, "\r\n", 2);
    b->len += (uint32_t)(nlen + vlen + 4);
    return true;
}

static bool append_str(lx_buf_t *b, const char *s, size_t len)
{
    if (lx_buf_avail(b) < len)
        return false;
    memcpy(lx_buf_tail(b), s, len);
    b->len += (uint32_t)len;
    return true;
}

static void describe_error(lx_proxy_t *px, int status, const char *body, size_t len, char *msg,
                           size_t cap)
{
    (void)px;
    (void)status;
    msg[0] = '\0';
    if (body == NULL || len == 0)
        return;
    /* Most servers say why in "message" (OpenAI, vLLM) or "detail" (FastAPI), or "error"
     * as a string (llama.cpp, Ollama). */
    static const char *const keys[] = {"\"message\"", "\"detail\"", "\"error\""};
    for (size_t k = 0; k < LX_ARRAY_SIZE(keys); k++) {
        const char *p = memmem(body, len, keys[k], strlen(keys[k]));
        if (p == NULL)
            continue;
        p += strlen(keys[k]);
        const char *end = body + len;
        while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n'))
            p++;
        if (p >= end || *p != '"')
            continue;
        const char *s = ++p;
        while (p < end && *p != '"') {
            if (*p == '\\')
                p++;
            p++;
        }
        if (p >= end)
            continue;
        int n = lx_body_unescape(s, (size_t)(p - s), msg, cap - 1);
        if (n >= 0) {
            msg[n] = '\0';
            return;
        }
    }
    /* no recognisable field: the body itself, as printable text */
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap && n < 300; i++)
        msg[n++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
    msg[n] = '\0';
}

static void api_unref(api_req_t *ar)
{
    if (--ar->refs > 0)
        return;
    if (ar->scanning)
        lx_sse_scan_dispose(&ar->scan);
    free(ar->resp_headers);
    lx_gw_gen_unref(ar->gw, ar->gen);
    free(ar);
}

static void on_proxy_finish(lx_proxy_t *px, int code)
{
    api_req_t *ar = (api_req_t *)px;
    ar->finish_code = code;
    lx_list_remove(&ar->link);
    if (code != 0 && code != LX_ECANCELED)
        lx_log(LX_LOG_INFO, "request %.*s: %s %s: %s (%s)", (int)px->req->id_len, px->req->id,
               ar->provider->name, ar->endpoint->url, px->error ? px->error : "failed",
               lx_strerror(code));
}

static void on_proxy_free(lx_proxy_t *px)
{
    api_unref((api_req_t *)px);
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The upstream answered: watch (and where needed rewrite) its body. */
static void on_proxy_head(lx_proxy_t *px, const lx_http_client_t *hc)
{
    api_req_t *ar = (api_req_t *)px;
    const char *model = ar->rewrite ? ar->model->id : NULL;
    size_t mlen = model != NULL ? strlen(model) : 0;
    int rc = -1;
    if (has_prefix_ci(hc->content_type, "text/event-stream"))
        rc = lx_sse_scan_init(&ar->scan, model, mlen, ar->drop_usage);
    else if (has_prefix_ci(hc->content_type, "application/json"))
        rc = lx_sse_scan_init_json(&ar->scan, model, mlen);
    if (rc == 0) {
        ar->scanning = true;
        px->filter_on = true;
        px->filter_resizes = ar->rewrite; /* observing alone keeps every byte */
    }
}

static int on_proxy_filter(lx_proxy_t *px, lx_buf_t *b, const char *at, size_t len, lx_slice_t *out,
                           size_t *used)
{
    api_req_t *ar = (api_req_t *)px;
    return lx_sse_scan_feed(&ar->scan, b, at, len, out, LX_PROXY_FILTER_MAX, used);
}

static int on_proxy_filter_end(lx_proxy_t *px, lx_slice_t *out)
{
    api_req_t *ar = (api_req_t *)px;
    return lx_sse_scan_flush(&ar->scan, out, LX_PROXY_FILTER_MAX);
}

/* A stream is finished when it said so: [DONE], or a final finish_reason inside complete HTTP
 * framing. A close-delimited stream cut short says neither. */
static bool on_proxy_end_ok(lx_proxy_t *px)
{
    api_req_t *ar = (api_req_t *)px;
    if (!ar->scanning || ar->scan.json_mode)
        return true;
    return ar->scan.done || (ar->scan.finished && (px->hc.chunked || px->hc.has_length));
}

/* The final event of a stream that failed after its 200: an error the client's SDK sees. */
static size_t on_proxy_format_cut(lx_proxy_t *px, int status, const char *message, char *buf,
                                  size_t cap)
{
    api_req_t *ar = (api_req_t *)px;
    bool sse = (ar->scanning && !ar->scan.json_mode) || px->stream_head != NULL;
    if (!sse || cap < 1024)
        return 0;
    char env[1024];
    int n = lx_api_error_format(env, sizeof(env), status, NULL, message, strlen(message));
    if (n < 2)
        return 0;
    int k;
    /* cut inside an event: end it first, so the error is an event of its own */
    const char *sep = ar->scanning && ar->scan.in_block ? "\n\n" : "";
    if (!ar->openrouter) {
        /* OpenAI's shape: an error object and no choices */
        k = snprintf(buf, cap, "%sdata: %s\n\n", sep, env);
    } else {
        /* OpenRouter's: a chunk carrying the error, finish_reason "error" */
        k = snprintf(buf, cap,
                     "%sdata: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
                     "\"created\":%lld,\"model\":\"%s\",\"provider\":\"%s\",%.*s,"
                     "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                     "\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}]}\n\n",
                     sep, ar->gen_id, (long long)time(NULL), ar->model->id, ar->provider->name,
                     n - 2, env + 1);
    }
    return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

static const lx_proxy_ops_t proxy_ops = {
    .on_finish = on_proxy_finish,
    .on_free = on_proxy_free,
    .describe_error = describe_error,
    .on_head = on_proxy_head,
    .filter = on_proxy_filter,
    .filter_end = on_proxy_filter_end,
    .end_ok = on_proxy_end_ok,
    .format_cut = on_proxy_format_cut,
};

void lx_api_cancel_all(lx_gw_worker_t *w, int code)
{
    while (!lx_list_is_empty(&w->active)) {
        api_req_t *ar = lx_list_entry(w->active.next, api_req_t, link);
        lx_list_remove(&ar->link);
        ar->px.error = "llmux is shutting down";
        lx_proxy_finish(&ar->px, code);
    }
}

static void forward(lx_http_request_t *req, lx_gw_worker_t *gw, size_t route_index)
{
    lx_gw_gen_t *gen = gw->gen;
    const lx_config_t *cfg = gen->cfg;
    lx_body_scan_t scan;
    if (req->body.len == 0) {
        lx_http_server_respond_error(req, 400, NULL, "request body must be a JSON object");
        return;
    }
    if (lx_body_scan(req->body.ptr, req->body.len, &scan) != 0) {
        lx_http_server_respond_error(req, 400, NULL, scan.error);
        return;
    }
    if (!scan.has_model) {
        lx_http_server_respond_error(req, 400, NULL, "missing required field 'model'");
        return;
    }
    char model_id[512];
    int mlen = lx_body_unescape(req->body.ptr + scan.model.off, scan.model.len, model_id,
                                sizeof(model_id) - 1);
    if (mlen <= 0) {
        lx_http_server_respond_error(req, 400, NULL, "invalid 'model'");
        return;
    }
    model_id[mlen] = '\0';
    const lx_config_model_t *model = lx_config_find_model(cfg, model_id, (size_t)mlen);
    if (model == NULL || model->n_routes == 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "model '%s' is not available on this gateway", model_id);
        lx_http_server_respond_error(req, 404, NULL, msg);
        return;
    }
    const lx_config_route_t *route = &model->routes[0];
    const lx_config_provider_t *prov = &cfg->providers[route->provider];
    size_t ep_index = gen->rr[route->provider]++ % prov->n_endpoints;
    const lx_config_endpoint_t *ep = &prov->endpoints[ep_index];
    if (ep->tls) {
        /* never send a request meant for TLS in plain text */
        char msg[400];
        snprintf(msg, sizeof(msg), "provider %s is HTTPS, and this build has no TLS client yet",
                 prov->name);
        lx_http_server_respond_error(req, 502, NULL, msg);
        return;
    }

    api_req_t *ar = calloc(1, sizeof(*ar));
    lx_buf_t *head = lx_buf_pool_get(&gw->worker.bufs);
    if (ar == NULL || head == NULL) {
        free(ar);
        lx_buf_unref(head);
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    ar->gw = gw;
    ar->gen = lx_gw_gen_ref(gen);
    lx_list_init(&ar->link);
    ar->model = model;
    ar->provider = prov;
    ar->endpoint = ep;
    ar->refs = 2; /* the proxy (on_free) and the server (on_done) */

    /* Upstream head: request line and Host, then credentials and headers, then the client's
     * forwardable headers. The spliced model name is written after it, in the same chunk. */
    char path[1024], host[300];
    lx_strbuf_t pb = lx_strbuf_make(path, sizeof(path));
    lx_strbuf_str(&pb, prov->base_path);
    lx_strbuf_str(&pb, routes[route_index].upstream_path);
    size_t plen = lx_strbuf_len(&pb, path);
    lx_strbuf_t hb = lx_strbuf_make(host, sizeof(host) - 1);
    bool v6 = strchr(ep->host, ':') != NULL;
    if (v6)
        LX_STRBUF_LIT(&hb, "[");
    lx_strbuf_str(&hb, ep->host);
    if (v6)
        LX_STRBUF_LIT(&hb, "]");
    if (!((ep->port == 80 && !ep->tls) || (ep->port == 443 && ep->tls))) {
        LX_STRBUF_LIT(&hb, ":");
        lx_strbuf_u64(&hb, ep->port);
    }
    *hb.p = '\0';

    lx_body_piece_t pieces[LX_PROXY_MAX_OUT - 1];
    char scratch[1024];
    size_t total = 0;
    const char *up_model = route->upstream_model != NULL ? route->upstream_model : model->id;
    /* usage is always collected from streams: ask for it when the client did not */
    bool add_usage = scan.stream && routes[route_index].route != R_EMBEDDINGS;
    ar->stream = scan.stream;
    ar->drop_usage = add_usage && !scan.include_usage && !cfg->stream_always_send_usage;
    ar->rewrite = strcmp(up_model, model->id) != 0;
    ar->route = route;
    ar->openrouter = req->path.len >= 4 && memcmp(req->path.ptr, "/api", 4) == 0;
    int np =
        lx_body_splice(req->body.ptr, req->body.len, &scan, up_model, strlen(up_model), add_usage,
                       pieces, LX_ARRAY_SIZE(pieces), scratch, sizeof(scratch), &total);
    bool ok =
        np > 0 && !pb.overflow && !hb.overflow &&
        lx_http_client_format_head(head, "POST", path, plen, host, NULL, 0, (int64_t)total) == 0;
    if (ok) {
        head->len -= 2; /* reopen the head: more headers follow */
        ok = append_str(head, "Content-Type: application/json\r\n", 32) &&
             append_header(head, "X-Request-Id", 12, req->id, req->id_len);
        if (ok && prov->api_key != NULL)
            ok = append_str(head, "Authorization: Bearer ", 22) &&
                 append_str(head, prov->api_key, strlen(prov->api_key)) &&
                 append_str(head, "\r\n", 2);
        for (size_t i = 0; ok && i < prov->n_headers; i++)
            ok = append_header(head, prov->headers[i].name, strlen(prov->headers[i].name),
                               prov->headers[i].value, strlen(prov->headers[i].value));
        for (unsigned i = 0; ok && i < req->head.n_headers; i++) {
            const lx_http_header_t *h = &req->head.headers[i];
            if (forwardable(h->name))
                ok = append_header(head, h->name.ptr, h->name.len, h->value.ptr, h->value.len);
        }
        ok = ok && append_str(head, "\r\n", 2);
    }
    size_t head_len = head->len;
    lx_proxy_t *px = &ar->px;
    px->out[px->n_out++] = (lx_slice_t){head, 0, (uint32_t)head_len}; /* the pool's reference */
    for (int i = 0; ok && i < np; i++) {
        const char *p = pieces[i].ptr;
        lx_slice_t sl;
        if (p < req->body.ptr || p >= req->body.ptr + req->body.len) {
            /* inserted text (the model name, stream_options): copy it past the head */
            if (!append_str(head, p, pieces[i].len)) {
                ok = false;
                break;
            }
            sl = lx_slice_make(head, head->len - pieces[i].len, pieces[i].len);
        } else {
            lx_buf_t *owner = req->body_owner;
            sl = lx_slice_make(owner, (size_t)(p - owner->data), pieces[i].len);
        }
        px->out[px->n_out++] = sl;
    }
    if (!ok) {
        for (unsigned i = 0; i < px->n_out; i++)
            lx_buf_unref(px->out[i].buf);
        lx_gw_gen_unref(gw, ar->gen);
        free(ar);
        lx_http_server_respond_error(req, 431, NULL,
                                     "request headers too large to forward upstream");
        return;
    }
    /* The request stays referenced until the answer begins (a retry resends it): keep an
     * exact-size copy of the head rather than pinning a 16 KiB pool chunk per waiting
     * request (thousands of slow first tokens). */
    lx_buf_t *exact = lx_buf_new(head->len);
    if (exact != NULL) {
        memcpy(exact->data, head->data, head->len);
        exact->len = head->len;
        for (unsigned i = 0; i < px->n_out; i++) {
            if (px->out[i].buf == head) {
                px->out[i].buf = lx_buf_ref(exact);
                lx_buf_unref(head);
            }
        }
        lx_buf_unref(exact);
    }
    lx_strbuf_t gb = lx_strbuf_make(ar->gen_id, sizeof(ar->gen_id) - 1);
    LX_STRBUF_LIT(&gb, "gen-");
    lx_strbuf_u64(&gb, gw->worker.id);
    LX_STRBUF_LIT(&gb, "-");
    lx_strbuf_hex(&gb, ++gw->generations ^ gw->gen_seed, 16);
    *gb.p = '\0';
    char rh[RESP_HEADERS_MAX];
    bool early = false;
    lx_strbuf_t rb = lx_strbuf_make(rh, sizeof(rh) - 1);
    if (scan.stream)
        LX_STRBUF_LIT(&rb, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    LX_STRBUF_LIT(&rb, "X-Generation-Id: ");
    lx_strbuf_str(&rb, ar->gen_id);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Provider: ");
    lx_strbuf_str(&rb, prov->name);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Model: ");
    lx_strbuf_str(&rb, model->id);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Upstream-Model: ");
    lx_strbuf_str(&rb, up_model);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Attempts: 1\r\n");
    int rn = rb.overflow ? 0 : (int)lx_strbuf_len(&rb, rh);
    if (scan.stream && cfg->stream_early_commit && (size_t)rn + 40 < RESP_HEADERS_MAX) {
        /* answer 200 now and keep the client company until the first token */
        static const char ct[] = "Content-Type: text/event-stream\r\n";
        memmove(rh + sizeof(ct) - 1, rh, (size_t)rn);
        memcpy(rh, ct, sizeof(ct) - 1);
        rn += (int)sizeof(ct) - 1;
        early = true;
        rh[rn] = '\0';
        px->keepalive_delay_ms = cfg->stream_keepalive_delay_ms;
        px->keepalive_interval_ms = cfg->stream_keepalive_interval_ms;
    }
    ar->resp_headers = malloc((size_t)rn + 1);
    if (ar->resp_headers != NULL)
        memcpy(ar->resp_headers, rh, (size_t)rn + 1);
    else
        rn = 0;
    if (early && rn > 0) {
        px->stream_head = ar->resp_headers;
        px->stream_head_len = (size_t)rn;
    }
    px->stream = scan.stream;
    px->req = req;
    px->pool = &gen->pools[gen->pool_base[route->provider] + ep_index];
    px->ops = &proxy_ops;
    px->resp_headers = ar->resp_headers != NULL ? ar->resp_headers : "";
    px->resp_headers_len = (size_t)rn;
    px->upstream_name = prov->name;
    px->connect_timeout_ms =
        prov->connect_timeout_ms ? prov->connect_timeout_ms : cfg->upstream_connect_timeout_ms;
    px->first_byte_timeout_ms = prov->first_byte_timeout_ms ? prov->first_byte_timeout_ms
                                                            : cfg->upstream_first_byte_timeout_ms;
    px->idle_timeout_ms =
        prov->idle_timeout_ms ? prov->idle_timeout_ms : cfg->upstream_idle_timeout_ms;
    lx_list_insert_tail(&gw->active, &ar->link);
    lx_proxy_start(px);
}

void lx_api_handle(lx_http_request_t *req)
{
    lx_gw_worker_t *gw = req->worker->data;
    const lx_config_t *cfg = gw->gen->cfg;
    size_t ri = 0;
    int route = find_route(req->path, &ri);
    req->data = NULL;
    switch (route) {
    case R_NONE:
        lx_http_server_respond_error(req, 404, NULL, "no such route");
        return;
    case R_HEALTHZ:
    case R_READYZ:
        if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
            lx_http_server_respond_error(req, 405, "Allow: GET, HEAD\r\n", "method not allowed");
            return;
        }
        if (route == R_READYZ && gw->draining) {
            respond_json(req, 503, "{\"status\":\"draining\"}\n", 21);
            return;
        }
        respond_json(req, 200, "{\"status\":\"ok\"}\n", 16);
        return;
    default:
        break;
    }
    if (req->method != routes[ri].method) {
        lx_http_server_respond_error(
            req, 405, routes[ri].method == HTTP_GET ? "Allow: GET\r\n" : "Allow: POST\r\n",
            "method not allowed");
        return;
    }
    if (!cfg->auth_none) {
        const lx_http_header_t *h = lx_http_request_header(req, "authorization");
        if (h == NULL) {
            lx_http_server_respond_error(req, 401, NULL,
                                         "missing API key: send Authorization: Bearer <key>");
            return;
        }
        if (lx_auth_check(cfg, h->value.ptr, h->value.len) == NULL) {
            lx_http_server_respond_error(req, 401, NULL, "invalid API key");
            return;
        }
    }
    if (route == R_MODELS) {
        respond_json(req, 200, gw->gen->models_json, gw->gen->models_json_len);
        return;
    }
    forward(req, gw, ri);
}

/* Usage and cost: from the upstream's usage object; unknown counts are null, never 0. A
 * stream cut short (or cancelled) without one is marked partial. */
/* Usage and cost: from the upstream's usage object; unknown counts are null, never 0. A
 * stream cut short (or cancelled) without one is marked partial. */
static void log_usage(const api_req_t *ar, lx_strbuf_t *sb)
{
    const lx_sse_scan_t *sc = &ar->scan;
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

static void log_ms(lx_strbuf_t *sb, uint64_t from_ns, uint64_t to_ns)
{
    if (to_ns == 0)
        LX_STRBUF_LIT(sb, "-1");
    else
        lx_strbuf_fixed(sb, (double)(to_ns - from_ns) / 1e6, 3);
}

static const char *method_name(int m)
{
    return llhttp_method_name((llhttp_method_t)m);
}

void lx_api_done(lx_http_request_t *req)
{
    lx_gw_worker_t *gw = req->worker->data;
    api_req_t *ar = req->data;
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
        if (!sb.overflow)
            sb.p += lx_log_json_escape(sb.p, LX_MIN((size_t)(sb.end - sb.p), 512), req->path.ptr,
                                       req->path.len);
        LX_STRBUF_LIT(&sb, "\",\"status\":");
        lx_strbuf_i64(&sb, req->status);
        LX_STRBUF_LIT(&sb, ",\"bytes_in\":");
        lx_strbuf_u64(&sb, req->bytes_in);
        LX_STRBUF_LIT(&sb, ",\"bytes_out\":");
        lx_strbuf_u64(&sb, req->bytes_out);
        LX_STRBUF_LIT(&sb, ",\"duration_ms\":");
        lx_strbuf_u64(&sb, req->start_ms ? now - req->start_ms : 0);
        if (ar != NULL) {
            lx_proxy_t *px = &ar->px;
            LX_STRBUF_LIT(&sb, ",\"model\":\"");
            lx_strbuf_str(&sb, ar->model->id);
            LX_STRBUF_LIT(&sb, "\",\"provider\":\"");
            lx_strbuf_str(&sb, ar->provider->name);
            LX_STRBUF_LIT(&sb, "\",\"upstream\":\"");
            lx_strbuf_str(&sb, ar->endpoint->url);
            LX_STRBUF_LIT(&sb, "\",\"upstream_status\":");
            lx_strbuf_i64(&sb, px->upstream_status);
            LX_STRBUF_LIT(&sb, ",\"attempts\":1,\"reused\":");
            lx_strbuf_str(&sb, px->reused ? "true" : "false");
            LX_STRBUF_LIT(&sb, ",\"upstream_connect_ms\":");
            log_ms(&sb, px->t_start_ns, px->t_connected_ns);
            LX_STRBUF_LIT(&sb, ",\"first_byte_ms\":");
            log_ms(&sb, px->t_start_ns, px->t_first_byte_ns);
            log_usage(ar, &sb);
            if (ar->finish_code != 0) {
                LX_STRBUF_LIT(&sb, ",\"error\":\"");
                lx_strbuf_str(&sb, px->error != NULL ? px->error : lx_strerror(ar->finish_code));
                LX_STRBUF_LIT(&sb, "\"");
            }
        }
        LX_STRBUF_LIT(&sb, "}\n");
        if (!sb.overflow)
            lx_access_log_commit(gw->alog, lx_strbuf_len(&sb, p));
    }
    if (ar != NULL) {
        req->data = NULL;
        api_unref(ar);
    }
}
