/*
 * http_server_int.h - what the two halves of the server share: a connection's struct and the
 * few lifecycle calls the response half (http_response.c) makes into the connection half
 * (http_server.c). Not for use outside src/http/.
 */
#ifndef LX_HTTP_SERVER_INT_H
#define LX_HTTP_SERVER_INT_H

#include "http/http_chunked.h"
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
    llhttp_t parser;
    lx_http_request_t req;
    enum lx_http_conn_state state;
    int error_status; /* set by a parser callback that rejects the request */
    const char *error_message;
    const char *error_headers; /* extra header lines of that answer, or NULL */
    lx_buf_t *cur;             /* chunk being parsed */
    lx_slice_t head_out;       /* the response head, held until the first body write */
    bool head_pending;
    lx_buf_t *body_buf;      /* the body when it is not a view into a read chunk */
    uint64_t body_charge;    /* bytes of limits.max_body_memory that body_buf holds */
    uint64_t head_bytes;     /* head bytes so far, against max_header_size */
    uint64_t content_length; /* declared, 0 when chunked or none */
    lx_http_chunked_t chunked;
    lx_slice_t queue[LX_HTTP_QUEUE_SLOTS];
    unsigned q_first, q_n;
    size_t q_bytes;
    unsigned open_handles;
    bool owned;     /* the handler holds req */
    bool in_flight; /* req's head is complete (or it is being refused): on_done is owed */
    bool closing;
    bool done_deferred;  /* the timer serves a deferred request_done */
    bool te_chunked;     /* the body comes in chunked coding (decoded by http_chunked) */
    bool in_chunked;     /* ... and llhttp is past the head: the bytes go to http_chunked */
    bool direct;         /* reads land straight in body_buf (lx_stream_read_into) */
    bool input_paused;   /* reading stopped because the queue reached its bound */
    bool peer_eof;       /* lingering after the client's EOF: close once the answer is out */
    bool head_check;     /* the head is complete and its last byte not checked yet */
    char last_byte;      /* the last byte parsed before the current read */
    const char *exec_at; /* where the current llhttp_execute began */
};

/* http_server.c: */

/* The state's deadline is <ms> from now / the state has none. */
void lx_http_conn_arm(lx_http_conn_t *c, uint64_t ms);
void lx_http_conn_disarm(lx_http_conn_t *c);

/* A request the server refuses itself: answer <status> in the envelope (with the extra header
 * lines <headers>, may be NULL), log it, then linger and close. */
void lx_http_conn_refuse(lx_http_conn_t *c, int status, const char *message, const char *headers);

/* Write callback of every response write (arg: the connection). */
void lx_http_conn_on_write(lx_stream_t *s, int status, void *arg);

/* The handler ended its request (finish or abort). */
void lx_http_conn_release(lx_http_conn_t *c);

/* Closes the connection (idempotent); a request out of the handler's hands is logged. */
void lx_http_conn_close(lx_http_conn_t *c, bool reset);

/* http_request.c: */

extern const llhttp_settings_t lx_http_parser_settings;

/* Runs the parser over [data, data+len) of chunk <b>; returns how many bytes it used: all of
 * them, or those up to the end of a request that became complete (state OUT, not dispatched
 * yet). A malformed or refused request is answered (state LINGER). */
size_t lx_http_parse(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len);

/* Moves a small request's strings out of the read chunks before it goes to the handler. */
void lx_http_compact(lx_http_conn_t *c);

/* Drops the request's body buffer and its charge to the body memory cap. */
void lx_http_body_drop(lx_http_conn_t *c);

/* Gives the request a generated id. */
void lx_http_request_new_id(lx_http_conn_t *c);

/* http_response.c: */

/* The application's error body for <status>, or the bare message. */
size_t lx_http_format_error(lx_http_server_t *srv, const lx_http_request_t *req, char *buf,
                            size_t cap, int status, const char *message);

#endif
