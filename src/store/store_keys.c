/*
 * store_keys.c - the key table: loading the stored keys with a ledger each (reused across
 * reloads, so counters and holds survive every change), publishing snapshots, and the jobs
 * that create, change and delete keys, each with its audit row in the same transaction.
 * Secrets exist only in the create job's output: the table holds their SHA-256.
 */
#include "store/store_int.h"

#include <mbedtls/sha256.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/status.h"
#include "store/money.h"

#define KEY_COLS                                                                                   \
    "hash, name, label, disabled, limit_micros, limit_reset, expires_at, models, provider, rpm,"   \
    " tpm, concurrency, created_at, updated_at, created_by, priority"

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void store_hex_digest(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        out[i] = hi < 0 || lo < 0 ? 0 : (uint8_t)(hi << 4 | lo);
    }
}

static char *col_dup(sqlite3_stmt *st, int i, bool *oom)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    if (v == NULL)
        return NULL;
    char *d = strdup(v);
    if (d == NULL)
        *oom = true;
    return d;
}

/* The allowlist column: patterns separated by '\n' (a pattern holds no control character). */
static int models_split(const char *text, lx_store_key_t *k)
{
    k->models = NULL;
    k->n_models = 0;
    if (text == NULL || text[0] == '\0')
        return 0;
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    if ((k->models = calloc(n, sizeof(char *))) == NULL)
        return LX_ENOMEM;
    for (const char *p = text; k->n_models < n; k->n_models++) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((k->models[k->n_models] = strndup(p, len)) == NULL)
            return LX_ENOMEM;
        p += len + (e != NULL);
    }
    return 0;
}

/* Reads one row of KEY_COLS into <k> (its strings malloc'd; ledger NULL). */
static int key_from_row(sqlite3_stmt *st, lx_store_key_t *k)
{
    bool oom = false;
    memset(k, 0, sizeof(*k));
    const char *hash = (const char *)sqlite3_column_text(st, 0);
    const char *label = (const char *)sqlite3_column_text(st, 2);
    snprintf(k->hash, sizeof(k->hash), "%s", hash != NULL ? hash : ""); /* (a damaged row) */
    store_hex_digest(k->hash, k->digest);
    snprintf(k->label, sizeof(k->label), "%s", label != NULL ? label : "");
    k->name = col_dup(st, 1, &oom);
    k->disabled = sqlite3_column_int(st, 3) != 0;
    k->limits.has_limit = sqlite3_column_type(st, 4) != SQLITE_NULL;
    k->limits.limit = sqlite3_column_int64(st, 4);
    k->limits.limit_reset = (lx_period_t)(sqlite3_column_int(st, 5) & 3);
    k->expires_at = sqlite3_column_int64(st, 6);
    k->provider = col_dup(st, 8, &oom);
    k->limits.rpm = (uint32_t)sqlite3_column_int64(st, 9);
    k->limits.tpm = (uint32_t)sqlite3_column_int64(st, 10);
    k->limits.concurrency = (uint32_t)sqlite3_column_int64(st, 11);
    k->created_at = sqlite3_column_int64(st, 12);
    k->updated_at = sqlite3_column_int64(st, 13);
    k->created_by = col_dup(st, 14, &oom);
    k->priority = sqlite3_column_int(st, 15) == LX_KEY_PRIORITY_BATCH ? LX_KEY_PRIORITY_BATCH
                                                                      : LX_KEY_PRIORITY_INTERACTIVE;
    if (models_split((const char *)sqlite3_column_text(st, 7), k) != 0)
        oom = true;
    if (oom || k->name == NULL || k->created_by == NULL) {
        lx_store_key_dispose(k);
        return LX_ENOMEM;
    }
    return 0;
}

