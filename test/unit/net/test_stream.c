/*
 * test_stream.c - streams on a real loop over 127.0.0.1: bytes cross, several slices keep
 * their order and give their references back, close cancels pending writes and still returns
 * the references, an idle stream holds no chunk, read_into redirects reads, a reset reaches the
 * peer, a refused connect is reported, lx_worker_post runs functions on the loop, and a loop
 * marks a quiescent point of its QSBR domain every turn and goes offline when it ends.
 *
 * The same runs again over TLS (the listener has a server context, the client a client
 * context; certificates generated at start): the owner's view must not change. TLS-only tests:
 * the handshake completes before the connect callback, verification failures and garbage are
 * reported with their codes, a second connection resumes, a paused reader gets the plaintext
 * the session still held when it resumes (from the loop, not inside read_start), and close
 * cancels encrypted writes like plain ones.
 *
 * Every loop run is bounded by a deadline; each test closes its handles and the teardown runs
 * the loop to completion and checks that every pooled chunk came back.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/status.h"
#include "net/listener.h"
#include "net/stream.h"
#include "net/worker.h"
#include "tls/tls.h"

#include "../tls/pki.h"

#define DEADLINE_NS 3000000000ull

typedef struct peer {
    lx_stream_t s;
    char got[1 << 16];
    size_t got_len;
    int reads;
    int read_err;   /* the nread < 0 reported, 0 if none */
    bool keep;      /* the read callback keeps a reference on the chunk */
    lx_buf_t *kept; /* the chunk kept */
    lx_buf_t *last_buf;
    const char *last_data;
    bool inited;
    bool closed;
    int connect_status;
    bool connected;
} peer_t;

static lx_worker_t W;
static lx_listener_t L;
static uint16_t port;
static bool listener_closed;
static peer_t *client, *server;
static uv_timer_t tick;

/* TLS runs: */
static bool tls_mode;
static pki_t P;
static char pki_dir[64];
static lx_tls_server_t *srv_ctx;
static lx_tls_client_t *cli_ctx, *bad_cli_ctx; /* bad: trusts another CA */
static const char *session_key;

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

static void on_peer_read(lx_stream_t *s, ssize_t nread, lx_buf_t *buf, const char *data)
{
    peer_t *p = s->data;
    if (nread < 0) {
        assert_null(buf);
        assert_null(data);
        p->read_err = (int)nread;
        return;
    }
    assert_non_null(buf);
    assert_true(data >= buf->data && data + nread <= buf->data + buf->len);
    assert_true((size_t)nread <= sizeof(p->got) - p->got_len);
    memcpy(p->got + p->got_len, data, (size_t)nread);
    p->got_len += (size_t)nread;
    p->reads++;
    p->last_buf = buf;
    p->last_data = data;
    if (p->keep && p->kept == NULL)
        p->kept = lx_buf_ref(buf);
}

static void on_peer_closed(lx_stream_t *s)
{
    peer_t *p = s->data;
    p->closed = true;
}

static void on_accept(lx_listener_t *l)
{
    (void)l;
    assert_null(server);
    server = calloc(1, sizeof(*server));
    assert_non_null(server);
    assert_int_equal(lx_stream_init(&W, &server->s), 0);
    server->inited = true;
    server->s.data = server;
    assert_int_equal(lx_stream_accept((uv_stream_t *)&L.tcp, &server->s), 0);
}

static void on_client_connect(lx_stream_t *s, int status)
{
    peer_t *p = s->data;
    p->connect_status = status;
    p->connected = true;
}

static void on_listener_closed(lx_listener_t *l)
{
    (void)l;
    listener_closed = true;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lx_worker_init(&W, 0), 0);
    port = 0;
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &port, 16, &fd), 0);
    assert_true(port != 0);
    listener_closed = false;
    assert_int_equal(lx_listener_start(&L, &W, fd, 16, on_accept), 0);
    assert_int_equal(uv_timer_init(&W.loop, &tick), 0);
    assert_int_equal(uv_timer_start(&tick, on_tick, 5, 5), 0);
    client = server = NULL;
    tls_mode = false;
    session_key = NULL;
    return 0;
}

static int setup_tls(void **state)
{
    setup(state);
    tls_mode = true;
    lx_listener_set_tls(&L, srv_ctx);
    return 0;
}

