/*
 * test_stream_errors.c - streams that fail after their 200, as a client sees them: the upstream
 * resets mid-stream, stalls past the idle timeout, breaks its chunked framing, or ends a
 * close-delimited stream without its terminator. Each ends with a final error event in the
 * API's shape (OpenAI's under /v1, OpenRouter's under /api/v1) and a clean end of the chunked
 * response, and the access log says partial. Also: a client that leaves mid-stream cancels the
 * upstream generation, and a drain cuts a long stream with a 503 event at the shutdown timeout
 * while a short one finishes.
 *
 * Besides the mock and the harness's raw upstream, a local "FIN server" answers each request
 * with a scripted close-delimited reply and then closes cleanly (the harness's raw upstream
 * keeps its connections open after a reply).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "llm/api_error.h"
#include "harness.h"

/* %u: the FIN server's port */
static const char CONFIG_FMT[] = "listen: 127.0.0.1:0\n"
                                 "workers: 1\n"
                                 "timeouts: {upstream_idle: 300ms, shutdown: 300ms}\n"
                                 "providers:\n"
                                 "  - name: mock-a\n"
                                 "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
                                 "  - name: raw-provider\n"
                                 "    base_url: http://127.0.0.1:@RAW@/v1\n"
                                 "  - name: fin-provider\n"
                                 "    base_url: http://127.0.0.1:%u/v1\n"
                                 "models:\n"
                                 "  - id: m\n"
                                 "    context_length: 4096\n"
                                 "    providers: [{provider: mock-a, model: up-m,\n"
                                 "                 price: {prompt: 1, completion: 2}}]\n"
                                 "  - id: raw\n"
                                 "    context_length: 4096\n"
                                 "    providers: [{provider: raw-provider}]\n"
                                 "  - id: fin\n"
                                 "    context_length: 4096\n"
                                 "    providers: [{provider: fin-provider}]\n"
                                 "auth: none\n"
                                 "log: {access_log: @LOG@, level: error}\n";

#define EV(content)                                                                                \
    "data: {\"id\":\"x-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\","   \
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" content "\"},\"finish_reason\":null}]}"  \
    "\n\n"
#define EV_STOP                                                                                    \
    "data: {\"id\":\"x-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\","   \
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
#define EV_DONE "data: [DONE]\n\n"

/* ---- the FIN server: scripted close-delimited replies, then a clean close ---- */

#define FIN_HEAD                                                                                   \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"            \
    "Connection: close\r\n\r\n"
#define FIN_HEAD_CHUNKED                                                                           \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

/* The whole reply to a request naming "cut":<n> in its mock object. */
static const char *fin_reply(const char *request)
{
    if (strstr(request, "\"cut\":1") != NULL)
        return FIN_HEAD EV("one") EV("two"); /* cut between events */
    if (strstr(request, "\"cut\":2") != NULL)
        return FIN_HEAD EV("one") EV("two") EV_STOP; /* finished, but no [DONE] */
    if (strstr(request, "\"cut\":3") != NULL)
        return FIN_HEAD EV("one") EV("two") "data: {\"id\":\"x-1\",\"obj"; /* inside an event */
    if (strstr(request, "\"cut\":4") != NULL) /* chunked, closed inside an event */
        return FIN_HEAD_CHUNKED "5\r\ndata:\r\n";
    return FIN_HEAD EV("one") EV("two") EV_STOP EV_DONE; /* complete */
}

typedef struct {
    int lfd;
    int wake[2];
    pthread_t thread;
    uint16_t port;
} fin_srv_t;

static void fin_serve(int fd)
{
    char buf[65536];
    size_t len = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0 || len + 1 >= sizeof(buf))
            return;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = '\0';
        size_t hl;
        const char *body;
        char v[32];
        if (!lx_harness_split(buf, len, &hl, &body))
            continue;
        size_t cl = 0;
        if (lx_harness_head_header(buf, hl, "content-length", v, sizeof(v)))
            cl = (size_t)strtoull(v, NULL, 10);
        if (len - hl >= cl)
            break;
    }
    char reply[4096];
    int n = snprintf(reply, sizeof(reply), "%s", fin_reply(buf));
    (void)!send(fd, reply, (size_t)n, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR); /* FIN: the end of a close-delimited body */
    struct pollfd p = {fd, POLLIN, 0};
    while (poll(&p, 1, 1000) > 0 && recv(fd, buf, sizeof(buf), 0) > 0) {
    }
}

