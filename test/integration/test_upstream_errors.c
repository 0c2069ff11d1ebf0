/*
 * test_upstream_errors.c - what a client sees when the upstream fails before answering: refused
 * connections, error statuses (with the upstream's reason readable), 429 with Retry-After, a
 * first byte that never comes in time, and connections reset or closed before the response
 * head. Every failure is llmux's error envelope, and llmux keeps serving afterwards.
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

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts:\n"
                             "  upstream_first_byte: 400ms\n"
                             "  shutdown: 200ms\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "  - name: dead-provider\n"
                             "    base_url: http://127.0.0.1:@DEAD@/v1\n"
                             "  - name: raw-provider\n"
                             "    base_url: http://127.0.0.1:@RAW@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: mock-a\n"
                             "  - id: dead\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: dead-provider\n"
                             "  - id: raw\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: raw-provider\n"
                             "auth: none\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

static lx_harness_t H;

static int start(lx_harness_raw_mode_t mode)
{
    lx_harness_opts_t o = {.mocks = 1, .raw = true, .raw_mode = mode};
    return lx_harness_start(&H, &o, CONFIG);
}

static int setup_reset(void **state)
{
    (void)state;
    return start(LX_HARNESS_RAW_RESET);
}

static int setup_close(void **state)
{
    (void)state;
    return start(LX_HARNESS_RAW_CLOSE);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static void chat(const char *model, const char *mock, const char *request_id, lx_harness_resp_t *r)
{
    char body[512], hdr[128];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s%s}", model,
             mock ? ",\"mock\":" : "", mock ? mock : "");
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", request_id);
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", hdr, body, r), 0);
}

static void message_of(const lx_harness_resp_t *r, char *out, size_t cap)
{
    assert_true(lx_harness_json_str(r->body, "message", out, cap));
}

/* A normal request still works. */
static void assert_serving(void)
{
    lx_harness_resp_t r;
    chat("m", NULL, "after", &r);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

/* The access log line of <request_id> has status <status>. */
static void assert_logged(const char *request_id, int status)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", request_id);
    char *line = lx_harness_log_wait(&H, needle, 2000);
    assert_non_null(line);
    double d;
    assert_true(lx_harness_json_num(line, "status", &d));
    assert_int_equal((int)d, status);
    free(line);
}

static void test_upstream_refused(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("dead", NULL, "refused-1", &r);
    assert_true(lx_harness_is_error(&r, 502));
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "dead-provider"));
    assert_non_null(strstr(msg, "connect"));
    assert_non_null(strstr(msg, "refused"));
    lx_harness_resp_free(&r);
    assert_logged("refused-1", 502);
    assert_serving();
}

static void test_upstream_500(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("m", "{\"status\":500}", "u500", &r);
    /* every attempt (here the only one) failed with a 5xx: 503, as OpenRouter answers */
    assert_true(lx_harness_is_error(&r, 503));
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "mock: injected status 500")); /* the upstream's own words */
    assert_non_null(strstr(msg, "500"));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 1);
    assert_logged("u500", 503);

    chat("m", "{\"status\":503}", "u503", &r);
    assert_true(r.status == 502 || r.status == 503);
    assert_true(lx_harness_is_error(&r, r.status));
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "mock: injected status 503"));
    lx_harness_resp_free(&r);
    assert_serving();
}

static void test_upstream_429(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("m", "{\"status\":429}", "u429", &r);
    assert_true(lx_harness_is_error(&r, 429));
    char v[64];
    assert_true(lx_harness_resp_header(&r, "retry-after", v, sizeof(v)));
    assert_string_equal(v, "1");
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "mock: injected status 429"));
    lx_harness_resp_free(&r);
    assert_logged("u429", 429);
    assert_serving();
}

static void test_upstream_400_passthrough(void **state)
{
    (void)state;
    /* the upstream refusing the request itself is the client's business: its status and
     * reason reach the client */
    lx_harness_resp_t r;
    chat("m", "{\"status\":400}", "u400", &r);
    assert_true(lx_harness_is_error(&r, 400));
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "mock: injected status 400"));
    lx_harness_resp_free(&r);
    assert_serving();
}

static bool mock_saw_close(void *arg)
{
    (void)arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= 1;
}

static void test_first_byte_timeout(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t t0 = lx_harness_now_ms();
    chat("m", "{\"delay_ms\":3000}", "slow-1", &r);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_true(lx_harness_is_error(&r, 503));
    assert_true(dt >= 350 && dt < 2500);
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "mock-a"));
    lx_harness_resp_free(&r);
    /* the upstream connection is given up, so the model server can stop */
    assert_true(lx_harness_wait_until(mock_saw_close, NULL, 2000));
    assert_logged("slow-1", 503);
    assert_serving();
}

static void test_upstream_reset_before_head(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("raw", NULL, "reset-1", &r);
    assert_true(lx_harness_is_error(&r, 502));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_raw_requests(H.raw) >= 1);
    assert_logged("reset-1", 502);
    assert_serving();
}

static void test_upstream_close_before_head(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("raw", NULL, "close-1", &r);
    assert_true(lx_harness_is_error(&r, 502));
    char msg[1024];
    message_of(&r, msg, sizeof(msg));
    assert_non_null(strstr(msg, "raw-provider"));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_raw_requests(H.raw) >= 1);
    assert_logged("close-1", 502);
    assert_serving();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upstream_refused, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_500, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_429, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_400_passthrough, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_reset_before_head, setup_reset, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_close_before_head, setup_close, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
