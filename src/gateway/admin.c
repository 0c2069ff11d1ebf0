/*
 * admin.c - the admin routes: GET /admin/health (JSON) and GET /metrics (Prometheus text), both
 * the health table of the worker's current generation (route/health_format.c formats it).
 * api.c routes and admits them (the admin key; /metrics may be public) before calling here.
 *
 * Why here and not in an admin/ layer: both read the worker's current generation, which is
 * gateway state; see README.md.
 */
#include "gateway/admin.h"

#include <stdlib.h>

#include "gateway/gen.h"
#include "route/health.h"

static void respond(lx_http_request_t *req, int rc, const char *ct, size_t ct_len, char *body,
                    size_t len)
{
    if (rc != 0) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    lx_http_server_respond(req, 200, ct, ct_len, body, len);
    free(body);
}

void lx_admin_serve_health(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    static const char json[] = "Content-Type: application/json\r\n";
    char *body = NULL;
    size_t len = 0;
    int rc = lx_health_format_json(gw->gen->health->table, uv_now(&gw->worker.loop), &body, &len);
    respond(req, rc, json, sizeof(json) - 1, body, len);
}

void lx_admin_serve_metrics(lx_http_request_t *req, lx_gw_worker_t *gw)
{
    static const char prom[] = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
    char *body = NULL;
    size_t len = 0;
    int rc =
        lx_health_format_metrics(gw->gen->health->table, uv_now(&gw->worker.loop), &body, &len);
    respond(req, rc, prom, sizeof(prom) - 1, body, len);
}
