/*
 * test_prefs.c - the request's routing preferences: provider object, route, suffixes and the
 * request parameter list.
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
#include "route/prefs.h"

static lx_body_scan_t scan;
static lx_prefs_t prefs;
static char err[160];
static char body[8192];

/* Scans <json> (which must be a valid body) and parses its preferences. */
static int parse(const char *json)
{
    snprintf(body, sizeof(body), "%s", json);
    if (lx_body_scan(body, strlen(body), &scan) != 0)
        fail_msg("test body does not scan: %s (%s)", body, scan.error);
    memset(&prefs, 0xa5, sizeof(prefs));
    memset(err, 'x', sizeof(err));
    return lx_prefs_parse(body, strlen(body), &scan, &prefs, err, sizeof(err));
}

/* Parses {"model":"m","provider":<provider>}. */
static int parse_provider(const char *provider)
{
    char json[4096];
    snprintf(json, sizeof(json), "{\"model\":\"m\",\"provider\":%s}", provider);
    return parse(json);
}

static void assert_defaults(const lx_prefs_t *p)
{
    assert_int_equal(p->order.n, 0);
    assert_int_equal(p->only.n, 0);
    assert_int_equal(p->ignore.n, 0);
    assert_true(p->allow_fallbacks);
    assert_int_equal(p->sort, LX_PREFS_SORT_NONE);
    assert_int_equal(p->sort_source, LX_PREFS_SORT_DEFAULT);
    assert_int_equal(p->partition, LX_PREFS_PARTITION_MODEL);
    assert_false(p->has_max_prompt);
    assert_false(p->has_max_completion);
    assert_false(p->data_collection_deny);
    assert_false(p->zdr);
    assert_false(p->require_parameters);
    assert_int_equal(p->n_params, 0);
}

static void assert_view(lx_prefs_view_t v, const char *want)
{
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[]}"), 0);
    assert_defaults(&prefs);
    assert_string_equal(err, "");
    assert_int_equal(parse("{\"model\":\"m\",\"provider\":null,\"route\":null}"), 0);
    assert_defaults(&prefs);
    assert_int_equal(parse_provider("{}"), 0);
    assert_defaults(&prefs);
    assert_int_equal(parse_provider(" { } "), 0);
    assert_defaults(&prefs);
}

static void test_every_field(void **state)
{
    (void)state;
    assert_int_equal(parse_provider("{\"order\":[\"a\",\"b\"],\"only\":[\"a\",\"b\",\"c\"],"
                                    "\"ignore\":[\"z\"],\"allow_fallbacks\":false,"
                                    "\"sort\":\"latency\",\"max_price\":{\"prompt\":1.5,"
                                    "\"completion\":2e1},\"data_collection\":\"deny\","
                                    "\"zdr\":true,\"require_parameters\":true}"),
                     0);
    assert_int_equal(prefs.order.n, 2);
    assert_view(prefs.order.name[0], "a");
    assert_view(prefs.order.name[1], "b");
    assert_int_equal(prefs.only.n, 3);
    assert_view(prefs.only.name[2], "c");
    assert_int_equal(prefs.ignore.n, 1);
    assert_view(prefs.ignore.name[0], "z");
    assert_false(prefs.allow_fallbacks);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_LATENCY);
    assert_int_equal(prefs.sort_source, LX_PREFS_SORT_EXPLICIT);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_MODEL);
    assert_true(prefs.has_max_prompt);
    assert_true(prefs.max_prompt == 1.5);
    assert_true(prefs.has_max_completion);
    assert_true(prefs.max_completion == 20.0);
    assert_true(prefs.data_collection_deny);
    assert_true(prefs.zdr);
    assert_true(prefs.require_parameters);
    /* views point into the body */
    assert_true(prefs.order.name[0].ptr > body && prefs.order.name[0].ptr < body + strlen(body));

    assert_int_equal(parse_provider("{\"sort\":\"price\",\"data_collection\":\"allow\","
                                    "\"allow_fallbacks\":true,\"zdr\":false}"),
                     0);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_PRICE);
    assert_false(prefs.data_collection_deny);
    assert_true(prefs.allow_fallbacks);
    assert_false(prefs.zdr);
    assert_int_equal(parse_provider("{\"sort\":\"throughput\"}"), 0);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_THROUGHPUT);
}

