/*
 * load_metrics.c - Prometheus text (format 0.0.4) to load signals; the rules are in
 * load_metrics.h, the names and their versions in README.md.
 *
 * One pass: each line is found with memchr and read left to right once (name, labels, value);
 * a label value is decoded and compared with the model on the fly. No allocation, no
 * recursion, no strtod (the value parser below is exact on integers and truncates decimals
 * to micro-units).
 */
#include "route/load_metrics.h"

#include <stdbool.h>
#include <string.h>

enum sig { SIG_WAITING, SIG_RUNNING, SIG_KV, SIG_KV_OLD, SIG_N };

typedef struct family {
    const char *prefix;
    const char *names[SIG_N];    /* NULL: the family has no such gauge */
    const char *model_labels[2]; /* NULL-terminated early when fewer */
} family_t;

static const family_t families[] = {
    [LX_LOAD_FAMILY_NONE] = {NULL, {NULL, NULL, NULL, NULL}, {NULL, NULL}},
    [LX_LOAD_FAMILY_VLLM] = {"vllm:",
                             {"vllm:num_requests_waiting", "vllm:num_requests_running",
                              "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"},
                             {"model_name", NULL}},
    [LX_LOAD_FAMILY_SGLANG] = {"sglang:",
                               {"sglang:num_queue_reqs", "sglang:num_running_reqs",
                                "sglang:token_usage", NULL},
                               {"model_name", "name"}},
    [LX_LOAD_FAMILY_TGI] = {"tgi_",
                            {"tgi_queue_size", "tgi_batch_current_size", NULL, NULL},
                            {NULL, NULL}},
    [LX_LOAD_FAMILY_LLAMACPP] = {"llamacpp:",
                                 {"llamacpp:requests_deferred", "llamacpp:requests_processing",
                                  "llamacpp:kv_cache_usage_ratio", NULL},
                                 {NULL, NULL}},
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

typedef struct parser {
    const char *model;
    size_t model_len;
    int family;
    uint64_t acc[SIG_N]; /* waiting, running: sums; KV: the highest */
    uint64_t included[SIG_N], excluded[SIG_N];
    uint32_t samples, skipped, evidence, lines;
} parser_t;

/* one sample line being read */
typedef struct cursor {
    const char *p, *e;
} cursor_t;

const char *lx_load_family_name(int family)
{
    switch (family) {
    case LX_LOAD_FAMILY_VLLM:
        return "vllm";
    case LX_LOAD_FAMILY_SGLANG:
        return "sglang";
    case LX_LOAD_FAMILY_TGI:
        return "tgi";
    case LX_LOAD_FAMILY_LLAMACPP:
        return "llamacpp";
    default:
        return "none";
    }
}

/* ---- numbers ---------------------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool equals_nocase(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    if (n != w)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != word[i])
            return false;
    return true;
}

/* m x 10^t, saturating; each loop ends within 20 turns (m >= 1 passes the bound by then) */
static uint64_t scale(uint64_t m, int64_t t)
{
    if (m == 0)
        return 0;
    for (; t > 0; t--) {
        if (m > LX_LOAD_VALUE_MAX / 10)
            return LX_LOAD_VALUE_MAX;
        m *= 10;
    }
    if (t < -20)
        return 0;
    for (; t < 0; t++)
        m /= 10;
    return m;
}

/* the exponent part at s[*i] (after 'e'): its value, capped, or false when malformed */
static bool exponent(const char *s, size_t n, size_t *i, int64_t *out)
{
    bool neg = false;
    if (*i < n && (s[*i] == '+' || s[*i] == '-'))
        neg = s[(*i)++] == '-';
    if (*i >= n || !is_digit(s[*i]))
        return false;
    int64_t e = 0;
    for (; *i < n && is_digit(s[*i]); (*i)++)
        if (e < 1000000)
            e = e * 10 + (s[*i] - '0');
    *out = neg ? -e : e;
    return true;
}

int lx_load_value(const char *s, size_t n, uint64_t *micro)
{
    *micro = 0;
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (equals_nocase(s + i, n - i, "nan") || equals_nocase(s + i, n - i, "inf") ||
        equals_nocase(s + i, n - i, "infinity"))
        return LX_LOAD_VALUE_NONFINITE;
    uint64_t m = 0; /* up to 19 significant digits */
    int sig = 0;
    int64_t exp10 = 0;
    bool any = false;
    for (; i < n && is_digit(s[i]); i++, any = true) {
        if (m == 0 && s[i] == '0')
            continue;
        if (sig < 19) {
            m = m * 10 + (uint64_t)(s[i] - '0');
            sig++;
        } else {
            exp10++;
        }
    }
    if (i < n && s[i] == '.')
        for (i++; i < n && is_digit(s[i]); i++, any = true) {
            if (m == 0 && s[i] == '0') {
                exp10--;
            } else if (sig < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                sig++;
                exp10--;
            }
        }
    if (!any)
        return LX_LOAD_VALUE_BAD;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int64_t e;
        i++;
        if (!exponent(s, n, &i, &e))
            return LX_LOAD_VALUE_BAD;
        exp10 += e;
    }
    if (i != n)
        return LX_LOAD_VALUE_BAD;
    *micro = neg ? 0 : scale(m, exp10 + 6);
    return LX_LOAD_VALUE_OK;
}

