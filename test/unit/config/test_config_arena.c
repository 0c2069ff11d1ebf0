/*
 * test_config_arena.c - the snapshot arena: zeroed, aligned storage, large allocations, string
 * copies, overflow refused. Leaks and overruns are the sanitizers' to find.
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config_arena.h"

static void test_alloc(void **state)
{
    (void)state;
    lx_config_arena_t *a = lx_config_arena_new();
    assert_non_null(a);
    void *prev = NULL;
    for (size_t i = 1; i < 3000; i += 7) {
        unsigned char *p = lx_config_arena_alloc(a, i, 1);
        assert_non_null(p);
        assert_true((uintptr_t)p % alignof(max_align_t) == 0);
        for (size_t j = 0; j < i; j++)
            assert_int_equal(p[j], 0);
        memset(p, 0xab, i); /* ASan: the whole size is usable */
        assert_ptr_not_equal(p, prev);
        prev = p;
    }
    unsigned char *big = lx_config_arena_alloc(a, 1 << 20, 1);
    assert_non_null(big);
    assert_int_equal(big[(1 << 20) - 1], 0);
    memset(big, 1, 1 << 20);
    /* After a large block, small allocations still work. */
    assert_non_null(lx_config_arena_alloc(a, 3, 8));
    assert_non_null(lx_config_arena_alloc(a, 0, 8));
    assert_null(lx_config_arena_alloc(a, SIZE_MAX / 2, 4));
    assert_null(lx_config_arena_alloc(a, 1, SIZE_MAX - 8));
    lx_config_arena_free(a);
    lx_config_arena_free(NULL);
}

static void test_strndup(void **state)
{
    (void)state;
    lx_config_arena_t *a = lx_config_arena_new();
    assert_non_null(a);
    char *s = lx_config_arena_strndup(a, "hello, world", 5);
    assert_string_equal(s, "hello");
    assert_string_equal(lx_config_arena_strndup(a, "", 0), "");
    lx_config_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_strndup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
