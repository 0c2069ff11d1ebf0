/*
 * test_json.c - the JSON tokenizer: tokens, spans and depths, strictness, error kinds and
 * offsets, the depth limit, and hostile shapes read in linear time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "core/status.h"

/* Reads <s> to the end; returns the number of tokens, or -1 on an error (in *<j>). */
static long run(lx_json_t *j, const char *s, size_t n, uint32_t max_depth)
{
    lx_json_token_t t;
    long count = 0;
    lx_json_init(j, s, n, max_depth);
    while (lx_json_next(j, &t) != LX_JSON_NONE)
        count++;
    return j->error == LX_JSON_OK ? count : -1;
}

static long run_str(lx_json_t *j, const char *s)
{
    return run(j, s, strlen(s), 64);
}

static void test_tokens(void **state)
{
    (void)state;
    const char *s =
        " {\"a\" : [1, -2.5e3, \"x\\\"y\", true, false, null, {}, []], \"b\":{\"c\":\"\"}} ";
    static const struct {
        lx_json_type_t type;
        const char *text;
        uint32_t depth;
    } want[] = {
        {LX_JSON_OBJECT, "{", 0},     {LX_JSON_KEY, "a", 1},         {LX_JSON_ARRAY, "[", 1},
        {LX_JSON_NUMBER, "1", 2},     {LX_JSON_NUMBER, "-2.5e3", 2}, {LX_JSON_STRING, "x\\\"y", 2},
        {LX_JSON_TRUE, "true", 2},    {LX_JSON_FALSE, "false", 2},   {LX_JSON_NULL, "null", 2},
        {LX_JSON_OBJECT, "{", 2},     {LX_JSON_OBJECT_END, "}", 2},  {LX_JSON_ARRAY, "[", 2},
        {LX_JSON_ARRAY_END, "]", 2},  {LX_JSON_ARRAY_END, "]", 1},   {LX_JSON_KEY, "b", 1},
        {LX_JSON_OBJECT, "{", 1},     {LX_JSON_KEY, "c", 2},         {LX_JSON_STRING, "", 2},
        {LX_JSON_OBJECT_END, "}", 1}, {LX_JSON_OBJECT_END, "}", 0},
    };
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, s, strlen(s), 8);
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        assert_int_equal(lx_json_next(&j, &t), want[k].type);
        assert_int_equal(t.type, want[k].type);
        assert_int_equal(t.end - t.start, strlen(want[k].text));
        assert_memory_equal(s + t.start, want[k].text, t.end - t.start);
        assert_int_equal(t.depth, want[k].depth);
        assert_int_equal(t.escaped, strchr(want[k].text, '\\') != NULL);
    }
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE);
    assert_int_equal(j.error, LX_JSON_OK);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE); /* and again */
    assert_int_equal(j.error, LX_JSON_OK);

    /* any value may be the document */
    static const char *const roots[] = {"0", " -0.0e+1 ", "\"\"", "true", "null", "[]", "{}"};
    for (size_t k = 0; k < sizeof(roots) / sizeof(roots[0]); k++)
        assert_int_equal(run_str(&j, roots[k]), roots[k][1] == ']' || roots[k][1] == '}' ? 2 : 1);

    /* lx_json_skip() reads through a container to its closing bracket */
    s = "{\"a\":[[1,{\"b\":[]}],2],\"c\":3}";
    lx_json_init(&j, s, strlen(s), 8);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_OBJECT);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_KEY);
    lx_json_token_t open, close;
    assert_int_equal(lx_json_next(&j, &open), LX_JSON_ARRAY);
    assert_true(lx_json_skip(&j, &open, &close));
    assert_int_equal(close.type, LX_JSON_ARRAY_END);
    assert_int_equal(close.start, 20);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_KEY);
    assert_memory_equal(s + t.start, "c", 1);
    s = "{\"a\":[1,}";
    lx_json_init(&j, s, strlen(s), 8);
    lx_json_next(&j, &t);
    lx_json_next(&j, &t);
    assert_int_equal(lx_json_next(&j, &open), LX_JSON_ARRAY);
    assert_false(lx_json_skip(&j, &open, &close));
    assert_int_equal(j.error, LX_JSON_ESYNTAX);
}

/* A raw control character in a string is an error, unless the caller asked to take it as
 * content (raw_controls); escapes and the grammar around it stay strict either way. */
