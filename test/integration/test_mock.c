/*
 * test_mock.c - the mock LLM server itself, driven over loopback by a blocking socket client
 * written here (raw HTTP out, responses parsed by hand), so the mock is checked without any
 * llmux code. Every test starts a fresh mock on an ephemeral port; every read has a 5 s
 * timeout (SO_RCVTIMEO), so a broken mock fails a test instead of hanging it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mock.h"

static lx_mock_t *mock;

/* ---- a tiny blocking HTTP client ---- */

typedef struct {
    int fd;
    char *buf; /* received, not yet consumed */
    size_t len, cap;
    int eof;   /* the peer closed cleanly */
    int error; /* errno of a failed recv (ECONNRESET), 0 if none */
} client_t;

typedef struct {
    int status;
    char *head; /* NUL-terminated */
    char *body; /* decoded (chunked framing removed), NUL-terminated */
    size_t body_len;
    int complete; /* the body ended as its framing says */
} resp_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void client_open(client_t *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(lx_mock_port(mock))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void client_close(client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void client_send(client_t *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        data += w;
        n -= (size_t)w;
    }
}

static void client_sends(client_t *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads more bytes; 1 if some came, 0 on EOF or error (see c->eof, c->error). */
static int client_fill(client_t *c)
{
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n > 0) {
        c->len += (size_t)n;
        return 1;
    }
    if (n == 0)
        c->eof = 1;
    else
        c->error = errno;
    return 0;
}

static void consume(client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Index just past "\r\n" at or after from, or 0 when not there yet. */
static size_t find_crlf(const client_t *c, size_t from)
{
    for (size_t i = from; i + 1 < c->len; i++)
        if (c->buf[i] == '\r' && c->buf[i + 1] == '\n')
            return i + 2;
    return 0;
}

static const char *header(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            line += nl + 1;
            while (*line == ' ')
                line++;
            return line;
        }
    }
    return NULL;
}

