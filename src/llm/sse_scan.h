/*
 * sse_scan.h - the LLM-aware scanner and rewriter of streamed responses (DESIGN.md data-path
 * rule 4).
 *
 * The streaming relay runs every upstream read of a `text/event-stream` response through one
 * lx_sse_scan_t. The scanner is pure (no I/O, no loop), works byte by byte across arbitrary
 * read boundaries and never copies payload bytes: what it hands back are slices of the read's
 * own chunk, plus slices of a small chunk it owns holding the public model id. On the way it
 * observes the stream (event count, `[DONE]`, finish_reason and its value, the usage object,
 * error events) and, on request, rewrites the top-level "model" of every event and drops the
 * usage-only event llmux asked the upstream for on the client's behalf.
 */
#ifndef LX_SSE_SCAN_H
#define LX_SSE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Slices of one event held back (tail of the stream, drop_usage_event on). Past this the event
 * is forwarded and can no longer be dropped. */
#define LX_SSE_SCAN_HOLD_MAX 24
/* out[] capacity every lx_sse_scan_feed() and lx_sse_scan_flush() call needs. */
#define LX_SSE_SCAN_MAX_OUT 64
/* Longest usage object text kept in lx_sse_scan_t.usage. */
#define LX_SSE_USAGE_MAX 512
/* A line longer than this sets `malformed` (nothing is buffered per line; it is a signal). */
#define LX_SSE_LINE_MAX (1u << 20)
/* JSON nesting tracked; deeper sets `malformed` (bytes still pass). */
#define LX_SSE_DEPTH_MAX 64
/* Longest JSON member key recognised (longer keys are ignored). */
#define LX_SSE_KEY_MAX 24
/* Longest stream id kept (lx_sse_scan_t.id). */
#define LX_SSE_ID_MAX 96
/* Room of lx_sse_scan_t.finish_reason: at most this minus one bytes kept, and a NUL. */
#define LX_SSE_FINISH_MAX 32

/*
 * One stream's scanner. Caller-owned storage: lx_sse_scan_init(), then feeds, then
 * lx_sse_scan_flush() at end of stream, then lx_sse_scan_dispose(). The first block of fields
 * is the public observation, readable at any time; the rest is private state.
 */
typedef struct lx_sse_scan {
    /* --- observations --- */
    uint64_t events;  /* complete events (blank-line terminated blocks with a data line) */
    bool done;        /* a `data: [DONE]` line was seen */
    bool finished;    /* some choice had a finish_reason that is a non-empty string */
    bool error_event; /* an event had a non-null top-level "error" member */
    bool malformed;   /* a line over LX_SSE_LINE_MAX, or JSON nested over LX_SSE_DEPTH_MAX */
    bool has_usage;   /* usage[] holds the last complete non-null top-level "usage" object (false
                       * while one is being read) */
    bool usage_truncated; /* the last usage object was over LX_SSE_USAGE_MAX (has_usage false) */
    size_t usage_len;
    char usage[LX_SSE_USAGE_MAX]; /* raw JSON text of that object, braces included */
    /* From the last complete usage object that fit usage[]; -1 when absent or not an integer. */
    int64_t prompt_tokens, completion_tokens, total_tokens;
    int64_t cached_tokens;    /* usage.prompt_tokens_details.cached_tokens */
    int64_t reasoning_tokens; /* usage.completion_tokens_details.reasoning_tokens */
    uint64_t bytes_in;        /* bytes consumed by feeds */
    uint64_t bytes_out;       /* bytes handed out in slices (dropped events not counted) */
    /* The stream's identity, from the first events that carry it (event streams only): the
     * top-level "id" string of an event, when it is 1..LX_SSE_ID_MAX bytes of printable ASCII
     * without '"' or '\\' (so it can be written back between quotes as it is; id_len 0: none
     * yet), and the top-level "created" non-negative integer (-1: none yet). */
    int64_t created;
    size_t id_len;
    char id[LX_SSE_ID_MAX];
    /* The finish_reason of the choice that finished: the last non-empty string value of a
     * choice's "finish_reason" seen (in event streams and whole answers alike) that is printable
     * ASCII without '"' or '\\' (so it can be written back between quotes as it is), its
     * first LX_SSE_FINISH_MAX - 1 bytes, NUL-terminated; "" when none. A value with any other
     * byte (an escape included) still sets `finished` but leaves this as it was. */
    char finish_reason[LX_SSE_FINISH_MAX];

    /* Readable too: the input is one JSON document, not an event stream (init_json) */
    bool json_mode;
    /* ... and a line of an event block has been seen: the block is open (a partial event was
     * forwarded when the stream ends here) */
    bool in_block;

    /* --- private: one group per machine (sse_scan.c) --- */
    lx_buf_t *lit; /* the replacement model text, or NULL (no rewrite or empty text) */
    struct lx_sse_mode {
        bool rewrite;    /* the model of every event is replaced */
        bool drop_usage; /* the usage-only event after a finish_reason is removed */
    } mode;

    /* SSE framing: where in a line and a block the stream is */
    struct lx_sse_frame {
        uint8_t bom;       /* BOM bytes matched at stream start; 3 once past the start */
        uint8_t line;      /* enum line_state in sse_int.h */
        uint8_t name_pos;  /* prefix of "data" matched by the field name; 0xff: another name */
        uint8_t done_pos;  /* prefix of "[DONE]" matched by the data value; 0xff: no match */
        bool after_cr;     /* the last byte was a CR (a following LF belongs to the same EOL) */
        bool ev_data;      /* the block has a data line */
        bool end_pending;  /* a held block ended with a CR; decided at the next byte (or flush) */
        bool ev_drop;      /* ... and it is the usage-only event to drop */
        uint32_t line_len; /* saturating */
    } frame;

    /* Output: where forwarded bytes go */
    struct lx_sse_out {
        bool skipping; /* inside the original model string value: bytes are not forwarded */
        bool holding;  /* the current block's slices go to held[] */
        size_t n_held; /* held[0..n_held) each hold one reference */
        lx_slice_t held[LX_SSE_SCAN_HOLD_MAX];
    } out;

    /* The byte machine's position in the event's JSON payload; reset at each event end */
    struct lx_sse_json {
        uint32_t depth;  /* open containers */
        uint64_t arrays; /* bit d-1 set: the container at depth d (<= 64) is an array */
        bool in_str;     /* inside a string ... */
        bool esc;        /* ... just after its backslash */
        bool str_key;    /* ... which is a member key that can matter (copied to key[]) */
        bool want_key;   /* in an object, the next string is a member key */
        bool want_val;   /* after ':', the next token starts a member value */
        bool key_long;   /* the key being read is over LX_SSE_KEY_MAX: ignored */
        uint8_t key_len;
        uint8_t member;  /* enum member in sse_int.h: the key of the member being read */
        uint8_t choices; /* enum choices_state in sse_int.h */
        char key[LX_SSE_KEY_MAX];
    } json;

    /* What the current event shows so far; reset at each event end */
    struct lx_sse_event {
        bool capturing;     /* copying the usage object into usage[] */
        bool usage_over;    /* ... and it did not fit */
        bool model;         /* the event's top-level model was met */
        bool usage;         /* the event has a complete non-null top-level usage object */
        bool choices_empty; /* ... and "choices":[] */
    } ev;

    /* The stream's identity being read (event streams, until known), and the finish_reason
     * value being read (both modes): the strings and numbers whose bytes are kept */
    struct lx_sse_capture {
        bool id_on;  /* reading a string whose bytes are kept: the "id" into id[] (id_w bytes so
                      * far), or with fr, a choice's finish_reason into fin.text[] (every byte
                      * before its closing quote makes `finished`) */
        bool num_on; /* reading the "created" number (num_digits digits so far) */
        bool fr;     /* the string id_on reads is a finish_reason */
        bool bad;    /* the id or created being read turned out not to be one to keep */
        uint8_t id_w;
        uint8_t num_digits;
        int64_t num;
    } cap;

    /* The finish_reason value being read (cap.fr), before its closing quote keeps it */
    struct lx_sse_finish {
        bool bad;    /* it has a byte finish_reason[] does not keep */
        uint8_t len; /* bytes in text[] */
        char text[LX_SSE_FINISH_MAX - 1];
    } fin;
} lx_sse_scan_t;

