/*
 * test_routing.c - the plan and failover: attempts walk the plan on connect failures, 5xx,
 * 429 and first-byte timeouts, never on the client's own errors; the final error when every
 * attempt failed; request preferences (order, only, ignore, max_price, data policy,
 * require_parameters, sort, :floor), the `models` chain, the circuit breaker, session
 * stickiness, round robin, the admin API and the metrics.
 *
 * Faults are per provider: several providers point at the same mock, each with a provider
 * header (x-mock-status, x-mock-delay-ms) that the mock obeys, so one request body meets a
 * different upstream behaviour on each attempt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/auth.h"
#include "harness.h"

/* Several providers share one mock; each misbehaves through a header the mock obeys. */
static const char CONFIG[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts:\n"
    "  upstream_first_byte: 300ms\n"
    "  shutdown: 200ms\n"
    "routing:\n"
    "  max_attempts: 3\n"
    "  deadline: 5s\n"
    "health:\n"
    "  breaker_failures: 3\n"
    "  breaker_cooldown: 30s\n"
    "  rescore_interval: 1s\n"
    "  window: 10s\n"
    "providers:\n"
    "  - {name: good, base_url: \"http://127.0.0.1:@MOCK0@/v1\", data_collection: deny, zdr: "
    "true}\n"
    "  - {name: err500, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"500\"}}\n"
    "  - {name: err429, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"429\"}}\n"
    "  - {name: err429b, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"429\"}}\n"
    "  - {name: err400, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"400\"}}\n"
    "  - {name: err401, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-status: "
    "\"401\"}}\n"
    "  - {name: slow, base_url: \"http://127.0.0.1:@MOCK0@/v1\", headers: {x-mock-delay-ms: "
    "\"2000\"}}\n"
    "  - {name: dead, base_url: \"http://127.0.0.1:@DEAD@/v1\"}\n"
    "  - {name: dead2, base_url: \"http://127.0.0.1:@DEAD@/v1\"}\n"
    "  - {name: toolong, base_url: \"http://127.0.0.1:@RAW@/v1\"}\n"
    "  - name: reps\n"
    "    base_url: http://127.0.0.1:@MOCK1@/v1\n"
    "    endpoints: [\"http://127.0.0.1:@MOCK1@\", \"http://127.0.0.1:@MOCK2@\"]\n"
    "models:\n"
    "  - id: chain\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: dead, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: err500, price: {prompt: 2, completion: 2}}\n"
    "      - {provider: good, price: {prompt: 3, completion: 3}}\n"
    "  - id: refuse\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: err400, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: good, price: {prompt: 2, completion: 2}}\n"
    "  - id: limited\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: err429, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: err429b, price: {prompt: 2, completion: 2}}\n"
    "  - id: denied\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: err401, price: {prompt: 1, completion: 1}}\n"
    "  - id: broken\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: err500, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: dead, price: {prompt: 2, completion: 2}}\n"
    "      - {provider: dead2, price: {prompt: 3, completion: 3}}\n"
    "      - {provider: good, price: {prompt: 4, completion: 4}}\n"
    "  - id: slowfirst\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: slow, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: good, price: {prompt: 2, completion: 2}}\n"
    "  - id: primary\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: dead, price: {prompt: 1, completion: 1}}\n"
    "  - id: backup\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: good, model: backup-upstream, parameters: [temperature, tools]}\n"
    "  - id: breaker\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: dead2, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: good, price: {prompt: 2, completion: 2}}\n"
    "  - id: small\n"
    "    context_length: 16\n"
    "    providers:\n"
    "      - {provider: toolong, price: {prompt: 1, completion: 1}}\n"
    "      - {provider: err500, price: {prompt: 2, completion: 2}}\n"
    "  - id: replicated\n"
    "    context_length: 4096\n"
    "    providers:\n"
    "      - {provider: reps, price: {prompt: 1, completion: 1}}\n"
    "auth: none\n"
    "admin:\n"
    "  sha256: @ADMIN@\n"
    "  metrics_public: true\n"
    "log:\n"
    "  access_log: @LOG@\n"
    "  level: error\n";

static lx_harness_t H;

/* The admin key's digest goes into the template. */
static int setup(void **state)
{
    (void)state;
    uint8_t d[32];
    char hex[65];
    lx_auth_hash("admin-secret", 12, d);
    lx_auth_hex(d, hex);
    size_t n = strlen(CONFIG) + 64;
    char *cfg = malloc(n);
    const char *at = strstr(CONFIG, "@ADMIN@");
    size_t pre = (size_t)(at - CONFIG);
    memcpy(cfg, CONFIG, pre);
    memcpy(cfg + pre, hex, 64);
    strcpy(cfg + pre + 64, at + 7);
    /* the raw upstream says every prompt is too long for its model */
    lx_harness_opts_t o = {.mocks = 3,
                           .raw = true,
                           .raw_mode = LX_HARNESS_RAW_REPLY,
                           .raw_reply =
                               "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                               "Content-Length: 108\r\n\r\n"
                               "{\"error\":{\"message\":\"This model's maximum context length "
                               "is 16 tokens\",\"code\":\"context_length_exceeded\"}}   "};
    int rc = lx_harness_start(&H, &o, cfg);
    free(cfg);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* POSTs a chat request for <model> with more top-level members <extra> (",..." or "") to
 * <path>. */
static void chat_on(const char *path, const char *model, const char *extra, const char *id,
                    lx_harness_resp_t *r)
{
    char body[1024], hdr[200];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s}", model,
             extra);
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", id);
    assert_int_equal(lx_harness_post(H.port, path, hdr, body, r), 0);
}

