/*
 * api_error.c - the error envelopes of both APIs, status tables and JSON string escaping.
 *
 * Pure functions over caller buffers: no allocation; the one state read is the process's set
 * of secrets (obs/log.h), which every message goes through. Every error answer llmux makes
 * (auth failures, bad bodies, no route, upstream failures surfaced by the proxy finalizer,
 * the error event of a cut stream) is formatted here, and the other gateway modules use the
 * escaper whenever they write a JSON string (models list, spliced model ids).
 */
#include "llm/api_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "core/str.h"
#include "obs/log.h"

#define JSMN_STATIC
#include <jsmn.h>

/* code and param: longer ones (escaped) are written as null */
#define FIELD_MAX 256
/* tokens for reading a provider's error body (at most LX_PROXY_ERR_BODY_MAX bytes) */
#define UPSTREAM_TOKENS 256

/* The escaped form of one character at s: writes it into tmp (at least 6 bytes) and returns its
 * length; *in receives the number of input bytes it stands for. Valid multi-byte UTF-8 is not
 * copied to tmp: *direct is set and the caller copies the input bytes. */
static size_t escape_one(const unsigned char *s, size_t avail, char *tmp, size_t *in, bool *direct)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    *in = 1;
    *direct = false;
    switch (c) {
    case '"':
        memcpy(tmp, "\\\"", 2);
        return 2;
    case '\\':
        memcpy(tmp, "\\\\", 2);
        return 2;
    case '\b':
        memcpy(tmp, "\\b", 2);
        return 2;
    case '\f':
        memcpy(tmp, "\\f", 2);
        return 2;
    case '\n':
        memcpy(tmp, "\\n", 2);
        return 2;
    case '\r':
        memcpy(tmp, "\\r", 2);
        return 2;
    case '\t':
        memcpy(tmp, "\\t", 2);
        return 2;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
        memcpy(tmp, "\\u00", 4);
        tmp[4] = hex[c >> 4];
        tmp[5] = hex[c & 0xf];
        return 6;
    }
    if (c < 0x80) {
        tmp[0] = (char)c;
        return 1;
    }
    size_t n = lx_str_utf8_len(s, avail);
    if (n == 0) {
        memcpy(tmp, "\xef\xbf\xbd", 3); /* U+FFFD for one bad byte */
        return 3;
    }
    *in = n;
    *direct = true;
    return n;
}

size_t lx_api_error_escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        char tmp[8];
        size_t in;
        bool direct;
        size_t n = escape_one(u + i, len - i, tmp, &in, &direct);
        if (n > cap - o)
            break;
        memcpy(out + o, direct ? s + i : tmp, n);
        o += n;
        i += in;
    }
    if (consumed != NULL)
        *consumed = i;
    return o;
}

size_t lx_api_error_escaped_len(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        char tmp[8];
        size_t in;
        bool direct;
        o += escape_one(u + i, len - i, tmp, &in, &direct);
        i += in;
    }
    return o;
}

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
        return lx_api_error_escape(out, cap, s, len, consumed);
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
        o += lx_api_error_escape(out + o, cap - o, s + i, j - i, &used);
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
    size_t k = lx_api_error_escape(tmp, sizeof(tmp), s, n, NULL);
    w_mem(w, tmp, k);
}

/*
 * The envelope (and the event around it, when <ev>): everything before the message into
 * <pre>, everything after it into <post>, then the message fills the room between them in buf.
 */
