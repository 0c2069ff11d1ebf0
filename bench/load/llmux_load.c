/*
 * llmux_load.c - the project's load client, for what wrk cannot do.
 *
 *   llmux-load stream  -p PORT -c CONNS [-n STREAMS] [--chunks N] [--size B] [--interval-us U]
 *                      [--model ID] [--path P] [--rss-pid PID] [--hold-ms MS]
 *       CONNS concurrent SSE streams (STREAMS in all, default CONNS), each asking the mock for
 *       N chunks of B bytes every U microseconds (body field "mock"). Reports time to first
 *       byte, per-chunk relay latency (receive time minus the mock's send stamp "mock_ts",
 *       both CLOCK_MONOTONIC on this machine), chunks lost, streams failed. With --rss-pid, the
 *       RSS of that process is sampled before the first connection and at the moment every
 *       stream is open (peak), and reported per stream.
 *
 *   llmux-load seq    -p PORT -d SECONDS [--model ID] [--path P]
 *       Closed loop on one connection: the next request leaves when the answer is complete,
 *       so each latency is one request's round trip through the target (concurrency 1).
 *
 *   llmux-load rate    -p PORT -r RATE -d SECONDS [-c CONNS] [--model ID] [--path P]
 *       Open loop: requests are scheduled at a fixed rate (a timerfd clock, sub-millisecond)
 *       whatever the answers do, and each
 *       latency is measured from its scheduled time, so a stall shows up in the percentiles
 *       (no coordinated omission). Non-streaming chat requests of about 300 bytes.
 *
 *   --key KEY (every mode) sends "Authorization: Bearer KEY" with each request.
 *
 * One libuv loop, one thread; every loop bounded by its count and a deadline.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <uv.h>

#define MAX_EVENT_SCAN 1024

typedef struct conn conn_t;

static struct {
    const char *mode;
    uint16_t port;
    int conns;
    int streams;
    int chunks;
    int size;
    int interval_us;
    const char *model;
    const char *path;
    int rss_pid;
    int hold_ms;
    double rate;
    double seconds;
    int max_connecting;
    const char *key;
} opt = {NULL, 8080, 100,  0, 200, 100, 1000, "bench/model", "/v1/chat/completions",
         0,    0,    1000, 5, 256, NULL};

/* "Authorization: Bearer KEY\r\n" when --key was given, else "". */
static const char *auth_line(void)
{
    static char line[512];
    if (opt.key == NULL)
        return "";
    snprintf(line, sizeof(line), "Authorization: Bearer %s\r\n", opt.key);
    return line;
}

static uv_loop_t *loop;
static char request[1024];
static size_t request_len;

/* results */
static uint64_t *ttfb;
static size_t n_ttfb;
static uint64_t *chunk_lat;
static size_t n_chunk_lat, cap_chunk_lat;
static uint64_t chunks_seen, streams_ok, streams_failed, chunks_lost;
static int started, finished, open_now, connecting, peak_open;
static long rss_idle_kb, rss_peak_kb;
static uint64_t t_begin;

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint64_t t_sent; /* when the request was (or was scheduled to be) sent */
    bool got_first;
    bool done;
    int chunks;
    /* a small carry-over of a partial line across reads */
    char line[MAX_EVENT_SCAN];
    size_t line_len;
    bool line_skip;
    char buf[65536];
    int id;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void add_chunk_lat(uint64_t v)
{
    if (n_chunk_lat == cap_chunk_lat) {
        size_t cap = cap_chunk_lat ? cap_chunk_lat * 2 : 1 << 16;
        uint64_t *p = realloc(chunk_lat, cap * sizeof(*p));
        if (p == NULL)
            return;
        chunk_lat = p;
        cap_chunk_lat = cap;
    }
    chunk_lat[n_chunk_lat++] = v;
}

static void start_next(void);

static void on_closed(uv_handle_t *h)
{
    free(h->data);
    open_now--;
    start_next();
}

