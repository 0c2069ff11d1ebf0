/*
 * test_stream.c - streamed answers as a client sees them: the relay is byte-exact (event for
 * event what the upstream sent, only "model" rewritten to the public id), whatever the
 * upstream's write boundaries; the response head; usage (always asked upstream, given to the
 * client only when it asked or the config says so, accounted and priced in the access log);
 * non-streaming answers; upstream errors before the stream starts; and early commit with
 * ": keep-alive" comments while the first byte is slow.
 *
 * The reference for "what the upstream sent" is the same mock answering the exact body llmux
 * sent it (recorded by the mock), requested directly; per-request values ("id", "created",
 * "mock_ts") are blanked before comparing.
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

#define PRICE_SAME_P 2.5
#define PRICE_SAME_C 10.0
#define PRICE_PUB_P  0.5
#define PRICE_PUB_C  1.5

static const char CONFIG[] =
    "listen: 127.0.0.1:0\n"
    "workers: 1\n"
    "timeouts: {shutdown: 1s, upstream_first_byte: 5s}\n"
    "providers:\n"
    "  - name: mock-a\n"
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
    "  - name: dead-provider\n"
    "    base_url: http://127.0.0.1:@DEAD@/v1\n"
    "models:\n"
    "  - id: same/model\n"
    "    context_length: 4096\n"
    "    providers: [{provider: mock-a, price: {prompt: 2.5, completion: 10}}]\n"
    "  - id: pub/model\n"
    "    context_length: 4096\n"
    "    providers: [{provider: mock-a, model: up-model, price: {prompt: 0.5, completion: 1.5}}]\n"
    "  - id: dead\n"
    "    context_length: 4096\n"
    "    providers: [{provider: dead-provider}]\n"
    "auth: none\n"
    "log: {access_log: @LOG@, level: error}\n";

static lx_harness_t H;

static int start_with(const char *stream_section)
{
    char tpl[4096];
    snprintf(tpl, sizeof(tpl), "%s%s", CONFIG, stream_section);
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, tpl);
}

static int setup(void **state)
{
    (void)state;
    return start_with("");
}

static int setup_always_usage(void **state)
{
    (void)state;
    return start_with("stream: {always_send_usage: true}\n");
}

static int setup_early(void **state)
{
    (void)state;
    return start_with("stream: {early_commit: true, keepalive_delay: 50ms, "
                      "keepalive_interval: 100ms}\n");
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* ---- SSE helpers ---- */

/* Occurrences of <needle> in the string <s> (memmem: linear, even under ASan). */
static size_t count(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(s), nl = strlen(needle);
    for (const char *p = s, *end = s + len; (p = memmem(p, (size_t)(end - p), needle, nl)) != NULL;
         p++)
        n++;
    return n;
}

typedef struct {
    char **v; /* each event's text without its blank-line terminator */
    size_t n, cap;
} evs_t;

/* Splits an SSE body at its blank lines; the body must end with one. */
static void evs_split(const char *body, size_t len, evs_t *e)
{
    memset(e, 0, sizeof(*e));
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), "\n\n", 2);
        assert_non_null(q); /* every event is terminated */
        if (e->n == e->cap) {
            e->cap = e->cap ? e->cap * 2 : 256;
            e->v = realloc(e->v, e->cap * sizeof(*e->v));
            assert_non_null(e->v);
        }
        e->v[e->n++] = strndup(p, (size_t)(q - p));
        p = q + 2;
    }
}

