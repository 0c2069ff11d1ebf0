/*
 * test_body.c - the request body scan and splice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "llm/body.h"

static lx_body_scan_t scan;

static int scan_str(const char *s)
{
    return lx_body_scan(s, strlen(s), &scan);
}

static void assert_span(const char *body, lx_body_span_t sp, const char *want)
{
    assert_int_equal(sp.len, strlen(want));
    assert_memory_equal(body + sp.off, want, sp.len);
}

/* Scans <in>, splices it and returns the concatenated result (malloc'd), which must scan. */
static char *splice_str(const char *in, const char *model, bool include_usage)
{
    assert_int_equal(scan_str(in), 0);
    lx_body_piece_t pieces[LX_BODY_MAX_PIECES];
    char scratch[256];
    size_t total = 0;
    int n = lx_body_splice(in, strlen(in), &scan, model, model ? strlen(model) : 0, include_usage,
                           pieces, LX_BODY_MAX_PIECES, scratch, sizeof(scratch), &total);
    assert_true(n > 0);
    char *out = malloc(total + 1);
    assert_non_null(out);
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        assert_true(pieces[k].len > 0);
        memcpy(out + o, pieces[k].ptr, pieces[k].len);
        o += pieces[k].len;
    }
    assert_int_equal(o, total);
    out[o] = '\0';
    lx_body_scan_t again;
    if (lx_body_scan(out, o, &again) != 0)
        fail_msg("spliced body does not scan: %s (%s)", out, again.error);
    return out;
}

static void check_splice(const char *in, const char *model, bool include_usage, const char *want)
{
    char *out = splice_str(in, model, include_usage);
    if (strcmp(out, want) != 0)
        fail_msg("splice of %s\n  got  %s\n  want %s", in, out, want);
    free(out);
}

static void test_model(void **state)
{
    const char *b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_model);
    assert_span(b, scan.model, "gpt-4o");
    assert_string_equal(scan.error, "");
    assert_false(scan.stream);
    assert_false(scan.has_stream);

    assert_int_equal(scan_str("{\"messages\":[]}"), 0);
    assert_false(scan.has_model);

    assert_int_equal(scan_str("{\"model\":5}"), LX_EJSON);
    assert_string_equal(scan.error, "'model' must be a string");
    assert_int_equal(scan_str("{\"model\":null}"), LX_EJSON);
    assert_int_equal(scan_str("{\"model\":[\"a\"]}"), LX_EJSON);
    assert_int_equal(scan_str("{\"model\":\"a\",\"model\":\"b\"}"), LX_EJSON);
    assert_string_equal(scan.error, "duplicate 'model' member");

    /* "model" nested elsewhere is not the model */
    b = "{\"messages\":[{\"model\":\"x\"}],\"model\":\"m\"}";
    assert_int_equal(scan_str(b), 0);
    assert_span(b, scan.model, "m");
    assert_int_equal(scan_str("{\"messages\":[{\"model\":\"x\"}]}"), 0);
    assert_false(scan.has_model);
}

static void test_stream(void **state)
{
    assert_int_equal(scan_str("{\"stream\":true}"), 0);
    assert_true(scan.has_stream);
    assert_true(scan.stream);
    assert_int_equal(scan_str("{\"stream\" : false }"), 0);
    assert_true(scan.has_stream);
    assert_false(scan.stream);
    assert_int_equal(scan_str("{\"stream\":null}"), 0);
    assert_false(scan.stream);
    const char *bad[] = {"{\"stream\":1}", "{\"stream\":\"true\"}", "{\"stream\":{}}",
                         "{\"stream\":[true]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(scan_str(bad[i]), LX_EJSON);
        assert_string_equal(scan.error, "'stream' must be a boolean");
    }
}

static void test_stream_options(void **state)
{
    const char *b = "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_stream_options);
    assert_true(scan.has_include_usage);
    assert_true(scan.include_usage);
    assert_span(b, scan.stream_options, "{\"include_usage\":true}");

    b = "{\"stream_options\":{\"x\":{\"include_usage\":true},\"include_usage\":false}}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_stream_options);
    assert_true(scan.has_include_usage);
    assert_false(scan.include_usage);
    assert_int_equal(scan.stream_options_members, 2);
    assert_span(b, scan.include_usage_value, "false");

    assert_int_equal(scan_str("{\"stream_options\":{}}"), 0);
    assert_true(scan.has_stream_options);
    assert_false(scan.has_include_usage);
    assert_int_equal(scan_str("{\"stream_options\":null}"), 0);
    assert_false(scan.has_stream_options);
    assert_true(scan.stream_options_null);

    assert_int_equal(scan_str("{\"stream_options\":[]}"), LX_EJSON);
    assert_string_equal(scan.error, "'stream_options' must be an object");
    assert_int_equal(scan_str("{\"stream_options\":{\"include_usage\":1}}"), LX_EJSON);
    assert_int_equal(
        scan_str("{\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}"),
        LX_EJSON);
}

static void test_consumed_spans(void **state)
{
    const char *b = "{\"models\":[\"a/b\", \"c\\\"d\"],\"provider\":{\"order\":[\"x\"]},"
                    "\"route\":\"fallback\",\"session_id\":\"s-1\",\"model\":\"m\"}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_models);
    assert_int_equal(scan.n_models, 2);
    assert_span(b, scan.model_list[0], "a/b");
    assert_span(b, scan.model_list[1], "c\\\"d");
    assert_span(b, scan.models, "[\"a/b\", \"c\\\"d\"]");
    assert_true(scan.has_provider);
    assert_span(b, scan.provider, "{\"order\":[\"x\"]}");
    assert_true(scan.has_route);
    assert_span(b, scan.route, "fallback");
    assert_true(scan.has_session_id);
    assert_span(b, scan.session_id, "s-1");

    assert_int_equal(scan_str("{\"models\":[\"a\",1]}"), LX_EJSON);
    assert_string_equal(scan.error, "'models' must be an array of strings");
    assert_int_equal(scan_str("{\"models\":[[\"a\"]]}"), LX_EJSON);
    assert_int_equal(scan_str("{\"models\":\"a\"}"), LX_EJSON);
    assert_int_equal(scan_str("{\"provider\":[]}"), LX_EJSON);
    assert_int_equal(scan_str("{\"route\":1}"), LX_EJSON);
    assert_int_equal(scan_str("{\"session_id\":{}}"), LX_EJSON);
    assert_int_equal(scan_str("{\"models\":[],\"models\":[]}"), LX_EJSON);
    assert_int_equal(scan_str("{\"models\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
                              "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}"),
                     LX_EJSON);
    assert_int_equal(scan_str("{\"models\":null,\"provider\":null}"), 0);
    assert_true(scan.has_models);
    assert_int_equal(scan.n_models, 0);
    assert_true(scan.has_provider);
    assert_int_equal(scan.provider.len, 0);
}

