/*
 * test_pool_limits.c - what the upstream pool bounds, as clients and the mock see it: by default
 * only the idle connections it keeps (a stream holds its connection for its whole length, so
 * hundreds of concurrent streams through one worker all run at once, and after them the idle
 * ones beyond max_idle close); an explicit max_connections makes requests wait, each bounded by
 * its own routing.deadline, and answered 503 + Retry-After naming llmux's own limit when no
 * slot comes free in time - counted apart, never against the provider's health.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"

/* The shipped defaults for the pool and the timeouts: nothing about them is set here. */
static const char DEFAULTS[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {shutdown: 200ms}\n"
    "providers:\n"
    "  - {name: mock-a, base_url: \"http://127.0.0.1:@MOCK0@/v1\"}\n"
    "models:\n"
    "  - {id: m, context_length: 4096, providers: [{provider: mock-a}]}\n"
    "auth: none\n"
    "log: {access_log: \"@LOG@\", level: error}\n";

/* An explicit cap of two connections, and a short deadline for the requests that wait. */
static const char CAPPED[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {shutdown: 200ms}\n"
    "routing: {deadline: 600ms}\n"
    "providers:\n"
    "  - {name: mock-a, base_url: \"http://127.0.0.1:@MOCK0@/v1\", max_connections: 2}\n"
    "models:\n"
    "  - {id: m, context_length: 4096, providers: [{provider: mock-a}]}\n"
    "auth: none\n"
    "log: {access_log: \"@LOG@\", level: error}\n";

/* A configured idle bound of four. */
static const char IDLE4[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {shutdown: 200ms}\n"
    "providers:\n"
    "  - {name: mock-a, base_url: \"http://127.0.0.1:@MOCK0@/v1\", max_idle_connections: 4}\n"
    "models:\n"
    "  - {id: m, context_length: 4096, providers: [{provider: mock-a}]}\n"
    "auth: none\n"
    "log: {access_log: \"@LOG@\", level: error}\n";

static lx_harness_t H;

static int setup_defaults(void **state)
{
    (void)state;
    /* three sockets per stream in this process (client, llmux both sides) and the mock's */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, DEFAULTS);
}

static int setup_capped(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CAPPED);
}

static int setup_idle4(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, IDLE4);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* Sends a chat request on a new connection; <mock> is the body's "mock" object. */
static void send_chat(lx_harness_conn_t *c, const char *id, bool stream, const char *mock)
{
    char body[512], req[1024];
    int bn = snprintf(body, sizeof(body),
                      "{\"model\":\"m\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"hi\"}],\"mock\":%s}",
                      stream ? "true" : "false", mock);
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     id, bn, body);
    assert_int_equal(lx_harness_connect(c, H.port), 0);
    assert_int_equal(lx_harness_send(c, req, (size_t)n), 0);
}

/* Reads a streamed answer and checks it is a complete one. */
static void read_stream_ok(lx_harness_conn_t *c)
{
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    assert_null(strstr(r.body, "\"error\""));
    lx_harness_resp_free(&r);
    lx_harness_close(c);
}

static lx_mock_t *M;
static uint64_t want_open;

static bool mock_open_is(void *arg)
{
    (void)arg;
    return lx_mock_open_connections(M) == want_open;
}

static void test_many_streams_on_defaults(void **state)
{
    (void)state;
    enum { N = 300, IDLE = 64 };
    static lx_harness_conn_t c[N];
    /* each stream lasts 20 x 250 ms = 5 s: all of them must be at the mock at once */
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "many-%d", i);
        send_chat(&c[i], id, true, "{\"chunks\":20,\"interval_ms\":250}");
    }
    assert_int_equal(lx_mock_wait_requests(H.mock[0], N, 4500), 0);
    assert_true(lx_mock_open_connections(H.mock[0]) >= N);
    for (int i = 0; i < N; i++)
        read_stream_ok(&c[i]);
    assert_int_equal(lx_mock_connections(H.mock[0]), N);
    /* after use, the pool keeps max_idle_connections (64 by default) and closes the rest */
    M = H.mock[0];
    want_open = IDLE;
    assert_true(lx_harness_wait_until(mock_open_is, NULL, 3000));
    /* the ones kept serve the next requests */
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL,
                                     "{\"model\":\"m\",\"messages\":[]}", &r),
                     0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_connections(H.mock[0]), N);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"many-299\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":200"));
    free(line);
}

/* max_idle_connections from the configuration bounds what the pool keeps after a burst. */
static void test_configured_idle_bound(void **state)
{
    (void)state;
    enum { N = 20 };
    lx_harness_conn_t c[N];
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "idle-%d", i);
        send_chat(&c[i], id, true, "{\"chunks\":4,\"interval_ms\":100}");
    }
    assert_int_equal(lx_mock_wait_requests(H.mock[0], N, 3000), 0);
    for (int i = 0; i < N; i++)
        read_stream_ok(&c[i]);
    M = H.mock[0];
    want_open = 4;
    assert_true(lx_harness_wait_until(mock_open_is, NULL, 3000));
}

