/*
 * harness.h - what the integration tests share: llmux and its upstreams started in-process on
 * loopback, a blocking HTTP client with deadlines, and readers for the access log and for the
 * requests the upstreams received.
 *
 * A test writes its whole configuration as a YAML template; lx_harness_start() starts the
 * upstreams it asks for, substitutes their ports into the template, parses it and starts the
 * gateway on 127.0.0.1:0. Placeholders:
 *   @MOCK0@ .. @MOCK3@  the port of mock server i (test/mock/)
 *   @RAW@               the port of the raw upstream (below)
 *   @DEAD@              a loopback port nothing listens on
 *   @LOG@               the path of a fresh temporary access log file
 *   @STORE@             the path of the store's database file: a fresh temporary file
 *                       (removed at stop), or opts.store_path; a template without a top-level
 *                       `store:` section gets one with this path appended
 * and a line "listen: 127.0.0.1:0" makes llmux listen on an ephemeral port (lx_harness_t.port).
 *
 * Every client socket has send and receive timeouts, every wait is bounded, and a started
 * harness arms an alarm (LX_HARNESS_DEADLINE_S) that kills a test stuck anyway.
 */
#ifndef LX_HARNESS_H
#define LX_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gateway.h"
#include "mock.h"

#define LX_HARNESS_MAX_MOCKS     4
#define LX_HARNESS_IO_TIMEOUT_MS 5000 /* per send/recv on client sockets */
#define LX_HARNESS_DEADLINE_S    30   /* a whole test, from start to stop */

/* ---- the raw upstream: a bare TCP server with scripted misbehaviour ---- */

typedef enum {
    LX_HARNESS_RAW_REPLY, /* answer every request with the configured bytes, keep the conn */
    LX_HARNESS_RAW_RESET, /* read the request, then reset the connection (RST), no answer */
    LX_HARNESS_RAW_CLOSE, /* read the request, then close the connection cleanly, no answer */
} lx_harness_raw_mode_t;

typedef struct lx_harness_raw lx_harness_raw_t;

/* Starts a raw upstream on 127.0.0.1:0 on its own thread: one connection at a time, each
 * request read in full (head + Content-Length body, up to 64 MiB) and recorded, then the mode's
 * action. <reply> (copied; may be NULL for the non-reply modes) is the exact bytes answered.
 * NULL on failure. */
lx_harness_raw_t *lx_harness_raw_start(lx_harness_raw_mode_t mode, const char *reply);
uint16_t lx_harness_raw_port(const lx_harness_raw_t *r);
/* Requests fully read so far. */
uint64_t lx_harness_raw_requests(lx_harness_raw_t *r);
/* A malloc'd copy of the last request's bytes (head and body), NUL-terminated (not counted in
 * *len); NULL when none. Caller frees. */
char *lx_harness_raw_last(lx_harness_raw_t *r, size_t *len);
/* Stops the thread, closes everything, frees. NULL is a no-op. */
void lx_harness_raw_stop(lx_harness_raw_t *r);

/* ---- llmux with its upstreams ---- */

typedef struct lx_harness {
    lx_mock_t *mock[LX_HARNESS_MAX_MOCKS];
    size_t n_mocks;
    lx_harness_raw_t *raw; /* NULL unless asked for */
    lx_gateway_t *gw;
    uint16_t port;      /* llmux's listen port */
    uint16_t dead_port; /* @DEAD@ */
    char log_path[64];  /* @LOG@, removed at stop */
    char store_dir[64]; /* the temporary directory of @STORE@, removed at stop ("" when the
                         * test gave its own path) */
    char store_path[256];
} lx_harness_t;

/* Options of lx_harness_start(): how many mocks, whether a raw upstream runs and how. */
typedef struct lx_harness_opts {
    size_t mocks; /* 0 .. LX_HARNESS_MAX_MOCKS */
    bool raw;
    lx_harness_raw_mode_t raw_mode;
    const char *raw_reply;
    const char *store_path; /* NULL: a fresh temporary store */
} lx_harness_opts_t;

/* Starts the upstreams, then llmux from <yaml_template> (placeholders above). Returns 0, or -1
 * with a message on stderr (everything started is stopped again). SIGPIPE is ignored. */
int lx_harness_start(lx_harness_t *h, const lx_harness_opts_t *opts, const char *yaml_template);

/* Drains and waits for llmux, stops the upstreams, removes the log. Safe on a zeroed or
 * partially started harness. */
void lx_harness_stop(lx_harness_t *h);

/* Sets environment variable <name> (for ${NAME} in configs). */
void lx_harness_setenv(const char *name, const char *value);

/* ---- a blocking HTTP/1.1 client ---- */

typedef struct lx_harness_conn {
    int fd;
    char *buf; /* received and not consumed yet */
    size_t len, cap;
    bool eof;  /* the peer closed (FIN) */
    int error; /* errno of a failed recv (ECONNRESET, EAGAIN on timeout), 0 if none */
} lx_harness_conn_t;

