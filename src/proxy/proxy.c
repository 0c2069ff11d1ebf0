/*
 * proxy.c - one request through the proxy, from connection to finish.
 *
 *   gateway: lx_proxy_start(px) with the upstream request as slices
 *      │
 *      ▼
 *   CONNECTING  lx_conn_pool_get ── idle connection (LIFO) or DNS (cached) + connect
 *      │ on_conn                     [timer: connect timeout → 504]
 *      │                             [a wait for a slot under max_connections: the deadline
 *      │                              alone → 503 + Retry-After, llmux's own limit]
 *      ▼
 *   WAITING     lx_stream_write(head + body slices, borrowed)
 *      │ head complete               [timer: first-byte timeout → 504; interim 1xx answers
 *      │                              and a head dribbled line by line do not stop it]
 *      ▼
 *   RELAYING    llhttp (response) → head: client head sent (committed)
 *      │                            body: slices of the read chunk → client, per read
 *      │                            client queue > high water → stop upstream reads
 *      ▼                            [timer: idle timeout]
 *   end_attempt(px, code) ── the attempt is over (any phase above, answered or failed)
 *      │  failed, and no byte of an answer reached the client yet (!relayed)
 *      ├──────────────────────> next_attempt: release the connection and the request,
 *      │                        ops->retry prepares the next ─> CONNECTING again
 *      ▼  otherwise (or the owner has no next attempt)
 *   lx_proxy_finish(px, code) ── the one final step, once: pool put (clean) or close, answer
 *                                or end the client, ops->on_finish, close the timers
 *                                → ops->on_free
 *
 * A client that leaves, and the owner's shutdown, go to lx_proxy_finish directly.
 * deadline_ms (routing.deadline) caps every timer until the head is complete, so no phase of
 * an attempt outlives the request's deadline; a timed-out attempt fails over (ops->retry).
 * A client that leaves in any phase closes the upstream connection at once (no pooling), so
 * the model server stops generating. A pooled connection that turns out dead before any byte
 * of the answer is retried once on a fresh connection.
 */
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/strbuf.h"

static void on_up_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data);
static void on_timeout(uv_timer_t *t);
static void send_request(lx_proxy_t *px);
static void on_keepalive(uv_timer_t *t);
static void end_attempt(lx_proxy_t *px, int code);
static void hedge_fire(lx_proxy_t *px);
static void hedge_end(lx_proxy_t *px, int code);
static void hedge_take_over(lx_proxy_t *px, int code);

/* Makes the timer fire no later than loop time <at> (never earlier than it is armed for). */
static void arm_at(lx_proxy_t *px, uint64_t now, uint64_t at)
{
    if (px->timer_due != 0 && px->timer_due <= at)
        return;
    px->timer_due = at;
    uv_timer_start(&px->timer, on_timeout, at > now ? at - now : 0, 0);
}

/* The phase's timeout: <ms> from now, none when 0. The due time is a field; the timer moves
 * only when it would fire too late (a later due time, as every read of a stream sets, costs no
 * timer operation: the timer fires at the earlier time and re-arms for the rest). A hedge due
 * earlier is the timer's first stop. */
static void arm(lx_proxy_t *px, uint64_t ms)
{
    uint64_t now = uv_now(px->timer.loop);
    px->phase_due = ms != 0 ? now + ms : 0; /* 0: the timer may still fire, and finds nothing */
    uint64_t at = px->phase_due;
    if (px->hedge_due != 0 && (at == 0 || px->hedge_due < at))
        at = px->hedge_due;
    if (at != 0)
        arm_at(px, now, at);
}

/* No timeout until the next arm(). */
static void disarm(lx_proxy_t *px)
{
    px->phase_due = 0;
}

/* Milliseconds from <now> until loop time <due>, at least 1 (0 would mean no timeout). */
static uint64_t until(uint64_t now, uint64_t due)
{
    return due > now ? due - now : 1;
}

/* A phase timeout of <ms> from <since>, cut to the attempt's deadline: ms from now. */
static uint64_t bounded(const lx_proxy_t *px, uint64_t now, uint64_t since, uint64_t ms)
{
    uint64_t due = ms != 0 ? since + ms : 0;
    if (px->deadline_ms != 0 && (due == 0 || px->deadline_ms < due))
        due = px->deadline_ms;
    return due != 0 ? until(now, due) : 0;
}

/* Arms the timer of the connecting phase. A wait for a slot under max_connections is bounded by
 * the deadline alone, but looked at every connect timeout: when its turn comes the pool
 * restamps wait.since_ms, and the connect that follows gets its own timeout from there. */
static void arm_connecting(lx_proxy_t *px)
{
    uint64_t now = uv_now(px->timer.loop);
    uint64_t ct = px->connect_timeout_ms;
    if (px->wait.limited && px->deadline_ms != 0 && ct != 0)
        arm(px, LX_MIN(ct, until(now, px->deadline_ms)));
    else
        arm(px, bounded(px, now, px->wait.since_ms, ct));
}