static void chat(const char *model, const char *extra, const char *id, lx_harness_resp_t *r)
{
    chat_on("/v1/chat/completions", model, extra, id, r);
}

static void expect_header(const lx_harness_resp_t *r, const char *name, const char *want)
{
    char v[256];
    assert_true(lx_harness_resp_header(r, name, v, sizeof(v)));
    if (strcmp(v, want) != 0) {
        fprintf(stderr, "%s: \"%s\", expected \"%s\"\n", name, v, want);
        fail();
    }
}

static char *log_line(const char *id)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", id);
    char *line = lx_harness_log_wait(&H, needle, 2000);
    assert_non_null(line);
    return line;
}

/* ---- failover -------------------------------------------------------------------------------- */

static void test_failover_walks_the_plan(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t before = lx_mock_requests(H.mock[0]);
    /* sorted by price: dead (refused), err500 (500), then good */
    chat("chain", ",\"provider\":{\"sort\":\"price\"}", "fo-1", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-provider", "good");
    expect_header(&r, "x-llmux-attempts", "3");
    /* a plain answer names what served it */
    char v[128];
    assert_true(lx_harness_json_str(r.body, "model", v, sizeof(v)));
    assert_string_equal(v, "chain");
    assert_true(lx_harness_json_str(r.body, "provider", v, sizeof(v)));
    assert_string_equal(v, "good");
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - before, 2); /* err500 and good */
    char *line = log_line("fo-1");
    assert_non_null(strstr(line, "\"attempts\":3"));
    assert_non_null(strstr(line, "\"provider\":\"dead\""));
    assert_non_null(strstr(line, "\"outcome\":\"connect\""));
    assert_non_null(strstr(line, "\"outcome\":\"server\""));
    assert_non_null(strstr(line, "\"outcome\":\"ok\""));
    free(line);
}

static void test_client_error_not_retried(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t before = lx_mock_requests(H.mock[0]);
    chat("refuse", ",\"provider\":{\"sort\":\"price\"}", "ce-1", &r);
    assert_true(lx_harness_is_error(&r, 400));
    char msg[512];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    assert_non_null(strstr(msg, "mock: injected status 400"));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - before, 1);
}

static void test_all_rate_limited(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("limited", "", "rl-1", &r);
    assert_true(lx_harness_is_error(&r, 429));
    expect_header(&r, "retry-after", "1");
    /* the metadata lists each attempt, without URLs or keys; the provider's code passes on */
    assert_non_null(strstr(r.body, "\"code\":\"rate_limit_exceeded\",\"metadata\":{\"attempts\":["
                                   "{\"provider\":\"err429"));
    assert_non_null(strstr(r.body, "\"error_type\":\"rate_limit\""));
    assert_null(strstr(r.body, "127.0.0.1"));
    lx_harness_resp_free(&r);
}

