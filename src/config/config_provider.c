/*
 * config_provider.c - the `providers` list: names, base_url and endpoints, the api_key and
 * headers (${VAR} substitution, header rules), connection bounds, per-provider timeouts, data
 * policy and probes (a provider's `tls` goes to config_tls.c). Runs before the models, whose
 * routes look providers up by name (lx_cfg_find_provider).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

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
            out = lx_cfg_alloc(p, len + 1, 1);
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
    const char *s = lx_cfg_scalar(p, n, what);
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
               lx_cfg_is_null(n) ? "nothing" : lx_cfg_kind(n));
        return;
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    pv->headers = lx_cfg_alloc(p, count, sizeof(*pv->headers));
    if (pv->headers == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = lx_cfg_node(p, pair->key), *v = lx_cfg_node(p, pair->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE || lx_cfg_is_null(k)) {
            REPORT(p, k, "%s: a header name must be a string", where);
            continue;
        }
        const char *name = (const char *)k->data.scalar.value;
        size_t len = strlen(name), j;
        for (j = 0; j < len && is_tchar(name[j]); j++)
            ;
        if (j != len || len != k->data.scalar.length) {
            REPORT(p, k, "%s: '%s' is not a valid header name", where,
                   lx_cfg_show(name, buf, sizeof(buf)));
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
        char *name_copy = lx_cfg_copy(p, name);
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
    ep->url = lx_cfg_copy_n(p, url, u->origin_len);
    ep->host = lx_cfg_copy_n(p, u->host, u->host_len);
    ep->port = u->port;
    ep->tls = u->tls;
    return ep->url != NULL && ep->host != NULL;
}

static void parse_endpoints(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                            const char *where)
{
    char what[96];

    snprintf(what, sizeof(what), "%s.endpoints", where);
    if (!lx_cfg_list(p, n, what))
        return;
    size_t count = lx_cfg_seq_len(n);
    pv->endpoints = lx_cfg_alloc(p, count, sizeof(*pv->endpoints));
    if (pv->endpoints == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = lx_cfg_node(p, n->data.sequence.items.start[i]);
        lx_config_value_url_t u;
        const char *why;

        snprintf(what, sizeof(what), "%s.endpoints[%zu]", where, i);
        const char *s = lx_cfg_scalar(p, item, what);
        if (s == NULL)
            continue;
        if (lx_config_value_endpoint_url(s, &u, &why) != 0) {
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
    if (!lx_cfg_read_map(p, n, sub, f, LX_ARRAY_SIZE(f)))
        return;
    for (size_t i = 0; i < LX_ARRAY_SIZE(f); i++) {
        if (f[i].value != NULL)
            lx_cfg_get_duration(p, f[i].value, lx_cfg_join(what, sizeof(what), sub, f[i].key),
                                slots[i]);
    }
}

/* Index of the provider named <name> among the first <count>, or count. */
size_t lx_cfg_find_provider(const lx_config_t *cfg, size_t count, const char *name)
{
    size_t i = 0;
    while (i < count && (cfg->providers[i].name == NULL || strcmp(cfg->providers[i].name, name)))
        i++;
    return i;
}

/* providers[index].name: unique among the providers before it. */
static void parse_provider_name(parser_t *p, size_t index, yaml_node_t *n, const char *where)
{
    lx_config_t *cfg = p->cfg;
    lx_config_provider_t *pv = &cfg->providers[index];
    char what[64], buf[80];

    const char *name = lx_cfg_get_name(p, n, lx_cfg_join(what, sizeof(what), where, "name"));
    if (name != NULL) {
        size_t first = lx_cfg_find_provider(cfg, index, name);
        if (first < index)
            REPORT(p, n, "%s: duplicate provider name '%s'", what,
                   lx_cfg_show(name, buf, sizeof(buf)));
        else
            pv->name = lx_cfg_copy(p, name);
    }
}

