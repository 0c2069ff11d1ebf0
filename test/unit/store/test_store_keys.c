/* test_store_keys.c - key jobs: create, list, get, update, delete, their audit rows, no
 * secret in the file, snapshots published on every change, including another process's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <mbedtls/sha256.h>

#include "core/clock.h"
#include "core/status.h"
#include "store_test.h"

/* the latest snapshot on_keys delivered */
static pthread_mutex_t snap_mu = PTHREAD_MUTEX_INITIALIZER;
static lx_keyset_t *last_snap;
static atomic_int n_published;

static void on_keys(lx_keyset_t *ks, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&snap_mu);
    lx_keyset_t *old = last_snap;
    last_snap = ks;
    pthread_mutex_unlock(&snap_mu);
    lx_keyset_unref(old);
    atomic_fetch_add(&n_published, 1);
}

static lx_keyset_t *snap_ref(void)
{
    pthread_mutex_lock(&snap_mu);
    lx_keyset_t *ks = last_snap ? lx_keyset_ref(last_snap) : NULL;
    pthread_mutex_unlock(&snap_mu);
    return ks;
}

static void snap_clear(void)
{
    pthread_mutex_lock(&snap_mu);
    lx_keyset_unref(last_snap);
    last_snap = NULL;
    pthread_mutex_unlock(&snap_mu);
}

static lx_store_t *open_store(const char *path, bool run)
{
    lx_store_opts_t o = {.path = path, .on_keys = run ? on_keys : NULL};
    lx_store_t *s = NULL;
    char err[256] = "";
    if (lx_store_open(&o, &s, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    if (run)
        assert_int_equal(lx_store_start(s), 0);
    return s;
}

static void run(lx_store_t *s, lx_store_job_t *job, bool started)
{
    if (started)
        assert_int_equal(t_submit_wait(s, job), 0);
    else
        lx_store_run(s, job);
}

static void create(lx_store_t *s, bool started, const char *name, char secret[80], char hash[65])
{
    lx_store_job_t job = {.kind = LX_JOB_KEY_CREATE};
    snprintf(job.actor, sizeof(job.actor), "admin");
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_LIMIT;
    job.input.name = strdup(name);
    job.input.has_limit = true;
    job.input.limit = 1000000;
    run(s, &job, started);
    assert_int_equal(job.status, 0);
    assert_int_equal(job.n_keys, 1);
    snprintf(secret, 80, "%s", job.secret);
    snprintf(hash, 65, "%s", job.keys[0].key.hash);
    lx_store_job_dispose(&job);
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void check_secret(const char *secret, const char *hash)
{
    assert_int_equal(strlen(secret), LX_KEY_SECRET_LEN);
    assert_memory_equal(secret, LX_KEY_PREFIX, strlen(LX_KEY_PREFIX));
    uint8_t d[32];
    char hex[65];
    mbedtls_sha256_ret((const unsigned char *)secret, strlen(secret), d, 0);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(hex, hash);
}

static void test_crud_and_audit(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_store(t.db, false);
    char secret[80], hash[65], secret2[80], hash2[65];
    create(s, false, "first", secret, hash);
    create(s, false, "second", secret2, hash2);
    check_secret(secret, hash);
    assert_string_not_equal(secret, secret2);

    lx_store_job_t job = {.kind = LX_JOB_KEY_UPDATE};
    snprintf(job.actor, sizeof(job.actor), "ops");
    snprintf(job.hash, sizeof(job.hash), "%s", hash);
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_DISABLED | LX_KEY_F_RATE_LIMIT;
    job.input.name = strdup("renamed");
    job.input.disabled = true;
    job.input.rpm = 60;
    run(s, &job, false);
    assert_int_equal(job.status, 0);
    assert_string_equal(job.keys[0].key.name, "renamed");
    assert_true(job.keys[0].key.disabled);
    assert_int_equal(job.keys[0].key.limits.rpm, 60);
    assert_int_equal(job.keys[0].key.limits.limit, 1000000); /* untouched */
    assert_true(job.keys[0].key.updated_at > 0);
    lx_store_job_dispose(&job);

    /* list: the disabled key only on request, in creation order */
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_LIST;
    run(s, &job, false);
    assert_int_equal(job.n_keys, 1);
    assert_string_equal(job.keys[0].key.name, "second");
    lx_store_job_dispose(&job);
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_LIST;
    job.include_disabled = true;
    run(s, &job, false);
    assert_int_equal(job.n_keys, 2);
    assert_string_equal(job.keys[0].key.name, "renamed");
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_DELETE;
    snprintf(job.actor, sizeof(job.actor), "ops");
    snprintf(job.hash, sizeof(job.hash), "%s", hash2);
    run(s, &job, false);
    assert_int_equal(job.status, 0);
    lx_store_job_dispose(&job);
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_GET;
    snprintf(job.hash, sizeof(job.hash), "%s", hash2);
    run(s, &job, false);
    assert_int_equal(job.status, LX_ENOTFOUND);
    assert_true(job.message[0] != '\0');
    lx_store_job_dispose(&job);
    lx_store_close(s);

    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM audit"), 4);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM audit WHERE action = 'update' AND"
                                       " actor = 'ops' AND json_extract(details, '$.name') ="
                                       " 'renamed' AND json_extract(details, '$.rate_limit.rpm')"
                                       " = 60 AND json_extract(details, '$.limit_micros') IS NULL"),
                     1);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM audit WHERE action = 'create' AND"
                                       " json_extract(details, '$.limit_micros') = 1000000"),
                     2);
    /* the plaintext keys are nowhere in the file, nor their random part; the hashes are */
    const char *files[] = {t.db, NULL, NULL};
    char wal[160], shm[160];
    snprintf(wal, sizeof(wal), "%s-wal", t.db);
    snprintf(shm, sizeof(shm), "%s-shm", t.db);
    files[1] = wal;
    files[2] = shm;
    assert_true(file_has(t.db, hash));
    for (int i = 0; i < 3; i++) {
        assert_false(file_has(files[i], secret));
        assert_false(file_has(files[i], secret + strlen(LX_KEY_PREFIX)));
        assert_false(file_has(files[i], secret2 + strlen(LX_KEY_PREFIX)));
    }
    tdir_remove(&t);
}

