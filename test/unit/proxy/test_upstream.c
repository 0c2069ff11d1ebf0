/*
 * test_upstream.c - the standalone upstream client against a scripted server on 127.0.0.1
 * (fake_upstream.h), on a real loop: a response read in full (the connection back to the
 * pool), a refused connect, the first-byte and idle timeouts and the deadline, a reset, a
 * response cut short, an op that refuses the response, cancel (the server sees the connection
 * closed), a stale pooled connection replaced once, and on every path on_done exactly once,
 * then on_free.
 */
#include "fake_upstream.h"

#include <stdio.h>
#include <unistd.h>

#include "core/status.h"
#include "proxy/upstream.h"

static fake_server_t F;
static lx_conn_pool_t pool;

static void turn(void)
{
    uv_run(&W.loop, UV_RUN_NOWAIT);
}

typedef struct ex {
    lx_upstream_t up;
    unsigned heads, dones, frees;
    int code;
    int head_status;
    bool freed_after_done;
    bool cancel_on_head;
    int refuse_body; /* on_body returns this */
    char body[256];
    size_t body_len;
} ex_t;

static int ex_head(lx_upstream_t *up)
{
    ex_t *e = (ex_t *)up;
    e->heads++;
    e->head_status = up->hc.status;
    if (e->cancel_on_head)
        lx_upstream_cancel(up);
    return 0;
}

static int ex_body(lx_upstream_t *up, lx_buf_t *b, const char *at, size_t len)
{
    (void)b;
    ex_t *e = (ex_t *)up;
    assert_true(e->body_len + len < sizeof(e->body));
    memcpy(e->body + e->body_len, at, len);
    e->body_len += len;
    return e->refuse_body;
}

static void ex_done(lx_upstream_t *up, int code)
{
    ex_t *e = (ex_t *)up;
    e->dones++;
    e->code = code;
    assert_true(up->finished);
    assert_null(up->conn); /* released before on_done */
    assert_int_equal(up->n_out, 0);
}

static void ex_free(lx_upstream_t *up)
{
    ex_t *e = (ex_t *)up;
    e->frees++;
    e->freed_after_done = e->dones == 1;
}

static const lx_upstream_ops_t ops = {ex_head, ex_body, ex_done, ex_free};

static const char REQUEST[] = "GET /v1/models HTTP/1.1\r\nHost: fake\r\n\r\n";

static void ex_start(ex_t *e, lx_conn_pool_t *p)
{
    memset(e, 0, sizeof(*e));
    e->up.pool = p;
    e->up.ops = &ops;
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memcpy(b->data, REQUEST, sizeof(REQUEST) - 1);
    b->len = sizeof(REQUEST) - 1;
    e->up.out[0] = (lx_slice_t){b, 0, b->len}; /* the chunk's reference, handed over */
    e->up.n_out = 1;
}

/* Ends on_done once and on_free after it. */
static void assert_ended(ex_t *e)
{
    RUN_UNTIL(e->frees == 1);
    run_for_ms(5);
    assert_int_equal(e->dones, 1);
    assert_int_equal(e->frees, 1);
    assert_true(e->freed_after_done);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lx_worker_init(&W, 0), 0);
    fake_start(&F);
    lx_conn_pool_init(&pool, &W, "127.0.0.1", F.port, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lx_conn_pool_dispose(&pool);
    RUN_UNTIL(pool.n_open == 0);
    fake_stop(&F);
    lx_worker_close_all(&W);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    assert_int_equal(W.bufs.n_out, W.rchunk != NULL ? 1 : 0); /* every chunk came back */
    lx_worker_dispose(&W);
    return 0;
}

