/* test_store_records.c - usage records: batched commits, nothing lost at stop, generation
 * lookups, key usage counters, activity by UTC day, retention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/status.h"
#include <sys/stat.h>

#include "store_test.h"

#define DAY_US (86400 * INT64_C(1000000))
static const char *const HASH_A =
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *const HASH_B =
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static _Atomic int64_t fake_now;
static int64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

static lx_store_t *start(const char *path, uint64_t retention_s)
{
    lx_store_opts_t o = {.path = path, .commit_interval_ms = 50, .retention_s = retention_s};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(lx_store_start(s), 0);
    return s;
}

static void test_commit_within_interval(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    int64_t now = lx_clock_now_us();
    char id[40];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "gen-%d", i);
        lx_store_record(s, t_record(id, HASH_A, now, 7));
    }
    /* a bound with generous slack (the interval is 50 ms), not a timing assertion: poll */
    int64_t t0 = t_mono_ms(), n = 0;
    while ((n = t_query_i64(t.db, "SELECT count(*) FROM usage")) != 100 && t_mono_ms() - t0 < 5000)
        t_sleep_ms(5);
    print_message("100 records visible to another connection after %lld ms\n",
                  (long long)(t_mono_ms() - t0));
    assert_int_equal(n, 100);
    assert_int_equal(t_query_i64(t.db,
                                 "SELECT total FROM key_usage WHERE key_hash = 'aaaa"
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"),
                     700);
    char why[200];
    assert_true(lx_store_healthy(s, why, sizeof(why)));
    /* one record at a time, at arbitrary phases of the tick: the worst latency seen */
    int64_t worst = 0;
    for (int i = 0; i < 10; i++) {
        t_sleep_ms(7 * i % 50);
        snprintf(id, sizeof(id), "one-%d", i);
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM usage WHERE id = '%s'", id);
        t0 = t_mono_ms();
        lx_store_record(s, t_record(id, HASH_A, now, 7));
        while (t_query_i64(t.db, sql) != 1 && t_mono_ms() - t0 < 5000)
            t_sleep_ms(1);
        worst = t_mono_ms() - t0 > worst ? t_mono_ms() - t0 : worst;
    }
    print_message("single records: worst commit latency %lld ms (interval 50 ms)\n",
                  (long long)worst);
    assert_true(worst < 5000);
    lx_store_close(s);
    tdir_remove(&t);
}

static void test_stop_loses_nothing(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    int64_t now = lx_clock_now_us();
    char id[40];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "gen-%d", i);
        lx_store_record(s, t_record(id, i % 2 ? HASH_A : "", now, 1));
    }
    lx_store_stop(s);
    lx_store_stop(s); /* idempotent */
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 3000);
    assert_int_equal(t_query_i64(t.db, "SELECT sum(total) FROM key_usage"), 1500);
    lx_store_close(s);
    tdir_remove(&t);
}

