/*
 * config_arena.h - the memory of one configuration snapshot.
 *
 * Every string and array of an lx_config_t, and the lx_config_t itself, is carved from one
 * arena, so a snapshot is freed (and its secrets wiped) in one call whatever state a failed
 * parse left it in. Used only inside src/config/.
 */
#ifndef LX_CONFIG_ARENA_H
#define LX_CONFIG_ARENA_H

#include <stddef.h>

typedef struct lx_config_arena lx_config_arena_t;

/* A new, empty arena; NULL when out of memory. */
lx_config_arena_t *lx_config_arena_new(void);

/* Wipes every byte the arena handed out (secrets included), then frees it. NULL is a no-op. */
void lx_config_arena_free(lx_config_arena_t *arena);

/*
 * Zeroed storage for n elements of size bytes each, aligned for any type, living until the
 * arena is freed. NULL when out of memory or when n * size overflows; n == 0 gives a valid
 * non-NULL pointer.
 */
void *lx_config_arena_alloc(lx_config_arena_t *arena, size_t n, size_t size);

/* A NUL-terminated copy of s[0..len); NULL when out of memory. */
char *lx_config_arena_strndup(lx_config_arena_t *arena, const char *s, size_t len);

#endif
