/*
 * test_config_value.c - the value syntaxes of config_value.c on their own: durations, sizes,
 * whole numbers, listen addresses, URLs, hex digests, prices, and formatting them back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config_value.h"
#include "core/status.h"

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {{"250ms", 250},
                {"30s", 30000},
                {"5m", 300000},
                {"1h", 3600000},
                {"1m30s", 90000},
                {"1h1m1s1ms", 3661001},
                {"0s", 0},
                {"720h", 2592000000ull},
                {"1d", 86400000},
                {"1d12h", 129600000},
                {"30d", 2592000000ull}};
    static const struct {
        const char *text, *why;
    } bad[] = {{"30", "needs a unit"},
               {"", "empty"},
               {"-5s", "negative"},
               {"5x", "unknown duration unit"},
               {"5sec", "unknown duration unit"},
               {"s", "expected a number"},
               {"1.5s", "needs a unit"},
               {"1m 30s", "expected a number"},
               {"721h", "too large"},
               {"31d", "too large"},
               {"1D", "unknown duration unit"},
               {"99999999999999999999ms", "too large"},
               {"9999999999999999h", "too large"},
               {"18446744073709551615ms1ms", "too large"}};
    uint64_t ms;
    const char *why;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(lx_config_value_duration(good[i].text, &ms, &why), 0);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(lx_config_value_duration(bad[i].text, &ms, &why), LX_ECONFIG);
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fail_msg("'%s': got '%s', want '%s'", bad[i].text, why, bad[i].why);
    }

    char buf[32];
    lx_config_value_format_duration(90000, buf, sizeof(buf));
    assert_string_equal(buf, "1m30s");
    lx_config_value_format_duration(3661001, buf, sizeof(buf));
    assert_string_equal(buf, "1h1m1s1ms");
    lx_config_value_format_duration(0, buf, sizeof(buf));
    assert_string_equal(buf, "0s");
    lx_config_value_format_duration(90ull * 86400000 + 1000, buf, sizeof(buf));
    assert_string_equal(buf, "90d1s");
}

/* store.retention's durations: days and beyond 720h, up to 3650d. */
static void test_long_durations(void **state)
{
    (void)state;
    uint64_t ms = 0;
    const char *why = NULL;
    assert_int_equal(lx_config_value_long_duration("90d", &ms, &why), 0);
    assert_int_equal(ms, 90ull * 86400000);
    assert_int_equal(lx_config_value_long_duration("3650d", &ms, &why), 0);
    assert_int_equal(ms, 3650ull * 86400000);
    assert_int_equal(lx_config_value_long_duration("87600h", &ms, &why), 0);
    assert_int_equal(lx_config_value_long_duration("3650d1ms", &ms, &why), LX_ECONFIG);
    assert_non_null(strstr(why, "at most 3650d"));
    assert_int_equal(lx_config_value_long_duration("90", &ms, &why), LX_ECONFIG);
    assert_non_null(strstr(why, "needs a unit"));
    /* the timers' bound stays 720h */
    assert_int_equal(lx_config_value_duration("90d", &ms, &why), LX_ECONFIG);
}

