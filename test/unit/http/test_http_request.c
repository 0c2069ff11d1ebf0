/*
 * test_http_request.c - the request parser on bytes alone (lx_http_parser_t, no socket, no
 * loop): a pipeline of four requests (GET, Content-Length POST, chunked POST with extensions
 * and a trailer, HTTP/1.0) read whole, byte by byte, split in two at every byte (in one chunk
 * and across two), and in three chunks at every pair of points; feeding stops at each
 * request's end; every refusal, with its status, at every split point; the owner's hooks
 * (begin, admission, 100 Continue); request ids; bodies over 4 KiB and the body memory cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "http/http_request.h"

static lx_http_server_limits_t limits = {
    .max_header_size = 8192,
    .max_body_size = 1 << 20,
};

/* What a test keeps of each complete request. */
typedef struct got {
    int method;
    int minor;
    bool keep_alive;
    char path[64];
    char target[64];
    char body[128];
    size_t body_len;
    unsigned n_headers;
    char headers[256]; /* "name=value;" each */
    char id[LX_HTTP_ID_MAX + 1];
} got_t;

typedef struct run {
    got_t got[8];
    unsigned n;
    int error_status;
    const char *error_headers;
    char error_message[160];
    enum lx_http_parse_state end;
    unsigned begins, heads, bodies, continues;
    int refuse_on_head; /* the on_head hook's answer */
} run_t;

static void copy(char *dst, size_t cap, lx_str_t s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n > 0)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void keep(run_t *run, const lx_http_request_t *r)
{
    assert_true(run->n < 8);
    got_t *g = &run->got[run->n++];
    g->method = r->method;
    g->minor = r->http_minor;
    g->keep_alive = r->keep_alive;
    copy(g->path, sizeof(g->path), r->path);
    copy(g->target, sizeof(g->target), r->head.target);
    copy(g->body, sizeof(g->body), r->body);
    g->body_len = r->body.len;
    g->n_headers = r->head.n_headers;
    g->headers[0] = '\0';
    for (unsigned i = 0; i < r->head.n_headers; i++) {
        const lx_http_header_t *h = &r->head.headers[i];
        size_t o = strlen(g->headers);
        snprintf(g->headers + o, sizeof(g->headers) - o, "%.*s=%.*s;", (int)h->name.len,
                 h->name.ptr, (int)h->value.len, h->value.ptr);
    }
    memcpy(g->id, r->id, r->id_len);
    g->id[r->id_len] = '\0';
}

static void on_begin(lx_http_parser_t *p)
{
    run_t *run = p->data;
    run->begins++;
}

static int on_head(lx_http_parser_t *p, const char **message, const char **headers)
{
    run_t *run = p->data;
    run->heads++;
    assert_int_equal(p->state, LX_HTTP_PARSE_HEAD);
    if (run->refuse_on_head != 0) {
        *message = NULL; /* the reason phrase */
        *headers = "WWW-Authenticate: Bearer\r\n";
    }
    return run->refuse_on_head;
}

static void on_body(lx_http_parser_t *p)
{
    run_t *run = p->data;
    run->bodies++;
    run->continues += p->send_continue;
    assert_int_equal(p->state, LX_HTTP_PARSE_BODY);
}

static const lx_http_parser_hooks_t hooks = {on_begin, on_head, on_body};

/* Parses <in> cut at the <n_cuts> ascending offsets <cuts>; a cut in <new_chunk> starts a new
 * chunk (else the read lands after the previous one in the same chunk, as a stream's do). */
static void parse_cut(run_t *run, const char *in, size_t len, const size_t *cuts, size_t n_cuts,
                      const bool *new_chunk)
{
    lx_http_request_t req;
    lx_http_parser_t p;
    uint64_t id_state = 0x2545F4914F6CDD1Dull;
    memset(&req, 0, sizeof(req));
    lx_http_parser_init(&p, &req, &limits, &id_state, &hooks, run);
    lx_buf_t *chunk = lx_buf_new(len + 1);
    size_t off = 0;
    for (size_t k = 0; k <= n_cuts && p.state != LX_HTTP_PARSE_ERROR; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        if (k > 0 && new_chunk != NULL && new_chunk[k - 1]) {
            lx_buf_unref(chunk);
            chunk = lx_buf_new(len + 1);
        }
        char *at = chunk->data + chunk->len;
        size_t n = end - off;
        memcpy(at, in + off, n);
        chunk->len += (uint32_t)n;
        off = end;
        while (n > 0) {
            size_t used = lx_http_parser_feed(&p, chunk, at, n);
            if (p.state != LX_HTTP_PARSE_DONE) {
                assert_int_equal(used, n);
                break;
            }
            keep(run, &req);
            assert_int_equal(lx_http_parser_feed(&p, chunk, at + used, n - used), 0);
            lx_http_parser_reset(&p);
            at += used;
            n -= used;
        }
    }
    run->end = p.state;
    if (p.state == LX_HTTP_PARSE_ERROR) {
        run->error_status = p.error_status;
        run->error_headers = p.error_headers;
        char msg[160];
        snprintf(run->error_message, sizeof(run->error_message), "%s",
                 lx_http_parser_error(&p, msg, sizeof(msg)));
    }
    lx_http_parser_reset(&p);
    lx_buf_unref(chunk);
    assert_int_equal(lx_http_body_memory(), 0);
}

