/*
 * test_conn_pool.c - the upstream keep-alive pool on a real loop, against an accept-and-hold
 * server on 127.0.0.1 running on the same loop: connect, reuse, idle connections the server
 * closes, the connection bound with waiters (marked limited), no bound by default, the idle
 * bound (least recently used closed), cancel, refused connects, DNS, stale idle connections,
 * and dispose failing waiters.
 *
 * Every loop run is bounded by a deadline; the teardown closes every handle, runs the loop to
 * completion and checks that no connection or chunk is left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/status.h"
#include "net/listener.h"
#include "net/stream.h"
#include "net/worker.h"
#include "proxy/conn_pool.h"

#define DEADLINE_NS 3000000000ull
#define MAX_SERVED  16

/* one accepted connection on the test server */
typedef struct served {
    lx_stream_t s;
    bool closed;
} served_t;

static lx_worker_t W;
static lx_listener_t L;
static bool listener_closed;
static uint16_t port;
static served_t *served[MAX_SERVED];
static int n_served;
static uv_timer_t tick;
static lx_conn_pool_t pool;
static bool pool_live;

typedef struct req {
    lx_conn_pool_wait_t w;
    int calls;
    int status;
    lx_upconn_t *conn;
} req_t;

static void on_tick(uv_timer_t *t)
{
    (void)t; /* only wakes UV_RUN_ONCE so deadlines are checked */
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        uint64_t dl_ = uv_hrtime() + DEADLINE_NS;                                                  \
        while (!(cond) && uv_hrtime() < dl_)                                                       \
            uv_run(&W.loop, UV_RUN_ONCE);                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static void run_for_ms(unsigned ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end)
        uv_run(&W.loop, UV_RUN_ONCE);
}

static void on_served_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    (void)b;
    (void)data;
    if (nread < 0)
        lx_stream_read_stop(s);
}

static void on_accept(lx_listener_t *l)
{
    (void)l;
    assert_true(n_served < MAX_SERVED);
    served_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(lx_stream_init(&W, &c->s), 0);
    c->s.data = c;
    assert_int_equal(lx_stream_accept((uv_stream_t *)&L.tcp, &c->s), 0);
    assert_int_equal(lx_stream_read_start(&c->s, on_served_read), 0);
    served[n_served++] = c;
}

static void on_served_closed(lx_stream_t *s)
{
    served_t *c = s->data;
    c->closed = true;
}

static void on_listener_closed(lx_listener_t *l)
{
    (void)l;
    listener_closed = true;
}

static void on_got(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    req_t *r = lx_container_of(w, req_t, w);
    r->calls++;
    r->status = status;
    r->conn = conn;
    if (status == 0)
        assert_non_null(conn);
    else
        assert_null(conn);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lx_worker_init(&W, 0), 0);
    port = 0;
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &port, 64, &fd), 0);
    listener_closed = false;
    assert_int_equal(lx_listener_start(&L, &W, fd, 64, on_accept), 0);
    assert_int_equal(uv_timer_init(&W.loop, &tick), 0);
    assert_int_equal(uv_timer_start(&tick, on_tick, 5, 5), 0);
    n_served = 0;
    pool_live = false;
    return 0;
}

static bool all_served_closed(void)
{
    for (int i = 0; i < n_served; i++)
        if (!served[i]->closed)
            return false;
    return true;
}

static int teardown(void **state)
{
    (void)state;
    if (pool_live) {
        lx_conn_pool_dispose(&pool);
        RUN_UNTIL(pool.n_open == 0);
    }
    for (int i = 0; i < n_served; i++)
        lx_stream_close(&served[i]->s, on_served_closed);
    lx_listener_close(&L, on_listener_closed);
    RUN_UNTIL(all_served_closed() && listener_closed);
    for (int i = 0; i < n_served; i++)
        free(served[i]);
    n_served = 0;
    lx_worker_close_all(&W);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    assert_int_equal(W.bufs.n_out, W.rchunk != NULL ? 1 : 0); /* the worker's read chunk */
    lx_worker_dispose(&W);
    return 0;
}

static void pool_start(const char *host, uint16_t p, uint32_t max)
{
    lx_conn_pool_init(&pool, &W, host, p, max);
    pool_live = true;
}

