/*
 * prefs.c - a request's routing preferences (OpenRouter's `provider` object, `route`, model
 * suffixes, and the request parameter list for require_parameters).
 *
 * Sits between the body scan and the router: api.c scans the body (body.c), calls
 * lx_prefs_parse() on the `provider` span the scan recorded, strips model suffixes with
 * lx_prefs_model_suffix(), lists the request parameters when require_parameters asks for it,
 * and hands the result to lx_router_plan().
 *
 * The body has already been validated strictly by lx_body_scan(), so the small cursor reader
 * here only walks it: no tokenizer, no recursion (nested values are skipped with a depth
 * counter), no allocation. It still checks every bound and answers LX_EJSON on bytes it does
 * not expect, so a caller that skips the scan cannot make it read outside the span. Owns
 * nothing: lx_prefs_t holds views into the caller's body.
 */
#include "gateway/prefs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* A read position in body[pos, end). */
struct cur {
    const char *s;
    size_t pos;
    size_t end;
};

/* The type of the value at the cursor. */
enum vtype { V_BAD, V_STRING, V_NUMBER, V_TRUE, V_FALSE, V_NULL, V_OBJECT, V_ARRAY };

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

static void ws(struct cur *c)
{
    while (c->pos < c->end) {
        char ch = c->s[c->pos];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
        c->pos++;
    }
}

/* The byte at the cursor after blanks, or 0 at the end. */
static char peek(struct cur *c)
{
    ws(c);
    return c->pos < c->end ? c->s[c->pos] : '\0';
}

static bool is_delim(char ch)
{
    return ch == ',' || ch == '}' || ch == ']' || ch == ' ' || ch == '\t' || ch == '\n' ||
           ch == '\r' || ch == ':';
}

static enum vtype value_type(struct cur *c)
{
    char ch = peek(c);
    switch (ch) {
    case '"':
        return V_STRING;
    case '{':
        return V_OBJECT;
    case '[':
        return V_ARRAY;
    case 't':
        return V_TRUE;
    case 'f':
        return V_FALSE;
    case 'n':
        return V_NULL;
    default:
        return (ch == '-' || (ch >= '0' && ch <= '9')) ? V_NUMBER : V_BAD;
    }
}

/* Reads the string at the cursor (which is on its opening quote) into <v>. */
static bool read_string(struct cur *c, lx_prefs_view_t *v)
{
    if (c->pos >= c->end || c->s[c->pos] != '"')
        return false;
    size_t start = ++c->pos;
    bool escaped = false;
    while (c->pos < c->end) {
        char ch = c->s[c->pos];
        if (ch == '"') {
            v->ptr = c->s + start;
            v->len = (uint32_t)(c->pos - start);
            v->escaped = escaped;
            c->pos++;
            return true;
        }
        if (ch == '\\') {
            escaped = true;
            c->pos++;
        }
        c->pos++;
    }
    return false;
}

/* Reads a literal or number: the bytes up to the next delimiter. */
static bool read_primitive(struct cur *c, lx_prefs_view_t *v)
{
    size_t start = c->pos;
    while (c->pos < c->end && !is_delim(c->s[c->pos]))
        c->pos++;
    v->ptr = c->s + start;
    v->len = (uint32_t)(c->pos - start);
    v->escaped = false;
    return c->pos > start;
}

/* Skips the value at the cursor, nested containers included, without recursion. */
static bool skip_value(struct cur *c)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t == V_BAD)
        return false;
    if (t == V_STRING)
        return read_string(c, &v);
    if (t != V_OBJECT && t != V_ARRAY)
        return read_primitive(c, &v);
    size_t depth = 0;
    while (c->pos < c->end) {
        char ch = c->s[c->pos];
        if (ch == '"') {
            if (!read_string(c, &v))
                return false;
            continue;
        }
        c->pos++;
        if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return true;
        }
    }
    return false;
}