/*
 * Prepares <s>. <model>: when not NULL, the string value of the first top-level "model" member
 * of every event is replaced by these <model_len> bytes (already JSON-escaped, without quotes);
 * when NULL, events pass untouched. <drop_usage_event>: remove the usage-only event (non-null
 * top-level "usage" object and "choices":[]) seen after a finish_reason. <pool>: the worker's
 * pool the replacement's chunk is taken from (a recycled small chunk), or NULL for a chunk of
 * its own. Returns 0 or LX_ENOMEM (then nothing is held and dispose is optional).
 */
int lx_sse_scan_init(lx_sse_scan_t *s, const char *model, size_t model_len, bool drop_usage_event,
                     lx_buf_pool_t *pool);

/* Releases the held slices and the model chunk. Safe to call twice. */
void lx_sse_scan_dispose(lx_sse_scan_t *s);

/* The same scanner over a plain JSON response body (a non-streaming answer): the whole input
 * is one payload, its first top-level "model" string is rewritten, and its top-level "usage"
 * object is observed; there is no SSE framing, no event and no drop. */
int lx_sse_scan_init_json(lx_sse_scan_t *s, const char *model, size_t model_len,
                          lx_buf_pool_t *pool);

/*
 * Scans one upstream read: <len> bytes at <data>, which lie inside chunk <b>
 * (b->data <= data, data + len <= b->data + b->cap). Writes to out[] the slices to forward now,
 * in order, each holding its own reference (release them with lx_buf_unref after the write),
 * and returns their count. Consumes a prefix of the input, stored in *<used> - all of it unless
 * out[] filled up; then call again with the rest (at least one byte is consumed per call when
 * len > 0). Bytes of an event are forwarded as they arrive, except in the tail of the stream
 * with drop_usage_event on, where an event is held until its end. Returns LX_ETOOBIG when
 * max_out < LX_SSE_SCAN_MAX_OUT (nothing consumed).
 */
int lx_sse_scan_feed(lx_sse_scan_t *s, lx_buf_t *b, const char *data, size_t len, lx_slice_t *out,
                     size_t max_out, size_t *used);

/*
 * At end of stream: writes to out[] the slices of anything still held (a partial event, or a
 * held event whose CR terminator was the last byte, which is then dropped or kept as usual), so
 * nothing is lost, and returns their count. Returns LX_ETOOBIG when max_out <
 * LX_SSE_SCAN_MAX_OUT.
 */
int lx_sse_scan_flush(lx_sse_scan_t *s, lx_slice_t *out, size_t max_out);

#endif
