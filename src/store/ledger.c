/*
 * ledger.c - one key's live counters (ledger.h): a budget, usage per period, two GCRA rate
 * limits and a concurrency count, all in atomic words, no lock anywhere.
 *
 * Memory orders. Most decisions (admit, give back, settle's avail, the rate limits) are a
 * read-modify-write of one atomic word, and C11 gives every atomic object a single
 * modification order that all RMWs respect whatever their memory order: a CAS chain on `avail`
 * is linearizable with memory_order_relaxed, and no ordinary memory is published through these
 * words (the ledger itself reaches the workers inside a key snapshot, published with
 * release/acquire by its owner). The one decision that spans two words is a period's roll:
 * a usage word (`bused`, `usage[p]`) is tagged with the epoch of its period, and a thread
 * that finds it tagged with an epoch other than the one its period word (`bper`, `uend[p]`)
 * gives replaces it. That is only right if the usage word's epoch can never be newer than the
 * period word the thread reads after it: so usage words are loaded with acquire (before the
 * period word) and changed by acq_rel CASes, period words are loaded with acquire and
 * changed by acq_rel CASes. Whoever wrote an epoch into a usage word had read the period word
 * saying so before (sequenced before its release); a thread that acquires that usage word then
 * reads the period word at that value or a later one (read-read coherence). The reference count
 * uses acq_rel on its decrement; the limits are relaxed (a worker may act on the previous
 * limits for a moment after a change).
 */
#include "store/ledger.h"

#include <sched.h>
#include <stdlib.h>

#include "store/money.h"

#define RLX                  memory_order_relaxed
#define ACQ                  memory_order_acquire
#define ACQ_REL              memory_order_acq_rel
#define MINUTE_NS            INT64_C(60000000000)
#define END_CAP              (INT64_MAX / 16) /* period ends kept small enough to shift left by 2 */
#define CONCURRENCY_RETRY_MS 1000
#define AMOUNT_BITS          50 /* a tagged word: epoch << 50 | µ$ (LX_MONEY_MAX < 2^50) */
#define AMOUNT_MAX           ((INT64_C(1) << AMOUNT_BITS) - 1)
#define EPOCH_MASK           ((UINT64_C(1) << (64 - AMOUNT_BITS)) - 1)

struct lx_ledger {
    atomic_uint refs;
    /* limits (store thread writes, workers read) */
    _Atomic(int64_t) limit; /* µ$; -1: none */
    _Atomic(uint32_t) rpm, tpm, concurrency;
    /* budget: avail = limit (0 without one) - bused - reserved holds */
    _Atomic(int64_t) avail;
    _Atomic(uint64_t) bper;  /* the budget period: (end << 2) | kind; kind TOTAL never ends */
    _Atomic(uint64_t) bused; /* tagged: µ$ settled in the budget period of that epoch */
    /* reporting: µ$ ever spent, and for day, week, month the tagged usage of the period
     * ending at uend[p] (index TOTAL unused) */
    _Atomic(int64_t) total;
    _Atomic(uint64_t) usage[LX_PERIOD_COUNT];
    _Atomic(int64_t) uend[LX_PERIOD_COUNT];
    /* GCRA theoretical arrival times, ns since the epoch */
    _Atomic(int64_t) tat_req, tat_tok;
    _Atomic(uint32_t) inflight;
    /* a change of limit_reset (budget_rebase) against the settlements: each settlement or
     * charge counts itself in sin[its phase] while it adds its cost (spend); the rebase flips
     * the phase and waits for the other count to drain, so it knows when every adder that
     * started before has finished. While `rebasing`, adders leave the budget and usage words
     * alone and add to `side` (at `side_s`, the latest second), which the rebase counts after. */
    _Atomic(uint32_t) sphase;
    _Atomic(uint32_t) sin[2];
    _Atomic(bool) rebasing;
    _Atomic(int64_t) side;
    _Atomic(int64_t) side_s;
};

static _Atomic(lx_ledger_roll_hook_t) roll_hook;
static _Atomic(lx_ledger_settle_hook_t) settle_hook;

void lx_ledger_set_roll_hook(lx_ledger_roll_hook_t hook)
{
    atomic_store(&roll_hook, hook);
}

