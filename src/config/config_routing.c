/*
 * config_routing.c - how requests are spread over routes: `routing` (strategy, attempts,
 * deadline, sessions, the replica balance, load scrapes, the admission queue, hedging) and `health`
 * (scoring window, circuit breaker, probes, exploration), with the checks that tie two values
 * together.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "core/core.h"

static void parse_balance(parser_t *p, yaml_node_t *n)
{
    static const struct {
        const char *name;
        enum lx_config_balance value;
    } names[] = {{"round_robin", LX_CONFIG_BALANCE_ROUND_ROBIN},
                 {"least_request", LX_CONFIG_BALANCE_LEAST_REQUEST},
                 {"fleet", LX_CONFIG_BALANCE_FLEET}};
    const char *s = lx_cfg_scalar(p, n, "routing.balance");
    if (s == NULL)
        return;
    for (size_t i = 0; i < LX_ARRAY_SIZE(names); i++) {
        if (strcmp(s, names[i].name) == 0) {
            p->cfg->routing_balance = names[i].value;
            return;
        }
    }
    REPORT(p, n, "routing.balance: expected round_robin, least_request or fleet");
}

/* scrape_interval, queue_size, queue_timeout: the fleet's load signals and admission queue. */
static void parse_fleet(parser_t *p, yaml_node_t *scrape, yaml_node_t *qsize, yaml_node_t *qtime)
{
    lx_config_t *cfg = p->cfg;
    uint64_t v;
    if (scrape != NULL) {
        v = cfg->routing_scrape_interval_ms;
        lx_cfg_get_duration(p, scrape, "routing.scrape_interval", &v);
        if (v < 10 || v > 60000)
            REPORT(p, scrape, "routing.scrape_interval: expected 10ms to 60s");
        else
            cfg->routing_scrape_interval_ms = v;
    }
    if (qsize != NULL && lx_cfg_get_uint(p, qsize, "routing.queue_size", 0, 1000000, &v))
        cfg->routing_queue_size = (uint32_t)v;
    if (qtime != NULL) {
        v = cfg->routing_queue_timeout_ms;
        lx_cfg_get_duration(p, qtime, "routing.queue_timeout", &v);
        if (v > 10 * 60 * 1000)
            REPORT(p, qtime, "routing.queue_timeout: at most 10m");
        else
            cfg->routing_queue_timeout_ms = v;
    }
}

/* queue_target (0s: off, at most 10s), queue_interval (1ms..10s): the admission queue's
 * standing-queue detector (route/codel.h). */
static void parse_standing(parser_t *p, yaml_node_t *target, yaml_node_t *interval)
{
    lx_config_t *cfg = p->cfg;
    uint64_t v;
    if (target != NULL) {
        v = cfg->routing_queue_target_ms;
        lx_cfg_get_duration_or_zero(p, target, "routing.queue_target", &v);
        if (v > 10 * 1000)
            REPORT(p, target, "routing.queue_target: at most 10s");
        else
            cfg->routing_queue_target_ms = v;
    }
    if (interval != NULL) {
        v = cfg->routing_queue_interval_ms;
        lx_cfg_get_duration(p, interval, "routing.queue_interval", &v);
        if (v < 1 || v > 10 * 1000)
            REPORT(p, interval, "routing.queue_interval: expected 1ms to 10s");
        else
            cfg->routing_queue_interval_ms = v;
    }
}

/* A number from <min> to <max> at <n> into *<out>; false (reported) otherwise. */
static bool get_number(parser_t *p, yaml_node_t *n, const char *what, double min, double max,
                       double *out)
{
    const char *s = lx_cfg_scalar(p, n, what);
    char *end = NULL;
    double d = s != NULL ? strtod(s, &end) : 0;
    if (s == NULL)
        return false;
    if (end == s || *end != '\0' || !(d >= min && d <= max)) {
        REPORT(p, n, "%s: expected a number from %g to %g", what, min, max);
        return false;
    }
    *out = d;
    return true;
}

/* affinity_slack, affinity_eps: how hard balance fleet holds a prompt prefix to its replica. */
static void parse_affinity(parser_t *p, yaml_node_t *slack, yaml_node_t *eps)
{
    double d;
    if (slack != NULL && get_number(p, slack, "routing.affinity_slack", 0, 100, &d))
        p->cfg->routing_affinity_slack = d;
    if (eps != NULL && get_number(p, eps, "routing.affinity_eps", 0.01, 10, &d))
        p->cfg->routing_affinity_eps_milli = (uint32_t)(d * 1000 + 0.5);
}