static void test_raw_controls(void **state)
{
    (void)state;
    static const char s[] = "{\"m\":\"a\nb\x01\x1f\",\"c\":\"x\"}";
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, s, sizeof(s) - 1, 8);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_OBJECT);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_KEY);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE);
    assert_int_equal(j.error, LX_JSON_ESYNTAX);
    assert_int_equal(j.error_off, 7); /* the LF */
    lx_json_init(&j, s, sizeof(s) - 1, 8);
    j.raw_controls = true;
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_OBJECT);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_KEY);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_STRING);
    assert_int_equal(t.end - t.start, 5);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_KEY);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_STRING);
    assert_memory_equal(s + t.start, "x", 1);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_OBJECT_END);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE);
    assert_int_equal(j.error, LX_JSON_OK);
    static const char bad[] = "{\"m\":\"a\n\\q\"}"; /* a bad escape is still an error */
    lx_json_init(&j, bad, sizeof(bad) - 1, 8);
    j.raw_controls = true;
    lx_json_next(&j, &t);
    lx_json_next(&j, &t);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE);
    assert_int_equal(j.error, LX_JSON_ESYNTAX);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        lx_json_error_t err;
        uint32_t off;
    } cases[] = {
        {"", LX_JSON_EEOF, 0},
        {"   ", LX_JSON_EEOF, 3},
        {"{", LX_JSON_EEOF, 1},
        {"{\"a\"", LX_JSON_EEOF, 4},
        {"{\"a\":", LX_JSON_EEOF, 5},
        {"{\"a\":1", LX_JSON_EEOF, 6},
        {"{\"a\":tr", LX_JSON_EEOF, 7},
        {"{\"a\":\"x", LX_JSON_EEOF, 7},
        {"{\"a\":\"\\", LX_JSON_EEOF, 7},
        {"{\"a\":\"\\u12", LX_JSON_EEOF, 10},
        {"[1,", LX_JSON_EEOF, 3},
        {"{\"a\":1,}", LX_JSON_ESYNTAX, 6}, /* trailing comma: at the comma */
        {"[1 , ]", LX_JSON_ESYNTAX, 3},     /* also in arrays */
        {"{,\"a\":1}", LX_JSON_ESYNTAX, 1},
        {"{\"a\" 1}", LX_JSON_ESYNTAX, 5},
        {"{\"a\":1 \"b\":2}", LX_JSON_ESYNTAX, 7},
        {"[1 2]", LX_JSON_ESYNTAX, 3},
        {"[1,,2]", LX_JSON_ESYNTAX, 3},
        {"{\"a\":tru}", LX_JSON_ESYNTAX, 5}, /* malformed literals and numbers: at their start */
        {"{\"a\":truex}", LX_JSON_ESYNTAX, 5},
        {"{\"a\":01}", LX_JSON_ESYNTAX, 5},
        {"[1.]", LX_JSON_ESYNTAX, 1},
        {"[.5]", LX_JSON_ESYNTAX, 1},
        {"[-]", LX_JSON_ESYNTAX, 1},
        {"[1e]", LX_JSON_ESYNTAX, 1},
        {"[+1]", LX_JSON_ESYNTAX, 1},
        {"[0x1]", LX_JSON_ESYNTAX, 1},
        {"[NaN]", LX_JSON_ESYNTAX, 1},
        {"[1:2]", LX_JSON_ESYNTAX, 1},
        {"['x']", LX_JSON_ESYNTAX, 1},
        {"[\"\\q\"]", LX_JSON_ESYNTAX, 1}, /* malformed escapes: at the opening quote */
        {"[\"ab\\u12G4\"]", LX_JSON_ESYNTAX, 1},
        {"[\"ab\x01\"]", LX_JSON_ESYNTAX, 4}, /* raw control characters: at themselves */
        {"[\"\t\"]", LX_JSON_ESYNTAX, 2},
        {"{\"a\":1}}", LX_JSON_ESYNTAX, 7},
        {"{\"a\":1} x", LX_JSON_ESYNTAX, 8},
        {"{} {}", LX_JSON_ESYNTAX, 3},
        {"1 2", LX_JSON_ESYNTAX, 2},
        {"{\"a\":[}", LX_JSON_ESYNTAX, 6},
        {"[1}", LX_JSON_ESYNTAX, 2},
        {"{\"a\"::1}", LX_JSON_ESYNTAX, 5},
        {"{1:2}", LX_JSON_ESYNTAX, 1},
        {"{\"a\":{\"b\"}}", LX_JSON_ESYNTAX, 9},
        {"{}\v", LX_JSON_ESYNTAX, 2},
        {"]", LX_JSON_ESYNTAX, 0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        lx_json_t j;
        if (run_str(&j, cases[k].in) != -1)
            fail_msg("accepted %s", cases[k].in);
        if (j.error != cases[k].err || j.error_off != cases[k].off)
            fail_msg("%s: error %d at %u, want %d at %u", cases[k].in, j.error, j.error_off,
                     cases[k].err, cases[k].off);
    }
    /* a NUL byte is no JSON outside strings nor raw inside them; the length is honoured */
    lx_json_t j;
    assert_int_equal(run(&j, "[\"\0\"]", 5, 8), -1);
    assert_int_equal(j.error_off, 2);
    assert_int_equal(run(&j, "[1]\0", 4, 8), -1);
    assert_int_equal(j.error_off, 3);
    assert_int_equal(run(&j, "[1]xyz", 3, 8), 3);
}

