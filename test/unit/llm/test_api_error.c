/*
 * test_api_error.c - the error envelopes of both APIs (OpenAI's under /v1, OpenRouter's under
 * /api/v1), the stream error events, the status tables (their reason phrases: test/unit/http/
 * test_http_reason.c), reading a provider's error body, the
 * JSON escaper, and the secrets redacted from every message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "core/status.h"
#include "llm/api_error.h"
#include "llm/body.h"
#include "obs/log.h"

static const struct {
    int status;
    const char *type;
    const char *error_type;
} table[] = {
    {400, "invalid_request_error", "invalid_request"},
    {401, "authentication_error", "authentication"},
    {402, "insufficient_quota", "payment_required"},
    {403, "permission_error", "permission_denied"},
    {404, "invalid_request_error", "not_found"},
    {405, "invalid_request_error", "invalid_request"},
    {408, "timeout_error", "timeout"},
    {411, "invalid_request_error", "invalid_request"},
    {412, "invalid_request_error", "precondition_failed"},
    {413, "invalid_request_error", "payload_too_large"},
    {415, "invalid_request_error", "invalid_request"},
    {422, "invalid_request_error", "unprocessable"},
    {429, "rate_limit_error", "rate_limit_exceeded"},
    {431, "invalid_request_error", "payload_too_large"},
    {500, "server_error", "server"},
    {501, "server_error", "server"},
    {502, "server_error", "provider_unavailable"},
    {503, "server_error", "provider_overloaded"},
    {504, "timeout_error", "timeout"},
    {524, "timeout_error", "timeout"},
    {529, "server_error", "provider_overloaded"},
    {418, "invalid_request_error", "invalid_request"},
    {599, "server_error", "server"},
};

/* The envelope must be one JSON object the body scanner accepts. */
static void assert_json(const char *s, size_t len)
{
    lx_body_scan_t scan;
    if (lx_body_scan(s, len, &scan) != 0)
        fail_msg("not JSON: %.*s (%s)", (int)len, s, scan.error);
}

/* An SSE event "data: <object>\n\n" whose object is JSON (jsmn, strict: the body scanner would
 * take its "provider" member for llmux's own). */
static void assert_event(const char *s, size_t len)
{
    assert_true(len > 8);
    assert_memory_equal(s, "data: ", 6);
    assert_memory_equal(s + len - 2, "\n\n", 2);
    assert_null(memchr(s, '\n', len - 2));
    jsmn_parser p;
    jsmntok_t t[128];
    jsmn_init(&p);
    int n = jsmn_parse(&p, s + 6, len - 8, t, 128);
    if (n < 1 || t[0].type != JSMN_OBJECT || (size_t)t[0].end != len - 8)
        fail_msg("not one JSON object: %.*s", (int)len, s);
}

/* OpenAI's code for a status without more context. */
static const char *default_code(int status)
{
    return status == 401   ? "\"invalid_api_key\""
           : status == 402 ? "\"insufficient_quota\""
           : status == 429 ? "\"rate_limit_exceeded\""
                           : "null";
}

static void test_every_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int st = table[i].status;
        assert_string_equal(lx_api_error_type(st), table[i].type);
        assert_string_equal(lx_api_error_default_type(st), table[i].error_type);
        char buf[512], want[512];
        /* /v1: OpenAI's four members, code a string or null */
        int n = lx_api_error_format(buf, sizeof(buf), LX_API_OPENAI, st, "boom", 4);
        snprintf(want, sizeof(want),
                 "{\"error\":{\"message\":\"boom\",\"type\":\"%s\",\"param\":null,\"code\":%s}}",
                 table[i].type, default_code(st));
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));
        assert_json(buf, (size_t)n);
        /* /api/v1: OpenRouter's numeric code and typed metadata */
        n = lx_api_error_format(buf, sizeof(buf), LX_API_OPENROUTER, st, "boom", 4);
        snprintf(
            want, sizeof(want),
            "{\"error\":{\"code\":%d,\"message\":\"boom\",\"metadata\":{\"error_type\":\"%s\"}}}",
            st, table[i].error_type);
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));
        assert_json(buf, (size_t)n);
    }
    assert_string_equal(lx_api_error_default_type(200), "unmapped");
    assert_null(lx_api_error_default_code(404));
    assert_null(lx_api_error_default_code(500));
}

