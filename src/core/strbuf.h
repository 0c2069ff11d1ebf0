/*
 * strbuf.h - appending text into a fixed buffer without printf.
 *
 * The request path formats heads and log lines for every request; snprintf's generality
 * (locale, format parsing, floating point) was a third of llmux's user-space instructions per
 * request. These appenders do only what those lines need. A buffer that runs out of room
 * stops growing and says so (overflow); nothing is ever written past its end.
 */
#ifndef LX_STRBUF_H
#define LX_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct lx_strbuf {
    char *p;   /* next byte to write */
    char *end; /* one past the last byte of the buffer */
    bool overflow;
} lx_strbuf_t;

static inline lx_strbuf_t lx_strbuf_make(char *buf, size_t cap)
{
    lx_strbuf_t sb = {buf, buf + cap, false};
    return sb;
}

static inline void lx_strbuf_mem(lx_strbuf_t *sb, const void *s, size_t len)
{
    if ((size_t)(sb->end - sb->p) < len) {
        sb->overflow = true;
        return;
    }
    memcpy(sb->p, s, len);
    sb->p += len;
}

/* Appends a string literal. */
#define LX_STRBUF_LIT(sb, lit) lx_strbuf_mem((sb), (lit), sizeof(lit) - 1)

static inline void lx_strbuf_str(lx_strbuf_t *sb, const char *s)
{
    lx_strbuf_mem(sb, s, strlen(s));
}

/* Decimal of <v>. */
void lx_strbuf_u64(lx_strbuf_t *sb, uint64_t v);
void lx_strbuf_i64(lx_strbuf_t *sb, int64_t v);

/* Lower-case hexadecimal of <v>, at least <width> digits (zero-padded). */
void lx_strbuf_hex(lx_strbuf_t *sb, uint64_t v, unsigned width);

/* <v> with exactly <decimals> digits after the point (0..9), rounded; negative as "-". */
void lx_strbuf_fixed(lx_strbuf_t *sb, double v, unsigned decimals);

static inline size_t lx_strbuf_len(const lx_strbuf_t *sb, const char *start)
{
    return (size_t)(sb->p - start);
}

#endif
