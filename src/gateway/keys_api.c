/*
 * keys_api.c - the key-management and usage API (OpenRouter's shapes, under /api/v1 and /v1):
 * GET /key, GET and POST /keys, GET, PATCH and DELETE /keys/{hash}, GET /generation?id=,
 * GET /activity.
 *
 *   worker: check the request, build a store job ─> lx_store_submit (lock-free) ─> store
 *   thread: the job runs on SQLite ─> job->done posts back to the worker ─> worker: answer
 *
 * The worker's loop never waits on the database: the request simply has no answer yet. A
 * client that leaves meanwhile (on_abort) detaches its job, which is freed when it comes
 * back. Key material never appears in an answer except the plaintext of a key just created.
 */
#include "gateway/keys_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account/key_json.h"
#include "core/clock.h"
#include "core/core.h"
#include "core/status.h"
#include "gateway/admission.h"
#include "gateway/auth.h"
#include "gateway/request.h"
#include "gateway/service.h"
#include "store/period.h"
#include "store/store.h"

enum { K_KEY, K_KEYS, K_KEYS_ONE, K_GENERATION, K_ACTIVITY };

typedef struct keys_call {
    lx_store_job_t job;
    lx_http_request_t *req; /* NULL once the client left */
    lx_gw_worker_t *gw;
    int what;
    lx_gw_ident_t ident;
} keys_call_t;

static void respond_json(lx_http_request_t *req, int status, const char *body, size_t len)
{
    static const char ct[] = "Content-Type: application/json\r\n";
    lx_http_server_respond(req, status, ct, sizeof(ct) - 1, body, len);
}

static void respond_owned(lx_http_request_t *req, int status, char *body, size_t len)
{
    if (body == NULL) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    respond_json(req, status, body, len);
    free(body);
}

static void call_free(keys_call_t *c)
{
    lx_store_job_dispose(&c->job);
    free(c);
}

/* The value of query parameter <name> of the request target into <out> (raw, not decoded:
 * every value llmux reads is ASCII without escapes); false when absent or too long. */
static bool query_param(const lx_http_request_t *req, const char *name, char *out, size_t cap)
{
    const char *t = req->head.target.ptr, *end = t + req->head.target.len;
    const char *q = memchr(t, '?', req->head.target.len);
    size_t nl = strlen(name);
    for (const char *p = q; p != NULL && p < end;) {
        p++;
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = (size_t)(stop - p) - nl - 1;
            if (vl >= cap)
                return false;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = amp;
    }
    return false;
}

static bool is_hash(const char *s, size_t len)
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- answers (on the worker, when the job is back) ----------------------------------------- */

static int job_status(const lx_store_job_t *job)
{
    switch (job->status) {
    case 0:
        return 200;
    case LX_ENOTFOUND:
        return 404;
    case LX_EINVAL:
        return 400;
    default:
        return 500;
    }
}

static void answer_key(keys_call_t *c)
{
    lx_store_job_t *job = &c->job;
    const lx_config_t *cfg = c->gw->gen->cfg;
    if (job->n_keys == 0) {
        lx_http_server_respond_error(c->req, 404, NULL, "no such key");
        return;
    }
    lx_key_view_t *v = &job->keys[0];
    char *stored_name = v->key.name;
    if (v->from_config) /* (the name is the configuration's, which the store does not know) */
        v->key.name = (char *)lx_gw_ident_name(cfg, &c->ident, NULL);
    if (c->ident.who == LX_WHO_CONFIG && c->ident.index < cfg->n_keys)
        v->key.priority = cfg->keys[c->ident.index].priority == LX_CONFIG_PRIORITY_BATCH
                              ? LX_KEY_PRIORITY_BATCH
                              : LX_KEY_PRIORITY_INTERACTIVE;
    size_t len;
    char *body = lx_key_json_current(v, c->ident.who == LX_WHO_MANAGEMENT, &len);
    v->key.name = stored_name;
    respond_owned(c->req, 200, body, len);
}

