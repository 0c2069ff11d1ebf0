/*
 * test_auth.c - key hashing, Authorization header checks and `llmux hash-key`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/auth.h"

static void hex_of(const char *s, size_t len, char out[65])
{
    uint8_t d[32];
    lx_auth_hash(s, len, d);
    lx_auth_hex(d, out);
}

static void test_vectors(void **state)
{
    char hex[65];
    hex_of("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static lx_config_key_t keys[3];
static lx_config_t cfg;

static int setup(void **state)
{
    memset(&cfg, 0, sizeof(cfg));
    keys[0].name = "alice";
    lx_auth_hash("sk-alice", 8, keys[0].digest);
    keys[1].name = "bob";
    lx_auth_hash("sk-bob", 6, keys[1].digest);
    keys[2].name = "bob-again"; /* the same key twice: the first one wins */
    lx_auth_hash("sk-bob", 6, keys[2].digest);
    cfg.keys = keys;
    cfg.n_keys = 3;
    return 0;
}

static const lx_config_key_t *check(const char *h)
{
    return lx_auth_check(&cfg, h, strlen(h));
}

static void test_check(void **state)
{
    assert_ptr_equal(check("Bearer sk-alice"), &keys[0]);
    assert_ptr_equal(check("Bearer sk-bob"), &keys[1]);
    assert_ptr_equal(check("bearer sk-bob"), &keys[1]);
    assert_ptr_equal(check("BEARER sk-bob"), &keys[1]);
    assert_ptr_equal(check("BeArEr \t sk-alice  "), &keys[0]);
    assert_ptr_equal(check("  Bearer sk-alice\t"), &keys[0]);

    assert_null(check("Bearer sk-carol"));
    assert_null(check("Bearer sk-alic"));
    assert_null(check("Bearer sk-alicee"));
    assert_null(check("Bearer SK-ALICE"));
    assert_null(check("Bearer"));
    assert_null(check("Bearer "));
    assert_null(check("Bearer   "));
    assert_null(check("Bearersk-alice"));
    assert_null(check("Basic sk-alice"));
    assert_null(check("sk-alice"));
    assert_null(check("Bearer sk-alice extra"));
    assert_null(check("Bearer sk-\x01"
                      "alice"));
    assert_null(check("Token sk-alice"));
    assert_null(check(""));
    assert_null(lx_auth_check(&cfg, NULL, 0));
    /* the length is honoured: no reading past it */
    assert_null(lx_auth_check(&cfg, "Bearer sk-alice", 14));
    assert_ptr_equal(lx_auth_check(&cfg, "Bearer sk-alicexyz", 15), &keys[0]);

    /* no keys configured: nothing matches */
    lx_config_t none;
    memset(&none, 0, sizeof(none));
    assert_null(lx_auth_check(&none, "Bearer sk-alice", 15));
}

/* Runs hash-key on <input>; returns its status and the output in out. */
static int run_hash_key(const char *input, size_t len, char *out, size_t cap)
{
    FILE *in = tmpfile();
    FILE *o = tmpfile();
    assert_non_null(in);
    assert_non_null(o);
    assert_int_equal(fwrite(input, 1, len, in), len);
    rewind(in);
    int rc = lx_auth_hash_key_main(in, o);
    rewind(o);
    size_t n = fread(out, 1, cap - 1, o);
    out[n] = '\0';
    fclose(in);
    fclose(o);
    return rc;
}

static void test_hash_key_main(void **state)
{
    char out[256];
    const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    assert_int_equal(run_hash_key("abc", 3, out, sizeof(out)), 0);
    assert_string_equal(out, abc);
    assert_int_equal(run_hash_key("abc\n", 4, out, sizeof(out)), 0);
    assert_string_equal(out, abc);
    assert_int_equal(run_hash_key("abc\r\n", 5, out, sizeof(out)), 0);
    assert_string_equal(out, abc);

    /* only one newline is stripped: the rest is an error, not a different key */
    assert_int_equal(run_hash_key("abc\n\n", 5, out, sizeof(out)), 1);
    assert_string_equal(out, "");
    assert_int_equal(run_hash_key("", 0, out, sizeof(out)), 1);
    assert_string_equal(out, "");
    assert_int_equal(run_hash_key("\n", 1, out, sizeof(out)), 1);
    assert_int_equal(run_hash_key("\r\n", 2, out, sizeof(out)), 1);
    assert_int_equal(run_hash_key("a b\n", 4, out, sizeof(out)), 1);

    static char big[5000];
    memset(big, 'k', sizeof(big));
    assert_int_equal(run_hash_key(big, 4096, out, sizeof(out)), 0);
    assert_int_equal(strlen(out), 65);
    assert_int_equal(run_hash_key(big, 4097, out, sizeof(out)), 1);

    /* the printed digest is what lx_auth_check accepts */
    assert_int_equal(run_hash_key("sk-alice\n", 9, out, sizeof(out)), 0);
    char hex[65];
    lx_auth_hex(keys[0].digest, hex);
    assert_memory_equal(out, hex, 64);
}

/* The worker's digest cache gives exactly the digest of the key presented, for keys that share
 * a slot, replace each other, are longer than a slot holds, or differ in one byte or length. */
static void test_digest_cache(void **state)
{
    (void)state;
    static lx_auth_cache_t cache; /* (zeroed: empty) */
    char hdr[300], key[260];
    uint8_t got[32], want[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 200; i++) {
            /* keys of one scheme: a common prefix, the differences at the end; some long */
            int n = snprintf(key, sizeof(key), "sk-lx-v1-%060d%04d", 7, i);
            if (i % 50 == 49) {
                memset(key + n, 'x', 150);
                n += 150;
                key[n] = '\0';
            }
            int h = snprintf(hdr, sizeof(hdr), "Bearer %s", key);
            assert_true(lx_auth_bearer_digest_cached(&cache, hdr, (size_t)h, got));
            lx_auth_hash(key, (size_t)n, want);
            assert_memory_equal(got, want, 32);
            /* a prefix of the same key (a shorter length, the same bytes) is another key */
            assert_true(lx_auth_bearer_digest_cached(&cache, hdr, (size_t)h - 1, got));
            lx_auth_hash(key, (size_t)n - 1, want);
            assert_memory_equal(got, want, 32);
        }
    }
    /* malformed headers are refused as by lx_auth_bearer_digest */
    assert_false(lx_auth_bearer_digest_cached(&cache, "Basic abc", 9, got));
    assert_false(lx_auth_bearer_digest_cached(&cache, "Bearer ", 7, got));
    assert_false(lx_auth_bearer_digest_cached(&cache, "Bearer a b", 10, got));
    /* a one-byte key fits the slot arithmetic */
    assert_true(lx_auth_bearer_digest_cached(&cache, "Bearer z", 8, got));
    lx_auth_hash("z", 1, want);
    assert_memory_equal(got, want, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_digest_cache),
        cmocka_unit_test_setup(test_check, setup),
        cmocka_unit_test_setup(test_hash_key_main, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
