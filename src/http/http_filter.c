/*
 * http_filter.c - the client headers a proxy does not copy upstream (see http_filter.h).
 *
 * Runs for every header of every proxied request: names are looked up by length first, so a
 * header is compared with at most three names, and compared eight bytes at a time.
 */
#include "http/http_filter.h"

#include <stdint.h>
#include <string.h>

/* Eight bytes of <s> with ASCII upper case lowered (exactly: other bytes unchanged). */
static uint64_t lower8(const char *s)
{
    uint64_t x;
    memcpy(&x, s, 8);
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t seven = x & ~high;                  /* each byte's low seven bits */
    uint64_t ge_a = seven + ones * (0x80 - 'A'); /* high bit: >= 'A' */
    uint64_t gt_z = seven + ones * (0x7f - 'Z'); /* high bit: > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~x & high;   /* ... and an ASCII byte */
    return x | (upper >> 2);                     /* 0x80 >> 2 = 0x20 */
}

bool lx_http_name_is(const char *s, const char *lower, size_t len)
{
    if (len < 8) {
        for (size_t i = 0; i < len; i++) {
            unsigned c = (unsigned char)s[i];
            if (c - 'A' < 26u)
                c += 32;
            if (c != (unsigned char)lower[i])
                return false;
        }
        return true;
    }
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, lower + i, 8);
        if (lower8(s + i) != w)
            return false;
    }
    if (i == len)
        return true;
    uint64_t w; /* the tail: the last eight bytes, overlapping */
    memcpy(&w, lower + len - 8, 8);
    return lower8(s + len - 8) == w;
}

/* A flat table by name length: the names not forwarded. */
bool lx_http_forwardable(lx_str_t name)
{
#define SKIP(lit) lx_http_name_is(name.ptr, lit, sizeof(lit) - 1)
    bool skip;
    switch (name.len) {
    case 2:
        return !SKIP("te");
    case 4:
        return !SKIP("host");
    case 6:
        return !SKIP("expect") && !SKIP("cookie");
    case 7:
        return !SKIP("trailer") && !SKIP("upgrade");
    case 10:
        skip = SKIP("connection") || SKIP("keep-alive");
        break;
    case 12:
        skip = SKIP("x-request-id") || SKIP("content-type") || SKIP("x-session-id");
        break;
    case 13:
        skip = SKIP("authorization");
        break;
    case 14:
        skip = SKIP("content-length");
        break;
    case 15:
        skip = SKIP("accept-encoding");
        break;
    case 16:
        skip = SKIP("proxy-connection") || SKIP("content-encoding");
        break;
    case 17:
        skip = SKIP("transfer-encoding");
        break;
    case 19:
        skip = SKIP("proxy-authorization");
        break;
    default:
        skip = false;
        break;
    }
    if (skip)
        return false;
#undef SKIP
    /* llmux's own headers (x-llmux-*: 8 characters and more) */
    return name.len < 8 || !lx_http_name_is(name.ptr, "x-llmux-", 8);
}
