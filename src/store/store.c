/*
 * store.c - the store's life (open, start, stop, close) and the request path's calls: admit
 * and settle on a key's ledger, records and jobs pushed onto lock-free stacks.
 */
#include "store/store_int.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define DEFAULT_COMMIT_MS   50
#define DEFAULT_RETENTION_S (90 * 86400)

static bool is_memory(const char *path)
{
    return strcmp(path, ":memory:") == 0 || strncmp(path, "file::memory:", 13) == 0;
}

static int store_new(const lx_store_opts_t *opts, lx_store_t **out)
{
    lx_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(opts->path)) == NULL ||
        (s->ring = calloc(STORE_RING, sizeof(*s->ring))) == NULL ||
        (s->batch = calloc(STORE_BATCH_MAX, sizeof(*s->batch))) == NULL) {
        if (s != NULL) {
            free(s->path);
            free(s->ring);
        }
        free(s);
        return LX_ENOMEM;
    }
    for (size_t i = 0; i < STORE_RING; i++)
        atomic_init(&s->ring[i], NULL);
    atomic_init(&s->ring_tail, 0);
    atomic_init(&s->ring_head, 0);
    s->lock_fd = -1;
    s->opts = *opts;
    s->opts.path = s->path;
    if (s->opts.commit_interval_ms == 0)
        s->opts.commit_interval_ms = DEFAULT_COMMIT_MS;
    if (s->opts.retention_s == 0)
        s->opts.retention_s = DEFAULT_RETENTION_S;
    atomic_init(&s->rec_in, NULL);
    atomic_init(&s->job_in, NULL);
    for (size_t i = 0; i < LX_STORE_POOL_LANES; i++) {
        atomic_init(&s->lanes[i].head, NULL);
        atomic_init(&s->lanes[i].taken, 0);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->snap_mu, NULL);
    pthread_mutex_init(&s->health_mu, NULL);
    s->healthy = true;
    s->pend_warn_at = STORE_PENDING_WARN;
    *out = s;
    return 0;
}

