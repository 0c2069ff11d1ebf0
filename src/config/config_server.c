/*
 * config_server.c - the sections about llmux itself: the listen addresses (their `tls` goes to
 * config_tls.c), workers, request limits (with the cost a request without max_tokens
 * reserves), the default timeouts, streaming keep-alives and the log.
 */
#include <stdio.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

void lx_cfg_parse_listen(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    yaml_node_t *single = n;
    size_t count = 1;

    if (n->type == YAML_SEQUENCE_NODE) {
        if (!lx_cfg_list(p, n, "listen"))
            return;
        count = lx_cfg_seq_len(n);
        single = NULL;
    }
    cfg->listen = lx_cfg_alloc(p, count, sizeof(*cfg->listen));
    if (cfg->listen == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item =
            single != NULL ? single : lx_cfg_node(p, n->data.sequence.items.start[i]);
        char what[32];
        lx_config_value_listen_t addr;
        const char *why;

        snprintf(what, sizeof(what), single != NULL ? "listen" : "listen[%zu]", i);
        yaml_node_t *tls = NULL;
        if (item != NULL && item->type == YAML_MAPPING_NODE) {
            /* {address: "127.0.0.1:8443", tls: {...}} */
            field_t f[] = {{"address", true, NULL, NULL}, {"tls", false, NULL, NULL}};
            if (!lx_cfg_read_map(p, item, what, f, LX_ARRAY_SIZE(f)) || f[0].value == NULL)
                continue;
            item = f[0].value;
            tls = f[1].value;
        }
        const char *s = lx_cfg_scalar(p, item, what);
        if (s == NULL)
            continue;
        if (lx_config_value_listen(s, &addr, &why) != 0) {
            REPORT(p, item, "%s: %s", what, why);
            continue;
        }
        for (size_t j = 0; j < cfg->n_listen; j++) {
            if (cfg->listen[j].port == addr.port && strcmp(cfg->listen[j].host, addr.host) == 0)
                REPORT(p, item, "%s: address listed twice", what);
        }
        lx_config_listen_t *l = &cfg->listen[cfg->n_listen];
        l->host = lx_cfg_copy(p, addr.host);
        l->port = addr.port;
        l->is_loopback = addr.is_loopback;
        if (tls != NULL) {
            char sub[48];
            snprintf(sub, sizeof(sub), "%s.tls", what);
            lx_cfg_parse_listen_tls(p, l, tls, sub);
        }
        if (l->host != NULL)
            cfg->n_listen++;
    }
}

void lx_cfg_parse_workers(parser_t *p, yaml_node_t *n)
{
    uint64_t v;
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "auto") == 0)
        return; /* resolved after the walk */
    if (n->type == YAML_SCALAR_NODE && !lx_cfg_is_null(n)) {
        const char *why;
        if (lx_config_value_uint((const char *)n->data.scalar.value, 1, MAX_WORKERS, &v, &why) !=
            0) {
            REPORT(p, n, "workers: expected `auto` or a number from 1 to %d", MAX_WORKERS);
            return;
        }
        p->cfg->workers = (unsigned)v;
        return;
    }
    REPORT(p, n, "workers: expected `auto` or a number from 1 to %d", MAX_WORKERS);
}