static void body_put(resp_t *r, const char *p, size_t n)
{
    r->body = realloc(r->body, r->body_len + n + 1);
    assert_non_null(r->body);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

static void resp_free(resp_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Reads one response (interim 1xx ones included when want_interim). 0 when complete, -1 when
 * the connection ended first (r holds what came). */
static int read_response_ex(client_t *c, resp_t *r, int want_interim)
{
    memset(r, 0, sizeof(*r));
    body_put(r, "", 0);
    for (;;) {
        size_t end = 0;
        for (;;) {
            char *e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
            if (e) {
                end = (size_t)(e - c->buf) + 4;
                break;
            }
            if (!client_fill(c))
                return -1;
        }
        free(r->head);
        r->head = strndup(c->buf, end);
        assert_non_null(r->head);
        consume(c, end);
        assert_true(strncmp(r->head, "HTTP/1.", 7) == 0);
        r->status = atoi(r->head + 9);
        if (r->status >= 200 || want_interim)
            break;
    }
    if (r->status < 200) {
        r->complete = 1;
        return 0;
    }
    const char *cl = header(r->head, "content-length");
    const char *te = header(r->head, "transfer-encoding");
    if (cl) {
        size_t want = strtoul(cl, NULL, 10);
        while (c->len < want)
            if (!client_fill(c)) {
                body_put(r, c->buf, c->len);
                consume(c, c->len);
                return -1;
            }
        body_put(r, c->buf, want);
        consume(c, want);
        r->complete = 1;
        return 0;
    }
    if (te && strncasecmp(te, "chunked", 7) == 0) {
        for (;;) {
            size_t line;
            while ((line = find_crlf(c, 0)) == 0)
                if (!client_fill(c))
                    return -1;
            size_t size = strtoul(c->buf, NULL, 16);
            while (c->len < line + size + 2)
                if (!client_fill(c)) {
                    if (c->len > line)
                        body_put(r, c->buf + line, c->len - line);
                    return -1;
                }
            body_put(r, c->buf + line, size);
            assert_memory_equal(c->buf + line + size, "\r\n", 2);
            consume(c, line + size + 2);
            if (size == 0) {
                r->complete = 1;
                return 0;
            }
        }
    }
    /* close-delimited */
    while (client_fill(c))
        ;
    body_put(r, c->buf, c->len);
    consume(c, c->len);
    r->complete = c->eof && !c->error;
    return r->complete ? 0 : -1;
}

static int read_response(client_t *c, resp_t *r)
{
    return read_response_ex(c, r, 0);
}

/* A POST of body to path, with extra header lines (each ending in \r\n). */
static char *post(const char *path, const char *extra, const char *body)
{
    size_t n = strlen(path) + strlen(extra) + strlen(body) + 200;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n,
             "POST %s HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n%s\r\n%s",
             path, strlen(body), extra, body);
    return s;
}

/* One request on a new connection; the response in r. */
static int roundtrip(const char *path, const char *extra, const char *body, resp_t *r)
{
    client_t c;
    client_open(&c);
    char *req = post(path, extra, body);
    client_sends(&c, req);
    free(req);
    int rc = read_response(&c, r);
    client_close(&c);
    return rc;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t l = strlen(suffix);
    return len >= l && memcmp(s + len - l, suffix, l) == 0;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    mock = lx_mock_start("127.0.0.1", 0);
    return mock ? 0 : -1;
}

static int teardown(void **state)
{
    lx_mock_stop(mock);
    mock = NULL;
    return 0;
}

/* ---- tests ---- */

static void test_chat_echoes_model(void **state)
{
    resp_t r;
    assert_int_equal(roundtrip("/v1/chat/completions", "",
                               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                               "\"model\":\"gpt-4o-mini\"}",
                               &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: application/json"));
    assert_non_null(strstr(r.body, "\"object\":\"chat.completion\""));
    assert_non_null(strstr(r.body, "\"model\":\"gpt-4o-mini\""));
    assert_non_null(strstr(r.body, "\"role\":\"assistant\""));
    assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(r.body, "\"usage\":{\"prompt_tokens\":"));
    assert_non_null(strstr(r.body, "\"total_tokens\":"));
    resp_free(&r);
    assert_int_equal(lx_mock_requests(mock), 1);
    assert_int_equal(lx_mock_connections(mock), 1);

    /* any prefix; the usage control */
    assert_int_equal(roundtrip("/api/v1/chat/completions", "x-mock-usage: 0\r\n",
                               "{\"model\":\"a/b:nitro\"}", &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"model\":\"a/b:nitro\""));
    assert_null(strstr(r.body, "\"usage\""));
    resp_free(&r);

    /* only top-level fields count: nested "stream", "model" and "mock" are content */
    assert_int_equal(roundtrip("/v1/chat/completions", "",
                               "{\"messages\":[{\"stream\":true,\"model\":\"inner\","
                               "\"mock\":{\"status\":500}}],\"model\":\"outer\","
                               "\"x\":{\"model\":\"deep\",\"stream\":true}}",
                               &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "application/json"));
    assert_non_null(strstr(r.body, "\"model\":\"outer\""));
    resp_free(&r);
}

static void test_stream_chunks_and_done(void **state)
{
    resp_t r;
    assert_int_equal(roundtrip("/v1/chat/completions", "x-mock-chunks: 7\r\n",
                               "{\"model\":\"m1\",\"stream\":true}", &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: text/event-stream"));
    assert_non_null(strstr(r.head, "Transfer-Encoding: chunked"));
    assert_int_equal(count(r.body, "\"delta\":{\"role\":\"assistant\",\"content\":"), 1);
    assert_int_equal(count(r.body, "\"content\":"), 7);
    assert_int_equal(count(r.body, "\"finish_reason\":\"stop\""), 1);
    assert_int_equal(count(r.body, "data: {"), 8);
    assert_int_equal(count(r.body, "\"mock_ts\":"), 8);
    assert_int_equal(count(r.body, "\"model\":\"m1\""), 8);
    assert_null(strstr(r.body, "\"usage\""));
    assert_true(ends_with(r.body, r.body_len, "\n\ndata: [DONE]\n\n"));
    resp_free(&r);
}

static void test_stream_with_usage(void **state)
{
    resp_t r;
    assert_int_equal(roundtrip("/v1/chat/completions", "",
                               "{\"model\":\"m2\",\"stream\":true,\"stream_options\":"
                               "{\"include_usage\":true},\"mock\":{\"chunks\":3,\"chunk_size\":4}}",
                               &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(count(r.body, "\"content\":"), 3);
    assert_non_null(strstr(r.body, "\"content\":\"lore\""));
    assert_int_equal(count(r.body, "data: {"), 5);
    const char *usage = strstr(r.body, "\"choices\":[],\"usage\":{\"prompt_tokens\":");
    assert_non_null(usage);
    assert_non_null(strstr(usage, "\"completion_tokens\":3"));
    assert_true(usage < strstr(r.body, "[DONE]"));
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);

    /* text completions stream too */
    assert_int_equal(roundtrip("/v1/completions", "x-mock-chunks: 2\r\n",
                               "{\"model\":\"t\",\"stream\":true,\"prompt\":\"x\"}", &r),
                     0);
    assert_int_equal(count(r.body, "\"object\":\"text_completion\""), 3);
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);
}

static void test_status_control(void **state)
{
    resp_t r;
    assert_int_equal(
        roundtrip("/v1/chat/completions", "x-mock-status: 429\r\n", "{\"model\":\"m\"}", &r), 0);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.head, "Retry-After: 1"));
    assert_non_null(strstr(r.body, "{\"error\":{\"message\":"));
    assert_non_null(strstr(r.body, "\"code\":\"rate_limit_exceeded\""));
    resp_free(&r);

    /* the body's "mock" object wins over the header */
    assert_int_equal(roundtrip("/v1/chat/completions", "x-mock-status: 500\r\n",
                               "{\"model\":\"m\",\"mock\":{\"status\":503},\"stream\":true}", &r),
                     0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.head, "Retry-After: 1"));
    assert_non_null(strstr(r.body, "\"type\":\"server_error\""));
    resp_free(&r);

    assert_int_equal(roundtrip("/v1/chat/completions", "X-Mock-Status: 400\r\n", "{}", &r), 0);
    assert_int_equal(r.status, 400);
    assert_null(header(r.head, "retry-after"));
    resp_free(&r);
}

static void test_delay(void **state)
{
    resp_t r;
    uint64_t t0 = now_ns();
    assert_int_equal(
        roundtrip("/v1/chat/completions", "x-mock-delay-ms: 200\r\n", "{\"model\":\"m\"}", &r), 0);
    uint64_t ms = (now_ns() - t0) / 1000000;
    assert_int_equal(r.status, 200);
    assert_true(ms >= 195);
    assert_true(ms < 3000);
    resp_free(&r);

    /* streaming pace: 4 intervals of 30 ms between 5 chunks */
    t0 = now_ns();
    assert_int_equal(
        roundtrip("/v1/chat/completions", "x-mock-interval-ms: 30\r\n", "{\"stream\":true}", &r),
        0);
    ms = (now_ns() - t0) / 1000000;
    assert_true(ms >= 115);
    assert_int_equal(count(r.body, "\"content\":"), 5);
    resp_free(&r);

    /* sub-millisecond pace */
    t0 = now_ns();
    assert_int_equal(roundtrip("/v1/chat/completions", "",
                               "{\"stream\":true,\"mock\":{\"chunks\":41,\"interval_us\":500}}",
                               &r),
                     0);
    ms = (now_ns() - t0) / 1000000;
    assert_true(ms >= 19);
    assert_int_equal(count(r.body, "\"content\":"), 41);
    resp_free(&r);
}

static void test_reset_after(void **state)
{
    resp_t r;
    client_t c;
    client_open(&c);
    char *req = post("/v1/chat/completions", "x-mock-reset-after: 2\r\nx-mock-chunks: 10\r\n",
                     "{\"model\":\"m\",\"stream\":true}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), -1);
    assert_int_equal(r.status, 200);
    assert_false(r.complete);
    assert_true(c.error == ECONNRESET || c.eof);
    assert_int_equal(count(r.body, "\"content\":"), 2);
    assert_null(strstr(r.body, "[DONE]"));
    resp_free(&r);
    client_close(&c);

    /* non-streaming: the head and the first 10 body bytes, then a reset */
    client_open(&c);
    req = post("/v1/chat/completions", "x-mock-reset-after: 10\r\n", "{\"model\":\"m\"}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), -1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 10);
    resp_free(&r);
    client_close(&c);
    assert_int_equal(lx_mock_closes_by_peer(mock), 0);
}

static void test_keep_alive(void **state)
{
    client_t c;
    resp_t r;
    client_open(&c);
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"model\":\"ka-%d\"}", i);
        char *req = post("/v1/chat/completions", "", body);
        client_sends(&c, req);
        free(req);
        assert_int_equal(read_response(&c, &r), 0);
        assert_int_equal(r.status, 200);
        char want[64];
        snprintf(want, sizeof(want), "\"model\":\"ka-%d\"", i);
        assert_non_null(strstr(r.body, want));
        assert_null(header(r.head, "connection"));
        resp_free(&r);
    }
    /* a stream in between keeps the connection too */
    char *req = post("/v1/chat/completions", "", "{\"stream\":true}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), 0);
    resp_free(&r);
    req = post("/v1/chat/completions", "", "{}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), 0);
    resp_free(&r);
    client_close(&c);
    assert_int_equal(lx_mock_connections(mock), 1);
    assert_int_equal(lx_mock_requests(mock), 5);
}

static void test_pipelined(void **state)
{
    client_t c;
    resp_t r;
    client_open(&c);
    /* the first is delayed and the second streams: answers still come in order */
    char *a = post("/v1/chat/completions", "x-mock-delay-ms: 100\r\n", "{\"model\":\"p-a\"}");
    char *b = post("/v1/chat/completions", "x-mock-interval-ms: 5\r\n",
                   "{\"model\":\"p-b\",\"stream\":true}");
    char *d = post("/v1/embeddings", "", "{\"model\":\"p-c\",\"input\":\"x\"}");
    size_t la = strlen(a), lb = strlen(b), ld = strlen(d);
    char *all = malloc(la + lb + ld + 1);
    assert_non_null(all);
    memcpy(all, a, la);
    memcpy(all + la, b, lb);
    memcpy(all + la + lb, d, ld + 1);
    client_send(&c, all, la + lb + ld);
    const char *want[] = {"\"model\":\"p-a\"", "\"model\":\"p-b\"", "\"model\":\"p-c\""};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(read_response(&c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, want[i]));
        resp_free(&r);
    }
    assert_int_equal(lx_mock_requests(mock), 3);
    size_t len = 0;
    char *raw = lx_mock_request_raw(mock, 1, &len);
    assert_non_null(raw);
    assert_int_equal(len, lb);
    assert_memory_equal(raw, b, lb);
    free(raw);
    free(all);
    free(a);
    free(b);
    free(d);
    client_close(&c);
}

static void test_chunked_request_body(void **state)
{
    static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\n"
                              "Host: mock\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "\r\n"
                              "7\r\n{\"model\r\n"
                              "d\r\n\":\"chunky\",\"m\r\n"
                              "1b\r\nessages\":[],\"stream\":false}\r\n"
                              "0\r\n\r\n";
    client_t c;
    resp_t r;
    client_open(&c);
    /* in two writes, cut inside a chunk */
    client_send(&c, req, 50);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    client_send(&c, req + 50, sizeof(req) - 1 - 50);
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"model\":\"chunky\""));
    resp_free(&r);
    client_close(&c);
    size_t len = 0;
    char *raw = lx_mock_request_raw(mock, 0, &len);
    assert_non_null(raw);
    assert_int_equal(len, sizeof(req) - 1);
    assert_memory_equal(raw, req, len);
    free(raw);
}