static void answer(keys_call_t *c)
{
    lx_store_job_t *job = &c->job;
    lx_http_request_t *req = c->req;
    int status = job_status(job);
    if (status != 200) {
        const char *m = job->message[0] != '\0' ? job->message
                        : status == 404         ? "not found"
                                                : "the store failed";
        lx_http_server_respond_error(req, status, NULL, m);
        return;
    }
    size_t len = 0;
    char *body = NULL;
    switch (job->kind) {
    case LX_JOB_KEY_LIST:
        body = lx_key_json_list(job->keys, job->n_keys, &len);
        break;
    case LX_JOB_KEY_GET:
    case LX_JOB_KEY_UPDATE:
        if (c->what == K_KEY) {
            answer_key(c);
            return;
        }
        body = lx_key_json_one(&job->keys[0], NULL, &len);
        break;
    case LX_JOB_KEY_CREATE:
        body = lx_key_json_one(&job->keys[0], job->secret, &len);
        if (body != NULL) {
            respond_json(req, 201, body, len); /* (copied into the response's buffers) */
            explicit_bzero(body, len);
            free(body);
        } else {
            lx_http_server_respond_error(req, 500, NULL, "out of memory");
        }
        explicit_bzero(job->secret, sizeof(job->secret));
        return;
    case LX_JOB_KEY_DELETE:
        respond_json(req, 200, "{\"deleted\":true}", 16);
        return;
    case LX_JOB_GENERATION:
        body = lx_key_json_generation(job->record, &len);
        break;
    case LX_JOB_ACTIVITY:
        body = lx_key_json_activity(job->rows, job->n_rows, &len);
        break;
    }
    respond_owned(req, status, body, len);
}

/* A generation is readable by the key that made it, and by management keys. */
static bool may_read(const keys_call_t *c)
{
    const lx_record_t *rec = c->job.record;
    if (c->ident.who == LX_WHO_MANAGEMENT || rec == NULL)
        return true;
    if (c->ident.who == LX_WHO_NONE)
        return lx_record_len(rec, LX_RF_KEY_HASH) == 0;
    char hex[65];
    lx_auth_hex(c->ident.digest, hex);
    return strcmp(hex, lx_record_str(rec, LX_RF_KEY_HASH)) == 0;
}

/* A client sees which provider served it, not the provider's addresses (management keys do). */
static void hide_endpoints(lx_record_t *rec)
{
    lx_record_set(rec, LX_RF_ENDPOINT, "", 0);
    for (unsigned i = 0; i < rec->n_attempts && i < LX_RECORD_ATTEMPTS; i++)
        lx_record_set(rec, LX_RF_ATTEMPT(i, LX_RA_ENDPOINT), "", 0);
}

static void on_back(lx_worker_t *w, void *arg)
{
    (void)w;
    keys_call_t *c = arg;
    if (c->req != NULL) {
        c->req->on_abort = NULL;
        c->req->data = NULL; /* (lx_api_done must not take it for a proxied request) */
        if (c->job.kind == LX_JOB_GENERATION && !may_read(c)) {
            c->job.status = LX_ENOTFOUND;
            c->job.message[0] = '\0';
        }
        if (c->job.kind == LX_JOB_GENERATION && c->job.record != NULL &&
            c->ident.who != LX_WHO_MANAGEMENT)
            hide_endpoints(c->job.record);
        answer(c);
    }
    call_free(c);
}

/* Store thread: the job ran. */
static void on_done(lx_store_job_t *job)
{
    keys_call_t *c = (keys_call_t *)job;
    if (lx_worker_post(&c->gw->worker, on_back, c) != 0)
        call_free(c); /* (the worker has stopped: its request is gone with it) */
}

static void on_abort(lx_http_request_t *req)
{
    keys_call_t *c = req->data;
    req->data = NULL;
    c->req = NULL;
    lx_http_server_finish(req);
}

/* ---- requests (on the worker) --------------------------------------------------------------- */

/* Fills the job for route <what>; 0, or an HTTP status with <msg>. */
static int prepare_keys(keys_call_t *c, lx_http_request_t *req, char *msg, size_t cap)
{
    lx_store_job_t *job = &c->job;
    char v[32];
    if (c->what == K_KEYS && req->method == HTTP_GET) {
        job->kind = LX_JOB_KEY_LIST;
        job->include_disabled =
            query_param(req, "include_disabled", v, sizeof(v)) && strcmp(v, "true") == 0;
        if (query_param(req, "offset", v, sizeof(v))) {
            char *end;
            unsigned long off = strtoul(v, &end, 10);
            if (*end != '\0' || v[0] == '\0' || v[0] == '-' || off > 1000000000ul) {
                snprintf(msg, cap, "offset must be an integer >= 0");
                return 400;
            }
            job->offset = (uint32_t)off;
        }
        return 0;
    }
    if (c->what == K_KEYS_ONE) {
        size_t at = req->path.len >= 5 && memcmp(req->path.ptr, "/api/", 5) == 0
                        ? sizeof("/api/v1/keys/") - 1
                        : sizeof("/v1/keys/") - 1;
        if (!is_hash(req->path.ptr + at, req->path.len - at)) {
            snprintf(msg, cap, "no such key (a key's hash is 64 lowercase hex digits)");
            return 404;
        }
        memcpy(job->hash, req->path.ptr + at, 64);
        job->kind = req->method == HTTP_GET     ? LX_JOB_KEY_GET
                    : req->method == HTTP_PATCH ? LX_JOB_KEY_UPDATE
                                                : LX_JOB_KEY_DELETE;
    } else {
        job->kind = LX_JOB_KEY_CREATE;
    }
    if (job->kind == LX_JOB_KEY_GET || job->kind == LX_JOB_KEY_DELETE)
        return 0;
    enum lx_key_json_mode mode =
        job->kind == LX_JOB_KEY_CREATE ? LX_KEY_JSON_CREATE : LX_KEY_JSON_UPDATE;
    if (lx_key_json_parse(req->body.ptr, req->body.len, mode, &job->input, msg, cap) != 0)
        return 400;
    return 0;
}

