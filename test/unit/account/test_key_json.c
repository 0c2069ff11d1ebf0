/*
 * test_key_json.c - the management API's JSON (account/key_json.h): every bad body of the
 * issue (malformed JSON, unknown and repeated members, wrong types, negative and absurd
 * limits, a 10 MB name, deep nesting, invalid UTF-8), the good ones, and the answers, read
 * back with jsmn (an independent reader) and checked member by member against the types
 * OpenRouter's schema (and its TypeScript SDK's validation) requires.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "account/key_json.h"
#include "core/clock.h"
#include "core/status.h"
#include "store/money.h"

/* The accounting clock of these tests: 2026-01-01T00:00:00Z. */
#define NOW_S INT64_C(1767225600)

static int64_t fixed_now(void *arg)
{
    (void)arg;
    return NOW_S * 1000000;
}

static int setup(void **state)
{
    (void)state;
    lx_clock_override(fixed_now, NULL);
    return 0;
}

static lx_key_input_t in;
static char err[256];

static int parse_mode(const char *body, enum lx_key_json_mode mode)
{
    memset(err, 'x', sizeof(err));
    err[sizeof(err) - 1] = '\0';
    lx_key_input_dispose(&in);
    int rc = lx_key_json_parse(body, strlen(body), mode, &in, err, sizeof(err));
    if (rc != 0) {
        /* a refusal leaves nothing behind and always says why */
        assert_int_equal(in.set, 0);
        assert_null(in.name);
        assert_null(in.models);
        assert_null(in.provider);
        assert_true(err[0] != '\0' && strlen(err) < sizeof(err));
    } else {
        assert_string_equal(err, "");
    }
    return rc;
}

static int parse(const char *body)
{
    return parse_mode(body, LX_KEY_JSON_CREATE);
}

/* Refused with <code> and a message containing <what>. */
static void refused(const char *body, int code, const char *what)
{
    int rc = parse(body);
    if (rc != code || strstr(err, what) == NULL)
        fail_msg("%s: rc %d (want %d), message \"%s\" (want \"%s\")", body, rc, code, err, what);
}

static void refused_patch(const char *body, int code, const char *what)
{
    int rc = parse_mode(body, LX_KEY_JSON_UPDATE);
    if (rc != code || strstr(err, what) == NULL)
        fail_msg("%s: rc %d (want %d), message \"%s\" (want \"%s\")", body, rc, code, err, what);
}

static int teardown(void **state)
{
    (void)state;
    lx_key_input_dispose(&in);
    lx_clock_override(NULL, NULL);
    return 0;
}

/* ---- good bodies ------------------------------------------------------------------------ */

static void test_parse_full(void **state)
{
    (void)state;
    const char *body =
        "{\"name\":\"Team A\",\"disabled\":true,\"limit\":12.5,"
        "\"limit_reset\":\"weekly\",\"expires_at\":\"2027-12-31T23:59:59Z\","
        "\"include_byok_in_limit\":true,\"models\":[\"meta-llama/*\",\"openai/gpt-4o\"],"
        "\"provider\":{\"order\":[\"a\",\"b\"],\"sort\":\"price\"},"
        "\"rate_limit\":{\"rpm\":60,\"tpm\":100000,\"concurrency\":4}}";
    assert_int_equal(parse(body), 0);
    assert_int_equal(in.set, LX_KEY_F_NAME | LX_KEY_F_DISABLED | LX_KEY_F_LIMIT |
                                 LX_KEY_F_LIMIT_RESET | LX_KEY_F_EXPIRES | LX_KEY_F_MODELS |
                                 LX_KEY_F_PROVIDER | LX_KEY_F_RATE_LIMIT);
    assert_string_equal(in.name, "Team A");
    assert_true(in.disabled);
    assert_true(in.has_limit);
    assert_int_equal(in.limit, 12500000);
    assert_int_equal(in.limit_reset, LX_PERIOD_WEEK);
    assert_int_equal(in.expires_at, 1830297599);
    assert_int_equal(in.n_models, 2);
    assert_string_equal(in.models[0], "meta-llama/*");
    assert_string_equal(in.models[1], "openai/gpt-4o");
    assert_string_equal(in.provider, "{\"order\":[\"a\",\"b\"],\"sort\":\"price\"}");
    assert_int_equal(in.rpm, 60);
    assert_int_equal(in.tpm, 100000);
    assert_int_equal(in.concurrency, 4);
}

static void test_parse_minimal_and_nulls(void **state)
{
    (void)state;
    assert_int_equal(parse(" {\"name\":\"k\"}\n"), 0);
    assert_int_equal(in.set, LX_KEY_F_NAME);
    assert_false(in.has_limit);
    assert_int_equal(parse("{\"name\":\"k\",\"limit\":null,\"limit_reset\":null,\"expires_at\":"
                           "null,\"models\":null,\"provider\":null,\"rate_limit\":null}"),
                     0);
    assert_int_equal(in.set, LX_KEY_F_NAME | LX_KEY_F_LIMIT | LX_KEY_F_LIMIT_RESET |
                                 LX_KEY_F_EXPIRES | LX_KEY_F_MODELS | LX_KEY_F_PROVIDER |
                                 LX_KEY_F_RATE_LIMIT);
    assert_false(in.has_limit);
    assert_int_equal(in.limit_reset, LX_PERIOD_TOTAL);
    assert_int_equal(in.expires_at, 0);
    assert_int_equal(in.n_models, 0);
    assert_null(in.provider);
    assert_int_equal(in.rpm + in.tpm + in.concurrency, 0);
    /* an empty allowlist is every model; rate_limit members may be absent or null */
    assert_int_equal(parse("{\"name\":\"k\",\"models\":[],\"rate_limit\":{\"tpm\":null,"
                           "\"rpm\":0}}"),
                     0);
    assert_int_equal(in.n_models, 0);
    assert_int_equal(in.rpm + in.tpm + in.concurrency, 0);
    assert_true(in.set & LX_KEY_F_RATE_LIMIT);
}

static void test_parse_limits(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"k\",\"limit\":0}"), 0);
    assert_true(in.has_limit);
    assert_int_equal(in.limit, 0);
    assert_int_equal(parse("{\"name\":\"k\",\"limit\":1000000000}"), 0);
    assert_int_equal(in.limit, LX_MONEY_MAX);
    assert_int_equal(parse("{\"name\":\"k\",\"limit\":0.000001}"), 0);
    assert_int_equal(in.limit, 1);
    assert_int_equal(parse("{\"name\":\"k\",\"limit\":2.5E2}"), 0);
    assert_int_equal(in.limit, 250000000);
    assert_int_equal(parse("{\"name\":\"k\",\"rate_limit\":{\"rpm\":1000000000}}"), 0);
    assert_int_equal(in.rpm, 1000000000);
    for (int p = 1; p <= 3; p++) {
        const char *names[] = {"", "daily", "weekly", "monthly"};
        char body[96];
        snprintf(body, sizeof(body), "{\"name\":\"k\",\"limit_reset\":\"%s\"}", names[p]);
        assert_int_equal(parse(body), 0);
        assert_int_equal(in.limit_reset, p);
    }
}

