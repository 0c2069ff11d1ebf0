/*
 * test_http_chunked.c - the chunked body decoder on bytes alone: every valid form of RFC 9112
 * chunk extensions (several, token and quoted values, quoted-pairs, whitespace around ";" and
 * "="), trailers, and the same input cut at every byte; malformed framing refused with a
 * reason; a chunk size over the body limit refused at the digit that passes it (2^64-1 never
 * overflows); the line and trailer limits; bytes after the body left for the next message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_chunked.h"

/* Decodes <in> fed in pieces of <step> bytes (0: whole); the data goes to out. Returns the
 * last code; *used_total gets the bytes consumed. */
static int decode(const char *in, size_t len, size_t step, uint64_t limit, char *out,
                  size_t *out_len, size_t *used_total)
{
    lx_http_chunked_t ck;
    lx_http_chunked_init(&ck, limit, 1024);
    size_t off = 0;
    *out_len = 0;
    int rc = LX_CHUNKED_MORE;
    while (off < len) {
        size_t piece = step == 0 ? len - off : (len - off < step ? len - off : step);
        size_t p = 0;
        while (p < piece) {
            size_t used;
            lx_str_t d;
            rc = lx_http_chunked_parse(&ck, in + off + p, piece - p, &used, &d);
            assert_true(used <= piece - p);
            if (d.len > 0) {
                memcpy(out + *out_len, d.ptr, d.len);
                *out_len += d.len;
            }
            p += used;
            if (rc != LX_CHUNKED_MORE)
                break;
            assert_true(used > 0);
        }
        off += p;
        if (rc != LX_CHUNKED_MORE)
            break;
    }
    *used_total = off;
    return rc;
}

static void expect_body(const char *in, const char *want)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= len; step += step < 8 ? 1 : 7) {
        char out[256];
        size_t out_len, used;
        int rc = decode(in, len, step, 1 << 20, out, &out_len, &used);
        if (rc != LX_CHUNKED_DONE)
            fprintf(stderr, "refused at step %zu: %s\n", step, in);
        assert_int_equal(rc, LX_CHUNKED_DONE);
        assert_int_equal(used, len);
        assert_int_equal(out_len, strlen(want));
        assert_memory_equal(out, want, out_len);
    }
}

static void expect_refused(const char *in, int code)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= 3; step++) {
        char out[256];
        size_t out_len, used;
        int rc = decode(in, len, step, 1 << 20, out, &out_len, &used);
        if (rc != code)
            fprintf(stderr, "accepted (%d) at step %zu: %s\n", rc, step, in);
        assert_int_equal(rc, code);
    }
}

static void test_plain(void **state)
{
    (void)state;
    expect_body("0\r\n\r\n", "");
    expect_body("5\r\nhello\r\n0\r\n\r\n", "hello");
    expect_body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    expect_body("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij");
    expect_body("0005\r\nhello\r\n000\r\n\r\n", "hello");
}

static void test_extensions(void **state)
{
    (void)state;
    static const char *const ok[] = {
        ";name=\"a b\"", ";name",           ";a=b;c=d",
        ";a=b;c=\"d\"",  "; a=b",           ";a = b",
        ";a=\"x\\\"y\"", ";a=\"\"",         ";a=\"a;b\"",
        ";a=\"\\\\\"",   " ;a=b",           "\t;a",
        ";a=b ;c",       ";a=\"q\" ;b",     ";a;b;c;d",
        ";a=b\t;\tc=d",  ";a=\"\x80\xff\"", ";!#$%&'*+-.^_`|~=x",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char in[256];
        snprintf(in, sizeof(in), "5%s\r\nhello\r\n0%s\r\n\r\n", ok[i], ok[i]);
        expect_body(in, "hello");
    }
}

static void test_trailers(void **state)
{
    (void)state;
    expect_body("5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", "hello");
    expect_body("5\r\nhello\r\n0\r\nA: 1\r\nB:\r\nC:  x y \t\r\n\r\n", "hello");
    expect_refused("5\r\nhello\r\n0\r\nA 1\r\n\r\n", LX_EPARSE);
    expect_refused("5\r\nhello\r\n0\r\n: 1\r\n\r\n", LX_EPARSE);
    expect_refused("5\r\nhello\r\n0\r\nA : 1\r\n\r\n", LX_EPARSE);
    expect_refused("5\r\nhello\r\n0\r\nA: 1\r\n folded\r\n\r\n", LX_EPARSE);
    expect_refused("5\r\nhello\r\n0\r\nA: a\x01\r\n\r\n", LX_EPARSE);
    expect_refused("5\r\nhello\r\n0\r\nA: 1\n\r\n", LX_EPARSE);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\r\n",                          /* no size */
        "g\r\n",                         /* not hex */
        "-5\r\nhello\r\n0\r\n\r\n",      /* sign */
        "0x5\r\nhello\r\n0\r\n\r\n",     /* prefix */
        "5\nhello\r\n0\r\n\r\n",         /* bare LF */
        "5 \r\nhello\r\n0\r\n\r\n",      /* whitespace without an extension */
        "5;\r\nhello\r\n0\r\n\r\n",      /* empty extension name */
        "5;a=\r\nhello\r\n0\r\n\r\n",    /* empty value */
        "5;=b\r\nhello\r\n0\r\n\r\n",    /* no name */
        "5;a=\"x\r\nhello\r\n0\r\n\r\n", /* open quote */
        "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloX\r\n0\r\n\r\n", /* data longer than its size */
        "5\r\nhello\n0\r\n\r\n",    /* data not ended by CRLF */
        "5\r\nhello\r\n0\r\n\n",    /* final line */
        "5\r\nhello\r\n0\r\n\rx",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i], LX_EPARSE);
    lx_http_chunked_t ck;
    lx_http_chunked_init(&ck, 100, 100);
    size_t used;
    lx_str_t d;
    assert_int_equal(lx_http_chunked_parse(&ck, "z", 1, &used, &d), LX_EPARSE);
    assert_non_null(ck.error);
}

