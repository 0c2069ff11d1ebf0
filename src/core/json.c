/*
 * json.c - the JSON tokenizer (json.h).
 *
 * A state machine over the input with one state byte and one bit per open container: which
 * tokens may come next (a value, a key or '}', a value or ']', a ',' or the closing bracket,
 * nothing), and whether the innermost container is an array. Each call skips whitespace and
 * reads one token; string interiors go sixteen or eight bytes at a time (lx_str_json_plain).
 * No byte is read twice except a malformed number's or literal's on the way to its error, so
 * the cost is linear in the input for every shape; in particular closing a container is O(1),
 * where a token tree with parent links walks back up the tree.
 */
#include "core/json.h"

#include <string.h>

#include "core/str.h"

/* What the grammar allows next. */
enum {
    S_VALUE,       /* a value: the document's, after ':' or after ',' in an array */
    S_FIRST_KEY,   /* just after '{': a key or '}' */
    S_KEY,         /* after ',' in an object: a key */
    S_FIRST_ELEM,  /* just after '[': a value or ']' */
    S_NEXT_ELEM,   /* after ',' in an array: a value */
    S_AFTER_VALUE, /* after a value in a container: ',' or its closing bracket */
    S_DONE,        /* after the document's value: only whitespace */
    S_STOPPED,     /* the end or an error was returned */
};

void lx_json_init(lx_json_t *j, const char *p, size_t len, uint32_t max_depth)
{
    memset(j, 0, offsetof(lx_json_t, arrays));
    j->p = p;
    j->len = (uint32_t)len;
    j->max_depth = max_depth > LX_JSON_DEPTH_MAX ? LX_JSON_DEPTH_MAX : max_depth;
    j->state = S_VALUE;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static lx_json_type_t stop(lx_json_t *j, lx_json_error_t e, uint32_t off)
{
    j->state = S_STOPPED;
    j->error = e;
    j->error_off = off;
    return LX_JSON_NONE;
}

static lx_json_type_t stop_eof(lx_json_t *j)
{
    return stop(j, LX_JSON_EEOF, j->len);
}

/* The string whose opening quote is at j->pos, as a token of <type>. */
static lx_json_type_t read_string(lx_json_t *j, lx_json_token_t *t, lx_json_type_t type)
{
    const char *p = j->p;
    uint32_t q = j->pos, i = q + 1, n = j->len;
    bool escaped = false;
    for (;;) {
        i += (uint32_t)lx_str_json_plain(p + i, n - i, true);
        if (i >= n)
            return stop_eof(j);
        char c = p[i];
        if (c == '"')
            break;
        if (c != '\\') { /* a raw control character */
            if (!j->raw_controls)
                return stop(j, LX_JSON_ESYNTAX, i);
            i++;
            continue;
        }
        escaped = true;
        if (i + 1 >= n)
            return stop_eof(j);
        char e = p[i + 1];
        if (e == 'u') {
            for (uint32_t k = 2; k < 6; k++) {
                if (i + k >= n)
                    return stop_eof(j);
                if (!is_hex(p[i + k]))
                    return stop(j, LX_JSON_ESYNTAX, q);
            }
            i += 6;
        } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                   e == 'r' || e == 't') {
            i += 2;
        } else {
            return stop(j, LX_JSON_ESYNTAX, q);
        }
    }
    t->type = type;
    t->start = q + 1;
    t->end = i;
    t->escaped = escaped;
    j->pos = i + 1;
    return type;
}

/* The number or literal starting at j->pos: its bytes run to the next delimiter. */
static lx_json_type_t read_primitive(lx_json_t *j, lx_json_token_t *t)
{
    const char *p = j->p;
    uint32_t s = j->pos, i = s, n = j->len;
    while (i < n) {
        char c = p[i];
        if (c == ',' || c == ']' || c == '}' || is_ws(c))
            break;
        i++;
    }
    if (!lx_json_primitive_valid(p + s, i - s)) {
        /* cut short by the end of the input inside a container: that is the error */
        if (i == n && j->depth > 0)
            return stop_eof(j);
        return stop(j, LX_JSON_ESYNTAX, s);
    }
    char c = p[s];
    t->type = c == 't'   ? LX_JSON_TRUE
              : c == 'f' ? LX_JSON_FALSE
              : c == 'n' ? LX_JSON_NULL
                         : LX_JSON_NUMBER;
    t->start = s;
    t->end = i;
    t->escaped = false;
    j->pos = i;
    return t->type;
}

static bool top_is_array(const lx_json_t *j)
{
    uint32_t d = j->depth - 1;
    return j->arrays[d / 64] >> (d % 64) & 1u;
}

/* After a ',' the byte at <at> is no key or value: a closing bracket there is reported at the
 * comma (a trailing comma), anything else at itself. */
static uint32_t trailing_comma(const lx_json_t *j, uint32_t at)
{
    if (j->p[at] != '}' && j->p[at] != ']')
        return at;
    uint32_t i = at - 1;
    while (j->p[i] != ',')
        i--;
    return i;
}

