/*
 * mock.h - the mock LLM server: an OpenAI-shaped HTTP/1.1 server on its own thread and libuv
 * loop, with faults injected per request (status, delays, interim answers, dribbled heads, chunk
 * pacing, resets, hangs).
 *
 * Used in-process by the integration tests, and as the standalone `llmux-mock` executable by
 * the demo config and the benchmarks. In GPU mode (lx_mock_set_gpu, `llmux-mock --gpu`) a server
 * simulates a model server on a GPU: a bounded running batch, a queue, prefill over a prefix
 * cache, batch-paced decode, vLLM's metrics on GET /metrics. Behaviour and controls:
 * test/mock/README.md.
 */
#ifndef LX_MOCK_H
#define LX_MOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lx_mock lx_mock_t;

/* Starts a mock server on its own thread and loop, listening on host:port (an IPv4 or IPv6
 * literal, or a name resolved once; NULL = 127.0.0.1; port 0 = ephemeral). The thread blocks
 * SIGPIPE and the usual process signals (INT, TERM, HUP, USR1, USR2, CHLD) so they reach other
 * threads. NULL on failure (address unusable, out of memory). */
lx_mock_t *lx_mock_start(const char *host, uint16_t port);

/* The port the mock listens on (the real one when started with port 0). */
uint16_t lx_mock_port(const lx_mock_t *m);

/* Stops the loop, joins the thread, closes every connection, frees everything. NULL is a
 * no-op. Must not be called from the mock's own thread. */
void lx_mock_stop(lx_mock_t *m);

/* Counters (thread-safe). */
/* Requests fully received (head and body parsed to the end). */
uint64_t lx_mock_requests(lx_mock_t *m);
/* Connections accepted. */
uint64_t lx_mock_connections(lx_mock_t *m);
/* Connections open now: accepted and not closed yet, by either side (not zeroed by
 * lx_mock_reset). */
uint64_t lx_mock_open_connections(lx_mock_t *m);
/* Connections the peer closed or reset while the mock was still producing a response
 * (waiting in a delay, in a prelude of interim answers or dribbled header lines, streaming,
 * hanging, or with response bytes not yet written): a cancelled generation. Counted once per
 * connection. */
uint64_t lx_mock_closes_by_peer(lx_mock_t *m);

/* A malloc'd copy of the raw bytes (head + body as received, chunked framing included) of the
 * n-th most recent request (0 = last), NUL-terminated for convenience (the terminator is not
 * counted in *len); NULL when there is no such request or out of memory. Caller frees. The last
 * LX_MOCK_RECORDS requests are kept, each truncated to its first LX_MOCK_RECORD_MAX bytes. */
char *lx_mock_request_raw(lx_mock_t *m, size_t n, size_t *len);
#define LX_MOCK_RECORDS    32
#define LX_MOCK_RECORD_MAX (1024u * 1024u)

/* Monotonic time (CLOCK_MONOTONIC, ns) at which the mock last saw a peer close or reset a
 * connection mid-response (see lx_mock_closes_by_peer); 0 when never. */
uint64_t lx_mock_last_peer_close_ns(lx_mock_t *m);

/* Waits (polling every millisecond, bounded by timeout_ms) until lx_mock_requests(m) >= n;
 * returns 0, or -1 on timeout. */
int lx_mock_wait_requests(lx_mock_t *m, uint64_t n, uint64_t timeout_ms);

/* Clears the request records and zeroes every counter and the last peer-close time. Safe while
 * the mock runs; a connection still open keeps working. */
void lx_mock_reset(lx_mock_t *m);

/* ---- endpoint-wide faults, changeable while the mock runs ---- */

/* Faults that apply to every request of one mock, on top of the per-request controls. */
typedef struct lx_mock_faults {
    /* answer 500 to this share (per mille, 0-1000) of requests; which ones is decided by a
     * PRNG seeded with seed and stepped once per request, so a run is reproducible */
    uint32_t fail_permille;
    /* extra delay before the response head (slow time to first byte), added to delay_ms */
    uint32_t ttfb_delay_ms;
    /* with this many requests already in progress, answer 429 with Retry-After: 1 at once
     * (0 = no limit) */
    uint32_t max_concurrent;
    /* a crashed server: the listening socket is closed (new connections are refused) and every
     * open connection is reset; when down goes back to false, the same address and port are
     * bound again */
    bool down;
    /* the fail PRNG's seed (0 = a fixed default); a different seed restarts the sequence */
    uint64_t seed;
} lx_mock_faults_t;

/* Replaces the mock's faults with *f (NULL = none). Thread-safe (atomics), from any thread but
 * the mock's own. Request faults apply to requests completed from then on; a change of down is
 * applied asynchronously on the mock's loop (see lx_mock_is_down). Order of the checks for a
 * request: the hang control, max_concurrent (429 at once), fail_permille (500 after the delays),
 * then the per-request controls. */