static void test_limit(void **state)
{
    (void)state;
    /* at the limit: fine; one over: refused at the size digit, before any data */
    char out[64];
    size_t out_len, used;
    static const char at[] = "a\r\n0123456789\r\n0\r\n\r\n";
    assert_int_equal(decode(at, strlen(at), 0, 10, out, &out_len, &used), LX_CHUNKED_DONE);
    static const char over[] = "5\r\n01234\r\n6\r\n012345\r\n0\r\n\r\n";
    assert_int_equal(decode(over, strlen(over), 0, 10, out, &out_len, &used), LX_ETOOBIG);
    assert_int_equal(used, 11); /* the "6" is the refused byte */
    assert_int_equal(out_len, 5);

    /* 2^64-1 and longer: refused at once, no overflow */
    lx_http_chunked_t ck;
    lx_http_chunked_init(&ck, 32 << 20, 1024);
    lx_str_t d;
    static const char huge[] = "ffffffffffffffff\r\nhello";
    assert_int_equal(lx_http_chunked_parse(&ck, huge, strlen(huge), &used, &d), LX_ETOOBIG);
    assert_false(lx_http_chunked_trailers_too_large(&ck));
    assert_true(used <= 7); /* 0x2000000 has 7 digits */
    lx_http_chunked_init(&ck, UINT32_MAX, 1024);
    static const char longer[] = "100000000000000000000\r\n";
    assert_int_equal(lx_http_chunked_parse(&ck, longer, strlen(longer), &used, &d), LX_ETOOBIG);
    /* leading zeros are not size */
    lx_http_chunked_init(&ck, 16, 1024);
    static const char zeros[] = "0000000000000000000000000010\r\n";
    assert_int_equal(lx_http_chunked_parse(&ck, zeros, strlen(zeros), &used, &d), LX_CHUNKED_MORE);
    assert_int_equal(used, strlen(zeros));
}

static void test_line_and_trailer_limits(void **state)
{
    (void)state;
    char in[LX_HTTP_CHUNK_LINE_MAX + 64];
    size_t n = (size_t)snprintf(in, sizeof(in), "5;a=\"");
    while (n < LX_HTTP_CHUNK_LINE_MAX + 8)
        in[n++] = 'x';
    lx_http_chunked_t ck;
    lx_http_chunked_init(&ck, 1 << 20, 1024);
    size_t used;
    lx_str_t d;
    assert_int_equal(lx_http_chunked_parse(&ck, in, n, &used, &d), LX_EPARSE);
    assert_true(used <= LX_HTTP_CHUNK_LINE_MAX + 1);

    lx_http_chunked_init(&ck, 1 << 20, 16);
    static const char tr[] = "0\r\nX-A-Long-Trailer: 0123456789\r\n\r\n";
    assert_int_equal(lx_http_chunked_parse(&ck, tr, strlen(tr), &used, &d), LX_ETOOBIG);
    assert_true(lx_http_chunked_trailers_too_large(&ck));
}

static void test_next_message(void **state)
{
    (void)state;
    static const char in[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    char out[16];
    size_t out_len, used;
    assert_int_equal(decode(in, strlen(in), 0, 100, out, &out_len, &used), LX_CHUNKED_DONE);
    assert_int_equal(used, strlen("3\r\nabc\r\n0\r\n\r\n"));
    /* nothing is taken once done */
    lx_http_chunked_t ck;
    lx_http_chunked_init(&ck, 100, 100);
    lx_str_t d;
    size_t u;
    assert_int_equal(lx_http_chunked_parse(&ck, in, strlen(in), &u, &d), LX_CHUNKED_MORE);
    assert_int_equal(d.len, 3);
    assert_int_equal(lx_http_chunked_parse(&ck, in + u, strlen(in) - u, &u, &d), LX_CHUNKED_DONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),        cmocka_unit_test(test_extensions),
        cmocka_unit_test(test_trailers),     cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limit),        cmocka_unit_test(test_line_and_trailer_limits),
        cmocka_unit_test(test_next_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
