/*
 * fuzz_mock_gpu_scan.c - libFuzzer target for the body scan of the mock's GPU mode
 * (test/mock/mock_gpu.c: the prompt's block hashes and max_tokens, one pass over the body as it
 * arrives).
 *
 * Byte 0 chooses the block size (1-64 tokens), bytes 1 and 2 two cuts of the rest, the body.
 * The body is scanned whole, in the three pieces the cuts make, and one byte at a time: the
 * three scans must agree on everything (prompt bytes, running hash, max_tokens, every block
 * hash). And against a plain reading: the prompt is what follows the first "messages" or
 * "prompt" key (memmem), and it makes prompt_bytes / block_bytes blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mock_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lx_mock_t mock; /* only gpu.cfg.block_tokens is read by the scan */

static void scan(lx_mock_gpu_seq_t *s, const char *p, size_t n, const size_t *cuts, size_t ncuts)
{
    lx_mock_gpu_begin(&mock, s);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        lx_mock_gpu_feed(s, p + at, end - at);
        at = end;
    }
    lx_mock_gpu_finish_body(s);
}

static void same(const lx_mock_gpu_seq_t *a, const lx_mock_gpu_seq_t *b)
{
    if (a->prompt_bytes != b->prompt_bytes || a->h != b->h || a->max_tokens != b->max_tokens ||
        a->nblocks != b->nblocks || a->fill != b->fill ||
        (a->nblocks && memcmp(a->blocks, b->blocks, a->nblocks * sizeof(*a->blocks)) != 0))
        abort();
}

/* Where the prompt starts by a plain reading: after the first complete key; n when none. */
static size_t prompt_start(const char *p, size_t n)
{
    static const char *const keys[] = {"\"messages\"", "\"prompt\""};
    size_t best = n;
    for (size_t k = 0; k < 2; k++) {
        size_t kl = strlen(keys[k]);
        const char *hit = memmem(p, n, keys[k], kl);
        if (hit && (size_t)(hit - p) + kl < best)
            best = (size_t)(hit - p) + kl;
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    mock.gpu.cfg.block_tokens = 1 + data[0] % 64;
    const char *p = (const char *)data + 3;
    size_t n = size - 3;
    size_t cuts[2] = {n ? data[1] % (n + 1) : 0, n ? data[2] % (n + 1) : 0};
    if (cuts[0] > cuts[1]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }
    lx_mock_gpu_seq_t whole = {0}, pieces = {0}, bytes = {0};
    scan(&whole, p, n, NULL, 0);
    scan(&pieces, p, n, cuts, 2);
    lx_mock_gpu_begin(&mock, &bytes);
    for (size_t i = 0; i < n; i++)
        lx_mock_gpu_feed(&bytes, p + i, 1);
    lx_mock_gpu_finish_body(&bytes);
    same(&whole, &pieces);
    same(&whole, &bytes);
    if (whole.prompt_bytes != n - prompt_start(p, n))
        abort();
    uint64_t bb = (uint64_t)mock.gpu.cfg.block_tokens * 4;
    if (whole.nblocks != whole.prompt_bytes / bb || whole.fill != whole.prompt_bytes % bb)
        abort();
    if (whole.max_tokens < -1)
        abort();
    lx_mock_gpu_seq_dispose(&whole);
    lx_mock_gpu_seq_dispose(&pieces);
    lx_mock_gpu_seq_dispose(&bytes);
    return 0;
}
