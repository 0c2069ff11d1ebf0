/*
 * listener.h - a worker's own listening socket (SO_REUSEPORT: each worker binds the same
 * address and the kernel spreads connections across them).
 */
#ifndef LX_LISTENER_H
#define LX_LISTENER_H

#include <stdint.h>
#include <uv.h>

#include "core/list.h"
#include "net/worker.h"
#include "tls/tls_server.h"

typedef struct lx_listener lx_listener_t;

/* A connection is pending: the callback accepts it with lx_stream_accept(&l->tcp, ...). */
typedef void (*lx_listener_accept_cb)(lx_listener_t *l);

struct lx_listener {
    uv_tcp_t tcp;
    lx_worker_t *worker;
    lx_listener_accept_cb on_accept;
    void *data;
    void (*on_close)(lx_listener_t *l);
    lx_tls_server_t *tls; /* a reference, or NULL: accepted streams speak TLS with it */
    lx_list_t link;       /* in the worker's listeners while open */
};

/* Parses "host" + port into <out>; 0 or UV_EINVAL. */
int lx_listener_addr(const char *host, uint16_t port, struct sockaddr_storage *out);

/* Creates a socket bound to host:port with SO_REUSEPORT and listening (any thread, before
 * the workers start, so a bad address fails at start-up). *port 0 picks a free port and is
 * updated to it, so the next workers bind the same one. Returns 0 and the fd in *fd, or a
 * libuv code. */
int lx_listener_bind(const char *host, uint16_t *port, int backlog, int *fd);

/* Adopts listening socket <fd> into <l> on <w>'s loop (worker thread) and starts accepting.
 * Returns 0 or a libuv code; <fd> belongs to <l> either way (closed on failure). <l> must
 * outlive the loop iteration that runs its close. */
int lx_listener_start(lx_listener_t *l, lx_worker_t *w, int fd, int backlog,
                      lx_listener_accept_cb cb);

/* Makes the connections <l> accepts from now on TLS sessions of <ctx> (a reference is taken;
 * NULL: plain TCP). Connections already accepted keep the context they started with, so a
 * reload changes certificates without dropping anyone. Worker thread, after
 * lx_listener_start. */
void lx_listener_set_tls(lx_listener_t *l, lx_tls_server_t *ctx);

/* Stops accepting and closes; <cb> (may be NULL) runs in the close callback. */
void lx_listener_close(lx_listener_t *l, void (*cb)(lx_listener_t *l));

/* One process per listen address. SO_REUSEPORT lets a second process of the same user bind
 * the address too, and the kernel would split the connections between the two; so a process
 * first claims the address: an flock()ed pid file per address, "<dir>/<address>:<port>.pid"
 * ("[::1]:8080.pid" for IPv6), <dir> being /run/llmux for root and /tmp/llmux-<uid> for any
 * other user (a directory of its own, mode 0700). The kernel drops the lock when the process
 * ends, however it ends, so a crash never blocks the next start (its file stays, with its
 * pid, until the next start takes it over); a clean stop removes the file. */
typedef struct lx_listener_claim {
    int fd;      /* the locked pid file while claimed, else -1 */
    long holder; /* UV_EADDRINUSE: the other process's pid, 0 if it has not written it yet */
    char path[128];
} lx_listener_claim_t;

/* Claims host:port for this process. Returns 0 (claimed: <c> holds the lock until
 * lx_listener_release or the process's end), UV_EADDRINUSE (another process holds it: its pid
 * is in c->holder, the file in c->path), or another libuv code when the pid file cannot be
 * made (c->path names it). */
int lx_listener_claim(const char *host, uint16_t port, lx_listener_claim_t *c);

/* Removes the pid file and drops the lock. */
void lx_listener_release(lx_listener_claim_t *c);

#endif
