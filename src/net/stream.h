/*
 * stream.h - a TCP connection that reads into pooled chunks and writes borrowed slices.
 *
 * Reads: each read lands in the tail of the worker's current read chunk, shared by all its
 * streams (one read at a time on one thread); the read callback sees the new bytes and takes
 * its own references on the chunk for anything it keeps. A stream holds no chunk between
 * reads, so an idle connection costs no buffer; a chunk whose bytes nobody holds any more is
 * rewound and reused in place. A buffer given with lx_stream_read_into() (a large body) is
 * read into directly instead, until it is full.
 *
 * Writes: lx_stream_write() takes over one reference per slice. It first writes synchronously
 * (one writev); what the kernel took is done and its references go back at once. What it
 * could not take yet is copied into a buffer of its exact size when small (so a slow reader
 * pins the bytes it has not read, never a shared 16 KiB chunk), or kept by reference when
 * large, and queued. The callback always runs later, from the loop, never from inside the
 * call; on close it runs too (UV_ECANCELED for what was still queued), so references always
 * come back.
 *
 * TLS: a stream may carry a TLS session (lx_stream_set_tls_client before connecting; a
 * listener with a TLS context makes the streams it accepts server sessions). The owner cannot
 * tell: reads deliver plaintext, in chunks, under the same rules (a shared plaintext chunk of
 * the worker, or the lx_stream_read_into buffer, decrypted straight into); writes take
 * plaintext slices, encrypt them into ciphertext chunks (their references come back at once)
 * and write those, with the same callback, cancellation and `queued` accounting. The handshake
 * comes first: a client's connect callback reports success only once it is complete (or its
 * failure, with a code of core/status.h: LX_ETLSCA, LX_ETLSHOST...); a server's owner simply
 * sees no byte before it, and a failure as a read error. Closing sends close_notify.
 *
 * Lifetime: the embedding object stays alive until the close callback has run.
 */
#ifndef LX_STREAM_H
#define LX_STREAM_H

#include <stdbool.h>
#include <uv.h>

#include "core/buf.h"
#include "core/list.h"
#include "net/worker.h"
#include "tls/tls.h"

#define LX_WRITE_MAX_IOV 32

typedef struct lx_stream lx_stream_t;

/* nread > 0: <data> holds nread new bytes inside <buf> (the callee refs <buf> to keep them).
 * nread < 0: UV_EOF or an error; <buf> and <data> are NULL. */
typedef void (*lx_stream_read_cb)(lx_stream_t *s, ssize_t nread, lx_buf_t *buf, const char *data);
typedef void (*lx_stream_write_cb)(lx_stream_t *s, int status, void *arg);
typedef void (*lx_stream_connect_cb)(lx_stream_t *s, int status);
typedef void (*lx_stream_close_cb)(lx_stream_t *s);

struct lx_stream {
    uv_tcp_t tcp;
    lx_worker_t *worker;
    lx_buf_t *rbuf;      /* the buffer of the read in progress (borrowed, between alloc and
                          * read callbacks), or the owner's direct buffer (a reference) */
    lx_buf_t *rbuf_next; /* a buffer the owner wants the next reads to land in */
    bool rbuf_direct;    /* rbuf is the owner's buffer, not the worker's chunk */
    lx_stream_read_cb on_read;
    lx_stream_connect_cb on_connect;
    lx_stream_close_cb on_close;
    uv_connect_t connect_req;
    void *data;              /* the owner */
    size_t queued;           /* bytes handed to the kernel queue and not yet completed */
    unsigned writes_pending; /* writes whose callbacks have not run yet */
    unsigned n_deferred;     /* ... of which waiting in the worker's completed list */
    bool closing;
    bool close_done; /* the handle is closed; the close callback waits for completions */
    bool reading;    /* the owner reads (with TLS, libuv may read for the handshake too) */
    /* TLS, all unused (NULL/false) on a plain stream: */
    lx_tls_t *tls;        /* the session every byte goes through; freed at close */
    lx_buf_t *cbuf;       /* the chunk of the ciphertext read in progress (borrowed) */
    lx_list_t tls_link;   /* in the worker's tls_pending list */
    bool tls_handshaking; /* no byte is the owner's yet */
    bool tls_connecting;  /* client: the connect callback waits for the handshake */
    bool tcp_reading;     /* libuv is reading */
};

