/*
 * upstream_head.c - the heads of one attempt: the upstream request's head (path, Host,
 * Authorization, the provider's headers, the client's forwardable headers, X-Request-Id) with
 * the body's byte ranges and the upstream model spliced in, and the head lines the client's
 * response gets (what served it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/strbuf.h"
#include "account/account.h"
#include "gateway/admission.h"
#include "gateway/request.h"
#include "gateway/upstream_head.h"
#include "http/http_build.h"
#include "http/http_filter.h"

/* Copies <len> bytes of <s> after the chunk's len (text the body splice inserted). */
static bool append_str(lx_buf_t *b, const char *s, size_t len)
{
    if (lx_buf_avail(b) < len)
        return false;
    memcpy(lx_buf_tail(b), s, len);
    b->len += (uint32_t)len;
    return true;
}

/* The body's pieces for the current attempt: the client's bytes with the upstream model
 * spliced in and llmux's own fields removed (pieces of inserted text point into <scratch>).
 * Sets what the response scan needs (drop_usage, rewrite). The piece count, or <= 0. */
static int splice_body(lx_gw_req_t *r, lx_body_piece_t *pieces, size_t cap, char *scratch,
                       size_t scratch_cap, size_t *total)
{
    const lx_http_request_t *req = r->px.req;
    const char *up_model =
        r->route->upstream_model != NULL ? r->route->upstream_model : r->model->id;
    /* usage is always collected from streams: ask for it when the client did not */
    bool add_usage = r->scan.stream && !r->embeddings;
    /* The usage chunk llmux asked for is the client's when it asked too (stream_options or
     * OpenRouter's `usage: {include: true}`), under /api/v1 (OpenRouter always ends a stream
     * with it, and its SDKs read the cost there), or with stream.always_send_usage. */
    r->drop_usage = add_usage && !r->scan.include_usage && !r->scan.usage_include &&
                    !r->openrouter && !r->gen->cfg->stream_always_send_usage;
    r->rewrite = strcmp(up_model, r->model->id) != 0;
    size_t up_len = strlen(up_model);
    /* The body already names the upstream model, byte for byte (the usual case): its own
     * bytes stay, the splice has no model to escape and insert. The body's string was checked
     * strictly (no raw quote or control character), so without a backslash its bytes are its
     * value. */
    const char *splice_model = up_model;
    if (r->scan.has_model && r->scan.model.len == up_len &&
        memcmp(req->body.ptr + r->scan.model.off, up_model, up_len) == 0 &&
        memchr(up_model, '\\', up_len) == NULL)
        splice_model = NULL;
    return lx_body_splice(req->body.ptr, req->body.len, &r->scan, splice_model, up_len, add_usage,
                          pieces, cap, scratch, scratch_cap, total);
}

/* The head: request line, Host, Content-Length, credentials, the provider's headers, the
 * client's forwardable headers. 0, or LX_ETOOBIG when it does not fit in <head>. */
static int write_head(const lx_gw_req_t *r, lx_buf_t *head, const char *path, size_t plen,
                      const char *host, size_t total)
{
    const lx_http_request_t *req = r->px.req;
    const lx_config_provider_t *prov = r->provider;
    lx_http_build_t hb;
    lx_http_build_request(&hb, head, "POST", path, plen, host, (int64_t)total);
    lx_http_build_header(&hb, "Content-Type", 12, "application/json", 16);
    lx_http_build_header(&hb, "X-Request-Id", 12, req->id, req->id_len);
    if (prov->api_key != NULL) {
        lx_http_build_name(&hb, "Authorization", 13);
        lx_http_build_value(&hb, "Bearer ", 7);
        lx_http_build_value(&hb, prov->api_key, strlen(prov->api_key));
        lx_http_build_eol(&hb);
    }
    for (size_t i = 0; i < prov->n_headers; i++)
        lx_http_build_header(&hb, prov->headers[i].name, strlen(prov->headers[i].name),
                             prov->headers[i].value, strlen(prov->headers[i].value));
    for (unsigned i = 0; i < req->head.n_headers; i++) {
        const lx_http_header_t *h = &req->head.headers[i];
        if (lx_http_forwardable(h->name))
            lx_http_build_header(&hb, h->name.ptr, h->name.len, h->value.ptr, h->value.len);
    }
    return lx_http_build_end(&hb);
}

/* The body's pieces as slices after the head's in px->out: the client's bytes as slices of
 * the chunk that holds the body, inserted text copied past the head. False when the head's
 * chunk has no room for the inserted text. */