static void test_nulls_are_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse_provider("{\"order\":null,\"only\":null,\"ignore\":null,"
                                    "\"allow_fallbacks\":null,\"sort\":null,\"max_price\":null,"
                                    "\"data_collection\":null,\"zdr\":null,"
                                    "\"require_parameters\":null}"),
                     0);
    assert_defaults(&prefs);
    assert_int_equal(
        parse_provider("{\"max_price\":{\"prompt\":null,\"completion\":null},\"order\":[]}"), 0);
    assert_defaults(&prefs);
    assert_int_equal(parse_provider("{\"sort\":{\"by\":null,\"partition\":null}}"), 0);
    assert_defaults(&prefs);
}

static void expect_error(const char *provider, const char *want)
{
    int rc = parse_provider(provider);
    if (rc != LX_EJSON)
        fail_msg("provider %s: rc %d, want LX_EJSON", provider, rc);
    if (strcmp(err, want) != 0)
        fail_msg("provider %s:\n  got  %s\n  want %s", provider, err, want);
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_error("{\"order\":\"a\"}", "provider.order must be an array of strings");
    expect_error("{\"order\":[\"a\",1]}", "provider.order must be an array of strings");
    expect_error("{\"only\":{}}", "provider.only must be an array of strings");
    expect_error("{\"ignore\":[null]}", "provider.ignore must be an array of strings");
    expect_error("{\"allow_fallbacks\":\"no\"}", "provider.allow_fallbacks must be a boolean");
    expect_error("{\"allow_fallbacks\":0}", "provider.allow_fallbacks must be a boolean");
    expect_error("{\"zdr\":[]}", "provider.zdr must be a boolean");
    expect_error("{\"require_parameters\":1}", "provider.require_parameters must be a boolean");
    expect_error("{\"sort\":\"fastest\"}",
                 "provider.sort must be \"price\", \"throughput\" or \"latency\"");
    expect_error("{\"sort\":\"Price\"}",
                 "provider.sort must be \"price\", \"throughput\" or \"latency\"");
    expect_error("{\"sort\":3}", "provider.sort must be \"price\", \"throughput\" or "
                                 "\"latency\", or an object {by, partition}");
    expect_error("{\"sort\":{\"by\":\"cheap\"}}",
                 "provider.sort.by must be \"price\", \"throughput\" or \"latency\"");
    expect_error("{\"sort\":{\"by\":\"price\",\"partition\":\"models\"}}",
                 "provider.sort.partition must be \"model\" or \"none\"");
    expect_error("{\"sort\":{\"partition\":true}}",
                 "provider.sort.partition must be \"model\" or \"none\"");
    expect_error("{\"max_price\":5}", "provider.max_price must be an object {prompt, completion}");
    expect_error("{\"max_price\":{\"prompt\":-1}}",
                 "provider.max_price.prompt must be a number >= 0");
    expect_error("{\"max_price\":{\"completion\":\"cheap\"}}",
                 "provider.max_price.completion must be a number >= 0");
    expect_error("{\"max_price\":{\"completion\":\"inf\"}}",
                 "provider.max_price.completion must be a number >= 0");
    expect_error("{\"max_price\":{\"prompt\":true}}",
                 "provider.max_price.prompt must be a number >= 0");
    expect_error("{\"data_collection\":\"never\"}",
                 "provider.data_collection must be \"allow\" or \"deny\"");
    expect_error("{\"data_collection\":false}",
                 "provider.data_collection must be \"allow\" or \"deny\"");
    expect_error("{\"zdr\":true,\"zdr\":false}", "duplicate member provider.zdr");
    expect_error("{\"sort\":{\"by\":\"price\",\"by\":\"latency\"}}",
                 "duplicate member provider.sort.by");

    /* a small error buffer truncates, never overflows */
    char small[8];
    assert_int_equal(lx_body_scan("{\"provider\":{\"zdr\":1}}", 22, &scan), 0);
    assert_int_equal(
        lx_prefs_parse("{\"provider\":{\"zdr\":1}}", 22, &scan, &prefs, small, sizeof(small)),
        LX_EJSON);
    assert_string_equal(small, "provide");
}