static void test_kind(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        lx_api_kind_t kind;
    } paths[] = {
        {"/v1/chat/completions", LX_API_OPENAI},
        {"/v1/models/meta-llama/llama-3.1-8b-instruct", LX_API_OPENAI},
        {"/api/v1/chat/completions", LX_API_OPENROUTER},
        {"/api/v1/models", LX_API_OPENROUTER},
        {"/api/", LX_API_OPENROUTER},
        {"/api", LX_API_OPENAI},
        {"/apiv1/chat/completions", LX_API_OPENAI},
        {"/healthz", LX_API_OPENAI},
        {"", LX_API_OPENAI},
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        assert_int_equal(lx_api_error_kind(paths[i].path, strlen(paths[i].path)), paths[i].kind);
}

static void test_format_full(void **state)
{
    (void)state;
    char buf[1024];
    /* OpenAI: the given code and param, escaped; no type of OpenRouter's */
    lx_api_error_t e = {.status = 404,
                        .message = "model 'x' is not available",
                        .message_len = 26,
                        .error_type = "not_found",
                        .code = "model_not_found",
                        .param = "mo\"del"};
    int n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENAI, &e);
    assert_string_equal(buf, "{\"error\":{\"message\":\"model 'x' is not available\",\"type\":"
                             "\"invalid_request_error\",\"param\":\"mo\\\"del\",\"code\":"
                             "\"model_not_found\"}}");
    assert_int_equal(n, (int)strlen(buf));
    /* OpenRouter: code is the status, the error type is metadata's */
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENROUTER, &e);
    assert_string_equal(buf, "{\"error\":{\"code\":404,\"message\":\"model 'x' is not available\","
                             "\"metadata\":{\"error_type\":\"not_found\"}}}");
    /* an error_type needing escapes is escaped too */
    e = (lx_api_error_t){.status = 500, .message = "m", .message_len = 1, .error_type = "a\"b"};
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENROUTER, &e);
    assert_non_null(strstr(buf, "\"error_type\":\"a\\\"b\""));
    assert_json(buf, (size_t)n);
    /* no message at all */
    e = (lx_api_error_t){.status = 400, .error_type = "context_length_exceeded"};
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENROUTER, &e);
    assert_string_equal(buf,
                        "{\"error\":{\"code\":400,\"message\":\"\",\"metadata\":{\"error_type\":"
                        "\"context_length_exceeded\"}}}");
    /* more metadata: after error_type under /api/v1, alone in metadata under /v1 */
    static const char meta[] = "\"attempts\":[{\"provider\":\"p\",\"status\":503}]";
    e = (lx_api_error_t){.status = 503,
                         .message = "down",
                         .message_len = 4,
                         .error_type = "provider_overloaded",
                         .meta = meta,
                         .meta_len = sizeof(meta) - 1};
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENROUTER, &e);
    assert_string_equal(buf, "{\"error\":{\"code\":503,\"message\":\"down\",\"metadata\":{"
                             "\"error_type\":\"provider_overloaded\",\"attempts\":[{\"provider\":"
                             "\"p\",\"status\":503}]}}}");
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENAI, &e);
    assert_string_equal(buf, "{\"error\":{\"message\":\"down\",\"type\":\"server_error\",\"param\":"
                             "null,\"code\":null,\"metadata\":{\"attempts\":[{\"provider\":\"p\","
                             "\"status\":503}]}}}");
    assert_json(buf, (size_t)n);
    /* a code too long to be one is null */
    char longcode[400];
    memset(longcode, 'c', sizeof(longcode) - 1);
    longcode[sizeof(longcode) - 1] = '\0';
    e = (lx_api_error_t){.status = 400, .message = "m", .message_len = 1, .code = longcode};
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENAI, &e);
    assert_non_null(strstr(buf, "\"code\":null}}"));
}

