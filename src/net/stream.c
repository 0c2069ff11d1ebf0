/*
 * stream.c - chunked reads and borrowed writes over a uv_tcp_t.
 *
 * The owner of a stream (an HTTP server connection, an upstream connection) embeds it and
 * hears about reads, completed writes and the close through callbacks. See stream.h for the
 * ownership rules; this file enforces them.
 *
 * A TLS stream puts its session (tls/tls.h) between the socket and the owner:
 *
 *   socket ─read─> worker chunk (ciphertext) ─lx_tls_feed─> session ─lx_tls_read─> plaintext
 *                  chunk (or the owner's read_into buffer) ─> owner's read callback
 *   owner's slices ─lx_tls_write─> ciphertext chunks ─lx_tls_out─> the plain write path
 *
 * The handshake runs first, from the same read callback; libuv reads for it whether or not the
 * owner reads. Plaintext still held by the session when the owner resumes reading is delivered
 * from the worker's idle handle (never from inside lx_stream_read_start).
 */
#include "net/stream.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "net/listener.h"
#include "net/stream_int.h"

/* A chunk with less room than this is not worth a read syscall: take a fresh one. */
#define MIN_READ_ROOM 2048

int lx_stream_init(lx_worker_t *w, lx_stream_t *s)
{
    memset(s, 0, sizeof(*s));
    s->worker = w;
    lx_list_init(&s->tls_link);
    int rc = uv_tcp_init(&w->loop, &s->tcp);
    if (rc != 0)
        return rc;
    s->tcp.data = s;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out);
static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *ub);
static int tcp_start(lx_stream_t *s);

/* The TLS context of the worker's listener <server>, or NULL (plain, or not a listener). */
static lx_tls_server_t *listener_tls(lx_worker_t *w, uv_stream_t *server)
{
    if (w->listeners.next == NULL)
        return NULL;
    for (lx_list_t *n = w->listeners.next; n != &w->listeners; n = n->next) {
        lx_listener_t *l = lx_list_entry(n, lx_listener_t, link);
        if ((uv_stream_t *)&l->tcp == server)
            return l->tls;
    }
    return NULL;
}

int lx_stream_accept(uv_stream_t *server, lx_stream_t *s)
{
    int rc = uv_accept(server, (uv_stream_t *)&s->tcp);
    if (rc != 0)
        return rc;
    lx_worker_note_io(s->worker);
    uv_tcp_nodelay(&s->tcp, 1);
    lx_tls_server_t *ctx = listener_tls(s->worker, server);
    if (ctx != NULL) {
        lx_worker_t *w = s->worker;
        rc = lx_tls_new_server(ctx, &w->bufs, &w->tls_out, &s->tls);
        s->tls_handshaking = rc == 0;
        if (rc == 0)
            rc = tcp_start(s); /* the handshake starts now, whether the owner reads yet or not */
    }
    return rc;
}

int lx_stream_set_tls_client(lx_stream_t *s, lx_tls_client_t *ctx, const char *server_name,
                             const char *session_key)
{
    lx_worker_t *w = s->worker;
    int rc = lx_tls_new_client(ctx, server_name, session_key, &w->bufs, &w->tls_out, &s->tls);
    s->tls_handshaking = rc == 0;
    return rc;
}

static int tcp_start(lx_stream_t *s)
{
    if (s->tcp_reading || s->closing)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc == 0)
        s->tcp_reading = true;
    return rc;
}

void lx_stream_tcp_stop(lx_stream_t *s)
{
    if (!s->tcp_reading)
        return;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->tcp_reading = false;
}

static void on_connect(uv_connect_t *req, int status)
{
    lx_stream_t *s = req->data;
    if (status == 0)
        uv_tcp_nodelay(&s->tcp, 1);
    if (status == UV_ECANCELED && s->closing)
        return;
    if (status == 0 && s->tls != NULL) {
        /* connected: the handshake runs before the owner hears of it */
        s->tls_connecting = true;
        int rc = tcp_start(s);
        if (rc == 0) {
            lx_stream_tls_process(s);
            return;
        }
        s->tls_connecting = false;
        status = rc;
    }
    s->on_connect(s, status);
}

int lx_stream_connect(lx_stream_t *s, const struct sockaddr *addr, lx_stream_connect_cb cb)
{
    s->on_connect = cb;
    s->connect_req.data = s;
    return uv_tcp_connect(&s->connect_req, &s->tcp, addr, on_connect);
}