static void test_sort_object(void **state)
{
    (void)state;
    assert_int_equal(parse_provider("{\"sort\":{\"by\":\"latency\",\"partition\":\"none\"}}"), 0);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_LATENCY);
    assert_int_equal(prefs.sort_source, LX_PREFS_SORT_EXPLICIT);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_NONE);
    assert_int_equal(parse_provider("{\"sort\":{\"by\":\"throughput\"}}"), 0);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_THROUGHPUT);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_MODEL);
    assert_int_equal(
        parse_provider("{\"sort\":{\"partition\":\"model\",\"by\":\"price\",\"x\":[1,{}]}}"), 0);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_PRICE);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_MODEL);
}

static void test_max_price(void **state)
{
    (void)state;
    assert_int_equal(parse_provider("{\"max_price\":{\"prompt\":0,\"request\":0.01,"
                                    "\"image\":{\"a\":1},\"audio\":\"x\"}}"),
                     0);
    assert_true(prefs.has_max_prompt);
    assert_true(prefs.max_prompt == 0.0);
    assert_false(prefs.has_max_completion);
    /* OpenRouter's schema types prices as strings */
    assert_int_equal(parse_provider("{\"max_price\":{\"prompt\":\"0.25\",\"completion\":\"3\"}}"),
                     0);
    assert_true(prefs.max_prompt == 0.25);
    assert_true(prefs.max_completion == 3.0);
    assert_int_equal(parse_provider("{\"max_price\":{}}"), 0);
    assert_false(prefs.has_max_prompt);
}

static void test_route(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"route\":\"fallback\"}"), 0);
    assert_defaults(&prefs);
    assert_int_equal(parse("{\"route\":\"fallback\",\"provider\":{\"allow_fallbacks\":false}}"), 0);
    assert_false(prefs.allow_fallbacks); /* provider wins */
    assert_int_equal(parse("{\"route\":\"sort\",\"provider\":{\"sort\":\"price\"}}"), 0);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_NONE);
    assert_int_equal(
        parse("{\"provider\":{\"sort\":{\"by\":\"price\",\"partition\":\"model\"}},\"route\":"
              "\"sort\"}"),
        0);
    assert_int_equal(prefs.partition, LX_PREFS_PARTITION_MODEL); /* provider wins */
    assert_int_equal(parse("{\"route\":\"random\"}"), LX_EJSON);
    assert_string_equal(err, "route must be \"fallback\" or \"sort\"");
    assert_int_equal(parse("{\"route\":\"\"}"), LX_EJSON);
    assert_string_equal(err, "route must be \"fallback\" or \"sort\"");
}