static void test_get_connects(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    assert_true(pool.addr_expires_ms == UINT64_MAX); /* numeric: no DNS */
    req_t r = {0};
    lx_conn_pool_get(&pool, &r.w, on_got);
    RUN_UNTIL(r.calls == 1 && n_served == 1);
    assert_int_equal(r.status, 0);
    assert_false(r.conn->reused);
    assert_ptr_equal(r.conn->pool, &pool);
    assert_int_equal(pool.n_connects, 1);
    assert_int_equal(pool.n_reuses, 0);
    assert_int_equal(pool.n_open, 1);
    assert_int_equal(pool.n_idle, 0);
    /* the connection is usable: bytes reach the server */
    assert_int_equal(lx_stream_write_copy(&r.conn->stream, "x", 1, NULL, NULL), 0);
    run_for_ms(10);
    lx_conn_pool_close(r.conn);
    assert_int_equal(pool.n_open, 0);
    run_for_ms(10);
    assert_int_equal(r.calls, 1);
}

static void test_put_then_get_reuses(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1);
    assert_int_equal(a.status, 0);
    lx_upconn_t *c = a.conn;
    lx_conn_pool_put(c);
    assert_int_equal(pool.n_idle, 1);
    assert_int_equal(pool.n_open, 1);
    assert_int_equal(c->requests, 1);
    run_for_ms(20); /* idle: nothing happens to it */
    assert_int_equal(pool.n_idle, 1);

    lx_conn_pool_get(&pool, &b.w, on_got);
    assert_int_equal(b.calls, 1); /* at once, from inside get */
    assert_int_equal(b.status, 0);
    assert_ptr_equal(b.conn, c);
    assert_true(c->reused);
    assert_int_equal(pool.n_reuses, 1);
    assert_int_equal(pool.n_connects, 1);
    assert_int_equal(pool.n_idle, 0);
    run_for_ms(20);
    assert_int_equal(n_served, 1);
    lx_conn_pool_put(c);
    assert_int_equal(c->requests, 2);
}

static void test_lifo_idle(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0}, b = {0}, c = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    lx_conn_pool_get(&pool, &b.w, on_got);
    RUN_UNTIL(a.calls == 1 && b.calls == 1);
    assert_int_equal(pool.n_connects, 2);
    lx_conn_pool_put(a.conn);
    lx_conn_pool_put(b.conn);
    lx_conn_pool_get(&pool, &c.w, on_got);
    assert_int_equal(c.calls, 1);
    assert_ptr_equal(c.conn, b.conn); /* the most recently returned */
    lx_conn_pool_put(c.conn);
}

static void test_idle_closed_by_server(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1 && n_served == 1);
    lx_conn_pool_put(a.conn);
    assert_int_equal(pool.n_idle, 1);
    /* the server closes the idle connection: the pool notices and drops it */
    lx_stream_close(&served[0]->s, on_served_closed);
    RUN_UNTIL(pool.n_idle == 0 && pool.n_open == 0);
    lx_conn_pool_get(&pool, &b.w, on_got);
    RUN_UNTIL(b.calls == 1);
    assert_int_equal(b.status, 0);
    assert_false(b.conn->reused);
    assert_int_equal(pool.n_connects, 2);
    assert_int_equal(pool.n_reuses, 0);
    RUN_UNTIL(n_served == 2);
    lx_conn_pool_put(b.conn);
}

static void test_idle_stray_bytes(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1 && n_served == 1);
    lx_conn_pool_put(a.conn);
    /* bytes on an idle connection mean it is out of step: dropped */
    assert_int_equal(lx_stream_write_copy(&served[0]->s, "junk", 4, NULL, NULL), 0);
    RUN_UNTIL(pool.n_idle == 0 && pool.n_open == 0);
}

