/*
 * key_json_out.c - writing the management API's answers in OpenRouter's shapes (key_json.h):
 * keys, the calling key, generations and activity.
 *
 * Every member OpenRouter's schema (and its TypeScript SDK, which validates answers) requires
 * is written, with its type: money as USD JSON numbers from integer µ$ (lx_money_format, no
 * floating point), times as "YYYY-MM-DDTHH:MM:SSZ" (lx_period_format_iso), null where llmux has
 * nothing. Every string llmux did not write itself goes through lx_json_escape (invalid UTF-8
 * as U+FFFD), so the output is always valid JSON; a stored provider object that would not be
 * is written as null. llmux's own members (models, provider, rate_limit, a generation's
 * attempt outcomes) come after OpenRouter's; clients that do not know them ignore them.
 */
#include "account/key_json.h"

#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/str.h"
#include "store/money.h"
#include "store/period.h"

/* A growing output buffer; after a failed allocation it only counts (oom). */
typedef struct ob {
    char *p;
    size_t len, cap;
    bool oom;
} ob_t;

static bool ob_reserve(ob_t *o, size_t n)
{
    if (o->oom)
        return false;
    if (o->cap - o->len > n)
        return true;
    size_t cap = o->cap ? o->cap : 1024;
    while (cap - o->len <= n)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (p == NULL) {
        o->oom = true;
        return false;
    }
    o->p = p;
    o->cap = cap;
    return true;
}

static void ob_mem(ob_t *o, const void *s, size_t n)
{
    if (!ob_reserve(o, n))
        return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

#define OB_LIT(o, lit) ob_mem((o), (lit), sizeof(lit) - 1)

/* "<name>": (a member's key; names are llmux's own literals). */
#define OB_KEY(o, name) OB_LIT((o), "\"" name "\":")

/* A JSON string of <n> bytes at <s>, escaped. */
static void ob_strn(ob_t *o, const char *s, size_t n)
{
    size_t e = lx_json_escaped_len(s, n);
    if (!ob_reserve(o, e + 2))
        return;
    o->p[o->len++] = '"';
    o->len += lx_json_escape(o->p + o->len, e, s, n, NULL);
    o->p[o->len++] = '"';
}

/* A NUL-terminated string, or null for NULL. */
static void ob_str(ob_t *o, const char *s)
{
    if (s == NULL)
        OB_LIT(o, "null");
    else
        ob_strn(o, s, strlen(s));
}

/* A fixed-size array's text up to the NUL (or the array's end). */
#define OB_ARRAY(o, arr) ob_strn((o), (arr), strnlen((arr), sizeof(arr)))

/* String field <field> of record <r>; null when empty and <empty_null>. */
#define OB_FIELD(o, r, field, empty_null) ob_field((o), (r), (field), (empty_null))

static void ob_field(ob_t *o, const lx_record_t *r, unsigned field, bool empty_null)
{
    size_t n = lx_record_len(r, field);
    if (n == 0 && empty_null)
        OB_LIT(o, "null");
    else
        ob_strn(o, lx_record_str(r, field), n);
}

static void ob_i64(ob_t *o, int64_t v)
{
    char b[24];
    char *p = b + sizeof(b);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    ob_mem(o, p, (size_t)(b + sizeof(b) - p));
}

/* A count that may be unknown (negative): null. */
static void ob_count(ob_t *o, int64_t v)
{
    if (v < 0)
        OB_LIT(o, "null");
    else
        ob_i64(o, v);
}

static void ob_money(ob_t *o, int64_t micros)
{
    char b[LX_MONEY_FMT_MAX];
    ob_mem(o, b, lx_money_format(micros, b));
}

static void ob_bool(ob_t *o, bool v)
{
    if (v)
        OB_LIT(o, "true");
    else
        OB_LIT(o, "false");
}

/* An ISO-8601 UTC time; null for 0 when <zero_null>. */
static void ob_time(ob_t *o, int64_t unix_s, bool zero_null)
{
    if (unix_s == 0 && zero_null) {
        OB_LIT(o, "null");
        return;
    }
    char b[21];
    lx_period_format_iso(unix_s, b);
    ob_strn(o, b, strlen(b));
}

static char *ob_finish(ob_t *o, size_t *len)
{
    if (ob_reserve(o, 1)) {
        o->p[o->len] = '\0';
        if (len != NULL)
            *len = o->len;
        return o->p;
    }
    free(o->p);
    return NULL;
}

/* ---- keys ------------------------------------------------------------------------------- */

/* Whether a stored provider text is one JSON object of valid UTF-8 (it was when it was
 * stored; a file edited by hand may say otherwise), so it can be written as it is. */
static bool provider_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k =
            (unsigned char)s[i] < 0x80 ? 1 : lx_str_utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    lx_json_t j;
    lx_json_token_t t, close;
    lx_json_init(&j, s, n, 64);
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT || !lx_json_skip(&j, &t, &close))
        return false;
    return lx_json_next(&j, &t) == LX_JSON_NONE && j.error == LX_JSON_OK;
}

