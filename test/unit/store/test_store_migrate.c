/* test_store_migrate.c - a migration of a file of many usage rows, in a process whose first use
 * of SQLite is the store's (its process-wide SQLite settings, store_db.c's sqlite_setup, are in
 * force only then: test_store.c's tests touch SQLite first, so they migrate under defaults).
 * With the statement journal spilling at 4 MiB, SQLite 3.40.1 failed this migration with
 * "database or disk is full" and the gateway could not start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "store_test.h"

enum { ROWS = 20000 };

/* ROWS rows of schema v3 (every member spelled out, as v2 and v3 wrote them), numbered 1024 <<
 * 9 apart from 1 << 50, every fifth one streamed with a provider id */
static const char rows_v3[] =
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)"
    " INSERT INTO generations (seq, upstream_h, record) SELECT (1 << 50) + (i << 19),"
    " CASE WHEN i % 5 = 0 THEN i END, json_object('id', printf('gen-%016x', (1 << 50) +"
    " (i << 19)), 'key_hash', printf('%064x', i % 8), 'key_name', 'team-' || (i % 8),"
    " 'model_asked', 'openai/gpt-4o-mini', 'model', 'openai/gpt-4o-mini', 'provider', 'openai',"
    " 'endpoint', 'https://api.openai.com/v1', 'api', 'chat', 'request_id', printf('%016x', i),"
    " 'session_id', '', 'user', CASE WHEN i % 3 = 0 THEN 'user-' || i ELSE '' END,"
    " 'finish_reason', 'stop', 'upstream_id', CASE WHEN i % 5 = 0 THEN 'chatcmpl-' || i"
    " ELSE '' END, 'created_at_us', 1796000000000000 + i * 1000, 'prompt_tokens', 100 + i % 900,"
    " 'completion_tokens', 10 + i % 300, 'cached_tokens', 0, 'reasoning_tokens', 0, 'cost',"
    " 1 + i % 700, 'reserved', 900, 'usage_known', 1, 'streamed', i % 5 = 0, 'cancelled', 0,"
    " 'status', 200, 'latency_ms', 200 + i % 3000, 'ttft_ms', 0, 'generation_ms', 0, 'attempts',"
    " json_array(json_object('provider', 'openai', 'endpoint', 'https://api.openai.com/v1',"
    " 'model', 'openai/gpt-4o-mini', 'outcome', 'ok', 'status', 200, 'ms', 200 + i % 3000)))"
    " FROM n";

static void test_migration_many_rows(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    /* the store's open is the process's first use of SQLite: its settings apply */
    lx_store_opts_t o = {.path = t.db};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    lx_store_close(s);
    assert_int_equal(t_exec(t.db, rows_v3), SQLITE_OK);
    assert_int_equal(t_exec(t.db, "UPDATE meta SET value = 3 WHERE key = 'schema_version'"),
                     SQLITE_OK);
    int64_t long_bytes = t_query_i64(t.db, "SELECT sum(length(record)) FROM generations");

    s = NULL;
    int rc = lx_store_open(&o, &s, err, sizeof(err)); /* migrates v3 -> v4 */
    if (rc != 0)
        fail_msg("migrating %d rows: %s", ROWS, err);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     LX_STORE_SCHEMA_VERSION);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), ROWS);
    /* every row rewritten short, and read back through the view as written (row 12,346) */
    assert_true(t_query_i64(t.db, "SELECT sum(length(record)) FROM generations") * 2 < long_bytes);
    const char *row = "FROM usage WHERE seq = (1 << 50) + (12346 << 19)";
    char q[200];
    snprintf(q, sizeof(q), "SELECT prompt_tokens * 1000000 + completion_tokens * 1000 + cost %s",
             row);
    assert_int_equal(t_query_i64(t.db, q), (100 + 12346 % 900) * 1000000LL +
                                               (10 + 12346 % 300) * 1000LL + 1 + 12346 % 700);
    snprintf(q, sizeof(q),
             "SELECT key_name = 'team-2' AND user = '' AND streamed = 0 AND status = 200 AND"
             " json_extract(attempts, '$[0].ms') = latency_ms %s",
             row);
    assert_int_equal(t_query_i64(t.db, q), 1);
    tdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migration_many_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
