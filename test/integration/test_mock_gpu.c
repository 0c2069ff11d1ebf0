/*
 * test_mock_gpu.c - the mock's GPU-server mode (test/mock/README.md, "GPU mode"), driven over
 * loopback with the harness's blocking client: the queue beyond max_running, prefix-cache hits
 * and their effect on time to first byte, the LRU's bound, decode slowing with the batch,
 * /metrics in vLLM's names, determinism with a seed, and a client leaving the queue.
 *
 * Timings are set so that the relations asserted (an order, a factor of 2 or 3) hold with a
 * wide margin on a loaded machine; no test asserts a wall-clock figure with a tight bound.
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
#include "mock.h"

static lx_mock_t *mock;

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

/* GPU mode on mock with the defaults, then the changes the test wants. */
static lx_mock_gpu_t base_cfg(void)
{
    lx_mock_gpu_t g;
    lx_mock_gpu_defaults(&g);
    g.prefill_base_us = 0;
    g.prefill_us_per_token = 0;
    return g;
}

static void set_gpu(lx_mock_t *m, const lx_mock_gpu_t *g)
{
    assert_int_equal(lx_mock_set_gpu(m, g), 0);
}

static lx_mock_gpu_stats_t stats(lx_mock_t *m)
{
    lx_mock_gpu_stats_t s;
    lx_mock_gpu_stats(m, &s);
    return s;
}

/* A prompt text of n bytes, a pattern keyed by seed (different seeds differ in byte 0). */
static char *text(size_t n, unsigned seed)
{
    char *t = malloc(n + 1);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++)
        t[i] = (char)('a' + (seed + i * 7 + i / 26) % 26);
    t[n] = '\0';
    return t;
}

/* The raw request: a chat completion with a system prompt and a user message. */
static char *chat_req(const char *sys, const char *user, int max_tokens, int stream)
{
    size_t n = strlen(sys) + strlen(user) + 512;
    char *body = malloc(n);
    assert_non_null(body);
    int bl = snprintf(body, n,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
                      "{\"role\":\"user\",\"content\":\"%s\"}]%s%s%.0d}",
                      sys, user, stream ? ",\"stream\":true" : "",
                      max_tokens > 0 ? ",\"max_tokens\":" : "", max_tokens);
    char *req = malloc((size_t)bl + 256);
    assert_non_null(req);
    sprintf(req,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n%s",
            bl, body);
    free(body);
    return req;
}

static void send_chat(lx_harness_conn_t *c, const char *sys, const char *user, int max_tokens,
                      int stream)
{
    assert_int_equal(lx_harness_connect(c, lx_mock_port(mock)), 0);
    char *req = chat_req(sys, user, max_tokens, stream);
    assert_int_equal(lx_harness_send_str(c, req), 0);
    free(req);
}

/* Reads the whole answer on c, checks it is a complete 200, closes c. */
static void finish(lx_harness_conn_t *c)
{
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    lx_harness_resp_free(&r);
    lx_harness_close(c);
}

typedef struct {
    lx_mock_t *m;
    uint32_t running, waiting;
} want_t;

static bool reached(void *arg)
{
    want_t *w = arg;
    lx_mock_gpu_stats_t s = stats(w->m);
    return s.running == w->running && s.waiting == w->waiting;
}

static void wait_engine(lx_mock_t *m, uint32_t running, uint32_t waiting)
{
    want_t w = {m, running, waiting};
    assert_true(lx_harness_wait_until(reached, &w, 3000));
}

/* Time from sending to the first byte of the answer, then the rest read and checked. */
static uint64_t ttfb_ms(const char *sys, const char *user)
{
    lx_harness_conn_t c;
    uint64_t t0 = lx_harness_now_ms();
    send_chat(&c, sys, user, 1, 1);
    assert_true(lx_harness_wait_bytes(&c, 1, 5000));
    uint64_t t = lx_harness_now_ms() - t0;
    finish(&c);
    return t;
}

/* ---- tests ---- */

/* With max_running 2, a third request waits: no byte while two run, its first byte only after
 * one of them finished. */
