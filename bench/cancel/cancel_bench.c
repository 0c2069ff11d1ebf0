/*
 * cancel_bench.c - how long after a client leaves does the model server see llmux close?
 *
 * Runs the mock LLM server and llmux (one worker) in this process, on their own threads, and
 * a plain blocking client on the main thread. For each phase, N times: start a request, wait
 * until it is in that phase, stamp CLOCK_MONOTONIC and close the client socket, then wait for
 * the mock to record the upstream close (it stamps the same clock). Prints p50/p99/max of the
 * delay per phase.
 *
 *   llmux-cancel-bench [N]     (default 200 per phase)
 *
 * Phases: waiting for the upstream's response head (mock delay), mid-stream (after the first
 * event of a slow stream), and a non-streaming request the upstream holds (mock hang).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "mock.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *phase, uint64_t *v, int n, int lost)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    if (n == 0) {
        printf("| %s | 0 | - | - | - | %d |\n", phase, lost);
        return;
    }
    printf("| %s | %d | %.1f | %.1f | %.1f | %d |\n", phase, n, (double)v[n / 2] / 1000.0,
           (double)v[(size_t)((double)(n - 1) * 0.99)] / 1000.0, (double)v[n - 1] / 1000.0, lost);
}

/* Runs one phase: <body> is sent; after <wait_ms> (or the first event when wait_ms < 0) the
 * client closes. */
static void phase(const char *name, uint16_t port, lx_mock_t *m, const char *body, int wait_ms,
                  int n)
{
    uint64_t *d = calloc((size_t)n, sizeof(*d));
    int got = 0, lost = 0;
    char req[1024], buf[4096];
    int len = snprintf(req, sizeof(req),
                       "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                       strlen(body), body);
    for (int i = 0; i < n; i++) {
        uint64_t before = lx_mock_closes_by_peer(m);
        uint64_t reqs = lx_mock_requests(m);
        int fd = connect_to(port);
        if (fd < 0 || write(fd, req, (size_t)len) != len) {
            lost++;
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (wait_ms < 0) {
            /* mid-stream: wait for the first event (the head may come alone) */
            size_t have = 0;
            ssize_t r;
            while ((r = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
                have += (size_t)r;
                if (memmem(buf, have, "data: ", 6) != NULL || have == sizeof(buf) - 1)
                    break;
            }
            if (r <= 0) {
                lost++;
                close(fd);
                continue;
            }
        } else {
            lx_mock_wait_requests(m, reqs + 1, 2000);
            usleep((useconds_t)wait_ms * 1000);
        }
        uint64_t t = now_ns();
        close(fd);
        uint64_t deadline = t + 2000000000ull;
        while (lx_mock_closes_by_peer(m) == before && now_ns() < deadline)
            usleep(20);
        uint64_t seen = lx_mock_last_peer_close_ns(m);
        if (lx_mock_closes_by_peer(m) == before || seen < t) {
            lost++;
            continue;
        }
        d[got++] = seen - t;
    }
    report(name, d, got, lost);
    free(d);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    signal(SIGPIPE, SIG_IGN);
    lx_mock_t *m = lx_mock_start("127.0.0.1", 0);
    if (m == NULL)
        return 1;
    char dir[] = "/tmp/llmux-cancel-XXXXXX"; /* the store file's, removed at the end */
    if (mkdtemp(dir) == NULL) {
        perror("llmux-cancel-bench: mkdtemp");
        return 1;
    }
    char cfgtext[1024];
    snprintf(cfgtext, sizeof(cfgtext),
             "listen: 127.0.0.1:0\nworkers: 1\nproviders:\n  - name: mock\n"
             "    base_url: http://127.0.0.1:%u/v1\nmodels:\n  - id: bench/model\n"
             "    context_length: 8192\n    providers: [{provider: mock}]\nauth: none\n"
             "log: {access_log: off, level: error}\nstore: {path: %s/llmux.db}\n",
             lx_mock_port(m), dir);
    lx_config_t *cfg = NULL;
    if (lx_config_parse("cancel.yaml", cfgtext, strlen(cfgtext), stderr, &cfg) != 0)
        return 1;
    lx_gateway_t *gw = NULL;
    if (lx_gateway_start(cfg, &gw) != 0)
        return 1;
    uint16_t port = lx_gateway_port(gw, 0);
    printf("| phase | samples | p50 µs | p99 µs | max µs | lost |\n|---|---|---|---|---|---|\n");
    phase("waiting for the upstream head", port, m,
          "{\"model\":\"bench/model\",\"stream\":true,\"mock\":{\"delay_ms\":5000}}", 5, n);
    phase("mid-stream", port, m,
          "{\"model\":\"bench/model\",\"stream\":true,\"mock\":{\"chunks\":1000,"
          "\"interval_ms\":20}}",
          -1, n);
    phase("non-streaming, upstream busy", port, m,
          "{\"model\":\"bench/model\",\"mock\":{\"hang\":1}}", 5, n);
    lx_gateway_drain(gw);
    lx_gateway_wait(gw);
    lx_config_unref(cfg);
    lx_mock_stop(m);
    static const char *const files[] = {"llmux.db", "llmux.db-wal", "llmux.db-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}
