/*
 * http_chunked.c - the chunked transfer coding of request bodies (see http_chunked.h).
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-name ":" OWS field-value OWS CRLF )
 *
 * One state per position of that grammar, in four phases with a function each: the size line,
 * its extensions, the CRLF after chunk data, the trailer section. Each call walks bytes until it
 * has a piece of chunk data to hand out, the input ends, the body ends or a byte is wrong.
 */
#include "http/http_chunked.h"

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"
#include "http/http_head.h"

enum {
    S_SIZE_FIRST, /* the first digit of a chunk size */
    S_SIZE,       /* more digits, or what follows them */
    S_EXT_WS,     /* whitespace that only a ";" may follow */
    S_NAME_WS,    /* after ";": whitespace, then the extension's name */
    S_NAME,       /* in the name */
    S_NAME_END,   /* whitespace after the name: "=" or ";" */
    S_VALUE_WS,   /* after "=": whitespace, then a token or a quoted string */
    S_TOKEN,      /* in a token value */
    S_QUOTED,     /* in a quoted string */
    S_QPAIR,      /* after a backslash in it */
    S_QUOTED_END, /* after the closing quote */
    S_LINE_LF,    /* the LF that ends a chunk-size line */
    S_DATA,       /* chunk data */
    S_DATA_CR,    /* the CRLF after it */
    S_DATA_LF,
    S_TRAILER,    /* the start of a trailer line, or the CR of the final empty line */
    S_FIELD_NAME, /* in a trailer field's name */
    S_FIELD_VALUE,
    S_FIELD_LF,
    S_END_LF, /* the LF of the final empty line */
    S_DONE,
};

void lx_http_chunked_init(lx_http_chunked_t *ck, uint64_t limit, uint64_t trailer_max)
{
    ck->limit = limit;
    ck->total = 0;
    ck->size = 0;
    ck->trailer_max = trailer_max;
    ck->trailer = 0;
    ck->line = 0;
    ck->state = S_SIZE_FIRST;
    ck->error = NULL;
}

static bool ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

/* qdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text */
static bool qdtext(unsigned char ch)
{
    return ch == '\t' || ch == ' ' || ch == 0x21 || (ch >= 0x23 && ch <= 0x5b) ||
           (ch >= 0x5d && ch <= 0x7e) || ch >= 0x80;
}

/* what may follow a backslash, and what a field value holds: HTAB, SP, VCHAR, obs-text */
static bool vtext(unsigned char ch)
{
    return ch == '\t' || ch == ' ' || (ch >= 0x21 && ch != 0x7f);
}

static int fail(lx_http_chunked_t *ck, const char *why)
{
    ck->error = why;
    return LX_EPARSE;
}

/* The byte after a chunk extension element: more elements, or the end of the line. */
static int after_element(lx_http_chunked_t *ck, unsigned char ch)
{
    if (ch == ';')
        ck->state = S_NAME_WS;
    else if (ws(ch))
        ck->state = S_EXT_WS;
    else if (ch == '\r')
        ck->state = S_LINE_LF;
    else
        return fail(ck, "invalid chunk extension");
    return 0;
}

/* The chunk-size line: the size's hex digits (checked against the limit at the digit that
 * would pass it) and the CRLF that ends the line. */
static int size_line(lx_http_chunked_t *ck, unsigned char ch)
{
    if (ck->state == S_LINE_LF) {
        if (ch != '\n')
            return fail(ck, "chunk size line not ended by CRLF");
        ck->line = 0;
        if (ck->size == 0) {
            ck->state = S_TRAILER;
        } else {
            ck->total += ck->size;
            ck->state = S_DATA;
        }
        return LX_CHUNKED_MORE;
    }
    int d = lx_hex_value(ch);
    if (d >= 0) {
        /* the body may not pass its limit: known at the digit that makes it so */
        uint64_t room = ck->limit - ck->total;
        if ((uint64_t)d > room || ck->size > (room - (uint64_t)d) / 16) {
            ck->error = "request body too large";
            return LX_ETOOBIG;
        }
        ck->size = ck->size * 16 + (uint64_t)d;
        ck->state = S_SIZE;
        return LX_CHUNKED_MORE;
    }
    if (ck->state == S_SIZE_FIRST)
        return fail(ck, "invalid chunk size");
    return after_element(ck, ch);
}

