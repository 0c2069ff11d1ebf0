/*
 * gateway_int.h - state shared by the gateway's files (gateway.c: lifecycle; api.c: requests).
 * Not for other layers.
 */
#ifndef LX_GATEWAY_INT_H
#define LX_GATEWAY_INT_H

#include <stdatomic.h>

#include "config/config.h"
#include "llm/body.h"
#include "gateway/gateway.h"
#include "route/prefs.h"
#include "llm/sse_scan.h"
#include "http/http_server.h"
#include "net/listener.h"
#include "obs/log.h"
#include "proxy/conn_pool.h"
#include "route/health.h"
#include "proxy/proxy.h"

/*
 * The health table of one configuration, shared by every worker's generation built from it
 * (and by the control thread, which re-scores it). Rows are (model, route, endpoint) in
 * configuration order: the row of endpoint j of route r of model m is route_row[model_base[m]
 * + r] + j. Freed when the last generation using it and the gateway have let go.
 */
typedef struct lx_gw_health {
    atomic_uint refs;
    lx_health_t *table;
    size_t *model_base; /* per model: its first route's index into route_row */
    size_t *route_row;  /* per route of every model: the row of its endpoint 0 */
    size_t n_rows;
} lx_gw_health_t;

lx_gw_health_t *lx_gw_health_new(const lx_config_t *cfg, unsigned n_shards,
                                 const lx_gw_health_t *previous);
lx_gw_health_t *lx_gw_health_ref(lx_gw_health_t *h);
void lx_gw_health_unref(lx_gw_health_t *h);

static inline size_t lx_gw_row(const lx_gw_health_t *h, size_t model, size_t route, size_t ep)
{
    return h->route_row[h->model_base[model] + route] + ep;
}

/*
 * The TLS contexts of one configuration: a server context per TLS listen entry and a client
 * context per provider with an https endpoint. Built on the control thread (start, reload),
 * shared read-only by every worker, refcounted (atomic): each generation holds one reference,
 * and each TLS session holds its own context, so a reload never cuts a connection.
 */
typedef struct lx_gw_tls {
    atomic_uint refs;
    lx_tls_server_t **servers; /* per listen entry; NULL for plain HTTP */
    size_t n_servers;
    lx_tls_client_t **clients; /* per provider; NULL without an https endpoint */
    size_t n_clients;
} lx_gw_tls_t;

/*
 * One configuration generation as one worker uses it: the snapshot and everything derived
 * from it. The worker holds the current one; each request (and probe) holds the one it
 * started with, so a reload never changes a request midway. A retired generation's pools are
 * disposed when its last request ends (its idle upstream connections close then), and its
 * memory is freed by the worker's next sweeps (see sweep_retired in gateway.c): a DNS lookup
 * or a closing connection of a disposed pool may still point at it for a loop turn or two.
 */
typedef struct lx_gw_gen {
    struct lx_gw_gen *next_retired;
    unsigned refs;
    uint64_t disposed_tick; /* the worker's sweep tick when refs reached 0 */
    lx_config_t *cfg;
    lx_conn_pool_t *pools; /* one per provider endpoint, indexed by pool_base[provider] + j */
    size_t *pool_base;
    size_t n_pools;
    uint32_t *rr;           /* per provider: next replica (round robin) */
    uint64_t rr_plan;       /* routing.strategy round_robin: the rotation counter */
    lx_gw_health_t *health; /* a reference */
    lx_gw_tls_t *tls;       /* a reference */
    uint32_t *in_flight;    /* per health row: this worker's attempts in flight */
    uint64_t serial;        /* tells generations apart in the session table */
    char *models_json;
    size_t models_json_len;
    bool disposed;
} lx_gw_gen_t;

