/*
 * health_format.c - the health table rendered for people and scrapers: admin JSON and
 * Prometheus text exposition.
 *
 * Reads the table through its public accessors only (latest score snapshot, live breaker,
 * in-flight and cumulative counters), so it may run on any thread. Each output is sized up
 * front from the row keys and written in one malloc'd buffer with the strbuf appenders.
 */
#include "route/health.h"

#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/strbuf.h"

/* The health metrics, defined once: XX(ID, name, type, help). */
#define HEALTH_METRIC_MAP(XX)                                                                      \
    XX(SCORE, "llmux_health_score", "gauge",                                                       \
       "Health score of the endpoint for the model, 0 to 1, from the latest re-scoring.")          \
    XX(SUCCESS_RATE, "llmux_health_success_rate", "gauge",                                         \
       "Share of attempts that succeeded over the window, rate limits excluded.")                  \
    XX(TTFT_P50, "llmux_health_ttft_p50_seconds", "gauge",                                         \
       "Median time to first byte of successful attempts over the window.")                        \
    XX(TTFT_P90, "llmux_health_ttft_p90_seconds", "gauge",                                         \
       "90th percentile time to first byte of successful attempts over the window.")               \
    XX(TPS_P50, "llmux_health_tps_p50", "gauge",                                                   \
       "Median output tokens per second after the first byte over the window.")                    \
    XX(TTFT_P95, "llmux_health_ttft_p95_seconds", "gauge",                                         \
       "95th percentile time to first byte of recent successful attempts (decayed by half every "  \
       "rescore interval).")                                                                       \
    XX(DEMOTED, "llmux_health_demoted", "gauge",                                                   \
       "1 while the endpoint gets only the exploration share (success rate or time to first "      \
       "byte clearly worse than its model's best), else 0.")                                       \
    XX(BREAKER_OPEN, "llmux_health_breaker_open", "gauge",                                         \
       "1 while the circuit breaker ejects the endpoint (open or half-open), else 0.")             \
    XX(IN_FLIGHT, "llmux_health_in_flight", "gauge", "Attempts in flight to the endpoint.")        \
    XX(ATTEMPTS, "llmux_upstream_attempts_total", "counter",                                       \
       "Attempts for the endpoint since start, by outcome (gateway_limit: held back by llmux's "   \
       "own max_connections, never sent).")

enum {
#define XX(id, name, type, help) M_##id,
    HEALTH_METRIC_MAP(XX)
#undef XX
        M_COUNT
};

static const struct {
    const char *name, *type, *help;
} metrics[M_COUNT] = {
#define XX(id, name, type, help) {name, type, help},
    HEALTH_METRIC_MAP(XX)
#undef XX
};

static const char *const breaker_names[] = {"closed", "open", "half_open"};

static size_t keys_len(const lx_health_row_key_t *k)
{
    return strlen(k->provider) + strlen(k->endpoint) + strlen(k->model);
}

/* A JSON string, quoted and escaped by core/json's rule, controls spelled \u00XX. */
static void json_str(lx_strbuf_t *sb, const char *s)
{
    size_t len = strlen(s), used;
    LX_STRBUF_LIT(sb, "\"");
    size_t n = lx_json_escape_hex(sb->p, (size_t)(sb->end - sb->p), s, len, &used);
    if (used < len)
        sb->overflow = true;
    else
        sb->p += n;
    LX_STRBUF_LIT(sb, "\"");
}

/* A number with <decimals> digits, or null when unknown (negative). */
static void json_num(lx_strbuf_t *sb, double v, unsigned decimals)
{
    if (v < 0)
        LX_STRBUF_LIT(sb, "null");
    else
        lx_strbuf_fixed(sb, v, decimals);
}

