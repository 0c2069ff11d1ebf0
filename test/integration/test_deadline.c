/*
 * test_deadline.c - failover never stacks timeouts: routing.deadline bounds all the attempts of
 * a request together, each attempt's first-byte timeout being cut to what is left of it.
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

/* Three providers that answer after 2 s; each attempt may wait 400 ms for a first byte, but
 * the request as a whole only 600 ms. */
static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts: {upstream_first_byte: 400ms, shutdown: 200ms}\n"
                             "routing: {max_attempts: 3, deadline: 600ms}\n"
                             "providers:\n"
                             "  - {name: s1, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: "
                             "{x-mock-delay-ms: \"2000\"}}\n"
                             "  - {name: s2, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: "
                             "{x-mock-delay-ms: \"2000\"}}\n"
                             "  - {name: s3, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: "
                             "{x-mock-delay-ms: \"2000\"}}\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers: [{provider: s1}, {provider: s2}, {provider: s3}]\n"
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

static void test_deadline_bounds_the_attempts(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", "X-Request-Id: dl-1\r\n",
                                     "{\"model\":\"m\",\"messages\":[]}", &r),
                     0);
    uint64_t dt = lx_harness_now_ms() - t0;
    /* two attempts: 400 ms, then what is left of the 600 ms; never three times 400 ms */
    assert_true(lx_harness_is_error(&r, 503));
    assert_true(dt >= 550 && dt < 1000);
    assert_non_null(strstr(r.body, "\"error_type\":\"timeout\""));
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"dl-1\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"attempts\":2"));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_bounds_the_attempts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
