/*
 * config.h - the configuration snapshot.
 *
 * lx_config_t is immutable once loaded: built on the control loop from the YAML file, shared
 * read-only by every worker, refcounted, and freed when the last holder lets go (a request
 * keeps the snapshot it started with across a reload). All strings and arrays of one snapshot
 * live in allocations owned by it.
 */
#ifndef LX_CONFIG_H
#define LX_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A certificate chain and its private key (PEM file paths, as written). */
typedef struct lx_config_cert {
    char *cert;
    char *key;
} lx_config_cert_t;

/* A listen entry's `tls`: HTTPS on that address. Every file was loaded and checked. */
typedef struct lx_config_listen_tls {
    lx_config_cert_t *certs; /* `cert`/`key` first (the default), then `certificates`, chosen */
    size_t n_certs;          /* ... by the SNI name a client asks for */
    unsigned min_version;    /* 12 (TLS 1.2) */
} lx_config_listen_tls_t;

/* One `listen` entry: "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080" or ":8080", or a mapping
 * {address, tls}. */
typedef struct lx_config_listen {
    char *host; /* numeric address, never NULL ("0.0.0.0" for ":8080") */
    uint16_t port;
    bool is_loopback;            /* 127.0.0.0/8 or ::1 */
    lx_config_listen_tls_t *tls; /* NULL: plain HTTP */
} lx_config_listen_t;

/* A provider's `tls` (for its https endpoints). */
typedef struct lx_config_provider_tls {
    char *ca_file;             /* NULL: the system bundle */
    bool insecure_skip_verify; /* no certificate check at all: warned about at every load */
    lx_config_cert_t client;   /* client certificate for mutual TLS; cert NULL for none */
    char *server_name;         /* SNI and verified name; NULL: the endpoint's host */
} lx_config_provider_tls_t;

/* One replica of a provider: scheme, host and port; the path prefix is the provider's. */
typedef struct lx_config_endpoint {
    char *url;  /* as written, for logs ("http://10.0.0.7:8000") */
    char *host; /* host name or numeric address, unbracketed */
    uint16_t port;
    bool tls; /* https */
} lx_config_endpoint_t;

typedef struct lx_config_header {
    char *name;
    char *value;
} lx_config_header_t;

typedef struct lx_config_provider {
    char *name;
    char *base_url;  /* as written */
    char *base_path; /* path part of base_url without a trailing '/', "" for none ("/v1") */
    lx_config_endpoint_t *endpoints; /* base_url's host first unless `endpoints` is given */
    size_t n_endpoints;
    char *api_key; /* resolved from ${ENV}, NULL when absent; never logged */
    lx_config_header_t *headers;
    size_t n_headers;
    uint32_t max_connections;      /* per worker, per endpoint, busy ones included; 0 (default):
                                      no bound */
    uint32_t max_idle_connections; /* idle ones kept for reuse, per worker and endpoint; 64 */
    /* Per-provider timeouts in milliseconds; 0 = use the global upstream ones. */
    uint64_t connect_timeout_ms;
    uint64_t first_byte_timeout_ms;
    uint64_t idle_timeout_ms;
    /* Routing filters a request may ask for (`provider.data_collection: deny`, `zdr: true`). */
    bool data_collection_deny; /* `data_collection: deny`: prompts are not stored or trained on */
    bool zdr;                  /* zero data retention */
    char *probe_path;          /* active health probe: GET of this path, NULL when off */
    char *metrics_path;        /* `metrics`: the model server's Prometheus page on each endpoint's
                                  host (scraped every routing.scrape_interval), NULL when off */
    uint32_t max_in_flight;    /* per endpoint, all workers: full at this many requests in
                                  flight (routing.balance fleet queues beyond); 0: unknown */
    bool no_hedge;             /* `hedge: false`: never a hedge's target, and a request served
                                  by it is not hedged (paid per attempt) */
    lx_config_provider_tls_t tls;
    uint32_t prefix_cache_tokens; /* each endpoint's prefix (KV) cache, tokens: the prefix-hit
                                     estimate's model (route/prefix_est.h); default 262144 */
} lx_config_provider_t;