/* The demotion and the recent figures (lx_health_score_t). */
static void json_recent(lx_strbuf_t *sb, const lx_health_score_t *r)
{
    LX_STRBUF_LIT(sb, ",\"demoted\":");
    if (r->demoted) {
        LX_STRBUF_LIT(sb, "\"");
        lx_strbuf_str(sb, lx_health_demotion_name(r->demoted));
        LX_STRBUF_LIT(sb, "\"");
    } else {
        LX_STRBUF_LIT(sb, "null");
    }
    LX_STRBUF_LIT(sb, ",\"recent\":{\"attempts\":");
    json_num(sb, r->recent_n, 1);
    LX_STRBUF_LIT(sb, ",\"success_rate\":");
    json_num(sb, r->recent_success, 4);
    LX_STRBUF_LIT(sb, ",\"success_low\":");
    json_num(sb, r->success_low, 4);
    LX_STRBUF_LIT(sb, ",\"success_high\":");
    json_num(sb, r->success_high, 4);
    LX_STRBUF_LIT(sb, ",\"ttft_gm_ms\":");
    json_num(sb, r->ttft_gm_ms, 1);
    LX_STRBUF_LIT(sb, ",\"ttft_p95_ms\":");
    json_num(sb, r->ttft_p95_ms, 1);
    LX_STRBUF_LIT(sb, "},\"model_ttft_p95_ms\":");
    json_num(sb, r->model_ttft_p95_ms, 1);
}

static void json_row(lx_strbuf_t *sb, const lx_health_t *h, size_t i, const lx_health_score_t *r,
                     uint64_t now_ms)
{
    const lx_health_row_key_t *k = lx_health_row_key(h, i);
    lx_health_breaker_t b;
    lx_health_breaker_get(h, i, now_ms, &b);
    int64_t inflight = lx_health_in_flight(h, i);

    LX_STRBUF_LIT(sb, "{\"provider\":");
    json_str(sb, k->provider);
    LX_STRBUF_LIT(sb, ",\"endpoint\":");
    json_str(sb, k->endpoint);
    LX_STRBUF_LIT(sb, ",\"model\":");
    json_str(sb, k->model);
    LX_STRBUF_LIT(sb, ",\"requests\":");
    lx_strbuf_u64(sb, r->requests);
    LX_STRBUF_LIT(sb, ",\"successes\":");
    lx_strbuf_u64(sb, r->count[LX_HEALTH_OK]);
    LX_STRBUF_LIT(sb, ",\"errors\":{");
    for (unsigned o = LX_HEALTH_CONNECT; o <= LX_HEALTH_CLIENT; o++) {
        if (o != LX_HEALTH_CONNECT)
            LX_STRBUF_LIT(sb, ",");
        json_str(sb, lx_health_outcome_name((lx_health_outcome_t)o));
        LX_STRBUF_LIT(sb, ":");
        lx_strbuf_u64(sb, r->count[o]);
    }
    LX_STRBUF_LIT(sb, "},\"hedged\":");
    lx_strbuf_u64(sb, r->count[LX_HEALTH_HEDGED]);
    LX_STRBUF_LIT(sb, ",\"in_flight\":");
    lx_strbuf_i64(sb, inflight);
    LX_STRBUF_LIT(sb, ",\"ttft_ms\":{\"p50\":");
    json_num(sb, r->ttft_p50_ms, 1);
    LX_STRBUF_LIT(sb, ",\"p90\":");
    json_num(sb, r->ttft_p90_ms, 1);
    LX_STRBUF_LIT(sb, "},\"tps_p50\":");
    json_num(sb, r->tps_p50, 1);
    LX_STRBUF_LIT(sb, ",\"success_rate\":");
    json_num(sb, r->success_rate, 4);
    LX_STRBUF_LIT(sb, ",\"score\":");
    json_num(sb, r->score, 4);
    LX_STRBUF_LIT(sb, ",\"has_data\":");
    if (r->has_data)
        LX_STRBUF_LIT(sb, "true");
    else
        LX_STRBUF_LIT(sb, "false");
    json_recent(sb, r);
    LX_STRBUF_LIT(sb, ",\"breaker\":{\"state\":\"");
    lx_strbuf_str(sb, breaker_names[b.state]);
    LX_STRBUF_LIT(sb, "\",\"consecutive_failures\":");
    lx_strbuf_u64(sb, b.consecutive_failures);
    LX_STRBUF_LIT(sb, ",\"ejections\":");
    lx_strbuf_u64(sb, b.ejections);
    LX_STRBUF_LIT(sb, ",\"open_for_ms\":");
    lx_strbuf_u64(sb, b.open_for_ms);
    LX_STRBUF_LIT(sb, "},\"retry_after_ms\":");
    lx_strbuf_u64(sb, b.retry_after_ms);
    LX_STRBUF_LIT(sb, ",\"concurrency_cap\":");
    lx_strbuf_u64(sb, b.cap);
    LX_STRBUF_LIT(sb, ",\"slow_for_ms\":");
    lx_strbuf_u64(sb, b.slow_for_ms);
    LX_STRBUF_LIT(sb, "}");
}