static void close_peer(peer_t *p)
{
    if (p == NULL || !p->inited)
        return;
    lx_buf_unref(p->kept);
    p->kept = NULL;
    lx_stream_close(&p->s, on_peer_closed);
}

static int teardown(void **state)
{
    (void)state;
    close_peer(client);
    close_peer(server);
    lx_listener_close(&L, on_listener_closed);
    RUN_UNTIL((client == NULL || !client->inited || client->closed) &&
              (server == NULL || server->closed) && listener_closed);
    free(client);
    free(server);
    client = server = NULL;
    lx_worker_close_all(&W);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    /* every chunk came back to the pool, but the worker's own shared chunks */
    size_t own = (W.rchunk != NULL) + (W.tls_out != NULL) + (W.tls_plain != NULL);
    assert_int_equal(W.bufs.n_out, own);
    lx_worker_dispose(&W);
    return 0;
}

/* Connects a client and waits for the server side to be accepted. */
static void connect_pair(void)
{
    client = calloc(1, sizeof(*client));
    assert_non_null(client);
    assert_int_equal(lx_stream_init(&W, &client->s), 0);
    client->inited = true;
    client->s.data = client;
    if (tls_mode)
        assert_int_equal(lx_stream_set_tls_client(&client->s, cli_ctx, "localhost", session_key),
                         0);
    struct sockaddr_storage ss;
    assert_int_equal(lx_listener_addr("127.0.0.1", port, &ss), 0);
    assert_int_equal(lx_stream_connect(&client->s, (struct sockaddr *)&ss, on_client_connect), 0);
    RUN_UNTIL(client->connected && server != NULL);
    assert_int_equal(client->connect_status, 0);
}

typedef struct wres {
    int calls;
    int status;
    lx_stream_t *stream;
    lx_buf_t *check; /* refcnt observed in the callback */
    uint32_t refcnt_in_cb;
} wres_t;

static void on_written(lx_stream_t *s, int status, void *arg)
{
    wres_t *r = arg;
    r->calls++;
    r->status = status;
    r->stream = s;
    if (r->check != NULL)
        r->refcnt_in_cb = r->check->refcnt;
}

static void test_bytes_cross(void **state)
{
    (void)state;
    connect_pair();
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(lx_stream_read_start(&client->s, on_peer_read), 0);
    wres_t r = {0};
    assert_int_equal(lx_stream_write_copy(&client->s, "ping from client", 16, on_written, &r), 0);
    RUN_UNTIL(server->got_len == 16 && r.calls == 1);
    assert_memory_equal(server->got, "ping from client", 16);
    assert_int_equal(r.status, 0);
    assert_ptr_equal(r.stream, &client->s);
    assert_int_equal(client->s.queued, 0);
    assert_int_equal(client->s.writes_pending, 0);

    wres_t r2 = {0};
    assert_int_equal(lx_stream_write_copy(&server->s, "pong", 4, on_written, &r2), 0);
    RUN_UNTIL(client->got_len == 4 && r2.calls == 1);
    assert_memory_equal(client->got, "pong", 4);

    /* a write larger than one chunk is split and arrives whole */
    size_t big = 3 * LX_BUF_CHUNK_SIZE + 100;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    wres_t r3 = {0};
    server->got_len = 0;
    assert_int_equal(lx_stream_write_copy(&client->s, data, big, on_written, &r3), 0);
    RUN_UNTIL(server->got_len == big && r3.calls == 1);
    assert_memory_equal(server->got, data, big);
    free(data);

    /* the peer closing is reported as UV_EOF */
    close_peer(client);
    RUN_UNTIL(server->read_err != 0 && client->closed);
    assert_int_equal(server->read_err, UV_EOF);
}

/* Busy polling: a read starts it, the loop then turns without sleeping (many turns where a
 * sleeping loop would make one per tick), and it stops once nothing was read for its span. */
static unsigned spin_turns;
static void on_spin_turn(uv_prepare_t *h)
{
    (void)h;
    spin_turns++;
}

