/*
 * prefix.c - the prompt-prefix hash (prefix.h).
 *
 * The hash: four 64-bit lanes take 32 bytes a round, each lane adding its word times one odd
 * constant, rotating and multiplying by another (the multiply carries every bit upward, the
 * rotation brings the high bits back down, so a difference cannot hide in the top bits); the
 * lanes fold together with the length and the tail, and a final xor-shift-multiply mixer
 * spreads every bit over the whole word. The seed starts the lanes, which is how a block's
 * hash chains its predecessor. A 256-byte block is 8 rounds: about 0.1 ns a byte.
 */
#include "llm/prefix.h"

#include <string.h>

#define K1 0x9e3779b97f4a7c15ull /* 2^64 / golden ratio, odd */
#define K2 0xd6e8feb86659fd93ull
#define K3 0xa0761d6478bd642full

static inline uint64_t rotl(uint64_t x, unsigned r)
{
    return x << r | x >> (64 - r);
}

static inline uint64_t word(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t lane(uint64_t acc, uint64_t w)
{
    return rotl(acc + w * K2, 31) * K1;
}

/* Every bit of <h> over the whole word (two xor-shift-multiply steps). */
static inline uint64_t finish(uint64_t h)
{
    h ^= h >> 32;
    h *= K3;
    h ^= h >> 29;
    h *= K2;
    h ^= h >> 32;
    return h;
}

uint64_t lx_prefix_hash(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t a = seed + K1, b = seed ^ K2, c = seed, d = seed - K3;
    size_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a = lane(a, word(p + k));
        b = lane(b, word(p + k + 8));
        c = lane(c, word(p + k + 16));
        d = lane(d, word(p + k + 24));
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + (uint64_t)n * K3;
    for (; k + 8 <= n; k += 8)
        h = rotl(h ^ lane(0, word(p + k)), 27) * K1 + K2;
    if (k < n) {
        unsigned char last[8] = {0};
        memcpy(last, p + k, n - k);
        h = rotl(h ^ lane(0, word(last)), 23) * K1 + K3;
    }
    return finish(h);
}

uint64_t lx_prefix_seed(const char *model, size_t len)
{
    return lx_prefix_hash(model, len, K3);
}

static inline uint64_t nonzero(uint64_t h)
{
    return h != 0 ? h : 1;
}

void lx_prefix_compute(const char *p, size_t len, size_t stable_len, uint64_t seed,
                       uint32_t max_blocks, lx_prefix_t *out)
{
    size_t whole = len / LX_PREFIX_BLOCK;
    uint32_t cap = max_blocks < LX_PREFIX_MAX_BLOCKS ? max_blocks : LX_PREFIX_MAX_BLOCKS;
    uint32_t n = whole < cap ? (uint32_t)whole : cap;
    uint64_t h = seed;
    for (uint32_t i = 0; i < n; i++) {
        h = nonzero(lx_prefix_hash(p + (size_t)i * LX_PREFIX_BLOCK, LX_PREFIX_BLOCK, h));
        out->chain[i] = h;
    }
    out->n_blocks = n;
    out->len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
    size_t stable = (stable_len < len ? stable_len : len) / LX_PREFIX_BLOCK;
    out->stable_blocks = stable < n ? (uint32_t)stable : n;
    out->stable = out->stable_blocks > 0 ? out->chain[out->stable_blocks - 1] : 0;
    /* a prompt under one block is its own key; an empty one still names "no prompt text" */
    out->key = n > 0 ? out->chain[0] : nonzero(lx_prefix_hash(p, len, seed));
}

bool lx_prefix_of_body(const char *body, const lx_body_scan_t *scan, uint64_t seed,
                       uint32_t max_blocks, lx_prefix_t *out)
{
    lx_body_span_t sp;
    size_t stable;
    if (scan->has_messages) {
        sp = scan->messages;
        stable = scan->n_messages > 0 ? scan->messages_last - sp.off : 0;
    } else if (scan->has_prompt) {
        sp = scan->prompt;
        stable = !scan->prompt_array ? sp.len : scan->n_prompt > 0 ? scan->prompt_last - sp.off : 0;
    } else {
        out->key = out->stable = 0;
        out->n_blocks = out->stable_blocks = out->len = 0;
        return false;
    }
    lx_prefix_compute(body + sp.off, sp.len, stable, seed, max_blocks, out);
    return true;
}