static void test_parse_expires_at(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"k\",\"expires_at\":\"2026-01-01T00:00:01Z\"}"), 0);
    assert_int_equal(in.expires_at, NOW_S + 1);
    assert_int_equal(parse("{\"name\":\"k\",\"expires_at\":\"2027-12-31T23:59:59.000Z\"}"), 0);
    assert_int_equal(in.expires_at, 1830297599);
    assert_int_equal(parse("{\"name\":\"k\",\"expires_at\":\"2027-12-31T23:59:59+00:00\"}"), 0);
    assert_int_equal(in.expires_at, 1830297599);
    refused("{\"name\":\"k\",\"expires_at\":\"2027-12-31T23:59:59+01:00\"}", LX_EINVAL,
            "expires_at");
    refused("{\"name\":\"k\",\"expires_at\":\"2027-12-31T23:59:59\"}", LX_EINVAL, "UTC");
    refused("{\"name\":\"k\",\"expires_at\":\"tomorrow\"}", LX_EINVAL, "expires_at");
    refused("{\"name\":\"k\",\"expires_at\":\"\"}", LX_EINVAL, "expires_at");
    refused("{\"name\":\"k\",\"expires_at\":1830297599}", LX_EINVAL, "expires_at");
    refused("{\"name\":\"k\",\"expires_at\":\"2026-01-01T00:00:00Z\"}", LX_EINVAL, "future");
    refused("{\"name\":\"k\",\"expires_at\":\"2020-01-01T00:00:00Z\"}", LX_EINVAL, "future");
    char longer[400];
    snprintf(longer, sizeof(longer),
             "{\"name\":\"k\",\"expires_at\":\"2027-12-31T23:59:59.%0200dZ\"}", 0);
    refused(longer, LX_EINVAL, "expires_at");
    /* PATCH never takes it, as OpenRouter */
    refused_patch("{\"expires_at\":\"2027-12-31T23:59:59Z\"}", LX_EINVAL, "expires_at");
    refused_patch("{\"expires_at\":null}", LX_EINVAL, "expires_at");
}

static void test_parse_patch(void **state)
{
    (void)state;
    assert_int_equal(parse_mode("{}", LX_KEY_JSON_UPDATE), 0);
    assert_int_equal(in.set, 0);
    assert_int_equal(parse_mode("{\"disabled\":false,\"limit\":3}", LX_KEY_JSON_UPDATE), 0);
    assert_int_equal(in.set, LX_KEY_F_DISABLED | LX_KEY_F_LIMIT);
    assert_false(in.disabled);
    assert_int_equal(in.limit, 3000000);
    assert_int_equal(parse_mode("{\"name\":\"renamed\",\"models\":[\"a/*\"]}", LX_KEY_JSON_UPDATE),
                     0);
    assert_int_equal(in.set, LX_KEY_F_NAME | LX_KEY_F_MODELS);
    /* a create needs a name; an update does not */
    refused("{}", LX_EINVAL, "name is required");
    refused("{\"limit\":1}", LX_EINVAL, "name is required");
}

/* ---- names ------------------------------------------------------------------------------ */

static void test_parse_names(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82\"}"),
                     0);
    assert_string_equal(in.name, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82");
    assert_int_equal(parse("{\"name\":\"a\\u00e9\\\"\\\\\\/\\ud83d\\ude42\"}"), 0);
    assert_string_equal(in.name, "a\xc3\xa9\"\\/\xf0\x9f\x99\x82");
    /* 256 bytes is the most */
    char body[1024];
    snprintf(body, sizeof(body), "{\"name\":\"%0256d\"}", 0);
    assert_int_equal(parse(body), 0);
    assert_int_equal(strlen(in.name), LX_KEY_NAME_MAX);
    snprintf(body, sizeof(body), "{\"name\":\"%0257d\"}", 0);
    refused(body, LX_EINVAL, "name");
    /* 86 × "\u00e9" is 516 raw bytes but 172 decoded: fine; 129 of them is 258: too long */
    char *p = body + sprintf(body, "{\"name\":\"");
    for (int i = 0; i < 129; i++)
        p += sprintf(p, "\\u00e9");
    sprintf(p, "\"}");
    refused(body, LX_EINVAL, "name");
    refused("{\"name\":\"\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\\nb\"}", LX_EINVAL, "control");
    refused("{\"name\":\"a\\u0000b\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\\u001fb\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\x7f\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\\u007f\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\xc2\x85\"}", LX_EINVAL, "name"); /* C1 NEL */
    refused("{\"name\":\"a\\u0085\"}", LX_EINVAL, "name");
    refused("{\"name\":\"a\tb\"}", LX_EJSON, "invalid JSON"); /* raw control: not JSON */
    /* invalid UTF-8: a stray continuation, a truncated sequence, an overlong '/', a
     * surrogate, a code point above U+10FFFF */
    refused("{\"name\":\"a\x80\"}", LX_EINVAL, "UTF-8");
    refused("{\"name\":\"a\xe6\x97\"}", LX_EINVAL, "UTF-8");
    refused("{\"name\":\"\xc0\xaf\"}", LX_EINVAL, "UTF-8");
    refused("{\"name\":\"\xed\xa0\x80\"}", LX_EINVAL, "UTF-8");
    refused("{\"name\":\"\xf4\x90\x80\x80\"}", LX_EINVAL, "UTF-8");
    refused("{\"name\":\"\xff\"}", LX_EINVAL, "UTF-8");
}

/* A 10 MB name is refused at once, without a copy of it. */
static void test_parse_huge_name(void **state)
{
    (void)state;
    size_t n = 10u << 20;
    char *body = malloc(n + 32);
    assert_non_null(body);
    memcpy(body, "{\"name\":\"", 9);
    memset(body + 9, 'a', n);
    memcpy(body + 9 + n, "\"}", 3);
    clock_t t0 = clock();
    int rc = lx_key_json_parse(body, n + 11, LX_KEY_JSON_CREATE, &in, err, sizeof(err));
    assert_int_equal(rc, LX_EINVAL);
    assert_non_null(strstr(err, "name"));
    /* the same with escapes, which decode 6 bytes to 1 */
    for (size_t i = 0; i + 6 <= n; i += 6)
        memcpy(body + 9 + i, "\\u0041", 6);
    memset(body + 9 + n / 6 * 6, 'a', n % 6);
    rc = lx_key_json_parse(body, n + 11, LX_KEY_JSON_CREATE, &in, err, sizeof(err));
    assert_int_equal(rc, LX_EINVAL);
    /* unterminated: malformed JSON */
    rc = lx_key_json_parse(body, n + 9, LX_KEY_JSON_CREATE, &in, err, sizeof(err));
    assert_int_equal(rc, LX_EJSON);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 5.0);
    free(body);
}

/* ---- malformed JSON, members and types ---------------------------------------------------- */

