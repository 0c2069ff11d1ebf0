/*
 * test_sse_scan.c - the streamed-response scanner and rewriter.
 *
 * Realistic streams are built twice from one template: as the upstream sends them and as the
 * client must receive them (model replaced, usage-only event removed or kept). Each is fed
 * split at every byte boundary and in random multi-piece splits, every piece in its own chunk,
 * and the concatenated output slices must equal the expected bytes exactly; observations and
 * references are checked on every run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "core/status.h"
#include "llm/sse_scan.h"

#define UP_MODEL  "gpt-4o-2024-08-06"
#define PUB_MODEL "openai/gpt-4o"
#define PAD       3 /* bytes of junk before each piece in its chunk: offsets must be right */

/* One event of a stream template: "%M" stands for the top-level model value. */
typedef struct tevent {
    const char *text;
    bool usage_only; /* the usage-only event llmux may drop */
} tevent_t;

typedef struct stream {
    const char *name;
    const tevent_t *ev;
    size_t n;
    /* expected observations */
    uint64_t events;
    bool done, finished, error_event;
    const char *usage; /* NULL: none */
    int64_t prompt, completion, total, cached, reasoning;
    const char *id; /* the stream's id; NULL: none */
    int64_t created;
    const char *finish_reason; /* NULL: "" */
} stream_t;

/* ---- byte strings ---- */

typedef struct str {
    char *p;
    size_t len, cap;
} str_t;

static void str_add(str_t *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

/* The stream's bytes with "%M" replaced by <model>, without the usage-only event if <drop>. */
static str_t build(const stream_t *st, const char *model, bool drop)
{
    str_t out = {0};
    str_add(&out, "", 0);
    for (size_t k = 0; k < st->n; k++) {
        if (drop && st->ev[k].usage_only)
            continue;
        const char *t = st->ev[k].text;
        const char *m;
        while ((m = strstr(t, "%M")) != NULL) {
            str_add(&out, t, (size_t)(m - t));
            str_add(&out, model, strlen(model));
            t = m + 2;
        }
        str_add(&out, t, strlen(t));
    }
    return out;
}

/* ---- running the scanner ---- */

typedef struct run {
    str_t out;
    lx_sse_scan_t obs; /* the scanner after flush (private part stale) */
} run_t;

/* Feeds <in> cut at cuts[0..ncuts) (increasing), each piece in its own chunk; checks slices
 * and references; returns the concatenated output. */
static run_t run_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                      const char *model, bool drop)
{
    lx_sse_scan_t s;
    assert_int_equal(lx_sse_scan_init(&s, model, model ? strlen(model) : 0, drop, NULL), 0);
    size_t npieces = ncuts + 1;
    lx_buf_t **bufs = calloc(npieces, sizeof(*bufs));
    size_t nslices = 0, capslices = 64;
    lx_slice_t *slices = malloc(capslices * sizeof(*slices));
    assert_non_null(bufs);
    assert_non_null(slices);
    lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
    size_t start = 0;
    for (size_t p = 0; p < npieces; p++) {
        size_t end = p < ncuts ? cuts[p] : len;
        size_t plen = end - start;
        lx_buf_t *b = lx_buf_new(PAD + plen);
        assert_non_null(b);
        memset(b->data, 'J', PAD);
        memcpy(b->data + PAD, in + start, plen);
        b->len = (uint32_t)(PAD + plen);
        bufs[p] = b;
        size_t done = 0;
        do {
            size_t used = 0;
            int n = lx_sse_scan_feed(&s, b, b->data + PAD + done, plen - done, out,
                                     LX_SSE_SCAN_MAX_OUT, &used);
            assert_true(n >= 0);
            assert_true(used > 0 || plen == done);
            if (model == NULL && !drop) {
                /* untouched: exactly the input range, one slice */
                assert_int_equal(n, used > 0 ? 1 : 0);
                if (n == 1) {
                    assert_ptr_equal(out[0].buf, b);
                    assert_int_equal(out[0].off, PAD + done);
                    assert_int_equal(out[0].len, used);
                }
            }
            for (int k = 0; k < n; k++) {
                if (nslices == capslices) {
                    capslices *= 2;
                    slices = realloc(slices, capslices * sizeof(*slices));
                    assert_non_null(slices);
                }
                slices[nslices++] = out[k];
            }
            done += used;
        } while (done < plen);
        start = end;
    }
    int n = lx_sse_scan_flush(&s, out, LX_SSE_SCAN_MAX_OUT);
    assert_true(n >= 0);
    for (int k = 0; k < n; k++) {
        if (nslices == capslices) {
            capslices *= 2;
            slices = realloc(slices, capslices * sizeof(*slices));
            assert_non_null(slices);
        }
        slices[nslices++] = out[k];
    }
    lx_buf_t *lit = s.lit;
    if (lit != NULL)
        lx_buf_ref(lit);

    run_t r = {0};
    str_add(&r.out, "", 0);
    uint64_t total = 0;
    for (size_t k = 0; k < nslices; k++) {
        lx_slice_t *sl = &slices[k];
        assert_true(sl->len > 0);
        bool known = sl->buf == lit;
        if (known) {
            assert_int_equal(sl->off, 0);
            /* a slice of the literal exists only when a model is rewritten */
            assert_int_equal(sl->len, model != NULL ? strlen(model) : 0);
        }
        for (size_t p = 0; p < npieces && !known; p++)
            known = sl->buf == bufs[p];
        assert_true(known);
        assert_true(sl->buf == lit || sl->off >= PAD);
        assert_true((size_t)sl->off + sl->len <= sl->buf->len);
        str_add(&r.out, lx_slice_ptr(sl), sl->len);
        total += sl->len;
        lx_buf_unref(sl->buf);
    }
    assert_int_equal(total, s.bytes_out);
    assert_int_equal(s.bytes_in, len);
    lx_sse_scan_dispose(&s);
    r.obs = s;
    for (size_t p = 0; p < npieces; p++) {
        assert_int_equal(bufs[p]->refcnt, 1);
        lx_buf_unref(bufs[p]);
    }
    if (lit != NULL) {
        assert_int_equal(lit->refcnt, 1);
        lx_buf_unref(lit);
    }
    free(bufs);
    free(slices);
    return r;
}

static void check_obs(const stream_t *st, const lx_sse_scan_t *o)
{
    assert_int_equal(o->events, st->events);
    assert_int_equal(o->done, st->done);
    assert_int_equal(o->finished, st->finished);
    assert_int_equal(o->error_event, st->error_event);
    assert_false(o->malformed);
    if (st->usage == NULL) {
        assert_false(o->has_usage);
    } else {
        assert_true(o->has_usage);
        assert_int_equal(o->usage_len, strlen(st->usage));
        assert_memory_equal(o->usage, st->usage, o->usage_len);
    }
    assert_int_equal(o->prompt_tokens, st->prompt);
    assert_int_equal(o->completion_tokens, st->completion);
    assert_int_equal(o->total_tokens, st->total);
    assert_int_equal(o->cached_tokens, st->cached);
    assert_int_equal(o->reasoning_tokens, st->reasoning);
    if (st->id == NULL) {
        assert_int_equal(o->id_len, 0);
    } else {
        assert_int_equal(o->id_len, strlen(st->id));
        assert_memory_equal(o->id, st->id, o->id_len);
    }
    assert_int_equal(o->created, st->created);
    assert_string_equal(o->finish_reason, st->finish_reason ? st->finish_reason : "");
}

