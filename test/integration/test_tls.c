/*
 * test_tls.c - TLS on real sockets through the net layer, both ways, without the gateway.
 *
 * One worker runs an lx_http_server_t behind TLS listeners (the certificates are generated at
 * start into a temporary directory) and, on the same loop, upstream connection pools that are
 * TLS clients. Checked:
 *   downstream: curl --cacert gets byte-exact answers (small, and 4 MiB streamed to a
 *   rate-limited reader), SNI picks the certificate curl verifies, curl without the CA
 *   refuses, a client cut mid-stream leaves the server serving, plain HTTP and garbage on the
 *   TLS port are closed, a client that stalls mid-handshake is closed by the header timeout;
 *   upstream: lx_conn_pool connects and handshakes before handing a connection over, a
 *   second fresh connection resumes the session (counted), an unknown CA, an expired
 *   certificate and a wrong host name each fail with their own code, and a server that never
 *   answers the ClientHello fails with LX_ETLSHANDSHAKE.
 * Every wait is bounded; at the end every connection is closed and every chunk returned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/status.h"
#include "harness.h"
#include "http/http_server.h"
#include "net/listener.h"
#include "proxy/conn_pool.h"

#include "../unit/tls/pki.h"

#define STREAM_BYTES (4u << 20)

static pki_t P;
static char dir[64];
static lx_worker_t W;
static lx_http_server_t srv;
static lx_listener_t L, L_expired;
static int fd_main, fd_expired;
static uint16_t port_main, port_expired;
static lx_tls_server_t *ctx_main, *ctx_expired;
static lx_tls_client_t *cli_ok, *cli_other;
static atomic_bool started, stopped_listeners;

/* --- the server side --------------------------------------------------------------------- */

static char pattern(size_t i)
{
    return (char)('a' + (i * 7 + i / 4093) % 26);
}

