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
    char path[1024];
    int plen =
        snprintf(path, sizeof(path), "%s%s", prov->base_path, routes[route_index].upstream_path);
    char host[300];
    if ((ep->port == 80 && !ep->tls) || (ep->port == 443 && ep->tls))
        snprintf(host, sizeof(host), "%s", ep->host);
    else if (strchr(ep->host, ':') != NULL)
        snprintf(host, sizeof(host), "[%s]:%u", ep->host, ep->port);
    else
        snprintf(host, sizeof(host), "%s:%u", ep->host, ep->port);

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
    bool ok = np > 0 && lx_http_client_format_head(head, "POST", path, (size_t)plen, host, NULL, 0,
                                                   (int64_t)total) == 0;
    if (ok) {
        head->len -= 2; /* reopen the head: more headers follow */
        ok = append_str(head, "Content-Type: application/json\r\n", 32) &&
             append_header(head, "X-Request-Id", 12, req->id, req->id_len);
        if (ok && prov->api_key != NULL) {
            char auth[1024];
            int an = snprintf(auth, sizeof(auth), "Bearer %s", prov->api_key);
            ok = an > 0 && (size_t)an < sizeof(auth) &&
                 append_header(head, "Authorization", 13, auth, (size_t)an);
        }
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
    snprintf(ar->gen_id, sizeof(ar->gen_id), "gen-%u-%016llx", gw->worker.id,
             (unsigned long long)(++gw->generations ^ gw->gen_seed));
    char rh[RESP_HEADERS_MAX];
    bool early = false;
    int rn = snprintf(rh, sizeof(rh),
                      "%sX-Generation-Id: %s\r\nX-Llmux-Provider: %s\r\nX-Llmux-Model: %s\r\n"
                      "X-Llmux-Upstream-Model: %s\r\nX-Llmux-Attempts: 1\r\n",
                      scan.stream ? "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n" : "",
                      ar->gen_id, prov->name, model->id, up_model);
    if (rn < 0 || (size_t)rn >= RESP_HEADERS_MAX)
        rn = 0;
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
static size_t log_usage(const api_req_t *ar, char *p, size_t cap)
{
    const lx_sse_scan_t *sc = &ar->scan;
    bool known = ar->scanning && sc->prompt_tokens >= 0 && sc->completion_tokens >= 0;
    char pt[24] = "null", ct[24] = "null", cost[40] = "null";
    if (ar->scanning && sc->prompt_tokens >= 0)
        snprintf(pt, sizeof(pt), "%lld", (long long)sc->prompt_tokens);
    if (ar->scanning && sc->completion_tokens >= 0)
        snprintf(ct, sizeof(ct), "%lld", (long long)sc->completion_tokens);
    if (known)
        snprintf(cost, sizeof(cost), "%.9f",
                 ((double)sc->prompt_tokens * ar->route->price_prompt +
                  (double)sc->completion_tokens * ar->route->price_completion) /
                     1e6);
    bool partial = ar->finish_code != 0 || ar->px.cut;
    int k = snprintf(p, cap,
                     ",\"stream\":%s,\"prompt_tokens\":%s,\"completion_tokens\":%s,"
                     "\"cost_usd\":%s,\"usage\":\"%s\",\"events\":%llu",
                     ar->stream ? "true" : "false", pt, ct, cost,
                     known ? (partial ? "partial" : "complete") : (partial ? "partial" : "unknown"),
                     (unsigned long long)(ar->scanning ? sc->events : 0));
    return k > 0 && (size_t)k < cap ? (size_t)k : 0;
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
        char ts[32];
        lx_log_time(ts, sizeof(ts));
        uint64_t now = uv_now(&gw->worker.loop);
        size_t n = 0;
        int k = snprintf(p, cap, "{\"time\":\"%s\",\"request_id\":\"%.*s\",\"method\":\"%s\",", ts,
                         (int)req->id_len, req->id, req->method ? method_name(req->method) : "");
        n += k > 0 ? (size_t)k : 0;
        if (n + 16 < cap) {
            memcpy(p + n, "\"path\":\"", 8);
            n += 8;
            n += lx_log_json_escape(p + n, LX_MIN(cap - n - 8, 512), req->path.ptr, req->path.len);
            p[n++] = '"';
        }
        k = snprintf(p + n, cap - n,
                     ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%llu",
                     req->status, (unsigned long long)req->bytes_in,
                     (unsigned long long)req->bytes_out,
                     (unsigned long long)(req->start_ms ? now - req->start_ms : 0));
        n += k > 0 ? (size_t)k : 0;
        if (ar != NULL && n < cap) {
            lx_proxy_t *px = &ar->px;
            double connect_ms =
                px->t_connected_ns ? (double)(px->t_connected_ns - px->t_start_ns) / 1e6 : -1;
            double fb_ms =
                px->t_first_byte_ns ? (double)(px->t_first_byte_ns - px->t_start_ns) / 1e6 : -1;
            k = snprintf(p + n, cap - n,
                         ",\"model\":\"%s\",\"provider\":\"%s\",\"upstream\":\"%s\","
                         "\"upstream_status\":%d,\"attempts\":1,\"reused\":%s,"
                         "\"upstream_connect_ms\":%.3f,\"first_byte_ms\":%.3f",
                         ar->model->id, ar->provider->name, ar->endpoint->url, px->upstream_status,
                         px->reused ? "true" : "false", connect_ms, fb_ms);
            n += k > 0 ? (size_t)k : 0;
            if (n < cap)
                n += log_usage(ar, p + n, cap - n);
            if (ar->finish_code != 0 && n < cap) {
                k = snprintf(p + n, cap - n, ",\"error\":\"%s\"",
                             px->error != NULL ? px->error : lx_strerror(ar->finish_code));
                n += k > 0 ? (size_t)k : 0;
            }
        }
        if (n + 2 <= cap) {
            p[n++] = '}';
            p[n++] = '\n';
            lx_access_log_commit(gw->alog, n);
        }
    }
    if (ar != NULL) {
        req->data = NULL;
        api_unref(ar);
    }
}
