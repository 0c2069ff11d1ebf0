/*
 * body.c - the request body scan and splice (DESIGN.md data-path rule 3).
 *
 * The gateway calls lx_body_scan() once the whole request body has arrived, before routing.
 * First a direct pass over the bytes checks the JSON grammar strictly and records the top-level
 * members llmux acts on, with no allocation; it handles every valid body without a "models"
 * list and nested at most FAST_DEPTH deep. Whatever it gives up on goes to the reference scan,
 * which reads the body once more with the project's tokenizer (core/json: strict, no
 * allocation, the depth limit enforced as it reads), records the same members and words the
 * error. Both passes are linear in the body whatever its shape. lx_body_splice() turns the
 * record into the upstream body as a list of slices of the original bytes plus a few generated
 * strings, which the proxy writes with writev: the body is never re-serialized or copied.
 *
 * Owns nothing beyond the call; spans in lx_body_scan_t point into the caller's body.
 */
#include "llm/body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/body_int.h"

const char *const lx_body_member_names[] = {
    "",         "model", "stream",     "stream_options", "max_tokens", "max_completion_tokens",
    "user",     "n",     "best_of",    "messages",       "prompt",     "models",
    "provider", "route", "session_id", "usage",
};

int lx_body_fail(lx_body_scan_t *scan, int code, const char *msg)
{
    snprintf(scan->error, sizeof(scan->error), "%s", msg);
    return code;
}

int lx_body_fail_at(lx_body_scan_t *scan, size_t off)
{
    snprintf(scan->error, sizeof(scan->error), "invalid JSON at byte %zu", off);
    return LX_EJSON;
}

int lx_body_fail_count(lx_body_scan_t *scan, enum lx_body_member m)
{
    snprintf(scan->error, sizeof(scan->error), "'%s' must be a non-negative integer",
             lx_body_member_names[m]);
    return LX_EJSON;
}

bool lx_body_count(const char *p, uint32_t n, int64_t *out)
{
    int64_t v = 0;
    if (n == 0)
        return false;
    for (uint32_t k = 0; k < n; k++) {
        unsigned d = (unsigned)(unsigned char)p[k] - '0';
        if (d > 9)
            return false;
        v = v > (INT64_MAX - (int64_t)d) / 10 ? INT64_MAX : v * 10 + (int64_t)d;
    }
    *out = v;
    return true;
}

/* The root member whose value just ended at w->pos. */
void lx_body_end_root_member(struct walk *w)
{
    if (!w->pending)
        return;
    w->pending = false;
    uint32_t index = w->n_members - 1;
    if (w->pending_consumed) {
        struct cut_member *c = &w->cut[w->n_cut++];
        c->index = index;
        c->start = w->pending_start;
        c->end = w->pos;
        c->prev_end = w->prev_end;
        c->next_start = 0;
    } else {
        if (!w->have_kept) {
            w->have_kept = true;
            w->first_kept = index;
        }
        w->scan->kept++;
        w->scan->last_kept_end = w->pos;
    }
    w->prev_end = w->pos;
}

/* A root member starts at <start> (its key's opening quote). */
void lx_body_begin_root_member(struct walk *w, uint32_t start, bool consumed)
{
    if (w->n_cut > 0 && w->cut[w->n_cut - 1].next_start == 0)
        w->cut[w->n_cut - 1].next_start = start;
    w->n_members++;
    w->pending = true;
    w->pending_consumed = consumed;
    w->pending_start = start;
}

/* Turns the consumed members into byte ranges to delete: before the first kept member each
 * takes the comma after it, after it each takes the comma before it, so no comma is shared. */
void lx_body_plan_cuts(struct walk *w)
{
    lx_body_scan_t *scan = w->scan;
    if (w->n_cut == 0)
        return;
    if (!w->have_kept) {
        /* every member goes: from the first key to the end of the last value */
        scan->cuts[0].off = w->cut[0].start;
        scan->cuts[0].len = w->cut[w->n_cut - 1].end - w->cut[0].start;
        scan->n_cuts = 1;
        return;
    }
    for (uint32_t k = 0; k < w->n_cut; k++) {
        const struct cut_member *c = &w->cut[k];
        uint32_t from = c->index < w->first_kept ? c->start : c->prev_end;
        uint32_t to = c->index < w->first_kept ? c->next_start : c->end;
        scan->cuts[scan->n_cuts].off = from;
        scan->cuts[scan->n_cuts].len = to - from;
        scan->n_cuts++;
    }
}

