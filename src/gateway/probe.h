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

/* Worker: ends every probe still running (stop). */
void lx_probe_cancel_all(lx_gw_worker_t *gw);

#endif
