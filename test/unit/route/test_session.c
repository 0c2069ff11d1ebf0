/*
 * test_session.c - the session table (find, remember, expiry, eviction among eight
 * neighbours) and the placement of a new session (the same on every worker, only among
 * available replicas).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route/session.h"

static const uint64_t TTL = 1000;

static lx_session_t at(uint64_t serial, uint16_t model, uint16_t route, uint16_t ep)
{
    return (lx_session_t){.serial = serial, .model = model, .route = route, .ep = ep};
}

static void test_hash(void **state)
{
    (void)state;
    /* FNV-1a's steps from llmux's own offset: where a session is placed depends on these
     * values, the same on every worker and every version */
    assert_true(lx_session_hash("a", 1) == 0x44bd8ad473cd9906ull);
    assert_true(lx_session_hash("", 0) == 1469598103934665603ull);
    assert_true(lx_session_hash("abc", 3) != lx_session_hash("abd", 3));
}

static void test_remember_find(void **state)
{
    (void)state;
    lx_sessions_t t = {0};
    uint64_t h = lx_session_hash("user-1", 6);
    assert_null(lx_session_find(&t, h, 0, TTL)); /* no table yet */
    lx_session_t s = at(7, 1, 2, 3);
    assert_true(lx_session_remember(&t, h, 100, TTL, &s));
    const lx_session_t *f = lx_session_find(&t, h, 100 + TTL, TTL);
    assert_non_null(f);
    assert_true(f->hash == h);
    assert_int_equal(f->serial, 7);
    assert_int_equal(f->model, 1);
    assert_int_equal(f->route, 2);
    assert_int_equal(f->ep, 3);
    assert_int_equal(f->last_ms, 100);
    assert_null(lx_session_find(&t, h + 1, 100, TTL));   /* another session */
    assert_null(lx_session_find(&t, h, 101 + TTL, TTL)); /* expired */
    /* a new use moves it */
    s = at(8, 0, 0, 1);
    assert_true(lx_session_remember(&t, h, 5000, TTL, &s));
    f = lx_session_find(&t, h, 5000, TTL);
    assert_non_null(f);
    assert_int_equal(f->serial, 8);
    assert_int_equal(f->ep, 1);
    lx_sessions_free(&t);
    assert_null(t.slot);
}

/* Nine sessions on the same eight slots: the least recently used one goes; an expired one goes
 * before any live one. */
static void test_eviction(void **state)
{
    (void)state;
    lx_sessions_t t = {0};
    uint64_t h[9];
    for (unsigned i = 0; i < 9; i++)
        h[i] = 5 + (uint64_t)(i + 1) * LX_SESSIONS; /* all start at slot 5 */
    for (unsigned i = 0; i < 8; i++) {
        lx_session_t s = at(1, 0, 0, (uint16_t)i);
        assert_true(lx_session_remember(&t, h[i], 100 + i, TTL, &s));
    }
    for (unsigned i = 0; i < 8; i++) {
        lx_session_t s = at(1, 0, 0, (uint16_t)i);
        if (i != 3)
            assert_true(lx_session_remember(&t, h[i], 150 + i, TTL, &s));
    }
    /* h[3] is the least recently used */
    lx_session_t s = at(1, 0, 0, 8);
    assert_true(lx_session_remember(&t, h[8], 200, TTL, &s));
    for (unsigned i = 0; i < 9; i++) {
        const lx_session_t *f = lx_session_find(&t, h[i], 200, TTL);
        if (i == 3) {
            assert_null(f);
        } else {
            assert_non_null(f);
            assert_int_equal(f->ep, i);
        }
    }
    /* h[0] (last used at 150) expires first: h[3] comes back in its slot, not in the least
     * recently used live one's (h[1]) */
    uint64_t now = 150 + TTL + 1;
    assert_null(lx_session_find(&t, h[0], now, TTL));
    s = at(1, 0, 0, 3);
    assert_true(lx_session_remember(&t, h[3], now, TTL, &s));
    assert_non_null(lx_session_find(&t, h[3], now, TTL));
    for (unsigned i = 1; i < 9; i++)
        assert_non_null(lx_session_find(&t, h[i], now, TTL));
    lx_sessions_free(&t);
}

static void test_place(void **state)
{
    (void)state;
    bool all[4] = {true, true, true, true};
    unsigned count[4] = {0};
    for (unsigned i = 0; i < 4000; i++) {
        uint64_t h = lx_session_hash((const char *)&i, sizeof(i));
        int p = lx_session_place(h, all, 4);
        assert_true(p >= 0 && p < 4);
        assert_int_equal(lx_session_place(h, all, 4), p); /* the same on every call */
        count[p]++;
        /* without its replica, the session goes elsewhere; the others keep theirs */
        bool some[4] = {true, true, true, true};
        some[p] = false;
        int q = lx_session_place(h, some, 4);
        assert_true(q >= 0 && q != p);
        some[p] = true;
        some[(p + 1) % 4] = false;
        assert_int_equal(lx_session_place(h, some, 4), p);
    }
    for (unsigned j = 0; j < 4; j++)
        assert_true(count[j] > 800 && count[j] < 1200); /* spread evenly */
    bool none[4] = {false};
    assert_int_equal(lx_session_place(1, none, 4), -1);
    assert_int_equal(lx_session_place(1, all, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_remember_find),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