/* Session stickiness: where a session was last served (per worker; see dispatch.c). */
typedef struct lx_gw_session {
    uint64_t hash;    /* of the session id; 0: free slot */
    uint64_t serial;  /* the generation the indexes below belong to */
    uint64_t last_ms; /* last use */
    uint16_t model, route, ep;
} lx_gw_session_t;

#define LX_GW_SESSIONS  4096 /* slots per worker (a power of two) */
#define LX_GW_REQ_CACHE 32   /* request structs a worker keeps for reuse */

/* Active probes: what the control thread knows of one endpoint (probe.c). */
typedef struct lx_gw_probe_state {
    uint64_t total;    /* outcomes recorded in its rows at the last look */
    uint64_t since_ms; /* ... unchanged since then; 0: not looked at yet */
} lx_gw_probe_state_t;

typedef struct lx_gw_worker {
    lx_worker_t worker;
    struct lx_gateway *gw;
    lx_gw_gen_t *gen;     /* the current generation (one reference) */
    lx_gw_gen_t *retired; /* generations replaced by a reload */
    lx_list_t active;     /* requests handed to the proxy */
    lx_http_server_t http;
    lx_listener_t *listeners;
    int *listen_fds; /* one per listen entry, handed over at start */
    size_t n_listeners;
    size_t n_listeners_open;
    lx_access_log_t *alog;
    uint64_t generations;      /* X-Generation-Id counter ... */
    uint64_t gen_seed;         /* ... mixed with a per-start random value */
    uint64_t rng;              /* routing's random state */
    lx_gw_session_t *sessions; /* LX_GW_SESSIONS slots, allocated at the first session */
    lx_list_t probes;          /* active probes running on this worker */
    struct lx_gw_req *req_cache[LX_GW_REQ_CACHE]; /* freed request structs kept for reuse */
    unsigned n_req_cache;
    uv_timer_t flush; /* writes the access log every 100 ms (or when half full), and frees
                       * retired generations nothing reaches any more */
    uint64_t ticks;   /* flush timer runs so far */
    uv_timer_t shutdown_timer;
    bool draining;
    bool stopping;
} lx_gw_worker_t;

struct lx_gateway {
    lx_config_t *cfg;
    lx_gw_health_t *health; /* the current configuration's table (a reference) */
    lx_gw_tls_t *tls;       /* the starting configuration's TLS contexts (a reference) */
    /* The control thread: health re-scoring, and building reloads' health tables. */
    uv_thread_t ctl_thread;
    uv_loop_t ctl_loop;
    uv_async_t ctl_wakeup;
    uv_timer_t ctl_rescore;
    uv_timer_t ctl_probe;
    lx_config_t *ctl_cfg;             /* the configuration of `health` (a reference) */
    lx_gw_probe_state_t *probe_state; /* per endpoint of every provider, in config order */
    size_t n_probe_state;
    unsigned next_probe_worker;
    uv_mutex_t ctl_lock;     /* guards the two fields below */
    lx_config_t *ctl_reload; /* a configuration to publish (a reference), or NULL */
    bool ctl_stop;
    uint64_t next_serial;
    lx_gw_worker_t *workers;
    unsigned n_workers;
    uint16_t *ports; /* per listen entry */
    atomic_uint running;
    atomic_size_t generations; /* allocated in all workers, current and retired (tests) */
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
};

/* One request handed to the proxy: its plan, its attempts, and what the response scanner
 * needs. Freed when both the proxy (on_free) and the server (on_done) are through with it. */
#define LX_GW_MAX_PLAN     64
#define LX_GW_MAX_ATTEMPTS 16