static void test_record_raw(void **state)
{
    size_t len = 99;
    assert_null(lx_mock_request_raw(mock, 0, &len));
    char *one = post("/v1/chat/completions", "X-Trace: one\r\n", "{\"model\":\"first\"}");
    char *two = post("/v1/embeddings", "X-Trace: two\r\n", "{\"model\":\"second\",\"input\":[]}");
    client_t c;
    resp_t r;
    client_open(&c);
    client_sends(&c, one);
    assert_int_equal(read_response(&c, &r), 0);
    resp_free(&r);
    client_sends(&c, two);
    assert_int_equal(read_response(&c, &r), 0);
    resp_free(&r);
    client_close(&c);
    assert_int_equal(lx_mock_wait_requests(mock, 2, 2000), 0);
    assert_int_equal(lx_mock_wait_requests(mock, 3, 20), -1);

    char *raw = lx_mock_request_raw(mock, 0, &len);
    assert_non_null(raw);
    assert_int_equal(len, strlen(two));
    assert_string_equal(raw, two);
    free(raw);
    raw = lx_mock_request_raw(mock, 1, &len);
    assert_non_null(raw);
    assert_string_equal(raw, one);
    free(raw);
    assert_null(lx_mock_request_raw(mock, 2, &len));
    free(one);
    free(two);

    /* the ring keeps the last LX_MOCK_RECORDS */
    client_open(&c);
    for (int i = 0; i < LX_MOCK_RECORDS + 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"model\":\"r%d\"}", i);
        char *req = post("/v1/chat/completions", "", body);
        client_sends(&c, req);
        free(req);
        assert_int_equal(read_response(&c, &r), 0);
        resp_free(&r);
    }
    client_close(&c);
    raw = lx_mock_request_raw(mock, LX_MOCK_RECORDS - 1, &len);
    assert_non_null(raw);
    assert_non_null(strstr(raw, "\"model\":\"r3\"}"));
    free(raw);
    assert_null(lx_mock_request_raw(mock, LX_MOCK_RECORDS, &len));

    lx_mock_reset(mock);
    assert_int_equal(lx_mock_requests(mock), 0);
    assert_int_equal(lx_mock_connections(mock), 0);
    assert_null(lx_mock_request_raw(mock, 0, &len));
}

