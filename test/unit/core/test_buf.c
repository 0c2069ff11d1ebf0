/*
 * test_buf.c - the chunk pool: counters, LIFO reuse, the spare bound, arbitrary-size chunks,
 * small chunk classes and slices holding references. Leaks and overruns are the sanitizers' to
 * find.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_get_unref_counters(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    assert_int_equal(pool.n_free, 0);
    assert_int_equal(pool.n_out, 0);
    assert_int_equal(pool.n_created, 0);

    lx_buf_t *a = lx_buf_pool_get(&pool);
    assert_non_null(a);
    assert_int_equal(a->refcnt, 1);
    assert_int_equal(a->len, 0);
    assert_int_equal(a->cap, LX_BUF_CHUNK_SIZE);
    assert_ptr_equal(a->pool, &pool);
    assert_int_equal(lx_buf_avail(a), LX_BUF_CHUNK_SIZE);
    memset(a->data, 'x', LX_BUF_CHUNK_SIZE); /* ASan: the whole chunk is usable */
    assert_int_equal(pool.n_out, 1);
    assert_int_equal(pool.n_created, 1);
    assert_int_equal(pool.n_free, 0);

    lx_buf_unref(a);
    assert_int_equal(pool.n_out, 0);
    assert_int_equal(pool.n_free, 1);
    assert_int_equal(pool.n_created, 1);

    /* A second get takes the spare chunk: nothing is allocated. */
    lx_buf_t *b = lx_buf_pool_get(&pool);
    assert_ptr_equal(b, a);
    assert_int_equal(b->refcnt, 1);
    assert_int_equal(b->len, 0); /* reset on reuse */
    assert_int_equal(pool.n_created, 1);
    assert_int_equal(pool.n_free, 0);
    assert_int_equal(pool.n_out, 1);
    lx_buf_unref(b);
    lx_buf_unref(NULL); /* no-op */
    lx_buf_pool_dispose(&pool);
    assert_int_equal(pool.n_free, 0);
    assert_null(pool.free);
}

static void test_lifo_reuse(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 8);
    lx_buf_t *a = lx_buf_pool_get(&pool);
    lx_buf_t *b = lx_buf_pool_get(&pool);
    lx_buf_t *c = lx_buf_pool_get(&pool);
    assert_true(a != b && b != c && a != c);
    assert_int_equal(pool.n_created, 3);
    lx_buf_unref(a);
    lx_buf_unref(c);
    lx_buf_unref(b);
    assert_int_equal(pool.n_free, 3);
    /* the most recently returned comes out first */
    assert_ptr_equal(lx_buf_pool_get(&pool), b);
    assert_ptr_equal(lx_buf_pool_get(&pool), c);
    assert_ptr_equal(lx_buf_pool_get(&pool), a);
    assert_int_equal(pool.n_created, 3);
    assert_int_equal(pool.n_out, 3);
    lx_buf_unref(a);
    lx_buf_unref(b);
    lx_buf_unref(c);
    lx_buf_pool_dispose(&pool);
}

static void test_max_free_bound(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 2);
    lx_buf_t *bufs[5];
    for (int i = 0; i < 5; i++)
        bufs[i] = lx_buf_pool_get(&pool);
    assert_int_equal(pool.n_out, 5);
    assert_int_equal(pool.n_created, 5);
    for (int i = 0; i < 5; i++)
        lx_buf_unref(bufs[i]);
    /* two kept, three freed (LSan would report them otherwise) */
    assert_int_equal(pool.n_free, 2);
    assert_int_equal(pool.n_out, 0);
    assert_ptr_equal(lx_buf_pool_get(&pool), bufs[1]);
    assert_ptr_equal(lx_buf_pool_get(&pool), bufs[0]);
    lx_buf_t *fresh = lx_buf_pool_get(&pool);
    assert_non_null(fresh);
    assert_int_equal(pool.n_created, 6);
    lx_buf_unref(bufs[0]);
    lx_buf_unref(bufs[1]);
    lx_buf_unref(fresh);

    /* max_free 0: nothing is kept */
    lx_buf_pool_t none;
    lx_buf_pool_init(&none, 0);
    lx_buf_unref(lx_buf_pool_get(&none));
    assert_int_equal(none.n_free, 0);
    assert_int_equal(none.n_out, 0);
    assert_int_equal(none.n_created, 1);
    lx_buf_pool_dispose(&none);
    lx_buf_pool_dispose(&pool);
}

static void test_dispose_leaves_out_chunks(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    lx_buf_t *out = lx_buf_pool_get(&pool);
    lx_buf_unref(lx_buf_pool_get(&pool));
    lx_buf_pool_dispose(&pool);
    assert_int_equal(pool.n_free, 0);
    /* the chunk still out stays usable and returns on its last unref */
    out->data[0] = 'k';
    out->len = 1;
    assert_int_equal(out->refcnt, 1);
    lx_buf_unref(out);
    assert_int_equal(pool.n_free, 1);
    lx_buf_pool_dispose(&pool);
}

