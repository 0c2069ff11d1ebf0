/*
 * record.c - usage records (record.h): allocation and the UTF-8-safe string copy the request
 * path fills them with. Queueing and storage belong to the store (store.h).
 */
#include "store/record.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
static const uint8_t field_cap[LX_RF_COUNT] = {
    [LX_RF_ID] = 39,           [LX_RF_KEY_HASH] = 64, [LX_RF_KEY_NAME] = 63,
    [LX_RF_MODEL_ASKED] = 127, [LX_RF_MODEL] = 127,   [LX_RF_PROVIDER] = 63,
    [LX_RF_ENDPOINT] = 127,    [LX_RF_API] = 11,      [LX_RF_REQUEST_ID] = 63,
    [LX_RF_SESSION_ID] = 127,  [LX_RF_USER] = 127,    [LX_RF_FINISH_REASON] = 31,
    [LX_RF_UPSTREAM_ID] = 95,
};
static const uint8_t attempt_cap[LX_RA_COUNT] = {
    [LX_RA_PROVIDER] = 63, [LX_RA_ENDPOINT] = 127, [LX_RA_MODEL] = 127, [LX_RA_OUTCOME] = 15};
/* the record's field of an attempt's kind (its usual value: the attempt that served) */
static const uint8_t attempt_twin[LX_RA_COUNT] = {[LX_RA_PROVIDER] = LX_RF_PROVIDER,
                                                  [LX_RA_ENDPOINT] = LX_RF_ENDPOINT,
                                                  [LX_RA_MODEL] = LX_RF_MODEL,
                                                  [LX_RA_OUTCOME] = LX_RF_COUNT};

_Static_assert(LX_RECORD_ARENA >= 1 + 1077 + LX_RECORD_ATTEMPTS * 336,
               "the arena holds every string at its cap");

size_t lx_record_cap(unsigned field)
{
    if (field < LX_RF_COUNT)
        return field_cap[field];
    if (field < LX_RF_SLOTS)
        return attempt_cap[(field - LX_RF_COUNT) % LX_RA_COUNT];
    return 0;
}

/* A field already holding these <n> bytes that <field> may share, else -1: the model asked
 * for is most often the one served, and an attempt's provider, endpoint and model the
 * record's or the attempt's before. */
static int shared(const lx_record_t *r, unsigned field, const char *src, size_t n)
{
    unsigned cand[2] = {LX_RF_SLOTS, LX_RF_SLOTS};
    if (field == LX_RF_MODEL)
        cand[0] = LX_RF_MODEL_ASKED;
    else if (field >= LX_RF_COUNT) {
        unsigned kind = (field - LX_RF_COUNT) % LX_RA_COUNT;
        cand[0] = attempt_twin[kind];
        if (field >= LX_RF_COUNT + LX_RA_COUNT)
            cand[1] = field - LX_RA_COUNT;
    }
    for (int i = 0; i < 2; i++) {
        unsigned c = cand[i];
        if (c < LX_RF_SLOTS && r->str[c].len == n && n > 0 &&
            memcmp(r->arena + r->str[c].off, src, n) == 0)
            return (int)c;
    }
    return -1;
}

void lx_record_set(lx_record_t *r, unsigned field, const char *src, size_t len)
{
    if (field >= LX_RF_SLOTS)
        return;
    size_t n = cut(src, len, lx_record_cap(field));
    int twin = shared(r, field, src, n);
    if (twin >= 0) {
        r->str[field] = r->str[twin];
        return;
    }
    size_t room = r->used < LX_RECORD_ARENA ? LX_RECORD_ARENA - r->used : 0;
    if (n == 0 || room < 2) { /* (the empty string, or no room left: set twice over) */
        r->str[field].off = 0;
        r->str[field].len = 0;
        return;
    }
    if (n > room - 1)
        n = cut(src, n, room - 1);
    memcpy(r->arena + r->used, src, n);
    r->arena[r->used + n] = '\0';
    r->str[field].off = r->used;
    r->str[field].len = (uint16_t)n;
    r->used = (uint16_t)(r->used + n + 1);
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
