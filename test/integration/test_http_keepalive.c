/*
 * test_http_keepalive.c - HTTP/1.1 connection handling on the client side: keep-alive,
 * pipelining, HTTP/1.0, Expect: 100-continue, chunked request bodies and large bodies, each
 * checked end to end through the upstream.
 *
 * Tests start a mock (or the raw upstream, to capture a body over the mock's record limit) and
 * llmux with one worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts:\n"
                             "  shutdown: 200ms\n"
                             "providers:\n"
                             "  - name: up\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "  - name: raw\n"
                             "    base_url: http://127.0.0.1:@RAW@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: up\n"
                             "        model: up-m\n"
                             "  - id: big\n"
                             "    context_length: 4096\n"
                             "    providers:\n"
                             "      - provider: raw\n"
                             "        model: raw-big-model\n"
                             "auth: none\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

static const char RAW_BODY[] = "{\"id\":\"raw-1\",\"object\":\"chat.completion\",\"choices\":[]}";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    static char reply[256];
    snprintf(reply, sizeof(reply),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             sizeof(RAW_BODY) - 1, RAW_BODY);
    lx_harness_opts_t o = {
        .mocks = 1, .raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = reply};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static const char CHAT[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char CHAT_UP[] =
    "{\"model\":\"up-m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* The body of the mock's n-th most recent request must be <want> with a matching
 * Content-Length and no chunked framing. */
static void assert_upstream_body(size_t n, const char *want, size_t want_len)
{
    size_t len = 0, hl;
    const char *body;
    char v[64];
    char *raw = lx_mock_request_raw(H.mock[0], n, &len);
    assert_non_null(raw);
    assert_true(lx_harness_split(raw, len, &hl, &body));
    assert_true(lx_harness_head_header(raw, hl, "content-length", v, sizeof(v)));
    assert_int_equal(strtoull(v, NULL, 10), want_len);
    assert_false(lx_harness_head_header(raw, hl, "transfer-encoding", v, sizeof(v)));
    assert_int_equal(len - hl, want_len);
    assert_memory_equal(body, want, want_len);
    free(raw);
}

static int format_post(char *out, size_t cap, const char *path, const char *extra, const char *body)
{
    return snprintf(out, cap,
                    "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n%s\r\n%s",
                    path, strlen(body), extra, body);
}

static void test_two_requests_one_connection(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    char req[1024];
    for (int i = 0; i < 2; i++) {
        int n = format_post(req, sizeof(req), "/v1/chat/completions", "", CHAT);
        assert_int_equal(lx_harness_send(&c, req, (size_t)n), 0);
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        char v[64];
        assert_false(lx_harness_resp_header(&r, "connection", v, sizeof(v)) &&
                     strcmp(v, "close") == 0);
        assert_non_null(strstr(r.body, "\"object\":\"chat.completion\""));
        lx_harness_resp_free(&r);
    }
    /* and a third of another kind, still on the same connection */
    assert_int_equal(lx_harness_send_str(&c, "GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"m\""));
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    assert_int_equal(lx_mock_requests(H.mock[0]), 2);
    assert_upstream_body(0, CHAT_UP, sizeof(CHAT_UP) - 1);
    assert_upstream_body(1, CHAT_UP, sizeof(CHAT_UP) - 1);
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    static const char emb[] = "{\"model\":\"m\",\"input\":[\"a\"]}";
    char req[4096];
    size_t n = 0;
    /* the first answer is slowed down upstream: a server answering in completion order
     * would send the second and third first */
    n += (size_t)format_post(req + n, sizeof(req) - n, "/v1/chat/completions",
                             "X-Request-Id: pipe-1\r\nX-Mock-Delay-Ms: 200\r\n", CHAT);
    n += (size_t)snprintf(req + n, sizeof(req) - n,
                          "GET /v1/models HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-2\r\n\r\n");
    n += (size_t)format_post(req + n, sizeof(req) - n, "/v1/embeddings", "X-Request-Id: pipe-3\r\n",
                             emb);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, req, n), 0); /* one write */
    static const char *const ids[] = {"pipe-1", "pipe-2", "pipe-3"};
    static const char *const objs[] = {"\"object\":\"chat.completion\"", "\"id\":\"m\"",
                                       "\"object\":\"embedding\""};
    for (int i = 0; i < 3; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c, &r), 0);
        assert_int_equal(r.status, 200);
        char v[64];
        assert_true(lx_harness_resp_header(&r, "x-request-id", v, sizeof(v)));
        assert_string_equal(v, ids[i]);
        assert_non_null(strstr(r.body, objs[i]));
        lx_harness_resp_free(&r);
    }
    assert_true(lx_harness_still_open(&c, 50));
    lx_harness_close(&c);
    assert_int_equal(lx_mock_requests(H.mock[0]), 2);
}

static void test_http10(void **state)
{
    (void)state;
    char req[1024];
    int n =
        snprintf(req, sizeof(req),
                 "POST /v1/chat/completions HTTP/1.0\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(CHAT), CHAT);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, req, (size_t)n), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_false(r.chunked); /* an HTTP/1.0 client cannot read chunked framing */
    assert_non_null(strstr(r.body, "\"object\":\"chat.completion\""));
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, 2000));
    lx_harness_close(&c);
    assert_upstream_body(0, CHAT_UP, sizeof(CHAT_UP) - 1);

    /* one answered by llmux itself */
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "GET /healthz HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    lx_harness_resp_free(&r);
    assert_true(lx_harness_wait_closed(&c, 2000));
    lx_harness_close(&c);
}