static void test_unknown_members(void **state)
{
    (void)state;
    assert_int_equal(
        parse_provider("{\"quantizations\":[\"fp8\",\"int4\"],\"x\":{\"a\":[1,{\"b\":\"}]\\\"\"}],"
                       "\"c\":null},\"preferred_min_throughput\":{\"p50\":10},\"order\":[\"a\"],"
                       "\"enforce_distillable_text\":true,\"y\":-1.5e3,\"z\":\"[\"}"),
        0);
    assert_int_equal(prefs.order.n, 1);
    assert_view(prefs.order.name[0], "a");
    /* an escaped key is compared raw: it is an unknown member */
    assert_int_equal(parse_provider("{\"zd\\u0072\":\"not a bool\"}"), 0);
    assert_false(prefs.zdr);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(parse_provider("{\"order\":[\"Deep\\u0049nfra\",\"a\\\"b\",\"Together\"],"
                                    "\"ignore\":[\"google-vertex\"]}"),
                     0);
    assert_int_equal(prefs.order.n, 3);
    assert_true(prefs.order.name[0].escaped);
    assert_false(prefs.order.name[2].escaped);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "deepinfra", 9), 0);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "DEEPINFRA/turbo", 15), 0);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "deepinfrax", 10), -1);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "deepinfr", 8), -1);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "a\"b", 3), 1);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "together", 8), 2);
    assert_int_equal(lx_prefs_list_find(&prefs.order, "fireworks", 9), -1);
    assert_int_equal(lx_prefs_list_find(&prefs.ignore, "google-vertex/us-east5", 22), 0);
    assert_int_equal(lx_prefs_list_find(&prefs.ignore, "google", 6), -1);
    assert_int_equal(lx_prefs_list_find(&prefs.only, "anything", 8), -1);
}

static void test_too_many(void **state)
{
    (void)state;
    char provider[1024];
    size_t o = 0;
    o += (size_t)snprintf(provider + o, sizeof(provider) - o, "{\"only\":[");
    for (int i = 0; i < LX_PREFS_MAX_NAMES; i++)
        o += (size_t)snprintf(provider + o, sizeof(provider) - o, "%s\"p%d\"", i ? "," : "", i);
    snprintf(provider + o, sizeof(provider) - o, "]}");
    assert_int_equal(parse_provider(provider), 0);
    assert_int_equal(prefs.only.n, LX_PREFS_MAX_NAMES);
    assert_view(prefs.only.name[15], "p15");
    snprintf(provider + o, sizeof(provider) - o, ",\"p16\"]}");
    expect_error(provider, "provider.only may list at most 16 providers");

    /* names too long, raw or once decoded */
    char longname[300];
    memset(longname, 'a', LX_PREFS_NAME_MAX);
    longname[LX_PREFS_NAME_MAX] = '\0';
    snprintf(provider, sizeof(provider), "{\"order\":[\"%s\"]}", longname);
    assert_int_equal(parse_provider(provider), 0);
    snprintf(provider, sizeof(provider), "{\"order\":[\"%sb\"]}", longname);
    expect_error(provider, "provider.order entries must be at most 128 bytes");
    snprintf(provider, sizeof(provider), "{\"order\":[\"%s\\u00e9\"]}", longname + 1);
    expect_error(provider, "provider.order entries must be at most 128 bytes");
}

