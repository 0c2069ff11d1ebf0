/*
 * key_json.h - the management API's JSON (OpenRouter's shapes): request bodies of POST and
 * PATCH /api/v1/keys read into an lx_key_input_t, and keys, generations and activity written
 * out. Reading is strict and linear (core/json): unknown members, wrong types, negative or
 * absurd limits, names over LX_KEY_NAME_MAX, non-UTC expires_at are each an error with a
 * message naming the member.
 */
#ifndef LX_KEY_JSON_H
#define LX_KEY_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "store/record.h"
#include "store/store.h"

/* Which request: POST takes `name` (required) and every field; PATCH takes every field but
 * `expires_at` (as OpenRouter), none required. */
enum lx_key_json_mode { LX_KEY_JSON_CREATE, LX_KEY_JSON_UPDATE };

/*
 * Reads the body (<len> bytes) into *in (zeroed first; dispose with lx_key_input_dispose).
 * Members: name (string, 1..LX_KEY_NAME_MAX bytes, valid UTF-8, no control characters),
 * disabled (bool), limit (number ≥ 0 up to LX_MONEY_MAX µ$, or null), limit_reset ("daily" |
 * "weekly" | "monthly" | null), expires_at (ISO-8601 UTC string or null; in the future),
 * include_byok_in_limit (bool, accepted and ignored: llmux has no BYOK), models (array of at
 * most LX_KEY_MODELS_MAX strings of 1..LX_KEY_MODEL_MAX bytes, or null), provider (object of
 * at most LX_KEY_PROVIDER_MAX bytes, checked by route/prefs, or null), rate_limit (object
 * {rpm, tpm, concurrency}: integers 0..1e9, 0 or absent = none; or null = none at all),
 * priority ("interactive" | "batch" | null = interactive: the key's class in the fleet's
 * admission queues).
 * Returns 0, or LX_EJSON / LX_EINVAL with a message in <err> (NUL-terminated).
 */
int lx_key_json_parse(const char *body, size_t len, enum lx_key_json_mode mode, lx_key_input_t *in,
                      char *err, size_t errcap);

/*
 * Writes one key object (OpenRouter's Key, plus llmux's models, provider, rate_limit): hash,
 * name, label, disabled, limit, limit_remaining, limit_reset, include_byok_in_limit (false),
 * usage, usage_daily, usage_weekly, usage_monthly, byok_usage* (0), created_at, updated_at,
 * expires_at, creator_user_id (null), workspace_id ("": OpenRouter's SDK requires a string,
 * llmux has no workspaces), priority ("interactive" | "batch"), models (null: every model),
 * provider (the stored object, or null),
 * rate_limit ({rpm, tpm, concurrency}, or null when all three are 0). Money in USD JSON
 * numbers (limit_remaining never below 0), times ISO-8601 UTC, nulls for absent. malloc'd,
 * NUL-terminated, *len set; NULL when out of memory.
 */
char *lx_key_json_key(const lx_key_view_t *v, size_t *len);

/* `{"data":[key,...]}`, `{"data":key}`, `{"data":key,"key":"sk-lx-v1-..."}` (create),
 * `{"deleted":true}`: malloc'd, *len set, NULL when out of memory. */
char *lx_key_json_list(const lx_key_view_t *v, size_t n, size_t *len);
char *lx_key_json_one(const lx_key_view_t *v, const char *secret, size_t *len);
char *lx_key_json_deleted(size_t *len);

/* GET /api/v1/key: `{"data":{label, limit, limit_remaining, limit_reset, usage*, byok_usage*,
 * is_free_tier:false, is_management_key, is_provisioning_key:false, expires_at, rate_limit
 * (llmux's {rpm, tpm, concurrency}, with OpenRouter's deprecated {requests, interval, note}
 * that its SDK still requires: requests = rpm per "1m", -1 without one), ...}}`. */
char *lx_key_json_current(const lx_key_view_t *v, bool management, size_t *len);

/* GET /api/v1/generation: `{"data":{...}}` in OpenRouter's Generation shape (every required
 * member, null or 0 where llmux has nothing: upstream_id, moderation_latency, media counts),
 * plus llmux's attempts under "provider_responses". */
char *lx_key_json_generation(const lx_record_t *r, size_t *len);

/* GET /api/v1/activity: `{"data":[{date, model, model_permaslug, endpoint_id, provider_name,
 * usage, byok_usage_inference, requests, prompt_tokens, completion_tokens,
 * reasoning_tokens}]}`. */
char *lx_key_json_activity(const lx_activity_row_t *rows, size_t n, size_t *len);

#endif
