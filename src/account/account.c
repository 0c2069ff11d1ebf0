/*
 * account.c - the pure half of accounting (account.h): model allowlists with '*' wildcards,
 * the worst-case cost a request reserves at admission, the actual cost it settles at, and the
 * x-ratelimit-* headers with their Go-style durations. No state, no lock, no allocation: the
 * request path calls these between the body scan and lx_store_admit().
 *
 * Money is int64 µ$ and prices µ$ per million tokens (store/money.h), the configuration's
 * exact integer prices: no floating point anywhere.
 */
#include "account/account.h"

#include <string.h>

#include "core/strbuf.h"
#include "store/money.h"

/* ---- allowlists ------------------------------------------------------------------------- */

/*
 * The classic two-pointer wildcard match: walk the id; on a '*' remember where it is (and the
 * id position it started to cover), on a literal byte advance both, on a mismatch go back to
 * just after the last '*' and let it swallow one more byte. Backtracking only to the last star
 * is enough because '*' is the only wildcard: a later star can always cover whatever an earlier
 * one would have had to. Every mismatch moves <mark> forward, so the work is at most
 * len × strlen(pattern) byte comparisons, with no recursion and no allocation.
 */
bool lx_account_match(const char *pattern, const char *id, size_t len)
{
    size_t plen = strlen(pattern);
    size_t p = 0, s = 0;
    size_t star = SIZE_MAX, mark = 0;
    while (s < len) {
        if (p < plen && pattern[p] == '*') {
            star = p++;
            mark = s;
        } else if (p < plen && pattern[p] == id[s]) {
            p++;
            s++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            s = ++mark;
        } else {
            return false;
        }
    }
    while (p < plen && pattern[p] == '*')
        p++;
    return p == plen;
}

bool lx_account_allows(const lx_store_key_t *key, const char *id, size_t len)
{
    if (key == NULL || key->n_models == 0)
        return true;
    for (size_t i = 0; i < key->n_models; i++)
        if (lx_account_match(key->models[i], id, len))
            return true;
    return false;
}

/* ---- reservations and costs ------------------------------------------------------------- */