static void test_suffix(void **state)
{
    (void)state;
    lx_prefs_t p;
    lx_prefs_init(&p);
    const char *id = "meta/llama:nitro";
    size_t len = strlen(id);
    lx_prefs_model_suffix(id, &len, &p);
    assert_int_equal(len, strlen("meta/llama"));
    assert_int_equal(p.sort, LX_PREFS_SORT_THROUGHPUT);
    assert_int_equal(p.sort_source, LX_PREFS_SORT_SUFFIX);
    /* a later :floor does not override the first suffix, but is stripped */
    id = "other:floor";
    len = strlen(id);
    lx_prefs_model_suffix(id, &len, &p);
    assert_int_equal(len, 5);
    assert_int_equal(p.sort, LX_PREFS_SORT_THROUGHPUT);

    lx_prefs_init(&p);
    id = "m:floor";
    len = strlen(id);
    lx_prefs_model_suffix(id, &len, &p);
    assert_int_equal(len, 1);
    assert_int_equal(p.sort, LX_PREFS_SORT_PRICE);

    /* explicit sort wins */
    assert_int_equal(parse_provider("{\"sort\":\"latency\"}"), 0);
    id = "m:nitro";
    len = strlen(id);
    lx_prefs_model_suffix(id, &len, &prefs);
    assert_int_equal(len, 1);
    assert_int_equal(prefs.sort, LX_PREFS_SORT_LATENCY);
    assert_int_equal(prefs.sort_source, LX_PREFS_SORT_EXPLICIT);

    /* no suffix, other suffixes, the bare suffix, NULL prefs */
    lx_prefs_init(&p);
    const char *same[] = {"m", "m:free", "m:nitrox", ":nitro", "nitro", ""};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        len = strlen(same[i]);
        lx_prefs_model_suffix(same[i], &len, &p);
        assert_int_equal(len, strlen(same[i]));
    }
    assert_int_equal(p.sort_source, LX_PREFS_SORT_DEFAULT);
    len = 7;
    lx_prefs_model_suffix("m:floor", &len, NULL);
    assert_int_equal(len, 1);
    /* only the given length counts */
    len = 3;
    lx_prefs_model_suffix("m:nitro", &len, &p);
    assert_int_equal(len, 3);
}

static void test_request_params(void **state)
{
    (void)state;
    const char *json =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"{\\\"tools\\\":1}\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
        "\"temperature\":null,\"top_p\":0.9,\"stream\":true,\"stream_options\":null,"
        "\"provider\":{\"require_parameters\":true},\"models\":[\"a\"],\"route\":\"fallback\","
        "\"session_id\":\"s\",\"user\":\"u\",\"response_format\":{\"type\":\"json_object\"},"
        "\"stop\":[\"]\"],\"usage\":{\"include\":true},\"plugins\":[],\"seed\":1,\"seed\":2}";
    assert_int_equal(parse(json), 0);
    assert_true(prefs.require_parameters);
    assert_int_equal(lx_prefs_request_params(body, strlen(body), &prefs, err, sizeof(err)), 0);
    assert_int_equal(prefs.n_params, 5);
    assert_view(prefs.params[0], "tools");
    assert_view(prefs.params[1], "top_p");
    assert_view(prefs.params[2], "response_format");
    assert_view(prefs.params[3], "stop");
    assert_view(prefs.params[4], "seed");

    assert_int_equal(parse("{ }"), 0);
    assert_int_equal(lx_prefs_request_params(body, strlen(body), &prefs, err, sizeof(err)), 0);
    assert_int_equal(prefs.n_params, 0);

    /* 32 parameters fit, 33 do not */
    char big[2048];
    size_t o = 0;
    o += (size_t)snprintf(big + o, sizeof(big) - o, "{\"model\":\"m\"");
    for (int i = 0; i < LX_PREFS_MAX_PARAMS; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, ",\"k%d\":[%d]", i, i);
    snprintf(big + o, sizeof(big) - o, "}");
    assert_int_equal(parse(big), 0);
    assert_int_equal(lx_prefs_request_params(body, strlen(body), &prefs, err, sizeof(err)), 0);
    assert_int_equal(prefs.n_params, LX_PREFS_MAX_PARAMS);
    assert_view(prefs.params[31], "k31");
    snprintf(big + o, sizeof(big) - o, ",\"extra\":1}");
    assert_int_equal(parse(big), 0);
    assert_int_equal(lx_prefs_request_params(body, strlen(body), &prefs, err, sizeof(err)),
                     LX_EJSON);
    assert_string_equal(err, "provider.require_parameters: the request has more than 32 "
                             "parameters");

    /* not an object */
    assert_int_equal(lx_prefs_request_params("[1]", 3, &prefs, err, sizeof(err)), LX_EJSON);
}

