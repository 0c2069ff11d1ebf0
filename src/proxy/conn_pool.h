/*
 * conn_pool.h - per-worker upstream endpoints and their keep-alive connection pools.
 *
 * An lx_conn_pool_t is one provider endpoint (host:port) as seen by one worker: its resolved
 * address (non-blocking DNS with a TTL cache) and its idle connections (LIFO: the most recently
 * used is the one most likely still open). A request borrows a connection with
 * lx_conn_pool_get() and gives it back with lx_conn_pool_put() only when it is provably clean;
 * otherwise it closes it.
 *
 * Two bounds, as nginx's `keepalive N` and `max_conns`: max_idle (default 64) bounds the idle
 * connections kept for reuse - a connection given back above it closes the least recently used
 * one - and max_connections (default 0: none) bounds all open connections, busy ones included.
 * Only an explicit max_connections makes requests wait: in order, for a connection to come back
 * or close; such a waiter is marked `limited` so that its owner can bound the wait by its own
 * deadline and tell it apart from a slow connect.
 *
 * An endpoint may be HTTPS (lx_conn_pool_set_tls): a fresh connection then connects and
 * completes its TLS handshake before the request gets it, so a connection in the pool is always
 * ready; a failure reaches the waiter with its precise code (LX_ETLSCA, LX_ETLSHOST,
 * LX_ETLSEXPIRED, LX_ETLSHANDSHAKE...). Sessions resume across connections and workers through
 * the client context's cache, keyed by "host:port".
 */
#ifndef LX_CONN_POOL_H
#define LX_CONN_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "net/stream.h"

typedef struct lx_conn_pool lx_conn_pool_t;
typedef struct lx_upconn lx_upconn_t;
typedef struct lx_conn_pool_wait lx_conn_pool_wait_t;

/* The outcome of a get: a connection ready for a request, or an error (DNS, connect). */
typedef void (*lx_conn_pool_cb)(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status);

struct lx_conn_pool_wait {
    lx_list_t link;
    lx_conn_pool_t *pool;
    lx_conn_pool_cb cb;
    struct lx_upconn *connecting; /* the fresh connection being made for this request */
    uint64_t since_ms; /* loop time the wait's connect phase began: the get, or the moment a
                          limited waiter's turn came (DNS and connect are bounded from here) */
    bool queued;
    bool limited; /* queued because max_connections is reached: waiting for a slot */
};

struct lx_upconn {
    lx_stream_t stream;
    lx_list_t link; /* in the pool's idle list while idle, its connecting list meanwhile */
    lx_conn_pool_t *pool;
    lx_conn_pool_wait_t *connecting_for; /* the waiter a fresh connection is made for */
    uv_timer_t timer; /* TLS: bounds connect + handshake of a connection nobody may wait for */
    bool timer_open;
    uint64_t idle_since_ms;
    uint32_t requests; /* requests served on this connection */
    bool idle;
    bool reused; /* taken from the idle list rather than freshly connected */
    void *data;  /* the current user */
};

struct lx_conn_pool {
    lx_worker_t *worker;
    char host[256];
    uint16_t port;
    uint32_t max_connections; /* open connections, busy ones included; UINT32_MAX: no bound */
    uint32_t max_idle;        /* idle connections kept for reuse (LX_CONN_POOL_MAX_IDLE) */
    uint64_t idle_timeout_ms; /* idle connections older than this are not reused */
    uint32_t max_requests;    /* per connection, then closed */
    struct sockaddr_storage addr;
    uint64_t addr_expires_ms; /* 0: not resolved */
    bool resolving;
    uv_getaddrinfo_t gai;
    int last_resolve_error;
    uint64_t resolve_retry_ms; /* after a failed lookup: no new one before this */
    lx_list_t idle;
    lx_list_t connecting; /* fresh connections not yet connected */
    lx_list_t waiters;
    uint32_t n_idle;
    uint32_t n_open;     /* idle + busy + connecting */
    uint64_t n_connects; /* connections made, for tests and metrics */
    uint64_t n_reuses;
    uint64_t n_resumed;     /* TLS handshakes that resumed a session */
    uint64_t n_idle_closed; /* connections closed because max_idle were idle already */
    uint64_t n_limited;     /* gets that had to wait for a slot (max_connections reached) */
    bool disposing;
    /* TLS (NULL: plain TCP): */
    lx_tls_client_t *tls;          /* a reference */
    char server_name[256];         /* SNI and the name the certificate must carry */
    char session_key[300];         /* "host:port" in the context's session cache */
    uint64_t handshake_timeout_ms; /* connect + handshake, default 10 s */
};

#define LX_CONN_POOL_MAX_IDLE 64 /* default max_idle */

/* Prepares a pool for host:port on <w>. <host> may be a name or a numeric address.
 * <max_connections> bounds the open connections, busy ones included (0: no bound); max_idle
 * starts at LX_CONN_POOL_MAX_IDLE and may be set before the first get, as may the timeouts. */
void lx_conn_pool_init(lx_conn_pool_t *p, lx_worker_t *w, const char *host, uint16_t port,
                       uint32_t max_connections);

/* Makes the endpoint HTTPS: new connections are TLS clients of <ctx> (a reference is taken)
 * for <server_name> (NULL: the pool's host). Call before the first get. */
void lx_conn_pool_set_tls(lx_conn_pool_t *p, lx_tls_client_t *ctx, const char *server_name);

/* Asks for a connection: <w>->cb runs with one (maybe at once, from inside this call, when an
 * idle one is ready) or with an error. <w> stays linked until then; lx_conn_pool_cancel()
 * withdraws it. While max_connections holds it back, w->limited is set (counted in
 * n_limited); when its turn comes, limited is cleared and w->since_ms restamped. Waits are
 * not timed here: the owner bounds them. */
void lx_conn_pool_get(lx_conn_pool_t *p, lx_conn_pool_wait_t *w, lx_conn_pool_cb cb);

/* Withdraws a waiting request (its callback will not run). */
void lx_conn_pool_cancel(lx_conn_pool_wait_t *w);

/* Returns a clean connection (response fully read, no error, keep-alive) for reuse: to the
 * oldest waiter, else to the idle list, closing its least recently used connection when
 * max_idle are idle already. */
void lx_conn_pool_put(lx_upconn_t *c);

/* Closes a borrowed connection that is not clean (error, cancel, cut response). */
void lx_conn_pool_close(lx_upconn_t *c);

/* Closes idle connections and fails waiters; busy ones close when their users are done. */
void lx_conn_pool_dispose(lx_conn_pool_t *p);

/* Whether the socket of <c> holds a pending error. libuv 1.44 reports a reset that arrives
 * together with data as a plain end of file: this tells the two apart. */
bool lx_upconn_reset_pending(lx_upconn_t *c);

#endif
