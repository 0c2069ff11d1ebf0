/*
 * fuzz_sse_scan.c - libFuzzer target for the streamed-response scanner.
 *
 * The first two bytes choose where the rest is cut in two reads (each in its own chunk). Run
 * untouched (no model, no drop), the output must be the input exactly, in slices that are
 * exactly the read ranges. Run with the rewrite (a model needing escapes) and the drop on, in
 * two reads and then in small reads, nothing may crash or leak, slices must stay inside their
 * chunks, and what the scanner observed must not depend on the rewrite or the read boundaries.
 * Every input is run twice: as an event stream and as a plain JSON answer (JSON mode). The
 * rewritten output of one whole read (where whole answers and whole events are read
 * structurally) must equal that of the small reads (where they never are): in JSON mode, and
 * in an event stream without the drop. The short reading of usage objects must agree with the
 * reference reading on core/json wherever it accepts: on the input itself and on every usage
 * object the scanner kept. And an answer that core/json reads as one JSON object is read by the
 * scanner as core/json reads it (check_answer()): the model replaced, the usage object kept,
 * finish_reason (and the value kept) and error seen where the tokens say.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "llm/sse_scan.h"
#include "llm/sse_usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char new_model[] = "fuzz/m\\\"od\\\\el";

/* Output bytes of one run; malloc'd, length in *out_len. */
static bool json_mode;

static char *run(const char *in, size_t len, const size_t *cuts, size_t ncuts, const char *model,
                 bool drop, lx_sse_scan_t *obs, size_t *out_len)
{
    lx_sse_scan_t s;
    size_t mlen = model ? strlen(model) : 0;
    /* the rewritten runs take the literal's chunk from a pool, as the gateway does */
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    lx_buf_pool_t *pp = model != NULL ? &pool : NULL;
    if ((json_mode ? lx_sse_scan_init_json(&s, model, mlen, pp)
                   : lx_sse_scan_init(&s, model, mlen, drop, pp)) != 0)
        abort();
    char *acc = malloc(len * 4 + 64 + 1);
    if (acc == NULL)
        abort();
    size_t acc_len = 0, acc_cap = len * 4 + 64;
    lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
    lx_buf_t *lit = s.lit;
    size_t start = 0;
    for (size_t p = 0; p <= ncuts; p++) {
        size_t end = p < ncuts ? cuts[p] : len;
        size_t plen = end - start;
        lx_buf_t *b = lx_buf_new(plen + 1);
        if (b == NULL)
            abort();
        b->data[0] = '#';
        memcpy(b->data + 1, in + start, plen);
        b->len = (uint32_t)(plen + 1);
        size_t done = 0;
        int n;
        do {
            size_t used = 0;
            n = lx_sse_scan_feed(&s, b, b->data + 1 + done, plen - done, out, LX_SSE_SCAN_MAX_OUT,
                                 &used);
            if (n < 0 || (used == 0 && done < plen))
                abort();
            if (model == NULL && !drop &&
                (n != (used ? 1 : 0) ||
                 (n == 1 && (out[0].buf != b || out[0].off != 1 + done || out[0].len != used))))
                abort();
            for (int k = 0; k < n; k++) {
                if (out[k].len == 0 || (out[k].buf != lit && out[k].off < 1) ||
                    (size_t)out[k].off + out[k].len > out[k].buf->len)
                    abort();
                /* a held slice may reference an earlier chunk: never compare them here */
                if (acc_len + out[k].len > acc_cap) {
                    acc_cap = (acc_len + out[k].len) * 2;
                    acc = realloc(acc, acc_cap + 1);
                    if (acc == NULL)
                        abort();
                }
                memcpy(acc + acc_len, lx_slice_ptr(&out[k]), out[k].len);
                acc_len += out[k].len;
                lx_buf_unref(out[k].buf);
            }
            done += used;
        } while (done < plen);
        lx_buf_unref(b); /* held slices keep it alive */
        start = end;
    }
    int n = lx_sse_scan_flush(&s, out, LX_SSE_SCAN_MAX_OUT);
    if (n < 0)
        abort();
    for (int k = 0; k < n; k++) {
        if (acc_len + out[k].len > acc_cap) {
            acc_cap = (acc_len + out[k].len) * 2;
            acc = realloc(acc, acc_cap + 1);
            if (acc == NULL)
                abort();
        }
        memcpy(acc + acc_len, lx_slice_ptr(&out[k]), out[k].len);
        acc_len += out[k].len;
        lx_buf_unref(out[k].buf);
    }
    if (s.bytes_in != len || s.bytes_out != acc_len)
        abort();
    lx_sse_scan_dispose(&s);
    if (pool.n_small_out != 0) /* every small chunk came back */
        abort();
    lx_buf_pool_dispose(&pool);
    *obs = s;
    *out_len = acc_len;
    return acc;
}

