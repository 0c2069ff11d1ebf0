/*
 * test_http_head.c - header views: pieces in one chunk stay views into it, pieces across
 * chunks are joined in the spill area, empty values, the header-count and spill limits,
 * case-insensitive lookup, and chunk references released on reset. The callbacks are driven
 * by hand, the way llhttp reports pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_head.h"

#define LIMIT 8192

static lx_http_head_t head; /* large: not on the stack */

/* A chunk holding <text>. */
static lx_buf_t *chunk(const char *text)
{
    lx_buf_t *b = lx_buf_new(strlen(text) + 16);
    assert_non_null(b);
    memcpy(b->data, text, strlen(text));
    b->len = (uint32_t)strlen(text);
    return b;
}

static void assert_str(lx_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void test_views_in_one_chunk(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    lx_buf_t *b = chunk("Host: example.com\r\nAccept: */*\r\n");
    assert_int_equal(lx_http_head_hold(&head, b), 0);
    assert_int_equal(b->refcnt, 2);
    /* holding the same chunk twice in a row takes one reference */
    assert_int_equal(lx_http_head_hold(&head, b), 0);
    assert_int_equal(b->refcnt, 2);

    const char *d = b->data;
    assert_int_equal(lx_http_head_name(&head, d, 4, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, d + 6, 11, LIMIT), 0);
    assert_int_equal(lx_http_head_name(&head, d + 19, 3, LIMIT), 0);
    /* a name in two adjacent pieces of the same chunk extends the view */
    assert_int_equal(lx_http_head_name(&head, d + 22, 3, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, d + 27, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_value(&head, d + 28, 2, LIMIT), 0);

    assert_int_equal(head.n_headers, 2);
    assert_ptr_equal(head.headers[0].name.ptr, d);
    assert_ptr_equal(head.headers[0].value.ptr, d + 6);
    assert_ptr_equal(head.headers[1].name.ptr, d + 19);
    assert_ptr_equal(head.headers[1].value.ptr, d + 27);
    assert_str(head.headers[0].name, "Host");
    assert_str(head.headers[0].value, "example.com");
    assert_str(head.headers[1].name, "Accept");
    assert_str(head.headers[1].value, "*/*");
    assert_null(head.spill); /* nothing was copied */

    lx_http_head_reset(&head);
    assert_int_equal(b->refcnt, 1);
    assert_int_equal(head.n_headers, 0);
    assert_int_equal(head.n_held, 0);
    lx_buf_unref(b);
}

static void test_value_across_chunks(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    lx_buf_t *b1 = chunk("Content-Type: applic");
    lx_buf_t *b2 = chunk("ation/json\r\nX-Req");
    lx_buf_t *b3 = chunk("uest-Id: 42\r\n");
    assert_int_equal(lx_http_head_hold(&head, b1), 0);
    assert_int_equal(lx_http_head_name(&head, b1->data, 12, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, b1->data + 14, 6, LIMIT), 0);
    assert_int_equal(lx_http_head_hold(&head, b2), 0);
    assert_int_equal(lx_http_head_value(&head, b2->data, 10, LIMIT), 0);
    assert_int_equal(lx_http_head_name(&head, b2->data + 12, 5, LIMIT), 0);
    assert_int_equal(lx_http_head_hold(&head, b3), 0);
    assert_int_equal(lx_http_head_name(&head, b3->data, 7, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, b3->data + 9, 2, LIMIT), 0);

    assert_int_equal(head.n_headers, 2);
    assert_int_equal(head.n_held, 3);
    assert_int_equal(b1->refcnt, 2);
    assert_int_equal(b2->refcnt, 2);
    assert_int_equal(b3->refcnt, 2);
    assert_str(head.headers[0].name, "Content-Type");
    assert_str(head.headers[0].value, "application/json");
    assert_str(head.headers[1].name, "X-Request-Id");
    assert_str(head.headers[1].value, "42");
    /* joined values live in the spill area, the rest stays in its chunk */
    assert_non_null(head.spill);
    assert_true(head.headers[0].value.ptr >= head.spill &&
                head.headers[0].value.ptr < head.spill + head.spill_cap);
    assert_true(head.headers[1].name.ptr >= head.spill &&
                head.headers[1].name.ptr < head.spill + head.spill_cap);
    assert_ptr_equal(head.headers[0].name.ptr, b1->data);
    assert_ptr_equal(head.headers[1].value.ptr, b3->data + 9);
    assert_int_equal(head.spill_len, 16 + 12);

    lx_http_head_reset(&head);
    assert_int_equal(b1->refcnt, 1);
    assert_int_equal(b2->refcnt, 1);
    assert_int_equal(b3->refcnt, 1);
    assert_null(head.spill);
    lx_buf_unref(b1);
    lx_buf_unref(b2);
    lx_buf_unref(b3);
}

static void test_value_in_three_chunks(void **state)
{
    (void)state;
    /* a value over three chunks: the second join appends to the spill in place */
    lx_http_head_init(&head);
    lx_buf_t *b[3] = {chunk("Authorization: Bearer sk-"), chunk("abc"), chunk("def\r\n")};
    for (int i = 0; i < 3; i++)
        assert_int_equal(lx_http_head_hold(&head, b[i]), 0);
    assert_int_equal(lx_http_head_name(&head, b[0]->data, 13, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, b[0]->data + 15, 10, LIMIT), 0);
    assert_int_equal(lx_http_head_value(&head, b[1]->data, 3, LIMIT), 0);
    assert_int_equal(lx_http_head_value(&head, b[2]->data, 3, LIMIT), 0);
    assert_str(head.headers[0].value, "Bearer sk-abcdef");
    assert_int_equal(head.spill_len, 16);
    lx_http_head_reset(&head);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b[i]->refcnt, 1);
        lx_buf_unref(b[i]);
    }
}

