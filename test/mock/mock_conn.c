/*
 * mock_conn.c - one client connection of the mock server: reads, llhttp parsing, per-request
 * controls, the answer's pacing (delay, chunk intervals, resets, hangs) and ordered writes.
 *
 * Flow: on_read appends to the connection's input buffer; process() runs llhttp over it and
 * stops after each complete request (on_message_complete pauses the parser), so requests are
 * answered one at a time and in order even when pipelined. A request is recorded (mock.c),
 * then answered at once or later (delay timer, a prelude of interim 1xx answers or of a head
 * dribbled line by line, stream timer, hang); bytes still unparsed wait in the input buffer
 * until the answer is done. Answers are appended to `out`; flush() hands
 * `out` to one uv_write at a time (swapping it with `wbuf`), so pipelined answers produced in
 * one read go out in one write. Reads continue while an answer is in progress so that a peer
 * close is seen at once: that is what lx_mock_closes_by_peer counts.
 *
 * Owns: the connection struct and its buffers; freed when both handles (tcp, timer) closed.
 */
#include "mock_internal.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define IN_INIT     (16 * 1024)       /* first input buffer */
#define IN_MIN_READ (4 * 1024)        /* smallest space offered to a read */
#define IN_BACKLOG  (8 * 1024 * 1024) /* unparsed bytes held during an answer before reads pause */
#define OUT_HIGH    (64 * 1024)       /* a stream stops producing above this until written */
#define BUF_KEEP    (1024 * 1024)     /* output buffers above this are freed once written */
#define PATH_MAX_   1024
#define HNAME_MAX   64
#define HVAL_MAX    256

typedef enum {
    ST_IDLE,       /* no answer in progress: parsing */
    ST_DELAY,      /* waiting for the delay timer before the answer's head */
    ST_PRELUDE,    /* sending interim 100s, or the head's lines one by one, before the answer */
    ST_HANG,       /* never answering */
    ST_STREAM,     /* producing SSE chunks (timer- or drain-paced) */
    ST_RESET_WAIT, /* the answer is cut: reset once the queued bytes are written */
    ST_GPU,        /* GPU mode: waiting in the engine's queue, in prefill, or decoding */
} state_t;

struct lx_mock_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* delay and stream pacing */
    uv_write_t wreq;  /* the one write in flight */
    uv_shutdown_t sreq;
    lx_mock_t *m;
    lx_mock_conn_t *prev, *next; /* m->conns */
    llhttp_t parser;
    int handles; /* open handles; the struct is freed when it reaches 0 */

    /* input: bytes [in_start, in_end) are received but not parsed yet */
    char *in;
    size_t in_start, in_end, in_cap;

    /* output */
    lx_mock_buf_t out;  /* produced, not yet handed to uv_write */
    lx_mock_buf_t wbuf; /* being written: [woff, woff + wpiece) is in flight */
    size_t woff, wpiece;
    size_t write_size; /* largest piece per uv_write; 0 = no limit */

    /* the request being parsed (kept until its answer is done: parsing is paused meanwhile) */
    lx_mock_buf_t raw; /* its bytes as received, up to LX_MOCK_RECORD_MAX */
    char path[PATH_MAX_];
    size_t path_len;
    char hname[HNAME_MAX];
    size_t hname_len; /* HNAME_MAX + 1 = too long */
    char hval[HVAL_MAX];
    size_t hval_len;     /* HVAL_MAX + 1 = too long */
    lx_mock_ctl_t hctl;  /* controls from x-mock-* headers */
    lx_mock_scan_t scan; /* the body's fields and "mock" controls (these win) */
    uint64_t body_len;
    int method;
    uint8_t expect_continue, msg_done, keep_alive, http10;

    /* the answer */
    state_t state;
    lx_mock_reply_t reply;
    uint64_t t0_ns;       /* when content chunk 0 is due */
    uint64_t interval_ns; /* between content chunks */
    uint32_t next_chunk;
    int64_t reset_after; /* reset after this many content chunks / body bytes; -1 = never */
    uint8_t pump_on_drain;
    uint32_t interim_left; /* prelude: 100 Continue answers still to send */
    uint32_t dribble_left; /* prelude: header lines still to send one by one */
    uint8_t dribbled;      /* the prelude sent a status line: the answer's own is dropped */
    uint8_t strip_status;  /* drop the status line that starts at out[strip_at] before writing */
    size_t strip_at;

    /* lifecycle */
    uint8_t closing;         /* uv_close called */
    uint8_t in_process;      /* process() is on the stack */
    uint8_t writing;         /* wreq in flight */
    uint8_t close_when_done; /* close after the current answer */
    uint8_t close_after;     /* no more requests: shut down once output is written */
    uint8_t shutting;        /* uv_shutdown called */
    uint8_t read_stopped;
    uint8_t peer_counted; /* this connection was counted in closes_by_peer */
    uint8_t in_progress;  /* counted in m->in_progress (a request received, not yet answered) */
    uint8_t counted_open; /* counted in m->open_connections */
    int fault;            /* endpoint-wide fault status to answer with after the delays, or 0 */
    int status;           /* the status of the answer being produced */

    /* GPU mode (mock_gpu.c): the request in the engine */
    lx_mock_gpu_seq_t gpu;
    uint8_t gpu_decoding; /* its prefill is over */
};

