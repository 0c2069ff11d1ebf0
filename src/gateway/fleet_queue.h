/*
 * fleet_queue.h - the admission queues of a worker (fleet_queue.c): requests that found every
 * replica of their model full wait in their generation's per-model route/queue.h queue until a
 * slot frees, their deadline passes, or their client leaves. Not for other layers.
 */
#ifndef LX_GATEWAY_FLEET_QUEUE_H
#define LX_GATEWAY_FLEET_QUEUE_H

#include <stddef.h>

#include "gateway/request.h"
#include "gateway/worker.h"

/* Queues <r> (its first attempt found every replica of plan entry r->full_pos full, or
 * requests already waiting) on its model's queue, interactive or batch by its key's priority,
 * its prompt key placed or refreshed among the live replicas (route/fleet.h lx_fleet_home).
 * 0 when queued; 429 when the queue
 * is full, with <msg> and r->refusal's Retry-After (lx_queue_retry_after). An interactive
 * request may evict the newest batch one, which is answered 429 at once. */
int lx_gw_queue_push(lx_gw_req_t *r, char *msg, size_t cap);

/* <r>'s client left while it waited: off its queue at once. */
void lx_gw_queue_leave(lx_gw_req_t *r);

/* An attempt of this worker ended: a slot may be free. Runs the kick below from the queue
 * timer at 0 ms (never from inside the proxy's callback) when anything waits; nothing else. */
void lx_gw_queue_slot_freed(lx_gw_worker_t *w);

/* The max_in_flight of <row> (an endpoint of provider <pv>): configured, or learned from its
 * server's figures (route/fleet.h lx_fleet_cap_of), or 0 (none: never full). */
uint32_t lx_gw_row_cap(const lx_gw_health_t *h, const lx_config_provider_t *pv, size_t row);

/* A slot may have freed, or the timer fired: answers 429 to the requests whose deadline
 * passed, then, per replica with room, starts the oldest waiting request whose home it is
 * unless an older one is overdue for it (route/fleet.h lx_fleet_overdue), then the oldest that
 * waited long enough for it (lx_fleet_may_take), each only when its plan has that replica's
 * route, that entry first and pinned to it; re-arms the timer while any waits (at the next
 * deadline, and within 10 ms: slots freed on other workers are not signalled). */
void lx_gw_queue_kick(lx_gw_worker_t *w);

/* Shutdown: every waiting request is answered 503. */
void lx_gw_queue_stop(lx_gw_worker_t *w);

/* Requests waiting on <w>, all generations and models (for tests and /admin/health). */
size_t lx_gw_queue_waiting(lx_gw_worker_t *w);

#endif