static int wait_closes(uint64_t n)
{
    for (int i = 0; i < 2000; i++) {
        if (lx_mock_closes_by_peer(mock) >= n)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void test_closes_by_peer(void **state)
{
    client_t c;
    resp_t r;
    /* a completed exchange then a close is not a cancellation */
    assert_int_equal(roundtrip("/v1/chat/completions", "", "{\"stream\":true}", &r), 0);
    resp_free(&r);
    assert_int_equal(lx_mock_wait_requests(mock, 1, 2000), 0);

    uint64_t before = now_ns();
    client_open(&c);
    char *req = post("/v1/chat/completions", "x-mock-chunks: 1000\r\nx-mock-interval-ms: 20\r\n",
                     "{\"model\":\"m\",\"stream\":true}");
    client_sends(&c, req);
    free(req);
    do {
        assert_true(client_fill(&c));
        c.buf[c.len] = '\0';
    } while (strstr(c.buf, "\"content\"") == NULL);
    client_close(&c);
    assert_int_equal(wait_closes(1), 0);
    uint64_t at = lx_mock_last_peer_close_ns(mock);
    assert_true(at >= before);
    assert_true(at <= now_ns());
    assert_int_equal(lx_mock_closes_by_peer(mock), 1);

    /* while waiting in a delay */
    client_open(&c);
    req = post("/v1/chat/completions", "x-mock-delay-ms: 5000\r\n", "{}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(lx_mock_wait_requests(mock, 3, 2000), 0);
    client_close(&c);
    assert_int_equal(wait_closes(2), 0);

    /* while hanging, and with an RST rather than a FIN */
    client_open(&c);
    req = post("/v1/chat/completions", "", "{\"mock\":{\"hang\":true}}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(lx_mock_wait_requests(mock, 4, 2000), 0);
    struct linger l = {1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    client_close(&c);
    assert_int_equal(wait_closes(3), 0);
    assert_int_equal(lx_mock_closes_by_peer(mock), 3);
}

static void test_not_found(void **state)
{
    resp_t r;
    assert_int_equal(roundtrip("/v1/nothing/here", "", "{}", &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(
        strstr(r.body, "{\"error\":{\"message\":\"Invalid URL (POST /v1/nothing/here)\""));
    assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
    resp_free(&r);

    client_t c;
    client_open(&c);
    client_sends(&c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"object\":\"list\""));
    assert_non_null(strstr(r.body, "\"id\":\"mock-model\""));
    resp_free(&r);
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    client_close(&c);
}

static void test_malformed(void **state)
{
    client_t c;
    resp_t r;
    client_open(&c);
    client_sends(&c, "HELLO WORLD\r\n\r\n");
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_non_null(strstr(r.body, "\"error\""));
    resp_free(&r);
    assert_false(client_fill(&c)); /* closed */
    client_close(&c);
    assert_int_equal(lx_mock_requests(mock), 0);

    /* garbage JSON is answered, not crashed on */
    static const char *const bodies[] = {"{{{{\"model\":[[[\"",
                                         "\"model\"",
                                         "]]]}}}",
                                         "{\"model\":\"\\",
                                         "{\"mock\":{\"status\"",
                                         "{\"model\":\"ok\",\"stream\":tru",
                                         "{\"stream\":true,\"mock\":[1,{\"chunks\":2}]}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(roundtrip("/v1/chat/completions", "", bodies[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
}

static void test_http10(void **state)
{
    client_t c;
    resp_t r;
    client_open(&c);
    client_sends(&c, "GET /v1/models HTTP/1.0\r\n\r\n");
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_false(client_fill(&c));
    assert_true(c.eof);
    client_close(&c);

    /* keep-alive on request; a stream is close-delimited */
    client_open(&c);
    client_sends(&c, "POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
                     "Content-Length: 2\r\n\r\n{}");
    assert_int_equal(read_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: keep-alive"));
    resp_free(&r);
    client_sends(&c, "POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
                     "Content-Length: 15\r\n\r\n{\"stream\":true}");
    assert_int_equal(read_response(&c, &r), 0);
    assert_null(header(r.head, "transfer-encoding"));
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);
    client_close(&c);
    assert_int_equal(lx_mock_connections(mock), 2);
}

static void test_expect_continue(void **state)
{
    client_t c;
    resp_t r;
    client_open(&c);
    client_sends(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     "Expect: 100-continue\r\nContent-Length: 13\r\n\r\n");
    assert_int_equal(read_response_ex(&c, &r, 1), 0);
    assert_int_equal(r.status, 100);
    resp_free(&r);
    client_sends(&c, "{\"model\":\"e\"}");
    assert_int_equal(read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"model\":\"e\""));
    resp_free(&r);
    client_close(&c);
}

static void test_framing_controls(void **state)
{
    resp_t r;
    /* write_size splits every write; the client reassembles */
    assert_int_equal(roundtrip("/v1/chat/completions", "x-mock-write-size: 7\r\n",
                               "{\"model\":\"ws\",\"stream\":true}", &r),
                     0);
    assert_int_equal(count(r.body, "\"model\":\"ws\""), 6);
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);

    /* content_length 0: the JSON answer comes chunked */
    assert_int_equal(roundtrip("/v1/chat/completions", "x-mock-content-length: 0\r\n",
                               "{\"model\":\"ch\",\"mock\":{\"body_size\":30000}}", &r),
                     0);
    assert_non_null(strstr(r.head, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(r.body, "\"model\":\"ch\""));
    assert_true(r.body_len > 30000);
    assert_true(r.body_len < 31000);
    resp_free(&r);

    /* a stream with Content-Length */
    assert_int_equal(roundtrip("/v1/completions", "x-mock-content-length: 1\r\n",
                               "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &r),
                     0);
    assert_non_null(header(r.head, "content-length"));
    assert_int_equal(count(r.body, "data: {"), 7);
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);

    /* close-delimited stream; close after a plain answer */
    client_t c;
    client_open(&c);
    char *req = post("/v1/chat/completions", "x-mock-close-delimited: 1\r\n", "{\"stream\":true}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(ends_with(r.body, r.body_len, "data: [DONE]\n\n"));
    resp_free(&r);
    client_close(&c);
    client_open(&c);
    req = post("/v1/chat/completions", "x-mock-close: 1\r\n", "{}");
    client_sends(&c, req);
    free(req);
    assert_int_equal(read_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_free(&r);
    assert_false(client_fill(&c));
    assert_true(c.eof);
    client_close(&c);

    /* embeddings: one vector per input */
    assert_int_equal(
        roundtrip("/v1/embeddings", "", "{\"model\":\"emb\",\"input\":[\"a\",\"b\",\"c\"]}", &r),
        0);
    assert_int_equal(count(r.body, "\"object\":\"embedding\""), 3);
    assert_non_null(strstr(r.body, "\"model\":\"emb\""));
    resp_free(&r);
}

static void test_large_body(void **state)
{
    /* 3 MiB of messages with the model last: the scan is streamed, the record is cut at 1 MiB */
    size_t pad = 3u << 20;
    const char *pre = "{\"messages\":[{\"role\":\"user\",\"content\":\"";
    const char *post_ = "\"}],\"model\":\"tail-model\",\"stream\":false}";
    size_t blen = strlen(pre) + pad + strlen(post_);
    char *body = malloc(blen + 1);
    assert_non_null(body);
    strcpy(body, pre);
    memset(body + strlen(pre), 'x', pad);
    strcpy(body + strlen(pre) + pad, post_);
    resp_t r;
    assert_int_equal(roundtrip("/v1/chat/completions", "", body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"model\":\"tail-model\""));
    resp_free(&r);
    free(body);
    size_t len = 0;
    char *raw = lx_mock_request_raw(mock, 0, &len);
    assert_non_null(raw);
    assert_int_equal(len, LX_MOCK_RECORD_MAX);
    assert_non_null(strstr(raw, "Content-Length: "));
    free(raw);
}

/* ---- endpoint-wide faults ---- */

static const char chat_req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\n"
                               "Content-Length: 15\r\n\r\n{\"model\":\"m\"}  ";

/* n requests one after the other on one keep-alive connection; their statuses in out. */
static void statuses(int n, int *out)
{
    client_t c;
    client_open(&c);
    for (int i = 0; i < n; i++) {
        client_sends(&c, chat_req);
        resp_t r;
        assert_int_equal(read_response(&c, &r), 0);
        out[i] = r.status;
        resp_free(&r);
    }
    client_close(&c);
}

static void test_fault_fail(void **state)
{
    enum { N = 1000 };
    int *st = calloc(N, sizeof(int));
    assert_non_null(st);
    lx_mock_faults_t f = {.fail_permille = 300, .seed = 7};
    lx_mock_set_faults(mock, &f);
    statuses(N, st);
    int failed = 0;
    for (int i = 0; i < N; i++) {
        assert_true(st[i] == 200 || st[i] == 500);
        failed += st[i] == 500;
    }
    assert_in_range(failed, 240, 360); /* 30% of 1000, within a wide margin */
    assert_int_equal(lx_mock_answered_failed(mock), (uint64_t)failed);
    assert_int_equal(lx_mock_answered_ok(mock), (uint64_t)(N - failed));
    assert_int_equal(lx_mock_answered_limited(mock), 0);

    /* deterministic: the same seed again (after another) replays the same sequence */
    int first[50], again[50];
    memcpy(first, st, sizeof(first));
    lx_mock_faults_t other = {.fail_permille = 300, .seed = 8};
    lx_mock_set_faults(mock, &other);
    statuses(10, again);
    lx_mock_set_faults(mock, &f);
    statuses(50, again);
    assert_memory_equal(first, again, sizeof(first));

    /* everything, then nothing */
    f.fail_permille = 1000;
    lx_mock_set_faults(mock, &f);
    statuses(20, st);
    for (int i = 0; i < 20; i++)
        assert_int_equal(st[i], 500);
    lx_mock_set_faults(mock, NULL);
    statuses(20, st);
    for (int i = 0; i < 20; i++)
        assert_int_equal(st[i], 200);
    lx_mock_reset(mock);
    assert_int_equal(lx_mock_answered_ok(mock), 0);
    assert_int_equal(lx_mock_answered_failed(mock), 0);
    free(st);
}

static void test_fault_ttfb(void **state)
{
    lx_mock_faults_t f = {.ttfb_delay_ms = 250};
    lx_mock_set_faults(mock, &f);
    resp_t r;
    uint64_t t0 = now_ns();
    assert_int_equal(roundtrip("/v1/chat/completions", "", "{\"stream\":true}", &r), 0);
    uint64_t took = now_ns() - t0;
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    resp_free(&r);
    /* (libuv timers count whole milliseconds of a cached clock: up to 1 ms early) */
    assert_true(took >= 249000000u);
    /* added to the per-request delay */
    t0 = now_ns();
    assert_int_equal(roundtrip("/v1/chat/completions", "x-mock-delay-ms: 100\r\n", "{}", &r), 0);
    took = now_ns() - t0;
    resp_free(&r);
    assert_true(took >= 349000000u);
    assert_int_equal(lx_mock_answered_ok(mock), 2);

    lx_mock_set_faults(mock, NULL);
    t0 = now_ns();
    assert_int_equal(roundtrip("/v1/chat/completions", "", "{}", &r), 0);
    took = now_ns() - t0;
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(took < 200000000u);
}

static void test_fault_max_concurrent(void **state)
{
    lx_mock_faults_t f = {.max_concurrent = 2};
    lx_mock_set_faults(mock, &f);
    /* two slow requests in progress */
    client_t slow[2];
    for (int i = 0; i < 2; i++) {
        client_open(&slow[i]);
        char *req = post("/v1/chat/completions", "x-mock-delay-ms: 3000\r\n", "{}");
        client_sends(&slow[i], req);
        free(req);
    }
    assert_int_equal(lx_mock_wait_requests(mock, 2, 5000), 0);
    /* the third is refused at once */
    resp_t r;
    uint64_t t0 = now_ns();
    assert_int_equal(roundtrip("/v1/chat/completions", "", "{}", &r), 0);
    assert_true(now_ns() - t0 < 1000000000u);
    assert_int_equal(r.status, 429);
    const char *ra = header(r.head, "retry-after");
    assert_non_null(ra);
    assert_int_equal(atoi(ra), 1);
    assert_non_null(strstr(r.body, "\"error\""));
    resp_free(&r);
    assert_int_equal(lx_mock_answered_limited(mock), 1);
    /* the peers leave: their requests are no longer in progress */
    for (int i = 0; i < 2; i++)
        client_close(&slow[i]);
    int st = 0;
    for (int tries = 0; tries < 200 && st != 200; tries++) {
        statuses(1, &st);
        if (st != 200) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(st, 200);
    /* the limit off: any number */
    lx_mock_set_faults(mock, NULL);
    client_open(&slow[0]);
    char *req = post("/v1/chat/completions", "x-mock-delay-ms: 3000\r\n", "{}");
    client_sends(&slow[0], req);
    free(req);
    client_open(&slow[1]);
    client_sends(&slow[1], chat_req);
    assert_int_equal(read_response(&slow[1], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(&slow[0]);
    client_close(&slow[1]);
}

/* connect() to the mock's port: 0, or the errno. */
static int try_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

static void test_fault_down(void **state)
{
    uint16_t port = lx_mock_port(mock);
    assert_false(lx_mock_is_down(mock));
    /* an open connection with a stream in progress, and an idle keep-alive one */
    client_t busy, idle;
    client_open(&busy);
    char *req = post("/v1/chat/completions", "x-mock-interval-ms: 100\r\n",
                     "{\"stream\":true,\"mock\":{\"chunks\":100}}");
    client_sends(&busy, req);
    free(req);
    client_open(&idle);
    client_sends(&idle, chat_req);
    resp_t r;
    assert_int_equal(read_response(&idle, &r), 0);
    resp_free(&r);
    assert_int_equal(lx_mock_wait_requests(mock, 2, 5000), 0);

    lx_mock_faults_t f = {.down = true};
    lx_mock_set_faults(mock, &f);
    assert_int_equal(lx_mock_wait_down(mock, true, 5000), 0);
    assert_true(lx_mock_is_down(mock));
    assert_int_equal(try_connect(port), ECONNREFUSED);
    /* both connections were reset */
    while (client_fill(&busy))
        ;
    assert_int_equal(busy.error, ECONNRESET);
    assert_false(client_fill(&idle));
    assert_int_equal(idle.error, ECONNRESET);
    client_close(&busy);
    client_close(&idle);
    /* setting the same state again changes nothing */
    lx_mock_set_faults(mock, &f);
    assert_int_equal(try_connect(port), ECONNREFUSED);

    /* back up on the same port */
    lx_mock_set_faults(mock, NULL);
    assert_int_equal(lx_mock_wait_down(mock, false, 5000), 0);
    assert_int_equal(lx_mock_port(mock), port);
    assert_int_equal(roundtrip("/v1/chat/completions", "", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* and down and up again */
    lx_mock_set_faults(mock, &f);
    assert_int_equal(lx_mock_wait_down(mock, true, 5000), 0);
    assert_int_equal(try_connect(port), ECONNREFUSED);
    lx_mock_set_faults(mock, NULL);
    assert_int_equal(lx_mock_wait_down(mock, false, 5000), 0);
    assert_int_equal(try_connect(port), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_echoes_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chunks_and_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_with_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_request_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closes_by_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_framing_controls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_ttfb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_max_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