static void test_parse_malformed(void **state)
{
    (void)state;
    refused("", LX_EJSON, "JSON");
    refused("   ", LX_EJSON, "JSON");
    refused("{", LX_EJSON, "ends early");
    refused("{\"name\":", LX_EJSON, "ends early");
    refused("{\"name\":\"k\"", LX_EJSON, "ends early");
    refused("{\"name\":\"k\",}", LX_EJSON, "invalid JSON");
    refused("{\"name\":}", LX_EJSON, "invalid JSON");
    refused("{\"name\" \"k\"}", LX_EJSON, "invalid JSON");
    refused("{'name':'k'}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\"} x", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\"}{}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"limit\":01}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"limit\":1.}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"disabled\":tru}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\\x\"}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\\u12\"}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"models\":[\"a\",]}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"provider\":{\"sort\":}}", LX_EJSON, "invalid JSON");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\" 1}}", LX_EJSON, "invalid JSON");
    refused("[{\"name\":\"k\"}]", LX_EINVAL, "object");
    refused("null", LX_EINVAL, "object");
    refused("\"name\"", LX_EINVAL, "object");
    /* a NUL inside the body is a byte the grammar does not allow */
    int rc = lx_key_json_parse("{\"name\":\"k\"}\0", 13, LX_KEY_JSON_CREATE, &in, err, sizeof(err));
    assert_int_equal(rc, LX_EJSON);
}

static void test_parse_deep(void **state)
{
    (void)state;
    size_t n = 100000;
    char *body = malloc(2 * n + 64);
    assert_non_null(body);
    /* nesting at the top, and inside provider (whose unknown members prefs ignores) */
    memset(body, '[', n);
    memset(body + n, ']', n);
    body[2 * n] = '\0';
    refused(body, LX_EINVAL, "object");
    body[0] = '{';
    refused(body, LX_EJSON, "invalid JSON");
    int k = sprintf(body, "{\"name\":\"k\",\"provider\":{\"x\":");
    memset(body + k, '[', n);
    memset(body + k + n, ']', n);
    strcpy(body + k + 2 * n, "}}");
    refused(body, LX_EJSON, "nested too deeply");
    /* moderate nesting inside provider is fine */
    assert_int_equal(parse("{\"name\":\"k\",\"provider\":{\"x\":[[[[{\"y\":[1]}]]]]}}"), 0);
    free(body);
}

static void test_parse_unknown_and_duplicates(void **state)
{
    (void)state;
    refused("{\"name\":\"k\",\"foo\":1}", LX_EINVAL, "unknown member \"foo\"");
    refused("{\"foo\":{\"a\":[1,2]},\"name\":\"k\"}", LX_EINVAL, "\"foo\"");
    refused("{\"name\":\"k\",\"workspace_id\":\"w\"}", LX_EINVAL, "workspace_id");
    refused("{\"name\":\"k\",\"Name\":\"k\"}", LX_EINVAL, "Name");
    refused("{\"name\":\"k\",\"\":1}", LX_EINVAL, "unknown member \"\"");
    /* the key is shown cut and printable */
    char body[512];
    snprintf(body, sizeof(body), "{\"%0200d\\n\":1}", 0);
    refused(body, LX_EINVAL, "...");
    assert_true(strlen(err) < 80);
    refused("{\"\\u0001\\\"\":1}", LX_EINVAL, "unknown member");
    assert_null(strchr(err, '\1'));
    /* repeated members, also spelled with an escape */
    refused("{\"name\":\"a\",\"name\":\"b\"}", LX_EINVAL, "name is given twice");
    refused("{\"name\":\"a\",\"n\\u0061me\":\"b\"}", LX_EINVAL, "name is given twice");
    refused("{\"name\":\"a\",\"limit\":1,\"limit\":null}", LX_EINVAL, "limit is given twice");
    refused("{\"name\":\"a\",\"models\":[],\"models\":[]}", LX_EINVAL, "models");
    refused("{\"name\":\"a\",\"rate_limit\":{\"rpm\":1,\"rpm\":2}}", LX_EINVAL,
            "rate_limit.rpm is given twice");
    refused("{\"name\":\"a\",\"rate_limit\":{\"rpm\":1,\"burst\":2}}", LX_EINVAL,
            "unknown member rate_limit.burst");
    refused("{\"name\":\"a\",\"provider\":{\"sort\":\"price\",\"sort\":\"price\"}}", LX_EINVAL,
            "provider");
    /* a NUL inside a key or a value does not cut it short */
    refused("{\"name\\u0000x\":\"k\"}", LX_EINVAL, "unknown member");
    refused("{\"name\":\"k\",\"limit_reset\":\"daily\\u0000x\"}", LX_EINVAL, "limit_reset");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\\u0000\":1}}", LX_EINVAL, "unknown member");
    /* an escaped key that decodes to a member is that member */
    assert_int_equal(parse("{\"n\\u0061me\":\"k\"}"), 0);
    assert_string_equal(in.name, "k");
}

static void test_parse_wrong_types(void **state)
{
    (void)state;
    refused("{\"name\":1}", LX_EINVAL, "name must be a string");
    refused("{\"name\":null}", LX_EINVAL, "name must be a string");
    refused("{\"name\":[\"k\"]}", LX_EINVAL, "name must be a string");
    refused("{\"name\":\"k\",\"disabled\":\"true\"}", LX_EINVAL, "disabled");
    refused("{\"name\":\"k\",\"disabled\":null}", LX_EINVAL, "disabled");
    refused("{\"name\":\"k\",\"disabled\":1}", LX_EINVAL, "disabled");
    refused("{\"name\":\"k\",\"include_byok_in_limit\":\"no\"}", LX_EINVAL,
            "include_byok_in_limit");
    refused("{\"name\":\"k\",\"limit\":\"5\"}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":true}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":{}}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit_reset\":1}", LX_EINVAL, "limit_reset");
    refused("{\"name\":\"k\",\"limit_reset\":\"yearly\"}", LX_EINVAL, "limit_reset");
    refused("{\"name\":\"k\",\"limit_reset\":\"Daily\"}", LX_EINVAL, "limit_reset");
    refused("{\"name\":\"k\",\"models\":\"a/*\"}", LX_EINVAL, "models");
    refused("{\"name\":\"k\",\"models\":{}}", LX_EINVAL, "models");
    refused("{\"name\":\"k\",\"models\":[\"a\",1]}", LX_EINVAL, "models[1]");
    refused("{\"name\":\"k\",\"models\":[null]}", LX_EINVAL, "models[0]");
    refused("{\"name\":\"k\",\"models\":[[\"a\"]]}", LX_EINVAL, "models[0]");
    refused("{\"name\":\"k\",\"provider\":\"price\"}", LX_EINVAL, "provider");
    refused("{\"name\":\"k\",\"provider\":[]}", LX_EINVAL, "provider");
    refused("{\"name\":\"k\",\"rate_limit\":60}", LX_EINVAL, "rate_limit");
    refused("{\"name\":\"k\",\"rate_limit\":[60]}", LX_EINVAL, "rate_limit");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\":\"60\"}}", LX_EINVAL, "rate_limit.rpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"tpm\":true}}", LX_EINVAL, "rate_limit.tpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"concurrency\":{}}}", LX_EINVAL,
            "rate_limit.concurrency");
}

