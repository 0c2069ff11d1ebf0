/*
 * dispatch_answer.c - what a request's attempts turn into on the way out: the error answer
 * when every attempt failed (its status chosen from the attempts' outcomes, error.metadata
 * listing them), the answer of a request that could not be routed, and the error event of a
 * stream cut after its 200 (the access log's attempt list is request_log.c's).
 *
 * Every error is formatted by llm/api_error.c in the envelope of the request's API (/v1:
 * OpenAI's, /api/v1: OpenRouter's); names and ids come from the configuration, which checks
 * them, so they need no escaping; no URL, key or header of a provider reaches a client.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/strbuf.h"
#include "http/http_sse.h"
#include "gateway/dispatch.h"
#include "llm/api_error.h"

/* A string member of a provider's error body (raw JSON contents) decoded into out[cap], or
 * NULL: absent, too long, not decodable, or holding a NUL. */
static const char *upstream_string(const char *raw, size_t len, char *out, size_t cap)
{
    if (raw == NULL)
        return NULL;
    int n = lx_json_unescape(raw, len, out, cap - 1);
    if (n < 0 || memchr(out, '\0', (size_t)n) != NULL)
        return NULL;
    out[n] = '\0';
    return out;
}

static const char *attempt_error_type(const lx_gw_attempt_t *a)
{
    return lx_health_outcome_name((lx_health_outcome_t)a->outcome);
}

static const lx_config_provider_t *attempt_provider(const lx_config_t *cfg,
                                                    const lx_gw_attempt_t *a)
{
    return &cfg->providers[cfg->models[a->model].routes[a->route].provider];
}

/* The status and error type of the final answer, from the attempts' outcomes: the client's own
 * error keeps <status> (no type); llmux's connection limit is a 503; all rate limited a 429
 * (*min_retry: the smallest Retry-After, -1 without one); all 5xx or timeouts a 503; else 502.
 * A hedge cancelled or lost before the last attempt says nothing of the providers: it does not
 * count. */
static int final_status(const lx_gw_req_t *r, int status, const char **etype, int64_t *min_retry)
{
    bool all_429 = true, all_server = true;
    *min_retry = -1;
    *etype = NULL;
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        if (i + 1 < r->n_attempts &&
            (a->outcome == LX_HEALTH_CANCELED || a->outcome == LX_HEALTH_HEDGED))
            continue; /* (the last is the current attempt: it always counts) */
        all_429 = all_429 && a->outcome == LX_HEALTH_RATE_LIMIT;
        all_server =
            all_server && (a->outcome == LX_HEALTH_SERVER || a->outcome == LX_HEALTH_TIMEOUT);
        if (a->outcome == LX_HEALTH_RATE_LIMIT && a->retry_after >= 0 &&
            (*min_retry < 0 || a->retry_after < *min_retry))
            *min_retry = a->retry_after;
    }
    const lx_gw_attempt_t *last = &r->attempts[r->n_attempts - 1];
    if (last->outcome == LX_HEALTH_CLIENT)
        return status; /* the client's own error: its status and the provider's reason */
    if (last->outcome == LX_HEALTH_GATEWAY_LIMIT) {
        *etype = "gateway_limit"; /* llmux's own connection limit: no provider is to blame */
        return 503;
    }
    if (all_429) {
        *etype = "rate_limit_exceeded";
        return 429;
    }
    if (all_server) {
        *etype = "provider_overloaded";
        return 503;
    }
    *etype = "provider_unavailable";
    return 502;
}

/* `"attempts":[{provider, model, status, error_type}, ...]` into <meta>: its length, 0 when it
 * does not fit. */
static size_t attempts_meta(const lx_gw_req_t *r, char *meta, size_t cap)
{
    const lx_config_t *cfg = r->gen->cfg;
    lx_strbuf_t mb = lx_strbuf_make(meta, cap);
    LX_STRBUF_LIT(&mb, "\"attempts\":[");
    for (unsigned i = 0; i < r->n_attempts; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        if (i > 0)
            LX_STRBUF_LIT(&mb, ",");
        /* names and ids are plain (the config validates them); no URL, key or header */
        LX_STRBUF_LIT(&mb, "{\"provider\":\"");
        lx_strbuf_str(&mb, attempt_provider(cfg, a)->name);
        LX_STRBUF_LIT(&mb, "\",\"model\":\"");
        lx_strbuf_str(&mb, cfg->models[a->model].id);
        LX_STRBUF_LIT(&mb, "\",\"status\":");
        if (a->status > 0)
            lx_strbuf_i64(&mb, a->status);
        else
            LX_STRBUF_LIT(&mb, "null");
        LX_STRBUF_LIT(&mb, ",\"error_type\":\"");
        lx_strbuf_str(&mb, attempt_error_type(a));
        LX_STRBUF_LIT(&mb, "\"}");
    }
    LX_STRBUF_LIT(&mb, "]");
    return mb.overflow ? 0 : lx_strbuf_len(&mb, meta);
}

/* The provider's own answer, relayed with its status: its OpenAI code and param go with it
 * into <e> (not when llmux changed the status: a provider's "invalid_api_key" is about llmux's
 * key, not the client's), and OpenRouter's provider metadata (provider_code only below 500)
 * into <pb>. */
