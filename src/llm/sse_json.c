/*
 * sse_json.c - the stream scanner's byte machine (sse_int.h): a lenient JSON tokenizer over an
 * event's data payload, resumable at any byte, and json mode's runs over a plain answer.
 *
 * Per byte: strings and escapes, nesting, and the key of the member being read, enough to
 * find the top-level "model", "usage", "choices", "error", "id" and "created" members and each
 * choice's "finish_reason" (whose value is kept). The model value is cut out of the forwarded run
 * and replaced by the literal (json_step()); the usage object is copied to usage[] and read by
 * sse_usage.c. In json mode, runs that change no state (string interiors, inert bytes, whole keys,
 * whole member values that cannot matter) are taken at once (lx_sse_json_feed()); the output is the
 * byte-by-byte one, which the unit tests and fuzz_sse_scan check by feeding split reads.
 */
#include <stddef.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/sse_int.h"
#include "llm/sse_usage.h"

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
        s->ev.usage_over = true;
}

/* capture() of <n> bytes at <p>. */
static void capture_run(lx_sse_scan_t *s, const char *p, size_t n)
{
    size_t room = LX_SSE_USAGE_MAX - s->usage_len;
    if (n > room) {
        s->ev.usage_over = true;
        n = room;
    }
    memcpy(s->usage + s->usage_len, p, n);
    s->usage_len += n;
}

