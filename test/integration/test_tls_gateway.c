/*
 * test_tls_gateway.c - TLS through the whole gateway, both ways, with in-process llmux
 * instances and certificates generated at start into a temporary directory (pki.h).
 *
 * Checked:
 *   llmux as a TLS server: a chat answer and a streamed answer over HTTPS, the streamed text
 *   byte-equal to the non-streamed one and ended by [DONE];
 *   llmux as a TLS client: a "front" llmux whose provider is a TLS llmux (the "back") answers
 *   chat and stream through both, the second request reuses the pooled TLS connection (access
 *   log "reused":true); an unknown CA, an expired certificate, a wrong host name and a server
 *   that never answers the handshake each give a 502 whose message is lx_strerror() of their
 *   code, and a request fails over from a TLS failure to the next provider (2 attempts);
 *   certificate reload: after lx_gateway_reload with a certificate from another CA, new
 *   connections get the new certificate while a keep-alive connection made before still works;
 *   plain HTTP, TLS-looking garbage and random bytes on the TLS port are closed and llmux keeps
 *   serving.
 *
 * The test's HTTPS client is a blocking mbedTLS client joined to a socketpair by a bridge
 * thread, so the harness's HTTP client (lx_harness_read and friends) runs unchanged on the
 * plaintext end. Every wait is bounded (socket timeouts, harness deadlines).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

#include "config/config.h"
#include "core/status.h"
#include "harness.h"

#include "../unit/tls/pki.h"

#define STREAM_CHUNKS 300
#define CHUNK_SIZE    64

static pki_t P;
static char dir[64];

/* --- a blocking HTTPS client bridged to a socketpair ------------------------------------- */

typedef struct tconn {
    lx_harness_conn_t c; /* the plaintext end: the harness client works on it */
    int sock;            /* TCP to llmux */
    int pair;            /* the bridge's end of the socketpair */
    pthread_t thread;
    bool running;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    char issuer[256]; /* of the certificate the server presented */
} tconn_t;

static void set_timeouts(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno != EINTR)
            return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return (int)n;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_TIMEOUT;
        if (errno != EINTR)
            return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