static void finish(conn_t *c, bool ok)
{
    if (c->done)
        return;
    c->done = true;
    finished++;
    if (ok && c->chunks >= opt.chunks)
        streams_ok++;
    else
        streams_failed++;
    if (c->chunks < opt.chunks)
        chunks_lost += (uint64_t)(opt.chunks - c->chunks);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* One complete line of the response. Data lines carry the mock's stamp. */
static void on_line(conn_t *c, const char *l, size_t n, uint64_t t)
{
    if (n < 6 || memcmp(l, "data: ", 6) != 0)
        return;
    if (n >= 12 && memcmp(l + 6, "[DONE]", 6) == 0) {
        finish(c, true);
        return;
    }
    const char *ts = memmem(l, n, "\"mock_ts\":", 10);
    if (ts == NULL)
        return;
    if (memmem(l, n, "\"content\":\"", 11) == NULL)
        return; /* role-only, finish and usage events are not content chunks */
    uint64_t sent = strtoull(ts + 10, NULL, 10);
    c->chunks++;
    chunks_seen++;
    if (sent > 0 && t >= sent)
        add_chunk_lat(t - sent);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (nread < 0) {
        finish(c, false);
        return;
    }
    uint64_t t = now_ns();
    if (!c->got_first && nread > 0) {
        c->got_first = true;
        ttfb[n_ttfb++] = t - c->t_sent;
        if (n_ttfb == (size_t)opt.streams && opt.rss_pid > 0)
            rss_peak_kb = rss_kb(opt.rss_pid);
    }
    const char *p = b->base, *end = b->base + nread;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        /* keep at most MAX_EVENT_SCAN bytes of a line: the stamp sits near its start */
        if (!c->line_skip) {
            size_t k = n < MAX_EVENT_SCAN - c->line_len ? n : MAX_EVENT_SCAN - c->line_len;
            memcpy(c->line + c->line_len, p, k);
            c->line_len += k;
        }
        if (nl == NULL)
            break;
        on_line(c, c->line, c->line_len, t);
        if (c->done)
            return;
        c->line_len = 0;
        c->line_skip = false;
        p = nl + 1;
    }
}

static void on_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    if (status != 0)
        finish(c, false);
}

static void on_connected(uv_connect_t *r, int status)
{
    conn_t *c = r->data;
    connecting--;
    if (status != 0) {
        finish(c, false);
        return;
    }
    open_now++;
    if (open_now > peak_open)
        peak_open = open_now;
    uv_tcp_nodelay(&c->tcp, 1);
    c->t_sent = now_ns();
    uv_buf_t buf = uv_buf_init(request, (unsigned)request_len);
    c->wreq.data = c;
    uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    start_next();
}

static void start_one(void)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->id = started++;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", opt.port, &sa);
    connecting++;
    open_now++; /* counted as open from the connect on; on_closed balances it */
    open_now--;
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa, on_connected) != 0) {
        connecting--;
        finish(c, false);
    }
}

static void start_next(void)
{
    while (started < opt.streams && connecting < opt.max_connecting &&
           started - finished < opt.conns)
        start_one();
    if (finished == opt.streams)
        uv_stop(loop);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0; /* microseconds */
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "llmux-load: deadline reached with %d of %d streams finished\n", finished,
            opt.streams);
    uv_stop(loop);
}

