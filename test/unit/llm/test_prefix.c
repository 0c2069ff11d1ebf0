/*
 * test_prefix.c - the prompt-prefix hash: the chain's definition, the keys of conversations
 * and shared system prompts, the bounds, the hash's mixing, and its speed (printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "llm/body.h"
#include "llm/prefix.h"

#define SEED 0x1234u

/* A chat body: a system prompt of <sys_len> bytes of letter <sys_c>, then the <n> messages
 * <turns> (user, assistant, user, ...). Returns the malloc'd body, its scan in *<scan>. */
static char *chat(size_t sys_len, char sys_c, const char *const *turns, size_t n,
                  lx_body_scan_t *scan)
{
    size_t cap = sys_len + 256;
    for (size_t k = 0; k < n; k++)
        cap += strlen(turns[k]) + 64;
    char *b = malloc(cap);
    assert_non_null(b);
    size_t o =
        (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"");
    memset(b + o, sys_c, sys_len);
    o += sys_len;
    o += (size_t)sprintf(b + o, "\"}");
    for (size_t k = 0; k < n; k++)
        o += (size_t)sprintf(b + o, ",{\"role\":\"%s\",\"content\":\"%s\"}",
                             k % 2 == 0 ? "user" : "assistant", turns[k]);
    o += (size_t)sprintf(b + o, "],\"stream\":true}");
    assert_int_equal(lx_body_scan(b, o, scan), 0);
    return b;
}

static void of_body(const char *b, const lx_body_scan_t *scan, lx_prefix_t *p)
{
    assert_true(lx_prefix_of_body(b, scan, SEED, LX_PREFIX_MAX_BLOCKS, p));
}

/* chain[i] = H(block i, chain[i - 1]); the key is chain[0]; a trailing partial block is out. */
static void test_chain(void **state)
{
    (void)state;
    char text[1000];
    for (size_t k = 0; k < sizeof(text); k++)
        text[k] = (char)('a' + k * 7 % 26);
    lx_prefix_t p;
    lx_prefix_compute(text, sizeof(text), sizeof(text), SEED, 64, &p);
    assert_int_equal(p.n_blocks, 3);
    assert_int_equal(p.len, 1000);
    uint64_t h = SEED;
    for (int i = 0; i < 3; i++) {
        h = lx_prefix_hash(text + i * 256, 256, h);
        assert_true(p.chain[i] == h);
    }
    assert_true(p.key == p.chain[0]);
    assert_int_equal(p.stable_blocks, 3);
    assert_true(p.stable == p.chain[2]);
    /* the last message at byte 600: two whole blocks before it */
    lx_prefix_compute(text, sizeof(text), 600, SEED, 64, &p);
    assert_int_equal(p.stable_blocks, 2);
    assert_true(p.stable == p.chain[1]);
    lx_prefix_compute(text, sizeof(text), 255, SEED, 64, &p);
    assert_int_equal(p.stable_blocks, 0);
    assert_true(p.stable == 0);
    /* under one block: hashed whole, no chain */
    lx_prefix_compute(text, 100, 100, SEED, 64, &p);
    assert_int_equal(p.n_blocks, 0);
    assert_true(p.key == lx_prefix_hash(text, 100, SEED));
    assert_true(p.key != 0);
    /* the seed (the model) changes every hash */
    lx_prefix_t q;
    lx_prefix_compute(text, sizeof(text), sizeof(text), SEED + 1, 64, &q);
    for (int i = 0; i < 3; i++)
        assert_true(q.chain[i] != p.chain[i] || i >= (int)p.n_blocks);
    assert_true(lx_prefix_seed("a", 1) != lx_prefix_seed("b", 1));
}

