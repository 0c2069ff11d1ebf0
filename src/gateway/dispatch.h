/*
 * dispatch.h - a request's walk through its plan (dispatch.c: plan, attempts, failover) and
 * the answers made of its attempts (dispatch_answer.c). Not for other layers.
 */
#ifndef LX_GATEWAY_DISPATCH_H
#define LX_GATEWAY_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/request.h"
#include "http/http_server.h"

/* lx_dispatch_start(): the request waits in an admission queue (fleet_queue.h). */
#define LX_DISPATCH_QUEUED 1

/* Builds <r>'s plan from its body (scanned into r->scan), preferences and the health table,
 * applies session stickiness, and prepares the first attempt. Returns 0, LX_DISPATCH_QUEUED
 * (every replica of its model is full: it waits, and lx_dispatch_resume() goes on when it is
 * popped), or an HTTP status with a message in <msg> (the request cannot be routed; 429 with
 * r->refusal filled when the queue is full). */
int lx_dispatch_start(lx_gw_req_t *r, lx_http_request_t *req, char *msg, size_t cap);

/* A queued request may go: prepares its attempt from the plan entry that was full (the
 * fleet's choice then fails open rather than queue again). 0, or an HTTP status with <msg>. */
int lx_dispatch_resume(lx_gw_req_t *r, char *msg, size_t cap);

/* The current attempt ended: records its outcome (health table, attempt list, in-flight). */
void lx_dispatch_end_attempt(lx_gw_req_t *r, int code);

/* After a failed attempt: prepares the next one (true), or says there is none (false):
 * the failure is not worth a retry, or the plan, routing.max_attempts or the deadline is
 * exhausted. */
bool lx_dispatch_next(lx_gw_req_t *r, int code);

/* A request was served: remembers the endpoint for its session. */
void lx_dispatch_served(lx_gw_req_t *r);

/* Answers a request whose every attempt failed: 429 when all were rate limited (with the
 * smallest Retry-After), 503 when all were 5xx or timeouts, the upstream's status for a
 * client error, else 502; error.metadata lists each attempt. Returns true when it answered. */
bool lx_dispatch_respond_error(lx_gw_req_t *r, int code, int status, const char *message);

/* Answers a request lx_dispatch_start() refused with <status> and <msg>, in the envelope of its
 * API (/v1 or /api/v1). */
void lx_dispatch_reject(lx_gw_req_t *r, int status, const char *msg);

/* The error event that ends <r>'s stream cut after its 200 (proxy ops->format_cut): OpenAI's
 * envelope under /v1, OpenRouter's chunk under /api/v1 with the stream's own id and created.
 * Its length, or 0 when the response is no event stream or <cap> is too small. */
size_t lx_dispatch_format_cut(lx_gw_req_t *r, int status, const char *message, char *buf,
                              size_t cap);

/* Hedging (dispatch_hedge.c): ops->hedge, ops->hedge_won, ops->hedge_ended. */
lx_proxy_hedge_t *lx_dispatch_hedge(lx_gw_req_t *r);
bool lx_dispatch_hedge_won(lx_gw_req_t *r, int code);
void lx_dispatch_hedge_ended(lx_gw_req_t *r, lx_proxy_hedge_t *h, int code);

/* An attempt needs at least this much of routing.deadline left to start (a hedge too, and a
 * hedge that takes over before its connection is made: its connect starts over). */
#define LX_DISPATCH_MIN_ATTEMPT_MS 50

/* For dispatch_hedge.c: prepares a hedge's attempt as the current one (replicas a hedge may
 * not go to passed over; the plan position kept), 0 or as prepare_attempt; the proxy settings
 * of the current attempt; whether the current attempt's recorded failure fails over; and the
 * end of an attempt that is not the proxy's current one (in-flight counts, health sample
 * with outcome <o> and no first byte, a 429's <retry_after> in seconds or -1, attempt entry
 * <a>). */
int lx_dispatch_prepare_hedge(lx_gw_req_t *r);
void lx_dispatch_set_proxy(lx_gw_req_t *r);
bool lx_dispatch_may_fail_over(const lx_gw_req_t *r);
void lx_dispatch_record_leg(lx_gw_req_t *r, lx_gw_attempt_t *a, size_t row, uint64_t start_ns,
                            lx_health_outcome_t o, int64_t retry_after);

#endif
