/*
 * worker.h - one worker thread of the gateway: its loop, listeners, HTTP server, current and
 * retired generations, access log, and the per-worker routing state (random state, session
 * table, request structs kept for reuse). Implemented in worker.c. Not for other layers.
 */
#ifndef LX_GATEWAY_WORKER_H
#define LX_GATEWAY_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/auth.h"
#include "core/list.h"
#include "gateway/gen.h"
#include "http/http_server.h"
#include "net/listener.h"
#include "net/worker.h"
#include "store/store.h"
#include "obs/log.h"
#include "route/hedge.h"
#include "route/session.h"
#include "store/keyset.h"

#define LX_GW_REQ_CACHE 32   /* request structs a worker keeps for reuse */
#define LX_GW_BACKLOG   1024 /* listen(2) backlog of every listen socket */

struct lx_gateway;
struct lx_gw_req;

typedef struct lx_gw_worker {
    lx_worker_t worker;
    struct lx_gateway *gw;
    lx_gw_gen_t *gen;     /* the current generation (one reference) */
    lx_gw_gen_t *retired; /* generations replaced by a reload */
    lx_keyset_t *keys;    /* the stored keys (a reference), replaced by lx_gw_worker_keys */
    lx_list_t active;     /* requests handed to the proxy */
    lx_http_server_t http;
    lx_listener_t *listeners;
    int *listen_fds; /* one per listen entry, handed over at start */
    size_t n_listeners;
    size_t n_listeners_open;
    lx_access_log_t *alog;
    uint64_t gen_tick; /* the last X-Generation-Id tick of this worker's lane (store/record.h) */
    lx_auth_cache_t auth_cache; /* the digests of the keys seen last (gateway/auth.h) */
    lx_record_pool_t rec_pool;  /* usage records the store gave back (store/store.h) */
    uint64_t rng;               /* routing's random state */
    lx_sessions_t sessions;     /* session stickiness (route/session.h) */
    lx_list_t probes;           /* active probes running on this worker */
    lx_list_t scrapes;          /* metrics scrapes running on this worker */
    struct lx_gw_req *req_cache[LX_GW_REQ_CACHE]; /* freed request structs kept for reuse */
    unsigned n_req_cache;
    uv_timer_t flush; /* writes the access log every 100 ms (or when half full), and frees
                       * retired generations nothing reaches any more */
    uint64_t ticks;   /* flush timer runs so far */
    uv_timer_t shutdown_timer;
    uv_timer_t queue_timer;         /* admission queues: deadlines, and slots other workers freed */
    size_t n_waiting;               /* requests in this worker's admission queues (fleet_queue.c) */
    lx_hedge_bucket_t hedge_bucket; /* routing.hedge_budget's tokens (dispatch_hedge.c) */
    bool draining;
    bool stopping;
} lx_gw_worker_t;

/* Prepares worker <k> of <g> on the calling thread (lx_gateway_start): listener slots, access
 * log, loop, and its first generation (pools are per loop). 0 or an error; *<loop_inited> says
 * whether its loop was initialised (it must then be disposed). */
int lx_gw_worker_init(lx_gw_worker_t *gw, struct lx_gateway *g, unsigned k, bool *loop_inited);

/* The worker's thread hooks (lx_worker_t on_start, on_stop; <arg> is the lx_gw_worker_t):
 * start adopts the listen fds, wires the HTTP server to api.c and arms the timers. */
void lx_gw_worker_on_start(lx_worker_t *w, void *arg);
void lx_gw_worker_on_stop(lx_worker_t *w, void *arg);

/* Posted to a worker (lx_worker_post): drain (close the listeners, finish what is in flight,
 * cut what is left at the shutdown timeout), and reload (an lx_gw_reload_msg_t, freed here:
 * build the next generation, retire the current one). */
void lx_gw_worker_drain(lx_worker_t *w, void *arg);
void lx_gw_worker_reload(lx_worker_t *w, void *arg);

/* A reload for one worker: the configuration, its health table and its TLS contexts (a
 * reference each) and the generation's serial. */
typedef struct lx_gw_reload_msg {
    lx_config_t *cfg;
    lx_gw_health_t *health;
    lx_gw_tls_t *tls;
    uint64_t serial;
} lx_gw_reload_msg_t;

/* Posted to a worker by the store thread: a new snapshot of the stored keys (an lx_keyset_t
 * reference, taken over; an older version than the worker's is dropped). */
void lx_gw_worker_keys(lx_worker_t *w, void *arg);

/* Frees what the worker holds, after its loop has ended. */
void lx_gw_worker_free_state(lx_gw_worker_t *gw);

#endif
