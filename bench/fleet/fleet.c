/*
 * fleet.c - llmux-fleet, the fleet simulation: llmux in front of four mock endpoints of one
 * model while the endpoints misbehave on a schedule, once per routing strategy.
 *
 *   llmux-fleet [--llmux PATH] [--quick] [--duration S] [--rate R] [--scenario NAME]...
 *               [--strategy NAME]... [--plain-config] [--out FILE]
 *
 * For each scenario and strategy: the four mocks (in this process, test/mock/mock.h, one thread
 * each, ports outside the ephemeral range so a re-bind after an outage finds its port free) are
 * reset; a config is written to a temporary directory and llmux is started as a child process;
 * once /readyz answers, an open-loop load of streaming chat requests runs for the duration on
 * one libuv loop (this thread) while a timer applies the scenario's faults as the clock passes
 * their times, and another samples each mock's 2xx counter every second. Then llmux is stopped
 * (SIGTERM, SIGKILL after 5 s) and the next run starts. The report (Markdown) goes to stdout and
 * to bench/results/fleet-<date>.md. Every loop is bounded by a deadline; everything is on
 * loopback; the child is killed on every exit path (atexit and SIGINT/SIGTERM).
 */
#include "mock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define N_EP          4
#define MAX_CONNS     512
#define SLICE_S       5
#define REQ_TIMEOUT_S 30 /* a request not complete by then is a failure */
#define DRAIN_S       15 /* after the schedule, wait at most this long for answers */
#define MOCK_PORT_LO  21101
#define MOCK_PORT_HI  29999
#define LINE_MAX_     1024
#define MODEL_ID      "fleet/model"

enum { SC_DEGRADE, SC_SLOW, SC_OUTAGE, SC_RATELIMIT, SC_MIXED, SC_COUNT };
static const char *const sc_name[SC_COUNT] = {"degrade", "slow", "outage", "ratelimit", "mixed"};
static const char *const sc_desc[SC_COUNT] = {
    "at 1/6 of the run (10 s of 60) p2 starts failing 30% of requests",
    "at 1/6 of the run (10 s of 60) p3's time to first byte grows by --slow-ms (300 ms unless set; "
    "--issue: 800 ms; see Faults above)",
    "the last endpoint goes down at 1/6 of the run (10 s of 60) and comes back --outage-s "
    "(25 s of 60) later",
    "p1 answers 429 above 4 concurrent requests, throughout",
    "all of the above at once",
};

#define MAX_STRAT 4

static struct {
    const char *llmux;
    double seconds;
    double rate;
    int chunks, chunk_size, interval_ms, first_ms;
    int n_ep;            /* endpoints p1..p<n_ep>, 2 to N_EP */
    double stream_share; /* share of the requests that stream (the others: one JSON answer) */
    int slow_ms;         /* slow: the added time to first byte */
    double outage_s;     /* outage: how long the endpoint stays down (seconds of a 60 s run) */
    const char *rescore, *window; /* health.rescore_interval and health.window */
    bool replicas;                /* one provider whose replica endpoints are the mocks */
    bool plain;                   /* leave the routing and health sections out of the config */
    unsigned scenarios;           /* bit per scenario */
    const char *strat[MAX_STRAT];
    int n_strat;
    const char *out;
    const char *hedge_budget; /* routing.hedge_budget; NULL: left out (llmux's default) */
} opt = {NULL, 60,   200,   8,     16,    20, 20,     N_EP, 1.0,  300,
         25,   "2s", "20s", false, false, 0,  {NULL}, 0,    NULL, NULL};

/* ---- the child llmux ---- */

static volatile pid_t child = -1;
static char tmpdir[64];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* SIGTERM, then SIGKILL when it has not exited within 5 s; async-signal-safe. */
static void kill_child(void)
{
    pid_t pid = child;
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            child = -1;
            return;
        }
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    child = -1;
}

static void on_signal(int sig)
{
    kill_child();
    _exit(128 + sig);
}

