/*
 * api.h - the HTTP request handler and its hooks (api.c), wired to each worker's HTTP server
 * by worker.c. Not for other layers.
 */
#ifndef LX_GATEWAY_API_H
#define LX_GATEWAY_API_H

#include <stddef.h>

#include "gateway/worker.h"
#include "http/http_server.h"

/* lx_api_head admits a request on its head (route, method, key) before any body byte is read;
 * lx_api_handle does not check again. */
int lx_api_head(lx_http_request_t *req, const char **message, const char **headers);
void lx_api_handle(lx_http_request_t *req);
void lx_api_done(lx_http_request_t *req);
size_t lx_api_format_error(const lx_http_request_t *req, char *buf, size_t cap, int status,
                           const char *message);

struct lx_gw_req;

/* A request that waited in an admission queue (fleet_queue.c) may go: its attempt is prepared
 * and the proxy started, or it is answered 503 when nothing is left to try. */
void lx_api_resume(struct lx_gw_req *r);

/* A request that waited in an admission queue is answered <status> (429 with Retry-After
 * <retry_after> seconds, 503 at shutdown) with <msg>, in its API's envelope, and let go. */
void lx_api_refuse_queued(struct lx_gw_req *r, int status, unsigned retry_after, const char *msg);

/* Ends every request in <w>->active with <code> (shutdown timeout). */
void lx_api_cancel_all(lx_gw_worker_t *w, int code);

#endif
