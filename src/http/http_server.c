/*
 * http_server.c - downstream HTTP/1.1 connections: accept, read, queue, hand over, end, repeat.
 * Parsing a request is http_request.c; the response half is http_response.c.
 *
 * Connection states:
 *
 *   IDLE ──first byte──> HEAD ──headers──> BODY ──message complete──> OUT (handler owns req)
 *     ^                                                                 │ finish + writes done
 *     └────────────── keep-alive (queued input parsed next) ────────────┘
 *   any error ──> LINGER (answer written, input discarded briefly) ──> closed
 *
 * Parsing is the parser's (http_request.c, on bytes alone); its hooks move the connection's
 * state and deadlines (on_parse_begin, on_parse_head, on_parse_body), and parse() turns its
 * DONE into OUT and its ERROR into an answer.
 *
 * Input: every read goes through input(). While a request is out, reads are queued as slices
 * of their chunks (a ring; a read that continues the last slice in the same chunk extends it);
 * when the request is done the queue is parsed in order until the next request is complete, and
 * so on, so pipelined requests are all answered in order. Reading stops while the queue is at
 * its bound and resumes when it has drained to half of it: memory stays bounded and no byte is
 * ever dropped. An EOF is still noticed while a request is out (a client leaving cancels it).
 *
 * A Content-Length body's buffer (http_request.c) becomes the target of the next reads
 * (lx_stream_read_into) only once the bytes already read are parsed and it still has room: a
 * body that arrived whole with its head never leaves a full buffer behind as a read target.
 *
 * One timer per connection serves whichever deadline the state has: head, body, keep-alive
 * idle or linger. The deadline is a field; the timer is re-armed only when a deadline comes
 * before the time it is armed for, and when it fires early it re-arms for what is left. The
 * same timer, at 0 ms, runs a request's end on the next loop turn when the handler finished with
 * nothing left to write.
 *
 * on_done runs exactly once per request: from request_done (answered), from conn_refuse
 * (refused), from release (the handler ended after the client left) or from lx_http_conn_close
 * (closed while the request was out of the handler's hands: mid-body, or its answer still being
 * written or its end deferred). in_flight says it is still owed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "http/http_server_int.h"

/* The input queue's bound; reading resumes under half of it. */
#define QUEUE_BYTES (64 * 1024)
#define LINGER_MS   1000
#define LOW_WATER   (8 * 1024)

/* The state's deadline is <ms> from now / the state has none. */
static void conn_arm(lx_http_conn_t *c, uint64_t ms);
static void conn_disarm(lx_http_conn_t *c);

/* A request the server refuses itself: answer <status> in the envelope (with the extra header
 * lines <headers>, may be NULL), log it, then linger and close. */
static void conn_refuse(lx_http_conn_t *c, int status, const char *message, const char *headers);

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

/* --- the input queue -------------------------------------------------------------------- */

static void queue_clear(lx_http_conn_t *c)
{
    for (unsigned i = 0; i < c->q_n; i++)
        lx_buf_unref(c->queue[(c->q_first + i) % LX_HTTP_QUEUE_SLOTS].buf);
    c->q_first = c->q_n = 0;
    c->q_bytes = 0;
}

/* Appends [data, data+len) of chunk <b>. False when there is no slot left (it cannot happen
 * while reads stop at the bound: refused loudly rather than lost). */
static bool queue_push(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len)
{
    if (c->q_n > 0) {
        lx_slice_t *t = &c->queue[(c->q_first + c->q_n - 1) % LX_HTTP_QUEUE_SLOTS];
        if (t->buf == b && lx_slice_ptr(t) + t->len == data) {
            t->len += (uint32_t)len; /* the next read in the same chunk */
            goto added;
        }
    }
    if (c->q_n == LX_HTTP_QUEUE_SLOTS)
        return false;
    c->queue[(c->q_first + c->q_n) % LX_HTTP_QUEUE_SLOTS] =
        lx_slice_make(b, (size_t)(data - b->data), len);
    c->q_n++;
added:
    c->q_bytes += len;
    if ((c->q_bytes >= QUEUE_BYTES || c->q_n == LX_HTTP_QUEUE_SLOTS) && c->stream.reading) {
        /* a client flooding pipelined requests waits for the answers first */
        lx_stream_read_stop(&c->stream);
        c->input_paused = true;
    }
    return true;
}

/* The parser took <n> bytes of the first slice. */
static void queue_take(lx_http_conn_t *c, size_t n)
{
    lx_slice_t *s = &c->queue[c->q_first];
    s->off += (uint32_t)n;
    s->len -= (uint32_t)n;
    c->q_bytes -= n;
    if (s->len == 0) {
        lx_buf_unref(s->buf);
        c->q_first = (c->q_first + 1) % LX_HTTP_QUEUE_SLOTS;
        c->q_n--;
    }
}

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data);

