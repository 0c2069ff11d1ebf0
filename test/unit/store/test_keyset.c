/*
 * test_keyset.c - key snapshots: deep copies in one arena (the source can be freed at once),
 * lookups by digest with colliding slots and near-miss digests, ledger references dropped at
 * the last unref, an empty snapshot, disposing of a job's key; and usage records' UTF-8 cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/keyset.h"
#include "store/record.h"
#include "store/store.h"

static char *dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    assert_non_null(d);
    return strcpy(d, s);
}

/* A heap key like a store job returns; digest from <seed>, the first 4 bytes from <slot>. */
static void make_key(lx_store_key_t *k, unsigned seed, uint32_t slot, size_t n_models)
{
    memset(k, 0, sizeof(*k));
    for (int i = 0; i < 32; i++)
        k->digest[i] = (uint8_t)(seed * 31 + (unsigned)i * 7);
    memcpy(k->digest, &slot, 4);
    snprintf(k->hash, sizeof(k->hash), "hash-%u", seed);
    char name[32];
    snprintf(name, sizeof(name), "key %u", seed);
    k->name = dup(name);
    k->provider = seed % 2 ? dup("{\"order\":[\"a\"]}") : NULL;
    k->created_by = dup("cli");
    k->n_models = n_models;
    k->models = n_models ? calloc(n_models, sizeof(char *)) : NULL;
    for (size_t i = 0; i < n_models; i++) {
        snprintf(name, sizeof(name), "vendor-%zu/*", i);
        k->models[i] = dup(name);
    }
    lx_ledger_limits_t lim = {true, 1000, LX_PERIOD_DAY, 0, 0, 0};
    k->ledger = lx_ledger_new(&lim, NULL, NULL);
    assert_non_null(k->ledger);
}

static void test_build_and_find(void **state)
{
    (void)state;
    enum { N = 40 };
    lx_store_key_t src[N];
    for (unsigned i = 0; i < N; i++) /* slots collide: only 4 distinct first words */
        make_key(&src[i], i, i % 4, i % 3);
    lx_keyset_t *ks = lx_keyset_new(src, N, 17);
    assert_non_null(ks);
    assert_int_equal(ks->version, 17);
    assert_int_equal(ks->n_keys, N);
    assert_true(ks->mask + 1 >= 2 * N && ((ks->mask + 1) & ks->mask) == 0);
    lx_ledger_t *ledgers[N];
    uint8_t digests[N][32];
    for (unsigned i = 0; i < N; i++) {
        ledgers[i] = src[i].ledger;
        memcpy(digests[i], src[i].digest, 32);
        lx_ledger_unref(src[i].ledger); /* the snapshot holds its own reference */
        src[i].ledger = NULL;
        lx_store_key_dispose(&src[i]); /* a deep copy: the source can go */
        assert_null(src[i].name);
    }
    for (unsigned i = 0; i < N; i++) {
        const lx_store_key_t *k = lx_keyset_find(ks, digests[i]);
        assert_non_null(k);
        assert_memory_equal(k->digest, digests[i], 32);
        char want[32];
        snprintf(want, sizeof(want), "key %u", i);
        assert_string_equal(k->name, want);
        assert_string_equal(k->created_by, "cli");
        if (i % 2)
            assert_string_equal(k->provider, "{\"order\":[\"a\"]}");
        else
            assert_null(k->provider);
        assert_int_equal(k->n_models, i % 3);
        for (size_t m = 0; m < k->n_models; m++) {
            snprintf(want, sizeof(want), "vendor-%zu/*", m);
            assert_string_equal(k->models[m], want);
        }
        assert_ptr_equal(k->ledger, ledgers[i]);
        assert_int_equal(lx_ledger_remaining(k->ledger, 0), 1000);
        /* one byte off, first or last, finds nothing */
        uint8_t miss[32];
        memcpy(miss, digests[i], 32);
        miss[31] ^= 1;
        assert_null(lx_keyset_find(ks, miss));
        memcpy(miss, digests[i], 32);
        miss[4] ^= 0x80;
        assert_null(lx_keyset_find(ks, miss));
    }
    /* references: the ledgers live while any snapshot does */
    lx_keyset_t *again = lx_keyset_ref(ks);
    lx_keyset_unref(ks);
    assert_non_null(lx_keyset_find(again, digests[3]));
    lx_keyset_unref(again); /* frees the ledgers too: LeakSanitizer checks */
    lx_keyset_unref(NULL);
}