static int send_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int tls_write_all(mbedtls_ssl_context *ssl, const unsigned char *p, size_t len)
{
    while (len > 0) {
        int n = mbedtls_ssl_write(ssl, p, len);
        if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Moves plaintext between the socketpair and the TLS session until the test closes its end.
 * When llmux ends the TLS connection, the test's end sees EOF. */
static void *bridge(void *arg)
{
    tconn_t *t = arg;
    static _Thread_local unsigned char buf[16384];
    bool tls_open = true;
    for (;;) {
        bool pending = tls_open && mbedtls_ssl_get_bytes_avail(&t->ssl) > 0;
        struct pollfd p[2] = {{tls_open ? t->sock : -1, POLLIN, 0}, {t->pair, POLLIN, 0}};
        if (poll(p, 2, pending ? 0 : 100) < 0 && errno != EINTR)
            break;
        if (tls_open && (pending || (p[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
            int n = mbedtls_ssl_read(&t->ssl, buf, sizeof(buf));
            if (n > 0) {
                if (send_all(t->pair, buf, (size_t)n) != 0)
                    break;
            } else if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE) {
                tls_open = false;
                shutdown(t->pair, SHUT_WR);
            }
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(t->pair, buf, sizeof(buf), 0);
            if (n <= 0)
                break; /* the test closed its end */
            if (tls_open && tls_write_all(&t->ssl, buf, (size_t)n) != 0) {
                tls_open = false;
                shutdown(t->pair, SHUT_WR);
            }
        }
    }
    if (tls_open)
        mbedtls_ssl_close_notify(&t->ssl);
    return NULL;
}

/* Connects to 127.0.0.1:<port>, handshakes asking for (SNI) and verifying <name> against
 * <dir>/<ca>.pem. 0 with the bridge running, or the mbedTLS error (nothing left to free). */
static int tconn_open(tconn_t *t, uint16_t port, const char *name, const char *ca)
{
    memset(t, 0, sizeof(*t));
    t->c.fd = t->sock = t->pair = -1;
    mbedtls_ssl_init(&t->ssl);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->ca);
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, ca);
    int rc = mbedtls_x509_crt_parse_file(&t->ca, path);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
        mbedtls_ssl_conf_rng(&t->conf, lx_tls_rng, NULL);
        rc = mbedtls_ssl_setup(&t->ssl, &t->conf);
    }
    if (rc == 0)
        rc = mbedtls_ssl_set_hostname(&t->ssl, name);
    int sp[2] = {-1, -1};
    if (rc == 0) {
        t->sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (t->sock < 0 || connect(t->sock, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
            rc = MBEDTLS_ERR_NET_CONNECT_FAILED;
    }
    if (rc == 0) {
        set_timeouts(t->sock, LX_HARNESS_IO_TIMEOUT_MS);
        mbedtls_ssl_set_bio(&t->ssl, &t->sock, bio_send, bio_recv, NULL);
        do {
            rc = mbedtls_ssl_handshake(&t->ssl);
        } while (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE);
    }
    if (rc == 0) {
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
        if (peer != NULL)
            mbedtls_x509_dn_gets(t->issuer, sizeof(t->issuer), &peer->issuer);
        t->c.fd = sp[0];
        t->pair = sp[1];
        set_timeouts(t->c.fd, LX_HARNESS_IO_TIMEOUT_MS);
        if (pthread_create(&t->thread, NULL, bridge, t) != 0)
            rc = MBEDTLS_ERR_NET_CONNECT_FAILED;
        else
            t->running = true;
    }
    if (rc != 0) {
        if (sp[0] >= 0) {
            close(sp[0]);
            close(sp[1]);
        }
        if (t->sock >= 0)
            close(t->sock);
        mbedtls_ssl_free(&t->ssl);
        mbedtls_ssl_config_free(&t->conf);
        mbedtls_x509_crt_free(&t->ca);
        memset(t, 0, sizeof(*t));
        t->c.fd = t->sock = t->pair = -1;
    }
    return rc;
}

static void tconn_close(tconn_t *t)
{
    if (!t->running)
        return;
    lx_harness_close(&t->c); /* the bridge sees EOF and ends */
    pthread_join(t->thread, NULL);
    close(t->pair);
    close(t->sock);
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->ca);
    t->running = false;
}

/* --- requests ----------------------------------------------------------------------------- */

/* A chat completion request for model <model> (<extra> is appended to the JSON object). */
static int chat_request(char *out, size_t cap, const char *model, bool stream, const char *id,
                        const char *extra)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"stream\":%s,\"mock\":{\"chunks\":%d,\"chunk_size\":%d}%s}",
             model, stream ? "true" : "false", STREAM_CHUNKS, CHUNK_SIZE,
             extra != NULL ? extra : "");
    return snprintf(out, cap,
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                    "Content-Type: application/json\r\nX-Request-Id: %s\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    id, strlen(body), body);
}

/* Sends one chat request on an open connection and reads the answer. */
static void chat_on(lx_harness_conn_t *c, const char *model, bool stream, const char *id,
                    const char *extra, lx_harness_resp_t *r)
{
    char req[1024];
    int n = chat_request(req, sizeof(req), model, stream, id, extra);
    assert_int_equal(lx_harness_send(c, req, (size_t)n), 0);
    assert_int_equal(lx_harness_read(c, r), 0);
}

/* The same over a fresh plain connection. */
static void chat_plain(uint16_t port, const char *model, bool stream, const char *id,
                       const char *extra, lx_harness_resp_t *r)
{
    lx_harness_conn_t c;
    assert_int_equal(lx_harness_connect(&c, port), 0);
    chat_on(&c, model, stream, id, extra, r);
    lx_harness_close(&c);
}

/* The same over a fresh HTTPS connection verified for localhost against the test CA. */
static void chat_tls(uint16_t port, const char *model, bool stream, const char *id,
                     lx_harness_resp_t *r)
{
    tconn_t t;
    assert_int_equal(tconn_open(&t, port, "localhost", "ca"), 0);
    chat_on(&t.c, model, stream, id, NULL, r);
    tconn_close(&t);
}

/* The text the mock answers (chunks x chunk_size), from a non-streamed answer; malloc'd. */
static char *answer_text(const lx_harness_resp_t *r)
{
    char *text = malloc(r->body_len + 1);
    assert_non_null(text);
    assert_true(lx_harness_json_str(r->body, "content", text, r->body_len + 1));
    return text;
}

/* The text of a streamed answer: the concatenated delta contents; checks the SSE framing and
 * the final [DONE]. malloc'd. */
static char *stream_text(const lx_harness_resp_t *r)
{
    assert_int_equal(r->status, 200);
    assert_true(r->chunked);
    assert_true(r->complete);
    static const char done[] = "data: [DONE]\n\n";
    assert_true(r->body_len >= sizeof(done) - 1);
    assert_memory_equal(r->body + r->body_len - (sizeof(done) - 1), done, sizeof(done) - 1);
    char *text = malloc(r->body_len + 1), *event = malloc(r->body_len + 1);
    assert_non_null(text);
    assert_non_null(event);
    size_t n = 0, events = 0;
    const char *p = r->body, *end = r->body + r->body_len;
    while (p < end) {
        const char *e = memmem(p, (size_t)(end - p), "\n\n", 2);
        assert_non_null(e);
        assert_memory_equal(p, "data: ", 6);
        memcpy(event, p, (size_t)(e - p));
        event[e - p] = '\0';
        char *part = malloc((size_t)(e - p) + 1);
        assert_non_null(part);
        if (strstr(event, "\"delta\":{") != NULL &&
            lx_harness_json_str(strstr(event, "\"delta\":{"), "content", part,
                                (size_t)(e - p) + 1)) {
            size_t k = strlen(part);
            memcpy(text + n, part, k);
            n += k;
            events++;
        }
        free(part);
        p = e + 2;
    }
    text[n] = '\0';
    free(event);
    assert_int_equal(events, STREAM_CHUNKS);
    return text;
}

/* A chat answer and a stream through <port> (HTTPS when <tls>): both carry the same text. */
static void expect_chat_and_stream(uint16_t port, bool tls)
{
    lx_harness_resp_t r, s;
    if (tls) {
        chat_tls(port, "m", false, "chat-1", &r);
        chat_tls(port, "m", true, "stream-1", &s);
    } else {
        chat_plain(port, "m", false, "chat-1", NULL, &r);
        chat_plain(port, "m", true, "stream-1", NULL, &s);
    }
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"chat.completion\""));
    char *want = answer_text(&r), *got = stream_text(&s);
    assert_int_equal(strlen(want), STREAM_CHUNKS * CHUNK_SIZE);
    assert_string_equal(got, want);
    free(want);
    free(got);
    lx_harness_resp_free(&r);
    lx_harness_resp_free(&s);
}

