/*
 * test_lifecycle.c - the gateway's request lifecycle on a real gateway (configuration from a
 * YAML string, one worker thread, its loop) over loopback, with a blocking upstream thread
 * and a port that refuses connections: a request struct is taken, its plan prepared, a failed
 * attempt ended and the next one started, the answer (or the final error listing the
 * attempts) written, and the struct goes back to the worker's cache exactly once, when both
 * the proxy (on_free) and the server (on_done) are through with it - also when the client
 * leaves first, when the request is refused before any attempt, and across a reload (the
 * request's generation is let go with it).
 *
 * The worker's own state (its request cache, its active list) is read on its loop, through
 * lx_worker_post.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "gateway/request.h"
#include "gateway/service.h"
#include "gateway/worker.h"
#include "obs/log.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int listen_any(uint16_t *port, bool do_listen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port nothing listens on: connections to it are refused. */
static uint16_t refused_port(void)
{
    uint16_t port;
    close(listen_any(&port, false));
    return port;
}

/* ---- the upstream: one blocking thread answering every request with a small JSON answer ---- */

static const char answer[] =
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":"
    "\"up\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{"
    "\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}";

typedef struct upstream {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int received; /* requests read whole */
    atomic_int hold;     /* while set, the answer waits */
    atomic_int limited;  /* when set, the answer is a 429 with Retry-After: 7 */
} upstream_t;

static void serve_one(upstream_t *u, int c)
{
    char buf[8192];
    size_t n = 0;
    for (;;) { /* the head and a Content-Length body */
        ssize_t k = recv(c, buf + n, sizeof(buf) - 1 - n, 0);
        if (k <= 0)
            return;
        n += (size_t)k;
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "content-length:");
        if (end != NULL && cl != NULL && n >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10))
            break;
    }
    atomic_fetch_add(&u->received, 1);
    while (atomic_load(&u->hold))
        sleep_ms(5);
    static const char slow[] = "{\"error\":{\"message\":\"slow down\",\"code\":\"rate_limited\"}}";
    bool limited = atomic_load(&u->limited);
    char out[1024];
    int len =
        snprintf(out, sizeof(out),
                 "HTTP/1.1 %s\r\n%sContent-Type: application/json\r\nContent-Length: "
                 "%zu\r\n\r\n%s",
                 limited ? "429 Too Many Requests" : "200 OK", limited ? "Retry-After: 7\r\n" : "",
                 limited ? strlen(slow) : strlen(answer), limited ? slow : answer);
    (void)!send(c, out, (size_t)len, MSG_NOSIGNAL);
}

static void *upstream_main(void *arg)
{
    upstream_t *u = arg;
    for (;;) {
        int c = accept(u->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        serve_one(u, c);
        close(c);
    }
}

static void upstream_start(upstream_t *u)
{
    memset(u, 0, sizeof(*u));
    u->fd = listen_any(&u->port, true);
    assert_int_equal(pthread_create(&u->thread, NULL, upstream_main, u), 0);
}

static void upstream_stop(upstream_t *u)
{
    atomic_store(&u->hold, 0);
    shutdown(u->fd, SHUT_RDWR);
    pthread_join(u->thread, NULL);
    close(u->fd);
}

/* ---- the gateway ----------------------------------------------------------------------------- */

typedef struct fixture {
    lx_gateway_t *g;
    upstream_t up;
    char yaml[2048];
    char log_path[64];
    char store_dir[64]; /* the store's file lives in here */
} fixture_t;

static lx_config_t *parse(const char *yaml)
{
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("t.yaml", yaml, strlen(yaml), stderr, &cfg), 0);
    return cfg;
}

/* A gateway with one worker; provider a on <port_a>, b on <port_b>, both serving model m. */
static fixture_t *start(uint16_t port_a, uint16_t port_b)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    lx_log_set_level(LX_LOG_WARN); /* (each failed attempt is an info line) */
    snprintf(f->log_path, sizeof(f->log_path), "/tmp/llmux-lifecycle-XXXXXX");
    int fd = mkstemp(f->log_path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(f->store_dir, sizeof(f->store_dir), "/tmp/llmux-lifecycle-store-XXXXXX");
    assert_non_null(mkdtemp(f->store_dir));
    snprintf(f->yaml, sizeof(f->yaml),
             "listen: 127.0.0.1:0\n"
             "workers: 1\n"
             "auth: none\n"
             "store: {path: \"%s/llmux.db\"}\n"
             "log: {access_log: \"%s\", level: error}\n"
             "providers:\n"
             "  - {name: a, base_url: \"http://127.0.0.1:%u/v1\"}\n"
             "  - {name: b, base_url: \"http://127.0.0.1:%u/v1\"}\n"
             "models:\n"
             "  - {id: m, context_length: 100, providers: [{provider: a}, {provider: b}]}\n",
             f->store_dir, f->log_path, port_a, port_b);
    lx_config_t *cfg = parse(f->yaml);
    assert_int_equal(lx_gateway_start(cfg, &f->g), 0);
    lx_config_unref(cfg);
    return f;
}

