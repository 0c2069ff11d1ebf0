/*
 * prefs.c - a request's routing preferences (OpenRouter's `provider` object, `route`, model
 * suffixes, and the request parameter list for require_parameters).
 *
 * Sits between the body scan and the router: api.c scans the body (body.c), calls
 * lx_prefs_parse() on the `provider` span the scan recorded, strips model suffixes with
 * lx_prefs_model_suffix(), lists the request parameters when require_parameters asks for it,
 * and hands the result to lx_router_plan().
 *
 * The body has already been validated by lx_body_scan(); the values are read again with
 * core/json's tokenizer (no allocation, no recursion, linear in the bytes read), which checks
 * every bound and the grammar, so a caller that skips the scan or passes a bad span gets
 * LX_EJSON, never a read outside the span. Owns nothing: lx_prefs_t holds views into the
 * caller's body.
 */
#include "route/prefs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"

/* A reading of one JSON value (the provider object, or the whole body) with core/json's
 * tokenizer; views point into <base>, where the value starts. */
struct rd {
    lx_json_t j;
    const char *base;
};

/* Members of `provider`, for duplicate detection (one bit each). */
enum pmember {
    P_ORDER,
    P_ONLY,
    P_IGNORE,
    P_ALLOW_FALLBACKS,
    P_SORT,
    P_MAX_PRICE,
    P_DATA_COLLECTION,
    P_ZDR,
    P_REQUIRE_PARAMETERS,
    P_NONE,
};
_Static_assert((1u << P_REQUIRE_PARAMETERS) == LX_PREFS_SET_REQUIRE_PARAMETERS &&
                   (1u << P_ORDER) == LX_PREFS_SET_ORDER,
               "enum pmember follows the order of LX_PREFS_SET_*");

static const char *const pmember_names[] = {
    "order",           "only", "ignore",
    "allow_fallbacks", "sort", "max_price",
    "data_collection", "zdr",  "require_parameters",
};

/* Top-level keys that are not a model capability (see lx_prefs_request_params in prefs.h). */
static const char *const not_params[] = {
    "model",      "messages", "prompt", "input",      "stream", "stream_options",
    "models",     "provider", "route",  "session_id", "user",   "usage",
    "transforms", "plugins",  "preset", "trace",      "debug",
};