/* Amounts of USD into micro-dollars, exactly: no double on the way. */
static void test_micros(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t micros;
    } good[] = {{"0", 0},
                {"0.0", 0},
                {"0e-99", 0},
                {"1", 1000000},
                {"1.0", 1000000},
                {"0.15", 150000},
                {"0.000001", 1},
                {"0.0000010000", 1},
                {"123456.789", 123456789000},
                {"1e-3", 1000},
                {"2.5E2", 250000000},
                {"1e+2", 100000000},
                {"10e-7", 1},
                {".5", 500000},
                {"5.", 5000000},
                {"007.25", 7250000},
                {"1000000000", INT64_C(1000000000000000)},
                {"1e9", INT64_C(1000000000000000)},
                {"999999999.999999", INT64_C(999999999999999)},
                {"0.00000000000000000000000000000000000000001e41", 1000000},
                {"100000000000000000000e-11", 1000000000000000}};
    static const struct {
        const char *text, *why;
    } bad[] = {{"", "expected a decimal"},
               {"-1", "negative"},
               {"+1", "expected a decimal"},
               {".", "expected a decimal"},
               {"e5", "expected a decimal"},
               {"1e", "expected a decimal"},
               {"1e+", "expected a decimal"},
               {"1.5.", "expected a decimal"},
               {" 1", "expected a decimal"},
               {"1 ", "expected a decimal"},
               {"0x10", "expected a decimal"},
               {"inf", "expected a decimal"},
               {"nan", "expected a decimal"},
               {"0.0000001", "at most 6 decimals"},
               {"0.15000001", "at most 6 decimals"},
               {"1e-7", "at most 6 decimals"},
               {"12e-7", "at most 6 decimals"},
               {"123456.7891234", "at most 6 decimals"},
               {"1000000000.000001", "too large"},
               {"1000000001", "too large"},
               {"1e10", "too large"},
               {"1e100000000000000000000", "too large"},
               {"12345678901234567890123", "too large"},
               {"1234567890123456789.0123456789", "at most 6 decimals"}};
    int64_t v;
    const char *why;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = -1;
        if (lx_config_value_micros(good[i].text, &v, &why) != 0 || v != good[i].micros)
            fail_msg("'%s': got %lld, want %lld", good[i].text, (long long)v,
                     (long long)good[i].micros);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(lx_config_value_micros(bad[i].text, &v, &why), LX_ECONFIG);
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fail_msg("'%s': got '%s', want '%s'", bad[i].text, why, bad[i].why);
    }
    /* every whole number of micro-dollars written with six decimals reads back as itself */
    char buf[40];
    for (int64_t m = 0; m < 3000000; m += 997) {
        snprintf(buf, sizeof(buf), "%lld.%06lld", (long long)(m / 1000000),
                 (long long)(m % 1000000));
        assert_int_equal(lx_config_value_micros(buf, &v, &why), 0);
        assert_int_equal(v, m);
    }
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {{"100B", 100}, {"16KiB", 16384}, {"32MiB", 33554432}, {"2GiB", 2147483648},
                {"1KB", 1000}, {"1MB", 1000000}, {"3GB", 3000000000}, {"32 MiB", 33554432}};
    static const struct {
        const char *text, *why;
    } bad[] = {{"32", "needs a unit"},
               {"-1KiB", "negative"},
               {"1TiB", "unknown size unit"},
               {"1kb", "unknown size unit"},
               {"KiB", "expected a number"},
               {"1.5MiB", "unknown size unit"},
               {"18446744073709551616B", "too large"},
               {"18014398509481984GiB", "too large"}};
    uint64_t n;
    const char *why;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(lx_config_value_size(good[i].text, &n, &why), 0);
        assert_int_equal(n, good[i].bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(lx_config_value_size(bad[i].text, &n, &why), LX_ECONFIG);
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fail_msg("'%s': got '%s', want '%s'", bad[i].text, why, bad[i].why);
    }
    char buf[32];
    lx_config_value_format_size(16384, buf, sizeof(buf));
    assert_string_equal(buf, "16KiB");
    lx_config_value_format_size(1000, buf, sizeof(buf));
    assert_string_equal(buf, "1000B");
}

static void test_listen(void **state)
{
    (void)state;
    static const struct {
        const char *text, *host;
        uint16_t port;
        bool loopback;
    } good[] = {{"127.0.0.1:8080", "127.0.0.1", 8080, true},
                {"[::1]:8080", "::1", 8080, true},
                {"0.0.0.0:8080", "0.0.0.0", 8080, false},
                {":8080", "0.0.0.0", 8080, false},
                {"127.9.8.7:1", "127.9.8.7", 1, true},
                {"10.0.0.1:65535", "10.0.0.1", 65535, false},
                {"[::]:80", "::", 80, false},
                {"[0:0:0:0:0:0:0:1]:80", "::1", 80, true}};
    static const char *const bad[] = {
        "localhost:8080", "::1:8080",     "1.2.3.4", "1.2.3.4:65536", "[::1]8080", "[::1:8080",
        "1.2.3:80",       "1.2.3.4:http", "",        "[]:80",         "1.2.3.4:-1"};
    lx_config_value_listen_t l;
    const char *why;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(lx_config_value_listen(good[i].text, &l, &why), 0);
        assert_string_equal(l.host, good[i].host);
        assert_int_equal(l.port, good[i].port);
        assert_int_equal(l.is_loopback, good[i].loopback);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (lx_config_value_listen(bad[i], &l, &why) != LX_ECONFIG)
            fail_msg("'%s' was accepted", bad[i]);
    }
}