static void test_empty_values(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    lx_buf_t *b = chunk("X-Empty: \r\nX-Other: 1\r\nX-Last: \r\n");
    assert_int_equal(lx_http_head_hold(&head, b), 0);
    const char *d = b->data;
    assert_int_equal(lx_http_head_name(&head, d, 7, LIMIT), 0);
    lx_http_head_name_done(&head); /* no value piece follows */
    assert_int_equal(lx_http_head_name(&head, d + 11, 7, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(lx_http_head_value(&head, d + 20, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_name(&head, d + 23, 6, LIMIT), 0);
    lx_http_head_name_done(&head);
    assert_int_equal(head.n_headers, 3);
    assert_str(head.headers[0].name, "X-Empty");
    assert_int_equal(head.headers[0].value.len, 0);
    assert_str(head.headers[1].name, "X-Other");
    assert_str(head.headers[1].value, "1");
    assert_str(head.headers[2].name, "X-Last");
    assert_int_equal(head.headers[2].value.len, 0);
    const lx_http_header_t *h = lx_http_head_find(&head, "x-empty", 7);
    assert_ptr_equal(h, &head.headers[0]);
    lx_http_head_reset(&head);
    lx_buf_unref(b);
}

static void test_value_before_name(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    assert_int_equal(lx_http_head_value(&head, "v", 1, LIMIT), LX_EPARSE);
    lx_http_head_reset(&head);
}

static void test_too_many(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    char names[LX_HTTP_MAX_HEADERS + 1][8];
    for (int i = 0; i < LX_HTTP_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof(names[i]), "h%d", i);
        assert_int_equal(lx_http_head_name(&head, names[i], strlen(names[i]), LIMIT), 0);
        lx_http_head_name_done(&head);
        assert_int_equal(lx_http_head_value(&head, "v", 1, LIMIT), 0);
    }
    assert_int_equal(head.n_headers, LX_HTTP_MAX_HEADERS);
    assert_false(head.too_many);
    assert_int_equal(lx_http_head_name(&head, "extra", 5, LIMIT), LX_ETOOBIG);
    assert_true(head.too_many);
    assert_int_equal(head.n_headers, LX_HTTP_MAX_HEADERS);
    assert_str(head.headers[LX_HTTP_MAX_HEADERS - 1].name, "h63");
    lx_http_head_reset(&head);
    assert_false(head.too_many);
}

static void test_spill_limit(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    static char a[64], b[64];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    assert_int_equal(lx_http_head_name(&head, "X", 1, 100), 0);
    lx_http_head_name_done(&head);
    /* two separate pieces: 40 + 40 = 80 fit a 100-byte spill */
    assert_int_equal(lx_http_head_value(&head, a, 40, 100), 0);
    assert_int_equal(lx_http_head_value(&head, b, 40, 100), 0);
    assert_int_equal(head.headers[0].value.len, 80);
    /* 20 more fit exactly, one more does not */
    assert_int_equal(lx_http_head_value(&head, a + 50, 10, 100), 0);
    assert_int_equal(lx_http_head_value(&head, b + 50, 10, 100), 0);
    assert_int_equal(head.spill_len, 100);
    assert_int_equal(lx_http_head_value(&head, a, 1, 100), LX_ETOOBIG);
    assert_int_equal(head.headers[0].value.len, 100);
    assert_memory_equal(head.headers[0].value.ptr, a, 40);
    assert_memory_equal(head.headers[0].value.ptr + 40, b, 40);
    lx_http_head_reset(&head);

    /* a piece bigger than the whole limit */
    lx_http_head_init(&head);
    assert_int_equal(lx_http_head_name(&head, a, 10, 16), 0);
    assert_int_equal(lx_http_head_name(&head, b, 10, 16), LX_ETOOBIG);
    lx_http_head_reset(&head);
}

static void test_hold_limit(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    lx_buf_t *b[LX_HTTP_HEAD_MAX_HELD + 1];
    for (int i = 0; i <= LX_HTTP_HEAD_MAX_HELD; i++)
        b[i] = chunk("x");
    for (int i = 0; i < LX_HTTP_HEAD_MAX_HELD; i++)
        assert_int_equal(lx_http_head_hold(&head, b[i]), 0);
    assert_int_equal(lx_http_head_hold(&head, b[LX_HTTP_HEAD_MAX_HELD]), LX_ETOOBIG);
    assert_int_equal(b[LX_HTTP_HEAD_MAX_HELD]->refcnt, 1);
    lx_http_head_reset(&head);
    for (int i = 0; i <= LX_HTTP_HEAD_MAX_HELD; i++) {
        assert_int_equal(b[i]->refcnt, 1);
        lx_buf_unref(b[i]);
    }
}

static void test_find(void **state)
{
    (void)state;
    lx_http_head_init(&head);
    const char *hs[][2] = {{"Content-Type", "text/plain"},
                           {"X-Dup", "first"},
                           {"x-dup", "second"},
                           {"AUTHORIZATION", "Bearer k"}};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lx_http_head_name(&head, hs[i][0], strlen(hs[i][0]), LIMIT), 0);
        lx_http_head_name_done(&head);
        assert_int_equal(lx_http_head_value(&head, hs[i][1], strlen(hs[i][1]), LIMIT), 0);
    }
    const lx_http_header_t *h = lx_http_head_find(&head, "content-type", 12);
    assert_non_null(h);
    assert_str(h->value, "text/plain");
    h = lx_http_head_find(&head, "Authorization", 13);
    assert_non_null(h);
    assert_str(h->value, "Bearer k");
    h = lx_http_head_find(&head, "X-DUP", 5);
    assert_non_null(h);
    assert_str(h->value, "first");
    assert_null(lx_http_head_find(&head, "content", 7));
    assert_null(lx_http_head_find(&head, "content-type2", 13));
    assert_null(lx_http_head_find(&head, "host", 4));
    lx_http_head_reset(&head);
    assert_null(lx_http_head_find(&head, "content-type", 12));
}

