/*
 * test_http_torture.c - the downstream server over real loopback sockets (test/support/
 * http_fixture.c: the server alone on its worker thread, with an echo handler), with seeded
 * randomness (the seed is printed; LLMUX_TEST_SEED=<n> replays a run):
 *
 * - keep-alive: bodies of 0, 1, 4095, 4096, 4097 bytes, 16 KiB and 1 MiB, Content-Length and
 *   chunked (with extensions), on one connection, sent whole, byte by byte (up to 4097) and cut
 *   at random points, one request at a time and all pipelined in one go; every answer is
 *   checked, in order (X-Request-Id, body length and checksum), then the connection must still
 *   serve one more;
 * - 1,000 GETs in one write, all answered in order;
 * - clients that leave at random points relative to their answers (mid-request, right after
 *   sending, mid-answer, after it, with a FIN or a reset), thousands of them: every request the
 *   handler got has exactly one on_done (its record is freed there; LeakSanitizer checks the
 *   rest at exit) and no body memory is left.
 *
 * Each group runs with the handler answering inside on_request and again on a later loop turn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "http_fixture.h"

static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint32_t fnv(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static lx_http_fixture_t *F;

static int setup_now(void **state)
{
    (void)state;
    lx_http_fixture_opts_t o = {.later = false};
    F = lx_http_fixture_start(&o);
    return F != NULL ? 0 : -1;
}

static int setup_later(void **state)
{
    (void)state;
    lx_http_fixture_opts_t o = {.later = true};
    F = lx_http_fixture_start(&o);
    return F != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lx_http_fixture_stats_t st;
    bool idle = lx_http_fixture_wait_idle(F, 10000);
    lx_http_fixture_stop(F, &st);
    F = NULL;
    if (!idle || st.requests != st.dones || st.live != 0 || st.body_memory != 0)
        fprintf(stderr, "idle %d requests %llu dones %llu live %llu body memory %llu\n", idle,
                (unsigned long long)st.requests, (unsigned long long)st.dones,
                (unsigned long long)st.live, (unsigned long long)st.body_memory);
    assert_true(idle);
    assert_int_equal(st.requests, st.dones);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.body_memory, 0);
    return 0;
}

/* ---- requests ---- */

typedef struct req {
    char *wire;
    size_t len;
    char id[32];
    size_t body_len;
    uint32_t sum;
} req_t;

static unsigned req_serial;

/* A POST with a body of <n> bytes (content from the seed), by Content-Length or chunked in
 * random pieces (some with extensions). */
static void make_post(req_t *r, size_t n, bool chunked)
{
    char *body = malloc(n + 1);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)(' ' + next_rand() % 95);
    snprintf(r->id, sizeof(r->id), "t%u", req_serial++);
    r->body_len = n;
    r->sum = fnv(body, n);
    size_t cap = n * 2 + 4096;
    r->wire = malloc(cap);
    assert_non_null(r->wire);
    size_t k;
    if (!chunked) {
        k = (size_t)snprintf(r->wire, cap,
                             "POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                             "Content-Length: %zu\r\n\r\n",
                             r->id, n);
        memcpy(r->wire + k, body, n);
        k += n;
    } else {
        k = (size_t)snprintf(r->wire, cap,
                             "POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n",
                             r->id);
        size_t off = 0;
        while (off < n) {
            size_t c = 1 + next_rand() % (next_rand() % 2 ? 40 : 70000);
            if (c > n - off)
                c = n - off;
            switch (next_rand() % 4) {
            case 0:
                k += (size_t)snprintf(r->wire + k, cap - k, "%zx;a=b;c=\"d e\"\r\n", c);
                break;
            case 1:
                k += (size_t)snprintf(r->wire + k, cap - k, "%zX ; q\r\n", c);
                break;
            default:
                k += (size_t)snprintf(r->wire + k, cap - k, "%zx\r\n", c);
                break;
            }
            memcpy(r->wire + k, body + off, c);
            k += c;
            memcpy(r->wire + k, "\r\n", 2);
            k += 2;
            off += c;
        }
        k += (size_t)snprintf(r->wire + k, cap - k, "0\r\n%s\r\n",
                              next_rand() % 2 ? "X-Trailer: t\r\n" : "");
        assert_true(k <= cap);
    }
    r->len = k;
    free(body);
}

