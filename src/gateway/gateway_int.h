/*
 * gateway_int.h - state shared by the gateway's files (gateway.c: lifecycle; api.c: requests).
 * Not for other layers.
 */
#ifndef LX_GATEWAY_INT_H
#define LX_GATEWAY_INT_H

#include <stdatomic.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "http/http_server.h"
#include "net/listener.h"
#include "obs/log.h"
#include "proxy/conn_pool.h"
#include "proxy/proxy.h"

/*
 * One configuration generation as one worker uses it: the snapshot and everything derived
 * from it. The worker holds the current one; each request holds the one it started with, so
 * a reload never changes a request midway. A retired generation's pools are disposed when
 * its last request ends; its memory is freed when the worker stops (a DNS lookup in flight
 * may still point at a pool until then).
 */
typedef struct lx_gw_gen {
    struct lx_gw_gen *next_retired;
    unsigned refs;
    lx_config_t *cfg;
    lx_conn_pool_t *pools; /* one per provider endpoint, indexed by pool_base[provider] + j */
    size_t *pool_base;
    size_t n_pools;
    uint32_t *rr; /* per provider: next replica (round robin) */
    char *models_json;
    size_t models_json_len;
    bool disposed;
} lx_gw_gen_t;

typedef struct lx_gw_worker {
    lx_worker_t worker;
    struct lx_gateway *gw;
    lx_gw_gen_t *gen;     /* the current generation (one reference) */
    lx_gw_gen_t *retired; /* generations replaced by a reload */
    lx_list_t active;     /* requests handed to the proxy */
    lx_http_server_t http;
    lx_listener_t *listeners;
    int *listen_fds; /* one per listen entry, handed over at start */
    size_t n_listeners;
    size_t n_listeners_open;
    lx_access_log_t *alog;
    uint64_t generations; /* X-Generation-Id counter ... */
    uint64_t gen_seed;    /* ... mixed with a per-start random value */
    uv_timer_t flush;     /* writes the access log every 100 ms (or when half full) */
    uv_timer_t shutdown_timer;
    bool draining;
    bool stopping;
} lx_gw_worker_t;

struct lx_gateway {
    lx_config_t *cfg;
    lx_gw_worker_t *workers;
    unsigned n_workers;
    uint16_t *ports; /* per listen entry */
    atomic_uint running;
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
};

/* Generations (gateway.c). */
lx_gw_gen_t *lx_gw_gen_ref(lx_gw_gen_t *g);
void lx_gw_gen_unref(lx_gw_worker_t *w, lx_gw_gen_t *g);

/* Ends every request in <w>->active with <code> (shutdown timeout) (api.c). */
void lx_api_cancel_all(lx_gw_worker_t *w, int code);

/* The HTTP request handler and its hooks (api.c). */
void lx_api_handle(lx_http_request_t *req);
void lx_api_done(lx_http_request_t *req);
size_t lx_api_format_error(char *buf, size_t cap, int status, const char *message);

#endif
