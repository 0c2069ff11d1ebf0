/*
 * fleet.c - the choice of a replica (fleet.h).
 *
 * The rule, for a request with ring key K over replicas r = 0..n-1:
 *
 *   1. Filter. Out: !available (the health table or the breaker refuses it: an unhealthy
 *      replica is never chosen, whatever it has cached) and full (max_in_flight > 0 and
 *      in_flight >= max_in_flight). None left: -1, the caller queues (admission control).
 *      Of the rest, replicas with a stale scrape (metrics && !fresh) are considered only when
 *      no other is left: a stale scrape counts as saturated (GIE: metrics older than 200 ms
 *      do), but a fleet whose scrapes all went stale is still served (GIE's detector fails
 *      open), not turned into 429s by a monitoring fault.
 *
 *   2. Cost, in saturation units (1.0 = that signal alone says "saturated"), lower is better:
 *
 *        occ  = metrics && fresh ? max(in_flight, running + waiting) : in_flight
 *        f    = occ / (max_in_flight > 0 ? max_in_flight : flight_sat)
 *        q    = waiting / queue_sat                      (0 without metrics; 1 when stale)
 *        k    = (kv_ppm / 1e6) / (kv_sat_ppm / 1e6)      (0 without metrics; 1 when stale)
 *        cost = w_queue q + w_kv k + w_flight f + w_health (1 - health)
 *
 *      Why these terms: the engine's waiting queue is what time to first token grows with
 *      (queue time is part of TTFT, reference section 7), KV use is what makes an engine
 *      preempt; GIE's default profile weighs exactly these two equally (queue-scorer and
 *      kv-cache-utilization-scorer, 2 and 2) and its saturation detector puts the limits at
 *      q = 5 and kv = 0.8, our queue_sat and kv_sat. The scrape is up to one interval old, so
 *      llmux's own in-flight count (always current, and the only signal of a server without
 *      metrics) enters as occupancy against the replica's capacity, as GIE's concurrency
 *      detector and llm-d's active-request scorer use it; taking the max with the server's
 *      running + waiting also sees other clients' load. The health score (success and
 *      latency, route/health.h) costs up to one unit: a limping replica loses ties.
 *
 *   3. Affinity. With a key and a ring, the key's home h is the replica it was moved to
 *      (p->home, see 5), else the ring's first replica clockwise from K among the replicas
 *      step 1 considers (full ones included).
 *      a. h full (its max_in_flight reached) and the caller can queue (p->wait_home): -1,
 *         reason LX_FLEET_WAIT. The request waits in the admission queue for a slot on h, for
 *         a bounded extra time (5), rather than paying a cold prefill elsewhere at once: a
 *         slot frees every E[slot time] / max_in_flight (55 ms on bench/fleet's replicas),
 *         a cold 3,500-token prompt costs 350 ms of prefill and doubles the slot time.
 *      b. h moved-to and admitting: a = h.
 *      c. Every replica left by step 1 has a max_in_flight (configured or learned): a = the
 *         first of them clockwise from K (h itself when it admits). The cap already bounds
 *         each replica's load, absolutely; the ring's relative bound (d) would also pass a
 *         key on whenever its home holds more than (1 + eps) times the mean, which at light
 *         load is a handful of requests: a cold prefill elsewhere for nothing.
 *      d. Otherwise a = the ring's replica for K with bounded loads over the replicas left by
 *         step 1 (loads = in_flight, eps = eps_milli), i.e. the first one
 *         clockwise from K whose in_flight + 1 <= ceil((1 + eps)(T + 1)/n_active). eps is 0.5 by
 *         default (SGLang's bounded hashing, HAProxy's usual hash-balance-factor 150), looser than
 *         the 0.25 the reference suggests for hashing alone, because here the server's own queue
 *         and KV use are checked next: the ring only has to stop llmux piling requests on one
 *         replica between scrapes. On test_fleet_sim.c's workload (24 system prompts, 4 replicas)
 *         0.25 sent 29% of the requests off their key's home, 0.5 12%, for an estimated prefix
 *         hit of 73% and 78% (round robin: 63%), the busiest replica at 1.18 and 1.32 x the mean.
 *      Take a when cost(a) <= cost(best) + slack, where best is the least costly replica;
 *      else best.
 *      This is llm-d's finding in two rules: prefix affinity wins big only with a load check
 *      (p90 TTFT 0.54 s precise, 92.6 s random, 94.9 s load-only; prefix-only failed ~45%
 *      of requests); the ring bounds llmux's own spread (CHWBL, the reference's telemetry-free
 *      fallback) and the slack bounds how much more queued work a cache hit may cost (llm-d's
 *      "sticky until saturated": stay warm until the warm replica's lead in queued work
 *      exceeds what the hit saves). The slack is 1.5 units: occupancy alone (below the cap,
 *      under 1 unit) never takes a key off a home that admits it, which with a cap is what
 *      "full" (3a) is for; a server queue of 7.5 more requests, or one that adds to 40% more
 *      KV use, does. Measured on bench/fleet (GPU, 50% load): 0.5 sent keys off their warm
 *      home whenever it held 4 more requests than an idle replica, 73% prefix hits; 1.5: 90%.
 *
 *   4. Least cost otherwise (no key, no ring, or a too busy), ties broken uniformly at random
 *      with the caller's state (GIE's max-score picker shuffles for the same reason).
 *
 *   5. In the queue (gateway/fleet_queue.c; the rules lx_fleet_prefs_in, lx_fleet_may_take,
 *      lx_fleet_overdue, lx_fleet_move, lx_fleet_home below): a queued request's key is
 *      placed or refreshed among the live replicas at its push, whether it had a pick or
 *      queued behind others (lx_fleet_home). A slot that frees on replica r first serves the
 *      oldest request whose home is r, unless an older request that may go to r is overdue
 *      (it waited two steps, 2 x routing.affinity_wait, longer than r's oldest own one): then
 *      the oldest that may go to r goes first. May go: its second replica (the next clockwise,
 * where 3c sends it when h is full and no queue) after routing.affinity_wait, any after twice that;
 * so the extra wait for a warm cache is bounded, and every wait by routing.queue_timeout. A request
 *      served away from its home takes its key along when its home still has a full batch
 *      waiting: for LX_FLEET_MOVE_TTL_MS that replica is the key's home (3b), so an
 *      overloaded home sheds whole prefixes, warm where they land, rather than single
 *      requests, cold everywhere. Homes whose queues are about as old (within two steps) keep
 *      their own requests: the relative bound keeps affinity under an even overload, where
 *      every request has waited longer than a step and an absolute bound ("waited more than
 *      affinity_wait: anyone's") would turn the queue into FIFO. Measured on bench/fleet's GPU
 *      fleet (src/route/README.md, "Admission queue"): a one-step margin that also moved the
 *      key at every overdue serve cost 4 points of prefix hits at 90% load; a clause that also
 *      made any older request overdue from 3/4 of routing.queue_timeout on collapsed them
 *      (with learned caps and a 700 ms timeout: 82 -> 52% at 90% load, 87 -> 39% at 120%,
 *      and 15% of the 90% load refused): under standing load most requests pass 3/4 of the
 *      timeout, so every replica served anyone's. Without it, as the unbounded rule.
 */