/* What <hash> spent, rolled to the periods containing <now_us> (ended periods read 0). */
void store_usage_read(lx_store_t *s, const char *hash, int64_t now_us,
                      int64_t usage[LX_PERIOD_COUNT])
{
    memset(usage, 0, sizeof(int64_t) * LX_PERIOD_COUNT);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT total, day, day_start, week, week_start, month, month_start"
                           " FROM key_usage WHERE key_hash = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    int64_t now = now_us / 1000000;
    if (sqlite3_step(st) == SQLITE_ROW) {
        usage[LX_PERIOD_TOTAL] = sqlite3_column_int64(st, 0);
        for (int p = LX_PERIOD_DAY; p <= LX_PERIOD_MONTH; p++)
            if (sqlite3_column_int64(st, 2 * p) == lx_period_start((lx_period_t)p, now))
                usage[p] = sqlite3_column_int64(st, 2 * p - 1);
    }
    sqlite3_finalize(st);
}

static lx_ledger_t *ledger_for(lx_store_t *s, const lx_store_key_t *k)
{
    lx_ledger_t *l = store_keys_ledger(s, k->hash);
    if (l != NULL) {
        const lx_ledger_limits_t *a = &k->limits;
        lx_ledger_limits_t cur = {0};
        for (size_t i = 0; i < s->n_keys; i++)
            if (s->keys[i].ledger == l)
                cur = s->keys[i].limits;
        if (a->has_limit != cur.has_limit || a->limit != cur.limit ||
            a->limit_reset != cur.limit_reset || a->rpm != cur.rpm || a->tpm != cur.tpm ||
            a->concurrency != cur.concurrency)
            lx_ledger_set_limits(l, a);
        return lx_ledger_ref(l);
    }
    int64_t now_us = lx_clock_now_us(), usage[LX_PERIOD_COUNT], start[LX_PERIOD_COUNT];
    store_usage_read(s, k->hash, now_us, usage);
    for (int p = 0; p < LX_PERIOD_COUNT; p++)
        start[p] = lx_period_start((lx_period_t)p, now_us / 1000000);
    return lx_ledger_new(&k->limits, usage, start);
}

static void keys_free_array(lx_store_key_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lx_ledger_unref(keys[i].ledger);
        keys[i].ledger = NULL;
        lx_store_key_dispose(&keys[i]);
    }
    free(keys);
}

void store_keys_free(lx_store_t *s)
{
    keys_free_array(s->keys, s->n_keys);
    s->keys = NULL;
    s->n_keys = 0;
}

int store_keys_load(lx_store_t *s)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT " KEY_COLS " FROM keys WHERE deleted_at IS NULL"
                                " ORDER BY created_at, rowid",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return LX_ESTORE;
    lx_store_key_t *keys = NULL;
    size_t n = 0, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            lx_store_key_t *g = realloc(keys, cap * sizeof(*keys));
            if (g == NULL)
                break;
            keys = g;
        }
        if (key_from_row(st, &keys[n]) != 0)
            break;
        if ((keys[n].ledger = ledger_for(s, &keys[n])) == NULL) {
            lx_store_key_dispose(&keys[n]);
            break;
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        keys_free_array(keys, n);
        return rc == SQLITE_ROW ? LX_ENOMEM : LX_ESTORE;
    }
    store_keys_free(s);
    s->keys = keys;
    s->n_keys = n;
    return 0;
}

lx_ledger_t *store_keys_ledger(lx_store_t *s, const char *hash)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (strcmp(s->keys[i].hash, hash) == 0)
            return s->keys[i].ledger;
    return NULL;
}

void store_keys_publish(lx_store_t *s)
{
    if (!s->started)
        return;
    lx_keyset_t *ks = lx_keyset_new(s->keys, s->n_keys, ++s->ks_version);
    if (ks == NULL) {
        lx_log(LX_LOG_ERROR, "store: out of memory publishing the keys (the previous snapshot "
                             "stays in force)");
        return;
    }
    pthread_mutex_lock(&s->snap_mu);
    lx_keyset_t *old = s->snap;
    s->snap = ks;
    pthread_mutex_unlock(&s->snap_mu);
    lx_keyset_unref(old);
    if (s->opts.on_keys != NULL)
        s->opts.on_keys(lx_keyset_ref(ks), s->opts.arg);
}

/* ---- a small growable JSON text for the audit table ---------------------------------------- */

typedef struct jtext {
    char *p;
    size_t len, cap;
    bool oom;
} jtext_t;

