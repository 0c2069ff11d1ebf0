/*
 * sse_whole.c - the stream scanner's structural reading (sse_int.h): a whole answer, or a
 * whole event, that lies in one read.
 */
#include <stddef.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/sse_int.h"
#include "llm/sse_usage.h"

/*
 * Most plain answers arrive whole in one read. Then the document is read structurally first --
 * the top-level members, and the members of each choice object -- and the slices follow from
 * what was found; values that cannot matter are passed over with lx_sse_value_end(), like
 * json_value() does. The reading is strict: anything it does not expect (a key with an escape, a
 * missing colon, a document that does not end in the read, bytes after it) makes it give up having
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
    size_t fr_at, fr_end;           /* the last finish_reason value kept; fr_end 0: none */
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
    switch (lx_sse_value_byte[(unsigned char)p[i]]) {
    case VB_QUOTE:
    case VB_OPEN:
        return lx_sse_value_end(p, i, n, depth);
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

/* Whether the <n> bytes at <p> of a finish_reason value are all kept by the machine: printable
 * ASCII without '"' or '\\'. */
static bool fr_plain(const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)p[k] < 0x20 || (unsigned char)p[k] >= 0x7f || p[k] == '"' ||
            p[k] == '\\')
            return false;
    return true;
}

/* A finish_reason string whose contents are p[at, end): the choice finished, and the value is
 * the one kept when fr_byte() would keep it at its closing quote. Out of line: most members are no
 * finish_reason string, and w_choice_member() stays small enough to take w_value() inline. */
__attribute__((noinline)) static void w_finish(whole_t *w, const char *p, size_t at, size_t end)
{
    w->finished = true;
    if (fr_plain(p + at, end - at)) {
        w->fr_at = at;
        w->fr_end = end;
    }
}

/* A member of a choice object (depth 3): its finish_reason says whether the choice finished,
 * and its value is the one kept. */
static bool w_choice_member(whole_t *w, const char *p, size_t k, size_t kn, size_t v, size_t n,
                            size_t *end)
{
    *end = w_value(p, v, n, 3);
    if (*end == 0)
        return false;
    /* what the machine sees: a string value with at least one byte before its closing quote */
    if (p[v] == '"' && *end - v > 2 && lx_sse_key_member(3, p + k, kn) == M_FINISH_REASON)
        w_finish(w, p, v + 1, *end - 1);
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

static bool w_top_member(whole_t *w, const char *p, size_t k, size_t kn, size_t v, size_t n,
                         size_t *end)
{
    enum lx_sse_member m = lx_sse_key_member(1, p + k, kn);
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
static void apply_whole(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *p, const whole_t *w)
{
    if (w->model_end != 0) {
        s->ev.model = true;
        if (s->mode.rewrite) {
            lx_sse_cut(s, c, w->model_q + 1);
            if (s->lit != NULL)
                lx_sse_emit(s, c, s->lit, 0, s->lit->len);
            c->run = w->model_end; /* the closing quote is forwarded again */
        }
    }
    if (w->usage_end != 0) { /* what json_value() does with a usage object */
        size_t len = w->usage_end - w->usage_at,
               keep = len > LX_SSE_USAGE_MAX ? LX_SSE_USAGE_MAX : len;
        memcpy(s->usage, p + w->usage_at, keep);
        s->usage_len = keep;
        s->ev.usage_over = len > LX_SSE_USAGE_MAX;
        lx_sse_end_capture(s);
    }
    if (w->finished)
        s->finished = true;
    if (w->fr_end != 0) {
        size_t n = LX_MIN(w->fr_end - w->fr_at, (size_t)LX_SSE_FINISH_MAX - 1);
        memcpy(s->finish_reason, p + w->fr_at, n);
        s->finish_reason[n] = '\0';
    }
    if (w->error)
        s->error_event = true;
    s->ev.choices_empty = w->choices_empty;
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
bool lx_sse_json_whole(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *p, size_t n)
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
size_t lx_sse_whole_event(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *p, size_t i, size_t n,
                          lx_sse_lf_cache_t *lfc)
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
    s->frame.done_pos = NO_MATCH;
    lx_sse_json_reset(s);
    return e + 2;
}