static void test_all_failed_bounded(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t before = lx_mock_requests(H.mock[0]);
    /* err500, dead, dead2 (good would be fourth: routing.max_attempts is 3) */
    chat("broken", ",\"provider\":{\"sort\":\"price\"}", "af-1", &r);
    /* a 5xx and connection failures: 502 */
    assert_true(lx_harness_is_error(&r, 502));
    assert_non_null(strstr(r.body, "\"provider\":\"err500\",\"model\":\"broken\",\"status\":500"));
    assert_non_null(strstr(r.body, "\"provider\":\"dead\",\"model\":\"broken\",\"status\":null,"
                                   "\"error_type\":\"connect\""));
    assert_null(strstr(r.body, "\"provider\":\"good\""));
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - before, 1);
    char *line = log_line("af-1");
    assert_non_null(strstr(line, "\"attempts\":3"));
    free(line);
}

static void test_first_byte_timeout_fails_over(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t t0 = lx_harness_now_ms();
    chat("slowfirst", ",\"provider\":{\"sort\":\"price\"}", "to-1", &r);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-provider", "good");
    expect_header(&r, "x-llmux-attempts", "2");
    assert_true(dt >= 280 && dt < 1900); /* the slow provider's timeout, not its delay */
    lx_harness_resp_free(&r);
}

static void test_streams_fail_over_before_the_first_byte(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("chain", ",\"stream\":true,\"provider\":{\"sort\":\"price\"}", "fs-1", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-provider", "good");
    expect_header(&r, "x-llmux-attempts", "3");
    assert_non_null(strstr(r.body, "data: [DONE]"));
    assert_non_null(strstr(r.body, "\"model\":\"chain\""));
    lx_harness_resp_free(&r);
}

/* ---- the models chain ------------------------------------------------------------------------ */

static void test_models_chain(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("primary", ",\"models\":[\"primary\",\"backup\"]", "mc-1", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-model", "backup");
    expect_header(&r, "x-llmux-upstream-model", "backup-upstream");
    expect_header(&r, "x-llmux-attempts", "2");
    char v[128];
    assert_true(lx_harness_json_str(r.body, "model", v, sizeof(v)));
    assert_string_equal(v, "backup"); /* the served public id, not the upstream's name */
    lx_harness_resp_free(&r);
    /* llmux's own fields never reach the provider */
    size_t len;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
    assert_non_null(raw);
    assert_null(strstr(raw, "\"models\""));
    assert_non_null(strstr(raw, "\"model\":\"backup-upstream\""));
    free(raw);

    chat("primary", ",\"models\":[\"nope\"]", "mc-2", &r);
    assert_true(lx_harness_is_error(&r, 404));
    lx_harness_resp_free(&r);
}

static void test_context_length_moves_to_the_next_model(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    uint64_t before = lx_mock_requests(H.mock[0]);
    /* too long for `small`: its other provider (err500) is skipped, the next model serves */
    chat("small", ",\"models\":[\"small\",\"backup\"],\"provider\":{\"sort\":\"price\"}", "cl-1",
         &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-model", "backup");
    expect_header(&r, "x-llmux-attempts", "2");
    lx_harness_resp_free(&r);
    assert_int_equal(lx_mock_requests(H.mock[0]) - before, 1); /* backup only, never err500 */
    /* without a next model, the client gets the provider's 400 as it was: under /v1 with the
     * provider's own OpenAI code */
    chat("small", ",\"provider\":{\"sort\":\"price\"}", "cl-2", &r);
    assert_true(lx_harness_is_error(&r, 400));
    char msg[512];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    assert_non_null(strstr(msg, "maximum context length"));
    assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
                                   "\"context_length_exceeded\""));
    lx_harness_resp_free(&r);
    /* under /api/v1 in OpenRouter's envelope, the provider's code in metadata */
    chat_on("/api/v1/chat/completions", "small", ",\"provider\":{\"sort\":\"price\"}", "cl-3", &r);
    assert_true(lx_harness_is_or_error(&r, 400));
    assert_non_null(strstr(r.body, "\"metadata\":{\"error_type\":\"invalid_request\","
                                   "\"provider_name\":\"toolong\",\"provider_code\":"
                                   "\"context_length_exceeded\",\"attempts\":[{\"provider\":"
                                   "\"toolong\""));
    lx_harness_resp_free(&r);
}

/* A provider that refuses llmux's own key: the client's key is not the problem, so the answer
 * is a 502 and the provider's "invalid_api_key" does not reach the client as its code. */
static void test_provider_refuses_llmux_key(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    chat("denied", "", "den-1", &r);
    assert_true(lx_harness_is_error(&r, 502));
    assert_non_null(strstr(r.body, "\"type\":\"server_error\",\"param\":null,\"code\":null"));
    assert_null(strstr(r.body, "\"invalid_api_key\""));
    lx_harness_resp_free(&r);
    chat_on("/api/v1/chat/completions", "denied", "", "den-2", &r);
    assert_true(lx_harness_is_or_error(&r, 502));
    assert_null(strstr(r.body, "provider_code"));
    lx_harness_resp_free(&r);
}

/* ---- preferences ----------------------------------------------------------------------------- */

static void expect_refused(const char *model, const char *extra, int status, const char *needle)
{
    lx_harness_resp_t r;
    chat(model, extra, "pref", &r);
    assert_true(lx_harness_is_error(&r, status));
    char msg[512];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    if (strstr(msg, needle) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, needle);
        fail();
    }
    lx_harness_resp_free(&r);
}

