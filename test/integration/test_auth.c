/*
 * test_auth.c - client keys: with `auth: keys` the API needs "Authorization: Bearer <key>"
 * matching a configured SHA-256 digest; health checks need none; the client's key never
 * travels upstream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/auth.h"
#include "harness.h"

#define CONFIG                                                                                     \
    "listen: 127.0.0.1:0\n"                                                                        \
    "workers: 1\n"                                                                                 \
    "timeouts:\n"                                                                                  \
    "  shutdown: 200ms\n"                                                                          \
    "providers:\n"                                                                                 \
    "  - name: mock-a\n"                                                                           \
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"                                                  \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - provider: mock-a\n"                                                                   \
    "auth:\n"                                                                                      \
    "  keys:\n"                                                                                    \
    "    - name: k1\n"                                                                             \
    "      sha256: %s\n"                                                                           \
    "    - name: k2\n"                                                                             \
    "      sha256: %s\n"                                                                           \
    "log:\n"                                                                                       \
    "  access_log: @LOG@\n"                                                                        \
    "  level: error\n"

static lx_harness_t H;

static void hex_of(const char *key, char out[65])
{
    uint8_t d[32];
    lx_auth_hash(key, strlen(key), d);
    lx_auth_hex(d, out);
}

static int setup(void **state)
{
    (void)state;
    char h1[65], h2[65];
    hex_of("sk-test", h1);
    hex_of("sk-second-key", h2);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), CONFIG, h1, h2);
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, yaml);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static const char CHAT[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static int chat_with(const char *auth_header, lx_harness_resp_t *r)
{
    return lx_harness_post(H.port, "/v1/chat/completions", auth_header, CHAT, r);
}

static void test_missing_key(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    assert_int_equal(chat_with(NULL, &r), 0);
    assert_true(lx_harness_is_error(&r, 401));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

static void test_wrong_key(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Authorization: Bearer sk-wrong\r\n",
        "Authorization: Bearer sk-tes\r\n",
        "Authorization: Bearer sk-testx\r\n",
        "Authorization: Basic c2stdGVzdA==\r\n",
        "Authorization: sk-test\r\n",
        "Authorization: Bearer\r\n",
        "Authorization: Bearer sk-test extra\r\n",
        "X-Api-Key: sk-test\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(chat_with(bad[i], &r), 0);
        if (r.status != 401)
            fprintf(stderr, "case %zu (%s) answered %d\n", i, bad[i], r.status);
        assert_true(lx_harness_is_error(&r, 401));
        lx_harness_resp_free(&r);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

static void test_right_key(void **state)
{
    (void)state;
    static const char *const good[] = {
        "Authorization: Bearer sk-test\r\n",
        "Authorization: bearer sk-test\r\n",
        "Authorization: Bearer sk-second-key\r\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(chat_with(good[i], &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
        size_t len;
        char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
        assert_non_null(raw);
        assert_null(strstr(raw, "sk-test")); /* the client's key stays with llmux */
        assert_null(strstr(raw, "sk-second-key"));
        free(raw);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 3);

    lx_harness_resp_t r;
    static const char models[] = "GET /v1/models HTTP/1.1\r\nHost: t\r\n"
                                 "Authorization: Bearer sk-test\r\n\r\n";
    assert_int_equal(lx_harness_request(H.port, models, sizeof(models) - 1, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

static void test_health_needs_no_key(void **state)
{
    (void)state;
    const char *paths[] = {"/healthz", "/readyz"};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_get(H.port, paths[i], &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_right_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_needs_no_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