static void test_parse_absurd_limits(void **state)
{
    (void)state;
    refused("{\"name\":\"k\",\"limit\":-1}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":-0.5}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":1000000000.000001}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":1e10}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":1e400}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":99999999999999999999999999}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"limit\":0.0000001}", LX_EINVAL, "limit");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\":-1}}", LX_EINVAL, "rate_limit.rpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\":1.5}}", LX_EINVAL, "rate_limit.rpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\":1e3}}", LX_EINVAL, "rate_limit.rpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"tpm\":1000000001}}", LX_EINVAL, "rate_limit.tpm");
    refused("{\"name\":\"k\",\"rate_limit\":{\"concurrency\":4294967296}}", LX_EINVAL,
            "rate_limit.concurrency");
    refused("{\"name\":\"k\",\"rate_limit\":{\"rpm\":99999999999999999999}}", LX_EINVAL,
            "rate_limit.rpm");
}

static void test_parse_models_limits(void **state)
{
    (void)state;
    char *body = malloc(64 * 300 + 256);
    assert_non_null(body);
    char *p = body + sprintf(body, "{\"name\":\"k\",\"models\":[");
    for (int i = 0; i < LX_KEY_MODELS_MAX; i++)
        p += sprintf(p, "%s\"m/%d\"", i ? "," : "", i);
    strcpy(p, "]}");
    assert_int_equal(parse(body), 0);
    assert_int_equal(in.n_models, LX_KEY_MODELS_MAX);
    assert_string_equal(in.models[63], "m/63");
    strcpy(p, ",\"one-more\"]}");
    refused(body, LX_EINVAL, "more than 64");
    sprintf(body, "{\"name\":\"k\",\"models\":[\"%0256d\"]}", 0);
    assert_int_equal(parse(body), 0);
    sprintf(body, "{\"name\":\"k\",\"models\":[\"a\",\"%0257d\"]}", 0);
    refused(body, LX_EINVAL, "models[1]");
    refused("{\"name\":\"k\",\"models\":[\"\"]}", LX_EINVAL, "models[0]");
    refused("{\"name\":\"k\",\"models\":[\"a\\nb\"]}", LX_EINVAL, "models[0]");
    refused("{\"name\":\"k\",\"models\":[\"a\xff\"]}", LX_EINVAL, "models[0]");
    free(body);
}

/* priority: "interactive", "batch" or null (interactive), on create and on update; anything
 * else is refused naming the member. */
static void test_parse_priority(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"a\",\"priority\":\"batch\"}"), 0);
    assert_true(in.set & LX_KEY_F_PRIORITY);
    assert_int_equal(in.priority, LX_KEY_PRIORITY_BATCH);
    assert_int_equal(parse("{\"name\":\"a\",\"priority\":\"interactive\"}"), 0);
    assert_true(in.set & LX_KEY_F_PRIORITY);
    assert_int_equal(in.priority, LX_KEY_PRIORITY_INTERACTIVE);
    assert_int_equal(parse("{\"name\":\"a\",\"priority\":null}"), 0);
    assert_true(in.set & LX_KEY_F_PRIORITY);
    assert_int_equal(in.priority, LX_KEY_PRIORITY_INTERACTIVE);
    assert_int_equal(parse("{\"name\":\"a\"}"), 0); /* absent: not set */
    assert_false(in.set & LX_KEY_F_PRIORITY);
    /* keys and values compared decoded */
    assert_int_equal(parse("{\"name\":\"a\",\"pri\\u006frity\":\"b\\u0061tch\"}"), 0);
    assert_int_equal(in.priority, LX_KEY_PRIORITY_BATCH);
    assert_int_equal(parse_mode("{\"priority\":\"batch\"}", LX_KEY_JSON_UPDATE), 0);
    assert_int_equal(in.set, LX_KEY_F_PRIORITY);
    assert_int_equal(in.priority, LX_KEY_PRIORITY_BATCH);
    static const char *const bad[] = {"\"Batch\"", "\"\"", "\"batch \"",  "\"batch\\u0000\"", "1",
                                      "true",      "{}",   "[\"batch\"]", "\"low\""};
    char body[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "{\"name\":\"a\",\"priority\":%s}", bad[i]);
        refused(body, LX_EINVAL, "priority must be \"interactive\", \"batch\" or null");
    }
    refused_patch("{\"priority\":\"urgent\"}", LX_EINVAL, "priority must be");
    refused("{\"name\":\"a\",\"priority\":\"batch\",\"priority\":\"batch\"}", LX_EINVAL,
            "priority is given twice");
}

static void test_parse_provider(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"k\",\"provider\": { \"only\" : [\"x\"] ,\n\"zdr\":true} }"),
                     0);
    assert_string_equal(in.provider, "{ \"only\" : [\"x\"] ,\n\"zdr\":true}");
    /* members prefs does not know are kept (OpenRouter keeps adding some) */
    assert_int_equal(parse("{\"name\":\"k\",\"provider\":{\"quantizations\":[\"fp8\"]}}"), 0);
    refused("{\"name\":\"k\",\"provider\":{\"sort\":\"cheapest\"}}", LX_EINVAL, "provider.sort");
    refused("{\"name\":\"k\",\"provider\":{\"order\":\"a\"}}", LX_EINVAL, "provider.order");
    refused("{\"name\":\"k\",\"provider\":{\"max_price\":{\"prompt\":-1}}}", LX_EINVAL,
            "max_price");
    refused("{\"name\":\"k\",\"provider\":{\"allow_fallbacks\":\"yes\"}}", LX_EINVAL,
            "allow_fallbacks");
    refused("{\"name\":\"k\",\"provider\":{\"order\":[\"\xff\"]}}", LX_EINVAL, "UTF-8");
    /* LX_KEY_PROVIDER_MAX bytes is the most */
    char *body = malloc(LX_KEY_PROVIDER_MAX + 128);
    assert_non_null(body);
    int k = sprintf(body, "{\"name\":\"k\",\"provider\":{\"x\":\"");
    size_t fill = LX_KEY_PROVIDER_MAX - 8; /* {"x":"<fill>"} */
    memset(body + k, 'a', fill);
    strcpy(body + k + fill, "\"}}");
    assert_int_equal(parse(body), 0);
    assert_int_equal(strlen(in.provider), LX_KEY_PROVIDER_MAX);
    memset(body + k, 'a', fill + 1);
    strcpy(body + k + fill + 1, "\"}}");
    refused(body, LX_EINVAL, "larger than 4096");
    free(body);
}

/* ---- the answers, read back with jsmn --------------------------------------------------- */

static jsmntok_t toks[4096];
static const char *doc;
static int ntok;

