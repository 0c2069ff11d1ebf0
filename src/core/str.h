/*
 * str.h - byte-string views and the few comparisons the parsers need.
 */
#ifndef LX_STR_H
#define LX_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct lx_str {
    const char *ptr;
    size_t len;
} lx_str_t;

#define LX_STR(lit) ((lx_str_t){(lit), sizeof(lit) - 1})

static inline bool lx_str_eq(lx_str_t a, const char *b, size_t blen)
{
    return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

/* ASCII case-insensitive equality. */
bool lx_str_caseeq(lx_str_t a, const char *b, size_t blen);

/* Parses an unsigned decimal (no sign, no spaces) into *out; false on garbage or overflow. */
bool lx_str_to_u64(lx_str_t s, unsigned long long *out);

/* Whether comma-separated header value <s> contains token <tok> (case-insensitive). */
bool lx_str_has_token(lx_str_t s, const char *tok, size_t toklen);

#endif
