/*
 * test_proxy_basic.c - the API as a client sees it on the happy path: the proxied routes under
 * /v1 and /api/v1, the model list, health, unknown routes and methods, the request exactly as
 * the upstream receives it, request ids and the access log line; the error envelope of each
 * API (OpenAI's under /v1, OpenRouter's under /api/v1) with the model name as the client wrote
 * it; and a provider's error that echoes llmux's request to it (its key, a header from the
 * environment, forged log lines), which reaches neither the client nor the log.
 *
 * Each test starts a mock and llmux (one worker) from CONFIG and stops them at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "harness.h"

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts:\n"
                             "  shutdown: 200ms\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/base/v1\n"
                             "    api_key: ${LX_TEST_UPSTREAM_KEY}\n"
                             "    headers:\n"
                             "      X-Extra-One: one\n"
                             "      X-Extra-Two: two words\n"
                             "models:\n"
                             "  - id: pub/model-a\n"
                             "    context_length: 4096\n"
                             "    created: 1721692800\n"
                             "    owned_by: pubco\n"
                             "    providers:\n"
                             "      - provider: mock-a\n"
                             "        model: upstream-a\n"
                             "        price:\n"
                             "          prompt: 0.05\n"
                             "          completion: 0.08\n"
                             "  - id: text-embed\n"
                             "    context_length: 8191\n"
                             "    providers:\n"
                             "      - provider: mock-a\n"
                             "auth: none\n"
                             "log:\n"
                             "  access_log: @LOG@\n"
                             "  level: error\n";

static const char UPSTREAM_KEY[] = "sk-upstream-0123456789";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_setenv("LX_TEST_UPSTREAM_KEY", UPSTREAM_KEY);
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static const char CHAT_BODY[] =
    "{\"model\":\"pub/model-a\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* The request line of the last request the mock received, into out. */
static void last_request_line(char *out, size_t cap)
{
    size_t len = 0;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    char *eol = strstr(raw, "\r\n");
    assert_non_null(eol);
    snprintf(out, cap, "%.*s", (int)(eol - raw), raw);
    free(raw);
}

static void test_routes_proxied(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        const char *upstream_line;
        const char *object; /* what the mock's answer for this route contains */
    } cases[] = {
        {"/v1/chat/completions", "POST /base/v1/chat/completions HTTP/1.1",
         "\"object\":\"chat.completion\""},
        {"/v1/completions", "POST /base/v1/completions HTTP/1.1", "\"object\":\"text_completion\""},
        {"/v1/embeddings", "POST /base/v1/embeddings HTTP/1.1", "\"object\":\"embedding\""},
        {"/api/v1/chat/completions", "POST /base/v1/chat/completions HTTP/1.1",
         "\"object\":\"chat.completion\""},
        {"/api/v1/completions", "POST /base/v1/completions HTTP/1.1",
         "\"object\":\"text_completion\""},
        {"/api/v1/embeddings", "POST /base/v1/embeddings HTTP/1.1", "\"object\":\"embedding\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lx_harness_resp_t r;
        const char *body = strstr(cases[i].path, "embeddings")
                               ? "{\"model\":\"text-embed\",\"input\":[\"a\",\"b\"]}"
                               : "{\"model\":\"pub/model-a\",\"prompt\":\"x\",\"messages\":[]}";
        assert_int_equal(lx_harness_post(H.port, cases[i].path, NULL, body, &r), 0);
        if (r.status != 200)
            fprintf(stderr, "%s: %d %s\n", cases[i].path, r.status, r.body);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        assert_non_null(strstr(r.body, cases[i].object));
        char ct[128];
        assert_true(lx_harness_resp_header(&r, "content-type", ct, sizeof(ct)));
        assert_non_null(strstr(ct, "application/json"));
        char line[256];
        last_request_line(line, sizeof(line));
        assert_string_equal(line, cases[i].upstream_line);
        assert_int_equal(lx_mock_requests(H.mock[0]), i + 1);
        lx_harness_resp_free(&r);
    }
}

