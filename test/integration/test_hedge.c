/*
 * test_hedge.c - request hedging (routing.hedge_budget) end to end: two mocks as providers p1
 * and p2 of one model, p1 first in every request's order. After a warm-up (both rows get a
 * TTFT p95, so the threshold is the 10 ms floor), faults are set on the mocks:
 * - p1 1000 ms late: the hedge on p2 answers, in well under that, exactly one well-formed
 *   response (JSON and stream), X-Llmux-Attempts 2, p1's connection closed mid-response, the
 *   access log's attempts `hedged` then `ok`, /metrics counts the `hedged` attempt;
 * - the same with stream.early_commit (the client's head sent before any attempt);
 * - a hedge stays within the request's model (not its `models` fallback);
 * - the attempt that wins keeps its own model rewrite (not the hedge's);
 * - hedge_budget 0: no hedge (p1 answers after 400 ms, one attempt);
 * - a budget of 5%: the hedges stay within what the requests earned;
 * - the client leaves while both attempts wait: both upstream connections closed, llmux
 *   serves on (ASan: nothing leaks);
 * - p1 fails (500) while the hedge waits: the hedge takes over, no third attempt;
 * - the hedge fails fast (500) while p1 is slow: p1's answer is served, no third attempt;
 * - a context-length 400 of the current attempt while the hedge races: the `models` fallback
 *   serves, within max_attempts 2 (the cancelled hedge does not count);
 * - a hedge's 429 keeps its Retry-After: the row is tried last for that second;
 * - routing.deadline passes while both wait: the request ends (503), the hedge `canceled`;
 * - a failure 40 ms before the deadline while the hedge still waits for a connection: the
 *   same, rather than a hand-over that could not answer in time.
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
#include "mock.h"

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts:\n"
                             "  upstream_first_byte: 3s\n"
                             "  shutdown: 200ms\n"
                             "routing:\n"
                             "  max_attempts: %s\n"
                             "  deadline: %s\n"
                             "  hedge_budget: %s\n"
                             "health:\n"
                             "  rescore_interval: 500ms\n"
                             "  window: 10s\n"
                             "providers:\n"
                             "  - {name: p1, base_url: \"http://127.0.0.1:@MOCK0@/v1\"}\n"
                             "  - {name: p2, base_url: \"http://127.0.0.1:@MOCK1@/v1\"}\n"
                             "%s"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - {provider: p1, price: {prompt: 1, completion: 1}}\n"
                             "      - {provider: p2, price: {prompt: 1, completion: 1}}\n"
                             "  - id: solo\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - {provider: p1, price: {prompt: 1, completion: 1}}\n"
                             "%s"
                             "auth: none\n"
                             "admin:\n"
                             "  metrics_public: true\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

static lx_harness_t H;

static void chat(const char *order, bool stream, const char *id, lx_harness_resp_t *r, uint64_t *ms)
{
    char body[512], hdr[128];
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"stream\":%s,\"provider\":{\"order\":[\"%s\"]},\"messages\":[{"
             "\"role\":\"user\",\"content\":\"hi\"}]}",
             stream ? "true" : "false", order);
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", id);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", hdr, body, r), 0);
    if (ms != NULL)
        *ms = lx_harness_now_ms() - t0;
}

/* Starts llmux with <budget>, routing.deadline <deadline> and max_attempts <max_attempts>, more
 * providers <providers> and more
 * models (or top-level YAML) <extra>, the upstreams of <o>; warms both rows of `m` up and waits
 * for a re-scoring with their p95. */
static void start_full(const lx_harness_opts_t *o, const char *budget, const char *deadline,
                       const char *max_attempts, const char *providers, const char *extra)
{
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), CONFIG, max_attempts, deadline, budget, providers, extra);
    assert_int_equal(lx_harness_start(&H, o, cfg), 0);
    for (int i = 0; i < 20; i++) {
        lx_harness_resp_t r;
        chat(i % 2 ? "p2" : "p1", i % 4 < 2, "warm", &r, NULL);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_sleep_ms(1100); /* (re-scored every 500 ms) */
}