static void parse_whole(run_t *run, const char *in)
{
    memset(run, 0, sizeof(*run));
    parse_cut(run, in, strlen(in), NULL, 0, NULL);
}

/* ---- the pipeline ---- */

static const char pipeline[] =
    "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: req-1\r\n\r\n"
    "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
    "X-A:  spaced \t\r\n\r\n{\"a\":\"bc\"}\n"
    "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;a=b ; c=\"q\\\"d\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    "GET /ten HTTP/1.0\r\n\r\n";

static void expect_pipeline(const run_t *run)
{
    assert_int_equal(run->end, LX_HTTP_PARSE_IDLE);
    assert_int_equal(run->n, 4);
    assert_int_equal(run->begins, 4);
    assert_int_equal(run->heads, 4);
    assert_int_equal(run->bodies, 4);
    assert_int_equal(run->continues, 0);
    const got_t *g = run->got;
    assert_int_equal(g[0].method, HTTP_GET);
    assert_string_equal(g[0].path, "/v1/models");
    assert_string_equal(g[0].target, "/v1/models?x=1");
    assert_string_equal(g[0].headers, "Host=a;X-Request-Id=req-1;");
    assert_string_equal(g[0].id, "req-1");
    assert_int_equal(g[0].body_len, 0);
    assert_true(g[0].keep_alive);
    assert_int_equal(g[1].method, HTTP_POST);
    assert_string_equal(g[1].path, "/v1/chat/completions");
    assert_string_equal(g[1].body, "{\"a\":\"bc\"}\n");
    assert_string_equal(g[1].headers, "Host=a;Content-Length=11;X-A=spaced;");
    assert_int_equal(strlen(g[1].id), 16); /* generated */
    assert_string_equal(g[2].path, "/c");
    assert_int_equal(g[2].body_len, 11);
    assert_string_equal(g[2].body, "hello world");
    assert_string_equal(g[2].headers, "Transfer-Encoding=chunked;"); /* trailer dropped */
    assert_string_equal(g[3].path, "/ten");
    assert_int_equal(g[3].minor, 0);
    assert_false(g[3].keep_alive);
}

static void test_pipeline_whole(void **state)
{
    (void)state;
    run_t run;
    parse_whole(&run, pipeline);
    expect_pipeline(&run);
}

static void test_pipeline_byte_by_byte(void **state)
{
    (void)state;
    size_t len = strlen(pipeline);
    static size_t cuts[sizeof(pipeline)];
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    run_t run;
    memset(&run, 0, sizeof(run));
    parse_cut(&run, pipeline, len, cuts, len - 1, NULL);
    expect_pipeline(&run);
}

static void test_pipeline_every_split(void **state)
{
    (void)state;
    size_t len = strlen(pipeline);
    for (size_t i = 1; i < len; i++) {
        for (int chunks = 0; chunks < 2; chunks++) {
            bool fresh = chunks == 1;
            run_t run;
            memset(&run, 0, sizeof(run));
            parse_cut(&run, pipeline, len, &i, 1, &fresh);
            expect_pipeline(&run);
        }
    }
}

static void test_pipeline_three_chunks(void **state)
{
    (void)state;
    size_t len = strlen(pipeline);
    const bool fresh[2] = {true, true};
    for (size_t i = 1; i < len; i += 3) {
        for (size_t j = i + 1; j < len; j += 5) {
            size_t cuts[2] = {i, j};
            run_t run;
            memset(&run, 0, sizeof(run));
            parse_cut(&run, pipeline, len, cuts, 2, fresh);
            expect_pipeline(&run);
        }
    }
}