static void expect_served(const char *model, const char *extra, const char *provider,
                          const char *attempts)
{
    lx_harness_resp_t r;
    chat(model, extra, "pref-ok", &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "x-llmux-provider", provider);
    if (attempts != NULL)
        expect_header(&r, "x-llmux-attempts", attempts);
    lx_harness_resp_free(&r);
}

static void test_preferences(void **state)
{
    (void)state;
    expect_refused("chain", ",\"provider\":{\"only\":[\"nobody\"]}", 404, "provider.only");
    expect_refused("chain", ",\"provider\":{\"ignore\":[\"dead\",\"err500\",\"good\"]}", 404,
                   "provider.ignore");
    expect_refused("chain", ",\"provider\":{\"max_price\":{\"prompt\":0.5}}", 404,
                   "provider.max_price");
    expect_refused("chain", ",\"provider\":{\"sort\":\"cheapest\"}", 400, "provider.sort");
    expect_refused("refuse", ",\"provider\":{\"zdr\":true,\"only\":[\"err400\"]}", 404, "zdr");
    expect_refused("backup",
                   ",\"temperature\":0.5,\"logprobs\":true,"
                   "\"provider\":{\"require_parameters\":true}",
                   404, "logprobs");
    /* what the filters let through */
    expect_served("chain", ",\"provider\":{\"only\":[\"good\"]}", "good", "1");
    expect_served("chain", ",\"provider\":{\"data_collection\":\"deny\"}", "good", "1");
    expect_served("chain", ",\"provider\":{\"order\":[\"good\",\"dead\"]}", "good", "1");
    expect_served("chain", ",\"provider\":{\"ignore\":[\"dead\"],\"sort\":\"price\"}", "good", "2");
    expect_served("backup", ",\"temperature\":0.5,\"provider\":{\"require_parameters\":true}",
                  "good", "1");
    /* :floor sorts by price: slow (first-byte timeout), then good */
    expect_served("slowfirst:floor", "", "good", "2");
    /* order without fallbacks: only the listed providers */
    expect_refused("chain", ",\"provider\":{\"order\":[\"dead\"],\"allow_fallbacks\":false}", 502,
                   "dead");
}

/* ---- the circuit breaker and the admin API --------------------------------------------------- */