static void jt_raw(jtext_t *j, const char *s, size_t n)
{
    if (j->oom || n == 0)
        return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = (j->len + n + 1) * 2;
        char *g = realloc(j->p, cap);
        if (g == NULL) {
            j->oom = true;
            return;
        }
        j->p = g;
        j->cap = cap;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

static void jt_str(jtext_t *j, const char *s)
{
    size_t n = lx_json_escaped_len(s, strlen(s));
    char *tmp = malloc(n + 2);
    if (tmp == NULL) {
        j->oom = true;
        return;
    }
    tmp[0] = '"';
    lx_json_escape(tmp + 1, n, s, strlen(s), NULL);
    tmp[n + 1] = '"';
    jt_raw(j, tmp, n + 2);
    free(tmp);
}

static void jt_key(jtext_t *j, const char *k)
{
    jt_raw(j, j->len > 1 ? "," : "", j->len > 1);
    jt_str(j, k);
    jt_raw(j, ":", 1);
}

static void jt_i64(jtext_t *j, int64_t v)
{
    char b[24];
    jt_raw(j, b, (size_t)snprintf(b, sizeof(b), "%lld", (long long)v));
}

/* The fields <in> sets, as a JSON object (never a secret: a key's input holds none). */
static void audit_details(const lx_key_input_t *in, jtext_t *j)
{
    jt_raw(j, "{", 1);
    if (in->set & LX_KEY_F_NAME) {
        jt_key(j, "name");
        jt_str(j, in->name ? in->name : "");
    }
    if (in->set & LX_KEY_F_DISABLED) {
        jt_key(j, "disabled");
        jt_raw(j, in->disabled ? "true" : "false", in->disabled ? 4 : 5);
    }
    if (in->set & LX_KEY_F_LIMIT) {
        jt_key(j, "limit_micros");
        if (in->has_limit)
            jt_i64(j, in->limit);
        else
            jt_raw(j, "null", 4);
    }
    if (in->set & LX_KEY_F_LIMIT_RESET) {
        const char *n = lx_period_name(in->limit_reset);
        jt_key(j, "limit_reset");
        if (n != NULL)
            jt_str(j, n);
        else
            jt_raw(j, "null", 4);
    }
    if (in->set & LX_KEY_F_EXPIRES) {
        jt_key(j, "expires_at");
        jt_i64(j, in->expires_at);
    }
    if (in->set & LX_KEY_F_MODELS) {
        jt_key(j, "models");
        jt_raw(j, "[", 1);
        for (size_t i = 0; i < in->n_models; i++) {
            jt_raw(j, ",", i > 0);
            jt_str(j, in->models[i]);
        }
        jt_raw(j, "]", 1);
    }
    if (in->set & LX_KEY_F_PROVIDER) {
        jt_key(j, "provider");
        jt_raw(j, in->provider ? in->provider : "null",
               strlen(in->provider ? in->provider : "null"));
    }
    if (in->set & LX_KEY_F_RATE_LIMIT) {
        char b[96];
        jt_key(j, "rate_limit");
        jt_raw(j, b,
               (size_t)snprintf(b, sizeof(b), "{\"rpm\":%u,\"tpm\":%u,\"concurrency\":%u}", in->rpm,
                                in->tpm, in->concurrency));
    }
    if (in->set & LX_KEY_F_PRIORITY) {
        jt_key(j, "priority");
        jt_str(j, in->priority == LX_KEY_PRIORITY_BATCH ? "batch" : "interactive");
    }
    jt_raw(j, "}", 1);
}

static int audit(lx_store_t *s, const lx_store_job_t *job, const char *action, const char *hash,
                 int64_t now)
{
    jtext_t j = {0};
    if (strcmp(action, "delete") == 0)
        jt_raw(&j, "{}", 2);
    else
        audit_details(&job->input, &j);
    if (j.oom) {
        free(j.p);
        return SQLITE_NOMEM;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO audit (at, actor, action, key_hash, details)"
                                " VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_text(st, 2, job->actor[0] ? job->actor : "unknown", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, j.p, (int)j.len, SQLITE_STATIC);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    free(j.p);
    return rc;
}

/* ---- the jobs ------------------------------------------------------------------------------ */

static bool validate_models(lx_store_job_t *job, const lx_key_input_t *in)
{
    if (in->n_models > LX_KEY_MODELS_MAX) {
        store_job_error(job, LX_EINVAL, "models holds more than %d entries", LX_KEY_MODELS_MAX);
        return false;
    }
    for (size_t i = 0; i < in->n_models; i++) {
        const char *m = in->models[i];
        size_t len = m ? strlen(m) : 0;
        bool ctl = false;
        for (size_t c = 0; c < len; c++)
            ctl |= (unsigned char)m[c] < 0x20 || m[c] == 0x7f;
        if (len == 0 || len > LX_KEY_MODEL_MAX || ctl) {
            store_job_error(job, LX_EINVAL,
                            "models[%zu] must be 1 to %d bytes without control characters", i,
                            LX_KEY_MODEL_MAX);
            return false;
        }
    }
    return true;
}

static bool validate(lx_store_job_t *job, bool create)
{
    const lx_key_input_t *in = &job->input;
    if (create && !(in->set & LX_KEY_F_NAME)) {
        store_job_error(job, LX_EINVAL, "name is required");
        return false;
    }
    if ((in->set & LX_KEY_F_NAME) &&
        (in->name == NULL || in->name[0] == '\0' || strlen(in->name) > LX_KEY_NAME_MAX)) {
        store_job_error(job, LX_EINVAL, "name must be 1 to %d bytes", LX_KEY_NAME_MAX);
        return false;
    }
    if ((in->set & LX_KEY_F_LIMIT) && in->has_limit &&
        (in->limit < 0 || in->limit > LX_MONEY_MAX)) {
        store_job_error(job, LX_EINVAL, "limit must be between 0 and 1000000000 USD");
        return false;
    }
    if ((in->set & LX_KEY_F_LIMIT_RESET) && (unsigned)in->limit_reset > LX_PERIOD_MONTH) {
        store_job_error(job, LX_EINVAL, "limit_reset must be daily, weekly, monthly or null");
        return false;
    }
    if ((in->set & LX_KEY_F_EXPIRES) && in->expires_at < 0) {
        store_job_error(job, LX_EINVAL, "expires_at is before 1970");
        return false;
    }
    if ((in->set & LX_KEY_F_PROVIDER) && in->provider != NULL &&
        strlen(in->provider) > LX_KEY_PROVIDER_MAX) {
        store_job_error(job, LX_EINVAL, "provider is longer than %d bytes", LX_KEY_PROVIDER_MAX);
        return false;
    }
    if ((in->set & LX_KEY_F_PRIORITY) && in->priority > LX_KEY_PRIORITY_BATCH) {
        store_job_error(job, LX_EINVAL, "priority must be interactive or batch");
        return false;
    }
    return !(in->set & LX_KEY_F_MODELS) || validate_models(job, in);
}

static int replace_str(char **dst, const char *src)
{
    char *d = src ? strdup(src) : NULL;
    if (src != NULL && d == NULL)
        return LX_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

/* Sets the fields of <k> that <in> names. */
static int apply(lx_store_key_t *k, const lx_key_input_t *in)
{
    if ((in->set & LX_KEY_F_NAME) && replace_str(&k->name, in->name) != 0)
        return LX_ENOMEM;
    if (in->set & LX_KEY_F_DISABLED)
        k->disabled = in->disabled;
    if (in->set & LX_KEY_F_LIMIT) {
        k->limits.has_limit = in->has_limit;
        k->limits.limit = in->has_limit ? in->limit : 0;
    }
    if (in->set & LX_KEY_F_LIMIT_RESET)
        k->limits.limit_reset = in->limit_reset;
    if (in->set & LX_KEY_F_EXPIRES)
        k->expires_at = in->expires_at;
    if ((in->set & LX_KEY_F_PROVIDER) && replace_str(&k->provider, in->provider) != 0)
        return LX_ENOMEM;
    if (in->set & LX_KEY_F_RATE_LIMIT) {
        k->limits.rpm = in->rpm;
        k->limits.tpm = in->tpm;
        k->limits.concurrency = in->concurrency;
    }
    if (in->set & LX_KEY_F_PRIORITY)
        k->priority = in->priority;
    if (in->set & LX_KEY_F_MODELS) {
        for (size_t i = 0; i < k->n_models; i++)
            free(k->models[i]);
        free(k->models);
        k->models = NULL;
        k->n_models = 0;
        if (in->n_models > 0 && (k->models = calloc(in->n_models, sizeof(char *))) == NULL)
            return LX_ENOMEM;
        for (; k->n_models < in->n_models; k->n_models++)
            if ((k->models[k->n_models] = strdup(in->models[k->n_models])) == NULL)
                return LX_ENOMEM;
    }
    return 0;
}

static char *models_join(const lx_store_key_t *k)
{
    size_t len = 1;
    for (size_t i = 0; i < k->n_models; i++)
        len += strlen(k->models[i]) + 1;
    char *t = malloc(len), *p = t;
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < k->n_models; i++) {
        if (i > 0)
            *p++ = '\n';
        size_t n = strlen(k->models[i]);
        memcpy(p, k->models[i], n);
        p += n;
    }
    *p = '\0';
    return t;
}

/* Writes every column of <k>: a new row, or the live row with its hash. */
static int write_key(lx_store_t *s, const lx_store_key_t *k, bool insert)
{
    static const char ins[] = "INSERT INTO keys (" KEY_COLS ") VALUES"
                              " (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)";
    static const char upd[] =
        "UPDATE keys SET name=?2, label=?3, disabled=?4, limit_micros=?5, limit_reset=?6,"
        " expires_at=?7, models=?8, provider=?9, rpm=?10, tpm=?11, concurrency=?12,"
        " created_at=?13, updated_at=?14, created_by=?15, priority=?16"
        " WHERE hash=?1 AND deleted_at IS NULL";
    char *models = models_join(k);
    sqlite3_stmt *st = NULL;
    int rc = models ? sqlite3_prepare_v2(s->db, insert ? ins : upd, -1, &st, NULL) : SQLITE_NOMEM;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, k->hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, k->label, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, k->disabled);
        if (k->limits.has_limit)
            sqlite3_bind_int64(st, 5, k->limits.limit);
        sqlite3_bind_int(st, 6, (int)k->limits.limit_reset);
        sqlite3_bind_int64(st, 7, k->expires_at);
        sqlite3_bind_text(st, 8, models, -1, SQLITE_STATIC);
        if (k->provider != NULL)
            sqlite3_bind_text(st, 9, k->provider, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 10, k->limits.rpm);
        sqlite3_bind_int64(st, 11, k->limits.tpm);
        sqlite3_bind_int64(st, 12, k->limits.concurrency);
        sqlite3_bind_int64(st, 13, k->created_at);
        sqlite3_bind_int64(st, 14, k->updated_at);
        sqlite3_bind_text(st, 15, k->created_by, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 16, k->priority);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    free(models);
    return rc;
}

/* After a committed change: the new key table, a snapshot, and the key's view for the job. */
static void after_change(lx_store_t *s, lx_store_job_t *job, const char *hash)
{
    if (store_keys_load(s) != 0)
        lx_log(LX_LOG_ERROR, "store: %s: reloading the keys after a change: %s", s->path,
               sqlite3_errmsg(s->db));
    store_keys_publish(s);
    if (hash == NULL)
        return;
    if ((job->keys = calloc(1, sizeof(*job->keys))) == NULL) {
        store_job_error(job, LX_ENOMEM, "out of memory");
        return;
    }
    if (store_key_view(s, hash, &job->keys[0]) == 0)
        job->n_keys = 1;
}

static int new_secret(lx_store_job_t *job, lx_store_key_t *k)
{
    uint8_t rnd[32];
    char hex[65];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n <= 0)
            return LX_ESTORE;
        got += (size_t)n;
    }
    to_hex(rnd, sizeof(rnd), hex);
    snprintf(job->secret, sizeof(job->secret), "%s%s", LX_KEY_PREFIX, hex);
    if (mbedtls_sha256_ret((const unsigned char *)job->secret, strlen(job->secret), k->digest, 0) !=
        0)
        return LX_ESTORE;
    to_hex(k->digest, 32, k->hash);
    snprintf(k->label, sizeof(k->label), "%s%.3s...%s", LX_KEY_PREFIX, hex, hex + 61);
    explicit_bzero(rnd, sizeof(rnd));
    explicit_bzero(hex, sizeof(hex));
    return 0;
}

