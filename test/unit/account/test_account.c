/*
 * test_account.c - allowlist wildcards, reservations and costs, rate-limit headers and their
 * Go-style durations (account/account.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "account/account.h"
#include "core/strbuf.h"
#include "store/money.h"

static bool match(const char *pattern, const char *id)
{
    return lx_account_match(pattern, id, strlen(id));
}

static void test_match_literal(void **state)
{
    (void)state;
    assert_true(match("openai/gpt-4o", "openai/gpt-4o"));
    assert_false(match("openai/gpt-4o", "openai/gpt-4o-mini"));
    assert_false(match("openai/gpt-4o-mini", "openai/gpt-4o"));
    assert_false(match("openai/GPT-4o", "openai/gpt-4o")); /* byte for byte */
    assert_true(match("", ""));
    assert_false(match("", "a"));
    assert_false(match("a", ""));
    /* <len> bounds the id: the bytes after it are not part of it */
    assert_true(lx_account_match("abc", "abcdef", 3));
    assert_false(lx_account_match("abcdef", "abcdef", 3));
    /* an id with a NUL inside is compared as bytes */
    assert_false(lx_account_match("ab", "a\0b", 3));
    assert_true(lx_account_match("a*b", "a\0b", 3));
}

static void test_match_star(void **state)
{
    (void)state;
    assert_true(match("*", ""));
    assert_true(match("*", "anything/at:all"));
    assert_true(match("**", "x"));
    assert_true(match("meta-llama/*", "meta-llama/llama-3.1-70b-instruct"));
    assert_true(match("meta-llama/*", "meta-llama/"));
    assert_false(match("meta-llama/*", "meta-llama"));
    assert_false(match("meta-llama/*", "xmeta-llama/a"));
    assert_true(match("*/gpt-4o", "openai/gpt-4o"));
    assert_true(match("*/gpt-4o", "azure/openai/gpt-4o")); /* '*' covers '/' too */
    assert_false(match("*/gpt-4o", "openai/gpt-4o-mini"));
    assert_true(match("*gpt*", "openai/gpt-4o"));
    assert_true(match("a*b*c", "abc"));
    assert_true(match("a*b*c", "a-b-b-c-c"));
    assert_false(match("a*b*c", "a-c-b"));
    assert_true(match("*:free", "meta-llama/llama-3:free"));
    assert_false(match("*:free", "meta-llama/llama-3:freeze"));
    /* a backtrack is needed: the first "ab" is not the one that makes the rest match */
    assert_true(match("*ab*abc", "xabyabababc"));
    assert_true(match("a*aab", "aaaaab"));
    assert_false(match("a*aab", "aaaaba"));
}

/* A pattern that makes a naive recursive matcher exponential, over a long id with no match:
 * the answer must come at once. */
