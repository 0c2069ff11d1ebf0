/*
 * test_http_limits.c - what llmux does with clients that break the rules: bodies and heads over
 * the limits, malformed request lines, slow heads and bodies, idle keep-alive connections, and
 * garbage bytes (which must never crash it: the next connection is still served).
 *
 * Each test starts a mock and llmux from CONFIG (small limits, short timeouts).
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
                             "limits:\n"
                             "  max_header_size: 2KiB\n"
                             "  max_body_size: 4KiB\n"
                             "timeouts:\n"
                             "  client_header: 300ms\n"
                             "  client_body: 300ms\n"
                             "  keepalive: 400ms\n"
                             "  shutdown: 200ms\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: mock-a\n"
                             "auth: none\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

/* The linger after an error answer is 1 s in llmux; closes are awaited a little longer. */
#define CLOSE_WAIT_MS 3000

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

/* llmux still answers a fresh connection. */
static void assert_alive(void)
{
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_get(H.port, "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

/* A JSON chat body of exactly <size> bytes. */
static char *body_of_size(size_t size)
{
    static const char pre[] = "{\"model\":\"m\",\"pad\":\"";
    static const char post[] = "\"}";
    char *b = malloc(size + 1);
    assert_non_null(b);
    assert_true(size > sizeof(pre) + sizeof(post));
    memcpy(b, pre, sizeof(pre) - 1);
    memset(b + sizeof(pre) - 1, 'x', size - (sizeof(pre) - 1) - (sizeof(post) - 1));
    memcpy(b + size - (sizeof(post) - 1), post, sizeof(post) - 1);
    b[size] = '\0';
    return b;
}

static void test_body_at_limit_accepted(void **state)
{
    (void)state;
    char *body = body_of_size(4096);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    free(body);
    assert_int_equal(lx_mock_requests(H.mock[0]), 1);
}

static void test_body_too_large_content_length(void **state)
{
    (void)state;
    /* declared over the limit: answered from the head alone, without waiting for the body */
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                                             "Content-Length: 4097\r\n\r\n{\"model\":\"m\""),
                     0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(lx_harness_is_error(&r, 413));
    lx_harness_resp_free(&r);
    lx_harness_close(&c);

    /* the same with the whole body sent */
    char *body = body_of_size(4097);
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
    assert_true(lx_harness_is_error(&r, 413));
    lx_harness_resp_free(&r);
    free(body);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
    assert_alive();
}

static void test_body_too_large_chunked(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                                             "Transfer-Encoding: chunked\r\n\r\n"
                                             "14\r\n{\"model\":\"m\",\"pad\":\"\r\n"),
                     0);
    char chunk[2100];
    int n = snprintf(chunk, sizeof(chunk), "7d0\r\n");
    memset(chunk + n, 'y', 2000);
    memcpy(chunk + n + 2000, "\r\n", 2);
    size_t clen = (size_t)n + 2002;
    lx_harness_resp_t r = {0};
    /* 20 + 3 * 2000 bytes: over 4 KiB on the third chunk at the latest */
    for (int i = 0; i < 3; i++)
        if (lx_harness_send(&c, chunk, clen) != 0)
            break;
    lx_harness_send_str(&c, "2\r\n\"}\r\n0\r\n\r\n");
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(lx_harness_is_error(&r, 413));
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
    assert_alive();
}

static void test_header_too_large(void **state)
{
    (void)state;
    size_t big = 3000;
    char *req = malloc(big + 256);
    assert_non_null(req);
    int n = snprintf(req, 256, "GET /v1/models HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'b', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_request(H.port, req, (size_t)n + big + 4, &r), 0);
    assert_true(lx_harness_is_error(&r, 431));
    lx_harness_resp_free(&r);

    /* many small headers add up the same way */
    size_t off = (size_t)snprintf(req, 256, "GET /v1/models HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; off + 40 < big; i++)
        off += (size_t)snprintf(req + off, 64, "X-H%d: %s\r\n", i, "vvvvvvvvvvvvvvvvvvvv");
    memcpy(req + off, "\r\n", 2);
    assert_int_equal(lx_harness_request(H.port, req, off + 2, &r), 0);
    assert_true(lx_harness_is_error(&r, 431));
    lx_harness_resp_free(&r);
    free(req);
    assert_alive();
}

static void test_malformed_request_line(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "BLAH /v1/models HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/models HTTX/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/models HTTP/1.1 extra\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        lx_harness_conn_t c;
        assert_int_equal(lx_harness_connect(&c, H.port), 0);
        assert_int_equal(lx_harness_send_str(&c, lines[i]), 0);
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c, &r), 0);
        if (r.status != 400)
            fprintf(stderr, "request %.40s answered %d\n", lines[i], r.status);
        assert_true(lx_harness_is_error(&r, 400));
        lx_harness_resp_free(&r);
        /* then the connection is closed, even though the client would send more */
        lx_harness_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_true(lx_harness_wait_closed(&c, CLOSE_WAIT_MS));
        lx_harness_close(&c);
    }
    assert_alive();
}

