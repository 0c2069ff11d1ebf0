/*
 * record.c - usage records (record.h): allocation and the UTF-8-safe string copy the request
 * path fills them with. Queueing and storage belong to the store (store.h).
 */
#include "store/record.h"

#include <stdlib.h>
#include <string.h>

#include "store/store.h"

void lx_record_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return;
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n < len) {
        /* src[n] is the first byte left out: while it continues a sequence, move the cut back
         * to that sequence's lead byte (at most three steps: a sequence has four bytes at most) */
        size_t back = 0;
        while (back < 3 && n - back > 0 && ((unsigned char)src[n - back] & 0xC0) == 0x80)
            back++;
        n -= back;
    }
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

lx_record_t *lx_record_new(void)
{
    return calloc(1, sizeof(lx_record_t));
}
