/*
 * http_client.c - upstream response parsing and request head formatting (see http_client.h).
 *
 * Headers other than Content-Type and Retry-After are not kept: the proxy builds the client's
 * response head itself and never forwards an upstream's hop-by-hop or identifying headers.
 */
#include "http/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"
#include "http/http_build.h"

enum { H_OTHER, H_CONTENT_TYPE, H_RETRY_AFTER };

static lx_http_client_t *hc_of(llhttp_t *p)
{
    return p->data;
}

static int count(lx_http_client_t *hc, size_t len)
{
    hc->head_bytes += len;
    if (hc->head_bytes > hc->max_head) {
        hc->error = "upstream response head too large";
        return -1;
    }
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    return count(hc_of(p), len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    lx_http_client_t *hc = hc_of(p);
    if (count(hc, len + 4) != 0)
        return -1;
    /* accumulate the name in value[] (names we care about are short) */
    if (hc->cur_header == -1) {
        size_t k = LX_MIN(len, sizeof(hc->value) - hc->value_len);
        memcpy(hc->value + hc->value_len, at, k);
        hc->value_len += k;
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    lx_http_client_t *hc = hc_of(p);
    lx_str_t name = {hc->value, hc->value_len};
    if (lx_str_caseeq(name, "content-type", 12))
        hc->cur_header = H_CONTENT_TYPE;
    else if (lx_str_caseeq(name, "retry-after", 11))
        hc->cur_header = H_RETRY_AFTER;
    else
        hc->cur_header = H_OTHER;
    hc->value_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    lx_http_client_t *hc = hc_of(p);
    if (count(hc, len) != 0)
        return -1;
    if (hc->cur_header != H_OTHER) {
        size_t k = LX_MIN(len, sizeof(hc->value) - 1 - hc->value_len);
        memcpy(hc->value + hc->value_len, at, k);
        hc->value_len += k;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    lx_http_client_t *hc = hc_of(p);
    hc->value[hc->value_len] = '\0';
    if (hc->cur_header == H_CONTENT_TYPE) {
        memcpy(hc->content_type, hc->value, hc->value_len + 1);
    } else if (hc->cur_header == H_RETRY_AFTER) {
        unsigned long long v;
        if (lx_str_to_u64((lx_str_t){hc->value, hc->value_len}, &v))
            hc->retry_after = v > 86400 ? 86400 : (int64_t)v;
    }
    hc->cur_header = -1;
    hc->value_len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    lx_http_client_t *hc = hc_of(p);
    hc->status = p->status_code;
    if (hc->status < 200) {
        /* 1xx interim answers carry no body; the real head follows, within a bound */
        if (++hc->n_interim > LX_HTTP_CLIENT_MAX_INTERIM) {
            hc->error = "upstream sent too many 1xx interim responses";
            return -1;
        }
        return 0;
    }
    hc->head_done = true;
    hc->keep_alive = llhttp_should_keep_alive(p) != 0;
    hc->chunked = (p->flags & F_CHUNKED) != 0;
    hc->has_length = (p->flags & F_CONTENT_LENGTH) != 0;
    hc->content_length = hc->has_length ? p->content_length : 0;
    int rc = hc->cbs->on_head(hc);
    if (rc != 0) {
        /* llhttp gives this hook's return values meanings of their own (1: no body): say
         * stop with an error and report the callback's value from lx_http_client_parse */
        hc->cb_rc = rc;
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    lx_http_client_t *hc = hc_of(p);
    int rc = hc->cbs->on_body(hc, hc->cur, at, len);
    if (rc != 0) {
        hc->cb_rc = rc;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    lx_http_client_t *hc = hc_of(p);
    if (!hc->head_done) {
        hc->head_bytes = 0; /* a 1xx answer ended: parse the real response */
        return 0;
    }
    hc->complete = true;
    int rc = hc->cbs->on_complete(hc);
    if (rc != 0) {
        hc->cb_rc = rc;
        return -1;
    }
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void lx_http_client_init(lx_http_client_t *hc, const lx_http_client_cbs_t *cbs, uint64_t max_head,
                         void *data)
{
    memset(hc, 0, sizeof(*hc));
    llhttp_init(&hc->parser, HTTP_RESPONSE, &settings);
    hc->parser.data = hc;
    hc->cbs = cbs;
    hc->data = data;
    hc->max_head = max_head;
    hc->retry_after = -1;
    hc->cur_header = -1;
}

int lx_http_client_parse(lx_http_client_t *hc, lx_buf_t *b, const char *data, size_t len)
{
    if (hc->complete) {
        hc->keep_alive = false; /* bytes after the response: never reuse this connection */
        return 0;
    }
    hc->cur = b;
    llhttp_errno_t err = llhttp_execute(&hc->parser, data, len);
    hc->cur = NULL;
    if (err == HPE_OK)
        return 0;
    if (err == HPE_PAUSED) {
        if (llhttp_get_error_pos(&hc->parser) != data + len)
            hc->keep_alive = false;
        return 0;
    }
    if (hc->cb_rc != 0)
        return hc->cb_rc; /* a callback stopped parsing on purpose */
    if (hc->error == NULL)
        hc->error = llhttp_get_error_reason(&hc->parser);
    return LX_EUPSTREAM;
}

int lx_http_client_eof(lx_http_client_t *hc)
{
    if (hc->complete)
        return 0;
    if (!hc->head_done) {
        hc->error = "upstream closed the connection before the response head";
        return LX_EUPSTREAM;
    }
    llhttp_errno_t err = llhttp_finish(&hc->parser);
    if ((err == HPE_OK || err == HPE_PAUSED) && hc->complete)
        return 0;
    hc->error = "upstream closed the connection mid-response";
    return LX_EUPSTREAM;
}

int lx_http_client_format_head(lx_buf_t *b, const char *method, const char *path, size_t path_len,
                               const char *host, const char *extra, size_t extra_len,
                               int64_t content_length)
{
    lx_http_build_t hb;
    lx_http_build_request(&hb, b, method, path, path_len, host, content_length);
    if (extra_len > 0)
        lx_http_build_lines(&hb, extra, extra_len);
    return lx_http_build_end(&hb);
}
