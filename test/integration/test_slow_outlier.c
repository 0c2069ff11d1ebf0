/*
 * test_slow_outlier.c - a replica that slows down is passed over before the next re-scoring
 * (route/health.h: lx_health_head): three late heads in a row mark it slow, and the router then
 * gives it only the exploration share. Hedging is off, so every request that lands on it waits
 * for its head; the re-scoring interval (3 s) is longer than the slow phase, so only the mark
 * can move the traffic.
 *
 * Without the mark, about half of the slow phase's requests land on the slow replica (they
 * are routed by equal scores); with it, the three that mark it and the exploration share.
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
#include "mock.h"

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts:\n"
                             "  upstream_first_byte: 3s\n"
                             "  shutdown: 200ms\n"
                             "routing:\n"
                             "  hedge_budget: 0\n"
                             "health:\n"
                             "  rescore_interval: 3s\n"
                             "  window: 60s\n"
                             "providers:\n"
                             "  - {name: p1, base_url: \"http://127.0.0.1:@MOCK0@/v1\"}\n"
                             "  - {name: p2, base_url: \"http://127.0.0.1:@MOCK1@/v1\"}\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - {provider: p1, price: {prompt: 1, completion: 1}}\n"
                             "      - {provider: p2, price: {prompt: 1, completion: 1}}\n"
                             "auth: none\n"
                             "admin:\n"
                             "  sha256: %s\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

#define SLOW_MS  250
#define PHASE_MS 2500 /* the slow phase: shorter than the re-scoring interval */

static lx_harness_t H;

/* One chat request; whether p1 served it. */
static bool chat(const char *order)
{
    char body[256];
    if (order != NULL)
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"provider\":{\"order\":[\"%s\"]},\"messages\":[{\"role\":"
                 "\"user\",\"content\":\"hi\"}]}",
                 order);
    else
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", "", body, &r), 0);
    assert_int_equal(r.status, 200);
    char v[64] = "";
    assert_true(lx_harness_resp_header(&r, "X-Llmux-Provider", v, sizeof(v)));
    lx_harness_resp_free(&r);
    return strcmp(v, "p1") == 0;
}

static void test_slow_replica_passed_over(void **state)
{
    (void)state;
    uint8_t d[32];
    char hex[65], cfg[sizeof(CONFIG) + 64];
    lx_auth_hash("admin-secret", 12, d);
    lx_auth_hex(d, hex);
    snprintf(cfg, sizeof(cfg), CONFIG, hex);
    lx_harness_opts_t o = {.mocks = 2};
    assert_int_equal(lx_harness_start(&H, &o, cfg), 0);
    /* both rows warm, then a re-scoring with the model's TTFT p95 (the late heads' bar) */
    for (int i = 0; i < 20; i++)
        (void)chat(i % 2 ? "p2" : "p1");
    lx_harness_sleep_ms(3300);
    lx_mock_faults_t f = {.ttfb_delay_ms = SLOW_MS};
    lx_mock_set_faults(H.mock[0], &f);
    int on_p1 = 0, n = 0;
    uint64_t t0 = lx_harness_now_ms();
    while (lx_harness_now_ms() - t0 < PHASE_MS && n < 400) {
        on_p1 += chat(NULL);
        n++;
    }
    fprintf(stderr, "slow phase: %d of %d requests served by the slow replica\n", on_p1, n);
    assert_true(n >= 20);
    assert_true(on_p1 >= 3); /* (the three that mark it) */
    /* the three, and the exploration share (2 %) with room: without the mark, about half */
    assert_true(on_p1 <= 3 + 2 + n / 20);
    /* /admin/health shows the mark */
    const char get[] = "GET /admin/health HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                       "admin-secret\r\n\r\n";
    lx_harness_resp_t h;
    assert_int_equal(lx_harness_request(H.port, get, sizeof(get) - 1, &h), 0);
    assert_int_equal(h.status, 200);
    const char *p = strstr(h.body, "\"provider\":\"p1\"");
    assert_non_null(p);
    p = strstr(p, "\"slow_for_ms\":");
    assert_non_null(p);
    assert_true(strtoull(p + strlen("\"slow_for_ms\":"), NULL, 10) > 0);
    lx_harness_resp_free(&h);
    lx_harness_stop(&H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_replica_passed_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