static void test_primitive_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"0",    "-0",     "1",   "123",  "1.5",   "-1.5e10", "1E5",
                                       "1e+5", "1e-005", "0.0", "true", "false", "null"};
    static const char *const bad[] = {"",    "-",        "01",   "1.",  ".1",  "1e",    "1e+",
                                      "+1",  "0x10",     "1.5.", "--1", "tru", "truee", "True",
                                      "NaN", "Infinity", "nul",  "1 ",  " 1",  "1,"};
    for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++)
        assert_true(lx_json_primitive_valid(good[k], strlen(good[k])));
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        if (lx_json_primitive_valid(bad[k], strlen(bad[k])))
            fail_msg("accepted primitive '%s'", bad[k]);
}

/* <n> '[' then <n> ']', in a buffer the caller frees. */
static char *nest(size_t n, size_t *len)
{
    char *s = malloc(2 * n + 1);
    assert_non_null(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    *len = 2 * n;
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    lx_json_t j;
    size_t len;
    char *s = nest(100, &len);
    assert_int_equal(run(&j, s, len, 100), 200);
    assert_int_equal(run(&j, s, len, 99), -1);
    assert_int_equal(j.error, LX_JSON_EDEPTH);
    assert_int_equal(j.error_off, 99); /* the bracket that would open level 100 */
    assert_int_equal(run(&j, s, len, 0), -1);
    assert_int_equal(j.error_off, 0);
    free(s);
    /* objects count too, and the limit is clamped to LX_JSON_DEPTH_MAX */
    assert_int_equal(run(&j, "{\"a\":{\"b\":[{}]}}", 16, 3), -1);
    assert_int_equal(j.error, LX_JSON_EDEPTH);
    assert_int_equal(j.error_off, 11);
    s = nest(LX_JSON_DEPTH_MAX + 1, &len);
    assert_int_equal(run(&j, s, len, UINT32_MAX), -1);
    assert_int_equal(j.error_off, LX_JSON_DEPTH_MAX);
    free(s);
    s = nest(LX_JSON_DEPTH_MAX, &len);
    assert_int_equal(run(&j, s, len, UINT32_MAX), 2 * LX_JSON_DEPTH_MAX);
    free(s);
}

/*
 * Hostile shapes, each a few MB, read to the end: the tokenizer's work is linear in the input,
 * so this test takes well under a second where a tokenizer paying O(depth) per closing bracket
 * or O(tokens) per token would run past the CTest TIMEOUT (60 s). The token counts are exact.
 */
static void test_hostile_shapes(void **state)
{
    (void)state;
    size_t cap = 4u << 20, o;
    char *s = malloc(cap);
    assert_non_null(s);
    lx_json_t j;

    /* a million levels, past the limit: stopped at the limit's bracket */
    o = 0;
    memset(s, '[', 1u << 20);
    memset(s + (1u << 20), ']', 1u << 20);
    assert_int_equal(run(&j, s, 2u << 20, 512), -1);
    assert_int_equal(j.error, LX_JSON_EDEPTH);
    assert_int_equal(j.error_off, 512);

    /* the limit's depth, again and again: [[[...]]],[[[...]]],... */
    o = 0;
    s[o++] = '[';
    long blocks = 0;
    while (o + 2 * LX_JSON_DEPTH_MAX + 2 < cap) {
        if (blocks++ > 0)
            s[o++] = ',';
        memset(s + o, '[', LX_JSON_DEPTH_MAX - 1);
        o += LX_JSON_DEPTH_MAX - 1;
        memset(s + o, ']', LX_JSON_DEPTH_MAX - 1);
        o += LX_JSON_DEPTH_MAX - 1;
    }
    s[o++] = ']';
    assert_int_equal(run(&j, s, o, LX_JSON_DEPTH_MAX), 2 + blocks * 2 * (LX_JSON_DEPTH_MAX - 1));

    /* a million tiny tokens: [[],[],...], [0,0,...], {"a":0,"a":0,...} */
    static const char *const units[] = {"[]", "0", "\"a\":0", "{}", "\"\""};
    static const long per_unit[] = {2, 1, 2, 2, 1};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        bool obj = strchr(units[u], ':') != NULL;
        size_t ul = strlen(units[u]);
        long n = 0;
        o = 0;
        s[o++] = obj ? '{' : '[';
        while (o + ul + 2 < cap) {
            if (n++ > 0)
                s[o++] = ',';
            memcpy(s + o, units[u], ul);
            o += ul;
        }
        s[o++] = obj ? '}' : ']';
        assert_int_equal(run(&j, s, o, 8), 2 + n * per_unit[u]);
    }

    /* one string of escapes: \n, \", \u00e9, surrogate pairs */
    static const char *const escs[] = {"\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", "\\\\"};
    for (size_t e = 0; e < sizeof(escs) / sizeof(escs[0]); e++) {
        size_t el = strlen(escs[e]);
        o = 0;
        s[o++] = '"';
        while (o + el + 1 < cap) {
            memcpy(s + o, escs[e], el);
            o += el;
        }
        s[o++] = '"';
        lx_json_token_t t;
        lx_json_init(&j, s, o, 8);
        assert_int_equal(lx_json_next(&j, &t), LX_JSON_STRING);
        assert_true(t.escaped);
        assert_int_equal(t.end, o - 1);
        assert_int_equal(lx_json_next(&j, &t), LX_JSON_NONE);
        assert_int_equal(j.error, LX_JSON_OK);
    }
    free(s);
}

