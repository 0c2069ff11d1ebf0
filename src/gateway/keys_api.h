/*
 * keys_api.h - the key-management and usage API (keys_api.c): /key, /keys, /keys/{hash},
 * /generation, /activity, answered from store jobs without blocking the worker. Not for other
 * layers.
 */
#ifndef LX_GATEWAY_KEYS_API_H
#define LX_GATEWAY_KEYS_API_H

#include "gateway/worker.h"
#include "http/http_server.h"

/* Serves route <what> (0 /key, 1 /keys, 2 /keys/{hash}, 3 /generation, 4 /activity) for a
 * request admitted on its head (the caller's identity in req->app). */
void lx_keys_api_serve(lx_http_request_t *req, lx_gw_worker_t *gw, int what);

#endif