/* One provider serving a model. */
typedef struct lx_config_route {
    size_t provider;         /* index into lx_config_t.providers */
    char *upstream_model;    /* model name sent upstream; the public id when not given */
    double price_prompt;     /* USD per million prompt tokens */
    double price_completion; /* USD per million completion tokens */
    char **parameters;       /* request parameters it supports (require_parameters); */
    size_t n_parameters;     /* ... NULL and 0 when not listed: everything */
    /* The same prices exactly, in µ$ per million tokens (USD per token times 1e12), read from
     * the YAML text without floating point ("0.15" is 150000): what budgets and costs use. */
    int64_t price_prompt_micros;
    int64_t price_completion_micros;
} lx_config_route_t;

typedef struct lx_config_model {
    char *id;       /* public id, e.g. "meta-llama/llama-3.1-70b-instruct" */
    char *owned_by; /* the part of id before '/', or "llmux" */
    uint32_t context_length;
    int64_t created; /* unix seconds: `created` key, or the load time */
    lx_config_route_t *routes;
    size_t n_routes;
} lx_config_model_t;

/* A key's class in the admission queue (routing.queue_size): interactive requests are served
 * before batch ones. */
enum lx_config_priority {
    LX_CONFIG_PRIORITY_INTERACTIVE = 0, /* the default */
    LX_CONFIG_PRIORITY_BATCH = 1,
};

typedef struct lx_config_key {
    char *name;
    uint8_t digest[32]; /* SHA-256 of the key */
    uint8_t priority;   /* enum lx_config_priority (auth.keys only) */
} lx_config_key_t;

enum lx_config_strategy {
    LX_CONFIG_ROUTING_HEALTH,     /* health, price and preferences decide (the default) */
    LX_CONFIG_ROUTING_ROUND_ROBIN /* plain rotation, no health: for comparisons */
};

/* How one replica (endpoint) of a provider is chosen (`routing.balance`). */
enum lx_config_balance {
    LX_CONFIG_BALANCE_DEFAULT,       /* absent: the power of two choices over this worker's
                                      * in-flight counts (round_robin strategy: rotation) */
    LX_CONFIG_BALANCE_ROUND_ROBIN,   /* rotation over the available replicas */
    LX_CONFIG_BALANCE_LEAST_REQUEST, /* least in flight, all workers */
    LX_CONFIG_BALANCE_FLEET,         /* prefix affinity under load (route/fleet.h) */
};

