/*
 * mock.c - the mock LLM server's lifecycle, counters and request records.
 *
 * lx_mock_start binds and listens in the caller's thread (so a bad address fails there), then
 * runs the loop on a thread of its own; lx_mock_stop wakes it with an async handle, which
 * closes the listener and every connection so uv_run returns, and joins it. Connections live
 * in mock_conn.c. Counters are atomics; the ring of the last LX_MOCK_RECORDS raw requests is
 * the only shared structure with a lock (test code: one uncontended lock per request).
 *
 * Endpoint-wide faults (lx_mock_set_faults) are atomics read by the loop per request; "down" is
 * applied on the loop through faults_async: the listener is closed (connections are refused)
 * and every connection reset; coming back up binds the same address again (retried every
 * 100 ms while the port cannot be bound).
 */
#include "mock_internal.h"

#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void on_connection(uv_stream_t *server, int status)
{
    lx_mock_t *m = server->data;
    if (status < 0 || m->stopping)
        return;
    lx_mock_conn_accept(m);
}

static void apply_down(lx_mock_t *m);

static void on_listener_closed(uv_handle_t *h)
{
    lx_mock_t *m = h->data;
    m->listener_closing = 0;
    if (m->stopping)
        return;
    atomic_store(&m->is_down, 1);
    if (!uv_is_active((uv_handle_t *)&m->rebind_timer))
        apply_down(m); /* else a failed re-bind waits for the timer */
}

static void close_listener(lx_mock_t *m)
{
    m->listening = 0;
    m->listener_closing = 1;
    uv_close((uv_handle_t *)&m->listener, on_listener_closed);
}

static void on_rebind_timer(uv_timer_t *t)
{
    apply_down(t->data);
}

/* Binds and listens on m->addr with a fresh listener handle. */
static int open_listener(lx_mock_t *m)
{
    uv_tcp_init(&m->loop, &m->listener);
    m->listener.data = m;
    m->listening = 1;
    int rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&m->addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->listener, 1024, on_connection);
    return rc;
}

/* Makes the listener's state match f_down (loop thread). */
static void apply_down(lx_mock_t *m)
{
    if (m->stopping || m->listener_closing)
        return; /* on_listener_closed calls again */
    int want_down = atomic_load(&m->f_down);
    if (want_down && m->listening) {
        close_listener(m);
        lx_mock_conn_close_all(m, 1);
    } else if (!want_down && !m->listening) {
        if (open_listener(m) == 0) {
            atomic_store(&m->is_down, 0);
            return;
        }
        /* the port is taken for now: close the handle and try again soon */
        close_listener(m);
        uv_timer_start(&m->rebind_timer, on_rebind_timer, 100, 0);
    }
}

static void on_faults(uv_async_t *a)
{
    apply_down(a->data);
    lx_mock_gpu_apply(a->data);
}

static void on_stop(uv_async_t *a)
{
    lx_mock_t *m = a->data;
    m->stopping = 1;
    if (m->listening)
        uv_close((uv_handle_t *)&m->listener, NULL);
    m->listening = 0;
    lx_mock_conn_close_all(m, 0);
    uv_close((uv_handle_t *)&m->stop_async, NULL);
    uv_close((uv_handle_t *)&m->faults_async, NULL);
    uv_close((uv_handle_t *)&m->rebind_timer, NULL);
}

static void run(void *arg)
{
    lx_mock_t *m = arg;
    uv_run(&m->loop, UV_RUN_DEFAULT);
}

/* host:port as a socket address: a literal, else one getaddrinfo lookup. */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return UV_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    return 0;
}

