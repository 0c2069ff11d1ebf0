/*
 * json.h - the JSON tokenizer: strict RFC 8259, one pass, no allocation, bounded depth.
 *
 * A pull tokenizer over bytes in memory: each lx_json_next() call returns the next token
 * (an opening or closing bracket, a member key with its colon, a string, a number, a literal)
 * as a span of the input, or the end of the document, or the first error with its offset.
 * Every input byte is looked at a bounded number of times, whatever the shape (nesting,
 * escapes, tokens): the work is linear in the input. The only state is the struct - the open
 * containers are one bit each - so hostile nesting costs neither stack nor memory, and past
 * the caller's depth limit the tokenizer stops at once.
 */
#ifndef LX_JSON_H
#define LX_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The deepest nesting any tokenizer may be asked to accept. */
#define LX_JSON_DEPTH_MAX 1024

typedef enum lx_json_type {
    LX_JSON_NONE,       /* no token: the document ended, or an error (lx_json_t.error) */
    LX_JSON_OBJECT,     /* '{' */
    LX_JSON_ARRAY,      /* '[' */
    LX_JSON_OBJECT_END, /* '}' */
    LX_JSON_ARRAY_END,  /* ']' */
    LX_JSON_KEY,        /* a member's key (its ':' is consumed with it) */
    LX_JSON_STRING,
    LX_JSON_NUMBER,
    LX_JSON_TRUE,
    LX_JSON_FALSE,
    LX_JSON_NULL,
} lx_json_type_t;

typedef enum lx_json_error {
    LX_JSON_OK,
    LX_JSON_ESYNTAX, /* a byte the grammar does not allow there (error_off) */
    LX_JSON_EEOF,    /* the input ended inside the document */
    LX_JSON_EDEPTH,  /* a container would nest deeper than the limit (error_off: its bracket) */
} lx_json_error_t;

/*
 * One token. Keys and strings span the bytes between their quotes, escapes untouched;
 * brackets span their one byte; numbers and literals their bytes. <depth> is the number of
 * containers around the token: 0 for the document's value, 1 for the keys and values of a
 * top-level object (a closing bracket has its opening bracket's depth).
 */
typedef struct lx_json_token {
    lx_json_type_t type;
    uint32_t start;
    uint32_t end;
    uint32_t depth;
    bool escaped; /* a key or string holding a backslash escape */
} lx_json_token_t;

/* The tokenizer's state: initialise with lx_json_init(), then read with lx_json_next(). */
typedef struct lx_json {
    const char *p;
    uint32_t len;
    uint32_t pos;       /* next byte to read */
    uint32_t depth;     /* open containers */
    uint32_t max_depth; /* most open containers allowed */
    uint8_t state;      /* what the grammar allows next (json.c) */
    bool raw_controls;  /* set by the caller after lx_json_init: a raw control character in a
                         * string is content, not an error (reading a provider's sloppy body;
                         * never a client's) */
    lx_json_error_t error;
    uint32_t error_off;                      /* ESYNTAX, EDEPTH: the offending byte; EEOF: len */
    uint64_t arrays[LX_JSON_DEPTH_MAX / 64]; /* bit d: the container at depth d is an array */
} lx_json_t;

/*
 * Prepares to read the one JSON value in <p>[0, <len>) (surrounded by whitespace at most),
 * allowing at most <max_depth> (<= LX_JSON_DEPTH_MAX; larger is clamped) nested containers.
 * <len> must be below 4 GiB (spans are 32-bit). Whitespace is exactly RFC 8259's: space, tab,
 * LF, CR. UTF-8 validity of strings is not checked; raw control characters in them are errors.
 */
void lx_json_init(lx_json_t *j, const char *p, size_t len, uint32_t max_depth);

/*
 * Reads the next token into *<t> and returns its type. LX_JSON_NONE means the document ended
 * well (j->error == LX_JSON_OK: only whitespace was left after the value) or the first error
 * was found (j->error and j->error_off say which and where). Once NONE is returned, every
 * later call returns NONE again. Error offsets: a byte the grammar does not allow at its
 * position is reported there, except a closing bracket after a comma, reported at the comma
 * (a trailing comma); a number or literal that is malformed (the bytes up to the next
 * whitespace, ',', ']' or '}', such as "01", "tru" or "truex") at its first byte; a string
 * with a malformed escape at its opening quote; a raw control character in a string at itself.
 */
