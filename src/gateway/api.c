/*
 * api.c - the OpenAI-compatible API: the routes, and one request from its head to its free.
 *
 *   head complete ─> lx_api_head: route (path, method) ─> auth (Bearer key, constant time)
 *   ─> body read ─> lx_api_handle: body scan (once) ─> the plan and attempt 1 (dispatch.c)
 *   ─> upstream request: a new head + the original body bytes spliced (model value replaced,
 *   llmux's own fields removed), never re-serialized ─> lx_proxy_start ─> ...
 *   ─> lx_api_done: access log line (request_log.c), free
 *
 * A request is admitted on its head alone, before any body byte is read or 100 Continue is
 * sent, so a client without a key cannot make llmux buffer a body; the verdict rides in
 * req->data to the handler, which does not check again. Routes are served under /v1 and
 * /api/v1 alike; /healthz and /readyz need no key.
 */
#include "gateway/api.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "gateway/admin.h"
#include "gateway/admission.h"
#include "gateway/auth.h"
#include "gateway/dispatch.h"
#include "gateway/fleet_queue.h"
#include "gateway/gen.h"
#include "gateway/keys_api.h"
#include "gateway/request.h"
#include "gateway/request_log.h"
#include "gateway/service.h"
#include "account/account.h"
#include "http/http_sse.h"
#include "llm/api_error.h"
#include "llm/body.h"
#include "llm/models.h"
#include "llm/sse_scan.h"
#include "route/session.h"

enum api_route {
    R_HEALTHZ,
    R_READYZ,
    R_MODELS,
    R_MODEL, /* /models/{id} */
    R_CHAT,
    R_COMPLETIONS,
    R_EMBEDDINGS,
    R_METRICS,
    R_ADMIN_HEALTH,
    R_KEY,        /* GET /key: the calling key */
    R_KEYS,       /* GET, POST /keys */
    R_KEYS_ONE,   /* GET, PATCH, DELETE /keys/{hash} */
    R_GENERATION, /* GET /generation?id= */
    R_ACTIVITY,   /* GET /activity */
};

/* Who may call a route. */
enum api_access {
    A_PUBLIC,     /* anyone: the health checks */
    A_ADMIN,      /* a management key (the admin pages; /metrics unless metrics_public) */
    A_CLIENT,     /* a client key (or none under `auth: none`): inference and the models */
    A_KEY,        /* any key, management keys included: what a key may read about itself */
    A_MANAGEMENT, /* a management key: the keys API */
};

#define M_MANY (-1) /* several methods: the handler checks */

#define RESP_HEADERS_MAX 1024

typedef lx_gw_req_t api_req_t;

typedef struct api_route_def {
    const char *path; /* the whole path, or for the API the part after /v1 or /api/v1 */
    uint8_t len;      /* strlen(path), so routing compares lengths first */
    enum api_route route;
    bool api; /* served under /v1 and /api/v1 */
    uint8_t access;
    int method; /* its one method; 0: GET and HEAD; M_MANY: the handler checks */
    const char *upstream_path;
} api_route_def_t;

#define ROUTE(path, ...)                                                                           \
    {                                                                                              \
        path, sizeof(path) - 1, __VA_ARGS__                                                        \
    }

