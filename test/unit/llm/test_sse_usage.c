/*
 * test_sse_usage.c - the counts of a usage object: the reference reading on core/json, the
 * short reading of the usual shape, and their agreement wherever the short one accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "llm/sse_usage.h"

static lx_sse_usage_t ref(const char *s)
{
    lx_sse_usage_t u;
    lx_sse_usage_read_ref(s, strlen(s), &u);
    return u;
}

/* The reference's counts; the short reading must accept <s> when <quick> and then agree. */
static lx_sse_usage_t both(const char *s, bool quick)
{
    lx_sse_usage_t r = ref(s), q;
    bool took = lx_sse_usage_read_quick(s, strlen(s), &q);
    assert_int_equal(took, quick);
    if (took)
        assert_memory_equal(&q, &r, sizeof(r));
    lx_sse_usage_t u;
    lx_sse_usage_read(s, strlen(s), &u);
    assert_memory_equal(&u, &r, sizeof(r));
    return r;
}

static void test_usual_shapes(void **state)
{
    (void)state;
    lx_sse_usage_t u = both("{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,"
                            "\"prompt_tokens_details\":{\"cached_tokens\":3,\"audio_tokens\":0},"
                            "\"completion_tokens_details\":{\"reasoning_tokens\":4}}",
                            true);
    assert_int_equal(u.prompt_tokens, 9);
    assert_int_equal(u.completion_tokens, 12);
    assert_int_equal(u.total_tokens, 21);
    assert_int_equal(u.cached_tokens, 3);
    assert_int_equal(u.reasoning_tokens, 4);
    /* blanks, repeated members (the last at the top, the first in a details object), values
     * that are no count */
    u = both("{ \"prompt_tokens\" : 5 ,\n\"prompt_tokens\":6, \"total_tokens\":true,"
             "\"prompt_tokens_details\":{\"cached_tokens\":2,\"cached_tokens\":3},"
             "\"completion_tokens\":\"7\", \"cost\": 1.5e-3 }",
             true);
    assert_int_equal(u.prompt_tokens, 6);
    assert_int_equal(u.total_tokens, -1);
    assert_int_equal(u.completion_tokens, -1);
    assert_int_equal(u.cached_tokens, 2);
    assert_int_equal(u.reasoning_tokens, -1);
    /* a details member that is no object after one that was: unknown again */
    u = both("{\"prompt_tokens_details\":{\"cached_tokens\":2},\"prompt_tokens_details\":null,"
             "\"total_tokens\":{\"a\":1},\"completion_tokens\":12345678901234567890}",
             true);
    assert_int_equal(u.cached_tokens, -1);
    assert_int_equal(u.total_tokens, -1);
    assert_int_equal(u.completion_tokens, -1);
    u = both("{}", true);
    assert_int_equal(u.prompt_tokens, -1);
}

static void test_other_shapes(void **state)
{
    (void)state;
    /* arrays, escapes, deeper nesting: the reference alone */
    lx_sse_usage_t u = both("{\"a\":[1,{\"b\":2}],\"prompt_\\u0074okens\":1,\"prompt_tokens\":8,"
                            "\"completion_tokens_details\":{\"x\":{\"reasoning_tokens\":1},"
                            "\"reasoning_tokens\":9},\"total_tokens\":17}",
                            false);
    assert_int_equal(u.prompt_tokens, 8);
    assert_int_equal(u.reasoning_tokens, 9);
    assert_int_equal(u.total_tokens, 17);
    /* not JSON: what came before the first error stands */
    u = both("{\"prompt_tokens\":8 \"total_tokens\":17}", false);
    assert_int_equal(u.prompt_tokens, 8);
    assert_int_equal(u.total_tokens, -1);
    u = both("{\"prompt_tokens\":8,\"x\":\"a\tb\",\"total_tokens\":17}", false);
    assert_int_equal(u.prompt_tokens, 8);
    assert_int_equal(u.total_tokens, -1);
    u = both("{\"prompt_tokens\":08,\"total_tokens\":17}", false);
    assert_int_equal(u.prompt_tokens, -1);
    u = both("{\"prompt_tokens\":3,\"x\":tru,\"total_tokens\":17}", false);
    assert_int_equal(u.prompt_tokens, 3);
    assert_int_equal(u.total_tokens, -1);
    /* not an object */
    u = both("[1]", false);
    assert_int_equal(u.prompt_tokens, -1);
    u = both("", false);
    assert_int_equal(u.prompt_tokens, -1);
}

/* More than LX_SSE_USAGE_TOKENS tokens: no counts, whatever the reading. */
static void test_token_limit(void **state)
{
    (void)state;
    char s[2048];
    for (int extra = 0; extra <= 1; extra++) {
        /* root + prompt_tokens key and value = 3 tokens; each "k":0 member adds 2 */
        size_t o = (size_t)snprintf(s, sizeof(s), "{\"prompt_tokens\":4");
        int members = (LX_SSE_USAGE_TOKENS - 3) / 2 + extra; /* 127 tokens, or 129 */
        for (int k = 0; k < members; k++)
            o += (size_t)snprintf(s + o, sizeof(s) - o, ",\"k\":0");
        o += (size_t)snprintf(s + o, sizeof(s) - o, "}");
        (void)o;
        lx_sse_usage_t u = both(s, extra == 0);
        assert_int_equal(u.prompt_tokens, extra == 0 ? 4 : -1);
    }
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(lx_sse_usage_count("0", 1), 0);
    assert_int_equal(lx_sse_usage_count("123456789012345678", 18), 123456789012345678);
    assert_int_equal(lx_sse_usage_count("1234567890123456789", 19), -1);
    assert_int_equal(lx_sse_usage_count("-1", 2), -1);
    assert_int_equal(lx_sse_usage_count("1.0", 3), -1);
    assert_int_equal(lx_sse_usage_count("", 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usual_shapes),
        cmocka_unit_test(test_other_shapes),
        cmocka_unit_test(test_token_limit),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
