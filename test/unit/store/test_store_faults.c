/* test_store_faults.c - a full disk (PRAGMA max_page_count): the store reports itself
 * unhealthy, keeps every record in memory, and commits them all once there is room again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/store_int.h"
#include "store_test.h"

static int64_t page_count(lx_store_t *s)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_full_disk_then_recovery(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 20};
    lx_store_t *s = NULL;
    char err[256] = "", why[200] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)page_count(s));
    assert_int_equal(store_exec(s, sql), SQLITE_OK); /* no page more: the disk is full */
    assert_int_equal(lx_store_start(s), 0);
    assert_true(lx_store_healthy(s, NULL, 0));

    char id[40];
    int64_t now = lx_clock_now_us();
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "gen-%d", i);
        lx_record_t *r = t_record(id, "", now, 1);
        char user[200];
        memset(user, 'u', sizeof(user));
        lx_record_set(r, LX_RF_USER, user, sizeof(user)); /* fill pages (cut to its cap) */
        lx_store_record(s, r);
    }
    int64_t t0 = t_mono_ms();
    while (lx_store_healthy(s, why, sizeof(why)) && t_mono_ms() - t0 < 5000)
        t_sleep_ms(5);
    assert_false(lx_store_healthy(s, why, sizeof(why)));
    print_message("unhealthy: %s\n", why);
    assert_non_null(strstr(why, t.db));
    assert_non_null(strstr(why, "full"));
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 0);
    /* retried every tick, still failing, still kept: a generation lookup finds them */
    t_sleep_ms(100);
    lx_store_job_t job = {.kind = LX_JOB_GENERATION};
    snprintf(job.gen_id, sizeof(job.gen_id), "gen-499");
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    lx_store_job_dispose(&job);

    assert_int_equal(store_exec(s, "PRAGMA max_page_count = 1000000"), SQLITE_OK);
    t0 = t_mono_ms();
    while (!lx_store_healthy(s, NULL, 0) && t_mono_ms() - t0 < 5000)
        t_sleep_ms(5);
    assert_true(lx_store_healthy(s, NULL, 0));
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 500);
    tdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_disk_then_recovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
