/*
 * body.c - the request body scan and splice (DESIGN.md data-path rule 3).
 *
 * The gateway calls lx_body_scan() once the whole request body has arrived, before routing.
 * First a direct pass over the bytes checks the JSON grammar strictly and records the top-level
 * members llmux acts on, with no allocation; it handles every valid body without a "models"
 * list. Whatever it gives up on goes to the reference scan: jsmn tokenizes the body into a
 * token array (the only allocation, grown on demand and freed before returning), then one
 * iterative walk over the tokens checks the grammar strictly - jsmn, even in strict mode,
 * accepts malformed literals, missing separators and trailing values - records the members and
 * words the error. lx_body_splice() turns that record into the
 * upstream body as a list of slices of the original bytes plus a few generated strings, which
 * the proxy writes with writev: the body is never re-serialized or copied.
 *
 * Owns nothing beyond the call; spans in lx_body_scan_t point into the caller's body.
 */
#include "gateway/body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/str.h"
#include "gateway/api_error.h"

/* Parent links make closing a container O(1): without them jsmn walks back over every earlier
 * token, which is quadratic on a long array of objects (a 2 MB chat history took seconds). */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#define STACK_TOKENS 256

/* What a container on the walk's stack is, for the members handled specially. */
enum role { ROLE_OTHER, ROLE_ROOT, ROLE_STREAM_OPTIONS };

/* Top-level members llmux recognizes; from M_MODELS on, consumed (f_root_member() relies on
 * the order). */
enum member {
    M_NONE,
    M_MODEL,
    M_STREAM,
    M_STREAM_OPTIONS,
    M_MODELS,
    M_PROVIDER,
    M_ROUTE,
    M_SESSION_ID,
};

static const struct {
    const char *name;
    enum member id;
    bool consumed; /* removed from the upstream body */
} members[] = {
    {"model", M_MODEL, false},
    {"stream", M_STREAM, false},
    {"stream_options", M_STREAM_OPTIONS, false},
    {"models", M_MODELS, true},
    {"provider", M_PROVIDER, true},
    {"route", M_ROUTE, true},
    {"session_id", M_SESSION_ID, true},
};

/* One open object or array during the walk. */
struct frame {
    uint32_t tok;  /* its token */
    uint32_t left; /* members or elements still to visit */
    bool first;    /* none visited yet: no comma expected */
    enum role role;
};

/* A consumed root member, for planning its removal. */
struct cut_member {
    uint32_t index; /* position among the root members */
    uint32_t start; /* opening quote of its key */
    uint32_t end;   /* one past its value */
    uint32_t prev_end;
    uint32_t next_start; /* 0 until the next member is seen */
};

