/*
 * body_ref.c - the reference scan of a request body (body_int.h), on core/json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/body_int.h"

/*
 * One read of the body with core/json's tokenizer, which owns the grammar, the depth limit and
 * the error offsets; the members llmux acts on are checked and recorded as they come, values
 * that do not matter are read through. Every body the direct scan gives up on comes here.
 */

struct ref {
    lx_json_t j;
    const char *body;
    lx_body_scan_t *scan;
};

/* The tokenizer's error, worded for the client. */
static int json_fail(const struct ref *r)
{
    switch (r->j.error) {
    case LX_JSON_EEOF:
        return lx_body_fail(r->scan, LX_EJSON, "invalid JSON: unexpected end of body");
    case LX_JSON_EDEPTH:
        return lx_body_fail(r->scan, LX_EJSON, "JSON nested too deeply");
    default:
        return lx_body_fail_at(r->scan, r->j.error_off);
    }
}

static lx_json_type_t next(struct ref *r, lx_json_token_t *t)
{
    return lx_json_next(&r->j, t);
}

static bool tok_is(const struct ref *r, const lx_json_token_t *t, const char *lit, uint32_t n)
{
    return t->end - t->start == n && memcmp(r->body + t->start, lit, n) == 0;
}

static lx_body_span_t tok_span(const lx_json_token_t *t)
{
    lx_body_span_t s = {t->start, t->end - t->start};
    return s;
}

static bool is_bool_or_null(const lx_json_token_t *t)
{
    return t->type == LX_JSON_TRUE || t->type == LX_JSON_FALSE || t->type == LX_JSON_NULL;
}

/* Reads through the value whose first token is <v>; *<end> is one past its last byte. */
static int ref_value_end(struct ref *r, const lx_json_token_t *v, uint32_t *end)
{
    if (v->type == LX_JSON_OBJECT || v->type == LX_JSON_ARRAY) {
        lx_json_token_t close;
        if (!lx_json_skip(&r->j, v, &close))
            return json_fail(r);
        *end = close.end;
    } else {
        *end = v->type == LX_JSON_STRING ? v->end + 1 : v->end;
    }
    return 0;
}

/* The members of the stream_options or usage object just opened: the boolean include_usage
 * or include. */
static int ref_options(struct ref *r, enum lx_body_member m, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    bool usage = m == M_USAGE, seen = false;
    uint32_t members = 0;
    for (;;) {
        lx_json_token_t k, v;
        lx_json_type_t type = next(r, &k);
        if (type == LX_JSON_OBJECT_END) {
            *end = k.end;
            break;
        }
        if (type == LX_JSON_NONE || next(r, &v) == LX_JSON_NONE)
            return json_fail(r);
        members++;
        if (usage ? tok_is(r, &k, "include", 7) : tok_is(r, &k, "include_usage", 13)) {
            if (seen)
                return lx_body_fail(scan, LX_EJSON,
                                    usage ? "duplicate 'usage.include' member"
                                          : "duplicate 'include_usage' member");
            seen = true;
            if (!is_bool_or_null(&v))
                return lx_body_fail(scan, LX_EJSON,
                                    usage ? "'usage.include' must be a boolean"
                                          : "'stream_options.include_usage' must be a boolean");
            if (usage) {
                scan->usage_include = v.type == LX_JSON_TRUE;
            } else {
                scan->has_include_usage = true;
                scan->include_usage = v.type == LX_JSON_TRUE;
                scan->include_usage_value = tok_span(&v);
            }
        } else {
            uint32_t e;
            int rc = ref_value_end(r, &v, &e);
            if (rc != 0)
                return rc;
        }
    }
    if (!usage)
        scan->stream_options_members = members;
    return 0;
}