static void test_match_pathological(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *id = malloc(n + 1);
    assert_non_null(id);
    memset(id, 'a', n);
    id[n] = '\0';
    clock_t t0 = clock();
    assert_false(lx_account_match("a*a*a*a*b", id, n));
    assert_false(lx_account_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", id, n));
    assert_true(lx_account_match("a*a*a*a*a", id, n));
    id[n - 1] = 'b';
    assert_true(lx_account_match("a*a*a*a*b", id, n));
    assert_true(lx_account_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", id, n));
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    /* a few million byte comparisons: well under a second even under sanitizers */
    assert_true(s < 2.0);
    free(id);
}

static void test_allows(void **state)
{
    (void)state;
    lx_store_key_t k;
    memset(&k, 0, sizeof(k));
    assert_true(lx_account_allows(&k, "any/model", 9)); /* empty list: everything */
    assert_true(lx_account_allows(NULL, "any/model", 9));
    char *models[] = {"meta-llama/*", "openai/gpt-4o"};
    k.models = models;
    k.n_models = 2;
    assert_true(lx_account_allows(&k, "meta-llama/llama-3", 18));
    assert_true(lx_account_allows(&k, "openai/gpt-4o", 13));
    assert_false(lx_account_allows(&k, "openai/gpt-4o-mini", 18));
    assert_false(lx_account_allows(&k, "anthropic/claude", 16));
}

static void test_prompt_estimate(void **state)
{
    (void)state;
    assert_int_equal(lx_account_prompt_estimate(0), 0);
    assert_int_equal(lx_account_prompt_estimate(1), 1);
    assert_int_equal(lx_account_prompt_estimate(4), 1);
    assert_int_equal(lx_account_prompt_estimate(5), 2);
    assert_int_equal(lx_account_prompt_estimate(4000), 1000);
    assert_int_equal(lx_account_prompt_estimate(4001), 1001);
    assert_int_equal(lx_account_prompt_estimate(SIZE_MAX), UINT32_MAX);
}

/* A route priced <prompt> and <completion> µ$ per million tokens ($1/M is 1000000). The USD
 * doubles are set to nonsense: only the exact prices may count. */
static lx_config_route_t route(int64_t prompt, int64_t completion)
{
    lx_config_route_t r;
    memset(&r, 0, sizeof(r));
    r.price_prompt = -7.0;
    r.price_completion = 1e300;
    r.price_prompt_micros = prompt;
    r.price_completion_micros = completion;
    return r;
}

static void test_reserve(void **state)
{
    (void)state;
    /* $1 and $2 per million tokens: 1 and 2 µ$ per token */
    lx_config_route_t r = route(1000000, 2000000);
    assert_int_equal(lx_account_reserve(&r, 1000, 500, 777), 1000 + 1000);
    assert_int_equal(lx_account_reserve(&r, 1000, 0, 777), 1000);
    /* no max_tokens: the prompt plus default_max_cost */
    assert_int_equal(lx_account_reserve(&r, 1000, -1, 50000), 1000 + 50000);
    assert_int_equal(lx_account_reserve(&r, 0, -1, 0), 0);
    assert_int_equal(lx_account_reserve(&r, 0, -1, -5), 0);
    /* rounding up: 1 token at $0.15/M is 0.15 µ$, reserved as 1 µ$ */
    lx_config_route_t cheap = route(150000, 600000);
    assert_int_equal(lx_account_reserve(&cheap, 1, 0, 0), 1);
    assert_int_equal(lx_account_reserve(&cheap, 3, 3, 0), 3); /* 0.45 + 1.8 = 2.25 -> 3 */
    assert_int_equal(lx_account_reserve(&cheap, 0, 0, 0), 0);
    /* free routes reserve only the default when nothing bounds the answer */
    lx_config_route_t free_r = route(0, 0);
    assert_int_equal(lx_account_reserve(&free_r, 100000, 100000, 9), 0);
    assert_int_equal(lx_account_reserve(&free_r, 100000, -1, 9), 9);
    /* saturation */
    lx_config_route_t dear = route(LX_MONEY_MAX, LX_MONEY_MAX);
    assert_int_equal(lx_account_reserve(&dear, UINT32_MAX, INT64_MAX, 0), LX_MONEY_MAX);
    assert_int_equal(lx_account_reserve(&r, 1000, -1, LX_MONEY_MAX), LX_MONEY_MAX);
    assert_int_equal(lx_account_reserve(&r, 1000, -1, INT64_MAX), LX_MONEY_MAX);
    assert_int_equal(lx_account_reserve(&r, 1000, -1, LX_MONEY_MAX - 1000), LX_MONEY_MAX);
    assert_int_equal(lx_account_reserve(&r, 1000, -1, LX_MONEY_MAX - 1001), LX_MONEY_MAX - 1);
}

static void test_cost(void **state)
{
    (void)state;
    lx_config_route_t r = route(3000000, 15000000); /* 3 and 15 µ$ per token */
    assert_int_equal(lx_account_cost(&r, 1000, 200), 3000 + 3000);
    assert_int_equal(lx_account_cost(&r, 0, 0), 0);
    assert_int_equal(lx_account_cost(&r, -5, 10), 150); /* negative counts as 0 */
    lx_config_route_t cheap = route(100000, 400000);
    /* 7 × 0.1 + 2 × 0.4 = 1.5 µ$: rounded up to 2, never down to a free request */
    assert_int_equal(lx_account_cost(&cheap, 7, 2), 2);
    assert_int_equal(lx_account_cost(&cheap, 10, 0), 1);
    lx_config_route_t dear = route(LX_MONEY_MAX, LX_MONEY_MAX);
    assert_int_equal(lx_account_cost(&dear, INT64_MAX, INT64_MAX), LX_MONEY_MAX);
    lx_config_route_t free_r = route(0, 0);
    assert_int_equal(lx_account_cost(&free_r, 1000000, 1000000), 0);
    /* out-of-range prices are clamped: never a negative cost, never above LX_MONEY_MAX */
    lx_config_route_t odd = route(-1000000, INT64_MAX);
    assert_int_equal(lx_account_cost(&odd, 1000, 0), 0);
    assert_int_equal(lx_account_cost(&odd, 0, 1), LX_MONEY_MAX / 1000000);
    assert_int_equal(lx_account_cost(NULL, 1000, 1000), 0);
}

static void assert_duration(int64_t ms, const char *want)
{
    char buf[24];
    memset(buf, 'x', sizeof(buf));
    size_t n = lx_account_duration(ms, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_duration(void **state)
{
    (void)state;
    assert_duration(0, "0s");
    assert_duration(-1, "0s");
    assert_duration(INT64_MIN, "0s");
    assert_duration(1, "1ms");
    assert_duration(12, "12ms");
    assert_duration(999, "999ms");
    assert_duration(1000, "1s");
    assert_duration(1500, "1.5s");
    assert_duration(1050, "1.05s");
    assert_duration(1001, "1.001s");
    assert_duration(59999, "59.999s");
    assert_duration(60000, "1m0s");
    assert_duration(360000, "6m0s");
    assert_duration(61500, "1m1.5s");
    assert_duration(3600000, "1h0m0s");
    assert_duration(3723000, "1h2m3s");
    assert_duration(3600500, "1h0m0.5s");
    assert_duration(86400000, "24h0m0s");
    assert_duration(INT64_C(999999999999) * 3600000 + 3599999, "999999999999h59m59.999s");
    assert_duration(INT64_MAX, "999999999999h59m59.999s");
}

/* The writer for a buffer of LX_ACCOUNT_HEADERS_MAX (no checks, the limit lines remembered per
 * thread) against the checked one for a smaller buffer: the same bytes, the longest values
 * included; a changed limit is written anew; appending to a strbuf, with room and without. */
static void test_headers_fast_equals_checked(void **state)
{
    (void)state;
    const lx_ratelimit_view_t views[] = {
        {UINT32_MAX, UINT32_MAX, INT64_MAX, UINT32_MAX, UINT32_MAX, INT64_MAX},
        {10, 9, 999, 1000, 999, 1},
        {11, 9, 1000, 1000, 999, 0},
        {11, 0, -5, 1001, 0, 61000},
        {0, 0, 0, 7, 7, 7},
    };
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        char fast[LX_ACCOUNT_HEADERS_MAX], slow[LX_ACCOUNT_HEADERS_MAX];
        size_t nf = lx_account_ratelimit_headers(&views[i], fast, sizeof(fast));
        size_t ns = lx_account_ratelimit_headers(&views[i], slow, sizeof(slow) - 1);
        assert_true(nf > 0);
        assert_int_equal(nf, ns);
        assert_string_equal(fast, slow);
        char limit[64];
        snprintf(limit, sizeof(limit), "x-ratelimit-limit-tokens: %u\r\n", views[i].limit_tokens);
        assert_non_null(strstr(fast, limit));
        char big[LX_ACCOUNT_HEADERS_MAX + 8], small[40];
        lx_strbuf_t sb = lx_strbuf_make(big, sizeof(big));
        LX_STRBUF_LIT(&sb, "A: b\r\n");
        lx_account_ratelimit_append(&views[i], &sb);
        assert_false(sb.overflow);
        assert_int_equal(lx_strbuf_len(&sb, big), 6 + nf);
        assert_memory_equal(big + 6, fast, nf);
        sb = lx_strbuf_make(small, sizeof(small));
        lx_account_ratelimit_append(&views[i], &sb);
        assert_true(sb.overflow || lx_strbuf_len(&sb, small) == 0);
    }
}

static void test_headers(void **state)
{
    (void)state;
    char buf[LX_ACCOUNT_HEADERS_MAX];
    lx_ratelimit_view_t rl = {60, 59, 1000, 150000, 149984, 360000};
    size_t n = lx_account_ratelimit_headers(&rl, buf, sizeof(buf));
    const char *want = "x-ratelimit-limit-requests: 60\r\n"
                       "x-ratelimit-remaining-requests: 59\r\n"
                       "x-ratelimit-reset-requests: 1s\r\n"
                       "x-ratelimit-limit-tokens: 150000\r\n"
                       "x-ratelimit-remaining-tokens: 149984\r\n"
                       "x-ratelimit-reset-tokens: 6m0s\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);

    lx_ratelimit_view_t req = {10, 0, 12, 0, 0, 0};
    n = lx_account_ratelimit_headers(&req, buf, sizeof(buf));
    want = "x-ratelimit-limit-requests: 10\r\n"
           "x-ratelimit-remaining-requests: 0\r\n"
           "x-ratelimit-reset-requests: 12ms\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);

    lx_ratelimit_view_t tok = {0, 0, 0, 5, 5, 0};
    n = lx_account_ratelimit_headers(&tok, buf, sizeof(buf));
    want = "x-ratelimit-limit-tokens: 5\r\n"
           "x-ratelimit-remaining-tokens: 5\r\n"
           "x-ratelimit-reset-tokens: 0s\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);

    assert_int_equal(buf[n], '\0');
    lx_ratelimit_view_t none = {0, 7, 7, 0, 7, 7};
    assert_int_equal(lx_account_ratelimit_headers(&none, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");

    /* the largest figures fit in LX_ACCOUNT_HEADERS_MAX */
    lx_ratelimit_view_t big = {UINT32_MAX, UINT32_MAX, INT64_MAX,
                               UINT32_MAX, UINT32_MAX, INT64_MAX};
    n = lx_account_ratelimit_headers(&big, buf, sizeof(buf));
    assert_true(n > 0 && n <= LX_ACCOUNT_HEADERS_MAX);
    const char *last = "x-ratelimit-reset-tokens: 999999999999h59m59.999s\r\n";
    assert_non_null(memmem(buf, n, last, strlen(last)));
    /* too small a buffer: nothing, and nothing written past it */
    char small[41];
    memset(small, 'z', sizeof(small));
    assert_int_equal(lx_account_ratelimit_headers(&rl, small, 40), 0);
    assert_string_equal(small, "");
    assert_int_equal(small[40], 'z');
    assert_int_equal(lx_account_ratelimit_headers(&rl, small, 0), 0);
    assert_int_equal(small[0], '\0');
    /* exactly enough: the headers and their NUL */
    n = lx_account_ratelimit_headers(&req, buf, sizeof(buf));
    char *exact = malloc(n + 1);
    assert_int_equal(lx_account_ratelimit_headers(&req, exact, n + 1), n);
    assert_int_equal(lx_account_ratelimit_headers(&req, exact, n), 0);
    free(exact);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_literal),
        cmocka_unit_test(test_match_star),
        cmocka_unit_test(test_match_pathological),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_prompt_estimate),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_headers_fast_equals_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