static void on_timeout(uv_timer_t *t)
{
    lx_proxy_t *px = t->data;
    px->timer_due = 0;
    if (px->finished)
        return;
    uint64_t now = uv_now(t->loop);
    if (px->hedge_due != 0 && now >= px->hedge_due) {
        hedge_fire(px);
        if (px->finished)
            return;
    }
    if (px->phase_due == 0) {
        if (px->hedge_due != 0)
            arm_at(px, now, px->hedge_due);
        return; /* armed for a timeout that was lifted since */
    }
    if (now < px->phase_due) {
        /* armed for an earlier time that was moved later since: wait for the rest */
        arm_at(px, now,
               px->hedge_due != 0 && px->hedge_due < px->phase_due ? px->hedge_due : px->phase_due);
        return;
    }
    px->phase_due = 0;
    bool deadline = px->deadline_ms != 0 && now >= px->deadline_ms;
    switch (px->state) {
    case LX_PROXY_CONNECTING:
        if (px->wait.limited) {
            if (!deadline && px->deadline_ms != 0) {
                arm_connecting(px); /* still waiting for a slot, with time left */
                return;
            }
            /* llmux's own limit: a 503 that says so, not a connect failure of the provider */
            px->limited = true;
            px->error = "llmux's own limit on connections to this provider (max_connections) "
                        "was reached, and none came free before the request's deadline";
            end_attempt(px, LX_ENOUPSTREAM);
            return;
        }
        if (!deadline && now < px->wait.since_ms + px->connect_timeout_ms) {
            arm_connecting(px); /* a slot wait ended meanwhile: its connect began later */
            return;
        }
        if (px->wait.connecting != NULL && lx_stream_handshaking(&px->wait.connecting->stream)) {
            /* connected, but the TLS handshake did not complete: say so */
            px->error = "timed out connecting to the provider";
            end_attempt(px, LX_ETLSHANDSHAKE);
            return;
        }
        px->error = "timed out connecting to the provider";
        break;
    case LX_PROXY_WAITING:
        if (px->t_first_byte_ns == 0)
            px->error = "timed out waiting for the provider's first byte";
        else
            px->error = "timed out waiting for the provider's response head (it began one, or "
                        "sent only interim 1xx answers)";
        break;
    default:
        px->error = "the provider stalled mid-response";
        break;
    }
    end_attempt(px, LX_ETIMEDOUT);
}

/* An early commit with keep-alives: their timer is open and they have bytes and a period. */
static bool keepalives_on(const lx_proxy_t *px)
{
    return px->stream_head != NULL && px->open_timers == 2 && px->keepalive_interval_ms > 0 &&
           px->keepalive_len > 0;
}

static void stop_keepalives(lx_proxy_t *px)
{
    if (px->stream_head != NULL && px->open_timers == 2)
        uv_timer_stop(&px->ka_timer);
}

static void drop_pending(lx_proxy_t *px)
{
    for (unsigned i = 0; i < px->n_pending; i++)
        lx_buf_unref(px->pending[i].buf);
    px->n_pending = 0;
}

static void flush_pending(lx_proxy_t *px)
{
    if (px->n_pending == 0) {
        if (px->committed)
            lx_http_server_flush(px->req); /* a head with no body yet goes out now */
        return;
    }
    lx_http_server_send_body(px->req, px->pending, px->n_pending);
    px->n_pending = 0;
    if (px->req->want_drain && px->conn != NULL) {
        /* the client is slow: stop reading (the model server is slowed through TCP) and do
         * not count the pause against the provider's idle timeout */
        lx_stream_read_stop(&px->conn->stream); /* resumed by on_drain */
        disarm(px);
    }
}

static int on_head(lx_http_client_t *hc)
{
    lx_proxy_t *px = hc->data;
    /* the head is complete: the first-byte clock stops, the idle one runs between reads */
    px->state = LX_PROXY_RELAYING;
    stop_keepalives(px);
    px->hedge_due = 0; /* (the head came: nothing to hedge, no wake-up for it) */
    arm(px, px->idle_timeout_ms);
    px->upstream_status = hc->status;
    if (hc->status >= 400)
        return 0; /* collect the error body, answer in the envelope */
    if (px->hedge != NULL && px->hedge->active)
        hedge_end(px, LX_PROXY_HEDGE_LOST); /* this answer came first: the hedge loses */
    if (px->ops->on_head != NULL)
        px->ops->on_head(px, hc);
    if (px->committed)
        return 0; /* an early commit already answered the head */
    char head[1024];
    int n = 0;
    if (hc->content_type[0] != '\0') {
        lx_strbuf_t sb = lx_strbuf_make(head, sizeof(head));
        LX_STRBUF_LIT(&sb, "Content-Type: ");
        lx_strbuf_str(&sb, hc->content_type);
        LX_STRBUF_LIT(&sb, "\r\n");
        n = sb.overflow ? 0 : (int)lx_strbuf_len(&sb, head);
    }
    if ((size_t)n + px->resp_headers_len > sizeof(head))
        n = 0;
    memcpy(head + n, px->resp_headers, px->resp_headers_len);
    n += (int)px->resp_headers_len;
    /* a filtered or streamed body may change length, and a stream may need an error event */
    int64_t len =
        hc->has_length && !hc->chunked && !(px->filter_on && px->filter_resizes) && !px->stream
            ? (int64_t)hc->content_length
            : -1;
    px->committed = true;
    px->relayed = true;
    px->client_status = hc->status;
    if (lx_http_server_send_head(px->req, hc->status, head, (size_t)n, len) != 0)
        return -1;
    return 0;
}

