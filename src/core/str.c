/*
 * str.c - byte-string helpers used by the HTTP and config parsers.
 */
#include "core/str.h"

#include <limits.h>

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool lx_str_caseeq(lx_str_t a, const char *b, size_t blen)
{
    if (a.len != blen)
        return false;
    for (size_t i = 0; i < blen; i++)
        if (lower((unsigned char)a.ptr[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

bool lx_str_to_u64(lx_str_t s, unsigned long long *out)
{
    if (s.len == 0)
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned)(s.ptr[i] - '0');
        if (d > 9 || v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool lx_str_has_token(lx_str_t s, const char *tok, size_t toklen)
{
    size_t i = 0;
    while (i < s.len) {
        while (i < s.len && (s.ptr[i] == ' ' || s.ptr[i] == '\t' || s.ptr[i] == ','))
            i++;
        size_t start = i;
        while (i < s.len && s.ptr[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (s.ptr[end - 1] == ' ' || s.ptr[end - 1] == '\t'))
            end--;
        lx_str_t t = {s.ptr + start, end - start};
        if (lx_str_caseeq(t, tok, toklen))
            return true;
    }
    return false;
}

size_t lx_str_utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}
