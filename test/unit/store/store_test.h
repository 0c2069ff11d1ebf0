/*
 * store_test.h - helpers of the store's tests: a scratch directory under /tmp (removed at the
 * end), a database path in it, jobs run on the store thread and waited for (bounded), records
 * with chosen fields.
 */
#ifndef LX_STORE_TEST_H
#define LX_STORE_TEST_H

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

typedef struct tdir {
    char dir[64];
    char db[128];
} tdir_t;

static inline void tdir_make(tdir_t *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/lxstoreXXXXXX");
    if (mkdtemp(t->dir) == NULL)
        abort();
    snprintf(t->db, sizeof(t->db), "%s/llmux.db", t->dir);
}

static inline void tdir_remove(tdir_t *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;
    char p[400];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", t->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(t->dir);
}

static inline int64_t t_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000};
    nanosleep(&ts, NULL);
}

static inline void t_job_done(lx_store_job_t *job)
{
    atomic_store((atomic_int *)job->arg, 1);
}

/* Submits <job> to a started store and waits (at most 10 s) for its done(). */
static inline int t_submit_wait(lx_store_t *s, lx_store_job_t *job)
{
    static atomic_int flag;
    atomic_store(&flag, 0);
    job->done = t_job_done;
    job->arg = &flag;
    lx_store_submit(s, job);
    for (int i = 0; i < 10000 && !atomic_load(&flag); i++)
        t_sleep_ms(1);
    return atomic_load(&flag) ? 0 : -1;
}

static inline lx_record_t *t_record(const char *id, const char *key_hash, int64_t at_us,
                                    int64_t cost)
{
    lx_record_t *r = lx_record_new();
    if (r == NULL)
        abort();
    lx_record_set_cstr(r, LX_RF_ID, id);
    lx_record_set_cstr(r, LX_RF_KEY_HASH, key_hash);
    lx_record_set_cstr(r, LX_RF_MODEL, "openai/gpt-4o");
    lx_record_set_cstr(r, LX_RF_MODEL_ASKED, "gpt-4o");
    lx_record_set_cstr(r, LX_RF_PROVIDER, "openai");
    lx_record_set_cstr(r, LX_RF_API, "chat");
    r->created_at_us = at_us;
    r->prompt_tokens = 10;
    r->completion_tokens = 20;
    r->cost = cost;
    r->status = 200;
    return r;
}

/* Asserts that <a> and <b> hold the same record: every number, every string, and the
 * attempts below n_attempts (where the strings sit in the arena may differ). */
static inline void t_record_equal(const lx_record_t *a, const lx_record_t *b)
{
    assert_int_equal(a->created_at_us, b->created_at_us);
    assert_int_equal(a->prompt_tokens, b->prompt_tokens);
    assert_int_equal(a->completion_tokens, b->completion_tokens);
    assert_int_equal(a->cached_tokens, b->cached_tokens);
    assert_int_equal(a->reasoning_tokens, b->reasoning_tokens);
    assert_int_equal(a->cost, b->cost);
    assert_int_equal(a->reserved, b->reserved);
    assert_int_equal(a->latency_ms, b->latency_ms);
    assert_int_equal(a->ttft_ms, b->ttft_ms);
    assert_int_equal(a->generation_ms, b->generation_ms);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->usage_known, b->usage_known);
    assert_int_equal(a->streamed, b->streamed);
    assert_int_equal(a->cancelled, b->cancelled);
    assert_int_equal(a->n_attempts, b->n_attempts);
    for (unsigned f = 0; f < LX_RF_COUNT; f++) {
        assert_int_equal(lx_record_len(a, f), lx_record_len(b, f));
        assert_string_equal(lx_record_str(a, f), lx_record_str(b, f));
    }
    for (unsigned i = 0; i < a->n_attempts && i < LX_RECORD_ATTEMPTS; i++) {
        assert_int_equal(a->att_status[i], b->att_status[i]);
        assert_int_equal(a->att_ms[i], b->att_ms[i]);
        for (unsigned k = 0; k < LX_RA_COUNT; k++)
            assert_string_equal(lx_record_str(a, LX_RF_ATTEMPT(i, k)),
                                lx_record_str(b, LX_RF_ATTEMPT(i, k)));
    }
}

/* One integer from <sql> on a separate connection to <path>; -1 on error. */
static inline int64_t t_query_i64(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(db, 5000) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static inline int t_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

#endif