static void test_max_connections_waiters(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 2);
    req_t r[3];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 3; i++)
        lx_conn_pool_get(&pool, &r[i].w, on_got);
    RUN_UNTIL(r[0].calls == 1 && r[1].calls == 1 && n_served == 2);
    run_for_ms(50);
    assert_int_equal(r[2].calls, 0); /* waits: the bound is reached */
    assert_int_equal(pool.n_open, 2);
    assert_int_equal(pool.n_connects, 2);
    assert_int_equal(n_served, 2);

    /* a put goes straight to the waiter */
    lx_conn_pool_put(r[1].conn);
    assert_int_equal(r[2].calls, 1);
    assert_int_equal(r[2].status, 0);
    assert_ptr_equal(r[2].conn, r[1].conn);
    assert_true(r[2].conn->reused);
    assert_int_equal(pool.n_reuses, 1);
    assert_int_equal(pool.n_idle, 0);

    /* a close frees a slot: the next waiter gets a fresh connection */
    req_t d = {0};
    lx_conn_pool_get(&pool, &d.w, on_got);
    run_for_ms(20);
    assert_int_equal(d.calls, 0);
    lx_conn_pool_close(r[0].conn);
    RUN_UNTIL(d.calls == 1);
    assert_int_equal(d.status, 0);
    assert_false(d.conn->reused);
    assert_int_equal(pool.n_connects, 3);
    assert_int_equal(pool.n_open, 2);
    lx_conn_pool_put(r[2].conn);
    lx_conn_pool_put(d.conn);
    assert_int_equal(pool.n_idle, 2);
}

static void test_no_bound_by_default(void **state)
{
    (void)state;
    /* 0: busy connections are not bounded, nobody waits (a stream holds its connection for
     * its whole length) */
    pool_start("127.0.0.1", port, 0);
    enum { N = 12 };
    req_t r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        lx_conn_pool_get(&pool, &r[i].w, on_got);
        assert_false(r[i].w.limited);
    }
    RUN_UNTIL(n_served == N);
    for (int i = 0; i < N; i++) {
        RUN_UNTIL(r[i].calls == 1);
        assert_int_equal(r[i].status, 0);
    }
    assert_int_equal(pool.n_open, N);
    assert_int_equal(pool.n_limited, 0);
    for (int i = 0; i < N; i++)
        lx_conn_pool_close(r[i].conn);
    assert_int_equal(pool.n_open, 0);
}

static void test_max_idle(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 0);
    pool.max_idle = 2;
    req_t r[4], g[3];
    memset(r, 0, sizeof(r));
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 4; i++)
        lx_conn_pool_get(&pool, &r[i].w, on_got);
    RUN_UNTIL(r[0].calls + r[1].calls + r[2].calls + r[3].calls == 4 && n_served == 4);
    /* given back in order: beyond two idle ones the least recently used closes */
    for (int i = 0; i < 4; i++)
        lx_conn_pool_put(r[i].conn);
    assert_int_equal(pool.n_idle, 2);
    assert_int_equal(pool.n_open, 2);
    assert_int_equal(pool.n_idle_closed, 2);
    /* the two kept are the last returned, most recent first */
    lx_conn_pool_get(&pool, &g[0].w, on_got);
    lx_conn_pool_get(&pool, &g[1].w, on_got);
    assert_ptr_equal(g[0].conn, r[3].conn);
    assert_ptr_equal(g[1].conn, r[2].conn);
    assert_int_equal(pool.n_idle, 0);
    lx_conn_pool_put(g[0].conn);
    lx_conn_pool_put(g[1].conn);
    assert_int_equal(pool.n_idle, 2);
    assert_int_equal(pool.n_idle_closed, 2);

    /* max_idle 0: nothing is kept */
    pool.max_idle = 0;
    lx_conn_pool_get(&pool, &g[2].w, on_got);
    assert_int_equal(g[2].calls, 1);
    lx_conn_pool_put(g[2].conn);
    assert_int_equal(pool.n_idle, 1);
    assert_int_equal(pool.n_open, 1);
    assert_int_equal(pool.n_idle_closed, 3);
}

static void test_limited_waiter(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 1);
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    assert_false(a.w.limited); /* connecting, not waiting for a slot */
    RUN_UNTIL(a.calls == 1);
    lx_conn_pool_get(&pool, &b.w, on_got);
    assert_true(b.w.limited);
    assert_int_equal(pool.n_limited, 1);
    uint64_t since = b.w.since_ms;
    run_for_ms(20);
    /* a slot frees: its turn comes, the connect it starts is timed from now */
    lx_conn_pool_close(a.conn);
    assert_false(b.w.limited);
    assert_true(b.w.since_ms >= since + 15);
    RUN_UNTIL(b.calls == 1);
    assert_int_equal(b.status, 0);
    lx_conn_pool_put(b.conn);
}

