/*
 * conn_pool.c - keep-alive pools of upstream connections, one per endpoint per worker.
 *
 * get: idle connection (LIFO) ─or─ address (cached, else uv_getaddrinfo) → connect ─or─ wait
 *      (only under an explicit max_connections: the waiter is `limited`)
 * put: clean connection → straight to the oldest waiter, or the idle list (at most max_idle:
 *      the least recently used one beyond it is closed)
 * An idle connection keeps reading, so a server that closes it is noticed at once and the
 * connection is dropped before anyone borrows it.
 * HTTPS: connect → TLS handshake (net/stream.c) → connected. A timer per connection bounds the
 * two together, so a server that stalls mid-handshake cannot keep a connection (and its slot)
 * forever when its requester gave up; the requester's own connect timeout runs meanwhile.
 */
#include "proxy/conn_pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/status.h"

#define DNS_TTL_MS     60000
#define DNS_NEG_TTL_MS 2000

void lx_conn_pool_init(lx_conn_pool_t *p, lx_worker_t *w, const char *host, uint16_t port,
                       uint32_t max_connections)
{
    memset(p, 0, sizeof(*p));
    p->worker = w;
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    p->max_connections = max_connections > 0 ? max_connections : UINT32_MAX;
    p->max_idle = LX_CONN_POOL_MAX_IDLE;
    p->idle_timeout_ms = 30000;
    p->max_requests = 10000;
    lx_list_init(&p->idle);
    lx_list_init(&p->connecting);
    lx_list_init(&p->waiters);
    struct sockaddr_storage *ss = &p->addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        p->addr_expires_ms = UINT64_MAX; /* numeric: never expires */
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_closed(lx_stream_t *s)
{
    lx_upconn_t *c = s->data;
    /* (at worker stop the loop's last walk may have closed the timer already) */
    if (c->timer_open && !uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        return;
    }
    free(c);
}

void lx_conn_pool_set_tls(lx_conn_pool_t *p, lx_tls_client_t *ctx, const char *server_name)
{
    if (ctx != NULL)
        lx_tls_client_ref(ctx);
    lx_tls_client_unref(p->tls);
    p->tls = ctx;
    snprintf(p->server_name, sizeof(p->server_name), "%s",
             server_name != NULL && server_name[0] != '\0' ? server_name : p->host);
    snprintf(p->session_key, sizeof(p->session_key), "%s:%u", p->host, (unsigned)p->port);
}

static void service_waiters(lx_conn_pool_t *p);

/* Closes <c>; with <service>, a freed slot goes to the waiters (never from inside
 * service_waiters itself, which must not be re-entered). */
static void drop_conn(lx_upconn_t *c, bool service)
{
    lx_conn_pool_t *p = c->pool;
    if (c->idle) {
        lx_list_remove(&c->link);
        p->n_idle--;
        c->idle = false;
    }
    p->n_open--;
    lx_stream_close(&c->stream, on_closed);
    if (service && !p->disposing)
        service_waiters(p);
}

static void drop(lx_upconn_t *c)
{
    drop_conn(c, true);
}

static void on_idle_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    /* an idle connection has nothing to say: EOF, an error or stray bytes all end it */
    (void)nread;
    (void)b;
    (void)data;
    drop(s->data);
}

static void hand_over(lx_conn_pool_wait_t *w, lx_upconn_t *c, int status)
{
    if (w->queued) {
        lx_list_remove(&w->link);
        w->queued = false;
    }
    w->cb(w, c, status);
}

static void on_connect(lx_stream_t *s, int status)
{
    lx_upconn_t *c = s->data;
    lx_conn_pool_wait_t *w = c->connecting_for;
    lx_conn_pool_t *p = c->pool;
    c->connecting_for = NULL;
    lx_list_remove(&c->link);
    if (c->timer_open)
        uv_timer_stop(&c->timer);
    if (w != NULL)
        w->connecting = NULL;
    if (status == 0 && c->stream.tls != NULL && lx_tls_resumed(c->stream.tls))
        p->n_resumed++;
    if (status != 0) {
        p->n_open--;
        lx_stream_close(&c->stream, on_closed);
        if (w != NULL)
            w->cb(w, NULL, status);
        if (!p->disposing)
            service_waiters(p);
        return;
    }
    if (w == NULL) {
        /* the requester went away meanwhile: keep the fresh connection for the next one */
        lx_conn_pool_put(c);
        return;
    }
    w->cb(w, c, 0);
}

static void on_handshake_timeout(uv_timer_t *t)
{
    lx_upconn_t *c = t->data;
    lx_stream_t *s = &c->stream;
    /* ends it as a failed connect: the stream reports nothing more once closed */
    on_connect(s, lx_stream_handshaking(s) ? LX_ETLSHANDSHAKE : LX_ETIMEDOUT);
}

