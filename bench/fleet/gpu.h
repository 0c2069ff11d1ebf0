/*
 * gpu.h - llmux-fleet-gpu, the GPU-fleet benchmark: four simulated model-server replicas (the
 * mock's GPU mode, in this process), a multi-turn chat workload over shared system prompts with
 * Poisson arrivals, the same arrivals against llmux (three balances), nginx and HAProxy.
 * bench/fleet/README.md ("GPU fleet") says what is measured and how.
 *
 *   gpu_work.c    the workload: system prompts, conversations, the schedule, request bodies,
 *                 the capacity model
 *   gpu_client.c  the open-loop streaming client (libuv, one thread), per-request records
 *   gpu_proxy.c   the targets: configs of llmux, nginx and HAProxy, their child processes
 *   gpu_main.c    options, the replicas, the matrix of runs, the report
 */
#ifndef FLEET_GPU_H
#define FLEET_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mock.h"

#define GB_REPLICAS 4
#define GB_MODEL    "fleet/model"

/* ---- the workload (gpu_work.c) ---- */

typedef struct {
    uint64_t seed;
    int n_prompts;        /* shared system prompts */
    int sys_min, sys_max; /* their length in tokens (4 bytes each) */
    int turns_min, turns_max;
    int user_min, user_max; /* a user message, tokens */
    int out_min, out_max;   /* max_tokens of a turn (the assistant's reply in later turns) */
    double gap_s;           /* mean time between two turns of one conversation */
    char **sys;             /* the system prompts' text (JSON-safe) */
    size_t *sys_len;
} gb_work_t;

/* One scheduled request: turn `turn` of conversation `conv` (system prompt `sys`). */
typedef struct {
    uint64_t t_ns; /* from the run's start */
    uint32_t conv;
    uint16_t sys;
    uint16_t turn; /* 1-based */
} gb_arrival_t;

typedef struct {
    char *p;
    size_t len, cap;
} gb_buf_t;

/* Fills w's text (system prompts) from its settings; -1 when out of memory. */
int gb_work_init(gb_work_t *w);
void gb_work_free(gb_work_t *w);

/* Poisson arrivals at `rate` req/s for `seconds`, each advancing one of a pool of
 * rate x gap_s active conversations chosen at random; a finished conversation is replaced by a
 * new one. Deterministic from (w->seed, stream). *out is malloc'd; its count, or -1. */
long gb_schedule(const gb_work_t *w, double rate, double seconds, uint64_t stream,
                 gb_arrival_t **out);

/* The request body of arrival a (JSON, streaming, max_tokens, the conversation so far). */
int gb_body(const gb_work_t *w, const gb_arrival_t *a, gb_buf_t *out);

/* max_tokens of turn `turn` of conversation `conv`. */
int gb_out_tokens(const gb_work_t *w, uint32_t conv, int turn);

/* The workload's own checks (gpu_check.c): the number of failures, each printed. */
int gb_check_work(const gb_work_t *w, const lx_mock_gpu_t *g);

/* The replicas' saturated service model (the mock's GPU mode). */
typedef struct {
    double prompt_tokens;  /* mean prompt tokens per request (body bytes / 4) */
    double uncached_warm;  /* mean uncached tokens when every reusable block is cached */
    double out_tokens;     /* mean output tokens */
    double service_warm_s; /* mean time a request holds a batch slot, warm, full batch */
    double service_cold_s; /* the same with no prefix cache hit at all */
    double capacity_warm;  /* fleet req/s: replicas x max_running / service_warm_s */
    double capacity_cold;
} gb_capacity_t;

void gb_capacity(const gb_work_t *w, const gb_arrival_t *a, long n, const lx_mock_gpu_t *g,
                 gb_capacity_t *out);

/* ---- the client (gpu_client.c) ---- */