/* The chunk in *<slot> when it still has room (rewound when nobody else holds any of its
 * bytes), else a fresh pool chunk put in the slot. NULL when out of memory. */
lx_buf_t *lx_stream_shared_chunk(lx_worker_t *w, lx_buf_t **slot)
{
    lx_buf_t *b = *slot;
    if (b != NULL && b->refcnt == 1)
        b->len = 0; /* nobody holds any of its bytes: reuse it from the start */
    if (b == NULL || lx_buf_avail(b) < MIN_READ_ROOM) {
        lx_buf_unref(b);
        b = *slot = lx_buf_pool_get(&w->bufs);
    }
    return b;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    lx_stream_t *s = h->data;
    lx_worker_t *w = s->worker;
    (void)hint;
    if (s->tls != NULL) {
        /* ciphertext always lands in the worker's chunk; the plaintext goes where the owner
         * asked (tls_deliver) */
        s->cbuf = lx_stream_shared_chunk(w, &w->rchunk);
        *out = s->cbuf != NULL ? uv_buf_init(lx_buf_tail(s->cbuf), (unsigned)lx_buf_avail(s->cbuf))
                               : uv_buf_init(NULL, 0);
        return;
    }
    if (s->rbuf_next != NULL) {
        if (s->rbuf_direct)
            lx_buf_unref(s->rbuf);
        s->rbuf = s->rbuf_next;
        s->rbuf_next = NULL;
        s->rbuf_direct = true;
    }
    if (!s->rbuf_direct)
        s->rbuf = lx_stream_shared_chunk(w, &w->rchunk);
    if (s->rbuf == NULL || lx_buf_avail(s->rbuf) == 0) {
        *out = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    *out = uv_buf_init(lx_buf_tail(s->rbuf), (unsigned)lx_buf_avail(s->rbuf));
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *ub)
{
    lx_stream_t *s = h->data;
    (void)ub;
    lx_worker_note_io(s->worker);
    if (s->tls != NULL) {
        lx_stream_tls_on_read(s, nread);
        return;
    }
    lx_buf_t *b = s->rbuf;
    if (!s->rbuf_direct)
        s->rbuf = NULL; /* the worker's chunk is only borrowed for this read */
    if (nread > 0) {
        const char *data = lx_buf_tail(b);
        b->len += (uint32_t)nread;
        lx_buf_ref(b); /* keep it alive across a callback that may close the stream */
        s->on_read(s, nread, b, data);
        lx_buf_unref(b);
    } else if (nread < 0) {
        s->on_read(s, nread, NULL, NULL);
    }
    /* a full direct buffer is done with: the next reads go to the worker's chunk */
    if (s->rbuf_direct && s->rbuf == b && b != NULL && lx_buf_avail(b) == 0) {
        s->rbuf = NULL;
        s->rbuf_direct = false;
        lx_buf_unref(b);
    }
}

int lx_stream_read_start(lx_stream_t *s, lx_stream_read_cb cb)
{
    s->on_read = cb;
    if (s->tls != NULL) {
        if (s->reading || s->closing)
            return 0;
        int rc = tcp_start(s);
        if (rc != 0)
            return rc;
        s->reading = true;
        /* plaintext the session already holds, or a failure the owner has not heard of yet,
         * come from the idle handle (a spurious turn costs one lx_tls_read) */
        if (!s->tls_handshaking)
            lx_stream_tls_queue_pending(s);
        return 0;
    }
    if (s->reading || s->closing)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc == 0)
        s->reading = true;
    return rc;
}

void lx_stream_read_stop(lx_stream_t *s)
{
    if (s->tls != NULL) {
        s->reading = false;
        if (!s->tls_handshaking)
            lx_stream_tcp_stop(s); /* backpressure reaches the peer through TCP */
        return;
    }
    if (!s->reading)
        return;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
}

void lx_stream_read_into(lx_stream_t *s, lx_buf_t *b)
{
    lx_buf_unref(s->rbuf_next);
    s->rbuf_next = lx_buf_ref(b);
}