/* base_url: base_url and base_path; also the one endpoint when there is no <endpoints> list. */
static void parse_base_url(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                           const yaml_node_t *endpoints, const char *where)
{
    char what[64];
    const char *why;
    lx_config_value_url_t u;

    const char *s = lx_cfg_scalar(p, n, lx_cfg_join(what, sizeof(what), where, "base_url"));
    if (s != NULL && lx_config_value_base_url(s, &u, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
    } else if (s != NULL) {
        pv->base_url = lx_cfg_copy(p, s);
        pv->base_path = lx_cfg_copy_n(p, u.path, u.path_len);
        if (endpoints == NULL) {
            pv->endpoints = lx_cfg_alloc(p, 1, sizeof(*pv->endpoints));
            if (pv->endpoints != NULL && set_endpoint(p, pv->endpoints, s, &u))
                pv->n_endpoints = 1;
        }
    }
}

/* `metrics` (the Prometheus page of each endpoint), `max_in_flight` and
 * `prefix_cache_tokens`. */
static void parse_fleet(parser_t *p, lx_config_provider_t *pv, yaml_node_t *metrics,
                        yaml_node_t *max_in_flight, yaml_node_t *cache, const char *where)
{
    char what[64];
    uint64_t v;
    if (metrics != NULL) {
        const char *s =
            lx_cfg_scalar(p, metrics, lx_cfg_join(what, sizeof(what), where, "metrics"));
        if (s != NULL && (s[0] != '/' || strlen(s) > 512 || strpbrk(s, " \t\r\n") != NULL))
            REPORT(p, metrics, "%s: expected a path starting with '/' (\"/metrics\")", what);
        else if (s != NULL)
            pv->metrics_path = lx_cfg_copy(p, s);
    }
    if (max_in_flight != NULL &&
        lx_cfg_get_uint(p, max_in_flight, lx_cfg_join(what, sizeof(what), where, "max_in_flight"),
                        0, 1000000, &v))
        pv->max_in_flight = (uint32_t)v;
    pv->prefix_cache_tokens = 262144;
    if (cache != NULL &&
        lx_cfg_get_uint(p, cache, lx_cfg_join(what, sizeof(what), where, "prefix_cache_tokens"),
                        1024, 16000000, &v))
        pv->prefix_cache_tokens = (uint32_t)v;
}

/* `hedge: false`: never a hedge's target, its requests not hedged. */
static void parse_hedge(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n, const char *where)
{
    char what[64];
    bool hedge = true;
    if (n == NULL)
        return;
    lx_cfg_get_bool(p, n, lx_cfg_join(what, sizeof(what), where, "hedge"), &hedge);
    pv->no_hedge = !hedge;
}

static void parse_provider(parser_t *p, size_t index, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    lx_config_provider_t *pv = &cfg->providers[index];
    field_t f[] = {{"name", true, NULL, NULL},
                   {"base_url", true, NULL, NULL},
                   {"endpoints", false, NULL, NULL},
                   {"api_key", false, NULL, NULL},
                   {"headers", false, NULL, NULL},
                   {"max_connections", false, NULL, NULL},
                   {"timeouts", false, NULL, NULL},
                   {"data_collection", false, NULL, NULL},
                   {"zdr", false, NULL, NULL},
                   {"probe", false, NULL, NULL},
                   {"tls", false, NULL, NULL},
                   {"max_idle_connections", false, NULL, NULL},
                   {"metrics", false, NULL, NULL},
                   {"max_in_flight", false, NULL, NULL},
                   {"prefix_cache_tokens", false, NULL, NULL},
                   {"hedge", false, NULL, NULL}};
    char where[32], what[64];
    uint64_t v;

    pv->max_connections = 0; /* no bound: a stream holds its connection for its whole length */
    pv->max_idle_connections = 64;
    snprintf(where, sizeof(where), "providers[%zu]", index);
    if (!lx_cfg_read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;

    if (f[0].value != NULL)
        parse_provider_name(p, index, f[0].value, where);
    if (f[1].value != NULL)
        parse_base_url(p, pv, f[1].value, f[2].value, where);
    if (f[2].value != NULL)
        parse_endpoints(p, pv, f[2].value, where);
    if (f[3].value != NULL) {
        pv->api_key = secret(p, f[3].value, lx_cfg_join(what, sizeof(what), where, "api_key"));
        if (pv->api_key != NULL && pv->api_key[0] == '\0') {
            REPORT(p, f[3].value, "%s: the value is empty", what);
            pv->api_key = NULL;
        }
    }
    if (f[4].value != NULL)
        parse_headers(p, pv, f[4].value, lx_cfg_join(what, sizeof(what), where, "headers"));
    if (f[5].value != NULL &&
        lx_cfg_get_uint(p, f[5].value, lx_cfg_join(what, sizeof(what), where, "max_connections"), 0,
                        65535, &v))
        pv->max_connections = (uint32_t)v;
    if (f[11].value != NULL &&
        lx_cfg_get_uint(p, f[11].value,
                        lx_cfg_join(what, sizeof(what), where, "max_idle_connections"), 0, 65535,
                        &v))
        pv->max_idle_connections = (uint32_t)v;
    if (f[6].value != NULL)
        parse_provider_timeouts(p, pv, f[6].value, where);
    if (f[7].value != NULL) {
        const char *s =
            lx_cfg_scalar(p, f[7].value, lx_cfg_join(what, sizeof(what), where, "data_collection"));
        if (s != NULL && strcmp(s, "deny") == 0)
            pv->data_collection_deny = true;
        else if (s != NULL && strcmp(s, "allow") != 0)
            REPORT(p, f[7].value, "%s: expected allow or deny", what);
    }
    if (f[8].value != NULL)
        lx_cfg_get_bool(p, f[8].value, lx_cfg_join(what, sizeof(what), where, "zdr"), &pv->zdr);
    if (f[9].value != NULL) {
        const char *s =
            lx_cfg_scalar(p, f[9].value, lx_cfg_join(what, sizeof(what), where, "probe"));
        if (s != NULL && (s[0] != '/' || strlen(s) > 512 || strpbrk(s, " \t\r\n") != NULL))
            REPORT(p, f[9].value, "%s: expected a path starting with '/' (\"/v1/models\")", what);
        else if (s != NULL)
            pv->probe_path = lx_cfg_copy(p, s);
    }
    if (f[10].value != NULL)
        lx_cfg_parse_provider_tls(p, pv, f[10].value, where);
    parse_fleet(p, pv, f[12].value, f[13].value, f[14].value, where);
    parse_hedge(p, pv, f[15].value, where);
}

void lx_cfg_parse_providers(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    if (!lx_cfg_list(p, n, "providers"))
        return;
    size_t count = lx_cfg_seq_len(n);
    cfg->providers = lx_cfg_alloc(p, count, sizeof(*cfg->providers));
    if (cfg->providers == NULL)
        return;
    cfg->n_providers = count;
    for (size_t i = 0; i < count; i++)
        parse_provider(p, i, lx_cfg_node(p, n->data.sequence.items.start[i]));
}
