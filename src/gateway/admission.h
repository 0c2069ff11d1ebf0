/*
 * admission.h - who calls, whether they may, what it cost (admission.c): identity on the head,
 * the stored key's rules in the plan, the reservation and rate limits at admission, the
 * settlement and the usage record at the end. Not for other layers.
 */
#ifndef LX_GATEWAY_ADMISSION_H
#define LX_GATEWAY_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/request.h"
#include "gateway/worker.h"
#include "http/http_server.h"
#include "route/plan.h"

/*
 * Who the request's Authorization header names: a configuration key, a management key, a
 * usable stored key (not disabled, not expired), into *id. Returns 0, or 401 with *message
 * (missing header, malformed, unknown, disabled or expired key). With `auth: none` a missing
 * or unknown key is LX_WHO_NONE and 0.
 */
int lx_gw_identify(const lx_http_request_t *req, lx_gw_worker_t *gw, lx_gw_ident_t *id,
                   const char **message);

/* The name of the caller (a configuration or management key's name, a stored key's name when
 * <key> is given), "" for none. */
const char *lx_gw_ident_name(const lx_config_t *cfg, const lx_gw_ident_t *id,
                             const lx_store_key_t *key);

/* The configuration or management key of <id> found again, by its digest, in <cfg> (a reload
 * between a request's head and its body may have moved or removed it): its index updated;
 * false when it is gone. Other callers: true. */
bool lx_gw_rebind(const lx_config_t *cfg, lx_gw_ident_t *id);

/* For a stored key: finds it again in the worker's current snapshot into r->key (valid until
 * the handler returns). 0, or 401 with *message (deleted, disabled or expired since the
 * head). */
int lx_gw_bind_key(lx_gw_req_t *r, const char **message);

/* The key's allowlist and default preferences into the plan's request. */
void lx_gw_key_rules(const lx_gw_req_t *r, lx_plan_req_t *q);

/* After the plan: reserves its worst case against the key's ledger (budget, requests and
 * tokens per minute, concurrency) and opens the usage record. 0, or 402 / 429 with <msg> and
 * r->refusal filled. */
int lx_gw_admit(lx_gw_req_t *r, const lx_http_request_t *req, char *msg, size_t cap);

/* The x-ratelimit-* header lines of an admitted request appended to <sb> (in place); none
 * when it has none. */
struct lx_strbuf;
void lx_gw_ratelimit_append(const lx_gw_req_t *r, struct lx_strbuf *sb);

/* The request ended (proxy on_finish, <code> its finish code): settles its hold at the actual
 * cost and queues its usage record. */
void lx_gw_settle(lx_gw_req_t *r, int code);

/* A request that never reached the proxy's end: gives back what it holds, unrecorded. */
void lx_gw_release(lx_gw_req_t *r);

#endif