static void cleanup_tmp(void)
{
    if (tmpdir[0] == '\0')
        return;
    char p[128];
    snprintf(p, sizeof(p), "%s/llmux.yaml", tmpdir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/llmux.log", tmpdir);
    unlink(p);
    static const char *const db[] = {"llmux.db", "llmux.db-wal", "llmux.db-shm"};
    for (size_t i = 0; i < sizeof(db) / sizeof(db[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmpdir, db[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

static void at_exit(void)
{
    kill_child();
    cleanup_tmp();
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A free loopback port (bound and released: a small race, fine for a benchmark). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int write_config(const char *path, uint16_t port, const uint16_t *mock_ports,
                        const char *strategy)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "# written by llmux-fleet\nlisten: 127.0.0.1:%u\nworkers: 1\nproviders:\n", port);
    if (opt.replicas) { /* one provider, the mocks its replica endpoints */
        fprintf(f, "  - name: p\n    base_url: http://127.0.0.1:%u/v1\n    endpoints:\n",
                mock_ports[0]);
        for (int i = 0; i < opt.n_ep; i++)
            fprintf(f, "      - http://127.0.0.1:%u\n", mock_ports[i]);
    }
    for (int i = 0; i < opt.n_ep && !opt.replicas; i++)
        fprintf(f, "  - name: p%d\n    base_url: http://127.0.0.1:%u/v1\n", i + 1, mock_ports[i]);
    fprintf(f, "models:\n  - id: %s\n    context_length: 8192\n    providers:\n", MODEL_ID);
    if (opt.replicas)
        fprintf(f, "      - provider: p\n        price:\n          prompt: 0.1\n"
                   "          completion: 0.2\n");
    for (int i = 0; i < opt.n_ep && !opt.replicas; i++)
        fprintf(f,
                "      - provider: p%d\n        price:\n          prompt: 0.1\n"
                "          completion: 0.2\n",
                i + 1);
    if (!opt.plain && opt.hedge_budget != NULL)
        fprintf(f, "routing:\n  hedge_budget: %s\n", opt.hedge_budget);
    if (!opt.plain)
        fprintf(f,
                "%s  strategy: %s\n  max_attempts: 3\n"
                "health:\n  rescore_interval: %s\n  window: %s\n  breaker_failures: 5\n"
                "  breaker_cooldown: 2s\n",
                opt.hedge_budget != NULL ? "" : "routing:\n", strategy, opt.rescore, opt.window);

    fprintf(f, "auth: none\nlog:\n  access_log: off\n  level: warn\n");
    if (!opt.plain) /* (a build before the store, issue 13, refuses the section) */
        fprintf(f, "store:\n  path: %s/llmux.db\n", tmpdir);
    return fclose(f) == 0 ? 0 : -1;
}

/* One GET /readyz; its status, or -1. */
static int readyz(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = -1;
    static const char req[] =
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char buf[64] = {0};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1) &&
        recv(fd, buf, sizeof(buf) - 1, 0) >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        status = atoi(buf + 9);
    close(fd);
    return status;
}

static void print_log_tail(const char *log)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return;
    char line[512];
    int n = 0;
    fprintf(stderr, "--- %s ---\n", log);
    while (fgets(line, sizeof(line), f) != NULL && n++ < 40)
        fputs(line, stderr);
    fclose(f);
}

/* Starts llmux on cfg and waits (at most 10 s) for /readyz to answer 200. */
static int start_llmux(const char *cfg, uint16_t port)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/llmux.log", tmpdir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid == 0) {
        /* the mock threads block these: the child must not inherit the mask */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(opt.llmux, opt.llmux, "-c", cfg, (char *)NULL);
        _exit(127);
    }
    close(fd);
    child = pid;
    uint64_t deadline = now_ns() + 10000000000ull;
    while (now_ns() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            child = -1;
            fprintf(stderr, "llmux-fleet: llmux exited at start\n");
            print_log_tail(log);
            return -1;
        }
        if (readyz(port) == 200)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "llmux-fleet: llmux not ready within 10 s\n");
    print_log_tail(log);
    kill_child();
    return -1;
}

/* ---- the fault schedule ---- */

/* The faults of endpoint ep (0-based) at time t (seconds) of a run of `dur` seconds: event
 * times are at 10/60 and (10 + outage_s)/60 of the run, so a short run keeps the same shape.
 * degrade hits p2, slow p3, outage the last endpoint (p4, or p3 with three), ratelimit p1. */
static lx_mock_faults_t faults_at(int sc, int ep, double t, double dur)
{
    lx_mock_faults_t f = {0};
    f.seed = 1000 + (uint64_t)ep;
    bool all = sc == SC_MIXED;
    double t_on = dur * 10.0 / 60.0, t_back = dur * (10.0 + opt.outage_s) / 60.0;
    if ((sc == SC_DEGRADE || all) && ep == 1 && t >= t_on)
        f.fail_permille = 300;
    if ((sc == SC_SLOW || all) && ep == 2 && t >= t_on)
        f.ttfb_delay_ms = (uint32_t)opt.slow_ms;
    if ((sc == SC_OUTAGE || all) && ep == opt.n_ep - 1 && t >= t_on && t < t_back)
        f.down = true;
    if ((sc == SC_RATELIMIT || all) && ep == 0)
        f.max_concurrent = 4;
    return f;
}

/* ---- the load: open loop, keep-alive connections, streaming chat ---- */

typedef struct {
    uint32_t ttft_us; /* time to the first content chunk, from the scheduled time */
    uint8_t done;     /* recorded */
    uint8_t ok;       /* 200 and a complete stream with [DONE] */
    uint8_t attempts; /* X-Llmux-Attempts (1 when absent) */
    int8_t provider;  /* X-Llmux-Provider p1..p4 as 0..3, -1 unknown */
    int16_t status;   /* HTTP status, 0 = no answer (connection failed, timeout) */
} rec_t;

typedef enum { B_NONE, B_LENGTH, B_CHUNKED, B_CLOSE } body_t;
typedef enum { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER } chunk_state_t;

typedef struct fconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    int slot;
    bool connected, closing;
    bool stream; /* the request in progress streams */
    int64_t req; /* record index of the request in progress, -1 none */
    uint64_t t_sched;
    /* response head */
    char head[4096];
    size_t head_len;
    bool head_done, keep_alive;
    body_t body;
    uint64_t remaining; /* B_LENGTH: bytes left */
    chunk_state_t ck;
    uint64_t ck_left;
    bool ck_line_nonempty;
    /* SSE lines of the decoded body */
    char line[LINE_MAX_];
    size_t line_len;
    bool saw_content, saw_done;
    char rbuf[65536];
} fconn_t;

static uv_loop_t *loop;
static char request[2][1024]; /* [0] one JSON answer, [1] streaming */
static size_t request_len[2];
static uint16_t llmux_port;
static rec_t *recs;
static uint64_t n_total, n_sched;
static uint64_t *pending; /* scheduled requests waiting for a connection (FIFO) */
static uint64_t p_head, p_tail;
static fconn_t *slots[MAX_CONNS];
static int n_open;
static uint64_t t_begin, t_end;
static uv_timer_t tick, slow_tick;
static bool finishing;
static lx_mock_t *mocks[N_EP];
static int cur_sc;
static lx_mock_faults_t applied[N_EP];
static uint64_t *samples; /* [second][N_EP] cumulative 2xx answers */
static size_t n_samples, cap_samples;

