/*
 * test_http_client.c - the upstream response codec: head fields, Content-Length, chunked and
 * close-delimited bodies, cut responses, interim 1xx answers (and their bound), heads arriving
 * line by line, keep-alive decisions, limits, byte-at-a-time feeding, callback stops, and
 * request head formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_client.h"

typedef struct rec {
    int heads;
    int completes;
    int status_at_head;
    size_t body_len;
    char body[8192];
    unsigned n_pieces;
    bool pieces_in_chunk; /* every body piece pointed into the chunk given with it */
    lx_buf_t *expect_buf;
    int head_rc; /* what on_head returns */
    int body_rc; /* what on_body returns */
} rec_t;

static int rec_head(lx_http_client_t *hc)
{
    rec_t *r = hc->data;
    r->heads++;
    r->status_at_head = hc->status;
    return r->head_rc;
}

static int rec_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    rec_t *r = hc->data;
    if (b != r->expect_buf || at < b->data || at + len > b->data + b->len)
        r->pieces_in_chunk = false;
    assert_true(r->body_len + len <= sizeof(r->body));
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->n_pieces++;
    return r->body_rc;
}

static int rec_complete(lx_http_client_t *hc)
{
    rec_t *r = hc->data;
    r->completes++;
    return 0;
}

static const lx_http_client_cbs_t cbs = {rec_head, rec_body, rec_complete};

static lx_http_client_t hc;
static rec_t rec;

static void start(uint64_t max_head)
{
    memset(&rec, 0, sizeof(rec));
    rec.pieces_in_chunk = true;
    lx_http_client_init(&hc, &cbs, max_head, &rec);
}

/* Feeds <text> in one chunk; returns the parse result. */
static int feed(const char *text, size_t len)
{
    lx_buf_t *b = lx_buf_new(len + 1);
    assert_non_null(b);
    memcpy(b->data, text, len);
    b->len = (uint32_t)len;
    rec.expect_buf = b;
    int rc = lx_http_client_parse(&hc, b, b->data, len);
    lx_buf_unref(b);
    return rc;
}

static int feed_s(const char *text)
{
    return feed(text, strlen(text));
}

/* Feeds <text> one byte per call, each byte in its own chunk; stops at the first error. */
static int feed_bytes(const char *text)
{
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i++) {
        int rc = feed(text + i, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void test_head_fields(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(hc.retry_after, -1);
    assert_int_equal(feed_s("HTTP/1.1 429 Too Many Requests\r\n"
                            "Server: x\r\n"
                            "content-type: application/json; charset=utf-8\r\n"
                            "Retry-After: 17\r\n"
                            "Content-Length: 2\r\n"
                            "\r\n"
                            "{}"),
                     0);
    assert_int_equal(hc.status, 429);
    assert_int_equal(rec.status_at_head, 429);
    assert_string_equal(hc.content_type, "application/json; charset=utf-8");
    assert_int_equal(hc.retry_after, 17);
    assert_true(hc.head_done);
    assert_true(hc.has_length);
    assert_false(hc.chunked);
    assert_int_equal(hc.content_length, 2);
    assert_true(hc.complete);
    assert_true(hc.keep_alive);
    assert_int_equal(rec.heads, 1);
    assert_int_equal(rec.completes, 1);
    assert_int_equal(rec.body_len, 2);
    assert_memory_equal(rec.body, "{}", 2);
    assert_null(hc.error);
}

static void test_retry_after_forms(void **state)
{
    (void)state;
    /* an HTTP date is not a delta: ignored */
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 503 Unavailable\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 "
                            "GMT\r\nContent-Length: 0\r\n\r\n"),
                     0);
    assert_int_equal(hc.retry_after, -1);
    assert_true(hc.complete);
    /* a huge delta is capped at a day */
    start(8192);
    assert_int_equal(
        feed_s("HTTP/1.1 503 Unavailable\r\nRetry-After: 99999999\r\nContent-Length: 0\r\n\r\n"),
        0);
    assert_int_equal(hc.retry_after, 86400);
    assert_string_equal(hc.content_type, "");
}

static void test_content_length_body(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello"), 0);
    assert_int_equal(rec.heads, 1);
    assert_false(hc.complete);
    assert_int_equal(feed_s(" world"), 0);
    assert_true(hc.complete);
    assert_int_equal(rec.completes, 1);
    assert_true(rec.pieces_in_chunk);
    assert_int_equal(rec.body_len, 11);
    assert_memory_equal(rec.body, "hello world", 11);
    assert_true(hc.keep_alive);
    assert_int_equal(lx_http_client_eof(&hc), 0);
}

