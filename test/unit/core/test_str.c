/*
 * test_str.c - byte-string helpers: case-insensitive equality, decimal parsing with its
 * overflow edge, and token search in comma-separated header values.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/str.h"

static lx_str_t S(const char *s)
{
    return (lx_str_t){s, strlen(s)};
}

static void test_eq(void **state)
{
    (void)state;
    assert_true(lx_str_eq(LX_STR("abc"), "abc", 3));
    assert_false(lx_str_eq(LX_STR("abc"), "abC", 3));
    assert_false(lx_str_eq(LX_STR("abc"), "ab", 2));
}

static void test_caseeq(void **state)
{
    (void)state;
    assert_true(lx_str_caseeq(S("Content-Length"), "content-length", 14));
    assert_true(lx_str_caseeq(S("CONTENT-TYPE"), "content-type", 12));
    assert_true(lx_str_caseeq(S(""), "", 0));
    assert_false(lx_str_caseeq(S("content-type"), "content-typ", 11));
    assert_false(lx_str_caseeq(S("content-typ"), "content-type", 12));
    assert_false(lx_str_caseeq(S("abc"), "abd", 3));
    /* only ASCII letters fold: '[' (0x5b) is not '{' (0x7b), '@' is not '`' */
    assert_false(lx_str_caseeq(S("["), "{", 1));
    assert_false(lx_str_caseeq(S("@"), "`", 1));
    /* bytes above 0x7f compare exactly */
    assert_true(lx_str_caseeq(S("\xc3\xa9"), "\xc3\xa9", 2));
    assert_false(lx_str_caseeq(S("\xc3\x89"), "\xc3\xa9", 2));
    /* the view's length counts, not a terminator */
    lx_str_t v = {"keep-alive, close", 10};
    assert_true(lx_str_caseeq(v, "KEEP-ALIVE", 10));
}

static void test_to_u64(void **state)
{
    (void)state;
    unsigned long long v = 7;
    assert_true(lx_str_to_u64(S("0"), &v));
    assert_int_equal(v, 0);
    assert_true(lx_str_to_u64(S("12345"), &v));
    assert_int_equal(v, 12345);
    assert_true(lx_str_to_u64(S("007"), &v));
    assert_int_equal(v, 7);
    assert_true(lx_str_to_u64(S("18446744073709551615"), &v));
    assert_true(v == ULLONG_MAX);

    v = 42;
    assert_false(lx_str_to_u64(S("18446744073709551616"), &v)); /* ULLONG_MAX + 1 */
    assert_false(lx_str_to_u64(S("18446744073709551620"), &v));
    assert_false(lx_str_to_u64(S("99999999999999999999"), &v));
    assert_false(lx_str_to_u64(S("184467440737095516150"), &v));
    assert_false(lx_str_to_u64(S(""), &v));
    assert_false(lx_str_to_u64(S("-1"), &v));
    assert_false(lx_str_to_u64(S("+1"), &v));
    assert_false(lx_str_to_u64(S(" 1"), &v));
    assert_false(lx_str_to_u64(S("1 "), &v));
    assert_false(lx_str_to_u64(S("12a"), &v));
    assert_false(lx_str_to_u64(S("1.5"), &v));
    assert_false(lx_str_to_u64(S("/"), &v)); /* '0' - 1 */
    assert_false(lx_str_to_u64(S(":"), &v)); /* '9' + 1 */
    assert_int_equal(v, 42);                 /* untouched on failure */
    lx_str_t part = {"123456", 3};
    assert_true(lx_str_to_u64(part, &v));
    assert_int_equal(v, 123);
}

static void test_has_token(void **state)
{
    (void)state;
    assert_true(lx_str_has_token(S("close"), "close", 5));
    assert_true(lx_str_has_token(S("Close"), "close", 5));
    assert_true(lx_str_has_token(S("keep-alive, Upgrade"), "upgrade", 7));
    assert_true(lx_str_has_token(S("gzip,chunked"), "chunked", 7));
    assert_true(lx_str_has_token(S("  chunked  "), "chunked", 7));
    assert_true(lx_str_has_token(S("a ,\tchunked\t, b"), "chunked", 7));
    assert_true(lx_str_has_token(S(",,chunked,,"), "chunked", 7));
    assert_false(lx_str_has_token(S("chunkedx"), "chunked", 7));
    assert_false(lx_str_has_token(S("xchunked"), "chunked", 7));
    assert_false(lx_str_has_token(S("chunk, ed"), "chunked", 7));
    assert_false(lx_str_has_token(S("not chunked"), "chunked", 7));
    assert_false(lx_str_has_token(S(""), "close", 5));
    assert_false(lx_str_has_token(S(" , ,"), "close", 5));
    lx_str_t part = {"gzip, chunked", 6};
    assert_false(lx_str_has_token(part, "chunked", 7));
}

/* The fast scan agrees with a plain loop for every stop byte at every offset and length. */
static void test_json_plain(void **state)
{
    (void)state;
    static const unsigned char stops[] = {'"', '\\', 0x00, 0x1f, 0x7f, 0x80, 0xff, 'a'};
    char buf[80];
    for (size_t k = 0; k < sizeof(stops); k++) {
        for (size_t at = 0; at < 48; at++) {
            for (size_t len = 0; len < 64; len++) {
                memset(buf, 'x', sizeof(buf));
                buf[at] = (char)stops[k];
                for (int ctl = 0; ctl < 2; ctl++) {
                    size_t want = 0;
                    while (want < len && buf[want] != '"' && buf[want] != '\\' &&
                           (!ctl || (unsigned char)buf[want] >= 0x20))
                        want++;
                    assert_int_equal(lx_str_json_plain(buf, len, ctl != 0), want);
                }
            }
        }
    }
}

static size_t u8(const char *s, size_t n)
{
    return lx_str_utf8_len((const unsigned char *)s, n);
}

static void test_utf8_len(void **state)
{
    (void)state;
    assert_int_equal(u8("a", 1), 1);
    assert_int_equal(u8("\xc3\xa9", 2), 2);         /* e-acute */
    assert_int_equal(u8("\xe2\x80\xa8", 3), 3);     /* U+2028 */
    assert_int_equal(u8("\xf0\x9f\x98\x80", 4), 4); /* U+1F600 */
    assert_int_equal(u8("\xc3", 1), 0);             /* cut short */
    assert_int_equal(u8("\xc0\xaf", 2), 0);         /* overlong */
    assert_int_equal(u8("\xe0\x80\xaf", 3), 0);     /* overlong */
    assert_int_equal(u8("\xed\xa0\x80", 3), 0);     /* a surrogate */
    assert_int_equal(u8("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    assert_int_equal(u8("\x80", 1), 0);             /* a lone continuation byte */
    assert_int_equal(u8("\xe2\x28\xa1", 3), 0);     /* a bad continuation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq),         cmocka_unit_test(test_caseeq),
        cmocka_unit_test(test_to_u64),     cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_json_plain), cmocka_unit_test(test_utf8_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