/* Hands the written bytes of <buf> out, NUL-terminated; frees it on overflow. */
static int finish(lx_strbuf_t *sb, char *buf, char **out, size_t *len)
{
    LX_STRBUF_LIT(sb, "\0");
    if (sb->overflow) { /* the size bound is wrong: refuse rather than cut */
        free(buf);
        return LX_ENOMEM;
    }
    *len = lx_strbuf_len(sb, buf) - 1;
    *out = buf;
    return 0;
}

int lx_health_format_json(const lx_health_t *h, uint64_t now_ms, char **out, size_t *len)
{
    size_t n = lx_health_rows(h), cap = 256;
    for (size_t i = 0; i < n; i++)
        cap += 1600 + 6 * keys_len(lx_health_row_key(h, i)); /* \u00XX at worst */
    char *buf = malloc(cap);
    if (!buf)
        return LX_ENOMEM;
    lx_strbuf_t sb = lx_strbuf_make(buf, cap);
    const lx_health_opts_t *o = lx_health_opts(h);
    const lx_health_score_t *rows = lx_health_scores(h);
    uint64_t at;
    bool rescored = lx_health_last_rescore(h, &at);

    LX_STRBUF_LIT(&sb, "{\"rescore_interval_ms\":");
    lx_strbuf_u64(&sb, o->rescore_interval_ms);
    LX_STRBUF_LIT(&sb, ",\"window_ms\":");
    lx_strbuf_u64(&sb, o->window_ms);
    LX_STRBUF_LIT(&sb, ",\"last_rescore_ms_ago\":");
    if (rescored)
        lx_strbuf_u64(&sb, now_ms > at ? now_ms - at : 0);
    else
        LX_STRBUF_LIT(&sb, "null");
    LX_STRBUF_LIT(&sb, ",\"rows\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            LX_STRBUF_LIT(&sb, ",");
        json_row(&sb, h, i, &rows[i], now_ms);
    }
    LX_STRBUF_LIT(&sb, "]}");
    return finish(&sb, buf, out, len);
}

/* A label value, escaped per the text exposition format. */
static void label_value(lx_strbuf_t *sb, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            LX_STRBUF_LIT(sb, "\\\\");
        else if (*s == '"')
            LX_STRBUF_LIT(sb, "\\\"");
        else if (*s == '\n')
            LX_STRBUF_LIT(sb, "\\n");
        else
            lx_strbuf_mem(sb, s, 1);
    }
}

void lx_health_prom_labels(lx_strbuf_t *sb, const lx_health_row_key_t *k)
{
    LX_STRBUF_LIT(sb, "{provider=\"");
    label_value(sb, k->provider);
    LX_STRBUF_LIT(sb, "\",endpoint=\"");
    label_value(sb, k->endpoint);
    LX_STRBUF_LIT(sb, "\",model=\"");
    label_value(sb, k->model);
    LX_STRBUF_LIT(sb, "\"");
}

/* A gauge value; NaN when unknown (negative). */
static void metric_value(lx_strbuf_t *sb, double v)
{
    if (v < 0)
        LX_STRBUF_LIT(sb, "NaN");
    else
        lx_strbuf_fixed(sb, v, 6);
}