static void conn_send(fconn_t *c, int64_t req);
static void pump(void);

static void on_conn_closed(uv_handle_t *h)
{
    fconn_t *c = h->data;
    slots[c->slot] = NULL;
    n_open--;
    free(c);
    if (!finishing)
        pump();
}

static void record(fconn_t *c, bool ok)
{
    if (c->req < 0)
        return;
    rec_t *r = &recs[c->req];
    r->done = 1;
    r->ok = ok && r->status == 200 && c->saw_done;
    c->req = -1;
}

static void conn_close(fconn_t *c)
{
    if (c->closing)
        return;
    record(c, false);
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* The response is complete: record it, then take the next request or idle. */
static void response_done(fconn_t *c)
{
    if (!c->stream && c->req >= 0) {
        /* one JSON answer: its first token is there when the answer is */
        uint64_t d = (now_ns() - c->t_sched) / 1000;
        recs[c->req].ttft_us = (uint32_t)(d > UINT32_MAX ? UINT32_MAX : d);
        c->saw_done = true;
    }
    record(c, true);
    if (!c->keep_alive || finishing) {
        conn_close(c);
        return;
    }
    if (p_head < p_tail)
        conn_send(c, (int64_t)pending[p_head++]);
}

static const char *head_value(const fconn_t *c, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(c->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            l += nl + 1;
            while (*l == ' ' || *l == '\t')
                l++;
            return l;
        }
    }
    return NULL;
}

static void parse_head(fconn_t *c)
{
    rec_t *r = &recs[c->req];
    r->status = (int16_t)atoi(c->head + 9);
    const char *v = head_value(c, "x-llmux-attempts");
    int a = v ? atoi(v) : 1;
    r->attempts = (uint8_t)(a < 1 ? 1 : a > 255 ? 255 : a);
    v = head_value(c, "x-llmux-provider");
    r->provider = -1;
    if (v != NULL && v[0] == 'p' && v[1] >= '1' && v[1] <= '0' + opt.n_ep &&
        (v[2] == '\r' || v[2] == ' '))
        r->provider = (int8_t)(v[1] - '1');
    const char *conn = head_value(c, "connection");
    c->keep_alive = !(conn != NULL && strncasecmp(conn, "close", 5) == 0);
    const char *te = head_value(c, "transfer-encoding");
    const char *cl = head_value(c, "content-length");
    if (te != NULL && strncasecmp(te, "chunked", 7) == 0) {
        c->body = B_CHUNKED;
        c->ck = CK_SIZE;
        c->ck_left = 0;
    } else if (cl != NULL) {
        c->body = B_LENGTH;
        c->remaining = strtoull(cl, NULL, 10);
    } else {
        c->body = B_CLOSE;
        c->keep_alive = false;
    }
}

static void sse_line(fconn_t *c)
{
    const char *l = c->line;
    size_t n = c->line_len;
    if (n < 6 || memcmp(l, "data: ", 6) != 0)
        return;
    if (n >= 12 && memcmp(l + 6, "[DONE]", 6) == 0) {
        c->saw_done = true;
        return;
    }
    if (!c->saw_content && memmem(l, n, "\"content\":\"", 11) != NULL) {
        c->saw_content = true;
        uint64_t d = (now_ns() - c->t_sched) / 1000;
        recs[c->req].ttft_us = (uint32_t)(d > UINT32_MAX ? UINT32_MAX : d);
    }
}

/* Bytes of the decoded body: split into lines for the SSE scan. */
static void body_bytes(fconn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        size_t room = sizeof(c->line) - c->line_len;
        memcpy(c->line + c->line_len, p, k < room ? k : room);
        c->line_len += k < room ? k : room;
        if (nl == NULL)
            return;
        sse_line(c);
        c->line_len = 0;
        p += k + 1;
        n -= k + 1;
    }
}

