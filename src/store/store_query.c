/*
 * store_query.c - the read jobs: key views (usage live from the ledgers), generations (from
 * the records not yet committed, then the table, waiting a little for a record still on its
 * way), activity per day, model and provider. And the dispatch of every job.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"

#define LIST_PAGE 100
#define DAY_US    (86400 * INT64_C(1000000))

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    *oom |= d == NULL;
    return d;
}

/* A deep copy of <src> without its ledger. */
static int key_copy(lx_store_key_t *dst, const lx_store_key_t *src)
{
    bool oom = false;
    *dst = *src;
    dst->ledger = NULL;
    dst->name = dup_or_null(src->name, &oom);
    dst->provider = dup_or_null(src->provider, &oom);
    dst->created_by = dup_or_null(src->created_by, &oom);
    dst->models = src->n_models ? calloc(src->n_models, sizeof(char *)) : NULL;
    dst->n_models = dst->models ? src->n_models : 0;
    oom |= src->n_models > 0 && dst->models == NULL;
    for (size_t i = 0; i < dst->n_models; i++)
        dst->models[i] = dup_or_null(src->models[i], &oom);
    if (!oom)
        return 0;
    lx_store_key_dispose(dst);
    return LX_ENOMEM;
}

static int view_of(const lx_store_key_t *k, lx_key_view_t *out)
{
    memset(out, 0, sizeof(*out));
    if (key_copy(&out->key, k) != 0)
        return LX_ENOMEM;
    int64_t now = lx_clock_now_us();
    lx_ledger_usage(k->ledger, now, out->usage);
    out->limit_remaining = lx_ledger_remaining(k->ledger, now);
    return 0;
}

int store_key_view(lx_store_t *s, const char *hash, lx_key_view_t *out)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (strcmp(s->keys[i].hash, hash) == 0)
            return view_of(&s->keys[i], out);
    return LX_ENOTFOUND;
}

void store_job_key_list(lx_store_t *s, lx_store_job_t *job)
{
    if ((job->keys = calloc(LIST_PAGE, sizeof(*job->keys))) == NULL) {
        store_job_error(job, LX_ENOMEM, "out of memory");
        return;
    }
    uint32_t skip = job->offset;
    for (size_t i = 0; i < s->n_keys && job->n_keys < LIST_PAGE; i++) {
        if (s->keys[i].disabled && !job->include_disabled)
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        if (view_of(&s->keys[i], &job->keys[job->n_keys]) != 0) {
            store_job_error(job, LX_ENOMEM, "out of memory");
            return;
        }
        job->n_keys++;
    }
}

/* A configuration key's usage: the committed counters plus the records still pending. */
static void config_key_view(lx_store_t *s, lx_store_job_t *job, lx_key_view_t *v)
{
    int64_t now_us = lx_clock_now_us(), now = now_us / 1000000;
    memset(v, 0, sizeof(*v));
    v->from_config = true;
    v->limit_remaining = -1;
    snprintf(v->key.hash, sizeof(v->key.hash), "%s", job->hash);
    store_hex_digest(v->key.hash, v->key.digest);
    store_drain_records(s);
    store_usage_read(s, job->hash, now_us, v->usage);
    for (const lx_record_t *r = s->pend_head; r != NULL; r = r->next) {
        if (strcmp(lx_record_str(r, LX_RF_KEY_HASH), job->hash) != 0)
            continue;
        int64_t at = (r->created_at_us + (int64_t)r->latency_ms * 1000) / 1000000;
        v->usage[LX_PERIOD_TOTAL] += r->cost;
        for (int p = LX_PERIOD_DAY; p <= LX_PERIOD_MONTH; p++)
            if (lx_period_start((lx_period_t)p, at) == lx_period_start((lx_period_t)p, now))
                v->usage[p] += r->cost;
    }
}

void store_job_key_get(lx_store_t *s, lx_store_job_t *job)
{
    if ((job->keys = calloc(1, sizeof(*job->keys))) == NULL) {
        store_job_error(job, LX_ENOMEM, "out of memory");
        return;
    }
    if (job->config_key) {
        config_key_view(s, job, &job->keys[0]);
        job->n_keys = 1;
        return;
    }
    int rc = store_key_view(s, job->hash, &job->keys[0]);
    if (rc == 0)
        job->n_keys = 1;
    else if (rc == LX_ENOTFOUND)
        store_job_error(job, LX_ENOTFOUND, "no key with this hash");
    else
        store_job_error(job, LX_ENOMEM, "out of memory");
}