static size_t format_error(const lx_http_request_t *req, char *buf, size_t cap, int status,
                           const char *message)
{
    (void)req;
    int n = snprintf(buf, cap, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", status, message);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void on_request(lx_http_request_t *req)
{
    if (req->path.len == 7 && memcmp(req->path.ptr, "/stream", 7) == 0) {
        lx_http_server_send_head(req, 200, "Content-Type: application/octet-stream\r\n", 40, -1);
        char piece[16384];
        for (size_t off = 0; off < STREAM_BYTES; off += sizeof(piece)) {
            for (size_t i = 0; i < sizeof(piece); i++)
                piece[i] = pattern(off + i);
            if (lx_http_server_send(req, piece, sizeof(piece)) != 0)
                break;
        }
        lx_http_server_finish(req);
        return;
    }
    lx_http_server_send_head(req, 200, "Content-Type: text/plain\r\n", 26, 5);
    lx_http_server_send(req, "hello", 5);
    lx_http_server_finish(req);
}

static void on_accept(lx_listener_t *l)
{
    lx_http_server_accept(&srv, (uv_stream_t *)&l->tcp);
}

static void on_start(lx_worker_t *w, void *arg)
{
    (void)arg;
    lx_http_server_limits_t lim = {.max_header_size = 16384,
                                   .max_body_size = 1 << 20,
                                   .header_timeout_ms = 400,
                                   .body_timeout_ms = 5000,
                                   .keepalive_timeout_ms = 5000};
    lx_http_server_init(&srv, w, &lim);
    srv.on_request = on_request;
    srv.format_error = format_error;
    assert_int_equal(lx_listener_start(&L, w, fd_main, 64, on_accept), 0);
    assert_int_equal(lx_listener_start(&L_expired, w, fd_expired, 64, on_accept), 0);
    lx_listener_set_tls(&L, ctx_main);
    lx_listener_set_tls(&L_expired, ctx_expired);
    atomic_store(&started, true);
}

/* --- the upstream side ------------------------------------------------------------------- */

typedef struct attempt {
    lx_conn_pool_t pool;
    lx_conn_pool_wait_t wait;
    lx_tls_client_t *ctx;
    const char *server_name;
    uint16_t port;
    lx_upconn_t *conn;
    char got[256];
    size_t got_len;
    atomic_int status; /* 1: running */
    atomic_bool done;
    atomic_bool disposed;
} attempt_t;

static void on_up_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_upconn_t *c = s->data;
    attempt_t *a = c->data;
    (void)b;
    if (nread > 0) {
        size_t k = (size_t)nread < sizeof(a->got) - a->got_len ? (size_t)nread
                                                               : sizeof(a->got) - a->got_len;
        memcpy(a->got + a->got_len, data, k);
        a->got_len += k;
    }
    if (nread < 0 || memmem(a->got, a->got_len, "hello", 5) != NULL) {
        a->conn = NULL;
        lx_conn_pool_close(c); /* a fresh connection next time: resumption, not reuse */
        atomic_store(&a->done, true);
    }
}

static void on_conn(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    attempt_t *a = lx_container_of(w, attempt_t, wait);
    atomic_store(&a->status, status);
    if (status != 0) {
        atomic_store(&a->done, true);
        return;
    }
    a->conn = conn;
    conn->data = a;
    /* the handshake is over before the pool hands the connection out */
    assert_false(lx_stream_handshaking(&conn->stream));
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(lx_stream_write_copy(&conn->stream, req, sizeof(req) - 1, NULL, NULL), 0);
    assert_int_equal(lx_stream_read_start(&conn->stream, on_up_read), 0);
}

static void attempt_start(lx_worker_t *w, void *arg)
{
    attempt_t *a = arg;
    lx_conn_pool_init(&a->pool, w, "127.0.0.1", a->port, 4);
    lx_conn_pool_set_tls(&a->pool, a->ctx, a->server_name);
    a->pool.handshake_timeout_ms = 500;
    lx_conn_pool_get(&a->pool, &a->wait, on_conn);
}

static void attempt_again(lx_worker_t *w, void *arg)
{
    attempt_t *a = arg;
    (void)w;
    lx_conn_pool_get(&a->pool, &a->wait, on_conn);
}

static void attempt_dispose(lx_worker_t *w, void *arg)
{
    attempt_t *a = arg;
    (void)w;
    lx_conn_pool_dispose(&a->pool);
    atomic_store(&a->disposed, true);
}

static bool flag_set(void *arg)
{
    return atomic_load((atomic_bool *)arg);
}

static void wait_flag(atomic_bool *f)
{
    assert_true(lx_harness_wait_until(flag_set, f, 5000));
}

/* One connection through a fresh pool; returns its connect status. */
static int try_upstream(attempt_t *a, lx_tls_client_t *ctx, const char *name, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->ctx = ctx;
    a->server_name = name;
    a->port = port;
    atomic_store(&a->status, 1);
    assert_int_equal(lx_worker_post(&W, attempt_start, a), 0);
    wait_flag(&a->done);
    return atomic_load(&a->status);
}

static void finish_upstream(attempt_t *a)
{
    assert_int_equal(lx_worker_post(&W, attempt_dispose, a), 0);
    wait_flag(&a->disposed);
    lx_harness_sleep_ms(50); /* the closes complete on the loop */
}

/* --- curl -------------------------------------------------------------------------------- */

/* Runs curl with <args>; its exit status, and the body in <out> (malloc'd) when not NULL. */
static int curl(const char *args, char **out, size_t *out_len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "curl -sS --max-time 10 --cacert %s/ca.pem %s", dir, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    int st = pclose(f);
    if (out != NULL) {
        *out = buf;
        *out_len = len;
    } else {
        free(buf);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool have_curl(void)
{
    return system("curl --version >/dev/null 2>&1") == 0;
}

/* --- raw clients ------------------------------------------------------------------------ */

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* True when the server closes <fd> (EOF or reset) within <ms>; bytes it sends are skipped. */
static bool raw_closed_within(int fd, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    while (lx_harness_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        char buf[512];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return true;
    }
    return false;
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_curl_https(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    char args[512], *body;
    size_t len;
    snprintf(args, sizeof(args), "--resolve localhost:%u:127.0.0.1 https://localhost:%u/hello",
             port_main, port_main);
    assert_int_equal(curl(args, &body, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "hello", 5);
    free(body);
    /* SNI: sni.test gets the second certificate, which curl verifies for that name */
    snprintf(args, sizeof(args), "--resolve sni.test:%u:127.0.0.1 https://sni.test:%u/hello",
             port_main, port_main);
    assert_int_equal(curl(args, &body, &len), 0);
    assert_memory_equal(body, "hello", 5);
    free(body);
    /* a name neither certificate carries: curl refuses the default one (60: peer cert) */
    snprintf(args, sizeof(args), "--resolve other.test:%u:127.0.0.1 https://other.test:%u/hello",
             port_main, port_main);
    assert_int_not_equal(curl(args, NULL, NULL), 0);
    /* without our CA: refused */
    snprintf(args, sizeof(args),
             "--cacert %s/other_ca.pem --resolve localhost:%u:127.0.0.1 https://localhost:%u/hello",
             dir, port_main, port_main);
    assert_int_not_equal(curl(args, NULL, NULL), 0);
}

static void test_curl_stream_slow_reader(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    char args[512], *body;
    size_t len;
    /* a slow reader: the server's queue fills and drains; every byte arrives in order */
    snprintf(args, sizeof(args),
             "--limit-rate 4M --resolve localhost:%u:127.0.0.1 https://localhost:%u/stream",
             port_main, port_main);
    assert_int_equal(curl(args, &body, &len), 0);
    assert_int_equal(len, STREAM_BYTES);
    for (size_t i = 0; i < len; i++) {
        if (body[i] != pattern(i))
            fail_msg("byte %zu differs", i);
    }
    free(body);
    /* a reader that leaves mid-stream: the server goes on serving others */
    snprintf(args, sizeof(args),
             "--limit-rate 200k --max-time 1 --resolve localhost:%u:127.0.0.1 "
             "https://localhost:%u/stream",
             port_main, port_main);
    assert_int_not_equal(curl(args, NULL, NULL), 0);
    snprintf(args, sizeof(args), "--resolve localhost:%u:127.0.0.1 https://localhost:%u/hello",
             port_main, port_main);
    assert_int_equal(curl(args, &body, &len), 0);
    assert_memory_equal(body, "hello", 5);
    free(body);
}

static void test_plain_http_and_garbage_closed(void **state)
{
    (void)state;
    const char *inputs[] = {"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n",
                            "\x16\x03\x01\x00\x04garbage-garbage-garbage"};
    for (size_t i = 0; i < 2; i++) {
        int fd = raw_connect(port_main);
        assert_true(send(fd, inputs[i], strlen(inputs[i]), MSG_NOSIGNAL) > 0);
        uint64_t t0 = lx_harness_now_ms();
        assert_true(raw_closed_within(fd, 2000));
        if (i == 0)
            assert_true(lx_harness_now_ms() - t0 < 300); /* at once, not by a timeout */
        close(fd);
    }
}

static void test_stalled_handshake_times_out(void **state)
{
    (void)state;
    /* nothing at all, and half a ClientHello: both closed by the header timeout (400 ms) */
    int c = raw_connect(port_main);
    int d = raw_connect(port_main);
    assert_true(send(d, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, MSG_NOSIGNAL) == 11);
    uint64_t t0 = lx_harness_now_ms();
    assert_true(raw_closed_within(c, 3000));
    assert_true(raw_closed_within(d, 3000));
    assert_true(lx_harness_now_ms() - t0 >= 300);
    close(c);
    close(d);
}

static void test_upstream_tls_and_resumption(void **state)
{
    (void)state;
    static attempt_t a;
    assert_int_equal(try_upstream(&a, cli_ok, "localhost", port_main), 0);
    assert_non_null(memmem(a.got, a.got_len, "hello", 5));
    assert_int_equal(a.pool.n_resumed, 0);
    /* a second fresh connection to the same endpoint resumes the session */
    atomic_store(&a.done, false);
    a.got_len = 0;
    assert_int_equal(lx_worker_post(&W, attempt_again, &a), 0);
    wait_flag(&a.done);
    assert_int_equal(atomic_load(&a.status), 0);
    assert_non_null(memmem(a.got, a.got_len, "hello", 5));
    assert_int_equal(a.pool.n_connects, 2);
    assert_int_equal(a.pool.n_resumed, 1);
    finish_upstream(&a);
}

static void test_upstream_failures(void **state)
{
    (void)state;
    static attempt_t a;
    assert_int_equal(try_upstream(&a, cli_other, "localhost", port_main), LX_ETLSCA);
    finish_upstream(&a);
    assert_int_equal(try_upstream(&a, cli_ok, "localhost", port_expired), LX_ETLSEXPIRED);
    finish_upstream(&a);
    assert_int_equal(try_upstream(&a, cli_ok, "wrong.example", port_main), LX_ETLSHOST);
    finish_upstream(&a);
    /* a server that accepts and never answers the ClientHello */
    lx_harness_raw_t *raw = lx_harness_raw_start(LX_HARNESS_RAW_REPLY, "HTTP/1.1 200 OK\r\n\r\n");
    assert_non_null(raw);
    uint64_t t0 = lx_harness_now_ms();
    assert_int_equal(try_upstream(&a, cli_ok, "localhost", lx_harness_raw_port(raw)),
                     LX_ETLSHANDSHAKE);
    assert_true(lx_harness_now_ms() - t0 >= 400);
    finish_upstream(&a);
    lx_harness_raw_stop(raw);
    /* the messages say which failure it is */
    assert_non_null(strstr(lx_strerror(LX_ETLSHANDSHAKE), "handshake"));
    assert_non_null(strstr(lx_strerror(LX_ETLSEXPIRED), "expired"));
}

#define CONFIG_TEMPLATE                                                                            \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8443\n"                                                                \
    "    tls:\n"                                                                                   \
    "      cert: %s/server.pem\n"                                                                  \
    "      key: %s/%s.key\n"                                                                       \
    "      certificates:\n"                                                                        \
    "        - {cert: %s/sni.pem, key: %s/sni.key}\n"                                              \
    "auth: none\n"                                                                                 \
    "providers:\n"                                                                                 \
    "  - name: up\n"                                                                               \
    "    base_url: https://127.0.0.1:9443/v1\n"                                                    \
    "    tls: {ca_file: %s/ca.pem, server_name: localhost, insecure_skip_verify: %s}\n"            \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 100\n"                                                                    \
    "    providers:\n"                                                                             \
    "      - provider: up\n"

static void test_config_tls_keys(void **state)
{
    (void)state;
    char yaml[2048], *err = NULL, *dump = NULL;
    size_t err_len = 0, dump_len = 0;
    /* valid: TLS listen entry with SNI certificates, an insecure provider shown as such */
    snprintf(yaml, sizeof(yaml), CONFIG_TEMPLATE, dir, dir, "server", dir, dir, dir, "true");
    FILE *e = open_memstream(&err, &err_len);
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("t.yaml", yaml, strlen(yaml), e, &cfg), 0);
    fclose(e);
    assert_non_null(cfg->listen[0].tls);
    assert_int_equal(cfg->listen[0].tls->n_certs, 2);
    assert_true(cfg->providers[0].tls.insecure_skip_verify);
    assert_string_equal(cfg->providers[0].tls.server_name, "localhost");
    FILE *d = open_memstream(&dump, &dump_len);
    lx_config_dump(cfg, d);
    fclose(d);
    assert_non_null(strstr(dump, "(tls)"));
    assert_non_null(strstr(dump, "INSECURE"));
    free(dump);
    free(err);
    lx_config_unref(cfg);
    /* a key that does not match its certificate: an error naming the key file */
    snprintf(yaml, sizeof(yaml), CONFIG_TEMPLATE, dir, dir, "other", dir, dir, dir, "false");
    err = NULL;
    e = open_memstream(&err, &err_len);
    assert_int_not_equal(lx_config_parse("t.yaml", yaml, strlen(yaml), e, &cfg), 0);
    fclose(e);
    assert_null(cfg);
    char want[160];
    snprintf(want, sizeof(want),
             "t.yaml:5:12: listen[0].tls: %s/other.key: the key does not "
             "match the certificate",
             dir);
    if (strstr(err, want) == NULL)
        fail_msg("got: %s", err);
    free(err);
}

/* --- setup ------------------------------------------------------------------------------- */

static void stop_fn(lx_worker_t *w, void *arg)
{
    (void)w;
    (void)arg;
    lx_listener_close(&L, NULL);
    lx_listener_close(&L_expired, NULL);
    lx_http_server_close_all(&srv);
    atomic_store(&stopped_listeners, true);
}

static void close_all_fn(lx_worker_t *w, void *arg)
{
    (void)arg;
    lx_http_server_dispose(&srv);
    lx_worker_close_all(w);
}

static lx_tls_server_t *server_ctx(const pki_cert_t *a, const pki_cert_t *b)
{
    lx_tls_cert_pair_t pairs[2] = {
        {.cert_pem = a->cert_pem, .key_pem = a->key_pem},
        {.cert_pem = b != NULL ? b->cert_pem : NULL, .key_pem = b != NULL ? b->key_pem : NULL}};
    lx_tls_server_opts_t o = {.certs = pairs, .n_certs = b != NULL ? 2 : 1};
    char err[256];
    lx_tls_server_t *s = NULL;
    assert_int_equal(lx_tls_server_new(&o, err, sizeof(err), &s), 0);
    return s;
}

static lx_tls_client_t *client_ctx(const char *ca_name)
{
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, ca_name);
    lx_tls_client_opts_t o = {.ca_file = path};
    lx_tls_client_t *c = NULL;
    assert_int_equal(lx_tls_client_new(&o, err, sizeof(err), &c), 0);
    return c;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/llmux-tls-it-XXXXXX");
    if (mkdtemp(dir) == NULL || pki_make(&P, dir) != 0)
        return -1;
    ctx_main = server_ctx(&P.server, &P.sni);
    ctx_expired = server_ctx(&P.expired, NULL);
    cli_ok = client_ctx("ca");
    cli_other = client_ctx("other_ca");
    if (lx_listener_bind("127.0.0.1", &port_main, 64, &fd_main) != 0 ||
        lx_listener_bind("127.0.0.1", &port_expired, 64, &fd_expired) != 0)
        return -1;
    if (lx_worker_init(&W, 0) != 0)
        return -1;
    W.on_start = on_start;
    if (lx_worker_start(&W) != 0)
        return -1;
    if (!lx_harness_wait_until(flag_set, &started, 5000))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lx_worker_post(&W, stop_fn, NULL);
    lx_harness_wait_until(flag_set, &stopped_listeners, 5000);
    lx_harness_sleep_ms(100);
    lx_worker_post(&W, close_all_fn, NULL);
    lx_worker_join(&W);
    lx_worker_dispose(&W);
    lx_tls_server_unref(ctx_main);
    lx_tls_server_unref(ctx_expired);
    lx_tls_client_unref(cli_ok);
    lx_tls_client_unref(cli_other);
    pki_dispose(&P);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl_https),
        cmocka_unit_test(test_curl_stream_slow_reader),
        cmocka_unit_test(test_plain_http_and_garbage_closed),
        cmocka_unit_test(test_stalled_handshake_times_out),
        cmocka_unit_test(test_upstream_tls_and_resumption),
        cmocka_unit_test(test_upstream_failures),
        cmocka_unit_test(test_config_tls_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
