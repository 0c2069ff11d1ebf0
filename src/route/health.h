/*
 * health.h - the provider health table: one row per (provider, endpoint, model).
 *
 * Workers record every attempt's outcome into their own shard (relaxed atomics, no lock, no
 * allocation). A circuit breaker per row, shared by all shards, ejects an endpoint after
 * consecutive failures and lets one probe through after a cooldown. The control thread
 * re-scores the table every few minutes (a rolling window for the figures people read, and
 * recent figures decayed by half every re-score interval for the decisions) and publishes an
 * immutable snapshot of per-row results that workers read without locking. A row clearly
 * worse than its model's best - success rate, or time to first byte - is demoted to the
 * router's exploration share (lx_health_rescore()). The table is pure: no I/O, no loop; time
 * comes in as monotonic milliseconds.
 *
 * Threads
 * - lx_health_record() and lx_health_inflight_add() on shard <s>: one writer thread per shard
 *   at a time (shard = worker id; give the control thread its own shard if it records probes).
 * - lx_health_available(), lx_health_admit(), lx_health_scores() and every read accessor:
 *   any thread; with opts.qsbr, the ones that read the scores (lx_health_scores(),
 *   lx_health_last_rescore(), the formatters) on a reader of that domain or the re-scoring
 *   thread.
 * - lx_health_rescore(): one thread (the control thread), never two at once. It rewrites a
 *   replaced score snapshot only after its grace period (opts.qsbr): the readers' quiescent
 *   points, not time, make a reader's snapshot safe.
 * - lx_health_new() and lx_health_free(): while no other thread uses the table being created
 *   or freed; <previous> may still be in use by workers while a new table is made from it,
 *   but not re-scored (make it on the re-scoring thread: it copies previous's recent figures,
 *   which only that thread writes).
 *
 * Window: a ring of LX_HEALTH_BUCKETS time buckets of window_ms / LX_HEALTH_BUCKETS each; a
 * re-scoring at time t counts the buckets of the last LX_HEALTH_BUCKETS bucket periods
 * (t's own included), so a sample leaves the window between 14/15 and 15/15 of window_ms
 * after it was recorded. Recent figures: per row, the control thread keeps the shards'
 * cumulative counters (outcomes, and a cumulative TTFT histogram of OK attempts) as seen at
 * the last re-scoring, and decayed counts of the differences - nothing added to the workers'
 * path but one relaxed counter per OK attempt.
 */
#ifndef LX_HEALTH_H
#define LX_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qsbr.h"

#define LX_HEALTH_BUCKETS    15 /* time buckets per window */
#define LX_HEALTH_HIST_SLOTS 32 /* log-scale histogram slots (TTFT, tokens/s) */

/* Outcome classes of one attempt: XX(ENUM, name). The name is the metrics label value. */
#define LX_HEALTH_OUTCOME_MAP(XX)                                                                  \
    XX(OK, ok)                       /* the endpoint answered (2xx) */                             \
    XX(CONNECT, connect)             /* connect, TLS or DNS failure */                             \
    XX(TIMEOUT, timeout)             /* connect or first-byte timeout */                           \
    XX(RATE_LIMIT, rate_limit)       /* 429: not a failure, counted apart, honours retry-after */  \
    XX(SERVER, server)               /* 5xx */                                                     \
    XX(BAD_RESPONSE, bad_response)   /* malformed answer, premature close, reset mid-answer */     \
    XX(CLIENT, client)               /* a 4xx that is the client's fault: not the endpoint's */    \
    XX(CANCELED, canceled)           /* the client went away: not counted against the endpoint */  \
    XX(GATEWAY_LIMIT, gateway_limit) /* llmux's own max_connections held it back until its         \
                                        deadline: never sent, not counted against the endpoint */  \
    XX(HEDGED, hedged) /* lost a hedge's race (the other attempt answered first) and was closed:   \
                          not a failure, no latency figure (its first byte never came) */

typedef enum lx_health_outcome {
#define XX(e, n) LX_HEALTH_##e,
    LX_HEALTH_OUTCOME_MAP(XX)
#undef XX
        LX_HEALTH_N_OUTCOMES
} lx_health_outcome_t;