static void evs_free(evs_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* A copy of <ev> with the value of the first "<key>": replaced by <with>; the old value
 * (string contents, or number text) goes to old[] when not NULL. */
static char *blank_value(char *ev, const char *key, const char *with, char *old, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    char *k = strstr(ev, pat);
    if (k == NULL)
        return ev;
    char *v = k + strlen(pat), *ve = v;
    if (*ve == '"') {
        ve++;
        while (*ve != '\0' && *ve != '"')
            ve += *ve == '\\' ? 2 : 1;
        assert_int_equal(*ve, '"');
        ve++;
    } else {
        while ((*ve >= '0' && *ve <= '9') || *ve == '-' || *ve == ' ')
            ve++;
    }
    if (old != NULL) {
        size_t n = (size_t)(ve - v);
        if (*v == '"' && n >= 2) {
            n -= 2;
            memcpy(old, v + 1, n < cap ? n : cap - 1);
        } else {
            memcpy(old, v, n < cap ? n : cap - 1);
        }
        old[n < cap ? n : cap - 1] = '\0';
    }
    size_t out_len = (size_t)(v - ev) + strlen(with) + strlen(ve);
    char *out = malloc(out_len + 1);
    assert_non_null(out);
    snprintf(out, out_len + 1, "%.*s%s%s", (int)(v - ev), ev, with, ve);
    free(ev);
    return out;
}

/* The event with its per-request values blanked; its model into model[]. */
static char *normalize(const char *ev, char *model, size_t cap)
{
    char *s = strdup(ev);
    assert_non_null(s);
    model[0] = '\0';
    s = blank_value(s, "id", "\"ID\"", NULL, 0);
    s = blank_value(s, "created", "0", NULL, 0);
    s = blank_value(s, "mock_ts", "0", NULL, 0);
    s = blank_value(s, "model", "\"MODEL\"", model, cap);
    return s;
}

static bool is_usage_event(const char *ev)
{
    return strstr(ev, "\"choices\":[]") != NULL && strstr(ev, "\"usage\":{") != NULL;
}

/* ---- requests ---- */

static void post(const char *path, const char *request_id, const char *body, lx_harness_resp_t *r)
{
    char hdr[128] = "";
    if (request_id != NULL)
        snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", request_id);
    assert_int_equal(lx_harness_post(H.port, path, hdr, body, r), 0);
}

/* The body of the last request the mock received, malloc'd. */
static char *upstream_body(size_t *len)
{
    size_t n;
    char *raw = lx_mock_request_raw(H.mock[0], 0, &n);
    assert_non_null(raw);
    size_t hl;
    const char *body;
    assert_true(lx_harness_split(raw, n, &hl, &body));
    char *copy = strndup(body, n - hl);
    assert_non_null(copy);
    *len = n - hl;
    free(raw);
    return copy;
}

/* The access log line of <request_id>. */
static char *log_line(const char *request_id)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", request_id);
    char *line = lx_harness_log_wait(&H, needle, 3000);
    assert_non_null(line);
    return line;
}

/* ---- 1. byte-exact relay ---- */

/*
 * One stream of <chunks> x <chunk_size> through llmux for <model> (served upstream as
 * <up_model>), the mock splitting its writes at <write_size>, compared event for event with
 * the mock's direct answer to the same upstream body.
 */