static bool eat(struct cur *c, char ch)
{
    if (peek(c) != ch)
        return false;
    c->pos++;
    return true;
}

static bool view_is(const lx_prefs_view_t *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->len == n && memcmp(v->ptr, lit, n) == 0;
}

/*
 * Iterates over an object: call with the cursor on '{' and *first set; each call positions the
 * cursor on the next member's value, its key in <key>. Returns 1 for a member, 0 at the end
 * (cursor after '}'), -1 on malformed bytes.
 */
static int next_member(struct cur *c, bool *first, lx_prefs_view_t *key)
{
    if (*first) {
        if (!eat(c, '{'))
            return -1;
        *first = false;
        if (eat(c, '}'))
            return 0;
    } else {
        if (eat(c, '}'))
            return 0;
        if (!eat(c, ','))
            return -1;
    }
    if (peek(c) != '"' || !read_string(c, key) || !eat(c, ':'))
        return -1;
    ws(c);
    return 1;
}

/* Same for an array: positions the cursor on the next element. */
static int next_element(struct cur *c, bool *first)
{
    if (*first) {
        if (!eat(c, '['))
            return -1;
        *first = false;
        if (eat(c, ']'))
            return 0;
    } else {
        if (eat(c, ']'))
            return 0;
        if (!eat(c, ','))
            return -1;
    }
    ws(c);
    return 1;
}

/* RFC 8259 number grammar over the view. */
static bool valid_number(const lx_prefs_view_t *v)
{
    const char *p = v->ptr, *end = v->ptr + v->len;
    if (p < end && *p == '-')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return false;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p == end;
}

/* Converts a validated number view (copied to a terminated buffer: the body is not). */
static bool number_value(const lx_prefs_view_t *v, double *out)
{
    char buf[64];
    if (!valid_number(v) || v->len >= sizeof(buf))
        return false;
    memcpy(buf, v->ptr, v->len);
    buf[v->len] = '\0';
    *out = strtod(buf, NULL);
    return true;
}

/* A boolean member: true/false, null leaves <out> unchanged. */
static int read_bool(struct cur *c, bool *out, const char *name, char *err, size_t cap)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t != V_TRUE && t != V_FALSE && t != V_NULL)
        return failf(err, cap, "provider.%s must be a boolean", name);
    if (!read_primitive(c, &v))
        return failf(err, cap, "invalid JSON in provider.%s", name);
    if (t != V_NULL)
        *out = t == V_TRUE;
    return 0;
}

/* A list of provider names: an array of strings, or null. */
static int read_list(struct cur *c, lx_prefs_list_t *list, const char *name, char *err, size_t cap)
{
    list->n = 0;
    enum vtype t = value_type(c);
    if (t == V_NULL) {
        lx_prefs_view_t v;
        read_primitive(c, &v);
        return 0;
    }
    if (t != V_ARRAY)
        return failf(err, cap, "provider.%s must be an array of strings", name);
    bool first = true;
    int r;
    while ((r = next_element(c, &first)) == 1) {
        lx_prefs_view_t v;
        if (value_type(c) != V_STRING)
            return failf(err, cap, "provider.%s must be an array of strings", name);
        if (!read_string(c, &v))
            return failf(err, cap, "invalid JSON in provider.%s", name);
        if (list->n == LX_PREFS_MAX_NAMES)
            return failf(err, cap, "provider.%s may list at most %d providers", name,
                         LX_PREFS_MAX_NAMES);
        if (v.len > 6 * LX_PREFS_NAME_MAX)
            return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                         LX_PREFS_NAME_MAX);
        if (v.escaped) {
            char tmp[LX_PREFS_NAME_MAX];
            int d = lx_body_unescape(v.ptr, v.len, tmp, sizeof(tmp));
            if (d == LX_ETOOBIG)
                return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                             LX_PREFS_NAME_MAX);
            if (d < 0)
                return failf(err, cap, "invalid escape in provider.%s", name);
        } else if (v.len > LX_PREFS_NAME_MAX) {
            return failf(err, cap, "provider.%s entries must be at most %d bytes", name,
                         LX_PREFS_NAME_MAX);
        }
        list->name[list->n++] = v;
    }
    if (r < 0)
        return failf(err, cap, "invalid JSON in provider.%s", name);
    return 0;
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