static int run_stream(void)
{
    if (opt.streams == 0)
        opt.streams = opt.conns;
    char body[512];
    int bl = snprintf(body, sizeof(body),
                      "{\"model\":\"%s\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"Benchmark prompt for a streamed answer.\"}],"
                      "\"mock\":{\"chunks\":%d,\"chunk_size\":%d,\"interval_us\":%d}}",
                      opt.model, opt.chunks, opt.size, opt.interval_us);
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: "
                                   "application/json\r\nContent-Length: %d\r\n\r\n%s",
                                   opt.path, auth_line(), bl, body);
    ttfb = calloc((size_t)opt.streams + 1, sizeof(*ttfb));
    if (opt.rss_pid > 0)
        rss_idle_kb = rss_kb(opt.rss_pid);
    uv_timer_t deadline;
    uv_timer_init(loop, &deadline);
    uint64_t budget = 60000 + (uint64_t)opt.chunks * (uint64_t)opt.interval_us / 1000 * 4;
    uv_timer_start(&deadline, on_deadline, budget, 0);
    uv_unref((uv_handle_t *)&deadline);
    t_begin = now_ns();
    start_next();
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(now_ns() - t_begin) / 1e9;
    qsort(ttfb, n_ttfb, sizeof(*ttfb), cmp_u64);
    qsort(chunk_lat, n_chunk_lat, sizeof(*chunk_lat), cmp_u64);
    printf("streams: %llu ok, %llu failed, peak open %d, %.2f s\n", (unsigned long long)streams_ok,
           (unsigned long long)streams_failed, peak_open, secs);
    printf("chunks: %llu received, %llu lost\n", (unsigned long long)chunks_seen,
           (unsigned long long)chunks_lost);
    printf("ttfb_us: p50 %.0f p99 %.0f max %.0f\n", pct(ttfb, n_ttfb, 50), pct(ttfb, n_ttfb, 99),
           pct(ttfb, n_ttfb, 100));
    printf("chunk_latency_us: p50 %.0f p99 %.0f p99.9 %.0f max %.0f\n",
           pct(chunk_lat, n_chunk_lat, 50), pct(chunk_lat, n_chunk_lat, 99),
           pct(chunk_lat, n_chunk_lat, 99.9), pct(chunk_lat, n_chunk_lat, 100));
    if (opt.rss_pid > 0)
        printf("rss_kb: idle %ld, all streams open %ld, per stream %.2f KiB\n", rss_idle_kb,
               rss_peak_kb,
               n_ttfb > 0 ? (double)(rss_peak_kb - rss_idle_kb) / (double)n_ttfb : 0.0);
    return streams_failed == 0 && chunks_lost == 0 ? 0 : 1;
}

/* --- open-loop rate mode ------------------------------------------------------------------- */

typedef struct rconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    bool busy, ready;
    uint64_t t_sched;
    size_t got;  /* response bytes so far */
    size_t need; /* head + content-length once known, 0 before */
    char buf[16384];
    size_t len;
} rconn_t;

static rconn_t *rconns;
static uint64_t *lat;
static size_t n_lat, cap_lat;
static uint64_t sched_total, sched_sent, backlog_drops, rate_errors;
static bool closed_loop; /* seq mode: the next request leaves when the answer is in */
static uint64_t *queue;  /* scheduled times waiting for a free connection */
static size_t q_head, q_tail, q_cap;
/* The scheduler's clock: a timerfd (nanosecond periods) watched by the loop, so an open loop
 * at 5,000 req/s fires every 200 µs instead of rounding to libuv's 1 ms timers. */
static int tick_fd = -1;
static uv_poll_t tick;
static uint64_t t_end;

static void rate_send(rconn_t *c, uint64_t t_sched)
{
    c->busy = true;
    c->t_sched = t_sched;
    c->len = 0;
    c->need = 0;
    uv_buf_t buf = uv_buf_init(request, (unsigned)request_len);
    uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, NULL);
    sched_sent++;
}

static void dispatch_queue(void)
{
    for (int i = 0; i < opt.conns && q_head != q_tail; i++) {
        rconn_t *c = &rconns[i];
        if (c->ready && !c->busy) {
            rate_send(c, queue[q_head % q_cap]);
            q_head++;
        }
    }
}