/* The label name of an outcome ("ok", "connect", ...); "unknown" when out of range. */
const char *lx_health_outcome_name(lx_health_outcome_t o);

/* The success rule: a row is demoted when the upper bound of the Wilson interval (z below,
 * 95%) of its recent success rate is below its model's best lower bound minus the margin; it
 * stays demoted while its recent success rate itself is below that bar. */
#define LX_HEALTH_WILSON_Z       1.96
#define LX_HEALTH_SUCCESS_MARGIN 0.05
/* The latency rule: a row is demoted when the geometric mean of its successful TTFT is more
 * than SLOW_FACTOR times its model's best and SLOW_MIN_MS above it; it stays demoted while
 * above READMIT_FACTOR times the best and SLOW_MIN_MS above it. The figure: the last re-score
 * interval's own samples when there are SLOW_FRESH_N of them (so a slow-down shows at the
 * next re-scoring), else the decayed recent ones when there are SLOW_MIN_N. */
#define LX_HEALTH_SLOW_FACTOR         4.0
#define LX_HEALTH_SLOW_READMIT_FACTOR 2.0
#define LX_HEALTH_SLOW_MIN_MS         50.0
#define LX_HEALTH_SLOW_MIN_N          3.0
#define LX_HEALTH_SLOW_FRESH_N        10.0

/* A 429 answered while other attempts were in flight on the row, with a Retry-After of at most
 * CAP_MAX_RETRY_MS (or none), is taken as a concurrency limit: the row stays available while
 * fewer attempts than those are in flight, for the Retry-After or CAP_MIN_MS, whichever is
 * longer; any other 429 blocks the row for its Retry-After. */
#define LX_HEALTH_CAP_MAX_RETRY_MS 2000
#define LX_HEALTH_CAP_MIN_MS       1000

/* Why a row gets only the router's exploration share (see lx_health_rescore()). */
typedef enum lx_health_demotion {
    LX_HEALTH_NOT_DEMOTED,
    LX_HEALTH_DEMOTED_SUCCESS, /* its success rate is clearly below its model's best row's */
    LX_HEALTH_DEMOTED_LATENCY, /* its time to first byte is clearly above its model's best */
} lx_health_demotion_t;

/* "none", "success", "latency". */
const char *lx_health_demotion_name(lx_health_demotion_t d);

/* Whether an outcome counts as an endpoint failure (breaker and success rate): CONNECT,
 * TIMEOUT, SERVER, BAD_RESPONSE. */
bool lx_health_outcome_is_failure(lx_health_outcome_t o);

typedef struct lx_health_opts {
    uint64_t window_ms;               /* rolling window (15 min) */
    uint64_t rescore_interval_ms;     /* how often the caller re-scores (5 min); reported only */
    uint32_t breaker_failures;        /* consecutive failures that eject a row (5) */
    uint64_t breaker_cooldown_ms;     /* first ejection's cooldown (10 s), doubled per re-open */
    uint64_t breaker_max_cooldown_ms; /* cap of the doubling (5 min) */
    uint64_t probe_timeout_ms; /* a half-open probe with no recorded outcome frees its slot after
                                  this long (60 s), so a lost probe cannot wedge the row */
    double exploration;        /* share of traffic the router gives a row without data or demoted
                                  (0.02); the table only carries it */
    double log_epsilon;        /* a score change larger than this is logged (0.02) */
    struct lx_qsbr *qsbr;      /* the readers of the published scores (core/qsbr.h: the threads
                                  that call lx_health_scores() mark a quiescent point between
                                  turns); a replaced snapshot is rewritten only after each one
                                  passed one. NULL: no grace period (a single thread, or readers
                                  that never hold scores across two re-scorings). Not copied:
                                  it must outlive the table's re-scorings. */
} lx_health_opts_t;

/* Fills <o> with the defaults above. */
void lx_health_opts_init(lx_health_opts_t *o);