static int on_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    lx_proxy_t *px = hc->data;
    px->bytes_from_upstream += len;
    if (px->upstream_status >= 400) {
        if (px->err_body == NULL) {
            px->err_body = malloc(LX_PROXY_ERR_BODY_MAX);
            if (px->err_body == NULL)
                return 0;
        }
        size_t k = LX_MIN(len, LX_PROXY_ERR_BODY_MAX - px->err_len);
        memcpy(px->err_body + px->err_len, at, k);
        px->err_len += k;
        return 0;
    }
    px->relayed = true; /* (an early commit sent the head; this is the answer's first byte) */
    if (px->n_pending + LX_PROXY_FILTER_MAX > LX_WORKER_BATCH)
        flush_pending(px);
    if (px->filter_on) {
        size_t off = 0;
        while (off < len) {
            if (px->n_pending + LX_PROXY_FILTER_MAX > LX_WORKER_BATCH)
                flush_pending(px);
            size_t used = 0;
            int n = px->ops->filter(px, b, at + off, len - off, px->pending + px->n_pending, &used);
            if (n < 0 || used == 0) {
                px->error = "the provider's stream is malformed";
                return n < 0 ? n : LX_EUPSTREAM;
            }
            px->n_pending += (unsigned)n;
            off += used;
        }
        return 0;
    }
    px->pending[px->n_pending++] = lx_slice_make(b, (size_t)(at - b->data), len);
    return 0;
}

static int on_complete(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static const lx_http_client_cbs_t client_cbs = {on_head, on_body, on_complete};

static void on_drain(lx_http_request_t *req)
{
    lx_proxy_t *px = req->data;
    if (px->conn != NULL && px->state == LX_PROXY_RELAYING) {
        lx_stream_read_start(&px->conn->stream, on_up_read);
        arm(px, px->idle_timeout_ms);
    }
}

static void on_client_abort(lx_http_request_t *req)
{
    lx_proxy_t *px = req->data;
    px->error = "the client closed the connection";
    lx_proxy_finish(px, LX_ECANCELED);
}

static bool retry_stale(lx_proxy_t *px)
{
    /* A pooled connection the server closed just before we wrote: nothing was answered, so
     * one fresh connection is safe to try. */
    if (!px->reused || px->retried || px->t_first_byte_ns != 0 || px->n_out == 0)
        return false;
    px->retried = true;
    lx_conn_pool_close(px->conn);
    px->conn = NULL;
    send_request(px);
    return true;
}

/* The upstream body ended as HTTP framing says: release what the filter held, then check
 * that the body itself is complete (a stream saw its terminator). */
static void end_of_body(lx_proxy_t *px)
{
    bool relay = px->committed && px->upstream_status < 400;
    if (px->filter_on && relay && px->ops->filter_end != NULL) {
        if (px->n_pending + LX_PROXY_FILTER_MAX > LX_WORKER_BATCH)
            flush_pending(px);
        int n = px->ops->filter_end(px, px->pending + px->n_pending);
        if (n > 0)
            px->n_pending += (unsigned)n;
    }
    bool complete = px->upstream_status >= 400 || px->ops->end_ok == NULL || px->ops->end_ok(px);
    /* A complete answer keeps its last bytes pending: lx_proxy_finish sends them with the end
     * of the response after ops->on_finish (the owner settles there), so a client that has the
     * last byte finds the request settled. Anything else goes now, as every read's bytes do. */
    if (!(complete && relay && !px->req->peer_gone))
        flush_pending(px);
    if (!complete) {
        px->error = "the provider's stream ended without its terminator";
        end_attempt(px, LX_EUPSTREAM);
        return;
    }
    end_attempt(px, 0);
}

static void on_up_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_upconn_t *conn = s->data;
    lx_proxy_t *px = conn->data;
    if (nread < 0) {
        if (retry_stale(px))
            return;
        int rc = lx_http_client_eof(&px->hc);
        if (rc == 0 && !lx_upconn_reset_pending(px->conn)) {
            end_of_body(px);
            return;
        }
        px->error = rc == 0 ? "the provider reset the connection" : px->hc.error;
        end_attempt(px, nread == UV_EOF ? LX_EUPSTREAM : (int)nread);
        return;
    }
    if (px->t_first_byte_ns == 0) {
        px->t_first_byte_ns = lx_worker_clock_ns();
        /* an answer has begun: no retry will resend the request, so its chunks go now */
        for (unsigned i = 0; i < px->n_out; i++)
            lx_buf_unref(px->out[i].buf);
        px->n_out = 0;
    }
    /* until the head is complete the first-byte timer runs on (on_head switches to idle) */
    if (px->state == LX_PROXY_RELAYING)
        arm(px, px->idle_timeout_ms);
    int rc = lx_http_client_parse(&px->hc, b, data, (size_t)nread);
    if (rc == 0 && px->hc.complete) {
        end_of_body(px); /* what is pending leaves with the end of the response */
        return;
    }
    flush_pending(px);
    if (rc != 0) {
        px->error = px->hc.error != NULL ? px->hc.error : "the client connection failed";
        end_attempt(px, px->hc.error != NULL ? LX_EUPSTREAM : LX_ECANCELED);
    }
}

