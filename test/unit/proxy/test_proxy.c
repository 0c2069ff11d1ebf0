/*
 * test_proxy.c - the proxy's attempt/finish state machine, alone: a downstream HTTP server and
 * a test client socket on one side, two scripted upstreams (fake_upstream.h) on the other, all
 * on 127.0.0.1 and one loop, and test ops that count what the proxy asks of its owner.
 *
 * Covered: success (the connection back to the pool); an attempt that fails before its first
 * byte (reset, error answer, timeout) gives way to the next one through the retry hook, which
 * may also decline; a failure after bytes were relayed is never retried and cuts the client; a
 * client that leaves cancels the upstream at once; the owner's shutdown; an early commit sends
 * the owner's keep-alive bytes and still fails over. Hedging: the race is decided by a complete,
 * final head (a partial status line or a 100 Continue wins nothing; a head in pieces wins once
 * complete and reaches the client whole); an error head of the current attempt is handed to
 * the owner as a failure, never a lost race; a take-over the owner declines cancels the hedge
 * and asks the retry hook; a hedge's 429 reports its Retry-After; a head longer than the reads
 * a hedge holds waits, then takes over whole after a failure. On every path on_finish runs
 * exactly once and on_free after it.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/status.h"
#include "http/http_server.h"
#include "proxy/proxy.h"

static fake_server_t A, B;
static lx_conn_pool_t pool_a, pool_b;
static lx_http_server_t S;
static lx_listener_t L;
static uint16_t port;
static bool listener_closed;

/* ---- the owner: what the proxy asked of it ---- */

typedef struct tpx {
    lx_proxy_t px; /* first */
} tpx_t;

static struct {
    unsigned requests, finishes, frees, retries, dones;
    int code;          /* on_finish's */
    int retry_code;    /* the last retry hook's */
    int retry_status;  /* upstream_status at the retry hook */
    unsigned attempt;  /* at on_finish */
    int client_status; /* at on_finish */
    bool cut, relayed, committed;
    bool free_after_finish;
    unsigned allow_retries; /* the retry hook prepares this many more attempts, on B */
    lx_proxy_t *px;         /* the running one */
} T;

/* proxy options for the next request */
static uint64_t first_byte_ms;
static bool early;

static const char REQUEST[] = "GET /up HTTP/1.1\r\nHost: fake\r\n\r\n";

static void fill_request(lx_proxy_t *px)
{
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memcpy(b->data, REQUEST, sizeof(REQUEST) - 1);
    b->len = sizeof(REQUEST) - 1;
    px->out[0] = (lx_slice_t){b, 0, b->len}; /* the chunk's reference, handed over */
    px->n_out = 1;
}

static void on_finish(lx_proxy_t *px, int code)
{
    T.finishes++;
    T.code = code;
    T.attempt = px->attempt;
    T.client_status = px->client_status;
    T.cut = px->cut;
    T.relayed = px->relayed;
    T.committed = px->committed;
    assert_true(px->finished);
    assert_null(px->conn); /* the upstream is released first */
}

static void on_free(lx_proxy_t *px)
{
    T.frees++;
    T.free_after_finish = T.finishes == 1;
    if (T.px == px)
        T.px = NULL;
    free(px);
}

static bool on_retry(lx_proxy_t *px, int code)
{
    T.retries++;
    T.retry_code = code;
    T.retry_status = px->upstream_status;
    assert_null(px->conn);
    assert_int_equal(px->n_out, 0);
    assert_false(px->relayed);
    if (T.allow_retries == 0)
        return false;
    T.allow_retries--;
    px->pool = &pool_b;
    px->upstream_name = "fake-b";
    fill_request(px);
    return true;
}

static const lx_proxy_ops_t ops = {
    .on_finish = on_finish,
    .on_free = on_free,
    .retry = on_retry,
};

/* ---- hedging: the hedge goes to B, <hedge_ms> after the start ---- */

static lx_proxy_hedge_t hedge;
static uint64_t hedge_ms; /* 0: no hedge */

static struct {
    unsigned asked, won, ended;
    int won_code, won_status; /* the last hedge_won's code, and the current attempt's status */
    bool take_over;           /* hedge_won's answer for a failure (LOST: always true) */
    int ended_code, ended_status;
    int64_t ended_retry_after;
} HG;