static void relay_check(const char *model, const char *up_model, unsigned chunks,
                        unsigned chunk_size, unsigned write_size, bool client_usage)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"stream\":true,%s\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}],\"mock\":{\"chunks\":%u,\"chunk_size\":%u,\"write_size\":%u}}",
             model, client_usage ? "\"stream_options\":{\"include_usage\":true}," : "", chunks,
             chunk_size, write_size);
    lx_harness_resp_t a, b;
    post("/v1/chat/completions", NULL, body, &a);
    assert_int_equal(a.status, 200);
    assert_true(a.chunked);
    assert_true(a.complete);

    /* the same bytes straight from the mock */
    size_t ulen;
    char *ubody = upstream_body(&ulen);
    char want[256];
    snprintf(want, sizeof(want), "\"model\":\"%s\"", up_model);
    assert_non_null(strstr(ubody, want));
    assert_int_equal(
        lx_harness_post(lx_mock_port(H.mock[0]), "/v1/chat/completions", NULL, ubody, &b), 0);
    free(ubody);
    assert_int_equal(b.status, 200);
    assert_true(b.complete);

    evs_t ea, eb;
    evs_split(a.body, a.body_len, &ea);
    evs_split(b.body, b.body_len, &eb);
    /* the mock always got include_usage; the client sees the usage event only if it asked */
    assert_int_equal(eb.n, chunks + 3);
    assert_int_equal(ea.n, client_usage ? chunks + 3 : chunks + 2);
    assert_string_equal(ea.v[ea.n - 1], "data: [DONE]");
    size_t j = 0;
    for (size_t i = 0; i < eb.n; i++) {
        if (!client_usage && is_usage_event(eb.v[i]))
            continue;
        assert_true(j < ea.n);
        char ma[256], mb[256];
        char *na = normalize(ea.v[j], ma, sizeof(ma));
        char *nb = normalize(eb.v[i], mb, sizeof(mb));
        if (strcmp(na, nb) != 0) {
            fprintf(stderr, "event %zu differs (write_size %u):\n llmux: %.300s\n mock:  %.300s\n",
                    j, write_size, ea.v[j], eb.v[i]);
            fail();
        }
        if (strcmp(ea.v[j], "data: [DONE]") != 0) {
            assert_string_equal(ma, model); /* what the client sees: the public id */
            assert_string_equal(mb, up_model);
        }
        free(na);
        free(nb);
        j++;
    }
    assert_int_equal(j, ea.n);
    for (size_t i = 0; i < ea.n; i++)
        assert_false(!client_usage && is_usage_event(ea.v[i]));
    evs_free(&ea);
    evs_free(&eb);
    lx_harness_resp_free(&a);
    lx_harness_resp_free(&b);
}

static void test_relay_same_model(void **state)
{
    (void)state;
    /* about 500 KB of SSE in events of ~250 bytes */
    relay_check("same/model", "same/model", 2000, 100, 0, true);
    relay_check("same/model", "same/model", 2000, 100, 0, false);
}

static void test_relay_rewritten_model(void **state)
{
    (void)state;
    relay_check("pub/model", "up-model", 2000, 100, 0, true);
    relay_check("pub/model", "up-model", 2000, 100, 0, false);
}

static void test_relay_write_sizes(void **state)
{
    (void)state;
    /* the upstream's reads split events (and the model value) at every kind of boundary */
    static const struct {
        unsigned write_size, chunks;
    } cases[] = {{1, 200}, {7, 1000}, {100, 2000}, {4096, 2000}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        relay_check("pub/model", "up-model", cases[i].chunks, 100, cases[i].write_size, false);
        relay_check("same/model", "same/model", cases[i].chunks, 100, cases[i].write_size, true);
    }
}

static void test_relay_events_span_reads(void **state)
{
    (void)state;
    /* each event is larger than any read: 40 KB of content per event */
    relay_check("pub/model", "up-model", 40, 40000, 0, false);
    relay_check("pub/model", "up-model", 20, 40000, 4096, true);
    relay_check("same/model", "same/model", 40, 40000, 0, true);
}

/* ---- 2. the response head ---- */