/* Reading resumes once the queue has drained to half its bound. */
static void resume_input(lx_http_conn_t *c)
{
    if (!c->input_paused || c->closing || c->q_bytes > QUEUE_BYTES / 2 ||
        c->q_n > LX_HTTP_QUEUE_SLOTS / 2)
        return;
    c->input_paused = false;
    if (lx_stream_read_start(&c->stream, on_read) != 0)
        lx_http_conn_close(c, false);
}

/* --- closing -------------------------------------------------------------------------- */

static void maybe_free(lx_http_conn_t *c)
{
    if (c->open_handles > 0 || c->owned)
        return;
    lx_http_server_t *srv = c->srv;
    queue_clear(c);
    lx_http_head_reset(&c->req.head);
    lx_http_parser_body_drop(&c->parser);
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

/* on_done for the current request, if still owed. */
static void log_done(lx_http_conn_t *c)
{
    if (!c->in_flight)
        return;
    c->in_flight = false;
    if (c->srv->on_done != NULL)
        c->srv->on_done(&c->req);
}

static void reset_request(lx_http_conn_t *c);

void lx_http_conn_close(lx_http_conn_t *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    c->state = ST_CLOSED;
    c->deadline = 0;
    c->timer_due = 0;
    c->done_deferred = false; /* the timer's close cancels a deferred request_done: done here */
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (reset)
        lx_stream_reset(&c->stream, on_stream_closed);
    else
        lx_stream_close(&c->stream, on_stream_closed);
    queue_clear(c);
    if (c->in_flight && !c->owned) {
        /* mid-body, or answered and not yet on the wire: this request ends here */
        if (!c->req.head_sent)
            c->req.status = 499;
        log_done(c);
        reset_request(c);
    }
}

/* --- timers --------------------------------------------------------------------------- */

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
        lx_http_conn_close(c, false);
        break;
    case ST_HEAD:
        conn_refuse(c, 408, "timed out reading the request head", NULL);
        break;
    case ST_BODY:
        conn_refuse(c, 408, "timed out reading the request body", NULL);
        break;
    default:
        break;
    }
}

/* The state's deadline is <ms> from now. The timer moves only when it would fire too late. */
static void conn_arm(lx_http_conn_t *c, uint64_t ms)
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
static void conn_disarm(lx_http_conn_t *c)
{
    c->deadline = 0;
}

/* --- request lifecycle ------------------------------------------------------------------- */

static void reset_request(lx_http_conn_t *c)
{
    lx_http_request_t *r = &c->req;
    lx_http_parser_reset(&c->parser); /* what parsing set, and the parser for the next one */
    r->bytes_out = 0;
    r->status = 0;
    r->head_sent = r->chunked = r->finished = r->peer_gone = r->want_drain = false;
    r->last_chunk_sent = false;
    r->on_abort = NULL;
    r->on_drain = NULL;
    r->data = NULL;
    c->direct = false;
}

static void pump(lx_http_conn_t *c);

/* The response is complete on the wire: log, then keep-alive or close. */
static void request_done(lx_http_conn_t *c)
{
    lx_http_server_t *srv = c->srv;
    log_done(c);
    bool keep = c->req.keep_alive && !c->req.peer_gone && !srv->draining && !c->closing;
    reset_request(c);
    if (!keep) {
        lx_http_conn_close(c, false);
        return;
    }
    c->state = ST_IDLE;
    conn_arm(c, srv->limits.keepalive_timeout_ms);
    pump(c);
}

static void on_deferred_done(uv_timer_t *t)
{
    lx_http_conn_t *c = t->data;
    c->done_deferred = false;
    request_done(c);
}

void lx_http_conn_release(lx_http_conn_t *c)
{
    c->owned = false;
    c->srv->n_active--;
    if (c->closing) {
        /* the client left: nothing more goes out, log and free */
        log_done(c);
        reset_request(c);
        maybe_free(c);
        return;
    }
    if (c->stream.writes_pending == 0 && !c->done_deferred) {
        /* nothing in flight: finish on the next loop turn, never inside the handler's call */
        c->done_deferred = true;
        c->timer_due = 0; /* (the timer serves the deferral now) */
        uv_timer_start(&c->timer, on_deferred_done, 0, 0);
    }
}

void lx_http_conn_on_write(lx_stream_t *s, int status, void *arg)
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
            lx_http_conn_close(c, false);
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
    if (c->state == ST_LINGER && c->peer_eof)
        lx_http_conn_close(c, false); /* nothing more comes in: no need to linger */
    else if (c->state == ST_LINGER)
        conn_arm(c, LINGER_MS);
    else if (c->state == ST_OUT)
        request_done(c);
}

