/*
 * test_keys.c - stored keys end to end, on a real SQLite file: the management API (who may
 * call it, OpenRouter's shapes, bad input), a created key used for requests at once and
 * refused at once once deleted or disabled, /key with live usage, the model allowlist, the
 * budget (402 in OpenRouter's envelope), rate limits with x-ratelimit-* headers and
 * Retry-After on a moved clock, a daily reset at midnight UTC, /generation right after a
 * stream, /activity, and the plaintext key never in the store file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "gateway/auth.h"
#include "harness.h"

/* Prices make costs easy to follow: a prompt token costs 10 µ$, a completion token 20 µ$. */
#define CONFIG                                                                                     \
    "listen: 127.0.0.1:0\n"                                                                        \
    "workers: 2\n"                                                                                 \
    "timeouts:\n"                                                                                  \
    "  shutdown: 500ms\n"                                                                          \
    "providers:\n"                                                                                 \
    "  - name: mock-a\n"                                                                           \
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"                                                  \
    "models:\n"                                                                                    \
    "  - id: team/m\n"                                                                             \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - {provider: mock-a, price: {prompt: 10, completion: 20}}\n"                            \
    "  - id: other/x\n"                                                                            \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - {provider: mock-a, price: {prompt: 10, completion: 20}}\n"                            \
    "  - id: free/m\n"                                                                             \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - {provider: mock-a}\n"                                                                 \
    "auth:\n"                                                                                      \
    "  keys:\n"                                                                                    \
    "    - name: static\n"                                                                         \
    "      sha256: %s\n"                                                                           \
    "      priority: batch\n"                                                                      \
    "admin:\n"                                                                                     \
    "  sha256: %s\n"                                                                               \
    "  keys:\n"                                                                                    \
    "    - name: ops\n"                                                                            \
    "      sha256: %s\n"                                                                           \
    "limits:\n"                                                                                    \
    "  default_max_cost: 0.01\n"                                                                   \
    "store:\n"                                                                                     \
    "  path: @STORE@\n"                                                                            \
    "  commit_interval: 20ms\n"                                                                    \
    "log:\n"                                                                                       \
    "  access_log: @LOG@\n"                                                                        \
    "  level: error\n"

static lx_harness_t H;

/* The accounting clock, moved by the tests (µs); 0: the real one. */
static _Atomic int64_t fake_now;

static int64_t test_clock(void *arg)
{
    (void)arg;
    int64_t t = atomic_load(&fake_now);
    if (t != 0)
        return t;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void hex_of(const char *key, char out[65])
{
    uint8_t d[32];
    lx_auth_hash(key, strlen(key), d);
    lx_auth_hex(d, out);
}

static int setup(void **state)
{
    (void)state;
    char hs[65], ha[65], ho[65];
    hex_of("sk-static", hs);
    hex_of("sk-admin", ha);
    hex_of("sk-ops", ho);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), CONFIG, hs, ha, ho);
    atomic_store(&fake_now, 0);
    lx_clock_override(test_clock, NULL);
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, yaml);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    lx_clock_override(NULL, NULL);
    return 0;
}

/* ---- helpers ---- */

/* A request with method <m> to <path> with the key <key> (NULL: none) and a JSON body. */
static int call(const char *m, const char *path, const char *key, const char *body,
                lx_harness_resp_t *r)
{
    char *raw = malloc(strlen(body != NULL ? body : "") + 1024);
    assert_non_null(raw);
    int n = sprintf(raw, "%s %s HTTP/1.1\r\nHost: t\r\n", m, path);
    if (key != NULL)
        n += sprintf(raw + n, "Authorization: Bearer %s\r\n", key);
    if (body != NULL)
        n += sprintf(raw + n, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    else
        n += sprintf(raw + n, "\r\n");
    int rc = lx_harness_request(H.port, raw, (size_t)n, r);
    free(raw);
    return rc;
}

/* The string value of the first member <name> in <json> into <out>; false when absent. */
static bool json_str(const char *json, const char *name, char *out, size_t cap)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":\"", name);
    const char *p = strstr(json, pat);
    if (p == NULL)
        return false;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= cap)
        return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

/* The number value of the first member <name>, as text compared by the caller; -1e300 when
 * absent or not a number. */
static double json_num(const char *json, const char *name)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", name);
    const char *p = strstr(json, pat);
    if (p == NULL)
        return -1e300;
    p += strlen(pat);
    char *end;
    double d = strtod(p, &end);
    return end == p ? -1e300 : d;
}