/* The member a root key of <n> bytes at <k> names: exact bytes, escapes not decoded. */
enum lx_body_member lx_body_root_member_of(const char *k, uint32_t n)
{
    switch (n) {
    case 1:
        return k[0] == 'n' ? M_N : M_NONE;
    case 4:
        return memcmp(k, "user", 4) == 0 ? M_USER : M_NONE;
    case 5:
        return memcmp(k, "model", 5) == 0   ? M_MODEL
               : memcmp(k, "route", 5) == 0 ? M_ROUTE
               : memcmp(k, "usage", 5) == 0 ? M_USAGE
                                            : M_NONE;
    case 6:
        return memcmp(k, "stream", 6) == 0   ? M_STREAM
               : memcmp(k, "models", 6) == 0 ? M_MODELS
               : memcmp(k, "prompt", 6) == 0 ? M_PROMPT
                                             : M_NONE;
    case 7:
        return memcmp(k, "best_of", 7) == 0 ? M_BEST_OF : M_NONE;
    case 8:
        return memcmp(k, "provider", 8) == 0   ? M_PROVIDER
               : memcmp(k, "messages", 8) == 0 ? M_MESSAGES
                                               : M_NONE;
    case 10:
        return memcmp(k, "session_id", 10) == 0   ? M_SESSION_ID
               : memcmp(k, "max_tokens", 10) == 0 ? M_MAX_TOKENS
                                                  : M_NONE;
    case 14:
        return memcmp(k, "stream_options", 14) == 0 ? M_STREAM_OPTIONS : M_NONE;
    case 21:
        return memcmp(k, "max_completion_tokens", 21) == 0 ? M_MAX_COMPLETION_TOKENS : M_NONE;
    default:
        return M_NONE;
    }
}

/* ---- the direct scan ----
 *
 * Most bodies are valid JSON without llmux's "models" list. For them one pass over the bytes
 * checks the same grammar and records the same members as the reference scan, taking nested
 * values in one tight loop. Anything else - a grammar or type error, a duplicate, "models",
 * nesting over FAST_DEPTH - makes it give up, and the reference scan decides (and words the
 * error): the direct scan only ever accepts what that one accepts, with the same record.
 */

#define FAST_DEPTH 64

enum vtype { V_STRING, V_PRIMITIVE, V_OBJECT, V_ARRAY };

/* One value read by the direct scan: strings span their content, other values their bytes;
 * size counts an object's members or an array's elements, last is the offset of the last one
 * (an array's element, an object member's key; 0 for other values and empty ones). */
struct fval {
    enum vtype type;
    uint32_t start, end, size, last;
};

struct fast {
    const char *b;
    uint32_t len;
    uint32_t pos;
};

static void f_ws(struct fast *f)
{
    /* one comparison for the usual next byte, which is no blank */
    while (f->pos < f->len && (unsigned char)f->b[f->pos] <= ' ' && is_ws(f->b[f->pos]))
        f->pos++;
}

/* A string at f->pos (its opening quote): content checked as core/json checks it. */
static bool f_string(struct fast *f, struct fval *v)
{
    uint32_t p = ++f->pos;
    for (;;) {
        p += (uint32_t)lx_str_json_plain(f->b + p, f->len - p, true);
        if (p >= f->len)
            return false;
        char c = f->b[p];
        if (c == '"')
            break;
        if (c != '\\' || p + 1 >= f->len)
            return false; /* a control character, or an escape cut short */
        char e = f->b[p + 1];
        if (e == 'u') {
            if (f->len - p < 6)
                return false;
            for (uint32_t k = 2; k < 6; k++)
                if (lx_hex_value(f->b[p + k]) < 0)
                    return false;
            p += 6;
        } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                   e == 'r' || e == 't') {
            p += 2;
        } else {
            return false;
        }
    }
    v->type = V_STRING;
    v->start = f->pos;
    v->end = p;
    v->size = v->last = 0;
    f->pos = p + 1;
    return true;
}

/* A number or literal at f->pos: the bytes up to a delimiter must be a valid number or literal. */
static bool f_primitive(struct fast *f, struct fval *v)
{
    uint32_t p = f->pos;
    while (p < f->len) {
        char c = f->b[p];
        if (c == ',' || c == '}' || c == ']' || is_ws(c))
            break;
        p++;
    }
    if (!lx_json_primitive_valid(f->b + f->pos, p - f->pos))
        return false;
    v->type = V_PRIMITIVE;
    v->start = f->pos;
    v->end = p;
    v->size = v->last = 0;
    f->pos = p;
    return true;
}

/* A member key and its colon, at f->pos; the key's content in *<k>. */
static bool f_key(struct fast *f, struct fval *k)
{
    if (f->pos >= f->len || f->b[f->pos] != '"' || !f_string(f, k))
        return false;
    f_ws(f);
    if (f->pos >= f->len || f->b[f->pos] != ':')
        return false;
    f->pos++;
    f_ws(f);
    return true;
}