uint32_t lx_account_prompt_estimate(size_t body_len)
{
    size_t t = body_len / 4 + (body_len % 4 != 0);
    return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

enum price_kind { PRICE_PROMPT, PRICE_COMPLETION };

/*
 * A route's price in µ$ per million tokens: the configuration's exact integer prices (read
 * from the YAML text without floating point). The configuration bounds them to 0..$1e9; the
 * clamp keeps a cost from going negative whatever a hand-made route holds.
 */
static int64_t route_price(const lx_config_route_t *r, enum price_kind which)
{
    if (r == NULL)
        return 0;
    int64_t p = which == PRICE_PROMPT ? r->price_prompt_micros : r->price_completion_micros;
    return p < 0 ? 0 : p > LX_MONEY_MAX ? LX_MONEY_MAX : p;
}

int64_t lx_account_reserve(const lx_config_route_t *route, uint32_t prompt_tokens,
                           int64_t max_tokens, int64_t default_max_cost)
{
    int64_t pp = route_price(route, PRICE_PROMPT);
    if (max_tokens >= 0)
        return lx_money_cost(prompt_tokens, pp, max_tokens, route_price(route, PRICE_COMPLETION));
    int64_t prompt = lx_money_cost(prompt_tokens, pp, 0, 0);
    if (default_max_cost < 0)
        default_max_cost = 0;
    if (default_max_cost > LX_MONEY_MAX - prompt)
        return LX_MONEY_MAX;
    return prompt + default_max_cost;
}

int64_t lx_account_cost(const lx_config_route_t *route, int64_t prompt_tokens,
                        int64_t completion_tokens)
{
    return lx_money_cost(prompt_tokens, route_price(route, PRICE_PROMPT), completion_tokens,
                         route_price(route, PRICE_COMPLETION));
}

/* ---- headers ---------------------------------------------------------------------------- */

/* The largest duration written: 999999999999h59m59.999s (23 bytes); longer ones saturate. */
#define DURATION_MAX_MS (INT64_C(999999999999) * 3600000 + 3599999)

/* "<whole>[.<frac>]s" for <ms> below a minute, the fraction without trailing zeros. */
static void duration_seconds(lx_strbuf_t *sb, int64_t ms)
{
    lx_strbuf_i64(sb, ms / 1000);
    int64_t frac = ms % 1000;
    if (frac != 0) {
        char d[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                     (char)('0' + frac % 10)};
        size_t n = 4;
        while (d[n - 1] == '0')
            n--;
        lx_strbuf_mem(sb, d, n);
    }
    LX_STRBUF_LIT(sb, "s");
}

/* Go's time.Duration.String() at millisecond precision: "0s", "12ms", "1.5s", "6m0s",
 * "1h2m3s", "1h0m0.5s". Negative durations (a reset already passed) are "0s". */
size_t lx_account_duration(int64_t ms, char *buf)
{
    lx_strbuf_t sb = lx_strbuf_make(buf, 23);
    if (ms <= 0) {
        LX_STRBUF_LIT(&sb, "0s");
    } else if (ms < 1000) {
        lx_strbuf_i64(&sb, ms);
        LX_STRBUF_LIT(&sb, "ms");
    } else {
        if (ms > DURATION_MAX_MS)
            ms = DURATION_MAX_MS;
        int64_t h = ms / 3600000, m = ms / 60000 % 60;
        if (h > 0) {
            lx_strbuf_i64(&sb, h);
            LX_STRBUF_LIT(&sb, "h");
        }
        if (h > 0 || m > 0) {
            lx_strbuf_i64(&sb, m);
            LX_STRBUF_LIT(&sb, "m");
        }
        duration_seconds(&sb, ms % 60000);
    }
    size_t n = lx_strbuf_len(&sb, buf);
    buf[n] = '\0';
    return n;
}

/* "<name>: <value>\r\n" with a decimal value. */
static void header_u32(lx_strbuf_t *sb, const char *name, size_t name_len, uint32_t v)
{
    lx_strbuf_mem(sb, name, name_len);
    LX_STRBUF_LIT(sb, ": ");
    lx_strbuf_u64(sb, v);
    LX_STRBUF_LIT(sb, "\r\n");
}

static void header_reset(lx_strbuf_t *sb, const char *name, size_t name_len, int64_t ms)
{
    char d[24];
    size_t n = lx_account_duration(ms, d);
    lx_strbuf_mem(sb, name, name_len);
    LX_STRBUF_LIT(sb, ": ");
    lx_strbuf_mem(sb, d, n);
    LX_STRBUF_LIT(sb, "\r\n");
}

#define HDR(sb, lit, v)       header_u32((sb), (lit), sizeof(lit) - 1, (v))
#define HDR_RESET(sb, lit, v) header_reset((sb), (lit), sizeof(lit) - 1, (v))

/* The fast writer (room checked once by the caller: LX_ACCOUNT_HEADERS_MAX bytes). */

/* "<name>: <v>\r\n" at <p>; past its end. */
static inline char *line_u32(char *p, const char *name, size_t name_len, uint32_t v)
{
    memcpy(p, name, name_len);
    p += name_len;
    p[0] = ':';
    p[1] = ' ';
    lx_strbuf_t b = lx_strbuf_make(p + 2, 10);
    lx_strbuf_u64(&b, v);
    p = b.p;
    p[0] = '\r';
    p[1] = '\n';
    return p + 2;
}

/* A limit's line, as this thread wrote it last for the same value (a key's limits rarely
 * change; the remaining counts and resets do with every request). */
typedef struct limit_line {
    uint32_t v;
    uint8_t n; /* 0: none yet */
    char s[48];
} limit_line_t;
static _Thread_local limit_line_t limit_lines[2];

static inline char *line_limit(char *p, limit_line_t *c, const char *name, size_t name_len,
                               uint32_t v)
{
    if (c->n == 0 || c->v != v) {
        c->n = (uint8_t)(line_u32(c->s, name, name_len, v) - c->s);
        c->v = v;
    }
    memcpy(p, c->s, c->n);
    return p + c->n;
}

static inline char *line_reset(char *p, const char *name, size_t name_len, int64_t ms)
{
    memcpy(p, name, name_len);
    p += name_len;
    p[0] = ':';
    p[1] = ' ';
    p += 2;
    if (ms > 0 && ms < 1000) { /* (the common case: "12ms") */
        lx_strbuf_t b = lx_strbuf_make(p, 3);
        lx_strbuf_u64(&b, (uint64_t)ms);
        p = b.p;
        p[0] = 'm';
        p[1] = 's';
        p += 2;
    } else {
        p += lx_account_duration(ms, p);
    }
    p[0] = '\r';
    p[1] = '\n';
    return p + 2;
}

#define LINE(p, lit, v)        line_u32((p), (lit), sizeof(lit) - 1, (v))
#define LIMIT(p, c, lit, v)    line_limit((p), (c), (lit), sizeof(lit) - 1, (v))
#define LINE_RESET(p, lit, ms) line_reset((p), (lit), sizeof(lit) - 1, (ms))

static size_t ratelimit_fast(const lx_ratelimit_view_t *rl, char *buf)
{
    char *p = buf;
    if (rl->limit_requests > 0) {
        p = LIMIT(p, &limit_lines[0], "x-ratelimit-limit-requests", rl->limit_requests);
        p = LINE(p, "x-ratelimit-remaining-requests", rl->remaining_requests);
        p = LINE_RESET(p, "x-ratelimit-reset-requests", rl->reset_requests_ms);
    }
    if (rl->limit_tokens > 0) {
        p = LIMIT(p, &limit_lines[1], "x-ratelimit-limit-tokens", rl->limit_tokens);
        p = LINE(p, "x-ratelimit-remaining-tokens", rl->remaining_tokens);
        p = LINE_RESET(p, "x-ratelimit-reset-tokens", rl->reset_tokens_ms);
    }
    *p = '\0';
    return (size_t)(p - buf);
}

size_t lx_account_ratelimit_headers(const lx_ratelimit_view_t *rl, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    if (cap >= LX_ACCOUNT_HEADERS_MAX) /* (room for the longest: written without checks) */
        return ratelimit_fast(rl, buf);
    lx_strbuf_t sb = lx_strbuf_make(buf, cap - 1); /* room for the NUL */
    if (rl->limit_requests > 0) {
        HDR(&sb, "x-ratelimit-limit-requests", rl->limit_requests);
        HDR(&sb, "x-ratelimit-remaining-requests", rl->remaining_requests);
        HDR_RESET(&sb, "x-ratelimit-reset-requests", rl->reset_requests_ms);
    }
    if (rl->limit_tokens > 0) {
        HDR(&sb, "x-ratelimit-limit-tokens", rl->limit_tokens);
        HDR(&sb, "x-ratelimit-remaining-tokens", rl->remaining_tokens);
        HDR_RESET(&sb, "x-ratelimit-reset-tokens", rl->reset_tokens_ms);
    }
    size_t n = sb.overflow ? 0 : lx_strbuf_len(&sb, buf);
    buf[n] = '\0';
    return n;
}

void lx_account_ratelimit_append(const lx_ratelimit_view_t *rl, lx_strbuf_t *sb)
{
    if ((size_t)(sb->end - sb->p) > LX_ACCOUNT_HEADERS_MAX) {
        sb->p += ratelimit_fast(rl, sb->p);
        return;
    }
    char tmp[LX_ACCOUNT_HEADERS_MAX];
    lx_strbuf_mem(sb, tmp, lx_account_ratelimit_headers(rl, tmp, sizeof(tmp)));
}