static void test_queue_beyond_max_running(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.max_running = 2;
    g.itl_us = 30000;
    g.itl_alpha = 0;
    set_gpu(mock, &g);
    lx_harness_conn_t c[3];
    send_chat(&c[0], "first", "a", 10, 1);
    send_chat(&c[1], "second", "b", 10, 1);
    wait_engine(mock, 2, 0);
    send_chat(&c[2], "third", "c", 10, 1);
    wait_engine(mock, 2, 1);
    assert_true(lx_harness_wait_bytes(&c[0], 1, 2000)); /* the first two are streaming */
    assert_true(lx_harness_wait_bytes(&c[1], 1, 2000));
    assert_false(lx_harness_wait_bytes(&c[2], 1, 150)); /* ~300 ms of decode left */
    assert_int_equal(stats(mock).success, 0);
    assert_true(lx_harness_wait_bytes(&c[2], 1, 3000));
    assert_true(stats(mock).success >= 1); /* admitted when one of them had finished */
    for (int i = 0; i < 3; i++)
        finish(&c[i]);
    lx_mock_gpu_stats_t s = stats(mock);
    assert_int_equal(s.success, 3);
    assert_int_equal(s.max_waiting, 1);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 0);
}

/* The second request with the same long system prompt finds it in the cache: far quicker to
 * its first byte than a cold one, and counted in the hits (in tokens). */
static void test_prefix_hit(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.prefill_us_per_token = 200; /* 4,000 bytes = 1,000 tokens = 200 ms cold */
    set_gpu(mock, &g);
    char *sys = text(4000, 1);
    char *other = text(4000, 2);
    uint64_t cold = ttfb_ms(sys, "question one");
    lx_mock_gpu_stats_t s1 = stats(mock);
    assert_int_equal(s1.prefix_hits, 0);
    assert_true(s1.prefix_queries >= 1000);
    uint64_t warm = ttfb_ms(sys, "question two");
    lx_mock_gpu_stats_t s2 = stats(mock);
    uint64_t hits = s2.prefix_hits - s1.prefix_hits;
    assert_true(hits >= 900); /* the system prompt's blocks, 16 tokens each */
    assert_true(hits < s2.prefix_queries - s1.prefix_queries);
    uint64_t cold2 = ttfb_ms(other, "question one");
    assert_int_equal(stats(mock).prefix_hits, s2.prefix_hits); /* nothing shared */
    fprintf(stderr, "ttfb cold %llu ms, warm %llu ms, other cold %llu ms\n",
            (unsigned long long)cold, (unsigned long long)warm, (unsigned long long)cold2);
    assert_true(cold >= 150);
    assert_true(warm * 3 < cold);
    assert_true(warm * 3 < cold2);
    free(sys);
    free(other);
}

/* The cache holds cache_blocks blocks: a prompt longer than that caches its leading blocks; a
 * second prompt evicts the first; the first then misses. */
static void test_lru_eviction_bounded(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.cache_blocks = 8;
    g.block_tokens = 16; /* 64 bytes */
    set_gpu(mock, &g);
    char *p1 = text(1024, 3);
    char *p2 = text(1024, 4);
    ttfb_ms(p1, "x");
    assert_int_equal(stats(mock).cached_blocks, 8);
    uint64_t h0 = stats(mock).prefix_hits;
    ttfb_ms(p1, "x");
    assert_int_equal(stats(mock).prefix_hits - h0, 8 * 16); /* its first 8 blocks */
    ttfb_ms(p2, "x");
    assert_int_equal(stats(mock).cached_blocks, 8);
    uint64_t h1 = stats(mock).prefix_hits;
    ttfb_ms(p1, "x");
    assert_int_equal(stats(mock).prefix_hits, h1); /* evicted by p2 */
    assert_int_equal(stats(mock).cached_blocks, 8);
    free(p1);
    free(p2);
}

/* Decode time of a request alone and of each of four at once (itl x (1 + (4 - 1)) with
 * itl_alpha 1). */
static void test_decode_slows_with_batch(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.max_running = 4;
    g.itl_us = 10000;
    g.itl_alpha = 1.0;
    set_gpu(mock, &g);
    lx_harness_conn_t c[4];
    uint64_t t0 = lx_harness_now_ms();
    send_chat(&c[0], "alone", "a", 10, 1);
    finish(&c[0]);
    uint64_t alone = lx_harness_now_ms() - t0;
    t0 = lx_harness_now_ms();
    for (int i = 0; i < 4; i++)
        send_chat(&c[i], "batch", "b", 10, 1);
    uint64_t first_done = 0;
    for (int i = 0; i < 4; i++) {
        finish(&c[i]);
        if (i == 0)
            first_done = lx_harness_now_ms() - t0;
    }
    fprintf(stderr, "10 tokens alone %llu ms, in a batch of 4 %llu ms\n", (unsigned long long)alone,
            (unsigned long long)first_done);
    assert_true(alone >= 80);
    assert_true(first_done > 2 * alone);
    assert_int_equal(stats(mock).success, 5);
}

