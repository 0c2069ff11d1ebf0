/*
 * worker.c - the per-core worker: thread, loop, and the control-message queue.
 *
 * Flow: main thread lx_worker_init → lx_worker_start (thread) → on_start (application opens
 * listeners) → uv_run → (application closes its handles on drain) → lx_worker_close_all →
 * on_stop. Messages posted from the control loop run in on_wakeup, in order.
 */
#include "net/worker.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "net/listener.h"
#include "net/stream.h"

static void on_wakeup(uv_async_t *a)
{
    lx_worker_t *w = a->data;
    pthread_mutex_lock(&w->mq_lock);
    lx_worker_msg_t *m = w->mq_head;
    w->mq_head = w->mq_tail = NULL;
    pthread_mutex_unlock(&w->mq_lock);
    while (m != NULL) {
        lx_worker_msg_t *next = m->next;
        m->fn(w, m->arg);
        free(m);
        m = next;
    }
}

/* lx_worker_clock_ns(): the current reading (0: not read yet), and whether this thread runs a
 * worker's loop, whose turn handle clears the reading before each poll and whose reads clear
 * it as they begin */
static _Thread_local uint64_t turn_ns;
static _Thread_local bool turn_clock;

uint64_t lx_worker_clock_ns(void)
{
    if (!turn_clock)
        return uv_hrtime();
    if (turn_ns == 0)
        turn_ns = uv_hrtime();
    return turn_ns;
}

/* The end of a loop turn (libuv runs prepare handles just before it polls): no callback of
 * this turn is running, so the loop holds nothing it loaded from what <qsbr> guards. A load and
 * a store on the worker's own cache line: no lock, no system call. */
static void on_turn(uv_prepare_t *h)
{
    lx_worker_t *w = h->data;
    turn_ns = 0;
    if (w->qsbr != NULL)
        lx_qsbr_quiescent(w->qsbr, w->id);
}

/* Each loop turn while spinning: a read since the last turn extends the spin. */
static void on_spin(uv_idle_t *h)
{
    lx_worker_t *w = h->data;
    uint64_t now = uv_hrtime();
    if (w->io_seen) {
        w->io_seen = false;
        w->spin_until = now + w->spin_ns;
    } else if (now >= w->spin_until) {
        uv_idle_stop(h);
        w->spinning = false;
    }
}

void lx_worker_note_io(lx_worker_t *w)
{
    turn_ns = 0; /* libuv may run many polls' callbacks in one turn: each read reads anew */
    if (w->spin_ns == 0)
        return;
    w->io_seen = true;
    if (!w->spinning) {
        w->spinning = true;
        w->spin_until = uv_hrtime() + w->spin_ns;
        uv_idle_start(&w->spin, on_spin);
    }
}

void lx_worker_set_busy_poll(lx_worker_t *w, uint64_t ns)
{
    w->spin_ns = ns;
    if (ns == 0 && w->spinning) {
        uv_idle_stop(&w->spin);
        w->spinning = false;
    }
}

int lx_worker_init(lx_worker_t *w, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    int rc = uv_loop_init(&w->loop);
    if (rc != 0)
        return rc;
    w->loop.data = w;
    rc = uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    if (rc != 0) {
        uv_loop_close(&w->loop);
        return rc;
    }
    w->wakeup.data = w;
    uv_idle_init(&w->loop, &w->done_idle);
    w->done_idle.data = w;
    uv_prepare_init(&w->loop, &w->turn);
    w->turn.data = w;
    uv_prepare_start(&w->turn, on_turn);
    uv_unref((uv_handle_t *)&w->turn); /* keeps no loop alive */
    uv_idle_init(&w->loop, &w->spin);
    w->spin.data = w;
    uv_unref((uv_handle_t *)&w->spin);
    pthread_mutex_init(&w->mq_lock, NULL);
    lx_buf_pool_init(&w->bufs, 128);
    lx_list_init(&w->tls_pending);
    lx_list_init(&w->listeners);
    return 0;
}

static void run(void *arg)
{
    lx_worker_t *w = arg;
    turn_clock = true;
    if (w->on_start != NULL)
        w->on_start(w, w->data);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    turn_clock = false;
    if (w->qsbr != NULL)
        lx_qsbr_offline(w->qsbr, w->id); /* its loop has ended: it holds nothing any more */
    if (w->on_stop != NULL)
        w->on_stop(w, w->data);
}

int lx_worker_start(lx_worker_t *w)
{
    return uv_thread_create(&w->thread, run, w);
}

void lx_worker_join(lx_worker_t *w)
{
    uv_thread_join(&w->thread);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void lx_worker_close_all(lx_worker_t *w)
{
    pthread_mutex_lock(&w->mq_lock);
    w->mq_closed = true;
    pthread_mutex_unlock(&w->mq_lock);
    /* deliver what was already queued, so no posted message is silently dropped */
    on_wakeup(&w->wakeup);
    /* listeners closed by the walk below never run their close callback: their TLS contexts
     * are released here */
    while (!lx_list_is_empty(&w->listeners)) {
        lx_listener_t *l = lx_list_entry(w->listeners.next, lx_listener_t, link);
        lx_list_remove(&l->link);
        lx_listener_set_tls(l, NULL);
    }
    uv_walk(&w->loop, close_walk, NULL);
}

void lx_worker_dispose(lx_worker_t *w)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    /* completions the closed idle handle can no longer deliver, then the closes they held */
    lx_stream_run_deferred(w);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_loop_close(&w->loop);
    lx_worker_msg_t *m = w->mq_head;
    while (m != NULL) {
        lx_worker_msg_t *next = m->next;
        free(m);
        m = next;
    }
    lx_stream_free_writes(w);
    lx_buf_unref(w->rchunk);
    lx_buf_unref(w->tls_out);
    lx_buf_unref(w->tls_plain);
    w->rchunk = w->tls_out = w->tls_plain = NULL;
    lx_buf_pool_dispose(&w->bufs);
    pthread_mutex_destroy(&w->mq_lock);
}

int lx_worker_post(lx_worker_t *w, lx_worker_fn fn, void *arg)
{
    lx_worker_msg_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return LX_ENOMEM;
    m->next = NULL;
    m->fn = fn;
    m->arg = arg;
    pthread_mutex_lock(&w->mq_lock);
    if (w->mq_closed) {
        pthread_mutex_unlock(&w->mq_lock);
        free(m);
        return LX_ECLOSED;
    }
    if (w->mq_tail != NULL)
        w->mq_tail->next = m;
    else
        w->mq_head = m;
    w->mq_tail = m;
    uv_async_send(&w->wakeup);
    pthread_mutex_unlock(&w->mq_lock);
    return 0;
}
