/* test_record_id.c - generation numbers and ids (record.h), and a record's every field through
 * the store's JSON row and back: escapes, invalid UTF-8, extremes, the provider-id lookup, and
 * numbers that stay unique across a reopen whose clock went back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/status.h"
#include "store_test.h"

static void test_seq_next(void **state)
{
    (void)state;
    uint64_t last = 0;
    uint64_t a = lx_record_seq_next(&last, 1000, 3);
    assert_int_equal(a, (UINT64_C(1000) << 10 << 9) | 3);
    assert_int_equal(a >> 19, 1000);                 /* the millisecond */
    uint64_t b = lx_record_seq_next(&last, 1000, 3); /* the same millisecond: the count */
    assert_int_equal(b, a + (1u << 9));
    uint64_t c = lx_record_seq_next(&last, 999, 3); /* the clock went back: still above */
    assert_true(c > b);
    uint64_t d = lx_record_seq_next(&last, 5000, 3);
    assert_int_equal(d >> 19, 5000);
    assert_true(lx_record_seq_of_ms(5000) <= d && d < lx_record_seq_of_ms(5001));
    /* lanes never meet: the same tick in two lanes differs */
    uint64_t l1 = 0, l2 = 0;
    assert_true(lx_record_seq_next(&l1, 7, 0) != lx_record_seq_next(&l2, 7, 1));
    uint64_t st = 0;
    assert_int_equal(lx_record_seq_next(&st, 7, LX_RECORD_LANE_STORE) & 511, 256);
    /* a year 2100 millisecond stays below 2^63 */
    uint64_t y = 0;
    assert_true(lx_record_seq_next(&y, UINT64_C(4102444800000), 255) < (UINT64_C(1) << 63));
}