static void same_obs(const lx_sse_scan_t *a, const lx_sse_scan_t *b)
{
    if (a->events != b->events || a->done != b->done || a->finished != b->finished ||
        a->error_event != b->error_event || a->malformed != b->malformed ||
        a->has_usage != b->has_usage || a->usage_truncated != b->usage_truncated ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->cached_tokens != b->cached_tokens ||
        a->reasoning_tokens != b->reasoning_tokens || a->created != b->created ||
        a->id_len != b->id_len || memcmp(a->id, b->id, a->id_len) != 0 ||
        strcmp(a->finish_reason, b->finish_reason) != 0)
        abort();
    if (a->has_usage &&
        (a->usage_len != b->usage_len || memcmp(a->usage, b->usage, a->usage_len) != 0))
        abort();
}

/* What core/json's tokens say of a JSON answer, as the scanner is to see it. */
typedef struct answer {
    uint32_t model_start, model_end; /* the first top-level "model" string; end 0: none */
    uint32_t usage_start, usage_end; /* the last top-level "usage" object; end 0: none */
    bool finished, error;
    char finish_reason[LX_SSE_FINISH_MAX]; /* the last plain finish_reason string, cut short */
} answer_t;

/* A choice's finish_reason value the scanner keeps: printable ASCII but '"' and '\\'. */
static bool plain_reason(const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)p[k] < 0x20 || (unsigned char)p[k] >= 0x7f || p[k] == '"' ||
            p[k] == '\\')
            return false;
    return true;
}

static bool key_is(const char *p, const lx_json_token_t *t, const char *want)
{
    size_t n = strlen(want);
    return t->end - t->start == n && memcmp(p + t->start, want, n) == 0;
}

/* Reads <p> with core/json; false when it is not exactly one JSON object. */
static bool read_answer(const char *p, size_t n, answer_t *a)
{
    lx_json_t j;
    lx_json_token_t t, open = {0};
    lx_json_init(&j, p, n, LX_JSON_DEPTH_MAX);
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT)
        return false;
    memset(a, 0, sizeof(*a));
    lx_json_token_t top = {0}, inner = {0}; /* the keys at depth 1 and, in a choice, 3 */
    bool in_choices = false, in_usage = false;
    for (;;) {
        lx_json_type_t type = lx_json_next(&j, &t);
        if (type == LX_JSON_NONE)
            return j.error == LX_JSON_OK;
        bool end = type == LX_JSON_OBJECT_END || type == LX_JSON_ARRAY_END;
        if (t.depth == 1 && end) {
            if (in_usage) {
                a->usage_start = open.start;
                a->usage_end = t.end;
            }
            in_choices = in_usage = false;
            continue;
        }
        if (t.depth == 1 && type == LX_JSON_KEY) {
            top = t;
            continue;
        }
        if (t.depth == 1) { /* a top-level member's value */
            if (type == LX_JSON_STRING && a->model_end == 0 && key_is(p, &top, "model")) {
                a->model_start = t.start;
                a->model_end = t.end;
            }
            if (type != LX_JSON_NULL && key_is(p, &top, "error"))
                a->error = true;
            in_choices = type == LX_JSON_ARRAY && key_is(p, &top, "choices");
            in_usage = type == LX_JSON_OBJECT && key_is(p, &top, "usage");
            open = t;
            continue;
        }
        if (t.depth == 2)
            inner = (lx_json_token_t){0}; /* an element of the array starts or ends */
        if (!in_choices || t.depth != 3)
            continue;
        /* a member of an object inside the top-level choices array (or of an array there,
         * which has no keys) */
        if (type == LX_JSON_KEY)
            inner = t;
        else if (type == LX_JSON_STRING && t.end > t.start && inner.end > 0 &&
                 key_is(p, &inner, "finish_reason")) {
            a->finished = true;
            size_t vn = t.end - t.start;
            if (plain_reason(p + t.start, vn)) {
                vn = vn < LX_SSE_FINISH_MAX - 1 ? vn : LX_SSE_FINISH_MAX - 1;
                memcpy(a->finish_reason, p + t.start, vn);
                a->finish_reason[vn] = '\0';
            }
        }
    }
}

