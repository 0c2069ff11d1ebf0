/*
 * test_config.c - the configuration layer end to end: loading conf/llmux.yaml, every default,
 * values through the parser, error positions and texts, secrets, references, lookup and the
 * summary. The value syntaxes alone are in test_config_value.c.
 *
 * Runs with the repository root as working directory (CTest sets it).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_value.h"
#include "core/status.h"

#include "../tls/pki.h"

/* The smallest valid configuration; tests add to it (YAML keys may come in any order). */
#define MINIMAL                                                                                    \
    "listen: 127.0.0.1:8080\n"                                                                     \
    "providers:\n"                                                                                 \
    "  - name: p\n"                                                                                \
    "    base_url: http://127.0.0.1:9000/v1\n"                                                     \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 100\n"                                                                    \
    "    providers:\n"                                                                             \
    "      - provider: p\n"

/* Parses <text> as "t.yaml"; *errs receives everything written to the error stream. */
static int parse(const char *text, char **errs, lx_config_t **cfg)
{
    size_t n;
    FILE *f = open_memstream(errs, &n);
    assert_non_null(f);
    int rc = lx_config_parse("t.yaml", text, strlen(text), f, cfg);
    fclose(f);
    return rc;
}

/* Parses a text that must be valid; fails the test with the errors otherwise. */
static lx_config_t *parse_ok(const char *text)
{
    char *errs = NULL;
    lx_config_t *cfg = NULL;
    int rc = parse(text, &errs, &cfg);
    if (rc != 0)
        fprintf(stderr, "unexpected errors:\n%s", errs);
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    assert_string_equal(errs, "");
    free(errs);
    return cfg;
}

/* Parses a text that must be refused; returns the error output (free it). */
static char *parse_bad(const char *text)
{
    char *errs = NULL;
    lx_config_t *cfg = (lx_config_t *)1;
    assert_int_equal(parse(text, &errs, &cfg), LX_ECONFIG);
    assert_null(cfg);
    assert_non_null(errs);
    return errs;
}

/* Asserts that <text> is refused with an error containing <needle>. */
static void expect_error(const char *text, const char *needle)
{
    char *errs = parse_bad(text);
    if (strstr(errs, needle) == NULL)
        fail_msg("expected an error containing \"%s\", got:\n%s", needle, errs);
    free(errs);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static char *dump(const lx_config_t *cfg)
{
    char *text = NULL;
    size_t n;
    FILE *f = open_memstream(&text, &n);
    assert_non_null(f);
    lx_config_dump(cfg, f);
    fclose(f);
    return text;
}

/* ---- the shipped configuration ----------------------------------------------------------- */

static void test_default_file_loads(void **state)
{
    (void)state;
    lx_config_t *cfg = NULL;
    char *errs = NULL;
    size_t n;
    FILE *f = open_memstream(&errs, &n);
    int rc = lx_config_load("conf/llmux.yaml", f, &cfg);
    fclose(f);
    if (rc != 0)
        fprintf(stderr, "%s", errs);
    assert_int_equal(rc, 0);
    free(errs);

    assert_string_equal(cfg->path, "conf/llmux.yaml");
    assert_int_equal(cfg->n_listen, 1);
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen[0].port, 8080);
    assert_true(cfg->listen[0].is_loopback);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(cfg->workers, cores < 1 ? 1 : cores > 256 ? 256 : cores);
    assert_true(cfg->auth_none);
    assert_int_equal(cfg->n_keys, 0);

    assert_int_equal(cfg->n_providers, 2);
    const lx_config_provider_t *a = &cfg->providers[0], *b = &cfg->providers[1];
    assert_string_equal(a->name, "mock-a");
    assert_string_equal(a->base_path, "/v1");
    assert_int_equal(a->n_endpoints, 1);
    assert_string_equal(a->endpoints[0].host, "127.0.0.1");
    assert_int_equal(a->endpoints[0].port, 9101);
    assert_false(a->endpoints[0].tls);
    assert_null(a->api_key);
    assert_string_equal(b->name, "mock-b");
    assert_string_equal(b->base_path, "/v1");
    assert_int_equal(b->n_endpoints, 2);
    assert_int_equal(b->endpoints[0].port, 9102);
    assert_int_equal(b->endpoints[1].port, 9103);
    assert_string_equal(b->endpoints[1].url, "http://127.0.0.1:9103");

    assert_int_equal(cfg->n_models, 3);
    const lx_config_model_t *m = lx_config_find_model(cfg, "meta-llama/llama-3.1-8b-instruct",
                                                      strlen("meta-llama/llama-3.1-8b-instruct"));
    assert_non_null(m);
    assert_int_equal(m->context_length, 131072);
    assert_string_equal(m->owned_by, "meta-llama");
    assert_int_equal(m->n_routes, 2);
    assert_int_equal(m->routes[0].provider, 0);
    assert_string_equal(m->routes[0].upstream_model, "llama-3.1-8b");
    assert_int_equal(m->routes[1].provider, 1);
    assert_string_equal(m->routes[1].upstream_model, "meta-llama/Llama-3.1-8B-Instruct");
    assert_true(m->routes[0].price_prompt > 0 && m->routes[0].price_completion > 0);

    m = lx_config_find_model(cfg, "mistralai/mistral-7b-instruct", 29);
    assert_non_null(m);
    assert_int_equal(m->n_routes, 1);
    assert_int_equal(m->routes[0].provider, 1);
    assert_string_equal(m->routes[0].upstream_model, "mistralai/mistral-7b-instruct");

    m = lx_config_find_model(cfg, "openai/text-embedding-3-small", 29);
    assert_non_null(m);
    assert_string_equal(m->owned_by, "openai");
    assert_true(m->routes[0].price_prompt > 0);
    assert_true(m->routes[0].price_completion == 0);
    lx_config_unref(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    time_t before = time(NULL);
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(atomic_load(&cfg->refcount), 1);
    assert_string_equal(cfg->path, "t.yaml");
    assert_true(cfg->workers >= 1);
    assert_int_equal(cfg->max_header_size, 16 * 1024);
    assert_int_equal(cfg->max_body_size, 32 * 1024 * 1024);
    assert_int_equal(cfg->max_body_memory, 256 * 1024 * 1024);
    assert_int_equal(cfg->client_header_timeout_ms, 10000);
    assert_int_equal(cfg->client_body_timeout_ms, 60000);
    assert_int_equal(cfg->keepalive_timeout_ms, 75000);
    assert_int_equal(cfg->upstream_connect_timeout_ms, 5000);
    assert_int_equal(cfg->upstream_first_byte_timeout_ms, 60000);
    assert_int_equal(cfg->upstream_idle_timeout_ms, 120000);
    assert_int_equal(cfg->shutdown_timeout_ms, 30000);
    assert_string_equal(cfg->access_log, "-");
    assert_int_equal(cfg->log_level, 2);

    const lx_config_provider_t *p = &cfg->providers[0];
    assert_int_equal(p->max_connections, 0); /* no cap on busy connections */
    assert_int_equal(p->max_idle_connections, 64);
    assert_int_equal(p->connect_timeout_ms, 0);
    assert_int_equal(p->first_byte_timeout_ms, 0);
    assert_int_equal(p->idle_timeout_ms, 0);
    assert_null(p->api_key);
    assert_int_equal(p->n_headers, 0);

    const lx_config_model_t *m = &cfg->models[0];
    assert_string_equal(m->owned_by, "llmux");
    assert_true(m->created >= before && m->created <= time(NULL));
    assert_string_equal(m->routes[0].upstream_model, "m");
    assert_true(m->routes[0].price_prompt == 0 && m->routes[0].price_completion == 0);
    lx_config_unref(cfg);
}

static void test_settings(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n"
                                        "workers: 3\n"
                                        "limits: {max_header_size: 8KiB, max_body_size: 1MB}\n"
                                        "timeouts:\n"
                                        "  client_header: 250ms\n"
                                        "  client_body: 1m30s\n"
                                        "  keepalive: 1h\n"
                                        "  upstream_connect: 2s\n"
                                        "  upstream_first_byte: 5m\n"
                                        "  upstream_idle: 1h1m1s1ms\n"
                                        "  shutdown: 0s\n"
                                        "log: {access_log: off, level: debug}\n");
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->max_header_size, 8192);
    assert_int_equal(cfg->max_body_size, 1000000);
    assert_int_equal(cfg->client_header_timeout_ms, 250);
    assert_int_equal(cfg->client_body_timeout_ms, 90000);
    assert_int_equal(cfg->keepalive_timeout_ms, 3600000);
    assert_int_equal(cfg->upstream_connect_timeout_ms, 2000);
    assert_int_equal(cfg->upstream_first_byte_timeout_ms, 300000);
    assert_int_equal(cfg->upstream_idle_timeout_ms, 3661001);
    assert_int_equal(cfg->shutdown_timeout_ms, 0);
    assert_null(cfg->access_log);
    assert_int_equal(cfg->log_level, 3);
    lx_config_unref(cfg);

    cfg = parse_ok(MINIMAL "auth: none\nworkers: auto\nlog: {access_log: /var/log/a.log}\n");
    assert_true(cfg->workers >= 1);
    assert_string_equal(cfg->access_log, "/var/log/a.log");
    lx_config_unref(cfg);

    expect_error(MINIMAL "auth: none\nworkers: 0\n", "t.yaml:11:10: workers: expected `auto`");
    expect_error(MINIMAL "auth: none\nworkers: 257\n", "workers: expected `auto`");
    expect_error(MINIMAL "auth: none\nworkers: [1]\n", "workers: expected `auto`");
    cfg = parse_ok(MINIMAL "auth: none\nbusy_poll_us: 250\n");
    assert_int_equal(cfg->busy_poll_us, 250);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->busy_poll_us, 0); /* off unless asked */
    lx_config_unref(cfg);
    expect_error(MINIMAL "auth: none\nbusy_poll_us: 100001\n", "busy_poll_us: ");
    expect_error(MINIMAL "auth: none\nbusy_poll_us: -1\n", "busy_poll_us: ");
    expect_error(MINIMAL "auth: none\nlog: {level: loud}\n", "log.level: expected error, warn");
    expect_error(MINIMAL "auth: none\nlimits: {max_header_size: 100B}\n",
                 "limits.max_header_size: must be from 1KiB to 1MiB");
    expect_error(MINIMAL "auth: none\ntimeouts: {keepalive: 0s}\n",
                 "timeouts.keepalive: must be longer than 0s");
}