static void test_cancel_waiting(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 1);
    req_t a = {0}, b = {0}, c = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1);
    lx_conn_pool_get(&pool, &b.w, on_got);
    lx_conn_pool_get(&pool, &c.w, on_got);
    lx_conn_pool_cancel(&b.w);
    lx_conn_pool_put(a.conn);
    /* b withdrew: c, queued behind it, gets the connection */
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);
    assert_ptr_equal(c.conn, a.conn);
    lx_conn_pool_cancel(&b.w); /* twice is harmless */
    lx_conn_pool_put(c.conn);
    assert_int_equal(pool.n_idle, 1);
    run_for_ms(20);
    assert_int_equal(b.calls, 0);
}

static void test_cancel_connecting(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    assert_int_equal(pool.n_open, 1); /* connecting */
    lx_conn_pool_cancel(&a.w);
    /* the fresh connection is kept for the next request */
    RUN_UNTIL(pool.n_idle == 1);
    assert_int_equal(a.calls, 0);
    lx_conn_pool_get(&pool, &b.w, on_got);
    assert_int_equal(b.calls, 1);
    assert_int_equal(pool.n_connects, 1);
    lx_conn_pool_put(b.conn);
}

static void test_connect_refused(void **state)
{
    (void)state;
    uint16_t p = 0;
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &p, 1, &fd), 0);
    close(fd); /* nothing listens there now */
    pool_start("127.0.0.1", p, 4);
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    lx_conn_pool_get(&pool, &b.w, on_got);
    RUN_UNTIL(a.calls == 1 && b.calls == 1);
    assert_int_equal(a.status, UV_ECONNREFUSED);
    assert_int_equal(b.status, UV_ECONNREFUSED);
    assert_int_equal(pool.n_open, 0);
    run_for_ms(20);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
}

static void test_dns_localhost(void **state)
{
    (void)state;
    pool_start("localhost", port, 4);
    assert_int_equal(pool.addr_expires_ms, 0); /* a name: not resolved yet */
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    lx_conn_pool_get(&pool, &b.w, on_got);
    assert_true(pool.resolving);
    assert_int_equal(a.calls, 0);
    RUN_UNTIL(a.calls == 1 && b.calls == 1);
    /* this test's server is on 127.0.0.1 only: localhost must have resolved there */
    assert_int_equal(pool.addr.ss_family, AF_INET);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_false(pool.resolving);
    assert_true(pool.addr_expires_ms > uv_now(&W.loop) && pool.addr_expires_ms != UINT64_MAX);
    assert_int_equal(pool.n_connects, 2);
    lx_conn_pool_put(a.conn);
    lx_conn_pool_put(b.conn);
    /* the cached address serves the next fresh connection without a lookup */
    req_t c[3];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 3; i++)
        lx_conn_pool_get(&pool, &c[i].w, on_got);
    assert_false(pool.resolving);
    RUN_UNTIL(c[2].calls == 1);
    assert_int_equal(c[2].status, 0);
    assert_int_equal(pool.n_connects, 3);
    for (int i = 0; i < 3; i++)
        lx_conn_pool_put(c[i].conn);
}

/* A burst queued behind a DNS lookup that meets max_connections when the lookup is back: the
 * requests still queued then wait for a slot, and are marked so (not left to time out as
 * connect failures of the provider). */
static void test_limited_after_lookup(void **state)
{
    (void)state;
    pool_start("localhost", port, 2);
    req_t r[5];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 5; i++)
        lx_conn_pool_get(&pool, &r[i].w, on_got);
    assert_true(pool.resolving);
    for (int i = 0; i < 5; i++)
        assert_false(r[i].w.limited); /* behind the lookup, not behind the cap */
    RUN_UNTIL(r[0].calls == 1 && r[1].calls == 1);
    for (int i = 2; i < 5; i++) {
        assert_int_equal(r[i].calls, 0);
        assert_true(r[i].w.queued);
        assert_true(r[i].w.limited);
    }
    assert_int_equal(pool.n_limited, 3);
    /* a slot that frees goes to the oldest, whose connect is bounded from then on */
    lx_conn_pool_put(r[0].conn);
    RUN_UNTIL(r[2].calls == 1);
    assert_int_equal(r[2].status, 0);
    for (int i = 3; i < 5; i++)
        lx_conn_pool_cancel(&r[i].w);
    lx_conn_pool_put(r[1].conn);
    lx_conn_pool_put(r[2].conn);
}

