/*
 * strbuf.c - number formatting for the appenders of strbuf.h.
 */
#include "core/strbuf.h"

#include <math.h>

void lx_strbuf_u64(lx_strbuf_t *sb, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    lx_strbuf_mem(sb, tmp + sizeof(tmp) - n, n);
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
    char tmp[16];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = digits[v & 15];
        v >>= 4;
    } while (v != 0 && n < sizeof(tmp));
    while (n < width && n < sizeof(tmp))
        tmp[sizeof(tmp) - 1 - n++] = '0';
    lx_strbuf_mem(sb, tmp + sizeof(tmp) - n, n);
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