static double gauge(int m, const lx_health_t *h, size_t i, const lx_health_score_t *r,
                    uint64_t now_ms)
{
    lx_health_breaker_t b;
    switch (m) {
    case M_SCORE:
        return r->score;
    case M_SUCCESS_RATE:
        return r->success_rate;
    case M_TTFT_P50:
        return r->ttft_p50_ms < 0 ? -1 : r->ttft_p50_ms / 1000.0;
    case M_TTFT_P90:
        return r->ttft_p90_ms < 0 ? -1 : r->ttft_p90_ms / 1000.0;
    case M_TPS_P50:
        return r->tps_p50;
    case M_TTFT_P95:
        return r->ttft_p95_ms < 0 ? -1 : r->ttft_p95_ms / 1000.0;
    case M_DEMOTED:
        return r->demoted ? 1 : 0;
    case M_BREAKER_OPEN:
        lx_health_breaker_get(h, i, now_ms, &b);
        return b.state == LX_HEALTH_CLOSED ? 0 : 1;
    case M_IN_FLIGHT: {
        int64_t n = lx_health_in_flight(h, i);
        return n > 0 ? (double)n : 0; /* transiently negative across shards: show 0 */
    }
    default:
        return -1;
    }
}

int lx_health_format_metrics(const lx_health_t *h, uint64_t now_ms, char **out, size_t *len)
{
    size_t n = lx_health_rows(h), cap = 256;
    for (int m = 0; m < M_COUNT; m++)
        cap += 64 + 2 * strlen(metrics[m].name) + strlen(metrics[m].help);
    for (size_t i = 0; i < n; i++) /* per row: 9 gauges and 9 counters, labels doubled */
        cap += (M_COUNT - 1 + LX_HEALTH_N_OUTCOMES) * (160 + 2 * keys_len(lx_health_row_key(h, i)));
    char *buf = malloc(cap);
    if (!buf)
        return LX_ENOMEM;
    lx_strbuf_t sb = lx_strbuf_make(buf, cap);
    const lx_health_score_t *rows = lx_health_scores(h);

    for (int m = 0; m < M_COUNT; m++) {
        LX_STRBUF_LIT(&sb, "# HELP ");
        lx_strbuf_str(&sb, metrics[m].name);
        LX_STRBUF_LIT(&sb, " ");
        lx_strbuf_str(&sb, metrics[m].help);
        LX_STRBUF_LIT(&sb, "\n# TYPE ");
        lx_strbuf_str(&sb, metrics[m].name);
        LX_STRBUF_LIT(&sb, " ");
        lx_strbuf_str(&sb, metrics[m].type);
        LX_STRBUF_LIT(&sb, "\n");
        for (size_t i = 0; i < n; i++) {
            const lx_health_row_key_t *k = lx_health_row_key(h, i);
            if (m != M_ATTEMPTS) {
                lx_strbuf_str(&sb, metrics[m].name);
                lx_health_prom_labels(&sb, k);
                LX_STRBUF_LIT(&sb, "} ");
                metric_value(&sb, gauge(m, h, i, &rows[i], now_ms));
                LX_STRBUF_LIT(&sb, "\n");
                continue;
            }
            uint64_t totals[LX_HEALTH_N_OUTCOMES];
            lx_health_totals(h, i, totals);
            for (unsigned o = 0; o < LX_HEALTH_N_OUTCOMES; o++) {
                lx_strbuf_str(&sb, metrics[m].name);
                lx_health_prom_labels(&sb, k);
                LX_STRBUF_LIT(&sb, ",outcome=\"");
                lx_strbuf_str(&sb, lx_health_outcome_name((lx_health_outcome_t)o));
                LX_STRBUF_LIT(&sb, "\"} ");
                lx_strbuf_u64(&sb, totals[o]);
                LX_STRBUF_LIT(&sb, "\n");
            }
        }
    }
    return finish(&sb, buf, out, len);
}
