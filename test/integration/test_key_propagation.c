/*
 * test_key_propagation.c - how long a key change made through the management API takes to
 * reach every worker: from the API's 201/200 answer to the first request that sees the change
 * on each of the 2 workers, for a create (the key works), a PATCH disabled (refused), a PATCH
 * enabling it again (works) and a DELETE (refused), over 20 trials. Each worker is reached on a
 * keep-alive connection pinned to it (the worker is read from the generation id, gen-<worker>-,
 * of a request made with the configuration key). Prints p50 and max per change; asserts only a
 * generous bound (1 s), since the figure is what matters (bench/README.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/auth.h"
#include "harness.h"
#include "store/record.h"

#define CONFIG                                                                                     \
    "listen: 127.0.0.1:0\n"                                                                        \
    "workers: 2\n"                                                                                 \
    "providers:\n"                                                                                 \
    "  - name: mock-a\n"                                                                           \
    "    base_url: http://127.0.0.1:@MOCK0@/v1\n"                                                  \
    "models:\n"                                                                                    \
    "  - id: team/m\n"                                                                             \
    "    context_length: 4096\n"                                                                   \
    "    providers:\n"                                                                             \
    "      - {provider: mock-a, price: {prompt: 1, completion: 2}}\n"                              \
    "auth:\n"                                                                                      \
    "  keys:\n"                                                                                    \
    "    - name: static\n"                                                                         \
    "      sha256: %s\n"                                                                           \
    "admin:\n"                                                                                     \
    "  sha256: %s\n"                                                                               \
    "store:\n"                                                                                     \
    "  path: @STORE@\n"                                                                            \
    "log:\n"                                                                                       \
    "  access_log: @LOG@\n"                                                                        \
    "  level: error\n"

#define TRIALS   20
#define WORKERS  2
#define BOUND_NS 1000000000LL /* 1 s */

static lx_harness_t H;

/* A keep-alive connection known to be served by one worker. */
typedef struct pin {
    lx_harness_conn_t c;
    bool open;
} pin_t;

static pin_t pins[WORKERS];
static long worker_ids[WORKERS] = {-1, -1}; /* the worker number in gen-<n>-, per slot */

enum change { C_CREATE, C_DISABLE, C_ENABLE, C_DELETE, C_COUNT };
static const char *const change_name[C_COUNT] = {"create", "PATCH disabled", "PATCH enabled",
                                                 "DELETE"};
static int64_t samples[C_COUNT][TRIALS * WORKERS];
static int stale[C_COUNT]; /* requests after the answer that still saw the old state */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
    char hs[65], ha[65];
    hex_of("sk-static", hs);
    hex_of("sk-admin", ha);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), CONFIG, hs, ha);
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, yaml);
}

static int teardown(void **state)
{
    (void)state;
    for (int w = 0; w < WORKERS; w++) {
        if (pins[w].open)
            lx_harness_close(&pins[w].c);
        pins[w].open = false;
    }
    lx_harness_stop(&H);
    return 0;
}

static const char CHAT[] = "{\"model\":\"team/m\",\"max_tokens\":5,\"messages\":[]}";

/* Sends a chat request with <key> on <c> and reads the answer: its status (0: none), and the
 * worker number of its generation id into *worker (-1 when absent). */
static int chat_on(lx_harness_conn_t *c, const char *key, long *worker)
{
    char raw[512];
    int n = snprintf(raw, sizeof(raw),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     key, strlen(CHAT), CHAT);
    *worker = -1;
    if (lx_harness_send(c, raw, (size_t)n) != 0)
        return 0;
    lx_harness_resp_t r;
    if (lx_harness_read(c, &r) != 0)
        return 0;
    int status = r.status;
    char id[64];
    if (lx_harness_resp_header(&r, "x-generation-id", id, sizeof(id)) &&
        strncmp(id, "gen-", 4) == 0) /* (the lane: the number's low bits, store/record.h) */
        *worker = (long)(strtoull(id + 4, NULL, 16) & ((1u << LX_RECORD_LANE_BITS) - 1));
    lx_harness_resp_free(&r);
    return status;
}

/* The slot of worker number <id>, taking a free slot for a number not seen yet; -1 if none. */
static int slot_of(long id)
{
    for (int w = 0; w < WORKERS; w++)
        if (worker_ids[w] == id)
            return w;
    for (int w = 0; w < WORKERS; w++)
        if (worker_ids[w] < 0) {
            worker_ids[w] = id;
            return w;
        }
    return -1;
}