static void test_stream_head(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "head-1", "{\"model\":\"pub/model\",\"stream\":true}", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_true(r.complete);
    char v[256];
    assert_true(lx_harness_resp_header(&r, "content-type", v, sizeof(v)));
    assert_non_null(strstr(v, "text/event-stream"));
    assert_true(lx_harness_resp_header(&r, "cache-control", v, sizeof(v)));
    assert_string_equal(v, "no-cache");
    assert_true(lx_harness_resp_header(&r, "x-accel-buffering", v, sizeof(v)));
    assert_string_equal(v, "no");
    assert_true(lx_harness_resp_header(&r, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "head-1");
    assert_true(lx_harness_resp_header(&r, "x-generation-id", v, sizeof(v)));
    assert_true(strncmp(v, "gen-", 4) == 0);
    assert_true(lx_harness_resp_header(&r, "x-llmux-provider", v, sizeof(v)));
    assert_string_equal(v, "mock-a");
    assert_true(lx_harness_resp_header(&r, "x-llmux-model", v, sizeof(v)));
    assert_string_equal(v, "pub/model");
    assert_true(lx_harness_resp_header(&r, "x-llmux-upstream-model", v, sizeof(v)));
    assert_string_equal(v, "up-model");
    assert_true(lx_harness_resp_header(&r, "transfer-encoding", v, sizeof(v)));
    assert_string_equal(v, "chunked");
    assert_false(lx_harness_resp_header(&r, "content-length", v, sizeof(v)));
    lx_harness_resp_free(&r);
}

/* ---- 3. usage ---- */

/* The log line of <id> says a complete stream with <completion> tokens and the prompt tokens
 * the mock counted for <upstream_len> body bytes, priced at <pp>/<pc> per million. */
static void assert_usage_logged(const char *id, size_t upstream_len, unsigned completion, double pp,
                                double pc, bool stream)
{
    char *line = log_line(id);
    double pt, ct, cost, status;
    assert_true(lx_harness_json_num(line, "status", &status));
    assert_int_equal((int)status, 200);
    /* the mock counts a token per 4 body bytes, rounded up */
    double want_pt = upstream_len > 0 ? (double)((upstream_len + 3) / 4) : 1;
    assert_true(lx_harness_json_num(line, "prompt_tokens", &pt));
    assert_true(lx_harness_json_num(line, "completion_tokens", &ct));
    assert_true(lx_harness_json_num(line, "cost_usd", &cost));
    if (pt != want_pt) {
        fprintf(stderr, "prompt_tokens %.0f, expected %.0f (%zu upstream body bytes): %s\n", pt,
                want_pt, upstream_len, line);
        fail();
    }
    assert_true(ct == (double)completion);
    double want_cost = (pt * pp + ct * pc) / 1e6;
    if (cost - want_cost > 1e-9 || want_cost - cost > 1e-9) {
        fprintf(stderr, "cost %.12f, expected %.12f: %s\n", cost, want_cost, line);
        fail();
    }
    assert_non_null(strstr(line, "\"usage\":\"complete\""));
    assert_non_null(strstr(line, stream ? "\"stream\":true" : "\"stream\":false"));
    assert_null(strstr(line, "\"error\""));
    free(line);
}

static void test_usage_not_asked(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "usage-no",
         "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"chunks\":7}}", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    /* llmux asked the upstream for usage */
    size_t ulen;
    char *ub = upstream_body(&ulen);
    assert_non_null(strstr(ub, "\"stream_options\":{\"include_usage\":true}"));
    free(ub);
    /* ... and the client, who did not, gets none */
    assert_null(strstr(r.body, "\"usage\""));
    assert_int_equal(count(r.body, "\"choices\":[]"), 0);
    assert_int_equal(count(r.body, "\"finish_reason\":\"stop\""), 1);
    assert_true(r.body_len >= 14);
    assert_string_equal(r.body + r.body_len - 14, "data: [DONE]\n\n");
    assert_int_equal(count(r.body, "data: "), 7 + 2);
    lx_harness_resp_free(&r);
    assert_usage_logged("usage-no", ulen, 7, PRICE_PUB_P, PRICE_PUB_C, true);

    /* a client that asked for false is treated the same */
    post("/v1/chat/completions", "usage-false",
         "{\"model\":\"same/model\",\"stream\":true,\"stream_options\":{\"include_usage\":false},"
         "\"mock\":{\"chunks\":3}}",
         &r);
    assert_int_equal(r.status, 200);
    ub = upstream_body(&ulen);
    assert_non_null(strstr(ub, "\"include_usage\":true"));
    assert_null(strstr(ub, "\"include_usage\":false"));
    free(ub);
    assert_null(strstr(r.body, "\"usage\""));
    assert_string_equal(r.body + r.body_len - 14, "data: [DONE]\n\n");
    lx_harness_resp_free(&r);
    assert_usage_logged("usage-false", ulen, 3, PRICE_SAME_P, PRICE_SAME_C, true);
}

/* Exactly one usage event, right before [DONE], with the mock's counts. */
static void assert_one_usage_event(const lx_harness_resp_t *r, unsigned completion)
{
    evs_t e;
    evs_split(r->body, r->body_len, &e);
    size_t n_usage = 0;
    for (size_t i = 0; i < e.n; i++)
        n_usage += is_usage_event(e.v[i]);
    assert_int_equal(n_usage, 1);
    assert_true(e.n >= 2);
    assert_true(is_usage_event(e.v[e.n - 2]));
    assert_string_equal(e.v[e.n - 1], "data: [DONE]");
    double ct;
    assert_true(lx_harness_json_num(strstr(e.v[e.n - 2], "\"usage\""), "completion_tokens", &ct));
    assert_true(ct == (double)completion);
    evs_free(&e);
}

static void test_usage_asked(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "usage-yes",
         "{\"model\":\"pub/model\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"mock\":{\"chunks\":5}}",
         &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_one_usage_event(&r, 5);
    lx_harness_resp_free(&r);
    size_t ulen;
    free(upstream_body(&ulen));
    assert_usage_logged("usage-yes", ulen, 5, PRICE_PUB_P, PRICE_PUB_C, true);
}

/* OpenRouter's rule under /api/v1: every stream ends with its usage chunk, asked for or not
 * (@openrouter/ai-sdk-provider reads the cost there); under /v1 OpenRouter's own way of asking,
 * `usage: {include: true}`, counts as asking, and is not forwarded. */
static void test_usage_openrouter(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/api/v1/chat/completions", "usage-or",
         "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"chunks\":6}}", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_one_usage_event(&r, 6);
    assert_non_null(strstr(r.body, "\"model\":\"pub/model\""));
    lx_harness_resp_free(&r);
    size_t ulen;
    free(upstream_body(&ulen));
    assert_usage_logged("usage-or", ulen, 6, PRICE_PUB_P, PRICE_PUB_C, true);

    post("/v1/chat/completions", "usage-include",
         "{\"model\":\"pub/model\",\"stream\":true,\"usage\":{\"include\":true},"
         "\"mock\":{\"chunks\":2}}",
         &r);
    assert_int_equal(r.status, 200);
    assert_one_usage_event(&r, 2);
    lx_harness_resp_free(&r);
    char *ub = upstream_body(&ulen);
    assert_non_null(strstr(ub, "\"include_usage\":true"));
    assert_null(strstr(ub, "\"include\""));
    free(ub);

    /* ... and `include: false` is no asking */
    post("/v1/chat/completions", "usage-include-no",
         "{\"model\":\"pub/model\",\"stream\":true,\"usage\":{\"include\":false},"
         "\"mock\":{\"chunks\":2}}",
         &r);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "\"usage\""));
    lx_harness_resp_free(&r);
}

