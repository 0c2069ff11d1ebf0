/*
 * api_error.c - the error envelopes of both APIs, status tables, and the reading of a
 * provider's own error body.
 *
 * Pure functions over caller buffers: no allocation; the one state read is the process's set
 * of secrets (obs/log.h), which every message goes through. Every error answer llmux makes
 * (auth failures, bad bodies, no route, upstream failures surfaced by the proxy finalizer,
 * the error event of a cut stream) is formatted here. Every string is escaped by core/json's
 * one escaper (lx_json_escape()), messages after their secrets are redacted.
 */
#include "llm/api_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"
#include "obs/log.h"

/* code and param: longer ones (escaped) are written as null */
#define FIELD_MAX 256
/* tokens (keys, values, containers) of a provider's error body that is read (at most
 * LX_PROXY_ERR_BODY_MAX bytes); a larger one gives nothing, as jsmn's token array did */
#define UPSTREAM_TOKENS 256

const char *lx_api_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 408:
    case 504:
    case 524:
        return "timeout_error";
    case 429:
        return "rate_limit_error";
    default:
        break;
    }
    if (status >= 500)
        return "server_error";
    return "invalid_request_error";
}

const char *lx_api_error_default_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request";
    case 401:
        return "authentication";
    case 402:
        return "payment_required";
    case 403:
        return "permission_denied";
    case 404:
        return "not_found";
    case 408:
    case 504:
    case 524:
        return "timeout";
    case 412:
        return "precondition_failed";
    case 413:
    case 431:
        return "payload_too_large";
    case 422:
        return "unprocessable";
    case 429:
        return "rate_limit_exceeded";
    case 502:
        return "provider_unavailable";
    case 503:
    case 529:
        return "provider_overloaded";
    default:
        break;
    }
    if (status >= 400 && status < 500)
        return "invalid_request";
    if (status >= 500 && status < 600)
        return "server";
    return "unmapped";
}

const char *lx_api_error_default_code(int status)
{
    switch (status) {
    case 401:
        return "invalid_api_key";
    case 402:
        return "insufficient_quota";
    case 429:
        return "rate_limit_exceeded";
    default:
        return NULL;
    }
}

lx_api_kind_t lx_api_error_kind(const char *path, size_t len)
{
    return len >= 5 && memcmp(path, "/api/", 5) == 0 ? LX_API_OPENROUTER : LX_API_OPENAI;
}

/* ---- the envelopes ---------------------------------------------------------------------- */

/* An output cursor: writes past cap are dropped and remembered. */
typedef struct wr {
    char *p;
    size_t len, cap;
    bool over;
} wr_t;