static void rate_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    rconn_t *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void rate_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    rconn_t *c = s->data;
    (void)b;
    if (nread < 0) {
        c->ready = false;
        if (c->busy)
            rate_errors++;
        c->busy = false;
        return;
    }
    c->len += (size_t)nread;
    if (c->need == 0) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e == NULL)
            return;
        /* header names are case-insensitive (HAProxy sends them in lower case) */
        char save = *e;
        *e = '\0';
        char *cl = strcasestr(c->buf, "\ncontent-length:");
        bool chunked = strcasestr(c->buf, "\ntransfer-encoding: chunked") != NULL;
        *e = save;
        if (strncmp(c->buf + 9, "200", 3) != 0)
            rate_errors++;
        if (cl != NULL) {
            c->need = (size_t)(e + 4 - c->buf) + strtoul(cl + 16, NULL, 10);
        } else if (chunked) {
            c->need = SIZE_MAX; /* chunked: complete at the terminating chunk */
        } else {
            rate_errors++;
            if (!uv_is_closing((uv_handle_t *)&c->tcp))
                uv_close((uv_handle_t *)&c->tcp, NULL);
            c->ready = c->busy = false;
            return;
        }
    }
    bool complete = c->need == SIZE_MAX
                        ? c->len >= 5 && memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0
                        : c->len >= c->need;
    if (complete) {
        uint64_t t = now_ns();
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
            lat = realloc(lat, cap_lat * sizeof(*lat));
        }
        lat[n_lat++] = t - c->t_sched;
        c->busy = false;
        c->len = 0;
        c->need = 0;
        if (closed_loop && t < t_end)
            rate_send(c, now_ns());
        dispatch_queue();
    }
}

static void rate_connected(uv_connect_t *r, int status)
{
    rconn_t *c = r->data;
    if (status != 0)
        return;
    uv_tcp_nodelay(&c->tcp, 1);
    c->ready = true;
    uv_read_start((uv_stream_t *)&c->tcp, rate_alloc, rate_read);
}

static void on_tick_closed(uv_handle_t *h)
{
    (void)h;
    close(tick_fd);
    tick_fd = -1;
}

static void stop_tick(void)
{
    if (!uv_is_closing((uv_handle_t *)&tick))
        uv_close((uv_handle_t *)&tick, on_tick_closed);
}

