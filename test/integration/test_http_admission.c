/*
 * test_http_admission.c - refusing requests on their head alone, over real sockets
 * (test/support/http_fixture.c: the server alone with an echo handler):
 *
 * - on_head answers 401 for a request announcing a 1 MiB body with Expect: 100-continue: no
 *   100 Continue goes out, the 401 (with the hook's extra header, in the error envelope) comes
 *   before the client sent any body byte, the connection closes, the handler never sees the
 *   request and on_done still logs it;
 * - limits.max_body_memory: a body that would take the buffered bodies over the cap is answered
 *   503 with Retry-After: 1 before it is sent; once the first body is done its memory is back
 *   and the same request is served.
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
#include "http_fixture.h"

static lx_http_fixture_t *F;

static int refuse_private(lx_http_request_t *req, const char **message, const char **headers)
{
    if (req->path.len == 8 && memcmp(req->path.ptr, "/private", 8) == 0 &&
        lx_http_request_header(req, "authorization") == NULL) {
        *message = "this route needs a key";
        *headers = "WWW-Authenticate: Bearer realm=\"llmux\"\r\n";
        return 401;
    }
    return 0;
}

static void stop(void)
{
    lx_http_fixture_stats_t st;
    assert_true(lx_http_fixture_wait_idle(F, 10000));
    lx_http_fixture_stop(F, &st);
    F = NULL;
    assert_int_equal(st.requests, st.dones);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.body_memory, 0);
}

static void test_on_head_refuses_before_the_body(void **state)
{
    (void)state;
    lx_http_fixture_opts_t o = {.on_head = refuse_private};
    F = lx_http_fixture_start(&o);
    assert_non_null(F);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send_str(&c, "POST /private HTTP/1.1\r\nHost: t\r\n"
                                             "Expect: 100-continue\r\n"
                                             "Content-Length: 1048576\r\n\r\n"),
                     0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0); /* no body byte was sent */
    assert_false(r.continued);
    assert_int_equal(r.status, 401);
    char v[128];
    assert_true(lx_harness_resp_header(&r, "www-authenticate", v, sizeof(v)));
    assert_string_equal(v, "Bearer realm=\"llmux\"");
    assert_true(lx_harness_resp_header(&r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_non_null(strstr(r.body, "this route needs a key"));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, 5000));
    lx_harness_close(&c);

    /* with a key it goes on: 100 Continue, then the body, then the answer */
    assert_int_equal(lx_harness_connect(&c, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send_str(&c, "POST /private HTTP/1.1\r\nHost: t\r\n"
                                             "Authorization: Bearer k\r\nExpect: 100-continue\r\n"
                                             "Content-Length: 5\r\n\r\n"),
                     0);
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_true(lx_harness_wait_bytes(&c, sizeof(cont) - 1, 5000));
    assert_memory_equal(c.buf, cont, sizeof(cont) - 1);
    assert_int_equal(lx_harness_send_str(&c, "hello"), 0);
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(r.continued);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "len=5 sum=4f9f2cab\n");
    lx_harness_resp_free(&r);
    lx_harness_close(&c);

    lx_http_fixture_stats_t st;
    assert_true(lx_http_fixture_wait_idle(F, 10000));
    lx_http_fixture_stats(F, &st);
    assert_int_equal(st.requests, 1);    /* the refused one never reached the handler */
    assert_int_equal(st.refusals[4], 1); /* ... and was logged */
    stop();
}

static bool a_buffered(void *arg)
{
    (void)arg;
    return lx_http_body_memory() == 200000;
}

static void test_body_memory_cap(void **state)
{
    (void)state;
    lx_http_fixture_opts_t o = {.limits = {.max_body_memory = 256 * 1024}};
    F = lx_http_fixture_start(&o);
    assert_non_null(F);
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n";
    char *body = malloc(200000);
    assert_non_null(body);
    memset(body, 'b', 200000);

    lx_harness_conn_t a, b;
    assert_int_equal(lx_harness_connect(&a, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send_str(&a, head), 0);
    assert_int_equal(lx_harness_send(&a, body, 1000), 0); /* A's body is on its way */
    assert_true(lx_harness_wait_until(a_buffered, NULL, 5000));

    assert_int_equal(lx_harness_connect(&b, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send_str(&b, head), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&b, &r), 0);
    assert_int_equal(r.status, 503);
    char v[64];
    assert_true(lx_harness_resp_header(&r, "retry-after", v, sizeof(v)));
    assert_string_equal(v, "1");
    lx_harness_resp_free(&r);
    lx_harness_close(&b);

    /* A finishes; its buffer goes back; the same request now fits */
    assert_int_equal(lx_harness_send(&a, body + 1000, 199000), 0);
    assert_int_equal(lx_harness_read(&a, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_connect(&b, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send_str(&b, head), 0);
    assert_int_equal(lx_harness_send(&b, body, 200000), 0);
    assert_int_equal(lx_harness_read(&b, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&a);
    lx_harness_close(&b);
    free(body);
    stop();
}

/* A chunked body of any size up to max_body_size fits when max_body_memory equals it and
 * nothing else is buffered: a growing buffer is charged for what it adds, not twice. */
static void test_chunked_body_fits_the_cap(void **state)
{
    (void)state;
    lx_http_fixture_opts_t o = {.limits = {.max_body_size = 1 << 20, .max_body_memory = 1 << 20}};
    F = lx_http_fixture_start(&o);
    assert_non_null(F);
    static const size_t sizes[] = {600067, 1 << 19, (1 << 20) - 1, 1 << 20};
    char *chunk = malloc(10000);
    assert_non_null(chunk);
    memset(chunk, 'c', 10000);
    for (size_t i = 0; i < LX_ARRAY_SIZE(sizes); i++) {
        lx_harness_conn_t a;
        assert_int_equal(lx_harness_connect(&a, lx_http_fixture_port(F)), 0);
        assert_int_equal(lx_harness_send_str(&a, "POST /echo HTTP/1.1\r\nHost: t\r\n"
                                                 "Transfer-Encoding: chunked\r\n\r\n"),
                         0);
        for (size_t sent = 0; sent < sizes[i];) {
            size_t n = LX_MIN((size_t)10000, sizes[i] - sent);
            char line[32];
            snprintf(line, sizeof(line), "%zx\r\n", n);
            assert_int_equal(lx_harness_send_str(&a, line), 0);
            assert_int_equal(lx_harness_send(&a, chunk, n), 0);
            assert_int_equal(lx_harness_send_str(&a, "\r\n"), 0);
            sent += n;
        }
        assert_int_equal(lx_harness_send_str(&a, "0\r\n\r\n"), 0);
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&a, &r), 0);
        if (r.status != 200)
            fprintf(stderr, "a chunked body of %zu bytes: %d\n", sizes[i], r.status);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
        lx_harness_close(&a);
    }
    free(chunk);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_on_head_refuses_before_the_body),
        cmocka_unit_test(test_body_memory_cap),
        cmocka_unit_test(test_chunked_body_fits_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