static void test_expect_continue(void **state)
{
    (void)state;
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     strlen(CHAT));
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, head, (size_t)n), 0);
    /* the interim answer comes before the client sends its body */
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_true(lx_harness_wait_bytes(&c, sizeof(cont) - 1, 2000));
    assert_memory_equal(c.buf, cont, sizeof(cont) - 1);
    assert_int_equal(lx_harness_send_str(&c, CHAT), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_true(r.continued);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    assert_upstream_body(0, CHAT_UP, sizeof(CHAT_UP) - 1);
    /* the Expect header is llmux's business, not the upstream's */
    size_t len;
    char v[64];
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    assert_false(lx_harness_head_header(raw, len, "expect", v, sizeof(v)));
    free(raw);
}

static void test_chunked_request_body(void **state)
{
    (void)state;
    /* CHAT in three chunks of odd sizes, the model value cut across chunks, plus a chunk
     * extension and a trailer */
    size_t total = strlen(CHAT);
    size_t a = 7, b = 13;
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"
                     "%zx\r\n%.*s\r\n%zx;ext=1\r\n%.*s\r\n%zx\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n",
                     a, (int)a, CHAT, b, (int)b, CHAT + a, total - a - b, CHAT + a + b);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    /* sent in pieces, so llmux meets the body across reads too */
    size_t half = (size_t)n / 2;
    assert_int_equal(lx_harness_send(&c, req, half), 0);
    lx_harness_sleep_ms(20);
    assert_int_equal(lx_harness_send(&c, req + half, (size_t)n - half), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    assert_upstream_body(0, CHAT_UP, sizeof(CHAT_UP) - 1);
}

/* A chat body with a content string of about <size> bytes; *up gets the same body as the
 * upstream must receive it (model "big" becomes "raw-big-model"). */
static char *large_body(size_t size, char **up, size_t *up_len)
{
    static const char pre[] = "{\"model\":\"big\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    static const char pre_up[] =
        "{\"model\":\"raw-big-model\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    static const char post[] = "\"}],\"tail\":\"end\"}";
    char *b = malloc(size + sizeof(pre) + sizeof(post));
    *up = malloc(size + sizeof(pre_up) + sizeof(post));
    assert_non_null(b);
    assert_non_null(*up);
    size_t n = sizeof(pre) - 1;
    memcpy(b, pre, n);
    uint32_t x = 12345;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        char ch = (char)(' ' + (x >> 16) % 94); /* printable ASCII */
        if (ch == '"' || ch == '\\')
            ch = '.';
        b[n++] = ch;
    }
    memcpy(b + n, post, sizeof(post));
    n += sizeof(post) - 1;
    memcpy(*up, pre_up, sizeof(pre_up) - 1);
    memcpy(*up + sizeof(pre_up) - 1, b + sizeof(pre) - 1, n - (sizeof(pre) - 1) + 1);
    *up_len = n - (sizeof(pre) - 1) + (sizeof(pre_up) - 1);
    return b;
}

static void test_large_body_exact(void **state)
{
    (void)state;
    char *up;
    size_t up_len;
    char *body = large_body(3 * 1024 * 1024, &up, &up_len);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, RAW_BODY);
    lx_harness_resp_free(&r);

    size_t len = 0, hl;
    const char *ubody;
    char v[64];
    char *raw = lx_harness_raw_last(H.raw, &len);
    assert_non_null(raw);
    assert_true(lx_harness_split(raw, len, &hl, &ubody));
    assert_true(lx_harness_head_header(raw, hl, "content-length", v, sizeof(v)));
    assert_int_equal(strtoull(v, NULL, 10), up_len);
    assert_int_equal(len - hl, up_len);
    assert_memory_equal(ubody, up, up_len);
    free(raw);
    free(body);
    free(up);
}

static void test_large_body_chunked(void **state)
{
    (void)state;
    char *up;
    size_t up_len;
    char *body = large_body(3 * 1024 * 1024 + 17, &up, &up_len);
    size_t blen = strlen(body);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                                             "Transfer-Encoding: chunked\r\n\r\n"),
                     0);
    for (size_t off = 0; off < blen;) {
        size_t k = blen - off < 100000 ? blen - off : 100000;
        char line[32];
        int ln = snprintf(line, sizeof(line), "%zx\r\n", k);
        assert_int_equal(lx_harness_send(&c, line, (size_t)ln), 0);
        assert_int_equal(lx_harness_send(&c, body + off, k), 0);
        assert_int_equal(lx_harness_send(&c, "\r\n", 2), 0);
        off += k;
    }
    assert_int_equal(lx_harness_send_str(&c, "0\r\n\r\n"), 0);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);

    size_t len = 0, hl;
    const char *ubody;
    char *raw = lx_harness_raw_last(H.raw, &len);
    assert_non_null(raw);
    assert_true(lx_harness_split(raw, len, &hl, &ubody));
    assert_int_equal(len - hl, up_len);
    assert_memory_equal(ubody, up, up_len);
    free(raw);
    free(body);
    free(up);
}

static void test_large_response(void **state)
{
    (void)state;
    /* the mock answers with 3 MB of content: relayed whole */
    static const char body[] = "{\"model\":\"m\",\"messages\":[],\"mock\":{\"body_size\":3000000}}";
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    const char *content = strstr(r.body, "\"content\":\"");
    assert_non_null(content);
    content += strlen("\"content\":\"");
    const char *end = strchr(content, '"');
    assert_non_null(end);
    assert_int_equal(end - content, 3000000);
    assert_memory_equal(content, "lorem ipsum dolor sit amet", 26);
    assert_non_null(strstr(end, "\"finish_reason\":\"stop\""));
    lx_harness_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_requests_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_request_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_response, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
