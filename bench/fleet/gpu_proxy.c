/*
 * gpu_proxy.c - the GPU-fleet benchmark's targets: llmux (three balances), nginx least_conn and
 * HAProxy leastconn in front of the four replicas. Each run writes the target's config to the
 * temporary directory, starts it as a child process (stdout and stderr to <name>.log there) and
 * waits until a request goes through it to a replica; gb_target_stop ends it. nginx is started
 * as bench/run.sh starts it (`-g 'daemon off; master_process off;'`, one worker), HAProxy in
 * the foreground (`-db`, one thread); llmux with `workers: 1`.
 */
#include "gpu.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const gb_target_name[GB_T_COUNT] = {"llmux fleet",       "llmux least_request",
                                                "llmux round_robin", "nginx least_conn",
                                                "HAProxy leastconn", "direct affinity"};

static volatile pid_t child = -1;
static char log_path[512];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void gb_target_stop(void)
{
    pid_t pid = child;
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            child = -1;
            return;
        }
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    child = -1;
}

static const char *const balance_key[3] = {"fleet", "least_request", "round_robin"};

const char *gb_target_desc(int t, const gb_proxy_opts_t *o)
{
    static char d[256];
    if (t == GB_T_NGINX)
        return "nginx `least_conn`, keepalive upstream, HTTP/1.1, proxy_buffering off";
    if (t == GB_T_HAPROXY)
        return "HAProxy `balance leastconn`, http mode, no http-buffer-request";
    if (t == GB_T_AFFINITY)
        return "no proxy: the client sends each conversation straight to replica (system prompt "
               "index mod 4), perfect prefix affinity and no load balance (a reference)";
    if (o->no_fleet_keys)
        snprintf(d, sizeof(d), "%s (**routing.balance left out, --no-fleet-keys**)",
                 t == GB_T_RR ? "llmux `routing.strategy: round_robin`"
                              : "llmux default replica choice");
    else
        snprintf(d, sizeof(d), "llmux `routing.balance: %s`", balance_key[t]);
    return d;
}

static void llmux_routing(FILE *f, int t, const gb_proxy_opts_t *o)
{
    if (o->no_fleet_keys) {
        if (t == GB_T_RR)
            fprintf(f, "routing:\n  strategy: round_robin\n");
        return;
    }
    fprintf(f, "routing:\n  balance: %s\n", balance_key[t]);
    if (o->scrape_interval != NULL)
        fprintf(f, "  scrape_interval: %s\n", o->scrape_interval);
    if (o->queue_size >= 0)
        fprintf(f, "  queue_size: %d\n", o->queue_size);
    if (o->queue_timeout != NULL)
        fprintf(f, "  queue_timeout: %s\n", o->queue_timeout);
    if (o->affinity_slack != NULL)
        fprintf(f, "  affinity_slack: %s\n", o->affinity_slack);
    if (o->affinity_eps != NULL)
        fprintf(f, "  affinity_eps: %s\n", o->affinity_eps);
    if (o->affinity_wait != NULL)
        fprintf(f, "  affinity_wait: %s\n", o->affinity_wait);
    if (o->queue_target != NULL)
        fprintf(f, "  queue_target: %s\n", o->queue_target);
    if (o->queue_interval != NULL)
        fprintf(f, "  queue_interval: %s\n", o->queue_interval);
}

static void write_llmux(FILE *f, int t, const gb_proxy_opts_t *o, uint16_t port)
{
    fprintf(f, "# written by llmux-fleet-gpu (%s)\nlisten: 127.0.0.1:%u\nworkers: 1\n",
            gb_target_name[t], port);
    fprintf(f, "providers:\n  - name: gpu\n    base_url: http://127.0.0.1:%u/v1\n    endpoints:\n",
            o->mock_ports[0]);
    for (int i = 0; i < GB_REPLICAS; i++)
        fprintf(f, "      - http://127.0.0.1:%u\n", o->mock_ports[i]);
    fprintf(f, "    timeouts:\n      first_byte: 600s\n      idle: 600s\n");
    if (!o->no_fleet_keys) {
        fprintf(f, "    metrics: /metrics\n");
        if (o->max_in_flight > 0)
            fprintf(f, "    max_in_flight: %d\n", o->max_in_flight);
        if (o->prefix_cache_tokens > 0) /* (the prefix-hit estimate's model, gpu_est.c) */
            fprintf(f, "    prefix_cache_tokens: %u\n", o->prefix_cache_tokens);
    }
    fprintf(
        f,
        "models:\n  - id: %s\n    context_length: 131072\n    providers:\n      - provider: gpu\n",
        GB_MODEL);
    llmux_routing(f, t, o);
    fprintf(f, "auth: none\nlog:\n  access_log: off\n  level: warn\n");
}