/* "limit", "limit_remaining", "limit_reset", "include_byok_in_limit" and the usage figures,
 * shared by Key and the current key. */
static void key_money(ob_t *o, const lx_key_view_t *v)
{
    const lx_ledger_limits_t *l = &v->key.limits;
    OB_KEY(o, "limit");
    if (l->has_limit)
        ob_money(o, l->limit);
    else
        OB_LIT(o, "null");
    OB_LIT(o, ",\"limit_remaining\":");
    if (l->has_limit)
        ob_money(o, v->limit_remaining < 0 ? 0 : v->limit_remaining);
    else
        OB_LIT(o, "null");
    OB_LIT(o, ",\"limit_reset\":");
    ob_str(o, lx_period_name(l->limit_reset));
    OB_LIT(o, ",\"include_byok_in_limit\":false,\"usage\":");
    ob_money(o, v->usage[LX_PERIOD_TOTAL]);
    OB_LIT(o, ",\"usage_daily\":");
    ob_money(o, v->usage[LX_PERIOD_DAY]);
    OB_LIT(o, ",\"usage_weekly\":");
    ob_money(o, v->usage[LX_PERIOD_WEEK]);
    OB_LIT(o, ",\"usage_monthly\":");
    ob_money(o, v->usage[LX_PERIOD_MONTH]);
    OB_LIT(o, ",\"byok_usage\":0,\"byok_usage_daily\":0,\"byok_usage_weekly\":0,"
              "\"byok_usage_monthly\":0");
}

/* llmux's own members of a key: priority, models, provider, rate_limit. */
static void key_llmux(ob_t *o, const lx_store_key_t *k)
{
    if (k->priority == LX_KEY_PRIORITY_BATCH)
        OB_LIT(o, ",\"priority\":\"batch\"");
    else
        OB_LIT(o, ",\"priority\":\"interactive\"");
    OB_LIT(o, ",\"models\":");
    if (k->n_models == 0) {
        OB_LIT(o, "null");
    } else {
        OB_LIT(o, "[");
        for (size_t i = 0; i < k->n_models; i++) {
            if (i > 0)
                OB_LIT(o, ",");
            ob_str(o, k->models[i]);
        }
        OB_LIT(o, "]");
    }
    OB_LIT(o, ",\"provider\":");
    if (k->provider != NULL && provider_ok(k->provider))
        ob_mem(o, k->provider, strlen(k->provider));
    else
        OB_LIT(o, "null");
    OB_LIT(o, ",\"rate_limit\":");
    const lx_ledger_limits_t *l = &k->limits;
    if (l->rpm == 0 && l->tpm == 0 && l->concurrency == 0) {
        OB_LIT(o, "null");
        return;
    }
    OB_LIT(o, "{\"rpm\":");
    ob_i64(o, l->rpm);
    OB_LIT(o, ",\"tpm\":");
    ob_i64(o, l->tpm);
    OB_LIT(o, ",\"concurrency\":");
    ob_i64(o, l->concurrency);
    OB_LIT(o, "}");
}

