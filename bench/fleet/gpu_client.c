/*
 * gpu_client.c - the GPU-fleet benchmark's open-loop client: one libuv loop on the calling
 * thread sends every scheduled request at its time over keep-alive connections to the target
 * (a new connection when none is idle), whatever the answers do, and records per request the
 * status, the time to the first content chunk and to [DONE], both from the scheduled time, and
 * the content chunks (one per output token in GPU mode).
 *
 * Bounded: the run ends when every request has ended after the schedule, or drain_s after the
 * schedule's end, whichever comes first; what has not ended then stays unfinished. Connections
 * are at most MAX_CONNS; a request finding none stays in a FIFO until one is idle (its time
 * still counts from its schedule).
 */
#include "gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define MAX_CONNS 4096
#define LINE_MAX_ 1024

typedef enum { B_LENGTH, B_CHUNKED, B_CLOSE } body_t;
typedef enum { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER } chunk_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct conn *next_idle;
    bool connected, closing, idle, sent;
    int dest;     /* 0: the target; 1 + i: replica i directly (the affinity reference) */
    long req;     /* the request in progress, -1 none */
    long waiting; /* the request the connection is opened for, -1 none */
    uint64_t t_sched;
    gb_buf_t out; /* the request's bytes */
    char head[4096];
    size_t head_len;
    bool head_done, keep_alive;
    body_t body;
    uint64_t left; /* B_LENGTH: bytes; B_CHUNKED: bytes of the current chunk */
    chunk_t ck;
    bool ck_nonempty;
    char line[LINE_MAX_];
    size_t line_len;
    bool saw_done;
} conn_t;

static struct {
    gb_run_t *r;
    uv_loop_t loop;
    uv_timer_t tick;
    uint64_t t0, t_warm, t_end, t_stop;
    long next;  /* next arrival to schedule */
    long *fifo; /* due requests waiting for a connection */
    long f_head, f_tail;
    conn_t *idle[1 + GB_REPLICAS]; /* idle connections per destination (LIFO) */
    int n_conns;
    long active; /* requests sent, not ended */
    int edges;   /* window edges reported */
    bool finishing;
    gb_buf_t body;
    char rbuf[65536];
} C;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int32_t since_us(uint64_t t)
{
    uint64_t n = now_ns();
    uint64_t d = n > t ? (n - t) / 1000 : 0;
    return (int32_t)(d > INT32_MAX ? INT32_MAX : d);
}

static void send_req(conn_t *c, long req);
static void dispatch(long req);

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    free(c->out.p);
    free(c);
    C.n_conns--;
    if (!C.finishing && C.f_head < C.f_tail)
        dispatch(C.fifo[C.f_head++]);
}

