/*
 * old_store.c - llmux-old-store: a store file at an old schema version (1 or 2) holding N
 * usage rows of a realistic mix, for bench/store/migrate.sh; and the check of that file once a
 * gateway migrated it.
 *
 *   llmux-old-store make  FILE VERSION N T0   writes FILE (which must not exist); the rows
 *                                             arrive from T0 (unix µs) over 30 days
 *   llmux-old-store check FILE VERSION N T0   0 when the `usage` view has N rows and 64
 *                                             sampled rows read back equal to what `make` wrote
 *
 * The schemas are written by the released migration steps of src/store/store_db.c, up to the
 * version asked for (store_schema_create; v1: the 28-column `usage` table and its indexes;
 * v2: `generations`, rows with every member spelled out, as a v2 gateway wrote them). Each row is
 * what a request writes: a stored key out of 8, one of 4 models and providers, tokens and a cost at
 * that model's prices, a third of the rows streamed (with the provider's id, hashed into
 * upstream_h), some fallbacks with two attempts, cancellations and errors, a user or a
 * session on some; arrivals spread over 30 days from T0 (migrate.sh gives 31 days ago: inside
 * the default 90-day retention, so nothing is pruned after the start). Deterministic: row i
 * is the same in `make` and `check`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/store_int.h"

typedef struct model {
    const char *id, *provider, *endpoint;
    long long prompt_price, completion_price; /* µ$ per million tokens */
} model_t;

static const model_t models[] = {
    {"openai/gpt-4o-mini", "openai", "https://api.openai.com/v1", 150000, 600000},
    {"anthropic/claude-3-5-sonnet", "anthropic", "https://api.anthropic.com/v1", 3000000, 15000000},
    {"meta-llama/llama-3.1-70b-instruct", "together", "https://api.together.xyz/v1", 880000,
     880000},
    {"mistralai/mistral-large", "mistral", "https://api.mistral.ai/v1", 2000000, 6000000},
};

typedef struct row {
    char id[48], key_hash[65], key_name[16], model_asked[48], session_id[24], user[24];
    char request_id[17], finish_reason[8], upstream_id[40], attempts[512];
    const model_t *m;
    long long seq, t, pt, ct, ch, rt, cost, reserved, uk, st, cx, status, l, tf, g;
} row_t;

static uint64_t mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* The attempts in v1's JSON: one, or a failed first one on another provider (a fallback). */
static void attempts(row_t *r, int fallback, const char *outcome)
{
    const model_t *f = &models[(r->m - models + 1) % 4];
    int n = 0;
    if (fallback)
        n = snprintf(r->attempts, sizeof(r->attempts),
                     "[{\"provider\":\"%s\",\"endpoint\":\"%s\",\"model\":\"%s\","
                     "\"outcome\":\"server\",\"status\":502,\"ms\":%lld},",
                     f->provider, f->endpoint, f->id, r->l / 4);
    else
        r->attempts[n++] = '[';
    snprintf(r->attempts + n, sizeof(r->attempts) - (size_t)n,
             "{\"provider\":\"%s\",\"endpoint\":\"%s\",\"model\":\"%s\",\"outcome\":\"%s\","
             "\"status\":%lld,\"ms\":%lld}]",
             r->m->provider, r->m->endpoint, r->m->id, outcome, r->cx ? 0 : r->status,
             r->l - (fallback ? r->l / 4 : 0));
}

/* Stored key k (0..7): its SHA-256 in hex (made up) and its name. */
static void key_of(row_t *r, unsigned k)
{
    uint64_t kh = mix(k + 1000);
    snprintf(r->key_hash, sizeof(r->key_hash),
             "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, kh, mix(kh), mix(kh + 1),
             mix(kh + 2));
    snprintf(r->key_name, sizeof(r->key_name), "team-%u", k);
}

