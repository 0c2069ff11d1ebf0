/*
 * fuzz_http_request.c - arbitrary bytes from a client into the HTTP server.
 *
 * The first input byte chooses where the rest is split into two writes (with the loop run in
 * between, so the server sees two reads and its header views must cross chunks); the rest is
 * sent on a real loopback connection to an lx_http_server_t whose handler answers every
 * request. Each input ends when the server has closed the connection (the client half-closes
 * after writing). Crashes, leaks and sanitizer reports are the findings.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_server.h"
#include "net/listener.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lx_worker_t worker;
static lx_http_server_t server;
static lx_listener_t listener;
static uint16_t port;

static void on_request(lx_http_request_t *req)
{
    static const char ct[] = "Content-Type: text/plain\r\n";
    lx_http_server_respond(req, 200, ct, sizeof(ct) - 1, req->body.ptr, req->body.len);
}

static void on_accept(lx_listener_t *l)
{
    lx_http_server_accept(&server, (uv_stream_t *)&l->tcp);
}

static void setup(void)
{
    lx_worker_init(&worker, 0);
    lx_http_server_limits_t limits = {
        .max_header_size = 4096,
        .max_body_size = 65536,
        .header_timeout_ms = 2000,
        .body_timeout_ms = 2000,
        .keepalive_timeout_ms = 2000,
    };
    lx_http_server_init(&server, &worker, &limits);
    server.on_request = on_request;
    int fd;
    lx_listener_bind("127.0.0.1", &port, 64, &fd);
    lx_listener_start(&listener, &worker, fd, 64, on_accept);
}

static void drain_client(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void pump(int fd, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        uv_run(&worker.loop, UV_RUN_NOWAIT);
        drain_client(fd);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0)
        return 0;
    size_t split = size > 1 ? data[0] % size : 0;
    data++;
    size--;
    if (split > size)
        split = size;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return 0;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    pump(fd, 2);
    if (split > 0 && send(fd, data, split, MSG_NOSIGNAL) < 0)
        goto done;
    pump(fd, 2);
    if (size > split && send(fd, data + split, size - split, MSG_NOSIGNAL) < 0)
        goto done;
    pump(fd, 2);
done:
    shutdown(fd, SHUT_WR);
    /* bounded: the server closes on the half-close, or the header timer would */
    for (int i = 0; i < 20000 && server.n_conns > 0; i++) {
        uv_run(&worker.loop, UV_RUN_NOWAIT);
        drain_client(fd);
        if (i > 100)
            usleep(100);
    }
    close(fd);
    return 0;
}