static void test_id_format_parse(void **state)
{
    (void)state;
    char id[LX_RECORD_ID_LEN + 1];
    lx_record_id_format(id, UINT64_C(0x0123456789abcdef));
    assert_string_equal(id, "gen-0123456789abcdef");
    uint64_t v = 0;
    assert_true(lx_record_id_parse(id, strlen(id), &v));
    assert_int_equal(v, UINT64_C(0x0123456789abcdef));
    const char *bad[] = {"gen-0123456789abcde",  "gen-0123456789abcdef0",
                         "gen-0123456789ABCDEF", "gen-8000000000000000",
                         "Gen-0123456789abcdef", "gen-0123456789abcdeg",
                         "gen-1-0123456789abcd", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(lx_record_id_parse(bad[i], strlen(bad[i]), &v));
    assert_true(lx_record_id_parse("gen-7fffffffffffffff", LX_RECORD_ID_LEN, &v));
}

static lx_store_t *start(const char *path)
{
    lx_store_opts_t o = {.path = path, .commit_interval_ms = 20, .retention_s = 0};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(lx_store_start(s), 0);
    return s;
}

static lx_record_t *find(lx_store_t *s, const char *id)
{
    static lx_store_job_t gen;
    lx_store_job_dispose(&gen);
    memset(&gen, 0, sizeof(gen));
    gen.kind = LX_JOB_GENERATION;
    snprintf(gen.gen_id, sizeof(gen.gen_id), "%s", id);
    assert_int_equal(t_submit_wait(s, &gen), 0);
    return gen.status == 0 ? gen.record : NULL;
}

/* Every field, with every kind of byte a client or provider can put in one, comes back. */
static void test_json_row_round_trip(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db);
    char id[LX_RECORD_ID_LEN + 1];
    uint64_t last = lx_store_seq_floor(s);
    lx_record_id_format(id, lx_record_seq_next(&last, (uint64_t)lx_clock_now_us() / 1000, 5));
    lx_record_t *r = t_record(id, "", lx_clock_now_us(), INT64_C(9223372036854775807));
    lx_record_set_cstr(r, LX_RF_KEY_NAME, "quote\" back\\slash");
    lx_record_set_cstr(r, LX_RF_USER, "ctl\x01\x1f\ttab\nnl\x7f");
    lx_record_set_cstr(r, LX_RF_SESSION_ID, "caf\xc3\xa9 \xe2\x82\xac");
    lx_record_set_cstr(r, LX_RF_REQUEST_ID, "bad\xff\xfe utf8");
    lx_record_set_cstr(r, LX_RF_FINISH_REASON, "length");
    lx_record_set_cstr(r, LX_RF_UPSTREAM_ID, "chatcmpl-\"x\"");
    lx_record_set_cstr(r, LX_RF_ENDPOINT, "http://127.0.0.1:1/v1");
    r->prompt_tokens = -1;
    r->cached_tokens = 3;
    r->reasoning_tokens = 4;
    r->reserved = -5;
    r->usage_known = true;
    r->streamed = true;
    r->cancelled = true;
    r->status = 499;
    r->latency_ms = UINT32_MAX;
    r->ttft_ms = 1;
    r->generation_ms = 2;
    r->n_attempts = 2;
    lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_PROVIDER), "p\"1");
    lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_OUTCOME), "error_5xx");
    r->att_status[0] = 502;
    r->att_ms[0] = 7;
    lx_record_set_cstr(r, LX_RF_ATTEMPT(1, LX_RA_MODEL), "m\\2");
    r->att_status[1] = -1;
    lx_record_t want = *r;
    lx_store_record(s, r);
    /* by its id (waits for the commit), then by the provider's id from the table */
    lx_record_t *got = find(s, id);
    assert_non_null(got);
    got = find(s, "chatcmpl-\"x\"");
    assert_non_null(got);
    assert_string_equal(lx_record_str(got, LX_RF_ID), id);
    assert_string_equal(lx_record_str(got, LX_RF_KEY_NAME), lx_record_str(&want, LX_RF_KEY_NAME));
    assert_string_equal(lx_record_str(got, LX_RF_USER), lx_record_str(&want, LX_RF_USER));
    assert_string_equal(lx_record_str(got, LX_RF_SESSION_ID),
                        lx_record_str(&want, LX_RF_SESSION_ID));
    assert_string_equal(lx_record_str(got, LX_RF_REQUEST_ID),
                        "bad\xef\xbf\xbd\xef\xbf\xbd utf8"); /* U+FFFD each */
    assert_string_equal(lx_record_str(got, LX_RF_UPSTREAM_ID),
                        lx_record_str(&want, LX_RF_UPSTREAM_ID));
    assert_string_equal(lx_record_str(got, LX_RF_ENDPOINT), lx_record_str(&want, LX_RF_ENDPOINT));
    assert_string_equal(lx_record_str(got, LX_RF_FINISH_REASON), "length");
    assert_int_equal(got->cost, want.cost);
    assert_int_equal(got->prompt_tokens, -1);
    assert_int_equal(got->cached_tokens, 3);
    assert_int_equal(got->reasoning_tokens, 4);
    assert_int_equal(got->reserved, -5);
    assert_true(got->usage_known && got->streamed && got->cancelled);
    assert_int_equal(got->status, 499);
    assert_int_equal(got->latency_ms, UINT32_MAX);
    assert_int_equal(got->created_at_us, want.created_at_us);
    assert_int_equal(got->n_attempts, 2);
    assert_string_equal(lx_record_str(got, LX_RF_ATTEMPT(0, LX_RA_PROVIDER)), "p\"1");
    assert_string_equal(lx_record_str(got, LX_RF_ATTEMPT(0, LX_RA_OUTCOME)), "error_5xx");
    assert_int_equal(got->att_status[0], 502);
    assert_int_equal(got->att_ms[0], 7);
    assert_string_equal(lx_record_str(got, LX_RF_ATTEMPT(1, LX_RA_MODEL)), "m\\2");
    assert_int_equal(got->att_status[1], -1);
    /* an id that is neither: not found (after the wait for a late record) */
    assert_null(find(s, "chatcmpl-y"));
    lx_store_close(s);
    /* the view reads the same row */
    assert_int_equal(t_query_i64(t.db, "SELECT status * 10 + streamed FROM usage"), 4991);
    tdir_remove(&t);
}

/* A reopened store hands out numbers above every stored one, even when the clock went back. */
static void test_numbers_unique_across_reopen(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db);
    uint64_t future_ms = (uint64_t)lx_clock_now_us() / 1000 + 3600 * 1000; /* an hour ahead */
    uint64_t last = lx_store_seq_floor(s);
    uint64_t top = lx_record_seq_next(&last, future_ms, 0);
    char id[LX_RECORD_ID_LEN + 1];
    lx_record_id_format(id, top);
    lx_store_record(s, t_record(id, "", lx_clock_now_us(), 1));
    lx_store_close(s);
    s = start(t.db);
    assert_int_equal(lx_store_seq_floor(s), top >> LX_RECORD_LANE_BITS);
    last = lx_store_seq_floor(s);
    uint64_t next = lx_record_seq_next(&last, (uint64_t)lx_clock_now_us() / 1000, 0);
    assert_true(next > top);
    lx_record_id_format(id, next);
    lx_store_record(s, t_record(id, "", lx_clock_now_us(), 1));
    assert_non_null(find(s, id));
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM generations"), 2);
    tdir_remove(&t);
}

