/*
 * fuzz_http_response.c - arbitrary bytes from an upstream into the response parser.
 *
 * The input is fed in pieces whose sizes come from the input itself, every piece in its own
 * chunk, as an upstream connection would read them. Body slices are checked to lie inside the
 * chunk they are reported in.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_head(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static int on_body(lx_http_client_t *hc, lx_buf_t *b, const char *at, size_t len)
{
    (void)hc;
    if (at < b->data || at + len > b->data + b->len)
        abort();
    return 0;
}

static int on_complete(lx_http_client_t *hc)
{
    (void)hc;
    return 0;
}

static const lx_http_client_cbs_t cbs = {on_head, on_body, on_complete};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_http_client_t hc;
    lx_http_client_init(&hc, &cbs, 8192, NULL);
    size_t off = 0;
    while (off < size) {
        size_t piece = 1 + (data[off] % 64);
        if (piece > size - off)
            piece = size - off;
        lx_buf_t *b = lx_buf_new(piece);
        if (b == NULL)
            return 0;
        memcpy(b->data, data + off, piece);
        b->len = (uint32_t)piece;
        int rc = lx_http_client_parse(&hc, b, b->data, piece);
        lx_buf_unref(b);
        off += piece;
        if (rc != 0)
            return 0;
    }
    lx_http_client_eof(&hc);
    return 0;
}