/* The escaper's one rule, each class of character, with both spellings of controls. */
static void test_escape_rule(void **state)
{
    (void)state;
    char out[256];
    static const char in[] =
        "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    static const char want[] = "q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f caf\xc3\xa9 "
                               "\xe2\x82\xac \xf0\x9f\x98\x80";
    size_t consumed = 0;
    size_t n = lx_json_escape(out, sizeof(out), in, sizeof(in) - 1, &consumed);
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(consumed, sizeof(in) - 1);
    assert_int_equal(lx_json_escaped_len(in, sizeof(in) - 1), n);
    /* the hex spelling: every control as \u00XX, the rest the same */
    static const char want_hex[] = "q\\\"b\\\\s/\\u0008\\u000c\\u000a\\u000d\\u0009\\u0001\\u001f"
                                   "\\u007f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    n = lx_json_escape_hex(out, sizeof(out), in, sizeof(in) - 1, &consumed);
    assert_int_equal(n, sizeof(want_hex) - 1);
    assert_memory_equal(out, want_hex, n);
    /* NUL is a control like the others; invalid UTF-8 is U+FFFD per byte: a lone continuation
     * byte, a cut sequence, an overlong form, a surrogate */
    n = lx_json_escape(out, sizeof(out), "a\0b", 3, NULL);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a\\u0000b", 8);
    static const char bad[] = "\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xff";
    static const char bad_want[] = "\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                                   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd";
    n = lx_json_escape(out, sizeof(out), bad, sizeof(bad) - 1, NULL);
    assert_int_equal(n, sizeof(bad_want) - 1);
    assert_memory_equal(out, bad_want, n);
    assert_int_equal(lx_json_escaped_len(bad, sizeof(bad) - 1), n);
    /* one character at a time: 0 means copied as it is, over *in bytes */
    char tmp[LX_JSON_ESC_MAX];
    size_t in_len;
    assert_int_equal(lx_json_escape_char("a", 1, tmp, &in_len), 0);
    assert_int_equal(in_len, 1);
    assert_int_equal(lx_json_escape_char("\xe2\x82\xac!", 4, tmp, &in_len), 0);
    assert_int_equal(in_len, 3);
    assert_int_equal(lx_json_escape_char("\xe2\x82", 2, tmp, &in_len), 3);
    assert_int_equal(in_len, 1);
    assert_int_equal(lx_json_escape_char("\x1b", 1, tmp, &in_len), 6);
    assert_memory_equal(tmp, "\\u001b", 6);
    /* the output is valid JSON string content: core/json reads it back */
    char doc[300];
    n = lx_json_escape(doc + 1, sizeof(doc) - 2, bad, sizeof(bad) - 1, NULL);
    doc[0] = '"';
    doc[n + 1] = '"';
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, doc, n + 2, 4);
    assert_int_equal(lx_json_next(&j, &t), LX_JSON_STRING);
}

