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
#include "llm/api_error.h"

/* Top-level members llmux recognizes; from M_MODELS on, consumed (removed upstream). */
enum member {
    M_NONE,
    M_MODEL,
    M_STREAM,
    M_STREAM_OPTIONS,
    M_MODELS,
    M_PROVIDER,
    M_ROUTE,
    M_SESSION_ID,
    M_USAGE,
};

static const char *const member_names[] = {
    "", "model", "stream", "stream_options", "models", "provider", "route", "session_id", "usage",
};

/* A consumed root member, for planning its removal. */
struct cut_member {
    uint32_t index; /* position among the root members */
    uint32_t start; /* opening quote of its key */
    uint32_t end;   /* one past its value */
    uint32_t prev_end;
    uint32_t next_start; /* 0 until the next member is seen */
};

/* The root members as either scan goes through them, for the splice plan. */
struct walk {
    uint32_t pos; /* one past the value just read */
    lx_body_scan_t *scan;
    unsigned seen; /* bit per enum member: duplicate detection */
    uint32_t n_members;
    bool pending; /* a root member's value is being read */
    bool pending_consumed;
    uint32_t pending_start;
    uint32_t prev_end; /* end of the previous root member, 0 before the first */
    bool have_kept;
    uint32_t first_kept; /* index of the first kept member */
    struct cut_member cut[LX_BODY_MAX_CUTS];
    uint32_t n_cut;
};

static int fail(lx_body_scan_t *scan, int code, const char *msg)
{
    snprintf(scan->error, sizeof(scan->error), "%s", msg);
    return code;
}

