/*
 * http_server_int.h - what the two halves of the server share: a connection's struct and the
 * few lifecycle calls the response half (http_response.c) makes into the connection half
 * (http_server.c). Not for use outside src/http/.
 */
#ifndef LX_HTTP_SERVER_INT_H
#define LX_HTTP_SERVER_INT_H

#include "http/http_request.h"
#include "http/http_server.h"

enum lx_http_conn_state { ST_IDLE, ST_HEAD, ST_BODY, ST_OUT, ST_LINGER, ST_CLOSED };

/* Input waiting for the parser while a request is out: slices of read chunks in a ring. */
#define LX_HTTP_QUEUE_SLOTS 16

struct lx_http_conn {
    lx_stream_t stream;
    uv_timer_t timer;
    uint64_t deadline;  /* loop time (ms) the state's deadline falls due; 0: none */
    uint64_t timer_due; /* loop time the timer is armed for on_timer; 0: not so armed */
    lx_list_t link;
    lx_http_server_t *srv;
    lx_http_parser_t parser; /* parses into req (http_request.c) */
    lx_http_request_t req;
    enum lx_http_conn_state state;
    lx_slice_t head_out; /* the response head, held until the first body write */
    bool head_pending;
    lx_slice_t queue[LX_HTTP_QUEUE_SLOTS];
    unsigned q_first, q_n;
    size_t q_bytes;
    unsigned open_handles;
    bool owned;     /* the handler holds req */
    bool in_flight; /* req's head is complete (or it is being refused): on_done is owed */
    bool closing;
    bool done_deferred; /* the timer serves a deferred request_done */
    bool direct;        /* reads land straight in the parser's body_buf (lx_stream_read_into) */
    bool input_paused;  /* reading stopped because the queue reached its bound */
    bool peer_eof;      /* lingering after the client's EOF: close once the answer is out */
};

/* http_server.c: */

/* Write callback of every response write (arg: the connection). */
void lx_http_conn_on_write(lx_stream_t *s, int status, void *arg);

/* The handler ended its request (finish or abort). */
void lx_http_conn_release(lx_http_conn_t *c);

/* Closes the connection (idempotent); a request out of the handler's hands is logged. */
void lx_http_conn_close(lx_http_conn_t *c, bool reset);

/* http_response.c: */

/* The application's error body for <status>, or the bare message. */
size_t lx_http_format_error(lx_http_server_t *srv, const lx_http_request_t *req, char *buf,
                            size_t cap, int status, const char *message);

#endif
