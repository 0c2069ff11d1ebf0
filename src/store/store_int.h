/*
 * store_int.h - the store's private state, shared by its files (store_db.c: the file and its
 * schema; store_thread.c: the thread, the queues, the batches; store_keys.c: the key table and
 * its jobs; store_query.c: generations, activity, views). Not for other layers.
 */
#ifndef LX_STORE_INT_H
#define LX_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "obs/log.h"
#include "store/store.h"

#define STORE_BATCH_MAX       10000   /* records per transaction */
#define STORE_RUNS_MAX        512     /* runs of one lane per transaction (store_run_t) */
#define STORE_RING            16384   /* slots of the record ring (a power of two) */
#define STORE_PENDING_WARN    100000  /* first loud warning about records held (~4 KB each) */
#define STORE_GEN_WAIT_US     1000000 /* GENERATION: how long an unknown id may wait */
#define STORE_PRUNE_BATCH     500     /* usage rows deleted per retention step in an idle tick */
#define STORE_PRUNE_BUSY      200     /* ... and in a tick that committed records */
#define STORE_CHECKPOINT_US   (30 * INT64_C(1000000))
#define STORE_BUSY_TIMEOUT_MS 2000

/* The prepared statements the thread reuses. */
enum store_stmt {
    ST_INSERT_GEN,
    ST_INSERT_BATCH,
    ST_INSERT_NAMED,
    ST_UPSERT_ACTIVITY,
    ST_UPSERT_KEY_USAGE,
    ST_DATA_VERSION,
    ST_PRUNE,
    ST_PRUNE_NAMED,
    ST_PRUNE_AHEAD,
    ST_PRUNE_ACTIVITY,
    ST_MAX_SEQ,
    ST_COUNT_,
};

/* Consecutive records of one transaction from one pool lane (r->pool): given back to the lane
 * with one push once committed, so the records are not walked again (commit_batch). */
typedef struct store_run {
    lx_record_t *first, *last;
    uint32_t n;
    uint16_t pool;
} store_run_t;

/* A row of the transaction being written by its one INSERT ... SELECT (store_batch.c). */
typedef struct store_batch_row {
    const lx_record_t *r;
    uint64_t seq; /* its number (the row's key) */
    bool named;   /* its id is not the canonical form of seq (kept in the JSON) */
} store_batch_row_t;

/* Room for a record's JSON: every string escaped at six bytes per byte, and the rest. */
#define STORE_RECORD_JSON_MAX (6 * sizeof(lx_record_t) + 2048)

/* A GENERATION job waiting for its record to arrive. */
typedef struct store_gen_wait {
    struct store_gen_wait *next;
    lx_store_job_t *job;
    int64_t deadline_us; /* monotonic */
} store_gen_wait_t;

struct lx_store {
    sqlite3 *db;
    char *path;
    int lock_fd; /* opts.exclusive: the flock'd descriptor of the file, else -1 */
    lx_store_opts_t opts;
    sqlite3_stmt *stmt[ST_COUNT_];

    /* the lock-free inboxes (Treiber stacks: producers CAS the head, the thread takes all);
     * records go on rec_in only when the ring below is full */
    _Atomic(lx_record_t *) rec_in;
    _Atomic(lx_store_job_t *) job_in;

    /* the record ring: a producer reserves the next slot (a CAS on ring_tail, so slots are in
     * arrival order) and fills it; the thread takes the filled slots from ring_head on, in
     * order, reading an array instead of walking a list of records that left the cache long
     * ago (store_thread.c: store_drain_records) */
    _Atomic(lx_record_t *) *ring; /* STORE_RING slots, NULL when free */
    _Alignas(64) _Atomic uint64_t ring_tail;
    _Alignas(64) _Atomic uint64_t ring_head; /* slots before it are free (the thread's) */

    /* committed records going back to their workers (store.h: lx_record_pool_t); one cache
     * line per lane: the store thread pushes, the worker takes all */
    struct store_lane {
        _Alignas(64) _Atomic(lx_record_t *) head;
        _Atomic uint64_t taken; /* the worker's lx_record_pool_t.taken at its last take */
        uint64_t given;         /* records pushed to the lane (the store thread's) */
    } lanes[LX_STORE_POOL_LANES];

    /* the thread */
    pthread_t thread;
    bool started, stopped;
    pthread_mutex_t mu; /* guards wake and stop for the condition variable only */
    pthread_cond_t cv;
    bool wake, stop;

