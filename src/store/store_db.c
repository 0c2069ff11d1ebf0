/*
 * store_db.c - the database file: opening it (WAL, synchronous=NORMAL, a busy timeout), the
 * versioned schema and its migrations, the errors that name the file, the statements the
 * store thread prepares once.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/status.h"

/* One migration: the statements that take the schema from version - 1 to version. Append new
 * versions at the end; never edit a released one. */
typedef struct migration {
    int version;
    const char *const *sql;
} migration_t;

static const char *const v1_sql[] = {
    "CREATE TABLE keys ("
    " hash TEXT PRIMARY KEY, name TEXT NOT NULL, label TEXT NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0, limit_micros INTEGER,"
    " limit_reset INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL DEFAULT 0,"
    " models TEXT NOT NULL DEFAULT '', provider TEXT, rpm INTEGER NOT NULL DEFAULT 0,"
    " tpm INTEGER NOT NULL DEFAULT 0, concurrency INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL DEFAULT 0,"
    " created_by TEXT NOT NULL, deleted_at INTEGER)",
    "CREATE INDEX keys_created ON keys(created_at)",
    "CREATE TABLE key_usage ("
    " key_hash TEXT PRIMARY KEY, total INTEGER NOT NULL DEFAULT 0,"
    " day INTEGER NOT NULL DEFAULT 0, day_start INTEGER NOT NULL DEFAULT 0,"
    " week INTEGER NOT NULL DEFAULT 0, week_start INTEGER NOT NULL DEFAULT 0,"
    " month INTEGER NOT NULL DEFAULT 0, month_start INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE usage ("
    " id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, key_name TEXT NOT NULL,"
    " model_asked TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,"
    " endpoint TEXT NOT NULL, api TEXT NOT NULL, request_id TEXT NOT NULL,"
    " session_id TEXT NOT NULL, user TEXT NOT NULL, finish_reason TEXT NOT NULL,"
    " created_at_us INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,"
    " reasoning_tokens INTEGER NOT NULL, cost INTEGER NOT NULL, reserved INTEGER NOT NULL,"
    " usage_known INTEGER NOT NULL, streamed INTEGER NOT NULL, cancelled INTEGER NOT NULL,"
    " status INTEGER NOT NULL, latency_ms INTEGER NOT NULL, ttft_ms INTEGER NOT NULL,"
    " generation_ms INTEGER NOT NULL, attempts TEXT NOT NULL,"
    " upstream_id TEXT NOT NULL DEFAULT '')",
    "CREATE INDEX usage_key_time ON usage(key_hash, created_at_us)",
    "CREATE INDEX usage_upstream_id ON usage(upstream_id) WHERE upstream_id != ''",
    "CREATE INDEX usage_time ON usage(created_at_us)",
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
    " key_hash TEXT NOT NULL, details TEXT NOT NULL)",
    NULL,
};

/* v2: one narrow row per generation (its number, the provider id's hash, the record as JSON)
 * instead of 28 columns and four b-trees: an insert costs about a third. The columns live on as
 * the view `usage`; /activity reads a table of daily sums kept by each batch; ids of another
 * form than "gen-<16 hex>" (v1's among them) are found through named_ids. */