/* A row's identity. lx_health_new() copies the strings. */
typedef struct lx_health_row_key {
    const char *provider; /* provider name from the config */
    const char *endpoint; /* endpoint URL */
    const char *model;    /* model id; rows of the same model are normalised together */
} lx_health_row_key_t;

/* One attempt's outcome, as a worker records it. */
typedef struct lx_health_sample {
    lx_health_outcome_t outcome;
    uint64_t ttfb_us;        /* time to first byte; 0 = unknown */
    uint64_t total_us;       /* whole attempt; 0 = unknown */
    int64_t output_tokens;   /* from usage; -1 = unknown */
    uint64_t retry_after_ms; /* RATE_LIMIT only: not chosen again before now + this; 0 = none */
} lx_health_sample_t;

/* One row's results of the latest re-scoring. Unknown values are negative (-1). The window
 * figures (success_rate .. count) cover the rolling window; the recent ones (recent_n ..
 * model_ttft_p95_ms) decay by half every rescore_interval and are what the score and the
 * demotion rules judge by. Latency figures come from successful attempts only. */
typedef struct lx_health_score {
    double score; /* [0,1]; higher is better; neutral prior when !has_data; 0 when demoted */
    lx_health_demotion_t demoted; /* not 0: the router gives the row its exploration share */
    bool has_data;                /* the window held endpoint-judging samples (OK, failures, 429) */
    double success_rate;          /* OK / (OK + failures); 429, CLIENT, CANCELED excluded; or -1 */
    double ttft_p50_ms;           /* time to first byte of successful attempts, or -1 */
    double ttft_p90_ms;           /* or -1 */
    double tps_p50;               /* output tokens/s after the first byte, or -1 */
    double rate_limit_rate;       /* 429 / (OK + failures + 429), or -1 */
    uint64_t requests; /* attempts in the window, all classes but CANCELED, GATEWAY_LIMIT */
    uint64_t count[LX_HEALTH_N_OUTCOMES]; /* attempts in the window per outcome */
    double recent_n;                      /* recent OK + failed attempts (decayed, so fractional) */
    double recent_success;                /* recent OK / (OK + failures), or -1 */
    double success_low;                   /* its Wilson interval (LX_HEALTH_WILSON_Z), or -1 */
    double success_high;                  /* or -1 */
    double ttft_gm_ms;                    /* geometric mean of recent successful TTFT, or -1 */
    double ttft_p95_ms;                   /* recent successful TTFT p95, or -1 (for hedging) */
    double model_ttft_p95_ms; /* the same over the model's rows with data not demoted, or -1 */
} lx_health_score_t;

typedef enum lx_health_breaker_state {
    LX_HEALTH_CLOSED,    /* traffic flows */
    LX_HEALTH_OPEN,      /* ejected until the cooldown ends */
    LX_HEALTH_HALF_OPEN, /* cooldown over: one probe request at a time decides */
} lx_health_breaker_state_t;

/* A row's breaker and retry-after block at a given time. */
typedef struct lx_health_breaker {
    lx_health_breaker_state_t state;
    uint32_t consecutive_failures;
    uint64_t ejections;      /* times the breaker opened (or re-opened), since start */
    uint64_t open_for_ms;    /* OPEN: time left until half-open; else 0 */
    uint64_t retry_after_ms; /* time left of a 429's retry-after block; else 0 */
    uint32_t cap;            /* a 429's concurrency cap in effect (LX_HEALTH_CAP_*); else 0 */
    uint64_t cap_for_ms;     /* time left of it; else 0 */
    bool probe_in_flight;    /* HALF_OPEN: the probe slot is taken */
    uint64_t slow_for_ms;    /* time left of a latency outlier mark (lx_health_head); else 0 */
} lx_health_breaker_t;

typedef struct lx_health lx_health_t;

/* Makes a table of <n_rows> rows (keys copied) and <n_shards> writer shards (>= 1). <opts>
 * NULL means defaults; zero durations and counts in it mean their defaults too. When
 * <previous> is given, each row whose key (provider, endpoint, model) matches a row of it
 * carries over that row's window data, cumulative counters, breaker, retry-after block,
 * concurrency cap, recent figures and latest scores; other rows start neutral (score 0.5, no data).
 * In-flight counts are not carried: a request adds and removes on the table it started with.
 * Returns NULL when out of memory or when n_shards is 0. */
