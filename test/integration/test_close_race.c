/*
 * test_close_race.c - clients that leave, through the whole gateway.
 *
 * A client that leaves before its answer is complete is logged as 499 with error "client
 * closed the connection" (nginx's convention), while llmux waits for the provider's first
 * byte, while an early-committed stream waits for it, and mid-stream; its attempt counts as
 * cancelled in the health table and the metrics, never as the provider's failure.
 *
 * The close race: a few thousand requests from several threads, each on its own connection
 * (some two on one), whose clients close at a random point relative to their answer: at once
 * after sending (FIN, or a half-close), after a random short wait, after the first bytes of
 * the answer, or right after the whole answer, with a FIN or a reset. Afterwards every request
 * has exactly one access-log line, no request still pins its configuration generation, and
 * (under ASan) nothing leaks at shutdown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "harness.h"

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 2\n"
                             "timeouts: {shutdown: 1s}\n"
                             "stream: {early_commit: true, keepalive_delay: 50ms}\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "models:\n"
                             "  - id: m\n"
                             "    context_length: 4096\n"
                             "    providers: [{provider: mock-a, model: up-m}]\n"
                             "auth: none\n"
                             "log: {access_log: @LOG@, level: error}\n";

static lx_harness_t H;

static int setup(void **state)
{
    (void)state;
    lx_harness_opts_t o = {.mocks = 1};
    return lx_harness_start(&H, &o, CONFIG);
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    return 0;
}

/* A POST of chat completions with request id <id> and <mock> controls (a JSON object). */
static int format_chat(char *buf, size_t cap, const char *id, bool stream, const char *mock)
{
    char body[256];
    int bn = snprintf(body, sizeof(body), "{\"model\":\"m\",\"stream\":%s,\"mock\":%s}",
                      stream ? "true" : "false", mock);
    return snprintf(buf, cap,
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                    id, bn, body);
}

static void send_chat(lx_harness_conn_t *c, const char *id, bool stream, const char *mock)
{
    char req[512];
    int n = format_chat(req, sizeof(req), id, stream, mock);
    assert_int_equal(lx_harness_connect(c, H.port), 0);
    assert_int_equal(lx_harness_send(c, req, (size_t)n), 0);
}

/* The access-log line of request <id>, once it is written (NULL after 3 s). */
static char *log_line(const char *id)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", id);
    return lx_harness_log_wait(&H, needle, 3000);
}

static void assert_gone_logged(const char *id)
{
    char *line = log_line(id);
    assert_non_null(line);
    if (strstr(line, "\"status\":499,") == NULL ||
        strstr(line, "\"error\":\"client closed the connection\"") == NULL)
        fprintf(stderr, "log line: %s\n", line);
    assert_non_null(strstr(line, "\"status\":499,"));
    assert_non_null(strstr(line, "\"error\":\"client closed the connection\""));
    free(line);
}

/* The sum over every row of llmux_upstream_attempts_total for <outcome>, from /metrics. */
static long attempts(const char *outcome)
{
    lx_harness_resp_t r;
    if (lx_harness_get(H.port, "/metrics", &r) != 0 || r.status != 200)
        return -1;
    char label[64];
    snprintf(label, sizeof(label), ",outcome=\"%s\"} ", outcome);
    long sum = 0;
    for (const char *p = strstr(r.body, "llmux_upstream_attempts_total{"); p != NULL;
         p = strstr(p + 1, "llmux_upstream_attempts_total{")) {
        const char *eol = strchr(p, '\n');
        const char *l = strstr(p, label);
        if (l != NULL && (eol == NULL || l < eol))
            sum += strtol(l + strlen(label), NULL, 10);
    }
    lx_harness_resp_free(&r);
    return sum;
}

static uint64_t want_closes;

static bool mock_saw_closes(void *arg)
{
    (void)arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= want_closes;
}

/* Leaving while llmux waits for the provider's answer (non-streaming), while an
 * early-committed stream waits for its first token, and mid-stream: each is a 499 in the log,
 * the provider's generation is cancelled, and the metrics count cancelled attempts, not
 * failures. */
static void test_client_gone_is_499(void **state)
{
    (void)state;
    lx_harness_conn_t c;

    send_chat(&c, "gone-wait", false, "{\"delay_ms\":3000}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 1, 3000), 0);
    lx_harness_close(&c);
    assert_gone_logged("gone-wait");

    send_chat(&c, "gone-first-token", true, "{\"delay_ms\":3000}");
    assert_int_equal(lx_mock_wait_requests(H.mock[0], 2, 3000), 0);
    assert_true(lx_harness_wait_bytes(&c, 12, 3000)); /* the early head */
    assert_memory_equal(c.buf, "HTTP/1.1 200", 12);
    lx_harness_close(&c);
    assert_gone_logged("gone-first-token");

    send_chat(&c, "gone-mid-stream", true, "{\"chunks\":200,\"interval_ms\":10}");
    assert_true(lx_harness_wait_bytes(&c, 600, 3000)); /* the head and some events */
    assert_non_null(strstr(c.buf, "data: {"));
    lx_harness_close(&c);
    assert_gone_logged("gone-mid-stream");

    /* each generation was stopped upstream */
    want_closes = 3;
    assert_true(lx_harness_wait_until(mock_saw_closes, NULL, 3000));
    /* cancelled, not the provider's failure */
    assert_int_equal(attempts("canceled"), 3);
    static const char *const failures[] = {"connect", "timeout", "server", "bad_response"};
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
        assert_int_equal(attempts(failures[i]), 0);

    /* a client that stays gets its answer, logged as it was */
    send_chat(&c, "stays", false, "{}");
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_close(&c);
    char *line = log_line("stays");
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":200,"));
    assert_null(strstr(line, "\"error\""));
    free(line);
}

