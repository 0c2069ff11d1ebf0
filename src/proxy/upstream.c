/*
 * upstream.c - one request to an upstream and its response, with no downstream client.
 *
 *   caller: lx_upstream_start(up) with the request as slices
 *      │
 *      ▼
 *   CONNECT  lx_conn_pool_get ── idle connection (LIFO) or DNS (cached) + connect (+ TLS)
 *      │ on_conn                  [timer: connect timeout; a wait for a slot under
 *      │                           max_connections: the deadline alone, looked at every
 *      │                           connect timeout]
 *      ▼
 *   WAIT     lx_stream_write(request slices, borrowed) ── a write error: step SEND
 *      │ head complete            [timer: first-byte timeout; 1xx answers do not stop it]
 *      ▼
 *   READ     ops->on_head, then ops->on_body per piece
 *      │ complete                 [timer: idle timeout between reads]
 *      ▼
 *   finish(up, code) ── the one end: pool put (clean) or close, ops->on_done once, close the
 *                       timer ─> ops->on_free
 *
 * deadline_ms caps every phase. A pooled connection that turns out dead before any byte of
 * the answer is replaced once by a fresh one (the request is resent: nothing was answered).
 */
#include "proxy/upstream.h"

#include "core/core.h"
#include "core/status.h"

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data);
static void on_timeout(uv_timer_t *t);
static void connect_upstream(lx_upstream_t *up);

static uint64_t loop_now(const lx_upstream_t *up)
{
    return uv_now(up->timer.loop);
}

/* Arms the timer for loop time <due> (0: none), cut to the deadline. */
static void arm_at(lx_upstream_t *up, uint64_t due)
{
    if (up->deadline_ms != 0 && (due == 0 || up->deadline_ms < due))
        due = up->deadline_ms;
    up->phase_due = due;
    if (due == 0) {
        uv_timer_stop(&up->timer);
        return;
    }
    uint64_t now = loop_now(up);
    uv_timer_start(&up->timer, on_timeout, due > now ? due - now : 1, 0);
}

/* A phase timeout of <ms> from now (0: none). */
static void arm(lx_upstream_t *up, uint64_t ms)
{
    arm_at(up, ms != 0 ? loop_now(up) + ms : 0);
}

/* The connect phase runs from wait.since_ms, which the pool restamps when a limited waiter's
 * turn comes; while it waits for a slot the timer looks again every connect timeout, so that
 * the connect after the wait gets its own. */
static void arm_connect(lx_upstream_t *up)
{
    uint64_t ct = up->connect_timeout_ms;
    if (ct == 0)
        arm_at(up, 0);
    else if (up->wait.limited && up->deadline_ms != 0)
        arm(up, ct);
    else
        arm_at(up, up->wait.since_ms + ct);
}

static void release_out(lx_upstream_t *up)
{
    for (unsigned i = 0; i < up->n_out; i++)
        lx_buf_unref(up->out[i].buf);
    up->n_out = 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    lx_upstream_t *up = h->data;
    if (up->ops->on_free != NULL)
        up->ops->on_free(up);
}

/* The one end of an exchange: the connection goes back to the pool only when provably clean
 * (the response read in full, keep-alive, the request written out), else it is closed. */
static void finish(lx_upstream_t *up, int code)
{
    if (up->finished)
        return;
    up->finished = true;
    up->t_end_ns = lx_worker_clock_ns();
    if (up->step == LX_UPSTREAM_CONNECT)
        lx_conn_pool_cancel(&up->wait);
    lx_upconn_t *conn = up->conn;
    up->conn = NULL;
    if (conn != NULL) {
        if (code == 0 && up->hc.complete && up->hc.keep_alive && conn->stream.writes_pending == 0)
            lx_conn_pool_put(conn);
        else
            lx_conn_pool_close(conn);
    }
    if (code == 0)
        up->step = LX_UPSTREAM_DONE;
    release_out(up);
    uv_timer_stop(&up->timer);
    up->ops->on_done(up, code);
    uv_close((uv_handle_t *)&up->timer, on_timer_closed);
}

static void fail(lx_upstream_t *up, int code, const char *error)
{
    if (up->error == NULL)
        up->error = error;
    finish(up, code);
}

static void on_timeout(uv_timer_t *t)
{
    lx_upstream_t *up = t->data;
    if (up->finished || up->phase_due == 0)
        return;
    uint64_t now = loop_now(up);
    bool deadline = up->deadline_ms != 0 && now >= up->deadline_ms;
    if (up->step == LX_UPSTREAM_CONNECT && !deadline &&
        (up->wait.limited ? up->deadline_ms != 0
                          : now < up->wait.since_ms + up->connect_timeout_ms)) {
        arm_connect(up); /* still waiting for a slot with time left, or its connect began later */
        return;
    }
    up->timed_out = true;
    switch (up->step) {
    case LX_UPSTREAM_CONNECT:
        if (up->wait.limited) {
            up->limited = true;
            fail(up, LX_ETIMEDOUT,
                 "llmux's own limit on connections to this provider (max_connections) was "
                 "reached, and none came free in time");
        } else if (up->wait.connecting != NULL &&
                   lx_stream_handshaking(&up->wait.connecting->stream)) {
            fail(up, LX_ETLSHANDSHAKE, "timed out connecting to the provider");
        } else {
            fail(up, LX_ETIMEDOUT, "timed out connecting to the provider");
        }
        return;
    case LX_UPSTREAM_WAIT:
        fail(up, LX_ETIMEDOUT,
             up->t_first_byte_ns == 0 ? "timed out waiting for the provider's first byte"
                                      : "timed out waiting for the provider's response head");
        return;
    default:
        fail(up, LX_ETIMEDOUT, "the provider stalled mid-response");
        return;
    }
}

