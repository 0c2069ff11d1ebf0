/*
 * queue.h - the admission queue of one model on one worker: requests that found every replica
 * full wait here, interactive before batch, each until a slot frees (pop), its deadline passes
 * (expire), or its client leaves (remove).
 *
 * Pure and intrusive: the caller embeds an lx_queue_node_t in its request struct and owns the
 * lx_queue_t (one per model per worker, on that worker's loop: no lock, no atomic). Nothing
 * allocates; push, pop and remove are O(1); times are milliseconds of a monotonic clock passed
 * in (uv_now), never read here.
 *
 * The rules (why, in src/route/README.md):
 * - Order: interactive before batch, FIFO within a class; but while batch requests wait, at
 *   least one pop in every <batch_every> (default 8) serves the oldest of them, so batch keeps
 *   at least 1/8 of the drain rate and interactive at least 7/8 under any overload.
 * - Bounded: a push beyond <capacity> is refused (the caller answers 429). An interactive
 *   push on a full queue evicts the newest batch request instead, when there is one (that one
 *   gets the 429); a batch push on a full queue is refused.
 * - Deadline: now + <timeout_ms> at the push. lx_queue_expire takes out every node whose
 *   deadline has come, earliest deadline first; the caller runs it from one timer per queue,
 *   armed at lx_queue_next_deadline.
 * - Drain rate: an EWMA (1/8) of the time between two pops while the queue is not empty;
 *   Retry-After = ceil((len + 1) / rate) seconds, clamped to [1, 60]; the queue timeout when no
 *   rate is known yet.
 */
#ifndef LX_QUEUE_H
#define LX_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "route/codel.h"

typedef enum lx_queue_class {
    LX_QUEUE_INTERACTIVE = 0,
    LX_QUEUE_BATCH = 1,
} lx_queue_class_t;
#define LX_QUEUE_N_CLASSES 2

#define LX_QUEUE_BATCH_EVERY     8  /* default: while batch waits, one pop in 8 serves it */
#define LX_QUEUE_RETRY_AFTER_MIN 1  /* Retry-After clamp, seconds: at least */
#define LX_QUEUE_RETRY_AFTER_MAX 60 /* and at most */

struct lx_queue;

/* Embedded in the caller's request. Zero it (or lx_queue_node_init) before its first use; the
 * fields are the queue's while the node is queued and readable by the caller at any time. */
typedef struct lx_queue_node {
    lx_list_t link;         /* in its class's FIFO */
    lx_list_t by_deadline;  /* in the queue's deadline order */
    struct lx_queue *owner; /* the queue holding it; NULL when not queued */
    uint64_t enqueued_ms;   /* when it was pushed */
    uint64_t deadline_ms;   /* enqueued_ms + the queue's timeout at that time */
    lx_queue_class_t cls;   /* its class */
    uint64_t tag;           /* the caller's, never read here (the fleet: the replica
                               preference lx_queue_pop_fit's predicate reads) */
} lx_queue_node_t;

/* Totals since lx_queue_init, per class. Every push admitted is counted in enqueued and
 * leaves by exactly one of served, expired, evicted, cancelled (or is still queued), so
 * enqueued = served + expired + evicted + cancelled + len, per class. Rejected pushes are
 * counted in rejected only. */
typedef struct lx_queue_stats {
    size_t len[LX_QUEUE_N_CLASSES];         /* queued now */
    uint64_t enqueued[LX_QUEUE_N_CLASSES];  /* pushes admitted */
    uint64_t rejected[LX_QUEUE_N_CLASSES];  /* pushes refused: full (429) */
    uint64_t shed[LX_QUEUE_N_CLASSES];      /* arrivals the caller refused while the queue stood
                                               (lx_queue_shed; 429), never pushed */
    uint64_t served[LX_QUEUE_N_CLASSES];    /* popped for a free slot */
    uint64_t expired[LX_QUEUE_N_CLASSES];   /* taken out by lx_queue_expire (429) */
    uint64_t evicted[LX_QUEUE_N_CLASSES];   /* pushed out by an interactive push (429) */
    uint64_t cancelled[LX_QUEUE_N_CLASSES]; /* removed: the client left */
    uint64_t max_wait_ms;                   /* longest wait of a served request */
    uint64_t wait_ms_total;                 /* sum of served requests' waits (mean: / served) */
} lx_queue_stats_t;