static void expect_run(const stream_t *st, const str_t *in, const size_t *cuts, size_t ncuts,
                       const char *model, bool drop, const str_t *want)
{
    run_t r = run_cuts(in->p, in->len, cuts, ncuts, model, drop);
    if (r.out.len != want->len || memcmp(r.out.p, want->p, want->len) != 0) {
        char where[256] = "";
        int w = 0;
        for (size_t k = 0; k < ncuts && w < 200; k++)
            w += snprintf(where + w, sizeof(where) - (size_t)w, "%zu ", cuts[k]);
        fail_msg("%s (model %s, drop %d, cuts %s)\n  got  [%s]\n  want [%s]", st->name,
                 model ? model : "NULL", drop, where, r.out.p, want->p);
    }
    check_obs(st, &r.obs);
    free(r.out.p);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Every mode, every 2-piece split, and random splits of up to 8 pieces. */
static void exercise(const stream_t *st)
{
    str_t in = build(st, UP_MODEL, false);
    str_t same = build(st, UP_MODEL, false);
    str_t rew = build(st, PUB_MODEL, false);
    str_t rew_drop = build(st, PUB_MODEL, true);
    str_t drop = build(st, UP_MODEL, true);
    struct {
        const char *model;
        bool drop;
        const str_t *want;
    } modes[] = {
        {NULL, false, &same}, {PUB_MODEL, false, &rew}, {PUB_MODEL, true, &rew_drop},
        {NULL, true, &drop},  {"", false, NULL},
    };
    str_t empty = build(st, "", false);
    modes[4].want = &empty;
    for (size_t m = 0; m < LX_ARRAY_SIZE(modes); m++) {
        expect_run(st, &in, NULL, 0, modes[m].model, modes[m].drop, modes[m].want);
        for (size_t cut = 0; cut <= in.len; cut++)
            expect_run(st, &in, &cut, 1, modes[m].model, modes[m].drop, modes[m].want);
        rng_state = 0x9e3779b97f4a7c15ull + m;
        for (int iter = 0; iter < 300; iter++) {
            size_t cuts[7];
            size_t nc = (size_t)(rng() % 8);
            for (size_t k = 0; k < nc; k++)
                cuts[k] = (size_t)(rng() % (in.len + 1));
            qsort(cuts, nc, sizeof(cuts[0]), cmp_size);
            expect_run(st, &in, cuts, nc, modes[m].model, modes[m].drop, modes[m].want);
        }
    }
    free(in.p);
    free(same.p);
    free(rew.p);
    free(rew_drop.p);
    free(drop.p);
    free(empty.p);
}

/* ---- streams ---- */

#define USAGE_OAI                                                                                  \
    "{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,"                           \
    "\"prompt_tokens_details\":{\"cached_tokens\":3,\"audio_tokens\":0},"                          \
    "\"completion_tokens_details\":{\"reasoning_tokens\":5,\"audio_tokens\":0,"                    \
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}"

static const tevent_t chat_ev[] = {
    {"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
     "\"model\":\"%M\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{"
     "\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
     "\"finish_reason\":null}],\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
     "\"model\":\"%M\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{"
     "\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
     "\"model\":\"%M\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\\"model\\\": "
     "{\\\"finish_reason\\\":\\\"stop\\\"} \\\\\"},\"logprobs\":null,\"finish_reason\":null}],"
     "\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
     "\"model\":\"%M\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{},"
     "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
     "\"model\":\"%M\",\"system_fingerprint\":\"fp_1\",\"choices\":[],\"usage\":" USAGE_OAI "}\n\n",
     true},
    {"data: [DONE]\n\n", false},
};

static const stream_t chat = {
    "openai chat",
    chat_ev,
    LX_ARRAY_SIZE(chat_ev),
    6,
    true,
    true,
    false,
    USAGE_OAI,
    9,
    12,
    21,
    3,
    5,
    "chatcmpl-1",
    1718000000,
    "stop",
};

#define USAGE_TEXT "{\"prompt_tokens\":4,\"completion_tokens\":7,\"total_tokens\":11}"

static const tevent_t text_ev[] = {
    {"data: {\"id\":\"cmpl-7\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{"
     "\"text\":\"Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"%M\"}"
     "\n\n",
     false},
    {"data: {\"id\":\"cmpl-7\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{"
     "\"text\":\" upon\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],"
     "\"model\":\"%M\"}\n\n",
     false},
    {"data: {\"id\":\"cmpl-7\",\"object\":\"text_completion\",\"created\":1,\"choices\":[],"
     "\"model\":\"%M\",\"usage\":" USAGE_TEXT "}\n\n",
     true},
    {"data: [DONE]\n\n", false},
};

static const stream_t text = {
    "text completion",
    text_ev,
    LX_ARRAY_SIZE(text_ev),
    4,
    true,
    true,
    false,
    USAGE_TEXT,
    4,
    7,
    11,
    -1,
    -1,
    "cmpl-7",
    1,
    "length",
};

/* vLLM: "usage":null on each chunk, spaces around ':', the usage event without the model. */
#define USAGE_VLLM "{ \"prompt_tokens\" : 5, \"total_tokens\": 8, \"completion_tokens\":3 }"

static const tevent_t vllm_ev[] = {
    {"data: { \"id\" : \"cmpl-a\", \"object\": \"chat.completion.chunk\", \"model\" : \"%M\" , "
     "\"choices\": [ { \"index\": 0, \"delta\": { \"role\": \"assistant\", \"content\": \"\" }, "
     "\"finish_reason\": null } ], \"usage\": null }\n\n",
     false},
    {"data: {\"id\":\"cmpl-a\",\"model\":   \"%M\",\"choices\":[{\"index\":0,\"delta\":{"
     "\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}],"
     "\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"cmpl-a\",\"model\":\"%M\",\"choices\":[{\"index\":0,\"delta\":{"
     "\"content\":\"\"},\"logprobs\":null,\"finish_reason\": \"length\",\"stop_reason\":null}],"
     "\"usage\":null}\n\n",
     false},
    {"data: {\"id\":\"cmpl-a\",\"object\":\"chat.completion.chunk\",\"choices\": [ \t ],"
     "\"usage\": " USAGE_VLLM "}\n\n",
     true},
    {"data: [DONE]\n\n", false},
};

static const stream_t vllm = {
    "vllm",   vllm_ev,    LX_ARRAY_SIZE(vllm_ev),
    5,        true,       true,
    false,    USAGE_VLLM, 5,
    3,        8,          -1,
    -1,       "cmpl-a",   -1,
    "length",
};

