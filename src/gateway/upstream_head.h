/*
 * upstream_head.h - the heads of the current attempt (upstream_head.c). Not for other layers.
 */
#ifndef LX_GATEWAY_UPSTREAM_HEAD_H
#define LX_GATEWAY_UPSTREAM_HEAD_H

#include <stdbool.h>

#include "gateway/request.h"

/* The upstream request (r->px.out) and the lines the client's response head gets
 * (r->resp_headers). False when one does not fit. */
bool lx_gw_build_request(lx_gw_req_t *r);
bool lx_gw_build_resp_headers(lx_gw_req_t *r);

#endif
