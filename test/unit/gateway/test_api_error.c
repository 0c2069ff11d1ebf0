/*
 * test_api_error.c - the error envelope, status tables and the JSON escaper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "gateway/api_error.h"
#include "http/http_server.h"
#include "gateway/body.h"

static const struct {
    int status;
    const char *type;
    const char *error_type;
    const char *reason;
} table[] = {
    {400, "invalid_request_error", "invalid_request", "Bad Request"},
    {401, "authentication_error", "authentication", "Unauthorized"},
    {402, "insufficient_quota", "payment_required", "Payment Required"},
    {403, "permission_error", "permission_denied", "Forbidden"},
    {404, "invalid_request_error", "not_found", "Not Found"},
    {405, "invalid_request_error", "invalid_request", "Method Not Allowed"},
    {408, "timeout_error", "timeout", "Request Timeout"},
    {411, "invalid_request_error", "invalid_request", "Length Required"},
    {412, "invalid_request_error", "precondition_failed", "Precondition Failed"},
    {413, "invalid_request_error", "payload_too_large", "Payload Too Large"},
    {415, "invalid_request_error", "invalid_request", "Unsupported Media Type"},
    {422, "invalid_request_error", "unprocessable", "Unprocessable Entity"},
    {429, "rate_limit_error", "rate_limit_exceeded", "Too Many Requests"},
    {431, "invalid_request_error", "payload_too_large", "Request Header Fields Too Large"},
    {500, "server_error", "server", "Internal Server Error"},
    {501, "server_error", "server", "Not Implemented"},
    {502, "server_error", "provider_unavailable", "Bad Gateway"},
    {503, "server_error", "provider_overloaded", "Service Unavailable"},
    {504, "timeout_error", "timeout", "Gateway Timeout"},
    {524, "timeout_error", "timeout", "A Timeout Occurred"},
    {529, "server_error", "provider_overloaded", "Site Overloaded"},
    {418, "invalid_request_error", "invalid_request", "Client Error"},
    {599, "server_error", "server", "Server Error"},
};

/* The envelope must be one JSON object the body scanner accepts. */
static void assert_json(const char *s, size_t len)
{
    lx_body_scan_t scan;
    if (lx_body_scan(s, len, &scan) != 0)
        fail_msg("not JSON: %.*s (%s)", (int)len, s, scan.error);
}

static void test_every_status(void **state)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int st = table[i].status;
        assert_string_equal(lx_api_error_type(st), table[i].type);
        assert_string_equal(lx_api_error_default_type(st), table[i].error_type);
        assert_string_equal(lx_http_reason(st), table[i].reason);
        char buf[512], want[512];
        int n = lx_api_error_format(buf, sizeof(buf), st, NULL, "boom", 4);
        snprintf(want, sizeof(want),
                 "{\"error\":{\"code\":%d,\"message\":\"boom\",\"type\":\"%s\",\"metadata\":{"
                 "\"error_type\":\"%s\"}}}",
                 st, table[i].type, table[i].error_type);
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));
        assert_json(buf, (size_t)n);
    }
    assert_string_equal(lx_http_reason(200), "OK");
    assert_string_equal(lx_http_reason(100), "Continue");
    assert_string_equal(lx_http_reason(204), "No Content");
    assert_string_equal(lx_http_reason(299), "Success");
    assert_string_equal(lx_http_reason(0), "Unknown");
    assert_string_equal(lx_api_error_default_type(200), "unmapped");
}

static void test_format_explicit_type(void **state)
{
    char buf[256];
    int n = lx_api_error_format(buf, sizeof(buf), 400, "context_length_exceeded", NULL, 0);
    assert_string_equal(buf, "{\"error\":{\"code\":400,\"message\":\"\",\"type\":"
                             "\"invalid_request_error\",\"metadata\":{\"error_type\":"
                             "\"context_length_exceeded\"}}}");
    assert_int_equal(n, (int)strlen(buf));
    /* an error_type needing escapes is escaped too */
    n = lx_api_error_format(buf, sizeof(buf), 500, "a\"b", "m", 1);
    assert_non_null(strstr(buf, "\"error_type\":\"a\\\"b\""));
    assert_json(buf, (size_t)n);
}

