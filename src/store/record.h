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
} lx_record_t;

/* Copies up to <cap> - 1 bytes of <src> (<len> bytes, need not be NUL-terminated) into <dst>,
 * cut back to a UTF-8 boundary, NUL-terminated. */
void lx_record_copy(char *dst, size_t cap, const char *src, size_t len);

#endif
