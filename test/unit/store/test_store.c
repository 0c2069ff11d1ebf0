/* test_store.c - opening the store: migrations, reopening, refusals that name the file. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "store/store_int.h"
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
                                       " AND name IN ('keys','key_usage','generations',"
                                       "'named_ids','activity','audit')"),
                     6);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM sqlite_master WHERE type='view'"
                                       " AND name = 'usage'"),
                     1);
    /* one b-tree per generation row besides the table: the provider-id index, partial */
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM sqlite_master WHERE type='index'"
                                       " AND tbl_name = 'generations'"),
                     1);
    /* a new file has 16 KiB pages (fewer WAL frames per commit) */
    assert_int_equal(t_query_i64(t.db, "PRAGMA page_size"), 16384);
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

/* A file of schema <version> as the released migration steps make it
 * (store_schema_create), then the statements <sql>. */
static void make_file_at(const char *path, int version, const char *const *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_schema_create(db, version), SQLITE_OK);
    for (const char *const *q = sql; *q != NULL; q++)
        assert_int_equal(sqlite3_exec(db, *q, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A file of schema v1, with two usage rows written the way v1 wrote them. */
static void make_v1_file(const char *path)
{
    static const char *const sql[] = {
        "INSERT INTO usage VALUES ('gen-0-00000000000000aa', 'h1', 'team', 'gpt-4o',"
        " 'openai/gpt-4o', 'openai', 'http://e', 'chat', 'r1', '', 'u', 'stop',"
        " 1765065600000000, 10, 20, 0, 0, 500, 900, 1, 1, 0, 200, 30, 5, 25,"
        " '[{\"provider\":\"openai\",\"endpoint\":\"http://e\",\"model\":\"openai/gpt-4o\","
        "\"outcome\":\"ok\",\"status\":200,\"ms\":30}]', 'chatcmpl-9')",
        /* the same arrival millisecond as the first row, 1,024 rowids later (v1 numbered rows
         * at commit: a long stream and a short request of one millisecond land far apart) */
        "INSERT INTO usage (rowid, id, key_hash, key_name, model_asked, model, provider,"
        " endpoint, api, request_id, session_id, user, finish_reason, created_at_us,"
        " prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, reserved,"
        " usage_known, streamed, cancelled, status, latency_ms, ttft_ms, generation_ms,"
        " attempts) VALUES (1025, 'gen-0-00000000000000cc', 'h2', 'other', 'm', 'm', 'p', 'e',"
        " 'chat', 'r3', '', '', 'stop', 1765065600000000, 1, 1, 0, 0, 7, 0, 1, 0, 0, 200, 1, 1,"
        " 0, '[]')",
        "INSERT INTO usage VALUES ('gen-0-00000000000000bb', 'h1', 'team', 'gpt-4o', '', '', '',"
        " 'chat', 'r2', '', '', '', 1765065600000000, -1, -1, 0, 0, 0, 0, 0, 0, 1, 502, 3, 0, 0,"
        " '[]', '')",
        NULL,
    };
    make_file_at(path, 1, sql);
}

/* Opens <o> with stderr (the log) going to <log> for the while; the open's result. */
static int open_logged(const lx_store_opts_t *o, lx_store_t **s, const char *log)
{
    char err[256] = "";
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = lx_store_open(o, s, err, sizeof(err));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return rc;
}

/* The text of the file <path> (at most 4 KiB), in <out>. */
static const char *read_text(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return out;
}

/* v1 -> v2: every row, its id, its provider id and its sums carry over; the migration is
 * logged when it starts (versions, rows) and when it ends. */
static void test_migration_from_v1(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    make_v1_file(t.db);
    /* (rows of 2025-12-07: a retention of ten years keeps them) */
    lx_store_opts_t o = {.path = t.db, .retention_s = 10 * 366 * 86400};
    lx_store_t *s = NULL;
    char log[200], text[4096];
    snprintf(log, sizeof(log), "%s/open.log", t.dir);
    assert_int_equal(open_logged(&o, &s, log), 0);
    read_text(log, text, sizeof(text));
    char want[160];
    snprintf(want, sizeof(want), "migrating schema version 1 to %d (3 usage rows",
             LX_STORE_SCHEMA_VERSION);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "migrated from schema version 1 to %d in ",
             LX_STORE_SCHEMA_VERSION);
    assert_non_null(strstr(text, want));
    /* a file already at this version: nothing migrated, nothing said */
    lx_store_close(s);
    assert_int_equal(open_logged(&o, &s, log), 0);
    assert_null(strstr(read_text(log, text, sizeof(text)), "migrat"));
    assert_int_equal(lx_store_start(s), 0);
    const char *ids[] = {"gen-0-00000000000000aa", "chatcmpl-9", "gen-0-00000000000000bb"};
    for (int i = 0; i < 3; i++) {
        lx_store_job_t gen = {.kind = LX_JOB_GENERATION};
        snprintf(gen.gen_id, sizeof(gen.gen_id), "%s", ids[i]);
        assert_int_equal(t_submit_wait(s, &gen), 0);
        if (gen.status != 0)
            fprintf(stderr, "%s: %s\n", ids[i], gen.message);
        assert_int_equal(gen.status, 0);
        assert_non_null(gen.record);
        assert_string_equal(lx_record_str(gen.record, LX_RF_ID), i < 2 ? ids[0] : ids[2]);
        if (i < 2) {
            assert_int_equal(gen.record->cost, 500);
            assert_int_equal(gen.record->reserved, 900);
            assert_true(gen.record->usage_known);
            assert_int_equal(gen.record->n_attempts, 1);
            assert_string_equal(lx_record_str(gen.record, LX_RF_ATTEMPT(0, LX_RA_OUTCOME)), "ok");
            assert_string_equal(lx_record_str(gen.record, LX_RF_USER), "u");
        } else {
            assert_true(gen.record->cancelled);
            assert_int_equal(gen.record->prompt_tokens, -1);
        }
        lx_store_job_dispose(&gen);
    }
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key='schema_version'"),
                     LX_STORE_SCHEMA_VERSION);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage"), 3);
    assert_int_equal(t_query_i64(t.db, "SELECT count(DISTINCT seq) FROM usage"), 3);
    assert_int_equal(t_query_i64(t.db, "SELECT sum(cost) FROM usage WHERE key_hash = 'h1'"), 500);
    /* the view's numbers compare as v1's INTEGER columns did, quoted or not */
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage WHERE status = '200'"), 2);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM usage WHERE cost > 100"), 1);
    /* the day's sums: the served model, and the asked one where nothing served */
    assert_int_equal(t_query_i64(t.db, "SELECT requests * 1000 + prompt_tokens FROM activity"
                                       " WHERE day = 20429 AND model = 'openai/gpt-4o'"),
                     1010);
    assert_int_equal(t_query_i64(t.db, "SELECT requests * 1000 + prompt_tokens FROM activity"
                                       " WHERE day = 20429 AND model = 'gpt-4o'"),
                     1000);
    tdir_remove(&t);
}