/* The value of the sample line "<name>{model_name=\"<model>\"} <v>" in text; -1 if absent. */
static double sample(const char *text, const char *name, const char *model)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s{model_name=\"%s\"} ", name, model);
    const char *p = strstr(text, want);
    return p ? strtod(p + strlen(want), NULL) : -1.0;
}

static int has_family(const char *text, const char *name, const char *type)
{
    char help[256], typ[256];
    snprintf(help, sizeof(help), "# HELP %s ", name);
    snprintf(typ, sizeof(typ), "# TYPE %s %s\n", name, type);
    return strstr(text, help) != NULL && strstr(text, typ) != NULL;
}

static char *get_metrics(lx_mock_t *m)
{
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_get(lx_mock_port(m), "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_true(lx_harness_resp_header(&r, "content-type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "text/plain"));
    char *body = malloc(r.body_len + 2);
    assert_non_null(body);
    body[0] = '\n'; /* every sample line then starts after a newline */
    memcpy(body + 1, r.body, r.body_len + 1);
    lx_harness_resp_free(&r);
    return body;
}

/* /metrics while one request runs and one waits, then after both: vLLM's names, HELP and TYPE
 * lines, the model_name label, the values the engine has; legacy_metrics switches names. */
static void test_metrics(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.max_running = 1;
    g.itl_us = 20000;
    g.itl_alpha = 0;
    g.cache_blocks = 100;
    strcpy(g.model_name, "llama-3-8b");
    set_gpu(mock, &g);
    char *sys = text(1280, 5); /* 20 blocks */
    lx_harness_conn_t c[2];
    send_chat(&c[0], sys, "a", 20, 1);
    send_chat(&c[1], sys, "b", 20, 0);
    wait_engine(mock, 1, 1);
    char *t = get_metrics(mock);
    const char *mn = "llama-3-8b";
    assert_true(has_family(t, "vllm:num_requests_running", "gauge"));
    assert_true(has_family(t, "vllm:num_requests_waiting", "gauge"));
    assert_true(has_family(t, "vllm:kv_cache_usage_perc", "gauge"));
    assert_true(has_family(t, "vllm:prefix_cache_queries_total", "counter"));
    assert_true(has_family(t, "vllm:prefix_cache_hits_total", "counter"));
    assert_true(has_family(t, "vllm:request_success_total", "counter"));
    assert_true(sample(t, "vllm:num_requests_running", mn) == 1.0);
    assert_true(sample(t, "vllm:num_requests_waiting", mn) == 1.0);
    double kv = sample(t, "vllm:kv_cache_usage_perc", mn);
    assert_true(kv > 0.2 && kv <= 1.0); /* 20+ of 100 blocks held by the running one */
    assert_null(strstr(t, "gpu_cache_usage_perc"));
    free(t);
    finish(&c[0]);
    finish(&c[1]);
    t = get_metrics(mock);
    lx_mock_gpu_stats_t s = stats(mock);
    assert_true(sample(t, "vllm:num_requests_running", mn) == 0.0);
    assert_true(sample(t, "vllm:num_requests_waiting", mn) == 0.0);
    assert_true(sample(t, "vllm:request_success_total", mn) == 2.0);
    assert_true(sample(t, "vllm:prefix_cache_queries_total", mn) == (double)s.prefix_queries);
    assert_true(sample(t, "vllm:prefix_cache_hits_total", mn) == (double)s.prefix_hits);
    assert_true(s.prefix_hits >= 20 * 16);
    double idle_kv = sample(t, "vllm:kv_cache_usage_perc", mn);
    assert_true(idle_kv >= 0.0 && idle_kv < kv); /* cached but unpinned blocks are free */
    assert_non_null(strstr(t, "vllm:cache_config_info{block_size=\"16\","));
    free(t);

    g.legacy_metrics = true;
    set_gpu(mock, &g);
    t = get_metrics(mock);
    assert_true(has_family(t, "vllm:gpu_cache_usage_perc", "gauge"));
    assert_true(sample(t, "vllm:gpu_cache_usage_perc", mn) >= 0.0);
    assert_true(sample(t, "vllm:gpu_prefix_cache_hits_total", mn) == (double)s.prefix_hits);
    assert_null(strstr(t, "vllm:kv_cache_usage_perc"));
    free(t);
    free(sys);

    /* GPU mode off: the plain mock again, /metrics is unknown */
    set_gpu(mock, NULL);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_get(lx_mock_port(mock), "/metrics", &r), 0);
    assert_int_equal(r.status, 404);
    lx_harness_resp_free(&r);
}