/* The walk's state. */
struct walk {
    const char *body;
    size_t len;
    const jsmntok_t *toks;
    uint32_t n;   /* tokens */
    uint32_t i;   /* next token */
    uint32_t pos; /* next byte */
    lx_body_scan_t *scan;
    unsigned seen; /* bit per enum member: duplicate detection */
    bool seen_include_usage;
    /* root members */
    uint32_t n_members;
    bool pending; /* a root member's value is being walked */
    bool pending_consumed;
    uint32_t pending_start;
    uint32_t prev_end; /* end of the previous root member, 0 before the first */
    bool have_kept;
    uint32_t first_kept; /* index of the first kept member */
    struct cut_member cut[4];
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

static uint32_t skip_ws(const struct walk *w, uint32_t pos)
{
    while (pos < w->len && is_ws(w->body[pos]))
        pos++;
    return pos;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 8259 number or literal over [p, end). */
static bool valid_primitive(const char *p, const char *end)
{
    size_t n = (size_t)(end - p);
    if ((n == 4 && memcmp(p, "true", 4) == 0) || (n == 4 && memcmp(p, "null", 4) == 0) ||
        (n == 5 && memcmp(p, "false", 5) == 0))
        return true;
    if (p < end && *p == '-')
        p++;
    if (p == end)
        return false;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return false;
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return false;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return false;
        while (p < end && is_digit(*p))
            p++;
    }
    return p == end;
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

/* String content [start, end): no raw control characters, only the escapes JSON defines.
 * Returns the offset of the first bad byte, or UINT32_MAX. */
static uint32_t check_string(const char *body, uint32_t start, uint32_t end)
{
    for (uint32_t p = start; p < end; p++) {
        unsigned char c = (unsigned char)body[p];
        if (c < 0x20)
            return p;
        if (c != '\\')
            continue;
        if (p + 1 >= end)
            return p;
        char e = body[++p];
        if (e == 'u') {
            if (end - p < 5)
                return p;
            for (int k = 1; k <= 4; k++)
                if (hex_value(body[p + (uint32_t)k]) < 0)
                    return p;
            p += 4;
        } else if (strchr("\"\\/bfnrt", e) == NULL || e == '\0') {
            return p;
        }
    }
    return UINT32_MAX;
}

static bool tok_is(const struct walk *w, const jsmntok_t *t, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(t->end - t->start) == n && memcmp(w->body + t->start, lit, n) == 0;
}

static lx_body_span_t tok_span(const jsmntok_t *t)
{
    lx_body_span_t s = {(uint32_t)t->start, (uint32_t)(t->end - t->start)};
    return s;
}

/* Offset of a value token's first byte (strings: the opening quote). */
static uint32_t tok_first(const jsmntok_t *t)
{
    return t->type == JSMN_STRING ? (uint32_t)t->start - 1 : (uint32_t)t->start;
}

/* The semantic checks and records for the root member <m> whose value is token <v>. */
static int root_member(struct walk *w, enum member m, uint32_t v)
{
    lx_body_scan_t *scan = w->scan;
    const jsmntok_t *t = &w->toks[v];
    bool null = t->type == JSMN_PRIMITIVE && tok_is(w, t, "null");
    switch (m) {
    case M_MODEL:
        if (t->type != JSMN_STRING)
            return fail(scan, LX_EJSON, "'model' must be a string");
        scan->has_model = true;
        scan->model = tok_span(t);
        break;
    case M_STREAM:
        scan->has_stream = true;
        if (t->type == JSMN_PRIMITIVE && tok_is(w, t, "true"))
            scan->stream = true;
        else if (!(t->type == JSMN_PRIMITIVE && (tok_is(w, t, "false") || null)))
            return fail(scan, LX_EJSON, "'stream' must be a boolean");
        break;
    case M_STREAM_OPTIONS:
        if (t->type == JSMN_OBJECT) {
            scan->has_stream_options = true;
            scan->stream_options_members = (uint32_t)t->size;
        } else if (null) {
            scan->stream_options_null = true;
        } else {
            return fail(scan, LX_EJSON, "'stream_options' must be an object");
        }
        scan->stream_options = tok_span(t);
        break;
    case M_MODELS:
        scan->has_models = true;
        if (null)
            break;
        if (t->type != JSMN_ARRAY)
            return fail(scan, LX_EJSON, "'models' must be an array of strings");
        if (t->size > LX_BODY_MAX_MODELS)
            return fail(scan, LX_EJSON, "'models' may list at most 16 models");
        scan->models = tok_span(t);
        /* Entries that are strings are consecutive tokens (no descendants); stop at the first
         * one that is not. The walk checks the grammar of all of them afterwards. */
        for (uint32_t k = 1; k <= (uint32_t)t->size; k++) {
            if (v + k >= w->n || w->toks[v + k].type != JSMN_STRING)
                return fail(scan, LX_EJSON, "'models' must be an array of strings");
            scan->model_list[scan->n_models++] = tok_span(&w->toks[v + k]);
        }
        break;
    case M_PROVIDER:
        scan->has_provider = true;
        if (null)
            break;
        if (t->type != JSMN_OBJECT)
            return fail(scan, LX_EJSON, "'provider' must be an object");
        scan->provider = tok_span(t);
        break;
    case M_ROUTE:
        scan->has_route = true;
        if (null)
            break;
        if (t->type != JSMN_STRING)
            return fail(scan, LX_EJSON, "'route' must be a string");
        scan->route = tok_span(t);
        break;
    case M_SESSION_ID:
        scan->has_session_id = true;
        if (null)
            break;
        if (t->type != JSMN_STRING)
            return fail(scan, LX_EJSON, "'session_id' must be a string");
        scan->session_id = tok_span(t);
        break;
    case M_NONE:
        break;
    }
    return 0;
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

/* A key of a root object member at token <k>, its value at <k> + 1. */
static int root_key(struct walk *w, uint32_t k)
{
    const jsmntok_t *key = &w->toks[k];
    enum member m = M_NONE;
    bool consumed = false;
    const char *name = NULL;
    for (size_t j = 0; j < sizeof(members) / sizeof(members[0]); j++) {
        if (tok_is(w, key, members[j].name)) {
            m = members[j].id;
            consumed = members[j].consumed;
            name = members[j].name;
            break;
        }
    }
    begin_root_member(w, (uint32_t)key->start - 1, consumed);
    if (m == M_NONE)
        return 0;
    if (w->seen & (1u << m)) {
        snprintf(w->scan->error, sizeof(w->scan->error), "duplicate '%s' member", name);
        return LX_EJSON;
    }
    w->seen |= 1u << m;
    return root_member(w, m, k + 1);
}

static int stream_options_key(struct walk *w, uint32_t k)
{
    if (!tok_is(w, &w->toks[k], "include_usage"))
        return 0;
    if (w->seen_include_usage)
        return fail(w->scan, LX_EJSON, "duplicate 'include_usage' member");
    w->seen_include_usage = true;
    const jsmntok_t *v = &w->toks[k + 1];
    bool is_true = v->type == JSMN_PRIMITIVE && tok_is(w, v, "true");
    if (!is_true && !(v->type == JSMN_PRIMITIVE && (tok_is(w, v, "false") || tok_is(w, v, "null"))))
        return fail(w->scan, LX_EJSON, "'stream_options.include_usage' must be a boolean");
    w->scan->has_include_usage = true;
    w->scan->include_usage = is_true;
    w->scan->include_usage_value = tok_span(v);
    return 0;
}

/* Checks that the next non-blank byte is <c> and moves past it. */
static int expect(struct walk *w, char c)
{
    uint32_t p = skip_ws(w, w->pos);
    if (p >= w->len || w->body[p] != c)
        return fail_at(w->scan, p);
    w->pos = p + 1;
    return 0;
}

/*
 * Walks the token array in document order, checking that the bytes between tokens are exactly
 * what the grammar allows and that jsmn's tree has the JSON shape (object children alternate
 * key string / value). Iterative with a fixed stack, so hostile nesting cannot overflow.
 */
static int walk_tokens(struct walk *w)
{
    struct frame stack[LX_BODY_MAX_DEPTH];
    uint32_t depth = 0;
    int rc;
    enum role next_role = ROLE_ROOT;

    for (;;) {
        /* A value at token w->i. */
        if (w->i >= w->n)
            return fail_at(w->scan, w->pos);
        const jsmntok_t *t = &w->toks[w->i];
        uint32_t first = tok_first(t);
        if (skip_ws(w, w->pos) != first)
            return fail_at(w->scan, skip_ws(w, w->pos));
        switch (t->type) {
        case JSMN_PRIMITIVE:
            if (t->size != 0 || !valid_primitive(w->body + t->start, w->body + t->end))
                return fail_at(w->scan, (size_t)t->start);
            w->pos = (uint32_t)t->end;
            w->i++;
            break;
        case JSMN_STRING: {
            uint32_t bad = check_string(w->body, (uint32_t)t->start, (uint32_t)t->end);
            if (t->size != 0 || bad != UINT32_MAX)
                return fail_at(w->scan, bad != UINT32_MAX ? bad : (uint32_t)t->end);
            w->pos = (uint32_t)t->end + 1;
            w->i++;
            break;
        }
        case JSMN_OBJECT:
        case JSMN_ARRAY:
            if (depth == LX_BODY_MAX_DEPTH)
                return fail(w->scan, LX_EJSON, "JSON nested too deeply");
            stack[depth].tok = w->i;
            stack[depth].left = (uint32_t)t->size;
            stack[depth].first = true;
            stack[depth].role = next_role;
            depth++;
            w->pos = first + 1;
            w->i++;
            break;
        default:
            return fail_at(w->scan, first);
        }
        next_role = ROLE_OTHER;

        /* Close finished containers, then position on the next value. */
        for (;;) {
            struct frame *f = &stack[depth - 1];
            const jsmntok_t *c = &w->toks[f->tok];
            if (f->role == ROLE_ROOT)
                end_root_member(w);
            if (f->left == 0) {
                uint32_t close = (uint32_t)c->end - 1;
                uint32_t p = skip_ws(w, w->pos);
                char want = c->type == JSMN_OBJECT ? '}' : ']';
                if (p != close || w->body[close] != want)
                    return fail_at(w->scan, p);
                w->pos = close + 1;
                if (--depth == 0)
                    return 0;
                continue;
            }
            if (!f->first && (rc = expect(w, ',')) != 0)
                return rc;
            f->first = false;
            f->left--;
            if (c->type == JSMN_OBJECT) {
                if (w->i + 1 >= w->n)
                    return fail_at(w->scan, w->pos);
                const jsmntok_t *key = &w->toks[w->i];
                uint32_t p = skip_ws(w, w->pos);
                if (key->type != JSMN_STRING || key->size != 1 || p != tok_first(key))
                    return fail_at(w->scan, p);
                uint32_t bad = check_string(w->body, (uint32_t)key->start, (uint32_t)key->end);
                if (bad != UINT32_MAX)
                    return fail_at(w->scan, bad);
                w->pos = (uint32_t)key->end + 1;
                if ((rc = expect(w, ':')) != 0)
                    return rc;
                if (f->role == ROLE_ROOT) {
                    if ((rc = root_key(w, w->i)) != 0)
                        return rc;
                    if (tok_is(w, key, "stream_options"))
                        next_role = ROLE_STREAM_OPTIONS;
                } else if (f->role == ROLE_STREAM_OPTIONS) {
                    if ((rc = stream_options_key(w, w->i)) != 0)
                        return rc;
                }
                w->i++;
            }
            break;
        }
    }
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

/* ---- the direct scan ----
 *
 * Most bodies are valid JSON without llmux's "models" list. For them one pass over the bytes
 * checks the same grammar and records the same members as the jsmn scan and its walk, with no
 * token array. Anything else - a grammar or type error, a duplicate, "models", nesting over
 * FAST_DEPTH, more than LX_BODY_MAX_TOKENS values - makes it give up, and the jsmn scan decides
 * (and words the error): the direct scan only ever accepts what that one accepts, with the same
 * record.
 */

#define FAST_DEPTH 64

/* One value read by the direct scan, in jsmn's terms: strings span their content, other values
 * their bytes; size counts an object's members or an array's elements. */
struct fval {
    jsmntype_t type;
    uint32_t start, end, size;
};

struct fast {
    const char *b;
    uint32_t len;
    uint32_t pos;
    uint32_t tokens;
};

static void f_ws(struct fast *f)
{
    /* one comparison for the usual next byte, which is no blank */
    while (f->pos < f->len && (unsigned char)f->b[f->pos] <= ' ' && is_ws(f->b[f->pos]))
        f->pos++;
}

/* A string at f->pos (its opening quote): content checked like check_string(). */
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
    v->type = JSMN_STRING;
    v->start = f->pos;
    v->end = p;
    v->size = 0;
    f->pos = p + 1;
    f->tokens++;
    return true;
}

/* A number or literal at f->pos: the bytes up to a delimiter must be valid_primitive(). */
static bool f_primitive(struct fast *f, struct fval *v)
{
    uint32_t p = f->pos;
    while (p < f->len) {
        char c = f->b[p];
        if (c == ',' || c == '}' || c == ']' || is_ws(c))
            break;
        p++;
    }
    if (!valid_primitive(f->b + f->pos, f->b + p))
        return false;
    v->type = JSMN_PRIMITIVE;
    v->start = f->pos;
    v->end = p;
    v->size = 0;
    f->pos = p;
    f->tokens++;
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
                v->type = c == '{' ? JSMN_OBJECT : JSMN_ARRAY;
                v->start = f->pos;
                v->size = 0;
            }
            arrays = c == '[' ? arrays | (uint64_t)1 << depth : arrays & ~((uint64_t)1 << depth);
            depth++;
            f->tokens++;
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
                if (v->type == JSMN_OBJECT || v->type == JSMN_ARRAY)
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

/* The stream_options object at <v> (already checked): its include_usage member, as
 * stream_options_key() reads it. */
static bool f_stream_options(struct fast *f, const struct fval *v, lx_body_scan_t *scan)
{
    struct fast g = {f->b, v->end - 1, v->start + 1, 0};
    f_ws(&g);
    while (g.pos < g.len) {
        struct fval k, val;
        if (!f_key(&g, &k) || !f_value(&g, &val))
            return false;
        if (f_is(&g, &k, "include_usage", 13)) {
            if (scan->has_include_usage || val.type != JSMN_PRIMITIVE)
                return false;
            bool is_true = f_is(&g, &val, "true", 4);
            if (!is_true && !f_is(&g, &val, "false", 5) && !f_is(&g, &val, "null", 4))
                return false;
            scan->has_include_usage = true;
            scan->include_usage = is_true;
            scan->include_usage_value = f_span(&val);
        }
        f_ws(&g);
        if (g.pos < g.len && g.b[g.pos] == ',')
            g.pos++;
        f_ws(&g);
    }
    return true;
}

/* The semantic checks and records of root_member() for member <m> with value <t>. */
static bool f_member(struct fast *f, enum member m, const struct fval *t, lx_body_scan_t *scan)
{
    bool null = t->type == JSMN_PRIMITIVE && f_is(f, t, "null", 4);
    switch (m) {
    case M_MODEL:
        if (t->type != JSMN_STRING)
            return false;
        scan->has_model = true;
        scan->model = f_span(t);
        return true;
    case M_STREAM:
        scan->has_stream = true;
        if (t->type == JSMN_PRIMITIVE && f_is(f, t, "true", 4))
            scan->stream = true;
        else if (!(t->type == JSMN_PRIMITIVE && (f_is(f, t, "false", 5) || null)))
            return false;
        return true;
    case M_STREAM_OPTIONS:
        if (t->type == JSMN_OBJECT) {
            scan->has_stream_options = true;
            scan->stream_options_members = t->size;
            if (!f_stream_options(f, t, scan))
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
        if (!null && t->type != JSMN_OBJECT)
            return false;
        if (!null)
            scan->provider = f_span(t);
        return true;
    case M_ROUTE:
    case M_SESSION_ID:
        *(m == M_ROUTE ? &scan->has_route : &scan->has_session_id) = true;
        if (!null && t->type != JSMN_STRING)
            return false;
        if (!null)
            *(m == M_ROUTE ? &scan->route : &scan->session_id) = f_span(t);
        return true;
    case M_MODELS: /* its entries are the jsmn scan's business */
        return false;
    case M_NONE:
        return true;
    }
    return false;
}

/* The member a root key of <n> bytes at <k> names (as root_key() finds it in members[]). */
static enum member f_root_member(const char *k, uint32_t n)
{
    switch (n) {
    case 5:
        return memcmp(k, "model", 5) == 0 ? M_MODEL : memcmp(k, "route", 5) == 0 ? M_ROUTE : M_NONE;
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

/* The direct scan of body[0, len) (len <= LX_BODY_MAX_LEN); false: let the jsmn scan decide
 * (*scan and the walk are then to be reset). */
static bool scan_direct(const char *body, size_t len, struct walk *w, lx_body_scan_t *scan)
{
    struct fast f = {body, (uint32_t)len, 0, 1};
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
            enum member m = f_root_member(body + k.start, k.end - k.start);
            bool consumed = m >= M_MODELS;
            begin_root_member(w, start, consumed);
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
    if (f.pos != f.len || f.tokens > LX_BODY_MAX_TOKENS)
        return false;
    plan_cuts(w);
    return true;
}

/* Whether body[0, len) nests objects and arrays deeper than LX_BODY_MAX_DEPTH, counting
 * brackets outside strings. jsmn closes a container by following parent links back from the
 * last token, O(depth) per close and quadratic in the depth, so the walk's depth limit comes
 * too late: this linear pass runs before jsmn. */
static bool too_deep(const char *body, size_t len)
{
    uint32_t depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (c == '"') {
            for (i++; i < len && body[i] != '"'; i++)
                if (body[i] == '\\')
                    i++;
        } else if (c == '{' || c == '[') {
            if (++depth > LX_BODY_MAX_DEPTH)
                return true;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return false;
}

/* The reference scan: jsmn's tokens, then the walk over them. */
static int scan_jsmn(const char *body, size_t len, lx_body_scan_t *scan)
{
    size_t lead = 0;
    while (lead < len && is_ws(body[lead]))
        lead++;
    if (lead == len)
        return fail(scan, LX_EJSON, "request body is empty");
    if (body[lead] != '{')
        return fail(scan, LX_EJSON, "request body must be a JSON object");
    /* jsmn stops at a NUL byte; none is valid JSON outside strings nor raw inside them. */
    const char *nul = memchr(body, '\0', len);
    if (nul != NULL)
        return fail_at(scan, (size_t)(nul - body));
    if (too_deep(body, len))
        return fail(scan, LX_EJSON, "JSON nested too deeply");

    jsmntok_t stack_toks[STACK_TOKENS];
    jsmntok_t *toks = stack_toks;
    unsigned cap = STACK_TOKENS;
    jsmn_parser parser;
    jsmn_init(&parser);
    int r;
    for (;;) {
        r = jsmn_parse(&parser, body, len, toks, cap);
        if (r != JSMN_ERROR_NOMEM)
            break;
        if (cap >= LX_BODY_MAX_TOKENS) {
            r = fail(scan, LX_ETOOBIG, "request body has too many JSON values");
            goto out;
        }
        /* jsmn resumes where it stopped when called again with the same parser. */
        unsigned ncap = cap * 2 > LX_BODY_MAX_TOKENS ? LX_BODY_MAX_TOKENS : cap * 2;
        jsmntok_t *grown;
        if (toks == stack_toks) {
            grown = malloc(ncap * sizeof(*grown));
            if (grown != NULL)
                memcpy(grown, stack_toks, sizeof(stack_toks));
        } else {
            grown = realloc(toks, ncap * sizeof(*grown));
        }
        if (grown == NULL) {
            r = fail(scan, LX_ENOMEM, "out of memory");
            goto out;
        }
        toks = grown;
        cap = ncap;
    }
    if (r == JSMN_ERROR_PART) {
        r = fail(scan, LX_EJSON, "invalid JSON: unexpected end of body");
        goto out;
    }
    if (r < 0) {
        r = fail_at(scan, parser.pos);
        goto out;
    }

    struct walk w;
    memset(&w, 0, sizeof(w));
    w.body = body;
    w.len = len;
    w.toks = toks;
    w.n = parser.toknext;
    w.pos = 0;
    w.scan = scan;
    scan->root_open = (uint32_t)lead;
    r = walk_tokens(&w);
    if (r == 0 && w.i != w.n)
        r = fail_at(scan, (size_t)tok_first(&toks[w.i]));
    if (r == 0 && skip_ws(&w, w.pos) != len)
        r = fail_at(scan, skip_ws(&w, w.pos));
    if (r == 0)
        plan_cuts(&w);
out:
    if (toks != stack_toks)
        free(toks);
    if (r == 0)
        scan->error[0] = '\0';
    return r < 0 ? r : 0;
}

int lx_body_scan(const char *body, size_t len, lx_body_scan_t *scan)
{
    memset(scan, 0, sizeof(*scan));
    if (len > LX_BODY_MAX_LEN)
        return fail(scan, LX_ETOOBIG, "request body too large");
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.body = body;
    w.len = len;
    w.scan = scan;
    if (scan_direct(body, len, &w, scan))
        return 0;
    memset(scan, 0, sizeof(*scan));
    return scan_jsmn(body, len, scan);
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
        esc_len = lx_api_error_escaped_len(model, model_len);
        if (esc_len > scratch_size)
            return LX_ETOOBIG;
        lx_api_error_escape(scratch, scratch_size, model, model_len, NULL);
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
