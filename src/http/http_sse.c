/*
 * http_sse.c - Server-Sent Events framing (see http_sse.h).
 */
#include "http/http_sse.h"

#include <string.h>

#include "core/status.h"

int lx_sse_event(char *buf, size_t cap, const char *payload, size_t len)
{
    if (len > 0 && memchr(payload, '\r', len) != NULL)
        return LX_EPARSE;
    size_t o = 0, i = 0;
    for (;;) { /* one "data: " line per line of the payload, the last one too when empty */
        const char *lf = len > i ? memchr(payload + i, '\n', len - i) : NULL;
        size_t n = lf != NULL ? (size_t)(lf - (payload + i)) : len - i;
        if (cap - o < LX_SSE_DATA_LEN + n + 1)
            return LX_ETOOBIG;
        memcpy(buf + o, LX_SSE_DATA, LX_SSE_DATA_LEN);
        if (n > 0)
            memcpy(buf + o + LX_SSE_DATA_LEN, payload + i, n);
        o += LX_SSE_DATA_LEN + n;
        buf[o++] = '\n';
        if (lf == NULL)
            break;
        i += n + 1;
    }
    if (cap - o < 1)
        return LX_ETOOBIG;
    buf[o++] = '\n';
    return (int)o;
}

int lx_sse_comment(char *buf, size_t cap, const char *text, size_t len)
{
    if (len > 0 && (memchr(text, '\r', len) != NULL || memchr(text, '\n', len) != NULL))
        return LX_EPARSE;
    if (cap < len + 4)
        return LX_ETOOBIG;
    memcpy(buf, ": ", 2);
    if (len > 0)
        memcpy(buf + 2, text, len);
    memcpy(buf + 2 + len, "\n\n", 2);
    return (int)(len + 4);
}