/* Every column of the view `usage`, every row in seq order, as one text (NULL as "~"). */
static char *usage_dump(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT * FROM usage ORDER BY seq", -1, &st, NULL),
                     SQLITE_OK);
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            n += (size_t)snprintf(out + n, cap - n, "%s=%s|", sqlite3_column_name(st, i),
                                  v != NULL ? v : "~");
            assert_true(n < cap);
        }
        out[n++] = '\n';
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* A file of schema v3 with rows the way v2 and v3 wrote them (long member names, every
 * member written). */
static void make_v3_file(const char *path)
{
    static const char *const sql[] = {
        /* a request that failed over (the first attempt elsewhere), the model renamed */
        "INSERT INTO generations VALUES (941969610461151232, NULL, "
        "'{\"id\":\"gen-0d128c5eb4c00000\","
        "\"key_hash\":\"h1\",\"key_name\":\"team\",\"model_asked\":\"gpt-4o\",\"model\":"
        "\"openai/gpt-4o\",\"provider\":\"openai\",\"endpoint\":\"http://o\",\"api\":\"chat\","
        "\"request_id\":\"r1\",\"session_id\":\"s\\\"1\",\"user\":\"u\",\"finish_reason\":\"stop\","
        "\"upstream_id\":\"\",\"created_at_us\":1796664448664177,\"prompt_tokens\":21,"
        "\"completion_tokens\":5,\"cached_tokens\":-1,\"reasoning_tokens\":0,\"cost\":4,"
        "\"reserved\":90,\"usage_known\":1,\"streamed\":0,\"cancelled\":0,\"status\":200,"
        "\"latency_ms\":3,\"ttft_ms\":0,\"generation_ms\":0,\"attempts\":[{\"provider\":\"azure\","
        "\"endpoint\":\"http://a\",\"model\":\"openai/gpt-4o\",\"outcome\":\"error_5xx\","
        "\"status\":503,\"ms\":17},{\"provider\":\"openai\",\"endpoint\":\"http://o\",\"model\":"
        "\"openai/gpt-4o\",\"outcome\":\"ok\",\"status\":200,\"ms\":0}]}')",
        /* an id of another form; nothing served, every default */
        "INSERT INTO generations VALUES (941969610461151488, 77, '{\"id\":\"chatcmpl-x\","
        "\"key_hash\":\"\",\"key_name\":\"\",\"model_asked\":\"m\",\"model\":\"\",\"provider\":"
        "\"\",\"endpoint\":\"\",\"api\":\"chat\",\"request_id\":\"\",\"session_id\":\"\",\"user\":"
        "\"\",\"finish_reason\":\"\",\"upstream_id\":\"up-1\",\"created_at_us\":0,"
        "\"prompt_tokens\":-1,\"completion_tokens\":-1,\"cached_tokens\":-1,\"reasoning_tokens\":"
        "-1,\"cost\":0,\"reserved\":0,\"usage_known\":0,\"streamed\":1,\"cancelled\":1,\"status\":"
        "0,\"latency_ms\":0,\"ttft_ms\":0,\"generation_ms\":0,\"attempts\":[{\"provider\":\"p\","
        "\"endpoint\":\"\",\"model\":\"m\",\"outcome\":\"connect\",\"status\":0,\"ms\":0}]}')",
        "INSERT INTO named_ids VALUES ('chatcmpl-x', 941969610461151488)",
        /* no attempt recorded */
        "INSERT INTO generations VALUES (941969610461151744, NULL, "
        "'{\"id\":\"gen-0d128c5eb4c00200\","
        "\"key_hash\":\"h2\",\"key_name\":\"k\",\"model_asked\":\"a/b\",\"model\":\"a/b\","
        "\"provider\":\"p\",\"endpoint\":\"e\",\"api\":\"embeddings\",\"request_id\":\"r3\","
        "\"session_id\":\"\",\"user\":\"\",\"finish_reason\":\"\",\"upstream_id\":\"\","
        "\"created_at_us\":5,\"prompt_tokens\":3,\"completion_tokens\":0,\"cached_tokens\":0,"
        "\"reasoning_tokens\":0,\"cost\":1,\"reserved\":0,\"usage_known\":1,\"streamed\":0,"
        "\"cancelled\":0,\"status\":200,\"latency_ms\":1,\"ttft_ms\":1,\"generation_ms\":0,"
        "\"attempts\":[]}')",
        NULL,
    };
    make_file_at(path, 3, sql);
}