/* A request the server itself refuses: answer, then linger and close. */
static void conn_refuse(lx_http_conn_t *c, int status, const char *message, const char *headers)
{
    lx_http_request_t *r = &c->req;
    if (c->closing)
        return;
    if (r->id_len == 0)
        lx_http_request_new_id(r, &c->srv->id_state);
    if (r->path.ptr == NULL && r->head.target.len > 0) {
        /* a request refused before its head was complete: what of its target was parsed */
        const char *q = memchr(r->head.target.ptr, '?', r->head.target.len);
        r->path.ptr = r->head.target.ptr;
        r->path.len = q != NULL ? (size_t)(q - r->head.target.ptr) : r->head.target.len;
    }
    r->keep_alive = false;
    c->in_flight = true;
    queue_clear(c);
    resume_input(c); /* lingering reads and discards, so the close does not reset the answer */
    char body[1024];
    size_t n = lx_http_format_error(c->srv, r, body, sizeof(body), status, message);
    char head[1024];
    int hn = snprintf(head, sizeof(head), "Content-Type: application/json\r\n%s",
                      headers != NULL ? headers : "");
    if (hn < 0 || (size_t)hn >= sizeof(head))
        hn = snprintf(head, sizeof(head), "Content-Type: application/json\r\n");
    c->state = ST_LINGER;
    conn_disarm(c);
    int rc = lx_http_server_send_head(r, status, head, (size_t)hn, (int64_t)n);
    if (rc == 0)
        rc = lx_http_server_send(r, body, n);
    log_done(c);
    /* the request is gone; keep the answer's bytes and discard input until the linger ends */
    lx_http_head_reset(&r->head);
    r->path = (lx_str_t){NULL, 0};
    lx_http_parser_body_drop(&c->parser);
    if (rc != 0)
        lx_http_conn_close(c, true);
}

/* --- parsing: the parser's hooks and its feeding ------------------------------------------ */

/* A request's first byte: the head's deadline runs from here. */
static void on_parse_begin(lx_http_parser_t *p)
{
    lx_http_conn_t *c = p->data;
    c->state = ST_HEAD;
    c->req.start_ms = uv_now(&c->stream.worker->loop);
    conn_arm(c, c->srv->limits.header_timeout_ms);
}

/* The head passed the protocol's checks: a request from here on (on_done is owed, whatever
 * happens), admitted or refused by the application. */
static int on_parse_head(lx_http_parser_t *p, const char **message, const char **headers)
{
    lx_http_conn_t *c = p->data;
    c->in_flight = true;
    if (c->srv->on_head == NULL)
        return 0;
    return c->srv->on_head(&c->req, message, headers);
}

/* The head was admitted: the body's deadline runs from here. */
static void on_parse_body(lx_http_parser_t *p)
{
    lx_http_conn_t *c = p->data;
    if (p->send_continue)
        lx_stream_write_copy(&c->stream, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, NULL);
    c->state = ST_BODY;
    conn_arm(c, c->srv->limits.body_timeout_ms);
}

static const lx_http_parser_hooks_t parser_hooks = {
    .on_begin = on_parse_begin,
    .on_head = on_parse_head,
    .on_body = on_parse_body,
};

/* Feeds [data, data+len) of chunk <b> to the parser; returns how many bytes it used: all of
 * them, or those up to the end of a request that became complete (state OUT, not dispatched
 * yet). A malformed or refused request is answered here (state LINGER). */
static size_t parse(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len)
{
    if (c->state == ST_IDLE && len > 0 && c->srv->draining) {
        lx_http_conn_close(c, false);
        return len;
    }
    size_t used = lx_http_parser_feed(&c->parser, b, data, len);
    if (c->parser.state == LX_HTTP_PARSE_DONE) {
        c->state = ST_OUT;
        conn_disarm(c);
    } else if (c->parser.state == LX_HTTP_PARSE_ERROR) {
        lx_http_parser_t *p = &c->parser;
        char msg[160];
        conn_refuse(c, p->error_status, lx_http_parser_error(p, msg, sizeof(msg)),
                    p->error_headers);
    }
    return used;
}

static void dispatch(lx_http_conn_t *c)
{
    lx_http_server_t *srv = c->srv;
    lx_http_parser_compact(&c->parser, &c->stream.worker->bufs);
    c->owned = true;
    srv->n_active++;
    c->req.conn = c;
    srv->on_request(&c->req);
}

/* A Content-Length body whose buffer is not full yet takes the next reads straight in. Only
 * once the bytes already read are parsed (the queue is empty in BODY), so the buffer is never
 * a read target when nothing more of it is to come. */
