/*
 * config_parse.c - YAML text -> lx_config_t: lx_config_load() and lx_config_parse().
 *
 * libyaml composes the whole document into a node tree (each node keeps its start mark); this
 * file sets the defaults and walks the top level, handing each section to its parser
 * (config_server.c, config_tls.c, config_provider.c, config_model.c, config_access.c,
 * config_routing.c), which match keys and convert values with the readers of config_node.c.
 * Every problem is recorded here with its position and the walk goes on, so one run reports
 * them all; they are printed sorted by position as "file:line:column: message". A snapshot is
 * returned only when there was none: whatever parses is semantically valid (references
 * resolved, no duplicates, secrets present).
 *
 * Secrets (api_key and header values, before and after ${VAR} substitution) are never copied
 * into a message.
 */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "config/config_arena.h"
#include "config/config_parse_int.h"
#include "core/core.h"
#include "core/status.h"

#define MAX_ERRORS    100
#define MAX_FILE_SIZE (16u << 20)

struct problem {
    size_t line, column; /* 1-based */
    size_t seq;          /* order of discovery, to keep the sort stable */
    char *text;
};

void lx_cfg_error_at(parser_t *p, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (p->n_errors == MAX_ERRORS) {
        p->dropped++;
        return;
    }
    if (p->errors == NULL) {
        p->errors = calloc(MAX_ERRORS, sizeof(*p->errors));
        if (p->errors == NULL) {
            p->oom = true;
            return;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int rc = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        p->oom = true;
        return;
    }
    problem_t *e = &p->errors[p->n_errors];
    e->line = mark->line + 1;
    e->column = mark->column + 1;
    e->seq = p->n_errors;
    e->text = text;
    p->n_errors++;
}

static int compare_errors(const void *a, const void *b)
{
    const problem_t *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_errors(parser_t *p, FILE *out)
{
    if (p->n_errors > 0)
        qsort(p->errors, p->n_errors, sizeof(*p->errors), compare_errors);
    for (size_t i = 0; i < p->n_errors; i++) {
        if (out != NULL)
            fprintf(out, "%s:%zu:%zu: %s\n", p->name, p->errors[i].line, p->errors[i].column,
                    p->errors[i].text);
        free(p->errors[i].text);
    }
    free(p->errors);
    p->errors = NULL;
    if (out != NULL && p->dropped > 0)
        fprintf(out, "%s: %zu more errors not shown\n", p->name, p->dropped);
    if (out != NULL && p->oom)
        fprintf(out, "%s: out of memory\n", p->name);
}

static void set_defaults(parser_t *p)
{
    lx_config_t *cfg = p->cfg;
    cfg->max_header_size = 16 * 1024;
    cfg->max_body_size = 32 * 1024 * 1024;
    cfg->max_body_memory = 256 * 1024 * 1024;
    cfg->client_header_timeout_ms = 10 * 1000;
    cfg->client_body_timeout_ms = 60 * 1000;
    cfg->keepalive_timeout_ms = 75 * 1000;
    cfg->upstream_connect_timeout_ms = 5 * 1000;
    cfg->upstream_first_byte_timeout_ms = 60 * 1000;
    cfg->upstream_idle_timeout_ms = 120 * 1000;
    cfg->shutdown_timeout_ms = 30 * 1000;
    cfg->access_log = lx_cfg_copy(p, "-");
    cfg->log_level = 2;
    cfg->stream_keepalive_interval_ms = 15 * 1000;
    cfg->stream_keepalive_delay_ms = 2 * 1000;
    cfg->routing_strategy = LX_CONFIG_ROUTING_HEALTH;
    cfg->routing_max_attempts = 3;
    cfg->routing_deadline_ms = 90 * 1000;
    cfg->routing_session_ttl_ms = 10 * 60 * 1000;
    cfg->routing_balance = LX_CONFIG_BALANCE_DEFAULT;
    cfg->routing_scrape_interval_ms = 50;
    cfg->routing_queue_size = 0;
    cfg->routing_queue_timeout_ms = 5000;
    cfg->routing_affinity_slack = 1.5; /* (route/fleet.c's lx_fleet_params_default) */
    cfg->routing_affinity_eps_milli = 500;
    cfg->routing_hedge_budget_ppm = 50000; /* 5%: "The Tail at Scale"'s p95 deferral */
    cfg->routing_affinity_wait_ms = 400;
    cfg->routing_queue_target_ms = 100; /* (0s turns it off: see conf/llmux.yaml) */
    cfg->routing_queue_interval_ms = 500;
    cfg->health_rescore_interval_ms = 5 * 60 * 1000;
    cfg->health_window_ms = 15 * 60 * 1000;
    cfg->health_breaker_failures = 5;
    cfg->health_breaker_cooldown_ms = 10 * 1000;
    cfg->health_breaker_max_cooldown_ms = 5 * 60 * 1000;
    cfg->health_probe_interval_ms = 30 * 1000;
    cfg->health_exploration = 0.02;
    cfg->metrics_public = true;
    cfg->limits_default_max_cost = 1000000; /* $1 */
    cfg->store_commit_interval_ms = 50;
    cfg->store_retention_s = 90 * 24 * 3600;
}

static void parse_root(parser_t *p, yaml_node_t *root)
{
    field_t f[] = {{"listen", true, NULL, NULL},        {"workers", false, NULL, NULL},
                   {"limits", false, NULL, NULL},       {"timeouts", false, NULL, NULL},
                   {"providers", true, NULL, NULL},     {"models", true, NULL, NULL},
                   {"auth", false, NULL, NULL},         {"log", false, NULL, NULL},
                   {"stream", false, NULL, NULL},       {"routing", false, NULL, NULL},
                   {"health", false, NULL, NULL},       {"admin", false, NULL, NULL},
                   {"busy_poll_us", false, NULL, NULL}, {"store", false, NULL, NULL}};

    if (root == NULL) {
        static const yaml_mark_t start = {0, 0, 0};
        lx_cfg_error_at(p, &start, "the configuration is empty (see conf/llmux.yaml for a start)");
        return;
    }
    if (!lx_cfg_read_map(p, root, "", f, LX_ARRAY_SIZE(f)))
        return;
    /* Providers before models, whatever the order in the file: routes name providers. */
    if (f[0].value != NULL)
        lx_cfg_parse_listen(p, f[0].value);
    if (f[1].value != NULL)
        lx_cfg_parse_workers(p, f[1].value);
    if (f[2].value != NULL)
        lx_cfg_parse_limits(p, f[2].value);
    if (f[3].value != NULL)
        lx_cfg_parse_timeouts(p, f[3].value);
    if (f[4].value != NULL)
        lx_cfg_parse_providers(p, f[4].value);
    if (f[5].value != NULL)
        lx_cfg_parse_models(p, f[5].value);
    lx_cfg_parse_auth(p, root, f[6].value);
    if (f[7].value != NULL)
        lx_cfg_parse_log(p, f[7].value);
    if (f[8].value != NULL)
        lx_cfg_parse_stream(p, f[8].value);
    if (f[9].value != NULL)
        lx_cfg_parse_routing(p, f[9].value);
    if (f[10].value != NULL)
        lx_cfg_parse_health(p, f[10].value);
    if (f[11].value != NULL) /* after auth: a management key may not be an auth key */
        lx_cfg_parse_admin(p, f[11].value);
    if (f[12].value != NULL)
        lx_cfg_get_uint(p, f[12].value, "busy_poll_us", 0, 100000, &p->cfg->busy_poll_us);
    if (f[13].value != NULL)
        lx_cfg_parse_store(p, f[13].value);
    lx_cfg_store_path(p);
}

static void yaml_error(parser_t *p, const yaml_parser_t *yp)
{
    if (yp->error == YAML_MEMORY_ERROR) {
        p->oom = true;
        return;
    }
    const yaml_mark_t *mark = yp->error == YAML_READER_ERROR ? &yp->mark : &yp->problem_mark;
    const char *problem = yp->problem != NULL ? yp->problem : "malformed YAML";
    if (yp->context != NULL)
        lx_cfg_error_at(p, mark, "YAML: %s %s", yp->context, problem);
    else
        lx_cfg_error_at(p, mark, "YAML: %s", problem);
}

int lx_config_parse(const char *name, const char *text, size_t len, FILE *errors, lx_config_t **out)
{
    parser_t p = {.name = name, .now = time(NULL)};
    yaml_parser_t yp;
    yaml_document_t doc, extra;

    *out = NULL;
    p.arena = lx_config_arena_new();
    if (p.arena != NULL)
        p.cfg = lx_cfg_alloc(&p, 1, sizeof(*p.cfg));
    if (p.cfg == NULL || !yaml_parser_initialize(&yp)) {
        p.oom = true;
        goto done;
    }
    atomic_init(&p.cfg->refcount, 1);
    p.cfg->arena = p.arena;
    p.cfg->path = lx_cfg_copy(&p, name);
    set_defaults(&p);

    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    if (!yaml_parser_load(&yp, &doc)) {
        yaml_error(&p, &yp);
    } else {
        p.doc = &doc;
        parse_root(&p, yaml_document_get_root_node(&doc));
        /* A second document would be silently ignored: refuse it. */
        if (!yaml_parser_load(&yp, &extra)) {
            yaml_error(&p, &yp);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root != NULL)
                REPORT(&p, root, "only one YAML document is allowed in a configuration file");
            yaml_document_delete(&extra);
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&yp);

    if (p.cfg->workers == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        p.cfg->workers = cores < 1 ? 1 : cores > MAX_WORKERS ? MAX_WORKERS : (unsigned)cores;
    }

done:;
    int rc = p.oom ? LX_ENOMEM : p.n_errors > 0 || p.dropped > 0 ? LX_ECONFIG : 0;
    flush_errors(&p, errors);
    if (rc != 0) {
        lx_config_arena_free(p.arena);
        return rc;
    }
    *out = p.cfg;
    return 0;
}

int lx_config_load(const char *path, FILE *errors, lx_config_t **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        if (errors != NULL)
            fprintf(errors, "%s: cannot open: %s\n", path, strerror(err));
        return -err;
    }
    size_t cap = 16384, len = 0;
    char *text = malloc(cap);
    while (text != NULL) {
        len += fread(text + len, 1, cap - len, f);
        if (len < cap || cap > MAX_FILE_SIZE)
            break;
        char *grown = realloc(text, cap * 2);
        if (grown == NULL)
            free(text);
        text = grown;
        cap *= 2;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (text == NULL) {
        if (errors != NULL)
            fprintf(errors, "%s: out of memory\n", path);
        return LX_ENOMEM;
    }
    if (err != 0) {
        free(text);
        if (errors != NULL)
            fprintf(errors, "%s: cannot read: %s\n", path, strerror(err));
        return -err;
    }
    if (len > MAX_FILE_SIZE) {
        free(text);
        if (errors != NULL)
            fprintf(errors, "%s: the file is larger than 16MiB\n", path);
        return LX_ECONFIG;
    }
    int rc = lx_config_parse(path, text, len, errors, out);
    free(text);
    return rc;
}