/* The model name of the defect report: é and a NUL byte, escaped once, never cut. */
static void test_message_bytes(void **state)
{
    (void)state;
    char buf[512];
    static const char msg[] = "model 'caf\xc3\xa9' and 'a\0b' are unknown";
    for (int k = 0; k < 2; k++) {
        int n = lx_api_error_format(buf, sizeof(buf), k ? LX_API_OPENROUTER : LX_API_OPENAI, 404,
                                    msg, sizeof(msg) - 1);
        assert_true(n > 0);
        assert_non_null(strstr(buf, "\"model 'caf\xc3\xa9' and 'a\\u0000b' are unknown\""));
        assert_null(strstr(buf, "\\u00c3"));
        assert_json(buf, (size_t)n);
    }
}

static void test_events(void **state)
{
    (void)state;
    char buf[1200];
    lx_api_error_t e = {.status = 502, .message = "the provider reset", .message_len = 18};
    lx_api_event_t ev = {.id = "chatcmpl-abc",
                         .id_len = 12,
                         .created = 1739458867,
                         .model = "meta-llama/llama-3.1-8b-instruct",
                         .provider = "mock-a"};
    /* /api/v1: a chunk with the stream's identity, the error, finish_reason "error" */
    int n = lx_api_error_format_event(buf, sizeof(buf), LX_API_OPENROUTER, &e, &ev);
    assert_string_equal(buf,
                        "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1739458867,\"model\":\"meta-llama/llama-3.1-8b-instruct\","
                        "\"provider\":\"mock-a\",\"error\":{\"code\":502,\"message\":\"the "
                        "provider reset\",\"metadata\":{\"error_type\":\"provider_"
                        "unavailable\"}},\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                        "\"\"},\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}"
                        "]}\n\n");
    assert_int_equal(n, (int)strlen(buf));
    assert_event(buf, (size_t)n);
    /* /v1: OpenAI's bare envelope, no choices */
    n = lx_api_error_format_event(buf, sizeof(buf), LX_API_OPENAI, &e, &ev);
    assert_string_equal(buf, "data: {\"error\":{\"message\":\"the provider reset\",\"type\":"
                             "\"server_error\",\"param\":null,\"code\":null}}\n\n");
    assert_event(buf, (size_t)n);
    /* a message with line breaks stays inside its one data line */
    e = (lx_api_error_t){.status = 504, .message = "a\n\ndata: [DONE]\n\n", .message_len = 17};
    n = lx_api_error_format_event(buf, sizeof(buf), LX_API_OPENROUTER, &e, &ev);
    assert_event(buf, (size_t)n);
    /* the message is cut, never the event */
    char big[3000];
    memset(big, 'x', sizeof(big));
    e = (lx_api_error_t){.status = 502, .message = big, .message_len = sizeof(big)};
    for (size_t cap = 400; cap < 1100; cap += 7) {
        n = lx_api_error_format_event(buf, cap, LX_API_OPENROUTER, &e, &ev);
        assert_true(n > 0 && (size_t)n < cap);
        assert_event(buf, (size_t)n);
        assert_non_null(strstr(buf, "x...\""));
    }
}

static void test_parse_upstream(void **state)
{
    (void)state;
    lx_api_upstream_error_t up;
    static const char openai[] = "{\"error\":{\"message\":\"This model's maximum context length "
                                 "is 8\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
                                 "\"code\":\"context_length_exceeded\"}}";
    assert_true(lx_api_error_parse_upstream(openai, sizeof(openai) - 1, &up));
    assert_int_equal(up.code_len, 23);
    assert_memory_equal(up.code, "context_length_exceeded", 23);
    assert_int_equal(up.param_len, 8);
    assert_memory_equal(up.param, "messages", 8);
    /* vLLM: a numeric code, at the top level, is not OpenAI's code */
    static const char vllm[] =
        "{\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\","
        "\"param\":null,\"code\":400}";
    assert_true(lx_api_error_parse_upstream(vllm, sizeof(vllm) - 1, &up));
    assert_null(up.code);
    assert_null(up.param);
    static const char numeric[] =
        "{\"error\":{\"code\":429,\"param\":null,\"x\":[1,{\"code\":\"no\"}]}}";
    assert_true(lx_api_error_parse_upstream(numeric, sizeof(numeric) - 1, &up));
    assert_null(up.code);
    assert_null(up.param);
    /* escapes are kept for the caller to decode */
    static const char esc[] = "{\"a\":{\"error\":1},\"error\":{\"code\":\"a\\\"b\"}}";
    assert_true(lx_api_error_parse_upstream(esc, sizeof(esc) - 1, &up));
    assert_int_equal(up.code_len, 4);
    assert_memory_equal(up.code, "a\\\"b", 4);
    /* not JSON, not an object, nothing */
    assert_false(lx_api_error_parse_upstream("Internal Server Error", 21, &up));
    assert_false(lx_api_error_parse_upstream("[1]", 3, &up));
    assert_false(lx_api_error_parse_upstream(NULL, 0, &up));
    static const char str[] = "{\"error\":\"model not found\"}";
    assert_true(lx_api_error_parse_upstream(str, sizeof(str) - 1, &up));
    assert_null(up.code);
}

