/*
 * mock_reply.c - the bytes the mock answers with: HTTP heads, OpenAI-shaped JSON bodies
 * (chat.completion, text_completion, embeddings, model list, errors) and SSE events
 * (chat.completion.chunk / text_completion chunks, the usage chunk, [DONE]).
 *
 * Pure formatting: everything is appended to caller-owned buffers, nothing is sent here.
 * mock_conn.c decides what to answer and when; this file decides how it looks. Content text is
 * a fixed pattern, so a streamed answer concatenated equals the non-streamed one.
 */
#include "mock_internal.h"

#include <string.h>
#include <time.h>

static const char pattern[] = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
                              "eiusmod tempor incididunt ut labore et dolore magna aliqua ";

uint64_t lx_mock_reply_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* n bytes of content text starting at offset off of the endless pattern. */
static int put_text(lx_mock_buf_t *b, uint64_t off, uint64_t n)
{
    const size_t plen = sizeof(pattern) - 1;
    if (n > SIZE_MAX || lx_mock_buf_reserve(b, (size_t)n) < 0)
        return UV_ENOMEM;
    size_t pos = (size_t)(off % plen);
    while (n > 0) {
        size_t take = plen - pos;
        if (take > n)
            take = (size_t)n;
        memcpy(b->p + b->len, pattern + pos, take);
        b->len += take;
        n -= take;
        pos = 0;
    }
    return 0;
}

/* s as the inside of a JSON string (quotes and backslashes escaped, control bytes dropped). */
static int put_escaped(lx_mock_buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc = 0;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = lx_mock_buf_append(b, e, 2);
        } else if (c >= 0x20) {
            rc = lx_mock_buf_append(b, s, 1);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Mock Status";
    }
}

static int put_head(lx_mock_buf_t *out, int status, const char *ctype, lx_mock_frame_t frame,
                    size_t len, lx_mock_connhdr_t connhdr, const char *extra)
{
    int rc = lx_mock_buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s", status,
                                reason(status), ctype, extra);
    if (rc == 0 && frame == LX_MOCK_FRAME_LENGTH)
        rc = lx_mock_buf_printf(out, "Content-Length: %zu\r\n", len);
    else if (rc == 0 && frame == LX_MOCK_FRAME_CHUNKED)
        rc = lx_mock_buf_printf(out, "Transfer-Encoding: chunked\r\n");
    if (rc == 0 && connhdr == LX_MOCK_CONNHDR_CLOSE)
        rc = lx_mock_buf_printf(out, "Connection: close\r\n");
    else if (rc == 0 && connhdr == LX_MOCK_CONNHDR_KEEP_ALIVE)
        rc = lx_mock_buf_printf(out, "Connection: keep-alive\r\n");
    if (rc == 0)
        rc = lx_mock_buf_append(out, "\r\n", 2);
    return rc;
}

/* The body in scratch, framed, after the head. */
static int put_body(lx_mock_buf_t *out, const lx_mock_buf_t *body, lx_mock_frame_t frame)
{
    if (frame != LX_MOCK_FRAME_CHUNKED)
        return lx_mock_buf_append(out, body->p, body->len);
    /* several chunks for big bodies, so clients meet chunk boundaries mid-body */
    const size_t piece = 8192;
    for (size_t off = 0; off < body->len; off += piece) {
        size_t n = body->len - off < piece ? body->len - off : piece;
        if (lx_mock_buf_printf(out, "%zx\r\n", n) < 0 ||
            lx_mock_buf_append(out, body->p + off, n) < 0 || lx_mock_buf_append(out, "\r\n", 2))
            return UV_ENOMEM;
    }
    return lx_mock_buf_append(out, "0\r\n\r\n", 5);
}

static int put_usage(lx_mock_buf_t *b, const lx_mock_reply_t *r)
{
    return lx_mock_buf_printf(b,
                              "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                              "\"total_tokens\":%llu}",
                              (unsigned long long)r->prompt_tokens,
                              (unsigned long long)r->completion_tokens,
                              (unsigned long long)(r->prompt_tokens + r->completion_tokens));
}

static uint64_t content_size(const lx_mock_reply_t *r)
{
    if (r->body_size >= 0)
        return (uint64_t)r->body_size;
    return (uint64_t)r->chunks * r->chunk_size;
}