/* ---- one line --------------------------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || is_digit(c);
}

static void skip_blanks(cursor_t *c)
{
    while (c->p < c->e && is_blank(*c->p))
        c->p++;
}

/* a metric name (colons allowed) or, with <label>, a label name: its length, 0 if none */
static size_t take_name(cursor_t *c, bool label)
{
    const char *start = c->p;
    if (c->p >= c->e || !is_name_start(*c->p) || (label && *c->p == ':'))
        return 0;
    for (c->p++; c->p < c->e && is_name_char(*c->p) && !(label && *c->p == ':'); c->p++)
        ;
    return (size_t)(c->p - start);
}

static bool is_model_label(const family_t *f, const char *name, size_t len)
{
    for (size_t k = 0; k < 2 && f->model_labels[k] != NULL; k++)
        if (strlen(f->model_labels[k]) == len && memcmp(f->model_labels[k], name, len) == 0)
            return true;
    return false;
}

/* A quoted label value at c->p (just past the opening quote), up to and past its closing
 * quote. With <model>, *equal tells whether the decoded value is <model>. False on a bad
 * escape or a missing closing quote. */
static bool take_label_value(cursor_t *c, const char *model, size_t model_len, bool *equal)
{
    size_t k = 0;
    bool eq = true;
    while (c->p < c->e && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            if (c->p >= c->e)
                return false;
            ch = *c->p++;
            if (ch == 'n')
                ch = '\n';
            else if (ch != '\\' && ch != '"')
                return false;
        }
        if (model != NULL && (k >= model_len || model[k] != ch))
            eq = false;
        k++;
    }
    if (c->p >= c->e)
        return false;
    c->p++;
    *equal = eq && (model == NULL || k == model_len);
    return true;
}

/* The label set at c->p ('{'). *other is set when a model label (of family <f>, when given)
 * differs from <model>. False when malformed. */
static bool take_labels(cursor_t *c, const family_t *f, const parser_t *ps, bool *other)
{
    c->p++;
    for (;;) {
        skip_blanks(c);
        if (c->p < c->e && *c->p == '}') {
            c->p++;
            return true;
        }
        const char *name = c->p;
        size_t len = take_name(c, true);
        if (len == 0)
            return false;
        skip_blanks(c);
        if (c->p >= c->e || *c->p != '=')
            return false;
        c->p++;
        skip_blanks(c);
        if (c->p >= c->e || *c->p != '"')
            return false;
        c->p++;
        bool check = f != NULL && ps->model_len > 0 && is_model_label(f, name, len);
        bool equal;
        if (!take_label_value(c, check ? ps->model : NULL, ps->model_len, &equal))
            return false;
        if (check && !equal)
            *other = true;
        skip_blanks(c);
        if (c->p < c->e && *c->p == ',')
            c->p++;
        else if (c->p >= c->e || *c->p != '}')
            return false;
    }
}

/* The family whose prefix <name> carries, or LX_LOAD_FAMILY_NONE. */
static int family_of(const char *name, size_t len)
{
    for (int f = 1; f < (int)N_FAMILIES; f++) {
        size_t pl = strlen(families[f].prefix);
        if (len >= pl && memcmp(name, families[f].prefix, pl) == 0)
            return f;
    }
    return LX_LOAD_FAMILY_NONE;
}

/* The signal <name> is in family <f>, or -1. */
static int signal_of(int f, const char *name, size_t len)
{
    for (int s = 0; s < SIG_N; s++)
        if (families[f].names[s] != NULL && strlen(families[f].names[s]) == len &&
            memcmp(families[f].names[s], name, len) == 0)
            return s;
    return -1;
}

/* A well-formed sample of family <f>, signal <sig> (-1: none), value <rc>/<x>. The first
 * family seen is the document's; another family's names do not count. */
static void account(parser_t *ps, int f, int sig, bool other, int rc, uint64_t x)
{
    if (ps->family == LX_LOAD_FAMILY_NONE)
        ps->family = f;
    if (f != ps->family || sig < 0 || rc != LX_LOAD_VALUE_OK)
        return; /* not a signal, or NaN/Inf: absent */
    if (other) {
        ps->excluded[sig]++;
        return;
    }
    ps->included[sig]++;
    if (sig == SIG_WAITING || sig == SIG_RUNNING)
        ps->acc[sig] = x > LX_LOAD_VALUE_MAX - ps->acc[sig] ? LX_LOAD_VALUE_MAX : ps->acc[sig] + x;
    else if (x > ps->acc[sig])
        ps->acc[sig] = x;
}