/* Creates a key through the API with <fields> (JSON members after "name"); its plaintext
 * into <key> and its hash into <hash>. */
static void create_key(const char *name, const char *fields, char key[80], char hash[65])
{
    char body[2048];
    snprintf(body, sizeof(body), "{\"name\":\"%s\"%s%s}", name, fields[0] ? "," : "", fields);
    lx_harness_resp_t r;
    assert_int_equal(call("POST", "/api/v1/keys", "sk-admin", body, &r), 0);
    if (r.status != 201)
        fprintf(stderr, "create %s: %d %s\n", name, r.status, r.body);
    assert_int_equal(r.status, 201);
    assert_true(json_str(r.body, "key", key, 80));
    assert_true(json_str(r.body, "hash", hash, 65));
    lx_harness_resp_free(&r);
    char h[65];
    hex_of(key, h);
    assert_string_equal(h, hash); /* the hash is the key's SHA-256 */
}

static const char CHAT[] = "{\"model\":\"team/m\",\"max_tokens\":100,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";

static int chat(const char *key, const char *body, lx_harness_resp_t *r)
{
    return call("POST", "/api/v1/chat/completions", key, body != NULL ? body : CHAT, r);
}

static void set_now(int64_t unix_s)
{
    atomic_store(&fake_now, unix_s * 1000000);
}

/* ---- tests ---- */