static void test_record_fields_roundtrip(void **state)
{
    tdir_t t;
    tdir_make(&t);
    /* a record of 2023: a retention of 100 years keeps it (retention runs in busy ticks too) */
    lx_store_t *s = start(t.db, UINT64_C(100) * 365 * 86400);
    lx_record_t *r = t_record("gen-full", HASH_B, 1700000000123456, 42);
    lx_record_set_cstr(r, LX_RF_USER, "user \"quoted\"\nnewline");
    /* (past the writer's first eight-byte words: a quote, a backslash, DEL, a control byte,
     * UTF-8) */
    lx_record_set_cstr(r, LX_RF_SESSION_ID, "0123456789abcdef\"x\\y\x7fz\x01.");
    lx_record_set_cstr(r, LX_RF_KEY_NAME, "team-eight-\xc3\xa9t\xc3\xa9");
    lx_record_set_cstr(r, LX_RF_FINISH_REASON, "stop");
    r->streamed = true;
    r->cancelled = true;
    r->cached_tokens = 3;
    r->reasoning_tokens = 4;
    r->reserved = 99;
    r->usage_known = true;
    r->latency_ms = 1234;
    r->ttft_ms = 56;
    r->generation_ms = 1178;
    r->n_attempts = 2;
    lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_PROVIDER), "a\"b\\c");
    lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_OUTCOME), "error_5xx");
    r->att_status[0] = 503;
    r->att_ms[0] = 17;
    lx_record_set_cstr(r, LX_RF_ATTEMPT(1, LX_RA_PROVIDER), "openai");
    lx_record_set_cstr(r, LX_RF_ATTEMPT(1, LX_RA_MODEL), "openai/gpt-4o");
    lx_record_set_cstr(r, LX_RF_ATTEMPT(1, LX_RA_OUTCOME), "ok");
    r->att_status[1] = 200;
    lx_record_t copy = *r;
    lx_store_record(s, r);
    /* served at once (from the queue or the table) */
    lx_store_job_t job = {.kind = LX_JOB_GENERATION};
    snprintf(job.gen_id, sizeof(job.gen_id), "gen-full");
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    assert_non_null(job.record);
    lx_store_job_dispose(&job);
    lx_store_stop(s);
    /* then from the table only */
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_GENERATION;
    snprintf(job.gen_id, sizeof(job.gen_id), "gen-full");
    lx_store_run(s, &job);
    assert_int_equal(job.status, 0);
    lx_record_t *g = job.record;
    assert_non_null(g);
    copy.next = NULL;
    g->next = NULL;
    /* every field, attempts included */
    t_record_equal(g, &copy);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    tdir_remove(&t);
}

static void *late_record(void *arg)
{
    t_sleep_ms(300);
    lx_store_record(arg, t_record("gen-late", HASH_A, lx_clock_now_us(), 1));
    return NULL;
}

static void test_generation_waits_then_not_found(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    lx_store_job_t job = {.kind = LX_JOB_GENERATION};
    snprintf(job.gen_id, sizeof(job.gen_id), "gen-missing");
    int64_t t0 = t_mono_ms();
    assert_int_equal(t_submit_wait(s, &job), 0);
    int64_t waited = t_mono_ms() - t0;
    assert_int_equal(job.status, LX_ENOTFOUND);
    assert_null(job.record);
    assert_true(waited >= 900 && waited < 5000);
    lx_store_job_dispose(&job);

    /* a record that arrives while the lookup waits answers it */
    pthread_t th;
    pthread_create(&th, NULL, late_record, s);
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_GENERATION;
    snprintf(job.gen_id, sizeof(job.gen_id), "gen-late");
    assert_int_equal(t_submit_wait(s, &job), 0);
    pthread_join(th, NULL);
    assert_int_equal(job.status, 0);
    assert_non_null(job.record);
    assert_string_equal(lx_record_str(job.record, LX_RF_ID), "gen-late");
    lx_store_job_dispose(&job);
    lx_store_close(s);
    tdir_remove(&t);
}

static void test_activity_by_day(void **state)
{
    tdir_t t;
    tdir_make(&t);
    /* 2026-03-10 12:00 UTC */
    int64_t day = INT64_C(1773100800) * 1000000 + 12 * 3600 * INT64_C(1000000);
    int64_t midnight = day - 12 * 3600 * INT64_C(1000000);
    atomic_store(&fake_now, day);
    lx_clock_override(fake_clock, NULL);
    lx_store_t *s = start(t.db, 0);
    /* one microsecond before midnight is the previous day; midnight is this one */
    lx_store_record(s, t_record("g1", HASH_A, midnight - 1, 100));
    lx_store_record(s, t_record("g2", HASH_A, midnight, 200));
    lx_store_record(s, t_record("g3", HASH_B, midnight + 1, 400));
    lx_record_t *r = t_record("g4", HASH_A, midnight - DAY_US - 1, 800);
    lx_record_set_cstr(r, LX_RF_MODEL, "meta-llama/llama-3");
    lx_store_record(s, r);
    lx_store_record(s, t_record("g5", HASH_A, midnight - 31 * DAY_US, 1600)); /* too old */

    lx_store_job_t job = {.kind = LX_JOB_ACTIVITY, .date = -1};
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    /* the last 30 completed days: today is not complete, 31 days ago is too old */
    assert_int_equal(job.n_rows, 2);
    assert_string_equal(job.rows[0].date, "2026-03-09");
    assert_string_equal(job.rows[0].model, "openai/gpt-4o");
    assert_int_equal(job.rows[0].cost, 100);
    assert_int_equal(job.rows[0].requests, 1);
    assert_string_equal(job.rows[1].date, "2026-03-08");
    assert_string_equal(job.rows[1].model, "meta-llama/llama-3");
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_ACTIVITY;
    job.date = midnight / 1000000 + 5; /* any second of the day names the day */
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.n_rows, 1);
    assert_string_equal(job.rows[0].date, "2026-03-10");
    assert_int_equal(job.rows[0].requests, 2);
    assert_int_equal(job.rows[0].cost, 600);
    assert_int_equal(job.rows[0].prompt_tokens, 20);
    assert_int_equal(job.rows[0].completion_tokens, 40);
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_ACTIVITY;
    job.date = midnight / 1000000;
    snprintf(job.key_hash, sizeof(job.key_hash), "%s", HASH_B);
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.n_rows, 1);
    assert_int_equal(job.rows[0].cost, 400);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    lx_clock_override(NULL, NULL);
    tdir_remove(&t);
}

