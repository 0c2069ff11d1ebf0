/*
 * listener.c - per-worker listening sockets.
 *
 * Every worker has its own socket on the same address with SO_REUSEPORT, so the kernel
 * spreads connections across the workers with no shared accept lock. libuv 1.44 has no
 * UV_TCP_REUSEPORT, so the sockets are made here with plain socket calls (at start-up, where
 * a bad address can still fail the start) and adopted by each worker's loop.
 */
#include "net/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_connection(uv_stream_t *server, int status)
{
    lx_listener_t *l = server->data;
    if (status != 0)
        return; /* EMFILE and the like: the connection stays queued in the kernel */
    l->on_accept(l);
}

int lx_listener_addr(const char *host, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return UV_EINVAL;
}

int lx_listener_bind(const char *host, uint16_t *port, int backlog, int *fd)
{
    struct sockaddr_storage ss;
    int rc = lx_listener_addr(host, *port, &ss);
    if (rc != 0)
        return rc;
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (ss.ss_family == AF_INET6)
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(s, (struct sockaddr *)&ss, len) != 0 || listen(s, backlog) != 0) {
        rc = uv_translate_sys_error(errno);
        close(s);
        return rc;
    }
    if (*port == 0) {
        socklen_t sl = sizeof(ss);
        if (getsockname(s, (struct sockaddr *)&ss, &sl) == 0)
            *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd = s;
    return 0;
}

int lx_listener_start(lx_listener_t *l, lx_worker_t *w, int fd, int backlog,
                      lx_listener_accept_cb cb)
{
    memset(l, 0, sizeof(*l));
    l->worker = w;
    l->on_accept = cb;
    lx_list_init(&l->link);
    int rc = uv_tcp_init(&w->loop, &l->tcp);
    if (rc != 0)
        return rc;
    l->tcp.data = l;
    rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0) {
        close(fd);
        uv_close((uv_handle_t *)&l->tcp, NULL);
        return rc;
    }
    rc = uv_listen((uv_stream_t *)&l->tcp, backlog, on_connection);
    if (rc != 0)
        uv_close((uv_handle_t *)&l->tcp, NULL); /* closes fd too */
    else if (w->listeners.next != NULL)
        lx_list_insert_tail(&w->listeners, &l->link);
    return rc;
}

void lx_listener_set_tls(lx_listener_t *l, lx_tls_server_t *ctx)
{
    if (ctx != NULL)
        lx_tls_server_ref(ctx);
    lx_tls_server_unref(l->tls);
    l->tls = ctx;
}

static void on_close(uv_handle_t *h)
{
    lx_listener_t *l = h->data;
    lx_tls_server_unref(l->tls);
    l->tls = NULL;
    if (l->on_close != NULL)
        l->on_close(l);
}

void lx_listener_close(lx_listener_t *l, void (*cb)(lx_listener_t *l))
{
    if (uv_is_closing((uv_handle_t *)&l->tcp))
        return;
    l->on_close = cb;
    lx_list_remove(&l->link);
    uv_close((uv_handle_t *)&l->tcp, on_close);
}
