/*
 * store_thread.c - the store thread: a loop that sleeps on a condition variable until the
 * next tick (commit_interval_ms) or a job's signal, then runs the jobs, takes the records off
 * their lock-free stack, commits them in one transaction, answers waiting generation lookups,
 * polls for other processes' commits, then (busy or not) prunes old rows and checkpoints
 * when due.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/status.h"
#include "core/strbuf.h"

#define STOP_RETRIES     40 /* ticks a stop keeps retrying a failing commit before giving up */
#define STOP_DEADLINE_US (10 * INT64_C(1000000)) /* ... and at most this long (a locked file) */
#define PRUNE_IDLE_US    (60 * INT64_C(1000000))

void store_job_error(lx_store_job_t *job, int status, const char *fmt, ...)
{
    job->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->message, sizeof(job->message), fmt, ap);
    va_end(ap);
}

/* Sets a job's error from the connection's last failure, logs it and marks the store. */
int store_db_error(lx_store_t *s, lx_store_job_t *job, int rc, const char *what)
{
    store_rollback(s);
    store_set_health(s, rc, what);
    store_job_error(job, LX_ESTORE, "the store failed while %s: %s", what, sqlite3_errstr(rc));
    return LX_ESTORE;
}

void store_set_health(lx_store_t *s, int rc, const char *what)
{
    pthread_mutex_lock(&s->health_mu);
    bool was = s->healthy;
    if (rc == SQLITE_OK || rc == SQLITE_DONE) {
        s->healthy = true;
        s->why[0] = '\0';
    } else {
        s->healthy = false;
        snprintf(s->why, sizeof(s->why), "%s: %s: %s", s->path, what, sqlite3_errstr(rc));
    }
    bool now = s->healthy;
    pthread_mutex_unlock(&s->health_mu);
    if (was && !now)
        lx_log(LX_LOG_ERROR, "store: %s: %s: %s (records are kept in memory and retried)", s->path,
               what, sqlite3_errstr(rc));
    else if (!was && now)
        lx_log(LX_LOG_INFO, "store: %s: writes succeed again", s->path);
}

/* ---- records ---------------------------------------------------------------------------- */

/* Appends the list fifo .. last (n records) to the pending list. */
static void pend_append(lx_store_t *s, lx_record_t *fifo, lx_record_t *last, size_t n)
{
    if (fifo == NULL)
        return;
    /* one canonical form from here on: pending lookups, the table, the hash, /activity */
    for (lx_record_t *r = fifo;; r = r->next) {
        lx_record_canonicalize(r);
        if (r == last)
            break;
    }
    if (s->pend_tail != NULL)
        s->pend_tail->next = fifo;
    else
        s->pend_head = fifo;
    s->pend_tail = last;
    s->n_pend += n;
}

/* The ring's filled slots from its head on, in arrival order, onto the pending list. A slot
 * reserved but not filled yet (its producer between the two steps) ends the take: it and the
 * slots after it are taken at the next drain. Each record's `next` is written while the
 * records a few slots on are prefetched: no record is waited for before the next is asked. */
static size_t drain_ring(lx_store_t *s)
{
    uint64_t h = atomic_load_explicit(&s->ring_head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&s->ring_tail, memory_order_relaxed);
    lx_record_t *fifo = NULL, *last = NULL;
    size_t n = 0;
    for (; h != t; h++, n++) {
        _Atomic(lx_record_t *) *slot = &s->ring[h & (STORE_RING - 1)];
        lx_record_t *r = atomic_load_explicit(slot, memory_order_acquire);
        if (r == NULL)
            break;
        atomic_store_explicit(slot, NULL, memory_order_relaxed);
        if (t - h > 8) {
            lx_record_t *ahead =
                atomic_load_explicit(&s->ring[(h + 8) & (STORE_RING - 1)], memory_order_relaxed);
            if (ahead != NULL)
                __builtin_prefetch(ahead, 1);
        }
        r->next = NULL;
        if (last != NULL)
            last->next = r;
        else
            fifo = r;
        last = r;
    }
    atomic_store_explicit(&s->ring_head, h, memory_order_release);
    pend_append(s, fifo, last, n);
    return n;
}

