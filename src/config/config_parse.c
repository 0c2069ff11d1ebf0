/*
 * config_parse.c - YAML text -> lx_config_t: lx_config_load() and lx_config_parse().
 *
 * libyaml composes the whole document into a node tree (each node keeps its start mark); this
 * file walks the tree against the schema, one table of known keys per mapping, converting
 * values with config_value.c and copying strings into the snapshot's arena (config_arena.c).
 * Every problem is recorded with its position and the walk goes on, so one run reports them
 * all; they are printed sorted by position as "file:line:column: message". A snapshot is
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
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "config/config_arena.h"
#include "config/config_value.h"
#include "core/core.h"
#include "core/status.h"
#include "tls/tls_cert.h"

#define MAX_ERRORS    100
#define MAX_FILE_SIZE (16u << 20)
#define MAX_WORKERS   256

typedef struct problem {
    size_t line, column; /* 1-based */
    size_t seq;          /* order of discovery, to keep the sort stable */
    char *text;
} problem_t;

typedef struct parser {
    const char *name;
    yaml_document_t *doc;
    lx_config_t *cfg;
    lx_config_arena_t *arena;
    problem_t *errors;
    size_t n_errors;
    size_t dropped; /* errors beyond MAX_ERRORS */
    bool oom;
    time_t now;
} parser_t;

/* One known key of a mapping, filled by read_map(). */
typedef struct field {
    const char *key;
    bool required;
    yaml_node_t *key_node;
    yaml_node_t *value;
} field_t;

__attribute__((format(printf, 3, 4))) static void error_at(parser_t *p, const yaml_mark_t *mark,
                                                           const char *fmt, ...)
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

#define REPORT(p, node, ...) error_at((p), &(node)->start_mark, __VA_ARGS__)

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

/* Arena helpers: a failure marks the parse as out of memory and returns NULL. */
static void *alloc(parser_t *p, size_t n, size_t size)
{
    void *mem = lx_config_arena_alloc(p->arena, n, size);
    if (mem == NULL)
        p->oom = true;
    return mem;
}

static char *copy_n(parser_t *p, const char *s, size_t len)
{
    char *copy = lx_config_arena_strndup(p->arena, s, len);
    if (copy == NULL)
        p->oom = true;
    return copy;
}

static char *copy(parser_t *p, const char *s)
{
    return copy_n(p, s, strlen(s));
}

/* A printable, bounded rendering of user-written text (a key, a name) for messages. */
static const char *show(const char *s, char *buf, size_t size)
{
    size_t n = 0, i = 0;
    for (; s[i] != '\0' && n + 4 < size; i++)
        buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* "where.key", or "key" at the top level. */
static const char *join(char *buf, size_t size, const char *where, const char *key)
{
    snprintf(buf, size, "%s%s%s", where, where[0] != '\0' ? "." : "", key);
    return buf;
}

static const char *in_where(const char *where)
{
    return where[0] != '\0' ? " in " : " at the top level";
}

static const char *kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static yaml_node_t *node(parser_t *p, int index)
{
    return yaml_document_get_node(p->doc, index);
}

/* The text of a scalar node, or NULL after an error naming <what>. */
static const char *scalar(parser_t *p, yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        REPORT(p, n, "%s: expected a value, got %s", what, kind(n));
        return NULL;
    }
    if (is_null(n)) {
        REPORT(p, n, "%s: missing value", what);
        return NULL;
    }
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
        REPORT(p, n, "%s: contains a NUL character", what);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* A list node for <what>, or false after an error. */
static bool sequence(parser_t *p, yaml_node_t *n, const char *what, bool non_empty)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        REPORT(p, n, "%s: expected a list, got %s", what, is_null(n) ? "nothing" : kind(n));
        return false;
    }
    if (non_empty && seq_len(n) == 0) {
        REPORT(p, n, "%s: the list is empty", what);
        return false;
    }
    return true;
}

/*
 * Matches the keys of mapping <n> against <fields>: unknown and repeated keys are errors, as
 * are missing required ones. Returns false (after an error) when <n> is not a mapping.
 */
static bool read_map(parser_t *p, yaml_node_t *n, const char *where, field_t *fields,
                     size_t n_fields)
{
    char buf[80];

    if (n->type != YAML_MAPPING_NODE) {
        REPORT(p, n, "%s: expected a mapping, got %s",
               where[0] != '\0' ? where : "the configuration", is_null(n) ? "nothing" : kind(n));
        return false;
    }
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = node(p, pair->key), *v = node(p, pair->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            REPORT(p, k, "keys must be plain names%s%s", in_where(where), where);
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t i = 0;
        while (i < n_fields && strcmp(fields[i].key, key) != 0)
            i++;
        if (i == n_fields) {
            REPORT(p, k, "unknown key '%s'%s%s", show(key, buf, sizeof(buf)), in_where(where),
                   where);
        } else if (fields[i].value != NULL) {
            REPORT(p, k, "duplicate key '%s'%s%s (first at line %zu)", fields[i].key,
                   in_where(where), where, fields[i].key_node->start_mark.line + 1);
        } else {
            fields[i].key_node = k;
            fields[i].value = v;
        }
    }
    for (size_t i = 0; i < n_fields; i++) {
        if (fields[i].required && fields[i].value == NULL)
            REPORT(p, n, "missing required key '%s'%s%s", fields[i].key, in_where(where), where);
    }
    return true;
}

static bool get_uint(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *why, *s = scalar(p, n, what);
    if (s == NULL)
        return false;
    if (lx_config_value_uint(s, min, max, out, &why) != 0) {
        REPORT(p, n, "%s: %s (expected %llu to %llu)", what, why, (unsigned long long)min,
               (unsigned long long)max);
        return false;
    }
    return true;
}