static void read_direct(lx_http_conn_t *c)
{
    lx_buf_t *body = c->parser.body_buf;
    if (c->state != ST_BODY || c->direct || c->parser.te_chunked || body == NULL || c->q_n > 0 ||
        lx_buf_avail(body) == 0)
        return;
    c->direct = true;
    lx_stream_read_into(&c->stream, body);
}

/* A read that finds the queue full: cannot happen (reading stops at the bound), so it is a
 * refusal, never a silent drop. */
static void queue_overflow(lx_http_conn_t *c)
{
    if (c->state != ST_OUT) {
        conn_refuse(c, 400, "too much pipelined input", NULL);
        return;
    }
    bool owned = c->owned && !c->req.peer_gone;
    c->req.peer_gone = true;
    lx_http_conn_close(c, true);
    if (owned && c->req.on_abort != NULL)
        c->req.on_abort(&c->req);
}

/* Parses queued input while the connection may parse, dispatching the request it completes. */
static void pump(lx_http_conn_t *c)
{
    while (c->q_n > 0 && (c->state == ST_IDLE || c->state == ST_HEAD || c->state == ST_BODY)) {
        lx_slice_t *s = &c->queue[c->q_first];
        size_t used = parse(c, s->buf, lx_slice_ptr(s), s->len);
        if (c->state == ST_LINGER || c->state == ST_CLOSED)
            return; /* refused or closed: the queue is gone */
        queue_take(c, used);
        if (c->state == ST_OUT) {
            dispatch(c);
            break;
        }
    }
    read_direct(c);
    resume_input(c);
}

/* Every read comes here (socket or lx_http_server_feed). */
static void input(lx_http_conn_t *c, lx_buf_t *b, const char *data, size_t len)
{
    switch (c->state) {
    case ST_LINGER:
    case ST_CLOSED:
        return; /* discarded */
    case ST_OUT:
        if (!queue_push(c, b, data, len))
            queue_overflow(c);
        return;
    default:
        break;
    }
    if (c->q_n > 0) {
        if (!queue_push(c, b, data, len)) {
            queue_overflow(c);
            return;
        }
        pump(c);
        return;
    }
    size_t used = parse(c, b, data, len);
    if (c->state == ST_OUT) {
        /* the next pipelined request(s) wait for this one's answer */
        if (used < len && !queue_push(c, b, data + used, len - used)) {
            queue_overflow(c);
            return;
        }
        dispatch(c);
    } else {
        read_direct(c);
    }
}

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_http_conn_t *c = s->data;
    if (nread >= 0) {
        input(c, b, data, (size_t)nread);
        return;
    }
    lx_stream_read_stop(s);
    if (c->owned) {
        /* a client that leaves mid-request cancels it (a half-close counts as leaving) */
        bool tell = !c->req.peer_gone;
        c->req.peer_gone = true;
        lx_http_conn_close(c, false);
        if (tell && c->req.on_abort != NULL)
            c->req.on_abort(&c->req);
        return;
    }
    if (c->state == ST_LINGER && c->stream.writes_pending > 0) {
        c->peer_eof = true; /* let the answer go out, then close */
        return;
    }
    lx_http_conn_close(c, false);
}

int lx_http_server_accept_conn(lx_http_server_t *srv, uv_stream_t *listener, lx_http_conn_t **out)
{
    lx_http_conn_t *c = calloc(1, sizeof(*c));
    if (out != NULL)
        *out = NULL;
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
    lx_http_parser_init(&c->parser, &c->req, &srv->limits, &srv->id_state, &parser_hooks, c);
    c->req.conn = c;
    c->req.worker = srv->worker;
    rc = lx_stream_accept(listener, &c->stream);
    if (rc == 0)
        rc = lx_stream_read_start(&c->stream, on_read);
    if (rc != 0) {
        lx_http_conn_close(c, false);
        return rc;
    }
    c->state = ST_IDLE;
    conn_arm(c, srv->limits.header_timeout_ms);
    if (out != NULL)
        *out = c;
    return 0;
}

int lx_http_server_accept(lx_http_server_t *srv, uv_stream_t *listener)
{
    return lx_http_server_accept_conn(srv, listener, NULL);
}

size_t lx_http_server_feed(lx_http_conn_t *c, const void *data, size_t len)
{
    return lx_stream_feed(&c->stream, data, len);
}

void lx_http_server_drain(lx_http_server_t *srv)
{
    srv->draining = true;
    lx_list_t *n = srv->conns.next;
    while (n != &srv->conns) {
        lx_http_conn_t *c = lx_list_entry(n, lx_http_conn_t, link);
        n = n->next;
        if (c->state == ST_IDLE && c->q_n == 0 && !c->owned)
            lx_http_conn_close(c, false);
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
        lx_http_conn_close(c, true);
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