static void test_success_returns_the_connection(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.up.connect_timeout_ms = 1000;
    e.up.first_byte_timeout_ms = 1000;
    e.up.idle_timeout_ms = 1000;
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, 0);
    assert_int_equal(e.up.step, LX_UPSTREAM_DONE);
    assert_int_equal(e.heads, 1);
    assert_int_equal(e.head_status, 200);
    assert_int_equal(e.body_len, 5);
    assert_memory_equal(e.body, "hello", 5);
    assert_false(e.up.timed_out);
    assert_true(e.up.t_connected_ns >= e.up.t_start_ns);
    assert_true(e.up.t_first_byte_ns >= e.up.t_connected_ns);
    assert_true(e.up.t_end_ns >= e.up.t_first_byte_ns);
    assert_string_equal(F.conns[0]->rx, REQUEST); /* the request, byte for byte */
    assert_int_equal(pool.n_idle, 1);             /* clean: back to the pool */

    /* the next exchange reuses it */
    ex_t e2;
    ex_start(&e2, &pool);
    lx_upstream_start(&e2.up);
    assert_ended(&e2);
    assert_int_equal(e2.code, 0);
    assert_true(e2.up.reused);
    assert_int_equal(pool.n_connects, 1);
    assert_int_equal(F.conns[0]->requests, 2);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* a port nobody listens on: bind one, then let it go */
    uint16_t dead = 0;
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &dead, 1, &fd), 0);
    close(fd);
    lx_conn_pool_t p;
    lx_conn_pool_init(&p, &W, "127.0.0.1", dead, 0);
    ex_t e;
    ex_start(&e, &p);
    e.up.connect_timeout_ms = 1000;
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, UV_ECONNREFUSED);
    assert_int_equal(e.up.step, LX_UPSTREAM_CONNECT);
    assert_false(e.up.timed_out);
    assert_int_equal(e.heads, 0);
    lx_conn_pool_dispose(&p);
    RUN_UNTIL(p.n_open == 0);
}

static void test_first_byte_timeout(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_HOLD, NULL}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.up.first_byte_timeout_ms = 60;
    uint64_t t0 = uv_hrtime();
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_true(uv_hrtime() - t0 >= 50 * 1000000ull);
    assert_int_equal(e.code, LX_ETIMEDOUT);
    assert_true(e.up.timed_out);
    assert_int_equal(e.up.step, LX_UPSTREAM_WAIT);
    assert_int_equal(e.up.t_first_byte_ns, 0);
    assert_int_equal(pool.n_open, 0); /* closed, not pooled */
    RUN_UNTIL(F.conns[0]->peer_eof);
}

static void test_idle_timeout_and_deadline(void **state)
{
    (void)state;
    /* the head and part of the body, then nothing */
    fake_step_t s[] = {{FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.up.first_byte_timeout_ms = 1000;
    e.up.idle_timeout_ms = 60;
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, LX_ETIMEDOUT);
    assert_true(e.up.timed_out);
    assert_int_equal(e.up.step, LX_UPSTREAM_READ);
    assert_int_equal(e.body_len, 3);

    /* no phase timeouts at all: the deadline alone ends it */
    ex_t d;
    ex_start(&d, &pool);
    d.up.deadline_ms = uv_now(&W.loop) + 80;
    lx_upstream_start(&d.up);
    assert_ended(&d);
    assert_int_equal(d.code, LX_ETIMEDOUT);
    assert_true(d.up.timed_out);
    assert_int_equal(d.up.step, LX_UPSTREAM_READ);
    assert_int_equal(pool.n_open, 0);
}

static void test_reset_before_the_answer(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_RESET, NULL}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.up.first_byte_timeout_ms = 1000;
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_true(e.code == UV_ECONNRESET || e.code == LX_EUPSTREAM);
    assert_int_not_equal(e.up.step, LX_UPSTREAM_DONE);
    assert_int_not_equal(e.up.step, LX_UPSTREAM_CONNECT);
    assert_false(e.up.timed_out);
    assert_false(e.up.retried); /* a fresh connection is not retried */
    assert_int_equal(F.n_requests, 1);
    assert_int_equal(pool.n_open, 0);
}

