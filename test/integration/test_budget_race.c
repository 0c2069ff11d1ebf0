/*
 * test_budget_race.c - a budget is exact under concurrency: 200 streams start at once against
 * a stored key whose limit is worth 50 of their reservations (each names max_tokens), across
 * two workers. The number admitted is the exact answer (within one), every other request gets
 * a 402, and what is settled when they are done never passes the limit. The streams are slow
 * to start, so none settles before every admission is decided.
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
#include <unistd.h>

#include "gateway/auth.h"
#include "harness.h"

#define CONFIG                                                                                     \
    "listen: 127.0.0.1:0\n"                                                                        \
    "workers: 2\n"                                                                                 \
    "timeouts:\n"                                                                                  \
    "  shutdown: 500ms\n"                                                                          \
    "providers:\n"                                                                                 \
    "  - name: mock-a\n"                                                                           \
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"                                                  \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - {provider: mock-a, price: {prompt: 10, completion: 20}}\n"                            \
    "auth: none\n"                                                                                 \
    "admin:\n"                                                                                     \
    "  sha256: %s\n"                                                                               \
    "store:\n"                                                                                     \
    "  path: @STORE@\n"                                                                            \
    "log:\n"                                                                                       \
    "  access_log: off\n"                                                                          \
    "  level: error\n"

#define N_STREAMS 200
#define FIT       50

static const char BODY[] = "{\"model\":\"m\",\"stream\":true,\"max_tokens\":100,"
                           "\"mock\":{\"first_delay_ms\":1500,\"chunks\":5},"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}";

static lx_harness_t H;
static char key[80];
static atomic_int go;
static atomic_int n_ok, n_402, n_other;

static void *client(void *arg)
{
    (void)arg;
    char raw[1024];
    int n = snprintf(raw, sizeof(raw),
                     "POST /api/v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     key, strlen(BODY), BODY);
    lx_harness_conn_t c;
    if (lx_harness_connect(&c, H.port) != 0) {
        atomic_fetch_add(&n_other, 1);
        return NULL;
    }
    while (!atomic_load(&go))
        usleep(100);
    lx_harness_resp_t r;
    if (lx_harness_send(&c, raw, (size_t)n) == 0 && lx_harness_read(&c, &r) == 0) {
        if (r.status == 200 && r.complete && strstr(r.body, "[DONE]") != NULL)
            atomic_fetch_add(&n_ok, 1);
        else if (r.status == 402)
            atomic_fetch_add(&n_402, 1);
        else
            atomic_fetch_add(&n_other, 1);
        lx_harness_resp_free(&r);
    } else {
        atomic_fetch_add(&n_other, 1);
    }
    lx_harness_close(&c);
    return NULL;
}

static double json_num(const char *json, const char *name)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", name);
    const char *p = strstr(json, pat);
    return p != NULL ? strtod(p + strlen(pat), NULL) : -1;
}

static void test_200_streams(void **state)
{
    (void)state;
    uint8_t d[32];
    char ha[65];
    lx_auth_hash("sk-admin", 8, d);
    lx_auth_hex(d, ha);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), CONFIG, ha);
    lx_harness_opts_t o = {.mocks = 1};
    assert_int_equal(lx_harness_start(&H, &o, yaml), 0);

    /* the reservation of one request: its prompt estimate (bytes / 4, up) at 10 µ$ and its
     * max_tokens at 20 µ$; the limit fits FIT of them and half of one more */
    int64_t reserve = (int64_t)((strlen(BODY) + 3) / 4) * 10 + 100 * 20;
    int64_t limit = FIT * reserve + reserve / 2;
    char body[256], limit_text[64];
    snprintf(limit_text, sizeof(limit_text), "%lld.%06lld", (long long)(limit / 1000000),
             (long long)(limit % 1000000));
    snprintf(body, sizeof(body), "{\"name\":\"race\",\"limit\":%s}", limit_text);
    lx_harness_resp_t r;
    assert_int_equal(
        lx_harness_post(H.port, "/api/v1/keys", "Authorization: Bearer sk-admin\r\n", body, &r), 0);
    assert_int_equal(r.status, 201);
    const char *k = strstr(r.body, "\"key\":\"");
    assert_non_null(k);
    memcpy(key, k + 7, 73);
    key[73] = '\0';
    lx_harness_resp_free(&r);
    usleep(100000);

    pthread_t t[N_STREAMS];
    for (int i = 0; i < N_STREAMS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, client, NULL), 0);
    atomic_store(&go, 1);
    for (int i = 0; i < N_STREAMS; i++)
        pthread_join(t[i], NULL);
    fprintf(stderr, "admitted %d, 402 %d, other %d (exact answer %d)\n", atomic_load(&n_ok),
            atomic_load(&n_402), atomic_load(&n_other), FIT);
    assert_int_equal(atomic_load(&n_other), 0);
    assert_true(abs(atomic_load(&n_ok) - FIT) <= 1);
    assert_int_equal(atomic_load(&n_ok) + atomic_load(&n_402), N_STREAMS);

    /* settled: the streams' actual cost, under the limit */
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", key);
    char raw[256];
    int n = snprintf(raw, sizeof(raw), "GET /api/v1/key HTTP/1.1\r\nHost: t\r\n%s\r\n", auth);
    assert_int_equal(lx_harness_request(H.port, raw, (size_t)n, &r), 0);
    assert_int_equal(r.status, 200);
    double usage = json_num(r.body, "usage");
    fprintf(stderr, "settled $%.6f of a $%.6f limit\n", usage, (double)limit / 1e6);
    assert_true(usage > 0);
    assert_true(usage * 1e6 <= (double)limit + 0.5);
    lx_harness_resp_free(&r);
    lx_harness_stop(&H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_200_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
