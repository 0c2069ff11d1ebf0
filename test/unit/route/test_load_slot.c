/*
 * test_load_slot.c - the published scrape of a row (route/load_slot.h): what is published is
 * read back, a slot never scraped reads as such, and readers on other threads never see two
 * scrapes mixed while one writer publishes as fast as it can (run under the tsan preset too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "route/load_slot.h"

static void test_publish_read(void **state)
{
    (void)state;
    lx_load_slot_t slot;
    memset(&slot, 0, sizeof(slot));
    lx_load_view_t v;
    assert_true(lx_load_slot_read(&slot, &v));
    assert_int_equal(v.read_ms, 0); /* never scraped */
    lx_load_sample_t s = {.waiting = 7,
                          .running = 3,
                          .kv_ppm = 812345,
                          .flags = LX_LOAD_HAS_WAITING | LX_LOAD_HAS_KV};
    lx_load_slot_publish(&slot, &s, 1234);
    assert_true(lx_load_slot_read(&slot, &v));
    assert_int_equal(v.waiting, 7);
    assert_int_equal(v.running, 3);
    assert_int_equal(v.kv_ppm, 812345);
    assert_int_equal(v.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_KV);
    assert_int_equal(v.read_ms, 1234);
    s.waiting = UINT32_MAX;
    lx_load_slot_publish(&slot, &s, 0); /* (a loop time of 0 still reads as scraped) */
    assert_true(lx_load_slot_read(&slot, &v));
    assert_int_equal(v.waiting, UINT32_MAX);
    assert_int_equal(v.read_ms, 1);
}

#define ROUNDS 200000

typedef struct race {
    lx_load_slot_t slot;
    atomic_bool done;
    atomic_ulong torn, reads;
} race_t;

/* Each publish carries one number i everywhere: waiting = running = kv = i, read at i + 1. */
static void *writer(void *arg)
{
    race_t *r = arg;
    for (uint32_t i = 1; i <= ROUNDS; i++) {
        lx_load_sample_t s = {.waiting = i, .running = i, .kv_ppm = i, .flags = (uint8_t)i};
        lx_load_slot_publish(&r->slot, &s, (uint64_t)i + 1);
    }
    atomic_store(&r->done, true);
    return NULL;
}

static void *reader(void *arg)
{
    race_t *r = arg;
    uint64_t last = 0;
    while (!atomic_load(&r->done)) {
        lx_load_view_t v;
        if (!lx_load_slot_read(&r->slot, &v))
            continue; /* (a writer kept overlapping: nothing read, nothing mixed) */
        atomic_fetch_add(&r->reads, 1);
        bool same = v.waiting == v.running && v.running == v.kv_ppm &&
                    v.flags == (uint8_t)v.waiting &&
                    (v.read_ms == 0 ? v.waiting == 0 : v.read_ms == (uint64_t)v.waiting + 1);
        if (!same || v.read_ms < last) /* mixed, or older than one read before */
            atomic_fetch_add(&r->torn, 1);
        last = v.read_ms;
    }
    return NULL;
}

static void test_no_torn_reads(void **state)
{
    (void)state;
    static race_t r;
    memset(&r, 0, sizeof(r));
    pthread_t w, rd[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, reader, &r), 0);
    assert_int_equal(pthread_create(&w, NULL, writer, &r), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    assert_int_equal(atomic_load(&r.torn), 0);
    assert_true(atomic_load(&r.reads) > 0);
    lx_load_view_t v;
    assert_true(lx_load_slot_read(&r.slot, &v));
    assert_int_equal(v.waiting, ROUNDS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_read),
        cmocka_unit_test(test_no_torn_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