/* A name is refused when empty or when it holds a space anywhere (the word-at-a-time scan:
 * every length, every position); values lose trailing spaces and tabs. */
static void test_name_checks_and_value_trim(void **state)
{
    (void)state;
    char name[40];
    for (size_t len = 1; len < sizeof(name); len++) {
        for (size_t at = 0; at <= len; at++) {
            memset(name, 'n', len);
            if (at < len)
                name[at] = ' ';
            lx_http_head_init(&head);
            assert_int_equal(lx_http_head_name(&head, name, len, LIMIT), 0);
            assert_int_equal(lx_http_head_name_done(&head), at < len ? LX_EPARSE : 0);
            lx_http_head_reset(&head);
        }
    }
    lx_http_head_init(&head);
    assert_int_equal(lx_http_head_name(&head, "", 0, LIMIT), 0);
    assert_int_equal(lx_http_head_name_done(&head), LX_EPARSE);
    lx_http_head_reset(&head);
    lx_http_head_init(&head); /* no name piece at all before the colon */
    assert_int_equal(lx_http_head_name_done(&head), LX_EPARSE);
    lx_http_head_reset(&head);

    static const char d[] = "A: x \t\r\nB: \r\nC: y\t";
    lx_http_head_init(&head);
    assert_int_equal(lx_http_head_name(&head, d, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_name_done(&head), 0);
    assert_int_equal(lx_http_head_value(&head, d + 3, 3, LIMIT), 0);
    assert_int_equal(lx_http_head_name(&head, d + 8, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_name_done(&head), 0);
    assert_int_equal(lx_http_head_value(&head, d + 10, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_name(&head, d + 13, 1, LIMIT), 0);
    assert_int_equal(lx_http_head_name_done(&head), 0);
    assert_int_equal(lx_http_head_value(&head, d + 16, 2, LIMIT), 0);
    lx_http_head_value_done(&head);
    assert_str(head.headers[0].value, "x");
    assert_str(head.headers[1].value, "");
    assert_str(head.headers[2].value, "y");
    lx_http_head_reset(&head);
    assert_true(lx_http_token("x-a.b", 5));
    assert_false(lx_http_token("x a", 3));
    assert_false(lx_http_token("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_in_one_chunk),
        cmocka_unit_test(test_value_across_chunks),
        cmocka_unit_test(test_value_in_three_chunks),
        cmocka_unit_test(test_empty_values),
        cmocka_unit_test(test_value_before_name),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_spill_limit),
        cmocka_unit_test(test_hold_limit),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_name_checks_and_value_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