lx_json_type_t lx_json_next(lx_json_t *j, lx_json_token_t *t);

/*
 * After <open> (an OBJECT or ARRAY token just returned), reads through the container's
 * content, checking it like lx_json_next(), up to its closing bracket, returned in *<close>.
 * Returns false (j->error set) when the document is malformed.
 */
bool lx_json_skip(lx_json_t *j, const lx_json_token_t *open, lx_json_token_t *close);

/* Whether <p>[0, <n>) is exactly an RFC 8259 number or one of true, false, null. Inline: the
 * body scan's direct pass calls it for every number on the request path. */
static inline bool lx_json_primitive_valid(const char *p, size_t n)
{
    const char *end = p + n;
    if ((n == 4 && memcmp(p, "true", 4) == 0) || (n == 4 && memcmp(p, "null", 4) == 0) ||
        (n == 5 && memcmp(p, "false", 5) == 0))
        return true;
    if (p < end && *p == '-')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return false;
    if (*p++ != '0')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        if (++p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p == end;
}

/* ---- the JSON string escaper (json_escape.c) ---------------------------------------------
 *
 * One rule for every JSON string llmux writes from text it does not control (error messages,
 * provider codes, configured names, model ids), shared by the layers above: api_error and the
 * models list (llm/), the health page (route/), and the logs (obs/log.c), which escape more on
 * top of it. For use between double quotes:
 *   - '"' and '\\' as \" and \\;
 *   - the C0 controls (below 0x20) with a short escape as \b \f \n \r \t, every other one as
 *     \u00XX (lower-case hex);
 *   - 0x7f (DEL) as \u007f: JSON allows it raw, but it is a control character a terminal or a
 *     log viewer acts on, so it is never written as it is;
 *   - valid UTF-8 (lx_str_utf8_len(): no overlong form, no surrogate, nothing above U+10FFFF)
 *     copied as it is, '/' and every other printable ASCII byte too;
 *   - each byte of invalid UTF-8 as U+FFFD (EF BF BD), so the output is always valid UTF-8.
 * Only whole escapes and whole characters are written: the output stops before the first one
 * that does not fit.
 */

/* Longest escaped form of one input character ("\u00XX"). */
#define LX_JSON_ESC_MAX 6

/*
 * The escaped form of the character at <s> (<avail> >= 1 bytes may be read) by the rule above.
 * *<in> receives the number of input bytes the character spans. Returns the length of its
 * escape, written to <tmp>, or 0 when the character's *<in> bytes are copied as they are.
 */
size_t lx_json_escape_char(const char *s, size_t avail, char tmp[LX_JSON_ESC_MAX], size_t *in);

/*
 * Escapes <len> bytes of <s> into <out> (at most <cap> bytes; no NUL). Returns the number of
 * bytes written; *<consumed> (when not NULL) receives the number of input bytes they stand for,
 * so consumed < len means the output was cut.
 */
size_t lx_json_escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed);

/* The exact length lx_json_escape() writes for all of <s> when <cap> is large enough. */
size_t lx_json_escaped_len(const char *s, size_t len);

/*
 * lx_json_escape() with every C0 control spelled \u00XX, the short escapes included ("\n" as
 * \u000a): the spelling of the health page (route/health_format.c), kept so its bytes do not
 * change. Which characters are escaped, and how invalid UTF-8 is replaced, is the same rule.
 */
size_t lx_json_escape_hex(char *out, size_t cap, const char *s, size_t len, size_t *consumed);

/*
 * Decodes the contents of a JSON string (<len> bytes between its quotes, escapes as written,
 * as core/json's tokens span them) into <out>: escapes resolved, \uXXXX as UTF-8 (a surrogate
 * pair combined, a lone surrogate as U+FFFD); other bytes copied as they are. Does not
 * NUL-terminate. Returns the decoded length, LX_ETOOBIG when it exceeds <cap>, or LX_EJSON for
 * a malformed escape.
 */
int lx_json_unescape(const char *raw, size_t len, char *out, size_t cap);

#endif
