/*
 * record.c - usage records (record.h): allocation and the UTF-8-safe string copy the request
 * path fills them with. Queueing and storage belong to the store (store.h).
 */
#include "store/record.h"

#include <stddef.h>
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

uint64_t lx_record_seq_next(uint64_t *last_tick, uint64_t now_ms, unsigned lane)
{
    uint64_t tick = now_ms << 10;
    if (tick <= *last_tick)
        tick = *last_tick + 1;
    *last_tick = tick;
    return (tick << LX_RECORD_LANE_BITS) | (lane & ((1u << LX_RECORD_LANE_BITS) - 1));
}

static const char hexdig[] = "0123456789abcdef";

void lx_record_id_format(char *out, uint64_t seq)
{
    memcpy(out, "gen-", 4);
    for (int i = 0; i < 16; i++)
        out[4 + i] = hexdig[(seq >> (60 - 4 * i)) & 15];
    out[LX_RECORD_ID_LEN] = '\0';
}

bool lx_record_id_parse(const char *id, size_t len, uint64_t *seq)
{
    if (len != LX_RECORD_ID_LEN || memcmp(id, "gen-", 4) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 4; i < len; i++) {
        char c = id[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    if (v >> 63)
        return false;
    *seq = v;
    return true;
}

lx_record_t *lx_record_new(void)
{
    /* everything but the attempts zeroed: those below n_attempts are written whole, the others
     * are never read (3.4 KB of the 4.3 KB not written on every request) */
    lx_record_t *r = malloc(sizeof(*r));
    if (r != NULL) {
        memset(r, 0, offsetof(lx_record_t, attempts));
        r->pool = 0;
    }
    return r;
}
