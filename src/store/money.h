/*
 * money.h - money as integers: micro-dollars (µ$, int64: ±9.2e12 USD), prices as µ$ per
 * million tokens (which is also "pico-dollars per token"). Floating point appears only at the
 * configuration's edge (lx_money_from_usd) and never in a sum, a comparison or a stored value.
 */
#ifndef LX_MONEY_H
#define LX_MONEY_H

#include <stddef.h>
#include <stdint.h>

/* Largest amount a limit, a price or a cost may hold: $1e9 (1e15 µ$); larger input is refused
 * by the parsers and costs saturate here, so sums of a few million of them cannot overflow. */
#define LX_MONEY_MAX INT64_C(1000000000000000)

/* A USD amount from the configuration (a price per million tokens) in µ$, rounded to the
 * nearest; negative, NaN or above LX_MONEY_MAX gives -1. */
int64_t lx_money_from_usd(double usd);

/*
 * The cost of <prompt> and <completion> tokens (negative counts as 0) at <price_prompt> and
 * <price_completion> µ$ per million tokens: the exact sum divided by 1e6 and rounded up (a
 * request that used anything costs at least 1 µ$ when its price is not zero), computed in
 * 128-bit arithmetic and saturated at LX_MONEY_MAX.
 */
int64_t lx_money_cost(int64_t prompt, int64_t price_prompt, int64_t completion,
                      int64_t price_completion);

/*
 * Parses a JSON number (<len> bytes, no surrounding blanks) as USD into µ$: "12", "0.5",
 * "1e-3", "2.5E2". Exact: digits past the sixth decimal must be zeros, else LX_EINVAL (a limit
 * of $0.0000001 cannot be honoured). Negative, above LX_MONEY_MAX or not a number: LX_EINVAL.
 * Linear in <len>.
 */
int lx_money_parse(const char *s, size_t len, int64_t *out);

/* Writes <micros> as a JSON number of USD with the fewest digits ("0", "1.5", "0.000001",
 * "-2.25") and a NUL into <buf> (LX_MONEY_FMT_MAX bytes suffice). Returns the length. */
#define LX_MONEY_FMT_MAX 32
size_t lx_money_format(int64_t micros, char *buf);

#endif
