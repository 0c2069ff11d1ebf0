/*
 * fleet.h - the choice of a replica among the self-hosted replicas of one model: prefix
 * affinity (the bounded-load ring, route/ring.h) held in check by load (llmux's in-flight
 * counts and the model servers' scraped queue, running count and KV-cache use), under the
 * health table and breaker. The scoring function and its justification are at the top of
 * fleet.c.
 *
 * Pure: the caller (the gateway) gives one lx_fleet_rep_t per replica, in the ring's replica
 * order, and a random state; no allocation, no lock, time linear in the replicas plus one ring
 * lookup. Same inputs and random state, same answer.
 */
#ifndef LX_FLEET_H
#define LX_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/ring.h"

#define LX_FLEET_MAX LX_RING_MAX_REPLICAS

/* One replica's signals. */
typedef struct lx_fleet_rep {
    bool available;         /* the health table and the breaker admit it: false is never chosen */
    bool metrics;           /* its server's signals (waiting, running, kv_ppm) are scraped */
    bool fresh;             /* ... and the last scrape is recent; a stale one counts as saturated */
    uint32_t in_flight;     /* llmux's requests on it, all workers */
    uint32_t waiting;       /* the server's queue (vllm:num_requests_waiting, ...) */
    uint32_t running;       /* the server's running requests */
    uint32_t kv_ppm;        /* KV-cache use, parts per million (0.8 = 800,000) */
    uint32_t max_in_flight; /* full at this many in flight; 0: unknown (never full) */
    double health;          /* the health table's score, 0..1 */
} lx_fleet_rep_t;

typedef struct lx_fleet_params {
    const lx_ring_t *ring; /* over the same replicas in the same order; NULL: no affinity */
    uint32_t eps_milli;    /* the ring's bounded-load eps, thousandths (500) */
    uint32_t queue_sat;    /* a queue this long counts as saturated (5) */
    uint32_t kv_sat_ppm;   /* a KV use this high counts as saturated (800,000) */
    uint32_t flight_sat;   /* in flight that counts as saturated when max_in_flight is 0 (32) */
    double w_queue, w_kv, w_flight, w_health; /* the cost's weights (1, 1, 1, 1) */
    double slack;   /* the affinity replica is kept while its cost <= best + slack (1.5) */
    bool wait_home; /* the caller has an admission queue: a request whose home is full waits
                       for it (-1, LX_FLEET_WAIT) instead of going elsewhere at once */
    int home;       /* the replica the key was moved to (lx_fleet_moved), -1: its ring home */
} lx_fleet_params_t;

/* Why a replica was chosen. */
enum lx_fleet_reason {
    LX_FLEET_NONE,     /* no replica available and below max_in_flight: -1 */
    LX_FLEET_AFFINITY, /* the ring's replica for the prefix key */
    LX_FLEET_LOAD,     /* the least costly (no key, or the affinity replica was too busy) */
    LX_FLEET_WAIT,     /* -1: the key's home is full and wait_home is set: queue for it */
};

typedef struct lx_fleet_choice {
    int index;       /* as returned */
    int affinity;    /* the ring's replica for the key, -1 when none */
    bool spilled;    /* the ring passed the key's home on (it was at capacity) */
    bool stale_only; /* only replicas with stale scrapes were left (fail open) */
    enum lx_fleet_reason reason;
    double cost; /* the chosen replica's cost */
} lx_fleet_choice_t;

/* The defaults above. */
void lx_fleet_params_default(lx_fleet_params_t *p);

/* The cost of replica <r> under <p> (fleet.c: lower is better; 1.0 per saturated signal). */
double lx_fleet_cost(const lx_fleet_rep_t *r, const lx_fleet_params_t *p);

/* Whether <r> may take one more request: available and below its max_in_flight. */
bool lx_fleet_admits(const lx_fleet_rep_t *r);

/*
 * The replica for a request whose prompt has the ring key <prefix_key> (llm/prefix.h; 0: no
 * prompt, no affinity) among the <n> (<= LX_FLEET_MAX) replicas <reps>: an index into <reps>,
 * or -1 when none admits a request (all unavailable or full: the caller queues). <rnd> is the
 * random state for ties (any value; updated).
 */
int lx_fleet_pick(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                  const lx_fleet_params_t *p, uint64_t *rnd);

/* lx_fleet_pick() telling why, in *<why> (not NULL). */
int lx_fleet_pick_ex(const lx_fleet_rep_t *reps, size_t n, uint64_t prefix_key,
                     const lx_fleet_params_t *p, uint64_t *rnd, lx_fleet_choice_t *why);