static void *fin_main(void *arg)
{
    fin_srv_t *f = arg;
    for (;;) {
        struct pollfd p[2] = {{f->lfd, POLLIN, 0}, {f->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        fin_serve(fd);
        close(fd);
    }
    return NULL;
}

static int fin_start(fin_srv_t *f)
{
    memset(f, 0, sizeof(*f));
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (pipe2(f->wake, O_CLOEXEC) != 0)
        return -1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(f->lfd, 16) != 0 || getsockname(f->lfd, (struct sockaddr *)&sa, &sl) != 0 ||
        pthread_create(&f->thread, NULL, fin_main, f) != 0) {
        if (f->lfd >= 0)
            close(f->lfd);
        close(f->wake[0]);
        close(f->wake[1]);
        return -1;
    }
    f->port = ntohs(sa.sin_port);
    return 0;
}

static void fin_stop(fin_srv_t *f)
{
    if (f->port == 0)
        return;
    (void)!write(f->wake[1], "x", 1);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    close(f->wake[0]);
    close(f->wake[1]);
    f->port = 0;
}

/* ---- setup ---- */

static lx_harness_t H;
static fin_srv_t FIN;

/* The raw upstream's reply: a chunked stream with two good events, then a broken chunk size. */
static char *malformed_reply(void)
{
    static const char e1[] = EV("one"), e2[] = EV("two");
    char *r = malloc(4096);
    assert_non_null(r);
    snprintf(r, 4096,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
             "\r\n%zx\r\n%s\r\n%zx\r\n%s\r\nzz!\r\ngarbage\r\n",
             sizeof(e1) - 1, e1, sizeof(e2) - 1, e2);
    return r;
}

static int setup(void **state)
{
    (void)state;
    if (fin_start(&FIN) != 0)
        return -1;
    char tpl[4096];
    snprintf(tpl, sizeof(tpl), CONFIG_FMT, FIN.port);
    char *reply = malformed_reply();
    lx_harness_opts_t o = {
        .mocks = 1, .raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = reply};
    int rc = lx_harness_start(&H, &o, tpl);
    free(reply);
    if (rc != 0)
        fin_stop(&FIN);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    lx_harness_stop(&H);
    fin_stop(&FIN);
    return 0;
}

/* ---- helpers ---- */

/* Occurrences of <needle> in the string <s> (memmem: linear, even under ASan). */
static size_t count(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(s), nl = strlen(needle);
    for (const char *p = s, *end = s + len; (p = memmem(p, (size_t)(end - p), needle, nl)) != NULL;
         p++)
        n++;
    return n;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *request_text(const char *path, const char *request_id, const char *body)
{
    char *req = malloc(4096);
    assert_non_null(req);
    snprintf(req, 4096,
             "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n%s",
             path, request_id, strlen(body), body);
    return req;
}

/* The last event of an SSE body (from its start to the end, terminator included). */
static const char *last_event(const char *body, size_t len)
{
    assert_true(len >= 2 && memcmp(body + len - 2, "\n\n", 2) == 0);
    const char *p = body + len - 2;
    while (p > body && !(p[-1] == '\n' && p - 1 > body && p[-2] == '\n'))
        p--;
    return p;
}

/* <ev> is the final error event for HTTP status <code>: OpenAI's shape under /v1 (an error
 * object with message, type, param and code -- a string or null -- and no choices) or,
 * <openrouter>, OpenRouter's (a chunk with an error whose code is the status, metadata with
 * error_type, and finish_reason "error"). */
static void assert_error_event(const char *ev, int code, bool openrouter, const char *in_message)
{
    double d;
    char s[1024];
    if (!openrouter) {
        if (strncmp(ev, "data: {\"error\":{\"message\":", 26) != 0) {
            fprintf(stderr, "not an error event: %.300s\n", ev);
            fail();
        }
        assert_null(strstr(ev, "\"choices\""));
    } else {
        assert_true(strncmp(ev, "data: {", 7) == 0);
        assert_non_null(strstr(ev, "\"error\":{"));
        const char *ch = strstr(ev, "\"choices\":[{");
        assert_non_null(ch);
        assert_non_null(strstr(ch, "\"index\":0"));
        assert_true(lx_harness_json_str(ch, "finish_reason", s, sizeof(s)));
        assert_string_equal(s, "error");
        assert_true(lx_harness_json_str(ev, "model", s, sizeof(s)));
        assert_true(s[0] != '\0' && strcmp(s, "up-m") != 0); /* a public id */
    }
    const char *err = strstr(ev, "\"error\":{");
    assert_true(lx_harness_json_str(err, "message", s, sizeof(s)));
    assert_true(s[0] != '\0');
    if (in_message != NULL && strstr(s, in_message) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", s, in_message);
        fail();
    }
    if (!openrouter) {
        assert_true(lx_harness_json_str(err, "type", s, sizeof(s)));
        assert_string_equal(s, lx_api_error_type(code));
        assert_non_null(strstr(err, "\"param\":null,\"code\":"));
        assert_false(lx_harness_json_num(err, "code", &d)); /* never a number */
        assert_null(strstr(err, "\"error_type\""));
    } else {
        assert_true(lx_harness_json_num(err, "code", &d));
        if ((int)d != code) {
            fprintf(stderr, "error event code %d, expected %d: %.400s\n", (int)d, code, ev);
            fail();
        }
        const char *md = strstr(err, "\"metadata\":{");
        assert_non_null(md);
        assert_true(lx_harness_json_str(md, "error_type", s, sizeof(s)));
        assert_string_equal(s, lx_api_error_default_type(code));
        assert_null(strstr(err, "\"type\""));
    }
    assert_true(ev[strlen(ev) - 1] == '\n' && ev[strlen(ev) - 2] == '\n');
}

/* OpenRouter's error chunk belongs to the stream it ends: the id and created of the stream's
 * first chunk, not llmux's generation id and the time of the cut. */
static void assert_same_stream(const char *body, const char *ev)
{
    char id[128], eid[128];
    double created, ecreated;
    assert_true(lx_harness_json_str(body, "id", id, sizeof(id)));
    assert_true(lx_harness_json_num(body, "created", &created));
    assert_true(lx_harness_json_str(ev, "id", eid, sizeof(eid)));
    assert_true(lx_harness_json_num(ev, "created", &ecreated));
    if (strcmp(id, eid) != 0 || created != ecreated) {
        fprintf(stderr, "error chunk %s %.0f, stream %s %.0f\n", eid, ecreated, id, created);
        fail();
    }
    assert_true(strncmp(id, "gen-", 4) != 0); /* the mock's own ids */
}

/* The log line of <request_id>: status 200, partial, with an error; its events into *events. */
static void assert_logged_partial(const char *request_id, double *events)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", request_id);
    char *line = lx_harness_log_wait(&H, needle, 3000);
    assert_non_null(line);
    double d;
    assert_true(lx_harness_json_num(line, "status", &d));
    assert_int_equal((int)d, 200);
    if (strstr(line, "\"usage\":\"partial\"") == NULL || strstr(line, "\"error\":\"") == NULL) {
        fprintf(stderr, "not logged as partial with an error: %s\n", line);
        free(line);
        fail();
    }
    assert_non_null(strstr(line, "\"stream\":true"));
    if (events != NULL)
        assert_true(lx_harness_json_num(line, "events", events));
    free(line);
}

static bool mock_saw_close(void *arg)
{
    (void)arg;
    return lx_mock_closes_by_peer(H.mock[0]) >= 1;
}

static int keepalive_kept, keepalive_closed; /* what cut responses did to their connection */

/*
 * Sends one streamed request on a fresh connection and reads the response: 200, chunked, and
 * complete per its framing (the terminating chunk). Then the connection is either still usable
 * (a second request on it is answered) or closed cleanly (FIN, not reset).
 */
static void cut_request(const char *path, const char *request_id, const char *body,
                        lx_harness_resp_t *r)
{
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    char *req = request_text(path, request_id, body);
    assert_int_equal(lx_harness_send_str(&c, req), 0);
    free(req);
    assert_int_equal(lx_harness_read(&c, r), 0);
    assert_int_equal(r->status, 200);
    assert_true(r->chunked);
    assert_true(r->complete); /* ended by the terminating chunk, not by a cut connection */
    if (lx_harness_still_open(&c, 100)) {
        keepalive_kept++;
        char *again = request_text("/v1/chat/completions", "again",
                                   "{\"model\":\"m\",\"stream\":true,\"mock\":{\"chunks\":2}}");
        assert_int_equal(lx_harness_send_str(&c, again), 0);
        free(again);
        lx_harness_resp_t r2;
        assert_int_equal(lx_harness_read(&c, &r2), 0);
        assert_int_equal(r2.status, 200);
        assert_true(r2.complete);
        assert_non_null(strstr(r2.body, "data: [DONE]"));
        lx_harness_resp_free(&r2);
    } else {
        keepalive_closed++;
        assert_true(lx_harness_wait_closed(&c, 1000));
        assert_true(c.eof); /* a clean close */
    }
    lx_harness_close(&c);
}

/* ---- 5. errors after the 200 ---- */

static void reset_mid_stream(const char *path, bool openrouter)
{
    lx_harness_resp_t r;
    const char *id = openrouter ? "reset-or" : "reset-oa";
    cut_request(path, id,
                "{\"model\":\"m\",\"stream\":true,\"mock\":{\"chunks\":10,\"reset_after\":3}}", &r);
    /* the three chunks, then the error event, never a finish or [DONE] */
    assert_int_equal(count(r.body, "\"content\":"), 3 + (openrouter ? 1 : 0));
    assert_int_equal(count(r.body, "\"finish_reason\":\"stop\""), 0);
    assert_null(strstr(r.body, "[DONE]"));
    assert_int_equal(count(r.body, "\"model\":\"up-m\""), 0);
    const char *ev = last_event(r.body, r.body_len);
    assert_int_equal(count(r.body, "\"error\":{"), 1);
    assert_error_event(ev, 502, openrouter, "mock-a");
    if (openrouter)
        assert_same_stream(r.body, ev);
    lx_harness_resp_free(&r);
    double events;
    assert_logged_partial(id, &events);
    assert_true(events == 3);
}

static void test_reset_mid_stream_openai(void **state)
{
    (void)state;
    reset_mid_stream("/v1/chat/completions", false);
}

static void test_reset_mid_stream_openrouter(void **state)
{
    (void)state;
    reset_mid_stream("/api/v1/chat/completions", true);
}

static void test_idle_timeout_mid_stream(void **state)
{
    (void)state;
    /* chunk 0 at once, chunk 1 due after 2 s: the 300 ms idle timeout ends the stream */
    lx_harness_resp_t r;
    uint64_t t0 = lx_harness_now_ms();
    cut_request("/v1/chat/completions", "idle-1",
                "{\"model\":\"m\",\"stream\":true,\"mock\":{\"chunks\":5,\"interval_ms\":2000}}",
                &r);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_true(dt >= 280 && dt < 1800);
    assert_int_equal(count(r.body, "\"content\":"), 1);
    assert_null(strstr(r.body, "[DONE]"));
    assert_error_event(last_event(r.body, r.body_len), 504, false, NULL);
    lx_harness_resp_free(&r);
    assert_logged_partial("idle-1", NULL);
    /* the stalled generation is given up upstream */
    assert_true(lx_harness_wait_until(mock_saw_close, NULL, 1000));

    /* the same under /api/v1 */
    cut_request("/api/v1/chat/completions", "idle-2",
                "{\"model\":\"m\",\"stream\":true,\"mock\":{\"chunks\":5,\"interval_ms\":2000}}",
                &r);
    assert_error_event(last_event(r.body, r.body_len), 504, true, NULL);
    assert_same_stream(r.body, last_event(r.body, r.body_len));
    lx_harness_resp_free(&r);
}

static void test_malformed_chunked_framing(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    cut_request("/v1/chat/completions", "malformed-1", "{\"model\":\"raw\",\"stream\":true}", &r);
    /* the good events pass, then the broken framing ends the stream with an error */
    assert_non_null(strstr(r.body, EV("one") EV("two")));
    assert_null(strstr(r.body, "garbage"));
    assert_error_event(last_event(r.body, r.body_len), 502, false, "raw-provider");
    lx_harness_resp_free(&r);
    assert_logged_partial("malformed-1", NULL);
    assert_true(lx_harness_raw_requests(H.raw) >= 1);
}

static void test_close_delimited_reset(void **state)
{
    (void)state;
    lx_harness_resp_t r;
    cut_request("/v1/chat/completions", "cd-reset",
                "{\"model\":\"m\",\"stream\":true,"
                "\"mock\":{\"chunks\":10,\"reset_after\":4,\"close_delimited\":1}}",
                &r);
    assert_int_equal(count(r.body, "\"content\":"), 4);
    assert_null(strstr(r.body, "[DONE]"));
    assert_error_event(last_event(r.body, r.body_len), 502, false, NULL);
    lx_harness_resp_free(&r);
    assert_logged_partial("cd-reset", NULL);
}

static void test_close_delimited_closed_early(void **state)
{
    (void)state;
    static const struct {
        const char *mock, *id, *before_error;
    } cases[] = {
        {"{\"cut\":1}", "cd-cut-1", EV("one") EV("two")},
        {"{\"cut\":2}", "cd-cut-2", EV("one") EV("two") EV_STOP}, /* no [DONE]: not finished */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"model\":\"fin\",\"stream\":true,\"mock\":%s}",
                 cases[i].mock);
        lx_harness_resp_t r;
        cut_request("/v1/chat/completions", cases[i].id, body, &r);
        assert_true(strncmp(r.body, cases[i].before_error, strlen(cases[i].before_error)) == 0);
        assert_null(strstr(r.body, "[DONE]"));
        assert_error_event(last_event(r.body, r.body_len), 502, false, "fin-provider");
        lx_harness_resp_free(&r);
        assert_logged_partial(cases[i].id, NULL);
    }
}