static const api_route_def_t routes[] = {
    ROUTE("/healthz", R_HEALTHZ, false, A_PUBLIC, 0, NULL),
    ROUTE("/readyz", R_READYZ, false, A_PUBLIC, 0, NULL),
    ROUTE("/metrics", R_METRICS, false, A_ADMIN, 0, NULL),
    ROUTE("/admin/health", R_ADMIN_HEALTH, false, A_ADMIN, 0, NULL),
    ROUTE("/chat/completions", R_CHAT, true, A_CLIENT, HTTP_POST, "/chat/completions"),
    ROUTE("/completions", R_COMPLETIONS, true, A_CLIENT, HTTP_POST, "/completions"),
    ROUTE("/embeddings", R_EMBEDDINGS, true, A_CLIENT, HTTP_POST, "/embeddings"),
    ROUTE("/models", R_MODELS, true, A_CLIENT, HTTP_GET, NULL),
    ROUTE("/models/", R_MODEL, true, A_CLIENT, HTTP_GET, NULL), /* a prefix: the id follows */
    ROUTE("/key", R_KEY, true, A_KEY, HTTP_GET, NULL),
    ROUTE("/keys", R_KEYS, true, A_MANAGEMENT, M_MANY, NULL),
    ROUTE("/keys/", R_KEYS_ONE, true, A_MANAGEMENT, M_MANY, NULL), /* a prefix: the hash */
    ROUTE("/generation", R_GENERATION, true, A_KEY, HTTP_GET, NULL),
    ROUTE("/activity", R_ACTIVITY, true, A_KEY, HTTP_GET, NULL),
};

/* From lx_api_head to lx_api_handle, req->data points at the routes[] entry the head was
 * admitted for; lx_api_done, which may see a request that never reached the handler (its body
 * timed out), tells such a pointer from a request struct with this. */
static const api_route_def_t *admitted_route(const lx_http_request_t *req)
{
    uintptr_t p = (uintptr_t)req->data, first = (uintptr_t)&routes[0];
    if (p < first || p >= (uintptr_t)&routes[LX_ARRAY_SIZE(routes)])
        return NULL;
    return &routes[(p - first) / sizeof(routes[0])];
}

size_t lx_api_format_error(const lx_http_request_t *req, char *buf, size_t cap, int status,
                           const char *message)
{
    int n = lx_api_error_format(buf, cap, lx_api_error_kind(req->path.ptr, req->path.len), status,
                                message, strlen(message));
    return n < 0 ? 0 : (size_t)n;
}

static const api_route_def_t *find_route(lx_str_t path)
{
    bool api = true;
    if (path.len >= 7 && memcmp(path.ptr, "/api/v1", 7) == 0)
        path = (lx_str_t){path.ptr + 7, path.len - 7};
    else if (path.len >= 3 && memcmp(path.ptr, "/v1", 3) == 0)
        path = (lx_str_t){path.ptr + 3, path.len - 3};
    else
        api = false;
    for (size_t i = 0; i < LX_ARRAY_SIZE(routes); i++) {
        size_t n = routes[i].len;
        bool prefix = routes[i].route == R_MODEL || routes[i].route == R_KEYS_ONE;
        if (routes[i].api == api && (prefix ? path.len > n : path.len == n) &&
            memcmp(path.ptr, routes[i].path, n) == 0)
            return &routes[i];
    }
    return NULL;
}

/* The methods a route takes: true when <method> is one; *allow is its Allow header. */
static bool method_ok(const api_route_def_t *rt, int method, const char **allow)
{
    switch (rt->route) {
    case R_KEYS:
        *allow = "Allow: GET, POST\r\n";
        return method == HTTP_GET || method == HTTP_POST;
    case R_KEYS_ONE:
        *allow = "Allow: GET, PATCH, DELETE\r\n";
        return method == HTTP_GET || method == HTTP_PATCH || method == HTTP_DELETE;
    default:
        *allow = rt->method == 0          ? "Allow: GET, HEAD\r\n"
                 : rt->method == HTTP_GET ? "Allow: GET\r\n"
                                          : "Allow: POST\r\n";
        return rt->method == 0 ? method == HTTP_GET || method == HTTP_HEAD : method == rt->method;
    }
}