typedef struct {
    int32_t ttft_us; /* scheduled time to the first content chunk; -1 none */
    int32_t e2e_us;  /* scheduled time to [DONE]; -1 not complete */
    uint32_t tokens; /* content chunks received */
    int32_t lag_us;  /* from the scheduled time to the request being sent */
    int16_t status;  /* HTTP status; 0 no answer */
    uint8_t done;    /* the exchange ended (answer complete, error, or connection lost) */
    uint8_t ok;      /* 200 and a stream that ended with [DONE] */
} gb_rec_t;

typedef struct gb_run {
    uint16_t port;
    /* non-NULL: no target, each request goes straight to replica (system prompt mod 4) */
    const uint16_t *direct_ports;
    const gb_work_t *work;
    const gb_arrival_t *arr;
    long n;
    double warm_s, measure_s, drain_s; /* windows: [0, warm), [warm, warm + measure), drain */
    gb_rec_t *recs;                    /* n records, filled */
    uint64_t window_tokens;            /* content chunks received inside the measured window */
    uint64_t window_done;              /* answers completed (200, [DONE]) inside the window */
    double elapsed_s;                  /* from the start to the end of the run */
    /* called on the client's thread at the start and at the end of the measured window */
    void (*on_window)(struct gb_run *r, int edge);
    void *arg;
} gb_run_t;

/* Runs the schedule against 127.0.0.1:port; 0, or -1 when the client could not run. */
int gb_client_run(gb_run_t *r);

/* ---- the targets (gpu_proxy.c) ---- */

/* GB_T_AFFINITY is a reference, not a proxy: the client sends each conversation straight to
 * the replica of its system prompt (prompt index mod 4), perfect affinity without balance. */
enum { GB_T_FLEET, GB_T_LEAST, GB_T_RR, GB_T_NGINX, GB_T_HAPROXY, GB_T_AFFINITY, GB_T_COUNT };
extern const char *const gb_target_name[GB_T_COUNT];

typedef struct {
    const char *llmux, *nginx, *haproxy; /* executables */
    const char *tmpdir;
    bool no_fleet_keys; /* leave routing.balance and the other issue-14 keys out */
    int max_in_flight;  /* providers[].max_in_flight; 0 leaves it out */
    int queue_size;     /* routing.queue_size; -1 leaves it out */
    const char *queue_timeout;
    const char *affinity_slack; /* routing.affinity_slack, NULL: llmux's default */
    const char *affinity_eps;   /* routing.affinity_eps, NULL: llmux's default */
    const char *affinity_wait;  /* routing.affinity_wait, NULL: llmux's default */
    const char *queue_target;   /* routing.queue_target, NULL: llmux's default */
    const char *queue_interval; /* routing.queue_interval, NULL: llmux's default */
    const char *scrape_interval;
    uint16_t mock_ports[GB_REPLICAS];
    uint32_t prefix_cache_tokens; /* providers[].prefix_cache_tokens (the replicas' cache); 0
                                     leaves it out */
} gb_proxy_opts_t;

/* Writes the target's config, starts it as a child and waits (10 s at most) until it answers
 * through to a replica; 0, or -1 (the child is then stopped). */
int gb_target_start(int target, const gb_proxy_opts_t *o, uint16_t port);
/* Stops the running child: SIGTERM, SIGKILL after 5 s. Async-signal-safe. */
void gb_target_stop(void);

/* ---- llmux's prefix-hit estimate (gpu_est.c) ---- */

/* Sums, over the endpoints, llmux's llmux_fleet_prefix_requests_total and
 * llmux_fleet_prefix_hits_estimated_total from the target's /metrics; 0, or -1 when it has
 * none (not llmux, not balance fleet, no answer). */
int gb_llmux_prefix_est(uint16_t port, uint64_t *requests, uint64_t *hits);
/* What the target's column runs, for the report (e.g. "routing.balance: fleet"). */
const char *gb_target_desc(int target, const gb_proxy_opts_t *o);

#endif