static void make_get(req_t *r)
{
    snprintf(r->id, sizeof(r->id), "t%u", req_serial++);
    r->wire = malloc(128);
    assert_non_null(r->wire);
    r->len = (size_t)snprintf(
        r->wire, 128, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n\r\n", r->id);
    r->body_len = 0;
    r->sum = fnv("", 0);
}

enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

static void send_split(lx_harness_conn_t *c, const char *p, size_t n, int split)
{
    size_t off = 0;
    while (off < n) {
        size_t k = n - off;
        if (split == SPLIT_BYTES) {
            k = 1;
        } else if (split == SPLIT_RANDOM) {
            size_t most = next_rand() % 4 == 0 ? 50000 : 600;
            size_t r = 1 + next_rand() % most;
            k = k < r ? k : r;
        }
        assert_int_equal(lx_harness_send(c, p + off, k), 0);
        off += k;
        if (split == SPLIT_RANDOM && next_rand() % 8 == 0)
            sched_yield();
    }
}

static void expect_answer(lx_harness_conn_t *c, const req_t *r)
{
    lx_harness_resp_t resp;
    assert_int_equal(lx_harness_read(c, &resp), 0);
    char v[64];
    if (resp.status != 200 || !lx_harness_resp_header(&resp, "x-request-id", v, sizeof(v)) ||
        strcmp(v, r->id) != 0)
        fprintf(stderr, "for %s: %s%s\n", r->id, resp.head, resp.body);
    assert_int_equal(resp.status, 200);
    assert_true(lx_harness_resp_header(&resp, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, r->id);
    char want[64];
    snprintf(want, sizeof(want), "len=%zu sum=%08x\n", r->body_len, r->sum);
    assert_string_equal(resp.body, want);
    lx_harness_resp_free(&resp);
}

static void seed_rng(void)
{
    const char *env = getenv("LLMUX_TEST_SEED");
    static uint64_t seed;
    if (seed == 0) {
        seed = env != NULL ? strtoull(env, NULL, 0) : (lx_harness_now_ms() * 2654435761u) | 1;
        printf("seed %llu (LLMUX_TEST_SEED=%llu replays it)\n", (unsigned long long)seed,
               (unsigned long long)seed);
    }
    rng = seed;
}

/* ---- keep-alive ---- */

static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 16384, 1 << 20};

static void one_connection(bool chunked, int split, bool pipelined)
{
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, lx_http_fixture_port(F)), 0);
    req_t reqs[sizeof(sizes) / sizeof(sizes[0]) + 1];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (split == SPLIT_BYTES && sizes[i] > 4097)
            continue;
        make_post(&reqs[n++], sizes[i], chunked);
    }
    make_get(&reqs[n++]);
    if (pipelined) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += reqs[i].len;
        char *all = malloc(total);
        assert_non_null(all);
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(all + off, reqs[i].wire, reqs[i].len);
            off += reqs[i].len;
        }
        send_split(&c, all, total, split);
        free(all);
        for (size_t i = 0; i < n; i++)
            expect_answer(&c, &reqs[i]);
    } else {
        for (size_t i = 0; i < n; i++) {
            send_split(&c, reqs[i].wire, reqs[i].len, split);
            expect_answer(&c, &reqs[i]);
        }
    }
    /* still open and serving */
    req_t last;
    make_get(&last);
    send_split(&c, last.wire, last.len, SPLIT_WHOLE);
    expect_answer(&c, &last);
    free(last.wire);
    for (size_t i = 0; i < n; i++)
        free(reqs[i].wire);
    lx_harness_close(&c);
}