/* One model's queue on one worker. Its list heads are addressed by the nodes queued: it does
 * not move (no memcpy, no realloc of an array of queues) while a node is queued. */
typedef struct lx_queue {
    lx_list_t fifo[LX_QUEUE_N_CLASSES];
    lx_list_t by_deadline; /* every queued node, earliest deadline first, ties by arrival */
    size_t capacity;
    uint64_t timeout_ms;
    unsigned batch_every;
    unsigned streak;    /* interactive pops since batch was last served or empty */
    int64_t gap_us;     /* EWMA of the time between pops while not empty; < 0: unknown */
    uint64_t mark_ms;   /* start of the current such interval: the last pop, or the push that
                           made the queue non-empty */
    lx_codel_t codel;   /* the standing-queue detector (off unless lx_queue_set_codel) */
    int64_t service_us; /* EWMA of the model's slot time (lx_queue_note_service); 0: unknown */
    lx_queue_stats_t stats;
} lx_queue_t;

/* Makes <n> not queued (lx_queue_remove on it is then a no-op). */
void lx_queue_node_init(lx_queue_node_t *n);

/* True while <n> is on a queue. */
static inline bool lx_queue_node_queued(const lx_queue_node_t *n)
{
    return n->owner != NULL;
}

/* Makes <q> an empty queue (a new one, or one emptied: a node left on it would stay marked
 * queued) of at most <capacity> requests (0: every push is refused), each waiting at most
 * <timeout_ms>; <batch_every> is the anti-starvation period (0: LX_QUEUE_BATCH_EVERY;
 * values below 2 count as 2). */
void lx_queue_init(lx_queue_t *q, size_t capacity, uint64_t timeout_ms, unsigned batch_every);

/* New limits (a reload): they apply to pushes from now on. Requests already queued keep
 * their deadlines and are not evicted; a queue over a smaller capacity refuses pushes (and
 * evicts nothing) until it is under it again. */
void lx_queue_set_limits(lx_queue_t *q, size_t capacity, uint64_t timeout_ms);

/* The standing-queue detector (route/codel.h) on <q>: every request that leaves by a pop or
 * an expiry reports its wait to it, and the queue emptying resets it. <target_ms> 0 turns it
 * off (the default after lx_queue_init). The state restarts (not standing). */
void lx_queue_set_codel(lx_queue_t *q, uint64_t target_ms, uint64_t interval_ms);

/* True while <q>'s waits have stayed at or above its target for a whole interval (codel.h):
 * the caller refuses an arrival that would have to queue (lx_queue_shed) instead of pushing
 * it behind the standing queue. */
static inline bool lx_queue_standing(const lx_queue_t *q)
{
    return lx_codel_standing(&q->codel);
}

/* Before an arrival at <now_ms> is judged: an empty queue that nothing left for an interval
 * stops standing (lx_codel_idle). */
void lx_queue_idle_check(lx_queue_t *q, uint64_t now_ms);

/* Whether an arrival at <now_ms> that would have to queue may: always while the queue does
 * not stand; while it stands, only when its wait predicted from the drain rate, (len + 1) x
 * the gap between pops (the EWMA, or the gap running now when longer), is below the target.
 * So a standing queue is held at about the target's worth of requests whatever the overload,
 * and never empties only because arrivals were refused (a slot would then idle). No rate
 * known yet: admitted. */
bool lx_queue_admits(const lx_queue_t *q, uint64_t now_ms);

/* The same for an arrival that would wait behind <ahead> requests for one server that frees a
 * slot every <slot_us> (its home replica: the model's slot time x workers / the replica's
 * max_in_flight): while the queue stands, admitted only when (ahead + 1) x slot_us is below the
 * target. lx_queue_admits is (len, the gap between the queue's pops). */
bool lx_queue_admits_behind(const lx_queue_t *q, size_t ahead, uint64_t slot_us);

/* An attempt of <q>'s model held a slot for <us> (queued or not; 0 is ignored): the EWMA of
 * how long a request holds a slot (service_us). */
void lx_queue_note_service(lx_queue_t *q, uint64_t us);

/* Counts an arrival of class <cls> the caller refused at <now_ms> because the queue stood
 * (stats.shed; the detector holds its state while this goes on, codel.h). */
void lx_queue_shed(lx_queue_t *q, lx_queue_class_t cls, uint64_t now_ms);