static void test_breaker_ejects(void **state)
{
    (void)state;
    /* dead2 is cheaper: tried first until three consecutive failures eject it */
    for (int i = 0; i < 3; i++)
        expect_served("breaker", ",\"provider\":{\"sort\":\"price\"}", "good", "2");
    expect_served("breaker", ",\"provider\":{\"sort\":\"price\"}", "good", "1");
    expect_served("breaker", ",\"provider\":{\"sort\":\"price\"}", "good", "1");

    lx_harness_resp_t r;
    /* the admin API needs the admin key */
    assert_int_equal(lx_harness_get(H.port, "/admin/health", &r), 0);
    assert_true(lx_harness_is_error(&r, 401));
    lx_harness_resp_free(&r);
    const char *req = "GET /admin/health HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer wrong\r\nConnection: close\r\n\r\n";
    assert_int_equal(lx_harness_request(H.port, req, strlen(req), &r), 0);
    assert_true(lx_harness_is_error(&r, 401));
    lx_harness_resp_free(&r);
    req = "GET /admin/health HTTP/1.1\r\nHost: x\r\n"
          "Authorization: Bearer admin-secret\r\nConnection: close\r\n\r\n";
    assert_int_equal(lx_harness_request(H.port, req, strlen(req), &r), 0);
    assert_int_equal(r.status, 200);
    const char *row = strstr(r.body, "\"provider\":\"dead2\",");
    assert_non_null(row);
    row = strstr(row, "\"model\":\"breaker\"");
    assert_non_null(row);
    const char *st = strstr(row, "\"state\":\"");
    assert_non_null(st);
    assert_true(strncmp(st, "\"state\":\"open\"", 14) == 0);
    lx_harness_resp_free(&r);

    /* the same as metrics, without a key (metrics_public) */
    assert_int_equal(lx_harness_get(H.port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "# TYPE llmux_health_score gauge"));
    assert_non_null(strstr(r.body, "llmux_health_breaker_open{provider=\"dead2\""));
    assert_non_null(strstr(r.body, "llmux_upstream_attempts_total{"));
    lx_harness_resp_free(&r);
}

/* ---- reload ---------------------------------------------------------------------------------- */

/* The running configuration's text with its placeholders filled, plus <more> at the end. */
static char *config_text(const char *more)
{
    uint8_t d[32];
    char hex[65], port[16];
    lx_auth_hash("admin-secret", 12, d);
    lx_auth_hex(d, hex);
    size_t cap = strlen(CONFIG) + strlen(more) + 512;
    char *out = malloc(cap);
    size_t o = 0;
    for (const char *p = CONFIG; *p != '\0';) {
        const char *rep = NULL;
        size_t skip = 0;
        if (strncmp(p, "@MOCK", 5) == 0 && p[6] == '@') {
            snprintf(port, sizeof(port), "%u", lx_mock_port(H.mock[p[5] - '0']));
            rep = port;
            skip = 7;
        } else if (strncmp(p, "@RAW@", 5) == 0) {
            snprintf(port, sizeof(port), "%u", lx_harness_raw_port(H.raw));
            rep = port;
            skip = 5;
        } else if (strncmp(p, "@DEAD@", 6) == 0) {
            snprintf(port, sizeof(port), "%u", H.dead_port);
            rep = port;
            skip = 6;
        } else if (strncmp(p, "@ADMIN@", 7) == 0) {
            rep = hex;
            skip = 7;
        } else if (strncmp(p, "@LOG@", 5) == 0) {
            rep = H.log_path;
            skip = 5;
        } else if (strncmp(p, "listen: 127.0.0.1:0", 19) == 0) {
            snprintf(port, sizeof(port), "%u", H.port);
            memcpy(out + o, "listen: 127.0.0.1:", 18);
            o += 18;
            rep = port;
            skip = 19;
        }
        if (rep != NULL) {
            memcpy(out + o, rep, strlen(rep));
            o += strlen(rep);
            p += skip;
        } else {
            out[o++] = *p++;
        }
    }
    strcpy(out + o, more);
    return out;
}

static bool models_has_extra(void *arg)
{
    (void)arg;
    lx_harness_resp_t r;
    if (lx_harness_get(H.port, "/v1/models", &r) != 0)
        return false;
    bool yes = r.status == 200 && strstr(r.body, "\"id\":\"extra\"") != NULL;
    lx_harness_resp_free(&r);
    return yes;
}

