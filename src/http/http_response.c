/*
 * http_response.c - the output half of the downstream server: response heads, bodies (as they
 * are, or in chunked framing), the end of a response, and the error envelope.
 *
 * A head is held back and leaves with the first body bytes in one write. Chunked framing comes
 * from one chunk shared by every connection of the worker (appended to, never rewritten), so
 * framing costs no allocation per write. Every write completes in lx_http_conn_on_write
 * (http_server.c), which moves the connection on once the handler has finished.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "http/http_server_int.h"

/* Queued bytes over which the handler is told to wait for on_drain. */
#define HIGH_WATER (32 * 1024)

/* The reason phrase of a status: a flat switch table, one case per status. */
const char *lx_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 524:
        return "A Timeout Occurred";
    case 529:
        return "Site Overloaded";
    default:
        break;
    }
    switch (status / 100) {
    case 1:
        return "Informational";
    case 2:
        return "Success";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    case 5:
        return "Server Error";
    default:
        return "Unknown";
    }
}

int lx_http_server_send_head(lx_http_request_t *req, int status, const char *headers,
                             size_t headers_len, int64_t content_length)
{
    lx_http_conn_t *c = req->conn;
    if (req->head_sent)
        return LX_EPARSE;
    req->head_sent = true;
    req->status = status;
    if (c->closing)
        return UV_ECANCELED;
    bool http10 = req->http_major == 1 && req->http_minor == 0;
    if (c->srv->draining)
        req->keep_alive = false;
    lx_buf_t *b = lx_buf_pool_get(&c->stream.worker->bufs);
    if (b == NULL)
        return LX_ENOMEM;
    lx_strbuf_t sb = lx_strbuf_make(b->data, b->cap);
    LX_STRBUF_LIT(&sb, "HTTP/1.1 ");
    lx_strbuf_u64(&sb, (uint64_t)status);
    LX_STRBUF_LIT(&sb, " ");
    lx_strbuf_str(&sb, lx_http_reason(status));
    LX_STRBUF_LIT(&sb, "\r\nX-Request-Id: ");
    lx_strbuf_mem(&sb, req->id, req->id_len);
    LX_STRBUF_LIT(&sb, "\r\n");
    if (status == 204 || status == 304 || status < 200) {
        /* no body by definition (RFC 9110 6.4.1, 15.3.5): no framing at all, whatever the
         * caller relays; a 304 may keep the Content-Length of what it stands for (8.6) */
        if (status == 304 && content_length >= 0) {
            LX_STRBUF_LIT(&sb, "Content-Length: ");
            lx_strbuf_u64(&sb, (uint64_t)content_length);
            LX_STRBUF_LIT(&sb, "\r\n");
        }
    } else if (content_length >= 0) {
        LX_STRBUF_LIT(&sb, "Content-Length: ");
        lx_strbuf_u64(&sb, (uint64_t)content_length);
        LX_STRBUF_LIT(&sb, "\r\n");
    } else if (!http10) {
        LX_STRBUF_LIT(&sb, "Transfer-Encoding: chunked\r\n");
        req->chunked = true;
    } else {
        req->keep_alive = false; /* the close marks the end */
    }
    if (!req->keep_alive)
        LX_STRBUF_LIT(&sb, "Connection: close\r\n");
    else if (http10)
        LX_STRBUF_LIT(&sb, "Connection: keep-alive\r\n");
    size_t n = lx_strbuf_len(&sb, b->data);
    if (sb.overflow || n + headers_len + 2 > b->cap) {
        lx_buf_unref(b);
        return LX_ETOOBIG;
    }
    if (headers_len > 0)
        memcpy(b->data + n, headers, headers_len);
    memcpy(b->data + n + headers_len, "\r\n", 2);
    b->len = (uint32_t)(n + headers_len + 2);
    req->bytes_out += b->len;
    /* held back: it leaves with the first body bytes, in the same write */
    c->head_out = (lx_slice_t){b, 0, b->len};
    c->head_pending = true;
    return 0;
}

/* A slice of chunked-encoding framing: the size line of a chunk of <size> bytes, or the CRLF
 * that ends one (<size_line> false). Framing from every connection of the worker is appended
 * to one shared chunk (bytes below its len never change, so sharing is safe), so it costs no
 * allocation per write and no chunk per connection: thousands of quiet streams pin nothing. */