static void test_chunked_body(void **state)
{
    (void)state;
    start(8192);
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"
                       "6\r\ndata: \r\n"
                       "a\r\n{\"x\":1}\n\n\n\r\n"
                       "0\r\n\r\n";
    lx_buf_t *b = lx_buf_new(strlen(resp));
    memcpy(b->data, resp, strlen(resp));
    b->len = (uint32_t)strlen(resp);
    rec.expect_buf = b;
    assert_int_equal(lx_http_client_parse(&hc, b, b->data, b->len), 0);
    assert_true(hc.chunked);
    assert_false(hc.has_length);
    assert_true(hc.complete);
    assert_true(hc.keep_alive);
    assert_true(rec.pieces_in_chunk);
    assert_int_equal(rec.n_pieces, 2);
    assert_int_equal(rec.body_len, 16);
    assert_memory_equal(rec.body, "data: {\"x\":1}\n\n\n", 16);
    assert_string_equal(hc.content_type, "text/event-stream");
    lx_buf_unref(b);
}

static void test_close_delimited(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome "), 0);
    assert_int_equal(feed_s("bytes"), 0);
    assert_false(hc.complete);
    assert_false(hc.keep_alive);
    assert_int_equal(lx_http_client_eof(&hc), 0);
    assert_true(hc.complete);
    assert_int_equal(rec.completes, 1);
    assert_int_equal(rec.body_len, 10);
    assert_memory_equal(rec.body, "some bytes", 10);

    /* HTTP/1.0 without a length is close-delimited too */
    start(8192);
    assert_int_equal(feed_s("HTTP/1.0 200 OK\r\n\r\nabc"), 0);
    assert_false(hc.complete);
    assert_int_equal(lx_http_client_eof(&hc), 0);
    assert_int_equal(rec.body_len, 3);
    assert_false(hc.keep_alive);
}

static void test_eof_before_head(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(lx_http_client_eof(&hc), LX_EUPSTREAM);
    assert_non_null(hc.error);
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Le"), 0);
    assert_int_equal(lx_http_client_eof(&hc), LX_EUPSTREAM);
    assert_non_null(hc.error);
    assert_int_equal(rec.heads, 0);
    assert_int_equal(rec.completes, 0);
}

static void test_eof_mid_body(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), 0);
    assert_int_equal(lx_http_client_eof(&hc), LX_EUPSTREAM);
    assert_non_null(hc.error);
    assert_false(hc.complete);
    assert_int_equal(rec.completes, 0);

    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
                     0);
    assert_int_equal(lx_http_client_eof(&hc), LX_EUPSTREAM);
    assert_int_equal(rec.completes, 0);
    assert_int_equal(rec.body_len, 3);
}

static void test_continue_then_final(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    assert_int_equal(rec.heads, 0);
    assert_false(hc.head_done);
    assert_false(hc.complete);
    assert_int_equal(feed_s("HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz"), 0);
    assert_int_equal(rec.heads, 1);
    assert_int_equal(rec.status_at_head, 201);
    assert_int_equal(hc.status, 201);
    assert_true(hc.complete);
    assert_true(hc.keep_alive);
    assert_int_equal(rec.body_len, 3);

    /* both in one read */
    start(8192);
    assert_int_equal(
        feed_s("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"), 0);
    assert_int_equal(rec.heads, 1);
    assert_int_equal(hc.status, 200);
    assert_true(hc.complete);
    assert_true(hc.keep_alive);
}

static void test_continue_resets_head_budget(void **state)
{
    (void)state;
    /* each head is measured on its own: two heads that each fit pass */
    start(120);
    assert_int_equal(feed_s("HTTP/1.1 100 Continue\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                            "aaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
                     0);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                            "aaaaaaaaaaaaaaaa\r\nContent-Length: 0\r\n\r\n"),
                     0);
    assert_true(hc.complete);
}

static void test_interim_bound(void **state)
{
    (void)state;
    /* up to LX_HTTP_CLIENT_MAX_INTERIM interim answers, in separate reads or together, then
     * the final one */
    start(8192);
    for (int i = 0; i < LX_HTTP_CLIENT_MAX_INTERIM; i++) {
        assert_int_equal(feed_s(i % 2 ? "HTTP/1.1 100 Continue\r\n\r\n"
                                      : "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
                         0);
        assert_false(hc.head_done);
    }
    assert_int_equal(hc.n_interim, LX_HTTP_CLIENT_MAX_INTERIM);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 0);
    assert_int_equal(rec.heads, 1);
    assert_true(hc.complete);

    /* one more is a bad response, never a head */
    start(8192);
    for (int i = 0; i < LX_HTTP_CLIENT_MAX_INTERIM; i++)
        assert_int_equal(feed_s("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    assert_int_equal(feed_s("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), LX_EUPSTREAM);
    assert_non_null(hc.error);
    assert_non_null(strstr(hc.error, "1xx"));
    assert_int_equal(rec.heads, 0);
    assert_false(hc.head_done);
}