static void test_reload_keeps_health(void **state)
{
    (void)state;
    /* the same fleet plus one model: the rows of endpoints that still exist carry over */
    char *text = config_text("");
    const char *models = strstr(text, "models:\n");
    assert_non_null(models);
    size_t pre = (size_t)(models - text) + 8;
    char *next = malloc(strlen(text) + 256);
    memcpy(next, text, pre);
    strcpy(next + pre,
           "  - id: extra\n    context_length: 10\n    providers: [{provider: good}]\n");
    strcat(next, text + pre);
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("reload.yaml", next, strlen(next), stderr, &cfg), 0);
    free(text);
    free(next);
    lx_gateway_reload(H.gw, cfg);
    lx_config_unref(cfg);
    assert_true(lx_harness_wait_until(models_has_extra, NULL, 3000));

    /* dead2 stays ejected for the breaker model: one attempt, served by good */
    expect_served("breaker", ",\"provider\":{\"sort\":\"price\"}", "good", "1");
    lx_harness_resp_t r;
    const char *req = "GET /admin/health HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer admin-secret\r\nConnection: close\r\n\r\n";
    assert_int_equal(lx_harness_request(H.port, req, strlen(req), &r), 0);
    assert_int_equal(r.status, 200);
    const char *row = strstr(r.body, "\"provider\":\"dead2\",");
    assert_non_null(row);
    row = strstr(row, "\"model\":\"breaker\"");
    assert_non_null(row);
    const char *st = strstr(row, "\"state\":\"");
    assert_non_null(st);
    assert_true(strncmp(st, "\"state\":\"open\"", 14) == 0);
    assert_non_null(strstr(r.body, "\"model\":\"extra\""));
    lx_harness_resp_free(&r);
}

/* ---- session stickiness ---------------------------------------------------------------------- */

static void test_session_sticks(void **state)
{
    (void)state;
    for (int s = 0; s < 4; s++) {
        uint64_t a0 = lx_mock_requests(H.mock[1]), b0 = lx_mock_requests(H.mock[2]);
        char extra[64];
        snprintf(extra, sizeof(extra), ",\"session_id\":\"user-%d\"", s);
        for (int i = 0; i < 6; i++)
            expect_served("replicated", extra, "reps", "1");
        uint64_t a = lx_mock_requests(H.mock[1]) - a0, b = lx_mock_requests(H.mock[2]) - b0;
        assert_true((a == 6 && b == 0) || (a == 0 && b == 6));
    }
    /* the header works as well, and session_id is not forwarded */
    lx_harness_resp_t r;
    uint64_t a0 = lx_mock_requests(H.mock[1]), b0 = lx_mock_requests(H.mock[2]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lx_harness_post(H.port, "/v1/chat/completions",
                                         "X-Session-Id: header-session\r\n",
                                         "{\"model\":\"replicated\",\"messages\":[]}", &r),
                         0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    uint64_t a = lx_mock_requests(H.mock[1]) - a0, b = lx_mock_requests(H.mock[2]) - b0;
    assert_true((a == 4 && b == 0) || (a == 0 && b == 4));
    chat("replicated", ",\"session_id\":\"zzz\"", "sess-raw", &r);
    lx_harness_resp_free(&r);
    size_t len;
    char *raw1 = lx_mock_request_raw(H.mock[1], 0, &len);
    char *raw2 = lx_mock_request_raw(H.mock[2], 0, &len);
    assert_true(raw1 == NULL || strstr(raw1, "session_id") == NULL);
    assert_true(raw2 == NULL || strstr(raw2, "session_id") == NULL);
    assert_true(raw1 == NULL || strstr(raw1, "x-session-id") == NULL);
    free(raw1);
    free(raw2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_walks_the_plan),
        cmocka_unit_test(test_client_error_not_retried),
        cmocka_unit_test(test_all_rate_limited),
        cmocka_unit_test(test_all_failed_bounded),
        cmocka_unit_test(test_first_byte_timeout_fails_over),
        cmocka_unit_test(test_streams_fail_over_before_the_first_byte),
        cmocka_unit_test(test_models_chain),
        cmocka_unit_test(test_context_length_moves_to_the_next_model),
        cmocka_unit_test(test_provider_refuses_llmux_key),
        cmocka_unit_test(test_preferences),
        cmocka_unit_test(test_breaker_ejects),
        cmocka_unit_test(test_session_sticks),
        cmocka_unit_test(test_reload_keeps_health),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