static void read_doc(const char *json, size_t len)
{
    jsmn_parser p;
    jsmn_init(&p);
    doc = json;
    ntok = jsmn_parse(&p, json, len, toks, sizeof(toks) / sizeof(toks[0]));
    if (ntok < 1 || (size_t)toks[0].end != len)
        fail_msg("jsmn refuses the answer (%d): %.*s", ntok, (int)len, json);
    assert_int_equal(strlen(json), len);
}

/* The index after the value at <i> (with its subtree). */
static int tok_skip(int i)
{
    int n = toks[i].size, j = i + 1;
    if (toks[i].type == JSMN_OBJECT)
        for (int k = 0; k < n; k++)
            j = tok_skip(j + 1);
    else if (toks[i].type == JSMN_ARRAY)
        for (int k = 0; k < n; k++)
            j = tok_skip(j);
    return j;
}

static bool tok_is(int i, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(toks[i].end - toks[i].start) == n && memcmp(doc + toks[i].start, s, n) == 0;
}

/* The value of member <name> of the object at <obj>; -1 when absent. Duplicate keys fail. */
static int member(int obj, const char *name)
{
    assert_int_equal(toks[obj].type, JSMN_OBJECT);
    int found = -1, j = obj + 1;
    for (int k = 0; k < toks[obj].size; k++) {
        if (tok_is(j, name)) {
            if (found >= 0)
                fail_msg("member %s given twice", name);
            found = j + 1;
        }
        j = tok_skip(j + 1);
    }
    return found;
}

/* The kinds a member may have: S string, N number, I integer, B boolean, Z null, O object,
 * A array; "SZ" is a string or null. */
static char kind(int i)
{
    char c = doc[toks[i].start];
    switch (toks[i].type) {
    case JSMN_STRING:
        return 'S';
    case JSMN_OBJECT:
        return 'O';
    case JSMN_ARRAY:
        return 'A';
    default:
        if (c == 't' || c == 'f')
            return 'B';
        if (c == 'n')
            return 'Z';
        for (int k = toks[i].start; k < toks[i].end; k++)
            if (doc[k] == '.' || doc[k] == 'e' || doc[k] == 'E')
                return 'N';
        return 'I';
    }
}

static int want_kind(int obj, const char *name, const char *kinds)
{
    int v = member(obj, name);
    if (v < 0)
        fail_msg("member %s is missing", name);
    char k = kind(v);
    /* an integer is also a number */
    if (strchr(kinds, k) == NULL && !(k == 'I' && strchr(kinds, 'N') != NULL))
        fail_msg("member %s is %c (%.*s), want one of %s", name, k, toks[v].end - toks[v].start,
                 doc + toks[v].start, kinds);
    return v;
}

static void want_value(int obj, const char *name, const char *want)
{
    int v = member(obj, name);
    if (v < 0)
        fail_msg("member %s is missing", name);
    if (!tok_is(v, want))
        fail_msg("member %s is %.*s, want %s", name, toks[v].end - toks[v].start,
                 doc + toks[v].start, want);
}

/* OpenRouter's Key: each member the SDK's schema requires, with its type. */
static void expect_key_shape(int k)
{
    static const char *const numbers[] = {
        "usage",      "usage_daily",      "usage_weekly",      "usage_monthly",
        "byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly",
    };
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        want_kind(k, numbers[i], "N");
    want_kind(k, "hash", "S");
    want_kind(k, "name", "S");
    want_kind(k, "label", "S");
    want_kind(k, "disabled", "B");
    want_kind(k, "limit", "NZ");
    want_kind(k, "limit_remaining", "NZ");
    want_kind(k, "limit_reset", "SZ");
    want_kind(k, "include_byok_in_limit", "B");
    want_kind(k, "created_at", "S");
    want_kind(k, "updated_at", "SZ");
    want_kind(k, "expires_at", "SZ");
    want_kind(k, "creator_user_id", "SZ");
    want_kind(k, "external_user", "SZ"); /* required by the SDK, even as null */
    want_kind(k, "workspace_id", "S");
    want_kind(k, "models", "AZ");
    want_kind(k, "provider", "OZ");
    want_kind(k, "rate_limit", "OZ");
    want_kind(k, "priority", "S");
    assert_int_equal(toks[k].size, 26); /* nothing else */
}

static char *models_full[] = {"meta-llama/*", "x\"y\\z\n"};

static lx_key_view_t full_view(void)
{
    lx_key_view_t v;
    memset(&v, 0, sizeof(v));
    memset(v.key.hash, 'a', 64);
    strcpy(v.key.label, "sk-lx-v1-abc...123");
    v.key.name = "Team \"A\"\t\xff";
    v.key.disabled = true;
    v.key.limits.has_limit = true;
    v.key.limits.limit = 50000000;
    v.key.limits.limit_reset = LX_PERIOD_MONTH;
    v.key.limits.rpm = 60;
    v.key.limits.tpm = 1000;
    v.key.limits.concurrency = 3;
    v.key.expires_at = 1830297599;
    v.key.models = models_full;
    v.key.n_models = 2;
    v.key.provider = "{\"order\":[\"a\"]}";
    v.key.created_at = NOW_S;
    v.key.updated_at = NOW_S + 61;
    v.key.priority = LX_KEY_PRIORITY_BATCH;
    v.usage[LX_PERIOD_TOTAL] = 25500000;
    v.usage[LX_PERIOD_DAY] = 1;
    v.usage[LX_PERIOD_WEEK] = 1500000;
    v.usage[LX_PERIOD_MONTH] = 2000000;
    v.limit_remaining = 48000000;
    return v;
}

