/*
 * http_server.h - the downstream side: HTTP/1.1 connections from clients.
 *
 * One lx_http_server_t per worker. Each accepted connection parses requests with llhttp into
 * an lx_http_request_t whose header views point into the read chunks and whose body is one
 * contiguous slice (a large Content-Length body is read straight into a buffer of its size).
 * When a request is complete the handler owns it until it calls lx_http_server_finish() or
 * lx_http_server_abort() -- exactly once, even after on_abort told it the client left.
 * Requests on one connection are answered in order (pipelining); limits and timeouts answer
 * 400/408/413/431/503 themselves, in the envelope the application formats. on_done runs exactly
 * once for every request whose head was complete or that the server refused, whatever ends it
 * (answered, refused, the client leaving at any point, the connection closed).
 */
#ifndef LX_HTTP_SERVER_H
#define LX_HTTP_SERVER_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "http/http_head.h"
#include "net/stream.h"

typedef struct lx_http_server lx_http_server_t;
typedef struct lx_http_conn lx_http_conn_t;
typedef struct lx_http_request lx_http_request_t;

typedef struct lx_http_server_limits {
    uint64_t max_header_size;
    uint64_t max_body_size;
    uint64_t header_timeout_ms;    /* whole head, from its first byte */
    uint64_t body_timeout_ms;      /* whole body, from the end of the head */
    uint64_t keepalive_timeout_ms; /* idle between requests */
    /* Request bodies buffered at once by every server of the process (one atomic count: see
     * src/http/README.md); a body that would pass it is answered 503 with Retry-After before
     * it is buffered. 0: no cap. */
    uint64_t max_body_memory;
} lx_http_server_limits_t;

#define LX_HTTP_ID_MAX 64

struct lx_http_request {
    lx_http_conn_t *conn;
    lx_worker_t *worker;
    lx_http_head_t head; /* headers and the request target */
    int method;          /* llhttp_method_t */
    lx_str_t path;       /* target up to '?' */
    uint8_t http_major, http_minor;
    bool keep_alive;
    lx_str_t body;        /* the whole body, contiguous; valid until the request ends */
    lx_buf_t *body_owner; /* the chunk the body lies in (held by the request, not extra) */
    uint64_t bytes_in;    /* head and body bytes as received */
    uint64_t bytes_out;   /* response bytes handed to the socket */
    uint64_t start_ms;    /* loop time when the first byte arrived */
    int status;           /* response status once the head is sent */
    char id[LX_HTTP_ID_MAX + 1];
    uint8_t id_len;
    bool head_sent;
    bool chunked;         /* response body framed with chunked encoding */
    bool finished;        /* the handler ended the response */
    bool last_chunk_sent; /* the terminating chunk went out with the last body bytes */
    bool peer_gone;       /* the client closed or reset while the request was out */
    bool want_drain;
    /* Set by the handler: */
    void (*on_abort)(lx_http_request_t *req); /* the client left: cancel, then finish */
    void (*on_drain)(lx_http_request_t *req); /* queued bytes fell under the low-water mark */
    void *data;
    /* The application's bytes, kept from the head callback to the handler (llmux: who the
     * caller is); the server never reads them. */
    _Alignas(8) unsigned char app[40];
};

typedef void (*lx_http_request_cb)(lx_http_request_t *req);
/* Formats an error body for <status> into <buf>; returns its length. <req> is the request
 * being answered: its path may be empty (a request line that did not parse). */
typedef size_t (*lx_http_error_fmt)(const lx_http_request_t *req, char *buf, size_t cap, int status,
                                    const char *message);
/* Called when a request's head is complete, before any body byte is read or 100 Continue is
 * sent. Returns 0 to go on, or an HTTP status (401, 404, 405, 503...) to refuse the request:
 * the server answers it in the application's envelope with *message and the extra header
 * lines *headers (may stay NULL), then closes the connection without reading the body. */
typedef int (*lx_http_head_cb)(lx_http_request_t *req, const char **message, const char **headers);

