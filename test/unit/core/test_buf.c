/*
 * test_buf.c - the chunk pool: counters, LIFO reuse, the spare bound, arbitrary-size chunks
 * and slices holding references. Leaks and overruns are the sanitizers' to find.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_unref_counters), cmocka_unit_test(test_lifo_reuse),
        cmocka_unit_test(test_max_free_bound),     cmocka_unit_test(test_dispose_leaves_out_chunks),
        cmocka_unit_test(test_new_arbitrary_size), cmocka_unit_test(test_slices_take_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