static void test_response_cut_short(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, LX_EUPSTREAM);
    assert_int_equal(e.up.step, LX_UPSTREAM_READ);
    assert_non_null(e.up.error);
    assert_int_equal(pool.n_open, 0);
}

static void test_close_delimited_body(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_ANSWER_CLOSE, "HTTP/1.1 503 Busy\r\n\r\nbusy"}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, 0); /* an answer read in full, whatever its status */
    assert_int_equal(e.head_status, 503);
    assert_int_equal(e.body_len, 4);
    assert_int_equal(pool.n_open, 0); /* no keep-alive: closed */
}

static void test_op_refuses_the_body(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.refuse_body = LX_ETOOBIG;
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(e.code, LX_ETOOBIG);
    assert_int_equal(pool.n_open, 0);
}

static void test_cancel(void **state)
{
    (void)state;
    fake_step_t s[] = {{FAKE_HOLD, NULL}};
    fake_script(&F, s, 1);
    ex_t e;
    ex_start(&e, &pool);
    e.up.first_byte_timeout_ms = 5000;
    lx_upstream_start(&e.up);
    RUN_UNTIL(F.n_requests == 1);
    lx_upstream_cancel(&e.up);
    assert_int_equal(e.dones, 1); /* at once */
    lx_upstream_cancel(&e.up);    /* a second cancel does nothing */
    assert_ended(&e);
    assert_int_equal(e.code, LX_ECANCELED);
    assert_int_equal(pool.n_open, 0);
    RUN_UNTIL(F.conns[0]->peer_eof); /* the server learns nobody waits */

    /* while connecting: the wait is withdrawn */
    ex_t c;
    ex_start(&c, &pool);
    lx_upstream_start(&c.up);
    assert_int_equal(c.up.step, LX_UPSTREAM_CONNECT);
    lx_upstream_cancel(&c.up);
    assert_ended(&c);
    assert_int_equal(c.code, LX_ECANCELED);
    assert_int_equal(c.up.step, LX_UPSTREAM_CONNECT);

    /* from inside an op */
    fake_step_t a[] = {{FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}};
    fake_script(&F, a, 1);
    ex_t h;
    ex_start(&h, &pool);
    h.cancel_on_head = true;
    lx_upstream_start(&h.up);
    assert_ended(&h);
    assert_int_equal(h.code, LX_ECANCELED);
    assert_int_equal(h.body_len, 0);
}

static void test_stale_pooled_connection_is_replaced_once(void **state)
{
    (void)state;
    /* the first answer keeps the connection; the server then closes it as the second request
     * arrives (a keep-alive race), and answers the resend on a fresh one */
    fake_step_t s[] = {{FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
                       {FAKE_CLOSE, NULL},
                       {FAKE_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"}};
    fake_script(&F, s, 3);
    ex_t e;
    ex_start(&e, &pool);
    lx_upstream_start(&e.up);
    assert_ended(&e);
    assert_int_equal(pool.n_idle, 1);
    ex_t r;
    ex_start(&r, &pool);
    lx_upstream_start(&r.up);
    assert_ended(&r);
    assert_int_equal(r.code, 0);
    assert_true(r.up.retried);
    assert_false(r.up.reused); /* the answer came on the fresh connection */
    assert_int_equal(r.body_len, 3);
    assert_int_equal(pool.n_connects, 2);
    assert_int_equal(F.n_requests, 3);

    /* twice in a row: given up after one fresh try */
    fake_step_t t[] = {{FAKE_CLOSE, NULL}};
    fake_script(&F, t, 1);
    ex_t g;
    ex_start(&g, &pool);
    lx_upstream_start(&g.up);
    assert_ended(&g);
    assert_int_not_equal(g.code, 0);
    assert_true(g.up.retried);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_returns_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_and_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_before_the_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_op_refuses_the_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_pooled_connection_is_replaced_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