static void test_models_list(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/models", "/api/v1/models"};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_get(H.port, paths[i], &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        const char *b = r.body;
        assert_non_null(strstr(b, "\"object\":\"list\""));
        const char *a = strstr(b, "\"id\":\"pub/model-a\"");
        assert_non_null(a);
        char s[128];
        double d;
        assert_true(lx_harness_json_str(a, "object", s, sizeof(s)));
        assert_string_equal(s, "model");
        assert_true(lx_harness_json_num(a, "created", &d));
        assert_true(d == 1721692800.0);
        assert_true(lx_harness_json_str(a, "owned_by", s, sizeof(s)));
        assert_string_equal(s, "pubco");
        assert_true(lx_harness_json_num(a, "context_length", &d));
        assert_true(d == 4096.0);
        const char *pr = strstr(a, "\"pricing\"");
        assert_non_null(pr);
        assert_true(lx_harness_json_str(pr, "prompt", s, sizeof(s)));
        assert_true(strtod(s, NULL) > 0.0000000499 && strtod(s, NULL) < 0.0000000501);
        assert_true(lx_harness_json_str(pr, "completion", s, sizeof(s)));
        assert_true(strtod(s, NULL) > 0.0000000799 && strtod(s, NULL) < 0.0000000801);
        const char *e = strstr(b, "\"id\":\"text-embed\"");
        assert_non_null(e);
        assert_true(lx_harness_json_str(e, "owned_by", s, sizeof(s)));
        assert_string_equal(s, "llmux");
        assert_true(lx_harness_json_num(e, "context_length", &d));
        assert_true(d == 8191.0);
        lx_harness_resp_free(&r);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 0); /* served by llmux, not proxied */
}

static void test_health(void **state)
{
    (void)state;
    const char *paths[] = {"/healthz", "/readyz"};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_get(H.port, paths[i], &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"status\":\"ok\""));
        lx_harness_resp_free(&r);
    }
}

static void test_unknown_route(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/nope", "/", "/v2/chat/completions", "/v1/chat/completions/x",
                           "/apiv1/models"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_get(H.port, paths[i], &r), 0);
        assert_true(lx_harness_is_error(&r, 404));
        lx_harness_resp_free(&r);
    }
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/unknown", NULL, CHAT_BODY, &r), 0);
    assert_true(lx_harness_is_error(&r, 404));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

