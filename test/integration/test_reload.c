/*
 * test_reload.c - a configuration reload while 100 streams run: every stream completes intact
 * on the configuration it started with, and new requests see the new one. Also: an invalid
 * file changes nothing (main.c loads before publishing, so here: the old model keeps working
 * until a valid reload removes it).
 *
 * Retired generations: after many reloads only the workers' current generations stay
 * allocated once the requests are over (every reload used to keep the old one until
 * shutdown); one that a long stream still uses stays until that stream ends, then goes; the
 * idle upstream connections of an old generation close at the reload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "harness.h"

#define STREAMS 100
#define CHUNKS  20

static const char *const base_cfg = "listen: 127.0.0.1:0\n"
                                    "workers: 2\n"
                                    "timeouts: {shutdown: 2s}\n"
                                    "providers:\n"
                                    "  - name: mock-a\n"
                                    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                                    "    max_connections: 256\n"
                                    "models:\n"
                                    "  - id: old/model\n"
                                    "    context_length: 4096\n"
                                    "    providers: [{provider: mock-a, model: up-old}]\n"
                                    "auth: none\n"
                                    "log: {access_log: off, level: error}\n";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, base_cfg);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

static lx_config_t *new_config(void)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:0\n"
             "workers: 2\n"
             "timeouts: {shutdown: 2s}\n"
             "providers:\n"
             "  - name: mock-b\n"
             "    base_url: http://127.0.0.1:%u/v2\n"
             "models:\n"
             "  - id: new/model\n"
             "    context_length: 4096\n"
             "    providers: [{provider: mock-b, model: up-new}]\n"
             "auth: none\n"
             "log: {access_log: off, level: error}\n",
             lx_mock_port(H.mock[0]));
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("reload.yaml", text, strlen(text), stderr, &cfg), 0);
    return cfg;
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A configuration serving <model> from the mock (path /v1 or /v2), with <workers> workers. */
static lx_config_t *config_for(const char *model, int v, int workers)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:0\n"
             "workers: %d\n"
             "timeouts: {shutdown: 2s}\n"
             "providers:\n"
             "  - name: mock-%c\n"
             "    base_url: http://127.0.0.1:%u/v%d\n"
             "models:\n"
             "  - id: %s\n"
             "    context_length: 4096\n"
             "    providers: [{provider: mock-%c}]\n"
             "auth: none\n"
             "log: {access_log: off, level: error}\n",
             workers, 'a' + v, lx_mock_port(H.mock[0]), v, model, 'a' + v);
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("reload.yaml", text, strlen(text), stderr, &cfg), 0);
    return cfg;
}

static void reload_to(const char *model, int v)
{
    lx_config_t *cfg = config_for(model, v, 2);
    lx_gateway_reload(H.gw, cfg);
    lx_config_unref(cfg);
}

static size_t want_generations;

static bool generations_are(void *arg)
{
    (void)arg;
    return lx_gateway_generations(H.gw) == want_generations;
}

/* Established TCP connections to the mock's port (its clients' ends), from /proc/net/tcp:
 * this process holds both ends, the mock's (local port) and llmux's (remote port). */
static int upstream_connections(void)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return -1;
    char line[512];
    int n = 0;
    unsigned port = lx_mock_port(H.mock[0]);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned lport, rport, st;
        if (sscanf(line, " %*d: %*8x:%x %*8x:%x %x", &lport, &rport, &st) == 3 && rport == port &&
            st == 1)
            n++;
    }
    fclose(f);
    return n;
}

static int want_connections;

static bool connections_are(void *arg)
{
    (void)arg;
    return upstream_connections() == want_connections;
}

static int chat(uint16_t port, const char *model)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"model\":\"%s\"}", model);
    lx_harness_resp_t r;
    if (lx_harness_post(port, "/v1/chat/completions", NULL, body, &r) != 0)
        return 0;
    int status = r.status;
    lx_harness_resp_free(&r);
    return status;
}

/* A last reload to a configuration serving <model>, then until it is served: the reloads before
 * it are applied (each worker takes them in order) and no other is on its way. */
static void settle_on(const char *model)
{
    reload_to(model, 1);
    uint64_t end = lx_harness_now_ms() + 5000;
    int served = 0;
    while (served < 4 && lx_harness_now_ms() < end)
        served = chat(H.port, model) == 200 ? served + 1 : 0;
    assert_int_equal(served, 4);
}

/* 300 reloads with requests between them: once they are over, each worker has its current
 * generation and nothing else (each retired one used to stay until shutdown). */
static void test_reloads_free_retired_generations(void **state)
{
    (void)state;
    assert_int_equal(lx_gateway_generations(H.gw), 2);
    for (int i = 0; i < 300; i++) {
        reload_to(i % 2 ? "old/model" : "new/model", i % 2);
        if (i % 10 == 0) {
            /* (a request may meet either configuration: the reload is on its way) */
            int st = chat(H.port, "old/model");
            assert_true(st == 200 || st == 404);
        }
        lx_harness_sleep_ms(1);
    }
    settle_on("last/model");
    want_generations = 2;
    assert_true(lx_harness_wait_until(generations_are, NULL, 3000));
}

