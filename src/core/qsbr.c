/*
 * qsbr.c - quiescent-state based reclamation (qsbr.h): the domain's epoch and its readers'
 * quiescent points. The readers' side is inline in qsbr.h; this file has the writers' side.
 */
#include "core/qsbr.h"

#include <stdlib.h>
#include <string.h>

lx_qsbr_t *lx_qsbr_new(unsigned n_readers)
{
    lx_qsbr_t *q = aligned_alloc(alignof(lx_qsbr_t), sizeof(lx_qsbr_t));
    if (q == NULL)
        return NULL;
    size_t n = n_readers > 0 ? n_readers : 1;
    q->readers = aligned_alloc(alignof(lx_qsbr_reader_t), n * sizeof(lx_qsbr_reader_t));
    if (q->readers == NULL) {
        free(q);
        return NULL;
    }
    memset(q->readers, 0, n * sizeof(lx_qsbr_reader_t));
    for (unsigned r = 0; r < n_readers; r++)
        atomic_init(&q->readers[r].seen, 0);
    atomic_init(&q->epoch, 1);
    q->n_readers = n_readers;
    return q;
}

void lx_qsbr_free(lx_qsbr_t *q)
{
    if (q == NULL)
        return;
    free(q->readers);
    free(q);
}

void lx_qsbr_offline(lx_qsbr_t *q, unsigned r)
{
    if (r < q->n_readers)
        atomic_store_explicit(&q->readers[r].seen, LX_QSBR_OFFLINE, memory_order_release);
}

uint64_t lx_qsbr_retire(lx_qsbr_t *q)
{
    /* release: a reader that loads the new epoch sees the swap made before this call */
    return atomic_fetch_add_explicit(&q->epoch, 1, memory_order_acq_rel) + 1;
}

bool lx_qsbr_passed(const lx_qsbr_t *q, uint64_t target)
{
    if (target == 0)
        return true;
    for (unsigned r = 0; r < q->n_readers; r++) {
        /* acquire: the reader's uses before its quiescent point come before our reuse */
        uint64_t seen = atomic_load_explicit(&q->readers[r].seen, memory_order_acquire);
        if (seen < target)
            return false;
    }
    return true;
}