/* A request line without its HTTP version is an HTTP/0.9 request to llhttp; llmux speaks
 * HTTP/1.x only and cannot answer it in a form a 0.9 client reads, so it is refused. */
static void test_request_line_without_version(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "GET /v1/models\r\nHost: t\r\n\r\n"), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(lx_harness_is_error(&r, 400));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, CLOSE_WAIT_MS));
    lx_harness_close(&c);
    assert_alive();
}

static void test_slow_head_408(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"),
                     0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_true(lx_harness_is_error(&r, 408));
    assert_true(dt >= 250 && dt < 3000);
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, CLOSE_WAIT_MS));
    lx_harness_close(&c);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
    assert_alive();
}

static void test_slow_body_408(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                                             "Content-Length: 100\r\n\r\n{\"model\":"),
                     0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_true(lx_harness_is_error(&r, 408));
    assert_true(dt >= 250 && dt < 3000);
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, CLOSE_WAIT_MS));
    lx_harness_close(&c);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
    assert_alive();
}

static void test_idle_keepalive_closed(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    uint64_t t0 = lx_harness_now_ms();
    /* kept open for a while (keep-alive), closed after timeouts.keepalive (400 ms) */
    assert_true(lx_harness_still_open(&c, 150));
    assert_true(lx_harness_wait_closed(&c, 3000));
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_true(dt >= 300 && dt < 3000);
    lx_harness_close(&c);
}

/* A deadline set later than the one the timer is armed for still holds, and only then: the
 * head of a second request, started 250 ms into the keep-alive wait (400 ms), has its own
 * 300 ms and is not cut when the keep-alive deadline passes. */
static void test_later_deadline_holds(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_true(lx_harness_still_open(&c, 250));
    uint64_t t1 = lx_harness_now_ms();
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"),
                     0);
    assert_int_equal(lx_harness_read(&c, &r), 0);
    uint64_t dt = lx_harness_now_ms() - t1;
    assert_true(lx_harness_is_error(&r, 408));
    assert_true(dt >= 250 && dt < 3000);
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, CLOSE_WAIT_MS));
    lx_harness_close(&c);
    assert_alive();
}

/* Sends <data> on a fresh connection and reads a response if one comes (the close that follows
 * an error is tested above, and costs llmux's linger time). Returns its status, 0 if none. */
static int send_garbage(const void *data, size_t len)
{
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    (void)lx_harness_send(&c, data, len); /* llmux may stop reading: a failed send is fine */
    lx_harness_resp_t r;
    int status = 0;
    if (lx_harness_read(&c, &r) == 0)
        status = r.status;
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    return status;
}

static void test_garbage_never_crashes(void **state)
{
    (void)state;
    /* random binary, from a fixed seed so a failure replays */
    uint32_t x = 0x9e3779b9u;
    for (int round = 0; round < 8; round++) {
        unsigned char junk[4096];
        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk[i] = (unsigned char)x;
        }
        int st = send_garbage(junk, sizeof(junk));
        assert_true(st == 0 || (st >= 400 && st < 500));
        assert_alive();
    }

    /* a NUL inside a header value */
    static const char nul[] = "GET /v1/models HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n";
    assert_int_equal(send_garbage(nul, sizeof(nul) - 1), 400);
    assert_alive();

    /* a NUL in the request target */
    static const char nul2[] = "GET /v1/mo\0dels HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send_garbage(nul2, sizeof(nul2) - 1), 400);
    assert_alive();

    /* a huge request line, never ended */
    size_t huge = 200 * 1024;
    char *line = malloc(huge);
    assert_non_null(line);
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', huge - 5);
    int st = send_garbage(line, huge);
    assert_true(st >= 400 && st < 500);
    free(line);
    assert_alive();

    /* framing nonsense */
    static const char *const bad[] = {
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        "Content-Length: 6\r\n\r\nhello!",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "zz\r\nabc\r\n0\r\n\r\n",
        "GET /v1/models HTTP/1.1\r\nNo colon here\r\n\r\n",
        "\r\n\r\n\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        st = send_garbage(bad[i], strlen(bad[i]));
        if (st != 0 && (st < 400 || st >= 500))
            fprintf(stderr, "garbage case %zu answered %d\n", i, st);
        assert_true(st == 0 || (st >= 400 && st < 500));
        assert_alive();
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_body_at_limit_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_request_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_line_without_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_head_408, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_body_408, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_keepalive_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_deadline_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_never_crashes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
