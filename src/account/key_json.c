/*
 * key_json.c - reading the management API's request bodies (POST and PATCH /api/v1/keys) into
 * an lx_key_input_t (key_json.h). The writers are in key_json_out.c.
 *
 * Strict and linear: one pass of core/json's tokenizer over the body (no recursion, nesting
 * capped at KEY_JSON_DEPTH), every member's type and range checked as it is read, and the
 * first problem reported with the member's name: malformed JSON (LX_EJSON), an unknown or
 * repeated member, a wrong type, a value out of range (LX_EINVAL). Keys are compared decoded,
 * so "n\u0061me" is `name` (and a second `name`). Strings are decoded into buffers bounded by
 * their limit before anything is allocated, so a 10 MB name costs one tokenizer pass and is
 * refused without a copy. The `provider` object is checked by route/prefs (the same reader as
 * a request's own `provider`) and kept as its text.
 */
#include "account/key_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/body.h"
#include "route/prefs.h"
#include "store/money.h"
#include "store/period.h"

/* Deepest nesting accepted: the body, rate_limit / models / provider, and what a provider
 * object holds (sort {by, partition}, max_price {...}, members prefs ignores). */
#define KEY_JSON_DEPTH 16
/* Longest member key compared (decoded); longer keys are unknown members. */
#define KEY_MAX 32
/* Largest rate limit (rpm, tpm, concurrency). */
#define RATE_MAX 1000000000u

struct rd {
    lx_json_t j;
    const char *base;
    char *err;
    size_t errcap;
};

enum member {
    M_NAME,
    M_DISABLED,
    M_LIMIT,
    M_LIMIT_RESET,
    M_EXPIRES_AT,
    M_INCLUDE_BYOK,
    M_MODELS,
    M_PROVIDER,
    M_RATE_LIMIT,
    M_PRIORITY,
    M_COUNT,
};

static const char *const member_names[M_COUNT] = {
    "name",   "disabled", "limit",      "limit_reset", "expires_at", "include_byok_in_limit",
    "models", "provider", "rate_limit", "priority",
};

static const char *const rate_names[] = {"rpm", "tpm", "concurrency"};

static int fail(struct rd *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct rd *r, int code, const char *fmt, ...)
{
    if (r->errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errcap, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The tokenizer's error as a message (it stopped: LX_JSON_NONE with an error). */
static int fail_syntax(struct rd *r)
{
    switch (r->j.error) {
    case LX_JSON_EDEPTH:
        return fail(r, LX_EJSON, "invalid JSON: nested too deeply (at byte %u)", r->j.error_off);
    case LX_JSON_EEOF:
        return fail(r, LX_EJSON, "invalid JSON: the body ends early");
    default:
        return fail(r, LX_EJSON, "invalid JSON at byte %u", r->j.error_off);
    }
}

static lx_json_type_t next(struct rd *r, lx_json_token_t *t)
{
    return lx_json_next(&r->j, t);
}

/*
 * Whether <n> bytes at <s> are text a name may hold: well-formed UTF-8 (lx_str_utf8_len) with
 * no control character (C0, DEL, C1).
 */
static bool text_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = lx_str_utf8_len(s + i, n - i);
        if (k == 0 || (c == 0xc2 && s[i + 1] < 0xa0))
            return false;
        i += k;
    }
    return true;
}

/*
 * Decodes the string token <t> into a new NUL-terminated string of 1..<max> bytes of text
 * (text_ok). NULL with nothing allocated when it is empty, longer, malformed or not text.
 */