static int format(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e,
                  const lx_api_event_t *ev)
{
    const lx_log_secrets_t *set = lx_log_secrets();
    int status = e->status;
    const char *etype = e->error_type != NULL ? e->error_type : lx_api_error_default_type(status);
    const char *code = e->code != NULL ? e->code : lx_api_error_default_code(status);
    size_t meta_len = e->meta != NULL ? e->meta_len : 0;
    size_t message_len = e->message != NULL ? e->message_len : 0;

    char pre_buf[1024];
    wr_t pre = {pre_buf, 0, sizeof(pre_buf), false};
    char post_buf[4096];
    wr_t post = {post_buf, 0, sizeof(post_buf), false};
    if (ev != NULL)
        w_lit(&pre, "data: ");
    if (kind == LX_API_OPENROUTER) {
        if (ev != NULL) {
            w_lit(&pre, "{\"id\":\"");
            w_name(&pre, ev->id, ev->id_len);
            w_lit(&pre, "\",\"object\":\"chat.completion.chunk\",\"created\":");
            w_int(&pre, (long long)ev->created);
            w_lit(&pre, ",\"model\":\"");
            w_name(&pre, ev->model, strlen(ev->model));
            w_lit(&pre, "\",\"provider\":\"");
            w_name(&pre, ev->provider, strlen(ev->provider));
            w_lit(&pre, "\",");
        } else {
            w_lit(&pre, "{");
        }
        w_lit(&pre, "\"error\":{\"code\":");
        w_int(&pre, status);
        w_lit(&pre, ",\"message\":\"");
        w_lit(&post, "\",\"metadata\":{\"error_type\":");
        w_field(&post, etype, set);
        if (meta_len > 0) {
            w_lit(&post, ",");
            w_mem(&post, e->meta, meta_len);
        }
        w_lit(&post, "}}");
        if (ev != NULL)
            w_lit(&post, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                         "\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}]");
        w_lit(&post, "}");
    } else {
        w_lit(&pre, "{\"error\":{\"message\":\"");
        w_lit(&post, "\",\"type\":\"");
        w_lit(&post, lx_api_error_type(status));
        w_lit(&post, "\",\"param\":");
        w_field(&post, e->param, set);
        w_lit(&post, ",\"code\":");
        w_field(&post, code, set);
        if (meta_len > 0) {
            w_lit(&post, ",\"metadata\":{");
            w_mem(&post, e->meta, meta_len);
            w_lit(&post, "}");
        }
        w_lit(&post, "}}");
    }
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

static bool tok_is(const char *js, const jsmntok_t *t, const char *want)
{
    size_t wl = strlen(want);
    return t->type == JSMN_STRING && (size_t)(t->end - t->start) == wl &&
           memcmp(js + t->start, want, wl) == 0;
}

/* Index of the token after the subtree rooted at t[i]. */
static int skip_tok(const jsmntok_t *t, int n, int i)
{
    int pending = 1;
    while (pending > 0 && i < n) {
        pending += t[i].size - 1;
        i++;
    }
    return i;
}

bool lx_api_error_parse_upstream(const char *body, size_t len, lx_api_upstream_error_t *out)
{
    *out = (lx_api_upstream_error_t){0};
    if (body == NULL || len == 0)
        return false;
    jsmn_parser p;
    jsmntok_t t[UPSTREAM_TOKENS];
    jsmn_init(&p);
    int n = jsmn_parse(&p, body, len, t, UPSTREAM_TOKENS);
    if (n < 1 || t[0].type != JSMN_OBJECT)
        return false;
    int i = 1;
    for (int m = 0; m < t[0].size && i + 1 < n; m++) {
        if (tok_is(body, &t[i], "error") && t[i + 1].type == JSMN_OBJECT) {
            int obj = i + 1, k = obj + 1;
            for (int j = 0; j < t[obj].size && k + 1 < n; j++) {
                const jsmntok_t *v = &t[k + 1];
                if (v->type == JSMN_STRING && tok_is(body, &t[k], "code")) {
                    out->code = body + v->start;
                    out->code_len = (size_t)(v->end - v->start);
                } else if (v->type == JSMN_STRING && tok_is(body, &t[k], "param")) {
                    out->param = body + v->start;
                    out->param_len = (size_t)(v->end - v->start);
                }
                k = skip_tok(t, n, k + 1);
            }
            break;
        }
        i = skip_tok(t, n, i + 1);
    }
    return true;
}