static void test_bad_input(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_store(t.db, false);
    lx_store_job_t job = {.kind = LX_JOB_KEY_CREATE};
    run(s, &job, false); /* no name */
    assert_int_equal(job.status, LX_EINVAL);
    assert_string_equal(job.secret, "");
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_CREATE;
    job.input.set = LX_KEY_F_NAME;
    job.input.name = malloc(10 << 20);
    memset(job.input.name, 'x', (10 << 20) - 1);
    job.input.name[(10 << 20) - 1] = '\0';
    run(s, &job, false);
    assert_int_equal(job.status, LX_EINVAL);
    assert_non_null(strstr(job.message, "name"));
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_CREATE;
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_LIMIT;
    job.input.name = strdup("n");
    job.input.has_limit = true;
    job.input.limit = -1;
    run(s, &job, false);
    assert_int_equal(job.status, LX_EINVAL);
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_CREATE;
    job.input.set = LX_KEY_F_NAME | LX_KEY_F_MODELS;
    job.input.name = strdup("n");
    job.input.models = calloc(1, sizeof(char *));
    job.input.models[0] = strdup("bad\nmodel");
    job.input.n_models = 1;
    run(s, &job, false);
    assert_int_equal(job.status, LX_EINVAL);
    lx_store_job_dispose(&job);

    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_UPDATE;
    snprintf(job.hash, sizeof(job.hash), "%064d", 0);
    job.input.set = LX_KEY_F_DISABLED;
    run(s, &job, false);
    assert_int_equal(job.status, LX_ENOTFOUND);
    lx_store_job_dispose(&job);
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_DELETE;
    snprintf(job.hash, sizeof(job.hash), "%064d", 0);
    run(s, &job, false);
    assert_int_equal(job.status, LX_ENOTFOUND);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM keys"), 0);
    assert_int_equal(t_query_i64(t.db, "SELECT count(*) FROM audit"), 0);
    tdir_remove(&t);
}

static const lx_store_key_t *find(lx_keyset_t *ks, const char *hash)
{
    for (size_t i = 0; ks != NULL && i < ks->n_keys; i++)
        if (strcmp(ks->keys[i].hash, hash) == 0)
            return &ks->keys[i];
    return NULL;
}

static void test_snapshot_on_change(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_store(t.db, true);
    lx_keyset_t *ks = snap_ref();
    assert_non_null(ks); /* the first snapshot, published by start */
    assert_int_equal(ks->n_keys, 0);
    lx_keyset_unref(ks);
    char secret[80], hash[65];
    create(s, true, "live", secret, hash);
    ks = snap_ref(); /* published before the job's done() */
    const lx_store_key_t *k = find(ks, hash);
    assert_non_null(k);
    assert_non_null(k->ledger);
    uint8_t d[32];
    mbedtls_sha256_ret((const unsigned char *)secret, strlen(secret), d, 0);
    assert_ptr_equal(lx_keyset_find(ks, d), k);

    /* a request admitted before the delete holds the ledger */
    lx_admit_t a = {.now_us = lx_clock_now_us(), .reserve = 400000, .tokens = 10};
    lx_hold_t hold;
    assert_int_equal(lx_store_admit(s, k, &a, &hold, NULL, NULL), 0);
    assert_int_equal(a.verdict, LX_ADMIT_OK);
    lx_keyset_unref(ks);

    lx_store_job_t job = {.kind = LX_JOB_KEY_DELETE};
    snprintf(job.hash, sizeof(job.hash), "%s", hash);
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.status, 0);
    lx_store_job_dispose(&job);
    ks = snap_ref();
    assert_null(find(ks, hash));
    lx_keyset_unref(ks);
    lx_store_settle(s, &hold, 300000, 10, lx_clock_now_us()); /* still valid */
    assert_null(hold.ledger);

    ks = lx_store_keys(s);
    assert_non_null(ks);
    assert_null(find(ks, hash));
    lx_keyset_unref(ks);
    lx_store_close(s);
    snap_clear();
    tdir_remove(&t);
}

