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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* The directory of the pid files: /run/llmux for root, /tmp/llmux-<uid> for anyone else (no
 * environment variable decides it, so two shells of one user always agree). Made when missing;
 * refused unless it is a real directory of ours that nobody else can write to. */
static int claim_dir(char *dir, size_t cap)
{
    uid_t uid = geteuid();
    if (uid == 0)
        snprintf(dir, cap, "/run/llmux");
    else
        snprintf(dir, cap, "/tmp/llmux-%lu", (unsigned long)uid);
    if (mkdir(dir, uid == 0 ? 0755 : 0700) != 0 && errno != EEXIST)
        return uv_translate_sys_error(errno);
    struct stat st;
    if (lstat(dir, &st) != 0)
        return uv_translate_sys_error(errno);
    if (!S_ISDIR(st.st_mode) || st.st_uid != uid || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return UV_EPERM;
    return 0;
}

/* Opens and locks <path>: 0 and the fd in *fd, UV_EADDRINUSE with the pid the file holds in
 * *holder (0 when none yet), or another libuv code. A stopping holder unlinks the file before
 * it drops the lock, so a lock taken on an inode that is no longer at <path> proves nothing:
 * then it tries again, on the new file. */
static int lock_file(const char *path, int *fd, long *holder)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0)
            return uv_translate_sys_error(errno);
        if (flock(f, LOCK_EX | LOCK_NB) != 0) {
            int rc = errno == EWOULDBLOCK ? UV_EADDRINUSE : uv_translate_sys_error(errno);
            char buf[24];
            ssize_t n = pread(f, buf, sizeof(buf) - 1, 0);
            if (rc == UV_EADDRINUSE && n > 0) {
                buf[n] = '\0';
                *holder = strtol(buf, NULL, 10);
            }
            close(f);
            return rc;
        }
        struct stat held, named;
        if (fstat(f, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino &&
            held.st_dev == named.st_dev) {
            *fd = f;
            return 0;
        }
        close(f);
    }
    return UV_EBUSY;
}

int lx_listener_claim(const char *host, uint16_t port, lx_listener_claim_t *c)
{
    c->fd = -1;
    c->holder = 0;
    c->path[0] = '\0';
    /* the address as inet_ntop spells it, so "::1" and "0::1" are one file */
    struct sockaddr_storage ss;
    char name[INET6_ADDRSTRLEN], dir[64];
    int rc = lx_listener_addr(host, port, &ss);
    if (rc == 0)
        rc = ss.ss_family == AF_INET6 ? uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof(name))
                                      : uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof(name));
    if (rc != 0)
        return rc;
    rc = claim_dir(dir, sizeof(dir));
    snprintf(c->path, sizeof(c->path), ss.ss_family == AF_INET6 ? "%s/[%s]:%u.pid" : "%s/%s:%u.pid",
             dir, name, port);
    int fd = -1;
    if (rc == 0)
        rc = lock_file(c->path, &fd, &c->holder);
    if (rc != 0)
        return rc;
    char pid[24];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    errno = EIO; /* for a short write */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    c->fd = fd;
    return 0;
}

void lx_listener_release(lx_listener_claim_t *c)
{
    if (c->fd < 0)
        return;
    unlink(c->path); /* before the lock goes: see lx_listener_claim */
    close(c->fd);
    c->fd = -1;
}
