/*
 * auth.c - API key hashing and checking.
 *
 * Called by the gateway right after the request head is parsed, before the body is read: the
 * Authorization header's key is hashed (SHA-256, mbedTLS) and compared against the digests of
 * the configuration snapshot the request holds. Also implements `llmux hash-key`, which prints
 * the digest an operator puts in the config. Owns no state.
 */
#include "gateway/auth.h"

#include <stdbool.h>
#include <string.h>

#include <mbedtls/sha256.h>

#define MAX_KEY_LEN 4096

void lx_auth_hash(const char *key, size_t len, uint8_t digest[32])
{
    /* Cannot fail for SHA-256 with a software implementation; the digest is zeroed if it does,
     * which matches no configured key (a real digest of all zeros is not findable). */
    if (mbedtls_sha256_ret((const unsigned char *)key, len, digest, 0) != 0)
        memset(digest, 0, 32);
}

void lx_auth_hex(const uint8_t digest[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[64] = '\0';
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A byte that may appear in a key: visible ASCII or any non-ASCII byte. */
static bool key_byte(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

/* The key of a "Bearer <key>" header value into *key, *klen; false when malformed. */
static bool bearer_key(const char *authorization, size_t len, const char **key, size_t *klen)
{
    if (authorization == NULL)
        return false;
    const char *p = authorization, *end = authorization + len;
    while (p < end && is_blank(*p))
        p++;
    static const char scheme[] = "bearer";
    if ((size_t)(end - p) < sizeof(scheme) - 1)
        return false;
    for (size_t i = 0; i < sizeof(scheme) - 1; i++, p++)
        if ((*p | 0x20) != scheme[i])
            return false;
    if (p == end || !is_blank(*p))
        return false;
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    if (p == end)
        return false;
    for (const char *q = p; q < end; q++)
        if (!key_byte((unsigned char)*q))
            return false;
    *key = p;
    *klen = (size_t)(end - p);
    return true;
}

bool lx_auth_bearer_digest(const char *authorization, size_t len, uint8_t digest[32])
{
    const char *key;
    size_t klen;
    if (!bearer_key(authorization, len, &key, &klen))
        return false;
    lx_auth_hash(key, klen, digest);
    return true;
}

bool lx_auth_bearer_digest_cached(lx_auth_cache_t *cache, const char *authorization, size_t len,
                                  uint8_t digest[32])
{
    const char *key;
    size_t klen;
    if (!bearer_key(authorization, len, &key, &klen))
        return false;
    if (klen > LX_AUTH_CACHE_KEY_MAX) {
        lx_auth_hash(key, klen, digest);
        return true;
    }
    /* the slot: the last bytes (keys of one scheme share their first ones), mixed */
    uint64_t tail = 0;
    memcpy(&tail, key + klen - (klen < 8 ? klen : 8), klen < 8 ? klen : 8);
    size_t i = (size_t)((tail * UINT64_C(0x9e3779b97f4a7c15)) >> 60) % LX_AUTH_CACHE_SLOTS;
    unsigned diff = cache->slot[i].len ^ (unsigned)klen;
    for (size_t k = 0; k < klen; k++)
        diff |= (unsigned)(unsigned char)(cache->slot[i].key[k] ^ key[k]);
    if (diff == 0) {
        memcpy(digest, cache->slot[i].digest, 32);
        return true;
    }
    lx_auth_hash(key, klen, digest);
    cache->slot[i].len = (uint8_t)klen;
    memcpy(cache->slot[i].key, key, klen);
    memcpy(cache->slot[i].digest, digest, 32);
    return true;
}

bool lx_auth_check_digest(const uint8_t expected[32], const char *authorization, size_t len)
{
    uint8_t digest[32];
    if (!lx_auth_bearer_digest(authorization, len, digest))
        return false;
    unsigned diff = 0;
    for (size_t i = 0; i < 32; i++)
        diff |= (unsigned)(digest[i] ^ expected[i]);
    return diff == 0;
}

long lx_auth_find(const lx_config_key_t *keys, size_t n, const uint8_t digest[32])
{
    /* Every digest is compared in full; the match is selected with masks, not branches. */
    size_t found = 0;
    size_t have = 0; /* all ones once a key matched */
    for (size_t k = 0; k < n; k++) {
        unsigned diff = 0;
        for (size_t i = 0; i < 32; i++)
            diff |= (unsigned)(digest[i] ^ keys[k].digest[i]);
        /* diff is 0..255: (diff - 1) >> 8 is 1 exactly when diff == 0 */
        size_t match = (size_t)(((diff - 1u) >> 8) & 1u);
        size_t take = (size_t)0 - (match & ~have & 1u); /* all ones for the first match */
        found = (found & ~take) | (k & take);
        have |= take;
    }
    return have != 0 ? (long)found : -1;
}

const lx_config_key_t *lx_auth_check(const lx_config_t *cfg, const char *authorization, size_t len)
{
    uint8_t digest[32];
    if (cfg->n_keys == 0 || !lx_auth_bearer_digest(authorization, len, digest))
        return NULL;
    long k = lx_auth_find(cfg->keys, cfg->n_keys, digest);
    return k >= 0 ? &cfg->keys[k] : NULL;
}

int lx_auth_hash_key_main(FILE *in, FILE *out)
{
    char key[MAX_KEY_LEN + 3]; /* room to see that the key is too long, and for a CRLF */
    size_t len = fread(key, 1, sizeof(key), in);
    if (ferror(in)) {
        fprintf(stderr, "llmux hash-key: cannot read the key from standard input\n");
        return 1;
    }
    if (len > 0 && key[len - 1] == '\n') {
        len--;
        if (len > 0 && key[len - 1] == '\r')
            len--;
    }
    if (len == 0) {
        fprintf(stderr, "llmux hash-key: empty key (write the key on standard input)\n");
        return 1;
    }
    if (len > MAX_KEY_LEN) {
        fprintf(stderr, "llmux hash-key: key longer than %d bytes\n", MAX_KEY_LEN);
        return 1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!key_byte((unsigned char)key[i])) {
            fprintf(stderr, "llmux hash-key: the key contains a blank or control character\n");
            return 1;
        }
    }
    uint8_t digest[32];
    char hex[65];
    lx_auth_hash(key, len, digest);
    lx_auth_hex(digest, hex);
    memset(key, 0, sizeof(key));
    if (fprintf(out, "%s\n", hex) < 0 || fflush(out) != 0) {
        fprintf(stderr, "llmux hash-key: cannot write the digest\n");
        return 1;
    }
    return 0;
}