/* ---- generations ----------------------------------------------------------------------------- */

/* The id asked for in the canonical form of the records' strings (lx_record_canon, cut as a
 * provider id is): a provider id with bytes that are not UTF-8 is stored with U+FFFD in their
 * place, and is found by its raw bytes and by that form alike, pending or in the table. */
#define GEN_ID_CANON (3 * sizeof(((lx_store_job_t *)0)->gen_id))

static size_t canon_id(const lx_store_job_t *job, char out[GEN_ID_CANON])
{
    size_t cap = lx_record_cap(LX_RF_UPSTREAM_ID) + 1;
    return lx_record_canon(out, cap < GEN_ID_CANON ? cap : GEN_ID_CANON, job->gen_id,
                           strlen(job->gen_id));
}

static bool find_pending(lx_store_t *s, lx_store_job_t *job)
{
    char id[GEN_ID_CANON];
    canon_id(job, id);
    for (const lx_record_t *r = s->pend_head; r != NULL; r = r->next) {
        if (strcmp(lx_record_str(r, LX_RF_ID), id) != 0 &&
            (lx_record_len(r, LX_RF_UPSTREAM_ID) == 0 ||
             strcmp(lx_record_str(r, LX_RF_UPSTREAM_ID), id) != 0))
            continue;
        if ((job->record = malloc(sizeof(*job->record))) == NULL) {
            store_job_error(job, LX_ENOMEM, "out of memory");
            return true;
        }
        *job->record = *r;
        job->record->next = NULL;
        return true;
    }
    return false;
}

/* Column <i> into the array <dst> of <cap> bytes. */
static void col_array(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    lx_record_copy(dst, cap, v ? v : "", v ? (size_t)sqlite3_column_bytes(st, i) : 0);
}

/* Column <i> into string field <field> of <r>. */
static void col_copy(sqlite3_stmt *st, int i, lx_record_t *r, unsigned field)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    lx_record_set(r, field, v ? v : "", v ? (size_t)sqlite3_column_bytes(st, i) : 0);
}