void store_job_key_create(lx_store_t *s, lx_store_job_t *job)
{
    if (!validate(job, true))
        return;
    lx_store_key_t k = {0};
    int64_t now = lx_clock_now_us() / 1000000;
    if (new_secret(job, &k) != 0) {
        explicit_bzero(job->secret, sizeof(job->secret));
        store_job_error(job, LX_ESTORE, "the OS random generator or SHA-256 failed");
        return;
    }
    k.created_at = now;
    if (apply(&k, &job->input) != 0 ||
        (k.created_by = strdup(job->actor[0] ? job->actor : "unknown")) == NULL) {
        lx_store_key_dispose(&k);
        explicit_bzero(job->secret, sizeof(job->secret));
        store_job_error(job, LX_ENOMEM, "out of memory");
        return;
    }
    int rc = store_begin(s);
    if (rc == SQLITE_OK)
        rc = write_key(s, &k, true);
    if (rc == SQLITE_OK)
        rc = audit(s, job, "create", k.hash, now);
    if (rc == SQLITE_OK)
        rc = store_commit(s);
    if (rc != SQLITE_OK) {
        explicit_bzero(job->secret, sizeof(job->secret));
        store_db_error(s, job, rc, "creating a key");
    } else {
        after_change(s, job, k.hash);
    }
    lx_store_key_dispose(&k);
}