/* The entries of the "models" array just opened: strings only, at most LX_BODY_MAX_MODELS. */
static int ref_models(struct ref *r, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    for (;;) {
        lx_json_token_t e;
        lx_json_type_t type = next(r, &e);
        if (type == LX_JSON_ARRAY_END) {
            *end = e.end;
            return 0;
        }
        if (type == LX_JSON_NONE)
            return json_fail(r);
        if (type != LX_JSON_STRING)
            return lx_body_fail(scan, LX_EJSON, "'models' must be an array of strings");
        if (scan->n_models == LX_BODY_MAX_MODELS)
            return lx_body_fail(scan, LX_EJSON, "'models' may list at most 16 models");
        scan->model_list[scan->n_models++] = tok_span(&e);
    }
}

/* max_tokens, max_completion_tokens, n, best_of (<m>) and user, recorded and kept upstream: their
 * value starting with token <v> (null, a number or a string; anything else is refused);
 * *<end> is one past it. */
static int ref_recorded(struct ref *r, enum lx_body_member m, const lx_json_token_t *v,
                        uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    if (v->type == LX_JSON_NULL)
        return ref_value_end(r, v, end);
    if (m == M_USER) {
        if (v->type != LX_JSON_STRING)
            return lx_body_fail(scan, LX_EJSON, "'user' must be a string");
        scan->has_user = true;
        scan->user = tok_span(v);
    } else if (v->type != LX_JSON_NUMBER ||
               !lx_body_count(r->body + v->start, v->end - v->start, lx_body_count_slot(scan, m))) {
        return lx_body_fail_count(scan, m);
    }
    return ref_value_end(r, v, end);
}

/* The "messages" or "prompt" (<m>) value starting with token <v>, recorded as the direct scan
 * records it (body.c f_prompt()): an array's elements counted and its last one's first byte
 * kept; a string prompt's content. Any other value is passed over. */
static int ref_prompt(struct ref *r, enum lx_body_member m, const lx_json_token_t *v, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    bool msg = m == M_MESSAGES, arr = v->type == LX_JSON_ARRAY;
    lx_body_span_t none = {0, 0};
    uint32_t count = 0, last = 0;
    if (arr) {
        for (;;) {
            lx_json_token_t e;
            lx_json_type_t type = next(r, &e);
            if (type == LX_JSON_ARRAY_END) {
                *end = e.end;
                break;
            }
            if (type == LX_JSON_NONE)
                return json_fail(r);
            count++;
            last = type == LX_JSON_STRING ? e.start - 1 : e.start;
            uint32_t e_end;
            int rc = ref_value_end(r, &e, &e_end);
            if (rc != 0)
                return rc;
        }
    } else {
        int rc = ref_value_end(r, v, end);
        if (rc != 0)
            return rc;
    }
    lx_body_span_t span = {v->start, arr ? *end - v->start : v->end - v->start};
    if (msg) {
        scan->has_messages = arr;
        scan->messages = arr ? span : none;
        scan->n_messages = count;
        scan->messages_last = last;
        return 0;
    }
    bool ok = arr || v->type == LX_JSON_STRING;
    scan->has_prompt = ok;
    scan->prompt_array = arr;
    scan->prompt = ok ? span : none;
    scan->n_prompt = count;
    scan->prompt_last = last;
    return 0;
}

/* The checks and records of root member <m>, whose value starts with token <v>; *<end> is one
 * past the value. */