static void test_cut_inside_event(void **state)
{
    (void)state;
    /* an upstream that stops in the middle of an event: whatever part of it was relayed, the
     * error event that follows must be an event of its own, which SSE parsers (and so the
     * client's SDK) can read; glued to the unfinished line it is not */
    static const struct {
        const char *mock, *id, *before_error;
    } cases[] = {
        {"{\"cut\":3}", "cut-in-event-cd", EV("one") EV("two")}, /* close-delimited */
        {"{\"cut\":4}", "cut-in-event-ch", ""},                  /* chunked */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"model\":\"fin\",\"stream\":true,\"mock\":%s}",
                 cases[i].mock);
        lx_harness_resp_t r;
        cut_request("/v1/chat/completions", cases[i].id, body, &r);
        assert_true(strncmp(r.body, cases[i].before_error, strlen(cases[i].before_error)) == 0);
        const char *ev = strstr(r.body, "data: {\"error\"");
        if (ev == NULL ||
            (ev != r.body && (ev[-1] != '\n' || ev - 1 == r.body || ev[-2] != '\n'))) {
            fprintf(stderr, "%s: the error event does not start an event of its own:\n%s\n",
                    cases[i].id, r.body);
            lx_harness_resp_free(&r);
            fail();
        }
        assert_error_event(last_event(r.body, r.body_len), 502, false, "fin-provider");
        lx_harness_resp_free(&r);
        assert_logged_partial(cases[i].id, NULL);
    }
}

