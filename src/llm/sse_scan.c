/*
 * sse_scan.c - the LLM-aware scanner and rewriter of streamed responses (DESIGN.md rule 4).
 *
 * Sits in the streaming relay between the upstream read (body slices decoded by llhttp) and
 * the client write: every read goes through lx_sse_scan_feed(), whose slices are written with
 * writev. Three machines run per byte, all resumable at any byte, each with its group of
 * lx_sse_scan_t's private state:
 *   - SSE framing (WHATWG; here, s->frame): lines end with LF, CRLF or CR; a blank line ends
 *     an event block; ':' lines are comments; "data" lines carry the payload, several joined
 *     by '\n'.
 *   - A lenient JSON tokenizer over the event's data payload (sse_json.c; s->json, s->ev,
 *     s->cap): strings and escapes, nesting, and the key of the member being read, enough to
 *     find the top-level "model", "usage", "choices" and "error" members and each choice's
 *     "finish_reason".
 *   - Output (here, s->out): forwarded input bytes accumulate in a run that becomes one slice of
 * the read's chunk when the read ends or something interrupts it (the model value, which is skipped
 *     and replaced by a slice of the literal chunk; a change of destination). In the tail of the
 *     stream with drop_usage_event on, a block's slices go to held[] until the block ends,
 *     then are either released (the usage-only event) or handed out.
 *
 * A plain JSON answer (json mode) takes the same machines without the framing, in runs: string
 * interiors, numbers and keys that cannot matter are passed over without a per-byte step
 * (sse_json.c). A whole answer, or a whole event, in one read is read structurally instead
 * (sse_whole.c); the usage object's counts are read by sse_usage.c.
 *
 * Owns the literal chunk holding the replacement model and the held slices' references. The
 * one copy made is of usage objects (at most LX_SSE_USAGE_MAX bytes), for accounting.
 */
#include "llm/sse_scan.h"

#include <stddef.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/sse_int.h"

_Static_assert(2 * LX_SSE_SCAN_HOLD_MAX + 8 <= LX_SSE_SCAN_MAX_OUT,
               "a feed call must always make progress");
_Static_assert(LX_SSE_KEY_MAX < 256, "key_len is a uint8_t");
_Static_assert(offsetof(lx_sse_scan_t, prompt_tokens) ==
                       offsetof(lx_sse_scan_t, usage) + LX_SSE_USAGE_MAX &&
                   offsetof(lx_sse_scan_t, out.held) + sizeof(((lx_sse_scan_t *)0)->out.held) ==
                       offsetof(lx_sse_scan_t, json) &&
                   offsetof(lx_sse_scan_t, out) + sizeof(((lx_sse_scan_t *)0)->out) ==
                       offsetof(lx_sse_scan_t, json),
               "lx_sse_scan_init() clears all but usage[] and held[]");

static const char bom_bytes[3] = {'\xef', '\xbb', '\xbf'};

/* ---- output ---- */

static void put_out(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, lx_buf_t *buf, size_t off, size_t len)
{
    s->bytes_out += len;
    if (c->n > 0) {
        lx_slice_t *last = &c->out[c->n - 1];
        if (last->buf == buf && (size_t)last->off + last->len == off) {
            last->len += (uint32_t)len;
            return;
        }
    }
    LX_ASSERT(c->n < c->max);
    c->out[c->n++] = lx_slice_make(buf, off, len);
}

/* Hands the held slices out, in order, and releases the held references. */
static void release_held(lx_sse_scan_t *s, lx_sse_out_ctx_t *c)
{
    for (size_t k = 0; k < s->out.n_held; k++) {
        lx_slice_t *h = &s->out.held[k];
        put_out(s, c, h->buf, h->off, h->len);
        lx_buf_unref(h->buf);
    }
    s->out.n_held = 0;
}

static void drop_held(lx_sse_scan_t *s)
{
    for (size_t k = 0; k < s->out.n_held; k++)
        lx_buf_unref(s->out.held[k].buf);
    s->out.n_held = 0;
}

