/*
 * api_error.c - the error envelope, status tables and JSON string escaping.
 *
 * Pure functions over caller buffers: no allocation, no state. Every error answer llmux makes
 * (auth failures, bad bodies, no route, upstream failures surfaced by the proxy finalizer) is
 * formatted here, and the other gateway modules use the escaper whenever they write a JSON
 * string (models list, spliced model ids).
 */
#include "gateway/api_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"

/* Length of the well-formed UTF-8 sequence starting at s (1..4), or 0 when the bytes there are
 * not one (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t avail)
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

/* The escaped form of one character at s: writes it into tmp (at least 6 bytes) and returns its
 * length; *in receives the number of input bytes it stands for. Valid multi-byte UTF-8 is not
 * copied to tmp: *direct is set and the caller copies the input bytes. */
static size_t escape_one(const unsigned char *s, size_t avail, char *tmp, size_t *in, bool *direct)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    *in = 1;
    *direct = false;
    switch (c) {
    case '"':
        memcpy(tmp, "\\\"", 2);
        return 2;
    case '\\':
        memcpy(tmp, "\\\\", 2);
        return 2;
    case '\b':
        memcpy(tmp, "\\b", 2);
        return 2;
    case '\f':
        memcpy(tmp, "\\f", 2);
        return 2;
    case '\n':
        memcpy(tmp, "\\n", 2);
        return 2;
    case '\r':
        memcpy(tmp, "\\r", 2);
        return 2;
    case '\t':
        memcpy(tmp, "\\t", 2);
        return 2;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
        memcpy(tmp, "\\u00", 4);
        tmp[4] = hex[c >> 4];
        tmp[5] = hex[c & 0xf];
        return 6;
    }
    if (c < 0x80) {
        tmp[0] = (char)c;
        return 1;
    }
    size_t n = utf8_len(s, avail);
    if (n == 0) {
        memcpy(tmp, "\xef\xbf\xbd", 3); /* U+FFFD for one bad byte */
        return 3;
    }
    *in = n;
    *direct = true;
    return n;
}

size_t lx_api_error_escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        char tmp[8];
        size_t in;
        bool direct;
        size_t n = escape_one(u + i, len - i, tmp, &in, &direct);
        if (n > cap - o)
            break;
        memcpy(out + o, direct ? s + i : tmp, n);
        o += n;
        i += in;
    }
    if (consumed != NULL)
        *consumed = i;
    return o;
}

size_t lx_api_error_escaped_len(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        char tmp[8];
        size_t in;
        bool direct;
        o += escape_one(u + i, len - i, tmp, &in, &direct);
        i += in;
    }
    return o;
}

const char *lx_api_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 408:
    case 504:
    case 524:
        return "timeout_error";
    case 429:
        return "rate_limit_error";
    default:
        break;
    }
    if (status >= 500)
        return "server_error";
    return "invalid_request_error";
}

const char *lx_api_error_default_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request";
    case 401:
        return "authentication";
    case 402:
        return "payment_required";
    case 403:
        return "permission_denied";
    case 404:
        return "not_found";
    case 408:
    case 504:
    case 524:
        return "timeout";
    case 412:
        return "precondition_failed";
    case 413:
    case 431:
        return "payload_too_large";
    case 422:
        return "unprocessable";
    case 429:
        return "rate_limit_exceeded";
    case 502:
        return "provider_unavailable";
    case 503:
    case 529:
        return "provider_overloaded";
    default:
        break;
    }
    if (status >= 400 && status < 500)
        return "invalid_request";
    if (status >= 500 && status < 600)
        return "server";
    return "unmapped";
}

int lx_api_error_format(char *buf, size_t cap, int status, const char *error_type,
                        const char *message, size_t message_len)
{
    return lx_api_error_format_meta(buf, cap, status, error_type, message, message_len, NULL, 0);
}

int lx_api_error_format_meta(char *buf, size_t cap, int status, const char *error_type,
                             const char *message, size_t message_len, const char *meta,
                             size_t meta_len)
{
    if (error_type == NULL)
        error_type = lx_api_error_default_type(status);
    if (message == NULL)
        message_len = 0;
    if (meta == NULL)
        meta_len = 0;
    const char *type = lx_api_error_type(status);

    /* The envelope around the message; error_type is escaped like any string (it is one of the
     * static names in practice, so 64 bytes hold it). */
    char etype[64];
    size_t etype_len =
        lx_api_error_escape(etype, sizeof(etype), error_type, strlen(error_type), NULL);
    char head[64];
    int head_len = snprintf(head, sizeof(head), "{\"error\":{\"code\":%d,\"message\":\"", status);
    char tail[192];
    int tail_len =
        snprintf(tail, sizeof(tail), "\",\"type\":\"%s\",\"metadata\":{\"error_type\":\"%.*s\"",
                 type, (int)etype_len, etype);
    if (head_len < 0 || tail_len < 0 || (size_t)head_len >= sizeof(head) ||
        (size_t)tail_len >= sizeof(tail))
        return LX_ETOOBIG;
    size_t extra = meta_len > 0 ? meta_len + 1 : 0;                     /* ",<meta>" */
    size_t fixed = (size_t)head_len + (size_t)tail_len + extra + 3 + 1; /* "}}}" + NUL */
    if (cap < fixed)
        return LX_ETOOBIG;

    size_t room = cap - fixed;
    memcpy(buf, head, (size_t)head_len);
    size_t o = (size_t)head_len;
    size_t consumed;
    size_t n = lx_api_error_escape(buf + o, room, message, message_len, &consumed);
    if (consumed < message_len) {
        /* Cut: redo with room for the ellipsis so the reader sees the message was shortened. */
        n = room >= 3 ? lx_api_error_escape(buf + o, room - 3, message, message_len, NULL) : 0;
        if (room >= 3) {
            memcpy(buf + o + n, "...", 3);
            n += 3;
        }
    }
    o += n;
    memcpy(buf + o, tail, (size_t)tail_len);
    o += (size_t)tail_len;
    if (meta_len > 0) {
        buf[o++] = ',';
        memcpy(buf + o, meta, meta_len);
        o += meta_len;
    }
    memcpy(buf + o, "}}}", 3);
    o += 3;
    buf[o] = '\0';
    return (int)o;
}