static int frame_text(lx_http_conn_t *c, lx_slice_t *out, bool size_line, size_t size)
{
    lx_http_server_t *srv = c->srv;
    if (srv->frame == NULL || lx_buf_avail(srv->frame) < 32) {
        lx_buf_unref(srv->frame);
        srv->frame = lx_buf_pool_get(&c->stream.worker->bufs);
        if (srv->frame == NULL)
            return LX_ENOMEM;
    }
    lx_buf_t *f = srv->frame;
    lx_strbuf_t sb = lx_strbuf_make(lx_buf_tail(f), 32);
    if (size_line)
        lx_strbuf_hex(&sb, size, 1);
    LX_STRBUF_LIT(&sb, "\r\n");
    size_t n = lx_strbuf_len(&sb, lx_buf_tail(f));
    *out = lx_slice_make(f, f->len, n);
    f->len += (uint32_t)n;
    return 0;
}

/* Slices one write may carry: a batch from the relay plus the head and the framing. */
#define SEND_MAX (LX_WORKER_BATCH + 3)

/* Writes [the pending head] [<slices>] in one call (one writev when the socket takes it). */
static int write_out(lx_http_conn_t *c, lx_slice_t *slices, size_t n)
{
    if (!c->head_pending)
        return lx_stream_write(&c->stream, slices, n, lx_http_conn_on_write, c);
    lx_slice_t all[SEND_MAX];
    if (n + 1 > SEND_MAX) {
        c->head_pending = false;
        int rc = lx_stream_write(&c->stream, &c->head_out, 1, lx_http_conn_on_write, c);
        if (rc != 0) {
            for (size_t i = 0; i < n; i++)
                lx_buf_unref(slices[i].buf);
            return rc;
        }
        return lx_stream_write(&c->stream, slices, n, lx_http_conn_on_write, c);
    }
    all[0] = c->head_out;
    if (n > 0)
        memcpy(all + 1, slices, n * sizeof(*slices));
    c->head_pending = false;
    return lx_stream_write(&c->stream, all, n + 1, lx_http_conn_on_write, c);
}

/* A slice holding the fixed text <t> (the terminating chunk), from the framing chunk. */
static int frame_last(lx_http_conn_t *c, lx_slice_t *out, const char *t, size_t len)
{
    lx_http_server_t *srv = c->srv;
    if (srv->frame == NULL || lx_buf_avail(srv->frame) < len) {
        lx_buf_unref(srv->frame);
        srv->frame = lx_buf_pool_get(&c->stream.worker->bufs);
        if (srv->frame == NULL)
            return LX_ENOMEM;
    }
    lx_buf_t *f = srv->frame;
    memcpy(lx_buf_tail(f), t, len);
    *out = lx_slice_make(f, f->len, len);
    f->len += (uint32_t)len;
    return 0;
}

/* Body bytes, framed when chunked; with <last>, the terminating chunk follows in the same
 * write. */
static int send_body(lx_http_request_t *req, lx_slice_t *slices, size_t n, bool last)
{
    lx_http_conn_t *c = req->conn;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += slices[i].len;
    if (c->closing || total == 0 || n > LX_WORKER_BATCH) {
        for (size_t i = 0; i < n; i++)
            lx_buf_unref(slices[i].buf);
        return c->closing ? UV_ECANCELED : total == 0 ? 0 : LX_ETOOBIG;
    }
    req->bytes_out += total;
    int rc;
    if (req->chunked) {
        /* the chunk's size line, the payload and its CRLF (and the last chunk) go out in one
         * write */
        static const char end[] = "\r\n0\r\n\r\n";
        lx_slice_t framed[LX_WORKER_BATCH + 2];
        if ((rc = frame_text(c, &framed[0], true, total)) != 0) {
            for (size_t i = 0; i < n; i++)
                lx_buf_unref(slices[i].buf);
            return rc;
        }
        memcpy(framed + 1, slices, n * sizeof(*slices));
        rc = last ? frame_last(c, &framed[n + 1], end, sizeof(end) - 1)
                  : frame_text(c, &framed[n + 1], false, 0);
        if (rc != 0) {
            for (size_t i = 0; i < n + 1; i++)
                lx_buf_unref(framed[i].buf);
            return rc;
        }
        req->bytes_out += framed[0].len + framed[n + 1].len;
        req->last_chunk_sent = last;
        rc = write_out(c, framed, n + 2);
    } else {
        rc = write_out(c, slices, n);
    }
    if (rc == 0 && c->stream.queued > HIGH_WATER)
        req->want_drain = true;
    return rc;
}