static void test_usage_always_sent(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "usage-always",
         "{\"model\":\"same/model\",\"stream\":true,\"mock\":{\"chunks\":4}}", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_one_usage_event(&r, 4);
    lx_harness_resp_free(&r);
    size_t ulen;
    char *ub = upstream_body(&ulen);
    assert_non_null(strstr(ub, "\"include_usage\":true"));
    free(ub);
    assert_usage_logged("usage-always", ulen, 4, PRICE_SAME_P, PRICE_SAME_C, true);
}

static void test_usage_unknown(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "usage-none",
         "{\"model\":\"pub/model\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"mock\":{\"chunks\":3,\"usage\":0}}",
         &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_null(strstr(r.body, "\"usage\""));
    assert_string_equal(r.body + r.body_len - 14, "data: [DONE]\n\n");
    lx_harness_resp_free(&r);
    char *line = log_line("usage-none");
    /* unknown is null, never 0 */
    assert_non_null(strstr(line, "\"prompt_tokens\":null"));
    assert_non_null(strstr(line, "\"completion_tokens\":null"));
    assert_non_null(strstr(line, "\"cost_usd\":null"));
    assert_non_null(strstr(line, "\"usage\":\"unknown\""));
    assert_non_null(strstr(line, "\"stream\":true"));
    free(line);
}

/* A stream large enough to fill the client's send queue is accounted like a short one: one
 * access log line with its usage, once the client has it all. */
