/*
 * http_server.c - downstream HTTP/1.1 connections: parse, limit, hand over, respond, repeat.
 *
 * Connection states:
 *
 *   IDLE ──first byte──> HEAD ──headers──> BODY ──message complete──> OUT (handler owns req)
 *     ^                                                                 │ finish + writes done
 *     └──────────────── keep-alive (pipelined input replayed) ──────────┘
 *   any error ──> LINGER (answer written, input discarded briefly) ──> closed
 *
 * Input that arrives while a request is out is queued as slices (bounded) and replayed after
 * the response, so pipelined requests are answered in order and an EOF is noticed at once
 * (a client leaving mid-request is a cancellation). One timer per connection serves whichever
 * deadline the state has: head, body, keep-alive idle or linger. The deadline is a field; the
 * timer is re-armed only when a deadline comes before the time it is armed for, and when it
 * fires early it re-arms for what is left. A keep-alive request thus touches libuv's timer heap
 * about once per header timeout instead of four times.
 */
#include "http/http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"

enum conn_state { ST_IDLE, ST_HEAD, ST_BODY, ST_OUT, ST_LINGER, ST_CLOSED };

#define MAX_PENDING       16
#define MAX_PENDING_BYTES (64 * 1024)
/* Bodies larger than this are read into a buffer of their exact size, not chunk by chunk. */
#define DIRECT_BODY_MIN 4096
#define LINGER_MS       1000
#define HIGH_WATER      (32 * 1024)
#define LOW_WATER       (8 * 1024)

struct lx_http_conn {
    lx_stream_t stream;
    uv_timer_t timer;
    uint64_t deadline;  /* loop time (ms) the state's deadline falls due; 0: none */
    uint64_t timer_due; /* loop time the timer is armed for on_timer; 0: not so armed */
    lx_list_t link;
    lx_http_server_t *srv;
    llhttp_t parser;
    lx_http_request_t req;
    enum conn_state state;
    int error_status; /* set by a parser callback that rejects the request */
    const char *error_message;
    lx_buf_t *cur;       /* chunk being parsed */
    lx_slice_t head_out; /* the response head, held until the first body write */
    bool head_pending;
    lx_buf_t *body_buf; /* contiguous body when it outgrew its first chunk */
    uint64_t head_bytes;
    uint64_t content_length; /* declared, 0 when chunked or none */
    lx_slice_t pending[MAX_PENDING];
    unsigned n_pending;
    size_t pending_bytes;
    unsigned open_handles;
    bool owned; /* the handler holds req */
    bool closing;
    bool done_deferred;
};

static const llhttp_settings_t settings;

