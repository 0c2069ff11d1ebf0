/*
 * api_error.h - the error answers llmux makes, in the shape of the API they answer.
 *
 * Two APIs, two shapes, chosen by the request's path (lx_api_error_kind()):
 *   /v1 (OpenAI's):       {"error":{"message":"...","type":"...","param":null,"code":null}}
 *                         `code` a string ("rate_limit_exceeded", "model_not_found",
 *                         "invalid_api_key") or null; the official SDKs, LangChain and the
 *                         typed clients (Go, Rust, Java) decode exactly these four members
 *   /api/v1 (OpenRouter's): {"error":{"code":<status>,"message":"...",
 *                         "metadata":{"error_type":"..."}}}
 * The message is the readable reason in both, with every registered secret (obs/log.h)
 * replaced by "[redacted]": messages carry text a provider sent, which may echo the request
 * llmux made to it, provider key included.
 */
#ifndef LX_API_ERROR_H
#define LX_API_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json.h"

typedef enum lx_api_kind {
    LX_API_OPENAI,     /* /v1/... and every path outside /api/ */
    LX_API_OPENROUTER, /* /api/... */
} lx_api_kind_t;

/* The API of a request path (<len> bytes, the target without its query). */
lx_api_kind_t lx_api_error_kind(const char *path, size_t len);

/* One error answer. Strings need not be NUL-terminated where a length is given; everything is
 * escaped here. */
typedef struct lx_api_error {
    int status;
    const char *message; /* the reason (raw text, any bytes); NULL when message_len is 0 */
    size_t message_len;
    /* OpenRouter's metadata.error_type; NULL: lx_api_error_default_type(status). */
    const char *error_type;
    /* OpenAI's code and param (raw text, NUL-terminated); NULL: for code,
     * lx_api_error_default_code(status), which may be null too; for param, null. */
    const char *code;
    const char *param;
    /* More members of `metadata` (raw JSON members, already valid: `"attempts":[...]`),
     * written after error_type under /api/v1 and as the only members of a `metadata` object
     * after the four OpenAI ones under /v1. Never cut. meta_len 0: none. */
    const char *meta;
    size_t meta_len;
} lx_api_error_t;

/*
 * Writes the envelope of <e> for API <kind> into <buf> (at most <cap> bytes, NUL-terminated)
 * and returns its length (without the NUL). The message is escaped with
 * lx_json_escape() after each registered secret in it became "[redacted]"; when it does
 * not fit it is cut on a character boundary and ends with "...": the envelope itself is always
 * complete and valid JSON. code and param longer than 256 bytes escaped are written as null.
 * Returns LX_ETOOBIG when <cap> cannot hold the envelope with an empty message (256 bytes
 * always suffice without meta).
 */
int lx_api_error_format_full(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e);

/* The same for an error with only a status and a message (the defaults for the rest). */
int lx_api_error_format(char *buf, size_t cap, lx_api_kind_t kind, int status, const char *message,
                        size_t message_len);

/* The stream an error event ends (OpenRouter's event repeats the stream's identity). */
typedef struct lx_api_event {
    const char *id; /* the stream's id as its chunks carry it (JSON string contents, escaped
                     * again here), or llmux's generation id */
    size_t id_len;
    int64_t created;      /* the chunks' `created` */
    const char *model;    /* public model id (NUL-terminated) */
    const char *provider; /* provider name (NUL-terminated) */
} lx_api_event_t;

/*
 * The final SSE event of a stream that failed after its 200, "data: {...}\n\n", into <buf>
 * like lx_api_error_format_full(): under /v1 OpenAI's shape, the bare envelope (an error object
 * and no choices, which the SDKs raise as an APIError); under /api/v1 OpenRouter's, a chunk
 * with the stream's id, created, model and provider, the error object at its top level and one
 * choice with finish_reason "error".
 */
int lx_api_error_format_event(char *buf, size_t cap, lx_api_kind_t kind, const lx_api_error_t *e,
                              const lx_api_event_t *ev);

/*
 * OpenAI's `type` for <status>: "invalid_request_error" (400, 404, 405, 409, 413, 415, 422, 431
 * and other 4xx), "authentication_error" (401), "insufficient_quota" (402),
 * "permission_error" (403), "rate_limit_error" (429), "timeout_error" (408, 504, 524),
 * "server_error" (other 5xx). 404 is "invalid_request_error" because that is what OpenAI sends
 * for an unknown model; SDKs choose their exception class by status, not by this string.
 * Never NULL.
 */
const char *lx_api_error_type(int status);

/* OpenAI's `code` when nothing more precise is known: "invalid_api_key" (401),
 * "insufficient_quota" (402), "rate_limit_exceeded" (429); NULL (null) for any other. */
const char *lx_api_error_default_code(int status);

/*
 * OpenRouter's default `metadata.error_type` for <status> (reference section 5.3):
 * 400 invalid_request, 401 authentication, 402 payment_required, 403 permission_denied,
 * 404 not_found, 408 timeout, 412 precondition_failed, 413 and 431 payload_too_large,
 * 422 unprocessable, 429 rate_limit_exceeded, 500 server, 502 provider_unavailable,
 * 503 and 529 provider_overloaded, 504 and 524 timeout; other 4xx invalid_request, other 5xx
 * server, anything else unmapped. Never NULL.
 */
const char *lx_api_error_default_type(int status);

/* A provider's own error fields, as the raw contents of JSON strings (escapes kept). */
typedef struct lx_api_upstream_error {
    const char *code; /* error.code when it is a string; NULL otherwise */
    size_t code_len;
    const char *param; /* error.param when it is a string; NULL otherwise */
    size_t param_len;
} lx_api_upstream_error_t;

/*
 * Reads OpenAI's error body {"error":{...,"code":"...","param":"..."}} (the string members code
 * and param, the last of each, of the first top-level "error" member whose value is an object;
 * other shapes give nothing) with core/json's tokenizer. Returns true when <body> is exactly
 * one JSON object (strict RFC 8259, surrounding whitespace allowed) of at most 256 tokens
 * (keys, values, containers): then *<out> says what it found; else false and nothing.
 */
bool lx_api_error_parse_upstream(const char *body, size_t len, lx_api_upstream_error_t *out);

/* The JSON string escaper, under the names its callers outside llm/ use: lx_json_escape() and
 * lx_json_escaped_len() of core/json.h, whose rule (json.h) every envelope follows. */
static inline size_t lx_api_error_escape(char *out, size_t cap, const char *s, size_t len,
                                         size_t *consumed)
{
    return lx_json_escape(out, cap, s, len, consumed);
}

static inline size_t lx_api_error_escaped_len(const char *s, size_t len)
{
    return lx_json_escaped_len(s, len);
}

#endif