/* Sends buf->data[off, off+len) to the current destination: out[], or held[] in a held block.
 * A held block over LX_SSE_SCAN_HOLD_MAX slices is handed out and no longer held. */
void lx_sse_emit(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, lx_buf_t *buf, size_t off, size_t len)
{
    if (len == 0)
        return;
    if (!s->out.holding) {
        put_out(s, c, buf, off, len);
        return;
    }
    if (s->out.n_held > 0) {
        lx_slice_t *last = &s->out.held[s->out.n_held - 1];
        if (last->buf == buf && (size_t)last->off + last->len == off) {
            last->len += (uint32_t)len;
            return;
        }
    }
    if (s->out.n_held < LX_SSE_SCAN_HOLD_MAX) {
        s->out.held[s->out.n_held++] = lx_slice_make(buf, off, len);
        return;
    }
    release_held(s, c);
    s->out.holding = false;
    put_out(s, c, buf, off, len);
}

/* Emits the run of forwarded bytes before index <i> of the read. */
void lx_sse_cut(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i)
{
    if (c->run_on && i > c->run) {
        lx_sse_emit(s, c, c->b, c->base + c->run, i - c->run);
        c->run = i;
    }
}

/* The held block has ended (terminator included): drop it or hand it out. */
static void finish_hold(lx_sse_scan_t *s, lx_sse_out_ctx_t *c)
{
    if (s->frame.ev_drop)
        drop_held(s);
    else
        release_held(s, c);
    s->out.holding = false;
    s->frame.end_pending = false;
    s->frame.ev_drop = false;
}

/* ---- SSE framing ---- */

static void data_line_begin(lx_sse_scan_t *s)
{
    if (s->frame.ev_data)
        (void)lx_sse_json_byte(s, '\n'); /* data lines join with LF; whitespace never rewrites */
    s->frame.ev_data = true;
    s->frame.done_pos = 0;
    s->frame.line = L_DATA_SP;
}

static void data_line_end(lx_sse_scan_t *s)
{
    if (s->frame.done_pos == 6)
        s->done = true;
    s->frame.done_pos = NO_MATCH;
}

/* A line ends at byte <i> (<ch>: CR or LF). */
static void end_line(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
    switch (s->frame.line) {
    case L_START: /* a blank line */
        if (!s->in_block)
            break;
        if (s->frame.ev_data)
            s->events++;
        bool drop = s->mode.drop_usage && s->ev.usage && s->ev.choices_empty;
        lx_sse_json_reset(s);
        s->frame.ev_data = false;
        s->in_block = false;
        if (s->out.holding) {
            s->frame.ev_drop = drop;
            if (ch == '\r') {
                s->frame.end_pending = true; /* an LF may follow: it belongs to this block */
            } else {
                lx_sse_cut(s, c, i + 1);
                finish_hold(s, c);
            }
        }
        break;
    case L_NAME:
        if (s->frame.name_pos == 4) {
            data_line_begin(s);
            data_line_end(s);
        }
        break;
    case L_DATA_SP:
    case L_DATA:
        data_line_end(s);
        if (s->out.skipping) { /* an unterminated model string (invalid JSON): framing wins */
            s->out.skipping = false;
            c->run_on = true;
            c->run = i;
        }
        break;
    default:
        break;
    }
    s->frame.line = L_START;
    s->frame.line_len = 0;
}

/* A byte of a data value. */
static void data_byte(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
    if (s->frame.done_pos != NO_MATCH)
        s->frame.done_pos = s->frame.done_pos < 6 && ch == "[DONE]"[s->frame.done_pos]
                                ? s->frame.done_pos + 1
                                : NO_MATCH;
    lx_sse_json_data(s, c, i, ch);
}

static bool is_plain(char ch)
{
    return ch != '"' && ch != '\\' && ch != '\r' && ch != '\n';
}

/*
 * Room in out[] needed before scanning one more byte: what that byte's step may add plus the
 * final cut of the call. Outside a held block a step adds at most 2 (a cut and the model
 * literal; starting a held block adds 1) and the final cut 1. In a held block, a cut that
 * overflows held[] hands out HOLD_MAX + 1, the end of the block at most HOLD_MAX + 1, the
 * literal 1, and the final cut again at most HOLD_MAX + 1.
 */