static void test_duration_errors(void **state)
{
    (void)state;
    /* A bare number names the missing unit, at the value's position. */
    char *errs = parse_bad(MINIMAL "auth: none\ntimeouts:\n  keepalive: 30\n");
    assert_string_equal(errs, "t.yaml:12:14: timeouts.keepalive: a duration needs a unit: ms, "
                              "s, m, h or d (e.g. 30s)\n");
    free(errs);
}

/* The stream section: defaults, every key, and each refusal with its position. */
static void test_stream_section(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->stream_keepalive_interval_ms, 15000);
    assert_int_equal(cfg->stream_keepalive_delay_ms, 2000);
    assert_false(cfg->stream_early_commit);
    assert_false(cfg->stream_always_send_usage);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nstream:\n  keepalive_interval: 5s\n"
                           "  keepalive_delay: 250ms\n  early_commit: true\n"
                           "  always_send_usage: yes\n");
    assert_int_equal(cfg->stream_keepalive_interval_ms, 5000);
    assert_int_equal(cfg->stream_keepalive_delay_ms, 250);
    assert_true(cfg->stream_early_commit);
    assert_true(cfg->stream_always_send_usage);
    lx_config_unref(cfg);
    char *errs = parse_bad(MINIMAL "auth: none\nstream:\n  early_commit: maybe\n");
    assert_string_equal(errs, "t.yaml:12:17: stream.early_commit: expected true or false\n");
    free(errs);
    expect_error(MINIMAL "auth: none\nstream:\n  keepalive_interval: 15\n",
                 "stream.keepalive_interval: a duration needs a unit");
    expect_error(MINIMAL "auth: none\nstream:\n  keepalive_delay: 0s\n", "stream.keepalive_delay");
    expect_error(MINIMAL "auth: none\nstream:\n  keepalives: 1s\n", "unknown key 'keepalives'");
    expect_error(MINIMAL "auth: none\nstream: [1]\n", "stream: expected a mapping");
}

static void test_size_errors(void **state)
{
    (void)state;
    expect_error(MINIMAL "auth: none\nlimits: {max_body_size: 32}\n",
                 "t.yaml:11:25: limits.max_body_size: a size needs a unit");
    expect_error(MINIMAL "auth: none\nlimits: {max_body_size: 64MiB, max_body_memory: 32MiB}\n",
                 "limits.max_body_memory: must be at least limits.max_body_size");
}

static void test_body_memory(void **state)
{
    (void)state;
    /* the default follows a max_body_size above it; an explicit value is kept */
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\nlimits: {max_body_size: 1GiB}\n");
    assert_int_equal(cfg->max_body_memory, 1024 * 1024 * 1024);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nlimits: {max_body_size: 1MiB, max_body_memory: 8MiB}\n");
    assert_int_equal(cfg->max_body_memory, 8 * 1024 * 1024);
    lx_config_unref(cfg);
}

/* routing.queue_target and queue_interval: defaults 100ms and 500ms, 0s turns detection
 * off, the bounds. */
static void test_queue_standing(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->routing_queue_target_ms, 100);
    assert_int_equal(cfg->routing_queue_interval_ms, 500);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {queue_target: 80ms, queue_interval: 250ms}\n");
    assert_int_equal(cfg->routing_queue_target_ms, 80);
    assert_int_equal(cfg->routing_queue_interval_ms, 250);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {queue_target: 0s}\n");
    assert_int_equal(cfg->routing_queue_target_ms, 0);
    lx_config_unref(cfg);
    expect_error(MINIMAL "auth: none\nrouting: {queue_target: 11s}\n",
                 "routing.queue_target: at most 10s");
    expect_error(MINIMAL "auth: none\nrouting: {queue_interval: 11s}\n",
                 "routing.queue_interval: expected 1ms to 10s");
}

/* routing.balance, scrape_interval, queue_size, queue_timeout; providers' metrics and
 * max_in_flight; auth.keys' priority. */