/* Takes every queued record, the ring's (in arrival order) and then the stack's (a LIFO, where
 * records go when the ring is full: reversed), and appends them to the pending list. */
void store_drain_records(lx_store_t *s)
{
    (void)drain_ring(s);
    lx_record_t *r = atomic_exchange_explicit(&s->rec_in, NULL, memory_order_acquire);
    lx_record_t *fifo = NULL, *last = r;
    size_t n = 0;
    while (r != NULL) {
        lx_record_t *next = r->next;
        r->next = fifo;
        fifo = r;
        r = next;
        n++;
    }
    pend_append(s, fifo, last, n);
    if (s->n_pend >= s->pend_warn_at) {
        char why[200] = "";
        (void)lx_store_healthy(s, why, sizeof(why));
        lx_log(LX_LOG_ERROR,
               "store: %zu usage records held in memory, not yet committed (%s); none is "
               "dropped",
               s->n_pend, why[0] ? why : "the database is slow");
        s->pend_warn_at *= 2;
    }
}

/* The length of <v>'s first run of plain printable ASCII (no control byte, DEL, '"', '\\' nor
 * byte >= 0x80), <len> bytes long: eight bytes a step (a word has such a byte when one of
 * its bytes is below 0x20, equal to 0x22, 0x5c or 0x7f, or has its top bit), then the rest. */
static size_t plain_run(const char *v, size_t len)
{
#define ONES        UINT64_C(0x0101010101010101)
#define HIGH        UINT64_C(0x8080808080808080)
#define ZERO(x)     (((x)-ONES) & ~(x)&HIGH)       /* a byte of x is 0 */
#define BELOW(x, n) (((x) - (n)*ONES) & ~(x)&HIGH) /* a byte < n (bytes < 0x80) */
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, 8);
        if (((w & HIGH) | BELOW(w, 0x20) | ZERO(w ^ (0x22 * ONES)) | ZERO(w ^ (0x5c * ONES)) |
             ZERO(w ^ (0x7f * ONES))) != 0)
            break;
    }
    while (i < len && v[i] >= 0x20 && v[i] != 0x7f && v[i] != '"' &&
           v[i] != '\\') /* (char is signed: >= 0x80 stops) */
        i++;
    return i;
#undef ONES
#undef HIGH
#undef ZERO
#undef BELOW
}

/* <v> (<len> bytes) escaped at <out>: plain printable ASCII is copied as it is (a record's
 * strings nearly always are), from the first other byte on core/json's escaper decides. Its
 * length. */
static size_t put_escaped(char *out, size_t cap, const char *v, size_t len)
{
    size_t i = plain_run(v, len);
    memcpy(out, v, i);
    if (i == len)
        return i;
    return i + lx_json_escape(out + i, cap - i, v + i, len - i, NULL);
}

/* ,"<key>": at <out> (<kl> bytes of key); its length. */
static size_t put_key(char *out, const char *key, size_t kl)
{
    out[0] = ',';
    out[1] = '"';
    memcpy(out + 2, key, kl);
    out[kl + 2] = '"';
    out[kl + 3] = ':';
    return kl + 4;
}

/* ,"<key>":"<escaped v>" at <out> (v: <vl> bytes); its length. */
static size_t json_str(char *out, size_t cap, const char *key, size_t kl, const char *v, size_t vl)
{
    size_t n = put_key(out, key, kl);
    out[n++] = '"';
    n += put_escaped(out + n, cap - n - 2, v, vl);
    out[n++] = '"';
    return n;
}

/* ,"<key>":<v> at <out>; its length. */
static size_t json_int(char *out, const char *key, size_t kl, int64_t v)
{
    size_t n = put_key(out, key, kl);
    lx_strbuf_t b = lx_strbuf_make(out + n, 21); /* (INT64_MIN has 20 characters) */
    lx_strbuf_i64(&b, v);
    return n + lx_strbuf_len(&b, out + n);
}

/* A member unless its value is the default (the view `usage` gives the default back). */
#define STR(key, f)                                                                                \
    (lx_record_len(r, f) != 0 ? json_str(out + n, cap - n, key, sizeof(key) - 1,                   \
                                         lx_record_str(r, f), lx_record_len(r, f))                 \
                              : (size_t)0)
