/*
 * fuzz_http_conn.c - whole client connections into the HTTP server, with the read boundaries
 * the input chooses.
 *
 * Input: byte 0 is a set of flags, byte 1 a seed; the rest is what the client sends, given to
 * the server with lx_http_server_feed (the socket's read path, without the socket) in reads
 * whose sizes the seed draws (1 byte, up to 16, up to 512, up to 16 KiB, or whole, by flags),
 * with the loop run between some of them. Flags also choose how the handler answers (inside
 * on_request, on a later loop turn, or streamed in chunked pieces over several turns), and
 * whether the client leaves (EOF) right after its last byte or only once every answer is in.
 *
 * Invariants checked on every input, besides crashes and sanitizer reports: the answers carry
 * X-Seq 0, 1, 2... in that order with no gap; when the client stays, every request the handler
 * got was answered; once the connection is gone, every such request had exactly one on_done, no
 * request is left with the handler, no body memory is charged and no chunk is left out of the
 * pool but the worker's shared ones. Leaks are LeakSanitizer's.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http_server.h"
#include "net/listener.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_LATER = 1, F_STREAM = 2, F_EOF = 4 }; /* bits 3-5: read sizes */

static lx_worker_t worker;
static lx_http_server_t server;
static lx_listener_t listener;
static uint16_t port;
static lx_http_conn_t *conn;
static uv_timer_t later;
static unsigned flags;

typedef struct rec {
    lx_http_request_t *req;
    unsigned seq;
    unsigned dones;
    int step; /* streamed answers: pieces sent so far */
    struct rec *next;
} rec_t;

static rec_t *recs;      /* every request the handler got in this input */
static rec_t *held[256]; /* waiting for the later timer */
static unsigned n_held, n_requests;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void on_later(uv_timer_t *t);

static void answer(rec_t *r)
{
    lx_http_request_t *req = r->req;
    char head[64], body[32];
    int hn = snprintf(head, sizeof(head), "X-Seq: %u\r\n", r->seq);
    if (!(flags & F_STREAM)) {
        /* (the body is not echoed: it could hold "X-Seq") */
        int bn = snprintf(body, sizeof(body), "%zu\n", req->body.len);
        lx_http_server_respond(req, 200, head, (size_t)hn, body, (size_t)bn);
        r->req = NULL;
        return;
    }
    /* streamed: the head and a piece now, more on the following turns */
    if (r->step == 0)
        lx_http_server_send_head(req, 200, head, (size_t)hn, -1);
    if (r->step < 2) {
        lx_http_server_send(req, "piece", 5);
        r->step++;
        held[n_held++] = r;
        uv_timer_start(&later, on_later, 0, 0);
        return;
    }
    lx_http_server_finish(req);
    r->req = NULL;
}

static void on_later(uv_timer_t *t)
{
    (void)t;
    unsigned n = n_held;
    rec_t *now[256];
    memcpy(now, held, n * sizeof(*now));
    n_held = 0;
    for (unsigned i = 0; i < n; i++)
        answer(now[i]);
}

static void on_abort(lx_http_request_t *req)
{
    (void)req; /* the held answer still ends it, as a handler must */
}

static void on_request(lx_http_request_t *req)
{
    rec_t *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    r->req = req;
    r->seq = n_requests++;
    r->next = recs;
    recs = r;
    req->data = r;
    req->on_abort = on_abort;
    if ((flags & (F_LATER | F_STREAM)) && n_held < 200) {
        held[n_held++] = r;
        uv_timer_start(&later, on_later, 0, 0);
        return;
    }
    answer(r);
}

static void on_done(lx_http_request_t *req)
{
    rec_t *r = req->data;
    if (r != NULL)
        r->dones++;
}

static void on_accept(lx_listener_t *l)
{
    lx_http_server_accept_conn(&server, (uv_stream_t *)&l->tcp, &conn);
}