static size_t reserve(const lx_sse_scan_t *s)
{
    return s->out.holding ? 2 * LX_SSE_SCAN_HOLD_MAX + 8 : 8;
}

int lx_sse_scan_init(lx_sse_scan_t *s, const char *model, size_t model_len, bool drop_usage_event,
                     lx_buf_pool_t *pool)
{
    /* usage[] and held[] are only read below usage_len and n_held: not cleared */
    memset(s, 0, offsetof(lx_sse_scan_t, usage));
    memset(&s->prompt_tokens, 0,
           offsetof(lx_sse_scan_t, out.held) - offsetof(lx_sse_scan_t, prompt_tokens));
    memset(&s->json, 0, sizeof(*s) - offsetof(lx_sse_scan_t, json));
    s->prompt_tokens = s->completion_tokens = s->total_tokens = -1;
    s->cached_tokens = s->reasoning_tokens = -1;
    s->created = -1;
    s->frame.done_pos = NO_MATCH;
    s->frame.name_pos = NO_MATCH;
    s->frame.line = L_START;
    s->mode.drop_usage = drop_usage_event;
    s->mode.rewrite = model != NULL;
    if (model != NULL && model_len > 0) {
        s->lit = pool != NULL ? lx_buf_pool_get_small(pool, model_len) : lx_buf_new(model_len);
        if (s->lit == NULL)
            return LX_ENOMEM;
        memcpy(s->lit->data, model, model_len);
        s->lit->len = (uint32_t)model_len;
    }
    return 0;
}

int lx_sse_scan_init_json(lx_sse_scan_t *s, const char *model, size_t model_len,
                          lx_buf_pool_t *pool)
{
    int rc = lx_sse_scan_init(s, model, model_len, false, pool);
    s->json_mode = true;
    s->frame.bom = 3;
    s->frame.line = L_DATA; /* every byte is payload */
    s->frame.ev_data = true;
    return rc;
}

void lx_sse_scan_dispose(lx_sse_scan_t *s)
{
    drop_held(s);
    s->out.holding = false;
    lx_buf_unref(s->lit);
    s->lit = NULL;
}

/*
 * The fast paths at data[i], each taking a run of bytes at once: a whole event at the start of
 * a block (sse_whole.c), or the inside of a long string value (content deltas). Returns the
 * index after what was taken, or <i> when neither applies.
 */
static size_t fast_paths(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *data, size_t i,
                         size_t len, lx_sse_lf_cache_t *lfc)
{
    char ch = data[i];
    if (ch == 'd' && s->frame.line == L_START && !s->in_block && !s->frame.after_cr &&
        s->frame.bom == 3 && !s->out.holding && !s->out.skipping &&
        !(s->mode.drop_usage && s->finished)) {
        size_t e = lx_sse_whole_event(s, c, data, i, len, lfc);
        if (e != 0)
            return e;
    }
    if (s->frame.line == L_DATA && s->json.in_str && !s->json.esc && !s->json.str_key &&
        !s->out.skipping && !s->ev.capturing && !s->cap.id_on && s->frame.done_pos == NO_MATCH &&
        is_plain(ch)) {
        size_t j = i + 1;
        while (j < len && is_plain(data[j]))
            j++;
        size_t n = j - i;
        s->frame.line_len =
            n > UINT32_MAX - s->frame.line_len ? UINT32_MAX : s->frame.line_len + (uint32_t)n;
        if (s->frame.line_len > LX_SSE_LINE_MAX)
            s->malformed = true;
        return j;
    }
    return i;
}