typedef struct lx_gw_attempt {
    uint16_t model, route, ep; /* configuration indexes */
    uint8_t outcome;           /* lx_health_outcome_t */
    int16_t status;            /* the upstream's HTTP status, 0 when none */
    int code;                  /* what went wrong on the way, 0 when nothing */
    int64_t retry_after;       /* seconds, from a 429; -1 when absent */
    uint64_t ms;               /* duration */
} lx_gw_attempt_t;

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
    uint16_t plan_pos;    /* the entry being tried */
    int32_t pin_ep;       /* session stickiness: the endpoint for the first entry, or -1 */
    uint64_t session;     /* hash of the session id; 0 without one */
    uint64_t deadline_ms; /* routing.deadline from the start */
    unsigned n_attempts;  /* attempts[0, n_attempts), below */
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
    /* A request that cannot be routed (lx_dispatch_start): its error's OpenAI code and param
     * (static strings, NULL for null) and its message's length (it may hold a NUL: the model
     * name as the client wrote it); 0 when the message is a C string. */
    const char *reject_code;
    const char *reject_param;
    size_t reject_len;
    /* Last, and not zeroed at allocation: each is initialised by its own function, or read
     * only below a count kept above. */
    /* (model, route) pairs in attempt order */
    struct {
        uint16_t model, route;
    } plan[LX_GW_MAX_PLAN];
    lx_gw_attempt_t attempts[LX_GW_MAX_ATTEMPTS];
    lx_body_scan_t scan; /* lx_body_scan() */
    lx_sse_scan_t sse;   /* lx_sse_scan_init*() when `scanning`: observes (and rewrites) the
                          * response body */
} lx_gw_req_t;

/* The plan and the attempts (dispatch.c). */

/* Builds <r>'s plan from its body (scanned into r->scan), preferences and the health table,
 * applies session stickiness, and prepares the first attempt. Returns 0, or an HTTP status
 * with a message in <msg> (the request cannot be routed). */
int lx_dispatch_start(lx_gw_req_t *r, lx_http_request_t *req, char *msg, size_t cap);

/* The current attempt ended: records its outcome (health table, attempt list, in-flight). */
void lx_dispatch_end_attempt(lx_gw_req_t *r, int code);

/* After a failed attempt: prepares the next one (true), or says there is none (false):
 * the failure is not worth a retry, or the plan, routing.max_attempts or the deadline is
 * exhausted. */
bool lx_dispatch_next(lx_gw_req_t *r, int code);

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

/* A request was served: remembers the endpoint for its session. */
void lx_dispatch_served(lx_gw_req_t *r);

/* Appends the attempts as a JSON array to <sb> (access log). */
struct lx_strbuf;
void lx_dispatch_format_attempts(const lx_gw_req_t *r, struct lx_strbuf *sb);

/* The heads of the current attempt (upstream_head.c): the upstream request (r->px.out) and the
 * lines the client's response head gets (r->resp_headers). False when one does not fit. */
bool lx_gw_build_request(lx_gw_req_t *r);
bool lx_gw_build_resp_headers(lx_gw_req_t *r);

/* Active probes (probe.c). */

/* Control thread: posts a probe to a worker for each endpoint with a probe path whose rows
 * recorded nothing for health.probe_interval. */
void lx_probe_check(lx_gateway_t *g, uint64_t now_ms);

/* Worker: ends every probe still running (stop). */
void lx_probe_cancel_all(lx_gw_worker_t *gw);

/* Generations (gateway.c). */
lx_gw_gen_t *lx_gw_gen_ref(lx_gw_gen_t *g);
void lx_gw_gen_unref(lx_gw_worker_t *w, lx_gw_gen_t *g);

/* Ends every request in <w>->active with <code> (shutdown timeout) (api.c). */
void lx_api_cancel_all(lx_gw_worker_t *w, int code);

/* The HTTP request handler and its hooks (api.c). lx_api_head admits a request on its head
 * (route, method, key) before any body byte is read; lx_api_handle does not check again. */
int lx_api_head(lx_http_request_t *req, const char **message, const char **headers);
void lx_api_handle(lx_http_request_t *req);
void lx_api_done(lx_http_request_t *req);
size_t lx_api_format_error(const lx_http_request_t *req, char *buf, size_t cap, int status,
                           const char *message);

#endif
