/*
 * http_chunked.h - the chunked transfer coding of a request body (RFC 9112 section 7.1), decoded
 * over bytes alone.
 *
 * llhttp 8.1 (Debian's node-llhttp) refuses valid chunk extensions (a second extension after a
 * token value, whitespace around ";" and "=", quoted-pairs) and reads a chunk size up to 2^64-1
 * before the body limit can see it, so the server decodes chunked bodies itself: the whole
 * grammar, CRLF line ends only, a chunk size checked against the body limit digit by digit,
 * trailer fields checked and dropped. Data comes out as views into the input, one piece per call.
 */
#ifndef LX_HTTP_CHUNKED_H
#define LX_HTTP_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

/* A chunk-size line (size and extensions) longer than this is refused. */
#define LX_HTTP_CHUNK_LINE_MAX 4096

typedef struct lx_http_chunked {
    uint64_t limit;       /* the body may not decode to more than this */
    uint64_t total;       /* data bytes decoded so far */
    uint64_t size;        /* the current chunk's size, then what is left of its data */
    uint64_t trailer_max; /* bytes the trailer section may take */
    uint64_t trailer;     /* ... and took so far */
    uint32_t line;        /* bytes of the current chunk-size line */
    uint8_t state;
    const char *error; /* why the body was refused */
} lx_http_chunked_t;

enum {
    LX_CHUNKED_MORE = 0, /* consumed what it could: call again with the rest, or more input */
    LX_CHUNKED_DONE = 1, /* the last chunk and the trailer section are complete */
};

/* Starts a body that may decode to <limit> bytes with trailers of <trailer_max> bytes. */
void lx_http_chunked_init(lx_http_chunked_t *ck, uint64_t limit, uint64_t trailer_max);

/* Decodes from [p, p+n): sets *used to the bytes consumed and *data to the chunk data among them
 * (at most one piece per call; len 0 when none). Returns LX_CHUNKED_MORE, LX_CHUNKED_DONE (bytes
 * after *used belong to the next message), LX_ETOOBIG (a chunk takes the body over its limit:
 * noticed on the size digit that does it), LX_EPARSE (malformed: ck->error says why) or
 * LX_ETOOBIG with trailer set past trailer_max (trailers too large; see
 * lx_http_chunked_trailers_too_large). */
int lx_http_chunked_parse(lx_http_chunked_t *ck, const char *p, size_t n, size_t *used,
                          lx_str_t *data);

/* After LX_ETOOBIG: true when the trailer section was too large (431), false when the body was
 * (413). */
static inline bool lx_http_chunked_trailers_too_large(const lx_http_chunked_t *ck)
{
    return ck->trailer > ck->trailer_max;
}

#endif
