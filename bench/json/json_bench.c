/*
 * json_bench.c - the request body scan on the worst shapes we can build, in ms per MiB.
 *
 * Builds each body in memory (about 1 MiB unless named otherwise), then times, on the
 * thread's CPU clock, the best of several runs of:
 *   scan   lx_body_scan() (the direct pass, and the reference scan when it gives up),
 *   json   core/json's tokenizer alone, every token read (depth limit 512),
 *   prefs  lx_prefs_parse() + lx_prefs_request_params() where the body has a provider,
 *   old    with -DLX_BENCH_OLD, old_lx_body_scan(): src/gateway/body.c of an older commit,
 *          compiled beside it by bench/json/run.sh (symbols renamed). Bodies on which it is
 *          quadratic are only timed up to OLD_MAX_BYTES, and one run over OLD_MAX_SECONDS
 *          ends its timing.
 * Prints a Markdown table. Not a test: nothing is asserted but the scan's verdict, printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "llm/body.h"
#include "route/prefs.h"

#ifdef LX_BENCH_OLD
int old_lx_body_scan(const char *body, size_t len, void *scan);
#define OLD_MAX_BYTES   (300u << 10)
#define OLD_MAX_SECONDS 2.0
#endif

#define MIB (1024.0 * 1024.0)

typedef struct body {
    char *p;
    size_t n, cap;
} body_t;

static void put(body_t *b, const char *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(body_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void rep(body_t *b, const char *s, size_t times)
{
    for (size_t k = 0; k < times; k++)
        puts_(b, s);
}

/* <unit> (joined by <sep>) until the body reaches <target> bytes. */
static void fill(body_t *b, const char *unit, const char *sep, size_t target)
{
    for (size_t k = 0; b->n < target; k++) {
        if (k > 0)
            puts_(b, sep);
        puts_(b, unit);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*scan_fn)(const body_t *b, char *verdict, size_t cap);

static int do_scan(const body_t *b, char *verdict, size_t cap)
{
    lx_body_scan_t s;
    int rc = lx_body_scan(b->p, b->n, &s);
    if (verdict != NULL)
        snprintf(verdict, cap, "%s", rc == 0 ? "accepted" : s.error);
    return rc;
}

static int do_json(const body_t *b, char *verdict, size_t cap)
{
    lx_json_t j;
    lx_json_token_t t;
    unsigned long n = 0;
    lx_json_init(&j, b->p, b->n, LX_BODY_MAX_DEPTH);
    while (lx_json_next(&j, &t) != LX_JSON_NONE)
        n++;
    if (verdict != NULL)
        snprintf(verdict, cap, "%lu tokens%s", n, j.error == LX_JSON_OK ? "" : ", error");
    return (int)(n & 1);
}

static int do_prefs(const body_t *b, char *verdict, size_t cap)
{
    lx_body_scan_t s;
    lx_prefs_t p;
    char err[160] = "";
    int rc = lx_body_scan(b->p, b->n, &s);
    if (rc == 0)
        rc = lx_prefs_parse(b->p, b->n, &s, &p, err, sizeof(err));
    if (rc == 0)
        rc = lx_prefs_request_params(b->p, b->n, &p, err, sizeof(err));
    if (verdict != NULL)
        snprintf(verdict, cap, "%s", rc == 0 ? "accepted" : err[0] ? err : s.error);
    return rc;
}

#ifdef LX_BENCH_OLD
static int do_old(const body_t *b, char *verdict, size_t cap)
{
    static _Alignas(16) char scan[8192]; /* the old lx_body_scan_t, whatever its layout */
    int rc = old_lx_body_scan(b->p, b->n, scan);
    if (verdict != NULL)
        snprintf(verdict, cap, "%s", rc == 0 ? "accepted" : "refused");
    return rc;
}
#endif

/* Best time of one call over at least 3 runs and 0.2 s, in ms per MiB; <limit> ends the
 * timing after one run that long. */
static double time_per_mib(scan_fn fn, const body_t *b, double limit)
{
    double best = 1e30, total = 0;
    size_t inner = b->n >= 65536 ? 1 : 65536 / b->n; /* small bodies: many calls per timing */
    for (int runs = 0; runs < 3 || (total < 0.2 && runs < 2000); runs++) {
        double t0 = now();
        for (size_t k = 0; k < inner; k++)
            (void)fn(b, NULL, 0);
        double dt = (now() - t0) / (double)inner;
        total += dt;
        if (dt < best)
            best = dt;
        if (dt > limit)
            break;
    }
    return best * 1000.0 / ((double)b->n / MIB);
}

static void row(const char *name, const body_t *b, bool deep, bool prefs)
{
    char verdict[96], jv[64];
    do_scan(b, verdict, sizeof(verdict));
    do_json(b, jv, sizeof(jv));
    double scan = time_per_mib(do_scan, b, 1e9);
    double json = time_per_mib(do_json, b, 1e9);
    char size[32];
    if (b->n < 65536)
        snprintf(size, sizeof(size), "%zu B", b->n);
    else
        snprintf(size, sizeof(size), "%.2f MiB", (double)b->n / MIB);
    printf("| %s | %s | %s | %.2f | %.2f |", name, size, verdict, scan, json);
    if (prefs)
        printf(" %.2f |", time_per_mib(do_prefs, b, 1e9));
    else
        printf(" |");
#ifdef LX_BENCH_OLD
    if (deep && b->n > OLD_MAX_BYTES)
        printf(" (not run: quadratic) |");
    else
        printf(" %.2f |", time_per_mib(do_old, b, OLD_MAX_SECONDS));
#else
    (void)deep;
#endif
    printf("\n");
    fflush(stdout);
}

static void reset(body_t *b)
{
    b->n = 0;
}

/* <head>[B,B,...]} with blocks B of <depth> - 2 <open>, <mid>, as many <close> (nesting
 * <depth> with the root object and the outer array). */
static void blocks(body_t *b, const char *head, int depth, const char *open, const char *mid,
                   const char *close, size_t target)
{
    reset(b);
    puts_(b, head);
    puts_(b, "[");
    for (size_t k = 0; b->n < target; k++) {
        if (k > 0)
            puts_(b, ",");
        rep(b, open, (size_t)depth - 2);
        puts_(b, mid);
        rep(b, close, (size_t)depth - 2);
    }
    puts_(b, "]}");
}

/* {"a":<n levels>} closed again. */
static void deep(body_t *b, const char *head, size_t levels, const char *open, const char *close)
{
    reset(b);
    puts_(b, head);
    rep(b, open, levels);
    rep(b, close, levels);
    puts_(b, "}");
}

int main(int argc, char **argv)
{
    size_t target = argc > 1 ? (size_t)atof(argv[1]) * (1u << 20) : 1u << 20;
    body_t b = {0};
    printf("| body | size | verdict | scan ms/MiB | json ms/MiB | prefs ms/MiB |%s\n",
#ifdef LX_BENCH_OLD
           " old scan ms/MiB |"
#else
           ""
#endif
    );
    printf("|---|---|---|---|---|---|%s\n",
#ifdef LX_BENCH_OLD
           "---|"
#else
           ""
#endif
    );

    /* scenario 1's body (bench/run.sh), the hot path */
    reset(&b);
    puts_(&b, "{\"model\":\"bench/model\",\"messages\":[{\"role\":\"system\",\"content\":\"You "
              "are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"Write one sentence "
              "about the sea, in the style of a weather report, and keep it short please.\"}],"
              "\"max_tokens\":64,\"temperature\":0.7,\"mock\":{\"body_size\":380}}");
    row("scenario 1's chat body (276 B)", &b, false, false);

    /* the usual: a chat history, through the direct scan; with "models", the reference scan */
    const char *msg = "{\"role\":\"user\",\"content\":\"Summarise the following paragraph in one "
                      "sentence, keeping the numbers: revenue grew 12% to $4.1bn.\"}";
    reset(&b);
    puts_(&b, "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[");
    fill(&b, msg, ",", target);
    puts_(&b, "]}");
    row("chat history (direct scan)", &b, false, false);
    reset(&b);
    puts_(&b, "{\"model\":\"gpt-4o\",\"models\":[\"a\",\"b\"],\"messages\":[");
    fill(&b, msg, ",", target);
    puts_(&b, "]}");
    row("chat history + models (reference scan)", &b, false, false);

    /* nesting */
    blocks(&b, "{\"a\":", 64, "[", "", "]", target);
    row("`[[...]]` blocks 64 deep (direct scan's limit)", &b, false, false);
    blocks(&b, "{\"a\":", LX_BODY_MAX_DEPTH, "[", "", "]", target);
    row("`[[...]]` blocks 512 deep (the limit)", &b, false, false);
    blocks(&b, "{\"a\":", LX_BODY_MAX_DEPTH, "{\"a\":", "0", "}", target);
    row("`{\"a\":{...}}` blocks 512 deep", &b, false, false);
    blocks(&b, "{\"provider\":{\"order\":[\"p\"],\"x\":", LX_BODY_MAX_DEPTH - 1, "{\"a\":", "0",
           "}", target);
    puts_(&b, "}");
    row("provider with 512-deep blocks", &b, false, true);
    static const size_t levels[] = {12500, 50000, 100000, 1000000};
    for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++) {
        char name[64];
        deep(&b, "{\"a\":", levels[k], "[", "]");
        snprintf(name, sizeof(name), "%zu levels `[` (past the limit)", levels[k]);
        row(name, &b, true, false);
    }
    deep(&b, "{\"models\":[\"m\"],\"a\":", 100000, "[", "]");
    row("100000 levels behind models", &b, true, false);

    /* a million tiny tokens */
    static const struct {
        const char *name, *head, *unit, *tail;
    } tiny[] = {
        {"`[[],[],...]`", "{\"a\":[", "[]", "]}"},
        {"`[0,0,...]`", "{\"a\":[", "0", "]}"},
        {"`[{},{},...]`", "{\"a\":[", "{}", "]}"},
        {"`[\"\",\"\",...]`", "{\"a\":[", "\"\"", "]}"},
        {"duplicate keys `{\"a\":0,\"a\":0,...}` nested", "{\"x\":{", "\"a\":0", "}}"},
        {"duplicate root keys `{\"a\":0,\"a\":0,...}`", "{", "\"a\":0", "}"},
        {"duplicate provider members", "{\"provider\":{", "\"zz\":0", "}}"},
        {"models with 1M entries", "{\"models\":[", "\"a\"", "]}"},
    };
    for (size_t k = 0; k < sizeof(tiny) / sizeof(tiny[0]); k++) {
        reset(&b);
        puts_(&b, tiny[k].head);
        fill(&b, tiny[k].unit, ",", target);
        puts_(&b, tiny[k].tail);
        row(tiny[k].name, &b, false, strstr(tiny[k].head, "provider") != NULL);
    }
    reset(&b);
    puts_(&b, "{");
    char key[32];
    for (size_t k = 0; b.n < target; k++) {
        snprintf(key, sizeof(key), "%s\"k%zu\":%zu", k ? "," : "", k, k);
        puts_(&b, key);
    }
    puts_(&b, ",\"provider\":{\"require_parameters\":true}}");
    row("unique root keys + require_parameters", &b, false, true);

    /* strings full of escapes */
    static const struct {
        const char *name, *unit;
    } esc[] = {
        {"string of `\\n`", "\\n"},
        {"string of `\\\"`", "\\\""},
        {"string of `\\u00e9`", "\\u00e9"},
        {"string of surrogate pairs `\\ud83d\\ude00`", "\\ud83d\\ude00"},
        {"string of plain text", "abcdefghijklmnopqrstuvwxyz012345"},
    };
    for (size_t k = 0; k < sizeof(esc) / sizeof(esc[0]); k++) {
        reset(&b);
        puts_(&b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"");
        fill(&b, esc[k].unit, "", target);
        puts_(&b, "\"}]}");
        row(esc[k].name, &b, false, false);
    }
    free(b.p);
    return 0;
}
