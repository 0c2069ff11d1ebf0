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
#include <string.h>

#define LX_RECORD_ATTEMPTS 8 /* attempts kept per record (the first ones) */

/* A record's strings, each at most lx_record_cap(field) bytes (a longer one is cut at a UTF-8
 * boundary). The attempts' strings follow the record's: LX_RF_ATTEMPT(i, LX_RA_...). */
typedef enum lx_rfield {
    LX_RF_ID,            /* "gen-..." (also X-Generation-Id) */
    LX_RF_KEY_HASH,      /* the key's SHA-256 hex; "" without a key (auth: none) */
    LX_RF_KEY_NAME,      /* the key's name (stored or from the configuration) */
    LX_RF_MODEL_ASKED,   /* the request's "model" as sent */
    LX_RF_MODEL,         /* the public id that served it ("" when nothing did) */
    LX_RF_PROVIDER,      /* the provider that served it */
    LX_RF_ENDPOINT,      /* its endpoint's URL as configured */
    LX_RF_API,           /* "chat", "completions", "embeddings" */
    LX_RF_REQUEST_ID,    /* the access log's request id */
    LX_RF_SESSION_ID,    /* the request's session id */
    LX_RF_USER,          /* the request's "user" */
    LX_RF_FINISH_REASON, /* "" when none was seen */
    LX_RF_UPSTREAM_ID,   /* the provider's id of the answer (a stream's chunks' "id"), "" when
                          * none: OpenRouter's clients ask /generation for the id they saw */
    LX_RF_COUNT
} lx_rfield_t;

typedef enum lx_rafield {
    LX_RA_PROVIDER, /* the attempt's provider */
    LX_RA_ENDPOINT, /* its endpoint's URL as configured */
    LX_RA_MODEL,    /* the public id this attempt asked for */
    LX_RA_OUTCOME,  /* "ok", "error_5xx", "timeout", "rate_limited", "connect", ... */
    LX_RA_COUNT
} lx_rafield_t;

#define LX_RF_ATTEMPT(i, f) ((unsigned)LX_RF_COUNT + (unsigned)(i)*LX_RA_COUNT + (unsigned)(f))
#define LX_RF_SLOTS         LX_RF_ATTEMPT(LX_RECORD_ATTEMPTS, 0)

/* Room for every string at its cap, each with its NUL, and the empty string at 0. */
#define LX_RECORD_ARENA 3776

typedef struct lx_record_str {
    uint16_t off; /* into arena (0: the empty string) */
    uint16_t len;
} lx_record_str_t;

/*
 * Compact: the numbers and the strings' places first, then the strings back to back in the
 * order they were set. A request writes, and the store thread reads, the few hundred bytes it
 * uses instead of a field's maximum each (fixed arrays put every string on a cache line of
 * its own: the store thread met each of them cold). Fixed-size so it is one allocation;
 * moving it (a struct copy) keeps it whole, since the places are offsets. Write strings with
 * lx_record_set, read them with lx_record_str / lx_record_len.
 */
typedef struct lx_record {
    struct lx_record *next; /* private: the store's queue */
    int64_t created_at_us;  /* when the request arrived */
    int64_t prompt_tokens;  /* -1: unknown */
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t reasoning_tokens;
    int64_t cost;           /* µ$ charged (the settlement) */
    int64_t reserved;       /* µ$ that were reserved at admission, 0 without a limit */
    uint32_t latency_ms;    /* arrival to the end */
    uint32_t ttft_ms;       /* arrival to the first byte of the answer (0: none) */
    uint32_t generation_ms; /* first byte to the end */
    int16_t status;   /* the HTTP status the client got (200 for a stream cut after its start) */
    bool usage_known; /* the provider reported usage */
    bool streamed;
    bool cancelled; /* the client left before the end */
    uint8_t n_attempts;
    uint16_t pool; /* private: 1 + the lane of the worker pool it returns to (store.h:
                    * lx_record_pool_t), 0 none (freed once committed) */
    uint16_t used; /* private: arena bytes in use */
    uint32_t att_ms[LX_RECORD_ATTEMPTS];    /* each attempt's duration */
    int16_t att_status[LX_RECORD_ATTEMPTS]; /* its upstream HTTP status, 0 none */
    lx_record_str_t str[LX_RF_SLOTS];       /* private: lx_record_set */
    char arena[LX_RECORD_ARENA];            /* private: the strings, NUL-terminated */
} lx_record_t;

/* The bytes a field keeps at most. */
size_t lx_record_cap(unsigned field);

extern const uint8_t lx_record_caps[LX_RF_SLOTS];

/* lx_record_set's general case (a value to cut, the arena short of room, or no such field). */
void lx_record_set_cut(lx_record_t *r, unsigned field, const char *src, size_t len);

/* Sets string <field> (an lx_rfield_t or LX_RF_ATTEMPT) to <len> bytes of <src> (need not be
 * NUL-terminated), cut to the field's cap at a UTF-8 boundary. Inline: the request path sets a
 * dozen short strings per request. */
static inline void lx_record_set(lx_record_t *r, unsigned field, const char *src, size_t len)
{
    if (field < LX_RF_SLOTS && len - 1 < lx_record_caps[field] &&
        len < (size_t)LX_RECORD_ARENA - r->used) { /* (len - 1: 0 takes the general case) */
        char *dst = r->arena + r->used;
        memcpy(dst, src, len);
        dst[len] = '\0';
        r->str[field].off = r->used;
        r->str[field].len = (uint16_t)len;
        r->used = (uint16_t)(r->used + len + 1);
    } else {
        lx_record_set_cut(r, field, src, len);
    }
}

/* Sets string <field> to the value of field <from>, sharing its bytes (an attempt's provider,
 * endpoint and model are most often the record's or the attempt's before): no copy. */
void lx_record_share(lx_record_t *r, unsigned field, unsigned from);

/* A string field: NUL-terminated, never NULL ("" when unset). */
static inline const char *lx_record_str(const lx_record_t *r, unsigned field)
{
    return r->arena + r->str[field].off;
}

static inline size_t lx_record_len(const lx_record_t *r, unsigned field)
{
    return r->str[field].len;
}

/* lx_record_set with a NUL-terminated <s>. */
static inline void lx_record_set_cstr(lx_record_t *r, unsigned field, const char *s)
{
    lx_record_set(r, field, s, strlen(s));
}

/* Makes <r> a record with no string, number or attempt set (the arena is not cleared). */
void lx_record_clear(lx_record_t *r);

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

/* The canonical form of <len> bytes of <src>: each byte that does not begin a well-formed UTF-8
 * sequence replaced by U+FFFD (the rule of the record's JSON writer), cut to <cap> - 1 bytes at
 * a character boundary, NUL-terminated, into <dst> (<cap> >= 1). Returns its length. Linear. */
size_t lx_record_canon(char *dst, size_t cap, const char *src, size_t len);

/* Brings every string of <r> to its canonical form (lx_record_canon, then cut to its field's
 * cap and the arena's room), so that every view of the record — the store's pending list, the
 * JSON in the table, the provider id's hash, /activity's model — holds the same bytes. The
 * store thread runs it on each record it takes from the queue; valid strings are untouched. */
void lx_record_canonicalize(lx_record_t *r);

/* Copies up to <cap> - 1 bytes of <src> (<len> bytes, need not be NUL-terminated) into <dst>,
 * cut back to a UTF-8 boundary, NUL-terminated. */
void lx_record_copy(char *dst, size_t cap, const char *src, size_t len);

#endif