static void key_object(ob_t *o, const lx_key_view_t *v)
{
    const lx_store_key_t *k = &v->key;
    OB_LIT(o, "{\"hash\":");
    OB_ARRAY(o, k->hash);
    OB_LIT(o, ",\"name\":");
    ob_str(o, k->name != NULL ? k->name : "");
    OB_LIT(o, ",\"label\":");
    OB_ARRAY(o, k->label);
    OB_LIT(o, ",\"disabled\":");
    ob_bool(o, k->disabled);
    OB_LIT(o, ",");
    key_money(o, v);
    OB_LIT(o, ",\"created_at\":");
    ob_time(o, k->created_at, false);
    OB_LIT(o, ",\"updated_at\":");
    ob_time(o, k->updated_at, true);
    OB_LIT(o, ",\"expires_at\":");
    ob_time(o, k->expires_at, true);
    /* external_user: required (a string or null); workspace_id: a string, as the SDK's
     * schema requires one; llmux has neither external users nor workspaces */
    OB_LIT(o, ",\"creator_user_id\":null,\"external_user\":null,\"workspace_id\":\"\"");
    key_llmux(o, k);
    OB_LIT(o, "}");
}

char *lx_key_json_key(const lx_key_view_t *v, size_t *len)
{
    ob_t o = {0};
    key_object(&o, v);
    return ob_finish(&o, len);
}

char *lx_key_json_list(const lx_key_view_t *v, size_t n, size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            OB_LIT(&o, ",");
        key_object(&o, &v[i]);
    }
    OB_LIT(&o, "]}");
    return ob_finish(&o, len);
}

char *lx_key_json_one(const lx_key_view_t *v, const char *secret, size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"data\":");
    key_object(&o, v);
    if (secret != NULL) {
        OB_LIT(&o, ",\"key\":");
        ob_str(&o, secret);
    }
    OB_LIT(&o, "}");
    return ob_finish(&o, len);
}

char *lx_key_json_deleted(size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"deleted\":true}");
    return ob_finish(&o, len);
}

/* The current key's rate_limit: OpenRouter's deprecated {requests, interval, note}, which the
 * SDK's schema still requires (requests per minute here, -1 without a limit, as OpenRouter),
 * with llmux's {rpm, tpm, concurrency} (0: none). */
static void current_rate_limit(ob_t *o, const lx_ledger_limits_t *l)
{
    OB_LIT(o, ",\"rate_limit\":{\"requests\":");
    ob_i64(o, l->rpm > 0 ? (int64_t)l->rpm : -1);
    OB_LIT(o, ",\"interval\":\"1m\",\"note\":\"requests per interval mirrors rpm; rpm, tpm and "
              "concurrency are this key's limits (0: none)\",\"rpm\":");
    ob_i64(o, l->rpm);
    OB_LIT(o, ",\"tpm\":");
    ob_i64(o, l->tpm);
    OB_LIT(o, ",\"concurrency\":");
    ob_i64(o, l->concurrency);
    OB_LIT(o, "}");
}

char *lx_key_json_current(const lx_key_view_t *v, bool management, size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"data\":{\"label\":");
    OB_ARRAY(&o, v->key.label);
    OB_LIT(&o, ",");
    key_money(&o, v);
    OB_LIT(&o, ",\"is_free_tier\":false,\"is_management_key\":");
    ob_bool(&o, management);
    OB_LIT(&o, ",\"is_provisioning_key\":false,\"creator_user_id\":null,\"expires_at\":");
    ob_time(&o, v->key.expires_at, true);
    /* required by the SDK's schema, with nothing behind them in llmux: every region (the
     * generations say "global"), no organization or workspace, no free-model quota (-1, as
     * rate_limit.requests without a limit) */
    OB_LIT(&o, ",\"allowed_data_regions\":[\"global\"],\"organization_id\":null,"
               "\"workspace_id\":\"\",\"free_model_daily_requests\":{\"limit\":-1,"
               "\"remaining\":-1,\"used\":0}");
    current_rate_limit(&o, &v->key.limits);
    if (v->key.priority == LX_KEY_PRIORITY_BATCH) /* (llmux's: the admission queue's class) */
        OB_LIT(&o, ",\"priority\":\"batch\"");
    else
        OB_LIT(&o, ",\"priority\":\"interactive\"");
    OB_LIT(&o, "}}");
    return ob_finish(&o, len);
}