static void get_duration(parser_t *p, yaml_node_t *n, const char *what, bool allow_zero,
                         uint64_t *out)
{
    const char *why, *s = scalar(p, n, what);
    uint64_t ms;
    if (s == NULL)
        return;
    if (lx_config_value_duration(s, &ms, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
        return;
    }
    if (ms == 0 && !allow_zero) {
        REPORT(p, n, "%s: must be longer than 0s", what);
        return;
    }
    *out = ms;
}

static void get_size(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *why, *s = scalar(p, n, what);
    uint64_t bytes;
    char lo[32], hi[32];
    if (s == NULL)
        return;
    if (lx_config_value_size(s, &bytes, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
        return;
    }
    if (bytes < min || bytes > max) {
        lx_config_value_format_size(min, lo, sizeof(lo));
        lx_config_value_format_size(max, hi, sizeof(hi));
        REPORT(p, n, "%s: must be from %s to %s", what, lo, hi);
        return;
    }
    *out = bytes;
}

static void get_bool(parser_t *p, yaml_node_t *n, const char *what, bool *out)
{
    const char *s = scalar(p, n, what);
    if (s == NULL)
        return;
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
        *out = false;
    else
        REPORT(p, n, "%s: expected true or false", what);
}

/* A name usable in headers, metrics and logs: [A-Za-z0-9._-], 1..64 characters. */
static const char *get_name(parser_t *p, yaml_node_t *n, const char *what)
{
    const char *s = scalar(p, n, what);
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    if (len > 64 ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len) {
        REPORT(p, n, "%s: names use letters, digits, '.', '_' and '-' (at most 64)", what);
        return NULL;
    }
    return s;
}

/* ---- TLS ------------------------------------------------------------------------------------ */

/* A certificate and key pair at <cert_n>/<key_n> (either may be NULL: reported missing),
 * loaded and checked now so a bad file fails `llmux -t` with its path. */
static bool get_cert(parser_t *p, yaml_node_t *map, yaml_node_t *cert_n, yaml_node_t *key_n,
                     const char *where, lx_config_cert_t *out)
{
    char what[128];
    if (cert_n == NULL || key_n == NULL) {
        REPORT(p, map, "%s: `cert` and `key` go together", where);
        return false;
    }
    const char *cert = scalar(p, cert_n, join(what, sizeof(what), where, "cert"));
    const char *key = scalar(p, key_n, join(what, sizeof(what), where, "key"));
    if (cert == NULL || key == NULL)
        return false;
    lx_tls_cert_pair_t pair = {.cert = cert, .key = key};
    char err[512];
    if (lx_tls_cert_check(&pair, err, sizeof(err)) != 0) {
        REPORT(p, strstr(err, key) == err ? key_n : cert_n, "%s: %s", where, err);
        return false;
    }
    out->cert = copy(p, cert);
    out->key = copy(p, key);
    return out->cert != NULL && out->key != NULL;
}

static void parse_listen_tls(parser_t *p, lx_config_listen_t *l, yaml_node_t *n, const char *where)
{
    field_t f[] = {{"cert", false, NULL, NULL},
                   {"key", false, NULL, NULL},
                   {"certificates", false, NULL, NULL},
                   {"min_version", false, NULL, NULL}};
    char what[96], sub[128];
    if (!read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    size_t extra = 0;
    if (f[2].value != NULL) {
        if (!sequence(p, f[2].value, join(what, sizeof(what), where, "certificates"), true))
            return;
        extra = seq_len(f[2].value);
    }
    if (f[0].value == NULL && f[1].value == NULL && extra == 0) {
        REPORT(p, n, "%s: a certificate is required (`cert` and `key`, or `certificates`)", where);
        return;
    }
    lx_config_listen_tls_t *t = alloc(p, 1, sizeof(*t));
    if (t == NULL)
        return;
    t->certs = alloc(p, extra + 1, sizeof(*t->certs));
    if (t->certs == NULL)
        return;
    t->min_version = 12;
    bool ok = true;
    if (f[0].value != NULL || f[1].value != NULL)
        ok = get_cert(p, n, f[0].value, f[1].value, where, &t->certs[t->n_certs++]);
    for (size_t i = 0; i < extra; i++) {
        yaml_node_t *item = node(p, f[2].value->data.sequence.items.start[i]);
        field_t g[] = {{"cert", true, NULL, NULL}, {"key", true, NULL, NULL}};
        snprintf(sub, sizeof(sub), "%s.certificates[%zu]", where, i);
        if (item == NULL || !read_map(p, item, sub, g, LX_ARRAY_SIZE(g))) {
            ok = false;
            continue;
        }
        if (g[0].value == NULL || g[1].value == NULL ||
            !get_cert(p, item, g[0].value, g[1].value, sub, &t->certs[t->n_certs++]))
            ok = false;
    }
    if (f[3].value != NULL) {
        const char *v = scalar(p, f[3].value, join(what, sizeof(what), where, "min_version"));
        if (v != NULL && strcmp(v, "1.2") != 0) {
            REPORT(p, f[3].value,
                   "%s: '%s' is not supported: mbedTLS 2.28 serves TLS 1.2 (`1.2`, the "
                   "default); it has no TLS 1.3 server, and 1.0/1.1 are not offered",
                   what, v);
            ok = false;
        }
    }
    if (ok)
        l->tls = t;
}

static void parse_provider_tls(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                               const char *where)
{
    field_t f[] = {{"ca_file", false, NULL, NULL},
                   {"insecure_skip_verify", false, NULL, NULL},
                   {"cert", false, NULL, NULL},
                   {"key", false, NULL, NULL},
                   {"server_name", false, NULL, NULL}};
    char sub[64], what[96];
    snprintf(sub, sizeof(sub), "%s.tls", where);
    if (!read_map(p, n, sub, f, LX_ARRAY_SIZE(f)))
        return;
    lx_config_provider_tls_t *t = &pv->tls;
    if (f[0].value != NULL) {
        const char *ca = scalar(p, f[0].value, join(what, sizeof(what), sub, "ca_file"));
        char err[512];
        if (ca != NULL && lx_tls_cert_check_ca(ca, err, sizeof(err)) != 0)
            REPORT(p, f[0].value, "%s: %s", what, err);
        else if (ca != NULL)
            t->ca_file = copy(p, ca);
    }
    if (f[1].value != NULL)
        get_bool(p, f[1].value, join(what, sizeof(what), sub, "insecure_skip_verify"),
                 &t->insecure_skip_verify);
    if (f[2].value != NULL || f[3].value != NULL)
        get_cert(p, n, f[2].value, f[3].value, sub, &t->client);
    if (f[4].value != NULL) {
        const char *name = scalar(p, f[4].value, join(what, sizeof(what), sub, "server_name"));
        if (name != NULL && (name[0] == '\0' || strlen(name) > 253 || strchr(name, '/') != NULL))
            REPORT(p, f[4].value, "%s: expected a host name", what);
        else if (name != NULL)
            t->server_name = copy(p, name);
    }
}

/* ---- listen, workers, limits, timeouts ---------------------------------------------------- */

static void parse_listen(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    yaml_node_t *single = n;
    size_t count = 1;

    if (n->type == YAML_SEQUENCE_NODE) {
        if (!sequence(p, n, "listen", true))
            return;
        count = seq_len(n);
        single = NULL;
    }
    cfg->listen = alloc(p, count, sizeof(*cfg->listen));
    if (cfg->listen == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = single != NULL ? single : node(p, n->data.sequence.items.start[i]);
        char what[32];
        lx_config_value_listen_t addr;
        const char *why;

        snprintf(what, sizeof(what), single != NULL ? "listen" : "listen[%zu]", i);
        yaml_node_t *tls = NULL;
        if (item != NULL && item->type == YAML_MAPPING_NODE) {
            /* {address: "127.0.0.1:8443", tls: {...}} */
            field_t f[] = {{"address", true, NULL, NULL}, {"tls", false, NULL, NULL}};
            if (!read_map(p, item, what, f, LX_ARRAY_SIZE(f)) || f[0].value == NULL)
                continue;
            item = f[0].value;
            tls = f[1].value;
        }
        const char *s = scalar(p, item, what);
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
        l->host = copy(p, addr.host);
        l->port = addr.port;
        l->is_loopback = addr.is_loopback;
        if (tls != NULL) {
            char sub[48];
            snprintf(sub, sizeof(sub), "%s.tls", what);
            parse_listen_tls(p, l, tls, sub);
        }
        if (l->host != NULL)
            cfg->n_listen++;
    }
}

static void parse_workers(parser_t *p, yaml_node_t *n)
{
    uint64_t v;
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "auto") == 0)
        return; /* resolved after the walk */
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
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

static void parse_limits(parser_t *p, yaml_node_t *n)
{
    field_t f[] = {{"max_header_size", false, NULL, NULL},
                   {"max_body_size", false, NULL, NULL},
                   {"max_body_memory", false, NULL, NULL}};
    if (!read_map(p, n, "limits", f, 3))
        return;
    if (f[0].value != NULL)
        get_size(p, f[0].value, "limits.max_header_size", 1024, 1024 * 1024,
                 &p->cfg->max_header_size);
    if (f[1].value != NULL)
        get_size(p, f[1].value, "limits.max_body_size", 1024, 4ull << 30, &p->cfg->max_body_size);
    if (f[2].value == NULL) {
        /* the default never refuses a body max_body_size allows */
        p->cfg->max_body_memory = LX_MAX(p->cfg->max_body_memory, p->cfg->max_body_size);
        return;
    }
    get_size(p, f[2].value, "limits.max_body_memory", 1024 * 1024, 1ull << 40,
             &p->cfg->max_body_memory);
    if (p->cfg->max_body_memory < p->cfg->max_body_size)
        REPORT(p, f[2].value,
               "limits.max_body_memory: must be at least limits.max_body_size, or a body of the "
               "largest size allowed could never be taken");
}

static void parse_timeouts(parser_t *p, yaml_node_t *n)
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

    if (!read_map(p, n, "timeouts", f, LX_ARRAY_SIZE(f)))
        return;
    for (size_t i = 0; i < LX_ARRAY_SIZE(f); i++) {
        if (f[i].value != NULL)
            get_duration(p, f[i].value, join(what, sizeof(what), "timeouts", f[i].key),
                         slots[i] == &cfg->shutdown_timeout_ms, slots[i]);
    }
}

/* ---- providers ----------------------------------------------------------------------------- */

/*
 * Copies <s> with each ${VAR} replaced by the environment variable's value ("$${" is a literal
 * "${"). NULL after an error naming <what> and the variable, never a value.
 */
static char *expand(parser_t *p, yaml_node_t *n, const char *what, const char *s)
{
    size_t len = 0;
    char *out = NULL;

    /* Pass 0 measures, pass 1 copies. */
    for (int pass = 0; pass < 2; pass++) {
        size_t o = 0;
        for (const char *c = s; *c != '\0';) {
            if (c[0] == '$' && c[1] == '$' && c[2] == '{') {
                if (pass == 1)
                    memcpy(out + o, "${", 2);
                o += 2;
                c += 3;
                continue;
            }
            if (c[0] != '$' || c[1] != '{') {
                if (pass == 1)
                    out[o] = *c;
                o++;
                c++;
                continue;
            }
            const char *name = c + 2, *close = strchr(name, '}');
            if (close == NULL) {
                REPORT(p, n, "%s: unterminated ${ (write $${ for a literal ${)", what);
                return NULL;
            }
            size_t name_len = (size_t)(close - name);
            char var[128];
            if (name_len == 0 || name_len >= sizeof(var) || (name[0] >= '0' && name[0] <= '9') ||
                strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") <
                    name_len) {
                REPORT(p, n, "%s: bad environment variable name in ${...}", what);
                return NULL;
            }
            memcpy(var, name, name_len);
            var[name_len] = '\0';
            const char *value = getenv(var);
            if (value == NULL) {
                REPORT(p, n, "%s: environment variable %s is not set", what, var);
                return NULL;
            }
            size_t vlen = strlen(value);
            if (pass == 1)
                memcpy(out + o, value, vlen);
            o += vlen;
            c = close + 1;
        }
        if (pass == 0) {
            len = o;
            out = alloc(p, len + 1, 1);
            if (out == NULL)
                return NULL;
        }
    }
    out[len] = '\0';
    return out;
}

/* A secret or header value: ${VAR}-expanded, without CR, LF or other control characters. */
static char *secret(parser_t *p, yaml_node_t *n, const char *what)
{
    const char *s = scalar(p, n, what);
    if (s == NULL)
        return NULL;
    char *v = expand(p, n, what, s);
    if (v == NULL)
        return NULL;
    for (const char *c = v; *c != '\0'; c++) {
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
            REPORT(p, n, "%s: the value contains a line break or control character", what);
            return NULL;
        }
    }
    return v;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void parse_headers(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n, const char *where)
{
    /* Framing and hop-by-hop headers belong to the proxy, not to the configuration. */
    static const char *const reserved[] = {"host",       "content-length", "transfer-encoding",
                                           "connection", "keep-alive",     "upgrade",
                                           "te",         "trailer"};
    char what[160], buf[80];

    if (n->type != YAML_MAPPING_NODE) {
        REPORT(p, n, "%s: expected a mapping of header names to values, got %s", where,
               is_null(n) ? "nothing" : kind(n));
        return;
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    pv->headers = alloc(p, count, sizeof(*pv->headers));
    if (pv->headers == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = node(p, pair->key), *v = node(p, pair->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE || is_null(k)) {
            REPORT(p, k, "%s: a header name must be a string", where);
            continue;
        }
        const char *name = (const char *)k->data.scalar.value;
        size_t len = strlen(name), j;
        for (j = 0; j < len && is_tchar(name[j]); j++)
            ;
        if (j != len || len != k->data.scalar.length) {
            REPORT(p, k, "%s: '%s' is not a valid header name", where,
                   show(name, buf, sizeof(buf)));
            continue;
        }
        for (j = 0; j < LX_ARRAY_SIZE(reserved); j++) {
            if (strcasecmp(name, reserved[j]) == 0)
                break;
        }
        if (j < LX_ARRAY_SIZE(reserved)) {
            REPORT(p, k, "%s: header '%s' is managed by llmux and cannot be set", where, name);
            continue;
        }
        if (pv->api_key != NULL && strcasecmp(name, "authorization") == 0) {
            REPORT(p, k, "%s: an Authorization header and api_key are both set; keep one", where);
            continue;
        }
        for (j = 0; j < pv->n_headers; j++) {
            if (strcasecmp(pv->headers[j].name, name) == 0)
                break;
        }
        if (j < pv->n_headers) {
            REPORT(p, k, "%s: header '%s' is set twice", where, name);
            continue;
        }
        snprintf(what, sizeof(what), "%s '%s'", where, name);
        char *value = secret(p, v, what);
        char *name_copy = copy(p, name);
        if (value == NULL || name_copy == NULL)
            continue;
        pv->headers[pv->n_headers].name = name_copy;
        pv->headers[pv->n_headers].value = value;
        pv->n_headers++;
    }
}

static bool set_endpoint(parser_t *p, lx_config_endpoint_t *ep, const char *url,
                         const lx_config_value_url_t *u)
{
    ep->url = copy_n(p, url, u->origin_len);
    ep->host = copy_n(p, u->host, u->host_len);
    ep->port = u->port;
    ep->tls = u->tls;
    return ep->url != NULL && ep->host != NULL;
}

static void parse_endpoints(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                            const char *where)
{
    char what[96];

    snprintf(what, sizeof(what), "%s.endpoints", where);
    if (!sequence(p, n, what, true))
        return;
    size_t count = seq_len(n);
    pv->endpoints = alloc(p, count, sizeof(*pv->endpoints));
    if (pv->endpoints == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node(p, n->data.sequence.items.start[i]);
        lx_config_value_url_t u;
        const char *why;

        snprintf(what, sizeof(what), "%s.endpoints[%zu]", where, i);
        const char *s = scalar(p, item, what);
        if (s == NULL)
            continue;
        if (lx_config_value_url(s, false, &u, &why) != 0) {
            REPORT(p, item, "%s: %s", what, why);
            continue;
        }
        size_t j;
        for (j = 0; j < pv->n_endpoints; j++) {
            const lx_config_endpoint_t *e = &pv->endpoints[j];
            if (e->port == u.port && e->tls == u.tls && strlen(e->host) == u.host_len &&
                strncasecmp(e->host, u.host, u.host_len) == 0)
                break;
        }
        if (j < pv->n_endpoints) {
            REPORT(p, item, "%s: endpoint listed twice", what);
            continue;
        }
        if (set_endpoint(p, &pv->endpoints[pv->n_endpoints], s, &u))
            pv->n_endpoints++;
    }
}

static void parse_provider_timeouts(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                                    const char *where)
{
    field_t f[] = {{"connect", false, NULL, NULL},
                   {"first_byte", false, NULL, NULL},
                   {"idle", false, NULL, NULL}};
    uint64_t *slots[] = {&pv->connect_timeout_ms, &pv->first_byte_timeout_ms, &pv->idle_timeout_ms};
    char sub[96], what[128];

    snprintf(sub, sizeof(sub), "%s.timeouts", where);
    if (!read_map(p, n, sub, f, LX_ARRAY_SIZE(f)))
        return;
    for (size_t i = 0; i < LX_ARRAY_SIZE(f); i++) {
        if (f[i].value != NULL)
            get_duration(p, f[i].value, join(what, sizeof(what), sub, f[i].key), false, slots[i]);
    }
}

/* Index of the provider named <name> among the first <count>, or count. */
static size_t find_provider(const lx_config_t *cfg, size_t count, const char *name)
{
    size_t i = 0;
    while (i < count && (cfg->providers[i].name == NULL || strcmp(cfg->providers[i].name, name)))
        i++;
    return i;
}

static void parse_provider(parser_t *p, size_t index, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    lx_config_provider_t *pv = &cfg->providers[index];
    field_t f[] = {{"name", true, NULL, NULL},       {"base_url", true, NULL, NULL},
                   {"endpoints", false, NULL, NULL}, {"api_key", false, NULL, NULL},
                   {"headers", false, NULL, NULL},   {"max_connections", false, NULL, NULL},
                   {"timeouts", false, NULL, NULL},  {"data_collection", false, NULL, NULL},
                   {"zdr", false, NULL, NULL},       {"probe", false, NULL, NULL},
                   {"tls", false, NULL, NULL},       {"max_idle_connections", false, NULL, NULL}};
    char where[32], what[64], buf[80];
    const char *why;
    uint64_t v;

    pv->max_connections = 0; /* no bound: a stream holds its connection for its whole length */
    pv->max_idle_connections = 64;
    snprintf(where, sizeof(where), "providers[%zu]", index);
    if (!read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;

    if (f[0].value != NULL) {
        const char *name = get_name(p, f[0].value, join(what, sizeof(what), where, "name"));
        if (name != NULL) {
            size_t first = find_provider(cfg, index, name);
            if (first < index)
                REPORT(p, f[0].value, "%s: duplicate provider name '%s'", what,
                       show(name, buf, sizeof(buf)));
            else
                pv->name = copy(p, name);
        }
    }
    if (f[1].value != NULL) {
        lx_config_value_url_t u;
        const char *s = scalar(p, f[1].value, join(what, sizeof(what), where, "base_url"));
        if (s != NULL && lx_config_value_url(s, true, &u, &why) != 0) {
            REPORT(p, f[1].value, "%s: %s", what, why);
        } else if (s != NULL) {
            pv->base_url = copy(p, s);
            pv->base_path = copy_n(p, u.path, u.path_len);
            if (f[2].value == NULL) {
                pv->endpoints = alloc(p, 1, sizeof(*pv->endpoints));
                if (pv->endpoints != NULL && set_endpoint(p, pv->endpoints, s, &u))
                    pv->n_endpoints = 1;
            }
        }
    }
    if (f[2].value != NULL)
        parse_endpoints(p, pv, f[2].value, where);
    if (f[3].value != NULL) {
        pv->api_key = secret(p, f[3].value, join(what, sizeof(what), where, "api_key"));
        if (pv->api_key != NULL && pv->api_key[0] == '\0') {
            REPORT(p, f[3].value, "%s: the value is empty", what);
            pv->api_key = NULL;
        }
    }
    if (f[4].value != NULL)
        parse_headers(p, pv, f[4].value, join(what, sizeof(what), where, "headers"));
    if (f[5].value != NULL &&
        get_uint(p, f[5].value, join(what, sizeof(what), where, "max_connections"), 0, 65535, &v))
        pv->max_connections = (uint32_t)v;
    if (f[11].value != NULL &&
        get_uint(p, f[11].value, join(what, sizeof(what), where, "max_idle_connections"), 0, 65535,
                 &v))
        pv->max_idle_connections = (uint32_t)v;
    if (f[6].value != NULL)
        parse_provider_timeouts(p, pv, f[6].value, where);
    if (f[7].value != NULL) {
        const char *s = scalar(p, f[7].value, join(what, sizeof(what), where, "data_collection"));
        if (s != NULL && strcmp(s, "deny") == 0)
            pv->data_collection_deny = true;
        else if (s != NULL && strcmp(s, "allow") != 0)
            REPORT(p, f[7].value, "%s: expected allow or deny", what);
    }
    if (f[8].value != NULL)
        get_bool(p, f[8].value, join(what, sizeof(what), where, "zdr"), &pv->zdr);
    if (f[9].value != NULL) {
        const char *s = scalar(p, f[9].value, join(what, sizeof(what), where, "probe"));
        if (s != NULL && (s[0] != '/' || strlen(s) > 512 || strpbrk(s, " \t\r\n") != NULL))
            REPORT(p, f[9].value, "%s: expected a path starting with '/' (\"/v1/models\")", what);
        else if (s != NULL)
            pv->probe_path = copy(p, s);
    }
    if (f[10].value != NULL)
        parse_provider_tls(p, pv, f[10].value, where);
}

static void parse_providers(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    if (!sequence(p, n, "providers", true))
        return;
    size_t count = seq_len(n);
    cfg->providers = alloc(p, count, sizeof(*cfg->providers));
    if (cfg->providers == NULL)
        return;
    cfg->n_providers = count;
    for (size_t i = 0; i < count; i++)
        parse_provider(p, i, node(p, n->data.sequence.items.start[i]));
}

/* ---- models -------------------------------------------------------------------------------- */

static void parse_price(parser_t *p, lx_config_route_t *r, yaml_node_t *n, const char *where)
{
    field_t f[] = {{"prompt", false, NULL, NULL}, {"completion", false, NULL, NULL}};
    double *slots[] = {&r->price_prompt, &r->price_completion};
    char sub[160], what[192];
    const char *why;

    snprintf(sub, sizeof(sub), "%.96s.price", where);
    if (!read_map(p, n, sub, f, 2))
        return;
    for (size_t i = 0; i < 2; i++) {
        if (f[i].value == NULL)
            continue;
        const char *s = scalar(p, f[i].value, join(what, sizeof(what), sub, f[i].key));
        if (s != NULL && lx_config_value_price(s, slots[i], &why) != 0)
            REPORT(p, f[i].value, "%s: %s", what, why);
    }
}

static void parse_route(parser_t *p, lx_config_model_t *m, const char *model_where, size_t index,
                        yaml_node_t *n)
{
    const lx_config_t *cfg = p->cfg;
    lx_config_route_t *r = &m->routes[m->n_routes];
    field_t f[] = {{"provider", true, NULL, NULL},
                   {"model", false, NULL, NULL},
                   {"price", false, NULL, NULL},
                   {"parameters", false, NULL, NULL}};
    char where[96], what[128], buf[80];
    bool ok = true;

    memset(r, 0, sizeof(*r));
    snprintf(where, sizeof(where), "%s.providers[%zu]", model_where, index);
    if (!read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value == NULL) {
        ok = false;
    } else {
        const char *name = scalar(p, f[0].value, join(what, sizeof(what), where, "provider"));
        if (name == NULL) {
            ok = false;
        } else {
            r->provider = find_provider(cfg, cfg->n_providers, name);
            if (r->provider == cfg->n_providers) {
                REPORT(p, f[0].value, "unknown provider '%s'%s%s", show(name, buf, sizeof(buf)),
                       in_where(where), where);
                ok = false;
            }
        }
    }
    if (f[1].value != NULL) {
        const char *s = scalar(p, f[1].value, join(what, sizeof(what), where, "model"));
        r->upstream_model = s != NULL ? copy(p, s) : NULL;
        ok = ok && r->upstream_model != NULL;
    } else if (m->id != NULL) {
        r->upstream_model = m->id;
    } else {
        ok = false;
    }
    if (f[2].value != NULL)
        parse_price(p, r, f[2].value, where);
    if (f[3].value != NULL &&
        sequence(p, f[3].value, join(what, sizeof(what), where, "parameters"), true)) {
        yaml_node_t *list = f[3].value;
        r->parameters = alloc(p, seq_len(list), sizeof(*r->parameters));
        for (size_t i = 0; r->parameters != NULL && i < seq_len(list); i++) {
            yaml_node_t *item = node(p, list->data.sequence.items.start[i]);
            const char *name = item != NULL ? get_name(p, item, what) : NULL;
            if (name != NULL)
                r->parameters[r->n_parameters++] = copy(p, name);
        }
    }
    if (!ok)
        return;
    for (size_t j = 0; j < m->n_routes; j++) {
        if (m->routes[j].provider == r->provider &&
            strcmp(m->routes[j].upstream_model, r->upstream_model) == 0) {
            REPORT(p, n, "%s: the same provider and model are listed twice", where);
            return;
        }
    }
    m->n_routes++;
}

/* A model while models are sorted by id. */
typedef struct model_ref {
    const char *id;
    size_t index;
    yaml_node_t *node; /* the id's node, for messages */
} model_ref_t;

/* Model ids are printed in JSON and matched against request bodies: printable, no quotes. */
static const char *get_model_id(parser_t *p, yaml_node_t *n, const char *what)
{
    const char *s = scalar(p, n, what);
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
            REPORT(p, n, "%s: a model id has no spaces, quotes, backslashes or control characters",
                   what);
            return NULL;
        }
    }
    if (len > 256) {
        REPORT(p, n, "%s: a model id has at most 256 characters", what);
        return NULL;
    }
    if ((len > 6 && strcmp(s + len - 6, ":nitro") == 0) ||
        (len > 6 && strcmp(s + len - 6, ":floor") == 0)) {
        REPORT(p, n, "%s: the suffixes :nitro and :floor are request options, not model ids", what);
        return NULL;
    }
    return s;
}

static void parse_model(parser_t *p, size_t index, yaml_node_t *n, model_ref_t *refs)
{
    lx_config_model_t *m = &p->cfg->models[index];
    field_t f[] = {{"id", true, NULL, NULL},
                   {"context_length", true, NULL, NULL},
                   {"created", false, NULL, NULL},
                   {"owned_by", false, NULL, NULL},
                   {"providers", true, NULL, NULL}};
    char where[32], what[64];
    uint64_t v;

    m->created = (int64_t)p->now;
    snprintf(where, sizeof(where), "models[%zu]", index);
    if (!read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *id = get_model_id(p, f[0].value, join(what, sizeof(what), where, "id"));
        if (id != NULL) {
            m->id = copy(p, id);
            refs[index].node = f[0].value;
        }
    }
    if (f[1].value != NULL &&
        get_uint(p, f[1].value, join(what, sizeof(what), where, "context_length"), 1, UINT32_MAX,
                 &v))
        m->context_length = (uint32_t)v;
    if (f[2].value != NULL &&
        get_uint(p, f[2].value, join(what, sizeof(what), where, "created"), 0, INT64_MAX, &v))
        m->created = (int64_t)v;
    if (f[3].value != NULL) {
        const char *s = scalar(p, f[3].value, join(what, sizeof(what), where, "owned_by"));
        if (s != NULL)
            m->owned_by = copy(p, s);
    } else if (m->id != NULL) {
        const char *slash = strchr(m->id, '/');
        m->owned_by = slash != NULL && slash > m->id ? copy_n(p, m->id, (size_t)(slash - m->id))
                                                     : copy(p, "llmux");
    }
    if (f[4].value != NULL &&
        sequence(p, f[4].value, join(what, sizeof(what), where, "providers"), true)) {
        yaml_node_t *list = f[4].value;
        m->routes = alloc(p, seq_len(list), sizeof(*m->routes));
        for (size_t i = 0; m->routes != NULL && i < seq_len(list); i++)
            parse_route(p, m, where, i, node(p, list->data.sequence.items.start[i]));
    }
}

static int compare_models(const void *a, const void *b)
{
    const model_ref_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

static void parse_models(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    if (!sequence(p, n, "models", true))
        return;
    size_t count = seq_len(n);
    cfg->models = alloc(p, count, sizeof(*cfg->models));
    cfg->model_order = alloc(p, count, sizeof(*cfg->model_order));
    model_ref_t *refs = calloc(count, sizeof(*refs));
    if (cfg->models == NULL || cfg->model_order == NULL || refs == NULL) {
        p->oom = true;
        free(refs);
        return;
    }
    cfg->n_models = count;
    for (size_t i = 0; i < count; i++)
        parse_model(p, i, node(p, n->data.sequence.items.start[i]), refs);

    /* Sort by id for lx_config_find_model(); equal neighbours are duplicates. */
    size_t n_ids = 0;
    for (size_t i = 0; i < count; i++) {
        if (cfg->models[i].id != NULL)
            refs[n_ids++] = (model_ref_t){cfg->models[i].id, i, refs[i].node};
    }
    qsort(refs, n_ids, sizeof(*refs), compare_models);
    for (size_t i = 0; i < n_ids; i++) {
        cfg->model_order[i] = refs[i].index;
        if (i > 0 && strcmp(refs[i - 1].id, refs[i].id) == 0)
            REPORT(p, refs[i].node, "models[%zu].id: duplicate model id '%s'", refs[i].index,
                   refs[i].id);
    }
    free(refs);
}

/* ---- auth, log ----------------------------------------------------------------------------- */

static void parse_key(parser_t *p, size_t index, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"name", true, NULL, NULL}, {"sha256", true, NULL, NULL}};
    char where[32], what[64];
    const char *name = NULL, *why;
    lx_config_key_t key;
    bool ok = true;

    snprintf(where, sizeof(where), "auth.keys[%zu]", index);
    if (!read_map(p, n, where, f, 2))
        return;
    if (f[0].value != NULL) {
        name = get_name(p, f[0].value, join(what, sizeof(what), where, "name"));
        for (size_t i = 0; name != NULL && i < cfg->n_keys; i++) {
            if (strcmp(cfg->keys[i].name, name) == 0) {
                REPORT(p, f[0].value, "%s: duplicate key name '%s'", what, name);
                ok = false;
            }
        }
    }
    if (f[1].value != NULL) {
        const char *s = scalar(p, f[1].value, join(what, sizeof(what), where, "sha256"));
        if (s != NULL && lx_config_value_hex(s, key.digest, sizeof(key.digest), &why) != 0) {
            REPORT(p, f[1].value, "%s: expected 64 hex digits (the output of `llmux hash-key`): %s",
                   what, why);
            ok = false;
        } else if (s != NULL) {
            for (size_t i = 0; i < cfg->n_keys; i++) {
                if (memcmp(cfg->keys[i].digest, key.digest, sizeof(key.digest)) == 0) {
                    REPORT(p, f[1].value, "%s: the same key is already listed as '%s'", what,
                           cfg->keys[i].name);
                    ok = false;
                }
            }
        } else {
            ok = false;
        }
    }
    if (!ok || name == NULL || f[1].value == NULL)
        return;
    key.name = copy(p, name);
    if (key.name != NULL)
        cfg->keys[cfg->n_keys++] = key;
}