static int failf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t cap, const char *fmt, ...)
{
    if (cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return LX_EJSON;
}

static void rd_init(struct rd *r, const char *base, size_t len)
{
    r->base = base;
    lx_json_init(&r->j, base, len, LX_BODY_MAX_DEPTH);
}

static lx_json_type_t next(struct rd *r, lx_json_token_t *t)
{
    return lx_json_next(&r->j, t);
}

/* The key or string token <t> as a view. */
static lx_prefs_view_t view(const struct rd *r, const lx_json_token_t *t)
{
    lx_prefs_view_t v = {r->base + t->start, t->end - t->start, t->escaped};
    return v;
}

/* Reads through the value whose first token is <t> (a container to its closing bracket). */
static bool skip_value(struct rd *r, const lx_json_token_t *t)
{
    lx_json_token_t close;
    if (t->type == LX_JSON_OBJECT || t->type == LX_JSON_ARRAY)
        return lx_json_skip(&r->j, t, &close);
    return t->type != LX_JSON_NONE;
}

static bool view_is(const lx_prefs_view_t *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->len == n && memcmp(v->ptr, lit, n) == 0;
}

/*
 * The next member of the object being read: its key in <key> and the first token of its value
 * in <val>. Returns 1 for a member, 0 after the object's '}', -1 on malformed bytes.
 */
static int next_member(struct rd *r, lx_prefs_view_t *key, lx_json_token_t *val)
{
    lx_json_token_t k;
    lx_json_type_t type = next(r, &k);
    if (type == LX_JSON_OBJECT_END)
        return 0;
    if (type != LX_JSON_KEY || next(r, val) == LX_JSON_NONE)
        return -1;
    *key = view(r, &k);
    return 1;
}

/* Converts the number in view <v> (copied to a terminated buffer: the body is not). */
static bool number_value(const lx_prefs_view_t *v, double *out)
{
    char buf[64];
    if (!lx_json_primitive_valid(v->ptr, v->len) || v->len >= sizeof(buf) || v->len == 0 ||
        (v->ptr[0] != '-' && (v->ptr[0] < '0' || v->ptr[0] > '9')))
        return false;
    memcpy(buf, v->ptr, v->len);
    buf[v->len] = '\0';
    *out = strtod(buf, NULL);
    return true;
}

/* A boolean member at <v>: true/false, null leaves <out> unchanged. */
static int read_bool(const lx_json_token_t *v, bool *out, const char *name, char *err, size_t cap)
{
    if (v->type != LX_JSON_TRUE && v->type != LX_JSON_FALSE && v->type != LX_JSON_NULL)
        return failf(err, cap, "provider.%s must be a boolean", name);
    if (v->type != LX_JSON_NULL)
        *out = v->type == LX_JSON_TRUE;
    return 0;
}

/* A list of provider names at <v>: an array of strings, or null. */
static int read_list(struct rd *r, const lx_json_token_t *v, lx_prefs_list_t *list,
                     const char *name, char *err, size_t cap)
{
    list->n = 0;
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type != LX_JSON_ARRAY)
        return failf(err, cap, "provider.%s must be an array of strings", name);
    for (;;) {
        lx_json_token_t e;
        lx_json_type_t type = next(r, &e);
        if (type == LX_JSON_ARRAY_END)
            return 0;
        if (type == LX_JSON_NONE)
            return failf(err, cap, "invalid JSON in provider.%s", name);
        if (type != LX_JSON_STRING)
            return failf(err, cap, "provider.%s must be an array of strings", name);
        lx_prefs_view_t s = view(r, &e);
        if (list->n == LX_PREFS_MAX_NAMES)
            return failf(err, cap, "provider.%s may list at most %d providers", name,
                         LX_PREFS_MAX_NAMES);
        if (s.len > 6 * LX_PREFS_NAME_MAX)
            return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                         LX_PREFS_NAME_MAX);
        if (s.escaped) {
            char tmp[LX_PREFS_NAME_MAX];
            int d = lx_json_unescape(s.ptr, s.len, tmp, sizeof(tmp));
            if (d == LX_ETOOBIG)
                return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                             LX_PREFS_NAME_MAX);
            if (d < 0)
                return failf(err, cap, "invalid escape in provider.%s", name);
        } else if (s.len > LX_PREFS_NAME_MAX) {
            return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                         LX_PREFS_NAME_MAX);
        }
        list->name[list->n++] = s;
    }
}

static const char sort_msg[] = "provider.sort must be \"price\", \"throughput\" or \"latency\"";

/* A sort name; false when it is none of the three. */
static bool sort_name(const lx_prefs_view_t *v, enum lx_prefs_sort *out)
{
    if (view_is(v, "price"))
        *out = LX_PREFS_SORT_PRICE;
    else if (view_is(v, "throughput"))
        *out = LX_PREFS_SORT_THROUGHPUT;
    else if (view_is(v, "latency"))
        *out = LX_PREFS_SORT_LATENCY;
    else
        return false;
    return true;
}

/* provider.sort at <v>: a string, {by, partition}, or null. *<partition_set> says the object
 * gave one. */
static int read_sort(struct rd *r, const lx_json_token_t *v, lx_prefs_t *p, bool *partition_set,
                     char *err, size_t cap)
{
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type == LX_JSON_STRING) {
        lx_prefs_view_t s = view(r, v);
        if (!sort_name(&s, &p->sort))
            return failf(err, cap, "%s", sort_msg);
        p->sort_source = LX_PREFS_SORT_EXPLICIT;
        return 0;
    }
    if (v->type != LX_JSON_OBJECT)
        return failf(err, cap, "%s, or an object {by, partition}", sort_msg);
    bool seen_by = false, seen_partition = false;
    lx_prefs_view_t key;
    lx_json_token_t val;
    int m;
    while ((m = next_member(r, &key, &val)) == 1) {
        lx_prefs_view_t s = view(r, &val);
        if (view_is(&key, "by")) {
            if (seen_by)
                return failf(err, cap, "duplicate member provider.sort.by");
            seen_by = true;
            if (val.type == LX_JSON_NULL)
                continue;
            if (val.type != LX_JSON_STRING || !sort_name(&s, &p->sort))
                return failf(err, cap,
                             "provider.sort.by must be \"price\", \"throughput\" or \"latency\"");
            p->sort_source = LX_PREFS_SORT_EXPLICIT;
        } else if (view_is(&key, "partition")) {
            if (seen_partition)
                return failf(err, cap, "duplicate member provider.sort.partition");
            seen_partition = true;
            if (val.type == LX_JSON_NULL)
                continue;
            if (val.type != LX_JSON_STRING || !(view_is(&s, "model") || view_is(&s, "none")))
                return failf(err, cap, "provider.sort.partition must be \"model\" or \"none\"");
            p->partition = view_is(&s, "none") ? LX_PREFS_PARTITION_NONE : LX_PREFS_PARTITION_MODEL;
            *partition_set = true;
        } else if (!skip_value(r, &val)) {
            m = -1;
            break;
        }
    }
    if (m < 0)
        return failf(err, cap, "invalid JSON in provider.sort");
    return 0;
}

