/*
 * request.h - one request handed to the proxy: the one struct that owns a request's gateway
 * state (its generation, plan, attempts, response scanner). Allocated in api.c, its plan and
 * attempts moved by dispatch.c, its heads built by upstream_head.c. Not for other layers.
 *
 * Lifetime: two references, the proxy's (released by ops->on_free) and the server's (released
 * by on_done, lx_api_done); the struct goes back to the worker's cache when both are through.
 */
#ifndef LX_GATEWAY_REQUEST_H
#define LX_GATEWAY_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/list.h"
#include "gateway/gen.h"
#include "gateway/worker.h"
#include "llm/body.h"
#include "llm/sse_scan.h"
#include "proxy/proxy.h"
#include "route/plan.h"
#include "route/queue.h"
#include "store/keyset.h"
#include "store/ledger.h"
#include "store/record.h"

#define LX_GW_MAX_PLAN     LX_PLAN_MAX
#define LX_GW_MAX_ATTEMPTS 16

/* The attempt-specific part of a request: the current attempt's (in lx_gw_req_t) and a racing
 * hedge's (lx_gw_req_t.other), swapped when the hedge takes over (dispatch_hedge.c). */
typedef struct lx_gw_leg {
    const lx_config_model_t *model;
    const lx_config_provider_t *provider;
    const lx_config_endpoint_t *endpoint;
    const lx_config_route_t *route;
    size_t row;
    bool in_flight;
    uint64_t attempt_start_ns;
} lx_gw_leg_t;

typedef struct lx_gw_attempt {
    uint16_t model, route, ep; /* configuration indexes */
    uint8_t outcome;           /* lx_health_outcome_t */
    int16_t status;            /* the upstream's HTTP status, 0 when none */
    int code;                  /* what went wrong on the way, 0 when nothing */
    int64_t retry_after;       /* seconds, from a 429; -1 when absent */
    uint64_t ms;               /* duration */
} lx_gw_attempt_t;

/* Who calls: found on the request's head (admission.c), kept in the HTTP request's app bytes
 * until the handler copies it here. */
enum lx_gw_who {
    LX_WHO_NONE,       /* no key (`auth: none`) */
    LX_WHO_CONFIG,     /* a key of `auth.keys` (index) */
    LX_WHO_STORED,     /* a stored key (digest; looked up again in the worker's snapshot) */
    LX_WHO_MANAGEMENT, /* a management key: index 0 is admin.sha256, i + 1 admin.keys[i] */
};

typedef struct lx_gw_ident {
    uint8_t who;
    uint8_t priority; /* a stored key's (store/keyset.h), set by lx_gw_bind_key; else 0 */
    uint16_t index;
    uint8_t digest[32];
} lx_gw_ident_t;

/* A refusal at admission (402, 429): what its answer carries beyond the status and message. */
typedef struct lx_gw_refusal {
    char headers[512]; /* Retry-After, x-ratelimit-* lines */
    char meta[256];    /* members of error.metadata */
    const char *error_type;
    const char *code;
} lx_gw_refusal_t;

typedef struct lx_gw_req {
    lx_proxy_t px; /* first: req->data points here */
    lx_gw_worker_t *gw;
    lx_gw_gen_t *gen; /* the configuration this request started with (a reference) */
    lx_list_t link;   /* in gw->active while the proxy runs */
    /* The current attempt: */
    const lx_config_model_t *model;
    const lx_config_provider_t *provider;
    const lx_config_endpoint_t *endpoint;
    const lx_config_route_t *route;
    size_t row;                /* its health row */
    bool in_flight;            /* counted in the row's in-flight numbers */
    uint64_t attempt_start_ns; /* lx_worker_clock_ns() */
    /* The plan: plan[0, n_plan), below. */
    uint16_t n_plan;
    uint16_t plan_pos;     /* the entry being tried */
    int32_t pin_ep;        /* session stickiness: the endpoint for the first entry, or -1 */
    uint64_t session;      /* hash of the session id; 0 without one */
    uint64_t prefix_key;   /* balance fleet: the prompt prefix's ring key (llm/prefix.h); 0 */
    uint32_t prefix_len;   /* ... and the prompt's bytes (the prefix-hit estimate's volume) */
    int16_t full_pos;      /* the first plan entry whose replicas were all full, or -1 */
    bool queued;           /* it waited in an admission queue (it does not wait twice) */
    lx_queue_node_t qnode; /* in gen->queues[plan[full_pos].model] while it waits */
    uint64_t deadline_ms;  /* routing.deadline from the start */
    unsigned n_attempts;   /* attempts[0, n_attempts), below; the current one is the last */
    /* Hedging (dispatch_hedge.c): one hedge per request. While it races, its attempt is
     * attempts[other_idx] (just before the current one) and its leg is `other`. */
    bool hedged;        /* a hedge was started */
    bool hedging;       /* prepare_attempt is choosing a hedge's replica */
    uint16_t other_idx; /* the hedge's attempt */
    lx_gw_leg_t other;  /* the hedge's leg while it races (in_flight: its count is held) */
    /* The current attempt's head against the hedge threshold (health.h: lx_health_head). */
    uint32_t head_ms; /* the threshold, ms after the attempt's start; 0: none known */
    bool head_late;   /* reported late already (its hedge timer passed the threshold) */
    /* The request: */
    const char *upstream_path; /* "/chat/completions", ... */
    bool embeddings;
    char gen_id[32];
    int finish_code;
    unsigned refs;
    bool stream;            /* the client asked for a stream */
    bool openrouter;        /* served under /api/v1: OpenRouter's shapes */
    bool drop_usage;        /* llmux added include_usage: the usage chunk is not the client's */
    bool rewrite;           /* the served model's upstream name differs from its public id */
    bool scanning;          /* scan is initialised */
    lx_buf_t *resp_headers; /* the client's response head lines (a small pool chunk) */
    char *stream_head;      /* early commit: the head sent at once (malloc'd) */
    /* A request that cannot be routed (lx_dispatch_start): what its error says beyond the
     * message (route/plan.h). */
    lx_plan_reject_t reject;
    /* Accounting (admission.c): */
    lx_gw_ident_t ident;
    const lx_store_key_t *key; /* while lx_api_handle runs: the stored key, else NULL */
    lx_gw_refusal_t *refusal;  /* while lx_api_handle runs: where a refusal is described */
    lx_hold_t hold;            /* what admission took from the key's ledger */
    lx_ratelimit_view_t rl;    /* the key's rate limits after admission (response headers) */
    int64_t max_tokens;        /* the request's max_(completion_)tokens, -1 when none */
    int64_t choices;           /* completions it asks for: the larger of n and best_of, >= 1 */
    uint32_t prompt_estimate;  /* tokens, from the body's size */
    lx_record_t *rec;          /* its usage record, filled until the request ends */
    /* Last, and not zeroed at allocation: each is initialised by its own function, or read
     * only below a count kept above. */
    lx_plan_entry_t plan[LX_GW_MAX_PLAN]; /* (model, route) pairs in attempt order */
    lx_gw_attempt_t attempts[LX_GW_MAX_ATTEMPTS];
    lx_proxy_hedge_t hedge; /* the proxy's side of the hedge (initialised by the proxy) */
    lx_body_scan_t scan;    /* lx_body_scan() */
    lx_sse_scan_t sse;      /* lx_sse_scan_init*() when `scanning`: observes (and rewrites) the
                             * response body */
} lx_gw_req_t;

#endif