/* Feeding stops at the end of each request: the bytes used are that request's. */
static void test_feed_stops_at_each_request(void **state)
{
    (void)state;
    const char *in = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    lx_http_request_t req;
    lx_http_parser_t p;
    uint64_t id_state = 1;
    memset(&req, 0, sizeof(req));
    lx_http_parser_init(&p, &req, &limits, &id_state, NULL, NULL);
    lx_buf_t *b = lx_buf_new(64);
    memcpy(b->data, in, strlen(in));
    b->len = (uint32_t)strlen(in);
    assert_int_equal(p.state, LX_HTTP_PARSE_IDLE);
    assert_int_equal(lx_http_parser_feed(&p, b, b->data, b->len), 19);
    assert_int_equal(p.state, LX_HTTP_PARSE_DONE);
    assert_int_equal(req.bytes_in, 19);
    assert_memory_equal(req.path.ptr, "/a", 2);
    assert_int_equal(lx_http_parser_feed(&p, b, b->data + 19, 19), 0); /* DONE takes none */
    lx_http_parser_reset(&p);
    assert_int_equal(p.state, LX_HTTP_PARSE_IDLE);
    assert_int_equal(req.bytes_in, 0);
    assert_int_equal(lx_http_parser_feed(&p, b, b->data + 19, 5), 5);
    assert_int_equal(p.state, LX_HTTP_PARSE_HEAD);
    assert_int_equal(lx_http_parser_feed(&p, b, b->data + 24, 14), 14);
    assert_int_equal(p.state, LX_HTTP_PARSE_DONE);
    assert_memory_equal(req.path.ptr, "/b", 2);
    lx_http_parser_reset(&p);
    lx_buf_unref(b);
}

/* ---- refusals ---- */

typedef struct refusal {
    const char *in;
    int status;
    const char *message; /* a part of it */
    bool in_body;        /* refused after the head was admitted (on_body ran) */
} refusal_t;

static const refusal_t refusals[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\rX", 400, "CR not followed by LF", true},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "invalid header field name", false},
    {"GET / HTTP/2.0\r\n\r\n", 505, "only HTTP/1.x", false},
    {"GET /\r\n\r\n", 400, "no HTTP version", false},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400,
     "Transfer-Encoding", false},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, "Transfer-Encoding",
     false},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "other than chunked",
     false},
    {"POST / HTTP/1.1\r\nExpect: nope\r\nContent-Length: 2\r\n\r\nok", 417, "Expect", false},
    {"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413, "too large", false},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413, "too large", true},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid chunk size",
     true},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400,
     "not followed by CRLF", true},
    {"\x01GET / HTTP/1.1\r\n\r\n", 400, "malformed HTTP request: ", false},
};

static void test_refusals_at_every_split(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(refusals) / sizeof(refusals[0]); k++) {
        const refusal_t *rf = &refusals[k];
        size_t len = strlen(rf->in);
        for (size_t i = 0; i < len; i++) { /* i == 0: one read */
            run_t run;
            memset(&run, 0, sizeof(run));
            parse_cut(&run, rf->in, len, &i, i > 0 ? 1 : 0, NULL);
            if (run.end != LX_HTTP_PARSE_ERROR || run.error_status != rf->status ||
                strstr(run.error_message, rf->message) == NULL)
                fail_msg("%s cut at %zu: state %d status %d (%s)", rf->in, i, run.end,
                         run.error_status, run.error_message);
            assert_int_equal(run.n, 0);
            if (run.bodies != (rf->in_body ? 1u : 0u))
                fail_msg("%s cut at %zu: on_body %u", rf->in, i, run.bodies);
        }
    }
}

static void test_head_limits(void **state)
{
    (void)state;
    char in[10000];
    run_t run;
    /* one header over max_header_size */
    int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nX-Big: %09000d\r\n\r\n", 0);
    assert_true(n > 0);
    parse_whole(&run, in);
    assert_int_equal(run.error_status, 431);
    /* more than LX_HTTP_MAX_HEADERS headers */
    size_t o = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= LX_HTTP_MAX_HEADERS; i++)
        o += (size_t)snprintf(in + o, sizeof(in) - o, "H%d: v\r\n", i);
    snprintf(in + o, sizeof(in) - o, "\r\n");
    parse_whole(&run, in);
    assert_int_equal(run.error_status, 431); /* (at the 65th name) */
    assert_string_equal(run.error_message, "request header fields too large");
    /* exactly LX_HTTP_MAX_HEADERS is fine */
    o = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < LX_HTTP_MAX_HEADERS; i++)
        o += (size_t)snprintf(in + o, sizeof(in) - o, "H%d: v\r\n", i);
    snprintf(in + o, sizeof(in) - o, "\r\n");
    parse_whole(&run, in);
    assert_int_equal(run.n, 1);
    assert_int_equal(run.got[0].n_headers, LX_HTTP_MAX_HEADERS);
    /* trailers over max_header_size */
    o = (size_t)snprintf(in, sizeof(in),
                         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\nX-T: %09000d\r\n\r\n",
                         0);
    parse_whole(&run, in);
    assert_int_equal(run.error_status, 431);
}