static void test_remove_members(void **state)
{
    /* first */
    check_splice("{\"models\":[\"a\",\"b\"],\"model\":\"x\",\"messages\":[]}", "y", false,
                 "{\"model\":\"y\",\"messages\":[]}");
    /* middle, with blanks */
    check_splice("{\"model\":\"x\", \"provider\": {\"order\":[\"a\"]} , \"messages\":[]}", "y",
                 false, "{\"model\":\"y\" , \"messages\":[]}");
    /* last */
    check_splice("{\"model\":\"x\",\"messages\":[],\"session_id\":\"s1\"}", "y", false,
                 "{\"model\":\"y\",\"messages\":[]}");
    /* several at the start, one in the middle, one at the end */
    check_splice("{\"models\":[\"a\"],\"provider\":{},\"model\":\"x\",\"route\":\"sort\","
                 "\"stream\":false,\"session_id\":\"z\"}",
                 "y", false, "{\"model\":\"y\",\"stream\":false}");
    /* all of them, no model: the model is added */
    check_splice("{\"route\":\"fallback\",\"models\":[\"a\"]}", "m", false, "{\"model\":\"m\"}");
    check_splice("{ \"route\" : \"fallback\" }", NULL, false, "{  }");
    /* pretty-printed */
    check_splice("{\n  \"model\": \"x\",\n  \"models\": [\"a\"],\n  \"temperature\": 0.5\n}\n", "y",
                 false, "{\n  \"model\": \"y\",\n  \"temperature\": 0.5\n}\n");
    check_splice("{\n  \"models\": [\"a\"],\n  \"model\": \"x\"\n}", NULL, false,
                 "{\n  \"model\": \"x\"\n}");
    /* nested lookalikes stay */
    check_splice("{\"model\":\"x\",\"metadata\":{\"provider\":\"p\",\"models\":1}}", NULL, false,
                 "{\"model\":\"x\",\"metadata\":{\"provider\":\"p\",\"models\":1}}");
}

static void test_unknown_untouched(void **state)
{
    const char *b = "{\"temperature\":0.7,\"model\":\"old\",\"tools\":[{\"type\":\"function\","
                    "\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
                    "\"x\":[-1.5e-3,true,false,null,\"\\u00e9\\n\"],\"user\":\"u\"}";
    char *out = splice_str(b, "new-model", true);
    assert_string_equal(out, "{\"temperature\":0.7,\"model\":\"new-model\",\"tools\":[{\"type\":"
                             "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
                             "\"object\"}}}],\"x\":[-1.5e-3,true,false,null,\"\\u00e9\\n\"],"
                             "\"user\":\"u\"}");
    free(out);
    /* NULL model: no change at all */
    out = splice_str(b, NULL, false);
    assert_string_equal(out, b);
    free(out);
}