#include "route/fleet.h"

#include <string.h>

void lx_fleet_params_default(lx_fleet_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->eps_milli = 500;
    p->queue_sat = 5;
    p->kv_sat_ppm = 800000;
    p->flight_sat = 32;
    p->w_queue = p->w_kv = p->w_flight = p->w_health = 1.0;
    p->slack = 1.5;
    p->home = -1;
}

static bool stale(const lx_fleet_rep_t *r)
{
    return r->metrics && !r->fresh;
}

bool lx_fleet_admits(const lx_fleet_rep_t *r)
{
    return r->available && (r->max_in_flight == 0 || r->in_flight < r->max_in_flight);
}

double lx_fleet_cost(const lx_fleet_rep_t *r, const lx_fleet_params_t *p)
{
    bool live = r->metrics && r->fresh;
    uint64_t server = live ? (uint64_t)r->running + r->waiting : 0;
    uint64_t occ = server > r->in_flight ? server : r->in_flight;
    uint32_t cap = r->max_in_flight > 0 ? r->max_in_flight : p->flight_sat;
    double f = (double)occ / (double)(cap > 0 ? cap : 1);
    double q = 0, k = 0;
    if (stale(r)) {
        q = k = 1.0;
    } else if (live) {
        q = (double)r->waiting / (double)(p->queue_sat > 0 ? p->queue_sat : 1);
        k = (double)r->kv_ppm / (double)(p->kv_sat_ppm > 0 ? p->kv_sat_ppm : 1);
    }
    double h = !(r->health > 0) ? 1.0 : r->health >= 1 ? 0.0 : 1.0 - r->health; /* NaN: 0 */
    return p->w_queue * q + p->w_kv * k + p->w_flight * f + p->w_health * h;
}