/* Makes sure slot <w> has a connection pinned to its worker: new connections, each asked
 * once with the configuration key, until one lands there (bounded). */
static void pin(int w)
{
    for (int i = 0; i < 200 && !pins[w].open; i++) {
        lx_harness_conn_t c;
        assert_int_equal(lx_harness_connect(&c, H.port), 0);
        long id;
        assert_int_equal(chat_on(&c, "sk-static", &id), 200);
        assert_true(id >= 0);
        int s = slot_of(id);
        assert_true(s >= 0);
        if (!pins[s].open) {
            pins[s].c = c;
            pins[s].open = true;
        } else {
            lx_harness_close(&c);
        }
    }
    assert_true(pins[w].open);
}

/* A management call; the answer's status, its body into <out> (may be NULL). */
static int manage(const char *m, const char *path, const char *body, char *out, size_t cap)
{
    char raw[1024];
    int n = snprintf(raw, sizeof(raw),
                     "%s %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sk-admin\r\n", m, path);
    if (body != NULL)
        n += snprintf(raw + n, sizeof(raw) - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    else
        n += snprintf(raw + n, sizeof(raw) - (size_t)n, "\r\n");
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_request(H.port, raw, (size_t)n, &r), 0);
    if (out != NULL)
        snprintf(out, cap, "%s", r.body);
    int status = r.status;
    lx_harness_resp_free(&r);
    return status;
}

/* From <t0> (the management answer), asks both workers in turn with <key> until each answers
 * <want>; records the time each took. A refused request ends its connection: the worker's
 * connection is pinned again before the next ask (that time counts). */
static void measure(enum change ch, int trial, const char *key, int want, int64_t t0)
{
    bool seen[WORKERS] = {false, false};
    int left = WORKERS;
    for (int i = 0; left > 0; i++) {
        assert_true(now_ns() - t0 < 5 * BOUND_NS);
        int w = i % WORKERS;
        if (seen[w])
            continue;
        pin(w);
        long id;
        int status = chat_on(&pins[w].c, key, &id);
        int64_t t = now_ns();
        if (status != 200) {
            lx_harness_close(&pins[w].c);
            pins[w].open = false;
        } else {
            assert_int_equal(slot_of(id), w); /* the pinned connection stayed on its worker */
        }
        if (status == want) {
            samples[ch][trial * WORKERS + w] = t - t0;
            seen[w] = true;
            left--;
        } else {
            assert_true(status == 200 || status == 401);
            stale[ch]++;
        }
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_propagation(void **state)
{
    (void)state;
    for (int w = 0; w < WORKERS; w++)
        pin(w);
    for (int t = 0; t < TRIALS; t++) {
        char body[1024], key[80], hash[65], path[128];
        char req[64];
        snprintf(req, sizeof(req), "{\"name\":\"prop-%d\"}", t);
        assert_int_equal(manage("POST", "/api/v1/keys", req, body, sizeof(body)), 201);
        int64_t t0 = now_ns();
        const char *k = strstr(body, "\"key\":\"");
        assert_non_null(k);
        assert_int_equal(sscanf(k + 7, "%79[^\"]", key), 1);
        hex_of(key, hash);
        measure(C_CREATE, t, key, 200, t0);

        snprintf(path, sizeof(path), "/api/v1/keys/%s", hash);
        assert_int_equal(manage("PATCH", path, "{\"disabled\":true}", NULL, 0), 200);
        measure(C_DISABLE, t, key, 401, now_ns());
        assert_int_equal(manage("PATCH", path, "{\"disabled\":false}", NULL, 0), 200);
        measure(C_ENABLE, t, key, 200, now_ns());
        assert_int_equal(manage("DELETE", path, NULL, NULL, 0), 200);
        measure(C_DELETE, t, key, 401, now_ns());
    }
    for (int ch = 0; ch < C_COUNT; ch++) {
        int64_t *s = samples[ch];
        qsort(s, TRIALS * WORKERS, sizeof(s[0]), cmp_i64);
        printf("key propagation, %s: %d trials x %d workers, from the API's answer to the first "
               "request that sees it (its answer read): p50 %.2f ms, max %.2f ms; %d requests "
               "still saw the old state\n",
               change_name[ch], TRIALS, WORKERS, (double)s[TRIALS * WORKERS / 2] / 1e6,
               (double)s[TRIALS * WORKERS - 1] / 1e6, stale[ch]);
        assert_true(s[TRIALS * WORKERS - 1] < BOUND_NS);
    }
    fflush(stdout);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_propagation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
