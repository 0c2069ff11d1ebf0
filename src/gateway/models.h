/*
 * models.h - the `GET /v1/models` answer, built from the configuration.
 */
#ifndef LX_MODELS_H
#define LX_MODELS_H

#include <stddef.h>

#include "config/config.h"

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
 * Writes <per_million> USD per million tokens as USD per token into <out> (at least 48 bytes):
 * plain decimal, no exponent, no trailing zeros ("0.15" -> "0.00000015", 3 -> "0.000003",
 * 0 -> "0"). Exact to 1e-15 per token; negative or non-finite input is written as "0", input
 * above 1e15 is clamped.
 */
void lx_models_price(double per_million, char *out);

#endif