/* CRLF framing, comments, other fields, multi-line data (the model on a continuation line). */
static const tevent_t crlf_ev[] = {
    {": keep-alive\r\n\r\n", false},
    {"event: message\r\nid: 1\r\nretry: 1000\r\ndata: {\"id\":\"c\",\r\ndata: \"model\":\r\n"
     "data: \"%M\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},"
     "\"finish_reason\":null}]}\r\n\r\n",
     false},
    {": keep-alive\r\n", false},
    {"data:{\"id\":\"c\",\"model\":\"%M\",\"choices\":[{\"index\":0,\"delta\":{},"
     "\"finish_reason\":\"stop\"}]}\r\n\r\n",
     false},
    {": keep-alive\r\n\r\n", false},
    {"data: {\"id\":\"c\",\"model\":\"%M\",\"choices\":[],\r\ndata: \"usage\":" USAGE_TEXT
     "}\r\n\r\n",
     true},
    {"data: [DONE]\r\n\r\n", false},
};

static const stream_t crlf = {
    "crlf", crlf_ev,    LX_ARRAY_SIZE(crlf_ev),
    4,      true,       true,
    false,  USAGE_TEXT, 4,
    7,      11,         -1,
    -1,     "c",        -1,
    "stop",
};

/* CR-only framing and a BOM: a held event's end is decided at the next byte or at flush. */
static const tevent_t cr_ev[] = {
    {"\xef\xbb\xbf"
     "data: {\"model\":\"%M\",\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":"
     "\"stop\"}]}\r\r",
     false},
    {"data: {\"model\":\"%M\",\"choices\":[],\"usage\":" USAGE_TEXT "}\r\r", true},
    {"data: [DONE]\r\r", false},
};

static const stream_t cr = {
    "cr", cr_ev,  LX_ARRAY_SIZE(cr_ev), 3, true, true, false, USAGE_TEXT, 4, 7, 11, -1, -1, NULL,
    -1,   "stop",
};

/* The usage-only event is the last thing: dropped, with nothing after it. */
static const tevent_t last_ev[] = {
    {"data: {\"model\":\"%M\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\r", false},
    {"data: {\"model\":\"%M\",\"choices\":[],\"usage\":" USAGE_TEXT "}\r\r", true},
};

static const stream_t last = {
    "usage last",
    last_ev,
    LX_ARRAY_SIZE(last_ev),
    2,
    false,
    true,
    false,
    USAGE_TEXT,
    4,
    7,
    11,
    -1,
    -1,
    NULL,
    -1,
    "stop",
};

/* A mid-stream error event (OpenAI's shape): observed, forwarded. */
static const tevent_t err_ev[] = {
    {"data: {\"model\":\"%M\",\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}"
     "]}\n\n",
     false},
    {"data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\",\"code\":502}}\n\n",
     false},
};

static const stream_t err = {
    "error", err_ev, LX_ARRAY_SIZE(err_ev), 2, false, false, true, NULL, -1, -1, -1, -1, -1, NULL,
    -1,      NULL,
};

static void test_chat(void **state)
{
    (void)state;
    exercise(&chat);
}

static void test_text_completion(void **state)
{
    (void)state;
    exercise(&text);
}

static void test_vllm(void **state)
{
    (void)state;
    exercise(&vllm);
}

static void test_crlf(void **state)
{
    (void)state;
    exercise(&crlf);
}

static void test_cr_bom(void **state)
{
    (void)state;
    exercise(&cr);
    exercise(&last);
}

static void test_error_event(void **state)
{
    (void)state;
    exercise(&err);
}

/* ---- targeted cases ---- */

/* Runs <in> in one piece and every 2-piece split, expecting <want> each time. */
static lx_sse_scan_t all_splits(const char *in, const char *model, bool drop, const char *want)
{
    str_t win = {0}, wwant = {0};
    str_add(&win, in, strlen(in));
    str_add(&wwant, want, strlen(want));
    stream_t st = {.name = in};
    lx_sse_scan_t obs = {0};
    for (size_t cut = 0; cut <= win.len; cut++) {
        run_t r = run_cuts(win.p, win.len, &cut, 1, model, drop);
        if (r.out.len != wwant.len || memcmp(r.out.p, wwant.p, wwant.len) != 0)
            fail_msg("%s cut %zu\n  got  [%s]\n  want [%s]", st.name, cut, r.out.p, wwant.p);
        obs = r.obs;
        free(r.out.p);
    }
    free(win.p);
    free(wwant.p);
    return obs;
}

static void test_model_rules(void **state)
{
    (void)state;
    /* only the first top-level model, only strings, escapes skipped whole */
    all_splits("data: {\"model\":\"a\\\"b\\\\\",\"x\":{\"model\":\"deep\"},\"model\":\"2nd\","
               "\"choices\":[{\"model\":\"c\"}]}\n\n",
               "M", false,
               "data: {\"model\":\"M\",\"x\":{\"model\":\"deep\"},\"model\":\"2nd\","
               "\"choices\":[{\"model\":\"c\"}]}\n\n");
    all_splits("data: {\"model\":null,\"m\":\"model\"}\n\ndata: {\"model\" :\t\"\"}\n\n", "M",
               false, "data: {\"model\":null,\"m\":\"model\"}\n\ndata: {\"model\" :\t\"M\"}\n\n");
    /* a top-level array, a model key in a value position, a too-long key */
    all_splits("data: [{\"model\":\"x\"}]\n\ndata: {\"a\":\"model\",\"b\":1}\n\n"
               "data: {\"modelmodelmodelmodelmodelmodel\":\"y\"}\n\n",
               "M", false,
               "data: [{\"model\":\"x\"}]\n\ndata: {\"a\":\"model\",\"b\":1}\n\n"
               "data: {\"modelmodelmodelmodelmodelmodel\":\"y\"}\n\n");
    /* not data: other fields and comments pass untouched */
    lx_sse_scan_t o = all_splits("id: {\"model\":\"x\"}\n: {\"model\":\"x\"}\n\n", "M", false,
                                 "id: {\"model\":\"x\"}\n: {\"model\":\"x\"}\n\n");
    assert_int_equal(o.events, 0);
    /* an unterminated model string stops being skipped at the end of its line */
    all_splits("data: {\"model\":\"abc\ndata: x\n\n", "M", false,
               "data: {\"model\":\"M\ndata: x\n\n");
    /* "data" without colon is an empty data line */
    o = all_splits("data\n\ndata:[DONE]\n\n", NULL, false, "data\n\ndata:[DONE]\n\n");
    assert_int_equal(o.events, 2);
    assert_true(o.done);
    o = all_splits("data: [DONE] \n\ndata: \"[DONE]\"\n\n", NULL, false,
                   "data: [DONE] \n\ndata: \"[DONE]\"\n\n");
    assert_false(o.done);
}

