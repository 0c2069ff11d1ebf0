/*
 * http_fixture.c - the downstream HTTP server on its own worker thread (see http_fixture.h).
 */
#include "http_fixture.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/listener.h"
#include "net/worker.h"

#define HELD_MAX 65536

typedef struct record {
    uint32_t magic;
    lx_http_request_t *req;
} record_t;

#define MAGIC 0x5eed1e55u

struct lx_http_fixture {
    lx_worker_t worker;
    lx_listener_t listener;
    lx_http_server_t srv;
    uv_timer_t later; /* answers held requests (opts.later) */
    uv_timer_t tick;  /* publishes n_conns; ends the loop when stopping and idle */
    lx_http_fixture_opts_t opts;
    int fd;
    uint16_t port;
    bool stopping;
    record_t *held[HELD_MAX];
    size_t n_held;
    _Atomic uint64_t requests, dones, refused, aborted, live, conns;
    _Atomic uint64_t refusals[6];
};

static uint32_t fnv(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static void answer(record_t *rec)
{
    lx_http_request_t *req = rec->req;
    char body[64];
    int n = snprintf(body, sizeof(body), "len=%zu sum=%08x\n", req->body.len,
                     fnv(req->body.ptr, req->body.len));
    static const char ct[] = "Content-Type: text/plain\r\n";
    lx_http_server_respond(req, 200, ct, sizeof(ct) - 1, body, (size_t)n);
}

static void on_later(uv_timer_t *t)
{
    lx_http_fixture_t *f = t->data;
    size_t n = f->n_held;
    f->n_held = 0;
    for (size_t i = 0; i < n; i++)
        answer(f->held[i]);
}

static void on_abort(lx_http_request_t *req)
{
    lx_http_fixture_t *f = req->worker->data;
    atomic_fetch_add_explicit(&f->aborted, 1, memory_order_relaxed);
}

static void on_request(lx_http_request_t *req)
{
    lx_http_fixture_t *f = req->worker->data;
    record_t *rec = malloc(sizeof(*rec));
    if (rec == NULL) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    rec->magic = MAGIC;
    rec->req = req;
    req->data = rec;
    req->on_abort = on_abort;
    atomic_fetch_add_explicit(&f->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->live, 1, memory_order_relaxed);
    if (!f->opts.later || f->n_held == HELD_MAX) {
        answer(rec);
        return;
    }
    f->held[f->n_held++] = rec;
    uv_timer_start(&f->later, on_later, 0, 0);
}

static void on_done(lx_http_request_t *req)
{
    lx_http_fixture_t *f = req->worker->data;
    record_t *rec = req->data;
    if (rec == NULL) {
        atomic_fetch_add_explicit(&f->refused, 1, memory_order_relaxed);
        int k = req->status == 499 ? 0 : req->status / 100;
        if (k >= 0 && k < 6)
            atomic_fetch_add_explicit(&f->refusals[k], 1, memory_order_relaxed);
        return;
    }
    if (rec->magic != MAGIC || rec->req != req) {
        fprintf(stderr, "http_fixture: on_done with a foreign record\n");
        abort();
    }
    rec->magic = 0;
    free(rec);
    req->data = NULL;
    atomic_fetch_add_explicit(&f->dones, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&f->live, 1, memory_order_relaxed);
}

static void on_accept(lx_listener_t *l)
{
    lx_http_fixture_t *f = l->data;
    int rc = lx_http_server_accept(&f->srv, (uv_stream_t *)&l->tcp);
    if (rc != 0)
        fprintf(stderr, "http_fixture: accept: %s\n", uv_strerror(rc));
}

static void on_tick(uv_timer_t *t)
{
    lx_http_fixture_t *f = t->data;
    atomic_store_explicit(&f->conns, f->srv.n_conns, memory_order_relaxed);
    if (f->stopping && f->srv.n_conns == 0 && f->n_held == 0) {
        lx_http_server_dispose(&f->srv);
        lx_worker_close_all(&f->worker); /* the timers and the wake-up too: the loop ends */
    }
}

static void on_start(lx_worker_t *w, void *arg)
{
    lx_http_fixture_t *f = arg;
    lx_http_server_init(&f->srv, w, &f->opts.limits);
    f->srv.on_request = on_request;
    f->srv.on_done = on_done;
    f->srv.on_head = f->opts.on_head;
    f->srv.data = f;
    uv_timer_init(&w->loop, &f->later);
    f->later.data = f;
    uv_timer_init(&w->loop, &f->tick);
    f->tick.data = f;
    uv_timer_start(&f->tick, on_tick, 1, 1);
    int rc = lx_listener_start(&f->listener, w, f->fd, 128, on_accept);
    f->listener.data = f;
    if (rc != 0)
        fprintf(stderr, "http_fixture: listen: %s\n", uv_strerror(rc));
}

static void do_stop(lx_worker_t *w, void *arg)
{
    lx_http_fixture_t *f = arg;
    (void)w;
    f->stopping = true;
    lx_listener_close(&f->listener, NULL);
    lx_http_server_close_all(&f->srv);
}

lx_http_fixture_t *lx_http_fixture_start(const lx_http_fixture_opts_t *opts)
{
    signal(SIGPIPE, SIG_IGN); /* as llmux does: a write to a reset socket is an error */
    lx_http_fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->opts = *opts;
    lx_http_server_limits_t *l = &f->opts.limits;
    if (l->max_header_size == 0)
        l->max_header_size = 16 * 1024;
    if (l->max_body_size == 0)
        l->max_body_size = 4 << 20;
    if (l->header_timeout_ms == 0)
        l->header_timeout_ms = 10000;
    if (l->body_timeout_ms == 0)
        l->body_timeout_ms = 10000;
    if (l->keepalive_timeout_ms == 0)
        l->keepalive_timeout_ms = 10000;
    if (lx_worker_init(&f->worker, 0) != 0) {
        free(f);
        return NULL;
    }
    f->worker.data = f;
    f->worker.on_start = on_start;
    int rc = lx_listener_bind("127.0.0.1", &f->port, 128, &f->fd);
    if (rc != 0 || lx_worker_start(&f->worker) != 0) {
        fprintf(stderr, "http_fixture: cannot start: %s\n", uv_strerror(rc));
        lx_worker_dispose(&f->worker);
        free(f);
        return NULL;
    }
    return f;
}

uint16_t lx_http_fixture_port(const lx_http_fixture_t *f)
{
    return f->port;
}

void lx_http_fixture_stats(lx_http_fixture_t *f, lx_http_fixture_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->requests = atomic_load_explicit(&f->requests, memory_order_relaxed);
    out->dones = atomic_load_explicit(&f->dones, memory_order_relaxed);
    out->refused = atomic_load_explicit(&f->refused, memory_order_relaxed);
    out->aborted = atomic_load_explicit(&f->aborted, memory_order_relaxed);
    out->live = atomic_load_explicit(&f->live, memory_order_relaxed);
    for (int i = 0; i < 6; i++)
        out->refusals[i] = atomic_load_explicit(&f->refusals[i], memory_order_relaxed);
    out->body_memory = lx_http_body_memory();
}

bool lx_http_fixture_wait_idle(lx_http_fixture_t *f, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (atomic_load_explicit(&f->conns, memory_order_relaxed) == 0 &&
            atomic_load_explicit(&f->live, memory_order_relaxed) == 0)
            return true;
        usleep(1000);
    }
    return false;
}

void lx_http_fixture_stop(lx_http_fixture_t *f, lx_http_fixture_stats_t *out)
{
    if (lx_worker_post(&f->worker, do_stop, f) != 0)
        fprintf(stderr, "http_fixture: cannot stop the worker\n");
    lx_worker_join(&f->worker);
    lx_worker_dispose(&f->worker);
    if (out != NULL)
        lx_http_fixture_stats(f, out);
    free(f);
}