/* provider.sort: a string, {by, partition}, or null. *<partition_set> says the object gave one. */
static int read_sort(struct cur *c, lx_prefs_t *p, bool *partition_set, char *err, size_t cap)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t == V_NULL) {
        read_primitive(c, &v);
        return 0;
    }
    if (t == V_STRING) {
        if (!read_string(c, &v) || !sort_name(&v, &p->sort))
            return failf(err, cap, "%s", sort_msg);
        p->sort_source = LX_PREFS_SORT_EXPLICIT;
        return 0;
    }
    if (t != V_OBJECT)
        return failf(err, cap, "%s, or an object {by, partition}", sort_msg);
    bool first = true, seen_by = false, seen_partition = false;
    lx_prefs_view_t key;
    int r;
    while ((r = next_member(c, &first, &key)) == 1) {
        enum vtype vt = value_type(c);
        if (view_is(&key, "by")) {
            if (seen_by)
                return failf(err, cap, "duplicate member provider.sort.by");
            seen_by = true;
            if (vt == V_NULL) {
                read_primitive(c, &v);
                continue;
            }
            if (vt != V_STRING || !read_string(c, &v) || !sort_name(&v, &p->sort))
                return failf(err, cap,
                             "provider.sort.by must be \"price\", \"throughput\" or \"latency\"");
            p->sort_source = LX_PREFS_SORT_EXPLICIT;
        } else if (view_is(&key, "partition")) {
            if (seen_partition)
                return failf(err, cap, "duplicate member provider.sort.partition");
            seen_partition = true;
            if (vt == V_NULL) {
                read_primitive(c, &v);
                continue;
            }
            if (vt != V_STRING || !read_string(c, &v) ||
                !(view_is(&v, "model") || view_is(&v, "none")))
                return failf(err, cap, "provider.sort.partition must be \"model\" or \"none\"");
            p->partition = view_is(&v, "none") ? LX_PREFS_PARTITION_NONE : LX_PREFS_PARTITION_MODEL;
            *partition_set = true;
        } else if (!skip_value(c)) {
            r = -1;
            break;
        }
    }
    if (r < 0)
        return failf(err, cap, "invalid JSON in provider.sort");
    return 0;
}

/* One price limit of max_price: a number >= 0, a string holding one, or null. */
static int read_price(struct cur *c, bool *has, double *out, const char *name, char *err,
                      size_t cap)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t == V_NULL) {
        read_primitive(c, &v);
        *has = false;
        return 0;
    }
    bool ok;
    if (t == V_NUMBER)
        ok = read_primitive(c, &v);
    else if (t == V_STRING)
        ok = read_string(c, &v) && !v.escaped;
    else
        ok = false;
    double d = 0;
    if (!ok || !number_value(&v, &d) || !(d >= 0))
        return failf(err, cap, "provider.max_price.%s must be a number >= 0", name);
    *has = true;
    *out = d;
    return 0;
}