static void test_wrong_method(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    char allow[64];

    assert_int_equal(lx_harness_get(H.port, "/v1/chat/completions", &r), 0);
    assert_true(lx_harness_is_error(&r, 405));
    assert_true(lx_harness_resp_header(&r, "allow", allow, sizeof(allow)));
    assert_string_equal(allow, "POST");
    lx_harness_resp_free(&r);

    assert_int_equal(lx_harness_get(H.port, "/api/v1/embeddings", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 405));
    assert_true(lx_harness_resp_header(&r, "allow", allow, sizeof(allow)));
    assert_string_equal(allow, "POST");
    lx_harness_resp_free(&r);

    assert_int_equal(lx_harness_post(H.port, "/v1/models", NULL, "{}", &r), 0);
    assert_true(lx_harness_is_error(&r, 405));
    assert_true(lx_harness_resp_header(&r, "allow", allow, sizeof(allow)));
    assert_string_equal(allow, "GET");
    lx_harness_resp_free(&r);

    assert_int_equal(lx_harness_post(H.port, "/healthz", NULL, "{}", &r), 0);
    assert_true(lx_harness_is_error(&r, 405));
    assert_true(lx_harness_resp_header(&r, "allow", allow, sizeof(allow)));
    assert_non_null(strstr(allow, "GET"));
    lx_harness_resp_free(&r);

    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

/* Counts header lines named <name> in a raw head. */
static int count_headers(const char *head, size_t len, const char *name)
{
    int n = 0;
    size_t nl = strlen(name);
    const char *end = head + len;
    for (const char *p = strstr(head, "\r\n"); p != NULL && p + 2 < end; p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            n++;
    }
    return n;
}

static void test_rewritten_request(void **state)
{
    (void)state;
    /* the model is not first, has blanks around its colon, and the same text appears in a
     * message and under unknown fields: only the top-level value may change */
    static const char body[] =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"model\\\": pub/model-a\"}],\n"
        "  \"model\" : \"pub/model-a\",\n"
        "  \"unknown_field\":{\"model\":\"pub/model-a\",\"deep\":[1,2.5e3,{\"x\":null}],"
        "\"u\":\"\\u00e9\\n\"},\n"
        "  \"temperature\":0.25, \"max_tokens\":7, \"emoji\":\"\xf0\x9f\x98\x80\"}";
    static const char expected[] =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"model\\\": pub/model-a\"}],\n"
        "  \"model\" : \"upstream-a\",\n"
        "  \"unknown_field\":{\"model\":\"pub/model-a\",\"deep\":[1,2.5e3,{\"x\":null}],"
        "\"u\":\"\\u00e9\\n\"},\n"
        "  \"temperature\":0.25, \"max_tokens\":7, \"emoji\":\"\xf0\x9f\x98\x80\"}";
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions",
                                     "Authorization: Bearer client-secret-key\r\n"
                                     "X-Request-Id: rid-rewrite-1\r\n"
                                     "X-Custom-Client: keep-me\r\n",
                                     body, &r),
                     0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);

    size_t len = 0;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    size_t hl;
    const char *ubody;
    assert_true(lx_harness_split(raw, len, &hl, &ubody));
    char v[256];
    char want[256];

    assert_memory_equal(raw, "POST /base/v1/chat/completions HTTP/1.1\r\n", 41);
    snprintf(want, sizeof(want), "127.0.0.1:%u", lx_mock_port(H.mock[0]));
    assert_true(lx_harness_head_header(raw, hl, "host", v, sizeof(v)));
    assert_string_equal(v, want);
    assert_int_equal(count_headers(raw, hl, "host"), 1);

    snprintf(want, sizeof(want), "Bearer %s", UPSTREAM_KEY);
    assert_true(lx_harness_head_header(raw, hl, "authorization", v, sizeof(v)));
    assert_string_equal(v, want);
    assert_int_equal(count_headers(raw, hl, "authorization"), 1);
    assert_null(strstr(raw, "client-secret-key"));

    assert_true(lx_harness_head_header(raw, hl, "x-extra-one", v, sizeof(v)));
    assert_string_equal(v, "one");
    assert_true(lx_harness_head_header(raw, hl, "x-extra-two", v, sizeof(v)));
    assert_string_equal(v, "two words");
    assert_true(lx_harness_head_header(raw, hl, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "rid-rewrite-1");
    assert_int_equal(count_headers(raw, hl, "x-request-id"), 1);
    assert_true(lx_harness_head_header(raw, hl, "x-custom-client", v, sizeof(v)));
    assert_string_equal(v, "keep-me");

    assert_true(lx_harness_head_header(raw, hl, "content-length", v, sizeof(v)));
    assert_int_equal(strtoull(v, NULL, 10), sizeof(expected) - 1);
    assert_false(lx_harness_head_header(raw, hl, "transfer-encoding", v, sizeof(v)));
    assert_int_equal(len - hl, sizeof(expected) - 1);
    assert_memory_equal(ubody, expected, sizeof(expected) - 1);
    free(raw);
}

/* Which client headers go upstream: each name llmux drops, in mixed case, is dropped; names of
 * the same lengths that differ in one character, and x-llmux look-alikes, are kept. */