/* --- the llmux instances ------------------------------------------------------------------ */

/* The back: llmux serving HTTPS with <cert> on 127.0.0.1, and <cert2>, <cert3> on 127.0.0.2
 * and 127.0.0.3 when not NULL, in front of one mock. */
static void start_back(lx_harness_t *h, const char *cert, const char *cert2, const char *cert3)
{
    char tpl[4096];
    int n = snprintf(tpl, sizeof(tpl),
                     "listen:\n"
                     "  - address: 127.0.0.1:0\n"
                     "    tls: {cert: %s/%s.pem, key: %s/%s.key}\n",
                     dir, cert, dir, cert);
    const char *more[2] = {cert2, cert3};
    for (int i = 0; i < 2; i++) {
        if (more[i] != NULL)
            n += snprintf(tpl + n, sizeof(tpl) - (size_t)n,
                          "  - address: 127.0.0.%d:0\n"
                          "    tls: {cert: %s/%s.pem, key: %s/%s.key}\n",
                          i + 2, dir, more[i], dir, more[i]);
    }
    snprintf(tpl + n, sizeof(tpl) - (size_t)n,
             "workers: 1\n"
             "timeouts: {shutdown: 200ms}\n"
             "providers:\n"
             "  - name: mock\n"
             "    base_url: http://127.0.0.1:@MOCK0@/v1\n"
             "models:\n"
             "  - id: m\n"
             "    context_length: 4096\n"
             "    providers: [{provider: mock}]\n"
             "auth: none\n"
             "log: {access_log: @LOG@, level: error}\n");
    lx_harness_opts_t o = {.mocks = 1};
    assert_int_equal(lx_harness_start(h, &o, tpl), 0);
}

