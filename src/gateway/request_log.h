/*
 * request_log.h - the access-log line of a request (request_log.c). Not for other layers.
 */
#ifndef LX_GATEWAY_REQUEST_LOG_H
#define LX_GATEWAY_REQUEST_LOG_H

#include "gateway/request.h"
#include "gateway/worker.h"
#include "http/http_server.h"

/* Writes <req>'s line into <gw>'s access-log buffer; <ar> is its request struct, NULL for a
 * request that never reached the proxy (admin routes, refusals on the head, /healthz). */
void lx_gw_request_log(lx_gw_worker_t *gw, const lx_http_request_t *req, const lx_gw_req_t *ar);

#endif