static char *dup_text(const struct rd *r, const lx_json_token_t *t, size_t max)
{
    size_t raw = t->end - t->start;
    /* a decoded byte takes at most 6 raw bytes ("\u0041"), so longer raw text is too long */
    if (raw == 0 || raw / 6 > max)
        return NULL;
    char *s = malloc(max + 1);
    if (s == NULL)
        return NULL;
    int n = lx_json_unescape(r->base + t->start, raw, s, max);
    if (n <= 0 || !text_ok((const unsigned char *)s, (size_t)n)) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

/* The decoded key (or short string) of token <k> into <buf> (NUL-terminated); "" when it is
 * longer than KEY_MAX, malformed or holds a NUL ("name\u0000x" is not `name`): no member and
 * no value is called that. */
static void key_text(const struct rd *r, const lx_json_token_t *k, char buf[KEY_MAX + 1])
{
    int n = lx_json_unescape(r->base + k->start, k->end - k->start, buf, KEY_MAX);
    if (n < 0 || memchr(buf, '\0', (size_t)n) != NULL)
        n = 0;
    buf[n] = '\0';
}

/* A member key for a message: its raw bytes, printable ASCII kept, others as '?', cut. */
static void key_shown(const struct rd *r, const lx_json_token_t *k, char out[48])
{
    size_t n = k->end - k->start, o = 0;
    for (size_t i = 0; i < n && o < 40; i++) {
        char c = r->base[k->start + i];
        out[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? c : '?';
    }
    if (o < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ---- members ---------------------------------------------------------------------------- */

static int read_name(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    if (v->type != LX_JSON_STRING)
        return fail(r, LX_EINVAL, "name must be a string");
    char *s = dup_text(r, v, LX_KEY_NAME_MAX);
    if (s == NULL)
        return fail(r, LX_EINVAL,
                    "name must be 1 to %d bytes of UTF-8 text without control characters",
                    LX_KEY_NAME_MAX);
    in->name = s;
    in->set |= LX_KEY_F_NAME;
    return 0;
}

static int read_bool(struct rd *r, const lx_json_token_t *v, const char *what, bool *out)
{
    if (v->type != LX_JSON_TRUE && v->type != LX_JSON_FALSE)
        return fail(r, LX_EINVAL, "%s must be true or false", what);
    *out = v->type == LX_JSON_TRUE;
    return 0;
}

static int read_limit(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_LIMIT;
    if (v->type == LX_JSON_NULL) {
        in->has_limit = false;
        in->limit = 0;
        return 0;
    }
    int64_t m;
    if (v->type != LX_JSON_NUMBER || lx_money_parse(r->base + v->start, v->end - v->start, &m) != 0)
        return fail(r, LX_EINVAL,
                    "limit must be null or a number of USD from 0 to 1000000000 with at most 6 "
                    "decimals");
    in->has_limit = true;
    in->limit = m;
    return 0;
}

static int read_limit_reset(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_LIMIT_RESET;
    in->limit_reset = LX_PERIOD_TOTAL;
    if (v->type == LX_JSON_NULL)
        return 0;
    char buf[KEY_MAX + 1];
    int p = -1;
    if (v->type == LX_JSON_STRING) {
        key_text(r, v, buf);
        p = lx_period_parse(buf, strlen(buf));
    }
    if (p < 0)
        return fail(r, LX_EINVAL, "limit_reset must be \"daily\", \"weekly\", \"monthly\" or null");
    in->limit_reset = (lx_period_t)p;
    return 0;
}

static int read_expires_at(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_EXPIRES;
    in->expires_at = 0;
    if (v->type == LX_JSON_NULL)
        return 0;
    char buf[64];
    int64_t t = 0;
    int n = -1;
    if (v->type == LX_JSON_STRING)
        n = lx_json_unescape(r->base + v->start, v->end - v->start, buf, sizeof(buf));
    if (n < 0 || lx_period_parse_iso(buf, (size_t)n, &t) != 0)
        return fail(r, LX_EINVAL,
                    "expires_at must be null or an ISO-8601 time in UTC (2027-12-31T23:59:59Z)");
    if (t <= lx_clock_now_us() / 1000000)
        return fail(r, LX_EINVAL, "expires_at must be in the future");
    in->expires_at = t;
    return 0;
}

/* priority: "interactive" | "batch" | null (interactive, the default). */
static int read_priority(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_PRIORITY;
    in->priority = LX_KEY_PRIORITY_INTERACTIVE;
    if (v->type == LX_JSON_NULL)
        return 0;
    char buf[KEY_MAX + 1] = "";
    if (v->type == LX_JSON_STRING)
        key_text(r, v, buf);
    if (strcmp(buf, "batch") == 0)
        in->priority = LX_KEY_PRIORITY_BATCH;
    else if (strcmp(buf, "interactive") != 0)
        return fail(r, LX_EINVAL, "priority must be \"interactive\", \"batch\" or null");
    return 0;
}

static int read_models(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_MODELS;
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type != LX_JSON_ARRAY)
        return fail(r, LX_EINVAL, "models must be an array of strings or null");
    lx_json_token_t e;
    for (size_t i = 0;; i++) {
        lx_json_type_t type = next(r, &e);
        if (type == LX_JSON_ARRAY_END)
            return 0;
        if (type == LX_JSON_NONE)
            return fail_syntax(r);
        if (i == LX_KEY_MODELS_MAX)
            return fail(r, LX_EINVAL, "models has more than %d entries", LX_KEY_MODELS_MAX);
        if (in->models == NULL && (in->models = calloc(LX_KEY_MODELS_MAX, sizeof(char *))) == NULL)
            return fail(r, LX_ENOMEM, "out of memory");
        char *s = type == LX_JSON_STRING ? dup_text(r, &e, LX_KEY_MODEL_MAX) : NULL;
        if (s == NULL)
            return fail(r, LX_EINVAL, "models[%zu] must be a model id of 1 to %d bytes of text", i,
                        LX_KEY_MODEL_MAX);
        in->models[in->n_models++] = s;
    }
}

/* Whether <n> bytes of a provider object's text pass route/prefs, as a request's would. */
static int check_provider(struct rd *r, const char *text, size_t n)
{
    static const char head[] = "{\"provider\":";
    char body[sizeof(head) + LX_KEY_PROVIDER_MAX + 1];
    size_t len = sizeof(head) - 1 + n + 1;
    memcpy(body, head, sizeof(head) - 1);
    memcpy(body + sizeof(head) - 1, text, n);
    body[len - 1] = '}';
    lx_body_scan_t scan;
    if (lx_body_scan(body, len, &scan) != 0)
        return fail(r, LX_EINVAL, "provider: %s", scan.error);
    lx_prefs_t prefs;
    char msg[160];
    if (lx_prefs_parse(body, len, &scan, &prefs, msg, sizeof(msg)) != 0)
        return fail(r, LX_EINVAL, "%s", msg);
    return 0;
}

static int read_provider(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_PROVIDER;
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type != LX_JSON_OBJECT)
        return fail(r, LX_EINVAL, "provider must be an object or null");
    lx_json_token_t close;
    if (!lx_json_skip(&r->j, v, &close))
        return fail_syntax(r);
    size_t n = close.end - v->start;
    const char *text = r->base + v->start;
    if (n > LX_KEY_PROVIDER_MAX)
        return fail(r, LX_EINVAL, "provider is larger than %d bytes", LX_KEY_PROVIDER_MAX);
    for (size_t i = 0; i < n;) {
        size_t k = (unsigned char)text[i] < 0x80
                       ? 1
                       : lx_str_utf8_len((const unsigned char *)text + i, n - i);
        if (k == 0)
            return fail(r, LX_EINVAL, "provider holds invalid UTF-8");
        i += k;
    }
    int rc = check_provider(r, text, n);
    if (rc != 0)
        return rc;
    if ((in->provider = malloc(n + 1)) == NULL)
        return fail(r, LX_ENOMEM, "out of memory");
    memcpy(in->provider, text, n);
    in->provider[n] = '\0';
    return 0;
}

/* An integer 0..RATE_MAX (or null: 0) for rate_limit.<what>. */
static int read_rate(struct rd *r, const lx_json_token_t *v, const char *what, uint32_t *out)
{
    *out = 0;
    if (v->type == LX_JSON_NULL)
        return 0;
    size_t n = v->end - v->start;
    const char *s = r->base + v->start;
    uint64_t x = 0;
    bool ok = v->type == LX_JSON_NUMBER && n <= 10;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || x > RATE_MAX)
        return fail(r, LX_EINVAL, "rate_limit.%s must be an integer from 0 to %u (0: no limit)",
                    what, RATE_MAX);
    *out = (uint32_t)x;
    return 0;
}

static int read_rate_limit(struct rd *r, const lx_json_token_t *v, lx_key_input_t *in)
{
    in->set |= LX_KEY_F_RATE_LIMIT;
    in->rpm = in->tpm = in->concurrency = 0;
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type != LX_JSON_OBJECT)
        return fail(r, LX_EINVAL, "rate_limit must be an object {rpm, tpm, concurrency} or null");
    uint32_t *slots[] = {&in->rpm, &in->tpm, &in->concurrency};
    unsigned seen = 0;
    for (;;) {
        lx_json_token_t k, val;
        lx_json_type_t type = next(r, &k);
        if (type == LX_JSON_OBJECT_END)
            return 0;
        if (type != LX_JSON_KEY || next(r, &val) == LX_JSON_NONE)
            return fail_syntax(r);
        char key[KEY_MAX + 1], shown[48];
        key_text(r, &k, key);
        size_t m = 0;
        while (m < 3 && strcmp(key, rate_names[m]) != 0)
            m++;
        key_shown(r, &k, shown);
        if (m == 3)
            return fail(r, LX_EINVAL, "unknown member rate_limit.%s", shown);
        if (seen & (1u << m))
            return fail(r, LX_EINVAL, "rate_limit.%s is given twice", rate_names[m]);
        seen |= 1u << m;
        int rc = read_rate(r, &val, rate_names[m], slots[m]);
        if (rc != 0)
            return rc;
    }
}

