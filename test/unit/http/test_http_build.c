/*
 * test_http_build.c - request heads built line by line: the bytes, a head that does not fit
 * (at every length short of it) leaving the chunk as it was, and the Host authority.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_build.h"

static const char want[] = "XYPOST /v1/chat/completions HTTP/1.1\r\nHost: api.example.com\r\n"
                           "Content-Length: 42\r\nContent-Type: application/json\r\n"
                           "Authorization: Bearer sk-1\r\nA: b\r\nC: \r\n\r\n";

/* The head above into <b> after its "XY"; the result of lx_http_build_end. */
static int build(lx_buf_t *b)
{
    lx_http_build_t hb;
    lx_http_build_request(&hb, b, "POST", "/v1/chat/completionsJUNK", 20, "api.example.com", 42);
    lx_http_build_header(&hb, "Content-Type", 12, "application/json", 16);
    lx_http_build_name(&hb, "Authorization", 13);
    lx_http_build_value(&hb, "Bearer ", 7);
    lx_http_build_value(&hb, "sk-1", 4);
    lx_http_build_eol(&hb);
    lx_http_build_lines(&hb, "A: b\r\n", 6);
    lx_http_build_header(&hb, "C", 1, "", 0);
    return lx_http_build_end(&hb);
}

static void test_head_bytes(void **state)
{
    (void)state;
    lx_buf_t *b = lx_buf_new(512);
    memcpy(b->data, "XY", 2);
    b->len = 2;
    assert_int_equal(build(b), 0);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, strlen(want));
    lx_buf_unref(b);

    b = lx_buf_new(64);
    lx_http_build_t hb;
    lx_http_build_request(&hb, b, "GET", "/v1/models", 10, "h:8080", -1);
    assert_int_equal(lx_http_build_end(&hb), 0);
    const char *get = "GET /v1/models HTTP/1.1\r\nHost: h:8080\r\n\r\n";
    assert_int_equal(b->len, strlen(get));
    assert_memory_equal(b->data, get, strlen(get));
    lx_buf_unref(b);
}

static void test_too_small_at_every_length(void **state)
{
    (void)state;
    size_t wl = strlen(want);
    for (size_t cap = 2; cap <= wl; cap++) {
        lx_buf_t *b = lx_buf_new(cap);
        memcpy(b->data, "XY", 2);
        b->len = 2;
        int rc = build(b);
        if (cap == wl) {
            assert_int_equal(rc, 0);
            assert_int_equal(b->len, wl);
        } else {
            assert_int_equal(rc, LX_ETOOBIG);
            assert_int_equal(b->len, 2);
        }
        lx_buf_unref(b);
    }
}

static void test_authority(void **state)
{
    (void)state;
    char h[32];
    assert_int_equal(lx_http_authority(h, sizeof(h), "api.example.com", 443, 443), 0);
    assert_string_equal(h, "api.example.com");
    assert_int_equal(lx_http_authority(h, sizeof(h), "api.example.com", 443, 80), 0);
    assert_string_equal(h, "api.example.com:443");
    assert_int_equal(lx_http_authority(h, sizeof(h), "10.0.0.1", 80, 80), 0);
    assert_string_equal(h, "10.0.0.1");
    assert_int_equal(lx_http_authority(h, sizeof(h), "::1", 8080, 80), 0);
    assert_string_equal(h, "[::1]:8080");
    assert_int_equal(lx_http_authority(h, sizeof(h), "::1", 80, 80), 0);
    assert_string_equal(h, "[::1]");
    assert_int_equal(lx_http_authority(h, sizeof(h), "h", 80, 0), 0);
    assert_string_equal(h, "h:80");
    /* "h:8080" and its NUL take 7 bytes */
    assert_int_equal(lx_http_authority(h, 7, "h", 8080, 80), 0);
    assert_string_equal(h, "h:8080");
    assert_int_equal(lx_http_authority(h, 6, "h", 8080, 80), LX_ETOOBIG);
    assert_int_equal(lx_http_authority(h, 0, "h", 8080, 80), LX_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_bytes),
        cmocka_unit_test(test_too_small_at_every_length),
        cmocka_unit_test(test_authority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