/* Line ends and the BOM: true when byte <ch> at <i> was one of them (consumed). */
static bool line_end_byte(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
    if (s->frame.after_cr) {
        s->frame.after_cr = false;
        if (ch == '\n') { /* the LF of a CRLF: the line already ended */
            if (s->frame.end_pending) {
                lx_sse_cut(s, c, i + 1);
                finish_hold(s, c);
            }
            return true;
        }
        if (s->frame.end_pending) {
            lx_sse_cut(s, c, i);
            finish_hold(s, c);
        }
    }
    if (s->frame.bom < 3) {
        if (ch == bom_bytes[s->frame.bom]) {
            s->frame.bom++;
            return true;
        }
        s->frame.bom = 3;
    }
    if (ch == '\r' || ch == '\n') {
        if (ch == '\r')
            s->frame.after_cr = true;
        end_line(s, c, i, ch);
        return true;
    }
    return false;
}

/* A byte inside a line: the field name, a data value, or another line passing through. */
static void line_byte(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
    if (s->frame.line_len < UINT32_MAX && ++s->frame.line_len > LX_SSE_LINE_MAX)
        s->malformed = true;
    switch (s->frame.line) {
    case L_START:
        if (!s->in_block) {
            s->in_block = true;
            if (s->mode.drop_usage && s->finished) {
                lx_sse_cut(s, c, i);
                s->out.holding = true;
            }
        }
        if (ch == ':') {
            s->frame.line = L_COMMENT;
            break;
        }
        /* the byte starts the field name */
        s->frame.line = L_NAME;
        s->frame.name_pos = 0;
        /* fall through */
    case L_NAME:
        if (ch == ':') {
            if (s->frame.name_pos == 4)
                data_line_begin(s);
            else
                s->frame.line = L_OTHER;
        } else {
            s->frame.name_pos = s->frame.name_pos < 4 && ch == "data"[s->frame.name_pos]
                                    ? s->frame.name_pos + 1
                                    : NO_MATCH;
        }
        break;
    case L_DATA_SP:
        s->frame.line = L_DATA;
        if (ch == ' ')
            break;
        /* fall through */
    case L_DATA:
        data_byte(s, c, i, ch);
        break;
    default: /* L_OTHER, L_COMMENT */
        break;
    }
}

/* An event stream's read: the bytes consumed (all unless out[] filled up). */
static size_t feed_events(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *data, size_t len)
{
    lx_sse_lf_cache_t lfc = {SIZE_MAX, 0};
    size_t i = 0;
    while (i < len) {
        if (c->n + reserve(s) > c->max)
            break;
        size_t j = fast_paths(s, c, data, i, len, &lfc);
        if (j != i) {
            i = j;
            continue;
        }
        char ch = data[i];
        if (!line_end_byte(s, c, i, ch))
            line_byte(s, c, i, ch);
        i++;
    }
    return i;
}

int lx_sse_scan_feed(lx_sse_scan_t *s, lx_buf_t *b, const char *data, size_t len, lx_slice_t *out,
                     size_t max_out, size_t *used)
{
    *used = 0;
    if (max_out < LX_SSE_SCAN_MAX_OUT)
        return LX_ETOOBIG;
    if (len == 0)
        return 0;
    LX_ASSERT(data >= b->data && (size_t)(data - b->data) + len <= b->cap);
    lx_sse_out_ctx_t c = {out, 0, max_out, b, (size_t)(data - b->data), 0, !s->out.skipping};
    size_t i;
    if (!s->json_mode)
        i = feed_events(s, &c, data, len);
    else if (s->bytes_in == 0 && lx_sse_json_whole(s, &c, data, len))
        i = len;
    else
        i = lx_sse_json_feed(s, &c, data, len);
    lx_sse_cut(s, &c, i);
    s->bytes_in += i;
    *used = i;
    return (int)c.n;
}

int lx_sse_scan_flush(lx_sse_scan_t *s, lx_slice_t *out, size_t max_out)
{
    if (max_out < LX_SSE_SCAN_MAX_OUT)
        return LX_ETOOBIG;
    lx_sse_out_ctx_t c = {out, 0, max_out, NULL, 0, 0, false};
    if (s->frame.end_pending) {
        finish_hold(s, &c);
    } else if (s->out.holding) {
        release_held(s, &c);
        s->out.holding = false;
    }
    return (int)c.n;
}