/*
 * Waiting for the home replica (the admission queue's order, gateway/fleet_queue.c). A queued
 * request carries its replica preference, packed by lx_fleet_prefs(): the first
 * LX_FLEET_PREFS distinct replicas clockwise from its key on the ring (lx_ring_order), 8 bits
 * each, rank 0 (the home) in the low byte, 0xff past the end; LX_FLEET_NO_PREF without a key.
 * When a slot frees on replica r, the queue serves the oldest request for which
 * lx_fleet_may_take(rank of r, its wait, step) holds: its home at once, its second replica
 * (where the ring spills the key, so that replica is warm for it too) after <step_ms>, any
 * replica after 2 x <step_ms> (routing.affinity_wait), and any at the latest after 3/4 of
 * routing.queue_timeout. So the extra wait affinity costs is bounded by 2 steps, and the
 * whole wait by routing.queue_timeout.
 */
#define LX_FLEET_PREFS   8
#define LX_FLEET_NO_PREF UINT64_MAX
/* ... with <home> (>= 0: where the key was moved, lx_fleet_moved) first, the ring's order
 * after it. */
uint64_t lx_fleet_prefs(const lx_ring_t *ring, uint64_t key, int home);
/* lx_fleet_prefs() over the replicas of <avail> only (bit i: replica i is live): a dead
 * replica takes no rank, so the live one after it is not held back a step for it. */
uint64_t lx_fleet_prefs_in(const lx_ring_t *ring, uint64_t key, int home, uint64_t avail);
/* The rank of replica <r> in <prefs>: 0 for the home, LX_FLEET_PREFS when it is not listed;
 * 0 for every replica under LX_FLEET_NO_PREF (a request without a key fits anywhere). */
unsigned lx_fleet_pref_rank(uint64_t prefs, unsigned r);
/* Whether a request that waited <waited_ms> may go to a replica of rank <rank>: rank 0 at
 * once, rank 1 from <step_ms>, any rank from 2 x <step_ms>; both at the latest from 3/4 of
 * <timeout_ms> (the queue's timeout), so a request is never refused for waiting on its home
 * while another replica had room for it. */
bool lx_fleet_may_take(unsigned rank, uint64_t waited_ms, uint64_t step_ms, uint64_t timeout_ms);
/*
 * The bound on home first. A free slot on replica r goes to the oldest request whose home is
 * r, which waited <home_waited_ms>, unless an older one that may go to r (lx_fleet_may_take)
 * and waited <waited_ms> is overdue: it waited at least 2 x <step_ms> (routing.affinity_wait,
 * the wait after which lx_fleet_may_take lets it go anywhere) longer. Then it goes first. So a
 * request is never passed over by home requests that arrived more than two steps after it,
 * while homes whose queues are about as old keep their own requests (and their caches); the
 * queue's timeout bounds every wait. Its key moves only as before (the gateway: when its home
 * still has a full batch waiting), not at every overdue serve.
 */
bool lx_fleet_overdue(uint64_t waited_ms, uint64_t home_waited_ms, uint64_t step_ms);

/*
 * Keys moved off their ring home. The ring places keys, not load: with a few dozen prompt
 * prefixes, one replica can be the home of far more than its share (44% of the requests for
 * one of four, on bench/fleet's 32 system prompts). When the queue serves a request on a
 * replica other than its home (it waited routing.affinity_wait for it), the whole key follows
 * (lx_fleet_move): for LX_FLEET_MOVE_TTL_MS its requests take that replica as their home, so
 * the overloaded home sheds whole prefixes, whose next requests find their cache where they
 * now go, instead of scattering single requests cold over the fleet. A move ends with its
 * time (the key goes back to its ring home, and moves again if that is still too busy) or
 * when another key takes its slot (<n> slots the caller owns, in sets of LX_FLEET_WAYS: a
 * new key takes the slot of its set whose time ends first; per worker, per generation;
 * zeroed = empty). Per worker: workers learn their moves apart.
 */
#define LX_FLEET_MOVES       256
#define LX_FLEET_WAYS        4 /* set-associative: a key lives in one of 4 slots */
#define LX_FLEET_MOVE_TTL_MS 30000u
typedef struct lx_fleet_move {
    uint64_t key; /* 0: empty */
    uint64_t until_ms;
    uint32_t route; /* the caller's index of the ring (model_base[m] + route) */
    int32_t replica;
} lx_fleet_move_t;
/* Where <key> of ring <route> was moved and still is at <now_ms>, or -1. */
int lx_fleet_moved(const lx_fleet_move_t *t, size_t n, uint64_t key, uint32_t route,
                   uint64_t now_ms);
