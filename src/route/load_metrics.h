/*
 * load_metrics.h - a model server's Prometheus metrics (text exposition format 0.0.4) read as
 * load signals: requests waiting in the server's queue, requests running, KV-cache use.
 *
 * Pure: the caller (the scraper on the control loop) passes the body it received; nothing is
 * allocated, nothing is kept, no locale is consulted, the input is read once (linear in its
 * length, no recursion, never a byte past <len>). The names known per server family, with the
 * versions they come from, are in src/route/README.md ("Load metrics").
 *
 * Reading rules:
 * - Lines end with LF (a CR before it is dropped). An unterminated last line is ignored: the
 *   format requires the final LF, so a body without it was cut (a size cap, a broken
 *   connection) and its last number may be cut short too.
 * - Comments (`#`), HELP and TYPE lines are skipped; a malformed line is skipped alone (the
 *   lines around it still count). Whatever follows a sample's value after a blank (the
 *   optional timestamp, an OpenMetrics exemplar) is ignored.
 * - Names match exactly: `vllm:num_requests_waiting_sum` is not `vllm:num_requests_waiting`.
 * - The family is set by the first sample whose name carries a family prefix (`vllm:`,
 *   `sglang:`, `tgi_`, `llamacpp:`); only that family's names count afterwards.
 * - Model filter: with <model> (model_len > 0), a series counts when its model label (vLLM
 *   and SGLang `model_name`; SGLang releases of 2024 used `name`) equals <model> after the
 *   label's escapes are decoded, or when it has no model label (TGI and llama.cpp have none:
 *   one server, one model). Without <model>, every series counts.
 * - Several series of one signal (per model, per vLLM `engine`, per SGLang DP rank): waiting
 *   and running are summed; KV use is the highest of them (the fullest engine decides when
 *   the replica is full; a sum of fractions means nothing).
 * - vLLM: when the document has `vllm:kv_cache_usage_perc` (any model), it is the KV figure
 *   and `vllm:gpu_cache_usage_perc` is ignored (0.9.2 to 0.11 export both).
 * - Values: decimal numbers with optional sign, fraction and exponent. NaN and +/-Inf make
 *   that series absent (a signal of only such series is not present). A negative value counts
 *   as 0. Sums saturate; counts are floored to whole requests and capped at UINT32_MAX; KV use
 *   is capped at 1,000,000 ppm (a fraction above 1 is full).
 */
#ifndef LX_LOAD_METRICS_H
#define LX_LOAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum lx_load_family {
    LX_LOAD_FAMILY_NONE = 0, /* no known prefix seen */
    LX_LOAD_FAMILY_VLLM,
    LX_LOAD_FAMILY_SGLANG,
    LX_LOAD_FAMILY_TGI,
    LX_LOAD_FAMILY_LLAMACPP,
};

/* lx_load_sample_t.flags */
#define LX_LOAD_HAS_WAITING 0x01u /* .waiting holds a figure */
#define LX_LOAD_HAS_RUNNING 0x02u /* .running holds a figure */
#define LX_LOAD_HAS_KV      0x04u /* .kv_ppm holds a figure */
/* a signal's series exist but none is <model>'s (a model name that differs from the server's
 * served name: worth a log line, the signals stay absent) */
#define LX_LOAD_MODEL_MISS 0x08u

typedef struct lx_load_sample {
    uint32_t waiting; /* requests queued in the server (summed over series) */
    uint32_t running; /* requests running (summed) */
    uint32_t kv_ppm;  /* KV-cache use in parts per million, 0..1,000,000 (highest series) */
    uint32_t samples; /* well-formed sample lines read (any name) */
    uint32_t skipped; /* malformed lines skipped */
    uint8_t family;   /* enum lx_load_family */
    uint8_t flags;    /* LX_LOAD_HAS_* | LX_LOAD_MODEL_MISS; a value whose flag is clear is 0 */
} lx_load_sample_t;

/* What lx_load_metrics_parse() returns. Every code fills <out>; only LX_LOAD_OK can set a
 * flag, the others leave nothing present, so a caller may use <out> alone and log the code. */
enum lx_load_rc {
    LX_LOAD_OK = 0,             /* a Prometheus document (signals present or not) */
    LX_LOAD_EMPTY = 1,          /* no complete line, or only blank lines */
    LX_LOAD_NOT_PROMETHEUS = 2, /* lines, but not one well-formed sample, HELP or TYPE line */
};

/* Reads the exposition text <text> of <len> bytes (no NUL needed; NULL with len 0 is fine)
 * into <out>, keeping the series of <model> (<model_len> bytes; NULL or 0: every series).
 * Returns an enum lx_load_rc. */
int lx_load_metrics_parse(const char *text, size_t len, const char *model, size_t model_len,
                          lx_load_sample_t *out);

/* lx_load_value()'s results */
enum lx_load_value_rc {
    LX_LOAD_VALUE_OK = 0,
    LX_LOAD_VALUE_NONFINITE = 1, /* NaN, Inf, +Inf, -Inf, Infinity (any case) */
    LX_LOAD_VALUE_BAD = 2,       /* not a number */
};

#define LX_LOAD_VALUE_MAX UINT64_MAX /* where values and sums saturate (micro-units) */

/* One sample value, the whole of <s> (<n> bytes), as micro-units (value x 10^6, truncated
 * toward zero; negative -> 0; above range -> LX_LOAD_VALUE_MAX) in <micro>. The grammar is
 * Prometheus' (Go's ParseFloat) less hexadecimal and underscores: [+-] digits [. digits]
 * [(e|E) [+-] digits], digits on at least one side of the point. Never uses strtod. */
int lx_load_value(const char *s, size_t n, uint64_t *micro);

/* "vllm", "sglang", "tgi", "llamacpp", or "none". */
const char *lx_load_family_name(int family);

#endif