/* At most max_blocks (and LX_PREFIX_MAX_BLOCKS) blocks are hashed; 1 gives the key alone. */
static void test_bounds(void **state)
{
    (void)state;
    size_t len = 40000;
    char *text = malloc(len);
    assert_non_null(text);
    for (size_t k = 0; k < len; k++)
        text[k] = (char)(k * 131 % 251);
    lx_prefix_t p, one;
    lx_prefix_compute(text, len, len, SEED, 1000, &p);
    assert_int_equal(p.n_blocks, LX_PREFIX_MAX_BLOCKS);
    assert_int_equal(p.stable_blocks, LX_PREFIX_MAX_BLOCKS);
    lx_prefix_compute(text, len, len, SEED, 1, &one);
    assert_int_equal(one.n_blocks, 1);
    assert_true(one.key == p.key);
    assert_true(one.stable == p.chain[0]);
    for (uint32_t i = 0; i < p.n_blocks; i++)
        assert_true(p.chain[i] != 0);
    free(text);
}

/* The turns of one conversation keep their key and extend each other's chain; conversations
 * that share a system prompt of a block or more share the key; different ones do not. */
static void test_conversation_keys(void **state)
{
    (void)state;
    static const char *const t1[] = {"What is the capital of France?"};
    static const char *const t2[] = {"What is the capital of France?", "Paris.",
                                     "And of Italy? Please answer at length."};
    static const char *const other[] = {"Write a poem about the sea."};
    lx_body_scan_t s1, s2, s3, s4;
    lx_prefix_t p1, p2, p3, p4;
    char *b1 = chat(2000, 'S', t1, 1, &s1);
    char *b2 = chat(2000, 'S', t2, 3, &s2);
    char *b3 = chat(2000, 'S', other, 1, &s3);
    char *b4 = chat(2000, 'T', t1, 1, &s4);
    of_body(b1, &s1, &p1);
    of_body(b2, &s2, &p2);
    of_body(b3, &s3, &p3);
    of_body(b4, &s4, &p4);
    assert_true(p1.key == p2.key); /* turns of one conversation */
    assert_true(p1.key == p3.key); /* the same system prompt */
    assert_true(p1.key != p4.key); /* another one */
    /* the last message (the user's turn) is outside the stable prefix */
    size_t last1 = s1.messages_last - s1.messages.off;
    assert_int_equal(p1.stable_blocks, last1 / LX_PREFIX_BLOCK);
    assert_true(p1.stable_blocks >= 7);
    assert_true(p2.stable_blocks >= p1.stable_blocks);
    for (uint32_t i = 0; i < p1.stable_blocks; i++)
        assert_true(p1.chain[i] == p2.chain[i] && p1.chain[i] == p3.chain[i]);
    assert_true(p1.stable == p3.stable);
    assert_true(p1.chain[0] != p4.chain[0]);
    free(b1);
    free(b2);
    free(b3);
    free(b4);

    /* a short system prompt: the first user message is in the key, which every later turn of
     * that conversation keeps */
    static const char *const long1[] = {
        "Please summarise the following report about the quarterly results of the company, "
        "paying attention to revenue, margins and the outlook for next year in every region of the "
        "world.",
        "Here is the summary.", "Thanks, now shorter."};
    static const char *const long2[] = {
        "Translate the following paragraph into German, keeping the technical vocabulary of the "
        "original intact and explaining any term that has no direct equivalent in a footnote."};
    b1 = chat(30, 'S', long1, 1, &s1);
    b2 = chat(30, 'S', long1, 3, &s2);
    b3 = chat(30, 'S', long2, 1, &s3);
    of_body(b1, &s1, &p1);
    of_body(b2, &s2, &p2);
    of_body(b3, &s3, &p3);
    assert_true(p1.key == p2.key);
    assert_true(p1.key != p3.key);
    assert_int_equal(p1.stable_blocks, 0);
    free(b1);
    free(b2);
    free(b3);
}

/* Completions: a string prompt's whole blocks are all stable; an array's end before its last
 * entry; a body without a prompt has no key. */