static void on_sent(lx_stream_t *s, int status, void *arg)
{
    lx_proxy_t *px = arg;
    /* a cancelled write may report after the proxy was freed: its status is read first */
    if (status == 0 || status == UV_ECANCELED || px->finished || px->conn == NULL ||
        &px->conn->stream != s)
        return; /* (or a write of an earlier attempt's connection) */
    /* a write error shows up as a read error too; a stale pooled connection is retried there */
    if (retry_stale(px))
        return;
    px->error = "failed to send the request to the provider";
    end_attempt(px, status);
}

/* Writes a request's <n> slices <out> on <st> and starts reading its answer. The proxy keeps
 * its own references (a retry or a hedge sends them again): the write borrows more. */
static int write_out(lx_stream_t *st, const lx_slice_t *out, unsigned n, lx_stream_write_cb sent,
                     void *arg, lx_stream_read_cb read)
{
    lx_slice_t sl[LX_PROXY_MAX_OUT];
    for (unsigned i = 0; i < n; i++) {
        sl[i] = out[i];
        lx_buf_ref(sl[i].buf);
    }
    int rc = lx_stream_write(st, sl, n, sent, arg);
    return rc == 0 ? lx_stream_read_start(st, read) : rc;
}

static void on_conn(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    lx_proxy_t *px = lx_container_of(w, lx_proxy_t, wait);
    if (status != 0) {
        px->error = "could not connect to the provider";
        end_attempt(px, status);
        return;
    }
    px->conn = conn;
    conn->data = px;
    px->reused = conn->reused;
    px->t_connected_ns = lx_worker_clock_ns();
    px->state = LX_PROXY_WAITING;
    lx_http_client_init(&px->hc, &client_cbs, 64 * 1024, px);
    int rc = write_out(&conn->stream, px->out, px->n_out, on_sent, px, on_up_read);
    if (rc != 0) {
        if (retry_stale(px))
            return;
        px->error = "failed to send the request to the provider";
        end_attempt(px, rc);
        return;
    }
    uint64_t now = uv_now(px->timer.loop);
    arm(px, bounded(px, now, now, px->first_byte_timeout_ms));
}

static void send_request(lx_proxy_t *px)
{
    px->state = LX_PROXY_CONNECTING;
    lx_conn_pool_get(px->pool, &px->wait, on_conn);
    /* a pooled connection came at once (the usual case): the request is already sent and its
     * first-byte timer armed; otherwise the wait for a connection is bounded from now */
    if (px->state == LX_PROXY_CONNECTING && !px->finished)
        arm_connecting(px);
}

static void on_keepalive(uv_timer_t *t)
{
    lx_proxy_t *px = t->data;
    if (px->state == LX_PROXY_RELAYING || px->finished)
        return;
    if (lx_http_server_send(px->req, px->keepalive, px->keepalive_len) == 0)
        px->keepalives_sent++;
    uv_timer_start(&px->ka_timer, on_keepalive, px->keepalive_interval_ms, 0);
}

void lx_proxy_start(lx_proxy_t *px)
{
    uv_loop_t *loop = &px->req->worker->loop;
    px->t_start_ns = lx_worker_clock_ns();
    px->attempt = 1;
    px->pending = px->req->worker->batch;
    uv_timer_init(loop, &px->timer);
    px->timer.data = px;
    px->phase_due = 0;
    px->timer_due = 0;
    px->open_timers = 1;
    px->req->data = px;
    px->req->on_abort = on_client_abort;
    px->req->on_drain = on_drain;
    if (px->stream_head != NULL) {
        /* early commit: the client is answered now; failures become error events */
        uv_timer_init(loop, &px->ka_timer);
        px->ka_timer.data = px;
        px->open_timers = 2;
        px->committed = true;
        px->client_status = 200;
        lx_http_server_send_head(px->req, 200, px->stream_head, px->stream_head_len, -1);
        lx_http_server_flush(px->req);
        if (keepalives_on(px))
            uv_timer_start(&px->ka_timer, on_keepalive, px->keepalive_delay_ms, 0);
    }
    send_request(px);
}

