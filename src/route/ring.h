/*
 * ring.h - consistent hashing with bounded loads over the replicas of one model (Mirrokni,
 * Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads", arXiv 1608.01350).
 *
 * Each replica (at most LX_RING_MAX_REPLICAS, identified by a stable 64-bit id such as
 * lx_ring_id() of its endpoint URL) is placed at <vnodes> pseudo-random points of a 64-bit
 * ring; a key is placed by its own hash and served by the first replica clockwise. Because a
 * point depends only on its replica's id, a replica that joins takes keys only from the others
 * and one that leaves gives away only its own: about 1/n of the keys move.
 *
 * Bounded loads: with loads L_r (requests in flight) over the n_active replicas that may be
 * chosen, T = sum of their L_r, and eps >= 0, the capacity is
 *
 *     cap = ceil((1 + eps) * (T + 1) / n_active)
 *
 * (T + 1 counts the request being placed), and lx_ring_pick() walks clockwise from the key's
 * point to the first active replica r with L_r + 1 <= cap. Since cap >= (T + 1) / n_active, the
 * active loads cannot all be at cap (they would sum to at least T + 1): the walk always ends,
 * no replica ever goes above cap, so none is above (1 + eps) times the mean plus one. eps is
 * given in thousandths (250: the reference's default 1.25 x mean, KubeAI's 125%, HAProxy's
 * hash-balance-factor 125); integer arithmetic, so the same inputs give the same answer on any
 * host.
 *
 * The ring is built once per configuration generation into the caller's array (sorted points,
 * no allocation: lx_ring_build()); lookups are a binary search plus a short walk, pure and
 * lock-free, so every worker can read one ring.
 */
#ifndef LX_RING_H
#define LX_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LX_RING_MAX_REPLICAS 64
#define LX_RING_MAX_VNODES   1024
/* Points per replica by default: the spread of the replicas' shares is about 1/sqrt(vnodes),
 * +-6% at 256 (KubeAI's figure; the reference asks >= 100). test_ring.c prints the measured
 * shares; src/route/README.md has them. 64 replicas take 16,384 points, 128 KiB. */
#define LX_RING_VNODES 256

typedef struct lx_ring {
    /* Sorted; a point is its ring position with the low 6 bits replaced by the replica's
     * index (positions are kept to 58 bits), so one 64-bit word carries both. */
    const uint64_t *points;
    uint32_t n_points;
    uint32_t n_replicas;
} lx_ring_t;

/* A replica's stable id: a 64-bit hash of <n> bytes at <s> (its endpoint URL). */
uint64_t lx_ring_id(const char *s, size_t n);

/* The points needed for <n> replicas of <vnodes> points each. */
static inline size_t lx_ring_points_for(size_t n, unsigned vnodes)
{
    return n * vnodes;
}

/*
 * Builds the ring of <n> replicas (1..LX_RING_MAX_REPLICAS) whose ids are <ids> (replica i is
 * index i in every later call), <vnodes> points each (1..LX_RING_MAX_VNODES), into <points>
 * (<cap> entries, at least lx_ring_points_for(n, vnodes)), which must outlive *<r>. Same ids,
 * same ring, whatever the order the replicas are listed in (up to their indexes); ids should
 * be distinct (two equal ones share their points, the lower index first). Returns 0,
 * or LX_EINVAL for counts out of range or <cap> too small. Sorts: for the control thread.
 */
int lx_ring_build(lx_ring_t *r, const uint64_t *ids, size_t n, unsigned vnodes, uint64_t *points,
                  size_t cap);

/* The first replica clockwise from <key> whose bit is set in <avail> (bit i: replica i may be
 * chosen), loads ignored; -1 when none is. */
int lx_ring_home(const lx_ring_t *r, uint64_t key, uint64_t avail);

/* The distinct replicas clockwise from <key> whose bit is set in <avail>, in walk order, into
 * <out> (at most <max>): out[0] is lx_ring_home(), out[1] the replica the walk reaches next
 * (where the key spills when its home is passed over), and so on. Returns how many. */
size_t lx_ring_order(const lx_ring_t *r, uint64_t key, uint64_t avail, uint8_t *out, size_t max);

/* The capacity above for <loads> (one per replica) over the replicas in <avail>; 0 when
 * <avail> holds none. */
uint64_t lx_ring_cap(const lx_ring_t *r, const uint32_t *loads, uint64_t avail, uint32_t eps_milli);

/*
 * The replica for <key>: the first one clockwise from the key's point whose bit is set in
 * <avail> and whose load (<loads>[i], one per replica) is below the capacity above. -1 only
 * when <avail> holds no replica of the ring. When <spilled> is not NULL, it tells whether the
 * answer differs from lx_ring_home() (the home was at capacity).
 */
int lx_ring_pick(const lx_ring_t *r, uint64_t key, const uint32_t *loads, uint64_t avail,
                 uint32_t eps_milli, bool *spilled);

#endif
