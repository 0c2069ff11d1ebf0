/*
 * test_head_timeout.c - an upstream that keeps a request waiting with bytes that are not an
 * answer yet: a response head dribbled a line at a time, or `100 Continue` after `100
 * Continue`. The first-byte clock runs until the head is complete, routing.deadline bounds the
 * wait whatever the provider's own first-byte timeout, a flood of interim answers is a bad
 * response, and each case ends in failover to a healthy provider or a timely error (an
 * early-committed stream keeps its client company meanwhile). Also the mock's two faults
 * themselves, seen on the wire.
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

/* mock 0 misbehaves as each provider's headers ask; mock 1 is healthy. First byte 300 ms. */
static const char CONFIG[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {upstream_first_byte: 300ms, shutdown: 200ms}\n"
    "routing: {max_attempts: 3, deadline: 1500ms}\n"
    "stream: {early_commit: true, keepalive_delay: 50ms, keepalive_interval: 100ms}\n"
    "providers:\n"
    "  - {name: dribbler, base_url: \"http://127.0.0.1:@MOCK0@/v1\",\n"
    "     headers: {x-mock-dribble-lines: \"100000\", x-mock-dribble-ms: \"100\"}}\n"
    "  - {name: continuer, base_url: \"http://127.0.0.1:@MOCK0@/v1\",\n"
    "     headers: {x-mock-interim: \"100000\", x-mock-interim-ms: \"100\"}}\n"
    "  - {name: chatty, base_url: \"http://127.0.0.1:@MOCK0@/v1\",\n"
    "     headers: {x-mock-interim: \"20\"}}\n"
    "  - {name: patient, base_url: \"http://127.0.0.1:@MOCK0@/v1\", timeouts: {first_byte: 30s},\n"
    "     headers: {x-mock-dribble-lines: \"100000\", x-mock-dribble-ms: \"100\"}}\n"
    "  - {name: good, base_url: \"http://127.0.0.1:@MOCK1@/v1\"}\n"
    "models:\n"
    "  - {id: dribble, context_length: 4096, providers: [{provider: dribbler}, {provider: good}]}\n"
    "  - {id: dribble-only, context_length: 4096, providers: [{provider: dribbler}]}\n"
    "  - {id: continue, context_length: 4096, providers: [{provider: continuer}, {provider: "
    "good}]}\n"
    "  - {id: continue-only, context_length: 4096, providers: [{provider: continuer}]}\n"
    "  - {id: chatty, context_length: 4096, providers: [{provider: chatty}]}\n"
    "  - {id: patient, context_length: 4096, providers: [{provider: patient}]}\n"
    "  - {id: good, context_length: 4096, providers: [{provider: good}]}\n"
    "auth: none\n"
    "log: {access_log: \"@LOG@\", level: error}\n";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 2};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* POSTs a chat request for <model> with <more> body members; returns the milliseconds taken. */
static uint64_t chat(const char *model, const char *more, const char *id, lx_harness_resp_t *r)
{
    char body[512], hdr[128];
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"messages\":[]%s}", model, more);
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", id);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", hdr, body, r), 0);
    return lx_harness_now_ms() - t0;
}

static void expect_header(const lx_harness_resp_t *r, const char *name, const char *want)
{
    char v[128];
    assert_true(lx_harness_resp_header(r, name, v, sizeof(v)));
    assert_string_equal(v, want);
}

static bool mock0_saw_close(void *arg)
{
    uint64_t *n = arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= *n;
}

/* llmux gave up the misbehaving connection (the mock saw the close mid-answer). */
static void expect_given_up(uint64_t n)
{
    assert_true(lx_harness_wait_until(mock0_saw_close, &n, 2000));
}

static void test_dribbled_head_fails_over(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t dt = chat("dribble", ",\"provider\":{\"order\":[\"dribbler\",\"good\"]}", "dr-1", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-provider", "good");
    expect_header(&r, "x-llmux-attempts", "2");
    assert_true(dt >= 250 && dt < 1300); /* one first-byte timeout, then the good answer */
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[1]), 1);
    expect_given_up(1);
}

static void test_dribbled_head_alone_times_out(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t dt = chat("dribble-only", "", "dr-2", &r);
    assert_true(lx_harness_is_error(&r, 503)); /* every attempt timed out */
    assert_true(dt >= 250 && dt < 1300);
    assert_non_null(strstr(r.body, "\"error_type\":\"timeout\""));
    char msg[1024];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    assert_non_null(strstr(msg, "dribbler"));
    assert_non_null(strstr(msg, "response head"));
    lx_harness_resp_free(&r);
    expect_given_up(1);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"dr-2\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":503"));
    free(line);
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_committed_stream_keeps_company_through_a_dribbled_head(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    /* answered 200 at once (early commit): keep-alive comments flow while the dribbler's head
     * crawls, until its first-byte timeout, then the good provider's stream */
    uint64_t dt = chat(
        "dribble", ",\"stream\":true,\"provider\":{\"order\":[\"dribbler\",\"good\"]}", "dr-3", &r);
    assert_int_equal(r.status, 200);
    assert_true(dt >= 250 && dt < 1300);
    assert_true(count(r.body, ": keep-alive\n\n") >= 2);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    assert_null(strstr(r.body, "\"error\""));
    /* no keep-alive after the first event */
    assert_true(strstr(r.body, ": keep-alive") < strstr(r.body, "data: "));
    assert_null(strstr(strstr(r.body, "data: "), ": keep-alive"));
    lx_harness_resp_free(&r);
    expect_given_up(1);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"dr-3\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"attempts\":2"));
    free(line);
}