lx_health_t *lx_health_new(const lx_health_opts_t *opts, const lx_health_row_key_t *keys,
                           size_t n_rows, unsigned n_shards, const lx_health_t *previous);

/* Frees the table and its snapshots. NULL is a no-op. */
void lx_health_free(lx_health_t *h);

/* The options in effect (defaults filled in). */
const lx_health_opts_t *lx_health_opts(const lx_health_t *h);

size_t lx_health_rows(const lx_health_t *h);

/* Row <row>'s key (strings owned by the table), or NULL when out of range. */
const lx_health_row_key_t *lx_health_row_key(const lx_health_t *h, size_t row);

/* The index of the row with this key, or (size_t)-1. Linear: for setup, not per request. */
size_t lx_health_find(const lx_health_t *h, const char *provider, const char *endpoint,
                      const char *model);

/* Records one attempt's outcome for <row> into shard <shard>, at <now_ms>. Cheap: no lock, no
 * allocation, a few relaxed atomic operations. Feeds the window, the cumulative counters and
 * the breaker: failures count toward ejection; OK resets the count and closes a half-open
 * breaker; a failure while half-open re-opens it with a doubled cooldown; RATE_LIMIT sets
 * a concurrency cap or the retry-after block (LX_HEALTH_CAP_MAX_RETRY_MS; record it after
 * the attempt's lx_health_inflight_add(-1), so the in-flight count is the others'); RATE_LIMIT,
 * CLIENT, CANCELED, GATEWAY_LIMIT and HEDGED neither count nor reset, and free a taken half-open
 * probe slot. Outcomes of attempts that were sent before an ejection and end while the breaker is
 * open are counted in the window but do not move the breaker. Out of range shard or row: ignored.
 */
void lx_health_record(lx_health_t *h, unsigned shard, size_t row, const lx_health_sample_t *s,
                      uint64_t now_ms);

/* Adds <delta> (+1 when an attempt starts, -1 when it ends) to <row>'s in-flight count in
 * <shard>. The -1 may come from another shard than the +1. */
void lx_health_inflight_add(lx_health_t *h, unsigned shard, size_t row, int delta);

/* <row>'s in-flight attempts (sum over shards). */
int64_t lx_health_in_flight(const lx_health_t *h, size_t row);

/* For planning: false while the breaker is open, while a retry-after block runs, while a
 * concurrency cap is in effect and reached (in-flight summed over the shards), or while
 * half-open with the probe slot taken; true otherwise. Takes nothing. */
bool lx_health_available(const lx_health_t *h, size_t row, uint64_t now_ms);

/*
 * Latency outliers between re-scorings. A re-scoring demotes a row that is slow against its
 * peers, but only at the next re-scoring (minutes by default), and a request sent to it
 * meanwhile waits for its late head unless a hedge, within its budget, races it. So the
 * caller reports each attempt's head: late (past the hedge threshold), LX_HEALTH_LATE_HEADS
 * in a row (counted across workers), marks the row slow for max(rescore_interval, 1 s) -
 * provided a peer (another row of the model, not marked) had a timely head since the run of
 * late heads began: a stall of llmux's own loop makes every row late at once and marks none,
 * and a model of one row is never marked. The router then treats a marked row as demoted (the
 * exploration share, raced at once, no hedge target). As many timely heads in a row lift the
 * mark; a re-scoring ends it when its data takes over (the row demoted for latency) or shows
 * the row's recent TTFT p95 within the hedge factor of the model's. Failures are the
 * breaker's, not counted here.
 */
#define LX_HEALTH_LATE_HEADS 3
void lx_health_head(lx_health_t *h, size_t row, bool late, uint64_t now_ms);

/* Whether <row> is marked a latency outlier at <now_ms>. */
bool lx_health_slow(const lx_health_t *h, size_t row, uint64_t now_ms);

/* When an attempt is actually sent to <row>: true if it may go. Closed: true. Half-open: true
 * for exactly one caller, which takes the probe slot (until its outcome is recorded or the
 * slot expires after probe_timeout_ms); false for the others. Open or blocked: false. */