static void test_fleet_settings(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->routing_balance, LX_CONFIG_BALANCE_DEFAULT);
    assert_int_equal(cfg->routing_scrape_interval_ms, 50);
    assert_int_equal(cfg->routing_queue_size, 0);
    assert_int_equal(cfg->routing_queue_timeout_ms, 5000);
    assert_null(cfg->providers[0].metrics_path);
    assert_int_equal(cfg->providers[0].max_in_flight, 0);
    assert_int_equal(cfg->providers[0].prefix_cache_tokens, 262144);
    assert_true(cfg->routing_affinity_slack == 1.5);
    assert_int_equal(cfg->routing_affinity_eps_milli, 500);
    assert_int_equal(cfg->routing_affinity_wait_ms, 400);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {affinity_slack: 4, affinity_eps: 1.25, "
                           "affinity_wait: 150ms}\n");
    assert_true(cfg->routing_affinity_slack == 4.0);
    assert_int_equal(cfg->routing_affinity_eps_milli, 1250);
    assert_int_equal(cfg->routing_affinity_wait_ms, 150);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {affinity_wait: 0s}\n");
    assert_int_equal(cfg->routing_affinity_wait_ms, 0);
    lx_config_unref(cfg);
    expect_error(MINIMAL "auth: none\nrouting: {affinity_wait: 11s}\n",
                 "routing.affinity_wait: at most 10s");
    expect_error(MINIMAL "auth: none\nrouting: {affinity_slack: -1}\n",
                 "routing.affinity_slack: expected a number from 0 to 100");
    expect_error(MINIMAL "auth: none\nrouting: {affinity_slack: lots}\n",
                 "routing.affinity_slack: expected a number from 0 to 100");
    expect_error(MINIMAL "auth: none\nrouting: {affinity_eps: 0}\n",
                 "routing.affinity_eps: expected a number from 0.01 to 10");
    expect_error(MINIMAL "auth: none\nrouting: {affinity_eps: 11}\n",
                 "routing.affinity_eps: expected a number from 0.01 to 10");

    static const struct {
        const char *name;
        enum lx_config_balance value;
    } balances[] = {{"round_robin", LX_CONFIG_BALANCE_ROUND_ROBIN},
                    {"least_request", LX_CONFIG_BALANCE_LEAST_REQUEST},
                    {"fleet", LX_CONFIG_BALANCE_FLEET}};
    for (size_t i = 0; i < sizeof(balances) / sizeof(balances[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "listen: 127.0.0.1:8080\n"
                 "providers:\n"
                 "  - {name: p, base_url: \"http://127.0.0.1:9000/v1\", metrics: /metrics,\n"
                 "     max_in_flight: 8, prefix_cache_tokens: 65536}\n"
                 "models: [{id: m, context_length: 100, providers: [{provider: p}]}]\n"
                 "auth:\n"
                 "  keys:\n"
                 "    - {name: a, sha256: %064d}\n"
                 "    - {name: b, sha256: %063d1, priority: batch}\n"
                 "    - {name: c, sha256: %063d2, priority: interactive}\n"
                 "routing: {balance: %s, scrape_interval: 20ms, queue_size: 64, "
                 "queue_timeout: 2s}\n",
                 0, 0, 0, balances[i].name);
        cfg = parse_ok(text);
        assert_int_equal(cfg->routing_balance, balances[i].value);
        assert_int_equal(cfg->routing_scrape_interval_ms, 20);
        assert_int_equal(cfg->routing_queue_size, 64);
        assert_int_equal(cfg->routing_queue_timeout_ms, 2000);
        assert_string_equal(cfg->providers[0].metrics_path, "/metrics");
        assert_int_equal(cfg->providers[0].max_in_flight, 8);
        assert_int_equal(cfg->providers[0].prefix_cache_tokens, 65536);
        assert_int_equal(cfg->keys[0].priority, LX_CONFIG_PRIORITY_INTERACTIVE);
        assert_int_equal(cfg->keys[1].priority, LX_CONFIG_PRIORITY_BATCH);
        assert_int_equal(cfg->keys[2].priority, LX_CONFIG_PRIORITY_INTERACTIVE);
        lx_config_unref(cfg);
    }

    expect_error(MINIMAL "auth: none\nrouting: {balance: random}\n",
                 "routing.balance: expected round_robin, least_request or fleet");
    expect_error(MINIMAL "auth: none\nrouting: {scrape_interval: 5ms}\n",
                 "routing.scrape_interval: expected 10ms to 60s");
    expect_error(MINIMAL "auth: none\nrouting: {scrape_interval: 2m}\n",
                 "routing.scrape_interval: expected 10ms to 60s");
    expect_error(MINIMAL "auth: none\nrouting: {scrape_interval: 50}\n", "routing.scrape_interval");
    expect_error(MINIMAL "auth: none\nrouting: {queue_size: -1}\n", "routing.queue_size");
    expect_error(MINIMAL "auth: none\nrouting: {queue_size: 2000000}\n", "routing.queue_size");
    expect_error(MINIMAL "auth: none\nrouting: {queue_timeout: 0s}\n",
                 "routing.queue_timeout: must be longer than 0s");
    expect_error(MINIMAL "auth: none\nrouting: {queue_timeout: 1h}\n",
                 "routing.queue_timeout: at most 10m");
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - name: p\n"
                 "    base_url: http://127.0.0.1:9000/v1\n    metrics: metrics\n"
                 "models: [{id: m, context_length: 100, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "providers[0].metrics: expected a path starting with '/'");
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - name: p\n"
                 "    base_url: http://127.0.0.1:9000/v1\n    max_in_flight: many\n"
                 "models: [{id: m, context_length: 100, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "providers[0].max_in_flight");
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - name: p\n"
                 "    base_url: http://127.0.0.1:9000/v1\n    prefix_cache_tokens: 100\n"
                 "models: [{id: m, context_length: 100, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "providers[0].prefix_cache_tokens");
    expect_error(MINIMAL "auth:\n  keys:\n    - {name: a, sha256: "
                         "0000000000000000000000000000000000000000000000000000000000000000, "
                         "priority: urgent}\n",
                 "auth.keys[0].priority: expected interactive or batch");
    /* a management key has no priority */
    expect_error(MINIMAL "auth: none\nadmin:\n  keys:\n    - {name: ops, sha256: "
                         "1111111111111111111111111111111111111111111111111111111111111111, "
                         "priority: batch}\n",
                 "priority");
}

/* routing.hedge_budget (default 5%, 0 off, 0..1) and a provider's hedge: false. */
static void test_hedge_settings(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->routing_hedge_budget_ppm, 50000);
    assert_false(cfg->providers[0].no_hedge);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {hedge_budget: 0.125}\n");
    assert_int_equal(cfg->routing_hedge_budget_ppm, 125000);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {hedge_budget: 0}\n");
    assert_int_equal(cfg->routing_hedge_budget_ppm, 0);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nrouting: {hedge_budget: 1}\n");
    assert_int_equal(cfg->routing_hedge_budget_ppm, 1000000);
    lx_config_unref(cfg);
    expect_error(MINIMAL "auth: none\nrouting: {hedge_budget: 1.5}\n",
                 "routing.hedge_budget: expected a number from 0 to 1");
    expect_error(MINIMAL "auth: none\nrouting: {hedge_budget: -0.1}\n",
                 "routing.hedge_budget: expected a number from 0 to 1");
    expect_error(MINIMAL "auth: none\nrouting: {hedge_budget: 5%}\n",
                 "routing.hedge_budget: expected a number from 0 to 1");
    cfg = parse_ok("listen: 127.0.0.1:8080\nproviders:\n  - {name: p, base_url: "
                   "\"http://127.0.0.1:9000/v1\", hedge: false}\nmodels:\n  - id: m\n"
                   "    context_length: 100\n    providers:\n      - provider: p\nauth: none\n");
    assert_true(cfg->providers[0].no_hedge);
    lx_config_unref(cfg);
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - {name: p, base_url: "
                 "\"http://127.0.0.1:9000/v1\", hedge: sometimes}\nmodels:\n  - id: m\n"
                 "    context_length: 100\n    providers:\n      - provider: p\nauth: none\n",
                 "providers[0].hedge: expected true or false");
}