static void test_escape(void **state)
{
    (void)state;
    char out[128];
    size_t consumed;
    const char in[] = "q\"b\\s\b\f\n\r\t\x01\x1f\x7f/é€😀";
    size_t n = lx_api_error_escape(out, sizeof(out), in, sizeof(in) - 1, &consumed);
    const char want[] = "q\\\"b\\\\s\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f/é€😀";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(consumed, sizeof(in) - 1);
    assert_int_equal(lx_api_error_escaped_len(in, sizeof(in) - 1), n);

    /* a NUL byte is data */
    n = lx_api_error_escape(out, sizeof(out), "a\0b", 3, NULL);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a\\u0000b", 8);

    /* invalid UTF-8: each bad byte becomes U+FFFD */
    static const struct {
        const char *in;
        const char *want;
    } bad[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"\x80z", "\xef\xbf\xbdz"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                                 /* overlong '/' */
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > 10FFFF */
        {"\xc3", "\xef\xbf\xbd"},                   /* truncated at the end */
        {"\xe2\x82z", "\xef\xbf\xbd\xef\xbf\xbdz"}, /* truncated in the middle */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},   /* valid 4-byte */
        {"\xef\xbf\xbf", "\xef\xbf\xbf"},           /* valid U+FFFF */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = lx_api_error_escape(out, sizeof(out), bad[i].in, strlen(bad[i].in), &consumed);
        assert_int_equal(n, strlen(bad[i].want));
        assert_memory_equal(out, bad[i].want, n);
        assert_int_equal(consumed, strlen(bad[i].in));
    }

    /* truncation: never half an escape or half a character */
    n = lx_api_error_escape(out, 3, "ab\n", 3, &consumed);
    assert_int_equal(n, 2);
    assert_int_equal(consumed, 2);
    n = lx_api_error_escape(out, 5, "ab\x01", 3, &consumed);
    assert_int_equal(n, 2);
    n = lx_api_error_escape(out, 4, "a€", 4, &consumed);
    assert_int_equal(n, 4);
    n = lx_api_error_escape(out, 3, "a€", 4, &consumed);
    assert_int_equal(n, 1);
    assert_int_equal(consumed, 1);
    n = lx_api_error_escape(out, 0, "a", 1, &consumed);
    assert_int_equal(n, 0);
    assert_int_equal(consumed, 0);
}

static void test_format_truncation(void **state)
{
    (void)state;
    char msg[600];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = "ab\"\n\xc3\xa9"[i % 6];
    for (int k = 0; k < 2; k++) {
        lx_api_kind_t kind = k ? LX_API_OPENROUTER : LX_API_OPENAI;
        const char *after = k ? "...\",\"metadata\":{\"error_type\":\"provider_unavailable\"}}}"
                              : "...\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        char empty[256];
        int base = lx_api_error_format(empty, sizeof(empty), kind, 502, "", 0);
        assert_true(base > 0);

        /* every capacity from the minimum up: always complete JSON, never past cap */
        for (size_t cap = (size_t)base + 1; cap < 1200; cap++) {
            char buf[1300];
            memset(buf, 'X', sizeof(buf));
            int n = lx_api_error_format(buf, cap, kind, 502, msg, sizeof(msg));
            assert_true(n > 0);
            assert_true((size_t)n < cap);
            assert_int_equal(buf[n], '\0');
            assert_int_equal(buf[cap], 'X');
            assert_json(buf, (size_t)n);
            size_t full = lx_api_error_escaped_len(msg, sizeof(msg));
            if ((size_t)n < (size_t)base + full && cap > (size_t)base + 3)
                assert_non_null(strstr(buf, after));
        }
        /* too small for the envelope */
        char tiny[32];
        assert_int_equal(lx_api_error_format(tiny, sizeof(tiny), kind, 502, "x", 1), LX_ETOOBIG);
        char big[256];
        assert_int_equal(lx_api_error_format(big, (size_t)base, kind, 502, "", 0), LX_ETOOBIG);
        assert_int_equal(lx_api_error_format(big, (size_t)base + 1, kind, 502, "", 0), base);
    }
}