static void upstream_fields(const lx_gw_req_t *r, int status, lx_api_error_t *e, char *ucode,
                            char *uparam, size_t ucap, lx_strbuf_t *pb)
{
    const lx_gw_attempt_t *last = &r->attempts[r->n_attempts - 1];
    lx_api_upstream_error_t up;
    if (status != last->status || !lx_api_error_parse_upstream(r->px.err_body, r->px.err_len, &up))
        return;
    e->code = upstream_string(up.code, up.code_len, ucode, ucap);
    e->param = upstream_string(up.param, up.param_len, uparam, ucap);
    LX_STRBUF_LIT(pb, "\"provider_name\":\"");
    lx_strbuf_str(pb, attempt_provider(r->gen->cfg, last)->name); /* plain (config checks it) */
    LX_STRBUF_LIT(pb, "\",");
    if (e->code != NULL && status < 500) {
        char esc[6 * 128];
        LX_STRBUF_LIT(pb, "\"provider_code\":\"");
        lx_strbuf_mem(pb, esc, lx_api_error_escape(esc, sizeof(esc), ucode, strlen(ucode), NULL));
        LX_STRBUF_LIT(pb, "\",");
    }
}

/* Sends the error answer <body> with its Retry-After: the smallest of a 429's attempts, 1 for
 * a 503. */
static void send_error(lx_gw_req_t *r, int status, int64_t min_retry, const char *body, size_t n)
{
    char head[160];
    int hn = snprintf(head, sizeof(head), "Content-Type: application/json\r\n");
    if (status == 429 && min_retry >= 0)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Retry-After: %lld\r\n",
                       (long long)min_retry);
    else if (status == 503)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Retry-After: 1\r\n");
    r->px.client_status = status;
    lx_http_server_respond(r->px.req, status, head, (size_t)hn, body, n);
}

bool lx_dispatch_respond_error(lx_gw_req_t *r, int code, int status, const char *message)
{
    (void)code;
    if (r->n_attempts == 0)
        return false;
    const char *etype;
    int64_t min_retry;
    status = final_status(r, status, &etype, &min_retry);
    char meta[2048];
    size_t meta_len = attempts_meta(r, meta, sizeof(meta));

    char msg[1200];
    if (r->n_attempts > 1)
        snprintf(msg, sizeof(msg), "%u attempts failed; the last: %s", r->n_attempts, message);
    else
        snprintf(msg, sizeof(msg), "%s", message);
    lx_api_error_t e = {
        .status = status, .message = msg, .message_len = strlen(msg), .error_type = etype};
    char ucode[129], uparam[129], pmeta[512];
    lx_strbuf_t pb = lx_strbuf_make(pmeta, sizeof(pmeta));
    upstream_fields(r, status, &e, ucode, uparam, sizeof(ucode), &pb);
    if (r->openrouter) {
        if (!pb.overflow && meta_len > 0)
            lx_strbuf_mem(&pb, meta, meta_len);
        e.meta = pmeta;
        e.meta_len = pb.overflow || meta_len == 0 ? 0 : lx_strbuf_len(&pb, pmeta);
    } else {
        e.meta = meta;
        e.meta_len = meta_len;
    }
    char body[4096];
    int n = lx_api_error_format_full(body, sizeof(body),
                                     r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e);
    if (n < 0)
        return false;
    send_error(r, status, min_retry, body, (size_t)n);
    return true;
}

void lx_dispatch_reject(lx_gw_req_t *r, int status, const char *msg)
{
    static const char ct[] = "Content-Type: application/json\r\n";
    lx_http_request_t *req = r->px.req;
    lx_api_error_t e = {
        .status = status,
        .message = msg,
        .message_len = r->reject.len > 0 ? r->reject.len : strlen(msg),
        .code = r->reject.code,
        .param = r->reject.param,
    };
    /* a refusal at admission (402, 429) says which limit, and when to come back */
    const lx_gw_refusal_t *f = (status == 402 || status == 429) ? r->refusal : NULL;
    char head[sizeof(ct) + sizeof(f->headers)];
    size_t hn = sizeof(ct) - 1;
    memcpy(head, ct, hn);
    if (f != NULL) {
        e.error_type = f->error_type;
        e.code = f->code;
        e.meta = f->meta;
        e.meta_len = strlen(f->meta);
        size_t fl = strlen(f->headers);
        memcpy(head + hn, f->headers, fl);
        hn += fl;
    }
    char body[2048];
    int n = lx_api_error_format_full(body, sizeof(body),
                                     r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e);
    if (n < 0) {
        lx_http_server_respond_error(req, status, f != NULL ? f->headers : NULL, msg);
        return;
    }
    lx_http_server_respond(req, status, head, hn, body, (size_t)n);
}

size_t lx_dispatch_format_cut(lx_gw_req_t *r, int status, const char *message, char *buf,
                              size_t cap)
{
    const lx_proxy_t *px = &r->px;
    const lx_sse_scan_t *sc = &r->sse;
    bool sse = (r->scanning && !sc->json_mode) || px->stream_head != NULL;
    if (!sse || cap < LX_SSE_END_LEN)
        return 0;
    /* cut inside an event: end it first, so the error is an event of its own */
    size_t o = 0;
    if (r->scanning && sc->in_block) {
        memcpy(buf, LX_SSE_END, LX_SSE_END_LEN);
        o = LX_SSE_END_LEN;
    }
    /* the stream's own id and created, as its chunks carried them (else llmux's generation
     * id and now): a client that groups chunks by id sees the error in the same answer */
    bool known = r->scanning && sc->id_len > 0;
    lx_api_event_t ev = {
        .id = known ? sc->id : r->gen_id,
        .id_len = known ? sc->id_len : strlen(r->gen_id),
        .created = r->scanning && sc->created >= 0 ? sc->created : (int64_t)time(NULL),
        .model = r->model->id,
        .provider = r->provider->name,
    };
    lx_api_error_t e = {.status = status, .message = message, .message_len = strlen(message)};
    int n = lx_api_error_format_event(buf + o, cap - o,
                                      r->openrouter ? LX_API_OPENROUTER : LX_API_OPENAI, &e, &ev);
    return n > 0 ? o + (size_t)n : 0;
}
