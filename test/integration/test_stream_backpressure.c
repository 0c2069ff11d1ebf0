/*
 * test_stream_backpressure.c - a client that stops reading a large, fast stream costs llmux
 * bounded memory (DESIGN.md data-path rule 5: stop reading the upstream above a high-water
 * mark, not buffer), and when it reads again it gets every byte intact.
 *
 * The gateway and the mock run in this process, so their memory is this process's resident
 * set (/proc/self/status VmRSS); socket buffers are the kernel's and do not count. The stream
 * is far larger than the bound, and unbuffered loopback relays far faster than the bound per
 * stall, so buffering instead of backpressure would show.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

#define CHUNKS       150000u /* x CHUNK_SIZE bytes of content: ~180 MB of SSE on the wire */
#define CHUNK_SIZE   1000u
#define STALL_MS     1500
#define MAX_GROWTH   (64u * 1024u * 1024u)
#define READ_TIMEOUT 15000

static const char CONFIG[] = "listen: 127.0.0.1:0\n"
                             "workers: 1\n"
                             "timeouts: {upstream_idle: 30s, shutdown: 1s}\n"
                             "providers:\n"
                             "  - name: mock-a\n"
                             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                             "models:\n"
                             "  - id: pub/model\n"
                             "    context_length: 4096\n"
                             "    providers: [{provider: mock-a, model: up-model}]\n"
                             "auth: none\n"
                             "log: {access_log: @LOG@, level: error}\n";

/* the mock's content text, an endless repetition of this (test/mock/mock_reply.c) */
static const char PATTERN[] = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
                              "eiusmod tempor incididunt ut labore et dolore magna aliqua ";
#define PLEN (sizeof(PATTERN) - 1)

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

/* This process's resident set, in bytes. */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %zu kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb > 0);
    return kb * 1024;
}

/* A streaming reader of the response: chunked framing decoded, events checked one by one. */
typedef struct {
    int fd;
    char *raw; /* received, not yet decoded */
    size_t raw_len;
    char *ev; /* decoded, not yet checked (an incomplete event) */
    size_t ev_len;
    size_t chunk_left; /* payload bytes left in the current chunk */
    bool in_chunk;
    bool ended; /* terminating chunk */
    bool head_done;
    uint64_t wire_bytes;
    uint64_t content_events, other_events;
    bool done_seen, finish_seen, after_done;
    char expect[PLEN + CHUNK_SIZE]; /* the pattern from any offset */
} rd_t;

#define RAW_CAP (1u << 20)
#define EV_CAP  (2u << 20)

/* Checks the complete events at the start of ev[]; keeps the unfinished tail. */
static void check_events(rd_t *r)
{
    size_t off = 0;
    for (;;) {
        char *start = r->ev + off;
        char *end = memmem(start, r->ev_len - off, "\n\n", 2);
        if (end == NULL)
            break;
        size_t len = (size_t)(end - start);
        assert_false(r->after_done); /* nothing after [DONE] */
        assert_true(len > 6 && memcmp(start, "data: ", 6) == 0);
        if (len == 12 && memcmp(start, "data: [DONE]", 12) == 0) {
            r->done_seen = r->after_done = true;
        } else {
            static const char mpat[] = "\"model\":\"pub/model\"";
            assert_non_null(memmem(start, len, mpat, sizeof(mpat) - 1));
            static const char cpat[] = "\"content\":\"";
            char *c = memmem(start, len, cpat, sizeof(cpat) - 1);
            if (c != NULL) {
                c += sizeof(cpat) - 1;
                /* content event k carries the pattern from offset k * CHUNK_SIZE */
                size_t pos = (size_t)((r->content_events * CHUNK_SIZE) % PLEN);
                assert_true((size_t)(end - c) > CHUNK_SIZE);
                if (memcmp(c, r->expect + pos, CHUNK_SIZE) != 0 || c[CHUNK_SIZE] != '"') {
                    fprintf(stderr, "content event %llu differs: %.200s\n",
                            (unsigned long long)r->content_events, start);
                    fail();
                }
                assert_false(r->finish_seen);
                r->content_events++;
            } else {
                assert_non_null(memmem(start, len, "\"finish_reason\":\"stop\"", 22));
                r->finish_seen = true;
                r->other_events++;
            }
        }
        off = (size_t)(end - r->ev) + 2;
    }
    memmove(r->ev, r->ev + off, r->ev_len - off);
    r->ev_len -= off;
}

static void take_raw(rd_t *r, size_t n)
{
    memmove(r->raw, r->raw + n, r->raw_len - n);
    r->raw_len -= n;
}

