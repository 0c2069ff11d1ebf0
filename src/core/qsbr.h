/*
 * qsbr.h - quiescent-state based reclamation: when may a writer reuse (or free) memory it has
 * unpublished, while readers on other threads may still hold pointers into it?
 *
 * Readers are threads that run in turns (a worker's loop): they load a published pointer
 * (acquire), use what it points to within one turn, and keep nothing across turns. Each marks
 * a quiescent point between turns (lx_qsbr_quiescent(): one acquire load of the domain's
 * epoch and one release store into the reader's own cache line: no lock, no read-modify-write,
 * no system call). The writer swaps the published pointer (release), then calls
 * lx_qsbr_retire(), which advances the epoch and returns the retired memory's grace target;
 * the memory may be reused once lx_qsbr_passed(target): every reader has marked a quiescent
 * point after the swap, or is offline.
 *
 * Why it is correct: a reader that stored an epoch >= target had loaded that epoch (acquire)
 * from the writer's increment, which came after the swap, so every pointer it loads afterwards
 * is the new one; every use of the old one came before that store (release), which the
 * writer's acquire load in lx_qsbr_passed() orders before the reuse. A reader that stays
 * blocked keeps the grace period open (the writer defers; nothing is unsafe): the readers
 * must turn regularly (a worker's loop has a 100 ms timer) or go offline.
 *
 * Threads: lx_qsbr_quiescent() and lx_qsbr_offline() for reader <r> on reader r's thread
 * only; lx_qsbr_retire() and lx_qsbr_passed() on any thread (writers); lx_qsbr_new() and
 * lx_qsbr_free() while nobody else uses the domain.
 */
#ifndef LX_QSBR_H
#define LX_QSBR_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define LX_QSBR_OFFLINE UINT64_MAX /* a reader's state: holds nothing and will read no more */

/* One reader's latest quiescent point, alone on its cache line (only its thread writes it). */
typedef struct lx_qsbr_reader {
    alignas(64) _Atomic uint64_t seen; /* the epoch it loaded there; 0: none yet; OFFLINE */
} lx_qsbr_reader_t;

typedef struct lx_qsbr {
    alignas(64) _Atomic uint64_t epoch; /* starts at 1; +1 per lx_qsbr_retire() */
    unsigned n_readers;
    lx_qsbr_reader_t *readers; /* [n_readers] */
} lx_qsbr_t;

/* A domain of <n_readers> readers, numbered 0 .. n_readers - 1, all online and with no
 * quiescent point yet (a retirement waits for each one's first). NULL when out of memory. */
lx_qsbr_t *lx_qsbr_new(unsigned n_readers);

/* NULL is a no-op. */
void lx_qsbr_free(lx_qsbr_t *q);

/* Reader <r> holds no pointer loaded before this call (its thread, between turns). */
static inline void lx_qsbr_quiescent(lx_qsbr_t *q, unsigned r)
{
    uint64_t e = atomic_load_explicit(&q->epoch, memory_order_acquire);
    atomic_store_explicit(&q->readers[r].seen, e, memory_order_release);
}

/* Reader <r> holds nothing and will never read again (its thread ends): it no longer holds
 * grace periods open. Out of range: ignored. */
void lx_qsbr_offline(lx_qsbr_t *q, unsigned r);

/* The writer has just unpublished something (a release store of the pointer readers load):
 * returns its grace target. */
uint64_t lx_qsbr_retire(lx_qsbr_t *q);

/* Whether what was retired with <target> may be reused: every reader has marked a quiescent
 * point since, or is offline. Target 0 (never published) has always passed. */
bool lx_qsbr_passed(const lx_qsbr_t *q, uint64_t target);

#endif
