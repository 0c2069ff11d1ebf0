/*
 * mock_gpu.c - GPU-server mode: a simulated model server behind each mock that has it on.
 *
 * The engine (one per server, loop thread only) holds a FIFO of waiting requests, the count of
 * running sequences (at most max_running), and a prefix cache of block hashes in the manner of
 * vLLM's automatic prefix caching: a request's prompt bytes (everything after the body's first
 * "messages" or "prompt" key) are cut into blocks of block_tokens x 4 bytes, block i's hash
 * chains blocks 0..i; at admission the leading blocks found in the cache are hits, pinned for
 * the run; after the prefill the others enter the cache (pinned too); when the sequence ends
 * its blocks are unpinned into the LRU list, last block first, so a prefix outlives its tails.
 * A new block takes a never-used slot, else evicts the least recently unpinned one; pinned
 * slots are never evicted (a cache full of pinned blocks caches nothing more).
 *
 * Time: prefill = prefill_base_us + prefill_us_per_token x (prompt tokens - cached tokens);
 * then one token per itl_us x (1 + itl_alpha x (running - 1)), read per token. mock_conn.c
 * runs the timers and writes the bytes; this file decides who runs and how long things take.
 * Nothing here is random but the optional output length, a hash of the seed and the prompt.
 *
 * The figures tests and benchmarks read (lx_mock_gpu_stats) are published in atomics after
 * each change; lx_mock_set_gpu hands settings over under the mock's lock and waits until the
 * loop applied them (lx_mock_gpu_apply, run from the faults async handle).
 */
#include "mock_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BLOCKS_PER_REQ (1u << 20) /* blocks hashed per request; the rest counts uncached */
#define MAX_CACHE_BLOCKS   (1u << 21)
#define MAX_OUT_TOKENS     10000000u

static const char *const keys[4] = {"\"messages\"", "\"prompt\"", "\"max_tokens\"",
                                    "\"max_completion_tokens\""};

/* ---- settings ---- */

void lx_mock_gpu_defaults(lx_mock_gpu_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_running = 8;
    cfg->prefill_base_us = 1000;
    cfg->prefill_us_per_token = 100;
    cfg->itl_us = 10000;
    cfg->itl_alpha = 0.1;
    cfg->cache_blocks = 4096;
    cfg->block_tokens = 16;
    cfg->output_tokens = 16;
    cfg->seed = 1;
    strcpy(cfg->model_name, "mock-model");
}

