/*
 * mock_main.c - `llmux-mock`, the mock LLM server as a standalone process for the demo config
 * and the benchmarks: one mock (one thread, one loop) per -l address, until SIGTERM or SIGINT.
 * With --gpu, every one of them is a simulated GPU model server (GPU mode, mock.h).
 */
/* the target is built without _GNU_SOURCE: ask for POSIX signals explicitly */

#include "mock.h"

#include <netdb.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_LISTEN 64

static void usage(FILE *f)
{
    fprintf(f, "usage: llmux-mock [-l host:port]... [--gpu k=v,...] [--seed N] [-h]\n"
               "  -l host:port  listen here (repeatable; default 127.0.0.1:9101;\n"
               "                IPv6 as [::1]:9101; a bare port means 127.0.0.1)\n"
               "  --gpu SPEC    every server simulates a GPU model server; SPEC is 'on' or\n"
               "                k=v pairs separated by commas, over the defaults:\n"
               "                max_running=8 max_waiting=0 prefill_base_us=1000\n"
               "                prefill_us_per_token=100 itl_us=10000 itl_alpha=0.1\n"
               "                cache_blocks=4096 block_tokens=16 output_tokens=16\n"
               "                random_output=0 legacy_metrics=0 model=mock-model\n"
               "  --seed N      the GPU mode's seed (random_output), default 1\n"
               "  -h            this help\n"
               "Answers OpenAI-shaped requests; per-request controls: test/mock/README.md.\n"
               "Exits 0 on SIGTERM or SIGINT.\n");
}

/* "host:port", "[v6]:port" or "port" into host (a buffer of hostsz) and *port. */
static int parse_addr(const char *s, char *host, size_t hostsz, uint16_t *port)
{
    const char *portstr;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        hlen = (size_t)(end - s - 1);
        memcpy(host, s + 1, hlen < hostsz ? hlen : 0);
        portstr = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            hlen = strlen("127.0.0.1");
            memcpy(host, "127.0.0.1", hlen);
            portstr = s;
        } else {
            hlen = (size_t)(colon - s);
            memcpy(host, s, hlen < hostsz ? hlen : 0);
            portstr = colon + 1;
        }
    }
    if (hlen == 0 || hlen >= hostsz)
        return -1;
    host[hlen] = '\0';
    char *end;
    unsigned long p = strtoul(portstr, &end, 10);
    if (*portstr == '\0' || *end != '\0' || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

/* One "key=value" of a --gpu spec into *g; -1 when unknown or malformed. */
static int gpu_pair(lx_mock_gpu_t *g, const char *k, size_t klen, const char *v)
{
    static const struct {
        const char *name;
        size_t off;
    } u32s[] = {
        {"max_running", offsetof(lx_mock_gpu_t, max_running)},
        {"max_waiting", offsetof(lx_mock_gpu_t, max_waiting)},
        {"prefill_base_us", offsetof(lx_mock_gpu_t, prefill_base_us)},
        {"prefill_us_per_token", offsetof(lx_mock_gpu_t, prefill_us_per_token)},
        {"itl_us", offsetof(lx_mock_gpu_t, itl_us)},
        {"cache_blocks", offsetof(lx_mock_gpu_t, cache_blocks)},
        {"block_tokens", offsetof(lx_mock_gpu_t, block_tokens)},
        {"output_tokens", offsetof(lx_mock_gpu_t, output_tokens)},
    };
    char *end;
    if (klen == 5 && memcmp(k, "model", 5) == 0) {
        if (strlen(v) >= sizeof(g->model_name))
            return -1;
        strcpy(g->model_name, v);
        return 0;
    }
    if (klen == 9 && memcmp(k, "itl_alpha", 9) == 0) {
        g->itl_alpha = strtod(v, &end);
        return *v && *end == '\0' && g->itl_alpha >= 0 ? 0 : -1;
    }
    unsigned long x = strtoul(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x > UINT32_MAX)
        return -1;
    if (klen == 13 && memcmp(k, "random_output", 13) == 0) {
        g->random_output = x != 0;
        return 0;
    }
    if (klen == 14 && memcmp(k, "legacy_metrics", 14) == 0) {
        g->legacy_metrics = x != 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof(u32s) / sizeof(u32s[0]); i++) {
        if (strlen(u32s[i].name) == klen && memcmp(k, u32s[i].name, klen) == 0) {
            *(uint32_t *)((char *)g + u32s[i].off) = (uint32_t)x;
            return 0;
        }
    }
    return -1;
}

/* A --gpu spec ("on", or k=v,k=v) over the defaults already in *g; -1 on a bad pair. */
static int parse_gpu(lx_mock_gpu_t *g, const char *spec)
{
    if (strcmp(spec, "on") == 0 || *spec == '\0')
        return 0;
    char buf[1024];
    if (strlen(spec) >= sizeof(buf))
        return -1;
    strcpy(buf, spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL || gpu_pair(g, tok, (size_t)(eq - tok), eq + 1) < 0) {
            fprintf(stderr, "llmux-mock: bad --gpu setting '%s'\n", tok);
            return -1;
        }
    }
    return 0;
}