static uint64_t next_id(lx_http_server_t *srv)
{
    uint64_t x = srv->id_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    srv->id_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A generated request id: 16 hex digits of the worker's id generator. */
static void format_id(struct lx_http_conn *c, lx_http_request_t *r)
{
    lx_strbuf_t sb = lx_strbuf_make(r->id, sizeof(r->id) - 1);
    lx_strbuf_hex(&sb, next_id(c->srv), 16);
    r->id_len = (uint8_t)lx_strbuf_len(&sb, r->id);
    r->id[r->id_len] = '\0';
}

void lx_http_server_init(lx_http_server_t *srv, lx_worker_t *w,
                         const lx_http_server_limits_t *limits)
{
    memset(srv, 0, sizeof(*srv));
    srv->worker = w;
    srv->limits = *limits;
    lx_list_init(&srv->conns);
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = uv_hrtime();
    srv->id_state = seed | 1;
}

/* --- closing -------------------------------------------------------------------------- */

static void maybe_free(lx_http_conn_t *c)
{
    if (c->open_handles > 0 || c->owned)
        return;
    lx_http_server_t *srv = c->srv;
    for (unsigned i = 0; i < c->n_pending; i++)
        lx_buf_unref(c->pending[i].buf);
    lx_http_head_reset(&c->req.head);
    lx_buf_unref(c->body_buf);
    if (c->head_pending)
        lx_buf_unref(c->head_out.buf);
    lx_list_remove(&c->link);
    srv->n_conns--;
    free(c);
    if (srv->draining && srv->n_conns == 0 && srv->on_idle != NULL)
        srv->on_idle(srv);
}

static void on_handle_closed(uv_handle_t *h)
{
    lx_http_conn_t *c = h->data;
    c->open_handles--;
    maybe_free(c);
}

static void on_stream_closed(lx_stream_t *s)
{
    lx_http_conn_t *c = s->data;
    c->open_handles--;
    maybe_free(c);
}

static void conn_close(lx_http_conn_t *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    c->state = ST_CLOSED;
    c->deadline = 0;
    c->timer_due = 0;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    lx_stream_close(&c->stream, reset, on_stream_closed);
}

/* --- timers --------------------------------------------------------------------------- */

static void send_error_and_close(lx_http_conn_t *c, int status, const char *message);

static void on_timer(uv_timer_t *t)
{
    lx_http_conn_t *c = t->data;
    c->timer_due = 0;
    if (c->deadline == 0)
        return; /* armed for a deadline that was lifted since */
    uint64_t now = uv_now(t->loop);
    if (now < c->deadline) {
        /* armed for an earlier deadline that was moved later since: wait for the rest */
        c->timer_due = c->deadline;
        uv_timer_start(t, on_timer, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    switch (c->state) {
    case ST_IDLE:
    case ST_LINGER:
        conn_close(c, false);
        break;
    case ST_HEAD:
        send_error_and_close(c, 408, "timed out reading the request head");
        break;
    case ST_BODY:
        send_error_and_close(c, 408, "timed out reading the request body");
        break;
    default:
        break;
    }
}

/* The state's deadline is <ms> from now. The timer moves only when it would fire too late. */
static void arm(lx_http_conn_t *c, uint64_t ms)
{
    uint64_t due = uv_now(c->timer.loop) + ms;
    c->deadline = due;
    if (c->done_deferred)
        return; /* the timer waits for request_done, which sets the next deadline */
    if (c->timer_due != 0 && c->timer_due <= due)
        return; /* fires earlier, finds the deadline not reached and re-arms for the rest */
    c->timer_due = due;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* The state has no deadline. The timer may still fire; it then finds nothing to do. */
static void disarm(lx_http_conn_t *c)
{
    c->deadline = 0;
}

/* --- request lifecycle ------------------------------------------------------------------- */

static void reset_request(lx_http_conn_t *c)
{
    lx_http_request_t *r = &c->req;
    lx_http_head_reset(&r->head);
    lx_buf_unref(c->body_buf);
    c->body_buf = NULL;
    r->method = 0;
    r->path = (lx_str_t){NULL, 0};
    r->body = (lx_str_t){NULL, 0};
    r->body_owner = NULL;
    r->bytes_in = r->bytes_out = 0;
    r->status = 0;
    r->id_len = 0;
    r->head_sent = r->chunked = r->finished = r->peer_gone = r->want_drain = false;
    r->last_chunk_sent = false;
    r->keep_alive = false;
    r->on_abort = NULL;
    r->on_drain = NULL;
    r->data = NULL;
    c->error_status = 0;
    c->error_message = NULL;
    c->head_bytes = 0;
    c->content_length = 0;
}

static void feed(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len);

static void replay_pending(lx_http_conn_t *c)
{
    while (c->n_pending > 0 && c->state == ST_IDLE) {
        lx_slice_t s = c->pending[0];
        memmove(&c->pending[0], &c->pending[1], (c->n_pending - 1) * sizeof(s));
        c->n_pending--;
        c->pending_bytes -= s.len;
        feed(c, s.buf, lx_slice_ptr(&s), s.len);
        lx_buf_unref(s.buf);
    }
}

/* The response is complete on the wire: log, then keep-alive or close. */
static void request_done(lx_http_conn_t *c)
{
    lx_http_server_t *srv = c->srv;
    if (srv->on_done != NULL)
        srv->on_done(&c->req);
    bool keep = c->req.keep_alive && !c->req.peer_gone && !srv->draining && !c->closing;
    reset_request(c);
    if (!keep) {
        conn_close(c, false);
        return;
    }
    c->state = ST_IDLE;
    llhttp_resume(&c->parser);
    arm(c, srv->limits.keepalive_timeout_ms);
    replay_pending(c);
    if (c->state == ST_IDLE && !c->stream.reading && !c->closing)
        lx_stream_read_start(&c->stream, c->stream.on_read);
}

static void on_deferred_done(uv_timer_t *t)
{
    lx_http_conn_t *c = t->data;
    c->done_deferred = false;
    request_done(c);
}

static void release(lx_http_conn_t *c)
{
    c->owned = false;
    c->srv->n_active--;
    if (c->closing) {
        /* the client left: nothing more goes out, log and free */
        if (c->srv->on_done != NULL)
            c->srv->on_done(&c->req);
        reset_request(c);
        maybe_free(c);
        return;
    }
    if (c->stream.writes_pending == 0 && !c->done_deferred) {
        /* nothing in flight: finish on the next loop turn, never inside the handler's call */
        c->done_deferred = true;
        c->timer_due = 0; /* (the timer serves the deferral now) */
        uv_timer_start(&c->timer, (uv_timer_cb)on_deferred_done, 0, 0);
    }
}

static void on_write(lx_stream_t *s, int status, void *arg)
{
    lx_http_conn_t *c = arg;
    (void)s;
    if (status < 0) {
        if (c->owned && !c->req.peer_gone) {
            c->req.peer_gone = true;
            if (c->req.on_abort != NULL)
                c->req.on_abort(&c->req);
        }
        if (!c->owned && c->state != ST_CLOSED)
            conn_close(c, false);
        return;
    }
    if (c->owned) {
        if (c->req.want_drain && c->stream.queued <= LOW_WATER) {
            c->req.want_drain = false;
            if (c->req.on_drain != NULL)
                c->req.on_drain(&c->req);
        }
        return;
    }
    if (c->stream.writes_pending > 0 || c->done_deferred)
        return;
    if (c->state == ST_LINGER)
        arm(c, LINGER_MS);
    else if (c->state == ST_OUT)
        request_done(c);
}

/* --- responses ----------------------------------------------------------------------------- */

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
    if (content_length >= 0) {
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
        return lx_stream_write(&c->stream, slices, n, on_write, c);
    lx_slice_t all[SEND_MAX];
    if (n + 1 > SEND_MAX) {
        c->head_pending = false;
        int rc = lx_stream_write(&c->stream, &c->head_out, 1, on_write, c);
        if (rc != 0) {
            for (size_t i = 0; i < n; i++)
                lx_buf_unref(slices[i].buf);
            return rc;
        }
        return lx_stream_write(&c->stream, slices, n, on_write, c);
    }
    all[0] = c->head_out;
    if (n > 0)
        memcpy(all + 1, slices, n * sizeof(*slices));
    c->head_pending = false;
    return lx_stream_write(&c->stream, all, n + 1, on_write, c);
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
        conn_close(c, true);
    release(c);
}

void lx_http_server_abort(lx_http_request_t *req)
{
    lx_http_conn_t *c = req->conn;
    LX_ASSERT(c->owned);
    req->finished = true;
    req->keep_alive = false;
    conn_close(c, true);
    release(c);
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

static size_t format_error(lx_http_server_t *srv, const lx_http_request_t *req, char *buf,
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
    size_t n = format_error(req->conn->srv, req, body, sizeof(body), status, message);
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

/* A request the server itself rejects: answer, then linger and close. */
static void send_error_and_close(lx_http_conn_t *c, int status, const char *message)
{
    lx_http_request_t *r = &c->req;
    if (c->closing)
        return;
    if (r->id_len == 0)
        format_id(c, r);
    r->keep_alive = false;
    char body[1024];
    size_t n = format_error(c->srv, r, body, sizeof(body), status, message);
    static const char ct[] = "Content-Type: application/json\r\n";
    c->state = ST_LINGER;
    disarm(c);
    int rc = lx_http_server_send_head(r, status, ct, sizeof(ct) - 1, (int64_t)n);
    if (rc == 0)
        rc = lx_http_server_send(r, body, n);
    if (c->srv->on_done != NULL)
        c->srv->on_done(r);
    /* the request is gone; keep the answer's bytes and discard input until the linger ends */
    lx_http_head_reset(&r->head);
    lx_buf_unref(c->body_buf);
    c->body_buf = NULL;
    if (rc != 0)
        conn_close(c, true);
}

/* --- parsing -------------------------------------------------------------------------------- */

static lx_http_conn_t *conn_of(llhttp_t *p)
{
    return p->data;
}

static int reject(lx_http_conn_t *c, int status, const char *message)
{
    c->error_status = status;
    c->error_message = message;
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    lx_http_conn_t *c = conn_of(p);
    c->state = ST_HEAD;
    c->req.start_ms = uv_now(&c->stream.worker->loop);
    arm(c, c->srv->limits.header_timeout_ms);
    return 0;
}

static int count_head(lx_http_conn_t *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > c->srv->limits.max_header_size)
        return reject(c, 431, "request header fields too large");
    return 0;
}

static int head_error(lx_http_conn_t *c, int rc)
{
    if (rc == LX_ENOMEM)
        return reject(c, 500, "out of memory");
    return reject(c, 431, "request header fields too large");
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    lx_http_conn_t *c = conn_of(p);
    lx_http_head_t *h = &c->req.head;
    int rc;
    if (count_head(c, len) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_span(h, &h->target, at, len, c->srv->limits.max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    lx_http_conn_t *c = conn_of(p);
    lx_http_head_t *h = &c->req.head;
    int rc;
    if (count_head(c, len + 4) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_name(h, at, len, c->srv->limits.max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    lx_http_head_name_done(&conn_of(p)->req.head);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    lx_http_conn_t *c = conn_of(p);
    lx_http_head_t *h = &c->req.head;
    int rc;
    if (count_head(c, len) != 0)
        return -1;
    if ((rc = lx_http_head_hold(h, c->cur)) != 0 ||
        (rc = lx_http_head_value(h, at, len, c->srv->limits.max_header_size)) != 0)
        return head_error(c, rc);
    return 0;
}

static bool id_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

static void set_request_id(lx_http_conn_t *c)
{
    lx_http_request_t *r = &c->req;
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
    format_id(c, r);
}

static int on_headers_complete(llhttp_t *p)
{
    lx_http_conn_t *c = conn_of(p);
    lx_http_request_t *r = &c->req;
    lx_http_server_t *srv = c->srv;
    set_request_id(c);
    if (p->http_major != 1) {
        /* llhttp takes a request line without a version as HTTP/0.9 */
        return p->http_major == 0 ? reject(c, 400, "malformed request line: no HTTP version")
                                  : reject(c, 505, "only HTTP/1.x is supported");
    }
    if (r->head.too_many)
        return reject(c, 431, "too many request header fields");
    r->method = p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    const char *q = memchr(r->head.target.ptr, '?', r->head.target.len);
    r->path.ptr = r->head.target.ptr;
    r->path.len = q != NULL ? (size_t)(q - r->head.target.ptr) : r->head.target.len;
    if (p->flags & F_CONTENT_LENGTH) {
        if (p->content_length > srv->limits.max_body_size)
            return reject(c, 413, "request body too large");
        c->content_length = p->content_length;
    }
    const lx_http_header_t *expect = lx_http_head_find(&r->head, "expect", 6);
    if (expect != NULL) {
        if (!lx_str_caseeq(expect->value, "100-continue", 12))
            return reject(c, 417, "unsupported Expect header");
        if (r->http_minor >= 1)
            lx_stream_write_copy(&c->stream, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, NULL);
    }
    if (c->content_length > DIRECT_BODY_MIN) {
        c->body_buf = lx_buf_new(c->content_length);
        if (c->body_buf == NULL)
            return reject(c, 500, "out of memory");
        lx_stream_read_into(&c->stream, c->body_buf);
    }
    c->state = ST_BODY;
    arm(c, srv->limits.body_timeout_ms);
    return 0;
}

/* Grows the body buffer to hold at least <need> bytes (chunked bodies of unknown size). */
static int body_reserve(lx_http_conn_t *c, size_t need)
{
    lx_buf_t *b = c->body_buf;
    if (b != NULL && b->cap >= need)
        return 0;
    size_t cap = b != NULL ? b->cap : DIRECT_BODY_MIN * 4;
    while (cap < need)
        cap *= 2;
    cap = LX_MIN(cap, (size_t)c->srv->limits.max_body_size);
    if (cap < need)
        return LX_ETOOBIG;
    lx_buf_t *nb = lx_buf_new(cap);
    if (nb == NULL)
        return LX_ENOMEM;
    if (b != NULL) {
        /* only chunked bodies grow, and those are never read into directly */
        memcpy(nb->data, b->data, b->len);
        nb->len = b->len;
        lx_buf_unref(b);
    }
    c->body_buf = nb;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    lx_http_conn_t *c = conn_of(p);
    lx_http_request_t *r = &c->req;
    lx_str_t *body = &r->body;
    if (body->len + len > c->srv->limits.max_body_size)
        return reject(c, 413, "request body too large");
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
    int rc = body_reserve(c, body->len + len);
    if (rc != 0)
        return reject(c, rc == LX_ETOOBIG ? 413 : 500,
                      rc == LX_ETOOBIG ? "request body too large" : "out of memory");
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

static int on_message_complete(llhttp_t *p)
{
    lx_http_conn_t *c = conn_of(p);
    c->state = ST_OUT;
    disarm(c);
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void queue_pending(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len)
{
    if (c->n_pending == MAX_PENDING || c->pending_bytes + len > MAX_PENDING_BYTES) {
        /* a client flooding pipelined requests waits for the answers first */
        lx_stream_read_stop(&c->stream);
        if (c->n_pending == MAX_PENDING)
            return;
    }
    c->pending[c->n_pending++] = lx_slice_make(b, (size_t)(data - b->data), len);
    c->pending_bytes += len;
    if (c->pending_bytes >= MAX_PENDING_BYTES)
        lx_stream_read_stop(&c->stream);
}

/* Moves a small request (target, headers, and a body that is still a view) out of the read
 * chunk(s) into one buffer of its size (a small pool chunk up to 2 KiB, rounded up to a power
 * of two; exact above), so a request that lives long (a stream) pins a few hundred bytes
 * instead of a 16 KiB chunk. Large heads keep their chunks. */
#define COMPACT_MAX 8192

static void compact(lx_http_conn_t *c)
{
    lx_http_request_t *r = &c->req;
    lx_http_head_t *h = &r->head;
    bool body_view = c->body_buf == NULL && r->body.len > 0;
    size_t strings = h->target.len + (body_view ? r->body.len : 0);
    for (unsigned i = 0; i < h->n_headers; i++)
        strings += h->headers[i].name.len + h->headers[i].value.len;
    size_t table_off = (strings + 7) & ~(size_t)7;
    size_t need = table_off + h->n_headers * sizeof(lx_http_header_t);
    if (strings > COMPACT_MAX || h->n_held == 0)
        return;
    lx_buf_t *nb = lx_buf_pool_get_small(&c->stream.worker->bufs, need > 0 ? need : 1);
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

static void dispatch(lx_http_conn_t *c)
{
    lx_http_server_t *srv = c->srv;
    compact(c);
    c->owned = true;
    srv->n_active++;
    c->req.conn = c;
    srv->on_request(&c->req);
}

static void feed(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len)
{
    if (c->state == ST_IDLE && len > 0 && c->srv->draining) {
        conn_close(c, false);
        return;
    }
    c->cur = b;
    c->req.bytes_in += len;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    c->cur = NULL;
    if (err == HPE_OK)
        return;
    if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t rest = (size_t)(data + len - pos);
        c->req.bytes_in -= rest;
        if (rest > 0) {
            /* the next pipelined request goes first in the queue */
            if (c->n_pending == MAX_PENDING) {
                send_error_and_close(c, 400, "too many pipelined requests");
                return;
            }
            memmove(&c->pending[1], &c->pending[0], c->n_pending * sizeof(lx_slice_t));
            c->pending[0] = lx_slice_make(b, (size_t)(pos - b->data), rest);
            c->n_pending++;
            c->pending_bytes += rest;
        }
        dispatch(c);
        return;
    }
    if (c->error_status != 0) {
        send_error_and_close(c, c->error_status, c->error_message);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
    send_error_and_close(c, 400, msg);
}

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_http_conn_t *c = s->data;
    if (nread < 0) {
        lx_stream_read_stop(s);
        if (c->owned) {
            /* a client that leaves mid-request cancels it (a half-close counts as leaving) */
            c->req.peer_gone = true;
            conn_close(c, false);
            if (c->req.on_abort != NULL)
                c->req.on_abort(&c->req);
            return;
        }
        if (c->state == ST_LINGER && c->stream.writes_pending > 0)
            return; /* let the answer go out; the timer closes */
        conn_close(c, false);
        return;
    }
    switch (c->state) {
    case ST_IDLE:
    case ST_HEAD:
    case ST_BODY:
        if (c->n_pending > 0) {
            queue_pending(c, b, data, (size_t)nread);
            replay_pending(c);
            return;
        }
        feed(c, b, data, (size_t)nread);
        return;
    case ST_OUT:
        queue_pending(c, b, data, (size_t)nread);
        return;
    case ST_LINGER:
    case ST_CLOSED:
        return; /* discarded */
    }
}

int lx_http_server_accept(lx_http_server_t *srv, uv_stream_t *listener)
{
    lx_http_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LX_ENOMEM;
    int rc = lx_stream_init(srv->worker, &c->stream);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->stream.data = c;
    c->srv = srv;
    c->open_handles = 1;
    lx_list_insert_tail(&srv->conns, &c->link);
    srv->n_conns++;
    uv_timer_init(&srv->worker->loop, &c->timer);
    c->timer.data = c;
    c->open_handles++;
    lx_http_head_init(&c->req.head);
    c->req.conn = c;
    c->req.worker = srv->worker;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    rc = lx_stream_accept(listener, &c->stream);
    if (rc == 0)
        rc = lx_stream_read_start(&c->stream, on_read);
    if (rc != 0) {
        conn_close(c, false);
        return rc;
    }
    c->state = ST_IDLE;
    arm(c, srv->limits.header_timeout_ms);
    return 0;
}

void lx_http_server_drain(lx_http_server_t *srv)
{
    srv->draining = true;
    lx_list_t *n = srv->conns.next;
    while (n != &srv->conns) {
        lx_http_conn_t *c = lx_list_entry(n, lx_http_conn_t, link);
        n = n->next;
        if (c->state == ST_IDLE && c->n_pending == 0 && !c->owned)
            conn_close(c, false);
    }
    if (srv->n_conns == 0 && srv->on_idle != NULL)
        srv->on_idle(srv);
}

void lx_http_server_close_all(lx_http_server_t *srv)
{
    srv->draining = true;
    lx_list_t *n = srv->conns.next;
    while (n != &srv->conns) {
        lx_http_conn_t *c = lx_list_entry(n, lx_http_conn_t, link);
        n = n->next;
        bool owned = c->owned && !c->req.peer_gone;
        conn_close(c, true);
        if (owned) {
            c->req.peer_gone = true;
            if (c->req.on_abort != NULL)
                c->req.on_abort(&c->req);
        }
    }
}

void lx_http_server_dispose(lx_http_server_t *srv)
{
    lx_buf_unref(srv->frame);
    srv->frame = NULL;
}