/* The cumulative attempts of mock-a's row with <outcome>, from /metrics. */
static long attempts(const char *body, const char *outcome)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "outcome=\"%s\"} ", outcome);
    for (const char *p = strstr(body, "llmux_upstream_attempts_total{provider=\"mock-a\""); p;
         p = strstr(p + 1, "llmux_upstream_attempts_total{provider=\"mock-a\"")) {
        const char *eol = strchr(p, '\n');
        const char *o = strstr(p, needle);
        if (o != NULL && (eol == NULL || o < eol))
            return strtol(o + strlen(needle), NULL, 10);
    }
    return -1;
}

static void test_cap_waiters_get_503(void **state)
{
    (void)state;
    /* two streams of 1.5 s take both connections */
    lx_harness_conn_t hold[2], wait[2];
    send_chat(&hold[0], "hold-0", true, "{\"chunks\":10,\"interval_ms\":150}");
    send_chat(&hold[1], "hold-1", true, "{\"chunks\":10,\"interval_ms\":150}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 2, 2000), 0);
    /* two more wait for a slot: each for its own deadline (600 ms), not the connect timeout */
    uint64_t t0 = lx_harness_now_ms();
    send_chat(&wait[0], "wait-0", false, "{}");
    send_chat(&wait[1], "wait-1", false, "{}");
    for (int i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&wait[i], &r), 0);
        uint64_t dt = lx_harness_now_ms() - t0;
        assert_true(dt >= 500 && dt < 1400);
        assert_true(lx_harness_is_error(&r, 503));
        char v[64], msg[1024];
        assert_true(lx_harness_resp_header(&r, "retry-after", v, sizeof(v)));
        assert_string_equal(v, "1");
        assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
        /* llmux's own limit, said so; no connect failure of the provider */
        assert_non_null(strstr(msg, "llmux's own limit"));
        assert_non_null(strstr(msg, "max_connections"));
        assert_null(strstr(msg, "connecting"));
        assert_null(strstr(msg, "timed out"));
        assert_non_null(strstr(r.body, "\"error_type\":\"gateway_limit\""));
        lx_harness_resp_free(&r);
        lx_harness_close(&wait[i]);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 2); /* the waiters never reached it */
    for (int i = 0; i < 2; i++)
        read_stream_ok(&hold[i]);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"wait-1\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":503"));
    free(line);

    /* counted apart; the health table holds nothing against the provider */
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_get(H.port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(attempts(r.body, "gateway_limit"), 2);
    assert_int_equal(attempts(r.body, "connect"), 0);
    assert_int_equal(attempts(r.body, "timeout"), 0);
    assert_int_equal(attempts(r.body, "ok"), 2);
    const char *brk = strstr(r.body, "llmux_health_breaker_open{provider=\"mock-a\"");
    assert_non_null(brk);
    assert_non_null(strchr(brk, '}'));
    assert_true(strtod(strchr(brk, '}') + 1, NULL) == 0.0);
    lx_harness_resp_free(&r);

    /* and the provider serves on as soon as a slot is free */
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL,
                                     "{\"model\":\"m\",\"messages\":[]}", &r),
                     0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

static void test_cap_waiter_served_when_a_slot_frees(void **state)
{
    (void)state;
    /* the two connections are busy for 5 x 60 ms; a waiter gets one within its deadline */
    lx_harness_conn_t hold[2], wait;
    send_chat(&hold[0], "short-0", true, "{\"chunks\":5,\"interval_ms\":60}");
    send_chat(&hold[1], "short-1", true, "{\"chunks\":5,\"interval_ms\":60}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 2, 2000), 0);
    uint64_t t0 = lx_harness_now_ms();
    send_chat(&wait, "served", false, "{}");
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&wait, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(lx_harness_now_ms() - t0 >= 150);
    lx_harness_resp_free(&r);
    lx_harness_close(&wait);
    for (int i = 0; i < 2; i++)
        read_stream_ok(&hold[i]);
    assert_int_equal(lx_mock_connections(H.mock[0]), 2); /* never more than the cap */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_streams_on_defaults, setup_defaults, teardown),
        cmocka_unit_test_setup_teardown(test_configured_idle_bound, setup_idle4, teardown),
        cmocka_unit_test_setup_teardown(test_cap_waiters_get_503, setup_capped, teardown),
        cmocka_unit_test_setup_teardown(test_cap_waiter_served_when_a_slot_frees, setup_capped,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
