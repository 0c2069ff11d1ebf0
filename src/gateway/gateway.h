/*
 * gateway.h - llmux as a running service: workers, listeners, and the LLM API on top of the
 * generic proxy.
 *
 * lx_gateway_start() binds every listen address once per worker (SO_REUSEPORT) on the calling
 * thread, so a bad address fails the start, then runs one worker thread per configured
 * worker. Each worker serves the OpenAI-compatible API under /v1 and /api/v1: it checks the
 * key, scans the JSON body once, resolves the model to a provider, splices the upstream
 * request and hands it to the proxy. lx_gateway_drain() stops accepting and lets in-flight
 * requests finish up to the shutdown timeout.
 */
#ifndef LX_GATEWAY_H
#define LX_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct lx_gateway lx_gateway_t;

/* Starts llmux on <cfg> (the gateway takes a reference). On success *out is running.
 * Returns 0 or a negative code, with a message written to the error log. */
int lx_gateway_start(lx_config_t *cfg, lx_gateway_t **out);

/* The port listen entry <i> is bound to (useful when the config asked for port 0). */
uint16_t lx_gateway_port(const lx_gateway_t *gw, size_t i);

/* Graceful stop: stop accepting, finish in-flight requests, and after the configured
 * shutdown timeout cut what is left. Returns at once; thread-safe. */
void lx_gateway_drain(lx_gateway_t *gw);

/* Calls <cb>(<arg>) from a worker thread once every worker has stopped (set before drain). */
void lx_gateway_on_stopped(lx_gateway_t *gw, void (*cb)(void *arg), void *arg);

/* Publishes configuration <cfg> to every worker (the gateway takes a reference): new requests
 * use it, requests in flight keep theirs. Changes to `listen`, `workers` and `log.access_log`
 * need a restart and are reported by the return value LX_ECONFIG (the rest still applies).
 * Thread-safe; returns before the workers have switched. */
int lx_gateway_reload(lx_gateway_t *gw, lx_config_t *cfg);

/* The configuration generations allocated in all workers: one current per worker, plus each
 * one retired by a reload that a request in flight still uses (freed within a few hundred
 * milliseconds of its last request's end). Thread-safe; for tests. */
size_t lx_gateway_generations(const lx_gateway_t *gw);

/* Waits for every worker to end, then frees the gateway. */
void lx_gateway_wait(lx_gateway_t *gw);

#endif
