/*
 * admission.c - who calls, whether they may, and what it cost.
 *
 *   head:    lx_gw_identify ─ the Authorization key's SHA-256 against the configuration's keys,
 *            the management keys and the worker's snapshot of stored keys (one hash, kept in
 *            the HTTP request's app bytes until the handler)
 *   body:    lx_gw_bind_key (the stored key, looked up again: the snapshot may have changed) ─
 *            the plan, with the key's allowlist and default preferences (route/plan.h) ─
 *            lx_gw_admit: the worst case of the plan reserved against the key's ledger, rate
 *            limits and concurrency (store/ledger.h), and the usage record opened
 *   end:     lx_gw_settle ─ the actual cost (or the reservation when the usage is unknown, 0
 *            when nothing was served) settles the hold; the record goes to the store's queue
 *
 * Nothing here waits or takes a lock: ledgers are atomics, the record queue is lock-free.
 */
#include "gateway/admission.h"

#include <stdio.h>
#include <string.h>

#include "account/account.h"
#include "core/clock.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "gateway/auth.h"
#include "gateway/service.h"
#include "route/health.h"
#include "store/money.h"
#include "store/store.h"

_Static_assert(sizeof(lx_gw_ident_t) <= sizeof(((lx_http_request_t *)0)->app),
               "the caller's identity fits the request's app bytes");

static bool digest_equal(const uint8_t a[32], const uint8_t b[32])
{
    unsigned diff = 0;
    for (size_t i = 0; i < 32; i++)
        diff |= (unsigned)(a[i] ^ b[i]);
    return diff == 0;
}

/* Why a stored key cannot be used now, or NULL. */
static const char *key_unusable(const lx_store_key_t *k, int64_t now_s)
{
    if (k->disabled)
        return "this API key is disabled";
    if (k->expires_at != 0 && now_s >= k->expires_at)
        return "this API key has expired";
    return NULL;
}

int lx_gw_identify(const lx_http_request_t *req, lx_gw_worker_t *gw, lx_gw_ident_t *id,
                   const char **message)
{
    const lx_config_t *cfg = gw->gen->cfg;
    memset(id, 0, sizeof(*id));
    id->who = LX_WHO_NONE;
    const lx_http_header_t *h = lx_http_request_header(req, "authorization");
    if (h == NULL) {
        *message = "missing API key: send Authorization: Bearer <key>";
        return cfg->auth_none ? 0 : 401;
    }
    /* with `auth: none`, any key (SDKs insist on sending one) is no key, unless it is known */
    int unknown = cfg->auth_none ? 0 : 401;
    *message = "invalid API key";
    if (!lx_auth_bearer_digest_cached(&gw->auth_cache, h->value.ptr, h->value.len, id->digest))
        return unknown;
    long k = lx_auth_find(cfg->keys, cfg->n_keys, id->digest);
    if (k >= 0) {
        id->who = LX_WHO_CONFIG;
        id->index = (uint16_t)k;
        return 0;
    }
    if (cfg->admin_enabled && digest_equal(cfg->admin_digest, id->digest)) {
        id->who = LX_WHO_MANAGEMENT;
        return 0;
    }
    k = lx_auth_find(cfg->admin_keys, cfg->n_admin_keys, id->digest);
    if (k >= 0) {
        id->who = LX_WHO_MANAGEMENT;
        id->index = (uint16_t)(k + 1);
        return 0;
    }
    const lx_store_key_t *sk = gw->keys != NULL ? lx_keyset_find(gw->keys, id->digest) : NULL;
    if (sk == NULL)
        return unknown;
    const char *why = key_unusable(sk, lx_clock_now_us() / 1000000);
    if (why != NULL) {
        *message = why;
        return 401;
    }
    id->who = LX_WHO_STORED;
    return 0;
}

const char *lx_gw_ident_name(const lx_config_t *cfg, const lx_gw_ident_t *id,
                             const lx_store_key_t *key)
{
    switch (id->who) {
    case LX_WHO_CONFIG:
        return id->index < cfg->n_keys ? cfg->keys[id->index].name : "";
    case LX_WHO_MANAGEMENT:
        if (id->index == 0)
            return "admin";
        return id->index - 1u < cfg->n_admin_keys ? cfg->admin_keys[id->index - 1].name : "";
    case LX_WHO_STORED:
        return key != NULL ? key->name : "";
    default:
        return "";
    }
}