/*
 * Where a key seen for the first time goes (then recorded with lx_fleet_move and refreshed at
 * each use, so it stays while used): the first replica in its ring order (lx_ring_order over
 * <avail>) holding fewer than ceil((1 + LX_FLEET_PLACE_EPS_MILLI / 1000) (K + 1) / n) of the
 * K keys of <route> live in <t>: consistent hashing with bounded loads over keys, not
 * requests. With a few dozen prompt prefixes the ring alone gives one replica twice its share
 * of them (their prefill and their cache), and its load; bounded by count, each replica's
 * share stays within one key of the mean (eps 0.125 over 8 keys each), while a key still goes
 * to its ring home whenever that is not over. -1 without a key, ring or available replica.
 */
#define LX_FLEET_PLACE_EPS_MILLI 125u
int lx_fleet_place(const lx_fleet_move_t *t, size_t n, const lx_ring_t *ring, uint64_t key,
                   uint32_t route, uint64_t avail, uint64_t now_ms);

/* Records that <key> of <route> now goes to <replica>, until <until_ms>. */
void lx_fleet_move(lx_fleet_move_t *t, size_t n, uint64_t key, uint32_t route, int replica,
                   uint64_t until_ms);

/* The home of <key> on <ring> (<route>) for a request at <now_ms>, placed or refreshed: where
 * it was moved while that replica is in <avail>, else a new placement (lx_fleet_place over
 * <avail>); recorded for LX_FLEET_MOVE_TTL_MS from now. -1 (nothing recorded) without a key,
 * a ring or a replica of <avail>. What a request's first attempt does (route/plan.c), and the
 * queue's push for a request queued behind others without a pick (gateway/fleet_queue.c): a
 * key in use never lapses to its ring home, nor stays on a dead replica. No allocation. */
int lx_fleet_home(lx_fleet_move_t *t, size_t n, const lx_ring_t *ring, uint64_t key, uint32_t route,
                  uint64_t avail, uint64_t now_ms);

/*
 * A max_in_flight learned from the server's own figures, for an endpoint with metrics and no
 * configured max_in_flight. The state is the cap in sixteenths of a request (0: nothing
 * learned yet: no cap); lx_fleet_learn_cap() folds in one scrape (<signals>: the page had both
 * the waiting and the running figure):
 *   - waiting > 0: the server is queueing, so it runs all it will: the state moves a quarter
 *     of the way to <running> (the first such scrape sets it to running + waiting, an upper
 *     bound: a scrape caught between a request's arrival and the server's next step shows a
 *     queue behind a batch that is not full, and would set a cap of 1);
 *   - waiting == 0 and running >= the current cap: the server ran the whole cap without
 *     queueing, so it may take more: the state grows by 1/16 of the cap, at least a quarter
 *     and at most one request (from 4 to 64 in about 70 scrapes, 3.5 s at 50 ms);
 *   - otherwise (below the cap, or no signals) nothing is learned.
 * The cap thus settles at the running count where the server starts queueing (its batch
 * limit: vLLM's max_num_seqs, or fewer when its KV cache is the bound), give or take one: an
 * additive probe up, a smoothed step down, so one scrape caught between a request's arrival
 * and the server's next step (waiting 1, running below the limit) moves it by a quarter only.
 */
#define LX_FLEET_CAP_ONE 16u
uint32_t lx_fleet_learn_cap(uint32_t state, bool signals, uint32_t waiting, uint32_t running);
/* The cap a state stands for: 0 (none) or at least 1. */
uint32_t lx_fleet_learned_cap(uint32_t state);
/* A replica's max_in_flight: the configured one, else (<scraped>: its provider has metrics)
 * the learned one of <state>, else 0 (unknown: never full). */
static inline uint32_t lx_fleet_cap_of(uint32_t configured, bool scraped, uint32_t state)
{
    return configured > 0 ? configured : scraped ? lx_fleet_learned_cap(state) : 0;
}

/*
 * A prefix-hit estimate without a tokenizer or the servers' KV events: each replica keeps a
 * direct-mapped table of the block hashes (llm/prefix.h chain) of the prompts routed to it,
 * <n_slots> words the caller owns (zeroed: empty). A block seen there was probably prefilled
 * there (an overwritten slot or an eviction on the server makes it an estimate).
 *
 * lx_fleet_prefix_note() records the <n> blocks of <chain> after a dispatch;
 * lx_fleet_prefix_hit_estimate() returns how many leading blocks of <chain> the table holds
 * (it stops at the first missing one, as a server's prefix cache does): hits / n is the
 * request's estimated prefix-cache hit, the sums per endpoint the /admin/health figure.
 */
void lx_fleet_prefix_note(uint64_t *slots, size_t n_slots, const uint64_t *chain, size_t n);
size_t lx_fleet_prefix_hit_estimate(const uint64_t *slots, size_t n_slots, const uint64_t *chain,
                                    size_t n);

#endif