static void test_config_key_usage(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    int64_t now = lx_clock_now_us();
    lx_store_record(s, t_record("c1", HASH_B, now, 5));
    lx_store_record(s, t_record("c2", HASH_B, now, 6));
    lx_store_record(s, t_record("c3", HASH_B, now - 40 * DAY_US, 1000)); /* months ago */
    lx_store_job_t job = {.kind = LX_JOB_KEY_GET, .config_key = true};
    snprintf(job.hash, sizeof(job.hash), "%s", HASH_B);
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    assert_int_equal(job.n_keys, 1);
    assert_true(job.keys[0].from_config);
    assert_null(job.keys[0].key.name);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_TOTAL], 1011);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_DAY], 11);
    assert_int_equal(job.keys[0].limit_remaining, -1);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    tdir_remove(&t);
}

/* A lookup waiting for its record finds it even when another job (activity) commits it first. */
static void test_generation_wait_sees_commit(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    atomic_int done = 0;
    lx_store_job_t gen = {.kind = LX_JOB_GENERATION, .done = t_job_done, .arg = &done};
    snprintf(gen.gen_id, sizeof(gen.gen_id), "gen-c");
    lx_store_submit(s, &gen);
    t_sleep_ms(120); /* (it waits: the record is not there yet) */
    assert_int_equal(atomic_load(&done), 0);
    lx_store_record(s, t_record("gen-c", HASH_A, lx_clock_now_us(), 7));
    lx_store_job_t act = {.kind = LX_JOB_ACTIVITY, .date = -1};
    assert_int_equal(t_submit_wait(s, &act), 0);
    for (int i = 0; i < 3000 && !atomic_load(&done); i++)
        t_sleep_ms(1);
    assert_int_equal(atomic_load(&done), 1);
    assert_int_equal(gen.status, 0);
    assert_non_null(gen.record);
    assert_string_equal(lx_record_str(gen.record, LX_RF_ID), "gen-c");
    lx_store_job_dispose(&gen);
    lx_store_job_dispose(&act);
    lx_store_close(s);
    tdir_remove(&t);
}