/* Starts llmux with <budget> (and more top-level YAML <extra>) and two mocks, as start_full. */
static void start_with(const char *budget, const char *extra)
{
    lx_harness_opts_t o = {.mocks = 2};
    start_full(&o, budget, "10s", "3", "", extra);
}

static void start(const char *budget)
{
    start_with(budget, "");
}

static void set_faults(int i, uint32_t ttfb_ms, uint32_t fail_permille)
{
    lx_mock_faults_t f = {.ttfb_delay_ms = ttfb_ms, .fail_permille = fail_permille};
    lx_mock_set_faults(H.mock[i], &f);
}

static void expect_header(const lx_harness_resp_t *r, const char *name, const char *want)
{
    char v[256] = "";
    assert_true(lx_harness_resp_header(r, name, v, sizeof(v)));
    if (strcmp(v, want) != 0) {
        fprintf(stderr, "%s: \"%s\", expected \"%s\"\n", name, v, want);
        fail();
    }
}

static size_t count(const char *s, size_t len, const char *needle)
{
    size_t n = 0, k = strlen(needle);
    for (size_t i = 0; i + k <= len; i++)
        n += memcmp(s + i, needle, k) == 0;
    return n;
}

/* One answer, complete, not two interleaved. */
static void expect_one_answer(const lx_harness_resp_t *r, bool stream)
{
    assert_int_equal(r->status, 200);
    assert_true(r->complete);
    assert_int_equal(count(r->body, r->body_len, "HTTP/1."), 0);
    if (stream) {
        assert_int_equal(count(r->body, r->body_len, "data: [DONE]"), 1);
        assert_int_equal(count(r->body, r->body_len, "\"finish_reason\":\"stop\""), 1);
    } else {
        assert_int_equal(r->body[0], '{');
        assert_int_equal(count(r->body, r->body_len, "\"choices\""), 1);
    }
}

static void test_slow_replica_hedged(void **state)
{
    (void)state;
    start("1");
    set_faults(0, 1000, 0);
    for (int k = 0; k < 2; k++) {
        uint64_t closes = lx_mock_closes_by_peer(H.mock[0]), ms;
        lx_harness_resp_t r;
        chat("p1", k == 1, k ? "hedge-stream" : "hedge-json", &r, &ms);
        expect_one_answer(&r, k == 1);
        expect_header(&r, "X-Llmux-Provider", "p2");
        expect_header(&r, "X-Llmux-Attempts", "2");
        assert_true(ms < 700); /* (p1 answers after 1000 ms; a loaded machine is slow) */
        lx_harness_resp_free(&r);
        /* the loser's connection is closed while p1 still waits to answer */
        for (int i = 0; i < 200 && lx_mock_closes_by_peer(H.mock[0]) == closes; i++)
            lx_harness_sleep_ms(5);
        assert_true(lx_mock_closes_by_peer(H.mock[0]) > closes);
    }
    char *line = lx_harness_log_wait(&H, "hedge-stream", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"outcome\":\"hedged\""));
    free(line);
    lx_harness_resp_t m;
    assert_int_equal(lx_harness_get(H.port, "/metrics", &m), 0);
    assert_non_null(strstr(m.body, "outcome=\"hedged\"} 2"));
    lx_harness_resp_free(&m);
    lx_harness_stop(&H);
}

/* stream.early_commit: the client has its 200 head before any attempt; the hedge still wins
 * (nothing of an answer was sent), and the stream is the winner's alone. */
static void test_early_commit_hedged(void **state)
{
    (void)state;
    start_with("1", "stream:\n  early_commit: true\n");
    set_faults(0, 1000, 0);
    uint64_t ms;
    lx_harness_resp_t r;
    chat("p1", true, "hedge-early", &r, &ms);
    expect_one_answer(&r, true);
    assert_true(ms < 700);
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "hedge-early", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"outcome\":\"hedged\""));
    assert_non_null(strstr(line, "\"provider\":\"p2\""));
    free(line);
    lx_harness_stop(&H);
}