int lx_http_server_send_body(lx_http_request_t *req, lx_slice_t *slices, size_t n)
{
    return send_body(req, slices, n, false);
}

int lx_http_server_send_body_end(lx_http_request_t *req, lx_slice_t *slices, size_t n)
{
    return send_body(req, slices, n, true);
}

int lx_http_server_send(lx_http_request_t *req, const char *data, size_t len)
{
    lx_http_conn_t *c = req->conn;
    if (len == 0)
        return 0;
    if (c->closing)
        return UV_ECANCELED;
    lx_buf_t *b = lx_buf_new(len);
    if (b == NULL)
        return LX_ENOMEM;
    memcpy(b->data, data, len);
    b->len = (uint32_t)len;
    lx_slice_t sl = {b, 0, (uint32_t)len};
    return lx_http_server_send_body(req, &sl, 1);
}

int lx_http_server_flush(lx_http_request_t *req)
{
    lx_http_conn_t *c = req->conn;
    if (!c->head_pending || c->closing)
        return 0;
    return write_out(c, NULL, 0);
}

void lx_http_server_finish(lx_http_request_t *req)
{
    lx_http_conn_t *c = req->conn;
    LX_ASSERT(c->owned);
    req->finished = true;
    if (!req->head_sent) {
        lx_http_server_respond_error(req, 500, NULL, "the handler sent no response");
        return;
    }
    int rc = 0;
    if (req->chunked && !req->last_chunk_sent && !c->closing) {
        static const char last[] = "0\r\n\r\n";
        lx_slice_t sl;
        if ((rc = frame_last(c, &sl, last, sizeof(last) - 1)) == 0) {
            req->bytes_out += sl.len;
            rc = write_out(c, &sl, 1);
        }
    } else if (c->head_pending && !c->closing) {
        rc = write_out(c, NULL, 0);
    }
    if (rc != 0)
        lx_http_conn_close(c, true);
    lx_http_conn_release(c);
}

void lx_http_server_abort(lx_http_request_t *req)
{
    lx_http_conn_t *c = req->conn;
    LX_ASSERT(c->owned);
    req->finished = true;
    req->keep_alive = false;
    lx_http_conn_close(c, true);
    lx_http_conn_release(c);
}

void lx_http_server_respond(lx_http_request_t *req, int status, const char *headers,
                            size_t headers_len, const char *body, size_t body_len)
{
    /* a HEAD request gets the head of the answer it would have had */
    if (lx_http_server_send_head(req, status, headers, headers_len, (int64_t)body_len) == 0 &&
        req->method != HTTP_HEAD)
        lx_http_server_send(req, body, body_len);
    lx_http_server_finish(req);
}

size_t lx_http_format_error(lx_http_server_t *srv, const lx_http_request_t *req, char *buf,
                            size_t cap, int status, const char *message)
{
    if (srv->format_error != NULL)
        return srv->format_error(req, buf, cap, status, message);
    int n = snprintf(buf, cap, "%s\n", message);
    return n < 0 ? 0 : LX_MIN((size_t)n, cap - 1);
}
void lx_http_server_respond_error(lx_http_request_t *req, int status, const char *headers,
                                  const char *message)
{
    if (req->head_sent) {
        lx_http_server_abort(req);
        return;
    }
    char body[2048];
    size_t n = lx_http_format_error(req->conn->srv, req, body, sizeof(body), status, message);
    char head[512];
    int hn = snprintf(head, sizeof(head), "Content-Type: application/json\r\n%s",
                      headers != NULL ? headers : "");
    if (hn < 0 || (size_t)hn >= sizeof(head))
        hn = 0;
    lx_http_server_respond(req, status, head, (size_t)hn, body, n);
}

const lx_http_header_t *lx_http_request_header(const lx_http_request_t *req, const char *name)
{
    return lx_http_head_find(&req->head, name, strlen(name));
}