/* Decodes what raw[] holds. */
static void decode(rd_t *r)
{
    if (!r->head_done) {
        char *e = memmem(r->raw, r->raw_len, "\r\n\r\n", 4);
        if (e == NULL)
            return;
        assert_true(r->raw_len > 12 && memcmp(r->raw, "HTTP/1.1 200", 12) == 0);
        assert_non_null(memmem(r->raw, (size_t)(e - r->raw), "chunked", 7));
        take_raw(r, (size_t)(e - r->raw) + 4);
        r->head_done = true;
    }
    size_t off = 0;
    while (!r->ended && off < r->raw_len) {
        if (r->in_chunk) {
            size_t n = r->raw_len - off;
            if (n > r->chunk_left)
                n = r->chunk_left;
            assert_true(r->ev_len + n <= EV_CAP);
            memcpy(r->ev + r->ev_len, r->raw + off, n);
            r->ev_len += n;
            off += n;
            r->chunk_left -= n;
            if (r->chunk_left == 0)
                r->in_chunk = false;
            continue;
        }
        /* after a chunk's payload: its CRLF, then the next size line */
        char *p = r->raw + off;
        size_t avail = r->raw_len - off;
        char *eol = memmem(p, avail, "\r\n", 2);
        if (eol == NULL)
            break;
        if (eol == p) { /* the CRLF ending a payload */
            off += 2;
            continue;
        }
        char *end;
        unsigned long long size = strtoull(p, &end, 16);
        assert_true(end == eol);
        if (size == 0) {
            if (avail < (size_t)(eol - p) + 4)
                break;
            assert_memory_equal(eol, "\r\n\r\n", 4);
            off += (size_t)(eol - p) + 4;
            r->ended = true;
            break;
        }
        off += (size_t)(eol - p) + 2;
        r->chunk_left = (size_t)size;
        r->in_chunk = true;
    }
    take_raw(r, off);
    check_events(r);
}

/* Receives once (waiting up to READ_TIMEOUT) and decodes; false at EOF or error. */
static bool pump(rd_t *r)
{
    assert_true(r->raw_len < RAW_CAP);
    ssize_t n = recv(r->fd, r->raw + r->raw_len, RAW_CAP - r->raw_len, 0);
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    r->raw_len += (size_t)n;
    r->wire_bytes += (uint64_t)n;
    decode(r);
    return true;
}

static void test_stalled_reader_bounded_memory(void **state)
{
    (void)state;
    static rd_t rd;
    memset(&rd, 0, sizeof(rd));
    rd.raw = malloc(RAW_CAP + 1);
    rd.ev = malloc(EV_CAP);
    assert_non_null(rd.raw);
    assert_non_null(rd.ev);
    for (size_t i = 0; i < sizeof(rd.expect); i++)
        rd.expect[i] = PATTERN[i % PLEN];

    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    rd.fd = c.fd;
    char body[256], req[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"pub/model\",\"stream\":true,\"mock\":{\"chunks\":%u,\"chunk_size\":%u}}",
             CHUNKS, CHUNK_SIZE);
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Request-Id: bp-1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    assert_int_equal(lx_harness_send(&c, req, (size_t)n), 0);

    /* the stream flows: read its first megabyte */
    while (rd.wire_bytes < (1u << 20))
        assert_true(pump(&rd));
    size_t base = rss_bytes();

    /* stop reading: llmux must stop reading the upstream, not queue the stream */
    size_t peak = base;
    uint64_t t0 = lx_harness_now_ms();
    while (lx_harness_now_ms() - t0 < STALL_MS) {
        lx_harness_sleep_ms(50);
        size_t now = rss_bytes();
        if (now > peak)
            peak = now;
    }
    fprintf(stderr, "stalled %d ms: RSS %zu KiB -> peak %zu KiB (+%zu KiB)\n", STALL_MS,
            base / 1024, peak / 1024, (peak - base) / 1024);
    assert_true(peak - base < MAX_GROWTH);

    /* read again: every byte arrives, intact and in order */
    uint64_t t1 = lx_harness_now_ms();
    while (!rd.ended && pump(&rd)) {
    }
    fprintf(stderr, "read %llu bytes on the wire in %llu ms after the stall\n",
            (unsigned long long)rd.wire_bytes, (unsigned long long)(lx_harness_now_ms() - t1));
    assert_true(rd.ended);
    assert_int_equal(rd.content_events, CHUNKS);
    assert_true(rd.finish_seen);
    assert_int_equal(rd.other_events, 1);
    assert_true(rd.done_seen);
    assert_int_equal(rd.ev_len, 0);
    assert_true(rd.wire_bytes > (uint64_t)CHUNKS * CHUNK_SIZE);
    lx_harness_close(&c);
    free(rd.raw);
    free(rd.ev);

    char *line = lx_harness_log_wait(&H, "\"request_id\":\"bp-1\"", 3000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":200"));
    assert_null(strstr(line, "\"error\""));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stalled_reader_bounded_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
