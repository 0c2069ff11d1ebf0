/*
 * auth.h - API keys: hashing, checking a request's Authorization header, `llmux hash-key`.
 *
 * The configuration never holds a key, only its SHA-256 digest; a request's key is hashed and
 * compared against every configured digest in constant time.
 */
#ifndef LX_AUTH_H
#define LX_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

/* SHA-256 of the <len> bytes of <key> into <digest>. */
void lx_auth_hash(const char *key, size_t len, uint8_t digest[32]);

/* <digest> as 64 lowercase hex digits and a NUL into <out>. */
void lx_auth_hex(const uint8_t digest[32], char out[65]);

/*
 * Checks an Authorization header value (<len> bytes, need not be NUL-terminated; NULL for a
 * missing header): "Bearer <key>", scheme case-insensitive, blanks (spaces, tabs) tolerated
 * before and after the scheme and after the key. A key containing a blank or a control
 * character is malformed. The key's digest is compared with every key of <cfg> in constant
 * time - all digests are always compared, with no branch on their bytes - so the time taken
 * does not tell which key matched or how much of one did.
 * Returns the matching key, or NULL (missing or malformed header, unknown key). Does not look at
 * cfg->auth_none: the caller decides whether to check at all.
 */
const lx_config_key_t *lx_auth_check(const lx_config_t *cfg, const char *authorization, size_t len);

/* The SHA-256 of the key of an Authorization header value (as above) into <digest>; false when
 * the header is missing or malformed. */
bool lx_auth_bearer_digest(const char *authorization, size_t len, uint8_t digest[32]);

/*
 * A worker's memory of the digests of the keys it hashed last, so that the clients of a
 * keep-alive connection (or of a pool) do not pay a SHA-256 (about 7,000 instructions) per
 * request: LX_AUTH_CACHE_SLOTS slots chosen by the key's last bytes, each the key's bytes and
 * their digest. The digest is a function of the key alone, so nothing ever goes stale (a
 * reload, a key deleted: the digest is then simply not found). A hit compares every byte in
 * constant time; a key over LX_AUTH_CACHE_KEY_MAX bytes is hashed every time. One thread's:
 * no lock. It holds keys: zero it with explicit_bzero before its memory is freed.
 */
#define LX_AUTH_CACHE_SLOTS   16
#define LX_AUTH_CACHE_KEY_MAX 128
typedef struct lx_auth_cache {
    struct {
        uint8_t len; /* 0: empty */
        char key[LX_AUTH_CACHE_KEY_MAX];
        uint8_t digest[32];
    } slot[LX_AUTH_CACHE_SLOTS];
} lx_auth_cache_t;

/* lx_auth_bearer_digest() through <cache>. */
bool lx_auth_bearer_digest_cached(lx_auth_cache_t *cache, const char *authorization, size_t len,
                                  uint8_t digest[32]);

/* The index of the key among <keys>[0, n) whose digest is <digest>, or -1. Every digest is
 * compared in full, in constant time (see lx_auth_check). */
long lx_auth_find(const lx_config_key_t *keys, size_t n, const uint8_t digest[32]);

/* Whether an Authorization header value (as above) bears the key whose SHA-256 is <expected>
 * (the admin key), compared in constant time. */
bool lx_auth_check_digest(const uint8_t expected[32], const char *authorization, size_t len);

/*
 * `llmux hash-key`: reads one key from <in> (everything up to EOF, one trailing "\n" or "\r\n"
 * removed), writes its digest as 64 hex digits and a newline to <out>. An empty key, a key with
 * blanks or control characters (it could not be sent in a Bearer header), a key over 4 KiB or a
 * read error is reported on stderr. Returns 0, or 1 on error (an exit status).
 */
int lx_auth_hash_key_main(FILE *in, FILE *out);

#endif