static void test_head_line_by_line(void **state)
{
    (void)state;
    /* a head that arrives a line per read is not done until its blank line */
    start(8192);
    static const char *const lines[] = {"HTTP/1.1 200 OK\r\n", "X-A: 1\r\n", "X-B: 2\r\n",
                                        "Content-Length: 1\r\n"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        assert_int_equal(feed_s(lines[i]), 0);
        assert_false(hc.head_done);
        assert_int_equal(rec.heads, 0);
    }
    assert_int_equal(feed_s("\r\n"), 0);
    assert_true(hc.head_done);
    assert_int_equal(rec.heads, 1);
    assert_int_equal(feed_s("x"), 0);
    assert_true(hc.complete);
}

static void test_trailing_bytes_clear_keep_alive(void **state)
{
    (void)state;
    /* in the same read as the end of the response */
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"),
                     0);
    assert_true(hc.complete);
    assert_false(hc.keep_alive);
    assert_int_equal(rec.completes, 1);
    assert_int_equal(rec.body_len, 2);

    /* in a later read */
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 0);
    assert_true(hc.complete);
    assert_true(hc.keep_alive);
    assert_int_equal(feed_s("x"), 0);
    assert_false(hc.keep_alive);
    assert_int_equal(rec.completes, 1);
    assert_int_equal(rec.body_len, 2);
}

static void test_connection_close(void **state)
{
    (void)state;
    start(8192);
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
                     0);
    assert_true(hc.complete);
    assert_false(hc.keep_alive);
    start(8192);
    assert_int_equal(feed_s("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), 0);
    assert_true(hc.complete);
    assert_false(hc.keep_alive);
}

static void test_oversized_head(void **state)
{
    (void)state;
    start(64);
    char big[256];
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: %0100d\r\n\r\n", 7);
    assert_int_equal(feed_s(big), LX_EUPSTREAM);
    assert_non_null(hc.error);
    assert_non_null(strstr(hc.error, "too large"));
    assert_int_equal(rec.heads, 0);

    /* many small headers add up */
    start(100);
    int rc = feed_s("HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = feed_s("A: b\r\n");
    assert_int_equal(rc, LX_EUPSTREAM);
    assert_non_null(hc.error);

    /* the body does not count */
    start(100);
    static char resp[5000];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n");
    memset(resp + n, 'b', 4000);
    assert_int_equal(feed(resp, (size_t)n + 4000), 0);
    assert_true(hc.complete);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "HTTP/1.1 abc OK\r\n\r\n",
        "SMTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "garbage\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        start(8192);
        assert_int_equal(feed_s(bad[i]), LX_EUPSTREAM);
        assert_non_null(hc.error);
        assert_false(hc.complete);
    }
}

static void check_same(const char *resp, bool use_eof)
{
    start(8192);
    assert_int_equal(feed_s(resp), 0);
    if (use_eof)
        assert_int_equal(lx_http_client_eof(&hc), 0);
    rec_t whole = rec;
    lx_http_client_t whole_hc = hc;

    start(8192);
    assert_int_equal(feed_bytes(resp), 0);
    if (use_eof)
        assert_int_equal(lx_http_client_eof(&hc), 0);
    assert_int_equal(rec.heads, whole.heads);
    assert_int_equal(rec.completes, whole.completes);
    assert_int_equal(rec.completes, 1);
    assert_int_equal(rec.body_len, whole.body_len);
    assert_memory_equal(rec.body, whole.body, whole.body_len);
    assert_true(rec.pieces_in_chunk);
    assert_int_equal(hc.status, whole_hc.status);
    assert_int_equal(hc.keep_alive, whole_hc.keep_alive);
    assert_int_equal(hc.chunked, whole_hc.chunked);
    assert_int_equal(hc.retry_after, whole_hc.retry_after);
    assert_string_equal(hc.content_type, whole_hc.content_type);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    check_same("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
               "Content-Length: 13\r\n\r\n{\"a\":\"hello\"}",
               false);
    check_same("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               "Transfer-Encoding: chunked\r\n\r\n"
               "7\r\ndata: 1\r\n10\r\n\n\ndata: [DONE]\n\n\r\n0\r\n\r\n",
               false);
    check_same("HTTP/1.1 500 Oops\r\nConnection: close\r\nCONTENT-TYPE: text/plain\r\n\r\nfail",
               true);
}

static void test_body_callback_stops(void **state)
{
    (void)state;
    /* per the contract, a callback's non-zero value comes back from parse */
    start(8192);
    rec.body_rc = -1;
    assert_int_equal(feed_s("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"), -1);
    assert_false(hc.complete);
    assert_int_equal(rec.completes, 0);
    assert_null(hc.error); /* not an upstream fault */
}

static void test_head_callback_stops(void **state)
{
    (void)state;
    /* on_head failing (e.g. the client went away) stops parsing and is not an upstream fault:
     * parse returns the callback's value, as for on_body */
    start(8192);
    rec.head_rc = -1;
    int rc = feed_s("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd");
    assert_int_equal(rec.heads, 1);
    assert_int_equal(rec.body_len, 0); /* parsing stopped at the head */
    assert_int_equal(rc, -1);
    assert_null(hc.error); /* not an upstream fault */
}

static void test_format_head(void **state)
{
    (void)state;
    lx_buf_t *b = lx_buf_new(512);
    memcpy(b->data, "XY", 2);
    b->len = 2;
    const char *extra = "Authorization: Bearer k\r\nContent-Type: application/json\r\n";
    assert_int_equal(lx_http_client_format_head(b, "POST", "/v1/chat/completionsJUNK", 20,
                                                "api.example.com", extra, strlen(extra), 42),
                     0);
    const char *want = "XYPOST /v1/chat/completions HTTP/1.1\r\nHost: api.example.com\r\n"
                       "Content-Length: 42\r\nAuthorization: Bearer k\r\n"
                       "Content-Type: application/json\r\n\r\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, strlen(want));

    b->len = 0;
    assert_int_equal(lx_http_client_format_head(b, "GET", "/v1/models", 10, "h:8080", "", 0, -1),
                     0);
    want = "GET /v1/models HTTP/1.1\r\nHost: h:8080\r\n\r\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, strlen(want));

    b->len = 0;
    assert_int_equal(lx_http_client_format_head(b, "POST", "/", 1, "h", "", 0, 0), 0);
    want = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, strlen(want));
    lx_buf_unref(b);
}