/* Feeds response bytes after the head; true when the response is complete. */
static bool feed_body(fconn_t *c, const char *p, size_t n)
{
    if (c->body == B_LENGTH) {
        size_t k = n < c->remaining ? n : (size_t)c->remaining;
        body_bytes(c, p, k);
        c->remaining -= k;
        return c->remaining == 0;
    }
    if (c->body == B_CLOSE) {
        body_bytes(c, p, n);
        return false;
    }
    size_t i = 0;
    while (i < n) {
        switch (c->ck) {
        case CK_SIZE:
            if (p[i] == '\n') {
                c->ck = c->ck_left > 0 ? CK_DATA : CK_TRAILER;
                c->ck_line_nonempty = false;
            } else if (p[i] != '\r' && p[i] != ';') {
                int h = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
                        : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
                        : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10
                                                     : -1;
                if (h >= 0 && c->ck_left < (1ull << 40))
                    c->ck_left = c->ck_left * 16 + (uint64_t)h;
            }
            i++;
            break;
        case CK_DATA: {
            size_t k = n - i < c->ck_left ? n - i : (size_t)c->ck_left;
            body_bytes(c, p + i, k);
            c->ck_left -= k;
            i += k;
            if (c->ck_left == 0)
                c->ck = CK_DATA_END;
            break;
        }
        case CK_DATA_END:
            if (p[i] == '\n')
                c->ck = CK_SIZE;
            i++;
            break;
        case CK_TRAILER:
            if (p[i] == '\n') {
                if (!c->ck_line_nonempty)
                    return true;
                c->ck_line_nonempty = false;
            } else if (p[i] != '\r') {
                c->ck_line_nonempty = true;
            }
            i++;
            break;
        }
    }
    return false;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    fconn_t *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    fconn_t *c = s->data;
    if (nread < 0) {
        if (c->req >= 0 && c->head_done && c->body == B_CLOSE)
            record(c, true); /* a close-delimited body ends here */
        conn_close(c);
        return;
    }
    if (c->req < 0)
        return; /* nothing asked: ignore */
    const char *p = b->base;
    size_t n = (size_t)nread;
    if (!c->head_done) {
        size_t k = n < sizeof(c->head) - 1 - c->head_len ? n : sizeof(c->head) - 1 - c->head_len;
        memcpy(c->head + c->head_len, p, k);
        size_t before = c->head_len;
        c->head_len += k;
        c->head[c->head_len] = '\0';
        char *e = strstr(c->head, "\r\n\r\n");
        if (e == NULL) {
            if (c->head_len == sizeof(c->head) - 1)
                conn_close(c); /* an absurd head */
            return;
        }
        size_t used = (size_t)(e + 4 - c->head) - before;
        e[2] = '\0';
        c->head_done = true;
        if (strncmp(c->head, "HTTP/1.", 7) != 0) {
            conn_close(c);
            return;
        }
        parse_head(c);
        p += used;
        n -= used;
        if (c->body == B_LENGTH && c->remaining == 0) {
            response_done(c);
            return;
        }
    }
    if (n > 0 && feed_body(c, p, n))
        response_done(c);
}

static void on_written(uv_write_t *w, int status)
{
    fconn_t *c = w->data;
    if (status < 0)
        conn_close(c);
}

/* When request number req is due (the open-loop schedule). */
static uint64_t sched_time(uint64_t req)
{
    return t_begin + (uint64_t)((double)req * 1e9 / opt.rate);
}

/* Whether request <req> streams: a low-discrepancy sequence, so any stretch of the schedule
 * holds stream_share of streams. */
static bool streams(uint64_t req)
{
    double x = (double)(req + 1) * 0.6180339887498949;
    return x - (double)(uint64_t)x < opt.stream_share;
}

static void conn_send(fconn_t *c, int64_t req)
{
    c->req = req;
    c->stream = streams((uint64_t)req);
    c->t_sched = sched_time((uint64_t)req);
    c->head_len = 0;
    c->head_done = false;
    c->line_len = 0;
    c->saw_content = c->saw_done = false;
    recs[req].attempts = 1;
    recs[req].provider = -1;
    uv_buf_t buf = uv_buf_init(request[c->stream], (unsigned)request_len[c->stream]);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
        conn_close(c);
}

static void on_connected(uv_connect_t *r, int status)
{
    fconn_t *c = r->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    int64_t req = c->req;
    if (req >= 0)
        conn_send(c, req);
    else if (p_head < p_tail)
        conn_send(c, (int64_t)pending[p_head++]);
}

/* A new connection for request req (already assigned so the slot is not taken twice). */
static bool conn_open(int64_t req)
{
    int slot = -1;
    for (int i = 0; i < MAX_CONNS && slot < 0; i++)
        if (slots[i] == NULL)
            slot = i;
    if (slot < 0)
        return false;
    fconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return false;
    c->slot = slot;
    c->req = req;
    c->t_sched = sched_time((uint64_t)req); /* for the timeout while connecting */
    c->tcp.data = c;
    c->creq.data = c;
    uv_tcp_init(loop, &c->tcp);
    slots[slot] = c;
    n_open++;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", llmux_port, &sa);
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa, on_connected) < 0)
        conn_close(c);
    return true;
}

/* Hands pending requests to idle connections, or to new ones. */
static void pump(void)
{
    for (int i = 0; i < MAX_CONNS && p_head < p_tail; i++) {
        fconn_t *c = slots[i];
        if (c != NULL && c->connected && !c->closing && c->req < 0)
            conn_send(c, (int64_t)pending[p_head++]);
    }
    while (p_head < p_tail && n_open < MAX_CONNS) {
        int64_t req = (int64_t)pending[p_head];
        if (!conn_open(req))
            break;
        p_head++;
    }
}

static void apply_faults(double t)
{
    for (int i = 0; i < opt.n_ep; i++) {
        lx_mock_faults_t f = faults_at(cur_sc, i, t, opt.seconds);
        if (memcmp(&f, &applied[i], sizeof(f)) != 0) {
            lx_mock_set_faults(mocks[i], &f);
            applied[i] = f;
        }
    }
}

static void take_sample(void)
{
    if (n_samples == cap_samples)
        return;
    for (int i = 0; i < opt.n_ep; i++)
        samples[n_samples * N_EP + (size_t)i] = lx_mock_answered_ok(mocks[i]);
    n_samples++;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ns();
    while (n_sched < n_total && sched_time(n_sched) <= now)
        pending[p_tail++] = n_sched++;
    pump();
}

static void finish(void)
{
    finishing = true;
    uv_timer_stop(&tick);
    uv_timer_stop(&slow_tick);
    for (int i = 0; i < MAX_CONNS; i++)
        if (slots[i] != NULL)
            conn_close(slots[i]);
}