static void test_new_arbitrary_size(void **state)
{
    (void)state;
    lx_buf_t *b = lx_buf_new(100);
    assert_non_null(b);
    assert_int_equal(b->refcnt, 1);
    assert_int_equal(b->len, 0);
    assert_int_equal(b->cap, 100);
    assert_null(b->pool);
    memset(b->data, 'z', 100);
    lx_buf_t *big = lx_buf_new(3 * LX_BUF_CHUNK_SIZE + 1);
    assert_non_null(big);
    assert_int_equal(big->cap, 3 * LX_BUF_CHUNK_SIZE + 1);
    big->data[3 * LX_BUF_CHUNK_SIZE] = 1;
    lx_buf_t *zero = lx_buf_new(0);
    assert_non_null(zero);
    assert_int_equal(lx_buf_avail(zero), 0);
    assert_null(lx_buf_new((size_t)UINT32_MAX + 1));
    lx_buf_ref(b);
    lx_buf_unref(b);
    assert_int_equal(b->refcnt, 1);
    lx_buf_unref(b); /* freed: LSan reports a leak otherwise */
    lx_buf_unref(big);
    lx_buf_unref(zero);
}

static void test_slices_take_refs(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    lx_buf_t *b = lx_buf_pool_get(&pool);
    memcpy(lx_buf_tail(b), "hello world", 11);
    b->len += 11;
    assert_ptr_equal(lx_buf_tail(b), b->data + 11);
    assert_int_equal(lx_buf_avail(b), LX_BUF_CHUNK_SIZE - 11);

    lx_slice_t s1 = lx_slice_make(b, 0, 5);
    lx_slice_t s2 = lx_slice_make(b, 6, 5);
    assert_int_equal(b->refcnt, 3);
    assert_ptr_equal(s1.buf, b);
    assert_int_equal(s2.off, 6);
    assert_int_equal(s2.len, 5);
    assert_memory_equal(lx_slice_ptr(&s1), "hello", 5);
    assert_memory_equal(lx_slice_ptr(&s2), "world", 5);

    /* the owner drops its reference: the slices keep the chunk out of the pool */
    lx_buf_unref(b);
    assert_int_equal(pool.n_out, 1);
    assert_int_equal(pool.n_free, 0);
    lx_buf_unref(s1.buf);
    assert_int_equal(pool.n_out, 1);
    assert_memory_equal(lx_slice_ptr(&s2), "world", 5);
    lx_buf_unref(s2.buf);
    assert_int_equal(pool.n_out, 0);
    assert_int_equal(pool.n_free, 1);
    lx_buf_pool_dispose(&pool);
}

/* Small chunks: a class per power of two from 256, recycled per class, a bounded number of
 * spares, larger sizes outside the pool, and the chunk counters left alone. */
static void test_small_classes(void **state)
{
    (void)state;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    static const struct {
        size_t want, cap;
    } cases[] = {{1, 256}, {256, 256}, {257, 512}, {512, 512}, {1000, 1024}, {2048, 2048}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lx_buf_t *b = lx_buf_pool_get_small(&pool, cases[i].want);
        assert_non_null(b);
        assert_int_equal(b->cap, cases[i].cap);
        assert_int_equal(b->refcnt, 1);
        assert_int_equal(b->len, 0);
        assert_ptr_equal(b->pool, &pool);
        memset(b->data, 'x', b->cap); /* ASan: the whole class is usable */
        assert_int_equal(pool.n_small_out, 1);
        b->len = 7;
        lx_buf_unref(b);
        assert_int_equal(pool.n_small_out, 0);
        /* the same chunk comes back for the same class, reset */
        lx_buf_t *again = lx_buf_pool_get_small(&pool, cases[i].want);
        assert_ptr_equal(again, b);
        assert_int_equal(again->len, 0);
        lx_buf_unref(again);
    }
    assert_int_equal(pool.n_out, 0); /* no 16 KiB chunk was involved */
    assert_int_equal(pool.n_created, 0);

    /* over LX_BUF_SMALL_MAX: an exact chunk of its own, freed on its last unref */
    lx_buf_t *big = lx_buf_pool_get_small(&pool, LX_BUF_SMALL_MAX + 1);
    assert_non_null(big);
    assert_int_equal(big->cap, LX_BUF_SMALL_MAX + 1);
    assert_null(big->pool);
    assert_int_equal(pool.n_small_out, 0);
    lx_buf_unref(big);

    /* spares per class are bounded by LX_BUF_SMALL_KEEP_BYTES */
    size_t keep = LX_BUF_SMALL_KEEP_BYTES / 2048, n = keep + 5;
    lx_buf_t *many[64];
    assert_true(n <= sizeof(many) / sizeof(many[0]));
    for (size_t i = 0; i < n; i++)
        many[i] = lx_buf_pool_get_small(&pool, 2000);
    assert_int_equal(pool.n_small_out, n);
    for (size_t i = 0; i < n; i++)
        lx_buf_unref(many[i]);
    assert_int_equal(pool.n_small[LX_BUF_SMALL_CLASSES - 1], keep);
    assert_int_equal(pool.n_small_out, 0);
    lx_buf_pool_dispose(&pool); /* frees the spares: LeakSanitizer checks */
    for (size_t k = 0; k < LX_BUF_SMALL_CLASSES; k++) {
        assert_null(pool.small[k]);
        assert_int_equal(pool.n_small[k], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_unref_counters), cmocka_unit_test(test_lifo_reuse),
        cmocka_unit_test(test_max_free_bound),     cmocka_unit_test(test_dispose_leaves_out_chunks),
        cmocka_unit_test(test_new_arbitrary_size), cmocka_unit_test(test_slices_take_refs),
        cmocka_unit_test(test_small_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