static void parse_auth(parser_t *p, yaml_node_t *root, yaml_node_t *n)
{
    static const char hint[] = "set `auth: none` to run without keys, or list keys";
    lx_config_t *cfg = p->cfg;

    if (n == NULL) {
        REPORT(p, root, "no `auth` section: %s", hint);
        return;
    }
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "none") == 0) {
        cfg->auth_none = true;
        return;
    }
    if (n->type != YAML_MAPPING_NODE) {
        REPORT(p, n, "auth: expected `none` or a mapping with `keys`: %s", hint);
        return;
    }
    field_t f[] = {{"keys", false, NULL, NULL}};
    if (!read_map(p, n, "auth", f, 1))
        return;
    yaml_node_t *keys = f[0].value;
    if (keys == NULL || (keys->type == YAML_SEQUENCE_NODE && seq_len(keys) == 0) || is_null(keys)) {
        REPORT(p, keys != NULL ? keys : n, "auth: no keys listed: %s", hint);
        return;
    }
    if (!sequence(p, keys, "auth.keys", true))
        return;
    cfg->keys = alloc(p, seq_len(keys), sizeof(*cfg->keys));
    for (size_t i = 0; cfg->keys != NULL && i < seq_len(keys); i++)
        parse_key(p, i, node(p, keys->data.sequence.items.start[i]));
}

