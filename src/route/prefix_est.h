/*
 * prefix_est.h - the prefix-hit estimate of each endpoint (health row) under routing.balance
 * fleet, as /admin/health and /metrics show it: of the requests llmux sent to the endpoint
 * lately, the share whose prompt prefix key (llm/prefix.h: the hash of the prompt's first
 * 256 bytes, the key the ring places) llmux had sent to that same endpoint before, recently
 * enough to still be in this table. It is what llmux can know without the server's KV events
 * or a tokenizer: a guess at how often the server found the request's leading KV blocks
 * cached, not a measurement.
 *
 * What it counts and where it errs (llmux sees its own traffic only):
 *   - Too high: the server evicted the prefix (its KV cache is smaller than this table's
 *     memory, or other traffic pushed it out), or restarted; the table still says "sent there".
 *   - Too low: two live keys of one endpoint share a slot (LX_PREFIX_EST_SLOTS, direct-mapped,
 *     the newer replaces the older): a key is forgotten when any of the k other keys sent to
 *     its endpoint since lands in its slot, 1 - (511/512)^k (5% at k = 24, 39% at 256); or the
 *     server got the prefix some other way (another gateway, a direct client).
 *   - Grain: one key per request, the first block. A hit says the first 256 bytes were sent
 *     there before; a server's token hit rate also counts how much of the rest (the history of
 *     a conversation) it still holds, so per token the two differ (bench/fleet measures both).
 *   - Every attempt counts, failed or cancelled ones too (the prompt was sent, or was about to
 *     be); a reload starts an empty table.
 *
 * Cost on the request path (lx_prefix_est_note, a worker, per attempt): one atomic exchange
 * on the row's slot, one compare-and-swap loop on the row's window word, one or two relaxed
 * fetch-adds; no allocation, no lock, no system call. The table is shared by every worker (a
 * key sent there by any worker counts), written with relaxed atomics: each word is its own
 * fact, nothing is published through them.
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

#define LX_PREFIX_EST_SLOTS     512   /* keys remembered per endpoint (a power of two) */
#define LX_PREFIX_EST_WINDOW_MS 10000 /* the window's length */

typedef struct lx_prefix_est_row {
    _Alignas(64) _Atomic uint64_t win[2]; /* by window number's parity: number << 40 |
                                             requests << 20 | hits */
    _Atomic uint64_t requests, hits;      /* since the table was made */
    _Alignas(64) _Atomic uint64_t slots[LX_PREFIX_EST_SLOTS]; /* keys; 0 empty */
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

/* A table of <n_rows> empty rows (control thread, with the health table). NULL when out of
 * memory. */
lx_prefix_est_t *lx_prefix_est_new(size_t n_rows);
void lx_prefix_est_free(lx_prefix_est_t *e); /* NULL is a no-op */

/*
 * Records that a request with prefix key <key> goes to <row> at <now_ms>: whether the row
 * remembered the key (an estimated hit), and counts it. Key 0 (no prompt) or a row out of range
 * records nothing and returns false. Any thread, lock-free.
 */
bool lx_prefix_est_note(lx_prefix_est_t *e, size_t row, uint64_t key, uint64_t now_ms);

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
