/*
 * test_http_sse.c - SSE framing: an event around one line and several, the empty payload,
 * comments and the keep-alive bytes, and buffers one byte too small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_sse.h"

static void expect_event(const char *payload, const char *want)
{
    char buf[128];
    size_t wl = strlen(want);
    assert_int_equal(lx_sse_event(buf, sizeof(buf), payload, strlen(payload)), (int)wl);
    assert_memory_equal(buf, want, wl);
    /* exactly enough room, then one byte less */
    assert_int_equal(lx_sse_event(buf, wl, payload, strlen(payload)), (int)wl);
    assert_int_equal(lx_sse_event(buf, wl - 1, payload, strlen(payload)), LX_ETOOBIG);
}

static void test_event(void **state)
{
    (void)state;
    expect_event("{\"error\":{}}", "data: {\"error\":{}}\n\n");
    expect_event("", "data: \n\n");
    expect_event("a\nb", "data: a\ndata: b\n\n");
    expect_event("a\n", "data: a\ndata: \n\n");
    expect_event("\n\n", "data: \ndata: \ndata: \n\n");
    char buf[64];
    assert_int_equal(lx_sse_event(buf, sizeof(buf), "a\rb", 3), LX_EPARSE);
    /* the prefix and end the in-place writers use */
    assert_int_equal(strlen(LX_SSE_DATA), LX_SSE_DATA_LEN);
    assert_int_equal(strlen(LX_SSE_END), LX_SSE_END_LEN);
}

static void test_comment(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(strlen(LX_SSE_KEEPALIVE), LX_SSE_KEEPALIVE_LEN);
    assert_int_equal(lx_sse_comment(buf, sizeof(buf), "keep-alive", 10), LX_SSE_KEEPALIVE_LEN);
    assert_memory_equal(buf, LX_SSE_KEEPALIVE, LX_SSE_KEEPALIVE_LEN);
    assert_int_equal(lx_sse_comment(buf, 14, "keep-alive", 10), 14);
    assert_int_equal(lx_sse_comment(buf, 13, "keep-alive", 10), LX_ETOOBIG);
    assert_int_equal(lx_sse_comment(buf, sizeof(buf), "", 0), 4);
    assert_memory_equal(buf, ": \n\n", 4);
    assert_int_equal(lx_sse_comment(buf, sizeof(buf), "a\nb", 3), LX_EPARSE);
    assert_int_equal(lx_sse_comment(buf, sizeof(buf), "a\rb", 3), LX_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_comment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
