/*
 * http_build.c - request heads written into a chunk (see http_build.h).
 */
#include "http/http_build.h"

#include <string.h>

#include "core/status.h"

void lx_http_build_request(lx_http_build_t *hb, lx_buf_t *b, const char *method, const char *path,
                           size_t path_len, const char *host, int64_t content_length)
{
    hb->b = b;
    hb->sb = lx_strbuf_make(lx_buf_tail(b), lx_buf_avail(b));
    lx_strbuf_str(&hb->sb, method);
    LX_STRBUF_LIT(&hb->sb, " ");
    lx_strbuf_mem(&hb->sb, path, path_len);
    LX_STRBUF_LIT(&hb->sb, " HTTP/1.1\r\nHost: ");
    lx_strbuf_str(&hb->sb, host);
    LX_STRBUF_LIT(&hb->sb, "\r\n");
    if (content_length >= 0) {
        LX_STRBUF_LIT(&hb->sb, "Content-Length: ");
        lx_strbuf_u64(&hb->sb, (uint64_t)content_length);
        LX_STRBUF_LIT(&hb->sb, "\r\n");
    }
}

int lx_http_build_end(lx_http_build_t *hb)
{
    LX_STRBUF_LIT(&hb->sb, "\r\n");
    if (hb->sb.overflow)
        return LX_ETOOBIG;
    hb->b->len += (uint32_t)lx_strbuf_len(&hb->sb, lx_buf_tail(hb->b));
    return 0;
}

int lx_http_authority(char *buf, size_t cap, const char *host, unsigned port, unsigned default_port)
{
    if (cap == 0)
        return LX_ETOOBIG;
    lx_strbuf_t sb = lx_strbuf_make(buf, cap - 1); /* (room for the NUL) */
    bool v6 = strchr(host, ':') != NULL;
    if (v6)
        LX_STRBUF_LIT(&sb, "[");
    lx_strbuf_str(&sb, host);
    if (v6)
        LX_STRBUF_LIT(&sb, "]");
    if (port != default_port) {
        LX_STRBUF_LIT(&sb, ":");
        lx_strbuf_u64(&sb, port);
    }
    *sb.p = '\0';
    return sb.overflow ? LX_ETOOBIG : 0;
}