int lx_proxy_status_for(int code)
{
    switch (code) {
    case LX_ETIMEDOUT:
    case UV_ETIMEDOUT:
    case LX_ETLSHANDSHAKE:
        return 504;
    case LX_ENOMEM:
        return 500;
    case LX_ENOUPSTREAM:
    case LX_ESHUTDOWN:
        return 503;
    case LX_ECANCELED:
        return 499;
    default:
        return 502;
    }
}

/* Status and message for an upstream that answered with an error. */
static int upstream_error_status(int status)
{
    if (status == 401 || status == 403 || status == 407)
        return 502; /* the provider refused llmux's credentials: not the client's fault */
    if (status >= 500 || status < 400)
        return 502;
    return status;
}

/* "<what went wrong> (provider <name>: <cause>)"; llmux's own limit blames no provider. */
static void failure_message(const lx_proxy_t *px, int code, char *msg, size_t cap)
{
    const char *name = px->upstream_name != NULL ? px->upstream_name : "?";
    if (px->limited)
        snprintf(msg, cap, "%s (provider %s)", px->error, name);
    else
        snprintf(msg, cap, "%s (provider %s: %s)", px->error != NULL ? px->error : "request failed",
                 name, lx_strerror(code));
}

static void on_timer_closed(uv_handle_t *h)
{
    lx_proxy_t *px = h->data;
    if (--px->open_timers == 0 && px->ops->on_free != NULL)
        px->ops->on_free(px);
}

/* The client-facing status and a readable message for a failure: the provider's own error
 * answer (<answered>: its status and the reason from its body), or what went wrong on the way
 * (<code>). */
static int describe_failure(lx_proxy_t *px, bool answered, int code, char *msg, size_t cap);

int lx_proxy_describe_failure(lx_proxy_t *px, int code, char *msg, size_t cap)
{
    return describe_failure(px, code == 0 && px->upstream_status >= 400, code, msg, cap);
}

static int describe_failure(lx_proxy_t *px, bool answered, int code, char *msg, size_t cap)
{
    if (!answered) {
        failure_message(px, code, msg, cap);
        return lx_proxy_status_for(code);
    }
    char reason[768] = "";
    if (px->ops->describe_error != NULL)
        px->ops->describe_error(px, px->upstream_status, px->err_body, px->err_len, reason,
                                sizeof(reason));
    snprintf(msg, cap, "%s%s returned HTTP %d%s%s",
             px->upstream_name != NULL ? "provider " : "upstream",
             px->upstream_name != NULL ? px->upstream_name : "", px->upstream_status,
             reason[0] != '\0' ? ": " : "", reason);
    return upstream_error_status(px->upstream_status);
}

/* Ends a committed response that failed: a final error piece (an SSE error event) and a clean
 * end when the response can carry one, else a cut connection. */
static void end_cut(lx_proxy_t *px, int code)
{
    lx_http_request_t *req = px->req;
    char msg[1024], ev[2048];
    int status = describe_failure(px, px->upstream_status >= 400, code, msg, sizeof(msg));
    size_t n =
        px->ops->format_cut != NULL ? px->ops->format_cut(px, status, msg, ev, sizeof(ev)) : 0;
    px->cut = true;
    if (px->ops->on_finish != NULL)
        px->ops->on_finish(px, code);
    if (n > 0 && req->chunked && lx_http_server_send(req, ev, n) == 0)
        lx_http_server_finish(req);
    else
        lx_http_server_abort(req); /* a cut response must not look finished */
}

/* Lets go of the attempt's upstream side: a pending wait for a connection is withdrawn; the
 * connection goes back to the pool only when provably clean (the answer, an error answer
 * included, read in full, keep-alive, and the request written out: a server may answer early),
 * else it is closed, which also tells the model server to stop generating. */
static void release_upstream(lx_proxy_t *px, int code)
{
    if (px->state == LX_PROXY_CONNECTING)
        lx_conn_pool_cancel(&px->wait);
    if (px->conn == NULL)
        return;
    lx_upconn_t *conn = px->conn;
    px->conn = NULL;
    if (code == 0 && px->hc.complete && px->hc.keep_alive && conn->stream.writes_pending == 0)
        lx_conn_pool_put(conn);
    else
        lx_conn_pool_close(conn);
}

/* Failover: whether the failed attempt may give way to another one. Only while nothing of an
 * answer reached the client, and never for a client that left or a shutdown. */