static int fail_at(lx_body_scan_t *scan, size_t off)
{
    snprintf(scan->error, sizeof(scan->error), "invalid JSON at byte %zu", off);
    return LX_EJSON;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The root member whose value just ended at w->pos. */
static void end_root_member(struct walk *w)
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
static void begin_root_member(struct walk *w, uint32_t start, bool consumed)
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
static void plan_cuts(struct walk *w)
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
static enum member root_member_of(const char *k, uint32_t n)
{
    switch (n) {
    case 5:
        return memcmp(k, "model", 5) == 0   ? M_MODEL
               : memcmp(k, "route", 5) == 0 ? M_ROUTE
               : memcmp(k, "usage", 5) == 0 ? M_USAGE
                                            : M_NONE;
    case 6:
        return memcmp(k, "stream", 6) == 0   ? M_STREAM
               : memcmp(k, "models", 6) == 0 ? M_MODELS
                                             : M_NONE;
    case 8:
        return memcmp(k, "provider", 8) == 0 ? M_PROVIDER : M_NONE;
    case 10:
        return memcmp(k, "session_id", 10) == 0 ? M_SESSION_ID : M_NONE;
    case 14:
        return memcmp(k, "stream_options", 14) == 0 ? M_STREAM_OPTIONS : M_NONE;
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
 * size counts an object's members or an array's elements. */
struct fval {
    enum vtype type;
    uint32_t start, end, size;
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
                if (hex_value(f->b[p + k]) < 0)
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
    v->size = 0;
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
    v->size = 0;
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
                v->size = 0;
            }
            arrays = c == '[' ? arrays | (uint64_t)1 << depth : arrays & ~((uint64_t)1 << depth);
            depth++;
            f->pos++;
            f_ws(f);
            if (f->pos < f->len && f->b[f->pos] == (c == '{' ? '}' : ']')) {
                f->pos++;
                depth--;
            } else {
                if (depth == 1)
                    v->size = 1;
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
                if (depth == 1)
                    v->size++;
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
static bool f_options(struct fast *f, const struct fval *v, enum member m, lx_body_scan_t *scan)
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

/* The checks and records of ref_member() for member <m> with value <t>. */
static bool f_member(struct fast *f, enum member m, const struct fval *t, lx_body_scan_t *scan)
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
            enum member m = root_member_of(body + k.start, k.end - k.start);
            if (m == M_MODELS)
                return false; /* its entries are the reference scan's: not read twice */
            begin_root_member(w, start, m >= M_MODELS);
            if (m != M_NONE) {
                if (w->seen & (1u << m))
                    return false;
                w->seen |= 1u << m;
            }
            if (!f_value(&f, &v) || !f_member(&f, m, &v, scan))
                return false;
            w->pos = f.pos;
            end_root_member(w);
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
    plan_cuts(w);
    return true;
}

/* ---- the reference scan ----
 *
 * One read of the body with core/json's tokenizer, which owns the grammar, the depth limit and
 * the error offsets; the members llmux acts on are checked and recorded as they come, values
 * that do not matter are read through. Every body the direct scan gives up on comes here.
 */

struct ref {
    lx_json_t j;
    const char *body;
    lx_body_scan_t *scan;
};

/* The tokenizer's error, worded for the client. */
static int json_fail(const struct ref *r)
{
    switch (r->j.error) {
    case LX_JSON_EEOF:
        return fail(r->scan, LX_EJSON, "invalid JSON: unexpected end of body");
    case LX_JSON_EDEPTH:
        return fail(r->scan, LX_EJSON, "JSON nested too deeply");
    default:
        return fail_at(r->scan, r->j.error_off);
    }
}

static lx_json_type_t next(struct ref *r, lx_json_token_t *t)
{
    return lx_json_next(&r->j, t);
}

static bool tok_is(const struct ref *r, const lx_json_token_t *t, const char *lit, uint32_t n)
{
    return t->end - t->start == n && memcmp(r->body + t->start, lit, n) == 0;
}

static lx_body_span_t tok_span(const lx_json_token_t *t)
{
    lx_body_span_t s = {t->start, t->end - t->start};
    return s;
}

static bool is_bool_or_null(const lx_json_token_t *t)
{
    return t->type == LX_JSON_TRUE || t->type == LX_JSON_FALSE || t->type == LX_JSON_NULL;
}

/* Reads through the value whose first token is <v>; *<end> is one past its last byte. */
static int ref_value_end(struct ref *r, const lx_json_token_t *v, uint32_t *end)
{
    if (v->type == LX_JSON_OBJECT || v->type == LX_JSON_ARRAY) {
        lx_json_token_t close;
        if (!lx_json_skip(&r->j, v, &close))
            return json_fail(r);
        *end = close.end;
    } else {
        *end = v->type == LX_JSON_STRING ? v->end + 1 : v->end;
    }
    return 0;
}

/* The members of the stream_options or usage object just opened: the boolean include_usage
 * or include. */
static int ref_options(struct ref *r, enum member m, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    bool usage = m == M_USAGE, seen = false;
    uint32_t members = 0;
    for (;;) {
        lx_json_token_t k, v;
        lx_json_type_t type = next(r, &k);
        if (type == LX_JSON_OBJECT_END) {
            *end = k.end;
            break;
        }
        if (type == LX_JSON_NONE || next(r, &v) == LX_JSON_NONE)
            return json_fail(r);
        members++;
        if (usage ? tok_is(r, &k, "include", 7) : tok_is(r, &k, "include_usage", 13)) {
            if (seen)
                return fail(scan, LX_EJSON,
                            usage ? "duplicate 'usage.include' member"
                                  : "duplicate 'include_usage' member");
            seen = true;
            if (!is_bool_or_null(&v))
                return fail(scan, LX_EJSON,
                            usage ? "'usage.include' must be a boolean"
                                  : "'stream_options.include_usage' must be a boolean");
            if (usage) {
                scan->usage_include = v.type == LX_JSON_TRUE;
            } else {
                scan->has_include_usage = true;
                scan->include_usage = v.type == LX_JSON_TRUE;
                scan->include_usage_value = tok_span(&v);
            }
        } else {
            uint32_t e;
            int rc = ref_value_end(r, &v, &e);
            if (rc != 0)
                return rc;
        }
    }
    if (!usage)
        scan->stream_options_members = members;
    return 0;
}

/* The entries of the "models" array just opened: strings only, at most LX_BODY_MAX_MODELS. */
static int ref_models(struct ref *r, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    for (;;) {
        lx_json_token_t e;
        lx_json_type_t type = next(r, &e);
        if (type == LX_JSON_ARRAY_END) {
            *end = e.end;
            return 0;
        }
        if (type == LX_JSON_NONE)
            return json_fail(r);
        if (type != LX_JSON_STRING)
            return fail(scan, LX_EJSON, "'models' must be an array of strings");
        if (scan->n_models == LX_BODY_MAX_MODELS)
            return fail(scan, LX_EJSON, "'models' may list at most 16 models");
        scan->model_list[scan->n_models++] = tok_span(&e);
    }
}

/* The checks and records of root member <m>, whose value starts with token <v>; *<end> is one
 * past the value. */
static int ref_member(struct ref *r, enum member m, const lx_json_token_t *v, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    bool null = v->type == LX_JSON_NULL, obj = v->type == LX_JSON_OBJECT;
    bool str = v->type == LX_JSON_STRING;
    int rc;
    switch (m) {
    case M_MODEL:
        if (!str)
            return fail(scan, LX_EJSON, "'model' must be a string");
        scan->has_model = true;
        scan->model = tok_span(v);
        break;
    case M_STREAM:
        scan->has_stream = true;
        if (!is_bool_or_null(v))
            return fail(scan, LX_EJSON, "'stream' must be a boolean");
        scan->stream = v->type == LX_JSON_TRUE;
        break;
    case M_STREAM_OPTIONS:
        if (!obj && !null)
            return fail(scan, LX_EJSON, "'stream_options' must be an object");
        scan->has_stream_options = obj;
        scan->stream_options_null = null;
        if (obj && (rc = ref_options(r, m, end)) != 0)
            return rc;
        if (null)
            *end = v->end;
        scan->stream_options.off = v->start;
        scan->stream_options.len = *end - v->start;
        return 0;
    case M_MODELS:
        scan->has_models = true;
        if (null)
            break;
        if (v->type != LX_JSON_ARRAY)
            return fail(scan, LX_EJSON, "'models' must be an array of strings");
        if ((rc = ref_models(r, end)) != 0)
            return rc;
        scan->models.off = v->start;
        scan->models.len = *end - v->start;
        return 0;
    case M_PROVIDER:
        scan->has_provider = true;
        if (null)
            break;
        if (!obj)
            return fail(scan, LX_EJSON, "'provider' must be an object");
        if ((rc = ref_value_end(r, v, end)) != 0)
            return rc;
        scan->provider.off = v->start;
        scan->provider.len = *end - v->start;
        return 0;
    case M_ROUTE:
    case M_SESSION_ID:
        *(m == M_ROUTE ? &scan->has_route : &scan->has_session_id) = true;
        if (null)
            break;
        if (!str)
            return fail(scan, LX_EJSON,
                        m == M_ROUTE ? "'route' must be a string"
                                     : "'session_id' must be a string");
        *(m == M_ROUTE ? &scan->route : &scan->session_id) = tok_span(v);
        break;
    case M_USAGE:
        scan->has_usage = true;
        if (null)
            break;
        if (!obj)
            return fail(scan, LX_EJSON, "'usage' must be an object");
        return ref_options(r, m, end);
    case M_NONE:
        break;
    }
    return ref_value_end(r, v, end);
}

/* The reference scan of body[0, len). */
static int scan_ref(const char *body, size_t len, lx_body_scan_t *scan)
{
    size_t lead = 0;
    while (lead < len && is_ws(body[lead]))
        lead++;
    if (lead == len)
        return fail(scan, LX_EJSON, "request body is empty");
    if (body[lead] != '{')
        return fail(scan, LX_EJSON, "request body must be a JSON object");

    struct ref r;
    r.body = body;
    r.scan = scan;
    lx_json_init(&r.j, body, len, LX_BODY_MAX_DEPTH);
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.scan = scan;
    lx_json_token_t t, v;
    (void)next(&r, &t); /* the root's '{' */
    scan->root_open = t.start;
    for (;;) {
        lx_json_type_t type = next(&r, &t);
        if (type == LX_JSON_OBJECT_END)
            break;
        if (type == LX_JSON_NONE)
            return json_fail(&r);
        enum member m = root_member_of(body + t.start, t.end - t.start);
        begin_root_member(&w, t.start - 1, m >= M_MODELS);
        if (m != M_NONE) {
            if (w.seen & (1u << m)) {
                snprintf(scan->error, sizeof(scan->error), "duplicate '%s' member",
                         member_names[m]);
                return LX_EJSON;
            }
            w.seen |= 1u << m;
        }
        if (next(&r, &v) == LX_JSON_NONE)
            return json_fail(&r);
        int rc = ref_member(&r, m, &v, &w.pos);
        if (rc != 0)
            return rc;
        end_root_member(&w);
    }
    if (next(&r, &t) != LX_JSON_NONE || r.j.error != LX_JSON_OK)
        return json_fail(&r);
    plan_cuts(&w);
    return 0;
}

int lx_body_scan(const char *body, size_t len, lx_body_scan_t *scan)
{
    memset(scan, 0, sizeof(*scan));
    if (len > LX_BODY_MAX_LEN)
        return fail(scan, LX_ETOOBIG, "request body too large");
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.scan = scan;
    if (scan_direct(body, len, &w, scan))
        return 0;
    memset(scan, 0, sizeof(*scan));
    return scan_ref(body, len, scan);
}

/* One edit of the original body: replace body[off, off + len) by up to 3 texts. */
struct op {
    uint32_t off;
    uint32_t len;
    const char *text[3];
    size_t text_len[3];
};

static struct op *add_op(struct op *ops, size_t *n, uint32_t off, uint32_t len)
{
    struct op *o = &ops[(*n)++];
    memset(o, 0, sizeof(*o));
    o->off = off;
    o->len = len;
    return o;
}

static void op_text(struct op *o, const char *s, size_t len)
{
    for (int k = 0; k < 3; k++) {
        if (o->text[k] == NULL) {
            o->text[k] = s;
            o->text_len[k] = len;
            return;
        }
    }
}

#define TEXT(o, lit) op_text((o), (lit), sizeof(lit) - 1)

static int put_piece(lx_body_piece_t *pieces, size_t max, size_t *n, size_t *total, const char *ptr,
                     size_t len)
{
    if (len == 0)
        return 0;
    if (*n == max)
        return LX_ETOOBIG;
    pieces[*n].ptr = ptr;
    pieces[*n].len = len;
    (*n)++;
    *total += len;
    return 0;
}

int lx_body_splice(const char *body, size_t len, const lx_body_scan_t *scan, const char *model,
                   size_t model_len, bool add_include_usage, lx_body_piece_t *pieces,
                   size_t max_pieces, char *scratch, size_t scratch_size, size_t *total_len)
{
    struct op ops[12];
    size_t n_ops = 0;
    const char *esc = NULL;
    size_t esc_len = 0;
    struct op *o;

    if (model != NULL) {
        esc_len = lx_json_escaped_len(model, model_len);
        if (esc_len > scratch_size)
            return LX_ETOOBIG;
        lx_json_escape(scratch, scratch_size, model, model_len, NULL);
        esc = scratch;
    }
    uint32_t head = scan->root_open + 1;
    bool head_model = model != NULL && !scan->has_model;

    /* The added "model" member goes first; a comma follows it when anything else stays. */
    if (model != NULL && scan->has_model) {
        o = add_op(ops, &n_ops, scan->model.off, scan->model.len);
        op_text(o, esc, esc_len);
    } else if (head_model) {
        o = add_op(ops, &n_ops, head, 0);
        TEXT(o, "\"model\":\"");
        op_text(o, esc, esc_len);
        if (scan->kept > 0)
            TEXT(o, "\",");
        else
            TEXT(o, "\"");
    }

    if (add_include_usage && scan->stream && !scan->include_usage) {
        if (scan->has_stream_options && scan->has_include_usage) {
            o = add_op(ops, &n_ops, scan->include_usage_value.off, scan->include_usage_value.len);
            TEXT(o, "true");
        } else if (scan->has_stream_options) {
            o = add_op(ops, &n_ops, scan->stream_options.off + 1, 0);
            if (scan->stream_options_members > 0)
                TEXT(o, "\"include_usage\":true,");
            else
                TEXT(o, "\"include_usage\":true");
        } else if (scan->stream_options_null) {
            o = add_op(ops, &n_ops, scan->stream_options.off, scan->stream_options.len);
            TEXT(o, "{\"include_usage\":true}");
        } else if (scan->kept > 0) {
            o = add_op(ops, &n_ops, scan->last_kept_end, 0);
            TEXT(o, ",\"stream_options\":{\"include_usage\":true}");
        } else {
            o = add_op(ops, &n_ops, head, 0);
            if (head_model)
                TEXT(o, ",");
            TEXT(o, "\"stream_options\":{\"include_usage\":true}");
        }
    }

    for (uint32_t k = 0; k < scan->n_cuts; k++)
        add_op(ops, &n_ops, scan->cuts[k].off, scan->cuts[k].len);

    /* Stable insertion sort by offset; at one offset insertions come before a replacement or
     * deletion starting there (an insertion at a member's end precedes the cut that follows). */
    for (size_t a = 1; a < n_ops; a++) {
        struct op tmp = ops[a];
        size_t b = a;
        while (b > 0 && (ops[b - 1].off > tmp.off ||
                         (ops[b - 1].off == tmp.off && ops[b - 1].len > 0 && tmp.len == 0))) {
            ops[b] = ops[b - 1];
            b--;
        }
        ops[b] = tmp;
    }

    size_t n = 0, total = 0, cursor = 0;
    int rc;
    for (size_t a = 0; a < n_ops; a++) {
        if (ops[a].off < cursor || ops[a].off + (size_t)ops[a].len > len)
            return LX_EJSON; /* not the scan of this body */
        if ((rc = put_piece(pieces, max_pieces, &n, &total, body + cursor, ops[a].off - cursor)) !=
            0)
            return rc;
        for (int k = 0; k < 3 && ops[a].text[k] != NULL; k++)
            if ((rc = put_piece(pieces, max_pieces, &n, &total, ops[a].text[k],
                                ops[a].text_len[k])) != 0)
                return rc;
        cursor = ops[a].off + (size_t)ops[a].len;
    }
    if ((rc = put_piece(pieces, max_pieces, &n, &total, body + cursor, len - cursor)) != 0)
        return rc;
    *total_len = total;
    return (int)n;
}

/* Appends code point <cp> as UTF-8 at out[*o]; LX_ETOOBIG when it does not fit. */
static int put_utf8(char *out, size_t cap, size_t *o, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (n > cap - *o)
        return LX_ETOOBIG;
    memcpy(out + *o, b, n);
    *o += n;
    return 0;
}

/* The 4 hex digits at s, or -1. */
static int32_t hex4(const char *s)
{
    int32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int lx_body_unescape(const char *raw, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (c != '\\') {
            if (o == cap)
                return LX_ETOOBIG;
            out[o++] = c;
            continue;
        }
        if (++i == len)
            return LX_EJSON;
        uint32_t cp;
        switch (raw[i]) {
        case '"':
        case '\\':
        case '/':
            cp = (unsigned char)raw[i];
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u': {
            if (len - i < 5)
                return LX_EJSON;
            int32_t u = hex4(raw + i + 1);
            if (u < 0)
                return LX_EJSON;
            i += 4;
            cp = (uint32_t)u;
            if (cp >= 0xd800 && cp <= 0xdbff && len - i >= 7 && raw[i + 1] == '\\' &&
                raw[i + 2] == 'u') {
                int32_t lo = hex4(raw + i + 3);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                    i += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* lone surrogate */
            break;
        }
        default:
            return LX_EJSON;
        }
        if ((rc = put_utf8(out, cap, &o, cp)) != 0)
            return rc;
    }
    if (o > INT32_MAX)
        return LX_ETOOBIG;
    return (int)o;
}