static void test_forwarded_headers(void **state)
{
    (void)state;
    static const char *const dropped[] = {
        "te",
        "expect",
        "cookie",
        "trailer",
        "keep-alive",
        "connection",
        "x-session-id",
        "accept-encoding",
        "proxy-connection",
        "x-llmux-a",
        "content-encoding",
        "proxy-authorization",
        "x-llmux-something-longer",
    };
    static const char *const kept[][2] = {
        {"xe", "2"},
        {"hoss", "4"},
        {"cookiz", "6"},
        {"trailez", "7"},
        {"x-llmux", "7b"},
        {"connectioz", "10"},
        {"x-llmuxz-a", "10b"},
        {"x-request-ix", "12"},
        {"authorizatioz", "13"},
        {"content-lengtz", "14"},
        {"accept-encodinz", "15"},
        {"proxy-connectioz", "16"},
        {"transfer-encodinz", "17"},
        {"proxy-authorizatioz", "19"},
    };
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions",
                                     "TE: trailers\r\n"
                                     "COOKIE: c=1\r\n"
                                     "Trailer: X-Foo\r\n"
                                     "Keep-Alive: timeout=5\r\n"
                                     "connection: keep-alive\r\n"
                                     "X-Session-ID: s-1\r\n"
                                     "AuthoriZation: Bearer client-key\r\n"
                                     "Accept-Encoding: gzip\r\n"
                                     "Proxy-Connection: keep-alive\r\n"
                                     "X-LLMUX-A: 1\r\n"
                                     "Content-Encoding: identity\r\n"
                                     "PROXY-AUTHORIZATION: Basic eA==\r\n"
                                     "x-llmux-something-longer: 1\r\n"
                                     "Xe: 2\r\n"
                                     "HOSS: 4\r\n"
                                     "Cookiz: 6\r\n"
                                     "Trailez: 7\r\n"
                                     "X-Llmux: 7b\r\n"
                                     "Connectioz: 10\r\n"
                                     "X-LLMUXZ-A: 10b\r\n"
                                     "X-Request-Ix: 12\r\n"
                                     "Authorizatioz: 13\r\n"
                                     "Content-Lengtz: 14\r\n"
                                     "Accept-Encodinz: 15\r\n"
                                     "Proxy-Connectioz: 16\r\n"
                                     "Transfer-Encodinz: 17\r\n"
                                     "Proxy-Authorizatioz: 19\r\n",
                                     CHAT_BODY, &r),
                     0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);

    size_t len = 0;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    size_t hl;
    const char *ubody;
    assert_true(lx_harness_split(raw, len, &hl, &ubody));
    char v[256];
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (count_headers(raw, hl, dropped[i]) != 0)
            fail_msg("%s went upstream:\n%.*s", dropped[i], (int)hl, raw);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        assert_int_equal(count_headers(raw, hl, kept[i][0]), 1);
        assert_true(lx_harness_head_header(raw, hl, kept[i][0], v, sizeof(v)));
        assert_string_equal(v, kept[i][1]);
    }
    /* llmux's own, once each */
    assert_int_equal(count_headers(raw, hl, "host"), 1);
    assert_int_equal(count_headers(raw, hl, "content-type"), 1);
    assert_int_equal(count_headers(raw, hl, "content-length"), 1);
    assert_int_equal(count_headers(raw, hl, "x-request-id"), 1);
    assert_int_equal(count_headers(raw, hl, "authorization"), 1); /* the provider's key */
    assert_null(strstr(raw, "client-key"));
    free(raw);
}

/* A body that already names the upstream model goes up byte for byte; the same id written with
 * an escape is replaced by its plain form. */
static void test_model_already_upstream(void **state)
{
    (void)state;
    static const char plain[] = "{\"model\" : \"text-embed\",\"input\":\"x\"}";
    static const char escaped[] = "{\"model\":\"text-\\u0065mbed\",\"input\":\"x\"}";
    static const char escaped_up[] = "{\"model\":\"text-embed\",\"input\":\"x\"}";
    const char *bodies[][2] = {{plain, plain}, {escaped, escaped_up}};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_post(H.port, "/v1/embeddings", "", bodies[i][0], &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
        size_t len = 0;
        char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
        assert_non_null(raw);
        size_t hl;
        const char *ubody;
        assert_true(lx_harness_split(raw, len, &hl, &ubody));
        assert_int_equal(len - hl, strlen(bodies[i][1]));
        assert_memory_equal(ubody, bodies[i][1], strlen(bodies[i][1]));
        free(raw);
    }
}

static void test_request_id_echoed(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions",
                                     "X-Request-Id: client-id-42\r\n", CHAT_BODY, &r),
                     0);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_true(lx_harness_resp_header(&r, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "client-id-42");
    lx_harness_resp_free(&r);

    size_t len;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    assert_true(lx_harness_head_header(raw, len, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "client-id-42");
    free(raw);

    char *line = lx_harness_log_wait(&H, "\"request_id\":\"client-id-42\"", 2000);
    assert_non_null(line);
    free(line);

    /* an error answered by llmux itself echoes it too */
    assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", "X-Request-Id: err-id-7\r\n",
                                     "{\"model\":\"no/such-model\"}", &r),
                     0);
    assert_true(lx_harness_is_error(&r, 404));
    assert_true(lx_harness_resp_header(&r, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "err-id-7");
    lx_harness_resp_free(&r);
}