/* ---- the close race ---- */

#define RACE_THREADS 4
#define RACE_EACH    750 /* requests per thread */
#define RACE_TOTAL   (RACE_THREADS * RACE_EACH)

enum close_point {
    CLOSE_AT_ONCE,       /* FIN right after the request */
    CLOSE_HALF,          /* shutdown(SHUT_WR) right after the request, then read to the end */
    CLOSE_AFTER_WAIT,    /* FIN after 0-3 ms */
    CLOSE_AFTER_BYTES,   /* FIN after the first bytes of the answer */
    CLOSE_AFTER_ANSWER,  /* FIN right after the whole answer */
    RESET_AFTER_BYTES,   /* RST after the first bytes of the answer */
    RESET_AFTER_ANSWER,  /* RST right after the whole answer */
    CLOSE_SECOND_AT_ONCE /* a whole answer, a second request on the connection, FIN at once */
};
#define CLOSE_POINTS 8

static const char *const race_mocks[] = {
    "{}",                                   /* a plain answer at once */
    "{\"delay_ms\":2}",                     /* a plain answer a little later */
    "{\"chunks\":5}",                       /* a short stream, as fast as it goes */
    "{\"chunks\":6,\"interval_ms\":1}",     /* a paced stream */
    "{\"chunks\":3,\"first_delay_ms\":3}",  /* a stream with a slow first token */
    "{\"body_size\":40000}",                /* a plain answer of several reads */
    "{\"chunks\":2,\"content_length\":1}",  /* a stream with a Content-Length */
    "{\"delay_ms\":1,\"content_length\":0}" /* a plain chunked answer */
};
#define RACE_MOCKS (sizeof(race_mocks) / sizeof(race_mocks[0]))

typedef struct race_thread {
    pthread_t thread;
    unsigned index;
    unsigned seed;
    unsigned failures; /* client-side problems (connect, send) */
} race_thread_t;

static void reset_close(lx_harness_conn_t *c)
{
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    lx_harness_close(c);
}

static void *race_main(void *arg)
{
    race_thread_t *t = arg;
    for (unsigned k = 0; k < RACE_EACH; k++) {
        unsigned i = t->index * RACE_EACH + k;
        unsigned roll = (unsigned)rand_r(&t->seed);
        enum close_point point = (enum close_point)(roll % CLOSE_POINTS);
        const char *mock = race_mocks[(roll / CLOSE_POINTS) % RACE_MOCKS];
        bool stream = strstr(mock, "chunks") != NULL;
        char id[32], req[512];
        snprintf(id, sizeof(id), "cr-%u", i);
        int n = format_chat(req, sizeof(req), id, stream, mock);
        lx_harness_conn_t c;
        if (lx_harness_connect(&c, H.port) != 0) {
            t->failures++;
            continue;
        }
        if (lx_harness_send(&c, req, (size_t)n) != 0)
            t->failures++;
        lx_harness_resp_t r;
        switch (point) {
        case CLOSE_AT_ONCE:
            lx_harness_close(&c);
            break;
        case CLOSE_HALF:
            shutdown(c.fd, SHUT_WR);
            lx_harness_wait_closed(&c, 3000);
            lx_harness_close(&c);
            break;
        case CLOSE_AFTER_WAIT:
            usleep((useconds_t)(roll / 64 % 3000));
            lx_harness_close(&c);
            break;
        case CLOSE_AFTER_BYTES:
        case RESET_AFTER_BYTES:
            lx_harness_wait_bytes(&c, 1 + roll / 64 % 200, 3000);
            if (point == RESET_AFTER_BYTES)
                reset_close(&c);
            else
                lx_harness_close(&c);
            break;
        case CLOSE_AFTER_ANSWER:
        case RESET_AFTER_ANSWER:
            if (lx_harness_read(&c, &r) == 0)
                lx_harness_resp_free(&r);
            if (point == RESET_AFTER_ANSWER)
                reset_close(&c);
            else
                lx_harness_close(&c);
            break;
        case CLOSE_SECOND_AT_ONCE:
            if (lx_harness_read(&c, &r) == 0)
                lx_harness_resp_free(&r);
            /* the second request's id: cr-<i>b */
            snprintf(id, sizeof(id), "cr-%ub", i);
            n = format_chat(req, sizeof(req), id, stream, mock);
            if (lx_harness_send(&c, req, (size_t)n) != 0)
                t->failures++;
            lx_harness_close(&c);
            break;
        }
    }
    return NULL;
}