/* A JSON answer that core/json reads as one object: the scanner's output and observations are
 * what its tokens say. */
static void check_answer(const char *in, size_t len, const lx_sse_scan_t *obs, const char *out,
                         size_t out_len)
{
    answer_t a;
    if (!read_answer(in, len, &a))
        return;
    if (obs->finished != a.finished || obs->error_event != a.error ||
        strcmp(obs->finish_reason, a.finish_reason) != 0)
        abort();
    if (a.usage_end != 0) {
        size_t n = a.usage_end - a.usage_start;
        if (n <= LX_SSE_USAGE_MAX && (!obs->has_usage || obs->usage_len != n ||
                                      memcmp(obs->usage, in + a.usage_start, n) != 0))
            abort();
        if (n > LX_SSE_USAGE_MAX && (obs->has_usage || !obs->usage_truncated))
            abort();
    } else if (obs->has_usage || obs->usage_truncated) {
        abort();
    }
    size_t m = strlen(new_model);
    size_t want = a.model_end != 0 ? len - (a.model_end - a.model_start) + m : len;
    if (out_len != want)
        abort();
    if (a.model_end == 0) {
        if (memcmp(out, in, len) != 0)
            abort();
        return;
    }
    if (memcmp(out, in, a.model_start) != 0 || memcmp(out + a.model_start, new_model, m) != 0 ||
        memcmp(out + a.model_start + m, in + a.model_end, len - a.model_end) != 0)
        abort();
}

static void one_mode(const uint8_t *data, size_t size);

/* The short usage reading accepts only what the reference reads, and reads it the same. */
static void check_usage(const char *p, size_t n)
{
    lx_sse_usage_t quick, ref;
    bool took = lx_sse_usage_read_quick(p, n, &quick);
    lx_sse_usage_read_ref(p, n, &ref);
    if (took && memcmp(&quick, &ref, sizeof(ref)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20))
        return 0;
    check_usage((const char *)data + 2, size - 2);
    json_mode = false;
    one_mode(data, size);
    json_mode = true;
    one_mode(data, size);
    return 0;
}

static void one_mode(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % (len + 1);

    lx_sse_scan_t plain, rewritten, small;
    size_t out_len = 0;
    char *out = run(in, len, &cut, 1, NULL, false, &plain, &out_len);
    if (out_len != len || memcmp(out, in, len) != 0)
        abort();
    free(out);
    if (plain.has_usage)
        check_usage(plain.usage, plain.usage_len);

    out = run(in, len, &cut, 1, new_model, true, &rewritten, &out_len);
    free(out);
    same_obs(&plain, &rewritten);

    /* the input in one read: json mode's whole-answer reading; its output is compared with the
     * small reads' below, which never take that reading */
    lx_sse_scan_t one;
    size_t one_len = 0, whole = len;
    char *one_out = run(in, len, &whole, 1, new_model, true, &one, &one_len);
    same_obs(&plain, &one);
    if (json_mode)
        check_answer(in, len, &one, one_out, one_len);

    /* small reads: 1 to 8 bytes each, from the first byte */
    size_t step = (size_t)(data[0] % 8) + 1;
    size_t ncuts = len / step;
    size_t *cuts = malloc((ncuts + 1) * sizeof(*cuts));
    if (cuts == NULL)
        abort();
    for (size_t k = 0; k < ncuts; k++)
        cuts[k] = (k + 1) * step;
    out = run(in, len, cuts, ncuts, new_model, true, &small, &out_len);
    if (json_mode && (out_len != one_len || memcmp(out, one_out, out_len) != 0))
        abort();
    free(out);
    free(one_out);
    same_obs(&plain, &small);

    /* an event stream rewritten without the drop: one whole read (whole events are read
     * structurally) and small reads (never) give the same bytes; with the drop they may not,
     * since a usage event held in more than LX_SSE_SCAN_HOLD_MAX slices is handed out */
    if (!json_mode) {
        lx_sse_scan_t a, b;
        size_t a_len = 0, b_len = 0;
        char *a_out = run(in, len, &whole, 1, new_model, false, &a, &a_len);
        char *b_out = run(in, len, cuts, ncuts, new_model, false, &b, &b_len);
        if (a_len != b_len || memcmp(a_out, b_out, a_len) != 0)
            abort();
        same_obs(&plain, &a);
        same_obs(&plain, &b);
        free(a_out);
        free(b_out);
    }
    free(cuts);
}
