/*
 * prefix.h - the prompt-prefix hash: chained block hashes of a request's prompt, straight from
 * the body bytes, for prefix-affine routing (route/ring.h, route/fleet.h).
 *
 * The prompt is the span the body scan recorded (llm/body.h): the "messages" array from its
 * '[' (chat), else the "prompt" string's content or array (completions). Its raw bytes are the
 * identity: nothing is unescaped or re-serialized, so two requests share a block hash exactly
 * when they share those bytes - what a client that resends a conversation does turn after turn,
 * and every conversation opening with the same system prompt.
 *
 * Blocks of LX_PREFIX_BLOCK (256) bytes: block i covers prompt bytes [256 i, 256 (i + 1)) and
 * its hash chains the previous one, chain[i] = H(block i, seed = chain[i - 1]), chain[-1] =
 * the seed (the model's, lx_prefix_seed()), so chain[i] names the whole prefix
 * [0, 256 (i + 1)). At most LX_PREFIX_MAX_BLOCKS (64) blocks, 16 KiB: the system prompt and the
 * leading messages, where a conversation's shared prefix is; what follows is its newest turns.
 * A trailing partial block is not in the chain (GIE's approximate index does the same).
 *
 * Why 256 bytes: vLLM caches KV in blocks of 16 tokens, about 64 bytes of English; GIE's
 * estimated index hashes 64-byte blocks over 256 blocks. A 64-byte grain over our 64 blocks
 * would see only 4 KiB, less than one large system prompt; 256 bytes (about 64 tokens, 4 KV
 * blocks) sees 16 KiB with the same 512-byte chain, and a prefix-hit estimate at a 64-token
 * grain is as fine as routing needs. Each message's JSON framing (~30 bytes) stays small
 * beside it.
 *
 * Keys (which one routing uses):
 *   - key: the ring key, one per request (route/ring.h places it). chain[0], the hash of the
 *     prompt's first 256 bytes; a prompt shorter than one block is hashed whole. A system
 *     prompt of 256 bytes or more fills that block, so every conversation sharing it - and
 *     every turn of each - has the same key: they land on the replica that has it cached, and
 *     the fleet's KV holds each system prompt about once (llm-d's 73%-of-KV workload needs
 *     that partition). A shorter system prompt leaves room for the first user message in the
 *     block, so the key becomes per conversation (still the same for all its turns once the
 *     conversation reaches 256 bytes; a shorter one has nothing worth caching). Bounded loads
 *     spread a hot key over the next replicas of the ring.
 *   - stable: chain[stable_blocks - 1], the longest whole-block prefix ending before the last
 *     message (the turn that differs): for a prefix index keyed by whole conversations.
 *   - chain: all blocks, for a prefix-hit estimate (route/fleet.h: the leading blocks a
 *     replica is known to hold).
 *
 * Pure: no allocation, time linear in the bytes hashed (at most 16 KiB), about 0.1 ns a byte.
 */
#ifndef LX_PREFIX_H
#define LX_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/body.h"

#define LX_PREFIX_BLOCK      256
#define LX_PREFIX_MAX_BLOCKS 64

typedef struct lx_prefix {
    uint64_t key;           /* the ring key, never 0; 0 only when there is no prompt */
    uint64_t stable;        /* chain[stable_blocks - 1], 0 when stable_blocks is 0 */
    uint32_t n_blocks;      /* whole blocks in chain[] */
    uint32_t stable_blocks; /* of them, those that end at or before the last message's start */
    uint32_t len;           /* bytes of the prompt span */
    uint64_t chain[LX_PREFIX_MAX_BLOCKS]; /* chain[0, n_blocks), none of them 0 */
} lx_prefix_t;

/* The hash of <n> bytes at <p> with <seed>: 64 bits, every input bit reaching every output
 * bit. Deterministic on a host (words are read little-endian on x86-64 and arm64). */
uint64_t lx_prefix_hash(const void *p, size_t n, uint64_t seed);

/* The seed of a model's chains: requests for different models never share a block. */
uint64_t lx_prefix_seed(const char *model, size_t len);

/*
 * The chain of prompt <p> (<len> bytes) whose last message starts at byte <stable_len> of it
 * (<len> when the prompt has no messages), seeded with <seed>, over at most <max_blocks>
 * blocks (clamped to LX_PREFIX_MAX_BLOCKS; 1 computes the key alone). Fills *<out>.
 */
void lx_prefix_compute(const char *p, size_t len, size_t stable_len, uint64_t seed,
                       uint32_t max_blocks, lx_prefix_t *out);

/*
 * The chain of the prompt of <body>, which <scan> accepted: "messages" when recorded (its last
 * element is the last message), else "prompt" (an array's last element is its last entry; a
 * string has no messages: every whole block is stable). False, with out->key 0 and no blocks,
 * when the body has neither (embeddings, a prompt of another type).
 */
bool lx_prefix_of_body(const char *body, const lx_body_scan_t *scan, uint64_t seed,
                       uint32_t max_blocks, lx_prefix_t *out);

#endif