static void test_close_delimited_complete(void **state)
{
    (void)state;
    /* the mock's close-delimited stream and the FIN server's, both ending with [DONE] */
    static const char *const bodies[] = {
        "{\"model\":\"m\",\"stream\":true,\"mock\":{\"chunks\":6,\"close_delimited\":1}}",
        "{\"model\":\"fin\",\"stream\":true,\"mock\":{\"cut\":0}}",
    };
    for (size_t i = 0; i < 2; i++) {
        lx_harness_resp_t r;
        char id[16];
        snprintf(id, sizeof(id), "cd-ok-%zu", i);
        cut_request("/v1/chat/completions", id, bodies[i], &r);
        assert_null(strstr(r.body, "\"error\""));
        assert_string_equal(last_event(r.body, r.body_len), "data: [DONE]\n\n");
        assert_int_equal(count(r.body, "\"content\":"), i == 0 ? 6 : 2);
        lx_harness_resp_free(&r);
        char needle[64];
        snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", id);
        char *line = lx_harness_log_wait(&H, needle, 3000);
        assert_non_null(line);
        assert_null(strstr(line, "\"error\""));
        assert_null(strstr(line, "partial"));
        free(line);
    }
}

/* ---- 8. cancellation ---- */

/* Reads a chunked stream from <c> (head already consumed) until <n> occurrences of <needle>
 * arrived in the raw bytes; true when they did. Framing is not decoded: enough for counting
 * short events. */
