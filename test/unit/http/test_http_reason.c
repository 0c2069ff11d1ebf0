/*
 * test_http_reason.c - the reason phrase of every status llmux answers with (the statuses of
 * the error envelopes' table, test/unit/llm/test_api_error.c), and of the classes' fallbacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/http_server.h"

static const struct {
    int status;
    const char *reason;
} table[] = {
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Entity"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {524, "A Timeout Occurred"},
    {529, "Site Overloaded"},
    {418, "Client Error"},
    {599, "Server Error"},
};

static void test_every_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        assert_string_equal(lx_http_reason(table[i].status), table[i].reason);
    assert_string_equal(lx_http_reason(200), "OK");
    assert_string_equal(lx_http_reason(100), "Continue");
    assert_string_equal(lx_http_reason(204), "No Content");
    assert_string_equal(lx_http_reason(299), "Success");
    assert_string_equal(lx_http_reason(0), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_status)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
