/*
 * test_auth.c - client keys: with `auth: keys` the API needs "Authorization: Bearer <key>"
 * matching a configured SHA-256 digest; health checks need none; the client's key never
 * travels upstream.
 *
 * Admission on the head: a request without a valid key (or to an unknown route, or with the
 * wrong method) is refused as soon as its head is complete, before any body byte is read and
 * without a 100 Continue, and the connection is closed: a client without a key cannot make
 * llmux hold a body. The admin routes take the admin key the same way.
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
    "admin:\n"                                                                                     \
    "  sha256: %s\n"                                                                               \
    "  metrics_public: false\n"                                                                    \
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
    char h1[65], h2[65], ha[65];
    hex_of("sk-test", h1);
    hex_of("sk-second-key", h2);
    hex_of("sk-admin", ha);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), CONFIG, h1, h2, ha);
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

/* Sends the head of <method> <path> announcing a body of 1 MiB (with Expect: 100-continue
 * when <expect>), and nothing of the body: the answer must come from the head alone. */
static void head_only(lx_harness_conn_t *c, const char *method, const char *path, const char *extra,
                      bool expect)
{
    static int n; /* the request ids: head-1, head-2, ... */
    char head[512];
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: t\r\nX-Request-Id: head-%d\r\n"
             "Content-Type: application/json\r\nContent-Length: 1048576\r\n%s%s\r\n",
             method, path, ++n, expect ? "Expect: 100-continue\r\n" : "",
             extra != NULL ? extra : "");
    assert_int_equal(lx_harness_connect(c, H.port), 0);
    assert_int_equal(lx_harness_send_str(c, head), 0);
}

/* The refusal of the head of a request to <path>: <status> in the envelope of its API, no 100
 * Continue before it, <message> in it, and the connection closed (the body is never read). */
static void assert_refused(lx_harness_conn_t *c, const char *path, int status, const char *message)
{
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(c, &r), 0);
    if (r.status != status || strstr(r.body, message) == NULL)
        fprintf(stderr, "answered %d: %s\n", r.status, r.body);
    assert_true(lx_harness_is_error_for(&r, status, path));
    assert_false(r.continued);
    assert_non_null(strstr(r.body, message));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(c, 2000));
    lx_harness_close(c);
}

static void test_refused_on_the_head(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    /* no key, with and without Expect: 100-continue */
    head_only(&c, "POST", "/v1/chat/completions", NULL, true);
    assert_refused(&c, "/v1/chat/completions", 401, "missing API key");
    head_only(&c, "POST", "/api/v1/chat/completions", NULL, false);
    assert_refused(&c, "/api/v1/chat/completions", 401, "missing API key");
    /* an unknown key */
    head_only(&c, "POST", "/v1/embeddings", "Authorization: Bearer sk-wrong\r\n", true);
    assert_refused(&c, "/v1/embeddings", 401, "invalid API key");
    /* an unknown route, a wrong method (with its Allow header) */
    head_only(&c, "POST", "/v1/nothing-here", "Authorization: Bearer sk-test\r\n", true);
    assert_refused(&c, "/v1/nothing-here", 404, "no such route");
    head_only(&c, "PUT", "/v1/chat/completions", "Authorization: Bearer sk-test\r\n", false);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 405);
    char allow[32];
    assert_true(lx_harness_resp_header(&r, "Allow", allow, sizeof(allow)));
    assert_string_equal(allow, "POST");
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    /* the admin routes take the admin key, not a client key */
    head_only(&c, "GET", "/admin/health", NULL, true);
    assert_refused(&c, "/admin/health", 401, "missing admin key");
    head_only(&c, "GET", "/metrics", "Authorization: Bearer sk-test\r\n", true);
    assert_refused(&c, "/metrics", 401, "invalid admin key");
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);

    /* each refusal has its access-log line (the last one written last) */
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"head-7\"", 2000);
    assert_non_null(line);
    free(line);
    line = lx_harness_log_wait(&H, "\"request_id\":\"head-5\"", 0);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":405"));
    free(line);
    assert_int_equal(lx_harness_log_count(&H, "\"status\":401"), 5);
}

/* A request that passes on its head gets its 100 Continue, then sends its body. */
static void test_admitted_head_continues(void **state)
{
    (void)state;
    char head[512];
    snprintf(head, sizeof(head),
             "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
             "Authorization: Bearer sk-second-key\r\nExpect: 100-continue\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             strlen(CHAT));
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, head), 0);
    assert_true(lx_harness_wait_bytes(&c, 25, 2000));
    assert_memory_equal(c.buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    assert_int_equal(lx_harness_send_str(&c, CHAT), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.continued);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);

    /* the admin key opens the admin routes */
    static const char admin[] = "GET /admin/health HTTP/1.1\r\nHost: t\r\n"
                                "Authorization: Bearer sk-admin\r\n\r\n";
    assert_int_equal(lx_harness_request(H.port, admin, sizeof(admin) - 1, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_right_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_needs_no_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_on_the_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admitted_head_continues, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