/* Row i of n, arrivals from <t0> µs on. */
static void make_row(row_t *r, long long i, long long n, long long t0, int version)
{
    memset(r, 0, sizeof(*r));
    uint64_t h = mix((uint64_t)i), k = h % 8, pct = (h >> 8) % 100;
    r->m = &models[(h >> 16) % 4];
    key_of(r, (unsigned)k);
    snprintf(r->model_asked, sizeof(r->model_asked), "%s", r->m->id);
    snprintf(r->request_id, sizeof(r->request_id), "%016" PRIx64, mix(h));
    if ((h >> 24) % 10 == 0)
        snprintf(r->session_id, sizeof(r->session_id), "sess-%u", (unsigned)((h >> 28) % 5000));
    if ((h >> 40) % 5 == 0)
        snprintf(r->user, sizeof(r->user), "user-%u", (unsigned)((h >> 44) % 20000));
    r->t = t0 + i * (30LL * 86400 * 1000000 / n) + (long long)((h >> 32) % 1000);
    r->pt = 50 + (long long)((h >> 20) % 4000);
    r->ct = 10 + (long long)((h >> 36) % 800);
    r->ch = pct < 20 ? r->pt / 2 : 0;
    r->rt = pct % 10 == 0 ? r->ct / 3 : 0;
    r->st = (h >> 50) % 3 == 0;
    r->l = 200 + (long long)((h >> 52) % 5000);
    r->status = 200;
    r->uk = 1;
    snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", pct < 10 ? "length" : "stop");
    const char *outcome = "ok";
    if (pct >= 98) { /* the client went away: partial usage */
        r->cx = 1, r->status = 499, r->ct /= 4, r->finish_reason[0] = 0, outcome = "canceled";
    } else if (pct == 97) { /* every attempt failed: nothing used */
        r->status = 502, r->pt = r->ct = r->ch = r->rt = -1, r->uk = 0;
        r->finish_reason[0] = 0, outcome = "server";
    }
    if (r->st && r->status != 502) {
        snprintf(r->upstream_id, sizeof(r->upstream_id), "chatcmpl-%016" PRIx64, mix(h + 7));
        r->tf = 120 + r->l % 400, r->g = r->l - r->tf;
    }
    if (r->uk)
        r->cost = (r->pt * r->m->prompt_price + r->ct * r->m->completion_price + 999999) / 1000000;
    r->reserved = r->uk ? r->cost + (r->m->completion_price * 1024 + 999999) / 1000000 : 0;
    int fallback = pct >= 90 && pct < 95;
    if (fallback)
        snprintf(r->model_asked, sizeof(r->model_asked), "%s", models[(r->m - models + 1) % 4].id);
    attempts(r, fallback, outcome);
    /* v1 named rows "gen-<worker>-<16 hex>"; v2 numbered them (unix ms << 10 | count) << 9 |
     * lane, the id being that number in 16 hex digits */
    r->seq = (((r->t / 1000) << 10) | (long long)(i & 1023)) << 9 | (long long)(h % 2);
    if (version == 1)
        snprintf(r->id, sizeof(r->id), "gen-%u-%016llx", (unsigned)(h % 2), (unsigned long long)i);
    else
        snprintf(r->id, sizeof(r->id), "gen-%016llx", (unsigned long long)r->seq);
}

static const char *const v1_insert =
    "INSERT INTO usage (id, key_hash, key_name, model_asked, model, provider, endpoint, api,"
    " request_id, session_id, user, finish_reason, upstream_id, created_at_us, prompt_tokens,"
    " completion_tokens, cached_tokens, reasoning_tokens, cost, reserved, usage_known,"
    " streamed, cancelled, status, latency_ms, ttft_ms, generation_ms, attempts) VALUES (?1,"
    " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,"
    " ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)";

static const char *const v2_insert =
    "INSERT INTO generations (seq, upstream_h, record) VALUES (?29, ?30, json_object('id', ?1,"
    " 'key_hash', ?2, 'key_name', ?3, 'model_asked', ?4, 'model', ?5, 'provider', ?6,"
    " 'endpoint', ?7, 'api', ?8, 'request_id', ?9, 'session_id', ?10, 'user', ?11,"
    " 'finish_reason', ?12, 'upstream_id', ?13, 'created_at_us', ?14, 'prompt_tokens', ?15,"
    " 'completion_tokens', ?16, 'cached_tokens', ?17, 'reasoning_tokens', ?18, 'cost', ?19,"
    " 'reserved', ?20, 'usage_known', ?21, 'streamed', ?22, 'cancelled', ?23, 'status', ?24,"
    " 'latency_ms', ?25, 'ttft_ms', ?26, 'generation_ms', ?27, 'attempts', json(?28)))";

