/*
 * core.h - the few macros every layer uses. libc only.
 */
#ifndef LX_CORE_H
#define LX_CORE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define LX_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define lx_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define LX_MUST_CHECK                      __attribute__((warn_unused_result))
#define LX_UNUSED(x)                       ((void)(x))
#define LX_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define LX_MAX(a, b)                       ((a) > (b) ? (a) : (b))

/* Invariant checks: active in debug and sanitizer builds, never used for input validation. */
#ifdef NDEBUG
#define LX_ASSERT(cond) ((void)0)
#else
#define LX_ASSERT(cond) assert(cond)
#endif

#endif