/* ---- generations and activity ----------------------------------------------------------- */

/* OpenRouter's api_type: "completions" for chat and text completions, "embeddings". */
static const char *api_type(const char *api)
{
    if (strcmp(api, "chat") == 0 || strcmp(api, "completions") == 0)
        return "completions";
    if (strcmp(api, "embeddings") == 0)
        return "embeddings";
    return NULL;
}

/* provider_responses: one per attempt, OpenRouter's members and llmux's "outcome". */
static void gen_attempts(ob_t *o, const lx_record_t *r)
{
    OB_LIT(o, ",\"provider_responses\":[");
    unsigned n = r->n_attempts < LX_RECORD_ATTEMPTS ? r->n_attempts : LX_RECORD_ATTEMPTS;
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            OB_LIT(o, ",");
        OB_LIT(o, "{\"endpoint_id\":");
        OB_FIELD(o, r, LX_RF_ATTEMPT(i, LX_RA_ENDPOINT), false);
        OB_LIT(o, ",\"model_permaslug\":");
        OB_FIELD(o, r, LX_RF_ATTEMPT(i, LX_RA_MODEL), false);
        OB_LIT(o, ",\"provider_name\":");
        OB_FIELD(o, r, LX_RF_ATTEMPT(i, LX_RA_PROVIDER), false);
        OB_LIT(o, ",\"status\":");
        if (r->att_status[i] > 0)
            ob_i64(o, r->att_status[i]);
        else
            OB_LIT(o, "null");
        OB_LIT(o, ",\"latency\":");
        ob_i64(o, r->att_ms[i]);
        OB_LIT(o, ",\"is_byok\":false,\"outcome\":");
        OB_FIELD(o, r, LX_RF_ATTEMPT(i, LX_RA_OUTCOME), false);
        OB_LIT(o, "}");
    }
    OB_LIT(o, "]");
}

/* The token counts and media figures of a generation. */
static void gen_tokens(ob_t *o, const lx_record_t *r)
{
    OB_LIT(o, ",\"native_tokens_cached\":");
    ob_count(o, r->cached_tokens);
    OB_LIT(o, ",\"native_tokens_completion\":");
    ob_count(o, r->completion_tokens);
    OB_LIT(o, ",\"native_tokens_completion_images\":null,\"native_tokens_prompt\":");
    ob_count(o, r->prompt_tokens);
    OB_LIT(o, ",\"native_tokens_reasoning\":");
    ob_count(o, r->reasoning_tokens);
    OB_LIT(o,
           ",\"num_fetches\":0,\"num_input_audio_prompt\":null,\"num_media_completion\":null,"
           "\"num_media_prompt\":null,\"num_search_results\":0,\"origin\":\"\",\"preset_id\":null");
}