static const char *const v2_sql[] = {
    "CREATE TABLE generations (seq INTEGER PRIMARY KEY, upstream_h INTEGER, record TEXT NOT NULL)",
    "CREATE INDEX generations_upstream ON generations(upstream_h) WHERE upstream_h IS NOT NULL",
    "CREATE TABLE named_ids (id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX named_ids_seq ON named_ids(seq)",
    "CREATE TABLE activity ("
    " day INTEGER NOT NULL, key_hash TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,"
    " requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,"
    " cost INTEGER NOT NULL, PRIMARY KEY (day, key_hash, model, provider)) WITHOUT ROWID",
    "CREATE INDEX activity_key ON activity(key_hash, day)",
    /* v1's rows numbered by arrival millisecond, then by rowid within it (rowids of one
     * millisecond can be any distance apart: v1 assigned them at commit), in the lanes above
     * the workers' (256 + n / 1024), so no two collide */
    "CREATE TEMP TABLE v1_seq AS SELECT r, ((ms << 10 | (n & 1023)) << 9) | (256 + (n >> 10))"
    " AS seq FROM (SELECT rowid AS r, created_at_us / 1000 AS ms, row_number() OVER"
    " (PARTITION BY created_at_us / 1000 ORDER BY rowid) - 1 AS n FROM usage)",
    "INSERT INTO activity SELECT created_at_us / 86400000000, key_hash,"
    " CASE WHEN model = '' THEN model_asked ELSE model END, provider, count(*),"
    " sum(max(prompt_tokens, 0)), sum(max(completion_tokens, 0)),"
    " sum(max(reasoning_tokens, 0)), sum(cost) FROM usage GROUP BY 1, 2, 3, 4",
    "INSERT INTO generations (seq, upstream_h, record) SELECT v.seq, lx_hash63(upstream_id),"
    " json_object('id', id, 'key_hash', key_hash, 'key_name', key_name,"
    " 'model_asked', model_asked, 'model', model, 'provider', provider, 'endpoint', endpoint,"
    " 'api', api, 'request_id', request_id, 'session_id', session_id, 'user', user,"
    " 'finish_reason', finish_reason, 'upstream_id', upstream_id,"
    " 'created_at_us', created_at_us, 'prompt_tokens', prompt_tokens,"
    " 'completion_tokens', completion_tokens, 'cached_tokens', cached_tokens,"
    " 'reasoning_tokens', reasoning_tokens, 'cost', cost, 'reserved', reserved,"
    " 'usage_known', usage_known, 'streamed', streamed, 'cancelled', cancelled,"
    " 'status', status, 'latency_ms', latency_ms, 'ttft_ms', ttft_ms,"
    " 'generation_ms', generation_ms, 'attempts', json(attempts)) FROM usage"
    " JOIN v1_seq v ON v.r = usage.rowid",
    "INSERT INTO named_ids (id, seq) SELECT id, v.seq FROM usage JOIN v1_seq v"
    " ON v.r = usage.rowid",
    "DROP TABLE v1_seq",
    "DROP TABLE usage",
    "CREATE VIEW usage AS SELECT seq,"
    " record ->> '$.id' AS id, record ->> '$.key_hash' AS key_hash,"
    " record ->> '$.key_name' AS key_name, record ->> '$.model_asked' AS model_asked,"
    " record ->> '$.model' AS model, record ->> '$.provider' AS provider,"
    " record ->> '$.endpoint' AS endpoint, record ->> '$.api' AS api,"
    " record ->> '$.request_id' AS request_id, record ->> '$.session_id' AS session_id,"
    " record ->> '$.user' AS user, record ->> '$.finish_reason' AS finish_reason,"
    " CAST(record ->> '$.created_at_us' AS INTEGER) AS created_at_us,"
    " CAST(record ->> '$.prompt_tokens' AS INTEGER) AS prompt_tokens,"
    " CAST(record ->> '$.completion_tokens' AS INTEGER) AS completion_tokens,"
    " CAST(record ->> '$.cached_tokens' AS INTEGER) AS cached_tokens,"
    " CAST(record ->> '$.reasoning_tokens' AS INTEGER) AS reasoning_tokens, CAST(record ->> "
    "'$.cost' AS INTEGER) AS cost,"
    " CAST(record ->> '$.reserved' AS INTEGER) AS reserved, CAST(record ->> '$.usage_known' AS "
    "INTEGER) AS usage_known,"
    " CAST(record ->> '$.streamed' AS INTEGER) AS streamed, CAST(record ->> '$.cancelled' AS "
    "INTEGER) AS cancelled,"
    " CAST(record ->> '$.status' AS INTEGER) AS status, CAST(record ->> '$.latency_ms' AS INTEGER) "
    "AS latency_ms,"
    " CAST(record ->> '$.ttft_ms' AS INTEGER) AS ttft_ms, CAST(record ->> '$.generation_ms' AS "
    "INTEGER) AS generation_ms,"
    " record -> '$.attempts' AS attempts, record ->> '$.upstream_id' AS upstream_id,"
    " upstream_h FROM generations",
    NULL,
};

