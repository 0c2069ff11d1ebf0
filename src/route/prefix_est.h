/*
 * prefix_est.h - the prefix-hit estimate of each endpoint (health row) under routing.balance
 * fleet, as /admin/health and /metrics show it: of the requests llmux sent to the endpoint
 * lately, the share whose prompt prefix key (llm/prefix.h: the hash of the prompt's first
 * 256 bytes, the key the ring places) llmux had sent to that same endpoint recently enough that
 * the server probably still holds it. It is what llmux can know without the server's KV events
 * or a tokenizer: a guess at how often the server found the request's leading KV blocks
 * cached, not a measurement.
 *
 * The model: the server's prefix cache is least-recently-used and holds about the last
 * LX_PREFIX_EST_CACHE_BYTES of prompt text sent to it (1 MiB, about 256k tokens: the order of
 * one 80 GB GPU's KV cache for an 8B model; per provider `prefix_cache_tokens` x 4 bytes,
 * set with lx_prefix_est_set_cache). A key is a hit when the prompts sent to the
 * endpoint since the key was last sent there (by any worker) total at most that. Why a bound
 * at all: without one, a key sent to an endpoint once (a spill past a busy home) counts as
 * cached there forever, and with a few dozen shared system prompts every endpoint soon "has"
 * every key (the GPU benchmark read 99.7% where its replicas measured 35.7%; bench/README.md).
 *
 * Where it errs (llmux sees its own traffic only):
 *   - Too high: the server's cache is smaller than the bound (the benchmark's simulated
 *     replicas hold 65k tokens), or other traffic reached it, or it restarted.
 *   - Too low: the cache is larger; every prompt's whole text counts as inserted, also the part
 *     the server had cached (under a high hit rate keys age faster here than on the server);
 *     two keys of one endpoint share a slot (LX_PREFIX_EST_SLOTS, direct-mapped, the newer
 *     replaces the older: a key is forgotten when any of the k other keys sent to its endpoint
 *     since lands in its slot, 1 - (511/512)^k, 5% at k = 24).
 *   - Grain: one key per request, the first block. A hit says the first 256 bytes are probably
 *     there; a server's token hit rate also counts how much of the rest (the history of a
 *     conversation) it still holds, so per token the two differ.
 *   - Every attempt counts, failed or cancelled ones too (the prompt was sent, or was about to
 *     be); a reload starts an empty table.
 *
 * Cost on the request path (lx_prefix_est_note, a worker, per attempt): a fetch-add on the
 * row's volume, one atomic exchange on the key's slot, one compare-and-swap loop on the row's
 * window word, one or two fetch-adds on its totals; no allocation, no lock, no system call.
 * The table is shared by every worker, written with relaxed atomics: each word is its own fact,
 * nothing is published through them. A slot word is the key's top 43 bits over the row's volume
 * (20 bits, units of LX_PREFIX_EST_UNIT bytes, wrapping at 256 MiB) at the end of its prompt.
 *
 * The window: whole windows of LX_PREFIX_EST_WINDOW_MS on the caller's monotonic clock (every
 * worker's uv_now is one clock); a row's window word packs (window number, requests, hits), so
 * its two counts always belong together; the figures read are the current window's and the one
 * before (between one and two windows of the most recent traffic: `span_ms` says how long).
 */
#ifndef LX_PREFIX_EST_H
#define LX_PREFIX_EST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "route/health.h"

#define LX_PREFIX_EST_SLOTS       512        /* keys remembered per endpoint (a power of two) */
#define LX_PREFIX_EST_WINDOW_MS   10000      /* the window's length */
#define LX_PREFIX_EST_CACHE_BYTES (1u << 20) /* the server's cache by default, in prompt text */
#define LX_PREFIX_EST_CACHE_MAX   (1u << 26) /* ... at most (64 MiB, 16M tokens) */
#define LX_PREFIX_EST_UNIT        256        /* bytes: the volume's unit */

typedef struct lx_prefix_est_row {
    _Alignas(64) _Atomic uint64_t win[2]; /* by window number's parity: number << 40 |
                                             requests << 20 | hits */
    _Atomic uint64_t requests, hits;      /* since the table was made */
    _Atomic uint64_t volume;              /* prompt text sent, LX_PREFIX_EST_UNIT bytes */
    uint32_t horizon; /* the server's cache in units (set before the table is shared) */
    _Alignas(64) _Atomic uint64_t slots[LX_PREFIX_EST_SLOTS]; /* key | place; 0 empty */
} lx_prefix_est_row_t;

typedef struct lx_prefix_est {
    size_t n_rows;
    lx_prefix_est_row_t *rows;
} lx_prefix_est_t;

/* What a row's figures are now. */
typedef struct lx_prefix_est_view {
    uint64_t requests, hits;             /* in the window read (current and previous) */
    uint64_t span_ms;                    /* how much time that window covers */
    uint64_t total_requests, total_hits; /* since the table was made */
} lx_prefix_est_view_t;

/* A table of <n_rows> empty rows (control thread, with the health table), each modelling a
 * cache of LX_PREFIX_EST_CACHE_BYTES. NULL when out of memory. */
lx_prefix_est_t *lx_prefix_est_new(size_t n_rows);

/* Row <row>'s server cache: <bytes> of prompt text (clamped to LX_PREFIX_EST_UNIT ..
 * LX_PREFIX_EST_CACHE_MAX). Before the table is shared: the workers read it unsynchronized. */
void lx_prefix_est_set_cache(lx_prefix_est_t *e, size_t row, uint64_t bytes);
void lx_prefix_est_free(lx_prefix_est_t *e); /* NULL is a no-op */

/*
 * Records that a request with prefix key <key> and a prompt of <prompt_bytes> goes to <row> at
 * <now_ms>: whether the row was sent the key with at most LX_PREFIX_EST_CACHE_BYTES of other
 * prompts since (an estimated hit), and counts it. Key 0 (no prompt) or a row out of range
 * records nothing and returns false. Any thread, lock-free.
 */
bool lx_prefix_est_note(lx_prefix_est_t *e, size_t row, uint64_t key, uint32_t prompt_bytes,
                        uint64_t now_ms);

/* Row <row>'s figures at <now_ms> (zeros for a row out of range). Any thread. */
void lx_prefix_est_read(const lx_prefix_est_t *e, size_t row, uint64_t now_ms,
                        lx_prefix_est_view_t *v);

/* `"prefix_est":{"hit_rate":0.9000 (null without requests),"hits","requests","span_ms",
 * "total_hits","total_requests"}` for /admin/health's fleet rows (without a leading comma). */
void lx_prefix_est_json(lx_strbuf_t *sb, const lx_prefix_est_t *e, size_t row, uint64_t now_ms);

/* The Prometheus text of every row: the gauge llmux_fleet_prefix_hit_estimate (NaN without
 * requests in the window) and the counters llmux_fleet_prefix_requests_total and
 * llmux_fleet_prefix_hits_estimated_total, labelled by <h>'s row keys. malloc'd into *out;
 * 0 or LX_ENOMEM. */
int lx_prefix_est_format_metrics(const lx_prefix_est_t *e, const lx_health_t *h, uint64_t now_ms,
                                 char **out, size_t *len);

#endif