/* One price limit of max_price at <v>: a number >= 0, a string holding one, or null. */
static int read_price(struct rd *r, const lx_json_token_t *v, bool *has, double *out,
                      const char *name, char *err, size_t cap)
{
    if (v->type == LX_JSON_NULL) {
        *has = false;
        return 0;
    }
    lx_prefs_view_t s = view(r, v);
    double d = 0;
    bool ok = v->type == LX_JSON_NUMBER || (v->type == LX_JSON_STRING && !s.escaped);
    if (!ok || !number_value(&s, &d) || !(d >= 0))
        return failf(err, cap, "provider.max_price.%s must be a number >= 0", name);
    *has = true;
    *out = d;
    return 0;
}

static int read_max_price(struct rd *r, const lx_json_token_t *v, lx_prefs_t *p, char *err,
                          size_t cap)
{
    if (v->type == LX_JSON_NULL)
        return 0;
    if (v->type != LX_JSON_OBJECT)
        return failf(err, cap, "provider.max_price must be an object {prompt, completion}");
    bool seen_prompt = false, seen_completion = false;
    lx_prefs_view_t key;
    lx_json_token_t val;
    int m, rc;
    while ((m = next_member(r, &key, &val)) == 1) {
        if (view_is(&key, "prompt")) {
            if (seen_prompt)
                return failf(err, cap, "duplicate member provider.max_price.prompt");
            seen_prompt = true;
            rc = read_price(r, &val, &p->has_max_prompt, &p->max_prompt, "prompt", err, cap);
        } else if (view_is(&key, "completion")) {
            if (seen_completion)
                return failf(err, cap, "duplicate member provider.max_price.completion");
            seen_completion = true;
            rc = read_price(r, &val, &p->has_max_completion, &p->max_completion, "completion", err,
                            cap);
        } else {
            /* request, image, audio, ...: per-request or per-image prices llmux does not
             * bill; accepted so OpenRouter clients work, and ignored. */
            rc = skip_value(r, &val) ? 0 : failf(err, cap, "invalid JSON in provider.max_price");
        }
        if (rc != 0)
            return rc;
    }
    if (m < 0)
        return failf(err, cap, "invalid JSON in provider.max_price");
    return 0;
}

static int read_data_collection(struct rd *r, const lx_json_token_t *v, lx_prefs_t *p, char *err,
                                size_t cap)
{
    if (v->type == LX_JSON_NULL)
        return 0;
    lx_prefs_view_t s = view(r, v);
    if (v->type != LX_JSON_STRING || !(view_is(&s, "allow") || view_is(&s, "deny")))
        return failf(err, cap, "provider.data_collection must be \"allow\" or \"deny\"");
    p->data_collection_deny = view_is(&s, "deny");
    return 0;
}

static enum pmember pmember_of(const lx_prefs_view_t *key)
{
    for (int m = 0; m < P_NONE; m++)
        if (view_is(key, pmember_names[m]))
            return (enum pmember)m;
    return P_NONE;
}