static uint32_t clamp_u32(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The settings as the engine uses them: bounds, and a label value Prometheus can carry. */
static void sanitize(lx_mock_gpu_t *c)
{
    c->max_running = clamp_u32(c->max_running, 1, 1000000);
    c->prefill_base_us = clamp_u32(c->prefill_base_us, 0, 60000000);
    c->prefill_us_per_token = clamp_u32(c->prefill_us_per_token, 0, 1000000);
    c->itl_us = clamp_u32(c->itl_us, 0, 10000000);
    if (!(c->itl_alpha >= 0.0)) /* NaN too */
        c->itl_alpha = 0.0;
    if (c->itl_alpha > 1000.0)
        c->itl_alpha = 1000.0;
    c->cache_blocks = clamp_u32(c->cache_blocks, 1, MAX_CACHE_BLOCKS);
    c->block_tokens = clamp_u32(c->block_tokens, 1, 4096);
    c->output_tokens = clamp_u32(c->output_tokens, 1, MAX_OUT_TOKENS);
    c->model_name[sizeof(c->model_name) - 1] = '\0';
    if (c->model_name[0] == '\0')
        strcpy(c->model_name, "mock-model");
    for (char *p = c->model_name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '_';
}

/* ---- figures for other threads ---- */

static void publish(lx_mock_t *m)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    atomic_store(&m->g_running, e->running);
    atomic_store(&m->g_waiting, e->waiting);
    if (e->waiting > atomic_load(&m->g_max_waiting))
        atomic_store(&m->g_max_waiting, e->waiting);
    atomic_store(&m->g_cached, e->cached);
    uint64_t used = (uint64_t)e->pinned + e->extra;
    atomic_store(&m->g_used, used > UINT32_MAX ? UINT32_MAX : (uint32_t)used);
    atomic_store(&m->g_cache_blocks, e->nslots);
}

void lx_mock_gpu_stats(lx_mock_t *m, lx_mock_gpu_stats_t *out)
{
    out->prefix_queries = atomic_load(&m->g_queries);
    out->prefix_hits = atomic_load(&m->g_hits);
    out->success = atomic_load(&m->g_success);
    out->admitted = atomic_load(&m->g_admitted);
    out->running = atomic_load(&m->g_running);
    out->waiting = atomic_load(&m->g_waiting);
    out->max_waiting = atomic_load(&m->g_max_waiting);
    out->cached_blocks = atomic_load(&m->g_cached);
    uint32_t total = atomic_load(&m->g_cache_blocks);
    uint32_t used = atomic_load(&m->g_used);
    out->kv_usage = total == 0 ? 0.0 : used >= total ? 1.0 : (double)used / total;
}

/* ---- the prefix cache ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void cache_free(lx_mock_gpu_engine_t *e)
{
    free(e->slots);
    free(e->table);
    e->slots = NULL;
    e->table = NULL;
    e->nslots = e->tmask = e->fresh = e->cached = e->pinned = 0;
    e->lru_head = e->lru_tail = -1;
}

/* An empty cache of n slots; on failure, none (nothing is ever cached). */
static void cache_init(lx_mock_gpu_engine_t *e, uint32_t n)
{
    cache_free(e);
    uint32_t tsize = 2;
    while (tsize < 2 * n)
        tsize *= 2;
    e->slots = calloc(n, sizeof(*e->slots));
    e->table = malloc(tsize * sizeof(*e->table));
    if (e->slots == NULL || e->table == NULL) {
        cache_free(e);
        return;
    }
    memset(e->table, 0xff, tsize * sizeof(*e->table)); /* -1: empty */
    e->nslots = n;
    e->tmask = tsize - 1;
}

/* The slot holding hash, or -1. */
static int32_t cache_find(const lx_mock_gpu_engine_t *e, uint64_t hash)
{
    if (e->nslots == 0)
        return -1;
    for (uint32_t i = (uint32_t)hash & e->tmask;; i = (i + 1) & e->tmask) {
        int32_t s = e->table[i];
        if (s < 0)
            return -1;
        if (e->slots[s].hash == hash)
            return s;
    }
}

static void table_put(lx_mock_gpu_engine_t *e, int32_t s)
{
    uint32_t i = (uint32_t)e->slots[s].hash & e->tmask;
    while (e->table[i] >= 0)
        i = (i + 1) & e->tmask;
    e->table[i] = s;
}

/* Removes slot s from the table (linear probing: the entries after it move back). */
static void table_del(lx_mock_gpu_engine_t *e, int32_t s)
{
    uint32_t i = (uint32_t)e->slots[s].hash & e->tmask;
    while (e->table[i] != s)
        i = (i + 1) & e->tmask;
    for (uint32_t j = (i + 1) & e->tmask; e->table[j] >= 0; j = (j + 1) & e->tmask) {
        uint32_t home = (uint32_t)e->slots[e->table[j]].hash & e->tmask;
        /* entry j may fill hole i when its home is not in (i, j] (cyclically) */
        if (((j - home) & e->tmask) >= ((j - i) & e->tmask)) {
            e->table[i] = e->table[j];
            i = j;
        }
    }
    e->table[i] = -1;
}

static void lru_unlink(lx_mock_gpu_engine_t *e, int32_t s)
{
    lx_mock_gpu_slot_t *x = &e->slots[s];
    if (x->prev >= 0)
        e->slots[x->prev].next = x->next;
    else
        e->lru_head = x->next;
    if (x->next >= 0)
        e->slots[x->next].prev = x->prev;
    else
        e->lru_tail = x->prev;
    x->prev = x->next = -1;
}

static void lru_append(lx_mock_gpu_engine_t *e, int32_t s)
{
    lx_mock_gpu_slot_t *x = &e->slots[s];
    x->prev = e->lru_tail;
    x->next = -1;
    if (e->lru_tail >= 0)
        e->slots[e->lru_tail].next = s;
    else
        e->lru_head = s;
    e->lru_tail = s;
}

static void pin(lx_mock_gpu_engine_t *e, int32_t s)
{
    if (e->slots[s].ref++ == 0) {
        lru_unlink(e, s);
        e->pinned++;
    }
}

static void unpin(lx_mock_gpu_engine_t *e, int32_t s)
{
    if (--e->slots[s].ref == 0) {
        lru_append(e, s);
        e->pinned--;
    }
}

/* A pinned slot for hash: the one holding it, a never-used one, or the least recently
 * unpinned one (evicted); -1 when every slot is pinned. */
static int32_t cache_take(lx_mock_gpu_engine_t *e, uint64_t hash)
{
    int32_t s = cache_find(e, hash);
    if (s >= 0) {
        pin(e, s);
        return s;
    }
    if (e->fresh < e->nslots) {
        s = (int32_t)e->fresh++;
        e->cached++;
    } else if (e->lru_head >= 0) {
        s = e->lru_head;
        lru_unlink(e, s);
        table_del(e, s);
    } else {
        return -1;
    }
    e->slots[s].hash = hash;
    e->slots[s].ref = 1;
    e->slots[s].prev = e->slots[s].next = -1;
    e->pinned++;
    table_put(e, s);
    return s;
}

/* ---- the body scan ---- */

void lx_mock_gpu_begin(lx_mock_t *m, lx_mock_gpu_seq_t *seq)
{
    if (seq->cap > 65536)
        lx_mock_gpu_seq_dispose(seq); /* a huge prompt's arrays do not stay with the connection */
    seq->on = 1;
    memset(seq->match, 0, sizeof(seq->match));
    seq->in_prompt = 0;
    seq->num_state = 0;
    seq->max_tokens = -1;
    seq->block_bytes = m->gpu.cfg.block_tokens * 4;
    seq->fill = 0;
    seq->h = 0xcbf29ce484222325ull;
    seq->prompt_bytes = 0;
    seq->nblocks = 0;
}

static void push_block(lx_mock_gpu_seq_t *seq)
{
    uint64_t bh = mix(seq->h);
    seq->h = bh; /* the next block's hash starts from this one: a chain */
    seq->fill = 0;
    if (seq->nblocks >= MAX_BLOCKS_PER_REQ)
        return;
    if (seq->nblocks == seq->cap) {
        uint32_t cap = seq->cap ? seq->cap * 2 : 64;
        uint64_t *b = realloc(seq->blocks, cap * sizeof(*b));
        if (b == NULL)
            return; /* out of memory: the rest of the prompt counts as uncached */
        seq->blocks = b;
        int32_t *s = realloc(seq->slots, cap * sizeof(*s));
        if (s == NULL)
            return;
        seq->slots = s;
        seq->cap = cap;
    }
    seq->blocks[seq->nblocks++] = bh;
}

/* After a max_tokens key: ':' then an integer. */
static void number_byte(lx_mock_gpu_seq_t *seq, char c)
{
    int ws = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    int digit = c >= '0' && c <= '9';
    if (seq->num_state == 1) {
        seq->num_state = ws ? 1 : c == ':' ? 2 : 0;
    } else if (seq->num_state == 2) {
        seq->num_state = ws ? 2 : digit ? 3 : 0;
        seq->num = digit ? c - '0' : 0;
    } else if (digit) {
        if (seq->num < 100000000)
            seq->num = seq->num * 10 + (c - '0');
    } else {
        seq->max_tokens = seq->num;
        seq->num_state = 0;
    }
}

/* Every key starts with '"' and holds no other '"' but its last byte, so on a mismatch the
 * match restarts at 1 if the byte is '"', else at 0: one step per byte. */
static void match_byte(lx_mock_gpu_seq_t *seq, char c)
{
    for (int k = 0; k < 4; k++) {
        const char *key = keys[k];
        uint8_t pos = seq->match[k];
        if (key[pos] == c) {
            pos++;
            if (key[pos] == '\0') {
                pos = 0;
                if (k < 2)
                    seq->in_prompt = 1;
                else
                    seq->num_state = 1;
            }
        } else {
            pos = c == '"';
        }
        seq->match[k] = pos;
    }
}

void lx_mock_gpu_feed(lx_mock_gpu_seq_t *seq, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (seq->num_state)
            number_byte(seq, c);
        if (seq->in_prompt) {
            seq->h = (seq->h ^ (unsigned char)c) * 0x100000001b3ull; /* FNV-1a step */
            seq->prompt_bytes++;
            if (++seq->fill == seq->block_bytes)
                push_block(seq);
        }
        match_byte(seq, c); /* max_tokens may follow the messages */
    }
}