static void process(lx_mock_conn_t *c);
static void flush(lx_mock_conn_t *c);
static void answer(lx_mock_conn_t *c);
static void stream_pump(lx_mock_conn_t *c, int from_timer);
static void gpu_step(lx_mock_conn_t *c);

/* ---- lifecycle ---- */

static void on_handle_close(uv_handle_t *h)
{
    lx_mock_conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    free(c->in);
    lx_mock_buf_dispose(&c->out);
    lx_mock_buf_dispose(&c->wbuf);
    lx_mock_buf_dispose(&c->raw);
    lx_mock_gpu_seq_dispose(&c->gpu);
    free(c);
}

static void conn_close(lx_mock_conn_t *c, int reset)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->counted_open)
        atomic_fetch_sub(&c->m->open_connections, 1);
    if (c->in_progress) {
        c->in_progress = 0;
        c->m->in_progress--;
    }
    if (c->gpu.phase != LX_MOCK_GPU_NONE)
        lx_mock_gpu_end(c->m, &c->gpu, 0); /* leaves the queue, or frees its place */
    if (c->prev)
        c->prev->next = c->next;
    else
        c->m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    uv_close((uv_handle_t *)&c->timer, on_handle_close);
    if (!reset || uv_tcp_close_reset(&c->tcp, on_handle_close) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_handle_close);
}

void lx_mock_conn_close_all(lx_mock_t *m, int reset)
{
    while (m->conns)
        conn_close(m->conns, reset);
}

/* The peer closed or reset (read EOF/error) or a write failed. */
static void peer_gone(lx_mock_conn_t *c, ssize_t err, int write_failed)
{
    if (c->closing)
        return;
    int mid = c->state != ST_IDLE || write_failed ||
              uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0;
    if (err == UV_EOF && !mid) {
        /* a half-close after the last answer: finish writing, then close */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = 1;
        c->close_after = 1;
        flush(c);
        return;
    }
    if (mid && !c->peer_counted) {
        c->peer_counted = 1;
        lx_mock_note_peer_close(c->m);
    }
    conn_close(c, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    lx_mock_conn_t *c = req->data;
    conn_close(c, 0);
}

/* ---- output ---- */

static void on_write(uv_write_t *req, int status);

static void write_piece(lx_mock_conn_t *c)
{
    size_t n = c->wbuf.len - c->woff;
    if (c->write_size > 0 && n > c->write_size)
        n = c->write_size;
    uv_buf_t b = uv_buf_init(c->wbuf.p + c->woff, (unsigned int)n);
    c->wpiece = n;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        peer_gone(c, UV_EPIPE, 1);
        return;
    }
    c->writing = 1;
}

/* Everything produced has been written. */
static void drained(lx_mock_conn_t *c)
{
    if (c->state == ST_RESET_WAIT) {
        conn_close(c, 1);
        return;
    }
    if (c->pump_on_drain && (c->state == ST_STREAM || c->state == ST_GPU)) {
        c->pump_on_drain = 0;
        if (c->state == ST_STREAM)
            stream_pump(c, 0);
        else
            gpu_step(c);
        flush(c);
        return;
    }
    if (c->close_after && !c->shutting && c->state == ST_IDLE) {
        c->shutting = 1;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            conn_close(c, 0);
    }
}

/* After a dribbled prelude, the answer's own status line goes: its headers continue the head
 * the prelude began. */