typedef struct lx_write {
    uv_write_t req;
    struct lx_write *next_free; /* free list, or the worker's completed list */
    lx_stream_t *stream;
    lx_stream_write_cb cb;
    void *arg;
    size_t bytes;
    unsigned n;
    int status; /* for a write completed in the call */
    uv_buf_t bufs[LX_WRITE_MAX_IOV];
    lx_buf_t *refs[LX_WRITE_MAX_IOV];
} lx_write_t;

/* Runs every write completion of <w> still waiting for the loop's next turn, and the close
 * callbacks of streams that waited for them. For a worker whose loop has stopped: a stream
 * closed in the last turn (a TLS close_notify written on the way) is freed by its owner
 * instead of leaking (lx_worker_dispose calls it). */
void lx_stream_run_deferred(lx_worker_t *w);

/* Initialises <s> on <w>'s loop. 0 or a libuv code (then nothing needs closing). */
int lx_stream_init(lx_worker_t *w, lx_stream_t *s);

/* Accepts a pending connection of <server> into <s> (initialised) and sets TCP_NODELAY. */
int lx_stream_accept(uv_stream_t *server, lx_stream_t *s);

/* Connects <s> (initialised) to <addr>; <cb> runs with 0 or a libuv code. */
int lx_stream_connect(lx_stream_t *s, const struct sockaddr *addr, lx_stream_connect_cb cb);

int lx_stream_read_start(lx_stream_t *s, lx_stream_read_cb cb);
void lx_stream_read_stop(lx_stream_t *s);

/* Makes the following reads land in <b> (the stream takes a reference) until it is full. */
void lx_stream_read_into(lx_stream_t *s, lx_buf_t *b);

/* Tests and fuzzing: delivers <len> bytes from memory to the owner as if the socket had read
 * them, through the same path (the worker's chunk or the lx_stream_read_into buffer, then the
 * read callback), in as many reads as the buffers' room asks, while the owner reads. Returns the
 * bytes delivered: fewer when the owner stopped reading or closed. <data> NULL delivers an EOF
 * (UV_EOF to the read callback) instead. Plain streams only. */
size_t lx_stream_feed(lx_stream_t *s, const char *data, size_t len);

/* Writes <n> slices in order (together at least one byte when <cb> is given). Takes over the
 * reference each slice holds, on success and on failure. <cb> (may be NULL) runs once, after the
 * last byte is written or the write failed or was cancelled by close. Returns 0 or a libuv code
 * (then <cb> does not run). */
int lx_stream_write(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb, void *arg);

/* Copies <len> bytes into fresh chunks and writes them. Same contract as lx_stream_write. */
int lx_stream_write_copy(lx_stream_t *s, const char *data, size_t len, lx_stream_write_cb cb,
                         void *arg);

/* Closes <s>: a TLS stream sends its close_notify, pending writes complete with UV_ECANCELED,
 * the peer gets a FIN, then <cb> runs. Idempotent (with lx_stream_reset too). */
void lx_stream_close(lx_stream_t *s, lx_stream_close_cb cb);

/* Like lx_stream_close, but abortive: no close_notify, the peer gets an RST instead of a FIN
 * (a response that was cut must not look finished). */
void lx_stream_reset(lx_stream_t *s, lx_stream_close_cb cb);

/* Makes <s> (initialised, not yet connected) a TLS client of <ctx> for <server_name> (SNI and
 * verified name), resuming the session cached under <session_key> (NULL: none). 0, or LX_ENOMEM
 * or LX_ETLS (then <s> stays plain; close it as usual). */
int lx_stream_set_tls_client(lx_stream_t *s, lx_tls_client_t *ctx, const char *server_name,
                             const char *session_key);

/* True while <s> is a TLS stream whose handshake is not complete. */
static inline bool lx_stream_handshaking(const lx_stream_t *s)
{
    return s->tls != NULL && s->tls_handshaking;
}

/* Frees the worker's recycled write requests (at worker teardown). */
void lx_stream_free_writes(lx_worker_t *w);

#endif
