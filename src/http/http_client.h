/*
 * http_client.h - the upstream side's response codec: llhttp in response mode over the chunks
 * an upstream connection reads.
 *
 * It reports the status and the few headers a proxy acts on, then the body as slices of the
 * read chunks (chunked framing already removed by llhttp), then completion. It knows nothing
 * about sockets: the owner feeds it reads and decides what to do with the pieces.
 */
#ifndef LX_HTTP_CLIENT_H
#define LX_HTTP_CLIENT_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct lx_http_client lx_http_client_t;

typedef struct lx_http_client_cbs {
    /* The head is complete: status and the headers below are set. Non-zero stops parsing. */
    int (*on_head)(lx_http_client_t *hc);
    /* A piece of body in chunk <b> (ref it to keep it). Non-zero stops parsing. */
    int (*on_body)(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len);
    /* The message is complete. */
    int (*on_complete)(lx_http_client_t *hc);
} lx_http_client_cbs_t;

#define LX_HTTP_CLIENT_CT_MAX 128
/* 1xx interim responses accepted before the final one; one more is a bad response (an upstream
 * could otherwise keep a request waiting forever on `100 Continue`s). */
#define LX_HTTP_CLIENT_MAX_INTERIM 8

struct lx_http_client {
    llhttp_t parser;
    const lx_http_client_cbs_t *cbs;
    void *data;
    int status;
    bool keep_alive;    /* valid after the head */
    bool chunked;       /* Transfer-Encoding: chunked */
    bool has_length;    /* Content-Length given */
    bool complete;      /* whole message parsed */
    bool head_done;     /* the final (non-1xx) head is complete */
    unsigned n_interim; /* 1xx interim responses skipped so far */
    uint64_t content_length;
    int64_t retry_after; /* seconds from Retry-After (delta form), -1 when absent */
    char content_type[LX_HTTP_CLIENT_CT_MAX];
    uint64_t head_bytes;
    uint64_t max_head;
    /* header being parsed: which one we care about */
    int cur_header;
    size_t value_len;
    char value[LX_HTTP_CLIENT_CT_MAX];
    lx_buf_t *cur;
    int cb_rc;         /* the non-zero value a callback stopped parsing with */
    const char *error; /* reason when parsing failed */
};

/* Prepares <hc> for one response; <max_head> bounds the head's size. */
void lx_http_client_init(lx_http_client_t *hc, const lx_http_client_cbs_t *cbs, uint64_t max_head,
                         void *data);

/* Parses <len> bytes at <data> inside chunk <b>. 1xx interim responses are skipped (at most
 * LX_HTTP_CLIENT_MAX_INTERIM); <max_head> bounds each head. Returns 0, LX_EUPSTREAM for a
 * malformed or oversized response or too many interim ones (hc->error says why), or the
 * non-zero value a callback returned. Bytes after a complete message make the response invalid
 * for reuse (hc->keep_alive cleared). */
int lx_http_client_parse(lx_http_client_t *hc, lx_buf_t *b, const char *data, size_t len);

/* The upstream closed: completes a close-delimited body. Returns 0 when the message is
 * complete, else LX_EUPSTREAM (the response was cut). */
int lx_http_client_eof(lx_http_client_t *hc);

/* Formats the head of a request into <b> (from its len on): "<method> <path> HTTP/1.1",
 * Host, Content-Length (when >= 0) and <extra> (preformatted header lines). Returns 0 or
 * LX_ETOOBIG. */
int lx_http_client_format_head(lx_buf_t *b, const char *method, const char *path, size_t path_len,
                               const char *host, const char *extra, size_t extra_len,
                               int64_t content_length);

#endif
