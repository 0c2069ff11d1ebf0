/*
 * probe.h - active health probes (probe.c). Not for other layers.
 */
#ifndef LX_GATEWAY_PROBE_H
#define LX_GATEWAY_PROBE_H

#include <stdint.h>

#include "gateway/service.h"

/* Control thread: posts a probe to a worker for each endpoint with a probe path whose rows
 * recorded nothing for health.probe_interval. */
void lx_probe_check(lx_gateway_t *g, uint64_t now_ms);

/* `GET <path>` (NULL: the provider's probe path) to endpoint <ep> of <pv> with the provider's
 * key and headers, into a chunk of <gw>'s (NULL when it does not fit). Probes and scrapes. */
lx_buf_t *lx_probe_request(lx_gw_worker_t *gw, const lx_config_provider_t *pv,
                           const lx_config_endpoint_t *ep, const char *path);

/* Worker: ends every probe still running (stop). */
void lx_probe_cancel_all(lx_gw_worker_t *gw);

#endif