static void w_mem(wr_t *w, const char *s, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void w_lit(wr_t *w, const char *s)
{
    w_mem(w, s, strlen(s));
}

static void w_int(wr_t *w, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    w_mem(w, tmp, (size_t)n);
}

/*
 * Escapes s[0, len) into out[0, cap) with each secret of <set> replaced by LX_LOG_REDACTED:
 * whole escapes and whole replacements only. Returns the bytes written; *<consumed> gets the
 * input bytes they stand for.
 */
static size_t escape_redacted(char *out, size_t cap, const char *s, size_t len, size_t *consumed,
                              const lx_log_secrets_t *set)
{
    if (lx_log_secrets_empty(set))
        return lx_json_escape(out, cap, s, len, consumed);
    size_t o = 0, i = 0;
    while (i < len) {
        size_t k = lx_log_secrets_match(set, s + i, len - i);
        if (k > 0) {
            if (LX_LOG_REDACTED_LEN > cap - o)
                break;
            memcpy(out + o, LX_LOG_REDACTED, LX_LOG_REDACTED_LEN);
            o += LX_LOG_REDACTED_LEN;
            i += k;
            continue;
        }
        /* the run up to the next byte some secret may start with, as plain escaping */
        size_t j = i + 1;
        while (j < len && lx_log_secrets_match(set, s + j, len - j) == 0)
            j++;
        size_t used;
        o += lx_json_escape(out + o, cap - o, s + i, j - i, &used);
        i += used;
        if (i < j)
            break; /* the next escape did not fit */
    }
    *consumed = i;
    return o;
}

/* A JSON string value, escaped and redacted, or null when absent or longer than FIELD_MAX. */
static void w_field(wr_t *w, const char *s, const lx_log_secrets_t *set)
{
    char tmp[FIELD_MAX];
    size_t n = s != NULL ? strlen(s) : 0, used = 0;
    size_t k = s != NULL ? escape_redacted(tmp, sizeof(tmp), s, n, &used, set) : 0;
    if (s == NULL || used < n) {
        w_lit(w, "null");
        return;
    }
    w_lit(w, "\"");
    w_mem(w, tmp, k);
    w_lit(w, "\"");
}

/* A NUL-terminated name from the configuration, escaped (they are plain in practice). */
static void w_name(wr_t *w, const char *s, size_t n)
{
    char tmp[512];
    size_t k = lx_json_escape(tmp, sizeof(tmp), s, n, NULL);
    w_mem(w, tmp, k);
}

/* OpenRouter's envelope (and the chunk around it, when <ev>) around its message. */
static void frame_openrouter(wr_t *pre, wr_t *post, const lx_api_error_t *e,
                             const lx_api_event_t *ev, const lx_log_secrets_t *set)
{
    const char *etype =
        e->error_type != NULL ? e->error_type : lx_api_error_default_type(e->status);
    size_t meta_len = e->meta != NULL ? e->meta_len : 0;
    if (ev != NULL) {
        w_lit(pre, "{\"id\":\"");
        w_name(pre, ev->id, ev->id_len);
        w_lit(pre, "\",\"object\":\"chat.completion.chunk\",\"created\":");
        w_int(pre, (long long)ev->created);
        w_lit(pre, ",\"model\":\"");
        w_name(pre, ev->model, strlen(ev->model));
        w_lit(pre, "\",\"provider\":\"");
        w_name(pre, ev->provider, strlen(ev->provider));
        w_lit(pre, "\",");
    } else {
        w_lit(pre, "{");
    }
    w_lit(pre, "\"error\":{\"code\":");
    w_int(pre, e->status);
    w_lit(pre, ",\"message\":\"");
    w_lit(post, "\",\"metadata\":{\"error_type\":");
    w_field(post, etype, set);
    if (meta_len > 0) {
        w_lit(post, ",");
        w_mem(post, e->meta, meta_len);
    }
    w_lit(post, "}}");
    if (ev != NULL)
        w_lit(post, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                    "\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}]");
    w_lit(post, "}");
}

/* OpenAI's envelope around its message. */
static void frame_openai(wr_t *pre, wr_t *post, const lx_api_error_t *e,
                         const lx_log_secrets_t *set)
{
    const char *code = e->code != NULL ? e->code : lx_api_error_default_code(e->status);
    size_t meta_len = e->meta != NULL ? e->meta_len : 0;
    w_lit(pre, "{\"error\":{\"message\":\"");
    w_lit(post, "\",\"type\":\"");
    w_lit(post, lx_api_error_type(e->status));
    w_lit(post, "\",\"param\":");
    w_field(post, e->param, set);
    w_lit(post, ",\"code\":");
    w_field(post, code, set);
    if (meta_len > 0) {
        w_lit(post, ",\"metadata\":{");
        w_mem(post, e->meta, meta_len);
        w_lit(post, "}");
    }
    w_lit(post, "}}");
}

/*
 * The envelope (and the event around it, when <ev>): everything before the message into
 * <pre>, everything after it into <post>, then the message fills the room between them in buf.
 */
static int format(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e,
                  const lx_api_event_t *ev)
{
    const lx_log_secrets_t *set = lx_log_secrets();
    size_t message_len = e->message != NULL ? e->message_len : 0;

    char pre_buf[1024];
    wr_t pre = {pre_buf, 0, sizeof(pre_buf), false};
    char post_buf[4096];
    wr_t post = {post_buf, 0, sizeof(post_buf), false};
    if (ev != NULL)
        w_lit(&pre, "data: ");
    if (kind == LX_API_OPENROUTER)
        frame_openrouter(&pre, &post, e, ev, set);
    else
        frame_openai(&pre, &post, e, set);
    if (ev != NULL)
        w_lit(&post, "\n\n");
    if (pre.over || post.over || cap < pre.len + post.len + 1)
        return LX_ETOOBIG;

    size_t room = cap - pre.len - post.len - 1;
    memcpy(buf, pre.p, pre.len);
    size_t o = pre.len;
    size_t consumed;
    size_t n = escape_redacted(buf + o, room, e->message, message_len, &consumed, set);
    if (consumed < message_len) {
        /* Cut: redo with room for the ellipsis so the reader sees the message was shortened. */
        n = room >= 3 ? escape_redacted(buf + o, room - 3, e->message, message_len, &consumed, set)
                      : 0;
        if (room >= 3) {
            memcpy(buf + o + n, "...", 3);
            n += 3;
        }
    }
    o += n;
    memcpy(buf + o, post.p, post.len);
    o += post.len;
    buf[o] = '\0';
    return (int)o;
}

int lx_api_error_format_full(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e)
{
    return format(buf, cap, kind, e, NULL);
}

int lx_api_error_format(char *buf, size_t cap, lx_api_kind_t kind, int status, const char *message,
                        size_t message_len)
{
    lx_api_error_t e = {.status = status, .message = message, .message_len = message_len};
    return format(buf, cap, kind, &e, NULL);
}

int lx_api_error_format_event(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e,
                              const lx_api_event_t *ev)
{
    return format(buf, cap, kind, e, ev);
}

/* ---- a provider's error body ------------------------------------------------------------ */

static bool key_is(const char *body, const lx_json_token_t *t, const char *want, size_t wl)
{
    return t->end - t->start == wl && memcmp(body + t->start, want, wl) == 0;
}

/* Where the reading of a provider's error body is. */
enum { E_BEFORE, E_IN, E_AFTER }; /* the first top-level "error" object: not met, read, done */

/* A token inside the root object (not a closing bracket): keeps code and param of the first
 * top-level "error" member whose value is an object. */
static void upstream_token(const char *body, const lx_json_token_t *t, int *where, bool *error_key,
                           int *field, lx_api_upstream_error_t *out)
{
    if (t->depth == 1) {
        if (t->type == LX_JSON_KEY)
            *error_key = key_is(body, t, "error", 5);
        else if (*error_key && *where == E_BEFORE && t->type == LX_JSON_OBJECT)
            *where = E_IN;
        return;
    }
    if (t->depth != 2 || *where != E_IN)
        return;
    if (t->type == LX_JSON_KEY) {
        *field = key_is(body, t, "code", 4) ? 1 : key_is(body, t, "param", 5) ? 2 : 0;
    } else if (t->type == LX_JSON_STRING && *field == 1) {
        out->code = body + t->start;
        out->code_len = t->end - t->start;
    } else if (t->type == LX_JSON_STRING && *field == 2) {
        out->param = body + t->start;
        out->param_len = t->end - t->start;
    }
}

bool lx_api_error_parse_upstream(const char *body, size_t len, lx_api_upstream_error_t *out)
{
    *out = (lx_api_upstream_error_t){0};
    if (body == NULL || len == 0)
        return false;
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, body, len, UPSTREAM_TOKENS);
    j.raw_controls = true; /* a provider's unescaped line break does not hide its code */
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT)
        return false;
    int where = E_BEFORE, field = 0, tokens = 1;
    bool error_key = false, root_closed = false;
    for (;;) {
        lx_json_type_t type = lx_json_next(&j, &t);
        if (type == LX_JSON_NONE)
            break;
        if (type == LX_JSON_OBJECT_END || type == LX_JSON_ARRAY_END) {
            if (type == LX_JSON_OBJECT_END && t.depth == 1 && where == E_IN)
                where = E_AFTER;
            root_closed = t.depth == 0;
            continue;
        }
        if (++tokens > UPSTREAM_TOKENS)
            break;
        upstream_token(body, &t, &where, &error_key, &field, out);
    }
    /* A whole object followed by stray bytes still gives what its error object said, as the
     * lenient reading before always did; a body cut short or broken anywhere inside the root
     * object gives nothing. */
    if (tokens > UPSTREAM_TOKENS || (j.error != LX_JSON_OK && !(where == E_AFTER && root_closed))) {
        *out = (lx_api_upstream_error_t){0};
        return false;
    }
    return true;
}