static void test_keepalive_bodies(void **state)
{
    (void)state;
    seed_rng();
    for (int chunked = 0; chunked < 2; chunked++)
        for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++)
            for (int pipelined = 0; pipelined < 2; pipelined++)
                one_connection(chunked, split, pipelined);
    /* more random cuts: the interesting boundaries are many */
    for (int round = 0; round < 6; round++)
        one_connection(round % 2, SPLIT_RANDOM, round % 3 == 0);
}

static void test_pipeline_1000(void **state)
{
    (void)state;
    seed_rng();
    enum { N = 1000 };
    req_t *reqs = calloc(N, sizeof(*reqs));
    assert_non_null(reqs);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        make_get(&reqs[i]);
        total += reqs[i].len;
    }
    char *all = malloc(total);
    assert_non_null(all);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        memcpy(all + off, reqs[i].wire, reqs[i].len);
        off += reqs[i].len;
    }
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, lx_http_fixture_port(F)), 0);
    assert_int_equal(lx_harness_send(&c, all, total), 0); /* one write */
    for (int i = 0; i < N; i++)
        expect_answer(&c, &reqs[i]);
    assert_true(lx_harness_still_open(&c, 20));
    lx_harness_close(&c);
    for (int i = 0; i < N; i++)
        free(reqs[i].wire);
    free(reqs);
    free(all);
}

/* ---- clients that leave ---- */

static void test_close_race(void **state)
{
    (void)state;
    seed_rng();
    req_t kinds[3];
    make_get(&kinds[0]);
    make_post(&kinds[1], 300, false);
    make_post(&kinds[2], 5000, true);
    for (int round = 0; round < 2000; round++) {
        lx_harness_conn_t c;
        assert_int_equal(lx_harness_connect(&c, lx_http_fixture_port(F)), 0);
        size_t n = 1 + next_rand() % 3;
        char buf[3 * 16384];
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            const req_t *k = &kinds[next_rand() % 3];
            assert_true(k->len <= sizeof(buf) / 3);
            memcpy(buf + len, k->wire, k->len);
            len += k->len;
        }
        int point = (int)(next_rand() % 6);
        if (point == 0) /* mid-request */
            len = 1 + next_rand() % len;
        send_split(&c, buf, len, SPLIT_RANDOM);
        switch (point) {
        case 2: /* mid-answer (or right at its start) */
            lx_harness_wait_bytes(&c, 1 + next_rand() % 60, 2000);
            break;
        case 3: { /* after the first answer */
            lx_harness_resp_t r;
            lx_harness_read(&c, &r);
            lx_harness_resp_free(&r);
            break;
        }
        case 4: /* after all the answers */
            for (size_t i = 0; i < n; i++) {
                lx_harness_resp_t r;
                lx_harness_read(&c, &r);
                lx_harness_resp_free(&r);
            }
            break;
        default: /* right after sending */
            break;
        }
        if (next_rand() % 3 == 0) {
            struct linger lg = {1, 0}; /* a reset rather than a FIN */
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        lx_harness_close(&c);
    }
    for (int i = 0; i < 3; i++)
        free(kinds[i].wire);
    assert_true(lx_http_fixture_wait_idle(F, 10000));
    lx_http_fixture_stats_t st;
    lx_http_fixture_stats(F, &st);
    printf("close race: %llu requests handled, %llu aborted, %llu ended before the handler\n",
           (unsigned long long)st.requests, (unsigned long long)st.aborted,
           (unsigned long long)st.refused);
    assert_int_equal(st.requests, st.dones);
    assert_int_equal(st.live, 0);
    assert_true(st.requests > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_bodies, setup_now, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_bodies, setup_later, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_1000, setup_now, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_1000, setup_later, teardown),
        cmocka_unit_test_setup_teardown(test_close_race, setup_now, teardown),
        cmocka_unit_test_setup_teardown(test_close_race, setup_later, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