static void test_usage_live_and_kept(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *s = open_store(t.db, true);
    char secret[80], hash[65];
    create(s, true, "spender", secret, hash);
    lx_keyset_t *ks = snap_ref();
    const lx_store_key_t *k = find(ks, hash);
    assert_non_null(k);
    lx_admit_t a = {.now_us = lx_clock_now_us(), .reserve = 1000, .tokens = 1};
    lx_hold_t hold;
    lx_store_admit(s, k, &a, &hold, NULL, NULL);
    lx_store_settle(s, &hold, 250, 1, lx_clock_now_us());
    lx_store_record(s, t_record("gen-spend", hash, lx_clock_now_us(), 250));
    lx_keyset_unref(ks);
    lx_store_job_t job = {.kind = LX_JOB_KEY_GET};
    snprintf(job.hash, sizeof(job.hash), "%s", hash);
    assert_int_equal(t_submit_wait(s, &job), 0);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_TOTAL], 250); /* live, from the ledger */
    assert_int_equal(job.keys[0].limit_remaining, 1000000 - 250);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    snap_clear();
    /* reopened: the ledger starts from the committed counters */
    s = open_store(t.db, false);
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_GET;
    snprintf(job.hash, sizeof(job.hash), "%s", hash);
    lx_store_run(s, &job);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_TOTAL], 250);
    assert_int_equal(job.keys[0].usage[LX_PERIOD_DAY], 250);
    assert_int_equal(job.keys[0].limit_remaining, 1000000 - 250);
    lx_store_job_dispose(&job);
    lx_store_close(s);
    tdir_remove(&t);
}

static void test_other_process_change(void **state)
{
    tdir_t t;
    tdir_make(&t);
    lx_store_t *gw = open_store(t.db, true);
    char secret[80], hash[65];
    create(gw, true, "from the gateway", secret, hash);
    lx_keyset_t *ks = snap_ref();
    lx_ledger_t *ledger = find(ks, hash)->ledger;
    lx_keyset_unref(ks);

    /* `llmux keys` beside the running gateway: its own connection */
    lx_store_t *cli = open_store(t.db, false);
    char secret2[80], hash2[65];
    int before = atomic_load(&n_published);
    create(cli, false, "from the cli", secret2, hash2);
    lx_store_job_t job = {.kind = LX_JOB_KEY_UPDATE};
    snprintf(job.hash, sizeof(job.hash), "%s", hash);
    job.input.set = LX_KEY_F_LIMIT;
    job.input.has_limit = true;
    job.input.limit = 5;
    lx_store_run(cli, &job);
    assert_int_equal(job.status, 0);
    lx_store_job_dispose(&job);
    lx_store_close(cli);

    int64_t t0 = t_mono_ms();
    const lx_store_key_t *k1 = NULL, *k2 = NULL;
    for (;;) {
        ks = snap_ref();
        k1 = find(ks, hash);
        k2 = find(ks, hash2);
        if ((k2 != NULL && k1 != NULL && k1->limits.limit == 5) || t_mono_ms() - t0 > 5000)
            break;
        lx_keyset_unref(ks);
        t_sleep_ms(5);
    }
    print_message("another connection's change published after %lld ms\n",
                  (long long)(t_mono_ms() - t0));
    assert_true(atomic_load(&n_published) > before);
    assert_non_null(k2);
    assert_non_null(k1);
    assert_int_equal(k1->limits.limit, 5);
    assert_ptr_equal(k1->ledger, ledger); /* the same counters, new limits */
    assert_int_equal(lx_ledger_remaining(k1->ledger, lx_clock_now_us()), 5);
    lx_keyset_unref(ks);
    lx_store_close(gw);
    snap_clear();
    tdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_and_audit),       cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_snapshot_on_change),   cmocka_unit_test(test_usage_live_and_kept),
        cmocka_unit_test(test_other_process_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