static void free_mock(lx_mock_t *m)
{
    for (size_t i = 0; i < LX_MOCK_RECORDS; i++)
        lx_mock_buf_dispose(&m->ring[i]);
    lx_mock_buf_dispose(&m->scratch);
    lx_mock_gpu_free(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

lx_mock_t *lx_mock_start(const char *host, uint16_t port)
{
    lx_mock_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->gpu.lru_head = m->gpu.lru_tail = -1;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    if (uv_loop_init(&m->loop) != 0) {
        free_mock(m);
        return NULL;
    }
    struct sockaddr_storage ss;
    struct sockaddr_storage bound;
    int namelen = sizeof(bound);
    uv_tcp_init(&m->loop, &m->listener);
    m->listener.data = m;
    int listening = 0;
    if (resolve(host ? host : "127.0.0.1", port, &ss) == 0 &&
        uv_tcp_bind(&m->listener, (const struct sockaddr *)&ss, 0) == 0 &&
        uv_listen((uv_stream_t *)&m->listener, 1024, on_connection) == 0 &&
        uv_tcp_getsockname(&m->listener, (struct sockaddr *)&bound, &namelen) == 0) {
        listening = 1;
        m->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
        m->addr = bound;
        m->listening = 1;
    }
    int async_ok = listening && uv_async_init(&m->loop, &m->stop_async, on_stop) == 0;
    m->stop_async.data = m;
    if (async_ok && uv_async_init(&m->loop, &m->faults_async, on_faults) != 0) {
        uv_close((uv_handle_t *)&m->stop_async, NULL);
        async_ok = 0;
    }
    m->faults_async.data = m;
    if (async_ok) {
        uv_timer_init(&m->loop, &m->rebind_timer);
        m->rebind_timer.data = m;
    }
    if (async_ok) {
        /* the loop thread leaves process signals to the others and gets EPIPE, not SIGPIPE */
        sigset_t block, old;
        sigemptyset(&block);
        int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            sigaddset(&block, sigs[i]);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = uv_thread_create(&m->thread, run, m);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0)
            return m;
        uv_close((uv_handle_t *)&m->stop_async, NULL);
        uv_close((uv_handle_t *)&m->faults_async, NULL);
        uv_close((uv_handle_t *)&m->rebind_timer, NULL);
    }
    uv_close((uv_handle_t *)&m->listener, NULL);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    uv_loop_close(&m->loop);
    free_mock(m);
    return NULL;
}

uint16_t lx_mock_port(const lx_mock_t *m)
{
    return m->port;
}

void lx_mock_stop(lx_mock_t *m)
{
    if (m == NULL)
        return;
    uv_async_send(&m->stop_async);
    uv_thread_join(&m->thread);
    /* close callbacks already ran inside the last uv_run; a second pass is a safety net */
    if (uv_loop_close(&m->loop) != 0) {
        uv_run(&m->loop, UV_RUN_DEFAULT);
        uv_loop_close(&m->loop);
    }
    free_mock(m);
}

uint64_t lx_mock_requests(lx_mock_t *m)
{
    return atomic_load(&m->requests);
}

uint64_t lx_mock_connections(lx_mock_t *m)
{
    return atomic_load(&m->connections);
}

uint64_t lx_mock_open_connections(lx_mock_t *m)
{
    return atomic_load(&m->open_connections);
}

uint64_t lx_mock_closes_by_peer(lx_mock_t *m)
{
    return atomic_load(&m->closes_by_peer);
}

uint64_t lx_mock_last_peer_close_ns(lx_mock_t *m)
{
    return atomic_load(&m->last_peer_close_ns);
}

void lx_mock_note_peer_close(lx_mock_t *m)
{
    atomic_store(&m->last_peer_close_ns, lx_mock_reply_now_ns());
    atomic_fetch_add(&m->closes_by_peer, 1);
}

void lx_mock_record(lx_mock_t *m, lx_mock_buf_t *raw)
{
    pthread_mutex_lock(&m->lock);
    lx_mock_buf_t old = m->ring[m->ring_head];
    m->ring[m->ring_head] = *raw;
    m->ring_head = (m->ring_head + 1) % LX_MOCK_RECORDS;
    if (m->ring_count < LX_MOCK_RECORDS)
        m->ring_count++;
    pthread_mutex_unlock(&m->lock);
    *raw = old;
    raw->len = 0;
    if (raw->cap > LX_MOCK_RECORD_MAX / 4)
        lx_mock_buf_dispose(raw); /* do not let big records pile up in idle connections */
    atomic_fetch_add(&m->requests, 1);
}

char *lx_mock_request_raw(lx_mock_t *m, size_t n, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&m->lock);
    if (n < m->ring_count) {
        size_t i = (m->ring_head + LX_MOCK_RECORDS - 1 - n) % LX_MOCK_RECORDS;
        const lx_mock_buf_t *b = &m->ring[i];
        copy = malloc(b->len + 1);
        if (copy) {
            if (b->len)
                memcpy(copy, b->p, b->len);
            copy[b->len] = '\0';
            if (len)
                *len = b->len;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return copy;
}

int lx_mock_wait_requests(lx_mock_t *m, uint64_t n, uint64_t timeout_ms)
{
    uint64_t deadline = lx_mock_reply_now_ns() + timeout_ms * 1000000;
    for (;;) {
        if (lx_mock_requests(m) >= n)
            return 0;
        if (lx_mock_reply_now_ns() >= deadline)
            return -1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void lx_mock_reset(lx_mock_t *m)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < LX_MOCK_RECORDS; i++)
        m->ring[i].len = 0;
    m->ring_head = 0;
    m->ring_count = 0;
    pthread_mutex_unlock(&m->lock);
    atomic_store(&m->requests, 0);
    atomic_store(&m->connections, 0);
    atomic_store(&m->closes_by_peer, 0);
    atomic_store(&m->last_peer_close_ns, 0);
    atomic_store(&m->answered_ok, 0);
    atomic_store(&m->answered_failed, 0);
    atomic_store(&m->answered_limited, 0);
    atomic_store(&m->g_queries, 0);
    atomic_store(&m->g_hits, 0);
    atomic_store(&m->g_success, 0);
    atomic_store(&m->g_admitted, 0);
    atomic_store(&m->g_max_waiting, 0);
}

/* ---- endpoint-wide faults ---- */

#define DEFAULT_SEED 0x9e3779b97f4a7c15ull

void lx_mock_set_faults(lx_mock_t *m, const lx_mock_faults_t *f)
{
    lx_mock_faults_t none = {0};
    if (f == NULL)
        f = &none;
    atomic_store(&m->f_fail_permille, f->fail_permille > 1000 ? 1000 : f->fail_permille);
    atomic_store(&m->f_ttfb_delay_ms, f->ttfb_delay_ms > 3600000 ? 3600000 : f->ttfb_delay_ms);
    atomic_store(&m->f_max_concurrent, f->max_concurrent);
    atomic_store(&m->f_seed, f->seed ? f->seed : DEFAULT_SEED);
    int down = f->down ? 1 : 0;
    if (atomic_exchange(&m->f_down, down) != down)
        uv_async_send(&m->faults_async);
}

bool lx_mock_is_down(lx_mock_t *m)
{
    return atomic_load(&m->is_down) != 0;
}

int lx_mock_wait_down(lx_mock_t *m, bool down, uint64_t timeout_ms)
{
    uint64_t deadline = lx_mock_reply_now_ns() + timeout_ms * 1000000;
    for (;;) {
        if (lx_mock_is_down(m) == down)
            return 0;
        if (lx_mock_reply_now_ns() >= deadline)
            return -1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* splitmix64: one well-mixed 64-bit value per step. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int lx_mock_fault_status(lx_mock_t *m)
{
    uint32_t max = atomic_load(&m->f_max_concurrent);
    if (max > 0 && m->in_progress >= max)
        return 429;
    uint32_t permille = atomic_load(&m->f_fail_permille);
    if (permille == 0)
        return 0;
    uint64_t seed = atomic_load(&m->f_seed);
    if (seed != m->fail_seed) {
        m->fail_seed = seed;
        m->fail_seq = 0;
    }
    uint64_t x = mix(seed + m->fail_seq * 0x9e3779b97f4a7c15ull);
    m->fail_seq++;
    return x % 1000 < permille ? 500 : 0;
}

void lx_mock_note_answer(lx_mock_t *m, int status)
{
    if (status >= 200 && status < 300)
        atomic_fetch_add(&m->answered_ok, 1);
    else if (status == 429)
        atomic_fetch_add(&m->answered_limited, 1);
    else if (status >= 500)
        atomic_fetch_add(&m->answered_failed, 1);
}

uint64_t lx_mock_answered_ok(lx_mock_t *m)
{
    return atomic_load(&m->answered_ok);
}

uint64_t lx_mock_answered_failed(lx_mock_t *m)
{
    return atomic_load(&m->answered_failed);
}

uint64_t lx_mock_answered_limited(lx_mock_t *m)
{
    return atomic_load(&m->answered_limited);
}