static void test_interim_flood_fails_over(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t dt =
        chat("continue", ",\"provider\":{\"order\":[\"continuer\",\"good\"]}", "ct-1", &r);
    assert_int_equal(r.status, 200);
    assert_false(r.continued); /* the upstream's interim answers are not relayed */
    expect_header(&r, "x-llmux-provider", "good");
    expect_header(&r, "x-llmux-attempts", "2");
    assert_true(dt >= 250 && dt < 1300);
    lx_harness_resp_free(&r);
    expect_given_up(1);
}

static void test_interim_alone_times_out(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    /* a 100 every 100 ms: under the eight allowed until the first-byte timeout */
    uint64_t dt = chat("continue-only", "", "ct-2", &r);
    assert_true(lx_harness_is_error(&r, 503));
    assert_true(dt >= 250 && dt < 1300);
    lx_harness_resp_free(&r);
    expect_given_up(1);
}

static void test_too_many_interim_is_a_bad_response(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    /* twenty at once: the ninth ends the attempt, long before any timeout */
    uint64_t dt = chat("chatty", "", "ct-3", &r);
    assert_true(lx_harness_is_error(&r, 502));
    assert_true(dt < 250);
    char msg[1024];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    assert_non_null(strstr(msg, "1xx"));
    assert_non_null(strstr(r.body, "\"error_type\":\"bad_response\""));
    lx_harness_resp_free(&r);
}

static void test_deadline_bounds_the_head(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    /* the provider may take 30 s to its first byte, but the request only has 1.5 s */
    uint64_t dt = chat("patient", "", "dl-1", &r);
    assert_true(r.status == 503 || r.status == 504);
    assert_true(lx_harness_is_error(&r, r.status));
    assert_true(dt >= 1400 && dt < 2500);
    lx_harness_resp_free(&r);
    expect_given_up(1);
}

static void test_slow_head_within_bounds_is_served(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    /* a head in three lines 50 ms apart, and two interim answers: both well under 300 ms */
    chat("good", ",\"mock\":{\"dribble_lines\":3,\"dribble_ms\":50}", "ok-1", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"chat.completion\""));
    char v[64];
    assert_false(lx_harness_resp_header(&r, "x-mock-dribble", v, sizeof(v))); /* not relayed */
    lx_harness_resp_free(&r);
    chat("good", ",\"mock\":{\"interim\":2,\"interim_ms\":50}", "ok-2", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-attempts", "1");
    lx_harness_resp_free(&r);
    /* and streams */
    chat("good", ",\"stream\":true,\"mock\":{\"dribble_lines\":2,\"dribble_ms\":50}", "ok-3", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    lx_harness_resp_free(&r);
}

/* ---- the mock's faults on the wire ------------------------------------------------------- */

static void send_raw(lx_harness_conn_t *c, uint16_t port, const char *headers)
{
    char req[512];
    const char *body = "{\"model\":\"m\",\"messages\":[]}";
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n"
                     "\r\n%s",
                     headers, strlen(body), body);
    assert_int_equal(lx_harness_connect(c, port), 0);
    assert_int_equal(lx_harness_send(c, req, (size_t)n), 0);
}

static int count_status_lines(const char *head)
{
    int n = 0;
    for (const char *p = strstr(head, "HTTP/1."); p != NULL; p = strstr(p + 1, "HTTP/1."))
        n++;
    return n;
}

static void test_mock_dribbles_a_head(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    uint16_t port = lx_mock_port(H.mock[1]);
    send_raw(&c, port, "x-mock-dribble-lines: 3\r\nx-mock-dribble-ms: 100\r\n");
    /* the status line and the first line at once, the rest 100 ms apart */
    static const char first[] = "HTTP/1.1 200 OK\r\nX-Mock-Dribble: 3\r\n";
    assert_true(lx_harness_wait_bytes(&c, sizeof(first) - 1, 1000));
    assert_memory_equal(c.buf, first, sizeof(first) - 1);
    assert_int_equal(c.len, sizeof(first) - 1);
    lx_harness_sleep_ms(50);
    assert_false(lx_harness_wait_bytes(&c, sizeof(first), 0));
    uint64_t t0 = lx_harness_now_ms();
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(lx_harness_now_ms() - t0 >= 200);
    assert_int_equal(r.status, 200);
    assert_false(r.continued);
    char v[64];
    assert_true(lx_harness_resp_header(&r, "x-mock-dribble", v, sizeof(v)));
    assert_true(lx_harness_resp_header(&r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "application/json");
    assert_true(r.complete);
    assert_non_null(strstr(r.body, "\"chat.completion\""));
    assert_int_equal(count_status_lines(r.head), 1);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
}

static void test_mock_repeats_continue(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    uint16_t port = lx_mock_port(H.mock[1]);
    uint64_t t0 = lx_harness_now_ms();
    send_raw(&c, port, "x-mock-interim: 3\r\nx-mock-interim-ms: 60\r\n");
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_true(lx_harness_wait_bytes(&c, 3 * (sizeof(cont) - 1), 1000));
    for (int i = 0; i < 3; i++)
        assert_memory_equal(c.buf + i * (sizeof(cont) - 1), cont, sizeof(cont) - 1);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(lx_harness_now_ms() - t0 >= 150);
    assert_true(r.continued);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dribbled_head_fails_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dribbled_head_alone_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_committed_stream_keeps_company_through_a_dribbled_head,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_flood_fails_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_alone_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_interim_is_a_bad_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_bounds_the_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_head_within_bounds_is_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mock_dribbles_a_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mock_repeats_continue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
