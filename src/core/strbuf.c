/*
 * strbuf.c - number formatting for the appenders of strbuf.h.
 */
#include "core/strbuf.h"

#include <math.h>

/* "00".."99": two digits per division. */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* Two digits per step, from the last back to <p>; 32-bit steps once the value fits (a
 * multiply and a shift each, cheaper than the 64-bit ones). */
static void put_digits(char *end, uint64_t v)
{
    char *p = end;
    while (v > UINT32_MAX) {
        unsigned k = (unsigned)(v % 100) * 2;
        v /= 100;
        p -= 2;
        p[0] = digit_pairs[k];
        p[1] = digit_pairs[k + 1];
    }
    uint32_t w = (uint32_t)v;
    while (w >= 100) {
        unsigned k = w % 100 * 2;
        w /= 100;
        p -= 2;
        p[0] = digit_pairs[k];
        p[1] = digit_pairs[k + 1];
    }
    if (w >= 10) {
        p[-2] = digit_pairs[w * 2];
        p[-1] = digit_pairs[w * 2 + 1];
    } else {
        p[-1] = (char)('0' + w);
    }
}

void lx_strbuf_u64(lx_strbuf_t *sb, uint64_t v)
{
    static const uint64_t pow10[20] = {1,
                                       10,
                                       100,
                                       1000,
                                       10000,
                                       100000,
                                       1000000,
                                       10000000,
                                       100000000,
                                       1000000000,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};
    /* the digits from the highest set bit: t = floor(bits * log10(2)) (1233 / 4096), one less
     * when v is below 10^t */
    size_t n = 1;
    if (v >= 10) {
        size_t t = (size_t)(64 - __builtin_clzll(v)) * 1233 >> 12;
        n = t + (v >= pow10[t]);
    }
    if ((size_t)(sb->end - sb->p) < n) {
        sb->overflow = true;
        return;
    }
    /* written in place, from the last digit back */
    sb->p += n;
    put_digits(sb->p, v);
}

void lx_strbuf_i64(lx_strbuf_t *sb, int64_t v)
{
    if (v < 0) {
        LX_STRBUF_LIT(sb, "-");
        lx_strbuf_u64(sb, (uint64_t)0 - (uint64_t)v);
        return;
    }
    lx_strbuf_u64(sb, (uint64_t)v);
}

void lx_strbuf_hex(lx_strbuf_t *sb, uint64_t v, unsigned width)
{
    static const char digits[] = "0123456789abcdef";
    /* digits needed: one per started nibble of the highest set bit, at least one and at least
     * <width>, at most 16 */
    size_t n = v == 0 ? 1 : (size_t)(67 - __builtin_clzll(v)) / 4;
    if (n < width)
        n = width < 16 ? width : 16;
    if ((size_t)(sb->end - sb->p) < n) {
        sb->overflow = true;
        return;
    }
    /* written in place, from the last digit back */
    char *p = sb->p + n;
    sb->p = p;
    for (size_t i = 0; i < n; i++) {
        *--p = digits[v & 15];
        v >>= 4;
    }
}

void lx_strbuf_fixed(lx_strbuf_t *sb, double v, unsigned decimals)
{
    static const uint64_t pow10[] = {1,      10,      100,      1000,      10000,
                                     100000, 1000000, 10000000, 100000000, 1000000000};
    if (decimals > 9)
        decimals = 9;
    if (isnan(v) || v >= 1e9) {
        LX_STRBUF_LIT(sb, "0");
        return;
    }
    if (v < 0) {
        LX_STRBUF_LIT(sb, "-");
        v = -v;
    }
    uint64_t scaled = (uint64_t)llround(v * (double)pow10[decimals]);
    lx_strbuf_u64(sb, scaled / pow10[decimals]);
    if (decimals == 0)
        return;
    LX_STRBUF_LIT(sb, ".");
    uint64_t frac = scaled % pow10[decimals];
    char tmp[9];
    for (unsigned i = decimals; i > 0; i--) {
        tmp[i - 1] = (char)('0' + frac % 10);
        frac /= 10;
    }
    lx_strbuf_mem(sb, tmp, decimals);
}