static lx_proxy_hedge_t *on_hedge(lx_proxy_t *px)
{
    (void)px;
    HG.asked++;
    hedge.pool = &pool_b;
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memcpy(b->data, REQUEST, sizeof(REQUEST) - 1);
    b->len = sizeof(REQUEST) - 1;
    hedge.out[0] = (lx_slice_t){b, 0, b->len};
    hedge.n_out = 1;
    return &hedge;
}

static bool on_hedge_won(lx_proxy_t *px, int code)
{
    HG.won++;
    HG.won_code = code;
    HG.won_status = px->upstream_status;
    if (code != LX_PROXY_HEDGE_LOST && !HG.take_over)
        return false;
    px->upstream_name = "fake-b";
    return true;
}

static void on_hedge_ended(lx_proxy_t *px, lx_proxy_hedge_t *h, int code)
{
    (void)px;
    HG.ended++;
    HG.ended_code = code;
    HG.ended_status = h->status;
    HG.ended_retry_after = h->retry_after;
}

static const lx_proxy_ops_t hedge_ops = {
    .on_finish = on_finish,
    .on_free = on_free,
    .retry = on_retry,
    .hedge = on_hedge,
    .hedge_won = on_hedge_won,
    .hedge_ended = on_hedge_ended,
};

static void on_request(lx_http_request_t *req)
{
    T.requests++;
    tpx_t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    lx_proxy_t *px = &t->px;
    px->req = req;
    px->pool = &pool_a;
    px->ops = &ops;
    px->upstream_name = "fake-a";
    static const char rh[] = "X-Served-By: test\r\n";
    px->resp_headers = rh;
    px->resp_headers_len = sizeof(rh) - 1;
    px->connect_timeout_ms = 1000;
    px->first_byte_timeout_ms = first_byte_ms;
    px->idle_timeout_ms = 1000;
    if (early) {
        static const char head[] = "Content-Type: text/event-stream\r\n";
        static const char ka[] = ": still here\n\n";
        px->stream_head = head;
        px->stream_head_len = sizeof(head) - 1;
        px->keepalive = ka;
        px->keepalive_len = sizeof(ka) - 1;
        px->keepalive_delay_ms = 5;
        px->keepalive_interval_ms = 5;
        px->stream = true;
    }
    if (hedge_ms != 0) {
        px->ops = &hedge_ops;
        px->hedge_due = uv_now(&W.loop) + hedge_ms;
    }
    fill_request(px);
    T.px = px;
    lx_proxy_start(px);
}

static void on_done(lx_http_request_t *req)
{
    (void)req;
    T.dones++;
}

static size_t format_error(const lx_http_request_t *req, char *buf, size_t cap, int status,
                           const char *message)
{
    (void)req;
    int n = snprintf(buf, cap, "error %d: %s\n", status, message);
    return n < 0 ? 0 : LX_MIN((size_t)n, cap - 1);
}

/* ---- the client ---- */

static struct {
    int fd;
    char rx[65536];
    size_t len;
    bool eof;
} C;