void lx_mock_set_faults(lx_mock_t *m, const lx_mock_faults_t *f);

/* Whether the mock is down as applied on its loop: true once the listener is closed after
 * down was set, false again once it listens after down was cleared. */
bool lx_mock_is_down(lx_mock_t *m);

/* Waits (polling every millisecond, bounded by timeout_ms) until lx_mock_is_down(m) == down;
 * returns 0, or -1 on timeout. */
int lx_mock_wait_down(lx_mock_t *m, bool down, uint64_t timeout_ms);

/* Answer counters (thread-safe), counted when an answer is complete (for streams, when [DONE]
 * is produced); zeroed by lx_mock_reset. */
/* Answers with a 2xx status. */
uint64_t lx_mock_answered_ok(lx_mock_t *m);
/* Answers with a 5xx status (fail_permille or the status control). */
uint64_t lx_mock_answered_failed(lx_mock_t *m);
/* Answers with 429 (max_concurrent or the status control). */
uint64_t lx_mock_answered_limited(lx_mock_t *m);

/* ---- GPU-server mode: a simulated model server (test/mock/README.md, "GPU mode") ---- */

/* One server's simulated GPU. Chat and completions requests then go through an engine: at most
 * max_running sequences run at once, the others wait in the server's own FIFO queue; a request
 * is admitted, pays a prefill for its prompt tokens not found in the prefix cache, then
 * decodes its output tokens one by one at an interval that grows with the batch. */
typedef struct lx_mock_gpu {
    uint32_t max_running;     /* sequences running at once (at least 1) */
    uint32_t max_waiting;     /* queue bound: a request arriving at a full queue gets 429 at once;
                               * 0 = unbounded */
    uint32_t prefill_base_us; /* fixed prefill cost per request */
    uint32_t prefill_us_per_token; /* per prompt token not in the prefix cache */
    uint32_t itl_us;               /* decode: interval between output tokens with a batch of 1 */
    double itl_alpha;       /* itl = itl_us * (1 + itl_alpha * (running - 1)), read per token */
    uint32_t cache_blocks;  /* prefix cache size in blocks (0 = no prefix caching) */
    uint32_t block_tokens;  /* tokens per block (at least 1; 16 = 64 bytes of prompt) */
    uint32_t output_tokens; /* output length when the request has no max_tokens (or
                             * max_completion_tokens) and no chunks control */
    bool random_output;     /* output length drawn from [1, that length], by a hash of the seed
                             * and the prompt (the same prompt, the same length) */
    bool legacy_metrics;    /* /metrics says vllm:gpu_cache_usage_perc and
                             * vllm:gpu_prefix_cache_{queries,hits}_total (vLLM before 0.9.2) */
    uint64_t seed;          /* the output-length hash's seed */
    char model_name[128];   /* the model_name label of /metrics ("" = mock-model) */
} lx_mock_gpu_t;

/* *cfg = the defaults: max_running 8, unbounded queue, prefill 1000 us + 100 us per token,
 * itl 10,000 us, itl_alpha 0.1, 4096 blocks of 16 tokens, 16 output tokens, no random output,
 * vLLM 0.12 metric names, seed 1, model "mock-model". */
void lx_mock_gpu_defaults(lx_mock_gpu_t *cfg);

/* Turns GPU mode on with *cfg (copied), or off (NULL) for requests arriving from then on;
 * sequences already queued or running finish under the engine. Applied on the mock's loop
 * before it returns (from any thread but the mock's own). The prefix cache is emptied and
 * re-sized when no sequence is queued or running then; otherwise it keeps its size and
 * contents. 0, or -1 when the loop did not apply it within 2 s. */
int lx_mock_set_gpu(lx_mock_t *m, const lx_mock_gpu_t *cfg);

/* What one server's engine has seen (thread-safe snapshot; counters zeroed by lx_mock_reset,
 * gauges not). */
typedef struct lx_mock_gpu_stats {
    uint64_t prefix_queries; /* prompt tokens of admitted requests (vllm:prefix_cache_queries) */
    uint64_t prefix_hits;    /* of which found in the prefix cache (vllm:prefix_cache_hits) */
    uint64_t success;        /* sequences finished (vllm:request_success) */
    uint64_t admitted;       /* sequences admitted to run */
    uint32_t running;        /* sequences running now (prefill or decode) */
    uint32_t waiting;        /* requests in the queue now */
    uint32_t max_waiting;    /* the most requests ever in the queue at once (since a reset) */
    uint32_t cached_blocks;  /* blocks in the prefix cache now (at most cache_blocks) */
    double kv_usage;         /* vllm:kv_cache_usage_perc, 0..1 */
} lx_mock_gpu_stats_t;

void lx_mock_gpu_stats(lx_mock_t *m, lx_mock_gpu_stats_t *out);

#endif