/* v3 -> v4: the rows' JSON made short, and the view answers exactly what v3's did, column for
 * column (defaults, an attempt elsewhere, an id of another form, none served). */
static void test_migration_short_rows(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    make_v3_file(t.db);
    char *before = usage_dump(t.db);
    assert_non_null(strstr(before, "attempts=[{\"provider\":\"azure\""));
    int64_t long_bytes = t_query_i64(t.db, "SELECT sum(length(record)) FROM generations");
    lx_store_close(open_ok(t.db));
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key='schema_version'"),
                     LX_STORE_SCHEMA_VERSION);
    char *after = usage_dump(t.db);
    assert_string_equal(after, before);
    int64_t short_bytes = t_query_i64(t.db, "SELECT sum(length(record)) FROM generations");
    print_message("v3 rows %lld bytes, v4 %lld\n", (long long)long_bytes, (long long)short_bytes);
    assert_true(short_bytes * 2 < long_bytes);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM generations WHERE record LIKE"
                                       " '%key_hash%' OR record LIKE '%\"id\":\"gen-%'"),
                     0);
    /* a v1 lookup by its other id still works */
    lx_store_t *s = open_ok(t.db);
    lx_store_job_t gen = {.kind = LX_JOB_GENERATION};
    snprintf(gen.gen_id, sizeof(gen.gen_id), "chatcmpl-x");
    lx_store_run(s, &gen);
    assert_int_equal(gen.status, 0);
    assert_string_equal(lx_record_str(gen.record, LX_RF_MODEL_ASKED), "m");
    assert_string_equal(lx_record_str(gen.record, LX_RF_ATTEMPT(0, LX_RA_PROVIDER)), "p");
    assert_int_equal(gen.record->prompt_tokens, -1);
    lx_store_job_dispose(&gen);
    lx_store_close(s);
    free(before);
    free(after);
    tdir_remove(&t);
}