/* A sample line [c->p, c->e), leading blanks skipped, trailing blanks and CR dropped. */
static bool sample_line(parser_t *ps, cursor_t *c)
{
    const char *name = c->p;
    size_t len = take_name(c, false);
    if (len == 0)
        return false;
    int f = family_of(name, len);
    int sig = signal_of(f, name, len);
    bool other = false;
    bool spaced = c->p < c->e && is_blank(*c->p);
    skip_blanks(c);
    if (c->p < c->e && *c->p == '{') {
        if (!take_labels(c, sig >= 0 ? &families[f] : NULL, ps, &other))
            return false;
        spaced = true;
        skip_blanks(c);
    }
    const char *v = c->p;
    while (c->p < c->e && !is_blank(*c->p))
        c->p++;
    uint64_t x;
    int rc = lx_load_value(v, (size_t)(c->p - v), &x);
    if (!spaced || c->p == v || rc == LX_LOAD_VALUE_BAD)
        return false;
    account(ps, f, sig, other, rc, x);
    return true; /* the rest (timestamp, exemplar) is not read */
}

/* "# HELP name ..." or "# TYPE name ...": evidence of the format */
static bool help_or_type(cursor_t *c)
{
    c->p++;
    skip_blanks(c);
    if (c->e - c->p < 5 || (memcmp(c->p, "HELP", 4) != 0 && memcmp(c->p, "TYPE", 4) != 0) ||
        !is_blank(c->p[4]))
        return false;
    c->p += 4;
    skip_blanks(c);
    return take_name(c, false) > 0;
}

static void line(parser_t *ps, const char *p, const char *e)
{
    while (e > p && (e[-1] == '\r' || is_blank(e[-1])))
        e--;
    cursor_t c = {p, e};
    skip_blanks(&c);
    if (c.p == c.e)
        return;
    ps->lines++;
    if (*c.p == '#') {
        if (help_or_type(&c))
            ps->evidence++;
        return;
    }
    if (sample_line(ps, &c)) {
        ps->samples++;
        ps->evidence++;
    } else {
        ps->skipped++;
    }
}

/* ---- the document ----------------------------------------------------------------------- */

static uint32_t whole(uint64_t micro)
{
    uint64_t n = micro / 1000000u;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static void finish(const parser_t *ps, lx_load_sample_t *out)
{
    out->family = (uint8_t)ps->family;
    if (ps->included[SIG_WAITING] > 0) {
        out->flags |= LX_LOAD_HAS_WAITING;
        out->waiting = whole(ps->acc[SIG_WAITING]);
    }
    if (ps->included[SIG_RUNNING] > 0) {
        out->flags |= LX_LOAD_HAS_RUNNING;
        out->running = whole(ps->acc[SIG_RUNNING]);
    }
    /* the new vLLM name, when the server exports it (for any model), is the only one read */
    int kv = ps->included[SIG_KV] + ps->excluded[SIG_KV] > 0 ? SIG_KV : SIG_KV_OLD;
    if (ps->included[kv] > 0) {
        out->flags |= LX_LOAD_HAS_KV;
        out->kv_ppm = ps->acc[kv] > 1000000u ? 1000000u : (uint32_t)ps->acc[kv];
    }
    bool miss = (ps->included[SIG_WAITING] == 0 && ps->excluded[SIG_WAITING] > 0) ||
                (ps->included[SIG_RUNNING] == 0 && ps->excluded[SIG_RUNNING] > 0) ||
                (ps->included[kv] == 0 && ps->excluded[kv] > 0);
    if (miss)
        out->flags |= LX_LOAD_MODEL_MISS;
}

int lx_load_metrics_parse(const char *text, size_t len, const char *model, size_t model_len,
                          lx_load_sample_t *out)
{
    memset(out, 0, sizeof(*out));
    parser_t ps;
    memset(&ps, 0, sizeof(ps));
    if (model != NULL && model_len > 0) {
        ps.model = model;
        ps.model_len = model_len;
    }
    size_t off = 0;
    while (text != NULL && off < len) {
        const char *p = text + off;
        const char *nl = memchr(p, '\n', len - off);
        if (nl == NULL)
            break; /* unterminated: cut off, ignored */
        line(&ps, p, nl);
        off = (size_t)(nl - text) + 1;
    }
    out->samples = ps.samples;
    out->skipped = ps.skipped;
    if (ps.lines == 0)
        return LX_LOAD_EMPTY;
    if (ps.evidence == 0)
        return LX_LOAD_NOT_PROMETHEUS;
    finish(&ps, out);
    return LX_LOAD_OK;
}