/* Every 100 ms: faults, samples, timeouts, the end. */
static void on_slow_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ns();
    double el = (double)(now - t_begin) / 1e9;
    if (now < t_end)
        apply_faults(el);
    /* sample k is the counters at k seconds (taken up to 100 ms late) */
    while (n_samples <= (size_t)opt.seconds && (double)n_samples <= el)
        take_sample();
    for (int i = 0; i < MAX_CONNS; i++) {
        fconn_t *c = slots[i];
        if (c != NULL && !c->closing && c->req >= 0 && now > c->t_sched &&
            now - c->t_sched > REQ_TIMEOUT_S * 1000000000ull)
            conn_close(c);
    }
    bool busy = p_head < p_tail;
    for (int i = 0; i < MAX_CONNS && !busy; i++)
        busy = slots[i] != NULL && slots[i]->req >= 0;
    if (now >= t_end && n_sched == n_total && (!busy || now >= t_end + DRAIN_S * 1000000000ull))
        finish();
}

/* ---- one run ---- */

typedef struct {
    uint64_t total, ok, sent;
    uint64_t st_429, st_5xx, st_other, st_cut, no_answer;
    double ttft_p50, ttft_p99, attempts;
    double ttft_p99_late;     /* requests scheduled from SETTLED_S on */
    double ttft_p99_by[N_EP]; /* by serving provider; -1 none */
    uint64_t mock_ok[N_EP], mock_failed[N_EP], mock_limited[N_EP];
    uint64_t *samples;
    size_t n_samples;
    bool ran;
} result_t;

/* From here on a fault of 10 s has been through two re-scorings (--issue: 5 s) or more. */
#define SETTLED_S 20

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

static void summarize(result_t *res)
{
    uint32_t *v = malloc((n_total + 1) * sizeof(*v));
    if (v == NULL)
        return;
    size_t nv = 0;
    uint64_t att = 0;
    res->total = n_total;
    for (uint64_t i = 0; i < n_total; i++) {
        const rec_t *r = &recs[i];
        if (r->ok) {
            res->ok++;
            v[nv++] = r->ttft_us;
        }
        if (r->status == 0)
            res->no_answer++;
        else if (r->status == 429)
            res->st_429++;
        else if (r->status >= 500)
            res->st_5xx++;
        else if (r->status != 200)
            res->st_other++;
        else if (!r->ok)
            res->st_cut++;
        att += r->status ? r->attempts : 0;
        res->sent += r->status != 0;
    }
    qsort(v, nv, sizeof(*v), cmp_u32);
    res->ttft_p50 = pct_ms(v, nv, 50);
    res->ttft_p99 = pct_ms(v, nv, 99);
    res->attempts = res->sent ? (double)att / (double)res->sent : 0;
    nv = 0;
    for (uint64_t i = (uint64_t)(SETTLED_S * opt.rate); i < n_total; i++)
        if (recs[i].ok)
            v[nv++] = recs[i].ttft_us;
    qsort(v, nv, sizeof(*v), cmp_u32);
    res->ttft_p99_late = pct_ms(v, nv, 99);
    for (int p = 0; p < opt.n_ep; p++) {
        nv = 0;
        for (uint64_t i = 0; i < n_total; i++)
            if (recs[i].ok && recs[i].provider == p)
                v[nv++] = recs[i].ttft_us;
        qsort(v, nv, sizeof(*v), cmp_u32);
        res->ttft_p99_by[p] = pct_ms(v, nv, 99);
    }
    free(v);
    for (int i = 0; i < opt.n_ep; i++) {
        res->mock_ok[i] = lx_mock_answered_ok(mocks[i]);
        res->mock_failed[i] = lx_mock_answered_failed(mocks[i]);
        res->mock_limited[i] = lx_mock_answered_limited(mocks[i]);
    }
    res->samples = samples;
    res->n_samples = n_samples;
    samples = NULL;
    res->ran = true;
}

static int run_one(int sc, const char *strategy, const uint16_t *mock_ports, result_t *res)
{
    memset(res, 0, sizeof(*res));
    for (int i = 0; i < opt.n_ep; i++) {
        lx_mock_set_faults(mocks[i], NULL);
        memset(&applied[i], 0, sizeof(applied[i]));
        if (lx_mock_wait_down(mocks[i], false, 5000) != 0) {
            fprintf(stderr, "llmux-fleet: mock p%d did not come back up\n", i + 1);
            return -1;
        }
    }
    cur_sc = sc;
    llmux_port = free_port();
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/llmux.yaml", tmpdir);
    if (llmux_port == 0 || write_config(cfg, llmux_port, mock_ports, strategy) != 0) {
        fprintf(stderr, "llmux-fleet: cannot write %s\n", cfg);
        return -1;
    }
    fprintf(stderr, "llmux-fleet: %s / %s: %.0f s at %.0f req/s\n", sc_name[sc], strategy,
            opt.seconds, opt.rate);
    if (start_llmux(cfg, llmux_port) != 0)
        return -1;
    for (int i = 0; i < opt.n_ep; i++)
        lx_mock_reset(mocks[i]);

    n_total = (uint64_t)(opt.seconds * opt.rate);
    recs = calloc(n_total + 1, sizeof(*recs));
    pending = calloc(n_total + 1, sizeof(*pending));
    cap_samples = (size_t)opt.seconds + 2;
    samples = calloc(cap_samples * N_EP, sizeof(*samples));
    if (recs == NULL || pending == NULL || samples == NULL) {
        free(recs);
        free(pending);
        free(samples);
        kill_child();
        return -1;
    }
    n_sched = p_head = p_tail = 0;
    n_samples = 0;
    n_open = 0;
    finishing = false;
    loop = uv_default_loop();
    uv_timer_init(loop, &tick);
    uv_timer_init(loop, &slow_tick);
    t_begin = now_ns();
    t_end = t_begin + (uint64_t)(opt.seconds * 1e9);
    apply_faults(0);
    take_sample();
    uv_timer_start(&tick, on_tick, 0, 1);
    uv_timer_start(&slow_tick, on_slow_tick, 100, 100);
    /* bounded: finish() runs at the latest DRAIN_S after the schedule; the closes follow */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)&slow_tick, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    kill_child();
    for (int i = 0; i < opt.n_ep; i++)
        lx_mock_set_faults(mocks[i], NULL);
    summarize(res);
    free(recs);
    free(pending);
    free(samples);
    recs = NULL;
    pending = NULL;
    samples = NULL;
    return res->ran ? 0 : -1;
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
    for (int pass = 0; pass < 2; pass++) {
        va_start(ap, fmt);
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (o->p != NULL && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap : 8192;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL)
            return;
        o->p = p;
        o->cap = cap;
    }
}