static void test_format_head_too_big(void **state)
{
    (void)state;
    const char *want = "GET /x HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n"; /* 34 bytes */
    size_t wl = strlen(want);
    /* exactly enough room fits */
    lx_buf_t *b = lx_buf_new(wl);
    assert_int_equal(lx_http_client_format_head(b, "GET", "/x", 2, "h", "A: b\r\n", 6, -1), 0);
    assert_int_equal(b->len, wl);
    assert_memory_equal(b->data, want, wl);
    lx_buf_unref(b);

    /* one byte short: refused and len untouched, for each part that may overflow */
    b = lx_buf_new(wl - 1);
    assert_int_equal(lx_http_client_format_head(b, "GET", "/x", 2, "h", "A: b\r\n", 6, -1),
                     LX_ETOOBIG);
    assert_int_equal(b->len, 0);
    lx_buf_unref(b);

    b = lx_buf_new(20);
    assert_int_equal(
        lx_http_client_format_head(b, "GET", "/a-rather-long-path", 19, "host", "", 0, -1),
        LX_ETOOBIG);
    assert_int_equal(b->len, 0);
    lx_buf_unref(b);

    /* room already used counts */
    b = lx_buf_new(64);
    b->len = 40;
    assert_int_equal(lx_http_client_format_head(b, "GET", "/x", 2, "h", "A: b\r\n", 6, -1),
                     LX_ETOOBIG);
    assert_int_equal(b->len, 40);
    lx_buf_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_fields),
        cmocka_unit_test(test_retry_after_forms),
        cmocka_unit_test(test_content_length_body),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_eof_before_head),
        cmocka_unit_test(test_eof_mid_body),
        cmocka_unit_test(test_continue_then_final),
        cmocka_unit_test(test_continue_resets_head_budget),
        cmocka_unit_test(test_interim_bound),
        cmocka_unit_test(test_head_line_by_line),
        cmocka_unit_test(test_trailing_bytes_clear_keep_alive),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_oversized_head),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_format_head),
        cmocka_unit_test(test_format_head_too_big),
        cmocka_unit_test(test_body_callback_stops),
        cmocka_unit_test(test_head_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