static int json_completion(lx_mock_buf_t *b, const lx_mock_reply_t *r)
{
    int chat = r->ep == LX_MOCK_EP_CHAT;
    int rc = lx_mock_buf_printf(b,
                                "{\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%lld,"
                                "\"model\":\"%.*s\",\"choices\":[{\"index\":0,",
                                chat ? "chatcmpl" : "cmpl", (unsigned long long)r->id,
                                chat ? "chat.completion" : "text_completion", (long long)r->created,
                                (int)r->model_len, r->model);
    if (rc == 0)
        rc = lx_mock_buf_printf(
            b, "%s", chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"" : "\"text\":\"");
    if (rc == 0)
        rc = put_text(b, 0, content_size(r));
    if (rc == 0)
        rc = lx_mock_buf_printf(b, "\"%s,\"logprobs\":null,\"finish_reason\":\"stop\"}]",
                                chat ? "}" : "");
    if (rc == 0 && r->usage)
        rc = lx_mock_buf_append(b, ",", 1);
    if (rc == 0 && r->usage)
        rc = put_usage(b, r);
    if (rc == 0)
        rc = lx_mock_buf_append(b, "}", 1);
    return rc;
}

static int json_embeddings(lx_mock_buf_t *b, const lx_mock_reply_t *r)
{
    static const char *const vec[] = {"0.0123", "-0.0456", "0.0789", "-0.0012",
                                      "0.0345", "-0.0678", "0.0901", "-0.0234"};
    const size_t dim = sizeof(vec) / sizeof(vec[0]);
    uint32_t n = r->inputs ? r->inputs : 1;
    int rc = lx_mock_buf_printf(b, "{\"object\":\"list\",\"data\":[");
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        rc = lx_mock_buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%u,\"embedding\":[",
                                i ? "," : "", i);
        for (size_t d = 0; rc == 0 && d < dim; d++)
            rc = lx_mock_buf_printf(b, "%s%s", d ? "," : "", vec[(d + i) % dim]);
        if (rc == 0)
            rc = lx_mock_buf_append(b, "]}", 2);
    }
    if (rc == 0)
        rc = lx_mock_buf_printf(b, "],\"model\":\"%.*s\"", (int)r->model_len, r->model);
    if (rc == 0 && r->usage)
        rc = lx_mock_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%llu,\"total_tokens\":%llu}",
                                (unsigned long long)r->prompt_tokens,
                                (unsigned long long)r->prompt_tokens);
    if (rc == 0)
        rc = lx_mock_buf_append(b, "}", 1);
    return rc;
}

static int json_models(lx_mock_buf_t *b)
{
    static const char *const ids[] = {"mock-model", "mock-small", "mock-large"};
    int rc = lx_mock_buf_printf(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; rc == 0 && i < sizeof(ids) / sizeof(ids[0]); i++)
        rc = lx_mock_buf_printf(b,
                                "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":1700000000,"
                                "\"owned_by\":\"llmux-mock\"}",
                                i ? "," : "", ids[i]);
    if (rc == 0)
        rc = lx_mock_buf_append(b, "]}", 2);
    return rc;
}

int lx_mock_reply_json(lx_mock_buf_t *out, lx_mock_buf_t *scratch, const lx_mock_reply_t *r,
                       size_t *head_len)
{
    scratch->len = 0;
    int rc;
    switch (r->ep) {
    case LX_MOCK_EP_CHAT:
    case LX_MOCK_EP_COMPLETIONS:
        rc = json_completion(scratch, r);
        break;
    case LX_MOCK_EP_EMBEDDINGS:
        rc = json_embeddings(scratch, r);
        break;
    case LX_MOCK_EP_MODELS:
        rc = json_models(scratch);
        break;
    default:
        rc = lx_mock_buf_printf(scratch, "{\"status\":\"ok\"}");
        break;
    }
    if (rc < 0)
        return rc;
    size_t start = out->len;
    rc = put_head(out, 200, "application/json", r->frame, scratch->len, r->connhdr, "");
    if (rc < 0)
        return rc;
    *head_len = out->len - start;
    return put_body(out, scratch, r->frame);
}

int lx_mock_reply_error(lx_mock_buf_t *out, lx_mock_buf_t *scratch, int status, const char *msg,
                        lx_mock_connhdr_t connhdr)
{
    const char *type = "invalid_request_error";
    const char *code = "null";
    if (status == 401) {
        type = "authentication_error";
        code = "\"invalid_api_key\"";
    } else if (status == 403) {
        type = "permission_error";
    } else if (status == 429) {
        type = "requests";
        code = "\"rate_limit_exceeded\"";
    } else if (status >= 500) {
        type = "server_error";
    }
    scratch->len = 0;
    int rc = lx_mock_buf_printf(scratch, "{\"error\":{\"message\":\"");
    if (rc == 0)
        rc = put_escaped(scratch, msg);
    if (rc == 0)
        rc = lx_mock_buf_printf(scratch, "\",\"type\":\"%s\",\"param\":null,\"code\":%s}}", type,
                                code);
    if (rc < 0)
        return rc;
    const char *extra = status == 429 || status == 503 ? "Retry-After: 1\r\n" : "";
    rc = put_head(out, status, "application/json", LX_MOCK_FRAME_LENGTH, scratch->len, connhdr,
                  extra);
    if (rc == 0)
        rc = lx_mock_buf_append(out, scratch->p, scratch->len);
    return rc;
}