static void fmt_ms(char *b, size_t n, double ms)
{
    if (ms < 0)
        snprintf(b, n, "-");
    else
        snprintf(b, n, "%.1f", ms);
}

static void report_run_cells(out_t *o, const result_t *r, int row)
{
    char a[32], b[32];
    if (!r->ran) {
        outf(o, " (failed to run) |");
        return;
    }
    switch (row) {
    case 0:
        outf(o, " %.2f%% (%llu/%llu) |", r->total ? 100.0 * (double)r->ok / (double)r->total : 0,
             (unsigned long long)r->ok, (unsigned long long)r->total);
        break;
    case 1:
        fmt_ms(a, sizeof(a), r->ttft_p50);
        fmt_ms(b, sizeof(b), r->ttft_p99);
        outf(o, " %s / %s |", a, b);
        break;
    case 2:
        outf(o, " %.3f |", r->attempts);
        break;
    case 3:
        outf(o, " %llu / %llu / %llu / %llu / %llu |", (unsigned long long)r->st_5xx,
             (unsigned long long)r->st_429, (unsigned long long)r->st_other,
             (unsigned long long)r->st_cut, (unsigned long long)r->no_answer);
        break;
    case 4:
        for (int i = 0; i < opt.n_ep; i++) {
            fmt_ms(a, sizeof(a), r->ttft_p99_by[i]);
            outf(o, "%s%s", i ? " / " : " ", a);
        }
        outf(o, " |");
        break;
    case 6:
        fmt_ms(a, sizeof(a), r->ttft_p99_late);
        outf(o, " %s |", a);
        break;
    case 5:
        for (int i = 0; i < opt.n_ep; i++)
            outf(o, "%s%llu/%llu/%llu", i ? ", " : " ", (unsigned long long)r->mock_ok[i],
                 (unsigned long long)r->mock_failed[i], (unsigned long long)r->mock_limited[i]);
        outf(o, " |");
        break;
    }
}

static void report_shares(out_t *o, const result_t *r, size_t s0, size_t s1)
{
    if (!r->ran || s1 >= r->n_samples) {
        outf(o, " - |");
        return;
    }
    uint64_t d[N_EP], sum = 0;
    for (int i = 0; i < opt.n_ep; i++) {
        d[i] = r->samples[s1 * N_EP + (size_t)i] - r->samples[s0 * N_EP + (size_t)i];
        sum += d[i];
    }
    for (int i = 0; i < opt.n_ep; i++)
        outf(o, "%s%.0f", i ? "/" : " ", sum ? 100.0 * (double)d[i] / (double)sum : 0.0);
    outf(o, " |");
}

