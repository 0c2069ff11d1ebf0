/*
 * body.h - the request body scan and splice (DESIGN.md data-path rule 3).
 *
 * A JSON request body is scanned once: lx_body_scan() validates it strictly and records, as
 * byte spans into the body, the few top-level members llmux acts on. lx_body_splice() then plans
 * the body sent upstream as a list of pieces - slices of the original bytes interleaved with a
 * few small generated strings (the routed model id, an added stream_options) - so the body is
 * never re-serialized and no body byte is copied.
 */
#ifndef LX_BODY_H
#define LX_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json.h"

/* Most entries of the `models` fallback array recorded; more is a scan error. */
#define LX_BODY_MAX_MODELS 16
/* Largest body lx_body_scan() accepts (spans are 32-bit). */
#define LX_BODY_MAX_LEN (1u << 30)
/* Deepest nesting of objects and arrays accepted, the root object included. */
#define LX_BODY_MAX_DEPTH 512
/* Consumed members, hence byte ranges the splice deletes. */
#define LX_BODY_MAX_CUTS 5
/* Pieces always sufficient for lx_body_splice(). */
#define LX_BODY_MAX_PIECES 32

/* A byte range of the body: body[off, off + len). */
typedef struct lx_body_span {
    uint32_t off;
    uint32_t len;
} lx_body_span_t;

/*
 * What lx_body_scan() found. Spans of strings cover the bytes between the quotes, escapes
 * untouched (use core/json's lx_json_unescape() to decode); spans of objects and arrays include
 * their brackets. All spans point into the scanned body. Fields not described as set on failure are
 * unspecified after a failed scan.
 */
typedef struct lx_body_scan {
    /* "model": a string (any other type is an error). */
    bool has_model;
    lx_body_span_t model;

    /* "stream": true or false; null and absence mean false. has_stream says the member exists. */
    bool has_stream;
    bool stream;

    /* "stream_options": an object, or null (treated as absent, but its value is replaced when
     * include_usage is added). Other types are an error. */
    bool has_stream_options;            /* an object */
    bool stream_options_null;           /* the member is present with value null */
    lx_body_span_t stream_options;      /* the value: the object with braces, or the `null` */
    uint32_t stream_options_members;    /* number of members of the object */
    bool has_include_usage;             /* the object has an "include_usage" member */
    bool include_usage;                 /* ... and its value is true */
    lx_body_span_t include_usage_value; /* that member's value token */

    /* Members llmux consumes and never forwards upstream. For each: `has_` says it is present
     * (any value, null included: it is removed from the upstream body anyway); the value span
     * is set when the value has the documented type, and null leaves it {0, 0}. */
    bool has_models;
    lx_body_span_t models; /* the array, brackets included */
    uint32_t n_models;     /* its string entries, in order (at most LX_BODY_MAX_MODELS) */
    lx_body_span_t model_list[LX_BODY_MAX_MODELS];
    bool has_provider;
    lx_body_span_t provider; /* the object, braces included */
    bool has_route;
    lx_body_span_t route; /* the string */
    bool has_session_id;
    lx_body_span_t session_id; /* the string */
    /* OpenRouter's `usage: {"include": true}` (deprecated there: usage is always returned). An
     * object or null; its "include" member true, false or null. */
    bool has_usage;
    bool usage_include; /* its "include" is true */

    /* Members recorded and forwarded upstream as they are (not consumed), for the budget's
     * reservation and the usage record. "max_tokens", "max_completion_tokens", "n" (choices
     * asked for) and "best_of" (completions generated server-side, legacy completions): a
     * non-negative integer written with digits only (no sign, fraction or exponent: anything
     * else, "100.0" and "1e3" included, is an error), saturated at INT64_MAX; -1 when absent
     * or null. "user": a string (has_user and its span); null is taken as absent, other types
     * are an error. */
    int64_t max_tokens;
    int64_t max_completion_tokens;
    int64_t n;
    int64_t best_of;
    bool has_user;
    lx_body_span_t user;

    /* The prompt, for the prefix hash (llm/prefix.h); recorded and forwarded as it is.
     * "messages" (chat): an array; its span, brackets included, its number of elements and the
     * offset of its last element's first byte (0 when it is empty). "prompt" (completions): a
     * string (the span of its content, as for other strings) or an array (as "messages").
     * Another type leaves has_ false and is not an error (the upstream judges it). Not
     * duplicate-checked: a member seen twice is recorded as its last occurrence, the one the
     * usual upstream (a Python JSON reader) keeps; only the routing hint depends on it. */
    bool has_messages;
    lx_body_span_t messages;
    uint32_t n_messages;
    uint32_t messages_last;
    bool has_prompt;
    bool prompt_array; /* the prompt is an array (else a string) */
    lx_body_span_t prompt;
    uint32_t n_prompt; /* elements of an array prompt */
    uint32_t prompt_last;

    /* The splice plan, private to body.c: the root object's '{' offset, the number of root
     * members kept, the end of the last kept member, and the byte ranges to delete to drop
     * the consumed members with one adjacent comma each (sorted, disjoint). */
    uint32_t root_open;
    uint32_t kept;
    uint32_t last_kept_end;
    uint32_t n_cuts;
    lx_body_span_t cuts[LX_BODY_MAX_CUTS];

    /* On failure: a short human message for the client ("invalid JSON at byte 123",
     * "'model' must be a string", ...), always NUL-terminated; "" on success. */
    char error[80];
} lx_body_scan_t;