static void bind_row(sqlite3_stmt *st, const row_t *r)
{
    const char *s[] = {r->id,         r->key_hash,    r->key_name,    r->model_asked,
                       r->m->id,      r->m->provider, r->m->endpoint, "chat",
                       r->request_id, r->session_id,  r->user,        r->finish_reason,
                       r->upstream_id};
    for (int i = 0; i < 13; i++)
        sqlite3_bind_text(st, i + 1, s[i], -1, SQLITE_STATIC);
    long long v[] = {r->t,  r->pt, r->ct, r->ch,     r->rt, r->cost, r->reserved,
                     r->uk, r->st, r->cx, r->status, r->l,  r->tf,   r->g};
    for (int i = 0; i < 14; i++)
        sqlite3_bind_int64(st, i + 14, v[i]);
    sqlite3_bind_text(st, 28, r->attempts, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(st) >= 30) {
        sqlite3_bind_int64(st, 29, r->seq);
        if (r->upstream_id[0])
            sqlite3_bind_int64(st, 30, store_hash63(r->upstream_id, strlen(r->upstream_id)));
        else
            sqlite3_bind_null(st, 30);
    }
}

static int exec_all(sqlite3 *db, const char *const *sql)
{
    for (; *sql != NULL; sql++)
        if (sqlite3_exec(db, *sql, NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "llmux-old-store: %s\n  in: %.80s\n", sqlite3_errmsg(db), *sql);
            return 1;
        }
    return 0;
}

/* The sums a gateway of that version kept beside the rows: the keys (8 stored keys), their
 * totals, and (v2) the activity table. */
static int side_tables(sqlite3 *db, int version, long long t0)
{
    char sql[512];
    for (unsigned k = 0; k < 8; k++) {
        row_t r;
        key_of(&r, k);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO keys (hash, name, label, limit_micros, limit_reset, models,"
                 " created_at, created_by) VALUES ('%s', '%s', 'sk-lx-v1-%.3s...%.3s',"
                 " 100000000, 3, '', %lld, 'admin')",
                 r.key_hash, r.key_name, r.key_hash, r.key_hash + 61, t0 / 1000000);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return 1;
    }
    const char *sums[] = {
        "INSERT INTO key_usage (key_hash, total) SELECT key_hash, sum(cost) FROM usage"
        " GROUP BY key_hash",
        version == 2 ? "INSERT INTO activity SELECT created_at_us / 86400000000, key_hash,"
                       " model, provider, count(*), sum(max(prompt_tokens, 0)),"
                       " sum(max(completion_tokens, 0)), sum(max(reasoning_tokens, 0)),"
                       " sum(cost) FROM usage GROUP BY 1, 2, 3, 4"
                     : "SELECT 1",
        NULL,
    };
    return exec_all(db, sums);
}