struct lx_http_server {
    lx_worker_t *worker;
    lx_http_server_limits_t limits;
    lx_http_head_cb on_head;       /* optional: admit or refuse a request on its head alone */
    lx_http_request_cb on_request; /* a complete request for the handler */
    lx_http_request_cb on_done;    /* every request's end (access log), handler or not; a
                                    * request the client left before any answer has 499 */
    lx_http_error_fmt format_error;
    void (*on_idle)(lx_http_server_t *srv); /* draining and the last connection closed */
    void *data;
    lx_list_t conns;
    size_t n_conns;
    size_t n_active; /* requests owned by the handler */
    bool draining;
    uint64_t id_state; /* request-id generator (xorshift64*) */
    lx_buf_t *frame;   /* chunked-encoding framing of every connection, appended */
};

/* Prepares <srv> on <w>; the caller fills the callbacks. */
void lx_http_server_init(lx_http_server_t *srv, lx_worker_t *w,
                         const lx_http_server_limits_t *limits);

/* Accepts one pending connection of <listener>. 0 or a libuv code. */
int lx_http_server_accept(lx_http_server_t *srv, uv_stream_t *listener);

/* Tests and fuzzing: lx_http_server_accept, giving the new connection in *out. */
int lx_http_server_accept_conn(lx_http_server_t *srv, uv_stream_t *listener, lx_http_conn_t **out);

/* Tests and fuzzing: gives <len> bytes to <c> as if its socket had read them (the same buffers,
 * the same read path, in reads no larger than the buffers' room). Returns the bytes taken:
 * fewer when the connection stopped reading (its input queue is full: run the loop and feed
 * the rest) or closed. <data> NULL is an EOF from the client. <c> lives until its close
 * completes on the loop. */
size_t lx_http_server_feed(lx_http_conn_t *c, const void *data, size_t len);

/* Bytes of request bodies buffered now by every server of the process (max_body_memory). */
uint64_t lx_http_body_memory(void);

/* Stops keep-alive: idle connections close now, busy ones after their response. on_idle runs
 * once every connection is closed (at once if there are none). */
void lx_http_server_drain(lx_http_server_t *srv);

/* Releases what the server holds itself (the framing chunk); call when it has no connection. */
void lx_http_server_dispose(lx_http_server_t *srv);

/* Closes every connection now (after the shutdown timeout); handlers see on_abort. */
void lx_http_server_close_all(lx_http_server_t *srv);

/* Sends the response head: status line, X-Request-Id, <headers> (preformatted "Name: value\r\n"
 * lines), framing (Content-Length when <content_length> >= 0, else chunked, or close-delimited
 * for HTTP/1.0) and Connection. 0 or a negative code. */
int lx_http_server_send_head(lx_http_request_t *req, int status, const char *headers,
                             size_t headers_len, int64_t content_length);

/* The head is held back to leave with the first body bytes in one write; this sends it now
 * when nothing else is coming yet (an early-committed stream, a slow first token). */
int lx_http_server_flush(lx_http_request_t *req);

/* Sends the last body bytes, and when chunked the terminating chunk in the same write; the
 * response must then end with lx_http_server_finish() and nothing else. */
int lx_http_server_send_body_end(lx_http_request_t *req, lx_slice_t *slices, size_t n);

/* Sends body bytes; takes over the slices' references. Frames them when chunked. */
int lx_http_server_send_body(lx_http_request_t *req, lx_slice_t *slices, size_t n);

/* Copies and sends <len> body bytes. */
int lx_http_server_send(lx_http_request_t *req, const char *data, size_t len);

/* Ends the response (terminating chunk when chunked) and releases the request to the server.
 * After this call the handler must not touch <req>. */
void lx_http_server_finish(lx_http_request_t *req);

/* Ends the request by closing the connection (a response cut short), and releases it. */
void lx_http_server_abort(lx_http_request_t *req);

/* Head, body and finish in one call, copying <body>. */
void lx_http_server_respond(lx_http_request_t *req, int status, const char *headers,
                            size_t headers_len, const char *body, size_t body_len);

/* An error response in the application's envelope, then finish. <headers> (may be NULL) are
 * extra preformatted header lines, e.g. Retry-After. */
void lx_http_server_respond_error(lx_http_request_t *req, int status, const char *headers,
                                  const char *message);

/* First request header named <name>, or NULL. */
const lx_http_header_t *lx_http_request_header(const lx_http_request_t *req, const char *name);

/* Reason phrase for <status> ("OK", "Not Found", ...). */
const char *lx_http_reason(int status);

#endif