/* A generation id recorded twice keeps one row, and its cost counts once. */
static void test_duplicate_counts_once(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    int64_t now = lx_clock_now_us();
    lx_store_record(s, t_record("dup", HASH_B, now, 100));
    lx_store_record(s, t_record("dup", HASH_B, now, 100));
    lx_store_close(s); /* (both committed: the second kept out) */
    s = start(t.db, 0);
    lx_store_job_t job = {.kind = LX_JOB_KEY_GET, .config_key = true};
    snprintf(job.hash, sizeof(job.hash), "%s", HASH_B);
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_TOTAL], 100);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    /* the file is its owner's alone */
    struct stat st;
    assert_int_equal(stat(t.db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    tdir_remove(&t);
}

/* Canonical ids (their number is the row's key) recorded twice, within one transaction and
 * against a row already committed: each row once, each cost counted once, and the other
 * records of those transactions in (the transaction's one INSERT ... SELECT meets the number
 * already there and is redone row by row). */
static void test_duplicate_canonical_counts_once(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 50};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    int64_t now = lx_clock_now_us();
    uint64_t seq0 = lx_record_seq_of_ms((uint64_t)now / 1000) + 1;
    static const struct {
        unsigned k;
        int64_t cost;
    } first[] = {{0, 100}, {1, 10}, {0, 100}, {2, 1}}, second[] = {{0, 100}, {3, 1000}};
    char id[LX_RECORD_ID_LEN + 1];
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        lx_record_id_format(id, seq0 + first[i].k);
        lx_store_record(s, t_record(id, HASH_B, now, first[i].cost));
    }
    assert_int_equal(lx_store_start(s), 0); /* (all four in its first transaction) */
    const char *total = "SELECT coalesce(sum(total), 0) FROM key_usage";
    int64_t t0 = t_mono_ms();
    while (t_query_i64(t.db, total) != 111 && t_mono_ms() - t0 < 5000)
        t_sleep_ms(5);
    assert_int_equal(t_query_i64(t.db, total), 111);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 3);
    for (size_t i = 0; i < sizeof(second) / sizeof(second[0]); i++) {
        lx_record_id_format(id, seq0 + second[i].k);
        lx_store_record(s, t_record(id, HASH_B, now, second[i].cost));
    }
    t0 = t_mono_ms();
    while (t_query_i64(t.db, total) != 1111 && t_mono_ms() - t0 < 5000)
        t_sleep_ms(5);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, total), 1111);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 4);
    assert_int_equal(t_query_i64(t.db, "SELECT sum(cost) FROM usage"), 1111);
    tdir_remove(&t);
    (void)state;
}

static void test_retention_prunes(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 86400);
    int64_t now = lx_clock_now_us();
    char id[40];
    for (int i = 0; i < 1200; i++) {
        snprintf(id, sizeof(id), "old-%d", i);
        lx_store_record(s, t_record(id, HASH_A, now - 2 * DAY_US, 1));
    }
    lx_store_record(s, t_record("new", HASH_A, now, 1));
    int64_t t0 = t_mono_ms(), n = -1;
    while ((n = t_query_i64(t.db, "SELECT count(*) FROM usage")) != 1 && t_mono_ms() - t0 < 8000)
        t_sleep_ms(20);
    assert_int_equal(n, 1);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage WHERE id = 'new'"), 1);
    /* the counters are not records: they stay */
    assert_int_equal(t_query_i64(t.db, "SELECT total FROM key_usage"), 1201);
    lx_store_close(s);
    tdir_remove(&t);
}

/* Retention under steady load: a record arrives in every tick (more than 20 a second), so no
 * tick is ever idle; the old rows still go, a bounded step at a time. The clock is fixed so
 * that which rows are old does not depend on when the test runs. */
static void test_retention_under_load(void **state)
{
    tdir_t t;
    tdir_make(&t);
    int64_t now = lx_clock_now_us();
    atomic_store(&fake_now, now);
    lx_clock_override(fake_clock, NULL);
    lx_store_t *s = NULL;
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 50, .retention_s = 60};
    char err[256] = "", id[40];
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    /* queued before the thread starts: its first tick commits them all */
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "old-%d", i);
        lx_store_record(s, t_record(id, HASH_A, now - 120 * INT64_C(1000000), 1));
    }
    assert_int_equal(lx_store_start(s), 0);
    /* a record every 10 ms (five per tick) for at most 4 s, until the old rows are gone (-2:
     * nothing committed yet; the old rows are committed before or with the first new one) */
    static const char *const old_left =
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM usage WHERE id LIKE 'new-%') THEN"
        " (SELECT count(*) FROM usage WHERE id LIKE 'old-%') ELSE -2 END";
    int64_t t0 = t_mono_ms(), old = -1;
    for (int i = 0; t_mono_ms() - t0 < 4000; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        lx_store_record(s, t_record(id, HASH_A, now, 1));
        t_sleep_ms(10);
        if (i % 10 == 9 && (old = t_query_i64(t.db, old_left)) == 0)
            break;
    }
    assert_int_equal(old, 0);
    lx_store_close(s);
    lx_clock_override(NULL, NULL);
    tdir_remove(&t);
}

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Records from a worker's pool come back to it once committed, zeroed, at most
 * LX_STORE_POOL_MAX of them (the rest are freed); one put back is handed out again. */
