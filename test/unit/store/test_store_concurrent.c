/* test_store_concurrent.c - records from many threads at once through the lock-free queue,
 * while the store thread commits: every one is in the table after stop. Also built and run
 * under the tsan preset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "store_test.h"

#define PRODUCERS  4
#define PER_THREAD 5000

static const char *const HASH = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

typedef struct producer {
    lx_store_t *s;
    int index;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    char id[40];
    int64_t now = lx_clock_now_us();
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(id, sizeof(id), "gen-%d-%d", p->index, i);
        lx_store_record(p->s, t_record(id, HASH, now, 1));
    }
    return NULL;
}

static void test_producers(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .commit_interval_ms = 10};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    assert_int_equal(lx_store_start(s), 0);
    pthread_t th[PRODUCERS];
    producer_t p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (producer_t){s, i};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    /* a job in the middle of it */
    lx_store_job_t job = {.kind = LX_JOB_ACTIVITY, .date = -1};
    assert_int_equal(t_submit_wait(s, &job), 0);
    lx_store_job_dispose(&job);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    lx_store_stop(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), PRODUCERS * PER_THREAD);
    assert_int_equal(t_query_i64(t.db, "SELECT count(DISTINCT id) FROM usage"),
                     PRODUCERS * PER_THREAD);
    assert_int_equal(t_query_i64(t.db, "SELECT total FROM key_usage"), PRODUCERS * PER_THREAD);
    lx_store_close(s);
    tdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
