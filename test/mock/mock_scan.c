/*
 * mock_scan.c - the mock's view of a request body and its per-request controls.
 *
 * The body is fed in the pieces llhttp hands over (a body may be many MB and is never held):
 * a byte-at-a-time tokenizer tracks nesting, strings and literals, and captures only what sits
 * at depth 1 and 2 - the top-level "model" and "stream", "stream_options.include_usage", the
 * fields of the top-level "mock" object, and the number of embeddings inputs. It is not a JSON
 * validator: garbage yields nothing, never a crash. Called from mock_conn.c's body callback.
 */
#include "mock_internal.h"

#include <string.h>

static const char *const control_names[] = {
#define X(e, n) #n,
    LX_MOCK_CONTROLS(X)
#undef X
};

void lx_mock_scan_init(lx_mock_scan_t *s)
{
    s->depth = 0;
    s->want_key = 0;
    s->in_str = s->esc = s->in_lit = 0;
    s->tok_key = s->tok_on = s->tok_over = 0;
    s->tok_len = 0;
    s->key1_len = s->key2_len = 0;
    s->model_len = 0;
    s->stream = 0;
    s->include_usage = 0;
    s->inputs = 0;
    s->ctl.set = 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int name_char_eq(int a, int b)
{
    a = a == '-' ? '_' : lower(a);
    b = b == '-' ? '_' : lower(b);
    return a == b;
}

int lx_mock_scan_control(const char *name, size_t len)
{
    static const char prefix[] = "x-mock-";
    size_t plen = sizeof(prefix) - 1;
    if (len > plen) {
        size_t i = 0;
        while (i < plen && name_char_eq(name[i], prefix[i]))
            i++;
        if (i == plen) {
            name += plen;
            len -= plen;
        }
    }
    for (int c = 0; c < LX_MOCK_CTL_COUNT; c++) {
        const char *n = control_names[c];
        if (strlen(n) != len)
            continue;
        size_t i = 0;
        while (i < len && name_char_eq(name[i], n[i]))
            i++;
        if (i == len)
            return c;
    }
    return -1;
}

static int eq(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

int64_t lx_mock_scan_int(const char *p, size_t n)
{
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    if (eq(p, n, "true"))
        return 1;
    int neg = 0;
    if (n > 0 && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
        n--;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        if (v < INT64_C(100000000000000000))
            v = v * 10 + (p[i] - '0');
    }
    return neg ? -v : v;
}

static int is_true(const char *p, size_t n)
{
    return eq(p, n, "true") || eq(p, n, "1");
}

/* A complete scalar value (string or literal) at the current depth. */
static void on_value(lx_mock_scan_t *s, int is_string)
{
    if (s->tok_over)
        return;
    const char *t = s->tok;
    size_t n = s->tok_len;
    if (s->depth == 1 && s->kind[1] == '{' && s->key1_len > 0) {
        if (is_string && eq(s->key1, s->key1_len, "model") && n > 0) {
            memcpy(s->model, t, n);
            s->model_len = n;
        } else if (!is_string && eq(s->key1, s->key1_len, "stream")) {
            s->stream = is_true(t, n);
        }
        return;
    }
    if (s->depth != 2 || s->kind[1] != '{' || s->key1_len == 0)
        return;
    if (s->kind[2] == '[') {
        if (is_string && eq(s->key1, s->key1_len, "input"))
            s->inputs++;
        return;
    }
    if (s->key2_len == 0)
        return;
    if (eq(s->key1, s->key1_len, "stream_options")) {
        if (eq(s->key2, s->key2_len, "include_usage"))
            s->include_usage = is_true(t, n);
    } else if (eq(s->key1, s->key1_len, "mock")) {
        int c = lx_mock_scan_control(s->key2, s->key2_len);
        if (c >= 0) {
            s->ctl.val[c] = lx_mock_scan_int(t, n);
            s->ctl.set |= 1u << c;
        }
    }
}

static void on_key(lx_mock_scan_t *s)
{
    uint8_t len = s->tok_over || s->tok_len >= LX_MOCK_KEY_MAX ? 0 : (uint8_t)s->tok_len;
    if (s->depth == 1) {
        memcpy(s->key1, s->tok, len);
        s->key1_len = len;
    } else if (s->depth == 2) {
        memcpy(s->key2, s->tok, len);
        s->key2_len = len;
    }
}

static void tok_start(lx_mock_scan_t *s)
{
    s->tok_len = 0;
    s->tok_over = 0;
    s->tok_on = s->depth >= 1 && s->depth <= 2;
}

static void tok_put(lx_mock_scan_t *s, char c)
{
    if (!s->tok_on)
        return;
    if (s->tok_len >= LX_MOCK_TOK_MAX) {
        s->tok_over = 1;
        return;
    }
    /* raw control bytes would make the echoed model invalid JSON */
    s->tok[s->tok_len++] = (unsigned char)c < 0x20 ? '?' : c;
}

static void lit_end(lx_mock_scan_t *s)
{
    s->in_lit = 0;
    if (s->tok_on)
        on_value(s, 0);
}

static int is_lit_end(char c)
{
    switch (c) {
    case ',':
    case '}':
    case ']':
    case ':':
    case '{':
    case '[':
    case '"':
    case ' ':
    case '\t':
    case '\r':
    case '\n':
        return 1;
    default:
        return 0;
    }
}

void lx_mock_scan_feed(lx_mock_scan_t *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (s->in_str) {
            if (s->esc) {
                s->esc = 0;
                tok_put(s, c);
            } else if (c == '\\') {
                s->esc = 1;
                tok_put(s, c);
            } else if (c == '"') {
                s->in_str = 0;
                if (!s->tok_on)
                    continue;
                if (s->tok_key)
                    on_key(s);
                else
                    on_value(s, 1);
            } else if (!s->tok_on) {
                /* skip the rest of an uncaptured string quickly */
                const char *q = p + i;
                const char *end = p + n;
                while (q < end && *q != '"' && *q != '\\')
                    q++;
                i = (size_t)(q - p) - 1;
            } else {
                tok_put(s, c);
            }
            continue;
        }
        if (s->in_lit) {
            if (!is_lit_end(c)) {
                tok_put(s, c);
                continue;
            }
            lit_end(s);
        }
        switch (c) {
        case '{':
        case '[':
            if (s->depth == 2 && s->kind[1] == '{' && s->kind[2] == '[' && s->key1_len > 0 &&
                eq(s->key1, s->key1_len, "input"))
                s->inputs++; /* an array of token ids is one input */
            if (s->depth < UINT32_MAX)
                s->depth++;
            if (s->depth < sizeof(s->kind))
                s->kind[s->depth] = c;
            if (s->depth == 2)
                s->key2_len = 0;
            s->want_key = c == '{';
            break;
        case '}':
        case ']':
            if (s->depth > 0)
                s->depth--;
            s->want_key = 0;
            break;
        case ',':
            s->want_key = s->depth > 0 && s->depth < sizeof(s->kind) && s->kind[s->depth] == '{';
            break;
        case ':':
            s->want_key = 0;
            break;
        case '"':
            s->in_str = 1;
            s->esc = 0;
            s->tok_key = s->want_key;
            tok_start(s);
            break;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            break;
        default:
            s->in_lit = 1;
            tok_start(s);
            tok_put(s, c);
            break;
        }
    }
}

void lx_mock_scan_finish(lx_mock_scan_t *s)
{
    if (s->in_lit)
        lit_end(s);
}
