/*
 * json_escape.c - the JSON string escaper (json.h): the writing side of core/json.
 *
 * Plain ASCII (0x20..0x7e but '"' and '\\') goes in runs, one memcpy per run; every other character
 * takes escape_char(). The two spellings of control characters (short escapes, or \u00XX
 * throughout) differ in that one function's first switch.
 */
#include <string.h>

#include "core/json.h"
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
