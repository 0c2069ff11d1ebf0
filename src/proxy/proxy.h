/*
 * proxy.h - one proxied request: borrow an upstream connection, send the prepared request,
 * relay the response to the client, and end in exactly one place, lx_proxy_finish().
 *
 * The caller (the gateway) fills an lx_proxy_t: the downstream request, the endpoint's pool,
 * the upstream request as slices (head + body pieces), the headers to add to the client's
 * response, timeouts and callbacks; then calls lx_proxy_start(). The proxy knows HTTP, not
 * LLMs.
 */
#ifndef LX_PROXY_H
#define LX_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http_client.h"
#include "http/http_server.h"
#include "proxy/conn_pool.h"

#define LX_PROXY_MAX_OUT      24
#define LX_PROXY_FILTER_MAX   64 /* slices one filter call may produce */
#define LX_PROXY_ERR_BODY_MAX 8192

_Static_assert(LX_PROXY_FILTER_MAX * 2 <= LX_WORKER_BATCH, "the batch holds two filter calls");

typedef struct lx_proxy lx_proxy_t;

/* The code a hedge race's loser ends with: the other attempt answered first. */
#define LX_PROXY_HEDGE_LOST (-5900)

/* Reads a hedge may hold before its response head is complete (then it stops reading until it
 * takes over or ends): its bytes are kept, to be parsed again as the answer's when it wins. */
#define LX_PROXY_HEDGE_HELD 8

/* A hedge: a second attempt of the same request racing the current one until one of them has
 * an answer; the owner's (ops->hedge returns it, filled: pool and request), the proxy runs it.
 * Its connection, its request and a parser of its response head only: no client side and no
 * timer of its own (the current attempt's timer bounds the race; a hedge that takes over gets
 * the timers). */
typedef struct lx_proxy_hedge {
    /* Filled by the owner in ops->hedge: */
    lx_conn_pool_t *pool;
    unsigned n_out;
    lx_slice_t out[LX_PROXY_MAX_OUT]; /* its upstream request; the proxy owns these refs */
    /* Internal, and readable in ops->hedge_ended: */
    lx_proxy_t *px;
    lx_conn_pool_wait_t wait;
    lx_upconn_t *conn;
    uint64_t t_start_ns, t_connected_ns;
    int status;          /* the status of its final response head, 0 before one is complete */
    int64_t retry_after; /* that head's Retry-After in seconds (delta form), -1 when none */
    lx_http_client_t hc; /* decides when its final (non-1xx) head is complete, and its status */
    lx_slice_t held[LX_PROXY_HEDGE_HELD]; /* its reads so far, replayed when it takes over */
    unsigned n_held;
    bool active, connecting, reused, retried;
    bool ready; /* its 2xx/3xx head is complete while the current attempt reads an error answer:
                 * it waits (not reading) for that answer's end, then takes over or not */
} lx_proxy_hedge_t;