static int connect_new(lx_conn_pool_t *p, lx_conn_pool_wait_t *w)
{
    lx_upconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LX_ENOMEM;
    int rc = lx_stream_init(p->worker, &c->stream);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->stream.data = c;
    c->pool = p;
    lx_list_init(&c->link);
    if (p->tls != NULL) {
        rc = lx_stream_set_tls_client(&c->stream, p->tls, p->server_name, p->session_key);
        if (rc == 0)
            rc = uv_timer_init(&p->worker->loop, &c->timer);
        if (rc != 0) {
            lx_stream_close(&c->stream, on_closed);
            return rc;
        }
        c->timer.data = c;
        c->timer_open = true;
        uv_timer_start(&c->timer, on_handshake_timeout,
                       p->handshake_timeout_ms > 0 ? p->handshake_timeout_ms : 10000, 0);
    }
    c->connecting_for = w;
    w->queued = false;
    p->n_open++;
    p->n_connects++;
    rc = lx_stream_connect(&c->stream, (struct sockaddr *)&p->addr, on_connect);
    if (rc == 0)
        lx_list_insert_tail(&p->connecting, &c->link);
    if (rc != 0) {
        c->connecting_for = NULL;
        p->n_open--;
        lx_stream_close(&c->stream, on_closed);
        return rc;
    }
    w->connecting = c; /* so a cancel can detach from it */
    return 0;
}

/* A burst that queued behind a DNS lookup meets max_connections only when the lookup is back:
 * the waiters still queued then wait for a slot, not for the provider, and are marked so that
 * their owners bound the wait by their deadline (and never blame the provider for it). */
static void mark_limited(lx_conn_pool_t *p)
{
    if (p->n_open < p->max_connections)
        return;
    for (lx_list_t *n = p->waiters.next; n != &p->waiters; n = n->next) {
        lx_conn_pool_wait_t *w = lx_list_entry(n, lx_conn_pool_wait_t, link);
        if (!w->limited) {
            w->limited = true;
            p->n_limited++;
        }
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    lx_conn_pool_t *p = req->data;
    p->resolving = false;
    uint64_t now = uv_now(&p->worker->loop);
    if (status == 0 && res != NULL) {
        memset(&p->addr, 0, sizeof(p->addr));
        memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
        if (p->addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&p->addr)->sin_port = htons(p->port);
        else
            ((struct sockaddr_in6 *)&p->addr)->sin6_port = htons(p->port);
        p->addr_expires_ms = now + DNS_TTL_MS;
        p->last_resolve_error = 0;
    } else {
        p->last_resolve_error = status != 0 ? status : UV_EAI_NONAME;
        p->addr_expires_ms = 0;
        p->resolve_retry_ms = now + DNS_NEG_TTL_MS;
    }
    uv_freeaddrinfo(res);
    if (p->disposing) {
        while (!lx_list_is_empty(&p->waiters)) {
            lx_conn_pool_wait_t *w = lx_list_entry(p->waiters.next, lx_conn_pool_wait_t, link);
            hand_over(w, NULL, UV_ECANCELED);
        }
        return;
    }
    if (p->last_resolve_error != 0) {
        int err = p->last_resolve_error;
        while (!lx_list_is_empty(&p->waiters)) {
            lx_conn_pool_wait_t *w = lx_list_entry(p->waiters.next, lx_conn_pool_wait_t, link);
            hand_over(w, NULL, err);
        }
        return;
    }
    service_waiters(p);
    mark_limited(p);
}

static bool address_ready(lx_conn_pool_t *p)
{
    uint64_t now = uv_now(&p->worker->loop);
    if (p->addr_expires_ms > now)
        return true;
    if (!p->resolving && p->last_resolve_error != 0 && now < p->resolve_retry_ms)
        return false; /* a failed lookup is not retried for DNS_NEG_TTL_MS */
    if (!p->resolving) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        p->gai.data = p;
        p->resolving = true;
        int rc = uv_getaddrinfo(&p->worker->loop, &p->gai, on_resolved, p->host, NULL, &hints);
        if (rc != 0) {
            p->resolving = false;
            p->last_resolve_error = rc;
        }
    }
    return false;
}

/* An idle connection fit for reuse, or NULL. Stale ones are closed on the way. */
static lx_upconn_t *take_idle(lx_conn_pool_t *p)
{
    uint64_t now = uv_now(&p->worker->loop);
    while (!lx_list_is_empty(&p->idle)) {
        lx_upconn_t *c = lx_list_entry(p->idle.next, lx_upconn_t, link);
        if (now - c->idle_since_ms > p->idle_timeout_ms) {
            drop_conn(c, false);
            continue;
        }
        lx_list_remove(&c->link);
        p->n_idle--;
        c->idle = false;
        c->reused = true;
        p->n_reuses++;
        /* it keeps reading: the borrower swaps the read callback without an epoll change */
        return c;
    }
    return NULL;
}

