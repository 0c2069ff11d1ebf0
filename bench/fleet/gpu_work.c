/*
 * gpu_work.c - the GPU-fleet workload: shared system prompts, multi-turn conversations whose
 * history grows, Poisson arrivals, the request bodies, and the replicas' capacity model.
 *
 * Everything is a function of the seed: a piece of text is a hash of (seed, what, conversation,
 * turn), so any turn's body can be rebuilt on its own, in any order, identically for every
 * target. The assistant's replies in the history are made up here (as long as the turn's
 * max_tokens, 4 bytes a token), not taken from the answers, so the bodies do not depend on
 * what a target answered.
 */
#include "gpu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t key4(uint64_t seed, uint64_t what, uint64_t a, uint64_t b)
{
    return mix64(seed ^ mix64(what ^ mix64(a ^ mix64(b))));
}

static int buf_grow(gb_buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(gb_buf_t *b, const char *s, size_t n)
{
    if (buf_grow(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int buf_str(gb_buf_t *b, const char *s)
{
    return buf_put(b, s, strlen(s));
}

static const char *const syl[] = {"ka",  "lo", "mi", "ne",  "ru",  "ta", "shi", "po",  "ven", "dor",
                                  "al",  "is", "um", "qua", "rex", "ti", "ba",  "zen", "or",  "el",
                                  "cor", "da", "fi", "gu",  "hor", "ja", "mo",  "nu",  "pe",  "sa"};

/* len bytes of lowercase words, spaces and full stops (JSON-safe), a function of key. */
static int text(gb_buf_t *b, uint64_t key, size_t len)
{
    if (buf_grow(b, len) != 0)
        return -1;
    size_t end = b->len + len;
    uint64_t i = 0;
    while (b->len < end) {
        uint64_t r = mix64(key + i++);
        int n = 1 + (int)(r % 3);
        r /= 3;
        for (int k = 0; k < n && b->len < end; k++) {
            const char *s = syl[r % (sizeof(syl) / sizeof(syl[0]))];
            r /= sizeof(syl) / sizeof(syl[0]);
            for (; *s != '\0' && b->len < end; s++)
                b->p[b->len++] = *s;
        }
        if (b->len < end)
            b->p[b->len++] = (r % 11 == 0) ? '.' : ' ';
        if (b->len < end && b->p[b->len - 1] == '.')
            b->p[b->len++] = ' ';
    }
    b->p[b->len] = '\0';
    return 0;
}

static int range(uint64_t key, int lo, int hi)
{
    return hi <= lo ? lo : lo + (int)(key % (uint64_t)(hi - lo + 1));
}

int gb_work_init(gb_work_t *w)
{
    w->sys = calloc((size_t)w->n_prompts, sizeof(*w->sys));
    w->sys_len = calloc((size_t)w->n_prompts, sizeof(*w->sys_len));
    if (w->sys == NULL || w->sys_len == NULL)
        return -1;
    for (int i = 0; i < w->n_prompts; i++) {
        gb_buf_t b = {0};
        char head[96];
        int tokens = range(key4(w->seed, 1, (uint64_t)i, 0), w->sys_min, w->sys_max);
        /* distinct from the first bytes, as real system prompts are */
        int hl = snprintf(head, sizeof(head), "You are agent %d of the fleet help desk. ", i);
        if (buf_put(&b, head, (size_t)hl) != 0 ||
            text(&b, key4(w->seed, 2, (uint64_t)i, 0), (size_t)tokens * 4 - (size_t)hl) != 0) {
            free(b.p);
            return -1;
        }
        w->sys[i] = b.p;
        w->sys_len[i] = b.len;
    }
    return 0;
}

void gb_work_free(gb_work_t *w)
{
    for (int i = 0; w->sys != NULL && i < w->n_prompts; i++)
        free(w->sys[i]);
    free(w->sys);
    free(w->sys_len);
    w->sys = NULL;
    w->sys_len = NULL;
}

int gb_out_tokens(const gb_work_t *w, uint32_t conv, int turn)
{
    return range(key4(w->seed, 3, conv, (uint64_t)turn), w->out_min, w->out_max);
}

static int user_tokens(const gb_work_t *w, uint32_t conv, int turn)
{
    return range(key4(w->seed, 4, conv, (uint64_t)turn), w->user_min, w->user_max);
}

int gb_body(const gb_work_t *w, const gb_arrival_t *a, gb_buf_t *out)
{
    char head[160];
    out->len = 0;
    int hl = snprintf(head, sizeof(head),
                      "{\"model\":\"%s\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                      "true},\"max_tokens\":%d,\"messages\":[{\"role\":\"system\",\"content\":\"",
                      GB_MODEL, gb_out_tokens(w, a->conv, a->turn));
    int rc = buf_put(out, head, (size_t)hl);
    rc |= buf_put(out, w->sys[a->sys], w->sys_len[a->sys]);
    for (int t = 1; t <= a->turn && rc == 0; t++) {
        rc |= buf_str(out, "\"},{\"role\":\"user\",\"content\":\"");
        rc |= text(out, key4(w->seed, 5, a->conv, (uint64_t)t),
                   (size_t)user_tokens(w, a->conv, t) * 4);
        if (t == a->turn)
            break;
        rc |= buf_str(out, "\"},{\"role\":\"assistant\",\"content\":\"");
        rc |= text(out, key4(w->seed, 6, a->conv, (uint64_t)t),
                   (size_t)gb_out_tokens(w, a->conv, t) * 4);
    }
    rc |= buf_str(out, "\"}]}");
    return rc ? -1 : 0;
}

/* ---- the schedule ---- */

typedef struct {
    uint32_t id;
    uint16_t sys, turns, next;
} conv_t;

static void conv_new(const gb_work_t *w, conv_t *c, uint32_t id, uint64_t *rng, bool mid)
{
    c->id = id;
    c->sys = (uint16_t)(mix64((*rng)++) % (uint64_t)w->n_prompts);
    c->turns = (uint16_t)range(mix64((*rng)++), w->turns_min, w->turns_max);
    /* the first pool starts mid-way, as if the conversations had begun before the run */
    c->next = (uint16_t)(mid ? range(mix64((*rng)++), 1, c->turns) : 1);
}

long gb_schedule(const gb_work_t *w, double rate, double seconds, uint64_t stream,
                 gb_arrival_t **out)
{
    uint64_t rng = mix64(w->seed ^ mix64(stream + 0x51ull));
    size_t pool = (size_t)(rate * w->gap_s + 0.5);
    pool = pool < 8 ? 8 : pool;
    size_t cap = (size_t)(rate * seconds * 1.2) + 64, n = 0;
    conv_t *convs = malloc(pool * sizeof(*convs));
    gb_arrival_t *a = malloc(cap * sizeof(*a));
    if (convs == NULL || a == NULL) {
        free(convs);
        free(a);
        return -1;
    }
    uint32_t next_id = (uint32_t)(stream << 24);
    for (size_t i = 0; i < pool; i++)
        conv_new(w, &convs[i], next_id++, &rng, true);
    double t = 0;
    for (;;) {
        double u = ((double)(mix64(rng++) >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        t += -log(u) / rate;
        if (t >= seconds)
            break;
        if (n == cap) {
            gb_arrival_t *na = realloc(a, cap * 2 * sizeof(*a));
            if (na == NULL) {
                free(convs);
                free(a);
                return -1;
            }
            a = na;
            cap *= 2;
        }
        conv_t *c = &convs[mix64(rng++) % pool];
        a[n++] = (gb_arrival_t){(uint64_t)(t * 1e9), c->id, c->sys, c->next};
        if (++c->next > c->turns)
            conv_new(w, c, next_id++, &rng, false);
    }
    free(convs);
    *out = a;
    return (long)n;
}

/* ---- the capacity model ---- */

/* The bytes after the body's "messages" key: what the mock hashes into prefix blocks. */
static const char *region(const gb_buf_t *b, size_t *len)
{
    const char *p = strstr(b->p, "\"messages\"");
    p = p ? p + 10 : b->p;
    *len = b->len - (size_t)(p - b->p);
    return p;
}

static size_t common_prefix(const char *a, size_t na, const char *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* The bytes of arrival a's prompt region that a replica holding its conversation can have
 * cached: the previous turn's prompt (its region but the closing "]}"), or, for a first turn,
 * the system message and the user message's opening shared by every conversation on it. */
static size_t reusable(const gb_work_t *w, const gb_arrival_t *a, const gb_buf_t *cur,
                       gb_buf_t *tmp)
{
    size_t nc, np;
    const char *rc = region(cur, &nc);
    if (a->turn > 1) {
        gb_arrival_t prev = *a;
        prev.turn--;
        if (gb_body(w, &prev, tmp) != 0)
            return 0;
        const char *rp = region(tmp, &np);
        return common_prefix(rc, nc, rp, np);
    }
    static const char open[] = "\"},{\"role\":\"user\",\"content\":\"";
    const char *s = strstr(rc, w->sys[a->sys]);
    return s ? (size_t)(s - rc) + w->sys_len[a->sys] + sizeof(open) - 1 : 0;
}

void gb_capacity(const gb_work_t *w, const gb_arrival_t *a, long n, const lx_mock_gpu_t *g,
                 gb_capacity_t *out)
{
    memset(out, 0, sizeof(*out));
    gb_buf_t cur = {0}, tmp = {0};
    double sum_prompt = 0, sum_unc = 0, sum_out = 0;
    long used = 0;
    size_t block = (size_t)g->block_tokens * 4;
    for (long i = 0; i < n; i++) {
        if (gb_body(w, &a[i], &cur) != 0)
            break;
        double prompt = (double)(cur.len / 4 ? cur.len / 4 : 1);
        double cached = (double)(reusable(w, &a[i], &cur, &tmp) / block * g->block_tokens);
        if (cached > prompt - 1)
            cached = prompt - 1;
        sum_prompt += prompt;
        sum_unc += prompt - cached;
        sum_out += gb_out_tokens(w, a[i].conv, a[i].turn);
        used++;
    }
    free(cur.p);
    free(tmp.p);
    if (used == 0)
        return;
    out->prompt_tokens = sum_prompt / (double)used;
    out->uncached_warm = sum_unc / (double)used;
    out->out_tokens = sum_out / (double)used;
    double itl = g->itl_us * (1.0 + g->itl_alpha * (g->max_running - 1)) / 1e6;
    double decode = (out->out_tokens - 1) * itl;
    out->service_warm_s =
        (g->prefill_base_us + g->prefill_us_per_token * out->uncached_warm) / 1e6 + decode;
    out->service_cold_s =
        (g->prefill_base_us + g->prefill_us_per_token * out->prompt_tokens) / 1e6 + decode;
    out->capacity_warm = GB_REPLICAS * g->max_running / out->service_warm_s;
    out->capacity_cold = GB_REPLICAS * g->max_running / out->service_cold_s;
}