static int read_max_price(struct cur *c, lx_prefs_t *p, char *err, size_t cap)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t == V_NULL) {
        read_primitive(c, &v);
        return 0;
    }
    if (t != V_OBJECT)
        return failf(err, cap, "provider.max_price must be an object {prompt, completion}");
    bool first = true, seen_prompt = false, seen_completion = false;
    lx_prefs_view_t key;
    int r, rc;
    while ((r = next_member(c, &first, &key)) == 1) {
        if (view_is(&key, "prompt")) {
            if (seen_prompt)
                return failf(err, cap, "duplicate member provider.max_price.prompt");
            seen_prompt = true;
            rc = read_price(c, &p->has_max_prompt, &p->max_prompt, "prompt", err, cap);
        } else if (view_is(&key, "completion")) {
            if (seen_completion)
                return failf(err, cap, "duplicate member provider.max_price.completion");
            seen_completion = true;
            rc = read_price(c, &p->has_max_completion, &p->max_completion, "completion", err, cap);
        } else {
            /* request, image, audio, ...: per-request or per-image prices llmux does not
             * bill; accepted so OpenRouter clients work, and ignored. */
            rc = skip_value(c) ? 0 : failf(err, cap, "invalid JSON in provider.max_price");
        }
        if (rc != 0)
            return rc;
    }
    if (r < 0)
        return failf(err, cap, "invalid JSON in provider.max_price");
    return 0;
}

static int read_data_collection(struct cur *c, lx_prefs_t *p, char *err, size_t cap)
{
    lx_prefs_view_t v;
    enum vtype t = value_type(c);
    if (t == V_NULL) {
        read_primitive(c, &v);
        return 0;
    }
    if (t != V_STRING || !read_string(c, &v) || !(view_is(&v, "allow") || view_is(&v, "deny")))
        return failf(err, cap, "provider.data_collection must be \"allow\" or \"deny\"");
    p->data_collection_deny = view_is(&v, "deny");
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
    struct cur c = {body, span.off, (size_t)span.off + span.len};
    if (value_type(&c) != V_OBJECT)
        return failf(err, cap, "'provider' must be an object");
    unsigned seen = 0;
    bool first = true;
    lx_prefs_view_t key;
    int r, rc = 0;
    while ((r = next_member(&c, &first, &key)) == 1) {
        enum pmember m = pmember_of(&key);
        if (m != P_NONE) {
            if (seen & (1u << m))
                return failf(err, cap, "duplicate member provider.%s", pmember_names[m]);
            seen |= 1u << m;
        }
        switch (m) {
        case P_ORDER:
            rc = read_list(&c, &p->order, "order", err, cap);
            break;
        case P_ONLY:
            rc = read_list(&c, &p->only, "only", err, cap);
            break;
        case P_IGNORE:
            rc = read_list(&c, &p->ignore, "ignore", err, cap);
            break;
        case P_ALLOW_FALLBACKS:
            rc = read_bool(&c, &p->allow_fallbacks, "allow_fallbacks", err, cap);
            break;
        case P_SORT:
            rc = read_sort(&c, p, partition_set, err, cap);
            break;
        case P_MAX_PRICE:
            rc = read_max_price(&c, p, err, cap);
            break;
        case P_DATA_COLLECTION:
            rc = read_data_collection(&c, p, err, cap);
            break;
        case P_ZDR:
            rc = read_bool(&c, &p->zdr, "zdr", err, cap);
            break;
        case P_REQUIRE_PARAMETERS:
            rc = read_bool(&c, &p->require_parameters, "require_parameters", err, cap);
            break;
        case P_NONE:
            rc = skip_value(&c) ? 0 : failf(err, cap, "invalid JSON in provider");
            break;
        }
        if (rc != 0)
            return rc;
    }
    if (r < 0)
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
    struct cur c = {body, 0, len};
    p->n_params = 0;
    if (value_type(&c) != V_OBJECT)
        return failf(err, err_cap, "the request body must be a JSON object");
    bool first = true;
    lx_prefs_view_t key;
    int r;
    while ((r = next_member(&c, &first, &key)) == 1) {
        bool is_null = value_type(&c) == V_NULL;
        if (!skip_value(&c))
            return failf(err, err_cap, "invalid JSON in the request body");
        if (is_null)
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
    if (r < 0)
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
        int d = lx_body_unescape(v->ptr, v->len, tmp, sizeof(tmp));
        if (d >= 0 && name_match(tmp, (size_t)d, name, len))
            return (int)k;
    }
    return -1;
}