static void test_request_id_generated(void **state)
{
    (void)state;
    char ids[2][128];
    for (int i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, CHAT_BODY, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(lx_harness_resp_header(&r, "x-request-id", ids[i], sizeof(ids[i])));
        assert_true(strlen(ids[i]) >= 8);
        lx_harness_resp_free(&r);

        size_t len;
        char v[128];
        char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
        assert_non_null(raw);
        assert_true(lx_harness_head_header(raw, len, "x-request-id", v, sizeof(v)));
        assert_string_equal(v, ids[i]); /* the upstream sees the id the client gets */
        free(raw);

        char needle[160];
        snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", ids[i]);
        char *line = lx_harness_log_wait(&H, needle, 2000);
        assert_non_null(line);
        free(line);
    }
    assert_string_not_equal(ids[0], ids[1]);
}

static void test_access_log_line(void **state)
{
    (void)state;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-line-1\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(CHAT_BODY), CHAT_BODY);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_request(H.port, req, (size_t)n, &r), 0);
    assert_int_equal(r.status, 200);

    char *line = lx_harness_log_wait(&H, "\"request_id\":\"log-line-1\"", 2000);
    assert_non_null(line);
    assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
    char s[256];
    double d;
    assert_true(lx_harness_json_str(line, "time", s, sizeof(s)));
    assert_true(strlen(s) >= 20 && s[4] == '-' && s[10] == 'T');
    assert_true(lx_harness_json_str(line, "method", s, sizeof(s)));
    assert_string_equal(s, "POST");
    assert_true(lx_harness_json_str(line, "path", s, sizeof(s)));
    assert_string_equal(s, "/v1/chat/completions");
    assert_true(lx_harness_json_num(line, "status", &d));
    assert_true(d == 200.0);
    assert_true(lx_harness_json_num(line, "bytes_in", &d));
    assert_true(d == (double)n);
    assert_true(lx_harness_json_num(line, "bytes_out", &d));
    assert_true(d == (double)r.wire_len);
    char want[128];
    snprintf(want, sizeof(want), "http://127.0.0.1:%u", lx_mock_port(H.mock[0]));
    assert_true(lx_harness_json_str(line, "upstream", s, sizeof(s)));
    assert_string_equal(s, want);
    assert_true(lx_harness_json_num(line, "attempts", &d));
    assert_true(d == 1.0);
    assert_true(lx_harness_json_num(line, "duration_ms", &d));
    assert_true(d >= 0.0 && d < 10000.0);
    double connect_ms, fb_ms;
    assert_true(lx_harness_json_num(line, "upstream_connect_ms", &connect_ms));
    assert_true(lx_harness_json_num(line, "first_byte_ms", &fb_ms));
    assert_true(connect_ms >= 0.0 && fb_ms >= connect_ms && fb_ms < 10000.0);
    free(line);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_log_count(&H, "log-line-1"), 1);

    /* a request llmux answers itself is logged too, once */
    n = snprintf(req, sizeof(req),
                 "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-h\r\n\r\n");
    assert_int_equal(lx_harness_request(H.port, req, (size_t)n, &r), 0);
    assert_int_equal(r.status, 200);
    line = lx_harness_log_wait(&H, "\"request_id\":\"log-h\"", 2000);
    assert_non_null(line);
    assert_true(lx_harness_json_str(line, "path", s, sizeof(s)));
    assert_string_equal(s, "/healthz");
    assert_true(lx_harness_json_num(line, "status", &d));
    assert_true(d == 200.0);
    assert_true(lx_harness_json_num(line, "bytes_out", &d));
    assert_true(d == (double)r.wire_len);
    free(line);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_log_count(&H, "log-h"), 1);
}