/* The `provider` object at body[span]. */
static int parse_provider(const char *body, lx_body_span_t span, lx_prefs_t *p, bool *partition_set,
                          char *err, size_t cap)
{
    struct rd r;
    lx_json_token_t t;
    rd_init(&r, body + span.off, span.len);
    if (next(&r, &t) != LX_JSON_OBJECT)
        return failf(err, cap, "'provider' must be an object");
    unsigned seen = 0;
    lx_prefs_view_t key;
    lx_json_token_t v;
    int m, rc = 0;
    while ((m = next_member(&r, &key, &v)) == 1) {
        enum pmember pm = pmember_of(&key);
        if (pm != P_NONE) {
            if (seen & (1u << pm))
                return failf(err, cap, "duplicate member provider.%s", pmember_names[pm]);
            seen |= 1u << pm;
            if (v.type != LX_JSON_NULL)
                p->set |= 1u << pm; /* (enum pmember is the order of LX_PREFS_SET_*) */
        }
        switch (pm) {
        case P_ORDER:
            rc = read_list(&r, &v, &p->order, "order", err, cap);
            break;
        case P_ONLY:
            rc = read_list(&r, &v, &p->only, "only", err, cap);
            break;
        case P_IGNORE:
            rc = read_list(&r, &v, &p->ignore, "ignore", err, cap);
            break;
        case P_ALLOW_FALLBACKS:
            rc = read_bool(&v, &p->allow_fallbacks, "allow_fallbacks", err, cap);
            break;
        case P_SORT:
            rc = read_sort(&r, &v, p, partition_set, err, cap);
            break;
        case P_MAX_PRICE:
            rc = read_max_price(&r, &v, p, err, cap);
            break;
        case P_DATA_COLLECTION:
            rc = read_data_collection(&r, &v, p, err, cap);
            break;
        case P_ZDR:
            rc = read_bool(&v, &p->zdr, "zdr", err, cap);
            break;
        case P_REQUIRE_PARAMETERS:
            rc = read_bool(&v, &p->require_parameters, "require_parameters", err, cap);
            break;
        case P_NONE:
            rc = skip_value(&r, &v) ? 0 : failf(err, cap, "invalid JSON in provider");
            break;
        }
        if (rc != 0)
            return rc;
    }
    if (m < 0)
        return failf(err, cap, "invalid JSON in provider");
    return 0;
}

void lx_prefs_init(lx_prefs_t *p)
{
    memset(p, 0, sizeof(*p));
    p->allow_fallbacks = true;
    p->sort = LX_PREFS_SORT_NONE;
    p->sort_source = LX_PREFS_SORT_DEFAULT;
    p->partition = LX_PREFS_PARTITION_MODEL;
}

int lx_prefs_parse(const char *body, size_t body_len, const lx_body_scan_t *scan, lx_prefs_t *out,
                   char *err, size_t err_cap)
{
    lx_prefs_init(out);
    if (err_cap > 0)
        err[0] = '\0';
    bool partition_set = false;
    if (scan->has_provider && scan->provider.len > 0) {
        if ((size_t)scan->provider.off + scan->provider.len > body_len)
            return failf(err, err_cap, "invalid JSON in provider");
        int rc = parse_provider(body, scan->provider, out, &partition_set, err, err_cap);
        if (rc != 0)
            return rc;
    }
    /* A string route has a span inside the body (after its '{'); null leaves {0, 0}. */
    if (scan->has_route && scan->route.off != 0) {
        if ((size_t)scan->route.off + scan->route.len > body_len)
            return failf(err, err_cap, "invalid JSON in route");
        lx_prefs_view_t v = {body + scan->route.off, scan->route.len, false};
        if (view_is(&v, "sort")) {
            if (!partition_set)
                out->partition = LX_PREFS_PARTITION_NONE;
        } else if (!view_is(&v, "fallback")) {
            /* "fallback": partition "model" and fallbacks allowed, both defaults already. */
            return failf(err, err_cap, "route must be \"fallback\" or \"sort\"");
        }
    }
    return 0;
}

