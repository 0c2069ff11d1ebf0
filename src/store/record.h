/*
 * record.h - a usage record: one row per generation (a request that reached the routing step),
 * written by the worker when the request ends, queued to the store thread without a lock
 * (store.h: lx_store_record), committed in the next batch, and served by GET
 * /api/v1/generation. Fixed-size so it is one allocation; longer strings are cut at a UTF-8
 * boundary.
 */
#ifndef LX_RECORD_H
#define LX_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LX_RECORD_ATTEMPTS 8 /* attempts kept per record (the first ones) */

typedef struct lx_record_attempt {
    char provider[64];
    char endpoint[128]; /* the endpoint's URL as configured */
    char model[128];    /* the public id this attempt asked for */
    int16_t status;     /* upstream HTTP status, 0 none */
    char outcome[16];   /* "ok", "error_5xx", "timeout", "rate_limited", "connect", ... */
    uint32_t ms;
} lx_record_attempt_t;

typedef struct lx_record {
    struct lx_record *next; /* private: the store's queue */
    char id[40];            /* "gen-..." (also X-Generation-Id) */
    char key_hash[65];      /* the key's SHA-256 hex; "" without a key (auth: none) */
    char key_name[64];      /* the key's name (stored or from the configuration) */
    char model_asked[128];  /* the request's "model" as sent */
    char model[128];        /* the public id that served it ("" when nothing did) */
    char provider[64];      /* the provider that served it */
    char endpoint[128];
    char api[12];        /* "chat", "completions", "embeddings" */
    char request_id[64]; /* the access log's request id */
    char session_id[128];
    char user[128];         /* the request's "user" */
    char finish_reason[32]; /* "" when none was seen */
    char upstream_id[96];   /* the provider's id of a streamed answer (its chunks' "id"), "" when
                             * none: OpenRouter's clients ask /generation for the id they saw */
    int64_t created_at_us;  /* when the request arrived */
    int64_t prompt_tokens;  /* -1: unknown */
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t reasoning_tokens;
    int64_t cost;     /* µ$ charged (the settlement) */
    int64_t reserved; /* µ$ that were reserved at admission, 0 without a limit */
    bool usage_known; /* the provider reported usage */
    bool streamed;
    bool cancelled;      /* the client left before the end */
    int16_t status;      /* the HTTP status the client got (200 for a stream cut after its start) */
    uint32_t latency_ms; /* arrival to the end */
    uint32_t ttft_ms;    /* arrival to the first byte of the answer (0: none) */
    uint32_t generation_ms; /* first byte to the end */
    uint8_t n_attempts;
    lx_record_attempt_t attempts[LX_RECORD_ATTEMPTS];
    uint16_t pool; /* private: 1 + the lane of the worker pool it returns to (store.h:
                    * lx_record_pool_t), 0 none (freed once committed) */
} lx_record_t;

/*
 * Generation numbers. A record's id is "gen-" and the 16 lowercase hex digits of its number
 * (LX_RECORD_ID_LEN characters), which is also its row's key in the store, so a lookup by id
 * is a primary-key lookup and rows are appended in time order. A number is
 *     (tick << LX_RECORD_LANE_BITS) | lane,   tick = unix milliseconds * 1024 + a count,
 * so it sorts by arrival time (the millisecond is seq >> 19); lane is the worker (0..255) or
 * LX_RECORD_LANE_STORE (ids the store numbers itself: records that came with an id of another
 * form). Each lane issues strictly increasing ticks, starting above the store's highest
 * number (lx_store_seq_floor), so numbers are unique in one store file even when the clock
 * steps back across a restart.
 */
#define LX_RECORD_LANE_BITS  9
#define LX_RECORD_LANE_STORE 256u
#define LX_RECORD_ID_LEN     20 /* "gen-" + 16 hex digits */

/* The first number of millisecond <ms> (every number of an earlier arrival is below it). */
static inline uint64_t lx_record_seq_of_ms(uint64_t ms)
{
    return ms << (10 + LX_RECORD_LANE_BITS);
}

/* The next number of <lane>: tick = max(now_ms * 1024, *last_tick + 1), kept in *last_tick. */
uint64_t lx_record_seq_next(uint64_t *last_tick, uint64_t now_ms, unsigned lane);
/* Writes "gen-<16 hex>" and a NUL into <out> (at least LX_RECORD_ID_LEN + 1 bytes). */
void lx_record_id_format(char *out, uint64_t seq);
/* The number of an id of the canonical form (exactly "gen-" + 16 lowercase hex digits, the
 * number below 2^63), else false. */
bool lx_record_id_parse(const char *id, size_t len, uint64_t *seq);

/* Copies up to <cap> - 1 bytes of <src> (<len> bytes, need not be NUL-terminated) into <dst>,
 * cut back to a UTF-8 boundary, NUL-terminated. */
void lx_record_copy(char *dst, size_t cap, const char *src, size_t len);

#endif