/* Log lines per request: counts[i] for cr-<i>, counts[RACE_TOTAL + i] for cr-<i>b. */
static void count_lines(const char *log, unsigned *counts)
{
    static const char key[] = "\"request_id\":\"cr-";
    for (const char *p = strstr(log, key); p != NULL; p = strstr(p + 1, key)) {
        char *end;
        unsigned long i = strtoul(p + sizeof(key) - 1, &end, 10);
        if (i >= RACE_TOTAL)
            continue;
        if (*end == 'b')
            counts[RACE_TOTAL + i]++;
        else if (*end == '"')
            counts[i]++;
    }
}

static size_t want_generations;

static bool generations_are(void *arg)
{
    (void)arg;
    return lx_gateway_generations(H.gw) == want_generations;
}

static void test_close_race(void **state)
{
    (void)state;
    static race_thread_t threads[RACE_THREADS];
    uint64_t t0 = lx_harness_now_ms();
    for (unsigned k = 0; k < RACE_THREADS; k++) {
        threads[k] = (race_thread_t){.index = k, .seed = 0x5eed + k};
        assert_int_equal(pthread_create(&threads[k].thread, NULL, race_main, &threads[k]), 0);
    }
    for (unsigned k = 0; k < RACE_THREADS; k++) {
        pthread_join(threads[k].thread, NULL);
        assert_int_equal(threads[k].failures, 0);
    }
    /* the requests that had to have a line: every first one, and each second one */
    unsigned expected = RACE_TOTAL;
    for (unsigned k = 0; k < RACE_THREADS; k++) {
        unsigned seed = 0x5eed + k;
        for (unsigned j = 0; j < RACE_EACH; j++)
            expected += (unsigned)rand_r(&seed) % CLOSE_POINTS == CLOSE_SECOND_AT_ONCE;
    }
    /* every line is written within the access log's flush period once its request ended */
    static unsigned counts[2 * RACE_TOTAL];
    unsigned lines = 0;
    for (uint64_t end = lx_harness_now_ms() + 5000; lines < expected;) {
        memset(counts, 0, sizeof(counts));
        char *log = lx_harness_log_read(&H);
        assert_non_null(log);
        count_lines(log, counts);
        free(log);
        lines = 0;
        for (unsigned i = 0; i < 2 * RACE_TOTAL; i++)
            lines += counts[i];
        if (lx_harness_now_ms() >= end)
            break;
        lx_harness_sleep_ms(20);
    }
    fprintf(stderr, "close race: %u requests in %llu ms, %u log lines\n", expected,
            (unsigned long long)(lx_harness_now_ms() - t0), lines);
    unsigned missing = 0, doubled = 0, missing_by_point[CLOSE_POINTS] = {0};
    for (unsigned k = 0; k < RACE_THREADS; k++) {
        unsigned seed = 0x5eed + k;
        for (unsigned j = 0; j < RACE_EACH; j++) {
            unsigned i = k * RACE_EACH + j;
            unsigned point = (unsigned)rand_r(&seed) % CLOSE_POINTS;
            bool second = point == CLOSE_SECOND_AT_ONCE;
            for (unsigned s = 0; s < (second ? 2u : 1u); s++) {
                unsigned c = counts[s * RACE_TOTAL + i];
                if (c == 0) {
                    missing++;
                    missing_by_point[point]++;
                } else if (c > 1) {
                    doubled++;
                }
            }
        }
    }
    for (unsigned p = 0; p < CLOSE_POINTS; p++)
        if (missing_by_point[p] > 0)
            fprintf(stderr, "close point %u: %u request(s) without a log line\n", p,
                    missing_by_point[p]);
    assert_int_equal(doubled, 0);
    assert_int_equal(missing, 0);

    /* no request still holds its generation: once a reload is served, only the new ones
     * remain */
    lx_config_t *cfg = NULL;
    char text[1024];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:0\nworkers: 2\nproviders:\n"
             "  - {name: mock-a, base_url: \"http://127.0.0.1:%u/v1\"}\n"
             "models:\n  - {id: m2, context_length: 4096, providers: [{provider: mock-a}]}\n"
             "auth: none\nlog: {access_log: %s, level: error}\n",
             lx_mock_port(H.mock[0]), H.log_path);
    assert_int_equal(lx_config_parse("race.yaml", text, strlen(text), stderr, &cfg), 0);
    lx_gateway_reload(H.gw, cfg);
    lx_config_unref(cfg);
    int served = 0;
    for (uint64_t end = lx_harness_now_ms() + 5000; served < 4 && lx_harness_now_ms() < end;) {
        lx_harness_resp_t r;
        int rc = lx_harness_post(H.port, "/v1/chat/completions", NULL, "{\"model\":\"m2\"}", &r);
        served = rc == 0 && r.status == 200 ? served + 1 : 0;
        if (rc == 0)
            lx_harness_resp_free(&r);
    }
    assert_int_equal(served, 4);
    want_generations = 2;
    assert_true(lx_harness_wait_until(generations_are, NULL, 3000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_gone_is_499, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_race, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