static void test_key_out(void **state)
{
    (void)state;
    lx_key_view_t v = full_view();
    size_t len;
    char *s = lx_key_json_key(&v, &len);
    assert_non_null(s);
    read_doc(s, len);
    expect_key_shape(0);
    want_value(0, "hash", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    want_value(0, "name", "Team \\\"A\\\"\\t\xef\xbf\xbd");
    want_value(0, "label", "sk-lx-v1-abc...123");
    want_value(0, "disabled", "true");
    want_value(0, "limit", "50");
    want_value(0, "limit_remaining", "48");
    want_value(0, "limit_reset", "monthly");
    want_value(0, "include_byok_in_limit", "false");
    want_value(0, "usage", "25.5");
    want_value(0, "usage_daily", "0.000001");
    want_value(0, "usage_weekly", "1.5");
    want_value(0, "usage_monthly", "2");
    want_value(0, "byok_usage", "0");
    want_value(0, "created_at", "2026-01-01T00:00:00Z");
    want_value(0, "updated_at", "2026-01-01T00:01:01Z");
    want_value(0, "expires_at", "2027-12-31T23:59:59Z");
    want_value(0, "creator_user_id", "null");
    want_value(0, "workspace_id", "");
    int m = want_kind(0, "models", "A");
    assert_int_equal(toks[m].size, 2);
    assert_true(tok_is(m + 1, "meta-llama/*"));
    assert_true(tok_is(m + 2, "x\\\"y\\\\z\\n"));
    int p = want_kind(0, "provider", "O");
    want_kind(p, "order", "A");
    int r = want_kind(0, "rate_limit", "O");
    want_value(r, "rpm", "60");
    want_value(r, "tpm", "1000");
    want_value(r, "concurrency", "3");
    assert_int_equal(toks[r].size, 3);
    want_value(0, "priority", "batch");
    free(s);

    /* a key with nothing set: nulls */
    memset(&v, 0, sizeof(v));
    v.key.created_at = 1;
    v.limit_remaining = -1;
    s = lx_key_json_key(&v, &len);
    read_doc(s, len);
    expect_key_shape(0);
    want_value(0, "name", "");
    want_value(0, "limit", "null");
    want_value(0, "limit_remaining", "null");
    want_value(0, "limit_reset", "null");
    want_value(0, "updated_at", "null");
    want_value(0, "expires_at", "null");
    want_value(0, "models", "null");
    want_value(0, "provider", "null");
    want_value(0, "rate_limit", "null");
    want_value(0, "priority", "interactive");
    want_value(0, "created_at", "1970-01-01T00:00:01Z");
    free(s);
}

static void test_key_out_edges(void **state)
{
    (void)state;
    lx_key_view_t v = full_view();
    size_t len;
    /* an overrun shows 0 left; a stored provider that is not one JSON object is null */
    v.limit_remaining = -5;
    v.key.provider = "{\"order\":[\"a\"]} {";
    char *s = lx_key_json_key(&v, &len);
    read_doc(s, len);
    want_value(0, "limit_remaining", "0");
    want_value(0, "provider", "null");
    free(s);
    const char *bad[] = {"[1]", "{", "{\"a\":\"\xff\"}", "", "{\"a\":1}}", "nul"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v.key.provider = (char *)bad[i];
        s = lx_key_json_key(&v, &len);
        read_doc(s, len);
        want_value(0, "provider", "null");
        free(s);
    }
    /* only one rate limit set: the object with zeros for the others */
    v.key.limits.rpm = 0;
    v.key.limits.tpm = 0;
    s = lx_key_json_key(&v, &len);
    read_doc(s, len);
    int r = want_kind(0, "rate_limit", "O");
    want_value(r, "concurrency", "3");
    want_value(r, "rpm", "0");
    free(s);
}

static void test_list_one_deleted(void **state)
{
    (void)state;
    lx_key_view_t v[2] = {full_view(), full_view()};
    v[1].key.hash[0] = 'b';
    size_t len;
    char *s = lx_key_json_list(v, 2, &len);
    read_doc(s, len);
    assert_int_equal(toks[0].size, 1);
    int d = want_kind(0, "data", "A");
    assert_int_equal(toks[d].size, 2);
    expect_key_shape(d + 1);
    expect_key_shape(tok_skip(d + 1));
    assert_true(doc[toks[member(tok_skip(d + 1), "hash")].start] == 'b');
    free(s);

    s = lx_key_json_list(v, 0, &len);
    assert_string_equal(s, "{\"data\":[]}");
    assert_int_equal(len, 11);
    free(s);

    s = lx_key_json_one(&v[0], NULL, &len);
    read_doc(s, len);
    assert_int_equal(toks[0].size, 1);
    expect_key_shape(want_kind(0, "data", "O"));
    free(s);

    const char *secret =
        "sk-lx-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    s = lx_key_json_one(&v[0], secret, &len);
    read_doc(s, len);
    assert_int_equal(toks[0].size, 2);
    expect_key_shape(want_kind(0, "data", "O"));
    want_value(0, "key", secret);
    free(s);

    s = lx_key_json_deleted(&len);
    assert_string_equal(s, "{\"deleted\":true}");
    assert_int_equal(len, strlen(s));
    free(s);
}

static void test_current(void **state)
{
    (void)state;
    lx_key_view_t v = full_view();
    size_t len;
    char *s = lx_key_json_current(&v, false, &len);
    read_doc(s, len);
    assert_int_equal(toks[0].size, 1);
    int d = want_kind(0, "data", "O");
    static const char *const numbers[] = {
        "usage",      "usage_daily",      "usage_weekly",      "usage_monthly",
        "byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly",
    };
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        want_kind(d, numbers[i], "N");
    want_value(d, "label", "sk-lx-v1-abc...123");
    want_value(d, "limit", "50");
    want_value(d, "limit_remaining", "48");
    want_value(d, "limit_reset", "monthly");
    want_value(d, "include_byok_in_limit", "false");
    want_value(d, "is_free_tier", "false");
    want_value(d, "is_management_key", "false");
    want_value(d, "is_provisioning_key", "false");
    want_value(d, "creator_user_id", "null");
    want_value(d, "expires_at", "2027-12-31T23:59:59Z");
    want_value(d, "usage", "25.5");
    /* members the SDK requires that llmux has nothing behind */
    int regions = want_kind(d, "allowed_data_regions", "A");
    assert_int_equal(toks[regions].size, 1);
    want_kind(d, "organization_id", "SZ");
    want_kind(d, "workspace_id", "SZ");
    int free_model = want_kind(d, "free_model_daily_requests", "O");
    want_kind(free_model, "limit", "N");
    want_kind(free_model, "remaining", "N");
    want_kind(free_model, "used", "N");
    /* the SDK requires {requests (integer), interval, note}; llmux adds its three limits */
    int r = want_kind(d, "rate_limit", "O");
    want_value(r, "requests", "60");
    want_kind(r, "interval", "S");
    want_kind(r, "note", "S");
    want_value(r, "rpm", "60");
    want_value(r, "tpm", "1000");
    want_value(r, "concurrency", "3");
    want_value(d, "priority", "batch");
    free(s);
    v.key.priority = LX_KEY_PRIORITY_INTERACTIVE;
    s = lx_key_json_current(&v, false, &len);
    read_doc(s, len);
    want_value(want_kind(0, "data", "O"), "priority", "interactive");
    free(s);

    memset(&v, 0, sizeof(v));
    strcpy(v.key.label, "config:ops");
    v.from_config = true;
    v.limit_remaining = -1;
    s = lx_key_json_current(&v, true, &len);
    read_doc(s, len);
    d = want_kind(0, "data", "O");
    want_value(d, "is_management_key", "true");
    want_value(d, "limit", "null");
    want_value(d, "limit_remaining", "null");
    want_value(d, "limit_reset", "null");
    want_value(d, "expires_at", "null");
    r = want_kind(d, "rate_limit", "O");
    want_value(r, "requests", "-1");
    want_value(r, "rpm", "0");
    free(s);
}

static lx_record_t full_record(void)
{
    lx_record_t r;
    lx_record_clear(&r);
    lx_record_set_cstr(&r, LX_RF_ID, "gen-1767225600-abcdefghij0123456789");
    lx_record_set_cstr(&r, LX_RF_KEY_HASH, "ab");
    lx_record_set_cstr(&r, LX_RF_MODEL_ASKED, "auto/cheap");
    lx_record_set_cstr(&r, LX_RF_MODEL, "openai/gpt-4o");
    lx_record_set_cstr(&r, LX_RF_PROVIDER, "openai");
    lx_record_set_cstr(&r, LX_RF_ENDPOINT, "https://api.openai.com/v1");
    lx_record_set_cstr(&r, LX_RF_API, "chat");
    lx_record_set_cstr(&r, LX_RF_REQUEST_ID, "req-1");
    lx_record_set_cstr(&r, LX_RF_SESSION_ID, "s\"1");
    lx_record_set_cstr(&r, LX_RF_USER, "u1");
    lx_record_set_cstr(&r, LX_RF_FINISH_REASON, "stop");
    r.created_at_us = NOW_S * 1000000 + 999999;
    r.prompt_tokens = 10;
    r.completion_tokens = 20;
    r.cached_tokens = 0;
    r.reasoning_tokens = 5;
    r.cost = 1234;
    r.reserved = 5000;
    r.usage_known = true;
    r.streamed = true;
    r.status = 200;
    r.latency_ms = 900;
    r.ttft_ms = 100;
    r.generation_ms = 800;
    r.n_attempts = 2;
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(0, LX_RA_PROVIDER), "together");
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(0, LX_RA_ENDPOINT), "https://together");
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(0, LX_RA_MODEL), "openai/gpt-4o");
    r.att_status[0] = 503;
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(0, LX_RA_OUTCOME), "error_5xx");
    r.att_ms[0] = 40;
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(1, LX_RA_PROVIDER), "openai");
    lx_record_set_cstr(&r, LX_RF_ATTEMPT(1, LX_RA_OUTCOME), "ok");
    r.att_status[1] = 200;
    r.att_ms[1] = 860;
    return r;
}