static void test_large_stream_logged(void **state)
{
    (void)state;
    static const unsigned sizes[] = {100, 1000, 2000, 20000}; /* chunks of 1000 bytes */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char body[256], id[32];
        snprintf(body, sizeof(body),
                 "{\"model\":\"pub/model\",\"stream\":true,"
                 "\"mock\":{\"chunks\":%u,\"chunk_size\":1000}}",
                 sizes[i]);
        snprintf(id, sizeof(id), "large-%u", sizes[i]);
        lx_harness_resp_t r;
        post("/v1/chat/completions", id, body, &r);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        assert_int_equal(count(r.body, "\"content\":"), sizes[i]);
        size_t wire = r.wire_len;
        lx_harness_resp_free(&r);
        size_t ulen;
        free(upstream_body(&ulen));
        char needle[64];
        snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", id);
        char *line = lx_harness_log_wait(&H, needle, 2000);
        if (line == NULL) {
            fprintf(stderr, "%s: a complete stream of %zu bytes was never logged\n", id, wire);
            fail();
        }
        free(line);
        assert_usage_logged(id, ulen, sizes[i], PRICE_PUB_P, PRICE_PUB_C, true);
    }
}

/* ---- 4. non-streaming ---- */

static void test_non_streaming(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    post("/v1/chat/completions", "plain-1", "{\"model\":\"pub/model\",\"mock\":{\"chunks\":6}}",
         &r);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    char v[256];
    assert_true(lx_harness_resp_header(&r, "content-type", v, sizeof(v)));
    assert_non_null(strstr(v, "application/json"));
    assert_true(lx_harness_json_str(r.body, "model", v, sizeof(v)));
    assert_string_equal(v, "pub/model");
    assert_null(strstr(r.body, "up-model"));
    assert_non_null(strstr(r.body, "\"object\":\"chat.completion\""));
    lx_harness_resp_free(&r);
    size_t ulen;
    char *ub = upstream_body(&ulen);
    assert_non_null(strstr(ub, "\"model\":\"up-model\""));
    assert_null(strstr(ub, "include_usage")); /* not a stream: nothing added */
    free(ub);
    assert_usage_logged("plain-1", ulen, 6, PRICE_PUB_P, PRICE_PUB_C, false);
}

/* ---- 6. the upstream refuses a stream with a JSON error ---- */

static void test_stream_upstream_error_status(void **state)
{
    (void)state;
    static const struct {
        int mock_status, client_status;
    } cases[] = {{429, 429}, {500, 503}, {400, 400}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256], id[32];
        snprintf(body, sizeof(body),
                 "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"status\":%d}}",
                 cases[i].mock_status);
        snprintf(id, sizeof(id), "err-%d", cases[i].mock_status);
        lx_harness_resp_t r;
        post("/v1/chat/completions", id, body, &r);
        /* a plain HTTP error in llmux's envelope, not an event stream */
        assert_true(lx_harness_is_error(&r, cases[i].client_status));
        assert_null(strstr(r.body, "data:"));
        char v[1024];
        assert_true(lx_harness_json_str(r.body, "message", v, sizeof(v)));
        char want[64];
        snprintf(want, sizeof(want), "mock: injected status %d", cases[i].mock_status);
        assert_non_null(strstr(v, want));
        bool ra = lx_harness_resp_header(&r, "retry-after", v, sizeof(v));
        if (cases[i].mock_status == 429) {
            assert_true(ra);
            assert_string_equal(v, "1");
        }
        lx_harness_resp_free(&r);
        char *line = log_line(id);
        double st;
        assert_true(lx_harness_json_num(line, "status", &st));
        assert_int_equal((int)st, cases[i].client_status);
        free(line);
    }
}

/* ---- 7. early commit ---- */

/* An incrementally read streamed response: head, then the chunked body decoded as it comes. */
typedef struct {
    lx_harness_conn_t c;
    int status;
    char head[4096];
    char *body; /* decoded so far, NUL-terminated */
    size_t len, cap;
    bool ended; /* the terminating chunk came */
    bool bad;   /* broken framing */
} sc_t;

static void sc_start(sc_t *s, const char *path, const char *body)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(lx_harness_connect(&s->c, H.port), 0);
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, strlen(body), body);
    assert_int_equal(lx_harness_send(&s->c, req, (size_t)n), 0);
}