static void test_include_usage(void **state)
{
    check_splice("{\"model\":\"x\",\"stream\":true}", "y", true,
                 "{\"model\":\"y\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    /* added after the last kept member, before a removed one */
    check_splice("{\"model\":\"x\",\"stream\":true,\"models\":[\"a\"]}", "y", true,
                 "{\"model\":\"y\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_splice("{\"stream\":true}", "m", true,
                 "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_splice("{\"stream\":true , \"models\":[\"a\"] }", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true} }");
    check_splice("{\"stream\":true,\"stream_options\":{}}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_splice("{\"stream\":true,\"stream_options\":{ \"foo\":1}}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true, \"foo\":1}}");
    check_splice("{\"stream\":true,\"stream_options\":{\"include_usage\":false}}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_splice("{\"stream\":true,\"stream_options\":{\"include_usage\":null,\"a\":2}}", NULL,
                 true, "{\"stream\":true,\"stream_options\":{\"include_usage\":true,\"a\":2}}");
    check_splice("{\"stream\":true,\"stream_options\":null}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    /* already there */
    check_splice("{\"stream\":true,\"stream_options\":{\"include_usage\":true}}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    /* not streaming, or not asked */
    check_splice("{\"stream\":false}", NULL, true, "{\"stream\":false}");
    check_splice("{\"model\":\"x\"}", NULL, true, "{\"model\":\"x\"}");
    check_splice("{\"stream\":true}", NULL, false, "{\"stream\":true}");
}

static void test_escapes(void **state)
{
    const char *b = "{\"model\":\"a\\/b\\u00e9\\\"\"}";
    assert_int_equal(scan_str(b), 0);
    assert_span(b, scan.model, "a\\/b\\u00e9\\\"");
    char out[32];
    int n = lx_json_unescape(b + scan.model.off, scan.model.len, out, sizeof(out));
    assert_int_equal(n, 6);
    assert_memory_equal(out, "a/b\xc3\xa9\"", 6);
    /* a model needing escapes is escaped in the splice */
    check_splice("{\"model\":\"x\"}", "q\"\\\n\x01", false, "{\"model\":\"q\\\"\\\\\\n\\u0001\"}");
    /* unescape: surrogate pair, lone surrogate, errors, capacity */
    n = lx_json_unescape("\\ud83d\\ude00", 12, out, sizeof(out));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xf0\x9f\x98\x80", 4);
    n = lx_json_unescape("\\ud83dx", 7, out, sizeof(out));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xef\xbf\xbdx", 4);
    n = lx_json_unescape("\\t\\b\\f\\r\\n\\\\", 12, out, sizeof(out));
    assert_int_equal(n, 6);
    assert_memory_equal(out, "\t\b\f\r\n\\", 6);
    assert_int_equal(lx_json_unescape("\\q", 2, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("\\", 1, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("\\u12", 4, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("\\u12g4", 6, out, sizeof(out)), LX_EJSON);
    assert_int_equal(lx_json_unescape("abcd", 4, out, 3), LX_ETOOBIG);
    assert_int_equal(lx_json_unescape("\\u00e9", 6, out, 1), LX_ETOOBIG);
    assert_int_equal(lx_json_unescape("", 0, out, 0), 0);
}

static void test_invalid(void **state)
{
    static const char *bad[] = {
        "{\"model\":\"x\"",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":1} 2",
        "[1]",
        "\"x\"",
        "1",
        "{a:1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":0x1}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\":[1 2]}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\\q\"}",
        "{\"a\":1}}",
        "{\"a\":[}",
        "{\"a\"::1}",
        "{\"a\":{\"b\"}}",
        "{\"a\":\"b\":\"c\"}",
        "{\"a\":true false}",
        "{\"a\"}",
        "{\"a\":}",
        "{1:2}",
        "{\"a\":1",
        "{\"a\":\"",
        "{\"a\":\"\\u12\"}",
        "{\"a\":[1]]}",
        "{\"a\":'x'}",
        "{\"a\":1}\x01",
        "{\"a\":truex}",
        "{\"a\":\"b\"\"c\"}",
        "{\"a\":{}{}}",
        "{\"a\":1,,\"b\":2}",
        "{\"a\":[\"b\":1]}",
        "{\"a\":NaN}",
        "{\"a\":-Infinity}",
        "{\"a\":\"x\"}\v",
        "{\"a\":1}\f",
        "{\"a\":\"\t\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = scan_str(bad[i]);
        if (rc != LX_EJSON)
            fail_msg("accepted invalid JSON %s", bad[i]);
        assert_true(scan.error[0] != '\0');
    }
    assert_int_equal(scan_str(""), LX_EJSON);
    assert_string_equal(scan.error, "request body is empty");
    assert_int_equal(scan_str(" \r\n\t"), LX_EJSON);
    assert_int_equal(scan_str("[1]"), LX_EJSON);
    assert_string_equal(scan.error, "request body must be a JSON object");
    assert_int_equal(scan_str("{\"model\":\"x\""), LX_EJSON);
    assert_string_equal(scan.error, "invalid JSON: unexpected end of body");
    assert_int_equal(scan_str("{\"a\":1,}"), LX_EJSON);
    assert_string_equal(scan.error, "invalid JSON at byte 6");
    assert_int_equal(scan_str("{\"a\":tru}"), LX_EJSON);
    assert_string_equal(scan.error, "invalid JSON at byte 5");
    /* a NUL byte, in a string or between values */
    assert_int_equal(lx_body_scan("{\"a\":\"\0\"}", 9, &scan), LX_EJSON);
    assert_string_equal(scan.error, "invalid JSON at byte 6");
    assert_int_equal(lx_body_scan("{\"a\":1}\0", 8, &scan), LX_EJSON);
    /* ... and a length that stops before the end is honoured */
    assert_int_equal(lx_body_scan("{\"a\":1}xyz", 7, &scan), 0);

    static const char *good[] = {
        "{}",
        " { \"a\" : [ 1 , -0.5e+3 , \"x\" , null , true , false, { } , [ ] ] } \n",
        "{\"a\":0,\"b\":-0,\"c\":1E5,\"d\":1e-5,\"e\":123.456,\"f\":[[[]]]}",
        "{\"\":\"\",\"\\u0041\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\uFFFF\"}",
        "{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\"}",
        "{\"model\":\"x\",\"a\":{\"model\":1,\"stream\":\"no\"}}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (scan_str(good[i]) != 0)
            fail_msg("rejected valid JSON %s: %s", good[i], scan.error);
    }
}

static void test_depth(void **state)
{
    char body[2048];
    size_t o = 0;
    body[o++] = '{';
    memcpy(body + o, "\"a\":", 4);
    o += 4;
    for (int i = 0; i < 600; i++)
        body[o++] = '[';
    for (int i = 0; i < 600; i++)
        body[o++] = ']';
    body[o++] = '}';
    assert_int_equal(lx_body_scan(body, o, &scan), LX_EJSON);
    assert_string_equal(scan.error, "JSON nested too deeply");
    /* 400 levels are fine */
    o = 5;
    for (int i = 0; i < 400; i++)
        body[o++] = '[';
    for (int i = 0; i < 400; i++)
        body[o++] = ']';
    body[o++] = '}';
    assert_int_equal(lx_body_scan(body, o, &scan), 0);
}

/* Builds {"a":<open>...<close>...} with <n> levels under the root (one more with the root),
 * closers included: the shape on which a scan that pays O(depth) per closing bracket is
 * quadratic. Returns the malloc'd body and its length in *<len>. */
static char *deep_body(size_t n, const char *open, const char *close, size_t *len)
{
    size_t ol = strlen(open), cl = strlen(close);
    char *b = malloc(6 + n * (ol + cl));
    assert_non_null(b);
    size_t o = 0;
    memcpy(b + o, "{\"a\":", 5);
    o += 5;
    for (size_t k = 0; k < n; k++, o += ol)
        memcpy(b + o, open, ol);
    for (size_t k = 0; k < n; k++, o += cl)
        memcpy(b + o, close, cl);
    b[o++] = '}';
    *len = o;
    return b;
}

/* {"a":[B,B,...]} with <reps> blocks B of <block> '[' then as many ']' (nesting depth
 * block + 2 with the root and the outer array). */
static char *blocks_body(size_t block, size_t reps, size_t *len)
{
    char *b = malloc(16 + reps * (2 * block + 1));
    assert_non_null(b);
    size_t o = (size_t)sprintf(b, "{\"a\":[");
    for (size_t r = 0; r < reps; r++) {
        if (r > 0)
            b[o++] = ',';
        memset(b + o, '[', block);
        o += block;
        memset(b + o, ']', block);
        o += block;
    }
    o += (size_t)sprintf(b + o, "]}");
    *len = o;
    return b;
}

/* Hostile nesting is refused in time linear in the body: a million levels (2 MB) scanned at
 * O(depth) per closing bracket take tens of minutes, far past this test's CTest TIMEOUT. */
static void test_depth_linear(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *open, *close;
    } cases[] = {
        {12500, "[", "]"},         {100000, "[", "]"},         {1000000, "[", "]"},
        {1000000, "{\"a\":", "}"}, {500000, "[{\"b\":", "}]"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t len;
        char *b = deep_body(cases[k].n, cases[k].open, cases[k].close, &len);
        assert_int_equal(lx_body_scan(b, len, &scan), LX_EJSON);
        assert_string_equal(scan.error, "JSON nested too deeply");
        /* also behind a "models" list, which the direct scan leaves to the reference scan */
        char *m = malloc(len + 32);
        assert_non_null(m);
        size_t o = (size_t)sprintf(m, "{\"models\":[\"m\"],");
        memcpy(m + o, b + 1, len - 1);
        assert_int_equal(lx_body_scan(m, o + len - 1, &scan), LX_EJSON);
        assert_string_equal(scan.error, "JSON nested too deeply");
        free(m);
        free(b);
    }
    /* right at the limit, many times over (~4 MB): accepted; one level more: refused */
    size_t len;
    char *b = blocks_body(LX_BODY_MAX_DEPTH - 2, 4000, &len);
    assert_int_equal(lx_body_scan(b, len, &scan), 0);
    free(b);
    b = blocks_body(LX_BODY_MAX_DEPTH - 1, 4000, &len);
    assert_int_equal(lx_body_scan(b, len, &scan), LX_EJSON);
    assert_string_equal(scan.error, "JSON nested too deeply");
    free(b);
}

static void test_large(void **state)
{
    /* ~2 MB with a "models" list: the reference scan reads it all */
    size_t cap = 3u << 20, o = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    o += (size_t)sprintf(body + o, "{\"models\":[\"a\",\"b\"],\"messages\":[");
    for (int i = 0; o < (2u << 20); i++)
        o +=
            (size_t)sprintf(body + o, "%s{\"role\":\"user\",\"content\":\"message %d\",\"n\":[%d]}",
                            i ? "," : "", i, i);
    o += (size_t)sprintf(body + o, "],\"stream\":true,\"model\":\"big\"}");
    assert_int_equal(lx_body_scan(body, o, &scan), 0);
    assert_true(scan.has_model);
    assert_span(body, scan.model, "big");
    assert_true(scan.stream);

    lx_body_piece_t pieces[LX_BODY_MAX_PIECES];
    char scratch[16];
    size_t total;
    int n = lx_body_splice(body, o, &scan, "small", 5, true, pieces, LX_BODY_MAX_PIECES, scratch,
                           sizeof(scratch), &total);
    assert_true(n > 0);
    char *out = malloc(total);
    assert_non_null(out);
    size_t w = 0;
    for (int k = 0; k < n; k++) {
        memcpy(out + w, pieces[k].ptr, pieces[k].len);
        w += pieces[k].len;
    }
    const char *tail = ",\"stream\":true,\"model\":\"small\",\"stream_options\":{\"include_usage\":"
                       "true}}";
    assert_memory_equal(out + total - strlen(tail), tail, strlen(tail));
    assert_memory_equal(out, "{\"messages\":[{", 14);
    assert_int_equal(lx_body_scan(out, total, &scan), 0);
    assert_span(out, scan.model, "small");
    assert_true(scan.include_usage);
    assert_false(scan.has_models);
    free(out);
    free(body);
}

/* OpenRouter's usage: {"include": true}: recognised, checked, never forwarded. Each body is
 * scanned as it is (the direct scan) and behind a "models" list (the reference scan). */
static void test_usage(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool include;
    } good[] = {
        {"{\"model\":\"m\",\"usage\":{\"include\":true}}", true},
        {"{\"usage\": { \"include\" : true } ,\"model\":\"m\"}", true},
        {"{\"usage\":{\"include\":false}}", false},
        {"{\"usage\":{\"include\":null,\"x\":[1,{\"include\":true}]}}", false},
        {"{\"usage\":{}}", false},
        {"{\"usage\":null}", false},
        {"{\"usage\":{\"x\":{\"include\":true},\"include\":true}}", true},
    };
    for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++) {
        for (int ref = 0; ref < 2; ref++) {
            char body[256];
            snprintf(body, sizeof(body), "%s%s", ref ? "{\"models\":[\"a\"]," : "",
                     good[k].in + (ref ? 1 : 0));
            if (scan_str(body) != 0)
                fail_msg("%s: %s", body, scan.error);
            assert_true(scan.has_usage);
            assert_int_equal(scan.usage_include, good[k].include);
            char *out = splice_str(body, NULL, false);
            lx_body_scan_t again;
            assert_int_equal(lx_body_scan(out, strlen(out), &again), 0);
            assert_false(again.has_usage);
            assert_null(strstr(out, "\"usage\""));
            free(out);
        }
    }
    /* absent, and nested lookalikes, are not the member */
    assert_int_equal(scan_str("{\"model\":\"m\",\"metadata\":{\"usage\":{\"include\":true}}}"), 0);
    assert_false(scan.has_usage || scan.usage_include);
    assert_int_equal(scan_str("{\"usage\\u0020\":1}"), 0);
    assert_false(scan.has_usage);

    /* where it stands among the members, and with every other consumed member */
    check_splice("{\"usage\":{\"include\":true},\"model\":\"x\",\"messages\":[]}", "y", false,
                 "{\"model\":\"y\",\"messages\":[]}");
    check_splice("{\"model\":\"x\", \"usage\" : {\"include\":true} , \"messages\":[]}", NULL, false,
                 "{\"model\":\"x\" , \"messages\":[]}");
    check_splice("{\"model\":\"x\",\"stream\":true,\"usage\":{\"include\":true}}", NULL, true,
                 "{\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_splice("{\"usage\":{\"include\":true},\"models\":[\"a\"],\"provider\":{},\"model\":\"x\","
                 "\"route\":\"sort\",\"stream\":false,\"session_id\":\"z\"}",
                 "y", false, "{\"model\":\"y\",\"stream\":false}");
    check_splice("{\"usage\":null,\"models\":[\"a\"],\"provider\":{},\"route\":\"sort\","
                 "\"session_id\":\"z\"}",
                 "m", true, "{\"model\":\"m\"}");
    assert_int_equal(scan_str("{\"usage\":{},\"models\":[\"a\"],\"provider\":{},\"route\":\"s\","
                              "\"session_id\":\"z\",\"a\":1}"),
                     0);
    assert_int_equal(scan.n_cuts, LX_BODY_MAX_CUTS);

    static const struct {
        const char *in;
        const char *err;
    } bad[] = {
        {"{\"usage\":true}", "'usage' must be an object"},
        {"{\"usage\":[]}", "'usage' must be an object"},
        {"{\"usage\":\"include\"}", "'usage' must be an object"},
        {"{\"usage\":1}", "'usage' must be an object"},
        {"{\"usage\":{\"include\":1}}", "'usage.include' must be a boolean"},
        {"{\"usage\":{\"include\":\"true\"}}", "'usage.include' must be a boolean"},
        {"{\"usage\":{\"include\":{}}}", "'usage.include' must be a boolean"},
        {"{\"usage\":{\"include\":true,\"include\":false}}", "duplicate 'usage.include' member"},
        {"{\"usage\":{},\"usage\":{}}", "duplicate 'usage' member"},
        {"{\"usage\":{\"include\":tru}}", "invalid JSON at byte 20"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (int ref = 0; ref < 2; ref++) {
            char body[128];
            snprintf(body, sizeof(body), "%s%s", ref ? "{\"models\":[]," : "", bad[k].in + ref);
            assert_int_equal(scan_str(body), LX_EJSON);
            const char *want = bad[k].err;
            char shifted[64];
            if (ref && strncmp(want, "invalid JSON at byte ", 21) == 0) {
                snprintf(shifted, sizeof(shifted), "invalid JSON at byte %d", atoi(want + 21) + 12);
                want = shifted;
            }
            if (strcmp(scan.error, want) != 0)
                fail_msg("%s: got '%s', want '%s'", body, scan.error, want);
        }
    }
}

static void test_splice_limits(void **state)
{
    const char *b = "{\"models\":[\"a\"],\"model\":\"x\",\"stream\":true,\"route\":\"r\"}";
    assert_int_equal(scan_str(b), 0);
    lx_body_piece_t pieces[LX_BODY_MAX_PIECES];
    char scratch[8];
    size_t total;
    /* the model needs 9 bytes escaped */
    assert_int_equal(lx_body_splice(b, strlen(b), &scan, "abcd\"efg", 8, false, pieces,
                                    LX_BODY_MAX_PIECES, scratch, sizeof(scratch), &total),
                     LX_ETOOBIG);
    int n = lx_body_splice(b, strlen(b), &scan, "abc", 3, true, pieces, LX_BODY_MAX_PIECES, scratch,
                           sizeof(scratch), &total);
    assert_true(n > 1);
    assert_int_equal(lx_body_splice(b, strlen(b), &scan, "abc", 3, true, pieces, (size_t)n - 1,
                                    scratch, sizeof(scratch), &total),
                     LX_ETOOBIG);
    assert_int_equal(lx_body_splice(b, strlen(b), &scan, "abc", 3, true, pieces, (size_t)n, scratch,
                                    sizeof(scratch), &total),
                     n);
    /* an empty model is valid */
    check_splice("{\"model\":\"x\"}", "", false, "{\"model\":\"\"}");
}

/* The direct scan (valid bodies without "models") and the reference scan it leaves everything else
 * to record the same things and word the same errors: bodies on either side of that line. */
static void test_direct_and_reference(void **state)
{
    (void)state;
    /* a chat request with every member the direct scan records, escapes, nesting, numbers */
    const char *b = " {\"session_id\":\"s\\u00e9\",\"model\":\"m\\\"x\",\"messages\":[{\"role\":"
                    "\"user\",\"content\":\"a long enough content string \\n with \\\\ escapes "
                    "and \xc3\xa9 bytes\"}],\"stream\":true,\"stream_options\":{\"a\":[1,{}],"
                    "\"include_usage\":false},\"provider\":{\"order\":[\"p\"]},\"route\":null,"
                    "\"temperature\":-0.5e+2} ";
    assert_int_equal(scan_str(b), 0);
    assert_string_equal(scan.error, "");
    assert_int_equal(scan.root_open, 1);
    assert_span(b, scan.model, "m\\\"x");
    assert_true(scan.stream && scan.has_stream);
    assert_true(scan.has_stream_options);
    assert_int_equal(scan.stream_options_members, 2);
    assert_span(b, scan.stream_options, "{\"a\":[1,{}],\"include_usage\":false}");
    assert_true(scan.has_include_usage);
    assert_false(scan.include_usage);
    assert_span(b, scan.include_usage_value, "false");
    assert_true(scan.has_provider);
    assert_span(b, scan.provider, "{\"order\":[\"p\"]}");
    assert_true(scan.has_route);
    assert_int_equal(scan.route.len, 0);
    assert_span(b, scan.session_id, "s\\u00e9");
    assert_int_equal(scan.kept, 5);
    assert_int_equal(scan.n_cuts, 3);
    char *out = splice_str(b, "pub", false);
    assert_string_equal(out,
                        " {\"model\":\"pub\",\"messages\":[{\"role\":\"user\",\"content\":\"a long "
                        "enough content string \\n with \\\\ escapes and \xc3\xa9 bytes\"}],"
                        "\"stream\":true,\"stream_options\":{\"a\":[1,{}],\"include_usage\":"
                        "false},\"temperature\":-0.5e+2} ");
    free(out);

    /* "models" and nesting deeper than the direct scan's stack: the reference scan records them */
    assert_int_equal(scan_str("{\"models\":[\"a\",\"b\"],\"model\":\"c\"}"), 0);
    assert_int_equal(scan.n_models, 2);
    char deep[300];
    size_t o = 0;
    o += (size_t)snprintf(deep, sizeof(deep), "{\"model\":\"d\",\"x\":");
    for (int k = 0; k < 100; k++)
        deep[o++] = '[';
    for (int k = 0; k < 100; k++)
        deep[o++] = ']';
    deep[o++] = '}';
    assert_int_equal(lx_body_scan(deep, o, &scan), 0);
    assert_span(deep, scan.model, "d");
    assert_int_equal(scan.kept, 2);

    /* errors found by the direct scan are worded by the reference scan, byte offsets included */
    static const struct {
        const char *in;
        const char *err;
    } bad[] = {
        {"{\"model\":\"a\",\"model\":\"b\"}", "duplicate 'model' member"},
        {"{\"stream_options\":{\"include_usage\":true,\"include_usage\":true}}",
         "duplicate 'include_usage' member"},
        {"{\"stream_options\":{\"include_usage\":1}}",
         "'stream_options.include_usage' must be a boolean"},
        {"{\"stream\":\"yes\"}", "'stream' must be a boolean"},
        {"{\"route\":1}", "'route' must be a string"},
        {"{\"provider\":[]}", "'provider' must be an object"},
        {"{\"model\":\"abcdefghijklmnop\x01\"}", "invalid JSON at byte 26"},
        {"{\"model\":\"abcdefghij\\x\"}", "invalid JSON at byte 9"},
        {"{\"a\":\"\\u12G4\"}", "invalid JSON at byte 5"},
        {"{\"a\":[1 2]}", "invalid JSON at byte 8"},
        {"{\"a\":01}", "invalid JSON at byte 5"},
        {"{\"a\":1}}", "invalid JSON at byte 7"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        assert_int_equal(scan_str(bad[k].in), LX_EJSON);
        if (strcmp(scan.error, bad[k].err) != 0)
            fail_msg("%s: got '%s', want '%s'", bad[k].in, scan.error, bad[k].err);
    }
}

/* max_tokens, max_completion_tokens, n, best_of and user: recorded, checked, and forwarded as
 * they are. */
static void test_recorded_members(void **state)
{
    (void)state;
    const char *b = "{\"model\":\"m\",\"max_tokens\":256,\"user\":\"user-\\u00e9\","
                    "\"max_completion_tokens\":1024,\"messages\":[]}";
    assert_int_equal(scan_str(b), 0);
    assert_int_equal(scan.max_tokens, 256);
    assert_int_equal(scan.max_completion_tokens, 1024);
    assert_true(scan.has_user);
    assert_span(b, scan.user, "user-\\u00e9");
    /* not consumed: the upstream body keeps them */
    check_splice(b, "x", false,
                 "{\"model\":\"x\",\"max_tokens\":256,\"user\":\"user-\\u00e9\","
                 "\"max_completion_tokens\":1024,\"messages\":[]}");

    /* absent and null: -1, no user */
    assert_int_equal(scan_str("{\"model\":\"m\"}"), 0);
    assert_int_equal(scan.max_tokens, -1);
    assert_int_equal(scan.max_completion_tokens, -1);
    assert_false(scan.has_user);
    assert_int_equal(scan.user.len, 0);
    assert_int_equal(scan_str("{\"max_tokens\":null,\"max_completion_tokens\":null,\"user\":null}"),
                     0);
    assert_int_equal(scan.max_tokens, -1);
    assert_int_equal(scan.max_completion_tokens, -1);
    assert_false(scan.has_user);
    /* the bounds: 0, and saturation far past INT64_MAX */
    assert_int_equal(scan_str("{\"max_tokens\":0,\"max_completion_tokens\":9223372036854775807}"),
                     0);
    assert_int_equal(scan.max_tokens, 0);
    assert_int_equal(scan.max_completion_tokens, INT64_MAX);
    assert_int_equal(scan_str("{\"max_tokens\":9223372036854775808}"), 0);
    assert_int_equal(scan.max_tokens, INT64_MAX);
    assert_int_equal(scan_str("{\"max_tokens\":99999999999999999999999999999999999999}"), 0);
    assert_int_equal(scan.max_tokens, INT64_MAX);
    /* through the reference scan too ("models" first) */
    assert_int_equal(scan_str("{\"models\":[\"a\"],\"max_tokens\":7,\"user\":\"u\"}"), 0);
    assert_int_equal(scan.max_tokens, 7);
    assert_int_equal(scan.max_completion_tokens, -1);
    assert_true(scan.has_user);
    /* an escaped key is another member */
    assert_int_equal(scan_str("{\"max\\u005ftokens\":\"x\"}"), 0);
    assert_int_equal(scan.max_tokens, -1);
    /* n and best_of: the completions a request asks for (its reservation) */
    assert_int_equal(scan_str("{\"model\":\"m\",\"n\":4,\"best_of\":6,\"max_tokens\":9}"), 0);
    assert_int_equal(scan.n, 4);
    assert_int_equal(scan.best_of, 6);
    check_splice("{\"n\":4,\"best_of\":6}", NULL, false, "{\"n\":4,\"best_of\":6}");
    assert_int_equal(scan_str("{\"n\":null,\"best_of\":null,\"nn\":\"x\",\"best_ox\":1.5}"), 0);
    assert_int_equal(scan.n, -1);
    assert_int_equal(scan.best_of, -1);
    assert_int_equal(scan_str("{\"models\":[\"a\"],\"n\":3,\"best_of\":0}"), 0);
    assert_int_equal(scan.n, 3);
    assert_int_equal(scan.best_of, 0);

    static const struct {
        const char *in;
        const char *err;
    } bad[] = {
        {"{\"max_tokens\":-1}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":-0}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":1.5}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":100.0}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":1e3}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":\"100\"}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":true}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_tokens\":[1]}", "'max_tokens' must be a non-negative integer"},
        {"{\"max_completion_tokens\":-5}",
         "'max_completion_tokens' must be a non-negative integer"},
        {"{\"max_completion_tokens\":{}}",
         "'max_completion_tokens' must be a non-negative integer"},
        {"{\"user\":1}", "'user' must be a string"},
        {"{\"user\":{\"id\":\"u\"}}", "'user' must be a string"},
        {"{\"user\":false}", "'user' must be a string"},
        {"{\"max_tokens\":1,\"max_tokens\":2}", "duplicate 'max_tokens' member"},
        {"{\"max_completion_tokens\":1,\"max_completion_tokens\":1}",
         "duplicate 'max_completion_tokens' member"},
        {"{\"user\":\"a\",\"user\":\"a\"}", "duplicate 'user' member"},
        {"{\"n\":1.0}", "'n' must be a non-negative integer"},
        {"{\"n\":\"2\"}", "'n' must be a non-negative integer"},
        {"{\"best_of\":-3}", "'best_of' must be a non-negative integer"},
        {"{\"models\":[],\"n\":[2]}", "'n' must be a non-negative integer"},
        {"{\"n\":1,\"n\":128}", "duplicate 'n' member"},
        {"{\"best_of\":2,\"model\":\"m\",\"best_of\":2}", "duplicate 'best_of' member"},
        {"{\"max_tokens\":01}", "invalid JSON at byte 14"},
        {"{\"models\":[],\"max_tokens\":-1}", "'max_tokens' must be a non-negative integer"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        assert_int_equal(scan_str(bad[k].in), LX_EJSON);
        if (strcmp(scan.error, bad[k].err) != 0)
            fail_msg("%s: got '%s', want '%s'", bad[k].in, scan.error, bad[k].err);
    }
}

/* The record of <b> and of the same body behind a "models":null member, which the direct scan
 * leaves to the reference scan at its key: the same members, 14 bytes later. */
static void check_same_record(const char *b)
{
    char ref[512];
    snprintf(ref, sizeof(ref), "{\"models\":null,%s", b + 1);
    lx_body_scan_t d, r;
    assert_int_equal(lx_body_scan(b, strlen(b), &d), 0);
    assert_int_equal(lx_body_scan(ref, strlen(ref), &r), 0);
    const lx_body_span_t *ds[] = {&d.model,    &d.stream_options, &d.include_usage_value,
                                  &d.provider, &d.route,          &d.session_id,
                                  &d.user,     &d.messages,       &d.prompt};
    const lx_body_span_t *rs[] = {&r.model,    &r.stream_options, &r.include_usage_value,
                                  &r.provider, &r.route,          &r.session_id,
                                  &r.user,     &r.messages,       &r.prompt};
    for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
        assert_int_equal(ds[k]->len, rs[k]->len);
        assert_int_equal(ds[k]->off == 0 ? 0 : ds[k]->off + 14, rs[k]->off);
    }
    assert_int_equal(d.stream_options_null, r.stream_options_null);
    assert_int_equal(d.stream_options_members, r.stream_options_members);
    assert_int_equal(d.kept, r.kept);
    assert_int_equal(d.last_kept_end + 14, r.last_kept_end);
    assert_int_equal(d.has_usage, r.has_usage);
    assert_int_equal(d.usage_include, r.usage_include);
    assert_int_equal(d.max_tokens, r.max_tokens);
    assert_int_equal(d.max_completion_tokens, r.max_completion_tokens);
    assert_int_equal(d.n, r.n);
    assert_int_equal(d.best_of, r.best_of);
    assert_int_equal(d.has_user, r.has_user);
    assert_int_equal(d.has_messages, r.has_messages);
    assert_int_equal(d.n_messages, r.n_messages);
    assert_int_equal(d.messages_last == 0 ? 0 : d.messages_last + 14, r.messages_last);
    assert_int_equal(d.has_prompt, r.has_prompt);
    assert_int_equal(d.prompt_array, r.prompt_array);
    assert_int_equal(d.n_prompt, r.n_prompt);
    assert_int_equal(d.prompt_last == 0 ? 0 : d.prompt_last + 14, r.prompt_last);
}

/* The prompt's spans: "messages" and "prompt" arrays with their element count and last
 * element, a string prompt's content; other types recorded as absent, duplicates as their last
 * occurrence; the same record through the reference scan. */
static void test_prompt_spans(void **state)
{
    (void)state;
    const char *b = "{\"model\":\"m\",\"messages\": [ {\"role\":\"system\",\"content\":\"s\"},"
                    " {\"role\":\"user\",\"content\":[1,{\"a\":\"]\"}]} ] ,\"n\":1}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_messages);
    assert_false(scan.has_prompt);
    assert_int_equal(scan.n_messages, 2);
    assert_span(b, scan.messages,
                "[ {\"role\":\"system\",\"content\":\"s\"}, {\"role\":\"user\",\"content\":"
                "[1,{\"a\":\"]\"}]} ]");
    assert_memory_equal(b + scan.messages_last, "{\"role\":\"user\"", 14);
    check_same_record(b);

    assert_int_equal(scan_str("{\"messages\":[]}"), 0);
    assert_true(scan.has_messages);
    assert_int_equal(scan.n_messages, 0);
    assert_int_equal(scan.messages_last, 0);
    assert_int_equal(scan.messages.len, 2);
    check_same_record("{\"messages\":[ ]}");

    /* another type is no error, and not recorded */
    static const char *const others[] = {
        "{\"messages\":\"hi\"}", "{\"messages\":null}", "{\"messages\":{\"a\":1}}",
        "{\"prompt\":5}",        "{\"prompt\":null}",   "{\"prompt\":{}}",
    };
    for (size_t k = 0; k < sizeof(others) / sizeof(others[0]); k++) {
        assert_int_equal(scan_str(others[k]), 0);
        assert_false(scan.has_messages);
        assert_false(scan.has_prompt);
        assert_int_equal(scan.messages.len + scan.prompt.len, 0);
        check_same_record(others[k]);
    }

    b = "{\"prompt\":\"Once \\\"upon\\\" a time\",\"model\":\"m\"}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_prompt);
    assert_false(scan.prompt_array);
    assert_span(b, scan.prompt, "Once \\\"upon\\\" a time");
    check_same_record(b);

    b = "{\"prompt\":[\"a\",\"bc\" , [1,2]],\"model\":\"m\"}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_prompt && scan.prompt_array);
    assert_int_equal(scan.n_prompt, 3);
    assert_span(b, scan.prompt, "[\"a\",\"bc\" , [1,2]]");
    assert_memory_equal(b + scan.prompt_last, "[1,2]", 5);
    check_same_record(b);
    b = "{\"prompt\":[\"a\",\"bc\"]}";
    assert_int_equal(scan_str(b), 0);
    assert_memory_equal(b + scan.prompt_last, "\"bc\"", 4);
    check_same_record(b);

    /* seen twice: the last one, no error (in both scans) */
    b = "{\"messages\":[1],\"prompt\":\"x\",\"messages\":[2,3],\"prompt\":7}";
    assert_int_equal(scan_str(b), 0);
    assert_true(scan.has_messages);
    assert_span(b, scan.messages, "[2,3]");
    assert_int_equal(scan.n_messages, 2);
    assert_false(scan.has_prompt);
    check_same_record(b);

    /* nested over the direct scan's depth: the reference scan records the same */
    char deep[400];
    int o = sprintf(deep, "{\"messages\":[0,");
    for (int k = 0; k < 80; k++)
        deep[o++] = '[';
    for (int k = 0; k < 80; k++)
        deep[o++] = ']';
    sprintf(deep + o, "]}");
    assert_int_equal(scan_str(deep), 0);
    assert_int_equal(scan.n_messages, 2);
    assert_int_equal(scan.messages_last, 15);
    assert_int_equal(scan.messages.len, strlen(deep) - 13);
}

static void test_reference_record(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":null,\"n\":1}",
        "{\"model\":\"m\",\"stream_options\":null}",
        "{\"stream_options\":{\"include_usage\":false,\"x\":[1]},\"model\":\"m\"}",
        "{\"model\":\"m\",\"stream\":null,\"route\":null,\"session_id\":\"s\",\"t\":[]}",
        "{\"model\":\"m\",\"provider\":{\"order\":[\"a\"]},\"x\":\"y\"}",
        "{\"model\":\"m\",\"usage\":{\"include\":true},\"x\":{}}",
        "{\"model\":\"m\",\"usage\":null,\"x\":-1.5}",
        "{\"model\":\"m\",\"max_tokens\":100,\"user\":\"u-1\",\"max_completion_tokens\":0}",
        "{\"max_tokens\":null,\"user\":null,\"max_completion_tokens\":12345678901234567890123}",
        "{\"model\":\"m\",\"n\":5,\"best_of\":null,\"messages\":[]}",
        "{\"best_of\":2,\"n\":99999999999999999999999}",
    };
    for (size_t k = 0; k < sizeof(bodies) / sizeof(bodies[0]); k++)
        check_same_record(bodies[k]);
    /* the upstream body of a stream with "stream_options":null, through the reference scan */
    check_splice("{\"models\":[\"a\"],\"model\":\"x\",\"stream\":true,\"stream_options\":null,"
                 "\"n\":1}",
                 "y", true,
                 "{\"model\":\"y\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                 "\"n\":1}");
    check_splice("{\"models\":[\"a\"],\"stream\":true,\"stream_options\":null}", NULL, true,
                 "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
}

/* The string scan at every position: a quote, backslash or control character found wherever
 * it falls in the 16- and 8-byte steps and the byte-wise tail; bytes 0x20, 0x7f and 0x80..0xff
 * are plain. Root keys are recognised by their exact bytes only. */
static void test_string_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *text; /* inserted into the model value */
        int rc;
    } cases[] = {
        {"\\\"", 0},        {"\\\\", 0},      {"\\u00e9", 0},    {" ", 0},
        {"\x7f", 0},        {"\xff", 0},      {"\x80", 0},       {"\x01", LX_EJSON},
        {"\x1f", LX_EJSON}, {"\n", LX_EJSON}, {"\\x", LX_EJSON},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t pad = 0; pad < 40; pad++) {
            for (size_t tail = 0; tail < 20; tail += 19) {
                char body[160], val[96];
                size_t n = 0;
                for (size_t k = 0; k < pad; k++)
                    val[n++] = (char)('a' + k % 26);
                n += (size_t)snprintf(val + n, sizeof(val) - n, "%s", cases[c].text);
                for (size_t k = 0; k < tail; k++)
                    val[n++] = 'z';
                val[n] = '\0';
                snprintf(body, sizeof(body), "{\"model\":\"%s\",\"stream\":true}", val);
                int rc = scan_str(body);
                assert_int_equal(rc, cases[c].rc);
                if (rc == 0) {
                    assert_span(body, scan.model, val);
                    assert_true(scan.stream);
                } else {
                    assert_memory_equal(scan.error, "invalid JSON at byte ", 21);
                }
            }
        }
    }
    /* near misses of the recognised root keys are plain members */
    static const char *const near[] = {"modex",  "Model",   "streams",    "stream_option",
                                       "routes", "provide", "session_iD", "models_"};
    for (size_t k = 0; k < sizeof(near) / sizeof(near[0]); k++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"%s\":7,\"model\":\"m\"}", near[k]);
        assert_int_equal(scan_str(body), 0);
        assert_true(scan.has_model);
        assert_false(scan.has_stream || scan.has_stream_options || scan.has_models ||
                     scan.has_provider || scan.has_route || scan.has_session_id);
        assert_int_equal(scan.n_cuts, 0);
    }
    assert_int_equal(scan_str("{\"route\":\"r\",\"session_id\":\"s\",\"provider\":{},\"m\":1}"), 0);
    assert_true(scan.has_route && scan.has_session_id && scan.has_provider);
    assert_int_equal(scan.n_cuts, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_options),
        cmocka_unit_test(test_consumed_spans),
        cmocka_unit_test(test_remove_members),
        cmocka_unit_test(test_unknown_untouched),
        cmocka_unit_test(test_include_usage),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_depth_linear),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_direct_and_reference),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_splice_limits),
        cmocka_unit_test(test_string_bytes),
        cmocka_unit_test(test_reference_record),
        cmocka_unit_test(test_recorded_members),
        cmocka_unit_test(test_prompt_spans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
