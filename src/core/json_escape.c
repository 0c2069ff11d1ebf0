/*
 * json_escape.c - JSON string contents (json.h): the escaper, the writing side of core/json,
 * and its inverse, lx_json_unescape().
 *
 * Plain ASCII (0x20..0x7e but '"' and '\\') goes in runs, one memcpy per run; every other character
 * takes escape_char(). The two spellings of control characters (short escapes, or \u00XX
 * throughout) differ in that one function's first switch.
 */
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"

/* A byte copied as it is in a run: printable ASCII but '"' and '\\'. */
static inline bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static size_t hex_escape(char *tmp, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(tmp, "\\u00", 4);
    tmp[4] = hex[c >> 4];
    tmp[5] = hex[c & 0xf];
    return 6;
}

static size_t escape_char(const char *s, size_t avail, char *tmp, size_t *in, bool hex)
{
    unsigned char c = (unsigned char)s[0];
    char short_esc = 0;
    *in = 1;
    switch (c) {
    case '"':
        short_esc = '"';
        break;
    case '\\':
        short_esc = '\\';
        break;
    case '\b':
        short_esc = hex ? 0 : 'b';
        break;
    case '\f':
        short_esc = hex ? 0 : 'f';
        break;
    case '\n':
        short_esc = hex ? 0 : 'n';
        break;
    case '\r':
        short_esc = hex ? 0 : 'r';
        break;
    case '\t':
        short_esc = hex ? 0 : 't';
        break;
    default:
        break;
    }
    if (short_esc != 0) {
        tmp[0] = '\\';
        tmp[1] = short_esc;
        return 2;
    }
    if (c < 0x20 || c == 0x7f)
        return hex_escape(tmp, c);
    if (c < 0x80)
        return 0;
    size_t n = lx_str_utf8_len((const unsigned char *)s, avail);
    if (n == 0) {
        memcpy(tmp, "\xef\xbf\xbd", 3); /* U+FFFD for one bad byte */
        return 3;
    }
    *in = n;
    return 0;
}

size_t lx_json_escape_char(const char *s, size_t avail, char tmp[LX_JSON_ESC_MAX], size_t *in)
{
    return escape_char(s, avail, tmp, in, false);
}

static size_t escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed, bool hex)
{
    size_t o = 0, i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && plain((unsigned char)s[j]))
            j++;
        if (j - i > cap - o)
            j = i + (cap - o); /* a byte of a run is a whole character */
        memcpy(out + o, s + i, j - i);
        o += j - i;
        i = j;
        if (i == len || o == cap)
            break;
        char tmp[LX_JSON_ESC_MAX];
        size_t in, n = escape_char(s + i, len - i, tmp, &in, hex);
        if ((n != 0 ? n : in) > cap - o)
            break;
        memcpy(out + o, n != 0 ? tmp : s + i, n != 0 ? n : in);
        o += n != 0 ? n : in;
        i += in;
    }
    if (consumed != NULL)
        *consumed = i;
    return o;
}

size_t lx_json_escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed)
{
    return escape(out, cap, s, len, consumed, false);
}

size_t lx_json_escape_hex(char *out, size_t cap, const char *s, size_t len, size_t *consumed)
{
    return escape(out, cap, s, len, consumed, true);
}

size_t lx_json_escaped_len(const char *s, size_t len)
{
    size_t o = 0, i = 0;
    while (i < len) {
        if (plain((unsigned char)s[i])) {
            o++;
            i++;
            continue;
        }
        char tmp[LX_JSON_ESC_MAX];
        size_t in, n = escape_char(s + i, len - i, tmp, &in, false);
        o += n != 0 ? n : in;
        i += in;
    }
    return o;
}

/* ---- the inverse: a string's contents decoded --------------------------------------------- */

/* Appends code point <cp> as UTF-8 at out[*o]; LX_ETOOBIG when it does not fit. */
static int put_utf8(char *out, size_t cap, size_t *o, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (n > cap - *o)
        return LX_ETOOBIG;
    memcpy(out + *o, b, n);
    *o += n;
    return 0;
}

/* The 4 hex digits at s, or -1. */
static int32_t hex4(const char *s)
{
    int32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = lx_hex_value(s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int lx_json_unescape(const char *raw, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (c != '\\') {
            if (o == cap)
                return LX_ETOOBIG;
            out[o++] = c;
            continue;
        }
        if (++i == len)
            return LX_EJSON;
        uint32_t cp;
        switch (raw[i]) {
        case '"':
        case '\\':
        case '/':
            cp = (unsigned char)raw[i];
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u': {
            if (len - i < 5)
                return LX_EJSON;
            int32_t u = hex4(raw + i + 1);
            if (u < 0)
                return LX_EJSON;
            i += 4;
            cp = (uint32_t)u;
            if (cp >= 0xd800 && cp <= 0xdbff && len - i >= 7 && raw[i + 1] == '\\' &&
                raw[i + 2] == 'u') {
                int32_t lo = hex4(raw + i + 3);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                    i += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* lone surrogate */
            break;
        }
        default:
            return LX_EJSON;
        }
        if ((rc = put_utf8(out, cap, &o, cp)) != 0)
            return rc;
    }
    if (o > INT32_MAX)
        return LX_ETOOBIG;
    return (int)o;
}
