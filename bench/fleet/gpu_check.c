/*
 * gpu_check.c - the GPU-fleet benchmark's checks of its own workload (`--check`, a ctest):
 * the properties the figures rest on. A schedule has about rate x seconds arrivals in time
 * order; a body is the same however often it is built; turn k's prompt (the bytes after
 * "messages", which the replicas hash) starts with turn k-1's whole prompt but its closing
 * "]}", so a conversation's history is a cacheable prefix; first turns of one system prompt
 * share that prompt; the texts hold no byte that needs a JSON escape; the capacity model
 * orders warm above cold.
 */
#include "gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;

static void check(bool ok, const char *what, long i)
{
    if (!ok && fails++ < 20)
        fprintf(stderr, "llmux-fleet-gpu --check: %s (arrival %ld)\n", what, i);
}

static const char *prompt_of(const gb_buf_t *b, size_t *len)
{
    const char *p = strstr(b->p, "\"messages\"");
    if (p == NULL) {
        *len = 0;
        return b->p;
    }
    p += 10;
    *len = b->len - (size_t)(p - b->p);
    return p;
}

/* Structure and bytes of one body: JSON-safe text, the turn's max_tokens, the closing. */
static void check_body(const gb_work_t *w, const gb_arrival_t *a, const gb_buf_t *b, long i)
{
    char mt[48];
    snprintf(mt, sizeof(mt), "\"max_tokens\":%d,", gb_out_tokens(w, a->conv, a->turn));
    check(strstr(b->p, mt) != NULL, "the body carries the turn's max_tokens", i);
    check(b->len > 4 && memcmp(b->p + b->len - 4, "\"}]}", 4) == 0, "the body's closing", i);
    bool safe = true;
    for (size_t k = 0; k < b->len; k++)
        safe &= (unsigned char)b->p[k] >= 0x20 && b->p[k] != '\\';
    check(safe, "no byte of the body needs a JSON escape", i);
    size_t users = 0, assistants = 0;
    for (const char *p = b->p; (p = strstr(p, "\"role\":\"")) != NULL; p += 8) {
        users += strncmp(p + 8, "user\"", 5) == 0;
        assistants += strncmp(p + 8, "assistant\"", 10) == 0;
    }
    check(users == a->turn && assistants + 1 == a->turn, "one user message per turn", i);
}

/* Turn k's prompt starts with turn k-1's, but its closing "]}". */
static void check_history(const gb_work_t *w, const gb_arrival_t *a, const gb_buf_t *b,
                          gb_buf_t *tmp, long i)
{
    gb_arrival_t prev = *a;
    size_t nc, np;
    const char *pc = prompt_of(b, &nc);
    if (a->turn == 1) {
        check(nc > w->sys_len[a->sys] && memmem(pc, nc, w->sys[a->sys], w->sys_len[a->sys]) ==
                                             pc + strlen(":[{\"role\":\"system\",\"content\":\""),
              "a first turn starts with its system prompt", i);
        return;
    }
    prev.turn--;
    check(gb_body(w, &prev, tmp) == 0, "the previous turn's body", i);
    const char *pp = prompt_of(tmp, &np);
    check(np > 2 && np - 2 < nc && memcmp(pc, pp, np - 2) == 0,
          "a turn's prompt extends the previous turn's", i);
}

int gb_check_work(const gb_work_t *w, const lx_mock_gpu_t *g)
{
    gb_arrival_t *a = NULL;
    double rate = 50, secs = 20;
    long n = gb_schedule(w, rate, secs, 7, &a);
    fails = 0;
    double mean = rate * secs;
    check(n > 0 && fabs((double)n - mean) < 5 * sqrt(mean), "arrivals near rate x seconds", n);
    for (long i = 1; i < n; i++)
        check(a[i].t_ns >= a[i - 1].t_ns && a[i].t_ns < (uint64_t)(secs * 1e9), "arrival order", i);
    gb_buf_t b1 = {0}, b2 = {0}, tmp = {0};
    for (long i = 0; i < n && i < 400; i++) {
        check(gb_body(w, &a[i], &b1) == 0 && gb_body(w, &a[i], &b2) == 0, "a body is built", i);
        check(b1.len == b2.len && memcmp(b1.p, b2.p, b1.len) == 0, "a body is built the same", i);
        check_body(w, &a[i], &b1, i);
        check_history(w, &a[i], &b1, &tmp, i);
    }
    gb_capacity_t c;
    gb_capacity(w, a, n < 400 ? n : 400, g, &c);
    check(c.capacity_cold > 0 && c.capacity_warm > c.capacity_cold &&
              c.uncached_warm < 0.2 * c.prompt_tokens,
          "the capacity model: warm above cold, a small uncached share", -1);
    free(b1.p);
    free(b2.p);
    free(tmp.p);
    free(a);
    return fails;
}