static bool read_until_count(lx_harness_conn_t *c, const char *needle, size_t n, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        if (c->buf != NULL && count(c->buf, needle) >= n)
            return true;
        uint64_t now = lx_harness_now_ms();
        if (now >= end || !lx_harness_wait_bytes(c, c->len + 1, (int)(end - now)))
            return false;
    }
}

static void test_client_cancels_mid_stream(void **state)
{
    (void)state;
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, H.port), 0);
    char *req = request_text("/v1/chat/completions", "cancel-1",
                             "{\"model\":\"m\",\"stream\":true,"
                             "\"mock\":{\"chunks\":200,\"interval_ms\":20}}");
    assert_int_equal(lx_harness_send_str(&c, req), 0);
    free(req);
    assert_true(read_until_count(&c, "\"content\":", 2, 3000));
    assert_non_null(strstr(c.buf, "HTTP/1.1 200"));
    assert_int_equal(lx_mock_closes_by_peer(H.mock[0]), 0);
    uint64_t t_close = now_ns();
    lx_harness_close(&c);
    /* the upstream connection goes at once: the model server stops generating */
    assert_true(lx_harness_wait_until(mock_saw_close, NULL, 1000));
    assert_true(lx_mock_last_peer_close_ns(H.mock[0]) > t_close);
    assert_true(lx_mock_last_peer_close_ns(H.mock[0]) - t_close < 500000000u);
    /* logged as the client's leaving (nginx's 499), partial */
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"cancel-1\"", 3000);
    assert_non_null(line);
    double events;
    assert_non_null(strstr(line, "\"status\":499,"));
    assert_non_null(strstr(line, "\"usage\":\"partial\""));
    assert_non_null(strstr(line, "\"error\":\"client closed the connection\""));
    assert_true(lx_harness_json_num(line, "events", &events));
    assert_true(events >= 2 && events <= 10);
    free(line);
}