static void test_drop_rules(void **state)
{
    (void)state;
    const char *fin = "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n";
    char in[512], want[512];
    /* before any finish_reason, a usage-only event is not in the tail: kept */
    snprintf(in, sizeof(in), "data: {\"choices\":[],\"usage\":%s}\n\n%s", USAGE_TEXT, fin);
    lx_sse_scan_t o = all_splits(in, NULL, true, in);
    assert_true(o.has_usage);
    assert_true(o.finished);
    /* in the tail: usage with non-empty choices, null usage, or empty choices without usage
     * are kept; comments and [DONE] too */
    snprintf(in, sizeof(in),
             "%sdata: {\"choices\":[{\"finish_reason\":null}],\"usage\":%s}\n\n"
             "data: {\"choices\":[],\"usage\":null}\n\ndata: {\"choices\":[]}\n\n: c\n\n"
             "data: [DONE]\n\n",
             fin, USAGE_TEXT);
    all_splits(in, NULL, true, in);
    /* null and empty finish_reason do not start the tail */
    o = all_splits("data: {\"choices\":[{\"finish_reason\":\"\"},{\"finish_reason\":null}]}\n\n",
                   NULL, true,
                   "data: {\"choices\":[{\"finish_reason\":\"\"},{\"finish_reason\":null}]}\n\n");
    assert_false(o.finished);
    /* finish_reason outside a choice does not count */
    o = all_splits("data: {\"finish_reason\":\"stop\",\"x\":[{\"finish_reason\":\"stop\"}]}\n\n",
                   NULL, true,
                   "data: {\"finish_reason\":\"stop\",\"x\":[{\"finish_reason\":\"stop\"}]}\n\n");
    assert_false(o.finished);
    /* a dropped event's stray blank lines around it stay */
    snprintf(in, sizeof(in), "%s\n\ndata: {\"usage\":%s,\"choices\":[]}\n\n\ndata: [DONE]\n\n", fin,
             USAGE_TEXT);
    snprintf(want, sizeof(want), "%s\n\n\ndata: [DONE]\n\n", fin);
    o = all_splits(in, NULL, true, want);
    assert_int_equal(o.events, 3);
    assert_int_equal(o.total_tokens, 11);
    /* a partial held event at end of stream comes out at flush */
    snprintf(in, sizeof(in), "%sdata: {\"choices\":[],\"usage\":%s}\n", fin, USAGE_TEXT);
    o = all_splits(in, NULL, true, in);
    assert_int_equal(o.events, 1);
}

/* Before the tail, every byte of a read is handed out by the feed call that brought it. */
static void test_immediate(void **state)
{
    (void)state;
    str_t in = build(&chat, UP_MODEL, false);
    const char *tail = strstr(in.p, "\"finish_reason\":\"stop\"");
    assert_non_null(tail);
    tail = strstr(tail, "\n\n") + 2;
    size_t tail_at = (size_t)(tail - in.p);
    lx_buf_t *b = lx_buf_new(in.len);
    assert_non_null(b);
    memcpy(b->data, in.p, in.len);
    b->len = (uint32_t)in.len;
    lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
    for (size_t cut = 1; cut <= tail_at; cut++) {
        lx_sse_scan_t s;
        assert_int_equal(lx_sse_scan_init(&s, NULL, 0, true, NULL), 0);
        size_t used = 0;
        int n = lx_sse_scan_feed(&s, b, b->data, cut, out, LX_SSE_SCAN_MAX_OUT, &used);
        assert_int_equal(n, 1);
        assert_int_equal(used, cut);
        assert_int_equal(out[0].off, 0);
        assert_int_equal(out[0].len, cut);
        lx_buf_unref(out[0].buf);
        lx_sse_scan_dispose(&s);
    }
    /* with the rewrite, the replacement goes out when the value's opening quote does */
    const char *q = strstr(in.p, "\"model\":\"") + 9;
    size_t qat = (size_t)(q - in.p);
    lx_sse_scan_t s;
    assert_int_equal(lx_sse_scan_init(&s, PUB_MODEL, strlen(PUB_MODEL), true, NULL), 0);
    size_t used = 0;
    int n = lx_sse_scan_feed(&s, b, b->data, qat, out, LX_SSE_SCAN_MAX_OUT, &used);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].len, qat);
    assert_ptr_equal(out[1].buf, s.lit);
    assert_memory_equal(lx_slice_ptr(&out[1]), PUB_MODEL, strlen(PUB_MODEL));
    for (int k = 0; k < n; k++)
        lx_buf_unref(out[k].buf);
    /* then the rest of the value is skipped: the next read starts at the closing quote */
    n = lx_sse_scan_feed(&s, b, b->data + qat, strlen(UP_MODEL) + 2, out, LX_SSE_SCAN_MAX_OUT,
                         &used);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].off, qat + strlen(UP_MODEL));
    assert_int_equal(out[0].len, 2);
    lx_buf_unref(out[0].buf);
    lx_sse_scan_dispose(&s);
    assert_int_equal(b->refcnt, 1);
    lx_buf_unref(b);
    free(in.p);
}

/* A read with many events needs several calls; nothing is lost or reordered. */
static void test_many_events_per_read(void **state)
{
    (void)state;
    str_t in = {0}, want = {0};
    const char *ev_in = "data: {\"model\":\"up\",\"choices\":[]}\n\n";
    const char *ev_want = "data: {\"model\":\"PUBLIC\",\"choices\":[]}\n\n";
    for (int k = 0; k < 500; k++) {
        str_add(&in, ev_in, strlen(ev_in));
        str_add(&want, ev_want, strlen(ev_want));
    }
    size_t cut = 0;
    run_t r = run_cuts(in.p, in.len, &cut, 0, "PUBLIC", false);
    assert_int_equal(r.out.len, want.len);
    assert_memory_equal(r.out.p, want.p, want.len);
    assert_int_equal(r.obs.events, 500);
    free(r.out.p);
    free(in.p);
    free(want.p);
}

/* A held event in more pieces than LX_SSE_SCAN_HOLD_MAX is forwarded (and cannot be dropped),
 * nothing lost; the usage is still observed. */
static void test_hold_overflow(void **state)
{
    (void)state;
    char in[512];
    int fin = snprintf(in, sizeof(in), "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n");
    int len = fin + snprintf(in + fin, sizeof(in) - (size_t)fin,
                             "data: {\"choices\":[],\"usage\":%s}\n\n", USAGE_TEXT);
    size_t cuts[LX_SSE_SCAN_HOLD_MAX + 2];
    for (size_t k = 0; k < LX_ARRAY_SIZE(cuts); k++)
        cuts[k] = (size_t)fin + 1 + k;
    run_t r = run_cuts(in, (size_t)len, cuts, LX_ARRAY_SIZE(cuts), NULL, true);
    assert_int_equal(r.out.len, (size_t)len);
    assert_memory_equal(r.out.p, in, (size_t)len);
    assert_true(r.obs.has_usage);
    free(r.out.p);
    /* in fewer pieces it is dropped */
    r = run_cuts(in, (size_t)len, cuts, LX_SSE_SCAN_HOLD_MAX - 2, NULL, true);
    assert_int_equal(r.out.len, (size_t)fin);
    free(r.out.p);
}

