/*
 * harness.c - the integration tests' scaffolding: llmux and its upstreams in-process, a
 * blocking HTTP client with deadlines, and readers for what the upstreams and the access log
 * saw.
 *
 * Owns: the harness's mocks, raw upstream and gateway (started and stopped together), the
 * temporary access log file, client sockets and their buffers. Everything here runs on the test
 * thread except the raw upstream, which has its own thread (it is the only upstream able to
 * misbehave below HTTP: reset before answering, close without answering).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "obs/log.h"

#define RAW_MAX_REQUEST (64u * 1024u * 1024u)

/* ---- misc ---- */

uint64_t lx_harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void lx_harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool lx_harness_wait_until(bool (*pred)(void *arg), void *arg, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        if (pred(arg))
            return true;
        if (lx_harness_now_ms() >= end)
            return false;
        lx_harness_sleep_ms(1);
    }
}

void lx_harness_setenv(const char *name, const char *value)
{
    setenv(name, value, 1);
}

static const char *find_mem(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || len < n)
        return NULL;
    return memmem(hay, len, needle, n);
}

bool lx_harness_split(const char *msg, size_t len, size_t *head_len, const char **body)
{
    const char *e = find_mem(msg, len, "\r\n\r\n");
    if (e == NULL)
        return false;
    *head_len = (size_t)(e - msg) + 4;
    *body = e + 4;
    return true;
}

bool lx_harness_head_header(const char *head, size_t len, const char *name, char *out, size_t cap)
{
    size_t hl;
    const char *body;
    if (lx_harness_split(head, len, &hl, &body))
        len = hl;
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', len); /* skip the start line */
    const char *end = head + len;
    while (p != NULL && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (cap > 0) {
                if (vl >= cap)
                    vl = cap - 1;
                memcpy(out, v, vl);
                out[vl] = '\0';
            }
            return true;
        }
        p = eol < end ? eol : NULL;
    }
    return false;
}

bool lx_harness_resp_header(const lx_harness_resp_t *r, const char *name, char *out, size_t cap)
{
    if (r->head == NULL)
        return false;
    return lx_harness_head_header(r->head, r->head_len, name, out, cap);
}

/* Points at the value after "<key>" and its colon, or NULL. */
static const char *json_value(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(json, pat);
    while (p != NULL) {
        const char *v = p + strlen(pat);
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
            v++;
        if (*v == ':') {
            v++;
            while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
                v++;
            return v;
        }
        p = strstr(p + 1, pat);
    }
    return NULL;
}

bool lx_harness_json_str(const char *json, const char *key, char *out, size_t cap)
{
    const char *v = json != NULL ? json_value(json, key) : NULL;
    if (v == NULL || *v != '"')
        return false;
    v++;
    size_t n = 0;
    while (*v != '\0' && *v != '"') {
        if (*v == '\\' && v[1] != '\0') {
            if (n + 2 < cap) {
                out[n++] = v[0];
                out[n++] = v[1];
            }
            v += 2;
            continue;
        }
        if (n + 1 < cap)
            out[n++] = *v;
        v++;
    }
    if (*v != '"')
        return false;
    if (cap > 0)
        out[n] = '\0';
    return true;
}

bool lx_harness_json_num(const char *json, const char *key, double *out)
{
    const char *v = json != NULL ? json_value(json, key) : NULL;
    if (v == NULL)
        return false;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || errno != 0)
        return false;
    *out = d;
    return true;
}

/* The status, a JSON body starting with {"error":{ and a Content-Type saying so; NULL or why
 * not. */
static const char *error_common(const lx_harness_resp_t *r, int status)
{
    char s[256];
    if (r->status != status)
        return "unexpected status";
    if (r->body == NULL || strncmp(r->body, "{\"error\":{", 10) != 0)
        return "body is not an error envelope";
    if (!lx_harness_resp_header(r, "content-type", s, sizeof(s)) ||
        strstr(s, "application/json") == NULL)
        return "Content-Type is not application/json";
    return NULL;
}