/* Any value at f->pos, nested ones included (iteratively, at most FAST_DEPTH deep). */
static bool f_value(struct fast *f, struct fval *v)
{
    uint64_t arrays = 0; /* bit d: the container at depth d + 1 is an array */
    uint32_t depth = 0;
    struct fval tmp;
    for (;;) {
        /* a value at f->pos */
        if (f->pos >= f->len)
            return false;
        char c = f->b[f->pos];
        struct fval *at = depth == 0 ? v : &tmp;
        if (c == '{' || c == '[') {
            if (depth == FAST_DEPTH)
                return false;
            if (depth == 0) {
                v->type = c == '{' ? V_OBJECT : V_ARRAY;
                v->start = f->pos;
                v->size = v->last = 0;
            }
            arrays = c == '[' ? arrays | (uint64_t)1 << depth : arrays & ~((uint64_t)1 << depth);
            depth++;
            f->pos++;
            f_ws(f);
            if (f->pos < f->len && f->b[f->pos] == (c == '{' ? '}' : ']')) {
                f->pos++;
                depth--;
            } else {
                if (depth == 1) {
                    v->size = 1;
                    v->last = f->pos;
                }
                if (c == '{' && !f_key(f, &tmp))
                    return false;
                continue;
            }
        } else if (c == '"') {
            if (!f_string(f, at))
                return false;
        } else if (!f_primitive(f, at)) {
            return false;
        }
        /* after a value: a comma and the next one, or closing brackets */
        for (;;) {
            if (depth == 0) {
                if (v->type == V_OBJECT || v->type == V_ARRAY)
                    v->end = f->pos;
                return true;
            }
            bool arr = arrays >> (depth - 1) & 1u;
            f_ws(f);
            if (f->pos >= f->len)
                return false;
            c = f->b[f->pos];
            if (c == ',') {
                f->pos++;
                f_ws(f);
                if (depth == 1) {
                    v->size++;
                    v->last = f->pos;
                }
                if (!arr && !f_key(f, &tmp))
                    return false;
                break;
            }
            if (c != (arr ? ']' : '}'))
                return false;
            f->pos++;
            depth--;
        }
    }
}

static bool f_is(const struct fast *f, const struct fval *t, const char *lit, uint32_t n)
{
    return t->end - t->start == n && memcmp(f->b + t->start, lit, n) == 0;
}

static lx_body_span_t f_span(const struct fval *t)
{
    lx_body_span_t sp = {t->start, t->end - t->start};
    return sp;
}

/* The stream_options or usage object at <v> (already checked): its include_usage or include
 * member, as ref_options() reads it. */
static bool f_options(struct fast *f, const struct fval *v, enum lx_body_member m,
                      lx_body_scan_t *scan)
{
    struct fast g = {f->b, v->end - 1, v->start + 1};
    bool usage = m == M_USAGE, seen = false;
    f_ws(&g);
    while (g.pos < g.len) {
        struct fval k, val;
        if (!f_key(&g, &k) || !f_value(&g, &val))
            return false;
        if (usage ? f_is(&g, &k, "include", 7) : f_is(&g, &k, "include_usage", 13)) {
            if (seen || val.type != V_PRIMITIVE)
                return false;
            seen = true;
            bool is_true = f_is(&g, &val, "true", 4);
            if (!is_true && !f_is(&g, &val, "false", 5) && !f_is(&g, &val, "null", 4))
                return false;
            if (usage) {
                scan->usage_include = is_true;
            } else {
                scan->has_include_usage = true;
                scan->include_usage = is_true;
                scan->include_usage_value = f_span(&val);
            }
        }
        f_ws(&g);
        if (g.pos < g.len && g.b[g.pos] == ',')
            g.pos++;
        f_ws(&g);
    }
    return true;
}

/* The "messages" or "prompt" (<m>) value <t>: recorded when an array (or a string prompt). */
static void f_prompt(enum lx_body_member m, const struct fval *t, lx_body_scan_t *scan)
{
    bool msg = m == M_MESSAGES, arr = t->type == V_ARRAY;
    if (msg) {
        scan->has_messages = arr;
        scan->messages = arr ? f_span(t) : (lx_body_span_t){0, 0};
        scan->n_messages = arr ? t->size : 0;
        scan->messages_last = arr ? t->last : 0;
        return;
    }
    bool ok = arr || t->type == V_STRING;
    scan->has_prompt = ok;
    scan->prompt_array = arr;
    scan->prompt = ok ? f_span(t) : (lx_body_span_t){0, 0};
    scan->n_prompt = arr ? t->size : 0;
    scan->prompt_last = arr ? t->last : 0;
}

