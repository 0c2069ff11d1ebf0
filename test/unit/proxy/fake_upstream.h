/*
 * fake_upstream.h - a scripted upstream server for the proxy's unit tests, on the test's own
 * loop (W) and 127.0.0.1: it accepts connections, counts requests (a head ending in an empty
 * line; the tests send no request bodies) and answers the k-th request as script[k] says (the
 * last entry repeats): answer bytes, hold, answer and close, close, or reset.
 *
 * Included by one test file each (static functions and state).
 */
#ifndef FAKE_UPSTREAM_H
#define FAKE_UPSTREAM_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/listener.h"
#include "net/stream.h"
#include "net/worker.h"

#define DEADLINE_NS 5000000000ull
#define FAKE_MAX    16

static lx_worker_t W;

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        uint64_t dl_ = uv_hrtime() + DEADLINE_NS;                                                  \
        while (!(cond) && uv_hrtime() < dl_)                                                       \
            turn();                                                                                \
        assert_true(cond);                                                                         \
    } while (0)

static void turn(void);

static void run_for_ms(unsigned ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end)
        turn();
}

enum fake_action {
    FAKE_ANSWER,       /* write the answer, keep the connection */
    FAKE_ANSWER_CLOSE, /* write the answer, then close (a FIN after it) */
    FAKE_HOLD,         /* nothing: the request waits */
    FAKE_CLOSE,        /* close without answering */
    FAKE_RESET,        /* reset without answering */
};

typedef struct fake_step {
    enum fake_action action;
    const char *answer;
} fake_step_t;

typedef struct fake_conn {
    lx_stream_t s;
    struct fake_server *srv;
    char rx[8192];
    size_t rx_len, scanned;
    unsigned requests; /* complete request heads seen */
    bool peer_eof;     /* the client closed its end */
    bool closing, closed;
} fake_conn_t;

typedef struct fake_server {
    lx_listener_t l;
    uint16_t port;
    bool listener_closed;
    fake_conn_t *conns[FAKE_MAX];
    unsigned n_conns;
    unsigned n_requests; /* over every connection */
    fake_step_t script[8];
    unsigned n_script;
} fake_server_t;

static void fake_conn_closed(lx_stream_t *s)
{
    fake_conn_t *c = s->data;
    c->closed = true;
}

static void fake_close(fake_conn_t *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    if (reset)
        lx_stream_reset(&c->s, fake_conn_closed);
    else
        lx_stream_close(&c->s, fake_conn_closed);
}

static void fake_on_request(fake_conn_t *c)
{
    fake_server_t *f = c->srv;
    assert_true(f->n_script > 0);
    unsigned k = f->n_requests < f->n_script ? f->n_requests : f->n_script - 1;
    f->n_requests++;
    const fake_step_t *st = &f->script[k];
    switch (st->action) {
    case FAKE_ANSWER:
    case FAKE_ANSWER_CLOSE:
        assert_int_equal(lx_stream_write_copy(&c->s, st->answer, strlen(st->answer), NULL, NULL),
                         0);
        if (st->action == FAKE_ANSWER_CLOSE)
            fake_close(c, false);
        return;
    case FAKE_HOLD:
        return;
    case FAKE_CLOSE:
    case FAKE_RESET:
        fake_close(c, st->action == FAKE_RESET);
        return;
    }
}

static void fake_on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    (void)b;
    fake_conn_t *c = s->data;
    if (nread < 0) {
        c->peer_eof = true;
        lx_stream_read_stop(s);
        return;
    }
    assert_true(c->rx_len + (size_t)nread < sizeof(c->rx));
    memcpy(c->rx + c->rx_len, data, (size_t)nread);
    c->rx_len += (size_t)nread;
    c->rx[c->rx_len] = '\0';
    char *end;
    while (!c->closing && (end = strstr(c->rx + c->scanned, "\r\n\r\n")) != NULL) {
        c->scanned = (size_t)(end - c->rx) + 4;
        c->requests++;
        fake_on_request(c);
    }
}

static void fake_on_accept(lx_listener_t *l)
{
    fake_server_t *f = lx_container_of(l, fake_server_t, l);
    assert_true(f->n_conns < FAKE_MAX);
    fake_conn_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(lx_stream_init(&W, &c->s), 0);
    c->s.data = c;
    c->srv = f;
    assert_int_equal(lx_stream_accept((uv_stream_t *)&l->tcp, &c->s), 0);
    assert_int_equal(lx_stream_read_start(&c->s, fake_on_read), 0);
    f->conns[f->n_conns++] = c;
}

static void fake_start(fake_server_t *f)
{
    memset(f, 0, sizeof(*f));
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &f->port, 64, &fd), 0);
    assert_int_equal(lx_listener_start(&f->l, &W, fd, 64, fake_on_accept), 0);
}

/* Sets the script: <n> steps. */
static void fake_script(fake_server_t *f, const fake_step_t *steps, unsigned n)
{
    assert_true(n <= 8);
    memcpy(f->script, steps, n * sizeof(*steps));
    f->n_script = n;
}

static void fake_listener_closed(lx_listener_t *l)
{
    fake_server_t *f = lx_container_of(l, fake_server_t, l);
    f->listener_closed = true;
}

static bool fake_all_closed(const fake_server_t *f)
{
    for (unsigned i = 0; i < f->n_conns; i++)
        if (!f->conns[i]->closed)
            return false;
    return f->listener_closed;
}

static void fake_stop(fake_server_t *f)
{
    for (unsigned i = 0; i < f->n_conns; i++)
        fake_close(f->conns[i], false);
    lx_listener_close(&f->l, fake_listener_closed);
    RUN_UNTIL(fake_all_closed(f));
    for (unsigned i = 0; i < f->n_conns; i++)
        free(f->conns[i]);
    f->n_conns = 0;
}

#endif