/* The chunk extensions after the size, up to the CR of the line. */
static int extension(lx_http_chunked_t *ck, unsigned char ch)
{
    switch (ck->state) {
    case S_EXT_WS:
        if (ch == ';')
            ck->state = S_NAME_WS;
        else if (!ws(ch))
            return fail(ck, "invalid chunk extension");
        break;
    case S_NAME_WS:
        if (lx_http_tchar(ch))
            ck->state = S_NAME;
        else if (!ws(ch))
            return fail(ck, "invalid chunk extension name");
        break;
    case S_NAME:
        if (lx_http_tchar(ch))
            break;
        if (ch == '=')
            ck->state = S_VALUE_WS;
        else if (ws(ch))
            ck->state = S_NAME_END;
        else
            return after_element(ck, ch);
        break;
    case S_NAME_END:
        if (ch == '=')
            ck->state = S_VALUE_WS;
        else if (ch == ';')
            ck->state = S_NAME_WS;
        else if (!ws(ch))
            return fail(ck, "invalid chunk extension");
        break;
    case S_VALUE_WS:
        if (ch == '"')
            ck->state = S_QUOTED;
        else if (lx_http_tchar(ch))
            ck->state = S_TOKEN;
        else if (!ws(ch))
            return fail(ck, "invalid chunk extension value");
        break;
    case S_TOKEN:
        if (!lx_http_tchar(ch))
            return after_element(ck, ch);
        break;
    case S_QUOTED:
        if (ch == '"')
            ck->state = S_QUOTED_END;
        else if (ch == '\\')
            ck->state = S_QPAIR;
        else if (!qdtext(ch))
            return fail(ck, "invalid chunk extension value");
        break;
    case S_QPAIR:
        if (!vtext(ch))
            return fail(ck, "invalid chunk extension value");
        ck->state = S_QUOTED;
        break;
    default: /* S_QUOTED_END */
        return after_element(ck, ch);
    }
    return LX_CHUNKED_MORE;
}

/* The CRLF after a chunk's data. */
static int data_end(lx_http_chunked_t *ck, unsigned char ch)
{
    if (ck->state == S_DATA_CR && ch == '\r')
        ck->state = S_DATA_LF;
    else if (ck->state == S_DATA_LF && ch == '\n')
        ck->state = S_SIZE_FIRST;
    else
        return fail(ck, "chunk data not followed by CRLF");
    return LX_CHUNKED_MORE;
}

/* The trailer section after the last chunk, and the empty line that ends the body. */
static int trailer(lx_http_chunked_t *ck, unsigned char ch)
{
    switch (ck->state) {
    case S_TRAILER:
        if (ch == '\r')
            ck->state = S_END_LF;
        else if (lx_http_tchar(ch))
            ck->state = S_FIELD_NAME;
        else
            return fail(ck, "invalid trailer field");
        break;
    case S_FIELD_NAME:
        if (ch == ':')
            ck->state = S_FIELD_VALUE;
        else if (!lx_http_tchar(ch))
            return fail(ck, "invalid trailer field name");
        break;
    case S_FIELD_VALUE:
        if (ch == '\r')
            ck->state = S_FIELD_LF;
        else if (!vtext(ch))
            return fail(ck, "invalid trailer field value");
        break;
    case S_FIELD_LF:
        if (ch != '\n')
            return fail(ck, "trailer field not ended by CRLF");
        ck->state = S_TRAILER;
        break;
    case S_END_LF:
        if (ch != '\n')
            return fail(ck, "chunked body not ended by CRLF");
        ck->state = S_DONE;
        return LX_CHUNKED_DONE;
    default:
        return fail(ck, "chunked body already complete");
    }
    return LX_CHUNKED_MORE;
}

/* Walks bytes, one phase of the grammar per function above; chunk data is handed out here. */
int lx_http_chunked_parse(lx_http_chunked_t *ck, const char *p, size_t n, size_t *used,
                          lx_str_t *data)
{
    size_t i = 0;
    int rc = LX_CHUNKED_MORE;
    *data = (lx_str_t){NULL, 0};
    while (i < n) {
        unsigned char ch = (unsigned char)p[i];
        if (ck->state == S_DATA) {
            size_t k = (size_t)LX_MIN(ck->size, (uint64_t)(n - i));
            *data = (lx_str_t){p + i, k};
            ck->size -= k;
            i += k;
            if (ck->size == 0)
                ck->state = S_DATA_CR;
            break; /* one piece per call */
        }
        i++;
        if (ck->state <= S_LINE_LF && ++ck->line > LX_HTTP_CHUNK_LINE_MAX) {
            rc = fail(ck, "chunk size line too long");
            break;
        }
        if (ck->state >= S_TRAILER && ck->state <= S_END_LF && ++ck->trailer > ck->trailer_max) {
            ck->error = "request trailer fields too large";
            rc = LX_ETOOBIG;
            break;
        }
        if (ck->state <= S_SIZE || ck->state == S_LINE_LF)
            rc = size_line(ck, ch);
        else if (ck->state < S_LINE_LF)
            rc = extension(ck, ch);
        else if (ck->state <= S_DATA_LF)
            rc = data_end(ck, ch);
        else
            rc = trailer(ck, ch);
        if (rc != LX_CHUNKED_MORE)
            break;
    }
    *used = i;
    return rc;
}