bool lx_gw_rebind(const lx_config_t *cfg, lx_gw_ident_t *id)
{
    long k;
    switch (id->who) {
    case LX_WHO_CONFIG:
        k = lx_auth_find(cfg->keys, cfg->n_keys, id->digest);
        break;
    case LX_WHO_MANAGEMENT:
        if (cfg->admin_enabled && digest_equal(cfg->admin_digest, id->digest)) {
            id->index = 0;
            return true;
        }
        k = lx_auth_find(cfg->admin_keys, cfg->n_admin_keys, id->digest);
        k = k >= 0 ? k + 1 : -1;
        break;
    default:
        return true;
    }
    if (k < 0)
        return false;
    id->index = (uint16_t)k;
    return true;
}

int lx_gw_bind_key(lx_gw_req_t *r, const char **message)
{
    r->key = NULL;
    if (!lx_gw_rebind(r->gen->cfg, &r->ident)) {
        *message = "this API key was removed from the configuration";
        return 401;
    }
    if (r->ident.who != LX_WHO_STORED)
        return 0;
    const lx_keyset_t *ks = r->gw->keys;
    r->key = ks != NULL ? lx_keyset_find(ks, r->ident.digest) : NULL;
    if (r->key == NULL) {
        *message = "this API key was deleted";
        return 401;
    }
    const char *why = key_unusable(r->key, lx_clock_now_us() / 1000000);
    if (why != NULL) {
        *message = why;
        r->key = NULL;
        return 401;
    }
    r->ident.priority = r->key->priority; /* (the admission queue's class: fleet_queue.c) */
    return 0;
}

static bool allow_model(const void *arg, const char *id, size_t len)
{
    return lx_account_allows(arg, id, len);
}

void lx_gw_key_rules(const lx_gw_req_t *r, lx_plan_req_t *q)
{
    const lx_store_key_t *k = r->key;
    if (k == NULL)
        return;
    if (k->n_models > 0) {
        q->allow = allow_model;
        q->allow_arg = k;
    }
    if (k->provider != NULL) {
        q->default_provider = k->provider;
        q->default_provider_len = strlen(k->provider);
    }
}

/* <v> (>= 0) times the request's choices, saturated at INT64_MAX. */
static int64_t times_choices(const lx_gw_req_t *r, int64_t v)
{
    return v > INT64_MAX / r->choices ? INT64_MAX : v * r->choices;
}

/* The worst case of the request at <rt> of model <m>: its prompt estimate, and its maximum
 * completion times the completions it asks for (`n`, `best_of`: the prompt is billed once,
 * each completion apart); a request that names no maximum may not cost more than
 * limits.default_max_cost per completion, nor more than the model's whole context per
 * completion at the completion price (0 for a free route); embeddings have no completion. */
static int64_t worst_case(const lx_gw_req_t *r, const lx_config_model_t *m,
                          const lx_config_route_t *rt)
{
    const lx_config_t *cfg = r->gen->cfg;
    if (r->embeddings)
        return lx_account_reserve(rt, r->prompt_estimate, 0, 0);
    if (r->max_tokens >= 0)
        return lx_account_reserve(rt, r->prompt_estimate, times_choices(r, r->max_tokens), 0);
    int64_t by_default = lx_account_reserve(rt, r->prompt_estimate, -1,
                                            times_choices(r, cfg->limits_default_max_cost));
    int64_t by_context =
        lx_account_reserve(rt, r->prompt_estimate, times_choices(r, m->context_length), 0);
    return by_default < by_context ? by_default : by_context;
}

/* The worst case over the plan: the entry whose prices make the request dearest. */
static int64_t plan_reservation(const lx_gw_req_t *r)
{
    const lx_config_t *cfg = r->gen->cfg;
    int64_t worst = 0;
    for (uint16_t i = 0; i < r->n_plan; i++) {
        const lx_config_model_t *m = &cfg->models[r->plan[i].model];
        int64_t c = worst_case(r, m, &m->routes[r->plan[i].route]);
        worst = c > worst ? c : worst;
    }
    return worst;
}

