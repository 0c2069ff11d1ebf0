/*
 * ledger.h - one key's live counters, shared by every worker: what it spent per period, what
 * its requests in flight hold, its rate-limit state. Budgets are exact under concurrency and
 * no request takes a lock: every decision is one compare-and-swap on one atomic word.
 *
 *   budget:      avail = limit - usage(limit period) - reserved, one int64 of µ$. Admission
 *                takes the reservation out with a CAS that fails when it does not fit; settling
 *                gives back (reserved - actual). The period rolls at the first admission or
 *                settlement past its end: the winner of a CAS on the period end moves it on;
 *                the period's usage is one word tagged with the period's epoch, and the one
 *                thread whose CAS replaces a word of a finished period (the roll's winner or
 *                any settlement that gets there first) moves that usage back into avail.
 *   requests/min, tokens/min: GCRA (one theoretical-arrival time per limit, µs): capacity =
 *                the limit, refilled evenly over 60 s; tokens are taken at admission from the
 *                estimate and corrected at settlement (the TAT may run ahead: later requests
 *                wait).
 *   concurrency: a count of requests in flight, CAS-bounded.
 * A refusal in a later check gives back what the earlier ones took, so a refused request
 * leaves no trace. The limits themselves are set by the store thread when it publishes a key
 * (lx_ledger_set_limits); a change applies its difference to avail.
 *
 * Lifetime: refcounted (atomic). The store's key table holds one reference, a published key
 * snapshot one per key, and each admitted request one until it settles, so deleting a key
 * ends nothing in flight.
 */
#ifndef LX_LEDGER_H
#define LX_LEDGER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/period.h"

/* The limits of a key, as its record says (0 / has_limit false: none). */
typedef struct lx_ledger_limits {
    bool has_limit;
    int64_t limit;           /* µ$ */
    lx_period_t limit_reset; /* TOTAL: the limit never resets */
    uint32_t rpm, tpm, concurrency;
} lx_ledger_limits_t;

typedef struct lx_ledger lx_ledger_t; /* opaque: ledger.c */

/* Rate-limit figures for the x-ratelimit-* headers (OpenAI's names): limit 0 = no such limit,
 * no header. reset_ms: until the bucket is full again. */
typedef struct lx_ratelimit_view {
    uint32_t limit_requests, remaining_requests;
    int64_t reset_requests_ms;
    uint32_t limit_tokens, remaining_tokens;
    int64_t reset_tokens_ms;
} lx_ratelimit_view_t;

enum lx_admit_verdict {
    LX_ADMIT_OK = 0,
    LX_ADMIT_BUDGET,      /* the reservation does not fit in what is left of the limit */
    LX_ADMIT_RPM,         /* requests per minute */
    LX_ADMIT_TPM,         /* tokens per minute */
    LX_ADMIT_CONCURRENCY, /* requests in flight */
};

/* One admission: in, then out. */
typedef struct lx_admit {
    /* in */
    int64_t now_us;
    int64_t reserve; /* µ$: the request's worst-case cost */
    uint32_t tokens; /* its estimated tokens (prompt estimate + max tokens when named) */
    /* out */
    enum lx_admit_verdict verdict;
    int64_t retry_after_ms;  /* refusals: when trying again can succeed; -1: not by waiting
                              * (a reservation larger than the whole limit, a budget that
                              * never resets, more tokens than the tpm limit) */
    int64_t limit_remaining; /* µ$ left after this reservation (refused: before); -1 no limit */
    lx_ratelimit_view_t rl;  /* after this admission (refused: as it stands) */
} lx_admit_t;

/* What an admitted request holds until it settles (caller-owned storage). */
typedef struct lx_hold {
    lx_ledger_t *ledger; /* a reference; NULL: nothing held */
    int64_t reserved;    /* µ$ */
    uint32_t tokens;     /* tokens taken from the TPM bucket */
} lx_hold_t;

/* A ledger for a key with <limits>, counting <usage>[p] µ$ already spent in the periods that
 * start at <period_start>[p] (from the store; periods that ended count as 0). refs 1. NULL
 * when out of memory. */
lx_ledger_t *lx_ledger_new(const lx_ledger_limits_t *limits, const int64_t usage[LX_PERIOD_COUNT],
                           const int64_t period_start[LX_PERIOD_COUNT]);
lx_ledger_t *lx_ledger_ref(lx_ledger_t *l);
void lx_ledger_unref(lx_ledger_t *l); /* NULL is a no-op */

/* New limits (store thread, when a key changes); in-flight holds stay valid. */
void lx_ledger_set_limits(lx_ledger_t *l, const lx_ledger_limits_t *limits);

/* Checks and takes: budget, then requests, then tokens, then concurrency. On LX_ADMIT_OK
 * *hold has a ledger reference and what was taken; otherwise nothing is taken and *hold is
 * empty. */
void lx_ledger_admit(lx_ledger_t *l, lx_admit_t *a, lx_hold_t *hold);

/* Ends a hold: the reservation becomes <cost> µ$ spent (0 for a request that failed), the
 * token estimate becomes <tokens>, the request leaves the concurrency count; drops the
 * reference. Empty holds are a no-op; a hold settles once (it is emptied). */
void lx_ledger_settle(lx_hold_t *hold, int64_t cost, uint32_t tokens, int64_t now_us);

/* Counts <cost> spent without a hold (a key without limits still reports usage). */
void lx_ledger_charge(lx_ledger_t *l, int64_t cost, int64_t now_us);

/* The usage of each period as of <now_us> (periods that ended read 0), µ$. */
void lx_ledger_usage(lx_ledger_t *l, int64_t now_us, int64_t usage[LX_PERIOD_COUNT]);

/* What is left of the limit (µ$, may be negative after an overrun of a request without a
 * hold), or -1 without a limit; reserved holds are subtracted. */
int64_t lx_ledger_remaining(lx_ledger_t *l, int64_t now_us);

/* Rate-limit figures as they stand (no admission). */
void lx_ledger_view(lx_ledger_t *l, int64_t now_us, lx_ratelimit_view_t *out);

/* Tests only: <hook> (NULL: none, the default) is called by every thread whose CAS has just
 * moved a period's end (<budget>: the budget's period, of <kind>; else the reported period
 * <kind>) on any ledger, before that thread touches the period's usage, and by a change of
 * limit_reset to <kind> (budget true) once settlements are turned aside, before it reads the
 * new period's usage, so that a test can run a racing settlement, or yield, exactly there.
 * Set it while no ledger is in use. */
typedef void (*lx_ledger_roll_hook_t)(lx_ledger_t *l, lx_period_t kind, bool budget);
void lx_ledger_set_roll_hook(lx_ledger_roll_hook_t hook);

/* Tests only: <hook> (NULL: none, the default) is called by every settlement and charge
 * between adding its cost to the budget's period and adding it to the reported periods, so
 * that a test can hold it there (a change of limit_reset then waits for it). Set it while no
 * ledger is in use. */
typedef void (*lx_ledger_settle_hook_t)(lx_ledger_t *l);
void lx_ledger_set_settle_hook(lx_ledger_settle_hook_t hook);

#endif