int lx_mock_reply_text(lx_mock_buf_t *out, const char *ctype, const char *body, size_t len,
                       lx_mock_connhdr_t connhdr)
{
    int rc = put_head(out, 200, ctype, LX_MOCK_FRAME_LENGTH, len, connhdr, "");
    if (rc == 0)
        rc = lx_mock_buf_append(out, body, len);
    return rc;
}

int lx_mock_reply_stream_head(lx_mock_buf_t *out, const lx_mock_reply_t *r, size_t content_length)
{
    return put_head(out, 200, "text/event-stream", r->frame, content_length, r->connhdr,
                    "Cache-Control: no-cache\r\n");
}

/* One unframed event ("data: ...\n\n") into b. */
static int format_event(lx_mock_buf_t *b, const lx_mock_reply_t *r, lx_mock_ev_t ev, uint32_t k)
{
    if (ev == LX_MOCK_EV_DONE)
        return lx_mock_buf_append(b, "data: [DONE]\n\n", 14);
    int chat = r->ep == LX_MOCK_EP_CHAT;
    unsigned long long ts = (unsigned long long)lx_mock_reply_now_ns();
    int rc = lx_mock_buf_printf(b,
                                "data: {\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%lld,"
                                "\"model\":\"%.*s\",",
                                chat ? "chatcmpl" : "cmpl", (unsigned long long)r->id,
                                chat ? "chat.completion.chunk" : "text_completion",
                                (long long)r->created, (int)r->model_len, r->model);
    if (rc == 0 && r->pad_ts)
        rc = lx_mock_buf_printf(b, "\"mock_ts\":%-20llu,", ts);
    else if (rc == 0)
        rc = lx_mock_buf_printf(b, "\"mock_ts\":%llu,", ts);
    if (rc < 0)
        return rc;
    if (ev == LX_MOCK_EV_USAGE) {
        rc = lx_mock_buf_printf(b, "\"choices\":[],");
        if (rc == 0)
            rc = put_usage(b, r);
    } else if (ev == LX_MOCK_EV_FINAL) {
        rc = lx_mock_buf_printf(b, "\"choices\":[{\"index\":0,%s,%s\"finish_reason\":\"stop\"}]",
                                chat ? "\"delta\":{}" : "\"text\":\"\"",
                                chat ? "" : "\"logprobs\":null,");
    } else {
        if (chat)
            rc = lx_mock_buf_printf(b, "\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"",
                                    k == 0 ? "\"role\":\"assistant\"," : "");
        else
            rc = lx_mock_buf_printf(b, "\"choices\":[{\"index\":0,\"text\":\"");
        if (rc == 0)
            rc = put_text(b, (uint64_t)k * r->chunk_size, r->chunk_size);
        if (rc == 0)
            rc = lx_mock_buf_printf(b, "\"%s,%s\"finish_reason\":null}]", chat ? "}" : "",
                                    chat ? "" : "\"logprobs\":null,");
    }
    if (rc == 0)
        rc = lx_mock_buf_append(b, "}\n\n", 3);
    return rc;
}

int lx_mock_reply_event(lx_mock_buf_t *out, lx_mock_buf_t *scratch, const lx_mock_reply_t *r,
                        lx_mock_ev_t ev, uint32_t k)
{
    if (r->frame != LX_MOCK_FRAME_CHUNKED)
        return format_event(out, r, ev, k);
    scratch->len = 0;
    int rc = format_event(scratch, r, ev, k);
    if (rc == 0)
        rc = lx_mock_buf_printf(out, "%zx\r\n", scratch->len);
    if (rc == 0)
        rc = lx_mock_buf_append(out, scratch->p, scratch->len);
    if (rc == 0)
        rc = lx_mock_buf_append(out, "\r\n", 2);
    return rc;
}

int lx_mock_reply_stream_end(lx_mock_buf_t *out, const lx_mock_reply_t *r)
{
    if (r->frame != LX_MOCK_FRAME_CHUNKED)
        return 0;
    return lx_mock_buf_append(out, "0\r\n\r\n", 5);
}

size_t lx_mock_reply_stream_size(lx_mock_buf_t *scratch, const lx_mock_reply_t *r)
{
    size_t total = 0;
    for (uint32_t k = 0; k < r->chunks; k++) {
        scratch->len = 0;
        if (format_event(scratch, r, LX_MOCK_EV_CONTENT, k) < 0)
            return 0;
        total += scratch->len;
    }
    lx_mock_ev_t tail[] = {LX_MOCK_EV_FINAL, LX_MOCK_EV_USAGE, LX_MOCK_EV_DONE};
    for (size_t i = 0; i < 3; i++) {
        if (tail[i] == LX_MOCK_EV_USAGE && !r->usage)
            continue;
        scratch->len = 0;
        if (format_event(scratch, r, tail[i], 0) < 0)
            return 0;
        total += scratch->len;
    }
    return total;
}
