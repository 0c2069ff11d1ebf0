/*
 * test_probe.c - active health probes: with no client traffic at all, llmux sends
 * `GET <probe path>` to each endpoint that has one, records the outcome in the health table,
 * and a dead endpoint's breaker opens from probes alone - before any request pays for it.
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
                             "workers: 2\n"
                             "timeouts: {shutdown: 200ms, upstream_connect: 500ms}\n"
                             "health:\n"
                             "  probe_interval: 200ms\n"
                             "  breaker_failures: 3\n"
                             "  breaker_cooldown: 30s\n"
                             "providers:\n"
                             "  - name: idle\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "    probe: /v1/models\n"
                             "  - name: gone\n"
                             "    base_url: http://127.0.0.1:@DEAD@/v1\n"
                             "    probe: /v1/models\n"
                             "  - name: liar\n"
                             "    base_url: http://127.0.0.1:@RAW@/v1\n"
                             "    probe: /v1/models\n"
                             "  - name: unprobed\n"
                             "    base_url: http://127.0.0.1:@MOCK1@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: idle\n"
                             "      - provider: gone\n"
                             "      - provider: unprobed\n"
                             "  - id: other\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: liar\n"
                             "auth: none\n"
                             "log: {access_log: off, level: error}\n";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    /* the raw upstream answers every probe with bytes that are not HTTP */
    lx_harness_opts_t o = {.mocks = 2,
                           .raw = true,
                           .raw_mode = LX_HARNESS_RAW_REPLY,
                           .raw_reply = "garbage, not HTTP\r\n\r\n"};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* The value of the metrics line starting with <prefix>, or -1. */
static double metric(const char *prefix)
{
    lx_harness_resp_t r;
    if (lx_harness_get(H.port, "/metrics", &r) != 0)
        return -1;
    double v = -1;
    const char *p = strstr(r.body, prefix);
    if (r.status == 200 && p != NULL) {
        const char *sp = strchr(p, ' ');
        if (sp != NULL)
            v = strtod(sp + 1, NULL);
    }
    lx_harness_resp_free(&r);
    return v;
}

static bool gone_ejected(void *arg)
{
    (void)arg;
    return metric("llmux_health_breaker_open{provider=\"gone\"") == 1;
}

static bool idle_probed(void *arg)
{
    (void)arg;
    return metric("llmux_upstream_attempts_total{provider=\"idle\",endpoint=\"http://127.0.0.1:") >=
           2;
}

static bool liar_counted(void *arg)
{
    (void)arg;
    lx_harness_resp_t r;
    if (lx_harness_get(H.port, "/metrics", &r) != 0)
        return false;
    bool yes = false;
    for (const char *p = strstr(r.body, "llmux_upstream_attempts_total{provider=\"liar\""); p;
         p = strstr(p + 1, "llmux_upstream_attempts_total{provider=\"liar\"")) {
        const char *eol = strchr(p, '\n');
        static const char key[] = "outcome=\"bad_response\"} ";
        const char *o = strstr(p, key);
        if (o != NULL && (eol == NULL || o < eol) && strtod(o + sizeof(key) - 1, NULL) >= 1)
            yes = true;
    }
    lx_harness_resp_free(&r);
    return yes;
}

/* A probed server that answers garbage: a bad response for the table, nothing more. */
static void test_probe_of_a_lying_server(void **state)
{
    (void)state;
    assert_true(lx_harness_wait_until(liar_counted, NULL, 5000));
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_get(H.port, "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

static void test_probes_without_traffic(void **state)
{
    (void)state;
    /* no request at all: the probes alone move the table */
    assert_true(lx_harness_wait_until(idle_probed, NULL, 5000));
    assert_true(lx_harness_wait_until(gone_ejected, NULL, 5000));
    assert_true(lx_mock_requests(H.mock[0]) >= 2);
    size_t len;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    assert_true(strncmp(raw, "GET /v1/models HTTP/1.1\r\n", 25) == 0);
    free(raw);
    /* a provider without a probe path is left alone */
    assert_int_equal(lx_mock_requests(H.mock[1]), 0);
    /* and a request then skips the dead endpoint: it is last in every plan */
    lx_harness_resp_t r;
    uint64_t before = lx_mock_requests(H.mock[0]) + lx_mock_requests(H.mock[1]);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL,
                                         "{\"model\":\"m\",\"messages\":[]}", &r),
                         0);
        assert_int_equal(r.status, 200);
        char v[16];
        assert_true(lx_harness_resp_header(&r, "x-llmux-attempts", v, sizeof(v)));
        assert_string_equal(v, "1");
        lx_harness_resp_free(&r);
    }
    assert_true(lx_mock_requests(H.mock[0]) + lx_mock_requests(H.mock[1]) - before >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probes_without_traffic),
        cmocka_unit_test(test_probe_of_a_lying_server),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
