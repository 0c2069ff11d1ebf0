/*
 * money.c - integer money (money.h): micro-dollars in int64, costs in 128-bit intermediates,
 * and an exact decimal reader/writer for the JSON numbers of the management API.
 */
#include "store/money.h"

#include <stdbool.h>

#include "core/status.h"

__extension__ typedef unsigned __int128 lx_u128;

int64_t lx_money_from_usd(double usd)
{
    double micros = usd * 1e6;
    if (!(micros >= 0.0)) /* negative or NaN */
        return -1;
    if (micros > (double)LX_MONEY_MAX)
        return -1;
    return (int64_t)(micros + 0.5);
}

int64_t lx_money_cost(int64_t prompt, int64_t price_prompt, int64_t completion,
                      int64_t price_completion)
{
    lx_u128 p = prompt > 0 ? (lx_u128)prompt : 0;
    lx_u128 c = completion > 0 ? (lx_u128)completion : 0;
    lx_u128 pp = price_prompt > 0 ? (lx_u128)price_prompt : 0;
    lx_u128 pc = price_completion > 0 ? (lx_u128)price_completion : 0;
    /* each product < 2^126, their sum < 2^127: no overflow */
    lx_u128 sum = p * pp + c * pc;
    lx_u128 micros = (sum + 999999) / 1000000;
    if (micros > (lx_u128)LX_MONEY_MAX)
        return LX_MONEY_MAX;
    return (int64_t)micros;
}

/* The pieces of a JSON number: digits [int_at, int_end) and [frac_at, frac_end), exponent. */
typedef struct number {
    size_t int_at, int_end, frac_at, frac_end;
    int64_t exp; /* saturated at ±EXP_CAP */
    bool negative;
} number_t;

#define EXP_CAP INT64_C(1000000000000)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? over all <len> bytes. */
static bool scan_number(const char *s, size_t len, number_t *n)
{
    size_t i = 0;
    n->negative = len > 0 && s[0] == '-';
    i += n->negative;
    n->int_at = i;
    if (i >= len || !is_digit(s[i]))
        return false;
    if (s[i] == '0')
        i++;
    else
        while (i < len && is_digit(s[i]))
            i++;
    n->int_end = n->frac_at = n->frac_end = i;
    if (i < len && s[i] == '.') {
        n->frac_at = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        n->frac_end = i;
        if (n->frac_end == n->frac_at)
            return false;
    }
    n->exp = 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool neg = ++i < len && s[i] == '-';
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        if (i >= len || !is_digit(s[i]))
            return false;
        for (; i < len && is_digit(s[i]); i++)
            if (n->exp < EXP_CAP)
                n->exp = n->exp * 10 + (s[i] - '0');
        n->exp = neg ? -n->exp : n->exp;
    }
    return i == len;
}

/* The <k>-th digit of the number's digit string (integer part then fraction). */
static int digit_at(const char *s, const number_t *n, size_t k)
{
    size_t n_int = n->int_end - n->int_at;
    return k < n_int ? s[n->int_at + k] - '0' : s[n->frac_at + (k - n_int)] - '0';
}

int lx_money_parse(const char *s, size_t len, int64_t *out)
{
    number_t n;
    if (s == NULL || !scan_number(s, len, &n))
        return LX_EINVAL;
    size_t total = (n.int_end - n.int_at) + (n.frac_end - n.frac_at);
    size_t first = 0, last = total;
    while (first < total && digit_at(s, &n, first) == 0)
        first++;
    if (first == total) { /* zero, "-0" included */
        *out = 0;
        return 0;
    }
    if (n.negative)
        return LX_EINVAL;
    while (digit_at(s, &n, last - 1) == 0)
        last--;
    /* value = digits[first, last) * 10^shift µ$ */
    int64_t shift = n.exp - (int64_t)(n.frac_end - n.frac_at) + (int64_t)(total - last) + 6;
    size_t sig = last - first;
    if (shift < 0)
        return LX_EINVAL; /* a non-zero digit below 1 µ$ */
    if ((int64_t)sig + shift > 16)
        return LX_EINVAL; /* at least 10^16 µ$, above LX_MONEY_MAX */
    int64_t v = 0;
    for (size_t k = first; k < last; k++)
        v = v * 10 + digit_at(s, &n, k);
    for (int64_t k = 0; k < shift; k++)
        v *= 10;
    if (v > LX_MONEY_MAX)
        return LX_EINVAL;
    *out = v;
    return 0;
}

size_t lx_money_format(int64_t micros, char *buf)
{
    uint64_t mag = micros < 0 ? 0 - (uint64_t)micros : (uint64_t)micros;
    uint64_t whole = mag / 1000000, frac = mag % 1000000;
    char tmp[24];
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole > 0);
    if (micros < 0)
        buf[len++] = '-';
    while (n > 0)
        buf[len++] = tmp[--n];
    if (frac != 0) {
        buf[len++] = '.';
        for (uint64_t div = 100000; frac != 0; div /= 10) {
            buf[len++] = (char)('0' + frac / div);
            frac %= div;
        }
    }
    buf[len] = '\0';
    return len;
}
