/*
 * sse_scan.c - the LLM-aware scanner and rewriter of streamed responses (DESIGN.md rule 4).
 *
 * Sits in the streaming relay between the upstream read (body slices decoded by llhttp) and
 * the client write: every read goes through lx_sse_scan_feed(), whose slices are written with
 * writev. Three machines run per byte, all resumable at any byte:
 *   - SSE framing (WHATWG): lines end with LF, CRLF or CR; a blank line ends an event block;
 *     ':' lines are comments; "data" lines carry the payload, several joined by '\n'.
 *   - A lenient JSON tokenizer over the event's data payload: strings and escapes, nesting,
 *     and the key of the member being read, enough to find the top-level "model", "usage",
 *     "choices" and "error" members and each choice's "finish_reason".
 *   - Output: forwarded input bytes accumulate in a run that becomes one slice of the read's
 *     chunk when the read ends or something interrupts it (the model value, which is skipped
 *     and replaced by a slice of the literal chunk; a change of destination). In the tail of the
 *     stream with drop_usage_event on, a block's slices go to held[] until the block ends,
 *     then are either released (the usage-only event) or handed out.
 *
 * A plain JSON answer (json mode) takes the same machines without the framing, in runs: string
 * interiors, numbers and keys that cannot matter are passed over without a per-byte step.
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
#include "llm/sse_usage.h"

#define NO_MATCH 0xff

_Static_assert(2 * LX_SSE_SCAN_HOLD_MAX + 8 <= LX_SSE_SCAN_MAX_OUT,
               "a feed call must always make progress");
_Static_assert(LX_SSE_KEY_MAX < 256, "key_len is a uint8_t");
_Static_assert(offsetof(lx_sse_scan_t, prompt_tokens) ==
                       offsetof(lx_sse_scan_t, usage) + LX_SSE_USAGE_MAX &&
                   offsetof(lx_sse_scan_t, depth) ==
                       offsetof(lx_sse_scan_t, held) + sizeof(((lx_sse_scan_t *)0)->held),
               "lx_sse_scan_init() clears all but usage[] and held[]");

enum line_state {
    L_START,   /* at the first byte of a line */
    L_NAME,    /* in a field name */
    L_DATA_SP, /* right after "data:" (one space there is not part of the value) */
    L_DATA,    /* in a data value */
    L_OTHER,   /* in another field's line: passes through */
    L_COMMENT, /* in a ':' line */
};

enum member { M_OTHER, M_MODEL, M_USAGE, M_CHOICES, M_ERROR, M_FINISH_REASON, M_ID, M_CREATED };

enum choices_state {
    CH_NONE,   /* the top-level choices array is not open */
    CH_OPENED, /* it just opened: the next token says whether it is empty */
    CH_OPEN,
};

/* Where one feed call's slices go. */
typedef struct out_ctx {
    lx_slice_t *out;
    size_t n;
    size_t max;  /* out[] capacity: never reached by construction (see reserve()) */
    lx_buf_t *b; /* the read's chunk */
    size_t base; /* offset of the read's first byte in b->data */
    size_t run;  /* start (index in the read) of the forwarded bytes not yet cut */
    bool run_on; /* false while skipping the model value */
} out_ctx_t;

static const char bom_bytes[3] = {'\xef', '\xbb', '\xbf'};

/* ---- output ---- */

static void put_out(lx_sse_scan_t *s, out_ctx_t *c, lx_buf_t *buf, size_t off, size_t len)
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
static void release_held(lx_sse_scan_t *s, out_ctx_t *c)
{
    for (size_t k = 0; k < s->n_held; k++) {
        lx_slice_t *h = &s->held[k];
        put_out(s, c, h->buf, h->off, h->len);
        lx_buf_unref(h->buf);
    }
    s->n_held = 0;
}

static void drop_held(lx_sse_scan_t *s)
{
    for (size_t k = 0; k < s->n_held; k++)
        lx_buf_unref(s->held[k].buf);
    s->n_held = 0;
}

/* Sends buf->data[off, off+len) to the current destination: out[], or held[] in a held block.
 * A held block over LX_SSE_SCAN_HOLD_MAX slices is handed out and no longer held. */
static void emit(lx_sse_scan_t *s, out_ctx_t *c, lx_buf_t *buf, size_t off, size_t len)
{
    if (len == 0)
        return;
    if (!s->holding) {
        put_out(s, c, buf, off, len);
        return;
    }
    if (s->n_held > 0) {
        lx_slice_t *last = &s->held[s->n_held - 1];
        if (last->buf == buf && (size_t)last->off + last->len == off) {
            last->len += (uint32_t)len;
            return;
        }
    }
    if (s->n_held < LX_SSE_SCAN_HOLD_MAX) {
        s->held[s->n_held++] = lx_slice_make(buf, off, len);
        return;
    }
    release_held(s, c);
    s->holding = false;
    put_out(s, c, buf, off, len);
}

/* Emits the run of forwarded bytes before index <i> of the read. */
static void cut(lx_sse_scan_t *s, out_ctx_t *c, size_t i)
{
    if (c->run_on && i > c->run) {
        emit(s, c, c->b, c->base + c->run, i - c->run);
        c->run = i;
    }
}

/* The held block has ended (terminator included): drop it or hand it out. */
static void finish_hold(lx_sse_scan_t *s, out_ctx_t *c)
{
    if (s->ev_drop)
        drop_held(s);
    else
        release_held(s, c);
    s->holding = false;
    s->end_pending = false;
    s->ev_drop = false;
}