/* Whole characters and whole escapes only: the output stops before the first that does not
 * fit, and never passes cap. */
static void test_escape_truncation(void **state)
{
    (void)state;
    char out[64];
    size_t consumed;
    memset(out, '#', sizeof(out));
    assert_int_equal(lx_json_escape(out, 4, "abcdef", 6, &consumed), 4);
    assert_int_equal(consumed, 4);
    assert_int_equal(out[4], '#');
    assert_int_equal(lx_json_escape(out, 2, "a\"b", 3, &consumed), 1);
    assert_int_equal(consumed, 1);
    assert_int_equal(lx_json_escape(out, 3, "a\"b", 3, &consumed), 3);
    assert_int_equal(consumed, 2);
    assert_int_equal(lx_json_escape(out, 7, "ab\x01z", 4, &consumed), 2);
    assert_int_equal(consumed, 2);
    assert_int_equal(lx_json_escape(out, 3, "a\xe2\x82\xac", 4, &consumed), 1);
    assert_int_equal(lx_json_escape(out, 4, "a\xe2\x82\xac", 4, &consumed), 4);
    assert_int_equal(consumed, 4);
    assert_int_equal(lx_json_escape(out, 3, "a\xff", 2, &consumed), 1);
    assert_int_equal(lx_json_escape(out, 0, "abc", 3, &consumed), 0);
    assert_int_equal(consumed, 0);
    assert_int_equal(lx_json_escape(out, 5, "", 0, &consumed), 0);
    memset(out, '#', sizeof(out));
    assert_int_equal(lx_json_escape_hex(out, 7, "\n\n", 2, &consumed), 6);
    assert_int_equal(consumed, 1);
    assert_int_equal(out[6], '#');
}

/* The inverse: escapes resolved, \u as UTF-8, and what the escaper writes reads back. */
static void test_unescape(void **state)
{
    (void)state;
    char out[128];
    static const char raw[] = "a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\ud800x";
    static const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx";
    int n = lx_json_unescape(raw, sizeof(raw) - 1, out, sizeof(out));
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, (size_t)n);
    assert_int_equal(lx_json_unescape("\\x", 2, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("\\u12g4", 6, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("ab\\", 3, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("abc", 3, out, 2), LX_ETOOBIG);
    assert_int_equal(lx_json_unescape("\\u00e9", 6, out, 1), LX_ETOOBIG);
    /* every byte string of valid UTF-8 survives escape then unescape */
    static const char text[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80";
    char esc[256];
    size_t e = lx_json_escape(esc, sizeof(esc), text, sizeof(text) - 1, NULL);
    n = lx_json_unescape(esc, e, out, sizeof(out));
    assert_int_equal(n, sizeof(text) - 1);
    assert_memory_equal(out, text, sizeof(text) - 1);
    e = lx_json_escape_hex(esc, sizeof(esc), text, sizeof(text) - 1, NULL);
    n = lx_json_unescape(esc, e, out, sizeof(out));
    assert_int_equal(n, sizeof(text) - 1);
    assert_memory_equal(out, text, sizeof(text) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_raw_controls), cmocka_unit_test(test_primitive_valid),
        cmocka_unit_test(test_depth),        cmocka_unit_test(test_hostile_shapes),
        cmocka_unit_test(test_escape_rule),  cmocka_unit_test(test_escape_truncation),
        cmocka_unit_test(test_unescape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