static void test_management_access(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    assert_int_equal(call("GET", "/api/v1/keys", NULL, NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 401));
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/api/v1/keys", "sk-static", NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 403)); /* a client key: not allowed */
    assert_non_null(strstr(r.body, "management"));
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/api/v1/keys", "sk-nope", NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 401));
    lx_harness_resp_free(&r);
    /* admin.sha256 and a named management key both may */
    assert_int_equal(call("GET", "/api/v1/keys", "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "{\"data\":["));
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/v1/keys", "sk-ops", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    /* a management key makes no requests */
    assert_int_equal(chat("sk-ops", NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 403));
    lx_harness_resp_free(&r);
    /* wrong method */
    assert_int_equal(call("PUT", "/api/v1/keys", "sk-admin", "{}", &r), 0);
    assert_int_equal(r.status, 405);
    lx_harness_resp_free(&r);
}

static void test_create_use_delete(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("team-a", "\"limit\":5,\"limit_reset\":\"monthly\"", key, hash);
    assert_int_equal(strncmp(key, "sk-lx-v1-", 9), 0);
    assert_int_equal(strlen(key), 9 + 64);

    /* usable at once (the snapshot reaches every worker before the answer is read back) */
    lx_harness_resp_t r;
    int ok = 0;
    for (int i = 0; i < 100 && ok == 0; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        ok = r.status == 200;
        lx_harness_resp_free(&r);
        if (!ok)
            usleep(1000);
    }
    assert_true(ok);
    /* two more on both workers' connections */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }

    /* GET /key: its own record, usage counted live */
    assert_int_equal(call("GET", "/api/v1/key", key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "{\"data\":{"));
    assert_true(json_num(r.body, "limit") == 5);
    assert_true(json_num(r.body, "usage") > 0);
    assert_true(json_num(r.body, "limit_remaining") < 5);
    assert_non_null(strstr(r.body, "\"is_management_key\":false"));
    assert_non_null(strstr(r.body, "\"priority\":\"interactive\""));
    lx_harness_resp_free(&r);
    /* a configuration key's own priority */
    assert_int_equal(call("GET", "/api/v1/key", "sk-static", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"priority\":\"batch\""));
    lx_harness_resp_free(&r);

    /* GET /keys/{hash}: OpenRouter's Key */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/keys/%s", hash);
    assert_int_equal(call("GET", path, "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_true(json_str(r.body, "name", v, sizeof(v)));
    assert_string_equal(v, "team-a");
    assert_true(json_str(r.body, "limit_reset", v, sizeof(v)));
    assert_string_equal(v, "monthly");
    assert_true(json_str(r.body, "created_at", v, sizeof(v)));
    assert_int_equal(strlen(v), 20);  /* 2026-12-07T12:00:00Z */
    assert_null(strstr(r.body, key)); /* the plaintext is shown once, at creation */
    lx_harness_resp_free(&r);

    /* disable: refused at once; enable again */
    assert_int_equal(call("PATCH", path, "sk-admin", "{\"disabled\":true}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"disabled\":true"));
    lx_harness_resp_free(&r);
    bool refused = false;
    for (int i = 0; i < 100 && !refused; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        refused = r.status == 401;
        lx_harness_resp_free(&r);
        if (!refused)
            usleep(1000);
    }
    assert_true(refused);
    assert_int_equal(call("PATCH", path, "sk-admin", "{\"disabled\":false}", &r), 0);
    lx_harness_resp_free(&r);

    /* delete: gone from the API and from the request path */
    assert_int_equal(call("DELETE", path, "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"deleted\":true}");
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", path, "sk-admin", NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 404));
    lx_harness_resp_free(&r);
    refused = false;
    for (int i = 0; i < 100 && !refused; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        refused = r.status == 401;
        lx_harness_resp_free(&r);
        if (!refused)
            usleep(1000);
    }
    assert_true(refused);

    /* the store file holds the hash, never the plaintext */
    FILE *f = fopen(H.store_path, "rb");
    assert_non_null(f);
    static char data[1 << 22];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    assert_null(memmem(data, n, key + 9, 64));
}

static void test_allowlist(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("only-team", "\"models\":[\"team/*\"]", key, hash);
    usleep(100000);
    lx_harness_resp_t r;
    assert_int_equal(chat(key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    /* a model outside: 403 naming the rule */
    assert_int_equal(chat(key, "{\"model\":\"other/x\",\"messages\":[]}", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 403));
    assert_non_null(strstr(r.body, "allowlist"));
    lx_harness_resp_free(&r);
    /* a fallback entry outside is left out, not used */
    uint64_t before = lx_mock_requests(H.mock[0]);
    assert_int_equal(chat(key, "{\"models\":[\"other/x\",\"team/m\"],\"messages\":[]}", &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]), before + 1);
    size_t len;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    assert_non_null(strstr(raw, "\"model\":\"team/m\""));
    free(raw);
    assert_int_equal(chat(key, "{\"models\":[\"other/x\"],\"messages\":[]}", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 403));
    lx_harness_resp_free(&r);
}

/* The budget: each request reserves (prompt estimate × 10 µ$) + 100 × 20 µ$ and costs less;
 * admissions stop before the limit is passed, with a 402 that says why. */
static void test_budget(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("small", "\"limit\":0.01", key, hash);
    usleep(100000);
    lx_harness_resp_t r;
    int admitted = 0, status = 200;
    for (int i = 0; i < 50 && status == 200; i++) {
        assert_int_equal(call("POST", "/api/v1/chat/completions", key, CHAT, &r), 0);
        status = r.status;
        admitted += status == 200;
        if (status != 200) {
            assert_true(lx_harness_is_or_error(&r, 402));
            assert_non_null(strstr(r.body, "\"limit_source\":\"openrouter_key_limit\""));
        }
        lx_harness_resp_free(&r);
    }
    assert_int_equal(status, 402);
    assert_true(admitted >= 3);
    /* what was spent never passes the limit */
    assert_int_equal(call("GET", "/api/v1/key", key, NULL, &r), 0);
    double usage = json_num(r.body, "usage");
    assert_true(usage > 0 && usage <= 0.01);
    assert_true(json_num(r.body, "limit_remaining") >= 0);
    lx_harness_resp_free(&r);
    /* under /v1 the same refusal in OpenAI's envelope */
    assert_int_equal(call("POST", "/v1/chat/completions", key, CHAT, &r), 0);
    assert_true(lx_harness_is_error(&r, 402));
    lx_harness_resp_free(&r);
    /* raising the limit lets it through again */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/keys/%s", hash);
    assert_int_equal(call("PATCH", path, "sk-admin", "{\"limit\":1}", &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        ok = r.status == 200;
        lx_harness_resp_free(&r);
        if (!ok)
            usleep(1000);
    }
    assert_true(ok);
}

/* 60 requests per minute at a frozen clock: exactly 60, then 429 with Retry-After and OpenAI's
 * headers; a second later one more fits (the bucket refills over the minute). */
static void test_rate_limit(void **state)
{
    (void)state;
    set_now(1796040000); /* 2026-12-01T12:00:00Z */
    char key[80], hash[65];
    create_key("rpm", "\"rate_limit\":{\"rpm\":60}", key, hash);
    usleep(100000);
    lx_harness_resp_t r;
    char v[64];
    for (int i = 0; i < 60; i++) {
        assert_int_equal(chat(key, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(lx_harness_resp_header(&r, "x-ratelimit-limit-requests", v, sizeof(v)));
        assert_string_equal(v, "60");
        assert_true(lx_harness_resp_header(&r, "x-ratelimit-remaining-requests", v, sizeof(v)));
        assert_int_equal(atoi(v), 59 - i);
        assert_true(lx_harness_resp_header(&r, "x-ratelimit-reset-requests", v, sizeof(v)));
        lx_harness_resp_free(&r);
    }
    assert_int_equal(chat(key, NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 429));
    assert_true(lx_harness_resp_header(&r, "retry-after", v, sizeof(v)));
    assert_true(atoi(v) >= 1 && atoi(v) <= 60);
    assert_true(lx_harness_resp_header(&r, "x-ratelimit-remaining-requests", v, sizeof(v)));
    assert_string_equal(v, "0");
    lx_harness_resp_free(&r);
    set_now(1796040000 + 1); /* 60 s / 60: one more fits */
    assert_int_equal(chat(key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    assert_int_equal(chat(key, NULL, &r), 0);
    assert_int_equal(r.status, 429);
    lx_harness_resp_free(&r);
    atomic_store(&fake_now, 0);
}

/* A daily limit resets at midnight UTC, not a second before. */
static void test_daily_reset(void **state)
{
    (void)state;
    int64_t day = 1796083200; /* 2026-12-02T00:00:00Z */
    set_now(day - 3600);
    char key[80], hash[65];
    create_key("daily", "\"limit\":0.005,\"limit_reset\":\"daily\"", key, hash);
    usleep(100000);
    lx_harness_resp_t r;
    int status = 200;
    for (int i = 0; i < 30 && status == 200; i++) {
        assert_int_equal(call("POST", "/api/v1/chat/completions", key, CHAT, &r), 0);
        status = r.status;
        lx_harness_resp_free(&r);
    }
    assert_int_equal(status, 402);
    set_now(day - 1);
    assert_int_equal(call("POST", "/api/v1/chat/completions", key, CHAT, &r), 0);
    assert_int_equal(r.status, 402);
    lx_harness_resp_free(&r);
    set_now(day);
    assert_int_equal(chat(key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    /* (settled before its last byte left: /key, on any worker, shows it at once) */
    assert_int_equal(call("GET", "/api/v1/key", key, NULL, &r), 0);
    assert_true(json_num(r.body, "usage_daily") > 0);
    assert_true(json_num(r.body, "usage_daily") < json_num(r.body, "usage"));
    lx_harness_resp_free(&r);
    atomic_store(&fake_now, 0);
}

/* /generation answers as soon as a stream has ended, with the record's usage and cost. */
static void test_generation(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("gen", "", key, hash);
    usleep(100000);
    for (int i = 0; i < 5; i++) {
        lx_harness_resp_t r;
        assert_int_equal(
            chat(key,
                 "{\"model\":\"team/m\",\"stream\":true,\"user\":\"u-7\",\"session_id\":\"s-1\","
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 &r),
            0);
        assert_int_equal(r.status, 200);
        char id[64], chunk_id[96];
        assert_true(lx_harness_resp_header(&r, "x-generation-id", id, sizeof(id)));
        assert_true(json_str(r.body, "id", chunk_id, sizeof(chunk_id))); /* the provider's */
        lx_harness_resp_free(&r);
        /* OpenRouter's clients ask with the id the chunks carried: the same record */
        char by_chunk[160];
        snprintf(by_chunk, sizeof(by_chunk), "/api/v1/generation?id=%s", chunk_id);
        assert_int_equal(call("GET", by_chunk, key, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        char got[64];
        assert_true(json_str(r.body, "id", got, sizeof(got)));
        assert_string_equal(got, id);
        assert_true(json_str(r.body, "upstream_id", got, sizeof(got)));
        assert_string_equal(got, chunk_id);
        lx_harness_resp_free(&r);
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/generation?id=%s", id);
        assert_int_equal(call("GET", path, key, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        char v[128];
        assert_true(json_str(r.body, "id", v, sizeof(v)));
        assert_string_equal(v, id);
        assert_true(json_str(r.body, "model", v, sizeof(v)));
        assert_string_equal(v, "team/m");
        assert_true(json_str(r.body, "provider_name", v, sizeof(v)));
        assert_string_equal(v, "mock-a");
        assert_non_null(strstr(r.body, "\"streamed\":true"));
        assert_true(json_num(r.body, "tokens_completion") == 5);
        assert_true(json_num(r.body, "total_cost") > 0);
        assert_true(json_str(r.body, "user", v, sizeof(v)) ||
                    json_str(r.body, "external_user", v, sizeof(v)));
        lx_harness_resp_free(&r);
        /* another key may not read it; a management key may */
        assert_int_equal(call("GET", path, "sk-static", NULL, &r), 0);
        assert_int_equal(r.status, 404);
        lx_harness_resp_free(&r);
        assert_int_equal(call("GET", path, "sk-admin", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    lx_harness_resp_t r;
    assert_int_equal(call("GET", "/api/v1/generation?id=gen-nope", key, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/api/v1/generation", key, NULL, &r), 0);
    assert_int_equal(r.status, 400);
    lx_harness_resp_free(&r);
    /* activity: this key's requests, by day, model and provider; without a date the last 30
     * completed days (as OpenRouter), so today is asked for by name */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char path[128];
    strftime(path, sizeof(path), "/api/v1/activity?date=%Y-%m-%d", &tm);
    assert_int_equal(call("GET", path, key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"model\":\"team/m\""));
    assert_true(json_num(r.body, "requests") == 5);
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/api/v1/activity", key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "\"requests\":5")); /* (today is not complete) */
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/api/v1/activity?date=2026-13-01", key, NULL, &r), 0);
    assert_int_equal(r.status, 400);
    lx_harness_resp_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{",
        "[]",
        "{\"name\":1}",
        "{\"limit\":1}", /* no name */
        "{\"name\":\"x\",\"limit\":-1}",
        "{\"name\":\"x\",\"limit\":1e30}",
        "{\"name\":\"x\",\"limit\":\"5\"}",
        "{\"name\":\"x\",\"limit_reset\":\"hourly\"}",
        "{\"name\":\"x\",\"unknown\":true}",
        "{\"name\":\"x\",\"expires_at\":\"2030-01-01T00:00:00+02:00\"}",
        "{\"name\":\"x\",\"models\":\"team/*\"}",
        "{\"name\":\"x\",\"rate_limit\":{\"rpm\":-5}}",
        "{\"name\":\"x\",\"name\":\"y\"}",
        "{\"name\":\"\xff\xfe\"}", /* not UTF-8 */
        "{\"name\":\"a\x01\"}",    /* a raw control character: not JSON */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lx_harness_resp_t r;
        assert_int_equal(call("POST", "/api/v1/keys", "sk-admin", bad[i], &r), 0);
        if (r.status != 400)
            fprintf(stderr, "case %zu (%s) answered %d %s\n", i, bad[i], r.status, r.body);
        assert_true(lx_harness_is_or_error(&r, 400));
        lx_harness_resp_free(&r);
    }
    /* a 10 MB name */
    size_t n = 10u << 20;
    char *big = malloc(n + 64);
    assert_non_null(big);
    memcpy(big, "{\"name\":\"", 9);
    memset(big + 9, 'a', n);
    strcpy(big + 9 + n, "\"}");
    lx_harness_resp_t r;
    assert_int_equal(call("POST", "/api/v1/keys", "sk-admin", big, &r), 0);
    assert_true(r.status == 400 || r.status == 413);
    lx_harness_resp_free(&r);
    free(big);
    /* a hash that does not exist, and one that is no hash */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/keys/%064d", 0);
    assert_int_equal(call("PATCH", path, "sk-admin", "{\"name\":\"y\"}", &r), 0);
    assert_true(lx_harness_is_or_error(&r, 404));
    lx_harness_resp_free(&r);
    assert_int_equal(call("DELETE", "/api/v1/keys/xyz", "sk-admin", NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 404));
    lx_harness_resp_free(&r);
}

/* Concurrent PATCHes of one key: every one answers, the key ends with one of the names. */
typedef struct patcher {
    char path[128];
    int k;
    int status;
} patcher_t;

static void *patch_thread(void *arg)
{
    patcher_t *p = arg;
    char body[64];
    snprintf(body, sizeof(body), "{\"name\":\"n%d\"}", p->k);
    lx_harness_resp_t r;
    p->status = call("PATCH", p->path, "sk-admin", body, &r) == 0 ? r.status : -1;
    if (p->status > 0)
        lx_harness_resp_free(&r);
    return NULL;
}

static void test_concurrent_patch(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("contended", "", key, hash);
    patcher_t p[16];
    pthread_t t[16];
    for (int i = 0; i < 16; i++) {
        snprintf(p[i].path, sizeof(p[i].path), "/api/v1/keys/%s", hash);
        p[i].k = i;
        assert_int_equal(pthread_create(&t[i], NULL, patch_thread, &p[i]), 0);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(p[i].status, 200);
    }
    lx_harness_resp_t r;
    assert_int_equal(call("GET", p[0].path, "sk-admin", NULL, &r), 0);
    char v[32];
    assert_true(json_str(r.body, "name", v, sizeof(v)));
    assert_true(v[0] == 'n' && atoi(v + 1) >= 0 && atoi(v + 1) < 16);
    lx_harness_resp_free(&r);
}

/* Deleting a key ends nothing in flight: a stream started before the delete finishes, and is
 * recorded and charged; the next request is refused. */
typedef struct slow {
    char key[80];
    int status;
    bool done;
    char gen[64];
} slow_t;

static void *slow_stream(void *arg)
{
    slow_t *s = arg;
    lx_harness_resp_t r;
    s->status = chat(s->key,
                     "{\"model\":\"team/m\",\"stream\":true,\"mock\":{\"first_delay_ms\":400},"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                     &r) == 0
                    ? r.status
                    : -1;
    if (s->status > 0) {
        s->done = r.complete && strstr(r.body, "[DONE]") != NULL;
        lx_harness_resp_header(&r, "x-generation-id", s->gen, sizeof(s->gen));
        lx_harness_resp_free(&r);
    }
    return NULL;
}

static void test_delete_in_flight(void **state)
{
    (void)state;
    char hash[65];
    slow_t s = {0};
    create_key("leaving", "\"limit\":1", s.key, hash);
    usleep(100000);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_stream, &s), 0);
    usleep(150000); /* admitted, waiting for its first token */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/keys/%s", hash);
    lx_harness_resp_t r;
    assert_int_equal(call("DELETE", path, "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    pthread_join(t, NULL);
    assert_int_equal(s.status, 200);
    assert_true(s.done);
    /* recorded and charged, readable by a management key */
    snprintf(path, sizeof(path), "/api/v1/generation?id=%s", s.gen);
    assert_int_equal(call("GET", path, "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_num(r.body, "total_cost") > 0);
    lx_harness_resp_free(&r);
    assert_int_equal(chat(s.key, NULL, &r), 0);
    assert_true(lx_harness_is_or_error(&r, 401));
    lx_harness_resp_free(&r);
}

/* What a request reserves: nothing for a free model's answer, no completion for embeddings,
 * each of the completions it asks for; a reservation larger than the whole limit says so; a request
 * larger than the key's TPM is a 429 that asks not to be retried. */
static void test_reservations(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("tiny", "\"limit\":0.001,\"rate_limit\":{\"tpm\":100000}", key, hash);
    usleep(100000);
    lx_harness_resp_t r;
    /* free: no max_tokens, yet nothing to reserve for the answer */
    assert_int_equal(chat(key, "{\"model\":\"free/m\",\"messages\":[]}", &r), 0);
    if (r.status != 200)
        fprintf(stderr, "free: %d %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    /* embeddings: the prompt only */
    assert_int_equal(
        call("POST", "/api/v1/embeddings", key, "{\"model\":\"team/m\",\"input\":\"hi\"}", &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    /* more than the whole limit: no wait helps */
    assert_int_equal(chat(key, "{\"model\":\"team/m\",\"max_tokens\":100000,\"messages\":[]}", &r),
                     0);
    assert_true(lx_harness_is_or_error(&r, 402));
    assert_non_null(strstr(r.body, "\"reason\":\"weight_exceeds_budget\""));
    lx_harness_resp_free(&r);
    /* each completion asked for is reserved (n, best_of): 20 tokens at 20 µ$ fit the limit of
     * 1,000 µ$ once, not three times */
    assert_int_equal(
        chat(key, "{\"model\":\"team/m\",\"max_tokens\":20,\"n\":1,\"messages\":[]}", &r), 0);
    assert_null(strstr(r.body, "weight_exceeds_budget"));
    lx_harness_resp_free(&r);
    static const char *const many[] = {
        "{\"model\":\"team/m\",\"max_tokens\":20,\"n\":3,\"messages\":[]}",
        "{\"model\":\"team/m\",\"max_tokens\":20,\"best_of\":3,\"n\":1,\"messages\":[]}",
    };
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(chat(key, many[k], &r), 0);
        assert_true(lx_harness_is_or_error(&r, 402));
        assert_non_null(strstr(r.body, "\"reason\":\"weight_exceeds_budget\""));
        lx_harness_resp_free(&r);
    }
    /* more tokens than the key's TPM: a 429 the SDKs must not retry */
    assert_int_equal(chat(key, "{\"model\":\"free/m\",\"max_tokens\":200000,\"messages\":[]}", &r),
                     0);
    assert_true(lx_harness_is_or_error(&r, 429));
    char v[32];
    assert_true(lx_harness_resp_header(&r, "x-should-retry", v, sizeof(v)));
    assert_string_equal(v, "false");
    assert_false(lx_harness_resp_header(&r, "retry-after", v, sizeof(v)));
    lx_harness_resp_free(&r);
}

/* A stream the client leaves midway costs what it streamed, not its worst case; the client's
 * view of the record names no provider address, and only admin.sha256 opens the admin pages. */
static void test_cancelled_cost(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("leaver", "", key, hash);
    usleep(100000);
    char raw[512];
    const char *body = "{\"model\":\"team/m\",\"stream\":true,\"mock\":{\"chunks\":200,"
                       "\"interval_ms\":10},\"messages\":[]}";
    int n = snprintf(raw, sizeof(raw),
                     "POST /api/v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     "%s\r\nContent-Length: %zu\r\n\r\n%s",
                     key, strlen(body), body);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, raw, (size_t)n), 0);
    assert_true(lx_harness_wait_bytes(&c, 2000, 3000));
    char gen[64] = "";
    assert_true(lx_harness_head_header(c.buf, c.len, "x-generation-id", gen, sizeof(gen)));
    lx_harness_close(&c); /* gone after a few events */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/generation?id=%s", gen);
    lx_harness_resp_t r;
    int status = 0;
    for (int i = 0; i < 100 && status != 200; i++) { /* (recorded once llmux saw the close) */
        assert_int_equal(call("GET", path, "sk-admin", NULL, &r), 0);
        status = r.status;
        if (status == 200) {
            assert_non_null(strstr(r.body, "\"cancelled\":true"));
            double cost = json_num(r.body, "total_cost");
            assert_true(cost > 0 && cost < 0.005); /* (its worst case is $0.01 and more) */
            assert_non_null(strstr(r.body, "http://127.0.0.1")); /* a management key sees it */
        }
        lx_harness_resp_free(&r);
        if (status != 200)
            usleep(20000);
    }
    assert_int_equal(status, 200);
    assert_int_equal(call("GET", path, key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "http://127.0.0.1"));
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/admin/health", "sk-ops", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    lx_harness_resp_free(&r);
    assert_int_equal(call("GET", "/admin/health", "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
}

/* A stored key on one keep-alive connection: two pipelined requests with 64 KiB prompts, each
 * admitted, answered in order with its rate-limit headers, and each charged. */
static void test_pipelined_large(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("pipe", "\"limit\":10,\"rate_limit\":{\"rpm\":1000}", key, hash);
    usleep(100000);
    size_t plen = 64 * 1024;
    char *body = malloc(plen + 256);
    assert_non_null(body);
    int bn = sprintf(body, "{\"model\":\"team/m\",\"max_tokens\":10,\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"");
    memset(body + bn, 'p', plen);
    bn += (int)plen;
    bn += sprintf(body + bn, "\"}]}");
    size_t one = (size_t)bn + 512;
    char *raw = malloc(2 * one);
    assert_non_null(raw);
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        n += (size_t)sprintf(raw + n,
                             "POST /api/v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: "
                             "Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
                             key, bn, body);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, raw, n), 0);
    for (int i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c, &r), 0);
        assert_int_equal(r.status, 200);
        char v[32];
        assert_true(lx_harness_resp_header(&r, "x-ratelimit-remaining-requests", v, sizeof(v)));
        assert_int_equal(atoi(v), 999 - i);
        lx_harness_resp_free(&r);
    }
    lx_harness_close(&c);
    free(raw);
    free(body);
    /* each charged its prompt (about 16k tokens at 10 µ$), settled before its last byte left:
     * /key, on any worker, shows both at once */
    lx_harness_resp_t r;
    assert_int_equal(call("GET", "/api/v1/key", key, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    double usage = json_num(r.body, "usage");
    lx_harness_resp_free(&r);
    assert_true(usage > 2 * 0.1);
}

/* A request's hold settles before its last bytes leave: /key, asked on another connection
 * (most likely of the other worker) the moment a response's last byte is in, shows it settled
 * every time, for Content-Length answers and SSE streams alike: the usage grew, and what is
 * left of the limit is the limit minus that usage (no reservation still held). */
#define SETTLE_ROUNDS 200
#define SETTLE_PEEKS  4

static void test_settled_at_last_byte(void **state)
{
    (void)state;
    char key[80], hash[65];
    create_key("settle", "\"limit\":100", key, hash);
    usleep(100000);
    static const char *bodies[2] = {CHAT,
                                    "{\"model\":\"team/m\",\"max_tokens\":100,\"stream\":true,"
                                    "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"};
    char chat_raw[2][1024], key_raw[256];
    size_t chat_n[2], key_n;
    for (int k = 0; k < 2; k++)
        chat_n[k] = (size_t)snprintf(chat_raw[k], sizeof(chat_raw[k]),
                                     "POST /api/v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                                     "Authorization: Bearer %s\r\nContent-Type: application/json"
                                     "\r\nContent-Length: %zu\r\n\r\n%s",
                                     key, strlen(bodies[k]), bodies[k]);
    key_n = (size_t)snprintf(key_raw, sizeof(key_raw),
                             "GET /api/v1/key HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s"
                             "\r\n\r\n",
                             key);
    lx_harness_conn_t c, peek[SETTLE_PEEKS];
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    for (int p = 0; p < SETTLE_PEEKS; p++)
        assert_int_equal(lx_harness_connect(&peek[p], H.port), 0);
    double last = 0;
    for (int i = 0; i < SETTLE_ROUNDS; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_send(&c, chat_raw[i % 2], chat_n[i % 2]), 0);
        assert_int_equal(lx_harness_read(&c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        lx_harness_resp_free(&r);
        /* the last byte is in: ask at once */
        lx_harness_conn_t *q = &peek[i % SETTLE_PEEKS];
        assert_int_equal(lx_harness_send(q, key_raw, key_n), 0);
        assert_int_equal(lx_harness_read(q, &r), 0);
        assert_int_equal(r.status, 200);
        double usage = json_num(r.body, "usage");
        double left = json_num(r.body, "limit_remaining");
        if (!(usage > last) || left + usage < 100 - 1e-7 || left + usage > 100 + 1e-7)
            fprintf(stderr, "round %d (%s): usage %.6f after %.6f, limit_remaining %.6f\n", i,
                    i % 2 ? "stream" : "length", usage, last, left);
        assert_true(usage > last);
        assert_true(left + usage > 100 - 1e-7 && left + usage < 100 + 1e-7);
        last = usage;
        lx_harness_resp_free(&r);
    }
    lx_harness_close(&c);
    for (int p = 0; p < SETTLE_PEEKS; p++)
        lx_harness_close(&peek[p]);
}

/* Clients that leave while their store job is out: the job comes back to nobody, and a job
 * still out when llmux stops is freed with it (the harness stops it right after). */
static void test_job_client_leaves(void **state)
{
    (void)state;
    static const char req[] = "GET /api/v1/generation?id=gen-never HTTP/1.1\r\nHost: t\r\n"
                              "Authorization: Bearer sk-admin\r\n\r\n";
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, req, sizeof(req) - 1), 0);
    usleep(50000); /* (the lookup waits for a record that never comes) */
    lx_harness_close(&c);
    lx_harness_resp_t r;
    assert_int_equal(call("GET", "/api/v1/keys", "sk-admin", NULL, &r), 0);
    assert_int_equal(r.status, 200); /* the gateway goes on */
    lx_harness_resp_free(&r);
    lx_harness_conn_t left_open;
    assert_int_equal(lx_harness_connect(&left_open, H.port), 0);
    assert_int_equal(lx_harness_send(&left_open, req, sizeof(req) - 1), 0);
    usleep(50000);
    /* teardown drains now (shutdown 500 ms) with this lookup still waiting (up to 1 s) */
    lx_harness_close(&left_open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_management_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_use_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowlist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daily_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_patch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settled_at_last_byte, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