static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The replicas step 1 considers, as masks: *<pool> the available ones (fresh ones, or the
 * stale ones when no fresh one admits a request), the return value those of them that admit
 * one more request. */
static uint64_t candidates(const lx_fleet_rep_t *reps, size_t n, uint64_t *pool, bool *stale_only)
{
    uint64_t fresh = 0, old = 0, fresh_in = 0, old_in = 0;
    for (size_t i = 0; i < n; i++) {
        if (!reps[i].available)
            continue;
        uint64_t bit = (uint64_t)1 << i;
        bool in = lx_fleet_admits(&reps[i]);
        if (stale(&reps[i])) {
            old |= bit;
            old_in |= in ? bit : 0;
        } else {
            fresh |= bit;
            fresh_in |= in ? bit : 0;
        }
    }
    *stale_only = fresh_in == 0 && old_in != 0;
    *pool = fresh != 0 ? fresh : old;
    return fresh_in != 0 ? fresh_in : old_in;
}

/* Whether every replica of <mask> has a max_in_flight (configured or learned). */
static bool all_capped(const lx_fleet_rep_t *reps, size_t n, uint64_t mask)
{
    for (size_t i = 0; i < n; i++)
        if ((mask >> i & 1u) && reps[i].max_in_flight == 0)
            return false;
    return true;
}

/* Step 3's replica for <key>: -1 when there is none, -2 when its home (*<home>) is full and
 * the caller waits for it (p->wait_home). */
static int affinity_of(const lx_fleet_rep_t *reps, size_t n, uint64_t key,
                       const lx_fleet_params_t *p, uint64_t pool, uint64_t cand, int *home_out,
                       bool *spilled)
{
    bool moved = p->home >= 0 && (size_t)p->home < n && (pool >> p->home & 1u);
    int home = moved ? p->home : lx_ring_home(p->ring, key, pool);
    *home_out = home;
    if (home < 0)
        return -1;
    if (!(cand >> home & 1u)) {
        if (p->wait_home && reps[home].max_in_flight > 0)
            return -2; /* full: wait for it */
    } else if (moved) {
        return home; /* the key moved here (lx_fleet_move): its load is bounded by the cap */
    }
    if (all_capped(reps, n, cand)) {
        int a = lx_ring_home(p->ring, key, cand); /* the cap bounds the load */
        *spilled = a != home;
        return a;
    }
    uint32_t loads[LX_FLEET_MAX];
    for (size_t i = 0; i < n; i++)
        loads[i] = reps[i].in_flight;
    return lx_ring_pick(p->ring, key, loads, cand, p->eps_milli, spilled);
}

int lx_fleet_pick_ex(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                     const lx_fleet_params_t *p, uint64_t *rnd, lx_fleet_choice_t *why)
{
    memset(why, 0, sizeof(*why));
    why->index = why->affinity = -1;
    if (n > LX_FLEET_MAX)
        n = LX_FLEET_MAX;
    uint64_t pool;
    uint64_t cand = candidates(reps, n, &pool, &why->stale_only);
    if (cand == 0)
        return -1;
    double cost[LX_FLEET_MAX];
    double least = 0;
    int best = -1;
    unsigned ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(cand >> i & 1u))
            continue;
        cost[i] = lx_fleet_cost(&reps[i], p);
        if (best < 0 || cost[i] < least) {
            best = (int)i;
            least = cost[i];
            ties = 1;
        } else if (cost[i] == least && next_random(rnd) % ++ties == 0) {
            best = (int)i;
        }
    }
    int a = -1, home = -1;
    if (prefix_key != 0 && p->ring != NULL && p->ring->n_replicas == n)
        a = affinity_of(reps, n, prefix_key, p, pool, cand, &home, &why->spilled);
    if (a == -2) {
        why->affinity = home;
        why->reason = LX_FLEET_WAIT;
        return -1;
    }
    why->affinity = a;
    if (a >= 0 && cost[a] <= least + p->slack) {
        why->reason = LX_FLEET_AFFINITY;
        why->index = a;
    } else {
        why->reason = LX_FLEET_LOAD;
        why->index = best;
    }
    why->cost = cost[why->index];
    return why->index;
}

int lx_fleet_pick(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                  const lx_fleet_params_t *p, uint64_t *rnd)
{
    lx_fleet_choice_t why;
    return lx_fleet_pick_ex(reps, n, prefix_key, p, rnd, &why);
}

/* ---- waiting for the home replica ---- */