void lx_mock_gpu_finish_body(lx_mock_gpu_seq_t *seq)
{
    if (seq->num_state == 3) {
        seq->max_tokens = seq->num;
        seq->num_state = 0;
    }
}

uint32_t lx_mock_gpu_out_tokens(const lx_mock_t *m, const lx_mock_gpu_seq_t *seq, int64_t chunks)
{
    const lx_mock_gpu_t *cfg = &m->gpu.cfg;
    uint64_t n = seq->max_tokens > 0 ? (uint64_t)seq->max_tokens
                 : chunks >= 0       ? (uint64_t)chunks
                                     : cfg->output_tokens;
    if (n > MAX_OUT_TOKENS)
        n = MAX_OUT_TOKENS;
    if (n == 0)
        n = 1;
    if (cfg->random_output)
        n = 1 + mix(cfg->seed ^ mix(seq->h + seq->prompt_bytes)) % n;
    return (uint32_t)n;
}

/* ---- scheduling ---- */

uint64_t lx_mock_gpu_now_us(const lx_mock_t *m)
{
    return uv_now(&m->loop) * 1000;
}

uint64_t lx_mock_gpu_itl_us(const lx_mock_t *m)
{
    const lx_mock_gpu_engine_t *e = &m->gpu;
    uint32_t batch = e->running > 0 ? e->running : 1;
    return (uint64_t)((double)e->cfg.itl_us * (1.0 + e->cfg.itl_alpha * (batch - 1)) + 0.5);
}