static void client_read(void)
{
    while (C.fd >= 0 && !C.eof && C.len + 1 < sizeof(C.rx)) {
        ssize_t n = recv(C.fd, C.rx + C.len, sizeof(C.rx) - 1 - C.len, 0);
        if (n > 0) {
            C.len += (size_t)n;
            C.rx[C.len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            C.eof = true;
        break;
    }
}

static void turn(void)
{
    uv_run(&W.loop, UV_RUN_NOWAIT);
    client_read();
}

static void on_accept(lx_listener_t *l)
{
    assert_int_equal(lx_http_server_accept(&S, (uv_stream_t *)&l->tcp), 0);
}

/* Connects the client and sends one request through the proxy. */
static void client_request(void)
{
    memset(&C, 0, sizeof(C));
    C.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(C.fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(C.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(C.fd, F_SETFL, O_NONBLOCK);
    static const char req[] = "GET /chat HTTP/1.1\r\nHost: llmux\r\n\r\n";
    assert_int_equal(send(C.fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    RUN_UNTIL(T.requests == 1);
}

/* The request ended: on_finish once, on_free after it, the server's on_done. */
static void assert_ended(void)
{
    RUN_UNTIL(T.frees == 1 && T.dones == 1);
    run_for_ms(5);
    assert_int_equal(T.finishes, 1);
    assert_int_equal(T.frees, 1);
    assert_true(T.free_after_finish);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lx_worker_init(&W, 0), 0);
    lx_http_server_limits_t limits = {
        .max_header_size = 8192,
        .max_body_size = 1 << 20,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .keepalive_timeout_ms = 5000,
    };
    lx_http_server_init(&S, &W, &limits);
    S.on_request = on_request;
    S.on_done = on_done;
    S.format_error = format_error;
    int fd = -1;
    port = 0;
    listener_closed = false;
    assert_int_equal(lx_listener_bind("127.0.0.1", &port, 64, &fd), 0);
    assert_int_equal(lx_listener_start(&L, &W, fd, 64, on_accept), 0);
    fake_start(&A);
    fake_start(&B);
    lx_conn_pool_init(&pool_a, &W, "127.0.0.1", A.port, 0);
    lx_conn_pool_init(&pool_b, &W, "127.0.0.1", B.port, 0);
    memset(&T, 0, sizeof(T));
    first_byte_ms = 2000;
    early = false;
    hedge_ms = 0;
    memset(&HG, 0, sizeof(HG));
    memset(&hedge, 0, sizeof(hedge));
    C.fd = -1;
    return 0;
}

static void on_listener_closed(lx_listener_t *l)
{
    (void)l;
    listener_closed = true;
}

static int teardown(void **state)
{
    (void)state;
    if (C.fd >= 0)
        close(C.fd);
    C.fd = -1;
    lx_http_server_close_all(&S);
    RUN_UNTIL(S.n_conns == 0 && T.px == NULL);
    lx_conn_pool_dispose(&pool_a);
    lx_conn_pool_dispose(&pool_b);
    RUN_UNTIL(pool_a.n_open == 0 && pool_b.n_open == 0);
    fake_stop(&A);
    fake_stop(&B);
    lx_listener_close(&L, on_listener_closed);
    RUN_UNTIL(listener_closed);
    lx_http_server_dispose(&S);
    lx_worker_close_all(&W);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    assert_int_equal(W.bufs.n_out, W.rchunk != NULL ? 1 : 0); /* every chunk came back */
    lx_worker_dispose(&W);
    return 0;
}

static void script(fake_server_t *f, enum fake_action action, const char *answer)
{
    fake_step_t s = {action, answer};
    fake_script(f, &s, 1);
}

static const char OK_A[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nfrom-a\n";
static const char OK_B[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nfrom-b\n";

static void test_success(void **state)
{
    (void)state;
    script(&A, FAKE_ANSWER, OK_A);
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-a\n") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(C.rx, "\r\nX-Served-By: test\r\n")); /* the owner's head lines */
    assert_int_equal(T.code, 0);
    assert_int_equal(T.retries, 0);
    assert_int_equal(T.attempt, 1);
    assert_false(T.cut);
    assert_string_equal(A.conns[0]->rx, REQUEST); /* the owner's request, byte for byte */
    assert_int_equal(pool_a.n_idle, 1);           /* clean: back to the pool */
    assert_int_equal(B.n_requests, 0);
}

static void test_reset_before_first_byte_fails_over(void **state)
{
    (void)state;
    script(&A, FAKE_RESET, NULL);
    script(&B, FAKE_ANSWER, OK_B);
    T.allow_retries = 1;
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 200 OK\r\n", 17);
    assert_int_equal(T.retries, 1);
    assert_int_not_equal(T.retry_code, 0);
    assert_int_equal(T.code, 0);
    assert_int_equal(T.attempt, 2);
    assert_int_equal(B.n_requests, 1);
    assert_string_equal(B.conns[0]->rx, REQUEST); /* the next attempt's request */
}

static void test_error_answer_fails_over(void **state)
{
    (void)state;
    script(&A, FAKE_ANSWER, "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy");
    script(&B, FAKE_ANSWER, OK_B);
    T.allow_retries = 1;
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_int_equal(T.retries, 1);
    assert_int_equal(T.retry_code, 0); /* it answered: its status says what went wrong */
    assert_int_equal(T.retry_status, 503);
    assert_int_equal(T.code, 0);
    assert_int_equal(T.attempt, 2);
    assert_int_equal(pool_a.n_idle, 1); /* an error answer read in full is clean */
}

static void test_retry_declined_answers_the_failure(void **state)
{
    (void)state;
    script(&A, FAKE_RESET, NULL);
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "error 502") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 502 ", 13);
    assert_int_equal(T.retries, 1);
    assert_int_not_equal(T.code, 0);
    assert_int_equal(T.client_status, 502);
    assert_int_equal(T.attempt, 1);
    assert_false(T.committed);
}

static void test_failure_after_bytes_relayed_is_cut(void **state)
{
    (void)state;
    script(&A, FAKE_ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    script(&B, FAKE_ANSWER, OK_B);
    T.allow_retries = 1;
    client_request();
    assert_ended();
    RUN_UNTIL(C.eof);
    assert_int_equal(T.retries, 0); /* bytes reached the client: never another attempt */
    assert_int_equal(B.n_requests, 0);
    assert_int_equal(T.code, LX_EUPSTREAM);
    assert_true(T.relayed);
    assert_true(T.cut);
    assert_non_null(strstr(C.rx, "partial"));
    /* the client sees a cut response, not a finished one: fewer bytes than announced */
    const char *body = strstr(C.rx, "\r\n\r\n");
    assert_non_null(body);
    assert_true(strlen(body + 4) < 100);
}

static void test_client_gone_cancels_the_upstream(void **state)
{
    (void)state;
    script(&A, FAKE_HOLD, NULL);
    T.allow_retries = 1;
    client_request();
    RUN_UNTIL(A.n_requests == 1);
    close(C.fd);
    C.fd = -1;
    assert_ended();
    assert_int_equal(T.code, LX_ECANCELED);
    assert_int_equal(T.retries, 0);
    assert_int_equal(B.n_requests, 0);
    RUN_UNTIL(A.conns[0]->peer_eof); /* the upstream learns at once */
    assert_int_equal(pool_a.n_open, 0);
}

static void test_timeout(void **state)
{
    (void)state;
    script(&A, FAKE_HOLD, NULL);
    first_byte_ms = 50;
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "error 504") != NULL);
    assert_int_equal(T.code, LX_ETIMEDOUT);
    assert_int_equal(T.retries, 1);
    assert_int_equal(T.retry_code, LX_ETIMEDOUT);
    assert_int_equal(T.client_status, 504);
    RUN_UNTIL(A.conns[0]->peer_eof);
}

static void test_timeout_fails_over(void **state)
{
    (void)state;
    script(&A, FAKE_HOLD, NULL);
    script(&B, FAKE_ANSWER, OK_B);
    first_byte_ms = 50;
    T.allow_retries = 1;
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_int_equal(T.code, 0);
    assert_int_equal(T.retries, 1);
    assert_int_equal(T.attempt, 2);
}

static void test_owner_shutdown_finishes_once(void **state)
{
    (void)state;
    script(&A, FAKE_HOLD, NULL);
    T.allow_retries = 1;
    client_request();
    RUN_UNTIL(A.n_requests == 1);
    lx_proxy_t *px = T.px;
    lx_proxy_finish(px, LX_ESHUTDOWN);
    assert_int_equal(T.finishes, 1);
    lx_proxy_finish(px, LX_ESHUTDOWN); /* the final step runs once (px lives until on_free) */
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "error 503") != NULL);
    assert_int_equal(T.retries, 0); /* a shutdown is never retried */
    assert_int_equal(T.code, LX_ESHUTDOWN);
}

static void test_early_commit_keepalives_and_failover(void **state)
{
    (void)state;
    script(&A, FAKE_HOLD, NULL);
    script(&B, FAKE_ANSWER, OK_B);
    early = true;
    first_byte_ms = 60;
    T.allow_retries = 1;
    client_request();
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(C.rx, "text/event-stream"));
    /* the owner's keep-alive bytes, before the answer */
    const char *ka = strstr(C.rx, ": still here\n\n");
    assert_non_null(ka);
    assert_true(ka < strstr(C.rx, "from-b\n"));
    /* an early head and keep-alives are no answer: the attempt still failed over */
    assert_int_equal(T.retries, 1);
    assert_int_equal(T.attempt, 2);
    assert_int_equal(T.code, 0);
    assert_true(T.committed);
    assert_false(T.cut);
}

/* ---- hedging ---- */

/* Writes <bytes> as upstream <f>'s k-th connection's next answer bytes. */
static void upstream_write(fake_server_t *f, unsigned k, const char *bytes)
{
    assert_true(k < f->n_conns);
    assert_int_equal(lx_stream_write_copy(&f->conns[k]->s, bytes, strlen(bytes), NULL, NULL), 0);
}

/* Both attempts out, neither answered: A holds the request, B (the hedge) too. */
static void hedge_race_started(void)
{
    script(&A, FAKE_HOLD, NULL);
    script(&B, FAKE_HOLD, NULL);
    hedge_ms = 10;
    client_request();
    RUN_UNTIL(A.n_requests == 1 && B.n_requests == 1);
    assert_int_equal(HG.asked, 1);
}

/* A hedge's first bytes, shorter than a status line, win nothing: the current attempt's head,
 * complete first, wins, and the hedge's 503 that follows never reaches the client. */
static void test_hedge_partial_status_line_does_not_win(void **state)
{
    (void)state;
    hedge_race_started();
    upstream_write(&B, 0, "HTTP/1.1 5");
    run_for_ms(20);
    assert_int_equal(HG.won, 0);
    upstream_write(&A, 0, OK_A);
    RUN_UNTIL(HG.ended == 1);
    assert_int_equal(HG.ended_code, LX_PROXY_HEDGE_LOST);
    upstream_write(&B, 0, "03 Busy\r\nContent-Length: 4\r\n\r\nbusy"); /* (closed: lost) */
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-a\n") != NULL);
    assert_int_equal(HG.won, 0);
    assert_int_equal(T.code, 0);
}

/* A 100 Continue is no answer: the hedge that sent one does not win, the current attempt's
 * answer does. */
static void test_hedge_interim_answer_does_not_win(void **state)
{
    (void)state;
    hedge_race_started();
    upstream_write(&B, 0, "HTTP/1.1 100 Continue\r\n\r\n");
    run_for_ms(20);
    assert_int_equal(HG.won, 0);
    upstream_write(&A, 0, OK_A);
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-a\n") != NULL);
    assert_int_equal(HG.won, 0);
    assert_int_equal(HG.ended_code, LX_PROXY_HEDGE_LOST);
}

/* A hedge's head that comes in pieces, after a 100 Continue, wins once complete: the client
 * gets its answer whole (the held reads parsed again as the answer's). */
static void test_hedge_head_in_pieces_wins_when_complete(void **state)
{
    (void)state;
    hedge_race_started();
    upstream_write(&B, 0, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n");
    run_for_ms(20);
    assert_int_equal(HG.won, 0);
    upstream_write(&B, 0, "Content-Length: 7\r\n");
    run_for_ms(20);
    assert_int_equal(HG.won, 0);
    upstream_write(&B, 0, "\r\nfrom-b\n");
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 200 OK\r\n", 17);
    assert_int_equal(HG.won, 1);
    assert_int_equal(HG.won_code, LX_PROXY_HEDGE_LOST);
    assert_int_equal(T.code, 0);
    RUN_UNTIL(A.conns[0]->peer_eof); /* the loser's connection closed */
}

/* The current attempt's 503 head came first; the hedge's answer completes before the 503's
 * body: the 503 is read in full and handed to the owner as the failure it is (code 0, status
 * 503), never as a lost race, and the hedge then serves. */
static void test_error_head_then_hedge_is_a_failure(void **state)
{
    (void)state;
    hedge_race_started();
    HG.take_over = true;
    upstream_write(&A, 0, "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\n");
    run_for_ms(20);
    upstream_write(&B, 0, OK_B);
    run_for_ms(20);
    upstream_write(&A, 0, "busy");
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_int_equal(HG.won, 1);
    assert_int_equal(HG.won_code, 0);
    assert_int_equal(HG.won_status, 503);
    assert_int_equal(T.code, 0);
}

/* The owner finds the current attempt's failure not a reason to take the hedge (a
 * context-length 400 in the gateway): the hedge is cancelled and the retry hook decides, here
 * with another attempt. */
static void test_hedge_declined_goes_to_retry(void **state)
{
    (void)state;
    fake_step_t b_steps[] = {{FAKE_HOLD, NULL}, {FAKE_ANSWER, OK_B}};
    script(&A, FAKE_HOLD, NULL);
    fake_script(&B, b_steps, 2);
    hedge_ms = 10;
    T.allow_retries = 1;
    client_request();
    RUN_UNTIL(A.n_requests == 1 && B.n_requests == 1);
    upstream_write(&A, 0, "HTTP/1.1 400 Too long\r\nContent-Length: 4\r\n\r\nlong");
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_int_equal(HG.won, 1);
    assert_int_equal(HG.won_status, 400);
    assert_int_equal(HG.ended, 1);
    assert_int_equal(HG.ended_code, LX_ECANCELED);
    assert_int_equal(T.retries, 1);
    assert_int_equal(T.retry_status, 400);
    assert_int_equal(B.n_requests, 2);
    RUN_UNTIL(B.conns[0]->peer_eof); /* the cancelled hedge's connection closed */
}

/* A hedge's 429 ends it with its status and its Retry-After. */
static void test_hedge_rate_limited_keeps_retry_after(void **state)
{
    (void)state;
    hedge_race_started();
    upstream_write(&B, 0, "HTTP/1.1 429 Slow down\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n");
    RUN_UNTIL(HG.ended == 1);
    assert_int_equal(HG.ended_code, 0);
    assert_int_equal(HG.ended_status, 429);
    assert_int_equal(HG.ended_retry_after, 7);
    upstream_write(&A, 0, OK_A);
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-a\n") != NULL);
}

/* A hedge's head dribbled over more reads than it holds (LX_PROXY_HEDGE_HELD): the hedge stops
 * reading, wins nothing, and when the current attempt fails it takes over with what it read,
 * then reads on: the client gets its answer whole. */
static void test_hedge_long_head_takes_over_after_failure(void **state)
{
    (void)state;
    hedge_race_started();
    HG.take_over = true;
    upstream_write(&B, 0, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < LX_PROXY_HEDGE_HELD + 2; i++) {
        run_for_ms(5);
        upstream_write(&B, 0, "X-Pad: 1\r\n");
    }
    run_for_ms(5);
    upstream_write(&B, 0, "Content-Length: 7\r\n\r\nfrom-b\n");
    run_for_ms(20);
    assert_int_equal(HG.won, 0);
    assert_null(strstr(C.rx, "from-b"));
    upstream_write(&A, 0, "HTTP/1.1 502 Bad\r\nContent-Length: 3\r\n\r\nbad");
    assert_ended();
    RUN_UNTIL(strstr(C.rx, "from-b\n") != NULL);
    assert_memory_equal(C.rx, "HTTP/1.1 200 OK\r\n", 17);
    assert_int_equal(HG.won, 1);
    assert_int_equal(HG.won_code, 0);
    assert_int_equal(HG.won_status, 502);
    assert_int_equal(T.code, 0);
}

int main(void)
{
#define T_(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T_(test_success),
        T_(test_reset_before_first_byte_fails_over),
        T_(test_error_answer_fails_over),
        T_(test_retry_declined_answers_the_failure),
        T_(test_failure_after_bytes_relayed_is_cut),
        T_(test_client_gone_cancels_the_upstream),
        T_(test_timeout),
        T_(test_timeout_fails_over),
        T_(test_owner_shutdown_finishes_once),
        T_(test_early_commit_keepalives_and_failover),
        T_(test_hedge_partial_status_line_does_not_win),
        T_(test_hedge_interim_answer_does_not_win),
        T_(test_hedge_head_in_pieces_wins_when_complete),
        T_(test_error_head_then_hedge_is_a_failure),
        T_(test_hedge_declined_goes_to_retry),
        T_(test_hedge_rate_limited_keeps_retry_after),
        T_(test_hedge_long_head_takes_over_after_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