size_t lx_stream_feed(lx_stream_t *s, const char *data, size_t len)
{
    LX_ASSERT(s->tls == NULL);
    if (data == NULL) {
        if (s->reading && !s->closing)
            s->on_read(s, UV_EOF, NULL, NULL);
        return 0;
    }
    size_t done = 0;
    while (done < len && s->reading && !s->closing) {
        uv_buf_t ub;
        on_alloc((uv_handle_t *)&s->tcp, len - done, &ub);
        if (ub.len == 0) {
            on_read((uv_stream_t *)&s->tcp, UV_ENOBUFS, &ub);
            break;
        }
        size_t n = LX_MIN((size_t)ub.len, len - done);
        memcpy(ub.base, data + done, n);
        on_read((uv_stream_t *)&s->tcp, (ssize_t)n, &ub);
        done += n;
    }
    return done;
}

static lx_write_t *write_get(lx_worker_t *w)
{
    lx_write_t *wr = w->free_writes;
    if (wr != NULL) {
        w->free_writes = wr->next_free;
        w->n_free_writes--;
        return wr;
    }
    return malloc(sizeof(*wr));
}

static void write_put(lx_worker_t *w, lx_write_t *wr)
{
    for (unsigned i = 0; i < wr->n; i++)
        lx_buf_unref(wr->refs[i]);
    if (w->n_free_writes >= 256) {
        free(wr);
        return;
    }
    wr->next_free = w->free_writes;
    w->free_writes = wr;
    w->n_free_writes++;
}

void lx_stream_free_writes(lx_worker_t *w)
{
    /* completions nobody will hear of any more (their streams were torn down with the loop) */
    while (w->done_head != NULL) {
        lx_write_t *wr = w->done_head;
        w->done_head = wr->next_free;
        for (unsigned i = 0; i < wr->n; i++)
            lx_buf_unref(wr->refs[i]);
        free(wr);
    }
    w->done_tail = NULL;
    while (w->free_writes != NULL) {
        lx_write_t *wr = w->free_writes;
        w->free_writes = wr->next_free;
        free(wr);
    }
    w->n_free_writes = 0;
}

static void defer_done(lx_stream_t *s, lx_write_t *wr, int status);

static void on_write(uv_write_t *req, int status)
{
    lx_write_t *wr = lx_container_of(req, lx_write_t, req);
    lx_stream_t *s = wr->stream;
    lx_stream_write_cb cb = wr->cb;
    void *arg = wr->arg;
    s->queued -= wr->bytes;
    if (s->n_deferred > 0) {
        /* earlier writes of this stream still wait in the completed list: callbacks keep
         * the order of the writes, so this one waits behind them */
        s->writes_pending--; /* counted again by defer_done */
        for (unsigned i = 0; i < wr->n; i++)
            lx_buf_unref(wr->refs[i]);
        wr->n = 0;
        defer_done(s, wr, status);
        return;
    }
    s->writes_pending--;
    write_put(s->worker, wr);
    if (cb != NULL)
        cb(s, status, arg);
}

/* Pending bytes up to this size are copied out of their chunks when a write must wait. */
#define COPY_MAX (64 * 1024)

static void finish_close(lx_stream_t *s);

static void run_done(lx_write_t *wr)
{
    lx_stream_t *s = wr->stream;
    lx_stream_write_cb cb = wr->cb;
    void *arg = wr->arg;
    int status = wr->status;
    s->writes_pending--;
    s->n_deferred--;
    write_put(s->worker, wr);
    if (cb != NULL)
        cb(s, status, arg);
    if (s->n_deferred == 0 && s->close_done)
        finish_close(s); /* the handle closed while completions waited: now the owner hears */
}

static void on_done_idle(uv_idle_t *h)
{
    lx_worker_t *w = h->data;
    /* callbacks may write again: only the entries queued before this turn run now */
    lx_write_t *last = w->done_tail;
    while (w->done_head != NULL) {
        lx_write_t *wr = w->done_head;
        w->done_head = wr->next_free;
        if (w->done_head == NULL)
            w->done_tail = NULL;
        run_done(wr);
        if (wr == last)
            break;
    }
    lx_stream_tls_run_pending(w);
    if (w->done_head == NULL && lx_list_is_empty(&w->tls_pending))
        uv_idle_stop(h);
}

void lx_stream_idle_start(lx_worker_t *w)
{
    if (!uv_is_active((uv_handle_t *)&w->done_idle))
        uv_idle_start(&w->done_idle, on_done_idle);
}

void lx_stream_run_deferred(lx_worker_t *w)
{
    while (w->done_head != NULL) {
        lx_write_t *wr = w->done_head;
        w->done_head = wr->next_free;
        if (w->done_head == NULL)
            w->done_tail = NULL;
        run_done(wr);
    }
}

