/*
 * service.h - the running gateway (struct lx_gateway of gateway.h): its workers, its current
 * configuration's health table and TLS contexts, and the control thread's state. Shared by
 * gateway.c (start, stop), control.c (the control thread), worker.c and probe.c. Not for
 * other layers.
 */
#ifndef LX_GATEWAY_SERVICE_H
#define LX_GATEWAY_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "gateway/gen.h"
#include "gateway/worker.h"
#include "store/store.h"

/* Active probes: what the control thread knows of one endpoint (probe.c). */
typedef struct lx_gw_probe_state {
    uint64_t total;    /* outcomes recorded in its rows at the last look */
    uint64_t since_ms; /* ... unchanged since then; 0: not looked at yet */
} lx_gw_probe_state_t;

struct lx_gateway {
    lx_config_t *cfg;
    lx_store_t *store;      /* keys, ledgers, usage records (store/store.h) */
    lx_gw_health_t *health; /* the current configuration's table (a reference) */
    lx_qsbr_t *qsbr;        /* the workers' quiescent points (reader k: worker k), which every
                               health table's score snapshots wait for (core/qsbr.h) */
    lx_gw_tls_t *tls;       /* the starting configuration's TLS contexts (a reference) */
    /* The control thread: health re-scoring, and building reloads' health tables. */
    uv_thread_t ctl_thread;
    uv_loop_t ctl_loop;
    uv_async_t ctl_wakeup;
    uv_timer_t ctl_rescore;
    uv_timer_t ctl_probe;
    uv_timer_t ctl_scrape;            /* routing.scrape_interval, while a provider has `metrics` */
    lx_config_t *ctl_cfg;             /* the configuration of `health` (a reference) */
    lx_gw_probe_state_t *probe_state; /* per endpoint of every provider, in config order */
    size_t n_probe_state;
    unsigned next_probe_worker;
    unsigned next_scrape_worker;
    uv_mutex_t ctl_lock;     /* guards the two fields below */
    lx_config_t *ctl_reload; /* a configuration to publish (a reference), or NULL */
    bool ctl_stop;
    uint64_t next_serial;
    lx_gw_worker_t *workers;
    unsigned n_workers;
    uint16_t *ports; /* per listen entry */
    atomic_uint running;
    atomic_size_t generations; /* allocated in all workers, current and retired (tests) */
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
};

#endif
