/*
 * str.h - byte-string views and the few comparisons the parsers need.
 */
#ifndef LX_STR_H
#define LX_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct lx_str {
    const char *ptr;
    size_t len;
} lx_str_t;

#define LX_STR(lit) ((lx_str_t){(lit), sizeof(lit) - 1})

/* The value of the hexadecimal digit <c> (0-9, a-f, A-F), or -1. */
static inline int lx_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline bool lx_str_eq(lx_str_t a, const char *b, size_t blen)
{
    return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

/*
 * Length of the prefix of p[0, n) that is the plain inside of a JSON string: before the first
 * quote or backslash, and with <stop_ctl> also before the first control character (< 0x20).
 * Sixteen bytes at a time with SSE2; then eight at a time on little-endian machines: a byte
 * equal to c shows as a zero byte of w ^ c*0x01..01, and the lowest flagged byte of the
 * zero-byte test is exact (borrows only run upwards); byte by byte elsewhere.
 */
static inline size_t lx_str_json_plain(const char *p, size_t n, bool stop_ctl)
{
    size_t k = 0;
#if defined(__SSE2__)
    /* sixteen bytes at a time where SSE2 is there (every x86-64): a byte-wise compare per
     * stop byte, a control character being one that min(byte, 0x1f) leaves unchanged */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    for (; k + 16 <= n; k += 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p + k));
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, bslash));
        if (stop_ctl)
            m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_min_epu8(w, ctl), w));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits != 0)
            return k + (size_t)__builtin_ctz(bits);
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const unsigned long long ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    for (; k + 8 <= n; k += 8) {
        unsigned long long w;
        memcpy(&w, p + k, 8);
        unsigned long long q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        unsigned long long m = ((q - ones) & ~q) | ((b - ones) & ~b);
        if (stop_ctl)
            m |= (w - ones * 0x20) & ~w;
        m &= highs;
        if (m != 0)
            return k + (size_t)(__builtin_ctzll(m) >> 3);
    }
#endif
    while (k < n && p[k] != '"' && p[k] != '\\' && (!stop_ctl || (unsigned char)p[k] >= 0x20))
        k++;
    return k;
}

/* ASCII case-insensitive equality. */
bool lx_str_caseeq(lx_str_t a, const char *b, size_t blen);

/* Parses an unsigned decimal (no sign, no spaces) into *out; false on garbage or overflow. */
bool lx_str_to_u64(lx_str_t s, unsigned long long *out);

/* Whether comma-separated header value <s> contains token <tok> (case-insensitive). */
bool lx_str_has_token(lx_str_t s, const char *tok, size_t toklen);

/* Length (1..4) of the well-formed UTF-8 sequence at <s>, of which <avail> bytes may be read,
 * or 0 when the bytes there are not one (overlong forms, surrogates and code points above
 * U+10FFFF are not). <avail> must be at least 1. */
size_t lx_str_utf8_len(const unsigned char *s, size_t avail);

#endif