/* Defect 8: a provider's error text echoing llmux's request to it (its Authorization header)
 * must not carry the key to the client. Runs last: the secrets set only grows. */
static void test_redaction(void **state)
{
    (void)state;
    static const char key[] = "sk-provider-0123456789abcdef";
    char buf[2048];
    /* before the key is a secret, it passes (this is what the defect looked like) */
    static const char echo[] = "provider p returned HTTP 400: bad header Authorization: Bearer "
                               "sk-provider-0123456789abcdef in your request";
    int n = lx_api_error_format(buf, sizeof(buf), LX_API_OPENAI, 400, echo, sizeof(echo) - 1);
    assert_non_null(strstr(buf, key));
    assert_int_equal(lx_log_secret_add(key, sizeof(key) - 1), 0);
    for (int k = 0; k < 2; k++) {
        lx_api_kind_t kind = k ? LX_API_OPENROUTER : LX_API_OPENAI;
        n = lx_api_error_format(buf, sizeof(buf), kind, 400, echo, sizeof(echo) - 1);
        assert_null(strstr(buf, "0123456789"));
        assert_non_null(strstr(buf, "Authorization: Bearer [redacted] in your request"));
        assert_json(buf, (size_t)n);
        /* cut short by an earlier truncation, followed by more text */
        static const char cut[] = "echo: Bearer sk-provider-01234; trying the next provider";
        n = lx_api_error_format(buf, sizeof(buf), kind, 502, cut, sizeof(cut) - 1);
        assert_non_null(strstr(buf, "echo: Bearer [redacted]; trying"));
        /* cut at the very end of the message */
        n = lx_api_error_format(buf, sizeof(buf), kind, 502, echo, 80);
        assert_null(strstr(buf, "sk-provider-0"));
        assert_non_null(strstr(buf, "Bearer [redacted]\""));
        /* the envelope's own cut never splits a replacement or leaves part of the key */
        for (size_t cap = 120; cap < 300; cap++) {
            n = lx_api_error_format(buf, cap, kind, 400, echo, sizeof(echo) - 1);
            assert_true(n > 0);
            assert_null(strstr(buf, "sk-provider-0"));
            assert_null(strstr(buf, "[redac]"));
            assert_json(buf, (size_t)n);
        }
    }
    /* in a provider's code or param, and in a stream's error event */
    lx_api_error_t e = {.status = 400, .message = "m", .message_len = 1, .code = key, .param = key};
    n = lx_api_error_format_full(buf, sizeof(buf), LX_API_OPENAI, &e);
    assert_string_equal(buf, "{\"error\":{\"message\":\"m\",\"type\":\"invalid_request_error\","
                             "\"param\":\"[redacted]\",\"code\":\"[redacted]\"}}");
    lx_api_event_t ev = {.id = "x", .id_len = 1, .created = 1, .model = "m", .provider = "p"};
    e = (lx_api_error_t){.status = 502, .message = echo, .message_len = sizeof(echo) - 1};
    n = lx_api_error_format_event(buf, sizeof(buf), LX_API_OPENROUTER, &e, &ev);
    assert_null(strstr(buf, "0123456789"));
    assert_event(buf, (size_t)n);
    /* a value shorter than LX_LOG_SECRET_MIN is no secret: it would match ordinary words */
    assert_int_equal(lx_log_secret_add("EMPTY", 5), 0);
    n = lx_api_error_format(buf, sizeof(buf), LX_API_OPENAI, 400, "EMPTY", 5);
    assert_non_null(strstr(buf, "\"EMPTY\""));
}

/* The provider's body is read with core/json: exactly one JSON object of at most 256 tokens,
 * else nothing; the first "error" member that is an object is the one read. */
