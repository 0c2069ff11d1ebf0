/*
 * fuzz_load_metrics.c - libFuzzer target for the Prometheus load-metrics reader.
 *
 * Input: one byte n, then n % 8 bytes of model name, then the exposition text (copied to a
 * buffer of exactly its size, so a read past it is an ASan report). Checked: the return code
 * is one of three and only LX_LOAD_OK carries anything; a value whose flag is clear is 0;
 * KV use is at most 1,000,000 ppm; the model filter only removes series (its figures are at
 * most the unfiltered ones, its flags a subset) and the unfiltered read never reports a
 * model miss; the same text with every LF turned into CRLF reads the same; the unterminated
 * tail changes nothing. The whole input is also given to the value parser alone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route/load_metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HAS_ALL (LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV)

static void check_one(int rc, const lx_load_sample_t *s)
{
    if (rc != LX_LOAD_OK && rc != LX_LOAD_EMPTY && rc != LX_LOAD_NOT_PROMETHEUS)
        abort();
    if (rc != LX_LOAD_OK && (s->flags != 0 || s->family != LX_LOAD_FAMILY_NONE))
        abort();
    if (s->family > LX_LOAD_FAMILY_LLAMACPP || (s->flags & ~(HAS_ALL | LX_LOAD_MODEL_MISS)))
        abort();
    if ((!(s->flags & LX_LOAD_HAS_WAITING) && s->waiting != 0) ||
        (!(s->flags & LX_LOAD_HAS_RUNNING) && s->running != 0) ||
        (!(s->flags & LX_LOAD_HAS_KV) && s->kv_ppm != 0) || s->kv_ppm > 1000000)
        abort();
    if (s->family == LX_LOAD_FAMILY_NONE && (s->flags & HAS_ALL))
        abort();
}

static void same(const lx_load_sample_t *a, const lx_load_sample_t *b)
{
    if (a->waiting != b->waiting || a->running != b->running || a->kv_ppm != b->kv_ppm ||
        a->flags != b->flags || a->family != b->family || a->samples != b->samples ||
        a->skipped != b->skipped)
        abort();
}

static void check_crlf(const char *text, size_t len, const char *model, size_t mlen, int rc,
                       const lx_load_sample_t *s)
{
    char *w = malloc(2 * len + 1);
    if (w == NULL)
        return;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            w[n++] = '\r';
        w[n++] = text[i];
    }
    lx_load_sample_t c;
    if (lx_load_metrics_parse(w, n, model, mlen, &c) != rc)
        abort();
    same(s, &c);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    size_t mlen = data[0] % 8u;
    if (size < 1 + mlen)
        return 0;
    char model[8];
    memcpy(model, data + 1, mlen);
    size_t len = size - 1 - mlen;
    char *text = malloc(len > 0 ? len : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1 + mlen, len);

    lx_load_sample_t all, one;
    int rc_all = lx_load_metrics_parse(text, len, NULL, 0, &all);
    int rc_one = lx_load_metrics_parse(text, len, model, mlen, &one);
    check_one(rc_all, &all);
    check_one(rc_one, &one);
    if (rc_all != rc_one || all.family != one.family || all.samples != one.samples ||
        (all.flags & LX_LOAD_MODEL_MISS) || (one.flags & HAS_ALL & ~all.flags) ||
        one.waiting > all.waiting || one.running > all.running || one.kv_ppm > all.kv_ppm)
        abort();

    size_t complete = len; /* up to the last LF */
    while (complete > 0 && text[complete - 1] != '\n')
        complete--;
    lx_load_sample_t head;
    if (lx_load_metrics_parse(text, complete, model, mlen, &head) != rc_one)
        abort();
    same(&one, &head);
    check_crlf(text, len, model, mlen, rc_one, &one);

    uint64_t micro;
    int vrc = lx_load_value(text, len, &micro);
    if (vrc != LX_LOAD_VALUE_OK && micro != 0)
        abort();
    free(text);
    return 0;
}