#define INT(key, v, dflt) ((v) != (dflt) ? json_int(out + n, key, sizeof(key) - 1, v) : (size_t)0)

/* Whether string fields <a> and <b> of <r> hold the same text. */
static bool same_str(const lx_record_t *r, unsigned a, unsigned b)
{
    return lx_record_len(r, a) == lx_record_len(r, b) &&
           (r->str[a].off == r->str[b].off ||
            memcmp(lx_record_str(r, a), lx_record_str(r, b), lx_record_len(r, a)) == 0);
}

/* Attempt <i>: provider, endpoint and model only when they differ from the record's (the
 * served ones). Its length. */
static size_t attempt_json(const lx_record_t *r, unsigned i, char *out, size_t cap)
{
    size_t n = 0;
    static const struct {
        char key;
        uint8_t field, twin;
    } own[] = {{'p', LX_RA_PROVIDER, LX_RF_PROVIDER},
               {'e', LX_RA_ENDPOINT, LX_RF_ENDPOINT},
               {'m', LX_RA_MODEL, LX_RF_MODEL}};
    for (size_t k = 0; k < sizeof(own) / sizeof(own[0]); k++) {
        unsigned f = LX_RF_ATTEMPT(i, own[k].field);
        if (!same_str(r, f, own[k].twin))
            n += json_str(out + n, cap - n, &own[k].key, 1, lx_record_str(r, f),
                          lx_record_len(r, f));
    }
    n += STR("o", LX_RF_ATTEMPT(i, LX_RA_OUTCOME));
    n += INT("s", r->att_status[i], 0);
    n += INT("ms", r->att_ms[i], 0);
    if (n == 0)
        out[n++] = ',';
    out[0] = '{'; /* (over the first member's comma) */
    out[n++] = '}';
    return n;
}

/* The record as one JSON object (the `record` column): short member names, and no member whose
 * value is its default (schema v4, store_db.c; the view `usage` spells it out as the columns of
 * schema v1). Written with the strbuf writers, not printf: this runs once per record. <named>:
 * its id is not the canonical form of its number (else the number gives it back). Room: every
 * string escaped at six bytes per byte, and the rest. */
size_t store_record_json(const lx_record_t *r, bool named, char *out)
{
    size_t n = 0, cap = STORE_RECORD_JSON_MAX;
    if (named) /* (even empty: the id is not the number's) */
        n += json_str(out + n, cap - n, "id", 2, lx_record_str(r, LX_RF_ID),
                      lx_record_len(r, LX_RF_ID));
    n += STR("k", LX_RF_KEY_HASH);
    n += STR("kn", LX_RF_KEY_NAME);
    if (!same_str(r, LX_RF_MODEL_ASKED, LX_RF_MODEL)) /* (absent: the model served) */
        n += json_str(out + n, cap - n, "ma", 2, lx_record_str(r, LX_RF_MODEL_ASKED),
                      lx_record_len(r, LX_RF_MODEL_ASKED));
    n += STR("m", LX_RF_MODEL);
    n += STR("p", LX_RF_PROVIDER);
    n += STR("e", LX_RF_ENDPOINT);
    n += STR("a", LX_RF_API);
    n += STR("r", LX_RF_REQUEST_ID);
    n += STR("si", LX_RF_SESSION_ID);
    n += STR("u", LX_RF_USER);
    n += STR("f", LX_RF_FINISH_REASON);
    n += STR("ui", LX_RF_UPSTREAM_ID);
    n += INT("t", r->created_at_us, 0);
    n += INT("pt", r->prompt_tokens, -1);
    n += INT("ct", r->completion_tokens, -1);
    n += INT("ch", r->cached_tokens, -1);
    n += INT("rt", r->reasoning_tokens, -1);
    n += INT("c", r->cost, 0);
    n += INT("rs", r->reserved, 0);
    n += INT("uk", r->usage_known, 0);
    n += INT("st", r->streamed, 0);
    n += INT("cx", r->cancelled, 0);
    n += INT("s", r->status, 0);
    n += INT("l", r->latency_ms, 0);
    n += INT("tf", r->ttft_ms, 0);
    n += INT("g", r->generation_ms, 0);
    if (r->n_attempts > 0) {
        n += put_key(out + n, "at", 2);
        out[n++] = '[';
        for (unsigned i = 0; i < r->n_attempts && i < LX_RECORD_ATTEMPTS; i++) {
            if (i > 0)
                out[n++] = ',';
            n += attempt_json(r, i, out + n, cap - n);
        }
        out[n++] = ']';
    }
    if (n == 0)
        out[n++] = ',';
    out[0] = '{'; /* (over the first member's comma) */
    out[n++] = '}';
    return n;
}
#undef STR
#undef INT

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/*
 * A batch's sums, written once per group at the end of the batch instead of once per record
 * (most batches have a handful of keys and models): the cost per key and day (key_usage), and
 * the requests, tokens and cost per day, key, model and provider (activity). The strings point
 * into the batch's records, which outlive its transaction.
 */