static void test_usage_limits(void **state)
{
    (void)state;
    /* an oversized usage object: not kept, flagged; the token numbers keep the last good one */
    str_t in = {0};
    const char *first = "data: {\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2}}\n\n";
    str_add(&in, first, strlen(first));
    const char *big = "data: {\"usage\":{\"prompt_tokens\":7,\"x\":\"";
    str_add(&in, big, strlen(big));
    for (int k = 0; k < LX_SSE_USAGE_MAX; k++)
        str_add(&in, "y", 1);
    str_add(&in, "\"}}\n\n", 5);
    run_t r = run_cuts(in.p, in.len, NULL, 0, NULL, false);
    assert_false(r.obs.has_usage);
    assert_true(r.obs.usage_truncated);
    assert_int_equal(r.obs.prompt_tokens, 1);
    assert_int_equal(r.obs.total_tokens, 2);
    free(r.out.p);
    /* non-integer counts are unknown; a later good usage replaces everything */
    lx_sse_scan_t o = all_splits(
        "data: {\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":\"3\",\"total_tokens\":-1,"
        "\"prompt_tokens_details\":null,\"completion_tokens_details\":{\"reasoning_tokens\":2}}}"
        "\n\n",
        NULL, false,
        "data: {\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":\"3\",\"total_tokens\":-1,"
        "\"prompt_tokens_details\":null,\"completion_tokens_details\":{\"reasoning_tokens\":2}}}"
        "\n\n");
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, -1);
    assert_int_equal(o.completion_tokens, -1);
    assert_int_equal(o.total_tokens, -1);
    assert_int_equal(o.cached_tokens, -1);
    assert_int_equal(o.reasoning_tokens, 2);
    free(in.p);
}

/* Feeds <b>'s bytes [off, off+len) and releases the output. */
static void feed_drop(lx_sse_scan_t *s, lx_buf_t *b, size_t off, size_t len)
{
    lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
    size_t done = 0;
    while (done < len) {
        size_t used = 0;
        int n = lx_sse_scan_feed(s, b, b->data + off + done, len - done, out, LX_SSE_SCAN_MAX_OUT,
                                 &used);
        assert_true(n >= 0);
        assert_true(used > 0);
        for (int k = 0; k < n; k++)
            lx_buf_unref(out[k].buf);
        done += used;
    }
}

static void test_malformed_and_errors(void **state)
{
    (void)state;
    lx_sse_scan_t s;
    lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
    size_t used = 7;
    lx_buf_t *b = lx_buf_new(LX_BUF_CHUNK_SIZE);
    assert_non_null(b);
    b->len = LX_BUF_CHUNK_SIZE;

    /* out[] too small */
    assert_int_equal(lx_sse_scan_init(&s, NULL, 0, false, NULL), 0);
    memcpy(b->data, "data: x\n\n", 9);
    assert_int_equal(lx_sse_scan_feed(&s, b, b->data, 9, out, LX_SSE_SCAN_MAX_OUT - 1, &used),
                     LX_ETOOBIG);
    assert_int_equal(used, 0);
    assert_int_equal(lx_sse_scan_flush(&s, out, 1), LX_ETOOBIG);
    assert_false(s.malformed);

    /* nesting over the bound */
    memcpy(b->data, "data: ", 6);
    memset(b->data + 6, '[', LX_SSE_DEPTH_MAX);
    feed_drop(&s, b, 0, 6 + LX_SSE_DEPTH_MAX);
    assert_false(s.malformed);
    feed_drop(&s, b, 6, 1);
    assert_true(s.malformed);
    lx_sse_scan_dispose(&s);

    /* a line over the bound (a comment: nothing is buffered either way) */
    assert_int_equal(lx_sse_scan_init(&s, "m", 1, true, NULL), 0);
    memset(b->data, ':', LX_BUF_CHUNK_SIZE);
    size_t total = 0;
    while (total + LX_BUF_CHUNK_SIZE <= LX_SSE_LINE_MAX) {
        feed_drop(&s, b, 0, LX_BUF_CHUNK_SIZE);
        total += LX_BUF_CHUNK_SIZE;
    }
    assert_false(s.malformed);
    feed_drop(&s, b, 0, 1);
    assert_true(s.malformed);
    assert_int_equal(s.bytes_in, s.bytes_out);
    assert_int_equal(lx_sse_scan_flush(&s, out, LX_SSE_SCAN_MAX_OUT), 0);
    lx_sse_scan_dispose(&s);
    lx_sse_scan_dispose(&s);
    assert_int_equal(b->refcnt, 1);
    lx_buf_unref(b);
}

/* Feeds <in> to <sc> in two pieces cut at <cut>, each in its own chunk that nothing holds
 * afterwards; appends the output to <got> (NULL: dropped). */
static void feed_two(lx_sse_scan_t *sc, const char *in, size_t len, size_t cut, str_t *got)
{
    size_t bounds[3] = {0, cut, len};
    for (int piece = 0; piece < 2; piece++) {
        size_t plen = bounds[piece + 1] - bounds[piece];
        lx_buf_t *b = lx_buf_new(plen + 1);
        assert_non_null(b);
        memcpy(b->data, in + bounds[piece], plen);
        b->len = (uint32_t)plen;
        size_t done = 0;
        while (done < plen) {
            lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
            size_t used = 0;
            int n = lx_sse_scan_feed(sc, b, b->data + done, plen - done, out, LX_SSE_SCAN_MAX_OUT,
                                     &used);
            assert_true(n >= 0 && used > 0);
            for (int k = 0; k < n; k++) {
                if (got != NULL)
                    str_add(got, lx_slice_ptr(&out[k]), out[k].len);
                lx_buf_unref(out[k].buf);
            }
            done += used;
        }
        assert_int_equal(b->refcnt, 1);
        lx_buf_unref(b);
    }
}

/* A plain JSON answer (json mode): split at every byte, the first top-level model is rewritten,
 * every other byte passes, usage is observed, nested "model" keys and strings are untouched. */
static void test_json_mode(void **state)
{
    (void)state;
    static const char in[] =
        "{\"id\":\"c-1\",\"object\":\"chat.completion\",\"created\":17,\"model\" : \"up-a\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
        "\"say \\\"model\\\": 1 and {\\\"usage\\\":{}}\",\"model\":\"inner\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
        "\"total_tokens\":46,\"prompt_tokens_details\":{\"cached_tokens\":5}},\"x\":-1.5e3}";
    static const char want[] =
        "{\"id\":\"c-1\",\"object\":\"chat.completion\",\"created\":17,\"model\" : \"pub/id\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
        "\"say \\\"model\\\": 1 and {\\\"usage\\\":{}}\",\"model\":\"inner\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
        "\"total_tokens\":46,\"prompt_tokens_details\":{\"cached_tokens\":5}},\"x\":-1.5e3}";
    size_t len = sizeof(in) - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        lx_sse_scan_t sc;
        assert_int_equal(lx_sse_scan_init_json(&sc, "pub/id", 6, NULL), 0);
        str_t got = {0};
        str_add(&got, "", 0);
        feed_two(&sc, in, len, cut, &got);
        lx_slice_t out[LX_SSE_SCAN_MAX_OUT];
        int n = lx_sse_scan_flush(&sc, out, LX_SSE_SCAN_MAX_OUT);
        for (int k = 0; k < n; k++) {
            str_add(&got, lx_slice_ptr(&out[k]), out[k].len);
            lx_buf_unref(out[k].buf);
        }
        assert_int_equal(got.len, sizeof(want) - 1);
        assert_memory_equal(got.p, want, got.len);
        assert_true(sc.has_usage);
        assert_int_equal(sc.prompt_tokens, 12);
        assert_int_equal(sc.completion_tokens, 34);
        assert_int_equal(sc.total_tokens, 46);
        assert_int_equal(sc.cached_tokens, 5);
        assert_int_equal(sc.events, 0);
        lx_sse_scan_dispose(&sc);
        free(got.p);
    }
}

