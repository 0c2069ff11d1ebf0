/*
 * models.h - the `GET /v1/models` and `GET /v1/models/{id}` answers, built from the
 * configuration.
 */
#ifndef LX_MODELS_H
#define LX_MODELS_H

#include <stddef.h>

#include "config/config.h"
#include "llm/api_error.h"

/*
 * Formats the model list of <cfg> as the JSON body of `GET /v1/models`, in config order:
 *   {"object":"list","data":[{"id":"...","canonical_slug":"...","name":"...","object":"model",
 *     "created":N,"owned_by":"...","context_length":N|null,
 *     "pricing":{"prompt":"0.00000015","completion":"0.0000006"}}, ...]}
 * Pricing is OpenRouter's: USD per token as a decimal string without exponent, taken from the
 * cheapest route (lowest prompt + completion price per million; "0" without routes).
 * context_length is null when not configured (0). Returns a malloc'd, NUL-terminated string
 * the caller frees, its length in *<len>; NULL when out of memory.
 */
char *lx_models_format(const lx_config_t *cfg, size_t *len);

/*
 * The answer of `GET /v1/models/{id}` (and /api/v1/models/{id}), which OpenAI's
 * `client.models.retrieve(id)` calls. <path_id> (<len> bytes) is the path after "/models/" as
 * the client sent it: percent-encoded or not (the OpenAI SDK writes the '/' of
 * "meta-llama/llama-3.1-8b-instruct" as %2F, curl sends it as it is). Sets *<status> and
 * returns a malloc'd, NUL-terminated JSON body (its length in *<len_out>) the caller frees:
 * 200 with the model object exactly as in the list; 404 in the error envelope of <kind> when
 * no configured model has that id (OpenAI's code "model_not_found", param "model"); 400 when
 * the path holds a malformed percent-escape. NULL when out of memory.
 */
char *lx_models_retrieve(const lx_config_t *cfg, lx_api_kind_t kind, const char *path_id,
                         size_t len, int *status, size_t *len_out);

/*
 * Writes <per_million> USD per million tokens as USD per token into <out> (at least 48 bytes):
 * plain decimal, no exponent, no trailing zeros ("0.15" -> "0.00000015", 3 -> "0.000003",
 * 0 -> "0"). Exact to 1e-15 per token; negative or non-finite input is written as "0", input
 * above 1e15 is clamped.
 */
void lx_models_price(double per_million, char *out);

#endif