bool lx_health_admit(lx_health_t *h, size_t row, uint64_t now_ms);

/* <row>'s breaker at <now_ms> into *out. */
void lx_health_breaker_get(const lx_health_t *h, size_t row, uint64_t now_ms,
                           lx_health_breaker_t *out);

/* <row>'s cumulative attempts per outcome since start (carried over on reload) into out. */
void lx_health_totals(const lx_health_t *h, size_t row, uint64_t out[LX_HEALTH_N_OUTCOMES]);

/* Re-scores every row at <now_ms> and publishes the results. For each row, two sets of
 * figures (log-scale histograms, interpolated within a slot: about +-20% precision):
 * - the window's: counts per outcome, success rate, 429 rate, TTFT p50/p90 and tokens/s p50;
 * - the recent ones: the attempts recorded since the previous re-scoring (differences of the
 *   cumulative counters) folded into counts that lose half their weight every
 *   rescore_interval, so the last interval weighs as much as all before it and a fault shows
 *   within one re-scoring whatever the window: success rate with its Wilson interval, and the
 *   geometric mean and p95 of the TTFT. The geometric mean rather than a percentile: a mix of
 *   streamed (early first byte) and whole answers keeps its mean when the mix shifts a little,
 *   where the median jumps between the two modes.
 * Latency figures count successful attempts only: a fast failure never makes a row look fast.
 *
 * Demotion (the rules at LX_HEALTH_WILSON_Z above), among the rows of the same model with data:
 * - success: a row whose recent success rate's Wilson upper bound is below the best row's
 *   Wilson lower bound minus LX_HEALTH_SUCCESS_MARGIN (5 points) is demoted; it stays demoted
 *   while its recent success rate is below that bar. At a 5 s re-scoring with ~80 attempts per
 *   row: 30% failing gives [0.59, 0.79] against a healthy row's lower bound 0.95 - demoted;
 *   2% failing gives an upper bound of 0.99 - kept. The best row is never demoted by it.
 * - latency: among the rows the success rule kept, a row whose TTFT geometric mean is more
 *   than LX_HEALTH_SLOW_FACTOR (4) times the best row's and LX_HEALTH_SLOW_MIN_MS (50 ms)
 *   above it is demoted; it stays demoted while above LX_HEALTH_SLOW_READMIT_FACTOR (2) times
 *   the best and 50 ms above it, or while it has no figure. The figure is the last interval's
 *   own when it holds LX_HEALTH_SLOW_FRESH_N (10) samples - a replica whose traffic had
 *   already thinned shows its slow-down at the next re-scoring, not after its fast past has
 *   decayed - else the decayed one from LX_HEALTH_SLOW_MIN_N (3). Demoted on the last
 *   interval's figure, the row's decayed TTFT restarts from that interval, so its fast past
 *   cannot readmit it while its few exploration samples are slow. Milder slowness only
 *   lowers the score (L below).
 * A demoted row is published with score 0 and `demoted` set: the router gives it the
 * exploration share (health.exploration, 2%), enough to see it recover, and no more.
 *
 * The score of a row kept, in [0,1]:
 *
 *   score = S^2 * (0.15 + 0.85 * L) * (0.6 + 0.4 * T) * (1 - 0.5 * R)
 *
 * S: the recent success rate smoothed by two samples of prior at 90% ((ok+1.8)/(ok+fail+2)),
 *    so a handful of samples neither claims perfection nor sinks a row. Squared, not more: a
 *    failed attempt before the first byte costs the client one fast retry (failover); a row
 *    clearly worse than its peers is the success rule's, a dead one the breaker's.
 * (0.15 + 0.85 * L): time to first token weighs nearly linearly below the latency rule.
 * L: the best recent TTFT geometric mean among the model's rows kept (from at least
 *    LX_HEALTH_SLOW_MIN_N samples) divided by this row's (1 for the fastest); 0.5 when unknown.
 * T: this row's tokens/s p50 (window) divided by the best of its model's rows; 0.5 when unknown.
 * R: the 429 rate (window).
 * A row with no data in the window keeps a neutral prior: the mean score of its model's rows
 * kept, but never below 0.5 (a failing sibling says nothing about this row), or 0.5 when none
 * has data; has_data = false tells the router to give it an exploration share.
 * model_ttft_p95_ms, the same in every row of a model: the p95 of the recent successful TTFT
 * of its rows with data that are not demoted (what a hedge's "first byte is late" compares to).
 *
 * <log> (may be NULL) receives one line per row whose score moved by more than log_epsilon
 * or whose has_data or demotion changed:
 *   "health: <model> <provider> <endpoint>: score 0.91 -> 0.00 (success 71%, ttft p50 120 ms,
 *   429 3%) demoted: success". Never allocates.
 *
 * The scores are written into a spare snapshot (of two): one that is not published and whose
 * grace period has ended - with opts.qsbr, every reader passed a quiescent point after it was
 * replaced (the one replaced first when both are free). When neither is free (a reader has not
 * turned since the re-scoring before the last one), nothing is done and false is returned:
 * the next call scores the whole time since (the recent figures decay by elapsed time), so a
 * deferred re-scoring loses nothing. True when the scores were published. */