/* Rows numbered ahead of the clock (a clock that once read an hour ahead) are still pruned, by
 * their recorded arrival; a recent one in that range stays. */
static void test_prune_ahead_of_clock(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 20, .retention_s = 5};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    int64_t now = lx_clock_now_us();
    uint64_t last = 0, ahead_ms = (uint64_t)now / 1000 + 3600 * 1000;
    char id[LX_RECORD_ID_LEN + 1];
    lx_record_id_format(id, lx_record_seq_next(&last, ahead_ms, 0));
    lx_store_record(s, t_record(id, "", now - 60 * INT64_C(1000000), 1)); /* old: pruned */
    lx_record_id_format(id, lx_record_seq_next(&last, ahead_ms, 0));
    lx_store_record(s, t_record(id, "", now, 1)); /* recent: kept */
    assert_int_equal(lx_store_start(s), 0);
    int64_t n = -1;
    for (int i = 0; i < 300 && (n = t_query_i64(t.db, "SELECT count(*) FROM generations")) != 1;
         i++)
        t_sleep_ms(10);
    assert_int_equal(n, 1);
    assert_true(t_query_i64(t.db, "SELECT min(created_at_us) FROM usage") == now); /* kept */
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM generations"), 1);
    tdir_remove(&t);
}

/* A record with every field at its cap and a provider id that begins with a byte that is not
 * UTF-8: the canonical form (U+FFFD, the id cut back to its cap at a character boundary) fits,
 * and every other field keeps its bytes (appending the new form after the old strings left no
 * room: the id came out 9 bytes long); and a string two fields share stays one copy. */
static void test_canonical_full_record(void **state)
{
    (void)state;
    static lx_record_t r;
    lx_record_clear(&r);
    char v[256];
    for (unsigned f = 0; f < LX_RF_SLOTS; f++) {
        size_t cap = lx_record_cap(f);
        memset(v, 'a' + (int)(f % 26), cap);
        if (f == LX_RF_UPSTREAM_ID)
            v[0] = (char)0xff;
        lx_record_set(&r, f, v, cap);
    }
    lx_record_canonicalize(&r);
    for (unsigned f = 0; f < LX_RF_SLOTS; f++) {
        size_t cap = lx_record_cap(f), len = lx_record_len(&r, f);
        const char *got = lx_record_str(&r, f);
        assert_int_equal(got[len], '\0');
        if (f == LX_RF_UPSTREAM_ID) {
            assert_int_equal(len, cap);
            assert_memory_equal(got, "\xef\xbf\xbd", 3);
            for (size_t i = 3; i < len; i++)
                assert_int_equal(got[i], 'a' + (int)(f % 26));
        } else {
            assert_int_equal(len, cap);
            for (size_t i = 0; i < len; i++)
                assert_int_equal(got[i], 'a' + (int)(f % 26));
        }
    }
    /* shared: the served model and an attempt's, with a bad byte */
    lx_record_clear(&r);
    lx_record_set(&r, LX_RF_MODEL, "m\xfe", 2);
    lx_record_share(&r, LX_RF_ATTEMPT(0, LX_RA_MODEL), LX_RF_MODEL);
    lx_record_canonicalize(&r);
    assert_int_equal(lx_record_len(&r, LX_RF_MODEL), 4);
    assert_memory_equal(lx_record_str(&r, LX_RF_MODEL), "m\xef\xbf\xbd", 5);
    assert_ptr_equal(lx_record_str(&r, LX_RF_ATTEMPT(0, LX_RA_MODEL)),
                     lx_record_str(&r, LX_RF_MODEL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_next),
        cmocka_unit_test(test_id_format_parse),
        cmocka_unit_test(test_json_row_round_trip),
        cmocka_unit_test(test_numbers_unique_across_reopen),
        cmocka_unit_test(test_prune_ahead_of_clock),
        cmocka_unit_test(test_canonical_full_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