uint64_t lx_fleet_prefs(const lx_ring_t *ring, uint64_t key, int home)
{
    return lx_fleet_prefs_in(ring, key, home, ~(uint64_t)0);
}

uint64_t lx_fleet_prefs_in(const lx_ring_t *ring, uint64_t key, int home, uint64_t avail)
{
    uint8_t order[LX_FLEET_PREFS + 1];
    if (ring == NULL || key == 0)
        return LX_FLEET_NO_PREF;
    size_t k = lx_ring_order(ring, key, avail, order, LX_FLEET_PREFS);
    if (k == 0)
        return LX_FLEET_NO_PREF;
    if (k > LX_FLEET_PREFS)
        k = LX_FLEET_PREFS;
    if (home >= 0 && (uint32_t)home < ring->n_replicas && home < 0xff) {
        size_t at = 0; /* the moved-to home first, the ring's order after it */
        while (at < k && order[at] != (uint8_t)home)
            at++;
        for (size_t i = at < k ? at : k; i > 0; i--)
            order[i] = order[i - 1];
        order[0] = (uint8_t)home;
        if (at == k)
            k = k < LX_FLEET_PREFS ? k + 1 : LX_FLEET_PREFS;
    }
    uint64_t prefs = LX_FLEET_NO_PREF;
    for (size_t i = 0; i < k; i++)
        prefs = (prefs & ~((uint64_t)0xff << (8 * i))) | (uint64_t)order[i] << (8 * i);
    return prefs;
}

/* ---- keys moved off their ring home ---- */

/* The first slot of <key>'s set of LX_FLEET_WAYS (the last set may be shorter). */
static size_t set_of(uint64_t key, size_t n, size_t *ways)
{
    size_t sets = (n + LX_FLEET_WAYS - 1) / LX_FLEET_WAYS;
    size_t first = (size_t)(key % sets) * LX_FLEET_WAYS;
    *ways = n - first < LX_FLEET_WAYS ? n - first : LX_FLEET_WAYS;
    return first;
}

int lx_fleet_moved(const lx_fleet_move_t *t, size_t n, uint64_t key, uint32_t route,
                   uint64_t now_ms)
{
    if (t == NULL || n == 0 || key == 0)
        return -1;
    size_t ways, first = set_of(key, n, &ways);
    for (size_t i = first; i < first + ways; i++)
        if (t[i].key == key && t[i].route == route)
            return now_ms < t[i].until_ms ? t[i].replica : -1;
    return -1;
}

void lx_fleet_move(lx_fleet_move_t *t, size_t n, uint64_t key, uint32_t route, int replica,
                   uint64_t until_ms)
{
    if (t == NULL || n == 0 || key == 0)
        return;
    size_t ways, first = set_of(key, n, &ways), at = first;
    for (size_t i = first; i < first + ways; i++) {
        if (t[i].key == key && t[i].route == route) {
            at = i; /* its own slot */
            break;
        }
        if (t[i].until_ms < t[at].until_ms)
            at = i; /* else the one that ends first (an empty or expired one first) */
    }
    t[at] = (lx_fleet_move_t){key, until_ms, route, replica};
}

int lx_fleet_home(lx_fleet_move_t *t, size_t n, const lx_ring_t *ring, uint64_t key, uint32_t route,
                  uint64_t avail, uint64_t now_ms)
{
    int h = lx_fleet_moved(t, n, key, route, now_ms);
    if (h < 0 || h >= LX_RING_MAX_REPLICAS || !(avail >> h & 1u))
        h = lx_fleet_place(t, n, ring, key, route, avail, now_ms);
    if (h >= 0)
        lx_fleet_move(t, n, key, route, h, now_ms + LX_FLEET_MOVE_TTL_MS);
    return h;
}

int lx_fleet_place(const lx_fleet_move_t *t, size_t n, const lx_ring_t *ring, uint64_t key,
                   uint32_t route, uint64_t avail, uint64_t now_ms)
{
    uint8_t order[LX_RING_MAX_REPLICAS];
    size_t k =
        ring != NULL && key != 0 ? lx_ring_order(ring, key, avail, order, LX_RING_MAX_REPLICAS) : 0;
    if (k == 0)
        return -1;
    uint32_t count[LX_RING_MAX_REPLICAS] = {0};
    uint64_t keys = 0;
    for (size_t i = 0; t != NULL && i < n; i++) {
        const lx_fleet_move_t *m = &t[i];
        if (m->key == 0 || m->key == key || m->route != route || now_ms >= m->until_ms ||
            m->replica < 0 || m->replica >= LX_RING_MAX_REPLICAS || !(avail >> m->replica & 1u))
            continue;
        count[m->replica]++;
        keys++;
    }
    uint64_t num = (1000 + LX_FLEET_PLACE_EPS_MILLI) * (keys + 1), den = 1000 * (uint64_t)k;
    uint64_t cap = (num + den - 1) / den;
    for (size_t i = 0; i < k; i++)
        if ((uint64_t)count[order[i]] + 1 <= cap)
            return order[i];
    return order[0]; /* (not reached: the counts cannot all be at cap) */
}