/* v3: a key's class in the fleet's admission queues (0 interactive, 1 batch); the keys of an
 * older file are interactive, as they were served. */
static const char *const v3_sql[] = {
    "ALTER TABLE keys ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
    NULL,
};

/* v4: the same row, its JSON made short (short member names, no member at its default: the
 * view `usage` gives the defaults back, column for column as v2's): 270 bytes instead of 700
 * for scenario 1's request, so the WAL, the checkpoint's copy and the pages hold well under
 * half as many bytes per record. Members (store_thread.c writes them): id (only when not the
 * canonical form of seq), k key_hash, kn key_name, ma model_asked (absent: = m), m model,
 * p provider, e endpoint, a api, r request_id, si session_id, u user, f finish_reason,
 * ui upstream_id (strings: absent = ''); t created_at_us, c cost, rs reserved, uk
 * usage_known, st streamed, cx cancelled, s status, l latency_ms, tf ttft_ms, g generation_ms
 * (absent = 0); pt, ct, ch, rt the prompt, completion, cached and reasoning tokens (absent =
 * -1); at the attempts, each {p, e, m (absent: the record's), o outcome, s status, ms}. */
static const char *const v4_sql[] = {
    "UPDATE generations SET record = json_patch('{}', json_object("
    " 'id', nullif(record ->> '$.id', printf('gen-%016x', seq)),"
    " 'k', nullif(record ->> '$.key_hash', ''), 'kn', nullif(record ->> '$.key_name', ''),"
    " 'ma', nullif(record ->> '$.model_asked', record ->> '$.model'),"
    " 'm', nullif(record ->> '$.model', ''), 'p', nullif(record ->> '$.provider', ''),"
    " 'e', nullif(record ->> '$.endpoint', ''), 'a', nullif(record ->> '$.api', ''),"
    " 'r', nullif(record ->> '$.request_id', ''), 'si', nullif(record ->> '$.session_id', ''),"
    " 'u', nullif(record ->> '$.user', ''), 'f', nullif(record ->> '$.finish_reason', ''),"
    " 'ui', nullif(record ->> '$.upstream_id', ''),"
    " 't', nullif(record ->> '$.created_at_us', 0),"
    " 'pt', nullif(record ->> '$.prompt_tokens', -1),"
    " 'ct', nullif(record ->> '$.completion_tokens', -1),"
    " 'ch', nullif(record ->> '$.cached_tokens', -1),"
    " 'rt', nullif(record ->> '$.reasoning_tokens', -1),"
    " 'c', nullif(record ->> '$.cost', 0), 'rs', nullif(record ->> '$.reserved', 0),"
    " 'uk', nullif(record ->> '$.usage_known', 0), 'st', nullif(record ->> '$.streamed', 0),"
    " 'cx', nullif(record ->> '$.cancelled', 0), 's', nullif(record ->> '$.status', 0),"
    " 'l', nullif(record ->> '$.latency_ms', 0), 'tf', nullif(record ->> '$.ttft_ms', 0),"
    " 'g', nullif(record ->> '$.generation_ms', 0),"
    " 'at', json(nullif((SELECT json_group_array(json_patch('{}', json_object("
    " 'p', nullif(a.value ->> '$.provider', record ->> '$.provider'),"
    " 'e', nullif(a.value ->> '$.endpoint', record ->> '$.endpoint'),"
    " 'm', nullif(a.value ->> '$.model', record ->> '$.model'),"
    " 'o', nullif(a.value ->> '$.outcome', ''), 's', nullif(a.value ->> '$.status', 0),"
    " 'ms', nullif(a.value ->> '$.ms', 0)))) FROM json_each(record, '$.attempts') AS a),"
    " '[]'))))",
    "DROP VIEW usage",
    "CREATE VIEW usage AS SELECT seq,"
    " coalesce(record ->> '$.id', printf('gen-%016x', seq)) AS id,"
    " coalesce(record ->> '$.k', '') AS key_hash, coalesce(record ->> '$.kn', '') AS key_name,"
    " coalesce(record ->> '$.ma', record ->> '$.m', '') AS model_asked,"
    " coalesce(record ->> '$.m', '') AS model, coalesce(record ->> '$.p', '') AS provider,"
    " coalesce(record ->> '$.e', '') AS endpoint, coalesce(record ->> '$.a', '') AS api,"
    " coalesce(record ->> '$.r', '') AS request_id,"
    " coalesce(record ->> '$.si', '') AS session_id, coalesce(record ->> '$.u', '') AS user,"
    " coalesce(record ->> '$.f', '') AS finish_reason,"
    " CAST(coalesce(record ->> '$.t', 0) AS INTEGER) AS created_at_us,"
    " CAST(coalesce(record ->> '$.pt', -1) AS INTEGER) AS prompt_tokens,"
    " CAST(coalesce(record ->> '$.ct', -1) AS INTEGER) AS completion_tokens,"
    " CAST(coalesce(record ->> '$.ch', -1) AS INTEGER) AS cached_tokens,"
    " CAST(coalesce(record ->> '$.rt', -1) AS INTEGER) AS reasoning_tokens,"
    " CAST(coalesce(record ->> '$.c', 0) AS INTEGER) AS cost,"
    " CAST(coalesce(record ->> '$.rs', 0) AS INTEGER) AS reserved,"
    " CAST(coalesce(record ->> '$.uk', 0) AS INTEGER) AS usage_known,"
    " CAST(coalesce(record ->> '$.st', 0) AS INTEGER) AS streamed,"
    " CAST(coalesce(record ->> '$.cx', 0) AS INTEGER) AS cancelled,"
    " CAST(coalesce(record ->> '$.s', 0) AS INTEGER) AS status,"
    " CAST(coalesce(record ->> '$.l', 0) AS INTEGER) AS latency_ms,"
    " CAST(coalesce(record ->> '$.tf', 0) AS INTEGER) AS ttft_ms,"
    " CAST(coalesce(record ->> '$.g', 0) AS INTEGER) AS generation_ms,"
    " (SELECT json_group_array(json_object("
    " 'provider', coalesce(a.value ->> '$.p', record ->> '$.p', ''),"
    " 'endpoint', coalesce(a.value ->> '$.e', record ->> '$.e', ''),"
    " 'model', coalesce(a.value ->> '$.m', record ->> '$.m', ''),"
    " 'outcome', coalesce(a.value ->> '$.o', ''), 'status', coalesce(a.value ->> '$.s', 0),"
    " 'ms', coalesce(a.value ->> '$.ms', 0))) FROM json_each(record, '$.at') AS a) AS attempts,"
    " coalesce(record ->> '$.ui', '') AS upstream_id, upstream_h FROM generations",
    NULL,
};