static void test_empty(void **state)
{
    (void)state;
    uint8_t d[32] = {0};
    lx_keyset_t *ks = lx_keyset_new(NULL, 0, 1);
    assert_non_null(ks);
    assert_int_equal(ks->n_keys, 0);
    assert_null(lx_keyset_find(ks, d));
    assert_null(lx_keyset_find(NULL, d));
    lx_keyset_unref(ks);
    lx_store_key_dispose(NULL);
}

static void test_full_table_probe(void **state)
{
    (void)state;
    /* every key in one slot: the probe walks them all, and an absent one ends at an empty slot */
    enum { N = 9 };
    lx_store_key_t src[N];
    for (unsigned i = 0; i < N; i++)
        make_key(&src[i], 100 + i, 0xffffffffu, 0);
    lx_keyset_t *ks = lx_keyset_new(src, N, 2);
    for (unsigned i = 0; i < N; i++) {
        assert_ptr_equal(lx_keyset_find(ks, src[i].digest)->ledger, src[i].ledger);
        lx_ledger_unref(src[i].ledger);
        src[i].ledger = NULL;
    }
    lx_store_key_t other;
    make_key(&other, 999, 0xffffffffu, 0);
    assert_null(lx_keyset_find(ks, other.digest));
    lx_ledger_unref(other.ledger);
    other.ledger = NULL;
    lx_store_key_dispose(&other);
    for (unsigned i = 0; i < N; i++)
        lx_store_key_dispose(&src[i]);
    lx_keyset_unref(ks);
}

static void copy_is(size_t cap, const char *src, const char *want)
{
    char dst[64];
    memset(dst, 'x', sizeof(dst));
    lx_record_copy(dst, cap, src, strlen(src));
    assert_string_equal(dst, want);
}

static void test_record_copy(void **state)
{
    (void)state;
    copy_is(8, "abc", "abc");
    copy_is(4, "abcdef", "abc");
    copy_is(1, "abc", "");
    copy_is(5, "ab\xc3\xa9", "ab\xc3\xa9"); /* fits exactly */
    copy_is(4, "ab\xc3\xa9", "ab");
    copy_is(4, "abc\xc3\xa9", "abc"); /* é would be split: left out */
    copy_is(6,
            "ab\xe2\x82\xac"
            "d",
            "ab\xe2\x82\xac");            /* € kept whole */
    copy_is(5, "abc\xe2\x82\xac", "abc"); /* € cut after 1 byte */
    copy_is(6, "abc\xe2\x82\xac", "abc"); /* ... after 2 */
    copy_is(5,
            "\xf0\x9f\x98\x80"
            "\xf0\x9f\x98\x80",
            "\xf0\x9f\x98\x80");
    copy_is(4, "\xf0\x9f\x98\x80", "");
    char dst[4] = "zzz";
    lx_record_copy(dst, 0, "abc", 3); /* nothing written */
    assert_memory_equal(dst, "zzz", 4);
    lx_record_copy(dst, sizeof(dst), "ab", 1); /* the length counts, not a NUL */
    assert_string_equal(dst, "a");
}

/* A record's strings: each cut to its field's cap at a UTF-8 boundary, equal values shared,
 * a value set again read back, every field at its cap at once fits, and a record moved by a
 * struct copy keeps them. */
