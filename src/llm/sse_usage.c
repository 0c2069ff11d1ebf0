/*
 * sse_usage.c - the counts of a usage object (sse_usage.h).
 *
 * The scanner copies each top-level usage object (at most LX_SSE_USAGE_MAX bytes) and reads its
 * counts here once it closed. Two readings: the reference, core/json's tokenizer over any
 * shape, and a short one for the shape every provider sends (an object of counts, with the two
 * details objects of counts), which takes a third of the instructions. The short reading is
 * strict where it accepts -- RFC 8259 strings and primitives -- and gives up on anything else,
 * so on what it accepts both agree (the unit tests and fuzz_sse_scan hold them together).
 */
#include "llm/sse_usage.h"

#include <string.h>

#include "core/json.h"
#include "core/str.h"

int64_t lx_sse_usage_count(const char *p, size_t len)
{
    if (len == 0 || len > 18)
        return -1;
    int64_t v = 0;
    for (size_t k = 0; k < len; k++) {
        if (p[k] < '0' || p[k] > '9')
            return -1;
        v = v * 10 + (p[k] - '0');
    }
    return v;
}

static void unknown(lx_sse_usage_t *u)
{
    u->prompt_tokens = u->completion_tokens = u->total_tokens = -1;
    u->cached_tokens = u->reasoning_tokens = -1;
}

/* ---- the reference reading ---------------------------------------------------------------- */

/* Which top-level member a key names. */
enum { K_OTHER, K_PROMPT, K_COMPLETION, K_TOTAL, K_CACHED_DETAILS, K_REASONING_DETAILS };

static bool key_is(const char *p, size_t n, const char *want, size_t wn)
{
    return n == wn && memcmp(p, want, wn) == 0;
}

static int top_key(const char *p, size_t n)
{
    if (key_is(p, n, "prompt_tokens", 13))
        return K_PROMPT;
    if (key_is(p, n, "completion_tokens", 17))
        return K_COMPLETION;
    if (key_is(p, n, "total_tokens", 12))
        return K_TOTAL;
    if (key_is(p, n, "prompt_tokens_details", 21))
        return K_CACHED_DETAILS;
    if (key_is(p, n, "completion_tokens_details", 25))
        return K_REASONING_DETAILS;
    return K_OTHER;
}

/* A token's value as a count: a number's digits, -1 for any other token. */
static int64_t tok_count(const char *text, const lx_json_token_t *t)
{
    return t->type == LX_JSON_NUMBER ? lx_sse_usage_count(text + t->start, t->end - t->start) : -1;
}

/* The reading state: the top-level member being read, and in a details object its first
 * wanted member's count. */
typedef struct ref {
    const char *text;
    lx_sse_usage_t *u;
    int member;       /* the top-level member whose value is read (K_*) */
    int64_t *detail;  /* in a details object: the count it sets, NULL once set */
    const char *want; /* ... the key that sets it */
    size_t want_len;
    bool detail_key; /* the key just read in the details object is <want> */
} ref_t;

/* A token at depth 1 (a top-level key or value). */
static void ref_top(ref_t *r, const lx_json_token_t *t)
{
    lx_sse_usage_t *u = r->u;
    if (t->type == LX_JSON_KEY) {
        r->member = top_key(r->text + t->start, t->end - t->start);
        return;
    }
    int64_t v = tok_count(r->text, t);
    switch (r->member) {
    case K_PROMPT:
        u->prompt_tokens = v;
        break;
    case K_COMPLETION:
        u->completion_tokens = v;
        break;
    case K_TOTAL:
        u->total_tokens = v;
        break;
    case K_CACHED_DETAILS:
    case K_REASONING_DETAILS: {
        bool cached = r->member == K_CACHED_DETAILS;
        int64_t *c = cached ? &u->cached_tokens : &u->reasoning_tokens;
        *c = -1; /* absent, or no object: unknown; the object's member sets it */
        r->detail = t->type == LX_JSON_OBJECT ? c : NULL;
        r->want = cached ? "cached_tokens" : "reasoning_tokens";
        r->want_len = cached ? 13 : 16;
        break;
    }
    default:
        break;
    }
}

/* A token at depth 2: in a details object, its first wanted member sets the count. */
static void ref_detail(ref_t *r, const lx_json_token_t *t)
{
    if (r->detail == NULL)
        return;
    if (t->type == LX_JSON_KEY) {
        r->detail_key = key_is(r->text + t->start, t->end - t->start, r->want, r->want_len);
        return;
    }
    if (r->detail_key) {
        *r->detail = tok_count(r->text, t);
        r->detail = NULL;
    }
}

void lx_sse_usage_read_ref(const char *text, size_t len, lx_sse_usage_t *u)
{
    unknown(u);
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, text, len, LX_SSE_USAGE_TOKENS);
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT)
        return;
    /* to the end or the first error: what was read before an error stands */
    ref_t r = {.text = text, .u = u, .member = K_OTHER};
    size_t tokens = 1;
    for (;;) {
        lx_json_type_t type = lx_json_next(&j, &t);
        if (type == LX_JSON_NONE)
            break;
        if (type != LX_JSON_OBJECT_END && type != LX_JSON_ARRAY_END &&
            ++tokens > LX_SSE_USAGE_TOKENS)
            break;
        if (t.depth == 1 && type != LX_JSON_OBJECT_END && type != LX_JSON_ARRAY_END)
            ref_top(&r, &t);
        else if (t.depth == 2 && type != LX_JSON_OBJECT_END && type != LX_JSON_ARRAY_END)
            ref_detail(&r, &t);
        else if (t.depth == 1) /* a details object closed without its member */
            r.detail = NULL;
    }
    if (tokens > LX_SSE_USAGE_TOKENS)
        unknown(u);
}