/* Gives waiters, oldest first, what the pool can offer now. */
static void service_waiters(lx_conn_pool_t *p)
{
    while (!lx_list_is_empty(&p->waiters)) {
        lx_conn_pool_wait_t *w = lx_list_entry(p->waiters.next, lx_conn_pool_wait_t, link);
        lx_upconn_t *c = take_idle(p);
        if (c != NULL) {
            hand_over(w, c, 0);
            continue;
        }
        if (p->n_open >= p->max_connections)
            return;
        if (w->limited) {
            /* its turn came: from now on it is connecting, and bounded as such */
            w->limited = false;
            w->since_ms = uv_now(&p->worker->loop);
        }
        if (!address_ready(p)) {
            if (p->resolving)
                return;
            hand_over(w, NULL, p->last_resolve_error);
            continue;
        }
        lx_list_remove(&w->link);
        int rc = connect_new(p, w);
        if (rc != 0)
            w->cb(w, NULL, rc);
    }
}

void lx_conn_pool_get(lx_conn_pool_t *p, lx_conn_pool_wait_t *w, lx_conn_pool_cb cb)
{
    w->pool = p;
    w->cb = cb;
    w->connecting = NULL;
    w->since_ms = uv_now(&p->worker->loop);
    w->queued = true;
    w->limited = false;
    lx_list_insert_tail(&p->waiters, &w->link);
    service_waiters(p);
    if (w->queued && !w->limited && p->n_open >= p->max_connections) {
        /* behind max_connections, not behind a DNS lookup (a callback that ran inside may
         * have asked again with <w> and marked it already) */
        w->limited = true;
        p->n_limited++;
    }
}

void lx_conn_pool_cancel(lx_conn_pool_wait_t *w)
{
    if (w->queued) {
        lx_list_remove(&w->link);
        w->queued = false;
        return;
    }
    /* a connection may be on its way for <w>: detach it, the pool keeps it */
    lx_upconn_t *c = w->connecting;
    if (c != NULL && c->connecting_for == w)
        c->connecting_for = NULL;
    w->connecting = NULL;
}

void lx_conn_pool_put(lx_upconn_t *c)
{
    lx_conn_pool_t *p = c->pool;
    c->data = NULL;
    c->requests++;
    if (p->disposing || c->requests >= p->max_requests || c->stream.closing) {
        drop(c);
        return;
    }
    if (!lx_list_is_empty(&p->waiters)) {
        lx_conn_pool_wait_t *w = lx_list_entry(p->waiters.next, lx_conn_pool_wait_t, link);
        c->reused = true;
        p->n_reuses++;
        hand_over(w, c, 0);
        return;
    }
    if (p->n_idle >= p->max_idle) {
        /* beyond max_idle the least recently used idle connection goes, or this one when none
         * may stay (nobody waits, so the freed slot needs no servicing) */
        lx_upconn_t *lru = p->max_idle > 0 ? lx_list_entry(p->idle.prev, lx_upconn_t, link) : c;
        p->n_idle_closed++;
        drop_conn(lru, false);
        if (lru == c)
            return;
    }
    c->idle = true;
    c->idle_since_ms = uv_now(&p->worker->loop);
    lx_list_insert_head(&p->idle, &c->link);
    p->n_idle++;
    lx_stream_read_start(&c->stream, on_idle_read);
}

void lx_conn_pool_close(lx_upconn_t *c)
{
    c->data = NULL;
    drop(c);
}

void lx_conn_pool_dispose(lx_conn_pool_t *p)
{
    p->disposing = true;
    /* connections hold their own session's reference on the context */
    lx_tls_client_unref(p->tls);
    p->tls = NULL;
    while (!lx_list_is_empty(&p->idle))
        drop(lx_list_entry(p->idle.next, lx_upconn_t, link));
    /* connections still connecting are closed (their connect callback will not run); a
     * request still waiting on one hears about it */
    while (!lx_list_is_empty(&p->connecting)) {
        lx_upconn_t *c = lx_list_entry(p->connecting.next, lx_upconn_t, link);
        lx_conn_pool_wait_t *w = c->connecting_for;
        lx_list_remove(&c->link);
        c->connecting_for = NULL;
        p->n_open--;
        lx_stream_close(&c->stream, on_closed);
        if (w != NULL) {
            w->connecting = NULL;
            w->cb(w, NULL, UV_ECANCELED);
        }
    }
    if (p->resolving) {
        uv_cancel((uv_req_t *)&p->gai);
        return; /* on_resolved fails the waiters */
    }
    while (!lx_list_is_empty(&p->waiters)) {
        lx_conn_pool_wait_t *w = lx_list_entry(p->waiters.next, lx_conn_pool_wait_t, link);
        hand_over(w, NULL, UV_ECANCELED);
    }
}

bool lx_upconn_reset_pending(lx_upconn_t *c)
{
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof(err);
    if (uv_fileno((uv_handle_t *)&c->stream.tcp, &fd) != 0)
        return false;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
}
