/*
 * store.h - the store: keys, their counters and usage records, behind one interface the
 * request path calls without ever waiting on a database.
 *
 *   request path (worker loops)           store thread                      SQLite file (WAL)
 *   lx_store_admit / lx_store_settle ---> (in memory: ledgers, lock-free)
 *   lx_store_record ---------------------> queue (lock-free MPSC) --batch--> usage, key_usage
 *   lx_store_submit(job) ----------------> queue --> job runs --> job->done() on the store thread
 *   <-- on_keys(snapshot) after every key change (API, command line, another process)
 *
 * Today's backend is the embedded one: ledgers in this process, SQLite for what must outlive
 * it. A shared backend for many replicas (Redis) keeps these signatures: admission may then
 * complete later (lx_store_admit returns LX_EINPROGRESS and calls back on the worker's loop),
 * which the request path already handles. store/README.md maps each call onto Redis.
 */
#ifndef LX_STORE_H
#define LX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/keyset.h"
#include "store/ledger.h"
#include "store/period.h"
#include "store/record.h"

#define LX_STORE_SCHEMA_VERSION 4 /* the schema this binary writes; migrations lead up to it */
#define LX_STORE_EINPROGRESS    1 /* lx_store_admit: the answer comes through the callback */

typedef struct lx_store lx_store_t;

typedef struct lx_store_opts {
    const char *path;            /* the database file; ":memory:" only with allow_memory */
    bool allow_memory;           /* tests */
    uint64_t commit_interval_ms; /* records are committed at least this often (default 50) */
    uint64_t retention_s;        /* records older than this are pruned (default 90 days) */
    /* A gateway's store: the file is locked (flock) for this process, so a second gateway on
     * it is refused at open (two would hand out the same generation numbers: record.h). */
    bool exclusive;
    /* `llmux keys`: an existing file of an older schema is not migrated (a gateway of the
     * older binary may be running on it); a new file is made at the current schema. */
    bool no_migrate;
    /* Called on the store thread with a new snapshot of the stored keys (a reference the
     * callee now owns) after start and after every change; the first call is made by
     * lx_store_start on its caller's thread, before the store thread runs. */
    void (*on_keys)(lx_keyset_t *ks, void *arg);
    void *arg;
} lx_store_opts_t;

/*
 * Opens (creating it when missing) the database at opts->path, applies the migrations up to
 * LX_STORE_SCHEMA_VERSION in one transaction, loads the keys and their usage counters. No
 * thread yet. Errors name the file: locked by another writer, not a database (corrupt), a
 * schema newer than this binary (LX_ESCHEMA), unwritable directory. 0 with *out, or an error
 * with a one-line message in <err>.
 */
int lx_store_open(const lx_store_opts_t *opts, lx_store_t **out, char *err, size_t errcap);

/* Starts the store thread (batches, key publication, retention, polling for changes other
 * processes commit, e.g. `llmux keys`). Publishes the first snapshot before returning. */
int lx_store_start(lx_store_t *s);

/* Commits everything queued, runs the jobs still queued, stops the thread. Idempotent. */
void lx_store_stop(lx_store_t *s);

/* Stops if needed and frees. NULL is a no-op. */
void lx_store_close(lx_store_t *s);

/* The current snapshot (a reference), for a thread that starts after lx_store_start. */
lx_keyset_t *lx_store_keys(lx_store_t *s);

/* The schema version of the file at <path> without changing it (`llmux -t`): 0 with *version
 * (0 for a file that does not exist yet), or an error with a message in <err>. */
/* The highest generation tick (record.h) in the file when it was opened: each worker starts
 * its lane above it (lx_record_seq_next's *last_tick). */
uint64_t lx_store_seq_floor(const lx_store_t *s);

int lx_store_schema_version(const char *path, int *version, char *err, size_t errcap);

/* Whether the last write succeeded, and if not why (a disk full, a locked file): /readyz.
 * Thread-safe. Records are kept in memory and retried while it fails. */
bool lx_store_healthy(lx_store_t *s, char *why, size_t cap);

/* ---- the request path (any worker thread; never blocks) ---- */

/* Admits a request of <key> (its ledger): lx_ledger_admit. Returns 0 (decided, a->verdict set,
 * *hold filled), or LX_STORE_EINPROGRESS when <cb>(<arg>) will be called later on the calling
 * worker's loop (never with the embedded backend). */
int lx_store_admit(lx_store_t *s, const lx_store_key_t *key, lx_admit_t *a, lx_hold_t *hold,
                   void (*cb)(void *arg), void *arg);

/* Settles a hold (lx_ledger_settle). */
void lx_store_settle(lx_store_t *s, lx_hold_t *hold, int64_t cost, uint32_t tokens, int64_t now_us);

/* Queues a finished request's record; the store owns it from here (malloc'd with
 * lx_record_new). Lock-free; the store thread picks it up at its next tick. Its cost is added
 * to the key's usage counters in the same transaction as the row. */
void lx_store_record(lx_store_t *s, lx_record_t *rec);
/* Zeroed but for attempts[]: write the first n_attempts whole. NULL when out of memory. */
lx_record_t *lx_record_new(void);

/*
 * A worker's records come back to it. The store thread hands each committed record that came
 * from a pool to its lane (a lock-free stack per lane; the worker takes the whole stack with
 * one exchange when its own list is empty), so records are allocated, reused and freed by the
 * thread that writes them: none is freed into another thread's heap. (Freed by the store
 * thread, a commit's thousand records went back to the worker's malloc arena at once, glibc
 * trimmed its top with madvise, and the worker faulted the pages in again: system time on
 * both threads.) A lane holds at most LX_STORE_POOL_MAX records the worker has not taken
 * back; past that the store thread frees them. One pool per worker thread, used by it only.
 */
