/*
 * test_pool.c - upstream connections as the mock sees them: keep-alive reuse across requests,
 * the per-endpoint max_connections bound under concurrency, cancellation of a request whose
 * client left (the upstream connection is closed), and several workers serving at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CONFIG(workers)                                                                            \
    "listen: 127.0.0.1:0\n"                                                                        \
    "workers: " workers "\n"                                                                       \
    "timeouts:\n"                                                                                  \
    "  shutdown: 200ms\n"                                                                          \
    "providers:\n"                                                                                 \
    "  - name: mock-a\n"                                                                           \
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"                                                  \
    "    max_connections: 2\n"                                                                     \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - provider: mock-a\n"                                                                   \
    "auth: none\n"                                                                                 \
    "log:\n"                                                                                       \
    "  access_log: @LOG@\n"                                                                        \
    "  level: error\n"

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CONFIG("1"));
}

static int setup2(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CONFIG("2"));
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static int format_chat(char *out, size_t cap, const char *id, const char *mock)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s%s}",
             mock ? ",\"mock\":" : "", mock ? mock : "");
    return snprintf(out, cap,
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    id, strlen(body), body);
}

static void test_upstream_reuse(void **state)
{
    (void)state;
    enum { N = 5 };
    for (int i = 0; i < N; i++) {
        /* a new client connection each time: reuse is upstream-side */
        char req[1024], id[32];
        snprintf(id, sizeof(id), "reuse-%d", i);
        int n = format_chat(req, sizeof(req), id, NULL);
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_request(H.port, req, (size_t)n, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), N);
    assert_int_equal(lx_mock_connections(H.mock[0]), 1);
    for (int i = 0; i < N; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\"request_id\":\"reuse-%d\"", i);
        char *line = lx_harness_log_wait(&H, needle, 2000);
        assert_non_null(line);
        assert_non_null(strstr(line, i == 0 ? "\"reused\":false" : "\"reused\":true"));
        free(line);
    }
}

static void test_max_connections(void **state)
{
    (void)state;
    enum { N = 6, DELAY = 300 };
    lx_harness_conn_t c[N];
    uint64_t t0 = lx_harness_now_ms();
    for (int i = 0; i < N; i++) {
        char req[1024], id[32];
        snprintf(id, sizeof(id), "bound-%d", i);
        int n = format_chat(req, sizeof(req), id, "{\"delay_ms\":300}");
        assert_int_equal(lx_harness_connect(&c[i], H.port), 0);
        assert_int_equal(lx_harness_send(&c[i], req, (size_t)n), 0);
    }
    for (int i = 0; i < N; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c[i], &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
        lx_harness_close(&c[i]);
    }
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_int_equal(lx_mock_requests(H.mock[0]), N);
    /* never more than 2 connections, reused by the waiting requests */
    assert_true(lx_mock_connections(H.mock[0]) <= 2);
    /* 6 requests of 300 ms through 2 connections take 3 rounds */
    assert_true(dt >= 3 * DELAY - 60);
}

static bool mock_saw_close(void *arg)
{
    (void)arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= 1;
}

static void test_cancel_closes_upstream(void **state)
{
    (void)state;
    char req[1024];
    int n = format_chat(req, sizeof(req), "cancel-1", "{\"delay_ms\":5000}");
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, req, (size_t)n), 0);
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 1, 2000), 0);
    assert_int_equal(lx_mock_closes_by_peer(H.mock[0]), 0);
    uint64_t t0 = lx_harness_now_ms();
    lx_harness_close(&c); /* the client gives up while the upstream is still thinking */
    assert_true(lx_harness_wait_until(mock_saw_close, NULL, 2000));
    assert_true(lx_harness_now_ms() - t0 < 2000);
    /* the request is logged once, and llmux serves on */
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"cancel-1\"", 2000);
    assert_non_null(line);
    free(line);
    n = format_chat(req, sizeof(req), "after-cancel", NULL);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_request(H.port, req, (size_t)n, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

static void test_two_workers(void **state)
{
    (void)state;
    enum { N = 8 };
    lx_harness_conn_t c[N];
    for (int i = 0; i < N; i++) {
        char req[1024], id[32];
        snprintf(id, sizeof(id), "w2-%d", i);
        int n = format_chat(req, sizeof(req), id, "{\"delay_ms\":50}");
        assert_int_equal(lx_harness_connect(&c[i], H.port), 0);
        assert_int_equal(lx_harness_send(&c[i], req, (size_t)n), 0);
    }
    for (int i = 0; i < N; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c[i], &r), 0);
        assert_int_equal(r.status, 200);
        char v[32], want[32];
        snprintf(want, sizeof(want), "w2-%d", i);
        assert_true(lx_harness_resp_header(&r, "x-request-id", v, sizeof(v)));
        assert_string_equal(v, want);
        lx_harness_resp_free(&r);
        lx_harness_close(&c[i]);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), N);
    /* each worker has its own pool of at most 2 */
    assert_true(lx_mock_connections(H.mock[0]) <= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upstream_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_closes_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_workers, setup2, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
