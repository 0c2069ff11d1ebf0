/*
 * sse_int.h - what the files of the stream scanner share (private to src/llm/sse_*.c).
 *
 * The scanner is one machine in three files, by phase: sse_scan.c (the API, SSE framing and
 * the output of slices), sse_json.c (the byte machine over a payload's JSON, and json mode's
 * runs), sse_whole.c (the structural reading of a whole answer or a whole event in one read).
 * The usage object's counts are read by sse_usage.c.
 */
#ifndef LX_SSE_INT_H
#define LX_SSE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/sse_scan.h"

#define NO_MATCH 0xff

enum line_state {
    L_START,   /* at the first byte of a line */
    L_NAME,    /* in a field name */
    L_DATA_SP, /* right after "data:" (one space there is not part of the value) */
    L_DATA,    /* in a data value */
    L_OTHER,   /* in another field's line: passes through */
    L_COMMENT, /* in a ':' line */
};

enum lx_sse_member {
    M_OTHER,
    M_MODEL,
    M_USAGE,
    M_CHOICES,
    M_ERROR,
    M_FINISH_REASON,
    M_ID,
    M_CREATED
};

enum choices_state {
    CH_NONE,   /* the top-level choices array is not open */
    CH_OPENED, /* it just opened: the next token says whether it is empty */
    CH_OPEN,
};

/* Where one feed call's slices go. */
typedef struct lx_sse_out_ctx {
    lx_slice_t *out;
    size_t n;
    size_t max;  /* out[] capacity: never reached by construction (see reserve()) */
    lx_buf_t *b; /* the read's chunk */
    size_t base; /* offset of the read's first byte in b->data */
    size_t run;  /* start (index in the read) of the forwarded bytes not yet cut */
    bool run_on; /* false while skipping the model value */
} lx_sse_out_ctx_t;

/* What a byte is to lx_sse_value_end(): brackets and quotes; everything else passes. */
enum { VB_PASS, VB_QUOTE, VB_OPEN, VB_CLOSE };
extern const uint8_t lx_sse_value_byte[256];

/* Where the next LF lies in a read, remembered across the events of one feed call: the first
 * LF at or after <from> is at <at> (<at> == n: none), so the looks for it cost O(n) per read
 * whatever the framing (CR-only lines have no LF at all). */
typedef struct lx_sse_lf_cache {
    size_t from, at;
} lx_sse_lf_cache_t;

static inline bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* ---- output (sse_scan.c) ---- */

/* Sends buf->data[off, off+len) to the current destination: out[], or held[] in a held block. */
void lx_sse_emit(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, lx_buf_t *buf, size_t off, size_t len);
/* Emits the run of forwarded bytes before index <i> of the read. */
void lx_sse_cut(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i);

/* ---- the byte machine (sse_json.c) ---- */

/* Feeds one payload byte; true when it is the opening quote of the model value to replace. */
bool lx_sse_json_byte(lx_sse_scan_t *s, char ch);
/* A payload byte through the tokenizer and the output (the model value cut out). */
void lx_sse_json_data(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, size_t i, char ch);
/* Event end: the payload's JSON state starts over. */
void lx_sse_json_reset(lx_sse_scan_t *s);
/* json mode: a read's bytes in runs; returns the bytes consumed. */
size_t lx_sse_json_feed(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *data, size_t len);
/* The usage object being copied is complete (or abandoned as too long): its counts are read. */
void lx_sse_end_capture(lx_sse_scan_t *s);
/* The member a key of <n> bytes at <k> names at depth <depth> (1, or 3 in a choice). */
enum lx_sse_member lx_sse_key_member(uint32_t depth, const char *k, size_t n);
/* Index one past the value starting at p[i] opened at depth <depth>, or 0. */
size_t lx_sse_value_end(const char *p, size_t i, size_t n, uint32_t depth);

/* ---- whole answers and whole events (sse_whole.c) ---- */

/* The whole answer in p[0, n), or false, having changed nothing, to take the byte machine. */
bool lx_sse_json_whole(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *p, size_t n);
/* A whole event at p[i] (the start of a block): the index after its blank line, or 0. */
size_t lx_sse_whole_event(lx_sse_scan_t *s, lx_sse_out_ctx_t *c, const char *p, size_t i, size_t n,
                          lx_sse_lf_cache_t *lfc);

#endif
