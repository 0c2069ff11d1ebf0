/*
 * test_qsbr.c - quiescent-state based reclamation (core/qsbr.h): a grace target passes only
 * once every online reader has marked a quiescent point after the retirement (one marked
 * before does not count), offline readers hold nothing back; and under threads, a writer that
 * recycles three buffers by the domain's rule never rewrites one a reader still reads (the
 * readers check every word of what they hold; ThreadSanitizer checks the ordering).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/qsbr.h"

static void test_states(void **st)
{
    (void)st;
    lx_qsbr_t *q = lx_qsbr_new(3);
    assert_non_null(q);
    assert_true(lx_qsbr_passed(q, 0)); /* never published */
    /* quiescent points made before the retirement do not count */
    for (unsigned r = 0; r < 3; r++)
        lx_qsbr_quiescent(q, r);
    uint64_t t1 = lx_qsbr_retire(q);
    assert_true(t1 > 0);
    assert_false(lx_qsbr_passed(q, t1));
    lx_qsbr_quiescent(q, 0);
    lx_qsbr_quiescent(q, 2);
    assert_false(lx_qsbr_passed(q, t1)); /* reader 1 has not */
    uint64_t t2 = lx_qsbr_retire(q);
    assert_true(t2 > t1);
    lx_qsbr_quiescent(q, 1);
    assert_true(lx_qsbr_passed(q, t1));
    assert_false(lx_qsbr_passed(q, t2)); /* 0 and 2 marked theirs before t2 */
    lx_qsbr_quiescent(q, 0);
    lx_qsbr_offline(q, 2); /* stops: holds nothing */
    assert_true(lx_qsbr_passed(q, t2));
    lx_qsbr_offline(q, 7); /* out of range: ignored */
    uint64_t t3 = lx_qsbr_retire(q);
    assert_false(lx_qsbr_passed(q, t3));
    lx_qsbr_offline(q, 0);
    lx_qsbr_offline(q, 1);
    assert_true(lx_qsbr_passed(q, t3)); /* nobody reads any more */
    lx_qsbr_free(q);

    q = lx_qsbr_new(0); /* no reader: every target has passed */
    assert_non_null(q);
    assert_true(lx_qsbr_passed(q, lx_qsbr_retire(q)));
    lx_qsbr_free(q);
    lx_qsbr_free(NULL);
}

/* ---- threads ----------------------------------------------------------------------------- */

#define READERS    2
#define BUFS       3
#define WORDS      64
#define PUBLISHES  2000
#define HOLD_READS 8 /* times a reader reads the buffer it holds within one turn */

typedef struct shared {
    lx_qsbr_t *q;
    uint64_t buf[BUFS][WORDS]; /* a buffer's words all hold its stamp */
    uint64_t grace[BUFS];      /* the writer's: each buffer's grace target */
    _Atomic(uint64_t *) cur;   /* the published buffer */
    _Atomic int stop;
    uint64_t torn[READERS]; /* a held buffer changed under its reader: must stay 0 */
    uint64_t turns[READERS];
    unsigned long deferred; /* the writer found no buffer free */
} shared_t;

typedef struct reader_arg {
    shared_t *s;
    unsigned id;
} reader_arg_t;

static void *reader(void *arg)
{
    reader_arg_t *a = arg;
    shared_t *s = a->s;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        /* one turn: load the published buffer and read it several times */
        const volatile uint64_t *b = atomic_load_explicit(&s->cur, memory_order_acquire);
        uint64_t stamp = b[0];
        for (int k = 0; k < HOLD_READS; k++)
            for (int i = 0; i < WORDS; i++)
                s->torn[a->id] += b[i] != stamp;
        s->turns[a->id]++;
        lx_qsbr_quiescent(s->q, a->id);
    }
    lx_qsbr_offline(s->q, a->id);
    return NULL;
}

/* A buffer other than the published one <cur> whose grace period has ended, or -1. */
static int free_buffer(shared_t *s, int cur)
{
    for (int k = 0; k < BUFS; k++)
        if (k != cur && lx_qsbr_passed(s->q, s->grace[k]))
            return k;
    return -1;
}

static void test_threads(void **st)
{
    (void)st;
    static shared_t s;
    memset(&s, 0, sizeof(s));
    s.q = lx_qsbr_new(READERS);
    assert_non_null(s.q);
    atomic_init(&s.cur, s.buf[0]);
    atomic_init(&s.stop, 0);
    pthread_t t[READERS];
    reader_arg_t ra[READERS];
    for (unsigned r = 0; r < READERS; r++) {
        ra[r] = (reader_arg_t){&s, r};
        assert_int_equal(pthread_create(&t[r], NULL, reader, &ra[r]), 0);
    }
    int cur = 0;
    /* bounded: every reader turns (a turn is short), so a buffer frees within a few tries */
    for (uint64_t n = 1; n <= PUBLISHES; n++) {
        int k = -1;
        for (int tries = 0; tries < 200000 && (k = free_buffer(&s, cur)) < 0; tries++) {
            s.deferred++;
            nanosleep(&(struct timespec){0, 10000}, NULL);
        }
        assert_true(k >= 0);
        for (int i = 0; i < WORDS; i++) /* plain writes: only the grace period orders them */
            s.buf[k][i] = n;
        atomic_store_explicit(&s.cur, s.buf[k], memory_order_release);
        s.grace[cur] = lx_qsbr_retire(s.q); /* the replaced one's grace period begins */
        cur = k;
    }
    atomic_store(&s.stop, 1);
    for (unsigned r = 0; r < READERS; r++) {
        pthread_join(t[r], NULL);
        assert_int_equal(s.torn[r], 0);
        assert_true(s.turns[r] > 0);
    }
    lx_qsbr_free(s.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
