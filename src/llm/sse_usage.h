/*
 * sse_usage.h - the counts of a usage object, as the stream scanner reads them (sse_usage.c).
 *
 * Private to llm/ (the scanner fills lx_sse_scan_t's counts with it), and declared here so the
 * unit tests and the fuzz target can hold the short reading against the reference one.
 */
#ifndef LX_SSE_USAGE_H
#define LX_SSE_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most tokens (keys, values, containers) a usage object may hold to be read; a realistic one
 * has about twenty. A larger one gives no counts (as jsmn's 128-token array did). */
#define LX_SSE_USAGE_TOKENS 128

/* The counts: -1 when absent or not a non-negative integer of at most 18 digits. */
typedef struct lx_sse_usage {
    int64_t prompt_tokens, completion_tokens, total_tokens;
    int64_t cached_tokens;    /* prompt_tokens_details.cached_tokens */
    int64_t reasoning_tokens; /* completion_tokens_details.reasoning_tokens */
} lx_sse_usage_t;

/*
 * The reference reading, on core/json: <text> must open a JSON object, of at most
 * LX_SSE_USAGE_TOKENS tokens, else every count is -1. It is read (strict RFC 8259) up to its
 * end or its first error: the counts of the members before an error stand (a missing comma
 * after "prompt_tokens":8 keeps the 8), nothing after it counts. Keys compare raw (escapes kept). A
 * top-level count member read twice keeps the last; a details object keeps its first
 * cached_tokens or reasoning_tokens member, and a details member whose value is no object
 * gives -1.
 */
void lx_sse_usage_read_ref(const char *text, size_t len, lx_sse_usage_t *u);

/*
 * The short reading of the usual shape: an object of scalars whose keys have no escape, the
 * two details objects (or any top-level member) being objects of such scalars. Returns false,
 * *<u> unspecified, for anything else; on what it accepts, *<u> is the reference's.
 */
bool lx_sse_usage_read_quick(const char *text, size_t len, lx_sse_usage_t *u);

/* The short reading, or the reference one where it gives up. */
void lx_sse_usage_read(const char *text, size_t len, lx_sse_usage_t *u);

/* A non-negative JSON integer of at most 18 digits at <p> (<len> bytes), or -1. */
int64_t lx_sse_usage_count(const char *p, size_t len);

#endif
