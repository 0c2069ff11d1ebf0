/*
 * http_request.c - parsing requests on bytes alone (see http_request.h): llhttp's callbacks
 * build the head (views into the read chunks, names checked to be tokens), the head's checks
 * (version, framing, Expect, the owner's on_head), and the body (a view, or a buffer charged to
 * the body memory cap; chunked bodies through http_chunked.c). No socket, loop or timer: the
 * owner's hooks do what those need (the server's arm its timers and send 100 Continue).
 *
 * Bodies: a Content-Length body up to DIRECT_BODY_MIN stays a view into its chunk; a larger one
 * gets a buffer of its exact size, charged to limits.max_body_memory first (503 with
 * Retry-After when it would pass the cap, before any body byte is read or 100 Continue is
 * sent), the part that came with the head is copied in, and the next reads go straight into it
 * (http_server.c's read_direct, which makes body_buf the read target). Chunked bodies are decoded
 * by http_chunked.c (llhttp is told to skip them: its own chunk parser refuses valid extensions and
 * reads sizes up to 2^64-1) into a buffer that doubles from 16 KiB, each size charged before it is
 * allocated.
 *
 * The body memory cap is one process-wide atomic counter (src/http/README.md says why).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "http/http_request.h"

/* Bodies larger than this are read into a buffer of their exact size, not chunk by chunk. */
#define DIRECT_BODY_MIN 4096

/* Request bodies buffered by every server of the process (limits.max_body_memory). */
static _Atomic uint64_t body_memory;

uint64_t lx_http_body_memory(void)
{
    return atomic_load_explicit(&body_memory, memory_order_relaxed);
}

static uint64_t next_id(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A generated request id: 16 hex digits of the worker's id generator. */
void lx_http_request_new_id(lx_http_request_t *r, uint64_t *state)
{
    lx_strbuf_t sb = lx_strbuf_make(r->id, sizeof(r->id) - 1);
    lx_strbuf_hex(&sb, next_id(state), 16);
    r->id_len = (uint8_t)lx_strbuf_len(&sb, r->id);
    r->id[r->id_len] = '\0';
}

/* --- bodies in memory ------------------------------------------------------------------- */

/* Charges <n> bytes to the process's body memory; false (nothing charged) when that would pass
 * the cap. */
static bool body_charge(lx_http_parser_t *c, uint64_t n)
{
    uint64_t cap = c->limits->max_body_memory;
    uint64_t before = atomic_fetch_add_explicit(&body_memory, n, memory_order_relaxed);
    if (cap != 0 && before + n > cap) {
        atomic_fetch_sub_explicit(&body_memory, n, memory_order_relaxed);
        return false;
    }
    c->body_charge += n;
    return true;
}

static void body_uncharge(lx_http_parser_t *c, uint64_t n)
{
    LX_ASSERT(c->body_charge >= n);
    c->body_charge -= n;
    atomic_fetch_sub_explicit(&body_memory, n, memory_order_relaxed);
}

/* Drops the body buffer and its charge. */
void lx_http_parser_body_drop(lx_http_parser_t *c)
{
    lx_buf_unref(c->body_buf);
    c->body_buf = NULL;
    if (c->body_charge > 0)
        body_uncharge(c, c->body_charge);
}

/* --- parsing -------------------------------------------------------------------------------- */

static lx_http_parser_t *parser_of(llhttp_t *p)
{
    return p->data;
}

static int reject(lx_http_parser_t *c, int status, const char *message)
{
    c->state = LX_HTTP_PARSE_ERROR;
    c->error_status = status;
    c->error_message = message;
    c->error_detail = NULL;
    return -1;
}

/* A refusal whose message is <message> followed by the static <detail>. */
static void reject_detail(lx_http_parser_t *c, int status, const char *message, const char *detail)
{
    reject(c, status, message);
    c->error_detail = detail;
}

const char *lx_http_parser_error(const lx_http_parser_t *p, char *buf, size_t cap)
{
    if (p->error_detail == NULL)
        return p->error_message;
    snprintf(buf, cap, "%s%s", p->error_message, p->error_detail);
    return buf;
}

static int on_message_begin(llhttp_t *p)
{
    lx_http_parser_t *c = parser_of(p);
    c->state = LX_HTTP_PARSE_HEAD;
    if (c->hooks != NULL && c->hooks->on_begin != NULL)
        c->hooks->on_begin(c);
    return 0;
}

static int count_head(lx_http_parser_t *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > c->limits->max_header_size)
        return reject(c, 431, "request header fields too large");
    return 0;
}