static void test_body_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int status;
        const char *message_part;
    } cases[] = {
        {"{\"model\":", 400, NULL},
        {"not json at all", 400, NULL},
        {"{\"model\":\"pub/model-a\",\"messages\":[}", 400, NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "model"},
        {"{\"model\":\"no/such-model\",\"messages\":[]}", 404, "no/such-model"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, cases[i].body, &r),
                         0);
        assert_true(lx_harness_is_error(&r, cases[i].status));
        char msg[512];
        assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
        if (cases[i].message_part != NULL)
            assert_non_null(strstr(msg, cases[i].message_part));
        lx_harness_resp_free(&r);
    }
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

/* GET /v1/models/{id}, as OpenAI's client.models.retrieve() calls it: the id with its '/' as
 * it is or percent-encoded (the SDK's way), the same object as in the list; an unknown id is a
 * 404 in the API's envelope. */
static void test_model_retrieve(void **state)
{
    (void)state;
    lx_harness_resp_t r, list;
    assert_int_equal(lx_harness_get(H.port, "/v1/models", &list), 0);
    static const char *const paths[] = {"/v1/models/pub/model-a", "/v1/models/pub%2Fmodel-a",
                                        "/api/v1/models/pub/model-a",
                                        "/api/v1/models/pub%2fmodel-a"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(lx_harness_get(H.port, paths[i], &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(strncmp(r.body, "{\"id\":\"pub/model-a\",", 20) == 0);
        assert_non_null(strstr(list.body, r.body));
        char ct[64];
        assert_true(lx_harness_resp_header(&r, "content-type", ct, sizeof(ct)));
        assert_string_equal(ct, "application/json");
        lx_harness_resp_free(&r);
    }
    lx_harness_resp_free(&list);
    assert_int_equal(lx_harness_get(H.port, "/v1/models/pub/model-b", &r), 0);
    assert_true(lx_harness_is_error(&r, 404));
    assert_non_null(strstr(r.body, "\"param\":\"model\",\"code\":\"model_not_found\""));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_get(H.port, "/api/v1/models/text-embed/x", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 404));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_get(H.port, "/v1/models/bad%zz", &r), 0);
    assert_true(lx_harness_is_error(&r, 400));
    lx_harness_resp_free(&r);
    /* no id is no route; another method is refused */
    assert_int_equal(lx_harness_get(H.port, "/v1/models/", &r), 0);
    assert_true(lx_harness_is_error(&r, 404));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_post(H.port, "/v1/models/pub/model-a", NULL, "{}", &r), 0);
    assert_true(lx_harness_is_error(&r, 405));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

/* The 404 of an unknown model in each API's envelope, the name escaped once: é as it is, a NUL
 * as \u0000 (the message used to stop at the NUL), and OpenAI's code and param. */
static void test_unknown_model_envelopes(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"caf\xc3\xa9\\u0000x\",\"messages\":[]}",
        "{\"model\":\"caf\\u00e9\\u0000x\",\"messages\":[]}",
        "{\"models\":[\"caf\\u00e9\\u0000x\"],\"messages\":[]}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions", NULL, bodies[i], &r), 0);
        assert_true(lx_harness_is_error(&r, 404));
        if (strstr(r.body, "\"message\":\"model 'caf\xc3\xa9\\u0000x' is not available on "
                           "this gateway\"") == NULL) {
            fprintf(stderr, "%s\n", r.body);
            fail();
        }
        assert_non_null(strstr(r.body, "\"param\":\"model\",\"code\":\"model_not_found\"}}"));
        lx_harness_resp_free(&r);

        assert_int_equal(lx_harness_post(H.port, "/api/v1/chat/completions", NULL, bodies[i], &r),
                         0);
        assert_true(lx_harness_is_or_error(&r, 404));
        assert_non_null(strstr(r.body, "{\"error\":{\"code\":404,\"message\":\"model 'caf\xc3\xa9"
                                       "\\u0000x' is not available on this gateway\",\"metadata\":"
                                       "{\"error_type\":\"not_found\"}}}"));
        lx_harness_resp_free(&r);
    }
    /* the same rule for llmux's other errors: by the path's API */
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_post(H.port, "/api/v1/chat/completions", NULL, "{\"model\":", &r),
                     0);
    assert_true(lx_harness_is_or_error(&r, 400));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_get(H.port, "/api/v1/nothing", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 404));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_harness_get(H.port, "/v1/nothing", &r), 0);
    assert_true(lx_harness_is_error(&r, 404));
    assert_non_null(strstr(r.body, "\"code\":null"));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), 0);
}

