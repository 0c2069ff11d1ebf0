/*
 * admin.h - the admin routes (admin.c): the health table of the worker's current generation as
 * JSON (GET /admin/health) and in Prometheus text (GET /metrics). api.c admits them (admin
 * key, or public metrics) before calling here. Not for other layers.
 */
#ifndef LX_GATEWAY_ADMIN_H
#define LX_GATEWAY_ADMIN_H

#include "gateway/worker.h"
#include "http/http_server.h"

void lx_admin_serve_health(lx_http_request_t *req, lx_gw_worker_t *gw);
void lx_admin_serve_metrics(lx_http_request_t *req, lx_gw_worker_t *gw);

#endif