/* A gateway's store locks its file: a second gateway is refused, `llmux keys` may share it. */
static void test_exclusive(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_opts_t o = {.path = t.db, .exclusive = true};
    lx_store_t *a = NULL, *b = NULL, *cli = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &a, err, sizeof(err)), 0);
    assert_int_not_equal(lx_store_open(&o, &b, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "in use by another llmux gateway"));
    lx_store_opts_t c = {.path = t.db, .no_migrate = true};
    assert_int_equal(lx_store_open(&c, &cli, err, sizeof(err)), 0);
    lx_store_close(cli);
    lx_store_close(a);
    assert_int_equal(lx_store_open(&o, &b, err, sizeof(err)), 0); /* free again */
    lx_store_close(b);
    tdir_remove(&t);
}

/* `llmux keys` does not migrate an older file (its gateway may be running), but makes a new
 * one at the current schema. */
static void test_no_migrate(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    make_v1_file(t.db);
    lx_store_opts_t o = {.path = t.db, .no_migrate = true};
    lx_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), LX_ESCHEMA);
    assert_non_null(strstr(err, "older than this llmux"));
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key='schema_version'"), 1);
    tdir_remove(&t);
    tdir_make(&t);
    assert_int_equal(lx_store_open(&o, &s, err, sizeof(err)), 0);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT value FROM meta WHERE key='schema_version'"),
                     LX_STORE_SCHEMA_VERSION);
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

/* Creates a key named <name> (with a limit, and <priority> when >= 0) on <s>; its hash. */
static void create_key(lx_store_t *s, const char *name, int priority, char hash[65])
{
    lx_store_job_t job = {.kind = LX_JOB_KEY_CREATE};
    snprintf(job.actor, sizeof(job.actor), "cli");
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_LIMIT;
    job.input.name = strdup(name);
    job.input.has_limit = true;
    job.input.limit = 7000000;
    if (priority >= 0) {
        job.input.set |= LX_KEY_F_PRIORITY;
        job.input.priority = (uint8_t)priority;
    }
    lx_store_run(s, &job);
    assert_int_equal(job.status, 0);
    snprintf(hash, 65, "%s", job.keys[0].key.hash);
    lx_store_job_dispose(&job);
}

/* The key <hash> of <s> as KEY_GET reads it: its priority, its name checked. */
static int key_priority(lx_store_t *s, const char *hash, const char *name)
{
    lx_store_job_t get = {.kind = LX_JOB_KEY_GET};
    snprintf(get.hash, sizeof(get.hash), "%s", hash);
    lx_store_run(s, &get);
    assert_int_equal(get.status, 0);
    assert_int_equal(get.n_keys, 1);
    assert_string_equal(get.keys[0].key.name, name);
    assert_int_equal(get.keys[0].key.limits.limit, 7000000);
    int p = get.keys[0].key.priority;
    lx_store_job_dispose(&get);
    return p;
}

/* v2 -> v3: a file of schema v2 (this schema less the priority column, as v2 wrote it) keeps
 * its keys, which come back interactive; the new field then round-trips through an update and
 * a reopen, and a create sets it. */