/* ---- a provider that echoes llmux's request (defect 8) ---- */

static const char ECHO_KEY[] = "sk-echo-provider-0123456789abcdef";
static const char ECHO_TOKEN[] = "org-token-from-the-environment-42";

/* What a provider that echoes the request head in its error says; the message also tries to
 * forge a log line and clear the operator's terminal. */
#define ECHO_BODY                                                                                  \
    "{\"error\":{\"message\":\"bad request: Authorization: Bearer sk-echo-provider-0123456789abc"  \
    "def, X-Org-Token: org-token-from-the-environment-42\\n2026-01-01T00:00:00.000Z [error] "      \
    "admin key accepted\\u001b[2J\\u001b]0;owned\\u0007\",\"type\":\"invalid_request_error\","     \
    "\"param\":\"sk-echo-provider-0123456789abcdef\",\"code\":\"bad_header\"}}"

static const char ECHO_CONFIG[] = "listen: 127.0.0.1:0\n"
                                  "workers: 1\n"
                                  "timeouts:\n"
                                  "  shutdown: 200ms\n"
                                  "providers:\n"
                                  "  - name: echo\n"
                                  "    base_url: http://127.0.0.1:@RAW@/v1\n"
                                  "    api_key: ${LX_TEST_ECHO_KEY}\n"
                                  "    headers:\n"
                                  "      X-Org-Token: ${LX_TEST_ECHO_TOKEN}\n"
                                  "models:\n"
                                  "  - id: echo/model\n"
                                  "    context_length: 4096\n"
                                  "    providers: [{provider: echo}]\n"
                                  "auth: none\n"
                                  "log:\n"
                                  "  access_log: @LOG@\n"
                                  "  level: info\n";

/* The error log (stderr) while <fn> runs, in a temporary file. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/lx_test_stderr_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    fn();
    lx_harness_sleep_ms(100); /* the worker logs when the request ends */
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    FILE *f = fdopen(fd, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    return buf;
}

static void echo_requests(void)
{
    static const char body[] = "{\"model\":\"echo/model\",\"messages\":[]}";
    static const char *const paths[] = {"/v1/chat/completions", "/api/v1/chat/completions"};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_post(H.port, paths[i], NULL, body, &r), 0);
        assert_true(lx_harness_is_error_for(&r, 400, paths[i]));
        if (strstr(r.body, "0123456789") != NULL || strstr(r.body, "environment-42") != NULL) {
            fprintf(stderr, "a secret reached the client: %s\n", r.body);
            fail();
        }
        /* the reason stays readable, the secrets redacted where they were */
        assert_non_null(strstr(r.body, "bad request: Authorization: Bearer [redacted], "
                                       "X-Org-Token: [redacted]\\n2026-01-01"));
        if (i == 0) /* OpenAI's envelope passes the provider's code and param on */
            assert_non_null(strstr(r.body, "\"param\":\"[redacted]\",\"code\":\"bad_header\""));
        else
            assert_non_null(strstr(r.body, "\"provider_code\":\"bad_header\""));
        lx_harness_resp_free(&r);
    }
}

