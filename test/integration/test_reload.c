/*
 * test_reload.c - a configuration reload while 100 streams run: every stream completes intact
 * on the configuration it started with, and new requests see the new one. Also: an invalid
 * file changes nothing (main.c loads before publishing, so here: the old model keeps working
 * until a valid reload removes it).
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
