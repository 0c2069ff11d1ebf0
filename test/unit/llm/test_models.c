/*
 * test_models.c - the `GET /v1/models` body, the `GET /v1/models/{id}` answers (ids with '/',
 * percent-encoded or not, unknown ids in each API's envelope) and per-token price strings.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm/body.h"
#include "llm/models.h"

static void test_price(void **state)
{
    static const struct {
        double per_million;
        const char *want;
    } cases[] = {
        {0.15, "0.00000015"},
        {0.6, "0.0000006"},
        {3, "0.000003"},
        {15, "0.000015"},
        {2.5, "0.0000025"},
        {0, "0"},
        {-1, "0"},
        {1, "0.000001"},
        {1000000, "1"},
        {12345678.9, "12.3456789"},
        {0.000001, "0.000000000001"},
        {0.0000000001, "0"},
        {1e15, "1000000000"},
        {1e300, "1000000000"},
    };
    char out[48];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lx_models_price(cases[i].per_million, out);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("price %.12g: got %s, want %s", cases[i].per_million, out, cases[i].want);
    }
    lx_models_price(NAN, out);
    assert_string_equal(out, "0");
    lx_models_price(INFINITY, out);
    assert_string_equal(out, "0");
}

static void test_format(void **state)
{
    lx_config_route_t r1[2] = {
        {.provider = 0, .upstream_model = "a", .price_prompt = 3, .price_completion = 15},
        {.provider = 1, .upstream_model = "b", .price_prompt = 0.15, .price_completion = 0.6},
    };
    lx_config_route_t r2[1] = {{.provider = 0, .price_prompt = 0, .price_completion = 0}};
    lx_config_model_t models[3] = {
        {.id = "openai/gpt-4o-mini",
         .owned_by = "openai",
         .context_length = 128000,
         .created = 1721172741,
         .routes = r1,
         .n_routes = 2},
        {.id = "local \"q\"\\n",
         .owned_by = NULL,
         .context_length = 0,
         .created = 7,
         .routes = r2,
         .n_routes = 1},
        {.id = "noroute", .owned_by = "llmux", .context_length = 8192, .created = 0},
    };
    lx_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.models = models;
    cfg.n_models = 3;

    size_t len = 0;
    char *s = lx_models_format(&cfg, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    const char *want =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"openai/gpt-4o-mini\",\"canonical_slug\":\"openai/gpt-4o-mini\",\"name\":"
        "\"openai/gpt-4o-mini\",\"object\":\"model\",\"created\":1721172741,\"owned_by\":"
        "\"openai\",\"context_length\":128000,\"pricing\":{\"prompt\":\"0.00000015\","
        "\"completion\":\"0.0000006\"}},"
        "{\"id\":\"local \\\"q\\\"\\\\n\",\"canonical_slug\":\"local \\\"q\\\"\\\\n\",\"name\":"
        "\"local \\\"q\\\"\\\\n\",\"object\":\"model\",\"created\":7,\"owned_by\":\"llmux\","
        "\"context_length\":null,\"pricing\":{\"prompt\":\"0\",\"completion\":\"0\"}},"
        "{\"id\":\"noroute\",\"canonical_slug\":\"noroute\",\"name\":\"noroute\",\"object\":"
        "\"model\",\"created\":0,\"owned_by\":\"llmux\",\"context_length\":8192,\"pricing\":{"
        "\"prompt\":\"0\",\"completion\":\"0\"}}]}";
    assert_string_equal(s, want);
    lx_body_scan_t scan;
    assert_int_equal(lx_body_scan(s, len, &scan), 0);
    free(s);

    /* no models: an empty list */
    cfg.n_models = 0;
    s = lx_models_format(&cfg, &len);
    assert_non_null(s);
    assert_string_equal(s, "{\"object\":\"list\",\"data\":[]}");
    assert_int_equal(lx_body_scan(s, len, &scan), 0);
    free(s);
}

static void test_many(void **state)
{
    /* enough models for the buffer to grow several times */
    enum { N = 500 };
    lx_config_model_t *models = calloc(N, sizeof(*models));
    char(*ids)[32] = calloc(N, 32);
    assert_non_null(models);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], 32, "vendor/model-%d", i);
        models[i].id = ids[i];
        models[i].owned_by = "vendor";
        models[i].context_length = (uint32_t)i;
    }
    lx_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.models = models;
    cfg.n_models = N;
    size_t len;
    char *s = lx_models_format(&cfg, &len);
    assert_non_null(s);
    lx_body_scan_t scan;
    assert_int_equal(lx_body_scan(s, len, &scan), 0);
    assert_non_null(strstr(s, "\"id\":\"vendor/model-499\""));
    free(s);
    free(ids);
    free(models);
}

