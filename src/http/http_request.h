/*
 * http_request.h - parsing requests on bytes alone: llhttp in request mode, the head's checks
 * and the body, with no socket, loop or timer.
 *
 * The owner feeds the bytes it read (each inside a chunk: header and body views point into
 * them, and the request holds the chunks) and looks at the parser's state after each call.
 * The server (http_server.c) is one owner: its connection embeds a parser and hooks the three
 * moments it acts on (a request's first byte, the application's admission on the head, the
 * body's start); a test or a fuzz target is another, with no hooks. Pipelined requests are
 * parsed one at a time: feeding stops at the end of a complete request, and the owner calls
 * lx_http_parser_reset before it feeds the bytes that follow.
 *
 *   IDLE ──first byte──> HEAD ──head accepted──> BODY ──message complete──> DONE
 *     ^                                                                       │
 *     └───────────────────────────── lx_http_parser_reset ────────────────────┘
 *   a malformed or refused request ──> ERROR (error_status, error_message, error_headers)
 */
#ifndef LX_HTTP_REQUEST_H
#define LX_HTTP_REQUEST_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/http_chunked.h"
#include "http/http_server.h"

typedef struct lx_http_parser lx_http_parser_t;

enum lx_http_parse_state {
    LX_HTTP_PARSE_IDLE,  /* between requests: no byte of the next one yet */
    LX_HTTP_PARSE_HEAD,  /* in a request's head */
    LX_HTTP_PARSE_BODY,  /* the head was accepted: in its body */
    LX_HTTP_PARSE_DONE,  /* a request is complete in *req */
    LX_HTTP_PARSE_ERROR, /* the request is refused: answer error_status, then close */
};

/* The owner's hooks; each may be NULL. */
typedef struct lx_http_parser_hooks {
    /* A request's first byte arrived (state HEAD). */
    void (*on_begin)(lx_http_parser_t *p);
    /* The head is complete and passed the protocol's checks: 0 admits it, an HTTP status
     * refuses it with *message (NULL: the reason phrase) and the extra header lines *headers. */
    int (*on_head)(lx_http_parser_t *p, const char **message, const char **headers);
    /* The head was admitted and the body's memory reserved (state BODY); p->send_continue says
     * the client waits for 100 Continue. Every admitted request passes here, with or without a
     * body. */
    void (*on_body)(lx_http_parser_t *p);
} lx_http_parser_hooks_t;

struct lx_http_parser {
    llhttp_t llhttp;
    lx_http_request_t *req;                /* where the request goes */
    const lx_http_server_limits_t *limits; /* max_header_size, max_body_size, max_body_memory */
    uint64_t *id_state;                    /* request-id generator (lx_http_request_new_id) */
    const lx_http_parser_hooks_t *hooks;   /* may be NULL */
    void *data;                            /* the owner's */
    enum lx_http_parse_state state;
    int error_status;          /* ERROR: the status to answer, its message and extra header lines */
    const char *error_message; /* ... (a static string, or one of the owner's on_head) */
    const char *error_detail;  /* ... followed by this (static, from llhttp or the chunked
                                * decoder), or NULL: read both with lx_http_parser_error() */
    const char *error_headers;
    bool send_continue;      /* (on_body) the client sent Expect: 100-continue and a body */
    bool te_chunked;         /* the body comes in chunked coding (decoded by http_chunked) */
    bool in_chunked;         /* ... and llhttp is past the head: the bytes go to http_chunked */
    bool head_check;         /* the head is complete and its last byte not checked yet */
    char last_byte;          /* the last byte parsed before the current feed */
    const char *exec_at;     /* where the current llhttp_execute began */
    lx_buf_t *cur;           /* chunk being parsed */
    lx_buf_t *body_buf;      /* the body when it is not a view into a read chunk */
    uint64_t body_charge;    /* bytes of limits->max_body_memory that body_buf holds */
    uint64_t head_bytes;     /* head bytes so far, against max_header_size */
    uint64_t content_length; /* declared, 0 when chunked or none */
    lx_http_chunked_t chunked;
};

/* Prepares <p> to parse requests into <req> (its head initialized here) under <limits>, with
 * request ids from <id_state> (not 0) and the owner's <hooks> (may be NULL). */
void lx_http_parser_init(lx_http_parser_t *p, lx_http_request_t *req,
                         const lx_http_server_limits_t *limits, uint64_t *id_state,
                         const lx_http_parser_hooks_t *hooks, void *data);

/* Parses [data, data+len) of chunk <b>; returns how many bytes it used: all of them, or those
 * up to the end of a request that became complete (state DONE; the rest belongs to the next
 * request). State ERROR uses every byte. Feeding a parser in DONE or ERROR uses none. */
size_t lx_http_parser_feed(lx_http_parser_t *p, lx_buf_t *b, const char *data, size_t len);

/* In state ERROR: the message to answer, error_message and error_detail joined into <buf> of
 * <cap> bytes when there is a detail (cut to fit), else error_message itself. Kept as two
 * static pieces so that a connection holds no message buffer of its own. */
const char *lx_http_parser_error(const lx_http_parser_t *p, char *buf, size_t cap);

/* Drops the current request (head, body, id, error) and readies <p> for the next one (IDLE).
 * The request's response-side fields are the owner's. */
void lx_http_parser_reset(lx_http_parser_t *p);

/* Drops the request's body buffer and its charge to the body memory cap (the body views
 * into it go with it). */
void lx_http_parser_body_drop(lx_http_parser_t *p);

/* Moves a complete small request's strings out of the read chunks into one chunk from
 * <pool> before it goes to a handler that may keep it long. */
void lx_http_parser_compact(lx_http_parser_t *p, lx_buf_pool_t *pool);

/* Gives <r> a generated id: 16 hex digits of the xorshift64* generator at <state>. */
void lx_http_request_new_id(lx_http_request_t *r, uint64_t *state);

#endif
