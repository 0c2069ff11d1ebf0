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

typedef struct lx_gw_worker {
    lx_worker_t worker;
    struct lx_gateway *gw;
    lx_config_t *cfg; /* this worker's snapshot (a reference) */
    lx_http_server_t http;
    lx_listener_t *listeners;
    int *listen_fds; /* one per listen entry, handed over at start */
    size_t n_listeners;
    size_t n_listeners_open;
    lx_conn_pool_t *pools; /* one per provider endpoint, indexed by pool_base[provider] + j */
    size_t *pool_base;
    size_t n_pools;
    uint32_t *rr; /* per provider: next replica (round robin) */
    char *models_json;
    size_t models_json_len;
    lx_access_log_t *alog;
    uv_check_t flush; /* writes the access log once per loop iteration */
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

/* The HTTP request handler and its hooks (api.c). */
void lx_api_handle(lx_http_request_t *req);
void lx_api_done(lx_http_request_t *req);
size_t lx_api_format_error(char *buf, size_t cap, int status, const char *message);

#endif
