/*
 * upstream.h - a standalone upstream request: borrow a connection of an endpoint's pool (TLS
 * included), send a prepared request, read its response, all within timeouts, with no
 * downstream client. Health probes use it, and any internal caller that needs one answer from
 * a provider.
 *
 * The caller fills an lx_upstream_t (pool, request slices, timeouts, ops) and calls
 * lx_upstream_start(). ops->on_head and ops->on_body see the response as it arrives; ops->on_done
 * runs exactly once with the outcome, the connection already released (back to the pool only
 * when clean); ops->on_free runs after it, when the client holds nothing any more.
 * lx_upstream_cancel() ends it early. It knows HTTP, not what the request means.
 */
#ifndef LX_UPSTREAM_H
#define LX_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http_client.h"
#include "proxy/conn_pool.h"

#define LX_UPSTREAM_MAX_OUT 8

typedef struct lx_upstream lx_upstream_t;

typedef struct lx_upstream_ops {
    /* The final (non-1xx) response head is complete: up->hc holds its status and headers.
     * Non-zero ends the exchange with that code. Optional. */
    int (*on_head)(lx_upstream_t *up);
    /* A piece of the body, a view into chunk <b> (take a reference to keep it). Non-zero ends
     * the exchange with that code. Optional: without it the body is read and dropped. */
    int (*on_body)(lx_upstream_t *up, lx_buf_t *b, const char *at, size_t len);
    /* The exchange is over: <code> 0 when the response was read in full (up->hc), else why not
     * (LX_ETIMEDOUT, LX_ECANCELED, LX_EUPSTREAM, a connect or libuv code); up->step and
     * up->error say where and what. Runs exactly once, the connection already released. */
    void (*on_done)(lx_upstream_t *up, int code);
    /* The client holds nothing any more (its timer is closed): the owner may free it. Runs
     * after on_done. */
    void (*on_free)(lx_upstream_t *up);
} lx_upstream_ops_t;

/* Where an exchange is, or was when it ended. */
enum lx_upstream_step {
    LX_UPSTREAM_IDLE,
    LX_UPSTREAM_CONNECT, /* waiting for a pooled or fresh connection (DNS, connect, TLS) */
    LX_UPSTREAM_SEND,    /* a write of the request failed (set only by that failure) */
    LX_UPSTREAM_WAIT,    /* request sent, waiting for the response head to be complete */
    LX_UPSTREAM_READ,    /* the head is complete: body arriving */
    LX_UPSTREAM_DONE     /* the response was read in full */
};

struct lx_upstream {
    /* Filled by the caller before lx_upstream_start(): */
    lx_conn_pool_t *pool;
    const lx_upstream_ops_t *ops;
    void *data;
    /* Phase timeouts (0: none): connect (DNS, connect, TLS handshake), first byte (from sending
     * until the response head is complete), idle (between reads after the head). */
    uint64_t connect_timeout_ms;
    uint64_t first_byte_timeout_ms;
    uint64_t idle_timeout_ms;
    /* Loop time (uv_now) by which the whole response must be read; it caps every phase
     * timeout, and alone bounds a wait for a slot under the pool's max_connections. 0: none. */
    uint64_t deadline_ms;
    uint64_t max_head; /* bound of the response head; 0: 64 KiB */
    unsigned n_out;    /* out[0, n_out): the request; the client owns these references */
    lx_slice_t out[LX_UPSTREAM_MAX_OUT];

    /* Results, readable in on_done: */
    enum lx_upstream_step step;
    const char *error; /* static text: what went wrong */
    lx_http_client_t hc;
    uint64_t t_start_ns, t_connected_ns, t_first_byte_ns, t_end_ns; /* lx_worker_clock_ns() */
    bool reused;    /* the connection came from the pool */
    bool timed_out; /* a phase timeout or the deadline ended it (code LX_ETIMEDOUT, or
                       LX_ETLSHANDSHAKE for a handshake that did not complete) */
    bool limited;   /* it was still waiting for a slot under the pool's max_connections:
                       llmux's own limit, not the provider's fault */

    /* Internal: */
    lx_conn_pool_wait_t wait;
    lx_upconn_t *conn;
    uv_timer_t timer;
    uint64_t phase_due; /* loop time the current phase times out; 0: no timeout */
    bool retried;       /* a stale pooled connection was replaced once already */
    bool finished;
};

/* Starts the exchange on up->pool's worker. on_done may run from inside this call (an idle
 * connection that fails at once). */
void lx_upstream_start(lx_upstream_t *up);

/* Ends the exchange now, if it is still running: the connection is closed (the server learns
 * that nobody waits for its answer) and on_done runs with LX_ECANCELED. */
void lx_upstream_cancel(lx_upstream_t *up);

#endif