static bool may_fail_over(const lx_proxy_t *px, int code)
{
    return px->ops->retry != NULL && !px->relayed && !px->req->peer_gone && code != LX_ECANCELED &&
           code != LX_ESHUTDOWN && (code != 0 || px->upstream_status >= 400);
}

/* The next attempt: the failed one lets go of its upstream side and its request, the owner
 * records it and prepares the next (ops->retry), whose per-attempt state starts over. False
 * when the owner has none: the request then ends with this failure. */
static bool next_attempt(lx_proxy_t *px, int code)
{
    if (px->hedge != NULL && px->hedge->active) {
        /* a hedge is racing: it becomes the attempt when the owner finds it the way on; else
         * it is cancelled, and the owner's retry decides as without a hedge (another model
         * after a context-length error, or the end) */
        if (px->ops->hedge_won(px, code)) {
            hedge_take_over(px, code);
            return true;
        }
        hedge_end(px, LX_ECANCELED);
    }
    disarm(px);
    release_upstream(px, code);
    for (unsigned i = 0; i < px->n_out; i++)
        lx_buf_unref(px->out[i].buf);
    px->n_out = 0;
    if (!px->ops->retry(px, code))
        return false; /* (the error body stays for the answer) */
    free(px->err_body);
    px->err_body = NULL;
    px->err_len = 0;
    px->attempt++;
    px->upstream_status = 0;
    px->error = NULL;
    px->retried = false;
    px->reused = false;
    px->limited = false;
    px->t_connected_ns = 0;
    px->t_first_byte_ns = 0;
    px->bytes_from_upstream = 0;
    /* an early-committed stream keeps its client company again until the next first byte
     * (the failed attempt's first byte stopped the keep-alives) */
    if (keepalives_on(px))
        uv_timer_start(&px->ka_timer, on_keepalive, px->keepalive_interval_ms, 0);
    send_request(px);
    return true;
}

/* An attempt is over (<code> 0: its answer was read in full, an error answer included): the
 * next attempt when one may and does follow, else the final step. */
static void end_attempt(lx_proxy_t *px, int code)
{
    if (px->finished)
        return;
    if (may_fail_over(px, code) && next_attempt(px, code))
        return;
    lx_proxy_finish(px, code);
}

void lx_proxy_finish(lx_proxy_t *px, int code)
{
    if (px->finished)
        return;
    px->finished = true;
    if (px->hedge != NULL && px->hedge->active)
        hedge_end(px, LX_ECANCELED); /* (reported before on_finish: the record is whole) */
    px->t_end_ns = lx_worker_clock_ns();
    disarm(px); /* (the timer itself stops when it is closed, below) */
    release_upstream(px, code);
    px->state = LX_PROXY_DONE;

    lx_http_request_t *req = px->req;
    req->on_abort = NULL;
    req->on_drain = NULL;
    /* only a complete answer's last bytes are still pending here (end_of_body) */
    bool whole = !req->peer_gone && px->committed && code == 0 && px->upstream_status < 400;
    if (!whole)
        drop_pending(px);
    if (req->peer_gone) {
        px->client_status = px->committed ? px->client_status : 499;
        if (px->ops->on_finish != NULL)
            px->ops->on_finish(px, code);
        lx_http_server_finish(req);
    } else if (px->committed) {
        if (whole) {
            if (px->ops->on_finish != NULL)
                px->ops->on_finish(px, code);
            if (px->n_pending > 0) /* the last bytes and the end leave in one write */
                lx_http_server_send_body_end(req, px->pending, px->n_pending);
            px->n_pending = 0;
            lx_http_server_finish(req);
        } else {
            end_cut(px, code);
        }
    } else {
        char msg[1024];
        char extra[64] = "";
        /* a failure on the way (code != 0) outranks an error body collected so far */
        bool answered = code == 0 && px->upstream_status >= 400;
        int status = describe_failure(px, answered, code, msg, sizeof(msg));
        if (answered && px->upstream_status == 429 && px->hc.retry_after >= 0)
            snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", (long long)px->hc.retry_after);
        else if (px->limited)
            snprintf(extra, sizeof(extra), "Retry-After: 1\r\n");
        px->client_status = status;
        if (px->ops->on_finish != NULL)
            px->ops->on_finish(px, code);
        if (px->ops->respond_error == NULL || !px->ops->respond_error(px, code, status, msg))
            lx_http_server_respond_error(req, status, extra, msg);
    }
    for (unsigned i = 0; i < px->n_out; i++)
        lx_buf_unref(px->out[i].buf);
    px->n_out = 0;
    free(px->err_body);
    px->err_body = NULL;
    if (px->open_timers == 2)
        uv_close((uv_handle_t *)&px->ka_timer, on_timer_closed);
    uv_close((uv_handle_t *)&px->timer, on_timer_closed);
}

