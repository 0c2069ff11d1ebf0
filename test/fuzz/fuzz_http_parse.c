/*
 * fuzz_http_parse.c - arbitrary bytes into the request parser, with no socket: the pure
 * lx_http_parser_t the server itself parses with.
 *
 * The first byte chooses how the rest is read: in reads of 1..127 bytes (0: one read), landing
 * one after another in a chunk as a stream's reads do, a new chunk every fourth read (at most
 * four chunks, so views must join across them). Each complete request is recorded (method,
 * version, keep-alive, target, path, headers, body, id) and the parser reset for the bytes that
 * follow, until the input ends or the parser refuses (its status is recorded). The findings:
 * crashes and sanitizer reports; a request that breaks an invariant (a header name that is not
 * a token, a path that is not the target's start, a Content-Length body of another length,
 * bytes used that were not given); and any difference between the record of this split and
 * that of the whole input in one read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Far over what an input's head can count (each header-name piece counts 4 bytes more, and a
 * split makes more pieces): a refusal for size would differ between splits. */
static const lx_http_server_limits_t limits = {
    .max_header_size = 1 << 20,
    .max_body_size = 1 << 20,
};

typedef struct record {
    char *p;
    size_t len, cap;
} record_t;

static void put(record_t *r, const void *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap > 0 ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *np = realloc(r->p, cap);
        if (np == NULL)
            abort();
        r->p = np;
        r->cap = cap;
    }
    if (n > 0)
        memcpy(r->p + r->len, s, n);
    r->len += n;
}

static void put_str(record_t *r, lx_str_t s)
{
    uint32_t n = (uint32_t)s.len;
    put(r, &n, sizeof(n));
    put(r, s.ptr, s.len);
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http_parse: %s\n", what);
        abort();
    }
}

/* A complete request: checked, then recorded. */
static void record_request(record_t *rec, const lx_http_parser_t *p)
{
    const lx_http_request_t *r = p->req;
    const lx_http_head_t *h = &r->head;
    check(r->path.ptr == h->target.ptr && r->path.len <= h->target.len, "path not the target's");
    check(h->n_headers <= LX_HTTP_MAX_HEADERS, "too many headers");
    for (unsigned i = 0; i < h->n_headers; i++)
        check(lx_http_token(h->headers[i].name.ptr, h->headers[i].name.len), "name not a token");
    if (!p->te_chunked)
        check(r->body.len == p->content_length, "body is not Content-Length long");
    int head[5] = {r->method, r->http_major, r->http_minor, r->keep_alive, (int)h->n_headers};
    put(rec, "R", 1);
    put(rec, head, sizeof(head));
    put_str(rec, h->target);
    put_str(rec, r->path);
    for (unsigned i = 0; i < h->n_headers; i++) {
        put_str(rec, h->headers[i].name);
        put_str(rec, h->headers[i].value);
    }
    put_str(rec, r->body);
    put_str(rec, (lx_str_t){r->id, r->id_len});
}

/* Parses data[0, size) in reads of <step> bytes (0: one read); returns the record. */
static record_t parse(const uint8_t *data, size_t size, size_t step)
{
    record_t rec = {0};
    lx_http_request_t req;
    lx_http_parser_t p;
    uint64_t id_state = 0x9e3779b97f4a7c15ull;
    memset(&req, 0, sizeof(req));
    lx_http_parser_init(&p, &req, &limits, &id_state, NULL, NULL);
    lx_buf_t *chunk = NULL;
    unsigned reads = 0, chunks = 0;
    size_t off = 0;
    while (off < size && p.state != LX_HTTP_PARSE_ERROR) {
        size_t n = step == 0 || step > size - off ? size - off : step;
        if (chunk == NULL || (reads % 4 == 0 && chunks < 4)) {
            lx_buf_unref(chunk); /* (the parser holds what it keeps) */
            chunk = lx_buf_new(size - off);
            check(chunk != NULL, "out of memory");
            chunks++;
        }
        reads++;
        char *at = chunk->data + chunk->len;
        memcpy(at, data + off, n);
        chunk->len += (uint32_t)n;
        off += n;
        while (n > 0) {
            size_t used = lx_http_parser_feed(&p, chunk, at, n);
            check(used <= n, "used more than given");
            if (p.state == LX_HTTP_PARSE_ERROR) {
                check(used == n, "a refusal left bytes");
                break;
            }
            if (p.state != LX_HTTP_PARSE_DONE) {
                check(used == n, "stopped before the end");
                break;
            }
            record_request(&rec, &p);
            lx_http_parser_reset(&p);
            at += used;
            n -= used;
        }
    }
    int end[2] = {(int)p.state, p.state == LX_HTTP_PARSE_ERROR ? p.error_status : 0};
    put(&rec, "E", 1);
    put(&rec, end, sizeof(end));
    lx_http_parser_reset(&p);
    lx_buf_unref(chunk);
    return rec;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    size_t step = data[0] & 0x7f;
    data++;
    size--;
    record_t split = parse(data, size, step);
    record_t whole = parse(data, size, 0);
    check(split.len == whole.len && memcmp(split.p, whole.p, split.len) == 0,
          "a split parses differently from the whole input");
    free(split.p);
    free(whole.p);
    return 0;
}