/* json mode: <in> in one piece and split in two at every byte (each piece in its own chunk),
 * expecting <want> every time; returns the observations of the last run. */
static lx_sse_scan_t json_splits(const char *in, const char *model, const char *want)
{
    size_t len = strlen(in), wlen = strlen(want);
    lx_sse_scan_t sc = {0};
    for (size_t cut = 0; cut <= len; cut++) {
        assert_int_equal(lx_sse_scan_init_json(&sc, model, model ? strlen(model) : 0, NULL), 0);
        str_t got = {0};
        str_add(&got, "", 0);
        feed_two(&sc, in, len, cut, &got);
        if (got.len != wlen || memcmp(got.p, want, wlen) != 0)
            fail_msg("cut %zu\n  got  [%s]\n  want [%s]", cut, got.p, want);
        lx_sse_scan_dispose(&sc);
        free(got.p);
    }
    return sc;
}

/* The stream's identity for the error event that may end it (OpenRouter's chunk repeats the
 * stream's id and created): the first top-level id string that can be written back as it is,
 * the first top-level non-negative integer created; in every split, byte machine or whole
 * event alike. */
static void expect_identity(const char *in, const char *id, int64_t created)
{
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        for (int k = 0; k < 2; k++) {
            run_t r = run_cuts(in, len, &cut, 1, k ? PUB_MODEL : NULL, false);
            if (r.obs.id_len != (id ? strlen(id) : 0) ||
                (id != NULL && memcmp(r.obs.id, id, r.obs.id_len) != 0) || r.obs.created != created)
                fail_msg("%s cut %zu: id [%.*s] created %lld", in, cut, (int)r.obs.id_len, r.obs.id,
                         (long long)r.obs.created);
            free(r.out.p);
        }
    }
}

static void test_identity(void **state)
{
    (void)state;
    /* OpenRouter's shape: the first event's, later ones do not change it */
    expect_identity("data: {\"id\":\"gen-1739458867-abcdefghijklmnopqrst\",\"provider\":\"X\","
                    "\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"created\":1739458867,"
                    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
                    "data: {\"id\":\"other\",\"created\":5,\"choices\":[]}\n\n",
                    "gen-1739458867-abcdefghijklmnopqrst", 1739458867);
    /* nested ids and created are not the stream's; created before id */
    expect_identity("data: {\"created\" : 42 ,\"x\":{\"id\":\"in\"},\"choices\":[{\"id\":\"c\","
                    "\"created\":1}],\"id\": \"top\"}\n\n",
                    "top", 42);
    /* an id with an escape, a control or non-ASCII byte, or too long, is not kept; a later
     * event's is */
    expect_identity("data: {\"id\":\"a\\\"b\",\"created\":1.5}\n\n"
                    "data: {\"id\":\"caf\xc3\xa9\",\"created\":-3}\n\n"
                    "data: {\"id\":\"ok-2\",\"created\":7}\n\n",
                    "ok-2", 7);
    /* ... or a later member of the same event (the machine tries each in turn) */
    expect_identity("data: {\"id\":\"\",\"created\":\"1\",\"id\":\"a\\nb\",\"created\":2.0,"
                    "\"id\":\"third\",\"created\":3,\"id\":\"fourth\",\"created\":4}\n\n",
                    "third", 3);
    char longid[300];
    int n = snprintf(longid, sizeof(longid), "data: {\"id\":\"");
    memset(longid + n, 'i', LX_SSE_ID_MAX + 1);
    snprintf(longid + n + LX_SSE_ID_MAX + 1, sizeof(longid) - (size_t)n - LX_SSE_ID_MAX - 1,
             "\",\"created\":\"12\"}\n\n");
    expect_identity(longid, NULL, -1);
    /* exactly LX_SSE_ID_MAX bytes fit */
    memcpy(longid + n + LX_SSE_ID_MAX, "\"}\n\n", 5);
    char want[LX_SSE_ID_MAX + 1];
    memset(want, 'i', LX_SSE_ID_MAX);
    want[LX_SSE_ID_MAX] = '\0';
    expect_identity(longid, want, -1);
    /* an event cut by the stream's end keeps nothing it had not finished */
    expect_identity("data: {\"created\":99", NULL, -1);
    expect_identity("data: {\"id\":\"abc", NULL, -1);
    /* a plain JSON answer has no stream identity to keep */
    lx_sse_scan_t sc = json_splits("{\"id\":\"c-1\",\"created\":17,\"model\":\"m\"}", NULL,
                                   "{\"id\":\"c-1\",\"created\":17,\"model\":\"m\"}");
    assert_int_equal(sc.id_len, 0);
    assert_int_equal(sc.created, -1);
}

/* The finish_reason kept from an event stream, in one read and every 2-piece split (whole
 * events and the byte machine), with and without the rewrite and the usage-event drop. */
static void expect_finish(const char *in, bool finished, const char *want)
{
    size_t len = strlen(in);
    all_splits(in, NULL, false, in); /* the bytes pass untouched */
    for (size_t cut = 0; cut <= len; cut++) {
        for (int k = 0; k < 2; k++) {
            run_t r = run_cuts(in, len, &cut, 1, k ? PUB_MODEL : NULL, k == 1);
            if (r.obs.finished != finished || strcmp(r.obs.finish_reason, want) != 0)
                fail_msg("%s cut %zu: finished %d [%s], want %d [%s]", in, cut, r.obs.finished,
                         r.obs.finish_reason, finished, want);
            free(r.out.p);
        }
    }
}

/* The same for a whole JSON answer: json mode's whole reading in one piece, its runs and the
 * byte machine when split. */
static void expect_finish_json(const char *in, bool finished, const char *want)
{
    size_t len = strlen(in);
    json_splits(in, NULL, in); /* the bytes pass untouched */
    for (size_t cut = 0; cut <= len; cut++) {
        lx_sse_scan_t sc;
        assert_int_equal(lx_sse_scan_init_json(&sc, NULL, 0, NULL), 0);
        feed_two(&sc, in, len, cut, NULL);
        if (sc.finished != finished || strcmp(sc.finish_reason, want) != 0)
            fail_msg("%s cut %zu: finished %d [%s], want %d [%s]", in, cut, sc.finished,
                     sc.finish_reason, finished, want);
        lx_sse_scan_dispose(&sc);
    }
}