static void test_record_set(void **state)
{
    (void)state;
    lx_record_t *r = lx_record_new();
    assert_non_null(r);
    assert_null(r->next);
    assert_int_equal(r->cost, 0);
    for (unsigned f = 0; f < LX_RF_SLOTS; f++)
        assert_string_equal(lx_record_str(r, f), "");
    lx_record_set(r, LX_RF_MODEL, "m/xyz", 3); /* (the length counts) */
    assert_string_equal(lx_record_str(r, LX_RF_MODEL), "m/x");
    assert_int_equal(lx_record_len(r, LX_RF_MODEL), 3);
    assert_int_equal(lx_record_cap(LX_RF_API), 11);
    lx_record_set_cstr(r, LX_RF_API, "abcdefghij\xc3\xa9"); /* é would be split at 11 */
    assert_string_equal(lx_record_str(r, LX_RF_API), "abcdefghij");
    assert_int_equal(lx_record_len(r, LX_RF_API), 10);
    lx_record_set_cstr(r, LX_RF_PROVIDER, "openai");
    size_t used = r->used;
    lx_record_share(r, LX_RF_ATTEMPT(0, LX_RA_PROVIDER), LX_RF_PROVIDER);
    lx_record_share(r, LX_RF_ATTEMPT(1, LX_RA_PROVIDER), LX_RF_ATTEMPT(0, LX_RA_PROVIDER));
    assert_int_equal(r->used, used); /* shared: no bytes taken */
    assert_string_equal(lx_record_str(r, LX_RF_ATTEMPT(1, LX_RA_PROVIDER)), "openai");
    lx_record_set_cstr(r, LX_RF_ATTEMPT(0, LX_RA_OUTCOME), "ok");
    assert_int_equal(r->used, used + 3);
    lx_record_set_cstr(r, LX_RF_PROVIDER, "azure"); /* set again: the new value */
    assert_string_equal(lx_record_str(r, LX_RF_PROVIDER), "azure");
    assert_string_equal(lx_record_str(r, LX_RF_ATTEMPT(0, LX_RA_PROVIDER)), "openai");
    /* shared from a field of a longer cap: cut to the shorter one's */
    char long_model[120];
    memset(long_model, 'm', sizeof(long_model));
    lx_record_set(r, LX_RF_MODEL, long_model, sizeof(long_model));
    lx_record_share(r, LX_RF_ATTEMPT(2, LX_RA_OUTCOME), LX_RF_MODEL);
    assert_int_equal(lx_record_len(r, LX_RF_ATTEMPT(2, LX_RA_OUTCOME)),
                     lx_record_cap(LX_RF_ATTEMPT(2, LX_RA_OUTCOME)));
    assert_int_equal(strlen(lx_record_str(r, LX_RF_ATTEMPT(2, LX_RA_OUTCOME))),
                     lx_record_cap(LX_RF_ATTEMPT(2, LX_RA_OUTCOME)));
    lx_record_set(r, LX_RF_ATTEMPT(LX_RECORD_ATTEMPTS, 0), "x", 1); /* no such field: ignored */
    lx_record_set(r, LX_RF_USER, "", 0);
    assert_int_equal(lx_record_len(r, LX_RF_USER), 0);
    /* every field at its cap, each distinct (nothing shared): all fit */
    lx_record_clear(r);
    char big[200];
    for (unsigned f = 0; f < LX_RF_SLOTS; f++) {
        memset(big, 'a' + (int)(f % 26), sizeof(big));
        big[0] = (char)('0' + f % 10);
        big[1] = (char)('0' + f / 10);
        lx_record_set(r, f, big, sizeof(big));
        assert_int_equal(lx_record_len(r, f), lx_record_cap(f));
    }
    lx_record_t *c = malloc(sizeof(*c));
    assert_non_null(c);
    *c = *r;
    free(r);
    for (unsigned f = 0; f < LX_RF_SLOTS; f++) {
        assert_int_equal(strlen(lx_record_str(c, f)), lx_record_cap(f));
        assert_int_equal(lx_record_str(c, f)[0], '0' + f % 10);
        assert_int_equal(lx_record_str(c, f)[1], '0' + f / 10);
    }
    /* a full arena: more values are cut to the room left, never past it */
    for (unsigned f = 0; f < LX_RF_SLOTS; f++)
        lx_record_set(c, f, big, sizeof(big));
    assert_true(c->used <= LX_RECORD_ARENA);
    for (unsigned f = 0; f < LX_RF_SLOTS; f++)
        assert_true(lx_record_len(c, f) <= lx_record_cap(f));
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_find),   cmocka_unit_test(test_empty),
        cmocka_unit_test(test_full_table_probe), cmocka_unit_test(test_record_copy),
        cmocka_unit_test(test_record_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