static void setup(void)
{
    lx_worker_init(&worker, 0);
    lx_http_server_limits_t limits = {
        .max_header_size = 4096,
        .max_body_size = 65536,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .keepalive_timeout_ms = 10000,
        .max_body_memory = 1 << 20,
    };
    lx_http_server_init(&server, &worker, &limits);
    server.on_request = on_request;
    server.on_done = on_done;
    uv_timer_init(&worker.loop, &later);
    int fd;
    lx_listener_bind("127.0.0.1", &port, 64, &fd);
    lx_listener_start(&listener, &worker, fd, 64, on_accept);
}

/* What the client received. */
static char rx[1 << 20];
static size_t rx_len;

static void client_read(int fd)
{
    for (;;) {
        char buf[16384];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return;
        size_t k = LX_MIN((size_t)n, sizeof(rx) - rx_len);
        memcpy(rx + rx_len, buf, k);
        rx_len += k;
    }
}

static void turn(int fd)
{
    uv_run(&worker.loop, UV_RUN_NOWAIT);
    client_read(fd);
}

/* The X-Seq values of the answers, in the order they came, must be 0, 1, 2...; returns how
 * many. */
static unsigned check_order(void)
{
    static const char key[] = "\r\nX-Seq: ";
    unsigned want = 0;
    const char *p = rx, *end = rx + rx_len;
    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        p += sizeof(key) - 1;
        unsigned v = 0;
        while (p < end && *p >= '0' && *p <= '9')
            v = v * 10 + (unsigned)(*p++ - '0');
        CHECK(v == want);
        want++;
    }
    return want;
}

static uint32_t rnd;

static uint32_t next_rand(void)
{
    rnd ^= rnd << 13;
    rnd ^= rnd >> 17;
    rnd ^= rnd << 5;
    return rnd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 2)
        return 0;
    flags = data[0];
    rnd = 0x9e3779b9u ^ ((uint32_t)data[1] * 0x01000193u);
    data += 2;
    size -= 2;
    static const size_t most[] = {1, 16, 512, 16384, SIZE_MAX, 3, 64, 2048};
    size_t read_max = most[(flags >> 3) & 7];

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return 0;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conn = NULL;
    for (int i = 0; i < 10000 && conn == NULL; i++)
        uv_run(&worker.loop, UV_RUN_NOWAIT);
    CHECK(conn != NULL);
    rx_len = 0;
    recs = NULL;
    n_requests = n_held = 0;

    /* the client's bytes, in reads of the sizes drawn */
    size_t off = 0;
    int stalls = 0;
    while (off < size && server.n_conns > 0 && stalls < 10000) {
        size_t k = read_max == SIZE_MAX ? size - off : 1 + next_rand() % read_max;
        k = LX_MIN(k, size - off);
        size_t fed = lx_http_server_feed(conn, data + off, k);
        off += fed;
        if (fed < k) {
            /* paused (the queue is full: answers drain it) or closing (takes nothing more) */
            turn(fd);
            stalls += fed == 0;
            continue;
        }
        stalls = 0;
        if (next_rand() % 4 == 0)
            turn(fd);
    }
    if ((flags & F_EOF) && server.n_conns > 0)
        lx_http_server_feed(conn, NULL, 0);
    /* the answers: every request the handler got is answered while the client stays */
    for (int i = 0; i < 2000 && server.n_conns > 0 && (n_held > 0 || check_order() < n_requests);
         i++)
        turn(fd);
    unsigned answered = check_order();
    if (!(flags & F_EOF) && server.n_conns > 0)
        CHECK(answered == n_requests);
    close(fd);
    for (int i = 0; i < 100000 && (server.n_conns > 0 || n_held > 0); i++) {
        uv_run(&worker.loop, UV_RUN_NOWAIT);
        if (i > 1000)
            usleep(100);
    }
    CHECK(server.n_conns == 0);
    CHECK(server.n_active == 0);
    CHECK(lx_http_body_memory() == 0);
    CHECK(worker.bufs.n_small_out == 0);
    CHECK(worker.bufs.n_out <= 2); /* the worker's read chunk and the server's framing chunk */
    while (recs != NULL) {
        rec_t *r = recs;
        recs = r->next;
        CHECK(r->dones == 1);
        free(r);
    }
    return 0;
}