static void test_record_pool(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    enum { N = LX_STORE_POOL_MAX + 5 };
    lx_record_pool_t pool = {.lane = 3};
    lx_record_t **made = malloc(N * sizeof(*made));
    assert_non_null(made);
    int64_t now = lx_clock_now_us();
    for (int i = 0; i < N; i++) /* (all made before any is queued: none comes back yet) */
        assert_non_null(made[i] = lx_store_record_get(s, &pool));
    for (int i = 0; i < N; i++) {
        lx_record_t *r = made[i];
        lx_record_t *f = t_record("", HASH_A, now, 1);
        char id[16];
        snprintf(id, sizeof(id), "pool-%d", i);
        lx_record_set_cstr(f, LX_RF_ID, id);
        uint16_t lane = r->pool;
        *r = *f;
        r->pool = lane;
        free(f);
        lx_store_record(s, r);
    }
    qsort(made, N, sizeof(*made), ptr_cmp);
    int64_t t0 = t_mono_ms();
    while (t_query_i64(t.db, "SELECT count(*) FROM usage") != N && t_mono_ms() - t0 < 10000)
        t_sleep_ms(5);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), N);
    t_sleep_ms(300); /* (the store hands them back right after the commit) */
    lx_record_t **got = malloc(N * sizeof(*got));
    assert_non_null(got);
    int n = 0;
    do { /* (the first take empties the lane into the pool's own list) */
        lx_record_t *r = got[n++] = lx_store_record_get(s, &pool);
        assert_non_null(bsearch(&r, made, N, sizeof(*made), ptr_cmp));
        assert_int_equal(lx_record_str(r, LX_RF_KEY_HASH)[0], '\0');
        assert_int_equal(r->cost, 0);
        assert_int_equal(r->pool, 4);
    } while (pool.free != NULL && n < N);
    assert_int_equal(n, LX_STORE_POOL_MAX); /* (the 5 past the bound were freed) */
    assert_int_equal(pool.taken, LX_STORE_POOL_MAX);
    lx_store_record_put(&pool, got[0]);
    assert_ptr_equal(lx_store_record_get(s, &pool), got[0]);
    for (int i = 0; i < n; i++)
        free(got[i]);
    free(got);
    free(made);
    lx_record_pool_dispose(&pool);
    lx_store_close(s);
    tdir_remove(&t);
    (void)state;
}

/* Records of two workers' pools and records of no pool, interleaved in runs of 1 to 4 (more
 * runs of one lane than a transaction takes: STORE_RUNS_MAX), all committed, and each pool
 * gets back exactly its own records: the runs are cut and given back whole, none lost or
 * crossed. */
