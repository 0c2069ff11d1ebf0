/*
 * config_arena.c - the allocations of one configuration snapshot (see config_arena.h).
 *
 * A chain of blocks: small allocations share 4 KiB blocks, large ones get a block of their
 * own. Nothing is freed before the whole arena, which matches the life of a snapshot: built
 * once by config_parse.c, read-only afterwards, dropped by lx_config_unref().
 */
#include "config/config_arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE 4096

struct block {
    struct block *next;
    size_t size; /* bytes in data[] */
    size_t used; /* bytes handed out from data[], a multiple of the alignment */
    max_align_t data[];
};

struct lx_config_arena {
    struct block *head; /* the block small allocations are taken from; never NULL */
};

static struct block *block_new(size_t size)
{
    struct block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    memset(b->data, 0, size);
    return b;
}

lx_config_arena_t *lx_config_arena_new(void)
{
    lx_config_arena_t *a = malloc(sizeof(*a));
    if (a == NULL)
        return NULL;
    a->head = block_new(BLOCK_SIZE);
    if (a->head == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void lx_config_arena_free(lx_config_arena_t *arena)
{
    if (arena == NULL)
        return;
    struct block *b = arena->head;
    while (b != NULL) {
        struct block *next = b->next;
        /* explicit_bzero: the wipe must survive the free that follows it. */
        explicit_bzero(b->data, b->size);
        free(b);
        b = next;
    }
    free(arena);
}

void *lx_config_arena_alloc(lx_config_arena_t *arena, size_t n, size_t size)
{
    const size_t align = alignof(max_align_t);
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    if (bytes > SIZE_MAX - align - sizeof(struct block))
        return NULL;
    bytes = (bytes + align - 1) / align * align;

    struct block *head = arena->head;
    if (head->size - head->used >= bytes) {
        void *p = (char *)head->data + head->used;
        head->used += bytes;
        return p;
    }
    if (bytes > BLOCK_SIZE / 4) {
        /* A large allocation gets its own block behind the head, which keeps filling up. */
        struct block *b = block_new(bytes);
        if (b == NULL)
            return NULL;
        b->used = bytes;
        b->next = head->next;
        head->next = b;
        return b->data;
    }
    struct block *b = block_new(BLOCK_SIZE);
    if (b == NULL)
        return NULL;
    b->next = head;
    arena->head = b;
    b->used = bytes;
    return b->data;
}

char *lx_config_arena_strndup(lx_config_arena_t *arena, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *copy = lx_config_arena_alloc(arena, len + 1, 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}