static int make(const char *path, int version, long long n, long long t0)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        return 1;
    /* the page size the gateway of that version gave a new file: SQLite's default 4 KiB for
     * v1, 16 KiB (commit 8ee451a, soon after v2) for v2 */
    const char *head[] = {version == 1 ? "PRAGMA page_size=4096" : "PRAGMA page_size=16384",
                          "PRAGMA journal_mode=WAL", "BEGIN", NULL};
    int rc = exec_all(db, head) || store_schema_create(db, version) != SQLITE_OK;
    sqlite3_stmt *st = NULL;
    if (rc == 0 &&
        sqlite3_prepare_v2(db, version == 1 ? v1_insert : v2_insert, -1, &st, NULL) != SQLITE_OK)
        rc = 1;
    for (long long i = 0; rc == 0 && i < n; i++) {
        row_t r;
        make_row(&r, i, n, t0, version);
        bind_row(st, &r);
        rc = sqlite3_step(st) != SQLITE_DONE;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == 0)
        rc = side_tables(db, version, t0) || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != 0)
        fprintf(stderr, "llmux-old-store: %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* Row i read back through the view equals what make() wrote, column by column. */
static int check_row(sqlite3 *db, long long i, long long n, long long t0, int version)
{
    row_t r;
    make_row(&r, i, n, t0, version);
    sqlite3_stmt *st = NULL;
    /* a v1 row is found by its id through named_ids, a v2 row by its number */
    const char *sql = version == 1 ? "SELECT * FROM usage WHERE seq = (SELECT seq FROM named_ids"
                                     " WHERE id = ?1)"
                                   : "SELECT * FROM usage WHERE seq = ?29 AND ?1 IS NOT NULL";
    int bad = sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK;
    if (!bad) {
        sqlite3_bind_text(st, 1, r.id, -1, SQLITE_STATIC);
        if (version == 2)
            sqlite3_bind_int64(st, 29, r.seq);
        bad = sqlite3_step(st) != SQLITE_ROW;
    }
    /* the view's columns: seq, id, the 11 strings, created_at_us .. generation_ms, attempts,
     * upstream_id, upstream_h */
    const char *s[] = {r.key_hash,    r.key_name,    r.model_asked,  r.m->id,
                       r.m->provider, r.m->endpoint, "chat",         r.request_id,
                       r.session_id,  r.user,        r.finish_reason};
    long long v[] = {r.t,  r.pt, r.ct, r.ch,     r.rt, r.cost, r.reserved,
                     r.uk, r.st, r.cx, r.status, r.l,  r.tf,   r.g};
    for (int c = 0; !bad && c < 11; c++)
        bad = strcmp((const char *)sqlite3_column_text(st, 2 + c), s[c]) != 0 ? 2 + c : 0;
    for (int c = 0; !bad && c < 14; c++)
        bad = sqlite3_column_int64(st, 13 + c) != v[c] ? 13 + c : 0;
    if (!bad && strcmp((const char *)sqlite3_column_text(st, 27), r.attempts) != 0)
        bad = 27;
    if (!bad && strcmp((const char *)sqlite3_column_text(st, 28), r.upstream_id) != 0)
        bad = 28;
    if (!bad && sqlite3_column_int64(st, 29) !=
                    (r.upstream_id[0] ? store_hash63(r.upstream_id, strlen(r.upstream_id)) : 0))
        bad = 29;
    if (!bad && strcmp((const char *)sqlite3_column_text(st, 1), r.id) != 0)
        bad = 1;
    if (bad)
        fprintf(stderr, "llmux-old-store: row %lld (%s) differs at column %d (%s)\n", i, r.id, bad,
                st ? sqlite3_column_name(st, bad) : "?");
    sqlite3_finalize(st);
    return bad != 0;
}

static int check(const char *path, int version, long long n, long long t0)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return 1;
    sqlite3_stmt *st = NULL;
    long long count = -1, schema = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM usage), (SELECT value FROM meta"
                           " WHERE key = 'schema_version')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0), schema = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    int bad = count != n;
    for (long long k = 0; k < 64 && !bad; k++) /* the first, the last, 62 in between */
        bad = check_row(db, k == 63 ? n - 1 : (long long)(mix((uint64_t)k) % (uint64_t)n) * (k > 0),
                        n, t0, version);
    printf("rows %lld (expected %lld), schema version %lld, 64 sampled rows %s\n", count, n, schema,
           bad ? "DIFFER" : "read back equal");
    sqlite3_close(db);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "make") != 0 && strcmp(argv[1], "check") != 0) ||
        (atoi(argv[3]) != 1 && atoi(argv[3]) != 2) || atoll(argv[4]) < 1 || atoll(argv[5]) < 1) {
        fprintf(stderr, "usage: llmux-old-store make|check FILE 1|2 N T0_US\n");
        return 2;
    }
    int version = atoi(argv[3]);
    long long n = atoll(argv[4]), t0 = atoll(argv[5]);
    if (strcmp(argv[1], "make") == 0)
        return make(argv[2], version, n, t0);
    return check(argv[2], version, n, t0);
}
