/*
 * keyset.h - API keys as the request path sees them: an immutable snapshot of every stored key
 * (built by the store thread after each change, published to the workers, refcounted), looked
 * up by the SHA-256 of the presented key. Keys from the configuration (`auth.keys`) are not in
 * it: the configuration snapshot holds those.
 */
#ifndef LX_KEYSET_H
#define LX_KEYSET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/ledger.h"
#include "store/period.h"

#define LX_KEY_PREFIX       "sk-lx-v1-" /* a stored key: this and 64 hex digits (256 bits) */
#define LX_KEY_SECRET_LEN   (sizeof(LX_KEY_PREFIX) - 1 + 64)
#define LX_KEY_NAME_MAX     256  /* bytes of a key's name */
#define LX_KEY_MODELS_MAX   64   /* entries of a key's model allowlist */
#define LX_KEY_MODEL_MAX    256  /* bytes of one entry */
#define LX_KEY_PROVIDER_MAX 4096 /* bytes of a key's provider preferences (JSON object text) */

/* A key's class in the fleet's admission queues (routing.queue_size): interactive requests are
 * served before batch ones. The same values as the configuration's auth.keys[].priority. */
enum lx_key_priority {
    LX_KEY_PRIORITY_INTERACTIVE = 0, /* the default */
    LX_KEY_PRIORITY_BATCH = 1,
};

/* One stored key. Strings are NUL-terminated and owned by the snapshot (or by the job that
 * returned the key). */
typedef struct lx_store_key {
    uint8_t digest[32]; /* SHA-256 of the key */
    char hash[65];      /* the same as 64 lowercase hex digits: the key's public id */
    char label[24];     /* "sk-lx-v1-" + first 3 + "..." + last 3 hex digits of the key */
    char *name;
    bool disabled;
    lx_ledger_limits_t limits; /* limit (µ$) and limit_reset, rpm, tpm, concurrency */
    int64_t expires_at;        /* Unix seconds; 0: never */
    char **models;             /* allowlist patterns ('*' matches any run of bytes); */
    size_t n_models;           /* ... 0: every model */
    char *provider;            /* default routing preferences: a JSON object's text, or NULL */
    int64_t created_at;        /* Unix seconds */
    int64_t updated_at;        /* 0: never updated */
    char *created_by;          /* the management key's name that created it ("cli" from the
                                * command line) */
    lx_ledger_t *ledger;       /* in a snapshot: its live counters (a reference); else NULL */
    uint8_t priority;          /* enum lx_key_priority */
} lx_store_key_t;

/* A published snapshot. */
typedef struct lx_keyset {
    atomic_uint refs;
    uint64_t version; /* grows with every publication */
    lx_store_key_t *keys;
    size_t n_keys;
    uint32_t *slots; /* open addressing over the digest's first 4 bytes: index + 1, 0 empty */
    uint32_t mask;
    void *arena; /* private: the strings */
} lx_keyset_t;

/* The key with <digest>, or NULL. The final comparison is over all 32 bytes in constant time
 * (the slot probe depends only on the digest, which reveals nothing about the key). */
const lx_store_key_t *lx_keyset_find(const lx_keyset_t *ks, const uint8_t digest[32]);

lx_keyset_t *lx_keyset_ref(lx_keyset_t *ks);
void lx_keyset_unref(lx_keyset_t *ks); /* NULL is a no-op; at zero frees it and drops the
                                        * ledgers' references */

/* Builds a snapshot from <n> keys (deep copies; each key's ledger is referenced). refs 1, NULL
 * when out of memory. */
lx_keyset_t *lx_keyset_new(const lx_store_key_t *keys, size_t n, uint64_t version);

/* Frees the strings of a key returned by a store job (not one inside a snapshot). */
void lx_store_key_dispose(lx_store_key_t *k);

#endif