static void sc_free(sc_t *s)
{
    lx_harness_close(&s->c);
    free(s->body);
}

static void take(lx_harness_conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

/* Waits until <deadline> for more bytes; false when none came. */
static bool more(sc_t *s, uint64_t deadline)
{
    uint64_t now = lx_harness_now_ms();
    if (now >= deadline)
        return false;
    return lx_harness_wait_bytes(&s->c, s->c.len + 1, (int)(deadline - now));
}

static bool sc_head(sc_t *s, int ms)
{
    uint64_t deadline = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        const char *e = s->c.len ? memmem(s->c.buf, s->c.len, "\r\n\r\n", 4) : NULL;
        if (e != NULL) {
            size_t hl = (size_t)(e - s->c.buf) + 4;
            assert_true(hl < sizeof(s->head));
            memcpy(s->head, s->c.buf, hl);
            s->head[hl] = '\0';
            assert_int_equal(sscanf(s->head, "HTTP/1.1 %d", &s->status), 1);
            take(&s->c, hl);
            return true;
        }
        if (!more(s, deadline))
            return false;
    }
}

static void sc_decode(sc_t *s)
{
    while (!s->ended && !s->bad && s->c.len > 0) {
        char *buf = s->c.buf;
        const char *eol = memmem(buf, s->c.len, "\r\n", 2);
        if (eol == NULL)
            return;
        char *end;
        unsigned long long size = strtoull(buf, &end, 16);
        size_t hl = (size_t)(eol - buf) + 2;
        if (end == buf) {
            s->bad = true;
            return;
        }
        if (s->c.len < hl + size + 2)
            return;
        if (memcmp(buf + hl + size, "\r\n", 2) != 0) {
            s->bad = true;
            return;
        }
        if (size == 0) {
            s->ended = true;
            take(&s->c, hl + 2);
            return;
        }
        if (s->len + size + 1 > s->cap) {
            s->cap = (s->len + size + 1) * 2;
            s->body = realloc(s->body, s->cap);
            assert_non_null(s->body);
        }
        memcpy(s->body + s->len, buf + hl, size);
        s->len += size;
        s->body[s->len] = '\0';
        take(&s->c, hl + size + 2);
    }
}

/* Reads until the decoded body holds <needle> (NULL: until the end); true when it does. */
static bool sc_until(sc_t *s, const char *needle, int ms)
{
    uint64_t deadline = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        sc_decode(s);
        if (needle != NULL && s->body != NULL && strstr(s->body, needle) != NULL)
            return true;
        if (needle == NULL && s->ended)
            return true;
        if (s->ended || s->bad || !more(s, deadline))
            return false;
    }
}

/* The last event of the decoded body (after the last blank line but one). */
static const char *last_event(const sc_t *s)
{
    assert_true(s->len >= 2 && memcmp(s->body + s->len - 2, "\n\n", 2) == 0);
    const char *p = s->body + s->len - 2;
    while (p > s->body && !(p[-1] == '\n' && p - 1 > s->body && p[-2] == '\n'))
        p--;
    return p;
}