static void strip_status(lx_mock_conn_t *c)
{
    c->strip_status = 0;
    char *p = c->out.p + c->strip_at;
    size_t n = c->out.len - c->strip_at;
    char *eol = c->strip_at < c->out.len ? memchr(p, '\n', n) : NULL;
    if (eol == NULL)
        return;
    size_t cut = (size_t)(eol + 1 - p);
    memmove(p, p + cut, n - cut);
    c->out.len -= cut;
}

static void flush(lx_mock_conn_t *c)
{
    if (c->closing || c->writing)
        return;
    if (c->strip_status)
        strip_status(c);
    if (c->out.len == 0) {
        drained(c);
        return;
    }
    lx_mock_buf_t t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    c->woff = 0;
    write_piece(c);
}

static void on_write(uv_write_t *req, int status)
{
    lx_mock_conn_t *c = req->data;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        peer_gone(c, status, 1);
        return;
    }
    c->woff += c->wpiece;
    if (c->woff < c->wbuf.len) {
        write_piece(c);
        return;
    }
    c->wbuf.len = 0;
    c->woff = 0;
    if (c->wbuf.cap > BUF_KEEP)
        lx_mock_buf_dispose(&c->wbuf);
    flush(c);
}

/* ---- answers ---- */

static int64_t ctl(const lx_mock_conn_t *c, int i, int64_t def)
{
    if (c->scan.ctl.set & (1u << i))
        return c->scan.ctl.val[i];
    if (c->hctl.set & (1u << i))
        return c->hctl.val[i];
    return def;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t l = strlen(suffix);
    return n >= l && memcmp(s + n - l, suffix, l) == 0;
}