static void test_finish_reason(void **state)
{
    (void)state;
    /* the last non-empty value of any choice, across events and within one */
    expect_finish("data: {\"choices\":[{\"index\":0,\"finish_reason\":null}]}\n\n"
                  "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"tool_calls\"}]}\n\n",
                  true, "tool_calls");
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"stop\"},{\"delta\":{},"
                  "\"finish_reason\":\"length\"},{\"finish_reason\":null}]}\n\n",
                  true, "length");
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"content_filter\"}]}\n\n",
                  true, "content_filter");
    /* a value with an escape, a control or a non-ASCII byte finishes, but is not kept: the one
     * before stays */
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"st\\u006fp\"}]}\n\n", true, "");
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"caf\xc3\xa9\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"a\tb\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"x\\\"y\"}]}\n\n",
                  true, "stop");
    /* empty and null finish nothing; finish_reason outside a choice is not the choice's */
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"\"}]}\n\n"
                  "data: {\"finish_reason\":\"top\",\"choices\":[{\"delta\":{\"finish_reason\":"
                  "\"deep\"}}],\"x\":{\"choices\":[{\"finish_reason\":\"nested\"}]}}\n\n",
                  false, "");
    /* 31 bytes fit; longer values keep their first 31 */
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"abcdefghijklmnopqrstuvwxyz01234\"}]}"
                  "\n\n",
                  true, "abcdefghijklmnopqrstuvwxyz01234");
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"abcdefghijklmnopqrstuvwxyz0123456789"
                  "-and-more\"}]}\n\n",
                  true, "abcdefghijklmnopqrstuvwxyz01234");
    /* a long bad value: the truncation does not hide its bad byte */
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"abcdefghijklmnopqrstuvwxyz0123456789"
                  "\\n\"}]}\n\n",
                  true, "stop");
    /* an event cut by the stream's end keeps no value it had not closed */
    expect_finish("data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"
                  "data: {\"choices\":[{\"finish_reason\":\"leng",
                  true, "stop");
    /* CRLF framing and several data lines take the byte machine */
    expect_finish("data: {\"choices\":[{\"index\":0,\r\ndata: \"finish_reason\":\r\n"
                  "data: \"stop\"}]}\r\n\r\n",
                  true, "stop");

    /* whole answers */
    expect_finish_json("{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                       "\"assistant\",\"content\":\"a long enough answer \\\" with escapes\"},"
                       "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":1}}",
                       true, "tool_calls");
    expect_finish_json("{\"choices\":[{\"finish_reason\":\"stop\"},{\"finish_reason\":\"st\\u006fp"
                       "\"}]}",
                       true, "stop");
    expect_finish_json("{\"choices\":[{\"finish_reason\":\"a-finish-reason-of-more-than-thirty-"
                       "one-bytes\"}]}",
                       true, "a-finish-reason-of-more-than-th");
    expect_finish_json("{\"choices\":[{\"finish_reason\":null}],\"finish_reason\":\"x\"}", false,
                       "");
    expect_finish_json("{\"choices\":[{\"finish_reason\":\"\\u0073top\"}]}", true, "");
}

/* The whole-read paths give way where the byte machine carries state from one member to the
 * next: of two usage objects, one over LX_SSE_USAGE_MAX keeps the counts of the one before.
 * In one read (whole) and split (byte machine), as an answer and as an event. */
static void test_whole_read_second_usage(void **state)
{
    (void)state;
    char doc[1024];
    int n = snprintf(doc, sizeof(doc),
                     "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7},"
                     "\"usage\":{\"a\":\"%0600d\"}}",
                     0);
    assert_true(n > 0 && (size_t)n < sizeof(doc));
    char ev[1100];
    int m = snprintf(ev, sizeof(ev), "data: %s\n\n", doc);
    assert_true(m > 0 && (size_t)m < sizeof(ev));
    for (int json = 0; json < 2; json++) {
        const char *in = json ? doc : ev;
        size_t len = json ? (size_t)n : (size_t)m;
        size_t cuts[] = {len, 1, len / 2};
        for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
            lx_sse_scan_t sc;
            assert_int_equal(json ? lx_sse_scan_init_json(&sc, NULL, 0, NULL)
                                  : lx_sse_scan_init(&sc, NULL, 0, false, NULL),
                             0);
            feed_two(&sc, in, len, cuts[c], NULL);
            assert_int_equal(sc.prompt_tokens, 5);
            assert_int_equal(sc.completion_tokens, 7);
            assert_false(sc.has_usage);
            assert_true(sc.usage_truncated);
            assert_int_equal(sc.events, json ? 0 : 1);
            lx_sse_scan_dispose(&sc);
        }
    }
}

/* json mode's fast paths: keys that cannot matter are skipped like values (a nested "model"
 * or "usage" key, or one under choices but not in a choice, changes nothing), keys that can
 * are copied in runs (an over-long one is ignored, an escaped one is not the name), punctuation
 * inside the captured usage object is copied, and the usage text is read directly in its
 * usual shape and by the general reading otherwise - with the same counts. */
