/*
 * gpu_main.c - llmux-fleet-gpu: options, the four replicas, the matrix of runs (load x target,
 * the same arrivals for every target of a load), the figures and the Markdown report.
 *
 *   llmux-fleet-gpu [--quick] [--target NAME]... [--load PCT]... [--no-fleet-keys] ...
 *
 * For each load, the schedule is made once; for each target the replicas are emptied (prefix
 * cache, counters), the target is started, the client runs the schedule, the target is stopped.
 * The measured window excludes the warm-up; the prefix-cache figures are the replicas' vLLM
 * counters (vllm:prefix_cache_hits / _queries) read at the window's two edges.
 */
#include "gpu.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LOADS 8

static struct {
    double warm_s, measure_s, drain_s;
    double loads[MAX_LOADS];
    int n_loads;
    unsigned targets; /* bit per target */
    uint16_t port_base;
    double rate_base; /* capacity override (req/s), 0 = the model's */
    const char *out;
    bool quick;
    bool plan;  /* print the capacity and the loads' rates, run nothing */
    bool check; /* the workload's checks and a short run straight to the replicas */
} opt = {10, 60, 30, {0}, 0, 0, 19700, 0, NULL, false, false, false};

static gb_proxy_opts_t popt = {.max_in_flight = 8,
                               .queue_size = 16,
                               .queue_timeout = "1s",
                               .scrape_interval = "50ms",
                               .nginx = "/usr/sbin/nginx",
                               .haproxy = "/usr/sbin/haproxy"};
static gb_work_t work = {.seed = 1,
                         .n_prompts = 32,
                         .sys_min = 1000,
                         .sys_max = 6000,
                         .turns_min = 2,
                         .turns_max = 8,
                         .user_min = 20,
                         .user_max = 200,
                         .out_min = 16,
                         .out_max = 48,
                         .gap_s = 3.0};
static lx_mock_gpu_t gpu;
static lx_mock_t *reps[GB_REPLICAS];
static char tmpdir[64];

/* ---- one run's figures ---- */

typedef struct {
    double v;  /* ms */
    bool cens; /* unfinished at the cutoff: v is a lower bound */
} val_t;

typedef struct {
    bool ran;
    long n, ok, refused, failed, unfinished;
    val_t ttft_p50, ttft_p99, e2e_p99;
    double hit, tok_s, ok_s;
    double lag_p99; /* ms from the scheduled time to the send: the client's own delay */
    double loadavg; /* the machine's 1-minute load average at the run's start */
    double share[GB_REPLICAS];
    uint32_t peak_wait[GB_REPLICAS];
    double est; /* llmux's prefix-hit estimate over the window (gpu_est.c); -1 when none */
    uint64_t est_requests;
} res_t;

static long token_mismatch; /* --check: completed answers whose chunks != max_tokens */
static lx_mock_gpu_stats_t snap[2][GB_REPLICAS];
static bool snapped[2];
static uint64_t est_snap[2][2]; /* per edge: llmux's estimated requests, hits */
static bool est_ok[2];

static void on_window(gb_run_t *r, int edge)
{
    for (int i = 0; i < GB_REPLICAS; i++)
        lx_mock_gpu_stats(reps[i], &snap[edge][i]);
    snapped[edge] = true;
    est_ok[edge] = r->direct_ports == NULL &&
                   gb_llmux_prefix_est(r->port, &est_snap[edge][0], &est_snap[edge][1]) == 0;
}