static void test_early_commit_keepalives(void **state)
{
    (void)state;
    sc_t s;
    uint64_t t0 = lx_harness_now_ms();
    sc_start(&s, "/v1/chat/completions",
             "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"delay_ms\":400,\"chunks\":3}}");
    /* the head comes at once, long before the upstream answers */
    assert_true(sc_head(&s, 300));
    assert_true(lx_harness_now_ms() - t0 < 250);
    assert_int_equal(s.status, 200);
    char v[128];
    assert_true(lx_harness_head_header(s.head, strlen(s.head), "content-type", v, sizeof(v)));
    assert_non_null(strstr(v, "text/event-stream"));
    assert_true(lx_harness_head_header(s.head, strlen(s.head), "transfer-encoding", v, sizeof(v)));
    assert_string_equal(v, "chunked");
    /* sent before any provider is tried: it cannot name one */
    assert_false(lx_harness_head_header(s.head, strlen(s.head), "x-llmux-provider", v, sizeof(v)));
    assert_true(lx_harness_head_header(s.head, strlen(s.head), "x-generation-id", v, sizeof(v)));
    assert_true(lx_harness_head_header(s.head, strlen(s.head), "cache-control", v, sizeof(v)));
    assert_string_equal(v, "no-cache");
    /* keep-alive comments until the first token (at 50 ms, then every 100 ms) */
    assert_true(sc_until(&s, ": keep-alive\n\n", 300));
    assert_true(sc_until(&s, "data: ", 3000));
    size_t before = (size_t)(strstr(s.body, "data: ") - s.body);
    assert_true(before >= 2 * 14);
    assert_int_equal(before % 14, 0);
    for (size_t off = 0; off < before; off += 14)
        assert_memory_equal(s.body + off, ": keep-alive\n\n", 14);
    assert_true(lx_harness_now_ms() - t0 >= 380);
    /* then the stream itself, complete */
    assert_true(sc_until(&s, NULL, 3000));
    assert_false(s.bad);
    assert_int_equal(count(s.body + before, "\"content\":"), 3);
    assert_int_equal(count(s.body, ": keep-alive"), before / 14); /* none after the first byte */
    assert_string_equal(last_event(&s), "data: [DONE]\n\n");
    assert_null(strstr(s.body, "\"error\""));
    assert_non_null(strstr(s.body, "\"model\":\"pub/model\""));
    sc_free(&s);
}

/* A committed stream whose upstream fails before its first byte: 200, then an error event. */
static void early_failure(const char *model, const char *mock, const char *in_message)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"stream\":true%s%s}", model,
             mock ? ",\"mock\":" : "", mock ? mock : "");
    sc_t s;
    sc_start(&s, "/v1/chat/completions", body);
    assert_true(sc_head(&s, 1000));
    assert_int_equal(s.status, 200);
    assert_true(sc_until(&s, NULL, 3000));
    assert_false(s.bad);
    const char *ev = last_event(&s);
    /* OpenAI's shape under /v1: a 502's type, code null (never the status as a number) */
    assert_true(strncmp(ev, "data: {\"error\":{\"message\":", 26) == 0);
    char msg[1024];
    assert_true(lx_harness_json_str(ev, "type", msg, sizeof(msg)));
    assert_string_equal(msg, "server_error");
    assert_non_null(strstr(ev, "\"param\":null,\"code\":null}}"));
    assert_true(lx_harness_json_str(ev, "message", msg, sizeof(msg)));
    if (strstr(msg, in_message) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, in_message);
        fail();
    }
    assert_null(strstr(s.body, "[DONE]"));
    assert_null(strstr(ev, "\"choices\""));
    sc_free(&s);
}

static void test_early_commit_failures(void **state)
{
    (void)state;
    early_failure("pub/model", "{\"status\":500}", "mock: injected status 500");
    early_failure("dead", NULL, "dead-provider");
}

static void test_no_early_commit(void **state)
{
    (void)state;
    sc_t s;
    sc_start(&s, "/v1/chat/completions",
             "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"delay_ms\":400,\"chunks\":2}}");
    /* nothing at all while the upstream is silent */
    assert_true(lx_harness_still_open(&s.c, 200));
    assert_true(sc_head(&s, 3000));
    assert_int_equal(s.status, 200);
    assert_true(sc_until(&s, NULL, 3000));
    assert_null(strstr(s.body, "keep-alive"));
    assert_true(strncmp(s.body, "data: {", 7) == 0);
    assert_string_equal(last_event(&s), "data: [DONE]\n\n");
    sc_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relay_same_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_rewritten_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_write_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_events_span_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_stream_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_not_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_openrouter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_always_sent, setup_always_usage, teardown),
        cmocka_unit_test_setup_teardown(test_usage_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_upstream_error_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_commit_keepalives, setup_early, teardown),
        cmocka_unit_test_setup_teardown(test_early_commit_failures, setup_early, teardown),
        cmocka_unit_test_setup_teardown(test_no_early_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