static void test_routing_health_admin(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_int_equal(cfg->routing_strategy, LX_CONFIG_ROUTING_HEALTH);
    assert_int_equal(cfg->routing_max_attempts, 3);
    assert_int_equal(cfg->routing_deadline_ms, 90000);
    assert_int_equal(cfg->routing_session_ttl_ms, 600000);
    assert_int_equal(cfg->health_rescore_interval_ms, 300000);
    assert_int_equal(cfg->health_window_ms, 900000);
    assert_int_equal(cfg->health_breaker_failures, 5);
    assert_int_equal(cfg->health_breaker_cooldown_ms, 10000);
    assert_int_equal(cfg->health_breaker_max_cooldown_ms, 300000);
    assert_false(cfg->admin_enabled);
    assert_true(cfg->metrics_public);
    assert_false(cfg->providers[0].zdr);
    assert_false(cfg->providers[0].data_collection_deny);
    assert_null(cfg->providers[0].probe_path);
    assert_int_equal(cfg->models[0].routes[0].n_parameters, 0);
    lx_config_unref(cfg);

    cfg = parse_ok("listen: 127.0.0.1:8080\n"
                   "providers:\n"
                   "  - name: p\n"
                   "    base_url: http://127.0.0.1:9000/v1\n"
                   "    data_collection: deny\n"
                   "    zdr: true\n"
                   "    probe: /health\n"
                   "models:\n"
                   "  - id: m\n"
                   "    context_length: 100\n"
                   "    providers:\n"
                   "      - provider: p\n"
                   "        parameters: [tools, seed]\n"
                   "auth: none\n"
                   "routing: {strategy: round_robin, max_attempts: 5, deadline: 20s, "
                   "session_ttl: 0s}\n"
                   "health: {rescore_interval: 2s, window: 20s, breaker_failures: 3, "
                   "breaker_cooldown: 1s, breaker_max_cooldown: 8s, probe_interval: 0s, "
                   "exploration: 0.1}\n"
                   "admin:\n"
                   "  sha256: 00000000000000000000000000000000000000000000000000000000000000ff\n"
                   "  metrics_public: false\n");
    assert_int_equal(cfg->routing_strategy, LX_CONFIG_ROUTING_ROUND_ROBIN);
    assert_int_equal(cfg->routing_max_attempts, 5);
    assert_int_equal(cfg->routing_deadline_ms, 20000);
    assert_int_equal(cfg->routing_session_ttl_ms, 0);
    assert_int_equal(cfg->health_rescore_interval_ms, 2000);
    assert_int_equal(cfg->health_window_ms, 20000);
    assert_int_equal(cfg->health_breaker_failures, 3);
    assert_int_equal(cfg->health_breaker_cooldown_ms, 1000);
    assert_int_equal(cfg->health_breaker_max_cooldown_ms, 8000);
    assert_int_equal(cfg->health_probe_interval_ms, 0);
    assert_true(cfg->health_exploration > 0.099 && cfg->health_exploration < 0.101);
    assert_true(cfg->admin_enabled);
    assert_int_equal(cfg->admin_digest[31], 0xff);
    assert_false(cfg->metrics_public);
    assert_true(cfg->providers[0].zdr);
    assert_true(cfg->providers[0].data_collection_deny);
    assert_string_equal(cfg->providers[0].probe_path, "/health");
    assert_int_equal(cfg->models[0].routes[0].n_parameters, 2);
    assert_string_equal(cfg->models[0].routes[0].parameters[1], "seed");
    lx_config_unref(cfg);

    expect_error(MINIMAL "auth: none\nrouting: {strategy: random}\n",
                 "routing.strategy: expected health or round_robin");
    expect_error(MINIMAL "auth: none\nrouting: {max_attempts: 0}\n", "routing.max_attempts");
    expect_error(MINIMAL "auth: none\nrouting: {deadline: 0s}\n", "routing.deadline");
    expect_error(MINIMAL "auth: none\nhealth: {rescore_interval: 10m, window: 5m}\n",
                 "health.window: must be at least health.rescore_interval");
    expect_error(MINIMAL "auth: none\nhealth: {rescore_interval: 20m}\n",
                 "health.window: must be at least health.rescore_interval");
    expect_error(MINIMAL "auth: none\nhealth: {breaker_cooldown: 10m}\n",
                 "health.breaker_max_cooldown: must be at least health.breaker_cooldown");
    expect_error(MINIMAL "auth: none\nhealth: {exploration: 0.9}\n",
                 "health.exploration: expected a number from 0 to 0.5");
    expect_error(MINIMAL "auth: none\nadmin: {sha256: abc}\n", "admin.sha256: expected 64 hex");
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - name: p\n"
                 "    base_url: http://127.0.0.1:9000/v1\n    data_collection: maybe\n"
                 "    probe: health\nmodels:\n  - id: m\n    context_length: 100\n"
                 "    providers:\n      - provider: p\nauth: none\n",
                 "providers[0].data_collection: expected allow or deny");
    expect_error("listen: 127.0.0.1:8080\nproviders:\n  - name: p\n"
                 "    base_url: http://127.0.0.1:9000/v1\n    probe: health\nmodels:\n"
                 "  - id: m\n    context_length: 100\n"
                 "    providers:\n      - provider: p\nauth: none\n",
                 "providers[0].probe: expected a path starting with '/'");
}

/* ---- addresses and URLs -------------------------------------------------------------------- */