static int read_member(struct rd *r, enum member m, const lx_json_token_t *v, lx_key_input_t *in)
{
    switch (m) {
    case M_NAME:
        return read_name(r, v, in);
    case M_DISABLED:
        in->set |= LX_KEY_F_DISABLED;
        return read_bool(r, v, "disabled", &in->disabled);
    case M_LIMIT:
        return read_limit(r, v, in);
    case M_LIMIT_RESET:
        return read_limit_reset(r, v, in);
    case M_EXPIRES_AT:
        return read_expires_at(r, v, in);
    case M_INCLUDE_BYOK: {
        bool ignored;
        return read_bool(r, v, "include_byok_in_limit", &ignored);
    }
    case M_MODELS:
        return read_models(r, v, in);
    case M_PROVIDER:
        return read_provider(r, v, in);
    case M_RATE_LIMIT:
        return read_rate_limit(r, v, in);
    case M_PRIORITY:
        return read_priority(r, v, in);
    default:
        return fail(r, LX_EINVAL, "unknown member");
    }
}

/* ---- the body --------------------------------------------------------------------------- */

/* Which member key <k> names; M_COUNT with a message when none (or not in this mode). */
static enum member member_of(struct rd *r, const lx_json_token_t *k, enum lx_key_json_mode mode)
{
    char key[KEY_MAX + 1], shown[48];
    key_text(r, k, key);
    enum member m = 0;
    while (m < M_COUNT && strcmp(key, member_names[m]) != 0)
        m++;
    if (m == M_EXPIRES_AT && mode == LX_KEY_JSON_UPDATE) {
        fail(r, LX_EINVAL, "expires_at can only be set when the key is created");
        return M_COUNT;
    }
    if (m == M_COUNT) {
        key_shown(r, k, shown);
        fail(r, LX_EINVAL, "unknown member \"%s\"", shown);
    }
    return m;
}

