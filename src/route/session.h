/*
 * session.h - session stickiness: where a session (its `session_id` or X-Session-Id, hashed)
 * was last served, per worker, and where a session new to a worker goes.
 *
 * Pure: a table of slots the caller owns (one per worker: no lock), times passed in. The
 * indexes stored are configuration indexes (model, route, endpoint) tagged with the serial of
 * the configuration generation they belong to, so a reload never sends a session to another
 * configuration's indexes.
 */
#ifndef LX_SESSION_H
#define LX_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LX_SESSIONS 4096 /* slots per table (a power of two) */

typedef struct lx_session {
    uint64_t hash;    /* of the session id; 0: free slot */
    uint64_t serial;  /* the generation the indexes below belong to */
    uint64_t last_ms; /* last use */
    uint16_t model, route, ep;
} lx_session_t;

/* One worker's table: LX_SESSIONS slots, allocated at the first session remembered. */
typedef struct lx_sessions {
    lx_session_t *slot;
} lx_sessions_t;

/* The hash of a session id (FNV-1a, never 0). */
uint64_t lx_session_hash(const char *s, size_t len);

/* splitmix64's finalizer: the mixing every worker applies alike (session draws, placement). */
static inline uint64_t lx_session_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The live entry of session <hash> (last used within <ttl_ms> of <now_ms>), or NULL. */
const lx_session_t *lx_session_find(const lx_sessions_t *t, uint64_t hash, uint64_t now_ms,
                                    uint64_t ttl_ms);

/* Remembers that session <hash> was served by <s>'s (serial, model, route, ep) at <now_ms>:
 * its own slot, else a free or expired one of its eight neighbours, else the least recently
 * used of them. False when the table could not be allocated (stickiness is an optimisation:
 * without memory, none). */
bool lx_session_remember(lx_sessions_t *t, uint64_t hash, uint64_t now_ms, uint64_t ttl_ms,
                         const lx_session_t *s);

/* A session's first placement among <n> replicas: the one with the highest random weight
 * seeded by the session (so every worker picks the same) among those <avail> admits; -1 when
 * none is. */
int lx_session_place(uint64_t hash, const bool *avail, size_t n);

void lx_sessions_free(lx_sessions_t *t);

#endif