static uint64_t blocks_for(const lx_mock_gpu_engine_t *e, uint64_t tokens)
{
    return (tokens + e->cfg.block_tokens - 1) / e->cfg.block_tokens;
}

/* The KV blocks seq uses beyond its pinned slots: the rest of its prompt and its output. */
static void set_extra(lx_mock_gpu_engine_t *e, lx_mock_gpu_seq_t *seq)
{
    uint64_t all = blocks_for(e, seq->prompt_tokens + seq->produced);
    uint32_t extra = all > seq->pinned ? (uint32_t)(all - seq->pinned) : 0;
    e->extra = e->extra - seq->extra + extra;
    seq->extra = extra;
}

/* Runs seq: pins its cached leading blocks, counts the prefix-cache figures, and tells its
 * connection when its prefill ends. */
static void admit(lx_mock_t *m, lx_mock_gpu_seq_t *seq)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    e->running++;
    seq->phase = LX_MOCK_GPU_RUNNING;
    seq->hit_blocks = 0;
    seq->pinned = 0;
    seq->extra = 0;
    seq->produced = 0;
    for (uint32_t i = 0; i < seq->nblocks; i++)
        seq->slots[i] = -1;
    while (seq->hit_blocks < seq->nblocks) {
        int32_t s = cache_find(e, seq->blocks[seq->hit_blocks]);
        if (s < 0)
            break;
        pin(e, s);
        seq->slots[seq->hit_blocks++] = s;
        seq->pinned++;
    }
    uint64_t cached = (uint64_t)seq->hit_blocks * e->cfg.block_tokens;
    if (cached >= seq->prompt_tokens) /* as vLLM: the last token is always computed */
        cached = seq->prompt_tokens - 1;
    seq->cached_tokens = cached;
    set_extra(e, seq);
    atomic_fetch_add(&m->g_queries, seq->prompt_tokens);
    atomic_fetch_add(&m->g_hits, cached);
    atomic_fetch_add(&m->g_admitted, 1);
    seq->due_us = lx_mock_gpu_now_us(m) + e->cfg.prefill_base_us +
                  (seq->prompt_tokens - cached) * e->cfg.prefill_us_per_token;
    lx_mock_conn_gpu_run(seq->conn);
}

