/*
 * queue.c - the per-model, per-worker admission queue: two intrusive FIFOs (interactive,
 * batch), one intrusive list in deadline order, counters and the drain-rate EWMA. The rules
 * are in queue.h; the reasons in README.md.
 */
#include <string.h>

#include "route/queue.h"

#define GAP_SHIFT     3             /* the drain EWMA's weight: 1/8 per pop */
#define SERVICE_SHIFT 4             /* the service-time EWMA's weight: 1/16 per attempt */
#define MAX_STEP_MS   1000000000ull /* a gap longer than ~11 days counts as that (no overflow) */
#define US_PER_S      1000000ull

void lx_queue_node_init(lx_queue_node_t *n)
{
    lx_list_init(&n->link);
    lx_list_init(&n->by_deadline);
    n->owner = NULL;
    n->enqueued_ms = 0;
    n->deadline_ms = 0;
    n->cls = LX_QUEUE_INTERACTIVE;
    n->tag = 0;
}

void lx_queue_init(lx_queue_t *q, size_t capacity, uint64_t timeout_ms, unsigned batch_every)
{
    memset(q, 0, sizeof *q);
    for (int c = 0; c < LX_QUEUE_N_CLASSES; c++)
        lx_list_init(&q->fifo[c]);
    lx_list_init(&q->by_deadline);
    q->capacity = capacity;
    q->timeout_ms = timeout_ms;
    if (batch_every == 0)
        batch_every = LX_QUEUE_BATCH_EVERY;
    q->batch_every = batch_every < 2 ? 2 : batch_every;
    q->gap_us = -1;
    lx_codel_init(&q->codel, 0, 0);
}

void lx_queue_set_codel(lx_queue_t *q, uint64_t target_ms, uint64_t interval_ms)
{
    lx_codel_init(&q->codel, target_ms, interval_ms);
}

void lx_queue_shed(lx_queue_t *q, lx_queue_class_t cls, uint64_t now_ms)
{
    q->stats.shed[cls == LX_QUEUE_BATCH ? LX_QUEUE_BATCH : LX_QUEUE_INTERACTIVE]++;
    lx_codel_shed(&q->codel, now_ms);
}

void lx_queue_idle_check(lx_queue_t *q, uint64_t now_ms)
{
    if (lx_queue_len(q) == 0)
        lx_codel_idle(&q->codel, now_ms);
}

void lx_queue_note_service(lx_queue_t *q, uint64_t us)
{
    if (us == 0)
        return;
    int64_t s = (int64_t)(us < MAX_STEP_MS * 1000 ? us : MAX_STEP_MS * 1000);
    if (q->service_us <= 0)
        q->service_us = s;
    else
        q->service_us += (s - q->service_us) / (1 << SERVICE_SHIFT);
}

void lx_queue_set_limits(lx_queue_t *q, size_t capacity, uint64_t timeout_ms)
{
    q->capacity = capacity;
    q->timeout_ms = timeout_ms;
}

static lx_queue_node_t *of_link(lx_list_t *l)
{
    return lx_list_entry(l, lx_queue_node_t, link);
}

static lx_queue_node_t *of_deadline(lx_list_t *l)
{
    return lx_list_entry(l, lx_queue_node_t, by_deadline);
}

/* Off both lists, no longer owned; the caller counts why it left. */
static void unlink_node(lx_queue_t *q, lx_queue_node_t *n)
{
    lx_list_remove(&n->link);
    lx_list_remove(&n->by_deadline);
    n->owner = NULL;
    if (--q->stats.len[n->cls] == 0 && n->cls == LX_QUEUE_BATCH)
        q->streak = 0; /* no batch request waits: nothing was passed over */
    if (lx_queue_len(q) == 0)
        lx_codel_empty(&q->codel); /* nothing stands in an empty queue */
}

/* <n>'s wait at <now_ms>. */
static uint64_t wait_of(const lx_queue_node_t *n, uint64_t now_ms)
{
    return now_ms > n->enqueued_ms ? now_ms - n->enqueued_ms : 0;
}

/* After the last node whose deadline is not later than <n>'s: ties keep arrival order, and
 * with non-decreasing deadlines the first step stops (the tail). */
static void insert_by_deadline(lx_queue_t *q, lx_queue_node_t *n)
{
    lx_list_t *at = q->by_deadline.prev;
    while (at != &q->by_deadline && of_deadline(at)->deadline_ms > n->deadline_ms)
        at = at->prev;
    lx_list_insert_head(at, &n->by_deadline);
}

/* Makes room for an interactive push on a queue exactly full by taking out its newest batch
 * request; NULL when there is none (or the queue is over a capacity cut by a reload). */