/* One provider of the front: an https upstream at <host>:<port>, verified against <ca>. */
static int front_provider(char *out, size_t cap, const char *name, const char *host, uint16_t port,
                          const char *ca)
{
    return snprintf(out, cap,
                    "  - name: %s\n"
                    "    base_url: https://%s:%u/v1\n"
                    "    timeouts: {connect: 300ms}\n"
                    "    tls: {ca_file: %s/%s.pem, server_name: localhost}\n",
                    name, host, port, dir, ca);
}

/* --- tests: llmux as a TLS server --------------------------------------------------------- */

static void test_server_chat_and_stream(void **state)
{
    (void)state;
    lx_harness_t back;
    start_back(&back, "server", NULL, NULL);
    expect_chat_and_stream(back.port, true);
    /* the access log saw both, as HTTPS requests like any other */
    char *line = lx_harness_log_wait(&back, "\"request_id\":\"stream-1\"", 2000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"status\":200"));
    free(line);
    lx_harness_stop(&back);
}

static void test_garbage_and_plain_http_closed(void **state)
{
    (void)state;
    lx_harness_t back;
    start_back(&back, "server", NULL, NULL);
    static char noise[4096];
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (char)((i * 131 + 17) % 251);
    static const char http[] = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n";
    /* a TLS record header (handshake, 4 bytes) whose message is not a ClientHello */
    static const char fake[] = "\x16\x03\x01\x00\x04garbage-garbage-garbage";
    const char *inputs[] = {http, fake, noise};
    const size_t lens[] = {sizeof(http) - 1, sizeof(fake) - 1, sizeof(noise)};
    for (size_t i = 0; i < 3; i++) {
        lx_harness_conn_t c;
        assert_int_equal(lx_harness_connect(&c, back.port), 0);
        assert_int_equal(lx_harness_send(&c, inputs[i], lens[i]), 0);
        /* closed at once (the header timeout is 10 s) */
        if (!lx_harness_wait_closed(&c, 2000))
            fail_msg("input %zu: the connection stayed open", i);
        lx_harness_close(&c);
        /* llmux keeps serving HTTPS */
        lx_harness_resp_t r;
        chat_tls(back.port, "m", false, "after-garbage", &r);
        assert_int_equal(r.status, 200);
        lx_harness_resp_free(&r);
    }
    /* the client refuses a server whose certificate it cannot verify: the test client is real */
    tconn_t t;
    assert_int_equal(tconn_open(&t, back.port, "localhost", "other_ca"),
                     MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    assert_int_equal(tconn_open(&t, back.port, "wrong.example", "ca"),
                     MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    lx_harness_stop(&back);
}

/* --- tests: llmux as a TLS client --------------------------------------------------------- */

static void test_client_through_both(void **state)
{
    (void)state;
    lx_harness_t back, front;
    start_back(&back, "server", NULL, NULL);
    char tpl[4096], prov[512];
    front_provider(prov, sizeof(prov), "back", "127.0.0.1", back.port, "ca");
    snprintf(tpl, sizeof(tpl),
             "listen: 127.0.0.1:0\n"
             "workers: 1\n"
             "timeouts: {shutdown: 200ms}\n"
             "providers:\n%s"
             "models:\n"
             "  - id: m\n"
             "    context_length: 4096\n"
             "    providers: [{provider: back}]\n"
             "auth: none\n"
             "log: {access_log: @LOG@, level: error}\n",
             prov);
    lx_harness_opts_t o = {.mocks = 0};
    assert_int_equal(lx_harness_start(&front, &o, tpl), 0);
    /* plain HTTP to the front, HTTPS from the front to the back */
    expect_chat_and_stream(front.port, false);
    /* one TLS connection upstream, kept alive: the second request reuses it */
    char *first = lx_harness_log_wait(&front, "\"request_id\":\"chat-1\"", 2000);
    char *second = lx_harness_log_wait(&front, "\"request_id\":\"stream-1\"", 2000);
    assert_non_null(first);
    assert_non_null(second);
    assert_non_null(strstr(first, "\"reused\":false"));
    assert_non_null(strstr(second, "\"reused\":true"));
    assert_non_null(strstr(second, "\"status\":200"));
    free(first);
    free(second);
    /* the back saw both requests (through the front's TLS connection) */
    char *b = lx_harness_log_wait(&back, "\"request_id\":\"stream-1\"", 2000);
    assert_non_null(b);
    free(b);
    lx_harness_stop(&front);
    lx_harness_stop(&back);
}

/* A 502 whose message carries lx_strerror(<code>). */
static void expect_tls_failure(uint16_t port, const char *model, int code)
{
    lx_harness_resp_t r;
    chat_plain(port, model, false, model, NULL, &r);
    assert_true(lx_harness_is_error(&r, 502));
    char msg[1024];
    assert_true(lx_harness_json_str(r.body, "message", msg, sizeof(msg)));
    if (strstr(msg, lx_strerror(code)) == NULL)
        fail_msg("model %s: expected \"%s\" in the message, got: %s", model, lx_strerror(code),
                 msg);
    lx_harness_resp_free(&r);
}

static void test_client_failures_and_failover(void **state)
{
    (void)state;
    lx_harness_t back, front;
    start_back(&back, "server", "expired", "wronghost");
    uint16_t p_expired = lx_gateway_port(back.gw, 1), p_wrong = lx_gateway_port(back.gw, 2);
    char tpl[8192], prov[6][512];
    front_provider(prov[0], sizeof(prov[0]), "good", "127.0.0.1", back.port, "ca");
    front_provider(prov[1], sizeof(prov[1]), "badca", "127.0.0.1", back.port, "other_ca");
    front_provider(prov[2], sizeof(prov[2]), "badca2", "127.0.0.1", back.port, "other_ca");
    front_provider(prov[3], sizeof(prov[3]), "expired", "127.0.0.2", p_expired, "ca");
    front_provider(prov[4], sizeof(prov[4]), "wronghost", "127.0.0.3", p_wrong, "ca");
    snprintf(prov[5], sizeof(prov[5]),
             "  - name: silent\n"
             "    base_url: https://127.0.0.1:@RAW@/v1\n"
             "    timeouts: {connect: 300ms}\n"
             "    tls: {ca_file: %s/ca.pem, server_name: localhost}\n",
             dir);
    snprintf(tpl, sizeof(tpl),
             "listen: 127.0.0.1:0\n"
             "workers: 1\n"
             "timeouts: {shutdown: 200ms}\n"
             "providers:\n%s%s%s%s%s%s"
             "models:\n"
             "  - {id: failover, context_length: 4096, providers: [{provider: badca2, model: m}, "
             "{provider: good, model: m}]}\n"
             "  - {id: m-badca, context_length: 4096, providers: [{provider: badca}]}\n"
             "  - {id: m-expired, context_length: 4096, providers: [{provider: expired}]}\n"
             "  - {id: m-wronghost, context_length: 4096, providers: [{provider: wronghost}]}\n"
             "  - {id: m-silent, context_length: 4096, providers: [{provider: silent}]}\n"
             "auth: none\n"
             "log: {access_log: @LOG@, level: error}\n",
             prov[0], prov[1], prov[2], prov[3], prov[4], prov[5]);
    /* the raw upstream reads until a blank line, which a ClientHello never has: it never
     * answers the handshake */
    lx_harness_opts_t o = {.raw = true, .raw_mode = LX_HARNESS_RAW_REPLY, .raw_reply = ""};
    assert_int_equal(lx_harness_start(&front, &o, tpl), 0);

    /* failover first, while badca2 has no failure on record: it is tried first (order) */
    lx_harness_resp_t r;
    chat_plain(front.port, "failover", false, "failover", ",\"provider\":{\"order\":[\"badca2\"]}",
               &r);
    if (r.status != 200)
        fail_msg("failover: %d %s", r.status, r.body != NULL ? r.body : "");
    char v[64];
    assert_true(lx_harness_resp_header(&r, "x-llmux-attempts", v, sizeof(v)));
    assert_string_equal(v, "2");
    assert_true(lx_harness_resp_header(&r, "x-llmux-provider", v, sizeof(v)));
    assert_string_equal(v, "good");
    lx_harness_resp_free(&r);

    expect_tls_failure(front.port, "m-badca", LX_ETLSCA);
    expect_tls_failure(front.port, "m-expired", LX_ETLSEXPIRED);
    expect_tls_failure(front.port, "m-wronghost", LX_ETLSHOST);
    uint64_t t0 = lx_harness_now_ms();
    expect_tls_failure(front.port, "m-silent", LX_ETLSHANDSHAKE);
    assert_true(lx_harness_now_ms() - t0 >= 250);
    /* the messages differ: each says which failure it was */
    assert_string_not_equal(lx_strerror(LX_ETLSCA), lx_strerror(LX_ETLSEXPIRED));
    assert_string_not_equal(lx_strerror(LX_ETLSEXPIRED), lx_strerror(LX_ETLSHOST));

    /* the failures left both llmux serving */
    expect_chat_and_stream(back.port, true);
    chat_plain(front.port, "failover", false, "after", ",\"provider\":{\"only\":[\"good\"]}", &r);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    lx_harness_stop(&front);
    lx_harness_stop(&back);
}

/* --- tests: certificate reload ------------------------------------------------------------ */

typedef struct probe {
    uint16_t port;
} probe_t;

/* True once a new connection gets the certificate issued by the second CA. */
static bool sees_new_cert(void *arg)
{
    probe_t *p = arg;
    tconn_t t;
    if (tconn_open(&t, p->port, "localhost", "other_ca") != 0)
        return false;
    tconn_close(&t);
    return true;
}

static void test_reload_certificate(void **state)
{
    (void)state;
    lx_harness_t back;
    start_back(&back, "server", NULL, NULL);
    /* a keep-alive HTTPS connection made before the reload */
    tconn_t old;
    assert_int_equal(tconn_open(&old, back.port, "localhost", "ca"), 0);
    assert_non_null(strstr(old.issuer, "llmux test CA"));
    lx_harness_resp_t r;
    chat_on(&old.c, "m", false, "before", NULL, &r);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);

    /* the same configuration with a certificate for localhost from another CA */
    char text[2048];
    snprintf(text, sizeof(text),
             "listen:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls: {cert: %s/other.pem, key: %s/other.key}\n"
             "workers: 1\n"
             "timeouts: {shutdown: 200ms}\n"
             "providers:\n"
             "  - name: mock\n"
             "    base_url: http://127.0.0.1:%u/v1\n"
             "models:\n"
             "  - id: m\n"
             "    context_length: 4096\n"
             "    providers: [{provider: mock}]\n"
             "auth: none\n"
             "store: {path: %s}\n"
             "log: {access_log: %s, level: error}\n",
             dir, dir, lx_mock_port(back.mock[0]), back.store_path, back.log_path);
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_parse("reload.yaml", text, strlen(text), stderr, &cfg), 0);
    assert_int_equal(lx_gateway_reload(back.gw, cfg), 0);
    lx_config_unref(cfg);
    probe_t pr = {back.port};
    assert_true(lx_harness_wait_until(sees_new_cert, &pr, 3000));

    /* new connections: the new certificate, which the first CA no longer verifies */
    tconn_t t;
    assert_int_equal(tconn_open(&t, back.port, "localhost", "ca"),
                     MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    assert_int_equal(tconn_open(&t, back.port, "localhost", "other_ca"), 0);
    assert_non_null(strstr(t.issuer, "another CA"));
    chat_on(&t.c, "m", false, "new", NULL, &r);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    tconn_close(&t);

    /* the connection from before the reload still works, twice (keep-alive), stream too */
    chat_on(&old.c, "m", false, "old-1", NULL, &r);
    assert_int_equal(r.status, 200);
    lx_harness_resp_free(&r);
    chat_on(&old.c, "m", true, "old-2", NULL, &r);
    char *text_got = stream_text(&r);
    assert_int_equal(strlen(text_got), STREAM_CHUNKS * CHUNK_SIZE);
    free(text_got);
    lx_harness_resp_free(&r);
    tconn_close(&old);
    lx_harness_stop(&back);
}

/* --- setup -------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/llmux-tls-gw-XXXXXX");
    if (mkdtemp(dir) == NULL || pki_make(&P, dir) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pki_dispose(&P);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_chat_and_stream),
        cmocka_unit_test(test_garbage_and_plain_http_closed),
        cmocka_unit_test(test_client_through_both),
        cmocka_unit_test(test_client_failures_and_failover),
        cmocka_unit_test(test_reload_certificate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