/* ---- usage ---- */

/* The counts of the usage object just copied. */
static void parse_usage(lx_sse_scan_t *s)
{
    lx_sse_usage_t u;
    lx_sse_usage_read(s->usage, s->usage_len, &u);
    s->prompt_tokens = u.prompt_tokens;
    s->completion_tokens = u.completion_tokens;
    s->total_tokens = u.total_tokens;
    s->cached_tokens = u.cached_tokens;
    s->reasoning_tokens = u.reasoning_tokens;
}

static void capture(lx_sse_scan_t *s, char ch)
{
    if (s->usage_len < LX_SSE_USAGE_MAX)
        s->usage[s->usage_len++] = ch;
    else
        s->usage_over = true;
}

/* capture() of <n> bytes at <p>. */
static void capture_run(lx_sse_scan_t *s, const char *p, size_t n)
{
    size_t room = LX_SSE_USAGE_MAX - s->usage_len;
    if (n > room) {
        s->usage_over = true;
        n = room;
    }
    memcpy(s->usage + s->usage_len, p, n);
    s->usage_len += n;
}

static void end_capture(lx_sse_scan_t *s)
{
    s->capturing = false;
    s->ev_usage = true;
    if (s->usage_over) {
        s->has_usage = false;
        s->usage_truncated = true;
        s->usage_len = 0;
        return;
    }
    s->has_usage = true;
    s->usage_truncated = false;
    parse_usage(s);
}

/* ---- JSON tokenizer ---- */

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_array_at(const lx_sse_scan_t *s, uint32_t d)
{
    return d >= 1 && d <= LX_SSE_DEPTH_MAX && (s->arrays >> (d - 1) & 1u);
}

/* The innermost open container is an object whose type is tracked. */
static bool in_object(const lx_sse_scan_t *s)
{
    return s->depth >= 1 && s->depth <= LX_SSE_DEPTH_MAX && !is_array_at(s, s->depth);
}

/* Whether a key opening now can name a member the scanner acts on: a top-level key, or a key
 * of a choice object (depth 3 inside the top-level choices array). Other keys are read like
 * value strings: nothing is copied. */
static bool key_matters(const lx_sse_scan_t *s)
{
    if (!in_object(s))
        return false;
    return s->depth == 1 || (s->depth == 3 && s->choices != CH_NONE && is_array_at(s, 2));
}

/* The member a key of <n> bytes at <k> names, at depth <depth> (one key_matters() accepted). */
static enum member key_member(uint32_t depth, const char *k, size_t n)
{
    if (depth == 1) {
        switch (n) {
        case 2:
            return k[0] == 'i' && k[1] == 'd' ? M_ID : M_OTHER;
        case 5:
            if (memcmp(k, "model", 5) == 0)
                return M_MODEL;
            if (memcmp(k, "usage", 5) == 0)
                return M_USAGE;
            if (memcmp(k, "error", 5) == 0)
                return M_ERROR;
            return M_OTHER;
        case 7:
            if (memcmp(k, "choices", 7) == 0)
                return M_CHOICES;
            return memcmp(k, "created", 7) == 0 ? M_CREATED : M_OTHER;
        default:
            return M_OTHER;
        }
    }
    return n == 13 && memcmp(k, "finish_reason", 13) == 0 ? M_FINISH_REASON : M_OTHER;
}

/* What the scanner does with member <m>: the stream's id and created are read until known, in
 * event streams only; every other member is what it is. */
static enum member member_of(const lx_sse_scan_t *s, enum member m)
{
    if (m == M_ID)
        return s->id_len == 0 && !s->json_mode ? M_ID : M_OTHER;
    if (m == M_CREATED)
        return s->created < 0 && !s->json_mode ? M_CREATED : M_OTHER;
    return m;
}

/* A member key just closed: classify it in its context (one key_matters() accepted). */
static void end_key(lx_sse_scan_t *s)
{
    s->member = s->key_long ? M_OTHER : member_of(s, key_member(s->depth, s->key, s->key_len));
}

/* Whether <n> bytes at <p> are an id id_byte() keeps: 1..LX_SSE_ID_MAX bytes of printable
 * ASCII without '"' or '\\'. */
static bool id_plain(const char *p, size_t n)
{
    if (n == 0 || n > LX_SSE_ID_MAX)
        return false;
    for (size_t k = 0; k < n; k++)
        if (p[k] == '\\' || p[k] == '"' || (unsigned char)p[k] < 0x20 ||
            (unsigned char)p[k] >= 0x7f)
            return false;
    return true;
}