static uint32_t token_estimate(const lx_gw_req_t *r)
{
    uint64_t t = (uint64_t)r->prompt_estimate +
                 (r->max_tokens > 0 ? (uint64_t)times_choices(r, r->max_tokens) : 0);
    return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

/* A 402: the key's limit cannot hold the reservation. When the reservation alone is more
 * than the whole limit no wait helps ("weight_exceeds_budget"); otherwise the limit is spent
 * (or held by requests in flight) until its period resets, when Retry-After says so. */
static int refuse_budget(lx_gw_req_t *r, const lx_admit_t *a, char *msg, size_t cap)
{
    lx_gw_refusal_t *f = r->refusal;
    char money[2][LX_MONEY_FMT_MAX];
    bool too_big = r->key != NULL && r->key->limits.has_limit && a->reserve > r->key->limits.limit;
    lx_money_format(a->reserve, money[0]);
    lx_money_format(a->limit_remaining > 0 ? a->limit_remaining : 0, money[1]);
    bool hint = r->max_tokens < 0 && !r->embeddings;
    snprintf(msg, cap,
             "this key's spending limit is reached: the request may cost up to $%s and $%s is "
             "left%s",
             money[0], money[1], hint ? " (set max_tokens to reserve less)" : "");
    snprintf(f->meta, sizeof(f->meta),
             "\"limit_source\":\"openrouter_key_limit\",\"reason\":\"%s\"",
             too_big ? "weight_exceeds_budget" : "limit_exhausted");
    f->error_type = "payment_required";
    f->code = "insufficient_quota";
    return 402;
}

/* The answer to a refused admission: status, message, headers and metadata. */
static int refuse(lx_gw_req_t *r, const lx_admit_t *a, char *msg, size_t cap)
{
    lx_gw_refusal_t *f = r->refusal;
    size_t hn = 0;
    if (a->retry_after_ms >= 0)
        hn = (size_t)snprintf(f->headers, sizeof(f->headers), "Retry-After: %lld\r\n",
                              (long long)((a->retry_after_ms + 999) / 1000));
    else if (a->verdict != LX_ADMIT_BUDGET) /* (a 429 that waiting cannot cure) */
        hn = (size_t)snprintf(f->headers, sizeof(f->headers), "x-should-retry: false\r\n");
    if (hn < sizeof(f->headers))
        lx_account_ratelimit_headers(&a->rl, f->headers + hn, sizeof(f->headers) - hn);
    switch (a->verdict) {
    case LX_ADMIT_BUDGET:
        return refuse_budget(r, a, msg, cap);
    case LX_ADMIT_RPM:
        snprintf(msg, cap, "rate limit reached for requests per minute (RPM): limit %u",
                 a->rl.limit_requests);
        break;
    case LX_ADMIT_TPM:
        snprintf(msg, cap, "%s for tokens per minute (TPM): limit %u, requested %u",
                 a->retry_after_ms < 0 ? "request too large for this key's rate limit"
                                       : "rate limit reached",
                 a->rl.limit_tokens, a->tokens);
        break;
    default:
        snprintf(msg, cap, "too many requests in flight for this key (its concurrency limit)");
        break;
    }
    snprintf(f->meta, sizeof(f->meta), "\"limit_source\":\"key_rate_limit\"");
    f->error_type = "rate_limit_exceeded";
    f->code = "rate_limit_exceeded";
    return 429;
}

/* The record's fields known at admission. */
static void record_open(lx_gw_req_t *r, const lx_http_request_t *req, int64_t now_us)
{
    lx_record_t *rec = lx_store_record_get(r->gw->gw->store, &r->gw->rec_pool);
    if (rec == NULL)
        return; /* (out of memory: the request goes on unrecorded, the log says so) */
    const lx_config_t *cfg = r->gen->cfg;
    const char *body = req->body.ptr;
    lx_record_set(rec, LX_RF_ID, r->gen_id, strlen(r->gen_id));
    if (r->ident.who != LX_WHO_NONE) {
        char hex[65];
        lx_auth_hex(r->ident.digest, hex);
        lx_record_set(rec, LX_RF_KEY_HASH, hex, 64);
    }
    const char *name = lx_gw_ident_name(cfg, &r->ident, r->key);
    lx_record_set(rec, LX_RF_KEY_NAME, name, strlen(name));
    if (r->scan.has_model)
        lx_record_set(rec, LX_RF_MODEL_ASKED, body + r->scan.model.off, r->scan.model.len);
    const char *api = r->embeddings                                   ? "embeddings"
                      : strcmp(r->upstream_path, "/completions") == 0 ? "completions"
                                                                      : "chat";
    lx_record_set(rec, LX_RF_API, api, strlen(api));
    lx_record_set(rec, LX_RF_REQUEST_ID, req->id, req->id_len);
    if (r->scan.has_session_id)
        lx_record_set(rec, LX_RF_SESSION_ID, body + r->scan.session_id.off, r->scan.session_id.len);
    if (r->scan.has_user)
        lx_record_set(rec, LX_RF_USER, body + r->scan.user.off, r->scan.user.len);
    rec->created_at_us = now_us;
    rec->streamed = r->stream;
    rec->prompt_tokens = rec->completion_tokens = -1;
    rec->cached_tokens = rec->reasoning_tokens = -1;
    r->rec = rec;
}

int lx_gw_admit(lx_gw_req_t *r, const lx_http_request_t *req, char *msg, size_t cap)
{
    lx_store_t *store = r->gw->gw->store;
    int64_t now_us = lx_clock_now_us();
    r->prompt_estimate = lx_account_prompt_estimate(req->body.len);
    /* (providers honour one or the other: the larger bounds both) */
    r->max_tokens = r->scan.max_completion_tokens > r->scan.max_tokens
                        ? r->scan.max_completion_tokens
                        : r->scan.max_tokens;
    r->choices = r->scan.best_of > r->scan.n ? r->scan.best_of : r->scan.n;
    if (r->choices < 1)
        r->choices = 1;
    if (r->key != NULL && store != NULL) {
        lx_admit_t a = {
            .now_us = now_us, .reserve = plan_reservation(r), .tokens = token_estimate(r)};
        /* (the embedded store decides at once; a shared one would call back: see
         * store/README.md) */
        if (lx_store_admit(store, r->key, &a, &r->hold, NULL, NULL) != 0 ||
            a.verdict != LX_ADMIT_OK)
            return refuse(r, &a, msg, cap);
        r->rl = a.rl;
    }
    if (store != NULL)
        record_open(r, req, now_us);
    return 0;
}

void lx_gw_ratelimit_append(const lx_gw_req_t *r, lx_strbuf_t *sb)
{
    if (r->hold.ledger != NULL)
        lx_account_ratelimit_append(&r->rl, sb);
}

/* What the request cost: its usage at the serving route's prices. A served answer whose usage
 * is unknown: a stream cut or cancelled midway costs what it streamed (its prompt estimate and
 * one completion token per event, the providers' one-token deltas), at most its worst case; a
 * whole answer or a finished stream without usage costs its worst case (never 0). Nothing
 * served costs nothing. */
static int64_t actual_cost(const lx_gw_req_t *r, bool served, bool cut, bool *known)
{
    const lx_sse_scan_t *s = &r->sse;
    *known = r->scanning && (s->prompt_tokens >= 0 || s->completion_tokens >= 0);
    if (!served || r->route == NULL)
        return 0;
    if (*known)
        return lx_account_cost(r->route, s->prompt_tokens, s->completion_tokens);
    int64_t worst = worst_case(r, r->model, r->route);
    if (cut && r->scanning && !s->json_mode) {
        int64_t partial = lx_account_cost(r->route, r->prompt_estimate, (int64_t)s->events);
        return partial < worst ? partial : worst;
    }
    return worst;
}

/* Attempt string <f>, from configuration object <cfg_ptr>: the bytes of field <twin> when that
 * holds the served one's (<served>), else the attempt's before when that one's (<before>) is
 * the same object, else a copy of <v>. */
static void attempt_str(lx_record_t *rec, unsigned f, const void *cfg_ptr, const void *served,
                        const void *before, unsigned twin, const char *v)
{
    if (cfg_ptr == served)
        lx_record_share(rec, f, twin);
    else if (cfg_ptr == before)
        lx_record_share(rec, f, f - LX_RA_COUNT); /* (the attempt before's) */
    else
        lx_record_set(rec, f, v, strlen(v));
}

/* The attempts, after the served model, provider and endpoint (<served>): an attempt's
 * strings share theirs, or the attempt's before, when they are the same configuration's. */
static void record_attempts(lx_record_t *rec, const lx_gw_req_t *r, bool served)
{
    const lx_config_t *cfg = r->gen->cfg;
    unsigned n = r->n_attempts < LX_RECORD_ATTEMPTS ? r->n_attempts : LX_RECORD_ATTEMPTS;
    const void *sm = served ? (const void *)r->model : NULL;
    const void *sp = served ? (const void *)r->provider : NULL;
    const void *se = served ? (const void *)r->endpoint : NULL;
    const void *bm = NULL, *bp = NULL, *be = NULL;
    for (unsigned i = 0; i < n; i++) {
        const lx_gw_attempt_t *a = &r->attempts[i];
        const lx_config_model_t *m = &cfg->models[a->model];
        const lx_config_provider_t *p = &cfg->providers[m->routes[a->route].provider];
        const lx_config_endpoint_t *e = &p->endpoints[a->ep];
        attempt_str(rec, LX_RF_ATTEMPT(i, LX_RA_PROVIDER), p, sp, bp, LX_RF_PROVIDER, p->name);
        attempt_str(rec, LX_RF_ATTEMPT(i, LX_RA_ENDPOINT), e, se, be, LX_RF_ENDPOINT, e->url);
        attempt_str(rec, LX_RF_ATTEMPT(i, LX_RA_MODEL), m, sm, bm, LX_RF_MODEL, m->id);
        const char *o = lx_health_outcome_name((lx_health_outcome_t)a->outcome);
        lx_record_set(rec, LX_RF_ATTEMPT(i, LX_RA_OUTCOME), o, strlen(o));
        rec->att_status[i] = a->status;
        rec->att_ms[i] = (uint32_t)a->ms;
        bm = m;
        bp = p;
        be = e;
    }
    rec->n_attempts = (uint8_t)n;
}

static uint32_t ms_between(uint64_t from_ns, uint64_t to_ns)
{
    return from_ns != 0 && to_ns > from_ns ? (uint32_t)((to_ns - from_ns) / 1000000) : 0;
}

static void record_close(lx_gw_req_t *r, lx_record_t *rec, bool served, int64_t cost, bool known)
{
    const lx_proxy_t *px = &r->px;
    const lx_sse_scan_t *s = &r->sse;
    if (served) {
        lx_record_set(rec, LX_RF_MODEL, r->model->id, strlen(r->model->id));
        lx_record_set(rec, LX_RF_PROVIDER, r->provider->name, strlen(r->provider->name));
        lx_record_set(rec, LX_RF_ENDPOINT, r->endpoint->url, strlen(r->endpoint->url));
    }
    if (known) {
        rec->prompt_tokens = s->prompt_tokens;
        rec->completion_tokens = s->completion_tokens;
        rec->cached_tokens = s->cached_tokens;
        rec->reasoning_tokens = s->reasoning_tokens;
    }
    if (r->scanning) {
        lx_record_set(rec, LX_RF_FINISH_REASON, s->finish_reason, strlen(s->finish_reason));
        lx_record_set(rec, LX_RF_UPSTREAM_ID, s->id, s->id_len);
    }
    rec->usage_known = known;
    rec->cost = cost;
    rec->reserved = r->hold.reserved;
    rec->cancelled = px->req->peer_gone || r->finish_code == LX_ECANCELED;
    rec->status = (int16_t)(px->client_status != 0 ? px->client_status : px->upstream_status);
    rec->latency_ms = ms_between(px->t_start_ns, px->t_end_ns);
    rec->ttft_ms = ms_between(px->t_start_ns, px->t_first_byte_ns);
    rec->generation_ms = ms_between(px->t_first_byte_ns, px->t_end_ns);
    record_attempts(rec, r, served);
}

void lx_gw_settle(lx_gw_req_t *r, int code)
{
    const lx_proxy_t *px = &r->px;
    lx_store_t *store = r->gw->gw->store;
    bool served = px->committed && px->upstream_status > 0 && px->upstream_status < 400;
    bool cut = code != 0 || px->req->peer_gone;
    bool known = false;
    int64_t cost = actual_cost(r, served, cut, &known);
    int64_t now_us = lx_clock_now_us();
    if (r->hold.ledger != NULL) {
        const lx_sse_scan_t *s = &r->sse;
        int64_t tokens = known ? (s->prompt_tokens > 0 ? s->prompt_tokens : 0) +
                                     (s->completion_tokens > 0 ? s->completion_tokens : 0)
                         : served ? (int64_t)r->hold.tokens
                                  : 0;
        lx_store_settle(store, &r->hold, cost, tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens,
                        now_us);
    }
    lx_record_t *rec = r->rec;
    r->rec = NULL;
    if (rec == NULL)
        return;
    record_close(r, rec, served, cost, known);
    lx_store_record(store, rec);
}

void lx_gw_release(lx_gw_req_t *r)
{
    if (r->hold.ledger != NULL)
        lx_store_settle(r->gw->gw->store, &r->hold, 0, 0, lx_clock_now_us());
    lx_store_record_put(&r->gw->rec_pool, r->rec);
    r->rec = NULL;
}