static const migration_t migrations[] = {
    {1, v1_sql},
    {2, v2_sql},
    {3, v3_sql},
    {4, v4_sql},
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == LX_STORE_SCHEMA_VERSION,
               "one migration per schema version");

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_INSERT_GEN] = "INSERT INTO generations (seq, upstream_h, record) VALUES (?1, ?2, ?3)"
                      " ON CONFLICT(seq) DO NOTHING",
    /* (WHERE true: an upsert after a SELECT needs it, or ON would read as a join's) */
    [ST_INSERT_BATCH] = "INSERT INTO generations (seq, upstream_h, record) SELECT seq, uh, rec"
                        " FROM lx_batch WHERE true ON CONFLICT(seq) DO NOTHING",
    [ST_INSERT_NAMED] =
        "INSERT INTO named_ids (id, seq) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
    [ST_UPSERT_ACTIVITY] =
        "INSERT INTO activity (day, key_hash, model, provider, requests, prompt_tokens,"
        " completion_tokens, reasoning_tokens, cost) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        " ON CONFLICT(day, key_hash, model, provider) DO UPDATE SET"
        " requests = requests + ?5, prompt_tokens = prompt_tokens + ?6,"
        " completion_tokens = completion_tokens + ?7, reasoning_tokens = reasoning_tokens + ?8,"
        " cost = cost + ?9",
    /* ?1 hash, ?2 cost, ?3 ?4 ?5 the day, week and month the record falls in: a later period
     * restarts the counter, an earlier one (a record from before a boundary) counts in the
     * total only */
    [ST_UPSERT_KEY_USAGE] =
        "INSERT INTO key_usage (key_hash, total, day, day_start, week, week_start, month,"
        " month_start) VALUES (?1, ?2, ?2, ?3, ?2, ?4, ?2, ?5) ON CONFLICT(key_hash) DO UPDATE"
        " SET total = total + ?2,"
        " day = CASE WHEN day_start = ?3 THEN day + ?2 WHEN day_start < ?3 THEN ?2 ELSE day END,"
        " day_start = MAX(day_start, ?3),"
        " week = CASE WHEN week_start = ?4 THEN week + ?2 WHEN week_start < ?4 THEN ?2"
        " ELSE week END, week_start = MAX(week_start, ?4),"
        " month = CASE WHEN month_start = ?5 THEN month + ?2 WHEN month_start < ?5 THEN ?2"
        " ELSE month END, month_start = MAX(month_start, ?5)",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    /* ?1: the first seq of the cutoff's millisecond; oldest first, in bounded steps */
    [ST_PRUNE] = ("DELETE FROM generations WHERE seq IN (SELECT seq FROM generations"
                  " WHERE seq < ?1 ORDER BY seq LIMIT ?2)"),
    [ST_PRUNE_NAMED] = ("DELETE FROM named_ids WHERE id IN (SELECT id FROM named_ids"
                        " WHERE seq < ?1 ORDER BY seq LIMIT ?2)"),
    /* rows numbered ahead of the clock (a clock that once read far ahead: every later number
     * is above it, record.h) are pruned by their recorded arrival: ?1 the cutoff in µs, ?2
     * the first number of a minute from now, ?3 the step */
    [ST_PRUNE_AHEAD] = ("DELETE FROM generations WHERE seq IN (SELECT seq FROM generations"
                        " WHERE seq >= ?2 AND coalesce(record ->> '$.t', 0) < ?1"
                        " ORDER BY seq LIMIT ?3)"),
    [ST_PRUNE_ACTIVITY] = "DELETE FROM activity WHERE day < ?1",
    [ST_MAX_SEQ] = "SELECT coalesce(max(seq), 0) FROM generations",
};