void lx_cfg_parse_routing(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"strategy", false, NULL, NULL},       {"max_attempts", false, NULL, NULL},
                   {"deadline", false, NULL, NULL},       {"session_ttl", false, NULL, NULL},
                   {"balance", false, NULL, NULL},        {"scrape_interval", false, NULL, NULL},
                   {"queue_size", false, NULL, NULL},     {"queue_timeout", false, NULL, NULL},
                   {"affinity_slack", false, NULL, NULL}, {"affinity_eps", false, NULL, NULL},
                   {"hedge_budget", false, NULL, NULL},   {"affinity_wait", false, NULL, NULL},
                   {"queue_target", false, NULL, NULL},   {"queue_interval", false, NULL, NULL}};
    uint64_t v;
    double d;

    if (!lx_cfg_read_map(p, n, "routing", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *s = lx_cfg_scalar(p, f[0].value, "routing.strategy");
        if (s != NULL && strcmp(s, "health") == 0)
            cfg->routing_strategy = LX_CONFIG_ROUTING_HEALTH;
        else if (s != NULL && strcmp(s, "round_robin") == 0)
            cfg->routing_strategy = LX_CONFIG_ROUTING_ROUND_ROBIN;
        else if (s != NULL)
            REPORT(p, f[0].value, "routing.strategy: expected health or round_robin");
    }
    if (f[1].value != NULL && lx_cfg_get_uint(p, f[1].value, "routing.max_attempts", 1, 16, &v))
        cfg->routing_max_attempts = (uint32_t)v;
    if (f[2].value != NULL)
        lx_cfg_get_duration(p, f[2].value, "routing.deadline", &cfg->routing_deadline_ms);
    if (f[3].value != NULL)
        lx_cfg_get_duration_or_zero(p, f[3].value, "routing.session_ttl",
                                    &cfg->routing_session_ttl_ms);
    if (f[4].value != NULL)
        parse_balance(p, f[4].value);
    parse_fleet(p, f[5].value, f[6].value, f[7].value);
    parse_affinity(p, f[8].value, f[9].value);
    if (f[10].value != NULL && get_number(p, f[10].value, "routing.hedge_budget", 0, 1, &d))
        cfg->routing_hedge_budget_ppm = (uint32_t)(d * 1e6 + 0.5);
    if (f[11].value != NULL) {
        v = cfg->routing_affinity_wait_ms;
        lx_cfg_get_duration_or_zero(p, f[11].value, "routing.affinity_wait", &v);
        if (v > 10 * 1000)
            REPORT(p, f[11].value, "routing.affinity_wait: at most 10s");
        else
            cfg->routing_affinity_wait_ms = v;
    }
    parse_standing(p, f[12].value, f[13].value);
}

void lx_cfg_parse_health(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {
        {"rescore_interval", false, NULL, NULL},     {"window", false, NULL, NULL},
        {"breaker_failures", false, NULL, NULL},     {"breaker_cooldown", false, NULL, NULL},
        {"breaker_max_cooldown", false, NULL, NULL}, {"probe_interval", false, NULL, NULL},
        {"exploration", false, NULL, NULL}};
    uint64_t v;

    if (!lx_cfg_read_map(p, n, "health", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        lx_cfg_get_duration(p, f[0].value, "health.rescore_interval",
                            &cfg->health_rescore_interval_ms);
    if (f[1].value != NULL)
        lx_cfg_get_duration(p, f[1].value, "health.window", &cfg->health_window_ms);
    if (f[2].value != NULL &&
        lx_cfg_get_uint(p, f[2].value, "health.breaker_failures", 1, 1000, &v))
        cfg->health_breaker_failures = (uint32_t)v;
    if (f[3].value != NULL)
        lx_cfg_get_duration(p, f[3].value, "health.breaker_cooldown",
                            &cfg->health_breaker_cooldown_ms);
    if (f[4].value != NULL)
        lx_cfg_get_duration(p, f[4].value, "health.breaker_max_cooldown",
                            &cfg->health_breaker_max_cooldown_ms);
    if (f[5].value != NULL)
        lx_cfg_get_duration_or_zero(p, f[5].value, "health.probe_interval",
                                    &cfg->health_probe_interval_ms);
    double d;
    if (f[6].value != NULL && get_number(p, f[6].value, "health.exploration", 0, 0.5, &d))
        cfg->health_exploration = d;
    if (cfg->health_window_ms < cfg->health_rescore_interval_ms)
        REPORT(p,
               f[1].value != NULL   ? f[1].value
               : f[0].value != NULL ? f[0].value
                                    : n,
               "health.window: must be at least health.rescore_interval");
    if (cfg->health_breaker_max_cooldown_ms < cfg->health_breaker_cooldown_ms)
        REPORT(p, f[4].value != NULL ? f[4].value : n,
               "health.breaker_max_cooldown: must be at least health.breaker_cooldown");
}