/* A stream that runs across reloads keeps its generation, alone among the retired ones; when it
 * ends its generation goes too. */
static void test_stream_keeps_its_generation(void **state)
{
    (void)state;
    static const char body[] = "{\"model\":\"old/model\",\"stream\":true,"
                               "\"mock\":{\"chunks\":100,\"interval_ms\":25}}";
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    assert_int_equal(lx_harness_send(&c, req, (size_t)n), 0);
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 1, 5000), 0);
    for (int i = 0; i < 30; i++) {
        reload_to(i % 2 ? "old/model" : "new/model", i % 2);
        lx_harness_sleep_ms(2);
    }
    settle_on("last/model");
    /* the workers' current generations, and the one the stream holds */
    want_generations = 3;
    assert_true(lx_harness_wait_until(generations_are, NULL, 3000));
    lx_harness_sleep_ms(300);
    assert_int_equal(lx_gateway_generations(H.gw), 3);

    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_int_equal(count(r.body, "\"content\":"), 100);
    assert_int_equal(count(r.body, "data: [DONE]"), 1);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    want_generations = 2;
    assert_true(lx_harness_wait_until(generations_are, NULL, 3000));
}

/* The idle upstream connections of a replaced generation close at the reload. */
static void test_reload_closes_idle_upstreams(void **state)
{
    (void)state;
    /* a few connections at once, so that both workers keep idle ones */
    lx_harness_conn_t c[4];
    static const char body[] = "{\"model\":\"old/model\",\"mock\":{\"delay_ms\":50}}";
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lx_harness_connect(&c[i], H.port), 0);
        assert_int_equal(lx_harness_send(&c[i], req, (size_t)n), 0);
    }
    for (int i = 0; i < 4; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&c[i], &r), 0);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
        lx_harness_close(&c[i]);
    }
    assert_int_equal(upstream_connections(), 4); /* kept alive for reuse */
    reload_to("old/model", 1);
    want_connections = 0;
    assert_true(lx_harness_wait_until(connections_are, NULL, 2000));
    want_generations = 2;
    assert_true(lx_harness_wait_until(generations_are, NULL, 2000));
    assert_int_equal(chat(H.port, "old/model"), 200);
}

static void test_reload_keeps_running_streams(void **state)
{
    (void)state;
    static lx_harness_conn_t conns[STREAMS];
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen("{\"model\":\"old/model\",\"stream\":true,"
                            "\"mock\":{\"chunks\":20,\"interval_ms\":15}}"),
                     "{\"model\":\"old/model\",\"stream\":true,"
                     "\"mock\":{\"chunks\":20,\"interval_ms\":15}}");
    for (int i = 0; i < STREAMS; i++) {
        assert_int_equal(lx_harness_connect(&conns[i], H.port), 0);
        assert_int_equal(lx_harness_send(&conns[i], req, (size_t)n), 0);
    }
    /* every stream has started upstream before the reload */
    assert_int_equal(lx_mock_wait_requests(H.mock[0], STREAMS, 5000), 0);
    lx_config_t *cfg = new_config();
    lx_gateway_reload(H.gw, cfg);
    lx_config_unref(cfg);

    for (int i = 0; i < STREAMS; i++) {
        lx_harness_resp_t r;
        assert_int_equal(lx_harness_read(&conns[i], &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(r.complete);
        /* the whole stream, on the configuration it started with */
        assert_int_equal(count(r.body, "\"content\":"), CHUNKS);
        assert_int_equal(count(r.body, "data: [DONE]"), 1);
        assert_non_null(strstr(r.head, "X-Llmux-Provider: mock-a"));
        lx_harness_resp_free(&r);
        lx_harness_close(&conns[i]);
    }

    /* new requests see the new configuration, on both workers */
    for (int i = 0; i < 6; i++) {
        lx_harness_resp_t r;
        assert_int_equal(
            lx_harness_post(H.port, "/v1/chat/completions", NULL, "{\"model\":\"new/model\"}", &r),
            0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.head, "X-Llmux-Provider: mock-b"));
        lx_harness_resp_free(&r);
        size_t len;
        char *raw = lx_mock_request_raw(H.mock[0], 0, &len);
        assert_non_null(raw);
        assert_memory_equal(raw, "POST /v2/chat/completions ", 26);
        assert_non_null(strstr(raw, "\"model\":\"up-new\""));
        free(raw);
        assert_int_equal(
            lx_harness_post(H.port, "/v1/chat/completions", NULL, "{\"model\":\"old/model\"}", &r),
            0);
        assert_true(lx_harness_is_error(&r, 404));
        lx_harness_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload_keeps_running_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reloads_free_retired_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_keeps_its_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_closes_idle_upstreams, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
