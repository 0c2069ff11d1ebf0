/*
 * test_failover_stream.c - an early-committed stream (200 and keep-alive comments at once)
 * fails over before its first token: the next provider serves it, and the keep-alive comments
 * go on while that provider is slow to its first byte.
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

static const char CONFIG[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {shutdown: 200ms}\n"
    "stream: {early_commit: true, keepalive_delay: 50ms, keepalive_interval: 50ms}\n"
    "providers:\n"
    "  - {name: broken, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"503\"}}\n"
    "  - {name: slow, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-delay-ms: "
    "\"400\"}}\n"
    "models:\n"
    "  - id: m\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: broken, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: slow, price: {prompt: 2, completion: 2}}\n"
    "auth: none\n"
    "log: {access_log: \"@LOG@\", level: error}\n";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_keepalives_go_on_after_failover(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", "X-Request-Id: fs-1\r\n",
                                     "{\"model\":\"m\",\"stream\":true,\"messages\":[],"
                                     "\"provider\":{\"sort\":\"price\"}}",
                                     &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    /* served by the second provider, complete, no error event */
    assert_non_null(strstr(r.body, "data: [DONE]"));
    assert_null(strstr(r.body, "\"error\""));
    /* the 400 ms wait after the failover was kept company (one comment every 50 ms) */
    const char *first = strstr(r.body, "data: ");
    assert_non_null(first);
    char head[4096];
    size_t n =
        (size_t)(first - r.body) < sizeof(head) - 1 ? (size_t)(first - r.body) : sizeof(head) - 1;
    memcpy(head, r.body, n);
    head[n] = '\0';
    assert_true(count(head, ": keep-alive\n\n") >= 4);
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"fs-1\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"attempts\":2"));
    assert_non_null(strstr(line, "\"provider\":\"slow\""));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalives_go_on_after_failover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