static void test_busy_poll(void **state)
{
    (void)state;
    lx_worker_set_busy_poll(&W, 20 * 1000 * 1000); /* 20 ms */
    connect_pair();
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    wres_t r = {0};
    assert_int_equal(lx_stream_write_copy(&client->s, "spin", 4, on_written, &r), 0);
    RUN_UNTIL(server->got_len == 4 && r.calls == 1);
    assert_true(W.spinning);

    uv_prepare_t turns;
    assert_int_equal(uv_prepare_init(&W.loop, &turns), 0);
    assert_int_equal(uv_prepare_start(&turns, on_spin_turn), 0);
    spin_turns = 0;
    /* the tick timer fires every 5 ms: a sleeping loop turns a few times in 10 ms */
    uint64_t until = uv_hrtime() + 10 * 1000 * 1000;
    while (uv_hrtime() < until)
        uv_run(&W.loop, UV_RUN_ONCE);
    assert_true(spin_turns > 20);
    /* then it stops by itself */
    RUN_UNTIL(!W.spinning);
    lx_worker_set_busy_poll(&W, 0);
    uv_close((uv_handle_t *)&turns, NULL);
    close_peer(client);
    RUN_UNTIL(server->read_err != 0 && client->closed);
}

static void test_slices_order_and_refs(void **state)
{
    (void)state;
    connect_pair();
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memcpy(b->data, "hello world", 11);
    b->len = 11;
    lx_slice_t sl[4] = {
        lx_slice_make(b, 6, 5), /* world */
        lx_slice_make(b, 5, 1), /* ' ' */
        lx_slice_make(b, 0, 0), /* empty: skipped */
        lx_slice_make(b, 0, 5), /* hello */
    };
    assert_int_equal(b->refcnt, 5);
    wres_t r = {.check = b};
    assert_int_equal(lx_stream_write(&client->s, sl, 4, on_written, &r), 0);
    RUN_UNTIL(server->got_len == 11 && r.calls == 1);
    assert_memory_equal(server->got, "world hello", 11);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.refcnt_in_cb, 1); /* references back before the callback runs */
    assert_int_equal(b->refcnt, 1);

    /* more slices than one write request carries, all in order */
    lx_slice_t many[3 * LX_WRITE_MAX_IOV + 5];
    char want[sizeof(many) / sizeof(many[0])];
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
        many[i] = lx_slice_make(b, i % 11, 1);
        want[i] = b->data[i % 11];
    }
    wres_t r2 = {.check = b};
    server->got_len = 0;
    assert_int_equal(
        lx_stream_write(&client->s, many, sizeof(many) / sizeof(many[0]), on_written, &r2), 0);
    RUN_UNTIL(server->got_len == sizeof(want) && r2.calls == 1);
    assert_memory_equal(server->got, want, sizeof(want));
    assert_int_equal(b->refcnt, 1);
    assert_int_equal(r2.refcnt_in_cb, 1);

    /* only empty slices with a callback: refused, references still taken over */
    lx_slice_t empty[2] = {lx_slice_make(b, 0, 0), lx_slice_make(b, 3, 0)};
    wres_t r3 = {0};
    assert_int_not_equal(lx_stream_write(&client->s, empty, 2, on_written, &r3), 0);
    assert_int_equal(b->refcnt, 1);
    run_for_ms(20);
    assert_int_equal(r3.calls, 0);
    lx_buf_unref(b);
}

static void test_close_cancels_pending_writes(void **state)
{
    (void)state;
    connect_pair();
    /* the server never reads: far more than the socket buffers can hold stays queued */
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memset(b->data, 'q', LX_BUF_CHUNK_SIZE);
    b->len = LX_BUF_CHUNK_SIZE;
    enum { N = 4096 }; /* 64 MiB */
    lx_slice_t *sl = calloc(N, sizeof(*sl));
    assert_non_null(sl);
    for (int i = 0; i < N; i++)
        sl[i] = lx_slice_make(b, 0, LX_BUF_CHUNK_SIZE);
    wres_t r = {.check = b};
    assert_int_equal(lx_stream_write(&client->s, sl, N, on_written, &r), 0);
    free(sl);
    run_for_ms(50);
    assert_int_equal(r.calls, 0);
    assert_true(client->s.writes_pending > 0);
    assert_true(client->s.queued > 0);
    assert_true(b->refcnt > 1);

    lx_stream_close(&client->s, on_peer_closed);
    lx_stream_close(&client->s, on_peer_closed); /* idempotent */
    RUN_UNTIL(client->closed);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, UV_ECANCELED);
    assert_int_equal(client->s.writes_pending, 0);
    assert_int_equal(client->s.queued, 0);
    assert_int_equal(b->refcnt, 1); /* every reference came back */

    /* writing to a closed stream fails and still takes the references over */
    lx_slice_t one = lx_slice_make(b, 0, 4);
    wres_t r2 = {0};
    assert_int_equal(lx_stream_write(&client->s, &one, 1, on_written, &r2), UV_ECANCELED);
    assert_int_equal(b->refcnt, 1);
    assert_int_equal(r2.calls, 0);
    lx_buf_unref(b);
}