/* Queues <n> of class <cls> (any other value counts as interactive) at <now_ms>, deadline
 * now_ms + timeout (saturated). True when admitted; then *evicted is NULL, or the batch node
 * this interactive push evicted from a full queue (no longer queued: the caller answers it
 * 429; <evicted> NULL: no eviction, a full queue refuses). False when refused: the queue is
 * full (the caller answers 429 with lx_queue_retry_after), or <n> is already queued (a caller
 * bug; nothing changes, nothing counted). O(1) when deadlines do not decrease (one timeout and a
 * monotonic clock); after a timeout cut, at most the nodes with later deadlines are stepped over.
 */
bool lx_queue_push(lx_queue_t *q, lx_queue_node_t *n, lx_queue_class_t cls, uint64_t now_ms,
                   lx_queue_node_t **evicted);

/* The next node to serve, taken off the queue, or NULL when empty; <now_ms> measures its wait
 * and the drain rate. It does not look at deadlines: a node whose deadline passed but that
 * lx_queue_expire has not taken yet is served (a slot is free). O(1). */
lx_queue_node_t *lx_queue_pop(lx_queue_t *q, uint64_t now_ms);

/* lx_queue_pop() restricted to the nodes for which <fit>(<arg>, node) holds: the class
 * lx_queue_pop() would serve is looked at first, oldest first, then the other class; the first
 * fitting node is taken off and counted as lx_queue_pop() counts (the batch share counts the
 * class actually served). NULL, and nothing changes, when no node fits. O(len): the scan is
 * bounded by the queue's capacity. For the fleet's affinity-aware dequeue (a slot freed on
 * one replica serves the oldest request that may go there). */
lx_queue_node_t *lx_queue_pop_fit(lx_queue_t *q, uint64_t now_ms,
                                  bool (*fit)(void *arg, const lx_queue_node_t *n), void *arg);

/* The node lx_queue_pop_fit() would take, left on the queue (nothing changes, nothing is
 * counted), or NULL. O(len). For the fleet's bound on home first: whether an older request
 * than a replica's own may take its slot. */
lx_queue_node_t *lx_queue_peek_fit(lx_queue_t *q, bool (*fit)(void *arg, const lx_queue_node_t *n),
                                   void *arg);

/* Takes <n> off <q> (its client left). True when it was queued on <q>; false, and nothing
 * changes, when it is not queued or queued on another queue, so calling it twice, or on a node
 * already popped, expired or evicted, is harmless. O(1). */
bool lx_queue_remove(lx_queue_t *q, lx_queue_node_t *n);

/* Takes out every node whose deadline is <= <now_ms>, earliest deadline first (ties in
 * arrival order), and calls <cb>(<arg>, node) for each after it is off the queue (cb may be
 * NULL; it may free the node, push, pop or remove others: the call takes out at most as many
 * nodes as were queued when it began, so it ends). The number taken out. With UINT64_MAX it
 * empties the queue (a worker's stop, a model a reload removed). */
size_t lx_queue_expire(lx_queue_t *q, uint64_t now_ms, void (*cb)(void *arg, lx_queue_node_t *n),
                       void *arg);

/* The earliest deadline queued, or UINT64_MAX when the queue is empty: the caller arms its
 * one timer at max(0, it - now) after each push, pop, remove and expire. O(1). */
uint64_t lx_queue_next_deadline(const lx_queue_t *q);

/* Pops per second while the queue is not empty (1e6 / the EWMA of the gap between pops, in
 * µs), or a negative value while unknown (before the first pop). */
double lx_queue_drain_rate(const lx_queue_t *q);

/* Seconds a request arriving now at the back would wait: ceil((len + 1) / rate), where the
 * gap between pops is the EWMA or, when longer, the time since the last pop (a stalled drain
 * counts at once); the queue timeout (rounded up to seconds) when no rate is known. Clamped
 * to [LX_QUEUE_RETRY_AFTER_MIN, LX_QUEUE_RETRY_AFTER_MAX]. For the Retry-After of a refused,
 * evicted or expired request. */
unsigned lx_queue_retry_after(const lx_queue_t *q, uint64_t now_ms);

/* Requests queued, all classes. */
static inline size_t lx_queue_len(const lx_queue_t *q)
{
    return q->stats.len[LX_QUEUE_INTERACTIVE] + q->stats.len[LX_QUEUE_BATCH];
}

#endif
