/*
 * worker.h - one event loop on one thread, and the resources it alone owns.
 *
 * Each worker owns a uv_loop_t, a chunk pool and a free list of write requests; everything
 * created on its loop stays on its loop. Other threads reach a worker only through
 * lx_worker_post(), a mutex-guarded queue drained on the worker's loop after a uv_async_t
 * wake-up (control traffic: reload, drain; never per request).
 */
#ifndef LX_WORKER_H
#define LX_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/qsbr.h"

#define LX_WORKER_BATCH 128

typedef struct lx_worker lx_worker_t;
typedef void (*lx_worker_fn)(lx_worker_t *w, void *arg);

typedef struct lx_worker_msg {
    struct lx_worker_msg *next;
    lx_worker_fn fn;
    void *arg;
} lx_worker_msg_t;

struct lx_worker {
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    lx_buf_pool_t bufs;
    struct lx_write *free_writes; /* recycled write requests (net/stream.c) */
    /* The chunk every stream of this worker reads into next (net/stream.c): reads from all
     * connections land one after another in its tail, so a thousand small reads pinned by
     * writes in flight share a few chunks instead of taking one each. */
    lx_buf_t *rchunk;
    /* Writes that completed inside lx_stream_write, whose callbacks run on the next loop
     * turn (never from inside the call that wrote): FIFO, drained by an idle handle. */
    struct lx_write *done_head, *done_tail;
    uv_idle_t done_idle;
    /* Slices gathered during one read callback and written before it returns (the relay's
     * per-read batch): one array per worker instead of one per connection. */
    lx_slice_t batch[LX_WORKER_BATCH];
    size_t n_free_writes;
    /* TLS (net/stream.c): the chunk ciphertext is encrypted into and the chunk plaintext is
     * decrypted into, shared by all the worker's TLS streams like rchunk (a chunk nobody else
     * holds is rewound and reused), so an idle TLS connection holds no chunk either. */
    lx_buf_t *tls_out;
    lx_buf_t *tls_plain;
    lx_list_t tls_pending; /* TLS streams whose reads resumed with plaintext already decrypted
                            * or queued: delivered from done_idle, never inside read_start */
    lx_list_t listeners;   /* this worker's open listeners (net/listener.c), for accept */
    uv_prepare_t turn;     /* marks the end of a loop turn: lx_worker_clock_ns() reads anew,
                              and the loop passes a quiescent point of <qsbr> */
    struct lx_qsbr *qsbr;  /* NULL, or the domain whose reader <id> this loop is (core/qsbr.h):
                              a quiescent point at the end of every turn (nothing a callback
                              loaded from what the domain guards is held past its turn), offline
                              once the loop has ended; set before lx_worker_start() */
    /* Busy polling (lx_worker_set_busy_poll()): while the idle handle runs, the loop polls
     * without sleeping; it stops once no socket was read for spin_ns. */
    uv_idle_t spin;
    uint64_t spin_ns;    /* 0: off */
    uint64_t spin_until; /* uv_hrtime() the spinning stops at, unless a read comes */
    bool spinning;       /* the idle handle is active */
    bool io_seen;        /* a socket was read since the last spin check */

    pthread_mutex_t mq_lock; /* guards mq_head/mq_tail/closed only */
    lx_worker_msg_t *mq_head, *mq_tail;
    bool mq_closed;

    lx_worker_fn on_start; /* runs on the worker thread before the loop */
    lx_worker_fn on_stop;  /* runs on the worker thread after the loop ends */
    void *data;            /* the application's per-worker state */
};

/* Initialises <w>'s loop, pool and queue on the calling thread. 0 or a libuv code. */
int lx_worker_init(lx_worker_t *w, unsigned id);

/* Runs <w> on a new thread: on_start(w), the loop until no handle is left, on_stop(w). */
int lx_worker_start(lx_worker_t *w);

/* Joins the worker's thread. */
void lx_worker_join(lx_worker_t *w);

/* Closes every handle left on the loop (including the wake-up), then runs it to completion.
 * Called on the worker thread by the application once it has stopped its own activity. */
void lx_worker_close_all(lx_worker_t *w);

/* Frees the loop, pool and any undelivered message. The thread must have ended. */
void lx_worker_dispose(lx_worker_t *w);

/*
 * Busy polling: after a socket of this worker was read, the loop keeps polling without a
 * timeout for <ns> more (the wake-up of a sleeping core, expensive in virtual machines, is
 * then not on the next request's path), at the cost of a core kept busy for that long after
 * each burst. 0 turns it off (the default). Worker thread, or before the worker starts.
 */
void lx_worker_set_busy_poll(lx_worker_t *w, uint64_t ns);

/* A socket of <w> was read or accepted (net/stream.c), on its thread: the clock is read anew
 * (lx_worker_clock_ns()), and busy polling is kept up or started. */
void lx_worker_note_io(lx_worker_t *w);

/*
 * uv_hrtime() as of the current socket read, in ns. On a worker's thread the clock is read at
 * the first call after a read callback began (or, for timers and deferred callbacks, after
 * the loop's last poll) and that reading serves the rest of the callback, so the timestamps a
 * request takes while one read is handled (dispatch, attempt start, connect, or first byte
 * and end) cost one clock read; the error is bounded by the time the callback takes. On any
 * other thread (tests driving their own loop, the control thread) it is uv_hrtime().
 */
uint64_t lx_worker_clock_ns(void);

/* Queues fn(w, arg) to run on <w>'s loop. Thread-safe. Returns 0, or LX_ECLOSED when the
 * worker no longer takes messages (then fn will never run: the caller keeps ownership of arg),
 * or LX_ENOMEM. */
int lx_worker_post(lx_worker_t *w, lx_worker_fn fn, void *arg);

#endif