static lx_queue_node_t *evict_newest_batch(lx_queue_t *q)
{
    if (lx_queue_len(q) != q->capacity || q->stats.len[LX_QUEUE_BATCH] == 0)
        return NULL;
    lx_queue_node_t *v = of_link(q->fifo[LX_QUEUE_BATCH].prev);
    unlink_node(q, v);
    q->stats.evicted[LX_QUEUE_BATCH]++;
    return v;
}

bool lx_queue_push(lx_queue_t *q, lx_queue_node_t *n, lx_queue_class_t cls, uint64_t now_ms,
                   lx_queue_node_t **evicted)
{
    if (evicted)
        *evicted = NULL;
    if (n->owner != NULL)
        return false;
    if (cls != LX_QUEUE_BATCH)
        cls = LX_QUEUE_INTERACTIVE;
    lx_codel_arrived(&q->codel);
    size_t len = lx_queue_len(q);
    if (len >= q->capacity) {
        lx_queue_node_t *v = NULL;
        if (cls == LX_QUEUE_INTERACTIVE && evicted)
            v = evict_newest_batch(q);
        if (v == NULL) {
            q->stats.rejected[cls]++;
            return false;
        }
        *evicted = v;
    }
    if (len == 0)
        q->mark_ms = now_ms; /* a busy period starts: the drain is measured from here */
    n->cls = cls;
    n->owner = q;
    n->enqueued_ms = now_ms;
    n->deadline_ms = q->timeout_ms > UINT64_MAX - now_ms ? UINT64_MAX : now_ms + q->timeout_ms;
    lx_list_insert_tail(&q->fifo[cls], &n->link);
    insert_by_deadline(q, n);
    q->stats.len[cls]++;
    q->stats.enqueued[cls]++;
    return true;
}

/* The class the next pop serves (-1: empty), without counting: <streak> counts the
 * interactive pops since a batch request was last served or the batch class was empty; at
 * batch_every - 1 of them, batch goes. */
static int next_class(const lx_queue_t *q)
{
    bool inter = q->stats.len[LX_QUEUE_INTERACTIVE] > 0;
    if (q->stats.len[LX_QUEUE_BATCH] == 0)
        return inter ? LX_QUEUE_INTERACTIVE : -1; /* streak is 0 */
    if (!inter || q->streak + 1 >= q->batch_every)
        return LX_QUEUE_BATCH;
    return LX_QUEUE_INTERACTIVE;
}

/* One gap between pops of a busy period into the EWMA (the first gap seeds it). */
static void drain_sample(lx_queue_t *q, uint64_t now_ms)
{
    uint64_t d = now_ms > q->mark_ms ? now_ms - q->mark_ms : 0;
    int64_t s = (int64_t)((d < MAX_STEP_MS ? d : MAX_STEP_MS) * 1000);
    if (q->gap_us < 0)
        q->gap_us = s;
    else
        q->gap_us += (s - q->gap_us) / (1 << GAP_SHIFT);
    q->mark_ms = now_ms;
}

/* <n> served: off the queue, the batch share's count (before the unlink, which restarts it
 * when batch empties), the wait, the drain rate. */
static void serve(lx_queue_t *q, lx_queue_node_t *n, uint64_t now_ms)
{
    if (n->cls == LX_QUEUE_BATCH)
        q->streak = 0;
    else if (q->stats.len[LX_QUEUE_BATCH] > 0)
        q->streak++; /* batch waits and was passed over */
    uint64_t wait = wait_of(n, now_ms);
    lx_codel_left(&q->codel, wait, true, now_ms); /* (before the unlink: it may empty the queue) */
    unlink_node(q, n);
    q->stats.served[n->cls]++;
    if (wait > q->stats.max_wait_ms)
        q->stats.max_wait_ms = wait;
    q->stats.wait_ms_total += wait;
    drain_sample(q, now_ms);
}

lx_queue_node_t *lx_queue_pop(lx_queue_t *q, uint64_t now_ms)
{
    int c = next_class(q);
    if (c < 0)
        return NULL;
    lx_queue_node_t *n = of_link(q->fifo[c].next);
    serve(q, n, now_ms);
    return n;
}

/* The oldest node of class <c> that fits, or NULL. */
static lx_queue_node_t *first_fit(lx_queue_t *q, int c,
                                  bool (*fit)(void *arg, const lx_queue_node_t *n), void *arg)
{
    for (lx_list_t *l = q->fifo[c].next; l != &q->fifo[c]; l = l->next)
        if (fit(arg, of_link(l)))
            return of_link(l);
    return NULL;
}