/* Whether the caller <id> may use a route of <access>: 0, or 401 / 403 / 404 with *message. */
static int access_ok(const lx_config_t *cfg, uint8_t access, int found, const lx_gw_ident_t *id,
                     const char **message)
{
    bool mgmt = id->who == LX_WHO_MANAGEMENT;
    switch (access) {
    case A_ADMIN:
        if (!cfg->admin_enabled) {
            *message = "the admin API is off (no `admin` section in the configuration)";
            return 404;
        }
        if (found != 0 || !mgmt || id->index != 0) { /* (admin.sha256, not admin.keys) */
            *message = id->who == LX_WHO_NONE && strncmp(*message, "missing", 7) == 0
                           ? "missing admin key: send Authorization: Bearer <admin key>"
                           : "invalid admin key";
            return 401;
        }
        return 0;
    case A_MANAGEMENT:
        if (found != 0)
            return found;
        if (!mgmt) {
            *message = id->who == LX_WHO_NONE ? "missing management key: send Authorization: "
                                                "Bearer <management key>"
                                              : "Only management keys can perform this operation";
            return id->who == LX_WHO_NONE ? 401 : 403;
        }
        return 0;
    case A_KEY:
        return found;
    default: /* A_CLIENT */
        if (found != 0)
            return found;
        if (mgmt) {
            *message = "a management key cannot make requests: use an API key";
            return 403;
        }
        return 0;
    }
}

/* Route, method and key, from the head alone: 0 with *out and the caller in req->app, or the
 * status of the refusal with its message and extra header lines. */
static int admit(lx_http_request_t *req, lx_gw_worker_t *gw, const api_route_def_t **out,
                 const char **message, const char **headers)
{
    const lx_config_t *cfg = gw->gen->cfg;
    const api_route_def_t *rt = find_route(req->path);
    *headers = NULL;
    if (rt == NULL) {
        *message = "no such route";
        return 404;
    }
    if (!method_ok(rt, req->method, headers)) {
        *message = "method not allowed";
        return 405;
    }
    *headers = NULL;
    lx_gw_ident_t id = {.who = LX_WHO_NONE};
    *message = "";
    if (rt->access != A_PUBLIC && !(rt->route == R_METRICS && cfg->metrics_public)) {
        int found = lx_gw_identify(req, gw, &id, message);
        int status = access_ok(cfg, rt->access, found, &id, message);
        if (status != 0)
            return status;
    }
    memcpy(req->app, &id, sizeof(id));
    *out = rt;
    return 0;
}

int lx_api_head(lx_http_request_t *req, const char **message, const char **headers)
{
    lx_gw_worker_t *gw = req->worker->data;
    const api_route_def_t *rt = NULL;
    int status = admit(req, gw, &rt, message, headers);
    req->data = status == 0 ? (void *)rt : NULL;
    return status;
}