static void gen_object(ob_t *o, const lx_record_t *r)
{
    OB_LIT(o, "{\"api_type\":");
    ob_str(o, api_type(lx_record_str(r, LX_RF_API)));
    OB_LIT(o, ",\"app_id\":null,\"cache_discount\":null,\"cancelled\":");
    ob_bool(o, r->cancelled);
    OB_LIT(o, ",\"created_at\":");
    ob_time(o, r->created_at_us / 1000000, false);
    OB_LIT(o, ",\"data_region\":\"global\",\"external_user\":");
    OB_FIELD(o, r, LX_RF_USER, true);
    OB_LIT(o, ",\"finish_reason\":");
    OB_FIELD(o, r, LX_RF_FINISH_REASON, true);
    OB_LIT(o, ",\"generation_time\":");
    ob_i64(o, r->generation_ms);
    OB_LIT(o, ",\"http_referer\":null,\"id\":");
    OB_FIELD(o, r, LX_RF_ID, false);
    OB_LIT(o, ",\"is_byok\":false,\"latency\":");
    ob_i64(o, r->latency_ms);
    OB_LIT(o, ",\"model\":");
    OB_FIELD(o, r, lx_record_len(r, LX_RF_MODEL) != 0 ? LX_RF_MODEL : LX_RF_MODEL_ASKED, false);
    OB_LIT(o, ",\"moderation_latency\":null,\"native_finish_reason\":");
    OB_FIELD(o, r, LX_RF_FINISH_REASON, true);
    gen_tokens(o, r);
    OB_LIT(o, ",\"provider_name\":");
    OB_FIELD(o, r, LX_RF_PROVIDER, true);
    gen_attempts(o, r);
    OB_LIT(o, ",\"request_id\":");
    OB_FIELD(o, r, LX_RF_REQUEST_ID, true);
    OB_LIT(o, ",\"response_cache_source_id\":null,\"router\":null,\"service_tier\":null,"
              "\"session_id\":");
    OB_FIELD(o, r, LX_RF_SESSION_ID, true);
    OB_LIT(o, ",\"streamed\":");
    ob_bool(o, r->streamed);
    OB_LIT(o, ",\"tokens_completion\":");
    ob_count(o, r->completion_tokens);
    OB_LIT(o, ",\"tokens_prompt\":");
    ob_count(o, r->prompt_tokens);
    OB_LIT(o, ",\"total_cost\":");
    ob_money(o, r->cost);
    OB_LIT(o, ",\"upstream_id\":");
    OB_FIELD(o, r, LX_RF_UPSTREAM_ID, true);
    OB_LIT(o, ",\"upstream_inference_cost\":null,\"usage\":");
    ob_money(o, r->cost);
    OB_LIT(o, ",\"user_agent\":null,\"web_search_engine\":null,\"workspace_id\":null,"
              "\"model_requested\":");
    OB_FIELD(o, r, LX_RF_MODEL_ASKED, false);
    OB_LIT(o, ",\"status\":");
    ob_i64(o, r->status);
    OB_LIT(o, ",\"time_to_first_token\":");
    ob_i64(o, r->ttft_ms);
    OB_LIT(o, "}");
}

char *lx_key_json_generation(const lx_record_t *r, size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"data\":");
    gen_object(&o, r);
    OB_LIT(&o, "}");
    return ob_finish(&o, len);
}

static void activity_row(ob_t *o, const lx_activity_row_t *a)
{
    OB_LIT(o, "{\"date\":");
    OB_ARRAY(o, a->date);
    OB_LIT(o, ",\"model\":");
    OB_ARRAY(o, a->model);
    OB_LIT(o, ",\"model_permaslug\":");
    OB_ARRAY(o, a->model);
    /* endpoint_id: a string, as the SDK's schema requires; llmux names endpoints by provider */
    OB_LIT(o, ",\"endpoint_id\":\"\",\"provider_name\":");
    OB_ARRAY(o, a->provider);
    OB_LIT(o, ",\"usage\":");
    ob_money(o, a->cost);
    OB_LIT(o, ",\"byok_usage_inference\":0,\"requests\":");
    ob_i64(o, a->requests);
    OB_LIT(o, ",\"prompt_tokens\":");
    ob_i64(o, a->prompt_tokens);
    OB_LIT(o, ",\"completion_tokens\":");
    ob_i64(o, a->completion_tokens);
    OB_LIT(o, ",\"reasoning_tokens\":");
    ob_i64(o, a->reasoning_tokens);
    OB_LIT(o, "}");
}

char *lx_key_json_activity(const lx_activity_row_t *rows, size_t n, size_t *len)
{
    ob_t o = {0};
    OB_LIT(&o, "{\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            OB_LIT(&o, ",");
        activity_row(&o, &rows[i]);
    }
    OB_LIT(&o, "]}");
    return ob_finish(&o, len);
}