static int head_error(lx_http_parser_t *c, int rc)
{
    if (rc == LX_ENOMEM)
        return reject(c, 500, "out of memory");
    return reject(c, 431, "request header fields too large");
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    lx_http_parser_t *c = parser_of(p);
    lx_http_head_t *h = &c->req->head;
    int rc;
    if (count_head(c, len) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_span(h, &h->target, at, len, c->limits->max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

/* The method is known from here on, for a refusal's log line too. */
static int on_method_complete(llhttp_t *p)
{
    parser_of(p)->req->method = p->method;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    lx_http_parser_t *c = parser_of(p);
    lx_http_head_t *h = &c->req->head;
    int rc;
    if (count_head(c, len + 4) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_name(h, at, len, c->limits->max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    lx_http_parser_t *c = parser_of(p);
    /* llhttp 8.1 takes "Host : x" as a header named "Host " and ": x" as one named "" */
    if (lx_http_head_name_done(&c->req->head) != 0)
        return reject(c, 400, "malformed HTTP request: invalid header field name");
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    lx_http_parser_t *c = parser_of(p);
    lx_http_head_t *h = &c->req->head;
    int rc;
    if (count_head(c, len) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_value(h, at, len, c->limits->max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

static bool id_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

static void set_request_id(lx_http_parser_t *c)
{
    lx_http_request_t *r = c->req;
    const lx_http_header_t *h = lx_http_head_find(&r->head, "x-request-id", 12);
    if (h != NULL && h->value.len > 0 && h->value.len <= LX_HTTP_ID_MAX) {
        bool ok = true;
        for (size_t i = 0; i < h->value.len && ok; i++)
            ok = id_char_ok(h->value.ptr[i]);
        if (ok) {
            memcpy(r->id, h->value.ptr, h->value.len);
            r->id_len = (uint8_t)h->value.len;
            r->id[r->id_len] = '\0';
            return;
        }
    }
    lx_http_request_new_id(r, c->id_state);
}

/* Transfer-Encoding, over all its fields, must end in one "chunked" (RFC 9112 6.3: else 400);
 * a coding before it is one llmux does not decode (501). */
static int check_transfer_encoding(lx_http_parser_t *c)
{
    const lx_http_head_t *h = &c->req->head;
    unsigned chunked = 0, other = 0;
    bool after_chunked = false;
    for (unsigned i = 0; i < h->n_headers; i++) {
        if (!lx_str_caseeq(h->headers[i].name, "transfer-encoding", 17))
            continue;
        lx_str_t v = h->headers[i].value;
        size_t k = 0;
        while (k <= v.len) {
            size_t a = k, e = k;
            while (e < v.len && v.ptr[e] != ',')
                e++;
            size_t b = e;
            while (a < b && (v.ptr[a] == ' ' || v.ptr[a] == '\t'))
                a++;
            while (b > a && (v.ptr[b - 1] == ' ' || v.ptr[b - 1] == '\t'))
                b--;
            if (b > a) {
                after_chunked |= chunked > 0;
                if (lx_str_caseeq((lx_str_t){v.ptr + a, b - a}, "chunked", 7))
                    chunked++;
                else
                    other++;
            }
            k = e + 1;
        }
    }
    if (chunked != 1 || after_chunked)
        return reject(c, 400, "malformed HTTP request: chunked must be the last transfer coding");
    if (other > 0)
        return reject(c, 501, "transfer codings other than chunked are not supported");
    return 0;
}

/* The protocol's checks of a complete head: version, header count, framing (the body's limit
 * from Content-Length, or a chunked decoder), Expect. 0, or -1 with the request rejected. */
static int check_head(lx_http_parser_t *c, llhttp_t *p, const lx_http_header_t **expect)
{
    lx_http_request_t *r = c->req;
    if (p->http_major != 1) {
        /* llhttp takes a request line without a version as HTTP/0.9 */
        return p->http_major == 0 ? reject(c, 400, "malformed request line: no HTTP version")
                                  : reject(c, 505, "only HTTP/1.x is supported");
    }
    if (r->head.too_many)
        return reject(c, 431, "too many request header fields");
    uint64_t max_body = LX_MIN(c->limits->max_body_size, (uint64_t)UINT32_MAX);
    if (p->flags & F_TRANSFER_ENCODING) {
        if (p->flags & F_CONTENT_LENGTH)
            return reject(c, 400, "malformed HTTP request: Content-Length with Transfer-Encoding");
        if (check_transfer_encoding(c) != 0)
            return -1;
        c->te_chunked = true;
        lx_http_chunked_init(&c->chunked, max_body, c->limits->max_header_size);
    } else if (p->flags & F_CONTENT_LENGTH) {
        if (p->content_length > max_body)
            return reject(c, 413, "request body too large");
        c->content_length = p->content_length;
    }
    *expect = lx_http_head_find(&r->head, "expect", 6);
    if (*expect != NULL && !lx_str_caseeq((*expect)->value, "100-continue", 12))
        return reject(c, 417, "unsupported Expect header");
    return 0;
}

/* The owner's admission, then the body's buffer (a Content-Length over DIRECT_BODY_MIN), charged
 * to the body memory cap first. 0, or -1 with the request rejected. */
static int admit(lx_http_parser_t *c)
{
    if (c->hooks != NULL && c->hooks->on_head != NULL) {
        const char *message = NULL, *headers = NULL;
        int status = c->hooks->on_head(c, &message, &headers);
        if (status != 0) {
            c->error_headers = headers;
            return reject(c, status, message != NULL ? message : lx_http_reason(status));
        }
    }
    if (c->content_length > DIRECT_BODY_MIN) {
        if (!body_charge(c, c->content_length)) {
            c->error_headers = "Retry-After: 1\r\n";
            return reject(c, 503, "too many request bodies in memory; retry shortly");
        }
        c->body_buf = lx_buf_new(c->content_length);
        if (c->body_buf == NULL) {
            body_uncharge(c, c->content_length);
            return reject(c, 500, "out of memory");
        }
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    lx_http_parser_t *c = parser_of(p);
    lx_http_request_t *r = c->req;
    lx_http_head_value_done(&r->head); /* (the others were trimmed as the next name began) */
    set_request_id(c);
    r->method = p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    const char *q = memchr(r->head.target.ptr, '?', r->head.target.len);
    r->path.ptr = r->head.target.ptr;
    r->path.len = q != NULL ? (size_t)(q - r->head.target.ptr) : r->head.target.len;
    /* Upgrade (h2c, websocket) is ignored, as RFC 9110 7.8 allows: the request is answered
     * over HTTP/1.1, and CONNECT is a request like any other for the application to refuse */
    p->upgrade = 0;
    const lx_http_header_t *expect = NULL;
    if (check_head(c, p, &expect) != 0 || admit(c) != 0)
        return -1;
    c->send_continue =
        expect != NULL && r->http_minor >= 1 && (c->content_length > 0 || c->te_chunked);
    c->state = LX_HTTP_PARSE_BODY;
    if (c->hooks != NULL && c->hooks->on_body != NULL)
        c->hooks->on_body(c);
    /* llhttp 8.1 ends a head at a CR followed by any byte (it skips the byte it takes for the
     * LF), which a front proxy may read as part of the head: RFC 9112 2.2 says refuse a bare
     * CR. The head's last byte is checked where its end is known without another pause: the
     * first body piece, or the pause at the message's end (no body, or chunked). */
    c->head_check = true;
    return c->te_chunked ? 1 : 0; /* 1: llhttp skips the body, http_chunked decodes it */
}

/* Grows the body buffer to hold at least <need> bytes: the exact Content-Length, or for a
 * chunked body the next power of two from 16 KiB. Every buffer is charged before it exists.
 * 0, or -1 with the request rejected. */
static int body_reserve(lx_http_parser_t *c, size_t need)
{
    lx_buf_t *b = c->body_buf;
    if (b != NULL && b->cap >= need)
        return 0;
    size_t cap;
    if (!c->te_chunked) {
        cap = (size_t)c->content_length; /* never more: the buffer may become a read target */
    } else {
        cap = b != NULL ? b->cap : DIRECT_BODY_MIN * 4;
        while (cap < need)
            cap *= 2;
        cap = (size_t)LX_MIN((uint64_t)cap, c->chunked.limit);
    }
    if (cap < need)
        return reject(c, 413, "request body too large");
    /* a growing buffer is charged for what it adds: the old one is freed in this call, so a
     * body of max_body_size fits whenever max_body_memory is free (the config's promise) */
    uint64_t more = cap - (b != NULL ? b->cap : 0);
    if (!body_charge(c, more)) {
        c->error_headers = "Retry-After: 1\r\n";
        return reject(c, 503, "too many request bodies in memory; retry shortly");
    }
    lx_buf_t *nb = lx_buf_new(cap);
    if (nb == NULL) {
        body_uncharge(c, more);
        return reject(c, 500, "out of memory");
    }
    if (b != NULL) {
        /* only chunked bodies grow, and those are never read into directly */
        memcpy(nb->data, b->data, b->len);
        nb->len = b->len;
        lx_buf_unref(b);
    }
    c->body_buf = nb;
    return 0;
}

/* Adds body bytes [at, at+len): a view while they continue the body in its chunk, else
 * gathered in the body buffer. 0, or -1 with the request rejected. */
static int body_append(lx_http_parser_t *c, const char *at, size_t len)
{
    lx_http_request_t *r = c->req;
    lx_str_t *body = &r->body;
    if (c->body_buf == NULL) {
        /* Still within the chunk the head is in (or appended to it): a view, no copy. */
        if (body->len == 0 || body->ptr + body->len == at) {
            if (lx_http_head_hold(&r->head, c->cur) == 0) {
                if (body->len == 0) {
                    body->ptr = at;
                    r->body_owner = c->cur;
                }
                body->len += len;
                return 0;
            }
        }
    } else if (at == c->body_buf->data + body->len) {
        body->len += len; /* the read landed straight in the body buffer */
        body->ptr = c->body_buf->data;
        r->body_owner = c->body_buf;
        return 0;
    }
    /* The body continues elsewhere: gather it in the body buffer (invariant: the buffer's
     * len equals body->len, and body->ptr points at its start). */
    bool had_buf = c->body_buf != NULL;
    if (body_reserve(c, body->len + len) != 0)
        return -1;
    lx_buf_t *b = c->body_buf;
    if (!had_buf && body->len > 0)
        memcpy(b->data, body->ptr, body->len);
    memcpy(b->data + body->len, at, len);
    body->len += len;
    body->ptr = b->data;
    r->body_owner = b;
    b->len = (uint32_t)body->len;
    return 0;
}

/* The head's last byte, just before <end> (in the bytes being parsed, or the last byte of the
 * read before), must be the LF of its final line. */
static bool head_end_ok(lx_http_parser_t *c, const char *end)
{
    c->head_check = false;
    return (end > c->exec_at ? end[-1] : c->last_byte) == '\n';
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    lx_http_parser_t *c = parser_of(p);
    if (c->head_check && !head_end_ok(c, at))
        return reject(c, 400, "malformed HTTP request: CR not followed by LF");
    return body_append(c, at, len);
}

static int on_message_complete(llhttp_t *p)
{
    lx_http_parser_t *c = parser_of(p);
    if (c->state == LX_HTTP_PARSE_BODY && c->te_chunked) {
        c->in_chunked = true; /* llhttp is done with the head: the chunked body follows */
        return HPE_PAUSED;
    }
    c->state = LX_HTTP_PARSE_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method_complete = on_method_complete,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void lx_http_parser_init(lx_http_parser_t *p, lx_http_request_t *req,
                         const lx_http_server_limits_t *limits, uint64_t *id_state,
                         const lx_http_parser_hooks_t *hooks, void *data)
{
    memset(p, 0, sizeof(*p));
    p->req = req;
    p->limits = limits;
    p->id_state = id_state;
    p->hooks = hooks;
    p->data = data;
    p->state = LX_HTTP_PARSE_IDLE;
    lx_http_head_init(&req->head);
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
}

/* Decodes chunked body bytes; returns how many it used (all of them after an error). */
static size_t parse_chunked(lx_http_parser_t *c, const char *data, size_t len)
{
    size_t used;
    lx_str_t piece;
    int rc = lx_http_chunked_parse(&c->chunked, data, len, &used, &piece);
    c->req->bytes_in += used;
    if (piece.len > 0 && body_append(c, piece.ptr, piece.len) != 0)
        return len;
    if (rc == LX_CHUNKED_DONE) {
        c->in_chunked = false;
        c->state = LX_HTTP_PARSE_DONE;
    } else if (rc < 0) {
        int status = rc == LX_EPARSE                                   ? 400
                     : lx_http_chunked_trailers_too_large(&c->chunked) ? 431
                                                                       : 413;
        reject_detail(c, status, status == 400 ? "malformed HTTP request: " : "", c->chunked.error);
        return len;
    }
    return used;
}

/* llhttp stopped at an error: a callback's rejection, or its own reason (400). */
static void llhttp_failed(lx_http_parser_t *c)
{
    if (c->state == LX_HTTP_PARSE_ERROR)
        return;
    reject_detail(c, 400, "malformed HTTP request: ", llhttp_get_error_reason(&c->llhttp));
}

size_t lx_http_parser_feed(lx_http_parser_t *c, lx_buf_t *b, const char *data, size_t len)
{
    size_t off = 0;
    c->cur = b;
    while (off < len && c->state < LX_HTTP_PARSE_DONE) {
        if (c->in_chunked) {
            off += parse_chunked(c, data + off, len - off);
            continue;
        }
        const char *at = data + off;
        c->exec_at = at;
        llhttp_errno_t err = llhttp_execute(&c->llhttp, at, len - off);
        if (err == HPE_OK) {
            c->req->bytes_in += len - off;
            off = len;
            break;
        }
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->llhttp);
            size_t used = (size_t)(pos - at);
            c->req->bytes_in += used;
            off += used;
            if (c->head_check && !head_end_ok(c, pos)) {
                reject(c, 400, "malformed HTTP request: CR not followed by LF");
                off = len;
                break;
            }
            if (c->state == LX_HTTP_PARSE_BODY)
                llhttp_resume(&c->llhttp); /* a chunked body starts: decoded above */
            continue;
        }
        llhttp_failed(c);
        off = len;
    }
    c->cur = NULL;
    /* (after a refusal the owner may drop the chunk: its byte no longer matters) */
    if (off > 0 && c->state != LX_HTTP_PARSE_ERROR)
        c->last_byte = data[off - 1];
    return off;
}

void lx_http_parser_reset(lx_http_parser_t *c)
{
    lx_http_request_t *r = c->req;
    lx_http_head_reset(&r->head);
    lx_http_parser_body_drop(c);
    r->method = 0;
    r->path = (lx_str_t){NULL, 0};
    r->body = (lx_str_t){NULL, 0};
    r->body_owner = NULL;
    r->bytes_in = 0;
    r->id_len = 0;
    r->keep_alive = false;
    c->state = LX_HTTP_PARSE_IDLE;
    c->error_status = 0;
    c->error_message = NULL;
    c->error_detail = NULL;
    c->error_headers = NULL;
    c->head_bytes = 0;
    c->content_length = 0;
    c->te_chunked = c->in_chunked = false;
    llhttp_resume(&c->llhttp); /* (paused at the end of the request just done) */
}

/* Moves a small request (target, headers, and a body that is still a view) out of the read
 * chunk(s) into one buffer of its size (a small pool chunk up to 2 KiB, rounded up to a power
 * of two; exact above), so a request that lives long (a stream) pins a few hundred bytes
 * instead of a 16 KiB chunk. Large heads keep their chunks. */
#define COMPACT_MAX 8192

void lx_http_parser_compact(lx_http_parser_t *c, lx_buf_pool_t *pool)
{
    lx_http_request_t *r = c->req;
    lx_http_head_t *h = &r->head;
    bool body_view = c->body_buf == NULL && r->body.len > 0;
    size_t strings = h->target.len + (body_view ? r->body.len : 0);
    for (unsigned i = 0; i < h->n_headers; i++)
        strings += h->headers[i].name.len + h->headers[i].value.len;
    size_t table_off = (strings + 7) & ~(size_t)7;
    size_t need = table_off + h->n_headers * sizeof(lx_http_header_t);
    if (strings > COMPACT_MAX || h->n_held == 0)
        return;
    lx_buf_t *nb = lx_buf_pool_get_small(pool, need > 0 ? need : 1);
    if (nb == NULL)
        return; /* keep the chunks: correct, only bigger */
    char *p = nb->data;
#define MOVE(str)                                                                                  \
    do {                                                                                           \
        memcpy(p, (str).ptr, (str).len);                                                           \
        (str).ptr = p;                                                                             \
        p += (str).len;                                                                            \
    } while (0)
    size_t path_off = (size_t)(r->path.ptr - h->target.ptr);
    MOVE(h->target);
    r->path.ptr = h->target.ptr + path_off;
    lx_http_header_t *table = (lx_http_header_t *)(void *)(nb->data + table_off);
    for (unsigned i = 0; i < h->n_headers; i++) {
        table[i] = h->headers[i];
        MOVE(table[i].name);
        MOVE(table[i].value);
    }
    if (body_view) {
        MOVE(r->body);
        r->body_owner = nb;
    }
#undef MOVE
    nb->len = (uint32_t)need;
    h->headers = h->n_headers > 0 ? table : NULL;
    lx_http_head_adopt(h, nb);
}
