/*
 * test_close_race.c - clients that leave, through the whole gateway.
 *
 * A client that leaves before its answer is complete is logged as 499 with error "client
 * closed the connection" (nginx's convention), while llmux waits for the provider's first
 * byte, while an early-committed stream waits for it, and mid-stream; its attempt counts as
 * cancelled in the health table and the metrics, never as the provider's failure.
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
                             "timeouts: {shutdown: 1s}\n"
                             "stream: {early_commit: true, keepalive_delay: 50ms}\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers: [{provider: mock-a, model: up-m}]\n"
                             "auth: none\n"
                             "log: {access_log: @LOG@, level: error}\n";

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

/* A POST of chat completions with request id <id> and <mock> controls (a JSON object). */
static int format_chat(char *buf, size_t cap, const char *id, bool stream, const char *mock)
{
    char body[256];
    int bn = snprintf(body, sizeof(body), "{\"model\":\"m\",\"stream\":%s,\"mock\":%s}",
                      stream ? "true" : "false", mock);
    return snprintf(buf, cap,
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                    id, bn, body);
}

static void send_chat(lx_harness_conn_t *c, const char *id, bool stream, const char *mock)
{
    char req[512];
    int n = format_chat(req, sizeof(req), id, stream, mock);
    assert_int_equal(lx_harness_connect(c, H.port), 0);
    assert_int_equal(lx_harness_send(c, req, (size_t)n), 0);
}

/* The access-log line of request <id>, once it is written (NULL after 3 s). */
static char *log_line(const char *id)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", id);
    return lx_harness_log_wait(&H, needle, 3000);
}

static void assert_gone_logged(const char *id)
{
    char *line = log_line(id);
    assert_non_null(line);
    if (strstr(line, "\"status\":499,") == NULL ||
        strstr(line, "\"error\":\"client closed the connection\"") == NULL)
        fprintf(stderr, "log line: %s\n", line);
    assert_non_null(strstr(line, "\"status\":499,"));
    assert_non_null(strstr(line, "\"error\":\"client closed the connection\""));
    free(line);
}

/* The sum over every row of llmux_upstream_attempts_total for <outcome>, from /metrics. */
static long attempts(const char *outcome)
{
    lx_harness_resp_t r;
    if (lx_harness_get(H.port, "/metrics", &r) != 0 || r.status != 200)
        return -1;
    char label[64];
    snprintf(label, sizeof(label), ",outcome=\"%s\"} ", outcome);
    long sum = 0;
    for (const char *p = strstr(r.body, "llmux_upstream_attempts_total{"); p != NULL;
         p = strstr(p + 1, "llmux_upstream_attempts_total{")) {
        const char *eol = strchr(p, '\n');
        const char *l = strstr(p, label);
        if (l != NULL && (eol == NULL || l < eol))
            sum += strtol(l + strlen(label), NULL, 10);
    }
    lx_harness_resp_free(&r);
    return sum;
}

static uint64_t want_closes;

static bool mock_saw_closes(void *arg)
{
    (void)arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= want_closes;
}

/* Leaving while llmux waits for the provider's answer (non-streaming), while an
 * early-committed stream waits for its first token, and mid-stream: each is a 499 in the log,
 * the provider's generation is cancelled, and the metrics count cancelled attempts, not
 * failures. */
static void test_client_gone_is_499(void **state)
{
    (void)state;
    lx_harness_conn_t c;

    send_chat(&c, "gone-wait", false, "{\"delay_ms\":3000}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 1, 3000), 0);
    lx_harness_close(&c);
    assert_gone_logged("gone-wait");

    send_chat(&c, "gone-first-token", true, "{\"delay_ms\":3000}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 2, 3000), 0);
    assert_true(lx_harness_wait_bytes(&c, 12, 3000)); /* the early head */
    assert_memory_equal(c.buf, "HTTP/1.1 200", 12);
    lx_harness_close(&c);
    assert_gone_logged("gone-first-token");

    send_chat(&c, "gone-mid-stream", true, "{\"chunks\":200,\"interval_ms\":10}");
    assert_true(lx_harness_wait_bytes(&c, 600, 3000)); /* the head and some events */
    assert_non_null(strstr(c.buf, "data: {"));
    lx_harness_close(&c);
    assert_gone_logged("gone-mid-stream");

    /* each generation was stopped upstream */
    want_closes = 3;
    assert_true(lx_harness_wait_until(mock_saw_closes, NULL, 3000));
    /* cancelled, not the provider's failure */
    assert_int_equal(attempts("canceled"), 3);
    static const char *const failures[] = {"connect", "timeout", "server", "bad_response"};
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
        assert_int_equal(attempts(failures[i]), 0);

    /* a client that stays gets its answer, logged as it was */
    send_chat(&c, "stays", false, "{}");
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    char *line = log_line("stays");
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":200,"));
    assert_null(strstr(line, "\"error\""));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_gone_is_499, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