/* The checks and records of ref_member() for member <m> with value <t>. */
static bool f_member(struct fast *f, enum lx_body_member m, const struct fval *t,
                     lx_body_scan_t *scan)
{
    bool null = t->type == V_PRIMITIVE && f_is(f, t, "null", 4);
    switch (m) {
    case M_MODEL:
        if (t->type != V_STRING)
            return false;
        scan->has_model = true;
        scan->model = f_span(t);
        return true;
    case M_STREAM:
        scan->has_stream = true;
        if (t->type == V_PRIMITIVE && f_is(f, t, "true", 4))
            scan->stream = true;
        else if (!(t->type == V_PRIMITIVE && (f_is(f, t, "false", 5) || null)))
            return false;
        return true;
    case M_STREAM_OPTIONS:
        if (t->type == V_OBJECT) {
            scan->has_stream_options = true;
            scan->stream_options_members = t->size;
            if (!f_options(f, t, m, scan))
                return false;
        } else if (null) {
            scan->stream_options_null = true;
        } else {
            return false;
        }
        scan->stream_options = f_span(t);
        return true;
    case M_PROVIDER:
        scan->has_provider = true;
        if (!null && t->type != V_OBJECT)
            return false;
        if (!null)
            scan->provider = f_span(t);
        return true;
    case M_ROUTE:
    case M_SESSION_ID:
        *(m == M_ROUTE ? &scan->has_route : &scan->has_session_id) = true;
        if (!null && t->type != V_STRING)
            return false;
        if (!null)
            *(m == M_ROUTE ? &scan->route : &scan->session_id) = f_span(t);
        return true;
    case M_USAGE:
        scan->has_usage = true;
        if (null)
            return true;
        return t->type == V_OBJECT && f_options(f, t, m, scan);
    case M_MAX_TOKENS:
    case M_MAX_COMPLETION_TOKENS:
    case M_N:
    case M_BEST_OF:
        return null || (t->type == V_PRIMITIVE && lx_body_count(f->b + t->start, t->end - t->start,
                                                                lx_body_count_slot(scan, m)));
    case M_USER:
        if (null)
            return true;
        if (t->type != V_STRING)
            return false;
        scan->has_user = true;
        scan->user = f_span(t);
        return true;
    case M_MESSAGES:
    case M_PROMPT:
        f_prompt(m, t, scan);
        return true;
    case M_MODELS: /* not reached: scan_direct() gives up at the key */
        return false;
    case M_NONE:
        return true;
    }
    return false;
}

/* The direct scan of body[0, len) (len <= LX_BODY_MAX_LEN); false: let the reference scan decide
 * (*scan and the walk are then to be reset). */
static bool scan_direct(const char *body, size_t len, struct walk *w, lx_body_scan_t *scan)
{
    struct fast f = {body, (uint32_t)len, 0};
    f_ws(&f);
    if (f.pos >= f.len || body[f.pos] != '{')
        return false;
    scan->root_open = f.pos;
    f.pos++;
    f_ws(&f);
    if (f.pos < f.len && body[f.pos] == '}') {
        f.pos++;
    } else {
        for (;;) {
            struct fval k, v;
            uint32_t start = f.pos;
            if (!f_key(&f, &k))
                return false;
            enum lx_body_member m = lx_body_root_member_of(body + k.start, k.end - k.start);
            if (m == M_MODELS)
                return false; /* its entries are the reference scan's: not read twice */
            lx_body_begin_root_member(w, start, m >= M_MODELS);
            if (lx_body_dup_checked(m)) {
                if (w->seen & (1u << m))
                    return false;
                w->seen |= 1u << m;
            }
            if (!f_value(&f, &v) || !f_member(&f, m, &v, scan))
                return false;
            w->pos = f.pos;
            lx_body_end_root_member(w);
            f_ws(&f);
            if (f.pos >= f.len)
                return false;
            if (body[f.pos] == '}') {
                f.pos++;
                break;
            }
            if (body[f.pos] != ',')
                return false;
            f.pos++;
            f_ws(&f);
        }
    }
    f_ws(&f);
    if (f.pos != f.len)
        return false;
    lx_body_plan_cuts(w);
    return true;
}

/* The record before a scan: all zero, and the counts absent. */
static void clear(lx_body_scan_t *scan)
{
    memset(scan, 0, sizeof(*scan));
    scan->max_tokens = scan->max_completion_tokens = scan->n = scan->best_of = -1;
}

int lx_body_scan(const char *body, size_t len, lx_body_scan_t *scan)
{
    clear(scan);
    if (len > LX_BODY_MAX_LEN)
        return lx_body_fail(scan, LX_ETOOBIG, "request body too large");
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.scan = scan;
    if (scan_direct(body, len, &w, scan))
        return 0;
    clear(scan);
    return lx_body_scan_ref(body, len, scan);
}
