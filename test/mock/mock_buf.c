/*
 * mock_buf.c - growable byte buffers for the mock server.
 *
 * Each connection keeps its buffers (pending output, in-flight output, the raw request record)
 * across requests, so a steady stream of small requests allocates nothing.
 */
#include "mock_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lx_mock_buf_reserve(lx_mock_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t need = b->len + extra;
    if (need < b->len)
        return UV_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return UV_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return UV_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int lx_mock_buf_append(lx_mock_buf_t *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (lx_mock_buf_reserve(b, n) < 0)
        return UV_ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

int lx_mock_buf_printf(lx_mock_buf_t *b, const char *fmt, ...)
{
    if (lx_mock_buf_reserve(b, 128) < 0)
        return UV_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return UV_EINVAL;
    if ((size_t)n >= b->cap - b->len) {
        if (lx_mock_buf_reserve(b, (size_t)n + 1) < 0)
            return UV_ENOMEM;
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return UV_EINVAL;
    }
    b->len += (size_t)n;
    return 0;
}

void lx_mock_buf_dispose(lx_mock_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}
