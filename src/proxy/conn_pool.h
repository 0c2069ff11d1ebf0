/*
 * conn_pool.h - per-worker upstream endpoints and their keep-alive connection pools.
 *
 * An lx_conn_pool_t is one provider endpoint (host:port) as seen by one worker: its resolved
 * address (non-blocking DNS with a TTL cache), its idle connections (LIFO: the most recently
 * used is the one most likely still open) and a bound on its open connections. A request
 * borrows a connection with lx_conn_pool_get() and gives it back with lx_conn_pool_put() only
 * when it is provably clean; otherwise it closes it. When the bound is reached, requests wait
 * in order for a connection to come back or close.
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
    bool queued;
};

struct lx_upconn {
    lx_stream_t stream;
    lx_list_t link; /* in the pool's idle list while idle, its connecting list meanwhile */
    lx_conn_pool_t *pool;
    lx_conn_pool_wait_t *connecting_for; /* the waiter a fresh connection is made for */
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
    uint32_t max_connections;
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
    bool disposing;
};

/* Prepares a pool for host:port on <w>. <host> may be a name or a numeric address. */
void lx_conn_pool_init(lx_conn_pool_t *p, lx_worker_t *w, const char *host, uint16_t port,
                       uint32_t max_connections);

/* Asks for a connection: <w>->cb runs with one (maybe at once, from inside this call, when an
 * idle one is ready) or with an error. <w> stays linked until then; lx_conn_pool_cancel()
 * withdraws it. */
void lx_conn_pool_get(lx_conn_pool_t *p, lx_conn_pool_wait_t *w, lx_conn_pool_cb cb);

/* Withdraws a waiting request (its callback will not run). */
void lx_conn_pool_cancel(lx_conn_pool_wait_t *w);

/* Returns a clean connection (response fully read, no error, keep-alive) for reuse. */
void lx_conn_pool_put(lx_upconn_t *c);

/* Closes a borrowed connection that is not clean (error, cancel, cut response). */
void lx_conn_pool_close(lx_upconn_t *c);

/* Closes idle connections and fails waiters; busy ones close when their users are done. */
void lx_conn_pool_dispose(lx_conn_pool_t *p);

#endif