#define LX_STORE_POOL_LANES 256 /* lanes 0..255, the workers (record.h) */
#define LX_STORE_POOL_MAX   4096
typedef struct lx_record_pool {
    lx_record_t *free; /* records taken back, not yet handed out again */
    uint64_t taken;    /* records handed out from the lane's returns (less those put back) */
    unsigned lane;     /* the worker's lane; >= LX_STORE_POOL_LANES: no pool */
} lx_record_pool_t;
/* As lx_record_new, from <p> when it has one. */
lx_record_t *lx_store_record_get(lx_store_t *s, lx_record_pool_t *p);
/* A record of <p> that is not queued (the request ended unrecorded) goes back to it. */
void lx_store_record_put(lx_record_pool_t *p, lx_record_t *rec);
/* Frees the records <p> holds (the worker's end; the lane's stack is freed by lx_store_close). */
void lx_record_pool_dispose(lx_record_pool_t *p);

/* ---- jobs: key management and queries, run on the store thread ---- */

enum lx_store_job_kind {
    LX_JOB_KEY_LIST,   /* in: include_disabled, offset (pages of 100); out: keys */
    LX_JOB_KEY_GET,    /* in: hash (a stored key; with config_key, a configuration key's
                        * usage: keys[0] with from_config and no name); out: keys[0] */
    LX_JOB_KEY_CREATE, /* in: input, actor; out: keys[0], secret */
    LX_JOB_KEY_UPDATE, /* in: hash, input, actor; out: keys[0] */
    LX_JOB_KEY_DELETE, /* in: hash, actor */
    LX_JOB_GENERATION, /* in: gen_id; out: record (from the queue while not yet committed) */
    LX_JOB_ACTIVITY,   /* in: key_hash ("" for all keys), date (-1: the last 30 days); out:
                        * rows */
};

/* The fields of a key a create or an update sets (LX_KEY_F_* in <set>). */
enum {
    LX_KEY_F_NAME = 1u << 0,
    LX_KEY_F_DISABLED = 1u << 1,
    LX_KEY_F_LIMIT = 1u << 2, /* limit_null or limit */
    LX_KEY_F_LIMIT_RESET = 1u << 3,
    LX_KEY_F_EXPIRES = 1u << 4,
    LX_KEY_F_MODELS = 1u << 5,
    LX_KEY_F_PROVIDER = 1u << 6,
    LX_KEY_F_RATE_LIMIT = 1u << 7,
    LX_KEY_F_PRIORITY = 1u << 8,
};

typedef struct lx_key_input {
    unsigned set;
    char *name; /* malloc'd, owned by the input */
    bool disabled;
    bool has_limit; /* false: limit null */
    int64_t limit;  /* µ$ */
    lx_period_t limit_reset;
    int64_t expires_at; /* 0: null */
    char **models;      /* malloc'd array of malloc'd strings; n_models 0 = every model */
    size_t n_models;
    char *provider; /* JSON object text, malloc'd; NULL: none */
    uint32_t rpm, tpm, concurrency;
    uint8_t priority; /* enum lx_key_priority (store/keyset.h) */
} lx_key_input_t;

void lx_key_input_dispose(lx_key_input_t *in);

/* A key with its usage, as the API shows it. */
typedef struct lx_key_view {
    lx_store_key_t key;
    bool from_config;               /* a configuration key (GET /key): no limits, read-only */
    int64_t usage[LX_PERIOD_COUNT]; /* µ$: total, daily, weekly, monthly */
    int64_t limit_remaining;        /* µ$, -1 without a limit */
} lx_key_view_t;

/* One row of the activity API: a UTC day, a model, a provider. */
typedef struct lx_activity_row {
    char date[11]; /* YYYY-MM-DD */
    char model[128];
    char provider[64];
    int64_t requests;
    int64_t prompt_tokens, completion_tokens, reasoning_tokens;
    int64_t cost; /* µ$ */
} lx_activity_row_t;

typedef struct lx_store_job {
    enum lx_store_job_kind kind;
    void (*done)(struct lx_store_job *job); /* on the store thread (or inline: lx_store_run) */
    void *arg;
    struct lx_store_job *next; /* private: the queue */
    /* in */
    char actor[64]; /* who, for the audit table: a management key's name, "cli" */
    char hash[65];
    lx_key_input_t input;
    bool config_key;
    bool include_disabled;
    uint32_t offset;
    char gen_id[40];
    char key_hash[65]; /* activity filter */
    int64_t date;      /* activity: a day's start (Unix s), -1: the last 30 completed days */
    /* out */
    int status; /* 0, LX_ENOTFOUND, LX_EINVAL (with message), LX_ESTORE (with message) */
    char message[160];
    char secret[LX_KEY_SECRET_LEN + 1]; /* create: the plaintext key, shown once */
    lx_key_view_t *keys;
    size_t n_keys;
    lx_record_t *record;
    lx_activity_row_t *rows;
    size_t n_rows;
} lx_store_job_t;

/* Queues <job> for the store thread; its done() is called there once it ran. Lock-free. */
void lx_store_submit(lx_store_t *s, lx_store_job_t *job);

/* Runs <job> on the calling thread (a store that was not started: `llmux keys`); done() is
 * not called. */
void lx_store_run(lx_store_t *s, lx_store_job_t *job);

/* Frees a job's inputs and outputs (not the job). */
void lx_store_job_dispose(lx_store_job_t *job);

#endif