static void test_parse_upstream_strict(void **state)
{
    (void)state;
    lx_api_upstream_error_t up;
    static const char two[] =
        "{\"error\":\"x\",\"error\":{\"code\":\"a\",\"code\":\"b\",\"code\":1,"
        "\"param\":\"p\"},\"error\":{\"code\":\"c\"}}";
    assert_true(lx_api_error_parse_upstream(two, sizeof(two) - 1, &up));
    assert_int_equal(up.code_len, 1);
    assert_memory_equal(up.code, "b", 1);
    assert_int_equal(up.param_len, 1);
    /* nested "error" objects and members of other objects are not the top-level one */
    static const char nested[] = "{\"detail\":{\"error\":{\"code\":\"n\"}},\"error\":{\"x\":"
                                 "{\"code\":\"deep\"},\"param\":\"q\"}}";
    assert_true(lx_api_error_parse_upstream(nested, sizeof(nested) - 1, &up));
    assert_null(up.code);
    assert_int_equal(up.param_len, 1);
    /* stray bytes after the whole object keep what its error object said */
    static const char trailing[] = "{\"error\":{\"code\":\"a\",\"param\":\"p\"}} x";
    assert_true(lx_api_error_parse_upstream(trailing, sizeof(trailing) - 1, &up));
    assert_int_equal(up.code_len, 1);
    assert_int_equal(up.param_len, 1);
    /* cut short or broken after the error object but inside the root: nothing */
    static const char *const later[] = {
        "{\"error\":{\"code\":\"a\"},\"x\":tru", "{\"error\":{\"code\":\"a\"}",
        "{\"error\":{\"code\":\"a\"},\"a\":[}", "{\"error\":{\"code\":\"a\"},\"a\":\"\\q\"}",
        "{\"error\":{\"code\":\"a\"},\"x\":\"abc"};
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        assert_false(lx_api_error_parse_upstream(later[i], strlen(later[i]), &up));
        assert_null(up.code);
    }
    /* a raw control character in a string (unescaped by a sloppy provider) is content */
    static const char raw[] = "{\"error\":{\"message\":\"a\nb\x01\",\"code\":\"c\"}}";
    assert_true(lx_api_error_parse_upstream(raw, sizeof(raw) - 1, &up));
    assert_int_equal(up.code_len, 1);
    assert_memory_equal(up.code, "c", 1);
    /* wrong before or inside it: a missing comma, a body cut short inside it */
    static const char comma[] = "{\"error\":{\"code\":\"a\" \"param\":\"p\"}}";
    assert_false(lx_api_error_parse_upstream(comma, sizeof(comma) - 1, &up));
    assert_null(up.code);
    assert_false(lx_api_error_parse_upstream(two, 40, &up));
    assert_null(up.code);
    static const char ws[] = " \n{\"error\":{\"code\":\"a\"}}\r\n";
    assert_true(lx_api_error_parse_upstream(ws, sizeof(ws) - 1, &up));
    assert_int_equal(up.code_len, 1);
    /* 256 tokens are read, 257 are not */
    char big[2048];
    /* root, "error" key and object, "code" key and value: 5 tokens; each "k":0 adds 2 */
    size_t o = (size_t)snprintf(big, sizeof(big), "{\"error\":{\"code\":\"a\"");
    for (int k = 0; k < (256 - 5) / 2 - 1; k++) /* 5 + 2 * 124 = 253 tokens */
        o += (size_t)snprintf(big + o, sizeof(big) - o, ",\"k\":0");
    size_t base = o;
    o += (size_t)snprintf(big + o, sizeof(big) - o, ",\"k\":[0]}}"); /* 256 */
    assert_true(lx_api_error_parse_upstream(big, o, &up));
    assert_int_equal(up.code_len, 1);
    o = base + (size_t)snprintf(big + base, sizeof(big) - base, ",\"k\":[0,0]}}"); /* 257 */
    assert_false(lx_api_error_parse_upstream(big, o, &up));
    assert_null(up.code);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status),
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_format_full),
        cmocka_unit_test(test_message_bytes),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_parse_upstream),
        cmocka_unit_test(test_parse_upstream_strict),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_redaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