static void test_listen_list(void **state)
{
    (void)state;
    const char *text = "listen:\n"
                       "  - \"[::1]:8080\"\n"
                       "  - :9090\n"
                       "providers: [{name: p, base_url: http://h}]\n"
                       "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n"
                       "auth: none\n";
    lx_config_t *cfg = parse_ok(text);
    assert_int_equal(cfg->n_listen, 2);
    assert_string_equal(cfg->listen[0].host, "::1");
    assert_true(cfg->listen[0].is_loopback);
    assert_string_equal(cfg->listen[1].host, "0.0.0.0");
    assert_int_equal(cfg->listen[1].port, 9090);
    assert_false(cfg->listen[1].is_loopback);
    lx_config_unref(cfg);

    expect_error("listen: [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n"
                 "providers: [{name: p, base_url: http://h}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "t.yaml:1:25: listen[1]: address listed twice");
    expect_error("listen: []\n"
                 "providers: [{name: p, base_url: http://h}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "t.yaml:1:9: listen: the list is empty");
    expect_error("listen: localhost:8080\n"
                 "providers: [{name: p, base_url: http://h}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n"
                 "auth: none\n",
                 "t.yaml:1:9: listen: not a numeric IP address");
}

static void test_provider_urls(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(
        "listen: :8080\n"
        "auth: none\n"
        "providers:\n"
        "  - name: ext\n"
        "    base_url: https://api.example.com/openai/v1/\n"
        "  - name: fleet\n"
        "    base_url: http://ignored.example:1/v1\n"
        "    endpoints: [\"http://10.0.0.7:8000\", \"https://[fd00::1]\", \"http://gpu-2/\"]\n"
        "models: [{id: m, context_length: 1, providers: [{provider: ext}, "
        "{provider: fleet, model: up}]}]\n");
    const lx_config_provider_t *ext = &cfg->providers[0], *fleet = &cfg->providers[1];
    assert_string_equal(ext->base_url, "https://api.example.com/openai/v1/");
    assert_string_equal(ext->base_path, "/openai/v1");
    assert_int_equal(ext->n_endpoints, 1);
    assert_string_equal(ext->endpoints[0].url, "https://api.example.com");
    assert_string_equal(ext->endpoints[0].host, "api.example.com");
    assert_int_equal(ext->endpoints[0].port, 443);
    assert_true(ext->endpoints[0].tls);

    assert_string_equal(fleet->base_path, "/v1");
    assert_int_equal(fleet->n_endpoints, 3);
    assert_string_equal(fleet->endpoints[0].host, "10.0.0.7");
    assert_int_equal(fleet->endpoints[0].port, 8000);
    assert_false(fleet->endpoints[0].tls);
    assert_string_equal(fleet->endpoints[1].host, "fd00::1");
    assert_int_equal(fleet->endpoints[1].port, 443);
    assert_true(fleet->endpoints[1].tls);
    assert_string_equal(fleet->endpoints[1].url, "https://[fd00::1]");
    assert_string_equal(fleet->endpoints[2].host, "gpu-2");
    assert_int_equal(fleet->endpoints[2].port, 80);
    assert_string_equal(cfg->models[0].routes[1].upstream_model, "up");
    lx_config_unref(cfg);

    cfg = parse_ok("listen: :8080\nauth: none\n"
                   "providers: [{name: root, base_url: \"http://h:81/\"}]\n"
                   "models: [{id: m, context_length: 1, providers: [{provider: root}]}]\n");
    assert_string_equal(cfg->providers[0].base_path, "");
    lx_config_unref(cfg);

    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: \"ftp://h\"}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "t.yaml:3:33: providers[0].base_url: only http:// and https:// URLs");
    expect_error("listen: :8080\nauth: none\n"
                 "providers:\n"
                 "  - name: p\n"
                 "    base_url: http://h/v1\n"
                 "    endpoints:\n"
                 "      - http://a:1\n"
                 "      - http://a:1/v1\n"
                 "      - http://A:1\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "t.yaml:8:9: providers[0].endpoints[1]: an endpoint URL has no path");
    expect_error("listen: :8080\nauth: none\n"
                 "providers:\n"
                 "  - name: p\n"
                 "    base_url: http://h/v1\n"
                 "    endpoints:\n"
                 "      - http://a:1\n"
                 "      - http://A:1\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "t.yaml:8:9: providers[0].endpoints[1]: endpoint listed twice");
}

/* ---- environment, secrets ------------------------------------------------------------------ */

#define SECRET "sk-very-secret-0123456789"

static void test_env_substitution(void **state)
{
    (void)state;
    setenv("LX_TEST_KEY", SECRET, 1);
    setenv("LX_TEST_ORG", "org-7", 1);
    lx_config_t *cfg =
        parse_ok("listen: :8080\nauth: none\n"
                 "providers:\n"
                 "  - name: p\n"
                 "    base_url: https://h/v1\n"
                 "    api_key: ${LX_TEST_KEY}\n"
                 "    max_connections: 8\n"
                 "    max_idle_connections: 3\n"
                 "    timeouts: {connect: 1s, first_byte: 2s, idle: 3s}\n"
                 "    headers:\n"
                 "      X-Org: id=${LX_TEST_ORG};v=1\n"
                 "      X-Literal: \"$${LX_TEST_ORG} costs $5\"\n"
                 "      X-Two: ${LX_TEST_ORG}${LX_TEST_ORG}\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n");
    const lx_config_provider_t *p = &cfg->providers[0];
    assert_string_equal(p->api_key, SECRET);
    assert_int_equal(p->max_connections, 8);
    assert_int_equal(p->max_idle_connections, 3);
    assert_int_equal(p->connect_timeout_ms, 1000);
    assert_int_equal(p->first_byte_timeout_ms, 2000);
    assert_int_equal(p->idle_timeout_ms, 3000);
    assert_int_equal(p->n_headers, 3);
    assert_string_equal(p->headers[0].name, "X-Org");
    assert_string_equal(p->headers[0].value, "id=org-7;v=1");
    assert_string_equal(p->headers[1].value, "${LX_TEST_ORG} costs $5");
    assert_string_equal(p->headers[2].value, "org-7org-7");
    lx_config_unref(cfg);

    unsetenv("LX_TEST_UNSET_VAR");
    char *errs = parse_bad("listen: :8080\nauth: none\n"
                           "providers:\n"
                           "  - name: p\n"
                           "    base_url: https://h/v1\n"
                           "    api_key: Bearer-${LX_TEST_UNSET_VAR}\n"
                           "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n");
    assert_string_equal(errs, "t.yaml:6:14: providers[0].api_key: environment variable "
                              "LX_TEST_UNSET_VAR is not set\n");
    free(errs);

    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://h, api_key: \"${LX_TEST_KEY\"}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "providers[0].api_key: unterminated ${");
    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://h, api_key: \"${1X}\"}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "providers[0].api_key: bad environment variable name");
    setenv("LX_TEST_EMPTY", "", 1);
    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://h, api_key: \"${LX_TEST_EMPTY}\"}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "providers[0].api_key: the value is empty");
    unsetenv("LX_TEST_EMPTY");
}

static void test_secrets_never_printed(void **state)
{
    (void)state;
    /* A secret with a line break is refused without being quoted. */
    setenv("LX_TEST_KEY", SECRET, 1);
    setenv("LX_TEST_BAD", SECRET "\r\nX-Injected: 1", 1);
    char *errs = parse_bad("listen: :8080\nauth: none\n"
                           "providers:\n"
                           "  - name: p\n"
                           "    base_url: https://h/v1\n"
                           "    api_key: ${LX_TEST_BAD}\n"
                           "    headers: {X-A: \"${LX_TEST_BAD}\", X-B: " SECRET "}\n"
                           "    bogus: " SECRET "\n"
                           "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n");
    assert_int_equal(count_lines(errs), 3);
    assert_non_null(strstr(errs, "t.yaml:6:14: providers[0].api_key: the value contains a line "
                                 "break"));
    assert_non_null(strstr(errs, "providers[0].headers 'X-A': the value contains a line break"));
    assert_non_null(strstr(errs, "unknown key 'bogus' in providers[0]"));
    assert_null(strstr(errs, SECRET));
    assert_null(strstr(errs, "sk-"));
    free(errs);
    unsetenv("LX_TEST_BAD");

    /* Nor in the summary. */
    lx_config_t *cfg =
        parse_ok("listen: :8080\nauth: none\n"
                 "providers:\n"
                 "  - name: p\n"
                 "    base_url: https://h/v1\n"
                 "    api_key: ${LX_TEST_KEY}\n"
                 "    headers: {X-Secret: \"" SECRET "\"}\n"
                 "  - name: q\n"
                 "    base_url: https://q/v1\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n");
    char *text = dump(cfg);
    assert_null(strstr(text, SECRET));
    assert_non_null(strstr(text, "api_key: (set)"));
    assert_non_null(strstr(text, "api_key: (none)"));
    assert_non_null(strstr(text, "header: X-Secret: ***"));
    free(text);
    lx_config_unref(cfg);
}

static void test_headers(void **state)
{
    (void)state;
    static const struct {
        const char *headers, *error;
    } bad[] = {
        {"{Content-Length: \"5\"}", "header 'Content-Length' is managed by llmux"},
        {"{host: x}", "header 'host' is managed by llmux"},
        {"{\"Bad Name\": x}", "'Bad Name' is not a valid header name"},
        {"{X-A: 1, x-a: 2}", "header 'x-a' is set twice"},
        {"[X-A]", "expected a mapping of header names to values"},
        {"{X-A: [1]}", "providers[0].headers 'X-A': expected a value, got a list"},
    };
    char text[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 "listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://h, headers: %s}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 bad[i].headers);
        expect_error(text, bad[i].error);
    }
    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://h, api_key: k, headers: "
                 "{Authorization: x}}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "an Authorization header and api_key are both set");
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_unknown_key_exact(void **state)
{
    (void)state;
    char *errs = parse_bad("listen: :8080\n"
                           "auth: none\n"
                           "providers:\n"
                           "  - name: p\n"
                           "    base_url: http://h\n"
                           "    foo: 1\n"
                           "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n");
    assert_string_equal(errs, "t.yaml:6:5: unknown key 'foo' in providers[0]\n");
    free(errs);

    errs = parse_bad(MINIMAL "auth: none\nlisten_on: 1\n");
    assert_string_equal(errs, "t.yaml:11:1: unknown key 'listen_on' at the top level\n");
    free(errs);
}

static void test_many_errors_one_pass(void **state)
{
    (void)state;
    char *errs = parse_bad("listen: :99999\n"                                         /* 1 */
                           "workers: many\n"                                          /* 2 */
                           "timeouts: {keepalive: 5}\n"                               /* 3 */
                           "providers:\n"                                             /* 4 */
                           "  - name: p\n"                                            /* 5 */
                           "    base_url: gopher://h\n"                               /* 6 */
                           "    max_connections: -1\n"                                /* 7 */
                           "  - base_url: http://h\n"                                 /* 8 */
                           "models:\n"                                                /* 9 */
                           "  - id: m\n"                                              /* 10 */
                           "    context_length: lots\n"                               /* 11 */
                           "    providers: [{provider: nope, price: {prompt: -1}}]\n" /* 12 */
                           "auth: {keys: [{name: k, sha256: abc}]}\n"                 /* 13 */
                           "log: {level: 5}\n");                                      /* 14 */
    const char *want[] = {
        "t.yaml:1:9: listen: port must be",
        "t.yaml:2:10: workers: expected `auto`",
        "t.yaml:3:23: timeouts.keepalive: a duration needs a unit",
        "t.yaml:6:15: providers[0].base_url: only http:// and https://",
        "t.yaml:7:22: providers[0].max_connections: cannot be negative",
        "t.yaml:8:5: missing required key 'name' in providers[1]",
        "t.yaml:11:21: models[0].context_length: expected a whole number",
        "t.yaml:12:28: unknown provider 'nope' in models[0].providers[0]",
        "t.yaml:12:50: models[0].providers[0].price.prompt: a price cannot be negative",
        "t.yaml:13:33: auth.keys[0].sha256: expected 64 hex digits",
        "t.yaml:14:14: log.level: expected error, warn, info or debug",
    };
    /* One line each, in file order. */
    assert_int_equal(count_lines(errs), sizeof(want) / sizeof(want[0]));
    const char *at = errs;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strncmp(at, want[i], strlen(want[i])) != 0)
            fail_msg("line %zu: want \"%s\", got:\n%s", i + 1, want[i], errs);
        at = strchr(at, '\n') + 1;
    }
    free(errs);
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_error("listen: :8080\nauth: none\n"
                 "providers:\n"
                 "  - {name: p, base_url: http://a}\n"
                 "  - {name: p, base_url: http://b}\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "t.yaml:5:12: providers[1].name: duplicate provider name 'p'");
    expect_error("listen: :8080\nauth: none\n"
                 "providers: [{name: p, base_url: http://a}]\n"
                 "models:\n"
                 "  - {id: b, context_length: 1, providers: [{provider: p}]}\n"
                 "  - {id: a, context_length: 1, providers: [{provider: p}]}\n"
                 "  - {id: b, context_length: 1, providers: [{provider: p}]}\n",
                 "t.yaml:7:10: models[2].id: duplicate model id 'b'");
    expect_error(MINIMAL "auth:\n"
                         "  keys:\n"
                         "    - {name: k, sha256: " /* 64 hex digits */
                         "0000000000000000000000000000000000000000000000000000000000000000}\n"
                         "    - {name: k, sha256: "
                         "1111111111111111111111111111111111111111111111111111111111111111}\n",
                 "t.yaml:13:14: auth.keys[1].name: duplicate key name 'k'");
    expect_error(MINIMAL "auth:\n"
                         "  keys:\n"
                         "    - {name: a, sha256: "
                         "00000000000000000000000000000000000000000000000000000000000000aa}\n"
                         "    - {name: b, sha256: "
                         "00000000000000000000000000000000000000000000000000000000000000AA}\n",
                 "auth.keys[1].sha256: the same key is already listed as 'a'");
    expect_error(MINIMAL "auth: none\nauth: none\n",
                 "t.yaml:11:1: duplicate key 'auth' at the top level (first at line 10)");
    expect_error(
        "listen: :8080\nauth: none\n"
        "providers: [{name: p, base_url: http://a}]\n"
        "models: [{id: m, context_length: 1, providers: [{provider: p}, {provider: p}]}]\n",
        "models[0].providers[1]: the same provider and model are listed twice");
}

static void test_unknown_provider(void **state)
{
    (void)state;
    char *errs = parse_bad("listen: :8080\nauth: none\n"
                           "providers: [{name: p, base_url: http://a}]\n"
                           "models:\n"
                           "  - id: m\n"
                           "    context_length: 1\n"
                           "    providers:\n"
                           "      - provider: p\n"
                           "      - provider: q\n");
    assert_string_equal(errs, "t.yaml:9:19: unknown provider 'q' in models[0].providers[1]\n");
    free(errs);
}

static void test_auth(void **state)
{
    (void)state;
    lx_config_t *cfg =
        parse_ok(MINIMAL "auth:\n"
                         "  keys:\n"
                         "    - name: alice\n"
                         "      sha256: "
                         "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\n"
                         "    - name: bob\n"
                         "      sha256: "
                         "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752\n");
    assert_false(cfg->auth_none);
    assert_int_equal(cfg->n_keys, 2);
    assert_string_equal(cfg->keys[0].name, "alice");
    assert_int_equal(cfg->keys[0].digest[0], 0x9f);
    assert_int_equal(cfg->keys[0].digest[31], 0x08);
    assert_string_equal(cfg->keys[1].name, "bob");
    assert_int_equal(cfg->keys[1].digest[1], 0x30);
    char *text = dump(cfg);
    assert_non_null(strstr(text, "auth: 2 keys: alice bob"));
    assert_null(strstr(text, "9f86"));
    assert_null(strstr(text, "9F86"));
    free(text);
    lx_config_unref(cfg);

    char *errs = parse_bad(MINIMAL);
    assert_string_equal(errs, "t.yaml:1:1: no `auth` section: set `auth: none` to run without "
                              "keys, or list keys\n");
    free(errs);
    expect_error(MINIMAL "auth: {keys: []}\n",
                 "t.yaml:10:14: auth: no keys listed: set `auth: none` to run without keys");
    expect_error(MINIMAL "auth:\n", "t.yaml:10:6: auth: expected `none` or a mapping");
    expect_error(MINIMAL "auth: nobody\n", "auth: expected `none` or a mapping");
    expect_error(MINIMAL "auth: {keys: [{name: a, sha256: 00}]}\n",
                 "auth.keys[0].sha256: expected 64 hex digits");
    expect_error(MINIMAL "auth: {keys: [{name: a}]}\n",
                 "missing required key 'sha256' in auth.keys[0]");
    expect_error(MINIMAL "auth: {none: true}\n", "unknown key 'none' in auth");
}

static void test_types_and_required(void **state)
{
    (void)state;
    expect_error("", "t.yaml:1:1: the configuration is empty");
    expect_error("- a\n- b\n", "t.yaml:1:1: the configuration: expected a mapping, got a list");
    expect_error("auth: none\n", "missing required key 'listen' at the top level");
    expect_error("auth: none\n", "missing required key 'providers' at the top level");
    expect_error("auth: none\n", "missing required key 'models' at the top level");
    expect_error(MINIMAL "auth: none\nlimits: 5\n", "limits: expected a mapping, got a scalar");
    expect_error("listen: :8080\nauth: none\nproviders: {name: p}\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "t.yaml:3:12: providers: expected a list, got a mapping");
    expect_error("listen: :8080\nauth: none\nproviders: [{name: p, base_url: }]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "providers[0].base_url: missing value");
    expect_error("listen: :8080\nauth: none\nproviders: [{name: \"a b\", base_url: http://h}]\n"
                 "models: [{id: m, context_length: 1, providers: [{provider: p}]}]\n",
                 "providers[0].name: names use letters, digits");
    expect_error("listen: :8080\nauth: none\nproviders: [{name: p, base_url: http://h}]\n"
                 "models: [{id: \"a b\", context_length: 1, providers: [{provider: p}]}]\n",
                 "models[0].id: a model id has no spaces");
    expect_error("listen: :8080\nauth: none\nproviders: [{name: p, base_url: http://h}]\n"
                 "models: [{id: x:nitro, context_length: 1, providers: [{provider: p}]}]\n",
                 "models[0].id: the suffixes :nitro and :floor");
    expect_error("listen: :8080\nauth: none\nproviders: [{name: p, base_url: http://h}]\n"
                 "models: [{id: m, context_length: 1, providers: []}]\n",
                 "models[0].providers: the list is empty");
    expect_error(MINIMAL "auth: none\n---\nauth: none\n",
                 "t.yaml:12:1: only one YAML document is allowed");
    expect_error(MINIMAL "auth: none\nlog: {access_log: \"a\\0b\"}\n",
                 "log.access_log: contains a NUL character");
    /* A YAML syntax error has a position too. */
    expect_error("listen: [:8080\nauth: none\n", "t.yaml:");
    char *errs = parse_bad("listen: :8080\n  bad: indent\n");
    assert_int_equal(count_lines(errs), 1);
    assert_non_null(strstr(errs, "t.yaml:2:6: YAML: "));
    free(errs);
}

static void test_models(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok("listen: :8080\nauth: none\n"
                                "providers: [{name: p, base_url: http://h}]\n"
                                "models:\n"
                                "  - id: org/m1\n"
                                "    context_length: 4096\n"
                                "    created: 1700000000\n"
                                "    providers:\n"
                                "      - {provider: p, model: m1-q4, price: {prompt: 0.5, "
                                "completion: 1.25}}\n"
                                "      - {provider: p, price: {completion: 2}}\n"
                                "  - id: /odd\n"
                                "    context_length: 1\n"
                                "    owned_by: me\n"
                                "    providers: [{provider: p}]\n"
                                "  - {id: /x, context_length: 1, providers: [{provider: p}]}\n");
    const lx_config_model_t *m = &cfg->models[0];
    assert_string_equal(m->owned_by, "org");
    assert_int_equal(m->created, 1700000000);
    assert_int_equal(m->context_length, 4096);
    assert_int_equal(m->n_routes, 2);
    assert_string_equal(m->routes[0].upstream_model, "m1-q4");
    assert_true(m->routes[0].price_prompt == 0.5);
    assert_true(m->routes[0].price_completion == 1.25);
    assert_string_equal(m->routes[1].upstream_model, "org/m1");
    assert_true(m->routes[1].price_prompt == 0);
    assert_true(m->routes[1].price_completion == 2);
    assert_string_equal(cfg->models[1].owned_by, "me");
    assert_string_equal(cfg->models[2].owned_by, "llmux");
    lx_config_unref(cfg);
}

/* ---- references, lookup, summary ----------------------------------------------------------- */

static void test_refcount(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    assert_ptr_equal(lx_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 2);
    lx_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 1);
    assert_string_equal(cfg->models[0].id, "m"); /* still alive */
    lx_config_unref(cfg);                        /* freed: ASan reports a leak otherwise */
    lx_config_unref(NULL);
}

static void test_find_model(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok("listen: :8080\nauth: none\n"
                                "providers: [{name: p, base_url: http://h}]\n"
                                "models:\n"
                                "  - {id: zeta, context_length: 1, providers: [{provider: p}]}\n"
                                "  - {id: alpha/b, context_length: 2, providers: [{provider: p}]}\n"
                                "  - {id: alpha, context_length: 3, providers: [{provider: p}]}\n"
                                "  - {id: mid, context_length: 4, providers: [{provider: p}]}\n");
    static const char body[] = "\"alpha/b\",\"stream\":true";
    const lx_config_model_t *m = lx_config_find_model(cfg, body + 1, 7);
    assert_non_null(m);
    assert_int_equal(m->context_length, 2);
    assert_ptr_equal(m, &cfg->models[1]);
    assert_int_equal(lx_config_find_model(cfg, "alpha", 5)->context_length, 3);
    assert_int_equal(lx_config_find_model(cfg, "zeta", 4)->context_length, 1);
    assert_int_equal(lx_config_find_model(cfg, "mid", 3)->context_length, 4);
    assert_null(lx_config_find_model(cfg, "alph", 4));
    assert_null(lx_config_find_model(cfg, "alpha/bc", 8));
    assert_null(lx_config_find_model(cfg, "", 0));
    assert_null(lx_config_find_model(cfg, "zz", 2));
    lx_config_unref(cfg);
}

static void test_dump(void **state)
{
    (void)state;
    lx_config_t *cfg = NULL;
    assert_int_equal(lx_config_load("conf/llmux.yaml", NULL, &cfg), 0);
    char *text = dump(cfg);
    static const char *const want[] = {
        "configuration conf/llmux.yaml\n",
        "listen: 127.0.0.1:8080 (loopback)\n",
        "limits: max_header_size 16KiB, max_body_size 32MiB, default_max_cost $1\n",
        "llmux.db, commit_interval 50ms, retention 90d\n",
        ("timeouts: client_header 10s, client_body 1m, keepalive 1m15s, upstream_connect 5s, "
         "upstream_first_byte 1m, upstream_idle 2m, shutdown 30s\n"),
        "providers (2):\n",
        "  mock-b: http://127.0.0.1:9102/v1\n",
        "    endpoints: http://127.0.0.1:9102 http://127.0.0.1:9103\n",
        "    timeouts: connect 2s, first_byte 30s, idle 1m\n",
        "models (3):\n",
        "    -> mock-a as llama-3.1-8b, $0.05 prompt / $0.08 completion per 1M tokens\n",
        "auth: none",
        "log: access_log - (stdout), level info\n",
        "management keys: 0\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(text, want[i]) == NULL)
            fail_msg("summary lacks \"%s\":\n%s", want[i], text);
    }
    free(text);
    lx_config_unref(cfg);
}

static void test_load_errors(void **state)
{
    (void)state;
    lx_config_t *cfg = (lx_config_t *)1;
    char *errs = NULL;
    size_t n;
    FILE *f = open_memstream(&errs, &n);
    assert_int_equal(lx_config_load("conf/does-not-exist.yaml", f, &cfg), -ENOENT);
    fclose(f);
    assert_null(cfg);
    assert_non_null(strstr(errs, "conf/does-not-exist.yaml: cannot open"));
    free(errs);
}

/* --- TLS keys: files are checked at load time, so the certificates are generated now --- */

/* A listen entry with TLS and two providers (one verified with a client certificate, one
 * insecure), as a template: %1$s is the directory, %2$s the listen `tls` mapping, %3$s the
 * name of the secure provider's CA file. */
#define TLS_CONFIG                                                                                 \
    "listen:\n"                                                                                    \
    "  - 127.0.0.1:8080\n"                                                                         \
    "  - address: 127.0.0.1:8443\n"                                                                \
    "    tls: %2$s\n"                                                                              \
    "providers:\n"                                                                                 \
    "  - name: secure\n"                                                                           \
    "    base_url: https://10.0.0.1/v1\n"                                                          \
    "    tls: {ca_file: %1$s/%3$s, server_name: localhost, cert: %1$s/client.pem, "                \
    "key: %1$s/client.key}\n"                                                                      \
    "  - name: lax\n"                                                                              \
    "    base_url: https://10.0.0.2/v1\n"                                                          \
    "    tls: {insecure_skip_verify: true}\n"                                                      \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 100\n"                                                                    \
    "    providers: [{provider: secure}, {provider: lax}]\n"                                       \
    "auth: none\n"

/* TLS_CONFIG with files in <d>, <listen_tls> for the second listener and <ca_file> (a name
 * in <d>) as the secure provider's CA. */
static char *tls_config_ca(const char *d, const char *listen_tls, const char *ca_file)
{
    char *text = NULL;
    assert_true(asprintf(&text, TLS_CONFIG, d, listen_tls, ca_file) > 0);
    return text;
}

static char *tls_config(const char *d, const char *listen_tls)
{
    return tls_config_ca(d, listen_tls, "ca.pem");
}

/* Expects <text> refused with exactly one error line starting with <where> ("t.yaml:L:C: ")
 * and containing <needle>. */
static void expect_tls_error(char *text, const char *where, const char *needle)
{
    char *errs = parse_bad(text);
    if (strncmp(errs, where, strlen(where)) != 0 || strstr(errs, needle) == NULL ||
        strchr(errs, '\n') != errs + strlen(errs) - 1)
        fail_msg("expected one error \"%s...%s\", got:\n%s", where, needle, errs);
    free(errs);
    free(text);
}

static void test_tls_keys(void **state)
{
    (void)state;
    char d[64], m[512], buf[512];
    snprintf(d, sizeof(d), "/tmp/llmux-config-tls-XXXXXX");
    assert_non_null(mkdtemp(d));
    pki_t pki;
    assert_int_equal(pki_make(&pki, d), 0);

    /* valid: SNI certificates after the default one, min_version 1.2, provider keys */
    snprintf(m, sizeof(m),
             "{cert: %s/server.pem, key: %s/server.key, min_version: '1.2', "
             "certificates: [{cert: %s/sni.pem, key: %s/sni.key}]}",
             d, d, d, d);
    char *text = tls_config(d, m);
    lx_config_t *cfg = parse_ok(text);
    free(text);
    assert_int_equal(cfg->n_listen, 2);
    assert_null(cfg->listen[0].tls);
    const lx_config_listen_tls_t *lt = cfg->listen[1].tls;
    assert_non_null(lt);
    assert_int_equal(lt->n_certs, 2);
    assert_int_equal(lt->min_version, 12);
    snprintf(buf, sizeof(buf), "%s/server.pem", d);
    assert_string_equal(lt->certs[0].cert, buf);
    snprintf(buf, sizeof(buf), "%s/sni.key", d);
    assert_string_equal(lt->certs[1].key, buf);
    const lx_config_provider_t *sec = &cfg->providers[0], *lax = &cfg->providers[1];
    assert_true(sec->endpoints[0].tls);
    assert_int_equal(sec->endpoints[0].port, 443);
    snprintf(buf, sizeof(buf), "%s/ca.pem", d);
    assert_string_equal(sec->tls.ca_file, buf);
    assert_string_equal(sec->tls.server_name, "localhost");
    snprintf(buf, sizeof(buf), "%s/client.pem", d);
    assert_string_equal(sec->tls.client.cert, buf);
    assert_false(sec->tls.insecure_skip_verify);
    assert_true(lax->tls.insecure_skip_verify);
    assert_null(lax->tls.ca_file);
    /* the summary (`llmux -t`) shows TLS, and says loudly what is not verified */
    char *sum = dump(cfg);
    char want[4][512];
    snprintf(want[0], sizeof(want[0]), "127.0.0.1:8443 (loopback) (tls)");
    snprintf(want[1], sizeof(want[1]),
             "tls on port 8443: TLS 1.2, certificates: %s/server.pem %s/sni.pem", d, d);
    snprintf(want[2], sizeof(want[2]),
             "    tls: verify against %s/ca.pem, server_name localhost\n"
             "    tls client certificate: %s/client.pem\n",
             d, d);
    snprintf(
        want[3], sizeof(want[3]),
        "    tls: INSECURE: insecure_skip_verify, the provider's certificate is not checked\n");
    for (size_t i = 0; i < 4; i++) {
        if (strstr(sum, want[i]) == NULL)
            fail_msg("summary lacks \"%s\":\n%s", want[i], sum);
    }
    free(sum);
    lx_config_unref(cfg);

    /* errors: file:line:col of the value at fault, and the path of the file */
    snprintf(m, sizeof(m), "{cert: %s/missing.pem, key: %s/server.key}", d, d);
    snprintf(buf, sizeof(buf), "%s/missing.pem", d);
    expect_tls_error(tls_config(d, m), "t.yaml:4:17: listen[1].tls: ", buf);
    snprintf(m, sizeof(m), "{cert: %s/server.pem, key: %s/other.key}", d, d);
    snprintf(buf, sizeof(buf), "%s/other.key: the key does not match the certificate", d);
    expect_tls_error(tls_config(d, m), "t.yaml:4:", buf);
    snprintf(m, sizeof(m), "{cert: %s/ca.key, key: %s/server.key}", d, d);
    snprintf(buf, sizeof(buf), "%s/ca.key: not a valid PEM or DER certificate", d);
    expect_tls_error(tls_config(d, m), "t.yaml:4:17: listen[1].tls: ", buf);
    snprintf(m, sizeof(m), "{key: %s/server.key}", d);
    expect_tls_error(tls_config(d, m),
                     "t.yaml:4:10: listen[1].tls: ", "`cert` and `key` go together");
    expect_tls_error(tls_config(d, "{}"),
                     "t.yaml:4:10: listen[1].tls: ", "a certificate is required");
    snprintf(m, sizeof(m), "{cert: %s/server.pem, key: %s/server.key, min_version: '1.3'}", d, d);
    expect_tls_error(tls_config(d, m), "t.yaml:4:", "'1.3' is not supported");
    snprintf(m, sizeof(m), "{cert: %s/server.pem, key: %s/server.key, ciphers: all}", d, d);
    expect_tls_error(tls_config(d, m), "t.yaml:4:", "ciphers");
    /* a provider CA file that holds no certificate */
    snprintf(m, sizeof(m), "{cert: %s/server.pem, key: %s/server.key}", d, d);
    snprintf(buf, sizeof(buf), "providers[0].tls.ca_file: %s/ca.key", d);
    expect_tls_error(tls_config_ca(d, m, "ca.key"), "t.yaml:8:", buf);

    pki_dispose(&pki);
    snprintf(buf, sizeof(buf), "rm -rf %s", d);
    assert_int_equal(system(buf), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_file_loads),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_size_errors),
        cmocka_unit_test(test_body_memory),
        cmocka_unit_test(test_listen_list),
        cmocka_unit_test(test_provider_urls),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_secrets_never_printed),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_unknown_key_exact),
        cmocka_unit_test(test_many_errors_one_pass),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_unknown_provider),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_types_and_required),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_find_model),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_stream_section),
        cmocka_unit_test(test_routing_health_admin),
        cmocka_unit_test(test_fleet_settings),
        cmocka_unit_test(test_queue_standing),
        cmocka_unit_test(test_hedge_settings),
        cmocka_unit_test(test_tls_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
