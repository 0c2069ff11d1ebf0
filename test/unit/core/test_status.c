/*
 * test_status.c - lx_strerror: the project's codes, libuv's (negated errno) range, success,
 * end of file and unknown codes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"

static void test_project_codes(void **state)
{
    (void)state;
    assert_string_equal(lx_strerror(LX_ENOMEM), "out of memory");
    assert_string_equal(lx_strerror(LX_EPARSE), "malformed HTTP message");
    assert_string_equal(lx_strerror(LX_ETOOBIG), "message too large");
    assert_string_equal(lx_strerror(LX_EUPSTREAM), "upstream sent an invalid response");
    assert_string_equal(lx_strerror(LX_ECANCELED), "request canceled");
    /* every code has its own text and sits below libuv's range */
#define XX(name, code, text)                                                                       \
    assert_true(code < -4095);                                                                     \
    assert_string_equal(lx_strerror(LX_##name), text);
    LX_STATUS_MAP(XX)
#undef XX
    static const int codes[] = {
#define XX(name, code, text) code,
        LX_STATUS_MAP(XX)
#undef XX
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        for (size_t j = i + 1; j < sizeof(codes) / sizeof(codes[0]); j++)
            assert_int_not_equal(codes[i], codes[j]);
}

static void test_libuv_codes(void **state)
{
    (void)state;
    /* libuv's codes on Unix are negated errno values */
    assert_string_equal(lx_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
    assert_string_equal(lx_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
    assert_string_equal(lx_strerror(-ECONNRESET), strerror(ECONNRESET));
    assert_string_equal(lx_strerror(-EPIPE), strerror(EPIPE));
    assert_string_equal(lx_strerror(-4095), "end of file"); /* UV_EOF */
}

static void test_success_and_unknown(void **state)
{
    (void)state;
    assert_string_equal(lx_strerror(0), "success");
    assert_string_equal(lx_strerror(1), "unknown error");
    assert_string_equal(lx_strerror(12345), "unknown error");
    assert_string_equal(lx_strerror(-4999), "unknown error");
    assert_string_equal(lx_strerror(-5999), "unknown error");
    assert_string_equal(lx_strerror(-100000), "unknown error");
    assert_non_null(lx_strerror(-4090));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_project_codes),
        cmocka_unit_test(test_libuv_codes),
        cmocka_unit_test(test_success_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