    /* the thread's own state (or the caller's, before start) */
    lx_record_t *pend_head, *pend_tail; /* records received, not yet committed (FIFO) */
    size_t n_pend, pend_warn_at;
    store_run_t runs[STORE_RUNS_MAX]; /* the transaction being committed (commit_batch) */
    store_batch_row_t *batch;         /* ... its rows (STORE_BATCH_MAX), read by lx_batch */
    size_t n_batch;
    store_gen_wait_t *gen_wait;
    int64_t data_version;
    unsigned reload_fails; /* key reloads failed in a row (logged at 1, 2, 4, ...) */
    int64_t next_prune_us, last_checkpoint_us;
    uint64_t seq_floor;  /* the highest tick in the file at open (lx_store_seq_floor) */
    uint64_t store_tick; /* the store's own lane (records whose id is not canonical) */

    /* the key table: every stored key that is not deleted, each with a ledger reference */
    lx_store_key_t *keys;
    size_t n_keys;
    uint64_t ks_version;

    pthread_mutex_t snap_mu; /* the published snapshot, for lx_store_keys() */
    lx_keyset_t *snap;

    pthread_mutex_t health_mu;
    bool healthy;
    char why[200];
};

/* store_db.c */
int64_t store_hash63(const char *s, size_t len); /* FNV-1a, top bit cleared (upstream_h) */
/* The schema of <version> (1 .. LX_STORE_SCHEMA_VERSION) written into the empty database <db>
 * by the released migration steps, as a gateway of that version made it (its version in
 * `meta`): for a tool or a test that needs a file of an old version (bench/store/old_store.c).
 * An SQLite code. */
int store_schema_create(sqlite3 *db, int version);
int store_db_open(lx_store_t *s, char *err, size_t errcap);
void store_db_close(lx_store_t *s);
int store_exec(lx_store_t *s, const char *sql);
int store_begin(lx_store_t *s);
int store_commit(lx_store_t *s);
void store_rollback(lx_store_t *s);
int64_t store_mono_us(void);

/* store_thread.c */
void store_set_health(lx_store_t *s, int rc, const char *what);
void store_drain_records(lx_store_t *s);
int store_commit_pending(lx_store_t *s);
void store_flush_final(lx_store_t *s);
void store_record_done(lx_store_t *s, lx_record_t *r);      /* committed: to its pool, or freed */
void store_run_done(lx_store_t *s, const store_run_t *run); /* the same for a run */
void store_job_error(lx_store_job_t *job, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int store_db_error(lx_store_t *s, lx_store_job_t *job, int rc, const char *what);

size_t store_record_json(const lx_record_t *r, bool named, char *out); /* STORE_RECORD_JSON_MAX */

/* store_batch.c */
int store_batch_register(lx_store_t *s); /* the virtual table lx_batch on s->db */

/* store_keys.c */
int store_keys_load(lx_store_t *s);
void store_keys_free(lx_store_t *s);
void store_keys_publish(lx_store_t *s);
lx_ledger_t *store_keys_ledger(lx_store_t *s, const char *hash);
void store_hex_digest(const char *hex, uint8_t out[32]);
void store_job_key_create(lx_store_t *s, lx_store_job_t *job);
void store_job_key_update(lx_store_t *s, lx_store_job_t *job);
void store_job_key_delete(lx_store_t *s, lx_store_job_t *job);

/* store_query.c */
/* Runs <job>; false when a GENERATION lookup was deferred (<can_defer>: on the thread) and
 * store_gen_tick() will finish it and call its done(). */
bool store_run_job(lx_store_t *s, lx_store_job_t *job, bool can_defer);
void store_job_key_list(lx_store_t *s, lx_store_job_t *job);
void store_job_key_get(lx_store_t *s, lx_store_job_t *job);
int store_key_view(lx_store_t *s, const char *hash, lx_key_view_t *out); /* 0 / ENOTFOUND */
void store_usage_read(lx_store_t *s, const char *hash, int64_t now_us,
                      int64_t usage[LX_PERIOD_COUNT]);
bool store_gen_find(lx_store_t *s, lx_store_job_t *job, bool can_defer);
void store_job_activity(lx_store_t *s, lx_store_job_t *job);
void store_poll_changes(lx_store_t *s);
void store_gen_tick(lx_store_t *s, bool final);

#endif