static void write_nginx(FILE *f, const gb_proxy_opts_t *o, uint16_t port)
{
    const char *d = o->tmpdir;
    fprintf(f,
            "# written by llmux-fleet-gpu\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
            "pid %s/nginx.pid;\nerror_log %s/nginx.err warn;\n"
            "events { worker_connections 10000; }\nhttp {\n    access_log off;\n"
            "    client_body_temp_path %s/nginx-body;\n    proxy_temp_path %s/nginx-proxy;\n"
            "    fastcgi_temp_path %s/nginx-fcgi;\n    uwsgi_temp_path %s/nginx-uwsgi;\n"
            "    scgi_temp_path %s/nginx-scgi;\n"
            "    client_max_body_size 64m;\n    client_body_buffer_size 1m;\n"
            "    keepalive_requests 10000000;\n    keepalive_timeout 600s;\n"
            "    upstream fleet {\n        least_conn;\n",
            d, d, d, d, d, d, d);
    for (int i = 0; i < GB_REPLICAS; i++)
        fprintf(f, "        server 127.0.0.1:%u;\n", o->mock_ports[i]);
    fprintf(f,
            "        keepalive 256;\n        keepalive_requests 10000000;\n"
            "        keepalive_timeout 600s;\n    }\n    server {\n"
            "        listen 127.0.0.1:%u;\n        location / {\n"
            "            proxy_pass http://fleet;\n            proxy_http_version 1.1;\n"
            "            proxy_set_header Connection \"\";\n            proxy_buffering off;\n"
            "            proxy_request_buffering off;\n            proxy_read_timeout 600s;\n"
            "            proxy_send_timeout 600s;\n        }\n    }\n}\n",
            port);
}

static void write_haproxy(FILE *f, const gb_proxy_opts_t *o, uint16_t port)
{
    fprintf(f,
            "# written by llmux-fleet-gpu\nglobal\n    maxconn 8000\n    nbthread 1\n"
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 600s\n"
            "    timeout server 600s\n    timeout http-keep-alive 600s\n"
            "    option http-no-delay\n"
            "    # no option http-buffer-request: bodies and SSE answers stream through\n"
            "frontend f\n    bind 127.0.0.1:%u\n    default_backend b\n"
            "backend b\n    balance leastconn\n    http-reuse safe\n",
            port);
    for (int i = 0; i < GB_REPLICAS; i++)
        fprintf(f, "    server r%d 127.0.0.1:%u\n", i + 1, o->mock_ports[i]);
}

/* One GET of path on port; its status, or -1. */
static int get_status(uint16_t port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[256], buf[64] = {0};
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    int status = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, (size_t)n, MSG_NOSIGNAL) == n && recv(fd, buf, sizeof(buf) - 1, 0) >= 12 &&
        strncmp(buf, "HTTP/1.", 7) == 0)
        status = atoi(buf + 9);
    close(fd);
    return status;
}

static void print_log(void)
{
    FILE *f = fopen(log_path, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "--- %s ---\n", log_path);
    for (int n = 0; n < 40 && fgets(line, sizeof(line), f) != NULL; n++)
        fputs(line, stderr);
    fclose(f);
}

static pid_t spawn(char *const argv[])
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none; /* the replicas' threads block signals: the child must not inherit it */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd);
    return pid;
}

int gb_target_start(int t, const gb_proxy_opts_t *o, uint16_t port)
{
    if (t == GB_T_AFFINITY)
        return 0;
    static const char *const base[GB_T_COUNT] = {"llmux-fleet", "llmux-least", "llmux-rr",
                                                 "nginx",       "haproxy",     "direct"};
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "%s/%s.conf", o->tmpdir, base[t]);
    snprintf(log_path, sizeof(log_path), "%s/%s.log", o->tmpdir, base[t]);
    FILE *f = fopen(cfg, "w");
    if (f == NULL)
        return -1;
    if (t == GB_T_NGINX)
        write_nginx(f, o, port);
    else if (t == GB_T_HAPROXY)
        write_haproxy(f, o, port);
    else
        write_llmux(f, t, o, port);
    if (fclose(f) != 0)
        return -1;
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s/", o->tmpdir);
    char *argv_llmux[] = {(char *)o->llmux, "-c", cfg, NULL};
    char *argv_nginx[] = {(char *)o->nginx,
                          "-p",
                          prefix,
                          "-e",
                          "stderr",
                          "-c",
                          cfg,
                          "-g",
                          "daemon off; master_process off;",
                          NULL};
    char *argv_haproxy[] = {(char *)o->haproxy, "-f", cfg, "-db", NULL};
    char *const *argv = t == GB_T_NGINX     ? argv_nginx
                        : t == GB_T_HAPROXY ? argv_haproxy
                                            : argv_llmux;
    pid_t pid = spawn(argv);
    if (pid < 0)
        return -1;
    child = pid;
    const char *probe = t == GB_T_NGINX || t == GB_T_HAPROXY ? "/health" : "/readyz";
    for (int i = 0; i < 200; i++) { /* 10 s */
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            child = -1;
            fprintf(stderr, "llmux-fleet-gpu: %s exited at start\n", gb_target_name[t]);
            print_log();
            return -1;
        }
        if (get_status(port, probe) == 200)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "llmux-fleet-gpu: %s not ready within 10 s\n", gb_target_name[t]);
    print_log();
    gb_target_stop();
    return -1;
}
