/*
 * tls.h - one TLS session as a converter between ciphertext and plaintext chunks.
 *
 * A session never touches a socket: the caller hands in the ciphertext it read
 * (lx_tls_feed, slices of its read chunks), drives the handshake (lx_tls_handshake), takes
 * plaintext out (lx_tls_read, decrypted straight into the caller's buffer) and puts plaintext
 * in (lx_tls_write, encrypted into ciphertext chunks); the ciphertext to send waits in the
 * session's output queue until lx_tls_out() moves it out as slices. The record layer of
 * mbedTLS 2.28 is driven through mbedtls_ssl_set_bio() callbacks reading the input queue and
 * appending to output chunks, so the session works the same in memory (tests, fuzzing) and
 * on a socket (net/stream.c).
 *
 * mbedTLS error codes end here: every function returns 0, a count, or a code of
 * core/status.h (LX_ETLSCA, LX_ETLSEXPIRED, LX_ETLSHOST, LX_ETLSCERT, LX_ETLSPROTO, LX_ETLS,
 * LX_ECLOSED, LX_ENOMEM).
 *
 * A session is used by one thread at a time; the contexts it is made from (tls_server.h,
 * tls_client.h) are shared read-only by every thread and stay alive while a session uses them.
 */
#ifndef LX_TLS_H
#define LX_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "tls/tls_client.h"
#include "tls/tls_server.h"

typedef struct lx_tls lx_tls_t;

/* Most slices lx_tls_out() may hand out at once (a full queue makes lx_tls_write stop early). */
#define LX_TLS_OUT_MAX 16

/* A server session of <srv> (which it references until lx_tls_free). Ciphertext chunks come
 * from <pool> and are appended in the shared chunk *<spare> (a per-thread slot, so an idle
 * session holds no chunk); both may be NULL (then the session allocates its own). Returns 0 and
 * the session in *out, or LX_ENOMEM / LX_ETLS. */
int lx_tls_new_server(lx_tls_server_t *srv, lx_buf_pool_t *pool, lx_buf_t **spare, lx_tls_t **out);

/* A client session of <cli> for <server_name> (SNI and the name the certificate must carry;
 * NULL for none). <session_key> (e.g. "host:port"; NULL: no resumption) names the endpoint in
 * the context's session cache: a cached session is offered for resumption, and the session of
 * a completed handshake is stored. Pool and spare as above. */
int lx_tls_new_client(lx_tls_client_t *cli, const char *server_name, const char *session_key,
                      lx_buf_pool_t *pool, lx_buf_t **spare, lx_tls_t **out);

/* Frees the session, its queued input and output and its reference on the context. NULL is a
 * no-op. */
void lx_tls_free(lx_tls_t *t);

/* Queues <len> ciphertext bytes at <data> inside <b> (the session takes its own reference).
 * 0, or LX_ENOMEM when the input queue is full (the caller feeds faster than it reads). */
int lx_tls_feed(lx_tls_t *t, lx_buf_t *b, const char *data, size_t len);

/* Advances the handshake with the input queued so far. 0: done (also on later calls); 1: it
 * needs more input (send what lx_tls_out() holds first); or a negative code, sticky. */
int lx_tls_handshake(lx_tls_t *t);

/* Decrypts up to <cap> plaintext bytes into <dst> (the only copy of the bytes on the way in).
 * Returns the count, 0 when the queued input holds no complete record, LX_ECLOSED after the
 * peer's close_notify, or a negative code. Call it until it returns 0: a read may hold several
 * records. Only after the handshake. */
int lx_tls_read(lx_tls_t *t, char *dst, size_t cap);

/* Encrypts up to <len> plaintext bytes into the output queue (the only copy on the way out).
 * Returns the count taken: less than <len> when the output queue is nearly full (take it with
 * lx_tls_out and call again), or a negative code. Only after the handshake. */
int lx_tls_write(lx_tls_t *t, const char *data, size_t len);

/* Queues a close_notify alert (after the handshake; otherwise nothing). */
void lx_tls_close_notify(lx_tls_t *t);

/* Moves up to <max> slices of queued ciphertext, in order, into <dst> (each holds a reference,
 * now the caller's). Returns the count. */
size_t lx_tls_out(lx_tls_t *t, lx_slice_t *dst, size_t max);

/* Bytes of ciphertext waiting in the output queue. */
size_t lx_tls_out_bytes(const lx_tls_t *t);

/* True when lx_tls_read() may have something without new input (queued ciphertext, or a
 * decrypted record not fully read). */
bool lx_tls_pending(lx_tls_t *t);

/* The handshake is complete. */
bool lx_tls_ready(const lx_tls_t *t);

/* The completed handshake resumed an earlier session (abbreviated: no certificate sent). */
bool lx_tls_resumed(const lx_tls_t *t);

/* The protocol chosen by ALPN, or NULL. */
const char *lx_tls_alpn(const lx_tls_t *t);

/* The mbedTLS code behind the last failure (0 if none), for logs and tests. */
int lx_tls_last_error(const lx_tls_t *t);

/* The random generator behind every context: a CTR-DRBG per thread, seeded from getrandom(),
 * so workers never share (or lock) one. Matches mbedTLS's f_rng signature; <ctx> is unused. */
int lx_tls_rng(void *ctx, unsigned char *out, size_t len);

#endif