#define BATCH_GROUPS 32
typedef struct batch_sums {
    size_t n_keys, n_act;
    struct {
        const char *key_hash;
        size_t key_len;
        int64_t day; /* the day's start; the week and month follow from it */
        int64_t cost;
    } key[BATCH_GROUPS];
    struct {
        int64_t day; /* days since 1970-01-01 (UTC) */
        const char *key_hash, *model, *provider;
        size_t key_len, model_len, provider_len;
        int64_t requests, prompt, completion, reasoning, cost;
    } act[BATCH_GROUPS];
} batch_sums_t;

static int key_usage_flush(lx_store_t *s, batch_sums_t *u)
{
    int rc = SQLITE_DONE;
    for (size_t i = 0; i < u->n_keys && rc == SQLITE_DONE; i++) {
        sqlite3_stmt *st = s->stmt[ST_UPSERT_KEY_USAGE];
        bind_text(st, 1, u->key[i].key_hash);
        sqlite3_bind_int64(st, 2, u->key[i].cost);
        for (int p = LX_PERIOD_DAY; p <= LX_PERIOD_MONTH; p++)
            sqlite3_bind_int64(st, 2 + p, lx_period_start((lx_period_t)p, u->key[i].day));
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    u->n_keys = 0;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int activity_flush(lx_store_t *s, batch_sums_t *u)
{
    int rc = SQLITE_DONE;
    sqlite3_stmt *st = s->stmt[ST_UPSERT_ACTIVITY];
    for (size_t i = 0; i < u->n_act && rc == SQLITE_DONE; i++) {
        sqlite3_bind_int64(st, 1, u->act[i].day);
        bind_text(st, 2, u->act[i].key_hash);
        bind_text(st, 3, u->act[i].model);
        bind_text(st, 4, u->act[i].provider);
        const int64_t v[] = {u->act[i].requests, u->act[i].prompt, u->act[i].completion,
                             u->act[i].reasoning, u->act[i].cost};
        for (int k = 0; k < 5; k++)
            sqlite3_bind_int64(st, 5 + k, v[k]);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    u->n_act = 0;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int key_usage_add(lx_store_t *s, batch_sums_t *u, const lx_record_t *r, int64_t day)
{
    const char *key_hash = lx_record_str(r, LX_RF_KEY_HASH);
    size_t kl = lx_record_len(r, LX_RF_KEY_HASH);
    int64_t cost = r->cost;
    for (size_t i = 0; i < u->n_keys; i++) {
        if (u->key[i].day == day && u->key[i].key_len == kl &&
            memcmp(u->key[i].key_hash, key_hash, kl) == 0) {
            u->key[i].cost += cost;
            return SQLITE_OK;
        }
    }
    if (u->n_keys == BATCH_GROUPS) {
        int rc = key_usage_flush(s, u);
        if (rc != SQLITE_OK)
            return rc;
    }
    u->key[u->n_keys].key_hash = key_hash;
    u->key[u->n_keys].key_len = kl;
    u->key[u->n_keys].day = day;
    u->key[u->n_keys].cost = cost;
    u->n_keys++;
    return SQLITE_OK;
}

static int64_t nonneg(int64_t v)
{
    return v > 0 ? v : 0;
}

/* /activity's grouping: the arrival day (UTC), the key, the model that served (else the one
 * asked for) and the provider. */
static int activity_add(lx_store_t *s, batch_sums_t *u, const lx_record_t *r)
{
    int64_t day = r->created_at_us / (86400 * INT64_C(1000000));
    unsigned mf = lx_record_len(r, LX_RF_MODEL) != 0 ? LX_RF_MODEL : LX_RF_MODEL_ASKED;
    const char *model = lx_record_str(r, mf), *key = lx_record_str(r, LX_RF_KEY_HASH);
    const char *provider = lx_record_str(r, LX_RF_PROVIDER);
    size_t ml = lx_record_len(r, mf), kl = lx_record_len(r, LX_RF_KEY_HASH);
    size_t pl = lx_record_len(r, LX_RF_PROVIDER);
    size_t i = 0;
#define SAME(a, al, b, bl) ((al) == (bl) && memcmp(a, b, al) == 0)
    while (i < u->n_act &&
           (u->act[i].day != day || !SAME(u->act[i].model, u->act[i].model_len, model, ml) ||
            !SAME(u->act[i].key_hash, u->act[i].key_len, key, kl) ||
            !SAME(u->act[i].provider, u->act[i].provider_len, provider, pl)))
        i++;
#undef SAME
    if (i == u->n_act) {
        if (i == BATCH_GROUPS) {
            int rc = activity_flush(s, u);
            if (rc != SQLITE_OK)
                return rc;
            i = 0;
        }
        memset(&u->act[i], 0, sizeof(u->act[i]));
        u->act[i].day = day;
        u->act[i].key_hash = key;
        u->act[i].key_len = kl;
        u->act[i].model = model;
        u->act[i].model_len = ml;
        u->act[i].provider = provider;
        u->act[i].provider_len = pl;
        u->n_act = i + 1;
    }
    u->act[i].requests++;
    u->act[i].prompt += nonneg(r->prompt_tokens);
    u->act[i].completion += nonneg(r->completion_tokens);
    u->act[i].reasoning += nonneg(r->reasoning_tokens);
    u->act[i].cost += r->cost;
    return SQLITE_OK;
}

/* The record's number: its id's, or, for an id of another form, one from the store's lane,
 * with the id kept in named_ids (0: that id was recorded before). */
static int record_seq(lx_store_t *s, const lx_record_t *r, uint64_t *seq, bool *named)
{
    const char *id = lx_record_str(r, LX_RF_ID);
    size_t len = lx_record_len(r, LX_RF_ID);
    *named = false;
    if (lx_record_id_parse(id, len, seq))
        return SQLITE_OK;
    *named = true;
    uint64_t ms = r->created_at_us > 0 ? (uint64_t)r->created_at_us / 1000 : 0;
    *seq = lx_record_seq_next(&s->store_tick, ms, LX_RECORD_LANE_STORE);
    sqlite3_stmt *st = s->stmt[ST_INSERT_NAMED];
    sqlite3_bind_text(st, 1, id, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)*seq);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        *seq = 0;
    return SQLITE_OK;
}

/* The record's cost and tokens into the batch's sums (activity; key_usage when it has a key). */
static int record_sums(lx_store_t *s, batch_sums_t *u, const lx_record_t *r)
{
    int rc = activity_add(s, u, r);
    if (rc != SQLITE_OK || lx_record_len(r, LX_RF_KEY_HASH) == 0)
        return rc;
    int64_t at = (r->created_at_us + (int64_t)r->latency_ms * 1000) / 1000000;
    return key_usage_add(s, u, r, lx_period_start(LX_PERIOD_DAY, at));
}

static void log_twice(const lx_record_t *r)
{
    lx_log(LX_LOG_WARN, "store: generation id %s recorded twice: the second kept out",
           lx_record_str(r, LX_RF_ID));
}

/* One record, one INSERT (the way a transaction is redone when its one INSERT ... SELECT met
 * a number already there: each row then tells whether it went in). */
static int insert_record(lx_store_t *s, const lx_record_t *r, batch_sums_t *u)
{
    static _Thread_local char js[STORE_RECORD_JSON_MAX];
    uint64_t seq = 0;
    bool named = false;
    int rc = record_seq(s, r, &seq, &named);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = s->stmt[ST_INSERT_GEN];
    if (seq != 0) {
        sqlite3_bind_int64(st, 1, (int64_t)seq);
        size_t ul = lx_record_len(r, LX_RF_UPSTREAM_ID);
        if (ul > 0)
            sqlite3_bind_int64(st, 2, store_hash63(lx_record_str(r, LX_RF_UPSTREAM_ID), ul));
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_text(st, 3, js, (int)store_record_json(r, named, js), SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    if (seq == 0 || sqlite3_changes(s->db) == 0) { /* (and its cost is not counted twice) */
        log_twice(r);
        return SQLITE_OK;
    }
    return record_sums(s, u, r);
}

/* The record as a row of the transaction's INSERT ... SELECT (s->batch), its sums counted. */
static int batch_add(lx_store_t *s, const lx_record_t *r, batch_sums_t *u)
{
    uint64_t seq = 0;
    bool named = false;
    int rc = record_seq(s, r, &seq, &named);
    if (rc != SQLITE_OK)
        return rc;
    if (seq == 0) { /* (an id of another form recorded before) */
        log_twice(r);
        return SQLITE_OK;
    }
    s->batch[s->n_batch++] = (store_batch_row_t){.r = r, .seq = seq, .named = named};
    return record_sums(s, u, r);
}

#define BATCH_REDO (-1) /* a row's number was there already: redo row by row */

/* Every row of s->batch in one statement (store_batch.c). */
static int batch_insert(lx_store_t *s)
{
    if (s->n_batch == 0)
        return SQLITE_OK;
    sqlite3_stmt *st = s->stmt[ST_INSERT_BATCH];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return rc;
    return (size_t)sqlite3_changes(s->db) == s->n_batch ? SQLITE_OK : BATCH_REDO;
}

/* Ends a transaction of <n> records (the first n pending, in n_runs runs): the sums flushed,
 * the commit, the records given back. Rolls back on a failure (the records stay pending). */
static int batch_end(lx_store_t *s, int rc, batch_sums_t *u, size_t n, size_t n_runs)
{
    if (rc == SQLITE_OK)
        rc = key_usage_flush(s, u);
    if (rc == SQLITE_OK)
        rc = activity_flush(s, u);
    if (rc == SQLITE_OK)
        rc = store_commit(s);
    if (rc != SQLITE_OK) {
        store_rollback(s);
        return rc;
    }
    /* (what follows the transaction: after its last run's last record) */
    s->pend_head = n_runs > 0 ? s->runs[n_runs - 1].last->next : s->pend_head;
    s->n_pend -= n;
    for (size_t i = 0; i < n_runs; i++)
        store_run_done(s, &s->runs[i]);
    if (s->pend_head == NULL)
        s->pend_tail = NULL;
    if (s->n_pend < STORE_PENDING_WARN)
        s->pend_warn_at = STORE_PENDING_WARN;
    return SQLITE_OK;
}

/* The same <n> records again, one INSERT each (after BATCH_REDO rolled the first try back). */
static int commit_rows(lx_store_t *s, size_t n, size_t n_runs)
{
    int rc = store_begin(s);
    batch_sums_t u;
    u.n_keys = u.n_act = 0;
    lx_record_t *r = s->pend_head;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++, r = r->next)
        rc = insert_record(s, r, &u);
    return batch_end(s, rc, &u, n, n_runs);
}

/* Commits up to STORE_BATCH_MAX pending records (in at most STORE_RUNS_MAX runs of one
 * lane) in one transaction, their rows written by one INSERT ... SELECT; gives them back to
 * their lanes once committed. Returns SQLITE_OK or the failure (the records stay pending). */
static int commit_batch(lx_store_t *s)
{
    int rc = store_begin(s);
    size_t n = 0, n_runs = 0;
    lx_record_t *r = s->pend_head;
    batch_sums_t u;
    u.n_keys = u.n_act = 0;
    s->n_batch = 0;
    for (; rc == SQLITE_OK && r != NULL && n < STORE_BATCH_MAX; r = r->next, n++) {
        /* the next record's numbers, places and first strings on their way while this one is
         * read: a record left the worker's cache long ago, and each line of it came in
         * cold, one after another (perf: most of the thread's user time) */
        if (r->next != NULL)
            for (size_t o = 0; o < offsetof(lx_record_t, arena) + 256; o += 64)
                __builtin_prefetch((const char *)r->next + o);
        /* its run, noted while it is in the cache: after the commit only each run's last
         * record is touched again (before, a second walk met every record cold) */
        if (n_runs == 0 || s->runs[n_runs - 1].pool != r->pool) {
            if (n_runs == STORE_RUNS_MAX)
                break;
            s->runs[n_runs++] = (store_run_t){.first = r, .pool = r->pool};
        }
        s->runs[n_runs - 1].last = r;
        s->runs[n_runs - 1].n++;
        rc = batch_add(s, r, &u);
    }
    if (rc == SQLITE_OK)
        rc = batch_insert(s);
    if (rc == BATCH_REDO) {
        store_rollback(s);
        return commit_rows(s, n, n_runs);
    }
    return batch_end(s, rc, &u, n, n_runs);
}

int store_commit_pending(lx_store_t *s)
{
    int rc = SQLITE_OK;
    while (s->pend_head != NULL && (rc = commit_batch(s)) == SQLITE_OK)
        ;
    store_set_health(s, rc, "committing usage records");
    return rc;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void run_jobs(lx_store_t *s)
{
    lx_store_job_t *j = atomic_exchange_explicit(&s->job_in, NULL, memory_order_acquire);
    lx_store_job_t *fifo = NULL;
    while (j != NULL) {
        lx_store_job_t *next = j->next;
        j->next = fifo;
        fifo = j;
        j = next;
    }
    while (fifo != NULL) {
        lx_store_job_t *job = fifo;
        fifo = fifo->next;
        job->next = NULL;
        if (store_run_job(s, job, true) && job->done != NULL)
            job->done(job);
    }
}

/* Another process (`llmux keys`) committed: reload the keys and publish them. */
void store_poll_changes(lx_store_t *s)
{
    sqlite3_stmt *st = s->stmt[ST_DATA_VERSION];
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : s->data_version;
    sqlite3_reset(st);
    if (v == s->data_version)
        return;
    if (store_keys_load(s) == 0) { /* (a failed load is tried again at the next tick) */
        s->data_version = v;
        s->reload_fails = 0;
        store_keys_publish(s);
        return;
    }
    unsigned fails = ++s->reload_fails;
    if ((fails & (fails - 1)) == 0)
        lx_log(LX_LOG_ERROR, "store: %s: reloading the keys: %s (tried %u times)", s->path,
               sqlite3_errmsg(s->db), s->reload_fails);
}

/*
 * Upkeep, at the end of every tick that is not the final one, busy or not (under steady load
 * no tick is idle): when due, one retention step (at most STORE_PRUNE_BATCH rows, or
 * STORE_PRUNE_BUSY after a commit, so that a step delays the next commit by a few
 * milliseconds at most; the next step comes at the next tick while a step finds a full batch,
 * else a minute later), and a checkpoint every STORE_CHECKPOINT_US, so that the WAL shrinks
 * under load too.
 */
/* One retention step: the generations numbered below the cutoff's first number, oldest first;
 * once those are done, the named ids below it, the rows numbered ahead of the clock whose
 * arrival is before the cutoff, and the activity days before it. Each at most <batch> rows. */
static void prune_step(lx_store_t *s, int64_t now, bool busy)
{
    int batch = busy ? STORE_PRUNE_BUSY : STORE_PRUNE_BATCH;
    int64_t cutoff = lx_clock_now_us() - (int64_t)s->opts.retention_s * 1000000;
    int64_t bound = cutoff > 0 ? (int64_t)lx_record_seq_of_ms((uint64_t)cutoff / 1000) : 0;
    int64_t ahead = (int64_t)lx_record_seq_of_ms((uint64_t)lx_clock_now_us() / 1000 + 60000);
    sqlite3_stmt *st = s->stmt[ST_PRUNE];
    sqlite3_bind_int64(st, 1, bound);
    sqlite3_bind_int(st, 2, batch);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    int n = rc == SQLITE_DONE ? sqlite3_changes(s->db) : 0;
    if (rc == SQLITE_DONE && n < batch) { /* (the rows are gone: their ids and days too) */
        st = s->stmt[ST_PRUNE_NAMED];
        sqlite3_bind_int64(st, 1, bound);
        sqlite3_bind_int(st, 2, batch);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE && sqlite3_changes(s->db) == batch)
            n = batch;
    }
    if (rc == SQLITE_DONE && n < batch) {
        st = s->stmt[ST_PRUNE_AHEAD];
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_bind_int64(st, 2, ahead);
        sqlite3_bind_int(st, 3, batch);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE && sqlite3_changes(s->db) == batch)
            n = batch;
    }
    if (rc == SQLITE_DONE && n < batch) {
        st = s->stmt[ST_PRUNE_ACTIVITY];
        sqlite3_bind_int64(st, 1, cutoff / (86400 * INT64_C(1000000)));
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    if (rc != SQLITE_DONE)
        store_set_health(s, rc, "pruning old usage records");
    s->next_prune_us = n == batch ? now : now + PRUNE_IDLE_US;
}

static void upkeep(lx_store_t *s, int64_t now, bool busy)
{
    if (now >= s->next_prune_us)
        prune_step(s, now, busy);
    if (now - s->last_checkpoint_us >= STORE_CHECKPOINT_US) {
        s->last_checkpoint_us = now;
        (void)store_exec(s, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
}

static void tick(lx_store_t *s, bool final)
{
    run_jobs(s);
    store_drain_records(s);
    store_gen_tick(s, final);
    bool busy = s->pend_head != NULL;
    if (busy)
        (void)store_commit_pending(s);
    if (!final) {
        store_poll_changes(s);
        upkeep(s, store_mono_us(), busy);
    }
}

/* Sleeps until <deadline> (monotonic µs) or a signal; returns whether to stop. */
static bool wait_until(lx_store_t *s, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000, .tv_nsec = deadline % 1000000 * 1000};
    pthread_mutex_lock(&s->mu);
    while (!s->wake && !s->stop) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    }
    s->wake = false;
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

void store_flush_final(lx_store_t *s)
{
    /* a bound in time, not only in tries: each try may wait the busy timeout on a locked file */
    int64_t deadline = store_mono_us() + STOP_DEADLINE_US;
    for (int i = 0; i < STOP_RETRIES && store_mono_us() < deadline; i++) {
        tick(s, true);
        if (s->pend_head == NULL && atomic_load(&s->rec_in) == NULL &&
            atomic_load(&s->ring_head) == atomic_load(&s->ring_tail) &&
            atomic_load(&s->job_in) == NULL)
            break;
        struct timespec ts = {0, (long)s->opts.commit_interval_ms * 1000000};
        nanosleep(&ts, NULL);
    }
    store_drain_records(s);
    if (s->n_pend > 0)
        lx_log(LX_LOG_ERROR,
               "store: %s: %zu usage records could not be committed before the "
               "store closed and are lost",
               s->path, s->n_pend);
    while (s->pend_head != NULL) {
        lx_record_t *r = s->pend_head;
        s->pend_head = r->next;
        free(r);
    }
    s->pend_tail = NULL;
    s->n_pend = 0;
}

static void *store_main(void *arg)
{
    lx_store_t *s = arg;
    /* named, so that its CPU can be told from the workers' (/proc/PID/task/TID/comm, top -H) */
    (void)pthread_setname_np(pthread_self(), "llmux-store");
    int64_t interval = (int64_t)s->opts.commit_interval_ms * 1000;
    int64_t next = store_mono_us() + interval;
    for (;;) {
        bool stop = wait_until(s, next);
        if (stop)
            break;
        tick(s, false);
        /* the cadence holds whatever a tick took (a record waits at most one interval for the
         * drain that takes it); a thread that fell behind ticks again at once */
        int64_t now = store_mono_us();
        if (now >= next) {
            next += interval;
            if (next < now)
                next = now;
        }
    }
    store_flush_final(s);
    return NULL;
}

int lx_store_start(lx_store_t *s)
{
    if (s->started)
        return 0;
    s->started = true;
    store_keys_publish(s);
    s->last_checkpoint_us = store_mono_us();
    int rc = pthread_create(&s->thread, NULL, store_main, s);
    if (rc != 0) {
        s->started = false;
        lx_log(LX_LOG_ERROR, "store: cannot start its thread: %s", strerror(rc));
        return LX_ESTORE;
    }
    return 0;
}

void lx_store_stop(lx_store_t *s)
{
    if (!s->started || s->stopped)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->stopped = true;
}