typedef struct lx_config {
    atomic_uint refcount;
    char *path; /* the file it was loaded from */

    lx_config_listen_t *listen;
    size_t n_listen;
    unsigned workers;      /* resolved: `auto` becomes the number of online cores */
    uint64_t busy_poll_us; /* after a read, keep polling without sleeping this long; 0: off */

    uint64_t max_header_size; /* bytes, default 16KiB */
    uint64_t max_body_size;   /* bytes, default 32MiB */
    uint64_t max_body_memory; /* bytes of request bodies buffered at once, all workers;
                               * default 256MiB */
    /* What a request that names no max_tokens / max_completion_tokens reserves against its
     * key's budget at admission (`limits.default_max_cost`), in µ$; default 1000000 ($1). */
    int64_t limits_default_max_cost;

    /* The embedded store of keys, budgets and usage records (`store`): */
    char *store_path; /* absolute: a relative `path` is resolved against the working directory
                       * at load (default "<cwd>/llmux.db"); never ":memory:" */
    uint64_t store_commit_interval_ms; /* longest wait of a record for its commit, default 50ms */
    uint64_t store_retention_s;        /* usage records older than this are pruned, default 90d */

    /* Timeouts in milliseconds. */
    uint64_t client_header_timeout_ms;       /* default 10s */
    uint64_t client_body_timeout_ms;         /* default 60s */
    uint64_t keepalive_timeout_ms;           /* default 75s */
    uint64_t upstream_connect_timeout_ms;    /* default 5s */
    uint64_t upstream_first_byte_timeout_ms; /* default 60s */
    uint64_t upstream_idle_timeout_ms;       /* default 120s */
    uint64_t shutdown_timeout_ms;            /* default 30s */

    lx_config_provider_t *providers;
    size_t n_providers;
    lx_config_model_t *models;
    size_t n_models;

    bool auth_none; /* `auth: none`: explicit opt-out of key checks */
    lx_config_key_t *keys;
    size_t n_keys;

    /* Streams (`stream`): */
    uint64_t stream_keepalive_interval_ms; /* ": keep-alive" comment period, default 15s */
    uint64_t stream_keepalive_delay_ms;    /* the first one after, default 2s */
    bool stream_early_commit;              /* answer 200 before the upstream does (keep-alives) */
    bool stream_always_send_usage;         /* keep the usage chunk llmux asked for, as OpenRouter */

    /* Routing (`routing`): */
    enum lx_config_strategy routing_strategy;
    uint32_t routing_max_attempts;          /* attempts per request, default 3 */
    uint64_t routing_deadline_ms;           /* all attempts of one request, default 90s */
    uint64_t routing_session_ttl_ms;        /* session stickiness after the last use, default 10m */
    enum lx_config_balance routing_balance; /* default LX_CONFIG_BALANCE_DEFAULT */
    uint64_t routing_scrape_interval_ms;    /* `metrics` scrapes, default 50ms */
    uint32_t routing_queue_size;            /* admission queue per model, all workers; 0: off */
    uint64_t routing_queue_timeout_ms;      /* longest wait in it, default 5s */
    double routing_affinity_slack;          /* balance fleet: the ring's replica is kept while its
                                             * cost is at most this over the best's (1.5) */
    uint32_t routing_affinity_eps_milli;    /* ... and the ring's bounded-load eps (500: 0.5) */
    uint32_t routing_hedge_budget_ppm;      /* routing.hedge_budget in millionths: extra attempts
                                             * per request hedging may add (50000: 5%); 0: off */
    uint64_t routing_affinity_wait_ms;      /* ... and a queued request's wait for its home
                                             * before its second replica (2x: any), 400ms */
    uint64_t routing_queue_target_ms;       /* the queue stands once waits stay at or above
                                             * this for queue_interval (route/codel.h): 100ms;
                                             * 0: off */
    uint64_t routing_queue_interval_ms;     /* ... that long: 500ms */

    /* The provider health table (`health`): */
    uint64_t health_rescore_interval_ms;     /* default 5m */
    uint64_t health_window_ms;               /* default 15m */
    uint32_t health_breaker_failures;        /* consecutive failures that eject, default 5 */
    uint64_t health_breaker_cooldown_ms;     /* first ejection, doubled on each repeat: 10s */
    uint64_t health_breaker_max_cooldown_ms; /* default 5m */
    uint64_t health_probe_interval_ms;       /* active probes of idle endpoints, default 30s */
    double health_exploration;               /* share for rows without data or demoted: 0.02 */

    /* The admin API (`admin`): the /admin/ routes need this key; absent: they answer 404. */
    bool admin_enabled; /* `admin.sha256` is set */
    uint8_t admin_digest[32];
    bool metrics_public; /* /metrics without the admin key (default true) */
    /* Management keys, which may call the key management API (/api/v1/keys): `admin.sha256`
     * first, named "admin", when set, then each of `admin.keys` ({name, sha256}). Names and
     * digests are unique, and no digest is also one of `keys` (auth): a key is either a
     * management key or a client key. NULL and 0 when there are none. */
    lx_config_key_t *admin_keys;
    size_t n_admin_keys;

    char *access_log; /* path, "-" for stdout (default), NULL when `access_log: off` */
    int log_level;    /* 0 error, 1 warn, 2 info (default), 3 debug */

    /* Private to src/config/. */
    struct lx_config_arena *arena; /* owns this struct and everything it points to */
    size_t *model_order;           /* indexes into models, sorted by id (lx_config_find_model) */
} lx_config_t;

/*
 * Loads and validates <path>. On success returns 0 and a snapshot with refcount 1 in *out.
 * On failure returns LX_ECONFIG (or a libc error for an unreadable file), *out is NULL, and
 * one line per error, "file:line:column: message\n", has been written to <errors> (when not
 * NULL). Secrets (api keys) never appear in messages.
 */
int lx_config_load(const char *path, FILE *errors, lx_config_t **out);

/* The same from a string; <name> stands for the file in messages. Used by tests and fuzzing. */
int lx_config_parse(const char *name, const char *text, size_t len, FILE *errors,
                    lx_config_t **out);

lx_config_t *lx_config_ref(lx_config_t *cfg);
void lx_config_unref(lx_config_t *cfg); /* NULL is a no-op; frees at zero */

/* Finds a model by public id; NULL when unknown. */
const lx_config_model_t *lx_config_find_model(const lx_config_t *cfg, const char *id,
                                              size_t id_len);

/* Writes a human summary of the checked configuration for `llmux -t`, secrets masked. */
void lx_config_dump(const lx_config_t *cfg, FILE *out);

#endif
