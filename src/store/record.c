/*
 * record.c - usage records (record.h): allocation and the UTF-8-safe string copy the request
 * path fills them with. Queueing and storage belong to the store (store.h).
 */
#include "store/record.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "store/store.h"

/* The number of bytes of <src> (<len>) kept in <cap>: cut back to a UTF-8 boundary. */
static size_t cut(const char *src, size_t len, size_t cap)
{
    if (len <= cap)
        return len;
    size_t n = cap, back = 0;
    while (back < 3 && n - back > 0 && ((unsigned char)src[n - back] & 0xC0) == 0x80)
        back++;
    return n - back;
}

void lx_record_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return;
    size_t n = cut(src, len, cap - 1);
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

/* Each field's cap in bytes (its NUL not counted); LX_RECORD_ARENA holds all of them at once. */
#define ATTEMPT_CAPS 63, 127, 127, 15 /* provider, endpoint, model, outcome */
const uint8_t lx_record_caps[LX_RF_SLOTS] = {
    39,           64,           63,           127,          127,
    63,           127,          11,           63,           127,
    127,          31,           95, /* id ... upstream_id */
    ATTEMPT_CAPS, ATTEMPT_CAPS, ATTEMPT_CAPS, ATTEMPT_CAPS, ATTEMPT_CAPS,
    ATTEMPT_CAPS, ATTEMPT_CAPS, ATTEMPT_CAPS,
};
_Static_assert(LX_RF_COUNT == 13 && LX_RA_COUNT == 4 && LX_RECORD_ATTEMPTS == 8,
               "lx_record_caps lists every field");
_Static_assert(LX_RECORD_ARENA >= 1 + 1077 + LX_RECORD_ATTEMPTS * 336,
               "the arena holds every string at its cap");

size_t lx_record_cap(unsigned field)
{
    return field < LX_RF_SLOTS ? lx_record_caps[field] : 0;
}

void lx_record_set_cut(lx_record_t *r, unsigned field, const char *src, size_t len)
{
    if (field >= LX_RF_SLOTS)
        return;
    size_t n = cut(src, len, lx_record_cap(field));
    size_t room = r->used < LX_RECORD_ARENA ? LX_RECORD_ARENA - r->used : 0;
    if (n == 0 || room < 2) { /* (the empty string, or no room left: set twice over) */
        r->str[field].off = 0;
        r->str[field].len = 0;
        return;
    }
    if (n > room - 1)
        n = cut(src, n, room - 1);
    char *dst = r->arena + r->used;
    memcpy(dst, src, n);
    dst[n] = '\0';
    r->str[field].off = r->used;
    r->str[field].len = (uint16_t)n;
    r->used = (uint16_t)(r->used + n + 1);
}

size_t lx_record_canon(char *dst, size_t cap, const char *src, size_t len)
{
    static const char fffd[] = "\xef\xbf\xbd";
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)src + i;
        size_t n = *p < 0x80 ? 1 : lx_str_utf8_len(p, len - i);
        size_t k = n != 0 ? n : sizeof(fffd) - 1;
        if (k > cap - 1 - o)
            break;
        memcpy(dst + o, n != 0 ? src + i : fffd, k);
        o += k;
        i += n != 0 ? n : 1;
    }
    dst[o] = '\0';
    return o;
}

/* Whether the arena's <used> bytes (every string of the record) are ASCII. */
static bool arena_ascii(const lx_record_t *r)
{
    size_t i = 0, n = r->used;
    uint64_t any = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, r->arena + i, 8);
        any |= w;
    }
    for (; i < n; i++)
        any |= (unsigned char)r->arena[i];
    return (any & UINT64_C(0x8080808080808080)) == 0;
}

/* The record's strings rebuilt into its arena from scratch, each in its canonical form cut to
 * its field's cap; a field whose source and form equal an earlier field's shares that copy. A
 * fresh arena has room for every field at its cap (LX_RECORD_ARENA), which appending the new
 * forms after the old ones did not: on a record near full, they were cut or lost. */
void lx_record_canonicalize(lx_record_t *r)
{
    if (arena_ascii(r)) /* (nearly every record: one pass, no field looked at) */
        return;
    char old[LX_RECORD_ARENA];
    lx_record_str_t was[LX_RF_SLOTS];
    memcpy(old, r->arena, r->used);
    memcpy(was, r->str, sizeof(was));
    r->used = 1; /* (arena[0]: the empty string, kept) */
    for (unsigned f = 0; f < LX_RF_SLOTS; f++) {
        r->str[f] = (lx_record_str_t){0, 0};
        if (was[f].len == 0)
            continue;
        char tmp[3 * 255 + 1]; /* (a cap is at most 255 bytes; each may become 3) */
        size_t n = lx_record_canon(tmp, lx_record_cap(f) + 1, old + was[f].off, was[f].len);
        unsigned g = 0;
        while (g < f && !(was[g].off == was[f].off && was[g].len == was[f].len &&
                          r->str[g].len == n && memcmp(lx_record_str(r, g), tmp, n) == 0))
            g++;
        if (g < f)
            r->str[f] = r->str[g];
        else
            lx_record_set_cut(r, f, tmp, n);
    }
}

void lx_record_share(lx_record_t *r, unsigned field, unsigned from)
{
    if (field >= LX_RF_SLOTS || from >= LX_RF_SLOTS)
        return;
    if (r->str[from].len <= lx_record_cap(field))
        r->str[field] = r->str[from];
    else /* (longer than the field keeps: a copy, cut, with its own NUL) */
        lx_record_set_cut(r, field, lx_record_str(r, from), r->str[from].len);
}

void lx_record_clear(lx_record_t *r)
{
    /* the numbers and places zeroed (each string the empty one at arena[0]); the arena is
     * written as strings are set, and only what they use is touched */
    memset(r, 0, offsetof(lx_record_t, arena));
    r->arena[0] = '\0';
    r->used = 1;
}

lx_record_t *lx_record_new(void)
{
    lx_record_t *r = malloc(sizeof(*r));
    if (r != NULL)
        lx_record_clear(r);
    return r;
}
