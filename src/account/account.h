/*
 * account.h - whether a request may go and what it cost: the key's model allowlist, the
 * worst-case cost a request reserves, the actual cost it settles at, and the answers llmux
 * gives when it says no (402, 403, 429 with x-ratelimit-* headers). Pure functions over the
 * configuration, a key and the request's scan; the counters live in the store (store/ledger.h).
 */
#ifndef LX_ACCOUNT_H
#define LX_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "store/ledger.h"
#include "store/keyset.h"

/* Whether model id <id> (<len> bytes) matches <pattern>: '*' matches any run of bytes ('/'
 * included), everything else itself, byte for byte. No recursion: the two-pointer match that
 * backtracks to the last '*' only, at most len × strlen(pattern) steps (patterns are at most
 * LX_KEY_MODEL_MAX bytes). */
bool lx_account_match(const char *pattern, const char *id, size_t len);

/* Whether <key> may use model <id>: its allowlist is empty or an entry matches. */
bool lx_account_allows(const lx_store_key_t *key, const char *id, size_t len);

/* Prompt tokens estimated from a body of <body_len> bytes: one token per 4 bytes, rounded up
 * (an overestimate for English text and JSON, which a reservation wants). */
uint32_t lx_account_prompt_estimate(size_t body_len);

/*
 * The worst-case cost of a request to <route> (µ$): <prompt_tokens> at its prompt price, plus
 * <max_tokens> at its completion price, or, when the request names no maximum (<max_tokens>
 * < 0), <default_max_cost> µ$ (limits.default_max_cost). Saturates at LX_MONEY_MAX.
 */
int64_t lx_account_reserve(const lx_config_route_t *route, uint32_t prompt_tokens,
                           int64_t max_tokens, int64_t default_max_cost);

/* The actual cost of a served request: its usage at <route>'s prices (µ$). */
int64_t lx_account_cost(const lx_config_route_t *route, int64_t prompt_tokens,
                        int64_t completion_tokens);

/*
 * The x-ratelimit-* header lines for <rl> into <buf> (each "Name: value\r\n"): the requests
 * trio when limit_requests > 0, the tokens trio when limit_tokens > 0, resets as Go-style
 * durations ("1s", "6m0s", "12ms"), OpenAI's names, and a NUL. Returns the length, or 0 (and
 * an empty string when <cap> > 0) when they do not all fit or nothing applies.
 * LX_ACCOUNT_HEADERS_MAX bytes always suffice.
 */
#define LX_ACCOUNT_HEADERS_MAX 320
size_t lx_account_ratelimit_headers(const lx_ratelimit_view_t *rl, char *buf, size_t cap);
/* The same lines appended to <sb> (written in place when it has room; overflow as strbuf). */
struct lx_strbuf;
void lx_account_ratelimit_append(const lx_ratelimit_view_t *rl, struct lx_strbuf *sb);

/* A Go-style duration for <ms> ("0s", "12ms", "1s", "1.5s", "6m0s", "1h2m3s") into <buf>
 * (24 bytes suffice: negative is "0s", beyond 999999999999h it saturates). Returns the
 * length. */
size_t lx_account_duration(int64_t ms, char *buf);

#endif
