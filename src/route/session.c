/*
 * session.c - the session table: open addressing over eight neighbours per hash, least
 * recently used eviction among them, and rendezvous placement of a new session.
 */
#include "route/session.h"

#include <stdlib.h>

uint64_t lx_session_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h != 0 ? h : 1;
}

/* A session's slot: open addressing over 8 neighbours; a miss returns the slot to reuse (free,
 * expired, or the least recently used of the eight). */
static lx_session_t *slot(lx_session_t *slots, uint64_t hash, uint64_t now, uint64_t ttl,
                          bool *found)
{
    lx_session_t *victim = NULL;
    bool victim_live = true;
    *found = false;
    for (unsigned i = 0; i < 8; i++) {
        lx_session_t *s = &slots[(hash + i) & (LX_SESSIONS - 1)];
        bool live = s->hash != 0 && now - s->last_ms <= ttl;
        if (s->hash == hash) {
            *found = live;
            return s;
        }
        if (victim == NULL || (victim_live && (!live || s->last_ms < victim->last_ms))) {
            victim = s;
            victim_live = live;
        }
    }
    return victim;
}

const lx_session_t *lx_session_find(const lx_sessions_t *t, uint64_t hash, uint64_t now_ms,
                                    uint64_t ttl_ms)
{
    if (t->slot == NULL)
        return NULL;
    bool found;
    const lx_session_t *s = slot(t->slot, hash, now_ms, ttl_ms, &found);
    return found ? s : NULL;
}

bool lx_session_remember(lx_sessions_t *t, uint64_t hash, uint64_t now_ms, uint64_t ttl_ms,
                         const lx_session_t *s)
{
    if (t->slot == NULL) {
        t->slot = calloc(LX_SESSIONS, sizeof(*t->slot));
        if (t->slot == NULL)
            return false;
    }
    bool found;
    lx_session_t *to = slot(t->slot, hash, now_ms, ttl_ms, &found);
    *to = (lx_session_t){hash, s->serial, now_ms, s->model, s->route, s->ep};
    return true;
}

int lx_session_place(uint64_t hash, const bool *avail, size_t n)
{
    int best = -1;
    uint64_t best_w = 0;
    for (size_t j = 0; j < n; j++) {
        uint64_t w = lx_session_mix(hash ^ (j + 1) * 0x9e3779b97f4a7c15ull);
        if (avail[j] && (best < 0 || w > best_w)) {
            best = (int)j;
            best_w = w;
        }
    }
    return best;
}

void lx_sessions_free(lx_sessions_t *t)
{
    free(t->slot);
    t->slot = NULL;
}