/*
 * Scans <len> bytes of <body>, which must be exactly one JSON object (RFC 8259 grammar, checked
 * strictly: literal and number syntax, separators, control characters in strings, no trailing
 * bytes but whitespace; UTF-8 validity of strings is not checked). Top-level keys are compared
 * raw, so an escaped key ("mod\u0065l") is just an unknown member. A recognized top-level key
 * (max_tokens, max_completion_tokens, n, best_of and user included), "include_usage" or usage's
 * "include" appearing twice is an error, so llmux and the upstream cannot read different values (a
 * budget reserved for one max_tokens while the provider honours another).
 *
 * Nesting deeper than LX_BODY_MAX_DEPTH is an error ("JSON nested too deeply").
 *
 * Returns 0, or LX_EJSON with scan->error set; LX_ETOOBIG for a body over LX_BODY_MAX_LEN.
 * Allocates nothing, recurses nowhere, and takes time linear in <len> whatever the body's
 * shape (nesting, number of values, escapes).
 */
int lx_body_scan(const char *body, size_t len, lx_body_scan_t *scan);

/* One piece of a planned body: <len> bytes at <ptr>. */
typedef struct lx_body_piece {
    const char *ptr;
    size_t len;
} lx_body_piece_t;

/*
 * Plans the upstream body for a <body> that <scan> accepted:
 *   - the model value is replaced by <model> (<model_len> raw bytes, JSON-escaped into
 *     <scratch>); when the body has no "model", a "model" member is added first; a NULL <model>
 *     leaves the model as it is;
 *   - "models", "provider", "route", "session_id" and "usage" are removed, each with one
 *     adjacent comma;
 *   - when <add_include_usage> and the request streams without include_usage:true, either
 *     "stream_options":{"include_usage":true} is added (replacing a null stream_options) or
 *     "include_usage":true is set inside the existing stream_options object.
 * Everything else is the original bytes. Pieces point into <body>, into <scratch> or to static
 * text; none is empty. Writes at most <max_pieces> pieces (LX_BODY_MAX_PIECES always suffice)
 * and the sum of their lengths to *<total_len>. Returns the number of pieces, or LX_ETOOBIG when
 * <max_pieces> or <scratch_size> is too small (lx_api_error_escaped_len(model) bytes suffice).
 */
int lx_body_splice(const char *body, size_t len, const lx_body_scan_t *scan, const char *model,
                   size_t model_len, bool add_include_usage, lx_body_piece_t *pieces,
                   size_t max_pieces, char *scratch, size_t scratch_size, size_t *total_len);

#endif
