/*
 * api_error.h - the one error envelope llmux answers with, and JSON string escaping.
 *
 * Every error llmux itself produces has the shape
 *   {"error":{"code":<status>,"message":"...","type":"...","metadata":{"error_type":"..."}}}
 * which carries OpenRouter's numeric `code` and typed `metadata.error_type` together with
 * OpenAI's `type`, so both kinds of client find what they look for.
 */
#ifndef LX_API_ERROR_H
#define LX_API_ERROR_H

#include <stddef.h>

/*
 * Writes the error envelope for HTTP <status> into <buf> (at most <cap> bytes, NUL-terminated)
 * and returns its length (without the NUL). <error_type> is OpenRouter's typed error name
 * (metadata.error_type); NULL selects lx_api_error_default_type(status). <message> (<message_len>
 * bytes, need not be NUL-terminated, may be NULL when 0) is escaped with lx_api_error_escape():
 * control characters as \u00XX, invalid UTF-8 replaced by U+FFFD. When the message does not fit,
 * it is cut on a character boundary and ends with "..."; the envelope itself is always complete
 * and valid JSON. Returns LX_ETOOBIG when <cap> cannot hold even the envelope with an empty
 * message (256 bytes always suffice for that).
 */
int lx_api_error_format(char *buf, size_t cap, int status, const char *error_type,
                        const char *message, size_t message_len);

/* The same with more members in `metadata`: <meta> is <meta_len> bytes of raw JSON members
 * (`"attempts":[...]`, already valid and escaped), written after error_type. It is never cut:
 * LX_ETOOBIG when it does not fit with an empty message. */
int lx_api_error_format_meta(char *buf, size_t cap, int status, const char *error_type,
                             const char *message, size_t message_len, const char *meta,
                             size_t meta_len);

/*
 * OpenAI's `type` for <status>: "invalid_request_error" (400, 404, 405, 409, 413, 415, 422, 431
 * and other 4xx), "authentication_error" (401), "insufficient_quota" (402),
 * "permission_error" (403), "rate_limit_error" (429), "timeout_error" (408, 504, 524),
 * "server_error" (other 5xx). 404 is "invalid_request_error" because that is what OpenAI sends
 * for an unknown model; SDKs choose their exception class by status, not by this string.
 * Never NULL.
 */
const char *lx_api_error_type(int status);

/*
 * OpenRouter's default `metadata.error_type` for <status> (reference section 5.3):
 * 400 invalid_request, 401 authentication, 402 payment_required, 403 permission_denied,
 * 404 not_found, 408 timeout, 412 precondition_failed, 413 and 431 payload_too_large,
 * 422 unprocessable, 429 rate_limit_exceeded, 500 server, 502 provider_unavailable,
 * 503 and 529 provider_overloaded, 504 and 524 timeout; other 4xx invalid_request, other 5xx
 * server, anything else unmapped. Never NULL.
 */
const char *lx_api_error_default_type(int status);

/*
 * JSON-escapes <len> bytes of <s> into <out> for use between double quotes: '"' and '\\'
 * escaped, \b \f \n \r \t short escapes, other bytes below 0x20 and 0x7f as \u00XX, valid UTF-8
 * copied, each byte of an invalid UTF-8 sequence replaced by U+FFFD (EF BF BD). Writes only
 * whole escapes and whole characters: stops before the first one that does not fit in <cap>.
 * Does not NUL-terminate. Returns the number of bytes written; *<consumed> (when not NULL)
 * receives the number of input bytes they represent, so consumed < len means truncation.
 */
size_t lx_api_error_escape(char *out, size_t cap, const char *s, size_t len, size_t *consumed);

/* The number of bytes lx_api_error_escape() needs to escape all of <s> (its exact output length
 * when <cap> is large enough). */
size_t lx_api_error_escaped_len(const char *s, size_t len);

#endif