typedef struct lx_proxy_ops {
    /* The request is over: <code> 0 for a response relayed in full, else why it failed. Runs
     * once, before the client's side is released; for a complete answer also before its last
     * bytes (the read that ended it) are handed to the client, so what the owner does here
     * (settling a budget) is done when the client has the last byte. */
    void (*on_finish)(lx_proxy_t *px, int code);
    /* The proxy holds nothing any more (its timer is closed): the owner may free it. */
    void (*on_free)(lx_proxy_t *px);
    /* The upstream answered <status> >= 400 with <body>: write a readable reason into <msg>
     * (NUL-terminated). */
    void (*describe_error)(lx_proxy_t *px, int status, const char *body, size_t len, char *msg,
                           size_t cap);
    /* The upstream's head arrived (status < 400): the owner may set px->filter_on. Optional. */
    void (*on_head)(lx_proxy_t *px, const lx_http_client_t *hc);
    /* With filter_on, every body piece goes through here instead of being relayed as is:
     * write the slices to send (taking references) into out[0..LX_PROXY_FILTER_MAX), set
     * *used to the bytes consumed (at least 1; the proxy calls again for the rest) and
     * return the slice count, or a negative code to fail the response. */
    int (*filter)(lx_proxy_t *px, lx_buf_t *b, const char *at, size_t len, lx_slice_t *out,
                  size_t *used);
    /* With filter_on, at the end of the body: what the filter still holds. */
    int (*filter_end)(lx_proxy_t *px, lx_slice_t *out);
    /* Whether a body that ended really finished (a stream saw its terminator). Optional. */
    bool (*end_ok)(lx_proxy_t *px);
    /* Formats the final piece that tells the client its committed response was cut (an error
     * event for a stream) into <buf>; returns its length, or 0 when the response cannot
     * carry one (then the connection is cut). Optional. */
    size_t (*format_cut)(lx_proxy_t *px, int status, const char *message, char *buf, size_t cap);
    /* Failover, the next-attempt step. An attempt failed before any byte of its answer reached
     * the client: <code> is what went wrong on the way (0 when the upstream answered an error:
     * upstream_status and err_body say which). The upstream connection is already released and
     * px->out is empty. Return true after preparing the next attempt (pool, out, upstream_name,
     * timeouts): the proxy starts it at once. False ends the request with this failure
     * (lx_proxy_finish). Optional: without it every attempt is the last. */
    bool (*retry)(lx_proxy_t *px, int code);
    /* Answers the client for a request that failed before anything was sent, in place of the
     * proxy's own error answer (<status> and <message> are what it would send). Returns true
     * when it answered. Optional. */
    bool (*respond_error)(lx_proxy_t *px, int code, int status, const char *message);
    /* Hedging (optional; all three or none). hedge_due passed and the current attempt has no
     * first byte yet and nothing reached the client: return a hedge filled in (pool, out) to
     * start a second attempt, or NULL for none. At most one runs at a time. */
    lx_proxy_hedge_t *(*hedge)(lx_proxy_t *px);
    /* The hedge is to take over from the current attempt, which ended with <code>:
     * LX_PROXY_HEDGE_LOST (the hedge's complete, final head came first; the current attempt's
     * connection is closed), or a failure that would fail over (as ops->retry's <code>;
     * upstream_status and err_body are still the current attempt's: an error answer is read in
     * full first, the hedge waiting for it even when its own head is complete). Return true
     * after making the hedge's attempt the current one (upstream_name, timeouts; pool and out
     * are moved by the proxy). False (never for LX_PROXY_HEDGE_LOST): the hedge is not the way
     * on; the proxy cancels it (ops->hedge_ended with LX_ECANCELED) and goes on as without a
     * hedge: ops->retry(<code>) decides whether another attempt follows (a next model after a
     * context-length error) or the request ends with this failure. */
    bool (*hedge_won)(lx_proxy_t *px, int code);
    /* The hedge ended without taking over: LX_PROXY_HEDGE_LOST (the current attempt's answer
     * came first), LX_ECANCELED (the request ended, or its failover went elsewhere), a failure
     * on its way, or 0 with the error status of its answer's complete head (hedge->status,
     * hedge->retry_after). Its connection is already closed. */
    void (*hedge_ended)(lx_proxy_t *px, lx_proxy_hedge_t *hedge, int code);
} lx_proxy_ops_t;

enum lx_proxy_state {
    LX_PROXY_IDLE,
    LX_PROXY_CONNECTING, /* waiting for a pooled or fresh connection */
    LX_PROXY_WAITING,    /* request sent, waiting for the response head to be complete */
    LX_PROXY_RELAYING,   /* the head is complete: body arriving */
    LX_PROXY_DONE
};