static int cmp_val(const void *a, const void *b)
{
    double x = ((const val_t *)a)->v, y = ((const val_t *)b)->v;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile; a lower bound ("≥") when an unfinished request is at or below it. */
static val_t pct(val_t *v, long n, double p)
{
    val_t out = {-1, false};
    if (n == 0)
        return out;
    qsort(v, (size_t)n, sizeof(*v), cmp_val);
    long k = (long)ceil(p / 100.0 * (double)n) - 1;
    k = k < 0 ? 0 : k;
    out.v = v[k].v;
    for (long i = 0; i <= k; i++)
        out.cens |= v[i].cens;
    return out;
}

static void summarize(const gb_run_t *r, res_t *s)
{
    val_t *tt = malloc(((size_t)r->n + 1) * sizeof(*tt));
    val_t *lg = malloc(((size_t)r->n + 1) * sizeof(*lg));
    long nl = 0;
    val_t *ee = malloc(((size_t)r->n + 1) * sizeof(*ee));
    long nt = 0, ne = 0;
    uint64_t w0 = (uint64_t)(opt.warm_s * 1e9), w1 = w0 + (uint64_t)(opt.measure_s * 1e9);
    for (long i = 0; tt != NULL && ee != NULL && i < r->n; i++) {
        const gb_rec_t *x = &r->recs[i];
        if (r->arr[i].t_ns < w0 || r->arr[i].t_ns >= w1)
            continue;
        s->n++;
        if (lg != NULL && x->lag_us >= 0)
            lg[nl++] = (val_t){x->lag_us / 1e3, false};
        double waited = r->elapsed_s * 1e3 - (double)r->arr[i].t_ns / 1e6; /* to the cutoff */
        if (x->ok) {
            s->ok++;
            tt[nt++] = (val_t){x->ttft_us / 1e3, false};
            ee[ne++] = (val_t){x->e2e_us / 1e3, false};
        } else if (!x->done) {
            s->unfinished++;
            tt[nt++] = x->ttft_us >= 0 ? (val_t){x->ttft_us / 1e3, false} : (val_t){waited, true};
            ee[ne++] = (val_t){waited, true};
        } else if (x->status == 429) {
            s->refused++;
        } else {
            s->failed++;
        }
    }
    s->ttft_p50 = pct(tt, nt, 50);
    s->ttft_p99 = pct(tt, nt, 99);
    s->e2e_p99 = pct(ee, ne, 99);
    s->lag_p99 = lg != NULL ? pct(lg, nl, 99).v : -1;
    free(lg);
    free(tt);
    free(ee);
    s->tok_s = (double)r->window_tokens / opt.measure_s;
    s->ok_s = (double)r->window_done / opt.measure_s;
    uint64_t q = 0, h = 0, adm = 0;
    lx_mock_gpu_stats_t end[GB_REPLICAS];
    for (int i = 0; i < GB_REPLICAS; i++) {
        lx_mock_gpu_stats(reps[i], &end[i]);
        const lx_mock_gpu_stats_t *b = snapped[1] ? &snap[1][i] : &end[i];
        q += b->prefix_queries - snap[0][i].prefix_queries;
        h += b->prefix_hits - snap[0][i].prefix_hits;
        adm += b->admitted - snap[0][i].admitted;
        s->peak_wait[i] = end[i].max_waiting;
    }
    s->hit = q ? (double)h / (double)q : 0;
    s->est = -1;
    if (est_ok[0] && est_ok[1] && est_snap[1][0] > est_snap[0][0]) {
        s->est_requests = est_snap[1][0] - est_snap[0][0];
        s->est = (double)(est_snap[1][1] - est_snap[0][1]) / (double)s->est_requests;
    }
    for (int i = 0; i < GB_REPLICAS; i++) {
        const lx_mock_gpu_stats_t *b = snapped[1] ? &snap[1][i] : &end[i];
        s->share[i] = adm ? (double)(b->admitted - snap[0][i].admitted) / (double)adm : 0;
    }
    s->ran = true;
}

/* Waits (10 s at most) until no replica runs or queues anything, then empties the replicas'
 * prefix caches and counters. */
static int reset_replicas(void)
{
    for (int tries = 0; tries < 1000; tries++) {
        bool busy = false;
        for (int i = 0; i < GB_REPLICAS; i++) {
            lx_mock_gpu_stats_t st;
            lx_mock_gpu_stats(reps[i], &st);
            busy |= st.running > 0 || st.waiting > 0;
        }
        if (!busy)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < GB_REPLICAS; i++) {
        if (lx_mock_set_gpu(reps[i], &gpu) != 0)
            return -1;
        lx_mock_reset(reps[i]);
    }
    return 0;
}

static int run_one(int t, int load, const gb_arrival_t *arr, long n, res_t *s)
{
    memset(s, 0, sizeof(*s));
    memset(snap, 0, sizeof(snap));
    snapped[0] = snapped[1] = false;
    est_ok[0] = est_ok[1] = false;
    if (reset_replicas() != 0) {
        fprintf(stderr, "llmux-fleet-gpu: the replicas did not reset\n");
        return -1;
    }
    uint16_t port = (uint16_t)(opt.port_base + 10 + t);
    FILE *la = fopen("/proc/loadavg", "r");
    double loadavg = -1;
    if (la == NULL || fscanf(la, "%lf", &loadavg) != 1)
        loadavg = -1;
    if (la != NULL)
        fclose(la);
    fprintf(stderr, "llmux-fleet-gpu: %s at %.0f%% (%ld requests over %.0f s)\n", gb_target_name[t],
            opt.loads[load], n, opt.warm_s + opt.measure_s);
    if (gb_target_start(t, &popt, port) != 0)
        return -1;
    gb_rec_t *recs = calloc((size_t)n + 1, sizeof(*recs));
    gb_run_t r = {.port = port,
                  .work = &work,
                  .arr = arr,
                  .n = n,
                  .warm_s = opt.warm_s,
                  .measure_s = opt.measure_s,
                  .drain_s = opt.drain_s,
                  .recs = recs,
                  .on_window = on_window};
    if (t == GB_T_AFFINITY)
        r.direct_ports = popt.mock_ports;
    int rc = recs != NULL ? gb_client_run(&r) : -1;
    gb_target_stop();
    if (rc == 0 && opt.check)
        for (long i = 0; i < n; i++)
            if (recs[i].ok && (int)recs[i].tokens != gb_out_tokens(&work, arr[i].conv, arr[i].turn))
                token_mismatch++;
    if (rc == 0)
        summarize(&r, s);
    s->loadavg = loadavg;
    free(recs);
    return rc;
}

/* ---- the report ---- */

typedef struct {
    char *p;
    size_t len, cap;
} out_t;

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (o->len + (size_t)n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 8192;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL)
            return;
        o->p = p;
        o->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

static const char *fmt_val(char *b, size_t n, val_t v)
{
    if (v.v < 0)
        snprintf(b, n, "-");
    else if (v.v >= 10000)
        snprintf(b, n, "%s%.1f s", v.cens ? "≥ " : "", v.v / 1000);
    else
        snprintf(b, n, "%s%.0f", v.cens ? "≥ " : "", v.v);
    return b;
}

static void report_row(out_t *o, int load, int t, const res_t *s)
{
    char a[48], b[48], c[48];
    outf(o, "| %.0f%% | %s |", opt.loads[load], gb_target_name[t]);
    if (!s->ran) {
        outf(o, " (did not run) | | | | | | | | |\n");
        return;
    }
    double n = s->n ? (double)s->n : 1;
    outf(o, " %s | %s | %s | %.1f%% | %.0f | %.1f | %ld (%.1f%%) | %ld | %ld |\n",
         fmt_val(a, sizeof(a), s->ttft_p50), fmt_val(b, sizeof(b), s->ttft_p99),
         fmt_val(c, sizeof(c), s->e2e_p99), 100 * s->hit, s->tok_s, s->ok_s, s->refused,
         100.0 * (double)s->refused / n, s->failed, s->unfinished);
}

static void report_detail(out_t *o, int load, int t, const res_t *s)
{
    if (!s->ran)
        return;
    outf(o, "| %.0f%% | %s | %ld |", opt.loads[load], gb_target_name[t], s->n);
    for (int i = 0; i < GB_REPLICAS; i++)
        outf(o, "%s%.0f", i ? "/" : " ", 100 * s->share[i]);
    outf(o, " |");
    for (int i = 0; i < GB_REPLICAS; i++)
        outf(o, "%s%u", i ? "/" : " ", s->peak_wait[i]);
    outf(o, " | %.1f | %.1f |\n", s->lag_p99, s->loadavg);
}

/* llmux's own prefix-hit estimate beside the replicas' measured hit rate, for the runs that
 * have one (balance fleet). */
static void report_estimate(out_t *o, res_t (*res)[GB_T_COUNT])
{
    bool any = false;
    for (int l = 0; l < opt.n_loads; l++)
        for (int t = 0; t < GB_T_COUNT; t++)
            any |= res[l][t].ran && res[l][t].est >= 0;
    if (!any)
        return;
    outf(o, "\nllmux's prefix-hit estimate (`llmux_fleet_prefix_hits_estimated_total` / "
            "`llmux_fleet_prefix_requests_total` from its /metrics over the window: requests "
            "whose first 256-byte prompt block llmux had sent to that replica with at most the "
            "replicas' cache, `prefix_cache_tokens` = cache_blocks x block_tokens, of other "
            "prompts since) beside the replicas' measured hit rate (tokens):\n\n| load | target | "
            "requests | estimate | "
            "measured |\n|---|---|---|---|---|\n");
    for (int l = 0; l < opt.n_loads; l++)
        for (int t = 0; t < GB_T_COUNT; t++)
            if (res[l][t].ran && res[l][t].est >= 0)
                outf(o, "| %.0f%% | %s | %llu | %.1f%% | %.1f%% |\n", opt.loads[l],
                     gb_target_name[t], (unsigned long long)res[l][t].est_requests,
                     100 * res[l][t].est, 100 * res[l][t].hit);
}

/* The schedule of a load depends on its percentage only (not on the other loads run). */
static uint64_t load_stream(int l)
{
    return 1 + (uint64_t)(opt.loads[l] * 10 + 0.5);
}

static int find_load(double pctv)
{
    for (int l = 0; l < opt.n_loads; l++)
        if (fabs(opt.loads[l] - pctv) < 0.5)
            return l;
    return -1;
}

/* The targets, read off the table (only where the runs they need were made). */
static void report_targets(out_t *o, res_t (*res)[GB_T_COUNT])
{
    int l50 = find_load(50), l90 = find_load(90), l120 = find_load(120);
    const bool has = (opt.targets >> GB_T_FLEET) & 1;
    outf(o, "\n## The issue's targets\n\n");
    if (!has) {
        outf(o, "(llmux fleet was not run)\n");
        return;
    }
    for (int l = 0; l < opt.n_loads; l++) {
        const res_t *s = &res[l][GB_T_FLEET];
        if (s->ran)
            outf(o, "- prefix-cache hit rate ≥ 90%% at %.0f%%: %.1f%% — %s\n", opt.loads[l],
                 100 * s->hit, s->hit >= 0.9 ? "met" : "**not met**");
    }
    const res_t *f90 = l90 >= 0 ? &res[l90][GB_T_FLEET] : NULL;
    if (f90 != NULL && f90->ran) {
        const res_t *n = &res[l90][GB_T_NGINX], *h = &res[l90][GB_T_HAPROXY];
        double best = -1;
        if (n->ran)
            best = n->ttft_p99.v;
        if (h->ran && (best < 0 || h->ttft_p99.v < best))
            best = h->ttft_p99.v;
        if (best >= 0)
            outf(o,
                 "- TTFT p99 at 90%% ≤ half the best of nginx and HAProxy: %.0f ms against "
                 "%.0f ms / 2 = %.0f ms — %s\n",
                 f90->ttft_p99.v, best, best / 2,
                 !f90->ttft_p99.cens && f90->ttft_p99.v <= best / 2 ? "met" : "**not met**");
    }
    const res_t *f50 = l50 >= 0 ? &res[l50][GB_T_FLEET] : NULL;
    const res_t *f120 = l120 >= 0 ? &res[l120][GB_T_FLEET] : NULL;
    if (f50 != NULL && f120 != NULL && f50->ran && f120->ran) {
        bool ok =
            f120->refused > 0 && !f120->ttft_p99.cens && f120->ttft_p99.v <= 2 * f50->ttft_p99.v;
        outf(o,
             "- at 120%%, excess refused with 429 (%ld refused) and admitted TTFT p99 ≤ 2× its "
             "50%% value: %.0f ms against 2 × %.0f ms — %s\n",
             f120->refused, f120->ttft_p99.v, f50->ttft_p99.v, ok ? "met" : "**not met**");
    }
}

static void read_cmd(const char *cmd, char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return;
    if (fgets(buf, (int)n, f) == NULL)
        buf[0] = '\0';
    pclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static void report_setup(out_t *o, const gb_capacity_t *cap, double base, const double *rates,
                         const long *counts, const char *cmdline)
{
    char commit[64], cpu[256];
    read_cmd("git rev-parse --short HEAD 2>/dev/null", commit, sizeof(commit));
    read_cmd("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'", cpu, sizeof(cpu));
    outf(o, "commit %s, %ld cores, %s; command: `%s`\n\n", commit[0] ? commit : "unknown",
         sysconf(_SC_NPROCESSORS_ONLN), cpu[0] ? cpu : "unknown CPU", cmdline);
    outf(o,
         "**Replicas**: %d mock servers in GPU mode (`test/mock`), each max_running %u, "
         "unbounded queue, prefill %u µs + %u µs per uncached prompt token, itl %u µs × (1 + "
         "%.2f × (running − 1)), LRU prefix cache of %u blocks of %u tokens, vLLM metrics.\n\n",
         GB_REPLICAS, gpu.max_running, gpu.prefill_base_us, gpu.prefill_us_per_token, gpu.itl_us,
         gpu.itl_alpha, gpu.cache_blocks, gpu.block_tokens);
    outf(o,
         "**Workload** (seed %llu): %d system prompts of %d–%d tokens; conversations of %d–%d "
         "turns, user messages of %d–%d tokens, max_tokens %d–%d (the reply, as many tokens, "
         "joins the history); Poisson arrivals, each advancing one of rate × %.1f s active "
         "conversations; streaming chat, open loop, TTFT and end-to-end from the scheduled "
         "time. Mean prompt %.0f tokens, of which %.0f uncached when every reusable block is "
         "cached; mean output %.1f tokens.\n\n",
         (unsigned long long)work.seed, work.n_prompts, work.sys_min, work.sys_max, work.turns_min,
         work.turns_max, work.user_min, work.user_max, work.out_min, work.out_max, work.gap_s,
         cap->prompt_tokens, cap->uncached_warm, cap->out_tokens);
    outf(o,
         "**Capacity** (from the replicas' model, at a full batch): a request holds a slot "
         "%.3f s warm (perfect affinity) and %.3f s cold (no cache hit), so the fleet serves "
         "%.1f req/s warm and %.1f req/s cold. Loads are percentages of %.1f req/s%s:",
         cap->service_warm_s, cap->service_cold_s, cap->capacity_warm, cap->capacity_cold, base,
         opt.rate_base > 0 ? " (--rate-base)" : " (the warm capacity)");
    for (int l = 0; l < opt.n_loads; l++)
        outf(o, "%s %.0f%% = %.1f req/s (%ld requests)", l ? "," : "", opt.loads[l], rates[l],
             counts[l]);
    outf(o,
         ".\n\n**Runs**: %.0f s warm-up (not counted) + %.0f s measured + at most %.0f s for the "
         "last answers; the replicas' caches and counters are emptied before every run.\n\n",
         opt.warm_s, opt.measure_s, opt.drain_s);
    outf(o, "**Targets** (one worker / process / thread each):\n\n");
    for (int t = 0; t < GB_T_COUNT; t++)
        if (opt.targets >> t & 1)
            outf(o, "- %s: %s\n", gb_target_name[t], gb_target_desc(t, &popt));
    if (!popt.no_fleet_keys)
        outf(o,
             "- every llmux column: one provider, the replicas its endpoints, `metrics: "
             "/metrics`%s, `routing.scrape_interval: %s`, `queue_size: %d`, `queue_timeout: "
             "%s`\n",
             popt.max_in_flight > 0 ? ", `max_in_flight` per endpoint as below" : "",
             popt.scrape_interval, popt.queue_size, popt.queue_timeout);
    if (!popt.no_fleet_keys && popt.max_in_flight > 0)
        outf(o, "  (`max_in_flight: %d`)\n", popt.max_in_flight);
    if (!popt.no_fleet_keys &&
        (popt.affinity_slack != NULL || popt.affinity_eps != NULL || popt.affinity_wait != NULL))
        outf(o, "  (`affinity_slack: %s`, `affinity_eps: %s`, `affinity_wait: %s`)\n",
             popt.affinity_slack ? popt.affinity_slack : "default",
             popt.affinity_eps ? popt.affinity_eps : "default",
             popt.affinity_wait ? popt.affinity_wait : "default");
    if (!popt.no_fleet_keys && (popt.queue_target != NULL || popt.queue_interval != NULL))
        outf(o, "  (`queue_target: %s`, `queue_interval: %s`)\n",
             popt.queue_target ? popt.queue_target : "default",
             popt.queue_interval ? popt.queue_interval : "default");
}

static void report(out_t *o, res_t (*res)[GB_T_COUNT], const gb_capacity_t *cap, double base,
                   const double *rates, const long *counts, const char *cmdline, const char *date)
{
    outf(o, "# llmux GPU-fleet benchmark, %s\n\n", date);
    report_setup(o, cap, base, rates, counts, cmdline);
    outf(o, "\n| load | target | TTFT p50 ms | TTFT p99 ms | e2e p99 ms | prefix hit | out tok/s "
            "| done req/s | refused 429 | failed | unfinished |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int l = 0; l < opt.n_loads; l++)
        for (int t = 0; t < GB_T_COUNT; t++)
            if (opt.targets >> t & 1)
                report_row(o, l, t, &res[l][t]);
    outf(o,
         "\nMeasured window only. TTFT and e2e: over requests not refused and not failed; "
         "a request still unanswered at the cutoff counts with its wait so far, and a "
         "percentile that reaches one is a lower bound (≥). Prefix hit: the replicas' "
         "`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries` (tokens) over the window. "
         "out tok/s and done req/s: content chunks received and answers completed in the window, "
         "per second. failed: an error "
         "status other than 429, a cut stream, no connection; unfinished: no end by the "
         "cutoff.\n\n");
    outf(o, "Per run: the share of each replica's admissions in the window, each replica's "
            "longest queue, the client's own delay in sending (scheduled time to the write; "
            "large values mean the machine was too busy for the figures to hold) and the 1-minute "
            "load average when the run started (other work on the machine).\n\n");
    outf(o, "| load | target | requests | admitted per replica %% | peak server queue | client "
            "send lag p99 ms | load average |\n|---|---|---|---|---|---|---|\n");
    for (int l = 0; l < opt.n_loads; l++)
        for (int t = 0; t < GB_T_COUNT; t++)
            if (opt.targets >> t & 1)
                report_detail(o, l, t, &res[l][t]);
    report_estimate(o, res);
    report_targets(o, res);
}

/* ---- options, cleanup, main ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : 0;
}

static void at_exit(void)
{
    gb_target_stop();
    if (tmpdir[0] != '\0')
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

static void on_signal(int sig)
{
    gb_target_stop();
    _exit(128 + sig);
}

/* --gpu key=value,...: the replicas' settings. */
static int parse_gpu(char *s)
{
    for (char *tok = strtok(s, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return -1;
        *eq = '\0';
        const char *k = tok;
        double v = atof(eq + 1);
        if (strcmp(k, "max_running") == 0)
            gpu.max_running = (uint32_t)v;
        else if (strcmp(k, "prefill_base_us") == 0)
            gpu.prefill_base_us = (uint32_t)v;
        else if (strcmp(k, "prefill_us_per_token") == 0)
            gpu.prefill_us_per_token = (uint32_t)v;
        else if (strcmp(k, "itl_us") == 0)
            gpu.itl_us = (uint32_t)v;
        else if (strcmp(k, "itl_alpha") == 0)
            gpu.itl_alpha = v;
        else if (strcmp(k, "cache_blocks") == 0)
            gpu.cache_blocks = (uint32_t)v;
        else if (strcmp(k, "block_tokens") == 0)
            gpu.block_tokens = (uint32_t)v;
        else
            return -1;
    }
    return gpu.max_running >= 1 && gpu.block_tokens >= 1 ? 0 : -1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: llmux-fleet-gpu [--quick] [--target fleet|least_request|round_robin|nginx|"
        "haproxy|affinity]...\n"
        "         [--load PCT]... [--warmup S] [--duration S] [--drain S] [--seed N]\n"
        "         [--prompts N] [--gap S] [--gpu k=v,...] [--rate-base R]\n"
        "         [--no-fleet-keys] [--max-in-flight N] [--queue-size N|-1]\n"
        "         [--queue-timeout D] [--scrape-interval D] [--affinity-slack S]\n"
        "         [--affinity-eps E] [--affinity-wait D] [--queue-target D]\n"
        "         [--queue-interval D] [--port-base P]\n"
        "         [--llmux PATH] [--nginx PATH] [--haproxy PATH] [--out FILE] [--plan] [--check]\n"
        "Four simulated GPU replicas behind llmux, nginx and HAProxy, multi-turn chat over\n"
        "shared system prompts at percentages of the fleet's capacity (bench/fleet/README.md)."
        "\n");
}

static int target_index(const char *s)
{
    static const char *const names[GB_T_COUNT] = {"fleet", "least_request", "round_robin",
                                                  "nginx", "haproxy",       "affinity"};
    for (int t = 0; t < GB_T_COUNT; t++)
        if (strcmp(s, names[t]) == 0)
            return t;
    return -1;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longs[] = {{"quick", no_argument, NULL, 'q'},
                                          {"target", required_argument, NULL, 't'},
                                          {"load", required_argument, NULL, 'L'},
                                          {"warmup", required_argument, NULL, 'w'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"drain", required_argument, NULL, 'D'},
                                          {"seed", required_argument, NULL, 's'},
                                          {"prompts", required_argument, NULL, 'p'},
                                          {"gap", required_argument, NULL, 'g'},
                                          {"gpu", required_argument, NULL, 'G'},
                                          {"rate-base", required_argument, NULL, 'R'},
                                          {"no-fleet-keys", no_argument, NULL, 'K'},
                                          {"max-in-flight", required_argument, NULL, 'm'},
                                          {"queue-size", required_argument, NULL, 'Q'},
                                          {"queue-timeout", required_argument, NULL, 'T'},
                                          {"scrape-interval", required_argument, NULL, 'S'},
                                          {"affinity-slack", required_argument, NULL, 'A'},
                                          {"affinity-eps", required_argument, NULL, 'E'},
                                          {"affinity-wait", required_argument, NULL, 'W'},
                                          {"queue-target", required_argument, NULL, 'U'},
                                          {"queue-interval", required_argument, NULL, 'I'},
                                          {"port-base", required_argument, NULL, 'P'},
                                          {"llmux", required_argument, NULL, 'l'},
                                          {"nginx", required_argument, NULL, 'n'},
                                          {"haproxy", required_argument, NULL, 'h'},
                                          {"out", required_argument, NULL, 'o'},
                                          {"plan", no_argument, NULL, 'x'},
                                          {"check", no_argument, NULL, 'C'},
                                          {"help", no_argument, NULL, 'H'},
                                          {NULL, 0, NULL, 0}};
    int ch, t;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'q':
            opt.quick = true;
            opt.warm_s = 2;
            opt.measure_s = 6;
            opt.drain_s = 4;
            break;
        case 't':
            if ((t = target_index(optarg)) < 0)
                return -1;
            opt.targets |= 1u << t;
            break;
        case 'L':
            if (opt.n_loads == MAX_LOADS || atof(optarg) <= 0 || atof(optarg) > 1000)
                return -1;
            opt.loads[opt.n_loads++] = atof(optarg);
            break;
        case 'w':
            opt.warm_s = atof(optarg);
            break;
        case 'd':
            opt.measure_s = atof(optarg);
            break;
        case 'D':
            opt.drain_s = atof(optarg);
            break;
        case 's':
            work.seed = strtoull(optarg, NULL, 10);
            break;
        case 'p':
            work.n_prompts = atoi(optarg);
            break;
        case 'g':
            work.gap_s = atof(optarg);
            break;
        case 'G':
            if (parse_gpu(optarg) != 0)
                return -1;
            break;
        case 'R':
            opt.rate_base = atof(optarg);
            break;
        case 'K':
            popt.no_fleet_keys = true;
            break;
        case 'm':
            popt.max_in_flight = atoi(optarg);
            break;
        case 'Q':
            popt.queue_size = atoi(optarg);
            break;
        case 'T':
            popt.queue_timeout = optarg;
            break;
        case 'S':
            popt.scrape_interval = optarg;
            break;
        case 'A':
            popt.affinity_slack = optarg;
            break;
        case 'E':
            popt.affinity_eps = optarg;
            break;
        case 'W':
            popt.affinity_wait = optarg;
            break;
        case 'U':
            popt.queue_target = optarg;
            break;
        case 'I':
            popt.queue_interval = optarg;
            break;
        case 'P':
            opt.port_base = (uint16_t)atoi(optarg);
            break;
        case 'l':
            popt.llmux = optarg;
            break;
        case 'n':
            popt.nginx = optarg;
            break;
        case 'h':
            popt.haproxy = optarg;
            break;
        case 'o':
            opt.out = optarg;
            break;
        case 'x':
            opt.plan = true;
            break;
        case 'C':
            opt.check = true;
            break;
        case 'H':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || opt.warm_s < 0 || opt.measure_s < 1 || opt.measure_s > 3600 ||
        opt.drain_s < 0 || opt.drain_s > 600 || work.n_prompts < 1 || work.n_prompts > 4096 ||
        work.gap_s <= 0 || opt.port_base < 1024 || opt.port_base > 65000)
        return -1;
    if (opt.n_loads == 0) {
        opt.loads[0] = 50;
        opt.loads[1] = 90;
        opt.loads[2] = 120;
        opt.n_loads = 3;
    }
    if (opt.targets == 0) /* the anchors and llmux; the affinity reference on demand */
        opt.targets = (1u << GB_T_AFFINITY) - 1;
    return 0;
}

static int self_dir_llmux(char *buf, size_t n)
{
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k <= 0)
        return -1;
    exe[k] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    int w = snprintf(buf, n, "%s/llmux", exe);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

static int check_exe(int t, const char *path)
{
    if (!(opt.targets >> t & 1) || t == GB_T_AFFINITY || access(path, X_OK) == 0)
        return 0;
    fprintf(stderr, "llmux-fleet-gpu: %s is not an executable (for %s)\n", path, gb_target_name[t]);
    return -1;
}

static int setup(void)
{
    static char llmux_path[PATH_MAX];
    if (popt.llmux == NULL && self_dir_llmux(llmux_path, sizeof(llmux_path)) == 0)
        popt.llmux = llmux_path;
    for (int t = 0; t < GB_T_COUNT; t++)
        if (check_exe(t, t == GB_T_NGINX     ? popt.nginx
                         : t == GB_T_HAPROXY ? popt.haproxy
                                             : (popt.llmux ? popt.llmux : "llmux")) != 0)
            return 2;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/llmux-fleet-gpu-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        perror("llmux-fleet-gpu: mkdtemp");
        return 1;
    }
    popt.tmpdir = tmpdir;
    atexit(at_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < GB_REPLICAS; i++) {
        /* --check: ephemeral ports (no target listens) */
        uint16_t want = opt.check ? 0 : (uint16_t)(opt.port_base + i);
        reps[i] = lx_mock_start("127.0.0.1", want);
        if (reps[i] == NULL || lx_mock_set_gpu(reps[i], &gpu) != 0) {
            fprintf(stderr, "llmux-fleet-gpu: cannot start replica %d on port %u\n", i + 1, want);
            return 1;
        }
        popt.mock_ports[i] = lx_mock_port(reps[i]);
    }
    popt.prefix_cache_tokens = gpu.cache_blocks * gpu.block_tokens; /* (what a replica holds) */
    return 0;
}

/* --check: the workload's properties, then 3 s at 50% straight to the replicas (the client,
 * the replicas' GPU mode and the figures end to end): every answer complete, as many chunks as
 * max_tokens, prefix hits. 0 when all hold. */
static int self_check(void)
{
    int bad = gb_check_work(&work, &gpu);
    opt.targets = 1u << GB_T_AFFINITY;
    opt.warm_s = 1;
    opt.measure_s = 2;
    opt.drain_s = 5;
    opt.loads[0] = 50;
    opt.n_loads = 1;
    if (setup() != 0)
        return 1;
    gb_arrival_t *ref = NULL, *arr = NULL;
    long n_ref = gb_schedule(&work, 50, 20, 0, &ref);
    gb_capacity_t cap;
    gb_capacity(&work, ref, n_ref, &gpu, &cap);
    long n = gb_schedule(&work, cap.capacity_warm / 2, 3, 1, &arr);
    res_t s;
    int rc = n > 0 ? run_one(GB_T_AFFINITY, 0, arr, n, &s) : -1;
    bool ok = rc == 0 && s.ran && s.n > 0 && s.ok == s.n && s.failed == 0 && s.unfinished == 0 &&
              s.hit > 0.5 && s.tok_s > 0 && s.ttft_p50.v > 0 && token_mismatch == 0;
    if (!ok)
        fprintf(stderr,
                "llmux-fleet-gpu --check: the short run: %ld requests, %ld ok, %ld failed, %ld "
                "unfinished, prefix hit %.2f, %.0f tok/s, %ld answers with a wrong chunk count\n",
                s.n, s.ok, s.failed, s.unfinished, s.hit, s.tok_s, token_mismatch);
    free(ref);
    free(arr);
    for (int i = 0; i < GB_REPLICAS; i++)
        lx_mock_stop(reps[i]);
    gb_work_free(&work);
    fprintf(stderr, "llmux-fleet-gpu --check: %s\n", bad == 0 && ok ? "ok" : "FAILED");
    return bad == 0 && ok ? 0 : 1;
}

static void save(const out_t *o, const char *date)
{
    char path[256];
    if (opt.out == NULL)
        snprintf(path, sizeof(path), "bench/results/fleet-gpu-%s.md", date);
    const char *dest = opt.out ? opt.out : path;
    fwrite(o->p, 1, o->len, stdout);
    FILE *f = fopen(dest, "w");
    if (f != NULL && fwrite(o->p, 1, o->len, f) == o->len && fclose(f) == 0)
        fprintf(stderr, "llmux-fleet-gpu: report saved to %s\n", dest);
    else
        fprintf(stderr, "llmux-fleet-gpu: cannot write %s: %s\n", dest, strerror(errno));
}

int main(int argc, char **argv)
{
    lx_mock_gpu_defaults(&gpu);
    gpu.max_running = 8;
    gpu.prefill_base_us = 2000;
    gpu.prefill_us_per_token = 100;
    gpu.itl_us = 8000;
    gpu.itl_alpha = 0.1;
    gpu.cache_blocks = 3072;
    gpu.block_tokens = 16;
    strcpy(gpu.model_name, GB_MODEL);
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    if (gb_work_init(&work) != 0) {
        fprintf(stderr, "llmux-fleet-gpu: out of memory\n");
        return 1;
    }

    /* the capacity: the model over a reference schedule (60 s at 50 req/s) */
    gb_arrival_t *ref = NULL;
    long n_ref = gb_schedule(&work, 50, 60, 0, &ref);
    gb_capacity_t cap;
    gb_capacity(&work, ref, n_ref, &gpu, &cap);
    free(ref);
    double base = opt.rate_base > 0 ? opt.rate_base : cap.capacity_warm;
    fprintf(stderr, "llmux-fleet-gpu: capacity %.1f req/s warm, %.1f cold (slot %.3f s / %.3f s)\n",
            cap.capacity_warm, cap.capacity_cold, cap.service_warm_s, cap.service_cold_s);

    if (opt.check)
        return self_check();
    if (opt.plan) {
        for (int l = 0; l < opt.n_loads; l++) {
            gb_arrival_t *arr = NULL;
            long n = gb_schedule(&work, base * opt.loads[l] / 100, opt.warm_s + opt.measure_s,
                                 load_stream(l), &arr);
            gb_capacity_t c;
            gb_capacity(&work, arr, n, &gpu, &c);
            printf("%.0f%%: %.1f req/s, %ld requests, mean prompt %.0f tokens (%.0f uncached "
                   "warm), output %.1f\n",
                   opt.loads[l], base * opt.loads[l] / 100, n, c.prompt_tokens, c.uncached_warm,
                   c.out_tokens);
            free(arr);
        }
        return 0;
    }
    int rc = setup();
    if (rc != 0)
        return rc;
    static res_t res[MAX_LOADS][GB_T_COUNT];
    double rates[MAX_LOADS];
    long counts[MAX_LOADS];
    int failures = 0;
    for (int l = 0; l < opt.n_loads; l++) {
        gb_arrival_t *arr = NULL;
        rates[l] = base * opt.loads[l] / 100;
        counts[l] = gb_schedule(&work, rates[l], opt.warm_s + opt.measure_s, load_stream(l), &arr);
        for (int t = 0; t < GB_T_COUNT && counts[l] > 0; t++)
            if ((opt.targets >> t & 1) && run_one(t, l, arr, counts[l], &res[l][t]) != 0)
                failures++;
        free(arr);
    }
    for (int i = 0; i < GB_REPLICAS; i++)
        lx_mock_stop(reps[i]);

    char date[32], cmdline[2048] = "";
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof(cmdline) - l, "%s%s", i ? " " : "", argv[i]);
    }
    out_t o = {0};
    report(&o, res, &cap, base, rates, counts, cmdline, date);
    if (o.p != NULL)
        save(&o, date);
    free(o.p);
    gb_work_free(&work);
    return failures ? 1 : 0;
}