static void on_probe_connection(uv_stream_t *server, int status)
{
}

/* lx_mock_start gives no reason when it cannot listen: bind and listen on host:port once more
 * the way it does (libuv), and say what failed. */
static const char *listen_error(const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return gai_strerror(rc);
    uv_loop_t loop;
    uv_tcp_t tcp;
    rc = uv_loop_init(&loop);
    if (rc == 0) {
        uv_tcp_init(&loop, &tcp);
        rc = uv_tcp_bind(&tcp, res->ai_addr, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&tcp, 1, on_probe_connection);
        uv_close((uv_handle_t *)&tcp, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    freeaddrinfo(res);
    return rc != 0 ? uv_strerror(rc) : "out of memory, or the address was busy for a moment";
}

int main(int argc, char **argv)
{
    const char *addrs[MAX_LISTEN];
    size_t n = 0;
    lx_mock_gpu_t gpu;
    lx_mock_gpu_defaults(&gpu);
    int gpu_on = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gpu") == 0 && i + 1 < argc) {
            gpu_on = 1;
            if (parse_gpu(&gpu, argv[++i]) < 0) {
                usage(stderr);
                return 2;
            }
            continue;
        }
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            char *end;
            const char *v = argv[++i];
            gpu.seed = strtoull(v, &end, 10);
            if (*v == '\0' || *end != '\0') {
                usage(stderr);
                return 2;
            }
            continue;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-l") == 0 && i + 1 < argc && n < MAX_LISTEN) {
            addrs[n++] = argv[++i];
            continue;
        }
        usage(stderr);
        return 2;
    }
    if (n == 0)
        addrs[n++] = "127.0.0.1:9101";

    /* blocked before any thread starts, so only sigwait below sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    lx_mock_t *mocks[MAX_LISTEN] = {0};
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char host[256];
        uint16_t port;
        if (parse_addr(addrs[i], host, sizeof(host), &port) < 0) {
            fprintf(stderr, "llmux-mock: bad address '%s' (want host:port)\n", addrs[i]);
            rc = 2;
            break;
        }
        mocks[i] = lx_mock_start(host, port);
        if (mocks[i] == NULL) {
            fprintf(stderr, "llmux-mock: cannot listen on %s: %s\n", addrs[i],
                    listen_error(host, port));
            rc = 1;
            break;
        }
        if (gpu_on && lx_mock_set_gpu(mocks[i], &gpu) < 0) {
            fprintf(stderr, "llmux-mock: GPU mode could not be set on %s\n", addrs[i]);
            rc = 1;
            break;
        }
        fprintf(stderr, "llmux-mock listening on %s%s%s:%u%s\n", strchr(host, ':') ? "[" : "", host,
                strchr(host, ':') ? "]" : "", lx_mock_port(mocks[i]), gpu_on ? " (GPU mode)" : "");
    }
    if (rc == 0) {
        int sig = 0;
        sigwait(&set, &sig);
    }
    for (size_t i = 0; i < n; i++)
        lx_mock_stop(mocks[i]);
    return rc;
}