static void parse_log(parser_t *p, yaml_node_t *n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    field_t f[] = {{"access_log", false, NULL, NULL}, {"level", false, NULL, NULL}};

    if (!read_map(p, n, "log", f, 2))
        return;
    if (f[0].value != NULL) {
        const char *s = scalar(p, f[0].value, "log.access_log");
        if (s != NULL)
            p->cfg->access_log = strcmp(s, "off") == 0 ? NULL : copy(p, s);
    }
    if (f[1].value != NULL) {
        const char *s = scalar(p, f[1].value, "log.level");
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

static void parse_stream(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"keepalive_interval", false, NULL, NULL},
                   {"keepalive_delay", false, NULL, NULL},
                   {"early_commit", false, NULL, NULL},
                   {"always_send_usage", false, NULL, NULL}};

    if (!read_map(p, n, "stream", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        get_duration(p, f[0].value, "stream.keepalive_interval", false,
                     &cfg->stream_keepalive_interval_ms);
    if (f[1].value != NULL)
        get_duration(p, f[1].value, "stream.keepalive_delay", false,
                     &cfg->stream_keepalive_delay_ms);
    if (f[2].value != NULL)
        get_bool(p, f[2].value, "stream.early_commit", &cfg->stream_early_commit);
    if (f[3].value != NULL)
        get_bool(p, f[3].value, "stream.always_send_usage", &cfg->stream_always_send_usage);
}

/* ---- routing, health, admin ------------------------------------------------------------------ */

static void parse_routing(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"strategy", false, NULL, NULL},
                   {"max_attempts", false, NULL, NULL},
                   {"deadline", false, NULL, NULL},
                   {"session_ttl", false, NULL, NULL}};
    uint64_t v;

    if (!read_map(p, n, "routing", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *s = scalar(p, f[0].value, "routing.strategy");
        if (s != NULL && strcmp(s, "health") == 0)
            cfg->routing_strategy = LX_CONFIG_ROUTING_HEALTH;
        else if (s != NULL && strcmp(s, "round_robin") == 0)
            cfg->routing_strategy = LX_CONFIG_ROUTING_ROUND_ROBIN;
        else if (s != NULL)
            REPORT(p, f[0].value, "routing.strategy: expected health or round_robin");
    }
    if (f[1].value != NULL && get_uint(p, f[1].value, "routing.max_attempts", 1, 16, &v))
        cfg->routing_max_attempts = (uint32_t)v;
    if (f[2].value != NULL)
        get_duration(p, f[2].value, "routing.deadline", false, &cfg->routing_deadline_ms);
    if (f[3].value != NULL)
        get_duration(p, f[3].value, "routing.session_ttl", true, &cfg->routing_session_ttl_ms);
}

static void parse_health(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {
        {"rescore_interval", false, NULL, NULL},     {"window", false, NULL, NULL},
        {"breaker_failures", false, NULL, NULL},     {"breaker_cooldown", false, NULL, NULL},
        {"breaker_max_cooldown", false, NULL, NULL}, {"probe_interval", false, NULL, NULL},
        {"exploration", false, NULL, NULL}};
    uint64_t v;

    if (!read_map(p, n, "health", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        get_duration(p, f[0].value, "health.rescore_interval", false,
                     &cfg->health_rescore_interval_ms);
    if (f[1].value != NULL)
        get_duration(p, f[1].value, "health.window", false, &cfg->health_window_ms);
    if (f[2].value != NULL && get_uint(p, f[2].value, "health.breaker_failures", 1, 1000, &v))
        cfg->health_breaker_failures = (uint32_t)v;
    if (f[3].value != NULL)
        get_duration(p, f[3].value, "health.breaker_cooldown", false,
                     &cfg->health_breaker_cooldown_ms);
    if (f[4].value != NULL)
        get_duration(p, f[4].value, "health.breaker_max_cooldown", false,
                     &cfg->health_breaker_max_cooldown_ms);
    if (f[5].value != NULL)
        get_duration(p, f[5].value, "health.probe_interval", true, &cfg->health_probe_interval_ms);
    if (f[6].value != NULL) {
        const char *s = scalar(p, f[6].value, "health.exploration");
        char *end = NULL;
        double d = s != NULL ? strtod(s, &end) : 0;
        if (s != NULL && (end == s || *end != '\0' || !(d >= 0 && d <= 0.5)))
            REPORT(p, f[6].value, "health.exploration: expected a number from 0 to 0.5");
        else if (s != NULL)
            cfg->health_exploration = d;
    }
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

static void parse_admin(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"sha256", false, NULL, NULL}, {"metrics_public", false, NULL, NULL}};
    const char *why;

    if (!read_map(p, n, "admin", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *s = scalar(p, f[0].value, "admin.sha256");
        if (s != NULL &&
            lx_config_value_hex(s, cfg->admin_digest, sizeof(cfg->admin_digest), &why) != 0)
            REPORT(p, f[0].value,
                   "admin.sha256: expected 64 hex digits (the output of `llmux hash-key`): %s",
                   why);
        else if (s != NULL)
            cfg->admin_enabled = true;
    }
    if (f[1].value != NULL)
        get_bool(p, f[1].value, "admin.metrics_public", &cfg->metrics_public);
}

/* ---- the document -------------------------------------------------------------------------- */

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
    cfg->access_log = copy(p, "-");
    cfg->log_level = 2;
    cfg->stream_keepalive_interval_ms = 15 * 1000;
    cfg->stream_keepalive_delay_ms = 2 * 1000;
    cfg->routing_strategy = LX_CONFIG_ROUTING_HEALTH;
    cfg->routing_max_attempts = 3;
    cfg->routing_deadline_ms = 90 * 1000;
    cfg->routing_session_ttl_ms = 10 * 60 * 1000;
    cfg->health_rescore_interval_ms = 5 * 60 * 1000;
    cfg->health_window_ms = 15 * 60 * 1000;
    cfg->health_breaker_failures = 5;
    cfg->health_breaker_cooldown_ms = 10 * 1000;
    cfg->health_breaker_max_cooldown_ms = 5 * 60 * 1000;
    cfg->health_probe_interval_ms = 30 * 1000;
    cfg->health_exploration = 0.05;
    cfg->metrics_public = true;
}

static void parse_root(parser_t *p, yaml_node_t *root)
{
    field_t f[] = {{"listen", true, NULL, NULL},       {"workers", false, NULL, NULL},
                   {"limits", false, NULL, NULL},      {"timeouts", false, NULL, NULL},
                   {"providers", true, NULL, NULL},    {"models", true, NULL, NULL},
                   {"auth", false, NULL, NULL},        {"log", false, NULL, NULL},
                   {"stream", false, NULL, NULL},      {"routing", false, NULL, NULL},
                   {"health", false, NULL, NULL},      {"admin", false, NULL, NULL},
                   {"busy_poll_us", false, NULL, NULL}};

    if (root == NULL) {
        static const yaml_mark_t start = {0, 0, 0};
        error_at(p, &start, "the configuration is empty (see conf/llmux.yaml for a start)");
        return;
    }
    if (!read_map(p, root, "", f, LX_ARRAY_SIZE(f)))
        return;
    /* Providers before models, whatever the order in the file: routes name providers. */
    if (f[0].value != NULL)
        parse_listen(p, f[0].value);
    if (f[1].value != NULL)
        parse_workers(p, f[1].value);
    if (f[2].value != NULL)
        parse_limits(p, f[2].value);
    if (f[3].value != NULL)
        parse_timeouts(p, f[3].value);
    if (f[4].value != NULL)
        parse_providers(p, f[4].value);
    if (f[5].value != NULL)
        parse_models(p, f[5].value);
    parse_auth(p, root, f[6].value);
    if (f[7].value != NULL)
        parse_log(p, f[7].value);
    if (f[8].value != NULL)
        parse_stream(p, f[8].value);
    if (f[9].value != NULL)
        parse_routing(p, f[9].value);
    if (f[10].value != NULL)
        parse_health(p, f[10].value);
    if (f[11].value != NULL)
        parse_admin(p, f[11].value);
    if (f[12].value != NULL)
        get_uint(p, f[12].value, "busy_poll_us", 0, 100000, &p->cfg->busy_poll_us);
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
        error_at(p, mark, "YAML: %s %s", yp->context, problem);
    else
        error_at(p, mark, "YAML: %s", problem);
}

int lx_config_parse(const char *name, const char *text, size_t len, FILE *errors, lx_config_t **out)
{
    parser_t p = {.name = name, .now = time(NULL)};
    yaml_parser_t yp;
    yaml_document_t doc, extra;

    *out = NULL;
    p.arena = lx_config_arena_new();
    if (p.arena != NULL)
        p.cfg = alloc(&p, 1, sizeof(*p.cfg));
    if (p.cfg == NULL || !yaml_parser_initialize(&yp)) {
        p.oom = true;
        goto done;
    }
    atomic_init(&p.cfg->refcount, 1);
    p.cfg->arena = p.arena;
    p.cfg->path = copy(&p, name);
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