/* ---- hedging: a second attempt racing the current one ---------------------------------------
 *
 *   hedge_due passed, no first byte, nothing relayed ─> ops->hedge ─> hedge_send: the pool's
 *     connection, the hedge's request written; its reads are held and parsed by its own
 *     parser until its final (non-1xx) head is complete (at most LX_PROXY_HEDGE_HELD reads:
 *     past that it stops reading and can only take over after a failure)
 *   the current attempt's head (< 400) comes first ─> hedge_end(LOST): hedge connection closed
 *   the hedge's head is complete first: an error status (>= 400) ─> hedge_end (its failure,
 *     with its Retry-After; the current attempt races on alone); else, while the current
 *     attempt reads an error answer of its own ─> the hedge waits (ready) for its end; else
 *     ─> ops->hedge_won(LOST) ─> hedge_take_over: the current attempt's connection closed,
 *     the hedge's adopted (parser, timers) and its held reads parsed as the answer's first
 *   the current attempt fails in a way that fails over ─> ops->hedge_won(code) ─> take over,
 *     or (false) hedge_end(LX_ECANCELED) and ops->retry as without a hedge
 *   lx_proxy_finish (client gone, shutdown, a failure not worth another attempt) ─>
 *     hedge_end(LX_ECANCELED)
 */

/* The hedge's parser stops at its final head (a value lx_http_client_parse returns). */
#define HEDGE_HEAD 1

static int hedge_on_head(lx_http_client_t *hc)
{
    (void)hc;
    return HEDGE_HEAD;
}

static int hedge_on_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    (void)hc, (void)b, (void)at, (void)len;
    return HEDGE_HEAD; /* (never: parsing stops at the head) */
}

static int hedge_on_complete(lx_http_client_t *hc)
{
    (void)hc;
    return HEDGE_HEAD;
}

static const lx_http_client_cbs_t hedge_cbs = {hedge_on_head, hedge_on_body, hedge_on_complete};

static void drop_held(lx_proxy_hedge_t *h)
{
    for (unsigned i = 0; i < h->n_held; i++)
        lx_buf_unref(h->held[i].buf);
    h->n_held = 0;
}

static void hedge_send(lx_proxy_t *px);

/* The hedge ended without taking over: its upstream side let go (closed: it may be mid-answer),
 * its request dropped, the owner told. */
static void hedge_end(lx_proxy_t *px, int code)
{
    lx_proxy_hedge_t *h = px->hedge;
    if (h == NULL || !h->active)
        return;
    h->active = false;
    if (h->connecting) {
        h->connecting = false;
        lx_conn_pool_cancel(&h->wait);
    }
    if (h->conn != NULL) {
        lx_conn_pool_close(h->conn);
        h->conn = NULL;
    }
    for (unsigned i = 0; i < h->n_out; i++)
        lx_buf_unref(h->out[i].buf);
    h->n_out = 0;
    drop_held(h);
    h->ready = false;
    px->ops->hedge_ended(px, h, code);
}

static void on_hedge_sent(lx_stream_t *s, int status, void *arg)
{
    (void)s, (void)status, (void)arg; /* a write error shows up as a read error */
}

/* The hedge's head is complete with a 2xx/3xx status: it wins, unless the current attempt is
 * reading an error answer of its own (its head came first): then that answer is read in full
 * and judged as failover judges it (ops->hedge_won with its code), the hedge waiting. */
static void hedge_head_done(lx_proxy_t *px, lx_proxy_hedge_t *h)
{
    if (px->upstream_status != 0) {
        h->ready = true;
        lx_stream_read_stop(&h->conn->stream);
        return;
    }
    px->ops->hedge_won(px, LX_PROXY_HEDGE_LOST);
    hedge_take_over(px, LX_PROXY_HEDGE_LOST); /* (its held reads are parsed as the answer's) */
}

static void on_hedge_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_upconn_t *conn = s->data;
    lx_proxy_hedge_t *h = conn->data;
    lx_proxy_t *px = h->px;
    if (nread < 0) {
        if (h->reused && !h->retried && h->n_held == 0) {
            /* a pooled connection the server had closed: one fresh one, as the proxy does */
            h->retried = true;
            lx_conn_pool_close(h->conn);
            h->conn = NULL;
            hedge_send(px);
            return;
        }
        hedge_end(px, nread == UV_EOF ? LX_EUPSTREAM : (int)nread);
        return;
    }
    if (nread == 0)
        return;
    if (h->n_held == LX_PROXY_HEDGE_HELD) {
        hedge_end(px, LX_EUPSTREAM); /* (never: it stopped reading when full) */
        return;
    }
    h->held[h->n_held++] = lx_slice_make(b, (size_t)(data - b->data), (size_t)nread);
    int rc = lx_http_client_parse(&h->hc, b, data, (size_t)nread);
    if (rc == 0) {
        if (h->n_held == LX_PROXY_HEDGE_HELD)
            lx_stream_read_stop(s); /* no room for more: it waits to take over after a failure */
        return;
    }
    if (rc != HEDGE_HEAD) {
        hedge_end(px, LX_EUPSTREAM); /* a malformed head, or too many 1xx answers */
        return;
    }
    h->status = h->hc.status;
    h->retry_after = h->hc.retry_after;
    if (h->status >= 400) {
        hedge_end(px, 0); /* its error: the current attempt races on alone */
        return;
    }
    hedge_head_done(px, h);
}

