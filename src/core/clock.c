/*
 * clock.c - the accounting clock (clock.h): CLOCK_REALTIME in microseconds, or the override a
 * test installed. The override is two atomic words read with relaxed loads: a reader sees the
 * old or the new function, never a torn pair worth worrying about (tests set it before the
 * gateway starts, or between phases while nothing is admitted).
 */
#include "core/clock.h"

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

typedef int64_t (*clock_fn)(void *arg);

static _Atomic(clock_fn) override_fn;
static _Atomic(void *) override_arg;

int64_t lx_clock_now_us(void)
{
    clock_fn fn = atomic_load_explicit(&override_fn, memory_order_acquire);
    if (fn != NULL)
        return fn(atomic_load_explicit(&override_arg, memory_order_relaxed));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lx_clock_override(int64_t (*fn)(void *arg), void *arg)
{
    atomic_store_explicit(&override_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&override_fn, fn, memory_order_release);
}