static int ref_member(struct ref *r, enum lx_body_member m, const lx_json_token_t *v, uint32_t *end)
{
    lx_body_scan_t *scan = r->scan;
    bool null = v->type == LX_JSON_NULL, obj = v->type == LX_JSON_OBJECT;
    bool str = v->type == LX_JSON_STRING;
    int rc;
    if (m >= M_MAX_TOKENS && m <= M_BEST_OF) /* (max_tokens ... best_of, user among them) */
        return ref_recorded(r, m, v, end);
    switch (m) {
    case M_MODEL:
        if (!str)
            return lx_body_fail(scan, LX_EJSON, "'model' must be a string");
        scan->has_model = true;
        scan->model = tok_span(v);
        break;
    case M_STREAM:
        scan->has_stream = true;
        if (!is_bool_or_null(v))
            return lx_body_fail(scan, LX_EJSON, "'stream' must be a boolean");
        scan->stream = v->type == LX_JSON_TRUE;
        break;
    case M_STREAM_OPTIONS:
        if (!obj && !null)
            return lx_body_fail(scan, LX_EJSON, "'stream_options' must be an object");
        scan->has_stream_options = obj;
        scan->stream_options_null = null;
        if (obj && (rc = ref_options(r, m, end)) != 0)
            return rc;
        if (null)
            *end = v->end;
        scan->stream_options.off = v->start;
        scan->stream_options.len = *end - v->start;
        return 0;
    case M_MODELS:
        scan->has_models = true;
        if (null)
            break;
        if (v->type != LX_JSON_ARRAY)
            return lx_body_fail(scan, LX_EJSON, "'models' must be an array of strings");
        if ((rc = ref_models(r, end)) != 0)
            return rc;
        scan->models.off = v->start;
        scan->models.len = *end - v->start;
        return 0;
    case M_PROVIDER:
        scan->has_provider = true;
        if (null)
            break;
        if (!obj)
            return lx_body_fail(scan, LX_EJSON, "'provider' must be an object");
        if ((rc = ref_value_end(r, v, end)) != 0)
            return rc;
        scan->provider.off = v->start;
        scan->provider.len = *end - v->start;
        return 0;
    case M_ROUTE:
    case M_SESSION_ID:
        *(m == M_ROUTE ? &scan->has_route : &scan->has_session_id) = true;
        if (null)
            break;
        if (!str)
            return lx_body_fail(scan, LX_EJSON,
                                m == M_ROUTE ? "'route' must be a string"
                                             : "'session_id' must be a string");
        *(m == M_ROUTE ? &scan->route : &scan->session_id) = tok_span(v);
        break;
    case M_USAGE:
        scan->has_usage = true;
        if (null)
            break;
        if (!obj)
            return lx_body_fail(scan, LX_EJSON, "'usage' must be an object");
        return ref_options(r, m, end);
    default: /* M_NONE (the prompt's members go to ref_prompt()) */
        break;
    }
    return ref_value_end(r, v, end);
}

/* The reference scan of body[0, len). */
int lx_body_scan_ref(const char *body, size_t len, lx_body_scan_t *scan)
{
    size_t lead = 0;
    while (lead < len && is_ws(body[lead]))
        lead++;
    if (lead == len)
        return lx_body_fail(scan, LX_EJSON, "request body is empty");
    if (body[lead] != '{')
        return lx_body_fail(scan, LX_EJSON, "request body must be a JSON object");

    struct ref r;
    r.body = body;
    r.scan = scan;
    lx_json_init(&r.j, body, len, LX_BODY_MAX_DEPTH);
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.scan = scan;
    lx_json_token_t t, v;
    (void)next(&r, &t); /* the root's '{' */
    scan->root_open = t.start;
    for (;;) {
        lx_json_type_t type = next(&r, &t);
        if (type == LX_JSON_OBJECT_END)
            break;
        if (type == LX_JSON_NONE)
            return json_fail(&r);
        enum lx_body_member m = lx_body_root_member_of(body + t.start, t.end - t.start);
        lx_body_begin_root_member(&w, t.start - 1, m >= M_MODELS);
        if (lx_body_dup_checked(m)) {
            if (w.seen & (1u << m)) {
                snprintf(scan->error, sizeof(scan->error), "duplicate '%s' member",
                         lx_body_member_names[m]);
                return LX_EJSON;
            }
            w.seen |= 1u << m;
        }
        if (next(&r, &v) == LX_JSON_NONE)
            return json_fail(&r);
        int rc = m == M_MESSAGES || m == M_PROMPT ? ref_prompt(&r, m, &v, &w.pos)
                                                  : ref_member(&r, m, &v, &w.pos);
        if (rc != 0)
            return rc;
        lx_body_end_root_member(&w);
    }
    if (next(&r, &t) != LX_JSON_NONE || r.j.error != LX_JSON_OK)
        return json_fail(&r);
    lx_body_plan_cuts(&w);
    return 0;
}
