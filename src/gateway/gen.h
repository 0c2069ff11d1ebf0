/*
 * gen.h - a configuration generation as one worker uses it, and what it is built from: the
 * health table with its row mapping (shared by every worker) and the TLS contexts (shared).
 * Implemented in gen.c. Not for other layers.
 */
#ifndef LX_GATEWAY_GEN_H
#define LX_GATEWAY_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/qsbr.h"
#include "proxy/conn_pool.h"
#include "route/fleet.h"
#include "route/health.h"
#include "route/load_slot.h"
#include "route/plan.h"
#include "route/prefix_est.h"
#include "route/queue.h"
#include "route/ring.h"
#include "tls/tls.h"

struct lx_gw_worker;

/*
 * The health table of one configuration, shared by every worker's generation built from it
 * (and by the control thread, which re-scores it). Rows are (model, route, endpoint) in
 * configuration order: the row of endpoint j of route r of model m is route_row[model_base[m]
 * + r] + j. Freed when the last generation using it and the gateway have let go.
 */
typedef struct lx_gw_health {
    atomic_uint refs;
    lx_health_t *table;
    size_t *model_base; /* per model: its first route's index into route_row */
    size_t *route_row;  /* per route of every model: the row of its endpoint 0 */
    size_t n_rows;
    /* The fleet's signals (routing.balance fleet; gateway/scrape.c): */
    lx_load_slot_t *load;  /* per row: its server's last scrape (provider `metrics`) */
    atomic_bool *scraping; /* per endpoint (pool order: providers in order, then endpoints):
                              a scrape of it is in flight; set by the control thread, cleared
                              by the worker that ran it (release: its publishes are done) */
    size_t n_endpoints;
    lx_ring_t *rings;      /* per route (model_base[m] + r), balance fleet only, else NULL: the
                              ring of its provider's endpoints (n_replicas 0 for one endpoint) */
    uint64_t *ring_points; /* the rings' points */
    lx_prefix_est_t *prefix_est; /* per row: the prefix-hit estimate (route/prefix_est.h),
                                    balance fleet only, else NULL; written by every worker */
} lx_gw_health_t;

/* The health table of <cfg> with <n_shards> writer shards, rows carried over from <previous>
 * (may be NULL); its score snapshots are reused only after the grace periods of <qsbr> (the
 * workers' quiescent points, core/qsbr.h), which must outlive the table's re-scorings. */
lx_gw_health_t *lx_gw_health_new(const lx_config_t *cfg, unsigned n_shards,
                                 const lx_gw_health_t *previous, lx_qsbr_t *qsbr);
lx_gw_health_t *lx_gw_health_ref(lx_gw_health_t *h);
void lx_gw_health_unref(lx_gw_health_t *h);

static inline size_t lx_gw_row(const lx_gw_health_t *h, size_t model, size_t route, size_t ep)
{
    return h->route_row[h->model_base[model] + route] + ep;
}

/*
 * The TLS contexts of one configuration: a server context per TLS listen entry and a client
 * context per provider with an https endpoint. Built on the control thread (start, reload),
 * shared read-only by every worker, refcounted (atomic): each generation holds one reference,
 * and each TLS session holds its own context, so a reload never cuts a connection.
 */
typedef struct lx_gw_tls {
    atomic_uint refs;
    lx_tls_server_t **servers; /* per listen entry; NULL for plain HTTP */
    size_t n_servers;
    lx_tls_client_t **clients; /* per provider; NULL without an https endpoint */
    size_t n_clients;
} lx_gw_tls_t;

/* Builds the TLS contexts of <cfg> (control thread: start, reload). The files were checked by
 * the configuration load; they are read again here, so a file changed since fails now, with
 * its path. insecure_skip_verify is warned about at every load. NULL and *rc on failure. */
lx_gw_tls_t *lx_gw_tls_new(const lx_config_t *cfg, int *rc);
lx_gw_tls_t *lx_gw_tls_ref(lx_gw_tls_t *t);
void lx_gw_tls_unref(lx_gw_tls_t *t); /* NULL is a no-op */

/*
 * One configuration generation as one worker uses it: the snapshot and everything derived
 * from it. The worker holds the current one; each request (and probe) holds the one it
 * started with, so a reload never changes a request midway. A retired generation's pools are
 * disposed when its last request ends (its idle upstream connections close then), and its
 * memory is freed by the worker's next sweeps (lx_gw_gen_sweep): a DNS lookup or a closing
 * connection of a disposed pool may still point at it for a loop turn or two.
 */
typedef struct lx_gw_gen {
    struct lx_gw_gen *next_retired;
    unsigned refs;
    uint64_t disposed_tick; /* the worker's sweep tick when refs reached 0 */
    lx_config_t *cfg;
    lx_conn_pool_t *pools; /* one per provider endpoint, indexed by pool_base[provider] + j */
    size_t *pool_base;
    size_t n_pools;
    uint32_t *rr;           /* per provider: next replica (round robin) */
    uint64_t rr_plan;       /* routing.strategy round_robin: the rotation counter */
    lx_gw_health_t *health; /* a reference */
    lx_gw_tls_t *tls;       /* a reference */
    uint32_t *in_flight;    /* per health row: this worker's attempts in flight */
    uint64_t serial;        /* tells generations apart in the session table */
    char *models_json;
    size_t models_json_len;
    lx_queue_t *queues;     /* per model: this worker's admission queue (routing.queue_size > 0
                               under balance fleet), else NULL. A queued request holds the
                               generation, so its queue outlives every node on it. */
    lx_fleet_move_t *moves; /* LX_FLEET_MOVES keys the queue moved off their ring home
                               (route/fleet.h), with the queues, else NULL */
    bool disposed;
} lx_gw_gen_t;

/* A generation of <cfg> for worker <w> (its pools on the worker's loop), holding a reference
 * to <health> and <tls>. NULL when out of memory. */
lx_gw_gen_t *lx_gw_gen_new(struct lx_gw_worker *w, lx_config_t *cfg, lx_gw_health_t *health,
                           lx_gw_tls_t *tls, uint64_t serial);
lx_gw_gen_t *lx_gw_gen_ref(lx_gw_gen_t *g);
/* Drops a reference; at zero the generation's pools are disposed (its idle connections close)
 * and the worker's sweep frees it once nothing reaches it. */
void lx_gw_gen_unref(struct lx_gw_worker *w, lx_gw_gen_t *g);
/* Closes the generation's pools and lets go of its health table (once). */
void lx_gw_gen_dispose(lx_gw_gen_t *g);
void lx_gw_gen_free(struct lx_gw_worker *w, lx_gw_gen_t *g);
/* Frees <w>'s retired generations nothing reaches any more (the flush timer calls it). */
void lx_gw_gen_sweep(struct lx_gw_worker *w);

/* The routing view of generation <g> (route/plan.h), with <rng> the worker's random state. */
static inline lx_route_ctx_t lx_gw_route_ctx(lx_gw_gen_t *g, uint64_t *rng)
{
    const lx_gw_health_t *h = g->health;
    return (lx_route_ctx_t){.cfg = g->cfg,
                            .table = h->table,
                            .model_base = h->model_base,
                            .route_row = h->route_row,
                            .in_flight = g->in_flight,
                            .rr = g->rr,
                            .rr_plan = &g->rr_plan,
                            .rng = rng,
                            .load = h->load,
                            .rings = h->rings,
                            .moves = g->moves};
}

#endif