static bool add_body_slices(lx_gw_req_t *r, lx_buf_t *head, const lx_body_piece_t *pieces, int np)
{
    lx_proxy_t *px = &r->px;
    const lx_http_request_t *req = px->req;
    for (int i = 0; i < np; i++) {
        const char *p = pieces[i].ptr;
        lx_slice_t sl;
        if (p < req->body.ptr || p >= req->body.ptr + req->body.len) {
            /* inserted text (the model name, stream_options): copy it past the head */
            if (!append_str(head, p, pieces[i].len))
                return false;
            sl = lx_slice_make(head, head->len - pieces[i].len, pieces[i].len);
        } else {
            lx_buf_t *owner = req->body_owner;
            sl = lx_slice_make(owner, (size_t)(p - owner->data), pieces[i].len);
        }
        px->out[px->n_out++] = sl;
    }
    return true;
}

/* The request stays referenced until the answer begins (a retry resends it): keep a copy of
 * the head in a small chunk rather than pinning a 16 KiB pool chunk per waiting request
 * (thousands of slow first tokens). */
static void shrink_head(lx_gw_req_t *r, lx_buf_t *head)
{
    lx_proxy_t *px = &r->px;
    lx_buf_t *exact = lx_buf_pool_get_small(&r->gw->worker.bufs, head->len);
    if (exact == NULL)
        return;
    memcpy(exact->data, head->data, head->len);
    exact->len = head->len;
    for (unsigned i = 0; i < px->n_out; i++) {
        if (px->out[i].buf == head) {
            px->out[i].buf = lx_buf_ref(exact);
            lx_buf_unref(head);
        }
    }
    lx_buf_unref(exact);
}

/* The upstream request of the current attempt into px->out: a new head (request line, Host,
 * credentials, the provider's headers, the client's forwardable headers) and the client's body
 * as slices, with the model spliced and llmux's own fields removed. False when it does not fit
 * (headers too large) or memory ran out. */
bool lx_gw_build_request(lx_gw_req_t *r)
{
    lx_proxy_t *px = &r->px;
    const lx_config_provider_t *prov = r->provider;
    const lx_config_endpoint_t *ep = r->endpoint;
    lx_buf_t *head = lx_buf_pool_get(&r->gw->worker.bufs);
    if (head == NULL)
        return false;

    char path[1024], host[300];
    lx_strbuf_t pb = lx_strbuf_make(path, sizeof(path));
    lx_strbuf_str(&pb, prov->base_path);
    lx_strbuf_str(&pb, r->upstream_path);
    size_t plen = lx_strbuf_len(&pb, path);
    int host_rc = lx_http_authority(host, sizeof(host), ep->host, ep->port, ep->tls ? 443 : 80);

    lx_body_piece_t pieces[LX_PROXY_MAX_OUT - 1];
    char scratch[1024];
    size_t total = 0;
    int np = splice_body(r, pieces, LX_ARRAY_SIZE(pieces), scratch, sizeof(scratch), &total);
    bool ok =
        np > 0 && !pb.overflow && host_rc == 0 && write_head(r, head, path, plen, host, total) == 0;
    px->n_out = 0;
    px->out[px->n_out++] = (lx_slice_t){head, 0, head->len}; /* the pool's reference */
    if (!ok || !add_body_slices(r, head, pieces, np)) {
        for (unsigned i = 0; i < px->n_out; i++)
            lx_buf_unref(px->out[i].buf);
        px->n_out = 0;
        return false;
    }
    shrink_head(r, head);
    return true;
}

/* The client's response head lines for the current attempt: what served it. */
bool lx_gw_build_resp_headers(lx_gw_req_t *r)
{
    char rh[1024];
    lx_strbuf_t rb = lx_strbuf_make(rh, sizeof(rh) - 1);
    const char *up_model =
        r->route->upstream_model != NULL ? r->route->upstream_model : r->model->id;
    if (r->stream)
        LX_STRBUF_LIT(&rb, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    LX_STRBUF_LIT(&rb, "X-Generation-Id: ");
    lx_strbuf_str(&rb, r->gen_id);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Provider: ");
    lx_strbuf_str(&rb, r->provider->name);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Model: ");
    lx_strbuf_str(&rb, r->model->id);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Upstream-Model: ");
    lx_strbuf_str(&rb, up_model);
    LX_STRBUF_LIT(&rb, "\r\nX-Llmux-Attempts: ");
    lx_strbuf_u64(&rb, r->n_attempts);
    LX_STRBUF_LIT(&rb, "\r\n");
    lx_gw_ratelimit_append(r, &rb);
    if (rb.overflow)
        return false;
    size_t n = lx_strbuf_len(&rb, rh);
    lx_buf_t *copy = lx_buf_pool_get_small(&r->gw->worker.bufs, n);
    if (copy == NULL)
        return false;
    memcpy(copy->data, rh, n);
    copy->len = (uint32_t)n;
    lx_buf_unref(r->resp_headers);
    r->resp_headers = copy;
    r->px.resp_headers = copy->data;
    r->px.resp_headers_len = n;
    return true;
}