static lx_mock_ep_t route(const char *path, size_t n)
{
    const char *q = memchr(path, '?', n);
    if (q)
        n = (size_t)(q - path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (ends_with(path, n, "/chat/completions"))
        return LX_MOCK_EP_CHAT;
    if (ends_with(path, n, "/completions"))
        return LX_MOCK_EP_COMPLETIONS;
    if (ends_with(path, n, "/embeddings"))
        return LX_MOCK_EP_EMBEDDINGS;
    if (ends_with(path, n, "/models"))
        return LX_MOCK_EP_MODELS;
    if (ends_with(path, n, "/healthz") || ends_with(path, n, "/health"))
        return LX_MOCK_EP_HEALTH;
    return LX_MOCK_EP_UNKNOWN;
}

static lx_mock_connhdr_t connhdr(const lx_mock_conn_t *c)
{
    if (c->close_when_done)
        return LX_MOCK_CONNHDR_CLOSE;
    return c->http10 ? LX_MOCK_CONNHDR_KEEP_ALIVE : LX_MOCK_CONNHDR_NONE;
}

/* The answer is complete: take the next request, or close. */
static void done(lx_mock_conn_t *c)
{
    c->state = ST_IDLE;
    if (c->in_progress) {
        c->in_progress = 0;
        c->m->in_progress--;
    }
    lx_mock_note_answer(c->m, c->status);
    if (c->close_when_done)
        c->close_after = 1;
    if (!c->in_process)
        process(c);
}

static void fail(lx_mock_conn_t *c)
{
    conn_close(c, 0);
}

static void error_answer(lx_mock_conn_t *c, int status, const char *msg)
{
    c->status = status;
    if (lx_mock_reply_error(&c->out, &c->m->scratch, status, msg, connhdr(c)) < 0) {
        fail(c);
        return;
    }
    done(c);
}

static void on_stream_timer(uv_timer_t *t)
{
    lx_mock_conn_t *c = t->data;
    stream_pump(c, 1);
    flush(c);
}

/* Produces the content chunks that are due, then the tail; paced by the timer (interval) or by
 * writes draining (no interval, many chunks). */
/* The events after the last content chunk, and the end of the answer. */
static void stream_tail(lx_mock_conn_t *c)
{
    lx_mock_reply_t *r = &c->reply;
    lx_mock_buf_t *scratch = &c->m->scratch;
    if (lx_mock_reply_event(&c->out, scratch, r, LX_MOCK_EV_FINAL, 0) < 0 ||
        (r->usage && lx_mock_reply_event(&c->out, scratch, r, LX_MOCK_EV_USAGE, 0) < 0) ||
        lx_mock_reply_event(&c->out, scratch, r, LX_MOCK_EV_DONE, 0) < 0 ||
        lx_mock_reply_stream_end(&c->out, r) < 0) {
        fail(c);
        return;
    }
    done(c);
}

static void stream_pump(lx_mock_conn_t *c, int from_timer)
{
    lx_mock_reply_t *r = &c->reply;
    lx_mock_buf_t *scratch = &c->m->scratch;
    uint64_t now = lx_mock_reply_now_ns();
    uint32_t stop_at = r->chunks;
    if (c->reset_after >= 0 && (uint64_t)c->reset_after < stop_at)
        stop_at = (uint32_t)c->reset_after;
    int force = from_timer; /* a timer may fire up to 1 ms early: it always sends one chunk */
    while (c->next_chunk < stop_at) {
        uint64_t due = c->t0_ns + (uint64_t)c->next_chunk * c->interval_ns;
        if (due > now && !force)
            break;
        force = 0;
        if (lx_mock_reply_event(&c->out, scratch, r, LX_MOCK_EV_CONTENT, c->next_chunk) < 0) {
            fail(c);
            return;
        }
        c->next_chunk++;
        if (c->out.len >= OUT_HIGH && c->next_chunk < stop_at) {
            c->pump_on_drain = 1;
            return;
        }
    }
    if (c->next_chunk < stop_at) {
        uint64_t due = c->t0_ns + (uint64_t)c->next_chunk * c->interval_ns;
        uint64_t wait = due > now ? due - now : 0;
        uv_timer_start(&c->timer, on_stream_timer, (wait + 999999) / 1000000, 0);
        return;
    }
    if (c->reset_after >= 0) {
        c->state = ST_RESET_WAIT;
        return;
    }
    stream_tail(c);
}

/* Picks the stream's framing and appends its head; -1 when the connection failed. */
static int stream_head(lx_mock_conn_t *c)
{
    lx_mock_reply_t *r = &c->reply;
    if (ctl(c, LX_MOCK_CTL_CLOSE_DELIMITED, 0) ||
        (c->http10 && !ctl(c, LX_MOCK_CTL_CONTENT_LENGTH, 0)))
        r->frame = LX_MOCK_FRAME_CLOSE;
    else if (ctl(c, LX_MOCK_CTL_CONTENT_LENGTH, 0) == 1)
        r->frame = LX_MOCK_FRAME_LENGTH;
    else
        r->frame = LX_MOCK_FRAME_CHUNKED;
    if (r->frame == LX_MOCK_FRAME_CLOSE)
        c->close_when_done = 1;
    r->connhdr = connhdr(c);
    r->usage = r->usage && c->scan.include_usage;
    r->pad_ts = r->frame == LX_MOCK_FRAME_LENGTH;
    size_t clen = 0;
    if (r->frame == LX_MOCK_FRAME_LENGTH) {
        clen = lx_mock_reply_stream_size(&c->m->scratch, r);
        if (clen == 0) {
            fail(c);
            return -1;
        }
    }
    if (lx_mock_reply_stream_head(&c->out, r, clen) < 0) {
        fail(c);
        return -1;
    }
    return 0;
}

static void stream_start(lx_mock_conn_t *c)
{
    if (stream_head(c) < 0)
        return;
    int64_t us = ctl(c, LX_MOCK_CTL_INTERVAL_US, -1);
    if (us < 0)
        us = clamp(ctl(c, LX_MOCK_CTL_INTERVAL_MS, 0), 0, 60000) * 1000;
    c->interval_ns = (uint64_t)clamp(us, 0, 60000000) * 1000;
    uint64_t first_ms = (uint64_t)clamp(ctl(c, LX_MOCK_CTL_FIRST_DELAY_MS, 0), 0, 3600000);
    c->t0_ns = lx_mock_reply_now_ns() + first_ms * 1000000;
    c->next_chunk = 0;
    c->pump_on_drain = 0;
    c->state = ST_STREAM;
    stream_pump(c, 0);
}

static void json_answer(lx_mock_conn_t *c);
static void gpu_answer(lx_mock_conn_t *c);
static void gpu_metrics(lx_mock_conn_t *c);

static int is_metrics(const char *path, size_t n)
{
    const char *q = memchr(path, '?', n);
    if (q)
        n = (size_t)(q - path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    return ends_with(path, n, "/metrics");
}

/* Sends the answer's head and body (or starts the stream). */
static void answer(lx_mock_conn_t *c)
{
    lx_mock_t *m = c->m;
    lx_mock_reply_t *r = &c->reply;
    char msg[PATH_MAX_ + 64];
    if (c->fault) {
        int fault = c->fault;
        c->fault = 0;
        error_answer(c, fault, "mock: injected endpoint fault");
        return;
    }
    int64_t status = ctl(c, LX_MOCK_CTL_STATUS, 200);
    if (status >= 300 && status <= 599) {
        snprintf(msg, sizeof(msg), "mock: injected status %d", (int)status);
        error_answer(c, (int)status, msg);
        return;
    }
    memset(r, 0, sizeof(*r));
    c->status = 200;
    if (c->gpu.on && c->method == HTTP_GET && is_metrics(c->path, c->path_len)) {
        gpu_metrics(c);
        return;
    }
    r->ep = route(c->path, c->path_len);
    if (r->ep == LX_MOCK_EP_UNKNOWN) {
        snprintf(msg, sizeof(msg), "Invalid URL (%s %.*s)", llhttp_method_name(c->method),
                 (int)c->path_len, c->path);
        error_answer(c, 404, msg);
        return;
    }
    int want_post = r->ep != LX_MOCK_EP_MODELS && r->ep != LX_MOCK_EP_HEALTH;
    if (c->method != (want_post ? HTTP_POST : HTTP_GET)) {
        snprintf(msg, sizeof(msg), "Method %s not allowed here (use %s)",
                 llhttp_method_name(c->method), want_post ? "POST" : "GET");
        error_answer(c, 405, msg);
        return;
    }
    r->model = c->scan.model_len ? c->scan.model : "mock-model";
    r->model_len = c->scan.model_len ? c->scan.model_len : strlen("mock-model");
    r->id = ++m->next_id;
    r->created = (int64_t)time(NULL);
    r->chunks = (uint32_t)clamp(ctl(c, LX_MOCK_CTL_CHUNKS, 5), 0, 10000000);
    r->chunk_size = (uint32_t)clamp(ctl(c, LX_MOCK_CTL_CHUNK_SIZE, 16), 0, 1024 * 1024);
    r->body_size = clamp(ctl(c, LX_MOCK_CTL_BODY_SIZE, -1), -1, 256 * 1024 * 1024);
    r->usage = ctl(c, LX_MOCK_CTL_USAGE, 1) != 0;
    r->prompt_tokens = c->body_len ? (c->body_len + 3) / 4 : 1;
    r->completion_tokens = r->body_size >= 0 ? ((uint64_t)r->body_size + 3) / 4 : r->chunks;
    r->inputs = c->scan.inputs > 2048 ? 2048 : c->scan.inputs;
    c->reset_after = clamp(ctl(c, LX_MOCK_CTL_RESET_AFTER, -1), -1, INT32_MAX);
    if (c->gpu.on && (r->ep == LX_MOCK_EP_CHAT || r->ep == LX_MOCK_EP_COMPLETIONS)) {
        gpu_answer(c);
        return;
    }
    if (c->scan.stream && (r->ep == LX_MOCK_EP_CHAT || r->ep == LX_MOCK_EP_COMPLETIONS)) {
        stream_start(c);
        return;
    }
    json_answer(c);
}

/* A non-streaming answer with c->reply: framing, head and body, or a cut (reset_after). */
static void json_answer(lx_mock_conn_t *c)
{
    lx_mock_t *m = c->m;
    lx_mock_reply_t *r = &c->reply;
    if (ctl(c, LX_MOCK_CTL_CLOSE_DELIMITED, 0))
        r->frame = LX_MOCK_FRAME_CLOSE;
    else if (ctl(c, LX_MOCK_CTL_CONTENT_LENGTH, 1))
        r->frame = LX_MOCK_FRAME_LENGTH;
    else
        r->frame = c->http10 ? LX_MOCK_FRAME_CLOSE : LX_MOCK_FRAME_CHUNKED;
    if (r->frame == LX_MOCK_FRAME_CLOSE)
        c->close_when_done = 1;
    r->connhdr = connhdr(c);
    size_t start = c->out.len, head_len = 0;
    if (lx_mock_reply_json(&c->out, &m->scratch, r, &head_len) < 0) {
        fail(c);
        return;
    }
    if (c->reset_after >= 0) {
        size_t keep = start + head_len + (size_t)c->reset_after;
        if (keep < c->out.len)
            c->out.len = keep;
        c->state = ST_RESET_WAIT;
        return;
    }
    done(c);
}

/* ---- GPU mode: answers paced by the simulated engine (mock_gpu.c) ---- */

static void on_gpu_timer(uv_timer_t *t)
{
    lx_mock_conn_t *c = t->data;
    gpu_step(c);
    flush(c);
}

static void gpu_arm(lx_mock_conn_t *c)
{
    uint64_t now = lx_mock_gpu_now_us(c->m);
    uint64_t wait = c->gpu.due_us > now ? c->gpu.due_us - now : 0;
    uv_timer_start(&c->timer, on_gpu_timer, (wait + 999) / 1000, 0);
}

void lx_mock_conn_gpu_run(lx_mock_conn_t *c)
{
    c->gpu_decoding = 0;
    c->pump_on_drain = 0;
    gpu_arm(c);
}

/* What is due: the end of the prefill (a stream's head), the tokens at the batch's pace (a
 * stream's content chunks), then the end of the answer. */
static void gpu_step(lx_mock_conn_t *c)
{
    lx_mock_t *m = c->m;
    lx_mock_gpu_seq_t *q = &c->gpu;
    uint64_t now = lx_mock_gpu_now_us(m);
    if (q->due_us > now) {
        gpu_arm(c);
        return;
    }
    if (!c->gpu_decoding) {
        lx_mock_gpu_prefilled(m, q);
        c->gpu_decoding = 1;
        if (c->scan.stream && stream_head(c) < 0)
            return;
    }
    while (q->produced < q->out_tokens && q->due_us <= now) {
        if (c->scan.stream && lx_mock_reply_event(&c->out, &m->scratch, &c->reply,
                                                  LX_MOCK_EV_CONTENT, q->produced) < 0) {
            fail(c);
            return;
        }
        lx_mock_gpu_token(m, q);
        q->due_us += lx_mock_gpu_itl_us(m);
        if (c->out.len >= OUT_HIGH && q->produced < q->out_tokens) {
            c->pump_on_drain = 1; /* a client slower than the decode: go on once written */
            return;
        }
    }
    if (q->produced < q->out_tokens) {
        gpu_arm(c);
        return;
    }
    c->gpu_decoding = 0;
    lx_mock_gpu_end(m, q, 1);
    if (c->scan.stream)
        stream_tail(c);
    else
        json_answer(c);
}

/* The request goes to the engine, which runs it at once or queues it (429 when its bounded
 * queue is full). Its output length is the engine's choice; reset_after and body_size do not
 * apply. */
static void gpu_answer(lx_mock_conn_t *c)
{
    lx_mock_reply_t *r = &c->reply;
    lx_mock_gpu_seq_t *q = &c->gpu;
    uint32_t bit = 1u << LX_MOCK_CTL_CHUNKS;
    int64_t chunks = (c->scan.ctl.set | c->hctl.set) & bit ? ctl(c, LX_MOCK_CTL_CHUNKS, 0) : -1;
    q->out_tokens = lx_mock_gpu_out_tokens(c->m, q, chunks);
    q->prompt_tokens = r->prompt_tokens;
    r->chunks = q->out_tokens;
    r->completion_tokens = q->out_tokens;
    r->body_size = -1;
    c->reset_after = -1;
    c->state = ST_GPU;
    if (lx_mock_gpu_submit(c->m, q) != 0) {
        c->state = ST_IDLE;
        error_answer(c, 429, "mock: the server's queue is full");
    }
}

static void gpu_metrics(lx_mock_conn_t *c)
{
    lx_mock_buf_t *scratch = &c->m->scratch;
    if (lx_mock_gpu_metrics(c->m, scratch) < 0 ||
        lx_mock_reply_text(&c->out, "text/plain; version=0.0.4; charset=utf-8", scratch->p,
                           scratch->len, connhdr(c)) < 0) {
        fail(c);
        return;
    }
    done(c);
}

static void prelude(lx_mock_conn_t *c);

static void on_prelude_timer(uv_timer_t *t)
{
    lx_mock_conn_t *c = t->data;
    prelude(c);
    flush(c);
}

/* One step of the prelude: the next interim 100, else the next header line (after the status
 * line), each followed by a pause; then the answer. */
static void prelude(lx_mock_conn_t *c)
{
    if (c->interim_left > 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->interim_left--;
        if (lx_mock_buf_append(&c->out, cont, sizeof(cont) - 1) < 0) {
            fail(c);
            return;
        }
        uv_timer_start(&c->timer, on_prelude_timer,
                       (uint64_t)clamp(ctl(c, LX_MOCK_CTL_INTERIM_MS, 0), 0, 3600000), 0);
        return;
    }
    if (c->dribble_left > 0) {
        if (!c->dribbled && lx_mock_buf_printf(&c->out, "HTTP/1.1 200 OK\r\n") < 0) {
            fail(c);
            return;
        }
        c->dribbled = 1;
        if (lx_mock_buf_printf(&c->out, "X-Mock-Dribble: %u\r\n", (unsigned)c->dribble_left) < 0) {
            fail(c);
            return;
        }
        c->dribble_left--;
        uv_timer_start(&c->timer, on_prelude_timer,
                       (uint64_t)clamp(ctl(c, LX_MOCK_CTL_DRIBBLE_MS, 0), 0, 3600000), 0);
        return;
    }
    c->state = ST_IDLE;
    if (c->dribbled) {
        c->strip_status = 1;
        c->strip_at = c->out.len;
    }
    answer(c);
}

/* The answer is due: with a prelude first when the controls ask for one. */
static void start_answer(lx_mock_conn_t *c)
{
    c->interim_left = (uint32_t)clamp(ctl(c, LX_MOCK_CTL_INTERIM, 0), 0, 1000000);
    c->dribble_left = (uint32_t)clamp(ctl(c, LX_MOCK_CTL_DRIBBLE_LINES, 0), 0, 1000000);
    c->dribbled = 0;
    if (c->interim_left == 0 && c->dribble_left == 0) {
        answer(c);
        return;
    }
    c->state = ST_PRELUDE;
    prelude(c);
}

static void on_delay_timer(uv_timer_t *t)
{
    lx_mock_conn_t *c = t->data;
    c->state = ST_IDLE;
    start_answer(c);
    flush(c);
}

/* A request was fully received: record it, then answer now, later, or never. */
static void request_complete(lx_mock_conn_t *c)
{
    lx_mock_record(c->m, &c->raw);
    c->close_when_done = !c->keep_alive || ctl(c, LX_MOCK_CTL_CLOSE, 0) != 0;
    c->write_size = (size_t)clamp(ctl(c, LX_MOCK_CTL_WRITE_SIZE, 0), 0, INT32_MAX);
    if (ctl(c, LX_MOCK_CTL_HANG, 0)) {
        c->state = ST_HANG;
        c->in_progress = 1;
        c->m->in_progress++;
        return;
    }
    int fault = lx_mock_fault_status(c->m);
    if (fault == 429) {
        error_answer(c, 429, "mock: too many requests in progress");
        return;
    }
    c->fault = fault;
    c->in_progress = 1;
    c->m->in_progress++;
    int64_t delay = clamp(ctl(c, LX_MOCK_CTL_DELAY_MS, 0), 0, 3600000) +
                    (int64_t)atomic_load(&c->m->f_ttfb_delay_ms);
    if (delay > 0) {
        c->state = ST_DELAY;
        uv_timer_start(&c->timer, on_delay_timer, (uint64_t)delay, 0);
        return;
    }
    start_answer(c);
}

/* ---- parsing ---- */

static int on_message_begin(llhttp_t *p)
{
    lx_mock_conn_t *c = p->data;
    c->path_len = 0;
    c->hname_len = c->hval_len = 0;
    c->hctl.set = 0;
    lx_mock_scan_init(&c->scan);
    c->gpu.on = 0;
    if (c->m->gpu.on)
        lx_mock_gpu_begin(c->m, &c->gpu);
    c->body_len = 0;
    c->expect_continue = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    lx_mock_conn_t *c = p->data;
    size_t room = sizeof(c->path) - c->path_len;
    if (n > room)
        n = room;
    memcpy(c->path + c->path_len, at, n);
    c->path_len += n;
    return 0;
}

static void put_capped(char *dst, size_t *len, size_t max, const char *at, size_t n)
{
    if (*len + n <= max) {
        memcpy(dst + *len, at, n);
        *len += n;
    } else {
        *len = max + 1;
    }
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    lx_mock_conn_t *c = p->data;
    put_capped(c->hname, &c->hname_len, HNAME_MAX, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    lx_mock_conn_t *c = p->data;
    put_capped(c->hval, &c->hval_len, HVAL_MAX, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    lx_mock_conn_t *c = p->data;
    if (c->hname_len <= HNAME_MAX && c->hval_len <= HVAL_MAX) {
        const char *n = c->hname;
        size_t nl = c->hname_len;
        if (nl == 6 && strncasecmp(n, "expect", 6) == 0) {
            c->expect_continue = c->hval_len == 12 && strncasecmp(c->hval, "100-continue", 12) == 0;
        } else if (nl > 7 && strncasecmp(n, "x-mock-", 7) == 0) {
            int i = lx_mock_scan_control(n, nl);
            if (i >= 0) {
                c->hctl.val[i] = lx_mock_scan_int(c->hval, c->hval_len);
                c->hctl.set |= 1u << i;
            }
        }
    }
    c->hname_len = c->hval_len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    lx_mock_conn_t *c = p->data;
    if (c->expect_continue && llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (lx_mock_buf_append(&c->out, cont, sizeof(cont) - 1) < 0)
            return -1;
        flush(c);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    lx_mock_conn_t *c = p->data;
    c->body_len += n;
    lx_mock_scan_feed(&c->scan, at, n);
    if (c->gpu.on)
        lx_mock_gpu_feed(&c->gpu, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    lx_mock_conn_t *c = p->data;
    lx_mock_scan_finish(&c->scan);
    if (c->gpu.on)
        lx_mock_gpu_finish_body(&c->gpu);
    c->msg_done = 1;
    c->keep_alive = (uint8_t)llhttp_should_keep_alive(p);
    c->http10 = llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 0;
    c->method = llhttp_get_method(p);
    return HPE_PAUSED; /* one request at a time: the rest waits for this answer */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void raw_append(lx_mock_conn_t *c, const char *d, size_t n)
{
    size_t room = LX_MOCK_RECORD_MAX - c->raw.len;
    if (n > room)
        n = room;
    (void)lx_mock_buf_append(&c->raw, d, n); /* out of memory: the record is cut short */
}

static void bad_request(lx_mock_conn_t *c, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "malformed request: %s", why ? why : "parse error");
    c->close_when_done = 1;
    c->close_after = 1;
    if (lx_mock_reply_error(&c->out, &c->m->scratch, 400, msg, LX_MOCK_CONNHDR_CLOSE) < 0)
        fail(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Parses buffered bytes while no answer is in progress. */
static void process(lx_mock_conn_t *c)
{
    if (c->in_process || c->closing)
        return;
    c->in_process = 1;
    while (!c->closing && c->state == ST_IDLE && !c->close_after && c->in_start < c->in_end) {
        const char *d = c->in + c->in_start;
        size_t n = c->in_end - c->in_start;
        llhttp_errno_t e = llhttp_execute(&c->parser, d, n);
        size_t used = n;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - d);
            llhttp_resume(&c->parser);
        } else if (e != HPE_OK) {
            bad_request(c, llhttp_get_error_reason(&c->parser));
            break;
        }
        raw_append(c, d, used);
        c->in_start += used;
        if (c->msg_done) {
            c->msg_done = 0;
            request_complete(c);
        }
    }
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    c->in_process = 0;
    if (c->closing)
        return;
    if (c->read_stopped && !c->close_after && c->in_end - c->in_start < IN_BACKLOG) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->read_stopped = 0;
    }
    flush(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    lx_mock_conn_t *c = h->data;
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    if (c->in_cap - c->in_end < IN_MIN_READ && c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    if (c->in_cap - c->in_end < IN_MIN_READ) {
        size_t cap = c->in_cap ? c->in_cap * 2 : IN_INIT;
        char *p = realloc(c->in, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* the read callback gets UV_ENOBUFS */
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_end, (unsigned int)(c->in_cap - c->in_end));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lx_mock_conn_t *c = s->data;
    if (c->closing)
        return;
    if (nread > 0) {
        c->in_end += (size_t)nread;
        if (c->close_after) {
            c->in_start = c->in_end = 0; /* no more requests on this connection */
            return;
        }
        if (c->state == ST_IDLE) {
            process(c);
        } else if (c->in_end - c->in_start > IN_BACKLOG) {
            uv_read_stop(s);
            c->read_stopped = 1;
        }
        return;
    }
    if (nread < 0)
        peer_gone(c, nread, 0);
}

void lx_mock_conn_accept(lx_mock_t *m)
{
    lx_mock_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* out of memory: libuv keeps it pending and pauses the listener */
    c->m = m;
    c->gpu.conn = c;
    uv_tcp_init(&m->loop, &c->tcp);
    uv_timer_init(&m->loop, &c->timer);
    c->tcp.data = c->timer.data = c->wreq.data = c->sreq.data = c;
    c->handles = 2;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    if (uv_accept((uv_stream_t *)&m->listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, 0);
        return;
    }
    atomic_fetch_add(&m->connections, 1);
    atomic_fetch_add(&m->open_connections, 1);
    c->counted_open = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->state = ST_IDLE;
    c->reset_after = -1;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c, 0);
}