/* completion_tokens of the usage in a non-streaming answer. */
static int completion_tokens(lx_mock_t *m, const char *sys, const char *user)
{
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, lx_mock_port(m)), 0);
    char *req = chat_req(sys, user, 0, 0);
    assert_int_equal(lx_harness_send_str(&c, req), 0);
    free(req);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    double v = -1;
    assert_true(lx_harness_json_num(r.body, "completion_tokens", &v));
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    return (int)v;
}

/* The same requests to two servers with the same seed: the same output lengths and prefix
 * figures; another seed, other lengths. */
static void test_determinism_with_seed(void **state)
{
    lx_mock_t *ms[3] = {mock, lx_mock_start("127.0.0.1", 0), lx_mock_start("127.0.0.1", 0)};
    assert_non_null(ms[1]);
    assert_non_null(ms[2]);
    int lens[3][8];
    lx_mock_gpu_stats_t st[3];
    char *sys = text(700, 6);
    for (int k = 0; k < 3; k++) {
        lx_mock_gpu_t g = base_cfg();
        g.itl_us = 0;
        g.output_tokens = 1000;
        g.random_output = true;
        g.cache_blocks = 20;
        g.seed = k == 2 ? 43 : 42;
        set_gpu(ms[k], &g);
        for (int i = 0; i < 8; i++) {
            char user[32];
            snprintf(user, sizeof(user), "turn %d", i % 5);
            lens[k][i] = completion_tokens(ms[k], i % 3 ? sys : "short", user);
            assert_true(lens[k][i] >= 1 && lens[k][i] <= 1000);
        }
        st[k] = stats(ms[k]);
    }
    assert_memory_equal(lens[0], lens[1], sizeof(lens[0]));
    assert_int_equal(st[0].prefix_queries, st[1].prefix_queries);
    assert_int_equal(st[0].prefix_hits, st[1].prefix_hits);
    assert_true(st[0].prefix_hits > 0);
    assert_true(memcmp(lens[0], lens[2], sizeof(lens[0])) != 0);
    /* the same prompt, the same length */
    assert_int_equal(lens[0][2], lens[0][7]);
    lx_mock_stop(ms[1]);
    lx_mock_stop(ms[2]);
    free(sys);
}

/* A client that leaves while queued leaves the queue at once: the bounded queue has room
 * again, and the engine never runs its request. */
static void test_client_leaves_queue(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.max_running = 1;
    g.max_waiting = 1;
    g.itl_us = 20000;
    g.itl_alpha = 0;
    set_gpu(mock, &g);
    lx_harness_conn_t run, queued, extra, late;
    send_chat(&run, "running", "a", 20, 1);
    wait_engine(mock, 1, 0);
    send_chat(&queued, "queued", "b", 5, 1);
    wait_engine(mock, 1, 1);
    /* the queue is full: 429 at once */
    send_chat(&extra, "extra", "c", 5, 1);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&extra, &r), 0);
    assert_int_equal(r.status, 429);
    lx_harness_resp_free(&r);
    lx_harness_close(&extra);
    /* the queued client leaves: its place is free */
    lx_harness_close(&queued);
    wait_engine(mock, 1, 0);
    send_chat(&late, "late", "d", 5, 1);
    wait_engine(mock, 1, 1);
    finish(&run);
    finish(&late);
    lx_mock_gpu_stats_t s = stats(mock);
    assert_int_equal(s.admitted, 2); /* the one that left never ran */
    assert_int_equal(s.success, 2);
    assert_int_equal(s.waiting, 0);
    assert_int_equal(s.running, 0);
    assert_int_equal(lx_mock_answered_limited(mock), 1);
}

/* A stream decoded faster than the socket takes it (itl 0, 4,000 tokens, ~750 KB): the engine
 * pauses at the mock's output high-water mark and goes on as it drains; every token arrives. */
static void test_long_stream_backpressure(void **state)
{
    lx_mock_gpu_t g = base_cfg();
    g.itl_us = 0;
    set_gpu(mock, &g);
    lx_harness_conn_t c;
    send_chat(&c, "long", "a", 4000, 1);
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    size_t n = 0;
    for (const char *p = strstr(r.body, "\"content\":\""); p; p = strstr(p + 1, "\"content\":\""))
        n++;
    assert_int_equal(n, 4000);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    assert_int_equal(stats(mock).success, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_beyond_max_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_slows_with_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_determinism_with_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_leaves_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_stream_backpressure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
