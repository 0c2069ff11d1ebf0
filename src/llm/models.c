/*
 * models.c - the `GET /v1/models` and `GET /v1/models/{id}` bodies.
 *
 * Formatted from a configuration snapshot by the gateway when a client lists models (the result
 * depends only on the snapshot, so a caller may keep it alongside the snapshot). The shape
 * follows OpenAI's list ({"object":"list","data":[...]}) with OpenRouter's extra fields
 * (name, canonical_slug, context_length, per-token pricing strings).
 */
#include "llm/models.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/str.h"
#include "llm/api_error.h"

/* A growing output buffer; on allocation failure it stays failed and drops further writes. */
struct out {
    char *buf;
    size_t len;
    size_t cap;
    bool failed;
};

static bool reserve(struct out *o, size_t more)
{
    if (o->failed)
        return false;
    if (o->cap - o->len >= more)
        return true;
    size_t cap = o->cap ? o->cap : 1024;
    while (cap - o->len < more) {
        if (cap > SIZE_MAX / 2) {
            o->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *grown = realloc(o->buf, cap);
    if (grown == NULL) {
        o->failed = true;
        return false;
    }
    o->buf = grown;
    o->cap = cap;
    return true;
}

static void put(struct out *o, const char *s, size_t n)
{
    if (!reserve(o, n))
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* A JSON string, quoted and escaped; NULL is written as an empty string. */
static void put_string(struct out *o, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    size_t need = lx_json_escaped_len(s, n);
    if (!reserve(o, need + 2))
        return;
    o->buf[o->len++] = '"';
    o->len += lx_json_escape(o->buf + o->len, need, s, n, NULL);
    o->buf[o->len++] = '"';
}

static void put_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(struct out *o, const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->failed = true;
        return;
    }
    put(o, tmp, (size_t)n);
}

void lx_models_price(double per_million, char *out)
{
    if (!(per_million > 0) || isinf(per_million)) { /* also NaN */
        strcpy(out, "0");
        return;
    }
    if (per_million > 1e15)
        per_million = 1e15;
    /* Decimal text of the per-million price, then the point moved six places left: exact in
     * decimal, where dividing the double by 1e6 would print 1.4999999999999999e-07. */
    char s[40];
    snprintf(s, sizeof(s), "%.9f", per_million);
    char *dot = strpbrk(s, ".,"); /* the C locale writes '.'; be safe under others */
    if (dot == NULL) {
        strcpy(out, "0");
        return;
    }
    size_t int_len = (size_t)(dot - s);
    char digits[40];
    memcpy(digits, s, int_len);
    strcpy(digits + int_len, dot + 1);
    size_t o = 0;
    if (int_len <= 6) {
        out[o++] = '0';
        out[o++] = '.';
        for (size_t k = int_len; k < 6; k++)
            out[o++] = '0';
        strcpy(out + o, digits);
    } else {
        memcpy(out, digits, int_len - 6);
        o = int_len - 6;
        out[o++] = '.';
        strcpy(out + o, digits + int_len - 6);
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '0')
        n--;
    if (n > 0 && out[n - 1] == '.')
        n--;
    out[n] = '\0';
}

static const lx_config_route_t *cheapest(const lx_config_model_t *m)
{
    const lx_config_route_t *best = NULL;
    for (size_t r = 0; r < m->n_routes; r++) {
        const lx_config_route_t *rt = &m->routes[r];
        if (best == NULL ||
            rt->price_prompt + rt->price_completion < best->price_prompt + best->price_completion)
            best = rt;
    }
    return best;
}

/* One model object, as the list has it and as `GET /v1/models/{id}` answers it. */
static void put_model(struct out *o, const lx_config_model_t *m)
{
    puts_(o, "{\"id\":");
    put_string(o, m->id);
    puts_(o, ",\"canonical_slug\":");
    put_string(o, m->id);
    puts_(o, ",\"name\":");
    put_string(o, m->id);
    put_fmt(o, ",\"object\":\"model\",\"created\":%" PRId64 ",\"owned_by\":", m->created);
    put_string(o, m->owned_by ? m->owned_by : "llmux");
    if (m->context_length > 0)
        put_fmt(o, ",\"context_length\":%" PRIu32, m->context_length);
    else
        puts_(o, ",\"context_length\":null");
    const lx_config_route_t *rt = cheapest(m);
    char prompt[48], completion[48];
    lx_models_price(rt ? rt->price_prompt : 0, prompt);
    lx_models_price(rt ? rt->price_completion : 0, completion);
    put_fmt(o, ",\"pricing\":{\"prompt\":\"%s\",\"completion\":\"%s\"}}", prompt, completion);
}

/* The output NUL-terminated and handed over, or NULL (freed) when a write failed. */
static char *finish(struct out *o, size_t *len)
{
    if (!reserve(o, 1)) {
        free(o->buf);
        return NULL;
    }
    o->buf[o->len] = '\0';
    *len = o->len;
    return o->buf;
}

char *lx_models_format(const lx_config_t *cfg, size_t *len)
{
    struct out o = {0};
    puts_(&o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < cfg->n_models; i++) {
        if (i > 0)
            puts_(&o, ",");
        put_model(&o, &cfg->models[i]);
    }
    puts_(&o, "]}");
    return finish(&o, len);
}

/* Percent-decodes <len> bytes of <s> into <out> (at least <len> bytes). Returns the decoded
 * length, or -1 for a '%' not followed by two hex digits. */
static long percent_decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        int hi = lx_hex_value(s[i + 1]), lo = lx_hex_value(s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)o;
}

/* The error answer of a retrieve, in <kind>'s envelope, malloc'd. */
static char *retrieve_error(lx_api_kind_t kind, int status, const char *msg, size_t msg_len,
                            const char *code, size_t *len_out)
{
    lx_api_error_t e = {.status = status,
                        .message = msg,
                        .message_len = msg_len,
                        .code = code,
                        .param = code != NULL ? "model" : NULL};
    size_t cap = 512 + 6 * msg_len;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    int n = lx_api_error_format_full(buf, cap, kind, &e);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    *len_out = (size_t)n;
    return buf;
}

char *lx_models_retrieve(const lx_config_t *cfg, lx_api_kind_t kind, const char *path_id,
                         size_t len, int *status, size_t *len_out)
{
    char *id = malloc(len + 1);
    if (id == NULL)
        return NULL;
    long n = percent_decode(path_id, len, id);
    if (n < 0) {
        free(id);
        *status = 400;
        static const char msg[] = "malformed percent-encoding in the model id";
        return retrieve_error(kind, 400, msg, sizeof(msg) - 1, NULL, len_out);
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const lx_config_model_t *m = &cfg->models[i];
        if (strlen(m->id) == (size_t)n && memcmp(m->id, id, (size_t)n) == 0) {
            free(id);
            struct out o = {0};
            put_model(&o, m);
            *status = 200;
            return finish(&o, len_out);
        }
    }
    /* the name as the client meant it, whatever its bytes: the envelope escapes it once */
    static const char pre[] = "model '", post[] = "' is not available on this gateway";
    size_t mlen = sizeof(pre) - 1 + (size_t)n + sizeof(post) - 1;
    char *msg = malloc(mlen);
    char *body = NULL;
    if (msg != NULL) {
        memcpy(msg, pre, sizeof(pre) - 1);
        memcpy(msg + sizeof(pre) - 1, id, (size_t)n);
        memcpy(msg + sizeof(pre) - 1 + n, post, sizeof(post) - 1);
        body = retrieve_error(kind, 404, msg, mlen, "model_not_found", len_out);
    }
    free(msg);
    free(id);
    *status = 404;
    return body;
}