typedef struct lx_harness_resp {
    int status;     /* final status; 0 when no response could be read */
    int minor;      /* HTTP/1.<minor> of the status line */
    bool continued; /* a "HTTP/1.1 100 Continue" interim response came first */
    char *head;     /* the final response's head (status line and headers), NUL-terminated */
    size_t head_len;
    char *body; /* decoded (chunked framing removed), NUL-terminated */
    size_t body_len;
    bool chunked;    /* it came with Transfer-Encoding: chunked */
    bool complete;   /* the body ended as its framing says */
    size_t wire_len; /* bytes of the final response on the wire (head + framed body) */
} lx_harness_resp_t;

/* Connects to 127.0.0.1:<port> with I/O timeouts. 0 or -1. */
int lx_harness_connect(lx_harness_conn_t *c, uint16_t port);
/* Sends all bytes (MSG_NOSIGNAL). 0 or -1. */
int lx_harness_send(lx_harness_conn_t *c, const void *data, size_t len);
int lx_harness_send_str(lx_harness_conn_t *c, const char *s);
/* Reads one complete response (after any 1xx interim ones) into *r, which the caller frees
 * with lx_harness_resp_free. A response whose body is delimited by the close is read to EOF.
 * 0, or -1 when no complete head arrived (closed, reset, timeout). */
int lx_harness_read(lx_harness_conn_t *c, lx_harness_resp_t *r);
/* Waits up to <ms> for bytes (buffered or new) or the end; true when at least <n> bytes are
 * buffered. */
bool lx_harness_wait_bytes(lx_harness_conn_t *c, size_t n, int ms);
/* True when the peer closes (EOF or reset) within <ms>; buffered or arriving bytes are
 * discarded meanwhile. */
bool lx_harness_wait_closed(lx_harness_conn_t *c, int ms);
/* True when the connection is still open and silent for <ms>. */
bool lx_harness_still_open(lx_harness_conn_t *c, int ms);
void lx_harness_close(lx_harness_conn_t *c);

/* Connect, send <raw>, read one response, close. 0 or -1. */
int lx_harness_request(uint16_t port, const char *raw, size_t len, lx_harness_resp_t *r);
/* POST <path> with a JSON body and optional extra header lines (each ending in "\r\n"). */
int lx_harness_post(uint16_t port, const char *path, const char *extra_headers, const char *body,
                    lx_harness_resp_t *r);
int lx_harness_get(uint16_t port, const char *path, lx_harness_resp_t *r);
void lx_harness_resp_free(lx_harness_resp_t *r);

/* The value of header <name> (case-insensitive) in a response head, or in any raw HTTP head
 * (everything up to the blank line), copied into out (cap bytes, NUL-terminated). True when
 * found. */
bool lx_harness_resp_header(const lx_harness_resp_t *r, const char *name, char *out, size_t cap);
bool lx_harness_head_header(const char *head, size_t len, const char *name, char *out, size_t cap);
/* Splits a raw HTTP message at its blank line: *head_len includes the "\r\n\r\n"; *body points
 * after it. False when there is no blank line. */
bool lx_harness_split(const char *msg, size_t len, size_t *head_len, const char **body);

/* True when <r> is an error answer with <status> in OpenAI's envelope (what /v1 answers):
 * {"error":{"message":"...","type":"...","param":<string|null>,"code":<string|null>}} with a
 * non-empty message and type and no OpenRouter member; explains why not on stderr. */
bool lx_harness_is_error(const lx_harness_resp_t *r, int status);
/* The same for OpenRouter's envelope (what /api/v1 answers):
 * {"error":{"code":<status>,"message":"...","metadata":{"error_type":"...",...}}}. */
bool lx_harness_is_or_error(const lx_harness_resp_t *r, int status);
/* The envelope of the API <path> belongs to: OpenRouter's under /api/, else OpenAI's. */
bool lx_harness_is_error_for(const lx_harness_resp_t *r, int status, const char *path);
/* The string value of the first "<key>": "..." in <json>, raw (escapes kept), into out. */
bool lx_harness_json_str(const char *json, const char *key, char *out, size_t cap);
/* The number value of the first "<key>": <number> in <json>. */
bool lx_harness_json_num(const char *json, const char *key, double *out);

/* ---- the access log ---- */

/* The whole access log so far, malloc'd and NUL-terminated ("" when empty). */
char *lx_harness_log_read(const lx_harness_t *h);
/* Waits up to <ms> for a line containing <needle>; a malloc'd copy of the first such line
 * (without its newline), or NULL. */
char *lx_harness_log_wait(const lx_harness_t *h, const char *needle, int ms);
/* Number of lines containing <needle> right now. */
size_t lx_harness_log_count(const lx_harness_t *h, const char *needle);

/* ---- misc ---- */

/* Monotonic milliseconds. */
uint64_t lx_harness_now_ms(void);
void lx_harness_sleep_ms(int ms);
/* Polls <pred>(<arg>) every millisecond for up to <ms>; true when it became true. */
bool lx_harness_wait_until(bool (*pred)(void *arg), void *arg, int ms);

#endif
