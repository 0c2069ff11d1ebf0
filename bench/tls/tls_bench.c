/*
 * tls_bench.c - what TLS costs llmux: handshakes (full and resumed) and streaming throughput
 * over TLS against plain TCP, side by side in one run.
 *
 *   1. handshakes in memory (tls/ only, client and server on one thread): wall and CPU time
 *      per handshake, and the bytes exchanged, full vs resumed (session ticket);
 *   2. handshakes over loopback with net/ streams (connect + handshake until the client's
 *      connect callback), full vs resumed;
 *   3. streaming: a server stream writes STREAM_MIB MiB in 16 KiB slices (keeping at most
 *      1 MiB queued) to a client stream that reads it, plain TCP then TLS, on one loop and one
 *      core (so the TLS figure pays both encryption and decryption).
 * The certificates (ECDSA P-256) are generated at start. Build and run: bench/tls/run.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/version.h>

#include "core/status.h"
#include "net/listener.h"
#include "net/stream.h"
#include "net/worker.h"
#include "tls/tls.h"

#include "../../test/unit/tls/pki.h"

#define STREAM_MIB 512

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static pki_t P;
static char dir[64];
static lx_tls_server_t *srv_ctx;
static lx_tls_client_t *cli_ctx;

/* --- 1. in memory --------------------------------------------------------------------------- */

static size_t wire;

static int move(lx_tls_t *from, lx_tls_t *to)
{
    lx_slice_t sl[LX_TLS_OUT_MAX];
    size_t n;
    int moved = 0;
    while ((n = lx_tls_out(from, sl, LX_TLS_OUT_MAX)) > 0) {
        for (size_t i = 0; i < n; i++) {
            wire += sl[i].len;
            if (lx_tls_feed(to, sl[i].buf, lx_slice_ptr(&sl[i]), sl[i].len) != 0)
                abort();
            lx_buf_unref(sl[i].buf);
        }
        moved = 1;
    }
    return moved;
}

static void handshake_mem(const char *key, int n, const char *label)
{
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 16);
    lx_buf_t *spare_c = NULL, *spare_s = NULL;
    int resumed = 0;
    wire = 0;
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < n; i++) {
        lx_tls_t *c, *s;
        if (lx_tls_new_client(cli_ctx, "localhost", key, &pool, &spare_c, &c) != 0 ||
            lx_tls_new_server(srv_ctx, &pool, &spare_s, &s) != 0)
            abort();
        for (int k = 0; k < 20; k++) {
            int rc = lx_tls_handshake(c);
            int rs = lx_tls_handshake(s);
            if (rc < 0 || rs < 0)
                abort();
            if (!move(c, s) && !move(s, c) && rc == 0 && rs == 0)
                break;
        }
        if (!lx_tls_ready(c) || !lx_tls_ready(s))
            abort();
        resumed += lx_tls_resumed(c);
        lx_tls_free(c);
        lx_tls_free(s);
    }
    double t = now_s() - t0, cpu = cpu_s() - c0;
    printf("| %s | %d | %d | %.0f | %.0f | %zu |\n", label, n, resumed, t / n * 1e6, cpu / n * 1e6,
           wire / (size_t)n);
    lx_buf_unref(spare_c);
    lx_buf_unref(spare_s);
    lx_buf_pool_dispose(&pool);
}

/* --- 2 and 3: on a loop --------------------------------------------------------------------- */

static lx_worker_t W;
static lx_listener_t L;
static uint16_t port;
static struct sockaddr_storage addr;
static lx_stream_t *accepted;
static int connected;
static size_t received, sent_total, to_send;
static lx_buf_t *payload;

static void on_closed(lx_stream_t *s)
{
    free(s);
}

static void on_accept(lx_listener_t *l)
{
    lx_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL || lx_stream_init(&W, s) != 0 || lx_stream_accept((uv_stream_t *)&l->tcp, s))
        abort();
    accepted = s;
}

static void on_connect(lx_stream_t *s, int status)
{
    (void)s;
    if (status != 0) {
        fprintf(stderr, "connect: %s\n", lx_strerror(status));
        abort();
    }
    connected = 1;
}

static lx_stream_t *dial(int tls, const char *key)
{
    lx_stream_t *c = calloc(1, sizeof(*c));
    if (c == NULL || lx_stream_init(&W, c) != 0)
        abort();
    if (tls && lx_stream_set_tls_client(c, cli_ctx, "localhost", key) != 0)
        abort();
    connected = 0;
    accepted = NULL;
    if (lx_stream_connect(c, (struct sockaddr *)&addr, on_connect) != 0)
        abort();
    while (!connected || accepted == NULL)
        uv_run(&W.loop, UV_RUN_ONCE);
    return c;
}