/* A byte of the stream's id, or its closing quote (<close>). */
static void id_byte(lx_sse_scan_t *s, char ch, bool close)
{
    if (close) {
        if (!s->cap_bad && s->id_w > 0)
            s->id_len = s->id_w;
        s->id_cap = false;
    } else if (ch == '\\' || ch == '"' || (unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f ||
               s->id_w >= LX_SSE_ID_MAX) {
        s->cap_bad = true;
    } else {
        s->id[s->id_w++] = ch;
    }
}

/* The byte after a digit of "created": another digit, or the end of the number. */
static void num_byte(lx_sse_scan_t *s, char ch)
{
    if (ch >= '0' && ch <= '9') {
        if (s->num_digits >= 18)
            s->cap_bad = true;
        else
            s->num = s->num * 10 + (ch - '0');
        s->num_digits++;
        return;
    }
    /* an integer ends at a blank or the next member: anything else (a fraction, an exponent)
     * makes it no integer */
    if (!s->cap_bad && (is_ws(ch) || ch == ',' || ch == '}'))
        s->created = s->num;
    s->num_cap = false;
}

/* The first byte <ch> of a member value; true when it opens the model string to replace. */
static bool value_start(lx_sse_scan_t *s, char ch)
{
    if (s->depth == 1 && in_object(s)) {
        switch (s->member) {
        case M_MODEL:
            if (ch == '"' && !s->ev_model) {
                s->ev_model = true;
                return s->rewrite;
            }
            break;
        case M_USAGE:
            if (ch == '{' && !s->capturing) {
                s->capturing = true;
                s->usage_over = false;
                s->has_usage = false;
                s->usage_len = 0;
                capture(s, ch);
            }
            break;
        case M_CHOICES:
            if (ch == '[')
                s->choices = CH_OPENED;
            break;
        case M_ERROR:
            if (ch != 'n')
                s->error_event = true;
            break;
        case M_ID:
            if (ch == '"') {
                s->id_cap = true;
                s->cap_bad = false;
                s->id_w = 0;
            }
            break;
        case M_CREATED:
            if (ch >= '0' && ch <= '9') {
                s->num_cap = true;
                s->cap_bad = false;
                s->num = ch - '0';
                s->num_digits = 1;
            }
            break;
        default:
            break;
        }
    } else if (s->depth == 3 && s->member == M_FINISH_REASON && ch == '"') {
        s->fr_pending = true;
    }
    return false;
}

static void push(lx_sse_scan_t *s, char ch)
{
    if (s->depth < UINT32_MAX)
        s->depth++;
    if (s->depth <= LX_SSE_DEPTH_MAX) {
        uint64_t bit = (uint64_t)1 << (s->depth - 1);
        if (ch == '[')
            s->arrays |= bit;
        else
            s->arrays &= ~bit;
    } else {
        s->malformed = true;
    }
    s->want_key = ch == '{';
    s->want_val = false;
}

static void pop(lx_sse_scan_t *s)
{
    if (s->depth == 0)
        return;
    if (s->depth == 2) {
        if (s->capturing)
            end_capture(s);
        s->choices = CH_NONE;
    }
    s->depth--;
    s->want_key = false;
    s->want_val = false;
}

/* A string opens: a member key (copied only when it can matter) or a value. */
static void open_string(lx_sse_scan_t *s)
{
    s->in_str = true;
    s->esc = false;
    s->str_key = s->want_key && key_matters(s);
    if (s->want_key && !s->str_key)
        s->member = M_OTHER; /* what end_key() would find for it */
    s->want_key = false;
    s->key_len = 0;
    s->key_long = false;
}

/* Feeds one payload byte; true when it is the opening quote of the model value to replace. */
static bool json_byte(lx_sse_scan_t *s, char ch)
{
    if (s->capturing)
        capture(s, ch);
    if (s->num_cap) {
        num_byte(s, ch);
        if (s->num_cap)
            return false;
    }
    if (s->in_str) {
        if (s->id_cap)
            id_byte(s, ch, ch == '"' && !s->esc);
        if (s->esc) {
            s->esc = false;
        } else if (ch == '\\') {
            s->esc = true;
        } else if (ch == '"') {
            s->in_str = false;
            s->fr_pending = false;
            if (s->str_key)
                end_key(s);
            return false;
        }
        if (s->str_key) {
            if (s->key_len < LX_SSE_KEY_MAX)
                s->key[s->key_len++] = ch;
            else
                s->key_long = true;
        }
        if (s->fr_pending) {
            s->finished = true;
            s->fr_pending = false;
        }
        return false;
    }
    if (is_ws(ch))
        return false;
    if (s->choices == CH_OPENED) {
        s->choices = CH_OPEN;
        if (ch == ']')
            s->ev_choices_empty = true;
    }
    bool rewrite = false;
    if (s->want_val) {
        s->want_val = false;
        rewrite = value_start(s, ch);
    }
    switch (ch) {
    case '"':
        open_string(s);
        break;
    case '{':
    case '[':
        push(s, ch);
        break;
    case '}':
    case ']':
        pop(s);
        break;
    case ':':
        if (in_object(s))
            s->want_val = true;
        break;
    case ',':
        if (in_object(s))
            s->want_key = true;
        break;
    default:
        break;
    }
    return rewrite;
}

/* Event end: the payload's JSON state starts over. */
static void json_reset(lx_sse_scan_t *s)
{
    s->depth = 0;
    s->arrays = 0;
    s->in_str = s->esc = s->str_key = false;
    s->want_key = s->want_val = s->key_long = false;
    s->key_len = 0;
    s->member = M_OTHER;
    s->choices = CH_NONE;
    s->fr_pending = false;
    s->capturing = false; /* an unterminated usage object is abandoned (has_usage stays false) */
    s->usage_over = false;
    s->ev_model = s->ev_usage = s->ev_choices_empty = false;
    s->id_cap = s->num_cap = false; /* an unterminated id or created is not kept */
}

/* ---- SSE framing ---- */

static void data_line_begin(lx_sse_scan_t *s)
{
    if (s->ev_data)
        (void)json_byte(s, '\n'); /* data lines join with LF; whitespace never rewrites */
    s->ev_data = true;
    s->done_pos = 0;
    s->line = L_DATA_SP;
}

static void data_line_end(lx_sse_scan_t *s)
{
    if (s->done_pos == 6)
        s->done = true;
    s->done_pos = NO_MATCH;
}

/* A line ends at byte <i> (<ch>: CR or LF). */
static void end_line(lx_sse_scan_t *s, out_ctx_t *c, size_t i, char ch)
{
    switch (s->line) {
    case L_START: /* a blank line */
        if (!s->in_block)
            break;
        if (s->ev_data)
            s->events++;
        bool drop = s->drop_usage && s->ev_usage && s->ev_choices_empty;
        json_reset(s);
        s->ev_data = false;
        s->in_block = false;
        if (s->holding) {
            s->ev_drop = drop;
            if (ch == '\r') {
                s->end_pending = true; /* an LF may follow: it belongs to this block */
            } else {
                cut(s, c, i + 1);
                finish_hold(s, c);
            }
        }
        break;
    case L_NAME:
        if (s->name_pos == 4) {
            data_line_begin(s);
            data_line_end(s);
        }
        break;
    case L_DATA_SP:
    case L_DATA:
        data_line_end(s);
        if (s->skipping) { /* an unterminated model string (invalid JSON): framing wins */
            s->skipping = false;
            c->run_on = true;
            c->run = i;
        }
        break;
    default:
        break;
    }
    s->line = L_START;
    s->line_len = 0;
}

/*
 * The bytes most of a JSON payload's structure is made of -- the quotes of strings, ',' and
 * ':' -- in the usual states: the same effect as json_byte() (which never rewrites for them
 * here), without its general checks. Returns false, having done nothing, for anything else.
 */
static inline bool json_quick(lx_sse_scan_t *s, char ch)
{
    if (s->id_cap || s->num_cap)
        return false;
    if (s->in_str) {
        if (ch != '"' || s->esc || s->skipping)
            return false;
        if (s->capturing)
            capture(s, ch);
        s->in_str = false;
        s->fr_pending = false;
        if (s->str_key)
            end_key(s);
        return true;
    }
    /* a pending value start only matters for a member value_start() acts on */
    if (s->choices == CH_OPENED || (s->want_val && s->member != M_OTHER))
        return false;
    if (ch != '"' && ch != ',' && ch != ':')
        return false;
    if (s->capturing)
        capture(s, ch);
    s->want_val = false;
    if (ch == '"')
        open_string(s);
    else if (in_object(s))
        *(ch == ',' ? &s->want_key : &s->want_val) = true;
    return true;
}

/* A payload byte through the tokenizer and the output: the model value is cut out of the run
 * and replaced by the literal; its closing quote starts the run again. */
static inline void json_step(lx_sse_scan_t *s, out_ctx_t *c, size_t i, char ch)
{
    bool rewrite = json_byte(s, ch);
    if (s->skipping) {
        if (!s->in_str) { /* the closing quote: forwarded again from here */
            s->skipping = false;
            c->run_on = true;
            c->run = i;
        }
    } else if (rewrite) {
        cut(s, c, i + 1);
        if (s->lit != NULL)
            emit(s, c, s->lit, 0, s->lit->len);
        s->skipping = true;
        c->run_on = false;
    }
}

/* A byte of a data value. */
static void data_byte(lx_sse_scan_t *s, out_ctx_t *c, size_t i, char ch)
{
    if (s->done_pos != NO_MATCH)
        s->done_pos = s->done_pos < 6 && ch == "[DONE]"[s->done_pos] ? s->done_pos + 1 : NO_MATCH;
    if (!json_quick(s, ch))
        json_step(s, c, i, ch);
}

/* Bytes that change no state outside a string once a value has started: digits, letters,
 * signs, points, whitespace (numbers and literals; everything but "{}[]:, ). */
static const uint8_t json_inert[256] = {
    [' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, ['-'] = 1, ['+'] = 1, ['.'] = 1,
    ['0'] = 1, ['1'] = 1,  ['2'] = 1,  ['3'] = 1,  ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1,  ['9'] = 1,  ['a'] = 1,  ['e'] = 1, ['f'] = 1, ['l'] = 1,
    ['n'] = 1, ['r'] = 1,  ['s'] = 1,  ['t'] = 1,  ['u'] = 1, ['E'] = 1,
};

/* What a byte is to value_end(): brackets and quotes; everything else passes. */
enum { VB_PASS, VB_QUOTE, VB_OPEN, VB_CLOSE };
static const uint8_t value_byte[256] = {
    ['"'] = VB_QUOTE, ['{'] = VB_OPEN, ['['] = VB_OPEN, ['}'] = VB_CLOSE, [']'] = VB_CLOSE,
};

/* Index one past the string whose opening quote is p[i], or 0 when it does not close before
 * p[n]. A backslash escapes the byte after it, whatever it is, as in json_byte(). */
static size_t string_end(const char *p, size_t i, size_t n)
{
    for (i++;;) {
        i += lx_str_json_plain(p + i, n - i, false);
        if (i >= n)
            return 0;
        if (p[i] == '"')
            return i + 1;
        i += 2;
        if (i > n)
            return 0;
    }
}

/*
 * Index one past the value starting at p[i] (not a blank), opened at depth <depth>: a string
 * or a container, brackets counted whatever their kind and quotes respected, the way the
 * tokenizer counts them; a primitive's first byte alone. 0 when the value does not end before
 * p[n], nests over LX_SSE_DEPTH_MAX or is not a value at all (',', ':', a closing bracket).
 */
static size_t value_end(const char *p, size_t i, size_t n, uint32_t depth)
{
    switch (value_byte[(unsigned char)p[i]]) {
    case VB_QUOTE:
        return string_end(p, i, n);
    case VB_OPEN:
        break;
    case VB_CLOSE:
        return 0;
    default:
        return p[i] == ',' || p[i] == ':' ? 0 : i + 1;
    }
    uint32_t open = 0;
    while (i < n) {
        switch (value_byte[(unsigned char)p[i]]) {
        case VB_QUOTE:
            i = string_end(p, i, n);
            if (i == 0)
                return 0;
            continue;
        case VB_OPEN:
            if (++open + depth > LX_SSE_DEPTH_MAX)
                return 0;
            break;
        case VB_CLOSE:
            if (--open == 0)
                return i + 1;
            break;
        default:
            break;
        }
        i++;
    }
    return 0;
}

/*
 * A member value about to start (want_val) at data[j], passed over whole when it lies in this
 * read and nothing in it is observed byte by byte: the value of a member that does not matter
 * (member M_OTHER: value_start() ignores its first byte, and below it no key can matter, as
 * its keys sit deeper than a choice's), or the top-level usage object when it opens with a key
 * (which, as open_string() does, leaves member at M_OTHER), copied in one piece.
 * The tokenizer is left as the byte-by-byte steps would leave it; everything else of its state
 * is reset when the next string or container opens. Returns the index after the value, or 0
 * to take the byte-by-byte steps; *<whole> becomes false when a value was looked for to the end
 * of the read in vain.
 */
static size_t json_value(lx_sse_scan_t *s, const char *data, size_t j, size_t len, bool *whole)
{
    if (s->want_key || s->capturing || s->skipping || s->choices == CH_OPENED)
        return 0;
    size_t end;
    if (s->member == M_OTHER) {
        end = value_end(data, j, len, s->depth);
        if (end == 0 && value_byte[(unsigned char)data[j]] != VB_CLOSE && data[j] != ',' &&
            data[j] != ':')
            *whole = false; /* a string or container that did not end in this read */
    } else if (s->member == M_USAGE && s->depth == 1 && data[j] == '{') {
        /* its first key sets member to M_OTHER (open_string()); without one, byte by byte */
        size_t k = j + 1;
        while (k < len && is_ws(data[k]))
            k++;
        if (k == len || data[k] != '"')
            return 0;
        end = value_end(data, j, len, s->depth);
        if (end == 0) {
            *whole = false;
            return 0;
        }
        /* what value_start(), capture() and the closing pop() do over the object */
        size_t n = end - j, keep = n > LX_SSE_USAGE_MAX ? LX_SSE_USAGE_MAX : n;
        memcpy(s->usage, data + j, keep);
        s->usage_len = keep;
        s->usage_over = n > LX_SSE_USAGE_MAX;
        s->has_usage = false;
        end_capture(s);
        s->member = M_OTHER;
    } else {
        return 0;
    }
    if (end != 0)
        s->want_val = false;
    return end;
}

/*
 * A plain JSON body (json_mode): the whole input is payload, no framing, nothing held. Runs
 * that change no state but the copies are taken at once -- the plain inside of a string (key
 * bytes copied while a key is read, usage bytes while the usage object is captured), the inert
 * bytes of numbers, literals and whitespace, a whole key within the read (classified where it
 * lies) and whole member values that cannot matter (json_value()) -- and every other byte
 * takes the full step. Skipped bytes stay in the forwarded run, so the output is the
 * byte-by-byte one. Returns the bytes consumed (all unless out[] filled up).
 */
static size_t json_feed(lx_sse_scan_t *s, out_ctx_t *c, const char *data, size_t len)
{
    size_t i = 0;
    bool whole = true; /* false after a value that did not end in this read: value_end() then
                        * looks at each byte at most once per call */
    while (i < len && c->n + 8 <= c->max) {
        size_t j = i;
        if (s->in_str) {
            if (!s->esc && !s->fr_pending)
                j += lx_str_json_plain(data + i, len - i, false);
            if (j > i && s->str_key) {
                if (s->key_len == 0 && j < len && data[j] == '"' && !s->capturing && !s->skipping) {
                    /* the whole key, then its closing quote as json_quick() takes it (not
                     * when the key is also the model value being replaced: "model",:"x") */
                    s->member = member_of(s, key_member(s->depth, data + i, j - i));
                    s->in_str = false;
                    s->fr_pending = false;
                    i = j + 1;
                    continue;
                }
                size_t n = j - i, room = LX_SSE_KEY_MAX - s->key_len;
                if (n > room) {
                    s->key_long = true;
                    n = room;
                }
                memcpy(s->key + s->key_len, data + i, n);
                s->key_len = (uint8_t)(s->key_len + n);
            }
        } else if (s->want_val) {
            if (whole && !s->capturing) {
                while (j < len && is_ws(data[j])) /* blanks before a value change nothing */
                    j++;
                if (j == len) {
                    i = j;
                    break;
                }
                size_t end = json_value(s, data, j, len, &whole);
                if (end != 0) {
                    i = end;
                    continue;
                }
            }
        } else if (s->choices != CH_OPENED) {
            while (j < len && json_inert[(unsigned char)data[j]])
                j++;
        }
        if (j > i) {
            if (s->capturing)
                capture_run(s, data + i, j - i);
            i = j;
            if (i == len)
                break;
        }
        if (!json_quick(s, data[i]))
            json_step(s, c, i, data[i]);
        i++;
    }
    return i;
}

/* ---- a whole answer in one read ---- */

/*
 * Most plain answers arrive whole in one read. Then the document is read structurally first --
 * the top-level members, and the members of each choice object -- and the slices follow from
 * what was found; values that cannot matter are passed over with value_end(), like json_value()
 * does. The reading is strict: anything it does not expect (a key with an escape, a missing
 * colon, a document that does not end in the read, bytes after it) makes it give up having
 * changed nothing, and the byte machine takes the read as before. On what it accepts, the
 * outcome is the machine's, slice for slice (the unit tests and the fuzz target compare it
 * with split feeds, which never take it).
 */
typedef struct whole {
    size_t model_q;                 /* opening quote of the first top-level string "model" */
    size_t model_end;               /* ... and its closing quote; 0: there is none */
    size_t usage_at, usage_end;     /* the last top-level usage object; usage_end 0: none */
    size_t id_at, id_end;           /* the first top-level string "id"'s contents; id_end 0: none */
    size_t created_at, created_end; /* the first top-level "created" primitive */
    bool want_identity;             /* an event stream whose id or created is not known yet */
    bool finished, error, choices_empty;
} whole_t;

/* Bytes that end a primitive (a number or a literal): blanks and structure. */
static const uint8_t w_stop[256] = {
    [' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, ['"'] = 1, ['{'] = 1,
    ['}'] = 1, ['['] = 1,  [']'] = 1,  [','] = 1,  [':'] = 1,
};

static inline size_t w_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (unsigned char)p[i] <= ' ' && is_ws(p[i]))
        i++;
    return i;
}

/* A member key without escapes at p[i]: the index after its closing quote, or 0. */
static size_t w_key(const char *p, size_t i, size_t n)
{
    if (i >= n || p[i] != '"')
        return 0;
    size_t j = i + 1 + lx_str_json_plain(p + i + 1, n - i - 1, false);
    return j < n && p[j] == '"' ? j + 1 : 0;
}

/* One value at p[i] inside a container at depth <depth>: the index after it, or 0. */
static size_t w_value(const char *p, size_t i, size_t n, uint32_t depth)
{
    if (i >= n)
        return 0;
    switch (value_byte[(unsigned char)p[i]]) {
    case VB_QUOTE:
    case VB_OPEN:
        return value_end(p, i, n, depth);
    case VB_CLOSE:
        return 0;
    default:
        break;
    }
    size_t j = i;
    while (j < n && !w_stop[(unsigned char)p[j]])
        j++;
    return j > i ? j : 0;
}

/* After a member or an element: the index of the next one (past the ','), of the closing
 * bracket <close>, or 0 (the read ends first, or anything else is there). */
static size_t w_next(const char *p, size_t i, size_t n, char close)
{
    i = w_ws(p, i, n);
    if (i >= n || (p[i] != ',' && p[i] != close))
        return 0;
    if (p[i] == close)
        return i;
    i = w_ws(p, i + 1, n);
    return i < n ? i : 0;
}

/* Walks the members of the object opening at p[i], calling <member> for each (its key's
 * <kn> bytes at p[k], its value at p[v]; it stores the index after the value in *<end>).
 * Returns the index after the object, or 0. */
typedef bool (*w_member_fn)(whole_t *w, const char *p, size_t k, size_t kn, size_t v, size_t n,
                            size_t *end);

static size_t w_object(const char *p, size_t i, size_t n, whole_t *w, w_member_fn member)
{
    i = w_ws(p, i + 1, n);
    if (i < n && p[i] == '}')
        return i + 1;
    for (;;) {
        size_t k = i, e = w_key(p, i, n);
        if (e == 0)
            return 0;
        i = w_ws(p, e, n);
        if (i >= n || p[i] != ':')
            return 0;
        i = w_ws(p, i + 1, n);
        size_t end = 0;
        if (i >= n || !member(w, p, k + 1, e - k - 2, i, n, &end))
            return 0;
        i = w_next(p, end, n, '}');
        if (i == 0)
            return 0;
        if (p[i] == '}')
            return i + 1;
    }
}

/* A member of a choice object (depth 3): its finish_reason says whether the choice finished. */
static bool w_choice_member(whole_t *w, const char *p, size_t k, size_t kn, size_t v, size_t n,
                            size_t *end)
{
    *end = w_value(p, v, n, 3);
    if (*end == 0)
        return false;
    /* what the machine sees: a string value with at least one byte before its closing quote */
    if (p[v] == '"' && *end - v > 2 && key_member(3, p + k, kn) == M_FINISH_REASON)
        w->finished = true;
    return true;
}

/* The top-level choices array opening at p[i]: the index after it, or 0. */
static size_t w_choices(const char *p, size_t i, size_t n, whole_t *w)
{
    i = w_ws(p, i + 1, n);
    if (i < n && p[i] == ']') {
        w->choices_empty = true;
        return i + 1;
    }
    for (;;) {
        size_t v =
            i < n && p[i] == '{' ? w_object(p, i, n, w, w_choice_member) : w_value(p, i, n, 2);
        if (v == 0)
            return 0;
        i = w_next(p, v, n, ']');
        if (i == 0)
            return 0;
        if (p[i] == ']')
            return i + 1;
    }
}

static bool w_top_member(whole_t *w, const char *p, size_t k, size_t kn, size_t v, size_t n,
                         size_t *end)
{
    enum member m = key_member(1, p + k, kn);
    *end = m == M_CHOICES && p[v] == '[' ? w_choices(p, v, n, w) : w_value(p, v, n, 1);
    if (*end == 0)
        return false;
    switch (m) {
    case M_MODEL:
        if (p[v] == '"' && w->model_end == 0) {
            w->model_q = v;
            w->model_end = *end - 1;
        }
        break;
    case M_USAGE:
        if (p[v] == '{') {
            /* a second usage object: the machine parses each, and one over LX_SSE_USAGE_MAX
             * keeps the counts of the one before; that is its to do */
            if (w->usage_end != 0)
                return false;
            w->usage_at = v;
            w->usage_end = *end;
        }
        break;
    case M_ERROR:
        if (p[v] != 'n')
            w->error = true;
        break;
    case M_ID: /* the first one id_byte() would keep, as the machine tries each in turn */
        if (w->want_identity && p[v] == '"' && w->id_end == 0 &&
            id_plain(p + v + 1, *end - v - 2)) {
            w->id_at = v + 1;
            w->id_end = *end - 1;
        }
        break;
    case M_CREATED: /* the same for num_byte() */
        if (w->want_identity && w->created_end == 0 &&
            lx_sse_usage_count(p + v, LX_MIN(*end - v, (size_t)19)) >= 0) {
            w->created_at = v;
            w->created_end = *end;
        }
        break;
    default:
        break;
    }
    return true;
}

/* What the byte machine does with a payload whose structure <w> found: the model rewrite (the
 * read's run cut around the value), the usage object, the flags. */
static void apply_whole(lx_sse_scan_t *s, out_ctx_t *c, const char *p, const whole_t *w)
{
    if (w->model_end != 0) {
        s->ev_model = true;
        if (s->rewrite) {
            cut(s, c, w->model_q + 1);
            if (s->lit != NULL)
                emit(s, c, s->lit, 0, s->lit->len);
            c->run = w->model_end; /* the closing quote is forwarded again */
        }
    }
    if (w->usage_end != 0) { /* what json_value() does with a usage object */
        size_t len = w->usage_end - w->usage_at,
               keep = len > LX_SSE_USAGE_MAX ? LX_SSE_USAGE_MAX : len;
        memcpy(s->usage, p + w->usage_at, keep);
        s->usage_len = keep;
        s->usage_over = len > LX_SSE_USAGE_MAX;
        end_capture(s);
    }
    if (w->finished)
        s->finished = true;
    if (w->error)
        s->error_event = true;
    s->ev_choices_empty = w->choices_empty;
    if (s->json_mode)
        return;
    /* what id_byte() and num_byte() keep */
    if (s->id_len == 0 && w->id_end != 0) {
        memcpy(s->id, p + w->id_at, w->id_end - w->id_at);
        s->id_len = w->id_end - w->id_at;
    }
    if (s->created < 0 && w->created_end != 0)
        s->created = lx_sse_usage_count(p + w->created_at, w->created_end - w->created_at);
}

/* The whole answer in p[0, n), or false, having changed nothing, to take the byte machine. */
static bool json_whole(lx_sse_scan_t *s, out_ctx_t *c, const char *p, size_t n)
{
    whole_t w = {0};
    size_t i = w_ws(p, 0, n);
    if (i >= n || p[i] != '{')
        return false;
    i = w_object(p, i, n, &w, w_top_member);
    if (i == 0 || w_ws(p, i, n) != n)
        return false;
    apply_whole(s, c, p, &w);
    return true;
}

/*
 * Event streams take the same reading, one event at a time: at the start of a block, an event
 * that lies whole in the read as `data: {...}` (or `data:{...}`) followed by LF LF, with no CR
 * or other LF inside, is read structurally and ends as the byte machine ends a block. Anything
 * else -- other fields, comments, several data lines, CRLF, `[DONE]`, an event cut by the read,
 * a block that would be held (the tail of the stream with the usage-event drop on) -- takes
 * the byte machine. Returns the index after the event's blank line, or 0 having changed
 * nothing.
 */
/* Where the next LF lies in a read, remembered across the events of one feed call: the first
 * LF at or after <from> is at <at> (<at> == n: none), so the looks for it cost O(n) per read
 * whatever the framing (CR-only lines have no LF at all). */
typedef struct lf_cache {
    size_t from, at;
} lf_cache_t;

static size_t sse_whole_event(lx_sse_scan_t *s, out_ctx_t *c, const char *p, size_t i, size_t n,
                              lf_cache_t *lfc)
{
    if (n - i < 9 || memcmp(p + i, "data:", 5) != 0)
        return 0;
    size_t k = i + 5 + (p[i + 5] == ' ');
    if (p[k] != '{')
        return 0;
    /* the line first: the object is read within it, so a line that is no whole event costs one
     * look for its end, not a walk through the events after it */
    if (k < lfc->from || k > lfc->at) {
        const char *lf = memchr(p + k, '\n', n - k);
        lfc->from = k;
        lfc->at = lf != NULL ? (size_t)(lf - p) : n;
    }
    size_t e = lfc->at;
    if (e + 1 >= n || p[e + 1] != '\n' || e - i > LX_SSE_LINE_MAX ||
        memchr(p + k, '\r', e - k) != NULL)
        return 0;
    whole_t w = {.want_identity = s->id_len == 0 || s->created < 0};
    if (w_object(p, k, e, &w, w_top_member) != e)
        return 0;
    apply_whole(s, c, p, &w);
    /* what end_line() does at the data line's end and at the blank line */
    s->events++;
    s->done_pos = NO_MATCH;
    json_reset(s);
    return e + 2;
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
    return s->holding ? 2 * LX_SSE_SCAN_HOLD_MAX + 8 : 8;
}

int lx_sse_scan_init(lx_sse_scan_t *s, const char *model, size_t model_len, bool drop_usage_event,
                     lx_buf_pool_t *pool)
{
    /* usage[] and held[] are only read below usage_len and n_held: not cleared */
    memset(s, 0, offsetof(lx_sse_scan_t, usage));
    memset(&s->prompt_tokens, 0,
           offsetof(lx_sse_scan_t, held) - offsetof(lx_sse_scan_t, prompt_tokens));
    memset(&s->depth, 0, sizeof(*s) - offsetof(lx_sse_scan_t, depth));
    s->prompt_tokens = s->completion_tokens = s->total_tokens = -1;
    s->cached_tokens = s->reasoning_tokens = -1;
    s->created = -1;
    s->done_pos = NO_MATCH;
    s->name_pos = NO_MATCH;
    s->line = L_START;
    s->drop_usage = drop_usage_event;
    s->rewrite = model != NULL;
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
    s->bom = 3;
    s->line = L_DATA; /* every byte is payload */
    s->ev_data = true;
    return rc;
}

void lx_sse_scan_dispose(lx_sse_scan_t *s)
{
    drop_held(s);
    s->holding = false;
    lx_buf_unref(s->lit);
    s->lit = NULL;
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
    out_ctx_t c = {out, 0, max_out, b, (size_t)(data - b->data), 0, !s->skipping};
    size_t i = 0;
    if (s->json_mode) {
        i = s->bytes_in == 0 && json_whole(s, &c, data, len) ? len : json_feed(s, &c, data, len);
        cut(s, &c, i);
        s->bytes_in += i;
        *used = i;
        return (int)c.n;
    }
    lf_cache_t lfc = {SIZE_MAX, 0};
    while (i < len) {
        if (c.n + reserve(s) > max_out)
            break;
        char ch = data[i];

        /* fast path: a whole event at the start of a block */
        if (ch == 'd' && s->line == L_START && !s->in_block && !s->after_cr && s->bom == 3 &&
            !s->holding && !s->skipping && !(s->drop_usage && s->finished)) {
            size_t e = sse_whole_event(s, &c, data, i, len, &lfc);
            if (e != 0) {
                i = e;
                continue;
            }
        }

        /* fast path: the inside of a long string value (content deltas) */
        if (s->line == L_DATA && s->in_str && !s->esc && !s->str_key && !s->skipping &&
            !s->capturing && !s->fr_pending && !s->id_cap && s->done_pos == NO_MATCH &&
            is_plain(ch)) {
            size_t j = i + 1;
            while (j < len && is_plain(data[j]))
                j++;
            size_t n = j - i;
            s->line_len = n > UINT32_MAX - s->line_len ? UINT32_MAX : s->line_len + (uint32_t)n;
            if (s->line_len > LX_SSE_LINE_MAX)
                s->malformed = true;
            i = j;
            continue;
        }

        if (s->after_cr) {
            s->after_cr = false;
            if (ch == '\n') { /* the LF of a CRLF: the line already ended */
                if (s->end_pending) {
                    cut(s, &c, i + 1);
                    finish_hold(s, &c);
                }
                i++;
                continue;
            }
            if (s->end_pending) {
                cut(s, &c, i);
                finish_hold(s, &c);
            }
        }
        if (s->bom < 3) {
            if (ch == bom_bytes[s->bom]) {
                s->bom++;
                i++;
                continue;
            }
            s->bom = 3;
        }
        if (ch == '\r' || ch == '\n') {
            if (ch == '\r')
                s->after_cr = true;
            end_line(s, &c, i, ch);
            i++;
            continue;
        }
        if (s->line_len < UINT32_MAX && ++s->line_len > LX_SSE_LINE_MAX)
            s->malformed = true;

        switch (s->line) {
        case L_START:
            if (!s->in_block) {
                s->in_block = true;
                if (s->drop_usage && s->finished) {
                    cut(s, &c, i);
                    s->holding = true;
                }
            }
            if (ch == ':') {
                s->line = L_COMMENT;
                break;
            }
            /* the byte starts the field name */
            s->line = L_NAME;
            s->name_pos = 0;
            /* fall through */
        case L_NAME:
            if (ch == ':') {
                if (s->name_pos == 4)
                    data_line_begin(s);
                else
                    s->line = L_OTHER;
            } else {
                s->name_pos =
                    s->name_pos < 4 && ch == "data"[s->name_pos] ? s->name_pos + 1 : NO_MATCH;
            }
            break;
        case L_DATA_SP:
            s->line = L_DATA;
            if (ch == ' ')
                break;
            /* fall through */
        case L_DATA:
            data_byte(s, &c, i, ch);
            break;
        default: /* L_OTHER, L_COMMENT */
            break;
        }
        i++;
    }
    cut(s, &c, i);
    s->bytes_in += i;
    *used = i;
    return (int)c.n;
}

int lx_sse_scan_flush(lx_sse_scan_t *s, lx_slice_t *out, size_t max_out)
{
    if (max_out < LX_SSE_SCAN_MAX_OUT)
        return LX_ETOOBIG;
    out_ctx_t c = {out, 0, max_out, NULL, 0, 0, false};
    if (s->end_pending) {
        finish_hold(s, &c);
    } else if (s->holding) {
        release_held(s, &c);
        s->holding = false;
    }
    return (int)c.n;
}