/* The attempt that answers first decides the rewrite of its answer: `rw` is `up-x` on p1 and
 * itself on p2; a request on p1 hedged on p2 that p1 still wins answers as `rw`, never as
 * p1's upstream name in any event of its stream (the hedge's request, built for p2, must not
 * leave its setting behind; a plain JSON answer always names the public id). */
static void test_winner_keeps_its_rewrite(void **state)
{
    (void)state;
    start_with("1", "  - id: rw\n"
                    "    context_length: 4096\n"
                    "    providers:\n"
                    "      - {provider: p1, model: up-x, price: {prompt: 1, completion: 1}}\n"
                    "      - {provider: p2, price: {prompt: 1, completion: 1}}\n");
    lx_harness_resp_t r;
    for (int i = 0; i < 20; i++) { /* (rw's own p95: without one, nothing is hedged) */
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"model\":\"rw\",\"provider\":{\"order\":[\"p%d\"]},\"messages\":[]}",
                 1 + i % 2);
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_sleep_ms(1100);
    set_faults(0, 600, 0); /* (well past the threshold, even from a slow warm-up's p95) */
    set_faults(1, 2500, 0);
    static const char body[] =
        "{\"model\":\"rw\",\"stream\":true,\"provider\":{\"order\":[\"p1\"]},"
        "\"messages\":[]}";
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    expect_header(&r, "X-Llmux-Provider", "p1");
    expect_header(&r, "X-Llmux-Attempts", "2");
    assert_non_null(strstr(r.body, "\"model\":\"rw\""));
    assert_null(strstr(r.body, "up-x"));
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

/* A hedge asks the same model: `solo` (p1 only) with `m` as its fallback model is not hedged
 * on m's p2, however late p1 is. */
static void test_hedge_keeps_the_model(void **state)
{
    (void)state;
    start("1");
    static const char body[] = "{\"model\":\"solo\",\"models\":[\"m\"],\"messages\":[{"
                               "\"role\":\"user\",\"content\":\"hi\"}]}";
    lx_harness_resp_t r;
    for (int i = 0; i < 10; i++) { /* (solo's own p95: without one, nothing is hedged) */
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_sleep_ms(1100);
    set_faults(0, 400, 0);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(
        lx_harness_post(H.port, "/v1/chat/completions", "X-Request-Id: solo\r\n", body, &r), 0);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Model", "solo");
    expect_header(&r, "X-Llmux-Attempts", "1");
    assert_true(lx_harness_now_ms() - t0 >= 400);
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

static void test_budget_zero_no_hedge(void **state)
{
    (void)state;
    start("0");
    set_faults(0, 400, 0);
    uint64_t ms;
    lx_harness_resp_t r;
    chat("p1", false, "nohedge", &r, &ms);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Provider", "p1");
    expect_header(&r, "X-Llmux-Attempts", "1");
    assert_true(ms >= 400);
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

/* 5%: the 20 warm-up requests and 20 late ones earn 2 hedges; every late request would take
 * one. */
static void test_budget_limits_hedges(void **state)
{
    (void)state;
    start("0.05");
    set_faults(0, 200, 0);
    int hedged = 0;
    for (int i = 0; i < 20; i++) {
        lx_harness_resp_t r;
        chat("p1", false, "budget", &r, NULL);
        expect_one_answer(&r, false);
        char v[16] = "";
        assert_true(lx_harness_resp_header(&r, "X-Llmux-Attempts", v, sizeof(v)));
        hedged += strcmp(v, "2") == 0;
        lx_harness_resp_free(&r);
    }
    if (hedged < 1 || hedged > 2) {
        fprintf(stderr, "%d hedged of 20 at 5%%\n", hedged);
        fail();
    }
    lx_harness_stop(&H);
}

static void test_client_leaves_mid_hedge(void **state)
{
    (void)state;
    start("1");
    set_faults(0, 1000, 0);
    set_faults(1, 1000, 0);
    uint64_t c0 = lx_mock_closes_by_peer(H.mock[0]), c1 = lx_mock_closes_by_peer(H.mock[1]);
    uint64_t n1 = lx_mock_requests(H.mock[1]);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    static const char body[] = "{\"model\":\"m\",\"stream\":true,\"provider\":{\"order\":[\"p1\"]},"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    assert_int_equal(lx_harness_send_str(&c, req), 0);
    /* both attempts out */
    for (int i = 0; i < 400 && lx_mock_requests(H.mock[1]) == n1; i++)
        lx_harness_sleep_ms(5);
    assert_true(lx_mock_requests(H.mock[1]) > n1);
    lx_harness_close(&c);
    for (int i = 0; i < 200 && (lx_mock_closes_by_peer(H.mock[0]) == c0 ||
                                lx_mock_closes_by_peer(H.mock[1]) == c1);
         i++)
        lx_harness_sleep_ms(5);
    assert_true(lx_mock_closes_by_peer(H.mock[0]) > c0);
    assert_true(lx_mock_closes_by_peer(H.mock[1]) > c1);
    set_faults(0, 0, 0);
    set_faults(1, 0, 0);
    lx_harness_resp_t r;
    chat("p1", false, "after", &r, NULL);
    expect_one_answer(&r, false);
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

static void test_first_fails_hedge_serves(void **state)
{
    (void)state;
    start("1");
    set_faults(0, 400, 1000); /* p1: a 500 after 400 ms */
    set_faults(1, 450, 0);    /* p2: an answer after 450 ms */
    uint64_t n0 = lx_mock_requests(H.mock[0]), n1 = lx_mock_requests(H.mock[1]);
    lx_harness_resp_t r;
    uint64_t ms;
    chat("p1", true, "first-fails", &r, &ms);
    expect_one_answer(&r, true);
    expect_header(&r, "X-Llmux-Provider", "p2");
    expect_header(&r, "X-Llmux-Attempts", "2");
    /* the hedge went at 10 ms and took over at 400 ms: not a failover started at 400 ms
     * (that would answer after 850 ms) */
    assert_true(ms >= 450 && ms < 750);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - n0, 1);
    assert_int_equal(lx_mock_requests(H.mock[1]) - n1, 1);
    char *line = lx_harness_log_wait(&H, "first-fails", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"outcome\":\"server\""));
    free(line);
    lx_harness_stop(&H);
}

static void test_hedge_fails_first_serves(void **state)
{
    (void)state;
    start("1");
    set_faults(0, 150, 0);  /* p1: an answer after 150 ms */
    set_faults(1, 0, 1000); /* p2: a 500 at once */
    uint64_t n0 = lx_mock_requests(H.mock[0]), n1 = lx_mock_requests(H.mock[1]);
    lx_harness_resp_t r;
    chat("p1", false, "hedge-fails", &r, NULL);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Provider", "p1");
    expect_header(&r, "X-Llmux-Attempts", "2");
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - n0, 1);
    assert_int_equal(lx_mock_requests(H.mock[1]) - n1, 1);
    lx_harness_stop(&H);
}

/* The current attempt's context-length 400 arrives while its hedge races: the request falls
 * back to its `models` list as without a hedge (the hedge, the same model, is cancelled), not
 * ends with the 400. `short` is p3 (the raw upstream, which says every prompt is too long) and
 * p2; the test holds the raw upstream's only serving slot with a connection of its own until
 * the hedge has reached p2, so the 400 comes after the hedge went out. */
static void test_context_length_falls_back_while_hedged(void **state)
{
    (void)state;
    static const char too_long[] = "{\"error\":{\"message\":\"This model's maximum context length "
                                   "is 16 tokens\",\"code\":\"context_length_exceeded\"}}";
    char reply[512];
    snprintf(reply, sizeof(reply),
             "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(too_long), too_long);
    lx_harness_opts_t o = {
        .mocks = 2, .raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = reply};
    /* max_attempts 2: the 400 and the fallback, as without a hedge (the cancelled hedge does
     * not count) */
    start_full(&o, "1", "10s", "2", "  - {name: p3, base_url: \"http://127.0.0.1:@RAW@/v1\"}\n",
               "  - id: short\n"
               "    context_length: 4096\n"
               "    providers:\n"
               "      - {provider: p3, price: {prompt: 1, completion: 1}}\n"
               "      - {provider: p2, price: {prompt: 1, completion: 1}}\n");
    lx_harness_resp_t r;
    static const char warm[] = "{\"model\":\"short\",\"provider\":{\"order\":[\"p2\"]},"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    for (int i = 0; i < 10; i++) { /* (short's own p95, from p2) */
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, warm, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_sleep_ms(1100);
    set_faults(1, 1000, 0); /* the hedge on p2 would answer after 1 s */
    lx_harness_conn_t hold;
    assert_int_equal(lx_harness_connect(&hold, lx_harness_raw_port(H.raw)), 0);
    lx_harness_sleep_ms(50); /* (the raw upstream serves the held connection) */
    uint64_t n1 = lx_mock_requests(H.mock[1]);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    static const char body[] = "{\"model\":\"short\",\"models\":[\"solo\"],\"provider\":{\"order\":"
                               "[\"p3\"]},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "X-Request-Id: cl-hedged\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    assert_int_equal(lx_harness_send_str(&c, req), 0);
    for (int i = 0; i < 400 && lx_mock_requests(H.mock[1]) == n1; i++)
        lx_harness_sleep_ms(5);
    assert_true(lx_mock_requests(H.mock[1]) > n1); /* the hedge is out */
    lx_harness_close(&hold);                       /* the raw upstream answers: too long */
    assert_int_equal(lx_harness_read(&c, &r), 0);
    lx_harness_close(&c);
    assert_int_equal(lx_harness_raw_requests(H.raw), 1);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Model", "solo");
    expect_header(&r, "X-Llmux-Provider", "p1");
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "cl-hedged", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"outcome\":\"canceled\"")); /* the hedge */
    assert_non_null(strstr(line, "\"outcome\":\"client\""));   /* the 400 */
    free(line);
    lx_harness_stop(&H);
}

/* A hedge's 429 keeps its Retry-After in the health record: p2 (already busy with a request of
 * the test's own, at max_concurrent 1) answers the hedge 429 with Retry-After: 1, and for that
 * second p2 is tried last, even by a request that orders it first. */
static void test_hedge_429_keeps_retry_after(void **state)
{
    (void)state;
    start("1");
    set_faults(0, 150, 0);
    uint64_t n1 = lx_mock_requests(H.mock[1]);
    lx_harness_conn_t busy;
    assert_int_equal(lx_harness_connect(&busy, lx_mock_port(H.mock[1])), 0);
    static const char hang[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                               "x-mock-hang: 1\r\nContent-Length: 2\r\n\r\n{}";
    assert_int_equal(lx_harness_send_str(&busy, hang), 0);
    for (int i = 0; i < 400 && lx_mock_requests(H.mock[1]) == n1; i++)
        lx_harness_sleep_ms(5);
    assert_true(lx_mock_requests(H.mock[1]) > n1);
    lx_mock_faults_t f = {.max_concurrent = 1};
    lx_mock_set_faults(H.mock[1], &f);
    uint64_t limited = lx_mock_answered_limited(H.mock[1]);
    lx_harness_resp_t r;
    chat("p1", false, "hedge-429", &r, NULL);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Provider", "p1");
    expect_header(&r, "X-Llmux-Attempts", "2");
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_answered_limited(H.mock[1]) - limited, 1);
    lx_harness_close(&busy);
    set_faults(1, 0, 0);
    set_faults(0, 0, 0);
    chat("p2", false, "after-429", &r, NULL);
    expect_one_answer(&r, false);
    expect_header(&r, "X-Llmux-Provider", "p1"); /* p2 is under its Retry-After */
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

/* routing.deadline passes while both attempts wait: the request ends then with the current
 * attempt's timeout (as without a hedge), and the hedge is cancelled, not handed the request
 * for a millisecond and charged a timeout of its own. */
static void test_deadline_ends_the_race(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 2};
    start_full(&o, "1", "400ms", "3", "", "");
    set_faults(0, 1000, 0);
    set_faults(1, 1000, 0);
    uint64_t ms;
    lx_harness_resp_t r;
    chat("p1", false, "deadline", &r, &ms);
    assert_true(lx_harness_is_error(&r, 503));
    assert_true(ms >= 390 && ms < 900);
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"deadline\"", 2000);
    assert_non_null(line);
    assert_int_equal(count(line, strlen(line), "\"outcome\":\"timeout\""), 1);
    assert_int_equal(count(line, strlen(line), "\"outcome\":\"canceled\""), 1);
    free(line);
    lx_harness_stop(&H);
}

/* The current attempt fails 40 ms before routing.deadline while its hedge still waits for a
 * connection (p4 allows one, which a long stream holds): the hedge's connect would start over
 * with less time than any attempt needs, so the request ends with the failure, as without a
 * hedge, and the hedge is cancelled, not handed over to fail at the deadline. */
static void test_unconnected_hedge_near_deadline_cancelled(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 2};
    start_full(&o, "1", "600ms", "3",
               "  - {name: p4, base_url: \"http://127.0.0.1:@MOCK1@/v1\", max_connections: 1}\n",
               "  - id: lim\n"
               "    context_length: 4096\n"
               "    providers:\n"
               "      - {provider: p1, price: {prompt: 1, completion: 1}}\n"
               "      - {provider: p4, price: {prompt: 1, completion: 1}}\n");
    lx_harness_resp_t r;
    for (int i = 0; i < 10; i++) { /* (lim's own p95) */
        char warm[256];
        snprintf(warm, sizeof(warm),
                 "{\"model\":\"lim\",\"provider\":{\"order\":[\"%s\"]},\"messages\":[]}",
                 i % 2 ? "p4" : "p1");
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, warm, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_sleep_ms(1100);
    /* a 2 s stream holds p4's only connection */
    uint64_t n1 = lx_mock_requests(H.mock[1]);
    lx_harness_conn_t a;
    assert_int_equal(lx_harness_connect(&a, H.port), 0);
    static const char sbody[] =
        "{\"model\":\"lim\",\"stream\":true,\"provider\":{\"order\":[\"p4\"]},\"messages\":[],"
        "\"mock\":{\"chunks\":20,\"interval_ms\":100}}";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(sbody), sbody);
    assert_int_equal(lx_harness_send_str(&a, req), 0);
    for (int i = 0; i < 400 && lx_mock_requests(H.mock[1]) == n1; i++)
        lx_harness_sleep_ms(5);
    assert_true(lx_mock_requests(H.mock[1]) > n1);
    set_faults(0, 560, 1000); /* p1: a 500 after 560 ms */
    static const char body[] = "{\"model\":\"lim\",\"provider\":{\"order\":[\"p1\"]},"
                               "\"messages\":[]}";
    assert_int_equal(
        lx_harness_post(H.port, "/v1/chat/completions", "X-Request-Id: near\r\n", body, &r), 0);
    assert_true(lx_harness_is_error(&r, 503));
    lx_harness_resp_free(&r);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"near\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"outcome\":\"canceled\"")); /* the hedge, never connected */
    assert_null(strstr(line, "gateway_limit"));
    free(line);
    lx_harness_close(&a);
    lx_harness_stop(&H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_replica_hedged),
        cmocka_unit_test(test_early_commit_hedged),
        cmocka_unit_test(test_hedge_keeps_the_model),
        cmocka_unit_test(test_winner_keeps_its_rewrite),
        cmocka_unit_test(test_budget_zero_no_hedge),
        cmocka_unit_test(test_budget_limits_hedges),
        cmocka_unit_test(test_client_leaves_mid_hedge),
        cmocka_unit_test(test_first_fails_hedge_serves),
        cmocka_unit_test(test_hedge_fails_first_serves),
        cmocka_unit_test(test_context_length_falls_back_while_hedged),
        cmocka_unit_test(test_hedge_429_keeps_retry_after),
        cmocka_unit_test(test_deadline_ends_the_race),
        cmocka_unit_test(test_unconnected_hedge_near_deadline_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