static void handshake_net(const char *key, int n, const char *label)
{
    lx_listener_set_tls(&L, srv_ctx);
    int resumed = 0;
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < n; i++) {
        lx_stream_t *c = dial(1, key);
        resumed += lx_tls_resumed(c->tls);
        lx_stream_close(c, on_closed);
        lx_stream_close(accepted, on_closed);
        uv_run(&W.loop, UV_RUN_NOWAIT);
    }
    double t = now_s() - t0, cpu = cpu_s() - c0;
    printf("| %s | %d | %d | %.0f | %.0f | |\n", label, n, resumed, t / n * 1e6, cpu / n * 1e6);
}

static void pump(lx_stream_t *s);

static void on_sent(lx_stream_t *s, int status, void *arg)
{
    (void)arg;
    if (status == 0)
        pump(s);
}

static void pump(lx_stream_t *s)
{
    while (sent_total < to_send && s->queued < (1u << 20)) {
        lx_slice_t sl = lx_slice_make(payload, 0, LX_BUF_CHUNK_SIZE);
        if (lx_stream_write(s, &sl, 1, on_sent, NULL) != 0)
            abort();
        sent_total += LX_BUF_CHUNK_SIZE;
    }
}

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    (void)s;
    (void)b;
    (void)data;
    if (nread > 0)
        received += (size_t)nread;
}

static void stream_run(int tls, const char *label)
{
    lx_listener_set_tls(&L, tls ? srv_ctx : NULL);
    lx_stream_t *c = dial(tls, NULL);
    lx_stream_t *s = accepted;
    while (tls && lx_stream_handshaking(s))
        uv_run(&W.loop, UV_RUN_ONCE);
    received = sent_total = 0;
    to_send = (size_t)STREAM_MIB << 20;
    lx_stream_read_start(c, on_read);
    double t0 = now_s(), c0 = cpu_s();
    pump(s);
    while (received < to_send)
        uv_run(&W.loop, UV_RUN_ONCE);
    double t = now_s() - t0, cpu = cpu_s() - c0;
    printf("| %s | %d | %.0f | %.2f |\n", label, STREAM_MIB, STREAM_MIB / t,
           cpu / STREAM_MIB * 1e3);
    lx_stream_close(c, on_closed);
    lx_stream_close(s, on_closed);
    uv_run(&W.loop, UV_RUN_NOWAIT);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/llmux-tls-bench-XXXXXX");
    if (mkdtemp(dir) == NULL || pki_make(&P, dir) != 0)
        return 1;
    lx_tls_cert_pair_t pair = {.cert_pem = P.server.cert_pem, .key_pem = P.server.key_pem};
    lx_tls_server_opts_t so = {.certs = &pair, .n_certs = 1};
    char err[256], ca[128];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    lx_tls_client_opts_t co = {.ca_file = ca};
    if (lx_tls_server_new(&so, err, sizeof(err), &srv_ctx) != 0 ||
        lx_tls_client_new(&co, err, sizeof(err), &cli_ctx) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("TLS 1.2, ECDHE-ECDSA (P-256 certificate, X25519 key exchange), AES-128-GCM; "
           "mbedTLS %s; both ends on one thread\n\n",
           MBEDTLS_VERSION_STRING);
    printf("| handshake | n | resumed | wall µs each | CPU µs each (both ends) | bytes |\n");
    printf("|---|---|---|---|---|---|\n");
    handshake_mem(NULL, 300, "in memory, full");
    handshake_mem("bench", 2000, "in memory, resumed");

    if (lx_worker_init(&W, 0) != 0)
        return 1;
    int fd;
    if (lx_listener_bind("127.0.0.1", &port, 128, &fd) != 0 ||
        lx_listener_start(&L, &W, fd, 128, on_accept) != 0)
        return 1;
    lx_listener_addr("127.0.0.1", port, &addr);
    handshake_net(NULL, 300, "loopback, connect + full");
    handshake_net("bench-net", 1000, "loopback, connect + resumed");

    payload = lx_buf_pool_get(&W.bufs);
    for (size_t i = 0; i < LX_BUF_CHUNK_SIZE; i++)
        payload->data[i] = (char)i;
    payload->len = LX_BUF_CHUNK_SIZE;
    printf("\n| stream (one loop, one core) | MiB | MiB/s | CPU ms per MiB |\n|---|---|---|---|\n");
    stream_run(0, "plain TCP");
    stream_run(1, "TLS");
    stream_run(0, "plain TCP (again)");
    stream_run(1, "TLS (again)");

    lx_buf_unref(payload);
    lx_listener_close(&L, NULL);
    lx_worker_close_all(&W);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    lx_worker_dispose(&W);
    lx_tls_server_unref(srv_ctx);
    lx_tls_client_unref(cli_ctx);
    pki_dispose(&P);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