/* Admits waiting requests, oldest first, while there is room. */
static void pump(lx_mock_t *m)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    while (e->qhead && e->running < e->cfg.max_running && !m->stopping) {
        lx_mock_gpu_seq_t *seq = e->qhead;
        e->qhead = seq->next;
        if (e->qhead)
            e->qhead->prev = NULL;
        else
            e->qtail = NULL;
        seq->next = seq->prev = NULL;
        e->waiting--;
        admit(m, seq);
    }
    publish(m);
}

int lx_mock_gpu_submit(lx_mock_t *m, lx_mock_gpu_seq_t *seq)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    if (seq->prompt_tokens == 0)
        seq->prompt_tokens = 1;
    if (e->qhead == NULL && e->running < e->cfg.max_running) {
        admit(m, seq);
        publish(m);
        return 0;
    }
    if (e->cfg.max_waiting > 0 && e->waiting >= e->cfg.max_waiting)
        return 429;
    seq->phase = LX_MOCK_GPU_WAITING;
    seq->next = NULL;
    seq->prev = e->qtail;
    if (e->qtail)
        e->qtail->next = seq;
    else
        e->qhead = seq;
    e->qtail = seq;
    e->waiting++;
    publish(m);
    return 0;
}

void lx_mock_gpu_prefilled(lx_mock_t *m, lx_mock_gpu_seq_t *seq)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    for (uint32_t i = seq->hit_blocks; i < seq->nblocks; i++) {
        seq->slots[i] = cache_take(e, seq->blocks[i]);
        if (seq->slots[i] >= 0)
            seq->pinned++;
    }
    set_extra(e, seq);
    publish(m);
}

void lx_mock_gpu_token(lx_mock_t *m, lx_mock_gpu_seq_t *seq)
{
    seq->produced++;
    set_extra(&m->gpu, seq);
    if (seq->produced % m->gpu.cfg.block_tokens == 1)
        publish(m);
}

void lx_mock_gpu_end(lx_mock_t *m, lx_mock_gpu_seq_t *seq, int success)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    if (seq->phase == LX_MOCK_GPU_WAITING) {
        if (seq->prev)
            seq->prev->next = seq->next;
        else
            e->qhead = seq->next;
        if (seq->next)
            seq->next->prev = seq->prev;
        else
            e->qtail = seq->prev;
        seq->next = seq->prev = NULL;
        e->waiting--;
    } else if (seq->phase == LX_MOCK_GPU_RUNNING) {
        for (uint32_t i = seq->nblocks; i-- > 0;) /* last block first: it is evicted first */
            if (seq->slots[i] >= 0)
                unpin(e, seq->slots[i]);
        seq->pinned = 0;
        e->extra -= seq->extra;
        seq->extra = 0;
        e->running--;
        if (success)
            atomic_fetch_add(&m->g_success, 1);
    }
    seq->phase = LX_MOCK_GPU_NONE;
    pump(m);
}

void lx_mock_gpu_seq_dispose(lx_mock_gpu_seq_t *seq)
{
    free(seq->blocks);
    free(seq->slots);
    seq->blocks = NULL;
    seq->slots = NULL;
    seq->nblocks = seq->cap = 0;
}

/* ---- settings handed over from other threads ---- */