/* The attempts column (JSON written by the store thread) back into <r>, read by SQLite. */
static int read_attempts(lx_store_t *s, const char *json, lx_record_t *r)
{
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(s->db,
                           "SELECT json_extract(value, '$.provider'),"
                           " json_extract(value, '$.endpoint'), json_extract(value, '$.model'),"
                           " json_extract(value, '$.outcome'), json_extract(value, '$.status'),"
                           " json_extract(value, '$.ms') FROM json_each(?1)",
                           -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && r->n_attempts < LX_RECORD_ATTEMPTS) {
        unsigned i = r->n_attempts++;
        for (int k = 0; k < LX_RA_COUNT; k++)
            col_copy(st, k, r, LX_RF_ATTEMPT(i, k));
        r->att_status[i] = (int16_t)sqlite3_column_int(st, 4);
        r->att_ms[i] = (uint32_t)sqlite3_column_int64(st, 5);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void record_from_row(sqlite3_stmt *st, lx_record_t *r)
{
    /* columns 0 to 11: id to finish_reason, in the order of lx_rfield_t */
    for (int i = LX_RF_ID; i <= LX_RF_FINISH_REASON; i++)
        col_copy(st, i, r, (unsigned)i);
    r->created_at_us = sqlite3_column_int64(st, 12);
    r->prompt_tokens = sqlite3_column_int64(st, 13);
    r->completion_tokens = sqlite3_column_int64(st, 14);
    r->cached_tokens = sqlite3_column_int64(st, 15);
    r->reasoning_tokens = sqlite3_column_int64(st, 16);
    r->cost = sqlite3_column_int64(st, 17);
    r->reserved = sqlite3_column_int64(st, 18);
    r->usage_known = sqlite3_column_int(st, 19) != 0;
    r->streamed = sqlite3_column_int(st, 20) != 0;
    r->cancelled = sqlite3_column_int(st, 21) != 0;
    col_copy(st, 27, r, LX_RF_UPSTREAM_ID);
    r->status = (int16_t)sqlite3_column_int(st, 22);
    r->latency_ms = (uint32_t)sqlite3_column_int64(st, 23);
    r->ttft_ms = (uint32_t)sqlite3_column_int64(st, 24);
    r->generation_ms = (uint32_t)sqlite3_column_int64(st, 25);
}

/*
 * SQLITE_ROW with job->record, SQLITE_DONE (none), or an error. An id is looked up by its
 * number (canonical ids), through named_ids (other forms), or as a provider's id through the
 * index on its hash (the latest such generation).
 */
static int find_table(lx_store_t *s, lx_store_job_t *job)
{
#define GEN_COLS                                                                                   \
    "id, key_hash, key_name, model_asked, model, provider, endpoint, api, request_id,"             \
    " session_id, user, finish_reason, created_at_us, prompt_tokens, completion_tokens,"           \
    " cached_tokens, reasoning_tokens, cost, reserved, usage_known, streamed, cancelled,"          \
    " status, latency_ms, ttft_ms, generation_ms, attempts, upstream_id"
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db,
        "SELECT " GEN_COLS " FROM usage WHERE seq = coalesce(?1, (SELECT seq FROM named_ids"
        " WHERE id = ?2)) AND id = ?2 UNION ALL SELECT * FROM (SELECT " GEN_COLS " FROM usage"
        " WHERE upstream_h = ?3 AND upstream_id = ?2 ORDER BY seq DESC LIMIT 1) LIMIT 1",
        -1, &st, NULL);
#undef GEN_COLS
    if (rc == SQLITE_OK) {
        char id[GEN_ID_CANON];
        size_t len = canon_id(job, id);
        uint64_t seq;
        if (lx_record_id_parse(id, len, &seq))
            sqlite3_bind_int64(st, 1, (int64_t)seq);
        sqlite3_bind_text(st, 2, id, (int)len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, store_hash63(id, len));
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        if ((job->record = lx_record_new()) == NULL)
            rc = SQLITE_NOMEM;
        else
            record_from_row(st, job->record);
        if (rc == SQLITE_ROW) {
            int r2 = read_attempts(s, (const char *)sqlite3_column_text(st, 26), job->record);
            rc = r2 == SQLITE_OK ? SQLITE_ROW : r2;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

bool store_gen_find(lx_store_t *s, lx_store_job_t *job, bool can_defer)
{
    store_drain_records(s);
    if (find_pending(s, job))
        return true;
    int rc = find_table(s, job);
    if (rc == SQLITE_ROW)
        return true;
    free(job->record);
    job->record = NULL;
    if (rc != SQLITE_DONE) {
        store_job_error(job, LX_ESTORE, "the store failed while reading a generation: %s",
                        sqlite3_errstr(rc));
        return true;
    }
    store_gen_wait_t *w = can_defer ? malloc(sizeof(*w)) : NULL;
    if (w == NULL) {
        store_job_error(job, LX_ENOTFOUND, "no generation with this id");
        return true;
    }
    w->job = job;
    w->deadline_us = store_mono_us() + STORE_GEN_WAIT_US;
    w->next = s->gen_wait;
    s->gen_wait = w;
    return false;
}

static bool found_in_table(lx_store_t *s, lx_store_job_t *job)
{
    if (find_table(s, job) == SQLITE_ROW)
        return true;
    free(job->record);
    job->record = NULL;
    return false;
}

void store_gen_tick(lx_store_t *s, bool final)
{
    int64_t now = store_mono_us();
    for (store_gen_wait_t **pw = &s->gen_wait; *pw != NULL;) {
        store_gen_wait_t *w = *pw;
        /* pending, else committed meanwhile (an activity job commits the pending records
         * before this tick looks) */
        bool found = find_pending(s, w->job) || found_in_table(s, w->job);
        if (!found && !final && now < w->deadline_us) {
            pw = &w->next;
            continue;
        }
        if (!found)
            store_job_error(w->job, LX_ENOTFOUND, "no generation with this id");
        *pw = w->next;
        if (w->job->done != NULL)
            w->job->done(w->job);
        free(w);
    }
}

/* ---- activity ----------------------------------------------------------------------------------
 */

static int activity_row(sqlite3_stmt *st, lx_store_job_t *job, size_t *cap)
{
    if (job->n_rows == *cap) {
        size_t n = *cap ? 2 * *cap : 32;
        lx_activity_row_t *g = realloc(job->rows, n * sizeof(*g));
        if (g == NULL)
            return LX_ENOMEM;
        job->rows = g;
        *cap = n;
    }
    lx_activity_row_t *row = &job->rows[job->n_rows++];
    memset(row, 0, sizeof(*row));
    int64_t y;
    unsigned m, d;
    lx_period_civil_from_days(sqlite3_column_int64(st, 0), &y, &m, &d);
    unsigned yy = (unsigned)(y < 0 ? 0 : y % 10000);
    row->date[0] = (char)('0' + yy / 1000);
    row->date[1] = (char)('0' + yy / 100 % 10);
    row->date[2] = (char)('0' + yy / 10 % 10);
    row->date[3] = (char)('0' + yy % 10);
    row->date[4] = row->date[7] = '-';
    row->date[5] = (char)('0' + m / 10 % 10);
    row->date[6] = (char)('0' + m % 10);
    row->date[8] = (char)('0' + d / 10 % 10);
    row->date[9] = (char)('0' + d % 10);
    row->date[10] = '\0';
    col_array(st, 1, row->model, sizeof(row->model));
    col_array(st, 2, row->provider, sizeof(row->provider));
    row->requests = sqlite3_column_int64(st, 3);
    row->prompt_tokens = sqlite3_column_int64(st, 4);
    row->completion_tokens = sqlite3_column_int64(st, 5);
    row->reasoning_tokens = sqlite3_column_int64(st, 6);
    row->cost = sqlite3_column_int64(st, 7);
    return 0;
}

void store_job_activity(lx_store_t *s, lx_store_job_t *job)
{
    /* every record received so far counts: commit them first (a failure leaves them out) */
    store_drain_records(s);
    if (s->pend_head != NULL)
        (void)store_commit_pending(s);
    int64_t from, to;
    if (job->date < 0) {
        to = lx_period_start(LX_PERIOD_DAY, lx_clock_now_us() / 1000000) * INT64_C(1000000);
        from = to - 30 * DAY_US;
    } else {
        from = lx_period_start(LX_PERIOD_DAY, job->date) * INT64_C(1000000);
        to = from + DAY_US;
    }
    bool all = job->key_hash[0] == '\0';
    const char *sql =
        all ? "SELECT day, model, provider, sum(requests), sum(prompt_tokens),"
              " sum(completion_tokens), sum(reasoning_tokens), sum(cost) FROM activity"
              " WHERE day >= ?1 AND day < ?2 GROUP BY day, model, provider"
              " ORDER BY day DESC, model, provider"
            : "SELECT day, model, provider, requests, prompt_tokens, completion_tokens,"
              " reasoning_tokens, cost FROM activity WHERE day >= ?1 AND day < ?2"
              " AND key_hash = ?3 ORDER BY day DESC, model, provider";
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, from / DAY_US);
        sqlite3_bind_int64(st, 2, to / DAY_US);
        if (!all)
            sqlite3_bind_text(st, 3, job->key_hash, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            if (activity_row(st, job, &cap) != 0) {
                rc = SQLITE_NOMEM;
                break;
            }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        store_job_error(job, LX_ESTORE, "the store failed while reading activity: %s",
                        sqlite3_errstr(rc));
}

/* ---- dispatch ----------------------------------------------------------------------------------
 */

bool store_run_job(lx_store_t *s, lx_store_job_t *job, bool can_defer)
{
    job->status = 0;
    job->message[0] = '\0';
    store_poll_changes(s); /* another process's change first (`llmux keys` beside a gateway) */
    switch (job->kind) {
    case LX_JOB_KEY_LIST:
        store_job_key_list(s, job);
        break;
    case LX_JOB_KEY_GET:
        store_job_key_get(s, job);
        break;
    case LX_JOB_KEY_CREATE:
        store_job_key_create(s, job);
        break;
    case LX_JOB_KEY_UPDATE:
        store_job_key_update(s, job);
        break;
    case LX_JOB_KEY_DELETE:
        store_job_key_delete(s, job);
        break;
    case LX_JOB_GENERATION:
        return store_gen_find(s, job, can_defer);
    case LX_JOB_ACTIVITY:
        store_job_activity(s, job);
        break;
    default:
        store_job_error(job, LX_EINVAL, "unknown job kind %d", (int)job->kind);
    }
    return true;
}
