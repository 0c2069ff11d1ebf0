/*
 * control.h - the control thread (control.c): health re-scoring every
 * health.rescore_interval, the probe timer, and publishing a configuration (start, reload) to
 * the workers. Not for other layers.
 */
#ifndef LX_GATEWAY_CONTROL_H
#define LX_GATEWAY_CONTROL_H

#include "config/config.h"
#include "gateway/service.h"

/* Starts the control thread on <g>'s configuration. 0 or a libuv error. */
int lx_gw_ctl_start(lx_gateway_t *g);

/* Stops it and waits for its end. */
void lx_gw_ctl_stop(lx_gateway_t *g);

/* Asks the control thread to publish <cfg> (a reference is taken); a configuration still
 * pending is superseded. Thread-safe. */
void lx_gw_ctl_reload(lx_gateway_t *g, lx_config_t *cfg);

/* A configuration's secrets (provider keys, provider header values) go to the log's set before
 * any worker uses it: from then on a provider that echoes one is redacted in every log line and
 * error answer. 0 or LX_ENOMEM. */
int lx_gw_add_secrets(const lx_config_t *cfg);

#endif