static void report_scenario(out_t *o, int sc, const result_t *res)
{
    static const char *rows[] = {
        "success (200 + complete stream)",
        "TTFT p50 / p99 (ms)",
        "attempts per request",
        "failed: 5xx / 429 / other status / stream cut / no answer",
        "TTFT p99 by serving endpoint p1/p2/p3/p4 (ms)",
        "mock answers 2xx/5xx/429 per endpoint",
        "TTFT p99 of requests scheduled from 20 s (ms)",
    };
    outf(o, "\n## %s: %s\n\n|  |", sc_name[sc], sc_desc[sc]);
    for (int s = 0; s < opt.n_strat; s++)
        outf(o, " %s |", opt.strat[s]);
    outf(o, "\n|---|");
    for (int s = 0; s < opt.n_strat; s++)
        outf(o, "---|");
    outf(o, "\n");
    for (size_t row = 0; row < sizeof(rows) / sizeof(rows[0]); row++) {
        outf(o, "| %s |", rows[row]);
        for (int s = 0; s < opt.n_strat; s++)
            report_run_cells(o, &res[s], (int)row);
        outf(o, "\n");
    }
    outf(o,
         "\nShare of 2xx answers per endpoint, p1/p2/p3/p4 in %%, per %d-second slice:\n\n| "
         "slice |",
         SLICE_S);
    for (int s = 0; s < opt.n_strat; s++)
        outf(o, " %s |", opt.strat[s]);
    outf(o, "\n|---|");
    for (int s = 0; s < opt.n_strat; s++)
        outf(o, "---|");
    outf(o, "\n");
    size_t secs = (size_t)opt.seconds;
    for (size_t s0 = 0; s0 < secs; s0 += SLICE_S) {
        size_t s1 = s0 + SLICE_S < secs ? s0 + SLICE_S : secs;
        outf(o, "| %zu-%zu s |", s0, s1);
        for (int s = 0; s < opt.n_strat; s++)
            report_shares(o, &res[s], s0, s1);
        outf(o, "\n");
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

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v != NULL) {
                v++;
                while (*v == ' ')
                    v++;
                snprintf(buf, n, "%s", v);
                buf[strcspn(buf, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmux-fleet [--llmux PATH] [--quick] [--duration S] [--rate R]\n"
            "                   [--scenario degrade|slow|outage|ratelimit|mixed]...\n"
            "                   [--strategy health|round_robin]... [--plain-config] [--out FILE]\n"
            "                   [--endpoints N] [--stream-share F] [--slow-ms MS] [--outage-s S]\n"
            "                   [--rescore DUR] [--window DUR] [--issue] [--replicas]\n"
            "                   [--hedge-budget F]\n"
            "Runs llmux in front of four in-process mock endpoints with faults on a schedule,\n"
            "once per scenario and strategy, and prints a Markdown report (bench/fleet/README.md)."
            "\n");
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

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"llmux", required_argument, NULL, 'l'},
                                          {"quick", no_argument, NULL, 'q'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"rate", required_argument, NULL, 'r'},
                                          {"scenario", required_argument, NULL, 's'},
                                          {"strategy", required_argument, NULL, 'S'},
                                          {"plain-config", no_argument, NULL, 'P'},
                                          {"out", required_argument, NULL, 'o'},
                                          {"endpoints", required_argument, NULL, 'e'},
                                          {"stream-share", required_argument, NULL, 'f'},
                                          {"slow-ms", required_argument, NULL, 'w'},
                                          {"outage-s", required_argument, NULL, 'u'},
                                          {"rescore", required_argument, NULL, 'R'},
                                          {"window", required_argument, NULL, 'W'},
                                          {"issue", no_argument, NULL, 'I'},
                                          {"replicas", no_argument, NULL, 'E'},
                                          {"hedge-budget", required_argument, NULL, 'H'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    static char llmux_path[PATH_MAX];
    int ch;
    while ((ch = getopt_long(argc, argv, "l:qd:r:s:S:Po:e:f:w:u:R:W:IEH:h", longs, NULL)) != -1) {
        switch (ch) {
        case 'l':
            opt.llmux = optarg;
            break;
        case 'q':
            opt.seconds = 15;
            break;
        case 'd':
            opt.seconds = atof(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 's': {
            int found = -1;
            for (int i = 0; i < SC_COUNT; i++)
                if (strcmp(optarg, sc_name[i]) == 0)
                    found = i;
            if (found < 0) {
                usage(stderr);
                return 2;
            }
            opt.scenarios |= 1u << found;
            break;
        }
        case 'S':
            if (opt.n_strat == MAX_STRAT) {
                usage(stderr);
                return 2;
            }
            opt.strat[opt.n_strat++] = optarg;
            break;
        case 'P':
            opt.plain = true;
            break;
        case 'o':
            opt.out = optarg;
            break;
        case 'e':
            opt.n_ep = atoi(optarg);
            break;
        case 'f':
            opt.stream_share = atof(optarg);
            break;
        case 'w':
            opt.slow_ms = atoi(optarg);
            break;
        case 'u':
            opt.outage_s = atof(optarg);
            break;
        case 'R':
            opt.rescore = optarg;
            break;
        case 'W':
            opt.window = optarg;
            break;
        case 'E':
            opt.replicas = true;
            break;
        case 'H':
            opt.hedge_budget = optarg;
            break;
        case 'I': /* the figures of issue 14's "Routing under faults" */
            opt.n_ep = 3;
            opt.rate = 50;
            opt.stream_share = 0.5;
            opt.slow_ms = 800;
            opt.outage_s = 30;
            opt.rescore = "5s";
            opt.window = "15m";
            opt.seconds = 60;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || opt.seconds < 1 || opt.seconds > 3600 || opt.rate < 1 ||
        opt.rate > 20000 || opt.n_ep < 2 || opt.n_ep > N_EP || !(opt.stream_share >= 0) ||
        opt.stream_share > 1 || opt.slow_ms < 0 || opt.slow_ms > 60000 || !(opt.outage_s >= 0) ||
        opt.outage_s > 50) {
        usage(stderr);
        return 2;
    }
    if (opt.scenarios == 0)
        opt.scenarios = (1u << SC_COUNT) - 1;
    if (opt.n_strat == 0) {
        opt.strat[opt.n_strat++] = "health";
        opt.strat[opt.n_strat++] = "round_robin";
    }
    if (opt.llmux == NULL) {
        if (self_dir_llmux(llmux_path, sizeof(llmux_path)) != 0) {
            fprintf(stderr, "llmux-fleet: give --llmux PATH\n");
            return 2;
        }
        opt.llmux = llmux_path;
    }
    if (access(opt.llmux, X_OK) != 0) {
        fprintf(stderr, "llmux-fleet: %s is not an executable (--llmux PATH)\n", opt.llmux);
        return 2;
    }

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/llmux-fleet-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        perror("llmux-fleet: mkdtemp");
        return 1;
    }
    atexit(at_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* the mocks: ports above the ephemeral range's usual start are avoided (32768+) so that a
     * re-bind after an outage does not meet an outgoing connection's port */
    uint16_t ports[N_EP];
    uint16_t next = (uint16_t)(MOCK_PORT_LO + (getpid() % 64) * 100);
    for (int i = 0; i < opt.n_ep; i++) {
        mocks[i] = NULL;
        for (int tries = 0; tries < 200 && mocks[i] == NULL && next < MOCK_PORT_HI; tries++)
            mocks[i] = lx_mock_start("127.0.0.1", next++);
        if (mocks[i] == NULL) {
            fprintf(stderr, "llmux-fleet: cannot start mock %d\n", i + 1);
            for (int j = 0; j < i; j++)
                lx_mock_stop(mocks[j]);
            return 1;
        }
        ports[i] = lx_mock_port(mocks[i]);
    }

    for (int k = 0; k < 2; k++) {
        char body[512];
        int bl = snprintf(body, sizeof(body),
                          "{\"model\":\"%s\",\"stream\":%s,\"messages\":[{\"role\":\"user\","
                          "\"content\":\"Fleet simulation prompt.\"}],\"mock\":{\"chunks\":%d,"
                          "\"chunk_size\":%d,\"interval_ms\":%d,\"first_delay_ms\":%d}}",
                          MODEL_ID, k ? "true" : "false", opt.chunks, opt.chunk_size,
                          opt.interval_ms, opt.first_ms);
        request_len[k] =
            (size_t)snprintf(request[k], sizeof(request[k]),
                             "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                             bl, body);
    }

    static result_t results[SC_COUNT][MAX_STRAT];
    int failures = 0;
    for (int sc = 0; sc < SC_COUNT; sc++) {
        if (!(opt.scenarios & (1u << sc)))
            continue;
        for (int s = 0; s < opt.n_strat; s++)
            if (run_one(sc, opt.strat[s], ports, &results[sc][s]) != 0)
                failures++;
    }
    for (int i = 0; i < opt.n_ep; i++)
        lx_mock_stop(mocks[i]);
    uv_loop_close(uv_default_loop());

    /* the report */
    out_t o = {0};
    char commit[64], cpu[128], date[32], cmdline[1024] = "";
    read_cmd("git rev-parse --short HEAD 2>/dev/null", commit, sizeof(commit));
    cpu_model(cpu, sizeof(cpu));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof(cmdline) - l, "%s%s", i ? " " : "", argv[i]);
    }
    outf(&o, "# llmux fleet simulation, %s\n\n", date);
    outf(&o, "commit %s, %ld cores, %s; command: `%s`\n\n", commit[0] ? commit : "unknown",
         sysconf(_SC_NPROCESSORS_ONLN), cpu, cmdline);
    char hcfg[200];
    snprintf(hcfg, sizeof(hcfg),
             ", `routing: {strategy: <column>, max_attempts: 3%s%s}`, `health: {rescore_interval: "
             "%s, window: %s, breaker_failures: 5, breaker_cooldown: 2s}`",
             opt.hedge_budget ? ", hedge_budget: " : "", opt.hedge_budget ? opt.hedge_budget : "",
             opt.rescore, opt.window);
    outf(&o,
         "Load: %.0f req/s open loop for %.0f s per run, chat requests of which %.0f%% stream "
         "(%d chunks of %d B, first after %d ms, then every %d ms; the others get one JSON "
         "answer), over keep-alive connections; TTFT is measured from each request's scheduled "
         "time to its first content chunk (to the whole answer when it does not stream). "
         "Faults: slow +%d ms, outage %.0f s of a 60 s run. llmux: `workers: 1`, %d mock "
         "endpoints p1..p%d %s serving one model%s. Each run starts a fresh llmux.\n",
         opt.rate, opt.seconds, opt.stream_share * 100, opt.chunks, opt.chunk_size, opt.first_ms,
         opt.interval_ms, opt.slow_ms, opt.outage_s, opt.n_ep, opt.n_ep,
         opt.replicas ? "as the replica endpoints of one provider (--replicas; no per-endpoint "
                        "TTFT: the provider header names the provider)"
                      : "as providers of one endpoint each, at equal prices,",
         opt.plain ? "; **routing and health sections left out of the config (--plain-config): "
                     "the strategy columns then differ only by run**"
                   : hcfg);
    outf(&o, "\n| scenario | strategy | success | TTFT p50 / p99 ms | attempts/request |\n"
             "|---|---|---|---|---|\n");
    for (int sc = 0; sc < SC_COUNT; sc++) {
        if (!(opt.scenarios & (1u << sc)))
            continue;
        for (int s = 0; s < opt.n_strat; s++) {
            outf(&o, "| %s | %s |", sc_name[sc], opt.strat[s]);
            report_run_cells(&o, &results[sc][s], 0);
            report_run_cells(&o, &results[sc][s], 1);
            report_run_cells(&o, &results[sc][s], 2);
            outf(&o, "\n");
        }
    }
    for (int sc = 0; sc < SC_COUNT; sc++)
        if (opt.scenarios & (1u << sc))
            report_scenario(&o, sc, results[sc]);
    if (o.p != NULL) {
        fwrite(o.p, 1, o.len, stdout);
        char path[256];
        if (opt.out == NULL)
            snprintf(path, sizeof(path), "bench/results/fleet-%s.md", date);
        const char *dest = opt.out ? opt.out : path;
        FILE *f = fopen(dest, "w");
        if (f != NULL) {
            fwrite(o.p, 1, o.len, f);
            fclose(f);
            fprintf(stderr, "llmux-fleet: report saved to %s\n", dest);
        } else {
            fprintf(stderr, "llmux-fleet: cannot write %s: %s\n", dest, strerror(errno));
        }
    }
    free(o.p);
    for (int sc = 0; sc < SC_COUNT; sc++)
        for (int s = 0; s < MAX_STRAT; s++)
            free(results[sc][s].samples);
    return failures ? 1 : 0;
}