int lx_mock_set_gpu(lx_mock_t *m, const lx_mock_gpu_t *cfg)
{
    pthread_mutex_lock(&m->lock);
    if (cfg)
        m->gpu_pending = *cfg;
    m->gpu_pending_on = cfg != NULL;
    uint64_t gen = atomic_fetch_add(&m->gpu_gen_wanted, 1) + 1;
    pthread_mutex_unlock(&m->lock);
    uv_async_send(&m->faults_async);
    uint64_t deadline = lx_mock_reply_now_ns() + 2000000000ull;
    while (atomic_load(&m->gpu_gen_applied) < gen) {
        if (lx_mock_reply_now_ns() >= deadline)
            return -1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void lx_mock_gpu_apply(lx_mock_t *m)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    uint64_t wanted = atomic_load(&m->gpu_gen_wanted);
    if (atomic_load(&m->gpu_gen_applied) >= wanted)
        return;
    pthread_mutex_lock(&m->lock);
    wanted = atomic_load(&m->gpu_gen_wanted);
    int on = m->gpu_pending_on;
    lx_mock_gpu_t cfg = m->gpu_pending;
    pthread_mutex_unlock(&m->lock);
    if (on) {
        sanitize(&cfg);
        int idle = e->running == 0 && e->waiting == 0;
        int regeom = e->slots == NULL || cfg.cache_blocks != e->cfg.cache_blocks ||
                     cfg.block_tokens != e->cfg.block_tokens;
        if (!idle && regeom) { /* the cache stays as it is while sequences hold slots */
            cfg.cache_blocks = e->cfg.cache_blocks;
            cfg.block_tokens = e->cfg.block_tokens;
        }
        e->cfg = cfg;
        if (idle)
            cache_init(e, cfg.cache_blocks);
    }
    e->on = on;
    pump(m);
    atomic_store(&m->gpu_gen_applied, wanted);
}

void lx_mock_gpu_free(lx_mock_t *m)
{
    cache_free(&m->gpu);
}

/* ---- GET /metrics ---- */

static int gauge(lx_mock_buf_t *b, const char *name, const char *help, const char *model,
                 const char *type, const char *value)
{
    return lx_mock_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{model_name=\"%s\"} %s\n", name,
                              help, name, type, name, model, value);
}

int lx_mock_gpu_metrics(lx_mock_t *m, lx_mock_buf_t *b)
{
    lx_mock_gpu_engine_t *e = &m->gpu;
    lx_mock_gpu_stats_t st;
    lx_mock_gpu_stats(m, &st);
    const char *model = e->cfg.model_name[0] ? e->cfg.model_name : "mock-model";
    int legacy = e->cfg.legacy_metrics;
    char v[64];
    b->len = 0;
    snprintf(v, sizeof(v), "%u.0", e->running);
    int rc = gauge(b, "vllm:num_requests_running", "Number of requests in model execution batches.",
                   model, "gauge", v);
    snprintf(v, sizeof(v), "%u.0", e->waiting);
    rc |= gauge(b, "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                model, "gauge", v);
    snprintf(v, sizeof(v), "%.6f", st.kv_usage);
    rc |= gauge(b, legacy ? "vllm:gpu_cache_usage_perc" : "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.", model, "gauge", v);
    snprintf(v, sizeof(v), "%llu.0", (unsigned long long)st.prefix_queries);
    rc |=
        gauge(b, legacy ? "vllm:gpu_prefix_cache_queries_total" : "vllm:prefix_cache_queries_total",
              "Prefix cache queries, in terms of number of queried tokens.", model, "counter", v);
    snprintf(v, sizeof(v), "%llu.0", (unsigned long long)st.prefix_hits);
    rc |= gauge(b, legacy ? "vllm:gpu_prefix_cache_hits_total" : "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.", model, "counter", v);
    snprintf(v, sizeof(v), "%llu.0", (unsigned long long)st.success);
    rc |= gauge(b, "vllm:request_success_total", "Count of successfully processed requests.", model,
                "counter", v);
    rc |= lx_mock_buf_printf(b,
                             "# HELP vllm:cache_config_info Information of the LLMCache\n"
                             "# TYPE vllm:cache_config_info gauge\n"
                             "vllm:cache_config_info{block_size=\"%u\","
                             "enable_prefix_caching=\"True\",num_gpu_blocks=\"%u\"} 1.0\n",
                             e->cfg.block_tokens, e->nslots);
    return rc ? UV_ENOMEM : 0;
}