static void test_provider_echo_redacted(void **state)
{
    (void)state;
    char reply[2048];
    snprintf(reply, sizeof(reply),
             "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(ECHO_BODY), ECHO_BODY);
    lx_harness_setenv("LX_TEST_ECHO_KEY", ECHO_KEY);
    lx_harness_setenv("LX_TEST_ECHO_TOKEN", ECHO_TOKEN);
    lx_harness_opts_t o = {.raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = reply};
    assert_int_equal(lx_harness_start(&H, &o, ECHO_CONFIG), 0);
    char *log = capture_stderr(echo_requests);
    /* the provider did receive them: the key is used, only never repeated */
    size_t len;
    char *raw = lx_harness_raw_last(H.raw, &len);
    assert_non_null(raw);
    assert_non_null(strstr(raw, "Authorization: Bearer sk-echo-provider-0123456789abcdef\r\n"));
    assert_non_null(strstr(raw, "X-Org-Token: org-token-from-the-environment-42\r\n"));
    free(raw);
    lx_harness_stop(&H);

    /* the error log: the provider's text is there, escaped, one line per event, and no
     * secret, no terminal control and no forged line */
    if (strstr(log, "admin key accepted") == NULL || strstr(log, "0123456789") != NULL ||
        strstr(log, "environment-42") != NULL || strchr(log, '\x1b') != NULL ||
        strchr(log, '\x07') != NULL || strstr(log, "\n2026-01-01T00:00:00.000Z") != NULL) {
        fprintf(stderr, "the error log:\n%s\n", log);
        fail();
    }
    assert_non_null(strstr(log, "Bearer [redacted], X-Org-Token: [redacted]\\n2026-01-01T00:00:"
                                "00.000Z [error] admin key accepted\\u001b[2J"));
    free(log);
}

/* ---- answers without a body ---- */

static const char RAW_CONFIG[] = "listen: 127.0.0.1:0\n"
                                 "workers: 1\n"
                                 "timeouts:\n"
                                 "  shutdown: 200ms\n"
                                 "providers:\n"
                                 "  - {name: raw, base_url: \"http://127.0.0.1:@RAW@/v1\"}\n"
                                 "models:\n"
                                 "  - id: raw/model\n"
                                 "    context_length: 4096\n"
                                 "    providers: [{provider: raw}]\n"
                                 "auth: none\n"
                                 "log: {access_log: \"@LOG@\"}\n";

/* A provider's <reply> to a plain and to a streamed request: the client's head must have no
 * body framing but, when <allowed_length> is given, a Content-Length of that value (or none),
 * and nothing may follow it (a stray last chunk would be read as the start of the next answer
 * on the connection). */
static void bodiless(const char *reply, int status, const char *allowed_length)
{
    lx_harness_opts_t o = {.raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = reply};
    assert_int_equal(lx_harness_start(&H, &o, RAW_CONFIG), 0);
    static const char *const bodies[] = {
        "{\"model\":\"raw/model\",\"messages\":[]}",
        "{\"model\":\"raw/model\",\"stream\":true,\"messages\":[]}"};
    for (size_t i = 0; i < 2; i++) {
        lx_harness_conn_t c;
        assert_int_equal(lx_harness_connect(&c, H.port), 0);
        char req[512];
        snprintf(req, sizeof(req),
                 "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(bodies[i]), bodies[i]);
        assert_int_equal(lx_harness_send_str(&c, req), 0);
        /* the head, then nothing: read what arrives within a moment */
        assert_true(lx_harness_wait_bytes(&c, 1, 2000));
        lx_harness_sleep_ms(100);
        lx_harness_wait_bytes(&c, c.len + 1, 50);
        size_t head_len;
        const char *after;
        assert_true(lx_harness_split(c.buf, c.len, &head_len, &after));
        char want[32], v[64];
        snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
        assert_true(strncmp(c.buf, want, strlen(want)) == 0);
        bool has_length = lx_harness_head_header(c.buf, head_len, "content-length", v, sizeof(v));
        char t[64];
        bool te = lx_harness_head_header(c.buf, head_len, "transfer-encoding", t, sizeof(t));
        if (te || (has_length && (allowed_length == NULL || strcmp(v, allowed_length) != 0)) ||
            head_len != c.len) {
            fprintf(stderr, "the answer to a %d: [%.*s]\n", status, (int)c.len, c.buf);
            fail();
        }
        lx_harness_close(&c);
    }
    lx_harness_stop(&H);
}

static void test_no_content_relayed(void **state)
{
    (void)state;
    /* with or without a (forbidden) Content-Length, with a content type: none of it, no body */
    bodiless("HTTP/1.1 204 No Content\r\n\r\n", 204, NULL);
    bodiless("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, NULL);
    bodiless("HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n\r\n", 204, NULL);
    /* a 304 may say the length of what it stands for, and has no body either */
    bodiless("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, "10");
    bodiless("HTTP/1.1 304 Not Modified\r\n\r\n", 304, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_proxied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_retrieve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewritten_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_already_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id_echoed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id_generated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_log_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_model_envelopes, setup, teardown),
        cmocka_unit_test(test_provider_echo_redacted),
        cmocka_unit_test(test_no_content_relayed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