/* ---- the short reading ---------------------------------------------------------------------- */

/* Cursor of the short reading. */
typedef struct ureader {
    const char *p, *end;
    size_t tokens; /* values and keys read, as the reference counts them */
} ureader_t;

static void u_ws(ureader_t *r)
{
    while (r->p < r->end && (unsigned char)*r->p <= ' ' &&
           (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* Bytes a primitive may hold: digits, letters, signs and points (checked whole after). */
static bool u_prim_byte(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           ch == '-' || ch == '+' || ch == '.';
}

/* A string without escapes or control characters: its content in *<p>, *<n>. */
static bool u_string(ureader_t *r, const char **p, size_t *n)
{
    if (r->p >= r->end || *r->p != '"')
        return false;
    const char *q = ++r->p;
    r->p += lx_str_json_plain(r->p, (size_t)(r->end - r->p), true);
    if (r->p >= r->end || *r->p != '"')
        return false; /* a backslash, a control character or the end: the reference decides */
    *p = q;
    *n = (size_t)(r->p - q);
    r->p++;
    r->tokens++;
    return true;
}

/* A primitive (its count in *<v>, -1 when not a count) or a string (-1). */
static bool u_scalar(ureader_t *r, int64_t *v)
{
    const char *q;
    size_t n;
    if (r->p < r->end && *r->p == '"') {
        *v = -1;
        return u_string(r, &q, &n);
    }
    q = r->p;
    while (r->p < r->end && u_prim_byte(*r->p))
        r->p++;
    n = (size_t)(r->p - q);
    if (n == 0 || !lx_json_primitive_valid(q, n))
        return false;
    *v = lx_sse_usage_count(q, n);
    r->tokens++;
    return true;
}

/* A member's value stored where the reference stores it (<key>: its K_* at the top level). */
static void u_store(lx_sse_usage_t *u, int key, int64_t v, int64_t sub)
{
    switch (key) {
    case K_PROMPT:
        u->prompt_tokens = v;
        break;
    case K_COMPLETION:
        u->completion_tokens = v;
        break;
    case K_TOTAL:
        u->total_tokens = v;
        break;
    case K_CACHED_DETAILS:
        u->cached_tokens = sub;
        break;
    case K_REASONING_DETAILS:
        u->reasoning_tokens = sub;
        break;
    default:
        break;
    }
}

static bool u_object(ureader_t *r, bool top, const char *want, size_t want_len, lx_sse_usage_t *u,
                     int64_t *found);

/* One member's value at the top level: a scalar, or an object of scalars. */
static bool u_top_value(ureader_t *r, int key, lx_sse_usage_t *u)
{
    int64_t v = -1, sub = -1;
    if (r->p < r->end && *r->p == '{') {
        bool cached = key == K_CACHED_DETAILS;
        if (!u_object(r, false, cached ? "cached_tokens" : "reasoning_tokens", cached ? 13 : 16, u,
                      &sub))
            return false;
    } else if (!u_scalar(r, &v)) {
        return false;
    }
    u_store(u, key, v, sub);
    return true;
}

/*
 * An object whose member values are scalars, or at <top> also such objects. At the top the
 * counts go to *<u> by key, the last member winning as in the reference; in a nested object,
 * *<found> gets the first member named <want>. Returns false for any text outside this shape.
 */
static bool u_object(ureader_t *r, bool top, const char *want, size_t want_len, lx_sse_usage_t *u,
                     int64_t *found)
{
    if (r->p >= r->end || *r->p != '{')
        return false;
    r->p++;
    r->tokens++;
    u_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return true;
    }
    bool got = false;
    for (;;) {
        const char *k;
        size_t kn;
        if (!u_string(r, &k, &kn))
            return false;
        u_ws(r);
        if (r->p >= r->end || *r->p != ':')
            return false;
        r->p++;
        u_ws(r);
        if (top) {
            if (!u_top_value(r, top_key(k, kn), u))
                return false;
        } else {
            int64_t v = -1;
            if (!u_scalar(r, &v))
                return false;
            if (!got && key_is(k, kn, want, want_len)) {
                got = true;
                *found = v;
            }
        }
        u_ws(r);
        if (r->p >= r->end)
            return false;
        if (*r->p == '}') {
            r->p++;
            return true;
        }
        if (*r->p != ',')
            return false;
        r->p++;
        u_ws(r);
    }
}

bool lx_sse_usage_read_quick(const char *text, size_t len, lx_sse_usage_t *u)
{
    unknown(u);
    ureader_t r = {text, text + len, 0};
    return u_object(&r, true, NULL, 0, u, NULL) && r.p == r.end && r.tokens <= LX_SSE_USAGE_TOKENS;
}

void lx_sse_usage_read(const char *text, size_t len, lx_sse_usage_t *u)
{
    if (!lx_sse_usage_read_quick(text, len, u))
        lx_sse_usage_read_ref(text, len, u);
}