/* The closing bracket <c> at <at>. */
static lx_json_type_t close_container(lx_json_t *j, lx_json_token_t *t, uint32_t at, char c)
{
    j->depth--;
    t->depth = j->depth;
    t->type = c == ']' ? LX_JSON_ARRAY_END : LX_JSON_OBJECT_END;
    t->start = at;
    t->end = at + 1;
    j->pos++;
    j->state = j->depth == 0 ? S_DONE : S_AFTER_VALUE;
    return t->type;
}

/* A member key at <at> (S_FIRST_KEY or S_KEY) with its ':'. */
static lx_json_type_t read_key(lx_json_t *j, lx_json_token_t *t, uint32_t at)
{
    const char *p = j->p;
    uint32_t n = j->len;
    if (p[at] != '"')
        return stop(j, LX_JSON_ESYNTAX, j->state == S_KEY ? trailing_comma(j, at) : at);
    if (read_string(j, t, LX_JSON_KEY) == LX_JSON_NONE)
        return LX_JSON_NONE;
    while (j->pos < n && is_ws(p[j->pos]))
        j->pos++;
    if (j->pos >= n)
        return stop_eof(j);
    if (p[j->pos] != ':')
        return stop(j, LX_JSON_ESYNTAX, j->pos);
    j->pos++;
    j->state = S_VALUE;
    return LX_JSON_KEY;
}

/* A value starting with <c> at <at>. */
static lx_json_type_t read_value(lx_json_t *j, lx_json_token_t *t, uint32_t at, char c)
{
    lx_json_type_t type;
    if (c == '{' || c == '[') {
        if (j->depth >= j->max_depth)
            return stop(j, LX_JSON_EDEPTH, at);
        uint32_t d = j->depth++;
        uint64_t bit = (uint64_t)1 << (d % 64);
        if (c == '[')
            j->arrays[d / 64] |= bit;
        else
            j->arrays[d / 64] &= ~bit;
        j->state = c == '[' ? S_FIRST_ELEM : S_FIRST_KEY;
        j->pos++;
        t->type = c == '[' ? LX_JSON_ARRAY : LX_JSON_OBJECT;
        t->start = at;
        t->end = at + 1;
        return t->type;
    }
    if (c == '"')
        type = read_string(j, t, LX_JSON_STRING);
    else if (c == '-' || is_digit(c) || c == 't' || c == 'f' || c == 'n')
        type = read_primitive(j, t);
    else
        return stop(j, LX_JSON_ESYNTAX, at);
    if (type != LX_JSON_NONE)
        j->state = j->depth == 0 ? S_DONE : S_AFTER_VALUE;
    return type;
}

lx_json_type_t lx_json_next(lx_json_t *j, lx_json_token_t *t)
{
    const char *p = j->p;
    uint32_t n = j->len;
    t->type = LX_JSON_NONE;
    t->escaped = false;
    for (;;) {
        while (j->pos < n && is_ws(p[j->pos]))
            j->pos++;
        if (j->state == S_STOPPED)
            return LX_JSON_NONE;
        if (j->pos >= n) {
            if (j->state != S_DONE)
                return stop_eof(j);
            j->state = S_STOPPED;
            return LX_JSON_NONE;
        }
        uint32_t at = j->pos;
        char c = p[at];
        t->depth = j->depth;
        /* what the state allows at <at>: a flat switch over the grammar's states */
        switch (j->state) {
        case S_AFTER_VALUE: {
            bool arr = top_is_array(j);
            if (c == ',') {
                j->pos++;
                j->state = arr ? S_NEXT_ELEM : S_KEY;
                continue;
            }
            if (c != (arr ? ']' : '}'))
                return stop(j, LX_JSON_ESYNTAX, at);
            return close_container(j, t, at, c);
        }
        case S_FIRST_KEY:
            if (c == '}')
                return close_container(j, t, at, c);
            return read_key(j, t, at);
        case S_KEY:
            return read_key(j, t, at);
        case S_FIRST_ELEM:
            if (c == ']')
                return close_container(j, t, at, c);
            return read_value(j, t, at, c);
        case S_NEXT_ELEM:
            if (c == ']')
                return stop(j, LX_JSON_ESYNTAX, trailing_comma(j, at));
            return read_value(j, t, at, c);
        case S_VALUE:
            return read_value(j, t, at, c);
        default: /* S_DONE: bytes after the document */
            return stop(j, LX_JSON_ESYNTAX, at);
        }
    }
}

bool lx_json_skip(lx_json_t *j, const lx_json_token_t *open, lx_json_token_t *close)
{
    lx_json_type_t want = open->type == LX_JSON_OBJECT ? LX_JSON_OBJECT_END : LX_JSON_ARRAY_END;
    for (;;) {
        lx_json_type_t type = lx_json_next(j, close);
        if (type == LX_JSON_NONE)
            return false;
        if (type == want && close->depth == open->depth)
            return true;
    }
}
