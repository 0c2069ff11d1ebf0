/*
 * body_int.h - what the files of the body scan share (private to src/llm/body*.c).
 *
 * The scan in files by phase: body.c (the root members' bookkeeping, the direct pass and
 * lx_body_scan()), body_ref.c (the reference scan on core/json, which the direct pass falls
 * back to), body_splice.c (the splice plan).
 */
#ifndef LX_BODY_INT_H
#define LX_BODY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "llm/body.h"

/* Top-level members llmux recognizes; from M_MODELS on, consumed (removed upstream); those
 * from M_MAX_TOKENS to M_BEST_OF are recorded and forwarded as they are (body_ref.c). */
enum lx_body_member {
    M_NONE,
    M_MODEL,
    M_STREAM,
    M_STREAM_OPTIONS,
    M_MAX_TOKENS,
    M_MAX_COMPLETION_TOKENS,
    M_USER,
    M_N,
    M_BEST_OF,
    M_MESSAGES,
    M_PROMPT,
    M_MODELS,
    M_PROVIDER,
    M_ROUTE,
    M_SESSION_ID,
    M_USAGE,
};

/* A consumed root member, for planning its removal. */
struct cut_member {
    uint32_t index; /* position among the root members */
    uint32_t start; /* opening quote of its key */
    uint32_t end;   /* one past its value */
    uint32_t prev_end;
    uint32_t next_start; /* 0 until the next member is seen */
};

/* The root members as either scan goes through them, for the splice plan. */
struct walk {
    uint32_t pos; /* one past the value just read */
    lx_body_scan_t *scan;
    unsigned seen; /* bit per enum lx_body_member: duplicate detection */
    uint32_t n_members;
    bool pending; /* a root member's value is being read */
    bool pending_consumed;
    uint32_t pending_start;
    uint32_t prev_end; /* end of the previous root member, 0 before the first */
    bool have_kept;
    uint32_t first_kept; /* index of the first kept member */
    struct cut_member cut[LX_BODY_MAX_CUTS];
    uint32_t n_cut;
};

extern const char *const lx_body_member_names[];

/* A recognized member the scans refuse to see twice: all but the prompt's (see body.h). */
static inline bool lx_body_dup_checked(enum lx_body_member m)
{
    return m != M_NONE && m != M_MESSAGES && m != M_PROMPT;
}

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The error message <msg> into scan->error; returns <code>. */
int lx_body_fail(lx_body_scan_t *scan, int code, const char *msg);
/* "invalid JSON at byte <off>"; returns LX_EJSON. */
int lx_body_fail_at(lx_body_scan_t *scan, size_t off);

/* The root members as both scans meet them (body.c): one starts at <start> (its key's opening
 * quote), the one pending ends at w->pos, and at the end the consumed ones become the cuts. */
void lx_body_begin_root_member(struct walk *w, uint32_t start, bool consumed);
void lx_body_end_root_member(struct walk *w);
void lx_body_plan_cuts(struct walk *w);
/* The member a root key of <n> bytes at <k> names: exact bytes, escapes not decoded. */
enum lx_body_member lx_body_root_member_of(const char *k, uint32_t n);
/* The value of max_tokens, max_completion_tokens, n or best_of: <n> bytes at <p> that are a JSON
 * number (already checked) of digits only, into *<out>, saturated at INT64_MAX. False for a sign, a
 * fraction or an exponent. */
bool lx_body_count(const char *p, uint32_t n, int64_t *out);
/* Where the count member <m> (M_MAX_TOKENS, M_MAX_COMPLETION_TOKENS, M_N, M_BEST_OF) goes. */
static inline int64_t *lx_body_count_slot(lx_body_scan_t *scan, enum lx_body_member m)
{
    return m == M_MAX_TOKENS              ? &scan->max_tokens
           : m == M_MAX_COMPLETION_TOKENS ? &scan->max_completion_tokens
           : m == M_N                     ? &scan->n
                                          : &scan->best_of;
}

/* The error of member <m> (M_MAX_TOKENS, M_MAX_COMPLETION_TOKENS, M_N, M_BEST_OF) with another
 * value. */
int lx_body_fail_count(lx_body_scan_t *scan, enum lx_body_member m);

/* The reference scan of body[0, len) (body_ref.c): 0, or LX_EJSON with scan->error set. */
int lx_body_scan_ref(const char *body, size_t len, lx_body_scan_t *scan);

#endif
