/*
 * ring.c - consistent hashing with bounded loads (ring.h has the rule and the capacity).
 *
 * Positions: a replica's point j is mix(id + (j + 1) * golden), a key's position is
 * mix(key ^ salt): the key is usually a hash already (llm/prefix.h's), mixing it again costs
 * two multiplies and keeps any other caller's key (a session hash) from lining up with the
 * points. A point keeps its position's top 58 bits and its replica's index in the low 6, so
 * the sorted array is one word per point and a lookup touches log2(points) words.
 */
#include "route/ring.h"

#include <stdlib.h>

#include "core/status.h"
#include "llm/prefix.h"

#define GOLDEN   0x9e3779b97f4a7c15ull
#define KEY_SALT 0x5851f42d4c957f2dull
#define IDX_BITS 6
#define IDX_MASK ((uint64_t)(1u << IDX_BITS) - 1)

/* A bijective mixer: every input bit over the whole word. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint64_t lx_ring_id(const char *s, size_t n)
{
    return lx_prefix_hash(s, n, KEY_SALT);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int lx_ring_build(lx_ring_t *r, const uint64_t *ids, size_t n, unsigned vnodes, uint64_t *points,
                  size_t cap)
{
    if (n == 0 || n > LX_RING_MAX_REPLICAS || vnodes == 0 || vnodes > LX_RING_MAX_VNODES ||
        cap < lx_ring_points_for(n, vnodes))
        return LX_EINVAL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (unsigned j = 0; j < vnodes; j++)
            points[k++] = (mix(ids[i] + (uint64_t)(j + 1) * GOLDEN) & ~IDX_MASK) | i;
    qsort(points, k, sizeof(points[0]), cmp_u64);
    r->points = points;
    r->n_points = (uint32_t)k;
    r->n_replicas = (uint32_t)n;
    return 0;
}

/* The first point at or after <key>'s position (wrapping to 0). */
static uint32_t first_point(const lx_ring_t *r, uint64_t key)
{
    uint64_t pos = mix(key ^ KEY_SALT) >> IDX_BITS;
    uint32_t lo = 0, hi = r->n_points;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->points[mid] >> IDX_BITS < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->n_points ? 0 : lo;
}

static uint64_t replicas_mask(const lx_ring_t *r)
{
    return r->n_replicas >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << r->n_replicas) - 1;
}

int lx_ring_home(const lx_ring_t *r, uint64_t key, uint64_t avail)
{
    avail &= replicas_mask(r);
    if (avail == 0 || r->n_points == 0)
        return -1;
    uint32_t i = first_point(r, key);
    for (uint32_t s = 0; s < r->n_points; s++) {
        unsigned idx = (unsigned)(r->points[i] & IDX_MASK);
        if (avail >> idx & 1u)
            return (int)idx;
        i = i + 1 == r->n_points ? 0 : i + 1;
    }
    return -1;
}

size_t lx_ring_order(const lx_ring_t *r, uint64_t key, uint64_t avail, uint8_t *out, size_t max)
{
    avail &= replicas_mask(r);
    if (avail == 0 || r->n_points == 0 || max == 0)
        return 0;
    uint64_t seen = 0;
    size_t k = 0;
    uint32_t i = first_point(r, key);
    for (uint32_t s = 0; s < r->n_points && k < max && seen != avail; s++) {
        unsigned idx = (unsigned)(r->points[i] & IDX_MASK);
        uint64_t bit = (uint64_t)1 << idx;
        if ((avail & bit) && !(seen & bit)) {
            seen |= bit;
            out[k++] = (uint8_t)idx;
        }
        i = i + 1 == r->n_points ? 0 : i + 1;
    }
    return k;
}

uint64_t lx_ring_cap(const lx_ring_t *r, const uint32_t *loads, uint64_t avail, uint32_t eps_milli)
{
    avail &= replicas_mask(r);
    uint64_t n = 0, total = 0;
    for (unsigned i = 0; i < r->n_replicas; i++) {
        if (avail >> i & 1u) {
            n++;
            total += loads[i];
        }
    }
    if (n == 0)
        return 0;
    uint64_t e = eps_milli > 1000000u ? 1000000u : eps_milli;
    uint64_t num = (1000 + e) * (total + 1), den = 1000 * n;
    return (num + den - 1) / den;
}

int lx_ring_pick(const lx_ring_t *r, uint64_t key, const uint32_t *loads, uint64_t avail,
                 uint32_t eps_milli, bool *spilled)
{
    avail &= replicas_mask(r);
    if (spilled != NULL)
        *spilled = false;
    if (avail == 0 || r->n_points == 0)
        return -1;
    uint64_t cap = lx_ring_cap(r, loads, avail, eps_milli), seen = 0;
    int home = -1;
    uint32_t i = first_point(r, key);
    for (uint32_t s = 0; s < r->n_points; s++, i = i + 1 == r->n_points ? 0 : i + 1) {
        unsigned idx = (unsigned)(r->points[i] & IDX_MASK);
        uint64_t bit = (uint64_t)1 << idx;
        if (!(avail & bit) || (seen & bit))
            continue;
        seen |= bit;
        if (home < 0)
            home = (int)idx;
        if ((uint64_t)loads[idx] + 1 <= cap) {
            if (spilled != NULL)
                *spilled = (int)idx != home;
            return (int)idx;
        }
        if (seen == avail)
            break;
    }
    return home; /* not reached: some active replica is always below the capacity */
}