/* Inside the caller's transaction: the live row of <hash> into <k>. SQLITE_ROW, SQLITE_DONE
 * (none) or an error. */
static int select_key(lx_store_t *s, const char *hash, lx_store_key_t *k)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db, "SELECT " KEY_COLS " FROM keys WHERE hash = ?1 AND deleted_at IS NULL", -1, &st,
        NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && key_from_row(st, k) != 0)
            rc = SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    return rc;
}

void store_job_key_update(lx_store_t *s, lx_store_job_t *job)
{
    if (!validate(job, false))
        return;
    lx_store_key_t k = {0};
    int64_t now = lx_clock_now_us() / 1000000;
    int rc = store_begin(s);
    if (rc == SQLITE_OK)
        rc = select_key(s, job->hash, &k);
    if (rc == SQLITE_DONE) {
        store_rollback(s);
        store_job_error(job, LX_ENOTFOUND, "no key with this hash");
        return;
    }
    if (rc == SQLITE_ROW) {
        rc = apply(&k, &job->input) == 0 ? SQLITE_OK : SQLITE_NOMEM;
        k.updated_at = now;
    }
    if (rc == SQLITE_OK)
        rc = write_key(s, &k, false);
    if (rc == SQLITE_OK)
        rc = audit(s, job, "update", k.hash, now);
    if (rc == SQLITE_OK)
        rc = store_commit(s);
    if (rc != SQLITE_OK)
        store_db_error(s, job, rc, "updating a key");
    else
        after_change(s, job, k.hash);
    lx_store_key_dispose(&k);
}

void store_job_key_delete(lx_store_t *s, lx_store_job_t *job)
{
    int64_t now = lx_clock_now_us() / 1000000;
    sqlite3_stmt *st = NULL;
    int rc = store_begin(s);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "UPDATE keys SET deleted_at = ?1, updated_at = ?1"
                                " WHERE hash = ?2 AND deleted_at IS NULL",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_text(st, 2, job->hash, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && sqlite3_changes(s->db) == 0) {
        store_rollback(s);
        store_job_error(job, LX_ENOTFOUND, "no key with this hash");
        return;
    }
    if (rc == SQLITE_OK)
        rc = audit(s, job, "delete", job->hash, now);
    if (rc == SQLITE_OK)
        rc = store_commit(s);
    if (rc != SQLITE_OK)
        store_db_error(s, job, rc, "deleting a key");
    else
        after_change(s, job, NULL);
}