static void test_record_pool_lanes(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    enum { N = 3000 };
    lx_record_pool_t pools[2] = {{.lane = 1}, {.lane = 2}};
    lx_record_t **made[2] = {calloc(N, sizeof(lx_record_t *)), calloc(N, sizeof(lx_record_t *))};
    assert_non_null(made[0]);
    assert_non_null(made[1]);
    int owner[N], n_made[2] = {0, 0};
    for (int i = 0, run = 0; i < N; run++) /* owner 2: a record of no pool (freed) */
        for (int k = 0; k <= run % 4 && i < N; k++)
            owner[i++] = run % 3;
    for (int i = 0; i < N; i++)
        if (owner[i] < 2)
            assert_non_null(made[owner[i]][n_made[owner[i]]++] =
                                lx_store_record_get(s, &pools[owner[i]]));
    int64_t now = lx_clock_now_us();
    int next[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "lanes-%d", i);
        lx_record_t *f = t_record(id, HASH_A, now, 1);
        if (owner[i] < 2) {
            lx_record_t *r = made[owner[i]][next[owner[i]]++];
            uint16_t lane = r->pool;
            *r = *f;
            r->pool = lane;
            free(f);
            f = r;
        }
        lx_store_record(s, f);
    }
    int64_t t0 = t_mono_ms();
    while (t_query_i64(t.db, "SELECT count(*) FROM usage") != N && t_mono_ms() - t0 < 10000)
        t_sleep_ms(5);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), N);
    assert_int_equal(t_query_i64(t.db, "SELECT total FROM key_usage"), N);
    t_sleep_ms(300); /* (the store hands them back right after the commit) */
    for (int p = 0; p < 2; p++) {
        int per = n_made[p];
        qsort(made[p], (size_t)per, sizeof(lx_record_t *), ptr_cmp);
        lx_record_t **got = calloc((size_t)per + 1, sizeof(*got));
        assert_non_null(got);
        int n = 0;
        do {
            lx_record_t *r = got[n++] = lx_store_record_get(s, &pools[p]);
            assert_non_null(bsearch(&r, made[p], (size_t)per, sizeof(lx_record_t *), ptr_cmp));
            assert_int_equal(r->pool, p + 2);
        } while (pools[p].free != NULL && n <= per);
        assert_int_equal(n, per); /* every one back, each once */
        qsort(got, (size_t)per, sizeof(*got), ptr_cmp);
        for (int i = 1; i < per; i++)
            assert_true(got[i - 1] != got[i]);
        for (int i = 0; i < n; i++)
            free(got[i]);
        free(got);
        free(made[p]);
        lx_record_pool_dispose(&pools[p]);
    }
    lx_store_close(s);
    tdir_remove(&t);
    (void)state;
}

/* More records queued before the thread runs than the record ring holds (16,384 slots; the
 * rest go on the stack): all committed, each once, in the order they were queued (the store
 * numbers ids of another form in its own lane in the order it inserts them). */
static void test_records_past_the_ring(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 50};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    enum { N = 20000 };
    int64_t now = lx_clock_now_us();
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "q%05d", i);
        lx_store_record(s, t_record(id, HASH_A, now, 1));
    }
    assert_int_equal(lx_store_start(s), 0);
    int64_t t0 = t_mono_ms();
    while (t_query_i64(t.db, "SELECT count(*) FROM usage") != N && t_mono_ms() - t0 < 20000)
        t_sleep_ms(10);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), N);
    assert_int_equal(t_query_i64(t.db, "SELECT total FROM key_usage"), N);
    /* in queue order: no row numbered after one queued later */
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY "
                                       "seq) AS prev FROM usage) WHERE prev > id"),
                     0);
    lx_store_close(s);
    tdir_remove(&t);
    (void)state;
}

/* A record at its defaults (no key, tokens unknown, nothing served but the model asked, the
 * canonical id), and one whose model asked is the model served: the short row (members at
 * their default left out, store_db.c v4) reads back field for field. */
static void test_record_defaults_roundtrip(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = start(t.db, 0);
    lx_record_t *want[2];
    for (int i = 0; i < 2; i++) {
        lx_record_t *r = want[i] = lx_record_new();
        assert_non_null(r);
        char id[LX_RECORD_ID_LEN + 1];
        lx_record_id_format(id, lx_record_seq_of_ms((uint64_t)lx_clock_now_us() / 1000) + 1 +
                                    (uint64_t)i);
        lx_record_set_cstr(r, LX_RF_ID, id);
        lx_record_set_cstr(r, LX_RF_MODEL_ASKED, "a/b");
        r->prompt_tokens = r->completion_tokens = r->cached_tokens = r->reasoning_tokens = -1;
        r->created_at_us = lx_clock_now_us();
        if (i == 1) {
            lx_record_set_cstr(r, LX_RF_MODEL, "a/b");
            r->prompt_tokens = 0;
            r->n_attempts = 1;
            lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_MODEL), "a/b");
        }
        lx_record_t *q = malloc(sizeof(*q));
        assert_non_null(q);
        *q = *r;
        lx_store_record(s, q);
    }
    lx_store_stop(s);
    for (int i = 0; i < 2; i++) {
        lx_store_job_t job = {.kind = LX_JOB_GENERATION};
        snprintf(job.gen_id, sizeof(job.gen_id), "%s", lx_record_str(want[i], LX_RF_ID));
        lx_store_run(s, &job);
        assert_int_equal(job.status, 0);
        t_record_equal(job.record, want[i]);
        lx_store_job_dispose(&job);
        free(want[i]);
    }
    /* (v2 wrote about 600 bytes for each) */
    assert_true(t_query_i64(t.db, "SELECT max(length(record)) FROM generations") < 64);
    lx_store_close(s);
    tdir_remove(&t);
    (void)state;
}