/* A pooled connection the server closed just before we wrote: nothing was answered, so one
 * fresh connection is safe to try. */
static bool retry_stale(lx_upstream_t *up)
{
    if (!up->reused || up->retried || up->t_first_byte_ns != 0 || up->n_out == 0)
        return false;
    up->retried = true;
    lx_conn_pool_close(up->conn);
    up->conn = NULL;
    connect_upstream(up);
    return true;
}

static int on_hc_head(lx_http_client_t *hc)
{
    lx_upstream_t *up = hc->data;
    up->step = LX_UPSTREAM_READ;
    arm(up, up->idle_timeout_ms); /* the first-byte clock stops, the idle one runs */
    int rc = up->ops->on_head != NULL ? up->ops->on_head(up) : 0;
    return up->finished ? LX_ECANCELED : rc; /* (cancelled from the op: parse no further) */
}

static int on_hc_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    lx_upstream_t *up = hc->data;
    int rc = up->ops->on_body != NULL ? up->ops->on_body(up, b, at, len) : 0;
    return up->finished ? LX_ECANCELED : rc;
}

static int on_hc_complete(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static const lx_http_client_cbs_t hc_cbs = {on_hc_head, on_hc_body, on_hc_complete};

static void on_read(lx_stream_t *s, ssize_t nread, lx_buf_t *b, const char *data)
{
    lx_upconn_t *conn = s->data;
    lx_upstream_t *up = conn->data;
    if (nread < 0) {
        if (retry_stale(up))
            return;
        int rc = lx_http_client_eof(&up->hc);
        if (rc == 0 && !lx_upconn_reset_pending(up->conn)) {
            finish(up, 0);
            return;
        }
        fail(up, nread == UV_EOF ? LX_EUPSTREAM : (int)nread,
             rc == 0 ? "the provider reset the connection" : up->hc.error);
        return;
    }
    if (up->t_first_byte_ns == 0) {
        up->t_first_byte_ns = lx_worker_clock_ns();
        release_out(up); /* an answer has begun: the request will not be resent */
    }
    if (up->step == LX_UPSTREAM_READ)
        arm(up, up->idle_timeout_ms);
    int rc = lx_http_client_parse(&up->hc, b, data, (size_t)nread);
    if (up->finished)
        return; /* cancelled from an op */
    if (rc != 0)
        fail(up, rc,
             up->hc.error != NULL ? up->hc.error : "the response was refused by its reader");
    else if (up->hc.complete)
        finish(up, 0);
}

static void on_sent(lx_stream_t *s, int status, void *arg)
{
    lx_upstream_t *up = arg;
    /* a cancelled write may report after the client was freed: its status is read first */
    if (status == 0 || status == UV_ECANCELED || up->finished || up->conn == NULL ||
        &up->conn->stream != s)
        return; /* (or a write on a stale connection replaced since) */
    if (retry_stale(up))
        return;
    up->step = LX_UPSTREAM_SEND;
    fail(up, status, "failed to send the request to the provider");
}

static void on_conn(lx_conn_pool_wait_t *w, lx_upconn_t *conn, int status)
{
    lx_upstream_t *up = lx_container_of(w, lx_upstream_t, wait);
    if (status != 0) {
        fail(up, status, "could not connect to the provider");
        return;
    }
    up->conn = conn;
    conn->data = up;
    up->reused = conn->reused;
    up->t_connected_ns = lx_worker_clock_ns();
    up->step = LX_UPSTREAM_WAIT;
    lx_http_client_init(&up->hc, &hc_cbs, up->max_head != 0 ? up->max_head : 64 * 1024, up);
    /* the client keeps its own references for a resend: the write borrows more */
    lx_slice_t sl[LX_UPSTREAM_MAX_OUT];
    for (unsigned i = 0; i < up->n_out; i++) {
        sl[i] = up->out[i];
        lx_buf_ref(sl[i].buf);
    }
    int rc = lx_stream_write(&conn->stream, sl, up->n_out, on_sent, up);
    if (rc == 0)
        rc = lx_stream_read_start(&conn->stream, on_read);
    if (rc != 0) {
        if (retry_stale(up))
            return;
        up->step = LX_UPSTREAM_SEND;
        fail(up, rc, "failed to send the request to the provider");
        return;
    }
    arm(up, up->first_byte_timeout_ms);
}

static void connect_upstream(lx_upstream_t *up)
{
    up->step = LX_UPSTREAM_CONNECT;
    lx_conn_pool_get(up->pool, &up->wait, on_conn);
    /* an idle connection came at once: the request is sent and its timer armed already */
    if (up->step == LX_UPSTREAM_CONNECT && !up->finished)
        arm_connect(up);
}

void lx_upstream_start(lx_upstream_t *up)
{
    uv_timer_init(&up->pool->worker->loop, &up->timer);
    up->timer.data = up;
    up->step = LX_UPSTREAM_IDLE;
    up->error = NULL;
    up->conn = NULL;
    up->phase_due = 0;
    up->t_start_ns = lx_worker_clock_ns();
    up->t_connected_ns = up->t_first_byte_ns = up->t_end_ns = 0;
    up->reused = up->timed_out = up->limited = up->retried = up->finished = false;
    connect_upstream(up);
}

void lx_upstream_cancel(lx_upstream_t *up)
{
    fail(up, LX_ECANCELED, "cancelled");
}