void lx_sse_end_capture(lx_sse_scan_t *s)
{
    s->ev.capturing = false;
    s->ev.usage = true;
    if (s->ev.usage_over) {
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

static bool is_array_at(const lx_sse_scan_t *s, uint32_t d)
{
    return d >= 1 && d <= LX_SSE_DEPTH_MAX && (s->json.arrays >> (d - 1) & 1u);
}

/* The innermost open container is an object whose type is tracked. */
static bool in_object(const lx_sse_scan_t *s)
{
    return s->json.depth >= 1 && s->json.depth <= LX_SSE_DEPTH_MAX &&
           !is_array_at(s, s->json.depth);
}

/* Whether a key opening now can name a member the scanner acts on: a top-level key, or a key
 * of a choice object (depth 3 inside the top-level choices array). Other keys are read like
 * value strings: nothing is copied. */
static bool key_matters(const lx_sse_scan_t *s)
{
    if (!in_object(s))
        return false;
    return s->json.depth == 1 ||
           (s->json.depth == 3 && s->json.choices != CH_NONE && is_array_at(s, 2));
}

/* The member a key of <n> bytes at <k> names, at depth <depth> (one key_matters() accepted). */
enum lx_sse_member lx_sse_key_member(uint32_t depth, const char *k, size_t n)
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
static enum lx_sse_member member_of(const lx_sse_scan_t *s, enum lx_sse_member m)
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
    s->json.member =
        s->json.key_long
            ? M_OTHER
            : member_of(s, lx_sse_key_member(s->json.depth, s->json.key, s->json.key_len));
}

/* A finish_reason value is kept when each of its bytes is printable ASCII but '"' and '\\'. */
static inline bool fr_plain(char ch)
{
    return (unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f && ch != '"' && ch != '\\';
}

/* <n> bytes of a finish_reason value (not its closing quote): the choice finished (a non-empty
 * string), and the bytes are copied up to the room of fr[]. */
static void fr_run(lx_sse_scan_t *s, const char *p, size_t n)
{
    s->finished = true;
    for (size_t k = 0; k < n; k++) {
        if (!fr_plain(p[k]))
            s->fin.bad = true;
        else if (s->fin.len < sizeof(s->fin.text))
            s->fin.text[s->fin.len++] = p[k];
    }
}

/* A byte of a finish_reason value, or its closing quote (<close>), which keeps the value when it
 * is non-empty and plain. */
static void fr_byte(lx_sse_scan_t *s, char ch, bool close)
{
    if (!close) {
        fr_run(s, &ch, 1);
        return;
    }
    if (!s->fin.bad && s->fin.len > 0) {
        memcpy(s->finish_reason, s->fin.text, s->fin.len);
        s->finish_reason[s->fin.len] = '\0';
    }
    s->cap.id_on = false;
}

/* A byte of a string value whose bytes are kept (cap.id_on), or its closing quote (<close>): the
 * stream's id, or a choice's finish_reason (cap.fr). */
static void id_byte(lx_sse_scan_t *s, char ch, bool close)
{
    if (s->cap.fr) {
        fr_byte(s, ch, close);
    } else if (close) {
        if (!s->cap.bad && s->cap.id_w > 0)
            s->id_len = s->cap.id_w;
        s->cap.id_on = false;
    } else if (ch == '\\' || ch == '"' || (unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f ||
               s->cap.id_w >= LX_SSE_ID_MAX) {
        s->cap.bad = true;
    } else {
        s->id[s->cap.id_w++] = ch;
    }
}

/* The byte after a digit of "created": another digit, or the end of the number. */
static void num_byte(lx_sse_scan_t *s, char ch)
{
    if (ch >= '0' && ch <= '9') {
        if (s->cap.num_digits >= 18)
            s->cap.bad = true;
        else
            s->cap.num = s->cap.num * 10 + (ch - '0');
        s->cap.num_digits++;
        return;
    }
    /* an integer ends at a blank or the next member: anything else (a fraction, an exponent)
     * makes it no integer */
    if (!s->cap.bad && (is_ws(ch) || ch == ',' || ch == '}'))
        s->created = s->cap.num;
    s->cap.num_on = false;
}

/* The first byte <ch> of a member value; true when it opens the model string to replace. */
static bool value_start(lx_sse_scan_t *s, char ch)
{
    if (s->json.depth == 1 && in_object(s)) {
        switch (s->json.member) {
        case M_MODEL:
            if (ch == '"' && !s->ev.model) {
                s->ev.model = true;
                return s->mode.rewrite;
            }
            break;
        case M_USAGE:
            if (ch == '{' && !s->ev.capturing) {
                s->ev.capturing = true;
                s->ev.usage_over = false;
                s->has_usage = false;
                s->usage_len = 0;
                capture(s, ch);
            }
            break;
        case M_CHOICES:
            if (ch == '[')
                s->json.choices = CH_OPENED;
            break;
        case M_ERROR:
            if (ch != 'n')
                s->error_event = true;
            break;
        case M_ID:
            if (ch == '"') {
                s->cap.id_on = true;
                s->cap.fr = false;
                s->cap.bad = false;
                s->cap.id_w = 0;
            }
            break;
        case M_CREATED:
            if (ch >= '0' && ch <= '9') {
                s->cap.num_on = true;
                s->cap.bad = false;
                s->cap.num = ch - '0';
                s->cap.num_digits = 1;
            }
            break;
        default:
            break;
        }
    } else if (s->json.depth == 3 && s->json.member == M_FINISH_REASON && ch == '"') {
        s->cap.id_on = s->cap.fr = true; /* its bytes go through id_byte() */
        s->fin.bad = false;
        s->fin.len = 0;
    }
    return false;
}

static void push(lx_sse_scan_t *s, char ch)
{
    if (s->json.depth < UINT32_MAX)
        s->json.depth++;
    if (s->json.depth <= LX_SSE_DEPTH_MAX) {
        uint64_t bit = (uint64_t)1 << (s->json.depth - 1);
        if (ch == '[')
            s->json.arrays |= bit;
        else
            s->json.arrays &= ~bit;
    } else {
        s->malformed = true;
    }
    s->json.want_key = ch == '{';
    s->json.want_val = false;
}

static void pop(lx_sse_scan_t *s)
{
    if (s->json.depth == 0)
        return;
    if (s->json.depth == 2) {
        if (s->ev.capturing)
            lx_sse_end_capture(s);
        s->json.choices = CH_NONE;
    }
    s->json.depth--;
    s->json.want_key = false;
    s->json.want_val = false;
}

/* A string opens: a member key (copied only when it can matter) or a value. */
static void open_string(lx_sse_scan_t *s)
{
    s->json.in_str = true;
    s->json.esc = false;
    s->json.str_key = s->json.want_key && key_matters(s);
    if (s->json.want_key && !s->json.str_key)
        s->json.member = M_OTHER; /* what end_key() would find for it */
    s->json.want_key = false;
    s->json.key_len = 0;
    s->json.key_long = false;
}

/* Feeds one payload byte; true when it is the opening quote of the model value to replace. */
bool lx_sse_json_byte(lx_sse_scan_t *s, char ch)
{
    if (s->ev.capturing)
        capture(s, ch);
    if (s->cap.num_on) {
        num_byte(s, ch);
        if (s->cap.num_on)
            return false;
    }
    if (s->json.in_str) {
        if (s->cap.id_on)
            id_byte(s, ch, ch == '"' && !s->json.esc);
        if (s->json.esc) {
            s->json.esc = false;
        } else if (ch == '\\') {
            s->json.esc = true;
        } else if (ch == '"') {
            s->json.in_str = false;
            if (s->json.str_key)
                end_key(s);
            return false;
        }
        if (s->json.str_key) {
            if (s->json.key_len < LX_SSE_KEY_MAX)
                s->json.key[s->json.key_len++] = ch;
            else
                s->json.key_long = true;
        }
        return false;
    }
    if (is_ws(ch))
        return false;
    if (s->json.choices == CH_OPENED) {
        s->json.choices = CH_OPEN;
        if (ch == ']')
            s->ev.choices_empty = true;
    }
    bool rewrite = false;
    if (s->json.want_val) {
        s->json.want_val = false;
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
            s->json.want_val = true;
        break;
    case ',':
        if (in_object(s))
            s->json.want_key = true;
        break;
    default:
        break;
    }
    return rewrite;
}

/* Event end: the payload's JSON state starts over. */
void lx_sse_json_reset(lx_sse_scan_t *s)
{
    s->json.depth = 0;
    s->json.arrays = 0;
    s->json.in_str = s->json.esc = s->json.str_key = false;
    s->json.want_key = s->json.want_val = s->json.key_long = false;
    s->json.key_len = 0;
    s->json.member = M_OTHER;
    s->json.choices = CH_NONE;
    s->ev.capturing = false; /* an unterminated usage object is abandoned (has_usage stays false) */
    s->ev.usage_over = false;
    s->ev.model = s->ev.usage = s->ev.choices_empty = false;
    /* an unterminated id, created or finish_reason is not kept */
    s->cap.id_on = s->cap.num_on = false;
}

/*
 * The bytes most of a JSON payload's structure is made of -- the quotes of strings, ',' and
 * ':' -- in the usual states: the same effect as lx_sse_json_byte() (which never rewrites for them
 * here), without its general checks. Returns false, having done nothing, for anything else.
 */
static inline bool json_quick(lx_sse_scan_t *s, char ch)
{
    if (s->cap.id_on || s->cap.num_on)
        return false;
    if (s->json.in_str) {
        if (ch != '"' || s->json.esc || s->out.skipping)
            return false;
        if (s->ev.capturing)
            capture(s, ch);
        s->json.in_str = false;
        if (s->json.str_key)
            end_key(s);
        return true;
    }
    /* a pending value start only matters for a member value_start() acts on */
    if (s->json.choices == CH_OPENED || (s->json.want_val && s->json.member != M_OTHER))
        return false;
    if (ch != '"' && ch != ',' && ch != ':')
        return false;
    if (s->ev.capturing)
        capture(s, ch);
    s->json.want_val = false;
    if (ch == '"')
        open_string(s);
    else if (in_object(s))
        *(ch == ',' ? &s->json.want_key : &s->json.want_val) = true;
    return true;
}

/* A payload byte through the tokenizer and the output: the model value is cut out of the run
 * and replaced by the literal; its closing quote starts the run again. */
static inline void json_step(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
    bool rewrite = lx_sse_json_byte(s, ch);
    if (s->out.skipping) {
        if (!s->json.in_str) { /* the closing quote: forwarded again from here */
            s->out.skipping = false;
            c->run_on = true;
            c->run = i;
        }
    } else if (rewrite) {
        lx_sse_cut(s, c, i + 1);
        if (s->lit != NULL)
            lx_sse_emit(s, c, s->lit, 0, s->lit->len);
        s->out.skipping = true;
        c->run_on = false;
    }
}

/* A payload byte through the tokenizer and the output (data_byte() in sse_scan.c). */
void lx_sse_json_data(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch)
{
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

/* What a byte is to lx_sse_value_end(): brackets and quotes; everything else passes. */
const uint8_t lx_sse_value_byte[256] = {
    ['"'] = VB_QUOTE, ['{'] = VB_OPEN, ['['] = VB_OPEN, ['}'] = VB_CLOSE, [']'] = VB_CLOSE,
};

/* Index one past the string whose opening quote is p[i], or 0 when it does not close before
 * p[n]. A backslash escapes the byte after it, whatever it is, as in lx_sse_json_byte(). */
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
size_t lx_sse_value_end(const char *p, size_t i, size_t n, uint32_t depth)
{
    switch (lx_sse_value_byte[(unsigned char)p[i]]) {
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
        switch (lx_sse_value_byte[(unsigned char)p[i]]) {
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
    if (s->json.want_key || s->ev.capturing || s->out.skipping || s->json.choices == CH_OPENED)
        return 0;
    size_t end;
    if (s->json.member == M_OTHER) {
        end = lx_sse_value_end(data, j, len, s->json.depth);
        if (end == 0 && lx_sse_value_byte[(unsigned char)data[j]] != VB_CLOSE && data[j] != ',' &&
            data[j] != ':')
            *whole = false; /* a string or container that did not end in this read */
    } else if (s->json.member == M_USAGE && s->json.depth == 1 && data[j] == '{') {
        /* its first key sets member to M_OTHER (open_string()); without one, byte by byte */
        size_t k = j + 1;
        while (k < len && is_ws(data[k]))
            k++;
        if (k == len || data[k] != '"')
            return 0;
        end = lx_sse_value_end(data, j, len, s->json.depth);
        if (end == 0) {
            *whole = false;
            return 0;
        }
        /* what value_start(), capture() and the closing pop() do over the object */
        size_t n = end - j, keep = n > LX_SSE_USAGE_MAX ? LX_SSE_USAGE_MAX : n;
        memcpy(s->usage, data + j, keep);
        s->usage_len = keep;
        s->ev.usage_over = n > LX_SSE_USAGE_MAX;
        s->has_usage = false;
        lx_sse_end_capture(s);
        s->json.member = M_OTHER;
    } else {
        return 0;
    }
    if (end != 0)
        s->json.want_val = false;
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
size_t lx_sse_json_feed(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *data, size_t len)
{
    size_t i = 0;
    bool whole = true; /* false after a value that did not end in this read: lx_sse_value_end() then
                        * looks at each byte at most once per call */
    while (i < len && c->n + 8 <= c->max) {
        size_t j = i;
        if (s->json.in_str) {
            if (!s->json.esc)
                j += lx_str_json_plain(data + i, len - i, false);
            if (j > i && s->json.str_key) {
                if (s->json.key_len == 0 && j < len && data[j] == '"' && !s->ev.capturing &&
                    !s->out.skipping) {
                    /* the whole key, then its closing quote as json_quick() takes it (not
                     * when the key is also the model value being replaced: "model",:"x") */
                    s->json.member =
                        member_of(s, lx_sse_key_member(s->json.depth, data + i, j - i));
                    s->json.in_str = false;
                    i = j + 1;
                    continue;
                }
                size_t n = j - i, room = LX_SSE_KEY_MAX - s->json.key_len;
                if (n > room) {
                    s->json.key_long = true;
                    n = room;
                }
                memcpy(s->json.key + s->json.key_len, data + i, n);
                s->json.key_len = (uint8_t)(s->json.key_len + n);
            } else if (j > i && s->cap.id_on && s->cap.fr) { /* (json mode keeps no id) */
                fr_run(s, data + i, j - i);
            }
        } else if (s->json.want_val) {
            if (whole && !s->ev.capturing) {
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
        } else if (s->json.choices != CH_OPENED) {
            while (j < len && json_inert[(unsigned char)data[j]])
                j++;
        }
        if (j > i) {
            if (s->ev.capturing)
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