/* ---- 10. drain ---- */

static void test_drain_with_streams(void **state)
{
    (void)state;
    lx_harness_conn_t slow, quick;
    assert_int_equal(lx_harness_connect(&slow, H.port), 0);
    char *req = request_text("/v1/chat/completions", "drain-slow",
                             "{\"model\":\"m\",\"stream\":true,"
                             "\"mock\":{\"chunks\":100,\"interval_ms\":100}}");
    assert_int_equal(lx_harness_send_str(&slow, req), 0);
    free(req);
    assert_true(read_until_count(&slow, "\"content\":", 1, 3000));

    assert_int_equal(lx_harness_connect(&quick, H.port), 0);
    req = request_text("/v1/chat/completions", "drain-quick",
                       "{\"model\":\"m\",\"stream\":true,"
                       "\"mock\":{\"chunks\":3,\"interval_ms\":50}}");
    assert_int_equal(lx_harness_send_str(&quick, req), 0);
    free(req);
    assert_true(read_until_count(&quick, "HTTP/1.1 200", 1, 3000));

    uint64_t t0 = lx_harness_now_ms();
    lx_gateway_drain(H.gw);

    /* the short stream finishes normally within the shutdown timeout */
    lx_harness_resp_t r;
    assert_int_equal(lx_harness_read(&quick, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.complete);
    assert_int_equal(count(r.body, "\"content\":"), 3);
    assert_null(strstr(r.body, "\"error\""));
    assert_string_equal(last_event(r.body, r.body_len), "data: [DONE]\n\n");
    lx_harness_resp_free(&r);

    /* the long one is ended at the timeout with a 503 event, cleanly framed */
    assert_int_equal(lx_harness_read(&slow, &r), 0);
    uint64_t dt = lx_harness_now_ms() - t0;
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_true(r.complete);
    assert_true(dt >= 250 && dt < 1500);
    assert_null(strstr(r.body, "[DONE]"));
    assert_true(count(r.body, "\"content\":") >= 2);
    assert_error_event(last_event(r.body, r.body_len), 503, false, "shutting down");
    lx_harness_resp_free(&r);
    lx_harness_close(&slow);
    lx_harness_close(&quick);
    assert_logged_partial("drain-slow", NULL);
    char *line = lx_harness_log_wait(&H, "\"request_id\":\"drain-quick\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"usage\":\"complete\""));
    free(line);
}

static int report(void **state)
{
    (void)state;
    fprintf(stderr, "cut responses: connection kept alive %d time(s), closed %d time(s)\n",
            keepalive_kept, keepalive_closed);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_mid_stream_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_stream_openrouter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_chunked_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited_closed_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_inside_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancels_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_with_streams, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
