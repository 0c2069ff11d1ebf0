/*
 * test_http_filter.c - which client headers go upstream: every name the filter drops, in any
 * case, and the names next to them (same length, a byte off, a prefix) that it keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_filter.h"

static bool fwd(const char *name)
{
    return lx_http_forwardable((lx_str_t){name, strlen(name)});
}

static const char *const dropped[] = {
    "te",
    "host",
    "expect",
    "cookie",
    "trailer",
    "upgrade",
    "connection",
    "keep-alive",
    "x-request-id",
    "content-type",
    "x-session-id",
    "authorization",
    "content-length",
    "accept-encoding",
    "proxy-connection",
    "content-encoding",
    "transfer-encoding",
    "proxy-authorization",
    "x-llmux-",
    "x-llmux-route",
};

static void test_dropped_in_any_case(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        char name[64];
        size_t n = strlen(dropped[i]);
        memcpy(name, dropped[i], n + 1);
        assert_false(fwd(name));
        for (size_t k = 0; k < n; k++) /* upper case, one byte at a time, then all */
            if (name[k] >= 'a' && name[k] <= 'z')
                name[k] -= 32;
        assert_false(fwd(name));
        name[0] = dropped[i][0];
        assert_false(fwd(name));
    }
}

static void test_kept(void **state)
{
    (void)state;
    const char *kept[] = {
        "tf",
        "hosu",
        "accept",
        "user-agent",
        "openai-organization",
        "x-request-ie",
        "content-typf",
        "x-llmux",
        "x-llmuxx-a",
        "authorizatioN2",
        "transfer-encodinf",
        "proxy-authorizatiom",
        "",
        "a",
        "x-stainless-lang",
        "http-referer",
        "connectiom",
        "keep-alivf",
        "trailers",
        "content-lengtH ",
    };
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        assert_true(fwd(kept[i]));
}

static void test_name_is(void **state)
{
    (void)state;
    /* ASCII case only: bytes that differ by 0x20 outside the letters do not match */
    assert_true(lx_http_name_is("Content-Length", "content-length", 14));
    assert_true(lx_http_name_is("X-LLMUX-", "x-llmux-", 8));
    assert_false(lx_http_name_is("content\rlength", "content-length", 14));
    assert_false(lx_http_name_is("[ost", "{ost", 4));
    assert_false(lx_http_name_is("@BCDEFGHI", "`bcdefghi", 9));
    assert_false(lx_http_name_is("ABCDEFGH\xc1", "abcdefgh\xe1", 9));
    assert_false(lx_http_name_is("\xc1", "\xe1", 1));
    /* the overlapping tail of a name that is not a multiple of eight */
    assert_false(lx_http_name_is("content-lengtx", "content-length", 14));
    assert_false(lx_http_name_is("xontent-length", "content-length", 14));
    assert_true(lx_http_name_is("", "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropped_in_any_case),
        cmocka_unit_test(test_kept),
        cmocka_unit_test(test_name_is),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