static bool error_verdict(const lx_harness_resp_t *r, int status, const char *shape,
                          const char *why)
{
    if (why == NULL)
        return true;
    fprintf(stderr, "harness: expected %s error envelope with status %d: %s\n  got %d: %s\n", shape,
            status, why, r->status, r->body != NULL ? r->body : "(no body)");
    return false;
}

/* The raw text of member <key> of the error object: a string (with its quotes) or a literal. */
static bool error_member(const char *body, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(body, pat);
    if (p == NULL)
        return false;
    p += strlen(pat);
    const char *e = p;
    if (*e == '"') {
        for (e++; *e != '\0' && *e != '"'; e++)
            if (*e == '\\' && e[1] != '\0')
                e++;
        if (*e == '"')
            e++;
    } else {
        while (*e != '\0' && *e != ',' && *e != '}')
            e++;
    }
    size_t n = (size_t)(e - p) < cap ? (size_t)(e - p) : cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

bool lx_harness_is_error(const lx_harness_resp_t *r, int status)
{
    const char *why = error_common(r, status);
    char s[1024];
    if (why != NULL)
        return error_verdict(r, status, "OpenAI's", why);
    if (!lx_harness_json_str(r->body, "message", s, sizeof(s)) || s[0] == '\0')
        why = "no error.message";
    else if (!lx_harness_json_str(r->body, "type", s, sizeof(s)) || s[0] == '\0')
        why = "no error.type";
    else if (!error_member(r->body, "param", s, sizeof(s)) ||
             (s[0] != '"' && strcmp(s, "null") != 0))
        why = "error.param is neither a string nor null";
    else if (!error_member(r->body, "code", s, sizeof(s)) ||
             (s[0] != '"' && strcmp(s, "null") != 0))
        why = "error.code is neither a string nor null";
    else if (strstr(r->body, "\"metadata\":{\"error_type\"") != NULL)
        why = "OpenRouter's metadata.error_type in OpenAI's envelope";
    return error_verdict(r, status, "OpenAI's", why);
}

bool lx_harness_is_or_error(const lx_harness_resp_t *r, int status)
{
    const char *why = error_common(r, status);
    char s[1024];
    double code;
    if (why != NULL)
        return error_verdict(r, status, "OpenRouter's", why);
    if (!lx_harness_json_num(r->body, "code", &code) || (int)code != status)
        why = "error.code differs from the status";
    else if (!lx_harness_json_str(r->body, "message", s, sizeof(s)) || s[0] == '\0')
        why = "no error.message";
    else if (strstr(r->body, "\"metadata\":{") == NULL ||
             !lx_harness_json_str(strstr(r->body, "\"metadata\":{"), "error_type", s, sizeof(s)) ||
             s[0] == '\0')
        why = "no error.metadata.error_type";
    else if (strstr(r->body, "\"type\":") != NULL || strstr(r->body, "\"param\":") != NULL)
        why = "OpenAI's type or param in OpenRouter's envelope";
    return error_verdict(r, status, "OpenRouter's", why);
}

bool lx_harness_is_error_for(const lx_harness_resp_t *r, int status, const char *path)
{
    return strncmp(path, "/api/", 5) == 0 ? lx_harness_is_or_error(r, status)
                                          : lx_harness_is_error(r, status);
}

/* ---- the client ---- */

static void set_timeouts(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int lx_harness_connect(lx_harness_conn_t *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    set_timeouts(c->fd, LX_HARNESS_IO_TIMEOUT_MS);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "harness: connect to port %u: %s\n", port, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

int lx_harness_send(lx_harness_conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int lx_harness_send_str(lx_harness_conn_t *c, const char *s)
{
    return lx_harness_send(c, s, strlen(s));
}

void lx_harness_close(lx_harness_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* Receives more bytes: >0 bytes read, 0 at EOF, -1 on error or timeout. */
static ssize_t fill(lx_harness_conn_t *c)
{
    if (c->eof || c->error != 0)
        return c->eof ? 0 : -1;
    if (c->cap - c->len < 16384) {
        size_t cap = c->cap ? c->cap * 2 : 65536;
        char *nb = realloc(c->buf, cap + 1);
        if (nb == NULL)
            return -1;
        c->buf = nb;
        c->cap = cap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            return n;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        c->error = errno;
        return -1;
    }
}

static void consume(lx_harness_conn_t *c, size_t n)
{
    if (c->buf == NULL || n == 0)
        return; /* nothing received yet: memmove(NULL, NULL, 0) is undefined */
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

/* Waits until n bytes are buffered; false on EOF, error or timeout. */
static bool need(lx_harness_conn_t *c, size_t n)
{
    while (c->len < n)
        if (fill(c) <= 0)
            return false;
    return true;
}

/* Offset just past the next CRLF from <from>, waiting for it; 0 when it never comes. */
static size_t need_line(lx_harness_conn_t *c, size_t from)
{
    for (;;) {
        if (c->len > from) {
            const char *e = find_mem(c->buf + from, c->len - from, "\r\n");
            if (e != NULL)
                return (size_t)(e - c->buf) + 2;
        }
        if (c->len - from > 1024 * 1024 || fill(c) <= 0)
            return 0;
    }
}

static int append(lx_harness_resp_t *r, size_t *cap, const char *p, size_t n)
{
    if (r->body_len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < r->body_len + n + 1)
            nc *= 2;
        char *nb = realloc(r->body, nc);
        if (nb == NULL)
            return -1;
        r->body = nb;
        *cap = nc;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static void read_chunked(lx_harness_conn_t *c, lx_harness_resp_t *r, size_t *cap)
{
    for (;;) {
        size_t eol = need_line(c, 0);
        if (eol == 0)
            return;
        char *end;
        unsigned long long size = strtoull(c->buf, &end, 16);
        if (end == c->buf)
            return;
        r->wire_len += eol;
        consume(c, eol);
        if (size == 0) {
            /* trailers up to the empty line */
            for (;;) {
                eol = need_line(c, 0);
                if (eol == 0)
                    return;
                r->wire_len += eol;
                consume(c, eol);
                if (eol == 2) {
                    r->complete = true;
                    return;
                }
            }
        }
        if (!need(c, (size_t)size + 2) || append(r, cap, c->buf, (size_t)size) != 0)
            return;
        if (c->buf[size] != '\r' || c->buf[size + 1] != '\n')
            return;
        r->wire_len += (size_t)size + 2;
        consume(c, (size_t)size + 2);
    }
}

int lx_harness_read(lx_harness_conn_t *c, lx_harness_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    size_t cap = 0;
    for (;;) {
        const char *e;
        while ((e = c->len ? find_mem(c->buf, c->len, "\r\n\r\n") : NULL) == NULL)
            if (fill(c) <= 0)
                return -1;
        size_t hl = (size_t)(e - c->buf) + 4;
        int major = 0, minor = 0, status = 0;
        if (sscanf(c->buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || major != 1) {
            fprintf(stderr, "harness: not an HTTP/1 response: %.80s\n", c->buf);
            return -1;
        }
        if (status >= 100 && status < 200 && status != 101) {
            if (status == 100)
                r->continued = true;
            consume(c, hl);
            continue;
        }
        r->status = status;
        r->minor = minor;
        r->head = malloc(hl + 1);
        if (r->head == NULL)
            return -1;
        memcpy(r->head, c->buf, hl);
        r->head[hl] = '\0';
        r->head_len = hl;
        r->wire_len = hl;
        consume(c, hl);
        break;
    }
    char v[64];
    if (append(r, &cap, "", 0) != 0)
        return -1;
    if (lx_harness_resp_header(r, "transfer-encoding", v, sizeof(v)) &&
        strcasecmp(v, "chunked") == 0) {
        r->chunked = true;
        read_chunked(c, r, &cap);
    } else if (lx_harness_resp_header(r, "content-length", v, sizeof(v))) {
        size_t n = (size_t)strtoull(v, NULL, 10);
        if (need(c, n) && append(r, &cap, c->buf, n) == 0) {
            r->wire_len += n;
            consume(c, n);
            r->complete = true;
        }
    } else if (r->status == 204 || r->status == 304) {
        r->complete = true;
    } else {
        while (fill(c) > 0) {
        }
        if (append(r, &cap, c->buf != NULL ? c->buf : "", c->len) == 0) {
            r->wire_len += c->len;
            consume(c, c->len);
        }
        r->complete = c->eof;
    }
    return 0;
}

void lx_harness_resp_free(lx_harness_resp_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static int poll_in(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int rc;
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    return rc;
}

bool lx_harness_wait_bytes(lx_harness_conn_t *c, size_t n, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    while (c->len < n) {
        uint64_t now = lx_harness_now_ms();
        if (now >= end || c->eof || c->error != 0)
            return false;
        if (poll_in(c->fd, (int)(end - now)) <= 0)
            return false;
        if (fill(c) <= 0)
            return false;
    }
    return true;
}

bool lx_harness_wait_closed(lx_harness_conn_t *c, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        consume(c, c->len);
        if (c->eof || c->error == ECONNRESET || c->error == EPIPE)
            return true;
        uint64_t now = lx_harness_now_ms();
        if (now >= end)
            return false;
        int rc = poll_in(c->fd, (int)(end - now));
        if (rc <= 0)
            return false;
        if (fill(c) < 0 && c->error != ECONNRESET)
            return false;
    }
}

bool lx_harness_still_open(lx_harness_conn_t *c, int ms)
{
    if (c->eof || c->error != 0 || c->len > 0)
        return false;
    return poll_in(c->fd, ms) == 0;
}

int lx_harness_request(uint16_t port, const char *raw, size_t len, lx_harness_resp_t *r)
{
    lx_harness_conn_t c;
    memset(r, 0, sizeof(*r));
    if (lx_harness_connect(&c, port) != 0)
        return -1;
    int rc = lx_harness_send(&c, raw, len);
    if (rc == 0)
        rc = lx_harness_read(&c, r);
    lx_harness_close(&c);
    return rc;
}

int lx_harness_post(uint16_t port, const char *path, const char *extra_headers, const char *body,
                    lx_harness_resp_t *r)
{
    size_t blen = strlen(body);
    size_t cap = strlen(path) + (extra_headers ? strlen(extra_headers) : 0) + blen + 256;
    char *req = malloc(cap);
    if (req == NULL)
        return -1;
    int n = snprintf(req, cap,
                     "POST %s HTTP/1.1\r\nHost: llmux.test\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     path, blen, extra_headers ? extra_headers : "", body);
    int rc = lx_harness_request(port, req, (size_t)n, r);
    free(req);
    return rc;
}

int lx_harness_get(uint16_t port, const char *path, lx_harness_resp_t *r)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: llmux.test\r\n\r\n", path);
    return lx_harness_request(port, req, (size_t)n, r);
}

/* ---- the raw upstream ---- */

struct lx_harness_raw {
    int lfd;
    int wake[2]; /* stop pipe */
    pthread_t thread;
    uint16_t port;
    lx_harness_raw_mode_t mode;
    char *reply;
    size_t reply_len;
    pthread_mutex_t lock; /* guards last */
    char *last;
    size_t last_len;
    _Atomic uint64_t requests;
};

/* Bytes of the complete request at the start of buf, or 0 when incomplete. */
static size_t raw_request_size(const char *buf, size_t len)
{
    size_t hl;
    const char *body;
    if (!lx_harness_split(buf, len, &hl, &body))
        return 0;
    char v[32];
    size_t cl = 0;
    if (lx_harness_head_header(buf, hl, "content-length", v, sizeof(v)))
        cl = (size_t)strtoull(v, NULL, 10);
    return len - hl >= cl ? hl + cl : 0;
}

static void raw_record(lx_harness_raw_t *r, const char *p, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy != NULL) {
        memcpy(copy, p, n);
        copy[n] = '\0';
    }
    pthread_mutex_lock(&r->lock);
    free(r->last);
    r->last = copy;
    r->last_len = copy != NULL ? n : 0;
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_add(&r->requests, 1);
}

/* Serves one connection; false when asked to stop. */
static bool raw_serve(lx_harness_raw_t *r, int fd)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    bool go_on = true;
    while (buf != NULL) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
        if (poll(p, 2, 1000) < 0 && errno != EINTR)
            break;
        if (p[1].revents) {
            go_on = false;
            break;
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        if (len == cap) {
            if (cap >= RAW_MAX_REQUEST)
                break;
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        size_t size;
        bool closed = false;
        while ((size = raw_request_size(buf, len)) > 0) {
            raw_record(r, buf, size);
            memmove(buf, buf + size, len - size);
            len -= size;
            if (r->mode == LX_HARNESS_RAW_RESET) {
                struct linger lg = {1, 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                closed = true;
                break;
            }
            if (r->mode == LX_HARNESS_RAW_CLOSE) {
                closed = true;
                break;
            }
            if (send(fd, r->reply, r->reply_len, MSG_NOSIGNAL) < 0) {
                closed = true;
                break;
            }
        }
        if (closed)
            break;
    }
    free(buf);
    close(fd);
    return go_on;
}

static void *raw_main(void *arg)
{
    lx_harness_raw_t *r = arg;
    for (;;) {
        struct pollfd p[2] = {{r->lfd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (!raw_serve(r, fd))
            break;
    }
    return NULL;
}

lx_harness_raw_t *lx_harness_raw_start(lx_harness_raw_mode_t mode, const char *reply)
{
    lx_harness_raw_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->lfd = -1;
    r->wake[0] = r->wake[1] = -1;
    r->mode = mode;
    pthread_mutex_init(&r->lock, NULL);
    r->reply = strdup(reply != NULL ? reply : "");
    r->reply_len = reply != NULL ? strlen(reply) : 0;
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (r->reply == NULL || pipe2(r->wake, O_CLOEXEC) != 0)
        goto fail;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(r->lfd, 64) != 0 || getsockname(r->lfd, (struct sockaddr *)&sa, &sl) != 0)
        goto fail;
    r->port = ntohs(sa.sin_port);
    if (pthread_create(&r->thread, NULL, raw_main, r) != 0)
        goto fail;
    return r;
fail:
    fprintf(stderr, "harness: cannot start the raw upstream: %s\n", strerror(errno));
    if (r->lfd >= 0)
        close(r->lfd);
    if (r->wake[0] >= 0) {
        close(r->wake[0]);
        close(r->wake[1]);
    }
    free(r->reply);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return NULL;
}

uint16_t lx_harness_raw_port(const lx_harness_raw_t *r)
{
    return r->port;
}

uint64_t lx_harness_raw_requests(lx_harness_raw_t *r)
{
    return atomic_load(&r->requests);
}

char *lx_harness_raw_last(lx_harness_raw_t *r, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->last != NULL) {
        copy = malloc(r->last_len + 1);
        if (copy != NULL) {
            memcpy(copy, r->last, r->last_len + 1);
            *len = r->last_len;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return copy;
}

void lx_harness_raw_stop(lx_harness_raw_t *r)
{
    if (r == NULL)
        return;
    ssize_t n;
    do {
        n = write(r->wake[1], "x", 1);
    } while (n < 0 && errno == EINTR);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    close(r->wake[0]);
    close(r->wake[1]);
    free(r->reply);
    free(r->last);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---- llmux with its upstreams ---- */

static uint16_t dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint16_t port = 1; /* nothing listens on port 1 of loopback in a test environment */
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd); /* bound, never listened: the port is free again and refuses connections */
    return port;
}

/* The template with every placeholder replaced; malloc'd. */
static char *expand(const lx_harness_t *h, const char *tpl)
{
    size_t cap = strlen(tpl) * 2 + 1024, n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    const char *p = tpl;
    while (*p != '\0') {
        char val[300];
        size_t skip = 0;
        val[0] = '\0';
        if (*p == '@') {
            const char *e = strchr(p + 1, '@');
            size_t kl = e != NULL ? (size_t)(e - p - 1) : 0;
            if (kl == 5 && strncmp(p + 1, "MOCK", 4) == 0 && p[5] >= '0' &&
                p[5] < '0' + LX_HARNESS_MAX_MOCKS) {
                size_t i = (size_t)(p[5] - '0');
                snprintf(val, sizeof(val), "%u", i < h->n_mocks ? lx_mock_port(h->mock[i]) : 0);
                skip = kl + 2;
            } else if (kl == 3 && strncmp(p + 1, "RAW", 3) == 0) {
                snprintf(val, sizeof(val), "%u", h->raw ? lx_harness_raw_port(h->raw) : 0);
                skip = kl + 2;
            } else if (kl == 4 && strncmp(p + 1, "DEAD", 4) == 0) {
                snprintf(val, sizeof(val), "%u", h->dead_port);
                skip = kl + 2;
            } else if (kl == 3 && strncmp(p + 1, "LOG", 3) == 0) {
                snprintf(val, sizeof(val), "%s", h->log_path);
                skip = kl + 2;
            } else if (kl == 5 && strncmp(p + 1, "STORE", 5) == 0) {
                snprintf(val, sizeof(val), "%s", h->store_path);
                skip = kl + 2;
            }
        }
        size_t vl = skip ? strlen(val) : 1;
        if (n + vl + 1 > cap) {
            cap = cap * 2 + vl;
            char *nb = realloc(out, cap);
            if (nb == NULL) {
                free(out);
                return NULL;
            }
            out = nb;
        }
        if (skip) {
            memcpy(out + n, val, vl);
            p += skip;
        } else {
            out[n] = *p++;
        }
        n += vl;
    }
    out[n] = '\0';
    return out;
}

int lx_harness_start(lx_harness_t *h, const lx_harness_opts_t *opts, const char *yaml_template)
{
    memset(h, 0, sizeof(*h));
    signal(SIGPIPE, SIG_IGN);
    alarm(LX_HARNESS_DEADLINE_S);
    if (opts->mocks > LX_HARNESS_MAX_MOCKS)
        return -1;
    for (size_t i = 0; i < opts->mocks; i++) {
        h->mock[i] = lx_mock_start("127.0.0.1", 0);
        if (h->mock[i] == NULL) {
            fprintf(stderr, "harness: cannot start mock %zu\n", i);
            goto fail;
        }
        h->n_mocks++;
    }
    if (opts->raw) {
        h->raw = lx_harness_raw_start(opts->raw_mode, opts->raw_reply);
        if (h->raw == NULL)
            goto fail;
    }
    h->dead_port = dead_port();
    snprintf(h->log_path, sizeof(h->log_path), "/tmp/llmux-integ-XXXXXX");
    int fd = mkstemp(h->log_path);
    if (fd < 0) {
        h->log_path[0] = '\0';
        goto fail;
    }
    close(fd);
    if (opts->store_path != NULL) {
        snprintf(h->store_path, sizeof(h->store_path), "%s", opts->store_path);
    } else {
        snprintf(h->store_dir, sizeof(h->store_dir), "/tmp/llmux-store-XXXXXX");
        if (mkdtemp(h->store_dir) == NULL) {
            h->store_dir[0] = '\0';
            goto fail;
        }
        snprintf(h->store_path, sizeof(h->store_path), "%s/llmux.db", h->store_dir);
    }
    /* every gateway has a store: a test that does not name one gets its own file */
    bool has_store =
        strncmp(yaml_template, "store:", 6) == 0 || strstr(yaml_template, "\nstore:") != NULL;
    char *tpl = malloc(strlen(yaml_template) + 64);
    if (tpl == NULL)
        goto fail;
    strcpy(tpl, yaml_template);
    if (!has_store)
        strcat(tpl, "\nstore:\n  path: @STORE@\n");
    char *yaml = expand(h, tpl);
    free(tpl);
    if (yaml == NULL)
        goto fail;
    lx_config_t *cfg = NULL;
    int rc = lx_config_parse("test.yaml", yaml, strlen(yaml), stderr, &cfg);
    if (rc != 0) {
        fprintf(stderr, "harness: config refused:\n%s\n", yaml);
        free(yaml);
        goto fail;
    }
    free(yaml);
    lx_log_set_level(cfg->log_level); /* as main.c does */
    rc = lx_gateway_start(cfg, &h->gw);
    lx_config_unref(cfg);
    if (rc != 0) {
        h->gw = NULL;
        fprintf(stderr, "harness: gateway start failed: %d\n", rc);
        goto fail;
    }
    h->port = lx_gateway_port(h->gw, 0);
    return 0;
fail:
    lx_harness_stop(h);
    return -1;
}

void lx_harness_stop(lx_harness_t *h)
{
    if (h->gw != NULL) {
        lx_gateway_drain(h->gw);
        lx_gateway_wait(h->gw);
        h->gw = NULL;
    }
    for (size_t i = 0; i < h->n_mocks; i++)
        lx_mock_stop(h->mock[i]);
    h->n_mocks = 0;
    lx_harness_raw_stop(h->raw);
    h->raw = NULL;
    if (h->log_path[0] != '\0')
        unlink(h->log_path);
    h->log_path[0] = '\0';
    if (h->store_dir[0] != '\0') {
        static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
        char f[320];
        for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
            snprintf(f, sizeof(f), "%s%s", h->store_path, suffix[i]);
            unlink(f);
        }
        rmdir(h->store_dir);
    }
    h->store_dir[0] = '\0';
    alarm(0);
}

/* ---- the access log ---- */

char *lx_harness_log_read(const lx_harness_t *h)
{
    FILE *f = fopen(h->log_path, "rb");
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        if (f != NULL)
            fclose(f);
        return NULL;
    }
    out[0] = '\0';
    if (f == NULL)
        return out;
    for (;;) {
        if (cap - n < 2048) {
            char *nb = realloc(out, cap * 2);
            if (nb == NULL)
                break;
            out = nb;
            cap *= 2;
        }
        size_t k = fread(out + n, 1, cap - n - 1, f);
        if (k == 0)
            break;
        n += k;
    }
    out[n] = '\0';
    fclose(f);
    return out;
}

/* The first complete line of <text> containing <needle>, malloc'd, or NULL. */
static char *find_line(const char *text, const char *needle)
{
    const char *p = text;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        if (eol == NULL)
            break; /* a partial line is not logged yet */
        size_t len = (size_t)(eol - p);
        if (find_mem(p, len, needle) != NULL)
            return strndup(p, len);
        p = eol + 1;
    }
    return NULL;
}

char *lx_harness_log_wait(const lx_harness_t *h, const char *needle, int ms)
{
    uint64_t end = lx_harness_now_ms() + (uint64_t)ms;
    for (;;) {
        char *all = lx_harness_log_read(h);
        char *line = all != NULL ? find_line(all, needle) : NULL;
        free(all);
        if (line != NULL || lx_harness_now_ms() >= end)
            return line;
        lx_harness_sleep_ms(2);
    }
}

size_t lx_harness_log_count(const lx_harness_t *h, const char *needle)
{
    char *all = lx_harness_log_read(h);
    size_t count = 0;
    const char *p = all;
    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        if (eol == NULL)
            break;
        if (find_mem(p, (size_t)(eol - p), needle) != NULL)
            count++;
        p = eol + 1;
    }
    free(all);
    return count;
}