int64_t store_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t store_hash63(const char *p, size_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * UINT64_C(0x100000001b3);
    return (int64_t)(h & INT64_MAX);
}

/* lx_hash63(text): store_hash63 of a non-empty text, NULL otherwise (the v2 migration). */
static void sql_hash63(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *t = (const char *)sqlite3_value_text(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    if (t == NULL || n <= 0)
        sqlite3_result_null(ctx);
    else
        sqlite3_result_int64(ctx, store_hash63(t, (size_t)n));
}

int store_exec(lx_store_t *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

int store_begin(lx_store_t *s)
{
    return store_exec(s, "BEGIN IMMEDIATE");
}

int store_commit(lx_store_t *s)
{
    int rc = store_exec(s, "COMMIT");
    if (rc != SQLITE_OK)
        store_rollback(s);
    else if (s->n_pend == 0) /* (a write went through and nothing waits: writes work again,
                              * also on a gateway too idle to commit records) */
        store_set_health(s, SQLITE_OK, "");
    return rc;
}

void store_rollback(lx_store_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        (void)store_exec(s, "ROLLBACK");
}

/* The one-line error for a failure <rc> while <what>, naming the file. */
static int open_error(const char *path, sqlite3 *db, int rc, const char *what, char *err,
                      size_t errcap)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = db ? sqlite3_system_errno(db) : 0;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        snprintf(err, errcap, "%s: locked by another process (waited %d ms while %s)", path,
                 STORE_BUSY_TIMEOUT_MS, what);
        break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        snprintf(err, errcap, "%s: not a SQLite database, or corrupt (%s)", path, msg);
        break;
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_IOERR:
        snprintf(err, errcap, "%s: cannot open for writing (%s%s%s)", path, msg, sys ? ": " : "",
                 sys ? strerror(sys) : "");
        break;
    default:
        snprintf(err, errcap, "%s: %s: %s", path, what, msg);
    }
    return LX_ESTORE;
}