static void on_tick(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)status;
    (void)events;
    uint64_t expirations;
    if (read(tick_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        return;
    uint64_t now = now_ns();
    if (closed_loop) {
        if (!rconns[0].busy && rconns[0].ready && now < t_end)
            rate_send(&rconns[0], now);
        if (now >= t_end && !rconns[0].busy) {
            if (!uv_is_closing((uv_handle_t *)&rconns[0].tcp))
                uv_close((uv_handle_t *)&rconns[0].tcp, NULL);
            stop_tick();
        }
        return;
    }
    uint64_t period = (uint64_t)(1e9 / opt.rate);
    /* schedule every request due by now, even if the previous ones are late */
    while (t_begin + sched_total * period <= now && t_begin + sched_total * period < t_end) {
        if (q_tail - q_head == q_cap) {
            backlog_drops++;
        } else {
            queue[q_tail % q_cap] = t_begin + sched_total * period;
            q_tail++;
        }
        sched_total++;
    }
    dispatch_queue();
    if (now >= t_end + 2000000000ull || (now >= t_end && q_head == q_tail)) {
        bool idle = true;
        for (int i = 0; i < opt.conns; i++)
            idle = idle && !rconns[i].busy;
        if (idle || now >= t_end + 2000000000ull) {
            for (int i = 0; i < opt.conns; i++)
                if (!uv_is_closing((uv_handle_t *)&rconns[i].tcp))
                    uv_close((uv_handle_t *)&rconns[i].tcp, NULL);
            stop_tick();
        }
    }
}

static int run_rate(void)
{
    const char *body = "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"You "
                       "are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"Write one "
                       "sentence about the sea, in the style of a weather report, and keep it "
                       "short.\"}],\"max_tokens\":64,\"temperature\":0.7}";
    char b[512];
    int bl = snprintf(b, sizeof(b), body, opt.model);
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: "
                                   "application/json\r\nContent-Length: %d\r\n\r\n%s",
                                   opt.path, auth_line(), bl, b);
    rconns = calloc((size_t)opt.conns, sizeof(*rconns));
    q_cap = 1 << 20;
    queue = calloc(q_cap, sizeof(*queue));
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", opt.port, &sa);
    for (int i = 0; i < opt.conns; i++) {
        uv_tcp_init(loop, &rconns[i].tcp);
        rconns[i].tcp.data = &rconns[i];
        rconns[i].creq.data = &rconns[i];
        uv_tcp_connect(&rconns[i].creq, &rconns[i].tcp, (struct sockaddr *)&sa, rate_connected);
    }
    /* let the connections open before the clock starts */
    uint64_t wait_until = now_ns() + 200000000ull;
    while (now_ns() < wait_until)
        uv_run(loop, UV_RUN_NOWAIT);
    t_begin = now_ns();
    t_end = t_begin + (uint64_t)(opt.seconds * 1e9);
    /* one tick per scheduled request (at most every 20 µs); 1 ms for the closed loop, whose
     * answers send the next request themselves */
    uint64_t period_ns = closed_loop ? 1000000ull : (uint64_t)(1e9 / opt.rate);
    if (period_ns < 20000)
        period_ns = 20000;
    tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {
        .it_interval = {(time_t)(period_ns / 1000000000ull), (long)(period_ns % 1000000000ull)},
        .it_value = {0, 1000},
    };
    if (tick_fd < 0 || timerfd_settime(tick_fd, 0, &its, NULL) != 0 ||
        uv_poll_init(loop, &tick, tick_fd) != 0 ||
        uv_poll_start(&tick, UV_READABLE, on_tick) != 0) {
        perror("timerfd");
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    qsort(lat, n_lat, sizeof(*lat), cmp_u64);
    if (closed_loop)
        printf("seq: %llu requests in %.1f s on one connection, %llu errors\n",
               (unsigned long long)n_lat, opt.seconds, (unsigned long long)rate_errors);
    else
        printf("rate: %.0f req/s scheduled for %.1f s: %llu scheduled, %llu answered, %llu "
               "errors, %llu dropped\n",
               opt.rate, opt.seconds, (unsigned long long)sched_total, (unsigned long long)n_lat,
               (unsigned long long)rate_errors, (unsigned long long)backlog_drops);
    printf("latency_us: p50 %.0f p99 %.0f p99.9 %.0f max %.0f\n", pct(lat, n_lat, 50),
           pct(lat, n_lat, 99), pct(lat, n_lat, 99.9), pct(lat, n_lat, 100));
    return rate_errors == 0 ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: llmux-load stream|rate -p PORT [options] (see the source header)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    opt.mode = argv[1];
    static const struct option longs[] = {
        {"chunks", required_argument, NULL, 1},      {"size", required_argument, NULL, 2},
        {"interval-us", required_argument, NULL, 3}, {"model", required_argument, NULL, 4},
        {"path", required_argument, NULL, 5},        {"rss-pid", required_argument, NULL, 6},
        {"hold-ms", required_argument, NULL, 7},     {"max-connecting", required_argument, NULL, 8},
        {"key", required_argument, NULL, 9},         {NULL, 0, NULL, 0}};
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "p:c:n:r:d:", longs, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.port = (uint16_t)atoi(optarg);
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'n':
            opt.streams = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'd':
            opt.seconds = atof(optarg);
            break;
        case 1:
            opt.chunks = atoi(optarg);
            break;
        case 2:
            opt.size = atoi(optarg);
            break;
        case 3:
            opt.interval_us = atoi(optarg);
            break;
        case 4:
            opt.model = optarg;
            break;
        case 5:
            opt.path = optarg;
            break;
        case 6:
            opt.rss_pid = atoi(optarg);
            break;
        case 7:
            opt.hold_ms = atoi(optarg);
            break;
        case 8:
            opt.max_connecting = atoi(optarg);
            break;
        case 9:
            opt.key = optarg;
            break;
        default:
            usage();
        }
    }
    loop = uv_default_loop();
    int rc;
    if (strcmp(opt.mode, "stream") == 0)
        rc = run_stream();
    else if (strcmp(opt.mode, "rate") == 0)
        rc = run_rate();
    else if (strcmp(opt.mode, "seq") == 0) {
        closed_loop = true;
        opt.conns = 1;
        opt.rate = 1;
        rc = run_rate();
    } else
        usage();
    uv_run(loop, UV_RUN_NOWAIT);
    return rc;
}
