/* test_store.c - opening the store: migrations, reopening, refusals that name the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/status.h"
#include "store_test.h"

static lx_store_t *open_ok(const char *path)
{
    lx_store_opts_t o = {.path = path};
    lx_store_t *s = NULL;
    char err[256] = "";
    int rc = lx_store_open(&o, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("open %s: %s", path, err);
    return s;
}

static void test_migrations_from_empty(void **state)
{
    tdir_t t;
    tdir_make(&t);
    int v = -1;
    char err[256];
    assert_int_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 0);
    lx_store_t *s = open_ok(t.db);
    lx_store_close(s);
    assert_int_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_int_equal(v, LX_STORE_SCHEMA_VERSION);
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key='schema_version'"),
                     LX_STORE_SCHEMA_VERSION);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM sqlite_master WHERE type='table'"
                                       " AND name IN ('keys','key_usage','usage','audit')"),
                     4);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM sqlite_master WHERE type='index'"
                                       " AND name = 'usage_key_time'"),
                     1);
    /* WAL mode is recorded in the file */
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(t.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* opening again applies nothing and keeps the version */
    s = open_ok(t.db);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM meta"), 1);
    tdir_remove(&t);
}

static void test_reopen_keeps_keys(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_ok(t.db);
    lx_store_job_t job = {.kind = LX_JOB_KEY_CREATE};
    snprintf(job.actor, sizeof(job.actor), "cli");
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_LIMIT | LX_KEY_F_LIMIT_RESET | LX_KEY_F_MODELS;
    job.input.name = strdup("team a");
    job.input.has_limit = true;
    job.input.limit = 5000000;
    job.input.limit_reset = LX_PERIOD_WEEK;
    job.input.n_models = 2;
    job.input.models = calloc(2, sizeof(char *));
    job.input.models[0] = strdup("meta-llama/*");
    job.input.models[1] = strdup("openai/gpt-4o");
    lx_store_run(s, &job);
    assert_int_equal(job.status, 0);
    char hash[65];
    snprintf(hash, sizeof(hash), "%s", job.keys[0].key.hash);
    lx_store_job_dispose(&job);
    lx_store_close(s);

    s = open_ok(t.db);
    lx_store_job_t get = {.kind = LX_JOB_KEY_GET};
    snprintf(get.hash, sizeof(get.hash), "%s", hash);
    lx_store_run(s, &get);
    assert_int_equal(get.status, 0);
    assert_int_equal(get.n_keys, 1);
    const lx_store_key_t *k = &get.keys[0].key;
    assert_string_equal(k->name, "team a");
    assert_true(k->limits.has_limit);
    assert_int_equal(k->limits.limit, 5000000);
    assert_int_equal(k->limits.limit_reset, LX_PERIOD_WEEK);
    assert_int_equal(k->n_models, 2);
    assert_string_equal(k->models[0], "meta-llama/*");
    assert_string_equal(k->models[1], "openai/gpt-4o");
    assert_string_equal(k->created_by, "cli");
    assert_int_equal(get.keys[0].limit_remaining, 5000000);
    lx_store_job_dispose(&get);
    lx_store_close(s);
    tdir_remove(&t);
}

static void test_newer_schema_refused(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_close(open_ok(t.db));
    assert_int_equal(t_exec(t.db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'"),
                     SQLITE_OK);
    lx_store_opts_t o = {.path = t.db};
    lx_store_t *s = NULL;
    char err[256] = "", want[256];
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_ESCHEMA);
    assert_null(s);
    snprintf(want, sizeof(want), "%s: schema version 99 is newer than this llmux (%d)", t.db,
             LX_STORE_SCHEMA_VERSION);
    assert_string_equal(err, want);
    int v = 0;
    assert_int_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 99);
    /* nothing was changed */
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta"), 99);
    tdir_remove(&t);
}

static void test_corrupt_refused(void **state)
{
    tdir_t t;
    tdir_make(&t);
    FILE *f = fopen(t.db, "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc("this is no database "[i % 20], f);
    fclose(f);
    lx_store_opts_t o = {.path = t.db};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err, t.db));
    assert_non_null(strstr(err, "not a SQLite database"));
    assert_null(strchr(err, '\n'));
    int v;
    assert_int_not_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_non_null(strstr(err, t.db));
    tdir_remove(&t);
}

static void test_locked_refused(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_close(open_ok(t.db));
    sqlite3 *other;
    assert_int_equal(sqlite3_open(t.db, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    lx_store_opts_t o = {.path = t.db};
    lx_store_t *s = NULL;
    char err[256] = "";
    int64_t t0 = t_mono_ms();
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_ESTORE);
    int64_t waited = t_mono_ms() - t0;
    assert_null(s);
    assert_non_null(strstr(err, t.db));
    assert_non_null(strstr(err, "locked by another process"));
    assert_true(waited >= 1500); /* it waited for the busy timeout before refusing */
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* free again: it opens */
    lx_store_close(open_ok(t.db));
    tdir_remove(&t);
}

static void test_memory_and_unwritable(void **state)
{
    lx_store_opts_t o = {.path = ":memory:"};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_EINVAL);
    assert_non_null(strstr(err, ":memory:"));
    o.allow_memory = true;
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    lx_store_close(s);
    s = NULL;
    o.path = "/nonexistent-llmux-dir/sub/llmux.db";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err, "/nonexistent-llmux-dir/sub/llmux.db: cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_from_empty), cmocka_unit_test(test_reopen_keeps_keys),
        cmocka_unit_test(test_newer_schema_refused),  cmocka_unit_test(test_corrupt_refused),
        cmocka_unit_test(test_locked_refused),        cmocka_unit_test(test_memory_and_unwritable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