static void respond_json(lx_http_request_t *req, int status, const char *body, size_t len)
{
    static const char ct[] = "Content-Type: application/json\r\n";
    lx_http_server_respond(req, status, ct, sizeof(ct) - 1, body, len);
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
        int n = lx_json_unescape(s, (size_t)(p - s), msg, cap - 1);
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

/* /readyz: 503 while draining, or while the store cannot write (the reason is in the body;
 * requests are still served and counted, and the records wait in memory). */
static void serve_ready(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    if (gw->draining) {
        respond_json(req, 503, "{\"status\":\"draining\"}\n", 21);
        return;
    }
    char why[200];
    lx_store_t *store = gw->gw->store;
    if (store != NULL && !lx_store_healthy(store, why, sizeof(why))) {
        char body[400];
        lx_strbuf_t b = lx_strbuf_make(body, sizeof(body));
        LX_STRBUF_LIT(&b, "{\"status\":\"store_failing\",\"reason\":\"");
        char esc[300];
        size_t used;
        size_t en = lx_json_escape(esc, sizeof(esc), why, strlen(why), &used);
        lx_strbuf_mem(&b, esc, en);
        LX_STRBUF_LIT(&b, "\"}\n");
        respond_json(req, 503, body, lx_strbuf_len(&b, body));
        return;
    }
    respond_json(req, 200, "{\"status\":\"ok\"}\n", 16);
}

/* GET /v1/models/{id} (and /api/v1): the id is the rest of the path, its '/' included, as
 * OpenAI's client.models.retrieve() asks for it. */
static void serve_model(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    bool api = req->path.len >= 5 && memcmp(req->path.ptr, "/api/", 5) == 0;
    size_t at = api ? sizeof("/api/v1/models/") - 1 : sizeof("/v1/models/") - 1;
    int status;
    size_t len;
    char *body = lx_models_retrieve(gw->gen->cfg, api ? LX_API_OPENROUTER : LX_API_OPENAI,
                                    req->path.ptr + at, req->path.len - at, &status, &len);
    if (body == NULL) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    respond_json(req, status, body, len);
    free(body);
}

/* Request structs are kept per worker for the next requests (a few KiB each, one per
 * request): malloc and free on every request cost more than the list. */
static api_req_t *req_get(lx_gw_worker_t *gw)
{
    if (gw->n_req_cache > 0)
        return gw->req_cache[--gw->n_req_cache];
    return malloc(sizeof(api_req_t));
}

static void req_put(lx_gw_worker_t *gw, api_req_t *ar)
{
    if (gw->n_req_cache < LX_GW_REQ_CACHE)
        gw->req_cache[gw->n_req_cache++] = ar;
    else
        free(ar);
}

/* The one cleanup of a request struct, when its last holder lets go: forward() until the
 * proxy starts, then the proxy (on_free) and the server (on_done). */
static void api_unref(api_req_t *ar)
{
    if (--ar->refs > 0)
        return;
    lx_gw_release(ar); /* (a request that ended before the proxy's finish, or never started) */
    if (ar->scanning)
        lx_sse_scan_dispose(&ar->sse);
    for (unsigned i = 0; i < ar->px.n_out; i++) /* (a request the proxy never started) */
        lx_buf_unref(ar->px.out[i].buf);
    lx_buf_unref(ar->resp_headers);
    free(ar->stream_head);
    lx_gw_gen_unref(ar->gw, ar->gen);
    req_put(ar->gw, ar);
}

static void on_proxy_finish(lx_proxy_t *px, int code)
{
    api_req_t *ar = (api_req_t *)px;
    ar->finish_code = code;
    lx_list_remove(&ar->link);
    lx_dispatch_end_attempt(ar, code);
    if (ar->gw->n_waiting > 0)
        lx_gw_queue_slot_freed(ar->gw);
    if (code == 0 && px->upstream_status < 400)
        lx_dispatch_served(ar);
    lx_gw_settle(ar, code);
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
    bool resizes = ar->rewrite;
    lx_buf_pool_t *pool = &ar->gw->worker.bufs;
    if (ar->scanning) {
        lx_sse_scan_dispose(&ar->sse); /* (an earlier attempt's answer never comes here) */
        ar->scanning = false;
    }
    if (has_prefix_ci(hc->content_type, "text/event-stream")) {
        rc = lx_sse_scan_init(&ar->sse, model, mlen, ar->drop_usage, pool);
    } else if (has_prefix_ci(hc->content_type, "application/json")) {
        /* A plain answer says what served it, as OpenRouter's: the public id as "model" and a
         * "provider" member after it. Both ride on the model rewrite: the replacement text
         * closes the model string, adds the member, and leaves the original closing quote to
         * end the provider's name. Names and ids need no escaping (the config checks them). */
        char lit[600];
        lx_strbuf_t lb = lx_strbuf_make(lit, sizeof(lit));
        lx_strbuf_str(&lb, ar->model->id);
        LX_STRBUF_LIT(&lb, "\",\"provider\":\"");
        lx_strbuf_str(&lb, ar->provider->name);
        size_t n = lx_strbuf_len(&lb, lit);
        if (!lb.overflow && !ar->embeddings) {
            rc = lx_sse_scan_init_json(&ar->sse, lit, n, pool);
            resizes = true;
        } else {
            rc = lx_sse_scan_init_json(&ar->sse, model, mlen, pool);
        }
    }
    if (rc == 0) {
        ar->scanning = true;
        px->filter_on = true;
        px->filter_resizes = resizes; /* observing alone keeps every byte */
    }
}

static int on_proxy_filter(lx_proxy_t *px, lx_buf_t *b, const char *at, size_t len, lx_slice_t *out,
                           size_t *used)
{
    api_req_t *ar = (api_req_t *)px;
    return lx_sse_scan_feed(&ar->sse, b, at, len, out, LX_PROXY_FILTER_MAX, used);
}

static int on_proxy_filter_end(lx_proxy_t *px, lx_slice_t *out)
{
    api_req_t *ar = (api_req_t *)px;
    return lx_sse_scan_flush(&ar->sse, out, LX_PROXY_FILTER_MAX);
}

/* A stream is finished when it said so: [DONE], or a final finish_reason inside complete HTTP
 * framing. A close-delimited stream cut short says neither. */
static bool on_proxy_end_ok(lx_proxy_t *px)
{
    api_req_t *ar = (api_req_t *)px;
    if (!ar->scanning || ar->sse.json_mode)
        return true;
    return ar->sse.done || (ar->sse.finished && (px->hc.chunked || px->hc.has_length));
}

/* The final event of a stream that failed after its 200: an error the client's SDK sees. */
static size_t on_proxy_format_cut(lx_proxy_t *px, int status, const char *message, char *buf,
                                  size_t cap)
{
    return lx_dispatch_format_cut((api_req_t *)px, status, message, buf, cap);
}

static bool on_proxy_retry(lx_proxy_t *px, int code)
{
    api_req_t *ar = (api_req_t *)px;
    char msg[1024];
    lx_proxy_describe_failure(px, code, msg, sizeof(msg));
    bool again = lx_dispatch_next(ar, code);
    lx_log(LX_LOG_INFO, "request %.*s: attempt %u: %s%s", (int)px->req->id_len, px->req->id,
           ar->n_attempts - (again ? 1 : 0), msg, again ? "; trying the next provider" : "");
    return again;
}

static bool on_proxy_respond_error(lx_proxy_t *px, int code, int status, const char *message)
{
    return lx_dispatch_respond_error((api_req_t *)px, code, status, message);
}

static lx_proxy_hedge_t *on_proxy_hedge(lx_proxy_t *px)
{
    return lx_dispatch_hedge((api_req_t *)px);
}

static bool on_proxy_hedge_won(lx_proxy_t *px, int code)
{
    return lx_dispatch_hedge_won((api_req_t *)px, code);
}

static void on_proxy_hedge_ended(lx_proxy_t *px, lx_proxy_hedge_t *h, int code)
{
    lx_dispatch_hedge_ended((api_req_t *)px, h, code);
}

static const lx_proxy_ops_t proxy_ops = {
    .hedge = on_proxy_hedge,
    .hedge_won = on_proxy_hedge_won,
    .hedge_ended = on_proxy_hedge_ended,
    .retry = on_proxy_retry,
    .respond_error = on_proxy_respond_error,
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

/* A request struct for <gw>'s current configuration, held by the caller alone (refs 1). */
static api_req_t *req_new(lx_gw_worker_t *gw)
{
    /* the body scan and the response scanner initialise themselves: only the rest is zeroed
     * (they are the larger part of the struct) */
    api_req_t *ar = req_get(gw);
    _Static_assert(offsetof(lx_proxy_t, out) + sizeof(((lx_proxy_t *)0)->out) == sizeof(lx_proxy_t),
                   "the proxy's out[] is its last member");
    if (ar == NULL)
        return NULL;
    /* all but the proxy's out[] and the tail from plan[] on */
    memset(ar, 0, offsetof(api_req_t, px.out));
    memset(&ar->gw, 0, offsetof(api_req_t, plan) - offsetof(api_req_t, gw));
    ar->gw = gw;
    ar->gen = lx_gw_gen_ref(gw->gen);
    lx_list_init(&ar->link);
    ar->refs = 1;
    return ar;
}

/* The session: the body's session_id, else the X-Session-Id header; and the generation id. */
static void name_request(api_req_t *ar, lx_http_request_t *req, lx_gw_worker_t *gw)
{
    if (ar->scan.has_session_id && ar->scan.session_id.len > 0) {
        ar->session =
            lx_session_hash(req->body.ptr + ar->scan.session_id.off, ar->scan.session_id.len);
    } else {
        const lx_http_header_t *h = lx_http_request_header(req, "x-session-id");
        if (h != NULL && h->value.len > 0)
            ar->session = lx_session_hash(h->value.ptr, h->value.len);
    }
    /* (a number that sorts by arrival: store/record.h) */
    uint64_t now_ms = (uint64_t)lx_clock_now_us() / 1000;
    lx_record_id_format(ar->gen_id, lx_record_seq_next(&gw->gen_tick, now_ms, gw->worker.id));
}

/* Answer 200 now and keep the client company until the first token; the provider is not
 * known yet, so the head names only the request. */
static void early_commit(api_req_t *ar, const lx_config_t *cfg)
{
    lx_proxy_t *px = &ar->px;
    char rh[RESP_HEADERS_MAX];
    lx_strbuf_t rb = lx_strbuf_make(rh, sizeof(rh) - 1);
    LX_STRBUF_LIT(&rb, "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                       "X-Accel-Buffering: no\r\nX-Generation-Id: ");
    lx_strbuf_str(&rb, ar->gen_id);
    LX_STRBUF_LIT(&rb, "\r\n");
    lx_gw_ratelimit_append(ar, &rb);
    size_t rn = lx_strbuf_len(&rb, rh);
    ar->stream_head = malloc(rn + 1);
    if (ar->stream_head == NULL || rb.overflow)
        return;
    memcpy(ar->stream_head, rh, rn);
    ar->stream_head[rn] = '\0';
    px->stream_head = ar->stream_head;
    px->stream_head_len = rn;
    px->keepalive = LX_SSE_KEEPALIVE; /* an SSE comment: clients skip it */
    px->keepalive_len = LX_SSE_KEEPALIVE_LEN;
    px->keepalive_delay_ms = cfg->stream_keepalive_delay_ms;
    px->keepalive_interval_ms = cfg->stream_keepalive_interval_ms;
}

/* Hands <ar> (two references: the proxy's and the server's) to the proxy. */
static void start_proxy(api_req_t *ar, const lx_config_t *cfg)
{
    lx_proxy_t *px = &ar->px;
    if (ar->stream && cfg->stream_early_commit)
        early_commit(ar, cfg);
    px->stream = ar->stream;
    px->ops = &proxy_ops;
    lx_list_insert_tail(&ar->gw->active, &ar->link);
    lx_proxy_start(px);
}

/* The client of a request waiting in an admission queue left: off the queue at once. */
static void on_queued_abort(lx_http_request_t *req)
{
    api_req_t *ar = req->data;
    lx_gw_queue_leave(ar);
    req->on_abort = NULL;
    lx_http_server_finish(req); /* (on_done: the 499 line, and the server's reference) */
}

static void forward(lx_http_request_t *req, lx_gw_worker_t *gw, const api_route_def_t *rt)
{
    const lx_config_t *cfg = gw->gen->cfg;
    if (req->body.len == 0) {
        lx_http_server_respond_error(req, 400, NULL, "request body must be a JSON object");
        return;
    }
    api_req_t *ar = req_new(gw);
    if (ar == NULL) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    if (lx_body_scan(req->body.ptr, req->body.len, &ar->scan) != 0) {
        lx_http_server_respond_error(req, 400, NULL, ar->scan.error);
        api_unref(ar);
        return;
    }
    ar->upstream_path = rt->upstream_path;
    ar->embeddings = rt->route == R_EMBEDDINGS;
    ar->stream = ar->scan.stream;
    ar->openrouter = req->path.len >= 4 && memcmp(req->path.ptr, "/api", 4) == 0;
    lx_proxy_t *px = &ar->px;
    px->req = req;
    name_request(ar, req, gw);
    memcpy(&ar->ident, req->app, sizeof(ar->ident));
    const char *why = NULL;
    if (lx_gw_bind_key(ar, &why) != 0) {
        lx_http_server_respond_error(req, 401, NULL, why);
        api_unref(ar);
        return;
    }

    char msg[600];
    lx_gw_refusal_t refusal = {.headers = "", .meta = ""};
    ar->refusal = &refusal;
    int status = lx_dispatch_start(ar, req, msg, sizeof(msg));
    ar->key = NULL; /* (a view into the worker's snapshot: good for this call only) */
    ar->refusal = NULL;
    if (status == LX_DISPATCH_QUEUED) {
        /* it waits (fleet_queue.c): its one reference is the server's (on_done) */
        req->data = ar;
        req->on_abort = on_queued_abort;
        return;
    }
    if (status != 0) {
        ar->refusal = &refusal;
        lx_dispatch_reject(ar, status, msg);
        ar->refusal = NULL;
        api_unref(ar); /* (the server's on_done never sees it: req->data stays NULL) */
        return;
    }
    ar->refs = 2; /* the proxy (on_free) and the server (on_done: lx_proxy_start sets req->data) */
    start_proxy(ar, cfg);
}

void lx_api_resume(lx_gw_req_t *ar)
{
    lx_http_request_t *req = ar->px.req;
    req->on_abort = NULL;
    char msg[300];
    int status = lx_dispatch_resume(ar, msg, sizeof(msg));
    if (status != 0) {
        req->data = NULL;
        lx_dispatch_reject(ar, status, msg);
        api_unref(ar);
        return;
    }
    ar->refs = 2; /* the server's (held while it waited) and now the proxy's */
    start_proxy(ar, ar->gen->cfg);
}

void lx_api_refuse_queued(lx_gw_req_t *ar, int status, unsigned retry_after, const char *msg)
{
    lx_http_request_t *req = ar->px.req;
    req->on_abort = NULL;
    req->data = NULL; /* (answered here: on_done logs it without the struct, as a refusal) */
    lx_gw_refusal_t f = {.headers = "", .meta = ""};
    if (status == 429) {
        snprintf(f.headers, sizeof(f.headers), "Retry-After: %u\r\n", retry_after);
        f.error_type = "rate_limit_exceeded";
        f.code = "rate_limit_exceeded";
    }
    ar->refusal = &f;
    lx_dispatch_reject(ar, status, msg);
    ar->refusal = NULL;
    api_unref(ar);
}

void lx_api_handle(lx_http_request_t *req)
{
    lx_gw_worker_t *gw = req->worker->data;
    /* admitted on its head (the usual case), else here */
    const api_route_def_t *rt = admitted_route(req);
    req->data = NULL;
    if (rt == NULL) {
        const char *message, *headers;
        int status = admit(req, gw, &rt, &message, &headers);
        if (status != 0) {
            lx_http_server_respond_error(req, status, headers, message);
            return;
        }
    }
    switch (rt->route) {
    case R_HEALTHZ:
    case R_READYZ:
        if (rt->route == R_READYZ)
            serve_ready(req, gw);
        else
            respond_json(req, 200, "{\"status\":\"ok\"}\n", 16);
        return;
    case R_METRICS:
        lx_admin_serve_metrics(req, gw);
        return;
    case R_ADMIN_HEALTH:
        lx_admin_serve_health(req, gw);
        return;
    case R_MODELS:
        respond_json(req, 200, gw->gen->models_json, gw->gen->models_json_len);
        return;
    case R_MODEL:
        serve_model(req, gw);
        return;
    case R_KEY:
    case R_KEYS:
    case R_KEYS_ONE:
    case R_GENERATION:
    case R_ACTIVITY:
        lx_keys_api_serve(req, gw, (int)rt->route - R_KEY);
        return;
    default:
        forward(req, gw, rt);
        return;
    }
}

void lx_api_done(lx_http_request_t *req)
{
    lx_gw_worker_t *gw = req->worker->data;
    /* (a request admitted on its head that never reached the handler has no struct) */
    api_req_t *ar = admitted_route(req) == NULL ? req->data : NULL;
    lx_gw_request_log(gw, req, ar);
    req->data = NULL;
    if (ar != NULL)
        api_unref(ar);
}