int lx_store_open(const lx_store_opts_t *opts, lx_store_t **out, char *err, size_t errcap)
{
    *out = NULL;
    if (opts->path == NULL || opts->path[0] == '\0') {
        snprintf(err, errcap, "store.path is empty");
        return LX_EINVAL;
    }
    if (!opts->allow_memory && is_memory(opts->path)) {
        snprintf(err, errcap, "%s: an in-memory store keeps nothing: give store.path a file",
                 opts->path);
        return LX_EINVAL;
    }
    lx_store_t *s;
    int rc = store_new(opts, &s);
    if (rc != 0) {
        snprintf(err, errcap, "%s: out of memory", opts->path);
        return rc;
    }
    if ((rc = store_db_open(s, err, errcap)) != 0) {
        lx_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

lx_keyset_t *lx_store_keys(lx_store_t *s)
{
    pthread_mutex_lock(&s->snap_mu);
    lx_keyset_t *ks = s->snap ? lx_keyset_ref(s->snap) : NULL;
    pthread_mutex_unlock(&s->snap_mu);
    return ks;
}

uint64_t lx_store_seq_floor(const lx_store_t *s)
{
    return s->seq_floor; /* (set at open, before any worker or the thread runs) */
}

bool lx_store_healthy(lx_store_t *s, char *why, size_t cap)
{
    pthread_mutex_lock(&s->health_mu);
    bool ok = s->healthy;
    if (!ok && why != NULL && cap > 0)
        snprintf(why, cap, "%s", s->why);
    pthread_mutex_unlock(&s->health_mu);
    return ok;
}

int lx_store_admit(lx_store_t *s, const lx_store_key_t *key, lx_admit_t *a, lx_hold_t *hold,
                   void (*cb)(void *arg), void *arg)
{
    (void)s;
    (void)cb;
    (void)arg;
    if (key->ledger == NULL) {
        memset(hold, 0, sizeof(*hold));
        memset(&a->rl, 0, sizeof(a->rl));
        a->verdict = LX_ADMIT_OK;
        a->retry_after_ms = 0;
        a->limit_remaining = -1;
        return 0;
    }
    lx_ledger_admit(key->ledger, a, hold);
    return 0;
}

void lx_store_settle(lx_store_t *s, lx_hold_t *hold, int64_t cost, uint32_t tokens, int64_t now_us)
{
    (void)s;
    lx_ledger_settle(hold, cost, tokens, now_us);
}

void lx_store_record(lx_store_t *s, lx_record_t *rec)
{
    /* a slot of the ring, while one is free: the thread clears a slot before it publishes the
     * head past it (release), so a slot below head + STORE_RING is free once reserved */
    uint64_t t = atomic_load_explicit(&s->ring_tail, memory_order_relaxed);
    while (t - atomic_load_explicit(&s->ring_head, memory_order_acquire) < STORE_RING) {
        if (atomic_compare_exchange_weak_explicit(&s->ring_tail, &t, t + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_store_explicit(&s->ring[t & (STORE_RING - 1)], rec, memory_order_release);
            return;
        }
    }
    /* the ring is full (the store is behind): the stack */
    lx_record_t *head = atomic_load_explicit(&s->rec_in, memory_order_relaxed);
    do
        rec->next = head;
    while (!atomic_compare_exchange_weak_explicit(&s->rec_in, &head, rec, memory_order_release,
                                                  memory_order_relaxed));
}

lx_record_t *lx_store_record_get(lx_store_t *s, lx_record_pool_t *p)
{
    if (p->lane >= LX_STORE_POOL_LANES)
        return lx_record_new();
    struct store_lane *l = &s->lanes[p->lane];
    lx_record_t *r = p->free;
    if (r == NULL) {
        /* (what this worker took so far, so that the store thread knows what the lane holds) */
        atomic_store_explicit(&l->taken, p->taken, memory_order_relaxed);
        r = atomic_exchange_explicit(&l->head, NULL, memory_order_acquire);
    }
    if (r == NULL) { /* (a new one is not counted in taken: it never was in the lane) */
        if ((r = lx_record_new()) != NULL)
            r->pool = (uint16_t)(p->lane + 1);
        return r;
    }
    p->free = r->next;
    p->taken++;
    lx_record_clear(r);
    r->pool = (uint16_t)(p->lane + 1);
    return r;
}

void lx_store_record_put(lx_record_pool_t *p, lx_record_t *rec)
{
    if (rec == NULL)
        return;
    if (rec->pool == 0 || rec->pool - 1u != p->lane) {
        free(rec);
        return;
    }
    rec->next = p->free;
    p->free = rec;
    p->taken--; /* (taken again later, it counts once; a new one counts 0) */
}

void lx_record_pool_dispose(lx_record_pool_t *p)
{
    while (p->free != NULL) {
        lx_record_t *r = p->free;
        p->free = r->next;
        free(r);
    }
}

/* On the store thread: a committed record goes back to its worker's lane unless the lane
 * holds LX_STORE_POOL_MAX already (what the worker has not taken back, counted from its last
 * take: never fewer than the lane holds). */
void store_record_done(lx_store_t *s, lx_record_t *r)
{
    unsigned lane = r->pool - 1u;
    if (r->pool == 0 || lane >= LX_STORE_POOL_LANES) {
        free(r);
        return;
    }
    struct store_lane *l = &s->lanes[lane];
    if (l->given - atomic_load_explicit(&l->taken, memory_order_relaxed) >= LX_STORE_POOL_MAX) {
        free(r);
        return;
    }
    l->given++;
    lx_record_t *head = atomic_load_explicit(&l->head, memory_order_relaxed);
    do
        r->next = head;
    while (!atomic_compare_exchange_weak_explicit(&l->head, &head, r, memory_order_release,
                                                  memory_order_relaxed));
}

/* On the store thread: a committed run of one lane's records (linked first .. last by next)
 * goes back with one push when the lane has room for all of it; otherwise (or for records of
 * no lane) record by record, as store_record_done decides. Touches only the run's last record:
 * the others are not read again (they left the cache during the commit). */
void store_run_done(lx_store_t *s, const store_run_t *run)
{
    unsigned lane = run->pool - 1u;
    struct store_lane *l = &s->lanes[lane < LX_STORE_POOL_LANES ? lane : 0];
    if (run->pool == 0 || lane >= LX_STORE_POOL_LANES ||
        l->given - atomic_load_explicit(&l->taken, memory_order_relaxed) + run->n >
            LX_STORE_POOL_MAX) {
        lx_record_t *r = run->first;
        for (uint32_t i = 0; i < run->n; i++) {
            lx_record_t *next = r->next;
            store_record_done(s, r);
            r = next;
        }
        return;
    }
    l->given += run->n;
    lx_record_t *head = atomic_load_explicit(&l->head, memory_order_relaxed);
    do
        run->last->next = head;
    while (!atomic_compare_exchange_weak_explicit(&l->head, &head, run->first, memory_order_release,
                                                  memory_order_relaxed));
}

void lx_store_submit(lx_store_t *s, lx_store_job_t *job)
{
    lx_store_job_t *head = atomic_load_explicit(&s->job_in, memory_order_relaxed);
    do
        job->next = head;
    while (!atomic_compare_exchange_weak_explicit(&s->job_in, &head, job, memory_order_release,
                                                  memory_order_relaxed));
    /* a job is not the per-request path: waking the thread may take its mutex */
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void lx_store_run(lx_store_t *s, lx_store_job_t *job)
{
    job->next = NULL;
    (void)store_run_job(s, job, false);
}

void lx_key_input_dispose(lx_key_input_t *in)
{
    free(in->name);
    for (size_t i = 0; i < in->n_models; i++)
        free(in->models[i]);
    free(in->models);
    free(in->provider);
    in->name = NULL;
    in->models = NULL;
    in->n_models = 0;
    in->provider = NULL;
}

void lx_store_job_dispose(lx_store_job_t *job)
{
    lx_key_input_dispose(&job->input);
    for (size_t i = 0; i < job->n_keys; i++)
        lx_store_key_dispose(&job->keys[i].key);
    free(job->keys);
    job->keys = NULL;
    job->n_keys = 0;
    free(job->record);
    job->record = NULL;
    free(job->rows);
    job->rows = NULL;
    job->n_rows = 0;
    explicit_bzero(job->secret, sizeof(job->secret));
}

void lx_store_close(lx_store_t *s)
{
    if (s == NULL)
        return;
    lx_store_stop(s);
    if (s->stmt[ST_INSERT_GEN] != NULL)
        store_flush_final(s);
    store_keys_free(s);
    for (size_t i = 0; i < LX_STORE_POOL_LANES; i++) {
        lx_record_t *r = atomic_load(&s->lanes[i].head);
        while (r != NULL) {
            lx_record_t *next = r->next;
            free(r);
            r = next;
        }
    }
    lx_keyset_unref(s->snap);
    free(s->ring);
    free(s->batch);
    store_db_close(s);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->snap_mu);
    pthread_mutex_destroy(&s->health_mu);
    free(s->path);
    free(s);
}