/* The exchange in progress ends (ok: the answer was complete). */
static void end_req(conn_t *c, bool ok)
{
    if (c->req < 0)
        return;
    gb_rec_t *rec = &C.r->recs[c->req];
    if (!C.finishing || ok)
        rec->done = 1; /* cut by the end of the run: unfinished */
    rec->ok = ok && rec->status == 200 && c->saw_done;
    if (rec->ok) {
        uint64_t now = now_ns();
        rec->e2e_us = since_us(c->t_sched);
        if (now >= C.t_warm && now < C.t_end)
            C.r->window_done++;
    }
    c->req = -1;
    if (c->sent)
        C.active--;
    c->sent = false;
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    end_req(c, false);
    c->closing = true;
    if (c->idle) { /* unlink from the idle list */
        for (conn_t **p = &C.idle[c->dest]; *p != NULL; p = &(*p)->next_idle)
            if (*p == c) {
                *p = c->next_idle;
                break;
            }
        c->idle = false;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Where request req goes: the target, or with direct_ports the replica of its system prompt. */
static int dest_of(long req)
{
    return C.r->direct_ports == NULL ? 0 : 1 + C.r->arr[req].sys % GB_REPLICAS;
}

static void make_idle(conn_t *c)
{
    if (C.f_head < C.f_tail && dest_of(C.fifo[C.f_head]) == c->dest) {
        send_req(c, C.fifo[C.f_head++]);
        return;
    }
    c->idle = true;
    c->next_idle = C.idle[c->dest];
    C.idle[c->dest] = c;
}

static void answer_done(conn_t *c)
{
    end_req(c, true);
    if (!c->keep_alive || C.finishing)
        conn_close(c);
    else
        make_idle(c);
}

static const char *head_value(const conn_t *c, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(c->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            for (l += nl + 1; *l == ' ' || *l == '\t'; l++)
                ;
            return l;
        }
    }
    return NULL;
}

static void parse_head(conn_t *c)
{
    C.r->recs[c->req].status = (int16_t)atoi(c->head + 9);
    const char *v = head_value(c, "connection");
    c->keep_alive = !(v != NULL && strncasecmp(v, "close", 5) == 0);
    const char *te = head_value(c, "transfer-encoding");
    const char *cl = head_value(c, "content-length");
    if (te != NULL && strncasecmp(te, "chunked", 7) == 0) {
        c->body = B_CHUNKED;
        c->ck = CK_SIZE;
        c->left = 0;
    } else if (cl != NULL) {
        c->body = B_LENGTH;
        c->left = strtoull(cl, NULL, 10);
    } else {
        c->body = B_CLOSE;
        c->keep_alive = false;
    }
}

static void sse_line(conn_t *c)
{
    const char *l = c->line;
    size_t n = c->line_len;
    if (n < 6 || memcmp(l, "data: ", 6) != 0)
        return;
    if (n >= 12 && memcmp(l + 6, "[DONE]", 6) == 0) {
        c->saw_done = true;
        return;
    }
    if (memmem(l, n, "\"content\":\"", 11) == NULL)
        return;
    gb_rec_t *rec = &C.r->recs[c->req];
    if (rec->tokens++ == 0)
        rec->ttft_us = since_us(c->t_sched);
    uint64_t now = now_ns();
    if (now >= C.t_warm && now < C.t_end)
        C.r->window_tokens++;
}

static void body_bytes(conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        size_t room = sizeof(c->line) - c->line_len;
        size_t take = k < room ? k : room;
        memcpy(c->line + c->line_len, p, take);
        c->line_len += take;
        if (nl == NULL)
            return;
        sse_line(c);
        c->line_len = 0;
        p += k + 1;
        n -= k + 1;
    }
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* Chunked framing; true at the end of the body. */
static bool feed_chunked(conn_t *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (c->ck == CK_DATA) {
            size_t k = n - i < c->left ? n - i : (size_t)c->left;
            body_bytes(c, p + i, k);
            c->left -= k;
            i += k;
            if (c->left == 0)
                c->ck = CK_DATA_END;
            continue;
        }
        char ch = p[i++];
        if (c->ck == CK_SIZE) {
            if (ch == '\n') {
                c->ck = c->left > 0 ? CK_DATA : CK_TRAILER;
                c->ck_nonempty = false;
            } else if (hexval(ch) >= 0 && c->left < (1ull << 40)) {
                c->left = c->left * 16 + (uint64_t)hexval(ch);
            }
        } else if (c->ck == CK_DATA_END) {
            if (ch == '\n')
                c->ck = CK_SIZE;
        } else if (ch == '\n') { /* CK_TRAILER */
            if (!c->ck_nonempty)
                return true;
            c->ck_nonempty = false;
        } else if (ch != '\r') {
            c->ck_nonempty = true;
        }
    }
    return false;
}

static bool feed_body(conn_t *c, const char *p, size_t n)
{
    if (c->body == B_CHUNKED)
        return feed_chunked(c, p, n);
    if (c->body == B_CLOSE) {
        body_bytes(c, p, n);
        return false;
    }
    size_t k = n < c->left ? n : (size_t)c->left;
    body_bytes(c, p, k);
    c->left -= k;
    return c->left == 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    *b = uv_buf_init(C.rbuf, sizeof(C.rbuf));
}

/* The response head; false when the connection was closed or the answer is complete. */
static bool take_head(conn_t *c, const char **p, size_t *n)
{
    size_t room = sizeof(c->head) - 1 - c->head_len;
    size_t k = *n < room ? *n : room;
    size_t before = c->head_len;
    memcpy(c->head + c->head_len, *p, k);
    c->head_len += k;
    c->head[c->head_len] = '\0';
    char *e = strstr(c->head, "\r\n\r\n");
    if (e == NULL) {
        if (c->head_len == sizeof(c->head) - 1)
            conn_close(c);
        return false;
    }
    size_t used = (size_t)(e + 4 - c->head) - before;
    e[2] = '\0';
    c->head_done = true;
    if (strncmp(c->head, "HTTP/1.", 7) != 0) {
        conn_close(c);
        return false;
    }
    parse_head(c);
    *p += used;
    *n -= used;
    if (c->body == B_LENGTH && c->left == 0) {
        answer_done(c);
        return false;
    }
    return true;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (nread < 0) {
        if (c->req >= 0 && c->head_done && c->body == B_CLOSE)
            end_req(c, true);
        conn_close(c);
        return;
    }
    if (c->req < 0 || c->closing)
        return;
    const char *p = b->base;
    size_t n = (size_t)nread;
    if (!c->head_done && !take_head(c, &p, &n))
        return;
    if (n > 0 && feed_body(c, p, n))
        answer_done(c);
}

static void on_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    if (status < 0)
        conn_close(c);
}