static void stop(fixture_t *f)
{
    lx_gateway_drain(f->g);
    lx_gateway_wait(f->g);
    unlink(f->log_path);
    char p[128];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/llmux.db%s", f->store_dir, suffix[i]);
        unlink(p);
    }
    rmdir(f->store_dir);
    free(f);
}

/* ---- the worker's state, read on its loop ---------------------------------------------------- */

typedef struct look {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    unsigned cached;  /* request structs in the worker's cache */
    bool distinct;    /* ... each once */
    bool idle;        /* no request in the worker's active list */
    unsigned retired; /* generations replaced by a reload, not freed yet */
} look_t;

static void on_look(lx_worker_t *w, void *arg)
{
    lx_gw_worker_t *gw = w->data;
    look_t *l = arg;
    pthread_mutex_lock(&l->mu);
    l->cached = gw->n_req_cache;
    l->distinct = true;
    for (unsigned i = 0; i < gw->n_req_cache; i++)
        for (unsigned j = 0; j < i; j++)
            l->distinct = l->distinct && gw->req_cache[i] != gw->req_cache[j];
    l->idle = lx_list_is_empty(&gw->active);
    l->retired = 0;
    for (lx_gw_gen_t *g = gw->retired; g != NULL; g = g->next_retired)
        l->retired++;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static look_t look(fixture_t *f)
{
    look_t l = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(lx_worker_post(&f->g->workers[0].worker, on_look, &l), 0);
    pthread_mutex_lock(&l.mu);
    while (!l.done)
        pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    return l;
}

/* Waits until the worker has no request in flight, its cache holds <cached> structs and the
 * retired generations are gone, then checks that it stays so: a struct given back twice would
 * show as a second entry (the same pointer), one never given back as a missing one. */
static void assert_settled(fixture_t *f, unsigned cached)
{
    look_t l;
    for (int i = 0; i < 300; i++) {
        l = look(f);
        if (l.idle && l.cached == cached && l.retired == 0 && lx_gateway_generations(f->g) == 1)
            break;
        sleep_ms(10);
    }
    sleep_ms(150);
    l = look(f);
    assert_true(l.idle);
    assert_int_equal(l.cached, cached);
    assert_true(l.distinct);
    assert_int_equal(l.retired, 0);
    assert_int_equal(lx_gateway_generations(f->g), 1);
}

/* ---- the client ------------------------------------------------------------------------------ */

static const char body_ab[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
    "\"provider\":{\"order\":[\"a\",\"b\"]}}";

static int client_send(uint16_t port, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    return fd;
}

/* POSTs <body> and reads the whole answer into <out>: its status. */
static int post(uint16_t port, const char *body, char *out, size_t cap)
{
    int fd = client_send(port, body);
    size_t n = 0;
    ssize_t k;
    while (n < cap - 1 && (k = recv(fd, out + n, cap - 1 - n, 0)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(out, "HTTP/1.1 %d", &status), 1);
    return status;
}

/* The access log's text (it is written every 100 ms). */
static char *access_log(fixture_t *f, const char *needle)
{
    static char text[16384];
    for (int i = 0; i < 100; i++) {
        FILE *fp = fopen(f->log_path, "r");
        assert_non_null(fp);
        size_t n = fread(text, 1, sizeof(text) - 1, fp);
        fclose(fp);
        text[n] = '\0';
        if (strstr(text, needle) != NULL)
            break;
        sleep_ms(20);
    }
    return text;
}

/* ---- the tests ------------------------------------------------------------------------------- */

/* a refuses the connection: the attempt ends, the next one (b) serves the answer. */
static void test_failover(void **state)
{
    (void)state;
    upstream_t *up = malloc(sizeof(*up));
    upstream_start(up);
    fixture_t *f = start(refused_port(), up->port);
    uint16_t port = lx_gateway_port(f->g, 0);
    char out[8192];
    assert_int_equal(post(port, body_ab, out, sizeof(out)), 200);
    assert_non_null(strstr(out, "\"content\":\"hi\""));
    assert_non_null(strstr(out, "\"provider\":\"b\"")); /* what served it */
    assert_int_equal(atomic_load(&up->received), 1);
    assert_settled(f, 1);
    const char *log = access_log(f, "\"attempts\":2");
    assert_non_null(strstr(log, "\"status\":200"));
    assert_non_null(strstr(log, "\"attempts\":2"));
    assert_non_null(strstr(log, "\"provider\":\"a\""));
    assert_non_null(strstr(log, "\"outcome\":\"connect\""));
    assert_non_null(strstr(log, "\"outcome\":\"ok\""));
    /* the struct is reused, and given back again */
    assert_int_equal(post(port, body_ab, out, sizeof(out)), 200);
    assert_settled(f, 1);
    stop(f);
    upstream_stop(up);
    free(up);
}

/* Every attempt fails: one final answer, 502, listing both attempts. */
static void test_all_fail(void **state)
{
    (void)state;
    fixture_t *f = start(refused_port(), refused_port());
    char out[8192];
    assert_int_equal(post(lx_gateway_port(f->g, 0), body_ab, out, sizeof(out)), 502);
    const char *attempts = strstr(out, "\"attempts\":[");
    assert_non_null(attempts);
    assert_non_null(strstr(attempts, "{\"provider\":\"a\",\"model\":\"m\",\"status\":null,"
                                     "\"error_type\":\"connect\"},{\"provider\":\"b\""));
    assert_non_null(strstr(out, "2 attempts failed"));
    assert_settled(f, 1);
    stop(f);
}

/* Both providers answer 429: each attempt ends as rate limited, the final answer is a 429 with
 * their Retry-After, and the struct goes back once. */
static void test_all_limited(void **state)
{
    (void)state;
    upstream_t *up = malloc(sizeof(*up));
    upstream_start(up);
    atomic_store(&up->limited, 1);
    fixture_t *f = start(up->port, up->port);
    char out[8192];
    assert_int_equal(post(lx_gateway_port(f->g, 0), body_ab, out, sizeof(out)), 429);
    assert_int_equal(atomic_load(&up->received), 2);
    assert_non_null(strstr(out, "Retry-After: 7\r\n"));
    assert_non_null(strstr(out, "\"error_type\":\"rate_limit\"},{\"provider\":\"b\""));
    assert_non_null(strstr(out, "2 attempts failed"));
    assert_settled(f, 1);
    stop(f);
    upstream_stop(up);
    free(up);
}

/* Refused before any attempt (unknown model): answered, and the struct goes back at once. */
static void test_rejected(void **state)
{
    (void)state;
    fixture_t *f = start(refused_port(), refused_port());
    char out[8192];
    assert_int_equal(post(lx_gateway_port(f->g, 0), "{\"model\":\"nope\"}", out, sizeof(out)), 404);
    assert_non_null(strstr(out, "model_not_found"));
    assert_settled(f, 1);
    stop(f);
}

/* The client leaves while the upstream holds its answer, and a reload comes meanwhile: the
 * request ends as 499, its struct goes back once and its generation (the one before the
 * reload) is freed after it. */
static void test_client_gone_across_reload(void **state)
{
    (void)state;
    upstream_t *up = malloc(sizeof(*up));
    upstream_start(up);
    atomic_store(&up->hold, 1);
    fixture_t *f = start(up->port, up->port);
    int fd = client_send(lx_gateway_port(f->g, 0), body_ab);
    for (int i = 0; i < 300 && atomic_load(&up->received) == 0; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&up->received), 1);
    lx_config_t *cfg = parse(f->yaml);
    lx_gateway_reload(f->g, cfg);
    lx_config_unref(cfg);
    look_t l;
    for (int i = 0; i < 300; i++) {
        l = look(f);
        if (l.retired == 1)
            break;
        sleep_ms(10);
    }
    assert_int_equal(l.retired, 1); /* the request holds the old generation */
    assert_false(l.idle);
    assert_int_equal(lx_gateway_generations(f->g), 2);
    close(fd);
    assert_settled(f, 1);
    atomic_store(&up->hold, 0);
    const char *log = access_log(f, "\"status\":499");
    assert_non_null(strstr(log, "client closed the connection"));
    stop(f);
    upstream_stop(up);
    free(up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_all_fail),
        cmocka_unit_test(test_all_limited),
        cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_client_gone_across_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