lx_queue_node_t *lx_queue_peek_fit(lx_queue_t *q, bool (*fit)(void *arg, const lx_queue_node_t *n),
                                   void *arg)
{
    int c = next_class(q);
    if (c < 0)
        return NULL;
    lx_queue_node_t *n = first_fit(q, c, fit, arg);
    if (n == NULL)
        n = first_fit(q, c == LX_QUEUE_BATCH ? LX_QUEUE_INTERACTIVE : LX_QUEUE_BATCH, fit, arg);
    return n;
}

lx_queue_node_t *lx_queue_pop_fit(lx_queue_t *q, uint64_t now_ms,
                                  bool (*fit)(void *arg, const lx_queue_node_t *n), void *arg)
{
    lx_queue_node_t *n = lx_queue_peek_fit(q, fit, arg);
    if (n != NULL)
        serve(q, n, now_ms);
    return n;
}

bool lx_queue_remove(lx_queue_t *q, lx_queue_node_t *n)
{
    if (q == NULL || n == NULL || n->owner != q)
        return false;
    unlink_node(q, n);
    q->stats.cancelled[n->cls]++;
    return true;
}

size_t lx_queue_expire(lx_queue_t *q, uint64_t now_ms, void (*cb)(void *arg, lx_queue_node_t *n),
                       void *arg)
{
    size_t budget = lx_queue_len(q), taken = 0;
    while (taken < budget && !lx_list_is_empty(&q->by_deadline)) {
        lx_queue_node_t *n = of_deadline(q->by_deadline.next);
        if (n->deadline_ms > now_ms)
            break;
        lx_codel_left(&q->codel, wait_of(n, now_ms), false, now_ms);
        unlink_node(q, n);
        q->stats.expired[n->cls]++;
        taken++;
        if (cb)
            cb(arg, n);
    }
    return taken;
}

uint64_t lx_queue_next_deadline(const lx_queue_t *q)
{
    if (lx_list_is_empty(&q->by_deadline))
        return UINT64_MAX;
    return of_deadline(q->by_deadline.next)->deadline_ms;
}

double lx_queue_drain_rate(const lx_queue_t *q)
{
    if (q->gap_us < 0)
        return -1.0;
    return (double)US_PER_S / (double)(q->gap_us > 0 ? q->gap_us : 1);
}

static unsigned clamp_seconds(uint64_t s)
{
    if (s < LX_QUEUE_RETRY_AFTER_MIN)
        return LX_QUEUE_RETRY_AFTER_MIN;
    if (s > LX_QUEUE_RETRY_AFTER_MAX)
        return LX_QUEUE_RETRY_AFTER_MAX;
    return (unsigned)s;
}

/* The gap between pops now, in µs: the EWMA, or the gap running now when longer (a stall). */
static uint64_t gap_now_us(const lx_queue_t *q, uint64_t now_ms)
{
    uint64_t gap = (uint64_t)q->gap_us;
    if (lx_queue_len(q) > 0 && now_ms > q->mark_ms) {
        uint64_t d = now_ms - q->mark_ms;
        uint64_t since = (d < MAX_STEP_MS ? d : MAX_STEP_MS) * 1000;
        if (since > gap)
            gap = since;
    }
    return gap;
}

bool lx_queue_admits(const lx_queue_t *q, uint64_t now_ms)
{
    if (!lx_queue_standing(q) || q->gap_us < 0)
        return true;
    return lx_queue_admits_behind(q, lx_queue_len(q), gap_now_us(q, now_ms));
}

bool lx_queue_admits_behind(const lx_queue_t *q, size_t ahead, uint64_t slot_us)
{
    if (!lx_queue_standing(q))
        return true;
    uint64_t n = (uint64_t)ahead + 1;
    return slot_us < q->codel.target_ms * 1000 / n; /* (no product: no overflow) */
}

unsigned lx_queue_retry_after(const lx_queue_t *q, uint64_t now_ms)
{
    const uint64_t cap_us = LX_QUEUE_RETRY_AFTER_MAX * US_PER_S;
    if (q->gap_us < 0) {
        if (q->timeout_ms >= LX_QUEUE_RETRY_AFTER_MAX * 1000ull)
            return LX_QUEUE_RETRY_AFTER_MAX;
        return clamp_seconds((q->timeout_ms + 999) / 1000);
    }
    uint64_t gap = gap_now_us(q, now_ms);
    size_t len = lx_queue_len(q);
    if (gap >= cap_us)
        return LX_QUEUE_RETRY_AFTER_MAX;
    uint64_t ahead = len < cap_us ? (uint64_t)len + 1 : cap_us; /* product < 2^62 */
    return clamp_seconds((ahead * gap + US_PER_S - 1) / US_PER_S);
}