/* The schema version the file records (0: none yet), or a negative SQLite code. */
static int read_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'meta'), (SELECT 1)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    int has_meta = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc;
    *version = 0;
    if (!has_meta)
        return SQLITE_OK;
    rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st,
                            NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The usage rows of a file at schema <from> (>= 1), for the migration's log line; -1 when
 * they cannot be counted. */
static long long usage_rows(sqlite3 *db, int from)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(
            db, from == 1 ? "SELECT count(*) FROM usage" : "SELECT count(*) FROM generations", -1,
            &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int apply_steps(sqlite3 *db, int from, int to);

/* Applies the migrations after <from> (inside the caller's transaction). Upgrading an existing
 * file rewrites every usage row (v2, v4) before the gateway listens: about 50 s per million
 * rows from v1, 20 s from v2 (bench/store/migrate.sh), so it is logged when it starts (and by
 * open_schema when it is committed). */
static int migrate(lx_store_t *s, int from)
{
    sqlite3 *db = s->db;
    if (from > 0 && from < LX_STORE_SCHEMA_VERSION)
        lx_log(LX_LOG_INFO,
               "store: %s: migrating schema version %d to %d (%lld usage rows, in one "
               "transaction; the gateway listens when it is done)",
               s->path, from, LX_STORE_SCHEMA_VERSION, usage_rows(db, from));
    if (from == LX_STORE_SCHEMA_VERSION)
        return sqlite3_exec(db,
                            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY,"
                            " value INTEGER NOT NULL)",
                            NULL, NULL, NULL);
    return apply_steps(db, from, LX_STORE_SCHEMA_VERSION);
}

/* The migrations after <from> up to <to>, and <to> recorded as the file's version. */
static int apply_steps(sqlite3 *db, int from, int to)
{
    int rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY,"
                          " value INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        if (migrations[i].version <= from || migrations[i].version > to)
            continue;
        for (const char *const *q = migrations[i].sql; rc == SQLITE_OK && *q != NULL; q++)
            rc = sqlite3_exec(db, *q, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK)
        return rc;
    char sql[128];
    snprintf(sql, sizeof(sql),
             "INSERT INTO meta (key, value) VALUES ('schema_version', %d)"
             " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
             to);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int store_schema_create(sqlite3 *db, int version)
{
    if (version < 1 || version > LX_STORE_SCHEMA_VERSION)
        return SQLITE_MISUSE;
    int rc = sqlite3_create_function(db, "lx_hash63", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                     sql_hash63, NULL, NULL);
    return rc != SQLITE_OK ? rc : apply_steps(db, 0, version);
}

static int pragmas(lx_store_t *s)
{
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(s->db, 1);
    /* 16 KiB pages for a new file (an existing one keeps its size: WAL cannot change it): a
     * commit of a batch writes a quarter as many WAL frames, one pwrite each, and the b-trees
     * are shallower. At 24,000 requests/s (scenario 1) the store thread's CPU per record went
     * from about 5.5 to 3.6 µs, most of it system time. A 2 MiB cache (128 pages): the table
     * only grows at its right edge, so what is reread (inner pages, activity, key_usage) is
     * few pages, and a batch of 6,000 rows still fits; with 8 MiB every page the table grew
     * by was a new allocation (new heap, page faults, a cold 16 KiB zeroed) until the cache
     * was full, and the store thread took 0.5 µs more per record (3 runs each). */
    (void)store_exec(s, "PRAGMA page_size=16384");
    (void)store_exec(s, "PRAGMA cache_size=-2048");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        rc = SQLITE_OK;
        /* (a file system without shared memory keeps the rollback journal: commits then wait
         * for readers, which llmux's store thread must not) */
        if (mode == NULL || strcmp(mode, "wal") != 0)
            rc = s->opts.allow_memory && strcmp(s->path, ":memory:") == 0 ? SQLITE_OK
                                                                          : SQLITE_CANTOPEN;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = store_exec(s, "PRAGMA synchronous=NORMAL");
    return rc;
}

/* A new database file is made readable by its owner only: it holds key hashes and who asked
 * what (SQLite gives its -wal and -shm files the same mode). An existing file keeps its mode. */
static void create_private(const char *path)
{
    if (strcmp(path, ":memory:") == 0)
        return;
    int fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

/* In one write transaction: the version check, the migrations, the keys. */
static int open_schema(lx_store_t *s, char *err, size_t errcap)
{
    int64_t t0 = store_mono_us();
    int rc = store_begin(s), version = 0;
    if (rc != SQLITE_OK)
        return open_error(s->path, s->db, rc, "starting a write transaction", err, errcap);
    if ((rc = read_version(s->db, &version)) != SQLITE_OK) {
        store_rollback(s);
        return open_error(s->path, s->db, rc, "reading the schema version", err, errcap);
    }
    if (version > LX_STORE_SCHEMA_VERSION) {
        store_rollback(s);
        snprintf(err, errcap, "%s: schema version %d is newer than this llmux (%d)", s->path,
                 version, LX_STORE_SCHEMA_VERSION);
        return LX_ESCHEMA;
    }
    if (s->opts.no_migrate && version > 0 && version < LX_STORE_SCHEMA_VERSION) {
        store_rollback(s);
        snprintf(err, errcap,
                 "%s: schema version %d is older than this llmux (%d); start this llmux's "
                 "gateway on it once to upgrade it (a gateway of the older version may be "
                 "running on it)",
                 s->path, version, LX_STORE_SCHEMA_VERSION);
        return LX_ESCHEMA;
    }
    if ((rc = migrate(s, version)) != SQLITE_OK) {
        int r = open_error(s->path, s->db, rc, "applying the migrations", err, errcap);
        store_rollback(s);
        return r;
    }
    if ((rc = store_keys_load(s)) != 0) {
        store_rollback(s);
        snprintf(err, errcap, "%s: loading the keys: %s", s->path,
                 rc == LX_ENOMEM ? "out of memory" : sqlite3_errmsg(s->db));
        return rc == LX_ENOMEM ? rc : LX_ESTORE;
    }
    if ((rc = store_commit(s)) != SQLITE_OK)
        return open_error(s->path, s->db, rc, "committing the migrations", err, errcap);
    if (version > 0 && version < LX_STORE_SCHEMA_VERSION)
        lx_log(LX_LOG_INFO, "store: %s: migrated from schema version %d to %d in %lld ms", s->path,
               version, LX_STORE_SCHEMA_VERSION, (long long)(store_mono_us() - t0) / 1000);
    return 0;
}

static int prepare_all(lx_store_t *s, char *err, size_t errcap)
{
    for (int i = 0; i < ST_COUNT_; i++) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                    NULL);
        if (rc != SQLITE_OK)
            return open_error(s->path, s->db, rc, "preparing statements", err, errcap);
    }
    return 0;
}

/* opts.exclusive: an advisory flock on the file, held until close (independent of SQLite's
 * POSIX locks; the descriptor is closed only after SQLite's connection, so closing it cannot
 * drop those). */
static int lock_file(lx_store_t *s, char *err, size_t errcap)
{
    if (!s->opts.exclusive || strcmp(s->path, ":memory:") == 0)
        return 0;
    s->lock_fd = open(s->path, O_RDWR | O_CLOEXEC);
    if (s->lock_fd < 0) {
        snprintf(err, errcap, "%s: cannot open for writing (%s)", s->path, strerror(errno));
        return LX_ESTORE;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(s->lock_fd);
        s->lock_fd = -1;
        if (e == EWOULDBLOCK)
            snprintf(err, errcap,
                     "%s: in use by another llmux gateway (one gateway per store file; "
                     "`llmux keys` may share it)",
                     s->path);
        else
            snprintf(err, errcap, "%s: cannot lock (%s)", s->path, strerror(e));
        return LX_ESTORE;
    }
    return 0;
}

/* Before SQLite's first use in the process: no memory statistics (each allocation would take
 * the global memory mutex to count them; llmux never reads them). A process that used SQLite
 * before gets SQLITE_MISUSE here, harmlessly. */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* (Statement journals keep SQLite's default spill, 64 KiB: with SQLITE_CONFIG_STMTJRNL_SPILL
     * at 4 MiB, SQLite 3.40.1 failed every migration of a file of some thousands of usage rows
     * with SQLITE_FULL, "database or disk is full" (the v4 rewrite of a v2 file of 10,000 rows,
     * the v2 step's DROP TABLE of a v1 file of 100,000), so such a gateway could not start;
     * test_store_migrate.c. The spill file it saved was one temp file per commit.) */
}

int store_db_open(lx_store_t *s, char *err, size_t errcap)
{
    create_private(s->path);
    int lrc = lock_file(s, err, errcap);
    if (lrc != 0)
        return lrc;
    /* NOMUTEX: one thread uses the connection at a time (the caller until lx_store_start, then
     * the store thread, then the caller of lx_store_close after it joined), so SQLite's
     * per-connection mutexes (two lock/unlock pairs per call, ~1,000 instructions a record)
     * guard nothing */
    (void)pthread_once(&sqlite_once, sqlite_setup);
    int rc = sqlite3_open_v2(
        s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return open_error(s->path, s->db, rc, "opening", err, errcap);
    if ((rc = pragmas(s)) != SQLITE_OK)
        return open_error(s->path, s->db, rc, "setting WAL mode", err, errcap);
    rc = sqlite3_create_function(s->db, "lx_hash63", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                 sql_hash63, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = store_batch_register(s);
    if (rc != SQLITE_OK)
        return open_error(s->path, s->db, rc, "registering functions", err, errcap);
    if ((rc = open_schema(s, err, errcap)) != 0)
        return rc;
    if ((rc = prepare_all(s, err, errcap)) != 0)
        return rc;
    sqlite3_stmt *st = s->stmt[ST_DATA_VERSION];
    if (sqlite3_step(st) == SQLITE_ROW)
        s->data_version = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    st = s->stmt[ST_MAX_SEQ];
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        s->seq_floor = (uint64_t)sqlite3_column_int64(st, 0) >> LX_RECORD_LANE_BITS;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return open_error(s->path, s->db, rc, "reading the last generation", err, errcap);
    s->store_tick = s->seq_floor;
    uint64_t now_ms = (uint64_t)lx_clock_now_us() / 1000;
    if ((s->seq_floor >> 10) > now_ms + 60000)
        lx_log(LX_LOG_WARN,
               "store: %s: the last generation is numbered %llu s ahead of the clock (a clock "
               "that read ahead): new numbers continue above it, and retention prunes those "
               "rows by their arrival time",
               s->path, (unsigned long long)((s->seq_floor >> 10) - now_ms) / 1000);
    return 0;
}

void store_db_close(lx_store_t *s)
{
    for (int i = 0; i < ST_COUNT_; i++) {
        sqlite3_finalize(s->stmt[i]);
        s->stmt[i] = NULL;
    }
    if (s->db != NULL) {
        if (sqlite3_close(s->db) != SQLITE_OK)
            lx_log(LX_LOG_ERROR, "store: closing %s: %s", s->path, sqlite3_errmsg(s->db));
        s->db = NULL;
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
        s->lock_fd = -1;
    }
}

int lx_store_schema_version(const char *path, int *version, char *err, size_t errcap)
{
    *version = 0;
    if (access(path, F_OK) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return LX_ESTORE;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
        rc = read_version(db, version);
    }
    int r =
        rc == SQLITE_OK ? 0 : open_error(path, db, rc, "reading the schema version", err, errcap);
    sqlite3_close(db);
    return r;
}