struct lx_proxy {
    /* Filled by the caller before lx_proxy_start(): */
    lx_http_request_t *req;
    lx_conn_pool_t *pool;
    const lx_proxy_ops_t *ops;
    void *data;
    unsigned n_out;           /* out[0, n_out): the upstream request (below) */
    const char *resp_headers; /* extra lines for the client's response head */
    size_t resp_headers_len;
    const char *upstream_name; /* for messages ("provider mock-a") */
    /* Timeouts of the phases: connect (DNS, connect, TLS handshake), first byte (from sending
     * the request until the response head is complete: interim 1xx answers and a head that
     * arrives line by line do not stop it), idle (between reads after the head). */
    uint64_t connect_timeout_ms;
    uint64_t first_byte_timeout_ms;
    uint64_t idle_timeout_ms;
    /* Loop time (uv_now) by which the attempt's response head must be complete, whatever the
     * phase timeouts say: it bounds connect, send and the wait for the head together
     * (routing.deadline), and alone bounds a wait for a slot under the pool's max_connections.
     * 0: none (a slot wait is then bounded by the connect timeout). */
    uint64_t deadline_ms;
    /* Early commit: the client's head is sent at start (stream_head, a full header block
     * for a 200 answer), then the <keepalive> bytes (the owner's: the proxy does not know what
     * the body is) every keepalive_interval_ms (the first after keepalive_delay_ms) until the
     * upstream's first body byte. No keep-alives without both bytes and an interval. */
    const char *stream_head;
    size_t stream_head_len;
    const char *keepalive;
    size_t keepalive_len;
    uint64_t keepalive_delay_ms;
    uint64_t keepalive_interval_ms;
    bool filter_on;      /* route body pieces through ops->filter */
    bool filter_resizes; /* ... which may change the length (no Content-Length then) */
    bool stream;         /* the client asked for a stream: upstream lengths are not kept */
    /* Hedging: loop time (uv_now) at which ops->hedge is asked for a second attempt when the
     * current one has no first byte yet; 0: never. The owner sets it for each attempt. */
    uint64_t hedge_due;

    /* Results, readable in on_finish: */
    enum lx_proxy_state state;
    int upstream_status; /* 0 when no response head arrived */
    int client_status;   /* status sent to the client */
    const char *error;   /* static text: what went wrong */
    uint64_t t_start_ns, t_connected_ns, t_first_byte_ns, t_end_ns;
    uint64_t bytes_from_upstream;
    uint64_t keepalives_sent;
    bool cut;         /* a committed response was ended with an error (event) */
    bool committed;   /* the client's response head is sent: no more failover */
    bool reused;      /* the connection came from the pool */
    bool relayed;     /* some byte of an upstream answer went to the client: no more failover */
    bool limited;     /* the attempt failed waiting for a connection slot: llmux's own limit (the
                         pool's max_connections) was reached, not the provider's fault */
    unsigned attempt; /* 1 for the first attempt, incremented by each failover */

    /* Internal: */
    lx_conn_pool_wait_t wait;
    lx_upconn_t *conn;
    lx_http_client_t hc;
    uv_timer_t timer;
    uint64_t phase_due;  /* loop time (ms) the current phase times out; 0: no timeout */
    uint64_t timer_due;  /* loop time the timer is armed for; 0: not armed */
    uv_timer_t ka_timer; /* keep-alives, only with an early commit */
    unsigned open_timers;
    lx_slice_t *pending; /* the worker's batch: filled and written within one read callback */
    unsigned n_pending;
    char *err_body;
    size_t err_len;
    lx_proxy_hedge_t *hedge; /* the hedge of the race, from ops->hedge; NULL before */
    bool retried;            /* the stale pooled connection of this attempt was replaced once */
    bool finished;           /* lx_proxy_finish() ran */

    /* Last, so that a caller may zero the struct up to here: only out[0, n_out) is read. */
    lx_slice_t out[LX_PROXY_MAX_OUT]; /* the upstream request; the proxy owns these refs */
};

/* Starts the request on <px>'s pool. Each attempt that fails before any byte of its answer
 * reached the client may give way to the next one (ops->retry); every request ends in
 * lx_proxy_finish(), once. The client's on_abort/on_drain are taken over. */
void lx_proxy_start(lx_proxy_t *px);

/* The final step, run once per request (later calls do nothing) and never followed by another
 * attempt: releases the upstream connection (back to the pool only when clean), answers the
 * client (an error in the envelope when nothing was sent yet, the end of the response, or a
 * cut connection), runs ops->on_finish, then closes the timers (ops->on_free when closed).
 * The owner calls it to end a request early (a shutdown). */
void lx_proxy_finish(lx_proxy_t *px, int code);

/* HTTP status for a failure <code> before any response byte reached the client. */
int lx_proxy_status_for(int code);

/* The client-facing status and a readable message for the current attempt's failure: the
 * provider's own error answer (status and reason from its body) when <code> is 0 and it
 * answered >= 400, else what went wrong on the way. */
int lx_proxy_describe_failure(lx_proxy_t *px, int code, char *msg, size_t cap);

#endif