static void test_migration_from_v2(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_ok(t.db);
    char a[65], b[65], c[65];
    create_key(s, "team a", -1, a);
    create_key(s, "team b", -1, b);
    lx_store_close(s);
    assert_int_equal(t_exec(t.db, "ALTER TABLE keys DROP COLUMN priority"), SQLITE_OK);
    assert_int_equal(t_exec(t.db, "UPDATE meta SET value = 2 WHERE key = 'schema_version'"),
                     SQLITE_OK);
    int v = 0;
    char err[256];
    assert_int_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 2);

    s = open_ok(t.db); /* migrates */
    assert_int_equal(lx_store_schema_version(t.db, &v, err, sizeof(err)), 0);
    assert_int_equal(v, LX_STORE_SCHEMA_VERSION);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM keys"), 2);
    assert_int_equal(key_priority(s, a, "team a"), LX_KEY_PRIORITY_INTERACTIVE);
    assert_int_equal(key_priority(s, b, "team b"), LX_KEY_PRIORITY_INTERACTIVE);
    lx_store_job_t upd = {.kind = LX_JOB_KEY_UPDATE};
    snprintf(upd.actor, sizeof(upd.actor), "cli");
    snprintf(upd.hash, sizeof(upd.hash), "%s", b);
    upd.input.set = LX_KEY_F_PRIORITY;
    upd.input.priority = LX_KEY_PRIORITY_BATCH;
    lx_store_run(s, &upd);
    assert_int_equal(upd.status, 0);
    assert_int_equal(upd.keys[0].key.priority, LX_KEY_PRIORITY_BATCH);
    lx_store_job_dispose(&upd);
    create_key(s, "team c", LX_KEY_PRIORITY_BATCH, c);
    /* a value out of range is refused */
    lx_store_job_t bad = {.kind = LX_JOB_KEY_UPDATE};
    snprintf(bad.hash, sizeof(bad.hash), "%s", a);
    bad.input.set = LX_KEY_F_PRIORITY;
    bad.input.priority = 7;
    lx_store_run(s, &bad);
    assert_int_equal(bad.status, LX_EINVAL);
    assert_non_null(strstr(bad.message, "priority must be interactive or batch"));
    lx_store_job_dispose(&bad);
    lx_store_close(s);

    s = open_ok(t.db); /* (no migration: the values come from the file) */
    assert_int_equal(key_priority(s, a, "team a"), LX_KEY_PRIORITY_INTERACTIVE);
    assert_int_equal(key_priority(s, b, "team b"), LX_KEY_PRIORITY_BATCH);
    assert_int_equal(key_priority(s, c, "team c"), LX_KEY_PRIORITY_BATCH);
    /* the published snapshot carries it too (what the workers read) */
    assert_int_equal(lx_store_start(s), 0);
    lx_keyset_t *ks = lx_store_keys(s);
    assert_non_null(ks);
    uint8_t d[32];
    int found = 0;
    for (size_t i = 0; i < ks->n_keys; i++) {
        memcpy(d, ks->keys[i].digest, 32);
        const lx_store_key_t *k = lx_keyset_find(ks, d);
        assert_non_null(k);
        found += strcmp(k->hash, b) == 0 && k->priority == LX_KEY_PRIORITY_BATCH;
        found += strcmp(k->hash, a) == 0 && k->priority == LX_KEY_PRIORITY_INTERACTIVE;
    }
    assert_int_equal(found, 2);
    lx_keyset_unref(ks);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM audit WHERE action = 'update'"
                                       " AND details = '{\"priority\":\"batch\"}'"),
                     1);
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
        cmocka_unit_test(test_migrations_from_empty),
        cmocka_unit_test(test_migration_from_v1),
        cmocka_unit_test(test_migration_from_v2),
        cmocka_unit_test(test_migration_short_rows),
        cmocka_unit_test(test_reopen_keeps_keys),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_corrupt_refused),
        cmocka_unit_test(test_locked_refused),
        cmocka_unit_test(test_memory_and_unwritable),
        cmocka_unit_test(test_exclusive),
        cmocka_unit_test(test_no_migrate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
