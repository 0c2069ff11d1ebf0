/*
 * mock_internal.h - what the mock's files share: the server struct, growable buffers, the body
 * scanner, the response formatter and the connection entry points. Not for users of the mock;
 * they include mock.h.
 *
 * Files: mock.c (lifecycle, counters, records), mock_conn.c (one client connection: reads,
 * llhttp, controls, pacing, writes), mock_scan.c (streaming JSON field scan of request bodies),
 * mock_reply.c (OpenAI-shaped bodies, SSE events, HTTP heads), mock_buf.c (byte buffers),
 * mock_gpu.c (GPU mode: the simulated engine, the prompt's block hashes, /metrics).
 */
#ifndef LX_MOCK_INTERNAL_H
#define LX_MOCK_INTERNAL_H

#include "mock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

/* ---- mock_buf.c: a growable byte buffer, reused across requests ---- */

typedef struct {
    char *p;
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
} lx_mock_buf_t;

/* Makes room for extra more bytes; 0 or UV_ENOMEM (the buffer is unchanged then). */
int lx_mock_buf_reserve(lx_mock_buf_t *b, size_t extra);
/* Appends n bytes; 0 or UV_ENOMEM. */
int lx_mock_buf_append(lx_mock_buf_t *b, const void *data, size_t n);
/* Appends formatted text (no terminator counted); 0 or UV_ENOMEM. */
int lx_mock_buf_printf(lx_mock_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees the storage and zeroes the buffer. */
void lx_mock_buf_dispose(lx_mock_buf_t *b);

/* ---- mock_scan.c: per-request controls and the body scan ---- */

/* Every control: X(ENUM, body field name); the header is "x-mock-" + name with '_' -> '-'. */
#define LX_MOCK_CONTROLS(X)                                                                        \
    X(STATUS, status)                                                                              \
    X(DELAY_MS, delay_ms)                                                                          \
    X(FIRST_DELAY_MS, first_delay_ms)                                                              \
    X(CHUNKS, chunks)                                                                              \
    X(CHUNK_SIZE, chunk_size)                                                                      \
    X(INTERVAL_MS, interval_ms)                                                                    \
    X(INTERVAL_US, interval_us)                                                                    \
    X(RESET_AFTER, reset_after)                                                                    \
    X(HANG, hang)                                                                                  \
    X(CONTENT_LENGTH, content_length)                                                              \
    X(CLOSE_DELIMITED, close_delimited)                                                            \
    X(CLOSE, close)                                                                                \
    X(WRITE_SIZE, write_size)                                                                      \
    X(BODY_SIZE, body_size)                                                                        \
    X(USAGE, usage)                                                                                \
    X(INTERIM, interim)                                                                            \
    X(INTERIM_MS, interim_ms)                                                                      \
    X(DRIBBLE_LINES, dribble_lines)                                                                \
    X(DRIBBLE_MS, dribble_ms)

enum {
#define X(e, n) LX_MOCK_CTL_##e,
    LX_MOCK_CONTROLS(X)
#undef X
        LX_MOCK_CTL_COUNT
};

/* A set of control values; bit i of set says val[i] was given. */
typedef struct {
    int64_t val[LX_MOCK_CTL_COUNT];
    uint32_t set;
} lx_mock_ctl_t;

#define LX_MOCK_TOK_MAX 512 /* longest captured JSON string or literal (model ids) */
#define LX_MOCK_KEY_MAX 32  /* longest key the scan can match */

/* Streaming scan of a JSON request body, fed in pieces as they arrive: it never holds the
 * body, only the few top-level fields the mock answers from. Garbage is harmless. */
typedef struct {
    /* tokenizer */
    uint32_t depth;   /* current nesting depth (0 = outside the top-level value) */
    char kind[4];     /* container at depth 1..3: '{' or '[' */
    uint8_t want_key; /* in an object, the next string is a key */
    uint8_t in_str, esc, in_lit;
    uint8_t tok_key;  /* the token being read is an object key */
    uint8_t tok_on;   /* the token is being captured (depth <= 2) */
    uint8_t tok_over; /* the token did not fit in tok */
    uint16_t tok_len;
    char tok[LX_MOCK_TOK_MAX];
    char key1[LX_MOCK_KEY_MAX]; /* last key at depth 1; key1_len 0 = none or too long */
    char key2[LX_MOCK_KEY_MAX]; /* last key at depth 2 */
    uint8_t key1_len, key2_len;
    /* results */
    char model[LX_MOCK_TOK_MAX]; /* top-level "model" string, raw (escapes kept) */
    size_t model_len;            /* 0 = absent */
    int stream;                  /* top-level "stream": true */
    int include_usage;           /* "stream_options": {"include_usage": true} */
    uint32_t inputs;             /* embeddings: number of inputs in an "input" array */
    lx_mock_ctl_t ctl;           /* fields of the top-level "mock" object */
} lx_mock_scan_t;

/* Resets the scan for a new body. */
void lx_mock_scan_init(lx_mock_scan_t *s);
/* Feeds the next n bytes of the body. */
void lx_mock_scan_feed(lx_mock_scan_t *s, const char *p, size_t n);
/* Ends the body (completes a trailing literal). */
void lx_mock_scan_finish(lx_mock_scan_t *s);
/* The control named name (a body field "delay_ms" or a header "x-mock-delay-ms", any case,
 * '-' and '_' alike), or -1. */
int lx_mock_scan_control(const char *name, size_t len);
/* A control value: an integer prefix (a fraction is dropped, saturating), true = 1, false and
 * null = 0, anything else 0. */
int64_t lx_mock_scan_int(const char *p, size_t n);

/* ---- mock_reply.c: response bytes ---- */

typedef enum {
    LX_MOCK_EP_UNKNOWN,
    LX_MOCK_EP_CHAT,
    LX_MOCK_EP_COMPLETIONS,
    LX_MOCK_EP_EMBEDDINGS,
    LX_MOCK_EP_MODELS,
    LX_MOCK_EP_HEALTH,
} lx_mock_ep_t;

typedef enum {
    LX_MOCK_FRAME_LENGTH,  /* Content-Length */
    LX_MOCK_FRAME_CHUNKED, /* Transfer-Encoding: chunked */
    LX_MOCK_FRAME_CLOSE,   /* neither: the body ends when the connection closes */
} lx_mock_frame_t;

typedef enum {
    LX_MOCK_CONNHDR_NONE,
    LX_MOCK_CONNHDR_CLOSE,      /* "Connection: close" */
    LX_MOCK_CONNHDR_KEEP_ALIVE, /* "Connection: keep-alive" (HTTP/1.0 clients) */
} lx_mock_connhdr_t;

typedef enum {
    LX_MOCK_EV_CONTENT, /* content chunk number k */
    LX_MOCK_EV_FINAL,   /* empty delta, finish_reason "stop" */
    LX_MOCK_EV_USAGE,   /* empty choices, usage object */
    LX_MOCK_EV_DONE,    /* data: [DONE] */
} lx_mock_ev_t;

/* What one answer says. Strings are borrowed. */
typedef struct {
    lx_mock_ep_t ep;
    lx_mock_frame_t frame;
    lx_mock_connhdr_t connhdr;
    const char *model; /* raw JSON string content, never NULL */
    size_t model_len;
    uint64_t id;     /* sequence number for the "id" field */
    int64_t created; /* unix seconds */
    uint32_t chunks; /* content chunks (streaming) / pieces of content (non-streaming) */
    uint32_t chunk_size;
    int64_t body_size; /* non-streaming content size override; -1 = chunks * chunk_size */
    int usage;         /* include usage (non-streaming) / send the usage chunk (streaming) */
    uint64_t prompt_tokens, completion_tokens;
    uint32_t inputs; /* embeddings */
    int pad_ts;      /* write mock_ts with fixed width (streams with Content-Length) */
} lx_mock_reply_t;

/* Appends a complete non-streaming answer (head + body). *head_len gets the head's size. */
int lx_mock_reply_json(lx_mock_buf_t *out, lx_mock_buf_t *scratch, const lx_mock_reply_t *r,
                       size_t *head_len);
/* Appends a complete OpenAI-shaped error answer with this status (Retry-After on 429/503). */
int lx_mock_reply_error(lx_mock_buf_t *out, lx_mock_buf_t *scratch, int status, const char *msg,
                        lx_mock_connhdr_t connhdr);
/* Appends a complete 200 answer with this content type and body (Content-Length framing). */
int lx_mock_reply_text(lx_mock_buf_t *out, const char *ctype, const char *body, size_t len,
                       lx_mock_connhdr_t connhdr);
/* Appends the head of an SSE answer; content_length is used with LX_MOCK_FRAME_LENGTH. */
int lx_mock_reply_stream_head(lx_mock_buf_t *out, const lx_mock_reply_t *r, size_t content_length);
/* Appends one SSE event, framed (as its own HTTP chunk when chunked). */
int lx_mock_reply_event(lx_mock_buf_t *out, lx_mock_buf_t *scratch, const lx_mock_reply_t *r,
                        lx_mock_ev_t ev, uint32_t k);
/* Appends the end of a chunked body ("0\r\n\r\n"); nothing for other framings. */
int lx_mock_reply_stream_end(lx_mock_buf_t *out, const lx_mock_reply_t *r);
/* Size of the whole SSE body (every event, unframed) for r with pad_ts set; 0 on ENOMEM. */
size_t lx_mock_reply_stream_size(lx_mock_buf_t *scratch, const lx_mock_reply_t *r);
/* Monotonic clock in ns. */
uint64_t lx_mock_reply_now_ns(void);

/* ---- mock_gpu.c: the simulated GPU engine (GPU mode) ---- */

typedef struct lx_mock_conn lx_mock_conn_t;

typedef enum {
    LX_MOCK_GPU_NONE,    /* not in the engine */
    LX_MOCK_GPU_WAITING, /* in the server's FIFO queue */
    LX_MOCK_GPU_RUNNING, /* admitted: prefill, then decode */
} lx_mock_gpu_phase_t;

/* One request's view in the engine, embedded in its connection: the body scan (prompt block
 * hashes, max_tokens) and, once submitted, its place in the queue or its run. */
typedef struct lx_mock_gpu_seq lx_mock_gpu_seq_t;
struct lx_mock_gpu_seq {
    lx_mock_gpu_seq_t *prev, *next; /* the waiting FIFO */
    lx_mock_conn_t *conn;
    uint8_t on;    /* this request was read with GPU mode on */
    uint8_t phase; /* lx_mock_gpu_phase_t */
    /* body scan: key matchers (bytes of each key matched so far), the number after a
     * max_tokens key, the prompt's running hash */
    uint8_t match[4];
    uint8_t in_prompt; /* past the first "messages" / "prompt" key: bytes are hashed */
    uint8_t num_state; /* 0 none, 1 ':' expected, 2 a digit expected, 3 in the digits */
    int64_t num;
    int64_t max_tokens;    /* -1: none given */
    uint32_t block_bytes;  /* block size the scan hashes with */
    uint32_t fill;         /* bytes of the current block so far */
    uint64_t h;            /* running hash (chained through the blocks) */
    uint64_t prompt_bytes; /* bytes hashed */
    uint64_t *blocks;      /* hashes of the complete blocks; block i covers blocks 0..i */
    int32_t *slots;        /* while running: the cache slot each block pins, or -1 */
    uint32_t nblocks, cap;
    /* the run */
    uint32_t hit_blocks; /* leading blocks found in the cache at admission */
    uint32_t pinned;     /* slots pinned */
    uint32_t extra;      /* KV blocks in use beyond the pinned ones (counted in the gauge) */
    uint64_t prompt_tokens, cached_tokens;
    uint32_t out_tokens, produced;
    uint64_t due_us; /* loop time the next event (end of prefill, next token) is due */
};

/* A prefix-cache slot: a block hash, pinned by the running sequences that use it; unpinned
 * slots sit in the LRU list, oldest first. */
typedef struct {
    uint64_t hash;
    int32_t prev, next; /* LRU links (-1 = none), while ref == 0 */
    uint32_t ref;
} lx_mock_gpu_slot_t;

typedef struct {
    lx_mock_gpu_t cfg; /* applied settings (clamped) */
    int on;            /* requests read from now on go to the engine */
    uint32_t running, waiting;
    uint64_t extra; /* sum of the running sequences' extra blocks */
    lx_mock_gpu_seq_t *qhead, *qtail;
    /* prefix cache: nslots slots, a hash table of slot indices (open addressing) */
    lx_mock_gpu_slot_t *slots;
    int32_t *table;
    uint32_t nslots, tmask, fresh; /* slots [fresh, nslots) never used */
    uint32_t cached, pinned;       /* slots holding a hash; slots with ref > 0 */
    int32_t lru_head, lru_tail;
} lx_mock_gpu_engine_t;

/* ---- mock.c: the server ---- */

struct lx_mock {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_async;
    uv_async_t faults_async; /* applies f_down on the loop */
    uv_timer_t rebind_timer; /* retries a failed re-bind after down */
    uv_thread_t thread;
    uint16_t port;
    struct sockaddr_storage addr; /* the bound address (real port), for re-binding */
    /* loop thread only */
    lx_mock_conn_t *conns; /* open connections, doubly linked */
    lx_mock_buf_t scratch; /* formatting space, reused */
    uint64_t next_id;
    int stopping;
    int listening;        /* listener open (not closing) */
    int listener_closing; /* uv_close on the listener called, callback not yet run */
    uint32_t in_progress; /* requests received and not yet answered completely */
    uint64_t fail_seq;    /* fail PRNG steps since the seed was set */
    uint64_t fail_seed;   /* seed the sequence was started with */
    /* any thread */
    _Atomic uint64_t requests, connections, closes_by_peer, last_peer_close_ns;
    _Atomic uint64_t open_connections; /* accepted and not closed yet (not zeroed by reset) */
    _Atomic uint64_t answered_ok, answered_failed, answered_limited;
    /* GPU mode: the engine (loop thread), the settings waiting to be applied (under lock),
     * and the figures the loop publishes */
    lx_mock_gpu_engine_t gpu;
    lx_mock_gpu_t gpu_pending;
    int gpu_pending_on;
    _Atomic uint64_t gpu_gen_wanted, gpu_gen_applied;
    _Atomic uint64_t g_queries, g_hits, g_success, g_admitted;
    _Atomic uint32_t g_running, g_waiting, g_max_waiting, g_cached, g_used, g_cache_blocks;
    /* the faults (lx_mock_set_faults) */
    _Atomic uint32_t f_fail_permille, f_ttfb_delay_ms, f_max_concurrent;
    _Atomic uint64_t f_seed;
    _Atomic int f_down;   /* wanted */
    _Atomic int is_down;  /* applied */
    pthread_mutex_t lock; /* guards ring, ring_head, ring_count, gpu_pending */
    lx_mock_buf_t ring[LX_MOCK_RECORDS];
    size_t ring_head;  /* next slot to fill */
    size_t ring_count; /* slots filled, up to LX_MOCK_RECORDS */
};

/* Records a complete request: swaps *raw with the oldest slot's buffer (no copy; *raw comes back
 * empty, with that slot's old storage) and counts the request. */
void lx_mock_record(lx_mock_t *m, lx_mock_buf_t *raw);
/* Counts a peer close mid-response and stamps its time. */
void lx_mock_note_peer_close(lx_mock_t *m);
/* Counts a complete answer with this status in the answered_* counters. */
void lx_mock_note_answer(lx_mock_t *m, int status);
/* The endpoint-wide fault for a request just received (loop thread): 429 when max_concurrent
 * requests are already in progress, 500 when the fail PRNG says so, else 0. Steps the PRNG
 * when fail_permille is set. */
int lx_mock_fault_status(lx_mock_t *m);

/* mock_gpu.c (loop thread unless said): */
/* Applies the settings lx_mock_set_gpu left, when newer than the applied ones. */
void lx_mock_gpu_apply(lx_mock_t *m);
/* Frees the engine's memory (at stop). */
void lx_mock_gpu_free(lx_mock_t *m);
/* A request starts (GPU mode on): resets seq's scan with the engine's block size. */
void lx_mock_gpu_begin(lx_mock_t *m, lx_mock_gpu_seq_t *seq);
/* The next n bytes of its body: key matches, max_tokens, block hashes. Linear. */
void lx_mock_gpu_feed(lx_mock_gpu_seq_t *seq, const char *p, size_t n);
/* The body ended. */
void lx_mock_gpu_finish_body(lx_mock_gpu_seq_t *seq);
/* The output length for seq: max_tokens, else chunks (-1 = not given), else the default;
 * random_output draws it from [1, that]. */
uint32_t lx_mock_gpu_out_tokens(const lx_mock_t *m, const lx_mock_gpu_seq_t *seq, int64_t chunks);
/* A request with prompt_tokens and out_tokens set arrives: it runs at once (the engine calls
 * lx_mock_conn_gpu_run) or waits. 0, or 429 when the bounded queue is full. */
int lx_mock_gpu_submit(lx_mock_t *m, lx_mock_gpu_seq_t *seq);
/* Its prefill is over: its blocks enter the cache. */
void lx_mock_gpu_prefilled(lx_mock_t *m, lx_mock_gpu_seq_t *seq);
/* One more output token was produced (for the KV gauge). */
void lx_mock_gpu_token(lx_mock_t *m, lx_mock_gpu_seq_t *seq);
/* The interval to the next token with the batch running now, in us. */
uint64_t lx_mock_gpu_itl_us(const lx_mock_t *m);
/* seq leaves the engine: done (counted a success) or cancelled (its client left); the next
 * waiting requests are admitted. */
void lx_mock_gpu_end(lx_mock_t *m, lx_mock_gpu_seq_t *seq, int success);
/* Frees seq's storage (with its connection). */
void lx_mock_gpu_seq_dispose(lx_mock_gpu_seq_t *seq);
/* The Prometheus text of GET /metrics into b. */
int lx_mock_gpu_metrics(lx_mock_t *m, lx_mock_buf_t *b);
/* Loop time in us. */
uint64_t lx_mock_gpu_now_us(const lx_mock_t *m);

/* ---- mock_conn.c: one client connection ---- */

/* GPU mode: the engine admitted the connection's request; its prefill ends at seq->due_us. */
void lx_mock_conn_gpu_run(lx_mock_conn_t *c);

/* Accepts a pending connection from the listener; failures drop it. */
void lx_mock_conn_accept(lx_mock_t *m);
/* Closes every connection of m (at stop; reset = with RST, when going down); their memory goes
 * in the close callbacks. */
void lx_mock_conn_close_all(lx_mock_t *m, int reset);

#endif