static void test_json_fast_paths(void **state)
{
    (void)state;
    /* nested look-alikes: only the top-level model is rewritten, only the top-level usage is
     * kept, a finish_reason outside a choice object does not finish */
    lx_sse_scan_t o = json_splits(
        "{\"a\":{\"model\":\"n1\",\"usage\":{\"prompt_tokens\":99}},\"b\":[{\"model\":\"n2\"}],"
        "\"choices\":[[{\"finish_reason\":\"stop\"}],{\"x\":{\"finish_reason\":\"stop\"}}],"
        "\"model_and_a_key_longer_than_the_limit\":\"k\",\"mod\\u0065l\":\"e\",\"model\":\"up\","
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}",
        "P",
        "{\"a\":{\"model\":\"n1\",\"usage\":{\"prompt_tokens\":99}},\"b\":[{\"model\":\"n2\"}],"
        "\"choices\":[[{\"finish_reason\":\"stop\"}],{\"x\":{\"finish_reason\":\"stop\"}}],"
        "\"model_and_a_key_longer_than_the_limit\":\"k\",\"mod\\u0065l\":\"e\",\"model\":\"P\","
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}");
    assert_false(o.finished);
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, 1);
    assert_int_equal(o.completion_tokens, 2);
    assert_int_equal(o.total_tokens, 3);
    assert_int_equal(o.usage_len, strlen("{\"prompt_tokens\":1,\"completion_tokens\":2,"
                                         "\"total_tokens\":3}"));
    assert_memory_equal(o.usage, "{\"prompt_tokens\":1,", 19);

    /* a choice's finish_reason finishes; an empty one does not */
    o = json_splits("{\"choices\":[{\"finish_reason\":\"\"}]}", NULL,
                    "{\"choices\":[{\"finish_reason\":\"\"}]}");
    assert_false(o.finished);
    o = json_splits("{\"choices\":[{\"index\":0,\"finish_reason\" : \"length\"}]}", NULL,
                    "{\"choices\":[{\"index\":0,\"finish_reason\" : \"length\"}]}");
    assert_true(o.finished);

    /* usage shapes read directly: whitespace, details objects (first match inside, last member
     * wins at the top), details that are not objects, strings and literals */
    static const char u1[] =
        "{\"usage\": { \"prompt_tokens\" : 5 ,\n\"prompt_tokens\":6, \"total_tokens\":true,"
        "\"prompt_tokens_details\":{\"cached_tokens\":2,\"cached_tokens\":3,\"x\":\"y\"},"
        "\"completion_tokens_details\":{\"audio_tokens\":1,\"reasoning_tokens\":4},"
        "\"completion_tokens\":\"7\"} }";
    o = json_splits(u1, NULL, u1);
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, 6);
    assert_int_equal(o.completion_tokens, -1);
    assert_int_equal(o.total_tokens, -1);
    assert_int_equal(o.cached_tokens, 2);
    assert_int_equal(o.reasoning_tokens, 4);
    static const char u2[] = "{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":2},"
                             "\"prompt_tokens_details\":7,\"total_tokens\":{\"a\":1},"
                             "\"completion_tokens\":12345678901234567890}}";
    o = json_splits(u2, NULL, u2);
    assert_int_equal(o.cached_tokens, -1);
    assert_int_equal(o.total_tokens, -1);
    assert_int_equal(o.completion_tokens, -1);
    /* shapes left to the general reading: arrays, escapes, deeper nesting, a missing comma */
    static const char u3[] = "{\"usage\":{\"a\":[1,{\"b\":2}],\"prompt_\\u0074okens\":1,"
                             "\"prompt_tokens\":8,\"completion_tokens_details\":{\"x\":{\"y\":1},"
                             "\"reasoning_tokens\":9},\"total_tokens\":17}}";
    o = json_splits(u3, NULL, u3);
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, 8);
    assert_int_equal(o.reasoning_tokens, 9);
    assert_int_equal(o.total_tokens, 17);
    static const char u4[] = "{\"usage\":{\"prompt_tokens\":8 \"total_tokens\":17}}";
    o = json_splits(u4, NULL, u4);
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, 8); /* the general reading's word on the rest */
    assert_int_equal(o.total_tokens, -1);

    /* a usage object over the limit, in runs: truncated, nothing kept */
    str_t big = {0};
    const char *head = "{\"usage\":{\"prompt_tokens\":3,\"pad\":\"";
    str_add(&big, head, strlen(head));
    for (int k = 0; k < LX_SSE_USAGE_MAX; k++)
        str_add(&big, "z", 1);
    str_add(&big, "\"},\"model\":\"m\"}", 15);
    o = json_splits(big.p, NULL, big.p);
    assert_false(o.has_usage);
    assert_true(o.usage_truncated);
    assert_int_equal(o.prompt_tokens, -1);
    free(big.p);

    /* escapes in keys and values, and a model value with escapes, skipped whole */
    o = json_splits("{\"k\\\"ey\":\"v\\\\\\\"\",\"model\":\"a\\\"b\\\\\",\"x\":1}", "M",
                    "{\"k\\\"ey\":\"v\\\\\\\"\",\"model\":\"M\",\"x\":1}");
    assert_false(o.has_usage);
}

/* json mode passes whole values over: look-alike keys and brackets inside skipped values and
 * their strings change nothing, a value cut by a read boundary takes the byte steps, nesting
 * over the limit inside one still marks the answer malformed, and the tokenizer's state after a
 * skipped usage object is the byte-by-byte one (its first key makes the member unknown). */
static void test_json_whole_values(void **state)
{
    (void)state;
    static const char a[] =
        "{\"id\":\"x\\\"}]{\",\"n\" : "
        "[1,{\"model\":\"in\",\"choices\":[{\"finish_reason\":\"s\"}]}],"
        "\"e\":{\"usage\":{\"prompt_tokens\":9}},\"model\":\"up\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"a\",\"finish_reason\":\"x\",\"model\":\"y\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":4}}";
    static const char a_want[] =
        "{\"id\":\"x\\\"}]{\",\"n\" : "
        "[1,{\"model\":\"in\",\"choices\":[{\"finish_reason\":\"s\"}]}],"
        "\"e\":{\"usage\":{\"prompt_tokens\":9}},\"model\":\"P\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"a\",\"finish_reason\":\"x\",\"model\":\"y\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":4}}";
    lx_sse_scan_t o = json_splits(a, "P", a_want);
    assert_true(o.finished);
    assert_true(o.has_usage);
    assert_int_equal(o.prompt_tokens, 3);
    assert_int_equal(o.total_tokens, 4);
    assert_false(o.malformed);
    /* nothing under a skipped value finishes */
    o = json_splits("{\"x\":{\"choices\":[{\"finish_reason\":\"stop\"}]}}", NULL,
                    "{\"x\":{\"choices\":[{\"finish_reason\":\"stop\"}]}}");
    assert_false(o.finished);
    assert_false(o.has_usage);

    /* 70 levels inside a skipped value */
    str_t deep = {0};
    str_add(&deep, "{\"x\":", 5);
    for (int k = 0; k < 70; k++)
        str_add(&deep, "[", 1);
    for (int k = 0; k < 70; k++)
        str_add(&deep, "]", 1);
    str_add(&deep, ",\"usage\":{\"total_tokens\":2}}", 28);
    o = json_splits(deep.p, NULL, deep.p);
    assert_true(o.malformed);
    assert_int_equal(o.total_tokens, 2);
    free(deep.p);

    /* an empty usage object leaves the member named: a value after a stray ':' is usage again;
     * one with a key does not */
    o = json_splits("{\"usage\":{} : {\"total_tokens\":5}}", NULL,
                    "{\"usage\":{} : {\"total_tokens\":5}}");
    assert_true(o.has_usage);
    assert_int_equal(o.total_tokens, 5);
    o = json_splits("{\"usage\":{\"total_tokens\":1} : {\"total_tokens\":5}}", NULL,
                    "{\"usage\":{\"total_tokens\":1} : {\"total_tokens\":5}}");
    assert_int_equal(o.total_tokens, 1);
    assert_int_equal(o.usage_len, strlen("{\"total_tokens\":1}"));
    /* a key that is also the model value (after a stray ','): replaced, closing quote kept */
    o = json_splits("{\"model\",:\"m\",\"a\":1}", "P", "{\"model\",:\"P\",\"a\":1}");
    assert_false(o.malformed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_text_completion),
        cmocka_unit_test(test_vllm),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cr_bom),
        cmocka_unit_test(test_error_event),
        cmocka_unit_test(test_model_rules),
        cmocka_unit_test(test_drop_rules),
        cmocka_unit_test(test_immediate),
        cmocka_unit_test(test_many_events_per_read),
        cmocka_unit_test(test_hold_overflow),
        cmocka_unit_test(test_usage_limits),
        cmocka_unit_test(test_malformed_and_errors),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_json_fast_paths),
        cmocka_unit_test(test_json_whole_values),
        cmocka_unit_test(test_whole_read_second_usage),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_finish_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
