/*
 * http_build.h - writing an HTTP/1.1 request head into a chunk, line by line.
 *
 * A head is begun (request line, Host, Content-Length), gets header lines, and is ended (the
 * empty line) exactly once: nothing is reopened. The builder writes into the chunk's free
 * room as it goes, but the chunk's len moves only when the head is ended and the whole of it
 * fitted; a head that did not fit leaves the chunk as it was. Bytes are written as given:
 * the caller passes names and values that are valid field content (a client's headers come
 * from the server's parser, configured ones were checked when the configuration loaded).
 */
#ifndef LX_HTTP_BUILD_H
#define LX_HTTP_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/strbuf.h"

typedef struct lx_http_build {
    lx_buf_t *b;    /* the chunk the head goes into, after its len */
    lx_strbuf_t sb; /* over the chunk's free room; overflow sticks */
} lx_http_build_t;

/* Begins a request head at the end of chunk <b>: "<method> <path> HTTP/1.1", "Host: <host>"
 * and, when <content_length> >= 0, "Content-Length: <content_length>". */
void lx_http_build_request(lx_http_build_t *hb, lx_buf_t *b, const char *method, const char *path,
                           size_t path_len, const char *host, int64_t content_length);

/* Adds "<name>: <value>". */
static inline void lx_http_build_header(lx_http_build_t *hb, const char *name, size_t name_len,
                                        const char *value, size_t value_len)
{
    lx_strbuf_mem(&hb->sb, name, name_len);
    LX_STRBUF_LIT(&hb->sb, ": ");
    lx_strbuf_mem(&hb->sb, value, value_len);
    LX_STRBUF_LIT(&hb->sb, "\r\n");
}

/* A header whose value comes in pieces: lx_http_build_name, lx_http_build_value for each
 * piece, then lx_http_build_eol. */
static inline void lx_http_build_name(lx_http_build_t *hb, const char *name, size_t name_len)
{
    lx_strbuf_mem(&hb->sb, name, name_len);
    LX_STRBUF_LIT(&hb->sb, ": ");
}

static inline void lx_http_build_value(lx_http_build_t *hb, const char *value, size_t value_len)
{
    lx_strbuf_mem(&hb->sb, value, value_len);
}

static inline void lx_http_build_eol(lx_http_build_t *hb)
{
    LX_STRBUF_LIT(&hb->sb, "\r\n");
}

/* Adds preformatted header lines (each "Name: value\r\n"). */
static inline void lx_http_build_lines(lx_http_build_t *hb, const char *lines, size_t len)
{
    lx_strbuf_mem(&hb->sb, lines, len);
}

/* Ends the head (the empty line) and adds it to the chunk's len. 0, or LX_ETOOBIG when the
 * head did not fit (the chunk's len is unchanged). */
int lx_http_build_end(lx_http_build_t *hb);

/* The authority a Host header names: <host>, in brackets when it is an IPv6 address, then
 * ":<port>" unless <port> is <default_port> (80 for http, 443 for https; 0 always writes the
 * port). Written NUL-terminated into <buf> of <cap> bytes. 0, or LX_ETOOBIG. */
int lx_http_authority(char *buf, size_t cap, const char *host, unsigned port,
                      unsigned default_port);

#endif