static void test_urls(void **state)
{
    (void)state;
    lx_config_value_url_t u;
    const char *why;

    assert_int_equal(lx_config_value_base_url("https://api.openai.com/v1/", &u, &why), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
    assert_int_equal(u.host_len, 14);
    assert_memory_equal(u.host, "api.openai.com", 14);
    assert_int_equal(u.path_len, 3);
    assert_memory_equal(u.path, "/v1", 3);
    assert_int_equal(u.origin_len, strlen("https://api.openai.com"));

    assert_int_equal(lx_config_value_base_url("http://[::1]:8000", &u, &why), 0);
    assert_false(u.tls);
    assert_int_equal(u.port, 8000);
    assert_int_equal(u.host_len, 3);
    assert_memory_equal(u.host, "::1", 3);
    assert_int_equal(u.path_len, 0);

    assert_int_equal(lx_config_value_endpoint_url("HTTP://vllm_0.internal/", &u, &why), 0);
    assert_int_equal(u.port, 80);
    assert_int_equal(u.path_len, 0);
    assert_int_equal(lx_config_value_base_url("http://10.0.0.7:8000/a/b", &u, &why), 0);
    assert_int_equal(u.path_len, 4);

    static const char *const bad[] = {
        "ftp://x",       "http://",        "http://a:0",       "http://a b",     "http://u@x",
        "http://x/v1?q", "http://x#f",     "http://1.2.3.999", "http://-a",      "http://a..b",
        "http://[::1",   "http://[zz]:80", "http://a:",        "http://a:99999", "http://a:80x",
        "127.0.0.1:80",  "http://a/b c",   "https:/x",         "http://a.-b.c",  "http://a-.b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (lx_config_value_base_url(bad[i], &u, &why) != LX_ECONFIG)
            fail_msg("'%s' was accepted", bad[i]);
    }
    assert_int_equal(lx_config_value_endpoint_url("http://a:80/v1", &u, &why), LX_ECONFIG);
    assert_non_null(strstr(why, "no path"));
}

static void test_uint_hex_price(void **state)
{
    (void)state;
    uint64_t n;
    uint8_t digest[4];
    double price;
    const char *why;

    assert_int_equal(lx_config_value_uint("42", 1, 100, &n, &why), 0);
    assert_int_equal(n, 42);
    assert_int_equal(lx_config_value_uint("0", 1, 100, &n, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_uint("101", 1, 100, &n, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_uint("-1", 0, 100, &n, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_uint("4x", 0, 100, &n, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_uint("", 0, 100, &n, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_uint("99999999999999999999", 0, UINT64_MAX, &n, &why),
                     LX_ECONFIG);

    assert_int_equal(lx_config_value_hex("00fFa9", digest, 3, &why), 0);
    assert_int_equal(digest[0], 0x00);
    assert_int_equal(digest[1], 0xff);
    assert_int_equal(digest[2], 0xa9);
    assert_int_equal(lx_config_value_hex("00ff", digest, 3, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_hex("00ffa9aa", digest, 3, &why), LX_ECONFIG);
    assert_int_equal(lx_config_value_hex("00fg", digest, 2, &why), LX_ECONFIG);

    static const struct {
        const char *text;
        double value;
    } good[] = {{"0", 0}, {"0.15", 0.15}, {"2", 2}, {".5", 0.5}, {"1e-3", 0.001}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(lx_config_value_price(good[i].text, &price, &why), 0);
        assert_true(price == good[i].value);
    }
    static const char *const bad[] = {"-1",   "nan",   "inf", " 1", "1 ",
                                      "0x10", "1e400", "",    "$1", "1,5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (lx_config_value_price(bad[i], &price, &why) != LX_ECONFIG)
            fail_msg("price '%s' was accepted", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),      cmocka_unit_test(test_long_durations),
        cmocka_unit_test(test_micros),         cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_listen),         cmocka_unit_test(test_urls),
        cmocka_unit_test(test_uint_hex_price),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