static void test_completions(void **state)
{
    (void)state;
    char body[2000];
    int o = sprintf(body, "{\"model\":\"m\",\"prompt\":\"");
    memset(body + o, 'x', 700);
    o += 700;
    o += sprintf(body + o, "\"}");
    lx_body_scan_t s;
    lx_prefix_t p;
    assert_int_equal(lx_body_scan(body, (size_t)o, &s), 0);
    of_body(body, &s, &p);
    assert_int_equal(p.len, 700);
    assert_int_equal(p.n_blocks, 2);
    assert_int_equal(p.stable_blocks, 2);
    uint64_t want = lx_prefix_hash(body + 23, 256, SEED);
    assert_true(p.key == want);

    o = sprintf(body, "{\"prompt\":[\"");
    memset(body + o, 'y', 600);
    o += 600;
    o += sprintf(body + o, "\",\"");
    memset(body + o, 'z', 300);
    o += 300;
    o += sprintf(body + o, "\"]}");
    assert_int_equal(lx_body_scan(body, (size_t)o, &s), 0);
    of_body(body, &s, &p);
    assert_int_equal(p.n_blocks, 3);
    assert_int_equal(p.stable_blocks, 2); /* the last entry starts at byte 604 */

    const char *emb = "{\"model\":\"m\",\"input\":\"hello\"}";
    assert_int_equal(lx_body_scan(emb, strlen(emb), &s), 0);
    assert_false(lx_prefix_of_body(emb, &s, SEED, 64, &p));
    assert_true(p.key == 0);
    assert_int_equal(p.n_blocks, 0);
    const char *empty = "{\"messages\":[]}";
    assert_int_equal(lx_body_scan(empty, strlen(empty), &s), 0);
    assert_true(lx_prefix_of_body(empty, &s, SEED, 64, &p));
    assert_true(p.key != 0);
    assert_int_equal(p.stable_blocks, 0);
}

/* Every bit of a block reaches the hash: one flipped input bit changes about half the output
 * bits (over the 2,048 bits of a block: mean within 32 +- 2, never fewer than 10). */
static void test_mixing(void **state)
{
    (void)state;
    unsigned char block[LX_PREFIX_BLOCK];
    for (size_t k = 0; k < sizeof(block); k++)
        block[k] = (unsigned char)(k * 37 + 11);
    uint64_t base = lx_prefix_hash(block, sizeof(block), SEED);
    unsigned total = 0, least = 64;
    for (size_t bit = 0; bit < sizeof(block) * 8; bit++) {
        block[bit / 8] ^= (unsigned char)(1u << bit % 8);
        unsigned d =
            (unsigned)__builtin_popcountll(base ^ lx_prefix_hash(block, sizeof(block), SEED));
        block[bit / 8] ^= (unsigned char)(1u << bit % 8);
        total += d;
        least = d < least ? d : least;
    }
    double mean = (double)total / (sizeof(block) * 8);
    printf("prefix hash: mean %.2f output bits change per input bit, least %u\n", mean, least);
    assert_true(mean > 30.0 && mean < 34.0);
    assert_true(least >= 10);
    /* the seed and the length count too */
    for (unsigned s = 0; s < 64; s++)
        assert_true(lx_prefix_hash(block, sizeof(block), SEED ^ (1ull << s)) != base);
    assert_true(lx_prefix_hash(block, 255, SEED) != lx_prefix_hash(block, 256, SEED));
    unsigned char zeros[16] = {0};
    assert_true(lx_prefix_hash(zeros, 15, 0) != lx_prefix_hash(zeros, 16, 0));
}

/* Speed, printed (not asserted): ns per KiB over a 16 KiB prompt. */
static void test_speed(void **state)
{
    (void)state;
    size_t len = LX_PREFIX_BLOCK * LX_PREFIX_MAX_BLOCKS;
    char *text = malloc(len);
    assert_non_null(text);
    for (size_t k = 0; k < len; k++)
        text[k] = (char)(k * 13 % 95 + 32);
    lx_prefix_t p;
    uint64_t sink = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rounds = 2000;
    for (int r = 0; r < rounds; r++) {
        text[r % len] ^= 1;
        lx_prefix_compute(text, len, len, SEED, LX_PREFIX_MAX_BLOCKS, &p);
        sink ^= p.stable;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("prefix chain: %.1f ns per KiB (%d x 16 KiB, %s)\n", ns / rounds / 16.0, rounds,
           sink ? "ok" : "ok.");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_conversation_keys),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_mixing),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