void lx_cfg_parse_limits(parser_t *p, yaml_node_t *n)
{
    field_t f[] = {{"max_header_size", false, NULL, NULL},
                   {"max_body_size", false, NULL, NULL},
                   {"max_body_memory", false, NULL, NULL},
                   {"default_max_cost", false, NULL, NULL}};
    if (!lx_cfg_read_map(p, n, "limits", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        lx_cfg_get_size(p, f[0].value, "limits.max_header_size", 1024, 1024 * 1024,
                        &p->cfg->max_header_size);
    if (f[1].value != NULL)
        lx_cfg_get_size(p, f[1].value, "limits.max_body_size", 1024, 4ull << 30,
                        &p->cfg->max_body_size);
    if (f[3].value != NULL) {
        int64_t v = -1;
        if (lx_cfg_get_micros(p, f[3].value, "limits.default_max_cost", &v) && v == 0)
            REPORT(p, f[3].value,
                   "limits.default_max_cost: must be more than 0 (it is what a request without "
                   "max_tokens reserves against its key's budget)");
        else if (v > 0)
            p->cfg->limits_default_max_cost = v;
    }
    if (f[2].value == NULL) {
        /* the default never refuses a body max_body_size allows */
        p->cfg->max_body_memory = LX_MAX(p->cfg->max_body_memory, p->cfg->max_body_size);
        return;
    }
    lx_cfg_get_size(p, f[2].value, "limits.max_body_memory", 1024 * 1024, 1ull << 40,
                    &p->cfg->max_body_memory);
    if (p->cfg->max_body_memory < p->cfg->max_body_size)
        REPORT(p, f[2].value,
               "limits.max_body_memory: must be at least limits.max_body_size, or a body of the "
               "largest size allowed could never be taken");
}

void lx_cfg_parse_timeouts(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"client_header", false, NULL, NULL},
                   {"client_body", false, NULL, NULL},
                   {"keepalive", false, NULL, NULL},
                   {"upstream_connect", false, NULL, NULL},
                   {"upstream_first_byte", false, NULL, NULL},
                   {"upstream_idle", false, NULL, NULL},
                   {"shutdown", false, NULL, NULL}};
    uint64_t *slots[] = {&cfg->client_header_timeout_ms,
                         &cfg->client_body_timeout_ms,
                         &cfg->keepalive_timeout_ms,
                         &cfg->upstream_connect_timeout_ms,
                         &cfg->upstream_first_byte_timeout_ms,
                         &cfg->upstream_idle_timeout_ms,
                         &cfg->shutdown_timeout_ms};
    char what[64];

    if (!lx_cfg_read_map(p, n, "timeouts", f, LX_ARRAY_SIZE(f)))
        return;
    for (size_t i = 0; i < LX_ARRAY_SIZE(f); i++) {
        if (f[i].value == NULL)
            continue;
        lx_cfg_join(what, sizeof(what), "timeouts", f[i].key);
        if (slots[i] == &cfg->shutdown_timeout_ms) /* the one timeout that may be 0s */
            lx_cfg_get_duration_or_zero(p, f[i].value, what, slots[i]);
        else
            lx_cfg_get_duration(p, f[i].value, what, slots[i]);
    }
}

void lx_cfg_parse_stream(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"keepalive_interval", false, NULL, NULL},
                   {"keepalive_delay", false, NULL, NULL},
                   {"early_commit", false, NULL, NULL},
                   {"always_send_usage", false, NULL, NULL}};

    if (!lx_cfg_read_map(p, n, "stream", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        lx_cfg_get_duration(p, f[0].value, "stream.keepalive_interval",
                            &cfg->stream_keepalive_interval_ms);
    if (f[1].value != NULL)
        lx_cfg_get_duration(p, f[1].value, "stream.keepalive_delay",
                            &cfg->stream_keepalive_delay_ms);
    if (f[2].value != NULL)
        lx_cfg_get_bool(p, f[2].value, "stream.early_commit", &cfg->stream_early_commit);
    if (f[3].value != NULL)
        lx_cfg_get_bool(p, f[3].value, "stream.always_send_usage", &cfg->stream_always_send_usage);
}

void lx_cfg_parse_log(parser_t *p, yaml_node_t *n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    field_t f[] = {{"access_log", false, NULL, NULL}, {"level", false, NULL, NULL}};

    if (!lx_cfg_read_map(p, n, "log", f, 2))
        return;
    if (f[0].value != NULL) {
        const char *s = lx_cfg_scalar(p, f[0].value, "log.access_log");
        if (s != NULL)
            p->cfg->access_log = strcmp(s, "off") == 0 ? NULL : lx_cfg_copy(p, s);
    }
    if (f[1].value != NULL) {
        const char *s = lx_cfg_scalar(p, f[1].value, "log.level");
        int level = -1;
        for (int i = 0; s != NULL && i < 4; i++) {
            if (strcmp(s, levels[i]) == 0)
                level = i;
        }
        if (s != NULL && level < 0)
            REPORT(p, f[1].value, "log.level: expected error, warn, info or debug");
        else if (level >= 0)
            p->cfg->log_level = level;
    }
}