static void test_escape(void **state)
{
    char out[128];
    size_t consumed;
    const char in[] = "q\"b\\s\b\f\n\r\t\x01\x1f\x7f/é€😀";
    size_t n = lx_api_error_escape(out, sizeof(out), in, sizeof(in) - 1, &consumed);
    const char want[] = "q\\\"b\\\\s\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f/é€😀";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(consumed, sizeof(in) - 1);
    assert_int_equal(lx_api_error_escaped_len(in, sizeof(in) - 1), n);

    /* a NUL byte is data */
    n = lx_api_error_escape(out, sizeof(out), "a\0b", 3, NULL);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a\\u0000b", 8);

    /* invalid UTF-8: each bad byte becomes U+FFFD */
    static const struct {
        const char *in;
        const char *want;
    } bad[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"\x80z", "\xef\xbf\xbdz"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                                 /* overlong '/' */
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > 10FFFF */
        {"\xc3", "\xef\xbf\xbd"},                   /* truncated at the end */
        {"\xe2\x82z", "\xef\xbf\xbd\xef\xbf\xbdz"}, /* truncated in the middle */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},   /* valid 4-byte */
        {"\xef\xbf\xbf", "\xef\xbf\xbf"},           /* valid U+FFFF */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = lx_api_error_escape(out, sizeof(out), bad[i].in, strlen(bad[i].in), &consumed);
        assert_int_equal(n, strlen(bad[i].want));
        assert_memory_equal(out, bad[i].want, n);
        assert_int_equal(consumed, strlen(bad[i].in));
    }

    /* truncation: never half an escape or half a character */
    n = lx_api_error_escape(out, 3, "ab\n", 3, &consumed);
    assert_int_equal(n, 2);
    assert_int_equal(consumed, 2);
    n = lx_api_error_escape(out, 5, "ab\x01", 3, &consumed);
    assert_int_equal(n, 2);
    n = lx_api_error_escape(out, 4, "a€", 4, &consumed);
    assert_int_equal(n, 4);
    n = lx_api_error_escape(out, 3, "a€", 4, &consumed);
    assert_int_equal(n, 1);
    assert_int_equal(consumed, 1);
    n = lx_api_error_escape(out, 0, "a", 1, &consumed);
    assert_int_equal(n, 0);
    assert_int_equal(consumed, 0);
}

static void test_format_truncation(void **state)
{
    char msg[600];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = "ab\"\n\xc3\xa9"[i % 6];
    char empty[256];
    int base = lx_api_error_format(empty, sizeof(empty), 502, NULL, "", 0);
    assert_true(base > 0);

    /* every capacity from the minimum up: always complete JSON, never past cap */
    for (size_t cap = (size_t)base + 1; cap < 1200; cap++) {
        char buf[1300];
        memset(buf, 'X', sizeof(buf));
        int n = lx_api_error_format(buf, cap, 502, NULL, msg, sizeof(msg));
        assert_true(n > 0);
        assert_true((size_t)n < cap);
        assert_int_equal(buf[n], '\0');
        assert_int_equal(buf[cap], 'X');
        assert_json(buf, (size_t)n);
        assert_non_null(strstr(buf, "\"metadata\":{\"error_type\":\"provider_unavailable\"}}}"));
        size_t full = lx_api_error_escaped_len(msg, sizeof(msg));
        if ((size_t)n < (size_t)base + full && cap > (size_t)base + 3)
            assert_non_null(strstr(buf, "...\",\"type\""));
    }
    /* too small for the envelope */
    char tiny[64];
    assert_int_equal(lx_api_error_format(tiny, sizeof(tiny), 502, NULL, "x", 1), LX_ETOOBIG);
    char big[256];
    assert_int_equal(lx_api_error_format(big, (size_t)base, 502, NULL, "", 0), LX_ETOOBIG);
    assert_int_equal(lx_api_error_format(big, (size_t)base + 1, 502, NULL, "", 0), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status),
        cmocka_unit_test(test_format_explicit_type),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_format_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