static void test_idle_stream_holds_no_chunk(void **state)
{
    (void)state;
    connect_pair();
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(lx_stream_write_copy(&client->s, "abc", 3, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 3);
    /* the callback kept nothing: the stream holds no chunk, only the worker's read chunk is
     * out (and the client's write chunk until its callback) */
    assert_null(server->s.rbuf);
    RUN_UNTIL(W.bufs.n_out == 1);
    lx_buf_t *shared = W.rchunk;
    assert_non_null(shared);
    assert_int_equal(shared->refcnt, 1);

    /* a callback that keeps a reference keeps the bytes, and the next read appends after them
     * in the same shared chunk */
    server->keep = true;
    assert_int_equal(lx_stream_write_copy(&client->s, "defg", 4, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 7);
    lx_buf_t *kept = server->kept;
    assert_non_null(kept);
    assert_ptr_equal(kept, shared);
    assert_null(server->s.rbuf);
    assert_int_equal(kept->refcnt, 2);
    assert_memory_equal(kept->data, "defg", 4); /* rewound: nobody held "abc" */
    assert_int_equal(lx_stream_write_copy(&client->s, "hi", 2, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 9);
    assert_ptr_equal(server->last_buf, kept);
    assert_ptr_equal(server->last_data, kept->data + 4);
    assert_memory_equal(kept->data, "defghi", 6);

    /* once the owner lets go, the chunk is rewound and reused from its start */
    server->keep = false;
    server->kept = NULL;
    lx_buf_unref(kept);
    assert_int_equal(lx_stream_write_copy(&client->s, "j", 1, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 10);
    assert_ptr_equal(server->last_data, shared->data);
    assert_null(server->s.rbuf);
    RUN_UNTIL(W.bufs.n_out == 1);
    assert_memory_equal(server->got, "abcdefghij", 10);
}

static void test_read_into(void **state)
{
    (void)state;
    connect_pair();
    lx_buf_t *target = lx_buf_new(64);
    assert_non_null(target);
    lx_stream_read_into(&server->s, target);
    assert_int_equal(target->refcnt, 2);
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(lx_stream_write_copy(&client->s, "xyz", 3, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 3);
    assert_ptr_equal(server->last_buf, target);
    assert_ptr_equal(server->last_data, target->data);
    assert_int_equal(target->len, 3);
    assert_memory_equal(target->data, "xyz", 3);
    /* the stream keeps reading into it while it has room */
    assert_ptr_equal(server->s.rbuf, target);
    assert_true(server->s.rbuf_direct);
    assert_int_equal(target->refcnt, 2);

    /* more than the room left: the buffer fills, then reads move to pool chunks */
    char data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (char)('0' + i % 10);
    assert_int_equal(lx_stream_write_copy(&client->s, data, 100, NULL, NULL), 0);
    RUN_UNTIL(server->got_len == 103);
    assert_int_equal(target->len, 64);
    assert_memory_equal(target->data + 3, data, 61);
    assert_memory_equal(server->got + 3, data, 100);
    assert_int_equal(target->refcnt, 1); /* full: released by the stream */
    assert_ptr_not_equal(server->s.rbuf, target);

    /* replacing a pending target releases the first one */
    lx_buf_t *t2 = lx_buf_new(32);
    lx_buf_t *t3 = lx_buf_new(32);
    lx_stream_read_into(&server->s, t2);
    lx_stream_read_into(&server->s, t3);
    assert_int_equal(t2->refcnt, 1);
    assert_int_equal(t3->refcnt, 2);
    lx_buf_unref(t2);
    close_peer(server);
    RUN_UNTIL(server->closed);
    assert_int_equal(t3->refcnt, 1); /* the close gave it back */
    lx_buf_unref(t3);
    lx_buf_unref(target);
}

static void test_reset_reaches_peer(void **state)
{
    (void)state;
    connect_pair();
    assert_int_equal(lx_stream_read_start(&client->s, on_peer_read), 0);
    lx_buf_unref(server->kept);
    lx_stream_reset(&server->s, on_peer_closed);
    RUN_UNTIL(server->closed && client->read_err != 0);
    assert_int_equal(client->read_err, UV_ECONNRESET);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* a port that was just free: bind one, close it, connect to it */
    uint16_t p = 0;
    int fd = -1;
    assert_int_equal(lx_listener_bind("127.0.0.1", &p, 1, &fd), 0);
    close(fd);
    client = calloc(1, sizeof(*client));
    assert_non_null(client);
    assert_int_equal(lx_stream_init(&W, &client->s), 0);
    client->inited = true;
    client->s.data = client;
    struct sockaddr_storage ss;
    assert_int_equal(lx_listener_addr("127.0.0.1", p, &ss), 0);
    assert_int_equal(lx_stream_connect(&client->s, (struct sockaddr *)&ss, on_client_connect), 0);
    RUN_UNTIL(client->connected);
    assert_int_equal(client->connect_status, UV_ECONNREFUSED);
}

static void test_close_while_connecting(void **state)
{
    (void)state;
    client = calloc(1, sizeof(*client));
    assert_non_null(client);
    assert_int_equal(lx_stream_init(&W, &client->s), 0);
    client->inited = true;
    client->s.data = client;
    struct sockaddr_storage ss;
    assert_int_equal(lx_listener_addr("127.0.0.1", port, &ss), 0);
    assert_int_equal(lx_stream_connect(&client->s, (struct sockaddr *)&ss, on_client_connect), 0);
    lx_stream_close(&client->s, on_peer_closed);
    RUN_UNTIL(client->closed);
    /* the owner closed it: the cancelled connect is not reported */
    assert_false(client->connected);
}

static void test_listener_addr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(lx_listener_addr("127.0.0.1", 8080, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    assert_int_equal(lx_listener_addr("::1", 9, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(lx_listener_addr("localhost", 80, &ss), UV_EINVAL);
    assert_int_equal(lx_listener_addr("1.2.3", 80, &ss), UV_EINVAL);
    uint16_t p = 0;
    int fd = -1;
    assert_int_not_equal(lx_listener_bind("not-an-address", &p, 1, &fd), 0);
    /* SO_REUSEPORT: a second socket binds the same port */
    p = port;
    assert_int_equal(lx_listener_bind("127.0.0.1", &p, 1, &fd), 0);
    assert_int_equal(p, port);
    close(fd);
}

/* worker post */

typedef struct post_rec {
    int runs;
    lx_worker_t *w;
    pthread_t thread;
    int order[4];
    int n;
} post_rec_t;

static post_rec_t posted;

static void posted_fn(lx_worker_t *w, void *arg)
{
    posted.w = w;
    posted.thread = pthread_self();
    posted.order[posted.n++] = (int)(intptr_t)arg;
    posted.runs++;
}

static void *poster(void *arg)
{
    (void)arg;
    for (intptr_t i = 1; i <= 3; i++)
        if (lx_worker_post(&W, posted_fn, (void *)i) != 0)
            return (void *)1;
    return NULL;
}

static void test_worker_post(void **state)
{
    (void)state;
    memset(&posted, 0, sizeof(posted));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poster, NULL), 0);
    void *ret = (void *)2;
    pthread_join(t, &ret);
    assert_null(ret);
    assert_int_equal(posted.runs, 0); /* nothing runs until the loop does */
    RUN_UNTIL(posted.runs == 3);
    assert_ptr_equal(posted.w, &W);
    assert_true(pthread_equal(posted.thread, pthread_self())); /* on the loop's thread */
    assert_int_equal(posted.order[0], 1);
    assert_int_equal(posted.order[1], 2);
    assert_int_equal(posted.order[2], 3);
}

static void test_worker_post_after_close(void **state)
{
    (void)state;
    memset(&posted, 0, sizeof(posted));
    /* a message queued before close_all is still delivered; after it, posting is refused */
    assert_int_equal(lx_worker_post(&W, posted_fn, (void *)7), 0);
    lx_listener_close(&L, on_listener_closed);
    lx_worker_close_all(&W);
    assert_int_equal(posted.runs, 1);
    assert_int_equal(posted.order[0], 7);
    assert_int_equal(lx_worker_post(&W, posted_fn, (void *)8), LX_ECLOSED);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    assert_true(listener_closed);
    assert_int_equal(posted.runs, 1);
    lx_worker_dispose(&W);
}

static void close_fn(lx_worker_t *w, void *arg)
{
    (void)arg;
    lx_worker_close_all(w);
}

static void noop_fn(lx_worker_t *w, void *arg)
{
    (void)w;
    (void)arg;
}

/* Waits (bounded) until <t> has passed in <q>. */
static bool wait_passed(lx_qsbr_t *q, uint64_t t)
{
    uint64_t dl = uv_hrtime() + DEADLINE_NS;
    while (!lx_qsbr_passed(q, t) && uv_hrtime() < dl)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    return lx_qsbr_passed(q, t);
}

/* A worker given a QSBR domain marks a quiescent point at the end of each loop turn, and goes
 * offline once its loop has ended (so a stopped worker holds no grace period open). */
static void test_worker_quiescent(void **state)
{
    (void)state;
    lx_qsbr_t *q = lx_qsbr_new(1);
    assert_non_null(q);
    W.qsbr = q;
    uint64_t t = lx_qsbr_retire(q);
    assert_false(lx_qsbr_passed(q, t));
    RUN_UNTIL(lx_qsbr_passed(q, t)); /* a turn of this thread's loop */
    W.qsbr = NULL;
    lx_qsbr_free(q);

    /* a worker on its own thread, reader 1 (reader 0 offline) */
    q = lx_qsbr_new(2);
    assert_non_null(q);
    lx_qsbr_offline(q, 0);
    lx_worker_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    assert_int_equal(lx_worker_init(w, 1), 0);
    w->qsbr = q;
    assert_int_equal(lx_worker_start(w), 0);
    /* (its first turn may come before or after this retirement: then it sleeps in its poll) */
    t = lx_qsbr_retire(q);
    assert_int_equal(lx_worker_post(w, noop_fn, NULL), 0); /* wakes it: one more turn */
    assert_true(wait_passed(q, t));
    assert_int_equal(lx_worker_post(w, close_fn, NULL), 0); /* its loop ends */
    lx_worker_join(w);
    assert_true(lx_qsbr_passed(q, lx_qsbr_retire(q))); /* offline: nothing to wait for */
    lx_worker_dispose(w);
    free(w);
    lx_qsbr_free(q);
}

/* --- TLS only ------------------------------------------------------------------------------ */

static void test_tls_handshake_before_connect_cb(void **state)
{
    (void)state;
    connect_pair();
    /* the connect callback came after the handshake: both sides are ready */
    assert_true(lx_tls_ready(client->s.tls));
    RUN_UNTIL(!lx_stream_handshaking(&server->s));
    assert_false(lx_stream_handshaking(&client->s));
    assert_string_equal(lx_tls_alpn(client->s.tls), "http/1.1");
    /* a write before any read works both ways, and a server owner that starts reading late
     * still gets what arrived meanwhile */
    assert_int_equal(lx_stream_write_copy(&client->s, "early", 5, NULL, NULL), 0);
    run_for_ms(30);
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(server->got_len, 0); /* never from inside read_start */
    RUN_UNTIL(server->got_len == 5);
    assert_memory_equal(server->got, "early", 5);
}

static void test_tls_resumes(void **state)
{
    (void)state;
    session_key = "test-endpoint";
    connect_pair();
    assert_false(lx_tls_resumed(client->s.tls));
    close_peer(client);
    close_peer(server);
    RUN_UNTIL(client->closed && server->closed);
    free(client);
    free(server);
    client = server = NULL;
    connect_pair();
    assert_true(lx_tls_resumed(client->s.tls));
    RUN_UNTIL(!lx_stream_handshaking(&server->s));
    assert_true(lx_tls_resumed(server->s.tls));
}

static void test_tls_verify_failure(void **state)
{
    (void)state;
    client = calloc(1, sizeof(*client));
    assert_non_null(client);
    assert_int_equal(lx_stream_init(&W, &client->s), 0);
    client->inited = true;
    client->s.data = client;
    assert_int_equal(lx_stream_set_tls_client(&client->s, bad_cli_ctx, "localhost", NULL), 0);
    struct sockaddr_storage ss;
    assert_int_equal(lx_listener_addr("127.0.0.1", port, &ss), 0);
    assert_int_equal(lx_stream_connect(&client->s, (struct sockaddr *)&ss, on_client_connect), 0);
    RUN_UNTIL(client->connected && server != NULL);
    assert_int_equal(client->connect_status, LX_ETLSCA);
    /* the server's owner hears the failure as a read error when it reads */
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    RUN_UNTIL(server->read_err != 0);
    assert_true(server->read_err < 0 && server->read_err != UV_EOF);
    assert_int_equal(server->got_len, 0);
}

static void test_tls_garbage_from_plain_client(void **state)
{
    (void)state;
    tls_mode = false; /* a plain client talks to the TLS listener */
    connect_pair();
    tls_mode = true;
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(lx_stream_read_start(&client->s, on_peer_read), 0);
    const char req[] = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(lx_stream_write_copy(&client->s, req, sizeof(req) - 1, NULL, NULL), 0);
    RUN_UNTIL(server->read_err != 0);
    assert_int_equal(server->read_err, LX_ETLSPROTO);
    assert_int_equal(server->got_len, 0);
    close_peer(server);
    /* the plain client gets an alert's bytes at most, then the end */
    RUN_UNTIL(client->read_err != 0);
}

static void test_tls_eof_mid_handshake(void **state)
{
    (void)state;
    tls_mode = false;
    connect_pair();
    tls_mode = true;
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    /* the first bytes of a ClientHello, then the client goes away */
    static const char part[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_int_equal(lx_stream_write_copy(&client->s, part, sizeof(part) - 1, NULL, NULL), 0);
    run_for_ms(20);
    assert_int_equal(server->read_err, 0); /* waiting for the rest */
    assert_true(lx_stream_handshaking(&server->s));
    close_peer(client);
    RUN_UNTIL(server->read_err != 0);
    assert_int_equal(server->read_err, LX_ECLOSED);
}

static bool pause_after_first;

static void on_pausing_read(lx_stream_t *s, ssize_t nread, lx_buf_t *buf, const char *data)
{
    on_peer_read(s, nread, buf, data);
    if (nread > 0 && pause_after_first)
        lx_stream_read_stop(s);
}

static void test_tls_pause_keeps_plaintext(void **state)
{
    (void)state;
    connect_pair();
    /* three records arrive in one go; the reader pauses after the first */
    size_t n = 3 * 16384;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + i / 1000);
    pause_after_first = true;
    assert_int_equal(lx_stream_write_copy(&server->s, data, n, NULL, NULL), 0);
    run_for_ms(30);
    assert_int_equal(lx_stream_read_start(&client->s, on_pausing_read), 0);
    RUN_UNTIL(client->reads == 1);
    run_for_ms(30);
    assert_int_equal(client->reads, 1); /* paused: nothing more, though the session holds it */
    assert_false(client->s.reading);
    pause_after_first = false;
    assert_int_equal(lx_stream_read_start(&client->s, on_pausing_read), 0);
    assert_int_equal(client->reads, 1);
    RUN_UNTIL(client->got_len == n);
    assert_memory_equal(client->got, data, n);
    free(data);
}

static void test_tls_close_cancels_writes(void **state)
{
    (void)state;
    connect_pair();
    /* the server never reads: the encrypted bytes stay queued */
    lx_buf_t *b = lx_buf_pool_get(&W.bufs);
    assert_non_null(b);
    memset(b->data, 'q', LX_BUF_CHUNK_SIZE);
    b->len = LX_BUF_CHUNK_SIZE;
    enum { N = 512 }; /* 8 MiB */
    lx_slice_t *sl = calloc(N, sizeof(*sl));
    assert_non_null(sl);
    for (int i = 0; i < N; i++)
        sl[i] = lx_slice_make(b, 0, LX_BUF_CHUNK_SIZE);
    wres_t r = {0};
    assert_int_equal(lx_stream_write(&client->s, sl, N, on_written, &r), 0);
    free(sl);
    assert_int_equal(b->refcnt, 1); /* encrypted at once: the plaintext is not held */
    run_for_ms(50);
    assert_int_equal(r.calls, 0);
    assert_true(client->s.queued > (size_t)N * LX_BUF_CHUNK_SIZE / 2);
    lx_stream_close(&client->s, on_peer_closed);
    RUN_UNTIL(client->closed);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, UV_ECANCELED);
    assert_int_equal(client->s.queued, 0);
    lx_slice_t one = lx_slice_make(b, 0, 4);
    assert_int_equal(lx_stream_write(&client->s, &one, 1, on_written, &r), UV_ECANCELED);
    assert_int_equal(b->refcnt, 1);
    lx_buf_unref(b);
}

static void test_tls_idle_holds_no_chunk(void **state)
{
    (void)state;
    connect_pair();
    assert_int_equal(lx_stream_read_start(&server->s, on_peer_read), 0);
    assert_int_equal(lx_stream_read_start(&client->s, on_peer_read), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lx_stream_write_copy(&client->s, "ping", 4, NULL, NULL), 0);
        RUN_UNTIL(server->got_len == 4u * (unsigned)(i + 1));
        assert_int_equal(lx_stream_write_copy(&server->s, "pong", 4, NULL, NULL), 0);
        RUN_UNTIL(client->got_len == 4u * (unsigned)(i + 1));
    }
    /* only the worker's three shared chunks are out, nobody else holds them */
    size_t own = (W.rchunk != NULL) + (W.tls_out != NULL) + (W.tls_plain != NULL);
    RUN_UNTIL(W.bufs.n_out == own);
    assert_null(server->s.rbuf);
    assert_null(client->s.rbuf);
    assert_false(lx_tls_pending(server->s.tls));
    lx_buf_t *shared[3] = {W.rchunk, W.tls_out, W.tls_plain};
    for (int i = 0; i < 3; i++)
        assert_true(shared[i] == NULL || shared[i]->refcnt == 1);
    assert_true(own <= 3 && own >= 2);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(pki_dir, sizeof(pki_dir), "/tmp/llmux-stream-XXXXXX");
    if (mkdtemp(pki_dir) == NULL || pki_make(&P, pki_dir) != 0)
        return -1;
    lx_tls_cert_pair_t pair = {.cert_pem = P.server.cert_pem, .key_pem = P.server.key_pem};
    lx_tls_server_opts_t so = {.certs = &pair, .n_certs = 1};
    char err[256], ca[128];
    if (lx_tls_server_new(&so, err, sizeof(err), &srv_ctx) != 0)
        return -1;
    snprintf(ca, sizeof(ca), "%s/ca.pem", pki_dir);
    lx_tls_client_opts_t co = {.ca_file = ca};
    if (lx_tls_client_new(&co, err, sizeof(err), &cli_ctx) != 0)
        return -1;
    snprintf(ca, sizeof(ca), "%s/other_ca.pem", pki_dir);
    co.ca_file = ca;
    return lx_tls_client_new(&co, err, sizeof(err), &bad_cli_ctx) != 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lx_tls_server_unref(srv_ctx);
    lx_tls_client_unref(cli_ctx);
    lx_tls_client_unref(bad_cli_ctx);
    pki_dispose(&P);
    const char *names[] = {"ca",       "server", "expired", "wronghost",
                           "other_ca", "other",  "sni",     "client"};
    char path[160];
    for (size_t i = 0; i < 8; i++) {
        snprintf(path, sizeof(path), "%s/%s.pem", pki_dir, names[i]);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s.key", pki_dir, names[i]);
        unlink(path);
    }
    rmdir(pki_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bytes_cross, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slices_order_and_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_pending_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_stream_holds_no_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_into, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_reaches_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_addr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_post, setup, teardown),
        cmocka_unit_test_setup(test_worker_post_after_close, setup),
        cmocka_unit_test_setup_teardown(test_worker_quiescent, setup, teardown),
        /* the owner's view over TLS is the same */
        cmocka_unit_test_setup_teardown(test_bytes_cross, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_slices_order_and_refs, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_read_into, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_reset_reaches_peer, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_before_connect_cb, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_resumes, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_verify_failure, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_garbage_from_plain_client, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_eof_mid_handshake, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_pause_keeps_plaintext, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_close_cancels_writes, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_idle_holds_no_chunk, setup_tls, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