static int prepare_reads(keys_call_t *c, lx_http_request_t *req, char *msg, size_t cap)
{
    lx_store_job_t *job = &c->job;
    bool mgmt = c->ident.who == LX_WHO_MANAGEMENT;
    if (c->ident.who != LX_WHO_NONE)
        lx_auth_hex(c->ident.digest, job->hash);
    switch (c->what) {
    case K_KEY:
        if (c->ident.who == LX_WHO_NONE) {
            snprintf(msg, cap, "missing API key: send Authorization: Bearer <key>");
            return 401;
        }
        job->kind = LX_JOB_KEY_GET;
        job->config_key = c->ident.who != LX_WHO_STORED;
        return 0;
    case K_GENERATION:
        job->kind = LX_JOB_GENERATION;
        if (!query_param(req, "id", job->gen_id, sizeof(job->gen_id)) || job->gen_id[0] == '\0') {
            snprintf(msg, cap, "missing or invalid query parameter 'id'");
            return 400;
        }
        return 0;
    default:                               /* K_ACTIVITY */
        if (c->ident.who == LX_WHO_NONE) { /* (`auth: none`: nobody to show the usage of) */
            snprintf(msg, cap, "missing API key: send Authorization: Bearer <key>");
            return 401;
        }
        job->kind = LX_JOB_ACTIVITY;
        job->date = -1;
        char v[80];
        if (query_param(req, "date", v, sizeof(v))) {
            int64_t t;
            if (strlen(v) != 10 || lx_period_parse_iso(v, 10, &t) != 0) {
                snprintf(msg, cap, "date must be a day as YYYY-MM-DD");
                return 400;
            }
            job->date = t;
        }
        if (query_param(req, "api_key_hash", v, sizeof(v))) {
            if (!is_hash(v, strlen(v))) {
                snprintf(msg, cap, "api_key_hash must be 64 lowercase hex digits");
                return 400;
            }
            if (!mgmt && strcmp(v, job->hash) != 0) {
                snprintf(msg, cap, "only management keys can read another key's activity");
                return 403;
            }
            memcpy(job->key_hash, v, 65);
        } else if (!mgmt && c->ident.who != LX_WHO_NONE) {
            memcpy(job->key_hash, job->hash, 65); /* a key sees its own activity */
        }
        return 0;
    }
}

void lx_keys_api_serve(lx_http_request_t *req, lx_gw_worker_t *gw, int what)
{
    lx_store_t *store = gw->gw->store;
    if (store == NULL) {
        lx_http_server_respond_error(req, 503, NULL, "the store is not running");
        return;
    }
    keys_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        lx_http_server_respond_error(req, 500, NULL, "out of memory");
        return;
    }
    c->gw = gw;
    c->what = what;
    memcpy(&c->ident, req->app, sizeof(c->ident));
    if (!lx_gw_rebind(gw->gen->cfg, &c->ident)) {
        lx_http_server_respond_error(req, 401, NULL, "this key was removed from the configuration");
        free(c);
        return;
    }
    const char *actor = lx_gw_ident_name(gw->gen->cfg, &c->ident, NULL);
    snprintf(c->job.actor, sizeof(c->job.actor), "%s", actor);
    char msg[300];
    int status = what == K_KEYS || what == K_KEYS_ONE ? prepare_keys(c, req, msg, sizeof(msg))
                                                      : prepare_reads(c, req, msg, sizeof(msg));
    if (status != 0) {
        lx_http_server_respond_error(req, status, NULL, msg);
        call_free(c);
        return;
    }
    c->req = req;
    c->job.done = on_done;
    req->data = c;
    req->on_abort = on_abort;
    lx_store_submit(store, &c->job);
}
