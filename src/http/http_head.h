/*
 * http_head.h - the header block of one HTTP message, as views into the chunks it arrived in.
 *
 * llhttp reports a name or value in pieces when it crosses a read. A piece that continues the
 * previous one in the same chunk extends the view; otherwise both are joined in a spill area
 * (allocated on first need, bounded by the header limit). The head holds a reference on every
 * chunk its views point into, released by lx_http_head_reset().
 */
#ifndef LX_HTTP_HEAD_H
#define LX_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/str.h"

#define LX_HTTP_MAX_HEADERS   64
#define LX_HTTP_HEAD_MAX_HELD 8

typedef struct lx_http_header {
    lx_str_t name;
    lx_str_t value;
} lx_http_header_t;

typedef struct lx_http_head {
    lx_http_header_t *headers; /* n_headers entries: in table while parsing, or wherever the
                                * owner moved them (lx_http_head_adopt) */
    lx_http_header_t *table;   /* LX_HTTP_MAX_HEADERS entries, malloc'd at the first header */
    unsigned n_headers;
    bool in_value;   /* the current header's name is complete (the next name starts a new one) */
    bool too_many;   /* more than LX_HTTP_MAX_HEADERS headers */
    lx_str_t target; /* request target (requests) */
    lx_buf_t *held[LX_HTTP_HEAD_MAX_HELD];
    unsigned n_held;
    char *spill;
    size_t spill_len, spill_cap;
} lx_http_head_t;

void lx_http_head_init(lx_http_head_t *h);

/* Drops the views, the chunk references and the spill area. */
void lx_http_head_reset(lx_http_head_t *h);

/* References chunk <b>, which holds bytes the next spans may point into. 0 or LX_ETOOBIG
 * (the head already spans LX_HTTP_HEAD_MAX_HELD chunks). */
int lx_http_head_hold(lx_http_head_t *h, lx_buf_t *b);

/* Appends piece [at, at+len) to view <sp>. <limit> bounds the spill area. 0, LX_ETOOBIG or
 * LX_ENOMEM. */
int lx_http_head_span(lx_http_head_t *h, lx_str_t *sp, const char *at, size_t len, size_t limit);

/* Adds a piece of a header name / value (llhttp on_header_field / on_header_value). */
int lx_http_head_name(lx_http_head_t *h, const char *at, size_t len, size_t limit);
int lx_http_head_value(lx_http_head_t *h, const char *at, size_t len, size_t limit);

/* The current name is complete (llhttp on_header_field_complete): the next name piece starts
 * a new header, even when the value was empty. Returns LX_EPARSE when the name is empty or holds
 * a space (whitespace before the colon: RFC 9112 5.1 says answer 400), the bytes llhttp's own
 * name table lets through beyond tchar; else 0. */
int lx_http_head_name_done(lx_http_head_t *h);

/* The last header's value is complete (the head is): its trailing spaces and tabs (OWS, which
 * llhttp 8.1 leaves in values) are dropped from the view. lx_http_head_name does the same for
 * the previous header when a new one begins, so every value ends up trimmed without a callback
 * per header. */
void lx_http_head_value_done(lx_http_head_t *h);

/* tchar of RFC 9110 section 5.6.2: "!#$%&'*+-.^_`|~", digits and letters. */
extern const unsigned char lx_http_tchars[256];

static inline bool lx_http_tchar(unsigned char ch)
{
    return lx_http_tchars[ch] != 0;
}

/* True when [p, p+n) is a token: at least one byte, every one a tchar. */
bool lx_http_token(const char *p, size_t n);

/* Replaces the chunks the views point into by <b> (the owner copied the views into it and
 * rebased them, headers array included): releases the old chunks, spill and table. */
void lx_http_head_adopt(lx_http_head_t *h, lx_buf_t *b);

/* First header named <name> (ASCII case-insensitive, whole name: "host" matches "Host", never
 * "Host " or "X-Host"), or NULL. */
const lx_http_header_t *lx_http_head_find(const lx_http_head_t *h, const char *name, size_t len);

#endif