/* OpenRouter's Generation: each member the SDK's schema requires, with its type. */
static void expect_generation_shape(int d)
{
    static const struct {
        const char *name, *kinds;
    } m[] = {
        {"api_type", "SZ"},
        {"app_id", "IZ"},
        {"cache_discount", "NZ"},
        {"cancelled", "BZ"},
        {"created_at", "S"},
        {"data_region", "S"},
        {"external_user", "SZ"},
        {"finish_reason", "SZ"},
        {"generation_time", "NZ"},
        {"http_referer", "SZ"},
        {"id", "S"},
        {"is_byok", "B"},
        {"latency", "NZ"},
        {"model", "S"},
        {"moderation_latency", "NZ"},
        {"native_finish_reason", "SZ"},
        {"native_tokens_cached", "IZ"},
        {"native_tokens_completion", "IZ"},
        {"native_tokens_completion_images", "IZ"},
        {"native_tokens_prompt", "IZ"},
        {"native_tokens_reasoning", "IZ"},
        {"num_fetches", "IZ"},
        {"num_input_audio_prompt", "IZ"},
        {"num_media_completion", "IZ"},
        {"num_media_prompt", "IZ"},
        {"num_search_results", "IZ"},
        {"origin", "S"},
        {"preset_id", "SZ"},
        {"provider_name", "SZ"},
        {"provider_responses", "AZ"},
        {"request_id", "SZ"},
        {"response_cache_source_id", "SZ"},
        {"router", "SZ"},
        {"service_tier", "SZ"},
        {"session_id", "SZ"},
        {"streamed", "BZ"},
        {"tokens_completion", "IZ"},
        {"tokens_prompt", "IZ"},
        {"total_cost", "N"},
        {"upstream_id", "SZ"},
        {"upstream_inference_cost", "NZ"},
        {"usage", "N"},
        {"user_agent", "SZ"},
        {"web_search_engine", "SZ"},
        {"workspace_id", "SZ"},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        want_kind(d, m[i].name, m[i].kinds);
}

static void test_generation(void **state)
{
    (void)state;
    lx_record_t r = full_record();
    size_t len;
    char *s = lx_key_json_generation(&r, &len);
    read_doc(s, len);
    assert_int_equal(toks[0].size, 1);
    int d = want_kind(0, "data", "O");
    expect_generation_shape(d);
    want_value(d, "id", "gen-1767225600-abcdefghij0123456789");
    want_value(d, "api_type", "completions");
    want_value(d, "created_at", "2026-01-01T00:00:00Z");
    want_value(d, "model", "openai/gpt-4o");
    want_value(d, "provider_name", "openai");
    want_value(d, "streamed", "true");
    want_value(d, "cancelled", "false");
    want_value(d, "finish_reason", "stop");
    want_value(d, "native_finish_reason", "stop");
    want_value(d, "latency", "900");
    want_value(d, "generation_time", "800");
    want_value(d, "tokens_prompt", "10");
    want_value(d, "tokens_completion", "20");
    want_value(d, "native_tokens_reasoning", "5");
    want_value(d, "native_tokens_cached", "0");
    want_value(d, "total_cost", "0.001234");
    want_value(d, "usage", "0.001234");
    want_value(d, "is_byok", "false");
    want_value(d, "data_region", "global");
    want_value(d, "request_id", "req-1");
    want_value(d, "session_id", "s\\\"1");
    want_value(d, "external_user", "u1");
    want_value(d, "model_requested", "auto/cheap");
    int a = want_kind(d, "provider_responses", "A");
    assert_int_equal(toks[a].size, 2);
    int a0 = a + 1, a1 = tok_skip(a0);
    want_value(a0, "provider_name", "together");
    want_value(a0, "status", "503");
    want_value(a0, "latency", "40");
    want_value(a0, "outcome", "error_5xx");
    want_kind(a0, "is_byok", "B");
    want_kind(a0, "endpoint_id", "S");
    want_kind(a0, "model_permaslug", "S");
    want_value(a1, "provider_name", "openai");
    want_value(a1, "status", "200");
    free(s);

    /* nothing served, usage unknown, strings empty: nulls, and a model all the same */
    lx_record_clear(&r);
    lx_record_set_cstr(&r, LX_RF_ID, "gen-x");
    lx_record_set_cstr(&r, LX_RF_MODEL_ASKED, "m");
    lx_record_set_cstr(&r, LX_RF_API, "embeddings");
    r.prompt_tokens = r.completion_tokens = r.cached_tokens = r.reasoning_tokens = -1;
    r.n_attempts = 200; /* more than the record holds: only LX_RECORD_ATTEMPTS */
    s = lx_key_json_generation(&r, &len);
    read_doc(s, len);
    d = want_kind(0, "data", "O");
    expect_generation_shape(d);
    want_value(d, "api_type", "embeddings");
    want_value(d, "model", "m");
    want_value(d, "provider_name", "null");
    want_value(d, "finish_reason", "null");
    want_value(d, "tokens_prompt", "null");
    want_value(d, "native_tokens_cached", "null");
    want_value(d, "request_id", "null");
    want_value(d, "external_user", "null");
    want_value(d, "total_cost", "0");
    a = want_kind(d, "provider_responses", "A");
    assert_int_equal(toks[a].size, LX_RECORD_ATTEMPTS);
    want_value(a + 1, "status", "null");
    free(s);

    /* fields filled to the brim and invalid UTF-8 still give valid JSON */
    lx_record_clear(&r);
    char junk[200];
    memset(junk, 0xff, sizeof(junk));
    for (unsigned f = 0; f < LX_RF_SLOTS; f++)
        lx_record_set(&r, f, junk, sizeof(junk));
    r.n_attempts = 1;
    r.created_at_us = r.cost = r.prompt_tokens = INT64_MAX;
    r.usage_known = r.streamed = r.cancelled = true;
    s = lx_key_json_generation(&r, &len);
    read_doc(s, len);
    expect_generation_shape(want_kind(0, "data", "O"));
    free(s);
}

static void test_activity(void **state)
{
    (void)state;
    lx_activity_row_t rows[2];
    memset(rows, 0, sizeof(rows));
    strcpy(rows[0].date, "2026-01-01");
    strcpy(rows[0].model, "openai/gpt-4o");
    strcpy(rows[0].provider, "openai");
    rows[0].requests = 5;
    rows[0].prompt_tokens = 50;
    rows[0].completion_tokens = 125;
    rows[0].reasoning_tokens = 25;
    rows[0].cost = 15000;
    rows[1] = rows[0];
    strcpy(rows[1].provider, "az\"ure");
    size_t len;
    char *s = lx_key_json_activity(rows, 2, &len);
    read_doc(s, len);
    int d = want_kind(0, "data", "A");
    assert_int_equal(toks[d].size, 2);
    int r0 = d + 1;
    want_value(r0, "date", "2026-01-01");
    want_value(r0, "model", "openai/gpt-4o");
    want_value(r0, "model_permaslug", "openai/gpt-4o");
    want_kind(r0, "endpoint_id", "S");
    want_value(r0, "provider_name", "openai");
    want_value(r0, "usage", "0.015");
    want_value(r0, "byok_usage_inference", "0");
    want_value(r0, "requests", "5");
    want_value(r0, "prompt_tokens", "50");
    want_value(r0, "completion_tokens", "125");
    want_value(r0, "reasoning_tokens", "25");
    want_value(tok_skip(r0), "provider_name", "az\\\"ure");
    free(s);
    s = lx_key_json_activity(NULL, 0, &len);
    assert_string_equal(s, "{\"data\":[]}");
    free(s);
}

/* ---- round trips: a body, the key it makes, the answer, the body again ------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"name\":\"caf\\u00e9 \\\"q\\\" \\\\\",\"limit\":0.000001,\"limit_reset\":\"daily\","
        "\"expires_at\":\"2030-06-15T12:30:00Z\",\"models\":[\"a/*\",\"*:free\"],"
        "\"provider\":{\"sort\":{\"by\":\"price\",\"partition\":\"none\"}},"
        "\"rate_limit\":{\"rpm\":1,\"tpm\":2,\"concurrency\":3},\"priority\":\"batch\"}",
        "{\"name\":\"x\",\"limit\":null,\"limit_reset\":null,\"expires_at\":null,"
        "\"models\":null,\"provider\":null,\"rate_limit\":null}",
        "{\"name\":\"\xf0\x9f\x99\x82\",\"limit\":999999999.999999,\"limit_reset\":\"monthly\","
        "\"rate_limit\":{\"concurrency\":1000000000}}",
    };
    static const char *const names[] = {"name",   "limit",    "limit_reset", "expires_at",
                                        "models", "provider", "rate_limit",  "priority"};
    for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
        assert_int_equal(parse(bodies[b]), 0);
        lx_key_input_t first = in;
        memset(&in, 0, sizeof(in));
        lx_key_view_t v;
        memset(&v, 0, sizeof(v));
        v.key.name = first.name;
        v.key.limits.has_limit = first.has_limit;
        v.key.limits.limit = first.limit;
        v.key.limits.limit_reset = first.limit_reset;
        v.key.limits.rpm = first.rpm;
        v.key.limits.tpm = first.tpm;
        v.key.limits.concurrency = first.concurrency;
        v.key.expires_at = first.expires_at;
        v.key.models = first.models;
        v.key.n_models = first.n_models;
        v.key.provider = first.provider;
        v.key.priority = first.priority;
        v.key.created_at = NOW_S;
        size_t len;
        char *s = lx_key_json_key(&v, &len);
        read_doc(s, len);
        char again[4096], *p = again;
        *p++ = '{';
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            p += sprintf(p, "%s\"%s\":", i ? "," : "", names[i]);
            int t = member(0, names[i]);
            assert_true(t > 0);
            /* the value's text: a string with its quotes, a container with its brackets */
            int q = toks[t].type == JSMN_STRING;
            memcpy(p, doc + toks[t].start - q, (size_t)(toks[t].end - toks[t].start + 2 * q));
            p += toks[t].end - toks[t].start + 2 * q;
        }
        *p++ = '}';
        *p = '\0';
        free(s);
        assert_int_equal(parse(again), 0);
        assert_int_equal(in.set, first.set | LX_KEY_F_LIMIT | LX_KEY_F_LIMIT_RESET |
                                     LX_KEY_F_EXPIRES | LX_KEY_F_MODELS | LX_KEY_F_PROVIDER |
                                     LX_KEY_F_RATE_LIMIT | LX_KEY_F_PRIORITY);
        assert_int_equal(in.priority, first.priority);
        assert_string_equal(in.name, first.name);
        assert_int_equal(in.has_limit, first.has_limit);
        assert_int_equal(in.limit, first.limit);
        assert_int_equal(in.limit_reset, first.limit_reset);
        assert_int_equal(in.expires_at, first.expires_at);
        assert_int_equal(in.n_models, first.n_models);
        for (size_t i = 0; i < in.n_models; i++)
            assert_string_equal(in.models[i], first.models[i]);
        if (first.provider == NULL)
            assert_null(in.provider);
        else
            assert_string_equal(in.provider, first.provider);
        assert_int_equal(in.rpm, first.rpm);
        assert_int_equal(in.tpm, first.tpm);
        assert_int_equal(in.concurrency, first.concurrency);
        lx_key_input_dispose(&first);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_minimal_and_nulls),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_expires_at),
        cmocka_unit_test(test_parse_patch),
        cmocka_unit_test(test_parse_names),
        cmocka_unit_test(test_parse_huge_name),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_deep),
        cmocka_unit_test(test_parse_unknown_and_duplicates),
        cmocka_unit_test(test_parse_wrong_types),
        cmocka_unit_test(test_parse_absurd_limits),
        cmocka_unit_test(test_parse_models_limits),
        cmocka_unit_test(test_parse_provider),
        cmocka_unit_test(test_parse_priority),
        cmocka_unit_test(test_key_out),
        cmocka_unit_test(test_key_out_edges),
        cmocka_unit_test(test_list_one_deleted),
        cmocka_unit_test(test_current),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_activity),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