void lx_prefs_merge_under(lx_prefs_t *p, const lx_prefs_t *d)
{
    unsigned take = d->set & ~p->set;
    if (take & LX_PREFS_SET_ORDER)
        p->order = d->order;
    if (take & LX_PREFS_SET_ONLY)
        p->only = d->only;
    if (take & LX_PREFS_SET_IGNORE)
        p->ignore = d->ignore;
    if (take & LX_PREFS_SET_ALLOW_FALLBACKS)
        p->allow_fallbacks = d->allow_fallbacks;
    if ((take & LX_PREFS_SET_SORT) && p->sort_source != LX_PREFS_SORT_EXPLICIT) {
        p->sort = d->sort;
        p->sort_source = d->sort_source;
        p->partition = d->partition;
    }
    if (take & LX_PREFS_SET_MAX_PRICE) {
        p->has_max_prompt = d->has_max_prompt;
        p->max_prompt = d->max_prompt;
        p->has_max_completion = d->has_max_completion;
        p->max_completion = d->max_completion;
    }
    if (take & LX_PREFS_SET_DATA_COLLECTION)
        p->data_collection_deny = d->data_collection_deny;
    if (take & LX_PREFS_SET_ZDR)
        p->zdr = d->zdr;
    if (take & LX_PREFS_SET_REQUIRE_PARAMETERS)
        p->require_parameters = d->require_parameters;
    p->set |= take;
}

static bool ends_with(const char *id, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len > n && memcmp(id + len - n, suffix, n) == 0;
}

void lx_prefs_model_suffix(const char *id, size_t *len, lx_prefs_t *p)
{
    enum lx_prefs_sort s;
    if (ends_with(id, *len, ":nitro")) {
        *len -= 6;
        s = LX_PREFS_SORT_THROUGHPUT;
    } else if (ends_with(id, *len, ":floor")) {
        *len -= 6;
        s = LX_PREFS_SORT_PRICE;
    } else {
        return;
    }
    if (p != NULL && p->sort_source == LX_PREFS_SORT_DEFAULT) {
        p->sort = s;
        p->sort_source = LX_PREFS_SORT_SUFFIX;
    }
}

int lx_prefs_request_params(const char *body, size_t len, lx_prefs_t *p, char *err, size_t err_cap)
{
    struct rd r;
    lx_json_token_t t, v;
    rd_init(&r, body, len);
    p->n_params = 0;
    if (next(&r, &t) != LX_JSON_OBJECT)
        return failf(err, err_cap, "the request body must be a JSON object");
    lx_prefs_view_t key;
    int m;
    while ((m = next_member(&r, &key, &v)) == 1) {
        if (!skip_value(&r, &v))
            return failf(err, err_cap, "invalid JSON in the request body");
        if (v.type == LX_JSON_NULL)
            continue;
        bool skip = false;
        for (size_t k = 0; k < sizeof(not_params) / sizeof(not_params[0]) && !skip; k++)
            skip = view_is(&key, not_params[k]);
        for (uint32_t k = 0; k < p->n_params && !skip; k++)
            skip = p->params[k].len == key.len && memcmp(p->params[k].ptr, key.ptr, key.len) == 0;
        if (skip)
            continue;
        if (p->n_params == LX_PREFS_MAX_PARAMS)
            return failf(err, err_cap,
                         "provider.require_parameters: the request has more than %d parameters",
                         LX_PREFS_MAX_PARAMS);
        p->params[p->n_params++] = key;
    }
    if (m < 0)
        return failf(err, err_cap, "invalid JSON in the request body");
    return 0;
}

static char lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

/* <want> (decoded) names the provider <name>: equal ignoring case, or a base slug of it. */
static bool name_match(const char *want, size_t wlen, const char *name, size_t len)
{
    if (len < wlen || (len > wlen && name[wlen] != '/'))
        return false;
    for (size_t k = 0; k < wlen; k++)
        if (lower(want[k]) != lower(name[k]))
            return false;
    return true;
}

int lx_prefs_list_find(const lx_prefs_list_t *list, const char *name, size_t len)
{
    for (uint32_t k = 0; k < list->n; k++) {
        const lx_prefs_view_t *v = &list->name[k];
        if (!v->escaped) {
            if (name_match(v->ptr, v->len, name, len))
                return (int)k;
            continue;
        }
        char tmp[LX_PREFS_NAME_MAX];
        int d = lx_json_unescape(v->ptr, v->len, tmp, sizeof(tmp));
        if (d >= 0 && name_match(tmp, (size_t)d, name, len))
            return (int)k;
    }
    return -1;
}
