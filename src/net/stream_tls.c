/*
 * stream_tls.c - the TLS half of a stream: the handshake, decrypting what the socket read for
 * the owner, encrypting the owner's writes onto the plain write path (stream.c), and
 * plaintext still held by a session delivered from the worker's idle handle. The picture is
 * at the top of stream.c.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "net/stream_int.h"

/* Writes the ciphertext the session has queued (handshake flights, alerts, records). A failure
 * shows up as a read error too, so it is not reported here. */
void lx_stream_tls_flush(lx_stream_t *s)
{
    lx_slice_t sl[LX_TLS_OUT_MAX];
    size_t n = lx_tls_out(s->tls, sl, LX_TLS_OUT_MAX);
    if (n > 0)
        lx_stream_write_plain(s, sl, n, NULL, NULL);
}

int lx_stream_tls_write(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb,
                        void *arg)
{
    size_t i = 0;
    int rc = 0;
    if (s->closing)
        rc = UV_ECANCELED;
    else if (s->tls_handshaking)
        rc = UV_ENOTCONN;
    for (; rc == 0 && i < n; i++) {
        const char *p = lx_slice_ptr(&slices[i]);
        size_t len = slices[i].len, off = 0;
        while (rc == 0 && off < len) {
            int k = lx_tls_write(s->tls, p + off, len - off);
            if (k < 0)
                rc = k;
            else
                off += (size_t)k;
            if (off < len)
                lx_stream_tls_flush(s); /* the session's output queue is full: send it, go on */
        }
        lx_buf_unref(slices[i].buf); /* encrypted: the plaintext is not needed any more */
    }
    for (; i < n; i++)
        lx_buf_unref(slices[i].buf);
    if (rc != 0)
        return rc;
    lx_slice_t out[LX_TLS_OUT_MAX];
    size_t k = lx_tls_out(s->tls, out, LX_TLS_OUT_MAX);
    if (k == 0)
        return cb != NULL ? UV_EINVAL : 0; /* no byte: as a plain stream would say */
    return lx_stream_write_plain(s, out, k, cb, arg);
}

/* The handshake failed with <code>: the owner hears it as its connect result (client) or as a
 * read error (server). */
static void tls_fail(lx_stream_t *s, int code)
{
    lx_stream_tls_flush(s); /* the alert telling the peer why */
    s->tls_handshaking = false;
    lx_stream_tcp_stop(s);
    if (s->tls_connecting) {
        s->tls_connecting = false;
        s->on_connect(s, code);
    } else if (s->reading && s->on_read != NULL) {
        s->on_read(s, code, NULL, NULL);
    }
}

/* Hands the owner the plaintext the session can decrypt now, while it reads. */
static void tls_deliver(lx_stream_t *s)
{
    lx_worker_t *w = s->worker;
    while (s->reading && !s->closing) {
        if (s->rbuf_next != NULL) {
            if (s->rbuf_direct)
                lx_buf_unref(s->rbuf);
            s->rbuf = s->rbuf_next;
            s->rbuf_next = NULL;
            s->rbuf_direct = true;
        }
        lx_buf_t *b;
        if (s->rbuf_direct && lx_buf_avail(s->rbuf) > 0) {
            b = s->rbuf;
        } else {
            if (s->rbuf_direct) {
                lx_buf_unref(s->rbuf);
                s->rbuf = NULL;
                s->rbuf_direct = false;
            }
            b = lx_stream_shared_chunk(w, &w->tls_plain);
        }
        int n = b != NULL ? lx_tls_read(s->tls, lx_buf_tail(b), lx_buf_avail(b)) : LX_ENOMEM;
        if (n == 0)
            break;
        if (n < 0) {
            lx_stream_tls_flush(s);
            s->reading = false;
            lx_stream_tcp_stop(s);
            s->on_read(s, n == LX_ECLOSED ? UV_EOF : n, NULL, NULL);
            return;
        }
        const char *data = lx_buf_tail(b);
        b->len += (uint32_t)n;
        lx_buf_ref(b); /* alive across a callback that may close the stream */
        s->on_read(s, n, b, data);
        if (s->rbuf_direct && s->rbuf == b && lx_buf_avail(b) == 0) {
            s->rbuf = NULL;
            s->rbuf_direct = false;
            lx_buf_unref(b);
        }
        lx_buf_unref(b);
    }
    if (!s->closing) {
        lx_stream_tls_flush(s);
        if (!s->reading)
            lx_stream_tcp_stop(s); /* paused: what the session still holds waits for read_start */
    }
}

/* New input: the handshake while it runs, then the owner's plaintext. */
void lx_stream_tls_process(lx_stream_t *s)
{
    if (s->tls_handshaking) {
        int rc = lx_tls_handshake(s->tls);
        if (rc == 1) {
            lx_stream_tls_flush(s);
            return;
        }
        if (rc < 0) {
            tls_fail(s, rc);
            return;
        }
        lx_stream_tls_flush(s);
        s->tls_handshaking = false;
        if (s->tls_connecting) {
            s->tls_connecting = false;
            if (!s->reading)
                lx_stream_tcp_stop(s);
            s->on_connect(s, 0);
            if (s->closing)
                return;
        }
    }
    if (s->reading)
        tls_deliver(s);
    else
        lx_stream_tcp_stop(s);
}

void lx_stream_tls_on_read(lx_stream_t *s, ssize_t nread)
{
    lx_buf_t *b = s->cbuf;
    s->cbuf = NULL; /* the worker's chunk is only borrowed for this read */
    if (nread == 0)
        return;
    if (nread > 0) {
        const char *data = lx_buf_tail(b);
        b->len += (uint32_t)nread;
        int rc = lx_tls_feed(s->tls, b, data, (size_t)nread);
        if (rc != 0)
            nread = rc;
    }
    if (nread < 0) {
        int code = nread == UV_EOF ? LX_ECLOSED : (int)nread;
        if (s->tls_handshaking) {
            tls_fail(s, code);
            return;
        }
        lx_stream_tcp_stop(s);
        if (s->reading) {
            s->reading = false;
            s->on_read(s, nread, NULL, NULL);
        }
        return;
    }
    lx_stream_tls_process(s);
}

void lx_stream_tls_queue_pending(lx_stream_t *s)
{
    lx_worker_t *w = s->worker;
    lx_list_remove(&s->tls_link);
    lx_list_insert_tail(&w->tls_pending, &s->tls_link);
    lx_stream_idle_start(w);
}

void lx_stream_tls_run_pending(lx_worker_t *w)
{
    if (w->tls_pending.next == NULL || lx_list_is_empty(&w->tls_pending))
        return;
    /* only the streams queued before this turn: a callback may queue its stream again */
    lx_list_t now;
    now.next = w->tls_pending.next;
    now.prev = w->tls_pending.prev;
    now.next->prev = &now;
    now.prev->next = &now;
    lx_list_init(&w->tls_pending);
    while (!lx_list_is_empty(&now)) {
        lx_stream_t *s = lx_list_entry(now.next, lx_stream_t, tls_link);
        lx_list_remove(&s->tls_link);
        if (s->reading && !s->closing && s->tls != NULL)
            tls_deliver(s);
    }
}