unsigned lx_fleet_pref_rank(uint64_t prefs, unsigned r)
{
    if (prefs == LX_FLEET_NO_PREF)
        return 0;
    for (unsigned i = 0; i < LX_FLEET_PREFS; i++) {
        unsigned v = (unsigned)(prefs >> (8 * i) & 0xff);
        if (v == 0xff)
            break;
        if (v == r)
            return i;
    }
    return LX_FLEET_PREFS;
}

bool lx_fleet_may_take(unsigned rank, uint64_t waited_ms, uint64_t step_ms, uint64_t timeout_ms)
{
    if (rank == 0)
        return true;
    uint64_t any = step_ms > UINT64_MAX / 2 ? UINT64_MAX : 2 * step_ms;
    uint64_t before = timeout_ms / 4 * 3 + timeout_ms % 4 * 3 / 4; /* 3/4 of it, no overflow */
    any = any < before ? any : before;
    return waited_ms >= (rank == 1 && step_ms < any ? step_ms : any);
}

bool lx_fleet_overdue(uint64_t waited_ms, uint64_t home_waited_ms, uint64_t step_ms)
{
    if (waited_ms <= home_waited_ms)
        return false; /* (not older: the home's own request goes first) */
    uint64_t margin = step_ms > UINT64_MAX / 2 ? UINT64_MAX : 2 * step_ms;
    return waited_ms - home_waited_ms >= margin;
}

/* ---- the learned max_in_flight ---- */

#define CAP_MAX_STATE (65535u * LX_FLEET_CAP_ONE)

uint32_t lx_fleet_learned_cap(uint32_t state)
{
    if (state == 0)
        return 0;
    uint32_t cap = (state + LX_FLEET_CAP_ONE / 2) / LX_FLEET_CAP_ONE;
    return cap > 0 ? cap : 1;
}

uint32_t lx_fleet_learn_cap(uint32_t state, bool signals, uint32_t waiting, uint32_t running)
{
    if (!signals || running == 0)
        return state;
    if (state > CAP_MAX_STATE)
        state = CAP_MAX_STATE;
    int64_t obs = (int64_t)(running < 65535u ? running : 65535u) * LX_FLEET_CAP_ONE;
    if (waiting > 0) {
        if (state == 0) { /* all it holds: an upper bound the steps below bring down */
            uint64_t all = (uint64_t)running + waiting;
            return (uint32_t)(all < 65535u ? all : 65535u) * LX_FLEET_CAP_ONE;
        }
        int64_t next = (int64_t)state + (obs - (int64_t)state) / 4;
        return next > 0 ? (uint32_t)next : 1;
    }
    if (state != 0 && running >= lx_fleet_learned_cap(state) && state < CAP_MAX_STATE) {
        uint32_t step = state / 16; /* 1/16 of the cap, from a quarter to one request */
        step = step < LX_FLEET_CAP_ONE / 4 ? LX_FLEET_CAP_ONE / 4
               : step > LX_FLEET_CAP_ONE   ? LX_FLEET_CAP_ONE
                                           : step;
        return state + step < CAP_MAX_STATE ? state + step : CAP_MAX_STATE;
    }
    return state;
}

/* ---- the prefix-hit estimate ---- */

static size_t slot_of(uint64_t h, size_t n_slots)
{
    return (size_t)(h % n_slots);
}

void lx_fleet_prefix_note(uint64_t *slots, size_t n_slots, const uint64_t *chain, size_t n)
{
    if (n_slots == 0)
        return;
    for (size_t i = 0; i < n; i++)
        slots[slot_of(chain[i], n_slots)] = chain[i];
}

size_t lx_fleet_prefix_hit_estimate(const uint64_t *slots, size_t n_slots, const uint64_t *chain,
                                    size_t n)
{
    size_t hits = 0;
    if (n_slots == 0)
        return 0;
    while (hits < n && chain[hits] != 0 && slots[slot_of(chain[hits], n_slots)] == chain[hits])
        hits++;
    return hits;
}