/* A provider id and a model with bytes that are not UTF-8 have one form, U+FFFD in place of
 * each bad byte (the record's JSON writer's rule): the generation is found by the raw id and
 * by that form alike, while pending and once in the table, and /activity's model is the one
 * the usage view shows. (Before, the raw id found the pending record only and the canonical
 * one the stored row only; /activity kept the raw bytes.) */
static void test_invalid_utf8_one_form(void **state)
{
    (void)state;
    static const char raw_id[] = "chatcmpl-\xff\xc3(x\xed\xa0\x80";
    static const char canon_id[] = "chatcmpl-\xef\xbf\xbd\xef\xbf\xbd(x\xef\xbf\xbd\xef\xbf\xbd"
                                   "\xef\xbf\xbd";
    static const char canon_model[] = "team/m\xef\xbf\xbd\xef\xbf\xbd";
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 50};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    int64_t now = lx_clock_now_us();
    lx_record_t *r = t_record("gen-utf8", HASH_A, now, 5);
    lx_record_set_cstr(r, LX_RF_UPSTREAM_ID, raw_id);
    lx_record_set_cstr(r, LX_RF_MODEL, "team/m\xe2\x82");
    lx_store_record(s, r);
    for (int committed = 0; committed < 2; committed++) {
        if (committed) { /* (not started until now: the record stayed pending) */
            assert_int_equal(lx_store_start(s), 0);
            lx_store_stop(s);
            assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 1);
        }
        for (int form = 0; form < 2; form++) {
            lx_store_job_t job = {.kind = LX_JOB_GENERATION};
            snprintf(job.gen_id, sizeof(job.gen_id), "%s", form ? canon_id : raw_id);
            lx_store_run(s, &job);
            if (job.status != 0)
                fail_msg("%s, by the %s id: %s", committed ? "stored" : "pending",
                         form ? "canonical" : "raw", job.message);
            assert_non_null(job.record);
            assert_string_equal(lx_record_str(job.record, LX_RF_UPSTREAM_ID), canon_id);
            assert_string_equal(lx_record_str(job.record, LX_RF_MODEL), canon_model);
            lx_store_job_dispose(&job);
        }
    }
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage WHERE model = "
                                       "CAST(x'7465616d2f6defbfbdefbfbd' AS TEXT)"),
                     1);
    lx_store_job_t job = {.kind = LX_JOB_ACTIVITY, .date = now / 1000000};
    lx_store_run(s, &job);
    assert_int_equal(job.status, 0);
    assert_int_equal(job.n_rows, 1);
    assert_string_equal(job.rows[0].model, canon_model);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    tdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_within_interval),
        cmocka_unit_test(test_record_pool),
        cmocka_unit_test(test_record_pool_lanes),
        cmocka_unit_test(test_records_past_the_ring),
        cmocka_unit_test(test_stop_loses_nothing),
        cmocka_unit_test(test_record_fields_roundtrip),
        cmocka_unit_test(test_record_defaults_roundtrip),
        cmocka_unit_test(test_invalid_utf8_one_form),
        cmocka_unit_test(test_generation_waits_then_not_found),
        cmocka_unit_test(test_activity_by_day),
        cmocka_unit_test(test_config_key_usage),
        cmocka_unit_test(test_duplicate_counts_once),
        cmocka_unit_test(test_duplicate_canonical_counts_once),
        cmocka_unit_test(test_generation_wait_sees_commit),
        cmocka_unit_test(test_retention_prunes),
        cmocka_unit_test(test_retention_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