static void test_dispose_fails_waiters(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 1);
    req_t a = {0}, b = {0}, c = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1);
    lx_conn_pool_get(&pool, &b.w, on_got);
    lx_conn_pool_get(&pool, &c.w, on_got);
    lx_conn_pool_dispose(&pool);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, UV_ECANCELED);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, UV_ECANCELED);
    /* a busy connection closes when its user gives it back */
    assert_int_equal(pool.n_open, 1);
    lx_conn_pool_put(a.conn);
    assert_int_equal(pool.n_open, 0);
    assert_int_equal(pool.n_idle, 0);
    pool_live = false;
    run_for_ms(20);
    assert_int_equal(b.calls, 1);
}

static void test_dispose_closes_idle(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1 && n_served == 1);
    lx_conn_pool_put(a.conn);
    lx_conn_pool_dispose(&pool);
    pool_live = false;
    assert_int_equal(pool.n_idle, 0);
    assert_int_equal(pool.n_open, 0);
    /* the server sees the close */
    lx_stream_read_start(&served[0]->s, on_served_read);
    run_for_ms(20);
}

static void test_dispose_while_resolving(void **state)
{
    (void)state;
    pool_start("localhost", port, 4);
    req_t a = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    assert_true(pool.resolving);
    lx_conn_pool_dispose(&pool);
    RUN_UNTIL(a.calls == 1);
    assert_int_equal(a.status, UV_ECANCELED);
    RUN_UNTIL(!pool.resolving);
    run_for_ms(20);
    assert_int_equal(a.calls, 1);
    assert_int_equal(pool.n_open, 0);
    pool_live = false;
}

static void on_tick_once(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Records every connection handed over, so the test can give them all back. */
typedef struct multi {
    lx_conn_pool_wait_t w;
    int calls;
    int status;
    lx_upconn_t *conns[4];
} multi_t;

static void on_got_multi(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    multi_t *m = lx_container_of(w, multi_t, w);
    if (m->calls < 4)
        m->conns[m->calls] = conn;
    m->calls++;
    m->status = status;
}

static void test_stale_idle_reconnects_once(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    pool.idle_timeout_ms = 0; /* anything idle for a millisecond is stale */
    req_t a = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1);
    lx_conn_pool_put(a.conn);
    uv_timer_t t;
    bool fired = false;
    uv_timer_init(&W.loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_tick_once, 5, 0);
    RUN_UNTIL(fired);
    uv_close((uv_handle_t *)&t, NULL);
    /* the stale connection is dropped and one fresh connection is made for the request */
    multi_t b;
    memset(&b, 0, sizeof(b));
    lx_conn_pool_get(&pool, &b.w, on_got_multi);
    RUN_UNTIL(b.calls >= 1);
    run_for_ms(30);
    int calls = b.calls;
    uint64_t connects = pool.n_connects;
    uint32_t open = pool.n_open;
    for (int i = 0; i < calls && i < 4; i++)
        if (b.conns[i] != NULL)
            lx_conn_pool_put(b.conns[i]);
    assert_int_equal(b.status, 0);
    assert_int_equal(calls, 1); /* one request, one answer */
    assert_int_equal(connects, 2);
    assert_int_equal(open, 1);
}

static void test_max_requests(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    pool.max_requests = 2;
    req_t a = {0}, b = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    RUN_UNTIL(a.calls == 1);
    lx_conn_pool_put(a.conn);
    lx_conn_pool_get(&pool, &b.w, on_got);
    assert_ptr_equal(b.conn, a.conn);
    lx_conn_pool_put(b.conn); /* second request: the connection retires */
    assert_int_equal(pool.n_idle, 0);
    assert_int_equal(pool.n_open, 0);
}

static void test_dispose_while_connecting(void **state)
{
    (void)state;
    pool_start("127.0.0.1", port, 4);
    req_t a = {0};
    lx_conn_pool_get(&pool, &a.w, on_got);
    assert_int_equal(pool.n_open, 1);
    lx_conn_pool_dispose(&pool);
    pool_live = false;
    RUN_UNTIL(a.calls == 1 && pool.n_open == 0);
    assert_int_equal(a.status, UV_ECANCELED);
    run_for_ms(20);
    assert_int_equal(a.calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_then_get_reuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifo_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_closed_by_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_stray_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_bound_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limited_waiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limited_after_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispose_fails_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispose_closes_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispose_while_resolving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispose_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_idle_reconnects_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
