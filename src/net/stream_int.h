/*
 * stream_int.h - what the two halves of a stream share: stream.c (sockets, reads, the plain
 * write path, completions) and stream_tls.c (the TLS session between the socket and the
 * owner). Not for other files.
 */
#ifndef LX_STREAM_INT_H
#define LX_STREAM_INT_H

#include "net/stream.h"
#include "net/worker.h"

/* stream.c: */

/* Stops reading the socket (idempotent). */
void lx_stream_tcp_stop(lx_stream_t *s);

/* The chunk in *<slot> when it still has room (rewound when nobody else holds any of its
 * bytes), else a fresh pool chunk put in the slot. NULL when out of memory. */
lx_buf_t *lx_stream_shared_chunk(lx_worker_t *w, lx_buf_t **slot);

/* Writes <n> slices to the socket as they are (lx_stream_write's contract). */
int lx_stream_write_plain(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb,
                          void *arg);

/* Starts the worker's idle handle, which runs deferred completions and pending TLS reads. */
void lx_stream_idle_start(lx_worker_t *w);

/* stream_tls.c: */

/* Writes the ciphertext the session has queued (handshake flights, alerts, records). */
void lx_stream_tls_flush(lx_stream_t *s);

/* Encrypts the owner's slices (taking their references) and writes the records. */
int lx_stream_tls_write(lx_stream_t *s, lx_slice_t *slices, size_t n, lx_stream_write_cb cb,
                        void *arg);

/* New input: the handshake while it runs, then the owner's plaintext. */
void lx_stream_tls_process(lx_stream_t *s);

/* The socket read <nread> bytes (or failed) into s->cbuf: fed to the session. */
void lx_stream_tls_on_read(lx_stream_t *s, ssize_t nread);

/* Queues <s> to have what its session holds delivered from the idle handle. */
void lx_stream_tls_queue_pending(lx_stream_t *s);

/* Delivers to the streams queued before this turn (the idle handle). */
void lx_stream_tls_run_pending(lx_worker_t *w);

#endif
