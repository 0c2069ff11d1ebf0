/*
 * config.c - the life of a configuration snapshot: references, model lookup, and the summary
 * printed by `llmux -t` (amounts of money from their exact micro-dollars).
 *
 * A snapshot is built by config_parse.c inside its own arena (config_arena.c) and never
 * changes afterwards, so any thread may read it without a lock while it holds a reference.
 * The last lx_config_unref() frees the arena in one call, wiping the secrets it held.
 */
#include "config/config.h"

#include <string.h>

#include "config/config_arena.h"
#include "config/config_value.h"

lx_config_t *lx_config_ref(lx_config_t *cfg)
{
    /* Taking a reference needs no ordering: the caller already holds one. */
    atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);
    return cfg;
}

void lx_config_unref(lx_config_t *cfg)
{
    if (cfg == NULL)
        return;
    /* acq_rel: every holder's reads happen before the free by whoever drops the last one. */
    if (atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_acq_rel) == 1)
        lx_config_arena_free(cfg->arena); /* cfg itself lives in the arena */
}

const lx_config_model_t *lx_config_find_model(const lx_config_t *cfg, const char *id, size_t id_len)
{
    size_t lo = 0, hi = cfg->n_models;

    /* Binary search over model_order, ids compared as byte strings (id may not end in NUL). */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const lx_config_model_t *m = &cfg->models[cfg->model_order[mid]];
        size_t len = strlen(m->id);
        int c = memcmp(m->id, id, len < id_len ? len : id_len);
        if (c == 0)
            c = len < id_len ? -1 : len > id_len;
        if (c == 0)
            return m;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const char *duration(uint64_t ms, char *buf, size_t size)
{
    lx_config_value_format_duration(ms, buf, size);
    return buf;
}

static const char *bytes(uint64_t n, char *buf, size_t size)
{
    lx_config_value_format_size(n, buf, size);
    return buf;
}

/* µ$ as USD with the fewest digits: 1000000 is "1", 150000 is "0.15", 1 is "0.000001". */
static const char *usd(int64_t micros, char *buf, size_t size)
{
    uint64_t v = micros < 0 ? 0 : (uint64_t)micros;
    unsigned frac = (unsigned)(v % 1000000);
    int digits = 6;
    while (frac != 0 && frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    if (frac == 0)
        snprintf(buf, size, "%llu", (unsigned long long)(v / 1000000));
    else
        snprintf(buf, size, "%llu.%0*u", (unsigned long long)(v / 1000000), digits, frac);
    return buf;
}

static void dump_provider(const lx_config_t *cfg, const lx_config_provider_t *pv, FILE *out)
{
    char a[32], b[32], c[32];

    fprintf(out, "  %s: %s\n", pv->name, pv->base_url);
    fprintf(out, "    endpoints:");
    for (size_t i = 0; i < pv->n_endpoints; i++)
        fprintf(out, " %s", pv->endpoints[i].url);
    fprintf(out, "\n    path: %s\n", pv->base_path[0] != '\0' ? pv->base_path : "/");
    fprintf(out, "    api_key: %s\n", pv->api_key != NULL ? "(set)" : "(none)");
    for (size_t i = 0; i < pv->n_headers; i++)
        fprintf(out, "    header: %s: ***\n", pv->headers[i].name);
    if (pv->max_connections > 0)
        fprintf(out, "    connections: at most %u open, %u idle, per worker and endpoint\n",
                pv->max_connections, pv->max_idle_connections);
    else
        fprintf(out, "    connections: no bound, %u idle kept, per worker and endpoint\n",
                pv->max_idle_connections);
    fprintf(
        out, "    timeouts: connect %s, first_byte %s, idle %s\n",
        duration(pv->connect_timeout_ms ? pv->connect_timeout_ms : cfg->upstream_connect_timeout_ms,
                 a, sizeof(a)),
        duration(pv->first_byte_timeout_ms ? pv->first_byte_timeout_ms
                                           : cfg->upstream_first_byte_timeout_ms,
                 b, sizeof(b)),
        duration(pv->idle_timeout_ms ? pv->idle_timeout_ms : cfg->upstream_idle_timeout_ms, c,
                 sizeof(c)));
    fprintf(out, "    data_collection: %s, zdr: %s, probe: %s\n",
            pv->data_collection_deny ? "deny" : "allow", pv->zdr ? "yes" : "no",
            pv->probe_path != NULL ? pv->probe_path : "off");
    if (pv->metrics_path != NULL || pv->max_in_flight > 0)
        fprintf(out, "    metrics: %s, max_in_flight: %u per endpoint%s\n",
                pv->metrics_path != NULL ? pv->metrics_path : "off", pv->max_in_flight,
                pv->max_in_flight == 0 ? " (unknown)" : "");
    if (pv->no_hedge)
        fprintf(out, "    hedge: no (never a hedge's target, its requests not hedged)\n");
    bool https = false;
    for (size_t i = 0; i < pv->n_endpoints; i++)
        https = https || pv->endpoints[i].tls;
    const lx_config_provider_tls_t *t = &pv->tls;
    if (!https && t->ca_file == NULL && !t->insecure_skip_verify && t->client.cert == NULL)
        return;
    if (t->insecure_skip_verify)
        fprintf(out, "    tls: INSECURE: insecure_skip_verify, the provider's certificate is not "
                     "checked\n");
    else
        fprintf(out, "    tls: verify against %s, server_name %s\n",
                t->ca_file != NULL ? t->ca_file : "the system CA bundle",
                t->server_name != NULL ? t->server_name : "(the endpoint's host)");
    if (t->client.cert != NULL)
        fprintf(out, "    tls client certificate: %s\n", t->client.cert);
}

static void dump_model(const lx_config_t *cfg, const lx_config_model_t *m, FILE *out)
{
    char a[32], b[32];

    fprintf(out, "  %s (context %u, owned by %s, created %lld)\n", m->id, m->context_length,
            m->owned_by, (long long)m->created);
    for (size_t i = 0; i < m->n_routes; i++) {
        const lx_config_route_t *r = &m->routes[i];
        fprintf(out, "    -> %s as %s, $%s prompt / $%s completion per 1M tokens\n",
                cfg->providers[r->provider].name, r->upstream_model,
                usd(r->price_prompt_micros, a, sizeof(a)),
                usd(r->price_completion_micros, b, sizeof(b)));
        if (r->n_parameters > 0) {
            fprintf(out, "       parameters:");
            for (size_t j = 0; j < r->n_parameters; j++)
                fprintf(out, " %s", r->parameters[j]);
            fprintf(out, "\n");
        }
    }
}

/* Who may call: client keys (auth), the admin key and the management keys, by name. */
static void dump_auth(const lx_config_t *cfg, FILE *out)
{
    if (cfg->auth_none) {
        fprintf(out, "auth: none (requests are not checked for keys)\n");
    } else {
        fprintf(out, "auth: %zu key%s:", cfg->n_keys, cfg->n_keys == 1 ? "" : "s");
        for (size_t i = 0; i < cfg->n_keys; i++)
            fprintf(out, " %s", cfg->keys[i].name);
        fprintf(out, "\n");
    }
}

static void dump_admin(const lx_config_t *cfg, FILE *out)
{
    fprintf(out, "admin: %s, /metrics %s\n", cfg->admin_enabled ? "on (key set)" : "off",
            cfg->metrics_public ? "public" : "behind the admin key");
    fprintf(out, "management keys: %zu", cfg->n_admin_keys);
    for (size_t i = 0; i < cfg->n_admin_keys; i++)
        fprintf(out, "%s%s", i == 0 ? ": " : " ", cfg->admin_keys[i].name);
    fprintf(out, "\n");
}

/* routing.balance, scrape_interval and the admission queue. */
static void dump_fleet(const lx_config_t *cfg, FILE *out)
{
    static const char *const balances[] = {"default (power of two choices)", "round_robin",
                                           "least_request", "fleet"};
    char a[32], b[32], c[32];
    fprintf(out, "balance: %s, scrape_interval %s, affinity slack %g eps %g wait %s, ",
            balances[cfg->routing_balance & 3],
            duration(cfg->routing_scrape_interval_ms, a, sizeof(a)), cfg->routing_affinity_slack,
            cfg->routing_affinity_eps_milli / 1000.0,
            duration(cfg->routing_affinity_wait_ms, c, sizeof(c)));
    if (cfg->routing_queue_size == 0)
        fprintf(out, "admission queue off\n");
    else
        fprintf(out, "admission queue %u requests per model, timeout %s, ", cfg->routing_queue_size,
                duration(cfg->routing_queue_timeout_ms, b, sizeof(b)));
    if (cfg->routing_queue_size > 0 && cfg->routing_queue_target_ms == 0)
        fprintf(out, "standing-queue detection off\n");
    else if (cfg->routing_queue_size > 0)
        fprintf(out, "standing at waits over %s for %s\n",
                duration(cfg->routing_queue_target_ms, a, sizeof(a)),
                duration(cfg->routing_queue_interval_ms, c, sizeof(c)));
    if (cfg->routing_hedge_budget_ppm == 0)
        fprintf(out, "hedging off\n");
    else
        fprintf(out, "hedging: budget %g%% of requests\n", cfg->routing_hedge_budget_ppm / 1e4);
}

void lx_config_dump(const lx_config_t *cfg, FILE *out)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32];

    fprintf(out, "configuration %s\n", cfg->path);
    fprintf(out, "listen:");
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const lx_config_listen_t *l = &cfg->listen[i];
        bool v6 = strchr(l->host, ':') != NULL;
        fprintf(out, " %s%s%s:%u%s%s", v6 ? "[" : "", l->host, v6 ? "]" : "", l->port,
                l->is_loopback ? " (loopback)" : "", l->tls != NULL ? " (tls)" : "");
    }
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const lx_config_listen_tls_t *t = cfg->listen[i].tls;
        if (t == NULL)
            continue;
        fprintf(out, "\n  tls on port %u: TLS 1.2, certificates:", cfg->listen[i].port);
        for (size_t j = 0; j < t->n_certs; j++)
            fprintf(out, " %s", t->certs[j].cert);
    }
    fprintf(out, "\nworkers: %u\n", cfg->workers);
    if (cfg->busy_poll_us > 0)
        fprintf(out, "busy_poll_us: %llu\n", (unsigned long long)cfg->busy_poll_us);
    fprintf(out, "limits: max_header_size %s, max_body_size %s, default_max_cost $%s\n",
            bytes(cfg->max_header_size, a, sizeof(a)), bytes(cfg->max_body_size, b, sizeof(b)),
            usd(cfg->limits_default_max_cost, c, sizeof(c)));
    fprintf(out, "store: %s, commit_interval %s, retention %s\n",
            cfg->store_path != NULL ? cfg->store_path : "(none)",
            duration(cfg->store_commit_interval_ms, a, sizeof(a)),
            duration(cfg->store_retention_s * 1000, b, sizeof(b)));
    fprintf(out,
            "timeouts: client_header %s, client_body %s, keepalive %s, upstream_connect %s, "
            "upstream_first_byte %s, upstream_idle %s, shutdown %s\n",
            duration(cfg->client_header_timeout_ms, a, sizeof(a)),
            duration(cfg->client_body_timeout_ms, b, sizeof(b)),
            duration(cfg->keepalive_timeout_ms, c, sizeof(c)),
            duration(cfg->upstream_connect_timeout_ms, d, sizeof(d)),
            duration(cfg->upstream_first_byte_timeout_ms, e, sizeof(e)),
            duration(cfg->upstream_idle_timeout_ms, f, sizeof(f)),
            duration(cfg->shutdown_timeout_ms, g, sizeof(g)));
    fprintf(out, "providers (%zu):\n", cfg->n_providers);
    for (size_t i = 0; i < cfg->n_providers; i++)
        dump_provider(cfg, &cfg->providers[i], out);
    fprintf(out, "models (%zu):\n", cfg->n_models);
    for (size_t i = 0; i < cfg->n_models; i++)
        dump_model(cfg, &cfg->models[i], out);
    dump_auth(cfg, out);
    fprintf(out, "log: access_log %s, level %s\n",
            cfg->access_log == NULL             ? "off"
            : strcmp(cfg->access_log, "-") == 0 ? "- (stdout)"
                                                : cfg->access_log,
            cfg->log_level >= 0 && cfg->log_level < 4 ? levels[cfg->log_level] : "?");
    char ka[32], kd[32];
    lx_config_value_format_duration(cfg->stream_keepalive_interval_ms, ka, sizeof(ka));
    lx_config_value_format_duration(cfg->stream_keepalive_delay_ms, kd, sizeof(kd));
    fprintf(out,
            "stream: keepalive every %s (first after %s), early_commit %s, "
            "always_send_usage %s\n",
            ka, kd, cfg->stream_early_commit ? "on" : "off",
            cfg->stream_always_send_usage ? "on" : "off");
    fprintf(out, "routing: %s, max_attempts %u, deadline %s, session_ttl %s\n",
            cfg->routing_strategy == LX_CONFIG_ROUTING_ROUND_ROBIN ? "round_robin" : "health",
            cfg->routing_max_attempts, duration(cfg->routing_deadline_ms, a, sizeof(a)),
            duration(cfg->routing_session_ttl_ms, b, sizeof(b)));
    dump_fleet(cfg, out);
    fprintf(out,
            "health: rescore every %s over %s, breaker after %u failures for %s (up to %s), "
            "probes every %s, exploration %g\n",
            duration(cfg->health_rescore_interval_ms, a, sizeof(a)),
            duration(cfg->health_window_ms, b, sizeof(b)), cfg->health_breaker_failures,
            duration(cfg->health_breaker_cooldown_ms, c, sizeof(c)),
            duration(cfg->health_breaker_max_cooldown_ms, d, sizeof(d)),
            duration(cfg->health_probe_interval_ms, e, sizeof(e)), cfg->health_exploration);
    dump_admin(cfg, out);
}