void lx_ledger_set_settle_hook(lx_ledger_settle_hook_t hook)
{
    atomic_store(&settle_hook, hook);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t seconds_of(int64_t now_us)
{
    return floor_div(now_us, 1000000);
}

static int64_t ns_of(int64_t now_us)
{
    if (now_us > INT64_MAX / 1000)
        return INT64_MAX / 1000 * 1000;
    if (now_us < INT64_MIN / 1000)
        return INT64_MIN / 1000 * 1000;
    return now_us * 1000;
}

static int64_t ceil_ms_of_ns(int64_t ns)
{
    return ns <= 0 ? 0 : (ns - 1) / 1000000 + 1;
}

static int64_t clamp_money(int64_t v)
{
    return v < 0 ? 0 : v > LX_MONEY_MAX ? LX_MONEY_MAX : v;
}

static int64_t limit_eff(int64_t limit)
{
    return limit < 0 ? 0 : limit;
}

static uint64_t bper_make(lx_period_t kind, int64_t end)
{
    if (kind == LX_PERIOD_TOTAL)
        return LX_PERIOD_TOTAL;
    end = end > END_CAP ? END_CAP : end < -END_CAP ? -END_CAP : end;
    return ((uint64_t)end << 2) | (uint64_t)kind;
}

static lx_period_t bper_kind(uint64_t w)
{
    return (lx_period_t)(w & 3);
}

static int64_t bper_end(uint64_t w)
{
    return bper_kind(w) == LX_PERIOD_TOTAL ? INT64_MAX : (int64_t)(w & ~(uint64_t)3) / 4;
}

static lx_period_t valid_kind(lx_period_t p)
{
    return (unsigned)p < LX_PERIOD_COUNT ? p : LX_PERIOD_TOTAL;
}

/* ---- tagged usage words: (epoch of the period, µ$ in it) in one 64-bit word ---- */

/* The epoch of the period of <kind> that ends at <end_s>: its day number (12 bits) and kind.
 * Only compared for equality: two periods of one kind share one 4,096 days (11 years) apart,
 * and a usage word is brought to the current epoch at every admission, settlement or query
 * that finds it older, so no word waits that long unless the key is idle all that time. */
static uint64_t epoch_of(lx_period_t kind, int64_t end_s)
{
    return ((uint64_t)floor_div(end_s, 86400) << 2 | (uint64_t)kind) & EPOCH_MASK;
}

static uint64_t tag_epoch(uint64_t w)
{
    return w >> AMOUNT_BITS;
}

static int64_t tag_amount(uint64_t w)
{
    return (int64_t)(w & (uint64_t)AMOUNT_MAX);
}

static uint64_t tag_make(uint64_t epoch, int64_t amount)
{
    return epoch << AMOUNT_BITS | (uint64_t)(amount > AMOUNT_MAX ? AMOUNT_MAX : amount);
}

/* One CAS adding <cost> to the usage word <word>, loaded as *cur, in the period of <epoch>
 * (the current one): a word of another epoch holds a finished period and is replaced by
 * <cost> alone. On success *finished is what the replaced word held (else 0); on failure
 * *cur is reloaded. Sums saturate at 2^50 - 1 µ$ (over $1.1e9 in one period). */
static bool tag_add(_Atomic(uint64_t) *word, uint64_t *cur, uint64_t epoch, int64_t cost,
                    int64_t *finished)
{
    bool same = tag_epoch(*cur) == epoch;
    uint64_t next = tag_make(epoch, (same ? tag_amount(*cur) : 0) + cost);
    if (!atomic_compare_exchange_weak_explicit(word, cur, next, ACQ_REL, ACQ))
        return false;
    *finished = same ? 0 : tag_amount(*cur);
    return true;
}

static void call_roll_hook(lx_ledger_t *l, lx_period_t kind, bool budget)
{
    lx_ledger_roll_hook_t hook = atomic_load_explicit(&roll_hook, RLX);
    if (hook != NULL)
        hook(l, kind, budget);
}

/* ---- periods ---- */

/* The budget period as of <now_s>: moved to the period containing <now_s> if it ended (a
 * clock that went back moves nothing). Usage is not touched here: see budget_add. */
static uint64_t budget_period(lx_ledger_t *l, int64_t now_s)
{
    uint64_t w = atomic_load_explicit(&l->bper, ACQ);
    while (now_s >= bper_end(w)) {
        lx_period_t k = bper_kind(w);
        uint64_t next = bper_make(k, lx_period_next(k, now_s));
        if (atomic_compare_exchange_weak_explicit(&l->bper, &w, next, ACQ_REL, ACQ)) {
            call_roll_hook(l, k, true);
            return next;
        }
    }
    return w;
}

/*
 * Adds <cost> (0: only brings the period up to date) to the budget period current at <now_s>.
 * If the usage word still holds a finished period, the thread whose CAS replaces it (the
 * roll's winner, or any adder or admission that gets there first) gives that usage back to
 * avail: exactly one thread, since the CAS compares the whole tagged word. So a settlement
 * racing the roll counts in the new period whatever the order. The usage word is loaded
 * before the period word (see the memory-order note at the top).
 */
static void budget_add(lx_ledger_t *l, int64_t cost, int64_t now_s)
{
    uint64_t w = atomic_load_explicit(&l->bused, ACQ);
    for (;;) {
        uint64_t per = budget_period(l, now_s);
        uint64_t epoch = epoch_of(bper_kind(per), bper_end(per));
        int64_t finished;
        if (cost == 0 && tag_epoch(w) == epoch)
            return;
        if (tag_add(&l->bused, &w, epoch, cost, &finished)) {
            if (finished != 0)
                atomic_fetch_add_explicit(&l->avail, finished, RLX);
            return;
        }
    }
}

/* The end of the reported period <p> (DAY..MONTH) as of <now_s>, moved on if it ended. */
static int64_t usage_end(lx_ledger_t *l, lx_period_t p, int64_t now_s)
{
    int64_t end = atomic_load_explicit(&l->uend[p], ACQ);
    while (now_s >= end) {
        int64_t next = lx_period_next(p, now_s);
        if (atomic_compare_exchange_weak_explicit(&l->uend[p], &end, next, ACQ_REL, ACQ)) {
            call_roll_hook(l, p, false);
            return next;
        }
    }
    return end;
}

/* Adds <cost> to the reported usage of <p>'s period at <now_s>; a word of a finished period
 * starts again from <cost> (the first adder of a period resets it, in the same CAS). */
static void usage_add(lx_ledger_t *l, lx_period_t p, int64_t cost, int64_t now_s)
{
    uint64_t w = atomic_load_explicit(&l->usage[p], ACQ);
    int64_t finished;
    while (!tag_add(&l->usage[p], &w, epoch_of(p, usage_end(l, p, now_s)), cost, &finished))
        ;
}

/* The reported usage of <p>'s period at <now_s>: 0 if the word holds a finished period. */
static int64_t usage_read(lx_ledger_t *l, lx_period_t p, int64_t now_s)
{
    uint64_t w = atomic_load_explicit(&l->usage[p], ACQ);
    return tag_epoch(w) == epoch_of(p, usage_end(l, p, now_s)) ? tag_amount(w) : 0;
}

/* Counts <cost> spent at <now_s> in the budget's and the reported periods; avail is the
 * caller's. */
static void count_spent(lx_ledger_t *l, int64_t cost, int64_t now_s)
{
    budget_add(l, cost, now_s);
    lx_ledger_settle_hook_t hook = atomic_load_explicit(&settle_hook, RLX);
    if (hook != NULL)
        hook(l);
    atomic_fetch_add_explicit(&l->total, cost, RLX);
    for (int p = LX_PERIOD_DAY; p < LX_PERIOD_COUNT; p++)
        usage_add(l, (lx_period_t)p, cost, now_s);
}

/*
 * A settlement's or a charge's count_spent, against a change of limit_reset: the adder counts
 * itself in the current phase (seq_cst: a rebase that flips the phase after this either
 * waits for it or is seen by its load of `rebasing`), then adds its cost as usual or, while a
 * rebase runs, to `side`. Two more RMWs a settlement, on words no other step writes often.
 */
static void spend(lx_ledger_t *l, int64_t cost, int64_t now_s)
{
    uint32_t ph;
    for (;;) {
        ph = atomic_load(&l->sphase);
        atomic_fetch_add(&l->sin[ph], 1);
        if (atomic_load(&l->sphase) == ph)
            break;
        atomic_fetch_sub_explicit(&l->sin[ph], 1, memory_order_release);
    }
    if (atomic_load(&l->rebasing)) {
        atomic_fetch_add_explicit(&l->side, cost, RLX);
        int64_t at = atomic_load_explicit(&l->side_s, RLX);
        while (at < now_s &&
               !atomic_compare_exchange_weak_explicit(&l->side_s, &at, now_s, RLX, RLX))
            ;
    } else {
        count_spent(l, cost, now_s);
    }
    atomic_fetch_sub_explicit(&l->sin[ph], 1, memory_order_release);
}

/* Returns when every adder (spend) that began before the call has finished: the store
 * thread's wait (never a worker's), as long as a settlement's few atomic steps. */
static void spend_drain(lx_ledger_t *l)
{
    uint32_t ph = atomic_load(&l->sphase);
    atomic_store(&l->sphase, ph ^ 1);
    while (atomic_load(&l->sin[ph]) != 0)
        sched_yield();
}

lx_ledger_t *lx_ledger_new(const lx_ledger_limits_t *limits, const int64_t usage[LX_PERIOD_COUNT],
                           const int64_t period_start[LX_PERIOD_COUNT])
{
    lx_ledger_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    int64_t used[LX_PERIOD_COUNT];
    for (int p = 0; p < LX_PERIOD_COUNT; p++) {
        used[p] = usage != NULL ? clamp_money(usage[p]) : 0;
        int64_t end = lx_period_next((lx_period_t)p, period_start != NULL ? period_start[p] : 0);
        atomic_init(&l->uend[p], end);
        atomic_init(&l->usage[p], tag_make(epoch_of((lx_period_t)p, end), used[p]));
    }
    atomic_init(&l->total, used[LX_PERIOD_TOTAL]);
    lx_period_t kind = valid_kind(limits->limit_reset);
    int64_t limit = limits->has_limit ? clamp_money(limits->limit) : -1;
    uint64_t per = bper_make(kind, atomic_load_explicit(&l->uend[kind], RLX));
    atomic_init(&l->limit, limit);
    atomic_init(&l->bper, per);
    atomic_init(&l->bused, tag_make(epoch_of(kind, bper_end(per)), used[kind]));
    atomic_init(&l->avail, limit_eff(limit) - used[kind]);
    atomic_init(&l->rpm, limits->rpm);
    atomic_init(&l->tpm, limits->tpm);
    atomic_init(&l->concurrency, limits->concurrency);
    atomic_init(&l->tat_req, INT64_MIN / 2);
    atomic_init(&l->tat_tok, INT64_MIN / 2);
    atomic_init(&l->inflight, 0);
    atomic_init(&l->sphase, 0);
    atomic_init(&l->sin[0], 0);
    atomic_init(&l->sin[1], 0);
    atomic_init(&l->rebasing, false);
    atomic_init(&l->side, 0);
    atomic_init(&l->side_s, INT64_MIN);
    return l;
}

lx_ledger_t *lx_ledger_ref(lx_ledger_t *l)
{
    if (l != NULL)
        atomic_fetch_add_explicit(&l->refs, 1, RLX);
    return l;
}

void lx_ledger_unref(lx_ledger_t *l)
{
    if (l != NULL && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

/*
 * A new limit_reset: the budget now counts <kind>'s current period, with the usage the
 * reporting counter holds for it. Settlements and charges are first turned aside (`rebasing`:
 * they add to `side`) and those already adding are waited for (spend_drain), so the budget
 * and usage words hold still while the rebase reads the new period's usage and moves the
 * budget to it: the period word moves, the old period's usage word is given back to avail by
 * whoever replaces it (budget_add; admissions still may), then the new period's usage is
 * taken from avail and added to its word (given back if that period ended meanwhile). Then
 * the adders go back to the words, and what went aside is counted like a late settlement.
 * The store thread is the only caller. Every settlement counts once in the new period.
 */
static void budget_rebase(lx_ledger_t *l, uint64_t cur, lx_period_t kind)
{
    atomic_store(&l->rebasing, true);
    spend_drain(l);
    call_roll_hook(l, kind, true); /* (tests: a settlement lands here, turned aside) */
    int64_t used = atomic_load_explicit(&l->total, RLX), end = INT64_MAX;
    if (kind != LX_PERIOD_TOTAL) {
        uint64_t uw = atomic_load_explicit(&l->usage[kind], ACQ);
        end = atomic_load_explicit(&l->uend[kind], ACQ);
        used = tag_epoch(uw) == epoch_of(kind, end) ? tag_amount(uw) : 0;
    }
    uint64_t next = bper_make(kind, end), epoch = epoch_of(kind, bper_end(next));
    while (!atomic_compare_exchange_weak_explicit(&l->bper, &cur, next, ACQ_REL, ACQ))
        ;
    budget_add(l, 0, INT64_MIN); /* the old period's usage back to avail */
    atomic_fetch_sub_explicit(&l->avail, used, RLX);
    uint64_t w = atomic_load_explicit(&l->bused, ACQ);
    do {
        if (tag_epoch(w) != epoch) {
            atomic_fetch_add_explicit(&l->avail, used, RLX); /* that period is over */
            break;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &l->bused, &w, tag_make(epoch, tag_amount(w) + used), ACQ_REL, ACQ));
    atomic_store(&l->rebasing, false);
    spend_drain(l); /* (the adders that went aside have added to side) */
    int64_t aside = atomic_exchange_explicit(&l->side, 0, RLX);
    if (aside != 0)
        count_spent(l, aside, atomic_load_explicit(&l->side_s, RLX));
}

void lx_ledger_set_limits(lx_ledger_t *l, const lx_ledger_limits_t *limits)
{
    int64_t limit = limits->has_limit ? clamp_money(limits->limit) : -1;
    int64_t old = atomic_exchange_explicit(&l->limit, limit, RLX);
    atomic_fetch_add_explicit(&l->avail, limit_eff(limit) - limit_eff(old), RLX);
    lx_period_t kind = valid_kind(limits->limit_reset);
    uint64_t w = atomic_load_explicit(&l->bper, ACQ);
    if (bper_kind(w) != kind)
        budget_rebase(l, w, kind);
    atomic_store_explicit(&l->rpm, limits->rpm, RLX);
    atomic_store_explicit(&l->tpm, limits->tpm, RLX);
    atomic_store_explicit(&l->concurrency, limits->concurrency, RLX);
}

/* ---- GCRA: capacity <limit> units, refilled evenly over a minute ---- */

/* The emission interval (ns per unit) and the window (limit intervals, at most a minute). */
static int64_t gcra_interval(uint32_t limit)
{
    return MINUTE_NS / limit;
}

/* The theoretical arrival time as of <now_ns>: never more than a window ahead. Only a clock
 * that went back leaves it further (the TAT is never set past now + window): such a jump
 * then costs at most one window of refusals, not the length of the jump. */
static int64_t gcra_load(_Atomic(int64_t) *tat, int64_t window, int64_t now_ns)
{
    int64_t cur = atomic_load_explicit(tat, RLX);
    if (cur - now_ns > window) {
        int64_t capped = now_ns + window;
        atomic_compare_exchange_strong_explicit(tat, &cur, capped, RLX, RLX);
        return atomic_load_explicit(tat, RLX);
    }
    return cur;
}

/* Takes <n> units at <now_ns>, or says in *retry_ms when they fit (-1: never). */
static bool gcra_take(_Atomic(int64_t) *tat, uint32_t limit, uint32_t n, int64_t now_ns,
                      int64_t *retry_ms)
{
    if (n > limit) {
        *retry_ms = -1;
        return false;
    }
    int64_t t = gcra_interval(limit), window = t * limit, need = t * n;
    int64_t cur = gcra_load(tat, window, now_ns);
    for (;;) {
        int64_t next = (cur > now_ns ? cur : now_ns) + need;
        if (next - now_ns > window) {
            *retry_ms = ceil_ms_of_ns(next - window - now_ns);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(tat, &cur, next, RLX, RLX))
            return true;
    }
}

static void gcra_give(_Atomic(int64_t) *tat, uint32_t limit, uint32_t n)
{
    atomic_fetch_sub_explicit(tat, gcra_interval(limit) * n, RLX);
}

/* Moves the TAT by <diff> units (a settlement's correction), never past a full minute ahead. */
static void gcra_correct(_Atomic(int64_t) *tat, uint32_t limit, int64_t diff, int64_t now_ns)
{
    int64_t t = gcra_interval(limit), window = t * limit;
    diff = diff > limit ? limit : diff < -(int64_t)limit ? -(int64_t)limit : diff;
    int64_t cur = atomic_load_explicit(tat, RLX), next;
    do {
        if (diff > 0) {
            next = (cur > now_ns ? cur : now_ns) + diff * t;
            next = next - now_ns > window ? now_ns + window : next;
        } else {
            if (cur <= now_ns)
                return; /* already full */
            next = cur + diff * t;
        }
    } while (!atomic_compare_exchange_weak_explicit(tat, &cur, next, RLX, RLX));
}

static void gcra_view(_Atomic(int64_t) *tat, uint32_t limit, int64_t now_ns, uint32_t *remaining,
                      int64_t *reset_ms)
{
    *remaining = 0;
    *reset_ms = 0;
    if (limit == 0)
        return;
    int64_t t = gcra_interval(limit), window = t * limit;
    int64_t ahead = gcra_load(tat, window, now_ns) - now_ns;
    ahead = ahead < 0 ? 0 : ahead;
    *remaining = (uint32_t)((window - ahead) / t);
    *reset_ms = ceil_ms_of_ns(ahead);
}

void lx_ledger_view(lx_ledger_t *l, int64_t now_us, lx_ratelimit_view_t *out)
{
    int64_t now_ns = ns_of(now_us);
    out->limit_requests = atomic_load_explicit(&l->rpm, RLX);
    out->limit_tokens = atomic_load_explicit(&l->tpm, RLX);
    gcra_view(&l->tat_req, out->limit_requests, now_ns, &out->remaining_requests,
              &out->reset_requests_ms);
    gcra_view(&l->tat_tok, out->limit_tokens, now_ns, &out->remaining_tokens,
              &out->reset_tokens_ms);
}

/* ---- admission ---- */

/* Milliseconds from <now_us> to the second <end_s>, rounded up (capped at about 30 years). */
static int64_t until_ms(int64_t end_s, int64_t now_us)
{
    int64_t now_s = seconds_of(now_us), ds = end_s - now_s;
    if (ds <= 0)
        return 0;
    if (ds > INT64_C(1000000000))
        ds = INT64_C(1000000000);
    int64_t us = ds * 1000000 - (now_us - now_s * 1000000);
    return (us + 999) / 1000;
}

/* Takes the reservation from avail (with a limit), or says how long until the period ends. */
static bool take_budget(lx_ledger_t *l, lx_admit_t *a, int64_t reserve, int64_t *taken)
{
    int64_t limit = atomic_load_explicit(&l->limit, RLX);
    *taken = 0;
    if (limit < 0) {
        a->limit_remaining = -1;
        return true;
    }
    int64_t cur = atomic_load_explicit(&l->avail, RLX);
    do {
        if (cur < reserve) {
            a->limit_remaining = cur;
            int64_t end = bper_end(atomic_load_explicit(&l->bper, ACQ));
            if (reserve > limit || end == INT64_MAX)
                a->retry_after_ms = -1;
            else
                a->retry_after_ms = until_ms(end, a->now_us);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&l->avail, &cur, cur - reserve, RLX, RLX));
    a->limit_remaining = cur - reserve;
    *taken = reserve;
    return true;
}

static bool take_concurrency(lx_ledger_t *l, uint32_t limit)
{
    if (limit == 0) {
        atomic_fetch_add_explicit(&l->inflight, 1, RLX);
        return true;
    }
    uint32_t cur = atomic_load_explicit(&l->inflight, RLX);
    do {
        if (cur >= limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&l->inflight, &cur, cur + 1, RLX, RLX));
    return true;
}

/* Gives back what a refused admission took. */
static void give_back(lx_ledger_t *l, lx_admit_t *a, int64_t reserved, uint32_t rpm, uint32_t tpm)
{
    if (reserved != 0)
        a->limit_remaining = atomic_fetch_add_explicit(&l->avail, reserved, RLX) + reserved;
    if (rpm != 0)
        gcra_give(&l->tat_req, rpm, 1);
    if (tpm != 0)
        gcra_give(&l->tat_tok, tpm, a->tokens);
}

void lx_ledger_admit(lx_ledger_t *l, lx_admit_t *a, lx_hold_t *hold)
{
    *hold = (lx_hold_t){0};
    a->verdict = LX_ADMIT_OK;
    a->retry_after_ms = 0;
    int64_t now_ns = ns_of(a->now_us), reserved;
    int64_t reserve = clamp_money(a->reserve);
    uint32_t rpm = atomic_load_explicit(&l->rpm, RLX), tpm = atomic_load_explicit(&l->tpm, RLX);
    budget_add(l, 0, seconds_of(a->now_us));
    if (!take_budget(l, a, reserve, &reserved)) {
        a->verdict = LX_ADMIT_BUDGET;
    } else if (rpm != 0 && !gcra_take(&l->tat_req, rpm, 1, now_ns, &a->retry_after_ms)) {
        a->verdict = LX_ADMIT_RPM;
        give_back(l, a, reserved, 0, 0);
    } else if (tpm != 0 && !gcra_take(&l->tat_tok, tpm, a->tokens, now_ns, &a->retry_after_ms)) {
        a->verdict = LX_ADMIT_TPM;
        give_back(l, a, reserved, rpm, 0);
    } else if (!take_concurrency(l, atomic_load_explicit(&l->concurrency, RLX))) {
        a->verdict = LX_ADMIT_CONCURRENCY;
        a->retry_after_ms = CONCURRENCY_RETRY_MS;
        give_back(l, a, reserved, rpm, tpm);
    } else {
        hold->ledger = lx_ledger_ref(l);
        hold->reserved = reserved;
        hold->tokens = tpm != 0 ? a->tokens : 0;
    }
    lx_ledger_view(l, a->now_us, &a->rl);
}

/* ---- settlement and reporting ---- */

void lx_ledger_settle(lx_hold_t *hold, int64_t cost, uint32_t tokens, int64_t now_us)
{
    if (hold == NULL || hold->ledger == NULL)
        return;
    lx_ledger_t *l = hold->ledger;
    cost = clamp_money(cost);
    atomic_fetch_add_explicit(&l->avail, hold->reserved - cost, RLX);
    spend(l, cost, seconds_of(now_us));
    uint32_t tpm = atomic_load_explicit(&l->tpm, RLX);
    if (tpm != 0 && tokens != hold->tokens)
        gcra_correct(&l->tat_tok, tpm, (int64_t)tokens - hold->tokens, ns_of(now_us));
    atomic_fetch_sub_explicit(&l->inflight, 1, RLX);
    *hold = (lx_hold_t){0};
    lx_ledger_unref(l);
}

void lx_ledger_charge(lx_ledger_t *l, int64_t cost, int64_t now_us)
{
    cost = clamp_money(cost);
    atomic_fetch_sub_explicit(&l->avail, cost, RLX);
    spend(l, cost, seconds_of(now_us));
}

void lx_ledger_usage(lx_ledger_t *l, int64_t now_us, int64_t usage[LX_PERIOD_COUNT])
{
    int64_t now_s = seconds_of(now_us);
    usage[LX_PERIOD_TOTAL] = atomic_load_explicit(&l->total, RLX);
    for (int p = LX_PERIOD_DAY; p < LX_PERIOD_COUNT; p++)
        usage[p] = usage_read(l, (lx_period_t)p, now_s);
}

int64_t lx_ledger_remaining(lx_ledger_t *l, int64_t now_us)
{
    budget_add(l, 0, seconds_of(now_us));
    if (atomic_load_explicit(&l->limit, RLX) < 0)
        return -1;
    return atomic_load_explicit(&l->avail, RLX);
}