static void on_hedge_conn(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    lx_proxy_hedge_t *h = lx_container_of(w, lx_proxy_hedge_t, wait);
    h->connecting = false;
    if (status != 0) {
        hedge_end(h->px, status);
        return;
    }
    h->conn = conn;
    conn->data = h;
    h->reused = conn->reused;
    h->t_connected_ns = lx_worker_clock_ns();
    int rc = write_out(&conn->stream, h->out, h->n_out, on_hedge_sent, h, on_hedge_read);
    if (rc != 0)
        hedge_end(h->px, rc);
}

static void hedge_send(lx_proxy_t *px)
{
    lx_proxy_hedge_t *h = px->hedge;
    lx_http_client_init(&h->hc, &hedge_cbs, 64 * 1024, h);
    h->connecting = true;
    lx_conn_pool_get(h->pool, &h->wait, on_hedge_conn);
}

static void hedge_fire(lx_proxy_t *px)
{
    px->hedge_due = 0;
    if (px->ops->hedge == NULL || px->relayed || px->t_first_byte_ns != 0 || px->req->peer_gone ||
        px->state == LX_PROXY_RELAYING || (px->hedge != NULL && px->hedge->active))
        return;
    lx_proxy_hedge_t *h = px->ops->hedge(px);
    if (h == NULL)
        return;
    px->hedge = h;
    h->px = px;
    h->conn = NULL;
    h->status = 0;
    h->retry_after = -1;
    h->n_held = 0;
    h->active = true;
    h->reused = h->retried = h->ready = false;
    h->t_start_ns = lx_worker_clock_ns();
    h->t_connected_ns = 0;
    hedge_send(px);
}

/* The hedge becomes the current attempt (the owner has recorded the old one's end): the old
 * attempt's upstream side and request go, the hedge's connection (or its pool, while it still
 * connects) and request come, the per-attempt state starts over. */
static void hedge_take_over(lx_proxy_t *px, int code)
{
    lx_proxy_hedge_t *h = px->hedge;
    disarm(px);
    release_upstream(px, code == LX_PROXY_HEDGE_LOST ? LX_ECANCELED : code);
    for (unsigned i = 0; i < px->n_out; i++)
        lx_buf_unref(px->out[i].buf);
    memcpy(px->out, h->out, h->n_out * sizeof(h->out[0]));
    px->n_out = h->n_out;
    h->n_out = 0;
    h->active = h->ready = false;
    free(px->err_body);
    px->err_body = NULL;
    px->err_len = 0;
    px->attempt++;
    px->upstream_status = 0;
    px->error = NULL;
    px->limited = false;
    px->t_first_byte_ns = 0;
    px->bytes_from_upstream = 0;
    px->pool = h->pool;
    px->retried = h->retried;
    px->reused = h->reused;
    px->t_connected_ns = h->t_connected_ns;
    if (keepalives_on(px))
        uv_timer_start(&px->ka_timer, on_keepalive, px->keepalive_interval_ms, 0);
    if (h->conn == NULL) {
        if (h->connecting) {
            h->connecting = false;
            lx_conn_pool_cancel(&h->wait);
        }
        send_request(px); /* (its connect starts over on the same pool) */
        return;
    }
    px->conn = h->conn;
    h->conn = NULL;
    px->conn->data = px;
    px->state = LX_PROXY_WAITING;
    lx_http_client_init(&px->hc, &client_cbs, 64 * 1024, px);
    lx_stream_read_start(&px->conn->stream, on_up_read);
    uint64_t now = uv_now(px->timer.loop);
    arm(px, bounded(px, now, now, px->first_byte_timeout_ms));
    /* what the hedge read so far is the answer's beginning: parsed again, by the proxy's
     * parser, while the attempt it started stays the current one */
    lx_upconn_t *conn = px->conn;
    lx_slice_t held[LX_PROXY_HEDGE_HELD];
    unsigned n = h->n_held;
    memcpy(held, h->held, n * sizeof(held[0])); /* (h is free for another race meanwhile) */
    h->n_held = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!px->finished && px->conn == conn)
            on_up_read(&conn->stream, (ssize_t)held[i].len, held[i].buf, lx_slice_ptr(&held[i]));
        lx_buf_unref(held[i].buf);
    }
}