/* A span that does not fit the body is refused, never read. */
static void test_bad_span(void **state)
{
    (void)state;
    lx_body_scan_t s;
    memset(&s, 0, sizeof(s));
    s.has_provider = true;
    s.provider.off = 2;
    s.provider.len = 100;
    assert_int_equal(lx_prefs_parse("{}", 2, &s, &prefs, err, sizeof(err)), LX_EJSON);
    /* truncated provider bytes (no scan): an error, not a read past the span */
    const char *trunc = "{\"provider\":{\"order\":[\"a\"";
    s.provider.off = 12;
    s.provider.len = (uint32_t)strlen(trunc) - 12;
    assert_int_equal(lx_prefs_parse(trunc, strlen(trunc), &s, &prefs, err, sizeof(err)), LX_EJSON);
}

/* Appends <unit> to b[*o] (joined by <sep>) until *o passes <target>. */
static void fill(char *b, size_t *o, const char *unit, const char *sep, size_t target)
{
    size_t ul = strlen(unit), sl = strlen(sep);
    for (size_t k = 0; *o < target; k++) {
        if (k > 0) {
            memcpy(b + *o, sep, sl);
            *o += sl;
        }
        memcpy(b + *o, unit, ul);
        *o += ul;
    }
}

/*
 * Hostile provider objects and bodies, a few MB each: the preferences are read in time linear
 * in the body (this test takes well under a second; anything quadratic in the members, keys or
 * depth would run past the CTest TIMEOUT) and give the right answer.
 */
static void test_hostile_shapes(void **state)
{
    (void)state;
    size_t cap = 8u << 20, o;
    char *b = malloc(cap);
    assert_non_null(b);
    char e[160];
    lx_prefs_t p;

    /* a million unknown members, the same key each time, with sort given once at the end */
    o = (size_t)sprintf(b, "{\"model\":\"m\",\"provider\":{");
    fill(b, &o, "\"zz\":[0]", ",", 4u << 20);
    o += (size_t)sprintf(b + o, ",\"sort\":\"price\"}}");
    assert_int_equal(lx_body_scan(b, o, &scan), 0);
    assert_int_equal(lx_prefs_parse(b, o, &scan, &p, e, sizeof(e)), 0);
    assert_int_equal(p.sort, LX_PREFS_SORT_PRICE);

    /* nesting at the body's limit, many times over, in an unknown member and in max_price */
    for (int in_price = 0; in_price < 2; in_price++) {
        size_t block = LX_BODY_MAX_DEPTH - 4;
        o = (size_t)sprintf(b, "{\"provider\":{%s\"x\":[", in_price ? "\"max_price\":{" : "");
        for (size_t r = 0; o < (4u << 20); r++) {
            if (r > 0)
                b[o++] = ',';
            memset(b + o, '[', block);
            o += block;
            memset(b + o, ']', block);
            o += block;
        }
        o += (size_t)sprintf(b + o, "]%s,\"zdr\":true}}", in_price ? "}" : "");
        if (lx_body_scan(b, o, &scan) != 0)
            fail_msg("%s", scan.error);
        assert_int_equal(lx_prefs_parse(b, o, &scan, &p, e, sizeof(e)), 0);
        assert_true(p.zdr);
    }

    /* require_parameters over a body of a million duplicate top-level keys */
    o = (size_t)sprintf(b, "{\"provider\":{\"require_parameters\":true},");
    fill(b, &o, "\"temperature\":1,\"top_p\":1", ",", 4u << 20);
    o += (size_t)sprintf(b + o, "}");
    assert_int_equal(lx_body_scan(b, o, &scan), 0);
    assert_int_equal(lx_prefs_parse(b, o, &scan, &p, e, sizeof(e)), 0);
    assert_int_equal(lx_prefs_request_params(b, o, &p, e, sizeof(e)), 0);
    assert_int_equal(p.n_params, 2);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_nulls_are_defaults),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_sort_object),
        cmocka_unit_test(test_max_price),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_unknown_members),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_request_params),
        cmocka_unit_test(test_bad_span),
        cmocka_unit_test(test_hostile_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
