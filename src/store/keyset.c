/*
 * keyset.c - immutable key snapshots (keyset.h): one arena holds the keys, their model lists,
 * the slot table and every string; the snapshot references each key's ledger and drops those
 * references when its own count reaches zero.
 */
#include "store/keyset.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of a string with its NUL (0 for NULL). */
static size_t str_size(const char *s)
{
    return s != NULL ? strlen(s) + 1 : 0;
}

static size_t key_strings(const lx_store_key_t *k)
{
    size_t n = str_size(k->name) + str_size(k->provider) + str_size(k->created_by);
    for (size_t i = 0; i < k->n_models; i++)
        n += str_size(k->models[i]);
    return n;
}

/* Copies <s> to *at (advancing it); NULL stays NULL. */
static char *put_str(char **at, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *out = memcpy(*at, s, n);
    *at += n;
    return out;
}

static uint32_t slot_of(const uint8_t digest[32], uint32_t mask)
{
    uint32_t h;
    memcpy(&h, digest, sizeof(h));
    return h & mask;
}

/* Deep-copies key <src> into <dst>, models into <ptrs>, strings at *strs. */
static void copy_key(lx_store_key_t *dst, const lx_store_key_t *src, char **ptrs, char **strs)
{
    *dst = *src;
    dst->name = put_str(strs, src->name);
    dst->provider = put_str(strs, src->provider);
    dst->created_by = put_str(strs, src->created_by);
    dst->models = src->n_models > 0 ? ptrs : NULL;
    for (size_t i = 0; i < src->n_models; i++)
        ptrs[i] = put_str(strs, src->models[i]);
    dst->ledger = lx_ledger_ref(src->ledger);
}

lx_keyset_t *lx_keyset_new(const lx_store_key_t *keys, size_t n, uint64_t version)
{
    if (n > UINT32_MAX / 4)
        return NULL;
    uint32_t nslots = 2;
    while (nslots < 2 * n)
        nslots *= 2;
    size_t n_ptrs = 0, n_chars = 0;
    for (size_t i = 0; i < n; i++) {
        n_ptrs += keys[i].n_models;
        n_chars += key_strings(&keys[i]);
    }
    size_t size = n * sizeof(lx_store_key_t) + n_ptrs * sizeof(char *) +
                  (size_t)nslots * sizeof(uint32_t) + n_chars;
    lx_keyset_t *ks = calloc(1, sizeof(*ks));
    char *arena = calloc(1, size > 0 ? size : 1);
    if (ks == NULL || arena == NULL) {
        free(ks);
        free(arena);
        return NULL;
    }
    /* layout: keys, model pointers, slots, strings (each part's alignment holds) */
    ks->keys = n > 0 ? (lx_store_key_t *)(void *)arena : NULL;
    char **ptrs = (char **)(void *)(arena + n * sizeof(lx_store_key_t));
    ks->slots = (uint32_t *)(void *)(ptrs + n_ptrs);
    char *strs = (char *)(ks->slots + nslots);
    ks->arena = arena;
    ks->n_keys = n;
    ks->mask = nslots - 1;
    ks->version = version;
    atomic_init(&ks->refs, 1);
    for (size_t i = 0; i < n; i++) {
        copy_key(&ks->keys[i], &keys[i], ptrs, &strs);
        ptrs += keys[i].n_models;
        uint32_t s = slot_of(keys[i].digest, ks->mask);
        while (ks->slots[s] != 0)
            s = (s + 1) & ks->mask;
        ks->slots[s] = (uint32_t)i + 1;
    }
    return ks;
}

static bool digest_eq(const uint8_t a[32], const uint8_t b[32])
{
    uint8_t diff = 0;
    for (int i = 0; i < 32; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

const lx_store_key_t *lx_keyset_find(const lx_keyset_t *ks, const uint8_t digest[32])
{
    if (ks == NULL)
        return NULL;
    uint32_t s = slot_of(digest, ks->mask);
    /* at most n of the 2n or more slots are full: an empty one ends every probe */
    for (;;) {
        uint32_t idx = ks->slots[s];
        if (idx == 0)
            return NULL;
        const lx_store_key_t *k = &ks->keys[idx - 1];
        if (digest_eq(k->digest, digest))
            return k;
        s = (s + 1) & ks->mask;
    }
}

lx_keyset_t *lx_keyset_ref(lx_keyset_t *ks)
{
    if (ks != NULL)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

void lx_keyset_unref(lx_keyset_t *ks)
{
    if (ks == NULL || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n_keys; i++)
        lx_ledger_unref(ks->keys[i].ledger);
    free(ks->arena);
    free(ks);
}

void lx_store_key_dispose(lx_store_key_t *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n_models; i++)
        free(k->models[i]);
    free(k->models);
    free(k->name);
    free(k->provider);
    free(k->created_by);
    k->models = NULL;
    k->n_models = 0;
    k->name = k->provider = k->created_by = NULL;
}