/* ---- hooks ---- */

static void test_on_head_refuses(void **state)
{
    (void)state;
    run_t run;
    memset(&run, 0, sizeof(run));
    run.refuse_on_head = 401;
    const char *in = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok";
    parse_cut(&run, in, strlen(in), NULL, 0, NULL);
    assert_int_equal(run.end, LX_HTTP_PARSE_ERROR);
    assert_int_equal(run.error_status, 401);
    assert_string_equal(run.error_message, "Unauthorized");
    assert_string_equal(run.error_headers, "WWW-Authenticate: Bearer\r\n");
    assert_int_equal(run.heads, 1);
    assert_int_equal(run.bodies, 0);
}

static void test_continue(void **state)
{
    (void)state;
    run_t run;
    parse_whole(&run, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
    assert_int_equal(run.n, 1);
    assert_int_equal(run.continues, 1);
    /* no body, or HTTP/1.0: nothing to wait for */
    parse_whole(&run, "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(run.n, 1);
    assert_int_equal(run.continues, 0);
    parse_whole(&run, "POST / HTTP/1.0\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok");
    assert_int_equal(run.n, 1);
    assert_int_equal(run.continues, 0);
    parse_whole(&run, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
                      "\r\n2\r\nok\r\n0\r\n\r\n");
    assert_int_equal(run.n, 1);
    assert_int_equal(run.continues, 1);
    assert_string_equal(run.got[0].body, "ok");
}

static void test_request_ids(void **state)
{
    (void)state;
    run_t run;
    parse_whole(&run, "GET / HTTP/1.1\r\nX-Request-Id: a.b:c_d-1\r\n\r\n"
                      "GET / HTTP/1.1\r\nX-Request-Id: bad id\r\n\r\n"
                      "GET / HTTP/1.1\r\nX-Request-Id: \r\n\r\n");
    assert_int_equal(run.n, 3);
    assert_string_equal(run.got[0].id, "a.b:c_d-1");
    assert_int_equal(strlen(run.got[1].id), 16);
    assert_int_equal(strlen(run.got[2].id), 16);
    assert_string_not_equal(run.got[1].id, run.got[2].id);
    for (size_t i = 0; i < 16; i++)
        assert_non_null(strchr("0123456789abcdef", run.got[1].id[i]));
}

/* ---- bodies over 4 KiB and the body memory cap ---- */

static void test_large_body(void **state)
{
    (void)state;
    static char in[8000];
    int n = snprintf(in, sizeof(in), "POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    memset(in + n, 'b', 5000);
    in[n + 5000] = '\0';
    size_t len = strlen(in);
    for (size_t i = 1; i < len; i += 499) {
        run_t run;
        memset(&run, 0, sizeof(run));
        parse_cut(&run, in, len, &i, 1, NULL);
        assert_int_equal(run.n, 1);
        assert_int_equal(run.got[0].body_len, 5000);
    }
    /* the cap: a 5000-byte body does not fit under 4999 bytes of body memory */
    limits.max_body_memory = 4999;
    run_t run;
    parse_whole(&run, in);
    limits.max_body_memory = 0;
    assert_int_equal(run.error_status, 503);
    assert_string_equal(run.error_headers, "Retry-After: 1\r\n");
    assert_int_equal(lx_http_body_memory(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_whole),
        cmocka_unit_test(test_pipeline_byte_by_byte),
        cmocka_unit_test(test_pipeline_every_split),
        cmocka_unit_test(test_pipeline_three_chunks),
        cmocka_unit_test(test_feed_stops_at_each_request),
        cmocka_unit_test(test_refusals_at_every_split),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_on_head_refuses),
        cmocka_unit_test(test_continue),
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_large_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