/* Reports a write that completed in the call on the next loop turn. */
static void defer_done(lx_stream_t *s, lx_write_t *wr, int status)
{
    lx_worker_t *w = s->worker;
    wr->status = status;
    wr->next_free = NULL;
    if (w->done_tail != NULL)
        w->done_tail->next_free = wr;
    else
        w->done_head = wr;
    w->done_tail = wr;
    s->writes_pending++;
    s->n_deferred++;
    if (!uv_is_active((uv_handle_t *)&w->done_idle))
        uv_idle_start(&w->done_idle, on_done_idle);
}

/* Drops the first <k> bytes of wr's buffers (written synchronously), releasing the chunks
 * that are done with. */
static void skip_written(lx_write_t *wr, size_t k)
{
    unsigned i = 0;
    while (i < wr->n && k >= wr->bufs[i].len) {
        k -= wr->bufs[i].len;
        lx_buf_unref(wr->refs[i]);
        i++;
    }
    if (i < wr->n && k > 0) {
        wr->bufs[i].base += k;
        wr->bufs[i].len -= k;
    }
    memmove(wr->bufs, wr->bufs + i, (wr->n - i) * sizeof(uv_buf_t));
    memmove(wr->refs, wr->refs + i, (wr->n - i) * sizeof(lx_buf_t *));
    wr->n -= i;
}

/* Replaces wr's remaining buffers by one copy of their bytes (exact size). */
static void compact_pending(lx_write_t *wr, size_t bytes)
{
    lx_buf_t *b = lx_buf_new(bytes);
    if (b == NULL)
        return; /* keep the references: correct, only bigger */
    for (unsigned i = 0; i < wr->n; i++) {
        memcpy(b->data + b->len, wr->bufs[i].base, wr->bufs[i].len);
        b->len += (uint32_t)wr->bufs[i].len;
        lx_buf_unref(wr->refs[i]);
    }
    wr->bufs[0] = uv_buf_init(b->data, b->len);
    wr->refs[0] = b;
    wr->n = 1;
}

/* Writes one batch (at most LX_WRITE_MAX_IOV slices) described by <wr>. */
static int write_batch(lx_stream_t *s, lx_write_t *wr)
{
    if (s->writes_pending == 0) {
        /* nothing queued before it: try the kernel now */
        int r = uv_try_write((uv_stream_t *)&s->tcp, wr->bufs, wr->n);
        if (r < 0 && r != UV_EAGAIN) {
            write_put(s->worker, wr);
            return r;
        }
        if (r > 0)
            skip_written(wr, (size_t)r);
        if (wr->n == 0) {
            defer_done(s, wr, 0);
            return 0;
        }
        wr->bytes -= r > 0 ? (size_t)r : 0;
    }
    if (wr->bytes <= COPY_MAX)
        compact_pending(wr, wr->bytes);
    int rc = uv_write(&wr->req, (uv_stream_t *)&s->tcp, wr->bufs, wr->n, on_write);
    if (rc != 0) {
        write_put(s->worker, wr);
        return rc;
    }
    s->queued += wr->bytes;
    s->writes_pending++;
    return 0;
}

/* A write of many small pieces (a response head, chunk framing, a few slices of an answer) is
 * gathered into one buffer first: copying a few hundred bytes costs less than the kernel's
 * per-segment work for each iovec. */
#define GATHER_MAX 2048

static void gather(lx_stream_t *s, lx_slice_t *slices, size_t *n)
{
    size_t total = 0;
    for (size_t i = 0; i < *n; i++)
        total += slices[i].len;
    if (total > GATHER_MAX || total == 0)
        return;
    lx_buf_t *b = lx_buf_pool_get(&s->worker->bufs);
    if (b == NULL)
        return; /* the pieces go as they are */
    for (size_t i = 0; i < *n; i++) {
        memcpy(b->data + b->len, slices[i].buf->data + slices[i].off, slices[i].len);
        b->len += slices[i].len;
        lx_buf_unref(slices[i].buf);
    }
    slices[0] = (lx_slice_t){b, 0, b->len};
    *n = 1;
}

