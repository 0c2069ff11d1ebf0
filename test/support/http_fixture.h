/*
 * http_fixture.h - the downstream HTTP server alone, on its own worker thread, listening on
 * 127.0.0.1:<ephemeral>, with an echo handler: the integration tests of src/http/ (keep-alive,
 * pipelining, clients that leave, on_head, the body memory cap) talk to it over real sockets
 * with the harness's blocking client (harness.h).
 *
 * The handler answers every request 200 with the body "len=<body length> sum=<FNV-1a of the
 * body, 8 hex digits>\n" (the client's X-Request-Id comes back in the head), at once or on a
 * later loop turn. It allocates a record per request and frees it in on_done: a missing on_done
 * is a leak LeakSanitizer reports, and the counters below tell the test.
 */
#ifndef LX_HTTP_FIXTURE_H
#define LX_HTTP_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http_server.h"

typedef struct lx_http_fixture lx_http_fixture_t;

typedef struct lx_http_fixture_opts {
    lx_http_server_limits_t limits; /* zero fields get test defaults */
    lx_http_head_cb on_head;        /* runs on the worker thread; may be NULL */
    bool later;                     /* answer on the loop turn after on_request */
} lx_http_fixture_opts_t;

/* Counters, read after lx_http_fixture_stop (or with relaxed loads while it runs). */
typedef struct lx_http_fixture_stats {
    uint64_t requests;    /* requests the handler got */
    uint64_t dones;       /* on_done calls for them */
    uint64_t refused;     /* on_done calls for requests the handler never got (refused, or left) */
    uint64_t aborted;     /* on_abort calls */
    uint64_t live;        /* records not freed: requests whose on_done never came */
    uint64_t body_memory; /* lx_http_body_memory() once every connection had closed */
    uint64_t refusals[6]; /* refused by status class: [4] 4xx, [5] 5xx, [0] 499 */
} lx_http_fixture_stats_t;

/* Starts the server; NULL on failure (with a message on stderr). */
lx_http_fixture_t *lx_http_fixture_start(const lx_http_fixture_opts_t *opts);

uint16_t lx_http_fixture_port(const lx_http_fixture_t *f);

/* Counters so far (relaxed). */
void lx_http_fixture_stats(lx_http_fixture_t *f, lx_http_fixture_stats_t *out);

/* Waits up to <ms> for the server to have no connection (clients gone and closes done). */
bool lx_http_fixture_wait_idle(lx_http_fixture_t *f, int ms);

/* Closes every connection (handlers see on_abort and end their requests), stops the thread,
 * frees; *out (may be NULL) gets the final counters. */
void lx_http_fixture_stop(lx_http_fixture_t *f, lx_http_fixture_stats_t *out);

#endif
