/*
 * fuzz_key_json.c - libFuzzer target for the management API's JSON (account/key_json.h).
 *
 * The input is a POST or PATCH body, read in both modes. A refusal must leave the input empty
 * and say why; an acceptance must hold only what the rules allow (a name of 1..256 bytes of
 * text, at most 64 models, a provider object of at most 4096 bytes, limits in range, a name
 * for a create). The key made from an accepted body is then written out, and the answer must
 * be one valid JSON object of valid UTF-8, which the reader reads back the same. The input's
 * bytes are also laid over a usage record (the booleans made valid), whose generation must be
 * valid JSON too: the writers' escaping on hostile strings.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "account/key_json.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/str.h"
#include "store/money.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t fixed_now(void *arg)
{
    (void)arg;
    return INT64_C(1767225600) * 1000000; /* 2026-01-01 */
}

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = lx_str_utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* One JSON object, all of <s>, valid UTF-8. */
static void check_json(const char *s, size_t n)
{
    if (s == NULL)
        abort();
    if (strlen(s) != n || !utf8_ok(s, n))
        abort();
    lx_json_t j;
    lx_json_token_t t, close;
    lx_json_init(&j, s, n, 64);
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT || !lx_json_skip(&j, &t, &close) ||
        lx_json_next(&j, &t) != LX_JSON_NONE || j.error != LX_JSON_OK)
        abort();
}

static void check_input(const lx_key_input_t *in, enum lx_key_json_mode mode)
{
    if (mode == LX_KEY_JSON_CREATE && in->name == NULL)
        abort();
    if (in->name != NULL) {
        size_t n = strlen(in->name);
        if (n == 0 || n > LX_KEY_NAME_MAX || !utf8_ok(in->name, n))
            abort();
    }
    if (in->n_models > LX_KEY_MODELS_MAX || (in->has_limit && in->limit > LX_MONEY_MAX) ||
        in->limit < 0 || in->rpm > 1000000000 || in->tpm > 1000000000 ||
        in->concurrency > 1000000000)
        abort();
    for (size_t i = 0; i < in->n_models; i++) {
        size_t n = strlen(in->models[i]);
        if (n == 0 || n > LX_KEY_MODEL_MAX)
            abort();
    }
    if (in->provider != NULL) {
        size_t n = strlen(in->provider);
        if (n > LX_KEY_PROVIDER_MAX)
            abort();
        check_json(in->provider, n);
    }
    if (mode == LX_KEY_JSON_UPDATE && (in->set & LX_KEY_F_EXPIRES))
        abort();
}

static void write_back(const lx_key_input_t *in)
{
    lx_key_view_t v;
    memset(&v, 0, sizeof(v));
    v.key.name = in->name;
    v.key.disabled = in->disabled;
    v.key.limits.has_limit = in->has_limit;
    v.key.limits.limit = in->limit;
    v.key.limits.limit_reset = in->limit_reset;
    v.key.limits.rpm = in->rpm;
    v.key.limits.tpm = in->tpm;
    v.key.limits.concurrency = in->concurrency;
    v.key.expires_at = in->expires_at;
    v.key.models = in->models;
    v.key.n_models = in->n_models;
    v.key.provider = in->provider;
    v.limit_remaining = in->has_limit ? in->limit : -1;
    size_t len;
    char *s = lx_key_json_one(&v, "sk-lx-v1-x", &len);
    check_json(s, len);
    free(s);
    s = lx_key_json_current(&v, false, &len);
    check_json(s, len);
    free(s);
}

/* A record from the input: each string field in turn (a length byte, then that many bytes;
 * a length byte of 0xff shares the field before instead), then the numbers from what is left,
 * so that short inputs reach the strings; then written as /generation's JSON. */
static void generation(const uint8_t *data, size_t size)
{
    lx_record_t r;
    lx_record_clear(&r);
    size_t off = 1;
    for (unsigned f = 0; f < LX_RF_SLOTS && off < size; f++) {
        size_t n = data[off++];
        if (n == 0xff && f > 0) {
            lx_record_share(&r, f, f - 1);
            continue;
        }
        if (n > size - off)
            n = size - off;
        lx_record_set(&r, f, (const char *)data + off, n);
        off += n;
    }
    int64_t nums[8] = {0};
    for (size_t i = 0; i < 8 && off < size; i++, off += 8) {
        uint8_t b[8] = {0};
        memcpy(b, data + off, size - off < 8 ? size - off : 8);
        memcpy(&nums[i], b, 8);
    }
    r.created_at_us = nums[0];
    r.prompt_tokens = nums[1];
    r.completion_tokens = nums[2];
    r.cached_tokens = nums[3];
    r.reasoning_tokens = nums[4];
    r.cost = nums[5];
    r.reserved = nums[6];
    r.latency_ms = (uint32_t)nums[7];
    r.ttft_ms = (uint32_t)((uint64_t)nums[7] >> 32);
    r.generation_ms = (uint32_t)nums[6];
    r.status = (int16_t)nums[5];
    r.n_attempts = data[0];
    for (unsigned i = 0; i < LX_RECORD_ATTEMPTS; i++) {
        r.att_status[i] = (int16_t)((uint64_t)nums[i] >> 16);
        r.att_ms[i] = (uint32_t)nums[i];
    }
    r.usage_known = (data[0] & 1) != 0;
    r.streamed = (data[0] & 2) != 0;
    r.cancelled = (data[0] & 4) != 0;
    size_t len;
    char *s = lx_key_json_generation(&r, &len);
    check_json(s, len);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    lx_clock_override(fixed_now, NULL);
    const char *body = (const char *)data;
    for (int mode = LX_KEY_JSON_CREATE; mode <= LX_KEY_JSON_UPDATE; mode++) {
        lx_key_input_t in;
        char err[160];
        err[0] = '\0';
        int rc = lx_key_json_parse(body, size, (enum lx_key_json_mode)mode, &in, err, sizeof(err));
        if (rc != 0) {
            if (err[0] == '\0' || in.set != 0 || in.name != NULL || in.models != NULL ||
                in.provider != NULL)
                abort();
            continue;
        }
        check_input(&in, (enum lx_key_json_mode)mode);
        write_back(&in);
        lx_key_input_dispose(&in);
    }
    if (size > 0)
        generation(data, size);
    return 0;
}