int lx_stream_write_plain(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb,
                          void *arg)
{
    size_t i = 0;
    int rc = 0;
    if (s->closing)
        rc = UV_ECANCELED;
    else if (n >= 3)
        gather(s, slices, &n);
    while (rc == 0 && i < n) {
        lx_write_t *wr = write_get(s->worker);
        if (wr == NULL) {
            rc = LX_ENOMEM;
            break;
        }
        wr->stream = s;
        wr->n = 0;
        wr->bytes = 0;
        while (i < n && wr->n < LX_WRITE_MAX_IOV) {
            lx_slice_t *sl = &slices[i++];
            if (sl->len == 0) {
                lx_buf_unref(sl->buf);
                continue;
            }
            wr->bufs[wr->n] = uv_buf_init(sl->buf->data + sl->off, sl->len);
            wr->refs[wr->n] = sl->buf;
            wr->bytes += sl->len;
            wr->n++;
        }
        /* only the request carrying the last slice reports back */
        wr->cb = i == n ? cb : NULL;
        wr->arg = arg;
        if (wr->n == 0) {
            /* nothing but empty slices left: libuv takes no empty write */
            write_put(s->worker, wr);
            rc = cb != NULL ? UV_EINVAL : 0;
            break;
        }
        rc = write_batch(s, wr);
    }
    for (; i < n; i++)
        lx_buf_unref(slices[i].buf);
    return rc;
}

int lx_stream_write(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb, void *arg)
{
    if (s->tls != NULL)
        return lx_stream_tls_write(s, slices, n, cb, arg);
    return lx_stream_write_plain(s, slices, n, cb, arg);
}

int lx_stream_write_copy(lx_stream_t *s, const char *data, size_t len, lx_stream_write_cb cb,
                         void *arg)
{
    lx_slice_t sl[LX_WRITE_MAX_IOV];
    size_t n = 0;
    while (len > 0 || n == 0) {
        if (n == LX_WRITE_MAX_IOV) {
            int rc = lx_stream_write(s, sl, n, NULL, NULL);
            n = 0;
            if (rc != 0)
                return rc;
        }
        lx_buf_t *b = lx_buf_pool_get(&s->worker->bufs);
        if (b == NULL) {
            for (size_t i = 0; i < n; i++)
                lx_buf_unref(sl[i].buf);
            return LX_ENOMEM;
        }
        size_t k = LX_MIN(len, (size_t)b->cap);
        memcpy(b->data, data, k);
        b->len = (uint32_t)k;
        sl[n].buf = b; /* the pool's reference moves into the slice */
        sl[n].off = 0;
        sl[n].len = (uint32_t)k;
        n++;
        data += k;
        len -= k;
    }
    return lx_stream_write(s, sl, n, cb, arg);
}

static void finish_close(lx_stream_t *s)
{
    s->close_done = false;
    if (s->on_close != NULL)
        s->on_close(s);
}

static void on_tcp_close(uv_handle_t *h)
{
    lx_stream_t *s = h->data;
    lx_tls_free(s->tls);
    s->tls = NULL;
    if (s->rbuf_direct)
        lx_buf_unref(s->rbuf);
    lx_buf_unref(s->rbuf_next);
    s->rbuf = s->rbuf_next = NULL;
    s->rbuf_direct = false;
    if (s->n_deferred > 0) {
        /* completions of this stream still wait in the worker's list: the owner must not
         * free the stream before they ran, so its close callback comes after them */
        s->close_done = true;
        return;
    }
    if (s->on_close != NULL)
        s->on_close(s);
}

static void stream_end(lx_stream_t *s, bool reset, lx_stream_close_cb cb)
{
    if (s->closing)
        return;
    if (s->tls != NULL) {
        lx_list_remove(&s->tls_link);
        if (!reset && !s->tls_handshaking) {
            /* a clean end for the peer, sent now if the socket takes it */
            lx_tls_close_notify(s->tls);
            lx_stream_tls_flush(s);
        }
    }
    s->closing = true;
    s->reading = false;
    s->tcp_reading = false;
    s->on_close = cb;
    if (reset && uv_tcp_close_reset(&s->tcp, on_tcp_close) == 0)
        return;
    uv_close((uv_handle_t *)&s->tcp, on_tcp_close);
}

void lx_stream_close(lx_stream_t *s, lx_stream_close_cb cb)
{
    stream_end(s, false, cb);
}

void lx_stream_reset(lx_stream_t *s, lx_stream_close_cb cb)
{
    stream_end(s, true, cb);
}