static void send_req(conn_t *c, long req)
{
    const gb_arrival_t *a = &C.r->arr[req];
    c->idle = false;
    c->req = req;
    c->t_sched = C.t0 + a->t_ns;
    c->head_len = 0;
    c->head_done = false;
    c->line_len = 0;
    c->saw_done = false;
    c->sent = true;
    C.active++;
    C.r->recs[req].lag_us = since_us(c->t_sched);
    if (gb_body(C.r->work, a, &C.body) != 0) {
        conn_close(c);
        return;
    }
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      C.body.len);
    c->out.len = 0;
    if (c->out.cap < (size_t)hl + C.body.len) {
        free(c->out.p);
        c->out.cap = (size_t)hl + C.body.len;
        c->out.p = malloc(c->out.cap);
        if (c->out.p == NULL) {
            c->out.cap = 0;
            conn_close(c);
            return;
        }
    }
    memcpy(c->out.p, head, (size_t)hl);
    memcpy(c->out.p + hl, C.body.p, C.body.len);
    c->out.len = (size_t)hl + C.body.len;
    uv_buf_t buf = uv_buf_init(c->out.p, (unsigned)c->out.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
        conn_close(c);
}

static void on_connected(uv_connect_t *cr, int status)
{
    conn_t *c = cr->data;
    long req = c->waiting;
    c->waiting = -1;
    if (c->closing) { /* closed while connecting (the end of the run): unfinished */
        return;
    }
    if (status < 0) {
        C.r->recs[req].done = 1; /* no answer: status stays 0 */
        conn_close(c);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    send_req(c, req);
}

/* Sends request req on an idle connection, a new one, or queues it. */
static void dispatch(long req)
{
    int dest = dest_of(req);
    if (C.idle[dest] != NULL) {
        conn_t *c = C.idle[dest];
        C.idle[dest] = c->next_idle;
        send_req(c, req);
        return;
    }
    conn_t *c = C.n_conns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        C.fifo[C.f_tail++] = req;
        return;
    }
    C.n_conns++;
    c->req = -1;
    c->waiting = req;
    c->dest = dest;
    c->tcp.data = c;
    c->creq.data = c;
    uv_tcp_init(&C.loop, &c->tcp);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", dest == 0 ? C.r->port : C.r->direct_ports[dest - 1], &sa);
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa, on_connected) < 0) {
        C.r->recs[req].done = 1;
        c->waiting = -1;
        conn_close(c);
    }
}

static void close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type == UV_TCP && !uv_is_closing(h))
        conn_close(h->data);
}

static void finish(void)
{
    C.finishing = true;
    uv_timer_stop(&C.tick);
    uv_close((uv_handle_t *)&C.tick, NULL);
    uv_walk(&C.loop, close_one, NULL);
}

/* Every millisecond: due requests, the window's edges, the end. */
static void on_tick(uv_timer_t *t)
{
    (void)t;
    gb_run_t *r = C.r;
    uint64_t now = now_ns();
    while (C.next < r->n && C.t0 + r->arr[C.next].t_ns <= now)
        dispatch(C.next++);
    if (C.edges == 0 && now >= C.t_warm) {
        C.edges = 1;
        if (r->on_window != NULL)
            r->on_window(r, 0);
    }
    if (C.edges == 1 && now >= C.t_end) {
        C.edges = 2;
        if (r->on_window != NULL)
            r->on_window(r, 1);
    }
    if (C.next == r->n && now >= C.t_end &&
        ((C.active == 0 && C.f_head == C.f_tail) || now >= C.t_stop))
        finish();
}

int gb_client_run(gb_run_t *r)
{
    memset(&C, 0, sizeof(C));
    C.r = r;
    r->window_tokens = 0;
    r->window_done = 0;
    for (long i = 0; i < r->n; i++)
        r->recs[i] = (gb_rec_t){.ttft_us = -1, .e2e_us = -1, .lag_us = -1};
    C.fifo = malloc(((size_t)r->n + 1) * sizeof(*C.fifo));
    if (C.fifo == NULL || uv_loop_init(&C.loop) != 0) {
        free(C.fifo);
        return -1;
    }
    uv_timer_init(&C.loop, &C.tick);
    C.t0 = now_ns() + 20000000ull; /* the schedule starts 20 ms from now */
    C.t_warm = C.t0 + (uint64_t)(r->warm_s * 1e9);
    C.t_end = C.t_warm + (uint64_t)(r->measure_s * 1e9);
    C.t_stop = C.t_end + (uint64_t)(r->drain_s * 1e9);
    uv_timer_start(&C.tick, on_tick, 1, 1);
    /* bounded: finish() runs at t_stop at the latest, then only closes are left */
    uv_run(&C.loop, UV_RUN_DEFAULT);
    r->elapsed_s = (double)(now_ns() - C.t0) / 1e9;
    uv_loop_close(&C.loop);
    free(C.fifo);
    free(C.body.p);
    C.body = (gb_buf_t){0};
    return 0;
}