static void test_retrieve(void **state)
{
    (void)state;
    lx_config_route_t r1[1] = {{.provider = 0, .price_prompt = 0.05, .price_completion = 0.08}};
    lx_config_model_t models[2] = {
        {.id = "meta-llama/llama-3.1-8b-instruct",
         .owned_by = "meta-llama",
         .context_length = 131072,
         .created = 1721692800,
         .routes = r1,
         .n_routes = 1},
        {.id = "plain", .owned_by = "llmux", .created = 3},
    };
    lx_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.models = models;
    cfg.n_models = 2;
    static const char want[] =
        "{\"id\":\"meta-llama/llama-3.1-8b-instruct\",\"canonical_slug\":"
        "\"meta-llama/llama-3.1-8b-instruct\",\"name\":\"meta-llama/llama-3.1-8b-instruct\","
        "\"object\":\"model\",\"created\":1721692800,\"owned_by\":\"meta-llama\","
        "\"context_length\":131072,\"pricing\":{\"prompt\":\"0.00000005\",\"completion\":"
        "\"0.00000008\"}}";
    /* as curl sends it, as the OpenAI SDK sends it (%2F), with other escapes in any case */
    static const char *const paths[] = {"meta-llama/llama-3.1-8b-instruct",
                                        "meta-llama%2Fllama-3.1-8b-instruct",
                                        "meta-llama%2fllama%2D3.1-8b-instruct"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int status = 0;
        size_t len = 0;
        char *s =
            lx_models_retrieve(&cfg, LX_API_OPENAI, paths[i], strlen(paths[i]), &status, &len);
        assert_non_null(s);
        assert_int_equal(status, 200);
        assert_string_equal(s, want);
        assert_int_equal(len, sizeof(want) - 1);
        free(s);
    }
    /* the list holds the same object */
    size_t len;
    char *list = lx_models_format(&cfg, &len);
    assert_non_null(strstr(list, want));
    free(list);

    /* unknown: 404 in each API's envelope, the name escaped once (é as it is, NUL as \u0000) */
    int status = 0;
    static const char unknown[] = "caf%C3%A9%00x";
    char *s = lx_models_retrieve(&cfg, LX_API_OPENAI, unknown, sizeof(unknown) - 1, &status, &len);
    assert_non_null(s);
    assert_int_equal(status, 404);
    assert_string_equal(s, "{\"error\":{\"message\":\"model 'caf\xc3\xa9\\u0000x' is not available "
                           "on this gateway\",\"type\":\"invalid_request_error\",\"param\":"
                           "\"model\",\"code\":\"model_not_found\"}}");
    assert_int_equal(len, strlen(s));
    free(s);
    s = lx_models_retrieve(&cfg, LX_API_OPENROUTER, "nope/x", 6, &status, &len);
    assert_int_equal(status, 404);
    assert_string_equal(s, "{\"error\":{\"code\":404,\"message\":\"model 'nope/x' is not "
                           "available on this gateway\",\"metadata\":{\"error_type\":"
                           "\"not_found\"}}}");
    free(s);
    /* a prefix or an extension of an id is another id */
    s = lx_models_retrieve(&cfg, LX_API_OPENAI, "plai", 4, &status, &len);
    assert_int_equal(status, 404);
    free(s);
    s = lx_models_retrieve(&cfg, LX_API_OPENAI, "plain/", 6, &status, &len);
    assert_int_equal(status, 404);
    free(s);
    s = lx_models_retrieve(&cfg, LX_API_OPENAI, "plain", 5, &status, &len);
    assert_int_equal(status, 200);
    free(s);
    /* a malformed escape is the client's error */
    static const char *const bad[] = {"a%", "a%2", "a%zz", "%g0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s = lx_models_retrieve(&cfg, LX_API_OPENAI, bad[i], strlen(bad[i]), &status, &len);
        assert_non_null(s);
        assert_int_equal(status, 400);
        assert_non_null(strstr(s, "\"type\":\"invalid_request_error\""));
        free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_price),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_retrieve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