bool lx_health_rescore(lx_health_t *h, uint64_t now_ms, void (*log)(void *arg, const char *line),
                       void *arg);

/* The latest published scores: an array of lx_health_rows() entries (acquire load, no lock).
 * With opts.qsbr, the array stays valid and unchanged until the caller's next quiescent point
 * (lx_qsbr_quiescent()): hold it for one loop turn, never across turns. Without, until the
 * second lx_health_rescore() after this call. Before the first re-scoring it holds the
 * carried-over or neutral values. */
const lx_health_score_t *lx_health_scores(const lx_health_t *h);

/* When the published scores were computed: true and *at_ms, or false before the first
 * lx_health_rescore(). */
bool lx_health_last_rescore(const lx_health_t *h, uint64_t *at_ms);

/* The table as JSON for the admin API, malloc'd into *out (NUL-terminated, length *len):
 * {"rescore_interval_ms":N,"window_ms":N,"last_rescore_ms_ago":N|null,"rows":[{"provider":S,
 * "endpoint":S,"model":S,"requests":N,"successes":N,"errors":{"connect":N,"timeout":N,
 * "rate_limit":N,"server":N,"bad_response":N,"client":N},"hedged":N,"in_flight":N,"ttft_ms":{"p50":X,
 * "p90":X},"tps_p50":X,"success_rate":X,"score":X,"has_data":B,"demoted":null|"success"|
 * "latency","recent":{"attempts":X,"success_rate":X,"success_low":X,"success_high":X,
 * "ttft_gm_ms":X,"ttft_p95_ms":X},"model_ttft_p95_ms":X,"breaker":{"state":
 * "closed|open|half_open","consecutive_failures":N,"ejections":N,"open_for_ms":N},
 * "retry_after_ms":N,"concurrency_cap":N}]} (0: none). Window numbers are the latest re-scoring's;
 * unknown values are null; breaker and in-flight are live at <now_ms>. 0 or LX_ENOMEM. Any thread.
 */
int lx_health_format_json(const lx_health_t *h, uint64_t now_ms, char **out, size_t *len);

/* The table as Prometheus text exposition, malloc'd into *out (NUL-terminated, length *len):
 * the gauges of the metric table in health_format.c per row (labels provider, endpoint, model; NaN
 * when unknown; window values from the latest re-scoring; breaker_open is 1 when open or half-open)
 * and the counter llmux_upstream_attempts_total per row and outcome (cumulative). 0 or LX_ENOMEM.
 * Any thread. */
int lx_health_format_metrics(const lx_health_t *h, uint64_t now_ms, char **out, size_t *len);

/* The Prometheus labels of row key <k>, open for more: {provider="..",endpoint="..",model=".."
 * (values escaped per the text format; the caller adds any other label and the '}'). */
struct lx_strbuf;
void lx_health_prom_labels(struct lx_strbuf *sb, const lx_health_row_key_t *k);

#endif
