/*
 * scrape.h - the model servers' load signals, scraped from their `metrics` pages (scrape.c).
 * Not for other layers.
 */
#ifndef LX_GATEWAY_SCRAPE_H
#define LX_GATEWAY_SCRAPE_H

#include <stdbool.h>

#include "gateway/service.h"

/* Whether <cfg> has a provider with a `metrics` path (the control thread's timer runs). */
bool lx_scrape_wanted(const lx_config_t *cfg);

/* Control thread, every routing.scrape_interval: posts a scrape to a worker (in turn) for
 * each endpoint with a metrics path whose previous scrape is over. */
void lx_scrape_check(lx_gateway_t *g);

/* Worker: ends every scrape still running (stop). */
void lx_scrape_cancel_all(lx_gw_worker_t *gw);

#endif