static int read_body(struct rd *r, enum lx_key_json_mode mode, lx_key_input_t *in)
{
    lx_json_token_t t, v;
    lx_json_type_t type = next(r, &t);
    if (type == LX_JSON_NONE)
        return r->j.error == LX_JSON_OK ? fail(r, LX_EJSON, "the body is empty") : fail_syntax(r);
    if (type != LX_JSON_OBJECT)
        return fail(r, LX_EINVAL, "the body must be a JSON object");
    unsigned seen = 0;
    while ((type = next(r, &t)) == LX_JSON_KEY) {
        enum member m = member_of(r, &t, mode);
        if (m == M_COUNT)
            return LX_EINVAL;
        if (seen & (1u << m))
            return fail(r, LX_EINVAL, "%s is given twice", member_names[m]);
        seen |= 1u << m;
        if (next(r, &v) == LX_JSON_NONE)
            return fail_syntax(r);
        int rc = read_member(r, m, &v, in);
        if (rc != 0)
            return rc;
    }
    if (type != LX_JSON_OBJECT_END || next(r, &t) != LX_JSON_NONE || r->j.error != LX_JSON_OK)
        return fail_syntax(r);
    if (mode == LX_KEY_JSON_CREATE && !(seen & (1u << M_NAME)))
        return fail(r, LX_EINVAL, "name is required");
    return 0;
}

int lx_key_json_parse(const char *body, size_t len, enum lx_key_json_mode mode, lx_key_input_t *in,
                      char *err, size_t errcap)
{
    memset(in, 0, sizeof(*in));
    struct rd r = {.base = body, .err = err, .errcap = errcap};
    if (errcap > 0)
        err[0] = '\0';
    if (len >= UINT32_MAX)
        return fail(&r, LX_EJSON, "the body is too large");
    lx_json_init(&r.j, body, len, KEY_JSON_DEPTH);
    int rc = read_body(&r, mode, in);
    if (rc != 0) {
        lx_key_input_dispose(in);
        memset(in, 0, sizeof(*in));
    }
    return rc;
}
